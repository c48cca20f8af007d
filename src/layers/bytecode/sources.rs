//! Python sources read out of layer tars (a base image's, or slipway's own
//! cached layers): the files a later layer leaves in place (whiteouts
//! applied), streamed to a scratch dir one by one.
//!
//! The tars come from outside: names are only map keys, never paths to write
//! (each file lands in the scratch dir under a number), `..` is refused,
//! links are not followed, and files and counts are bounded.

use crate::oci::{tar_reader, Whiteout};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest source read (the stdlib's biggest `.py` is well under 1 MiB);
/// larger ones are left out, so they are not compiled.
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;
/// Most sources read from one image (the stdlib has ~2,000; a big
/// dependency set ~20,000).
pub const MAX_SOURCES: usize = 500_000;

/// Image path (no leading `/`) → the file on disk holding its bytes.
pub type Sources = BTreeMap<String, PathBuf>;

/// The regular files whose image path (no leading `/`) `wanted` accepts,
/// as the stack of `layers` (gzip'd or plain tars, bottom first) leaves
/// them, copied into `out_dir`.
pub fn extract(
    layers: &[PathBuf],
    wanted: &dyn Fn(&str) -> bool,
    out_dir: &Path,
) -> io::Result<Sources> {
    std::fs::create_dir_all(out_dir)?;
    // Image path → (file on disk, index of the layer it came from).
    let mut found: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
    let mut written = 0usize;
    for (index, layer) in layers.iter().enumerate() {
        let mut archive = tar::Archive::new(tar_reader(std::fs::File::open(layer)?)?);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let Some(path) = normalise(&entry.path()?.to_string_lossy()) else {
                continue;
            };
            if apply_whiteout(&mut found, &path, index) {
                continue;
            }
            let kind = entry.header().entry_type();
            // Whatever this entry is, it replaces what was at its path.
            found.remove(&path);
            if kind.is_dir() {
                let below = format!("{path}/");
                found.retain(|p, _| !p.starts_with(&below));
            }
            if !wanted(&path) {
                continue;
            }
            if kind.is_hard_link() {
                let target = entry
                    .link_name()?
                    .and_then(|t| normalise(&t.to_string_lossy()));
                if let Some((file, _)) = target.and_then(|t| found.get(&t).cloned()) {
                    found.insert(path, (file, index));
                }
                continue;
            }
            if !kind.is_file() || entry.size() > MAX_SOURCE_BYTES {
                continue;
            }
            written += 1;
            if written > MAX_SOURCES {
                return Err(io::Error::other(format!(
                    "more than {MAX_SOURCES} Python sources in the image's layers"
                )));
            }
            let file = out_dir.join(format!("{written:06}.py"));
            let mut out = std::fs::File::create(&file)?;
            let copied = io::copy(&mut (&mut entry).take(MAX_SOURCE_BYTES), &mut out)?;
            if copied != entry.size() {
                return Err(io::Error::other(format!(
                    "`{path}` in a layer is shorter than its header says"
                )));
            }
            found.insert(path, (file, index));
        }
    }
    Ok(found.into_iter().map(|(p, (f, _))| (p, f)).collect())
}

/// A tar entry's path without `./`, leading or trailing `/`; None when it
/// climbs (`..`) or is empty.
fn normalise(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Applies `path` if it is a whiteout (`.wh.NAME`, or the opaque
/// `.wh..wh..opq` hiding the dir's files from lower layers).
fn apply_whiteout(
    found: &mut BTreeMap<String, (PathBuf, usize)>,
    path: &str,
    layer: usize,
) -> bool {
    let Some(whiteout) = Whiteout::of(path) else {
        return false;
    };
    found.retain(|p, (_, from)| !whiteout.hides(p, *from < layer));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, body, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            // Raw name bytes: `set_path` refuses `..`, a hostile tar need not.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *body).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn later_layers_win_whiteouts_hide_and_nothing_escapes() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let lower = tar_of(&[
            ("usr/lib/py/a.py", Regular, b"a = 1\n", None),
            ("usr/lib/py/gone.py", Regular, b"", None),
            ("usr/lib/py/pkg/m.py", Regular, b"m = 1\n", None),
            ("usr/lib/py/opq/x.py", Regular, b"x = 1\n", None),
            ("usr/lib/py/link.py", Regular, b"l = 1\n", None),
            ("usr/lib/py/../../../etc/evil.py", Regular, b"evil\n", None),
            ("other/skip.py", Regular, b"", None),
        ]);
        let upper = tar_of(&[
            ("./usr/lib/py/a.py", Regular, b"a = 2\n", None),
            ("usr/lib/py/.wh.gone.py", Regular, b"", None),
            ("usr/lib/py/.wh.pkg", Regular, b"", None),
            ("usr/lib/py/opq/.wh..wh..opq", Regular, b"", None),
            ("usr/lib/py/opq/y.py", Regular, b"y = 1\n", None),
            ("usr/lib/py/hard.py", Link, b"", Some("usr/lib/py/a.py")),
            ("usr/lib/py/link.py", Symlink, b"", Some("/etc/passwd")),
            ("usr/lib/py/d.py", Directory, b"", None),
        ]);
        let (l, u) = (dir.path().join("l.tar"), dir.path().join("u.tar"));
        std::fs::write(&l, lower).unwrap();
        std::fs::write(&u, upper).unwrap();
        let out = dir.path().join("out");
        let found = extract(&[l, u], &|p| p.starts_with("usr/lib/py/"), &out).unwrap();
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "usr/lib/py/a.py",
                "usr/lib/py/hard.py",
                "usr/lib/py/opq/y.py"
            ]
        );
        assert_eq!(
            std::fs::read(&found["usr/lib/py/a.py"]).unwrap(),
            b"a = 2\n"
        );
        assert_eq!(found["usr/lib/py/hard.py"], found["usr/lib/py/a.py"]);
        for file in found.values() {
            assert!(file.starts_with(&out), "{}", file.display());
        }
        assert!(!dir.path().join("etc").exists());
    }
}
