//! One module per subcommand; each handler loads, acts and adds context naming the box or path.

mod apply;
mod commit;
mod config;
pub mod create;
mod doctor;
mod enter;
mod export;
mod image;
mod image_check;
mod image_search;
mod init;
pub mod inspect;
mod list;
pub mod rm;
mod stop;
mod trust;
mod unshare;

use anyhow::Result;

use crate::cli::{Cli, Cmd, ImageCmd};
use crate::paths::Dirs;

/// Runs the command and returns the process exit status.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let crate::cli::Global { quiet, config, .. } = cli.global;
    match cli.command {
        // The holder and the box starter leave processes behind that live as long as boxes do:
        // they must not keep what the caller had open (a lock, a jobserver pipe, a CI log).
        Cmd::Holder { ns_dir, store } => {
            crate::sys::close_inherited_fds();
            crate::runtime::holder::run(&ns_dir, &store)
        }
        Cmd::Start { name } => {
            crate::sys::close_inherited_fds();
            crate::runtime::start::run(&name).map(|()| 0)
        }
        Cmd::StopHelper { name } => crate::runtime::stop::run(&name).map(|()| 0),
        Cmd::Unpack { dest, source } => {
            crate::store::helper_exit(&dest, crate::store::unpack_helper(&dest, &source))
        }
        Cmd::UnpackLayers { spec, dest } => {
            crate::store::helper_exit(&dest, crate::store::unpack_layers_helper(&spec, &dest))
        }
        Cmd::Bootstrap { spec, dest } => {
            crate::debarchive::install::helper(&spec, &dest).map(|()| 0)
        }
        Cmd::RmTree { path } => crate::store::rmtree_helper(&path).map(|()| 0),
        Cmd::Pack { upper, tree } => crate::pack::pack_helper(&tree, upper).map(|()| 0),
        Cmd::CloneLayer { from, to } => crate::store::clone_helper(&from, &to).map(|()| 0),
        Cmd::Commit { name, tag, .. } => {
            commit::run(&Dirs::from_env()?, &name, tag.as_deref(), quiet)
        }
        Cmd::Create {
            image,
            name,
            from: Some(from),
            unshare,
            ..
        } => create::clone(&Dirs::from_env()?, &from, name.or(image), &unshare, quiet),
        Cmd::Create {
            image,
            name,
            sha256,
            unshare,
            from: None,
            ..
        } => create::run(
            &Dirs::from_env()?,
            image.as_deref(),
            name,
            sha256.as_deref(),
            &unshare,
            quiet,
        ),
        Cmd::Enter {
            name, root, env, ..
        } => enter::run(
            &Dirs::from_env()?,
            name,
            root,
            &env,
            None,
            config.as_deref(),
            quiet,
        ),
        Cmd::Run {
            name,
            root,
            env,
            cmd,
            ..
        } => enter::run(
            &Dirs::from_env()?,
            name,
            root,
            &env,
            Some(&cmd),
            config.as_deref(),
            quiet,
        ),
        Cmd::List { json, .. } => list::run(&Dirs::from_env()?, json),
        Cmd::Stop { names, all, .. } => stop::run(&Dirs::from_env()?, &names, all, quiet),
        Cmd::Restart { names, .. } => stop::restart(&Dirs::from_env()?, &names, quiet),
        Cmd::Rm {
            names, force, yes, ..
        } => {
            let exports = if yes {
                rm::Exports::Remove
            } else {
                rm::Exports::Ask
            };
            rm::run(&Dirs::from_env()?, &names, force, exports, quiet)
        }
        Cmd::Export {
            name,
            bin,
            app,
            delete,
            all: _,
            list,
            force,
            ..
        } => {
            let what = match (bin, app) {
                (Some(b), _) => export::What::Bin(b),
                (None, Some(a)) => export::What::App(a),
                (None, None) => export::What::All,
            };
            let action = if list {
                export::Action::List
            } else if delete {
                export::Action::Delete(what)
            } else {
                export::Action::Write(what, force)
            };
            export::run(&Dirs::from_env()?, &name, action, quiet)
        }
        Cmd::Unshare { cmd, .. } => unshare::run(&Dirs::from_env()?, &cmd),
        Cmd::Image {
            cmd: ImageCmd::List { json, .. },
            ..
        } => image::list(&Dirs::from_env()?, json),
        Cmd::Image {
            cmd: ImageCmd::Rm { images, force, .. },
            ..
        } => image::rm(&Dirs::from_env()?, &images, force, quiet),
        Cmd::Init { image, force, .. } => init::run(
            Dirs::from_env().ok().as_ref(),
            &std::env::current_dir()?,
            image.as_deref(),
            force,
        ),
        Cmd::Apply {
            name,
            yes,
            update,
            locked,
            ..
        } => apply::run(
            &Dirs::from_env()?,
            name.as_deref(),
            config.as_deref(),
            yes,
            crate::project::lock::Mode::new(update, locked),
            quiet,
        ),
        Cmd::Config {
            name,
            mount,
            unmount,
            env,
            unset_env,
            unshare,
            home,
            ..
        } => config::run(
            &Dirs::from_env()?,
            &name,
            config::Args {
                mount,
                unmount,
                env,
                unset_env,
                unshare,
                home,
            },
            quiet,
        ),
        Cmd::Trust {
            path, list, remove, ..
        } => trust::run(path.as_deref(), list, remove),
        Cmd::Inspect { name, json, .. } => inspect::run(&Dirs::from_env()?, &name, json),
        Cmd::Completions { shell, install, .. } => {
            if install {
                return crate::completions::install(shell.as_deref());
            }
            use std::io::Write;
            let shell = shell.unwrap_or_default();
            std::io::stdout().write_all(crate::completions::script(&shell)?.as_bytes())?;
            Ok(0)
        }
        Cmd::Doctor { .. } => doctor::run(&Dirs::from_env()?),
        Cmd::Image {
            cmd: ImageCmd::Search { text, json, .. },
            ..
        } => image_search::run(text.as_deref(), json),
        Cmd::Image {
            cmd: ImageCmd::Pull { image, sha256, .. },
            ..
        } => image::pull(&Dirs::from_env()?, &image, sha256.as_deref(), quiet),
        Cmd::Image {
            cmd: ImageCmd::Prune { .. },
            ..
        } => image::prune(&Dirs::from_env()?, quiet),
        Cmd::Image {
            cmd: ImageCmd::Check {
                names, arch, json, ..
            },
            ..
        } => image_check::run(&names, arch.as_deref(), json),
        Cmd::Image {
            cmd: ImageCmd::Push {
                image, reference, ..
            },
            ..
        } => image::push(&Dirs::from_env()?, &image, &reference, quiet),
        Cmd::Image {
            cmd: ImageCmd::Save { image, file, .. },
            ..
        } => image::save(&Dirs::from_env()?, &image, &file, quiet),
        Cmd::Image {
            cmd: ImageCmd::Load { file, .. },
            ..
        } => image::load(&Dirs::from_env()?, &file, quiet),
    }
}

/// The `--json` output of a command: pretty JSON and a newline; exit status 0.
fn write_json<T: serde::Serialize>(out: &mut impl std::io::Write, value: &T) -> Result<i32> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(0)
}
