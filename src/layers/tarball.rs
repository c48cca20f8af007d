//! Deterministic tar + gzip writer: entries in, one layer blob out, with the
//! compressed digest and the uncompressed diff_id computed in one streaming pass.
//!
//! Headers are built by hand (GNU format): mtime = epoch, uid/gid from the
//! entry, empty user/group names, no atime/ctime, no pax records. Paths longer
//! than the header's 100 bytes get a GNU `././@LongLink` record (the tar crate
//! emits it with mode 0644, 0/0 and mtime 0). The gzip stream comes from
//! [`ParallelGzWriter`], whose bytes do not depend on the thread count.

use super::deflated::{Deflated, DeflatedFiles};
use super::pgzip::ParallelGzWriter;
use super::{open_checked, Entry, EntryKind, LayerBlob, SourceError};
use crate::digest::{Digest, HashingWriter};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use tar::{EntryType, Header};

/// libdeflate's gzip level used for every layer; changing it changes every
/// digest (bump `plan::LAYER_FORMAT`). Measured on the big set's
/// site-packages and its bytecode (341 MB, 1 MiB members, one core): level 5
/// takes 2.35 s for 102.6 MB; 6 takes 2.83 s for 1.0% less, 4 2.03 s for
/// 2.4% more. zlib-rs's level 5, used before, took 3.20 s for 103.9 MB.
pub const GZIP_LEVEL: u32 = 5;

/// Writes `entries` (already normalised: sorted, parents first) as a gzip'd tar
/// to `out`, with every mtime set to `epoch`, compressing on up to as many
/// threads as the machine has (capped at 8).
pub fn write_layer(entries: &[Entry], epoch: u64, out: &Path) -> io::Result<LayerBlob> {
    write_layer_checked(entries, epoch, out, &Checks::default())
}

/// Content digests by image path: the ones a layer's cache key was made of.
pub type FileDigests = BTreeMap<String, Digest>;

/// What a layer's files are checked for while they are packed (each byte is
/// read once, for the tar).
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// Each file named here is hashed: bytes that differ from the digest the
    /// cache key holds (the file was rewritten between the two reads) fail
    /// the layer, naming the file, so a key never maps to bytes it was not
    /// made from.
    pub digests: FileDigests,
    /// Paths of the building machine (uv's staging dir) that no file or
    /// symlink target may hold: the layer fails with [`HostPathLeak`],
    /// naming every entry that holds one.
    pub host_paths: Vec<String>,
    /// Files a local wheel holds deflated: each whose bytes the wheel's
    /// stream is checked to inflate to goes in as that stream, copied into
    /// a gzip member of its own instead of compressed again.
    pub deflated: std::sync::Arc<DeflatedFiles>,
}

/// Entries whose bytes (or symlink target) still name a path of the
/// building machine: a script or record uv wrote with the staging dir in it.
#[derive(Debug, thiserror::Error)]
#[error("host paths remain in the installed files: {}", .0.join(", "))]
pub struct HostPathLeak(pub Vec<String>);

impl HostPathLeak {
    /// The leak inside an I/O error, if that is what it carries.
    pub fn of(error: &io::Error) -> Option<&HostPathLeak> {
        error.get_ref()?.downcast_ref::<HostPathLeak>()
    }
}

/// [`write_layer`] with the files checked as `checks` says.
pub fn write_layer_checked(
    entries: &[Entry],
    epoch: u64,
    out: &Path,
    checks: &Checks,
) -> io::Result<LayerBlob> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    write_layer_with_threads(entries, epoch, out, threads, checks)
}

/// [`write_layer`] with an explicit compression thread count (same bytes for any count).
pub fn write_layer_with_threads(
    entries: &[Entry],
    epoch: u64,
    out: &Path,
    threads: usize,
    checks: &Checks,
) -> io::Result<LayerBlob> {
    let file = BufWriter::with_capacity(1 << 16, File::create(out)?);
    let gzip = ParallelGzWriter::new(HashingWriter::new(file), GZIP_LEVEL, threads)?;
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    let host_paths = Needles::new(checks.host_paths.iter().map(|p| p.as_bytes()));
    let mut leaks = Vec::new();
    for entry in entries {
        let file = FileChecks {
            expected: checks.digests.get(&entry.path),
            host_paths: &host_paths,
            deflated: checks.deflated.get(&entry.path),
        };
        let leaked = append(&mut tar, entry, epoch, &file).map_err(|e| {
            if SourceError::of(&e).is_some() {
                return e;
            }
            io::Error::new(e.kind(), format!("adding `{}` to layer: {e}", entry.path))
        })?;
        if leaked {
            leaks.push(entry.path.clone());
        }
    }
    if !leaks.is_empty() {
        return Err(io::Error::other(HostPathLeak(leaks)));
    }
    let (gzip, diff_id, uncompressed_size) = tar.into_inner()?.finish();
    let (file, digest, size) = gzip.finish()?.finish();
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
        uncompressed_size,
        path: out.to_path_buf(),
    })
}

