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
    cmd
}
