//! Locks, claimed work directories and leftovers of interrupted commands.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::paths::{Dirs, Lock};
use crate::progress::human_bytes;

use super::*;

// ---------------------------------------------------------------------------------------------
// Leftovers of interrupted commands
//
// Every temp dir a devbox command makes is marked as in use for as long as the command lives,
// so that a sweep (run by the next command that takes the store lock, and by `image prune`)
// removes only those whose command is gone:
//
//   images-v1/.tmp-PID-N       an import's staging dir         flock on the dir (claim_dir)
//   images-v1/.tmp-rm-ID       an image being removed          flock on the dir (remove_image)
//   boxes-v1/.tmp-NAME-PID     a box being assembled           flock on the dir (claim_dir)
//   boxes-v1/.trash-NAME-PID   a box being removed             flock on the dir (remove_box_dir)
//   CACHE/layout-PID-N         an image layout archive, read   flock on the dir (claim_dir)
//   RUNTIME/doctor-PID-START-X doctor's overlay probe          its name: the pid and start time
//                                                              of the doctor (Scratch)
//
// A flock is released by the kernel when its process dies, however it dies. Dirs are made and
// flocked under the store lock and looked over under it, so a sweep never sees one between its
// mkdir and its flock; a dir that is renamed into a leftover's name is flocked before the
// rename. A sweep takes each stale dir's flock itself and holds it while it removes the dir, so
// two sweeps never work on one dir.
// ---------------------------------------------------------------------------------------------

/// The lock of the image store (`images-v1/.lock`), held to make, rename and look over its
/// temp dirs.
pub(crate) fn store_lock(dirs: &Dirs) -> Result<Lock> {
    Lock::acquire(&dirs.images.join(".lock"), "the image store", 600)
}

/// The store lock when there is a store (without one there is nothing of it to look over, and
/// a look makes none).
pub(super) fn store_lock_if_any(dirs: &Dirs) -> Result<Option<Lock>> {
    if dirs.images.is_dir() {
        store_lock(dirs).map(Some)
    } else {
        Ok(None)
    }
}

/// An exclusive flock on a directory, held until dropped.
pub struct Claim {
    pub(super) _held: nix::fcntl::Flock<std::fs::File>,
}

/// Opens a directory (not following a symlink) for its flock.
pub(super) fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Takes the flock of an existing directory, waiting up to ten seconds for another devbox
/// command that holds it.
pub(super) fn lock_dir(path: &Path, what: &str) -> Result<Claim> {
    use nix::fcntl::{Flock, FlockArg};
    let mut file = open_dir(path).with_context(|| format!("cannot open {}", path.display()))?;
    let start = std::time::Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Claim { _held: held }),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed().as_secs() < 10 => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "{what} is busy: another devbox command is working on {}\n  hint: wait for it to finish, or find it with `fuser {}`",
                path.display(),
                path.display()
            ),
            Err((_, e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Makes the temp dir `dir` (0700) and flocks it, both under the store lock, so that no sweep
/// of leftovers takes it while the returned claim lives. Sweeps on the way: stale leftovers
/// found under the lock are removed after it is released (one of the same name at once).
pub fn claim_dir(dirs: &Dirs, dir: &Path) -> Result<Claim> {
    use std::os::unix::fs::DirBuilderExt;
    let (claim, stale) = {
        let store = store_lock(dirs)?;
        let mut stale = scan(dirs, Some(&store));
        if let Some(i) = stale.iter().position(|l| l.path == dir) {
            // The same name (a reused pid): it must go before the name can be taken.
            let same = stale.swap_remove(i);
            remove_leftover(&same)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let claim = lock_dir(dir, &dir.display().to_string())?;
        (claim, stale)
    };
    report_in_passing(&remove_leftovers(dirs, stale, false));
    Ok(claim)
}

/// A temp dir of this devbox ([`claim_dir`]), removed through the removal helper when dropped.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    pub(super) _held: Claim,
}

impl WorkDir {
    /// `parent/PREFIX-PID-N`.
    pub(super) fn new(dirs: &Dirs, parent: &Path, prefix: &str) -> Result<WorkDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = parent.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let held = claim_dir(dirs, &path)?;
        Ok(WorkDir { path, _held: held })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            eprintln!("devbox: {e:#}");
        }
    }
}

