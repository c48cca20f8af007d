use super::*;
use std::fs;
use std::os::unix::fs::symlink;

fn write(root: &Path, rel: &str, body: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

fn run(root: &Path, destination: &str, excludes: &[&str]) -> Result<Vec<Entry>, AppError> {
    let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
    collect(&AppSource {
        source_dir: root,
        destination,
        excludes: &excludes,
        owner: Owner {
            uid: 1000,
            gid: 1000,
        },
    })
    .map(|collected| collected.entries)
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn walks_sorted_under_the_destination_with_parents_first() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "main.py", "print(1)\n");
    write(dir.path(), "pkg/z.py", "");
    write(dir.path(), "pkg/a.py", "");
    write(dir.path(), "pkg-data.txt", "");
    let entries = run(dir.path(), "/srv/app", &[]).unwrap();
    assert_eq!(
        paths(&entries),
        [
            "srv/app",
            "srv/app/main.py",
            "srv/app/pkg",
            "srv/app/pkg-data.txt",
            "srv/app/pkg/a.py",
            "srv/app/pkg/z.py"
        ]
    );
    assert_eq!(entries[0].owner.uid, 1000);
    assert_eq!(entries[0].kind, EntryKind::Dir);
    let main = &entries[1];
    assert!(
        matches!(&main.kind, EntryKind::File { source, size: 9, listed: Some(_) } if *source == dir.path().join("main.py")),
        "{main:?}"
    );
}

#[test]
fn modes_are_normalised() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "run.sh", "");
    write(dir.path(), "data.txt", "");
    write(dir.path(), "odd", "");
    fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        dir.path().join("data.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(dir.path().join("odd"), fs::Permissions::from_mode(0o4710)).unwrap();
    fs::create_dir(dir.path().join("d")).unwrap();
    fs::set_permissions(dir.path().join("d"), fs::Permissions::from_mode(0o700)).unwrap();
    let entries = run(dir.path(), "/app", &[]).unwrap();
    let mode = |p: &str| entries.iter().find(|e| e.path == p).unwrap().mode;
    assert_eq!(mode("app"), 0o755);
    assert_eq!(mode("app/d"), 0o755);
    assert_eq!(mode("app/run.sh"), 0o755);
    assert_eq!(mode("app/odd"), 0o755);
    assert_eq!(mode("app/data.txt"), 0o644);
}

#[test]
fn default_excludes_apply_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        ".git/config",
        ".env",
        ".env.local",
        "pkg/__pycache__/m.cpython-313.pyc",
        "pkg/m.pyc",
        ".venv/bin/python",
        "sub/venv/x",
        "certs/server.key",
        "pkg/m.py",
        ".envrc",
    ] {
        write(dir.path(), rel, "");
    }
    let entries = run(dir.path(), "/app", &[]).unwrap();
    assert_eq!(
        paths(&entries),
        [
            "app",
            "app/.envrc",
            "app/certs",
            "app/pkg",
            "app/pkg/m.py",
            "app/sub"
        ]
    );
}

#[test]
fn dockerignore_and_recipe_excludes_use_docker_semantics() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "README.md",
        "docs/guide.md",
        "docs/keep.md",
        "tests/test_a.py",
        "src/tests/test_b.py",
        "build/out.bin",
        "data/a.csv",
        "data/deep/b.csv",
        "main.py",
    ] {
        write(dir.path(), rel, "");
    }
    write(
        dir.path(),
        ".dockerignore",
        "# comment\n*.md\n/tests\nbuild/\ndocs\n!docs/keep.md\n**/*.csv\n.dockerignore\n",
    );
    let entries = run(dir.path(), "/app", &["main.py", "!README.md"]).unwrap();
    // `!README.md` comes before `.dockerignore`'s `*.md`, which wins.
    assert_eq!(
        paths(&entries),
        [
            "app",
            "app/data",
            "app/data/deep",
            "app/docs",
            "app/docs/keep.md",
            "app/src",
            "app/src/tests",
            "app/src/tests/test_b.py"
        ]
    );
    let docs = entries.iter().find(|e| e.path == "app/docs").unwrap();
    // Below the destination, so the app's like every other dir there.
    assert_eq!((docs.mode, docs.owner.uid), (0o755, 1000));
}

#[test]
fn dockerignore_can_reinclude_a_default_exclude() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".env.example", "");
    write(dir.path(), ".env", "");
    write(dir.path(), ".dockerignore", "!.env.example\n");
    let entries = run(dir.path(), "/app", &[]).unwrap();
    assert_eq!(
        paths(&entries),
        ["app", "app/.dockerignore", "app/.env.example"]
    );
}

#[test]
fn symlinks_inside_are_kept_others_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    write(&root, "pkg/real.py", "");
    fs::create_dir(tmp.path().join("outside")).unwrap();
    symlink("real.py", root.join("pkg/alias.py")).unwrap();
    symlink("../pkg", root.join("pkg/loop")).unwrap();
    symlink("missing", root.join("dangling")).unwrap();
    let entries = run(&root, "/app", &[]).unwrap();
    let alias = entries
        .iter()
        .find(|e| e.path == "app/pkg/alias.py")
        .unwrap();
    assert_eq!(
        alias.kind,
        EntryKind::Symlink {
            target: "real.py".into()
        }
    );
    assert_eq!(alias.mode, 0o777);
    assert!(entries.iter().any(|e| e.path == "app/pkg/loop"));
    assert!(entries.iter().any(|e| e.path == "app/dangling"));

    symlink("../../outside", root.join("pkg/escape")).unwrap();
    assert!(matches!(
        run(&root, "/app", &[]),
        Err(AppError::SymlinkOutside { .. })
    ));
    fs::remove_file(root.join("pkg/escape")).unwrap();

    // Lexically inside, but through a link to the root it leaves the tree.
    symlink(".", root.join("here")).unwrap();
    symlink("../here/../outside", root.join("pkg/sneaky")).unwrap();
    assert!(matches!(
        run(&root, "/app", &[]),
        Err(AppError::SymlinkOutside { .. })
    ));
    fs::remove_file(root.join("pkg/sneaky")).unwrap();

    symlink("/etc/passwd", root.join("abs")).unwrap();
    assert!(matches!(
        run(&root, "/app", &[]),
        Err(AppError::AbsoluteSymlink { .. })
    ));
    // ...unless excluded.
    assert!(run(&root, "/app", &["abs"]).is_ok());
}

