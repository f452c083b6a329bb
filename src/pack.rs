//! Layers made from trees: the reverse of `unpack`.
//!
//! `devbox __pack [--upper] TREE` walks TREE as root of devbox's user namespace (so files of
//! subordinate ids can be read and their owners come out as in-box ids) and writes it as a tar
//! stream on its stdout. [`pack_layer`] runs it and turns the stream into a gzip layer blob,
//! hashing the tar (the layer's diff_id) and the compressed bytes (its digest) as they pass.
//!
//! With `--upper`, TREE is a box's overlay upper dir and overlay's records of deletions become
//! OCI's (image-spec, "Representing Changes"):
//! - a whiteout (a character device 0/0, as kernel overlayfs and fuse-overlayfs write them, or
//!   a file carrying `user.overlay.whiteout`) becomes an empty file `.wh.NAME`;
//! - an opaque directory (`user.overlay.opaque`, `trusted.overlay.opaque` or
//!   `user.fuseoverlayfs.opaque` = "y") gets an entry `.wh..wh..opq` inside;
//! - `.wh.*` files that fuse-overlayfs wrote where it could not make devices are already in
//!   OCI's form and pass through;
//! - what devbox itself puts into a box's layer at start for that start only (the mount point
//!   of the host's root, `/run/host`, and `/run/.containerenv`) is left out.
//!
//! Overlay's own bookkeeping xattrs (`*.overlay.*`, `user.fuseoverlayfs.*`) never go into a
//! layer; `security.capability` does (as a PAX record), so file capabilities survive.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use sha2::Digest;

use crate::paths::Dirs;

/// The xattrs that mark an opaque directory, for each overlay implementation.
const OPAQUE_XATTRS: [&str; 3] = [
    "user.overlay.opaque",
    "trusted.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];
const WHITEOUT_XATTR: &str = "user.overlay.whiteout";

/// What devbox writes into every started box's layer for that start; not part of the work.
const RUNTIME_ONLY: [&str; 2] = ["run/host", "run/.containerenv"];

/// `devbox __pack [--upper] TREE`: TREE as a tar stream on stdout (see the module's text).
pub fn pack_helper(tree: &Path, upper: bool) -> Result<()> {
    let dirs = Dirs::from_env()?;
    crate::runtime::holder::as_namespace_root_for_parent(&dirs, "pack")?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut walk = Walk {
        tar,
        upper,
        links: HashMap::new(),
        stats: PackStats::default(),
    };
    if std::fs::symlink_metadata(tree).is_ok() {
        walk.dir(tree, Path::new(""))?;
    }
    let stats = walk.stats;
    walk.tar.into_inner()?.flush()?;
    crate::ui::detail(format_args!(
        "packed {}: {} entries, {} whiteouts, {} opaque directories",
        tree.display(),
        stats.entries,
        stats.whiteouts,
        stats.opaque
    ));
    Ok(())
}

#[derive(Debug, Default)]
struct PackStats {
    entries: u64,
    whiteouts: u64,
    opaque: u64,
}

struct Walk<W: Write> {
    tar: tar::Builder<W>,
    upper: bool,
    /// Files with several links already written: (dev, ino) -> their path in the layer.
    links: HashMap<(u64, u64), PathBuf>,
    stats: PackStats,
}

impl<W: Write> Walk<W> {
    /// Writes the entries of directory `abs` (at `rel` in the layer), sorted by name, so the
    /// same tree gives the same order.
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(abs)
            .with_context(|| format!("cannot read {}", abs.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", abs.display()))?;
        names.sort();
        for name in names {
            let path = abs.join(&name);
            let inner = rel.join(&name);
            if self.upper && RUNTIME_ONLY.iter().any(|r| inner == Path::new(r)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            self.entry(&path, &inner, &meta)?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, meta: &std::fs::Metadata) -> Result<()> {
        let ft = meta.file_type();
        if self.upper && is_whiteout(abs, meta) {
            let name = rel.file_name().unwrap_or_default().to_string_lossy();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            self.empty_file(&wh, meta)?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        self.stats.entries += 1;
        if ft.is_dir() {
            header.set_size(0);
            self.xattrs(abs)?;
            self.tar
                .append_data(&mut header, dir_name(rel), std::io::empty())
                .with_context(|| format!("cannot pack {}", abs.display()))?;
            if self.upper && is_opaque(abs) {
                self.empty_file(&rel.join(".wh..wh..opq"), meta)?;
                self.stats.opaque += 1;
            }
            return self.dir(abs, rel);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(abs)
                .with_context(|| format!("cannot read the link {}", abs.display()))?;
            header.set_size(0);
            return self
                .tar
                .append_link(&mut header, rel, target)
                .with_context(|| format!("cannot pack {}", abs.display()));
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self
                        .tar
                        .append_link(&mut header, rel, first)
                        .with_context(|| format!("cannot pack {}", abs.display()));
                }
                self.links.insert(key, rel.to_path_buf());
            }
            self.xattrs(abs)?;
            let file = std::fs::File::open(abs)
                .with_context(|| format!("cannot open {}", abs.display()))?;
            // The size the header says is what goes in, even if the file changes meanwhile
            // (a running box): the stream stays a valid tar.
            let size = meta.len();
            let reader = file.take(size).chain(std::io::repeat(0).take(size));
            return self
                .tar
                .append_data(&mut header, rel, reader.take(size))
                .with_context(|| format!("cannot pack {}", abs.display()));
        }
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            header.set_size(0);
            return self
                .tar
                .append_data(&mut header, rel, std::io::empty())
                .with_context(|| format!("cannot pack {}", abs.display()));
        }
        // Sockets have no place in a layer.
        self.stats.entries -= 1;
        Ok(())
    }

    fn empty_file(&mut self, rel: &Path, like: &std::fs::Metadata) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(like.mtime().max(0) as u64);
        self.tar
            .append_data(&mut h, rel, std::io::empty())
            .with_context(|| format!("cannot pack {}", rel.display()))
    }

    /// `security.capability` of `abs`, as a PAX record before its entry.
    fn xattrs(&mut self, abs: &Path) -> Result<()> {
        if let Ok(Some(cap)) = xattr::get(abs, "security.capability") {
            self.tar
                .append_pax_extensions([("SCHILY.xattr.security.capability", cap.as_slice())])?;
        }
        Ok(())
    }
}

/// `dir/` (the tar convention for directories).
fn dir_name(rel: &Path) -> PathBuf {
    let mut s = rel.as_os_str().to_os_string();
    s.push("/");
    PathBuf::from(s)
}

fn is_whiteout(abs: &Path, meta: &std::fs::Metadata) -> bool {
    let ft = meta.file_type();
    (ft.is_char_device() && meta.rdev() == 0)
        || (ft.is_file()
            && meta.len() == 0
            && xattr::get(abs, WHITEOUT_XATTR).is_ok_and(|v| v.is_some()))
}

fn is_opaque(abs: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|x| matches!(xattr::get(abs, x), Ok(Some(v)) if v.as_slice() == b"y"))
}

