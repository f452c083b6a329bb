//! The runtime: the holder, starting boxes, joining them, stopping them.

pub mod holder;
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
pub fn is_running(
    dirs: &crate::paths::Dirs,
    box_ns: &std::path::Path,
    cfg: &crate::state::BoxConfig,
) -> bool {
    if !userns::is_ns_file(&box_ns.join("mnt")) {
        return false;
    }
    // Only a box with its own pid namespace (as started, whatever its settings say now) has an
    // init that can die under it.
    !box_ns.join("pid").exists()
        || start::RunRecord::load(dirs, &cfg.name).is_some_and(|r| r.init_alive())
}
