//! `devbox create HOST/PATH:TAG` against a real registry on loopback: layers applied with
//! whiteouts and opaque directories exactly as umoci applies them, the image's Env in the box,
//! the digest recorded, a multi-arch index resolved to this host.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::*;
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
