//! Stage 1: from an archive file to a plain tar stream, decompressed on a thread of its own.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{UnpackError, CHANNEL_DEPTH, CHUNK};

/// Compression of an archive file, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream (anything not recognised below).
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// How many leading bytes [`Compression::detect`] looks at.
    pub const MAGIC_LEN: usize = 6;

    /// Detects the compression from the magic bytes at the start of a file.
    /// Anything unrecognised (including too few bytes) is taken as plain tar.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            Compression::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Opens `file`, detects compression from its first bytes, and returns a reader
/// of the plain tar stream.
///
/// Reading (and decompressing) runs on its own thread, feeding a bounded
/// channel of 256 KiB chunks, so it overlaps with writing files. The returned
/// reader is already buffered. Dropping it stops and joins the thread.
pub fn decompressed(file: File) -> Result<Box<dyn Read + Send>, UnpackError> {
    decompressed_counting(file).map(|(reader, _)| reader)
}

/// Like [`decompressed`], and also returns a counter of the bytes read from
/// `file` so far (compressed bytes). Compare it with the file's size to show
/// progress, e.g. from the `progress` callback of [`unpack`].
pub fn decompressed_counting(
    mut file: File,
) -> Result<(Box<dyn Read + Send>, Arc<AtomicU64>), UnpackError> {
    let mut magic = [0u8; Compression::MAGIC_LEN];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(UnpackError::ReadArchive { err }),
        }
    }
    let magic = &magic[..n];
    let counter = Arc::new(AtomicU64::new(0));
    let raw = CountingReader {
        inner: io::Cursor::new(magic.to_vec()).chain(file),
        count: Arc::clone(&counter),
    };
    let buffered = BufReader::with_capacity(CHUNK, raw);
    let source: Box<dyn Read + Send> = match Compression::detect(magic) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Xz => Box::new(XzStreams::new(buffered)),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|err| UnpackError::ReadArchive { err })?;
            // Accept archives made with `zstd --long` (windows up to 2 GiB).
            dec.window_log_max(31)
                .map_err(|err| UnpackError::ReadArchive { err })?;
            Box::new(dec)
        }
    };
    let reader = ThreadedReader::spawn(source).map_err(|err| UnpackError::Thread { err })?;
    Ok((Box::new(reader), counter))
}

/// Memory the threaded xz decoder may use before it falls back to one thread: each thread
/// holds a block's input and output (24 MiB blocks for `xz -T0 -6`) and a dictionary.
const XZ_THREADING_MEMORY: u64 = 512 << 20;
/// More decoding threads than this gain little next to the single extracting thread.
const XZ_MAX_THREADS: u32 = 8;

/// The xz streams of an archive, one after another (`xz` writes one; `cat a.xz b.xz` makes
/// two, with optional zero padding between them), each through liblzma's threaded decoder.
/// An archive written in several blocks (`xz -T0`, the default of xz 5.6) decodes its
/// blocks on every CPU at once; a single-block archive decodes as before, on one thread.
/// The threaded decoder has no flag for concatenated streams, hence this loop.
struct XzStreams<R: BufRead> {
    decoder: Option<liblzma::bufread::XzDecoder<R>>,
}

impl<R: BufRead> XzStreams<R> {
    fn new(input: R) -> XzStreams<R> {
        XzStreams {
            decoder: Some(liblzma::bufread::XzDecoder::new_stream(input, xz_decoder())),
        }
    }
}

/// liblzma's threaded stream decoder: no limit on memory for decoding itself (as before),
/// [`XZ_THREADING_MEMORY`] for running blocks side by side.
fn xz_decoder() -> liblzma::stream::Stream {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(XZ_MAX_THREADS as usize) as u32;
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads)
        .memlimit_threading(XZ_THREADING_MEMORY)
        .memlimit_stop(u64::MAX)
        .decoder()
        // Fails only for options out of range or no memory at all; the options are fixed.
        .expect("liblzma accepts the threaded decoder's fixed options")
}

impl<R: BufRead> Read for XzStreams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // One stream ended. Zero padding (in multiples of four bytes) may follow, then
            // the next stream or the end of the file.
            let mut input = self.decoder.take().expect("checked above").into_inner();
            let mut padding = 0usize;
            loop {
                let chunk = input.fill_buf()?;
                let zeros = chunk.iter().take_while(|&&b| b == 0).count();
                let more = zeros == chunk.len() && !chunk.is_empty();
                input.consume(zeros);
                padding += zeros;
                if !more {
                    break;
                }
            }
            let at_end = input.fill_buf()?.is_empty();
            if padding % 4 != 0 {
                let msg = "xz stream padding is not a multiple of four bytes";
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            if at_end {
                return Ok(0);
            }
            self.decoder = Some(liblzma::bufread::XzDecoder::new_stream(input, xz_decoder()));
        }
    }
}

