//! What devbox says on stderr: `error:` and `hint:` in colour only on a terminal that wants
//! it, and the `--verbose` detail lines (image resolution, project file, newuidmap/newgidmap,
//! helpers, which learn of `--verbose` through the environment).

use std::path::Path;

use crate::harness::*;
use crate::http::{Request, Response, Server};
use crate::terminal::Pty;

/// `devbox create ./no-such.tar` on a pty with `vars` set; returns what the terminal showed.
fn failing_create_on_a_pty(env: &TestEnv, vars: &[(&str, &str)]) -> String {
    let mut cmd = env.raw("setsid");
    cmd.args(["-w", "-c"])
        .arg(env.bin())
        .args(["create", "./no-such.tar"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut t = Pty::start(cmd);
    let out = t.expect("IMAGE is a path");
    assert_eq!(t.wait().code(), Some(1), "{out}");
    out
}

#[test]
fn errors_are_coloured_only_on_a_terminal_that_wants_it() {
    let env = TestEnv::new();
    let red = "\x1b[1;31merror:\x1b[0m ./no-such.tar: no such file";
    let cyan = "\x1b[1;36mhint:\x1b[0m IMAGE is a path";

    let out = failing_create_on_a_pty(&env, &[]);
    assert!(out.contains(red) && out.contains(cyan), "{out:?}");
    // An empty NO_COLOR counts as unset.
    let out = failing_create_on_a_pty(&env, &[("NO_COLOR", "")]);
    assert!(out.contains(red), "{out:?}");

    for vars in [[("NO_COLOR", "1")], [("TERM", "dumb")]] {
        let out = failing_create_on_a_pty(&env, &vars);
        assert!(
            out.contains("error: ./no-such.tar: no such file")
                && out.contains("  hint: IMAGE is a path"),
            "{vars:?}: {out:?}"
        );
        assert!(!out.contains('\x1b'), "{vars:?}: {out:?}");
    }

    // Piped: plain text.
    let err = env.fails(1, ["create", "./no-such.tar"]);
    assert!(
        err.starts_with("error: ./no-such.tar: no such file\n  hint: IMAGE is a path"),
        "{err:?}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    // The reason is said once, up front, not after the hint in the OS's words.
    assert!(!err.contains("os error"), "{err:?}");
    assert_eq!(err.lines().count(), 2, "{err:?}");
}

/// Serves the busybox fixture to every GET on loopback until dropped.
fn tar_server() -> Server {
    let body = std::fs::read(fixture("busybox")).unwrap();
    Server::start(move |_: &Request| Response::new(200, body.clone()))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A catalog directory with `testos`, pinned to the loopback server.
fn catalog(env: &TestEnv, server: &Server) -> std::path::PathBuf {
    let dir = env.root.join("catalog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("testos.toml"),
        format!(
            r#"id = "testos"
name = "Test OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"

[[source]]
kind = "pinned"
url = "{}"
sha256 = "{}"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            server.url("/rootfs.tar"),
            sha256_hex(&std::fs::read(fixture("busybox")).unwrap())
        ),
    )
    .unwrap();
    dir
}

fn write_project(env: &TestEnv, dir: &Path, name: &str) {
    env.mkdir_as_user(dir);
    env.write_as_user(
        &dir.join("devbox.toml"),
        format!(
            "[box]\nname = \"{name}\"\nimage = \"{}\"\n",
            fixture("busybox").display()
        )
        .as_bytes(),
    );
}

/// Runs devbox with `args` (and the catalog), asserting success; returns stderr.
fn stderr_of(env: &TestEnv, cat: &Path, dir: &Path, args: &[&str]) -> String {
    let out = env
        .cmd(args)
        .env("DEVBOX_CATALOG_DIR", cat)
        .current_dir(dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "devbox {args:?}: {err}");
    err
}

const DETAILS: &[&str] = &[
    "devbox: image ",
    "devbox: running newuidmap ",
    "devbox: running newgidmap ",
    "devbox: helper started: ",
    "devbox: project file ",
];

#[test]
fn verbose_says_what_devbox_resolves_and_runs() {
    let server = tar_server();
    let env = TestEnv::new();
    let cat = catalog(&env, &server);
    let sha = sha256_hex(&std::fs::read(fixture("busybox")).unwrap());
    let home = env.home.clone();

    // create: the resolved URL and digest; the unpack helper, which maps its own namespace
    // (no holder runs yet) and was told to be verbose through the environment.
    let err = stderr_of(
        &env,
        &cat,
        &home,
        &["-v", "create", "testos", "--name", "v"],
    );
    let want = format!(
        "devbox: image testos is {} (sha256:{sha})\n",
        server.url("/rootfs.tar")
    );
    assert!(err.contains(&want), "{want}\n{err}");
    assert!(
        err.contains("devbox: helper started: devbox __unpack "),
        "{err}"
    );
    let uid = err
        .lines()
        .find(|l| l.starts_with("devbox: running newuidmap "))
        .unwrap_or_else(|| panic!("no newuidmap line: {err}"));
    // `newuidmap PID` then inside-outside-count triples.
    let fields: Vec<&str> = uid.split_whitespace().skip(3).collect();
    assert!(fields.len() >= 4 && (fields.len() - 1) % 3 == 0, "{uid}");
    assert!(fields.iter().all(|f| f.parse::<u64>().is_ok()), "{uid}");
    assert!(err.contains("devbox: running newgidmap "), "{err}");

    // The first run starts the holder (which maps its namespace) and the box's starter.
    let err = stderr_of(&env, &cat, &home, &["--verbose", "run", "v", "--", "true"]);
    for want in [
        "devbox: helper started: devbox __holder ",
        "devbox: running newuidmap ",
        "devbox: running newgidmap ",
        "devbox: helper started: devbox __start v ",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }

    // enter/run without a name: the project file used.
    let proj = env.home.join("proj");
    write_project(&env, &proj, "vproj");
    let err = stderr_of(&env, &cat, &proj, &["-v", "run", "--", "true"]);
    assert!(
        err.contains(&format!(
            "devbox: project file {}\n",
            proj.join("devbox.toml").display()
        )),
        "{err}"
    );

    // --verbose and --quiet contradict each other.
    let err = env.fails(2, ["-v", "-q", "list"]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn without_verbose_there_are_no_detail_lines() {
    let server = tar_server();
    let env = TestEnv::new();
    let cat = catalog(&env, &server);
    let home = env.home.clone();
    let proj = env.home.join("proj");
    write_project(&env, &proj, "qproj");
    let mut said = stderr_of(&env, &cat, &home, &["create", "testos", "--name", "q"]);
    said += &stderr_of(&env, &cat, &home, &["run", "q", "--", "true"]);
    said += &stderr_of(&env, &cat, &proj, &["run", "--", "true"]);
    // A DEVBOX_VERBOSE=1 in the user's environment is overruled by --quiet.
    let out = env
        .cmd(["-q", "stop", "--all"])
        .env("DEVBOX_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    said += &stderr(&out);
    for line in DETAILS {
        assert!(!said.contains(line), "{line}: {said}");
    }
    // ... and turns it on otherwise, for devbox and its helpers.
    let out = env
        .cmd(["run", "q", "--", "true"])
        .env("DEVBOX_VERBOSE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("devbox: helper started: devbox __holder "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_without_dashes_shows_where_the_command_goes() {
    let env = TestEnv::new();
    env.busybox("deb", &[]);
    let out = env.run(["run", "--root", "deb", "ls", "-l"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("hint: the command goes after `--`: devbox run --root deb -- ls -l\n"),
        "{err}"
    );
    // A first word that is no box was the command (for the project's or the only box).
    let out = env.run(["run", "make", "all"]);
    assert!(
        stderr(&out).contains("devbox run -- make all\n"),
        "{}",
        stderr(&out)
    );
    // Other usage errors are clap's own.
    let out = env.run(["list", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("goes after"), "{}", stderr(&out));
}

#[test]
fn env_flags_set_variables_for_one_session() {
    let env = TestEnv::new();
    env.busybox("e", &[]);
    let out = env.ok([
        "run",
        "e",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--env",
        "EMPTY=",
        "--",
        "sh",
        "-c",
        "echo \"$A|$B|${EMPTY-unset}\"",
    ]);
    assert_eq!(out, "1|x=y|\n");
    // Only that session.
    assert_eq!(env.sh("e", "echo \"${A-unset}\""), "unset\n");
    let err = env.fails(125, ["run", "e", "--env", "1BAD=x", "--", "true"]);
    assert!(
        err.contains("is not KEY=VALUE") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn hints_fit_the_command_they_follow() {
    let env = TestEnv::new();
    env.busybox("a1", &[]);
    env.busybox("b2", &[]);
    // Removing a box that is not there: the boxes there are, and no advice to create it.
    let err = env.fails(1, ["rm", "nope"]);
    assert!(
        err.contains("no box named 'nope'") && err.contains("a1, b2"),
        "{err}"
    );
    assert!(!err.contains("create"), "{err}");
    // `run` without a name among several boxes shows a `run`, not an `enter`.
    let err = env.fails(125, ["run", "--", "true"]);
    assert!(err.contains("`devbox run a1 -- CMD`"), "{err}");
    let out = env.run(["enter"]);
    assert!(
        stderr(&out).contains("`devbox enter a1`"),
        "{}",
        stderr(&out)
    );
}
