//! Images from http:// URLs, served on loopback by the tests' HTTP server (tests/support): downloads
//! verified by --sha256, failures (404, truncated bodies, wrong checksums) keep nothing, a
//! known checksum reuses the store without a request, the archive is unpacked while it
//! downloads (one pass), a broken-off download resumes with a Range request, and the archive
//! kept in the download cache makes the image again without the network.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::*;
use crate::http::{Request, Response, Server};

/// The fixture server: [`fixture_routes`] on loopback.
pub(crate) fn fixture_server() -> Server {
    Server::start(fixture_routes(None, Arc::default()))
}

/// The fixture server that also serves `dir` under `/archive/`.
pub(crate) fn serving(dir: &Path) -> Server {
    Server::start(fixture_routes(Some(dir.to_path_buf()), Arc::default()))
}

/// What the fixture server answers:
///   /busybox-rootfs.tar (and /dl/busybox-rootfs.tar)  the fixture, with Content-Length
///   /truncated.tar     a Content-Length of the whole fixture, then half of it, then close
///   /flaky.tar         like /truncated.tar (with an ETag), but a Range request gets the rest
///   /paced.tar         the fixture in 10 pieces, 80 ms apart
///   /page.tar          1 MiB of HTML (a web page where an archive was expected)
///   /not-a-root.tar    a tar archive of one file, README: no root file system
///   /slow.tar          the first half of the fixture, then (up to 20 s) nothing until an unpack
///                      in `watch`'s store has made bin/arch from it, then the rest
///   /archive/PATH      with a `dir`, the file PATH of that directory (a package archive), and
///                      for a directory an HTML index of its subdirectories; a PATH with a
///                      `flaky/` component is cut off halfway the first time (with an ETag) and
///                      its rest served to a Range request
///   /SHA256SUMS, /latest-releases.yaml, /streams/v1/{index,images}.json  indexes that name
///                      /busybox-1.10.tar (the fixture) for the catalog's source kinds
///   anything else      404
fn fixture_routes(
    dir: Option<PathBuf>,
    watch: Arc<Watch>,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    let body = std::fs::read(fixture("busybox")).unwrap();
    // The flaky files of `dir` cut off once already.
    let cut_once = Mutex::new(HashSet::new());
    move |req: &Request| {
        let tar =
            |data: &[u8]| Response::new(200, data).header("Content-Type", "application/x-tar");
        let path = req.path.as_str();
        let in_dir = match (&dir, path.strip_prefix("/archive/")) {
            (Some(d), Some(rel)) if !rel.split('/').any(|s| s == "..") => Some(d.join(rel)),
            _ => None,
        };
        match path {
            _ if in_dir.as_ref().is_some_and(|p| p.is_dir()) => {
                let mut page = String::from("<html><body>\n");
                for e in std::fs::read_dir(in_dir.unwrap()).unwrap().flatten() {
                    if e.path().is_dir() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        page.push_str(&format!("<a href=\"{n}/\">{n}/</a>\n"));
                    }
                }
                page.push_str("</body></html>\n");
                tar(page.as_bytes())
            }
            _ if in_dir.as_ref().is_some_and(|p| p.is_file()) => {
                let data = std::fs::read(in_dir.unwrap()).unwrap();
                let r = Response::ranged(req, &data).header("ETag", "\"v1\"");
                if r.status != 200 {
                    return r;
                }
                let r = r.header("Accept-Ranges", "bytes");
                if path.contains("/flaky/") && cut_once.lock().unwrap().insert(path.to_string()) {
                    return r.cut(data.len() / 2);
                }
                r
            }
            "/busybox-rootfs.tar" | "/dl/busybox-rootfs.tar" | "/busybox-1.10.tar" => tar(&body),
            "/SHA256SUMS" => {
                // GNU format; two builds, the higher version wins.
                let sha = sha256_hex(&body);
                tar(format!("{sha}  busybox-1.9.tar\n{sha}  busybox-1.10.tar\n").as_bytes())
            }
            "/latest-releases.yaml" => tar(format!(
                "---\n-\n  title: \"Mini root filesystem\"\n  branch: v3.99\n  arch: x86_64\n  version: 3.99.1\n  flavor: alpine-minirootfs\n  file: busybox-1.10.tar\n  sha256: {}\n  size: {}\n-\n  title: \"Standard\"\n  flavor: alpine-standard\n  file: other.iso\n  sha256: {}\n",
                sha256_hex(&body),
                body.len(),
                "0".repeat(64)
            )
            .as_bytes()),
            "/streams/v1/index.json" => tar(br#"{"format": "index:1.0", "index": {"images": {"datatype": "image-downloads", "format": "products:1.0", "path": "streams/v1/images.json", "products": ["simos:1:amd64:default", "simos:1:arm64:default"]}}}"#),
            "/streams/v1/images.json" => {
                // Two builds per product: the newest wins; an lxd item beside the rootfs.
                let sha = sha256_hex(&body);
                let product = |arch: &str| {
                    format!(
                        r#""simos:1:{arch}:default": {{"arch": "{arch}", "release": "1", "variant": "default", "versions": {{
                        "20260101_01:00": {{"items": {{"root.tar.xz": {{"ftype": "root.tar.xz", "path": "images/old/rootfs.tar.xz", "sha256": "{zero}", "size": 1}}}}}},
                        "20261101_01:00": {{"items": {{"lxd.tar.xz": {{"ftype": "lxd.tar.xz", "path": "images/new/lxd.tar.xz", "sha256": "{zero}", "size": 1}},
                                                       "root.tar.xz": {{"ftype": "root.tar.xz", "path": "busybox-1.10.tar", "sha256": "{sha}", "size": {len}}}}}}}}}}}"#,
                        zero = "0".repeat(64),
                        len = body.len()
                    )
                };
                tar(format!(
                    r#"{{"content_id": "images", "datatype": "image-downloads", "format": "products:1.0", "products": {{{}, {}}}}}"#,
                    product("amd64"),
                    product("arm64")
                )
                .as_bytes())
            }
            "/flaky.tar" => {
                let r = Response::ranged(req, &body)
                    .header("Content-Type", "application/x-tar")
                    .header("ETag", "\"v1\"");
                if r.status != 200 {
                    return r;
                }
                r.header("Accept-Ranges", "bytes").cut(body.len() / 2)
            }
            "/not-a-root.tar" => tar(&not_a_root()),
            "/page.tar" => tar(
                "<html><body>Not the archive you wanted.</body></html>\n"
                    .repeat(20_000)
                    .as_bytes(),
            ),
            "/paced.tar" => {
                let piece = body.len() / 10 + 1;
                (piece..body.len()).step_by(piece).fold(tar(&body), |r, at| {
                    r.pause(at, |_| {
                        std::thread::sleep(Duration::from_millis(80));
                        true
                    })
                })
            }
            "/slow.tar" => {
                let watch = Arc::clone(&watch);
                tar(&body).pause(body.len() / 2, move |stop| {
                    let store = watch.store.lock().unwrap().clone();
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    while let Some(store) = &store {
                        if unpack_under_way(store) {
                            watch.seen.store(true, Ordering::SeqCst);
                            break;
                        }
                        if std::time::Instant::now() > deadline || stop.is_set() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    true
                })
            }
            "/truncated.tar" => tar(&body).cut(body.len() / 2),
            _ => Response::not_found(),
        }
    }
}

