//! Roots built from a Debian-format package archive (catalog sources of kind `archive`).
//!
//! Two kinds of archive:
//! - the real one, reached through the host's apt configuration (the network these tests run
//!   on reaches a Debian mirror and nothing else): `devbox create debian` and `debian:12` make
//!   boxes in which `apt-get install hello` works as in-box root;
//! - a loopback archive built here: a few small packages (busybox for a shell, a stand-in
//!   `dpkg` that records its arguments), a Packages index, a Release signed with a throwaway
//!   OpenPGP key made by gpg, served by the download tests' server (which can cut a file off
//!   halfway and serve the rest to a Range request). The failure cases run against it: a bad
//!   signature, an unsigned Release, a missing package, a hash mismatch, an unknown suite.
//!   Served as suite `noble`, it also stands in for an Ubuntu mirror under the built-in
//!   `ubuntu` entry's own archive source (no Ubuntu mirror is reachable where these tests run).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::download::serving;
use crate::harness::*;
use crate::http::Server;

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn host_arch() -> String {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg is needed to build the test archive: run `sudo tests/setup.sh`");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}: run `sudo tests/setup.sh`"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n  (run `sudo tests/setup.sh` if a tool is missing)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One package of the test archive.
struct Pkg {
    name: &'static str,
    /// Control fields besides Package, Version, Architecture, Maintainer, Description.
    fields: &'static str,
    /// Below the archive root.
    filename: String,
}

/// What a suite's Release says of itself.
struct Dist {
    origin: &'static str,
    suite: &'static str,
    /// Also the directory under `dists/`.
    codename: &'static str,
}

/// The test archive's own suite: `testing`, codename `fake`.
const FAKE: Dist = Dist {
    origin: "devbox-tests",
    suite: "testing",
    codename: "fake",
};

/// A signed loopback archive with one suite (`fake` unless built with [`Archive::build_as`]),
/// component `main`.
struct Archive {
    root: PathBuf,
    dist: Dist,
    gnupg: PathBuf,
    arch: String,
    pkgs: Vec<Pkg>,
    /// The public key, binary (what /usr/share/keyrings holds).
    keyring: PathBuf,
}

/// Bytes that do not compress, so half a file is half its size.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl Archive {
    fn build(env: &TestEnv) -> Archive {
        Archive::build_as(env, FAKE)
    }

    fn build_as(env: &TestEnv, dist: Dist) -> Archive {
        let top = env.root.join("archive-src");
        let root = env.root.join("archive");
        std::fs::create_dir_all(&top).unwrap();
        let arch = host_arch();
        let mut pkgs = Vec::new();
        let mut add = |name: &'static str,
                       fields: &'static str,
                       dir: &str,
                       files: &[(&str, Vec<u8>, u32)],
                       links: &[(&str, &str)]| {
            let tree = top.join(name);
            std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
            std::fs::write(
                tree.join("DEBIAN/control"),
                format!("Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: devbox tests <tests@devbox.invalid>\nDescription: test package {name}\n"),
            )
            .unwrap();
            for (path, data, mode) in files {
                let p = tree.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, data).unwrap();
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                    .unwrap();
            }
            for (path, target) in links {
                let p = tree.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, p).unwrap();
            }
            let filename = format!("pool/{dir}/{name}_1_all.deb");
            let out = root.join(&filename);
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            run(
                Command::new("dpkg-deb")
                    .args(["--root-owner-group", "-Zgzip", "--build"])
                    .arg(&tree)
                    .arg(&out),
                "dpkg-deb --build",
            );
            pkgs.push(Pkg {
                name,
                fields,
                filename,
            });
        };
        let busybox = std::fs::read("/bin/busybox")
            .expect("/bin/busybox is missing: run `sudo tests/setup.sh` (busybox-static)");
        add(
            "base-files",
            "Essential: yes\nPriority: required\nDepends: libfake (>= 1)",
            "main/b",
            &[
                ("usr/bin/busybox", busybox, 0o755),
                ("etc/fake-release", b"fake 1\n".to_vec(), 0o644),
                // A stand-in for dpkg: it records how it was called.
                (
                    "usr/bin/dpkg",
                    b"#!/bin/sh\necho \"$@\" > /var/lib/dpkg/fake-install.log\n".to_vec(),
                    0o755,
                ),
            ],
            // `./bin/` in the package, while /bin links to usr/bin in the root.
            &[("usr/bin/sh", "busybox"), ("bin/cat", "busybox")],
        );
        // Cut off halfway on its first download (a `flaky/` path).
        add(
            "libfake",
            "Priority: optional",
            "flaky",
            &[("usr/lib/libfake.data", noise(300_000), 0o644)],
            &[],
        );
        add(
            "apt",
            "Priority: important\nDepends: fake-virtual | nowhere",
            "main/a",
            &[("usr/bin/apt", b"#!/bin/sh\n".to_vec(), 0o755)],
            &[],
        );
        add(
            "provider",
            "Priority: optional\nProvides: fake-virtual",
            "main/p",
            &[("usr/share/provider", b"x\n".to_vec(), 0o644)],
            &[],
        );
        add(
            "unrelated",
            "Priority: optional",
            "main/u",
            &[("usr/share/unrelated", b"x\n".to_vec(), 0o644)],
            &[],
        );

        let gnupg = env.root.join("gnupg");
        let keyring = env.root.join("test-archive-keyring.gpg");
        std::fs::write(&keyring, new_key(&gnupg)).unwrap();
        let a = Archive {
            root,
            dist,
            gnupg,
            arch,
            pkgs,
            keyring,
        };
        a.index(|_, f| f.to_string());
        a
    }

    fn dists(&self) -> PathBuf {
        self.root.join("dists").join(self.dist.codename)
    }

    /// Writes Packages (each stanza's fields through `edit`), Release and a signed InRelease.
    fn index(&self, edit: impl Fn(&str, &str) -> String) {
        let mut packages = String::new();
        for p in &self.pkgs {
            let data = std::fs::read(self.root.join(&p.filename)).unwrap();
            packages.push_str(&format!(
                "Package: {}\nVersion: 1\nArchitecture: all\n{}\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                p.name,
                edit(p.name, p.fields),
                p.filename,
                data.len(),
                sha256_hex(&data)
            ));
        }
        let bin = self.dists().join(format!("main/binary-{}", self.arch));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        let release = format!(
            "Origin: {}\nSuite: {}\nCodename: {}\nArchitectures: all {}\nComponents: main\nSHA256:\n {} {} main/binary-{}/Packages\n",
            self.dist.origin,
            self.dist.suite,
            self.dist.codename,
            self.arch,
            sha256_hex(packages.as_bytes()),
            packages.len(),
            self.arch
        );
        std::fs::write(self.dists().join("Release"), &release).unwrap();
        self.sign();
    }

    fn sign(&self) {
        let _ = std::fs::remove_file(self.dists().join("InRelease"));
        run(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&self.gnupg)
                .args(["--batch", "--yes", "--clearsign", "--output"])
                .arg(self.dists().join("InRelease"))
                .arg(self.dists().join("Release")),
            "gpg --clearsign",
        );
    }

    /// The user configuration and catalog that point devbox's `debian` at this archive.
    fn configure(&self, env: &TestEnv, server: &Server) {
        let entry = format!(
            "id = \"debian\"\nname = \"Debian (test archive)\"\nfamily = \"apt\"\ndefault_release = \"1\"\n\n[[release]]\nname = \"1\"\nvars = {{ codename = \"fake\" }}\n\n[[release]]\nname = \"2\"\nvars = {{ codename = \"fakee\" }}\n\n[arch.archive]\n{a} = \"{a}\"\n\n[[source]]\nkind = \"archive\"\nsuite = \"{{codename}}\"\n",
            a = self.arch
        );
        self.configure_entry(env, server, "debian", &entry);
    }

    /// A user catalog holding `entry` as `ID.toml`, and the configuration that points
    /// devbox's archive of `id` at this archive.
    fn configure_entry(&self, env: &TestEnv, server: &Server, id: &str, entry: &str) {
        let config = env.home.join(".config/devbox");
        env.mkdir_as_user(&config);
        let catalog = env.home.join("catalog");
        env.mkdir_as_user(&catalog);
        env.write_as_user(&catalog.join(format!("{id}.toml")), entry.as_bytes());
        env.write_as_user(
            &config.join("config.toml"),
            format!(
                "catalog_dir = \"{}\"\n[archive_mirrors]\n{id} = \"{}\"\n[archive_keyrings]\n{id} = \"{}\"\n",
                catalog.display(),
                server.url("/archive"),
                self.keyring.display()
            )
            .as_bytes(),
        );
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.gnupg)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A throwaway signing key in a new gpg home `home`; its public key, binary.
fn new_key(home: &Path) -> Vec<u8> {
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run(
        Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args([
                "devbox test archive <archive@devbox.invalid>",
                "ed25519",
                "sign",
                "never",
            ]),
        "gpg --quick-gen-key (package gnupg)",
    );
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--export"])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty());
    out.stdout
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn debs_cached(env: &TestEnv) -> Vec<String> {
    names(&env.home.join(".cache/devbox/debs-v1"))
        .into_iter()
        .filter(|n| n.ends_with(".deb"))
        .collect()
}

/// No image, no staging dir, no box, no unverified package.
fn assert_nothing_kept(env: &TestEnv) {
    let images: Vec<String> = names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| n != ".lock")
        .collect();
    assert!(images.is_empty(), "images-v1 holds {images:?}");
    let boxes = names(&env.data().join("boxes-v1"));
    assert!(
        !boxes.iter().any(|n| n == "x" || n.starts_with(".tmp")),
        "a box was kept: {boxes:?}"
    );
    let partial: Vec<String> = names(&env.home.join(".cache/devbox/debs-v1"))
        .into_iter()
        .filter(|n| n.starts_with(".part"))
        .collect();
    assert!(partial.is_empty(), "partial downloads kept: {partial:?}");
}

