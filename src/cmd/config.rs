use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::UnshareArg;
use crate::paths::Dirs;
use crate::state::{self, BoxConfig, Edit, MountSpec};

/// What `devbox config` was given, as typed.
pub struct Args {
    pub mount: Vec<String>,
    pub unmount: Vec<PathBuf>,
    pub env: Vec<String>,
    pub unset_env: Vec<String>,
    pub unshare: Option<Vec<UnshareArg>>,
    pub home: Option<PathBuf>,
}

pub fn run(dirs: &Dirs, name: &str, args: Args, quiet: bool) -> Result<i32> {
    state::validate_name(name)?;
    let mut cfg = BoxConfig::load(dirs, name)?;
    let edit = edit_from(&args)?;
    if edit.is_empty() {
        return crate::cmd::inspect::run(dirs, name, false);
    }
    if cfg.project.is_some() {
        bail!("box '{name}' was made from a devbox.toml, which holds its settings\n  hint: edit the file and run `devbox apply {name}`");
    }
    let said = cfg.apply_edit(&edit)?;
    cfg.save_in(&dirs.box_dir(name))?;
    if !quiet {
        for line in &said {
            println!("{name}: {line}");
        }
        let restart = !edit.mount.is_empty()
            || !edit.unmount.is_empty()
            || edit.isolate.is_some()
            || edit.home.is_some();
        if restart && crate::runtime::status_now(dirs, name)?.in_use() {
            println!("Box '{name}' is running: restart pending; the new settings apply after `devbox restart {name}`.");
        }
    }
    Ok(0)
}

fn edit_from(a: &Args) -> Result<Edit> {
    let cwd = std::env::current_dir()?;
    let home = directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .context("cannot find your home directory: set $HOME")?;
    let mut edit = Edit {
        unmount: a.unmount.clone(),
        unset_env: a.unset_env.clone(),
        isolate: a.unshare.as_deref().map(crate::cmd::create::isolates),
        ..Edit::default()
    };
    for m in &a.mount {
        edit.mount.push(MountSpec::parse(m, &cwd, &home)?);
    }
    for e in &a.env {
        let Some((k, v)) = e.split_once('=') else {
            bail!(
                "--env {e:?} has no value\n  hint: write it as NAME=VALUE, e.g. --env EDITOR=vim"
            );
        };
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            bail!("--env {e:?}: {k:?} is not a variable name\n  hint: names are letters, digits and '_', not starting with a digit");
        }
        edit.set_env.push((k.to_string(), v.to_string()));
    }
    if let Some(h) = &a.home {
        edit.home = Some(if h == Path::new("shared") {
            None
        } else {
            let dir = cwd.join(h);
            std::fs::create_dir_all(&dir).map_err(|e| {
                anyhow::anyhow!("cannot create the box's home {}: {e}", dir.display())
            })?;
            Some(crate::paths::clean_path(&dir))
        });
    }
    Ok(edit)
}
