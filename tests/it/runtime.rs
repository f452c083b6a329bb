//! Boxes end to end: mapping, home and cwd, exit codes, persistence, namespaces, stop/rm.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use crate::harness::*;

fn host_uid() -> u32 {
    test_user()
        .map(|u| u.uid)
        .unwrap_or_else(|| nix::unistd::getuid().as_raw())
}

fn host_name() -> String {
    test_user()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_default())
}

#[test]
fn ids_map_keep_id_and_root_is_a_subordinate_id() {
    let env = TestEnv::new();
    env.busybox("bb", &[]);
    let out = env.sh("bb", "id -u; id -un; id -g");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_uid().to_string());
    assert_eq!(lines[1], host_name());
    assert_eq!(env.sh("bb", "id -u").trim(), host_uid().to_string());

    // --root: uid 0 inside; a chown to 42 lands as subuid+42 on the host.
    let out = env.ok([
        "run",
        "bb",
        "--root",
        "--",
        "sh",
        "-c",
        "id -u; touch /owned42; chown 42:42 /owned42",
    ]);
    assert_eq!(out.trim(), "0");
    let f = env.data().join("boxes-v1/bb/upper/owned42");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.uid(), subuid_start() + 42);
    // In-box root's files belong to the first subordinate id.
    let etc = std::fs::metadata(env.data().join("boxes-v1/bb/upper/etc")).unwrap();
    assert_eq!(etc.uid(), subuid_start());
}

#[test]
fn home_cwd_hostname_and_container_markers() {
    let env = TestEnv::new();
    env.busybox("hb", &[]);
    let proj = env.home.join("proj");
    env.mkdir_as_user(&proj);
    let out = env
        .cmd(["run", "hb", "--", "sh", "-c", "pwd; hostname; echo made > $HOME/from-box; cat /run/.containerenv; echo $DEVBOX_NAME; echo $PATH"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], proj.display().to_string());
    assert_eq!(lines[1], "hb");
    assert!(
        s.contains("engine=\"devbox\"") && s.contains("name=\"hb\""),
        "{s}"
    );
    assert!(s.contains("\nhb\n"));
    assert!(s.contains("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    // The home is the host's: the file is there, owned by the user.
    let m = std::fs::metadata(env.home.join("from-box")).unwrap();
    assert_eq!(m.uid(), host_uid());

    // A working directory that does not exist in the box: $HOME, with a one-line warning.
    let out = env
        .cmd(["run", "hb", "--", "pwd"])
        .current_dir("/var/cache")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), env.home.display().to_string());
    let err = stderr(&out);
    assert!(
        err.contains("/var/cache") && err.lines().count() == 1,
        "{err}"
    );

    // resolv.conf and hosts follow the host.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(
        env.ok(["run", "hb", "--", "cat", "/etc/resolv.conf"]),
        host_resolv
    );
    // The host root is at /run/host; the host /tmp is shared.
    assert!(env
        .sh("hb", "ls /run/host/etc/hostname && ls -d /tmp")
        .contains("/run/host/etc/hostname"));
    let marker = env.root.join("tmp-marker");
    std::fs::write(&marker, "x").unwrap();
    env.ok([
        "run",
        "hb",
        "--",
        "test",
        "-f",
        &marker.display().to_string(),
    ]);
    // So is $XDG_RUNTIME_DIR (Wayland, audio and D-Bus sockets live there).
    env.write_as_user(&env.runtime.join("socket-stand-in"), b"");
    env.ok([
        "run",
        "hb",
        "--",
        "sh",
        "-c",
        "test -f \"$XDG_RUNTIME_DIR/socket-stand-in\"",
    ]);
}

#[test]
fn environment_passes_through_selected_variables_only() {
    let env = TestEnv::new();
    env.busybox("ev", &[]);
    let out = env
        .cmd([
            "run",
            "ev",
            "--",
            "sh",
            "-c",
            "echo T=$TERM L=$LANG S=$SECRET_THING D=$DISPLAY",
        ])
        .env("SECRET_THING", "leak")
        .env("DISPLAY", ":7")
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "T=xterm-256color L=C.UTF-8 S= D=:7");
}

