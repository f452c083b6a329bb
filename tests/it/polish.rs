//! Issue 11, everyday polish: messages that say where a setting came from and what is wrong
//! first, doctor for root and for shared subordinate ranges, init's catalog check.

use crate::harness::*;
use crate::http::{Request, Response, Server};

fn write_user_config(env: &TestEnv, text: &str) -> std::path::PathBuf {
    let dir = env.home.join(".config/devbox");
    env.mkdir_as_user(&env.home.join(".config"));
    env.mkdir_as_user(&dir);
    let file = dir.join("config.toml");
    env.write_as_user(&file, text.as_bytes());
    file
}

#[test]
fn a_default_box_that_does_not_exist_is_said_to_come_from_config_toml() {
    let env = TestEnv::new();
    env.busybox("real", &[]);
    let file = write_user_config(&env, "default_box = \"ghost\"\n");
    for args in [&["enter"][..], &["run", "--", "true"][..]] {
        let err = env.fails(125, args);
        assert!(
            err.starts_with(&format!(
                "error: no box named 'ghost': it is default_box in {}\n",
                file.display()
            )),
            "{err}"
        );
        assert!(err.contains("the boxes are: real"), "{err}");
    }
}

#[test]
fn config_errors_start_with_file_line_column() {
    let env = TestEnv::new();
    let file = write_user_config(&env, "default_box = \"a\"\ndefault_imag = \"x\"\n");
    let err = env.fails(125, ["enter"]);
    assert!(
        err.starts_with(&format!(
            "error: {}:2:1: unknown key `default_imag`",
            file.display()
        )),
        "{err}"
    );
    let proj = env.home.join("proj");
    env.mkdir_as_user(&proj);
    let toml = proj.join("devbox.toml");
    env.write_as_user(&toml, b"[box]\nimage = \"debian\"\npackges = []\n");
    std::fs::remove_file(&file).unwrap();
    let out = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: {}:3:1: unknown key `packges`",
            toml.display()
        )),
        "{err}"
    );
}

/// A catalog entry of the user's whose sources (an OCI image and an archive) are closed
/// loopback ports: every source fails, and each is named once, with its reason.
#[test]
fn a_failed_catalog_create_names_each_source_once() {
    let env = TestEnv::new();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = env.home.join(".config/devbox/images");
    env.mkdir_as_user(&env.home.join(".config"));
    env.mkdir_as_user(&env.home.join(".config/devbox"));
    env.mkdir_as_user(&dir);
    env.write_as_user(
        &dir.join("deados.toml"),
        format!(
            r#"id = "deados"
name = "Dead OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"

[[source]]
kind = "oci"
image = "127.0.0.1:{dead}/dead/os:1"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}

[[source]]
kind = "pinned"
url = "http://127.0.0.1:{dead}/dead.tar"
sha256 = "{}"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            "0".repeat(64)
        )
        .as_bytes(),
    );
    let err = env.fails(1, ["create", "deados:1"]);
    assert!(err.contains("every source failed"), "{err}");
    assert!(!err.contains("oci oci"), "{err}");
    let oci = format!("oci image 127.0.0.1:{dead}/dead/os:1");
    let url = format!("http://127.0.0.1:{dead}/dead.tar");
    assert_eq!(err.matches(&oci).count(), 1, "{err}");
    assert_eq!(err.matches(&url).count(), 1, "{err}");
}