/// Counts bytes read through it into a shared counter.
pub(super) struct CountingReader<R> {
    pub(super) inner: R,
    pub(super) count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A message from the decompression thread.
pub(super) enum Msg {
    /// A buffer whose first `len` bytes are data.
    Data(Vec<u8>, usize),
    /// Clean end of stream.
    Eof,
    /// Reading or decompressing failed.
    Err(io::Error),
}

/// The consumer end of the decompression thread.
pub(super) struct ThreadedReader {
    pub(super) rx: Option<Receiver<Msg>>,
    /// Returns spent buffers to the thread so it does not allocate per chunk.
    pub(super) recycle: SyncSender<Vec<u8>>,
    pub(super) cur: Vec<u8>,
    pub(super) len: usize,
    pub(super) pos: usize,
    pub(super) eof: bool,
    pub(super) failed: Option<(io::ErrorKind, String)>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl ThreadedReader {
    fn spawn(source: Box<dyn Read + Send>) -> io::Result<ThreadedReader> {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let (recycle, recycled) = sync_channel(CHANNEL_DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("devbox-decompress".into())
            .spawn(move || pump(source, &tx, &recycled))?;
        Ok(ThreadedReader {
            rx: Some(rx),
            recycle,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            eof: false,
            failed: None,
            thread: Some(thread),
        })
    }
}

/// Body of the decompression thread: fills chunks from `source` and sends them.
pub(super) fn pump(
    mut source: Box<dyn Read + Send>,
    tx: &SyncSender<Msg>,
    recycled: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut len = 0;
        let mut eof = false;
        let mut err = None;
        while len < buf.len() {
            match source.read(&mut buf[len..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // A failed send means the reader was dropped: just stop.
        if len > 0 && tx.send(Msg::Data(buf, len)).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = tx.send(Msg::Err(e));
            return;
        }
        if eof {
            let _ = tx.send(Msg::Eof);
            return;
        }
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if self.eof {
                return Ok(0);
            }
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Msg::Data(buf, len)) => {
                    let spent = std::mem::replace(&mut self.cur, buf);
                    if spent.capacity() > 0 {
                        let _ = self.recycle.try_send(spent);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Msg::Eof) => self.eof = true,
                Ok(Msg::Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                Err(_) => {
                    let msg = "the decompression thread stopped unexpectedly";
                    self.failed = Some((io::ErrorKind::Other, msg.into()));
                    return Err(io::Error::other(msg));
                }
            }
        }
    }
}

impl Drop for ThreadedReader {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail, so it ends.
        drop(self.rx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::unpack::testutil::*;
    use crate::unpack::*;

    #[test]
    fn detects_compression_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"usr/bi"), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    fn compressed(tar: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(tar).unwrap();
        vec![
            ("plain", tar.to_vec()),
            ("gzip", gz.finish().unwrap()),
            ("xz", xz.finish().unwrap()),
            ("zstd", zstd::encode_all(tar, 3).unwrap()),
        ]
    }

    #[test]
    fn decompresses_every_format() {
        let tar = sample_tar();
        for (what, bytes) in compressed(&tar) {
            let s = Scratch::new();
            let stats = unpack_file(&bytes, &s).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(stats.entries, 4, "{what}");
            assert_eq!(fs::read(s.root.join("etc/hostname")).unwrap(), b"devbox\n");
            assert_eq!(
                fs::metadata(s.root.join("etc/blob")).unwrap().len(),
                800_000
            );
        }
        // Concatenated gzip members (pigz, some mirrors) are one stream.
        let (a, b) = tar.split_at(tar.len() / 2);
        let mut both = Vec::new();
        for part in [a, b] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            both.extend(gz.finish().unwrap());
        }
        let s = Scratch::new();
        unpack_file(&both, &s).unwrap();
        assert_eq!(
            fs::metadata(s.root.join("etc/blob")).unwrap().len(),
            800_000
        );
    }

    #[test]
    fn decompresses_multi_block_and_concatenated_xz() {
        let tar = sample_tar();
        let xz = |part: &[u8], block: u64| {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(2)
                .block_size(block)
                .preset(1)
                .encoder()
                .unwrap();
            let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            enc.write_all(part).unwrap();
            enc.finish().unwrap()
        };
        // Several blocks in one stream: the threaded decoder's case.
        let blocks = xz(&tar, 64 * 1024);
        let s = Scratch::new();
        unpack_file(&blocks, &s).unwrap();
        assert_eq!(
            fs::metadata(s.root.join("etc/blob")).unwrap().len(),
            800_000
        );
        // Two streams with stream padding between them are one archive.
        let (a, b) = tar.split_at(tar.len() / 2);
        let mut both = xz(a, 1 << 20);
        both.extend([0u8; 8]);
        both.extend(xz(b, 1 << 20));
        let s = Scratch::new();
        unpack_file(&both, &s).unwrap();
        assert_eq!(fs::read(s.root.join("etc/hostname")).unwrap(), b"devbox\n");
        assert_eq!(
            fs::metadata(s.root.join("etc/blob")).unwrap().len(),
            800_000
        );
        // Padding that is not a multiple of four is corrupt, as xz says.
        let mut odd = xz(a, 1 << 20);
        odd.extend([0u8; 3]);
        odd.extend(xz(b, 1 << 20));
        let s = Scratch::new();
        assert!(unpack_file(&odd, &s).is_err());
    }

    #[test]
    fn truncated_archives_are_errors() {
        let tar = sample_tar();
        for (what, bytes) in compressed(&tar) {
            let s = Scratch::new();
            let cut = &bytes[..bytes.len() * 2 / 3];
            let err = unpack_file(cut, &s).map(|_| ()).unwrap_err();
            assert!(matches!(err, UnpackError::Corrupt { .. }), "{what}: {err}");
            assert!(err.to_string().contains("etc/blob"), "{what}: {err}");
        }
        // Cut inside a header.
        let s = Scratch::new();
        let err = run(&tar[..512 * 3 + 100], &s.root).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
        // Garbage instead of a header.
        let mut bad = tar.clone();
        bad[512 + 10] ^= 0x55;
        let err = run(&bad, &s.root).unwrap_err();
        assert!(err.to_string().contains("invalid tar header"), "{err}");
    }
}
