//! The image store commands: list, rm, prune.

use crate::harness::*;
use crate::registry::{make_image, Registry};

/// Files in a directory, CACHEDIR.TAG left out (empty if it does not exist).
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "CACHEDIR.TAG")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `image prune` empties the OCI blob cache (partial downloads included) and the download
/// cache, but not a file a running download holds locked; every cache dir keeps its
/// CACHEDIR.TAG.
#[test]
fn prune_empties_the_blob_and_download_caches() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    make_image(
        &work.path().join("img"),
        &["--tag", "v1", "--push", &reg.repo()],
    );
    let env = TestEnv::new();
    env.ok(["create", &format!("{}:v1", reg.repo()), "--name", "o"]);
    let cache = env.home.join(".cache/devbox");
    let blobs = cache.join("blobs-v1/sha256");
    let downloads = cache.join("downloads-v1");
    // Manifest, config, three layers.
    assert_eq!(files(&blobs).len(), 5, "{:?}", files(&blobs));
    for d in [cache.clone(), cache.join("blobs-v1")] {
        let tag = std::fs::read_to_string(d.join("CACHEDIR.TAG"))
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        assert!(
            tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
            "{tag}"
        );
    }
    // Leftovers of interrupted downloads, one of them still being written (locked).
    env.mkdir_as_user(&downloads);
    let stale = blobs.join(format!("{}.partial", "a".repeat(64)));
    let busy = blobs.join(format!("{}.partial", "b".repeat(64)));
    let part = downloads.join(".part-x1y2z3");
    for f in [&stale, &busy, &part] {
        env.write_as_user(f, b"half a blob");
    }
    let lock = nix::fcntl::Flock::lock(
        std::fs::File::open(&busy).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    env.ok(["rm", "--force", "o"]);
    let out = env.ok(["image", "prune"]);
    assert!(out.contains("Pruned 1 image"), "{out}");
    assert_eq!(files(&blobs), [busy.file_name().unwrap().to_string_lossy()]);
    assert_eq!(files(&downloads), Vec::<String>::new());
    drop(lock);
    env.ok(["image", "prune"]);
    assert_eq!(files(&blobs), Vec::<String>::new());
    for d in [cache.clone(), cache.join("blobs-v1")] {
        assert!(d.join("CACHEDIR.TAG").is_file(), "{}", d.display());
    }
}

#[test]
fn image_list_rm_and_prune() {
    let env = TestEnv::new();
    env.busybox("a", &[]);
    env.busybox("b", &[]);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    assert_eq!(rows[0]["boxes"], serde_json::json!(["a", "b"]));
    let table = env.ok(["image", "list"]);
    assert!(
        table.contains(&id[..12]) && table.contains("a,b"),
        "{table}"
    );

    // In use: refused, naming the boxes; --force says what it removes and removes them.
    let err = env.fails(1, ["image", "rm", &id[..8]]);
    assert!(
        err.contains("used by boxes: a, b") && err.contains("--force"),
        "{err}"
    );
    let out = env
        .cmd(["image", "rm", "--force", &id[..8]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Removing boxes made from image"),
        "{}",
        stderr(&out)
    );
    assert!(env.ok(["list"]).contains("No boxes"));
    assert!(env.ok(["image", "list"]).contains("No images"));
    let left = std::fs::read_dir(env.data().join("images-v1"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".lock"))
        .count();
    assert_eq!(left, 0, "nothing left in the store");

    // Prune removes only unused images.
    env.busybox("keep", &[]);
    env.ok(["rm", "keep"]);
    env.busybox("used", &[]);
    let out = env.ok(["image", "prune"]);
    assert!(out.contains("Pruned 0 images"), "{out}");
    env.ok(["rm", "used"]);
    let out = env.ok(["image", "prune"]);
    assert!(out.contains("Pruned 1 image"), "{out}");
    env.fails(1, ["image", "rm", "0000"]);
}

#[test]
fn inspect_shows_settings_layers_and_state() {
    let env = TestEnv::new();
    env.busybox("ins", &["--unshare", "net"]);
    let v: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "ins", "--json"])).unwrap();
    assert_eq!(v["status"], "stopped");
    assert_eq!(v["isolate"], serde_json::json!(["net"]));
    assert!(v["backend"].is_null());
    let lower = v["layers"]["lower"].as_str().unwrap().to_string();
    assert!(
        std::path::Path::new(&lower).join("bin/busybox").exists(),
        "{lower}"
    );
    env.ok(["run", "ins", "--", "true"]);
    let v: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "ins", "--json"])).unwrap();
    assert_eq!(v["status"], "running");
    assert_eq!(v["backend"], "kernel");
    assert!(v["holder_pid"].as_i64().unwrap() > 0);
    assert_eq!(v["image_id"].as_str().unwrap().len(), 64);
    let text = env.ok(["inspect", "ins"]);
    assert!(
        text.contains("status:    running") && text.contains("kernel overlayfs"),
        "{text}"
    );
    env.fails(1, ["inspect", "nope"]);
}

#[test]
fn concurrent_creates_of_one_image_unpack_it_once() {
    let env = TestEnv::new();
    let img = fixture("debian");
    let a = env
        .cmd(["create", img.to_str().unwrap(), "--name", "c1"])
        .spawn()
        .unwrap();
    let b = env
        .cmd(["create", img.to_str().unwrap(), "--name", "c2"])
        .spawn()
        .unwrap();
    for (name, child) in [("c1", a), ("c2", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    assert_eq!(images[0]["boxes"], serde_json::json!(["c1", "c2"]));
    assert_eq!(
        env.sh("c1", "cat /etc/debian_version").split('.').next(),
        Some("12")
    );
    assert_eq!(
        env.sh("c2", "cat /etc/debian_version").split('.').next(),
        Some("12")
    );
}

/// A registry whose host name does not exist fails at once, saying so; it is not retried like
/// a connection that may come back.
#[test]
fn a_registry_that_does_not_resolve_fails_at_once() {
    let env = TestEnv::new();
    let started = std::time::Instant::now();
    let out = env.run(["image", "pull", "registry.devbox-test.invalid/some/image:1"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("does not resolve"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );
    // Nothing was kept.
    assert!(env.ok(["image", "list", "--json"]).trim() == "[]");
}

#[test]
fn a_box_from_a_deduplicated_image_names_what_was_asked_for() {
    let env = TestEnv::new();
    let first = env.home.join("first.tar");
    let second = env.home.join("second-copy.tar");
    for f in [&first, &second] {
        std::fs::copy(fixture("busybox"), f).unwrap();
        if let Some(u) = test_user() {
            std::os::unix::fs::chown(f, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    env.ok(["create", first.to_str().unwrap(), "--name", "one"]);
    // Another path: hashed while it unpacks, then found in the store; the unpack is dropped.
    let out = env.run(["create", "./second-copy.tar", "--name", "two"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from the store"), "{}", stderr(&out));
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.contains(&format!("Created box 'two' from {}", second.display())),
        "{out}"
    );
    let list = env.ok(["list"]);
    let two = list.lines().find(|l| l.starts_with("two ")).unwrap();
    assert!(two.ends_with(&second.display().to_string()), "{list}");
    // One image in the store for both.
    let images: Vec<_> = std::fs::read_dir(env.data().join("images-v1"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1);
    // Nothing of the dropped unpack is left.
    let store = files(&env.data().join("images-v1"));
    assert!(!store.iter().any(|f| f.starts_with(".tmp-")), "{store:?}");
}