/// A scratch dir named after the process that uses it, `PARENT/PREFIX-PID-STARTTIME-XXXXXX`,
/// for places outside the store (no store lock, no removal helper): it is stale once that
/// process is gone. Its files must be the user's own; it is removed when dropped, also on
/// error paths.
pub struct Scratch {
    pub(super) path: PathBuf,
}

impl Scratch {
    pub fn new(parent: &Path, prefix: &str) -> Result<Scratch> {
        let pid = std::process::id();
        let start = crate::runtime::holder::start_time(pid as i32)
            .context("cannot read this process's start time from /proc")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-{pid}-{start}-"))
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a scratch dir in {}", parent.display()))?;
        Ok(Scratch { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_own_tree(&self.path) {
            eprintln!("devbox: cannot remove {}: {e:#}", self.path.display());
        }
    }
}

/// Whether a scratch dir's name (`PREFIX-PID-STARTTIME-XXXXXX`) names a living process. A name
/// of the older form (`PREFIX-XXXXXX`, without the process) counts as in use for a minute.
pub(super) fn scratch_in_use(name: &str, path: &Path) -> bool {
    let mut parts = name.splitn(4, '-').skip(1);
    let pid = parts.next().and_then(|p| p.parse::<i32>().ok());
    let start = parts.next().and_then(|s| s.parse::<u64>().ok());
    match (pid, start, parts.next()) {
        (Some(pid), Some(start), Some(_)) => crate::runtime::holder::alive(pid, start),
        _ => std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 60)),
    }
}

/// Removes a tree of the user's own files, making its directories writable first (an overlay's
/// `work/work` is made with mode 0).
pub(super) fn remove_own_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn open_up(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&e.path());
                }
            }
        }
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// What a leftover was left by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Left {
    Import,
    ImageRm,
    Create,
    Rm,
    Layout,
    Doctor,
}

impl Left {
    fn by(self) -> &'static str {
        match self {
            Left::Import => "an interrupted image import",
            Left::ImageRm => "an interrupted image removal",
            Left::Create => "an interrupted create",
            Left::Rm => "an interrupted rm",
            Left::Layout => "an interrupted import of an image archive",
            Left::Doctor => "an interrupted doctor",
        }
    }
}

/// A stale leftover, claimed by the sweep that found it (its flock held) until dropped.
pub(super) struct Leftover {
    pub(super) path: PathBuf,
    pub(super) left: Left,
    pub(super) _claim: Claim,
}

/// Finds the leftovers whose command is gone and claims them: with `store`, the store lock,
/// in the store and the cache; in any case the doctor's scratch dirs, which need no lock.
pub(super) fn scan(dirs: &Dirs, store: Option<&Lock>) -> Vec<Leftover> {
    let mut found = Vec::new();
    let mut places = vec![(&dirs.runtime, "doctor-", Left::Doctor)];
    if store.is_some() {
        places.extend([
            (&dirs.images, ".tmp-", Left::Import),
            (&dirs.boxes, ".tmp-", Left::Create),
            (&dirs.boxes, ".trash-", Left::Rm),
            (&dirs.cache, "layout-", Left::Layout),
        ]);
    }
    for (dir, prefix, left) in places {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if left == Left::Doctor && scratch_in_use(&name, &path) {
                continue;
            }
            let left = if left == Left::Import && name.starts_with(".tmp-rm-") {
                Left::ImageRm
            } else {
                left
            };
            let Ok(file) = open_dir(&path) else {
                continue;
            };
            // Held by the devbox that uses it (or by another sweep): not ours to remove.
            let Ok(held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            found.push(Leftover {
                path,
                left,
                _claim: Claim { _held: held },
            });
        }
    }
    found
}