/// For /slow.tar: the store (images-v1) it watches, and whether it saw the unpack under way.
#[derive(Default)]
struct Watch {
    store: Mutex<Option<PathBuf>>,
    seen: AtomicBool,
}

/// Whether an unpack under way in `store` (a `.tmp-*` dir) has made `rootfs/bin/arch`.
pub(crate) fn unpack_under_way(store: &Path) -> bool {
    std::fs::read_dir(store).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".tmp-")
                && std::fs::symlink_metadata(e.path().join("rootfs/bin/arch")).is_ok()
        })
    })
}

fn fixture_sha256() -> String {
    let bytes = std::fs::read(fixture("busybox")).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sorted names in a directory (empty if it does not exist).
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn downloads(env: &TestEnv) -> PathBuf {
    env.home.join(".cache/devbox/downloads-v1")
}

/// The files in the download cache, its CACHEDIR.TAG left out.
fn cached(env: &TestEnv) -> Vec<String> {
    names(&downloads(env))
        .into_iter()
        .filter(|n| n != "CACHEDIR.TAG")
        .collect()
}

/// Images in the store (temp dirs included, the lock file not).
fn images(env: &TestEnv) -> Vec<String> {
    names(&env.data().join("images-v1"))
        .into_iter()
        .filter(|n| n != ".lock")
        .collect()
}

/// After a failed create: no box, no image, no download (partial or whole).
fn assert_nothing_kept(env: &TestEnv) {
    assert_eq!(
        images(env),
        Vec::<String>::new(),
        "a failed create left something in images-v1"
    );
    assert_eq!(
        names(&env.data().join("boxes-v1")),
        Vec::<String>::new(),
        "a failed create left a box"
    );
    assert_eq!(
        cached(env),
        Vec::<String>::new(),
        "a failed create left a download"
    );
}

#[test]
fn create_from_url_works() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let out = env.ok(["create", &srv.url("/busybox-rootfs.tar"), "--name", "web"]);
    assert!(out.contains("web"), "{out}");
    env.ok(["run", "web", "--", "/bin/busybox", "true"]);
    assert_eq!(srv.hits("/busybox-rootfs.tar"), 1);
    // The archive is kept in the download cache under its sha256, whole; the cache and the
    // download cache are marked as caches.
    for d in [downloads(&env), env.home.join(".cache/devbox")] {
        let tag = std::fs::read_to_string(d.join("CACHEDIR.TAG")).unwrap();
        assert!(
            tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
            "{tag}"
        );
    }
    let sha = fixture_sha256();
    assert_eq!(cached(&env), [format!("{sha}.archive")]);
    assert_eq!(
        std::fs::read(downloads(&env).join(format!("{sha}.archive"))).unwrap(),
        std::fs::read(fixture("busybox")).unwrap()
    );
    assert_eq!(images(&env), [sha]);
}

