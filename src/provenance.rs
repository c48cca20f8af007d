//! Where an image came from, as OCI manifest annotations: the source
//! repository, revision and version (a tag on that revision), from git when
//! the app's dir is in a git work tree. `assemble` adds `created` and the
//! base's name and digest; the recipe's `[image] annotations` override all.
//!
//! The destination's tag is deliberately not used: pushing the same build
//! under two tags must give one digest.

use crate::recipe::Recipe;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const VERSION: &str = "org.opencontainers.image.version";

/// The dir whose git work tree describes a build of `recipe`: the app's
/// source, else the recipe's dir.
fn source_dir(recipe: &Recipe) -> PathBuf {
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

/// The first line git prints, or None when git is missing or fails (or
/// could not find a repository from `dir`, see [`may_be_in_git`]).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    run_git(OsStr::new("git"), dir, args)
}

/// [`git`] with a given program; it is not started at all when git could
/// not find a repository from `dir` (a process start costs milliseconds on
/// every build, and a build asks up to four questions).
fn run_git(program: &OsStr, dir: &Path, args: &[&str]) -> Option<String> {
    if !may_be_in_git(dir, |name| std::env::var_os(name)) {
        return None;
    }
    let out = Command::new(program)
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

/// Whether git started in `dir` could find a repository: false only when
/// `GIT_DIR` and `GIT_WORK_TREE` are unset (`env` reads the environment) and
/// neither `dir` nor any dir above it (as given and with symlinks resolved,
/// which is what git walks) holds a `.git` (dir, file or link) or looks like
/// a bare repository (`HEAD` and `refs`). When unsure (a path that cannot be
/// resolved), true: git then says for itself.
fn may_be_in_git(dir: &Path, env: impl Fn(&str) -> Option<OsString>) -> bool {
    if ["GIT_DIR", "GIT_WORK_TREE"]
        .iter()
        .any(|name| env(name).is_some())
    {
        return true;
    }
    let (Ok(given), Ok(resolved)) = (std::path::absolute(dir), std::fs::canonicalize(dir)) else {
        return true;
    };
    let exists = |path: PathBuf| path.symlink_metadata().is_ok();
    [given, resolved].iter().any(|dir| {
        dir.ancestors().any(|above| {
            exists(above.join(".git")) || (exists(above.join("HEAD")) && exists(above.join("refs")))
        })
    })
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

    /// `git -C dir ARGS` (committing at 1700000000) must succeed; its stdout.
    fn git_ok(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .env("GIT_COMMITTER_DATE", "2023-11-14T22:13:20Z")
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn the_default_epoch_is_the_commit_time_of_head() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(commit_time(dir.path()), None);
        let git = |args: &[&str]| git_ok(dir.path(), args);
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

    /// A script standing in for git that counts its runs in `count`.
    fn counting_git(dir: &Path, count: &Path) -> PathBuf {
        let script = dir.join("fake-git");
        let text = format!("#!/bin/sh\necho x >> '{}'\necho answer\n", count.display());
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        script
    }

    #[test]
    fn git_is_not_started_where_it_could_find_no_repository() {
        let tools = tempfile::tempdir().unwrap();
        let count = tools.path().join("count");
        let fake = counting_git(tools.path(), &count);
        let runs = || {
            std::fs::read_to_string(&count)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir(&app).unwrap();
        let repo_above = app
            .ancestors()
            .any(|a| a.join(".git").exists() || a.join("HEAD").exists());
        if repo_above {
            eprintln!(
                "skipped: the temp dir `{}` is in a repository",
                app.display()
            );
            return;
        }
        let no_env = |_: &str| None;
        assert!(!may_be_in_git(&app, no_env));
        assert_eq!(
            run_git(fake.as_os_str(), &app, &["rev-parse", "HEAD"]),
            None
        );
        assert_eq!(runs(), 0, "git was started outside any repository");
        assert!(annotations(&app).is_empty());
        assert_eq!(commit_time(&app), None);
        // A dir that cannot be resolved: git says so itself.
        assert!(may_be_in_git(&app.join("missing"), no_env));
        // GIT_DIR or GIT_WORK_TREE can point anywhere: git decides.
        for name in ["GIT_DIR", "GIT_WORK_TREE"] {
            let env = |n: &str| (n == name).then(|| OsString::from("/elsewhere"));
            assert!(may_be_in_git(&app, env), "{name}");
        }
        // A `.git` above (a file, as in a linked work tree or a submodule)
        // or a bare repository above: git is asked.
        std::fs::write(dir.path().join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(may_be_in_git(&app, no_env));
        assert_eq!(
            run_git(fake.as_os_str(), &app, &["rev-parse", "HEAD"]).as_deref(),
            Some("answer")
        );
        assert_eq!(runs(), 1);
        std::fs::remove_file(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir(dir.path().join("refs")).unwrap();
        assert!(may_be_in_git(&app, no_env));
    }

    #[test]
    fn a_dir_below_a_work_tree_still_gets_its_revision() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let app = repo.join("services/app");
        std::fs::create_dir_all(&app).unwrap();
        let git = |args: &[&str]| git_ok(&repo, args);
        git(&["init", "-q"]);
        std::fs::write(app.join("app.py"), "").unwrap();
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "x"]);
        git(&["tag", "v1.2.3"]);
        git(&[
            "remote",
            "add",
            "origin",
            "https://tok@git.example/team/app.git",
        ]);
        let head = git(&["rev-parse", "HEAD"]);
        // Through a link from outside the repository too: git walks up from
        // where the link leads.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&app, &link).unwrap();
        for dir in [&app, &link] {
            assert_eq!(commit_time(dir), Some(1_700_000_000), "{}", dir.display());
            let found = annotations(dir);
            assert_eq!(found.get(REVISION), Some(&head), "{}", dir.display());
            assert_eq!(found.get(VERSION).map(String::as_str), Some("v1.2.3"));
            assert_eq!(
                found.get(SOURCE).map(String::as_str),
                Some("https://git.example/team/app.git")
            );
        }
    }
}
