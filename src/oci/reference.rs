//! Image references: `[REGISTRY/]REPOSITORY[:TAG][@sha256:HEX]`, with Docker Hub's short names.

use std::fmt;
use std::path::Path;

use super::OciError;

/// The registry host Docker Hub's API is served from. Part of the reference grammar itself:
/// `debian`, `library/debian` and `docker.io/library/debian` all name an image there.
pub const DOCKER_HUB: &str = "registry-1.docker.io";
/// How Docker Hub is shown and how users write it.
const DOCKER_HUB_DISPLAY: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A parsed image reference. `tag` is `Some("latest")` when neither a tag nor a digest was
/// given; with a digest, the digest decides what is pulled and the tag is informational.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Host and optional port, e.g. `quay.io`, `localhost:5000`, `[::1]:5000`, or
    /// [`DOCKER_HUB`] for Docker Hub.
    pub registry: String,
    /// The repository path, e.g. `library/debian`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference the way `docker pull` and `podman pull` do.
    pub fn parse(s: &str) -> Result<Reference, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains("://") {
            return Err(bad(
                "a URL is not an image reference (write HOST/REPOSITORY[:TAG] without a scheme)",
            ));
        }
        if s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "it contains spaces or control characters, or is too long",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d).map_err(|r| bad(&r))?)),
            None => (s, None),
        };
        // The tag separator is the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            // (None < Some(_): no '/' at all, or the ':' comes after the last '/'.)
            Some(i) if last_slash < Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(&format!(
                    "tag {t:?} is not valid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
                )));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if is_registry_host(first) => {
                validate_host(first).map_err(|r| bad(&r))?;
                let host = first.to_ascii_lowercase();
                if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
                    (DOCKER_HUB.to_string(), path.to_string())
                } else {
                    (host, path.to_string())
                }
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether `s` (an IMAGE argument) should be pulled from a registry rather than read as a
    /// local file: it is not a URL and no file of that name exists; it does not end like a
    /// tarball; it parses; and it names a registry (`HOST/PATH`, `localhost:5000/x`) or has a
    /// '/' (`library/debian`). A bare `debian` stays a (missing) file name.
    pub fn looks_like_oci(s: &str) -> bool {
        if s.contains("://") || s.starts_with(['/', '.', '~']) {
            return false;
        }
        if Path::new(s).symlink_metadata().is_ok() {
            return false;
        }
        let lower = s.to_ascii_lowercase();
        const ARCHIVE: [&str; 10] = [
            ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.bz2", ".gz",
            ".xz",
        ];
        if ARCHIVE.iter().any(|ext| lower.ends_with(ext)) {
            return false;
        }
        if Reference::parse(s).is_err() {
            return false;
        }
        let name = s.split('@').next().unwrap_or(s);
        name.contains('/')
    }

    /// The registry as users write it (`docker.io` for Docker Hub).
    pub fn registry_display(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_DISPLAY
        } else {
            &self.registry
        }
    }

    /// The same image pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry_display(), self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The first component is a registry host when it has a '.' or ':', is `localhost`, is an
