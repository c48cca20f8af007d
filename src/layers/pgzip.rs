//! Deterministic parallel gzip: a series of gzip members, one per
//! [`CHUNK`] of input, each deflated on its own by libdeflate.
//!
//! The input is cut into fixed [`CHUNK`]-byte pieces; each becomes a whole
//! gzip member (header, raw deflate, crc32 and size), compressed on a pool of
//! threads and written in order. A gzip file is a series of members (RFC 1952,
//! 2.2): gzip, Go's compress/gzip (containerd, skopeo, umoci, podman), Python
//! and every layer reader here read them all, as they do eStargz layers. The
//! bytes depend only on the input, the level and where splices are, never on
//! the thread count or on how the input was split into writes.
//!
//! libdeflate instead of zlib-rs: pieces made whole members need no preset
//! dictionary or sync flush, which libdeflate lacks, and on the big
//! dependency set's layers its level 5 is 1.36x as fast as zlib-rs's level 5
//! (pigz-style, one stream) and 1.3% smaller (bench/RESULTS.md).
//!
//! [`ParallelGzWriter::splice`] puts a deflate stream made elsewhere (a
//! wheel's entry) in a member of its own: the piece being filled ends early,
//! the spliced member follows, and a new piece starts after it.

use crc32fast::Hasher as Crc32;
use libdeflater::{CompressionLvl, Compressor};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per member (the last one, and one ended by a splice,
/// may hold fewer).
pub const CHUNK: usize = 1 << 20;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS 255 (unknown).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

struct Job {
    input: Vec<u8>,
    /// An emptied buffer to compress into (recycled, see [`Spares`]).
    output: Vec<u8>,
    reply: SyncSender<io::Result<Piece>>,
}

struct Piece {
    /// A whole gzip member.
    member: Vec<u8>,
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
    buffer: Vec<u8>,
    total_in: u64,
    /// Whether any member was written: an empty input still makes one.
    wrote_member: bool,
    /// The bytes still to come that a spliced member holds.
    spliced: Option<Spliced>,
    pending: VecDeque<Receiver<io::Result<Piece>>>,
    max_pending: usize,
    spares: Spares,
    compressing: Compressing,
}

/// Where pieces are compressed.
enum Compressing {
    /// On the calling thread (one thread asked for).
    Here(Compressor),
    Pool(Pool),
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

/// Worker threads, each with its own compressor, fed through one shared
/// queue; dropping it stops and joins them.
struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: CompressionLvl) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || {
                    let mut compressor = Compressor::new(level);
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let piece = compress_member(&mut compressor, job.input, job.output);
                        let _ = job.reply.send(piece);
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(tx),
            workers,
        }
    }
}

