//! Where devbox keeps things, and the small file-system habits every module shares: private
//! directories, atomic writes and lock files.
//!
//! Layout (versioned so a future layout can live beside this one):
//!   $XDG_DATA_HOME/devbox/images-v1/<sha256>/{rootfs/,image.toml}   unpacked images (read-only use)
//!   $XDG_DATA_HOME/devbox/boxes-v1/<name>/{box.toml,upper/,work/,merged/}
//!   $XDG_CACHE_HOME/devbox/downloads-v1/                              downloaded archives
//!   $XDG_RUNTIME_DIR/devbox/ (or /tmp/devbox-<uid>/)                 holder pid, locks, ns/ mount

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
    pub runtime: PathBuf,
}

impl Dirs {
    /// Resolves the directories from the environment without creating anything.
    pub fn from_env() -> Result<Dirs> {
        let base = directories::BaseDirs::new()
            .context("cannot determine your home directory: set $HOME")?;
        let data = base.data_dir().join("devbox");
        let cache = base.cache_dir().join("devbox");
        let uid = nix::unistd::getuid().as_raw();
        let runtime = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => {
                PathBuf::from(d).join("devbox")
            }
            _ => PathBuf::from(format!("/tmp/devbox-{uid}")),
        };
        Ok(Dirs {
            images: data.join("images-v1"),
            boxes: data.join("boxes-v1"),
            data,
            cache,
            runtime,
        })
    }

    /// Creates the store directories (0700) if needed.
    pub fn ensure_store(&self) -> Result<()> {
        for d in [&self.data, &self.images, &self.boxes] {
            private_dir(d)?;
        }
        Ok(())
    }

    /// Creates (0700) and checks the runtime directory: it must be a real directory owned by us
    /// and closed to everyone else, since it holds the way into our boxes.
    pub fn ensure_runtime(&self) -> Result<()> {
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

    /// Runtime record of a started box (init pid, namespace inode), host-visible.
    pub fn box_run_file(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("box-{name}.run"))
    }

    /// The /etc/hosts of a started box (the host's, with the box's name).
    pub fn box_hosts_file(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("box-{name}.hosts"))
    }
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
