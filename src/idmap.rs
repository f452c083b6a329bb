//! Keep-id user namespace mappings from /etc/subuid and /etc/subgid, written by newuidmap and
//! newgidmap.
//!
//! Privilege model: devbox is never setuid. The only privileged step in the whole program is
//! executing the distribution's setuid `newuidmap`/`newgidmap`, which check on their own that
//! every range we ask for lies inside the caller's /etc/subuid and /etc/subgid entries. The
//! caller's own uid and gid map to themselves (count 1) so files in the home directory keep
//! their owner; every other in-box id, root included, maps into the subordinate range.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The smallest subordinate range devbox accepts: enough for ids 0..=65535 inside the box, which
/// covers the `nobody` (65534) that every distribution ships.
pub const MIN_RANGE: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// One line of a uid_map/gid_map: `count` ids starting at `inner` inside map to `outer` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inner: u32,
    pub outer: u32,
    pub count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("devbox must run as an ordinary user, not as root\n  hint: run it as the user whose box it is (root needs no user namespace)")]
    IsRoot,
    #[error("cannot read {path}: {source}\n  hint: install the uidmap package and give your user a range, e.g. `sudo usermod --add-subuids {free} --add-subgids {free} {user}`")]
    Unreadable {
        path: PathBuf,
        user: String,
        source: std::io::Error,
        free: FreeRange,
    },
    #[error("user '{user}' has no entry in {path}\n  hint: `sudo usermod --add-{kind}s {free} {user}` (a range no user has in /etc/subuid or /etc/subgid); then see `devbox doctor`")]
    Missing {
        path: PathBuf,
        user: String,
        kind: &'static str,
        free: FreeRange,
    },
    #[error("the range of user '{user}' in {path} has {count} ids; devbox needs at least {MIN_RANGE}\n  hint: `sudo usermod --add-{kind}s START-END {user}` with a range of 65536 ids or more")]
    TooSmall {
        path: PathBuf,
        user: String,
        kind: &'static str,
        count: u32,
    },
    #[error("the range {start}-{end} of user '{user}' in {path} contains the user's own id {id}\n  hint: give the user a subordinate range that does not include {id}, e.g. {free}, in {path}")]
    ContainsOwnId {
        path: PathBuf,
        user: String,
        id: u32,
        start: u32,
        end: u64,
        free: FreeRange,
    },
    #[error("{tool} not found on PATH\n  hint: install it: `sudo apt install uidmap` (Debian, Ubuntu) or `sudo dnf install shadow-utils` (Fedora); then see `devbox doctor`")]
    HelperMissing { tool: &'static str },
    #[error("{tool} failed ({status}): {stderr}\n  hint: {tool} must be setuid root or have file capabilities (`ls -l $(command -v {tool})`); {extra}see `devbox doctor`")]
    HelperFailed {
        tool: &'static str,
        status: String,
        stderr: String,
        extra: &'static str,
    },
}

/// Where the subordinate id files live; tests point these at temp files.
#[derive(Debug, Clone)]
pub struct SubIdFiles {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

impl SubIdFiles {
    pub fn path(&self, kind: &str) -> &Path {
        if kind == "subgid" {
            &self.subgid
        } else {
            &self.subuid
        }
    }

    /// A range of [`MIN_RANGE`] ids that is free in both files (unreadable files count as
    /// empty).
    pub fn free_range(&self) -> FreeRange {
        let taken: Vec<SubIdRange> = [&self.subuid, &self.subgid]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|t| all_ranges(&t).into_iter().map(|(_, r)| r))
            .collect();
        FreeRange(first_free(&taken, MIN_RANGE))
    }
}

impl Default for SubIdFiles {
    fn default() -> Self {
        SubIdFiles {
            subuid: PathBuf::from("/etc/subuid"),
            subgid: PathBuf::from("/etc/subgid"),
        }
    }
}

/// Finds the first range for `user` (by name or numeric id) in a subuid/subgid style file.
pub fn parse_ranges(text: &str, user: &str, id: u32) -> Vec<SubIdRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut parts = line.split(':');
            let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            if who != user && who != id {
                return None;
            }
            Some(SubIdRange {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            })
        })
        .collect()
}

