//! The content-addressed blob cache (`CACHE/blobs-v1/sha256/<hex>`) and downloads into it:
//! streamed to `<hex>.partial` while hashing, verified (size and sha256), renamed into place.
//! A `.partial` left by an interrupted download is resumed with an HTTP Range request.
//!
//! While a blob downloads, a [`Slot`] publishes how far its `.partial` has grown, and
//! [`Slot::reader`] follows it: the bytes of a layer can be read (and applied) while they
//! arrive, from the file the download writes, without waiting for the whole blob.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::client::{error_chain, Client, Failure};
use super::{first_line, short, OciError};
use crate::progress::human_bytes;

pub(crate) struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(cache_dir: &Path) -> Result<BlobStore, OciError> {
        let dir = cache_dir.join("blobs-v1").join("sha256");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| OciError::Io {
                action: "cannot create the blob cache",
                path: dir.clone(),
                source,
            })?;
        if let Some(top) = dir.parent() {
            crate::paths::mark_cache_dir(top);
        }
        Ok(BlobStore { dir })
    }

    /// The file of a blob. `digest` must have passed `reference::parse_digest`.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(hex_of(digest))
    }

    fn partial_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.partial", hex_of(digest)))
    }

    /// The cached blob if it is there with the right size. Blobs are only ever renamed into
    /// place after their digest was checked, so the size is the only check made here (layers
    /// are checked again against their diff_id when they are read).
    pub fn cached(&self, digest: &str, size: u64) -> Option<PathBuf> {
        let p = self.path(digest);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.len() == size => Some(p),
            Ok(m) if m.is_file() => {
                let _ = std::fs::remove_file(&p);
                None
            }
            _ => None,
        }
    }

    /// A small cached blob (manifest, config), read and checked against its digest; a damaged
    /// one is removed.
    pub fn read_verified(&self, digest: &str, limit: u64) -> Option<Vec<u8>> {
        let p = self.path(digest);
        let f = File::open(&p).ok()?;
        let mut data = Vec::new();
        f.take(limit + 1).read_to_end(&mut data).ok()?;
        if data.len() as u64 > limit {
            return None;
        }
        if sha256_digest(&data) == digest {
            Some(data)
        } else {
            let _ = std::fs::remove_file(&p);
            None
        }
    }

    /// Stores bytes whose digest the caller has checked.
    pub fn put(&self, digest: &str, data: &[u8]) -> Result<PathBuf, OciError> {
        let path = self.path(digest);
        let io = |action, source| OciError::Io {
            action,
            path: path.clone(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(|e| io("cannot create a temp file for", e))?;
        tmp.write_all(data).map_err(|e| io("cannot write", e))?;
        tmp.persist(&path)
            .map_err(|e| io("cannot store", e.error))?;
        Ok(path)
    }
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", crate::fetch::hex(&Sha256::digest(data)))
}

/// One blob download: where it stands, so an interruption can be resumed.
struct Partial<'s> {
    file: Flock<File>,
    path: PathBuf,
    hasher: Sha256,
    have: u64,
    slot: Option<&'s Slot>,
}

impl Partial<'_> {
    fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.have = 0;
        self.publish();
        Ok(())
    }

    /// Tells a reader following the download how many bytes the file holds.
    fn publish(&self) {
        if let Some(s) = self.slot {
            s.grow(self.have);
        }
    }
}

/// Where the download of one blob stands, for a reader that follows it ([`Slot::reader`]):
/// the `.partial` file being written (a handle of its own, which stays valid when the file is
/// renamed into place), how many bytes it holds, and the outcome.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
struct SlotState {
    file: Option<Arc<File>>,
    len: u64,
    /// The blob's path in the cache, or why the download failed.
    done: Option<Result<PathBuf, String>>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opened(&self, file: &File, len: u64) {
        let dup = file.try_clone().ok().map(Arc::new);
        let mut st = self.lock();
        st.file = dup;
        st.len = len;
        self.changed.notify_all();
    }

    fn grow(&self, len: u64) {
        self.lock().len = len;
        self.changed.notify_all();
    }

    /// The download ended: the verified blob's path, or why it failed.
    pub fn finish(&self, outcome: Result<PathBuf, String>) {
        self.lock().done = Some(outcome);
        self.changed.notify_all();
    }

    /// Reads the blob (`size` bytes) from the start while it downloads, waiting for bytes
    /// that are not there yet. If the download starts over (the registry would not resume),
    /// the reader continues at its own position in the new bytes: the layer's bytes are
    /// checked as a whole by its diff_id, the blob by its digest. It fails when the download
    /// fails, or when `cancel` is set.
    pub fn reader<'a>(&'a self, size: u64, cancel: &'a AtomicBool) -> SlotReader<'a> {
        SlotReader {
            slot: self,
            size,
            pos: 0,
            cancel,
        }
    }
}