/// What one entry is checked against as it is packed.
struct FileChecks<'a> {
    expected: Option<&'a Digest>,
    host_paths: &'a Needles,
    deflated: Option<&'a Deflated>,
}

/// Appends one entry; whether its bytes (or link target) hold a host path.
fn append<W: Write>(
    tar: &mut tar::Builder<HashingWriter<ParallelGzWriter<W>>>,
    entry: &Entry,
    epoch: u64,
    checks: &FileChecks,
) -> io::Result<bool> {
    let FileChecks {
        expected,
        host_paths,
        deflated,
    } = *checks;
    let mut header = Header::new_gnu();
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.owner.uid);
    header.set_gid(entry.owner.gid);
    header.set_mtime(epoch);
    match &entry.kind {
        EntryKind::Dir => {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, format!("{}/", entry.path), io::empty())?;
            Ok(false)
        }
        EntryKind::File {
            source,
            size,
            listed,
        } => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(*size);
            let file = open_checked(source, *size, listed.as_ref())?;
            let mut reader = ExactReader {
                inner: file.take(*size),
                left: *size,
                hasher: expected.map(|_| sha2::Sha256::new()),
                scan: host_paths.scan(),
            };
            // A wheel that can't be read (gone since it was listed) only
            // means this file is compressed as usual.
            let splice = match deflated {
                Some(deflated) if deflated.size == *size => deflated
                    .matches(source)
                    .ok()
                    .flatten()
                    .map(|crc| (deflated, crc)),
                _ => None,
            };
            let appended = match splice {
                Some((deflated, crc)) => {
                    append_spliced(tar, &mut header, &entry.path, &mut reader, deflated, crc)
                }
                None => tar.append_data(&mut header, &entry.path, &mut reader),
            };
            appended.map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => io::Error::other(SourceError::Changed {
                    path: source.clone(),
                    what: "it shrank".into(),
                }),
                _ => e,
            })?;
            let read = reader.hasher.map(Digest::from_hasher);
            match expected {
                Some(expected) if read.as_ref() != Some(expected) => {
                    Err(io::Error::other(SourceError::Changed {
                        path: source.clone(),
                        what: "its bytes differ from the first read".into(),
                    }))
                }
                _ => Ok(reader.scan.is_some_and(|scan| scan.found)),
            }
        }
        EntryKind::Packed { pack, offset, size } => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(*size);
            let slice = crate::layers::open_packed(pack, *offset, *size)?;
            // Compiled here from checked sources: not scanned.
            tar.append_data(
                &mut header,
                &entry.path,
                ExactReader {
                    inner: slice,
                    left: *size,
                    hasher: None,
                    scan: None,
                },
            )?;
            Ok(false)
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &entry.path, target)?;
            Ok(host_paths.in_bytes(target.as_bytes()))
        }
    }
}

/// Appends a file whose bytes `deflated` holds (their crc32 is `crc`): the
/// header alone (an empty reader writes no data and no padding), then the
/// wheel's stream as a gzip member of its own, then the file's bytes from
/// `reader`, hashed for the diff_id and checks and checked against `crc`
/// by the gzip writer, not compressed again; then the padding.
fn append_spliced<W: Write>(
    tar: &mut tar::Builder<HashingWriter<ParallelGzWriter<W>>>,
    header: &mut Header,
    path: &str,
    reader: &mut impl Read,
    deflated: &Deflated,
    crc: u32,
) -> io::Result<()> {
    tar.append_data(header, path, io::empty())?;
    let hashing = tar.get_mut();
    hashing
        .get_mut()
        .splice(deflated.stream()?, deflated.size, crc)?;
    let copied = io::copy(reader, hashing)?;
    let padding = (512 - copied % 512) % 512;
    hashing.write_all(&[0u8; 512][..padding as usize])
}

