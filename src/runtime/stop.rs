//! Stopping a box: end the processes inside it and release its persisted namespaces.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::runtime::{start, userns};

/// Stops box `name` through the `__stop` helper (namespace work needs a fresh process).
pub fn stop_box(_dirs: &Dirs, name: &str) -> Result<()> {
    let status = crate::runtime::helper("__stop")
        .arg(name)
        .stdin(Stdio::null())
        .status()
        .context("cannot run devbox's stop helper")?;
    if !status.success() {
        bail!("box '{name}' could not be stopped (see the message above)");
    }
    Ok(())
}

/// `devbox __stop NAME`.
pub fn run(name: &str) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let _ = std::fs::remove_file(dirs.box_run_file(name));
    let _ = std::fs::remove_file(dirs.box_hosts_file(name));
    let Some(holder) = Holder::current(&dirs)? else {
        return Ok(());
    };
    userns::join_user(holder.pid)?;
    userns::join_mnt(holder.pid)?;
    let box_ns = dirs.ns_dir().join(name);
    let mnt = box_ns.join("mnt");
    if userns::is_ns_file(&mnt) {
        let ino = std::fs::metadata(&mnt)?.ino();
        end_processes(ino);
    }
    start::clear_ns_dir(&box_ns)?;
    // A fuse-overlayfs box's file system is mounted in the holder's mount namespace: unmounting
    // it there ends its daemon.
    if let Ok(cfg) = crate::state::BoxConfig::load(&dirs, name) {
        if cfg.backend == Some(crate::state::Backend::FuseOverlayfs) {
            let merged = crate::state::BoxPaths::new(&dirs, name).merged;
            let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    Ok(())
}

/// Host pids of the processes whose mount namespace has inode `ino`.
pub fn processes_in(ino: u64) -> Vec<i32> {
    let want = format!("mnt:[{ino}]");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .is_ok_and(|l| l.as_os_str() == want.as_str())
        })
        .collect()
}

/// SIGTERM, a grace period of three seconds, then SIGKILL.
fn end_processes(ino: u64) {
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> = processes_in(ino).into_iter().filter(|p| *p != me).collect();
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pids.retain(|p| kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p));
    }
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
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