/// IPv6 literal, or has upper-case letters (repositories are lower-case), as in Docker.
fn is_registry_host(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.starts_with('[')
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn validate_host(h: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry {h:?}: unclosed '['"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("registry {h:?}: {addr:?} is not an IPv6 address"))?;
        match after {
            "" => (h, None),
            p => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("registry {h:?}: unexpected text after ']'")),
            },
        }
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry {h:?}: port {p:?} is not a number"));
        }
    }
    if !host.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!("registry {h:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by '/'.
fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository name is missing".into());
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for comp in repo.split('/') {
        if !valid_component(comp) {
            return Err(format!(
                "repository component {comp:?} is not valid (lower-case letters and digits, separated by '.', '_', '__' or '-')"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

/// Checks a digest is `sha256:` and 64 lower-case hex digits (the only algorithm supported;
/// the digest also becomes a file name in the cache, so nothing else may pass).
pub(crate) fn parse_digest(d: &str) -> Result<String, String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} is not ALGORITHM:HEX"));
    };
    if alg != "sha256" {
        return Err(format!(
            "digest algorithm {alg:?} is not supported (only sha256)"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {d:?} is not sha256: followed by 64 lower-case hex digits"
        ));
    }
    Ok(d.to_string())
}

/// Whether the registry is on this machine (`localhost`, 127.0.0.0/8, `::1`), with or
/// without a port. Such registries are spoken to over plain http.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]` or `[v6][:port]`.
pub(crate) fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(i) => &registry[..=i],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry, r.repository, r.tag, r.digest)
    }

    fn t(
        reg: &str,
        repo: &str,
        tag: Option<&str>,
        dig: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (
            reg.into(),
            repo.into(),
            tag.map(Into::into),
            dig.map(Into::into),
        )
    }

    #[test]
    fn parses_references() {
        let cases = [
            (
                "localhost:5000/a/b:tag",
                t("localhost:5000", "a/b", Some("tag"), None),
            ),
            ("localhost/a", t("localhost", "a", Some("latest"), None)),
            ("[::1]:5000/x", t("[::1]:5000", "x", Some("latest"), None)),
            ("[::1]/x:1", t("[::1]", "x", Some("1"), None)),
            (
                "127.0.0.1:5000/devbox-test/busybox:v1",
                t("127.0.0.1:5000", "devbox-test/busybox", Some("v1"), None),
            ),
            (
                "quay.io/toolbx/ubuntu-toolbox:24.04",
                t("quay.io", "toolbx/ubuntu-toolbox", Some("24.04"), None),
            ),
            (
                "docker.io/library/archlinux",
                t(DOCKER_HUB, "library/archlinux", Some("latest"), None),
            ),
            (
                "docker.io/archlinux",
                t(DOCKER_HUB, "library/archlinux", Some("latest"), None),
            ),
            (
                "index.docker.io/foo/bar:1",
                t(DOCKER_HUB, "foo/bar", Some("1"), None),
            ),
            (
                "library/debian",
                t(DOCKER_HUB, "library/debian", Some("latest"), None),
            ),
            (
                "debian",
                t(DOCKER_HUB, "library/debian", Some("latest"), None),
            ),
            (
                "debian:bookworm-slim",
                t(DOCKER_HUB, "library/debian", Some("bookworm-slim"), None),
            ),
            (&format!("x/y@{D}"), t(DOCKER_HUB, "x/y", None, Some(D))),
            (
                &format!("ghcr.io/a/b:v1@{D}"),
                t("ghcr.io", "a/b", Some("v1"), Some(D)),
            ),
            (
                "registry.fedoraproject.org/fedora-toolbox:40",
                t(
                    "registry.fedoraproject.org",
                    "fedora-toolbox",
                    Some("40"),
                    None,
                ),
            ),
            (
                "Example.COM/a__b/c-d--e.f_g",
                t("example.com", "a__b/c-d--e.f_g", Some("latest"), None),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(p(input), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "https://quay.io/a/b",
            "upper/Case:1",
            "quay.io/UPPER",
            "a/b:",
            "a/b:-x",
            "a//b",
            "a/b/",
            "a/-b",
            "a/b@sha256:abc",
            "a/b@md5:0123456789abcdef0123456789abcdef",
            &format!("a/b@sha256:{}", "A".repeat(64)),
            "quay.io:x/a",
            "[::1/x",
            "[zz]:5000/x",
            "a b/c",
            "quay.io/",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (input, shown) in [
            ("library/debian", "docker.io/library/debian:latest"),
            ("debian:12", "docker.io/library/debian:12"),
            ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
            (&format!("x/y@{D}"), &format!("docker.io/x/y@{D}")),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), shown);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn tells_references_from_files() {
        for s in [
            "library/debian",
            "quay.io/toolbx/ubuntu-toolbox:24.04",
            "localhost:5000/a",
            "[::1]:5000/x",
            "docker.io/library/archlinux",
        ] {
            assert!(Reference::looks_like_oci(s), "{s}");
        }
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("a");
        std::fs::create_dir(&existing).unwrap();
        for s in [
            "debian",
            "debian:12",
            "./library/debian",
            "/tmp/x/y",
            "images/debian.tar.gz",
            "dl/rootfs.tar.zst",
            "http://example.com/a/b.tar",
            "~/x/y",
            existing.to_str().unwrap(),
        ] {
            assert!(!Reference::looks_like_oci(s), "{s}");
        }
    }

    #[test]
    fn knows_loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
            "LOCALHOST:1",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "quay.io",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
            DOCKER_HUB,
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
