//! `slipway init`: writes a commented recipe for a project dir by looking at
//! what is there — `pyproject.toml` + `uv.lock` (a locked project),
//! `requirements.txt`, an ASGI app (`FastAPI(`, `Starlette(`: run by uvicorn),
//! a WSGI app (`Flask(`: run by gunicorn) or a console script in
//! `[project.scripts]` (the entrypoint). [`detect`] looks, [`render`] writes.

mod frameworks;
mod python;
mod render;
mod workspace;

pub use render::render;

pub use python::DEFAULT_PYTHON;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The recipe's file name in the project dir.
pub const RECIPE_FILE: &str = "slipway.toml";

/// How the dependencies are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dependencies {
    /// `pyproject.toml` + `uv.lock`: `[python] project = "."`.
    Project,
    /// `pyproject.toml` without a lock: the lock must be made first.
    ProjectUnlocked,
    /// Requirements files, relative to the dir.
    Requirements(Vec<String>),
    None,
}

/// How the app is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// `uvicorn module:attr`.
    Asgi {
        target: String,
        framework: &'static str,
        file: String,
    },
    /// `gunicorn module:attr`.
    Wsgi {
        target: String,
        framework: &'static str,
        file: String,
    },
    /// A `[project.scripts]` name.
    Script(String),
    /// `python FILE` (a file with `if __name__ == "__main__"`).
    File(String),
    /// A Procfile's `web:` line.
    Procfile(Vec<String>),
    Unknown,
}

/// What `init` found in the dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    /// `3.13`, from `.python-version` or `requires-python`, else the default.
    pub python: String,
    pub dependencies: Dependencies,
    pub launch: Launch,
    /// The app's source dir relative to the project (`.` or `src`).
    pub source: String,
    /// Names of the dependencies the project states (lowercase), to check
    /// the server is among them.
    pub declared: Vec<String>,
    /// Every `[project.scripts]` name.
    pub scripts: Vec<String>,
    /// pyproject.toml has a `[build-system]`: the project's wheel is installed.
    pub is_package: bool,
    /// A `gunicorn.conf.py` beside the app (gunicorn is pointed at it).
    pub gunicorn_config: bool,
    /// At a uv workspace root: the member to build (`[python] package`).
    pub package: Option<String>,
    /// In a workspace member: the workspace root (where `uv.lock` is).
    pub workspace_root: Option<String>,
    /// Env the command needs (`DJANGO_SETTINGS_MODULE`, a Procfile's `PORT`).
    pub env: Vec<(String, String)>,
}

