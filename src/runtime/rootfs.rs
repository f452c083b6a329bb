//! A box's root file system as a plan of mount operations (data), and the code that carries the
//! plan out. The plan is built by a pure function so it can be checked in unit tests.
//!
//! Order of a box start (see start.rs): overlay mounted on `merged`, `pivot_root` into it with the
//! old root put at /run/host, then this plan, whose sources all live under /run/host and whose
//! targets resolve inside the box (an image's `/home -> var/home` symlink is followed inside).
//!
//! Then the files devbox writes into the box (passwd, group, shadow, the sudoers rule,
//! /run/.containerenv). The image is not trusted: everything devbox creates or writes in the box
//! goes through the functions of the "no-follow" section below, never through a plain path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, renameat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::state::Isolate;

pub const HOST: &str = "/run/host";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A fresh procfs (the box has its own pid namespace).
    Proc { dst: PathBuf },
    /// A fresh sysfs (own network namespace); falls back to binding the host's.
    Sysfs { dst: PathBuf },
    /// Recursive bind of a host directory onto a directory of the box (created if missing).
    Rbind { src: PathBuf, dst: PathBuf },
    /// Bind of a host file onto a file of the box (a symlink or missing file there is replaced
    /// by an empty regular file first, so the mount never follows a link of the image).
    BindFile { src: PathBuf, dst: PathBuf },
    /// A mount the user asked for: recursive bind, read-only if asked.
    UserMount {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
}

/// The host facts the plan depends on.
#[derive(Debug, Clone)]
pub struct HostView {
    pub home: PathBuf,
    /// A directory of the host that is the box's home instead of the user's own (the host
    /// home then stays out of the box), and a project directory bound in at its own path.
    pub isolated_home: Option<PathBuf>,
    pub project_dir: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub resolv_conf: bool,
    /// The host file the box sees as /etc/hosts: the host's, with the box's name added.
    pub hosts: Option<PathBuf>,
}

fn host(p: &Path) -> PathBuf {
    Path::new(HOST).join(p.strip_prefix("/").unwrap_or(p))
}

pub fn plan(isolate: &[Isolate], h: &HostView, mounts: &[crate::state::MountSpec]) -> Vec<Op> {
    let mut ops = Vec::new();
    if isolate.contains(&Isolate::Pid) {
        ops.push(Op::Proc {
            dst: "/proc".into(),
        });
    } else {
        ops.push(Op::Rbind {
            src: host(Path::new("/proc")),
            dst: "/proc".into(),
        });
    }
    if isolate.contains(&Isolate::Net) {
        ops.push(Op::Sysfs { dst: "/sys".into() });
    } else {
        ops.push(Op::Rbind {
            src: host(Path::new("/sys")),
            dst: "/sys".into(),
        });
    }
    // The host's /dev: the caller's terminal keeps its name inside and new ptys work.
    ops.push(Op::Rbind {
        src: host(Path::new("/dev")),
        dst: "/dev".into(),
    });
    // Shared /tmp, as Toolbx and Distrobox do (X11 sockets live there).
    ops.push(Op::Rbind {
        src: host(Path::new("/tmp")),
        dst: "/tmp".into(),
    });
    // Home, then the runtime dir: a home under /tmp is covered by the /tmp bind already but is
    // bound again so submounts of the home come along.
    ops.push(Op::Rbind {
        src: host(h.isolated_home.as_ref().unwrap_or(&h.home)),
        dst: h.home.clone(),
    });
    if let (Some(_), Some(dir)) = (&h.isolated_home, &h.project_dir) {
        ops.push(Op::Rbind {
            src: host(dir),
            dst: dir.clone(),
        });
    }
    if let Some(rt) = &h.runtime_dir {
        ops.push(Op::Rbind {
            src: host(rt),
            dst: rt.clone(),
        });
    }
    if h.resolv_conf {
        ops.push(Op::BindFile {
            src: host(Path::new("/etc/resolv.conf")),
            dst: "/etc/resolv.conf".into(),
        });
    }
    if let Some(hosts) = &h.hosts {
        ops.push(Op::BindFile {
            src: host(hosts),
            dst: "/etc/hosts".into(),
        });
    }
    // The user's mounts last, so they may cover anything above.
    for m in mounts {
        ops.push(Op::UserMount {
            src: host(&m.host),
            dst: m.target.clone(),
            readonly: m.readonly,
        });
    }
    ops
}

fn bind(src: &Path, dst: &Path, recursive: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), dst, None::<&str>, flags, None::<&str>).with_context(|| {
        format!(
            "cannot bind {} onto {} in the box",
            src.display(),
            dst.display()
        )
    })
}

