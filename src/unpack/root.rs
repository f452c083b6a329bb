//! Stage 5: the unpacked tree as a box's root: finding the root filesystem inside an archive
//! by its contents, and checking that a box can run on it.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::tree::{fs_err, list_dir, lossy, resolve};
use super::UnpackError;

/// Checks that an unpacked tree can be a box's root: `/etc` is a directory and a shell
/// (`/bin/sh`) is an executable file, both resolved inside the tree (an absolute symlink such
/// as `bin -> /usr/bin` counts as the box will see it). The reason when not.
pub fn check_usable_root(root: &Path) -> Result<(), String> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let kind = |p: &[u8]| {
        resolve(root_fd.as_fd(), p, OFlag::O_PATH | OFlag::O_CLOEXEC)
            .ok()
            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
    };
    match kind(b"etc") {
        Some(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
        _ => {
            let top: Vec<String> = list_dir(root_fd.as_fd(), b".", b".")
                .unwrap_or_default()
                .iter()
                .take(8)
                .map(|n| lossy(n))
                .collect();
            return Err(format!(
                "it has no /etc directory (its top level: {})",
                if top.is_empty() {
                    "empty".into()
                } else {
                    top.join(", ")
                }
            ));
        }
    }
    let shell = [&b"bin/sh"[..], b"usr/bin/sh", b"bin/bash", b"usr/bin/bash"]
        .into_iter()
        .any(|p| {
            kind(p).is_some_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
                    && st.st_mode & 0o111 != 0
            })
        });
    if !shell {
        return Err("it has no shell (/bin/sh)".into());
    }
    Ok(())
}

