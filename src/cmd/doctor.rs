//! `devbox doctor`: checks what devbox needs from this machine and says how to fix what is
//! missing. Every failing check prints its fix; the exit status is 1 when any check fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::idmap::{self, Mapping, SubIdFiles};
use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::sys::{self, Forked};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
    /// Where the lines go: `None` prints them (unit tests keep them).
    kept: Option<Vec<String>>,
}

impl Report {
    fn say(&mut self, level: Level, what: &str, detail: &str, fix: &str) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        if level == Level::Fail {
            self.failed = true;
        }
        let mut lines = vec![format!("{tag}  {what}: {detail}")];
        if level != Level::Ok && !fix.is_empty() {
            lines.extend(fix.lines().map(|l| format!("      fix: {l}")));
        }
        match &mut self.kept {
            Some(kept) => kept.extend(lines),
            None => lines.iter().for_each(|l| println!("{l}")),
        }
    }
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel_version() -> (u32, u32, String) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0), rel)
}

/// Finds `tool` on PATH.
fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn helper_privileged(p: &Path) -> bool {
    let Ok(m) = std::fs::metadata(p) else {
        return false;
    };
    let setuid_root = m.uid() == 0 && m.permissions().mode() & 0o4000 != 0;
    let has_caps = xattr::get(p, "security.capability")
        .ok()
        .flatten()
        .is_some();
    setuid_root || has_caps
}

