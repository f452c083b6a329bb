//! Shell completion. The scripts in `completions/` only register devbox with the shell; the
//! words themselves come from devbox at completion time (`DEVBOX_COMPLETE=SHELL devbox -- ARGS`),
//! so box names are always current. Completion reads the store's directory listing and nothing
//! else: no network, no holder, no box is started.

use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;

/// The environment variable through which the shell asks devbox for completions.
pub const VAR: &str = "DEVBOX_COMPLETE";

/// Shells with a registration script.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "elvish", "powershell"];

/// Answers a completion request and exits, when the shell made one.
pub fn answer_if_asked() {
    if std::env::var_os(VAR).is_some() {
        clap_complete::CompleteEnv::with_factory(
            <crate::cli::Cli as clap::CommandFactory>::command,
        )
        .var(VAR)
        .bin("devbox")
        .complete();
    }
}

/// The registration script for `shell`.
pub fn script(shell: &str) -> anyhow::Result<String> {
    let shells = Shells::builtins();
    let Some(completer) = shells.completer(shell) else {
        anyhow::bail!(
            "no completion support for {shell:?}; choose one of: {}",
            SHELLS.join(", ")
        );
    };
    let mut buf = Vec::new();
    completer.write_registration(VAR, "devbox", "devbox", "devbox", &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Box names, for arguments that take a box.
pub fn box_names() -> Vec<CompletionCandidate> {
    let Ok(dirs) = crate::paths::Dirs::from_env() else {
        return Vec::new();
    };
    crate::state::list_names(&dirs)
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// Image references for `create`: catalog names and releases (`deb` -> `debian`, `debian:` ->
/// its releases), then local files. The catalog is compiled in (plus local override files), so
/// this reads no network.
pub fn image_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let text = current.to_string_lossy();
    let mut out: Vec<CompletionCandidate> = crate::catalog::Catalog::load()
        .map(|c| c.names())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(text.as_ref()) && (text.contains(':') || !n.contains(':')))
        .map(CompletionCandidate::new)
        .collect();
    out.extend(clap_complete::engine::PathCompleter::file().complete(current));
    out
}

use clap_complete::engine::ValueCompleter as _;