/// The proxy variables are honoured: a host this machine cannot resolve is reached through
/// `http_proxy` (the loopback server answering in proxy form), and `no_proxy` exempts hosts.
#[test]
fn downloads_go_through_the_proxy_variables() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let url = "http://devbox-proxy-test.invalid/busybox-rootfs.tar";
    let out = env
        .cmd(["create", url, "--name", "viaproxy"])
        .env("http_proxy", srv.url(""))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(srv.hits("proxied:/busybox-rootfs.tar"), 1);
    env.ok(["run", "viaproxy", "--", "/bin/busybox", "true"]);
    // Exempted by no_proxy, the same host is looked up directly, which fails, and says so.
    let out = env
        .cmd(["create", url, "--name", "direct"])
        .env("http_proxy", srv.url(""))
        .env("no_proxy", "devbox-proxy-test.invalid")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("proxy"), "{}", stderr(&out));
    assert_eq!(srv.hits("proxied:/busybox-rootfs.tar"), 1);
}

/// One pass: the unpack helper has made files of the first half of the archive while the
/// server still holds back the second half.
#[test]
fn the_archive_is_unpacked_while_it_downloads() {
    let watch = Arc::new(Watch::default());
    let srv = Server::start(fixture_routes(None, Arc::clone(&watch)));
    let env = TestEnv::new();
    *watch.store.lock().unwrap() = Some(env.data().join("images-v1"));
    env.ok(["create", &srv.url("/slow.tar"), "--name", "slow"]);
    assert!(
        watch.seen.load(Ordering::SeqCst),
        "nothing was unpacked before the download ended"
    );
    env.ok(["run", "slow", "--", "/bin/busybox", "true"]);
    assert_eq!(images(&env), [fixture_sha256()]);
}