/// Whether `name` in `dir` is a directory that holds a root filesystem.
pub(super) fn is_rootfs_dir(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    let Ok(fd) = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let has = |n: &str| fstatat(fd.as_fd(), n, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
    has("etc") && (has("usr") || has("bin"))
}

/// The top directory moved up and the plain files dropped beside it.
pub(super) type Stripped = (Vec<u8>, Vec<Vec<u8>>);

pub(super) fn strip_toplevel_at(root: BorrowedFd<'_>) -> Result<Option<Stripped>, UnpackError> {
    if is_rootfs_dir(root, b".") {
        return Ok(None);
    }
    let names = list_dir(root, b".", b".")?;
    let kind = |n: &[u8]| {
        fstatat(root, n, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
            .ok()
    };
    let roots: Vec<&Vec<u8>> = names.iter().filter(|n| is_rootfs_dir(root, n)).collect();
    let [top] = roots.as_slice() else {
        return Ok(None);
    };
    let top: &Vec<u8> = top;
    let others: Vec<Vec<u8>> = names.iter().filter(|n| *n != top).cloned().collect();
    if !others.iter().all(|n| kind(n) == Some(SFlag::S_IFREG)) {
        return Ok(None);
    }
    let top_fd = openat(
        root,
        top.as_slice(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fs_err("open directory", top, e))?;
    for f in &others {
        unlinkat(root, f.as_slice(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| fs_err("remove", f, e))?;
    }
    let children = list_dir(top_fd.as_fd(), b".", top)?;
    // Park the top directory under a name none of its children has, so a
    // child with the same name as the top directory can move up too.
    let mut parked = b".devbox-strip".to_vec();
    while children.contains(&parked) || parked == *top {
        parked.push(b'_');
    }
    renameat(root, top.as_slice(), root, parked.as_slice())
        .map_err(|e| fs_err("rename directory", top, e))?;
    for child in &children {
        renameat(top_fd.as_fd(), child.as_slice(), root, child.as_slice()).map_err(|e| {
            let mut path = top.clone();
            path.push(b'/');
            path.extend_from_slice(child);
            fs_err("move up", &path, e)
        })?;
    }
    unlinkat(root, parked.as_slice(), UnlinkatFlags::RemoveDir)
        .map_err(|e| fs_err("remove directory", top, e))?;
    Ok(Some((top.clone(), others)))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;

    use crate::unpack::testutil::*;

    #[test]
    fn strips_single_rootfs_directory() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .dir("root.x86_64/usr/bin/", 0o555)
            .file("root.x86_64/usr/bin/sh", 0o755, b"sh")
            .symlink("root.x86_64/bin", "usr/bin")
            .dir("root.x86_64/root.x86_64/", 0o700)
            .file("root.x86_64/root.x86_64/same-name", 0o644, b"n")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix.as_deref(), Some("root.x86_64"));
        let r = &s.root;
        assert_eq!(fs::read(r.join("etc/os-release")).unwrap(), b"ID=arch");
        assert_eq!(fs::read(r.join("bin/sh")).unwrap(), b"sh");
        assert_eq!(fs::read(r.join("root.x86_64/same-name")).unwrap(), b"n");
        assert_eq!(mode_of(&r.join("usr/bin")), 0o555);
        assert_eq!(mode_of(&r.join("root.x86_64")), 0o700);
        let mut names: Vec<_> = fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["bin", "etc", "root.x86_64", "usr"]);

        // A single directory that is not a rootfs stays.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("project/", 0o755)
            .file("project/README", 0o644, b"r")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix, None);
        assert!(s.root.join("project/README").exists());
        // Stripping again finds nothing to strip.
        let fd = nix::fcntl::open(
            &s.root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        assert!(super::strip_toplevel_at(fd.as_fd()).unwrap().is_none());
    }

    #[test]
    fn the_root_is_found_beside_plain_files_as_in_the_arch_bootstrap() {
        // archiso's mkarchiso: root.x86_64/, pkglist.x86_64.txt and version at the top.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .dir("root.x86_64/usr/bin/", 0o755)
            .file("root.x86_64/usr/bin/sh", 0o755, b"sh")
            .symlink("root.x86_64/bin", "usr/bin")
            .file("root.x86_64/version", 0o644, b"inside")
            .file("pkglist.x86_64.txt", 0o644, b"bash 5.2\n")
            .file("version", 0o644, b"2026.12.01\n")
            .build();
        let stats = run(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix.as_deref(), Some("root.x86_64"));
        let mut dropped = stats.dropped.clone();
        dropped.sort();
        assert_eq!(dropped, ["pkglist.x86_64.txt", "version"]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("bin/sh")).unwrap(), b"sh");
        // The root's own file of that name, not the archive's.
        assert_eq!(fs::read(r.join("version")).unwrap(), b"inside");
        assert!(!r.join("pkglist.x86_64.txt").exists());

        // Two candidate roots, or a directory beside one: nothing is guessed.
        for extra in ["other/etc/", "docs/"] {
            let s = Scratch::new();
            let mut t = Tar::new()
                .dir("root.x86_64/", 0o755)
                .dir("root.x86_64/etc/", 0o755)
                .dir("root.x86_64/usr/", 0o755);
            if extra == "other/etc/" {
                t = t.dir("other/", 0o755).dir("other/usr/", 0o755);
            }
            let tar = t.dir(extra, 0o755).build();
            let stats = run(&tar, &s.root).unwrap();
            assert_eq!(stats.stripped_prefix, None, "{extra}");
        }
        // An archive whose top is a root already is left as it is.
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .dir("usr/", 0o755)
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .dir("root.x86_64/usr/", 0o755)
            .build();
        assert_eq!(run(&tar, &s.root).unwrap().stripped_prefix, None);
    }

    #[test]
    fn root_entry_must_be_a_directory() {
        let s = Scratch::new();
        let tar = Tar::new().file("./", 0o755, b"").build();
        // A regular entry named "./" is an old-style directory entry.
        run(&tar, &s.root).unwrap();
        let tar = Tar::new().symlink(".", "/etc").build();
        let msg = run(&tar, &s.root).unwrap_err().to_string();
        assert!(msg.contains("target directory itself"), "{msg}");
    }
}