#[test]
fn exit_codes_pass_through() {
    let env = TestEnv::new();
    env.busybox("ex", &[]);
    let code = |args: &[&str]| env.run(args).status.code();
    assert_eq!(code(&["run", "ex", "--", "true"]), Some(0));
    assert_eq!(code(&["run", "ex", "--", "sh", "-c", "exit 2"]), Some(2));
    assert_eq!(code(&["run", "ex", "--", "sh", "-c", "exit 77"]), Some(77));
    assert_eq!(code(&["run", "ex", "--", "no-such-command"]), Some(127));
    env.ok([
        "run",
        "ex",
        "--root",
        "--",
        "sh",
        "-c",
        "echo 'echo hi' > /noexec; chmod 644 /noexec",
    ]);
    assert_eq!(code(&["run", "ex", "--", "/noexec"]), Some(126));
    let err = env.fails(127, ["run", "ex", "--", "no-such-command"]);
    assert!(err.contains("not found in box 'ex'"), "{err}");
    // devbox itself failing before the command: 125.
    let err = env.fails(125, ["run", "nosuchbox", "--", "true"]);
    assert!(err.contains("no box named 'nosuchbox'"), "{err}");
    // A command killed by a signal: the caller's shell sees 128+N.
    let out = env
        .raw("sh")
        .arg("-c")
        .arg(format!(
            "{} run ex -- sh -c 'kill -TERM $$'; echo status=$?",
            env.bin().display()
        ))
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("status=143"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // SIGPIPE is default inside (devbox itself ignores it, the box must not inherit that).
    assert_eq!(env.sh("ex", "yes | head -n 1").trim(), "y");
    let status = env.ok(["run", "ex", "--", "cat", "/proc/self/status"]);
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap()
        .trim()
        .to_string();
    let mask = u64::from_str_radix(&ignored, 16).unwrap();
    assert_eq!(
        mask & (1 << (13 - 1)),
        0,
        "SIGPIPE is not ignored in the box (SigIgn {ignored})"
    );
    // Usage errors exit 2.
    env.fails(2, ["run", "ex"]);
    env.fails(2, ["frobnicate"]);
}

#[test]
fn pipes_pass_straight_through() {
    let env = TestEnv::new();
    env.busybox("pp", &[]);
    let mut child = env
        .cmd(["run", "pp", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi through the box\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "hi through the box\n");
    let out = env
        .cmd(["run", "pp", "--", "sh", "-c", "echo err >&2; echo out"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
}

#[test]
fn namespaces_persist_until_stop_and_the_upper_layer_persists_after() {
    let env = TestEnv::new();
    env.busybox("ps", &[]);
    // A mount and a hostname made inside live in the box's namespaces: a second run sees them.
    env.ok(["run", "ps", "--root", "--", "sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && touch /mnt/t/in-ns && hostname renamed && echo kept > /etc/kept"]);
    assert_eq!(env.sh("ps", "ls /mnt/t; hostname"), "in-ns\nrenamed\n");
    let list = env.ok(["list"]);
    assert!(list.contains("ps") && list.contains("running"), "{list}");
    env.ok(["stop", "ps"]);
    let list = env.ok(["list"]);
    assert!(list.contains("stopped"), "{list}");
    // After stop: new namespaces (no mount, the name again), same upper layer.
    assert_eq!(
        env.sh("ps", "ls /mnt/t; hostname; cat /etc/kept"),
        "ps\nkept\n"
    );
}

#[test]
fn isolation_flags_give_own_namespaces() {
    let env = TestEnv::new();
    env.busybox("shared", &[]);
    env.busybox("iso", &["--unshare", "net,pid", "--unshare", "ipc"]);
    let host_ns = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    let ns = |bx: &str, ns: &str| {
        env.ok(["run", bx, "--", "readlink", &format!("/proc/self/ns/{ns}")])
            .trim()
            .to_string()
    };
    for n in ["net", "pid", "ipc"] {
        assert_eq!(ns("shared", n), host_ns(n), "{n} is shared by default");
        assert_ne!(ns("iso", n), host_ns(n), "{n} is isolated");
    }
    // Own network: loopback only, and up.
    let dev = env.sh("iso", "cat /proc/net/dev");
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
    let lo = env.sh("iso", "ip link show lo");
    assert!(lo.contains("UP"), "loopback is up: {lo}");
    // Own pid namespace: an init as pid 1 that is not the command, and which stays up.
    let out = env.sh("iso", "echo $$; cat /proc/1/comm");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1");
    assert_eq!(lines[1], "devbox-init");
    env.sh("iso", "sleep 0 & wait");
    assert_eq!(env.sh("iso", "cat /proc/1/comm").trim(), "devbox-init");
    // Two runs share the pid namespace.
    assert_eq!(ns("iso", "pid"), ns("iso", "pid"));
}

#[test]
fn stale_holder_and_dead_init_are_detected_and_cleaned_up() {
    let env = TestEnv::new();
    env.busybox("st", &[]);
    env.busybox("sp", &["--unshare", "pid"]);
    env.ok(["run", "st", "--", "true"]);
    env.ok(["run", "sp", "--", "true"]);
    let pid = env.holder_pid().expect("holder pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let list = env.ok(["list"]);
    assert!(!list.contains("running"), "{list}");
    assert_eq!(env.sh("st", "echo back"), "back\n");
    assert_ne!(env.holder_pid(), Some(pid));

    // The init of a pid-namespace box killed: the next run notices and starts it afresh.
    env.ok(["run", "sp", "--", "true"]);
    let rec = std::fs::read_to_string(env.data().join("boxes-v1/sp/run")).unwrap();
    let init: i32 = rec.split_whitespace().next().unwrap().parse().unwrap();
    assert!(init > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(env.sh("sp", "cat /proc/1/comm"), "devbox-init\n");
}

#[test]
fn two_boxes_from_one_image_share_its_files() {
    let env = TestEnv::new();
    env.busybox("one", &[]);
    env.busybox("two", &[]);
    let images: Vec<_> = std::fs::read_dir(env.data().join("images-v1"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1, "one store entry");
    let ino = |b: &str| {
        env.ok(["run", b, "--", "stat", "-c", "%i", "/bin/busybox"])
            .trim()
            .to_string()
    };
    let host = std::fs::metadata(images[0].path().join("rootfs/bin/busybox"))
        .unwrap()
        .ino();
    assert_eq!(ino("one"), host.to_string());
    assert_eq!(ino("two"), host.to_string());
    // Changes stay in each box's own layer.
    env.ok(["run", "one", "--root", "--", "touch", "/only-in-one"]);
    env.fails(1, ["run", "two", "--", "test", "-e", "/only-in-one"]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(["list", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["image_id"], rows[1]["image_id"]);
    for key in ["name", "image", "status", "created", "disk_bytes"] {
        assert!(rows[0].get(key).is_some(), "list --json has {key}");
    }
    assert!(rows[0]["disk_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn names_are_checked_and_default_from_the_image() {
    let env = TestEnv::new();
    let img = fixture("busybox");
    for bad in ["-x", "a/b", "has space", &"x".repeat(65)] {
        let err = env.fails(
            1,
            ["create", img.to_str().unwrap(), &format!("--name={bad}")],
        );
        assert!(err.contains("starts with a letter or digit"), "{err}");
    }
    env.ok(["create", img.to_str().unwrap()]);
    assert!(env.ok(["list"]).contains("busybox-rootfs"));
    // Exactly one box: enter/run may omit the name.
    assert_eq!(env.ok(["run", "--", "hostname"]).trim(), "busybox-rootfs");
    let err = env.fails(1, ["create", img.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    env.busybox("second", &[]);
    let err = env.fails(125, ["run", "--", "true"]);
    assert!(
        err.contains("busybox-rootfs") && err.contains("second"),
        "{err}"
    );
}

#[test]
fn rm_refuses_running_boxes_without_force_and_leaves_home_alone() {
    let env = TestEnv::new();
    env.busybox("gone", &[]);
    env.write_as_user(&env.home.join("precious"), b"keep me");
    env.ok([
        "run",
        "gone",
        "--root",
        "--",
        "sh",
        "-c",
        "mkdir -p /root/deep && touch /root/deep/f && chmod 000 /root/deep",
    ]);
    let err = env.fails(1, ["rm", "gone"]);
    assert!(err.contains("running") && err.contains("--force"), "{err}");
    env.ok(["rm", "--force", "gone"]);
    assert!(!env.data().join("boxes-v1/gone").exists());
    let left: Vec<_> = std::fs::read_dir(env.data().join("boxes-v1"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing left in boxes-v1");
    assert_eq!(
        std::fs::read(env.home.join("precious")).unwrap(),
        b"keep me"
    );
    env.busybox("stopped", &[]);
    env.ok(["rm", "stopped"]);
    env.fails(1, ["rm", "stopped"]);
}

#[test]
fn unshare_runs_host_commands_as_namespace_root() {
    let env = TestEnv::new();
    env.busybox("us", &[]);
    env.ok([
        "run",
        "us",
        "--root",
        "--",
        "sh",
        "-c",
        "touch /f42 && chown 42 /f42",
    ]);
    let upper = env.data().join("boxes-v1/us/upper/f42");
    let out = env.ok(["unshare", "--", "stat", "-c", "%u", upper.to_str().unwrap()]);
    assert_eq!(out.trim(), "42");
    assert_eq!(env.ok(["unshare", "--", "id", "-u"]).trim(), "0");
    env.ok(["unshare", "--", "rm", upper.to_str().unwrap()]);
    assert!(!upper.exists());
}

#[test]
fn runtime_dir_is_private_and_other_users_cannot_enter() {
    let env = TestEnv::new();
    env.busybox("mine", &[]);
    env.ok(["run", "mine", "--", "true"]);
    let rt = std::fs::metadata(env.data().join("run")).unwrap();
    assert_eq!(rt.mode() & 0o777, 0o700);
    let data = std::fs::metadata(env.data()).unwrap();
    assert_eq!(data.mode() & 0o777, 0o700);
    if !is_root() {
        return;
    }
    // Another user pointing devbox at this user's directories gets nowhere.
    let other = other_user("devbox-test2");
    let out = env
        .cmd(["run", "mine", "--", "true"])
        .uid(other.uid)
        .gid(other.gid)
        .env("USER", &other.name)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("Permission denied")
            || err.contains("not to you")
            || err.contains("belongs to"),
        "{err}"
    );
    // Not even the kernel interfaces: the holder's namespaces are closed to them.
    let pid = env.holder_pid().unwrap();
    let out = env
        .raw("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-U",
            "-m",
            "--preserve-credentials",
            "true",
        ])
        .uid(other.uid)
        .gid(other.gid)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn missing_subordinate_ids_are_explained() {
    if !is_root() {
        return;
    }
    let env = TestEnv::new();
    let nosub = other_user("devbox-nosub");
    std::os::unix::fs::chown(&env.home, Some(nosub.uid), Some(nosub.gid)).unwrap();
    std::os::unix::fs::chown(&env.runtime, Some(nosub.uid), Some(nosub.gid)).unwrap();
    let img = fixture("busybox");
    let out = env
        .cmd(["create", img.to_str().unwrap()])
        .uid(nosub.uid)
        .gid(nosub.gid)
        .env("USER", &nosub.name)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no entry in /etc/subuid") && err.contains("usermod --add-subuids"),
        "{err}"
    );
}

use std::os::unix::process::CommandExt;

#[test]
fn fuse_overlayfs_backend_is_recorded_and_kept() {
    // The kernel here allows overlayfs in a user namespace, so the fallback is forced; the
    // fallback needs a usable /dev/fuse (tests/setup.sh makes it world-writable).
    assert!(
        nix::unistd::access(
            "/dev/fuse",
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK
        )
        .is_ok()
            || is_root(),
        "/dev/fuse is not usable: run `sudo chmod 0666 /dev/fuse` (tests/setup.sh does)"
    );
    let env = TestEnv::new();
    env.busybox("fz", &[]);
    let out = env
        .cmd([
            "run",
            "fz",
            "--root",
            "--",
            "sh",
            "-c",
            "grep ' / ' /proc/mounts; echo x > /etc/f; chown 42 /etc/f; rm /bin/vi",
        ])
        .env("DEVBOX_OVERLAY", "fuse-overlayfs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("fuse-overlayfs"), "{}", stdout(&out));
    let cfg = std::fs::read_to_string(env.data().join("boxes-v1/fz/box.toml")).unwrap();
    assert!(cfg.contains("backend = \"fuse-overlayfs\""), "{cfg}");
    env.ok(["stop", "fz"]);
    // Started again without the override: the recorded backend is used, the changes are there.
    let out = env.sh(
        "fz",
        "grep ' / ' /proc/mounts; cat /etc/f; test -e /bin/vi || echo vi-gone",
    );
    assert!(
        out.contains("fuse-overlayfs") && out.contains("x\n") && out.contains("vi-gone"),
        "{out}"
    );
    let m = std::fs::metadata(env.data().join("boxes-v1/fz/upper/etc/f")).unwrap();
    assert_eq!(m.uid(), subuid_start() + 42);
}

#[test]
fn an_interrupted_create_leaves_nothing_that_looks_real() {
    let env = TestEnv::new();
    let img = fixture("debian");
    let mut child = env
        .cmd(["create", img.to_str().unwrap(), "--name", "cut"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let images = env.data().join("images-v1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let unpacking = || {
        std::fs::read_dir(&images)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
            .unwrap_or(false)
    };
    while !unpacking() {
        assert!(
            std::time::Instant::now() < deadline,
            "the unpack never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!env.data().join("boxes-v1/cut").exists());
    let complete: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        complete.is_empty(),
        "no image entry after an interrupted unpack"
    );
    assert!(env.ok(["list"]).contains("No boxes"));
    // The next create cleans up and succeeds.
    env.ok(["create", img.to_str().unwrap(), "--name", "cut"]);
    let temps = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temps, 0);
    assert_eq!(
        env.sh("cut", "cat /etc/debian_version")
            .trim()
            .split('.')
            .next(),
        Some("12")
    );
}

#[test]
fn a_missing_newuidmap_is_explained() {
    let env = TestEnv::new();
    let img = fixture("busybox");
    let out = env
        .cmd(["create", img.to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("newuidmap not found") && err.contains("apt install uidmap"),
        "{err}"
    );
    assert!(!env.data().join("boxes-v1/busybox-rootfs").exists());
}

#[test]
fn pid_namespace_init_reaps_orphans() {
    let env = TestEnv::new();
    env.busybox("reap", &["--unshare", "pid"]);
    // A grandchild orphaned by its parent is reparented to the box's init, which must reap it.
    env.sh("reap", "(sleep 0.2 &) ; true");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let states = env.sh("reap", "cat /proc/[0-9]*/stat");
    let zombies: Vec<&str> = states
        .lines()
        .filter(|l| {
            l.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
}

/// devbox started with stdout or stderr closed (a cron job, `cmd >&-`) has them taken by
/// /dev/null, as any program should: its messages land nowhere instead of in a file it opens,
/// and the command of a session inherits /dev/null rather than a closed descriptor.
#[test]
fn closed_standard_descriptors_are_dev_null_in_devbox_and_the_session() {
    let env = TestEnv::new();
    env.busybox("fds", &[]);
    for fd in ["1", "2"] {
        // `test -c` is true for /dev/null, false for a closed descriptor (no such path).
        let out = env
            .raw("/bin/sh")
            .arg("-c")
            .arg(format!(
                "exec \"$0\" run fds -- /bin/busybox test -c /proc/self/fd/{fd} {fd}>&-"
            ))
            .arg(env.bin())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fd {fd} closed: {:?}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }
}

/// Every process devbox starts loads only the C library: no libgcc_s (build.rs links the
/// unwinder statically) and no libm (`sys::pow`). Each extra library is mapped, relocated and
/// initialised at every start, and libgcc_s's initialiser alone cost a warm `devbox run` about
/// 80 µs on a virtual machine (bench/README.md, "Start-up cost").
#[test]
fn the_binary_needs_only_the_c_library() {
    let out = std::process::Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_devbox")])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run readelf: {e}; install binutils (Debian: apt-get install binutils)")
        });
    assert!(out.status.success(), "readelf failed: {}", stderr(&out));
    let needed: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect();
    let extra: Vec<&String> = needed
        .iter()
        .filter(|n| *n != "libc.so.6" && !n.starts_with("ld-linux"))
        .collect();
    assert!(
        extra.is_empty(),
        "devbox needs {extra:?} besides the C library (all: {needed:?}); libgcc_s comes back when \
         build.rs finds no libgcc_eh.a (install gcc), libm when a new caller of a math function \
         other than pow appears"
    );
}