pub fn run(dirs: &Dirs) -> Result<i32> {
    // Scratch dirs of earlier doctors that were killed before they could remove theirs.
    if !nix::unistd::getuid().is_root() {
        crate::store::sweep_scratch(dirs);
    }
    let mut r = Report {
        failed: false,
        kept: None,
    };
    let (major, minor, rel) = kernel_version();
    if (major, minor) >= (5, 11) {
        r.say(
            Level::Ok,
            "kernel",
            &format!("{rel} (overlayfs in user namespaces needs 5.11+)"),
            "",
        );
    } else {
        r.say(
            Level::Fail,
            "kernel",
            &format!("{rel} is older than 5.11"),
            "boxes need overlayfs in a user namespace (Linux 5.11 or newer), or fuse-overlayfs",
        );
    }

    let mut userns_ok = true;
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        userns_ok = false;
        r.say(
            Level::Fail,
            "user namespaces",
            "switched off (user.max_user_namespaces = 0)",
            "sudo sysctl -w user.max_user_namespaces=15000",
        );
    }
    if read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        userns_ok = false;
        r.say(
            Level::Fail,
            "user namespaces",
            "unprivileged ones are switched off (kernel.unprivileged_userns_clone = 0)",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        );
    }
    if read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        r.say(
            Level::Warn,
            "AppArmor",
            "kernel.apparmor_restrict_unprivileged_userns = 1: unconfined programs cannot use user namespaces fully",
            "install an AppArmor profile for devbox that allows `userns`, e.g. /etc/apparmor.d/devbox with\n  `abi <abi/4.0>, include <tunables/global>  profile devbox /path/to/devbox flags=(unconfined) { userns, }`\nor: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        );
    } else if userns_ok {
        r.say(
            Level::Ok,
            "user namespaces",
            "allowed for unprivileged users",
            "",
        );
    }

    for tool in ["newuidmap", "newgidmap"] {
        match which(tool) {
            None => r.say(
                Level::Fail,
                tool,
                "not found on PATH",
                "sudo apt install uidmap   (Fedora: sudo dnf install shadow-utils)",
            ),
            Some(p) if !helper_privileged(&p) => r.say(
                Level::Fail,
                tool,
                &format!(
                    "{} is neither setuid root nor has file capabilities",
                    p.display()
                ),
                &format!(
                    "sudo chmod u+s {}   (or reinstall the uidmap package)",
                    p.display()
                ),
            ),
            Some(p) => r.say(Level::Ok, tool, &p.display().to_string(), ""),
        }
    }

    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    if uid == 0 {
        // Root needs no subordinate ids and has no boxes: what matters is the user who will
        // run devbox, so the remaining checks are theirs to run.
        let who = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root");
        let how = match &who {
            Some(u) => format!("sudo -u {u} devbox doctor   (or as {u}: devbox doctor)"),
            None => "log in as that user and run: devbox doctor".to_string(),
        };
        r.say(
            Level::Fail,
            "user",
            "this is root; devbox is for ordinary users (each runs their own boxes), so the subordinate ids, overlayfs, store and holder checks are about the user who will run it",
            &how,
        );
        println!("\nRun devbox doctor as your user; the checks above are the machine's.");
        return Ok(1);
    }
    let user = crate::paths::user_name(uid);
    let ranges_ok = subid_checks(&mut r, &SubIdFiles::default(), &user, uid, gid);

    if ranges_ok && userns_ok && uid != 0 {
        match overlay_probe(dirs) {
            Ok(()) => r.say(
                Level::Ok,
                "overlayfs",
                "the kernel mounts overlayfs in a user namespace",
                "",
            ),
            Err(e) => {
                let fuse = which("fuse-overlayfs").is_some();
                let dev_fuse = nix::unistd::access(
                    "/dev/fuse",
                    nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
                )
                .is_ok();
                if fuse && dev_fuse {
                    r.say(
                        Level::Warn,
                        "overlayfs",
                        &format!("the kernel refuses it ({e}); fuse-overlayfs will be used"),
                        "",
                    );
                } else {
                    r.say(
                        Level::Fail,
                        "overlayfs",
                        &format!("the kernel refuses it in a user namespace ({e}) and the fuse-overlayfs fallback is not usable"),
                        if !fuse { "sudo apt install fuse-overlayfs" } else { "sudo chmod 0666 /dev/fuse" },
                    );
                }
            }
        }
    }

    let probe_dir = if dirs.data.exists() {
        dirs.data.clone()
    } else {
        dirs.data
            .ancestors()
            .find(|p| p.exists())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into())
    };
    if let Ok(st) = nix::sys::statvfs::statvfs(&probe_dir) {
        let free = st.blocks_available() * st.fragment_size();
        let text = format!(
            "{} free at {}",
            crate::progress::human_bytes(free),
            probe_dir.display()
        );
        if free < 2 << 30 {
            r.say(Level::Warn, "disk", &text, "an image needs a few hundred MiB; free some space or set XDG_DATA_HOME to a bigger disk");
        } else {
            r.say(Level::Ok, "disk", &text, "");
        }
    }

    match Holder::current(dirs) {
        Ok(Some(h)) => r.say(Level::Ok, "holder", &format!("running (pid {})", h.pid), ""),
        Ok(None) => r.say(
            Level::Ok,
            "holder",
            "not running (it starts with the first box)",
            "",
        ),
        Err(e) => r.say(
            Level::Fail,
            "holder",
            &format!("{e:#}"),
            "devbox stop --all",
        ),
    }
    if let Err(e) = crate::paths::check_private(&dirs.runtime) {
        let text = format!("{e:#}");
        let (what, hint) = text.split_once("\n  hint: ").unwrap_or((&text, ""));
        r.say(Level::Fail, "runtime dir", what, hint);
    }

    match crate::store::leftovers(dirs) {
        Ok(l) if l.count == 0 => r.say(
            Level::Ok,
            "leftovers",
            "none from interrupted devbox commands",
            "",
        ),
        Ok(l) => r.say(
            Level::Warn,
            "leftovers",
            &l.reclaimable(),
            "devbox image prune",
        ),
        Err(e) => r.say(
            Level::Warn,
            "leftovers",
            &format!("cannot look for them: {e:#}"),
            "",
        ),
    }

    if r.failed {
        println!("\nSome checks failed; the fixes are listed above.");
        return Ok(1);
    }
    println!("\nAll checks passed.");
    Ok(0)
}

