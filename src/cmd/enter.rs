use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

use crate::paths::Dirs;
use crate::project::{self, HostEnv, Project};
use crate::runtime::join::{self, Session};
use crate::state::{self, BoxConfig};

/// `enter` is `run` with the user's login shell. Without a NAME, the box of the devbox.toml in
/// the working directory (or a parent, or --config / DEVBOX_CONFIG) is used, made on first use;
/// else the only box. A project file the user may not use (not theirs alone and not trusted)
/// or whose box belongs to another file is an error: nothing else is entered instead.
pub fn run(
    dirs: &Dirs,
    name: Option<String>,
    root: bool,
    extra_env: &[String],
    cmd: Option<&[OsString]>,
    config: Option<&Path>,
    quiet: bool,
) -> Result<i32> {
    let extra_env = parse_env_args(extra_env)?;
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
                None => default_box(dirs, cmd.is_some(), quiet)?,
            }
        }
    };
    if let Some(p) = &proj {
        if !crate::provision::claim(dirs, p)? {
            crate::provision::create_project_box(
                dirs,
                p,
                crate::project::lock::Mode::new(false, false),
                quiet,
            )?;
        } else {
            crate::provision::settle(dirs, p, quiet)?;
        }
    }
    let cfg = BoxConfig::load(dirs, &name)?;
    let pending = state::restart_pending(dirs, &cfg);
    if !pending.is_empty() {
        eprintln!(
            "devbox: box '{name}' still runs with its old settings; restart pending ({}): `devbox restart {name}` (its processes end)",
            pending.join(", ")
        );
    }
    let mut env: Vec<(String, String)> = cfg.vars.clone().into_iter().collect();
    let mut hooks = crate::runtime::hooks::Hooks::default();
    let mut prompt = None;
    if let Some(p) = proj {
        if let Some(changes) = crate::provision::pending_for_apply(dirs, &cfg, &p)? {
            eprintln!(
                "devbox: {} changed since box '{}' was made:",
                p.file.display(),
                p.name
            );
            for c in &changes {
                eprintln!("  - {c}");
            }
            eprintln!("  run `devbox apply` to bring the box in line");
        }
        env.extend(p.env);
        prompt = p.prompt;
        hooks = crate::runtime::hooks::Hooks {
            commands: p.hooks.enter,
            file: p.file.clone(),
        };
    }
    env.extend(extra_env);
    join::run(
        dirs,
        &cfg,
        &Session {
            name: &name,
            root,
            argv: cmd,
            env,
            hooks,
            prompt,
        },
    )
}

/// `--env KEY=VALUE` arguments, checked: KEY is a shell variable name.
fn parse_env_args(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok || !a.contains('=') {
                anyhow::bail!(
                    "--env {a:?} is not KEY=VALUE with a variable name as KEY\n  hint: e.g. --env RUST_LOG=debug (an empty value: --env KEY=)"
                );
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The box for enter/run without a name outside a project: the user configuration's
/// `default_box`, else the only box. With no box at all, `enter` on a terminal offers to make
/// one from the default image (and enters it); otherwise the error says how to make one.
fn default_box(dirs: &Dirs, run: bool, quiet: bool) -> Result<String> {
    let user = project::UserConfig::load(&HostEnv::current())?;
    let s = project::resolve(
        &project::Flags::default(),
        None,
        &user,
        &project::Defaults::builtin(),
    );
    match s.name {
        Some(n) => {
            if !dirs.box_dir(&n.value).join("box.toml").exists() {
                let file = user
                    .file
                    .as_deref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "config.toml".into());
                let known = state::list_names(dirs).unwrap_or_default();
                let boxes = if known.is_empty() {
                    "there are no boxes yet".to_string()
                } else {
                    format!("the boxes are: {}", known.join(", "))
                };
                anyhow::bail!(
                    "no box named '{}': it is default_box in {file}\n  hint: {boxes}; name one (`devbox enter NAME`), change default_box in {file}, or make it: `devbox create IMAGE --name {}`",
                    n.value,
                    n.value
                );
            }
            Ok(n.value)
        }
        None if state::list_names(dirs)?.is_empty() => {
            let image = s.image.value;
            let name = state::name_from_image(&image);
            let make = format!("`devbox create` makes box '{name}' from your default image, {image}; or `devbox create IMAGE`");
            let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            if !run && on_terminal {
                let question = format!(
                    "There are no boxes yet. Create box '{name}' from {image} (your default image) and enter it?"
                );
                match crate::ui::ask(&question)? {
                    Some(true) => {
                        super::create::run(
                            dirs,
                            Some(&image),
                            Some(name.clone()),
                            None,
                            &[],
                            quiet,
                        )?;
                        return Ok(name);
                    }
                    Some(false) => anyhow::bail!("no box to enter\n  hint: {make}"),
                    None => {}
                }
            }
            anyhow::bail!("there are no boxes yet\n  hint: {make}")
        }
        None => state::only_box(
            dirs,
            if run {
                "devbox run {} -- CMD"
            } else {
                "devbox enter {}"
            },
        ),
    }
}
