//! The image store commands: list, rm, prune.

use crate::harness::*;

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
