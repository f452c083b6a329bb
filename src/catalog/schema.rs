//! The catalog file format as plain data (serde structs), its validation, and the `{var}`
//! templates its strings use. Nothing here touches the network or the file system.
//!
//! The format itself is documented at the top of `catalog/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Architecture names devbox uses (Debian's spelling); the keys of every arch map.
pub const ARCHES: &[&str] = &[
    "amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "riscv64", "loong64",
];

/// Template variables every entry has; a release's `vars` may not redefine them.
const RESERVED_VARS: &[&str] = &["id", "release", "arch", "version"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Apt,
    Dnf,
    Apk,
    Pacman,
    Zypper,
    Xbps,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Apt => "apt",
            Family::Dnf => "dnf",
            Family::Apk => "apk",
            Family::Pacman => "pacman",
            Family::Zypper => "zypper",
            Family::Xbps => "xbps",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Oci,
    Simplestreams,
    Sumsfile,
    Alpine,
    Pinned,
    Archive,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Oci,
        Kind::Simplestreams,
        Kind::Sumsfile,
        Kind::Alpine,
        Kind::Pinned,
        Kind::Archive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Oci => "oci",
            Kind::Simplestreams => "simplestreams",
            Kind::Sumsfile => "sumsfile",
            Kind::Alpine => "alpine",
            Kind::Pinned => "pinned",
            Kind::Archive => "archive",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// One catalog file: one distribution.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub family: Family,
    pub default_release: String,
    /// Free text: which sources give a toolbox-ready image and what that means here.
    #[serde(default)]
    pub toolbox_notes: Option<String>,
    #[serde(rename = "release")]
    pub releases: Vec<Release>,
    /// Source kind → (devbox arch → the name that kind's server uses).
    #[serde(default)]
    pub arch: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(rename = "source")]
    pub sources: Vec<RawSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Extra template variables for this release (e.g. `codename = "trixie"`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// Fields every source kind has.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// Canonical release names this source serves; absent means all.
    pub releases: Option<Vec<String>>,
    /// The image is made for Toolbx/distrobox-style use (user tools, sudo, locales, ...).
    pub toolbox_ready: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PinnedSha {
    One(String),
    PerArch(BTreeMap<String, String>),
}

/// One `[[source]]` as written. The fields every kind shares (`releases`, `arch`,
/// `toolbox_ready`) are repeated in each variant on purpose: serde cannot combine
/// `deny_unknown_fields` (which turns a misspelt key into an error) with `flatten`, so a shared
/// struct would cost that check. `common()` gives them back as one value.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawSource {
    Oci {
        image: String,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
    Simplestreams {
        url: String,
        #[serde(default)]
        distro: Option<String>,
        #[serde(default)]
        release: Option<String>,
        #[serde(default)]
        variant: Option<String>,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
    Sumsfile {
        url: String,
        pattern: String,
        #[serde(default)]
        base: Option<String>,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
    Alpine {
        url: String,
        #[serde(default)]
        flavor: Option<String>,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
    Pinned {
        url: String,
        sha256: PinnedSha,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
    /// A root file system built from the distribution's package archive (Debian format).
    Archive {
        /// The suite (`{codename}`); default `{release}`.
        #[serde(default)]
        suite: Option<String>,
        /// Default `["main"]`.
        #[serde(default)]
        components: Option<Vec<String>>,
        /// What the box's sources.list names; default `components`.
        #[serde(default)]
        apt_components: Option<Vec<String>>,
        #[serde(default)]
        releases: Option<Vec<String>>,
        #[serde(default)]
        arch: Option<BTreeMap<String, String>>,
        #[serde(default)]
        toolbox_ready: bool,
    },
}

impl RawSource {
    pub fn kind(&self) -> Kind {
        match self {
            RawSource::Oci { .. } => Kind::Oci,
            RawSource::Simplestreams { .. } => Kind::Simplestreams,
            RawSource::Sumsfile { .. } => Kind::Sumsfile,
            RawSource::Alpine { .. } => Kind::Alpine,
            RawSource::Pinned { .. } => Kind::Pinned,
            RawSource::Archive { .. } => Kind::Archive,
        }
    }

    pub fn common(&self) -> Common {
        let (releases, toolbox_ready) = match self {
            RawSource::Oci {
                releases,
                toolbox_ready,
                ..
            }
            | RawSource::Simplestreams {
                releases,
                toolbox_ready,
                ..
            }
            | RawSource::Sumsfile {
                releases,
                toolbox_ready,
                ..
            }
            | RawSource::Alpine {
                releases,
                toolbox_ready,
                ..
            }
            | RawSource::Pinned {
                releases,
                toolbox_ready,
                ..
            }
            | RawSource::Archive {
                releases,
                toolbox_ready,
                ..
            } => (releases, toolbox_ready),
        };
        Common {
            releases: releases.clone(),
            toolbox_ready: *toolbox_ready,
        }
    }
}

/// A source with its templates expanded for one release and one architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    /// An OCI image reference, pulled by the OCI code.
    Oci { image: String },
    /// An LXC-style image server: `url` is its root (`url/streams/v1/index.json`), `product`
    /// the product key (`debian:trixie:amd64:default`).
    Simplestreams { url: String, product: String },
    /// A checksum file at `url`; the file is the newest entry whose name matches `pattern`,
    /// downloaded from `base/NAME`.
    Sumsfile {
        url: String,
        pattern: String,
        base: String,
    },
    /// Alpine's `latest-releases.yaml` at `url`; the entry of `flavor`.
    Alpine { url: String, flavor: String },
    /// A fixed archive.
    Pinned { url: String, sha256: String },
    /// A root built from the package archive of distribution `distro` (its mirror comes from
    /// the user's configuration or the host's apt), suite `suite`.
    Archive {
        distro: String,
        suite: String,
        components: Vec<String>,
        /// The components the box's `/etc/apt/sources.list` names (`components` and more).
        apt_components: Vec<String>,
    },
}

impl Entry {
    /// The release with this canonical name.
    pub fn release(&self, name: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.name == name)
    }

    /// The arch map a source uses: its own, else the entry's for its kind.
    pub fn arch_map<'a>(&'a self, src: &'a RawSource) -> Option<&'a BTreeMap<String, String>> {
        match src {
            RawSource::Oci { arch: Some(a), .. }
            | RawSource::Simplestreams { arch: Some(a), .. }
            | RawSource::Sumsfile { arch: Some(a), .. }
            | RawSource::Alpine { arch: Some(a), .. }
            | RawSource::Pinned { arch: Some(a), .. }
            | RawSource::Archive { arch: Some(a), .. } => Some(a),
            _ => self.arch.get(src.kind().as_str()),
        }
    }

    /// Whether `src` serves `release` (a canonical name).
    pub fn serves(src: &RawSource, release: &str) -> bool {
        src.common()
            .releases
            .map_or(true, |rs| rs.iter().any(|r| r == release))
    }

    /// Expands `src` for `release` on devbox arch `arch`; None if the source does not serve
    /// that release or has no image for that arch.
    pub fn expand_source(
        &self,
        src: &RawSource,
        release: &Release,
        arch: &str,
    ) -> Result<Option<(SourceKind, String)>, String> {
        if !Entry::serves(src, &release.name) {
            return Ok(None);
        }
        let Some(native) = self.arch_map(src).and_then(|m| m.get(arch)) else {
            return Ok(None);
        };
        let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
        vars.insert("id", &self.id);
        vars.insert("release", &release.name);
        vars.insert("arch", native);
        for (k, v) in &release.vars {
            vars.insert(k, v);
        }
        let x = |t: &str| expand(t, &vars, &[]);
        let kind = match src {
            RawSource::Oci { image, .. } => SourceKind::Oci { image: x(image)? },
            RawSource::Simplestreams {
                url,
                distro,
                release: rel,
                variant,
                ..
            } => {
                let distro = x(distro.as_deref().unwrap_or("{id}"))?;
                let rel = x(rel.as_deref().unwrap_or("{release}"))?;
                let variant = x(variant.as_deref().unwrap_or("default"))?;
                SourceKind::Simplestreams {
                    url: x(url)?.trim_end_matches('/').to_string(),
                    product: format!("{distro}:{rel}:{native}:{variant}"),
                }
            }
            RawSource::Sumsfile {
                url, pattern, base, ..
            } => {
                let url = x(url)?;
                let base = match base {
                    Some(b) => x(b)?.trim_end_matches('/').to_string(),
                    None => parent_url(&url),
                };
                SourceKind::Sumsfile {
                    pattern: expand(pattern, &vars, &["version"])?,
                    url,
                    base,
                }
            }
            RawSource::Alpine { url, flavor, .. } => SourceKind::Alpine {
                url: x(url)?,
                flavor: x(flavor.as_deref().unwrap_or("alpine-minirootfs"))?,
            },
            RawSource::Pinned { url, sha256, .. } => {
                let sha = match sha256 {
                    PinnedSha::One(s) => s.clone(),
                    PinnedSha::PerArch(m) => m
                        .get(arch)
                        .cloned()
                        .ok_or_else(|| format!("pinned source has no sha256 for {arch}"))?,
                };
                SourceKind::Pinned {
                    url: x(url)?,
                    sha256: sha.trim().to_ascii_lowercase(),
                }
            }
            RawSource::Archive {
                suite,
                components,
                apt_components,
                ..
            } => {
                let each = |v: &[String]| v.iter().map(|c| x(c)).collect::<Result<Vec<_>, _>>();
                let components = match components {
                    Some(c) => each(c)?,
                    None => vec!["main".to_string()],
                };
                SourceKind::Archive {
                    distro: self.id.clone(),
                    suite: x(suite.as_deref().unwrap_or("{release}"))?,
                    apt_components: match apt_components {
                        Some(c) => each(c)?,
                        None => components.clone(),
                    },
                    components,
                }
            }
        };
        Ok(Some((kind, native.clone())))
    }

    /// Checks everything that can be checked without the network; the message says what and
    /// where (release, source number) so the file can be fixed.
    pub fn validate(&self) -> Result<(), String> {
        check_name("id", &self.id)?;
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        let mut seen = BTreeSet::new();
        for a in &self.aliases {
            check_name("alias", a)?;
            if a == &self.id || !seen.insert(a) {
                return Err(format!("alias {a:?} is given twice (or equals the id)"));
            }
        }
        if self.releases.is_empty() {
            return Err("no [[release]]".into());
        }
        let mut names = BTreeSet::new();
        for r in &self.releases {
            for n in std::iter::once(&r.name).chain(&r.aliases) {
                check_name("release name", n)?;
                if !names.insert(n.as_str()) {
                    return Err(format!(
                        "release name or alias {n:?} is used twice; each must name one release"
                    ));
                }
            }
            for k in r.vars.keys() {
                if RESERVED_VARS.contains(&k.as_str()) {
                    return Err(format!(
                        "release {}: var {k:?} is reserved (id, release, arch, version are set by devbox)",
                        r.name
                    ));
                }
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(format!(
                        "release {}: var name {k:?} must be lowercase letters, digits and _",
                        r.name
                    ));
                }
            }
        }
        if self.release(&self.default_release).is_none() {
            return Err(format!(
                "default_release {:?} is not the name of a [[release]] (aliases do not count)",
                self.default_release
            ));
        }
        for (kind, map) in &self.arch {
            if Kind::parse(kind).is_none() {
                return Err(format!(
                    "[arch.{kind}]: unknown source kind; kinds are {}",
                    Kind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            check_arch_map(&format!("[arch.{kind}]"), map)?;
        }
        if self.sources.is_empty() {
            return Err("no [[source]]".into());
        }
        for (i, src) in self.sources.iter().enumerate() {
            let at = format!("source {} ({})", i + 1, src.kind().as_str());
            let common = src.common();
            if let Some(rs) = &common.releases {
                for r in rs {
                    if self.release(r).is_none() {
                        return Err(format!(
                            "{at}: releases lists {r:?}, which is not the name of a [[release]]"
                        ));
                    }
                }
            }
            let Some(map) = self.arch_map(src) else {
                return Err(format!(
                    "{at}: no arch map: add [arch.{}] or an `arch` table to the source",
                    src.kind().as_str()
                ));
            };
            check_arch_map(&at, map)?;
            if let RawSource::Pinned {
                sha256: PinnedSha::PerArch(m),
                ..
            } = src
            {
                for a in map.keys() {
                    if !m.contains_key(a) {
                        return Err(format!("{at}: sha256 has no digest for {a}"));
                    }
                }
            }
            for r in &self.releases {
                for a in map.keys() {
                    let Some((kind, _)) = self
                        .expand_source(src, r, a)
                        .map_err(|e| format!("{at}, release {}: {e}", r.name))?
                    else {
                        continue;
                    };
                    check_expanded(&kind).map_err(|e| format!("{at}, release {}: {e}", r.name))?;
                }
            }
        }
        for r in &self.releases {
            if !self.sources.iter().any(|s| Entry::serves(s, &r.name)) {
                return Err(format!("release {} has no source that serves it", r.name));
            }
        }
        Ok(())
    }
}

/// The URL of the directory holding `url`'s file, without a trailing slash.
pub fn parent_url(url: &str) -> String {
    let path_start = url
        .find("://")
        .map(|i| i + 3)
        .and_then(|s| url[s..].find('/').map(|p| s + p));
    match (path_start, url.rfind('/')) {
        (Some(p), Some(slash)) if slash >= p => url[..slash].to_string(),
        _ => url.trim_end_matches('/').to_string(),
    }
}

/// Ids, aliases and release names: lowercase, start with a letter or digit, then letters,
/// digits, `.`, `_`, `-`. (So they can never contain the `:` of `DISTRO:RELEASE`.)
fn check_name(what: &str, s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-'
        });
    if ok && s.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

fn check_arch_map(at: &str, map: &BTreeMap<String, String>) -> Result<(), String> {
    if map.is_empty() {
        return Err(format!("{at}: the arch map is empty"));
    }
    for (k, v) in map {
        if !ARCHES.contains(&k.as_str()) {
            return Err(format!(
                "{at}: unknown architecture {k:?}; keys are devbox's names ({}), values the server's",
                ARCHES.join(", ")
            ));
        }
        if v.is_empty() || v.contains(['/', ' ', '{', '}']) {
            return Err(format!("{at}: arch name {v:?} for {k} is not usable"));
        }
    }
    Ok(())
}

fn check_expanded(kind: &SourceKind) -> Result<(), String> {
    let http = |what: &str, u: &str| {
        if u.starts_with("http://") || u.starts_with("https://") {
            Ok(())
        } else {
            Err(format!("{what} {u:?} is not an http:// or https:// URL"))
        }
    };
    match kind {
        SourceKind::Oci { image } => {
            if image.is_empty() || image.contains("://") || image.contains(char::is_whitespace) {
                return Err(format!(
                    "image {image:?} is not an OCI reference (like quay.io/org/name:tag)"
                ));
            }
        }
        SourceKind::Simplestreams { url, .. } => http("url", url)?,
        SourceKind::Sumsfile { url, pattern, base } => {
            http("url", url)?;
            http("base", base)?;
            super::sums::Pattern::parse(pattern)?;
        }
        SourceKind::Alpine { url, flavor } => {
            http("url", url)?;
            if flavor.is_empty() {
                return Err("flavor is empty".into());
            }
        }
        SourceKind::Archive {
            suite,
            components,
            apt_components,
            ..
        } => {
            let word = |w: &str| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                    && !w.split('/').any(|s| s.is_empty() || s == "..")
            };
            if !word(suite) {
                return Err(format!("suite {suite:?} is not a suite name (like trixie)"));
            }
            if components.is_empty() || !components.iter().all(|c| word(c)) {
                return Err(format!(
                    "components {components:?} must be names (like main)"
                ));
            }
            if let Some(missing) = components.iter().find(|c| !apt_components.contains(c)) {
                return Err(format!(
                    "apt_components {apt_components:?} must name every one of components (it lacks {missing:?})"
                ));
            }
            if !apt_components.iter().all(|c| word(c)) {
                return Err(format!(
                    "apt_components {apt_components:?} must be names (like universe)"
                ));
            }
        }
        SourceKind::Pinned { url, sha256 } => {
            http("url", url)?;
            if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("sha256 {sha256:?} is not 64 hexadecimal digits"));
            }
        }
    }
    Ok(())
}

/// Replaces each `{name}` in `template` with its value from `vars`. Names in `keep` stay as
/// they are (the `{version}` capture of sumsfile patterns). An unknown name is an error.
pub fn expand(
    template: &str,
    vars: &BTreeMap<&str, &str>,
    keep: &[&str],
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{template:?}: '{{' without a closing '}}'"))?;
        let name = &after[..close];
        if keep.contains(&name) {
            out.push('{');
            out.push_str(name);
            out.push('}');
        } else {
            let v = vars.get(name).ok_or_else(|| {
                let mut known: Vec<&str> = vars.keys().copied().collect();
                known.extend(keep);
                format!(
                    "{template:?}: unknown variable {{{name}}}; known here: {}",
                    known.join(", ")
                )
            })?;
            out.push_str(v);
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{template:?}: '}}' without an opening '{{'"));
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_known_and_keeps_version() {
        let vars: BTreeMap<&str, &str> = [("arch", "x86_64"), ("release", "9")].into();
        assert_eq!(
            expand(
                "Rocky-{release}-{version}.{arch}.tar.xz",
                &vars,
                &["version"]
            )
            .unwrap(),
            "Rocky-9-{version}.x86_64.tar.xz"
        );
        let e = expand("{nope}", &vars, &[]).unwrap_err();
        assert!(e.contains("unknown variable {nope}"), "{e}");
        assert!(e.contains("arch"), "{e}");
        assert!(expand("a{b", &vars, &[]).is_err());
        assert!(expand("a}b", &vars, &[]).is_err());
        assert_eq!(expand("plain", &vars, &[]).unwrap(), "plain");
    }

    #[test]
    fn names_are_checked() {
        for ok in ["debian", "24.04", "3.24", "leap-16.0", "a", "sid"] {
            check_name("x", ok).unwrap();
        }
        for bad in ["", "Debian", "-x", "a:b", "a b", ".x", &"x".repeat(65)] {
            assert!(check_name("x", bad).is_err(), "{bad:?}");
        }
    }
}
