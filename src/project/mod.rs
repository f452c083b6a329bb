//! Per-project configuration: `devbox.toml` discovery, parsing and validation, the precedence
//! of settings (flags > project > user config > built-in defaults), change detection, and the
//! starter file of `devbox init`.
//!
//! This module reads files and the environment it is handed; it starts nothing.
//!
//! # `devbox.toml`
//!
//! ```toml
//! [box]                          # what the box is made of (required)
//! name = "proj"                  # default: the project directory's name, sanitised
//! image = "debian:13"            # required: catalog name, OCI reference, tarball path or URL
//! packages = ["build-essential", "git"]
//! setup = ["curl -fsSL https://example.org/install.sh | sh"]
//! unshare = ["net"]              # net, pid, ipc, or all
//! home = "shared"                # or a path that becomes $HOME inside
//!
//! [box.env]                      # set in every session
//! GOPATH = "$HOME/go"
//!
//! [[box.mounts]]                 # one per host directory to bind into the box
//! host = "~/data"
//! box = "/data"
//! readonly = true                # default false
//!
//! [hooks]                        # what happens in sessions (optional)
//! enter = ["source .venv/bin/activate"]
//! ```
//!
//! Why `[box]` and `[hooks]`: `[box]` holds everything that describes the box itself (what it
//! is built from and how it is started, so what change detection compares), `[hooks]` what runs
//! in sessions; further top-level tables can be added later without touching either.
//!
//! Keys and values:
//! - `name`: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters (the box-name rule). Without
//!   it, the directory holding `devbox.toml` gives the name, with other characters replaced by
//!   `-` (see [`name_from_dir`]). A box belongs to one project file (its canonical path is
//!   recorded in the box): another file that comes to the same name is refused with both
//!   paths and a free name to write (`crate::provision::claim`).
//! - `image`: not empty. `./x`, `../x`, `~/x` and `~` are local paths, taken relative to the
//!   project directory; anything else (a catalog name, an OCI reference, an absolute path, a
//!   URL) is passed on as written.
//! - `packages`: distribution package names, installed as in-box root when the box is made;
//!   each is non-empty, has no white space and does not start with `-`. Duplicates are dropped.
//! - `setup`: shell commands run once, as in-box root, after the packages. Not empty.
//! - `unshare`: `net`, `pid`, `ipc`, `all` (all three); the box gets its own namespace of each
//!   kind listed instead of the host's. Order and repeats do not matter.
//! - `home`: `"shared"` (the default: your home at its usual path) or a path: absolute, `~` or
//!   `~/...`, or relative to the project directory; a relative path must contain a `/`
//!   (`./.home`), so that a misspelt `"shared"` is an error rather than a directory. The
//!   directory becomes `$HOME` inside; the part of it that exists is made canonical when the
//!   file is loaded, the rest is made when the box is.
//! - `[box.env]`: keys are variable names (`[A-Za-z_][A-Za-z0-9_]*`), values strings with
//!   `$VAR`, `${VAR}`, `${VAR:-DEFAULT}` and `$$` expanded from the host's environment when the
//!   file is loaded; an unset variable is an error (see [`expand`]).
//! - `[[box.mounts]]`: `host` (`~`, `$VAR` expanded; relative to the project directory; made
//!   canonical on the host when the file is loaded, so it must exist: links are followed as
//!   the host sees them and `..` is gone before the box's mount plan ever sees the path),
//!   `box` (absolute, without `..`, not `/` and not under `/proc`, `/sys` or `/run/host`, which
//!   devbox mounts itself), `readonly` (default false). Two mounts at the same `box` path are an
//!   error. Mounts are kept sorted by `box` path, so parents come before their children.
//! - `[hooks] enter`: shell commands run as you at the start of every `enter`/`run` session.
//!
//! Every table rejects unknown keys; every error names the file, line and column, the key and
//! what is allowed (see [`ConfigError`]).
//!
//! A file is used only when it is the user's alone or they trusted it ([`trust`]); the
//! nearest file that is not is an error, never skipped for one further up or the only box.

mod change;
mod error;
pub mod expand;
pub mod lock;
mod schema;
mod settings;
pub mod trust;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use toml::de::DeTable;
use toml::Spanned;

use crate::state::{self, Isolate};

pub use change::{diff, fingerprint, Action, Change};
pub use error::ConfigError;
pub use expand::{ExpandError, HostEnv};
pub use settings::{resolve, Defaults, Flags, UserConfig};

