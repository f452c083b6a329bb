//! `devbox trust`: accept a project file devbox would otherwise refuse (another user's, or in a
//! directory others can write), list the accepted ones, or stop accepting one. The record is a
//! `[[trusted]]` table in the user's `config.toml`: the file's canonical path and its owner's
//! uid (see `project::trust`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::project::trust::{self, Trusted};
use crate::project::{HostEnv, UserConfig, FILE_NAME};

pub fn run(path: Option<&Path>, list: bool, remove: bool) -> Result<i32> {
    let host = HostEnv::current();
    let cwd = std::env::current_dir()?;
    match (path, list, remove) {
        (_, true, _) => show(&host),
        (Some(p), false, true) => untrust(&host, &cwd.join(p)),
        (Some(p), false, false) => accept(&host, &cwd.join(p)),
        (None, false, _) => {
            bail!("name a project file: `devbox trust PATH`, or `devbox trust --list`")
        }
    }
}

/// The configuration file and its text ("" when it does not exist yet).
fn config_text() -> Result<(PathBuf, String)> {
    let Some(path) = UserConfig::path() else {
        bail!("there is no home directory to keep the configuration in\n  hint: set HOME");
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok((path, t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((path, String::new())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `text` as the configuration after checking that it says what `want` says: the old
/// settings with the trusted list changed, nothing else. A link (dotfiles) is written through.
fn save(path: &Path, text: &str, want: &UserConfig, host: &HostEnv) -> Result<()> {
    let got = UserConfig::parse(text, path, host);
    if got.as_ref().ok() != Some(want) {
        bail!(
            "{} is written in a way devbox cannot change safely (is `trusted` written inline?)\n  hint: edit it yourself: one table per file:\n    [[trusted]]\n    file = \"/path/to/devbox.toml\"\n    owner = UID",
            path.display()
        );
    }
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::paths::write_atomic(&target, text.as_bytes())
}

/// A path named on the command line: a directory stands for its devbox.toml.
fn project_file(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join(FILE_NAME)
    } else {
        p.to_path_buf()
    }
}

fn accept(host: &HostEnv, path: &Path) -> Result<i32> {
    let path = project_file(path);
    let i = trust::inspect(&path, trust::me())?;
    let quoted = trust::shell_quote(&i.file);
    if i.problems.is_empty() {
        println!(
            "{} is yours and nobody else can change it: devbox uses it without trust.",
            i.file.display()
        );
        return Ok(0);
    }
    let (cfg_path, text) = config_text()?;
    let user = UserConfig::parse(&text, &cfg_path, host)?;
    let entry = Trusted {
        file: i.file.clone(),
        owner: i.owner,
    };
    if user.trusted.contains(&entry) {
        println!(
            "{} is trusted already (owner {}). Undo with `devbox trust --remove {quoted}`.",
            i.file.display(),
            trust::who(i.owner)
        );
        return Ok(0);
    }
    // An entry for the same file with another owner is replaced.
    let text = trust::remove_entries(&text, std::slice::from_ref(&i.file));
    let text = trust::add_entry(&text, &entry, &crate::paths::user_name(i.owner))?;
    let mut want = user.clone();
    want.file = Some(cfg_path.clone());
    want.trusted.retain(|t| t.file != i.file);
    want.trusted.push(entry);
    save(&cfg_path, &text, &want, host)?;
    let reasons: Vec<String> = i.problems.iter().map(trust::Problem::describe).collect();
    println!(
        "Trusted {} (owner {}), although {}.\n  devbox now uses it: its setup commands, env and enter hooks run as you, and its owner can change them.\n  Recorded in {}; undo with `devbox trust --remove {quoted}`.",
        i.file.display(),
        trust::who(i.owner),
        reasons.join("; "),
        cfg_path.display()
    );
    Ok(0)
}

fn untrust(host: &HostEnv, path: &Path) -> Result<i32> {
    let (cfg_path, text) = config_text()?;
    let user = UserConfig::parse(&text, &cfg_path, host)?;
    // The file may be gone: match it as written too, and as a directory's devbox.toml.
    let clean = crate::paths::clean_path(path);
    let mut names = vec![clean.join(FILE_NAME), clean];
    for n in names.clone() {
        if let Ok(c) = std::fs::canonicalize(&n) {
            names.push(c);
        }
    }
    let gone: Vec<PathBuf> = user
        .trusted
        .iter()
        .filter(|t| names.contains(&t.file))
        .map(|t| t.file.clone())
        .collect();
    if gone.is_empty() {
        let have: Vec<String> = user
            .trusted
            .iter()
            .map(|t| t.file.display().to_string())
            .collect();
        bail!(
            "{} is not trusted\n  hint: {}",
            path.display(),
            if have.is_empty() {
                "no project file is trusted".to_string()
            } else {
                format!("trusted files: {}", have.join(", "))
            }
        );
    }
    let new_text = trust::remove_entries(&text, &gone);
    let mut want = user.clone();
    want.trusted.retain(|t| !gone.contains(&t.file));
    save(&cfg_path, &new_text, &want, host)?;
    for f in &gone {
        println!(
            "{} is no longer trusted: devbox refuses it again unless it is yours alone.",
            f.display()
        );
    }
    Ok(0)
}

fn show(host: &HostEnv) -> Result<i32> {
    let user = UserConfig::load(host)?;
    if user.trusted.is_empty() {
        println!("No trusted project files. Accept one with `devbox trust PATH`.");
        return Ok(0);
    }
    for t in &user.trusted {
        let state = match std::fs::metadata(&t.file) {
            Err(_) => " (gone)".to_string(),
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                if m.uid() == t.owner {
                    String::new()
                } else {
                    format!(" (now belongs to {}: refused)", trust::who(m.uid()))
                }
            }
        };
        println!("{}  owner {}{state}", t.file.display(), trust::who(t.owner));
    }
    Ok(0)
}
