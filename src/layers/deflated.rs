//! Installed files a wheel already holds deflated. A wheel is a zip whose
//! entries are raw deflate streams, the format a gzip member holds: a file
//! installed unchanged from a local wheel can go into the layer as its own
//! gzip member, copied from the wheel, instead of being compressed again
//! (on the big dependency set most of the site-packages bytes are a few
//! hundred `.so` and data files).
//!
//! Nothing in the wheel is trusted: its CRC and sizes only pick candidates.
//! Before a stream is copied it is inflated and compared byte for byte with
//! the installed file, and it must end exactly where the zip says it does,
//! so the layer holds the bytes its diff_id and checks were computed from.

use super::local_wheels::{place, Place};
use super::{Entry, EntryKind};
use crc32fast::Hasher as Crc32;
use flate2::{Decompress, FlushDecompress, Status};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Smaller files are compressed with their neighbours: a member of their
/// own would cost more bytes (its header and trailer, and the next tar
/// header compressed without context) than the CPU it saves is worth.
pub const MIN_SIZE: u64 = 16 * 1024;
/// More entries than this in one wheel: not looked at.
const ENTRIES_LIMIT: usize = 100_000;
const BUFFER: usize = 64 * 1024;
/// A `WHEEL` file is a few lines.
const WHEEL_FILE_LIMIT: u64 = 64 * 1024;

/// Where one file's deflate stream lies in a wheel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deflated {
    pub wheel: Arc<Path>,
    /// Offset of the stream in the wheel.
    pub start: u64,
    pub compressed_size: u64,
    /// The inflated size the zip claims.
    pub size: u64,
}

/// Candidates by layer entry path (relative to `/`).
pub type DeflatedFiles = BTreeMap<String, Deflated>;

/// One local wheel's deflated files, with its `WHEEL` file: the one thing
/// uv installs unchanged that tells two builds of a version apart (their
/// tags differ), so it says whether this is the wheel uv installed.
#[derive(Debug)]
pub struct WheelStreams {
    /// `<site>/<name>.dist-info/WHEEL` and its bytes in the wheel.
    wheel_file: Option<(String, Vec<u8>)>,
    files: Vec<(String, Deflated)>,
}

impl WheelStreams {
    pub fn files(self) -> impl Iterator<Item = (String, Deflated)> {
        self.files.into_iter()
    }
}

/// The deflated entries of at least [`MIN_SIZE`] bytes in `wheels` that
/// install below `site_packages` (an image path), by the entry path each
/// installs as. A wheel that can't be read as a zip, or names a path that
/// climbs, gives none: its files are compressed as usual.
pub fn list(wheels: &[PathBuf], site_packages: &str) -> Vec<WheelStreams> {
    let site = site_packages.trim_matches('/');
    wheels
        .iter()
        .filter_map(|wheel| in_wheel(wheel, site).ok())
        .collect()
}

/// The listed files of the wheels uv installed, by entry path: a wheel
/// counts as installed when `entries` hold its `WHEEL` file byte for byte.
/// Which wheel's stream a file gets depends only on what was installed,
/// not on what else lies in the find-links dirs (the first of two
/// identical wheels, in path order).
pub fn installed(listed: Vec<WheelStreams>, entries: &[Entry]) -> DeflatedFiles {
    let mut found = DeflatedFiles::new();
    for wheel in listed {
        let Some((path, expected)) = &wheel.wheel_file else {
            continue;
        };
        let installed = entries.iter().find_map(|entry| match &entry.kind {
            EntryKind::File { source, .. } if &entry.path == path => Some(source),
            _ => None,
        });
        let same = installed.is_some_and(|source| {
            read_capped(source, WHEEL_FILE_LIMIT).is_ok_and(|bytes| &bytes == expected)
        });
        if same {
            for (path, deflated) in wheel.files() {
                found.entry(path).or_insert(deflated);
            }
        }
    }
    found
}

fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other("too large"));
    }
    Ok(bytes)
}

