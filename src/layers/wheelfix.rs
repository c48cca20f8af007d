//! Fixes to what uv leaves in a staging prefix, so it can move into the image:
//! console-script shebangs pointing at the image's interpreter, and `RECORD`
//! files kept true (hashes and sizes of rewritten scripts, no lines for files
//! that are left out).

use super::tarball::Needles;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
    move |source| (path.to_path_buf(), source)
}

/// `sha256=<urlsafe base64, no padding>` as written in `RECORD`.
pub fn record_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// Rewrites a script's interpreter line to `#!<interpreter>` when it runs a
/// Python: either uv's `#!/abs/path/python3.x [args]`, or its `/bin/sh`
/// launcher for long or spaced paths (`'''exec' '<path>' [args] "$0" "$@"`).
/// Other scripts (shell, `#!/usr/bin/env python`, binaries) give `None`.
pub fn rewrite_shebang(script: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    let launcher = b"#!/bin/sh\n'''exec' '";
    let (args, rest) = if let Some(after) = script.strip_prefix(launcher.as_slice()) {
        let mut lines = after.splitn(3, |&b| b == b'\n');
        let exec_line = lines.next()?;
        let closing = lines.next()?;
        let rest = lines.next().unwrap_or(b"");
        if closing != b"' '''" {
            return None;
        }
        let exec_line = std::str::from_utf8(exec_line).ok()?;
        let (path, tail) = exec_line.split_once("' ")?;
        let args = tail.strip_suffix("\"$0\" \"$@\"")?.trim();
        if !is_python(path) {
            return None;
        }
        (args.to_string(), rest)
    } else {
        let body = script.strip_prefix(b"#!")?;
        let end = body.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&body[..end])
            .ok()?
            .trim_end_matches('\r');
        let (path, args) = line
            .trim_start()
            .split_once(' ')
            .unwrap_or((line.trim_start(), ""));
        if !is_python(path) {
            return None;
        }
        (args.trim().to_string(), &body[end + 1..])
    };
    let mut out = format!("#!{interpreter}").into_bytes();
    if !args.is_empty() {
        out.push(b' ');
        out.extend_from_slice(args.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(rest);
    Some(out)
}

fn is_python(path: &str) -> bool {
    let path = Path::new(path);
    path.is_absolute()
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python"))
}

/// What changed in the staging dir, as paths relative to it.
#[derive(Default, Debug)]
pub struct Changes {
    /// Rewritten files: new `(hash, size)`.
    pub rewritten: BTreeMap<PathBuf, (String, u64)>,
    /// Files left out of the layer.
    pub dropped: BTreeSet<PathBuf>,
}

/// Rewrites `record` (the text of `<site_dir>/<name>.dist-info/RECORD`, whose
/// paths are relative to `site_rel`, the site-packages dir relative to the
/// staging root): drops lines of dropped files and updates rewritten ones.
/// Returns `None` when nothing changes.
pub fn fix_record(record: &str, site_rel: &Path, changes: &Changes) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(record.len());
    for line in record.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let Some((path, _)) = split_record_line(content) else {
            out.push_str(line);
            continue;
        };
        let staged = lexical_join(site_rel, Path::new(&path));
        match staged {
            Some(p) if changes.dropped.contains(&p) => changed = true,
            Some(p) if changes.rewritten.contains_key(&p) => {
                let (hash, size) = &changes.rewritten[&p];
                let new = format!("{},{hash},{size}\n", quote_csv(&path));
                changed |= new != line;
                out.push_str(&new);
            }
            _ => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// `(path, rest)` of a RECORD line, undoing CSV quoting of the path.
fn split_record_line(line: &str) -> Option<(String, &str)> {
    if let Some(quoted) = line.strip_prefix('"') {
        let mut path = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    path.push('"');
                    chars.next();
                } else {
                    return Some((path, quoted[i + 1..].strip_prefix(',')?));
                }
            } else {
                path.push(c);
            }
        }
        None
    } else {
        let (path, rest) = line.split_once(',')?;
        Some((path.to_string(), rest))
    }
}