/// Byte strings looked for in files' bytes as they stream by (host paths
/// as a layer is packed; `file://` in an installer's leftovers).
pub(crate) struct Needles {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Needles {
    /// Empty needles are dropped (they would match everything).
    pub(crate) fn new<'a>(needles: impl IntoIterator<Item = &'a [u8]>) -> Needles {
        let finders = needles
            .into_iter()
            .filter(|n| !n.is_empty())
            .map(|n| memchr::memmem::Finder::new(n).into_owned())
            .collect();
        Needles { finders }
    }

    pub(crate) fn in_bytes(&self, bytes: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(bytes).is_some())
    }

    /// A scan of one stream of bytes, or None when there is nothing to find.
    pub(crate) fn scan(&self) -> Option<Scan<'_>> {
        let longest = self.finders.iter().map(|f| f.needle().len()).max()?;
        Some(Scan {
            needles: self,
            carry: Vec::with_capacity(2 * longest),
            keep: longest - 1,
            found: false,
        })
    }
}

/// One stream's scan, fed its bytes as they are read: a needle split across
/// two reads is found in the last `keep` bytes of one and the start of the
/// next.
pub(crate) struct Scan<'a> {
    needles: &'a Needles,
    carry: Vec<u8>,
    keep: usize,
    pub(crate) found: bool,
}

impl Scan<'_> {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.found {
            return;
        }
        self.carry
            .extend_from_slice(&bytes[..bytes.len().min(self.keep)]);
        self.found = self.needles.in_bytes(&self.carry) || self.needles.in_bytes(bytes);
        // Keep the last `keep` bytes seen, in place.
        if bytes.len() >= self.keep {
            self.carry.clear();
            self.carry
                .extend_from_slice(&bytes[bytes.len() - self.keep..]);
        } else {
            let from = self.carry.len().saturating_sub(self.keep);
            self.carry.drain(..from);
        }
    }
}

