//! Stage 2b: regular files finished on a thread of their own.
//!
//! The extractor creates every entry itself, in archive order (a file with `O_CREAT |
//! O_EXCL | O_NOFOLLOW` under its resolved parent), and reads the file's data from the tar
//! stream. Writing that data and then the file's owner, mode, xattrs and mtime only needs the
//! open fd, so for files up to [`QUEUED_FILE_MAX`] it is handed to this thread, which does it
//! while the extractor goes on to the next entries. Nothing later in the archive depends on a
//! file's data or metadata being written: links and removals act on names, and a name that a
//! later entry replaces leaves the pending write going to an unlinked inode. The extraction
//! ends only after this thread has finished every file, so its result (and the first error,
//! with the name of its file) is known before the directories get their metadata.
//!
//! At most [`IN_FLIGHT_MAX`] bytes of data wait for the thread, so memory stays bounded.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, Gid, Uid};
use xattr::FileExt as _;

use super::tree::{display_name, fs_err, Meta};
use super::{Options, Stats, UnpackError};

/// Files larger than this are written by the extractor itself, through its copy buffer.
pub(super) const QUEUED_FILE_MAX: u64 = 4 << 20;
/// Bytes of file data that may wait for the thread at once.
const IN_FLIGHT_MAX: usize = 16 << 20;
/// Files that may wait for the thread at once (each holds an open fd: well under the usual
/// limit of 1024 open files).
const QUEUE_DEPTH: usize = 64;

/// A created file, its data and its metadata, to be finished by the thread.
pub(super) struct Job {
    pub(super) file: File,
    pub(super) data: Vec<u8>,
    pub(super) meta: Meta,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The entry's normalized name, for messages.
    pub(super) name: Vec<u8>,
}

/// The first failure of the thread, with the size of its file's data (for
/// the extractor's `Space::exhausted`).
type Failure = (UnpackError, u64);

/// What the thread gives back when it ends.
struct Outcome {
    /// Only `xattrs_skipped` is counted here.
    stats: Stats,
    failure: Option<Failure>,
}

/// Bytes of data queued and not yet written.
#[derive(Default)]
struct Budget {
    queued: Mutex<usize>,
    freed: Condvar,
}

/// The extractor's handle on the thread.
pub(super) struct Writer {
    tx: Option<SyncSender<Job>>,
    /// Spent data buffers, returned for reuse.
    spent: Receiver<Vec<u8>>,
    budget: Arc<Budget>,
    /// Set by the thread when a file failed; later jobs are dropped unwritten.
    failed: Arc<Mutex<bool>>,
    thread: Option<JoinHandle<Outcome>>,
}

