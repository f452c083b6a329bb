//! Sharing boxes beyond one machine: commit, image push (checked with skopeo and podman),
//! create --from, devbox.lock across two users, image save/load (podman save too), and what
//! goes wrong on the way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;
use crate::registry::{ok, Registry};

/// podman as root with a store of its own (removed with the temp dir).
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::Builder::new()
                .prefix("devbox-it-podman-")
                .tempdir()
                .unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(args)
            .output()
            .expect("podman (apt-get install podman, or run `sudo tests/setup.sh`)");
        ok(out, &format!("podman {}", args.join(" ")))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers may hold files podman made read-only; `podman system reset` is not needed
        // for a private root, but its mounts (none with vfs) would be.
        let _ = self
            .cmd()
            .args(["rm", "-a", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The entries of a tar file: path -> (uid, content of regular files).
fn tar_entries(path: &Path) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
    use std::io::Read;
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = std::collections::BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let uid = e.header().uid().unwrap();
        let mut data = Vec::new();
        if e.header().entry_type().is_file() {
            e.read_to_end(&mut data).unwrap();
        }
        out.insert(name, (uid, data));
    }
    out
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("skopeo");
    ok(out, &format!("skopeo {}", args.join(" ")))
}

/// The changes the acceptance tests make in a box: a new file owned by an in-box user, a
/// deleted file, a directory replaced by a new one of the same name (opaque).
const CHANGES: &str = "echo committed > /etc/devbox-committed && chown 1234:1234 /etc/devbox-committed \
    && rm /etc/os-release && rm -rf /usr/sbin && mkdir /usr/sbin && echo only > /usr/sbin/only-this";

fn manifest_of(out: &str) -> String {
    let at = out.find("manifest sha256:").expect(out) + "manifest ".len();
    out[at..at + 71].to_string()
}

#[test]
fn commit_push_and_third_party_clients_see_the_box() {
    let env = TestEnv::new();
    let reg = Registry::start();
    env.busybox("src", &[]);
    env.ok(["run", "src", "--root", "--", "sh", "-c", CHANGES]);
    // Committed while running (its holder keeps it up after `run`): said, and captured.
    let out = env.run(["commit", "src", "--tag", "mybox:v1"]);
    let committed = ok(out.clone(), "devbox commit");
    assert!(
        stderr(&out).contains("is running: its layer is committed as it is on disk now"),
        "{}",
        stderr(&out)
    );
    let digest = manifest_of(&committed);

    // A box made from the new image sees the changes, the deletions included.
    env.ok(["create", "mybox:v1", "--name", "again"]);
    let seen = env.sh(
        "again",
        "cat /etc/devbox-committed; stat -c %u /etc/devbox-committed; ls /etc/os-release 2>&1; ls /usr/sbin",
    );
    assert!(seen.contains("committed\n1234\n"), "{seen}");
    assert!(seen.contains("No such file"), "{seen}");
    assert!(seen.trim_end().ends_with("only-this"), "{seen}");

    let target = format!("127.0.0.1:{}/devbox-test/mybox:v1", reg.port());
    let pushed = env.ok(["image", "push", "mybox:v1", &target]);
    assert!(pushed.contains(&digest), "{pushed}");

    // skopeo sees the manifest devbox wrote.
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest.as_str(), "{info}");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2, "{info}");

    // skopeo copies it to an OCI layout; podman makes a container of the pushed image, whose
    // export has the box's files and not the deleted ones.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", layout.display()),
    ]);
    assert!(layout.join("index.json").is_file());
    let podman = Podman::new();
    podman.run(&[
        "pull",
        "-q",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    let id = podman.run(&["create", &target, "/bin/sh"]);
    let export = work.path().join("export.tar");
    podman.run(&["export", "-o", export.to_str().unwrap(), id.trim()]);
    let files = tar_entries(&export);
    let (uid, content) = files.get("etc/devbox-committed").expect("the box's file");
    assert_eq!((*uid, content.as_slice()), (1234, &b"committed\n"[..]));
    assert!(files.contains_key("bin/busybox"));
    assert!(
        !files.contains_key("etc/os-release"),
        "a deleted file came back"
    );
    let sbin: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("usr/sbin/"))
        .collect();
    assert_eq!(
        sbin,
        ["usr/sbin/only-this"],
        "the opaque directory was not kept"
    );

    // The reference pulls back to the same image, in another store.
    let other = TestEnv::new();
    let pulled = other.ok(["image", "pull", &target]);
    let listed: serde_json::Value =
        serde_json::from_str(&other.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["digest"], digest.as_str(), "{pulled}\n{listed}");
    let mine: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    let committed_id = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == "mybox:v1")
        .unwrap()["id"]
        .clone();
    assert_eq!(listed[0]["id"], committed_id);
}

