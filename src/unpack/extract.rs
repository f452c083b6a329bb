//! Stage 2: the extractor, which turns tar entries into files, directories, links and
//! metadata inside the target, checking free space as it goes.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::root::strip_toplevel_at;
use super::tree::{
    dir_id, display_name, fs_err, lossy, remove_tree, resolve, split, Created, DeferredDir, Meta,
    Tree, Unlocker,
};
use super::write::{apply_meta, chown_error, Job, Writer, QUEUED_FILE_MAX};
use super::{data_size, Options, Stats, UnpackError, HOLE_BLOCK};

pub(super) struct Extractor<'o> {
    pub(super) tree: Tree,
    pub(super) opts: &'o Options,
    pub(super) stats: Stats,
    pub(super) deferred: Vec<DeferredDir>,
    /// Copy buffer for file data.
    pub(super) buf: Vec<u8>,
    /// Normalized name of the current entry (reused).
    pub(super) name: Vec<u8>,
    /// Normalized hard link target of the current entry (reused).
    pub(super) link: Vec<u8>,
    /// `SCHILY.xattr.*` records of the current entry (reused).
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Applying an OCI layer ([`unpack_layer`]).
    pub(super) layer: bool,
    /// Layer mode: what this layer created, which its whiteouts keep.
    pub(super) created: Created,
    /// Layer mode, not root: read-only directories made writable.
    pub(super) unlock: Option<Unlocker>,
    /// Free space on the target's file system.
    pub(super) space: Space,
    /// The thread that writes regular files' data and metadata (taken by `finish`).
    pub(super) writer: Option<Writer>,
}

/// Free space on the target's file system, so that a regular file whose data
/// cannot fit stops the extraction before it is written. Asked of the kernel
/// (statvfs) for the first file, then estimated from the data written since,
/// and asked again only when a file does not fit the estimate (so the common
/// case costs no system call per file). The estimate ignores metadata and
/// other writers: an ENOSPC while writing gives the same error.
pub(super) struct Space {
    /// The target directory, for messages.
    pub(super) target: String,
    /// Bytes free for unprivileged use (f_bavail * f_frsize) at the last
    /// query; None before the first.
    pub(super) free: Option<u64>,
    /// Bytes of file data written since that query, in whole 4 KiB blocks.
    pub(super) used: u64,
}

