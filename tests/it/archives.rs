//! Hostile and odd tarballs through the real binary: every attack either fails cleanly (nothing
//! kept in the store) or is contained inside the unpacked rootfs; nothing is ever written
//! outside it. Compression is detected by magic bytes, not by file name.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use tar::{EntryType, Header};

use crate::harness::*;

// ---------------------------------------------------------------------------
// Building tarballs
// ---------------------------------------------------------------------------

/// A raw GNU header with every numeric field set, `name` and `link` copied verbatim (no
/// normalisation, so `..` and absolute names survive).
fn raw_header(name: &[u8], ty: EntryType, mode: u32, size: u64, link: &[u8]) -> Header {
    let mut h = Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        assert!(name.len() < g.name.len(), "name too long for a raw header");
        assert!(
            link.len() < g.linkname.len(),
            "link too long for a raw header"
        );
        g.name[..name.len()].copy_from_slice(name);
        g.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    if matches!(ty, EntryType::Char | EntryType::Block) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    h
}

/// A tarball under construction: the busybox fixture's entries (optionally under a prefix
/// directory), then whatever hostile entries a test appends.
struct Tarball {
    b: tar::Builder<Vec<u8>>,
}

impl Tarball {
    fn busybox() -> Tarball {
        Tarball::busybox_under(None)
    }

