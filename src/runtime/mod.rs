//! The runtime: the holder, starting boxes, joining them, stopping them.

pub mod holder;
pub mod hooks;
pub mod inuse;
pub mod join;
pub mod rootfs;
pub mod start;
pub mod stop;
pub mod userns;

/// A command running one of devbox's internal helper modes (`__start`, `__unpack`, ...) from the
/// same binary, freshly exec'd and therefore single-threaded.
pub fn helper(mode: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("devbox").arg(mode);
    crate::ui::pass_on(&mut cmd);
    cmd
}

/// Where box `name`'s namespace files are, seen from outside the holder.
pub fn box_ns_path(
    dirs: &crate::paths::Dirs,
    holder: &holder::Holder,
    name: &str,
) -> std::path::PathBuf {
    let ns = dirs.ns_dir().join(name);
    std::path::PathBuf::from(format!("/proc/{}/root", holder.pid))
        .join(ns.strip_prefix("/").unwrap_or(&ns))
}

/// True when the box's namespaces are persisted and, with a pid namespace, its init lives.
pub fn is_bound(dirs: &crate::paths::Dirs, box_ns: &std::path::Path, name: &str) -> bool {
    userns::NsDir::open(box_ns).is_some_and(|d| is_bound_at(dirs, &d, name))
}

/// `is_bound` for the box's namespace directory, already open.
pub fn is_bound_at(dirs: &crate::paths::Dirs, box_ns: &userns::NsDir, name: &str) -> bool {
    if !box_ns.is_bound("mnt") {
        return false;
    }
    // Only a box with its own pid namespace (as started, whatever its settings say now) has an
    // init that can die under it.
    !box_ns.has("pid") || start::RunRecord::load(dirs, name).is_some_and(|r| r.init_alive())
}

/// What a box is doing, as far as the kernel is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Stopped,
    /// Persisted in the holder: sessions join it.
    Running,
    /// Not persisted in the holder (it died, or a stop was cut short) but processes still keep
    /// the box's overlay mounted: it cannot be started again until they end (`devbox stop`).
    Orphaned,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Stopped => "stopped",
            Status::Running => "running",
            Status::Orphaned => "orphaned",
        }
    }

    /// Something holds the box: it may not be removed or started anew.
    pub fn in_use(self) -> bool {
        self != Status::Stopped
    }
}

/// The status of box `name`: persisted in the store's holder, or held by any process's mount
/// table (`scan`), whatever the records say.
pub fn status(
    dirs: &crate::paths::Dirs,
    holder: Option<&holder::Holder>,
    scan: &inuse::Scan,
    name: &str,
) -> Status {
    if holder.is_some_and(|h| is_bound(dirs, &box_ns_path(dirs, h, name), name)) {
        return Status::Running;
    }
    let p = crate::state::BoxPaths::new(dirs, name);
    if scan.users(&p.upper, &p.merged).is_empty() {
        Status::Stopped
    } else {
        Status::Orphaned
    }
}

/// `status` with a fresh look at the holder and `/proc`.
pub fn status_now(dirs: &crate::paths::Dirs, name: &str) -> anyhow::Result<Status> {
    let holder = holder::Holder::current(dirs)?;
    Ok(status(dirs, holder.as_ref(), &inuse::Scan::take(), name))
}