fn quote_csv(path: &str) -> String {
    if path.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", path.replace('"', "\"\""))
    } else {
        path.to_string()
    }
}

/// `base/rel` normalised without touching the disk; `None` if it climbs out
/// of the staging root or `rel` is absolute.
fn lexical_join(base: &Path, rel: &Path) -> Option<PathBuf> {
    if rel.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in base.components().chain(rel.components()) {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Paths listed in a RECORD (first CSV field, quotes honoured).
pub fn record_paths(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        if let Some(rest) = line.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        out.push('"');
                        chars.next();
                    } else {
                        break;
                    }
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            line.split(',').next().unwrap_or_default().to_string()
        }
    })
}

/// `a/b/../../c` relative to `base` → a normalised image path.
pub fn join_relative(base: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Rewrites console scripts, drops installer leftovers and fixes RECORDs, on disk.
/// An error names the file it was about.
pub fn fix_staging(
    staging: &Path,
    site_rel: Option<&Path>,
    interpreter: &str,
) -> Result<Changes, (PathBuf, std::io::Error)> {
    let mut changes = Changes::default();
    let bin = staging.join("bin");
    if bin.is_dir() {
        let mut scripts: Vec<_> = std::fs::read_dir(&bin)
            .map_err(io_error(&bin))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        scripts.sort();
        for script in scripts {
            if !starts_with_shebang(&script).map_err(io_error(&script))? {
                continue;
            }
            let bytes = read_capped(&script).map_err(io_error(&script))?;
            if let Some(new) = rewrite_shebang(&bytes, interpreter) {
                if new != bytes {
                    std::fs::write(&script, &new).map_err(io_error(&script))?;
                }
                let rel = script.strip_prefix(staging).expect("under staging");
                changes
                    .rewritten
                    .insert(rel.to_path_buf(), (record_hash(&new), new.len() as u64));
            }
        }
    }
    let Some(site_rel) = site_rel else {
        return Ok(changes);
    };
    let site = staging.join(site_rel);
    let mut records = Vec::new();
    for entry in walkdir::WalkDir::new(&site).sort_by_file_name() {
        let entry = entry.map_err(|e| (site.clone(), e.into()))?;
        let rel = entry.path().strip_prefix(staging).expect("under staging");
        let in_dist_info = rel
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n.to_string_lossy().ends_with(".dist-info"));
        if !in_dist_info || !entry.file_type().is_file() {
            continue;
        }
        match entry.file_name().to_str() {
            Some("uv_cache.json") => {
                changes.dropped.insert(rel.to_path_buf());
            }
            Some("direct_url.json") => {
                let file_url = Needles::new([&b"file://"[..]]);
                if file_contains_any(entry.path(), &file_url) {
                    changes.dropped.insert(rel.to_path_buf());
                }
            }
            Some("RECORD") => records.push(entry.path().to_path_buf()),
            _ => {}
        }
    }
    // RECORD lines for bytecode in `__pycache__` dirs go too.
    for record in records {
        let original = read_capped(&record).map_err(io_error(&record))?;
        let original = String::from_utf8(original).map_err(|e| {
            io_error(&record)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        let without_bytecode = drop_bytecode_lines(&original);
        let fixed = fix_record(&without_bytecode, site_rel, &changes).unwrap_or(without_bytecode);
        if fixed != original {
            std::fs::write(&record, fixed).map_err(io_error(&record))?;
        }
    }
    Ok(changes)
}

fn drop_bytecode_lines(record: &str) -> String {
    record
        .split_inclusive('\n')
        .filter(|line| {
            let path = line.split(',').next().unwrap_or("");
            !(path.contains("__pycache__/") || path.ends_with(".pyc"))
        })
        .collect()
}

/// Files slipway edits in memory (console scripts, RECORDs) larger than this
/// are refused rather than read whole: a hostile wheel can hold gigabytes.
const EDITED_FILE_CAP: u64 = 64 << 20;

pub(super) fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(EDITED_FILE_CAP + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > EDITED_FILE_CAP {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, too large to rewrite",
                EDITED_FILE_CAP >> 20
            ),
        ));
    }
    Ok(bytes)
}

