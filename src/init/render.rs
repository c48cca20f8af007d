//! The recipe text `init` writes for a detected project, every key explained.

use super::{Dependencies, Launch, Project};
use std::fmt::Write as _;

/// TOML string (basic string, escaped).
fn q(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The recipe text for `project`, every key explained.
pub fn render(project: &Project, base: Option<&str>) -> String {
    let base = base
        .map(str::to_string)
        .unwrap_or_else(|| format!("python:{}-slim", project.python));
    let mut out = String::new();
    render_top(&mut out, project, &base);
    render_python(&mut out, project);
    // `#` comments out the app's keys when the project's wheel carries the code.
    let c = render_app(&mut out, project);
    render_image(&mut out, project, c);
    out
}

/// The top-level keys: base, platforms, destinations.
fn render_top(w: &mut String, project: &Project, base: &str) {
    let _ = writeln!(
        w,
        "# slipway recipe for `{}`, written by `slipway init`.",
        project.name
    );
    let _ = writeln!(
        w,
        "# Build: slipway build slipway.toml --push REGISTRY/REPO:TAG   (or --oci-layout DIR)"
    );
    let _ = writeln!(w, "# Every key is in the README's recipe reference; relative paths are relative to this file.\n");
    let _ = writeln!(w, "# The image to build on: any image with CPython at its usual place (official python images).");
    let _ = writeln!(
        w,
        "# `-slim` (Debian, glibc: manylinux wheels) is the safe choice; `-alpine` (musl:"
    );
    let _ = writeln!(w, "# musllinux wheels) is smaller. Pin a digest (`@sha256:...`) for fully reproducible builds.");
    let _ = writeln!(w, "base = {}\n", q(base));
    let _ = writeln!(
        w,
        "# Platforms to build; wheels are picked per platform, no emulation needed."
    );
    let _ = writeln!(w, "# Add \"linux/arm64\" for an image index with both.");
    let _ = writeln!(w, "platforms = [\"linux/amd64\"]\n");
    let _ = writeln!(
        w,
        "# Where `slipway build` puts the image unless the command line says otherwise:"
    );
    let _ = writeln!(
        w,
        "# push = \"registry.example:5000/team/{}:latest\"",
        project.name
    );
    let _ = writeln!(w, "# oci_layout = \"build/image\"\n");
}

fn render_python(w: &mut String, project: &Project) {
    let _ = writeln!(w, "[python]");
    match &project.dependencies {
        Dependencies::Project => {
            let _ = writeln!(
                w,
                "# A dir with pyproject.toml + uv.lock: the locked dependencies are installed"
            );
            let _ = writeln!(
                w,
                "# (and the project itself when it is a package, with its console scripts)."
            );
            let _ = writeln!(w, "project = \".\"");
            if let Some(package) = &project.package {
                let _ = writeln!(
                    w,
                    "# A uv workspace: the member to build (the others it depends on come as wheels)."
                );
                let _ = writeln!(w, "package = {}", q(package));
            }
            if let Some(root) = &project.workspace_root {
                let _ = writeln!(
                    w,
                    "# A member of the uv workspace at `{root}`: its uv.lock is used."
                );
            }
        }
        Dependencies::ProjectUnlocked => {
            let _ = writeln!(
                w,
                "# pyproject.toml has no uv.lock beside it yet: run `uv lock` first. The locked"
            );
            let _ = writeln!(
                w,
                "# dependencies (and the project itself when it is a package) are installed."
            );
            let _ = writeln!(w, "project = \".\"");
        }
        Dependencies::Requirements(files) => {
            let _ = writeln!(w, "# Requirements files installed into site-packages (pin versions for repeatable builds).");
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            let _ = writeln!(w, "requirements = {}", list(&files));
        }
        Dependencies::None => {
            let _ = writeln!(
                w,
                "# No requirements.txt or pyproject.toml + uv.lock found: no dependencies."
            );
            let _ = writeln!(w, "# requirements = [\"requirements.txt\"]");
        }
    }
    let _ = writeln!(
        w,
        "# Wheels only by default: a package without a wheel for the target is an error."
    );
    let _ = writeln!(w, "# allow_sdist = true");
    let _ = writeln!(w, "# Install from local wheel dirs only (air-gapped): find_links = [\"wheels\"] and offline = true");
    let _ = writeln!(
        w,
        "# Compile .pyc for site-packages and the app (faster start, bigger image)."
    );
    let _ = writeln!(w, "bytecode = true\n");
}

/// The `[app]` table; the comment prefix its keys got ("# " when the
/// project's wheel carries the code).
fn render_app(w: &mut String, project: &Project) -> &'static str {
    let c = if project.installed_as_package() {
        let _ = writeln!(
            w,
            "# The project is a package: its wheel (built from pyproject.toml) puts its code"
        );
        let _ = writeln!(
            w,
            "# in site-packages (its own small layer), so no [app] layer is needed. To copy files in as well:"
        );
        "# "
    } else {
        if project.is_package {
            let _ = writeln!(
                w,
                "# The project is a package (its wheel is installed), but the command runs a"
            );
            let _ = writeln!(
                w,
                "# file outside it, so the app's files are copied in as well."
            );
        }
        ""
    };
    let _ = writeln!(w, "{c}[app]");
    let _ = writeln!(
        w,
        "# The app's files: copied to `destination`; .dockerignore is honoured and .git,"
    );
    let _ = writeln!(
        w,
        "# .env*, caches, virtualenvs and keys are always left out."
    );
    let _ = writeln!(w, "{c}source = {}", q(&project.source));
    let _ = writeln!(w, "{c}destination = \"/app\"");
    let _ = writeln!(w, "# More patterns to leave out (.dockerignore syntax):");
    let _ = writeln!(w, "{c}excludes = [\"tests\", \"*.md\", \"slipway.toml\"]\n");
    c
}

