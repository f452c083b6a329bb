//! From a catalog source to something to download: the network part of the catalog. Index
//! files (simplestreams JSON, checksum lists, Alpine's YAML) are fetched into memory; OCI and
//! pinned sources need no request at all.

use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::schema::{parent_url, SourceKind};
use super::{alpine, simplestreams, sums, Choice, Source};

/// What a source resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Resolved {
    /// A rootfs archive: hand `url` and `sha256` to `fetch::download`.
    Archive {
        url: String,
        sha256: Option<String>,
        /// The build picked (e.g. `20251128_05:24`, `3.22.2`), for messages and records.
        version: Option<String>,
    },
    /// An OCI image reference for the OCI puller.
    Oci { reference: String },
    /// A root to build from a package archive (`debarchive`); the archive is read there.
    Bootstrap { target: crate::debarchive::Target },
}

/// The largest index file read (the LXC server's images.json is a few MiB).
const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Why a lookup found nothing, as opposed to failing: the server answered with an error
/// status, or its index does not list what the source names. (`devbox image check` tells
/// "missing" and "denied" from other failures by these.)
#[derive(Debug, thiserror::Error)]
pub enum Lookup {
    #[error("cannot fetch {url}: the server answered {status}\n  hint: the catalog entry may be out of date; try another release or source")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{0}")]
    NotListed(String),
}

/// Resolves one source of `choice`: network for simplestreams, sumsfile and alpine sources.
pub fn resolve(choice: &Choice, source: &Source) -> Result<Resolved> {
    resolve_with(source, &get_bytes).with_context(|| {
        format!(
            "cannot resolve {}:{} ({}) from {source}",
            choice.distro, choice.release, source.arch
        )
    })
}