/// The user's ranges in the subordinate id files: present, big enough, without the user's own
/// id, and shared with no other user (whose boxes' files would then be this user's). Returns
/// whether they are usable.
fn subid_checks(r: &mut Report, files: &SubIdFiles, user: &str, uid: u32, gid: u32) -> bool {
    let mut ranges_ok = true;
    for (kind, id) in [("subuid", uid), ("subgid", gid)] {
        let path = files.path(kind);
        match idmap::lookup(files, kind, user, id) {
            Ok(range) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let others = idmap::clashes(&text, user, uid, range);
                if others.is_empty() {
                    r.say(
                        Level::Ok,
                        &format!("/etc/{kind}"),
                        &format!("{user}: {} ids from {}", range.count, range.start),
                        "",
                    );
                } else {
                    ranges_ok = false;
                    let shared: Vec<String> = others
                        .iter()
                        .map(|(who, o)| {
                            format!(
                                "{who} ({}-{})",
                                o.start,
                                o.start as u64 + o.count as u64 - 1
                            )
                        })
                        .collect();
                    r.say(
                        Level::Fail,
                        &format!("/etc/{kind}"),
                        &format!(
                            "{user}'s range {}-{} overlaps the range of {}: in-box ids of one user would be ids of the other's boxes",
                            range.start,
                            range.start as u64 + range.count as u64 - 1,
                            shared.join(", ")
                        ),
                        &format!(
                            "give {user} a range of its own: sudo usermod --del-{kind}s {}-{} --add-{kind}s {} {user}",
                            range.start,
                            range.start as u64 + range.count as u64 - 1,
                            files.free_range()
                        ),
                    );
                }
            }
            Err(e) => {
                ranges_ok = false;
                let text = e.to_string();
                let (what, hint) = text.split_once("\n  hint: ").unwrap_or((&text, ""));
                r.say(Level::Fail, &format!("/etc/{kind}"), what, hint);
            }
        }
    }
    ranges_ok
}

/// Mounts an overlay in a throw-away user and mount namespace, in a child process. Its scratch
/// dir (`RUNTIME/doctor-PID-STARTTIME-*`) is removed when the probe ends, however it ends; one
/// left by a killed doctor is removed by the next (or by any sweep of leftovers).
fn overlay_probe(dirs: &Dirs) -> Result<()> {
    crate::paths::private_dir(&dirs.runtime)?;
    let tmp = crate::store::Scratch::new(&dirs.runtime, "doctor")?;
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(tmp.path().join(d))?;
    }
    let mapping = Mapping::current()?;
    let opts = crate::runtime::rootfs::overlay_options(
        &tmp.path().join("lower"),
        &tmp.path().join("upper"),
        &tmp.path().join("work"),
    );
    let merged = tmp.path().join("merged");
    match sys::fork()? {
        Forked::Child => {
            let ok = crate::runtime::userns::unshare_mapped(&mapping).is_ok()
                && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok();
            if !ok {
                std::process::exit(2);
            }
            let code = match nix::mount::mount(
                Some("overlay"),
                &merged,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            ) {
                Ok(()) => 0,
                Err(e) => 10 + e as i32,
            };
            std::process::exit(code.min(255));
        }
        Forked::Parent(child) => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, 2) => anyhow::bail!("could not create a user namespace"),
            WaitStatus::Exited(_, n) if n >= 10 => {
                anyhow::bail!("{}", nix::errno::Errno::from_raw(n - 10).desc())
            }
            other => anyhow::bail!("probe ended with {other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(subuid: &str, subgid: &str) -> (bool, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subuid"), subuid).unwrap();
        std::fs::write(dir.path().join("subgid"), subgid).unwrap();
        let files = SubIdFiles {
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
        };
        let mut r = Report {
            failed: false,
            kept: Some(Vec::new()),
        };
        let ok = subid_checks(&mut r, &files, "alice", 1000, 1000);
        (ok, r.kept.unwrap())
    }

    #[test]
    fn a_range_shared_with_another_user_fails_with_a_free_one() {
        let (ok, lines) = report(
            "bob:100000:65536\nalice:100000:65536\n",
            "alice:300000:65536\nbob:100000:65536\n",
        );
        assert!(!ok, "{lines:#?}");
        assert_eq!(
            lines[0],
            "FAIL  /etc/subuid: alice's range 100000-165535 overlaps the range of bob (100000-165535): in-box ids of one user would be ids of the other's boxes"
        );
        assert_eq!(
            lines[1],
            "      fix: give alice a range of its own: sudo usermod --del-subuids 100000-165535 --add-subuids 165536-231071 alice"
        );
        assert!(
            lines[2].starts_with("ok    /etc/subgid: alice: 65536 ids from 300000"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_missing_range_gets_one_free_in_both_files() {
        let (ok, lines) = report("bob:100000:65536\n", "carol:165536:65536\n");
        assert!(!ok);
        assert!(
            lines.contains(&"      fix: `sudo usermod --add-subuids 231072-296607 alice` (a range no user has in /etc/subuid or /etc/subgid); then see `devbox doctor`".to_string()),
            "{lines:#?}"
        );
    }
}
