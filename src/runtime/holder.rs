//! The per-user holder process: it owns devbox's user namespace and a mount namespace of its own
//! in which a tmpfs (over `$RUNTIME/ns`) holds bind mounts of every running box's namespaces.
//! An unprivileged user cannot bind-mount into the host's mount namespace, so this is where the
//! boxes' namespaces persist by name without any process of the user's inside them.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

use crate::idmap::Mapping;
use crate::paths::{write_atomic, Dirs, Lock};
use crate::runtime::userns;
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub start_time: u64,
}

/// The start time of a living process (clock ticks since boot), which with the pid identifies
/// it. None for a process that is gone or a zombie (killed but not yet reaped).
pub fn start_time(pid: i32) -> Option<u64> {
    let mut buf = [0u8; 2048];
    let stat = read_small(format!("/proc/{pid}/stat").as_ref(), &mut buf).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Reads a file of at most `buf.len()` bytes as text, in one `read` or a few. `read_to_string`
/// first asks for the size, which a `/proc` file does not have, and then reads in growing steps
/// from 32 bytes: nine system calls for one line, on every warm `devbox run`.
fn read_small<'a>(path: &std::path::Path, buf: &'a mut [u8]) -> std::io::Result<&'a str> {
    use std::io::{Error, Read};
    let mut file = std::fs::File::open(path)?;
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if len == buf.len() {
            return Err(Error::new(ErrorKind::InvalidData, "file too long"));
        }
    }
    std::str::from_utf8(&buf[..len]).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

/// True when `pid` runs with the recorded start time (not a recycled pid).
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && start_time(pid) == Some(start)
}

impl Holder {
    /// The store's running holder, if any: the one its record in the store names, alive with
    /// the recorded start time. A holder keeps a lock on the store's directory for as long as
    /// it lives, so there is never more than one per store, whatever the environment of the
    /// commands that look for it.
    pub fn current(dirs: &Dirs) -> Result<Option<Holder>> {
        let path = dirs.holder_pid_file();
        let mut buf = [0u8; 64];
        let text = match read_small(&path, &mut buf) {
            Ok(t) => t,
            // A record that is not one (too long, not text) names no holder, like one whose
            // numbers do not parse.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        if let (Some(Some(pid)), Some(Some(start))) = (it.next(), it.next()) {
            if alive(pid as i32, start) {
                return Ok(Some(Holder {
                    pid: pid as i32,
                    start_time: start,
                }));
            }
        }
        Ok(None)
    }

    /// The running holder, started if needed.
    pub fn ensure(dirs: &Dirs) -> Result<Holder> {
        // The hot path: the store's path is checked (nobody else can swap a directory on the
        // way), then the record. A record planted by someone else could not be used anyway:
        // another user's /proc/PID/ns files are closed to us.
        crate::paths::check_path_safe(&dirs.data, crate::paths::STORE_FIX)?;
        crate::paths::check_private(&dirs.runtime)?;
        if let Some(h) = Self::current(dirs)? {
            return Ok(h);
        }
        dirs.ensure_runtime()?;
        let _lock = Lock::acquire(&dirs.lock_file("holder-start"), "the holder", 30)?;
        if let Some(h) = Self::current(dirs)? {
            return Ok(h);
        }
        let mut cmd = crate::runtime::helper("__holder");
        cmd.arg(dirs.ns_dir())
            .arg(&dirs.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(crate::ui::helper_stderr())
            .current_dir("/");
        sys::spawn_in_new_session(&mut cmd);
        let mut child = cmd
            .spawn()
            .context("cannot start devbox's holder process")?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let line = line.trim_end();
        let pid = if let Some(other) = line.strip_prefix("held ") {
            // A holder lives whose record was lost (a devbox killed between starting it and
            // writing the record, or a removed file): it is the store's holder; record it.
            let _ = child.wait();
            other
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 0)
                .context("devbox's holder process gave a bad answer")?
        } else if line == "ok" {
            child.id() as i32
        } else {
            let _ = child.wait();
            let msg = line.strip_prefix("error: ").unwrap_or(line);
            if msg.is_empty() {
                bail!("devbox's holder process failed to start\n  hint: see `devbox doctor`");
            }
            bail!("{}", msg.replace("\\n", "\n"));
        };
        let start = start_time(pid).context("the holder process vanished right after starting")?;
        write_atomic(
            &dirs.holder_pid_file(),
            format!("{pid} {start}\n").as_bytes(),
        )?;
        Ok(Holder {
            pid,
            start_time: start,
        })
    }

