//! Where devbox keeps things, and the small file-system habits every module shares: private
//! directories, atomic writes and lock files.
//!
//! Layout (versioned so a future layout can live beside this one):
//!   $XDG_DATA_HOME/devbox/images-v1/<sha256>/{rootfs/,image.toml}   unpacked images (read-only use)
//!   $XDG_DATA_HOME/devbox/boxes-v1/<name>/{box.toml,upper/,work/,merged/,lock,run,hosts}
//!   $XDG_DATA_HOME/devbox/run/                                        holder record, ns/ mount point
//!   $XDG_CACHE_HOME/devbox/downloads-v1/                              downloaded archives
//!
//! devbox's runtime state lives in the store, not under `$XDG_RUNTIME_DIR`: every shell of the
//! user that uses the same store finds the same holder and the same boxes, whatever its
//! environment says (`su`, cron and ssh sessions differ in `XDG_RUNTIME_DIR`). The session's
//! `XDG_RUNTIME_DIR` is only what a box gets bound in, checked by [`session_runtime_dir`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub images: PathBuf,
    pub boxes: PathBuf,
    pub cache: PathBuf,
    /// devbox's runtime state for this store (`$DATA/devbox/run`): the holder's record and the
    /// mount point of its namespace tmpfs, import locks, scratch.
    pub runtime: PathBuf,
}

impl Dirs {
    /// Resolves the directories from the environment without creating anything.
    pub fn from_env() -> Result<Dirs> {
        let base = directories::BaseDirs::new()
            .context("cannot determine your home directory: set $HOME")?;
        let data = base.data_dir().join("devbox");
        let cache = base.cache_dir().join("devbox");
        Ok(Dirs {
            images: data.join("images-v1"),
            boxes: data.join("boxes-v1"),
            runtime: data.join("run"),
            data,
            cache,
        })
    }

    /// Creates the store directories (0700) if needed, after checking that no other user can
    /// rename anything on the way to them.
    pub fn ensure_store(&self) -> Result<()> {
        check_path_safe(&self.data, STORE_FIX)?;
        for d in [&self.data, &self.images, &self.boxes] {
            private_dir(d)?;
        }
        Ok(())
    }

    /// Creates (0700) and checks the runtime directory: it must be a real directory owned by us
    /// and closed to everyone else, since it holds the way into our boxes.
    pub fn ensure_runtime(&self) -> Result<()> {
        self.ensure_store()?;
        private_dir(&self.runtime)?;
        fs::create_dir_all(self.ns_dir())
            .with_context(|| format!("cannot create {}", self.ns_dir().display()))?;
        Ok(())
    }

    /// Directory that, inside the holder's mount namespace only, is a tmpfs holding the bind
    /// mounts of each running box's namespaces.
    pub fn ns_dir(&self) -> PathBuf {
        self.runtime.join("ns")
    }

    /// "PID STARTTIME" of the store's holder, written by the devbox that started it.
    pub fn holder_pid_file(&self) -> PathBuf {
        self.runtime.join("holder.pid")
    }

    pub fn box_dir(&self, name: &str) -> PathBuf {
        self.boxes.join(name)
    }

    pub fn image_dir(&self, id: &str) -> PathBuf {
        self.images.join(id)
    }

    pub fn lock_file(&self, what: &str) -> PathBuf {
        self.runtime.join(format!("{what}.lock"))
    }

    /// Serialises starting, stopping and removing box `name`; lives in the box's own directory,
    /// so it goes with the box.
    pub fn box_lock_file(&self, name: &str) -> PathBuf {
        self.box_dir(name).join("lock")
    }

    /// Runtime record of a started box (its init, its mount namespace), host-visible.
    pub fn box_run_file(&self, name: &str) -> PathBuf {
        self.box_dir(name).join("run")
    }

    /// The /etc/hosts of a started box (the host's, with the box's name).
    pub fn box_hosts_file(&self, name: &str) -> PathBuf {
        self.box_dir(name).join("hosts")
    }
}

/// What to do about a store in an unsafe place.
pub const STORE_FIX: &str = "keep devbox's store in a directory only you (or root) control, e.g. set XDG_DATA_HOME to one in your home";

/// Checks every existing directory on the way to `path` (the path itself included): each must
/// belong to us or to root, and one that others may write to must be sticky and not belong to
/// another user. Otherwise someone else could rename a directory of ours away and put their own
/// in its place. Symbolic links on the way are followed and their targets checked likewise.
pub fn check_path_safe(path: &Path, fix: &str) -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    // One walk over the path as written, up to where it ends (the rest devbox makes itself,
    // as the user, 0700); if a link or `..` was on the way, the resolved path is walked too.
    // This runs on every enter/run: a path without links costs one lstat per component.
    // Returns the part that exists, and whether it went through a link.
    let walk = |route: &Path| -> Result<(PathBuf, bool)> {
        let mut linked = false;
        let mut at = PathBuf::new();
        for comp in route.components() {
            linked |= comp == std::path::Component::ParentDir;
            let next = at.join(comp);
            let meta = match fs::symlink_metadata(&next) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot inspect {}", next.display()))
                }
            };
            linked |= meta.file_type().is_symlink();
            if let Some(why) = unsafe_dir_reason(&meta, uid) {
                bail!(
                    "{} {why}, so another user could replace what is below it\n  hint: {fix}",
                    next.display()
                );
            }
            at = next;
        }
        Ok((at, linked))
    };
    let (existing, linked) = walk(path)?;
    if linked && !existing.as_os_str().is_empty() {
        let resolved = fs::canonicalize(&existing)
            .with_context(|| format!("cannot resolve {}", existing.display()))?;
        walk(&resolved)?;
    }
    Ok(())
}

