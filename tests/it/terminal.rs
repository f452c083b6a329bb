//! An interactive session on a real pseudo-terminal, in a box made from the Debian fixture:
//! job control, Ctrl-C, Ctrl-Z, the tty's name and size, the exit status, and hangup.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A program on the slave side of a new pseudo-terminal (also used by `completions` and `ui`).
pub struct Pty {
    master: std::fs::File,
    /// Kept to resize the terminal from outside, as a terminal emulator does.
    slave: OwnedFd,
    pub seen: String,
    child: Child,
}

impl Pty {
    /// `devbox ARGS` as the session leader of a new pty (util-linux `setsid -c` makes it the
    /// controlling terminal; `-w` passes the exit status through).
    fn spawn(env: &TestEnv, args: &[&str]) -> Pty {
        let mut cmd = env.raw("setsid");
        cmd.args(["-w", "-c"]).arg(env.bin()).args(args);
        Pty::start(cmd)
    }

    /// Runs `cmd` (usually `setsid -w -c PROGRAM ...`, so the pty becomes its controlling
    /// terminal) with stdin, stdout and stderr on a new 40x100 pty.
    pub fn start(mut cmd: std::process::Command) -> Pty {
        let ws = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        // openpty(3) does not set close-on-exec: without it the session would inherit the
        // master and never see its terminal close.
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        let child = cmd.spawn().unwrap();
        // Non-blocking reads from this thread only, so dropping `master` really closes the
        // terminal (a reader thread would keep a descriptor open).
        let flags = nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let master = std::fs::File::from(pty.master);
        Pty {
            master,
            slave,
            seen: String::new(),
            child,
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.master.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    pub fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Waits until `needle` has appeared in the output since the last call; returns that output.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.pump();
            if let Some(i) = self.seen.find(needle) {
                let upto = i + needle.len();
                let out = self.seen[..upto].to_string();
                self.seen.replace_range(..upto, "");
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; output so far:\n{}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            self.pump();
            assert!(
                Instant::now() < deadline,
                "session did not end: {}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn interactive_session_on_a_pty() {
    let env = TestEnv::new();
    let img = fixture("debian");
    env.ok(["create", img.to_str().unwrap(), "--name", "deb"]);

    // What a login shell reads is read (the user's ~/.profile), and the prompt, set after it,
    // marks the box.
    env.write_as_user(&env.home.join(".profile"), b"export FROM_PROFILE=read\n");
    let mut t = Pty::spawn(&env, &["enter", "deb"]);
    let out = t.expect("\u{2b22} ");
    assert!(out.contains("\u{2b22} "), "the box's prompt: {out}");
    t.send("echo READY-$((20+22)); tty; stty size; echo SHELL=$0 PROFILE=$FROM_PROFILE\n");
    let out = t.expect("READY-42");
    let _ = out;
    let out = t.expect("SHELL=");
    let _ = out;
    let out = t.expect("\n");
    assert!(
        out.contains("bash PROFILE=read"),
        "bash with the login files read: {out}"
    );
    // The name of the caller's tty, and its size, are the same inside.
    t.send("echo TTY=$(tty) SIZE=$(stty size)\n");
    let out = t.expect("SIZE=40 100");
    assert!(out.contains("TTY=/dev/pts/"), "{out}");

    // The window size follows the terminal: resize it from outside while the shell runs.
    let resized = std::process::Command::new("stty")
        .args(["rows", "50", "cols", "120"])
        .stdin(Stdio::from(t.slave.try_clone().unwrap()))
        .status()
        .unwrap();
    assert!(resized.success());
    t.send("echo NEWSIZE=$(stty size)\n");
    t.expect("NEWSIZE=50 120");

    // Ctrl-C reaches the foreground job inside, not devbox.
    t.send("sleep 30\n");
    std::thread::sleep(Duration::from_millis(500));
    t.send("\x03");
    t.send("echo RC=$?\n");
    t.expect("RC=130");

    // Ctrl-Z stops it; job control works.
    t.send("sleep 31\n");
    std::thread::sleep(Duration::from_millis(500));
    t.send("\x1a");
    t.expect("Stopped");
    t.send("jobs; kill %1; echo JOBS-DONE\n");
    let out = t.expect("JOBS-DONE");
    assert!(out.contains("sleep 31"), "{out}");

    // The shell's exit status is devbox's.
    t.send("exit 7\n");
    let st = t.wait();
    assert_eq!(st.code(), Some(7), "{}", t.seen);

    // Closing the terminal ends the session: no orphaned shell stays behind.
    let mut t = Pty::spawn(&env, &["enter", "deb"]);
    t.send("echo PID=$$ $((500+5))END\n");
    let out = t.expect(" 505END");
    let pid: i32 = out
        .rsplit("PID=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let Pty {
        master,
        slave,
        child,
        ..
    } = t;
    drop(slave);
    drop(master);
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
            !st.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    while running(pid) {
        assert!(
            Instant::now() < deadline,
            "shell {pid} outlived its terminal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();

    // Without a tty, nothing allocates one.
    let out = env.ok(["run", "deb", "--", "sh", "-c", "tty || true"]);
    assert_eq!(out.trim(), "not a tty");

    // In-box root can install with dpkg/apt tools (setgroups works for apt's privilege drop).
    let out = env.ok(["run", "deb", "--root", "--", "sh", "-c", "id -u; useradd -m builder && id -u builder; chown builder /tmp 2>/dev/null; apt-config dump >/dev/null && echo APT-OK"]);
    assert!(out.contains("APT-OK"), "{out}");
}