/// What a sweep removed, or what a look found removable.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// Leftovers removed (or found).
    pub count: usize,
    /// Their disk use.
    pub bytes: u64,
    /// False when `bytes` counts only what the user could read: devbox's user namespace was
    /// not available to measure the files of subordinate ids, or nothing was measured.
    pub exact: bool,
    /// Leftovers that could not be removed, and why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Reclaimed {
    /// "N leftover(s) of interrupted devbox commands (SIZE)".
    pub fn describe(&self) -> String {
        format!(
            "{} leftover{} of interrupted devbox commands ({}{})",
            self.count,
            if self.count == 1 { "" } else { "s" },
            if self.exact { "" } else { "at least " },
            human_bytes(self.bytes)
        )
    }

    /// "SIZE reclaimable by `devbox image prune` (N leftover(s) of interrupted devbox commands)".
    pub fn reclaimable(&self) -> String {
        format!(
            "{}{} reclaimable by `devbox image prune` ({} leftover{} of interrupted devbox commands{})",
            if self.exact { "" } else { "at least " },
            human_bytes(self.bytes),
            self.count,
            if self.count == 1 { "" } else { "s" },
            if self.exact {
                ""
            } else {
                "; some files of subordinate ids could not be measured"
            }
        )
    }

    /// The error for leftovers that could not be removed, with what to do.
    pub fn failure(&self) -> Option<anyhow::Error> {
        let (first, _) = self.failed.first()?;
        let lines: Vec<String> = self
            .failed
            .iter()
            .map(|(p, why)| format!("  {}: {why}", p.display()))
            .collect();
        Some(anyhow::anyhow!(
            "cannot remove {} leftover{} of interrupted devbox commands:\n{}\n  hint: see `devbox doctor`; or remove one by hand with `devbox unshare -- rm -rf {}`",
            self.failed.len(),
            if self.failed.len() == 1 { "" } else { "s" },
            lines.join("\n"),
            first.display()
        ))
    }
}

/// Removes the leftovers of interrupted devbox commands whose command is gone (see the table
/// above), and returns what it reclaimed. With `measure`, their disk use is measured first (as
/// root of devbox's user namespace, in a forked child: only from a single-threaded process).
/// Leftovers that cannot be removed are listed in the result, not an error.
pub fn sweep_leftovers(dirs: &Dirs, measure: bool) -> Result<Reclaimed> {
    let stale = {
        let store = store_lock_if_any(dirs)?;
        scan(dirs, store.as_ref())
    };
    Ok(remove_leftovers(dirs, stale, measure))
}

/// [`sweep_leftovers`] on the way of another command (create, rm): what it could not remove
/// is said on stderr and left for the next sweep; the command goes on.
pub fn sweep_in_passing(dirs: &Dirs) {
    match sweep_leftovers(dirs, false) {
        Ok(r) => report_in_passing(&r),
        Err(e) => crate::ui::note(format_args!(
            "devbox: leftovers of interrupted commands were not looked at: {e:#}"
        )),
    }
}

pub(super) fn report_in_passing(r: &Reclaimed) {
    if r.count > 0 {
        crate::ui::detail(format_args!(
            "removed {} leftover{} of interrupted devbox commands",
            r.count,
            if r.count == 1 { "" } else { "s" }
        ));
    }
    for (path, why) in &r.failed {
        crate::ui::note(format_args!(
            "devbox: cannot remove {} (left by an interrupted command): {why}; `devbox image prune` tries again",
            path.display()
        ));
    }
}

/// The leftovers a sweep would remove now, measured, without removing anything.
pub fn leftovers(dirs: &Dirs) -> Result<Reclaimed> {
    let stale: Vec<PathBuf> = {
        let store = store_lock_if_any(dirs)?;
        scan(dirs, store.as_ref())
            .into_iter()
            .map(|l| l.path)
            .collect()
    };
    let mut r = Reclaimed {
        count: stale.len(),
        exact: true,
        ..Reclaimed::default()
    };
    if !stale.is_empty() {
        (r.bytes, r.exact) = measure_trees(dirs, &stale);
    }
    Ok(r)
}