/// Why a directory (or link) with these attributes is unsafe for user `uid` to keep things in.
fn unsafe_dir_reason(meta: &fs::Metadata, uid: u32) -> Option<String> {
    let owner = meta.uid();
    if owner != uid && owner != 0 {
        return Some(format!(
            "belongs to uid {owner}, not to you (uid {uid}) or root"
        ));
    }
    if meta.file_type().is_symlink() {
        return None;
    }
    let writable_by_others = meta.mode() & 0o022 != 0;
    let sticky = meta.mode() & 0o1000 != 0;
    if writable_by_others && !sticky {
        return Some(format!(
            "may be written by other users (mode {:o}) without the sticky bit",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The session's runtime directory (`$XDG_RUNTIME_DIR`), which boxes get bound in: `None` when
/// it is unset or not an absolute path; an error when it is not the user's own (`su` without
/// `-` keeps the other user's), since binding it would hand that user's sockets to the box.
pub fn session_runtime_dir() -> Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    else {
        return Ok(None);
    };
    let meta = match fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "XDG_RUNTIME_DIR ({}) cannot be used\n  hint: it may be another user's (`su` without `-` keeps it): log in as yourself (`su - USER`, `sudo -iu USER`) or unset XDG_RUNTIME_DIR",
                    dir.display()
                )
            })
        }
    };
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        bail!(
            "XDG_RUNTIME_DIR ({}) belongs to uid {}, not to you (uid {uid}): it is another user's session directory\n  hint: `su` without `-` keeps the other user's; log in as yourself (`su - USER`, `sudo -iu USER`) or unset XDG_RUNTIME_DIR",
            dir.display(),
            meta.uid()
        );
    }
    check_path_safe(
        &dir,
        "log in so that your session directory is made for you (`su - USER`, `sudo -iu USER`), or unset XDG_RUNTIME_DIR",
    )
    .context("XDG_RUNTIME_DIR cannot be used")?;
    Ok(Some(dir))
}

/// Creates `dir` (and parents) and makes sure it is a directory owned by us with mode 0700.
pub fn private_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()))
                }
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
        Ok(_) => {}
    }
    check_private(dir)
}

/// Checks that an existing `dir` is a directory owned by us, closed to others (fixing the mode
/// if it is not). A missing `dir` passes: `private_dir` makes it.
pub fn check_private(dir: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
    };
    let uid = nix::unistd::getuid().as_raw();
    if !meta.is_dir() {
        bail!(
            "{} is not a directory\n  hint: move it away; devbox keeps private state there",
            dir.display()
        );
    }
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to you (uid {uid})\n  hint: another user created it; remove it or set XDG_RUNTIME_DIR / XDG_DATA_HOME to a directory of your own",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (chmod 0700)", dir.display()))?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically: a temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// [`write_atomic`] for a file the user shares (devbox.lock, meant for version control): its
/// mode is a new file's under the umask (0644 usually), not the temp file's 0600.
pub fn write_atomic_shared(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(contents)?;
    set_umask_mode(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Gives `file` the mode a new file gets under the process's umask (0666 & !umask).
pub fn set_umask_mode(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // umask(2) can only be read by setting it; it is set back at once.
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(umask);
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !umask.bits()))?;
    Ok(())
}

/// Marks `dir` as a cache (CACHEDIR.TAG, <https://bford.info/cachedir/>), so backup tools can
/// skip it; does nothing if it is marked already. Best effort: a cache works without it.
pub fn mark_cache_dir(dir: &Path) {
    let tag = dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        let _ = write_atomic(
            &tag,
            b"Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a cache made by devbox; it can be deleted.\n# For information about cache directory tags see https://bford.info/cachedir/\n",
        );
    }
}

/// An exclusive advisory lock (flock) held until dropped.
pub struct Lock {
    _held: nix::fcntl::Flock<File>,
}

impl Lock {
    /// Takes the lock at `path`, waiting up to `wait_secs` and telling the user once if it waits.
    pub fn acquire(path: &Path, what: &str, wait_secs: u64) -> Result<Lock> {
        use nix::fcntl::{Flock, FlockArg};
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(Lock { _held: held }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = f;
                    if start.elapsed().as_secs() >= wait_secs {
                        bail!(
                            "{what} is busy: another devbox command holds {} (waited {wait_secs}s)\n  hint: wait for it to finish, or find it with `fuser {}`",
                            path.display(),
                            path.display()
                        );
                    }
                    if !told && start.elapsed().as_millis() > 500 {
                        eprintln!("devbox: waiting for another devbox command ({what})...");
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }
}

/// The login name of `uid` from the host's passwd database, or the number as text.
pub fn user_name(uid: u32) -> String {
    if let Ok(name) = std::env::var("USER") {
        if nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .is_some_and(|u| u.uid.as_raw() == uid)
        {
            return name;
        }
    }
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Drops `.` components and repeated slashes (lexically: links and `..` are left alone).
pub fn clean_path(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
