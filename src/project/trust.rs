//! Whose `devbox.toml` devbox uses.
//!
//! A project file runs code as you: its `setup` commands as in-box root with your home mounted,
//! its `[hooks] enter` commands and `[box.env]` in every session. So devbox uses a project file
//! only when nobody but you (and root) can have written it:
//!
//! - the file belongs to you (a file of root's counts as someone else's too: a file you did
//!   not write, e.g. one unpacked by root from an archive or shipped by a package, should not
//!   run as you unasked), and neither its group nor others may write it;
//! - every directory from the file's up to `/` (after links are resolved) belongs to you or
//!   root, and one that its group or others may write has the sticky bit (`/tmp`), so nobody
//!   else can rename the file or a directory on the way and put their own in its place. A
//!   group-writable directory counts as writable by others, as for devbox's store (see
//!   `paths::check_path_safe`).
//!
//! Anything else is refused with an error that names the file, its owner and why, unless you
//! accepted it with `devbox trust PATH`, which records the file's canonical path and its
//! owner's uid in your configuration (`[[trusted]]` in `config.toml`, like git's
//! `safe.directory`). The owner is part of the record: the same path written by anyone else
//! is refused again. A trusted file's owner can change what it runs as you; that is what
//! trusting means.
//!
//! The file is opened once, through its canonical path without following a final link, and
//! the owner and mode checked are those of the opened file, whose text is what is parsed: no
//! rename between the check and the read can swap it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One `[[trusted]]` entry of the user configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    /// Canonical path of the project file.
    pub file: PathBuf,
    /// The uid that owned it when it was trusted.
    pub owner: u32,
}

/// Why a project file is not used without trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file belongs to another user (root included).
    Owner(u32),
    /// Its group or others may write the file (its mode).
    FileWritable(u32),
    /// A directory on the way belongs to another user (not root).
    DirOwner(PathBuf, u32),
    /// A directory on the way may be written by its group or others and is not sticky (mode).
    DirWritable(PathBuf, u32),
}

impl Problem {
    /// The reason, as the end of "devbox does not use FILE: ...".
    pub fn describe(&self) -> String {
        match self {
            Problem::Owner(uid) => format!("it belongs to {}, not to you", who(*uid)),
            Problem::FileWritable(mode) => format!(
                "other users may change it (mode {:o}: writable by its {})",
                mode & 0o7777,
                writers(*mode)
            ),
            Problem::DirOwner(dir, uid) => format!(
                "it is in {}, which belongs to {}, who can replace it",
                dir.display(),
                who(*uid)
            ),
            Problem::DirWritable(dir, mode) => format!(
                "it is in {}, which other users may write (mode {:o}, writable by its {}, without the sticky bit), so they can replace it",
                dir.display(),
                mode & 0o7777,
                writers(*mode)
            ),
        }
    }
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "group",
        _ => "others",
    }
}

/// "alice (uid 1001)", or "uid 1001" when the uid has no name.
pub fn who(uid: u32) -> String {
    let name = crate::paths::user_name(uid);
    if name == uid.to_string() {
        format!("uid {uid}")
    } else {
        format!("{name} (uid {uid})")
    }
}

/// The uid whose project files are used: the real uid of this process.
pub fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Problems of a file with this owner and mode, for user `me`.
pub(crate) fn file_problems(owner: u32, mode: u32, me: u32) -> Vec<Problem> {
    let mut out = Vec::new();
    if owner != me {
        out.push(Problem::Owner(owner));
    }
    if mode & 0o022 != 0 {
        out.push(Problem::FileWritable(mode));
    }
    out
}

/// The problem of a directory on the way to a project file, if any.
pub(crate) fn dir_problem(dir: &Path, owner: u32, mode: u32, me: u32) -> Option<Problem> {
    if owner != me && owner != 0 {
        return Some(Problem::DirOwner(dir.to_path_buf(), owner));
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Some(Problem::DirWritable(dir.to_path_buf(), mode));
    }
    None
}