/// Reads and checks the user's range from one of `files`. `kind` is "subuid" or "subgid".
pub fn lookup(
    files: &SubIdFiles,
    kind: &'static str,
    user: &str,
    id: u32,
) -> Result<SubIdRange, IdMapError> {
    let path = files.path(kind);
    let text = std::fs::read_to_string(path).map_err(|source| IdMapError::Unreadable {
        path: path.to_path_buf(),
        user: user.to_string(),
        source,
        free: files.free_range(),
    })?;
    let ranges = parse_ranges(&text, user, id);
    // The largest range wins when a user has several.
    let range = ranges
        .into_iter()
        .max_by_key(|r| r.count)
        .ok_or_else(|| IdMapError::Missing {
            path: path.to_path_buf(),
            user: user.to_string(),
            kind,
            free: files.free_range(),
        })?;
    if range.count < MIN_RANGE {
        return Err(IdMapError::TooSmall {
            path: path.to_path_buf(),
            user: user.to_string(),
            kind,
            count: range.count,
        });
    }
    let end = range.start as u64 + range.count as u64 - 1;
    if (range.start as u64..=end).contains(&(id as u64)) {
        return Err(IdMapError::ContainsOwnId {
            path: path.to_path_buf(),
            user: user.to_string(),
            id,
            start: range.start,
            end,
            free: files.free_range(),
        });
    }
    Ok(range)
}

/// A suggested subordinate range, shown as `START-END` (what `usermod --add-subuids` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeRange(pub SubIdRange);

impl fmt::Display for FreeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{}-{}", r.start, r.start as u64 + r.count as u64 - 1)
    }
}

/// Every entry of a subuid/subgid style file, whoever it belongs to: `(owner, range)`.
pub fn all_ranges(text: &str) -> Vec<(String, SubIdRange)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut parts = line.split(':');
            let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            Some((
                who.to_string(),
                SubIdRange {
                    start: start.trim().parse().ok()?,
                    count: count.trim().parse().ok()?,
                },
            ))
        })
        .collect()
}

/// The lowest range of `count` ids from 100000 on that no entry of `taken` touches, so one
/// range serves as subuid and subgid range alike.
pub fn first_free(taken: &[SubIdRange], count: u32) -> SubIdRange {
    let mut start: u64 = 100_000;
    loop {
        let end = start + count as u64;
        let blocker = taken
            .iter()
            .filter(|r| (r.start as u64) < end && start < r.start as u64 + r.count as u64)
            .map(|r| r.start as u64 + r.count as u64)
            .max();
        match blocker {
            Some(next) => start = next,
            None => break,
        }
    }
    SubIdRange {
        start: start.min(u32::MAX as u64 - count as u64) as u32,
        count,
    }
}

/// Whether two ranges share an id.
pub fn overlap(a: SubIdRange, b: SubIdRange) -> bool {
    (a.start as u64) < b.start as u64 + b.count as u64
        && (b.start as u64) < a.start as u64 + a.count as u64
}

/// Entries of other users in `text` whose range shares ids with `mine` (`who` is the user's
/// name, `id` their uid; an entry may name a user either way).
pub fn clashes(text: &str, who: &str, id: u32, mine: SubIdRange) -> Vec<(String, SubIdRange)> {
    let id = id.to_string();
    all_ranges(text)
        .into_iter()
        .filter(|(owner, r)| *owner != who && *owner != id && overlap(*r, mine))
        .collect()
}

/// The keep-id mapping: `id` maps to itself, and the in-box ids around it fill the subordinate
/// range in order, so in-box root is `range.start` and in-box id N (N < id) is `range.start + N`.
pub fn keep_id(id: u32, range: SubIdRange) -> Vec<IdMap> {
    let c = range.count;
    let s = range.start;
    if id >= c {
        return vec![
            IdMap {
                inner: 0,
                outer: s,
                count: c,
            },
            IdMap {
                inner: id,
                outer: id,
                count: 1,
            },
        ];
    }
    let mut maps = Vec::with_capacity(3);
    if id > 0 {
        maps.push(IdMap {
            inner: 0,
            outer: s,
            count: id,
        });
    }
    maps.push(IdMap {
        inner: id,
        outer: id,
        count: 1,
    });
    maps.push(IdMap {
        inner: id + 1,
        outer: s + id,
        count: c - id,
    });
    maps
}

