//! uv projects as users have them: `slipway init` in the project, build onto
//! the runnable python:3.13-slim stand-in, run the image rootless (`umoci
//! unpack --rootless`, `unshare -r -m` + chroot) and ask the app over
//! loopback; then edit one line and rebuild: only the project (or app)
//! layers are built again, the dependencies' layers are reused.
//!
//! Offline: every lock is made here against target/wheelhouse (which
//! scripts/wheelhouse fills, hatchling and Django included).

mod common;

use common::fixtures::{repo_root, run_ok, tools_missing, wheelhouse};
use common::registry::free_port;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOOLS: &[&str] = &["uv", "umoci", "unshare", "chroot", "sh"];

/// Everything a case needs: wheels, the base, a CPython 3.13, a work dir.
struct Setup {
    wheels: PathBuf,
    base: PathBuf,
    python: PathBuf,
    work: tempfile::TempDir,
}

impl Setup {
    fn new() -> Option<Setup> {
        if tools_missing(TOOLS) {
            return None;
        }
        let wheels = wheelhouse()?;
        let base = repo_root().join("target/runnable-base/layout");
        if !base.join("index.json").is_file() {
            run_ok(
                Command::new("python3")
                    .arg(repo_root().join("vendor-test-images/make-runnable-base"))
                    .arg("--out")
                    .arg(&base),
            );
        }
        let Some(python) = common::tools::find_python313() else {
            assert!(!common::fixtures::in_ci(), "no CPython 3.13 found");
            eprintln!("skipping: no CPython 3.13");
            return None;
        };
        Some(Setup {
            wheels,
            base,
            python,
            work: tempfile::tempdir().unwrap(),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `uv lock` against the wheelhouse only.
    fn lock(&self, dir: &Path) {
        common::fixtures::uv_lock_offline(dir, &self.python, &self.wheels);
    }

    /// `slipway init DIR`: the recipe it wrote.
    fn init(&self, dir: &Path) -> String {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_slipway"))
                .arg("init")
                .arg(dir),
        );
        std::fs::read_to_string(dir.join("slipway.toml")).unwrap()
    }

    /// Builds `recipe` into `<dir>/image`; the `--json` report.
    fn build(&self, recipe: &Path, out: &Path) -> Value {
        let out = run_ok(
            Command::new(env!("CARGO_BIN_EXE_slipway"))
                .arg("build")
                .arg(recipe)
                .arg("--base-layout")
                .arg(&self.base)
                .arg("--oci-layout")
                .arg(out)
                .arg("--offline")
                .arg("--find-links")
                .arg(&self.wheels)
                .arg("--python")
                .arg(&self.python)
                .arg("--cache-dir")
                .arg(self.dir("cache"))
                .arg("--json")
                .env("SOURCE_DATE_EPOCH", "1700000000"),
        );
        serde_json::from_slice(&out.stdout).expect("--json report")
    }

    /// Builds, runs the image and GETs `path`: the build report and the answer.
    fn build_and_ask(&self, recipe: &Path, path: &str) -> (Value, String) {
        let image = self.dir("image");
        let _ = std::fs::remove_dir_all(&image);
        let report = self.build(recipe, &image);
        (report, self.run_and_ask(&image, path))
    }

    fn run_and_ask(&self, image: &Path, path: &str) -> String {
        let bundle = self.dir("bundle");
        let _ = std::fs::remove_dir_all(&bundle);
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:latest", image.display()))
                .arg(&bundle),
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let port = free_port();
        let process = &config["process"];
        let args: Vec<String> = process["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().replace("8000", &port.to_string()))
            .collect();
        let env: Vec<&str> = process["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let script = format!(
            "cd {} && exec env -i {} {}\n",
            quote(process["cwd"].as_str().unwrap_or("/")),
            env.iter().map(|e| quote(e)).collect::<Vec<_>>().join(" "),
            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        );
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("dev")).unwrap();
        let log = std::fs::File::create(self.dir("app.log")).unwrap();
        let app = App(spawn_in_image(&rootfs, &script, log));
        let started = Instant::now();
        loop {
            if let Some(answer) = http_get(port, path) {
                drop(app);
                return answer;
            }
            let log = std::fs::read_to_string(self.dir("app.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "no answer on port {port}; the app said:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The app's process group, ended when dropped.
struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let pid = self.0.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status();
        let _ = self.0.wait();
    }
}

/// Runs `script` with the image's /bin/sh in a user + mount namespace, the
/// root file system read-only (as demo/run does) but for a tmpfs on /tmp,
/// as a container runtime's writable layer would give (gunicorn needs one).
fn spawn_in_image(rootfs: &Path, script: &str, log: std::fs::File) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new("unshare")
        .args(["-r", "-m", "sh", "-c"])
        .arg(
            "set -e; mount --rbind /dev \"$1/dev\"; mount --bind \"$1\" \"$1\"; \
             mount -o remount,bind,ro \"$1\"; mount -t tmpfs tmpfs \"$1/tmp\"; exec chroot \"$1\" /bin/sh -c \"$2\"",
        )
        .arg("sh")
        .arg(rootfs)
        .arg(script)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("unshare")
}

/// A plain HTTP/1.0 GET on loopback: the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then_some(())
        .filter(|_| head.split_whitespace().nth(1) == Some("200"))?;
    Some(body.to_string())
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Replaces `from` with `to` in `file` (a one-line edit).
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from} not in {}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

/// `kind → built?` of the new layers of the report's only platform.
fn built(report: &Value) -> Vec<(String, bool)> {
    report["platforms"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "base")
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                !l["reused"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn kinds(report: &Value) -> Vec<String> {
    built(report).into_iter().map(|(k, _)| k).collect()
}

/// After a one-line edit: exactly `rebuilt` are built, every other new layer is reused.
fn assert_only_rebuilt(report: &Value, rebuilt: &[&str]) {
    for (kind, was_built) in built(report) {
        assert_eq!(
            was_built,
            rebuilt.contains(&kind.as_str()),
            "layer {kind}: built={was_built}, expected only {rebuilt:?} rebuilt: {report}"
        );
    }
}

/// The new layers of a packaged project with dependencies, bottom to top.
const PROJECT_KINDS: [&str; 4] = [
    "site-packages",
    "site-packages-bytecode",
    "project",
    "project-bytecode",
];

const FASTAPI_MAIN: &str = "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n\
    @app.get(\"/\")\ndef root():\n    return {\"message\": \"hello\"}\n";

#[test]
fn packaged_fastapi_project_on_hatchling_gets_a_project_layer() {
    let Some(s) = Setup::new() else { return };
    let dir = s.dir("hello-api");
    write(
        &dir,
        &[
            (
                "pyproject.toml",
                "[project]\nname = \"hello-api\"\nversion = \"0.1.0\"\nrequires-python = \">=3.13\"\n\
                 dependencies = [\"fastapi\", \"uvicorn\"]\n\n\
                 [build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n",
            ),
            ("src/hello_api/__init__.py", ""),
            ("src/hello_api/main.py", FASTAPI_MAIN),
        ],
    );
    s.lock(&dir);
    let recipe = s.init(&dir);
    // The wheel carries the code: no [app] copy of it as well.
    assert!(recipe.contains("\nproject = \".\""), "{recipe}");
    assert!(!recipe.contains("\n[app]"), "{recipe}");
    assert!(recipe.contains("hello_api.main:app"), "{recipe}");

    let (report, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("\"hello\""), "{answer}");
    assert_eq!(kinds(&report), PROJECT_KINDS);
    let project_layer = &report["platforms"][0]["layers"][4];
    assert!(
        project_layer["uncompressed_size"].as_u64().unwrap() < 64 * 1024,
        "the project layer holds the project only: {project_layer}"
    );

    edit(
        &dir.join("src/hello_api/main.py"),
        "\"hello\"",
        "\"hello again\"",
    );
    let (report, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("hello again"), "{answer}");
    assert_only_rebuilt(&report, &["project", "project-bytecode"]);
}

#[test]
fn uv_workspace_member_with_its_sibling_as_a_wheel() {
    let Some(s) = Setup::new() else { return };
    let root = s.dir("ws");
    common::fixtures::write_uv_workspace(&root);
    s.lock(&root);

    // At the root (no [project] of its own): the member holding the app.
    let recipe = s.init(&root);
    assert!(recipe.contains("package = \"backend\""), "{recipe}");
    assert!(recipe.contains("backend.web:app"), "{recipe}");
    let (report, answer) = s.build_and_ask(&root.join("slipway.toml"), "/");
    assert!(answer.contains("\"hello\""), "{answer}");
    assert_eq!(kinds(&report), PROJECT_KINDS);

    // A one-line edit in the sibling member: only the project layers.
    edit(
        &root.join("packages/greeting/src/greeting/__init__.py"),
        "\"hello\"",
        "\"howdy\"",
    );
    let (report, answer) = s.build_and_ask(&root.join("slipway.toml"), "/");
    assert!(answer.contains("howdy"), "{answer}");
    assert_only_rebuilt(&report, &["project", "project-bytecode"]);

    // In the member: the lock is found at the workspace root.
    let member = root.join("packages/backend");
    let recipe = s.init(&member);
    assert!(recipe.contains("\nproject = \".\""), "{recipe}");
    assert!(!recipe.contains("\n[app]"), "{recipe}");
    let (report, answer) = s.build_and_ask(&member.join("slipway.toml"), "/");
    assert!(answer.contains("howdy"), "{answer}");
    assert_only_rebuilt(&report, &[]);

    // A root recipe naming no member says which ones there are.
    std::fs::write(
        root.join("bad.toml"),
        "base = \"python:3.13-slim\"\n[python]\nproject = \".\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(root.join("bad.toml"))
        .arg("--base-layout")
        .arg(&s.base)
        .arg("--oci-layout")
        .arg(s.dir("bad"))
        .args(["--offline", "--python"])
        .arg(&s.python)
        .arg("--cache-dir")
        .arg(s.dir("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backend, greeting") || stderr.contains("greeting, backend"),
        "{stderr}"
    );
    assert!(stderr.contains("package = "), "{stderr}");
    assert!(!stderr.contains("./."), "{stderr}");
    assert!(!s.dir("bad").exists());
}

#[test]
fn django_project_served_by_gunicorn() {
    let Some(s) = Setup::new() else { return };
    let dir = s.dir("mysite");
    write(
        &dir,
        &[
            (
                "pyproject.toml",
                "[project]\nname = \"mysite\"\nversion = \"0.1.0\"\nrequires-python = \">=3.13,<3.14\"\n\
                 dependencies = [\"django\", \"gunicorn\"]\n",
            ),
            (
                "manage.py",
                "#!/usr/bin/env python\nimport os\nimport sys\n\nif __name__ == \"__main__\":\n    \
                 os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\")\n    \
                 from django.core.management import execute_from_command_line\n    \
                 execute_from_command_line(sys.argv)\n",
            ),
            ("mysite/__init__.py", ""),
            (
                "mysite/settings.py",
                "SECRET_KEY = \"test-only\"\nDEBUG = False\nALLOWED_HOSTS = [\"*\"]\n\
                 ROOT_URLCONF = \"mysite.urls\"\nINSTALLED_APPS = []\nDATABASES = {}\n",
            ),
            (
                "mysite/urls.py",
                "from django.http import JsonResponse\nfrom django.urls import path\n\n\n\
                 def hello(request):\n    return JsonResponse({\"site\": \"mysite\"})\n\n\n\
                 urlpatterns = [path(\"\", hello)]\n",
            ),
            (
                "mysite/wsgi.py",
                "import os\n\nfrom django.core.wsgi import get_wsgi_application\n\n\
                 os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\")\n\
                 application = get_wsgi_application()\n",
            ),
        ],
    );
    s.lock(&dir);
    let recipe = s.init(&dir);
    assert!(recipe.contains("\"mysite.wsgi:application\""), "{recipe}");
    assert!(
        recipe.contains("DJANGO_SETTINGS_MODULE = \"mysite.settings\""),
        "{recipe}"
    );
    assert!(recipe.contains("ports = [\"8000/tcp\"]"), "{recipe}");
    assert!(recipe.contains("python:3.13-slim"), "{recipe}");
    assert!(!recipe.contains("NOTE:"), "{recipe}");

    let (report, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("\"mysite\""), "{answer}");
    assert_eq!(
        kinds(&report),
        [
            "site-packages",
            "site-packages-bytecode",
            "app",
            "app-bytecode"
        ]
    );
    edit(&dir.join("mysite/urls.py"), "\"mysite\"", "\"edited\"");
    let (report, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("edited"), "{answer}");
    assert_only_rebuilt(&report, &["app", "app-bytecode"]);
}

#[test]
fn flask_project_started_by_its_procfile() {
    let Some(s) = Setup::new() else { return };
    let dir = s.dir("flaskr");
    write(
        &dir,
        &[
            (
                "pyproject.toml",
                "[project]\nname = \"flaskr\"\nversion = \"0.1.0\"\nrequires-python = \"==3.13.*\"\n\
                 dependencies = [\"flask\", \"gunicorn\"]\n",
            ),
            (
                "Procfile",
                "web: gunicorn web:app --workers 1 --bind 0.0.0.0:$PORT\n",
            ),
            (
                "web.py",
                "from flask import Flask\n\napp = Flask(__name__)\n\n\n\
                 @app.get(\"/\")\ndef root():\n    return {\"from\": \"procfile\"}\n",
            ),
            ("static/logo.txt", "no python here\n"),
        ],
    );
    s.lock(&dir);
    let recipe = s.init(&dir);
    assert!(
        recipe.contains(
            "cmd = [\"gunicorn\", \"web:app\", \"--workers\", \"1\", \"--bind\", \"0.0.0.0:8000\"]"
        ),
        "{recipe}"
    );
    let (_, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("procfile"), "{answer}");
    edit(&dir.join("web.py"), "\"procfile\"", "\"edited\"");
    let (report, answer) = s.build_and_ask(&dir.join("slipway.toml"), "/");
    assert!(answer.contains("edited"), "{answer}");
    assert_only_rebuilt(&report, &["app", "app-bytecode"]);
}

/// A local find-links dir: `tinylib` 1.0 as a wheel, 2.0 as an sdist only.
fn tinylib_links(s: &Setup) -> PathBuf {
    let links = s.dir("links");
    for version in ["1.0", "2.0"] {
        let src = s.dir(&format!("tinylib-{version}"));
        write(
            &src,
            &[
                (
                    "pyproject.toml",
                    &format!(
                        "[project]\nname = \"tinylib\"\nversion = \"{version}\"\n\
                         [build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n"
                    ),
                ),
                ("src/tinylib/__init__.py", &format!("VERSION = \"{version}\"\n")),
            ],
        );
        let kind = if version == "1.0" {
            "--wheel"
        } else {
            "--sdist"
        };
        run_ok(
            Command::new("uv")
                .args(["build", "--quiet", kind, "--offline", "--python"])
                .arg(&s.python)
                .arg("--find-links")
                .arg(&s.wheels)
                .arg("--out-dir")
                .arg(&links)
                .arg(&src),
        );
    }
    links
}

#[test]
fn a_dependency_held_back_by_wheels_only_is_named_and_its_sdist_builds() {
    let Some(s) = Setup::new() else { return };
    let links = tinylib_links(&s);
    let dir = s.dir("held");
    write(
        &dir,
        &[
            ("requirements.txt", "flask\ngunicorn\ntinylib\n"),
            (
                "app.py",
                "from flask import Flask\nimport tinylib\n\napp = Flask(__name__)\n\n\n\
                 @app.get(\"/\")\ndef root():\n    return {\"tinylib\": tinylib.VERSION, \"n\": 1}\n",
            ),
        ],
    );
    let recipe = s.init(&dir).replace(
        "\n[python]\n",
        &format!(
            "\n[python]\nfind_links = [{:?}]\n",
            links.display().to_string()
        ),
    );
    let path = dir.join("slipway.toml");
    std::fs::write(&path, &recipe).unwrap();

    // Wheels only: 1.0 is installed, and the report says 2.0 needs an sdist.
    let (report, answer) = s.build_and_ask(&path, "/");
    assert!(answer.contains("\"1.0\""), "{answer}");
    let held = &report["platforms"][0]["held_back"];
    assert_eq!(held[0]["name"], "tinylib", "{report}");
    assert_eq!(held[0]["wheels_only"], "1.0", "{report}");
    assert_eq!(held[0]["with_sdists"], "2.0", "{report}");

    // allow_sdist: 2.0 is built from its sdist, and no warning.
    edit(&path, "# allow_sdist = true", "allow_sdist = true");
    let (report, answer) = s.build_and_ask(&path, "/");
    assert!(answer.contains("\"2.0\""), "{answer}");
    assert!(
        report["platforms"][0].get("held_back").is_none(),
        "{report}"
    );

    // A one-line edit: the app layers only (the sdist is not built again).
    edit(&dir.join("app.py"), "\"n\": 1", "\"n\": 2");
    let (report, answer) = s.build_and_ask(&path, "/");
    assert!(
        answer.contains("\"n\":2") || answer.contains("\"n\": 2"),
        "{answer}"
    );
    assert_only_rebuilt(&report, &["app", "app-bytecode"]);
}
