//! One pass over a blob: its size and digest as stored and, for a layer,
//! the digest of its tar after decompression (its diff_id), every entry read
//! to its end. Nothing is held whole.

use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, BufRead, BufReader, Read};

/// What one streamed read of a blob found.
pub struct LayerRead {
    /// Bytes as stored.
    pub size: u64,
    pub digest: Digest,
    /// Whether the bytes start with the gzip magic (layers only).
    pub gzip: Option<bool>,
    /// The diff_id, or why the bytes are not a whole (gzip'd) tar (layers only).
    pub tar: Option<io::Result<Digest>>,
    /// Reading the stored bytes failed (size and digest then mean nothing).
    pub io_error: Option<io::Error>,
}

/// `read_layer` (or `read_raw` when not `layer`) on a blocking thread:
/// hashing and gunzipping is CPU and file work the async workers must not do.
pub async fn read_off_the_workers(reader: Box<dyn Read + Send>, layer: bool) -> LayerRead {
    let read = tokio::task::spawn_blocking(move || {
        if layer {
            read_layer(reader)
        } else {
            read_raw(reader)
        }
    });
    read.await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Size and digest only.
pub fn read_raw(reader: Box<dyn Read + Send>) -> LayerRead {
    let mut raw = Hashing::new(reader);
    let io_error = io::copy(&mut raw, &mut io::sink()).err();
    let (size, digest) = raw.finish();
    LayerRead {
        size,
        digest,
        gzip: None,
        tar: None,
        io_error,
    }
}

/// Size, digest and diff_id; gzip recognised by its magic bytes.
pub fn read_layer(reader: Box<dyn Read + Send>) -> LayerRead {
    let mut raw = BufReader::new(Hashing::new(reader));
    let gzip = match raw.fill_buf() {
        Ok(head) => head.starts_with(&[0x1f, 0x8b]),
        Err(e) => return failed(raw, e),
    };
    let tar = if gzip {
        diff_id(flate2::read::MultiGzDecoder::new(&mut raw))
    } else {
        diff_id(&mut raw)
    };
    // What follows the tar (or the point it broke) still counts for the digest.
    if let Err(e) = io::copy(&mut raw, &mut io::sink()) {
        return failed(raw, e);
    }
    let (size, digest) = raw.into_inner().finish();
    LayerRead {
        size,
        digest,
        gzip: Some(gzip),
        tar: Some(tar),
        io_error: None,
    }
}

fn failed(raw: BufReader<Hashing<Box<dyn Read + Send>>>, e: io::Error) -> LayerRead {
    let (size, digest) = raw.into_inner().finish();
    LayerRead {
        size,
        digest,
        gzip: None,
        tar: None,
        io_error: Some(e),
    }
}

/// Reads `plain` as a tar to its end (entries' contents, then the
/// end-of-archive blocks and padding, which belong to the diff_id too).
fn diff_id(plain: impl Read) -> io::Result<Digest> {
    let mut hashing = Hashing::new(plain);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries()? {
            io::copy(&mut entry?, &mut io::sink())?;
        }
    }
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.finish().1)
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (u64, Digest) {
        (self.size, Digest::from_hasher(self.hasher))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
