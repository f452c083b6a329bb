//! Exports: files on the host that run something of a box. A launcher script in `~/.local/bin`
//! runs a program of the box (`devbox run BOX -- PROGRAM "$@"`); a desktop entry in
//! `~/.local/share/applications` is a copy of an application's entry from the box whose `Exec`
//! lines run through devbox.
//!
//! The files are the record: each carries a marker comment line naming its box and what it
//! exports, so devbox finds a box's exports by reading the two directories. No list is kept
//! beside them that could disagree with what is on disk (a launcher deleted by hand is simply
//! gone; one kept after `devbox rm` is still found by the box's name).
//!
//! Desktop entries, decided here:
//! - `Exec` (in the entry and in its actions) becomes `DEVBOX run BOX -- ORIGINAL`, field codes
//!   kept, with the absolute path of the devbox that exported it (desktop sessions often have
//!   a PATH without the user's own bin directories).
//! - `TryExec` names a program the host would look for; the box's program is not on the host,
//!   so it is replaced by the devbox binary: the entry hides when devbox is gone.
//! - `DBusActivatable` is dropped: the session bus would look for the application's service
//!   file on the host, where the box's is not, and the entry's file name no longer matches the
//!   bus name. Without it the desktop starts the `Exec` line.
//! - `Icon`: the icon is looked up in the box (an absolute path, else the name in the box's
//!   hicolor theme and pixmaps) and the entry points at that file in the box's layer or image
//!   on the host; an icon the box does not have keeps its name (the host's theme may know it).
//! - `Name` and its translations get ` (BOX)` appended.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Start of the marker line of every file devbox exports.
const MARKER: &str = "# devbox export: box=";

/// How much of a file is read to find the marker (it is on the first or second line).
const HEAD: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bin,
    App,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Bin => "bin",
            Kind::App => "app",
        }
    }
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    #[serde(rename = "box")]
    pub box_name: String,
    pub kind: Kind,
    /// The program's path in the box (bin) or the application's desktop file id (app).
    pub target: String,
    /// The file on the host.
    pub file: PathBuf,
}

/// Where exports go.
#[derive(Debug, Clone)]
pub struct Places {
    /// `~/.local/bin` (or `$XDG_BIN_HOME`).
    pub bin: PathBuf,
    /// `$XDG_DATA_HOME/applications`, by default `~/.local/share/applications`.
    pub apps: PathBuf,
}

impl Places {
    pub fn from_env() -> Result<Places> {
        let base = directories::BaseDirs::new()
            .context("cannot determine your home directory: set $HOME")?;
        let bin = base
            .executable_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base.home_dir().join(".local/bin"));
        Ok(Places {
            bin,
            apps: base.data_dir().join("applications"),
        })
    }

    /// The launcher of `program` (its base name in the bin directory).
    pub fn launcher(&self, program: &str) -> PathBuf {
        self.bin.join(base_name(program))
    }

    /// The desktop entry of application `app` of box `box_name`.
    pub fn desktop(&self, box_name: &str, app: &str) -> PathBuf {
        self.apps.join(format!("devbox-{box_name}-{app}.desktop"))
    }
}

fn base_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Checks what `--bin` names: an absolute path in the box or a bare name looked up in its PATH.
pub fn validate_program(program: &str) -> Result<()> {
    if program.chars().any(char::is_control) {
        bail!("the program name {program:?} contains control characters");
    }
    if program.contains('/') && !program.starts_with('/') {
        bail!("--bin {program}: give the program's absolute path in the box, or a bare name to look up in the box's PATH");
    }
    if matches!(base_name(program), "" | "." | "..") {
        bail!("--bin {program}: not a program file name");
    }
    Ok(())
}

/// Checks an application id (`--app`), with or without `.desktop`; returns it without.
pub fn validate_app(app: &str) -> Result<String> {
    let id = app.strip_suffix(".desktop").unwrap_or(app);
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("--app {app:?}: an application id is the name of its desktop file without .desktop (letters, digits, '-', '_', '.'), e.g. org.gnome.gedit");
    }
    Ok(id.to_string())
}

