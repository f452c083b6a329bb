//! `devbox rm`: remove boxes, and decide about their exports (launchers, menu entries).

use std::io::{IsTerminal, Write};

use anyhow::{bail, Result};

use crate::export::{self, Places};
use crate::paths::Dirs;
use crate::runtime::stop::{box_lock, stop_locked};
use crate::state;

/// What happens to the exports of a removed box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exports {
    /// Ask when stdin is a terminal; otherwise keep them and say so.
    Ask,
    /// Remove them (`--yes`).
    Remove,
    /// Keep them and say so.
    Keep,
}

pub fn run(
    dirs: &Dirs,
    names: &[String],
    force: bool,
    exports: Exports,
    quiet: bool,
) -> Result<i32> {
    for n in names {
        state::existing(dirs, n)?;
    }
    let places = Places::from_env()?;
    // What interrupted commands left (a killed rm's half-removed box, ...) goes first.
    crate::store::sweep_in_passing(dirs);
    for n in names {
        // Under the box's lock, so nothing starts it between the check and the removal.
        let lock = box_lock(dirs, n)?;
        let status = crate::runtime::status_now(dirs, n)?;
        if status.in_use() {
            if !force {
                bail!("box '{n}' is {}\n  hint: stop it first with `devbox stop {n}`, or use `devbox rm --force {n}`", status.word());
            }
            stop_locked(n)?;
        }
        // Decided before anything is removed, so an interrupted question leaves all in place.
        let found = export::scan(&places, Some(n));
        let remove_exports = !found.is_empty() && decide(n, &found, exports)?;
        crate::store::remove_box_dir(dirs, n)?;
        drop(lock);
        if !quiet {
            println!("Removed box '{n}'");
        }
        if found.is_empty() {
            continue;
        }
        let count = counted(found.len());
        if !remove_exports {
            // Said even with --quiet: these files now fail when used.
            eprintln!(
                "devbox: kept {count} of box '{n}', broken until a box '{n}' exists again; remove with `devbox export {n} --delete --all`"
            );
            continue;
        }
        let failed = export::remove(&found);
        for (x, e) in &failed {
            eprintln!("devbox: cannot remove {}: {e}", x.file.display());
        }
        if !failed.is_empty() {
            bail!(
                "{} of box '{n}' could not be removed (see above)\n  hint: remove them by hand, or with `devbox export {n} --delete --all`",
                counted(failed.len())
            );
        }
        if !quiet {
            println!("Removed {count} of box '{n}'");
        }
    }
    Ok(0)
}

fn counted(n: usize) -> String {
    if n == 1 {
        "1 export".to_string()
    } else {
        format!("{n} exports")
    }
}

/// True when the exports are to be removed: --yes, or "y" to the question on a terminal.
fn decide(name: &str, found: &[export::Export], how: Exports) -> Result<bool> {
    match how {
        Exports::Remove => return Ok(true),
        Exports::Keep => return Ok(false),
        Exports::Ask if !std::io::stdin().is_terminal() => return Ok(false),
        Exports::Ask => {}
    }
    let mut err = std::io::stderr().lock();
    for x in found {
        writeln!(
            err,
            "  {}  ({} {})",
            x.file.display(),
            kind_word(x),
            x.target
        )?;
    }
    drop(err);
    let question = format!("Remove {} of box '{name}'?", counted(found.len()));
    Ok(crate::ui::ask(&question)?.unwrap_or(false))
}

fn kind_word(x: &export::Export) -> &'static str {
    match x.kind {
        export::Kind::Bin => "runs",
        export::Kind::App => "application",
    }
}