/// Carries out the plan. Runs after pivot_root, as root of the box's namespaces; `root` is the
/// box's root (`/`). Each target is found and made as `ensure_dir` and `ensure_file` say,
/// and mounted on at the path they found, which has no symlink left in it.
pub fn apply(root: BorrowedFd<'_>, ops: &[Op]) -> Result<()> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for op in ops {
        match op {
            Op::Proc { dst } => {
                let dst = ensure_dir(root, dst)?;
                mount(Some("proc"), &dst, Some("proc"), nodev, None::<&str>)
                    .context("cannot mount a procfs for the box's pid namespace")?;
            }
            Op::Sysfs { dst } => {
                let dst = ensure_dir(root, dst)?;
                if mount(
                    Some("sysfs"),
                    &dst,
                    Some("sysfs"),
                    nodev | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .is_err()
                {
                    bind(&host(Path::new("/sys")), &dst, true)?;
                }
            }
            Op::Rbind { src, dst } => {
                let dst = ensure_dir(root, dst)?;
                bind(src, &dst, true)?;
            }
            Op::BindFile { src, dst } => {
                let dst = ensure_file(root, dst)?;
                bind(src, &dst, false)?;
            }
            Op::UserMount { src, dst, readonly } => {
                if !src.exists() {
                    let on_host = src
                        .strip_prefix(HOST)
                        .map(|p| Path::new("/").join(p))
                        .unwrap_or_else(|_| src.clone());
                    anyhow::bail!(
                        "the mount source {} does not exist on the host\n  hint: create it, or change the mount in the project's devbox.toml",
                        on_host.display()
                    );
                }
                let dst = if src.is_dir() {
                    ensure_dir(root, dst)?
                } else {
                    ensure_file(root, dst)?
                };
                bind(src, &dst, true)?;
                if *readonly {
                    mount(
                        None::<&str>,
                        &dst,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .with_context(|| {
                        format!("cannot make {} read-only in the box", dst.display())
                    })?;
                }
            }
        }
    }
    Ok(())
}

// ---- No-follow: what devbox creates, reads and writes in a box ------------------------------
//
// The image's symlinks may name the user's home (bound into the box at its host path) or the
// host's root (/run/host); devbox works in the box as in-box root, which may write whatever the
// user owns. A write through such a link would change, or chown to a subordinate id, a file
// outside the box. So, relative to a directory fd of the box's root:
//
// - A file is written into a directory of the box's own file system opened without following
//   any symlink and without crossing a mount point ([`open_own_dir`]): created under a random
//   temporary name (O_CREAT|O_EXCL|O_NOFOLLOW), written, its owner and mode set through its fd,
//   then renamed over its final name, which replaces a link there instead of writing through it
//   ([`replace_file`]). A directory on the way that is a link is refused.
// - Mount targets and the files read to be merged (passwd, group, shadow) follow the image's
//   links as the box's processes see them (an image's `/home -> var/home` must keep working),
//   but devbox resolves them itself, one component at a time ([`walk`]): never into /run/host,
//   never through a /proc magic link, and a missing directory is only created through a link
//   on the box's own file system.

/// Symlinks followed at most in one lookup, as the kernel does.
const MAX_LINKS: usize = 40;

/// Opens a directory (the box's root) for the functions below.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The names and `..`s of a path (its root and `.`s dropped).
fn parts(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Opens `dir` (relative to `root`, e.g. `etc/sudoers.d`) with `flags`, refusing a symlink in
/// any of its components and a mount point on the way: a directory devbox writes files into is
/// the box's own, never somewhere an image's link or a mount leads.
fn open_own_dir(root: BorrowedFd<'_>, dir: &str, flags: OFlag) -> Result<OwnedFd> {
    // No O_NOFOLLOW: with it, a link as the last component would be opened itself (O_PATH) or
    // fail as not a directory; without it, RESOLVE_NO_SYMLINKS refuses it with ELOOP.
    let how = OpenHow::new()
        .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let mut tries = 0;
    let opened = loop {
        match openat2(root, dir, how) {
            // EAGAIN: a concurrent rename raced with the lookup; retry.
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 16 => tries += 1,
            r => break r,
        }
    };
    match opened {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => bail!(
            "/{dir} in the box is a symlink, or lies under one: devbox does not write through the image's symlinks"
        ),
        Err(Errno::EXDEV) => bail!(
            "/{dir} in the box is a mount point, or lies under one: devbox writes there only into the box's own file system"
        ),
        Err(Errno::ENOTDIR) => bail!("/{dir} in the box is not a directory"),
        Err(e) => Err(e).with_context(|| format!("cannot open /{dir} in the box")),
    }
}

/// A random temporary name for `name` in its directory; it holds a `.`, so that sudo ignores
/// it in /etc/sudoers.d should it ever be left behind.
fn temp_name(name: &str) -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let r = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), n));
    format!(".{name}.devbox-{r:016x}")
}