use error::{list, suggest, Doc};

/// The project file's name.
pub const FILE_NAME: &str = "devbox.toml";

/// The environment variable naming a project file (below `--config`, above discovery).
pub const CONFIG_ENV: &str = "DEVBOX_CONFIG";

/// Finds the project file: `explicit` (`--config FILE`) wins, then `env` (`$DEVBOX_CONFIG`,
/// ignored when empty), then `devbox.toml` in `start` or the nearest parent directory, up to
/// the file-system root. Relative `explicit`/`env` paths are taken relative to `start` (pass
/// the current directory); a directory stands for its `devbox.toml`. An explicit or
/// environment path that does not exist is an error naming it; no file found is `Ok(None)`.
/// Whether the file may be used is [`Project::load`]'s to decide: the nearest file is the
/// project, and one the user may not use is an error rather than a reason to look further.
pub fn find(start: &Path, explicit: Option<&Path>, env: Option<&OsStr>) -> Result<Option<PathBuf>> {
    let named = |p: &Path, how: &str| -> Result<PathBuf> {
        let p = start.join(p);
        let file = if p.is_dir() { p.join(FILE_NAME) } else { p };
        if !file.is_file() {
            if file.exists() {
                bail!("{} (named by {how}) is not a file", file.display());
            }
            bail!(
                "{} (named by {how}) does not exist\n  hint: check the path, or write a starter file with `devbox init`",
                file.display()
            );
        }
        Ok(file)
    };
    if let Some(p) = explicit {
        return named(p, "--config").map(Some);
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return named(Path::new(e), CONFIG_ENV).map(Some);
    }
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// What `home` says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Home {
    /// Your home directory, at its usual path (devbox's default).
    Shared,
    /// This host directory becomes `$HOME` inside the box (absolute, expanded).
    Dir(PathBuf),
}

impl std::fmt::Display for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Home::Shared => f.write_str("shared"),
            Home::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One `[[box.mounts]]` entry, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mount {
    /// Host path: `~` and variables expanded; when loaded from a file, canonical on the host
    /// (links resolved, no `..`) and existing at that time.
    pub host: PathBuf,
    /// Absolute path inside the box, without `.` or `..` components.
    pub box_path: PathBuf,
    pub readonly: bool,
}

impl std::fmt::Display for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.host.display(), self.box_path.display())?;
        if self.readonly {
            f.write_str(" (read-only)")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// Run as the user at the start of every enter/run session.
    pub enter: Vec<String>,
}

/// A loaded, validated and expanded `devbox.toml`. It serializes (as JSON) so a box can keep
/// the project it was made from, for `devbox apply` to tell what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The file it was read from: canonical when loaded (links resolved), which is how its box
    /// knows it.
    pub file: PathBuf,
    /// The project directory: the file's directory. Relative paths in the file start here.
    pub dir: PathBuf,
    pub name: String,
    /// Whether `name` was written in the file (else it came from the directory).
    pub name_given: bool,
    pub image: String,
    pub packages: Vec<String>,
    pub setup: Vec<String>,
    /// Sorted, without repeats.
    pub unshare: Vec<Isolate>,
    pub home: Home,
    pub env: BTreeMap<String, String>,
    /// Sorted by `box_path`.
    pub mounts: Vec<Mount>,
    pub hooks: Hooks,
    /// The prompt of an interactive bash in the box (`PS1` syntax); None: devbox's. Like env
    /// and hooks, read by every session: not part of the box, so no change to it asks for
    /// `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "box")]
    boxed: RawBox,
    #[serde(default)]
    hooks: RawHooks,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBox {
    name: Option<Spanned<String>>,
    image: Spanned<String>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    setup: Vec<Spanned<String>>,
    #[serde(default)]
    unshare: Vec<Spanned<String>>,
    home: Option<Spanned<String>>,
    prompt: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    mounts: Vec<RawMount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    host: Spanned<String>,
    #[serde(rename = "box")]
    box_path: Spanned<String>,
    #[serde(default)]
    readonly: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    enter: Vec<Spanned<String>>,
}

/// The values `unshare` accepts.
pub const UNSHARE_VALUES: &[&str] = &["net", "pid", "ipc", "all"];

