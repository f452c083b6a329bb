//! `enter` and `run`: join a running box's namespaces and exec the command. This is the hot
//! path: a few opens, a few setns calls and one exec; the box is started first only if needed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Uid};

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::runtime::hooks::{self, is_posix, Hooks};
use crate::runtime::start;
use crate::runtime::userns;
use crate::state::BoxConfig;
use crate::sys::{self, Forked};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables passed from the host into the box; everything else is dropped, PATH is the box's.
const PASS_ENV: &[&str] = &[
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_DESKTOP",
    "DBUS_SESSION_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "XAUTHORITY",
    "PULSE_SERVER",
    "TZ",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "HISTFILE",
    "NO_COLOR",
    "TERMINFO",
    "TERMINFO_DIRS",
    "COLORFGBG",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "VTE_VERSION",
    "KONSOLE_VERSION",
    "GPG_AGENT_INFO",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "all_proxy",
];

pub struct Session<'a> {
    pub name: &'a str,
    pub root: bool,
    /// None: the user's login shell.
    pub argv: Option<&'a [OsString]>,
    /// Variables of the project file, set after the others.
    pub env: Vec<(String, String)>,
    /// The project file's enter hooks, run by the session's shell before the command.
    pub hooks: Hooks,
    /// The prompt of an interactive bash (the project's `prompt`); None: devbox's default.
    pub prompt: Option<String>,
}

/// Exit status when devbox itself failed before the command ran.
pub const EXIT_DEVBOX: i32 = 125;

