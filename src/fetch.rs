//! Downloads over http(s): streamed to a temp file in the download cache (and on to an unpack
//! helper, in the same pass), hashed on the fly, resumed with Range requests when the
//! connection breaks off, verified, then kept under their sha256. A failed or mismatched
//! download keeps nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::progress::Reporter;

/// A download that passed its checks, still in its temp file beside the cache: `keep` moves it
/// into the cache, dropping it removes it.
pub struct Fetched {
    tmp: tempfile::NamedTempFile,
    /// Held until the file is kept or dropped: `image prune` leaves locked files alone.
    _busy: nix::fcntl::Flock<std::fs::File>,
    dir: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl Fetched {
    /// Moves the archive into the cache as `<sha256>.archive`.
    pub fn keep(self) -> Result<PathBuf> {
        let path = self.dir.join(format!("{}.archive", self.sha256));
        self.tmp
            .persist(&path)
            .with_context(|| format!("cannot store the download as {}", path.display()))?;
        Ok(path)
    }

    /// Moves the download to `path` (in the same directory as the cache it was made in).
    pub fn keep_as(self, path: &Path) -> Result<PathBuf> {
        self.tmp
            .persist(path)
            .with_context(|| format!("cannot store the download as {}", path.display()))?;
        Ok(path.to_path_buf())
    }
}

/// Why a streamed download stopped.
#[derive(Debug)]
pub enum StreamError {
    /// The download itself: the server, the network, the size or the checksum.
    Download(anyhow::Error),
    /// Writing to the sink failed (for an unpack helper: it stopped, and said why).
    Sink(std::io::Error),
}

impl From<anyhow::Error> for StreamError {
    fn from(e: anyhow::Error) -> StreamError {
        StreamError::Download(e)
    }
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// How many times a download that broke off is resumed (each needs progress since the last).
const RESUMES: u32 = 5;

/// Downloads `url` in one pass: every byte read from the socket is hashed, written to a temp
/// file in `dir` (the download cache) and, with a `sink`, written there too (an unpack
/// helper's stdin), so the archive is unpacked while it downloads. When the connection breaks
/// off, the download resumes with a Range request (guarded by If-Range when the server gave
/// an ETag or Last-Modified, and allowed without one only when the checksum is known) and the
/// resumed bytes continue the same stream. At the end the size (when the server said it) and
/// the sha256 (when `expected`) are checked; a failed download leaves no file.
pub fn download(
    url: &str,
    dir: &Path,
    expected: Option<&str>,
    sink: Option<&mut dyn Write>,
    r: &dyn Reporter,
) -> Result<Fetched, StreamError> {
    download_with(&client()?, url, dir, expected, sink, r)
}

/// The HTTP client downloads use. Many downloads from one server (a package archive's
/// `.deb` files) share one, so they reuse its connections: one name lookup and one
/// handshake per connection instead of per file (a resolver that drops a query now and then
/// stalls each lookup it drops for seconds).
pub fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .user_agent(concat!("devbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        // A stalled read fails after this long (and is resumed).
        .timeout(std::time::Duration::from_secs(120))
        .build()?)
}

/// [`download`] with a client of the caller's (see [`client`]).
pub fn download_with(
    client: &reqwest::blocking::Client,
    url: &str,
    dir: &Path,
    expected: Option<&str>,
    mut sink: Option<&mut dyn Write>,
    r: &dyn Reporter,
) -> Result<Fetched, StreamError> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut resp = client.get(url).send().with_context(|| {
        format!(
            "cannot download {url}\n  hint: check the address and your network or proxy settings"
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(anyhow::anyhow!(
            "cannot download {url}: the server answered {status}\n  hint: check the address"
        )
        .into());
    }
    let total = resp.content_length();
    let validator = validator(resp.headers());
    r.step(&match total {
        Some(t) => format!("Downloading {} from {url}", crate::progress::human_bytes(t)),
        None => format!("Downloading {url}"),
    });
    let mut tmp = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    let busy = tmp
        .as_file()
        .try_clone()
        .map_err(anyhow::Error::from)
        .and_then(|f| {
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| anyhow::Error::from(e))
        })
        .with_context(|| format!("cannot lock a temp file in {}", dir.display()))?;
    let bar = r.transfer("Downloading", total);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let mut resumes = 0u32;
    let mut resumed_at = None;
    loop {
        let broke = match resp.read(&mut buf) {
            Ok(0) if total.is_none() || total == Some(size) => break,
            Ok(0) => "the connection closed early".to_string(),
            Ok(n) => {
                hasher.update(&buf[..n]);
                tmp.write_all(&buf[..n])
                    .with_context(|| format!("cannot write to {}", dir.display()))?;
                if let Some(s) = sink.as_mut() {
                    s.write_all(&buf[..n]).map_err(StreamError::Sink)?;
                }
                size += n as u64;
                bar.inc(n as u64);
                if total.is_some_and(|t| size > t) {
                    return Err(anyhow::anyhow!(
                        "download of {url} is longer than the {} bytes its server announced\n  hint: try again",
                        total.unwrap_or(0)
                    )
                    .into());
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => e.to_string(),
        };
        // Broken off: resume where it stopped, if that can be done safely.
        let of = match total {
            Some(t) => format!("{size} of {t} bytes"),
            None => format!("{size} bytes"),
        };
        let what = if total.is_some() && broke.contains("closed early") {
            "is truncated"
        } else {
            "broke off"
        };
        if validator.is_none() && expected.is_none() {
            return Err(anyhow::anyhow!("download of {url} {what} after {of}: {broke}\n  hint: try again (without an ETag or Last-Modified from the server, or a --sha256, devbox does not resume it)").into());
        }
        if resumes >= RESUMES && resumed_at == Some(size) {
            return Err(anyhow::anyhow!(
                "download of {url} {what} after {of}: {broke}\n  hint: try again"
            )
            .into());
        }
        if resumed_at != Some(size) {
            resumes = 0;
        }
        resumes += 1;
        resumed_at = Some(size);
        if resumes > 1 {
            // No progress since the last attempt: back off (1, 2, 4, 8 s).
            std::thread::sleep(std::time::Duration::from_secs(1 << (resumes - 2).min(3)));
        }
        r.step(&format!(
            "Download of {url} {what} after {of} ({broke}); resuming"
        ));
        resp = resume(client, url, size, total, validator.as_deref())
            .map_err(|e| anyhow::anyhow!("download of {url} {what} after {of}: {broke}; resuming it failed: {e}\n  hint: try again"))?;
    }
    bar.finish();
    let sha256 = hex(&hasher.finalize());
    check_sha256(url, expected, &sha256)?;
    Ok(Fetched {
        tmp,
        _busy: busy,
        dir: dir.to_path_buf(),
        sha256,
        size,
    })
}

/// What proves a resumed answer is the same file: a strong ETag, else Last-Modified.
fn validator(h: &reqwest::header::HeaderMap) -> Option<String> {
    let get = |k| {
        h.get(k)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    match get(reqwest::header::ETAG) {
        Some(e) if !e.starts_with("W/") => Some(e.to_string()),
        _ => get(reqwest::header::LAST_MODIFIED).map(String::from),
    }
}

/// The rest of `url` from byte `from`: only a 206 answer starting there will do.
fn resume(
    client: &reqwest::blocking::Client,
    url: &str,
    from: u64,
    total: Option<u64>,
    validator: Option<&str>,
) -> Result<reqwest::blocking::Response> {
    let mut req = client
        .get(url)
        .header(reqwest::header::RANGE, format!("bytes={from}-"));
    if let Some(v) = validator {
        req = req.header(reqwest::header::IF_RANGE, v);
    }
    let resp = req.send()?;
    if resp.status().as_u16() != 206 {
        bail!(
            "the server answered {} instead of the rest of the file (206)",
            resp.status()
        );
    }
    let range = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match parse_content_range(range) {
        Some((start, t)) if start == from && (t.is_none() || total.is_none() || t == total) => {
            Ok(resp)
        }
        _ => bail!("the server answered the wrong range ({range:?})"),
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (START, TOTAL).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

/// Hashes a local file.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// Compares a computed digest with the one the user gave (any case, optional `sha256:` prefix).
pub fn check_sha256(what: &str, expected: Option<&str>, actual: &str) -> Result<()> {
    if let Some(exp) = expected {
        let exp = exp
            .trim()
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        if exp != actual {
            bail!("sha256 mismatch for {what}\n  expected: {exp}\n  actual:   {actual}\n  nothing was kept; check the checksum you were given and the source");
        }
    }
    Ok(())
}

/// Checks that a --sha256 value looks like one, before any work is done.
pub fn validate_sha256_arg(s: &str) -> Result<()> {
    let h = s.trim().trim_start_matches("sha256:");
    if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--sha256 takes 64 hexadecimal digits, got {s:?}");
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
