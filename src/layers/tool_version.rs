//! `TOOL --version`, remembered across builds per binary: a no-change build
//! should not spend a process start (tens of milliseconds; seconds behind a
//! pyenv shim) to learn what it learned last time.
//!
//! A binary is known by its resolved path, inode, size and modification time;
//! scripts (`#!`, e.g. pyenv shims that pick a binary at run time) are asked
//! every time.

use crate::digest::Digest;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `program --version` (trimmed stdout), from `memo_dir` when this exact
/// binary was asked before.
pub fn version(program: &Path, memo_dir: &Path) -> std::io::Result<String> {
    let memo = which(program)
        .and_then(|binary| identity(&binary))
        .map(|id| memo_dir.join(Digest::of(id.as_bytes()).hex()));
    if let Some(known) = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()) {
        return Ok(known);
    }
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if let (Some(memo), true) = (memo, output.status.success() && !version.is_empty()) {
        // Best effort: a missing memo only costs the next build a process start.
        let _ = std::fs::create_dir_all(memo_dir).and_then(|()| {
            let mut file = tempfile::NamedTempFile::new_in(memo_dir)?;
            std::io::Write::write_all(&mut file, version.as_bytes())?;
            file.persist(&memo).map_err(|e| e.error)
        });
    }
    Ok(version)
}

/// Where `program` runs from: itself if it has a `/`, else the first
/// executable of that name on `PATH`.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// Resolved path, device, inode, size and mtime of a compiled binary; None
/// for scripts.
fn identity(binary: &Path) -> Option<String> {
    let resolved = std::fs::canonicalize(binary).ok()?;
    let mut head = [0u8; 2];
    std::fs::File::open(&resolved)
        .ok()?
        .read_exact(&mut head)
        .ok()?;
    if &head == b"#!" {
        return None;
    }
    let m = resolved.metadata().ok()?;
    Some(format!(
        "{}\0{}\0{}\0{}\0{}.{}",
        resolved.display(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_asked_once_and_scripts_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        // A compiled binary (a copy of GNU echo): asked once, then remembered.
        let binary = dir.path().join("echo");
        std::fs::copy("/bin/echo", &binary).unwrap();
        let first = version(&binary, &memo).unwrap();
        assert!(first.contains("echo"), "{first}");
        let memos: Vec<_> = std::fs::read_dir(&memo).unwrap().flatten().collect();
        assert_eq!(memos.len(), 1);
        std::fs::write(memos[0].path(), "remembered").unwrap();
        assert_eq!(version(&binary, &memo).unwrap(), "remembered");
        // A script that counts its runs: never remembered.
        let script = dir.path().join("tool");
        let count = dir.path().join("count");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho x >> {}\necho tool 1.0\n", count.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        for _ in 0..2 {
            assert_eq!(version(&script, &memo).unwrap(), "tool 1.0");
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    }
}
