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
use super::wheelfix::read_capped;
use super::{Entry, EntryKind};
use crc32fast::Hasher as Crc32;
use flate2::bufread::DeflateDecoder;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
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
    let wheel_files: BTreeMap<&str, &Path> = entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::File { source, .. } if entry.path.ends_with(".dist-info/WHEEL") => {
                Some((entry.path.as_str(), source.as_path()))
            }
            _ => None,
        })
        .collect();
    let mut found = DeflatedFiles::new();
    for wheel in listed {
        let same = wheel.wheel_file.as_ref().is_some_and(|(path, expected)| {
            wheel_files
                .get(path.as_str())
                .is_some_and(|source| read_capped(source).is_ok_and(|bytes| &bytes == expected))
        });
        if same {
            for (path, deflated) in wheel.files() {
                found.entry(path).or_insert(deflated);
            }
        }
    }
    found
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
        let mut inflate = DeflateDecoder::new(BufReader::with_capacity(BUFFER, self.stream()?));
        let mut crc = Crc32::new();
        let (mut inflated, mut expected) = (vec![0u8; BUFFER], vec![0u8; BUFFER]);
        loop {
            let n = match inflate.read(&mut inflated) {
                Ok(0) => break,
                Ok(n) => n,
                // Not a deflate stream, or one cut short.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            if inflate.total_out() > self.size {
                return Ok(None);
            }
            match installed.read_exact(&mut expected[..n]) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                other => other?,
            }
            if inflated[..n] != expected[..n] {
                return Ok(None);
            }
            crc.update(&inflated[..n]);
        }
        // All of it, and nothing after the stream's end: a gzip reader would take such bytes for the trailer.
        let whole = inflate.total_out() == self.size
            && inflate.total_in() == self.compressed_size
            && inflate.get_mut().fill_buf()?.is_empty();
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
    use crate::layers::pgzip::tests::sample;
    use std::io::Write;

    const SITE: &str = "/usr/local/lib/python3.13/site-packages";

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
        let big = sample(40_000);
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
        let big = sample(100_000);
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
        let big = sample(40_000);
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
        let build = |file: &str, tag: &str, size| {
            let wheel_file = format!("Wheel-Version: 1.0\nTag: {tag}\n");
            named_wheel(
                dir.path(),
                file,
                &[
                    ("demo/core.so", &sample(size), deflated),
                    ("demo-1.0.dist-info/WHEEL", wheel_file.as_bytes(), deflated),
                ],
            )
        };
        // Sorted first, but not the one installed.
        let old = build(
            "demo-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
            "cp313-cp313-manylinux_2_17_x86_64",
            30_000,
        );
        let new = build(
            "demo-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
            "cp313-cp313-manylinux_2_28_x86_64",
            31_000,
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