pub(super) fn remove_leftovers(dirs: &Dirs, stale: Vec<Leftover>, measure: bool) -> Reclaimed {
    let mut r = Reclaimed {
        exact: measure,
        ..Reclaimed::default()
    };
    if stale.is_empty() {
        r.exact = true;
        return r;
    }
    if measure {
        let paths: Vec<PathBuf> = stale.iter().map(|l| l.path.clone()).collect();
        (r.bytes, r.exact) = measure_trees(dirs, &paths);
    }
    for l in &stale {
        match remove_leftover(l) {
            Ok(()) => {
                r.count += 1;
                crate::ui::detail(format_args!(
                    "removed {} (left by {})",
                    l.path.display(),
                    l.left.by()
                ));
            }
            Err(e) => r.failed.push((l.path.clone(), format!("{e:#}"))),
        }
    }
    r
}

pub(super) fn remove_leftover(l: &Leftover) -> Result<()> {
    match l.left {
        // Outside the store, and the user's own files.
        Left::Doctor => remove_own_tree(&l.path),
        _ => remove_tree(&l.path),
    }
}

/// Removes the doctor's stale scratch dirs (`RUNTIME/doctor-*`, see [`Scratch`]), which needs
/// no store lock; what could not be removed is said on stderr.
pub fn sweep_scratch(dirs: &Dirs) {
    report_in_passing(&remove_leftovers(dirs, scan(dirs, None), false));
}

/// The disk use of `paths` together, and whether all of it could be read: measured as root of
/// devbox's user namespace in a forked child (the process itself keeps its credentials), else
/// as the user, who may not read every directory of subordinate ids.
pub(super) fn measure_trees(dirs: &Dirs, paths: &[PathBuf]) -> (u64, bool) {
    match measure_as_root(dirs, paths) {
        Ok(total) => (total, true),
        Err(e) => {
            crate::ui::detail(format_args!(
                "measured the leftovers as the user only: {e:#}"
            ));
            (paths.iter().map(|p| disk_usage(p)).sum(), false)
        }
    }
}

pub(super) fn measure_as_root(dirs: &Dirs, paths: &[PathBuf]) -> Result<u64> {
    use crate::sys::Forked;
    use std::io::Write;
    use std::os::fd::OwnedFd;
    // Nothing buffered may be written twice (by the child too).
    std::io::stdout().flush()?;
    let (rx, tx): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match crate::sys::fork()? {
        Forked::Child => {
            drop(rx);
            let code = match crate::runtime::holder::as_namespace_root(dirs) {
                Ok(()) => {
                    let total: u64 = paths.iter().map(|p| disk_usage(p)).sum();
                    let mut out = std::fs::File::from(tx);
                    i32::from(out.write_all(total.to_string().as_bytes()).is_err())
                }
                Err(_) => 2,
            };
            std::process::exit(code);
        }
        Forked::Parent(child) => {
            drop(tx);
            let mut text = String::new();
            let _ = std::fs::File::from(rx).read_to_string(&mut text);
            match nix::sys::wait::waitpid(child, None)? {
                nix::sys::wait::WaitStatus::Exited(_, 0) => text
                    .trim()
                    .parse()
                    .context("the measuring child gave no number"),
                nix::sys::wait::WaitStatus::Exited(_, 2) => {
                    bail!("cannot enter devbox's user namespace")
                }
                other => bail!("the measuring child ended with {other:?}"),
            }
        }
    }
}

/// Deletes a tree that may hold files owned by subordinate ids, through the `__rmtree` helper.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let status = crate::runtime::helper("__rmtree")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("cannot run devbox's removal helper")?;
    if !status.success() {
        bail!("cannot remove {}", path.display());
    }
    Ok(())
}