    /// Stops the holder, and waits (a few seconds at most) until it is gone; every box's
    /// namespaces that no process uses go with it.
    pub fn kill(&self, dirs: &Dirs) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(self.pid, self.start_time) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(dirs.holder_pid_file());
    }
}

/// Takes the store's holder lock (a flock on the store's directory) for the life of this
/// process, or names the process that holds it.
fn lock_store(
    store: &std::path::Path,
) -> Result<std::result::Result<nix::fcntl::Flock<std::fs::File>, i32>> {
    use nix::fcntl::{Flock, FlockArg};
    let dir =
        std::fs::File::open(store).with_context(|| format!("cannot open {}", store.display()))?;
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        // The lock lives as long as the file stays open: for the holder's whole life.
        Ok(held) => Ok(Ok(held)),
        Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
            use std::os::unix::fs::MetadataExt;
            let meta = f.metadata()?;
            Ok(Err(lock_owner(meta.dev(), meta.ino()).unwrap_or(0)))
        }
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", store.display())),
    }
}

/// The process that took a flock on the file `dev`/`ino`, from /proc/locks.
fn lock_owner(dev: u64, ino: u64) -> Option<i32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want)
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// `devbox __holder NSDIR STORE`: the holder's main. Reports "ok" or "error: ..." on stdout, then
/// detaches its output and sleeps until killed.
pub fn run(ns_dir: &std::path::Path, store: &std::path::Path) -> ! {
    let mut out = std::io::stdout().lock();
    // Kept open (and so locked) until the holder dies.
    let _store_lock = match lock_store(store) {
        Ok(Ok(f)) => f,
        Ok(Err(other)) => {
            let _ = writeln!(out, "held {other}");
            std::process::exit(0);
        }
        Err(e) => {
            let _ = writeln!(out, "error: {}", format!("{e:#}").replace('\n', "\\n"));
            std::process::exit(1);
        }
    };
    let result = setup(ns_dir);
    match result {
        Ok(()) => {
            let _ = writeln!(out, "ok");
        }
        Err(e) => {
            let _ = writeln!(out, "error: {}", format!("{e:#}").replace('\n', "\\n"));
            std::process::exit(1);
        }
    }
    let _ = out.flush();
    drop(out);
    sys::stdio_to_null();
    let _ = nix::sys::prctl::set_name(c"devbox-holder");
    for sig in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGPIPE,
    ] {
        sys::ignore_signal(sig);
    }
    // Nothing to do but live; a look every few seconds ends the holder when its store is gone
    // (a removed ~/.local/share/devbox), since nothing could ever find it again.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        if nix::sys::stat::fstat(&*_store_lock).is_ok_and(|st| st.st_nlink == 0) {
            std::process::exit(0);
        }
    }
}

fn setup(ns_dir: &std::path::Path) -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    userns::unshare_mapped(&Mapping::current()?)?;
    // The holder stays the user (with full capabilities in the namespace): it creates no files,
    // and the user's own devbox commands must be able to open its /proc/PID/ns files.
    userns::unshare_ordered(CloneFlags::CLONE_NEWNS)
        .context("cannot create the holder's mount namespace")?;
    // Slave, not private: host mounts made later (a USB disk, a new home mount) still show up.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("cannot make / a slave mount in the holder")?;
    let opts = format!("mode=0700,uid={uid},gid={gid},size=1m");
    mount(
        Some("tmpfs"),
        ns_dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(opts.as_str()),
    )
    .with_context(|| format!("cannot mount the holder's tmpfs on {}", ns_dir.display()))?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Gets into devbox's user namespace as root: the holder's when it runs, else a new one with the
/// same mapping (so ownership is the same either way). Used to unpack, measure and delete files
/// owned by subordinate ids.
pub fn as_namespace_root(dirs: &crate::paths::Dirs) -> Result<()> {
    match Holder::current(dirs)? {
        Some(h) => userns::join_user(h.pid)?,
        None => userns::unshare_mapped(&Mapping::current()?)?,
    }
    userns::become_root()
}

/// `as_namespace_root` for a helper that works for the devbox command that started it (an
/// unpack, a pack, a bootstrap): the helper dies with that command (Ctrl-C, kill), and fails at
/// once if the command has already ended. `what` names the work in that error.
pub fn as_namespace_root_for_parent(dirs: &crate::paths::Dirs, what: &str) -> Result<()> {
    let parent = nix::unistd::getppid();
    as_namespace_root(dirs)?;
    // Set after the credential change, which clears it.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        bail!("the devbox command that started this {what} has ended");
    }
    Ok(())
}
