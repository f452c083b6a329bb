//! Stage 4: OCI layers. A layer is extracted like an archive, plus whiteouts: `.wh.NAME`
//! removes NAME of the layers below, `.wh..wh..opq` makes a directory opaque.

use std::io::Read;
use std::path::Path;

use super::extract::Extractor;
use super::tree::{display_name, fs_err, lossy, remove_tree, split};
use super::{Options, Stats, UnpackError};

/// Applies one OCI image layer, the plain tar stream `tar`, onto `root`,
/// which holds the layers below it (empty for the first). Call it once per
/// layer, in order, on the same directory, to flatten an image. The rules of
/// [`unpack`] hold (containment, `..` refused, devices skipped and counted,
/// directory metadata applied at the end of each call), plus:
///
/// - `.wh.NAME` removes NAME from the same directory: a file, a symlink (not
///   what it points to) or a whole directory tree. `DIR/.wh..wh..opq` makes
///   DIR opaque: everything in it from lower layers is removed. Both apply to
///   lower layers only: what this layer creates, before or after the marker,
///   stays. The markers are never created; a whiteout for a path that does
///   not exist does nothing; other `.wh..wh.*` names (AUFS metadata) are
///   skipped. Parent directories resolve inside `root` like any entry's.
/// - An entry replaces whatever its path holds by unlinking it, never writing
///   through it (so a hard link twin from a lower layer keeps its content). A
///   directory is replaced with all its contents, unless the new entry is a
///   directory too: then the two merge.
/// - Hard links may point to files of lower layers.
/// - No single top-level directory is stripped.
/// - When not run as root, directories of lower layers that their owner (the
///   caller) cannot write are made `u+rwx` while the layer is applied, and
///   get their mode back at the end. (Root, also namespace root, does not
///   need it.)
pub fn unpack_layer(
    tar: impl Read,
    root: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, UnpackError> {
    super::extract_stream(tar, root, opts, true, progress)
}

/// The `.wh.` prefix of whiteout names in OCI layers.
const WH_PREFIX: &[u8] = b".wh.";
/// The opaque directory marker.
pub(super) const WH_OPAQUE: &[u8] = b".wh..wh..opq";
/// AUFS metadata names (hard link directories and the like), skipped.
pub(super) const WH_META: &[u8] = b".wh..wh.";

impl Extractor<'_> {
    /// Whether the current entry is a whiteout (layer mode only).
    pub(super) fn is_whiteout(&self) -> bool {
        self.layer && split(&self.name).1.starts_with(WH_PREFIX)
    }

    /// Layer mode: applies whiteout entry `self.name` (`.wh.NAME` or
    /// `.wh..wh..opq`) to what the lower layers left.
    pub(super) fn whiteout(&mut self) -> Result<(), UnpackError> {
        let (parent, base) = split(&self.name);
        let opaque = base == WH_OPAQUE;
        let target: &[u8] = if opaque {
            b"."
        } else if base.starts_with(WH_META) {
            return Ok(());
        } else {
            &base[WH_PREFIX.len()..]
        };
        if !opaque && matches!(target, b"" | b"." | b"..") {
            return Err(UnpackError::Refused {
                entry: display_name(&self.name),
                reason: format!(
                    "whiteout for {:?}, which is not a name in its directory",
                    lossy(target)
                ),
            });
        }
        let mut shown = parent.to_vec();
        if !opaque {
            if !shown.is_empty() {
                shown.push(b'/');
            }
            shown.extend_from_slice(target);
        }
        let dir = self
            .tree
            .lookup(parent, false, &mut self.unlock)
            .map_err(|e| fs_err("open parent directory of", &self.name, e))?;
        let Some(dir) = dir else {
            // Nothing there to remove.
            return Ok(());
        };
        let result = remove_tree(
            dir,
            target,
            &shown,
            Some(&self.created),
            opaque,
            &mut self.unlock,
        );
        self.tree.invalidate();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::testutil::*;
    use crate::unpack::*;

    fn layer(tar: &[u8], root: &Path) -> Result<Stats, UnpackError> {
        unpack_layer(tar, root, &opts(), &mut |_| {})
    }

    /// Applies `tars` in order; each must succeed.
    fn layers(root: &Path, tars: &[Vec<u8>]) -> Vec<Stats> {
        tars.iter()
            .enumerate()
            .map(|(i, t)| layer(t, root).unwrap_or_else(|e| panic!("layer {}: {e}", i + 1)))
            .collect()
    }

    /// Every path below `root`, relative and sorted; symlinks not followed.
    fn tree_of(root: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                if e.file_type().unwrap().is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn no_whiteouts(root: &Path) {
        let left: Vec<String> = tree_of(root)
            .into_iter()
            .filter(|p| p.contains(".wh."))
            .collect();
        assert_eq!(left, Vec::<String>::new());
    }

    #[test]
    fn whiteouts_remove_files_trees_and_symlinks() {
        let s = Scratch::new();
        let victim = s.outside.join("file");
        fs::write(&victim, b"original").unwrap();
        let l1 = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/keep", 0o644, b"k")
            .file("etc/gone", 0o644, b"g")
            .dir("t/", 0o755)
            .dir("t/a/", 0o555)
            .file("t/a/b", 0o444, b"b")
            .symlink("t/c", "a")
            .dir("target/", 0o755)
            .file("target/f", 0o644, b"f")
            .symlink("link", "target")
            .symlink("abslink", "/target")
            .symlink("outlink", &victim.to_string_lossy())
            .build();
        let l2 = Tar::new()
            .file("etc/.wh.gone", 0o644, b"")
            .file(".wh.t", 0o644, b"")
            .file(".wh.link", 0o644, b"")
            .file(".wh.abslink", 0o644, b"")
            .file(".wh.outlink", 0o644, b"")
            // Whiteouts for what is not there do nothing.
            .file(".wh.nothing", 0o644, b"")
            .file("etc/.wh.nothing", 0o644, b"")
            .file("missing/.wh.x", 0o644, b"")
            .file("etc/new", 0o644, b"n")
            .special("etc/null", EntryType::Char)
            .build();
        let stats = layers(&s.root, &[l1, l2]);
        assert_eq!(stats[1].entries, 10);
        assert_eq!(stats[1].devices_skipped, 1);
        assert_eq!(
            tree_of(&s.root),
            ["etc", "etc/keep", "etc/new", "target", "target/f"]
        );
        assert_eq!(fs::read(s.root.join("target/f")).unwrap(), b"f");
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        no_whiteouts(&s.root);

        // Outside layer mode, ".wh." names are plain files.
        let s = Scratch::new();
        run(&Tar::new().file(".wh.x", 0o644, b"").build(), &s.root).unwrap();
        assert!(s.root.join(".wh.x").is_file());
    }

    #[test]
    fn whiteouts_stay_inside_root() {
        let s = Scratch::new();
        let victim = s.outside.join("victim");
        fs::write(&victim, b"outside").unwrap();
        fs::create_dir(s.outside.join("victimdir")).unwrap();
        fs::write(s.outside.join("victimdir/x"), b"outside").unwrap();
        let l1 = Tar::new()
            .file("victim", 0o644, b"inside")
            .dir("victimdir/", 0o755)
            .file("victimdir/x", 0o644, b"inside")
            .file("third", 0o644, b"inside")
            .symlink("up", "..")
            .symlink("abs", "/")
            .symlink("deep", "../../../..")
            .symlink("out", &s.outside.to_string_lossy())
            .build();
        let l2 = Tar::new()
            .file("up/.wh.victim", 0o644, b"")
            .file("abs/.wh.victimdir", 0o644, b"")
            .file("deep/.wh.third", 0o644, b"")
            // Resolves to a path inside root that does not exist.
            .file("out/.wh.victim", 0o644, b"")
            .file("up/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(fs::read(&victim).unwrap(), b"outside");
        assert_eq!(fs::read(s.outside.join("victimdir/x")).unwrap(), b"outside");
        // The opaque marker under "up" (root itself) emptied root: the
        // symlinks are lower-layer entries too.
        assert_eq!(tree_of(&s.root), Vec::<String>::new());
        assert!(s.root.is_dir());

        // Names that are not a name in the directory are refused.
        for bad in [
            ".wh..",
            ".wh...",
            "a/.wh...",
            ".wh.",
            "a/../.wh.x",
            "../.wh.x",
        ] {
            let tar = Tar::new().file(bad, 0o644, b"").build();
            let err = layer(&tar, &s.root).unwrap_err();
            assert!(matches!(err, UnpackError::Refused { .. }), "{bad}: {err}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"outside");
        assert!(s.outside.join("root").is_dir());
    }

    #[test]
    fn opaque_directories_keep_this_layers_entries() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("d/", 0o755)
            .file("d/lower1", 0o644, b"1")
            .dir("d/sub/", 0o555)
            .file("d/sub/lower2", 0o644, b"2")
            .dir("d/keepdir/", 0o755)
            .file("d/keepdir/lowerchild", 0o644, b"c")
            .dir("d/implicit/", 0o755)
            .file("d/implicit/old", 0o644, b"o")
            .dir("other/", 0o755)
            .file("other/x", 0o644, b"x")
            .symlink("d/link", "../other")
            .dir("w/", 0o755)
            .file("w/old", 0o644, b"o")
            .build();
        let l2 = Tar::new()
            .dir("d/", 0o750)
            .file("d/new_before", 0o644, b"b")
            .dir("d/keepdir/", 0o755)
            .file("d/keepdir/newchild", 0o644, b"n")
            // Its parent "deep" is created implicitly.
            .file("d/implicit/deep/f", 0o644, b"f")
            .file("d/.wh..wh..opq", 0o644, b"")
            .file("d/new_after", 0o644, b"a")
            // A whiteout applies to lower layers only.
            .file("w/fresh", 0o644, b"f")
            .file("w/.wh.fresh", 0o644, b"")
            .file("w/.wh.old", 0o644, b"")
            // An opaque directory that does not exist stays absent.
            .file("nodir/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(
            tree_of(&s.root),
            [
                "d",
                "d/implicit",
                "d/implicit/deep",
                "d/implicit/deep/f",
                "d/keepdir",
                "d/keepdir/newchild",
                "d/new_after",
                "d/new_before",
                "other",
                "other/x",
                "w",
                "w/fresh",
            ]
        );
        assert_eq!(mode_of(&s.root.join("d")), 0o750);
        assert_eq!(fs::read(s.root.join("other/x")).unwrap(), b"x");
        no_whiteouts(&s.root);

        // Entries reached through a symlinked parent count as this layer's
        // too (by where they really are).
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("usr/", 0o755)
            .dir("usr/lib/", 0o755)
            .file("usr/lib/old", 0o644, b"o")
            .symlink("lib", "usr/lib")
            .build();
        let l2 = Tar::new()
            .file("lib/new", 0o644, b"n")
            .file("usr/lib/.wh..wh..opq", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        assert_eq!(tree_of(&s.root), ["lib", "usr", "usr/lib", "usr/lib/new"]);
    }

    #[test]
    fn hardlinks_across_layers() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", 0o644, b"old")
            .hardlink("etc/twin", "etc/passwd")
            .build();
        let l2 = Tar::new()
            .hardlink("bin/link", "/etc/passwd")
            .file("etc/passwd", 0o600, b"new")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("etc/passwd")).unwrap(), b"new");
        assert_eq!(mode_of(&r.join("etc/passwd")), 0o600);
        // The replaced file was unlinked, not written through.
        assert_eq!(fs::read(r.join("etc/twin")).unwrap(), b"old");
        assert_eq!(mode_of(&r.join("etc/twin")), 0o644);
        let twin = fs::metadata(r.join("etc/twin")).unwrap();
        let link = fs::metadata(r.join("bin/link")).unwrap();
        assert_eq!(twin.ino(), link.ino());
        assert_eq!(twin.nlink(), 2);
        assert_eq!(fs::metadata(r.join("etc/passwd")).unwrap().nlink(), 1);
    }

    #[test]
    fn layers_replace_types() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("x/", 0o755)
            .dir("x/sub/", 0o555)
            .file("x/sub/f", 0o444, b"f")
            .file("x/g", 0o644, b"g")
            .file("y", 0o644, b"file")
            .dir("z-target/", 0o755)
            .symlink("z", "z-target")
            .dir("w/", 0o755)
            .file("w/a", 0o644, b"a")
            .dir("h/", 0o755)
            .file("h/a", 0o644, b"a")
            .file("keep", 0o644, b"k")
            .build();
        let l2 = Tar::new()
            .file("x", 0o644, b"now a file")
            .dir("y/", 0o700)
            .file("y/inner", 0o644, b"i")
            .dir("z/", 0o755)
            .file("z/q", 0o644, b"q")
            .symlink("w", "y")
            .hardlink("h", "keep")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(fs::read(r.join("x")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(r.join("y")).unwrap().is_dir());
        assert_eq!(mode_of(&r.join("y")), 0o700);
        assert_eq!(fs::read(r.join("y/inner")).unwrap(), b"i");
        assert!(fs::symlink_metadata(r.join("z")).unwrap().is_dir());
        assert_eq!(fs::read(r.join("z/q")).unwrap(), b"q");
        assert_eq!(tree_of(&r.join("z-target")), Vec::<String>::new());
        assert_eq!(fs::read_link(r.join("w")).unwrap(), Path::new("y"));
        let h = fs::symlink_metadata(r.join("h")).unwrap();
        assert_eq!(h.ino(), fs::metadata(r.join("keep")).unwrap().ino());
    }

    #[test]
    fn read_only_directories_accept_later_layers() {
        let s = Scratch::new();
        let l1 = Tar::new()
            .dir("./", 0o555)
            .dir("ro/", 0o555)
            .file("ro/a", 0o444, b"a")
            .dir("ro/sub/", 0o500)
            .file("ro/sub/f", 0o400, b"f")
            .dir("locked/", 0o000)
            .file("locked/f", 0o644, b"lf")
            .dir("rewritten/", 0o555)
            .dir("gone/", 0o555)
            .dir("gone/inner/", 0o555)
            .file("gone/inner/x", 0o444, b"x")
            .build();
        let l2 = Tar::new()
            .hardlink("ro/hl", "locked/f")
            .file("newtop", 0o644, b"t")
            .file("ro/b", 0o644, b"b")
            .file("ro/.wh.a", 0o644, b"")
            .file("ro/sub/g", 0o644, b"g")
            .file("locked/g", 0o644, b"lg")
            .dir("rewritten/", 0o750)
            .file("rewritten/h", 0o644, b"h")
            .file(".wh.gone", 0o644, b"")
            .build();
        layers(&s.root, &[l1, l2]);
        let r = &s.root;
        assert_eq!(mode_of(r), 0o555);
        assert_eq!(mode_of(&r.join("ro")), 0o555);
        assert_eq!(mode_of(&r.join("ro/sub")), 0o500);
        assert_eq!(mode_of(&r.join("locked")), 0o000);
        assert_eq!(mode_of(&r.join("rewritten")), 0o750);
        assert_eq!(fs::read(r.join("newtop")).unwrap(), b"t");
        assert_eq!(fs::read(r.join("ro/b")).unwrap(), b"b");
        assert!(!r.join("ro/a").exists());
        assert!(!r.join("gone").exists());
        assert_eq!(fs::read(r.join("ro/sub/g")).unwrap(), b"g");
        assert_eq!(fs::read(r.join("ro/hl")).unwrap(), b"lf");
        assert_eq!(fs::read(r.join("rewritten/h")).unwrap(), b"h");
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(fs::read(r.join("locked/g")).unwrap(), b"lg");
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();

        // A third layer finds everything read-only again and still works.
        let l3 = Tar::new()
            .file("ro/sub/third", 0o644, b"3")
            .file("locked/.wh.g", 0o644, b"")
            .build();
        layers(r, &[l3]);
        assert_eq!(fs::read(r.join("ro/sub/third")).unwrap(), b"3");
        assert_eq!(mode_of(&r.join("ro/sub")), 0o500);
        assert_eq!(mode_of(&r.join("locked")), 0o000);
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!r.join("locked/g").exists());
        assert!(r.join("locked/f").exists());
        no_whiteouts(r);
    }

    #[test]
    fn layers_are_not_stripped() {
        let s = Scratch::new();
        let tar = Tar::new()
            .dir("root.x86_64/", 0o755)
            .dir("root.x86_64/etc/", 0o755)
            .file("root.x86_64/etc/os-release", 0o644, b"ID=arch")
            .dir("root.x86_64/usr/", 0o755)
            .build();
        let stats = layer(&tar, &s.root).unwrap();
        assert_eq!(stats.stripped_prefix, None);
        assert!(s.root.join("root.x86_64/etc/os-release").is_file());
    }
}
