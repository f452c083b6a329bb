//! `devbox export`: launchers and desktop entries on the host that run a box's programs, and
//! what `devbox rm` does with them.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;

use crate::harness::*;

fn local_bin(env: &TestEnv) -> PathBuf {
    env.home.join(".local/bin")
}

fn apps(env: &TestEnv) -> PathBuf {
    env.home.join(".local/share/applications")
}

/// Installs a script in the box (as in-box root).
fn box_script(env: &TestEnv, bx: &str, path: &str, body: &str) {
    let script = format!("mkdir -p \"$(dirname {path})\" && cat > {path} && chmod 755 {path}");
    let mut child = env
        .cmd(["run", bx, "--root", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

const HELLO: &str = "#!/bin/sh\necho \"$(hostname) $(pwd) $#:$*\"\nexit \"$1\"\n";

#[test]
fn a_launcher_runs_the_program_in_the_box_with_cwd_arguments_and_status() {
    let env = TestEnv::new();
    env.busybox("bb", &[]);
    box_script(&env, "bb", "/usr/local/bin/hello", HELLO);

    // A bare name is looked up in the box's PATH.
    let out = env.ok(["export", "bb", "--bin", "hello"]);
    let launcher = local_bin(&env).join("hello");
    assert!(
        out.contains("Exported /usr/local/bin/hello of box 'bb'")
            && out.contains(&launcher.display().to_string()),
        "{out}"
    );
    assert!(out.contains("is not in your PATH"), "{out}");
    let meta = std::fs::metadata(&launcher).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(meta.uid(), host_uid());
    let text = std::fs::read_to_string(&launcher).unwrap();
    assert!(
        text.contains("# devbox export: box=bb bin=/usr/local/bin/hello\n")
            && text.contains(&env.bin().display().to_string()),
        "{text}"
    );

    // Run from the host like any program: the caller's directory, the arguments, the status.
    let proj = env.home.join("proj dir");
    env.mkdir_as_user(&proj);
    let o = env
        .raw(&launcher)
        .args(["7", "two words"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("bb {} 2:7 two words\n", proj.display()));

    // Missing programs are refused before anything is written.
    let err = env.fails(1, ["export", "bb", "--bin", "/usr/bin/nope"]);
    assert!(
        err.contains("there is no /usr/bin/nope in the box"),
        "{err}"
    );
    assert!(!local_bin(&env).join("nope").exists());
    let err = env.fails(1, ["export", "bb", "--bin", "nope"]);
    assert!(err.contains("no program nope in the box's PATH"), "{err}");

    // --list, then --delete.
    let list = env.ok(["export", "bb", "--list"]);
    assert!(
        list.contains("bin") && list.contains("/usr/local/bin/hello"),
        "{list}"
    );
    env.ok(["export", "bb", "--delete", "--bin", "hello"]);
    assert!(!launcher.exists());
    assert!(env.ok(["export", "bb", "--list"]).contains("no exports"));
    let err = env.fails(1, ["export", "bb", "--delete", "--bin", "hello"]);
    assert!(err.contains("has no export"), "{err}");
}

#[test]
fn a_launcher_falls_back_to_devbox_on_path_when_its_binary_is_gone() {
    let env = TestEnv::new();
    env.busybox("fb", &[]);
    box_script(&env, "fb", "/usr/local/bin/hello", HELLO);
    // Export with a copy of devbox, then remove the copy.
    let dir = env.root.join("moved");
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join("devbox");
    // Copied by another process: a copy written here could be held open for writing by a child
    // another test forks meanwhile, and running it would fail with ETXTBSY.
    let st = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(env.bin())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let o = env
        .raw(&copy)
        .args(["export", "fb", "--bin", "/usr/local/bin/hello"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let launcher = local_bin(&env).join("hello");
    assert!(std::fs::read_to_string(&launcher)
        .unwrap()
        .contains(&copy.display().to_string()));
    std::fs::remove_file(&copy).unwrap();

    let with_devbox = format!("{}:/usr/bin:/bin", env.bin().parent().unwrap().display());
    let o = env
        .raw(&launcher)
        .arg("0")
        .env("PATH", &with_devbox)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("fb "), "{}", stdout(&o));
    // With neither, the shell says it cannot find devbox.
    let o = env
        .raw(&launcher)
        .arg("0")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("devbox"), "{}", stderr(&o));
}

#[test]
fn files_devbox_did_not_write_and_other_boxes_exports_are_not_replaced() {
    let env = TestEnv::new();
    env.busybox("one", &[]);
    env.busybox("two", &[]);
    env.mkdir_as_user(&local_bin(&env));
    let mine = local_bin(&env).join("ls");
    env.write_as_user(&mine, b"#!/bin/sh\necho my own ls\n");

    let err = env.fails(1, ["export", "one", "--bin", "/bin/ls"]);
    assert!(
        err.contains("a file devbox did not write") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "#!/bin/sh\necho my own ls\n"
    );
    let err = env.fails(1, ["export", "one", "--delete", "--bin", "ls"]);
    assert!(err.contains("not written by devbox"), "{err}");
    assert!(mine.exists());

    env.ok(["export", "one", "--bin", "/bin/ls", "--force"]);
    assert!(std::fs::read_to_string(&mine)
        .unwrap()
        .contains("box=one bin=/bin/ls"));
    // Exporting it again from the same box updates it; from another box is refused.
    env.ok(["export", "one", "--bin", "/bin/ls"]);
    let err = env.fails(1, ["export", "two", "--bin", "/bin/ls"]);
    assert!(err.contains("from box 'one'"), "{err}");
    let err = env.fails(1, ["export", "two", "--delete", "--bin", "ls"]);
    assert!(err.contains("an export of box 'one'"), "{err}");
    assert!(std::fs::read_to_string(&mine)
        .unwrap()
        .contains("box=one bin=/bin/ls"));
    // Usage errors.
    env.fails(2, ["export", "one"]);
    env.fails(2, ["export", "one", "--bin", "ls", "--app", "x"]);
    env.fails(2, ["export", "one", "--all"]);
    env.fails(2, ["export", "one", "--list", "--delete", "--bin", "ls"]);
    let err = env.fails(1, ["export", "one", "--bin", "usr/bin/ls"]);
    assert!(err.contains("absolute path"), "{err}");
    let err = env.fails(1, ["export", "nobox", "--bin", "/bin/ls"]);
    assert!(err.contains("no box named 'nobox'"), "{err}");
}

const DESKTOP: &str = "[Desktop Entry]
Type=Application
Name=Hello
Name[de]=Hallo
Comment=Says hello
Exec=hello 0 %U
TryExec=hello
Icon=org.example.Hello
DBusActivatable=true
Actions=loud;

[Desktop Action loud]
Name=Loud
Exec=hello 0 LOUD
";

#[test]
fn a_desktop_entry_runs_through_devbox_and_shows_the_boxs_icon() {
    let env = TestEnv::new();
    env.busybox("ap", &[]);
    box_script(&env, "ap", "/usr/local/bin/hello", HELLO);
    box_script(
        &env,
        "ap",
        "/usr/share/applications/org.example.Hello.desktop",
        DESKTOP,
    );
    // The icon: a theme entry that is an absolute symlink to a pixmap (resolved in the box).
    box_script(
        &env,
        "ap",
        "/usr/share/pixmaps/hello.png",
        "not really a png\n",
    );
    env.ok([
        "run",
        "ap",
        "--root",
        "--",
        "sh",
        "-c",
        "mkdir -p /usr/share/icons/hicolor/48x48/apps && ln -s /usr/share/pixmaps/hello.png /usr/share/icons/hicolor/48x48/apps/org.example.Hello.png",
    ]);

    let out = env.ok(["export", "ap", "--app", "org.example.Hello"]);
    let file = apps(&env).join("devbox-ap-org.example.Hello.desktop");
    assert!(out.contains(&file.display().to_string()), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let bin = env.bin().display().to_string();
    let icon = env
        .data()
        .join("boxes-v1/ap/upper/usr/share/pixmaps/hello.png");
    for line in [
        "# devbox export: box=ap app=org.example.Hello".to_string(),
        format!("TryExec={bin}"),
        "Name=Hello (ap)".into(),
        "Name[de]=Hallo (ap)".into(),
        "Comment=Says hello".into(),
        format!("Exec={bin} run ap -- hello 0 %U"),
        format!("Icon={}", icon.display()),
        "Name=Loud".into(),
        format!("Exec={bin} run ap -- hello 0 LOUD"),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("DBusActivatable") && !text.contains("TryExec=hello"),
        "{text}"
    );
    // The icon file is readable by the user on the host.
    assert_eq!(
        std::fs::read_to_string(&icon).unwrap(),
        "not really a png\n"
    );

    // Launch it as a desktop would: the Exec line with %U expanded to a file.
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("Exec="))
        .unwrap()
        .replace("%U", "/tmp/a-file");
    let argv: Vec<&str> = exec.split(' ').collect();
    let o = env.raw(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("ap {} 2:0 /tmp/a-file\n", env.home.display())
    );

    // Unknown applications: close matches are offered.
    let err = env.fails(1, ["export", "ap", "--app", "hello"]);
    assert!(err.contains("did you mean: org.example.Hello?"), "{err}");
    assert!(env
        .ok(["export", "ap", "--list"])
        .contains("org.example.Hello"));
    env.ok([
        "export",
        "ap",
        "--delete",
        "--app",
        "org.example.Hello.desktop",
    ]);
    assert!(!file.exists());
}

/// `devbox ARGS` on a new terminal with `input` already typed; returns (status, output).
fn on_terminal(env: &TestEnv, args: &[&str], input: &str) -> (i32, String) {
    let pty = nix::pty::openpty(None, None).unwrap();
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    let slave: OwnedFd = pty.slave;
    let mut cmd = env.raw("setsid");
    cmd.args(["-w", "-c"]).arg(env.bin()).args(args);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(input.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Reading ends with EIO once the last holder of the terminal's other side is gone.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn rm_removes_exports_when_told_asks_on_a_terminal_and_otherwise_keeps_them_and_says_so() {
    let env = TestEnv::new();
    for (bx, prog) in [
        ("kept", "/bin/true"),
        ("gone", "/bin/false"),
        ("asky", "/bin/cat"),
        ("askn", "/bin/echo"),
    ] {
        env.busybox(bx, &[]);
        env.ok(["export", bx, "--bin", prog, "--force"]);
        env.ok(["stop", bx]);
    }

    // No terminal, no --yes: the launcher stays, and one line says so and how to remove it.
    let o = env.run(["rm", "kept"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("kept 1 export of box 'kept'")
            && err.contains("broken")
            && err.contains("`devbox export kept --delete --all`"),
        "{err}"
    );
    let launcher = local_bin(&env).join("true");
    assert!(launcher.exists());
    // It now fails, saying why; --list still finds it; the command given removes it.
    let o = env.raw(&launcher).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("no box named 'kept'"), "{}", stderr(&o));
    let o = env.run(["export", "kept", "--list"]);
    assert!(stdout(&o).contains("/bin/true"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("there is no box 'kept'"),
        "{}",
        stderr(&o)
    );
    env.ok(["export", "kept", "--delete", "--all"]);
    assert!(!launcher.exists());

    // --yes removes them.
    let out = env.ok(["rm", "--yes", "gone"]);
    assert!(out.contains("Removed 1 export of box 'gone'"), "{out}");
    assert!(!local_bin(&env).join("false").exists());

    // On a terminal it asks.
    let (code, seen) = on_terminal(&env, &["rm", "asky"], "y\n");
    assert_eq!(code, 0, "{seen}");
    assert!(
        seen.contains("Remove 1 export of box 'asky'? [y/N]"),
        "{seen}"
    );
    assert!(!local_bin(&env).join("cat").exists(), "{seen}");
    let (code, seen) = on_terminal(&env, &["rm", "askn"], "\n");
    assert_eq!(code, 0, "{seen}");
    assert!(
        seen.contains("Remove 1 export of box 'askn'? [y/N]"),
        "{seen}"
    );
    assert!(seen.contains("kept 1 export of box 'askn'"), "{seen}");
    assert!(local_bin(&env).join("echo").exists());
    assert!(!env.data().join("boxes-v1/askn").exists());
}

fn host_uid() -> u32 {
    test_user()
        .map(|u| u.uid)
        .unwrap_or_else(|| nix::unistd::getuid().as_raw())
}

/// A launcher named like a command of the host (found on the host's PATH outside
/// ~/.local/bin) would stand in for it or hide behind it: refused without --force.
#[test]
fn a_launcher_that_would_shadow_a_host_command_needs_force() {
    let env = TestEnv::new();
    env.busybox("bb", &[]);
    let err = env.fails(1, ["export", "bb", "--bin", "/bin/ls"]);
    assert!(
        err.contains("error: the host has its own ls (/usr/bin/ls)") && err.contains("--force"),
        "{err}"
    );
    assert!(!local_bin(&env).join("ls").exists());
    env.ok(["export", "bb", "--bin", "/bin/ls", "--force"]);
    assert!(local_bin(&env).join("ls").exists());
    // The box's own launcher is updated without --force again.
    env.ok(["export", "bb", "--bin", "/bin/ls"]);
}
