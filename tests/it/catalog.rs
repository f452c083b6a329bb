//! `devbox image search` and the catalog layers (builtin, ~/.config/devbox/images,
//! DEVBOX_CATALOG_DIR) through the real binary. Nothing here touches the network: resolving
//! sources against a loopback server is unit-tested in src/catalog/tests.rs.
//!
//! Enabled by `mod catalog;` in tests/it/main.rs once `devbox image search` is wired.

use std::path::Path;

use crate::harness::*;

/// A small valid entry; `name` and `aliases` vary per test.
fn entry(id: &str, name: &str, aliases: &[&str]) -> String {
    format!(
        r#"id = "{id}"
name = "{name}"
aliases = {aliases:?}
family = "apk"
default_release = "1"

[[release]]
name = "1"
aliases = ["one"]

[arch.pinned]
amd64 = "x86_64"
arm64 = "aarch64"

[[source]]
kind = "pinned"
url = "http://127.0.0.1:9/{{id}}-{{release}}-{{arch}}.tar"
sha256 = "{}"
"#,
        "0".repeat(64)
    )
}

fn json_rows(out: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
        .as_array()
        .expect("a JSON array")
        .clone()
}

fn row<'a>(rows: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
}

#[test]
fn image_search_lists_the_builtin_catalog() {
    let env = TestEnv::new();
    let out = env.ok(["image", "search"]);
    let first = out.lines().next().unwrap_or("");
    for col in [
        "DISTRO", "RELEASES", "DEFAULT", "FAMILY", "SOURCES", "TOOLBOX",
    ] {
        assert!(first.contains(col), "{out}");
    }
    for want in [
        "debian",
        "13 (trixie, stable)",
        "archlinux (arch)",
        "ubuntu",
        "24.04 (noble)",
        "fedora",
        "alpine",
        "edge",
        "opensuse",
        "rockylinux",
        "almalinux",
        "void",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

#[test]
fn image_search_filters_by_text() {
    let env = TestEnv::new();
    let out = env.ok(["image", "search", "noble"]);
    assert!(out.contains("ubuntu"), "{out}");
    assert!(!out.contains("debian"), "{out}");

    let out = env.ok(["image", "search", "zzz-no-such"]);
    assert!(out.contains("No distribution matches"), "{out}");

    let rows = json_rows(&env.ok(["image", "search", "--json", "pacman"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "archlinux");
}

#[test]
fn image_search_json_describes_every_entry() {
    let env = TestEnv::new();
    let rows = json_rows(&env.ok(["image", "search", "--json"]));
    assert_eq!(rows.len(), 9, "{rows:?}");
    let deb = row(&rows, "debian");
    assert_eq!(deb["family"], "apt");
    assert_eq!(deb["default_release"], "13");
    assert_eq!(deb["releases"][0]["name"], "13");
    assert_eq!(deb["releases"][0]["aliases"][0], "trixie");
    assert_eq!(deb["toolbox_ready"], true);
    assert_eq!(deb["origin"], "builtin");
    assert_eq!(row(&rows, "void")["toolbox_ready"], false);
}

#[test]
fn user_and_env_catalog_dirs_add_and_override() {
    let env = TestEnv::new();
    let user_dir = env.home.join(".config/devbox/images");
    env.mkdir_as_user(&user_dir);
    let user_file = user_dir.join("debian.toml");
    env.write_as_user(&user_file, entry("debian", "My Debian", &[]).as_bytes());

    let extra = env.root.join("catalog");
    env.mkdir_as_user(&extra);
    let extra_file = extra.join("mini.toml");
    env.write_as_user(&extra_file, entry("mini", "Mini Linux", &["mn"]).as_bytes());

    let out = env
        .cmd(["image", "search", "--json"])
        .env("DEVBOX_CATALOG_DIR", &extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_rows(&stdout(&out));
    assert_eq!(rows.len(), 10);
    let deb = row(&rows, "debian");
    assert_eq!(deb["name"], "My Debian");
    assert_eq!(deb["origin"], user_file.display().to_string());
    assert_eq!(
        row(&rows, "mini")["origin"],
        extra_file.display().to_string()
    );
    assert_eq!(row(&rows, "ubuntu")["origin"], "builtin");

    // Without the variable, only the user directory applies.
    let rows = json_rows(&env.ok(["image", "search", "--json"]));
    assert_eq!(rows.len(), 9);
}

#[test]
fn a_bad_catalog_file_fails_with_its_path() {
    let env = TestEnv::new();
    let dir = env.root.join("catalog");
    env.mkdir_as_user(&dir);
    let bad = dir.join("bad.toml");
    env.write_as_user(
        &bad,
        entry("bad", "Bad", &[])
            .replace("{arch}.tar", "{arhc}.tar")
            .as_bytes(),
    );
    let out = env
        .cmd(["image", "search"])
        .env("DEVBOX_CATALOG_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("unknown variable {arhc}"), "{err}");
    assert!(Path::new(&bad).exists());
}