/// Joins the box (starting it if needed) and runs the session. Returns only on failure or, with
/// a pid namespace, with the command's exit status.
pub fn run(dirs: &Dirs, cfg: &BoxConfig, s: &Session) -> Result<i32> {
    // Passed into the box (and bound there at start): it must be the user's own.
    crate::paths::session_runtime_dir()?;
    let (holder, box_ns, ns_dir) = ensure_running(dirs, cfg)?;
    // The namespaces the box was started with, which can differ from its settings after
    // `devbox config`/`apply` changed them (they apply from its next start).
    let mut fds = Vec::new();
    for ns in start::JOIN_ORDER {
        match ns_dir.open_ns(ns) {
            Ok(f) => fds.push((ns, f)),
            Err(Errno::ENOENT) if !matches!(ns, "uts" | "mnt") => {}
            Err(e) => {
                let path = box_ns.join(ns);
                return Err(e).with_context(|| format!("cannot open {}", path.display()));
            }
        }
    }
    let cwd = std::env::current_dir().ok();
    let user = crate::runtime::rootfs::HostUser::for_session();
    // Read on the host, before joining: the user's own shell is used when the box has it.
    // A one-off command asks no passwd database (NSS can mean files, LDAP or sssd): `$SHELL`
    // or the box's own entry will do there; an interactive session looks the login shell up.
    let login = (!s.root).then(|| login_shell(s.argv.is_none())).flatten();

    userns::join_user(holder.pid)?;
    let mut has_pid = false;
    for (ns, f) in &fds {
        let flag = match *ns {
            "mnt" => CloneFlags::CLONE_NEWNS,
            "pid" => {
                has_pid = true;
                CloneFlags::CLONE_NEWPID
            }
            _ => CloneFlags::empty(),
        };
        setns(f, flag)
            .with_context(|| format!("cannot join the {ns} namespace of box '{}'", s.name))?;
    }
    drop(fds);
    enter_cwd(cwd.as_deref(), &user.home);

    let (home, uname) = if s.root {
        nix::unistd::setgroups(&[Gid::from_raw(0)])?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
        (PathBuf::from("/root"), "root".to_string())
    } else {
        let gid = nix::unistd::getgid();
        nix::unistd::setgroups(&[gid])?;
        (user.home.clone(), user.name.clone())
    };
    let uid = if s.root { 0 } else { user.uid };
    let (shell, missing) = box_shell(uid, &uname, login.as_deref());
    if let (Some(login), None) = (missing, s.argv) {
        crate::ui::note(format_args!(
            "devbox: box '{}' has no {} (your login shell); using {}",
            s.name,
            login.display(),
            shell.display()
        ));
    }
    let mut env = box_env(s.name, &home, &uname, &shell, &cfg.env);
    for (k, v) in &s.env {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
    let (prog, argv) = session_argv(s, &shell)?;
    // Rust starts every program with SIGPIPE ignored; the box's commands must get the default
    // (`yes | head` ends yes by the signal), as they would from a shell.
    sys::default_signal(nix::sys::signal::Signal::SIGPIPE);
    if has_pid {
        // Joining a pid namespace applies to children only: fork once more and wait.
        match sys::fork()? {
            Forked::Child => {
                let e = exec(&prog, &argv, &env);
                report_exec_error(&prog, s.name, e);
            }
            Forked::Parent(child) => {
                sys::forward_signals_to(child);
                return Ok(wait_exit(child));
            }
        }
    }
    let e = exec(&prog, &argv, &env);
    report_exec_error(&prog, s.name, e);
}

/// What the session execs: the command, or the login shell, with the hooks run by the session's
/// own shell in front (see `hooks`).
fn session_argv(s: &Session, shell: &Path) -> Result<(OsString, Vec<OsString>)> {
    let name = |p: &Path| p.file_name().unwrap_or(OsStr::new("sh")).to_os_string();
    let runner = if is_posix(shell) {
        shell.to_path_buf()
    } else {
        PathBuf::from("/bin/sh")
    };
    let with_hooks = |argv: Vec<OsString>| {
        let mut a = vec![
            name(&runner),
            "-c".into(),
            hooks::command_script(&s.hooks).into(),
            "devbox-hook".into(),
        ];
        a.extend(argv);
        (runner.clone().into_os_string(), a)
    };
    Ok(match s.argv {
        Some(argv) if s.hooks.commands.is_empty() => (argv[0].clone(), argv.to_vec()),
        Some(argv) => with_hooks(argv.to_vec()),
        None if name(shell) == "bash" => {
            // Interactive bash reads its startup file from a pipe that stays open across the
            // exec; the file closes it.
            let prompt = s.prompt.as_deref().unwrap_or(hooks::DEFAULT_PROMPT);
            let (rx, tx) = nix::unistd::pipe()?;
            let fd = std::os::fd::IntoRawFd::into_raw_fd(rx);
            let rc = hooks::bash_rc(&s.hooks, prompt, fd);
            if rc.len() > 60_000 {
                bail!("the enter hooks are too long ({} bytes)", rc.len());
            }
            File::from(tx)
                .write_all(rc.as_bytes())
                .context("cannot pass the startup file to bash")?;
            (
                shell.as_os_str().to_os_string(),
                vec![
                    "bash".into(),
                    "--rcfile".into(),
                    format!("/dev/fd/{fd}").into(),
                    "-i".into(),
                ],
            )
        }
        None if s.hooks.commands.is_empty() => {
            let mut a0 = OsString::from("-");
            a0.push(name(shell));
            (shell.as_os_str().to_os_string(), vec![a0])
        }
        None => with_hooks(vec![shell.as_os_str().to_os_string(), "-l".into()]),
    })
}

fn report_exec_error(prog: &OsStr, name: &str, e: Errno) -> ! {
    let p = prog.to_string_lossy();
    if e == Errno::ENOENT {
        eprintln!("devbox: {p}: command not found in box '{name}'");
        std::process::exit(127);
    }
    eprintln!("devbox: cannot execute {p} in box '{name}': {}", e.desc());
    std::process::exit(126);
}

/// Waits for the command and turns its end into our exit: its status, or the same signal.
fn wait_exit(child: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                sys::default_signal(sig);
                let _ = nix::sys::signal::raise(sig);
                return 128 + sig as i32;
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return EXIT_DEVBOX,
        }
    }
}

/// Starts the box if it is not running (`devbox restart`). Joins nothing.
pub fn start_box(dirs: &Dirs, cfg: &BoxConfig) -> Result<()> {
    ensure_running(dirs, cfg).map(|_| ())
}

