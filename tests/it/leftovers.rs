//! Nothing left behind: `create` (from a tarball, a URL, an image layout archive) and `rm`
//! killed at several points leave temp dirs that the next command, or `image prune`, removes;
//! `image list` and `doctor` say how much is reclaimable; a temp dir a running devbox uses is
//! never removed; doctor's scratch dir goes at its end.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::*;
use crate::http::{Request, Response, Server};

/// Sorted names in a directory (empty if it does not exist).
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

fn images_dir(env: &TestEnv) -> PathBuf {
    env.data().join("images-v1")
}

fn boxes_dir(env: &TestEnv) -> PathBuf {
    env.data().join("boxes-v1")
}

fn cache_dir(env: &TestEnv) -> PathBuf {
    env.home.join(".cache/devbox")
}

/// Names in `dir` starting with `prefix`.
fn starting(dir: &Path, prefix: &str) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Everything interrupted commands can leave: temp dirs in the store, the box dir and the cache.
fn leftovers(env: &TestEnv) -> Vec<String> {
    let mut v = starting(&images_dir(env), ".tmp-");
    v.extend(starting(&boxes_dir(env), ".tmp-"));
    v.extend(starting(&boxes_dir(env), ".trash-"));
    v.extend(starting(&cache_dir(env), "layout-"));
    v.extend(starting(&env.data().join("run"), "doctor-"));
    v
}

/// The store holds only real images (`<sha256>/image.toml`) and its lock; the boxes dir only
/// real boxes (`<name>/box.toml`), exactly `boxes`; the cache no image layout; the runtime dir
/// no doctor scratch dir.
fn assert_clean(env: &TestEnv, boxes: &[&str]) {
    for n in names(&images_dir(env)) {
        if n == ".lock" {
            continue;
        }
        assert!(
            n.len() == 64
                && n.bytes().all(|b| b.is_ascii_hexdigit())
                && images_dir(env).join(&n).join("image.toml").is_file(),
            "images-v1 holds {n:?}, which is no image: {:?}",
            names(&images_dir(env))
        );
    }
    let in_boxes = names(&boxes_dir(env));
    assert_eq!(in_boxes, boxes, "boxes-v1");
    for b in boxes {
        assert!(boxes_dir(env).join(b).join("box.toml").is_file(), "{b}");
    }
    assert_eq!(leftovers(env), Vec::<String>::new());
}

/// `devbox ARGS` as the test user, in a process group of its own, so that killing the group
/// kills its helpers too (as Ctrl-C or a closed terminal does).
fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.cmd(args)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn devbox")
}

/// SIGKILL to the command's whole process group; waits for the command. True when it had
/// already ended by itself.
fn kill(child: &mut Child) -> bool {
    let done = child.try_wait().unwrap().is_some();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    done
}

