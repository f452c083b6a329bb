//! `devbox create HOST/PATH:TAG` against a real registry on loopback: layers applied with
//! whiteouts and opaque directories exactly as umoci applies them, the image's Env in the box,
//! the digest recorded, a multi-arch index resolved to this host. Against a scripted one:
//! layers applied while they download, and blobs or layers that do not match keep nothing.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::download::unpack_under_way;
use crate::harness::*;
use crate::http::{Request, Response, Server};
use crate::registry::{make_image, Registry};

/// path -> (type, mode, size or link target), for comparing two unpacked trees.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!(
                    "file {:o} {} nlink={}",
                    m.permissions().mode() & 0o7777,
                    m.size(),
                    m.nlink()
                )
            };
            out.insert(rel, what);
        }
    }
    out
}

#[test]
fn create_from_a_registry_matches_umoci() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let pushed = make_image(
        &work.path().join("img"),
        &["--tag", "v1", "--push", &reg.repo()],
    );
    make_image(
        &work.path().join("multi"),
        &["--tag", "multi", "--multi-arch", "--push", &reg.repo()],
    );
    let env = TestEnv::new();
    let out = env.ok(["create", &format!("{}:v1", reg.repo()), "--name", "oci"]);
    assert!(out.contains("Created box 'oci'"), "{out}");

    // The image's Env is the box's; the manifest digest is recorded.
    assert_eq!(env.sh("oci", "echo $FOO"), "bar\n");
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    let id = images[0]["id"].as_str().unwrap().to_string();
    let record =
        std::fs::read_to_string(env.data().join("images-v1").join(&id).join("image.toml")).unwrap();
    assert!(
        record.contains(pushed["manifest"].as_str().unwrap()),
        "{record}"
    );

    // File by file, the same tree umoci makes of the same layers (layer 2 as gzip: umoci has
    // no zstd; the tar inside is the same, as the fixture test checks).
    let layout = work.path().join("layout");
    make_image(&layout, &["--tag", "v1", "--layer2", "gzip"]);
    let bundle = work.path().join("bundle");
    let umoci = std::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci: run `sudo tests/setup.sh`");
    assert!(umoci.status.success(), "{}", stderr(&umoci));
    let ours = tree(&env.data().join("images-v1").join(&id).join("rootfs"));
    let theirs = tree(&bundle.join("rootfs"));
    let only_ours: Vec<_> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k) != Some(v))
        .collect();
    let only_theirs: Vec<_> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "devbox and umoci differ:\n devbox: {only_ours:?}\n umoci: {only_theirs:?}"
    );

    // A multi-arch index: this host's image is chosen (the same config, so the same store entry).
    env.ok([
        "create",
        &format!("{}:multi", reg.repo()),
        "--name",
        "multi",
    ]);
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    assert_eq!(env.sh("multi", "echo $FOO"), "bar\n");

    // `image pull` puts an image in the store without a box; `image list` shows its digest.
    let env2 = TestEnv::new();
    env2.ok(["image", "pull", &format!("{}:v1", reg.repo())]);
    let images: serde_json::Value =
        serde_json::from_str(&env2.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images[0]["digest"], pushed["manifest"]);
    assert_eq!(images[0]["boxes"], serde_json::json!([]));
    assert!(env2.ok(["list"]).contains("No boxes"));

    // A tag that is not there.
    let err = env.fails(
        1,
        ["create", &format!("{}:nope", reg.repo()), "--name", "x"],
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn archives_that_are_image_layouts_are_unpacked_as_images() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = work.path().join("layout");
    // Layer 2 as gzip: docker-archive has no zstd.
    make_image(&layout, &["--tag", "v1", "--layer2", "gzip"]);
    // An OCI image layout in a tar whose name says nothing about it.
    let oci_tar = work.path().join("image.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&oci_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    // The same image as a docker-archive (docker save's format), made by skopeo.
    let docker_tar = work.path().join("saved.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!(
            "docker-archive:{}:devbox/test:v1",
            docker_tar.display()
        ))
        .output()
        .expect("skopeo: run `sudo tests/setup.sh`");
    assert!(out.status.success(), "{}", stderr(&out));
    for f in [&oci_tar, &docker_tar] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let env = TestEnv::new();
    let out = env
        .cmd(["create", oci_tar.to_str().unwrap(), "--name", "lay"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is an image layout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.sh("lay", "echo $FOO"), "bar\n");
    env.ok(["create", docker_tar.to_str().unwrap(), "--name", "saved"]);
    assert_eq!(env.sh("saved", "echo $FOO"), "bar\n");
    // Both are the same image (one config digest): one store entry, and the same tree.
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    let listing = |b: &str| env.sh(b, "find / -xdev | sort | md5sum");
    assert_eq!(listing("lay"), listing("saved"));
}

// ---------------------------------------------------------------------------------------------
// A scripted registry on loopback, for what a real one cannot be made to do: hold a layer back
// halfway, or serve blobs that do not match the manifest.
// ---------------------------------------------------------------------------------------------

fn digest(b: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// A small plain-tar layer: `etc/layer2` and a whiteout of `bin/arch`.
fn small_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("etc/layer2", &b"from layer 2\n"[..]),
        ("bin/.wh.arch", &b""[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// One image, `ROOT/test/busy`, in several tags:
///   v1     layer 1 = the busybox fixture tar (held back halfway until an unpack in the watched
///          store has made bin/arch from it and layer 2 was served, at most 20 s), layer 2 =
///          [`small_layer`] (served at once)
///   bad    like v1 but the manifest names a layer-2 digest its bytes do not have
///   baddiff  like v1 but the config's diff_id of layer 2 is wrong
struct Scripted {
    server: Server,
    watch: Arc<Mutex<Option<PathBuf>>>,
    seen: Arc<AtomicBool>,
    layer2_done_first: Arc<AtomicBool>,
}

struct Blobs {
    /// digest -> bytes
    blobs: HashMap<String, Vec<u8>>,
    /// tag -> manifest
    manifests: HashMap<String, Vec<u8>>,
    layer1: String,
    layer2: String,
}

fn blobs() -> Blobs {
    let l1 = std::fs::read(fixture("busybox")).unwrap();
    let l2 = small_layer();
    let (d1, d2) = (digest(&l1), digest(&l2));
    let mut blobs = HashMap::new();
    let mut manifests = HashMap::new();
    let config = |diff2: &str| {
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["FOO=scripted"]}},"rootfs":{{"type":"layers","diff_ids":["{d1}","{diff2}"]}}}}"#
        )
        .into_bytes()
    };
    let manifest = |config: &[u8], layer2: &str, size2: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d1}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer2}","size":{size2}}}]}}"#,
            digest(config),
            config.len(),
            l1.len()
        )
        .into_bytes()
    };
    let good = config(&d2);
    manifests.insert("v1".to_string(), manifest(&good, &d2, l2.len()));
    // The manifest names a digest that the bytes served under it do not have.
    let wrong = format!("sha256:{}", b_layer2_damaged());
    manifests.insert("bad".to_string(), manifest(&good, &wrong, l2.len()));
    blobs.insert(wrong, l2.clone());
    let bad_diff = config(&digest(b"something else"));
    manifests.insert("baddiff".to_string(), manifest(&bad_diff, &d2, l2.len()));
    blobs.insert(digest(&good), good);
    blobs.insert(digest(&bad_diff), bad_diff);
    blobs.insert(d1.clone(), l1);
    blobs.insert(d2.clone(), l2);
    Blobs {
        blobs,
        manifests,
        layer1: d1,
        layer2: d2,
    }
}

