//! Downloads over http(s): streamed to a temp file beside the destination, hashed on the fly,
//! verified, then renamed into place. A failed or mismatched download keeps nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::progress::Reporter;

pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Downloads `url` into `dir` as `<sha256>.archive`.
pub fn download(
    url: &str,
    dir: &Path,
    expected: Option<&str>,
    r: &dyn Reporter,
) -> Result<Fetched> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("devbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(None)
        .build()?;
    let mut resp = client.get(url).send().with_context(|| {
        format!(
            "cannot download {url}\n  hint: check the address and your network or proxy settings"
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        bail!("cannot download {url}: the server answered {status}\n  hint: check the address");
    }
    let total = resp.content_length();
    r.step(&match total {
        Some(t) => format!("Downloading {} from {url}", crate::progress::human_bytes(t)),
        None => format!("Downloading {url}"),
    });
    let mut tmp = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    let bar = r.transfer("Downloading", total);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.finish();
                bail!("download of {url} broke off after {size} bytes: {e}\n  hint: try again");
            }
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])?;
        size += n as u64;
        bar.inc(n as u64);
    }
    bar.finish();
    if let Some(t) = total {
        if size != t {
            bail!("download of {url} is truncated: got {size} of {t} bytes\n  hint: try again");
        }
    }
    let sha256 = hex(&hasher.finalize());
    check_sha256(url, expected, &sha256)?;
    let path = dir.join(format!("{sha256}.archive"));
    tmp.persist(&path)
        .with_context(|| format!("cannot store the download as {}", path.display()))?;
    Ok(Fetched { path, sha256, size })
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
