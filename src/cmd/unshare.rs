use std::ffi::OsString;

use anyhow::Result;

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::runtime::userns;

/// Runs a host command as root of devbox's user namespace, in the holder's mount namespace.
pub fn run(dirs: &Dirs, cmd: &[OsString]) -> Result<i32> {
    let holder = Holder::ensure(dirs)?;
    let cwd = std::env::current_dir().ok();
    userns::join_user(holder.pid)?;
    userns::join_mnt(holder.pid)?;
    if let Some(cwd) = cwd {
        let _ = nix::unistd::chdir(&cwd);
    }
    userns::become_root()?;
    let argv: Vec<OsString> = if cmd.is_empty() {
        vec![std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())]
    } else {
        cmd.to_vec()
    };
    crate::sys::default_signal(nix::sys::signal::Signal::SIGPIPE);
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(&argv[0]).args(&argv[1..]),
    );
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    eprintln!("devbox: cannot run {}: {err}", argv[0].to_string_lossy());
    Ok(code)
}
