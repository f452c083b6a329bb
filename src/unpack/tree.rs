//! Stage 3: the target as a tree of directory fds: lookups confined to the root, deferred
//! directory metadata, read-only directories opened up while a layer is applied, and removal
//! of whole trees without following links.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, mkdirat, FchmodatFlags, FileStat, Mode, SFlag,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::UnpackError;

/// Ownership, permissions and mtime of an entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: TimeSpec,
}

/// A directory whose metadata is applied at the end.
pub(super) struct DeferredDir {
    pub(super) path: Vec<u8>,
    pub(super) meta: Meta,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The target tree: the root fd and a one-entry cache of the last parent
/// directory looked up (tar entries come grouped by directory).
pub(super) struct Tree {
    pub(super) root: OwnedFd,
    pub(super) cache_key: Vec<u8>,
    pub(super) cache_fd: Option<OwnedFd>,
}

/// Opens `path` below `root`, treating `root` as `/` for every component,
/// symlinks included; magic links (/proc/*/fd) are refused.
pub(super) fn resolve(root: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
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
    pub(super) fn dir<'t>(
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
    pub(super) fn lookup<'t>(
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

    pub(super) fn open_dir(&self, parent: &[u8], create: bool) -> nix::Result<OwnedFd> {
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
    pub(super) fn create_parents(&self, parent: &[u8]) -> nix::Result<OwnedFd> {
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

    pub(super) fn invalidate(&mut self) {
        self.cache_fd = None;
    }
}

/// Layer mode when not run as root: a lower layer's directory that its
/// owner (the caller) cannot write, search or list is made `u+rwx` before
/// this layer adds to it or removes from it, and gets its mode back at the
/// end (unless this layer gives it a mode of its own).
pub(super) struct Unlocker {
    /// The caller's effective uid: only its own directories can be changed.
    pub(super) uid: u32,
    /// Directories already made writable (device, inode).
    pub(super) seen: HashSet<(libc::dev_t, libc::ino_t)>,
    /// What to put back at the end.
    pub(super) restore: Vec<Unlocked>,
}

/// A directory made writable, its original mode, and its path for messages.
pub(super) struct Unlocked {
    pub(super) fd: OwnedFd,
    pub(super) mode: u32,
    pub(super) path: Vec<u8>,
}

impl Unlocker {
    /// Makes directory `dir` (any fd, O_PATH included) `u+rwx` if the caller
    /// owns it and lacks one of those bits. Failures are left for the
    /// operation that needed the access to report.
    pub(super) fn writable(&mut self, dir: BorrowedFd<'_>, path: &[u8]) {
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
    pub(super) fn chain(&mut self, root: BorrowedFd<'_>, path: &[u8]) {
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
    pub(super) fn restore(
        self,
        applied: &HashSet<(libc::dev_t, libc::ino_t)>,
    ) -> Result<(), UnpackError> {
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
pub(super) fn chmod_dir(dir: BorrowedFd<'_>, mode: u32) -> nix::Result<()> {
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

pub(super) fn is_dir_stat(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// What a layer created so far, by parent directory (device, inode) and
/// name. Keyed by the real parent rather than the archive path, so an entry
/// that reached its directory through a symlink is still recognised.
pub(super) type Created = HashMap<(libc::dev_t, libc::ino_t), HashSet<Vec<u8>>>;

pub(super) fn dir_id(dir: BorrowedFd<'_>) -> nix::Result<(libc::dev_t, libc::ino_t)> {
    fstat(dir).map(|st| (st.st_dev, st.st_ino))
}

/// A directory being emptied by [`remove_tree`].
pub(super) struct Frame {
    /// O_PATH fd of the directory.
    pub(super) fd: OwnedFd,
    pub(super) id: (libc::dev_t, libc::ino_t),
    /// Its name in its parent.
    pub(super) name: Vec<u8>,
    /// Its path relative to root, for messages.
    pub(super) path: Vec<u8>,
    /// Children not visited yet.
    pub(super) children: Vec<Vec<u8>>,
    /// Whether the directory itself stays.
    pub(super) keep: bool,
}

impl Frame {
    pub(super) fn open(
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
pub(super) fn remove_tree(
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
pub(super) fn unlink_quiet(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: UnlinkatFlags,
) -> nix::Result<()> {
    match unlinkat(dir, name, flags) {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

/// Names in directory `path` (relative to `dir`), without `.` and `..`.
/// `shown` names the directory in errors.
pub(super) fn list_dir(
    dir: BorrowedFd<'_>,
    path: &[u8],
    shown: &[u8],
) -> Result<Vec<Vec<u8>>, UnpackError> {
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

/// Splits a normalized path into (parent, final component).
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn display_name(name: &[u8]) -> String {
    if name.is_empty() {
        ".".into()
    } else {
        lossy(name)
    }
}

pub(super) fn fs_err(action: &'static str, path: &[u8], e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Fs {
        action,
        path: display_name(path),
        err: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use crate::unpack::testutil::*;

    #[test]
    pub(super) fn symlinked_parents_resolve_inside_root() {
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
    pub(super) fn stale_parent_cache_is_not_used() {
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
}
