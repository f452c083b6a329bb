//! The one place where devbox talks to the kernel through `unsafe`.
//!
//! Most system calls go through nix's safe wrappers and are called where they are used. What is
//! left here needs `unsafe`: forking, signal dispositions, code that runs between fork and exec,
//! and an ioctl. Every block says why it is sound. Callers must respect the one rule that makes
//! fork sound: the process is single-threaded when it forks (devbox's namespace work always runs
//! in a freshly started process that has not spawned a thread; see `assert_single_threaded`).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};

/// The process's entry point, called by the C runtime in place of std's `lang_start`. std's
/// start-up asks glibc for the main thread's stack bounds to arm its stack-overflow message,
/// and glibc finds them by reading and parsing `/proc/self/maps`: a tenth of the instructions of
/// a warm `devbox run`, whose whole job is three `setns` calls and an `exec`. What else
/// `lang_start` does is done here: closed standard descriptors are opened on `/dev/null`,
/// SIGPIPE is ignored (in `main`) and a panic exits 101.
/// Arguments still reach `std::env::args_os`, which glibc hands to std before `main`.
#[cfg(not(test))]
// SAFETY: exporting the C symbol `main` is sound because the crate is `no_main` outside tests,
// so no other definition of it exists; the C runtime calls it once, on the main thread.
#[export_name = "main"]
extern "C" fn entry(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_closed_std_fds();
    // `main` never returns: coming back here means it panicked, and the message is out.
    let _ = std::panic::catch_unwind(|| crate::main());
    std::process::exit(101)
}

/// `pow`, defined here for the one caller devbox has (indicatif's rate estimate, through
/// `f64::powf`), from the pure-Rust `libm` crate. With it in the binary, the link needs nothing
/// from libm.so.6, so the dynamic loader does not map and relocate that library at every start:
/// about 40 µs of a warm `devbox run` (bench/README.md, "Start-up cost"). The symbol is not
/// exported (an executable exports nothing by default), so no library loaded later binds to it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed, so that no file devbox
/// opens (a state file being written, say) becomes stdout or stderr and receives its messages.
/// One `poll` when all three are open, as they almost always are.
#[cfg(not(test))]
fn open_closed_std_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd structs that poll may write to; a timeout of
    // 0 makes it return at once. A closed descriptor is reported as POLLNVAL, not an error.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if n <= 0 {
        return;
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // Without O_CLOEXEC: the command a session execs inherits it as its own stdio. The
        // lowest free descriptor is the one just found closed (they are checked in order).
        // SAFETY: the path is a NUL-terminated literal; open(2) has no other precondition.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd >= 0 && fd != p.fd {
            // Not the expected slot (a lower one was taken meanwhile): do not keep it.
            // SAFETY: `fd` was just opened here and is owned by nothing else.
            unsafe { libc::close(fd) };
        }
    }
}

/// What `fork` returned, from the point of view of this process.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// Fails unless the calling process has exactly one thread. `setns` into a user namespace and
/// `unshare(CLONE_NEWUSER)` refuse multi-threaded callers, and `fork` is only sound without
/// other threads holding locks.
pub fn assert_single_threaded() -> io::Result<()> {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        // Inside a box with its own pid namespace, /proc shows only the box's processes and
        // has no entry for a process that joined from outside. The check was made before the
        // join (`join_user` checks), and joining starts no thread.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    if threads == "1" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "internal error: namespace work needs a single-threaded process, this one has {threads} threads"
        )))
    }
}

/// fork(2).
pub fn fork() -> io::Result<Forked> {
    assert_single_threaded()?;
    // SAFETY: the process was just checked to be single-threaded, so no lock or allocator state
    // can be held by another thread at the moment of the fork; the child may allocate freely.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Sets a signal to be ignored.
pub fn ignore_signal(sig: Signal) {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety question arises.
    let _ = unsafe { signal::signal(sig, SigHandler::SigIgn) };
}

/// Restores a signal's default disposition.
pub fn default_signal(sig: Signal) {
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_handler(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; pid and sig are plain integers.
        unsafe { libc::kill(pid, sig) };
    }
}

/// While waiting for `child`: Ctrl-C and Ctrl-\ reach the child through the terminal's process
/// group, so the waiting parent ignores them (as system(3) does); SIGTERM and SIGHUP sent to the
/// parent alone are forwarded to the child.
pub fn forward_signals_to(child: Pid) {
    FORWARD_TO.store(child.as_raw(), std::sync::atomic::Ordering::Relaxed);
    ignore_signal(Signal::SIGINT);
    ignore_signal(Signal::SIGQUIT);
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only reads an atomic and calls kill(2), both async-signal-safe.
        let _ = unsafe { signal::signal(sig, SigHandler::Handler(forward_handler)) };
    }
}

/// Makes the spawned command the leader of a new session, detached from our terminal.
pub fn spawn_in_new_session(cmd: &mut Command) {
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
}

nix::ioctl_read_bad!(get_if_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_if_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid, initialised ifreq naming "lo"; the kernel writes ifru_flags.
    unsafe { get_if_flags(sock.as_raw_fd(), &mut req) }.map_err(io::Error::from)?;
    // SAFETY: SIOCGIFFLAGS just filled the flags member of the union, so reading it is defined.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: `req` is a valid ifreq; SIOCSIFFLAGS only reads it.
    unsafe { set_if_flags(sock.as_raw_fd(), &req) }.map_err(io::Error::from)?;
    Ok(())
}

/// Points stdin, stdout and stderr at /dev/null (for processes that outlive the command that
/// started them, so they don't hold its terminal or pipes open).
pub fn stdio_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Closes every file descriptor above stderr that this process inherited. Called first thing in
/// helper modes that leave long-lived processes behind (the holder, a box's init), so that they
/// don't hold the caller's files, locks or pipes open for as long as boxes run.
pub fn close_inherited_fds() {
    // SAFETY: called at the start of a helper mode, before this process opened anything of its
    // own, so no Rust object owns a descriptor above 2 that would be closed under it.
    let r = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc/self/fd lists (the directory's own descriptor
    // included, which is harmless once the list is read).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // SAFETY: as above, no Rust object owns these descriptors; a stale one (the listing's
        // own) just fails with EBADF.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    /// The binary links GCC's unwinder statically (build.rs): a panic must still unwind to
    /// `catch_unwind` (as `entry` relies on) and a backtrace must still walk the stack.
    #[test]
    fn panics_unwind_and_backtraces_walk_with_the_static_unwinder() {
        let caught = std::panic::catch_unwind(|| {
            let trace = std::backtrace::Backtrace::force_capture();
            assert_eq!(trace.status(), std::backtrace::BacktraceStatus::Captured);
            panic!("unwinding works");
        });
        let payload = caught.expect_err("the panic was caught");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"unwinding works"));
    }

    /// devbox's own `pow` (in place of libm's) gives libm's answers.
    #[test]
    fn pow_matches_the_math_library() {
        // Through the optimizer's back: constant arguments would be folded at compile time.
        let p = |x: f64, y: f64| std::hint::black_box(x).powf(std::hint::black_box(y));
        assert_eq!(p(2.0, 10.0), 1024.0);
        assert_eq!(p(0.5, -1.0), 2.0);
        assert_eq!(p(9.0, 0.5), 3.0);
        assert!((p(0.9, 1.7) - (1.7 * 0.9f64.ln()).exp()).abs() < 1e-15);
        assert!(p(-1.0, 0.5).is_nan());
        assert_eq!(super::pow(1.5, 2.0), 2.25);
    }
}