/// Replaces `name` in the directory `dir` (shown as `shown`) by a file holding `data`, with
/// `mode` and `owner` (else the caller's): a new file under a random name (a link planted at a
/// temporary name is never opened), renamed over `name` (a link there is replaced, not written
/// through).
fn replace_file(
    dir: BorrowedFd<'_>,
    shown: &str,
    name: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let path = format!("{shown}/{name}");
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut made = None;
    for _ in 0..16 {
        let tmp = temp_name(name);
        match openat(dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => {
                made = Some((tmp, File::from(fd)));
                break;
            }
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create a new {path}")),
        }
    }
    let Some((tmp, mut file)) = made else {
        bail!("cannot create a new {path}: every temporary name tried is taken");
    };
    let written = (|| -> Result<()> {
        file.write_all(data)?;
        if let Some((uid, gid)) = owner {
            // Best effort, as before: an owner the box does not map cannot be given.
            let _ = fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        }
        fchmod(&file, Mode::from_bits_truncate(mode))?;
        renameat(dir, tmp.as_str(), dir, name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    written.with_context(|| format!("cannot write {path}"))
}

/// Writes `data` as the file `name` of the directory `dir` of the box (relative to `root`,
/// e.g. `run`), with `mode`, as `replace_file` does, in a directory `open_own_dir` opens.
pub fn write_file(
    root: BorrowedFd<'_>,
    dir: &str,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<()> {
    let fd = open_own_dir(root, dir, OFlag::O_PATH)?;
    replace_file(fd.as_fd(), &format!("/{dir}"), name, data, mode, None)
}

/// Makes `run/host` in the box's root, where pivot_root puts the host's root, refusing a
/// symlink on the way: before pivot_root, the image's absolute links would resolve on the host.
pub fn make_host_dir(root: BorrowedFd<'_>) -> Result<()> {
    let mut at = String::new();
    for c in parts(Path::new(HOST)) {
        let parent = if at.is_empty() {
            None
        } else {
            Some(open_own_dir(root, &at, OFlag::O_PATH)?)
        };
        let dirfd = parent.as_ref().map_or(root, |fd| fd.as_fd());
        match mkdirat(dirfd, c.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {HOST} in the box"));
            }
        }
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(&c.to_string_lossy());
    }
    open_own_dir(root, &at, OFlag::O_PATH)
        .with_context(|| format!("the host's root is mounted at {HOST} in the box"))?;
    Ok(())
}

/// A path of the box as [`walk`] found it.
struct Walked<'r> {
    root: BorrowedFd<'r>,
    /// The real directories from the root to the target (the last may be a non-directory),
    /// each opened O_PATH, with their names: no symlink among them.
    chain: Vec<(OsString, OwnedFd)>,
    stat: FileStat,
    /// A symlink was followed on the way.
    followed: bool,
}

impl Walked<'_> {
    /// The path with every link resolved: mounting on it resolves it again to the same place.
    fn path(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        for (name, _) in &self.chain {
            p.push(name);
        }
        p
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.chain.last().map_or(self.root, |(_, fd)| fd.as_fd())
    }

    /// The directory holding the target (the root for the root itself).
    fn parent(&self) -> BorrowedFd<'_> {
        match self.chain.len() {
            0 | 1 => self.root,
            n => self.chain[n - 2].1.as_fd(),
        }
    }

    fn is_dir(&self) -> bool {
        kind(&self.stat) == SFlag::S_IFDIR
    }

    /// Something may be created in this directory: devbox got there without a link, or it is
    /// on the box's own file system (not a directory bound from the host).
    fn may_create(&self, root_dev: u64) -> bool {
        !self.followed || self.stat.st_dev == root_dev
    }
}

/// Finds `path` in the box as its processes would (an absolute link resolves from the box's
/// root, `..` stops there), one component at a time, with each link read as text, never
/// followed by the kernel (/proc's magic links included). Refused: anything at or under
/// /run/host. `Ok(None)` when something on the way does not exist; with `create`, missing
/// directories are made instead (0755, like `mkdir -p`), though not through a link outside the
/// box's own file system.
fn walk<'r>(root: BorrowedFd<'r>, path: &Path, create: bool) -> Result<Option<Walked<'r>>> {
    let shown = path.display();
    let root_dev = fstat(root)?.st_dev;
    let host = parts(Path::new(HOST));
    let mut todo = parts(path);
    todo.reverse();
    let mut chain: Vec<(OsString, OwnedFd)> = Vec::new();
    let mut links = 0;
    let mut followed = false;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let here_path = |chain: &[(OsString, OwnedFd)], name: &OsStr| {
        let mut p = PathBuf::from("/");
        p.extend(chain.iter().map(|(n, _)| n));
        p.join(name)
    };
    while let Some(c) = todo.pop() {
        if c == ".." {
            chain.pop();
            continue;
        }
        let here = chain.last().map_or(root, |(_, fd)| fd.as_fd());
        let opened = match openat(here, c.as_os_str(), flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                let at = here_path(&chain, &c);
                if followed && fstat(here)?.st_dev != root_dev {
                    bail!(
                        "{shown} in the box leads, through the image's symlinks, to {}, which is not on the box's own file system: devbox does not create it there",
                        at.display()
                    );
                }
                match mkdirat(here, c.as_os_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot create {} in the box", at.display()))
                    }
                }
                openat(here, c.as_os_str(), flags, Mode::empty())
            }
            r => r,
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot look up {shown} in the box")),
        };
        let st = fstat(&fd)?;
        match kind(&st) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("cannot look up {shown} in the box: too many levels of symlinks");
                }
                let target = PathBuf::from(
                    readlinkat(&fd, "")
                        .with_context(|| format!("cannot look up {shown} in the box"))?,
                );
                if target.as_os_str().is_empty() {
                    return Ok(None);
                }
                followed = true;
                if target.is_absolute() {
                    chain.clear();
                }
                todo.extend(parts(&target).into_iter().rev());
            }
            SFlag::S_IFDIR => {
                chain.push((c, fd));
                if chain.len() >= host.len() && chain.iter().zip(&host).all(|((n, _), h)| n == h) {
                    bail!(
                        "{shown} in the box leads into the host's file system at {HOST}: devbox does not follow the image's symlinks there"
                    );
                }
            }
            _ if todo.is_empty() => {
                chain.push((c, fd));
                return Ok(Some(Walked {
                    root,
                    chain,
                    stat: st,
                    followed,
                }));
            }
            _ => bail!(
                "cannot look up {shown} in the box: {} is not a directory",
                here_path(&chain, &c).display()
            ),
        }
    }
    let stat = fstat(chain.last().map_or(root, |(_, fd)| fd.as_fd()))?;
    Ok(Some(Walked {
        root,
        chain,
        stat,
        followed,
    }))
}