fn marker_line(box_name: &str, kind: Kind, target: &str) -> String {
    format!("{MARKER}{box_name} {}={target}", kind.word())
}

/// Reads the marker of an exported file: (box, kind, target).
fn parse_marker(text: &str) -> Option<(String, Kind, String)> {
    let line = text.lines().take(3).find_map(|l| l.strip_prefix(MARKER))?;
    let (box_name, rest) = line.split_once(' ')?;
    crate::state::validate_name(box_name).ok()?;
    let (kind, target) = if let Some(t) = rest.strip_prefix("bin=") {
        (Kind::Bin, t)
    } else {
        (Kind::App, rest.strip_prefix("app=")?)
    };
    (!target.is_empty()).then(|| (box_name.to_string(), kind, target.to_string()))
}

/// What is at a path devbox wants to write or remove.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    /// An export devbox wrote.
    Export(Export),
    /// Anything else (also a symlink, even to an export).
    Other,
}

pub fn existing(path: &Path) -> Result<Existing> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !meta.is_file() {
        return Ok(Existing::Other);
    }
    Ok(read_export(path).map_or(Existing::Other, Existing::Export))
}

fn read_export(path: &Path) -> Option<Export> {
    let mut head = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(HEAD)
        .read_to_end(&mut head)
        .ok()?;
    let (box_name, kind, target) = parse_marker(&String::from_utf8_lossy(&head))?;
    Some(Export {
        box_name,
        kind,
        target,
        file: path.to_path_buf(),
    })
}

/// The exports of box `box_name` (all boxes with None), launchers first, sorted by file.
pub fn scan(places: &Places, box_name: Option<&str>) -> Vec<Export> {
    let mut found = Vec::new();
    for (dir, kind) in [(&places.bin, Kind::Bin), (&places.apps, Kind::App)] {
        let Ok(rd) = fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<Export> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| kind == Kind::Bin || e.file_name().to_string_lossy().starts_with("devbox-"))
            .filter_map(|e| read_export(&e.path()))
            .filter(|x| {
                x.kind == kind && (box_name.is_none() || box_name == Some(x.box_name.as_str()))
            })
            .collect();
        here.sort_by(|a, b| a.file.cmp(&b.file));
        found.extend(here);
    }
    found
}

/// Decides whether `path` may be written for this export: nothing there, or this very export
/// (written again), or anything with `force`.
pub fn may_write(path: &Path, want: &Export, force: bool) -> Result<()> {
    let what = match existing(path)? {
        Existing::Nothing => return Ok(()),
        Existing::Export(x) if x.box_name == want.box_name && x.kind == want.kind => {
            if x.target == want.target || want.kind == Kind::Bin {
                // The same launcher name for the same box: an update.
                return Ok(());
            }
            format!("the export of {} from box '{}'", x.target, x.box_name)
        }
        Existing::Export(x) => format!("the export of {} from box '{}'", x.target, x.box_name),
        Existing::Other => "a file devbox did not write".to_string(),
    };
    if force {
        return Ok(());
    }
    bail!(
        "{} already exists: it is {what}\n  hint: move it away, or replace it with --force",
        path.display()
    )
}

