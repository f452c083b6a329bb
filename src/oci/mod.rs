//! Pulling images from OCI registries (the Distribution API v2) into a blob cache.
//!
//! [`prepare`] resolves a [`Reference`] to one image manifest (choosing this host's platform
//! from an index) and fetches its config; [`Prepared::download`] then downloads the layers into
//! `CACHE/blobs-v1/sha256/<hex>`, verified by digest and size, a few at a time, and can write
//! them in order into a sink (the layer helper's stdin) as they arrive, the next layer while it
//! downloads. It does not unpack anything: the layers are applied by the sink, or read through
//! [`layer_reader`] / [`layer_stream`], which decompress a layer and check it against its
//! diff_id. [`pull_with`] is both steps without a sink.
//!
//! What is reused without the network: blobs in the cache (layers and configs), and manifests
//! fetched by digest (they are cached under their digest too). A tag always needs the
//! registry, since tags move; pull by `@sha256:` to work offline from the cache.
//!
//! Transport: https, except plain http for registries on this machine (`localhost`,
//! 127.0.0.0/8, `::1`), those in [`Options::plain_http`] (the user configuration's
//! `insecure_registries`) and `http://` mirrors. Mirrors: see [`prepare`]. Proxies come from the usual environment
//! variables (reqwest's defaults). Credentials: see [`auth::default_auth_files`].

mod auth;
mod blob;
mod client;
mod layer;
mod layout;
mod manifest;
mod push;
mod reference;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

#[cfg(test)]
pub use layer::layer_reader;
pub use layer::layer_stream;
pub use layout::{is_layout_entry, read as read_layout};
pub use manifest::{layer_compression as layer_compression_of, LayerCompression as Compression};

pub use manifest::{platform_of_arch, ImageConfig, Platform};

pub use push::{push, PushBlob, PushImage};

/// The media types of manifests, indexes and configs.
pub mod manifest_types {
    pub use super::manifest::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
}

/// Parses an image config (the parts devbox uses).
pub fn parse_config(body: &[u8]) -> Result<ImageConfig, String> {
    manifest::parse_config(body)
}

pub use reference::Reference;

use crate::progress::{human_bytes, Reporter};
use blob::BlobStore;
use client::Client;
use manifest::{Descriptor, Manifest};

/// Largest manifest or index accepted.
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image config accepted.
const MAX_CONFIG: u64 = 16 << 20;

/// What helps against a registry's pull limit (Docker Hub counts pulls per address, and more
/// generously per logged-in account).
/// How many indexes deep a reference may lead before its image manifest.
const MAX_INDEX_DEPTH: usize = 4;

