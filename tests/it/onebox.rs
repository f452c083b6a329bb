//! A box is one thing (issue 8): its state cannot split between environments or stores, leak
//! to the processes it starts, or outlive the processes that hold it. Each test pins one of the
//! scenarios that once made devbox mount a box twice, call it stopped while a shell was inside,
//! or delete it in use.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Distinct overlay superblocks (device numbers) that mount `upper`, over every process on the
/// machine: the kernel's own count of how often the box is mounted.
fn overlays_of(upper: &Path) -> BTreeSet<String> {
    let want = format!("upperdir={},", upper.display());
    let mut devs = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path().join("mountinfo")) else {
            continue;
        };
        for l in text.lines().filter(|l| l.contains(&want)) {
            devs.insert(l.split(' ').nth(2).unwrap_or("").to_string());
        }
    }
    devs
}

fn upper(env: &TestEnv, name: &str) -> std::path::PathBuf {
    env.data().join(format!("boxes-v1/{name}/upper"))
}

/// Starts `devbox run BOX -- sleep 300` (or another command) in the background.
fn session(env: &TestEnv, bx: &str, argv: &[&str]) -> Child {
    let mut args = vec!["run", bx, "--"];
    args.extend(argv);
    env.cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until a process named `comm` runs with the box's overlay in its mount table.
fn wait_for_in_box(env: &TestEnv, bx: &str, comm: &str) {
    let want = format!("upperdir={},", upper(env, bx).display());
    wait_until(
        &format!("{comm} to run in box {bx}"),
        Duration::from_secs(10),
        || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == comm)
                    && std::fs::read_to_string(e.path().join("mountinfo"))
                        .is_ok_and(|m| m.contains(&want))
            })
        },
    );
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ended(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_some()
}

fn status_of(env: &TestEnv, bx: &str) -> String {
    let list = env.ok(["list"]);
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(bx))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{bx} not listed:\n{list}"))
        .to_string()
}

