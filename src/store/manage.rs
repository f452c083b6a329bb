//! The store's own housekeeping: list, remove an image or a box's directory, prune the
//! caches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::paths::Dirs;
use crate::state::ImageRecord;

use super::*;

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

/// Removes an image from the store: renamed away first (`images-v1/.tmp-rm-<id>`), so it never
/// looks half there, and flocked before that, so no sweep of leftovers takes it while this
/// devbox removes it; a removal that is interrupted leaves it unlocked, for the next sweep.
pub fn remove_image(dirs: &Dirs, id: &str) -> Result<()> {
    let (trash, held) = {
        let _lock = store_lock(dirs)?;
        let dir = dirs.image_dir(id);
        let what = format!("image {}", short(id));
        let held = lock_dir(&dir, &what).with_context(|| format!("cannot remove {what}"))?;
        let trash = unused_name(&dirs.images, &format!(".tmp-rm-{id}"));
        std::fs::rename(&dir, &trash).with_context(|| format!("cannot remove {what}"))?;
        (trash, held)
    };
    let removed = remove_tree(&trash);
    drop(held);
    removed
}

/// Removes box `name`'s directory: renamed away first (`boxes-v1/.trash-NAME-PID`), so a
/// half-removed box never looks like a box, and flocked before that, so no sweep of leftovers
/// takes it while this devbox removes it; a removal that is interrupted (a killed `rm`) leaves
/// it unlocked, for the next sweep.
pub fn remove_box_dir(dirs: &Dirs, name: &str) -> Result<()> {
    let dir = dirs.box_dir(name);
    let held = lock_dir(&dir, &format!("box '{name}'"))
        .with_context(|| format!("cannot remove box '{name}'"))?;
    let trash = unused_name(
        &dirs.boxes,
        &format!(".trash-{name}-{}", std::process::id()),
    );
    std::fs::rename(&dir, &trash).with_context(|| format!("cannot remove box '{name}'"))?;
    let removed = remove_tree(&trash);
    drop(held);
    removed
}

/// `dir/name`, or `dir/name-N` for the first N that is not there (a leftover of the same name
/// that could not be removed must not make the next removal fail).
pub(super) fn unused_name(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 1;
    while std::fs::symlink_metadata(&path).is_ok() {
        path = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    path
}

/// Empties the caches: downloaded archives (`downloads-v1`), OCI blobs (`blobs-v1`) and archive
/// packages and indexes (`debs-v1`), partial
/// downloads included, except files a running devbox has locked (a download under way).
/// Returns the bytes freed.
pub fn clear_cache(dirs: &Dirs) -> Result<u64> {
    let mut freed = 0;
    for d in [
        dirs.cache.join("downloads-v1"),
        dirs.cache.join("blobs-v1").join("sha256"),
        dirs.cache.join("debs-v1"),
    ] {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if name == "CACHEDIR.TAG" || !meta.is_file() {
                continue;
            }
            let Ok(file) = std::fs::File::open(e.path()) else {
                continue;
            };
            // A download under way holds its file locked.
            let Ok(_held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            match std::fs::remove_file(e.path()) {
                Ok(()) => freed += meta.len(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot remove {}", e.path().display()))
                }
            }
        }
    }
    Ok(freed)
}
