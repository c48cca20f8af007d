use super::*;

#[test]
fn finds_assigned_app_objects() {
    assert_eq!(
        assigned_name("app = FastAPI(title='x')", "FastAPI("),
        Some("app".into())
    );
    assert_eq!(
        assigned_name("api: FastAPI = FastAPI()", "FastAPI("),
        Some("api".into())
    );
    assert_eq!(assigned_name("x = make(FastAPI())", "FastAPI("), None);
    assert_eq!(assigned_name("return Flask(__name__)", "Flask("), None);
}

#[test]
fn reads_requirement_names_and_versions() {
    assert_eq!(requirement_name("FastAPI[all]>=0.1"), "fastapi");
    assert_eq!(requirement_name("typing_extensions"), "typing-extensions");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(python_version(dir.path(), Some("==3.12.*")), "3.12");
    assert_eq!(python_version(dir.path(), Some(">=3.10,<3.14")), "3.13");
    assert_eq!(python_version(dir.path(), Some(">=3.14,<4.0")), "3.14");
    assert_eq!(python_version(dir.path(), None), DEFAULT_PYTHON);
    std::fs::write(dir.path().join(".python-version"), "3.11.4\n").unwrap();
    assert_eq!(python_version(dir.path(), None), "3.11");
}

#[test]
fn detects_a_flask_factory_in_src_and_scripts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/web")).unwrap();
    std::fs::write(
        dir.path().join("src/web/__init__.py"),
        "from flask import Flask\n\ndef create_app():\n    app = Flask(__name__)\n    return app\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"web\"\ndependencies = [\"flask\"]\n[project.scripts]\nweb-admin = \"web:admin\"\n",
    )
    .unwrap();
    let p = detect(dir.path()).unwrap();
    assert_eq!(p.dependencies, Dependencies::ProjectUnlocked);
    assert_eq!(p.source, "src");
    assert!(matches!(&p.launch, Launch::Wsgi { target, .. } if target == "web:create_app()"));
    let text = render(&p, None);
    assert!(
        text.contains("gunicorn is not among the dependencies"),
        "{text}"
    );
    assert!(text.parse::<toml::Table>().is_ok(), "{text}");
}
