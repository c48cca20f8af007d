//! `init` in a uv workspace: at the root, the member to build (the one that
//! holds an app or a console script, else the one no other member depends
//! on); in a member, the lock at the workspace root.

use crate::layers::project::{find_lock_root, lock_members, normalise_name};
use std::path::{Path, PathBuf};

/// A member of the workspace rooted at `dir`, when `dir` is a workspace root
/// whose own `[project]` (if any) holds no app: (name, member dir).
/// `app_file` is the app found under `dir` (possibly inside a member).
pub fn member_to_build(dir: &Path, app_file: Option<&str>) -> Option<(String, PathBuf)> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml")).ok()?;
    let doc: toml::Table = text.parse().ok()?;
    doc.get("tool")
        .and_then(|t| t.get("uv"))
        .and_then(|u| u.get("workspace"))?;
    let root = std::fs::canonicalize(dir).ok()?;
    let members: Vec<(String, PathBuf)> = lock_members(&root)
        .ok()?
        .into_iter()
        .filter(|(_, d)| std::fs::canonicalize(d).is_ok_and(|d| d != root))
        .collect();
    if let Some(file) = app_file {
        let holder = members.iter().find(|(_, d)| {
            std::fs::canonicalize(d)
                .ok()
                .and_then(|d| d.strip_prefix(&root).ok().map(Path::to_path_buf))
                .is_some_and(|rel| Path::new(file).starts_with(rel))
        });
        match holder {
            Some(m) => return Some(m.clone()),
            None if doc.contains_key("project") => return None,
            None => {}
        }
    }
    let has_app =
        |d: &Path| super::detect_here(d).is_ok_and(|p| !matches!(p.launch, super::Launch::Unknown));
    if let Some(m) = members.iter().find(|(_, d)| has_app(d)) {
        return Some(m.clone());
    }
    // The member no other member depends on (the top of the graph).
    let depended_on: Vec<String> = members
        .iter()
        .flat_map(|(_, d)| dependency_names(d))
        .collect();
    members
        .iter()
        .find(|(n, _)| !depended_on.contains(&normalise_name(n)))
        .or(members.first())
        .cloned()
}

fn dependency_names(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("pyproject.toml")) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    doc.get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .map(|d| normalise_name(&super::requirement_name(d)))
        .collect()
}

/// The workspace root above `dir`, relative (`../..`), when `dir` is one of
/// its members (its `uv.lock` is there, not beside `dir`).
pub fn root_above(dir: &Path) -> Option<String> {
    let own = std::fs::canonicalize(dir).ok()?;
    let root = find_lock_root(dir).filter(|root| *root != own)?;
    let depth = own.strip_prefix(&root).ok()?.components().count();
    Some(vec![".."; depth].join("/"))
}
