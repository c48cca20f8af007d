//! A bundle as one tar file (`slipway bundle --out FILE.tar`): the bundle
//! dir's files, sorted, with fixed times and owners, so the same bundle
//! gives the same bytes.

use std::fs::File;
use std::io;
use std::path::Path;

/// Writes every file under `dir` into the tar `dest` (temp + rename).
pub fn pack(dir: &Path, dest: &Path) -> io::Result<()> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(parent)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(temp.as_file()));
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walk stays in its root");
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if entry.file_type().is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, rel, io::empty())?;
        } else if entry.file_type().is_file() {
            let file = File::open(entry.path())?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(file.metadata()?.len());
            builder.append_data(&mut header, rel, file)?;
        }
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    temp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Unpacks the tar `source` into `dir` (regular files and dirs only, no
/// paths outside `dir`).
pub fn unpack(source: &Path, dir: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(io::BufReader::new(File::open(source)?));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        // `unpack_in` refuses `..` and absolute paths.
        entry.unpack_in(dir)?;
    }
    Ok(())
}