#[test]
fn init_checks_a_catalog_image_and_suggests_close_names() {
    let env = TestEnv::new();
    let proj = env.home.join("proj");
    env.mkdir_as_user(&proj);
    let out = env
        .cmd(["init", "--image", "debain"])
        .current_dir(&proj)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--image debain: unknown distribution \"debain\"")
            && err.contains("did you mean: debian?"),
        "{err}"
    );
    assert!(!proj.join("devbox.toml").exists());
    let out = env
        .cmd(["init", "--image", "debian:trixie"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// As root, doctor checks the machine and then says devbox is for ordinary users, instead of
/// telling root to get subordinate ids.
#[test]
fn doctor_as_root_says_to_run_it_as_your_user() {
    if !is_root() {
        return;
    }
    let env = TestEnv::new();
    let home = env.root.join("roothome");
    std::fs::create_dir_all(&home).unwrap();
    let out = std::process::Command::new(env.bin())
        .arg("doctor")
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("SUDO_USER", "ada")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("ok    kernel"), "{text}");
    assert!(
        text.contains("FAIL  user: this is root; devbox is for ordinary users"),
        "{text}"
    );
    assert!(text.contains("fix: sudo -u ada devbox doctor"), "{text}");
    assert!(
        !text.contains("subuid") && !text.contains("usermod"),
        "{text}"
    );
}

/// `devbox enter` with no box: on a terminal it offers to make one from the default image
/// (`[y/N]`, no by default) and enters it; without one it says how to make one.
#[test]
fn enter_without_boxes_offers_to_make_one_on_a_terminal() {
    let env = TestEnv::new();
    let img = fixture("busybox");
    write_user_config(&env, &format!("default_image = \"{}\"\n", img.display()));
    let err = env.fails(125, ["enter"]);
    assert!(
        err.starts_with("error: there are no boxes yet\n  hint: `devbox create` makes box '"),
        "{err}"
    );
    let on_pty = || {
        let mut cmd = env.raw("setsid");
        cmd.args(["-w", "-c"]).arg(env.bin()).arg("enter");
        crate::terminal::Pty::start(cmd)
    };
    let mut t = on_pty();
    t.expect("(your default image) and enter it? [y/N] ");
    t.send("\n");
    let out = t.expect("hint:");
    assert!(out.contains("no box to enter"), "{out}");
    assert_eq!(t.wait().code(), Some(125));
    assert_eq!(env.ok(["list"]).lines().count(), 1, "nothing made");

    let mut t = on_pty();
    t.expect("[y/N] ");
    t.send("y\n");
    t.expect("Created box '");
    t.send("echo IN-$((40+2)) $DEVBOX_NAME\n");
    t.expect("IN-42 ");
    t.send("exit\n");
    assert_eq!(t.wait().code(), Some(0), "{}", t.seen);
    assert_eq!(env.ok(["list"]).lines().count(), 2);
}

/// The session's shell is the user's login shell from the host ($SHELL here) when the box has
/// it; otherwise bash, with one line saying so on `enter`.
#[test]
fn the_login_shell_is_used_when_the_box_has_it() {
    let env = TestEnv::new();
    let img = fixture("debian");
    env.ok(["create", img.to_str().unwrap(), "--name", "deb"]);
    let enter_with = |shell: &str| {
        let mut cmd = env.raw("setsid");
        cmd.args(["-w", "-c"])
            .arg(env.bin())
            .args(["enter", "deb"])
            .env("SHELL", shell);
        crate::terminal::Pty::start(cmd)
    };
    // dash, the box's /bin/sh, when that is the login shell.
    let mut t = enter_with("/bin/sh");
    t.send("echo EXE=$(readlink /proc/$$/exe) SH=$SHELL END\n");
    t.expect(" END\r\n");
    let out = t.expect(" END");
    assert!(out.contains("EXE=/usr/bin/dash SH=/bin/sh"), "{out}");
    assert!(
        !t.seen.contains("login shell") && !out.contains("login shell"),
        "{out}"
    );
    t.send("exit\n");
    assert_eq!(t.wait().code(), Some(0));

    // A shell the box lacks: bash, and one line says so.
    let mut t = enter_with("/usr/bin/zsh");
    let said = t.expect("\u{2b22} ");
    assert_eq!(
        said.matches("devbox: box 'deb' has no /usr/bin/zsh (your login shell); using /bin/bash")
            .count(),
        1,
        "{said}"
    );
    t.send("echo EXE=$(readlink /proc/$$/exe) END\n");
    t.expect(" END\r\n");
    let out = t.expect(" END");
    assert!(out.contains("EXE=/usr/bin/bash"), "{out}");
    t.send("exit\n");
    assert_eq!(t.wait().code(), Some(0));

    // run: the same shell as $SHELL of the session, and no line.
    let out = env
        .cmd(["run", "deb", "--", "sh", "-c", "echo $SHELL"])
        .env("SHELL", "/bin/sh")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/bin/sh\n", "{}", stderr(&out));
    let out = env
        .cmd(["run", "deb", "--", "sh", "-c", "echo $SHELL"])
        .env("SHELL", "/usr/bin/zsh")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "/bin/bash\n");
    assert_eq!(stderr(&out), "");
}

/// Serves `file` on loopback to every GET, slowly (about 1.5 s for the whole body, with its
/// length: 30 pieces, each followed by 50 ms), so the progress bars are drawn.
fn slow_server(file: &std::path::Path) -> Server {
    let body = std::fs::read(file).unwrap();
    Server::start(move |_: &Request| {
        let step = (body.len() / 30).max(1);
        let ends = (step..body.len()).step_by(step).chain([body.len()]);
        ends.fold(Response::new(200, body.clone()), |r, at| {
            r.pause(at, |_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                true
            })
        })
    })
}

/// What a terminal shows after `devbox ARGS` ran in it: tmux keeps the screen, so a bar or a
/// spinner left behind (frozen at 80 %, `Unpacking 0s`) is seen as a user would see it.
fn final_screen(env: &TestEnv, args: &[&str]) -> String {
    let sock = env.home.join("tmux.sock");
    let cmd = format!(
        "{} {}; echo EXIT=$?; sleep 60",
        env.bin().display(),
        args.join(" ")
    );
    let st = env
        .raw("tmux")
        .arg("-S")
        .arg(&sock)
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "30",
            &cmd,
        ])
        .status()
        .expect("tmux: run `sudo tests/setup.sh`");
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let screen = loop {
        let out = env
            .raw("tmux")
            .arg("-S")
            .arg(&sock)
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        let screen = stdout(&out);
        if screen.contains("EXIT=") {
            break screen;
        }
        assert!(std::time::Instant::now() < deadline, "{screen}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = env
        .raw("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
    screen
}

#[test]
fn progress_ends_clean_after_a_download() {
    for f in ["busybox", "debian"] {
        progress_ends_clean(f);
    }
}

fn progress_ends_clean(fixture_name: &str) {
    let env = TestEnv::new();
    let server = slow_server(&fixture(fixture_name));
    let url = server.url("/busybox.tar.gz");
    let screen = final_screen(&env, &["create", &url, "--name", "dl"]);
    drop(server);
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        lines.iter().any(|l| l.starts_with("Created box 'dl'")),
        "{screen}"
    );
    // Only whole lines of text stay: no bar, no rate, no spinner with its clock.
    for l in &lines {
        assert!(
            !l.contains("ETA")
                && !l.contains("/s")
                && !l.contains('[')
                && !l.ends_with(" 0s")
                && !l.ends_with("s "),
            "a progress line stayed: {l:?}\n{screen}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.trim_start().starts_with("Unpacking") && !l.contains('(')),
        "{screen}"
    );
}
