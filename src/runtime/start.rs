//! `devbox __start NAME`: builds a stopped box's namespaces and persists them in the holder.
//!
//! The starter joins the holder's user and mount namespaces and forks the box's first process,
//! which unshares mount/uts/ipc (and net/pid when isolated), mounts the overlay, pivots into it
//! and carries out the mount plan. The starter then bind-mounts that process's namespace files
//! onto `$RUNTIME/ns/NAME/*` in the holder's tmpfs and lets it go: without a pid namespace it
//! exits, the namespaces live on through the bind mounts; with one, it stays as the box's init.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::paths::{write_atomic, Dirs};
use crate::runtime::holder::{self, Holder};
use crate::runtime::rootfs::{self, HostUser, HostView};
use crate::runtime::userns;
use crate::state::{Backend, BoxConfig, BoxPaths, Isolate};
use crate::sys::{self, Forked};

/// The namespaces a box keeps, in the order they are joined (mnt last).
/// Every namespace a box can have, in the order sessions join them (the user namespace comes
/// first, from the holder; the mount namespace last). The box's namespace directory has a file
/// for each one the box was started with.
pub const JOIN_ORDER: [&str; 5] = ["uts", "ipc", "net", "pid", "mnt"];

/// Writes the box's /etc/hosts (the host's, with the box's name) into the runtime directory;
/// `None` when the host has no /etc/hosts.
fn box_hosts_file(dirs: &Dirs, name: &str) -> Result<Option<PathBuf>> {
    let Ok(text) = std::fs::read_to_string("/etc/hosts") else {
        return Ok(None);
    };
    let file = dirs.box_hosts_file(name);
    crate::paths::write_atomic(&file, rootfs::hosts_for_box(&text, name).as_bytes())?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(Some(file))
}

pub fn namespaces(cfg: &BoxConfig) -> Vec<&'static str> {
    let mut v = vec!["uts"];
    if cfg.has(Isolate::Ipc) {
        v.push("ipc");
    }
    if cfg.has(Isolate::Net) {
        v.push("net");
    }
    if cfg.has(Isolate::Pid) {
        v.push("pid");
    }
    v.push("mnt");
    v
}

/// What the box's first process tells the starter, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// Host pid of the process whose namespaces are the box's.
    Pid(i32),
    /// The user's sudoers rule was written (first start only).
    Sudoers,
    /// The root is built, with this overlay backend.
    Ready(Backend),
    Failed(String),
}

struct Channel {
    tx: File,
}

impl Channel {
    fn send(&mut self, r: &Report) {
        let mut line = serde_json::to_string(r).unwrap_or_default();
        line.push('\n');
        let _ = self.tx.write_all(line.as_bytes());
    }
}

/// Runtime record of a started box: `init_pid init_start mnt_inode` (init 0 without pid ns).
#[derive(Debug, Clone, Copy)]
pub struct RunRecord {
    pub init_pid: i32,
    pub init_start: u64,
}

impl RunRecord {
    pub fn load(dirs: &Dirs, name: &str) -> Option<RunRecord> {
        let text = std::fs::read_to_string(dirs.box_run_file(name)).ok()?;
        let mut it = text.split_whitespace();
        Some(RunRecord {
            init_pid: it.next()?.parse().ok()?,
            init_start: it.next()?.parse().ok()?,
        })
    }

    /// False when the box had an init and it has died (the box is then stale).
    pub fn init_alive(&self) -> bool {
        self.init_pid == 0 || holder::alive(self.init_pid, self.init_start)
    }
}