const RATE_LIMIT_FIXES: &str = "log in to the registry (`docker login` or `podman login`; devbox reads their credentials), pull through a mirror (`registry_mirrors` in ~/.config/devbox/config.toml), or wait for the limit to reset (Docker Hub: hours)";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("image {reference} not found ({})\n  hint: {}", if *repository_missing { "repository unknown" } else { "manifest unknown" }, if *repository_missing { "check the registry and repository name" } else { "check the tag; the registry has no manifest of that name" })]
    NotFound {
        reference: String,
        repository_missing: bool,
    },

    #[error("blob {digest} of image {reference} is missing from the registry (blob unknown)\n  hint: the image is incomplete on the registry; try another tag, or ask its maintainers")]
    BlobNotFound { reference: String, digest: String },

    #[error("registry {registry} requires authentication: {detail}\n  hint: log in with `podman login {registry}` or `docker login {registry}` (devbox reads $REGISTRY_AUTH_FILE, ~/.config/containers/auth.json, $XDG_RUNTIME_DIR/containers/auth.json and ~/.docker/config.json)")]
    Unauthorized { registry: String, detail: String },

    #[error("registry {registry} denied access to {reference}: {detail}\n  hint: {}", if *logged_in { "the image may not exist, or your stored credentials do not give access to it: check the name and your login".to_string() } else { format!("the image may not exist, or be private: check the name, or log in (podman login / docker login) if it needs credentials; devbox found none for {registry}{}", if looked.is_empty() { String::new() } else { format!(" (looked in: {looked})") }) })]
    Denied {
        reference: String,
        registry: String,
        detail: String,
        logged_in: bool,
        /// Where credentials were looked for.
        looked: String,
    },

    #[error("image {reference} has no variant for this machine ({wanted}); it is available for: {}\n  hint: use an image built for {wanted}", if available.is_empty() { "no platform at all".to_string() } else { available.join(", ") })]
    NoPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },

    #[error("{what} does not match its digest\n  expected: {expected}\n  actual:   {actual}\n  nothing was kept; try again, and if it persists the registry holds a damaged copy")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("{what} has the wrong size\n  expected: {expected} bytes\n  actual:   {actual} bytes\n  nothing was kept; try again, and if it persists the registry holds a damaged copy")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("cannot reach registry {registry} ({url}): {detail}\n  hint: {}", if hint.is_empty() { "check the registry name, your network and your proxy settings (HTTPS_PROXY, NO_PROXY)" } else { hint.as_str() })]
    Network {
        registry: String,
        url: String,
        detail: String,
        hint: String,
    },

    #[error("download of {what} from {registry} broke off at {got} of {total} bytes: {detail}\n  hint: run the command again: the download resumes where it stopped")]
    Interrupted {
        what: String,
        registry: String,
        got: u64,
        total: u64,
        detail: String,
    },

    #[error("registry {registry} is rate-limiting requests (429 Too Many Requests){}\n  hint: {}", match retry_after { Some(d) => format!("; it asks to wait {}s", d.as_secs()), None => ": its pull limit for your address (or account) is used up".to_string() }, RATE_LIMIT_FIXES)]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },

    #[error("registry {registry} answered {status} for {url}{detail}")]
    Http {
        registry: String,
        url: String,
        status: u16,
        detail: String,
    },

    #[error("{reference}: {what}")]
    Unsupported { reference: String, what: String },

    #[error("{reference}: invalid {what}: {detail}")]
    Invalid {
        reference: String,
        what: String,
        detail: String,
    },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cancelled because another download failed")]
    Cancelled,

    /// `what`: what was refused, with the status and the registry's words.
    #[error("registry {registry} refused {what}\n  hint: {hint}")]
    PushRefused {
        registry: String,
        what: String,
        hint: String,
    },

    /// The unpack helper the layers stream into stopped reading (it says why itself).
    #[error("cannot pass the layers to the unpack helper: {detail}")]
    Feed { detail: String },
}

/// Knobs of a pull; `Options::default()` is what the CLI uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform to choose from an index; None: this host's ([`Platform::host`]).
    pub platform: Option<Platform>,
    /// Registries (`host` or `host:port`) to speak plain http to besides loopback ones: the
    /// user configuration's `insecure_registries`.
    pub plain_http: Vec<String>,
    /// Registry (as the user writes it: `docker.io`, `host:port`) -> mirrors to try first, in
    /// order: the user configuration's `registry_mirrors` (see [`prepare`]).
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Credential files to read; None: [`auth::default_auth_files`].
    pub auth_files: Option<Vec<PathBuf>>,
    /// Where credential helpers (`docker-credential-NAME`) are found; None: `$PATH`.
    pub helper_path: Option<std::ffi::OsString>,
    /// Layers downloaded at the same time (clamped to 1..=4).
    pub parallel: usize,
    /// Retries of a transient failure (connection errors, 5xx, 429) per request.
    pub retries: u32,
    /// The first backoff delay; it doubles with each retry (at most 30 s).
    pub retry_base: Duration,
    /// How long a request or a read may stall before it fails (and is retried).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            platform: None,
            plain_http: Vec::new(),
            mirrors: std::collections::BTreeMap::new(),
            auth_files: None,
            helper_path: None,
            parallel: 3,
            retries: 4,
            retry_base: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A pulled image: everything is in the cache and verified (layers by their compressed
/// digest; their diff_id is checked by [`layer_reader`]).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Digest of the image manifest (the platform's, when the reference named an index).
    pub manifest_digest: String,
    /// Digest of the index the manifest was chosen from, if any.
    pub index_digest: Option<String>,
    /// Digest of the config blob: the image id, the same for any compression of the layers.
    pub config_digest: String,
    pub config: ImageConfig,
    /// In order, lowest first.
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Digest of the blob as stored (compressed).
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// The verified blob in the cache.
    pub path: PathBuf,
    /// sha256 of the uncompressed tar, from the config.
    pub diff_id: String,
}

