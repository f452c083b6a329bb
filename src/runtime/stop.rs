//! Stopping a box: end every process that keeps it mounted, then release its persisted
//! namespaces.
//!
//! The processes are found by the kernel's mount tables (`inuse`), not by records: the box's own
//! mount namespace, nested copies of it (`unshare -m`, sandboxes), and a box whose holder died.
//! Sessions get SIGHUP first (shells save their history and exit), then SIGTERM, then SIGKILL
//! after the grace period; a box's init goes last, since its end kills the rest of its pid
//! namespace at once. The records go last of all, so a stop that is itself killed leaves a box
//! that still looks in use, and the next stop finishes the work.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::paths::{Dirs, Lock};
use crate::runtime::holder::Holder;
use crate::runtime::inuse::Scan;
use crate::runtime::{start, userns};
use crate::state::BoxPaths;

/// How long processes get after SIGHUP, and then after SIGTERM, before the next signal.
const AFTER_HUP: Duration = Duration::from_millis(1500);
const AFTER_TERM: Duration = Duration::from_millis(1500);

/// What a stop did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stopped {
    /// Sessions ended: processes in the box whose parent is outside it.
    pub sessions: usize,
}

/// The lock that serialises starting, stopping and removing one box, in the box's directory.
/// `None` when the box has no directory (namespaces left behind by a removed box).
pub fn box_lock(dirs: &Dirs, name: &str) -> Result<Option<Lock>> {
    if !dirs.box_dir(name).is_dir() {
        return Ok(None);
    }
    Lock::acquire(&dirs.box_lock_file(name), &format!("box '{name}'"), 60).map(Some)
}

/// Stops box `name`, taking its lock.
pub fn stop_box(dirs: &Dirs, name: &str) -> Result<Stopped> {
    let _lock = box_lock(dirs, name)?;
    stop_locked(name)
}

/// Stops box `name` through the `__stop` helper (namespace work needs a fresh process); the
/// caller holds the box's lock.
pub fn stop_locked(name: &str) -> Result<Stopped> {
    let out = crate::runtime::helper("__stop")
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .current_dir("/")
        .output()
        .context("cannot run devbox's stop helper")?;
    if !out.status.success() {
        bail!("box '{name}' could not be stopped (see the message above)");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sessions = text
        .lines()
        .find_map(|l| l.strip_prefix("sessions "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Ok(Stopped { sessions })
}

/// `devbox __stop NAME`: prints `sessions N` on success.
pub fn run(name: &str) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let holder = Holder::current(&dirs)?;
    let paths = BoxPaths::new(&dirs, name);
    let box_ns = holder.map(|h| crate::runtime::box_ns_path(&dirs, &h, name));
    // The box's own mount namespace as persisted in the holder, which may hold processes even
    // where its overlay no longer shows (a half-built start).
    let bound = box_ns
        .as_deref()
        .and_then(userns::NsDir::open)
        .and_then(|d| d.bound_ino("mnt"))
        .map(|ino| format!("mnt:[{ino}]"));
    let init = start::RunRecord::load(&dirs, name)
        .filter(|r| r.init_pid > 0 && r.init_alive())
        .map(|r| r.init_pid);

    // What the box was started with goes first: a stop cut short leaves a box that says
    // nothing about a pending restart rather than a stopped box that claims one.
    let _ = std::fs::remove_file(crate::state::StartedWith::path(&dirs, name));
    let me = std::process::id() as i32;
    let in_box = |scan: &Scan| {
        let mut pids = scan.users(&paths.upper, &paths.merged).pids;
        if let Some(ns) = &bound {
            pids.extend(scan.in_namespace(ns));
        }
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| *p != me && Some(*p) != init);
        pids
    };
    let mut sessions = None;
    // SIGKILL is repeated: a process may fork between a look at /proc and the signal (a shell
    // loop starting its next command), and its child must not be left holding the box.
    let kills = std::iter::repeat((Signal::SIGKILL, Duration::from_millis(500))).take(10);
    for (sig, grace) in [(Signal::SIGHUP, AFTER_HUP), (Signal::SIGTERM, AFTER_TERM)]
        .into_iter()
        .chain(kills)
    {
        let pids = in_box(&Scan::take());
        if sessions.is_none() {
            sessions = Some(count_sessions(&pids));
        }
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), sig);
        }
        wait_gone(pids, grace);
    }
    if let Some(init) = init {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
        wait_gone(vec![init], Duration::from_secs(5));
    }
    let scan = Scan::take();
    let users = scan.users(&paths.upper, &paths.merged);
    let left = in_box(&scan);
    if !left.is_empty() {
        bail!(
            "box '{name}' is still held by {} process(es) that did not end on SIGKILL: {}\n  hint: they may be stuck in the kernel (D state, e.g. a hung network file system); see `ps -o pid,stat,wchan,cmd -p {}`",
            left.len(),
            join(&left),
            join(&left)
        );
    }

    match holder {
        Some(h) => {
            // The persisted namespaces and a fuse-overlayfs mount live in the holder's mount
            // namespace: release them there (unmounting fuse-overlayfs ends its daemon).
            userns::join_user(h.pid)?;
            userns::join_mnt(h.pid)?;
            start::clear_ns_dir(&dirs.ns_dir().join(name))?;
            let _ = nix::mount::umount2(&paths.merged, nix::mount::MntFlags::MNT_DETACH);
        }
        None => {
            // The holder died: a fuse-overlayfs daemon of this box may still serve the box's
            // directories, alone in the dead holder's namespace. End it.
            for p in users.daemon_ns {
                if is_fuse_daemon_of(p, &paths.upper) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
                    wait_gone(vec![p], Duration::from_secs(3));
                }
            }
        }
    }
    let _ = std::fs::remove_file(dirs.box_hosts_file(name));
    let _ = std::fs::remove_file(dirs.box_run_file(name));
    println!("sessions {}", sessions.unwrap_or(0));
    Ok(())
}

/// Processes of `pids` whose parent is not among them: where sessions entered the box.
fn count_sessions(pids: &[i32]) -> usize {
    pids.iter()
        .filter(|p| parent(**p).is_some_and(|pp| !pids.contains(&pp)))
        .count()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

pub fn is_fuse_daemon_of(pid: i32, upper: &std::path::Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!(
        "upperdir={},",
        crate::runtime::rootfs::escape_overlay(upper)
    );
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.first()
        .is_some_and(|a0| a0.ends_with(b"fuse-overlayfs"))
        && args
            .iter()
            .any(|a| String::from_utf8_lossy(a).contains(&want))
}

fn join(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until none of `pids` lives (zombies count as gone), at most `limit`.
fn wait_gone(mut pids: Vec<i32>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !pids.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pids.retain(|p| kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3))
                .map(|c| c == "Z")
        })
        .unwrap_or(true)
}
