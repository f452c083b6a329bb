//! Registry credentials in every place podman keeps them, against the loopback registry of
//! tests/it/registry.rs asking for a login (htpasswd, Basic authentication), the image put
//! there by skopeo with the same login. (Where the files are looked for, for every shape of
//! the environment, is unit-tested in src/oci/auth.rs; credential helpers and Docker's file in
//! src/oci/tests.rs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;
use crate::registry::{make_image, Registry};

/// The registry's user: bcrypt of `s3cret-pass` (the only hash kind the registry takes).
const HTPASSWD: &str = "tester:$2b$05$abcdefghijklmnopqrstuuV7fpPozvyqJfnY19y0802WTlXUm6Rjy";
/// base64 of `tester:s3cret-pass` and of `tester:wrong`, as auth.json keeps them.
const RIGHT: &str = "dGVzdGVyOnMzY3JldC1wYXNz";
const WRONG: &str = "dGVzdGVyOndyb25n";

fn auth_json(host: &str, auth: &str) -> String {
    format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)
}

/// The test user's uid (podman's runtime directory is named after it).
fn uid() -> u32 {
    test_user().map_or_else(|| nix::unistd::getuid().as_raw(), |u| u.uid)
}

/// Writes an auth file as the test user (its directories too), as podman would.
fn put(env: &TestEnv, file: &Path, text: &str) {
    let mut missing = Vec::new();
    let mut d = file.parent().unwrap();
    while !d.exists() {
        missing.push(d.to_path_buf());
        d = d.parent().unwrap();
    }
    for d in missing.iter().rev() {
        env.mkdir_as_user(d);
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    env.write_as_user(file, text.as_bytes());
}

/// Removes what `put` made under `top` (a directory of the test's own).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn podman_auth_files_are_read_from_every_place_podman_writes_them() {
    let reg = Registry::start_with_auth(HTPASSWD);
    let host = format!("127.0.0.1:{}", reg.port());
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    make_image(&layout, &["--tag", "v1", "--layer2", "gzip"]);
    let image = format!("{}:v1", reg.repo());
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
        .args(["--dest-creds", "tester:s3cret-pass"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{image}"))
        .stdin(Stdio::null())
        .output()
        .expect("skopeo (run `sudo tests/setup.sh`)");
    assert!(out.status.success(), "skopeo copy: {}", stderr(&out));

    let env = TestEnv::new();
    let pull = |cmd: &mut Command| -> Output { cmd.output().unwrap() };
    let base = || {
        let mut c = env.cmd(["image", "pull", &image]);
        c.env_remove("XDG_CONFIG_HOME")
            .env_remove("REGISTRY_AUTH_FILE");
        c
    };

    // No credentials anywhere: the registry's demand is the error.
    let out = pull(&mut base());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("registry {host} requires authentication")),
        "{}",
        stderr(&out)
    );

    // `devbox image check` says "denied" for a source that needs a login it lacks.
    let cat = env.root.join("catalog");
    std::fs::create_dir(&cat).unwrap();
    std::fs::write(
        cat.join("authos.toml"),
        format!(
            "id = \"authos\"\nname = \"Auth OS\"\nfamily = \"apk\"\ndefault_release = \"1\"\n\n[[release]]\nname = \"1\"\n\n[[source]]\nkind = \"oci\"\nimage = \"{image}\"\narch = {{ amd64 = \"amd64\", arm64 = \"arm64\" }}\n"
        ),
    )
    .unwrap();
    let check = || {
        env.cmd(["image", "check", "authos"])
            .env("DEVBOX_CATALOG_DIR", &cat)
            .output()
            .unwrap()
    };
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let row = stdout(&out).lines().nth(1).unwrap_or("").to_string();
    assert!(
        row.contains(" denied ") && row.contains("requires authentication"),
        "{row}"
    );

    // $XDG_RUNTIME_DIR/containers/auth.json (podman login's default).
    let f = env.runtime.join("containers/auth.json");
    put(&env, &f, &auth_json(&host, RIGHT));
    let out = pull(&mut base());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().nth(1).unwrap_or("").contains(" ok "),
        "{}",
        stdout(&out)
    );
    std::fs::remove_file(&f).unwrap();

    // Without XDG_RUNTIME_DIR: $TMPDIR/podman-run-UID/containers/auth.json, /tmp when TMPDIR
    // is unset (podman's runtime directory when /run/user/UID is not there).
    let tmpdir = env.root.join("tmp");
    env.mkdir_as_user(&tmpdir);
    let f = tmpdir.join(format!("podman-run-{}/containers/auth.json", uid()));
    put(&env, &f, &auth_json(&host, RIGHT));
    let out = pull(base().env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &tmpdir));
    assert!(out.status.success(), "{}", stderr(&out));
    // ... and not when XDG_RUNTIME_DIR is set (podman does not write there then).
    let out = pull(base().env("TMPDIR", &tmpdir));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    std::fs::remove_file(&f).unwrap();
    let podman_run = PathBuf::from(format!("/tmp/podman-run-{}", uid()));
    assert!(
        !podman_run.exists(),
        "{} exists already: remove it to run this test",
        podman_run.display()
    );
    let _cleanup = Cleanup(podman_run.clone());
    put(
        &env,
        &podman_run.join("containers/auth.json"),
        &auth_json(&host, RIGHT),
    );
    let out = pull(base().env_remove("XDG_RUNTIME_DIR").env_remove("TMPDIR"));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(&podman_run).unwrap();

    // $XDG_CONFIG_HOME/containers/auth.json, else ~/.config/containers/auth.json.
    let config_home = env.root.join("config");
    env.mkdir_as_user(&config_home);
    let f = config_home.join("containers/auth.json");
    put(&env, &f, &auth_json(&host, RIGHT));
    let out = pull(base().env("XDG_CONFIG_HOME", &config_home));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(&f).unwrap();
    let f = env.home.join(".config/containers/auth.json");
    put(&env, &f, &auth_json(&host, RIGHT));
    let out = pull(&mut base());
    assert!(out.status.success(), "{}", stderr(&out));

    // The runtime file comes first: its wrong password is what the registry gets.
    let rt = env.runtime.join("containers/auth.json");
    put(&env, &rt, &auth_json(&host, WRONG));
    let out = pull(&mut base());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("registry {host} denied access")),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&rt).unwrap();

    // REGISTRY_AUTH_FILE, alone: the right login there works, a wrong one there is not
    // made up for by ~/.config/containers/auth.json.
    let named = env.root.join("my-auth.json");
    put(&env, &named, &auth_json(&host, RIGHT));
    std::fs::remove_file(&f).unwrap();
    let out = pull(base().env("REGISTRY_AUTH_FILE", &named));
    assert!(out.status.success(), "{}", stderr(&out));
    put(&env, &f, &auth_json(&host, RIGHT));
    put(&env, &named, &auth_json(&host, WRONG));
    let out = pull(base().env("REGISTRY_AUTH_FILE", &named));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("registry {host} denied access")),
        "{}",
        stderr(&out)
    );
}
