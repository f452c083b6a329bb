//! The image store: archives unpacked once, by sha256, into `images-v1/<sha256>/rootfs`.
//!
//! An entry is unpacked into `images-v1/.tmp-<sha256>` by the `__unpack` helper (inside the user
//! namespace, so ownership lands mapped) and renamed into place only when complete, under a lock;
//! a `.tmp-*` left by an interrupted create is removed by the next import.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::fetch;
use crate::paths::{private_dir, write_atomic, Dirs, Lock};
use crate::progress::{human_bytes, Reporter};
use crate::state::ImageRecord;

/// Makes sure the image `source` (a local tarball or an http(s) URL) is in the store.
pub fn import(
    dirs: &Dirs,
    source: &str,
    sha256: Option<&str>,
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
    let (archive, id, size, source_str, downloaded) = if fetch::is_url(source) {
        let dl_dir = downloads_dir(dirs)?;
        let f = fetch::download(source, &dl_dir, sha256, r)?;
        (f.path, f.sha256, f.size, source.to_string(), true)
    } else {
        let path = Path::new(source);
        let meta = std::fs::metadata(path).with_context(|| {
            format!("cannot open image {source:?}\n  hint: IMAGE is a path to a rootfs tarball (.tar, .tar.gz, .tar.xz, .tar.zst) or an http(s):// URL")
        })?;
        if !meta.is_file() {
            bail!("image {source:?} is not a file\n  hint: IMAGE is a path to a rootfs tarball or an http(s):// URL");
        }
        let (id, size) = fetch::hash_file(path)?;
        fetch::check_sha256(source, sha256, &id)?;
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        (abs.clone(), id, size, abs.display().to_string(), false)
    };
    let result = unpack_into_store(dirs, &archive, &id, size, &source_str, r);
    if downloaded {
        // The archive is only needed until it is unpacked.
        let _ = std::fs::remove_file(&archive);
    }
    result
}

fn unpack_into_store(
    dirs: &Dirs,
    archive: &Path,
    id: &str,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    if let Some(rec) = load(dirs, id) {
        r.step(&format!("Using image {} from the store", short(id)));
        return Ok(rec);
    }
    let _lock = Lock::acquire(&dirs.images.join(".lock"), "the image store", 600)?;
    if let Some(rec) = load(dirs, id) {
        return Ok(rec);
    }
    clean_stale_temps(dirs)?;
    let tmp = dirs.images.join(format!(".tmp-{id}"));
    private_dir(&tmp)?;
    r.step(&format!("Unpacking {} ({})", source, human_bytes(size)));
    let status = crate::runtime::helper("__unpack")
        .arg(archive)
        .arg(&tmp)
        .stdin(Stdio::null())
        .status()
        .context("cannot run devbox's unpack helper")?;
    if !status.success() {
        remove_tree(&tmp)?;
        bail!("cannot unpack {source} (see above); nothing was kept");
    }
    let rec = ImageRecord {
        id: id.to_string(),
        source: source.to_string(),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: size,
    };
    write_atomic(&tmp.join("image.toml"), toml::to_string(&rec)?.as_bytes())?;
    std::fs::rename(&tmp, dirs.image_dir(id))
        .context("cannot move the unpacked image into the store")?;
    Ok(rec)
}

/// Every complete image in the store.
pub fn list(dirs: &Dirs) -> Result<Vec<ImageRecord>> {
    let rd = match std::fs::read_dir(&dirs.images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dirs.images.display())),
    };
    Ok(rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            load(dirs, &name)
        })
        .collect())
}

/// Removes an image from the store (renamed away first, so it never looks half there).
pub fn remove_image(dirs: &Dirs, id: &str) -> Result<()> {
    let _lock = Lock::acquire(&dirs.images.join(".lock"), "the image store", 600)?;
    let trash = dirs.images.join(format!(".tmp-rm-{id}"));
    std::fs::rename(dirs.image_dir(id), &trash)
        .with_context(|| format!("cannot remove image {}", short(id)))?;
    remove_tree(&trash)
}

/// Empties the download cache; returns the bytes freed.
pub fn clear_cache(dirs: &Dirs) -> Result<u64> {
    let d = dirs.cache.join("downloads-v1");
    let freed = disk_usage(&d);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("cannot empty {}", d.display()))?;
    }
    Ok(freed)
}

pub fn load(dirs: &Dirs, id: &str) -> Option<ImageRecord> {
    let text = std::fs::read_to_string(dirs.image_dir(id).join("image.toml")).ok()?;
    toml::from_str(&text).ok()
}

fn downloads_dir(dirs: &Dirs) -> Result<PathBuf> {
    private_dir(&dirs.cache)?;
    let tag = dirs.cache.join("CACHEDIR.TAG");
    if !tag.exists() {
        let _ = std::fs::write(
            &tag,
            "Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a cache made by devbox; it can be deleted.\n",
        );
    }
    let d = dirs.cache.join("downloads-v1");
    private_dir(&d)?;
    Ok(d)
}

/// Removes `.tmp-*` entries of interrupted imports. Call with the store lock held.
fn clean_stale_temps(dirs: &Dirs) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(&dirs.images) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_tree(&e.path())?;
        }
    }
    Ok(())
}

/// Deletes a tree that may hold files owned by subordinate ids, through the `__rmtree` helper.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let status = crate::runtime::helper("__rmtree")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("cannot run devbox's removal helper")?;
    if !status.success() {
        bail!("cannot remove {}", path.display());
    }
    Ok(())
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `devbox __unpack ARCHIVE DEST`: unpacks into DEST/rootfs as root of devbox's user namespace.
pub fn unpack_helper(archive: &Path, dest: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let parent = nix::unistd::getppid();
    crate::runtime::userns::as_namespace_root(&dirs)?;
    // If the create that started us dies (Ctrl-C, kill), stop too: the half-unpacked temp dir
    // is then removed by the next import. (Set after the credential change, which clears it.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        anyhow::bail!("the devbox command that started this unpack has ended");
    }
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let reader = crate::unpack::decompressed(file)?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
    };
    let stats = match crate::unpack::unpack(reader, &root, &opts, &mut |_| {}) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e.into());
        }
    };
    if stats.entries == 0 {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!(
            "{} contains no files: it is not a root filesystem archive",
            archive.display()
        );
    }
    if stats.devices_skipped > 0 {
        eprintln!(
            "Skipped {} device nodes (boxes use the host's /dev)",
            stats.devices_skipped
        );
    }
    if let Some(p) = &stats.stripped_prefix {
        eprintln!("The archive keeps its root in {p}/: unpacked that directory as the root");
    }
    Ok(())
}

/// `devbox __rmtree PATH`: deletes PATH (inside devbox's data or cache dirs only).
pub fn rmtree_helper(path: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let abs = std::path::absolute(path)?;
    if !(abs.starts_with(&dirs.data) || abs.starts_with(&dirs.cache)) || abs == dirs.data {
        bail!(
            "refusing to remove {}: not inside devbox's store",
            abs.display()
        );
    }
    crate::runtime::userns::as_namespace_root(&dirs)?;
    match std::fs::remove_dir_all(&abs) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", abs.display())),
    }
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
