//! Where an image came from, as OCI manifest annotations: the source
//! repository, revision and version (a tag on that revision), from git when
//! the app's dir is in a git work tree. `assemble` adds `created` and the
//! base's name and digest; the recipe's `[image] annotations` override all.
//!
//! The destination's tag is deliberately not used: pushing the same build
//! under two tags must give one digest.

use crate::recipe::Recipe;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const VERSION: &str = "org.opencontainers.image.version";

/// The dir whose git work tree describes a build of `recipe`: the app's
/// source, else the recipe's dir.
fn source_dir(recipe: &Recipe) -> std::path::PathBuf {
    recipe
        .app
        .source
        .clone()
        .or_else(|| recipe.file.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| ".".into())
}

/// The default `SOURCE_DATE_EPOCH`: the commit time of HEAD when the app
/// (or the recipe) is in a git work tree with a commit, else 0. Still
/// reproducible (the same commit gives the same time) and a created date
/// people recognise.
pub fn default_epoch(recipe: &Recipe) -> u64 {
    commit_time(&source_dir(recipe)).unwrap_or(0)
}

/// The commit time of HEAD of the work tree holding `dir`, if any.
pub fn commit_time(dir: &Path) -> Option<u64> {
    git(dir, &["log", "-1", "--format=%ct", "HEAD"])?
        .parse()
        .ok()
}

/// The annotations for a build of `recipe`.
pub fn for_build(recipe: &Recipe) -> BTreeMap<String, String> {
    let dir = source_dir(recipe);
    let mut out = annotations(&dir);
    // The recipe's own win (and reach the index too).
    out.extend(recipe.image.annotations.clone());
    out
}

/// From git in `dir` (if it is in a work tree with a commit): `revision`
/// (HEAD), `source` (origin's URL) and `version` (a tag pointing at HEAD).
pub fn annotations(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(revision) = git(dir, &["rev-parse", "HEAD"]) {
        out.insert(REVISION.to_string(), revision);
        if let Some(url) = git(dir, &["config", "--get", "remote.origin.url"]) {
            if let Some(source) = source_url(&url) {
                out.insert(SOURCE.to_string(), source);
            }
        }
        if let Some(tag) = git(dir, &["describe", "--tags", "--exact-match", "HEAD"]) {
            out.insert(VERSION.to_string(), tag);
        }
    }
    out
}

/// The first line git prints, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// A remote as the source annotation shows it: scheme, host, port and
/// path only (user info, query and fragment hold tokens); scp-style
/// `user@host:path` becomes `host:path`. None when the remote is neither.
pub fn source_url(remote: &str) -> Option<String> {
    if remote.contains("://") {
        let url = url::Url::parse(remote).ok()?;
        let host = url.host_str().filter(|h| !h.is_empty())?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        return Some(format!("{}://{host}{port}{}", url.scheme(), url.path()));
    }
    // scp-style `[user[:token]@]host:path`: user info ends at the last `@`
    // before the path begins.
    let head_end = remote.find('/').unwrap_or(remote.len());
    let start = remote[..head_end].rfind('@').map_or(0, |i| i + 1);
    let (host, path) = remote[start..].split_once(':')?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let path_ok = !path.is_empty() && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    (host_ok && path_ok).then(|| format!("{host}:{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keeps_scheme_host_and_path_only() {
        let cases = [
            (
                "https://bot:ghp_secret@github.com/team/app.git",
                Some("https://github.com/team/app.git"),
            ),
            (
                "https://github.com/team/app.git?access_token=tok#frag",
                Some("https://github.com/team/app.git"),
            ),
            (
                "ssh://git:pw@git.example:2222/team/app",
                Some("ssh://git.example:2222/team/app"),
            ),
            (
                "git@github.com:team/app.git",
                Some("github.com:team/app.git"),
            ),
            (
                "user:token@host.lan:team/app@v1",
                Some("host.lan:team/app@v1"),
            ),
            (
                "https://github.com/team/app",
                Some("https://github.com/team/app"),
            ),
            ("https://[bad", None),
            ("file:///home/me/app", None),
            ("/home/me/app", None),
            ("not a url", None),
            ("host:", None),
        ];
        for (remote, want) in cases {
            assert_eq!(source_url(remote).as_deref(), want, "{remote}");
        }
    }

    #[test]
    fn the_default_epoch_is_the_commit_time_of_head() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(commit_time(dir.path()), None);
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .env("GIT_COMMITTER_DATE", "2023-11-14T22:13:20Z")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        assert_eq!(commit_time(dir.path()), None, "no commit yet");
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "x"]);
        assert_eq!(commit_time(dir.path()), Some(1_700_000_000));
    }

    #[test]
    fn outside_git_there_is_nothing_to_say() {
        let dir = tempfile::tempdir().unwrap();
        assert!(annotations(dir.path()).is_empty());
    }
}
