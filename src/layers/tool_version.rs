//! What a tool binary answers (`uv --version`, a CPython's version and
//! bytecode magic number), remembered across builds per binary: a no-change
//! build should not spend a process start (tens of milliseconds; seconds
//! behind a pyenv shim) to learn what it learned last time.
//!
//! A binary is known by its resolved path, inode, size and modification time;
//! scripts (`#!`, e.g. pyenv shims that pick a binary at run time) are asked
//! every time.

use crate::digest::Digest;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The memo dir in the cache rooted at `cache_root`.
pub fn memo_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("tool-versions")
}

/// `program --version` (trimmed stdout), from `memo_dir` when this exact
/// binary was asked before.
pub fn version(program: &Path, memo_dir: &Path) -> std::io::Result<String> {
    let memo = Memo::of(program, "--version", Some(memo_dir));
    if let Some(known) = memo.recall() {
        return Ok(known);
    }
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() {
        memo.keep(&version);
    }
    Ok(version)
}

/// Where one answer of one binary is remembered: a file in the memo dir
/// named by the binary's identity and the question, or nowhere (a script,
/// a program not found, no memo dir).
pub struct Memo {
    file: Option<PathBuf>,
}

impl Memo {
    /// The memo of `question` (e.g. the arguments it is asked with) about
    /// `program` in `memo_dir`.
    pub fn of(program: &Path, question: &str, memo_dir: Option<&Path>) -> Memo {
        let file = memo_dir.and_then(|dir| {
            let id = identity(&which(program)?)?;
            let key = format!("{id}\0{question}");
            Some(dir.join(Digest::of(key.as_bytes()).hex()))
        });
        Memo { file }
    }

    /// The answer remembered, if any.
    pub fn recall(&self) -> Option<String> {
        let known = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        (!known.is_empty()).then_some(known)
    }

    /// Remembers `answer` (not an empty one). Best effort: a missing memo
    /// only costs the next build a process start.
    pub fn keep(&self, answer: &str) {
        let Some(file) = self.file.as_ref().filter(|_| !answer.is_empty()) else {
            return;
        };
        let Some(dir) = file.parent() else { return };
        let _ = std::fs::create_dir_all(dir).and_then(|()| {
            let mut temp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut temp, answer.as_bytes())?;
            temp.persist(file).map_err(|e| e.error)
        });
    }

    /// The answer remembered, else what `ask` answers (remembered for next time).
    pub fn answer<E>(&self, ask: impl FnOnce() -> Result<String, E>) -> Result<String, E> {
        if let Some(known) = self.recall() {
            return Ok(known);
        }
        let answer = ask()?;
        self.keep(&answer);
        Ok(answer)
    }
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

    #[test]
    fn a_binary_is_asked_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let memo_dir = dir.path().join("memo");
        // A compiled program (a copy of the shell, not a script) that counts
        // its runs.
        let program = dir.path().join("sh");
        std::fs::copy("/bin/sh", &program).unwrap();
        let count = dir.path().join("count");
        // Asks `question` `times` times; how many runs there were in all.
        let runs_after = |question: &str, memo_dir: Option<&Path>, times: usize| {
            for _ in 0..times {
                let answer = Memo::of(&program, question, memo_dir).answer(|| {
                    let output = Command::new(&program)
                        .arg("-c")
                        .arg(format!("echo x >> '{}'; echo 3.13", count.display()))
                        .output()?;
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    Ok::<_, std::io::Error>(stdout.trim().to_string())
                });
                assert_eq!(answer.unwrap(), "3.13");
            }
            std::fs::read_to_string(&count).map_or(0, |t| t.lines().count())
        };
        let set_mtime = |secs: u64| {
            let file = std::fs::File::options().write(true).open(&program).unwrap();
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            file.set_modified(time).unwrap();
        };
        set_mtime(1_700_000_000);
        let memo = Some(memo_dir.as_path());
        assert_eq!(runs_after("version", memo, 3), 1, "unchanged: asked once");
        assert_eq!(runs_after("magic", memo, 2), 2, "another question");
        set_mtime(1_700_000_001);
        assert_eq!(runs_after("version", memo, 2), 3, "touched: asked again");
        // Another size at the same mtime.
        let mut bytes = std::fs::read(&program).unwrap();
        bytes.push(0);
        std::fs::write(&program, &bytes).unwrap();
        set_mtime(1_700_000_001);
        assert_eq!(runs_after("version", memo, 2), 4, "grown: asked again");
        // Replaced by a file of the same size and mtime (another inode).
        let replacement = dir.path().join("sh.new");
        std::fs::write(&replacement, &bytes).unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&replacement, executable).unwrap();
        std::fs::rename(&replacement, &program).unwrap();
        set_mtime(1_700_000_001);
        assert_eq!(runs_after("version", memo, 2), 5, "replaced: asked again");
        assert_eq!(runs_after("version", None, 2), 7, "no memo dir: every time");
    }
}