impl Project {
    /// Reads and parses `file` for this user: the file is used only when it is theirs alone or
    /// they trusted it (see [`trust`]); its path is made canonical (links resolved), so the
    /// project directory is where the file really is. Mount sources and `home` are resolved
    /// on the host now: links followed, `..` gone, a mount source that does not exist an error
    /// at its line and column.
    pub fn load(file: &Path, host: &HostEnv) -> Result<Project> {
        let (file, text) = trust::open(file, trust::me(), || Ok(UserConfig::load(host)?.trusted))?;
        Ok(Project::parse_inner(&text, &file, host, true)?)
    }

    /// Parses the text of `file` (used for error messages and as the base of relative paths).
    /// Paths are expanded but not looked up on disk.
    #[cfg(test)]
    pub fn parse(text: &str, file: &Path, host: &HostEnv) -> Result<Project, ConfigError> {
        Project::parse_inner(text, file, host, false)
    }

    /// [`Project::parse`]; with `resolve`, host paths are made canonical on this host.
    fn parse_inner(
        text: &str,
        file: &Path,
        host: &HostEnv,
        resolve: bool,
    ) -> Result<Project, ConfigError> {
        let doc = Doc { text, file };
        let root = DeTable::parse(text).map_err(|e| doc.syntax(&e))?;
        schema::check(&doc, root.get_ref(), root.span(), &schema::PROJECT)?;
        let raw: RawFile =
            toml::from_str(text).map_err(|e| schema::serde_error(&doc, root.get_ref(), &e))?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let b = raw.boxed;

        let (name, name_given) = match &b.name {
            Some(n) => {
                if state::validate_name(n.get_ref()).is_err() {
                    return Err(doc.err(
                        n.span(),
                        format!(
                            "`name` in [box] is {:?}, which is not a valid box name",
                            n.get_ref()
                        ),
                        Some(format!(
                            "{}; e.g. name = \"{}\"",
                            state::NAME_RULE,
                            name_from_str(n.get_ref())
                        )),
                    ));
                }
                (n.get_ref().clone(), true)
            }
            None => (name_from_dir(&dir), false),
        };

        let image = {
            let v = b.image.get_ref();
            let span = b.image.span();
            if v.trim().is_empty() {
                return Err(doc.err(
                    span,
                    "`image` in [box] is empty",
                    Some("name an image: a catalog name (image = \"debian:13\"), an OCI reference, or a rootfs tarball's path or URL".to_string()),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(doc.err(
                    span,
                    "`image` in [box] contains control characters",
                    Some("write the image on one line, e.g. image = \"debian:13\"".to_string()),
                ));
            }
            let v = v.trim();
            if v == "~" || v.starts_with("~/") || v.starts_with("./") || v.starts_with("../") {
                let p = expand::expand_path(v, host, &dir)
                    .map_err(|e| expand_err(&doc, span, "`image` in [box]", &e))?;
                p.to_string_lossy().into_owned()
            } else {
                v.to_string()
            }
        };

        let mut packages: Vec<String> = Vec::new();
        for p in &b.packages {
            let v = p.get_ref();
            let bad = if v.is_empty() {
                Some("is empty")
            } else if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Some("contains white space")
            } else if v.starts_with('-') {
                Some("starts with `-`")
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(doc.err(
                    p.span(),
                    format!("package {v:?} in `packages` in [box] {why}"),
                    Some(
                        "list one package name per string, e.g. packages = [\"git\", \"make\"]"
                            .to_string(),
                    ),
                ));
            }
            if !packages.contains(v) {
                packages.push(v.clone());
            }
        }

        let setup = commands(&doc, &b.setup, "setup", "[box]")?;
        let enter = commands(&doc, &raw.hooks.enter, "enter", "[hooks]")?;

        let mut unshare = Vec::new();
        for u in &b.unshare {
            match u.get_ref().as_str() {
                "net" => unshare.push(Isolate::Net),
                "pid" => unshare.push(Isolate::Pid),
                "ipc" => unshare.push(Isolate::Ipc),
                "all" => unshare.extend([Isolate::Net, Isolate::Pid, Isolate::Ipc]),
                other => {
                    let mut message = format!("unknown namespace {other:?} in `unshare` in [box]");
                    if let Some(s) = suggest(other, UNSHARE_VALUES) {
                        message.push_str(&format!("; did you mean \"{s}\"?"));
                    }
                    return Err(doc.err(
                        u.span(),
                        message,
                        Some(format!(
                            "the values allowed are: {} (e.g. unshare = [\"net\"])",
                            list(UNSHARE_VALUES)
                        )),
                    ));
                }
            }
        }
        unshare.sort();
        unshare.dedup();

        let home = match &b.home {
            None => Home::Shared,
            Some(h) => parse_home(&doc, h, host, &dir, resolve)?,
        };

        let mut env = BTreeMap::new();
        for (k, v) in &b.env {
            let key = k.get_ref();
            if !expand::is_var_name(key) {
                return Err(doc.err(
                    k.span(),
                    format!("{key:?} in [box.env] is not a valid environment variable name"),
                    Some("names are letters, digits and `_`, and do not start with a digit, e.g. GOPATH = \"$HOME/go\"".to_string()),
                ));
            }
            let place = format!("`{key}` in [box.env]");
            let value = expand::expand(v.get_ref(), host)
                .map_err(|e| expand_err(&doc, v.span(), &place, &e))?;
            if value.contains('\0') {
                return Err(doc.err(
                    v.span(),
                    format!("{place} contains a NUL character"),
                    Some("environment values cannot hold NUL; remove it".to_string()),
                ));
            }
            env.insert(key.clone(), value);
        }

        let mut mounts: Vec<(Mount, usize)> = Vec::new();
        for m in &b.mounts {
            let host_path = {
                let v = m.host.get_ref();
                if v.trim().is_empty() {
                    return Err(doc.err(
                        m.host.span(),
                        "`host` in [[box.mounts]] is empty",
                        Some("name a host directory, e.g. host = \"~/data\"".to_string()),
                    ));
                }
                let p = expand::expand_path(v, host, &dir)
                    .map_err(|e| expand_err(&doc, m.host.span(), "`host` in [[box.mounts]]", &e))?;
                if resolve {
                    mount_source(&doc, &m.host, &p)?
                } else {
                    p
                }
            };
            let box_path = box_path(&doc, &m.box_path)?;
            if let Some((_, other)) = mounts.iter().find(|(o, _)| o.box_path == box_path) {
                return Err(doc.err(
                    m.box_path.span(),
                    format!(
                        "two mounts at {} in [[box.mounts]] (the other is on line {})",
                        box_path.display(),
                        doc.line_of(*other)
                    ),
                    Some("give each mount its own `box` path, or remove one".to_string()),
                ));
            }
            mounts.push((
                Mount {
                    host: host_path,
                    box_path,
                    readonly: m.readonly,
                },
                m.box_path.span().start,
            ));
        }
        let mut mounts: Vec<Mount> = mounts.into_iter().map(|(m, _)| m).collect();
        mounts.sort_by(|a, b| a.box_path.cmp(&b.box_path));

        Ok(Project {
            file: file.to_path_buf(),
            dir,
            name,
            name_given,
            image,
            packages,
            setup,
            unshare,
            home,
            env,
            mounts,
            hooks: Hooks { enter },
            prompt: b.prompt.as_ref().map(|p| p.get_ref().clone()),
        })
    }
}

fn commands(
    doc: &Doc<'_>,
    items: &[Spanned<String>],
    key: &str,
    table: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (i, c) in items.iter().enumerate() {
        if c.get_ref().trim().is_empty() {
            return Err(doc.err(
                c.span(),
                format!("command {} of `{key}` in {table} is empty", i + 1),
                Some(format!(
                    "remove it, or write a shell command, e.g. {key} = [\"echo hello\"]"
                )),
            ));
        }
        if c.get_ref().contains('\0') {
            return Err(doc.err(
                c.span(),
                format!(
                    "command {} of `{key}` in {table} contains a NUL character",
                    i + 1
                ),
                Some("remove it".to_string()),
            ));
        }
        out.push(c.get_ref().clone());
    }
    Ok(out)
}

fn expand_err(doc: &Doc<'_>, span: Range<usize>, place: &str, e: &ExpandError) -> ConfigError {
    doc.err(span, format!("{place} {e}"), Some(e.hint()))
}

/// A mount source as the host sees it: canonical (links followed on the host, `..` resolved
/// there), and existing. The box's mount plan binds exactly this path, so a link in it cannot
/// be read again inside the box, where `/` is the box's root.
fn mount_source(doc: &Doc<'_>, v: &Spanned<String>, p: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::canonicalize(p).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be used ({})", std::io::Error::from(e.kind()))
        };
        let shown = if Path::new(v.get_ref()) == p {
            format!("{:?}", v.get_ref())
        } else {
            format!("{:?} ({})", v.get_ref(), p.display())
        };
        doc.err(
            v.span(),
            format!("`host` in [[box.mounts]] is {shown}, which {what} on this host"),
            Some(format!(
                "create it first (mkdir -p {}), or correct the path; mount sources are looked up on the host when devbox.toml is read",
                trust::shell_quote(p)
            )),
        )
    })
}

