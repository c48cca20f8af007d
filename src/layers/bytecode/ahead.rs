//! Wheel bytecode compiled ahead of the install: while uv installs, the
//! wheels it will most likely pick (for each pinned requirement, the wheels
//! of that name and version in a local find-links dir whose tags fit the
//! target) are compiled straight from their zips into the per-wheel store,
//! under the key their installed files will give. After the install the
//! site-packages bytecode finds them there instead of compiling. A wrong
//! guess costs only CPU: its key matches nothing installed.
//!
//! Every byte read from a wheel is hostile: entry names are only used as
//! image paths (never written to disk), a name that climbs (`..`) or is
//! absolute ends the guess for that wheel, each source is read with a size
//! limit and hashed again when it is compiled, so the store never holds
//! `.pyc` for bytes other than its key's.

use super::wheels::{compile_missing, in_tests_dir, key_of, WheelStore};
use super::BytecodeError;
use crate::digest::Digest;
use crate::layers::local_wheels::{self, Place};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// A `.py` file larger than this is left to the install (no source is).
const SOURCE_LIMIT: u64 = 16 << 20;
/// More entries than this in one wheel: not guessed at.
const ENTRIES_LIMIT: usize = 100_000;

/// What to guess from and where the output goes.
pub struct Ahead<'a> {
    pub python: &'a Path,
    /// The guesses: the local wheels uv will most likely install
    /// ([`local_wheels::pinned`]).
    pub wheels: &'a [PathBuf],
    /// Image path of site-packages.
    pub site_packages: &'a str,
    /// Compile packages' test dirs too (`[python] tests_bytecode`).
    pub tests: bool,
    pub store: &'a WheelStore,
    /// A scratch dir on the store's file system.
    pub scratch: &'a Path,
    pub workers: usize,
    /// Set when the install is done: the workers start no new wheel (they
    /// finish the ones started: a wheel is stored whole or not at all), and
    /// what they did not get to is compiled after the install, keyed by the
    /// installed files.
    pub enough: &'a AtomicBool,
}

/// One guessed wheel: its `.py` files as (entry name, image path, digest).
struct Guess {
    wheel: PathBuf,
    sources: Vec<(String, String, Digest)>,
}

/// Compiles the guessed wheels the store lacks; the number of files compiled.
pub fn compile_ahead(ahead: &Ahead) -> Result<usize, BytecodeError> {
    if ahead.wheels.is_empty() {
        return Ok(0);
    }
    let magic = super::magic(ahead.python, None)?;
    let guesses: Vec<Guess> = ahead
        .wheels
        .iter()
        .filter_map(|wheel| guess(wheel, ahead).ok().flatten())
        .collect();
    // The pool reads by (wheel, image path): which entry, which digest.
    let mut origin: BTreeMap<(PathBuf, String), (String, Digest)> = BTreeMap::new();
    let mut keyed = Vec::new();
    for guess in &guesses {
        let listing = guess
            .sources
            .iter()
            .map(|(_, image, digest)| (image.clone(), digest.clone()))
            .collect();
        let sources: Vec<(PathBuf, String)> = guess
            .sources
            .iter()
            .map(|(name, image, digest)| {
                let at = (guess.wheel.clone(), image.clone());
                origin.insert(at, (name.clone(), digest.clone()));
                (guess.wheel.clone(), image.clone())
            })
            .collect();
        keyed.push((key_of(listing, &magic), sources));
    }
    // Two guesses with the same files (one wheel per platform, the same
    // pure-Python part) share a key: compiled once.
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    let groups: Vec<(&str, &[(PathBuf, String)])> = keyed
        .iter()
        .map(|(key, sources)| (key.as_str(), sources.as_slice()))
        .collect();
    // The open wheels, most recently used last: a unit reads one wheel, so
    // one per worker (a big wheel's directory is megabytes) is enough.
    let archives: Mutex<Vec<(PathBuf, zip::ZipArchive<std::fs::File>)>> = Default::default();
    let read = |wheel: &Path, image: &str| -> std::io::Result<Vec<u8>> {
        let (name, digest) = origin
            .get(&(wheel.to_path_buf(), image.to_string()))
            .ok_or_else(|| std::io::Error::other(format!("no wheel holds {image}")))?;
        let mut archives = crate::lock(&archives);
        let used = match archives.iter().position(|(open, _)| open == wheel) {
            Some(at) => archives.remove(at),
            None => {
                if archives.len() > ahead.workers {
                    archives.remove(0);
                }
                (wheel.to_path_buf(), open(wheel)?)
            }
        };
        archives.push(used);
        let archive = &mut archives.last_mut().expect("just pushed").1;
        // Sized once from the directory (a lie only costs regrowth).
        let size = archive.by_index_raw(archive.index_for_name(name).unwrap_or(usize::MAX));
        let size = size.map_or(0, |entry| entry.size().min(SOURCE_LIMIT));
        let mut bytes = Vec::with_capacity(size as usize);
        copy_entry(archive, name, &mut bytes)?;
        // The wheel may have changed since it was keyed.
        if &Digest::of(&bytes) != digest {
            return Err(std::io::Error::other(format!(
                "`{}` changed while it was read",
                wheel.display()
            )));
        }
        Ok(bytes)
    };
    compile_missing(
        ahead.python,
        &groups,
        ahead.store,
        ahead.scratch,
        &read,
        ahead.workers,
        ahead.enough,
    )
}