/// The connection closes halfway: devbox asks for the rest with a Range request (If-Range
/// with the ETag) and the resumed bytes continue the same stream into the unpack.
#[test]
fn a_broken_off_download_resumes_into_the_same_unpack() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let out = env.run(["create", &srv.url("/flaky.tar"), "--name", "flaky"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert_eq!(srv.hits("/flaky.tar"), 2);
    env.ok(["run", "flaky", "--", "/bin/busybox", "true"]);
    let sha = fixture_sha256();
    assert_eq!(images(&env), std::slice::from_ref(&sha));
    assert_eq!(
        std::fs::read(downloads(&env).join(format!("{sha}.archive"))).unwrap(),
        std::fs::read(fixture("busybox")).unwrap()
    );
}

/// With its checksum known, an archive in the download cache makes the image again after the
/// image was removed, with the server gone.
#[test]
fn a_cached_archive_makes_the_image_again_offline() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let sha = fixture_sha256();
    let url = srv.url("/busybox-rootfs.tar");
    env.ok(["create", &url, "--name", "one", "--sha256", &sha]);
    env.ok(["image", "rm", "--force", &sha]);
    assert_eq!(images(&env), Vec::<String>::new());
    drop(srv);
    let out = env.run(["create", &url, "--name", "two", "--sha256", &sha]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from the cache"), "{}", stderr(&out));
    env.ok(["run", "two", "--", "/bin/busybox", "true"]);
    assert_eq!(images(&env), [sha]);
}

#[test]
fn create_from_url_with_right_sha256() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let sha = fixture_sha256();
    env.ok([
        "create",
        &srv.url("/busybox-rootfs.tar"),
        "--name",
        "web",
        "--sha256",
        &sha,
    ]);
    env.ok(["run", "web", "--", "/bin/busybox", "true"]);
    assert_eq!(images(&env), std::slice::from_ref(&sha));

    // Upper case and a sha256: prefix are accepted too.
    let shouty = format!("sha256:{}", sha.to_ascii_uppercase());
    env.ok([
        "create",
        &srv.url("/busybox-rootfs.tar"),
        "--name",
        "web2",
        "--sha256",
        &shouty,
    ]);
}

#[test]
fn wrong_sha256_fails_and_keeps_nothing() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let right = fixture_sha256();
    let wrong = "0123456789abcdef".repeat(4);
    let err = env.fails(
        1,
        [
            "create",
            &srv.url("/busybox-rootfs.tar"),
            "--name",
            "web",
            "--sha256",
            &wrong,
        ],
    );
    assert!(err.contains("expected"), "{err}");
    assert!(err.contains("actual"), "{err}");
    assert!(
        err.contains(&wrong),
        "the expected digest should be shown:\n{err}"
    );
    assert!(
        err.contains(&right),
        "the actual digest should be shown:\n{err}"
    );
    assert_eq!(srv.hits("/busybox-rootfs.tar"), 1);
    assert_nothing_kept(&env);
}

#[test]
fn not_found_fails_with_the_status() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let err = env.fails(
        1,
        ["create", &srv.url("/no-such-image.tar.gz"), "--name", "nf"],
    );
    assert!(err.contains("404"), "{err}");
    assert!(
        err.contains("/no-such-image.tar.gz"),
        "the URL should be named:\n{err}"
    );
    assert_eq!(srv.hits("/no-such-image.tar.gz"), 1);
    assert_nothing_kept(&env);
}