/// A project file as opened and inspected.
#[derive(Debug)]
pub struct Inspected {
    /// Canonical path.
    pub file: PathBuf,
    pub owner: u32,
    /// What would keep devbox from using it untrusted; empty when it is yours alone.
    pub problems: Vec<Problem>,
    /// Its text, read from the descriptor that was inspected.
    pub text: String,
}

/// Opens `path` (links resolved) and inspects it and the directories above it for user `me`.
pub fn inspect(path: &Path, me: u32) -> Result<Inspected> {
    let file = fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("cannot inspect {}", file.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file\n  hint: a project file is a devbox.toml file",
            file.display()
        );
    }
    let mut problems = file_problems(meta.uid(), meta.mode(), me);
    for dir in file.ancestors().skip(1) {
        let m = fs::symlink_metadata(dir)
            .with_context(|| format!("cannot inspect {}", dir.display()))?;
        if let Some(p) = dir_problem(dir, m.uid(), m.mode(), me) {
            problems.push(p);
        }
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Inspected {
        file,
        owner: meta.uid(),
        problems,
        text,
    })
}

/// Opens the project file `path` for use by user `me`: its canonical path and text when it is
/// the user's alone or trusted (`trusted` is asked only then); otherwise an error naming the
/// file, its owner, why, and `devbox trust`.
pub fn open(
    path: &Path,
    me: u32,
    trusted: impl FnOnce() -> Result<Vec<Trusted>>,
) -> Result<(PathBuf, String)> {
    let i = inspect(path, me)?;
    if i.problems.is_empty() {
        return Ok((i.file, i.text));
    }
    let list = trusted()?;
    if list.iter().any(|t| t.file == i.file && t.owner == i.owner) {
        crate::ui::detail(format_args!(
            "{} is trusted ({})",
            i.file.display(),
            who(i.owner)
        ));
        return Ok((i.file, i.text));
    }
    Err(untrusted_error(&i, &list))
}

fn untrusted_error(i: &Inspected, list: &[Trusted]) -> anyhow::Error {
    let reasons: Vec<String> = i.problems.iter().map(Problem::describe).collect();
    let owned = if i.problems.iter().any(|p| matches!(p, Problem::Owner(_))) {
        String::new()
    } else {
        format!(" (owner: {})", who(i.owner))
    };
    let before = match list.iter().find(|t| t.file == i.file) {
        Some(t) => format!(
            " You trusted it when it belonged to {}; it now belongs to {}.",
            who(t.owner),
            who(i.owner)
        ),
        None => String::new(),
    };
    anyhow::anyhow!(
        "devbox does not use {}{owned}: {}\n  hint: a project file's setup commands, env and enter hooks run as you.{before} If you trust the file and its owner, accept it with `devbox trust {}`; or name a box of your own: `devbox enter NAME`",
        i.file.display(),
        reasons.join("; "),
        shell_quote(&i.file)
    )
}

/// `p` as a shell word: as is when it has only safe characters, else in single quotes.
pub fn shell_quote(p: &Path) -> String {
    let s = p.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `text` (a user configuration) with a `[[trusted]]` table for `t` appended; `owner_name`
/// goes in a comment. The caller checks the result by parsing it.
pub fn add_entry(text: &str, t: &Trusted, owner_name: &str) -> Result<String> {
    let Some(file) = t.file.to_str() else {
        bail!(
            "{} is not valid UTF-8, which the configuration file cannot hold\n  hint: rename the directory, or use --config with a path that is UTF-8",
            t.file.display()
        );
    };
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "[[trusted]]                       # written by `devbox trust`\nfile = {}\nowner = {}{}\n",
        toml::Value::String(file.to_string()),
        t.owner,
        if owner_name.is_empty() {
            String::new()
        } else {
            format!(
                "                      # {}",
                owner_name.replace(['\n', '\r'], " ")
            )
        }
    ));
    Ok(out)
}