/// A directory to be made (a project's `home`) as the host sees it: the part that exists
/// made canonical, the rest appended. `None` when the rest has a `..` (it cannot be resolved
/// before it exists) or the existing part is not a directory.
fn resolve_to_be_made(p: &Path) -> Option<PathBuf> {
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut at = p;
    loop {
        match std::fs::canonicalize(at) {
            Ok(c) => {
                if !c.is_dir() {
                    return None;
                }
                let mut out = c;
                out.extend(rest.iter().rev());
                return Some(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match at.components().next_back() {
                    Some(Component::Normal(n)) => rest.push(n),
                    _ => return None,
                }
                at = at.parent()?;
            }
            Err(_) => return None,
        }
    }
}

fn parse_home(
    doc: &Doc<'_>,
    h: &Spanned<String>,
    host: &HostEnv,
    dir: &Path,
    resolve: bool,
) -> Result<Home, ConfigError> {
    let v = h.get_ref();
    if v == "shared" {
        return Ok(Home::Shared);
    }
    let looks_like_path = v.starts_with('/') || v.starts_with('~') || v.contains('/');
    if !looks_like_path {
        let mut message =
            format!("`home` in [box] is {v:?}, which is neither \"shared\" nor a path");
        if suggest(v, &["shared"]).is_some() {
            message.push_str("; did you mean \"shared\"?");
        }
        let dir_hint = if v.trim().is_empty() || v.chars().any(char::is_control) {
            String::new()
        } else {
            format!(" (home = \"./{v}\" for a directory in the project)")
        };
        return Err(doc.err(
            h.span(),
            message,
            Some(format!(
                "write home = \"shared\" for your own home, or a path: absolute, ~/..., or relative with a `/`{dir_hint}"
            )),
        ));
    }
    let p = expand::expand_path(v, host, dir)
        .map_err(|e| expand_err(doc, h.span(), "`home` in [box]", &e))?;
    if !resolve {
        return Ok(Home::Dir(p));
    }
    match resolve_to_be_made(&p) {
        Some(r) => Ok(Home::Dir(r)),
        None => Err(doc.err(
            h.span(),
            format!(
                "`home` in [box] is {v:?} ({}), which cannot be a directory on this host",
                p.display()
            ),
            Some("name a directory that exists or can be made: no file on the way, and no `..` after the part that exists".to_string()),
        )),
    }
}

fn box_path(doc: &Doc<'_>, b: &Spanned<String>) -> Result<PathBuf, ConfigError> {
    let v = b.get_ref();
    let err = |what: String, hint: &str| doc.err(b.span(), what, Some(hint.to_string()));
    if !v.starts_with('/') {
        return Err(err(
            format!("`box` in [[box.mounts]] is {v:?}, a relative path"),
            "the path inside the box must be absolute, e.g. box = \"/data\"",
        ));
    }
    let p = Path::new(v);
    if p.components().any(|c| c == Component::ParentDir) || v.contains('\0') {
        return Err(err(
            format!("`box` in [[box.mounts]] is {v:?}, which has a `..` component"),
            "write the path inside the box without `..`, e.g. box = \"/data\"",
        ));
    }
    let p = crate::paths::clean_path(p);
    if p == Path::new("/") {
        return Err(err(
            "`box` in [[box.mounts]] is \"/\", the box's root".to_string(),
            "mount at a directory below the root, e.g. box = \"/data\"",
        ));
    }
    if let Some(r) = state::RESERVED_BOX_PATHS.iter().find(|r| p.starts_with(r)) {
        return Err(err(
            format!(
                "`box` in [[box.mounts]] is {}, which is under {r}, which devbox mounts itself",
                p.display()
            ),
            "choose another path inside the box, e.g. box = \"/data\"",
        ));
    }
    Ok(p)
}

/// A box name from a project directory: its last component, sanitised like image names
/// (characters outside `[a-zA-Z0-9_.-]` become `-`, leading `.`, `-` and `_` are dropped, at
/// most 64 characters; `box` if nothing is left).
pub fn name_from_dir(dir: &Path) -> String {
    let last = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name_from_str(&last)
}

fn name_from_str(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = out.trim_start_matches(['.', '-', '_']).len();
    out.drain(..out.len() - trimmed);
    out.truncate(64);
    if out.is_empty() {
        out = "box".into();
    }
    out
}

#[cfg(test)]
mod tests;