/// Yields exactly the size recorded in the entry, or fails if the file shrank
/// (a file that grew is cut by `take`; either way the tar stays well-formed).
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    hasher: Option<sha2::Sha256>,
    scan: Option<Scan<'a>>,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank since it was listed",
            ));
        }
        self.left -= n as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        if let Some(scan) = &mut self.scan {
            scan.feed(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{normalise, Owner};
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::process::Command;

    fn file(path: &str, source: &Path, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryKind::File {
                source: source.to_path_buf(),
                size: std::fs::metadata(source).unwrap().len(),
                listed: None,
            },
            mode,
            owner: Owner::default(),
        }
    }

    /// A small tree on disk with the given file mtime and permission bits.
    fn sources(dir: &Path, mtime: i64, perm: u32) -> Vec<Entry> {
        std::fs::create_dir_all(dir).unwrap();
        let long = format!("app/{}/deep.py", "d".repeat(120));
        let mut entries = Vec::new();
        for (name, body) in [
            ("a.py", "print('a')\n"),
            ("b.txt", "bee\n"),
            ("deep.py", "x = 1\n"),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(perm)).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        entries.push(file("app/a.py", &dir.join("a.py"), 0o644));
        entries.push(file("app/b.txt", &dir.join("b.txt"), 0o755));
        entries.push(file(&long, &dir.join("deep.py"), 0o644));
        entries.push(Entry {
            path: "app/link".into(),
            kind: EntryKind::Symlink {
                target: format!("{}/deep.py", "d".repeat(120)),
            },
            mode: 0o777,
            owner: Owner::default(),
        });
        normalise(entries, Owner::default())
    }

    fn tar_tv(path: &Path) -> String {
        let out = Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvzf"])
            .arg(path)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn same_entries_give_same_bytes_whatever_the_source_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let one = sources(&dir.path().join("one"), 1_000_000, 0o600);
        let two = sources(&dir.path().join("two"), 2_000_000, 0o640);
        let a = write_layer_with_threads(&one, 0, &dir.path().join("a.tgz"), 1, &Checks::default())
            .unwrap();
        let b = write_layer_with_threads(&two, 0, &dir.path().join("b.tgz"), 2, &Checks::default())
            .unwrap();
        let c = write_layer(&one, 0, &dir.path().join("c.tgz")).unwrap();
        let bytes = |p: &PathBuf| std::fs::read(p).unwrap();
        assert_eq!(bytes(&a.path), bytes(&b.path));
        assert_eq!(bytes(&a.path), bytes(&c.path));
        assert_eq!((&a.digest, &a.diff_id), (&b.digest, &b.diff_id));
        assert_eq!(a.size, bytes(&a.path).len() as u64);
        assert_eq!(a.digest, crate::digest::Digest::of(&bytes(&a.path)));
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes(&a.path)[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(a.diff_id, crate::digest::Digest::of(&tar));
        assert_eq!(a.uncompressed_size, tar.len() as u64);
    }

    #[test]
    fn system_tar_lists_entries_in_order_with_fixed_owner_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let entries = sources(&dir.path().join("src"), 1_234_567, 0o600);
        let blob = write_layer(&entries, 86400, &dir.path().join("l.tgz")).unwrap();
        let listing = tar_tv(&blob.path);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), entries.len(), "{listing}");
        for (line, entry) in lines.iter().zip(&entries) {
            assert!(line.contains(" 0/0 "), "{line}");
            assert!(line.contains("1970-01-02 00:00:00"), "{line}");
            let name = match entry.kind {
                EntryKind::Dir => format!(" {}/", entry.path),
                EntryKind::Symlink { ref target } => format!(" {} -> {target}", entry.path),
                EntryKind::File { .. } | EntryKind::Packed { .. } => format!(" {}", entry.path),
            };
            assert!(line.ends_with(&name), "{line} vs {name}");
        }
        assert!(lines[0].starts_with("drwxr-xr-x"), "{}", lines[0]);
        let b = lines.iter().find(|l| l.ends_with("app/b.txt")).unwrap();
        assert!(b.starts_with("-rwxr-xr-x"), "{b}");
    }

    #[test]
    fn owner_is_taken_from_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, "x").unwrap();
        let mut entry = file("f", &src, 0o644);
        entry.owner = Owner {
            uid: 1000,
            gid: 2000,
        };
        let blob = write_layer(&[entry], 0, &dir.path().join("l.tgz")).unwrap();
        assert!(tar_tv(&blob.path).contains(" 1000/2000 "));
    }

    #[test]
    fn a_wheels_stream_goes_in_as_is_when_it_inflates_to_the_file() {
        use crate::layers::deflated;
        let dir = tempfile::tempdir().unwrap();
        // Above deflated::MIN_SIZE.
        let big = crate::layers::pgzip::tests::sample(200_000);
        let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let level9 = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9));
        zip.start_file("demo/big.so", level9).unwrap();
        zip.write_all(&big).unwrap();
        zip.finish().unwrap();
        let installed = dir.path().join("big.so");
        std::fs::write(&installed, &big).unwrap();
        let mut entries = sources(&dir.path().join("tree"), 0, 0o644);
        entries.push(file("site/demo/big.so", &installed, 0o755));
        let entries = normalise(entries, Owner::default());
        let candidates: deflated::DeflatedFiles = deflated::list(&[wheel], "/site")
            .into_iter()
            .flat_map(deflated::WheelStreams::files)
            .collect();
        let candidates = std::sync::Arc::new(candidates);
        assert_eq!(candidates.len(), 1);
        let with = Checks {
            deflated: candidates,
            ..Checks::default()
        };
        let write = |name: &str, checks: &Checks, threads| {
            write_layer_with_threads(&entries, 0, &dir.path().join(name), threads, checks).unwrap()
        };
        let plain = write("plain.tgz", &Checks::default(), 1);
        let spliced = write("spliced.tgz", &with, 1);
        assert_eq!(
            std::fs::read(&spliced.path).unwrap(),
            std::fs::read(&write("spliced2.tgz", &with, 3).path).unwrap(),
            "any thread count"
        );
        // The same tar, so the same diff_id; other gzip bytes.
        assert_eq!(spliced.diff_id, plain.diff_id);
        assert_eq!(spliced.uncompressed_size, plain.uncompressed_size);
        assert_ne!(spliced.digest, plain.digest);
        assert_eq!(tar_tv(&spliced.path), tar_tv(&plain.path));
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(File::open(&spliced.path).unwrap())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(crate::digest::Digest::of(&tar), spliced.diff_id);
        // The wheel's level-9 stream is in the blob byte for byte.
        let stream = std::fs::read(dir.path().join("demo-1.0-py3-none-any.whl")).unwrap();
        let candidate = with.deflated.values().next().unwrap();
        let range =
            candidate.start as usize..(candidate.start + candidate.compressed_size) as usize;
        let blob = std::fs::read(&spliced.path).unwrap();
        assert!(memchr::memmem::find(&blob, &stream[range]).is_some());

        // The installed file differs from the wheel's: compressed as usual.
        let mut changed = big.clone();
        changed[100_000] ^= 1;
        std::fs::write(&installed, &changed).unwrap();
        let fallback = write("fallback.tgz", &with, 2);
        let plain = write("plain2.tgz", &Checks::default(), 2);
        assert_eq!(
            std::fs::read(&fallback.path).unwrap(),
            std::fs::read(&plain.path).unwrap()
        );
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, "hello").unwrap();
        let entry = file("f", &src, 0o644);
        std::fs::write(&src, "hi").unwrap();
        let err = write_layer(&[entry], 0, &dir.path().join("l.tgz")).unwrap_err();
        assert!(
            err.to_string().contains("5 bytes when listed, 2 now"),
            "{err}"
        );
    }

    #[test]
    fn bytes_other_than_the_keyed_ones_fail_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, "hello").unwrap();
        let entry = file("f", &src, 0o644);
        let expected = Checks {
            digests: FileDigests::from([("f".to_string(), Digest::of(b"hallo"))]),
            ..Checks::default()
        };
        let err = write_layer_checked(
            std::slice::from_ref(&entry),
            0,
            &dir.path().join("l.tgz"),
            &expected,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("differ from the first read"),
            "{err}"
        );
        let good = Checks {
            digests: FileDigests::from([("f".to_string(), Digest::of(b"hello"))]),
            ..Checks::default()
        };
        write_layer_checked(&[entry], 0, &dir.path().join("l.tgz"), &good).unwrap();
    }

    #[test]
    fn host_paths_fail_the_layer_naming_every_entry_that_holds_one() {
        let dir = tempfile::tempdir().unwrap();
        let host = "/tmp/slipway-staging/prefix";
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            file(name, &path, 0o644)
        };
        // Split across two of the reader's reads (8 KiB each): found too.
        let mut split = vec![b'x'; 8192 - 10];
        split.extend_from_slice(host.as_bytes());
        let entries = [
            write("a.pth", format!("{host}/src\n").as_bytes()),
            write("b.py", b"print('clean')\n"),
            write("c.txt", &split),
            Entry {
                path: "d".into(),
                kind: EntryKind::Symlink {
                    target: format!("{host}/bin/python"),
                },
                mode: 0o777,
                owner: Owner::default(),
            },
            write("e.txt", &host.as_bytes()[..host.len() - 1]),
        ];
        let checks = Checks {
            host_paths: vec![host.to_string(), String::new()],
            ..Checks::default()
        };
        let err = write_layer_checked(&entries, 0, &dir.path().join("l.tgz"), &checks).unwrap_err();
        let leak = HostPathLeak::of(&err).expect("a leak");
        assert_eq!(leak.0, ["a.pth", "c.txt", "d"]);
        assert!(
            err.to_string()
                .contains("host paths remain in the installed files: a.pth, c.txt, d"),
            "{err}"
        );
        write_layer_checked(&entries[1..2], 0, &dir.path().join("l.tgz"), &checks).unwrap();
    }

    #[test]
    fn a_scan_finds_a_needle_however_the_bytes_are_split() {
        let finder = Needles::new([&b"zz"[..], b"/stage/x"]);
        let text = b"..../stage/x...";
        for first in 0..text.len() {
            for second in first..text.len() {
                let mut scan = finder.scan().unwrap();
                for part in [&text[..first], &text[first..second], &text[second..]] {
                    scan.feed(part);
                }
                assert!(scan.found, "{first} {second}");
            }
        }
        let one = Needles::new([&b"/stage/x"[..]]);
        let mut scan = one.scan().unwrap();
        for part in [&b"/sta"[..], b"ge/", b"y/stage", b"/"] {
            scan.feed(part);
        }
        assert!(!scan.found);
    }
}
