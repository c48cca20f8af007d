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

/// The annotations for a build of `recipe`.
pub fn for_build(recipe: &Recipe) -> BTreeMap<String, String> {
    let dir = recipe
        .app
        .source
        .clone()
        .or_else(|| recipe.file.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| ".".into());
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
            out.insert(SOURCE.to_string(), without_credentials(&url));
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

/// A remote URL without the user name and password (tokens live there).
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_from_remote_urls() {
        assert_eq!(
            without_credentials("https://bot:ghp_secret@github.com/team/app.git"),
            "https://github.com/team/app.git"
        );
        assert_eq!(
            without_credentials("git@github.com:team/app.git"),
            "git@github.com:team/app.git"
        );
        assert_eq!(
            without_credentials("https://github.com/team/app"),
            "https://github.com/team/app"
        );
    }

    #[test]
    fn outside_git_there_is_nothing_to_say() {
        let dir = tempfile::tempdir().unwrap();
        assert!(annotations(dir.path()).is_empty());
    }
}