/// `text` without the `[[trusted]]` tables whose `file` is one of `files`: each table from its
/// header to its last key line (comments and blank lines before the next header stay). The
/// caller checks the result by parsing it.
pub fn remove_entries(text: &str, files: &[PathBuf]) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let is_trusted_header = |l: &str| {
        let t = l.trim();
        let t = t.split('#').next().unwrap_or("").trim();
        t.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .is_some_and(|k| k.trim() == "trusted")
    };
    let mut drop = vec![false; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        if !is_trusted_header(lines[i]) {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < lines.len() && !is_header(lines[end]) {
            end += 1;
        }
        // The table's own lines: up to its last line that is neither blank nor a comment.
        let mut last = end;
        while last > i + 1 && {
            let t = lines[last - 1].trim();
            t.is_empty() || t.starts_with('#')
        } {
            last -= 1;
        }
        let body: String = lines[i + 1..last].concat();
        let file = toml::from_str::<toml::Table>(&body)
            .ok()
            .and_then(|t| t.get("file").and_then(|v| v.as_str()).map(PathBuf::from));
        if file.is_some_and(|f| files.contains(&f)) {
            drop[i..last].iter_mut().for_each(|d| *d = true);
            // The blank line `add_entry` put before it goes too.
            if i > 0 && lines[i - 1].trim().is_empty() {
                drop[i - 1] = true;
            }
        }
        i = end;
    }
    lines
        .iter()
        .zip(&drop)
        .filter(|(_, d)| !**d)
        .map(|(l, _)| *l)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_must_be_yours_and_yours_alone() {
        assert!(file_problems(1000, 0o100644, 1000).is_empty());
        assert!(file_problems(1000, 0o100600, 1000).is_empty());
        assert_eq!(file_problems(1001, 0o100644, 1000), [Problem::Owner(1001)]);
        // Root's file is someone else's too.
        assert_eq!(file_problems(0, 0o100644, 1000), [Problem::Owner(0)]);
        assert_eq!(
            file_problems(1000, 0o100664, 1000),
            [Problem::FileWritable(0o100664)]
        );
        assert_eq!(
            file_problems(1000, 0o100646, 1000),
            [Problem::FileWritable(0o100646)]
        );
    }

    #[test]
    fn directories_must_be_closed_to_others_or_sticky() {
        let d = Path::new("/x");
        assert_eq!(dir_problem(d, 1000, 0o40755, 1000), None);
        assert_eq!(dir_problem(d, 0, 0o40755, 1000), None);
        // /tmp: root's, world-writable, sticky.
        assert_eq!(dir_problem(d, 0, 0o41777, 1000), None);
        assert_eq!(
            dir_problem(d, 0, 0o40777, 1000),
            Some(Problem::DirWritable(d.into(), 0o40777))
        );
        assert_eq!(
            dir_problem(d, 1000, 0o40775, 1000),
            Some(Problem::DirWritable(d.into(), 0o40775))
        );
        // Another user's directory, sticky or not: they may rename what is in it.
        assert_eq!(
            dir_problem(d, 1001, 0o41777, 1000),
            Some(Problem::DirOwner(d.into(), 1001))
        );
        assert_eq!(
            dir_problem(d, 1001, 0o40755, 1000),
            Some(Problem::DirOwner(d.into(), 1001))
        );
    }

    #[test]
    fn open_reads_a_safe_file_and_refuses_others_unless_trusted() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("p");
        fs::create_dir(&proj).unwrap();
        fs::set_permissions(&proj, fs::Permissions::from_mode(0o755)).unwrap();
        let f = proj.join("devbox.toml");
        fs::write(&f, "text").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let owner = fs::metadata(&f).unwrap().uid();
        // Through a link to the directory: the canonical path comes back.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&proj, &link).unwrap();
        let canon = fs::canonicalize(&f).unwrap();
        let no_list = || -> Result<Vec<Trusted>> { panic!("asked for the trusted list") };
        let (file, text) = open(&link.join("devbox.toml"), owner, no_list).unwrap();
        assert_eq!((file.as_path(), text.as_str()), (canon.as_path(), "text"));

        // As someone else: refused, naming the file, the owner and `devbox trust`.
        let other = owner + 4242;
        let e = format!("{:#}", open(&f, other, || Ok(vec![])).unwrap_err());
        assert!(
            e.starts_with(&format!(
                "devbox does not use {}: it belongs to ",
                canon.display()
            )),
            "{e}"
        );
        assert!(e.contains(&format!("(uid {owner}), not to you")), "{e}");
        assert!(
            e.contains("hint: ") && e.contains(&format!("`devbox trust {}`", canon.display())),
            "{e}"
        );
        // Trusted with its owner: used; trusted for another owner: refused, saying so.
        let t = Trusted {
            file: canon.clone(),
            owner,
        };
        assert!(open(&f, other, || Ok(vec![t.clone()])).is_ok());
        let wrong = Trusted {
            file: canon.clone(),
            owner: owner + 1,
        };
        let e = format!("{:#}", open(&f, other, || Ok(vec![wrong])).unwrap_err());
        assert!(e.contains("You trusted it when it belonged to"), "{e}");

        // A group-writable directory on the way: refused for its owner too.
        fs::set_permissions(&proj, fs::Permissions::from_mode(0o775)).unwrap();
        let e = format!("{:#}", open(&f, owner, || Ok(vec![])).unwrap_err());
        assert!(
            e.contains(&format!(
                "it is in {}, which other users may write (mode 775, writable by its group, without the sticky bit)",
                fs::canonicalize(&proj).unwrap().display()
            )),
            "{e}"
        );
        assert!(e.contains("(owner: "), "{e}");
        fs::set_permissions(&proj, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(open(&f, owner, || Ok(vec![])).is_ok());

        // Not a regular file.
        let e = format!("{:#}", open(&proj, owner, || Ok(vec![])).unwrap_err());
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn entries_are_added_and_removed_as_text() {
        let t = Trusted {
            file: "/srv/a b/devbox.toml".into(),
            owner: 1002,
        };
        let start =
            "# my settings\ndefault_box = \"dev\"\n[registry_mirrors]\n\"docker.io\" = [\"m\"]";
        let one = add_entry(start, &t, "bob").unwrap();
        let parsed: toml::Table = toml::from_str(&one).unwrap();
        let list = parsed["trusted"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["file"].as_str(), Some("/srv/a b/devbox.toml"));
        assert_eq!(list[0]["owner"].as_integer(), Some(1002));
        assert!(one.contains("# bob"), "{one}");
        let u = Trusted {
            file: "/x/devbox.toml".into(),
            owner: 0,
        };
        let two = add_entry(&one, &u, "root").unwrap();
        // A comment and a table after the entries stay where they are.
        let two = format!("{two}\n# mirrors of quay\n[other]\nk = 1\n");
        let back = remove_entries(&two, std::slice::from_ref(&t.file));
        let parsed: toml::Table = toml::from_str(&back).unwrap();
        let list = parsed["trusted"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["file"].as_str(), Some("/x/devbox.toml"));
        assert!(back.starts_with(start), "{back}");
        assert!(back.contains("# mirrors of quay\n[other]"), "{back}");
        let none = remove_entries(&back, std::slice::from_ref(&u.file));
        assert_eq!(
            none,
            format!("{start}\n\n# mirrors of quay\n[other]\nk = 1\n")
        );
        // Nothing to remove: the text as it was.
        assert_eq!(remove_entries(&none, &[u.file]), none);
        assert_eq!(
            add_entry("", &t, "")
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .trim_end(),
            "[[trusted]]                       # written by `devbox trust`"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_quote(Path::new("/a/b-c.toml")), "/a/b-c.toml");
        assert_eq!(shell_quote(Path::new("/a b/x")), "'/a b/x'");
        assert_eq!(shell_quote(Path::new("/it's")), "'/it'\\''s'");
    }
}