/// The host's own command called `name`: the first executable file of that name in a
/// directory of `path_var` (a `PATH` value) other than `skip` (where launchers go). An export
/// of that name would shadow it, or be shadowed by it, depending on the order of PATH.
pub fn host_command(name: &str, path_var: &std::ffi::OsStr, skip: &Path) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|d| d.is_absolute() && d != skip)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Writes `contents` to `path` with `mode` through a temp file in the same directory and a
/// rename, creating the directory if needed (0755, as such a user directory usually is).
pub fn install(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".devbox-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(contents.as_bytes())?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Removes exported files; returns the ones that could not be removed, with why.
pub fn remove(exports: &[Export]) -> Vec<(Export, io::Error)> {
    let mut failed = Vec::new();
    for x in exports {
        match fs::remove_file(&x.file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => failed.push((x.clone(), e)),
        }
    }
    failed
}

/// Quotes a word for the POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | ',' | '@' | '%')
        })
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The launcher script of `program` in box `box_name`. `devbox` is the absolute path of the
/// devbox that writes it; the script falls back to `devbox` on PATH when that file is gone.
pub fn launcher(devbox: Option<&Path>, box_name: &str, program: &str) -> String {
    let q = shell_quote(program);
    let fallback = match devbox {
        Some(p) => format!(
            "devbox={}\n[ -x \"$devbox\" ] || devbox=devbox\n",
            shell_quote(&p.to_string_lossy())
        ),
        None => "devbox=devbox\n".to_string(),
    };
    format!(
        "#!/bin/sh\n\
{}\n\
# Runs {program} in the devbox box '{box_name}' with your working directory and arguments,\n\
# and exits with its status. Remove with: devbox export {box_name} --delete --bin {q}\n\
{fallback}\
exec \"$devbox\" run {box_name} -- {q} \"$@\"\n",
        marker_line(box_name, Kind::Bin, program)
    )
}

