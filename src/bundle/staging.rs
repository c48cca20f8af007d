//! Where `slipway bundle` writes: a new bundle is made beside its place and
//! renamed into it at the end, an existing one is updated in place (only
//! what is missing is fetched; `bundle.json` is rewritten last), a `.tar` is
//! unpacked into the cache, updated there and packed again. A failed run
//! leaves no half-made bundle behind.

use super::{archive, FileRecord, MANIFEST_FILE};
use crate::cache::Cache;
use crate::error::{io, Error, ErrorKind, Result};
use crate::layout::write_atomic;
use crate::progress::Log;
use std::collections::BTreeSet;
use std::path::Path;
use tempfile::TempDir;

pub(super) struct Staging {
    /// Where the bundle is made: None when updated in place.
    dir: Option<TempDir>,
    as_tar: bool,
}

impl Staging {
    pub(super) fn open(cache: &Cache, out: &Path) -> Result<Staging> {
        let as_tar = out.extension().is_some_and(|x| x == "tar");
        if as_tar {
            let dir = cache
                .temp_dir("bundle-out")
                .map_err(io("cannot create a temp dir in the cache"))?;
            if out.is_file() {
                archive::unpack(out, dir.path())
                    .map_err(io(format!("cannot read `{}`", out.display())))?;
            }
            return Ok(Staging {
                dir: Some(dir),
                as_tar,
            });
        }
        let is_bundle = out.join(MANIFEST_FILE).is_file();
        let foreign = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) && !is_bundle;
        if foreign {
            return Err(Error::new(
                ErrorKind::Input,
                format!("`{}` is neither empty nor a bundle", out.display()),
            )
            .with_hint("pass a new or empty dir, or a bundle to update"));
        }
        if is_bundle {
            return Ok(Staging { dir: None, as_tar });
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create `{}`", parent.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(".slipway-bundle-")
            .tempdir_in(parent)
            .map_err(io(format!(
                "cannot create a temp dir in `{}`",
                parent.display()
            )))?;
        Ok(Staging {
            dir: Some(dir),
            as_tar,
        })
    }

    /// The dir the bundle's files are written into.
    pub(super) fn work_dir<'a>(&'a self, out: &'a Path) -> &'a Path {
        self.dir.as_ref().map_or(out, |d| d.path())
    }

    /// Puts the finished bundle at `out`: packed, renamed, or (in place)
    /// already there.
    pub(super) fn finish(self, out: &Path, log: &Log) -> Result<()> {
        let Some(dir) = self.dir else {
            return Ok(());
        };
        if self.as_tar {
            log.step(&format!("writing `{}`", out.display()));
            return archive::pack(dir.path(), out)
                .map_err(io(format!("cannot write `{}`", out.display())));
        }
        let cannot = || io(format!("cannot move the bundle into `{}`", out.display()));
        // A temp dir is 0700; a bundle dir is as any other dir made here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(cannot())?;
        // An empty dir the user made for it gives way (checked in `open`).
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(cannot())?;
        }
        std::fs::rename(dir.path(), out).map_err(cannot())?;
        let _ = dir.keep();
        Ok(())
    }
}

pub(super) fn write_file(work: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let path = work.join(rel);
    write_atomic(&path, bytes).map_err(io(format!("cannot write `{}`", path.display())))
}

/// Removes files in `dir` whose names are not in `keep` (stale wheels,
/// blobs, requirements, interrupted temp files).
pub(super) fn prune(dir: &Path, keep: &BTreeSet<String>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())
                .map_err(io(format!("cannot remove `{}`", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Every file of the bundle (but `bundle.json`) with its sha256, sorted.
pub(super) fn list_files(work: &Path) -> Result<Vec<FileRecord>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(work).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(|e| io("cannot list the bundle")(e.into()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(work)
            .expect("walk stays in its root")
            .to_string_lossy()
            .into_owned();
        if rel == MANIFEST_FILE {
            continue;
        }
        let (sha256, size) = crate::digest::digest_file(entry.path())
            .map_err(io(format!("cannot read `{}`", entry.path().display())))?;
        files.push(FileRecord {
            path: rel,
            sha256,
            size,
        });
    }
    Ok(files)
}
