//! A box's root file system as a plan of mount operations (data), and the code that carries the
//! plan out. The plan is built by a pure function so it can be checked in unit tests.
//!
//! Order of a box start (see start.rs): overlay mounted on `merged`, `pivot_root` into it with the
//! old root put at /run/host, then this plan, whose sources all live under /run/host and whose
//! targets resolve inside the box (an image's `/home -> var/home` symlink is followed inside).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

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

fn ensure_dir(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .with_context(|| format!("cannot create {} in the box", p.display()))
}

fn ensure_file(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(m) if m.is_dir() => anyhow::bail!("{} is a directory in the box", p.display()),
        Ok(_) => fs::remove_file(p).with_context(|| format!("cannot replace {}", p.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", p.display())),
    }
    if let Some(parent) = p.parent() {
        ensure_dir(parent)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(p)
        .with_context(|| format!("cannot create {} in the box", p.display()))?;
    Ok(())
}

/// Carries out the plan. Runs after pivot_root, as root of the box's namespaces.
pub fn apply(ops: &[Op]) -> Result<()> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for op in ops {
        match op {
            Op::Proc { dst } => {
                ensure_dir(dst)?;
                mount(Some("proc"), dst, Some("proc"), nodev, None::<&str>)
                    .context("cannot mount a procfs for the box's pid namespace")?;
            }
            Op::Sysfs { dst } => {
                ensure_dir(dst)?;
                if mount(
                    Some("sysfs"),
                    dst,
                    Some("sysfs"),
                    nodev | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .is_err()
                {
                    bind(&host(Path::new("/sys")), dst, true)?;
                }
            }
            Op::Rbind { src, dst } => {
                ensure_dir(dst)?;
                bind(src, dst, true)?;
            }
            Op::BindFile { src, dst } => {
                ensure_file(dst)?;
                bind(src, dst, false)?;
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
                if src.is_dir() {
                    ensure_dir(dst)?;
                } else {
                    ensure_file(dst)?;
                }
                bind(src, dst, true)?;
                if *readonly {
                    mount(
                        None::<&str>,
                        dst,
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
pub fn ensure_user(etc: &Path, u: &HostUser) -> Result<()> {
    let passwd = etc.join("passwd");
    let text = fs::read_to_string(&passwd).unwrap_or_default();
    if let Some(line) = passwd_line(&text, u) {
        append_line(&passwd, &text, &line)?;
    }
    let shadow = etc.join("shadow");
    if let Ok(text) = fs::read_to_string(&shadow) {
        if let Some(line) = shadow_line(&text, &u.name) {
            append_line(&shadow, &text, &line)?;
        }
    }
    let group = etc.join("group");
    let text = fs::read_to_string(&group).unwrap_or_default();
    let has_gid = text
        .lines()
        .any(|l| l.split(':').nth(2) == Some(u.gid.to_string().as_str()));
    if !has_gid {
        append_line(&group, &text, &format!("{}:x:{}:", u.group, u.gid))?;
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

fn append_line(path: &Path, existing: &str, line: &str) -> Result<()> {
    let mut text = existing.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    // Write a new file and rename it, keeping the old file's mode and owners (passwd 0644
    // root:root, shadow 0640 root:shadow).
    let tmp = path.with_extension("devbox-tmp");
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Ok(m) = fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        let _ = fs::set_permissions(&tmp, m.permissions());
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot update {}", path.display()))
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

/// Writes the user's rule into `ETC/sudoers.d` (made 0750 if missing), mode 0440, owned by the
/// caller (in-box root at box start). It is written whether sudo is installed or not, so sudo
/// installed later works at once; no password is set or changed.
pub fn write_sudoers(etc: &Path, u: &HostUser) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = etc.join("sudoers.d");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => anyhow::bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o750)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o750))?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
    }
    let (name, text) = sudoers_rule(u);
    let path = dir.join(&name);
    // A name with a '.' so that sudo ignores it should it ever be left behind.
    let tmp = dir.join(format!(".{name}.devbox-tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o440)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.set_permissions(fs::Permissions::from_mode(0o440))?;
    drop(f);
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
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

    #[test]
    fn the_sudoers_file_is_0440_in_a_0750_directory() {
        use std::os::unix::fs::PermissionsExt;
        let etc = tempfile::tempdir().unwrap();
        let path = write_sudoers(etc.path(), &alice()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(path, etc.path().join("sudoers.d/devbox-alice"));
        assert_eq!(mode(&path), 0o440);
        assert_eq!(mode(&etc.path().join("sudoers.d")), 0o750);
        // Written again over the read-only file: replaced, nothing left behind.
        write_sudoers(etc.path(), &alice()).unwrap();
        let names: Vec<_> = fs::read_dir(etc.path().join("sudoers.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("devbox-alice")]);
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
