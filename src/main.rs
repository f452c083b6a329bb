//! devbox: rootless, daemonless dev environments.
//!
//! `main` owns the exit policy: usage errors exit 2 (clap), failures of `enter`/`run` before the
//! command runs exit 125, other failures exit 1, and a closed stdout (`devbox list | head`) is
//! not an error. Errors are printed as `error: ...` (see `ui::error_text`).

mod catalog;
mod cli;
mod cmd;
mod completions;
mod export;
mod fetch;
mod idmap;
#[allow(dead_code)]
mod oci;
mod paths;
mod progress;
mod project;
mod provision;
mod runtime;
mod state;
mod store;
mod sys;
mod ui;
mod unpack;

use clap::Parser;

use cli::{Cli, Cmd};

fn main() {
    completions::answer_if_asked();
    let cli = Cli::parse();
    ui::init(cli.verbose, cli.quiet);
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
    )
}
