//! What devbox remembers about boxes and images, as small TOML files written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths::{write_atomic, Dirs};

pub const NAME_RULE: &str =
    "a box name starts with a letter or digit, continues with letters, digits, '_', '.' or '-', and has at most 64 characters";

/// Checks a box name against `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("invalid box name {name:?}: {NAME_RULE}");
    }
    Ok(())
}

/// A default box name from an image reference: the file stem without `.tar.*`, sanitised.
pub fn name_from_image(image: &str) -> String {
    let last = image
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(image);
    let last = last.split(['?', '#']).next().unwrap_or(last);
    let mut stem = last.to_string();
    for ext in [
        ".tar.gz",
        ".tar.xz",
        ".tar.zst",
        ".tar.zstd",
        ".tar.bz2",
        ".tgz",
        ".txz",
        ".tzst",
        ".tar",
    ] {
        if let Some(s) = stem.strip_suffix(ext) {
            stem = s.to_string();
            break;
        }
    }
    let mut out: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['.', '-', '_']) {
        out.remove(0);
    }
    out.truncate(64);
    if out.is_empty() {
        out = "box".into();
    }
    out
}

/// Namespaces a box can have of its own instead of sharing the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Isolate {
    Net,
    Pid,
    Ipc,
}

/// Which overlay implementation a box's upper layer was written by. They are not compatible
/// with each other (opaque directories are recorded differently), so it is fixed at first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Kernel,
    FuseOverlayfs,
}

/// `boxes-v1/<name>/box.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxConfig {
    pub name: String,
    /// What the user asked for (path or URL).
    pub image: String,
    /// sha256 of the archive: the image's directory name in the store.
    pub image_id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    #[serde(default)]
    pub isolate: Vec<Isolate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// The image's environment (from its OCI config), copied at create so entering reads no
    /// other file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Fingerprint of the devbox.toml the box was made from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The canonical path of the devbox.toml the box belongs to: no other file may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_file: Option<PathBuf>,
    /// A project box whose packages and setup have not all run yet: it is not made. Cleared
    /// only when they succeeded; a box left with it (its devbox was killed) is made again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisioning: bool,
    /// Host directories bound into the box at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// A host directory that is the box's home instead of the user's (from devbox.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    /// The project directory, bound in at its own path when the home is isolated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_dir: Option<PathBuf>,
    /// Variables set with `devbox config --env`, over the image's in every session.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The user's sudoers rule has been written into the box's layer (once, at first start).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sudoers: bool,
}

/// The settings a running box was started with, which only a restart changes (recorded at
/// start as `started.json` in the box's directory, removed at stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedWith {
    pub mounts: Vec<MountSpec>,
    pub isolate: Vec<Isolate>,
    pub home: Option<PathBuf>,
    pub project_dir: Option<PathBuf>,
}

impl StartedWith {
    pub fn of(cfg: &BoxConfig) -> StartedWith {
        let mut isolate = cfg.isolate.clone();
        isolate.sort();
        StartedWith {
            mounts: cfg.mounts.clone(),
            isolate,
            home: cfg.home.clone(),
            project_dir: cfg.project_dir.clone(),
        }
    }

    pub fn path(dirs: &Dirs, name: &str) -> PathBuf {
        dirs.box_dir(name).join("started.json")
    }

    pub fn load(dirs: &Dirs, name: &str) -> Option<StartedWith> {
        serde_json::from_slice(&std::fs::read(Self::path(dirs, name)).ok()?).ok()
    }

    /// What differs between the settings saved now and these: the words of a "restart
    /// pending (...)" note; empty when none.
    pub fn differences(&self, cfg: &BoxConfig) -> Vec<&'static str> {
        let now = StartedWith::of(cfg);
        let mut out = Vec::new();
        if now.mounts != self.mounts {
            out.push("mounts");
        }
        if now.isolate != self.isolate {
            out.push("namespaces");
        }
        if now.home != self.home || now.project_dir != self.project_dir {
            out.push("home");
        }
        out
    }
}

/// The settings of a running box that wait for a restart (empty when none, or when the box
/// was started by a devbox that did not record them).
pub fn restart_pending(dirs: &Dirs, cfg: &BoxConfig) -> Vec<&'static str> {
    StartedWith::load(dirs, &cfg.name)
        .map(|s| s.differences(cfg))
        .unwrap_or_default()
}

/// A change to a box's settings (`devbox config`): none of them needs a new image.
#[derive(Debug, Default)]
pub struct Edit {
    pub mount: Vec<MountSpec>,
    /// Box paths whose mounts go.
    pub unmount: Vec<PathBuf>,
    pub set_env: Vec<(String, String)>,
    pub unset_env: Vec<String>,
    pub isolate: Option<Vec<Isolate>>,
    /// `Some(None)` is the shared home.
    pub home: Option<Option<PathBuf>>,
}

