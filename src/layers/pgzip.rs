//! Deterministic parallel gzip (pigz-style) on flate2's zlib-rs backend.
//!
//! The input is cut into fixed [`CHUNK`]-byte pieces. Each piece is raw-deflated
//! on its own, primed with the previous piece's last 32 KiB as a preset
//! dictionary and ended with a sync flush (the last one with a final block), so
//! the pieces concatenate into one deflate stream inside one gzip member. The
//! crc32 is combined piece by piece. The bytes depend only on the input and the
//! level, never on the thread count or on how the input was split into writes.
//!
//! [`ParallelGzWriter::splice`] puts a deflate stream made elsewhere (a
//! wheel's entry) in a member of its own: the member being written ends, the
//! spliced one follows, and a new member starts after it. A gzip file is a
//! series of members (RFC 1952, 2.2); every reader of layers reads them all.

use crc32fast::Hasher as Crc32;
use flate2::{Compress, Compression, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per independently compressed piece.
pub const CHUNK: usize = 1 << 20;
/// Deflate's window: the preset dictionary is this much of the previous piece.
const WINDOW: usize = 32 * 1024;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS 255 (unknown).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

struct Job {
    input: Vec<u8>,
    /// An emptied buffer to compress into (recycled, see [`Spares`]).
    output: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    level: u32,
    reply: SyncSender<io::Result<Piece>>,
}

struct Piece {
    compressed: Vec<u8>,
    crc: Crc32,
    /// The input, handed back for reuse.
    input: Vec<u8>,
}

/// Piece buffers kept for reuse. A writer allocates its buffers once, on
/// its own thread, instead of a fresh MiB per piece on whichever thread
/// compressed it: with glibc's malloc, buffers freed on several threads
/// stay resident in their arenas, which cost ~20 MiB of peak RSS on the
/// big dependency set (bench/RESULTS.md).
#[derive(Default)]
struct Spares {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

impl Spares {
    fn input(&mut self) -> Vec<u8> {
        self.inputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    fn output(&mut self) -> Vec<u8> {
        self.outputs.pop().unwrap_or_default()
    }

    fn keep(&mut self, mut input: Vec<u8>, mut output: Vec<u8>) {
        input.clear();
        output.clear();
        self.inputs.push(input);
        self.outputs.push(output);
    }
}

/// A `Write` that gzips into `inner` using up to `threads` threads, with at most
/// `2 * threads` pieces in flight (bounded memory).
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    level: u32,
    buffer: Vec<u8>,
    dictionary: Vec<u8>,
    /// The current member's crc32 and uncompressed size.
    crc: Crc32,
    member_in: u64,
    total_in: u64,
    /// The bytes still to come that a spliced member holds.
    spliced: Option<Spliced>,
    pending: VecDeque<Receiver<io::Result<Piece>>>,
    max_pending: usize,
    spares: Spares,
    pool: Option<Pool>,
    header_written: bool,
}

/// Bytes written after a splice that its member already holds: counted and
/// checked against its crc32, not compressed again.
struct Spliced {
    left: u64,
    crc: Crc32,
    expected: u32,
}

impl Spliced {
    /// Takes what of `buf` the member holds; the last of it fails unless
    /// all of it had the member's crc32.
    fn take(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.left.min(buf.len() as u64) as usize;
        self.crc.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 && self.crc.clone().finalize() != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the bytes of a spliced member changed after they were checked",
            ));
        }
        Ok(n)
    }
}

