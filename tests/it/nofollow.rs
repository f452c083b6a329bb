//! What devbox writes into a box when it starts (passwd, group and shadow entries, the sudoers
//! rule, /run/.containerenv, the files and directories it mounts onto) never follows a symlink
//! the image planted: a hostile image cannot make devbox write, create or chown anything in the
//! user's home or elsewhere on the host, whether its links name the home as the box sees it
//! (`/home/...`, bound from the host) or the host's root (`/run/host/...`).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::harness::*;

fn user_name() -> String {
    test_user()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_default())
}

/// The busybox fixture with more entries: files, directories and planted symlinks.
struct Image {
    b: tar::Builder<Vec<u8>>,
}

impl Image {
    fn busybox() -> Image {
        Image::busybox_without(&[])
    }

    /// The fixture's entries but those named in `skip` (as the fixture names them, `./run/`).
    fn busybox_without(skip: &[&str]) -> Image {
        let mut b = tar::Builder::new(Vec::new());
        let file = std::fs::File::open(fixture("busybox")).unwrap();
        let mut archive = tar::Archive::new(file);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if skip.iter().any(|s| e.path_bytes().as_ref() == s.as_bytes()) {
                continue;
            }
            let h = e.header().clone();
            b.append(&h, &mut e).unwrap();
        }
        Image { b }
    }

    fn header(kind: EntryType, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h
    }

    fn file(mut self, name: &str, mode: u32, data: &str) -> Self {
        let mut h = Image::header(EntryType::Regular, mode);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, name, data.as_bytes()).unwrap();
        self
    }

    fn dir(mut self, name: &str, mode: u32) -> Self {
        let mut h = Image::header(EntryType::Directory, mode);
        self.b.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    fn link(mut self, name: &str, target: &str) -> Self {
        let mut h = Image::header(EntryType::Symlink, 0o777);
        self.b.append_link(&mut h, name, target).unwrap();
        self
    }

    /// Writes the tarball where the test user can read it; returns its path.
    fn save(self, env: &TestEnv, name: &str) -> PathBuf {
        let data = self.b.into_inner().unwrap();
        let path = env.root.join(format!("{name}.tar"));
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

/// Everything in the home but devbox's own data: kind, owner, mode and contents of each entry.
fn snapshot(home: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(home: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(home).unwrap().to_path_buf();
            if rel.starts_with(".local/share/devbox") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            out.insert(
                rel,
                format!("{what} {}:{} {:o}", m.uid(), m.gid(), m.mode() & 0o7777),
            );
            if m.is_dir() {
                walk(home, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(home, home, &mut out);
    out
}

/// Victim files and a victim directory in the home, owned by the test user.
fn plant_victims(env: &TestEnv) {
    for name in [
        "victim-passwd",
        "victim-group",
        "victim-shadow",
        "victim-containerenv",
        "victim-sudoers",
        "victim-hosts",
    ] {
        env.write_as_user(&env.home.join(name), b"precious\n");
    }
    env.mkdir_as_user(&env.home.join("victim-dir"));
    env.write_as_user(&env.home.join("victim-dir/keep"), b"precious\n");
}

/// The paths a link of the image names to reach `name` in the home: as the box sees the home
/// (bound at its host path) or through the host's root.
fn in_home(env: &TestEnv, via_host_root: bool, name: &str) -> String {
    let p = env.home.join(name);
    if via_host_root {
        format!("/run/host{}", p.display())
    } else {
        p.display().to_string()
    }
}

fn assert_home_unchanged(env: &TestEnv, before: &BTreeMap<PathBuf, String>, what: &str) {
    let after = snapshot(&env.home);
    for (p, was) in before {
        assert_eq!(after.get(p), Some(was), "{what}: {} changed", p.display());
    }
    let new: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(new.is_empty(), "{what}: new in the home: {new:?}");
}

/// Links at every file devbox writes at box start, and at the temporary names it used.
fn links_at_every_written_file(env: &TestEnv, via_host_root: bool) {
    let user = user_name();
    let home = |name: &str| in_home(env, via_host_root, name);
    let image = Image::busybox()
        .file("etc/shadow", 0o640, "root:*:19000:0:99999:7:::\n")
        .link("etc/passwd.devbox-tmp", &home("victim-passwd"))
        .link("etc/group.devbox-tmp", &home("new-group"))
        .link("etc/shadow.devbox-tmp", &home("victim-shadow"))
        .link("run/.containerenv", &home("victim-containerenv"))
        .link("etc/hosts", &home("victim-hosts"))
        .dir("etc/sudoers.d", 0o750)
        .link(
            &format!("etc/sudoers.d/devbox-{user}"),
            &home("victim-sudoers"),
        )
        .link(
            &format!("etc/sudoers.d/.devbox-{user}.devbox-tmp"),
            &home("new-sudoers"),
        )
        .save(env, "planted");
    env.ok(["create", &image.display().to_string(), "--name", "pl"]);
    plant_victims(env);
    let before = snapshot(&env.home);

    // The box works: the user is known, the markers are there.
    assert_eq!(env.ok(["run", "pl", "--", "id", "-un"]).trim(), user);
    assert_home_unchanged(env, &before, "after the first start");

    // What was written replaced the links, in the box's own layer.
    let check = format!(
        "for f in /etc/passwd /etc/group /etc/shadow /run/.containerenv /etc/sudoers.d/devbox-{user}; do \
           if test -L $f || ! test -f $f; then echo \"$f is not a file\"; fi; done; \
         grep -c '^{user}:' /etc/passwd /etc/shadow; grep -c '^engine=\"devbox\"$' /run/.containerenv; \
         grep -c NOPASSWD /etc/sudoers.d/devbox-{user}"
    );
    let out = env.ok(["run", "pl", "--root", "--", "sh", "-c", &check]);
    assert_eq!(
        out, "/etc/passwd:1\n/etc/shadow:1\n1\n1\n",
        "in the box after the start"
    );
    assert_home_unchanged(env, &before, "after the checks");
}

#[test]
fn nofollow_links_into_the_home_at_written_files_are_not_followed() {
    let env = TestEnv::new();
    links_at_every_written_file(&env, false);
}

#[test]
fn nofollow_links_through_run_host_at_written_files_are_not_followed() {
    let env = TestEnv::new();
    links_at_every_written_file(&env, true);
}

/// `/etc/sudoers.d` as a link to a directory of the home: the rule is not written there (the
/// start warns and goes on without it).
#[test]
fn nofollow_a_linked_sudoers_directory_is_not_written_into() {
    let env = TestEnv::new();
    plant_victims(&env);
    for (name, via_host_root) in [("sd", false), ("sdh", true)] {
        let image = Image::busybox()
            .link("etc/sudoers.d", &in_home(&env, via_host_root, "victim-dir"))
            .save(&env, name);
        env.ok(["create", &image.display().to_string(), "--name", name]);
        let before = snapshot(&env.home);
        let out = env.run(["run", name, "--", "id", "-un"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), user_name());
        let err = stderr(&out);
        assert!(
            err.contains("cannot write the sudoers rule") && err.contains("sudoers.d"),
            "{err}"
        );
        assert_home_unchanged(&env, &before, name);
    }
}

/// `/run` as a link to the home: the host's root is not put there (nothing is created in the
/// home), the start is refused with a reason.
#[test]
fn nofollow_a_linked_run_directory_refuses_the_start() {
    let env = TestEnv::new();
    plant_victims(&env);
    for (name, target) in [
        ("rl", in_home(&env, false, "victim-dir")),
        ("rr", "../tmp".to_string()),
    ] {
        let image = Image::busybox_without(&["./run/"])
            .link("run", &target)
            .save(&env, name);
        env.ok(["create", &image.display().to_string(), "--name", name]);
        let before = snapshot(&env.home);
        let out = env.run(["run", name, "--", "true"]);
        assert!(!out.status.success(), "{name} started");
        let err = stderr(&out);
        assert!(err.contains("/run") && err.contains("symlink"), "{err}");
        assert_home_unchanged(&env, &before, name);
        // Before the box's root is entered, a relative link leads out of it into devbox's
        // own data: nothing is made there either.
        let left: Vec<_> = std::fs::read_dir(env.data().join("boxes-v1").join(name))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!left.iter().any(|n| n == "tmp"), "{left:?}");
    }
}

/// Mount points devbox creates: a link of the image never leads their creation into the host's
/// root, nor out of the box's own file system into a directory bound from the host.
#[test]
fn nofollow_mount_points_are_not_created_through_links() {
    let env = TestEnv::new();
    plant_victims(&env);
    let data = env.root.join("data");
    env.mkdir_as_user(&data);

    // /tmp (bound from the host's /tmp) as a link to a new directory in the host's home.
    let image = Image::busybox()
        .link("opt", "/tmp")
        .link("mnt", &in_home(&env, true, "made-by-mnt"))
        .save(&env, "mp");
    env.ok(["create", &image.display().to_string(), "--name", "mp"]);
    let before = snapshot(&env.home);

    // A mount whose target is a link to the host's root: refused.
    env.ok([
        "config",
        "mp",
        "--mount",
        &format!("{}:/mnt", data.display()),
    ]);
    let out = env.run(["run", "mp", "--", "true"]);
    assert!(!out.status.success(), "mp started");
    let err = stderr(&out);
    assert!(err.contains("/mnt") && err.contains("/run/host"), "{err}");
    assert_home_unchanged(&env, &before, "mount on /mnt");

    // A mount target that a link leads into /tmp (bound from the host): not created there.
    let target = format!(
        "/opt/{}",
        env.home
            .join("made-by-opt")
            .strip_prefix("/tmp")
            .unwrap()
            .display()
    );
    env.ok(["config", "mp", "--unmount", "/mnt"]);
    env.ok([
        "config",
        "mp",
        "--mount",
        &format!("{}:{target}", data.display()),
    ]);
    let out = env.run(["run", "mp", "--", "true"]);
    assert!(!out.status.success(), "mp started");
    let err = stderr(&out);
    assert!(err.contains(&target), "{err}");
    assert_home_unchanged(&env, &before, "mount through /opt");

    // The box still starts once the mount is gone.
    env.ok(["config", "mp", "--unmount", &target]);
    assert_eq!(env.ok(["run", "mp", "--", "id", "-un"]).trim(), user_name());
    assert_home_unchanged(&env, &before, "without the mount");
}
