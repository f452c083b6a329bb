//! Safe, streaming extraction of root filesystem archives and OCI layers.
//!
//! The flow, in the order the bytes go:
//!
//! 1. [`decompress`]: the archive's first bytes say its compression (none, gzip, xz, zstd);
//!    a thread of its own decompresses into a bounded channel of chunks, so decompression
//!    overlaps with writing files (xz archives of several blocks on every CPU).
//! 2. [`extract`]: the `Extractor` reads the tar stream entry by entry (the tar crate only
//!    parses headers: long names, PAX records, sparse maps) and creates each entry relative to
//!    its parent directory's fd, never following a link, with owners, modes, xattrs and times.
//!    Directories get their real mode last, deepest first.
//! 3. [`write`]: a regular file, once created and its data read from the stream, is handed
//!    to a thread of its own that writes the data, owner, mode, xattrs and mtime through the
//!    open fd, while the extractor goes on; `finish` waits for it before directories get
//!    their metadata.
//! 4. [`tree`]: the fd-relative view of the target those steps rely on. The target is opened
//!    once as an `O_PATH` fd and every parent is looked up with `openat2(RESOLVE_IN_ROOT)`, so
//!    a link planted by an earlier entry, absolute or full of `..`, resolves inside the target;
//!    entry names with a `..` component are refused. Recursive removal lives here too.
//! 5. [`layer`]: in layer mode ([`unpack_layer`]) OCI whiteouts remove what lower layers made.
//! 6. [`root`]: after a plain unpack, the root filesystem is found by its contents (a wrapper
//!    directory is stripped), and [`check_usable_root`] says whether a box can run on it.
//!
//! This file holds the entry points, the options, the statistics and the errors.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use extract::Space;
use tree::{resolve, Tree, Unlocker};

mod decompress;
mod extract;
mod layer;
mod root;
#[cfg(test)]
mod testutil;
mod tree;
mod write;

pub use decompress::decompressed;
pub use layer::unpack_layer;
pub use root::check_usable_root;

use extract::Extractor;
use write::Writer;

/// Size of the chunks handed from the decompression thread to the extractor,
/// and of the copy buffer used for file data.
const CHUNK: usize = 256 * 1024;
/// Sparse members: blocks of this size (at offsets that are multiples of it)
/// that hold only zeros are left as holes instead of being written.
const HOLE_BLOCK: usize = 4096;
// The copy buffer holds whole blocks, so every block starts at a multiple.
const _: () = assert!(CHUNK % HOLE_BLOCK == 0);
/// How many chunks may wait in the channel (4 MiB in flight).
const CHANNEL_DEPTH: usize = 16;

/// How to extract (with [`unpack`] or [`unpack_layer`]).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Set each entry's owner to the numeric uid/gid of its header (needs
    /// CAP_CHOWN, e.g. root inside the user namespace). When false, files are
    /// owned by whoever runs the extraction.
    pub preserve_owner: bool,
    /// A directory entry whose path holds a symlink to a directory (resolved inside the
    /// root) keeps the symlink, as dpkg and `tar --keep-directory-symlink` do: packages of a
    /// merged-/usr system still list `./bin/` while `/bin` links to `usr/bin`.
    pub keep_directory_symlinks: bool,
}

/// What an extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Archive members processed (files, directories, links, FIFOs, devices,
    /// and in layer mode whiteouts).
    pub entries: u64,
    /// Bytes of regular-file data written (the apparent size: the holes of
    /// sparse members count).
    pub bytes: u64,
    /// Character and block device entries that were not created.
    pub devices_skipped: u64,
    /// Extended attributes that were not set: `trusted.*` and
    /// `security.selinux` (skipped on purpose), those on symlinks, and those
    /// the kernel or file system refused.
    pub xattrs_skipped: u64,
    /// The top-level directory whose contents were moved up, if any
    /// (see `root::strip_toplevel_at`).
    pub stripped_prefix: Option<String>,
    /// Plain files beside that directory at the top of the archive, dropped
    /// (the Arch bootstrap tarball's `pkglist.x86_64.txt` and `version`).
    pub dropped: Vec<String>,
}

/// Why an extraction failed. Messages name the archive entry or path involved.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the archive file itself failed (before any tar parsing).
    #[error("cannot read the archive: {err}")]
    ReadArchive {
        /// The underlying error.
        err: io::Error,
    },
    /// The decompression thread could not be started.
    #[error("cannot start the decompression thread: {err}")]
    Thread {
        /// The underlying error.
        err: io::Error,
    },
    /// The target directory could not be opened.
    #[error("cannot open the target directory {path:?}: {err}")]
    OpenTarget {
        /// The target directory.
        path: String,
        /// The underlying error.
        err: io::Error,
    },
    /// The kernel has no openat2(2), so containment cannot be enforced.
    #[error(
        "cannot extract safely: this kernel lacks openat2(2) with RESOLVE_IN_ROOT \
         (Linux 5.6 or newer is needed, and no seccomp filter may block it)"
    )]
    NoOpenat2,
    /// The tar stream (or its compression) is damaged or ends early.
    #[error(
        "archive is corrupt or truncated near entry {entry:?}: {}",
        describe(err)
    )]
    Corrupt {
        /// The entry being read, or the last one read before a bad header.
        entry: String,
        /// The underlying error.
        err: io::Error,
    },
    /// An entry is hostile or cannot be represented safely.
    #[error("refusing archive entry {entry:?}: {reason}")]
    Refused {
        /// The entry name as it appears in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A file system operation on an entry failed.
    #[error("cannot {action} {path:?}: {err}")]
    Fs {
        /// What was being done, e.g. "create file".
        action: &'static str,
        /// The entry path, relative to the target.
        path: String,
        /// The underlying error.
        err: io::Error,
    },
    /// The target's file system has no room for a regular file's data: found
    /// before writing it (`free` is known), or when a write failed with
    /// ENOSPC or EDQUOT (`err`).
    #[error(
        "{}\n  hint: free some space on that file system, or set XDG_DATA_HOME to a directory \
         on one with more room (devbox keeps its images in $XDG_DATA_HOME/devbox)",
        no_space(entry, *size, *free, err.as_ref(), target)
    )]
    NoSpace {
        /// The entry path, relative to the target.
        entry: String,
        /// The size of its data (for a sparse member, the data the archive
        /// holds, without the holes).
        size: u64,
        /// Bytes free on the file system when checked.
        free: Option<u64>,
        /// The failed write.
        err: Option<io::Error>,
        /// The target directory.
        target: String,
    },
    /// chown failed with EINVAL: the id has no mapping in this user namespace.
    #[error(
        "cannot set owner of {path:?} to {kind} {id}: the id is outside the \
         subordinate id range mapped by /etc/sub{kind}"
    )]
    IdNotMapped {
        /// The entry path, relative to the target.
        path: String,
        /// "uid" or "gid".
        kind: &'static str,
        /// The id from the archive.
        id: u32,
    },
}

