use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

use crate::paths::Dirs;
use crate::project::{self, HostEnv, Project};
use crate::runtime::join::{self, Session};
use crate::state::{self, BoxConfig};

/// `enter` is `run` with the user's login shell. Without a NAME, the box of the devbox.toml in
/// the working directory (or a parent, or --config / DEVBOX_CONFIG) is used, made on first use;
/// else the only box.
pub fn run(
    dirs: &Dirs,
    name: Option<String>,
    root: bool,
    cmd: Option<&[OsString]>,
    config: Option<&Path>,
    quiet: bool,
) -> Result<i32> {
    let mut proj: Option<Project> = None;
    let name = match name {
        Some(n) => {
            state::validate_name(&n)?;
            n
        }
        None => {
            let cwd = std::env::current_dir()?;
            let env = std::env::var_os(project::CONFIG_ENV);
            match project::find(&cwd, config, env.as_deref())? {
                Some(file) => {
                    crate::ui::detail(format_args!("project file {}", file.display()));
                    let p = Project::load(&file, &HostEnv::current())?;
                    let n = p.name.clone();
                    proj = Some(p);
                    n
                }
                None => state::only_box(dirs)?,
            }
        }
    };
    if let Some(p) = &proj {
        if !dirs.box_dir(&p.name).join("box.toml").exists() {
            crate::provision::create_project_box(dirs, p, quiet)?;
        }
    }
    let cfg = BoxConfig::load(dirs, &name)?;
    let (env, hooks) = match &proj {
        Some(p) => {
            if cfg
                .project
                .as_deref()
                .is_some_and(|f| f != project::fingerprint(p))
            {
                eprintln!(
                    "devbox: {} changed since box '{}' was made; recreate it to apply: `devbox rm --force {}` then run this again",
                    p.file.display(),
                    p.name,
                    p.name
                );
            }
            (p.env.clone().into_iter().collect(), p.hooks.enter.clone())
        }
        None => (Vec::new(), Vec::new()),
    };
    join::run(
        dirs,
        &cfg,
        &Session {
            name: &name,
            root,
            argv: cmd,
            env,
            hooks,
        },
    )
}
