//! devbox: rootless, daemonless dev environments.
//!
//! `main` owns the exit policy: usage errors exit 2 (clap), failures of `enter`/`run` before the
//! command runs exit 125, other failures exit 1, and a closed stdout (`devbox list | head`) is
//! not an error. Errors are printed as `error: ...` (see `ui::error_text`).

// std's start-up is replaced by `sys::entry` (see there for why); tests keep the harness's.
#![cfg_attr(not(test), no_main)]

mod catalog;
mod cli;
mod cmd;
mod completions;
mod debarchive;
mod export;
mod fetch;
mod idmap;
mod oci;
mod pack;
mod paths;
mod progress;
mod project;
mod provision;
mod runtime;
mod state;
mod store;
mod sys;
#[cfg(test)]
#[path = "../tests/support/http.rs"]
mod test_http;
mod ui;
mod unpack;

use clap::CommandFactory;

use cli::{Cli, Cmd};

/// devbox's main, called by `sys::entry`.
fn main() -> ! {
    sys::ignore_signal(nix::sys::signal::Signal::SIGPIPE);
    completions::answer_if_asked();
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|m| Cli::from_matches(&m))
        .map_err(|e| e.format(&mut command));
    // The command tree has served: freeing its hundreds of small allocations one by one would
    // cost a warm `devbox run` more than its three setns calls, and the process exits or execs.
    std::mem::forget(command);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    ui::init(cli.global.verbose, cli.global.quiet);
    if is_helper(&cli.command) {
        let argv: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        ui::detail(format_args!(
            "helper started: devbox {} (pid {})",
            argv.join(" "),
            std::process::id()
        ));
    }
    let fails_as = match cli.command {
        Cmd::Enter { .. } | Cmd::Run { .. } | Cmd::Unshare { .. } => runtime::join::EXIT_DEVBOX,
        _ => 1,
    };
    let code = match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                0
            } else {
                eprintln!("{}", ui::error_text(&format!("{e:#}"), ui::stderr_color()));
                fails_as
            }
        }
    };
    std::process::exit(code);
}

/// Prints clap's usage error (or help) and exits; a `run` whose command was not put after `--`
/// gets the line that shows how.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let run_at = args.iter().position(|a| a == "run");
    let wants_hint = matches!(
        e.kind(),
        ErrorKind::UnknownArgument | ErrorKind::MissingRequiredArgument
    ) && !args.iter().any(|a| a == "--")
        && run_at.is_some_and(|i| args[..i].iter().all(|a| a.starts_with('-')));
    let Some(at) = run_at.filter(|_| wants_hint) else {
        e.exit()
    };
    let _ = e.print();
    let rest = &args[at + 1..];
    let flags: Vec<&str> = rest
        .iter()
        .take_while(|a| a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let words = &rest[flags.len()..];
    // The first word is a box when one has that name; otherwise it was the command.
    let is_box =
        |w: &str| paths::Dirs::from_env().is_ok_and(|d| d.box_dir(w).join("box.toml").exists());
    let (name, cmd): (Option<&str>, Vec<&str>) = match words {
        [first, more @ ..] if is_box(first) => (
            Some(first.as_str()),
            more.iter().map(String::as_str).collect(),
        ),
        all => (None, all.iter().map(String::as_str).collect()),
    };
    let mut example = vec!["devbox", "run"];
    example.extend(&flags);
    example.extend(name);
    example.push("--");
    if cmd.is_empty() {
        example.push("CMD [ARG...]");
    } else {
        example.extend(cmd);
    }
    eprintln!("hint: the command goes after `--`: {}", example.join(" "));
    std::process::exit(2)
}

/// devbox's internal helper modes, started by devbox itself (`runtime::helper`).
fn is_helper(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Holder { .. }
            | Cmd::Start { .. }
            | Cmd::StopHelper { .. }
            | Cmd::Unpack { .. }
            | Cmd::UnpackLayers { .. }
            | Cmd::RmTree { .. }
            | Cmd::Bootstrap { .. }
            | Cmd::Pack { .. }
            | Cmd::CloneLayer { .. }
    )
}