#[test]
fn create_from_clones_a_box_without_copying_its_image() {
    let env = TestEnv::new();
    env.busybox("orig", &[]);
    env.ok(["run", "orig", "--root", "--", "sh", "-c", CHANGES]);
    env.ok(["stop", "orig"]);
    let out = env.ok(["create", "--from", "orig", "twin"]);
    assert!(out.contains("clone of 'orig'"), "{out}");
    let seen = env.sh(
        "twin",
        "cat /etc/devbox-committed; stat -c %u /etc/devbox-committed; ls /etc/os-release 2>&1; ls /usr/sbin",
    );
    assert!(seen.contains("committed\n1234\n"), "{seen}");
    assert!(seen.contains("No such file"), "{seen}");
    assert!(seen.trim_end().ends_with("only-this"), "{seen}");
    // The two layers are apart from here on; the image is the same one.
    env.ok([
        "run",
        "twin",
        "--root",
        "--",
        "sh",
        "-c",
        "echo twin > /etc/twin-only",
    ]);
    let orig = env.run(["run", "orig", "--", "cat", "/etc/twin-only"]);
    assert!(!orig.status.success());
    let list: serde_json::Value = serde_json::from_str(&env.ok(["list", "--json"])).unwrap();
    let ids: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["image_id"])
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1);
}

fn save_path(env: &TestEnv, name: &str) -> PathBuf {
    env.home.join(name)
}

#[test]
fn save_and_load_round_trip_and_podman_save_archives_load() {
    let env = TestEnv::new();
    env.busybox("src", &[]);
    env.ok(["run", "src", "--root", "--", "sh", "-c", CHANGES]);
    env.ok(["stop", "src"]);
    let committed = env.ok(["commit", "src", "--tag", "saved"]);
    let digest = manifest_of(&committed);
    let archive = save_path(&env, "saved.tar");
    env.ok(["image", "save", "saved", archive.to_str().unwrap()]);

    // Into another store (another machine): the same image, by id and manifest.
    let other = TestEnv::new();
    let copy = other.home.join("saved.tar");
    other.write_as_user(&copy, &std::fs::read(&archive).unwrap());
    let loaded = other.ok(["image", "load", copy.to_str().unwrap()]);
    let list: serde_json::Value =
        serde_json::from_str(&other.ok(["image", "list", "--json"])).unwrap();
    let mine: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    let committed_id = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == "saved")
        .unwrap()["id"]
        .clone();
    assert_eq!(list[0]["id"], committed_id, "{loaded}");
    other.ok([
        "create",
        &list[0]["id"].as_str().unwrap()[..12],
        "--name",
        "fromsave",
    ]);
    assert_eq!(
        other.sh("fromsave", "cat /etc/devbox-committed"),
        "committed\n"
    );
    // The same manifest, and its blobs kept: saved again from there, it loads as the same image.
    assert_eq!(list[0]["digest"], digest.as_str());
    let again = other.home.join("again.tar");
    let id12 = list[0]["id"].as_str().unwrap()[..12].to_string();
    other.ok(["image", "save", &id12, again.to_str().unwrap()]);
    let fourth = TestEnv::new();
    let copy4 = fourth.home.join("again.tar");
    fourth.write_as_user(&copy4, &std::fs::read(&again).unwrap());
    fourth.ok(["image", "load", copy4.to_str().unwrap()]);
    assert_eq!(image_digests(&fourth), std::slice::from_ref(&digest));

    // podman reads devbox's archive, and writes one devbox reads.
    let podman = Podman::new();
    podman.run(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let third = TestEnv::new();
    let podman_archive = third.root.join("podman.tar");
    podman.run(&[
        "save",
        "-q",
        "-o",
        podman_archive.to_str().unwrap(),
        "localhost/saved:latest",
    ]);
    let readable = third.home.join("podman.tar");
    third.write_as_user(&readable, &std::fs::read(&podman_archive).unwrap());
    third.ok(["image", "load", readable.to_str().unwrap()]);
    let list: serde_json::Value =
        serde_json::from_str(&third.ok(["image", "list", "--json"])).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    third.ok(["create", &id[..12], "--name", "frompodman"]);
    let seen = third.sh(
        "frompodman",
        "cat /etc/devbox-committed; ls /etc/os-release 2>&1 || true",
    );
    assert!(
        seen.starts_with("committed\n") && seen.contains("No such file"),
        "{seen}"
    );
}