/// The unpack helper stops reading a download that is no archive: the download stops too, the
/// helper's reason is shown, and nothing is kept.
#[test]
fn a_download_that_is_no_archive_fails_and_keeps_nothing() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let err = env.fails(1, ["create", &srv.url("/page.tar"), "--name", "pg"]);
    assert!(err.contains("archive"), "{err}");
    assert!(
        err.contains(&format!("cannot unpack {}", srv.url("/page.tar"))),
        "{err}"
    );
    assert!(err.contains("nothing was kept"), "{err}");
    assert_nothing_kept(&env);
}

#[test]
fn truncated_download_fails_and_keeps_nothing() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let err = env.fails(1, ["create", &srv.url("/truncated.tar"), "--name", "tr"]);
    assert!(
        err.contains("/truncated.tar"),
        "the URL should be named:\n{err}"
    );
    assert!(
        err.contains("truncated") || err.contains("broke off"),
        "the error should say the download is incomplete:\n{err}"
    );
    assert!(srv.hits("/truncated.tar") >= 1);
    assert_nothing_kept(&env);

    // With the checksum known devbox tries to resume; this server cannot (it answers 200).
    let before = srv.hits("/truncated.tar");
    let err = env.fails(
        1,
        [
            "create",
            &srv.url("/truncated.tar"),
            "--name",
            "tr",
            "--sha256",
            &fixture_sha256(),
        ],
    );
    assert!(
        err.contains("truncated") && err.contains("resuming it failed"),
        "{err}"
    );
    assert_eq!(srv.hits("/truncated.tar"), before + 2);
    assert_nothing_kept(&env);
}

#[test]
fn box_name_defaults_to_the_url_file_stem() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let out = env.ok(["create", &srv.url("/busybox-rootfs.tar")]);
    assert!(out.contains("busybox-rootfs"), "{out}");
    assert_eq!(names(&env.data().join("boxes-v1")), ["busybox-rootfs"]);
    env.ok(["run", "busybox-rootfs", "--", "/bin/busybox", "true"]);

    // The query string is not part of the name.
    let env = TestEnv::new();
    env.ok(["create", &srv.url("/dl/busybox-rootfs.tar?token=abc&x=1")]);
    assert_eq!(names(&env.data().join("boxes-v1")), ["busybox-rootfs"]);
}

#[test]
fn known_sha256_reuses_the_store_without_downloading() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let sha = fixture_sha256();
    let url = srv.url("/busybox-rootfs.tar");
    env.ok(["create", &url, "--name", "one", "--sha256", &sha]);
    assert_eq!(srv.hits("/busybox-rootfs.tar"), 1);

    let out = env.run(["create", &url, "--name", "two", "--sha256", &sha]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "stdout: {o}\nstderr: {e}");
    assert!(
        format!("{o}{e}").contains("store"),
        "the reuse should be reported:\nstdout: {o}\nstderr: {e}"
    );
    assert_eq!(
        srv.hits("/busybox-rootfs.tar"),
        1,
        "the second create downloaded again"
    );
    assert_eq!(images(&env), [sha]);
    env.ok(["run", "two", "--", "/bin/busybox", "true"]);
}

