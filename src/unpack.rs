//! Safe, streaming extraction of rootfs tarballs.
//!
//! [`decompressed`] turns an archive file (plain, gzip, xz or zstd, detected by
//! magic bytes) into a reader of the plain tar stream; decompression runs on a
//! thread of its own so it overlaps with writing files. [`unpack`] then
//! extracts that stream into an (empty) target directory, and
//! [`unpack_layer`] applies one OCI image layer (whiteouts included) onto the
//! layers below it.
//!
//! Containment is enforced by the kernel rather than by string checks alone:
//! the target is opened once as an `O_PATH` directory fd, every parent
//! directory is looked up with `openat2(RESOLVE_IN_ROOT)` relative to it (so
//! symlinks planted by earlier entries, absolute or full of `..`, resolve
//! inside the target as if it were `/`), and only the final component of an
//! entry is created, replaced or changed, relative to that parent fd, without
//! ever following a symlink. Entry names with a `..` component are refused
//! with an error rather than silently skipped.
//!
//! The tar crate is used only to parse headers (GNU long names, PAX records,
//! sparse maps); its own `unpack` functions are not used.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, renameat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, utimensat, FchmodatFlags, FileStat, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};
use tar::EntryType;
use xattr::FileExt as _;

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

/// Compression of an archive file, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream (anything not recognised below).
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// How many leading bytes [`Compression::detect`] looks at.
    pub const MAGIC_LEN: usize = 6;

    /// Detects the compression from the magic bytes at the start of a file.
    /// Anything unrecognised (including too few bytes) is taken as plain tar.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            Compression::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

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
    /// (see [`strip_single_toplevel`]).
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

// ---------------------------------------------------------------------------
// Decompression
// ---------------------------------------------------------------------------

/// Opens `file`, detects compression from its first bytes, and returns a reader
/// of the plain tar stream.
///
/// Reading (and decompressing) runs on its own thread, feeding a bounded
/// channel of 256 KiB chunks, so it overlaps with writing files. The returned
/// reader is already buffered. Dropping it stops and joins the thread.
pub fn decompressed(file: File) -> Result<Box<dyn Read + Send>, UnpackError> {
    decompressed_counting(file).map(|(reader, _)| reader)
}

/// Like [`decompressed`], and also returns a counter of the bytes read from
/// `file` so far (compressed bytes). Compare it with the file's size to show
/// progress, e.g. from the `progress` callback of [`unpack`].
pub fn decompressed_counting(
    mut file: File,
) -> Result<(Box<dyn Read + Send>, Arc<AtomicU64>), UnpackError> {
    let mut magic = [0u8; Compression::MAGIC_LEN];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(UnpackError::ReadArchive { err }),
        }
    }
    let magic = &magic[..n];
    let counter = Arc::new(AtomicU64::new(0));
    let raw = CountingReader {
        inner: io::Cursor::new(magic.to_vec()).chain(file),
        count: Arc::clone(&counter),
    };
    let buffered = BufReader::with_capacity(CHUNK, raw);
    let source: Box<dyn Read + Send> = match Compression::detect(magic) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|err| UnpackError::ReadArchive { err })?;
            // Accept archives made with `zstd --long` (windows up to 2 GiB).
            dec.window_log_max(31)
                .map_err(|err| UnpackError::ReadArchive { err })?;
            Box::new(dec)
        }
    };
    let reader = ThreadedReader::spawn(source).map_err(|err| UnpackError::Thread { err })?;
    Ok((Box::new(reader), counter))
}

/// Counts bytes read through it into a shared counter.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A message from the decompression thread.
enum Msg {
    /// A buffer whose first `len` bytes are data.
    Data(Vec<u8>, usize),
    /// Clean end of stream.
    Eof,
    /// Reading or decompressing failed.
    Err(io::Error),
}

/// The consumer end of the decompression thread.
struct ThreadedReader {
    rx: Option<Receiver<Msg>>,
    /// Returns spent buffers to the thread so it does not allocate per chunk.
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    eof: bool,
    failed: Option<(io::ErrorKind, String)>,
    thread: Option<JoinHandle<()>>,
}

