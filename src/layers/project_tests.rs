use super::*;
use crate::error::Hint;

fn project(pyproject: &str) -> Result<Project, ProjectError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
    std::fs::write(dir.path().join("uv.lock"), "version = 1\n").unwrap();
    Project::load(dir.path(), None)
}

#[test]
fn tells_packages_from_virtual_projects() {
    let p = project("[project]\nname = \"app\"\nversion = \"1\"\n").unwrap();
    assert!(!p.is_package);
    let p = project(
        "[project]\nname = \"tool\"\nversion = \"1\"\n[project.scripts]\ntool = \"tool:main\"\n\
         [build-system]\nrequires = [\"uv_build>=0.13,<0.14\"]\nbuild-backend = \"uv_build\"\n",
    )
    .unwrap();
    assert!(p.is_package);
    assert!(!p.needs_build_env());
    let p = project(
        "[project]\nname = \"lib\"\nversion = \"1\"\n\
         [build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n",
    )
    .unwrap();
    assert!(p.needs_build_env());
    assert_eq!(p.build_requires, ["hatchling"]);
    let p = project(
        "[project]\nname = \"lib\"\nversion = \"1\"\n[build-system]\nrequires = []\n\
         [tool.uv]\npackage = false\n",
    )
    .unwrap();
    assert!(!p.is_package);
}

#[test]
fn splits_local_members_from_pinned_requirements() {
    let text = "-e ./packages/lib\nclick==8.5.1 \\\n    --hash=sha256:aa\n./vendor/x\n\
                tzdata==1 ; sys_platform == 'win32'\n";
    let (requirements, local) = split_export(text);
    assert_eq!(local, ["./packages/lib", "./vendor/x"]);
    let entries = requirement_entries(&requirements);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].contains("--hash=sha256:aa"));
    assert!(!entries[1].contains("--hash"));
}

#[test]
fn a_lock_made_by_another_python_says_which() {
    let stale = |locked_for: Option<&str>| ProjectError::Stale {
        root: PathBuf::from("./."),
        target_python: "3.13".into(),
        locked_for: locked_for.map(str::to_string),
    };
    let hint = stale(Some(">=3.11")).hint().unwrap();
    assert!(hint.contains("uv lock --python 3.13"), "{hint}");
    assert!(hint.contains("`.`") && !hint.contains("./."), "{hint}");
    let hint = stale(None).hint().unwrap();
    assert!(!hint.contains("--python"), "{hint}");
}

#[test]
fn missing_lock_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pyproject.toml"), "[project]\nname='a'\n").unwrap();
    let err = Project::load(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("uv.lock"), "{err}");
    assert!(err.hint().unwrap().contains("uv lock"));
}