impl Edit {
    pub fn is_empty(&self) -> bool {
        self.mount.is_empty()
            && self.unmount.is_empty()
            && self.set_env.is_empty()
            && self.unset_env.is_empty()
            && self.isolate.is_none()
            && self.home.is_none()
    }
}

impl MountSpec {
    /// `HOST:BOX[:ro|:rw]`. HOST is made absolute from `cwd` (`~` is `home`) and must exist;
    /// BOX is an absolute path, not `/` and not under the paths devbox mounts itself.
    pub fn parse(spec: &str, cwd: &Path, home: &Path) -> Result<MountSpec> {
        let usage = "write it as HOST:BOX or HOST:BOX:ro, e.g. --mount ~/data:/data:ro";
        let (rest, readonly) = match spec.rsplit_once(':') {
            Some((r, "ro")) => (r, true),
            Some((r, "rw")) => (r, false),
            _ => (spec, false),
        };
        let Some((host, target)) = rest.rsplit_once(':') else {
            bail!("--mount {spec:?} has no box path\n  hint: {usage}");
        };
        if host.is_empty() || target.is_empty() {
            bail!("--mount {spec:?} has an empty path\n  hint: {usage}");
        }
        let host = match host.strip_prefix('~') {
            Some(r) if r.is_empty() || r.starts_with('/') => home.join(r.trim_start_matches('/')),
            _ => cwd.join(host),
        };
        let host = crate::paths::clean_path(&host);
        if !host.exists() {
            bail!(
                "--mount: {} does not exist\n  hint: create it first, or check the path",
                host.display()
            );
        }
        // Resolved here, on the host: a link (`~/etclink -> /etc`) means its target on the
        // host, never a path the box would resolve against its own tree.
        let host = std::fs::canonicalize(&host)
            .with_context(|| format!("--mount: cannot resolve {}", host.display()))?;
        let target = Path::new(target);
        if !target.is_absolute()
            || target
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            bail!("--mount {spec:?}: the box path must be absolute, without `..`\n  hint: {usage}");
        }
        let target = crate::paths::clean_path(target);
        if target == Path::new("/") {
            bail!("--mount {spec:?}: the box path is the box's root\n  hint: mount at a directory below it, e.g. /data");
        }
        if let Some(r) = RESERVED_BOX_PATHS.iter().find(|r| target.starts_with(r)) {
            bail!("--mount {spec:?}: {} is under {r}, which devbox mounts itself\n  hint: choose another path inside the box, e.g. /data", target.display());
        }
        Ok(MountSpec {
            host,
            target,
            readonly,
        })
    }
}

/// Box paths devbox mounts itself, so a mount of the user's may not be at or under them.
pub const RESERVED_BOX_PATHS: &[&str] = &["/proc", "/sys", "/run/host"];

/// A host path bound into a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub host: PathBuf,
    pub target: PathBuf,
    #[serde(default)]
    pub readonly: bool,
}

impl BoxConfig {
    pub fn has(&self, i: Isolate) -> bool {
        self.isolate.contains(&i)
    }