/// The mount namespace a command in the box sees.
fn box_mnt_ns(env: &TestEnv, bx: &str, runtime: Option<&Path>) -> String {
    let mut c = env.cmd(["run", bx, "--", "readlink", "/proc/self/ns/mnt"]);
    match runtime {
        Some(r) => c.env("XDG_RUNTIME_DIR", r),
        None => c.env_remove("XDG_RUNTIME_DIR"),
    };
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn xdg_runtime_dir_does_not_split_a_box() {
    let env = TestEnv::new();
    env.busybox("b", &[]);
    let other_rt = env.root.join("run2");
    env.mkdir_as_user(&other_rt);
    std::fs::set_permissions(&other_rt, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut sleeper = session(&env, "b", &["sleep", "300"]);
    wait_for_in_box(&env, "b", "sleep");
    // The same namespaces whatever the environment says: set, unset or different.
    let a = box_mnt_ns(&env, "b", Some(&env.runtime));
    assert_eq!(box_mnt_ns(&env, "b", None), a);
    assert_eq!(box_mnt_ns(&env, "b", Some(&other_rt)), a);
    assert_eq!(overlays_of(&upper(&env, "b")).len(), 1);

    let list = env
        .cmd(["list"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(stdout(&list).contains("running"), "{}", stdout(&list));
    let err = String::from_utf8_lossy(
        &env.cmd(["rm", "b"])
            .env("XDG_RUNTIME_DIR", &other_rt)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(err.contains("box 'b' is running"), "{err}");
    assert!(env.data().join("boxes-v1/b/box.toml").exists());

    let out = env
        .cmd(["stop", "b"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ended 1 session"), "{}", stdout(&out));
    wait_until("the session to end", Duration::from_secs(5), || {
        ended(&mut sleeper)
    });
    assert!(overlays_of(&upper(&env, "b")).is_empty());
    assert_eq!(status_of(&env, "b"), "stopped");
}

#[test]
fn two_stores_with_one_runtime_dir_never_mix() {
    let env = TestEnv::new();
    let store_b = env.home.join("store-b");
    env.mkdir_as_user(&store_b);
    let in_b = |args: &[&str]| {
        env.cmd(args)
            .env("XDG_DATA_HOME", &store_b)
            .output()
            .unwrap()
    };
    env.busybox("b1", &[]);
    let img = fixture("busybox");
    let out = in_b(&["create", img.to_str().unwrap(), "--name", "b1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    env.ok(["run", "b1", "--root", "--", "touch", "/only-in-a"]);
    let mut sleeper = session(&env, "b1", &["sleep", "300"]);
    wait_for_in_box(&env, "b1", "sleep");
    let list = stdout(&in_b(&["list"]));
    assert!(
        list.contains("stopped") && !list.contains("running"),
        "{list}"
    );
    let out = in_b(&["run", "b1", "--", "ls", "/only-in-a"]);
    assert!(!out.status.success(), "store B's b1 entered store A's box");
    let out = in_b(&["rm", "--force", "b1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ended(&mut sleeper), "removing B's b1 stopped A's b1");
    assert_eq!(status_of(&env, "b1"), "running");
    env.ok(["stop", "b1"]);
    wait_until("A's session to end", Duration::from_secs(5), || {
        ended(&mut sleeper)
    });
}

#[test]
fn a_killed_holder_never_leads_to_a_second_overlay() {
    let env = TestEnv::new();
    env.busybox("k", &[]);
    env.busybox("kp", &["--unshare", "pid"]);
    let mut s1 = session(&env, "k", &["sleep", "300"]);
    let mut s2 = session(&env, "kp", &["sleep", "300"]);
    wait_for_in_box(&env, "k", "sleep");
    wait_for_in_box(&env, "kp", "sleep");
    let holder = env.holder_pid().expect("holder");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // The sessions still hold the boxes: list says so, run and rm refuse, nothing is mounted
    // a second time.
    assert_eq!(status_of(&env, "k"), "orphaned");
    assert_eq!(status_of(&env, "kp"), "orphaned");
    for bx in ["k", "kp"] {
        let err = env.fails(125, ["run", bx, "--", "true"]);
        assert!(
            err.contains("still in use") && err.contains(&format!("devbox stop {bx}")),
            "{err}"
        );
        let err = env.fails(1, ["rm", bx]);
        assert!(err.contains("orphaned"), "{err}");
        assert_eq!(overlays_of(&upper(&env, bx)).len(), 1);
    }
    // stop --all ends them, though no holder knows them.
    let out = env.ok(["stop", "--all"]);
    assert!(out.contains("ended 2 sessions"), "{out}");
    wait_until("the sessions to end", Duration::from_secs(5), || {
        ended(&mut s1) && ended(&mut s2)
    });
    assert!(overlays_of(&upper(&env, "k")).is_empty());
    assert!(overlays_of(&upper(&env, "kp")).is_empty());
    assert_eq!(env.sh("kp", "cat /proc/1/comm"), "devbox-init\n");
    assert_eq!(env.sh("k", "echo back"), "back\n");
}

/// The test user's `devbox MODE NAME` helper (`__stop`, `__start`), if one runs.
fn helper_pid(mode: &str, name: &str) -> Option<i32> {
    let want = format!("{mode}\0{name}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&want)
            .then_some(pid)
    })
}

#[test]
fn a_stop_killed_during_its_grace_period_leaves_a_box_in_use_not_a_ghost() {
    let env = TestEnv::new();
    env.busybox("g", &[]);
    env.ok(["run", "g", "--root", "--", "touch", "/marker-of-old-box"]);
    let mut stubborn = session(
        &env,
        "g",
        &["sh", "-c", "trap '' HUP TERM; while :; do sleep 1; done"],
    );
    wait_for_in_box(&env, "g", "sleep");
    let mut stop = env
        .cmd(["stop", "g"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut helper = None;
    wait_until("the stop helper", Duration::from_secs(5), || {
        helper = helper_pid("__stop", "g");
        helper.is_some()
    });
    // Inside its grace period: the session ignored SIGHUP and SIGTERM.
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper.unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = stop.wait();
    assert!(!ended(&mut stubborn));

    assert_eq!(status_of(&env, "g"), "running");
    let err = env.fails(1, ["rm", "g"]);
    assert!(err.contains("is running"), "{err}");
    env.ok(["rm", "--force", "g"]);
    wait_until("the session to end", Duration::from_secs(10), || {
        ended(&mut stubborn)
    });
    assert!(overlays_of(&upper(&env, "g")).is_empty());
    // A new box of the same name is a new box.
    env.busybox("g", &[]);
    let out = env.run(["run", "g", "--", "ls", "/marker-of-old-box"]);
    assert!(!out.status.success(), "the new box 'g' showed the old one");
}

#[test]
fn processes_in_nested_namespaces_do_not_escape_stop() {
    let env = TestEnv::new();
    env.busybox("n", &[]);
    env.ok(["run", "n", "--", "true"]);
    let holder = env.holder_pid().unwrap();
    let box_userns = std::fs::read_link(format!("/proc/{holder}/ns/user")).unwrap();
    let mut nested = session(&env, "n", &["unshare", "-U", "-r", "-m", "sleep", "300"]);
    wait_until("the nested namespace", Duration::from_secs(10), || {
        overlays_of(&upper(&env, "n")).len() == 1
            && std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c == "sleep\n")
                    && std::fs::read_link(e.path().join("ns/user")).is_ok_and(|ns| ns != box_userns)
                    && std::fs::read_to_string(e.path().join("mountinfo"))
                        .is_ok_and(|m| m.contains(&upper(&env, "n").display().to_string()))
            })
    });
    let out = env.ok(["stop", "n"]);
    assert!(out.contains("Stopped box 'n'"), "{out}");
    wait_until("the nested process to end", Duration::from_secs(5), || {
        ended(&mut nested)
    });
    assert!(overlays_of(&upper(&env, "n")).is_empty());
    assert_eq!(status_of(&env, "n"), "stopped");
}

#[test]
fn stop_hangs_up_sessions_first_so_shells_keep_their_history() {
    let env = TestEnv::new();
    env.busybox("h", &[]);
    let mut shell = session(
        &env,
        "h",
        &[
            "sh",
            "-c",
            "trap 'echo got-HUP > $HOME/signal; exit 0' HUP; trap 'echo got-TERM > $HOME/signal; exit 0' TERM; sleep 300 & wait",
        ],
    );
    wait_for_in_box(&env, "h", "sleep");
    let out = env.ok(["stop", "h"]);
    assert!(out.contains("ended 1 session"), "{out}");
    wait_until("the shell to end", Duration::from_secs(5), || {
        ended(&mut shell)
    });
    assert_eq!(
        std::fs::read_to_string(env.home.join("signal")).unwrap(),
        "got-HUP\n"
    );
}

#[test]
fn an_init_whose_starter_was_killed_does_not_stay_behind() {
    let env = TestEnv::new();
    env.busybox("o", &["--unshare", "pid"]);
    env.ok(["run", "o", "--", "true"]); // the holder is up, so the next start is the box's own
    let mut caught = 0;
    for _ in 0..20 {
        env.ok(["stop", "o"]);
        let mut run = env
            .cmd(["run", "o", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut starter = None;
        while starter.is_none() && start.elapsed() < Duration::from_secs(5) && !ended(&mut run) {
            starter = helper_pid("__start", "o");
        }
        let Some(pid) = starter else {
            let _ = run.wait();
            continue;
        };
        // Stopped where it was, then killed: its box processes see the pipe close.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = run.wait();
        caught += 1;
        std::thread::sleep(Duration::from_millis(300));
        // Either the box was persisted before the kill (it runs, with its one init), or
        // nothing of it is left; never an init that nobody can find.
        match status_of(&env, "o").as_str() {
            "running" => assert_eq!(overlays_of(&upper(&env, "o")).len(), 1),
            "stopped" => assert!(overlays_of(&upper(&env, "o")).is_empty()),
            other => panic!("box 'o' is {other} after its starter was killed"),
        }
        assert_eq!(env.sh("o", "cat /proc/1/comm"), "devbox-init\n");
        assert_eq!(overlays_of(&upper(&env, "o")).len(), 1);
    }
    assert!(caught > 0, "never caught the starter running");
}

#[test]
fn helpers_do_not_hold_descriptors_they_inherit() {
    let env = TestEnv::new();
    env.busybox("fd", &[]);
    env.busybox("fdp", &["--unshare", "pid"]);
    let lock = env.home.join("lockfile");
    env.write_as_user(&lock, b"");
    // As the first devbox command of the login: the holder and the box's init start here.
    let out = env
        .raw("sh")
        .arg("-c")
        .arg(format!(
            "( flock 9; {bin} run fd -- true && {bin} run fdp -- true ) 9>{lock}; flock -n {lock} echo free",
            bin = env.bin().display(),
            lock = lock.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "free\n");
    assert!(env.holder_pid().is_some());
    // Nor the caller's working directory.
    let holder = env.holder_pid().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{holder}/cwd")).unwrap(),
        Path::new("/")
    );
}

#[test]
fn a_runtime_dir_or_store_that_others_control_is_refused() {
    let env = TestEnv::new();
    env.busybox("r", &[]);
    assert!(
        is_root(),
        "this test needs root to make a second user's directories: run the suite as root (CI does)"
    );
    let other = other_user("devbox-test2");
    // `su` without `-`: XDG_RUNTIME_DIR is still the other user's.
    let theirs = env.root.join("their-run");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(other.uid), Some(other.gid)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd(["run", "r", "--", "true"])
        .env("XDG_RUNTIME_DIR", &theirs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("another user's session directory") && err.contains("su -"),
        "{err}"
    );

    // A store below a sticky directory that belongs to another user, who could rename it away.
    let sticky = env.root.join("their-sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::os::unix::fs::chown(&sticky, Some(other.uid), Some(other.gid)).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let data = sticky.join("data");
    env.mkdir_as_user(&data);
    let img = fixture("busybox");
    let out = env
        .cmd(["create", img.to_str().unwrap(), "--name", "s"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("belongs to uid {}", other.uid)) && err.contains("hint:"),
        "{err}"
    );
    assert!(!data.join("devbox").exists());
}

#[test]
fn namespaces_left_under_a_name_without_a_box_are_never_entered() {
    let env = TestEnv::new();
    env.busybox("x", &[]);
    env.ok(["run", "x", "--root", "--", "touch", "/marker-of-old-box"]);
    // The box's directory disappears while its namespaces are persisted (by hand, or by a
    // devbox that crashed between the two).
    let dir = env.data().join("boxes-v1/x");
    let out = env
        .cmd(["unshare", "--", "rm", "-rf"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.exists());
    env.busybox("x", &[]);
    let out = env.run(["run", "x", "--", "ls", "/marker-of-old-box"]);
    assert!(
        !out.status.success(),
        "the new box 'x' entered the old one's namespaces"
    );
    assert_eq!(status_of(&env, "x"), "running");
}