pub(crate) struct SlotReader<'a> {
    slot: &'a Slot,
    size: u64,
    pos: u64,
    cancel: &'a AtomicBool,
}

impl Read for SlotReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let (file, upto) = {
                let mut st = self.slot.lock();
                loop {
                    match &st.done {
                        Some(Err(e)) => return Err(std::io::Error::other(e.clone())),
                        Some(Ok(path)) => {
                            if st.file.is_none() {
                                // Cached before we looked, or finished by another devbox.
                                st.file = Some(Arc::new(File::open(path)?));
                            }
                            break (st.file.clone(), self.size);
                        }
                        None => {}
                    }
                    if self.cancel.load(Ordering::Relaxed) {
                        return Err(std::io::Error::other(OciError::Cancelled.to_string()));
                    }
                    if st.file.is_some() && st.len > self.pos {
                        break (st.file.clone(), st.len.min(self.size));
                    }
                    st = self
                        .slot
                        .changed
                        .wait_timeout(st, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            if self.pos >= upto {
                return Ok(0);
            }
            let Some(file) = file else { continue };
            let want = buf.len().min((upto - self.pos) as usize);
            let n = file.read_at(&mut buf[..want], self.pos)?;
            if n == 0 {
                // Truncated under us (the download started over): wait for new bytes.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// What went wrong in one attempt of a blob download.
enum Attempt {
    /// The server ignored or refused the range: start again from byte 0.
    Restart,
    /// Worth another attempt (the partial file is kept and resumed).
    Transient(OciError, Option<std::time::Duration>),
    /// Give up; `discard` removes the partial file.
    Fatal(OciError, bool),
}

/// Downloads blob `digest` of `size` bytes into the cache (unless it is there) and returns its
/// path. `what` names it in messages ("layer 2 of 3"); `note` receives retry messages;
/// `progress` receives byte counts (including bytes already downloaded by an earlier run);
/// `cancel` stops the download between reads (the partial file is kept).
#[allow(clippy::too_many_arguments)]
pub(crate) fn download(
    client: &Client,
    store: &BlobStore,
    digest: &str,
    size: u64,
    what: &str,
    note: &dyn Fn(String),
    progress: &dyn Fn(u64),
    cancel: &AtomicBool,
    slot: Option<&Slot>,
) -> Result<PathBuf, OciError> {
    if let Some(p) = store.cached(digest, size) {
        progress(size);
        return Ok(p);
    }
    let Some(mut part) = open_partial(store, digest, note, slot)? else {
        // Another devbox finished it while we waited for its lock.
        progress(size);
        return Ok(store.path(digest));
    };
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OciError::Io {
            action,
            path,
            source,
        }
    };
    if part.have > size {
        part.reset()
            .map_err(io_err("cannot truncate", &part.path))?;
    }
    if part.have > 0 {
        hash_prefix(&mut part).map_err(io_err("cannot read", &part.path))?;
        note(format!(
            "Resuming {what} ({}) at {} of {}",
            short(digest),
            human_bytes(part.have),
            human_bytes(size)
        ));
    }
    progress(part.have);
    let resumed = part.have > 0;
    let mut restarted = false;
    let mut attempt = 0u32;
    let mut restarts = 0u32;
    loop {
        if part.have < size {
            let before = part.have;
            match fetch_rest(client, &mut part, digest, size, what, progress, cancel) {
                Ok(()) => {}
                Err(Attempt::Restart) => {
                    restarts += 1;
                    if restarts > 3 {
                        let _ = std::fs::remove_file(&part.path);
                        return Err(OciError::Invalid {
                            reference: client.reference.to_string(),
                            what: format!("answer for blob {digest}"),
                            detail: "the registry keeps answering the wrong byte range".into(),
                        });
                    }
                    part.reset()
                        .map_err(io_err("cannot truncate", &part.path))?;
                    continue;
                }
                Err(Attempt::Fatal(e, discard)) => {
                    if discard {
                        let _ = std::fs::remove_file(&part.path);
                    }
                    return Err(e);
                }
                Err(Attempt::Transient(e, after)) => {
                    if part.have > before {
                        attempt = 0; // it made progress: a fresh set of attempts
                    }
                    attempt += 1;
                    if attempt >= client.max_attempts() {
                        return Err(match e {
                            // Nothing downloaded at all: the cause itself is the error.
                            e if part.have == 0 => e,
                            OciError::Interrupted { .. } => e,
                            other => OciError::Interrupted {
                                what: format!("{what} ({digest})"),
                                registry: client.reference.registry_display().to_string(),
                                got: part.have,
                                total: size,
                                detail: first_line(&other.to_string()).to_string(),
                            },
                        });
                    }
                    let wait = after.unwrap_or_else(|| client.backoff(attempt));
                    note(format!(
                        "{what} ({}): {}; resuming at {} in {} (attempt {} of {})",
                        short(digest),
                        first_line(&e.to_string()),
                        human_bytes(part.have),
                        super::client::human_duration(wait),
                        attempt + 1,
                        client.max_attempts()
                    ));
                    std::thread::sleep(wait);
                    continue;
                }
            }
        }
        let actual = format!(
            "sha256:{}",
            crate::fetch::hex(&part.hasher.clone().finalize())
        );
        if actual == digest {
            let dest = store.path(digest);
            std::fs::rename(&part.path, &dest).map_err(io_err("cannot store", &dest))?;
            return Ok(dest);
        }
        if resumed && !restarted {
            // The bytes kept from an earlier run may be what is wrong: once, start over.
            note(format!(
                "{what} ({}) does not match its digest after resuming; downloading it again from the start",
                short(digest)
            ));
            restarted = true;
            part.reset()
                .map_err(io_err("cannot truncate", &part.path))?;
            continue;
        }
        let _ = std::fs::remove_file(&part.path);
        return Err(OciError::DigestMismatch {
            what: format!("{what} of {}", client.reference),
            expected: digest.to_string(),
            actual,
        });
    }
}

/// Opens and locks `<hex>.partial` (waiting while another devbox downloads the same blob).
/// None when the blob is complete by the time the lock is ours.
fn open_partial<'s>(
    store: &BlobStore,
    digest: &str,
    note: &dyn Fn(String),
    slot: Option<&'s Slot>,
) -> Result<Option<Partial<'s>>, OciError> {
    let path = store.partial_path(digest);
    let io = |action, source| OciError::Io {
        action,
        path: path.clone(),
        source,
    };
    let mut told = false;
    for _ in 0..10 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("cannot open", e))?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if !told {
                    note(format!(
                        "Waiting for another devbox that is downloading blob {}",
                        short(digest)
                    ));
                    told = true;
                }
                Flock::lock(f, FlockArg::LockExclusive)
                    .map_err(|(_, e)| io("cannot lock", e.into()))?
            }
            Err((_, e)) => return Err(io("cannot lock", e.into())),
        };
        // The holder we waited for may have finished (renaming the file we opened) or
        // given up (removing it): then our descriptor is not the file at `path` any more.
        let ours = file.metadata().map_err(|e| io("cannot stat", e))?;
        let same = std::fs::metadata(&path)
            .map(|m| m.dev() == ours.dev() && m.ino() == ours.ino())
            .unwrap_or(false);
        if std::fs::metadata(store.path(digest)).is_ok() {
            if same && ours.len() == 0 {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(None);
        }
        if !same {
            continue;
        }
        let mut file = file;
        let have = ours.len();
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io("cannot seek", e))?;
        if let Some(s) = slot {
            s.opened(&file, have);
        }
        return Ok(Some(Partial {
            file,
            path,
            hasher: Sha256::new(),
            have,
            slot,
        }));
    }
    Err(io(
        "cannot take over",
        std::io::Error::other("the file keeps changing under another devbox"),
    ))
}