    /// Every entry of the busybox fixture, re-appended with its name (prefixed with
    /// `prefix/` if given).
    fn busybox_under(prefix: Option<&str>) -> Tarball {
        let mut b = tar::Builder::new(Vec::new());
        let file = std::fs::File::open(fixture("busybox")).unwrap();
        let mut archive = tar::Archive::new(file);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            let link = e
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let mut full = Vec::new();
            if let Some(p) = prefix {
                full.extend_from_slice(p.as_bytes());
                full.push(b'/');
            }
            full.extend_from_slice(&name);
            let src = e.header();
            let mut h = raw_header(
                &full,
                src.entry_type(),
                src.mode().unwrap(),
                data.len() as u64,
                &link,
            );
            h.set_uid(src.uid().unwrap());
            h.set_gid(src.gid().unwrap());
            h.set_mtime(src.mtime().unwrap());
            h.set_cksum();
            b.append(&h, data.as_slice()).unwrap();
        }
        Tarball { b }
    }

    fn file(mut self, name: &[u8], mode: u32, data: &[u8]) -> Self {
        let h = raw_header(name, EntryType::Regular, mode, data.len() as u64, b"");
        self.b.append(&h, data).unwrap();
        self
    }

    fn file_owned(mut self, name: &[u8], mode: u32, uid: u64, data: &[u8]) -> Self {
        let mut h = raw_header(name, EntryType::Regular, mode, data.len() as u64, b"");
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn symlink(mut self, name: &[u8], target: &[u8]) -> Self {
        let h = raw_header(name, EntryType::Symlink, 0o777, 0, target);
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    fn hardlink(mut self, name: &[u8], target: &[u8]) -> Self {
        let h = raw_header(name, EntryType::Link, 0o644, 0, target);
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    fn device(mut self, name: &[u8], ty: EntryType) -> Self {
        let h = raw_header(name, ty, 0o666, 0, b"");
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    gz.finish().unwrap()
}

fn xz(tar: &[u8]) -> Vec<u8> {
    let mut x = liblzma::write::XzEncoder::new(Vec::new(), 1);
    x.write_all(tar).unwrap();
    x.finish().unwrap()
}

fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

// ---------------------------------------------------------------------------
// The environment around an attack
// ---------------------------------------------------------------------------

/// A TestEnv with a canary directory `root/outside`, owned by the test user, so that a write
/// through a fooled unpacker would succeed.
struct Attack {
    env: TestEnv,
    outside: PathBuf,
}

impl Attack {
    fn new() -> Attack {
        let env = TestEnv::new();
        let outside = env.root.join("outside");
        env.mkdir_as_user(&outside);
        Attack { env, outside }
    }

    /// Absolute path of the canary directory, as bytes, without the leading `/`.
    fn outside_rel(&self) -> String {
        self.outside
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string()
    }

    fn outside_abs(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }

    /// Writes a tarball into the env's root dir, readable by the test user.
    fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        write_image(&self.env, file, bytes)
    }

    /// `devbox create PATH --name NAME`.
    fn create(&self, path: &Path, name: &str) -> Output {
        self.env
            .run(["create", path.to_str().unwrap(), "--name", name])
    }

    /// Names in the canary directory.
    fn outside_names(&self) -> Vec<String> {
        names(&self.outside)
    }

    fn assert_outside_empty(&self) {
        assert_eq!(
            self.outside_names(),
            Vec::<String>::new(),
            "something was written outside the rootfs"
        );
    }
}

fn write_image(env: &TestEnv, file: &str, bytes: &[u8]) -> PathBuf {
    let p = env.root.join(file);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Sorted names in a directory (empty if it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// After a failed create: no box, no image entry, no temp dirs.
fn assert_nothing_kept(env: &TestEnv) {
    let images: Vec<String> = names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(
        images,
        Vec::<String>::new(),
        "a failed create left something in images-v1"
    );
    let boxes = names(&env.data().join("boxes-v1"));
    assert_eq!(
        boxes,
        Vec::<String>::new(),
        "a failed create left something in boxes-v1"
    );
}

/// The rootfs of the one image in the store.
fn only_rootfs(env: &TestEnv) -> PathBuf {
    let images: Vec<String> = names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        images.len(),
        1,
        "expected exactly one image in the store: {images:?}"
    );
    let leftovers: Vec<String> = names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp dirs left in images-v1: {leftovers:?}"
    );
    env.data().join("images-v1").join(&images[0]).join("rootfs")
}

/// Either a clean failure (exit 1, stderr names `mention`, nothing kept) or success with a
/// usable box. Returns whether the create succeeded.
fn failed_cleanly_or_created(env: &TestEnv, out: &Output, name: &str, mention: &str) -> bool {
    let err = stderr(out);
    if out.status.success() {
        assert!(
            env.data().join("boxes-v1").join(name).is_dir(),
            "box dir missing after success"
        );
        env.ok(["run", name, "--", "/bin/busybox", "true"]);
        true
    } else {
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert!(
            err.contains(mention),
            "the error should name {mention:?}:\n{err}"
        );
        assert!(err.contains("nothing was kept"), "{err}");
        assert_nothing_kept(env);
        false
    }
}

fn lstat(p: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(p).ok()
}

// ---------------------------------------------------------------------------
// Path attacks
// ---------------------------------------------------------------------------

#[test]
fn dotdot_entry_cannot_escape() {
    let a = Attack::new();
    let name = format!("{}{}/pwned", "../".repeat(12), a.outside_rel());
    let tar = Tarball::busybox()
        .file(name.as_bytes(), 0o644, b"pwned")
        .build();
    let img = a.write("dotdot.tar", &tar);
    let out = a.create(&img, "dd");
    failed_cleanly_or_created(&a.env, &out, "dd", "..");
    a.assert_outside_empty();
}

#[test]
fn absolute_entry_lands_inside_rootfs() {
    let a = Attack::new();
    let name = format!("{}/pwned", a.outside_abs());
    let tar = Tarball::busybox()
        .file(name.as_bytes(), 0o644, b"pwned")
        .build();
    let img = a.write("absolute.tar", &tar);
    let out = a.create(&img, "abs");
    if failed_cleanly_or_created(&a.env, &out, "abs", "pwned") {
        let inside = only_rootfs(&a.env).join(a.outside_rel()).join("pwned");
        assert_eq!(std::fs::read(&inside).unwrap(), b"pwned");
    }
    a.assert_outside_empty();
}

#[test]
fn symlink_to_outside_then_file_through_it() {
    let a = Attack::new();
    let tar = Tarball::busybox()
        .symlink(b"evil", a.outside_abs().as_bytes())
        .file(b"evil/pwned", 0o644, b"pwned")
        .build();
    let img = a.write("symlink-abs.tar", &tar);
    let out = a.create(&img, "sl");
    if failed_cleanly_or_created(&a.env, &out, "sl", "evil/pwned") {
        // Contained: the symlink resolved inside the rootfs.
        let inside = only_rootfs(&a.env).join(a.outside_rel()).join("pwned");
        assert_eq!(std::fs::read(&inside).unwrap(), b"pwned");
    }
    a.assert_outside_empty();
}

#[test]
fn relative_symlink_chain_then_file_through_it() {
    let a = Attack::new();
    let through = format!("evil2/{}/pwned", a.outside_rel());
    let tar = Tarball::busybox()
        .symlink(b"evil2", b"../../../../../../..")
        .file(through.as_bytes(), 0o644, b"pwned")
        .build();
    let img = a.write("symlink-rel.tar", &tar);
    let out = a.create(&img, "sl2");
    if failed_cleanly_or_created(&a.env, &out, "sl2", &through) {
        let inside = only_rootfs(&a.env).join(a.outside_rel()).join("pwned");
        assert_eq!(std::fs::read(&inside).unwrap(), b"pwned");
    }
    a.assert_outside_empty();
}

#[test]
fn symlink_to_a_directory_that_exists_in_the_rootfs_is_followed_inside() {
    // The canary path also exists inside the rootfs (made by earlier entries), so following
    // `evil` succeeds -- and must land inside.
    let a = Attack::new();
    let rel = a.outside_rel();
    let mut t = Tarball::busybox();
    let mut prefix = String::new();
    for comp in rel.split('/') {
        prefix = if prefix.is_empty() {
            comp.to_string()
        } else {
            format!("{prefix}/{comp}")
        };
        let h = raw_header(
            format!("{prefix}/").as_bytes(),
            EntryType::Directory,
            0o755,
            0,
            b"",
        );
        t.b.append(&h, std::io::empty()).unwrap();
    }
    let tar = t
        .symlink(b"evil", a.outside_abs().as_bytes())
        .file(b"evil/pwned", 0o644, b"pwned")
        .symlink(b"evil2", b"../../../../../../..")
        .file(format!("evil2/{rel}/pwned2").as_bytes(), 0o644, b"pwned2")
        .build();
    let img = a.write("symlink-existing.tar", &tar);
    let out = a.create(&img, "sl3");
    if failed_cleanly_or_created(&a.env, &out, "sl3", "evil") {
        let inside = only_rootfs(&a.env).join(&rel);
        assert_eq!(std::fs::read(inside.join("pwned")).unwrap(), b"pwned");
        assert_eq!(std::fs::read(inside.join("pwned2")).unwrap(), b"pwned2");
        // (Not checked from inside the box: boxes share the host's /tmp, where the canary is.)
    }
    a.assert_outside_empty();
}

// ---------------------------------------------------------------------------
// Hard links
// ---------------------------------------------------------------------------

fn host_file_state(p: &Path) -> (u64, u64, Vec<u8>) {
    let m = std::fs::metadata(p).unwrap();
    (m.nlink(), m.ino(), std::fs::read(p).unwrap())
}

#[test]
fn hardlink_with_dotdot_target_is_refused_or_contained() {
    let a = Attack::new();
    let before = host_file_state(Path::new("/etc/passwd"));
    let tar = Tarball::busybox()
        .hardlink(b"h", b"../../etc/passwd")
        .build();
    let img = a.write("hardlink-dotdot.tar", &tar);
    let out = a.create(&img, "hl");
    if failed_cleanly_or_created(&a.env, &out, "hl", "../../etc/passwd") {
        let h = only_rootfs(&a.env).join("h");
        if let Some(m) = lstat(&h) {
            assert_ne!(m.ino(), before.1, "h is a link to the host's /etc/passwd");
        }
    }
    assert_eq!(host_file_state(Path::new("/etc/passwd")), before);
    a.assert_outside_empty();
}

#[test]
fn hardlink_to_absolute_host_file_does_not_link_it() {
    let a = Attack::new();
    let host = Path::new("/etc/hostname");
    let before = host_file_state(host);
    // A file the test user owns, so the kernel would allow the link (protected_hardlinks).
    let victim = a.outside.join("victim");
    a.env.write_as_user(&victim, b"victim\n");
    let tar = Tarball::busybox().hardlink(b"h", b"/etc/hostname").build();
    let img = a.write("hardlink-abs.tar", &tar);
    let out = a.create(&img, "hl");
    if failed_cleanly_or_created(&a.env, &out, "hl", "etc/hostname") {
        let h = only_rootfs(&a.env).join("h");
        if let Some(m) = lstat(&h) {
            assert_ne!(m.ino(), before.1, "h is a link to the host's /etc/hostname");
        }
    }
    assert_eq!(host_file_state(host), before, "/etc/hostname changed");

    // Same with a file the test user owns (a fooled unpacker could link it).
    let tar = Tarball::busybox()
        .hardlink(b"h2", format!("{}/victim", a.outside_abs()).as_bytes())
        .build();
    let img = a.write("hardlink-victim.tar", &tar);
    let out = a.create(&img, "hl2");
    failed_cleanly_or_created(&a.env, &out, "hl2", "victim");
    let m = std::fs::metadata(&victim).unwrap();
    assert_eq!(m.nlink(), 1, "the victim gained a link");
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n");
    assert_eq!(a.outside_names(), ["victim"]);
}

// ---------------------------------------------------------------------------
// Replacement of a symlink by a file
// ---------------------------------------------------------------------------

#[test]
fn file_entry_replaces_symlink_instead_of_writing_through_it() {
    let a = Attack::new();
    let victim = a.outside.join("victim");
    a.env.write_as_user(&victim, b"original\n");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
    let tar = Tarball::busybox()
        .symlink(b"x", format!("{}/victim", a.outside_abs()).as_bytes())
        .file(b"x", 0o644, b"replaced\n")
        .build();
    let img = a.write("replace.tar", &tar);
    a.env.ok(["create", img.to_str().unwrap(), "--name", "rp"]);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"original\n",
        "written through the symlink"
    );
    let x = only_rootfs(&a.env).join("x");
    let m = lstat(&x).unwrap();
    assert!(m.file_type().is_file(), "x should be a regular file now");
    assert_eq!(std::fs::read(&x).unwrap(), b"replaced\n");
    assert_eq!(
        a.env.ok(["run", "rp", "--", "/bin/busybox", "cat", "/x"]),
        "replaced\n"
    );
    assert_eq!(a.outside_names(), ["victim"]);
}

// ---------------------------------------------------------------------------
// Special files, modes and owners
// ---------------------------------------------------------------------------

#[test]
fn device_nodes_are_skipped_with_a_message() {
    let a = Attack::new();
    let tar = Tarball::busybox()
        .device(b"dev/evilnull", EntryType::Char)
        .device(b"dev/evilsda", EntryType::Block)
        .build();
    let img = a.write("devices.tar", &tar);
    let out = a.create(&img, "dv");
    let err = stderr(&out);
    assert!(out.status.success(), "stderr: {err}");
    assert!(
        err.contains("device nodes"),
        "no message about skipped device nodes:\n{err}"
    );
    assert!(
        err.contains('2'),
        "the message should count the 2 devices:\n{err}"
    );
    let root = only_rootfs(&a.env);
    assert!(lstat(&root.join("dev/evilnull")).is_none());
    assert!(lstat(&root.join("dev/evilsda")).is_none());
    a.env.ok(["run", "dv", "--", "/bin/busybox", "true"]);
    a.assert_outside_empty();
    // --quiet reaches the unpack helper: nothing but errors.
    let env = TestEnv::new();
    let out = env.run(["create", "-q", img.to_str().unwrap(), "--name", "dq"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((stdout(&out), stderr(&out)), (String::new(), String::new()));
}

#[test]
fn setuid_bit_is_kept_and_owner_is_mapped() {
    let env = TestEnv::new();
    let tar = Tarball::busybox()
        .file(b"usr/bin/suid", 0o4755, b"#!/bin/sh\n")
        .build();
    let img = write_image(&env, "suid.tar", &tar);
    env.ok(["create", img.to_str().unwrap(), "--name", "su"]);
    let inside = env.ok([
        "run",
        "su",
        "--",
        "/bin/busybox",
        "stat",
        "-c",
        "%a %u",
        "/usr/bin/suid",
    ]);
    assert_eq!(inside.trim(), "4755 0");
    let m = std::fs::metadata(only_rootfs(&env).join("usr/bin/suid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!(
        m.uid(),
        subuid_start(),
        "in-box root should be the first subordinate uid"
    );
}

#[test]
fn file_owner_is_mapped_into_the_subordinate_range() {
    let env = TestEnv::new();
    let tar = Tarball::busybox()
        .file_owned(b"home/owned42", 0o640, 42, b"42\n")
        .build();
    let img = write_image(&env, "owner.tar", &tar);
    env.ok(["create", img.to_str().unwrap(), "--name", "ow"]);
    let m = std::fs::metadata(only_rootfs(&env).join("home/owned42")).unwrap();
    assert_eq!(m.uid(), subuid_start() + 42);
    assert_eq!(m.mode() & 0o7777, 0o640);
    let inside = env.ok([
        "run",
        "ow",
        "--",
        "/bin/busybox",
        "stat",
        "-c",
        "%u",
        "/home/owned42",
    ]);
    assert_eq!(inside.trim(), "42");
}

// ---------------------------------------------------------------------------
// Layout and compression
// ---------------------------------------------------------------------------

#[test]
fn nested_rootfs_directory_is_stripped() {
    let env = TestEnv::new();
    let tar = Tarball::busybox_under(Some("root.x86_64")).build();
    let img = write_image(&env, "nested.tar", &tar);
    let out = env.run(["create", img.to_str().unwrap(), "--name", "nest"]);
    let err = stderr(&out);
    assert!(out.status.success(), "stderr: {err}");
    assert!(
        err.contains("root.x86_64"),
        "the strip should be reported:\n{err}"
    );
    let root = only_rootfs(&env);
    assert!(root.join("bin/busybox").is_file());
    assert!(lstat(&root.join("root.x86_64")).is_none());
    env.ok(["run", "nest", "--", "/bin/busybox", "true"]);
}

/// The Arch bootstrap tarball's layout (archiso's mkarchiso since May 2024): the root in
/// `root.x86_64/`, with `pkglist.x86_64.txt` and `version` beside it.
#[test]
fn the_root_beside_plain_files_is_found_by_its_contents() {
    let env = TestEnv::new();
    let tar = Tarball::busybox_under(Some("root.x86_64"))
        .file(b"pkglist.x86_64.txt", 0o644, b"busybox 1.36\n")
        .file(b"version", 0o644, b"2026.12.01\n")
        .build();
    let img = write_image(&env, "archlike.tar", &tar);
    let out = env.run(["create", img.to_str().unwrap(), "--name", "arch"]);
    let err = stderr(&out);
    assert!(out.status.success(), "stderr: {err}");
    assert!(
        err.contains("root.x86_64/") && err.contains("pkglist.x86_64.txt, version"),
        "the decision should be printed:\n{err}"
    );
    let root = only_rootfs(&env);
    assert!(root.join("bin/busybox").is_file());
    assert!(lstat(&root.join("pkglist.x86_64.txt")).is_none());
    assert_eq!(env.sh("arch", "echo works"), "works\n");
}

/// An archive that unpacks but is no root file system (no shell, no /etc) is refused, and
/// nothing of it is kept.
#[test]
fn an_archive_without_a_usable_root_is_refused_and_nothing_kept() {
    let env = TestEnv::new();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [(&b"README"[..], &b"docs"[..]), (b"x.bin", b"xx")] {
        let h = raw_header(name, EntryType::Regular, 0o644, data.len() as u64, b"");
        b.append(&h, data).unwrap();
    }
    let img = write_image(&env, "notaroot.tar", &b.into_inner().unwrap());
    let out = env.run(["create", img.to_str().unwrap(), "--name", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no usable root file system") && err.contains("no /etc"),
        "{err}"
    );
    let images: Vec<_> = std::fs::read_dir(env.data().join("images-v1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert!(images.is_empty(), "{images:?}");
    assert!(env.ok(["list"]).contains("No boxes"));
}

fn assert_compressed_image_works(file: &str, bytes: &[u8]) {
    let env = TestEnv::new();
    let img = write_image(&env, file, bytes);
    env.ok(["create", img.to_str().unwrap(), "--name", "cz"]);
    env.ok(["run", "cz", "--", "/bin/busybox", "true"]);
    let root = only_rootfs(&env);
    assert!(root.join("bin/busybox").is_file());
}

#[test]
fn gzip_is_detected_by_magic_not_name() {
    let tar = std::fs::read(fixture("busybox")).unwrap();
    assert_compressed_image_works("plain.tar", &gzip(&tar));
}

#[test]
fn xz_is_detected() {
    let tar = std::fs::read(fixture("busybox")).unwrap();
    assert_compressed_image_works("rootfs.tar.xz", &xz(&tar));
}

#[test]
fn zstd_is_detected() {
    let tar = std::fs::read(fixture("busybox")).unwrap();
    assert_compressed_image_works("rootfs.tar.zst", &zstd(&tar));
}

// ---------------------------------------------------------------------------
// Broken input
// ---------------------------------------------------------------------------

#[test]
fn truncated_gzip_fails_and_keeps_nothing() {
    let env = TestEnv::new();
    let gz = gzip(&std::fs::read(fixture("busybox")).unwrap());
    let img = write_image(&env, "cut.tar.gz", &gz[..gz.len() / 2]);
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "cut"]);
    assert!(
        err.contains("truncated") || err.contains("corrupt"),
        "{err}"
    );
    assert!(err.contains("nothing was kept"), "{err}");
    assert_nothing_kept(&env);
}

#[test]
fn not_an_archive_fails_clearly() {
    let env = TestEnv::new();
    let text =
        "<html><body>This is not the tarball you are looking for.</body></html>\n".repeat(100);
    let img = write_image(&env, "page.tar", text.as_bytes());
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "na"]);
    assert!(err.contains("archive"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert_nothing_kept(&env);

    // Shorter than one tar block.
    let img = write_image(&env, "short.tar", b"404 Not Found\n");
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "na"]);
    assert!(err.contains("archive"), "{err}");
    assert_nothing_kept(&env);
}

/// Control characters in stderr other than newlines (terminal escape sequences, BEL, CR).
fn control_chars(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_control() && *c != '\n').collect()
}

#[test]
fn archive_bytes_are_not_echoed_raw_to_the_terminal() {
    // A hostile "archive" must not be able to write escape sequences to the user's terminal
    // through devbox's error messages.
    let env = TestEnv::new();
    let mut junk = b"\x1b]0;owned\x07\x1b[2J\x1b[31mEVIL\r\n".repeat(40);
    junk.resize(2048, b'x');
    let img = write_image(&env, "junk.tar", &junk);
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "junk"]);
    assert!(
        control_chars(&err).is_empty(),
        "raw control characters in stderr: {err:?}"
    );
    assert!(
        !err.contains("EVIL"),
        "the file's bytes are echoed: {err:?}"
    );
    assert_nothing_kept(&env);

    // A well-formed header (valid checksum) whose name holds escape sequences and whose uid
    // field is garbage.
    let mut h = raw_header(
        b"\x1b]0;owned\x07\x1b[2Jname",
        EntryType::Regular,
        0o644,
        0,
        b"",
    );
    h.as_gnu_mut().unwrap().uid = *b"zzzzzzz\0";
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, std::io::empty()).unwrap();
    let img = write_image(&env, "badname.tar", &b.into_inner().unwrap());
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "junk"]);
    assert!(
        control_chars(&err).is_empty(),
        "raw control characters in stderr: {err:?}"
    );
    assert_nothing_kept(&env);

    // A refused entry with escape sequences in its name.
    let tar = Tarball::busybox()
        .file(b"../\x1b]0;owned\x07", 0o644, b"x")
        .build();
    let img = write_image(&env, "badname2.tar", &tar);
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "junk"]);
    assert!(
        control_chars(&err).is_empty(),
        "raw control characters in stderr: {err:?}"
    );
    assert_nothing_kept(&env);
}