#[test]
fn archive_makes_a_box_resumes_a_broken_download_and_reuses_the_cache() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);

    let out = env.run(["-v", "create", "debian", "--name", "fake"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // The stand-in dpkg ran in the new root over every package of the minbase set (Essential,
    // required, apt, their dependencies: an alternative and a virtual one), not `unrelated`.
    let log = env.sh("fake", "cat /var/lib/dpkg/fake-install.log");
    assert!(log.starts_with("--install --force-depends"), "{log}");
    assert_eq!(log.matches(".deb").count(), 4, "{log}");
    assert_eq!(env.sh("fake", "cat /etc/fake-release"), "fake 1\n");
    let sources = env.sh("fake", "cat /etc/apt/sources.list");
    assert!(
        sources.contains(&format!("deb {} fake main", server.url("/archive"))),
        "{sources}"
    );
    // The signature was checked with the configured keyring.
    assert!(err.contains("signature verified with"), "{err}");
    // libfake was cut off halfway and resumed.
    assert!(err.contains("resuming"), "{err}");
    assert_eq!(server.hits("/archive/pool/flaky/libfake_1_all.deb"), 2);
    assert_eq!(debs_cached(&env).len(), 4);
    assert_eq!(server.hits("/archive/pool/main/u/unrelated_1_all.deb"), 0);

    // The same package set is the same image: found in the store, nothing downloaded.
    env.ok(["rm", "--force", "fake"]);
    let out = env.run(["create", "debian", "--name", "again"]);
    assert!(stderr(&out).contains("from the store"), "{}", stderr(&out));
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 1);
    assert_eq!(env.sh("again", "test -L /bin && echo link"), "link\n");
    // Without the image, the packages come from the cache.
    env.ok(["rm", "--force", "again"]);
    let ids: Vec<String> = names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    env.ok(["image", "rm", &ids[0]]);
    let out = env.run(["create", "debian", "--name", "third"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Using 4 packages from the cache"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 1);
    assert_eq!(env.sh("third", "cat /etc/fake-release"), "fake 1\n");
}

#[test]
fn archive_with_a_bad_signature_keeps_nothing() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    // The signed text changed after signing.
    let inrelease = archive.dists().join("InRelease");
    let text = std::fs::read_to_string(&inrelease).unwrap();
    std::fs::write(&inrelease, text.replace("Codename: fake", "Codename: evil")).unwrap();
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("no signature verifies"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 0);
    assert_nothing_kept(&env);

    // Signed by a key the keyring does not hold.
    archive.sign();
    let stranger = env.root.join("stranger");
    let other = env.root.join("other-key.gpg");
    std::fs::write(&other, new_key(&stranger)).unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&stranger)
        .args(["--kill", "gpg-agent"])
        .output();
    let config = env.home.join(".config/devbox/config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &archive.keyring.display().to_string(),
        &other.display().to_string(),
    );
    env.write_as_user(&config, text.as_bytes());
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("no signature verifies"), "{err}");
    assert!(err.contains("other-key.gpg"), "{err}");
    assert_nothing_kept(&env);

    // An unsigned Release is no InRelease.
    std::fs::copy(archive.dists().join("Release"), &inrelease).unwrap();
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("not an OpenPGP clear-signed file"), "{err}");
    assert_nothing_kept(&env);
}