/// Pulls `r` into `cache_dir` (blobs under `cache_dir/blobs-v1/sha256/`) with default options.
/// (devbox streams layers while they download, through [`prepare`]; the tests pull whole.)
#[cfg(test)]
pub fn pull(r: &Reference, cache_dir: &Path, reporter: &dyn Reporter) -> Result<Pulled, OciError> {
    pull_with(r, cache_dir, reporter, &Options::default())
}

/// Pulls everything into the cache: [`prepare`], then [`Prepared::download`] without a sink.
#[cfg(test)]
pub fn pull_with(
    r: &Reference,
    cache_dir: &Path,
    reporter: &dyn Reporter,
    opts: &Options,
) -> Result<Pulled, OciError> {
    let p = prepare(r, cache_dir, reporter, opts)?;
    p.download(reporter, None)?;
    Ok(p.pulled)
}

/// An image whose manifest and config are in the cache and checked, and whose layers are
/// known but not downloaded yet.
pub struct Prepared {
    client: Client,
    store: BlobStore,
    parallel: usize,
    pub pulled: Pulled,
}

/// Resolves `r` to one image manifest (choosing this host's platform from an index) and
/// fetches its config: everything but the layers.
///
/// When the user configured mirrors for `r`'s registry ([`Options::mirrors`]), each is tried
/// in order before the registry itself, and the first that serves the manifest and config is
/// the one the layers come from too. A mirror that cannot be reached, has no such image (404)
/// or fails on its side (5xx, 429) is passed over with a one-line message; any other failure
/// of a mirror (a refused login, a blob that does not match its digest) is the error.
pub fn prepare(
    r: &Reference,
    cache_dir: &Path,
    reporter: &dyn Reporter,
    opts: &Options,
) -> Result<Prepared, OciError> {
    reporter.step(&format!("Pulling {r}"));
    for m in mirrors_of(r, &opts.mirrors) {
        let Some((source, mirror_opts)) = mirror(r, m, opts) else {
            reporter.step(&format!(
                "warning: mirror {m:?} of {} is not a host or an http(s) URL; skipped",
                r.registry_display()
            ));
            continue;
        };
        reporter.step(&format!("Trying mirror {m} of {}", r.registry_display()));
        match prepare_from(r, &source, cache_dir, reporter, &mirror_opts) {
            Ok(mut p) => {
                p.client.set_retries(opts.retries);
                return Ok(p);
            }
            Err(e) if passes_over(&e) => reporter.step(&format!(
                "Mirror {m}: {}; trying the next source",
                first_line(&e.to_string())
            )),
            Err(e) => return Err(e),
        }
    }
    prepare_from(r, r, cache_dir, reporter, opts)
}

/// The mirrors configured for `r`'s registry (keys compared without case; Docker Hub by any of
/// its names).
fn mirrors_of<'a>(
    r: &Reference,
    mirrors: &'a std::collections::BTreeMap<String, Vec<String>>,
) -> &'a [String] {
    let names = [r.registry.as_str(), r.registry_display()];
    mirrors
        .iter()
        .find(|(k, _)| {
            let k = match Reference::parse(&format!("{k}/x/y")) {
                Ok(p) => p.registry,
                Err(_) => k.to_ascii_lowercase(),
            };
            names.iter().any(|n| n.eq_ignore_ascii_case(&k))
        })
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// Where `r` is on mirror `m` (`host[:port][/prefix]` or an http(s) URL of that shape): the
/// same tag or digest, the repository under the prefix. A trailing `/v2` (the API root, often
/// written in mirror URLs) is not part of the prefix. An `http://` mirror is spoken to over
/// plain http. A mirror gets one retry per request before it is passed over.
fn mirror(r: &Reference, m: &str, opts: &Options) -> Option<(Reference, Options)> {
    let (plain, rest) = match m.split_once("://") {
        Some(("http", rest)) => (true, rest),
        Some(("https", rest)) => (false, rest),
        Some(_) => return None,
        None => (false, m),
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_matches('/')),
        None => (rest, ""),
    };
    let prefix = prefix
        .strip_suffix("/v2")
        .unwrap_or(if prefix == "v2" { "" } else { prefix });
    if host.is_empty() {
        return None;
    }
    let repository = if prefix.is_empty() {
        r.repository.clone()
    } else {
        format!("{prefix}/{}", r.repository)
    };
    // Checked like any reference (host syntax, repository characters).
    let parsed = Reference::parse(&format!("{host}/{repository}")).ok()?;
    let source = Reference {
        registry: host.to_ascii_lowercase(),
        repository: parsed.repository,
        tag: r.tag.clone(),
        digest: r.digest.clone(),
    };
    let mut o = opts.clone();
    if plain {
        o.plain_http.push(source.registry.clone());
    }
    o.retries = o.retries.min(1);
    Some((source, o))
}

