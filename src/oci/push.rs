//! Pushing an image to a registry (Distribution API v2, "push"): each blob is looked for first
//! (HEAD), mounted from another repository of the same registry when the image came from
//! there, else uploaded: small blobs in one PUT, others in chunks (PATCH with Content-Range),
//! each chunk acknowledged by the registry. An upload's session (its `Location` and the bytes
//! the registry has) is kept in `CACHE/uploads-v1/`, so a push that broke off continues where
//! the registry's copy ends. The manifest goes last.
//!
//! The same client as pulls: credentials, token scopes (the registry's challenge names the push
//! scope), plain http only to loopback and `insecure_registries`, retries of transient
//! failures.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};

use super::client::{registry_errors, Client, Failure};
use super::{OciError, Options, Reference};
use crate::progress::Reporter;

/// Blobs up to this size go in one request.
const MONOLITHIC_MAX: u64 = 1 << 20;
/// The default chunk of a chunked upload; `DEVBOX_PUSH_CHUNK_SIZE` (bytes) sets another.
const DEFAULT_CHUNK: u64 = 64 << 20;

/// The body of a request, made anew for each attempt: bytes, or a piece of a file streamed
/// from the disk.
enum Payload {
    Bytes(Vec<u8>),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        /// Moved as the bytes are read for sending.
        bar: std::sync::Arc<dyn crate::progress::Transfer>,
    },
}

/// A reader that moves a progress bar by what is read through it.
struct Counting<R> {
    inner: R,
    bar: std::sync::Arc<dyn crate::progress::Transfer>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    /// None when the file cannot be read: the request then goes without a body, and the
    /// registry's refusal (a short chunk) is the error.
    fn body(&self) -> Option<reqwest::blocking::Body> {
        match self {
            Payload::Bytes(b) => Some(b.clone().into()),
            Payload::File {
                path,
                offset,
                len,
                bar,
            } => {
                let mut f = std::fs::File::open(path).ok()?;
                f.seek(SeekFrom::Start(*offset)).ok()?;
                let reader = Counting {
                    inner: f.take(*len),
                    bar: bar.clone(),
                };
                Some(reqwest::blocking::Body::sized(reader, *len))
            }
        }
    }
}

/// A blob to push, and where it is.
#[derive(Debug, Clone)]
pub struct PushBlob {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// An image to push: its blobs (layers and config) and its manifest.
#[derive(Debug, Clone)]
pub struct PushImage {
    pub blobs: Vec<PushBlob>,
    pub manifest: Vec<u8>,
    pub manifest_type: String,
    pub manifest_digest: String,
    /// A repository of the same registry that has the image's blobs (where it was pulled
    /// from): they are mounted from there instead of uploaded.
    pub mount_from: Option<Reference>,
}

/// What became of each blob, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    pub present: usize,
    pub mounted: usize,
    pub uploaded: usize,
    pub resumed: usize,
    pub bytes: u64,
}

/// Pushes `image` to `target` (its tag, or its digest); returns the manifest's digest.
pub fn push(
    target: &Reference,
    image: &PushImage,
    cache_dir: &Path,
    opts: &Options,
    r: &dyn Reporter,
) -> Result<PushStats, OciError> {
    let (client, notes) = Client::new(target, opts)?;
    for n in notes {
        r.step(&format!("warning: {n}"));
    }
    let sessions = cache_dir.join("uploads-v1");
    std::fs::create_dir_all(&sessions).map_err(|e| OciError::Io {
        action: "cannot create",
        path: sessions.clone(),
        source: e,
    })?;
    let chunk = std::env::var("DEVBOX_PUSH_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&c| c > 0)
        .unwrap_or(DEFAULT_CHUNK);
    let mut stats = PushStats::default();
    let mount_from = image
        .mount_from
        .as_ref()
        .filter(|m| m.registry == target.registry && m.repository != target.repository);
    let p = Pusher {
        client: &client,
        target,
        r,
        sessions: &sessions,
        chunk,
    };
    for b in &image.blobs {
        p.blob(b, mount_from, &mut stats)?;
    }
    p.manifest(image)?;
    Ok(stats)
}

struct Pusher<'a> {
    client: &'a Client,
    target: &'a Reference,
    r: &'a dyn Reporter,
    sessions: &'a Path,
    chunk: u64,
}

/// An upload session, as kept between runs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    location: String,
    digest: String,
}