#[test]
fn empty_file_is_not_an_image() {
    let env = TestEnv::new();
    let img = write_image(&env, "empty.tar", b"");
    let err = env.fails(1, ["create", img.to_str().unwrap(), "--name", "empty"]);
    assert!(err.contains("empty") || err.contains("archive"), "{err}");
    assert_nothing_kept(&env);
}

#[test]
fn nonexistent_path_says_what_image_is() {
    let env = TestEnv::new();
    let missing = env.root.join("no-such-rootfs.tar.gz");
    let err = env.fails(1, ["create", missing.to_str().unwrap(), "--name", "nx"]);
    assert!(err.contains("no-such-rootfs.tar.gz"), "{err}");
    assert!(err.contains("IMAGE"), "{err}");
    assert!(err.contains("URL"), "{err}");
    assert_nothing_kept(&env);
}

// ---------------------------------------------------------------------------
// Sparse members and free space
// ---------------------------------------------------------------------------

const GIB: u64 = 1 << 30;

/// Data of the sparse test file: (offset, bytes). Six regions, so GNU tar needs an extension
/// header for the map (the GNU header holds four); a trailing hole from 3 GiB to 4 GiB.
fn sparse_regions() -> Vec<(u64, Vec<u8>)> {
    vec![
        (0, b"head".to_vec()),
        (GIB / 2 + 7, b"a".to_vec()),
        (GIB + 1234, b"middle".to_vec()),
        (2 * GIB, vec![0x5a; 8192]),
        (5 * GIB / 2, b"b".to_vec()),
        // Across a 4 KiB boundary.
        (3 * GIB - 3, b"near the end".to_vec()),
    ]
}

