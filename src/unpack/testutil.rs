//! Test support for the unpack stages: a scratch directory and a tar builder.

pub use std::fs;
pub use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
pub use std::path::{Path, PathBuf};
pub use tar::{Builder, EntryType, Header};

use crate::unpack::decompress::decompressed_counting;
use crate::unpack::*;
use std::fs::File;
use std::sync::atomic::Ordering;

/// A scratch area: `outside/` holds `root/` (the target) and is checked
/// for anything escaping.
pub struct Scratch {
    pub _tmp: tempfile::TempDir,
    pub outside: PathBuf,
    pub root: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let root = outside.join("root");
        fs::create_dir_all(&root).unwrap();
        Scratch {
            _tmp: tmp,
            outside,
            root,
        }
    }

    /// Names in `outside` other than `root`.
    pub fn escaped(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "root" && n != "file")
            .collect();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Make read-only directories removable again.
        fn walk(p: &Path) {
            if let Ok(md) = fs::symlink_metadata(p) {
                if md.is_dir() {
                    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
                    if let Ok(rd) = fs::read_dir(p) {
                        for e in rd.flatten() {
                            walk(&e.path());
                        }
                    }
                }
            }
        }
        walk(&self.outside);
    }
}

pub const MTIME: u64 = 1_600_000_000;

pub fn opts() -> Options {
    Options {
        preserve_owner: false,
        ..Default::default()
    }
}

pub fn run(tar: &[u8], root: &Path) -> Result<Stats, UnpackError> {
    unpack(tar, root, &opts(), &mut |_| {})
}

/// A GNU header with the name written raw (no validation), so hostile
/// names can be built.
pub fn raw_header(name: &[u8], kind: EntryType, mode: u32, size: u64, link: &[u8]) -> Header {
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// Builds archives entry by entry, with raw names.
pub struct Tar(pub Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Tar {
        Tar(Builder::new(Vec::new()))
    }
    pub fn dir(mut self, name: &str, mode: u32) -> Tar {
        let h = raw_header(name.as_bytes(), EntryType::Directory, mode, 0, b"");
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    pub fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Tar {
        let h = raw_header(
            name.as_bytes(),
            EntryType::Regular,
            mode,
            data.len() as u64,
            b"",
        );
        self.0.append(&h, data).unwrap();
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> Tar {
        let h = raw_header(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            0,
            target.as_bytes(),
        );
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    pub fn hardlink(mut self, name: &str, target: &str) -> Tar {
        let h = raw_header(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            0,
            target.as_bytes(),
        );
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    pub fn special(mut self, name: &str, kind: EntryType) -> Tar {
        let mut h = raw_header(name.as_bytes(), kind, 0o644, 0, b"");
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    /// A GNU sparse member (type `S`) of apparent size `size` holding
    /// `regions` (offset, data) and holes elsewhere. At most four regions
    /// (no extension headers); all but the last a multiple of 512 long;
    /// the last must end at `size` (GNU tar ends the map of a file with
    /// a trailing hole with an empty region there).
    pub fn sparse(mut self, name: &str, size: u64, regions: &[(u64, &[u8])]) -> Tar {
        fn octal(field: &mut [u8; 12], v: u64) {
            field.copy_from_slice(format!("{v:011o}\0").as_bytes());
        }
        assert!(regions.len() <= 4);
        let data: Vec<u8> = regions.iter().flat_map(|r| r.1.to_vec()).collect();
        let mut h = raw_header(
            name.as_bytes(),
            EntryType::GNUSparse,
            0o640,
            data.len() as u64,
            b"",
        );
        let gnu = h.as_gnu_mut().unwrap();
        for (slot, (off, bytes)) in gnu.sparse.iter_mut().zip(regions) {
            octal(&mut slot.offset, *off);
            octal(&mut slot.numbytes, bytes.len() as u64);
        }
        octal(&mut gnu.realsize, size);
        h.set_cksum();
        self.0.append(&h, data.as_slice()).unwrap();
        self
    }
    /// A PAX extended header for the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Tar {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = raw_header(
            b"PaxHeader",
            EntryType::XHeader,
            0o644,
            data.len() as u64,
            b"",
        );
        self.0.append(&h, data.as_slice()).unwrap();
        self
    }
    pub fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

pub fn mtime_of(p: &Path) -> i64 {
    fs::symlink_metadata(p).unwrap().mtime()
}

pub fn sample_tar() -> Vec<u8> {
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    Tar::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/hostname", 0o644, b"devbox\n")
        .file("./etc/blob", 0o644, &data)
        .build()
}

pub fn unpack_file(bytes: &[u8], s: &Scratch) -> Result<Stats, UnpackError> {
    let path = s.outside.parent().unwrap().join("archive");
    fs::write(&path, bytes).unwrap();
    let (reader, counter) = decompressed_counting(File::open(&path).unwrap())?;
    let mut calls = 0;
    let stats = unpack(reader, &s.root, &opts(), &mut |_| calls += 1)?;
    assert!(calls > 0);
    assert_eq!(counter.load(Ordering::Relaxed), bytes.len() as u64);
    Ok(stats)
}