/// An error chain on one line (hints dropped), for lists of failures.
pub fn one_line(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("hint:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`resolve`] with `get` fetching the index files (each is read whole into memory).
pub fn resolve_with(source: &Source, get: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<Resolved> {
    let get_text = |url: &str| -> Result<String> {
        String::from_utf8(get(url)?).map_err(|_| anyhow!("{url} is not text (UTF-8)"))
    };
    match &source.kind {
        SourceKind::Oci { image } => Ok(Resolved::Oci {
            reference: image.clone(),
        }),
        SourceKind::Archive {
            distro,
            suite,
            components,
            apt_components,
        } => Ok(Resolved::Bootstrap {
            target: crate::debarchive::Target {
                distro: distro.clone(),
                suite: suite.clone(),
                components: components.clone(),
                apt_components: apt_components.clone(),
                arch: source.arch.clone(),
            },
        }),
        SourceKind::Pinned { url, sha256 } => Ok(Resolved::Archive {
            url: url.clone(),
            sha256: Some(sha256.clone()),
            version: None,
        }),
        SourceKind::Simplestreams { url, product } => {
            let index_url = format!("{url}/streams/v1/index.json");
            let index: simplestreams::Index = json(&index_url, &get(&index_url)?)?;
            let path = simplestreams::products_path(&index, product).map_err(Lookup::NotListed)?;
            let products_url = join_url(url, relative(&path)?);
            let products: simplestreams::Products = json(&products_url, &get(&products_url)?)?;
            let img = simplestreams::newest(&products, product)
                .map_err(|e| Lookup::NotListed(format!("{e} (in {products_url})")))?;
            Ok(Resolved::Archive {
                url: join_url(url, relative(&img.path)?),
                sha256: img.sha256,
                version: Some(img.version),
            })
        }
        SourceKind::Sumsfile { url, pattern, base } => {
            let pattern = sums::Pattern::parse(pattern).map_err(|e| anyhow!(e))?;
            let text = get_text(url)?;
            let list = sums::parse(&text);
            let (sum, version) = sums::pick(&list, &pattern)
                .map_err(|e| Lookup::NotListed(format!("{e} (in {url})")))?;
            Ok(Resolved::Archive {
                url: join_url(base, file_name(&sum.name)?),
                sha256: Some(sum.sha256.clone()),
                version,
            })
        }
        SourceKind::Alpine { url, flavor } => {
            let text = get_text(url)?;
            let records = alpine::parse(&text).map_err(|e| anyhow!("{url}: {e}"))?;
            let p = alpine::pick(&records, flavor, &source.arch)
                .map_err(|e| Lookup::NotListed(format!("{e} (in {url})")))?;
            Ok(Resolved::Archive {
                url: join_url(&parent_url(url), file_name(&p.file)?),
                sha256: Some(p.sha256),
                version: p.version,
            })
        }
    }
}

fn join_url(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

/// A path a server gave us, to append to its root: relative, no `..`, no scheme.
fn relative(path: &str) -> Result<&str> {
    let p = path.trim_start_matches('/');
    if p.is_empty()
        || p.contains("://")
        || p.split('/').any(|seg| seg == ".." || seg == ".")
        || p.contains(['?', '#', '\\'])
        || p.chars().any(char::is_control)
    {
        bail!("the server gave an unusable path {path:?}");
    }
    Ok(p)
}

/// A file name a server gave us: one path segment.
fn file_name(name: &str) -> Result<&str> {
    let n = relative(name)?;
    if n.contains('/') {
        bail!("the server gave an unusable file name {name:?}");
    }
    Ok(n)
}

fn is_loopback(url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => hostport.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A client for the catalog's servers (no proxy for loopback ones).
fn client(url: &str) -> Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder()
        .user_agent(concat!("devbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(120));
    if is_loopback(url) {
        // A proxy cannot reach this machine's loopback; a loopback source means "here".
        builder = builder.no_proxy();
    }
    Ok(builder.build()?)
}

/// An index file, read whole (at most [`MAX_INDEX_BYTES`]).
pub fn get_bytes(url: &str) -> Result<Vec<u8>> {
    let resp = client(url)?
        .get(url)
        .send()
        .map_err(|e| unreachable_error("cannot fetch", url, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Lookup::Status {
            url: url.to_string(),
            status,
        }
        .into());
    }
    let mut body = Vec::new();
    resp.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("reading {url} broke off\n  hint: try again"))?;
    if body.len() as u64 > MAX_INDEX_BYTES {
        bail!("{url} is larger than {MAX_INDEX_BYTES} bytes; it is not an index file");
    }
    Ok(body)
}

/// A request that got no answer: the cause on the first line (lists of failures show only
/// that line), the hint below.
fn unreachable_error(what: &str, url: &str, e: reqwest::Error) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    anyhow!("{what} {url}: {e:#}\n  hint: check your network or proxy settings")
}

/// The body of `url` read as the JSON structure expected.
fn json<T: serde::de::DeserializeOwned>(url: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).with_context(|| format!("{url} is not the JSON expected"))
}

/// What a HEAD request learnt of a file: its size, when the server said.
pub struct Head {
    pub size: Option<u64>,
}

/// Asks the server about `url` with a HEAD request (no body is sent back). A server that does
/// not answer HEAD requests (405, 501) says nothing either way: `Ok` without a size.
pub fn head(url: &str) -> Result<Head> {
    let resp = client(url)?
        .head(url)
        .send()
        .map_err(|e| unreachable_error("cannot reach", url, e))?;
    let status = resp.status();
    if status.as_u16() == 405 || status.as_u16() == 501 {
        return Ok(Head { size: None });
    }
    if !status.is_success() {
        return Err(Lookup::Status {
            url: url.to_string(),
            status,
        }
        .into());
    }
    let size = resp
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Head { size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(
            parent_url("https://h.example/a/b/SHA256SUMS"),
            "https://h.example/a/b"
        );
        assert_eq!(parent_url("https://h.example/SUMS"), "https://h.example");
        assert_eq!(parent_url("https://h.example"), "https://h.example");
        assert_eq!(join_url("http://h/a/", "/b/c"), "http://h/a/b/c");
        assert!(relative("images/x/20250101_05:24/rootfs.tar.xz").is_ok());
        for bad in ["", "../x", "a/../b", "http://evil/x", "a?b", "a\nb"] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
        assert!(file_name("a/b").is_err());
        assert!(file_name("./x.tar").is_err());
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://images.example.org/x"));
        assert!(!is_loopback("https://127.0.0.1.example.org/x"));
        assert!(!is_loopback("http://127.0.0.1@example.org/x"));
    }
}