/// Fails the test unless `tar` is GNU tar (the only common tar that writes GNU sparse
/// members).
fn require_gnu_tar() {
    let out = std::process::Command::new("tar")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs GNU tar (with --sparse) to build its archive: cannot run `tar`: {e}; install GNU tar (Debian: apt-get install tar)")
        });
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.contains("GNU tar"),
        "this test needs GNU tar (with --sparse) to build its archive; `tar --version` says:\n{version}"
    );
}

/// The busybox rootfs plus `opt/sparse.img`, a 4 GiB GNU sparse member holding only
/// [`sparse_regions`], appended by GNU tar. Checks that it is that small and that sparse.
fn sparse_image(env: &TestEnv) -> PathBuf {
    require_gnu_tar();
    let src = env.root.join("sparse-src");
    std::fs::create_dir_all(src.join("opt")).unwrap();
    let file = std::fs::File::create(src.join("opt/sparse.img")).unwrap();
    file.set_len(4 * GIB).unwrap();
    for (off, bytes) in sparse_regions() {
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes, off).unwrap();
    }
    drop(file);
    let img = write_image(env, "sparse.tar", &Tarball::busybox().build());
    let out = std::process::Command::new("tar")
        .args([
            "--format=gnu",
            "--sparse",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
        ])
        .arg("-rf")
        .arg(&img)
        .arg("-C")
        .arg(&src)
        .arg("opt/sparse.img")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GNU tar --sparse failed: {}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&src).unwrap();

    let size = std::fs::metadata(&img).unwrap().len();
    let busybox = std::fs::metadata(fixture("busybox")).unwrap().len();
    assert!(
        size < busybox + (1 << 20),
        "the archive is {size} bytes: tar did not write a sparse member"
    );
    let mut archive = tar::Archive::new(std::fs::File::open(&img).unwrap());
    let member = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"opt/sparse.img")
        .expect("opt/sparse.img is in the archive");
    assert_eq!(member.header().entry_type(), EntryType::GNUSparse);
    assert!(
        member.header().as_gnu().unwrap().is_extended(),
        "the sparse map should need an extension header"
    );
    img
}