impl ThreadedReader {
    fn spawn(source: Box<dyn Read + Send>) -> io::Result<ThreadedReader> {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let (recycle, recycled) = sync_channel(CHANNEL_DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("devbox-decompress".into())
            .spawn(move || pump(source, &tx, &recycled))?;
        Ok(ThreadedReader {
            rx: Some(rx),
            recycle,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            eof: false,
            failed: None,
            thread: Some(thread),
        })
    }
}

/// Body of the decompression thread: fills chunks from `source` and sends them.
fn pump(mut source: Box<dyn Read + Send>, tx: &SyncSender<Msg>, recycled: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut len = 0;
        let mut eof = false;
        let mut err = None;
        while len < buf.len() {
            match source.read(&mut buf[len..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // A failed send means the reader was dropped: just stop.
        if len > 0 && tx.send(Msg::Data(buf, len)).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = tx.send(Msg::Err(e));
            return;
        }
        if eof {
            let _ = tx.send(Msg::Eof);
            return;
        }
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if self.eof {
                return Ok(0);
            }
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Msg::Data(buf, len)) => {
                    let spent = std::mem::replace(&mut self.cur, buf);
                    if spent.capacity() > 0 {
                        let _ = self.recycle.try_send(spent);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Msg::Eof) => self.eof = true,
                Ok(Msg::Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                Err(_) => {
                    let msg = "the decompression thread stopped unexpectedly";
                    self.failed = Some((io::ErrorKind::Other, msg.into()));
                    return Err(io::Error::other(msg));
                }
            }
        }
    }
}

impl Drop for ThreadedReader {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail, so it ends.
        drop(self.rx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------

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
/// stripped (see [`strip_single_toplevel`]).
pub fn unpack(
    tar: impl Read,
    root: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, UnpackError> {
    extract(tar, root, opts, false, progress)
}

/// Applies one OCI image layer, the plain tar stream `tar`, onto `root`,
/// which holds the layers below it (empty for the first). Call it once per
/// layer, in order, on the same directory, to flatten an image. The rules of
/// [`unpack`] hold (containment, `..` refused, devices skipped and counted,
/// directory metadata applied at the end of each call), plus:
///
/// - `.wh.NAME` removes NAME from the same directory: a file, a symlink (not
///   what it points to) or a whole directory tree. `DIR/.wh..wh..opq` makes
///   DIR opaque: everything in it from lower layers is removed. Both apply to
///   lower layers only: what this layer creates, before or after the marker,
///   stays. The markers are never created; a whiteout for a path that does
///   not exist does nothing; other `.wh..wh.*` names (AUFS metadata) are
///   skipped. Parent directories resolve inside `root` like any entry's.
/// - An entry replaces whatever its path holds by unlinking it, never writing
///   through it (so a hard link twin from a lower layer keeps its content). A
///   directory is replaced with all its contents, unless the new entry is a
///   directory too: then the two merge.
/// - Hard links may point to files of lower layers.
/// - No single top-level directory is stripped.
/// - When not run as root, directories of lower layers that their owner (the
///   caller) cannot write are made `u+rwx` while the layer is applied, and
///   get their mode back at the end. (Root, also namespace root, does not
///   need it.)
// Not yet called outside the tests; the image store will apply layers with it.
#[allow(dead_code)]
pub fn unpack_layer(
    tar: impl Read,
    root: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, UnpackError> {
    extract(tar, root, opts, true, progress)
}

/// [`unpack`] (`layer` false) and [`unpack_layer`] (`layer` true).
fn extract(
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

/// Finds the root filesystem inside an unpacked archive by its contents: when
/// `root` is not a rootfs itself (no `etc` with `usr` or `bin`) but exactly one
/// top-level directory is, and everything beside it is a plain file, that
/// directory's children move up into `root`, the plain files beside it are
/// dropped, and its name is returned.
///
/// The Arch Linux bootstrap tarball, for instance, nests everything in
/// `root.x86_64/`, with `pkglist.x86_64.txt` and `version` beside it (archiso's
/// `mkarchiso` since May 2024). Moving a directory needs write permission on it, so an
/// unprivileged caller may fail on read-only subdirectories ([`unpack`]
/// strips before it applies directory modes, so it does not).
// unpack() calls the fd-based strip_toplevel_at (it must strip before it
// applies directory modes); this path-based entry point is for other callers.
#[allow(dead_code)]
pub fn strip_single_toplevel(root: &Path) -> Result<Option<String>, UnpackError> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenTarget {
        path: root.display().to_string(),
        err: e.into(),
    })?;
    Ok(strip_toplevel_at(root_fd.as_fd())?.map(|(name, _)| lossy(&name)))
}

/// Checks that an unpacked tree can be a box's root: `/etc` is a directory and a shell
/// (`/bin/sh`) is an executable file, both resolved inside the tree (an absolute symlink such
/// as `bin -> /usr/bin` counts as the box will see it). The reason when not.
pub fn check_usable_root(root: &Path) -> Result<(), String> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let kind = |p: &[u8]| {
        resolve(root_fd.as_fd(), p, OFlag::O_PATH | OFlag::O_CLOEXEC)
            .ok()
            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
    };
    match kind(b"etc") {
        Some(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
        _ => {
            let top: Vec<String> = list_dir(root_fd.as_fd(), b".", b".")
                .unwrap_or_default()
                .iter()
                .take(8)
                .map(|n| lossy(n))
                .collect();
            return Err(format!(
                "it has no /etc directory (its top level: {})",
                if top.is_empty() {
                    "empty".into()
                } else {
                    top.join(", ")
                }
            ));
        }
    }
    let shell = [&b"bin/sh"[..], b"usr/bin/sh", b"bin/bash", b"usr/bin/bash"]
        .into_iter()
        .any(|p| {
            kind(p).is_some_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
                    && st.st_mode & 0o111 != 0
            })
        });
    if !shell {
        return Err("it has no shell (/bin/sh)".into());
    }
    Ok(())
}

/// Whether `name` in `dir` is a directory that holds a root filesystem.
fn is_rootfs_dir(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    let Ok(fd) = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let has = |n: &str| fstatat(fd.as_fd(), n, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
    has("etc") && (has("usr") || has("bin"))
}

/// The top directory moved up and the plain files dropped beside it.
type Stripped = (Vec<u8>, Vec<Vec<u8>>);

fn strip_toplevel_at(root: BorrowedFd<'_>) -> Result<Option<Stripped>, UnpackError> {
    if is_rootfs_dir(root, b".") {
        return Ok(None);
    }
    let names = list_dir(root, b".", b".")?;
    let kind = |n: &[u8]| {
        fstatat(root, n, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
            .ok()
    };
    let roots: Vec<&Vec<u8>> = names.iter().filter(|n| is_rootfs_dir(root, n)).collect();
    let [top] = roots.as_slice() else {
        return Ok(None);
    };
    let top: &Vec<u8> = top;
    let others: Vec<Vec<u8>> = names.iter().filter(|n| *n != top).cloned().collect();
    if !others.iter().all(|n| kind(n) == Some(SFlag::S_IFREG)) {
        return Ok(None);
    }
    let top_fd = openat(
        root,
        top.as_slice(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_err("open directory", top, e))?;
    for f in &others {
        unlinkat(root, f.as_slice(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| fs_err("remove", f, e))?;
    }
    let children = list_dir(top_fd.as_fd(), b".", top)?;
    // Park the top directory under a name none of its children has, so a
    // child with the same name as the top directory can move up too.
    let mut parked = b".devbox-strip".to_vec();
    while children.contains(&parked) || parked == *top {
        parked.push(b'_');
    }
    renameat(root, top.as_slice(), root, parked.as_slice())
        .map_err(|e| fs_err("rename directory", top, e))?;
    for child in &children {
        renameat(top_fd.as_fd(), child.as_slice(), root, child.as_slice()).map_err(|e| {
            let mut path = top.clone();
            path.push(b'/');
            path.extend_from_slice(child);
            fs_err("move up", &path, e)
        })?;
    }
    unlinkat(root, parked.as_slice(), UnlinkatFlags::RemoveDir)
        .map_err(|e| fs_err("remove directory", top, e))?;
    Ok(Some((top.clone(), others)))
}

/// Names in directory `path` (relative to `dir`), without `.` and `..`.
/// `shown` names the directory in errors.
fn list_dir(dir: BorrowedFd<'_>, path: &[u8], shown: &[u8]) -> Result<Vec<Vec<u8>>, UnpackError> {
    let mut d = Dir::openat(
        dir,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_err("list directory", shown, e))?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(|e| fs_err("list directory", shown, e))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Ownership, permissions and mtime of an entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
}

/// A directory whose metadata is applied at the end.
struct DeferredDir {
    path: Vec<u8>,
    meta: Meta,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The target tree: the root fd and a one-entry cache of the last parent
/// directory looked up (tar entries come grouped by directory).
struct Tree {
    root: OwnedFd,
    cache_key: Vec<u8>,
    cache_fd: Option<OwnedFd>,
}

/// Opens `path` below `root`, treating `root` as `/` for every component,
/// symlinks included; magic links (/proc/*/fd) are refused.
fn resolve(root: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut tries = 0;
    loop {
        match openat2(root, path, how) {
            // EAGAIN: a concurrent rename raced with a ".." lookup; retry.
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

impl Tree {
    /// The directory `parent` (normalized, relative to root; empty = root),
    /// created (0755, like `mkdir -p`) if missing.
    fn dir<'t>(
        &'t mut self,
        parent: &[u8],
        unlock: &mut Option<Unlocker>,
    ) -> nix::Result<BorrowedFd<'t>> {
        self.lookup(parent, true, unlock)?.ok_or(Errno::ENOENT)
    }

    /// The directory `parent` if it exists (None if it or a directory on the
    /// way is missing or not a directory); with `create`, like [`Tree::dir`].
    /// With `unlock` (layer mode), directories on the way that their owner
    /// cannot write are made writable (see [`Unlocker`]).
    fn lookup<'t>(
        &'t mut self,
        parent: &[u8],
        create: bool,
        unlock: &mut Option<Unlocker>,
    ) -> nix::Result<Option<BorrowedFd<'t>>> {
        if parent.is_empty() {
            if let Some(u) = unlock {
                u.writable(self.root.as_fd(), b"");
            }
            return Ok(Some(self.root.as_fd()));
        }
        if self.cache_fd.is_none() || self.cache_key != parent {
            let mut opened = self.open_dir(parent, create);
            if let (Err(Errno::EACCES), Some(u)) = (&opened, unlock.as_mut()) {
                // A directory on the way cannot be searched or written.
                u.chain(self.root.as_fd(), parent);
                opened = self.open_dir(parent, create);
            }
            let fd = match opened {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) if !create => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(u) = unlock {
                u.writable(fd.as_fd(), parent);
            }
            self.cache_key.clear();
            self.cache_key.extend_from_slice(parent);
            self.cache_fd = Some(fd);
        }
        match &self.cache_fd {
            Some(fd) => Ok(Some(fd.as_fd())),
            None => Err(Errno::EBADF),
        }
    }

    fn open_dir(&self, parent: &[u8], create: bool) -> nix::Result<OwnedFd> {
        match resolve(
            self.root.as_fd(),
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        ) {
            Err(Errno::ENOENT) if create => self.create_parents(parent),
            r => r,
        }
    }

    /// `mkdir -p parent` inside root; every lookup goes through [`resolve`].
    fn create_parents(&self, parent: &[u8]) -> nix::Result<OwnedFd> {
        let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut cur: Option<OwnedFd> = None;
        let mut start = 0;
        while start < parent.len() {
            let end = parent[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |i| start + i);
            let prefix = &parent[..end];
            let comp = &parent[start..end];
            start = end + 1;
            match resolve(self.root.as_fd(), prefix, dir_flags) {
                Ok(fd) => cur = Some(fd),
                Err(Errno::ENOENT) => {
                    let at = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
                    match mkdirat(at, comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    cur = Some(resolve(self.root.as_fd(), prefix, dir_flags)?);
                }
                Err(e) => return Err(e),
            }
        }
        match cur {
            Some(fd) => Ok(fd),
            None => resolve(self.root.as_fd(), b".", dir_flags),
        }
    }

    fn invalidate(&mut self) {
        self.cache_fd = None;
    }
}

/// Layer mode when not run as root: a lower layer's directory that its
/// owner (the caller) cannot write, search or list is made `u+rwx` before
/// this layer adds to it or removes from it, and gets its mode back at the
/// end (unless this layer gives it a mode of its own).
struct Unlocker {
    /// The caller's effective uid: only its own directories can be changed.
    uid: u32,
    /// Directories already made writable (device, inode).
    seen: HashSet<(libc::dev_t, libc::ino_t)>,
    /// What to put back at the end.
    restore: Vec<Unlocked>,
}

/// A directory made writable, its original mode, and its path for messages.
struct Unlocked {
    fd: OwnedFd,
    mode: u32,
    path: Vec<u8>,
}

impl Unlocker {
    /// Makes directory `dir` (any fd, O_PATH included) `u+rwx` if the caller
    /// owns it and lacks one of those bits. Failures are left for the
    /// operation that needed the access to report.
    fn writable(&mut self, dir: BorrowedFd<'_>, path: &[u8]) {
        let Ok(st) = fstat(dir) else { return };
        let mode = st.st_mode & 0o7777;
        if st.st_uid != self.uid
            || mode & 0o700 == 0o700
            || !self.seen.insert((st.st_dev, st.st_ino))
        {
            return;
        }
        let Ok(fd) = dir.try_clone_to_owned() else {
            return;
        };
        if chmod_dir(fd.as_fd(), mode | 0o700).is_ok() {
            self.restore.push(Unlocked {
                fd,
                mode,
                path: path.to_vec(),
            });
        }
    }

    /// [`Unlocker::writable`] for root and every existing directory on the
    /// way to `path` (normalized, relative to root), outermost first.
    fn chain(&mut self, root: BorrowedFd<'_>, path: &[u8]) {
        self.writable(root, b"");
        let mut end = 0;
        while end < path.len() {
            end = path[end + 1..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| end + 1 + i);
            let prefix = &path[..end];
            match resolve(root, prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => self.writable(fd.as_fd(), prefix),
                Err(_) => return,
            }
        }
    }

    /// Puts the original modes back, except on directories that were
    /// removed since or that this layer gave a mode (`applied`).
    fn restore(self, applied: &HashSet<(libc::dev_t, libc::ino_t)>) -> Result<(), UnpackError> {
        for u in self.restore {
            let st = fstat(&u.fd).map_err(|e| fs_err("restore permissions of", &u.path, e))?;
            if st.st_nlink == 0 || applied.contains(&(st.st_dev, st.st_ino)) {
                continue;
            }
            match chmod_dir(u.fd.as_fd(), u.mode) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(fs_err("restore permissions of", &u.path, e)),
            }
        }
        Ok(())
    }
}

/// chmod of a directory given any fd of it (fchmod refuses O_PATH fds):
/// through a real fd if the directory can be opened, else through /proc.
fn chmod_dir(dir: BorrowedFd<'_>, mode: u32) -> nix::Result<()> {
    let mode = Mode::from_bits_truncate(mode);
    match openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fchmod(&fd, mode),
        Err(Errno::EACCES) => {
            let magic = format!("/proc/self/fd/{}", dir.as_raw_fd());
            fchmodat(dir, magic.as_str(), mode, FchmodatFlags::FollowSymlink)
        }
        Err(e) => Err(e),
    }
}

fn is_dir_stat(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// What a layer created so far, by parent directory (device, inode) and
/// name. Keyed by the real parent rather than the archive path, so an entry
/// that reached its directory through a symlink is still recognised.
type Created = HashMap<(libc::dev_t, libc::ino_t), HashSet<Vec<u8>>>;

fn dir_id(dir: BorrowedFd<'_>) -> nix::Result<(libc::dev_t, libc::ino_t)> {
    fstat(dir).map(|st| (st.st_dev, st.st_ino))
}

/// A directory being emptied by [`remove_tree`].
struct Frame {
    /// O_PATH fd of the directory.
    fd: OwnedFd,
    id: (libc::dev_t, libc::ino_t),
    /// Its name in its parent.
    name: Vec<u8>,
    /// Its path relative to root, for messages.
    path: Vec<u8>,
    /// Children not visited yet.
    children: Vec<Vec<u8>>,
    /// Whether the directory itself stays.
    keep: bool,
}

impl Frame {
    fn open(
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: Vec<u8>,
        keep: bool,
        unlock: &mut Option<Unlocker>,
    ) -> Result<Frame, UnpackError> {
        let fd = openat(
            parent,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fs_err("open directory", &path, e))?;
        if let Some(u) = unlock {
            u.writable(fd.as_fd(), &path);
        }
        let id = dir_id(fd.as_fd()).map_err(|e| fs_err("open directory", &path, e))?;
        let children = list_dir(fd.as_fd(), b".", &path)?;
        Ok(Frame {
            fd,
            id,
            name: name.to_vec(),
            path,
            children,
            keep,
        })
    }
}

/// Removes `base` in `dir` and, if it is a directory, everything in it,
/// never following a symlink (iteratively: depth costs an fd per level, not
/// stack). `shown` is its path relative to root, for messages.
///
/// With `created` (whiteouts), what this layer created is kept, and so is
/// every directory on the way to something kept. With `keep_top` (opaque
/// directories; `base` is then "."), `base` stays and only its contents go.
fn remove_tree(
    dir: BorrowedFd<'_>,
    base: &[u8],
    shown: &[u8],
    created: Option<&Created>,
    keep_top: bool,
    unlock: &mut Option<Unlocker>,
) -> Result<(), UnpackError> {
    let is_created = |parent: (libc::dev_t, libc::ino_t), name: &[u8]| {
        created.is_some_and(|c| c.get(&parent).is_some_and(|names| names.contains(name)))
    };
    let st = match fstatat(dir, base, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fs_err("look up", shown, e)),
    };
    let keep = keep_top || {
        let id = dir_id(dir).map_err(|e| fs_err("look up", shown, e))?;
        is_created(id, base)
    };
    if !is_dir_stat(&st) {
        if !keep {
            unlink_quiet(dir, base, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| fs_err("remove", shown, e))?;
        }
        return Ok(());
    }
    let mut stack = vec![Frame::open(dir, base, shown.to_vec(), keep, unlock)?];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.children.pop() {
            let mut path = top.path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&child);
            let keep = is_created(top.id, &child);
            let cst = match fstatat(
                top.fd.as_fd(),
                child.as_slice(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(fs_err("look up", &path, e)),
            };
            if is_dir_stat(&cst) {
                let frame = Frame::open(top.fd.as_fd(), &child, path, keep, unlock)?;
                stack.push(frame);
            } else if keep {
                top.keep = true;
            } else {
                unlink_quiet(top.fd.as_fd(), &child, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| fs_err("remove", &path, e))?;
            }
        } else {
            let Some(done) = stack.pop() else { break };
            let parent = match stack.last_mut() {
                Some(parent) if done.keep => {
                    parent.keep = true;
                    continue;
                }
                Some(parent) => parent.fd.as_fd(),
                None if done.keep => break,
                None => dir,
            };
            unlink_quiet(parent, &done.name, UnlinkatFlags::RemoveDir)
                .map_err(|e| fs_err("remove directory", &done.path, e))?;
        }
    }
    Ok(())
}

/// unlinkat that takes an already missing name as success.
fn unlink_quiet(dir: BorrowedFd<'_>, name: &[u8], flags: UnlinkatFlags) -> nix::Result<()> {
    match unlinkat(dir, name, flags) {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

/// The `.wh.` prefix of whiteout names in OCI layers.
const WH_PREFIX: &[u8] = b".wh.";
/// The opaque directory marker.
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
/// AUFS metadata names (hard link directories and the like), skipped.
const WH_META: &[u8] = b".wh..wh.";

struct Extractor<'o> {
    tree: Tree,
    opts: &'o Options,
    stats: Stats,
    deferred: Vec<DeferredDir>,
    /// Copy buffer for file data.
    buf: Vec<u8>,
    /// Normalized name of the current entry (reused).
    name: Vec<u8>,
    /// Normalized hard link target of the current entry (reused).
    link: Vec<u8>,
    /// `SCHILY.xattr.*` records of the current entry (reused).
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Applying an OCI layer ([`unpack_layer`]).
    layer: bool,
    /// Layer mode: what this layer created, which its whiteouts keep.
    created: Created,
    /// Layer mode, not root: read-only directories made writable.
    unlock: Option<Unlocker>,
    /// Free space on the target's file system.
    space: Space,
}

/// Free space on the target's file system, so that a regular file whose data
/// cannot fit stops the extraction before it is written. Asked of the kernel
/// (statvfs) for the first file, then estimated from the data written since,
/// and asked again only when a file does not fit the estimate (so the common
/// case costs no system call per file). The estimate ignores metadata and
/// other writers: an ENOSPC while writing gives the same error.
struct Space {
    /// The target directory, for messages.
    target: String,
    /// Bytes free for unprivileged use (f_bavail * f_frsize) at the last
    /// query; None before the first.
    free: Option<u64>,
    /// Bytes of file data written since that query, in whole 4 KiB blocks.
    used: u64,
}

impl Space {
    /// Checks that `size` bytes of data for entry `name` fit on the file
    /// system of `fd`.
    fn check(&mut self, fd: BorrowedFd<'_>, name: &[u8], size: u64) -> Result<(), UnpackError> {
        if size == 0 {
            return Ok(());
        }
        if let Some(free) = self.free {
            if blocks_of(size) <= free.saturating_sub(self.used) {
                return Ok(());
            }
        }
        // (Both are 32-bit on some 32-bit targets.)
        #[allow(clippy::useless_conversion)]
        let free = match nix::sys::statvfs::fstatvfs(fd) {
            Ok(st) => {
                u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()))
            }
            // Unknown: leave it to the writes to find out.
            Err(_) => u64::MAX,
        };
        self.free = Some(free);
        self.used = 0;
        if size > free {
            return Err(UnpackError::NoSpace {
                entry: display_name(name),
                size,
                free: Some(free),
                err: None,
                target: self.target.clone(),
            });
        }
        Ok(())
    }

    /// Counts `size` bytes of data as written.
    fn wrote(&mut self, size: u64) {
        self.used = self.used.saturating_add(blocks_of(size));
    }

    /// Turns a failure to create or write entry `name` (data of `size`
    /// bytes) for lack of space or quota into [`UnpackError::NoSpace`].
    fn exhausted(&self, e: UnpackError, size: u64) -> UnpackError {
        match e {
            UnpackError::Fs { path, err, .. }
                if matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) =>
            {
                UnpackError::NoSpace {
                    entry: path,
                    size,
                    free: None,
                    err: Some(err),
                    target: self.target.clone(),
                }
            }
            e => e,
        }
    }
}

/// `size` rounded up to whole 4 KiB blocks.
fn blocks_of(size: u64) -> u64 {
    size.div_ceil(4096).saturating_mul(4096)
}

/// What kind of thing an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Device,
    /// PAX global headers and the like: nothing to create.
    Ignore,
}

impl Extractor<'_> {
    fn last_name(&self) -> String {
        if self.stats.entries == 0 {
            "(start of archive)".into()
        } else {
            display_name(&self.name)
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let entry_type = entry.header().entry_type();
        let raw_dir_slash;
        {
            let raw = entry.path_bytes();
            raw_dir_slash = raw.ends_with(b"/");
            if normalize(&raw, &mut self.name).is_err() {
                return Err(UnpackError::Refused {
                    entry: lossy(&raw),
                    reason: "path leaves the target (it has a \"..\" component)".into(),
                });
            }
        }
        let kind = match entry_type {
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Char | EntryType::Block => Kind::Device,
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => Kind::Ignore,
            // Old archives mark directories with a trailing slash only.
            EntryType::Regular if raw_dir_slash => Kind::Dir,
            // GNU incremental dumpdir: a directory plus a listing we ignore.
            t if t.as_byte() == b'D' => Kind::Dir,
            // GNU volume label: not a file.
            t if t.as_byte() == b'V' => Kind::Ignore,
            // Regular, contiguous, sparse, and (as GNU tar does) unknown types.
            _ => Kind::File,
        };
        if kind == Kind::Ignore {
            return Ok(());
        }
        self.stats.entries += 1;
        if self.layer && split(&self.name).1.starts_with(WH_PREFIX) {
            // Whatever its type: only the name matters.
            return self.whiteout();
        }
        if kind == Kind::Device {
            self.stats.devices_skipped += 1;
            return Ok(());
        }

        let meta = self.read_meta(entry)?;

        if self.name.is_empty() {
            // "./" or "/": the target directory itself.
            if kind != Kind::Dir {
                return Err(UnpackError::Refused {
                    entry: lossy(&entry.path_bytes()),
                    reason: "it names the target directory itself but is not a directory".into(),
                });
            }
            self.deferred.push(DeferredDir {
                path: Vec::new(),
                meta,
                xattrs: std::mem::take(&mut self.xattrs),
            });
            return Ok(());
        }

        let expected_size = entry.size();
        let sparse = entry_type.is_gnu_sparse();
        let stored_size = data_size(entry);
        // Resolved before the entry's own parent, which borrows the tree.
        let link_source = if kind == Kind::Hardlink {
            let raw_target = entry.link_name_bytes().unwrap_or_default();
            hardlink_source(
                self.tree.root.as_fd(),
                &self.name,
                &raw_target,
                &mut self.link,
                &mut self.unlock,
            )?
        } else {
            None
        };
        let keep_link = kind == Kind::Dir
            && self.opts.keep_directory_symlinks
            && is_link_to_dir(self.tree.root.as_fd(), &self.name);
        let (parent, base) = split(&self.name);
        let mut removed = false;
        let mut parent_id = None;
        let result = {
            let dir = self
                .tree
                .dir(parent, &mut self.unlock)
                .map_err(|e| fs_err("create parent directory of", &self.name, e))?;
            if self.layer {
                parent_id = Some(
                    dir_id(dir)
                        .map_err(|e| fs_err("look up parent directory of", &self.name, e))?,
                );
                // A lower directory gives way to a non-directory with all its
                // contents (a hard link to itself changes nothing).
                let keeps_itself = kind == Kind::Hardlink && link_source.is_none();
                if kind != Kind::Dir && !keeps_itself && is_dir_at(dir, base) {
                    removed = true;
                    remove_tree(dir, base, &self.name, None, false, &mut self.unlock)?;
                }
            }
            match kind {
                Kind::Dir if keep_link => Ok(()),
                Kind::Dir => make_dir(dir, base, &self.name, &mut removed).map(|()| {
                    self.deferred.push(DeferredDir {
                        path: self.name.clone(),
                        meta,
                        xattrs: std::mem::take(&mut self.xattrs),
                    });
                }),
                Kind::File => create_file(dir, base, &self.name, &mut removed)
                    .and_then(|mut file| {
                        // Checked once what it replaces is gone.
                        self.space.check(file.as_fd(), &self.name, stored_size)?;
                        let (buf, name) = (&mut self.buf, &self.name);
                        let written = if sparse {
                            copy_sparse(&file, entry, buf, name)?
                        } else {
                            copy_data(&mut file, entry, buf, name)?
                        };
                        Ok((file, written))
                    })
                    .map_err(|e| self.space.exhausted(e, stored_size))
                    .and_then(|(file, written)| {
                        check_size(&self.name, written, expected_size)?;
                        Ok((file, written))
                    })
                    .and_then(|(file, written)| {
                        self.space.wrote(if sparse { stored_size } else { written });
                        self.stats.bytes += written;
                        apply_meta(
                            &file,
                            &meta,
                            &self.xattrs,
                            self.opts,
                            &self.name,
                            &mut self.stats,
                        )
                    }),
                Kind::Symlink => {
                    let target = entry.link_name_bytes().unwrap_or_default();
                    if target.is_empty() {
                        Err(UnpackError::Refused {
                            entry: display_name(&self.name),
                            reason: "symlink with an empty target".into(),
                        })
                    } else {
                        replacing(
                            dir,
                            base,
                            &self.name,
                            &mut removed,
                            "create symlink",
                            || symlinkat(target.as_ref(), dir, base),
                        )
                        .and_then(|()| {
                            self.stats.xattrs_skipped += self.xattrs.len() as u64;
                            symlink_meta(dir, base, &meta, self.opts, &self.name)
                        })
                    }
                }
                Kind::Fifo => replacing(dir, base, &self.name, &mut removed, "create FIFO", || {
                    mkfifoat(dir, base, Mode::S_IRUSR | Mode::S_IWUSR)
                })
                .and_then(|()| {
                    let fd = openat(
                        dir,
                        base,
                        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| fs_err("open FIFO", &self.name, e))?;
                    apply_meta(
                        &File::from(fd),
                        &meta,
                        &self.xattrs,
                        self.opts,
                        &self.name,
                        &mut self.stats,
                    )
                }),
                Kind::Hardlink => match &link_source {
                    Some(source) => {
                        hardlink(source, &self.link, dir, base, &self.name, &mut removed)
                    }
                    None => Ok(()),
                },
                Kind::Device | Kind::Ignore => Ok(()),
            }
        };
        if removed {
            // Something was unlinked: a cached parent may have been reached
            // through it.
            self.tree.invalidate();
        }
        if let (Ok(()), Some(id)) = (&result, parent_id) {
            self.created.entry(id).or_default().insert(base.to_vec());
        }
        result
    }

    /// Layer mode: applies whiteout entry `self.name` (`.wh.NAME` or
    /// `.wh..wh..opq`) to what the lower layers left.
    fn whiteout(&mut self) -> Result<(), UnpackError> {
        let (parent, base) = split(&self.name);
        let opaque = base == WH_OPAQUE;
        let target: &[u8] = if opaque {
            b"."
        } else if base.starts_with(WH_META) {
            return Ok(());
        } else {
            &base[WH_PREFIX.len()..]
        };
        if !opaque && matches!(target, b"" | b"." | b"..") {
            return Err(UnpackError::Refused {
                entry: display_name(&self.name),
                reason: format!(
                    "whiteout for {:?}, which is not a name in its directory",
                    lossy(target)
                ),
            });
        }
        let mut shown = parent.to_vec();
        if !opaque {
            if !shown.is_empty() {
                shown.push(b'/');
            }
            shown.extend_from_slice(target);
        }
        let dir = self
            .tree
            .lookup(parent, false, &mut self.unlock)
            .map_err(|e| fs_err("open parent directory of", &self.name, e))?;
        let Some(dir) = dir else {
            // Nothing there to remove.
            return Ok(());
        };
        let result = remove_tree(
            dir,
            target,
            &shown,
            Some(&self.created),
            opaque,
            &mut self.unlock,
        );
        self.tree.invalidate();
        result
    }

    /// Reads mode, owner and mtime from the header (and PAX records), and
    /// collects `SCHILY.xattr.*` records into `self.xattrs`.
    fn read_meta<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, UnpackError> {
        let corrupt = |err: io::Error, name: &[u8]| UnpackError::Corrupt {
            entry: display_name(name),
            err,
        };
        self.xattrs.clear();
        let mut pax_mtime = None;
        if let Some(exts) = entry.pax_extensions().map_err(|e| corrupt(e, &self.name))? {
            for ext in exts {
                let ext = ext.map_err(|e| corrupt(e, &self.name))?;
                let key = ext.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                    self.xattrs
                        .push((attr.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    pax_mtime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| corrupt(e, &self.name))?;
        let uid = header.uid().map_err(|e| corrupt(e, &self.name))?;
        let gid = header.gid().map_err(|e| corrupt(e, &self.name))?;
        let mtime = match pax_mtime {
            Some(t) => t,
            None => {
                let secs = header.mtime().map_err(|e| corrupt(e, &self.name))?;
                TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0)
            }
        };
        let id = |id: u64, what: &str| {
            u32::try_from(id).map_err(|_| UnpackError::Refused {
                entry: display_name(&self.name),
                reason: format!("{what} {id} is out of range"),
            })
        };
        Ok(Meta {
            mode: mode & 0o7777,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
        })
    }

    /// Moves a single top-level rootfs directory up (not in layer mode),
    /// then applies deferred directory metadata, deepest first, and puts
    /// back the modes of directories that were made writable.
    fn finish(mut self) -> Result<Stats, UnpackError> {
        self.tree.invalidate();
        let root = self.tree.root.as_fd();
        let strip = if self.layer {
            None
        } else {
            strip_toplevel_at(root)?
        };
        if let Some((prefix, dropped)) = strip {
            self.stats.dropped = dropped.iter().map(|d| lossy(d)).collect();
            // Re-home deferred paths: the top directory's own metadata now
            // belongs to the target directory.
            self.deferred.retain_mut(|d| {
                if d.path == prefix {
                    d.path.clear();
                    true
                } else if d.path.starts_with(&prefix) && d.path.get(prefix.len()) == Some(&b'/') {
                    d.path.drain(..=prefix.len());
                    true
                } else {
                    d.path.is_empty()
                }
            });
            self.stats.stripped_prefix = Some(lossy(&prefix));
        }

        // Deepest first, so a directory made read-only cannot block its
        // children; stable, so a later duplicate entry wins.
        self.deferred.sort_by_key(|d| {
            Reverse(d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()))
        });
        // Directories given their mode here, whose mode is not restored.
        let mut applied = HashSet::new();
        for d in &self.deferred {
            let open = || {
                if d.path.is_empty() {
                    openat(
                        root,
                        ".",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                } else {
                    resolve(
                        root,
                        &d.path,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                    )
                }
            };
            let mut opened = open();
            if let (Err(Errno::EACCES), Some(u)) = (&opened, self.unlock.as_mut()) {
                // A lower layer's directory this layer did not write to.
                u.chain(root, &d.path);
                opened = open();
            }
            let fd = match opened {
                Ok(fd) => fd,
                // Replaced or removed by a later entry: nothing to apply.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(fs_err("open directory", &d.path, e)),
            };
            if self.unlock.is_some() {
                let id = dir_id(fd.as_fd()).map_err(|e| fs_err("open directory", &d.path, e))?;
                applied.insert(id);
            }
            apply_meta(
                &File::from(fd),
                &d.meta,
                &d.xattrs,
                self.opts,
                &d.path,
                &mut self.stats,
            )?;
        }
        if let Some(u) = self.unlock.take() {
            u.restore(&applied)?;
        }
        Ok(self.stats)
    }
}

/// Normalizes an archive path into `out`: leading `/` and `./`, empty and `.`
/// components are dropped. Fails on a `..` component.
fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    out.clear();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(())
}

/// Splits a normalized path into (parent, final component).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn display_name(name: &[u8]) -> String {
    if name.is_empty() {
        ".".into()
    } else {
        lossy(name)
    }
}

fn fs_err(action: &'static str, path: &[u8], e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Fs {
        action,
        path: display_name(path),
        err: e.into(),
    }
}