/// Whether a mirror's failure passes the pull on to the next source.
fn passes_over(e: &OciError) -> bool {
    match e {
        OciError::Network { .. }
        | OciError::NotFound { .. }
        | OciError::BlobNotFound { .. }
        | OciError::RateLimited { .. }
        | OciError::Interrupted { .. } => true,
        OciError::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

/// [`prepare`] from one source: `source` is `r` itself or where a mirror keeps it.
fn prepare_from(
    r: &Reference,
    source: &Reference,
    cache_dir: &Path,
    reporter: &dyn Reporter,
    opts: &Options,
) -> Result<Prepared, OciError> {
    let store = BlobStore::open(cache_dir)?;
    let (client, notes) = Client::new(source, opts)?;
    for n in notes {
        reporter.step(&format!("warning: {n}"));
    }
    let note = |m: String| reporter.step(&m);

    let Selected {
        image,
        manifest_digest,
        index_digest,
        platform: want,
    } = select(&client, Some(&store), r, opts, &note)?;
    if let Some(idx) = &index_digest {
        reporter.step(&format!(
            "Platform {}: manifest {} (from index {})",
            want.as_ref().map(|w| w.to_string()).unwrap_or_default(),
            short(&manifest_digest),
            short(idx)
        ));
    }
    check_appliable(r, &image)?;

    // The config.
    let config_bytes = match store.read_verified(&image.config.digest, MAX_CONFIG) {
        Some(b) => b,
        None => {
            let b = client.small_blob(&image.config.digest, MAX_CONFIG, &note)?;
            verify_small(r, "image config", &image.config, &b)?;
            store.put(&image.config.digest, &b)?;
            b
        }
    };
    let config = manifest::parse_config(&config_bytes).map_err(|detail| OciError::Invalid {
        reference: r.to_string(),
        what: "image config".into(),
        detail,
    })?;
    if config.diff_ids.len() != image.layers.len() {
        return Err(OciError::Invalid {
            reference: r.to_string(),
            what: "image".into(),
            detail: format!(
                "the manifest lists {} layers but the config {} diff_ids",
                image.layers.len(),
                config.diff_ids.len()
            ),
        });
    }
    for d in &config.diff_ids {
        check_digest(r, "diff_id", d)?;
    }
    if want.is_none() {
        let host = opts.platform.clone().unwrap_or_else(Platform::host);
        if !config.architecture.is_empty()
            && (config.architecture != host.architecture || config.os != host.os)
        {
            reporter.step(&format!(
                "warning: {r} is built for {}/{}, not for this machine ({host}); its programs may not run",
                config.os, config.architecture
            ));
        }
    }

    // The layers, to be downloaded.
    let layers: Vec<Layer> = image
        .layers
        .iter()
        .zip(&config.diff_ids)
        .map(|(l, diff_id)| Layer {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            path: store.path(&l.digest),
            diff_id: diff_id.clone(),
        })
        .collect();
    Ok(Prepared {
        pulled: Pulled {
            manifest_digest,
            index_digest,
            config_digest: image.config.digest.clone(),
            config,
            layers,
        },
        client,
        store,
        parallel: opts.parallel,
    })
}

/// The image manifest a reference leads to, and how it was reached.
struct Selected {
    image: manifest::ImageManifest,
    manifest_digest: String,
    /// The index it was chosen from (the top one), if any.
    index_digest: Option<String>,
    /// The platform asked of the index, if there was one.
    platform: Option<Platform>,
}

/// Fetches the manifest `r` names and, when it is an index, chooses the platform (following
/// nested indexes a few levels deep). With a `store`, manifests by digest come from the cache
/// when there and go into it; without one, every manifest is asked of the registry and
/// nothing is written.
fn select(
    client: &Client,
    store: Option<&BlobStore>,
    r: &Reference,
    opts: &Options,
    note: &dyn Fn(String),
) -> Result<Selected, OciError> {
    let (top, top_digest) = match &r.digest {
        Some(d) => (manifest_by_digest(client, store, d, None, note)?, d.clone()),
        None => {
            let tag = r.tag.as_deref().unwrap_or("latest");
            let (body, ct) = client.manifest(tag, MAX_MANIFEST, note)?;
            let d = blob::sha256_digest(&body);
            let m = manifest::parse_manifest(ct.as_deref(), &body).map_err(|what| {
                OciError::Unsupported {
                    reference: r.to_string(),
                    what,
                }
            })?;
            if let Some(store) = store {
                store.put(&d, &body)?;
            }
            (m, d)
        }
    };
    let mut index = match top {
        Manifest::Image(image) => {
            return Ok(Selected {
                image,
                manifest_digest: top_digest,
                index_digest: None,
                platform: None,
            })
        }
        Manifest::Index(index) => index,
    };
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    // An index may point at another index (a multi-arch image whose entries are themselves
    // indexes); followed a few levels deep, never in a circle.
    let mut depth = 0;
    loop {
        let chosen = manifest::select_platform(&index.manifests, &want).map_err(|available| {
            OciError::NoPlatform {
                reference: r.to_string(),
                wanted: want.to_string(),
                available,
            }
        })?;
        check_digest(r, "manifest digest in the index", &chosen.digest)?;
        match manifest_by_digest(client, store, &chosen.digest, Some(chosen), note)? {
            Manifest::Image(image) => {
                return Ok(Selected {
                    image,
                    manifest_digest: chosen.digest.clone(),
                    index_digest: Some(top_digest),
                    platform: Some(want),
                })
            }
            Manifest::Index(inner) => {
                depth += 1;
                if depth >= MAX_INDEX_DEPTH {
                    return Err(OciError::Unsupported {
                        reference: r.to_string(),
                        what: format!("its indexes nest more than {MAX_INDEX_DEPTH} levels deep"),
                    });
                }
                index = inner;
            }
        }
    }
}

/// Refuses an image manifest devbox could not apply: not a container image's config, a
/// malformed digest, a layer type it cannot unpack.
fn check_appliable(r: &Reference, image: &manifest::ImageManifest) -> Result<(), OciError> {
    let config_media = image.config.media_type.as_str();
    if !config_media.is_empty()
        && config_media != manifest::OCI_CONFIG
        && config_media != manifest::DOCKER_CONFIG
    {
        return Err(OciError::Unsupported {
            reference: r.to_string(),
            what: format!("its config type {config_media:?} is not a container image's (it may be an artifact such as a Helm chart or a signature)"),
        });
    }
    check_digest(r, "config digest", &image.config.digest)?;
    for l in &image.layers {
        check_digest(r, "layer digest", &l.digest)?;
        if manifest::layer_compression(&l.media_type).is_none() {
            return Err(OciError::Unsupported {
                reference: r.to_string(),
                what: format!("layer {} has media type {:?}, which devbox cannot apply (supported: tar, tar+gzip, tar+zstd)", short(&l.digest), l.media_type),
            });
        }
    }
    Ok(())
}

/// What [`probe`] found: the image a pull of the reference would get, without its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub manifest_digest: String,
    pub index_digest: Option<String>,
    /// The platform chosen from the index, if the reference named one.
    pub platform: Option<Platform>,
    pub layers: usize,
    /// The layers' size as stored (compressed).
    pub layer_bytes: u64,
}

/// Whether `r` can be pulled, as far as the registry's manifests tell: the manifest (and any
/// index, with the platform chosen as a pull would) is fetched and checked for what devbox can
/// apply. Neither the config nor a layer is downloaded and nothing is cached; mirrors are not
/// used (the registry itself is what is asked about). `note` hears what a pull would say on
/// the way (credential files passed over, retries).
pub fn probe(r: &Reference, opts: &Options, note: &dyn Fn(String)) -> Result<Probed, OciError> {
    let (client, notes) = Client::new(r, opts)?;
    for n in notes {
        note(format!("warning: {n}"));
    }
    let s = select(&client, None, r, opts, note)?;
    check_appliable(r, &s.image)?;
    Ok(Probed {
        manifest_digest: s.manifest_digest,
        index_digest: s.index_digest,
        platform: s.platform,
        layers: s.image.layers.len(),
        layer_bytes: s.image.layers.iter().map(|l| l.size).sum(),
    })
}

impl Prepared {
    /// Downloads the layers that are not in the cache, a few at a time, each verified by
    /// digest and size. With a `sink`, the layers' bytes are also written to it, in order,
    /// lowest first, as they become available: a layer in the cache from its file, the next
    /// layer being downloaded from its `.partial` file as it grows (it streams while it
    /// downloads), later layers once the ones before them are through. The sink (an unpack
    /// helper) checks each layer against its diff_id; the caller uses what it made only when
    /// this returns Ok, i.e. when every blob matched its digest too.
    pub fn download(
        &self,
        reporter: &dyn Reporter,
        sink: Option<&mut (dyn Write + Send)>,
    ) -> Result<(), OciError> {
        download_layers(
            &self.client,
            &self.store,
            &self.pulled.layers,
            reporter,
            self.parallel,
            sink,
        )
    }
}

fn check_digest(r: &Reference, what: &str, d: &str) -> Result<(), OciError> {
    reference::parse_digest(d)
        .map(|_| ())
        .map_err(|detail| OciError::Invalid {
            reference: r.to_string(),
            what: what.into(),
            detail,
        })
}

fn verify_small(r: &Reference, what: &str, desc: &Descriptor, body: &[u8]) -> Result<(), OciError> {
    let actual = blob::sha256_digest(body);
    if actual != desc.digest {
        return Err(OciError::DigestMismatch {
            what: format!("{what} of {r}"),
            expected: desc.digest.clone(),
            actual,
        });
    }
    if body.len() as u64 != desc.size {
        return Err(OciError::SizeMismatch {
            what: format!("{what} of {r}"),
            expected: desc.size,
            actual: body.len() as u64,
        });
    }
    Ok(())
}

/// A manifest by digest: from the cache when there, else from the registry (checked, and
/// cached when there is a `store`). `desc` (from an index) gives the expected size and media type.
fn manifest_by_digest(
    client: &Client,
    store: Option<&BlobStore>,
    digest: &str,
    desc: Option<&Descriptor>,
    note: &dyn Fn(String),
) -> Result<Manifest, OciError> {
    let r = client.reference.with_digest(digest);
    let (body, ct) = match store.and_then(|s| s.read_verified(digest, MAX_MANIFEST)) {
        Some(b) => (b, desc.map(|d| d.media_type.clone())),
        None => {
            let (b, ct) = client.manifest(digest, MAX_MANIFEST, note)?;
            let actual = blob::sha256_digest(&b);
            if actual != digest {
                return Err(OciError::DigestMismatch {
                    what: format!("manifest of {r}"),
                    expected: digest.to_string(),
                    actual,
                });
            }
            if let Some(d) = desc.filter(|d| d.size != b.len() as u64) {
                return Err(OciError::SizeMismatch {
                    what: format!("manifest of {r}"),
                    expected: d.size,
                    actual: b.len() as u64,
                });
            }
            if let Some(store) = store {
                store.put(digest, &b)?;
            }
            (b, ct)
        }
    };
    manifest::parse_manifest(ct.as_deref().filter(|c| !c.is_empty()), &body).map_err(|what| {
        OciError::Unsupported {
            reference: r.to_string(),
            what,
        }
    })
}

enum Event {
    /// Job `.0` started: its bar appears.
    Started(usize),
    Bytes(usize, u64),
    /// Job `.0` ended (either way): its bar goes.
    Done(usize),
    Note(String),
    /// Bytes passed to the sink.
    Fed(u64),
}

struct Job {
    digest: String,
    size: u64,
    what: String,
    slot: blob::Slot,
}

/// Downloads the layers not yet in the cache, `parallel` at a time, and feeds the sink (see
/// [`Prepared::download`]); reports from this thread (the reporter need not be thread-safe:
/// workers send it events).
fn download_layers(
    client: &Client,
    store: &BlobStore,
    layers: &[Layer],
    reporter: &dyn Reporter,
    parallel: usize,
    sink: Option<&mut (dyn Write + Send)>,
) -> Result<(), OciError> {
    let n = layers.len();
    let mut jobs: Vec<Job> = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        if jobs.iter().any(|j| j.digest == l.digest) || store.cached(&l.digest, l.size).is_some() {
            continue;
        }
        jobs.push(Job {
            digest: l.digest.clone(),
            size: l.size,
            what: format!("layer {} of {n}", i + 1),
            slot: blob::Slot::default(),
        });
    }
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let cached = n - jobs.len();
    if jobs.is_empty() {
        reporter.step(&format!("All {n} layers are in the cache"));
        if sink.is_none() {
            return Ok(());
        }
    } else {
        reporter.step(&format!(
            "Downloading {} layer{} ({}){}",
            jobs.len(),
            if jobs.len() == 1 { "" } else { "s" },
            human_bytes(total),
            if cached > 0 {
                format!(", {cached} in the cache")
            } else {
                String::new()
            }
        ));
    }
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, OciError)>> = Mutex::new(Vec::new());
    let workers = parallel.clamp(1, 4).min(jobs.len());
    let (tx, rx) = mpsc::channel::<Event>();
    let feeding = sink.is_some();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, cancel, errors, jobs) = (&next, &cancel, &errors, &jobs);
            s.spawn(move || {
                let note = |m: String| {
                    let _ = tx.send(Event::Note(m));
                };
                while !cancel.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else {
                        break;
                    };
                    let _ = tx.send(Event::Started(i));
                    let progress = |b: u64| {
                        let _ = tx.send(Event::Bytes(i, b));
                    };
                    let res = blob::download(
                        client,
                        store,
                        &job.digest,
                        job.size,
                        &job.what,
                        &note,
                        &progress,
                        cancel,
                        Some(&job.slot),
                    );
                    let _ = tx.send(Event::Done(i));
                    match res {
                        Ok(path) => job.slot.finish(Ok(path)),
                        Err(e) => {
                            job.slot.finish(Err(first_line(&e.to_string()).to_string()));
                            cancel.store(true, Ordering::SeqCst);
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((i, e));
                        }
                    }
                }
            });
        }
        if let Some(sink) = sink {
            let tx = tx.clone();
            let (cancel, errors, jobs) = (&cancel, &errors, &jobs);
            s.spawn(move || {
                if let Err(e) = feed(store, layers, jobs, sink, cancel, &tx) {
                    cancel.store(true, Ordering::SeqCst);
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((usize::MAX, e));
                }
            });
        }
        drop(tx);
        let mut bars: Vec<Option<Box<dyn crate::progress::Transfer>>> =
            (0..jobs.len()).map(|_| None).collect();
        let applied = feeding.then(|| {
            let all: u64 = layers.iter().map(|l| l.size).sum();
            reporter.transfer("Unpacking layers", Some(all))
        });
        for ev in rx {
            match ev {
                Event::Started(i) => {
                    let j = &jobs[i];
                    bars[i] = Some(reporter.transfer(&j.what, Some(j.size)));
                }
                Event::Bytes(i, b) => {
                    if let Some(bar) = &bars[i] {
                        bar.inc(b);
                    }
                }
                Event::Done(i) => {
                    if let Some(bar) = bars[i].take() {
                        bar.finish();
                    }
                }
                Event::Fed(b) => {
                    if let Some(bar) = &applied {
                        bar.inc(b);
                    }
                }
                Event::Note(m) => reporter.step(&m),
            }
        }
        if let Some(bar) = applied {
            bar.finish();
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first real failure, not a cancellation it caused; a download's own error before
    // the sink's (which may only be the download failing under it).
    errors.sort_by_key(|(i, e)| {
        (
            matches!(e, OciError::Cancelled),
            matches!(e, OciError::Feed { .. }),
            *i,
        )
    });
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Writes the layers' bytes to `sink` in order: from the cache, or following a download.
fn feed(
    store: &BlobStore,
    layers: &[Layer],
    jobs: &[Job],
    sink: &mut (dyn Write + Send),
    cancel: &AtomicBool,
    tx: &mpsc::Sender<Event>,
) -> Result<(), OciError> {
    let mut buf = vec![0u8; 256 * 1024];
    for l in layers {
        let mut reader: Box<dyn Read + '_> = match jobs.iter().find(|j| j.digest == l.digest) {
            Some(job) => Box::new(job.slot.reader(l.size, cancel)),
            None => Box::new(
                std::fs::File::open(store.path(&l.digest)).map_err(|source| OciError::Io {
                    action: "cannot open layer",
                    path: store.path(&l.digest),
                    source,
                })?,
            ),
        };
        let mut left = l.size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(OciError::Io {
                        action: "the layer ended early in",
                        path: store.path(&l.digest),
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The download failed (its own error is reported) or was cancelled.
                Err(_) => return Err(OciError::Cancelled),
            };
            sink.write_all(&buf[..n]).map_err(|e| OciError::Feed {
                detail: e.to_string(),
            })?;
            left -= n as u64;
            let _ = tx.send(Event::Fed(n as u64));
        }
    }
    sink.flush().map_err(|e| OciError::Feed {
        detail: e.to_string(),
    })
}

