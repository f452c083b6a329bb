//! The image store: archives unpacked once, by sha256, into `images-v1/<sha256>/rootfs`.
//!
//! An entry is unpacked into `images-v1/.tmp-PID-N` by the `__unpack` helper (inside the user
//! namespace, so ownership lands mapped) and renamed into place only when complete, under a lock.
//! Temp dirs left by interrupted commands (imports, creates, removals, image layouts, doctor) are
//! swept by the next command that takes the store lock.
//!
//! Here: what IMAGE names ([`ImageRef::classify`]) and the import that dispatches on it. The
//! rest, by what it does: `import` (one path per kind of image, the unpack helpers fed while
//! bytes arrive, staging, recorded resolutions), `layout` (store images as OCI images: commit,
//! save, tags), `manage` (list, rm, prune), `leftovers` (locks, claimed work dirs, sweeping
//! what interrupted commands left) and `helpers` (the `__unpack`, `__unpack-layers`,
//! `__rmtree` and `__clone` modes).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::fetch;
use crate::paths::{private_dir, Dirs};
use crate::progress::Reporter;
use crate::state::ImageRecord;

mod helpers;
mod import;
pub mod layout;
mod leftovers;
mod manage;

pub use helpers::*;
pub use import::*;
pub use leftovers::*;
pub use manage::*;

/// What an IMAGE argument names. The grammar, tried in this order: an `http://`/`https://`
/// URL; a local path (absolute, `./`, `../`, `~/`, or an existing file); an OCI reference
/// (`HOST/PATH[:TAG|@sha256:...]`, or a Docker Hub name with a `/`); else a catalog name
/// `DISTRO[:RELEASE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Url(String),
    File(PathBuf),
    Oci(String),
    Catalog(String),
}

impl ImageRef {
    pub fn classify(s: &str) -> ImageRef {
        if fetch::is_url(s) {
            return ImageRef::Url(s.to_string());
        }
        let looks_like_path = s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s.starts_with("~/")
            || Path::new(s).exists();
        if looks_like_path {
            let expanded = match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => PathBuf::from(s),
            };
            return ImageRef::File(expanded);
        }
        if crate::oci::Reference::looks_like_oci(s) {
            return ImageRef::Oci(s.to_string());
        }
        ImageRef::Catalog(s.to_string())
    }
}

/// Makes sure the image `source` is in the store and returns its record.
pub fn import(
    dirs: &Dirs,
    source: &str,
    sha256: Option<&str>,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    import_with(dirs, source, sha256, &[], r)
}

/// [`import`] for a project's box: a root built from a package archive installs `packages`
/// with the rest of it (one dpkg run instead of a second apt pass). Other sources ignore them.
pub fn import_with(
    dirs: &Dirs,
    source: &str,
    sha256: Option<&str>,
    packages: &[String],
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    dirs.ensure_store()?;
    if let Some(h) = sha256 {
        fetch::validate_sha256_arg(h)?;
        let id = h.trim().trim_start_matches("sha256:").to_ascii_lowercase();
        if let Some(rec) = load(dirs, &id) {
            r.step(&format!("Using image {} from the store", short(&id)));
            return Ok(rec);
        }
    }
    // An image made by `devbox commit --tag NAME` goes by that name; any image of the store
    // by its id (12 hex digits or more, as `image list` shows it).
    if let Some(rec) = crate::store::layout::tagged(dirs, source).or_else(|| by_id(dirs, source)) {
        r.step(&format!(
            "Using image {} ({source}) from the store",
            short(&rec.id)
        ));
        return Ok(rec);
    }
    match ImageRef::classify(source) {
        ImageRef::Url(url) => import_url(dirs, &url, sha256, r),
        ImageRef::File(path) => import_file(dirs, &path, source, sha256, r),
        ImageRef::Oci(reference) => {
            if sha256.is_some() {
                bail!("--sha256 is for archives; an OCI image is verified by its digest: name it as {reference}@sha256:HEX");
            }
            import_oci(dirs, &reference, r)
        }
        ImageRef::Catalog(name) => import_catalog(dirs, &name, sha256, packages, r),
    }
}

/// The store image whose id starts with `s` (at least 12 hex digits, `sha256:` allowed).
fn by_id(dirs: &Dirs, s: &str) -> Option<ImageRecord> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() < 12
        || !hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    let mut found = list(dirs)
        .ok()?
        .into_iter()
        .filter(|r| r.id.starts_with(hex));
    let one = found.next()?;
    found.next().is_none().then_some(one)
}

pub fn load(dirs: &Dirs, id: &str) -> Option<ImageRecord> {
    let text = std::fs::read_to_string(dirs.image_dir(id).join("image.toml")).ok()?;
    toml::from_str(&text).ok()
}

/// The cache directory, made private and tagged (CACHEDIR.TAG, so backup tools skip it).
fn cache_dir(dirs: &Dirs) -> Result<()> {
    private_dir(&dirs.cache)?;
    crate::paths::mark_cache_dir(&dirs.cache);
    Ok(())
}

fn downloads_dir(dirs: &Dirs) -> Result<PathBuf> {
    cache_dir(dirs)?;
    let d = dirs.cache.join("downloads-v1");
    private_dir(&d)?;
    crate::paths::mark_cache_dir(&d);
    Ok(d)
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Disk used by a tree (allocated blocks, hard links counted once). Needs namespace root for
/// trees holding subordinate-owned directories.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
