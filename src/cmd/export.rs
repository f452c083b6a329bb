//! `devbox export NAME --bin PROGRAM | --app APP | --list | --delete ...`: launchers and menu
//! entries on the host for a box's programs and applications (see `crate::export`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::export::{self, Existing, Export, Kind, Places};
use crate::paths::Dirs;
use crate::runtime::join;
use crate::state::{self, BoxConfig, BoxPaths};

/// What an export names.
pub enum What {
    Bin(String),
    App(String),
    /// Every export of the box (with delete).
    All,
}

pub enum Action {
    /// Write the export; `true`: replace whatever is there.
    Write(What, bool),
    Delete(What),
    List,
}

pub fn run(dirs: &Dirs, name: &str, action: Action, quiet: bool) -> Result<i32> {
    state::validate_name(name)?;
    let places = Places::from_env()?;
    match action {
        Action::List => list(dirs, &places, name),
        Action::Delete(what) => delete(&places, name, what, quiet),
        Action::Write(What::Bin(program), force) => {
            write_bin(dirs, &places, name, &program, force, quiet)
        }
        Action::Write(What::App(app), force) => write_app(dirs, &places, name, &app, force, quiet),
        Action::Write(What::All, _) => bail!("--all goes with --delete"),
    }
}

/// The devbox binary that writes the export, if it is still a file.
fn devbox_path() -> Option<PathBuf> {
    std::env::current_exe().ok().filter(|p| p.is_file())
}

/// Runs `find` inside the box and decodes its answer.
fn look<T: serde::Serialize + DeserializeOwned>(
    dirs: &Dirs,
    cfg: &BoxConfig,
    find: impl FnOnce() -> std::result::Result<T, String>,
) -> Result<T> {
    let bytes = join::look_inside(dirs, cfg, || {
        serde_json::to_vec(&find()).unwrap_or_default()
    })?;
    let answer: std::result::Result<T, String> = serde_json::from_slice(&bytes)
        .with_context(|| format!("cannot understand what was found in box '{}'", cfg.name))?;
    answer.map_err(|e| anyhow!("box '{}': {e}", cfg.name))
}

fn write_bin(
    dirs: &Dirs,
    places: &Places,
    name: &str,
    program: &str,
    force: bool,
    quiet: bool,
) -> Result<i32> {
    let cfg = BoxConfig::load(dirs, name)?;
    export::validate_program(program)?;
    let file = places.launcher(program);
    export::may_write(&file, &wanted(name, Kind::Bin, program, &file), force)?;
    // A launcher already there for this box was allowed when it was written.
    let update = matches!(export::existing(&file)?, Existing::Export(x) if x.box_name == name);
    let base = file.file_name().unwrap_or_default().to_string_lossy();
    if !force && !update {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(host) = export::host_command(&base, &path, &places.bin) {
            bail!(
                "the host has its own {base} ({}): a launcher {} would stand in for it or behind it, depending on the order of your PATH\n  hint: export it anyway with --force, or run it as `devbox run {name} -- {program}`",
                host.display(),
                file.display()
            );
        }
    }
    let path_var = cfg
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(join::DEFAULT_PATH)
        .to_string();
    let resolved = look(dirs, &cfg, || export::find_program(program, &path_var))?;
    let script = export::launcher(devbox_path().as_deref(), name, &resolved);
    export::install(&file, &script, 0o755)?;
    if !quiet {
        println!("Exported {resolved} of box '{name}' as {}", file.display());
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d == places.bin));
        if !on_path {
            println!(
                "  note: {} is not in your PATH; add it to run {} by name",
                places.bin.display(),
                file.file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }
    Ok(0)
}

fn write_app(
    dirs: &Dirs,
    places: &Places,
    name: &str,
    app: &str,
    force: bool,
    quiet: bool,
) -> Result<i32> {
    let cfg = BoxConfig::load(dirs, name)?;
    let id = export::validate_app(app)?;
    let file = places.desktop(name, &id);
    export::may_write(&file, &wanted(name, Kind::App, &id, &file), force)?;
    let found = look(dirs, &cfg, || export::find_app(&id))?;
    let layers = BoxPaths::new(dirs, name);
    let image = dirs.image_dir(&cfg.image_id).join("rootfs");
    let icon = found
        .icon
        .as_deref()
        .and_then(|i| export::host_path(&layers.upper, &image, i));
    let devbox = devbox_path().unwrap_or_else(|| PathBuf::from("devbox"));
    let text = export::desktop_entry(&found.text, name, &id, &devbox, icon.as_deref())
        .with_context(|| format!("cannot export {} of box '{name}'", found.path.display()))?;
    export::install(&file, &text, 0o644)?;
    if !quiet {
        println!(
            "Exported {} of box '{name}' as {}",
            found.path.display(),
            file.display()
        );
    }
    Ok(0)
}

fn wanted(name: &str, kind: Kind, target: &str, file: &Path) -> Export {
    Export {
        box_name: name.to_string(),
        kind,
        target: target.to_string(),
        file: file.to_path_buf(),
    }
}

fn list(dirs: &Dirs, places: &Places, name: &str) -> Result<i32> {
    let found = export::scan(places, Some(name));
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        writeln!(out, "Box '{name}' has no exports.")?;
        return Ok(0);
    }
    writeln!(out, "{:<4}  {:<32}  FILE", "KIND", "RUNS")?;
    for x in &found {
        let kind = match x.kind {
            Kind::Bin => "bin",
            Kind::App => "app",
        };
        writeln!(out, "{kind:<4}  {:<32}  {}", x.target, x.file.display())?;
    }
    if !dirs.box_dir(name).join("box.toml").exists() {
        eprintln!(
            "devbox: there is no box '{name}': these exports fail; remove them with `devbox export {name} --delete --all`"
        );
    }
    Ok(0)
}

fn delete(places: &Places, name: &str, what: What, quiet: bool) -> Result<i32> {
    let doomed = match what {
        What::All => {
            let found = export::scan(places, Some(name));
            if found.is_empty() {
                if !quiet {
                    println!("Box '{name}' has no exports.");
                }
                return Ok(0);
            }
            found
        }
        What::Bin(program) => {
            export::validate_program(&program)?;
            vec![ours(&places.launcher(&program), name, Kind::Bin)?]
        }
        What::App(app) => {
            let id = export::validate_app(&app)?;
            vec![ours(&places.desktop(name, &id), name, Kind::App)?]
        }
    };
    let failed = export::remove(&doomed);
    for (x, e) in &failed {
        eprintln!("devbox: cannot remove {}: {e}", x.file.display());
    }
    if !quiet {
        for x in doomed
            .iter()
            .filter(|x| !failed.iter().any(|(f, _)| f == *x))
        {
            println!(
                "Removed {} ({} of box '{name}')",
                x.file.display(),
                x.target
            );
        }
    }
    if !failed.is_empty() {
        bail!("some exports of box '{name}' could not be removed (see above)");
    }
    Ok(0)
}

/// The export of box `name` at `file`, or an error saying what is there instead.
fn ours(file: &Path, name: &str, kind: Kind) -> Result<Export> {
    match export::existing(file)? {
        Existing::Export(x) if x.box_name == name && x.kind == kind => Ok(x),
        Existing::Export(x) => bail!(
            "{} is an export of box '{}', not of box '{name}'; not removed",
            file.display(),
            x.box_name
        ),
        Existing::Other => bail!("{} was not written by devbox; not removed", file.display()),
        Existing::Nothing => bail!(
            "box '{name}' has no export {}\n  hint: see `devbox export {name} --list`",
            file.display()
        ),
    }
}
