//! The registry fixtures: tests/fixtures/registry.sh runs a registry on loopback (as root and
//! as an ordinary user), tests/fixtures/make-oci-image.py builds and pushes the test image, and
//! independent tools (skopeo, umoci) see what the scripts promise. The registry client itself
//! is tested in src/oci (unit tests against the same fixtures).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The command's stdout, after checking that it succeeded (what failed, and its output, if not).
pub(crate) fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A registry started by registry.sh, as the test user when running as root.
pub(crate) struct Registry {
    port: u16,
    pid: u32,
    dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that asks for a user name and password (Basic authentication), checked
    /// against `htpasswd` (a line `USER:BCRYPT-HASH`).
    pub(crate) fn start_with_auth(htpasswd: &str) -> Registry {
        Registry::start_with(Some(htpasswd))
    }

    fn start_with(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("devbox-it-registry-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("bash");
        if let Some(line) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            c.env("DEVBOX_REGISTRY_HTPASSWD", &file);
        }
        c.arg(script("registry.sh"))
            .arg("start")
            .arg(dir.path().join("r"))
            .arg("")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null());
        if let Some(u) = test_user() {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
            c.uid(u.uid).gid(u.gid).env("HOME", dir.path());
        }
        let out = ok(c.output().expect("bash"), "registry.sh start");
        let mut it = out.split_whitespace();
        let port = it.next().unwrap().parse().unwrap();
        let pid = it.next().unwrap().parse().unwrap();
        Registry { port, pid, dir }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn repo(&self) -> String {
        format!("127.0.0.1:{}/devbox-test/busybox", self.port)
    }

    /// The registry's log, access log included (`"GET /v2/... HTTP/1.1"` lines).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("r/registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("registry.sh"))
            .arg("stop")
            .arg(self.pid.to_string())
            .status();
    }
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

pub(crate) fn make_image(out_dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(script("make-oci-image.py"))
        .arg(out_dir)
        .arg("--busybox")
        .arg(fixture("busybox"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    serde_json::from_str(&ok(out, "make-oci-image.py")).unwrap()
}

fn skopeo_inspect(reference: &str, raw: bool) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect").arg("--tls-verify=false");
    if raw {
        c.arg("--raw");
    }
    let out = c
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null())
        .output()
        .expect("skopeo (apt-get install skopeo, or run `sudo tests/setup.sh`)");
    serde_json::from_str(&ok(out, "skopeo inspect")).unwrap()
}

#[test]
fn registry_fixture_serves_the_pushed_images() {
    let reg = Registry::start();
    if let Some(u) = test_user() {
        assert_eq!(
            uid_of(reg.pid),
            u.uid,
            "the registry should run as {}",
            u.name
        );
    }
    let work = tempfile::tempdir().unwrap();
    let single = make_image(
        &work.path().join("single"),
        &["--tag", "v1", "--push", &reg.repo()],
    );
    let multi = make_image(
        &work.path().join("multi"),
        &["--tag", "multi", "--multi-arch", "--push", &reg.repo()],
    );

    let info = skopeo_inspect(&format!("{}:v1", reg.repo()), false);
    let layers: Vec<&str> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 3, "{info}");
    let want: Vec<&str> = single["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, want);
    assert_eq!(info["Digest"], single["manifest"]);
    let env: Vec<&str> = info["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"FOO=bar"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");

    // The multi-arch tag is an index: another architecture's image, two attestations (one
    // claiming this host's platform), then the real image.
    let index = skopeo_inspect(&format!("{}:multi", reg.repo()), true);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let attest = |e: &serde_json::Value| {
        e["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
    };
    assert!(!attest(&entries[0]) && attest(&entries[1]) && attest(&entries[2]));
    assert_eq!(entries[1]["platform"]["os"], "unknown");
    assert_eq!(entries[3]["digest"], multi["manifest"]);
    assert_eq!(entries[0]["digest"], multi["dummy_manifest"]);
    assert_eq!(multi["manifest"], single["manifest"]);
}

#[test]
fn image_fixture_layers_mean_what_they_say() {
    // umoci applies the layers (it has no zstd, so layer 2 is gzip here: the same tar).
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let zstd = make_image(&work.path().join("zstd"), &["--tag", "v1"]);
    let gzip = make_image(&layout, &["--tag", "v1", "--layer2", "gzip"]);
    assert_eq!(zstd["layers"][1]["diff_id"], gzip["layers"][1]["diff_id"]);
    assert_eq!(
        zstd["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        zstd["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let bundle = work.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .stdin(Stdio::null())
        .output()
        .expect("umoci (apt-get install umoci, or run `sudo tests/setup.sh`)");
    ok(out, "umoci unpack");
    let root = bundle.join("rootfs");
    // Layer 1: busybox. Layer 2: a whiteout, an opaque directory, a hard link, a new file.
    assert!(root.join("bin/busybox").is_file());
    assert!(
        !root.join("etc/os-release").exists(),
        "whiteout not applied"
    );
    assert!(root.join("etc/passwd").is_file());
    let sbin: Vec<String> = std::fs::read_dir(root.join("usr/sbin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sbin, ["devbox-opaque"], "opaque directory not applied");
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(root.join("bin/busybox")).unwrap();
    let b = std::fs::metadata(root.join("bin/busybox-hardlink")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "not a hard link");
    // Layer 3: a change and a new file.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/devbox-layer2")).unwrap(),
        "changed by layer 3\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/devbox-layer3")).unwrap(),
        "layer 3\n"
    );
    // Deterministic: the same inputs give the same digests.
    let again = make_image(&work.path().join("again"), &["--tag", "v1"]);
    assert_eq!(again["manifest"], zstd["manifest"]);
}