impl Pusher<'_> {
    fn note(&self) -> impl Fn(String) + '_ {
        move |m: String| self.r.step(&m)
    }

    fn blob(
        &self,
        b: &PushBlob,
        mount_from: Option<&Reference>,
        stats: &mut PushStats,
    ) -> Result<(), OciError> {
        let short = super::short(&b.digest);
        if self.exists(b)? {
            self.r
                .step(&format!("Blob {short}: already in the registry"));
            stats.present += 1;
            return Ok(());
        }
        if let Some(from) = mount_from {
            let mut url = self.url("blobs/uploads/")?;
            url.query_pairs_mut()
                .append_pair("mount", &b.digest)
                .append_pair("from", &from.repository);
            let resp = self.request(Method::POST, &url, HeaderMap::new(), None, "mount")?;
            if resp.status() == StatusCode::CREATED {
                self.r
                    .step(&format!("Blob {short}: mounted from {}", from.repository));
                stats.mounted += 1;
                return Ok(());
            }
            // 202: the registry opened an upload instead; it is not used (a new one is
            // opened below, which a registry without mounts handles the same way).
            if let Ok(loc) = self.location(&resp) {
                let _ = self.request(Method::DELETE, &loc, HeaderMap::new(), None, "cancel");
            }
        }
        let session_file = self.session_file(&b.digest);
        let mut start = None;
        if let Some(s) = std::fs::read(&session_file)
            .ok()
            .and_then(|t| serde_json::from_slice::<Session>(&t).ok())
            .filter(|s| s.digest == b.digest)
        {
            if let Some((loc, offset)) = self.status(&s.location)? {
                if offset > 0 && offset <= b.size {
                    self.r.step(&format!(
                        "Blob {short}: resuming the upload at {} of {}",
                        crate::progress::human_bytes(offset),
                        crate::progress::human_bytes(b.size)
                    ));
                    stats.resumed += 1;
                    start = Some((loc, offset));
                }
            }
        }
        let (mut loc, mut offset) = match start {
            Some(s) => s,
            None => (self.open_upload()?, 0),
        };
        let mut file = std::fs::File::open(&b.path).map_err(|e| OciError::Io {
            action: "cannot open",
            path: b.path.clone(),
            source: e,
        })?;
        let bar: std::sync::Arc<dyn crate::progress::Transfer> =
            std::sync::Arc::from(self.r.transfer(&format!("Pushing {short}"), Some(b.size)));
        bar.inc(offset);
        if b.size <= MONOLITHIC_MAX && offset == 0 {
            let mut data = Vec::with_capacity(b.size as usize);
            file.read_to_end(&mut data).map_err(|e| OciError::Io {
                action: "cannot read",
                path: b.path.clone(),
                source: e,
            })?;
            self.finish(&loc, &b.digest, Some(Payload::Bytes(data)))?;
            bar.inc(b.size);
        } else {
            let mut recovered = 0;
            while offset < b.size {
                let len = self.chunk.min(b.size - offset);
                let data = Payload::File {
                    path: b.path.clone(),
                    offset,
                    len,
                    bar: bar.clone(),
                };
                match self.patch(&loc, offset, data) {
                    Ok(next) => {
                        loc = next;
                        offset += len;
                        self.save_session(&session_file, &loc, &b.digest);
                    }
                    Err(e) => {
                        // Where does the registry's copy end? Continue from there (a few
                        // times: a registry that keeps losing chunks is an error).
                        recovered += 1;
                        match self.status(loc.as_str())? {
                            Some((l, o)) if o <= b.size && o != offset && recovered <= 3 => {
                                self.r.step(&format!(
                                    "Blob {short}: {}; continuing at {}",
                                    super::first_line(&e.to_string()),
                                    crate::progress::human_bytes(o)
                                ));
                                loc = l;
                                offset = o;
                            }
                            _ => return Err(e),
                        }
                    }
                }
            }
            self.finish(&loc, &b.digest, None)?;
        }
        bar.finish();
        let _ = std::fs::remove_file(&session_file);
        stats.uploaded += 1;
        stats.bytes += b.size;
        Ok(())
    }

    fn url(&self, tail: &str) -> Result<Url, OciError> {
        self.client.absolute(&self.client.repo_url(tail))
    }

    fn exists(&self, b: &PushBlob) -> Result<bool, OciError> {
        let url = self.url(&format!("blobs/{}", b.digest))?;
        let resp = self.request(Method::HEAD, &url, HeaderMap::new(), None, "look for")?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(resp, &format!("the check for blob {}", b.digest))),
        }
    }

    fn open_upload(&self) -> Result<Url, OciError> {
        let url = self.url("blobs/uploads/")?;
        let resp = self.request(Method::POST, &url, HeaderMap::new(), None, "start")?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.refused(resp, "an upload"));
        }
        self.location(&resp)
    }

    /// Where an upload stands: its current location and the bytes the registry has; None
    /// when the registry no longer knows it.
    fn status(&self, location: &str) -> Result<Option<(Url, u64)>, OciError> {
        let url = self.client.absolute(location)?;
        let resp = match self.request(Method::GET, &url, HeaderMap::new(), None, "ask about") {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        if resp.status() != StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let loc = self.location(&resp).unwrap_or(url);
        // `Range: 0-N` names the last byte it has; "0-0" is also what an empty upload says,
        // so it counts as nothing.
        let end = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once('-'))
            .and_then(|(_, e)| e.trim().parse::<u64>().ok());
        Ok(Some((loc, end.filter(|&e| e > 0).map_or(0, |e| e + 1))))
    }

    fn patch(&self, loc: &Url, offset: u64, data: Payload) -> Result<Url, OciError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static header"),
        );
        headers.insert(
            CONTENT_RANGE,
            format!("{}-{}", offset, offset + data.len() - 1)
                .parse()
                .expect("ascii header"),
        );
        let resp = self.request(Method::PATCH, loc, headers, Some(data), "take a chunk of")?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.refused(resp, "a chunk of the upload"));
        }
        self.location(&resp)
    }

    fn finish(&self, loc: &Url, digest: &str, data: Option<Payload>) -> Result<(), OciError> {
        let mut url = loc.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/octet-stream".parse().expect("static header"),
        );
        let resp = self.request(Method::PUT, &url, headers, data, "complete")?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.refused(resp, &format!("blob {digest}")));
        }
        Ok(())
    }

    fn manifest(&self, image: &PushImage) -> Result<(), OciError> {
        let reference = match (&self.target.tag, &self.target.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => {
                if d != &image.manifest_digest {
                    return Err(OciError::Invalid {
                        reference: self.target.to_string(),
                        what: "reference".into(),
                        detail: format!(
                            "it names digest {d}, and the image's manifest is {}",
                            image.manifest_digest
                        ),
                    });
                }
                d.clone()
            }
            (None, None) => "latest".to_string(),
        };
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            image.manifest_type.parse().map_err(|_| OciError::Invalid {
                reference: self.target.to_string(),
                what: "manifest media type".into(),
                detail: image.manifest_type.clone(),
            })?,
        );
        let resp = self.request(
            Method::PUT,
            &url,
            headers,
            Some(Payload::Bytes(image.manifest.clone())),
            "store",
        )?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.refused(resp, "the manifest"));
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != image.manifest_digest {
                return Err(OciError::DigestMismatch {
                    what: format!("the manifest stored at {}", self.target),
                    expected: image.manifest_digest.clone(),
                    actual: d.to_string(),
                });
            }
        }
        Ok(())
    }

    /// One request, retried on transient failures (connection errors, 5xx, 429).
    fn request(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Payload>,
        what: &str,
    ) -> Result<reqwest::blocking::Response, OciError> {
        let label = format!("{what} {}", super::client::redact(url.as_str()));
        self.client.retrying(&label, &self.note(), || {
            let resp = self.client.send(method.clone(), url, &headers, &|| {
                body.as_ref().and_then(Payload::body)
            })?;
            if super::client::is_transient(resp.status()) {
                return Err(Failure::Retry {
                    err: self.refused(resp, what),
                    after: None,
                });
            }
            Ok(resp)
        })
    }

    fn location(&self, resp: &reqwest::blocking::Response) -> Result<Url, OciError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Invalid {
                reference: self.target.to_string(),
                what: "upload answer".into(),
                detail: format!("{} without a Location header", resp.status()),
            })?;
        self.client.absolute(loc)
    }

    fn session_file(&self, digest: &str) -> PathBuf {
        let key = super::blob::sha256_digest(
            format!(
                "{}/{}@{digest}",
                self.target.registry, self.target.repository
            )
            .as_bytes(),
        );
        self.sessions.join(&key.trim_start_matches("sha256:")[..32])
    }

    fn save_session(&self, file: &Path, loc: &Url, digest: &str) {
        let s = Session {
            location: loc.to_string(),
            digest: digest.to_string(),
        };
        if let Ok(text) = serde_json::to_vec(&s) {
            let _ = crate::paths::write_atomic(file, &text);
        }
    }

    /// The error for a refused request: what was refused, the registry's words, and a fix.
    fn refused(&self, resp: reqwest::blocking::Response, what: &str) -> OciError {
        let status = resp.status();
        let mut body = Vec::new();
        let _ = resp.take(64 * 1024).read_to_end(&mut body);
        let (codes, message) = registry_errors(&body);
        let registry = self.target.registry_display().to_string();
        let lower = message.to_ascii_lowercase();
        let hint = if status == StatusCode::UNAUTHORIZED {
            format!("log in with `podman login {registry}` or `docker login {registry}`: devbox pushes with the credentials it pulls with")
        } else if status == StatusCode::PAYLOAD_TOO_LARGE
            || status.as_u16() == 507
            || lower.contains("quota")
            || codes.iter().any(|c| c == "QUOTA_EXCEEDED")
        {
            "the registry's storage or your quota there is full: delete old images or tags from it, or ask its administrator for more room".to_string()
        } else if status == StatusCode::FORBIDDEN || codes.iter().any(|c| c == "DENIED") {
            format!(
                "your {} may not push to {}: check the repository name and your rights there",
                if self.client.has_credentials() {
                    "account"
                } else {
                    "anonymous access (no credentials found)"
                },
                self.target.repository
            )
        } else {
            "run the push again (uploads that broke off continue where they stopped)".into()
        };
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        OciError::PushRefused {
            registry,
            what: format!("{what} of {} ({}{detail})", self.target, status.as_u16()),
            hint,
        }
    }
}