/// Finds or makes the directory `p` of the box (see [`walk`]); its path with no link left.
fn ensure_dir(root: BorrowedFd<'_>, p: &Path) -> Result<PathBuf> {
    let Some(w) = walk(root, p, true)? else {
        bail!("cannot create {} in the box", p.display());
    };
    if !w.is_dir() {
        bail!("{} is not a directory in the box", w.path().display());
    }
    Ok(w.path())
}

/// Finds or makes the file `p` of the box to mount a file on: its directory as
/// [`ensure_dir`] does; a symlink or missing file there is replaced by an empty regular file
/// (so the mount never follows a link of the image). Its path with no link left.
fn ensure_file(root: BorrowedFd<'_>, p: &Path) -> Result<PathBuf> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        bail!("{} is not a file in the box", p.display());
    };
    let Some(dir) = walk(root, parent, true)? else {
        bail!("cannot create {} in the box", parent.display());
    };
    if !dir.is_dir() {
        bail!("{} is not a directory in the box", dir.path().display());
    }
    let path = dir.path().join(name);
    let root_dev = fstat(root)?.st_dev;
    let refuse = || {
        anyhow::anyhow!(
            "{} in the box leads, through the image's symlinks, to {}, which is not on the box's own file system: devbox does not create it there",
            p.display(),
            path.display()
        )
    };
    match fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == SFlag::S_IFREG => return Ok(path),
        Ok(st) if kind(&st) == SFlag::S_IFDIR => {
            bail!("{} is a directory in the box", path.display())
        }
        Ok(_) => {
            if !dir.may_create(root_dev) {
                return Err(refuse());
            }
            unlinkat(dir.fd(), name, UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("cannot replace {} in the box", path.display()))?;
        }
        Err(Errno::ENOENT) => {
            if !dir.may_create(root_dev) {
                return Err(refuse());
            }
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot inspect {} in the box", path.display()))
        }
    }
    openat(
        dir.fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .with_context(|| format!("cannot create {} in the box", path.display()))?;
    Ok(path)
}

/// The text of the regular file `p` of the box, found as [`walk`] says (so never through
/// /run/host); `None` when it does not exist.
fn read_file(root: BorrowedFd<'_>, p: &Path) -> Result<Option<String>> {
    let Some(w) = walk(root, p, false)? else {
        return Ok(None);
    };
    let path = w.path();
    let not_a_file = || anyhow::anyhow!("{} in the box is not a regular file", path.display());
    let Some((name, _)) = w.chain.last().filter(|_| kind(&w.stat) == SFlag::S_IFREG) else {
        return Err(not_a_file());
    };
    let fd = openat(
        w.parent(),
        name.as_os_str(),
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot read {} in the box", path.display()))?;
    if kind(&fstat(&fd)?) != SFlag::S_IFREG {
        return Err(not_a_file());
    }
    let mut data = Vec::new();
    File::from(fd)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {} in the box", path.display()))?;
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

/// Escapes a path for overlay's comma-separated options (`\`, `,` and `:` are special).
pub fn escape_overlay(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        escape_overlay(lower),
        escape_overlay(upper),
        escape_overlay(work)
    )
}

/// Adds passwd and group entries for the host user when the image lacks them, and a shadow
/// entry without a usable password (`*`) where the image has a shadow file: PAM's account check
/// (sudo's, su's) fails for a user whose passwd entry points at a shadow entry that is missing.
/// `root` is the box's root; the files are read as `read_file` and written as
/// `replace_file` says, in the box's own /etc.
pub fn ensure_user(root: BorrowedFd<'_>, u: &HostUser) -> Result<()> {
    let etc = open_own_dir(root, "etc", OFlag::O_PATH)?;
    let etc = etc.as_fd();
    let text = read_file(root, Path::new("/etc/passwd"))?.unwrap_or_default();
    if let Some(line) = passwd_line(&text, u) {
        append_line(etc, "passwd", &text, &line, 0o644)?;
    }
    if let Some(text) = read_file(root, Path::new("/etc/shadow"))? {
        if let Some(line) = shadow_line(&text, &u.name) {
            append_line(etc, "shadow", &text, &line, 0o640)?;
        }
    }
    let text = read_file(root, Path::new("/etc/group"))?.unwrap_or_default();
    let has_gid = text
        .lines()
        .any(|l| l.split(':').nth(2) == Some(u.gid.to_string().as_str()));
    if !has_gid {
        append_line(
            etc,
            "group",
            &text,
            &format!("{}:x:{}:", u.group, u.gid),
            0o644,
        )?;
    }
    Ok(())
}

/// The passwd line to add for `u`, or None when the box already knows the user.
pub fn passwd_line(passwd: &str, u: &HostUser) -> Option<String> {
    let uid = u.uid.to_string();
    let known = passwd.lines().any(|l| {
        let mut f = l.split(':');
        f.next() == Some(u.name.as_str()) || f.nth(1) == Some(uid.as_str())
    });
    (!known).then(|| {
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            u.name,
            u.uid,
            u.gid,
            u.gecos,
            u.home.display(),
            u.shell.display()
        )
    })
}

/// The host's hosts file with a line for the box's host name (`name`, its UTS name) when the
/// file does not name it already, so programs that look up their own host name (sudo, many
/// servers) find it.
pub fn hosts_for_box(host_hosts: &str, name: &str) -> String {
    let named = host_hosts.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|w| w == name)
    });
    let mut out = host_hosts.to_string();
    if !named {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    out
}