impl Project {
    /// Whether the app's code reaches the image as the project's own wheel
    /// (started by its console script or imported by its server), so no
    /// `[app]` layer is needed.
    pub fn installed_as_package(&self) -> bool {
        self.is_package
            && matches!(
                self.launch,
                Launch::Script(_) | Launch::Asgi { .. } | Launch::Wsgi { .. }
            )
            && matches!(
                self.dependencies,
                Dependencies::Project | Dependencies::ProjectUnlocked
            )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("`{}` is not a dir", .0.display())]
    NotADir(PathBuf),
    #[error("`{}` already exists", .0.display())]
    Exists(PathBuf),
    #[error("`{}` is not valid TOML: {message}", path.display())]
    BadPyproject { path: PathBuf, message: String },
    #[error("cannot read or write `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for InitError {
    fn hint(&self) -> Option<String> {
        match self {
            InitError::Exists(_) => {
                Some("pass `--force` to overwrite it, or `--print` to see the recipe".into())
            }
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Looks at `dir` and says what kind of project it is; at a uv workspace
/// root whose own project has no app, at the member to build.
pub fn detect(dir: &Path) -> Result<Project, InitError> {
    if !dir.is_dir() {
        return Err(InitError::NotADir(dir.to_path_buf()));
    }
    let here = detect_here(dir)?;
    let app_file = match &here.launch {
        Launch::Asgi { file, .. } | Launch::Wsgi { file, .. } | Launch::File(file) => {
            Some(file.as_str())
        }
        _ => None,
    };
    let Some((name, member_dir)) = workspace::member_to_build(dir, app_file) else {
        return Ok(here);
    };
    let mut member = detect_here(&member_dir)?;
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let rel = member_dir
        .strip_prefix(&root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| member_dir.to_string_lossy().into_owned());
    member.source = if member.source == "." {
        rel
    } else {
        format!("{rel}/{}", member.source)
    };
    member.package = Some(name);
    member.workspace_root = None;
    member.dependencies = Dependencies::Project;
    Ok(member)
}

/// [`detect`] for `dir` itself.
fn detect_here(dir: &Path) -> Result<Project, InitError> {
    let pyproject_path = dir.join("pyproject.toml");
    let pyproject: Option<toml::Table> = match std::fs::read_to_string(&pyproject_path) {
        Ok(text) => Some(
            text.parse()
                .map_err(|e: toml::de::Error| InitError::BadPyproject {
                    path: pyproject_path.clone(),
                    message: e.message().to_string(),
                })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&pyproject_path)(e)),
    };
    let project = pyproject
        .as_ref()
        .and_then(|t| t.get("project"))
        .and_then(|p| p.as_table());
    let text = |key: &str| project.and_then(|p| p.get(key)).and_then(|v| v.as_str());
    let name = text("name").map(str::to_string).unwrap_or_else(|| {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into())
    });
    let python = python_version(dir, text("requires-python"));
    let scripts: Vec<String> = project
        .and_then(|p| p.get("scripts"))
        .and_then(|s| s.as_table())
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();

    let requirements: Vec<String> = [
        "requirements.txt",
        "requirements/prod.txt",
        "requirements/base.txt",
    ]
    .iter()
    .filter(|f| dir.join(f).is_file())
    .take(1)
    .map(|f| f.to_string())
    .collect();
    let workspace_root = workspace::root_above(dir);
    let locked = dir.join("uv.lock").is_file() || workspace_root.is_some();
    let dependencies = match (pyproject.is_some(), locked) {
        (true, true) => Dependencies::Project,
        _ if !requirements.is_empty() => Dependencies::Requirements(requirements.clone()),
        (true, false) => Dependencies::ProjectUnlocked,
        _ => Dependencies::None,
    };
    let declared = declared_names(dir, project, &requirements)?;

    let (launch, env) = find_launch(dir, pyproject.as_ref(), &scripts);
    let in_src = |file: &str| file.starts_with("src/");
    let source = match &launch {
        Launch::Asgi { file, .. } | Launch::Wsgi { file, .. } | Launch::File(file)
            if in_src(file) =>
        {
            "src".to_string()
        }
        _ => ".".to_string(),
    };
    let is_package = pyproject
        .as_ref()
        .is_some_and(|t| t.contains_key("build-system"));
    let gunicorn_config = dir.join(&source).join("gunicorn.conf.py").is_file();
    Ok(Project {
        name,
        python,
        dependencies,
        launch,
        source,
        declared,
        scripts,
        is_package,
        gunicorn_config,
        package: None,
        workspace_root,
        env,
    })
}

/// The names of the distributions the project declares (pyproject, its
/// requirements file), the servers their extras bring and, with a lock,
/// everything it installs: a server may come in transitively.
fn declared_names(
    dir: &Path,
    project: Option<&toml::Table>,
    requirements: &[String],
) -> Result<Vec<String>, InitError> {
    let specs: Vec<&str> = project
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .collect();
    let mut declared: Vec<String> = specs.iter().map(|d| requirement_name(d)).collect();
    for file in requirements {
        let text = std::fs::read_to_string(dir.join(file)).map_err(io_err(&dir.join(file)))?;
        declared.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty() && !l.starts_with('-'))
                .map(requirement_name),
        );
    }
    declared.extend(
        specs
            .iter()
            .flat_map(|d| frameworks::servers_from_extras(d)),
    );
    if let Some(root) = crate::layers::project::find_lock_root(dir) {
        declared.extend(frameworks::locked_names(&root));
    }
    Ok(declared)
}

/// How the app starts (Procfile, Django, FastAPI's entrypoint, an ASGI/WSGI
/// app, a script, a main file) and the env vars that start needs.
fn find_launch(
    dir: &Path,
    pyproject: Option<&toml::Table>,
    scripts: &[String],
) -> (Launch, Vec<(String, String)>) {
    let sources = python_files(dir);
    let mut env = Vec::new();
    let django = frameworks::django(dir).map(|(launch, settings)| {
        env.push(("DJANGO_SETTINGS_MODULE".to_string(), settings));
        launch
    });
    let procfile = frameworks::procfile(dir).map(|(argv, shell)| {
        if shell {
            env.push(("PORT".to_string(), "8000".to_string()));
        }
        Launch::Procfile(argv)
    });
    let launch = procfile
        .or(django)
        .or_else(|| frameworks::fastapi_entrypoint(pyproject))
        .or_else(|| find_app(dir, &sources))
        .or_else(|| scripts.first().map(|s| Launch::Script(s.clone())))
        .or_else(|| find_main(dir, &sources))
        .unwrap_or(Launch::Unknown);
    (launch, env)
}

/// `FastAPI[all]>=0.1 ; python_version>"3"` → `fastapi`.
pub(crate) fn requirement_name(spec: &str) -> String {
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(spec.len());
    spec[..end].to_ascii_lowercase().replace('_', "-")
}

/// `.python-version` (`3.13.1` → `3.13`), else the newest official minor
/// `requires-python` allows, else the default.
fn python_version(dir: &Path, requires: Option<&str>) -> String {
    if let Ok(text) = std::fs::read_to_string(dir.join(".python-version")) {
        let mut parts = text.lines().next().unwrap_or_default().trim().split('.');
        if let (Some("3"), Some(minor)) = (parts.next(), parts.next()) {
            let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
            if !minor.is_empty() {
                return format!("3.{minor}");
            }
        }
    }
    requires
        .and_then(python::newest_allowed)
        .unwrap_or_else(|| DEFAULT_PYTHON.to_string())
}

