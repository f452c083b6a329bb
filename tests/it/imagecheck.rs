//! `devbox image check`: a test catalog whose sources are loopback copies of each source kind
//! (the registry of tests/it/registry.rs; the HTTP server of tests/it/download.rs with its LXC
//! image-server index, checksum list, Alpine release index and archives), some present, some
//! missing. The table says which, the exit status says whether a release is left without a
//! source, and no image is downloaded: the servers see no GET of an archive or a layer, and
//! the store and caches stay empty.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::download::fixture_server;
use crate::harness::*;
use crate::http::Server;
use crate::registry::{make_image, Registry};

/// `chkos` (releases 1 and 2 work, 1 from every source, 2 after its first source fails; 3 has
/// no source for this machine) and `gone` (every source missing).
fn write_catalog(dir: &Path, srv: &Server, reg: &Registry) {
    let fixture_sha: String = sha2::Sha256::digest(std::fs::read(fixture("busybox")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let both = r#"{ amd64 = "amd64", arm64 = "arm64" }"#;
    let chkos = format!(
        r#"id = "chkos"
name = "Check OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"
vars = {{ tag = "multi" }}

[[release]]
name = "2"
vars = {{ tag = "no-such-tag" }}

[[release]]
name = "3"
vars = {{ tag = "x" }}

[[source]]
kind = "oci"
image = "{repo}:{{tag}}"
releases = ["1", "2"]
arch = {both}

[[source]]
kind = "simplestreams"
url = "{root}"
distro = "simos"
releases = ["1"]
arch = {both}

[[source]]
kind = "alpine"
url = "{root}/latest-releases.yaml"
releases = ["1"]
arch = {{ amd64 = "x86_64", arm64 = "aarch64" }}

[[source]]
kind = "sumsfile"
url = "{root}/SHA256SUMS"
pattern = "busybox-{{version}}.tar"
releases = ["2"]
arch = {both}

[[source]]
kind = "pinned"
url = "{root}/busybox-rootfs.tar"
sha256 = "{fixture_sha}"
releases = ["2"]
arch = {both}

[[source]]
kind = "pinned"
url = "{root}/busybox-rootfs.tar"
sha256 = "{fixture_sha}"
releases = ["3"]
arch = {{ s390x = "s390x" }}
"#,
        repo = reg.repo(),
        root = srv.url(""),
    );
    let gone = format!(
        r#"id = "gone"
name = "Gone OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"

[[source]]
kind = "oci"
image = "{repo}:vanished"
arch = {both}

[[source]]
kind = "simplestreams"
url = "{root}"
arch = {both}

[[source]]
kind = "sumsfile"
url = "{root}/SHA256SUMS"
pattern = "gone-{{version}}.tar"
arch = {both}

[[source]]
kind = "sumsfile"
url = "{root}/gone/SHA256SUMS"
pattern = "gone-{{version}}.tar"
arch = {both}

[[source]]
kind = "pinned"
url = "{root}/gone-rootfs.tar"
sha256 = "{fixture_sha}"
arch = {both}
"#,
        repo = reg.repo(),
        root = srv.url(""),
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("chkos.toml"), chkos).unwrap();
    std::fs::write(dir.join("gone.toml"), gone).unwrap();
}

/// The table's data rows split into cells (columns are separated by two or more spaces;
/// DETAIL, the last, may contain single spaces).
fn table_rows(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let head = lines.next().unwrap_or("");
    let starts: Vec<usize> = ["IMAGE", "RELEASE", "ARCH", "SOURCE", "RESULT", "DETAIL"]
        .iter()
        .map(|c| {
            head.find(c)
                .unwrap_or_else(|| panic!("no {c} column:\n{out}"))
        })
        .collect();
    lines
        .map(|l| {
            (0..starts.len())
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                    l.get(starts[i]..end).unwrap_or("").trim().to_string()
                })
                .collect()
        })
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], image: &str, release: &str, source: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[0] == image && r[1] == release && r[3].starts_with(source))
        .unwrap_or_else(|| panic!("no row {image} {release} {source}: {rows:#?}"))
}

/// devbox's name of this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("the test catalog has no sources for {other}"),
    }
}

