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
                None => default_box(dirs, cmd.is_some())?,
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
/// `default_box`, else the only box.
fn default_box(dirs: &Dirs, run: bool) -> Result<String> {
    let user = project::UserConfig::load(&HostEnv::current())?;
    let s = project::resolve(
        &project::Flags::default(),
        None,
        &user,
        &project::Defaults::builtin(),
    );
    match s.name {
        Some(n) => Ok(n.value),
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