/// Checks the unpacked `opt/sparse.img`: full size, its data where it belongs, zeros around,
/// and (almost) nothing allocated.
fn assert_sparse_file(p: &Path) {
    use std::os::unix::fs::FileExt;
    let m = std::fs::metadata(p).unwrap();
    assert_eq!(m.len(), 4 * GIB, "apparent size");
    let allocated = m.blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "{allocated} bytes allocated for 4 GiB holding 8 KiB of data: the holes were written"
    );
    let f = std::fs::File::open(p).unwrap();
    for (off, bytes) in sparse_regions() {
        // With the byte before (if any) and after: zeros.
        let before = off.min(1);
        let mut want = vec![0u8; before as usize];
        want.extend_from_slice(&bytes);
        want.push(0);
        let mut around = vec![0xffu8; want.len()];
        f.read_exact_at(&mut around, off - before)
            .unwrap_or_else(|e| panic!("at {off}: {e}"));
        assert!(around == want, "wrong data at offset {off}");
    }
    let mut tail = [0xffu8; 4096];
    f.read_exact_at(&mut tail, 4 * GIB - 4096).unwrap();
    assert!(
        tail.iter().all(|&b| b == 0),
        "the trailing hole is not zeros"
    );
}

#[test]
fn sparse_member_stays_sparse() {
    let env = TestEnv::new();
    let img = sparse_image(&env);
    env.ok(["create", img.to_str().unwrap(), "--name", "sp"]);
    assert_sparse_file(&only_rootfs(&env).join("opt/sparse.img"));
    // The box sees the same file.
    let inside = env.sh(
        "sp",
        "stat -c %s /opt/sparse.img && \
         dd if=/opt/sparse.img bs=1M skip=1024 count=1 2>/dev/null | head -c 1240 | tail -c 6",
    );
    assert_eq!(inside, "4294967296\nmiddle");
}

