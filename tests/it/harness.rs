//! The test environment: the real devbox binary, run rootless.
//!
//! As root (CI), devbox runs as the unprivileged user `devbox-test` (override with
//! DEVBOX_TEST_USER), made with a subordinate id range by `tests/setup.sh`, from a copy of the
//! binary that user can execute, with its own HOME and XDG_RUNTIME_DIR. As an ordinary user it
//! runs as that user, who then needs /etc/subuid and /etc/subgid entries. A missing prerequisite
//! fails the test with the command that fixes it; nothing is skipped.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn lookup_user(name: &str) -> Option<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| User {
            name: name.to_string(),
            uid: f[2].parse().unwrap_or(0),
            gid: f[3].parse().unwrap_or(0),
        })
    })
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user devbox runs as in tests; None means "the current user".
pub fn test_user() -> Option<&'static User> {
    static U: OnceLock<Option<User>> = OnceLock::new();
    U.get_or_init(|| {
        if !is_root() {
            return None;
        }
        let name = std::env::var("DEVBOX_TEST_USER").unwrap_or_else(|_| "devbox-test".into());
        let u = lookup_user(&name).unwrap_or_else(|| {
            panic!("test user '{name}' does not exist: run `sudo tests/setup.sh` first (it creates it with a subordinate id range)")
        });
        Some(u)
    })
    .as_ref()
}

pub fn other_user(name: &str) -> User {
    lookup_user(name)
        .unwrap_or_else(|| panic!("test user '{name}' does not exist: run `sudo tests/setup.sh`"))
}

/// First subordinate uid of the user devbox runs as.
pub fn subuid_start() -> u32 {
    let (name, uid) = match test_user() {
        Some(u) => (u.name.clone(), u.uid),
        None => (
            std::env::var("USER").unwrap_or_default(),
            nix::unistd::getuid().as_raw(),
        ),
    };
    let text =
        std::fs::read_to_string("/etc/subuid").expect("/etc/subuid: run `sudo tests/setup.sh`");
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && (f[0] == name || f[0] == uid.to_string()))
                .then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| {
            panic!("user {name} has no /etc/subuid entry: run `sudo tests/setup.sh`")
        })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a fixture (a tarball, or the apt repository's directory), built and cached by the
/// project's fixture scripts.
pub fn fixture(kind: &str) -> PathBuf {
    static BUSYBOX: OnceLock<PathBuf> = OnceLock::new();
    static DEBIAN: OnceLock<PathBuf> = OnceLock::new();
    static APT_REPO: OnceLock<PathBuf> = OnceLock::new();
    let (cell, script) = match kind {
        "busybox" => (&BUSYBOX, "tests/fixtures/busybox-rootfs.sh"),
        "debian" => (&DEBIAN, "tests/fixtures/debian-rootfs.sh"),
        "apt-repo" => (&APT_REPO, "tests/fixtures/apt-repo.sh"),
        _ => panic!("unknown fixture {kind}"),
    };
    cell.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join(script))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{script} failed: run `sudo tests/setup.sh` to build the fixtures"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("fixture path").trim())
    })
    .clone()
}

/// A copy of the binary in a directory every user can read.
fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/devbox-it-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("devbox");
        // A leftover of an earlier run under the same pid may still be executing (a holder
        // it left): replace the file rather than write into it.
        let _ = std::fs::remove_file(&bin);
        std::fs::copy(env!("CARGO_BIN_EXE_devbox"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
    .clone()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One user's world: HOME, XDG dirs and runtime dir of its own, so it has its own holder.
pub struct TestEnv {
    pub root: PathBuf,
    pub home: PathBuf,
    pub runtime: PathBuf,
    /// The user devbox runs as here, when not `test_user()` (a second machine's user).
    owner: Option<User>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_owner(None)
    }

    /// An environment of another test user (as root only), standing in for another machine.
    pub fn new_as(name: &str) -> TestEnv {
        assert!(is_root(), "a second user needs the tests to run as root");
        Self::with_owner(Some(other_user(name)))
    }

    fn user(&self) -> Option<&User> {
        self.owner.as_ref().or(test_user())
    }

    fn with_owner(owner: Option<User>) -> TestEnv {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!("/tmp/devbox-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = root.join("home");
        let runtime = root.join("run");
        for d in [&home, &runtime] {
            std::fs::create_dir(d).unwrap();
            if let Some(u) = owner.as_ref().or(test_user()) {
                std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        TestEnv {
            root,
            home,
            runtime,
            owner,
        }
    }

    /// A `devbox` command as the test user, in HOME.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.raw(binary());
        c.args(args);
        c
    }

    /// Any program as the test user with this environment.
    pub fn raw(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .env("DEVBOX_TEST_UNPASSED", "1")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        match self.user() {
            Some(u) => {
                c.uid(u.uid).gid(u.gid).env("USER", &u.name);
            }
            None => {
                c.env("USER", std::env::var("USER").unwrap_or_default());
            }
        }
        c
    }

    /// Path of the `devbox` binary the tests run.
    pub fn bin(&self) -> PathBuf {
        binary()
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).output().expect("spawn devbox")
    }

    /// Runs devbox and asserts success; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let out = self.run(args);
        assert!(
            out.status.success(),
            "devbox {} failed ({}):\nstdout: {}\nstderr: {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs devbox, asserts failure with `code`, returns stderr.
    pub fn fails<I, S>(&self, code: i32, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "stdout: {}\nstderr: {err}",
            String::from_utf8_lossy(&out.stdout)
        );
        err
    }

    /// `devbox run BOX -- sh -c SCRIPT`, asserting success; returns stdout.
    pub fn sh(&self, bx: &str, script: &str) -> String {
        self.ok(["run", bx, "--", "sh", "-c", script])
    }

    /// Creates a box from the busybox fixture.
    pub fn busybox(&self, name: &str, extra: &[&str]) {
        let img = fixture("busybox");
        let mut args = vec![
            "create".to_string(),
            img.display().to_string(),
            "--name".into(),
            name.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.ok(&args);
    }

    pub fn data(&self) -> PathBuf {
        self.home.join(".local/share/devbox")
    }

    pub fn holder_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data().join("run/holder.pid")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Writes a file as the test user (the home belongs to them).
    pub fn write_as_user(&self, path: &Path, contents: &[u8]) {
        std::fs::write(path, contents).unwrap();
        if let Some(u) = self.user() {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)).unwrap();
        }
    }

    pub fn mkdir_as_user(&self, path: &Path) {
        std::fs::create_dir_all(path).unwrap();
        if let Some(u) = self.user() {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self
            .cmd(["stop", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Files owned by subordinate ids can only be removed inside the namespace.
        let _ = self
            .cmd(["unshare", "--", "rm", "-rf"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self
            .cmd(["stop", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