#[test]
fn archive_missing_a_package_names_it_and_keeps_nothing() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    archive.index(|name, f| {
        if name == "base-files" {
            f.replace(
                "Depends: libfake (>= 1)",
                "Depends: libfake, libgone (>= 2)",
            )
        } else {
            f.to_string()
        }
    });
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(
        err.contains("the suite lacks 1 package: libgone (needed by base-files)"),
        "{err}"
    );
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 0);
    assert_nothing_kept(&env);
}

#[test]
fn archive_hash_mismatches_keep_nothing() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    // A package that is not what the index says.
    let deb = archive.root.join("pool/main/a/apt_1_all.deb");
    let mut data = std::fs::read(&deb).unwrap();
    let listed = sha256_hex(&data);
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&deb, &data).unwrap();
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains("apt_1_all.deb"), "{err}");
    assert_nothing_kept(&env);
    // The packages that did verify may stay cached; the bad one is not.
    assert!(debs_cached(&env).iter().all(|n| !n.starts_with(&listed)));

    // An index that is not what the signed Release says (a new user: nothing cached).
    let env = TestEnv::new();
    archive.configure(&env, &server);
    data[last] ^= 0xff;
    std::fs::write(&deb, &data).unwrap();
    let packages = archive
        .dists()
        .join(format!("main/binary-{}/Packages", archive.arch));
    let mut text = std::fs::read_to_string(&packages).unwrap();
    text.push_str("Package: extra\nFilename: pool/x.deb\nSHA256: 00\n");
    std::fs::write(&packages, text).unwrap();
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("does not match its Release"), "{err}");
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert_nothing_kept(&env);
}