/// Escapes a value of type string in a desktop entry.
fn desktop_string(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// One argument of an `Exec` line: quoted when it holds a reserved character, `%` doubled,
/// then escaped as a string value.
fn exec_arg(s: &str) -> String {
    let reserved = |c: char| " \t\n\"'\\><~|&;$*?#()`".contains(c);
    let s = s.replace('%', "%%");
    let quoted = if s.chars().any(reserved) {
        let mut q = String::from("\"");
        for c in s.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    } else {
        s
    };
    desktop_string(&quoted)
}

/// The value of `key` in the `[Desktop Entry]` group of a desktop file.
pub fn desktop_value(text: &str, key: &str) -> Option<String> {
    let mut main = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            main = t == "[Desktop Entry]";
            continue;
        }
        if !main || t.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            if k.trim() == key {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

/// The exported copy of the desktop file `src` of application `app` in box `box_name` (see the
/// module's documentation for what is changed). `icon`: the icon file as the host sees it.
pub fn desktop_entry(
    src: &str,
    box_name: &str,
    app: &str,
    devbox: &Path,
    icon: Option<&Path>,
) -> Result<String> {
    let devbox = devbox.to_string_lossy();
    let prefix = format!("{} run {box_name} --", exec_arg(&devbox));
    let mut out = marker_line(box_name, Kind::App, app);
    out.push('\n');
    let mut group = String::new();
    let mut seen_main = false;
    let mut main_exec = false;
    for line in src.lines() {
        let t = line.trim();
        if let Some(g) = t.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            group = g.to_string();
            out.push_str(line);
            out.push('\n');
            if group == "Desktop Entry" && !seen_main {
                seen_main = true;
                out.push_str(&format!("TryExec={}\n", desktop_string(&devbox)));
            }
            continue;
        }
        let main = group == "Desktop Entry";
        let action = group.starts_with("Desktop Action ");
        let kv = (!t.starts_with('#'))
            .then(|| t.split_once('='))
            .flatten()
            .map(|(k, v)| (k.trim(), v.trim()));
        let Some((key, value)) = kv else {
            if !t.starts_with(MARKER) {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        match key {
            "Exec" if main || action => {
                if value.is_empty() {
                    bail!("the desktop file of {app} has an empty Exec line");
                }
                main_exec |= main;
                out.push_str(&format!("Exec={prefix} {value}\n"));
            }
            "TryExec" | "DBusActivatable" if main => {}
            "Type" if main && value != "Application" => {
                bail!("{app} is a desktop entry of type {value}, not an application")
            }
            "Icon" if main && icon.is_some() => {
                let p = icon.map(|p| p.to_string_lossy()).unwrap_or_default();
                out.push_str(&format!("Icon={}\n", desktop_string(&p)));
            }
            k if main && (k == "Name" || k.starts_with("Name[")) => {
                out.push_str(&format!("{key}={value} ({box_name})\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !seen_main {
        bail!("the desktop file of {app} has no [Desktop Entry] group");
    }
    if !main_exec {
        bail!("the desktop entry of {app} has no Exec line (a D-Bus-only application cannot be started through devbox)");
    }
    Ok(out)
}

/// Where, in a box, an application's desktop file and icon may be.
pub const APP_DIRS: &[&str] = &["/usr/local/share/applications", "/usr/share/applications"];

/// The icon files to try for an icon name, best first (inside the box).
pub fn icon_candidates(name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for root in ["/usr/local/share/icons/hicolor", "/usr/share/icons/hicolor"] {
        v.push(PathBuf::from(format!("{root}/scalable/apps/{name}.svg")));
        for size in [512, 256, 192, 128, 96, 72, 64, 48, 32, 24, 22, 16] {
            v.push(PathBuf::from(format!(
                "{root}/{size}x{size}/apps/{name}.png"
            )));
        }
    }
    for ext in ["svg", "png", "xpm"] {
        v.push(PathBuf::from(format!("/usr/share/pixmaps/{name}.{ext}")));
    }
    v
}

/// What the box holds for an application: found by looking inside the box.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppInBox {
    /// The desktop file's path in the box.
    pub path: PathBuf,
    pub text: String,
    /// The icon file's real path in the box (symlinks resolved), if the box has it.
    pub icon: Option<PathBuf>,
}

/// Runs inside the box: finds application `app`'s desktop file and icon.
pub fn find_app(app: &str) -> std::result::Result<AppInBox, String> {
    let file = format!("{app}.desktop");
    let found = APP_DIRS.iter().find_map(|d| {
        let p = Path::new(d).join(&file);
        fs::read_to_string(&p).ok().map(|t| (p, t))
    });
    let Some((path, text)) = found else {
        let mut close: Vec<String> = APP_DIRS
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".desktop").map(str::to_string)
            })
            .filter(|n| n.to_lowercase().contains(&app.to_lowercase()))
            .collect();
        close.sort();
        close.dedup();
        let hint = if close.is_empty() {
            "install the application in the box first, or see the ids in /usr/share/applications"
                .to_string()
        } else {
            format!("did you mean: {}?", close.join(", "))
        };
        return Err(format!(
            "no {file} in {} of the box\n  hint: {hint}",
            APP_DIRS.join(" or ")
        ));
    };
    let icon = desktop_value(&text, "Icon").and_then(|i| {
        let candidates = if i.starts_with('/') {
            vec![PathBuf::from(i)]
        } else if i.is_empty() || i.contains('/') {
            vec![]
        } else {
            icon_candidates(&i)
        };
        candidates
            .into_iter()
            .find_map(|c| fs::canonicalize(&c).ok().filter(|r| r.is_file()))
    });
    Ok(AppInBox { path, text, icon })
}

/// Runs inside the box: resolves `program` (absolute, or a bare name in `path_var`) to an
/// executable file's path.
pub fn find_program(program: &str, path_var: &str) -> std::result::Result<String, String> {
    let executable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.starts_with('/') {
        return if executable(Path::new(program)) {
            Ok(program.to_string())
        } else if Path::new(program).exists() {
            Err(format!("{program} in the box is not an executable file"))
        } else {
            Err(format!("there is no {program} in the box\n  hint: install it in the box first, or give its path"))
        };
    }
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| {
            format!("no program {program} in the box's PATH ({path_var})\n  hint: install it in the box first, or give its absolute path")
        })
}

/// The host path of a file of the box: in its own layer if there, else in the image. `path` is
/// a real path in the box (no symlinks).
pub fn host_path(upper: &Path, lower: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix("/").ok()?;
    [upper, lower]
        .iter()
        .map(|base| base.join(rel))
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers_quote_and_carry_their_marker() {
        let s = launcher(
            Some(Path::new("/opt/dev box/devbox")),
            "deb",
            "/usr/bin/it's",
        );
        assert!(s.starts_with("#!/bin/sh\n# devbox export: box=deb bin=/usr/bin/it's\n"));
        assert!(s.contains("devbox='/opt/dev box/devbox'\n[ -x \"$devbox\" ] || devbox=devbox\n"));
        assert!(s.ends_with("exec \"$devbox\" run deb -- '/usr/bin/it'\\''s' \"$@\"\n"));
        assert_eq!(
            parse_marker(&s),
            Some(("deb".into(), Kind::Bin, "/usr/bin/it's".into()))
        );
        let plain = launcher(None, "deb", "/usr/bin/rg");
        assert!(plain.contains("devbox=devbox\nexec \"$devbox\" run deb -- /usr/bin/rg \"$@\"\n"));
    }

    #[test]
    fn markers_name_a_valid_box_and_a_target() {
        assert_eq!(parse_marker("#!/bin/sh\necho hi\n"), None);
        assert_eq!(parse_marker("# devbox export: box=../x bin=/a\n"), None);
        assert_eq!(parse_marker("# devbox export: box=x bin=\n"), None);
        assert_eq!(parse_marker("# devbox export: box=x other=1\n"), None);
        assert_eq!(
            parse_marker("# devbox export: box=x app=org.foo.Bar\n[Desktop Entry]\n"),
            Some(("x".into(), Kind::App, "org.foo.Bar".into()))
        );
        // Only the head of the file counts.
        assert_eq!(
            parse_marker("a\nb\nc\n# devbox export: box=x bin=/a\n"),
            None
        );
    }

    #[test]
    fn programs_and_app_ids_are_checked() {
        validate_program("/usr/bin/rg").unwrap();
        validate_program("rg").unwrap();
        for bad in ["bin/rg", "/usr/bin/", "/a/..", "a\nb"] {
            assert!(validate_program(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_app("org.gnome.gedit.desktop").unwrap(),
            "org.gnome.gedit"
        );
        for bad in ["", "a/b", ".hidden", "a b"] {
            assert!(validate_app(bad).is_err(), "{bad}");
        }
    }

    const GEDIT: &str = "[Desktop Entry]\n\
Name=Text Editor\n\
Name[de]=Texteditor\n\
GenericName=Editor\n\
Exec=gedit %U\n\
TryExec=gedit\n\
Icon=org.gnome.gedit\n\
Type=Application\n\
DBusActivatable=true\n\
Actions=new-window;\n\
\n\
# a comment\n\
[Desktop Action new-window]\n\
Name=New Window\n\
Exec=gedit --new-window\n";

    #[test]
    fn desktop_entries_run_through_devbox() {
        let out = desktop_entry(
            GEDIT,
            "deb",
            "org.gnome.gedit",
            Path::new("/home/a/bin/devbox"),
            Some(Path::new(
                "/home/a/.local/share/devbox/boxes-v1/deb/upper/usr/share/icons/x.svg",
            )),
        )
        .unwrap();
        assert_eq!(
            out,
            "# devbox export: box=deb app=org.gnome.gedit\n\
[Desktop Entry]\n\
TryExec=/home/a/bin/devbox\n\
Name=Text Editor (deb)\n\
Name[de]=Texteditor (deb)\n\
GenericName=Editor\n\
Exec=/home/a/bin/devbox run deb -- gedit %U\n\
Icon=/home/a/.local/share/devbox/boxes-v1/deb/upper/usr/share/icons/x.svg\n\
Type=Application\n\
Actions=new-window;\n\
\n\
# a comment\n\
[Desktop Action new-window]\n\
Name=New Window\n\
Exec=/home/a/bin/devbox run deb -- gedit --new-window\n"
        );
        // Without an icon file from the box, the icon name stays.
        let out = desktop_entry(GEDIT, "deb", "g", Path::new("/d"), None).unwrap();
        assert!(out.contains("\nIcon=org.gnome.gedit\n"));
        // Exporting an export again does not stack markers.
        let again = desktop_entry(&out, "deb", "g", Path::new("/d"), None).unwrap();
        assert_eq!(again.matches("# devbox export").count(), 1);
    }

    #[test]
    fn exec_arguments_follow_the_desktop_entry_quoting_rules() {
        assert_eq!(exec_arg("/usr/bin/devbox"), "/usr/bin/devbox");
        assert_eq!(exec_arg("/opt/my apps/devbox"), "\"/opt/my apps/devbox\"");
        // `$` and `\` are escaped inside the quotes, then the backslashes once more as a string.
        assert_eq!(exec_arg("/a$b\\c"), "\"/a\\\\$b\\\\\\\\c\"");
        assert_eq!(exec_arg("/100%"), "/100%%");
    }

    #[test]
    fn what_is_not_a_runnable_application_is_refused() {
        let link = "[Desktop Entry]\nType=Link\nURL=https://example.invalid\nName=L\n";
        let e = desktop_entry(link, "b", "l", Path::new("/d"), None).unwrap_err();
        assert!(e.to_string().contains("type Link"), "{e}");
        let dbus_only = "[Desktop Entry]\nType=Application\nName=D\nDBusActivatable=true\n";
        let e = desktop_entry(dbus_only, "b", "d", Path::new("/d"), None).unwrap_err();
        assert!(e.to_string().contains("no Exec line"), "{e}");
        let e = desktop_entry("Name=x\n", "b", "x", Path::new("/d"), None).unwrap_err();
        assert!(e.to_string().contains("no [Desktop Entry]"), "{e}");
    }

    #[test]
    fn writing_is_refused_over_foreign_files_and_other_boxes_exports() {
        let dir = tempfile::tempdir().unwrap();
        let places = Places {
            bin: dir.path().join("bin"),
            apps: dir.path().join("apps"),
        };
        let want = |b: &str, t: &str| Export {
            box_name: b.into(),
            kind: Kind::Bin,
            target: t.into(),
            file: places.launcher(t),
        };
        let rg = places.launcher("/usr/bin/rg");
        may_write(&rg, &want("a", "/usr/bin/rg"), false).unwrap();
        install(&rg, &launcher(None, "a", "/usr/bin/rg"), 0o755).unwrap();
        assert_eq!(
            fs::metadata(&rg).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // Again for the same box: an update. For another box: refused unless forced.
        may_write(&rg, &want("a", "/usr/local/bin/rg"), false).unwrap();
        let e = may_write(&rg, &want("b", "/usr/bin/rg"), false).unwrap_err();
        assert!(e.to_string().contains("from box 'a'"), "{e}");
        may_write(&rg, &want("b", "/usr/bin/rg"), true).unwrap();
        // A file of the user's own.
        let mine = places.launcher("mine");
        install(&mine, "#!/bin/sh\necho mine\n", 0o755).unwrap();
        let e = may_write(&mine, &want("a", "mine"), false).unwrap_err();
        assert!(e.to_string().contains("did not write"), "{e}");
        // A symlink to an export is not an export.
        let link = places.bin.join("link");
        std::os::unix::fs::symlink(&rg, &link).unwrap();
        assert_eq!(existing(&link).unwrap(), Existing::Other);

        let app = places.desktop("a", "org.x.Y");
        let entry = "# devbox export: box=a app=org.x.Y\n[Desktop Entry]\n";
        install(&app, entry, 0o644).unwrap();
        install(&places.apps.join("other.desktop"), entry, 0o644).unwrap();
        let all = scan(&places, Some("a"));
        assert_eq!(
            all.iter().map(|x| x.file.clone()).collect::<Vec<_>>(),
            vec![rg.clone(), app.clone()],
            "the desktop file not named devbox-* is not devbox's"
        );
        assert!(scan(&places, Some("b")).is_empty());
        assert!(remove(&all).is_empty());
        assert!(!rg.exists() && !app.exists() && mine.exists());
    }
}