/// Parses a PAX time ("1700000000" or "1700000000.123456789", maybe negative).
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    let mut digits = 0;
    for c in frac.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        if digits < 9 {
            nanos = nanos * 10 + i64::from(c - b'0');
            digits += 1;
        }
    }
    while digits < 9 {
        nanos *= 10;
        digits += 1;
    }
    Some(if !neg {
        TimeSpec::new(secs, nanos)
    } else if nanos == 0 {
        TimeSpec::new(-secs, 0)
    } else {
        TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

/// Removes whatever is at `base` in `dir` so a non-directory can take its
/// place: anything but a directory is unlinked; a directory only if empty.
fn remove_existing(dir: BorrowedFd<'_>, base: &[u8], name: &[u8]) -> Result<(), UnpackError> {
    match unlinkat(dir, base, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => match unlinkat(dir, base, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Err(UnpackError::Refused {
                entry: display_name(name),
                reason: "it would replace a directory that is not empty".into(),
            }),
            Err(e) => Err(fs_err("remove existing", name, e)),
        },
        Err(e) => Err(fs_err("remove existing", name, e)),
    }
}

/// Runs `create`; if the name exists, removes it (see [`remove_existing`]) and
/// runs `create` once more. `create` must never follow or write through an
/// existing entry (O_EXCL and friends).
fn replacing<T>(
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &[u8],
    removed: &mut bool,
    action: &'static str,
    mut create: impl FnMut() -> nix::Result<T>,
) -> Result<T, UnpackError> {
    match create() {
        Ok(v) => Ok(v),
        Err(Errno::EEXIST) => {
            remove_existing(dir, base, name)?;
            *removed = true;
            create().map_err(|e| fs_err(action, name, e))
        }
        Err(e) => Err(fs_err(action, name, e)),
    }
}

fn is_dir_at(dir: BorrowedFd<'_>, base: &[u8]) -> bool {
    fstatat(dir, base, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false)
}

/// Whether `name` is a symlink that leads, resolved inside `root`, to a directory.
fn is_link_to_dir(root: BorrowedFd<'_>, name: &[u8]) -> bool {
    let is_link = resolve(root, name, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .and_then(|fd| fstat(fd.as_fd()))
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK);
    is_link && resolve(root, name, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
}

/// Creates directory `base` (0700 for now); an existing directory is kept,
/// anything else there is replaced.
fn make_dir(
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &[u8],
    removed: &mut bool,
) -> Result<(), UnpackError> {
    match mkdirat(dir, base, Mode::S_IRWXU) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) if is_dir_at(dir, base) => Ok(()),
        Err(Errno::EEXIST) => {
            remove_existing(dir, base, name)?;
            *removed = true;
            mkdirat(dir, base, Mode::S_IRWXU).map_err(|e| fs_err("create directory", name, e))
        }
        Err(e) => Err(fs_err("create directory", name, e)),
    }
}

/// Creates regular file `base` afresh (empty, for [`copy_data`] or
/// [`copy_sparse`]).
fn create_file(
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &[u8],
    removed: &mut bool,
) -> Result<File, UnpackError> {
    let fd = replacing(dir, base, name, removed, "create file", || {
        openat(
            dir,
            base,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
    })?;
    Ok(File::from(fd))
}

/// Copies an entry's data into `file`. Returns the number of bytes written.
fn copy_data<R: Read>(
    file: &mut File,
    data: &mut R,
    buf: &mut [u8],
    name: &[u8],
) -> Result<u64, UnpackError> {
    let mut written = 0u64;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(UnpackError::Corrupt {
                    entry: display_name(name),
                    err,
                })
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| fs_err("write", name, e))?;
        written += n as u64;
    }
    Ok(written)
}