impl Space {
    /// Checks that `size` bytes of data for entry `name` fit on the file
    /// system of `fd`.
    pub(super) fn check(
        &mut self,
        fd: BorrowedFd<'_>,
        name: &[u8],
        size: u64,
    ) -> Result<(), UnpackError> {
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
    pub(super) fn wrote(&mut self, size: u64) {
        self.used = self.used.saturating_add(blocks_of(size));
    }

    /// Turns a failure to create or write entry `name` (data of `size`
    /// bytes) for lack of space or quota into [`UnpackError::NoSpace`].
    pub(super) fn exhausted(&self, e: UnpackError, size: u64) -> UnpackError {
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
pub(super) fn blocks_of(size: u64) -> u64 {
    size.div_ceil(4096).saturating_mul(4096)
}

/// What kind of thing an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn last_name(&self) -> String {
        if self.stats.entries == 0 {
            "(start of archive)".into()
        } else {
            display_name(&self.name)
        }
    }

    pub(super) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
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
        if self.is_whiteout() {
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
        // The writer thread failed on an earlier file: its error is the extraction's.
        let mut writer_stopped = false;
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
                Kind::File if !sparse && stored_size <= QUEUED_FILE_MAX => {
                    let writer = self.writer.as_ref().expect("the writer lives until finish");
                    create_file(dir, base, &self.name, &mut removed)
                        .and_then(|file| {
                            self.space.check(file.as_fd(), &self.name, stored_size)?;
                            let mut data = writer.buffer(stored_size as usize);
                            let n = read_full(entry, &mut data).map_err(|err| {
                                UnpackError::Corrupt {
                                    entry: display_name(&self.name),
                                    err,
                                }
                            })?;
                            // Short only when the archive ends early (check_size says so).
                            data.truncate(n);
                            Ok((file, data))
                        })
                        .map_err(|e| self.space.exhausted(e, stored_size))
                        .and_then(|(file, data)| {
                            let written = data.len() as u64;
                            check_size(&self.name, written, expected_size)?;
                            self.space.wrote(written);
                            self.stats.bytes += written;
                            let job = Job {
                                file,
                                data,
                                meta,
                                xattrs: std::mem::take(&mut self.xattrs),
                                name: self.name.clone(),
                            };
                            writer_stopped = !writer.send(job);
                            Ok(())
                        })
                }
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
        if writer_stopped {
            return Err(self.writer_failure());
        }
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

    /// Reads mode, owner and mtime from the header (and PAX records), and
    /// collects `SCHILY.xattr.*` records into `self.xattrs`.
    pub(super) fn read_meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Meta, UnpackError> {
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

    /// The writer thread's first failure, once it has stopped.
    fn writer_failure(&mut self) -> UnpackError {
        match self.writer.take().map(Writer::finish) {
            Some(Err((e, size))) => self.space.exhausted(e, size),
            _ => UnpackError::Thread {
                err: io::Error::other("the file writing thread stopped unexpectedly"),
            },
        }
    }

    /// Waits for the writer thread, moves a single top-level rootfs directory up (not in
    /// layer mode), then applies deferred directory metadata, deepest first, and puts back
    /// the modes of directories that were made writable.
    pub(super) fn finish(mut self) -> Result<Stats, UnpackError> {
        // Every file is written before anything looks at the tree.
        if let Some(writer) = self.writer.take() {
            match writer.finish() {
                Ok(skipped) => self.stats.xattrs_skipped += skipped,
                Err((e, size)) => return Err(self.space.exhausted(e, size)),
            }
        }
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
pub(super) fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
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

/// Parses a PAX time ("1700000000" or "1700000000.123456789", maybe negative).
pub(super) fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
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
pub(super) fn remove_existing(
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &[u8],
) -> Result<(), UnpackError> {
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
pub(super) fn replacing<T>(
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

/// Whether `name` is a symlink that leads, resolved inside `root`, to a directory.
fn is_link_to_dir(root: BorrowedFd<'_>, name: &[u8]) -> bool {
    let is_link = resolve(root, name, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        .and_then(|fd| fstat(fd.as_fd()))
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK);
    is_link && resolve(root, name, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
}

pub(super) fn is_dir_at(dir: BorrowedFd<'_>, base: &[u8]) -> bool {
    fstatat(dir, base, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false)
}

/// Creates directory `base` (0700 for now); an existing directory is kept,
/// anything else there is replaced.
pub(super) fn make_dir(
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
pub(super) fn create_file(
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

/// Fills `buf` from `data` as far as it goes; returns how many bytes it read (fewer than
/// `buf.len()` only at the end of `data`).
fn read_full<R: Read>(data: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match data.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies an entry's data into `file`. Returns the number of bytes written.
pub(super) fn copy_data<R: Read>(
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
pub(super) fn copy_sparse<R: Read>(
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
        let n = read_full(data, buf).map_err(|err| UnpackError::Corrupt {
            entry: display_name(name),
            err,
        })?;
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
pub(super) fn all_zero(block: &[u8]) -> bool {
    let mut chunks = block.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Checks the written size against the header (the tar crate's entry reader
/// just stops at the end of a truncated stream).
pub(super) fn check_size(name: &[u8], written: u64, expected: u64) -> Result<(), UnpackError> {
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

/// lchown (if preserved) and lutimes on a symlink; symlinks have no mode.
pub(super) fn symlink_meta(
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
pub(super) fn hardlink_source(
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

pub(super) fn link_missing(name: &[u8], target: &[u8]) -> UnpackError {
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
pub(super) fn hardlink(
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
    use crate::unpack::testutil::*;
    use crate::unpack::*;

    #[test]
    pub(super) fn normalizes_names() {
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
    pub(super) fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (-2, 750_000_000));
        assert!(parse_pax_time(b"x1").is_none());
    }

    #[test]
    pub(super) fn extracts_a_normal_tree() {
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
    pub(super) fn creates_missing_parents() {
        let s = Scratch::new();
        let tar = Tar::new().file("a/b/c/f", 0o644, b"x").build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join("a/b/c/f")).unwrap(), b"x");
        assert!(s.root.join("a/b").is_dir());
    }

    #[test]
    pub(super) fn long_names_and_pax_records() {
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
    pub(super) fn refuses_dotdot_entry() {
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
    pub(super) fn absolute_names_land_inside() {
        let s = Scratch::new();
        let tar = Tar::new().file("/abs/x", 0o644, b"in").build();
        run(&tar, &s.root).unwrap();
        assert_eq!(fs::read(s.root.join("abs/x")).unwrap(), b"in");
        assert!(!Path::new("/abs/x").exists() || fs::read("/abs/x").unwrap() != b"in");
    }

    #[test]
    pub(super) fn file_replaces_symlink_instead_of_writing_through() {
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
    pub(super) fn replaces_existing_entries() {
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
    pub(super) fn hardlinks_are_contained() {
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
    pub(super) fn devices_are_skipped_and_counted() {
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
    pub(super) fn read_only_directories_end_read_only() {
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

    /// Runs only as (namespace) root: owners are kept and chown does not
    /// lose the setuid bit.
    #[test]
    pub(super) fn preserves_owner_when_privileged() {
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
    pub(super) fn id_mapped(id: u32) -> bool {
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
    pub(super) fn unmapped_owner_is_a_clear_error() {
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

    /// Bytes allocated to a file.
    pub(super) fn allocated(p: &Path) -> u64 {
        fs::metadata(p).unwrap().blocks() * 512
    }

    #[test]
    pub(super) fn sparse_members_keep_their_holes() {
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
    pub(super) fn sparse_member_that_is_all_hole() {
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
    pub(super) fn truncated_sparse_member_is_corrupt() {
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
    pub(super) fn plain_members_are_written_whole() {
        // Only sparse members get holes: zeros in a regular file are data.
        let s = Scratch::new();
        let zeros = vec![0u8; 1 << 20];
        run(&Tar::new().file("zeros", 0o644, &zeros).build(), &s.root).unwrap();
        let p = s.root.join("zeros");
        assert_eq!(fs::read(&p).unwrap(), zeros);
        assert!(allocated(&p) >= 1 << 20);
    }

    #[test]
    pub(super) fn all_zero_checks_every_byte() {
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

    pub(super) fn space(target: &str) -> Space {
        Space {
            target: target.into(),
            free: None,
            used: 0,
        }
    }

    #[test]
    pub(super) fn too_little_space_is_a_clear_error() {
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
    pub(super) fn space_is_estimated_between_queries() {
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
    pub(super) fn running_out_of_space_while_writing_is_a_clear_error() {
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