impl Pool {
    fn send(&self, job: Job) -> io::Result<()> {
        let stopped = || io::Error::other("gzip worker threads stopped");
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
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
    /// `threads` <= 1 compresses on the calling thread (same bytes as any
    /// other count). `level` is libdeflate's, 0 to 12.
    pub fn new(inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = i32::try_from(level)
            .ok()
            .and_then(|level| CompressionLvl::new(level).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("gzip level {level} is not one of 0 to 12"),
                )
            })?;
        let compressing = if threads > 1 {
            Compressing::Pool(Pool::new(threads, level))
        } else {
            Compressing::Here(Compressor::new(level))
        };
        Ok(ParallelGzWriter {
            inner,
            buffer: Vec::with_capacity(CHUNK),
            total_in: 0,
            wrote_member: false,
            spliced: None,
            pending: VecDeque::new(),
            max_pending: 2 * threads.max(1),
            spares: Spares::default(),
            compressing,
        })
    }

    /// Uncompressed bytes written so far.
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    /// Compresses what is buffered and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.spliced.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "fewer bytes written than a spliced member holds",
            ));
        }
        if !self.wrote_member {
            // An empty input is one empty member.
            self.submit()?;
        }
        self.write_all_pieces()?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Ends the piece being filled, writes `deflate` (a raw deflate stream
    /// of `size` bytes whose crc32 is `crc`) as a member of its own, and
    /// takes the next `size` bytes written as the ones it holds: they are
    /// counted and checked against `crc` (a mismatch fails that write), not
    /// compressed. The caller checks that the stream inflates to them.
    pub fn splice(&mut self, mut deflate: impl io::Read, size: u64, crc: u32) -> io::Result<()> {
        if self.spliced.is_some() {
            return Err(io::Error::other("a splice inside a splice"));
        }
        self.write_all_pieces()?;
        self.inner.write_all(&HEADER)?;
        io::copy(&mut deflate, &mut self.inner)?;
        self.inner.write_all(&trailer(crc, size))?;
        self.wrote_member = true;
        // An empty file's member holds no bytes to wait for.
        self.spliced = (size > 0).then(|| Spliced {
            left: size,
            crc: Crc32::new(),
            expected: crc,
        });
        Ok(())
    }

    /// Compresses what is buffered, if anything, and writes every member
    /// still pending.
    fn write_all_pieces(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(())
    }

    /// Hands what is buffered to be compressed as a member of its own.
    fn submit(&mut self) -> io::Result<()> {
        let input = std::mem::replace(&mut self.buffer, self.spares.input());
        let output = self.spares.output();
        self.wrote_member = true;
        let (reply, receive) = mpsc::sync_channel(1);
        match &mut self.compressing {
            Compressing::Here(compressor) => {
                let _ = reply.send(compress_member(compressor, input, output));
            }
            Compressing::Pool(pool) => pool.send(Job {
                input,
                output,
                reply,
            })?,
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
        self.inner.write_all(&piece.member)?;
        self.spares.keep(piece.input, piece.member);
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
        if self.buffer.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Flushes the inner writer only: flushing mid-piece would change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `input` as one whole gzip member, in `member`.
fn compress_member(
    compressor: &mut Compressor,
    input: Vec<u8>,
    mut member: Vec<u8>,
) -> io::Result<Piece> {
    let bound = compressor.deflate_compress_bound(input.len());
    member.clear();
    member.resize(HEADER.len() + bound, 0);
    member[..HEADER.len()].copy_from_slice(&HEADER);
    let size = compressor
        .deflate_compress(&input, &mut member[HEADER.len()..])
        .map_err(|e| io::Error::other(format!("libdeflate: {e}")))?;
    member.truncate(HEADER.len() + size);
    let mut crc = Crc32::new();
    crc.update(&input);
    member.extend_from_slice(&trailer(crc.finalize(), input.len() as u64));
    Ok(Piece { member, input })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
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
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads).unwrap();
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
            assert_eq!(members(&one), pieces(len), "a member per piece, len {len}");
        }
    }

    /// `before`, then `middle` spliced in as raw deflate, then `after`.
    fn spliced(before: &[u8], middle: &[u8], after: &[u8], threads: usize) -> Vec<u8> {
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(9));
        deflate.write_all(middle).unwrap();
        let stream = deflate.finish().unwrap();
        let mut crc = Crc32::new();
        crc.update(middle);
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads).unwrap();
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

    /// The uncompressed size of each member, in order.
    fn members(data: &[u8]) -> Vec<u64> {
        let mut sizes = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(rest);
            sizes.push(std::io::copy(&mut decoder, &mut std::io::sink()).unwrap());
            rest = decoder.into_inner();
        }
        sizes
    }

    /// What [`members`] should say of plain writes of `len` bytes.
    fn pieces(len: usize) -> Vec<u64> {
        let mut sizes: Vec<u64> = (0..len / CHUNK).map(|_| CHUNK as u64).collect();
        if !len.is_multiple_of(CHUNK) || len == 0 {
            sizes.push((len % CHUNK) as u64);
        }
        sizes
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
        // The piece being filled ends at the splice; the next starts after it.
        let expected = [pieces(before.len()), vec![70_000], pieces(after.len())].concat();
        assert_eq!(members(&one), expected);
        // The spliced member holds the stream as made (level 9), not level 6.
        let plain = gz(&[&before[..], &middle, &after].concat(), 1, 1 << 16);
        assert_ne!(one, plain);
        // Spliced first, nothing before it: no empty member ahead of it.
        let first = spliced(b"", &middle, b"tail", 2);
        assert_eq!(members(&first), [70_000, 4]);
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
        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2).unwrap();
        w.splice(&stream[..], middle.len() as u64, crc.clone().finalize())
            .unwrap();
        let mut changed = middle.clone();
        changed[49_999] ^= 1;
        let error = w.write_all(&changed).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);

        let mut w = ParallelGzWriter::new(Vec::new(), 6, 2).unwrap();
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
    use flate2::Compression;

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
            let mut w = ParallelGzWriter::new(Vec::new(), 6, threads).unwrap();
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