/// A tmpfs of a few MiB, mounted (as root) and given to the test user; unmounted when dropped,
/// also when the test fails.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> SmallFs {
        assert!(
            is_root(),
            "this test mounts a small tmpfs, which needs root: run the integration tests as root (as CI does, after `sudo tests/setup.sh`)"
        );
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs on {}: {e}", dir.display()));
        let fs = SmallFs { dir };
        if let Some(u) = test_user() {
            std::os::unix::fs::chown(&fs.dir, Some(u.uid), Some(u.gid)).unwrap();
        }
        fs
    }

    /// Bytes in use.
    fn used(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).unwrap();
        (st.blocks() - st.blocks_free()) * st.fragment_size()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if nix::mount::umount(&self.dir).is_err() {
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn archive_larger_than_the_free_space_fails_and_keeps_nothing() {
    let env = TestEnv::new();
    let small = SmallFs::mount(env.root.join("small"), "8m");
    let tar = Tarball::busybox()
        .file(b"opt/big", 0o644, &vec![0x42; 32 << 20])
        .build();
    let img = write_image(&env, "big.tar", &tar);
    let out = env
        .cmd(["create", img.to_str().unwrap(), "--name", "big"])
        .env("XDG_DATA_HOME", &small.dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("nothing was kept: not enough disk space for \"opt/big\" (32.0 MiB): only "),
        "{err}"
    );
    assert!(err.contains(" free on the file system of "), "{err}");
    assert!(err.contains("hint: free some space"), "{err}");
    assert!(err.contains("XDG_DATA_HOME"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    let store = small.dir.join("devbox");
    let images: Vec<String> = names(&store.join("images-v1"))
        .into_iter()
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(images, Vec::<String>::new(), "left in images-v1");
    assert_eq!(names(&store.join("boxes-v1")), Vec::<String>::new());
    // The busybox files unpacked before the failure are gone too.
    assert!(small.used() < 1 << 20, "{} bytes still used", small.used());

    // What the hint says works: elsewhere it fits.
    env.ok(["create", img.to_str().unwrap(), "--name", "big"]);
    assert_eq!(
        std::fs::metadata(only_rootfs(&env).join("opt/big"))
            .unwrap()
            .len(),
        32 << 20
    );
}

#[test]
fn sparse_member_larger_than_the_file_system_fits() {
    // 4 GiB apparent, a few KiB of data: it fits in an 8 MiB file system.
    let env = TestEnv::new();
    let img = sparse_image(&env);
    let small = SmallFs::mount(env.root.join("small"), "8m");
    let out = env
        .cmd(["image", "pull", img.to_str().unwrap()])
        .env("XDG_DATA_HOME", &small.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let images = small.dir.join("devbox/images-v1");
    let ids: Vec<String> = names(&images)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_sparse_file(&images.join(&ids[0]).join("rootfs/opt/sparse.img"));
}