    pub fn load(dirs: &Dirs, name: &str) -> Result<BoxConfig> {
        let path = dirs.box_dir(name).join("box.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let known = list_names(dirs).unwrap_or_default();
                if known.is_empty() {
                    bail!("no box named '{name}'\n  hint: there are no boxes yet; create one with `devbox create IMAGE --name {name}`");
                }
                bail!(
                    "no box named '{name}'\n  hint: boxes: {}; create one with `devbox create IMAGE --name {name}`",
                    known.join(", ")
                );
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    pub fn save_in(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join("box.toml"), toml::to_string(self)?.as_bytes())
    }

    /// Applies `edit`; says what changed, one line each. A mount at a box path that has one
    /// replaces it; unmounting or unsetting what is not there is an error naming what is.
    pub fn apply_edit(&mut self, edit: &Edit) -> Result<Vec<String>> {
        let mut said = Vec::new();
        for target in &edit.unmount {
            let target = crate::paths::clean_path(target);
            let before = self.mounts.len();
            self.mounts.retain(|m| m.target != target);
            if self.mounts.len() == before {
                let have: Vec<String> = self
                    .mounts
                    .iter()
                    .map(|m| m.target.display().to_string())
                    .collect();
                bail!(
                    "box '{}' has no mount at {}\n  hint: its mounts: {}",
                    self.name,
                    target.display(),
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                );
            }
            said.push(format!("unmounted {}", target.display()));
        }
        for m in &edit.mount {
            self.mounts.retain(|o| o.target != m.target);
            self.mounts.push(m.clone());
            said.push(format!(
                "mount {} -> {}{}",
                m.host.display(),
                m.target.display(),
                if m.readonly { " (read-only)" } else { "" }
            ));
        }
        self.mounts.sort_by(|a, b| a.target.cmp(&b.target));
        for k in &edit.unset_env {
            if self.vars.remove(k).is_none() {
                bail!(
                    "box '{}' has no variable {k} set by devbox config\n  hint: set ones: {}",
                    self.name,
                    if self.vars.is_empty() {
                        "none".to_string()
                    } else {
                        self.vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                );
            }
            said.push(format!("unset {k}"));
        }
        for (k, v) in &edit.set_env {
            self.vars.insert(k.clone(), v.clone());
            said.push(format!("set {k}"));
        }
        if let Some(iso) = &edit.isolate {
            let mut iso = iso.clone();
            iso.sort();
            iso.dedup();
            self.isolate = iso;
            let names: Vec<String> = self
                .isolate
                .iter()
                .map(|i| format!("{i:?}").to_lowercase())
                .collect();
            said.push(format!(
                "own namespaces: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ));
        }
        if let Some(home) = &edit.home {
            self.home = home.clone();
            self.project_dir = None;
            said.push(match home {
                Some(h) => format!("home {}", h.display()),
                None => "home shared".into(),
            });
        }
        Ok(said)
    }
}

/// `images-v1/<id>/image.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of the archive, or of the OCI image's config.
    pub id: String,
    pub source: String,
    pub unpacked: String,
    pub archive_bytes: u64,
    /// The OCI manifest digest an image was pulled by (what it was made from, exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `KEY=value` environment of the image's config (PATH, LANG...), used in its boxes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Packages a project asked for that were installed when the image was built from a
    /// package archive (so its provisioning need not install them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// For an image made by `devbox commit`: the OCI reference its lowest layers were pulled
    /// from, if they were (a push to the same registry mounts them from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_source: Option<String>,
}

/// Names of all boxes, sorted.
pub fn list_names(dirs: &Dirs) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let rd = match std::fs::read_dir(&dirs.boxes) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dirs.boxes.display())),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().join("box.toml").exists() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Picks the box for enter/run when no name was given: the only one, or an error listing them
/// with `example` (`devbox run {} -- CMD`, the box's name filled in) as the hint.
pub fn only_box(dirs: &Dirs, example: &str) -> Result<String> {
    let names = list_names(dirs)?;
    match names.len() {
        0 => bail!("there are no boxes yet\n  hint: create one with `devbox create IMAGE`"),
        1 => Ok(names.into_iter().next().unwrap_or_default()),
        _ => bail!(
            "there are {} boxes; name one: {}\n  hint: e.g. `{}`",
            names.len(),
            names.join(", "),
            example.replace("{}", &names[0])
        ),
    }
}

/// Checks that box `name` exists, for commands that act on existing boxes only (stop, rm,
/// restart): the error lists the boxes there are, and suggests no create.
pub fn existing(dirs: &Dirs, name: &str) -> Result<()> {
    validate_name(name)?;
    if dirs.box_dir(name).join("box.toml").exists() {
        return Ok(());
    }
    let known = list_names(dirs).unwrap_or_default();
    if known.is_empty() {
        bail!("no box named '{name}': there are no boxes");
    }
    bail!(
        "no box named '{name}'\n  hint: the boxes are: {} (see `devbox list`)",
        known.join(", ")
    )
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Paths of one box's directories.
pub struct BoxPaths {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl BoxPaths {
    pub fn new(dirs: &Dirs, name: &str) -> BoxPaths {
        let dir = dirs.box_dir(name);
        BoxPaths {
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "Debian-12", "x.y_z", &"a".repeat(64)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a/b",
            "a b",
            "ä",
            &"a".repeat(65),
            "..",
            "a:b",
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains("starts with a letter or digit"), "{e}");
        }
    }

    #[test]
    fn names_derive_from_images() {
        assert_eq!(
            name_from_image("/x/debian-bookworm-minbase.tar.gz"),
            "debian-bookworm-minbase"
        );
        assert_eq!(name_from_image("busybox-rootfs.tar"), "busybox-rootfs");
        assert_eq!(
            name_from_image("http://h/p/arch root.tar.zst?x=1"),
            "arch-root"
        );
        assert_eq!(name_from_image("rootfs.tgz"), "rootfs");
        assert_eq!(name_from_image("/.hidden.tar"), "hidden");
        assert_eq!(name_from_image("/???.tar"), "box");
    }
}
