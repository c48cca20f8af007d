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