/// A layer blob made by [`pack_layer`].
#[derive(Debug, Clone)]
pub struct Packed {
    /// `sha256:...` of the compressed blob.
    pub digest: String,
    pub size: u64,
    /// `sha256:...` of the tar.
    pub diff_id: String,
}

pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Packs `tree` (a box's upper dir with `upper`) into a gzip layer in `blobs` (a layout's
/// `blobs/sha256`), named by its digest.
pub fn pack_layer(
    tree: &Path,
    upper: bool,
    blobs: &Path,
    r: &dyn crate::progress::Reporter,
) -> Result<Packed> {
    let mut cmd = crate::runtime::helper("__pack");
    if upper {
        cmd.arg("--upper");
    }
    let mut child = cmd
        .arg(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run devbox's pack helper")?;
    let stdout = child
        .stdout
        .take()
        .context("the pack helper has no stdout")?;
    let tmp = blobs.join(format!(".pack-{}", std::process::id()));
    let result = (|| -> Result<Packed> {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let bar = r.activity("Packing");
        let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut tar_hash = sha2::Sha256::new();
        let mut input = std::io::BufReader::with_capacity(1 << 20, stdout);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read the pack helper's output"),
            };
            tar_hash.update(&buf[..n]);
            gz.write_all(&buf[..n])?;
        }
        gz.finish()?;
        let (digest, size) = out.finish()?;
        bar.finish();
        let status = child.wait()?;
        if !status.success() {
            bail!("cannot pack {} (see above)", tree.display());
        }
        std::fs::rename(&tmp, blobs.join(digest.trim_start_matches("sha256:")))?;
        Ok(Packed {
            digest,
            size,
            diff_id: hex_digest(tar_hash.finalize().as_slice()),
        })
    })();
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn hex_digest(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A writer that hashes and counts what passes into a file, then flushes and syncs it.
struct HashingWriter<W: Write> {
    inner: W,
    hash: sha2::Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: sha2::Sha256::new(),
            len: 0,
        }
    }
}

impl HashingWriter<std::io::BufWriter<std::fs::File>> {
    fn finish(self) -> Result<(String, u64)> {
        let file = self.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((hex_digest(self.hash.finalize().as_slice()), self.len))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
