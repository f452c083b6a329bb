//! The image catalog: which distributions devbox knows by name (`debian`, `ubuntu:noble`,
//! `arch`), and where to get a root filesystem for each release on this machine's
//! architecture.
//!
//! Entries come from three layers, later ones winning: the files in `images/` compiled into the
//! binary, then `~/.config/devbox/images/*.toml`, then `$DEVBOX_CATALOG_DIR/*.toml`. An entry
//! whose `id` is already known replaces the earlier entry whole; a new `id` adds a
//! distribution.
//!
//! Parsing (`schema`) is separate from lookup (here) and from resolution (`resolve`, and
//! `check`, which asks whether a source answers without downloading its image: the only parts
//! that touch the network).
//!
//! # Entry format (one TOML file per distribution)
//!
//! ```toml
//! id = "debian"                  # what users type; lowercase [a-z0-9][a-z0-9._-]*
//! name = "Debian"                # display name
//! aliases = ["deb"]              # other names for the distribution (optional)
//! family = "apt"                 # package manager: apt, dnf, apk, pacman, zypper, xbps
//! default_release = "13"         # a release `name` (not an alias)
//! toolbox_notes = "..."          # optional free text on toolbox-ready images
//!
//! [[release]]                    # one per release, in the order search shows them
//! name = "13"                    # canonical name: debian:13
//! aliases = ["trixie", "stable"] # debian:trixie and debian:stable mean the same
//! vars = { codename = "trixie" } # extra template variables for this release (optional)
//!
//! [arch.simplestreams]           # per source kind: devbox arch -> the server's arch name
//! amd64 = "amd64"                # devbox arches: amd64 arm64 armhf i386 ppc64el s390x
//! arm64 = "arm64"                #                riscv64 loong64
//!
//! [[source]]                     # tried in this order; the first that works wins
//! kind = "oci"                   # oci | simplestreams | sumsfile | alpine | pinned | archive
//! image = "quay.io/toolbx-images/debian-toolbox:{release}"
//! toolbox_ready = true           # every kind: made for Toolbx-style use (default false)
//! releases = ["12", "13"]        # every kind: only these releases (default: all)
//! arch = { amd64 = "amd64" }     # every kind: replaces [arch.<kind>] for this source
//! ```
//!
//! Source kinds and their fields (strings are templates, see below):
//! - `oci`: `image`, an image reference.
//! - `simplestreams`: `url`, the root of an LXC/Incus image server (its
//!   `streams/v1/index.json` names the products file); `distro` (default `{id}`), `release`
//!   (default `{release}`), `variant` (default `default`) make the product key
//!   `DISTRO:RELEASE:ARCH:VARIANT`; the newest build's `root.tar.xz` is the image.
//! - `sumsfile`: `url` of a checksum file (GNU `HEX  name` or BSD `SHA256 (name) = HEX`
//!   lines); `pattern`, the file name with `*` and at most one `{version}`; the match with the
//!   highest version wins; `base`, where the files are (default: the checksum file's
//!   directory).
//! - `alpine`: `url` of Alpine's `latest-releases.yaml`; `flavor` (default
//!   `alpine-minirootfs`); its `file` (next to the YAML) and `sha256` are the image.
//! - `pinned`: `url` and `sha256` (one digest, or a table of digests by devbox arch).
//! - `archive`: a root built from the distribution's own package archive (Debian format),
//!   as debootstrap's minbase variant makes it (see `debarchive`): `suite` (default
//!   `{release}`, usually `{codename}`), `components` (default `["main"]`: where the
//!   packages of the root come from), `apt_components` (default: `components`: what the box's
//!   `/etc/apt/sources.list` names, so `apt-get install` in the box can reach more, such as
//!   Ubuntu's `universe`, without the bootstrap reading its index). The mirror is not
//!   in the catalog: it is `archive_mirrors` of the user configuration, else the host's apt
//!   configuration when the host runs this distribution.
//!
//! Templates: `{id}`, `{release}` (the canonical name), `{arch}` (the server's name for this
//! architecture, from the arch map) and the release's `vars`; `{version}` only in `pattern`.
//! An unknown variable is an error when the file is loaded. A source whose arch map lacks this
//! machine's architecture is skipped on this machine.
//!
//! Every file is checked when loaded (unknown fields, duplicate names, templates, digests), and
//! the error names the file.

