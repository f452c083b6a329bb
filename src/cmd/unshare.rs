use std::ffi::OsString;

use anyhow::Result;

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::runtime::userns;

/// Runs a host command as root of devbox's user namespace: the holder's (and its mount
/// namespace) when it runs, else a new one with the same mapping, so that no holder is started
/// just for this (`devbox unshare -- rm -rf` of the store must not leave one behind).
pub fn run(dirs: &Dirs, cmd: &[OsString]) -> Result<i32> {
    let cwd = std::env::current_dir().ok();
    match Holder::current(dirs)? {
        Some(holder) => {
            userns::join_user(holder.pid)?;
            userns::join_mnt(holder.pid)?;
        }
        None => userns::unshare_mapped(&crate::idmap::Mapping::current()?)?,
    }
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