fn render_image(w: &mut String, project: &Project, c: &str) {
    let _ = writeln!(w, "[image]");
    render_launch(w, project);
    let _ = writeln!(w, "# The working directory of the process.");
    let _ = writeln!(w, "{c}workdir = \"/app\"");
    let _ = writeln!(w, "# Environment variables, added to the base's.");
    let mut env = vec![format!("PYTHONUNBUFFERED = {}", q("1"))];
    env.extend(project.env.iter().map(|(k, v)| format!("{k} = {}", q(v))));
    let _ = writeln!(w, "env = {{ {} }}", env.join(", "));
    let _ = writeln!(
        w,
        "# Run as a non-root user (numeric ids also own the new layers' files):"
    );
    let _ = writeln!(w, "# user = \"1000:1000\"");
    let _ = writeln!(
        w,
        "# Config labels and manifest annotations (source, revision, created, base are filled in)."
    );
    let _ = writeln!(
        w,
        "labels = {{ \"org.opencontainers.image.title\" = {} }}",
        q(&project.name)
    );
}

/// What runtimes are told the app listens on.
const PORTS: &str =
    "# Ports the app listens on (documentation for runtimes).\nports = [\"8000/tcp\"]";

fn render_launch(w: &mut String, project: &Project) {
    let _ = match &project.launch {
        Launch::Asgi {
            target,
            framework,
            file,
        } => {
            let cmd = list(&["uvicorn", target, "--host", "0.0.0.0", "--port", "8000"]);
            let server = ("uvicorn", "ASGI", None);
            render_served(w, project, (framework, file), server, &cmd)
        }
        Launch::Wsgi {
            target,
            framework,
            file,
        } => {
            let (settings, cmd) = if project.gunicorn_config {
                (
                    Some("# Settings (bind, workers...) from gunicorn.conf.py."),
                    list(&["gunicorn", "--config", "gunicorn.conf.py", target]),
                )
            } else {
                (None, list(&["gunicorn", "--bind", "0.0.0.0:8000", target]))
            };
            let server = ("gunicorn", "WSGI", settings);
            render_served(w, project, (framework, file), server, &cmd)
        }
        Launch::Script(name) => render_script(w, project, name),
        Launch::Procfile(argv) => {
            let _ = writeln!(w, "# The Procfile's `web:` line ($PORT is 8000).");
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let _ = writeln!(w, "cmd = {}", list(&argv));
            writeln!(w, "{PORTS}")
        }
        Launch::File(file) => {
            let _ = writeln!(
                w,
                "# {file} has a `__main__` guard: run it with the image's Python."
            );
            let file = file.strip_prefix("src/").unwrap_or(file);
            writeln!(w, "cmd = {}", list(&["python", file]))
        }
        Launch::Unknown => {
            let _ = writeln!(
                w,
                "# No app found (FastAPI/Starlette/Flask object, [project.scripts], __main__):"
            );
            writeln!(w, "# cmd = [\"python\", \"main.py\"]")
        }
    };
}

/// A web app run by its server: `(framework, file)` found, `(server,
/// interface, settings note)`, and the command that serves it.
fn render_served(
    w: &mut String,
    project: &Project,
    (framework, file): (&str, &str),
    (server, interface, settings): (&str, &str, Option<&str>),
    cmd: &str,
) -> std::fmt::Result {
    let _ = writeln!(
        w,
        "# {framework} app in {file}, served by {server} (a {interface} server)."
    );
    if !project.declared.is_empty() && !project.declared.iter().any(|d| d == server) {
        let _ = writeln!(w, "# NOTE: {server} is not among the dependencies: add it.");
    }
    if let Some(settings) = settings {
        let _ = writeln!(w, "{settings}");
    }
    let _ = writeln!(w, "cmd = {cmd}");
    writeln!(w, "{PORTS}")
}

/// A console script from `[project.scripts]`, as the entrypoint.
fn render_script(w: &mut String, project: &Project, name: &str) -> std::fmt::Result {
    let _ = writeln!(
        w,
        "# The console script `{name}` from [project.scripts] (installed in the image's bin dir)."
    );
    let others: Vec<&str> = project
        .scripts
        .iter()
        .filter(|s| *s != name)
        .map(String::as_str)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(w, "# Other scripts: {}", others.join(", "));
    }
    let _ = writeln!(
        w,
        "# Setting an entrypoint clears the base's CMD; `cmd` gives default arguments."
    );
    writeln!(w, "entrypoint = {}", list(&[name]))
}