mod alpine;
pub mod check;
mod resolve;
mod schema;
mod simplestreams;
mod sums;
#[cfg(test)]
mod tests;
mod version;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub use resolve::{get_bytes, one_line, resolve, Resolved};
use schema::Entry;
pub use schema::{SourceKind, ARCHES};

/// The catalog files shipped in the binary: (file stem, contents).
const BUILTIN: &[(&str, &str)] = &[
    ("almalinux", include_str!("../../images/almalinux.toml")),
    ("alpine", include_str!("../../images/alpine.toml")),
    ("archlinux", include_str!("../../images/archlinux.toml")),
    ("debian", include_str!("../../images/debian.toml")),
    ("fedora", include_str!("../../images/fedora.toml")),
    ("opensuse", include_str!("../../images/opensuse.toml")),
    ("rockylinux", include_str!("../../images/rockylinux.toml")),
    ("ubuntu", include_str!("../../images/ubuntu.toml")),
    ("void", include_str!("../../images/void.toml")),
];

/// Environment variable naming one more catalog directory, loaded last.
pub const CATALOG_DIR_ENV: &str = "DEVBOX_CATALOG_DIR";

/// Where an entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str("builtin"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
struct Loaded {
    entry: Entry,
    origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    entries: BTreeMap<String, Loaded>,
}

/// One source of a choice, its templates expanded for the release and this architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    #[serde(flatten)]
    pub kind: SourceKind,
    /// The server's name for the architecture (`x86_64`, `amd64`, ...).
    pub arch: String,
    pub toolbox_ready: bool,
}

impl Source {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SourceKind::Oci { .. } => "oci",
            SourceKind::Simplestreams { .. } => "simplestreams",
            SourceKind::Sumsfile { .. } => "sumsfile",
            SourceKind::Alpine { .. } => "alpine",
            SourceKind::Pinned { .. } => "pinned",
            SourceKind::Archive { .. } => "archive",
        }
    }

    /// What the source names, in one short string: the image reference, or the URL with the
    /// product, file pattern or flavor looked for there.
    pub fn reference(&self) -> String {
        match &self.kind {
            SourceKind::Oci { image } => image.clone(),
            SourceKind::Simplestreams { url, product } => format!("{url} {product}"),
            SourceKind::Sumsfile { url, pattern, .. } => format!("{url} {pattern}"),
            SourceKind::Alpine { url, flavor } => format!("{url} {flavor}"),
            SourceKind::Pinned { url, .. } => url.clone(),
            SourceKind::Archive { distro, suite, .. } => format!("{distro} {suite}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Oci { image } => write!(f, "oci image {image}"),
            SourceKind::Simplestreams { url, product } => {
                write!(f, "image server {url} ({product})")
            }
            SourceKind::Sumsfile { url, pattern, .. } => write!(f, "{url} ({pattern})"),
            SourceKind::Alpine { url, flavor } => write!(f, "{url} ({flavor})"),
            SourceKind::Pinned { url, .. } => write!(f, "{url}"),
            SourceKind::Archive { distro, suite, .. } => {
                write!(f, "{distro} package archive, suite {suite}")
            }
        }
    }
}

/// What a reference names: one release of one distribution, with its sources for this
/// architecture in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// The entry's id (`archlinux` for `arch`).
    pub distro: String,
    /// Display name.
    pub name: String,
    /// The canonical release name (`13` for `trixie`).
    pub release: String,
    pub family: String,
    /// devbox's name of the architecture the sources are for.
    pub arch: String,
    pub sources: Vec<Source>,
    pub toolbox_notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    pub name: String,
    pub aliases: Vec<String>,
}

/// One distribution as `devbox image search` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchRow {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub family: String,
    pub default_release: String,
    pub releases: Vec<ReleaseRow>,
    /// Source kinds, in the order they are tried, without repeats.
    pub sources: Vec<String>,
    /// devbox arches some source serves.
    pub arches: Vec<String>,
    /// Some source gives a toolbox-ready image.
    pub toolbox_ready: bool,
    pub toolbox_notes: Option<String>,
    /// `builtin` or the file the entry was loaded from.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{given:?} is not an image reference\n  hint: use DISTRO or DISTRO:RELEASE, e.g. debian or debian:13")]
    BadReference { given: String },
    #[error("unknown distribution {given:?}{}\n  hint: `devbox image search` lists the distributions devbox knows", did_you_mean(.suggestions))]
    UnknownDistro {
        given: String,
        suggestions: Vec<String>,
    },
    #[error("{distro} has no release {given:?}{}\n  releases: {}", did_you_mean(.suggestions), .available.join(", "))]
    UnknownRelease {
        distro: String,
        given: String,
        suggestions: Vec<String>,
        available: Vec<String>,
    },
    #[error("{given:?} is ambiguous: it names {}\n  hint: use one of those ids", .candidates.join(" and "))]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error("{distro}:{release} has no image for this machine's architecture ({arch}){}", available_arches(.available))]
    NoImageForArch {
        distro: String,
        release: String,
        arch: String,
        available: Vec<String>,
    },
}

fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("\n  did you mean: {}?", s.join(", "))
    }
}

fn available_arches(a: &[String]) -> String {
    if a.is_empty() {
        String::new()
    } else {
        format!("\n  it has images for: {}", a.join(", "))
    }
}

/// `~/.config/devbox/images` (under `$XDG_CONFIG_HOME` when that is set).
pub fn user_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.config_dir().join("devbox").join("images"))
}

/// devbox's (Debian-style) name of this machine's architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64el",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl Catalog {
    /// The builtin entries, then `~/.config/devbox/images`, then the catalog directory the
    /// settings choose: `$DEVBOX_CATALOG_DIR`, else `catalog_dir` of the user configuration.
    pub fn load() -> Result<Catalog> {
        use crate::project::{Defaults, Flags, HostEnv, UserConfig};
        let flags = Flags {
            catalog_dir: std::env::var_os(CATALOG_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            ..Flags::default()
        };
        let user = if flags.catalog_dir.is_some() {
            UserConfig::default()
        } else {
            UserConfig::load(&HostEnv::current())?
        };
        let settings = crate::project::resolve(&flags, None, &user, &Defaults::builtin());
        Catalog::load_with(settings.catalog_dir.map(|c| c.value).as_deref())
    }

    /// The builtin entries, then `~/.config/devbox/images`, then `extra` (the catalog
    /// directory the settings chose: `--catalog-dir`, `DEVBOX_CATALOG_DIR` or `catalog_dir`).
    pub fn load_with(extra: Option<&Path>) -> Result<Catalog> {
        let mut dirs: Vec<PathBuf> = user_dir().into_iter().collect();
        dirs.extend(extra.map(Path::to_path_buf));
        Catalog::from_dirs(&dirs)
    }

    /// The builtin entries only.
    #[cfg(test)]
    pub fn builtin() -> Result<Catalog> {
        Catalog::from_dirs::<&Path>(&[])
    }

    /// The builtin entries, then each directory's `*.toml` in turn (missing directories are
    /// skipped). Does not read the environment.
    pub fn from_dirs<P: AsRef<Path>>(dirs: &[P]) -> Result<Catalog> {
        let mut cat = Catalog {
            entries: BTreeMap::new(),
        };
        for (stem, text) in BUILTIN {
            let entry = parse_entry(text).with_context(|| {
                format!("the builtin catalog entry {stem} is invalid (a bug in devbox)")
            })?;
            cat.add(entry, Origin::Builtin);
        }
        for dir in dirs {
            cat.add_dir(dir.as_ref())?;
        }
        Ok(cat)
    }

    fn add(&mut self, entry: Entry, origin: Origin) {
        self.entries
            .insert(entry.id.clone(), Loaded { entry, origin });
    }

    fn add_dir(&mut self, dir: &Path) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read catalog directory {}", dir.display()))
            }
        };
        let mut files = Vec::new();
        for de in rd {
            let de = de.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = de.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut here: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read catalog file {}", path.display()))?;
            let entry = parse_entry(&text).with_context(|| {
                format!(
                    "catalog file {} is invalid\n  hint: fix or remove it; the format is described in devbox's images/*.toml",
                    path.display()
                )
            })?;
            if let Some(first) = here.insert(entry.id.clone(), path.clone()) {
                anyhow::bail!(
                    "catalog files {} and {} both define {:?}\n  hint: keep one",
                    first.display(),
                    path.display(),
                    entry.id
                );
            }
            self.add(entry, Origin::File(path));
        }
        Ok(())
    }

    /// Ids of the entries whose id or alias is `name`: an id wins over aliases.
    fn ids_named(&self, name: &str) -> Vec<&str> {
        if let Some((id, _)) = self.entries.get_key_value(name) {
            return vec![id.as_str()];
        }
        self.entries
            .values()
            .filter(|l| l.entry.aliases.iter().any(|a| a == name))
            .map(|l| l.entry.id.as_str())
            .collect()
    }

    /// Resolves a reference (`debian`, `debian:13`, `arch`, `ubuntu:noble`) for this machine.
    pub fn lookup(&self, reference: &str) -> Result<Choice, CatalogError> {
        self.lookup_for_arch(reference, host_arch())
    }

    /// `lookup` for devbox arch `arch` instead of this machine's.
    pub fn lookup_for_arch(&self, reference: &str, arch: &str) -> Result<Choice, CatalogError> {
        let (d, r) = split_reference(reference)?;
        let entry = self.entry_named(&d)?;
        let release = match r.as_deref() {
            None => entry.release(&entry.default_release).expect("validated"),
            Some(r) => release_named(entry, r)?,
        };
        let mut sources = Vec::new();
        for src in &entry.sources {
            // Templates were checked for every release and arch when the file was loaded.
            if let Ok(Some((kind, native))) = entry.expand_source(src, release, arch) {
                sources.push(Source {
                    kind,
                    arch: native,
                    toolbox_ready: src.common().toolbox_ready,
                });
            }
        }
        if sources.is_empty() {
            let available: BTreeSet<String> = entry
                .sources
                .iter()
                .filter(|s| Entry::serves(s, &release.name))
                .filter_map(|s| entry.arch_map(s))
                .flat_map(|m| m.keys().cloned())
                .collect();
            return Err(CatalogError::NoImageForArch {
                distro: entry.id.clone(),
                release: release.name.clone(),
                arch: arch.to_string(),
                available: available.into_iter().collect(),
            });
        }
        Ok(Choice {
            distro: entry.id.clone(),
            name: entry.name.clone(),
            release: release.name.clone(),
            family: entry.family.as_str().to_string(),
            arch: arch.to_string(),
            sources,
            toolbox_notes: entry.toolbox_notes.clone(),
        })
    }

    /// The entry whose id or alias is `d` (lowercase).
    fn entry_named(&self, d: &str) -> Result<&Entry, CatalogError> {
        match self.ids_named(d).as_slice() {
            [id] => Ok(&self.entries[*id].entry),
            [] => Err(CatalogError::UnknownDistro {
                given: d.to_string(),
                suggestions: close_matches(d, self.distro_names()),
            }),
            many => Err(CatalogError::Ambiguous {
                given: d.to_string(),
                candidates: many.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    /// `DISTRO:RELEASE` (canonical names) of every release `refs` name: `DISTRO` is all of its
    /// releases, `DISTRO:RELEASE` that one; no refs, every release of every entry. In catalog
    /// order, without repeats.
    pub fn releases_named(&self, refs: &[String]) -> Result<Vec<String>, CatalogError> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |e: &Entry, r: &schema::Release| {
            let name = format!("{}:{}", e.id, r.name);
            if !out.contains(&name) {
                out.push(name);
            }
        };
        if refs.is_empty() {
            for l in self.entries.values() {
                l.entry.releases.iter().for_each(|r| add(&l.entry, r));
            }
        }
        for reference in refs {
            let (d, r) = split_reference(reference)?;
            let entry = self.entry_named(&d)?;
            match r.as_deref() {
                Some(r) => add(entry, release_named(entry, r)?),
                None => entry.releases.iter().for_each(|r| add(entry, r)),
            }
        }
        Ok(out)
    }

    fn distro_names(&self) -> impl Iterator<Item = String> + '_ {
        self.entries
            .values()
            .flat_map(|l| std::iter::once(&l.entry.id).chain(&l.entry.aliases))
            .cloned()
    }

    /// Entries whose id, name, aliases, family or releases contain `text` (any case); with
    /// `DISTRO:RELEASE` text, both parts must match. Sorted by id.
    pub fn search(&self, text: Option<&str>) -> Vec<SearchRow> {
        let text = text
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let (dq, rq) = match text.split_once(':') {
            Some((d, r)) => (d.to_string(), Some(r.to_string())),
            None => (text.clone(), None),
        };
        self.entries
            .values()
            .filter(|l| {
                let e = &l.entry;
                let release_hit = |q: &str| {
                    e.releases
                        .iter()
                        .flat_map(|r| std::iter::once(&r.name).chain(&r.aliases))
                        .any(|n| n.contains(q))
                };
                let distro_hit = |q: &str| {
                    e.id.contains(q)
                        || e.name.to_ascii_lowercase().contains(q)
                        || e.aliases.iter().any(|a| a.contains(q))
                };
                match &rq {
                    Some(rq) => distro_hit(&dq) && release_hit(rq),
                    None => {
                        distro_hit(&dq)
                            || e.family.as_str().contains(dq.as_str())
                            || release_hit(&dq)
                    }
                }
            })
            .map(row)
            .collect()
    }

    /// Every name a reference can use: `debian`, `debian:13`, `debian:trixie`, `arch:latest`,
    /// ... sorted, for shell completion.
    pub fn names(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        for l in self.entries.values() {
            let e = &l.entry;
            for d in std::iter::once(&e.id).chain(&e.aliases) {
                out.insert(d.clone());
                for r in &e.releases {
                    for n in std::iter::once(&r.name).chain(&r.aliases) {
                        out.insert(format!("{d}:{n}"));
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

fn row(l: &Loaded) -> SearchRow {
    let e = &l.entry;
    let mut kinds: Vec<String> = Vec::new();
    let mut arches = BTreeSet::new();
    for s in &e.sources {
        let k = s.kind().as_str().to_string();
        if !kinds.contains(&k) {
            kinds.push(k);
        }
        if let Some(m) = e.arch_map(s) {
            arches.extend(m.keys().cloned());
        }
    }
    SearchRow {
        id: e.id.clone(),
        name: e.name.clone(),
        aliases: e.aliases.clone(),
        family: e.family.as_str().to_string(),
        default_release: e.default_release.clone(),
        releases: e
            .releases
            .iter()
            .map(|r| ReleaseRow {
                name: r.name.clone(),
                aliases: r.aliases.clone(),
            })
            .collect(),
        sources: kinds,
        arches: arches.into_iter().collect(),
        toolbox_ready: e.sources.iter().any(|s| s.common().toolbox_ready),
        toolbox_notes: e.toolbox_notes.clone(),
        origin: l.origin.to_string(),
    }
}

/// `DISTRO[:RELEASE]`, lowercase, split in two.
fn split_reference(reference: &str) -> Result<(String, Option<String>), CatalogError> {
    let given = reference.trim().to_ascii_lowercase();
    let (d, r) = match given.split_once(':') {
        Some((d, r)) => (d, Some(r)),
        None => (given.as_str(), None),
    };
    if d.is_empty() || r.is_some_and(|r| r.is_empty() || r.contains(':')) {
        return Err(CatalogError::BadReference {
            given: reference.to_string(),
        });
    }
    Ok((d.to_string(), r.map(str::to_string)))
}

/// The release of `entry` whose name or alias is `r`.
fn release_named<'a>(entry: &'a Entry, r: &str) -> Result<&'a schema::Release, CatalogError> {
    entry
        .releases
        .iter()
        .find(|rel| rel.name == r || rel.aliases.iter().any(|a| a == r))
        .ok_or_else(|| CatalogError::UnknownRelease {
            distro: entry.id.clone(),
            given: r.to_string(),
            suggestions: close_matches(
                r,
                entry
                    .releases
                    .iter()
                    .flat_map(|rel| std::iter::once(&rel.name).chain(&rel.aliases))
                    .cloned(),
            ),
            available: entry.releases.iter().map(release_label).collect(),
        })
}

/// `13 (trixie, stable)`.
fn release_label(r: &schema::Release) -> String {
    if r.aliases.is_empty() {
        r.name.clone()
    } else {
        format!("{} ({})", r.name, r.aliases.join(", "))
    }
}

fn parse_entry(text: &str) -> Result<Entry> {
    let entry: Entry = toml::from_str(text)?;
    entry.validate().map_err(anyhow::Error::msg)?;
    Ok(entry)
}

/// Names close to `given`: within a small edit distance, or a prefix either way. Best first.
fn close_matches(given: &str, candidates: impl Iterator<Item = String>) -> Vec<String> {
    let limit = given.chars().count().div_ceil(3).max(1);
    let mut scored: Vec<(usize, String)> = candidates
        .filter_map(|c| {
            let d = crate::ui::edit_distance(given, &c);
            if d <= limit {
                Some((d, c))
            } else if c.starts_with(given) || (given.starts_with(c.as_str()) && c.len() >= 2) {
                Some((limit + 1, c))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(6).map(|(_, c)| c).collect()
}