#[test]
fn archive_unknown_suite_offers_close_matches() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    // Release 2 names the suite `fakee`, which the archive does not have.
    let err = env.fails(1, ["create", "debian:2", "--name", "x"]);
    assert!(err.contains("has no suite \"fakee\""), "{err}");
    assert!(err.contains("did you mean fake?"), "{err}");
    assert_nothing_kept(&env);
}

/// The real archive through the host's apt configuration. On the network these tests run on,
/// the catalog's registry and image-server sources cannot be reached, so `debian` is built
/// from the archive; elsewhere an earlier source would win and the first assertion says so.
fn real_archive_box(image: &str, suite: &str) {
    let env = TestEnv::new();
    let out = env.run(["create", image, "--name", "deb"]);
    let err = stderr(&out);
    assert!(out.status.success(), "devbox create {image} failed:\n{err}");
    assert!(
        err.contains(&format!("Reading debian {suite}")) && err.contains("from the package archive"),
        "the image did not come from the package archive (this test expects a network that reaches the host's apt mirror and no registry or image server):\n{err}"
    );
    let sources = env.sh("deb", "cat /etc/apt/sources.list");
    assert!(sources.contains(&format!(" {suite} main")), "{sources}");
    let out = env.run([
        "run",
        "deb",
        "--root",
        "--",
        "sh",
        "-c",
        "apt-get update && apt-get install -y hello && dpkg --audit",
    ]);
    assert!(
        out.status.success(),
        "apt-get in the box failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(env.sh("deb", "hello"), "Hello, world!\n");
    // Every package is configured (dpkg --audit said nothing above), and as the user.
    assert_eq!(env.sh("deb", "id -u"), format!("{}\n", test_uid()));
}

fn test_uid() -> u32 {
    test_user().map_or_else(|| nix::unistd::getuid().as_raw(), |u| u.uid)
}

#[test]
fn debian_default_release_from_the_real_archive_installs_hello() {
    real_archive_box("debian", "trixie");
}

#[test]
fn debian_12_from_the_real_archive_installs_hello() {
    real_archive_box("debian:12", "bookworm");
}

#[test]
fn archive_bootstrap_takes_a_projects_packages_in_one_dpkg_run() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    let proj = env.home.join("proj");
    env.mkdir_as_user(&proj);
    env.write_as_user(
        &proj.join("devbox.toml"),
        b"[box]\nname = \"proj\"\nimage = \"debian\"\npackages = [\"unrelated\"]\n",
    );
    let out = env
        .cmd(["run", "--", "cat", "/var/lib/dpkg/fake-install.log"])
        .current_dir(&proj)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // One dpkg run over the minbase set and the project's package; no apt pass after it.
    assert_eq!(stdout(&out).matches(".deb").count(), 5, "{}", stdout(&out));
    assert!(
        err.contains("1 of the project's packages came with the image"),
        "{err}"
    );
    assert!(!err.contains("Installing 1 package"), "{err}");
    assert_eq!(server.hits("/archive/pool/main/u/unrelated_1_all.deb"), 1);
    // The catalog name itself still resolves to the image without the project's packages.
    let resolved = names(&env.data().join("resolved-v1"));
    assert!(resolved.is_empty(), "{resolved:?}");
}