pub fn run(name: &str) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let cfg = BoxConfig::load(&dirs, name)?;
    let paths = BoxPaths::new(&dirs, name);
    let lower = dirs.image_dir(&cfg.image_id).join("rootfs");
    if !lower.is_dir() {
        bail!(
            "the image of box '{name}' ({}) is missing from the store\n  hint: recreate the box: `devbox rm {name} && devbox create {} --name {name}`",
            cfg.image,
            cfg.image
        );
    }
    let user = HostUser::current();
    let view = HostView {
        home: user.home.clone(),
        isolated_home: cfg.home.clone(),
        project_dir: cfg.project_dir.clone(),
        runtime_dir: crate::paths::session_runtime_dir()?,
        resolv_conf: Path::new("/etc/resolv.conf").exists(),
        hosts: box_hosts_file(&dirs, name)?,
    };
    let ops = rootfs::plan(&cfg.isolate, &view, &cfg.mounts);
    let holder = Holder::current(&dirs)?.context("devbox's holder process is not running")?;
    let ns_dir = dirs.ns_dir();
    let box_ns = ns_dir.join(name);
    // One overlay per box, ever: whatever the records say, nothing may still hold this box's
    // layer when a new overlay of it is mounted.
    refuse_if_held(name, &paths, &holder)?;

    userns::join_user(holder.pid)?;
    userns::join_mnt(holder.pid)?;
    clear_ns_dir(&box_ns)?;
    std::fs::create_dir(&box_ns).with_context(|| format!("cannot create {}", box_ns.display()))?;

    // fuse-overlayfs is mounted here, in the holder's mount namespace, so that its daemon stays
    // outside the box: after pivot_root inside the box, a daemon living in the box's mount
    // namespace would have the file system it serves as its own root and deadlock on itself.
    // The box's namespace inherits the mount when it is created below.
    let forced_fuse = std::env::var("DEVBOX_OVERLAY").is_ok_and(|v| v == "fuse-overlayfs");
    let premounted =
        cfg.backend == Some(Backend::FuseOverlayfs) || (cfg.backend.is_none() && forced_fuse);
    if premounted {
        let _ = umount2(&paths.merged, MntFlags::MNT_DETACH);
        prepare_layers(&lower, &paths)?;
        fuse_overlay(&lower, &paths)?;
    }
    let (report_rx, report_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (go_rx, go_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let first = match sys::fork()? {
        Forked::Child => {
            drop(report_rx);
            drop(go_tx);
            let mut ch = Channel {
                tx: File::from(report_tx),
            };
            let setup = BoxSetup {
                name,
                cfg: &cfg,
                paths: &paths,
                lower: &lower,
                ns_dir: &ns_dir,
                user: &user,
                ops: &ops,
                premounted,
            };
            let code = match setup.first_process(&mut ch, go_rx) {
                Ok(()) => 0,
                Err(e) => {
                    ch.send(&Report::Failed(format!("{e:#}")));
                    1
                }
            };
            std::process::exit(code);
        }
        Forked::Parent(pid) => pid,
    };
    drop(report_tx);
    drop(go_rx);
    let mut reports = BufReader::new(File::from(report_rx));
    let mut target = None;
    let mut backend = None;
    let mut sudoers = false;
    let mut line = String::new();
    while backend.is_none() {
        line.clear();
        if reports.read_line(&mut line)? == 0 {
            break;
        }
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Pid(p)) => target = Some(p),
            Ok(Report::Sudoers) => sudoers = true,
            Ok(Report::Ready(b)) => backend = Some(b),
            Ok(Report::Failed(msg)) => {
                let _ = waitpid(first, None);
                let _ = std::fs::remove_dir(&box_ns);
                if let Some(why) = msg.strip_prefix(KERNEL_REFUSED) {
                    // Fall back to fuse-overlayfs: the caller runs the start again.
                    eprintln!("devbox: the kernel refused overlayfs in a user namespace ({why}); using fuse-overlayfs");
                    std::process::exit(EXIT_WANTS_FUSE);
                }
                bail!("cannot start box '{name}': {msg}");
            }
            Err(_) => {}
        }
    }
    let (Some(target), Some(backend)) = (target, backend) else {
        let _ = waitpid(first, None);
        let _ = std::fs::remove_dir(&box_ns);
        bail!("cannot start box '{name}': its first process died during setup");
    };
    for ns in namespaces(&cfg) {
        let dst = box_ns.join(ns);
        File::create(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
        let src = format!("/proc/{target}/ns/{ns}");
        if std::env::var_os("DEVBOX_DEBUG").is_some() {
            eprintln!(
                "debug: bind {src} ({:?}) from {:?}",
                std::fs::read_link(&src),
                std::fs::read_link("/proc/self/ns/mnt")
            );
        }
        mount(
            Some(src.as_str()),
            &dst,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("cannot persist the {ns} namespace of box '{name}'"))?;
    }
    let init = if cfg.has(Isolate::Pid) {
        (target, holder::start_time(target).unwrap_or(0))
    } else {
        (0, 0)
    };
    write_atomic(
        &crate::state::StartedWith::path(&dirs, name),
        &serde_json::to_vec(&crate::state::StartedWith::of(&cfg))?,
    )?;
    write_atomic(
        &dirs.box_run_file(name),
        format!("{} {}\n", init.0, init.1).as_bytes(),
    )?;
    if cfg.backend != Some(backend) || (sudoers && !cfg.sudoers) {
        let mut cfg = cfg.clone();
        cfg.backend = Some(backend);
        cfg.sudoers |= sudoers;
        cfg.save_in(&paths.dir)?;
    }
    let _ = File::from(go_tx).write_all(b"g");
    let _ = waitpid(first, None);
    Ok(())
}