/// Copies the data of a sparse member (the tar crate reads its holes as
/// zeros) into `file`, leaving a hole wherever a whole [`HOLE_BLOCK`] is
/// zero, holes of the archive and zeros stored in its data alike. The file
/// gets its full size at the end, so a trailing hole stays one too. Returns
/// that size.
fn copy_sparse<R: Read>(
    file: &File,
    data: &mut R,
    buf: &mut [u8],
    name: &[u8],
) -> Result<u64, UnpackError> {
    use std::os::unix::fs::FileExt;
    let block_end = |pos: usize, n: usize| n.min(pos + HOLE_BLOCK);
    let mut offset = 0u64;
    loop {
        // A full buffer each time (but at the end), so blocks stay aligned.
        let mut n = 0;
        while n < buf.len() {
            match data.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(UnpackError::Corrupt {
                        entry: display_name(name),
                        err,
                    })
                }
            }
        }
        let chunk = &buf[..n];
        let mut pos = 0;
        while pos < n {
            let start = pos;
            while pos < n && !all_zero(&chunk[pos..block_end(pos, n)]) {
                pos = block_end(pos, n);
            }
            if pos > start {
                file.write_all_at(&chunk[start..pos], offset + start as u64)
                    .map_err(|e| fs_err("write", name, e))?;
            }
            while pos < n && all_zero(&chunk[pos..block_end(pos, n)]) {
                pos = block_end(pos, n);
            }
        }
        offset += n as u64;
        if n < buf.len() {
            break;
        }
    }
    file.set_len(offset).map_err(|e| fs_err("write", name, e))?;
    Ok(offset)
}

/// Whether `block` holds only zero bytes (in 64-byte steps the compiler
/// vectorizes, stopping at the first that is not).
fn all_zero(block: &[u8]) -> bool {
    let mut chunks = block.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Checks the written size against the header (the tar crate's entry reader
/// just stops at the end of a truncated stream).
fn check_size(name: &[u8], written: u64, expected: u64) -> Result<(), UnpackError> {
    if written < expected {
        return Err(UnpackError::Corrupt {
            entry: display_name(name),
            err: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file data ends after {written} of {expected} bytes"),
            ),
        });
    }
    Ok(())
}

/// Maps a chown failure; EINVAL means an id has no mapping in this user
/// namespace, and a uid-only retry tells which one.
fn chown_error(
    e: Errno,
    meta: &Meta,
    name: &[u8],
    uid_only: impl FnOnce() -> nix::Result<()>,
) -> UnpackError {
    if e == Errno::EINVAL {
        let (kind, id) = if uid_only().is_err() {
            ("uid", meta.uid)
        } else {
            ("gid", meta.gid)
        };
        UnpackError::IdNotMapped {
            path: display_name(name),
            kind,
            id,
        }
    } else {
        fs_err("set owner of", name, e)
    }
}

/// Owner (if preserved), full mode, xattrs, then mtime, on an open fd. chown
/// clears setuid/setgid and file capabilities, hence this order.
fn apply_meta(
    file: &File,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    opts: &Options,
    name: &[u8],
    stats: &mut Stats,
) -> Result<(), UnpackError> {
    if opts.preserve_owner {
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        fchown(file, Some(uid), Some(gid))
            .map_err(|e| chown_error(e, meta, name, || fchown(file, Some(uid), None)))?;
    }
    fchmod(file, Mode::from_bits_truncate(meta.mode))
        .map_err(|e| fs_err("set permissions of", name, e))?;
    for (attr, value) in xattrs {
        if skip_xattr(attr) || file.set_xattr(OsStr::from_bytes(attr), value).is_err() {
            stats.xattrs_skipped += 1;
        }
    }
    futimens(file, &TimeSpec::UTIME_OMIT, &meta.mtime)
        .map_err(|e| fs_err("set modification time of", name, e))
}

/// Xattrs never restored: they are host-policy, not image content.
fn skip_xattr(attr: &[u8]) -> bool {
    attr.starts_with(b"trusted.") || attr == b"security.selinux"
}

/// lchown (if preserved) and lutimes on a symlink; symlinks have no mode.
fn symlink_meta(
    dir: BorrowedFd<'_>,
    base: &[u8],
    meta: &Meta,
    opts: &Options,
    name: &[u8],
) -> Result<(), UnpackError> {
    if opts.preserve_owner {
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        let flags = AtFlags::AT_SYMLINK_NOFOLLOW;
        fchownat(dir, base, Some(uid), Some(gid), flags).map_err(|e| {
            chown_error(e, meta, name, || {
                fchownat(dir, base, Some(uid), None, flags)
            })
        })?;
    }
    utimensat(
        dir,
        base,
        &TimeSpec::UTIME_OMIT,
        &meta.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| fs_err("set modification time of", name, e))
}

/// Checks a hard link target (an archive path) and opens its parent
/// directory inside root. Leaves the normalized target in `target`. Returns
/// None for a link to the entry itself, which needs nothing done.
fn hardlink_source(
    root: BorrowedFd<'_>,
    name: &[u8],
    raw_target: &[u8],
    target: &mut Vec<u8>,
    unlock: &mut Option<Unlocker>,
) -> Result<Option<OwnedFd>, UnpackError> {
    let refuse = |reason: String| UnpackError::Refused {
        entry: display_name(name),
        reason,
    };
    if normalize(raw_target, target).is_err() {
        return Err(refuse(format!(
            "hard link target {:?} leaves the target (it has a \"..\" component)",
            lossy(raw_target)
        )));
    }
    if target.is_empty() {
        return Err(refuse(format!(
            "hard link to {:?}: hard links to directories are refused",
            lossy(raw_target)
        )));
    }
    if target.as_slice() == name {
        // A link to itself (some archivers emit these): nothing to do.
        return Ok(None);
    }
    let (tparent, tbase) = split(target);
    let tparent = if tparent.is_empty() {
        &b"."[..]
    } else {
        tparent
    };
    let mut opened = resolve(root, tparent, OFlag::O_PATH | OFlag::O_DIRECTORY);
    if let (Err(Errno::EACCES), Some(u)) = (&opened, unlock.as_mut()) {
        u.chain(root, tparent);
        opened = resolve(root, tparent, OFlag::O_PATH | OFlag::O_DIRECTORY);
    }
    let tdir = match opened {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
            return Err(link_missing(name, target))
        }
        Err(e) => return Err(fs_err("look up hard link target", target, e)),
    };
    if let Some(u) = unlock {
        // linkat must search it.
        u.writable(tdir.as_fd(), tparent);
    }
    if is_dir_at(tdir.as_fd(), tbase) {
        return Err(refuse(format!(
            "hard link to {:?}: hard links to directories are refused",
            display_name(target)
        )));
    }
    Ok(Some(tdir))
}

