use anyhow::{bail, Result};

use crate::paths::Dirs;
use crate::runtime::stop::stop_box;
use crate::state::{self, BoxConfig};

pub fn run(dirs: &Dirs, names: &[String], force: bool, quiet: bool) -> Result<i32> {
    for n in names {
        state::validate_name(n)?;
        BoxConfig::load(dirs, n)?;
    }
    for n in names {
        if crate::runtime::start::RunRecord::load(dirs, n).is_some() {
            if !force {
                bail!("box '{n}' is running\n  hint: stop it first with `devbox stop {n}`, or use `devbox rm --force {n}`");
            }
            stop_box(dirs, n)?;
        }
        // Rename first so a half-removed box never looks like a box.
        let trash = dirs
            .boxes
            .join(format!(".trash-{n}-{}", std::process::id()));
        std::fs::rename(dirs.box_dir(n), &trash)?;
        crate::store::remove_tree(&trash)?;
        if !quiet {
            println!("Removed box '{n}'");
        }
    }
    Ok(0)
}
