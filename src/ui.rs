//! What devbox says on stderr beyond a command's own output: how errors look (colour only on
//! a terminal that wants it) and the `--verbose` detail lines.
//!
//! Verbosity is one process-wide switch, set once in `main` from `--verbose` or, in devbox's
//! own helper processes, from [`VERBOSE_ENV`], which [`pass_on`] puts into their environment.

use std::ffi::OsStr;
use std::fmt::Display;
use std::io::IsTerminal as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set to `1` in the environment of devbox's helper processes when devbox runs with
/// `--verbose`, so they are verbose too. A user may set it as well.
pub const VERBOSE_ENV: &str = "DEVBOX_VERBOSE";

/// Set to `1` in the environment of devbox's helper processes when devbox runs with
/// `--quiet`, so their notes are quiet too.
pub const QUIET_ENV: &str = "DEVBOX_QUIET";

static VERBOSE: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets the verbosity for this process: `--verbose`, else `DEVBOX_VERBOSE=1`; `--quiet` wins
/// over the environment (clap refuses both flags together).
pub fn init(verbose_flag: bool, quiet: bool) {
    let from_env = std::env::var_os(VERBOSE_ENV).is_some_and(|v| v == "1");
    VERBOSE.store(verbose_flag || (from_env && !quiet), Ordering::Relaxed);
    let quiet_env = std::env::var_os(QUIET_ENV).is_some_and(|v| v == "1");
    QUIET.store(quiet || (quiet_env && !verbose_flag), Ordering::Relaxed);
}

/// A note for the user (not an error) on stderr, unless `--quiet`.
pub fn note(msg: impl Display) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{msg}");
    }
}

/// True with `--verbose`.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// With `--verbose`, prints `devbox: MSG` on stderr.
pub fn detail(msg: impl Display) {
    if verbose() {
        // One write for the whole line: helpers share this stderr, and a line written in
        // pieces can be cut by another process's line.
        use std::io::Write;
        let line = format!("devbox: {}\n", printable(&msg.to_string()));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// The detail line for the image IMAGE became: where it came from and its digests.
pub fn image_line(image: &str, rec: &crate::state::ImageRecord) -> String {
    let manifest = rec.digest.as_deref().map(|d| format!(", manifest {d}"));
    format!(
        "image {image} is {} (sha256:{}{})",
        rec.source,
        rec.id,
        manifest.unwrap_or_default()
    )
}

/// Passes this process's verbosity on to a devbox helper about to be started.
pub fn pass_on(cmd: &mut Command) {
    if verbose() {
        cmd.env(VERBOSE_ENV, "1");
    } else {
        cmd.env_remove(VERBOSE_ENV);
    }
    if QUIET.load(Ordering::Relaxed) {
        cmd.env(QUIET_ENV, "1");
    } else {
        cmd.env_remove(QUIET_ENV);
    }
}

/// The stderr of a helper that would otherwise get none (the holder): the caller's with
/// `--verbose`, so the helper's detail lines are seen.
pub fn helper_stderr() -> Stdio {
    if verbose() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A command line as the user would type it, for detail lines.
pub fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether text for a stream may be coloured: only a terminal, never with `NO_COLOR` set to
/// anything non-empty (no-color.org), never for `TERM=dumb` or without `TERM`.
pub fn color_wanted(is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    is_terminal
        && no_color.map_or(true, OsStr::is_empty)
        && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// `color_wanted` for this process's stderr.
pub fn stderr_color() -> bool {
    color_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

const RED_BOLD: &str = "\x1b[1;31m";
const CYAN_BOLD: &str = "\x1b[1;36m";
const RESET: &str = "\x1b[0m";

/// An error as devbox prints it: `error: ` before the message, control characters escaped,
/// and with `color` the `error:` label and each line's `hint:` label coloured.
pub fn error_text(msg: &str, color: bool) -> String {
    let paint = |label: &str, code: &str| {
        if color {
            format!("{code}{label}{RESET}")
        } else {
            label.to_string()
        }
    };
    let mut out = format!("{} ", paint("error:", RED_BOLD));
    for (i, line) in printable(msg).split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let rest = line.trim_start();
        match rest.strip_prefix("hint:") {
            Some(after) => {
                out.push_str(&line[..line.len() - rest.len()]);
                out.push_str(&paint("hint:", CYAN_BOLD));
                out.push_str(after);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Error and detail text can quote bytes from an archive or a server: escape control
/// characters other than newline and tab so they cannot drive the user's terminal.
pub fn printable(s: &str) -> String {
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

/// Asks a yes/no question on stderr and reads the answer from stdin; `None` when stdin is not
/// a terminal to ask on. Only "y" or "yes" is yes.
pub fn ask(question: &str) -> std::io::Result<Option<bool>> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(Some(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    )))
}

/// Levenshtein distance over chars, for the close matches that error messages offer.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn colour_only_on_a_terminal_that_wants_it() {
        assert!(color_wanted(true, None, os("xterm-256color")));
        assert!(!color_wanted(false, None, os("xterm-256color")), "piped");
        assert!(!color_wanted(true, os("1"), os("xterm")), "NO_COLOR=1");
        assert!(
            !color_wanted(true, os("0"), os("xterm")),
            "any non-empty NO_COLOR"
        );
        assert!(
            color_wanted(true, os(""), os("xterm")),
            "empty NO_COLOR is unset"
        );
        assert!(!color_wanted(true, None, os("dumb")));
        assert!(!color_wanted(true, None, None), "no TERM");
        assert!(!color_wanted(true, None, os("")));
    }

    #[test]
    fn error_text_labels_errors_and_hints() {
        let msg = "cannot open image \"x\"\n  hint: IMAGE is a path\nnot a hint: here";
        assert_eq!(
            error_text(msg, false),
            "error: cannot open image \"x\"\n  hint: IMAGE is a path\nnot a hint: here"
        );
        assert_eq!(
            error_text(msg, true),
            "\x1b[1;31merror:\x1b[0m cannot open image \"x\"\n  \x1b[1;36mhint:\x1b[0m IMAGE is a path\nnot a hint: here"
        );
    }

    #[test]
    fn error_text_escapes_control_characters() {
        let t = error_text("bad name \x1b[2J\r in archive", true);
        assert!(t.ends_with("bad name \\u{1b}[2J\\r in archive"), "{t:?}");
        assert_eq!(
            t.matches('\x1b').count(),
            2,
            "only devbox's own colour: {t:?}"
        );
    }

    #[test]
    fn image_line_names_source_digest_and_manifest() {
        let mut rec = crate::state::ImageRecord {
            id: "ab".repeat(32),
            source: "quay.io/toolbx-images/debian-toolbox:13".into(),
            unpacked: String::new(),
            archive_bytes: 0,
            digest: Some(format!("sha256:{}", "cd".repeat(32))),
            env: Vec::new(),
            packages: Vec::new(),
            base_source: None,
        };
        assert_eq!(
            image_line("debian:13", &rec),
            format!(
                "image debian:13 is quay.io/toolbx-images/debian-toolbox:13 (sha256:{}, manifest sha256:{})",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
        rec.digest = None;
        rec.source = "https://example.invalid/rootfs.tar.xz".into();
        assert_eq!(
            image_line("debian", &rec),
            format!(
                "image debian is https://example.invalid/rootfs.tar.xz (sha256:{})",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn shown_joins_program_and_arguments() {
        let mut c = Command::new("newuidmap");
        c.args(["42", "0", "100000", "1000"]);
        assert_eq!(shown(&c), "newuidmap 42 0 100000 1000");
    }
}