/// The holder and box `cfg.name`'s namespace directory (its path and the directory, open),
/// both started first if needed.
fn ensure_running(dirs: &Dirs, cfg: &BoxConfig) -> Result<(Holder, PathBuf, userns::NsDir)> {
    let holder = Holder::ensure(dirs)?;
    let box_ns = crate::runtime::box_ns_path(dirs, &holder, &cfg.name);
    let open = userns::NsDir::open(&box_ns);
    if let Some(dir) = open.filter(|d| crate::runtime::is_bound_at(dirs, d, &cfg.name)) {
        return Ok((holder, box_ns, dir));
    }
    start(dirs, cfg, &box_ns)?;
    let dir = userns::NsDir::open(&box_ns)
        .with_context(|| format!("cannot open {}", box_ns.display()))?;
    Ok((holder, box_ns, dir))
}

/// Runs `look` in a forked child that has joined the box's user and mount namespaces (starting
/// the box if needed) and returns the bytes it produced. The child keeps the caller's ids, with
/// the namespace's capabilities, and sees the box's root: the merged view of image and layer,
/// whichever overlay backend the box uses. Nothing else of the box is touched.
pub fn look_inside(
    dirs: &Dirs,
    cfg: &BoxConfig,
    look: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    let (holder, box_ns, ns_dir) = ensure_running(dirs, cfg)?;
    let mnt = ns_dir
        .open_ns("mnt")
        .with_context(|| format!("cannot open {}", box_ns.join("mnt").display()))?;
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match sys::fork()? {
        Forked::Child => {
            drop(rx);
            let mut tx = File::from(tx);
            let joined = userns::join_user(holder.pid).and_then(|()| {
                setns(&mnt, CloneFlags::CLONE_NEWNS).with_context(|| {
                    format!("cannot join the mount namespace of box '{}'", cfg.name)
                })
            });
            let code = match joined {
                Ok(()) => {
                    let _ = tx.write_all(&look());
                    0
                }
                Err(e) => {
                    let _ = tx.write_all(format!("{e:#}").as_bytes());
                    1
                }
            };
            std::process::exit(code);
        }
        Forked::Parent(child) => {
            drop(tx);
            let mut out = Vec::new();
            let read = File::from(rx).read_to_end(&mut out);
            let status = waitpid(child, None);
            read.context("cannot read from the process looking inside the box")?;
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(out),
                _ => bail!(
                    "cannot look inside box '{}': {}",
                    cfg.name,
                    String::from_utf8_lossy(&out)
                ),
            }
        }
    }
}

fn start(dirs: &Dirs, cfg: &BoxConfig, box_ns: &Path) -> Result<()> {
    let name = cfg.name.as_str();
    let _lock = crate::runtime::stop::box_lock(dirs, name)?;
    if crate::runtime::is_bound(dirs, box_ns, &cfg.name) {
        return Ok(());
    }
    if box_ns.exists() {
        // Stale: its init died, or a start or stop was cut short. Release what is left (and
        // end what still runs in it) before building it again.
        crate::runtime::stop::stop_locked(name)?;
    }
    let run_starter = |fuse: bool| {
        let mut cmd = crate::runtime::helper("__start");
        cmd.arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .current_dir("/");
        if fuse {
            cmd.env("DEVBOX_OVERLAY", "fuse-overlayfs");
        }
        cmd.status().context("cannot run devbox's box starter")
    };
    let mut status = run_starter(false)?;
    if status.code() == Some(start::EXIT_WANTS_FUSE) {
        status = run_starter(true)?;
    }
    if !status.success() {
        bail!("box '{name}' did not start (see the message above)");
    }
    Ok(())
}

fn enter_cwd(cwd: Option<&Path>, home: &Path) {
    if let Some(cwd) = cwd {
        if nix::unistd::chdir(cwd).is_ok() {
            return;
        }
        eprintln!(
            "devbox: {} does not exist in the box; starting in {}",
            cwd.display(),
            home.display()
        );
    }
    if nix::unistd::chdir(home).is_err() {
        let _ = nix::unistd::chdir("/");
    }
}