/// Files under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn image_check_reports_each_source_without_downloading_an_image() {
    let srv = fixture_server();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let multi = make_image(
        &work.path().join("multi"),
        &["--tag", "multi", "--multi-arch", "--push", &reg.repo()],
    );
    let env = TestEnv::new();
    let cat = env.root.join("catalog");
    write_catalog(&cat, &srv, &reg);
    let check = |args: &[&str]| {
        env.cmd(["image", "check"])
            .args(args)
            .env("DEVBOX_CATALOG_DIR", &cat)
            .output()
            .unwrap()
    };

    // Both entries: `gone` has no working source, so the exit status is 1.
    let out = check(&["chkos", "gone"]);
    let (table, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{table}\n{err}");
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 7 + 5, "{table}");
    let multi_manifest = multi["manifest"].as_str().unwrap();
    let oci = row(&rows, "chkos", "1", "oci ");
    assert_eq!(oci[3], format!("oci {}:multi", reg.repo()), "{table}");
    assert_eq!(oci[4], "ok", "{table}");
    assert!(oci[5].starts_with("linux/"), "the platform chosen: {table}");
    assert!(oci[5].contains(&multi_manifest[..19]), "{table}");
    assert!(oci[5].contains("(index sha256:"), "{table}");
    assert!(oci[5].contains("3 layers"), "{table}");
    let ss = row(&rows, "chkos", "1", "simplestreams ");
    assert_eq!(ss[2], host_arch(), "{table}");
    assert!(
        ss[3].ends_with(&format!("simos:1:{}:default", host_arch())),
        "{table}"
    );
    assert_eq!(ss[4], "ok", "{table}");
    assert!(
        ss[5].starts_with("busybox-1.10.tar (20261101_01:00), "),
        "the newest build: {table}"
    );
    let alp = row(&rows, "chkos", "1", "alpine ");
    assert_eq!(alp[4], "ok", "{table}");
    assert!(alp[5].starts_with("busybox-1.10.tar (3.99.1), "), "{table}");
    let missing_tag = row(&rows, "chkos", "2", "oci ");
    assert_eq!(missing_tag[4], "missing", "{table}");
    assert!(missing_tag[5].contains("not found"), "{table}");
    let sums = row(&rows, "chkos", "2", "sumsfile ");
    assert_eq!(sums[4], "ok", "{table}");
    assert!(sums[5].starts_with("busybox-1.10.tar (1.10), "), "{table}");
    assert!(!sums[5].contains("size not told"), "{table}");
    let pinned = row(&rows, "chkos", "2", "pinned ");
    assert_eq!(pinned[4], "ok", "{table}");
    assert!(pinned[5].starts_with("busybox-rootfs.tar, "), "{table}");
    // No source for this machine: shown, not counted as a failure.
    let none = row(&rows, "chkos", "3", "-");
    assert_eq!(none[4], "-", "{table}");
    assert!(none[5].contains("no image for this machine"), "{table}");
    for r in rows.iter().filter(|r| r[0] == "gone") {
        assert_eq!(r[4], "missing", "{r:?}\n{table}");
        assert!(!r[5].is_empty() && !r[5].contains("hint:"), "{table}");
    }
    assert!(
        row(&rows, "gone", "1", "simplestreams ")[5].contains("does not list gone:1:"),
        "{table}"
    );
    assert!(
        row(&rows, "gone", "1", "pinned ")[5].contains("404"),
        "{table}"
    );
    assert!(
        err.contains("Checked 11 sources of 3 releases: 5 ok, 6 missing, 0 denied, 0 error"),
        "{err}"
    );
    let arch = host_arch();
    assert!(
        err.contains(&format!(
            "warning: chkos:2 ({arch}): 1 source failed; another source serves it"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: 1 release has no working source: gone:1 ({arch})"
        )),
        "{err}"
    );

    // The entry whose releases all work: exit status 0 (a failed first source is a warning);
    // --json gives the same rows.
    let out = check(&["chkos", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.len(), 7, "{json:?}");
    assert_eq!(json[0]["image"], "chkos");
    assert_eq!(json[0]["release"], "1");
    assert_eq!(json[0]["arch"], host_arch());
    assert_eq!(json[0]["kind"], "oci");
    assert_eq!(json[0]["source"], format!("{}:multi", reg.repo()));
    assert_eq!(json[0]["result"], "ok");
    let results: Vec<&str> = json.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["ok", "ok", "ok", "missing", "ok", "ok", "-"]);
    assert_eq!(json[6]["kind"], "-");
    // One release by name.
    let out = check(&["chkos:1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(table_rows(&stdout(&out)).len(), 3);
    // Another architecture's sources: the index's other platform, the image server's other
    // product; Alpine's index lists no other architecture.
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let out = check(&["chkos:1", "--arch", other]);
    let table = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{table}{}", stderr(&out));
    let rows = table_rows(&table);
    assert!(rows.iter().all(|r| r[2] == other), "{table}");
    let oci = row(&rows, "chkos", "1", "oci ");
    assert_eq!(oci[4], "ok", "{table}");
    assert!(
        oci[5].starts_with(&format!(
            "linux/{other} {}",
            &multi["dummy_manifest"].as_str().unwrap()[..19]
        )),
        "{table}"
    );
    assert!(oci[5].contains("1 layer,"), "{table}");
    let ss = row(&rows, "chkos", "1", "simplestreams ");
    assert!(
        ss[3].ends_with(&format!("simos:1:{other}:default")),
        "{table}"
    );
    assert_eq!(ss[4], "ok", "{table}");
    assert_eq!(row(&rows, "chkos", "1", "alpine ")[4], "missing", "{table}");
    let out = check(&["chkos:1", "--arch", "all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(table_rows(&stdout(&out)).len(), 6, "{}", stdout(&out));
    let out = check(&["chkos:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("chkos has no release \"9\""),
        "{}",
        stderr(&out)
    );

    // Nothing was downloaded: no GET of an archive (HEAD only), no layer or config blob from
    // the registry, nothing in the store or the caches.
    for archive in [
        "/busybox-1.10.tar",
        "/busybox-rootfs.tar",
        "/gone-rootfs.tar",
    ] {
        assert_eq!(srv.hits(archive), 0, "GET {archive}");
    }
    assert!(srv.hits("HEAD:/busybox-1.10.tar") >= 1);
    assert!(srv.hits("HEAD:/busybox-rootfs.tar") >= 1);
    let log = reg.log();
    assert!(
        log.contains("GET /v2/devbox-test/busybox/manifests/multi"),
        "{log}"
    );
    assert!(
        !log.contains("GET /v2/devbox-test/busybox/blobs/"),
        "a blob was downloaded:\n{log}"
    );
    for d in [env.data(), env.home.join(".cache/devbox")] {
        assert_eq!(files_under(&d), Vec::<PathBuf>::new(), "{}", d.display());
    }
}