/// Worker threads fed through one shared queue; dropping it stops and joins them.
struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let piece =
                        compress_piece(job.input, job.output, &job.dictionary, job.last, job.level);
                    let _ = job.reply.send(piece);
                })
            })
            .collect();
        Pool {
            jobs: Some(tx),
            workers,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl<W: Write> ParallelGzWriter<W> {
    /// `threads` <= 1 compresses on the calling thread (same bytes as any other count).
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        ParallelGzWriter {
            inner,
            level,
            buffer: Vec::with_capacity(CHUNK),
            dictionary: Vec::new(),
            crc: Crc32::new(),
            member_in: 0,
            total_in: 0,
            spliced: None,
            pending: VecDeque::new(),
            max_pending: 2 * threads.max(1),
            spares: Spares::default(),
            pool: (threads > 1).then(|| Pool::new(threads)),
            header_written: false,
        }
    }

    /// Uncompressed bytes written so far.
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    /// Compresses what is buffered, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.spliced.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "fewer bytes written than a spliced member holds",
            ));
        }
        self.end_member()?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Ends the current member, writes `deflate` (a raw deflate stream of
    /// `size` bytes whose crc32 is `crc`) as a member of its own, and takes
    /// the next `size` bytes written as the ones it holds: they are counted
    /// and checked against `crc` (a mismatch fails that write), not
    /// compressed. The caller checks that the stream inflates to them.
    pub fn splice(&mut self, mut deflate: impl io::Read, size: u64, crc: u32) -> io::Result<()> {
        if self.spliced.is_some() {
            return Err(io::Error::other("a splice inside a splice"));
        }
        if self.header_written || !self.buffer.is_empty() {
            self.end_member()?;
        }
        self.inner.write_all(&HEADER)?;
        io::copy(&mut deflate, &mut self.inner)?;
        self.inner.write_all(&trailer(crc, size))?;
        // An empty file's member holds no bytes to wait for.
        self.spliced = (size > 0).then(|| Spliced {
            left: size,
            crc: Crc32::new(),
            expected: crc,
        });
        Ok(())
    }

    /// Compresses what is buffered as the member's last piece, writes its
    /// trailer and starts afresh: the next member has no dictionary.
    fn end_member(&mut self) -> io::Result<()> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.inner
            .write_all(&trailer(self.crc.clone().finalize(), self.member_in))?;
        self.crc = Crc32::new();
        self.member_in = 0;
        self.header_written = false;
        self.dictionary.clear();
        Ok(())
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        let input = std::mem::replace(&mut self.buffer, self.spares.input());
        let output = self.spares.output();
        let dictionary = std::mem::take(&mut self.dictionary);
        if !last {
            self.dictionary = input[input.len() - WINDOW..].to_vec();
        }
        let (reply, receive) = mpsc::sync_channel(1);
        match self.pool.as_ref().and_then(|pool| pool.jobs.as_ref()) {
            Some(jobs) => {
                let job = Job {
                    input,
                    output,
                    dictionary,
                    last,
                    level: self.level,
                    reply,
                };
                jobs.send(job)
                    .map_err(|_| io::Error::other("gzip worker threads stopped"))?;
            }
            None => {
                let _ = reply.send(compress_piece(input, output, &dictionary, last, self.level));
            }
        }
        self.pending.push_back(receive);
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(receive) = self.pending.pop_front() else {
            return Ok(());
        };
        let piece = receive
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread panicked"))??;
        self.crc.combine(&piece.crc);
        self.inner.write_all(&piece.compressed)?;
        self.spares.keep(piece.input, piece.compressed);
        Ok(())
    }
}