/// The user's login shell on the host: `$SHELL`, else, with `ask_passwd` (an interactive
/// session), the host's passwd entry. Called before joining the box.
fn login_shell(ask_passwd: bool) -> Option<PathBuf> {
    std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            if !ask_passwd {
                return None;
            }
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.shell)
        })
        .filter(|p| p.is_absolute())
}

/// The session's shell, looked up inside the box: the user's login shell from the host
/// (`login`) when the box has it, else (without one, or for root) the shell of the box's passwd
/// entry, else bash, else sh. The second value is the login shell the box lacks, if it does.
fn box_shell(uid: u32, name: &str, login: Option<&Path>) -> (PathBuf, Option<PathBuf>) {
    if let Some(l) = login {
        if is_executable(l) {
            return (l.to_path_buf(), None);
        }
    }
    let from_passwd = login.is_none().then(|| {
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 7 && (f[0] == name || f[2] == uid.to_string()))
                        .then(|| PathBuf::from(f[6]))
                })
            })
    });
    let shell = from_passwd
        .flatten()
        .into_iter()
        .chain(["/bin/bash", "/bin/sh"].map(PathBuf::from))
        .find(|p| p.is_absolute() && is_executable(p))
        .unwrap_or_else(|| "/bin/sh".into());
    (shell, login.map(Path::to_path_buf))
}

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

fn box_env(
    name: &str,
    home: &Path,
    user: &str,
    shell: &Path,
    image_env: &[String],
) -> Vec<(OsString, OsString)> {
    // The image's own environment (its PATH above all), then what passes from the host.
    let image: Vec<(OsString, OsString)> = image_env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let path = image
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let mut env: Vec<(OsString, OsString)> = image
        .into_iter()
        // A variable the host passes in (LANG, TERM...) is the host's.
        .filter(|(k, _)| k != "PATH" && !(passes(k) && std::env::var_os(k).is_some()))
        .collect();
    env.extend(std::env::vars_os().filter(|(k, _)| passes(k)));
    for (k, v) in [
        ("PATH", path.as_os_str()),
        ("HOME", home.as_os_str()),
        ("USER", OsStr::new(user)),
        ("LOGNAME", OsStr::new(user)),
        ("SHELL", shell.as_os_str()),
        ("DEVBOX_NAME", OsStr::new(name)),
        ("container", OsStr::new("devbox")),
    ] {
        env.push((k.into(), v.into()));
    }
    if !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    // The box's terminfo databases first, then the host's (seen under /run/host), so a terminal
    // the box does not know still works. Only strings: no file is looked at here.
    let image_dirs = image_env
        .iter()
        .find_map(|kv| kv.strip_prefix("TERMINFO_DIRS="));
    let dirs = crate::runtime::rootfs::terminfo_dirs(
        image_dirs,
        std::env::var_os("TERMINFO_DIRS").as_deref(),
        std::env::var_os("TERMINFO").as_deref(),
    );
    env.retain(|(k, _)| k != "TERMINFO_DIRS");
    env.push(("TERMINFO_DIRS".into(), dirs));
    env
}

fn passes(k: &OsStr) -> bool {
    let k = k.to_string_lossy();
    PASS_ENV.contains(&k.as_ref()) || k.starts_with("LC_")
}

/// execve with a PATH search in the box's PATH. Returns the error that best describes failure:
/// ENOENT when nothing was found, the first other error (EACCES, ENOEXEC...) when something was.
fn exec(prog: &OsStr, argv: &[OsString], env: &[(OsString, OsString)]) -> Errno {
    let to_c = |s: &OsStr| CString::new(s.as_bytes()).unwrap_or_default();
    let cargv: Vec<CString> = argv.iter().map(|a| to_c(a)).collect();
    let cenv: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    if prog.as_bytes().contains(&b'/') {
        return exec_one(&to_c(prog), &cargv, &cenv);
    }
    let mut best = Errno::ENOENT;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let mut full = PathBuf::from(dir);
        full.push(prog);
        let e = exec_one(&to_c(full.as_os_str()), &cargv, &cenv);
        if e != Errno::ENOENT && e != Errno::ENOTDIR && best == Errno::ENOENT {
            best = e;
        }
    }
    best
}

fn exec_one(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve::<CString, CString>(path, argv, env) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