/// A wheel's `.py` files that install below site-packages, with digests:
/// None when the wheel can't be read as one (left to the install).
fn guess(wheel: &Path, ahead: &Ahead) -> std::io::Result<Option<Guess>> {
    let mut archive = open(wheel)?;
    if archive.len() > ENTRIES_LIMIT {
        return Ok(None);
    }
    let site = ahead.site_packages.trim_matches('/');
    let mut sources = Vec::new();
    for index in 0..archive.len() {
        let name = archive
            .name_for_index(index)
            .unwrap_or_default()
            .to_string();
        if name.ends_with('/') || !name.ends_with(".py") {
            continue;
        }
        let below = match local_wheels::place(&name) {
            Place::SitePackages(below) => below.to_string(),
            Place::Elsewhere => continue,
            Place::Climbs => return Ok(None),
        };
        let image = format!("/{site}/{below}");
        if !ahead.tests && in_tests_dir(&image, site) {
            continue;
        }
        // Streamed: no source is held (a wheel's biggest are megabytes).
        let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
        copy_entry(&mut archive, &name, &mut hashing)?;
        sources.push((name, image, hashing.finish().1));
    }
    Ok((!sources.is_empty()).then(|| Guess {
        wheel: wheel.to_path_buf(),
        sources,
    }))
}

fn open(wheel: &Path) -> std::io::Result<zip::ZipArchive<std::fs::File>> {
    zip::ZipArchive::new(std::fs::File::open(wheel)?).map_err(std::io::Error::other)
}

/// Copies one entry into `out`, refused past [`SOURCE_LIMIT`] bytes.
fn copy_entry(
    archive: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let entry = archive.by_name(name).map_err(std::io::Error::other)?;
    if std::io::copy(&mut entry.take(SOURCE_LIMIT + 1), out)? > SOURCE_LIMIT {
        return Err(std::io::Error::other(format!("`{name}` is too large")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{guess, Ahead};
    use crate::layers::bytecode::wheels::WheelStore;
    use crate::layers::local_wheels;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicBool;

    const SITE: &str = "/usr/local/lib/python3.13/site-packages";

    fn wheel(dir: &Path, file: &str, entries: &[(&str, &str)]) -> PathBuf {
        let path = dir.join(file);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, body) in entries {
            zip.start_file(*name, stored).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    #[test]
    fn a_guess_is_the_pinned_wheels_py_files_where_they_install() {
        let dir = tempfile::tempdir().unwrap();
        let links = dir.path().join("wheels");
        std::fs::create_dir(&links).unwrap();
        let files = [
            ("demo/__init__.py", "X = 1\n"),
            ("demo/tests/test_x.py", "def test(): pass\n"),
            ("demo/data.txt", "not python\n"),
            ("demo-1.0.data/purelib/extra.py", "Y = 2\n"),
            ("demo-1.0.data/scripts/tool.py", "print()\n"),
            ("demo-1.0.dist-info/RECORD", ""),
        ];
        let pinned = wheel(&links, "demo-1.0-py3-none-any.whl", &files);
        wheel(&links, "demo-0.9-py3-none-any.whl", &files);
        wheel(&links, "other-1.0-py3-none-any.whl", &files);
        wheel(
            &links,
            "demo-1.0-cp313-cp313-musllinux_1_2_x86_64.whl",
            &files,
        );
        let climbing = wheel(&links, "bad-1.0-py3-none-any.whl", &[("../evil.py", "")]);
        let requirements = dir.path().join("requirements.txt");
        std::fs::write(&requirements, "# pinned\ndemo==1.0\nbad==1.0\n").unwrap();
        let store = WheelStore::in_cache(dir.path());
        let find_links = [
            links.to_string_lossy().into_owned(),
            "https://x.invalid/".into(),
        ];
        let never = AtomicBool::new(false);
        let wheels = local_wheels::pinned(
            std::slice::from_ref(&requirements),
            &find_links,
            "x86_64-manylinux_2_36",
            "3.13",
        );
        let ahead = |tests| Ahead {
            python: Path::new("python3.13"),
            wheels: &wheels,
            site_packages: SITE,
            tests,
            store: &store,
            scratch: dir.path(),
            workers: 1,
            enough: &never,
        };
        assert_eq!(wheels, vec![climbing.clone(), pinned.clone()]);
        let images = |tests| {
            let found = guess(&pinned, &ahead(tests)).unwrap().expect("a guess");
            found
                .sources
                .into_iter()
                .map(|(_, image, _)| image)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            images(false),
            vec![
                format!("{SITE}/demo/__init__.py"),
                format!("{SITE}/extra.py")
            ]
        );
        assert_eq!(images(true).len(), 3);
        assert!(guess(&climbing, &ahead(false)).unwrap().is_none());
    }
}