/// The first line of a message (errors carry hints on later lines).
pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `sha256:0123456789ab`, for messages.
pub(crate) fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

#[cfg(test)]
mod mirror_tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn mirrors_are_found_by_any_name_of_the_registry() {
        let m: std::collections::BTreeMap<String, Vec<String>> = [
            ("docker.io".to_string(), vec!["m1".to_string()]),
            ("Registry.LAN:5000".to_string(), vec!["m2".to_string()]),
        ]
        .into();
        assert_eq!(mirrors_of(&r("debian:12"), &m), ["m1"]);
        assert_eq!(mirrors_of(&r("index.docker.io/library/debian"), &m), ["m1"]);
        assert_eq!(mirrors_of(&r("registry.lan:5000/a/b"), &m), ["m2"]);
        assert!(mirrors_of(&r("registry.lan/a/b"), &m).is_empty());
        assert!(mirrors_of(&r("quay.io/a/b"), &m).is_empty());
    }

    #[test]
    fn a_mirror_keeps_the_tag_and_prefixes_the_repository() {
        let o = Options::default();
        let (s, so) = mirror(&r("debian:12"), "mirror.lan:5000", &o).unwrap();
        assert_eq!(s.to_string(), "mirror.lan:5000/library/debian:12");
        assert!(so.plain_http.is_empty());
        assert_eq!(so.retries, 1);
        let pinned = format!("quay.io/a/b@sha256:{}", "0".repeat(64));
        let (s, so) = mirror(&r(&pinned), "http://m.lan/cache/", &o).unwrap();
        assert_eq!(s.registry, "m.lan");
        assert_eq!(s.digest, r(&pinned).digest);
        assert_eq!(s.repository, "cache/a/b");
        assert_eq!(so.plain_http, ["m.lan"]);
        let (s, _) = mirror(&r("quay.io/a/b:1"), "https://m.lan/v2", &o).unwrap();
        assert_eq!(s.to_string(), "m.lan/a/b:1");
        let (s, _) = mirror(&r("quay.io/a/b:1"), "https://m.lan/pre/v2/", &o).unwrap();
        assert_eq!(s.to_string(), "m.lan/pre/a/b:1");
        assert!(mirror(&r("quay.io/a/b"), "ftp://m.lan", &o).is_none());
        assert!(mirror(&r("quay.io/a/b"), "https://", &o).is_none());
    }
}
