use std::path::Path;

use anyhow::{bail, Result};

use crate::paths::Dirs;
use crate::project::{self, HostEnv, Project};
use crate::state;

/// `devbox apply [NAME]`: the project here (or --config), or the file box NAME was made from.
pub fn run(
    dirs: &Dirs,
    name: Option<&str>,
    config: Option<&Path>,
    yes: bool,
    mode: crate::project::lock::Mode,
    quiet: bool,
) -> Result<i32> {
    let file = match name {
        Some(n) => {
            state::validate_name(n)?;
            crate::provision::project_file_of(dirs, n)?
        }
        None => {
            let cwd = std::env::current_dir()?;
            let env = std::env::var_os(project::CONFIG_ENV);
            match project::find(&cwd, config, env.as_deref())? {
                Some(f) => f,
                None => bail!(
                    "no devbox.toml in {} or above\n  hint: write one with `devbox init`, name one with --config FILE, or name a project's box: `devbox apply NAME`",
                    cwd.display()
                ),
            }
        }
    };
    let p = Project::load(&file, &HostEnv::current())?;
    if let Some(n) = name {
        if p.name != n {
            bail!(
                "box '{n}' was made from {}, which now describes box '{}'\n  hint: run `devbox apply` in {} to make that box, and `devbox rm {n}` if the old one is no longer wanted",
                file.display(),
                p.name,
                p.dir.display()
            );
        }
    }
    crate::provision::apply(dirs, &p, yes, mode, quiet)?;
    Ok(0)
}