#[test]
fn archive_release_of_another_suite_is_refused() {
    let env = TestEnv::new();
    let archive = Archive::build(&env);
    let server = serving(&archive.root);
    archive.configure(&env, &server);
    // Properly signed, but for another suite.
    let release = archive.dists().join("Release");
    let text = std::fs::read_to_string(&release).unwrap();
    std::fs::write(
        &release,
        text.replace(
            "Suite: testing\nCodename: fake",
            "Suite: oldstable\nCodename: old",
        ),
    )
    .unwrap();
    archive.sign();
    let err = env.fails(1, ["create", "debian", "--name", "x"]);
    assert!(err.contains("describes suite \"oldstable\""), "{err}");
    assert_nothing_kept(&env);
}

/// The built-in `ubuntu` entry (images/ubuntu.toml) with only its `archive` sources: its
/// header, releases and arch tables as they are, every `[[source]]` block of another kind
/// dropped (they name servers beyond loopback), and with them the releases only those served
/// (a release without a source is refused when the catalog is loaded).
fn builtin_ubuntu_archive_only() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/ubuntu.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Blocks start at a table header; comments above a header stay with the block before.
    let mut blocks: Vec<String> = vec![String::new()];
    for line in text.lines() {
        if line.starts_with('[') {
            blocks.push(String::new());
        }
        let last = blocks.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    let is_source = |b: &String| b.starts_with("[[source]]");
    let is_archive = |b: &String| b.lines().any(|l| l.trim() == "kind = \"archive\"");
    // The quoted strings of a `key = ...` line of `b`, or None without one.
    let strings = |b: &String, key: &str| -> Option<Vec<String>> {
        let line = b
            .lines()
            .find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))?;
        Some(
            line.split('"')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect(),
        )
    };
    let sources = blocks.iter().filter(|b| is_source(b)).count();
    let blocks: Vec<String> = blocks
        .into_iter()
        .filter(|b| !is_source(b) || is_archive(b))
        .collect();
    let archives = blocks.iter().filter(|b| is_source(b)).count();
    // None: an archive source serves every release.
    let served: Option<Vec<String>> = blocks
        .iter()
        .filter(|b| is_source(b))
        .map(|b| strings(b, "releases"))
        .try_fold(Vec::new(), |mut all, r| {
            all.extend(r?);
            Some(all)
        });
    let kept: Vec<String> = blocks
        .into_iter()
        .filter(|b| {
            !b.starts_with("[[release]]")
                || served.as_ref().map_or(true, |s| {
                    strings(b, "name").is_some_and(|n| n.iter().any(|n| s.contains(n)))
                })
        })
        .collect();
    assert!(
        archives >= 1 && archives < sources,
        "{} no longer has an archive source among its other sources ({sources} sources, {archives} of kind archive): this test needs one",
        path.display()
    );
    let out = kept.concat();
    assert!(
        out.contains("[arch.archive]") && out.contains("codename = \"noble\""),
        "{} no longer maps the archive's arches or names 24.04 noble:\n{out}",
        path.display()
    );
    out
}

