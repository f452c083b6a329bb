//! Who keeps a box mounted: the kernel's answer, read from `/proc`.
//!
//! A box's overlay stays mounted for as long as any mount namespace holds it: the box's own
//! (persisted in the holder, or kept alive by the processes in it), and every namespace copied
//! from it by a process inside (`unshare -m`, bwrap, browser sandboxes, podman). Records in the
//! store can be stale after a crash; the mount tables cannot. So "in use" is found by grouping
//! our processes by mount namespace and reading one mount table per namespace:
//!
//! - the kernel's overlayfs shows the upper dir it was mounted with (`upperdir=` in the super
//!   options, as given at mount time), which names the box;
//! - fuse-overlayfs shows no paths: its file system is found by its mount point, the box's
//!   `merged/` in the holder's namespace (where the daemon mounted it), and then by its device
//!   number in the namespaces of the box and of its nested copies.
//!
//! Only processes whose namespace file we may read count: our own, and those in user
//! namespaces we own. Another user's mounts can never make our box look in use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One mount namespace and the processes in it.
#[derive(Debug, Default)]
struct Group {
    pids: Vec<i32>,
    /// Upper dirs of kernel overlay mounts in it (unescaped).
    uppers: BTreeSet<String>,
    /// fuse-overlayfs mounts in it: device number -> mount point.
    fuse: Vec<(String, String)>,
}

/// A snapshot of our processes' mount namespaces and their overlays.
#[derive(Debug, Default)]
pub struct Scan {
    groups: BTreeMap<String, Group>,
}

impl Scan {
    /// Reads `/proc` once. Processes that end meanwhile are simply not seen.
    pub fn take() -> Scan {
        Self::take_in(Path::new("/proc"))
    }

    fn take_in(proc: &Path) -> Scan {
        let me = std::process::id() as i32;
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(proc) else {
            return Scan::default();
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Readable only for processes we may inspect (ours, or in our user namespaces).
            let Ok(ns) = std::fs::read_link(e.path().join("ns/mnt")) else {
                continue;
            };
            groups
                .entry(ns.to_string_lossy().into_owned())
                .or_default()
                .pids
                .push(pid);
        }
        for g in groups.values_mut() {
            g.pids.sort_unstable();
            for pid in &g.pids {
                if let Ok(text) = std::fs::read_to_string(proc.join(format!("{pid}/mountinfo"))) {
                    for m in text.lines().filter_map(Mount::parse) {
                        if m.fstype == "overlay" {
                            if let Some(up) = m.option("upperdir") {
                                g.uppers.insert(up);
                            }
                        } else if m.fstype == "fuse.fuse-overlayfs" {
                            g.fuse.push((m.dev.to_string(), m.mount_point.clone()));
                        }
                    }
                    break;
                }
            }
        }
        Scan { groups }
    }

    /// The processes that keep the box with these directories mounted: every process in a
    /// mount namespace that holds its overlay, except the namespaces where a fuse-overlayfs box
    /// was mounted by design (the holder's), whose processes are listed apart.
    pub fn users(&self, upper: &Path, merged: &Path) -> Users {
        let upper = upper.to_string_lossy();
        let merged = merged.to_string_lossy();
        // fuse-overlayfs: the devices mounted on the box's merged dir, and the namespaces
        // (holders', live or dead) that mounted them there.
        let mut devs = BTreeSet::new();
        let mut home_ns = BTreeSet::new();
        for (ns, g) in &self.groups {
            for (dev, mp) in &g.fuse {
                if *mp == *merged {
                    devs.insert(dev.clone());
                    home_ns.insert(ns.clone());
                }
            }
        }
        let mut out = Users::default();
        for (ns, g) in &self.groups {
            if home_ns.contains(ns) {
                out.daemon_ns.extend(g.pids.iter().copied());
                continue;
            }
            let holds = g.uppers.contains(upper.as_ref())
                || g.fuse.iter().any(|(dev, _)| devs.contains(dev));
            if holds {
                out.pids.extend(g.pids.iter().copied());
                out.namespaces.insert(ns.clone());
            }
        }
        out.pids.sort_unstable();
        out
    }

    /// Host pids of the processes in the mount namespace `ns` (as `mnt:[INODE]`).
    pub fn in_namespace(&self, ns: &str) -> Vec<i32> {
        self.groups
            .get(ns)
            .map(|g| g.pids.clone())
            .unwrap_or_default()
    }
}

