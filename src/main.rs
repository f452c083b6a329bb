//! devbox: rootless, daemonless dev environments.
//!
//! `main` owns the exit policy: usage errors exit 2 (clap), failures of `enter`/`run` before the
//! command runs exit 125, other failures exit 1, and a closed stdout (`devbox list | head`) is
//! not an error.

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
mod unpack;

use clap::Parser;

use cli::{Cli, Cmd};

fn main() {
    completions::answer_if_asked();
    let cli = Cli::parse();
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
                eprintln!("devbox: {}", printable(&format!("{e:#}")));
                fails_as
            }
        }
    };
    std::process::exit(code);
}

/// Error text can quote bytes from an archive or a server: escape control characters other
/// than newline and tab so they cannot drive the user's terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