/// Unmounts and removes what a previous (stale) run of the box left in the holder's tmpfs.
pub fn clear_ns_dir(box_ns: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(box_ns) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
        std::fs::remove_file(e.path())
            .with_context(|| format!("cannot remove {}", e.path().display()))?;
    }
    std::fs::remove_dir(box_ns).with_context(|| format!("cannot remove {}", box_ns.display()))
}

struct BoxSetup<'a> {
    name: &'a str,
    cfg: &'a BoxConfig,
    paths: &'a BoxPaths,
    lower: &'a Path,
    ns_dir: &'a Path,
    user: &'a HostUser,
    ops: &'a [rootfs::Op],
    /// fuse-overlayfs is already mounted on `merged` in the holder's mount namespace.
    premounted: bool,
}

impl BoxSetup<'_> {
    /// Runs in the forked child: becomes the box's first process (and, with a pid namespace,
    /// forks the box's init, which does the rest).
    fn first_process(&self, ch: &mut Channel, go: OwnedFd) -> Result<()> {
        let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS;
        if self.cfg.has(Isolate::Ipc) {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if self.cfg.has(Isolate::Net) {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        if self.cfg.has(Isolate::Pid) {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        userns::unshare_ordered(flags).context("cannot create the box's namespaces")?;
        if self.cfg.has(Isolate::Pid) {
            // unshare(CLONE_NEWPID) applies to children: the next child is the box's pid 1.
            match sys::fork()? {
                Forked::Parent(init) => {
                    ch.send(&Report::Pid(init.as_raw()));
                    return Ok(());
                }
                Forked::Child => {
                    // Named before anything can see it: sessions may look at their pid 1 as
                    // soon as the box is reported ready.
                    let _ = nix::sys::prctl::set_name(c"devbox-init");
                    let r = self.build(ch);
                    if let Err(e) = r {
                        ch.send(&Report::Failed(format!("{e:#}")));
                        std::process::exit(1);
                    }
                    wait_go(go);
                    init_loop();
                }
            }
        }
        ch.send(&Report::Pid(nix::unistd::getpid().as_raw()));
        self.build(ch)?;
        wait_go(go);
        Ok(())
    }

    fn build(&self, ch: &mut Channel) -> Result<()> {
        userns::become_root()?;
        nix::unistd::sethostname(self.name).context("cannot set the box's hostname")?;
        if self.cfg.has(Isolate::Net) {
            sys::loopback_up().context("cannot bring up the loopback interface of the box")?;
        }
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .context("cannot make / a slave mount")?;
        // The holder's tmpfs of namespace files must not be pinned by this box.
        let _ = umount2(self.ns_dir, MntFlags::MNT_DETACH);
        let backend = self.mount_overlay()?;
        nix::unistd::chdir(&self.paths.merged)?;
        // Nothing below follows a symlink of the image out of the box: see rootfs's no-follow
        // functions, which work relative to a directory fd of the box's root.
        let merged = rootfs::open_root(Path::new("."))?;
        rootfs::make_host_dir(std::os::fd::AsFd::as_fd(&merged))?;
        nix::unistd::pivot_root(".", "run/host").context("pivot_root into the box failed")?;
        nix::unistd::chdir("/")?;
        let root = rootfs::open_root(Path::new("/"))?;
        let root = std::os::fd::AsFd::as_fd(&root);
        rootfs::apply(root, self.ops)?;
        rootfs::write_file(
            root,
            "run",
            ".containerenv",
            format!(
                "engine=\"devbox\"\nname=\"{}\"\nimage=\"{}\"\nid=\"{}\"\nrootless=1\n",
                self.name, self.cfg.image, self.cfg.image_id
            )
            .as_bytes(),
            0o644,
        )?;
        let mut user = self.user.clone();
        if !Path::new(&user.shell).exists() {
            user.shell = ["/bin/bash", "/bin/sh"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| "/bin/sh".into());
        }
        rootfs::ensure_user(root, &user)?;
        // Once per box (box.toml remembers), through the overlay into the box's own layer: the
        // image stays as it is. A rule the user deletes later stays deleted.
        if !self.cfg.sudoers && user.uid != 0 {
            match rootfs::write_sudoers(root, &user) {
                Ok(_) => ch.send(&Report::Sudoers),
                Err(e) => eprintln!(
                    "devbox: box '{}': cannot write the sudoers rule, sudo will ask for a password: {e:#}",
                    self.name
                ),
            }
        }
        ch.send(&Report::Ready(backend));
        Ok(())
    }

    fn mount_overlay(&self) -> Result<Backend> {
        if self.premounted {
            return Ok(Backend::FuseOverlayfs);
        }
        let p = self.paths;
        prepare_layers(self.lower, p)?;
        let opts = rootfs::overlay_options(self.lower, &p.upper, &p.work);
        match mount(Some("overlay"), &p.merged, Some("overlay"), MsFlags::empty(), Some(opts.as_str())) {
            Ok(()) => Ok(Backend::Kernel),
            Err(e) if self.cfg.backend == Some(Backend::Kernel) => bail!(
                "cannot mount the box's overlay ({e}); this box was made with the kernel's overlayfs\n  hint: see `devbox doctor`"
            ),
            Err(e) => bail!("{KERNEL_REFUSED}{e}"),
        }
    }
}

/// Prefix of the failure report that makes the caller retry the start with fuse-overlayfs.
const KERNEL_REFUSED: &str = "kernel refused overlayfs: ";

/// Exit status of `__start` asking to be run again with fuse-overlayfs.
pub const EXIT_WANTS_FUSE: i32 = 3;

/// Creates the box's upper and work dirs; the overlay's root takes its owner and mode from the
/// upper dir, so it matches the image's root.
fn prepare_layers(lower: &Path, p: &BoxPaths) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for d in [&p.upper, &p.work] {
        if !d.exists() {
            std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
    }
    if let Ok(m) = std::fs::metadata(lower) {
        let _ = nix::unistd::chown(&p.upper, Some(m.uid().into()), Some(m.gid().into()));
        let _ =
            std::fs::set_permissions(&p.upper, std::fs::Permissions::from_mode(m.mode() & 0o7777));
    }
    Ok(())
}

fn fuse_overlay(lower: &Path, p: &BoxPaths) -> Result<()> {
    let why = match std::env::var("DEVBOX_KERNEL_REFUSED") {
        Ok(e) => format!("the kernel refused overlayfs in a user namespace ({e}) and "),
        Err(_) => String::new(),
    };
    let fuse_ok = nix::unistd::access(
        "/dev/fuse",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    )
    .is_ok();
    if !fuse_ok {
        bail!("{why}the fuse-overlayfs fallback cannot open /dev/fuse\n  hint: `sudo chmod 0666 /dev/fuse` (or add your user to the group owning it); see `devbox doctor`");
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs::escape_overlay(lower),
        rootfs::escape_overlay(&p.upper),
        rootfs::escape_overlay(&p.work)
    );
    // fuse-overlayfs stays behind as the file system's daemon, holding its stderr: collect
    // errors in an anonymous file rather than a pipe that would never reach end of file.
    let mut errors = tempfile::tempfile().context("cannot create a temp file")?;
    // As root of the namespace, so the daemon may create files of any in-box owner.
    use std::os::unix::process::CommandExt;
    let status = Command::new("fuse-overlayfs")
        .uid(0)
        .gid(0)
        .arg("-o")
        .arg(&opts)
        .arg(&p.merged)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errors.try_clone()?)
        .status();
    match status {
        Ok(st) if st.success() => Ok(()),
        Ok(_) => {
            use std::io::{Read, Seek};
            let mut text = String::new();
            let _ = errors.rewind();
            let _ = errors.read_to_string(&mut text);
            bail!("{why}fuse-overlayfs failed: {}\n  hint: see `devbox doctor`", text.trim())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{why}fuse-overlayfs is not installed\n  hint: `sudo apt install fuse-overlayfs` (or your distribution's package); see `devbox doctor`"
        ),
        Err(e) => bail!("{why}cannot run fuse-overlayfs: {e}"),
    }
}

/// Waits for the starter's word that the box is persisted. Its end of the pipe closes without
/// a word when the starter died: then this process must not stay (it would hold the overlay
/// with nothing to find it by), and exits.
fn wait_go(go: OwnedFd) {
    let mut b = [0u8; 1];
    let said = matches!(nix::unistd::read(&go, &mut b), Ok(1));
    drop(go);
    if !said {
        std::process::exit(1);
    }
}

/// Fails when processes still keep the box's overlay mounted (its holder died while they ran,
/// or a stop was cut short). A lone init of the box's own, left by a dead holder, is ended
/// instead: nothing of the user's runs in it. A fuse-overlayfs daemon of the box left in a dead
/// holder's namespace is ended too, so two daemons never serve one layer.
fn refuse_if_held(name: &str, paths: &BoxPaths, holder: &Holder) -> Result<()> {
    let users = crate::runtime::inuse::Scan::take().users(&paths.upper, &paths.merged);
    let holder_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.pid)).ok();
    for p in &users.daemon_ns {
        let ns = std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
        if ns != holder_ns && crate::runtime::stop::is_fuse_daemon_of(*p, &paths.upper) {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
    }
    if users.is_empty() {
        return Ok(());
    }
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    if users.pids.iter().all(|p| comm(*p).trim() == "devbox-init") {
        for p in &users.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && !crate::runtime::inuse::Scan::take()
                .users(&paths.upper, &paths.merged)
                .is_empty()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        return Ok(());
    }
    let pids: Vec<String> = users.pids.iter().map(|p| p.to_string()).collect();
    bail!(
        "box '{name}' is still in use by {} process(es) that devbox lost track of (its holder process ended while they ran): {}\n  hint: end them with `devbox stop {name}` (shells get SIGHUP first and can save their history), then try again",
        pids.len(),
        pids.join(" ")
    )
}

/// The box's pid 1: reaps orphans until told to stop (SIGTERM, SIGINT or SIGHUP).
fn init_loop() -> ! {
    sys::stdio_to_null();
    let _ = nix::unistd::setsid();
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    if st == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => std::process::exit(0),
            Err(_) => {}
        }
    }
}