/// `.py` files (relative, `/`-separated), shallow first, skipping
/// virtualenvs, caches, tests and hidden dirs.
fn python_files(dir: &Path) -> Vec<String> {
    const SKIP: &[&str] = &[
        "__pycache__",
        "node_modules",
        "venv",
        "env",
        "site-packages",
        "build",
        "dist",
        "tests",
        "test",
        "docs",
    ];
    let mut files: Vec<String> = walkdir::WalkDir::new(dir)
        .max_depth(5)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || (e.file_type().is_dir() && SKIP.contains(&name.as_ref())))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
        })
        .collect();
    files.sort_by_key(|f| (f.matches('/').count(), f.clone()));
    files
}

const ASGI: &[(&str, &str)] = &[
    ("FastAPI(", "FastAPI"),
    ("Starlette(", "Starlette"),
    ("Litestar(", "Litestar"),
    ("Quart(", "Quart"),
];
const WSGI: &[(&str, &str)] = &[("Flask(", "Flask")];

/// The first file creating an ASGI or WSGI app object: `NAME = FastAPI(...)`.
fn find_app(dir: &Path, files: &[String]) -> Option<Launch> {
    for file in files {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        for (frameworks, asgi) in [(ASGI, true), (WSGI, false)] {
            for (needle, framework) in frameworks {
                let Some(attr) = assigned_name(&text, needle) else {
                    continue;
                };
                // A factory (`def create_app(): app = Flask(...)`) is called by the server.
                let attr = if text.contains("def create_app(") && !asgi {
                    "create_app()".to_string()
                } else {
                    attr
                };
                let module = file
                    .strip_prefix("src/")
                    .unwrap_or(file)
                    .trim_end_matches(".py")
                    .trim_end_matches("/__init__")
                    .replace('/', ".");
                let target = format!("{module}:{attr}");
                let file = file.clone();
                return Some(if asgi {
                    Launch::Asgi {
                        target,
                        framework,
                        file,
                    }
                } else {
                    Launch::Wsgi {
                        target,
                        framework,
                        file,
                    }
                });
            }
        }
    }
    None
}

/// `app` from a line `app = FastAPI(` (or `app: FastAPI = FastAPI(`).
fn assigned_name(text: &str, needle: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let i = line.find(needle)?;
        let before = line[..i].trim_end();
        let before = before.strip_suffix('=')?.trim_end();
        let name = before.split(':').next()?.trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        valid.then(|| name.to_string())
    })
}

/// A top-level `main.py`/`app.py`/`__main__.py`-like script with a main guard.
fn find_main(dir: &Path, files: &[String]) -> Option<Launch> {
    files
        .iter()
        .filter(|f| !f.contains('/') || f.starts_with("src/"))
        .find(|f| {
            std::fs::read_to_string(dir.join(f)).is_ok_and(|t| {
                t.contains("__name__ == \"__main__\"") || t.contains("__name__ == '__main__'")
            })
        })
        .map(|f| Launch::File(f.clone()))
}

/// Detects, renders and writes `DIR/slipway.toml` (unless it exists and not `force`).
pub fn write(dir: &Path, base: Option<&str>, force: bool) -> Result<(PathBuf, Project), InitError> {
    let project = detect(dir)?;
    let path = dir.join(RECIPE_FILE);
    if path.exists() && !force {
        return Err(InitError::Exists(path));
    }
    std::fs::write(&path, render(&project, base)).map_err(io_err(&path))?;
    Ok((path, project))
}

/// What was found, one line each (for the CLI's stderr).
pub fn summary(project: &Project) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    out.insert("python", project.python.clone());
    out.insert(
        "dependencies",
        match &project.dependencies {
            Dependencies::Project => "pyproject.toml + uv.lock".into(),
            Dependencies::ProjectUnlocked => "pyproject.toml (run `uv lock`)".into(),
            Dependencies::Requirements(f) => f.join(", "),
            Dependencies::None => "none found".into(),
        },
    );
    out.insert(
        "app",
        match &project.launch {
            Launch::Asgi {
                target, framework, ..
            } => format!("{framework} `{target}` (uvicorn)"),
            Launch::Wsgi {
                target, framework, ..
            } => format!("{framework} `{target}` (gunicorn)"),
            Launch::Script(s) => format!("console script `{s}`"),
            Launch::File(f) => format!("`python {f}`"),
            Launch::Procfile(argv) => format!("Procfile `{}`", argv.join(" ")),
            Launch::Unknown => "not found: set `cmd` in the recipe".into(),
        },
    );
    out
}

#[cfg(test)]
#[path = "init_tests.rs"]
mod tests;
