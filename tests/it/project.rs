//! A project's devbox.toml: found from the project or a subdirectory (or named with --config),
//! its box made on first use with setup commands run once, env and enter hooks in every
//! session, broken files refused with their line and column and no box made.

use crate::harness::*;

fn write_project(env: &TestEnv, dir: &std::path::Path, extra: &str) {
    env.mkdir_as_user(dir);
    let text = format!(
        r#"[box]
name = "proj"
image = "{}"
setup = ["echo made >> /etc/setup-ran"]
{extra}

[box.env]
GREETING = "hello $USER"

[hooks]
enter = ["export HOOKED=yes"]
"#,
        fixture("busybox").display()
    );
    env.write_as_user(&dir.join("devbox.toml"), text.as_bytes());
}

#[test]
fn project_box_is_made_on_first_use_and_used_from_subdirectories() {
    let env = TestEnv::new();
    let proj = env.home.join("code/proj");
    write_project(&env, &proj, "");
    let sub = proj.join("src/deep");
    env.mkdir_as_user(&sub);
    let out = env
        .cmd([
            "run",
            "--",
            "sh",
            "-c",
            "cat /etc/setup-ran; echo $GREETING; echo $HOOKED; hostname; pwd",
        ])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let user = test_user()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| std::env::var("USER").unwrap());
    assert_eq!(
        stdout(&out),
        format!("made\nhello {user}\nyes\nproj\n{}\n", sub.display())
    );
    let err = stderr(&out);
    assert!(
        err.contains("Creating box 'proj'") && err.contains("Setup 1/1"),
        "{err}"
    );
    // Second session: no new setup run, the hooks and env again.
    let out = env
        .cmd([
            "run",
            "--",
            "sh",
            "-c",
            "wc -l < /etc/setup-ran; echo $HOOKED",
        ])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        vec!["1", "yes"],
        "{}",
        stderr(&out)
    );
    // --config from anywhere.
    let cfg = proj.join("devbox.toml");
    let out = env
        .cmd(["run", "--config", cfg.to_str().unwrap(), "--", "hostname"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "proj\n", "{}", stderr(&out));
    // A changed file is noticed.
    write_project(&env, &proj, "unshare = [\"net\"]");
    let out = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("changed since box 'proj' was made"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_project_file_names_line_and_column_and_makes_no_box() {
    let env = TestEnv::new();
    let proj = env.home.join("bad");
    env.mkdir_as_user(&proj);
    env.write_as_user(
        &proj.join("devbox.toml"),
        b"[box]\nname = \"bad\"\nimage = \"x\"\npakages = [\"git\"]\n",
    );
    let out = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("devbox.toml:4:1:") && err.contains("did you mean `packages`"),
        "{err}"
    );
    assert!(env.ok(["list"]).contains("No boxes"));

    // A setup command that fails: the box is not kept.
    write_project(&env, &proj, "");
    let text = std::fs::read_to_string(proj.join("devbox.toml"))
        .unwrap()
        .replace("echo made >> /etc/setup-ran", "exit 3");
    env.write_as_user(&proj.join("devbox.toml"), text.as_bytes());
    let out = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("was not kept"), "{}", stderr(&out));
    assert!(env.ok(["list"]).contains("No boxes"));
}