fn link_missing(name: &[u8], target: &[u8]) -> UnpackError {
    UnpackError::Refused {
        entry: display_name(name),
        reason: format!(
            "hard link target {:?} does not exist (it must come earlier in the archive)",
            display_name(target)
        ),
    }
}

/// Creates hard link `base` in `dir` to `target` (normalized, its parent
/// already opened as `source`). The target itself is linked, never what it
/// points to.
fn hardlink(
    source: &OwnedFd,
    target: &[u8],
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &[u8],
    removed: &mut bool,
) -> Result<(), UnpackError> {
    let (_, tbase) = split(target);
    let link = || linkat(source.as_fd(), tbase, dir, base, AtFlags::empty());
    let result = match link() {
        Err(Errno::EEXIST) => {
            remove_existing(dir, base, name)?;
            *removed = true;
            link()
        }
        r => r,
    };
    match result {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(link_missing(name, target)),
        Err(e) => Err(UnpackError::Fs {
            action: "create hard link",
            path: format!("{} -> {}", display_name(name), display_name(target)),
            err: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use tar::{Builder, Header};

    /// A scratch area: `outside/` holds `root/` (the target) and is checked
    /// for anything escaping.
    struct Scratch {
        _tmp: tempfile::TempDir,
        outside: PathBuf,
        root: PathBuf,
    }

    impl Scratch {
        fn new() -> Scratch {
            let tmp = tempfile::tempdir().unwrap();
            let outside = tmp.path().join("outside");
            let root = outside.join("root");
            fs::create_dir_all(&root).unwrap();
            Scratch {
                _tmp: tmp,
                outside,
                root,
            }
        }

        /// Names in `outside` other than `root`.
        fn escaped(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "root" && n != "file")
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            // Make read-only directories removable again.
            fn walk(p: &Path) {
                if let Ok(md) = fs::symlink_metadata(p) {
                    if md.is_dir() {
                        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
                        if let Ok(rd) = fs::read_dir(p) {
                            for e in rd.flatten() {
                                walk(&e.path());
                            }
                        }
                    }
                }
            }
            walk(&self.outside);
        }
    }

    const MTIME: u64 = 1_600_000_000;

    fn opts() -> Options {
        Options {
            preserve_owner: false,
            ..Default::default()
        }
    }

    fn run(tar: &[u8], root: &Path) -> Result<Stats, UnpackError> {
        unpack(tar, root, &opts(), &mut |_| {})
    }

    /// A GNU header with the name written raw (no validation), so hostile
    /// names can be built.
    fn raw_header(name: &[u8], kind: EntryType, mode: u32, size: u64, link: &[u8]) -> Header {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    /// Builds archives entry by entry, with raw names.
    struct Tar(Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(Builder::new(Vec::new()))
        }
        fn dir(mut self, name: &str, mode: u32) -> Tar {
            let h = raw_header(name.as_bytes(), EntryType::Directory, mode, 0, b"");
            self.0.append(&h, io::empty()).unwrap();
            self
        }
        fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Tar {
            let h = raw_header(
                name.as_bytes(),
                EntryType::Regular,
                mode,
                data.len() as u64,
                b"",
            );
            self.0.append(&h, data).unwrap();
            self
        }
        fn symlink(mut self, name: &str, target: &str) -> Tar {
            let h = raw_header(
                name.as_bytes(),
                EntryType::Symlink,
                0o777,
                0,
                target.as_bytes(),
            );
            self.0.append(&h, io::empty()).unwrap();
            self
        }
        fn hardlink(mut self, name: &str, target: &str) -> Tar {
            let h = raw_header(
                name.as_bytes(),
                EntryType::Link,
                0o644,
                0,
                target.as_bytes(),
            );
            self.0.append(&h, io::empty()).unwrap();
            self
        }
        fn special(mut self, name: &str, kind: EntryType) -> Tar {
            let mut h = raw_header(name.as_bytes(), kind, 0o644, 0, b"");
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }
        /// A GNU sparse member (type `S`) of apparent size `size` holding
        /// `regions` (offset, data) and holes elsewhere. At most four regions
        /// (no extension headers); all but the last a multiple of 512 long;
        /// the last must end at `size` (GNU tar ends the map of a file with
        /// a trailing hole with an empty region there).
        fn sparse(mut self, name: &str, size: u64, regions: &[(u64, &[u8])]) -> Tar {
            fn octal(field: &mut [u8; 12], v: u64) {
                field.copy_from_slice(format!("{v:011o}\0").as_bytes());
            }
            assert!(regions.len() <= 4);
            let data: Vec<u8> = regions.iter().flat_map(|r| r.1.to_vec()).collect();
            let mut h = raw_header(
                name.as_bytes(),
                EntryType::GNUSparse,
                0o640,
                data.len() as u64,
                b"",
            );
            let gnu = h.as_gnu_mut().unwrap();
            for (slot, (off, bytes)) in gnu.sparse.iter_mut().zip(regions) {
                octal(&mut slot.offset, *off);
                octal(&mut slot.numbytes, bytes.len() as u64);
            }
            octal(&mut gnu.realsize, size);
            h.set_cksum();
            self.0.append(&h, data.as_slice()).unwrap();
            self
        }
        /// A PAX extended header for the next entry.
        fn pax(mut self, records: &[(&str, &[u8])]) -> Tar {
            let mut data = Vec::new();
            for (k, v) in records {
                let body_len = 1 + k.len() + 1 + v.len() + 1;
                let mut len = body_len + 1;
                while len.to_string().len() + body_len != len {
                    len = len.to_string().len() + body_len;
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            let h = raw_header(
                b"PaxHeader",
                EntryType::XHeader,
                0o644,
                data.len() as u64,
                b"",
            );
            self.0.append(&h, data.as_slice()).unwrap();
            self
        }
        fn build(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn mtime_of(p: &Path) -> i64 {
        fs::symlink_metadata(p).unwrap().mtime()
    }

    #[test]
    fn detects_compression_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"usr/bi"), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn normalizes_names() {
        let mut out = Vec::new();
        for (raw, want) in [
            ("./usr/bin/x", "usr/bin/x"),
            ("/abs/x", "abs/x"),
            ("//./a//./b/", "a/b"),
            ("./", ""),
            (".", ""),
            ("/", ""),
        ] {
            normalize(raw.as_bytes(), &mut out).unwrap();
            assert_eq!(out, want.as_bytes(), "{raw}");
        }
        for raw in ["../x", "a/../b", "a/..", "/.."] {
            assert!(normalize(raw.as_bytes(), &mut out).is_err(), "{raw}");
        }
    }

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (-2, 750_000_000));
        assert!(parse_pax_time(b"x1").is_none());
    }

    #[test]
    fn extracts_a_normal_tree() {
        let s = Scratch::new();
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let tar = Tar::new()
            .dir("./", 0o755)
            .dir("./usr/", 0o755)
            .dir("./usr/bin/", 0o755)
            .file("./usr/bin/tool", 0o755, b"#!/bin/sh\n")
            .file("./usr/bin/su", 0o4755, b"setuid")
            .file("./usr/bin/big", 0o644, &big)
            .file("./usr/bin/empty", 0o600, b"")
            .symlink("./bin", "usr/bin")
            .symlink("./abs", "/usr/bin/tool")
            .hardlink("./usr/bin/tool2", "./usr/bin/tool")
            .special("./usr/fifo", EntryType::Fifo)
            .dir("./etc/", 0o750)
            .build();
        let stats = run(&tar, &s.root).unwrap();
        let r = &s.root;
        assert_eq!(stats.entries, 12);
        assert_eq!(stats.bytes, (10 + 6 + big.len()) as u64);
        assert_eq!(stats.devices_skipped, 0);
        assert_eq!(stats.stripped_prefix, None);
        assert_eq!(fs::read(r.join("usr/bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::read(r.join("usr/bin/big")).unwrap(), big);
        assert_eq!(fs::read(r.join("usr/bin/empty")).unwrap(), b"");
        assert_eq!(mode_of(&r.join("usr/bin/tool")), 0o755);
        assert_eq!(mode_of(&r.join("usr/bin/su")), 0o4755);
        assert_eq!(mode_of(&r.join("usr/bin/empty")), 0o600);
        assert_eq!(mode_of(&r.join("etc")), 0o750);
        assert_eq!(mode_of(r), 0o755);
        assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(
            fs::read_link(r.join("abs")).unwrap(),
            Path::new("/usr/bin/tool")
        );
        let a = fs::metadata(r.join("usr/bin/tool")).unwrap();
        let b = fs::metadata(r.join("usr/bin/tool2")).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        assert_eq!(a.nlink(), 2);
        assert!(fs::symlink_metadata(r.join("usr/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(mode_of(&r.join("usr/fifo")), 0o644);
        for p in [
            "usr/bin/tool",
            "usr/bin/big",
            "usr",
            "usr/bin",
            "etc",
            "bin",
            "usr/fifo",
            "",
        ] {
            assert_eq!(mtime_of(&r.join(p)), MTIME as i64, "mtime of {p:?}");
        }
    }

    #[test]
    fn creates_missing_parents() {
        let s = Scratch::new();
        let tar = Tar::new().file("a/b/c/f", 0o644, b"x").build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join("a/b/c/f")).unwrap(), b"x");
        assert!(s.root.join("a/b").is_dir());
    }

    #[test]
    fn long_names_and_pax_records() {
        let s = Scratch::new();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(130));
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o640);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, &long, &b"long"[..]).unwrap();
        let mut tar = Tar(b)
            .pax(&[
                ("mtime", b"1500000000.25"),
                ("SCHILY.xattr.user.devbox", b"v1"),
                ("SCHILY.xattr.trusted.x", b"no"),
                ("SCHILY.xattr.security.selinux", b"no"),
            ])
            .file("px", 0o644, b"pax")
            .build();
        // The archive ends without its two zero blocks; accepted like GNU tar.
        tar.truncate(tar.len() - 1024);
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join(&long)).unwrap(), b"long");
        assert_eq!(mode_of(&s.root.join(&long)), 0o640);
        let px = s.root.join("px");
        let md = fs::metadata(&px).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 250_000_000));
        // trusted.* and security.selinux are always skipped; user.* unless
        // the file system refuses it.
        match xattr::get(&px, "user.devbox").unwrap() {
            Some(v) => {
                assert_eq!(v, b"v1");
                assert_eq!(stats.xattrs_skipped, 2);
            }
            None => assert_eq!(stats.xattrs_skipped, 3),
        }
        assert_eq!(xattr::get(&px, "trusted.x").ok().flatten(), None);
    }

    #[test]
    fn refuses_dotdot_entry() {
        let s = Scratch::new();
        let tar = Tar::new()
            .file("ok", 0o644, b"fine")
            .file("../x", 0o644, b"evil")
            .build();
        let err = run(&tar, &s.root).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("refusing archive entry \"../x\"") && msg.contains("leaves the target"),
            "{msg}"
        );
        assert!(matches!(err, UnpackError::Refused { .. }));
        assert_eq!(s.escaped(), Vec::<String>::new());
        let tar = Tar::new().file("a/../../y", 0o644, b"evil").build();
        assert!(matches!(
            run(&tar, &s.root),
            Err(UnpackError::Refused { .. })
        ));
        assert_eq!(s.escaped(), Vec::<String>::new());
    }

    #[test]
    fn absolute_names_land_inside() {
        let s = Scratch::new();
        let tar = Tar::new().file("/abs/x", 0o644, b"in").build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join("abs/x")).unwrap(), b"in");
        assert!(!Path::new("/abs/x").exists() || fs::read("/abs/x").unwrap() != b"in");
    }

    #[test]
    fn symlinked_parents_resolve_inside_root() {
        let outside_target = |s: &Scratch| s.outside.to_string_lossy().into_owned();
        for target in ["/", "../../..", "../../../../../../..", "/.."] {
            let s = Scratch::new();
            let tar = Tar::new()
                .symlink("evil", target)
                .file("evil/pwned", 0o644, b"gotcha")
                .dir("evil/sub/", 0o755)
                .file("evil/sub/deep", 0o644, b"deep")
                .build();
            run(&tar, &s.root).unwrap();
            assert_eq!(
                fs::read(s.root.join("pwned")).unwrap(),
                b"gotcha",
                "{target}"
            );
            assert_eq!(fs::read(s.root.join("sub/deep")).unwrap(), b"deep");
            assert_eq!(s.escaped(), Vec::<String>::new(), "{target}");
            assert!(!s.outside.parent().unwrap().join("pwned").exists());
            assert!(!Path::new("/pwned").exists());
        }
        // A symlink naming a real outside directory by its absolute path
        // resolves to that path *inside* root, where it does not exist.
        let s = Scratch::new();
        let tar = Tar::new()
            .symlink("out", &outside_target(&s))
            .file("out/pwned", 0o644, b"gotcha")
            .build();
        let err = run(&tar, &s.root).unwrap_err();
        assert!(err.to_string().contains("out/pwned"), "{err}");
        assert_eq!(s.escaped(), Vec::<String>::new());
    }

    #[test]
    fn file_replaces_symlink_instead_of_writing_through() {
        let s = Scratch::new();
        let victim = s.outside.join("file");
        fs::write(&victim, b"original").unwrap();
        let tar = Tar::new()
            .symlink("link", &victim.to_string_lossy())
            .file("link", 0o644, b"replaced")
            .symlink("rel", "../file")
            .file("rel", 0o644, b"replaced")
            .build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        for n in ["link", "rel"] {
            let p = s.root.join(n);
            assert!(fs::symlink_metadata(&p).unwrap().is_file());
            assert_eq!(fs::read(&p).unwrap(), b"replaced");
        }
    }

    #[test]
    fn replaces_existing_entries() {
        let s = Scratch::new();
        let tar = Tar::new()
            .file("f", 0o644, b"one")
            .file("f", 0o600, b"two")
            .file("d", 0o644, b"file first")
            .dir("d/", 0o755)
            .file("d/x", 0o644, b"x")
            .dir("e/", 0o755)
            .symlink("e", "target")
            .dir("kept/", 0o700)
            .file("kept/a", 0o644, b"a")
            .dir("kept/", 0o711)
            .build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join("f")).unwrap(), b"two");
        assert_eq!(mode_of(&s.root.join("f")), 0o600);
        assert_eq!(fs::read(s.root.join("d/x")).unwrap(), b"x");
        assert_eq!(
            fs::read_link(s.root.join("e")).unwrap(),
            Path::new("target")
        );
        assert_eq!(fs::read(s.root.join("kept/a")).unwrap(), b"a");
        assert_eq!(mode_of(&s.root.join("kept")), 0o711);

        let s = Scratch::new();
        let tar = Tar::new()
            .dir("d/", 0o755)
            .file("d/x", 0o644, b"x")
            .file("d", 0o644, b"clobber")
            .build();
        let err = run(&tar, &s.root).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(fs::read(s.root.join("d/x")).unwrap(), b"x");
    }

    #[test]
    fn stale_parent_cache_is_not_used() {
        // "a" is a symlink to "x"; "a/b" is cached as x/b; then "a" becomes a
        // plain file, so "a/b/g" must fail rather than land in x/b.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("x/", 0o755)
            .dir("x/b/", 0o755)
            .symlink("a", "x")
            .file("a/b/f", 0o644, b"f")
            .file("a", 0o644, b"now a file")
            .file("a/b/g", 0o644, b"g")
            .build();
        assert!(run(&tar, &s.root).is_err());
        assert_eq!(fs::read(s.root.join("x/b/f")).unwrap(), b"f");
        assert!(!s.root.join("x/b/g").exists());
    }

    #[test]
    fn hardlinks_are_contained() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", 0o644, b"root:x:0:0")
            .hardlink("h", "../../etc/passwd")
            .build();
        let err = run(&tar, &s.root).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"h\"") && msg.contains("../../etc/passwd"),
            "{msg}"
        );
        assert!(!s.root.join("h").exists());

        // Absolute targets resolve inside root, also through symlinks.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", 0o644, b"root:x:0:0")
            .symlink("evil", "/")
            .hardlink("h", "/etc/passwd")
            .hardlink("h2", "evil/etc/passwd")
            .build();
        run(&tar, &s.root).unwrap();
        let a = fs::metadata(s.root.join("etc/passwd")).unwrap().ino();
        assert_eq!(fs::metadata(s.root.join("h")).unwrap().ino(), a);
        assert_eq!(fs::metadata(s.root.join("h2")).unwrap().ino(), a);
        assert_eq!(fs::metadata(s.root.join("etc/passwd")).unwrap().nlink(), 3);

        // A link to a symlink links the symlink itself, not its target.
        let s = Scratch::new();
        let victim = s.outside.join("file");
        fs::write(&victim, b"original").unwrap();
        let tar = Tar::new()
            .symlink("s", &victim.to_string_lossy())
            .hardlink("h", "s")
            .build();
        run(&tar, &s.root).unwrap();
        assert!(fs::symlink_metadata(s.root.join("h"))
            .unwrap()
            .file_type()
            .is_symlink());

        // Missing targets and directories are refused, naming both paths.
        let s = Scratch::new();
        let tar = Tar::new().hardlink("h", "nope/missing").build();
        let msg = run(&tar, &s.root).unwrap_err().to_string();
        assert!(
            msg.contains("\"h\"") && msg.contains("nope/missing"),
            "{msg}"
        );
        let tar = Tar::new().dir("d/", 0o755).hardlink("h", "d").build();
        let msg = run(&tar, &s.root).unwrap_err().to_string();
        assert!(msg.contains("directories are refused"), "{msg}");
    }

    #[test]
    fn devices_are_skipped_and_counted() {
        let s = Scratch::new();
        let tar = Tar::new()
            .special("dev/null", EntryType::Char)
            .special("dev/sda", EntryType::Block)
            .file("dev/keep", 0o644, b"k")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.devices_skipped, 2);
        assert_eq!(stats.entries, 3);
        assert!(!s.root.join("dev/null").exists());
        assert!(!s.root.join("dev/sda").exists());
    }

    #[test]
    fn read_only_directories_end_read_only() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("ro/", 0o555)
            .file("ro/f", 0o444, b"data")
            .dir("ro/sub/", 0o500)
            .file("ro/sub/g", 0o400, b"g")
            .build();
        run(&tar, &s.root).unwrap();
        assert_eq!(mode_of(&s.root.join("ro")), 0o555);
        assert_eq!(mode_of(&s.root.join("ro/sub")), 0o500);
        assert_eq!(mode_of(&s.root.join("ro/f")), 0o444);
        assert_eq!(fs::read(s.root.join("ro/sub/g")).unwrap(), b"g");
        assert_eq!(mtime_of(&s.root.join("ro")), MTIME as i64);
    }

    #[test]
    fn strips_single_rootfs_directory() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .dir("root.x86_64/usr/bin/", 0o555)
            .file("root.x86_64/usr/bin/sh", 0o755, b"sh")
            .symlink("root.x86_64/bin", "usr/bin")
            .dir("root.x86_64/root.x86_64/", 0o700)
            .file("root.x86_64/root.x86_64/same-name", 0o644, b"n")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix.as_deref(), Some("root.x86_64"));
        let r = &s.root;
        assert_eq!(fs::read(r.join("etc/os-release")).unwrap(), b"ID=arch");
        assert_eq!(fs::read(r.join("bin/sh")).unwrap(), b"sh");
        assert_eq!(fs::read(r.join("root.x86_64/same-name")).unwrap(), b"n");
        assert_eq!(mode_of(&r.join("usr/bin")), 0o555);
        assert_eq!(mode_of(&r.join("root.x86_64")), 0o700);
        let mut names: Vec<_> = fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["bin", "etc", "root.x86_64", "usr"]);

        // A single directory that is not a rootfs stays.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("project/", 0o755)
            .file("project/README", 0o644, b"r")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix, None);
        assert!(s.root.join("project/README").exists());
        assert_eq!(strip_single_toplevel(&s.root).unwrap(), None);
    }

    #[test]
    fn the_root_is_found_beside_plain_files_as_in_the_arch_bootstrap() {
        // archiso's mkarchiso: root.x86_64/, pkglist.x86_64.txt and version at the top.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .dir("root.x86_64/usr/bin/", 0o755)
            .file("root.x86_64/usr/bin/sh", 0o755, b"sh")
            .symlink("root.x86_64/bin", "usr/bin")
            .file("root.x86_64/version", 0o644, b"inside")
            .file("pkglist.x86_64.txt", 0o644, b"bash 5.2\n")
            .file("version", 0o644, b"2026.12.01\n")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix.as_deref(), Some("root.x86_64"));
        let mut dropped = stats.dropped.clone();
        dropped.sort();
        assert_eq!(dropped, ["pkglist.x86_64.txt", "version"]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("bin/sh")).unwrap(), b"sh");
        // The root's own file of that name, not the archive's.
        assert_eq!(fs::read(r.join("version")).unwrap(), b"inside");
        assert!(!r.join("pkglist.x86_64.txt").exists());

        // Two candidate roots, or a directory beside one: nothing is guessed.
        for extra in ["other/etc/", "docs/"] {
            let s = Scratch::new();
            let mut t = Tar::new()
                .dir("root.x86_64/", 0o755)
                .dir("root.x86_64/etc/", 0o755)
                .dir("root.x86_64/usr/", 0o755);
            if extra == "other/etc/" {
                t = t.dir("other/", 0o755).dir("other/usr/", 0o755);
            }
            let tar = t.dir(extra, 0o755).build();
            let stats = run(&tar, &s.root).unwrap();
            assert_eq!(stats.stripped_prefix, None, "{extra}");
        }
        // An archive whose top is a root already is left as it is.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .dir("usr/", 0o755)
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .dir("root.x86_64/usr/", 0o755)
            .build();
        assert_eq!(run(&tar, &s.root).unwrap().stripped_prefix, None);
    }

    #[test]
    fn root_entry_must_be_a_directory() {
        let s = Scratch::new();
        let tar = Tar::new().file("./", 0o755, b"").build();
        // A regular entry named "./" is an old-style directory entry.
        run(&tar, &s.root).unwrap();
        let tar = Tar::new().symlink(".", "/etc").build();
        let msg = run(&tar, &s.root).unwrap_err().to_string();
        assert!(msg.contains("target directory itself"), "{msg}");
    }

    fn sample_tar() -> Vec<u8> {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        Tar::new()
            .dir("./", 0o755)
            .dir("./etc/", 0o755)
            .file("./etc/hostname", 0o644, b"devbox\n")
            .file("./etc/blob", 0o644, &data)
            .build()
    }

    fn unpack_file(bytes: &[u8], s: &Scratch) -> Result<Stats, UnpackError> {
        let path = s.outside.parent().unwrap().join("archive");
        fs::write(&path, bytes).unwrap();
        let (reader, counter) = decompressed_counting(File::open(&path).unwrap())?;
        let mut calls = 0;
        let stats = unpack(reader, &s.root, &opts(), &mut |_| calls += 1)?;
        assert!(calls > 0);
        assert_eq!(counter.load(Ordering::Relaxed), bytes.len() as u64);
        Ok(stats)
    }

    fn compressed(tar: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(tar).unwrap();
        vec![
            ("plain", tar.to_vec()),
            ("gzip", gz.finish().unwrap()),
            ("xz", xz.finish().unwrap()),
            ("zstd", zstd::encode_all(tar, 3).unwrap()),
        ]
    }

    #[test]
    fn decompresses_every_format() {
        let tar = sample_tar();
        for (what, bytes) in compressed(&tar) {
            let s = Scratch::new();
            let stats = unpack_file(&bytes, &s).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(stats.entries, 4, "{what}");
            assert_eq!(fs::read(s.root.join("etc/hostname")).unwrap(), b"devbox\n");
            assert_eq!(
                fs::metadata(s.root.join("etc/blob")).unwrap().len(),
                800_000
            );
        }
        // Concatenated gzip members (pigz, some mirrors) are one stream.
        let (a, b) = tar.split_at(tar.len() / 2);
        let mut both = Vec::new();
        for part in [a, b] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            both.extend(gz.finish().unwrap());
        }
        let s = Scratch::new();
        unpack_file(&both, &s).unwrap();
        assert_eq!(
            fs::metadata(s.root.join("etc/blob")).unwrap().len(),
            800_000
        );
    }

    #[test]
    fn truncated_archives_are_errors() {
        let tar = sample_tar();
        for (what, bytes) in compressed(&tar) {
            let s = Scratch::new();
            let cut = &bytes[..bytes.len() * 2 / 3];
            let err = unpack_file(cut, &s).map(|_| ()).unwrap_err();
            assert!(matches!(err, UnpackError::Corrupt { .. }), "{what}: {err}");
            assert!(err.to_string().contains("etc/blob"), "{what}: {err}");
        }
        // Cut inside a header.
        let s = Scratch::new();
        let err = run(&tar[..512 * 3 + 100], &s.root).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
        // Garbage instead of a header.
        let mut bad = tar.clone();
        bad[512 + 10] ^= 0x55;
        let err = run(&bad, &s.root).unwrap_err();
        assert!(err.to_string().contains("invalid tar header"), "{err}");
    }

    #[test]
    fn reports_target_problems() {
        let err = run(&sample_tar(), Path::new("/nonexistent/devbox-root")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot open the target directory \"/nonexistent/devbox-root\""),
            "{err}"
        );
    }

    /// Runs only as (namespace) root: owners are kept and chown does not
    /// lose the setuid bit.
    #[test]
    fn preserves_owner_when_privileged() {
        if !nix::unistd::geteuid().is_root() || !id_mapped(1234) {
            return;
        }
        let s = Scratch::new();
        let mut su = raw_header(b"su", EntryType::Regular, 0o4755, 2, b"");
        su.set_uid(1234);
        su.set_gid(1234);
        su.set_cksum();
        let mut d = raw_header(b"home/", EntryType::Directory, 0o2750, 0, b"");
        d.set_uid(1234);
        d.set_gid(1235);
        d.set_cksum();
        let mut l = raw_header(b"lnk", EntryType::Symlink, 0o777, 0, b"su");
        l.set_uid(1234);
        l.set_gid(1234);
        l.set_cksum();
        let mut b = Builder::new(Vec::new());
        b.append(&su, &b"ok"[..]).unwrap();
        b.append(&d, io::empty()).unwrap();
        b.append(&l, io::empty()).unwrap();
        let tar = b.into_inner().unwrap();
        let o = Options {
            preserve_owner: true,
            ..Default::default()
        };
        unpack(tar.as_slice(), &s.root, &o, &mut |_| {}).unwrap();
        let md = fs::metadata(s.root.join("su")).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1234, 1234, 0o4755)
        );
        let md = fs::metadata(s.root.join("home")).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1234, 1235, 0o2750)
        );
        let md = fs::symlink_metadata(s.root.join("lnk")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 1234));
    }

    /// Whether `id` appears in this process's uid map.
    fn id_mapped(id: u32) -> bool {
        let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        map.lines().any(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(id))
        })
    }

    /// Runs only as root of a user namespace that does not map uid 70000
    /// (e.g. under `unshare -r`): the chown error explains the mapping.
    #[test]
    fn unmapped_owner_is_a_clear_error() {
        if !nix::unistd::geteuid().is_root() || id_mapped(70000) {
            return;
        }
        let s = Scratch::new();
        let mut h = raw_header(b"x", EntryType::Regular, 0o644, 1, b"");
        h.set_uid(70000);
        h.set_cksum();
        let mut b = Builder::new(Vec::new());
        b.append(&h, &b"1"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let o = Options {
            preserve_owner: true,
            ..Default::default()
        };
        let err = unpack(tar.as_slice(), &s.root, &o, &mut |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set owner of \"x\" to uid 70000: the id is outside the subordinate \
             id range mapped by /etc/subuid"
        );
    }

    // -- Layer mode ---------------------------------------------------------

    fn layer(tar: &[u8], root: &Path) -> Result<Stats, UnpackError> {
        unpack_layer(tar, root, &opts(), &mut |_| {})
    }

    /// Applies `tars` in order; each must succeed.
    fn layers(root: &Path, tars: &[Vec<u8>]) -> Vec<Stats> {
        tars.iter()
            .enumerate()
            .map(|(i, t)| layer(t, root).unwrap_or_else(|e| panic!("layer {}: {e}", i + 1)))
            .collect()
    }

    /// Every path below `root`, relative and sorted; symlinks not followed.
    fn tree_of(root: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                if e.file_type().unwrap().is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn no_whiteouts(root: &Path) {
        let left: Vec<String> = tree_of(root)
            .into_iter()
            .filter(|p| p.contains(".wh."))
            .collect();
        assert_eq!(left, Vec::<String>::new());
    }

    #[test]
    fn whiteouts_remove_files_trees_and_symlinks() {
        let s = Scratch::new();
        let victim = s.outside.join("file");
        fs::write(&victim, b"original").unwrap();
        let l1 = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/keep", 0o644, b"k")
            .file("etc/gone", 0o644, b"g")
            .dir("t/", 0o755)
            .dir("t/a/", 0o555)
            .file("t/a/b", 0o444, b"b")
            .symlink("t/c", "a")
            .dir("target/", 0o755)
            .file("target/f", 0o644, b"f")
            .symlink("link", "target")
            .symlink("abslink", "/target")
            .symlink("outlink", &victim.to_string_lossy())
            .build();
        let l2 = Tar::new()
            .file("etc/.wh.gone", 0o644, b"")
            .file(".wh.t", 0o644, b"")
            .file(".wh.link", 0o644, b"")
            .file(".wh.abslink", 0o644, b"")
            .file(".wh.outlink", 0o644, b"")
            // Whiteouts for what is not there do nothing.
            .file(".wh.nothing", 0o644, b"")
            .file("etc/.wh.nothing", 0o644, b"")
            .file("missing/.wh.x", 0o644, b"")
            .file("etc/new", 0o644, b"n")
            .special("etc/null", EntryType::Char)
            .build();
        let stats = layers(&s.root, &[l1, l2]);
        assert_eq!(stats[1].entries, 10);
        assert_eq!(stats[1].devices_skipped, 1);
        assert_eq!(
            tree_of(&s.root),
            ["etc", "etc/keep", "etc/new", "target", "target/f"]
        );
        assert_eq!(fs::read(s.root.join("target/f")).unwrap(), b"f");
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        no_whiteouts(&s.root);

        // Outside layer mode, ".wh." names are plain files.
        let s = Scratch::new();
        run(&Tar::new().file(".wh.x", 0o644, b"").build(), &s.root).unwrap();
        assert!(s.root.join(".wh.x").is_file());
    }

    #[test]
    fn whiteouts_stay_inside_root() {
        let s = Scratch::new();
        let victim = s.outside.join("victim");
        fs::write(&victim, b"outside").unwrap();
        fs::create_dir(s.outside.join("victimdir")).unwrap();
        fs::write(s.outside.join("victimdir/x"), b"outside").unwrap();
        let l1 = Tar::new()
            .file("victim", 0o644, b"inside")
            .dir("victimdir/", 0o755)
            .file("victimdir/x", 0o644, b"inside")
            .file("third", 0o644, b"inside")
            .symlink("up", "..")
            .symlink("abs", "/")
            .symlink("deep", "../../../..")
            .symlink("out", &s.outside.to_string_lossy())
            .build();
        let l2 = Tar::new()
            .file("up/.wh.victim", 0o644, b"")
            .file("abs/.wh.victimdir", 0o644, b"")
            .file("deep/.wh.third", 0o644, b"")
            // Resolves to a path inside root that does not exist.
            .file("out/.wh.victim", 0o644, b"")
            .file("up/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(fs::read(&victim).unwrap(), b"outside");
        assert_eq!(fs::read(s.outside.join("victimdir/x")).unwrap(), b"outside");
        // The opaque marker under "up" (root itself) emptied root: the
        // symlinks are lower-layer entries too.
        assert_eq!(tree_of(&s.root), Vec::<String>::new());
        assert!(s.root.is_dir());

        // Names that are not a name in the directory are refused.
        for bad in [
            ".wh..",
            ".wh...",
            "a/.wh...",
            ".wh.",
            "a/../.wh.x",
            "../.wh.x",
        ] {
            let tar = Tar::new().file(bad, 0o644, b"").build();
            let err = layer(&tar, &s.root).unwrap_err();
            assert!(matches!(err, UnpackError::Refused { .. }), "{bad}: {err}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"outside");
        assert!(s.outside.join("root").is_dir());
    }

    #[test]
    fn opaque_directories_keep_this_layers_entries() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("d/", 0o755)
            .file("d/lower1", 0o644, b"1")
            .dir("d/sub/", 0o555)
            .file("d/sub/lower2", 0o644, b"2")
            .dir("d/keepdir/", 0o755)
            .file("d/keepdir/lowerchild", 0o644, b"c")
            .dir("d/implicit/", 0o755)
            .file("d/implicit/old", 0o644, b"o")
            .dir("other/", 0o755)
            .file("other/x", 0o644, b"x")
            .symlink("d/link", "../other")
            .dir("w/", 0o755)
            .file("w/old", 0o644, b"o")
            .build();
        let l2 = Tar::new()
            .dir("d/", 0o750)
            .file("d/new_before", 0o644, b"b")
            .dir("d/keepdir/", 0o755)
            .file("d/keepdir/newchild", 0o644, b"n")
            // Its parent "deep" is created implicitly.
            .file("d/implicit/deep/f", 0o644, b"f")
            .file("d/.wh..wh..opq", 0o644, b"")
            .file("d/new_after", 0o644, b"a")
            // A whiteout applies to lower layers only.
            .file("w/fresh", 0o644, b"f")
            .file("w/.wh.fresh", 0o644, b"")
            .file("w/.wh.old", 0o644, b"")
            // An opaque directory that does not exist stays absent.
            .file("nodir/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(
            tree_of(&s.root),
            [
                "d",
                "d/implicit",
                "d/implicit/deep",
                "d/implicit/deep/f",
                "d/keepdir",
                "d/keepdir/newchild",
                "d/new_after",
                "d/new_before",
                "other",
                "other/x",
                "w",
                "w/fresh",
            ]
        );
        assert_eq!(mode_of(&s.root.join("d")), 0o750);
        assert_eq!(fs::read(s.root.join("other/x")).unwrap(), b"x");
        no_whiteouts(&s.root);

        // Entries reached through a symlinked parent count as this layer's
        // too (by where they really are).
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("usr/", 0o755)
            .dir("usr/lib/", 0o755)
            .file("usr/lib/old", 0o644, b"o")
            .symlink("lib", "usr/lib")
            .build();
        let l2 = Tar::new()
            .file("lib/new", 0o644, b"n")
            .file("usr/lib/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(tree_of(&s.root), ["lib", "usr", "usr/lib", "usr/lib/new"]);
    }

    #[test]
    fn hardlinks_across_layers() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", 0o644, b"old")
            .hardlink("etc/twin", "etc/passwd")
            .build();
        let l2 = Tar::new()
            .hardlink("bin/link", "/etc/passwd")
            .file("etc/passwd", 0o600, b"new")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("etc/passwd")).unwrap(), b"new");
        assert_eq!(mode_of(&r.join("etc/passwd")), 0o600);
        // The replaced file was unlinked, not written through.
        assert_eq!(fs::read(r.join("etc/twin")).unwrap(), b"old");
        assert_eq!(mode_of(&r.join("etc/twin")), 0o644);
        let twin = fs::metadata(r.join("etc/twin")).unwrap();
        let link = fs::metadata(r.join("bin/link")).unwrap();
        assert_eq!(twin.ino(), link.ino());
        assert_eq!(twin.nlink(), 2);
        assert_eq!(fs::metadata(r.join("etc/passwd")).unwrap().nlink(), 1);
    }

    #[test]
    fn layers_replace_types() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("x/", 0o755)
            .dir("x/sub/", 0o555)
            .file("x/sub/f", 0o444, b"f")
            .file("x/g", 0o644, b"g")
            .file("y", 0o644, b"file")
            .dir("z-target/", 0o755)
            .symlink("z", "z-target")
            .dir("w/", 0o755)
            .file("w/a", 0o644, b"a")
            .dir("h/", 0o755)
            .file("h/a", 0o644, b"a")
            .file("keep", 0o644, b"k")
            .build();
        let l2 = Tar::new()
            .file("x", 0o644, b"now a file")
            .dir("y/", 0o700)
            .file("y/inner", 0o644, b"i")
            .dir("z/", 0o755)
            .file("z/q", 0o644, b"q")
            .symlink("w", "y")
            .hardlink("h", "keep")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("x")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(r.join("y")).unwrap().is_dir());
        assert_eq!(mode_of(&r.join("y")), 0o700);
        assert_eq!(fs::read(r.join("y/inner")).unwrap(), b"i");
        assert!(fs::symlink_metadata(r.join("z")).unwrap().is_dir());
        assert_eq!(fs::read(r.join("z/q")).unwrap(), b"q");
        assert_eq!(tree_of(&r.join("z-target")), Vec::<String>::new());
        assert_eq!(fs::read_link(r.join("w")).unwrap(), Path::new("y"));
        let h = fs::symlink_metadata(r.join("h")).unwrap();
        assert_eq!(h.ino(), fs::metadata(r.join("keep")).unwrap().ino());
    }

    #[test]
    fn read_only_directories_accept_later_layers() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("./", 0o555)
            .dir("ro/", 0o555)
            .file("ro/a", 0o444, b"a")
            .dir("ro/sub/", 0o500)
            .file("ro/sub/f", 0o400, b"f")
            .dir("locked/", 0o000)
            .file("locked/f", 0o644, b"lf")
            .dir("rewritten/", 0o555)
            .dir("gone/", 0o555)
            .dir("gone/inner/", 0o555)
            .file("gone/inner/x", 0o444, b"x")
            .build();
        let l2 = Tar::new()
            .hardlink("ro/hl", "locked/f")
            .file("newtop", 0o644, b"t")
            .file("ro/b", 0o644, b"b")
            .file("ro/.wh.a", 0o644, b"")
            .file("ro/sub/g", 0o644, b"g")
            .file("locked/g", 0o644, b"lg")
            .dir("rewritten/", 0o750)
            .file("rewritten/h", 0o644, b"h")
            .file(".wh.gone", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(mode_of(r), 0o555);
        assert_eq!(mode_of(&r.join("ro")), 0o555);
        assert_eq!(mode_of(&r.join("ro/sub")), 0o500);
        assert_eq!(mode_of(&r.join("locked")), 0o000);
        assert_eq!(mode_of(&r.join("rewritten")), 0o750);
        assert_eq!(fs::read(r.join("newtop")).unwrap(), b"t");
        assert_eq!(fs::read(r.join("ro/b")).unwrap(), b"b");
        assert!(!r.join("ro/a").exists());
        assert!(!r.join("gone").exists());
        assert_eq!(fs::read(r.join("ro/sub/g")).unwrap(), b"g");
        assert_eq!(fs::read(r.join("ro/hl")).unwrap(), b"lf");
        assert_eq!(fs::read(r.join("rewritten/h")).unwrap(), b"h");
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(fs::read(r.join("locked/g")).unwrap(), b"lg");
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();

        // A third layer finds everything read-only again and still works.
        let l3 = Tar::new()
            .file("ro/sub/third", 0o644, b"3")
            .file("locked/.wh.g", 0o644, b"")
            .build();
        layers(r, &[l3]);
        assert_eq!(fs::read(r.join("ro/sub/third")).unwrap(), b"3");
        assert_eq!(mode_of(&r.join("ro/sub")), 0o500);
        assert_eq!(mode_of(&r.join("locked")), 0o000);
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!r.join("locked/g").exists());
        assert!(r.join("locked/f").exists());
        no_whiteouts(r);
    }

    #[test]
    fn layers_are_not_stripped() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .build();
        let stats = layer(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix, None);
        assert!(s.root.join("root.x86_64/etc/os-release").is_file());
    }

    // -- Sparse members and free space --------------------------------------

    /// Bytes allocated to a file.
    fn allocated(p: &Path) -> u64 {
        fs::metadata(p).unwrap().blocks() * 512
    }

    #[test]
    fn sparse_members_keep_their_holes() {
        let s = Scratch::new();
        const SIZE: u64 = 64 << 20;
        let a = vec![b'a'; 4096];
        // A region whose first block is zeros: that block becomes a hole too.
        let mut zc = vec![0u8; 4096];
        zc.extend_from_slice(&[b'c'; 4096]);
        let regions: [(u64, &[u8]); 4] = [
            (0, &a),
            (8 << 20, &zc),
            ((20 << 20) + 100, b"tail"),
            (SIZE, b""),
        ];
        let tar = Tar::new()
            .sparse("disk.img", SIZE, &regions)
            .file("plain", 0o644, b"after")
            .build();
        let mut consumed = 0;
        let stats = unpack(tar.as_slice(), &s.root, &opts(), &mut |n| consumed = n).unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, SIZE + 5);
        // Progress counts archive bytes, not the holes.
        assert!(consumed <= tar.len() as u64, "{consumed}");
        let p = s.root.join("disk.img");
        let mut expected = vec![0u8; SIZE as usize];
        for (off, bytes) in regions {
            expected[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
        }
        assert!(fs::read(&p).unwrap() == expected, "wrong content");
        // Three 4 KiB blocks hold data (some file systems allocate a
        // little more, never megabytes).
        let used = allocated(&p);
        assert!(used <= 256 << 10, "{used} bytes allocated");
        assert_eq!(mode_of(&p), 0o640);
        assert_eq!(mtime_of(&p), MTIME as i64);
        assert_eq!(fs::read(s.root.join("plain")).unwrap(), b"after");
    }

    #[test]
    fn sparse_member_that_is_all_hole() {
        let s = Scratch::new();
        // GNU tar's map for it: one empty region at the end.
        let tar = Tar::new()
            .sparse("empty.img", 1 << 30, &[(1 << 30, b"")])
            .build();
        run(&tar, &s.root).unwrap();
        let p = s.root.join("empty.img");
        assert_eq!(fs::metadata(&p).unwrap().len(), 1 << 30);
        assert_eq!(allocated(&p), 0);
    }

    #[test]
    fn truncated_sparse_member_is_corrupt() {
        let s = Scratch::new();
        let tar = Tar::new()
            .sparse(
                "disk.img",
                1 << 20,
                &[(0, &[b'a'; 1024]), (4096, b"xyz"), (1 << 20, b"")],
            )
            .build();
        run(&tar, &s.root).unwrap();
        // Cut inside the stored data (after the 512-byte header).
        let s = Scratch::new();
        let err = run(&tar[..512 + 700], &s.root).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("ends after"), "{err}");
    }

    #[test]
    fn plain_members_are_written_whole() {
        // Only sparse members get holes: zeros in a regular file are data.
        let s = Scratch::new();
        let zeros = vec![0u8; 1 << 20];
        run(&Tar::new().file("zeros", 0o644, &zeros).build(), &s.root).unwrap();
        let p = s.root.join("zeros");
        assert_eq!(fs::read(&p).unwrap(), zeros);
        assert!(allocated(&p) >= 1 << 20);
    }

    #[test]
    fn all_zero_checks_every_byte() {
        assert!(all_zero(&[]));
        assert!(all_zero(&[0; 4096]));
        assert!(all_zero(&[0; 100]));
        for i in [0, 63, 64, 4000, 4095] {
            let mut b = vec![0u8; 4096];
            b[i] = 1;
            assert!(!all_zero(&b), "byte {i}");
        }
        let mut b = vec![0u8; 100];
        b[99] = 0x80;
        assert!(!all_zero(&b));
    }

    fn space(target: &str) -> Space {
        Space {
            target: target.into(),
            free: None,
            used: 0,
        }
    }

    #[test]
    fn too_little_space_is_a_clear_error() {
        let s = Scratch::new();
        let mut sp = space("/store/rootfs");
        let dir = File::open(&s.root).unwrap();
        // Fits: nothing to say.
        sp.check(dir.as_fd(), b"small", 4096).unwrap();
        let err = sp
            .check(dir.as_fd(), b"usr/huge", u64::MAX / 2)
            .unwrap_err();
        let UnpackError::NoSpace {
            free: Some(free), ..
        } = &err
        else {
            panic!("{err}");
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "not enough disk space for \"usr/huge\" (8388608.0 TiB): only {} free on the \
                 file system of /store/rootfs\n  hint: free some space",
                crate::progress::human_bytes(*free)
            )),
            "{msg}"
        );
        assert!(msg.contains("XDG_DATA_HOME"), "{msg}");
    }

    #[test]
    fn space_is_estimated_between_queries() {
        let s = Scratch::new();
        let dir = File::open(&s.root).unwrap();
        let mut sp = space("t");
        sp.check(dir.as_fd(), b"a", 1).unwrap();
        // Pretend 10 KiB were free: a 5000-byte file fits (in 8 KiB), the
        // next does not, and asks the kernel again.
        sp.free = Some(10 << 10);
        sp.check(dir.as_fd(), b"b", 5000).unwrap();
        sp.wrote(5000);
        assert_eq!((sp.free, sp.used), (Some(10 << 10), 8192));
        sp.check(dir.as_fd(), b"c", 5000).unwrap();
        assert_eq!(sp.used, 0);
        assert_ne!(sp.free, Some(10 << 10));
    }

    #[test]
    fn running_out_of_space_while_writing_is_a_clear_error() {
        // /dev/full fails every write with ENOSPC.
        let mut full = File::options().write(true).open("/dev/full").unwrap();
        let mut buf = vec![0u8; CHUNK];
        let err = copy_data(&mut full, &mut &b"data"[..], &mut buf, b"etc/x").unwrap_err();
        let err = space("/store/rootfs").exhausted(err, 4);
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "ran out of disk space writing \"etc/x\" (4 B) on the file system of \
             /store/rootfs: No space left on device (os error 28)"
        );
        // Other failures stay what they are.
        let other = fs_err("write", b"etc/y", Errno::EIO);
        let err = space("t").exhausted(other, 4);
        assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
    }
}
