//! End-to-end tests of the registry client, on loopback only:
//!
//! - against a real registry (Debian's docker-registry, started by tests/fixtures/registry.sh,
//!   with images built and pushed by tests/fixtures/make-oci-image.py): pulls by tag, by digest
//!   and from a multi-arch index, missing tags, damaged and truncated blobs, resumed downloads,
//!   the cache without the network, and diff_id checks;
//! - against a scripted HTTP server for what a plain registry does not do: Bearer tokens,
//!   Basic authentication, redirects to another host, 5xx and 429 answers, broken connections.
//!
//! The registry runs as whoever runs the tests (root in CI is fine, nothing needs root) and is
//! stopped when its test ends, or by its watchdog if the test process dies.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;
use crate::progress::Transfer;
use crate::test_http::{Request, Response, Server};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Options for tests: quick retries, no credential files of the user running the tests.
fn opts() -> Options {
    Options {
        retries: 2,
        retry_base: Duration::from_millis(10),
        timeout: Duration::from_secs(20),
        auth_files: Some(Vec::new()),
        ..Options::default()
    }
}

/// A reporter that records the steps and counts the bytes.
#[derive(Default)]
struct Rec {
    steps: RefCell<Vec<String>>,
    bytes: Arc<AtomicUsize>,
}

struct Count(Arc<AtomicUsize>);

impl Transfer for Count {
    fn inc(&self, n: u64) {
        self.0.fetch_add(n as usize, Ordering::SeqCst);
    }
    fn finish(&self) {}
}

impl Reporter for Rec {
    fn step(&self, msg: &str) {
        self.steps.borrow_mut().push(msg.to_string());
    }
    fn transfer(&self, _what: &str, _total: Option<u64>) -> Box<dyn Transfer> {
        Box::new(Count(Arc::clone(&self.bytes)))
    }
}

impl Rec {
    fn said(&self, needle: &str) -> bool {
        self.steps.borrow().iter().any(|s| s.contains(needle))
    }
    fn all(&self) -> String {
        self.steps.borrow().join("\n")
    }
}