/// The shadow line to add for `name` (no password, no ageing), or None when it has one.
pub fn shadow_line(shadow: &str, name: &str) -> Option<String> {
    let known = shadow.lines().any(|l| l.split(':').next() == Some(name));
    (!known).then(|| format!("{name}:*:::::::"))
}

/// Writes `existing` and `line` as /etc/`name` (`etc` is the box's own /etc), keeping the old
/// file's mode and owners (passwd 0644 root:root, shadow 0640 root:shadow); `mode` and in-box
/// root when there was no regular file.
fn append_line(
    etc: BorrowedFd<'_>,
    name: &str,
    existing: &str,
    line: &str,
    mode: u32,
) -> Result<()> {
    let mut text = existing.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    let (mode, owner) = match fstatat(etc, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == SFlag::S_IFREG => {
            (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid)))
        }
        _ => (mode, None),
    };
    replace_file(etc, "/etc", name, text.as_bytes(), mode, owner)
}

/// The terminfo directories of a box, in the order ncurses usually searches them (Debian's
/// build; other distributions use a subset, and a missing directory is skipped).
pub const BOX_TERMINFO: &[&str] = &["/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo"];

/// `TERMINFO_DIRS` of a session: the box's databases first (a list the image's environment
/// sets, then the usual directories), then the host's, reached through `/run/host` (the host's
/// own `TERMINFO_DIRS` and `TERMINFO`, then the usual directories), so a terminal that only the
/// host knows (kitty, foot, alacritty...) still works in the box. The host's files are read
/// only there: they belong to ids the box does not map. Strings only, for the join's hot path.
pub fn terminfo_dirs(
    image: Option<&str>,
    host_dirs: Option<&OsStr>,
    host_terminfo: Option<&OsStr>,
) -> OsString {
    let mut list: Vec<OsString> = Vec::new();
    let mut add = |d: OsString| {
        if !d.is_empty() && !list.contains(&d) {
            list.push(d);
        }
    };
    for d in image.unwrap_or_default().split(':') {
        add(d.into());
    }
    for d in BOX_TERMINFO {
        add(OsString::from(d));
    }
    let host_lists = [
        host_dirs.map(OsStr::as_bytes),
        host_terminfo.map(OsStr::as_bytes),
    ];
    for d in host_lists
        .into_iter()
        .flatten()
        .flat_map(|l| l.split(|&b| b == b':'))
    {
        if d.starts_with(b"/") {
            add(host(Path::new(OsStr::from_bytes(d))).into_os_string());
        }
    }
    for d in BOX_TERMINFO {
        add(host(Path::new(d)).into_os_string());
    }
    list.join(OsStr::new(":"))
}

/// The sudoers rule that lets the user run anything as root in the box without a password:
/// its file name in `/etc/sudoers.d` and its text. sudo skips files whose name holds a `.`, so
/// the name keeps only letters, digits, `_` and `-`; a user name sudoers would need quoted is
/// written as `#UID`.
pub fn sudoers_rule(u: &HostUser) -> (String, String) {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    let file: String = u
        .name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let nameable = u
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && u.name.chars().all(|c| plain(c) || c == '.');
    let who = if nameable {
        u.name.clone()
    } else {
        format!("#{}", u.uid)
    };
    (
        format!("devbox-{file}"),
        format!(
            "# Written by devbox at the box's first start: {who} may run anything as root in this\n\
# box without a password. The box's root is one of your subordinate ids, not the host's root.\n\
{who} ALL=(ALL) NOPASSWD: ALL\n"
        ),
    )
}

/// Writes the user's rule into the box's own `/etc/sudoers.d` (made 0750 if missing; refused
/// if it is a symlink), mode 0440, owned by the caller (in-box root at box start), as
/// `replace_file` says; `root` is the box's root. It is written whether sudo is installed or
/// not, so sudo installed later works at once; no password is set or changed. Returns the
/// rule's path in the box.
pub fn write_sudoers(root: BorrowedFd<'_>, u: &HostUser) -> Result<PathBuf> {
    let etc = open_own_dir(root, "etc", OFlag::O_PATH)?;
    let made = match mkdirat(&etc, "sudoers.d", Mode::from_bits_truncate(0o750)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e).context("cannot create /etc/sudoers.d in the box"),
    };
    // Opened for reading only to set the mode of a directory devbox just made.
    let flags = if made { OFlag::O_RDONLY } else { OFlag::O_PATH };
    let dir = open_own_dir(root, "etc/sudoers.d", flags)?;
    if made {
        fchmod(&dir, Mode::from_bits_truncate(0o750))
            .context("cannot set the mode of /etc/sudoers.d in the box")?;
    }
    let (name, text) = sudoers_rule(u);
    replace_file(
        dir.as_fd(),
        "/etc/sudoers.d",
        &name,
        text.as_bytes(),
        0o440,
        None,
    )?;
    Ok(Path::new("/etc/sudoers.d").join(name))
}