fn starts_with_shebang(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 2];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    Ok(head[..n] == *b"#!")
}

/// Whether the file holds any of the needles, read in bounded chunks (an
/// installed file may be gigabytes).
pub(super) fn file_contains_any(path: &Path, needles: &Needles) -> bool {
    use std::io::Read;
    let (Ok(mut file), Some(mut scan)) = (std::fs::File::open(path), needles.scan()) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = file.read(&mut buf) {
        scan.feed(&buf[..n]);
        if scan.found {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# -*- coding: utf-8 -*-\nimport sys\nfrom uvicorn.main import main\n";

    #[test]
    fn plain_shebangs_are_rewritten() {
        let script = format!("#!/root/.pyenv/versions/3.13.0/bin/python3.13\n{BODY}");
        let out = rewrite_shebang(script.as_bytes(), "/usr/local/bin/python3.13").unwrap();
        assert_eq!(
            out,
            format!("#!/usr/local/bin/python3.13\n{BODY}").as_bytes()
        );
        let with_args = format!("#!/opt/py/bin/python -E\n{BODY}");
        let out = rewrite_shebang(with_args.as_bytes(), "/usr/bin/python3").unwrap();
        assert_eq!(out, format!("#!/usr/bin/python3 -E\n{BODY}").as_bytes());
    }

    #[test]
    fn sh_launchers_are_rewritten() {
        let script = format!(
            "#!/bin/sh\n'''exec' '/tmp/with space/python3.13' \"$0\" \"$@\"\n' '''\n{BODY}"
        );
        let out = rewrite_shebang(script.as_bytes(), "/usr/local/bin/python3.13").unwrap();
        assert_eq!(
            out,
            format!("#!/usr/local/bin/python3.13\n{BODY}").as_bytes()
        );
    }

    #[test]
    fn other_scripts_are_left_alone() {
        for script in [
            "#!/bin/sh\necho hi\n",
            "#!/usr/bin/env python3\nprint(1)\n",
            "no shebang",
            "\x7fELF...",
        ] {
            assert_eq!(
                rewrite_shebang(script.as_bytes(), "/usr/bin/python3"),
                None,
                "{script}"
            );
        }
    }

    #[test]
    fn records_drop_and_update_lines() {
        let record = "../../../bin/uvicorn,sha256=old,321\n\
                      uvicorn/__init__.py,sha256=abc,10\n\
                      \"odd,name.py\",sha256=def,5\n\
                      demo-1.0.dist-info/uv_cache.json,sha256=x,40\n\
                      demo-1.0.dist-info/RECORD,,\n";
        let site = Path::new("lib/python3.13/site-packages");
        let mut changes = Changes::default();
        changes
            .rewritten
            .insert(PathBuf::from("bin/uvicorn"), ("sha256=new".into(), 300));
        changes
            .dropped
            .insert(site.join("demo-1.0.dist-info/uv_cache.json"));
        changes.dropped.insert(site.join("odd,name.py"));
        let out = fix_record(record, site, &changes).unwrap();
        assert_eq!(
            out,
            "../../../bin/uvicorn,sha256=new,300\n\
             uvicorn/__init__.py,sha256=abc,10\n\
             demo-1.0.dist-info/RECORD,,\n"
        );
        assert_eq!(fix_record(&out, site, &changes), None, "already fixed");
    }

    #[test]
    fn record_hash_is_urlsafe_unpadded() {
        // Known value: sha256 of "" in urlsafe base64 without padding.
        assert_eq!(
            record_hash(b""),
            "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
