//! Getting into devbox's user namespace: creating one mapped by newuidmap/newgidmap, or joining
//! the holder's. Both must happen in a single-threaded process.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getpid, Gid, Uid};

use crate::idmap::Mapping;
use crate::sys::{self, Forked};

/// Moves the calling process into a new user namespace with the keep-id mapping.
///
/// The map can only be written from the parent namespace, so a helper is forked first; it waits
/// until we have unshared, then runs newuidmap/newgidmap on our pid and reports back.
pub fn unshare_mapped(mapping: &Mapping) -> Result<()> {
    let me = getpid().as_raw() as u32;
    let (go_rx, go_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_rx, err_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match sys::fork()? {
        Forked::Child => {
            drop(go_tx);
            drop(err_rx);
            let mut go = File::from(go_rx);
            let mut byte = [0u8; 1];
            if go.read(&mut byte).unwrap_or(0) != 1 {
                std::process::exit(1);
            }
            if let Err(e) = mapping.apply(me) {
                let _ = File::from(err_tx).write_all(e.to_string().as_bytes());
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        Forked::Parent(helper) => {
            drop(go_rx);
            drop(err_tx);
            let unshared = unshare(CloneFlags::CLONE_NEWUSER);
            if unshared.is_ok() {
                let _ = File::from(go_tx).write_all(b"m");
            } else {
                drop(go_tx);
            }
            let mut msg = String::new();
            let _ = File::from(err_rx).read_to_string(&mut msg);
            let status = waitpid(helper, None);
            if let Err(e) = unshared {
                bail!("{}", userns_refused(e));
            }
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                _ if !msg.is_empty() => bail!("{msg}"),
                other => bail!("the id-mapping helper failed ({other:?})"),
            }
        }
    }
}

/// Explains why the kernel refused a user namespace.
pub fn userns_refused(e: nix::Error) -> String {
    let mut hint = String::from("see `devbox doctor`");
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|v| v.trim() == "0")
    {
        hint = "user namespaces are switched off: `sudo sysctl -w user.max_user_namespaces=15000`"
            .into();
    } else if std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .is_ok_and(|v| v.trim() == "0")
    {
        hint = "unprivileged user namespaces are switched off: `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into();
    } else if std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
        .is_ok_and(|v| v.trim() == "1")
    {
        hint = "AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns=1): install an AppArmor profile for devbox that allows `userns`, or `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`".into();
    }
    format!("the kernel refused to create a user namespace: {e}\n  hint: {hint}")
}

/// Joins the user namespace of process `pid` (the holder).
pub fn join_user(pid: i32) -> Result<()> {
    let fd = open_ns(pid, "user")?;
    // The kernel refuses a multi-threaded caller with EINVAL; so no separate look at
    // /proc/self/status on this path, which every `run` and `enter` takes.
    setns(fd, CloneFlags::CLONE_NEWUSER).map_err(|e| {
        let why = if e == nix::errno::Errno::EINVAL {
            format!(
                " ({e}: the process has more than one thread, or the namespace is not a user namespace that can be joined: internal error)"
            )
        } else {
            format!(": {e}")
        };
        anyhow::anyhow!("cannot join the user namespace of devbox's holder (pid {pid}){why}")
    })
}

/// Joins the mount namespace of process `pid` (call after `join_user`).
pub fn join_mnt(pid: i32) -> Result<()> {
    let fd = open_ns(pid, "mnt")?;
    setns(fd, CloneFlags::CLONE_NEWNS)
        .with_context(|| format!("cannot join the mount namespace of devbox's holder (pid {pid})"))
}

fn open_ns(pid: i32, ns: &str) -> Result<File> {
    let path = format!("/proc/{pid}/ns/{ns}");
    File::open(&path).with_context(|| format!("cannot open {path}"))
}

/// Becomes root (uid 0, gid 0, no supplementary groups) inside the current user namespace.
pub fn become_root() -> Result<()> {
    nix::unistd::setgroups(&[Gid::from_raw(0)]).context("setgroups inside the user namespace")?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .context("setresgid(0) inside the user namespace")?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .context("setresuid(0) inside the user namespace")?;
    // Changing credentials clears the dumpable flag, which would lock the user's own devbox
    // commands out of this process's /proc/PID/ns files. Nothing here is more secret than
    // the user's own processes, so restore it.
    nix::sys::prctl::set_dumpable(true).context("prctl(PR_SET_DUMPABLE)")?;
    Ok(())
}

/// A box's directory of namespace files, opened once. Seen from outside the holder, its path
/// runs through `/proc/HOLDER/root` and about ten more components; each file under it is then
/// found by its name alone instead of by walking that path again, which is most of what a warm
/// `devbox run` spends between reading the box's settings and joining it.
pub struct NsDir(OwnedFd);

impl NsDir {
    /// The directory at `path`; `None` when it does not exist (the box never started).
    pub fn open(path: &Path) -> Option<NsDir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        nix::fcntl::open(path, flags, Mode::empty()).ok().map(NsDir)
    }

    /// True when `ns` is a bind-mounted namespace file rather than the empty placeholder.
    pub fn is_bound(&self, ns: &str) -> bool {
        self.bound_ino(ns).is_some()
    }

    /// The inode of the namespace bound at `ns` (as `/proc/PID/ns/*` links name it), if one is.
    /// A bound file lies on the namespace filesystem, not on the directory's.
    pub fn bound_ino(&self, ns: &str) -> Option<u64> {
        let dir = nix::sys::stat::fstat(&self.0).ok()?;
        let file = nix::sys::stat::fstatat(&self.0, ns, AtFlags::empty()).ok()?;
        (dir.st_dev != file.st_dev).then_some(file.st_ino)
    }

    /// True when a file `ns` is there, bound or not.
    pub fn has(&self, ns: &str) -> bool {
        nix::sys::stat::fstatat(&self.0, ns, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// Opens namespace file `ns`, for `setns`.
    pub fn open_ns(&self, ns: &str) -> nix::Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        nix::fcntl::openat(&self.0, ns, flags, Mode::empty())
    }
}

/// unshare(2), run on the lowest CPU this process may use.
///
/// A mount-namespace file can be bind-mounted only into a mount namespace with a smaller id
/// (the kernel's loop check), and the kernel hands out namespace ids in per-CPU batches, so two
/// namespaces made on different CPUs can be numbered against their order of creation. Making
/// the holder's and every box's mount namespace on the same CPU keeps the ids in order. The
/// previous CPU affinity is restored right after, so nothing in the box stays pinned.
pub fn unshare_ordered(flags: CloneFlags) -> nix::Result<()> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    let me = nix::unistd::Pid::from_raw(0);
    let saved = sched_getaffinity(me).ok();
    if let Some(cpu) = saved
        .as_ref()
        .and_then(|set| (0..CpuSet::count()).find(|&c| set.is_set(c).unwrap_or(false)))
    {
        let mut one = CpuSet::new();
        if one.set(cpu).is_ok() {
            let _ = sched_setaffinity(me, &one);
        }
    }
    let result = unshare(flags);
    if let Some(set) = saved {
        let _ = sched_setaffinity(me, &set);
    }
    result
}
