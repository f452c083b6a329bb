use std::ffi::OsString;

use anyhow::Result;

use crate::paths::Dirs;
use crate::runtime::join::{self, Session};
use crate::state::{self, BoxConfig};

/// `enter` is `run` with the user's login shell.
pub fn run(dirs: &Dirs, name: Option<String>, root: bool, cmd: Option<&[OsString]>) -> Result<i32> {
    let name = match name {
        Some(n) => {
            state::validate_name(&n)?;
            n
        }
        None => state::only_box(dirs)?,
    };
    let cfg = BoxConfig::load(dirs, &name)?;
    join::run(
        dirs,
        &cfg,
        &Session {
            name: &name,
            root,
            argv: cmd,
        },
    )
}