#[test]
fn project_mounts_bind_host_directories_read_only_when_asked() {
    let env = TestEnv::new();
    let data = env.home.join("data");
    env.mkdir_as_user(&data);
    env.write_as_user(&data.join("input.txt"), b"from the host\n");
    let scratch = env.root.join("scratch");
    env.mkdir_as_user(&scratch);
    let proj = env.home.join("mounted");
    write_project(
        &env,
        &proj,
        &format!(
            "\n[[box.mounts]]\nhost = \"~/data\"\nbox = \"/data\"\nreadonly = true\n\n[[box.mounts]]\nhost = \"{}\"\nbox = \"/scratch\"\n",
            scratch.display()
        ),
    );
    let out = env
        .cmd(["run", "--", "sh", "-c", "cat /data/input.txt; touch /data/x 2>/dev/null && echo wrote || echo read-only; echo out > /scratch/y"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from the host\nread-only\n");
    assert_eq!(std::fs::read_to_string(scratch.join("y")).unwrap(), "out\n");
    assert!(!data.join("x").exists());
}

#[test]
fn an_isolated_home_keeps_the_host_home_out_and_the_project_in() {
    let env = TestEnv::new();
    env.write_as_user(&env.home.join("host-secret"), b"x");
    let proj = env.home.join("code/iso");
    write_project(&env, &proj, "home = \"./.home\"");
    let out = env
        .cmd(["run", "--", "sh", "-c", "test -e $HOME/host-secret && echo visible || echo hidden; echo made > $HOME/inbox; pwd; ls"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        // devbox.lock: the image pinned when the box was made (tests/it/share.rs).
        format!("hidden\n{}\ndevbox.lock\ndevbox.toml\n", proj.display())
    );
    assert_eq!(
        std::fs::read_to_string(proj.join(".home/inbox")).unwrap(),
        "made\n"
    );
    assert!(
        !env.home.join("inbox").exists(),
        "the host home is untouched"
    );
}

fn write_hooks(env: &TestEnv, dir: &std::path::Path, hooks: &str) {
    let text = format!(
        "[box]\nname = \"hk\"\nimage = \"{}\"\n\n[hooks]\nenter = [{hooks}]\n",
        fixture("busybox").display()
    );
    env.write_as_user(&dir.join("devbox.toml"), text.as_bytes());
}

#[test]
fn enter_hooks_run_in_the_session_shell_from_the_project_directory() {
    let env = TestEnv::new();
    let proj = env.home.join("code/hk");
    let sub = proj.join("src");
    env.mkdir_as_user(&sub);
    env.write_as_user(&proj.join("env.sh"), b"export FROM_FILE=sourced\n");
    write_hooks(&env, &proj, r#"". ./env.sh", "export B=2""#);
    let out = env
        .cmd(["run", "--", "sh", "-c", "echo $FROM_FILE $B; pwd"])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("sourced 2\n{}\n", sub.display()));

    // A failing hook: `error:` naming it and its file, status 125, the command never runs.
    write_hooks(&env, &proj, r#""export C=3", "false""#);
    let out = env
        .cmd(["run", "--", "echo", "the command ran"])
        .current_dir(&sub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: enter hook 2 of 2 in {} failed (exit status 1): false",
            proj.join("devbox.toml").display()
        )),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    // Only hooks changed: nothing to apply, and nothing said about it.
    assert!(!err.contains("changed since"), "{err}");
}

#[test]
fn a_projects_prompt_and_its_hooks_survive_the_images_bashrc() {
    let env = TestEnv::new();
    let proj = env.home.join("prompted");
    env.mkdir_as_user(&proj);
    let text = format!(
        "[box]\nname = \"prompted\"\nimage = \"{}\"\nprompt = \"(prompted) \\\\w> \"\n\n[hooks]\nenter = [\"source ./hook.sh\"]\n",
        fixture("debian").display()
    );
    env.write_as_user(&proj.join("devbox.toml"), text.as_bytes());
    // `source` (bash's word; dash has only `.`) works: the hooks run in the user's bash.
    env.write_as_user(&proj.join("hook.sh"), b"export FROM_HOOK=yes\n");
    // An interactive bash (stdin is not a terminal, so it prints its prompt on stderr).
    let mut child = env
        .cmd(["enter"])
        .current_dir(&proj)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hook=$FROM_HOOK\nexit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("hook=yes"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("(prompted) ~/prompted> ")
            || err.contains(&format!("(prompted) {}> ", proj.display())),
        "{err}"
    );
}

/// A project whose first setup command stops for a long time the first time it runs (a marker
/// in the shared /tmp says it ran), and whose second leaves a mark in the box.
fn write_slow_setup(env: &TestEnv, dir: &std::path::Path, marker: &std::path::Path) {
    env.mkdir_as_user(dir);
    let text = format!(
        "[box]\nname = \"slow\"\nimage = \"{}\"\nsetup = [\"if [ ! -e {m} ]; then touch {m}; sleep 60; fi\", \"echo done > /etc/provisioned\"]\n",
        fixture("busybox").display(),
        m = marker.display()
    );
    env.write_as_user(&dir.join("devbox.toml"), text.as_bytes());
}

fn wait_for(path: &std::path::Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_provisioning_cut_short_is_never_taken_for_a_made_box() {
    cut_short(nix::sys::signal::Signal::SIGKILL);
}

#[test]
fn a_provisioning_hung_up_on_is_never_taken_for_a_made_box() {
    // A closed terminal: SIGHUP to devbox.
    cut_short(nix::sys::signal::Signal::SIGHUP);
}

fn cut_short(signal: nix::sys::signal::Signal) {
    let env = TestEnv::new();
    let proj = env.home.join("slow");
    let marker = env.root.join("setup-started");
    std::fs::set_permissions(
        &env.root,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    write_slow_setup(&env, &proj, &marker);
    let mut first = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&marker);
    // The devbox doing the provisioning dies.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), signal).unwrap();
    let _ = first.wait();
    // Not "up to date": the next command makes the box again, and says so.
    let out = env
        .cmd(["apply", "--yes"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("left half-made") && err.contains("Setup 2/2"),
        "{err}"
    );
    let out = env
        .cmd(["run", "--", "cat", "/etc/provisioned"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));
}

#[test]
fn ctrl_c_interrupts_provisioning_and_keeps_no_box() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    let proj = env.home.join("slow");
    let marker = env.root.join("setup-started");
    std::fs::set_permissions(
        &env.root,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    write_slow_setup(&env, &proj, &marker);
    let child = env
        .cmd(["run", "--", "true"])
        .current_dir(&proj)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&marker);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // What a terminal's Ctrl-C does: SIGINT to the foreground process group.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("interrupted") && err.contains("was not kept"),
        "{err}"
    );
    assert!(env.ok(["list"]).contains("No boxes"));
}