/// A project directory in `env`'s home with this devbox.toml.
fn project(env: &TestEnv, toml: &str) -> PathBuf {
    let dir = env.home.join("proj");
    env.mkdir_as_user(&dir);
    env.write_as_user(&dir.join("devbox.toml"), toml.as_bytes());
    dir
}

fn in_dir(env: &TestEnv, dir: &Path, args: &[&str]) -> Output {
    env.cmd(args).current_dir(dir).output().unwrap()
}

fn image_digests(env: &TestEnv) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["digest"].as_str().map(String::from))
        .collect()
}

#[test]
fn lock_gives_a_second_user_the_same_image_until_update() {
    let reg = Registry::start();
    let a = TestEnv::new();
    let repo = format!("127.0.0.1:{}/devbox-test/proj", reg.port());
    a.busybox("base", &[]);
    a.ok([
        "run",
        "base",
        "--root",
        "--",
        "sh",
        "-c",
        "echo one > /etc/generation",
    ]);
    let one = manifest_of(&a.ok(["commit", "base", "--tag", "gen:1"]));
    a.ok([
        "run",
        "base",
        "--root",
        "--",
        "sh",
        "-c",
        "echo two > /etc/generation",
    ]);
    let two = manifest_of(&a.ok(["commit", "base", "--tag", "gen:2"]));
    a.ok(["image", "push", "gen:1", &format!("{repo}:latest")]);

    // The first machine makes the project's box: the lock pins the tag's digest.
    let toml = format!("[box]\nname = \"proj\"\nimage = \"{repo}:latest\"\n");
    let dir = project(&a, &toml);
    let out = in_dir(&a, &dir, &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pinned"), "{}", stderr(&out));
    let lock = std::fs::read_to_string(dir.join("devbox.lock")).unwrap();
    assert!(lock.contains(&format!("{repo}@{one}")), "{lock}");
    // Meant for version control: readable like any file the user writes (umask), not 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("devbox.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o044, 0o044, "{mode:o}");

    // Upstream moves the tag.
    a.ok(["image", "push", "gen:2", &format!("{repo}:latest")]);

    // A second machine (user) with the two files gets the pinned image, not the tag's.
    let b = TestEnv::new_as("devbox-test2");
    let bdir = project(&b, &toml);
    b.write_as_user(&bdir.join("devbox.lock"), lock.as_bytes());
    let out = in_dir(&b, &bdir, &["run", "--", "cat", "/etc/generation"]);
    assert_eq!(stdout(&out), "one\n", "{}", stderr(&out));
    assert_eq!(image_digests(&b), std::slice::from_ref(&one));
    assert_eq!(
        std::fs::read_to_string(bdir.join("devbox.lock")).unwrap(),
        lock
    );

    // apply --update resolves the tag anew, rewrites the lock and remakes the box.
    let out = in_dir(&b, &bdir, &["apply", "--update", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let relocked = std::fs::read_to_string(bdir.join("devbox.lock")).unwrap();
    assert!(relocked.contains(&format!("{repo}@{two}")), "{relocked}");
    let out = in_dir(&b, &bdir, &["run", "--", "cat", "/etc/generation"]);
    assert_eq!(stdout(&out), "two\n", "{}", stderr(&out));

    // The first machine, given the new lock (from version control), follows it on apply.
    a.write_as_user(&dir.join("devbox.lock"), relocked.as_bytes());
    let out = in_dir(&a, &dir, &["apply", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = in_dir(&a, &dir, &["run", "--", "cat", "/etc/generation"]);
    assert_eq!(stdout(&out), "two\n", "{}", stderr(&out));
}

#[test]
fn locked_refuses_a_missing_or_stale_lock_and_a_vanished_image_says_the_fix() {
    let reg = Registry::start();
    let a = TestEnv::new();
    let repo = format!("127.0.0.1:{}/devbox-test/gone", reg.port());
    a.busybox("base", &[]);
    a.ok(["commit", "base", "--tag", "gone"]);
    a.ok(["image", "push", "gone", &format!("{repo}:v1")]);
    let toml = format!("[box]\nname = \"gone\"\nimage = \"{repo}:v1\"\n");

    // No lock: --locked and CI=true refuse to resolve.
    let c = TestEnv::new();
    let dir = project(&c, &toml);
    let out = in_dir(&c, &dir, &["apply", "--locked"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("there is no devbox.lock") && stderr(&out).contains("apply --update"),
        "{}",
        stderr(&out)
    );
    let out = c
        .cmd(["run", "--", "true"])
        .current_dir(&dir)
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--locked (or CI=true)"),
        "{}",
        stderr(&out)
    );
    assert!(!c.data().join("boxes-v1/gone").exists());

    // Made once (writes the lock); then devbox.toml names another tag: a stale lock.
    let out = in_dir(&c, &dir, &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = std::fs::read_to_string(dir.join("devbox.lock")).unwrap();
    c.write_as_user(
        &dir.join("devbox.toml"),
        toml.replace(":v1", ":v2").as_bytes(),
    );
    let out = in_dir(&c, &dir, &["apply", "--locked", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pins image"), "{}", stderr(&out));
    c.write_as_user(&dir.join("devbox.toml"), toml.as_bytes());

    // The registry loses the pinned image: another machine gets a clear error with the fix.
    let digest = lock
        .lines()
        .find_map(|l| l.strip_prefix("resolved = \""))
        .and_then(|l| l.split('@').nth(1))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{repo}@{digest}"),
    ]);
    let d = TestEnv::new();
    let ddir = project(&d, &toml);
    d.write_as_user(&ddir.join("devbox.lock"), lock.as_bytes());
    let out = in_dir(&d, &ddir, &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("devbox.lock pins"), "{err}");
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains("devbox apply --update"), "{err}");
}

/// tests/fixtures/push-trouble.py, killed when dropped.
struct Trouble {
    child: std::process::Child,
    port: u16,
}

impl Trouble {
    fn start(args: &[&str]) -> Trouble {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/push-trouble.py"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .expect("push-trouble.py prints its port");
        Trouble { child, port }
    }
}

impl Drop for Trouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn push_refusals_say_why_and_a_broken_off_upload_resumes() {
    let env = TestEnv::new();
    env.busybox("src", &[]);
    // A layer of 8 MiB that does not compress: several chunks of 1 MiB.
    env.ok([
        "run",
        "src",
        "--root",
        "--",
        "sh",
        "-c",
        "head -c 8388608 /dev/urandom > /big",
    ]);
    env.ok(["stop", "src"]);
    let digest = manifest_of(&env.ok(["commit", "src", "--tag", "big"]));

    for (mode, want) in [
        ("401", ["requires authentication", "podman login"]),
        (
            "403",
            ["requested access to the resource is denied", "may not push"],
        ),
        ("quota", ["storage quota exceeded", "quota there is full"]),
    ] {
        let t = Trouble::start(&["refuse", mode]);
        let err = env.fails(
            1,
            [
                "image",
                "push",
                "big",
                &format!("127.0.0.1:{}/team/big:v1", t.port),
            ],
        );
        assert!(err.contains("cannot push image"), "{mode}: {err}");
        for w in want {
            assert!(err.contains(w), "{mode}: {err}");
        }
    }

    // The connection breaks off after three chunks, and the push is killed while it waits to
    // retry: the next push continues the upload where the registry's copy ends.
    let reg = Registry::start();
    let pass = env.root.join("pass");
    let t = Trouble::start(&["cut", &reg.port().to_string(), "3", pass.to_str().unwrap()]);
    let target = format!("127.0.0.1:{}/devbox-test/big:v1", t.port);
    let mut first = env
        .cmd(["image", "push", "big", &target])
        .env("DEVBOX_PUSH_CHUNK_SIZE", "1048576")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(first.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("retrying") {
                break;
            }
        }
        assert!(seen.contains("retrying"), "{seen}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::write(&pass, b"").unwrap();
    let out = env
        .cmd(["image", "push", "big", &target])
        .env("DEVBOX_PUSH_CHUNK_SIZE", "1048576")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming the upload at"), "{err}");
    assert!(stdout(&out).contains("1 resumed"), "{}", stdout(&out));
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{}/devbox-test/big:v1", reg.port()),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    // And the image is whole: another store pulls it (every blob checked by digest).
    let other = TestEnv::new();
    other.ok([
        "image",
        "pull",
        &format!("127.0.0.1:{}/devbox-test/big:v1", reg.port()),
    ]);
    assert_eq!(image_digests(&other), [digest]);
}

#[test]
fn commit_reads_a_fuse_overlayfs_layer_too() {
    let env = TestEnv::new();
    let img = fixture("busybox");
    let out = env
        .cmd(["create", img.to_str().unwrap(), "--name", "fuse"])
        .env("DEVBOX_OVERLAY", "fuse-overlayfs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cmd(["run", "fuse", "--root", "--", "sh", "-c", CHANGES])
        .env("DEVBOX_OVERLAY", "fuse-overlayfs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect = env.ok(["inspect", "fuse", "--json"]);
    assert!(inspect.contains("fuse-overlayfs"), "{inspect}");
    env.ok(["stop", "fuse"]);
    env.ok(["commit", "fuse", "--tag", "fromfuse"]);
    env.ok(["create", "fromfuse", "--name", "kernel"]);
    let seen = env.sh(
        "kernel",
        "cat /etc/devbox-committed; ls /etc/os-release 2>&1; ls /usr/sbin",
    );
    assert!(seen.starts_with("committed\n"), "{seen}");
    assert!(seen.contains("No such file"), "{seen}");
    assert!(seen.trim_end().ends_with("only-this"), "{seen}");
}

#[test]
fn commit_of_a_pulled_image_keeps_its_layers_and_env_and_push_mounts_them() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let image = crate::registry::make_image(
        &work.path().join("img"),
        &["--tag", "v1", "--push", &reg.repo()],
    );
    let env = TestEnv::new();
    env.ok(["create", &format!("{}:v1", reg.repo()), "--name", "pulled"]);
    env.ok([
        "run",
        "pulled",
        "--root",
        "--",
        "sh",
        "-c",
        "echo x > /etc/added",
    ]);
    env.ok(["stop", "pulled"]);
    let digest = manifest_of(&env.ok(["commit", "pulled", "--tag", "withenv"]));

    // Pushed to another repository of the same registry: the image's own layers are mounted
    // from where it was pulled, only the box's layer and the config are uploaded.
    let target = format!("127.0.0.1:{}/devbox-test/derived:v1", reg.port());
    let out = env.ok(["image", "push", "withenv", &target]);
    let base: Vec<&str> = image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert!(out.contains(&format!("{} mounted", base.len())), "{out}");
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    let layers: Vec<&str> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), base.len() + 1, "{info}");
    assert_eq!(
        &layers[..base.len()],
        &base[..],
        "the image's own layers, unchanged"
    );
    let envs: Vec<&str> = info["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        envs.contains(&"FOO=bar"),
        "the image's environment: {envs:?}"
    );
    // A box made from the commit has it too.
    env.ok(["create", "withenv", "--name", "child"]);
    assert_eq!(env.sh("child", "echo $FOO; cat /etc/added"), "bar\nx\n");
}