impl Scripted {
    fn start() -> Scripted {
        let watch: Arc<Mutex<Option<PathBuf>>> = Arc::new(Mutex::new(None));
        let seen = Arc::new(AtomicBool::new(false));
        let layer2_done_first = Arc::new(AtomicBool::new(false));
        let layer2_served = Arc::new(AtomicBool::new(false));
        let b = blobs();
        let (w, s, first) = (
            Arc::clone(&watch),
            Arc::clone(&seen),
            Arc::clone(&layer2_done_first),
        );
        // Concurrent (a thread a connection): the layers download in parallel.
        let server = Server::start(move |req: &Request| {
            let path = req.path.as_str();
            let json = |status, body: &[u8]| {
                Response::new(status, body).header("Content-Type", "application/json")
            };
            if path == "/v2/" {
                return json(200, b"{}");
            }
            if let Some(tag) = path.strip_prefix("/v2/test/busy/manifests/") {
                return match b.manifests.get(tag) {
                    Some(m) => Response::new(200, m.clone())
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    None => json(
                        404,
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                    ),
                };
            }
            let Some(d) = path.strip_prefix("/v2/test/busy/blobs/") else {
                return Response::not_found();
            };
            let Some(blob) = b.blobs.get(d) else {
                return json(404, b"{}");
            };
            let r =
                Response::new(200, blob.clone()).header("Content-Type", "application/octet-stream");
            let l2 = Arc::clone(&layer2_served);
            if *d == b.layer2 {
                return r.pause(blob.len(), move |_| {
                    l2.store(true, Ordering::SeqCst);
                    true
                });
            }
            if *d != b.layer1 {
                return r;
            }
            // Half, then nothing until the unpack has made files from it, then the rest.
            let (watch, seen, first) = (Arc::clone(&w), Arc::clone(&s), Arc::clone(&first));
            r.pause(blob.len() / 2, move |_| {
                let store = watch.lock().unwrap().clone();
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                // Until both: the unpack has made files of layer 1's first half, and layer 2
                // has been downloaded meanwhile (in parallel).
                while let Some(store) = &store {
                    if unpack_under_way(store) {
                        seen.store(true, Ordering::SeqCst);
                    }
                    if l2.load(Ordering::SeqCst) {
                        first.store(true, Ordering::SeqCst);
                    }
                    if seen.load(Ordering::SeqCst) && first.load(Ordering::SeqCst) {
                        break;
                    }
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                true
            })
        });
        Scripted {
            server,
            watch,
            seen,
            layer2_done_first,
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}/test/busy:{tag}", self.server.host())
    }
}

/// The hex digest the "bad" manifest names for layer 2.
fn b_layer2_damaged() -> String {
    let mut other = small_layer();
    other[600] ^= 1;
    digest(&other).trim_start_matches("sha256:").to_string()
}

/// The id of the only image in the store.
fn reg_image_id(env: &TestEnv) -> String {
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    images[0]["id"].as_str().unwrap().to_string()
}

fn blob_cache(env: &TestEnv) -> PathBuf {
    env.home.join(".cache/devbox/blobs-v1/sha256")
}

fn store_entries(env: &TestEnv) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.data().join("images-v1"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Layer 1 is applied while it downloads (the registry holds its second half back until the
/// unpack has made files of the first), layer 2, downloaded meanwhile into the blob cache, is
/// applied after it from there; the image is right, and made again from the cache alone.
#[test]
fn layers_are_applied_while_they_download() {
    let reg = Scripted::start();
    let env = TestEnv::new();
    *reg.watch.lock().unwrap() = Some(env.data().join("images-v1"));
    let out = env.run(["create", &reg.image("v1"), "--name", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        reg.seen.load(Ordering::SeqCst),
        "nothing of layer 1 was applied before its download ended"
    );
    assert!(
        reg.layer2_done_first.load(Ordering::SeqCst),
        "layer 2 should have been downloaded while layer 1 was held back"
    );
    assert_eq!(
        env.sh("s", "cat /etc/layer2; echo $FOO"),
        "from layer 2\nscripted\n"
    );
    assert_eq!(env.sh("s", "test -e /bin/arch || echo gone"), "gone\n");
    let b = blobs();
    for d in [&b.layer1, &b.layer2] {
        let p = blob_cache(&env).join(d.trim_start_matches("sha256:"));
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b.blobs[d.as_str()],
            "blob {d} in the cache"
        );
    }
    // Without the image, with the registry gone: by digest, from the blob cache.
    let manifest = digest(&b.manifests["v1"]);
    let by_digest = format!("{}/test/busy@{manifest}", reg.server.host());
    drop(reg);
    // (`image rm`, unlike `image prune`, leaves the blob cache alone.)
    env.ok(["image", "rm", "--force", &reg_image_id(&env)]);
    assert_eq!(store_entries(&env), Vec::<String>::new());
    let out = env.run(["create", &by_digest, "--name", "again"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("All 2 layers are in the cache"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.sh("again", "cat /etc/layer2"), "from layer 2\n");
}

/// A blob that does not match its digest, or a layer that does not match its diff_id: the
/// create fails saying so, and neither an image nor a temp dir nor a partial blob is kept.
#[test]
fn a_layer_that_does_not_match_keeps_nothing() {
    let reg = Scripted::start();
    let env = TestEnv::new();
    let err = env.fails(1, ["create", &reg.image("bad"), "--name", "b"]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert_eq!(store_entries(&env), Vec::<String>::new());
    // Of the blob that did not match, neither a file nor a partial one. (The other layer's
    // partial download may stay: it is resumed by the next pull.)
    let damaged = b_layer2_damaged();
    let left: Vec<String> = std::fs::read_dir(blob_cache(&env))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(damaged.as_str()))
        .collect();
    assert_eq!(left, Vec::<String>::new());

    let err = env.fails(1, ["create", &reg.image("baddiff"), "--name", "b"]);
    assert!(err.contains("does not match its diff_id"), "{err}");
    assert!(err.contains("nothing was kept"), "{err}");
    assert_eq!(store_entries(&env), Vec::<String>::new());
    assert!(env.ok(["list"]).contains("No boxes"));
}

// ---------------------------------------------------------------------------------------------
// The user configuration: insecure registries and mirrors
// ---------------------------------------------------------------------------------------------

/// A name of this machine's 127.0.0.1 that is not a loopback name to devbox (not `localhost`,
/// not an address): the host name, or another name /etc/hosts gives 127.0.0.1.
fn loopback_alias() -> String {
    use std::net::ToSocketAddrs;
    let mut candidates = Vec::new();
    if let Ok(h) = nix::unistd::gethostname() {
        candidates.push(h.to_string_lossy().into_owned());
    }
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() == Some("127.0.0.1") {
                candidates.extend(words.map(String::from));
            }
        }
    }
    let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
    for c in candidates {
        if c.is_empty() || c.starts_with("localhost") || c.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let resolves = (c.as_str(), 80)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.any(|a| a.ip() == loopback));
        if resolves {
            return c;
        }
    }
    panic!("no name of 127.0.0.1 other than localhost: add `127.0.0.1 devbox-registry-alias` to /etc/hosts (run `sudo tests/setup.sh`)");
}

fn write_user_config(env: &TestEnv, text: &str) {
    let dir = env.home.join(".config/devbox");
    env.mkdir_as_user(&env.home.join(".config"));
    env.mkdir_as_user(&dir);
    env.write_as_user(&dir.join("config.toml"), text.as_bytes());
}

/// `insecure_registries`: a registry named by a non-loopback name is spoken to over https
/// unless listed (the error says so), and over plain http when listed. `registry_mirrors`: an
/// image of a registry that does not exist comes from its mirror, after a dead mirror before
/// it was passed over with one line.
#[test]
fn insecure_registries_and_mirrors_from_the_user_configuration() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    make_image(
        &work.path().join("img"),
        &["--tag", "v1", "--push", &reg.repo()],
    );
    let alias = loopback_alias();
    let port = reg.port();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let env = TestEnv::new();
    let by_alias = format!("{alias}:{port}/devbox-test/busybox:v1");
    let err = env.fails(1, ["create", &by_alias, "--name", "a"]);
    assert!(
        err.contains("plain http")
            && err.contains(&format!("insecure_registries = [\"{alias}:{port}\"]")),
        "{err}"
    );
    write_user_config(
        &env,
        &format!("insecure_registries = [\"{alias}:{port}\"]\n"),
    );
    env.ok(["create", &by_alias, "--name", "a"]);
    assert_eq!(env.sh("a", "echo $FOO"), "bar\n");

    let env = TestEnv::new();
    write_user_config(
        &env,
        &format!(
            "[registry_mirrors]\n\"mirrored.invalid\" = [\"127.0.0.1:{dead}\", \"http://127.0.0.1:{port}/\"]\n"
        ),
    );
    let image = "mirrored.invalid/devbox-test/busybox:v1";
    let out = env.run(["create", image, "--name", "m"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let passed: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&format!("Mirror 127.0.0.1:{dead}: ")))
        .collect();
    assert_eq!(passed.len(), 1, "{err}");
    assert!(passed[0].ends_with("trying the next source"), "{err}");
    assert!(
        err.contains(&format!(
            "Trying mirror http://127.0.0.1:{port}/ of mirrored.invalid"
        )),
        "{err}"
    );
    assert_eq!(env.sh("m", "echo $FOO"), "bar\n");
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    assert_eq!(images[0]["source"], image);
}

/// An OCI image layout that arrives as a download (Rocky Linux publishes its container images
/// as layouts) is read as the image it holds, not unpacked as a root.
#[test]
fn an_image_layout_from_a_url_is_read_as_an_image() {
    let env = TestEnv::new();
    let served = env.root.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let archive = crate::leftovers::layout_archive(&served);
    let name = format!("/{}", archive.file_name().unwrap().to_string_lossy());
    let server = {
        let (name, data) = (name.clone(), std::fs::read(&archive).unwrap());
        Server::start(move |req: &Request| match req.path == name {
            true => Response::new(200, data.clone()),
            false => Response::not_found(),
        })
    };
    let out = env.run(["create", &server.url(&name), "--name", "fromurl"]);
    drop(server);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is an image layout"), "{err}");
    assert_eq!(
        env.sh("fromurl", "cat /etc/debian_version | cut -d. -f1"),
        "12\n"
    );
}