/// Polls (every millisecond) until `what` holds, for up to `secs` seconds.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// When to kill a command.
#[derive(Debug, Clone, Copy)]
enum When {
    /// As soon as a new name with this prefix (one that was not there when the command started)
    /// appears in the directory.
    Appears(Place, &'static str),
    /// As soon as a new staging dir in the store holds an unpacked `rootfs/usr`.
    Unpacking,
    /// After this many milliseconds.
    After(u64),
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Images,
    Boxes,
    Cache,
}

fn place(env: &TestEnv, p: Place) -> PathBuf {
    match p {
        Place::Images => images_dir(env),
        Place::Boxes => boxes_dir(env),
        Place::Cache => cache_dir(env),
    }
}

/// Runs `devbox ARGS` and kills it (with its helpers) at `when`. True when it was killed while
/// running (not after it ended).
fn kill_at(env: &TestEnv, args: &[&str], when: When) -> bool {
    let (dir, prefix) = match when {
        When::Appears(p, prefix) => (place(env, p), prefix),
        _ => (images_dir(env), ".tmp-"),
    };
    let before = starting(&dir, prefix);
    let new = || -> Vec<String> {
        starting(&dir, prefix)
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect()
    };
    let mut child = spawn(env, args);
    match when {
        When::Appears(..) => wait_until(60, &format!("{prefix}* in {}", dir.display()), || {
            !new().is_empty()
        }),
        When::Unpacking => wait_until(60, "an unpack under way", || {
            new()
                .iter()
                .any(|n| std::fs::symlink_metadata(dir.join(n).join("rootfs/usr")).is_ok())
        }),
        When::After(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    !kill(&mut child)
}

// ---------------------------------------------------------------------------------------------
// A loopback HTTP server for the Debian fixture
// ---------------------------------------------------------------------------------------------

/// Serves the Debian fixture (with Content-Length) on loopback:
///   /debian.tar.gz  all of it at once
///   /held.tar.gz    its first half, then nothing until `released` is set (or the server's
///                   end), then the rest
fn debian_server(released: &Arc<AtomicBool>) -> Server {
    let body = std::fs::read(fixture("debian")).unwrap();
    let released = Arc::clone(released);
    Server::start(move |req: &Request| {
        let whole =
            Response::new(200, body.clone()).header("Content-Type", "application/octet-stream");
        match req.path.as_str() {
            "/debian.tar.gz" => whole,
            "/held.tar.gz" => {
                let released = Arc::clone(&released);
                whole.pause(body.len() / 2, move |stop| loop {
                    if released.load(Ordering::SeqCst) {
                        return true;
                    }
                    if stop.is_set() {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                })
            }
            _ => Response::not_found(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// An image layout archive big enough to be killed while it is read
// ---------------------------------------------------------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OCI image layout in a tar, its one layer the Debian fixture (gzip): `DIR/debian-oci.tar`.
pub(crate) fn layout_archive(dir: &Path) -> PathBuf {
    let layer = std::fs::read(fixture("debian")).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut raw)
        .unwrap();
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&raw))]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("debian-oci.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).unwrap();
    archive
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A create from a local tarball killed after 50, 200 and 600 ms, and mid-unpack: each next
/// create removes what the one before left; the last leaves its staging dir (files of
/// subordinate ids, which the user alone cannot remove), which `image list` and `doctor`
/// count as reclaimable and the next create removes. The store then holds only real images
/// and boxes.
#[test]
fn leftovers_of_a_killed_create_from_a_tarball_go_with_the_next_create() {
    let env = TestEnv::new();
    let debian = fixture("debian").display().to_string();
    for (i, when) in [
        When::After(50),
        When::After(200),
        When::After(600),
        When::Unpacking,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("d{i}");
        let killed = kill_at(&env, &["create", &debian, "--name", &name], when);
        assert!(killed || !matches!(when, When::Unpacking));
    }
    let staging = starting(&images_dir(&env), ".tmp-");
    assert_eq!(staging.len(), 1, "{:?}", names(&images_dir(&env)));
    let list = env.ok(["image", "list"]);
    assert!(
        list.contains(
            " reclaimable by `devbox image prune` (1 leftover of interrupted devbox commands)"
        ) && !list.contains("\n0 B reclaimable"),
        "{list}"
    );
    let doctor = env.run(["doctor"]);
    let text = stdout(&doctor);
    assert!(
        text.contains("warn  leftovers: ") && text.contains("fix: devbox image prune"),
        "{text}"
    );
    // Files of subordinate ids: the user alone cannot remove them.
    let rm = env
        .raw("rm")
        .arg("-rf")
        .arg(images_dir(&env).join(&staging[0]))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!rm.success(), "plain rm -rf removed the staging dir");

    // The next create sweeps it, whichever boxes and images the killed ones finished.
    env.busybox("after", &[]);
    let boxes: Vec<String> = names(&boxes_dir(&env))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    let boxes: Vec<&str> = boxes.iter().map(String::as_str).collect();
    assert!(boxes.contains(&"after"), "{boxes:?}");
    assert_clean(&env, &boxes);
    let doctor = env.ok(["doctor"]);
    assert!(
        doctor.contains("ok    leftovers: none from interrupted devbox commands"),
        "{doctor}"
    );
    let list = env.ok(["image", "list"]);
    assert!(!list.contains("reclaimable"), "{list}");
}

/// A create from a URL killed after 100 and 300 ms of a download at full speed, as soon as its
/// staging dir appears, and mid-unpack while the server holds back the second half: the last
/// leaves its staging dir and its partial download; `image prune` removes both and says what it
/// reclaimed.
#[test]
fn leftovers_of_a_killed_create_from_a_url_go_with_image_prune() {
    let server = debian_server(&Arc::default());
    let env = TestEnv::new();
    let whole = server.url("/debian.tar.gz");
    let held = server.url("/held.tar.gz");
    for (i, ms) in [100, 300].into_iter().enumerate() {
        kill_at(
            &env,
            &["create", &whole, "--name", &format!("w{i}")],
            When::After(ms),
        );
    }
    assert!(kill_at(
        &env,
        &["create", &held, "--name", "h0"],
        When::Appears(Place::Images, ".tmp-")
    ));
    assert!(kill_at(
        &env,
        &["create", &held, "--name", "h1"],
        When::Unpacking
    ));
    assert_eq!(
        starting(&images_dir(&env), ".tmp-").len(),
        1,
        "{:?}",
        names(&images_dir(&env))
    );
    let out = env.ok(["image", "prune"]);
    assert!(
        out.contains("Removed 1 leftover of interrupted devbox commands (")
            && !out.contains("(0 B)"),
        "{out}"
    );
    // Nothing but real boxes; no staging dir, no partial download.
    let boxes: Vec<String> = names(&boxes_dir(&env));
    let boxes: Vec<&str> = boxes.iter().map(String::as_str).collect();
    assert_clean(&env, &boxes);
    let downloads: Vec<String> = names(&cache_dir(&env).join("downloads-v1"))
        .into_iter()
        .filter(|n| n != "CACHEDIR.TAG")
        .collect();
    assert_eq!(downloads, Vec::<String>::new());
    // A second prune finds nothing more.
    let again = env.ok(["image", "prune"]);
    assert!(!again.contains("leftover"), "{again}");
}

/// A create from an OCI image layout archive killed after 200 ms, while its layout is read (in
/// `~/.cache/devbox/layout-*`) and while its layer is applied: the last leaves the layout dir
/// and a staging dir; the next command that takes the store lock (here `rm`) removes them, and
/// the archive then makes a box.
#[test]
fn leftovers_of_a_killed_create_from_an_image_archive_go_with_the_next_rm() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let archive = layout_archive(work.path());
    let archive = archive.to_str().unwrap();
    let env = TestEnv::new();
    env.busybox("keep", &[]);
    env.busybox("gone", &[]);
    kill_at(
        &env,
        &["create", archive, "--name", "oci0"],
        When::After(200),
    );
    assert!(kill_at(
        &env,
        &["create", archive, "--name", "oci1"],
        When::Appears(Place::Cache, "layout-")
    ));
    assert!(kill_at(
        &env,
        &["create", archive, "--name", "oci2"],
        When::Unpacking
    ));
    assert_eq!(
        starting(&cache_dir(&env), "layout-").len(),
        1,
        "{:?}",
        names(&cache_dir(&env))
    );
    assert_eq!(starting(&images_dir(&env), ".tmp-").len(), 1);
    env.ok(["rm", "gone"]);
    assert_clean(&env, &["keep"]);
    let out = env.ok(["create", archive, "--name", "oci"]);
    assert!(out.contains("Created box 'oci'"), "{out}");
    assert_clean(&env, &["keep", "oci"]);
}

/// `rm` of a box whose own layer holds over a hundred MiB of files of subordinate ids, killed
/// after 50 and 300 ms, and as soon as the box is renamed to `.trash-*`: the half-removed box
/// is no box, `image list` counts it, and `image prune` removes it.
#[test]
fn leftovers_of_a_killed_rm_go_with_image_prune() {
    let env = TestEnv::new();
    let debian = fixture("debian").display().to_string();
    let whens = [
        When::After(50),
        When::After(300),
        When::Appears(Place::Boxes, ".trash-"),
    ];
    for i in 0..whens.len() {
        let name = format!("full{i}");
        env.ok(["create", &debian, "--name", &name]);
        env.ok(["run", "--root", &name, "--", "sh", "-c", "cp -a /usr /usr2"]);
    }
    env.ok(["stop", "--all"]);
    for (i, when) in whens.into_iter().enumerate() {
        let killed = kill_at(&env, &["rm", &format!("full{i}")], when);
        assert!(killed || !matches!(when, When::Appears(..)));
    }
    assert_eq!(
        starting(&boxes_dir(&env), ".trash-full2-").len(),
        1,
        "{:?}",
        names(&boxes_dir(&env))
    );
    // The half-removed boxes are not boxes.
    let list = env.ok(["list"]);
    assert!(!list.contains("trash"), "{list}");
    let images = env.ok(["image", "list"]);
    assert!(
        images.contains("MiB reclaimable by `devbox image prune`"),
        "{images}"
    );
    let out = env.ok(["image", "prune"]);
    assert!(
        out.contains("Removed ") && out.contains("leftover") && out.contains("MiB)"),
        "prune said: {out}"
    );
    let left: Vec<String> = names(&boxes_dir(&env));
    let left: Vec<&str> = left.iter().map(String::as_str).collect();
    assert_clean(&env, &left);
}

/// A temp dir a running devbox uses is not a leftover: a create whose download is held back
/// keeps its staging dir through an `image prune` (and is not counted by `image list`), and
/// then succeeds. Temp dirs locked by a running devbox (a box being assembled, an image layout
/// being read) are kept likewise; the same dirs unlocked go.
#[test]
fn a_temp_dir_in_use_is_not_removed() {
    let released = Arc::new(AtomicBool::new(false));
    let server = debian_server(&released);
    let env = TestEnv::new();
    env.busybox("b", &[]);
    let child = env
        .cmd(["create", &server.url("/held.tar.gz"), "--name", "late"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(60, "the create's staging dir", || {
        !starting(&images_dir(&env), ".tmp-").is_empty()
    });
    let staging = starting(&images_dir(&env), ".tmp-");

    // Dirs of the other kinds, as a devbox that is alive would hold them (flocked), and the
    // same unlocked (left by a killed one).
    let cache = cache_dir(&env);
    let planted = [
        boxes_dir(&env).join(".tmp-x-4000001"),
        boxes_dir(&env).join(".trash-y-4000002"),
        cache.join("layout-4000003-0"),
    ];
    let stale = [
        boxes_dir(&env).join(".tmp-x-4000004"),
        boxes_dir(&env).join(".trash-y-4000005"),
        cache.join("layout-4000006-0"),
    ];
    for d in planted.iter().chain(&stale) {
        env.mkdir_as_user(d);
        env.write_as_user(&d.join("file"), b"some bytes\n");
    }
    let _held: Vec<_> = planted
        .iter()
        .map(|d| {
            nix::fcntl::Flock::lock(
                std::fs::File::open(d).unwrap(),
                nix::fcntl::FlockArg::LockExclusiveNonblock,
            )
            .unwrap()
        })
        .collect();

    let list = env.ok(["image", "list"]);
    assert!(list.contains("reclaimable"), "{list}");
    assert!(list.contains("(3 leftovers of"), "{list}");
    let out = env.ok(["image", "prune"]);
    assert!(out.contains("Removed 3 leftovers"), "{out}");
    assert_eq!(starting(&images_dir(&env), ".tmp-"), staging);
    for d in &planted {
        assert!(d.join("file").is_file(), "{} was removed", d.display());
    }
    for d in &stale {
        assert!(!d.exists(), "{} was kept", d.display());
    }
    let list = env.ok(["image", "list"]);
    assert!(!list.contains("reclaimable"), "{list}");

    released.store(true, Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the create failed after a prune:\n{}",
        stderr(&out)
    );
    assert!(env.ok(["list"]).contains("late"));
    assert_eq!(starting(&images_dir(&env), ".tmp-"), Vec::<String>::new());
}

/// `doctor` removes its scratch dir when it ends, and removes those of doctors that were
/// killed (one named after a process that is gone, one of the older unnamed kind with a
/// mode-0 `work/work` as an overlay leaves it), but not one of a doctor that runs.
#[test]
fn doctor_leaves_no_scratch_dir_and_sweeps_old_ones() {
    let env = TestEnv::new();
    env.ok(["doctor"]);
    let run = env.data().join("run");
    assert_eq!(starting(&run, "doctor-"), Vec::<String>::new());

    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start: String = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .to_string();
    let live = run.join(format!("doctor-{me}-{start}-abcdef"));
    let dead = run.join("doctor-4000000-12345-ghijkl");
    let old = run.join("doctor-Xy12Zq");
    for d in [&live, &dead, &old] {
        for p in [d.clone(), d.join("work"), d.join("work/work")] {
            env.mkdir_as_user(&p);
        }
        std::fs::set_permissions(d.join("work/work"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
    }
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(touched.success());
    let out = env.run(["doctor"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        live.is_dir(),
        "the scratch dir of a running doctor was removed"
    );
    assert!(!dead.exists(), "{}", stderr(&out));
    assert!(!old.exists(), "{}", stderr(&out));
    assert_eq!(
        starting(&run, "doctor-"),
        [live.file_name().unwrap().to_string_lossy()]
    );
    std::fs::set_permissions(
        live.join("work/work"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}