/// Maps an in-box id to the host id it is stored as.
#[cfg(test)]
pub fn to_host(maps: &[IdMap], inner: u32) -> Option<u32> {
    maps.iter()
        .find(|m| inner >= m.inner && inner - m.inner < m.count)
        .map(|m| m.outer + (inner - m.inner))
}

/// Both mappings for the calling user, checked.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
}

impl Mapping {
    pub fn for_user(
        files: &SubIdFiles,
        user: &str,
        uid: u32,
        gid: u32,
    ) -> Result<Mapping, IdMapError> {
        if uid == 0 {
            return Err(IdMapError::IsRoot);
        }
        let ur = lookup(files, "subuid", user, uid)?;
        let gr = lookup(files, "subgid", user, uid)?;
        if (gr.start as u64..gr.start as u64 + gr.count as u64).contains(&(gid as u64)) {
            return Err(IdMapError::ContainsOwnId {
                path: files.subgid.clone(),
                user: user.to_string(),
                id: gid,
                start: gr.start,
                end: gr.start as u64 + gr.count as u64 - 1,
                free: files.free_range(),
            });
        }
        Ok(Mapping {
            uid_maps: keep_id(uid, ur),
            gid_maps: keep_id(gid, gr),
        })
    }

    /// The mapping of the current process's user, from the real files.
    pub fn current() -> Result<Mapping, IdMapError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = crate::paths::user_name(uid);
        Mapping::for_user(&SubIdFiles::default(), &name, uid, gid)
    }

    /// Runs newuidmap and newgidmap on `pid`, which must have just unshared its user namespace.
    pub fn apply(&self, pid: u32) -> Result<(), IdMapError> {
        // The two maps are independent: both helpers run at once, which takes a setuid exec
        // off every cold start. The uid helper's failure is the one reported when both fail.
        let uid = spawn_helper("newuidmap", pid, &self.uid_maps);
        let gid = spawn_helper("newgidmap", pid, &self.gid_maps);
        let uid = uid.and_then(|child| finish_helper("newuidmap", child));
        let gid = gid.and_then(|child| finish_helper("newgidmap", child));
        uid.and(gid)
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.inner, self.outer, self.count)
    }
}

fn spawn_helper(
    tool: &'static str,
    pid: u32,
    maps: &[IdMap],
) -> Result<std::process::Child, IdMapError> {
    let mut cmd = Command::new(tool);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.inner.to_string(),
            m.outer.to_string(),
            m.count.to_string(),
        ]);
    }
    crate::ui::detail(format_args!("running {}", crate::ui::shown(&cmd)));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    match cmd.spawn() {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(IdMapError::HelperMissing { tool })
        }
        Err(e) => Err(IdMapError::HelperFailed {
            tool,
            status: "could not start".into(),
            stderr: e.to_string(),
            extra: "",
        }),
    }
}

