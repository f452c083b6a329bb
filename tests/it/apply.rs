//! Keeping a project's box in line with its devbox.toml (`devbox apply`), changing a box's
//! settings after creation (`devbox config`), and the user configuration's defaults.
//!
//! Packages come from a flat apt repository (tests/fixtures/apt-repo.sh: a package built there
//! and the host's own sudo) served on loopback by the tests' HTTP server, so no test needs the
//! network.

use std::path::Path;

use crate::harness::*;
use crate::http::{Request, Response, Server};

/// `text` with its `%XX` escapes decoded (apt asks for `sudo_1.9%2bdeb12_amd64.deb`).
fn percent_decoded(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The files of `dir` on loopback (404 for anything else), until dropped.
struct Repo(Server);

impl Repo {
    fn serve(dir: &Path) -> Repo {
        let dir = dir.to_path_buf();
        Repo(Server::start(move |req: &Request| {
            let rel = percent_decoded(req.path.trim_start_matches('/'));
            match std::fs::read(dir.join(&rel)) {
                Ok(data) if !rel.split('/').any(|s| s == "..") => Response::new(200, data),
                _ => Response::not_found(),
            }
        }))
    }

    /// The setup command that makes the box use only this repository.
    fn sources_setup(&self) -> String {
        format!(
            "echo 'deb [trusted=yes] {} ./' > /etc/apt/sources.list && rm -rf /etc/apt/sources.list.d/*",
            self.0.url("/")
        )
    }
}

fn write_toml(env: &TestEnv, dir: &Path, text: &str) {
    env.write_as_user(&dir.join("devbox.toml"), text.as_bytes());
}

fn in_dir(env: &TestEnv, dir: &Path, args: &[&str]) -> std::process::Output {
    env.cmd(args).current_dir(dir).output().unwrap()
}

#[test]
fn apply_installs_added_packages_in_place() {
    let env = TestEnv::new();
    let repo = Repo::serve(&fixture("apt-repo"));
    let proj = env.home.join("app");
    env.mkdir_as_user(&proj);
    let head = format!(
        "[box]\nname = \"app\"\nimage = \"{}\"\nsetup = [\"{}\"]\n",
        fixture("debian").display(),
        repo.sources_setup().replace('"', "\\\"")
    );
    write_toml(&env, &proj, &head);
    // apply makes the box when there is none.
    let out = in_dir(&env, &proj, &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Created box 'app'"),
        "{}",
        stderr(&out)
    );
    let out = in_dir(&env, &proj, &["apply"]);
    assert!(
        stderr(&out).contains("Box 'app' is up to date"),
        "{}",
        stderr(&out)
    );
    // Something made inside the box, to show that apply keeps its layer.
    env.ok([
        "run",
        "app",
        "--root",
        "--",
        "sh",
        "-c",
        "echo kept > /etc/kept",
    ]);

    write_toml(
        &env,
        &proj,
        &format!("{head}packages = [\"devbox-hello\", \"sudo\"]\n"),
    );
    // enter/run say what changed and what to do.
    let out = in_dir(&env, &proj, &["run", "--", "true"]);
    let err = stderr(&out);
    assert!(
        err.contains("packages added: devbox-hello, sudo") && err.contains("devbox apply"),
        "{err}"
    );
    let out = in_dir(&env, &proj, &["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Installing 2 packages"), "{err}");
    assert!(err.contains("Box 'app' is up to date"), "{err}");
    let out = in_dir(
        &env,
        &proj,
        &["run", "--", "sh", "-c", "devbox-hello; cat /etc/kept"],
    );
    assert_eq!(
        stdout(&out),
        "hello from a package\nkept\n",
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("changed since"), "{}", stderr(&out));
    // sudo, installed after the box was made, works without a password: the box's sudoers
    // rule was written at its first start.
    let out = in_dir(&env, &proj, &["run", "--", "sudo", "-n", "id", "-u"]);
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    // ... quietly: the box's host name resolves.
    assert_eq!(stderr(&out), "", "{}", stderr(&out));
    // apply NAME works from anywhere.
    let out = env.run(["apply", "app"]);
    assert!(
        stderr(&out).contains("Box 'app' is up to date"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn apply_recreates_for_a_new_image_only_when_told() {
    let env = TestEnv::new();
    let proj = env.home.join("svc");
    env.mkdir_as_user(&proj);
    let toml = |image: &Path| format!("[box]\nname = \"svc\"\nimage = \"{}\"\n", image.display());
    write_toml(&env, &proj, &toml(&fixture("busybox")));
    let out = in_dir(
        &env,
        &proj,
        &["run", "--root", "--", "sh", "-c", "echo mine > /etc/mine"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    env.write_as_user(&env.home.join("notes.txt"), b"my notes\n");

    write_toml(&env, &proj, &toml(&fixture("debian")));
    // Without a terminal to ask on, and without --yes, nothing changes.
    let out = in_dir(&env, &proj, &["apply"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("image changed from"), "{err}");
    assert!(err.contains("discarded") && err.contains("--yes"), "{err}");
    assert_eq!(env.sh("svc", "cat /etc/mine"), "mine\n");

    let out = in_dir(&env, &proj, &["apply", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = env.sh(
        "svc",
        "test -e /etc/mine && echo still; cat /etc/debian_version >/dev/null && echo debian",
    );
    assert_eq!(got, "debian\n");
    assert_eq!(
        std::fs::read_to_string(env.home.join("notes.txt")).unwrap(),
        "my notes\n"
    );
}

#[test]
fn apply_changes_mounts_and_namespaces_with_a_restart_keeping_the_box() {
    let env = TestEnv::new();
    let proj = env.home.join("web");
    let data = env.home.join("data");
    env.mkdir_as_user(&proj);
    env.mkdir_as_user(&data);
    env.write_as_user(&data.join("f"), b"data file\n");
    let head = format!(
        "[box]\nname = \"web\"\nimage = \"{}\"\n",
        fixture("busybox").display()
    );
    write_toml(&env, &proj, &head);
    let out = in_dir(
        &env,
        &proj,
        &["run", "--root", "--", "sh", "-c", "echo mine > /etc/mine"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    write_toml(
        &env,
        &proj,
        &format!(
            "{head}unshare = [\"net\"]\n[[box.mounts]]\nhost = \"~/data\"\nbox = \"/data\"\nreadonly = true\n"
        ),
    );
    // The box is running: without --yes and a terminal it is not stopped, and says how.
    let out = in_dir(&env, &proj, &["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("mounts added: "), "{err}");
    assert!(err.contains("devbox restart web"), "{err}");
    // The saved restart is not forgotten: list, inspect and run say it waits...
    let list = env.ok(["list"]);
    assert!(
        list.contains("running*")
            && list.contains("web: restart pending (mounts, namespaces): `devbox restart web`"),
        "{list}"
    );
    let shown = env.ok(["inspect", "web"]);
    assert!(
        shown.contains("restart pending (mounts, namespaces)"),
        "{shown}"
    );
    let out = env.run([
        "run",
        "web",
        "--",
        "sh",
        "-c",
        "test -e /data/f && echo mounted; echo ok",
    ]);
    assert_eq!(stdout(&out), "ok\n");
    assert!(
        stderr(&out).contains("restart pending (mounts, namespaces): `devbox restart web`"),
        "{}",
        stderr(&out)
    );
    // ...and `apply --yes` carries it out, though the file has not changed since.
    let out = in_dir(&env, &proj, &["apply", "--yes"]);
    assert!(
        stderr(&out).contains("Stopped box 'web'"),
        "{}",
        stderr(&out)
    );
    assert!(!env.ok(["list"]).contains("restart pending"));
    let got = env.sh(
        "web",
        "cat /data/f /etc/mine; touch /data/g 2>/dev/null || echo read-only; ls /sys/class/net",
    );
    assert_eq!(got, "data file\nmine\nread-only\nlo\n");

    // With --yes, a running box is stopped and comes back with the new settings.
    write_toml(&env, &proj, &head);
    let out = in_dir(&env, &proj, &["apply", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Stopped box 'web'"),
        "{}",
        stderr(&out)
    );
    let got = env.sh("web", "test -e /data/f || echo unmounted; cat /etc/mine");
    assert_eq!(got, "unmounted\nmine\n");
}

#[test]
fn config_changes_a_created_box() {
    let env = TestEnv::new();
    env.busybox("b", &[]);
    let data = env.home.join("shared-data");
    env.mkdir_as_user(&data);
    env.write_as_user(&data.join("f"), b"hi\n");
    env.ok([
        "config",
        "b",
        "--mount",
        "~/shared-data:/srv/data:ro",
        "--env",
        "EDITOR=vi",
        "--env",
        "GREETING=hello world",
    ]);
    let got = env.sh(
        "b",
        "cat /srv/data/f; echo $EDITOR $GREETING; touch /srv/data/x 2>/dev/null || echo ro",
    );
    assert_eq!(got, "hi\nvi hello world\nro\n");
    let shown = env.ok(["inspect", "b", "--json"]);
    assert!(shown.contains("/srv/data"), "{shown}");

    // A running box takes new mounts at its next start, and says so.
    let said = env.ok([
        "config",
        "b",
        "--unmount",
        "/srv/data",
        "--unset-env",
        "EDITOR",
    ]);
    assert!(said.contains("devbox restart b"), "{said}");
    let out = env.ok(["restart", "b"]);
    assert!(out.contains("Restarted box 'b'"), "{out}");
    assert_eq!(
        env.ok(["list"])
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(1),
        Some("running")
    );
    assert_eq!(
        env.sh(
            "b",
            "test -e /srv/data/f || echo gone; echo [$EDITOR] $GREETING"
        ),
        "gone\n[] hello world\n"
    );

    // Bad edits are refused with what to do, and change nothing.
    let err = env.fails(1, ["config", "b", "--mount", "/nope/x:/x"]);
    assert!(err.contains("does not exist"), "{err}");
    let err = env.fails(1, ["config", "b", "--mount", "~/shared-data"]);
    assert!(err.contains("HOST:BOX"), "{err}");
    let err = env.fails(1, ["config", "b", "--mount", "~/shared-data:/proc/x"]);
    assert!(err.contains("devbox mounts itself"), "{err}");
    let err = env.fails(1, ["config", "b", "--unmount", "/srv/data"]);
    assert!(err.contains("no mount at /srv/data"), "{err}");
    let err = env.fails(1, ["config", "b", "--env", "1X=2"]);
    assert!(err.contains("not a variable name"), "{err}");
    env.fails(2, ["config", "b", "--unshare", "bogus"]);

    // A project's box takes its settings from its file.
    let proj = env.home.join("p");
    env.mkdir_as_user(&proj);
    write_toml(
        &env,
        &proj,
        &format!(
            "[box]\nname = \"p\"\nimage = \"{}\"\n",
            fixture("busybox").display()
        ),
    );
    assert!(in_dir(&env, &proj, &["apply"]).status.success());
    let err = env.fails(1, ["config", "p", "--env", "A=1"]);
    assert!(err.contains("devbox apply p"), "{err}");
}

#[test]
fn user_config_supplies_the_default_image_and_box() {
    let env = TestEnv::new();
    let cfg_dir = env.home.join(".config/devbox");
    env.mkdir_as_user(&cfg_dir);
    env.write_as_user(
        &cfg_dir.join("config.toml"),
        format!(
            "default_image = \"{}\"\ndefault_box = \"second\"\n",
            fixture("busybox").display()
        )
        .as_bytes(),
    );
    // `create` without IMAGE takes default_image.
    env.ok(["create", "--name", "first"]);
    env.ok(["create", "--name", "second"]);
    let json = env.ok(["inspect", "first", "--json"]);
    assert!(json.contains("busybox-rootfs.tar"), "{json}");
    // enter/run without NAME outside a project take default_box, not "the only box".
    assert_eq!(env.ok(["run", "--", "hostname"]), "second\n");
    // A project here wins over default_box.
    let proj = env.home.join("proj");
    env.mkdir_as_user(&proj);
    write_toml(&env, &proj, "[box]\nname = \"first\"\nimage = \"x\"\n");
    // (first was not made from this file, so apply refuses to touch it)
    let out = in_dir(&env, &proj, &["apply"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not made from a devbox.toml"),
        "{}",
        stderr(&out)
    );

    // A broken user configuration is an error with its line and column.
    env.write_as_user(
        &cfg_dir.join("config.toml"),
        b"default_box = \"second\"\ndefualt_image = 3\n",
    );
    let err = env.fails(125, ["run", "--", "true"]);
    assert!(err.contains("config.toml:2:1:"), "{err}");
    assert!(err.contains("default_image"), "{err}");
}

#[test]
fn apply_runs_appended_setup_once_and_env_needs_nothing() {
    let env = TestEnv::new();
    let proj = env.home.join("tool");
    env.mkdir_as_user(&proj);
    let head = format!(
        "[box]\nname = \"tool\"\nimage = \"{}\"\n",
        fixture("busybox").display()
    );
    let file =
        |setup: &str, var: &str| format!("{head}setup = [{setup}]\n[box.env]\nWHO = \"{var}\"\n");
    write_toml(&env, &proj, &file("\"echo one >> /etc/log\"", "a"));
    assert!(in_dir(&env, &proj, &["apply"]).status.success());

    // An appended setup command runs in the box as it is; the first does not run again.
    write_toml(
        &env,
        &proj,
        &file("\"echo one >> /etc/log\", \"echo two >> /etc/log\"", "a"),
    );
    let out = in_dir(&env, &proj, &["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("setup commands added: 1") && err.contains("Setup 1/1: echo two"),
        "{err}"
    );
    let out = in_dir(
        &env,
        &proj,
        &["run", "--", "sh", "-c", "cat /etc/log; echo $WHO"],
    );
    assert_eq!(stdout(&out), "one\ntwo\na\n", "{}", stderr(&out));

    // env: nothing to do in the box; the next session has the new value.
    write_toml(
        &env,
        &proj,
        &file("\"echo one >> /etc/log\", \"echo two >> /etc/log\"", "b"),
    );
    let out = in_dir(&env, &proj, &["apply"]);
    let err = stderr(&out);
    assert!(
        err.contains("env set: WHO") && err.contains("Nothing to do in the box"),
        "{err}"
    );
    let out = in_dir(
        &env,
        &proj,
        &["run", "--", "sh", "-c", "cat /etc/log; echo $WHO"],
    );
    assert_eq!(stdout(&out), "one\ntwo\nb\n", "{}", stderr(&out));
}