fn in_wheel(wheel: &Path, site: &str) -> io::Result<WheelStreams> {
    let mut archive = zip::ZipArchive::new(File::open(wheel)?).map_err(io::Error::other)?;
    let mut listed = WheelStreams {
        wheel_file: None,
        files: Vec::new(),
    };
    if archive.len() > ENTRIES_LIMIT {
        return Ok(listed);
    }
    let shared: Arc<Path> = Arc::from(wheel);
    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or_default();
        let below = match place(name) {
            Place::SitePackages(below) => format!("{site}/{below}"),
            Place::Elsewhere => continue,
            Place::Climbs => return Err(io::Error::other("a name that climbs")),
        };
        let is_wheel_file = below
            .strip_suffix(".dist-info/WHEEL")
            .is_some_and(|dist| !dist[site.len() + 1..].contains('/'));
        if is_wheel_file {
            let entry = archive.by_index(index).map_err(io::Error::other)?;
            let mut bytes = Vec::new();
            entry.take(WHEEL_FILE_LIMIT + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 <= WHEEL_FILE_LIMIT {
                listed.wheel_file = Some((below, bytes));
            }
            continue;
        }
        let entry = archive.by_index_raw(index).map_err(io::Error::other)?;
        if entry.is_dir()
            || entry.encrypted()
            || entry.compression() != zip::CompressionMethod::Deflated
            || entry.size() < MIN_SIZE
        {
            continue;
        }
        listed.files.push((
            below,
            Deflated {
                wheel: Arc::clone(&shared),
                start: entry.data_start(),
                compressed_size: entry.compressed_size(),
                size: entry.size(),
            },
        ));
    }
    Ok(listed)
}

