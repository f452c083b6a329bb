//! Reading a pulled layer: decompressed, and checked against its diff_id at the end.

use std::io::{self, BufRead, Read};

use sha2::{Digest, Sha256};

use super::manifest::layer_compression;
use super::{Layer, OciError};

/// The uncompressed tar stream of `layer`. The compression is recognised from the blob's
/// first bytes (gzip, zstd, else plain tar), whatever the media type claims; the media type
/// must still be a layer type. The sha256 of everything read is compared with the layer's
/// diff_id when the stream ends: on a mismatch the read that reaches the end fails with
/// `io::ErrorKind::InvalidData`, naming both digests.
///
/// A tar reader stops at the end-of-archive marker, before the padding after it: read the
/// rest (e.g. `io::copy(&mut reader, &mut io::sink())`) after the last entry, so the check
/// runs. Until it has run, nothing extracted from the layer has been verified.
#[cfg(test)]
pub fn layer_reader(layer: &Layer) -> Result<Box<dyn Read + Send>, OciError> {
    let file = std::fs::File::open(&layer.path).map_err(|source| OciError::Io {
        action: "cannot open layer",
        path: layer.path.clone(),
        source,
    })?;
    layer_stream(layer, io::BufReader::with_capacity(256 * 1024, file))
}

/// Like [`layer_reader`], for the layer's blob read from `blob` (a pipe, a part of one)
/// instead of its file; `layer.path` only names it in messages.
pub fn layer_stream<'a>(
    layer: &Layer,
    mut blob: impl BufRead + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>, OciError> {
    if layer_compression(&layer.media_type).is_none() {
        return Err(OciError::Unsupported {
            reference: layer.digest.clone(),
            what: format!(
                "layer media type {:?} is not a filesystem layer devbox can read",
                layer.media_type
            ),
        });
    }
    super::reference::parse_digest(&layer.diff_id).map_err(|detail| OciError::Invalid {
        reference: layer.digest.clone(),
        what: "diff_id".into(),
        detail,
    })?;
    let magic = blob
        .fill_buf()
        .map_err(|source| OciError::Io {
            action: "cannot read layer",
            path: layer.path.clone(),
            source,
        })?
        .to_vec();
    let inner: Box<dyn Read + Send + 'a> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(blob))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut dec =
            zstd::stream::read::Decoder::with_buffer(blob).map_err(|source| OciError::Io {
                action: "cannot start decompressing layer",
                path: layer.path.clone(),
                source,
            })?;
        // Accept layers made with `zstd --long` (windows up to 2 GiB).
        dec.window_log_max(31).map_err(|source| OciError::Io {
            action: "cannot start decompressing layer",
            path: layer.path.clone(),
            source,
        })?;
        Box::new(dec)
    } else {
        Box::new(blob)
    };
    Ok(Box::new(DiffIdReader {
        inner,
        hasher: Sha256::new(),
        expected: layer.diff_id.clone(),
        layer: layer.digest.clone(),
        state: State::Reading,
    }))
}

enum State {
    Reading,
    Verified,
    Failed(String),
}

/// Hashes what passes through and checks it against the diff_id at the end of the stream.
struct DiffIdReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    hasher: Sha256,
    expected: String,
    layer: String,
    state: State,
}

impl Read for DiffIdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Verified => return Ok(0),
            State::Failed(msg) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()))
            }
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let actual = format!(
            "sha256:{}",
            crate::fetch::hex(&std::mem::take(&mut self.hasher).finalize())
        );
        if actual == self.expected {
            self.state = State::Verified;
            Ok(0)
        } else {
            let msg = format!(
                "layer {} does not match its diff_id: its uncompressed content is damaged or not what the image describes\n  expected: {}\n  actual:   {actual}",
                self.layer, self.expected
            );
            self.state = State::Failed(msg.clone());
            Err(io::Error::new(io::ErrorKind::InvalidData, msg))
        }
    }
}