/// The processes holding one box's overlay.
#[derive(Debug, Default)]
pub struct Users {
    /// Every process whose mount table holds the box's overlay.
    pub pids: Vec<i32>,
    /// Their mount namespaces.
    pub namespaces: BTreeSet<String>,
    /// Processes of the namespaces that mounted a fuse-overlayfs box (its daemon, a holder).
    pub daemon_ns: Vec<i32>,
}

impl Users {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }
}

/// One line of /proc/PID/mountinfo, the fields devbox needs.
#[derive(Debug, PartialEq)]
struct Mount {
    dev: String,
    mount_point: String,
    fstype: String,
    super_options: String,
}

impl Mount {
    /// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
    fn parse(line: &str) -> Option<Mount> {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.splitn(3, ' ').collect();
        if l.len() < 6 || r.len() < 3 {
            return None;
        }
        Some(Mount {
            dev: l[2].to_string(),
            mount_point: unescape(l[4]),
            fstype: r[0].to_string(),
            super_options: r[2].to_string(),
        })
    }

    /// The value of `name=` among the super options (octal escapes undone).
    fn option(&self, name: &str) -> Option<String> {
        self.super_options
            .split(',')
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
            .map(unescape)
    }
}

/// Undoes the kernel's `\ooo` escapes of mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            let digit = |k: usize| u32::from(b[i + k] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let l = "512 400 0:71 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/s/images-v1/ab/rootfs,upperdir=/home/a\\054b/boxes-v1/x/upper,workdir=/home/a\\054b/boxes-v1/x/work,userxattr";
        let m = Mount::parse(l).unwrap();
        assert_eq!(m.dev, "0:71");
        assert_eq!(m.mount_point, "/");
        assert_eq!(m.fstype, "overlay");
        assert_eq!(
            m.option("upperdir").as_deref(),
            Some("/home/a,b/boxes-v1/x/upper")
        );
        let f = "90 30 0:55 / /home/my\\040dir/m rw,nosuid,nodev - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0";
        let m = Mount::parse(f).unwrap();
        assert_eq!(m.mount_point, "/home/my dir/m");
        assert_eq!(m.fstype, "fuse.fuse-overlayfs");
        assert!(Mount::parse("garbage").is_none());
    }

    #[test]
    fn users_are_found_by_upper_and_by_fuse_device() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let write = |pid: i32, ns: &str, mountinfo: &str| {
            let d = p.join(pid.to_string());
            std::fs::create_dir_all(d.join("ns")).unwrap();
            std::os::unix::fs::symlink(ns, d.join("ns/mnt")).unwrap();
            std::fs::write(d.join("mountinfo"), mountinfo).unwrap();
        };
        let host = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let kbox = format!("{host}30 22 0:40 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/s/boxes-v1/k/upper,workdir=/s/boxes-v1/k/work,userxattr\n");
        let holder = format!(
            "{host}31 22 0:41 / /s/boxes-v1/f/merged rw - fuse.fuse-overlayfs fuse-overlayfs rw\n"
        );
        let fbox = "40 39 0:41 / / rw - fuse.fuse-overlayfs fuse-overlayfs rw\n";
        write(10, "mnt:[1]", host);
        write(11, "mnt:[2]", &kbox);
        write(12, "mnt:[2]", &kbox);
        write(13, "mnt:[3]", &kbox); // a nested copy made inside box k
        write(20, "mnt:[4]", &holder); // holder and fuse daemon
        write(21, "mnt:[4]", &holder);
        write(22, "mnt:[5]", fbox);
        let scan = Scan::take_in(p);
        let k = scan.users(
            Path::new("/s/boxes-v1/k/upper"),
            Path::new("/s/boxes-v1/k/merged"),
        );
        assert_eq!(k.pids, [11, 12, 13]);
        assert_eq!(k.namespaces.len(), 2);
        let f = scan.users(
            Path::new("/s/boxes-v1/f/upper"),
            Path::new("/s/boxes-v1/f/merged"),
        );
        assert_eq!(f.pids, [22]);
        assert_eq!(f.daemon_ns, [20, 21]);
        let none = scan.users(
            Path::new("/s/boxes-v1/n/upper"),
            Path::new("/s/boxes-v1/n/merged"),
        );
        assert!(none.is_empty());
        assert_eq!(scan.in_namespace("mnt:[2]"), [11, 12]);
    }
}