impl Deflated {
    /// The stream's crc32 when it inflates to exactly the bytes of
    /// `installed` (and ends where the zip says); None when it does not.
    pub fn matches(&self, installed: &Path) -> io::Result<Option<u32>> {
        let mut installed = File::open(installed)?;
        if installed.metadata()?.len() != self.size {
            return Ok(None);
        }
        let mut stream = self.stream()?;
        let mut inflate = Decompress::new(false);
        let mut crc = Crc32::new();
        let mut input = vec![0u8; BUFFER];
        let (mut start, mut end) = (0, 0);
        let mut inflated = vec![0u8; BUFFER];
        let mut expected = vec![0u8; BUFFER];
        loop {
            if start == end {
                end = stream.read(&mut input)?;
                start = 0;
            }
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let flush = if end == 0 {
                FlushDecompress::Finish
            } else {
                FlushDecompress::None
            };
            let status = match inflate.decompress(&input[start..end], &mut inflated, flush) {
                Ok(status) => status,
                Err(_) => return Ok(None),
            };
            let consumed = (inflate.total_in() - in_before) as usize;
            let produced = (inflate.total_out() - out_before) as usize;
            start += consumed;
            if inflate.total_out() > self.size {
                return Ok(None);
            }
            match installed.read_exact(&mut expected[..produced]) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                other => other?,
            }
            if inflated[..produced] != expected[..produced] {
                return Ok(None);
            }
            crc.update(&inflated[..produced]);
            if status == Status::StreamEnd {
                break;
            }
            // No progress: the stream is cut short (or will never end).
            if consumed == 0 && produced == 0 {
                return Ok(None);
            }
        }
        let whole = inflate.total_out() == self.size
            && inflate.total_in() == self.compressed_size
            && start == end
            && stream.read(&mut input)? == 0;
        Ok(whole.then(|| crc.finalize()))
    }

    /// The raw deflate stream, read from the wheel.
    pub fn stream(&self) -> io::Result<io::Take<File>> {
        let mut wheel = File::open(&self.wheel)?;
        wheel.seek(SeekFrom::Start(self.start))?;
        Ok(wheel.take(self.compressed_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SITE: &str = "/usr/local/lib/python3.13/site-packages";

    /// Text-like bytes that deflate well but not trivially.
    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b"abcdefgh ijkl\n"[(x >> 16) as usize % 14]
            })
            .collect()
    }

    fn wheel(dir: &Path, entries: &[(&str, &[u8], zip::CompressionMethod)]) -> PathBuf {
        named_wheel(dir, "demo-1.0-py3-none-any.whl", entries)
    }

    fn named_wheel(
        dir: &Path,
        file: &str,
        entries: &[(&str, &[u8], zip::CompressionMethod)],
    ) -> PathBuf {
        let path = dir.join(file);
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        for (name, bytes, method) in entries {
            let options = zip::write::SimpleFileOptions::default().compression_method(*method);
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    /// Every listed file, installed or not.
    fn all(wheels: &[PathBuf]) -> DeflatedFiles {
        list(wheels, SITE)
            .into_iter()
            .flat_map(WheelStreams::files)
            .collect()
    }

    #[test]
    fn only_big_deflated_files_below_site_packages_are_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let big = sample(40_000, 1);
        let deflated = zip::CompressionMethod::Deflated;
        let wheel = wheel(
            dir.path(),
            &[
                ("demo/big.so", &big, deflated),
                ("demo/small.py", b"x = 1\n", deflated),
                ("demo/stored.bin", &big, zip::CompressionMethod::Stored),
                ("demo-1.0.data/platlib/plat.so", &big, deflated),
                ("demo-1.0.data/scripts/tool", &big, deflated),
            ],
        );
        let found = all(std::slice::from_ref(&wheel));
        let site = SITE.trim_start_matches('/');
        assert_eq!(
            found.keys().cloned().collect::<Vec<_>>(),
            vec![format!("{site}/demo/big.so"), format!("{site}/plat.so")]
        );
        let installed = dir.path().join("big.so");
        std::fs::write(&installed, &big).unwrap();
        let mut crc = Crc32::new();
        crc.update(&big);
        let candidate = &found[&format!("{site}/demo/big.so")];
        assert_eq!(candidate.matches(&installed).unwrap(), Some(crc.finalize()));
        // The stream really is the file's bytes, deflated.
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(candidate.stream().unwrap())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, big);
    }

    #[test]
    fn a_file_that_differs_in_any_byte_or_length_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let big = sample(100_000, 2);
        let wheel = wheel(
            dir.path(),
            &[("demo/big.so", &big, zip::CompressionMethod::Deflated)],
        );
        let found = all(&[wheel]);
        let candidate = found.values().next().unwrap();
        let installed = dir.path().join("installed");
        for at in [0, 1, 65_535, 65_536, 99_999] {
            let mut changed = big.clone();
            changed[at] ^= 1;
            std::fs::write(&installed, &changed).unwrap();
            assert_eq!(candidate.matches(&installed).unwrap(), None, "byte {at}");
        }
        std::fs::write(&installed, &big[..99_999]).unwrap();
        assert_eq!(candidate.matches(&installed).unwrap(), None);
        // A zip that claims fewer compressed bytes than the stream has, or
        // more (trailing bytes a gzip reader would take for the trailer).
        std::fs::write(&installed, &big).unwrap();
        for delta in [-1i64, 1] {
            let lying = Deflated {
                compressed_size: (candidate.compressed_size as i64 + delta) as u64,
                ..candidate.clone()
            };
            assert_eq!(lying.matches(&installed).unwrap(), None, "{delta}");
        }
    }

    #[test]
    fn a_wheel_naming_a_path_that_climbs_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let big = sample(40_000, 3);
        let deflated = zip::CompressionMethod::Deflated;
        let wheel = wheel(
            dir.path(),
            &[
                ("demo/big.so", &big, deflated),
                ("../../etc/x.so", &big, deflated),
            ],
        );
        assert!(list(&[wheel], SITE).is_empty());
    }

    #[test]
    fn only_the_wheel_whose_wheel_file_was_installed_gives_streams() {
        let dir = tempfile::tempdir().unwrap();
        let deflated = zip::CompressionMethod::Deflated;
        let build = |file: &str, tag: &str, seed| {
            let wheel_file = format!("Wheel-Version: 1.0\nTag: {tag}\n");
            named_wheel(
                dir.path(),
                file,
                &[
                    ("demo/core.so", &sample(30_000, seed), deflated),
                    ("demo-1.0.dist-info/WHEEL", wheel_file.as_bytes(), deflated),
                ],
            )
        };
        // Sorted first, but not the one installed.
        let old = build(
            "demo-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
            "cp313-cp313-manylinux_2_17_x86_64",
            4,
        );
        let new = build(
            "demo-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
            "cp313-cp313-manylinux_2_28_x86_64",
            5,
        );
        let installed_wheel_file = dir.path().join("WHEEL");
        std::fs::write(
            &installed_wheel_file,
            "Wheel-Version: 1.0\nTag: cp313-cp313-manylinux_2_28_x86_64\n",
        )
        .unwrap();
        let site = SITE.trim_start_matches('/');
        let entries = [Entry {
            path: format!("{site}/demo-1.0.dist-info/WHEEL"),
            kind: EntryKind::File {
                source: installed_wheel_file.clone(),
                size: 0,
                listed: None,
            },
            mode: 0o644,
            owner: Default::default(),
        }];
        let found = installed(list(&[old.clone(), new.clone()], SITE), &entries);
        assert_eq!(found.len(), 1);
        assert_eq!(
            &*found[&format!("{site}/demo/core.so")].wheel,
            new.as_path()
        );
        // Neither installed: nothing.
        std::fs::write(
            &installed_wheel_file,
            "Wheel-Version: 1.0\nTag: py3-none-any\n",
        )
        .unwrap();
        assert!(installed(list(&[old, new], SITE), &entries).is_empty());
    }
}