#[test]
fn special_files_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    match run(dir.path(), "/app", &[]) {
        Err(AppError::SpecialFile { kind, .. }) => assert_eq!(kind, "FIFO"),
        other => panic!("{other:?}"),
    }
    assert!(run(dir.path(), "/app", &["pipe"]).is_ok());
    fs::remove_file(&fifo).unwrap();

    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(dir.path().join(name), "").unwrap();
    assert!(matches!(
        run(dir.path(), "/app", &[]),
        Err(AppError::NonUtf8Name { .. })
    ));
}

#[test]
fn destination_and_source_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.py", "");
    assert!(matches!(
        run(dir.path(), "app", &[]),
        Err(AppError::BadDestination(_))
    ));
    assert!(matches!(
        run(dir.path(), "/app/../etc", &[]),
        Err(AppError::BadDestination(_))
    ));
    for system in ["/", "//", "/usr/local/bin", "/etc/", "/tmp", "/usr"] {
        assert!(
            matches!(
                run(dir.path(), system, &[]),
                Err(AppError::SystemDestination(..))
            ),
            "{system}"
        );
    }
    for whiteout in ["/.wh..wh..opq", "/app/.wh.x"] {
        assert!(matches!(
            run(dir.path(), whiteout, &[]),
            Err(AppError::WhiteoutDestination(_))
        ));
    }
    assert_eq!(
        paths(&run(dir.path(), "/tmp/app", &[]).unwrap()),
        ["tmp/app", "tmp/app/m.py"],
        "no parent of the destination: the base's /tmp keeps its mode"
    );
    assert!(matches!(
        run(&dir.path().join("nope"), "/app", &[]),
        Err(AppError::MissingSource(_))
    ));
    assert!(matches!(
        run(dir.path(), "/app", &["[oops"]),
        Err(AppError::BadPattern { .. })
    ));
}

#[test]
fn python_sources_lists_py_files_with_image_paths() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "main.py", "");
    write(dir.path(), "pkg/mod.py", "");
    write(dir.path(), "pkg/data.json", "");
    symlink("main.py", dir.path().join("alias.py")).unwrap();
    let entries = run(dir.path(), "/app", &[]).unwrap();
    assert_eq!(
        python_sources(&entries),
        [
            (dir.path().join("main.py"), "/app/main.py".to_string()),
            (dir.path().join("pkg/mod.py"), "/app/pkg/mod.py".to_string()),
        ]
    );
}

#[test]
fn whiteout_names_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bin/.wh.python3", "");
    let err = run(dir.path(), "/app", &[]).unwrap_err();
    assert!(matches!(err, AppError::WhiteoutName { .. }), "{err:?}");
    assert!(err.to_string().contains("bin/.wh.python3"), "{err}");
    assert!(
        run(dir.path(), "/app", &["bin/.wh.*"]).is_ok(),
        "excluded: fine"
    );
}

#[test]
fn default_secret_excludes_ignore_case_and_can_be_reincluded() {
    let dir = tempfile::tempdir().unwrap();
    for secret in [
        ".ENV",
        "ID_RSA",
        "keys/id_ed25519.pub",
        "server.PEM",
        ".git-credentials",
        ".npmrc",
        ".aws/credentials",
        ".docker/config.json",
        ".kube/config",
        ".ssh/deploy_key",
        "sub/.Pgpass",
        ".bash_history",
    ] {
        write(dir.path(), secret, "secret");
    }
    write(dir.path(), "main.py", "");
    write(dir.path(), "id_utils.py", "");
    write(dir.path(), ".docker/README.md", "");
    let entries = run(dir.path(), "/app", &[]).unwrap();
    assert_eq!(
        paths(&entries),
        [
            "app",
            "app/.docker",
            "app/.docker/README.md",
            "app/.kube",
            "app/id_utils.py",
            "app/keys",
            "app/main.py",
            "app/sub"
        ]
    );
    let entries = run(dir.path(), "/app", &["!server.PEM"]).unwrap();
    assert!(paths(&entries).contains(&"app/server.PEM"));
}

#[test]
fn hard_links_from_outside_the_tree_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write(&tree, "inside.py", "x = 1\n");
    write(&tree, "twice_a.py", "y = 2\n");
    fs::hard_link(tree.join("twice_a.py"), tree.join("twice_b.py")).unwrap();
    fs::hard_link(tree.join("inside.py"), dir.path().join("outside.py")).unwrap();
    let collected = collect(&AppSource {
        source_dir: &tree,
        destination: "/app",
        excludes: &[],
        owner: Owner::default(),
    })
    .unwrap();
    assert_eq!(collected.warnings.len(), 1, "{:?}", collected.warnings);
    assert!(collected.warnings[0].contains("inside.py"));
    assert!(collected.warnings[0].contains("1 of its 2 links"));
}
