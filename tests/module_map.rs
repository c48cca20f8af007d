//! The README's "Layout of the code" names every module under `src/`: a
//! module added or renamed without the map being updated fails here.

use std::path::Path;

/// Every module name under `src/` (files and dirs), without `lib`, `main`
/// and test-only files.
fn modules(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs")
            && !["lib", "main", "mod"].contains(&name.as_str())
            && !name.ends_with("_tests")
        {
            out.push(name);
        }
    }
}

#[test]
fn the_readme_module_map_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("## Layout of the code")
        .expect("the README has a Layout of the code section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut all = Vec::new();
    modules(&root.join("src"), &mut all);
    all.sort();
    all.dedup();
    assert!(all.len() > 40, "{all:?}");
    let missing: Vec<&String> = all
        .iter()
        .filter(|m| !section.contains(&format!("`{m}`")) && !section.contains(&format!("/{m}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "the README's module map does not name: {missing:?}"
    );
}

/// The top-level module a file under `src/` belongs to (`layers/store.rs` →
/// `layers`).
fn top_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::x` and `crate::{x, y}` in `text` (tests left out).
fn crate_refs(text: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut refs = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            refs.extend(group.split(',').map(|part| ident(part.trim())));
        } else {
            refs.push(ident(rest));
        }
    }
    refs
}

/// Stages import only the stages below them: the graph of top-level
/// modules (the `cli` front and test files aside) has no circle.
#[test]
fn no_import_circles_between_top_level_modules() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in walk(&src) {
        files.push(entry);
    }
    let tops: BTreeSet<String> = files
        .iter()
        .map(|f| top_of(f.strip_prefix(&src).unwrap()))
        .filter(|t| !["lib", "main", "cli"].contains(&t.as_str()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let top = top_of(file.strip_prefix(&src).unwrap());
        if !tops.contains(&top) || file.to_string_lossy().ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for target in crate_refs(&text) {
            if target != top && tops.contains(&target) {
                edges.entry(top.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        edges.get("build").is_some_and(|e| e.contains("resolve")),
        "the scan finds imports: {edges:?}"
    );
    // A circle shows as a module reaching itself.
    for start in &tops {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                assert!(
                    next != start,
                    "import circle: {} → {start}",
                    path.join(" → ")
                );
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}