/// A catalog entry of the test's own (loaded through DEVBOX_CATALOG_DIR) whose source is the
/// loopback server: names, aliases and releases resolve, misspellings get suggestions, and a
/// name resolved once still works when its server is gone.
#[test]
fn catalog_names_resolve_and_work_offline() {
    let server = fixture_server();
    let env = TestEnv::new();
    let cat = env.root.join("catalog");
    std::fs::create_dir(&cat).unwrap();
    std::fs::write(
        cat.join("testos.toml"),
        format!(
            r#"id = "testos"
name = "Test OS"
aliases = ["tos"]
family = "apk"
default_release = "1"

[[release]]
name = "1"
aliases = ["stable"]

[[source]]
kind = "pinned"
url = "{}"
sha256 = "{}"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            server.url("/busybox-rootfs.tar"),
            fixture_sha256()
        ),
    )
    .unwrap();
    let create = |args: &[&str]| {
        env.cmd(args)
            .env("DEVBOX_CATALOG_DIR", &cat)
            .output()
            .unwrap()
    };
    let out = create(&["create", "tos:stable", "--name", "t1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Resolving tos:stable"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.sh("t1", "/bin/busybox echo hi"), "hi\n");
    let out = create(&["create", "testoz", "--name", "t9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("testos"),
        "a close match is offered: {}",
        stderr(&out)
    );
    // The server goes away: the recorded resolution and the store still make a box.
    drop(server);
    let out = create(&["create", "testos", "--name", "t2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The entry's checksum names the image in the store: no request is needed.
    assert!(stderr(&out).contains("from the store"), "{}", stderr(&out));
    env.ok(["run", "t2", "--", "/bin/busybox", "true"]);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sumsfile, alpine and simplestreams source kinds, end to end through `devbox create`.
#[test]
fn catalog_sumsfile_alpine_and_simplestreams_sources_make_working_boxes() {
    let server = fixture_server();
    let env = TestEnv::new();
    let cat = env.root.join("catalog2");
    std::fs::create_dir(&cat).unwrap();
    std::fs::write(
        cat.join("sumos.toml"),
        format!(
            r#"id = "sumos"
name = "Sums OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"

[[source]]
kind = "sumsfile"
url = "{}"
pattern = "busybox-{{version}}.tar"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            server.url("/SHA256SUMS")
        ),
    )
    .unwrap();
    std::fs::write(
        cat.join("alpos.toml"),
        format!(
            r#"id = "alpos"
name = "Alpine-like"
family = "apk"
default_release = "3.99"

[[release]]
name = "3.99"

[[source]]
kind = "alpine"
url = "{}"
arch = {{ amd64 = "x86_64", arm64 = "aarch64" }}
"#,
            server.url("/latest-releases.yaml")
        ),
    )
    .unwrap();
    std::fs::write(
        cat.join("simos.toml"),
        format!(
            r#"id = "simos"
name = "Simplestreams OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"

[[source]]
kind = "simplestreams"
url = "{}"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            server.url("")
        ),
    )
    .unwrap();
    for (image, name) in [("sumos", "s"), ("alpos:3.99", "a"), ("simos", "i")] {
        let out = env
            .cmd(["create", image, "--name", name])
            .env("DEVBOX_CATALOG_DIR", &cat)
            .output()
            .unwrap();
        assert!(out.status.success(), "{image}: {}", stderr(&out));
        assert_eq!(env.sh(name, "/bin/busybox echo ok"), "ok\n");
    }
    assert!(
        server.hits("/busybox-1.10.tar") >= 1,
        "the highest version was fetched"
    );
    assert_eq!(server.hits("/busybox-1.9.tar"), 0);
    // Without the server the sums file cannot be read: the image last resolved is used.
    drop(server);
    let out = env
        .cmd(["create", "sumos", "--name", "s2"])
        .env("DEVBOX_CATALOG_DIR", &cat)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("last resolved"), "{}", stderr(&out));
}

/// Without a terminal on stderr, the output is step lines only: no bar, no cursor movement;
/// with --quiet, nothing at all.
#[test]
fn progress_without_a_terminal_is_step_lines_only() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let out = env.run(["create", &srv.url("/paced.tar"), "--name", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Downloading"), "{err}");
    assert!(
        !err.contains('\r') && !err.contains('\x1b') && !err.contains("ETA"),
        "bars or escapes without a terminal:\n{err:?}"
    );
    assert!(err.lines().all(|l| !l.trim().is_empty()), "{err:?}");
    let out = env.run(["create", &srv.url("/paced.tar"), "--name", "q", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(stdout(&out), "");
}

/// On a terminal (script(1) gives devbox a pty), a download draws a bar with its rate and ETA,
/// and the step lines are still there; --quiet draws nothing.
#[test]
fn progress_on_a_terminal_draws_bars_unless_quiet() {
    let srv = fixture_server();
    let env = TestEnv::new();
    let on_tty = |extra: &str, name: &str| {
        let cmd = format!(
            "{} create {} --name {name} {extra}",
            env.bin().display(),
            srv.url("/paced.tar")
        );
        let out = env
            .raw("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .output()
            .expect("script (util-linux)");
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    let shown = on_tty("", "t1");
    assert!(shown.contains("Downloading"), "{shown:?}");
    assert!(
        shown.contains("ETA") && shown.contains("/s"),
        "no download bar on a terminal:\n{shown:?}"
    );
    let quiet = on_tty("--quiet", "t2");
    assert_eq!(quiet, "", "--quiet should print nothing");
}

/// A catalog source whose archive unpacks to no usable root (no /etc, no shell) counts as
/// failed: nothing of it is kept or recorded, and the next source is tried after a one-line
/// reason. With no other source, the name fails and nothing is recorded at all.
#[test]
fn a_catalog_source_without_a_usable_root_falls_through_to_the_next() {
    let server = fixture_server();
    let env = TestEnv::new();
    let cat = env.root.join("catalog3");
    std::fs::create_dir(&cat).unwrap();
    let entry = |id: &str, urls: &[&str]| {
        let mut text = format!(
            "id = \"{id}\"\nname = \"{id}\"\nfamily = \"apk\"\ndefault_release = \"1\"\n\n[[release]]\nname = \"1\"\n"
        );
        for url in urls {
            text.push_str(&format!(
                "\n[[source]]\nkind = \"pinned\"\nurl = \"{}\"\nsha256 = \"{}\"\narch = {{ amd64 = \"amd64\", arm64 = \"arm64\" }}\n",
                server.url(url),
                if url.contains("not-a-root") {
                    sha256_hex(&not_a_root())
                } else {
                    fixture_sha256()
                }
            ));
        }
        std::fs::write(cat.join(format!("{id}.toml")), text).unwrap();
    };
    entry("fallos", &["/not-a-root.tar", "/busybox-rootfs.tar"]);
    entry("rootless", &["/not-a-root.tar"]);
    let create = |image: &str, name: &str| {
        env.cmd(["create", image, "--name", name])
            .env("DEVBOX_CATALOG_DIR", &cat)
            .output()
            .unwrap()
    };

    let out = create("rootless", "r");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no usable root file system"), "{err}");
    assert!(
        err.contains("cannot get rootless:1: every source failed"),
        "{err}"
    );
    assert_nothing_kept(&env);
    let resolved = env.data().join("resolved-v1");
    assert_eq!(
        names(&resolved),
        Vec::<String>::new(),
        "a failure was recorded"
    );

    let out = create("fallos", "f");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let reason: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(&server.url("/not-a-root.tar")))
        .collect();
    assert_eq!(reason.len(), 1, "one line for the failed source:\n{err}");
    assert!(reason[0].contains("no usable root file system"), "{err}");
    assert_eq!(env.sh("f", "/bin/busybox echo ok"), "ok\n");
    // Only the working source's image and archive are kept, and its resolution recorded.
    let sha = fixture_sha256();
    assert_eq!(images(&env), std::slice::from_ref(&sha));
    assert_eq!(cached(&env), [format!("{sha}.archive")]);
    assert_eq!(names(&resolved), ["fallos_1"]);
    assert_eq!(
        std::fs::read_to_string(resolved.join("fallos_1")).unwrap(),
        format!("{sha}\n")
    );
}

/// What /not-a-root.tar serves: a tar archive of one file, README.
fn not_a_root() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("README").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &b"docs\n"[..]).unwrap();
    b.into_inner().unwrap()
}