#[test]
fn ubuntu_builtin_archive_source_makes_a_box_from_a_noble_archive() {
    let env = TestEnv::new();
    let archive = Archive::build_as(
        &env,
        Dist {
            origin: "Ubuntu",
            suite: "noble",
            codename: "noble",
        },
    );
    let entry = builtin_ubuntu_archive_only();
    assert!(
        entry.contains(&format!("\n{} = ", archive.arch)),
        "the ubuntu entry has no {} in its arch tables, so its archive source is skipped on this machine:\n{entry}",
        archive.arch
    );
    let server = serving(&archive.root);
    archive.configure_entry(&env, &server, "ubuntu", &entry);
    let mirror = server.url("/archive");

    let out = env.run(["-v", "create", "ubuntu:24.04", "--name", "u"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "Reading ubuntu noble ({}) from the package archive {mirror}",
            archive.arch
        )),
        "{err}"
    );
    assert!(err.contains("signature verified with"), "{err}");
    assert!(err.contains("test-archive-keyring.gpg"), "{err}");
    assert_eq!(server.hits("/archive/dists/noble/InRelease"), 1);
    assert_eq!(
        server.hits(&format!(
            "/archive/dists/noble/main/binary-{}/Packages",
            archive.arch
        )),
        1
    );
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 1);
    assert_eq!(server.hits("/archive/pool/main/u/unrelated_1_all.deb"), 0);
    // The box is there, made from the archive's packages by their dpkg.
    let json: serde_json::Value = serde_json::from_str(&env.ok(["list", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["name"], "u", "{json}");
    assert_eq!(env.sh("u", "cat /etc/fake-release"), "fake 1\n");
    let log = env.sh("u", "cat /var/lib/dpkg/fake-install.log");
    assert_eq!(log.matches(".deb").count(), 4, "{log}");
    // Its apt is pointed at the same mirror and suite, and also at universe (the entry's
    // apt_components), whose index the bootstrap did not read.
    let sources = env.sh("u", "cat /etc/apt/sources.list");
    assert!(
        sources.contains(&format!("deb {mirror} noble main universe\n")),
        "{sources}"
    );
    let universe = server.requests("/archive/dists/noble/universe");
    assert!(universe.is_empty(), "{}", universe.len());

    // The release's alias is the same suite, so the same image, from the store.
    let out = env.run(["create", "ubuntu:noble", "--name", "n"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("from the store"), "{err}");
    assert_eq!(server.hits("/archive/pool/main/b/base-files_1_all.deb"), 1);
    assert_eq!(env.sh("n", "cat /etc/fake-release"), "fake 1\n");
}