/// Extracts the tar stream `tar` into `root`, an existing (normally empty)
/// directory, following the rules in the module documentation.
///
/// `tar` should be buffered (the reader from [`decompressed`] is): headers
/// are read 512 bytes at a time.
///
/// `progress` is called after each archive member with the number of bytes
/// of the (uncompressed) tar stream consumed so far. For progress against the
/// compressed file size, use the counter from [`decompressed_counting`].
///
/// Directories are created 0700 while extracting and get their real mode,
/// owner, xattrs and mtime at the end, deepest first. Then, if the archive
/// held a rootfs inside a single top-level directory, that directory is
/// stripped (see `root::strip_toplevel_at`).
pub fn unpack(
    tar: impl Read,
    root: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, UnpackError> {
    extract_stream(tar, root, opts, false, progress)
}

/// [`unpack`] (`layer` false) and [`unpack_layer`] (`layer` true).
fn extract_stream(
    tar: impl Read,
    root: &Path,
    opts: &Options,
    layer: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, UnpackError> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenTarget {
        path: root.display().to_string(),
        err: e.into(),
    })?;
    // Probe openat2 once so an old kernel gets a clear message.
    match resolve(root_fd.as_fd(), b".", OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(_) => {}
        Err(Errno::ENOSYS) => return Err(UnpackError::NoOpenat2),
        Err(e) => {
            return Err(UnpackError::OpenTarget {
                path: root.display().to_string(),
                err: e.into(),
            })
        }
    }

    let mut ex = Extractor {
        tree: Tree {
            root: root_fd,
            cache_key: Vec::new(),
            cache_fd: None,
        },
        opts,
        stats: Stats::default(),
        deferred: Vec::new(),
        buf: vec![0u8; CHUNK],
        name: Vec::new(),
        link: Vec::new(),
        xattrs: Vec::new(),
        layer,
        created: HashMap::new(),
        unlock: None,
        space: Space {
            target: root.display().to_string(),
            free: None,
            used: 0,
        },
        writer: Some(Writer::spawn(opts).map_err(|err| UnpackError::Thread { err })?),
    };
    let euid = nix::unistd::geteuid();
    if layer && !euid.is_root() {
        ex.unlock = Some(Unlocker {
            uid: euid.as_raw(),
            seen: HashSet::new(),
            restore: Vec::new(),
        });
    }

    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|err| UnpackError::Corrupt {
        entry: "(start of archive)".into(),
        err,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|err| UnpackError::Corrupt {
            entry: ex.last_name(),
            err,
        })?;
        ex.entry(&mut entry)?;
        progress(entry.raw_file_position() + data_size(&entry));
    }
    ex.finish()
}

/// The first line of [`UnpackError::NoSpace`].
fn no_space(
    entry: &str,
    size: u64,
    free: Option<u64>,
    err: Option<&io::Error>,
    target: &str,
) -> String {
    let size = crate::progress::human_bytes(size);
    match (free, err) {
        (_, Some(err)) => format!(
            "ran out of disk space writing {entry:?} ({size}) on the file system of {target}: {err}"
        ),
        (free, None) => format!(
            "not enough disk space for {entry:?} ({size}): only {} free on the file system of \
             {target}",
            crate::progress::human_bytes(free.unwrap_or(0))
        ),
    }
}

/// The bytes of data an entry has in the archive: its size, except for a GNU
/// sparse member, whose size (and `entry.size()`) is the apparent one, holes
/// included, while the header's size field counts the data stored. (Other
/// entries' header field may be 0 while a PAX record holds the size.)
fn data_size<R: Read>(entry: &tar::Entry<'_, R>) -> u64 {
    let header = entry.header();
    if header.entry_type().is_gnu_sparse() {
        header.entry_size().unwrap_or(entry.size())
    } else {
        entry.size()
    }
}

/// The message of a parse error, without the raw header bytes that the tar crate quotes (they
/// come from the file and may be anything, terminal escape sequences included).
fn describe(err: &io::Error) -> String {
    let s = err.to_string();
    if s.contains("numeric field") || s.contains("when getting") || s.contains("checksum") {
        return "invalid tar header (the file is not a tar archive, or it is damaged)".into();
    }
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::testutil::*;

    #[test]
    fn reports_target_problems() {
        let err = run(&sample_tar(), Path::new("/nonexistent/devbox-root")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot open the target directory \"/nonexistent/devbox-root\""),
            "{err}"
        );
    }
}