fn sha256_file(p: &Path) -> String {
    format!("sha256:{}", crate::fetch::hash_file(p).unwrap().0)
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

fn cache_files(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("blobs-v1/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// A real registry
// ---------------------------------------------------------------------------------------------

struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    pid: Option<u32>,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("devbox-oci-registry-")
            .tempdir()
            .unwrap();
        let out = Command::new("bash")
            .arg(repo_dir().join("tests/fixtures/registry.sh"))
            .arg("start")
            .arg(dir.path())
            .arg("")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "tests/fixtures/registry.sh start failed (is docker-registry installed? run `sudo tests/setup.sh`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let port = it.next().and_then(|p| p.parse().ok()).expect("PORT");
        let pid = it.next().and_then(|p| p.parse().ok()).expect("PID");
        Registry {
            dir,
            port,
            pid: Some(pid),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/devbox-test/busybox{rest}", self.host())).unwrap()
    }

    /// Builds the test image with make-oci-image.py and pushes it as `tag`.
    fn push(&self, tag: &str, extra: &[&str]) -> serde_json::Value {
        let layout = self.dir.path().join(format!("layout-{tag}"));
        let out = Command::new(python())
            .arg(repo_dir().join("tests/fixtures/make-oci-image.py"))
            .arg(&layout)
            .args(["--tag", tag, "--push"])
            .arg(format!("{}/devbox-test/busybox", self.host()))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "make-oci-image.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["layout"] = serde_json::Value::String(layout.display().to_string());
        v
    }

    /// The registry's copy of a blob.
    fn blob_data(&self, digest: &str) -> PathBuf {
        let h = hex(digest);
        self.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{h}/data",
            &h[..2]
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of GET requests for `digest`'s blob.
    fn blob_gets(&self, digest: &str) -> Vec<String> {
        let needle = format!("\"GET /v2/devbox-test/busybox/blobs/{digest} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(String::from)
            .collect()
    }

    /// Waits (up to 5 s) until the access log has `n` lines for `digest`'s blob: the registry
    /// logs a request after the client may already have read the whole answer.
    fn wait_blob_gets(&self, digest: &str, n: usize) -> Vec<String> {
        for _ in 0..100 {
            let v = self.blob_gets(digest);
            if v.len() >= n {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.blob_gets(digest)
    }

    fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("bash")
                .arg(repo_dir().join("tests/fixtures/registry.sh"))
                .arg("stop")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .status();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The names of the entries of a layer's tar stream, read through `layer_reader` to the end.
fn entries(layer: &Layer) -> Vec<String> {
    let mut r = layer_reader(layer).unwrap();
    let mut names = Vec::new();
    {
        let mut ar = tar::Archive::new(&mut r);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let kind = if e.header().entry_type().is_hard_link() {
                format!(" link to {}", e.link_name().unwrap().unwrap().display())
            } else {
                String::new()
            };
            names.push(format!("{name}{kind}"));
        }
    }
    // The tar reader stops at the end-of-archive marker: read the rest so the diff_id is checked.
    std::io::copy(&mut r, &mut std::io::sink()).expect("diff_id check");
    names
}

fn check_against_summary(p: &Pulled, sum: &serde_json::Value) {
    assert_eq!(p.manifest_digest, s(sum, "manifest"));
    assert_eq!(p.config_digest, s(sum, "config"));
    let want = sum["layers"].as_array().unwrap();
    assert_eq!(p.layers.len(), want.len());
    for (l, w) in p.layers.iter().zip(want) {
        assert_eq!(l.digest, s(w, "digest"));
        assert_eq!(l.size, w["size"].as_u64().unwrap());
        assert_eq!(l.media_type, s(w, "mediaType"));
        assert_eq!(l.diff_id, s(w, "diff_id"));
        assert_eq!(sha256_file(&l.path), l.digest, "{}", l.path.display());
    }
    assert!(
        p.config.env.contains(&"FOO=bar".to_string()),
        "{:?}",
        p.config.env
    );
    assert!(p.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(p.config.os, "linux");
    assert_eq!(
        p.config.diff_ids,
        want.iter().map(|w| s(w, "diff_id")).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Against the real registry
// ---------------------------------------------------------------------------------------------

#[test]
fn registry_pull_by_tag_and_by_digest() {
    let reg = Registry::start();
    let sum = reg.push("v1", &[]);
    let cache = tempfile::tempdir().unwrap();
    let rec = Rec::default();
    let r = reg.reference(":v1");
    assert_eq!(
        r.to_string(),
        format!("{}/devbox-test/busybox:v1", reg.host())
    );
    let p = pull_with(&r, cache.path(), &rec, &opts()).unwrap();
    check_against_summary(&p, &sum);
    assert_eq!(p.index_digest, None);
    let media: Vec<&str> = p.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(
        media,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar"
        ]
    );
    assert!(rec.said("Downloading 3 layers"), "{}", rec.all());
    let total: u64 = p.layers.iter().map(|l| l.size).sum();
    assert_eq!(rec.bytes.load(Ordering::SeqCst) as u64, total);
    // Nothing half-done is left in the cache: the layers, the manifest and the config.
    let files = cache_files(cache.path());
    assert!(files.iter().all(|f| !f.contains('.')), "{files:?}");
    assert_eq!(files.len(), 5, "{files:?}");

    // Every layer reads back (decompressed by its media type) and matches its diff_id.
    let l1 = entries(&p.layers[0]);
    assert!(l1.contains(&"./bin/busybox".to_string()), "{l1:?}");
    let l2 = entries(&p.layers[1]);
    for want in [
        "etc/.wh.os-release",
        "usr/sbin/.wh..wh..opq",
        "usr/sbin/devbox-opaque",
        "bin/busybox-hardlink link to bin/busybox",
        "etc/devbox-layer2",
    ] {
        assert!(l2.contains(&want.to_string()), "{want} in {l2:?}");
    }
    let l3 = entries(&p.layers[2]);
    assert!(l3.contains(&"etc/devbox-layer3".to_string()), "{l3:?}");

    // By digest, into another cache.
    let cache2 = tempfile::tempdir().unwrap();
    let by_digest = reg.reference(&format!("@{}", s(&sum, "manifest")));
    let p2 = pull_with(&by_digest, cache2.path(), &Rec::default(), &opts()).unwrap();
    check_against_summary(&p2, &sum);
    assert_eq!(by_digest.tag, None);

    // The default `pull` (default options) works on a loopback registry as well.
    let cache3 = tempfile::tempdir().unwrap();
    let p3 = pull(&r, cache3.path(), &Rec::default()).unwrap();
    assert_eq!(p3.manifest_digest, p.manifest_digest);
}

#[test]
fn registry_pull_from_a_multi_arch_index() {
    let reg = Registry::start();
    let sum = reg.push("multi", &["--multi-arch"]);
    let cache = tempfile::tempdir().unwrap();
    let rec = Rec::default();
    let p = pull_with(&reg.reference(":multi"), cache.path(), &rec, &opts()).unwrap();
    // The host's image, not the other architecture's nor the attestations (one of which
    // claims the host's platform and comes first).
    check_against_summary(&p, &sum);
    assert_eq!(p.index_digest.as_deref(), Some(s(&sum, "index")));
    let host = Platform::host();
    let os_arch = format!("{}/{}", host.os, host.architecture);
    assert_eq!(s(&sum, "platform"), os_arch);
    assert!(rec.said(&format!("Platform {os_arch}")), "{}", rec.all());

    // The other architecture's entry, when asked for.
    let dummy_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut o = opts();
    o.platform = Platform::parse(&format!("linux/{dummy_arch}"));
    let other = pull_with(&reg.reference(":multi"), cache.path(), &Rec::default(), &o).unwrap();
    assert_eq!(other.manifest_digest, s(&sum, "dummy_manifest"));
    assert_eq!(other.config.architecture, dummy_arch);
    assert_eq!(other.layers.len(), 1);

    // A platform the index does not have: the error lists what it has, attestations not.
    o.platform = Platform::parse("linux/s390x");
    let e = pull_with(&reg.reference(":multi"), cache.path(), &Rec::default(), &o).unwrap_err();
    assert!(matches!(e, OciError::NoPlatform { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("linux/s390x"), "{msg}");
    assert!(msg.contains(&os_arch), "{msg}");
    assert!(msg.contains(&format!("linux/{dummy_arch}")), "{msg}");
    assert!(!msg.contains("unknown"), "{msg}");
}

#[test]
fn registry_pull_docker_schema2_images() {
    let reg = Registry::start();
    let single = reg.push("docker", &["--docker"]);
    let multi = reg.push("docker-multi", &["--docker", "--multi-arch"]);
    let cache = tempfile::tempdir().unwrap();
    let p = pull_with(
        &reg.reference(":docker"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    check_against_summary(&p, &single);
    assert_eq!(
        p.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    for l in &p.layers {
        entries(l);
    }
    let p = pull_with(
        &reg.reference(":docker-multi"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    check_against_summary(&p, &multi);
    assert_eq!(p.index_digest.as_deref(), Some(s(&multi, "index")));
}

#[test]
fn registry_missing_tag_or_repository_is_not_found() {
    let reg = Registry::start();
    reg.push("v1", &[]);
    let cache = tempfile::tempdir().unwrap();
    let r = reg.reference(":no-such-tag");
    let e = pull_with(&r, cache.path(), &Rec::default(), &opts()).unwrap_err();
    assert!(matches!(e, OciError::NotFound { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("image {r} not found (manifest unknown)")),
        "{msg}"
    );
    let r = Reference::parse(&format!("{}/no/such-repo:v1", reg.host())).unwrap();
    let e = pull_with(&r, cache.path(), &Rec::default(), &opts()).unwrap_err();
    assert!(
        e.to_string().contains(&format!("image {r} not found")),
        "{e}"
    );
    assert!(cache_files(cache.path()).is_empty());
}

#[test]
fn registry_damaged_blobs_are_refused_and_nothing_is_kept() {
    let reg = Registry::start();
    let sum = reg.push("v1", &[]);
    let layer = &sum["layers"][0];
    let digest = s(layer, "digest");
    let size = layer["size"].as_u64().unwrap();
    let data = reg.blob_data(digest);
    let original = std::fs::read(&data).unwrap();

    // Same size, different bytes.
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&data, &bad).unwrap();
    let actual = format!("sha256:{}", crate::fetch::hex(&Sha256::digest(&bad)));
    let cache = tempfile::tempdir().unwrap();
    let e = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::DigestMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("expected: {digest}")), "{msg}");
    assert!(msg.contains(&format!("actual:   {actual}")), "{msg}");
    assert!(msg.contains("layer 1 of 3"), "{msg}");
    let files = cache_files(cache.path());
    assert!(
        files.iter().all(|f| !f.starts_with(hex(digest))),
        "kept: {files:?}"
    );

    // Truncated: the registry serves fewer bytes than the manifest says.
    std::fs::write(&data, &original[..original.len() / 2]).unwrap();
    let e = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::SizeMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("expected: {size} bytes")), "{msg}");
    assert!(
        msg.contains(&format!("actual:   {} bytes", original.len() / 2)),
        "{msg}"
    );
    let files = cache_files(cache.path());
    assert!(
        files.iter().all(|f| !f.starts_with(hex(digest))),
        "kept: {files:?}"
    );

    // Repaired: the same cache now completes.
    std::fs::write(&data, &original).unwrap();
    let p = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    check_against_summary(&p, &sum);
}

#[test]
fn registry_resumes_a_partial_blob_with_a_range_request() {
    let reg = Registry::start();
    let sum = reg.push("v1", &[]);
    let layer = &sum["layers"][0];
    let digest = s(layer, "digest");
    let size = layer["size"].as_u64().unwrap() as usize;
    let blob =
        std::fs::read(Path::new(s(&sum, "layout")).join(format!("blobs/sha256/{}", hex(digest))))
            .unwrap();
    assert_eq!(blob.len(), size);
    let half = size / 2;

    // The first half from an earlier, interrupted run.
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("blobs-v1/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{}.partial", hex(digest))), &blob[..half]).unwrap();
    let rec = Rec::default();
    let p = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap();
    check_against_summary(&p, &sum);
    assert!(rec.said("Resuming layer 1 of 3"), "{}", rec.all());
    assert!(!dir.join(format!("{}.partial", hex(digest))).exists());
    // One request, answered 206 with the second half only.
    let gets = reg.wait_blob_gets(digest, 1);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(
        gets[0].contains(&format!("\" 206 {} ", size - half)),
        "not a range answer of {} bytes: {}",
        size - half,
        gets[0]
    );

    // A partial file whose bytes are wrong: the resumed result does not match, so the
    // download starts over once and succeeds.
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("blobs-v1/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.partial", hex(digest))),
        vec![0u8; half],
    )
    .unwrap();
    let rec = Rec::default();
    let p = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap();
    check_against_summary(&p, &sum);
    assert!(rec.said("again from the start"), "{}", rec.all());

    // A partial file longer than the blob is discarded.
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("blobs-v1/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.partial", hex(digest))),
        vec![1u8; size + 10],
    )
    .unwrap();
    let p = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    check_against_summary(&p, &sum);
}

#[test]
fn registry_cached_blobs_need_no_network() {
    let mut reg = Registry::start();
    let sum = reg.push("v1", &[]);
    let cache = tempfile::tempdir().unwrap();
    pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    // The config and the three layers.
    let blob_gets = || {
        reg.log()
            .matches("\"GET /v2/devbox-test/busybox/blobs/")
            .count()
    };
    for _ in 0..100 {
        if blob_gets() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(blob_gets(), 4, "{}", reg.log());

    // Again by tag: the manifest is asked for, no blob.
    let rec = Rec::default();
    let p = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap();
    check_against_summary(&p, &sum);
    assert!(rec.said("All 3 layers are in the cache"), "{}", rec.all());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        blob_gets(),
        4,
        "the second pull fetched blobs:\n{}",
        reg.log()
    );

    // Without the registry: by digest, everything comes from the cache.
    reg.stop();
    let by_digest = reg.reference(&format!("@{}", s(&sum, "manifest")));
    let rec = Rec::default();
    let p = pull_with(&by_digest, cache.path(), &rec, &opts()).unwrap();
    check_against_summary(&p, &sum);
    // A tag needs the registry (tags move): the error names it and says what to check.
    let rec = Rec::default();
    let e = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap_err();
    assert!(matches!(e, OciError::Network { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("cannot reach registry {}", reg.host())),
        "{msg}"
    );
    assert!(rec.said("retrying"), "{}", rec.all());
}

#[test]
fn layer_reader_checks_the_diff_id() {
    let reg = Registry::start();
    reg.push("v1", &[]);
    let cache = tempfile::tempdir().unwrap();
    let p = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    for l in &p.layers {
        let mut r = layer_reader(l).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        // A wrong diff_id fails the read that reaches the end, naming both digests.
        let wrong = Layer {
            diff_id: format!("sha256:{}", "0".repeat(64)),
            ..l.clone()
        };
        let mut r = layer_reader(&wrong).unwrap();
        let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(msg.contains(&wrong.diff_id), "{msg}");
        assert!(msg.contains(&l.diff_id), "{msg}");
        assert!(msg.contains(&l.digest), "{msg}");
        // And keeps failing.
        assert!(r.read(&mut [0u8; 16]).is_err());
    }
    // The media type decides nothing about the decompression: a mislabelled layer still
    // reads; an unknown media type is refused.
    let relabelled = Layer {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        ..p.layers[0].clone()
    };
    let mut r = layer_reader(&relabelled).unwrap();
    std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    let foreign = Layer {
        media_type: "application/vnd.in-toto+json".into(),
        ..p.layers[0].clone()
    };
    assert!(layer_reader(&foreign).is_err());
    // A cached blob damaged after the pull is caught by the diff_id.
    let l = &p.layers[2];
    let mut bytes = std::fs::read(&l.path).unwrap();
    bytes[600] ^= 1; // inside the first file's data
    std::fs::write(&l.path, &bytes).unwrap();
    let mut r = layer_reader(l).unwrap();
    let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
}

// ---------------------------------------------------------------------------------------------
// A scripted HTTP server
// ---------------------------------------------------------------------------------------------

/// A scripted registry: the tests' HTTP server, its image named `HOST/test/img`.
trait Fake {
    fn reference(&self, rest: &str) -> Reference;
}

impl Fake for Server {
    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/test/img{rest}", self.host())).unwrap()
    }
}

/// A small image: gzip layers of pseudo-random data (so they do not compress away).
struct Img {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    layers: Vec<(String, Vec<u8>)>,
}

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", crate::fetch::hex(&Sha256::digest(b)))
}

fn img(sizes: &[usize]) -> Img {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("file{i}"), &data[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        diff_ids.push(digest_of(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        layers.push((digest_of(&blob), blob));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = digest_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(d, b)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": b.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    Img {
        manifest_digest: digest_of(&manifest),
        manifest,
        config,
        config_digest,
        layers,
    }
}

impl Img {
    /// What a registry answers for `path` (no authentication), honouring Range.
    fn answer(&self, req: &Request) -> Response {
        let path = req.path.as_str();
        if path == "/v2/test/img/manifests/v1"
            || path == format!("/v2/test/img/manifests/{}", self.manifest_digest)
        {
            return Response::new(200, self.manifest.clone())
                .header("Content-Type", manifest::OCI_MANIFEST);
        }
        if path == format!("/v2/test/img/blobs/{}", self.config_digest) {
            return Response::new(200, self.config.clone());
        }
        for (d, b) in &self.layers {
            if path == format!("/v2/test/img/blobs/{d}") || path == format!("/store/{}", hex(d)) {
                return Response::ranged(req, b);
            }
        }
        Response::new(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
    }

    fn layer(&self, req: &Request) -> Option<usize> {
        self.layers
            .iter()
            .position(|(d, _)| req.target.starts_with(&format!("/v2/test/img/blobs/{d}")))
    }
}

fn auth_file(dir: &Path, host: &str, user: &str, pass: &str) -> PathBuf {
    let f = dir.join("auth.json");
    let auth = auth::base64_encode(format!("{user}:{pass}").as_bytes());
    std::fs::write(
        &f,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    f
}

#[test]
fn fake_bearer_token_once_and_redirects_without_authorization() {
    let image = Arc::new(img(&[300_000, 200_000, 100_000]));
    // Blob storage on another host (another loopback address): records what it gets.
    let store = Server::start_on("127.0.0.2", {
        let image = Arc::clone(&image);
        move |req: &Request| image.answer(req)
    });
    let store_host = store.host().to_string();
    let registry_port = Arc::new(Mutex::new(String::new()));
    let reg = Server::start({
        let (image, registry_port) = (Arc::clone(&image), Arc::clone(&registry_port));
        move |req: &Request| {
            let me = registry_port.lock().unwrap().clone();
            if req.target.starts_with("/token") {
                let user = req.header("authorization") == Some("Basic dXNlcjpwYXNz");
                let tok = if user { "tok-user" } else { "tok-anon" };
                return Response::new(200, format!(r#"{{"token":"{tok}","expires_in":300}}"#));
            }
            let ok = matches!(
                req.header("authorization"),
                Some("Bearer tok-anon") | Some("Bearer tok-user")
            );
            if !ok {
                return Response::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{me}/token",service="fake registry",scope="repository:test/img:pull,push""#),
                );
            }
            if let Some(i) = image.layer(req) {
                let hexd = hex(&image.layers[i].0).to_string();
                return Response::new(307, Vec::new()).header(
                    "Location",
                    &format!("http://{store_host}/store/{hexd}?X-Signature=abc"),
                );
            }
            image.answer(req)
        }
    });
    *registry_port.lock().unwrap() = reg.host().to_string();

    let cache = tempfile::tempdir().unwrap();
    let p = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.manifest_digest, image.manifest_digest);
    for l in &p.layers {
        assert_eq!(sha256_file(&l.path), l.digest);
        entries(l);
    }
    // One token for the whole pull; the scope came through whole (comma and colons).
    let tokens = reg.requests("/token");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let q = &tokens[0].target;
    assert!(
        q.contains("service=fake+registry") || q.contains("service=fake%20registry"),
        "{q}"
    );
    assert!(
        q.contains("scope=repository%3Atest%2Fimg%3Apull%2Cpush"),
        "{q}"
    );
    assert_eq!(tokens[0].header("authorization"), None);
    // The blob host never saw the registry's token; the registry saw it on every request after
    // the challenge.
    let at_store = store.requests("/store/");
    assert_eq!(at_store.len(), 3, "{at_store:?}");
    assert!(
        at_store.iter().all(|r| r.header("authorization").is_none()),
        "{at_store:?}"
    );
    let v2 = reg.requests("/v2/");
    assert!(v2.len() >= 5, "{v2:?}");
    assert!(
        v2[1..]
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-anon")),
        "{v2:?}"
    );

    // With stored credentials, they go to the token service (and not to the blob host).
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.auth_files = Some(vec![auth_file(dir.path(), reg.host(), "user", "pass")]);
    let cache = tempfile::tempdir().unwrap();
    pull_with(&reg.reference(":v1"), cache.path(), &Rec::default(), &o).unwrap();
    let tokens = reg.requests("/token");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens[1].header("authorization"),
        Some("Basic dXNlcjpwYXNz")
    );
    assert!(store
        .requests("/store/")
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn fake_basic_auth_and_refusals() {
    let image = Arc::new(img(&[1000]));
    let reg = Server::start({
        let image = Arc::clone(&image);
        move |req: &Request| {
            if req.header("authorization") != Some("Basic dXNlcjpwYXNz") {
                return Response::new(401, Vec::new())
                    .header("WWW-Authenticate", r#"Basic realm="fake""#);
            }
            image.answer(req)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let e = pull_with(
        &reg.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::Unauthorized { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("registry {} requires authentication", reg.host())),
        "{msg}"
    );
    assert!(msg.contains("login"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.auth_files = Some(vec![auth_file(dir.path(), reg.host(), "user", "pass")]);
    let p = pull_with(&reg.reference(":v1"), cache.path(), &Rec::default(), &o).unwrap();
    assert_eq!(p.manifest_digest, image.manifest_digest);
    o.auth_files = Some(vec![auth_file(dir.path(), reg.host(), "user", "wrong")]);
    let e = pull_with(&reg.reference(":v1"), cache.path(), &Rec::default(), &o).unwrap_err();
    assert!(
        matches!(
            e,
            OciError::Denied {
                logged_in: true,
                ..
            }
        ),
        "{e:?}"
    );

    // The same credentials from a credential helper named for the registry (credHelpers),
    // run with Docker's helper protocol.
    let bin = dir.path().join("helpers");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-devboxtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r s\n[ \"$1 $s\" = \"get {}\" ] || {{ echo 'credentials not found'; exit 1; }}\necho '{{\"Username\":\"user\",\"Secret\":\"pass\"}}'\n",
            reg.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.path().join("config.json");
    std::fs::write(
        &conf,
        format!(r#"{{"credHelpers":{{"{}":"devboxtest"}}}}"#, reg.host()),
    )
    .unwrap();
    o.auth_files = Some(vec![conf.clone()]);
    o.helper_path = Some(bin.clone().into_os_string());
    let cache2 = tempfile::tempdir().unwrap();
    let p = pull_with(&reg.reference(":v1"), cache2.path(), &Rec::default(), &o).unwrap();
    assert_eq!(p.manifest_digest, image.manifest_digest);

    // 401 without any challenge.
    let bare = Server::start(|_: &Request| Response::new(401, Vec::new()));
    let e = pull_with(
        &bare.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(bare.host()), "{msg}");
    assert!(
        msg.contains("without a WWW-Authenticate challenge"),
        "{msg}"
    );

    // A token that does not open the door: access denied, with the registry's message.
    let deny = Server::start({
        move |req: &Request| {
            if req.target.starts_with("/token") {
                return Response::new(200, r#"{"access_token":"t"}"#);
            }
            let port = req.header("host").unwrap_or("").to_string();
            Response::new(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://{port}/token",service="x",error="insufficient_scope""#
                ),
            )
        }
    });
    let e = pull_with(
        &deny.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            OciError::Denied {
                logged_in: false,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("authentication required"), "{msg}");
    assert!(msg.contains("may not exist"), "{msg}");
    // Where devbox looked is part of the hint (the tests' options name no file at all).
    let mut o = opts();
    let nowhere = tempfile::tempdir().unwrap();
    let file = nowhere.path().join("auth.json");
    o.auth_files = Some(vec![file.clone()]);
    let e = pull_with(&deny.reference(":v1"), cache.path(), &Rec::default(), &o).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("looked in: {}", file.display())),
        "{e}"
    );
    let tokens = deny.requests("/token");
    assert!(
        tokens[0]
            .target
            .contains("scope=repository%3Atest%2Fimg%3Apull"),
        "{tokens:?}"
    );
}

#[test]
fn fake_transient_failures_are_retried() {
    let image = Arc::new(img(&[5000, 5000]));
    let hits = Arc::new(AtomicUsize::new(0));
    let layer_hits = Arc::new(AtomicUsize::new(0));
    let reg = Server::start({
        let (image, hits, layer_hits) = (
            Arc::clone(&image),
            Arc::clone(&hits),
            Arc::clone(&layer_hits),
        );
        move |req: &Request| {
            if req.target.contains("/manifests/") {
                return match hits.fetch_add(1, Ordering::SeqCst) {
                    0 => Response::new(503, "busy"),
                    1 => Response::new(429, Vec::new()).header("Retry-After", "1"),
                    _ => image.answer(req),
                };
            }
            if image.layer(req) == Some(0) && layer_hits.fetch_add(1, Ordering::SeqCst) == 0 {
                return Response::new(502, "<html>bad gateway</html>");
            }
            image.answer(req)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let rec = Rec::default();
    let started = std::time::Instant::now();
    let p = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap();
    assert_eq!(p.manifest_digest, image.manifest_digest);
    let said = rec.all();
    assert!(said.contains("503"), "{said}");
    assert!(said.contains("429"), "{said}");
    assert!(said.contains("retrying in 1s (attempt 3 of 3)"), "{said}");
    assert!(said.contains("502"), "{said}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );

    // Always failing: gives up after the attempts, with the status.
    let down = Server::start(|_: &Request| Response::new(503, "down"));
    let e = pull_with(
        &down.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(down.requests("/v2/").len(), 3);

    // Asked to wait an hour: not waited for; the error says so.
    let limited =
        Server::start(|_: &Request| Response::new(429, Vec::new()).header("Retry-After", "3600"));
    let e = pull_with(
        &limited.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::RateLimited { .. }), "{e:?}");
    assert!(e.to_string().contains("3600s"), "{e}");
    assert_eq!(limited.requests("/v2/").len(), 1);

    // A pull limit (429 without Retry-After, as Docker Hub answers): no retry at all, and the
    // error names the limit and the ways out.
    let limit = Server::start(|_: &Request| Response::new(429, Vec::new()));
    let started = std::time::Instant::now();
    let e = pull_with(
        &limit.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            OciError::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    for part in ["pull limit", "docker login", "registry_mirrors"] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    assert_eq!(limit.requests("/v2/").len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn fake_broken_connections_are_resumed() {
    let image = Arc::new(img(&[400_000]));
    let (digest, blob) = image.layers[0].clone();
    let cut = blob.len() / 3;
    let gets = Arc::new(AtomicUsize::new(0));
    let reg = Server::start({
        let (image, gets) = (Arc::clone(&image), Arc::clone(&gets));
        move |req: &Request| {
            if image.layer(req).is_some() && gets.fetch_add(1, Ordering::SeqCst) == 0 {
                return image.answer(req).cut(cut);
            }
            image.answer(req)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let rec = Rec::default();
    let p = pull_with(&reg.reference(":v1"), cache.path(), &rec, &opts()).unwrap();
    assert_eq!(sha256_file(&p.layers[0].path), digest);
    let reqs = reg.requests(&format!("/v2/test/img/blobs/{digest}"));
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(
        reqs[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(rec.said("resuming at"), "{}", rec.all());
    assert!(!cache
        .path()
        .join(format!("blobs-v1/sha256/{}.partial", hex(&digest)))
        .exists());

    // A server that ignores Range: the download starts over and still ends verified.
    let gets = Arc::new(AtomicUsize::new(0));
    let no_range = Server::start({
        let (image, gets) = (Arc::clone(&image), Arc::clone(&gets));
        move |req: &Request| {
            let mut plain = req.clone();
            plain.headers.remove("range");
            let mut r = image.answer(&plain);
            if image.layer(req).is_some() && gets.fetch_add(1, Ordering::SeqCst) == 0 {
                r = r.cut(cut);
            }
            r
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let p = pull_with(
        &no_range.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    assert_eq!(sha256_file(&p.layers[0].path), digest);

    // Broken every time: after the attempts, the error says how far it got, and the partial
    // file stays for the next run to resume.
    let broken = Server::start({
        let image = Arc::clone(&image);
        move |req: &Request| {
            let mut r = image.answer(req);
            if image.layer(req).is_some() && r.status == 200 {
                r = r.cut(cut);
            } else if image.layer(req).is_some() {
                r = r.cut(0);
            }
            r
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let e = pull_with(
        &broken.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, OciError::Interrupted { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("broke off at {cut} of {}", blob.len())),
        "{msg}"
    );
    assert!(msg.contains("resumes"), "{msg}");
    let partial = cache
        .path()
        .join(format!("blobs-v1/sha256/{}.partial", hex(&digest)));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), cut as u64);
    // ... and the next run (against a healthy registry) resumes it.
    let reg2 = Server::start({
        let image = Arc::clone(&image);
        move |req: &Request| image.answer(req)
    });
    let p = pull_with(
        &reg2.reference(":v1"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    assert_eq!(sha256_file(&p.layers[0].path), digest);
    let reqs = reg2.requests(&format!("/v2/test/img/blobs/{digest}"));
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
}

/// An index whose chosen entry is another index (wrapping `inner`, `depth` levels deep).
fn nested_indexes(image: &Img, depth: usize) -> Vec<(String, Vec<u8>)> {
    let host = Platform::host();
    let mut levels = Vec::new();
    let (mut digest, mut media, mut size) = (
        image.manifest_digest.clone(),
        manifest::OCI_MANIFEST,
        image.manifest.len(),
    );
    for _ in 0..depth {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": [{"mediaType": media, "digest": digest, "size": size,
                           "platform": {"os": "linux", "architecture": host.architecture}}],
        }))
        .unwrap();
        digest = digest_of(&index);
        media = manifest::OCI_INDEX;
        size = index.len();
        levels.push((digest.clone(), index));
    }
    levels
}

fn serve_nested(image: Arc<Img>, levels: Vec<(String, Vec<u8>)>) -> Server {
    Server::start(move |req: &Request| {
        let path = req.path.as_str();
        let top = levels.last().unwrap();
        if path == "/v2/test/img/manifests/nested" {
            return Response::new(200, top.1.clone()).header("Content-Type", manifest::OCI_INDEX);
        }
        for (d, body) in &levels {
            if path == format!("/v2/test/img/manifests/{d}") {
                return Response::new(200, body.clone())
                    .header("Content-Type", manifest::OCI_INDEX);
            }
        }
        image.answer(req)
    })
}

#[test]
fn fake_nested_indexes_are_followed_a_few_levels_deep() {
    let image = Arc::new(img(&[1000]));
    let cache = tempfile::tempdir().unwrap();
    let reg = serve_nested(Arc::clone(&image), nested_indexes(&image, 2));
    let p = pull_with(
        &reg.reference(":nested"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.manifest_digest, image.manifest_digest);

    let cache = tempfile::tempdir().unwrap();
    let deep = serve_nested(Arc::clone(&image), nested_indexes(&image, 6));
    let e = pull_with(
        &deep.reference(":nested"),
        cache.path(),
        &Rec::default(),
        &opts(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("nest more than 4 levels"), "{e}");
}
