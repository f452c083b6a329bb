//! The store's helper modes (`__unpack`, `__unpack-layers`, `__rmtree`, `__clone`), run by
//! devbox in a fresh process inside its user namespace.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::paths::Dirs;

use super::*;

/// `devbox __unpack DEST SOURCE`: unpacks the archive on stdin into DEST/rootfs as root of
/// devbox's user namespace (SOURCE names it in messages). Reads stdin to its end even after
/// the archive's last entry, so the devbox feeding it never sees a closed pipe from a
/// successful unpack.
pub fn unpack_helper(dest: &Path, source: &str) -> Result<()> {
    use std::os::fd::AsFd;
    let dirs = Dirs::from_env()?;
    let stdin = std::io::stdin();
    let file = std::fs::File::from(
        stdin
            .as_fd()
            .try_clone_to_owned()
            .context("cannot read the archive from stdin")?,
    );
    // If the create that started us dies (Ctrl-C, kill), stop too: the half-unpacked temp dir
    // is then removed by the next import.
    crate::runtime::holder::as_namespace_root_for_parent(&dirs, "unpack")?;
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut reader = crate::unpack::decompressed(file)?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
        ..Default::default()
    };
    let stats = match crate::unpack::unpack(&mut reader, &root, &opts, &mut |_| {}) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e.into());
        }
    };
    if stats.entries == 0 {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!("{source} contains no files: it is not a root filesystem archive");
    }
    // What follows the end-of-archive marker (padding, trailing bytes) is read and dropped.
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    drop(reader);
    let _ = std::io::copy(&mut stdin.lock(), &mut std::io::sink());
    // An image layout (a container image saved as files: Rocky Linux's container tarballs,
    // `podman save`) is not a root: the caller reads it as an image instead.
    if is_layout_dir(&root) {
        let _ = std::fs::remove_dir_all(&root);
        std::process::exit(EXIT_IS_LAYOUT);
    }
    if let Err(why) = crate::unpack::check_usable_root(&root) {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!("no usable root file system: {why}");
    }
    if stats.devices_skipped > 0 {
        crate::ui::note(format_args!(
            "Skipped {} device nodes (boxes use the host's /dev)",
            stats.devices_skipped
        ));
    }
    if let Some(p) = &stats.stripped_prefix {
        let beside = if stats.dropped.is_empty() {
            String::new()
        } else {
            format!(" (left out beside it: {})", stats.dropped.join(", "))
        };
        eprintln!(
            "The archive keeps its root in {p}/: unpacked that directory as the root{beside}"
        );
    }
    Ok(())
}

/// Exit status of `__unpack` for an archive that holds an image layout rather than a root.
pub const EXIT_IS_LAYOUT: i32 = 4;

/// Whether an unpacked archive is an OCI image layout or a docker-archive.
pub(super) fn is_layout_dir(root: &Path) -> bool {
    let has = |n: &str| std::fs::symlink_metadata(root.join(n)).is_ok();
    (has("oci-layout") && has("index.json")) || (has("manifest.json") && !has("etc"))
}

/// `devbox __unpack-layers SPEC DEST`: applies an OCI image's layers, lowest first, onto
/// DEST/rootfs as root of devbox's user namespace. The layers' blobs come on stdin one after
/// the other, each exactly its size (SPEC lists them); each layer's uncompressed digest is
/// checked against the image config's diff_id as it streams.
pub fn unpack_layers_helper(spec: &Path, dest: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let layers: Vec<LayerSpec> = serde_json::from_str(
        &std::fs::read_to_string(spec)
            .with_context(|| format!("cannot read {}", spec.display()))?,
    )?;
    crate::runtime::holder::as_namespace_root_for_parent(&dirs, "unpack")?;
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
        ..Default::default()
    };
    let mut input = {
        use std::os::fd::AsFd;
        std::fs::File::from(
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot read the layers from stdin")?,
        )
    };
    let mut devices = 0;
    for (i, l) in layers.iter().enumerate() {
        let layer = crate::oci::Layer {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            path: PathBuf::from(format!("layer {} ({})", i + 1, l.digest)),
            diff_id: l.diff_id.clone(),
        };
        let mut blob = (&mut input).take(l.size);
        let result = (|| -> Result<crate::unpack::Stats> {
            let mut reader = crate::oci::layer_stream(
                &layer,
                std::io::BufReader::with_capacity(256 * 1024, &mut blob),
            )?;
            let stats = crate::unpack::unpack_layer(&mut reader, &root, &opts, &mut |_| {})?;
            // The tar reader stops at the end-of-archive marker: read the rest, so the
            // uncompressed digest is checked against the config's diff_id at EOF.
            std::io::copy(&mut reader, &mut std::io::sink())?;
            Ok(stats)
        })();
        let result = result.and_then(|stats| {
            // Bytes of the blob after the compressed stream's end are read and dropped.
            std::io::copy(&mut blob, &mut std::io::sink())?;
            if blob.limit() > 0 {
                bail!(
                    "its blob ended after {} of {} bytes",
                    l.size - blob.limit(),
                    l.size
                );
            }
            Ok(stats)
        });
        match result {
            Ok(stats) => devices += stats.devices_skipped,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e.context(format!(
                    "layer {} of {} ({})",
                    i + 1,
                    layers.len(),
                    l.digest
                )));
            }
        }
    }
    if let Err(why) = crate::unpack::check_usable_root(&root) {
        let _ = std::fs::remove_dir_all(&root);
        bail!("no usable root file system: {why}");
    }
    if devices > 0 {
        crate::ui::note(format_args!(
            "Skipped {devices} device nodes (boxes use the host's /dev)"
        ));
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
    crate::runtime::holder::as_namespace_root(&dirs)?;
    match std::fs::remove_dir_all(&abs) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", abs.display())),
    }
}

/// `devbox __clone FROM TO`: copies box layer FROM to TO (both inside devbox's box store, TO
/// new) as root of devbox's user namespace, keeping owners, modes, times, xattrs (overlay's
/// opaque marks) and whiteouts (character devices 0/0, which unprivileged processes may make).
pub fn clone_helper(from: &Path, to: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let (from, to) = (std::path::absolute(from)?, std::path::absolute(to)?);
    for p in [&from, &to] {
        if !p.starts_with(&dirs.boxes) || p == &dirs.boxes {
            bail!(
                "refusing to copy {}: not inside devbox's boxes",
                p.display()
            );
        }
    }
    crate::runtime::holder::as_namespace_root(&dirs)?;
    let status = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(&from)
        .arg(&to)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cannot copy {} to {}", from.display(), to.display());
    }
    Ok(())
}