/// A member's trailer: its crc32 and its size modulo 2^32.
fn trailer(crc: u32, size: u64) -> [u8; 8] {
    let mut trailer = [0u8; 8];
    trailer[..4].copy_from_slice(&crc.to_le_bytes());
    trailer[4..].copy_from_slice(&(size as u32).to_le_bytes());
    trailer
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(spliced) = &mut self.spliced {
            let n = spliced.take(buf)?;
            self.total_in += n as u64;
            if spliced.left == 0 {
                self.spliced = None;
            }
            return Ok(n);
        }
        let room = CHUNK - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.total_in += n as u64;
        self.member_in += n as u64;
        if self.buffer.len() == CHUNK {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Flushes the inner writer only: flushing mid-piece would change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn compress_piece(
    input: Vec<u8>,
    mut compressed: Vec<u8>,
    dictionary: &[u8],
    last: bool,
    level: u32,
) -> io::Result<Piece> {
    let mut compress = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    compressed.clear();
    compressed.reserve(input.len() + input.len() / 8 + 1024);
    loop {
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&input[consumed..], &mut compressed, flush)
            .map_err(io::Error::other)?;
        let all_in = compress.total_in() as usize == input.len();
        let room_left = compressed.len() < compressed.capacity();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if !last && all_in && room_left => break,
            Status::Ok | Status::BufError => compressed.reserve(64 * 1024),
        }
    }
    let mut crc = Crc32::new();
    crc.update(&input);
    Ok(Piece {
        compressed,
        crc,
        input,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// Compressible but not trivial: text-like bytes from a small LCG.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"import ",
            b"def ",
            b"return ",
            b"self",
            b"(x, y)",
            b"\n    ",
            b"pydantic",
            b" = ",
        ];
        let mut out = Vec::with_capacity(len + 16);
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (state >> 33) as usize;
            if r.is_multiple_of(5) {
                out.push((r >> 8) as u8);
            } else {
                out.extend_from_slice(words[r % 8]);
            }
        }
        out.truncate(len);
        out
    }

    fn gz(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads);
        for part in data.chunks(write_size.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_write_pattern() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12345] {
            let data = sample(len);
            let one = gz(&data, 1, 1 << 16);
            assert_eq!(gunzip(&one), data, "round trip, len {len}");
            assert_eq!(one, gz(&data, 2, 7777), "2 threads, len {len}");
            assert_eq!(one, gz(&data, 3, CHUNK * 2), "3 threads, len {len}");
            assert_eq!(&one[..10], &HEADER);
        }
    }

    /// `before`, then `middle` spliced in as raw deflate, then `after`.
    fn spliced(before: &[u8], middle: &[u8], after: &[u8], threads: usize) -> Vec<u8> {
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(9));
        deflate.write_all(middle).unwrap();
        let stream = deflate.finish().unwrap();
        let mut crc = Crc32::new();
        crc.update(middle);
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads);
        w.write_all(before).unwrap();
        w.splice(&stream[..], middle.len() as u64, crc.clone().finalize())
            .unwrap();
        for part in middle.chunks(10_000) {
            w.write_all(part).unwrap();
        }
        w.write_all(after).unwrap();
        assert_eq!(
            w.total_in(),
            (before.len() + middle.len() + after.len()) as u64
        );
        w.finish().unwrap()
    }

    fn members(data: &[u8]) -> usize {
        let mut count = 0;
        let mut rest = data;
        while !rest.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(rest);
            std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
            rest = decoder.into_inner();
            count += 1;
        }
        count
    }

    #[test]
    fn a_spliced_stream_is_a_member_of_its_own_between_the_written_bytes() {
        let (before, middle, after) = (sample(CHUNK + 5), sample(70_000), sample(3 * CHUNK));
        let one = spliced(&before, &middle, &after, 1);
        assert_eq!(
            one,
            spliced(&before, &middle, &after, 3),
            "any thread count"
        );
        assert_eq!(gunzip(&one), [&before[..], &middle, &after].concat());
        assert_eq!(members(&one), 3);
        // The spliced member holds the stream as made (level 9), not level 6.
        let plain = gz(&[&before[..], &middle, &after].concat(), 1, 1 << 16);
        assert_ne!(one, plain);
        // Spliced first, nothing before it: no empty member ahead of it.
        let first = spliced(b"", &middle, b"tail", 2);
        assert_eq!(members(&first), 2);
        assert_eq!(gunzip(&first), [&middle[..], b"tail"].concat());
    }

    #[test]
    fn bytes_other_than_the_spliced_ones_or_too_few_fail() {
        let middle = sample(50_000);
        let mut crc = Crc32::new();
        crc.update(&middle);
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
        deflate.write_all(&middle).unwrap();
        let stream = deflate.finish().unwrap();
        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2);
        w.splice(&stream[..], middle.len() as u64, crc.clone().finalize())
            .unwrap();
        let mut changed = middle.clone();
        changed[49_999] ^= 1;
        let error = w.write_all(&changed).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);

        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2);
        w.splice(&stream[..], middle.len() as u64, crc.clone().finalize())
            .unwrap();
        w.write_all(&middle[..49_999]).unwrap();
        assert!(
            w.splice(&stream[..], 1, 0).is_err(),
            "a splice inside a splice"
        );
        assert_eq!(w.finish().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn system_gzip_accepts_it() {
        let data = sample(2 * CHUNK + 999);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, gz(&data, 2, 1 << 20)).unwrap();
        let status = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.stdout, data);
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release --lib pgzip::bench -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing benchmark (prints MB/s, asserts nothing about speed); bench/run measures compression in the real build"]
    fn throughput() {
        let mut data = Vec::new();
        for entry in walkdir::WalkDir::new("/usr/lib").sort_by_file_name() {
            let Ok(entry) = entry else { continue };
            if entry.file_type().is_file() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    data.extend_from_slice(&bytes);
                }
            }
            if data.len() > 200 << 20 {
                break;
            }
        }
        // utime + stime of this process, in clock ticks (100 Hz).
        let cpu = || -> f64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
        };
        let mut reference = None;
        for threads in [1, 2, 4] {
            let cpu_start = cpu();
            let start = std::time::Instant::now();
            let mut w = ParallelGzWriter::new(Vec::new(), 6, threads);
            w.write_all(&data).unwrap();
            let out = w.finish().unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{threads} threads: {:.0} MB/s wall, {:.0} MB per CPU second, ratio {:.3}",
                data.len() as f64 / secs / 1e6,
                data.len() as f64 / (cpu() - cpu_start) / 1e6,
                out.len() as f64 / data.len() as f64
            );
            assert_eq!(reference.get_or_insert_with(|| out.clone()), &out);
        }
        let start = std::time::Instant::now();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(&data).unwrap();
        let out = e.finish().unwrap();
        println!(
            "GzEncoder: {:.0} MB/s, ratio {:.3}",
            data.len() as f64 / start.elapsed().as_secs_f64() / 1e6,
            out.len() as f64 / data.len() as f64
        );
    }
}