impl Writer {
    pub(super) fn spawn(opts: &Options) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel::<Job>(QUEUE_DEPTH);
        let (spent_tx, spent) = sync_channel::<Vec<u8>>(QUEUE_DEPTH);
        let budget = Arc::new(Budget::default());
        let failed = Arc::new(Mutex::new(false));
        let thread = {
            let (opts, budget, failed) = (opts.clone(), Arc::clone(&budget), Arc::clone(&failed));
            std::thread::Builder::new()
                .name("devbox-write".into())
                .spawn(move || run(&rx, &spent_tx, &opts, &budget, &failed))?
        };
        Ok(Writer {
            tx: Some(tx),
            spent,
            budget,
            failed,
            thread: Some(thread),
        })
    }

    /// A buffer of exactly `len` bytes for a file's data, once the bytes in flight leave
    /// room for it; waits while the thread catches up. Buffers come back from the thread and
    /// keep their bytes, so only growth beyond a reused buffer's length is zeroed (zeroing a
    /// fresh buffer per file cost a tenth of the extractor's time).
    pub(super) fn buffer(&self, len: usize) -> Vec<u8> {
        {
            let mut queued = lock(&self.budget.queued);
            // A file larger than the whole budget waits for an empty queue. A thread that
            // ended (it cannot fail quietly, but may panic) frees nothing: stop waiting then,
            // and let `send` find out.
            while *queued > 0
                && *queued + len > IN_FLIGHT_MAX
                && !self.thread.as_ref().is_some_and(JoinHandle::is_finished)
            {
                queued = self
                    .budget
                    .freed
                    .wait_timeout(queued, std::time::Duration::from_millis(100))
                    .map(|(q, _)| q)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            *queued += len;
        }
        let mut buf = self.spent.try_recv().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Hands a file to the thread. Its data's bytes were counted by [`Writer::buffer`].
    /// Returns false when the thread has failed (then [`Writer::finish`] says why).
    pub(super) fn send(&self, job: Job) -> bool {
        if *lock(&self.failed) {
            release(&self.budget, job.data.len());
            return false;
        }
        match &self.tx {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    /// Waits for every queued file; returns the thread's count of skipped xattrs, or the
    /// first file that failed.
    pub(super) fn finish(mut self) -> Result<u64, Failure> {
        let outcome = self.join();
        match outcome.failure {
            Some(f) => Err(f),
            None => Ok(outcome.stats.xattrs_skipped),
        }
    }

    fn join(&mut self) -> Outcome {
        // Closing the channel ends the thread's loop once the queue is empty.
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Outcome {
                stats: Stats::default(),
                failure: Some((
                    UnpackError::Thread {
                        err: std::io::Error::other("the file writing thread stopped unexpectedly"),
                    },
                    0,
                )),
            },
            None => Outcome {
                stats: Stats::default(),
                failure: None,
            },
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // An extraction that stopped at a later entry: the files before it are still
        // finished (as if they had been written in order), and no thread outlives it.
        let _ = self.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn release(budget: &Budget, len: usize) {
    let mut queued = lock(&budget.queued);
    *queued = queued.saturating_sub(len);
    budget.freed.notify_all();
}

/// Body of the thread: writes each file's data, then its metadata, then closes it.
fn run(
    rx: &Receiver<Job>,
    spent: &SyncSender<Vec<u8>>,
    opts: &Options,
    budget: &Budget,
    failed: &Mutex<bool>,
) -> Outcome {
    let mut outcome = Outcome {
        stats: Stats::default(),
        failure: None,
    };
    for job in rx {
        let len = job.data.len();
        if outcome.failure.is_none() && !*lock(failed) {
            if let Err(e) = finish_file(&job, opts, &mut outcome.stats) {
                *lock(failed) = true;
                outcome.failure = Some((e, len as u64));
            }
        }
        // The fd closes here, after its metadata.
        let Job { data, .. } = job;
        release(budget, len);
        let _ = spent.try_send(data);
    }
    outcome
}

fn finish_file(job: &Job, opts: &Options, stats: &mut Stats) -> Result<(), UnpackError> {
    (&job.file)
        .write_all(&job.data)
        .map_err(|e| fs_err("write", &job.name, e))?;
    apply_meta(&job.file, &job.meta, &job.xattrs, opts, &job.name, stats)
}

/// Maps a chown failure; EINVAL means an id has no mapping in this user
/// namespace, and a uid-only retry tells which one.
pub(super) fn chown_error(
    e: Errno,
    meta: &Meta,
    name: &[u8],
    uid_only: impl FnOnce() -> nix::Result<()>,
) -> UnpackError {
    if e == Errno::EINVAL {
        let (kind, id) = if uid_only().is_err() {
            ("uid", meta.uid)
        } else {
            ("gid", meta.gid)
        };
        UnpackError::IdNotMapped {
            path: display_name(name),
            kind,
            id,
        }
    } else {
        fs_err("set owner of", name, e)
    }
}

/// Owner (if preserved), full mode, xattrs, then mtime, on an open fd. chown
/// clears setuid/setgid and file capabilities, hence this order.
pub(super) fn apply_meta(
    file: &File,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    opts: &Options,
    name: &[u8],
    stats: &mut Stats,
) -> Result<(), UnpackError> {
    if opts.preserve_owner {
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        fchown(file, Some(uid), Some(gid))
            .map_err(|e| chown_error(e, meta, name, || fchown(file, Some(uid), None)))?;
    }
    fchmod(file, Mode::from_bits_truncate(meta.mode))
        .map_err(|e| fs_err("set permissions of", name, e))?;
    for (attr, value) in xattrs {
        if skip_xattr(attr) || file.set_xattr(OsStr::from_bytes(attr), value).is_err() {
            stats.xattrs_skipped += 1;
        }
    }
    futimens(file, &TimeSpec::UTIME_OMIT, &meta.mtime)
        .map_err(|e| fs_err("set modification time of", name, e))
}

/// Xattrs never restored: they are host-policy, not image content.
pub(super) fn skip_xattr(attr: &[u8]) -> bool {
    attr.starts_with(b"trusted.") || attr == b"security.selinux"
}

#[cfg(test)]
mod tests {
    use std::fs;

    use nix::sys::time::TimeSpec;

    use super::*;
    use crate::unpack::testutil::*;

    fn job(file: File, data: &[u8], name: &str) -> Job {
        Job {
            file,
            data: data.to_vec(),
            meta: Meta {
                mode: 0o640,
                uid: 0,
                gid: 0,
                mtime: TimeSpec::new(1_000_000, 0),
            },
            xattrs: Vec::new(),
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn files_are_finished_in_full_before_finish_returns() {
        let s = Scratch::new();
        let w = Writer::spawn(&opts()).unwrap();
        for i in 0..50 {
            let path = s.root.join(format!("f{i}"));
            let file = File::create(&path).unwrap();
            let mut data = w.buffer(3);
            data.copy_from_slice(b"abc");
            let mut j = job(file, &[], &format!("f{i}"));
            j.data = data;
            assert!(w.send(j));
        }
        assert_eq!(w.finish().ok(), Some(0));
        for i in 0..50 {
            let path = s.root.join(format!("f{i}"));
            assert_eq!(fs::read(&path).unwrap(), b"abc");
            let meta = fs::metadata(&path).unwrap();
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
            assert_eq!(meta.mtime(), 1_000_000);
        }
    }

    #[test]
    fn the_first_failure_names_its_file_and_later_files_are_not_written() {
        let s = Scratch::new();
        let w = Writer::spawn(&opts()).unwrap();
        // /dev/full fails every write with ENOSPC.
        let full = File::options().write(true).open("/dev/full").unwrap();
        assert!(w.send(job(full, b"data", "etc/x")));
        // Later files may be sent before the thread has failed, but are then left alone.
        let later = s.root.join("later");
        let mut sent_after = 0;
        for _ in 0..100 {
            let file = File::create(&later).unwrap();
            if !w.send(job(file, b"later", "later")) {
                break;
            }
            sent_after += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(sent_after < 100, "send never reported the failure");
        let Err((err, size)) = w.finish() else {
            panic!("the failure was lost");
        };
        assert_eq!(size, 4);
        let msg = err.to_string();
        assert!(
            msg.contains("etc/x") && msg.contains("No space left"),
            "{msg}"
        );
        assert_eq!(fs::read(&later).unwrap(), b"");
    }

    #[test]
    fn dropping_the_writer_finishes_what_was_queued() {
        let s = Scratch::new();
        let path = s.root.join("queued");
        {
            let w = Writer::spawn(&opts()).unwrap();
            assert!(w.send(job(File::create(&path).unwrap(), b"kept", "queued")));
        }
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }

    #[test]
    fn bytes_in_flight_are_bounded() {
        let w = Writer::spawn(&opts()).unwrap();
        // Larger than the whole budget: allowed alone, and counted.
        let big = w.buffer(IN_FLIGHT_MAX + 1);
        assert_eq!(big.len(), IN_FLIGHT_MAX + 1);
        assert_eq!(*lock(&w.budget.queued), IN_FLIGHT_MAX + 1);
        release(&w.budget, IN_FLIGHT_MAX + 1);
        assert_eq!(*lock(&w.budget.queued), 0);
    }
}
