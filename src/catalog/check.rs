//! Whether a catalog source answers, without downloading its image: `devbox image check`.
//!
//! The source is resolved the way `create` resolves it ([`resolve_with`]: the same index
//! files, read the same way), then the image it names is looked at without its bytes: an OCI
//! image through [`crate::oci::probe`] (its manifest, an index with the platform chosen, no
//! config or layer), an archive with a HEAD request. Failures are sorted into "missing" (the
//! server says there is no such thing), "denied" (it wants credentials, or refuses them) and
//! "error" (anything else: the network, a malformed answer).

use anyhow::Result;
use serde::Serialize;

use super::resolve::{self, resolve_with, Lookup, Resolved};
use super::schema::SourceKind;
use super::{one_line, Source};
use crate::oci::{self, OciError};
use crate::progress::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Missing,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "missing",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// What checking one source found; `detail` is one line: what exists (digest, build, size)
/// or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub outcome: Outcome,
    pub detail: String,
}

/// Checks `source`: `get` fetches index files (a caller checking many sources can keep what
/// it fetched: several releases share one index), `oci` are the registry client's options.
pub fn check(
    source: &Source,
    oci: &oci::Options,
    get: &dyn Fn(&str) -> Result<Vec<u8>>,
) -> Finding {
    let found = match &source.kind {
        SourceKind::Oci { image } => check_oci(image, oci),
        SourceKind::Archive { .. } => check_package_archive(source, get),
        _ => check_archive(source, get),
    };
    match found {
        Ok(detail) => Finding {
            outcome: Outcome::Ok,
            detail,
        },
        Err(e) => Finding {
            outcome: classify(&e),
            detail: one_line(&crate::ui::printable(&format!("{e:#}"))),
        },
    }
}

/// `linux/amd64 sha256:0123456789ab (index sha256:...), 3 layers, 40.1 MiB`.
fn check_oci(image: &str, opts: &oci::Options) -> Result<String> {
    let r = oci::Reference::parse(image)?;
    // Said with --verbose: a credential file passed over can explain a "denied".
    let p = oci::probe(&r, opts, &|m| crate::ui::detail(format_args!("{r}: {m}")))?;
    let mut s = String::new();
    if let Some(platform) = &p.platform {
        s.push_str(&format!("{platform} "));
    }
    s.push_str(oci::short(&p.manifest_digest));
    if let Some(index) = &p.index_digest {
        s.push_str(&format!(" (index {})", oci::short(index)));
    }
    s.push_str(&format!(
        ", {} layer{}, {}",
        p.layers,
        if p.layers == 1 { "" } else { "s" },
        human_bytes(p.layer_bytes)
    ));
    Ok(s)
}

/// A package-archive source: its suite's Release is there, signed by the distribution's keyring
/// and listing this architecture (`debarchive::check`); no package index or package is fetched.
fn check_package_archive(source: &Source, get: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<String> {
    let Resolved::Bootstrap { target } = resolve_with(source, get)? else {
        anyhow::bail!("{source} did not resolve to a package archive");
    };
    crate::debarchive::check(&target, &crate::debarchive::Settings::from_user_config()?)
}

/// `rootfs.tar.xz (20251128_05:24), 92.1 MiB`: the file the source resolves to, its version
/// when the index gives one, its size from a HEAD request.
fn check_archive(source: &Source, get: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<String> {
    let Resolved::Archive { url, version, .. } = resolve_with(source, get)? else {
        anyhow::bail!("{source} did not resolve to an archive");
    };
    let head = resolve::head(&url)?;
    let file = url.rsplit('/').next().unwrap_or(&url);
    let mut s = file.to_string();
    if let Some(v) = version {
        s.push_str(&format!(" ({v})"));
    }
    s.push_str(&match head.size {
        Some(n) => format!(", {}", human_bytes(n)),
        None => ", size not told".to_string(),
    });
    Ok(s)
}

fn classify(e: &anyhow::Error) -> Outcome {
    for cause in e.chain() {
        if let Some(l) = cause.downcast_ref::<Lookup>() {
            return match l {
                Lookup::NotListed(_) => Outcome::Missing,
                Lookup::Status { status, .. } => match status.as_u16() {
                    404 | 410 => Outcome::Missing,
                    401 | 403 => Outcome::Denied,
                    _ => Outcome::Error,
                },
            };
        }
        if let Some(o) = cause.downcast_ref::<OciError>() {
            return match o {
                OciError::NotFound { .. } | OciError::NoPlatform { .. } => Outcome::Missing,
                OciError::Denied { .. } | OciError::Unauthorized { .. } => Outcome::Denied,
                _ => Outcome::Error,
            };
        }
    }
    Outcome::Error
}