/// The calling user as the box should know them.
#[derive(Debug, Clone)]
pub struct HostUser {
    pub name: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl HostUser {
    /// What joining a box needs (ids, name, home), from the process and its environment
    /// without a passwd lookup when $USER and $HOME are set: the hot path stays a few syscalls.
    pub fn for_session() -> HostUser {
        let uid = nix::unistd::getuid().as_raw();
        let name = std::env::var("USER").ok().filter(|n| !n.is_empty());
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        match (name, home) {
            (Some(name), Some(home)) => HostUser {
                uid,
                gid: nix::unistd::getgid().as_raw(),
                group: name.clone(),
                name,
                gecos: String::new(),
                home,
                shell: PathBuf::from("/bin/sh"),
            },
            _ => HostUser::current(),
        }
    }

    pub fn current() -> HostUser {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let pw = nix::unistd::User::from_uid(uid).ok().flatten();
        let name = crate::paths::user_name(uid.as_raw());
        let group = nix::unistd::Group::from_gid(gid)
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| name.clone());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| pw.as_ref().map(|p| p.dir.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        HostUser {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            gecos: pw
                .as_ref()
                .map(|p| p.gecos.to_string_lossy().replace(':', " "))
                .unwrap_or_default(),
            shell: pw.map(|p| p.shell).unwrap_or_else(|| "/bin/sh".into()),
            name,
            group,
            home,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn view() -> HostView {
        HostView {
            home: "/home/alice".into(),
            isolated_home: None,
            project_dir: None,
            runtime_dir: Some("/run/user/1000".into()),
            resolv_conf: true,
            hosts: None,
        }
    }

    #[test]
    fn shared_namespaces_bind_the_hosts_proc_and_sys() {
        let ops = plan(&[], &view(), &[]);
        assert_eq!(
            ops,
            vec![
                Op::Rbind {
                    src: "/run/host/proc".into(),
                    dst: "/proc".into()
                },
                Op::Rbind {
                    src: "/run/host/sys".into(),
                    dst: "/sys".into()
                },
                Op::Rbind {
                    src: "/run/host/dev".into(),
                    dst: "/dev".into()
                },
                Op::Rbind {
                    src: "/run/host/tmp".into(),
                    dst: "/tmp".into()
                },
                Op::Rbind {
                    src: "/run/host/home/alice".into(),
                    dst: "/home/alice".into()
                },
                Op::Rbind {
                    src: "/run/host/run/user/1000".into(),
                    dst: "/run/user/1000".into()
                },
                Op::BindFile {
                    src: "/run/host/etc/resolv.conf".into(),
                    dst: "/etc/resolv.conf".into()
                },
            ]
        );
    }

    #[test]
    fn isolated_pid_and_net_get_fresh_proc_and_sys() {
        let ops = plan(&[Isolate::Pid, Isolate::Net], &view(), &[]);
        assert_eq!(
            ops[0],
            Op::Proc {
                dst: "/proc".into()
            }
        );
        assert_eq!(ops[1], Op::Sysfs { dst: "/sys".into() });
    }

    #[test]
    fn an_isolated_home_replaces_the_host_home_and_keeps_the_project() {
        let mut v = view();
        v.isolated_home = Some("/home/alice/homes/proj".into());
        v.project_dir = Some("/home/alice/code/proj".into());
        let ops = plan(&[], &v, &[]);
        let i = ops
            .iter()
            .position(|o| matches!(o, Op::Rbind { dst, .. } if dst == Path::new("/home/alice")))
            .unwrap();
        assert_eq!(
            ops[i],
            Op::Rbind {
                src: "/run/host/home/alice/homes/proj".into(),
                dst: "/home/alice".into()
            }
        );
        assert_eq!(
            ops[i + 1],
            Op::Rbind {
                src: "/run/host/home/alice/code/proj".into(),
                dst: "/home/alice/code/proj".into()
            }
        );
    }

    #[test]
    fn user_mounts_come_last_from_the_host_root() {
        let m = crate::state::MountSpec {
            host: "/srv/data".into(),
            target: "/data".into(),
            readonly: true,
        };
        let ops = plan(&[], &view(), &[m]);
        assert_eq!(
            ops.last(),
            Some(&Op::UserMount {
                src: "/run/host/srv/data".into(),
                dst: "/data".into(),
                readonly: true
            })
        );
    }

    #[test]
    fn overlay_options_escape_special_characters() {
        assert_eq!(
            overlay_options(Path::new("/a,b"), Path::new("/c:d"), Path::new("/e\\f")),
            "lowerdir=/a\\,b,upperdir=/c\\:d,workdir=/e\\\\f,userxattr"
        );
    }

    #[test]
    fn terminfo_dirs_put_the_box_first_then_the_host() {
        let both = "/etc/terminfo:/lib/terminfo:/usr/share/terminfo:\
/run/host/etc/terminfo:/run/host/lib/terminfo:/run/host/usr/share/terminfo";
        assert_eq!(terminfo_dirs(None, None, None), OsString::from(both));
        // The host's own settings are host paths: they are looked up under /run/host, after
        // the box's directories and before the host's usual ones.
        let got = terminfo_dirs(
            Some("/opt/ti:"),
            Some(OsStr::new("/nix/ti::relative:/etc/terminfo")),
            Some(OsStr::new("/usr/lib/kitty/terminfo")),
        );
        assert_eq!(
            got,
            OsString::from(
                "/opt/ti:/etc/terminfo:/lib/terminfo:/usr/share/terminfo:\
/run/host/nix/ti:/run/host/etc/terminfo:/run/host/usr/lib/kitty/terminfo:\
/run/host/lib/terminfo:/run/host/usr/share/terminfo"
            )
        );
    }

    fn alice() -> HostUser {
        HostUser {
            name: "alice".into(),
            group: "alice".into(),
            uid: 1000,
            gid: 1000,
            gecos: "Alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn the_sudoers_rule_names_the_user_in_a_file_sudo_reads() {
        let (file, text) = sudoers_rule(&alice());
        assert_eq!(file, "devbox-alice");
        assert!(
            text.ends_with("\nalice ALL=(ALL) NOPASSWD: ALL\n"),
            "{text}"
        );
        let mut u = alice();
        u.name = "john.doe".into();
        let (file, text) = sudoers_rule(&u);
        assert_eq!(file, "devbox-john_doe");
        assert!(text.contains("\njohn.doe ALL=(ALL)"), "{text}");
        u.name = "1x@corp".into();
        let (file, text) = sudoers_rule(&u);
        assert_eq!(file, "devbox-1x_corp");
        assert!(text.contains("\n#1000 ALL=(ALL) NOPASSWD: ALL\n"), "{text}");
    }

    /// A box's root in a temporary directory, with an `etc`, and its fd.
    fn box_root() -> (tempfile::TempDir, OwnedFd) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        let fd = open_root(root.path()).unwrap();
        (root, fd)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn is_file(p: &Path) -> bool {
        fs::symlink_metadata(p).unwrap().file_type().is_file()
    }

    #[test]
    fn the_sudoers_file_is_0440_in_a_0750_directory() {
        use std::os::unix::fs::PermissionsExt;
        let (root, fd) = box_root();
        let path = write_sudoers(fd.as_fd(), &alice()).unwrap();
        assert_eq!(path, Path::new("/etc/sudoers.d/devbox-alice"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let file = root.path().join("etc/sudoers.d/devbox-alice");
        assert_eq!(mode(&file), 0o440);
        assert_eq!(mode(&root.path().join("etc/sudoers.d")), 0o750);
        // Written again over the read-only file: replaced, nothing left behind.
        write_sudoers(fd.as_fd(), &alice()).unwrap();
        assert_eq!(names(&root.path().join("etc/sudoers.d")), ["devbox-alice"]);
    }

    #[test]
    fn files_replace_links_planted_at_their_names_and_never_write_through_them() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let (root, fd) = box_root();
        let r = root.path();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(r.join("etc/shadow"), "root:*:::::::\n").unwrap();
        fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        // At the temporary names devbox used to write, and at the final names.
        for name in [
            "etc/passwd.devbox-tmp",
            "etc/group",
            "etc/shadow.devbox-tmp",
        ] {
            symlink(&victim, r.join(name)).unwrap();
        }
        fs::create_dir_all(r.join("etc/sudoers.d")).unwrap();
        symlink(&victim, r.join("etc/sudoers.d/devbox-alice")).unwrap();
        symlink(&victim, r.join("etc/sudoers.d/.devbox-alice.devbox-tmp")).unwrap();
        fs::create_dir(r.join("run")).unwrap();
        symlink(&victim, r.join("run/.containerenv")).unwrap();

        ensure_user(fd.as_fd(), &alice()).unwrap();
        write_sudoers(fd.as_fd(), &alice()).unwrap();
        write_file(
            fd.as_fd(),
            "run",
            ".containerenv",
            b"engine=\"devbox\"\n",
            0o644,
        )
        .unwrap();

        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(names(outside.path()), ["victim"]);
        let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("\nalice:x:1000:"));
        assert!(fs::read_to_string(r.join("etc/shadow"))
            .unwrap()
            .ends_with("\nalice:*:::::::\n"));
        let mode = fs::metadata(r.join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
        // The group link named a host path: in the box it names nothing, so the group file is
        // made anew.
        assert_eq!(
            fs::read_to_string(r.join("etc/group")).unwrap(),
            "alice:x:1000:\n"
        );
        for f in [
            "etc/passwd",
            "etc/group",
            "etc/shadow",
            "etc/sudoers.d/devbox-alice",
            "run/.containerenv",
        ] {
            assert!(is_file(&r.join(f)), "{f}");
        }
        // Only the planted links are left of temporary names.
        assert_eq!(
            names(&r.join("etc")),
            [
                "group",
                "passwd",
                "passwd.devbox-tmp",
                "shadow",
                "shadow.devbox-tmp",
                "sudoers.d"
            ]
        );
        assert_eq!(
            names(&r.join("etc/sudoers.d")),
            [".devbox-alice.devbox-tmp", "devbox-alice"]
        );
    }

    #[test]
    fn directories_that_are_links_are_not_written_into() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        let (root, fd) = box_root();
        let r = root.path();
        symlink(outside.path(), r.join("etc/sudoers.d")).unwrap();
        symlink(outside.path(), r.join("run")).unwrap();
        let err = format!("{:#}", write_sudoers(fd.as_fd(), &alice()).unwrap_err());
        assert!(
            err.contains("/etc/sudoers.d") && err.contains("symlink"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            write_file(fd.as_fd(), "run", "x", b"", 0o644).unwrap_err()
        );
        assert!(err.contains("/run") && err.contains("symlink"), "{err}");
        let err = format!("{:#}", make_host_dir(fd.as_fd()).unwrap_err());
        assert!(err.contains("/run") && err.contains("symlink"), "{err}");

        let (root, fd) = box_root();
        fs::remove_dir(root.path().join("etc")).unwrap();
        symlink(outside.path(), root.path().join("etc")).unwrap();
        let err = format!("{:#}", ensure_user(fd.as_fd(), &alice()).unwrap_err());
        assert!(err.contains("/etc") && err.contains("symlink"), "{err}");
        assert!(names(outside.path()).is_empty());
    }

    #[test]
    fn the_host_mount_point_is_made_once() {
        let (root, fd) = box_root();
        make_host_dir(fd.as_fd()).unwrap();
        make_host_dir(fd.as_fd()).unwrap();
        assert!(root.path().join("run/host").is_dir());
    }

    #[test]
    fn box_paths_follow_links_inside_the_box_but_never_into_run_host() {
        use std::os::unix::fs::symlink;
        let (root, fd) = box_root();
        let r = root.path();
        let fd = fd.as_fd();
        fs::create_dir_all(r.join("var/home")).unwrap();
        fs::create_dir_all(r.join("run/host/etc")).unwrap();
        symlink("var/home", r.join("home")).unwrap();
        symlink("/var/home", r.join("srv")).unwrap();
        symlink("../../../../var", r.join("up")).unwrap();
        assert_eq!(
            ensure_dir(fd, Path::new("/home/alice")).unwrap(),
            Path::new("/var/home/alice")
        );
        assert!(r.join("var/home/alice").is_dir());
        assert_eq!(
            ensure_dir(fd, Path::new("/srv/bob")).unwrap(),
            Path::new("/var/home/bob")
        );
        assert_eq!(
            ensure_dir(fd, Path::new("/up/home")).unwrap(),
            Path::new("/var/home")
        );

        symlink("/run/host/etc", r.join("mnt")).unwrap();
        symlink("../run/./host/etc/..", r.join("mnt2")).unwrap();
        symlink("/run/host/etc/passwd", r.join("etc/passwd")).unwrap();
        for p in ["/mnt", "/mnt/x", "/mnt2/x", "/run/host/x", "/run/host"] {
            let err = format!("{:#}", ensure_dir(fd, Path::new(p)).unwrap_err());
            assert!(err.contains(p) && err.contains("/run/host"), "{err}");
        }
        let err = format!("{:#}", ensure_file(fd, Path::new("/mnt/f")).unwrap_err());
        assert!(err.contains("/run/host"), "{err}");
        let err = format!("{:#}", ensure_user(fd, &alice()).unwrap_err());
        assert!(
            err.contains("/etc/passwd") && err.contains("/run/host"),
            "{err}"
        );
        assert_eq!(names(&r.join("run/host")), ["etc"]);
        assert!(names(&r.join("run/host/etc")).is_empty());

        symlink("loop", r.join("loop")).unwrap();
        let err = format!("{:#}", ensure_dir(fd, Path::new("/loop")).unwrap_err());
        assert!(err.contains("too many levels of symlinks"), "{err}");
    }

    #[test]
    fn files_read_and_mounted_on_follow_links_inside_the_box() {
        use std::os::unix::fs::symlink;
        let (root, fd) = box_root();
        let r = root.path();
        let fd = fd.as_fd();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        fs::create_dir_all(r.join("usr/share")).unwrap();
        fs::write(r.join("usr/share/group"), "root:x:0:\n").unwrap();
        symlink("../usr/share/group", r.join("etc/group")).unwrap();
        assert_eq!(
            read_file(fd, Path::new("/etc/group")).unwrap().as_deref(),
            Some("root:x:0:\n")
        );
        assert_eq!(read_file(fd, Path::new("/etc/nothing")).unwrap(), None);
        assert!(read_file(fd, Path::new("/usr")).is_err());

        // A link where a file is mounted on is replaced by an empty file, in the box.
        symlink(&victim, r.join("etc/resolv.conf")).unwrap();
        assert_eq!(
            ensure_file(fd, Path::new("/etc/resolv.conf")).unwrap(),
            Path::new("/etc/resolv.conf")
        );
        assert!(is_file(&r.join("etc/resolv.conf")));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        // Missing directories on the way are made.
        assert_eq!(
            ensure_file(fd, Path::new("/opt/a/b")).unwrap(),
            Path::new("/opt/a/b")
        );
        assert!(is_file(&r.join("opt/a/b")));
    }

    #[test]
    fn passwd_entries_are_added_only_when_missing() {
        let u = HostUser {
            name: "alice".into(),
            group: "alice".into(),
            uid: 1000,
            gid: 1000,
            gecos: "Alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        };
        let base = "root:x:0:0:root:/root:/bin/sh\n";
        assert_eq!(
            passwd_line(base, &u).unwrap(),
            "alice:x:1000:1000:Alice:/home/alice:/bin/bash"
        );
        assert!(passwd_line("alice:x:1001:1001::/h:/bin/sh\n", &u).is_none());
        assert!(passwd_line("bob:x:1000:1000::/h:/bin/sh\n", &u).is_none());
        assert_eq!(
            shadow_line("root:*:19000:0:99999:7:::\n", "alice").unwrap(),
            "alice:*:::::::"
        );
        assert!(shadow_line("alice:!:19000::::::\n", "alice").is_none());
    }

    #[test]
    fn the_box_name_is_added_to_hosts_once() {
        let host = "127.0.0.1 localhost\n# 127.0.0.1 web\n";
        assert_eq!(
            hosts_for_box(host, "web"),
            "127.0.0.1 localhost\n# 127.0.0.1 web\n127.0.1.1\tweb\n"
        );
        let named = "127.0.0.1 localhost web\n";
        assert_eq!(hosts_for_box(named, "web"), named);
        assert_eq!(hosts_for_box("", "web"), "127.0.1.1\tweb\n");
    }
}
