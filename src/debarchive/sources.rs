//! Where the host's apt gets its packages: `/etc/apt/sources.list` and
//! `/etc/apt/sources.list.d/*.list` (one-line entries) and `*.sources` (deb822), and which
//! distribution the host runs (`/etc/os-release`). devbox takes a distribution's mirror from
//! there when the host runs that distribution; it names no mirror itself.

use std::path::{Path, PathBuf};

use super::deb822;

/// One `deb` entry of the host's apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// `signed-by` / `Signed-By` when it names a file.
    pub signed_by: Option<PathBuf>,
    /// The file it was read from, for messages.
    pub file: PathBuf,
}

/// The host's distribution: `ID` and `VERSION_CODENAME` of os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOs {
    pub id: String,
    pub codename: String,
}

pub fn parse_os_release(text: &str) -> HostOs {
    let mut os = HostOs::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_CODENAME" => os.codename = v,
            _ => {}
        }
    }
    os
}

pub fn host_os() -> HostOs {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_release(&t))
        .unwrap_or_default()
}

/// Every `deb` entry under `etc_apt` (normally `/etc/apt`), in the order apt reads them:
/// `sources.list`, then `sources.list.d/` by file name. Unreadable files are passed over.
pub fn read_all(etc_apt: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    if let Ok(text) = std::fs::read_to_string(&main) {
        out.extend(parse_list(&text, &main));
    }
    let dir = etc_apt.join("sources.list.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_list(&text, &f)),
            Some("sources") => out.extend(parse_sources(&text, &f)),
            _ => {}
        }
    }
    out
}

/// One-line entries: `deb [opt=value ...] URI SUITE [COMPONENT...]`.
pub fn parse_list(text: &str, file: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = key_file(v.split(',').next().unwrap_or(""));
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
            file: file.to_path_buf(),
        });
    }
    out
}

/// deb822 entries (`Types: deb`, `URIs:`, `Suites:`, `Components:`, `Signed-By:`,
/// `Enabled: no`).
pub fn parse_sources(text: &str, file: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    for s in deb822::parse(text) {
        let words = |k| -> Vec<String> {
            s.get(k)
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if s.get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let signed_by = s
            .get("Signed-By")
            .and_then(|v| key_file(v.split_whitespace().next().unwrap_or("")));
        for uri in words("URIs") {
            out.push(AptSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: signed_by.clone(),
                file: file.to_path_buf(),
            });
        }
    }
    out
}

/// A `signed-by` value that names a key file (it may also hold a fingerprint or, in deb822,
/// the key itself).
fn key_file(v: &str) -> Option<PathBuf> {
    v.starts_with('/').then(|| PathBuf::from(v))
}

/// Whether `suite` is a distribution's main suite rather than an add-on
/// (`bookworm-security`, `noble-updates`, `bullseye/updates`).
fn is_main_suite(suite: &str) -> bool {
    !suite.is_empty() && !suite.contains(['-', '/'])
}

/// The host's mirror for `distro`, when the host runs it: the first entry whose suites
/// include the host's own codename, else the first with a main suite and an `http(s)` URI.
pub fn host_mirror<'a>(
    distro: &str,
    os: &HostOs,
    sources: &'a [AptSource],
) -> Option<&'a AptSource> {
    if os.id != distro {
        return None;
    }
    let usable = |s: &&AptSource| s.uri.starts_with("http://") || s.uri.starts_with("https://");
    sources
        .iter()
        .filter(usable)
        .find(|s| !os.codename.is_empty() && s.suites.contains(&os.codename))
        .or_else(|| {
            sources
                .iter()
                .filter(usable)
                .find(|s| s.suites.iter().any(|x| is_main_suite(x)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_entries() {
        let text = "# comment\ndeb http://m.example/debian/ bookworm main contrib\ndeb-src http://m.example/debian bookworm main\ndeb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://m.example/debian-security bookworm-security main # trailing\n";
        let s = parse_list(text, Path::new("/etc/apt/sources.list"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://m.example/debian");
        assert_eq!(s[0].suites, ["bookworm"]);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(s[0].signed_by, None);
        assert_eq!(
            s[1].signed_by.as_deref(),
            Some(Path::new("/usr/share/keyrings/x.gpg"))
        );
    }

    #[test]
    fn deb822_entries() {
        let text = "Types: deb deb-src\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb-src\nURIs: http://src.example/\nSuites: x\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/\nSuites: y\n";
        let s = parse_sources(text, Path::new("debian.sources"));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            s[0].signed_by.as_deref(),
            Some(Path::new("/usr/share/keyrings/debian-archive-keyring.gpg"))
        );
    }

    #[test]
    fn the_host_mirror_is_its_own_distributions() {
        let os = parse_os_release("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n");
        assert_eq!(os.id, "debian");
        assert_eq!(os.codename, "bookworm");
        let sources = parse_list(
            "deb https://other.example/apt cloud-sdk-bookworm main\ndeb http://sec.example/debian-security bookworm-security main\ndeb http://m.example/debian bookworm main\n",
            Path::new("x.list"),
        );
        assert_eq!(
            host_mirror("debian", &os, &sources).map(|s| s.uri.as_str()),
            Some("http://m.example/debian")
        );
        assert!(host_mirror("ubuntu", &os, &sources).is_none());
        // Without the host's codename among the suites: the first main suite.
        let other = HostOs {
            id: "debian".into(),
            codename: "trixie".into(),
        };
        assert_eq!(
            host_mirror("debian", &other, &sources).map(|s| s.uri.as_str()),
            Some("http://m.example/debian")
        );
    }
}