/// Hashes the `have` bytes already in the partial file, leaving the position at its end.
fn hash_prefix(part: &mut Partial) -> std::io::Result<()> {
    part.file.seek(SeekFrom::Start(0))?;
    let mut left = part.have;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = part.file.read(&mut buf[..want])?;
        if n == 0 {
            // Shorter than its length said (it changed under us): hash what is there.
            part.have -= left;
            part.file.set_len(part.have)?;
            part.publish();
            break;
        }
        part.hasher.update(&buf[..n]);
        left -= n as u64;
    }
    part.file.seek(SeekFrom::Start(part.have))?;
    Ok(())
}

/// One request for the rest of the blob, streamed into the partial file.
fn fetch_rest(
    client: &Client,
    part: &mut Partial,
    digest: &str,
    size: u64,
    what: &str,
    progress: &dyn Fn(u64),
    cancel: &AtomicBool,
) -> Result<(), Attempt> {
    let registry = client.reference.registry_display().to_string();
    let io_fatal = |action: &'static str, path: &Path, source| {
        Attempt::Fatal(
            OciError::Io {
                action,
                path: path.to_path_buf(),
                source,
            },
            false,
        )
    };
    let mut resp = match client.blob_response(digest, part.have) {
        Ok(r) => r,
        Err(Failure::Retry { err, after }) => return Err(Attempt::Transient(err, after)),
        Err(Failure::Fatal(e)) => {
            let discard = matches!(e, OciError::BlobNotFound { .. });
            return Err(Attempt::Fatal(e, discard));
        }
    };
    let status = resp.status().as_u16();
    if status == 416 {
        return Err(Attempt::Restart);
    }
    let mismatch = |actual: u64| {
        Attempt::Fatal(
            OciError::SizeMismatch {
                what: format!("{what} ({digest}) on {registry}"),
                expected: size,
                actual,
            },
            true,
        )
    };
    if status == 206 {
        // Content-Range: bytes START-END/TOTAL
        let range = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::fetch::parse_content_range);
        match range {
            Some((start, total)) if start == part.have => {
                if let Some(t) = total.filter(|&t| t != size) {
                    return Err(mismatch(t));
                }
            }
            _ => return Err(Attempt::Restart),
        }
    } else {
        // 200: the whole blob, whatever was asked.
        if part.have > 0 {
            part.reset()
                .map_err(|e| io_fatal("cannot truncate", &part.path, e))?;
        }
        if let Some(len) = resp.content_length().filter(|&l| l != size) {
            return Err(mismatch(len));
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Attempt::Fatal(OciError::Cancelled, false));
        }
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Attempt::Transient(
                    OciError::Interrupted {
                        what: format!("{what} ({digest})"),
                        registry,
                        got: part.have,
                        total: size,
                        detail: error_chain(&e),
                    },
                    None,
                ))
            }
        };
        if part.have + n as u64 > size {
            return Err(mismatch(part.have + n as u64));
        }
        part.file
            .write_all(&buf[..n])
            .map_err(|e| io_fatal("cannot write", &part.path, e))?;
        part.hasher.update(&buf[..n]);
        part.have += n as u64;
        part.publish();
        progress(n as u64);
    }
    if part.have < size {
        return Err(Attempt::Transient(
            OciError::Interrupted {
                what: format!("{what} ({digest})"),
                registry,
                got: part.have,
                total: size,
                detail: "the connection closed early".into(),
            },
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fetch::parse_content_range;

    #[test]
    fn parses_content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn a_slot_reader_follows_a_growing_file_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.partial");
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let slot = Slot::default();
        let cancel = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                slot.opened(&f, 0);
                f.write_all(&data[..100_000]).unwrap();
                slot.grow(100_000);
                std::thread::sleep(Duration::from_millis(30));
                // The download starts over from byte 0.
                f.set_len(0).unwrap();
                f.seek(SeekFrom::Start(0)).unwrap();
                slot.grow(0);
                let mut have = 0;
                for chunk in data.chunks(50_000) {
                    f.write_all(chunk).unwrap();
                    have += chunk.len() as u64;
                    slot.grow(have);
                    std::thread::sleep(Duration::from_millis(5));
                }
                slot.finish(Ok(path.clone()));
            });
            let mut out = Vec::new();
            slot.reader(data.len() as u64, &cancel)
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data, "the reader got other bytes");
        });
        // A blob already complete is read from its path.
        let done = Slot::default();
        done.finish(Ok(path.clone()));
        let mut out = Vec::new();
        done.reader(data.len() as u64, &cancel)
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data);
        // A failed download fails the reader, and so does a cancellation.
        let failed = Slot::default();
        failed.finish(Err("digest mismatch".into()));
        let e = failed.reader(10, &cancel).read(&mut [0; 4]).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        let waiting = Slot::default();
        cancel.store(true, Ordering::SeqCst);
        assert!(waiting.reader(10, &cancel).read(&mut [0; 4]).is_err());
    }

    #[test]
    fn stores_and_checks_small_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"{\"hello\":1}";
        let d = sha256_digest(data);
        assert_eq!(store.read_verified(&d, 100), None);
        store.put(&d, data).unwrap();
        assert_eq!(store.read_verified(&d, 100).as_deref(), Some(&data[..]));
        assert_eq!(store.cached(&d, data.len() as u64), Some(store.path(&d)));
        // Too large for the limit, or damaged: not used, and a damaged one is removed.
        assert_eq!(store.read_verified(&d, 3), None);
        std::fs::write(store.path(&d), b"{\"hello\":2}").unwrap();
        assert_eq!(store.read_verified(&d, 100), None);
        assert!(!store.path(&d).exists());
    }
}