fn finish_helper(tool: &'static str, child: std::process::Child) -> Result<(), IdMapError> {
    let out = child
        .wait_with_output()
        .map_err(|e| IdMapError::HelperFailed {
            tool,
            status: "could not be waited for".into(),
            stderr: e.to_string(),
            extra: "",
        })?;
    if out.status.success() {
        return Ok(());
    }
    let apparmor =
        std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .map(|v| v.trim() == "1")
            .unwrap_or(false);
    Err(IdMapError::HelperFailed {
        tool,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        extra: if apparmor {
            "this kernel restricts unprivileged user namespaces through AppArmor (kernel.apparmor_restrict_unprivileged_userns=1): allow devbox with an AppArmor profile granting `userns`; "
        } else {
            ""
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_id_splits_the_range_around_the_user() {
        let r = SubIdRange {
            start: 100000,
            count: 65536,
        };
        let m = keep_id(1000, r);
        assert_eq!(
            m,
            vec![
                IdMap {
                    inner: 0,
                    outer: 100000,
                    count: 1000
                },
                IdMap {
                    inner: 1000,
                    outer: 1000,
                    count: 1
                },
                IdMap {
                    inner: 1001,
                    outer: 101000,
                    count: 64536
                },
            ]
        );
        assert_eq!(to_host(&m, 0), Some(100000));
        assert_eq!(to_host(&m, 42), Some(100042));
        assert_eq!(to_host(&m, 1000), Some(1000));
        assert_eq!(to_host(&m, 65534), Some(100000 + 65533));
        assert_eq!(to_host(&m, 65536), Some(100000 + 65535));
        assert_eq!(to_host(&m, 65537), None);
    }

    #[test]
    fn keep_id_for_a_uid_above_the_range_size() {
        let r = SubIdRange {
            start: 200000,
            count: 65536,
        };
        let m = keep_id(70000, r);
        assert_eq!(
            m,
            vec![
                IdMap {
                    inner: 0,
                    outer: 200000,
                    count: 65536
                },
                IdMap {
                    inner: 70000,
                    outer: 70000,
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn parses_by_name_or_id_and_skips_junk() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1003:300000:70000\nbroken\n";
        assert_eq!(
            parse_ranges(text, "bob", 1002),
            vec![SubIdRange {
                start: 165536,
                count: 65536
            }]
        );
        assert_eq!(
            parse_ranges(text, "carol", 1003),
            vec![SubIdRange {
                start: 300000,
                count: 70000
            }]
        );
        assert!(parse_ranges(text, "dave", 1004).is_empty());
    }

    fn files(subuid: &str, subgid: &str) -> (tempfile::TempDir, SubIdFiles) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subuid"), subuid).unwrap();
        std::fs::write(dir.path().join("subgid"), subgid).unwrap();
        let f = SubIdFiles {
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
        };
        (dir, f)
    }

    #[test]
    fn the_suggested_range_is_free_in_both_files() {
        let r = |start, count| SubIdRange { start, count };
        assert_eq!(first_free(&[], 65536), r(100000, 65536));
        // Taken as a subuid range by one user and as a subgid range by another.
        let taken = [r(100000, 65536), r(165536, 1000), r(300000, 65536)];
        assert_eq!(first_free(&taken, 65536), r(166536, 65536));
        let (_d, f) = files("bob:100000:65536\n", "carol:165536:65536\n");
        assert_eq!(f.free_range().to_string(), "231072-296607");
        let e = Mapping::for_user(&f, "alice", 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--add-subuids 231072-296607 alice"), "{e}");
    }

    #[test]
    fn clashes_are_other_users_overlapping_ranges() {
        let text = "alice:100000:65536\nbob:150000:65536\n1000:120000:10\ncarol:165536:65536\n";
        let mine = SubIdRange {
            start: 100000,
            count: 65536,
        };
        let got = clashes(text, "alice", 1000, mine);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "bob");
        assert!(clashes(text, "carol", 1002, mine).len() == 3);
    }

    #[test]
    fn errors_name_the_fix() {
        let (_d, f) = files("alice:100000:65536\n", "");
        let e = Mapping::for_user(&f, "alice", 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no entry in") && e.contains("usermod --add-subgids"),
            "{e}"
        );

        let (_d, f) = files("alice:100000:1000\n", "alice:100000:65536\n");
        let e = Mapping::for_user(&f, "alice", 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has 1000 ids") && e.contains("at least 65536"),
            "{e}"
        );

        let (_d, f) = files("alice:0:65536\n", "alice:100000:65536\n");
        let e = Mapping::for_user(&f, "alice", 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("contains the user's own id 1000"), "{e}");

        let (_d, f) = files("alice:100000:65536\n", "alice:100000:65536\n");
        assert!(Mapping::for_user(&f, "alice", 1000, 1000).is_ok());
        assert!(matches!(
            Mapping::for_user(&f, "root", 0, 0),
            Err(IdMapError::IsRoot)
        ));
    }
}
