//! A recipe's `[python] project`: a dir with `pyproject.toml`, locked by a
//! `uv.lock` beside it or at the root of its uv workspace. Its locked
//! third-party dependencies are exported as pinned requirements (`uv export
//! --locked`, the site-packages layer); the project itself, when it is a
//! package, and the workspace members it depends on are built on the host
//! (`uv build --wheel`, pure-Python wheels only) and installed without
//! dependencies in the small project layer, so a code edit rebuilds only it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod wheel_build;
pub use wheel_build::{build_wheel, WheelBuild};

/// The build backend that `uv build` runs in-process (no build environment,
/// nothing to download, byte-identical wheels).
pub const UV_BUILD_BACKEND: &str = "uv_build";

#[derive(Clone, Debug)]
pub struct Project {
    /// The package's own dir (a workspace member's dir in a workspace).
    pub dir: PathBuf,
    /// The dir holding `uv.lock`: `dir`, or the workspace root above it.
    pub root: PathBuf,
    /// `[project] name`.
    pub name: String,
    /// Set when `dir` is a member of a workspace rooted elsewhere (or
    /// chosen by the recipe's `package`): exported with `--package`.
    pub member: bool,
    /// Whether the project is itself a package (has `[build-system]` or
    /// `[project.scripts]`): its wheel is built and installed.
    pub is_package: bool,
    /// `[build-system] build-backend`, if stated.
    pub build_backend: Option<String>,
    /// `[build-system] requires`.
    pub build_requires: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("project `{}` has no `{file}`", shown(dir))]
    Missing { dir: PathBuf, file: &'static str },
    #[error(
        "workspace `{}` has no member named `{package}` (members: {members})",
        shown(root)
    )]
    NoMember {
        root: PathBuf,
        package: String,
        members: String,
    },
    #[error(
        "`{}` is a workspace root without a `[project]` of its own (members: {members})",
        shown(root)
    )]
    VirtualRoot { root: PathBuf, members: String },
    #[error("`{}` is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "`uv {what}` failed for project `{}` ({status}):\n{stderr}",
        shown(dir)
    )]
    Uv {
        what: &'static str,
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error(
        "`uv.lock` in `{}` does not match `pyproject.toml` for Python {target_python}",
        shown(root)
    )]
    Stale {
        root: PathBuf,
        target_python: String,
        /// The lock's `requires-python`.
        locked_for: Option<String>,
    },
    #[error("could not run `{}`", uv.display())]
    UvNotRunnable {
        uv: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("project `{}` builds `{wheel}`, a platform-specific wheel; only pure-Python projects (`py3-none-any`) can be built on the host for another platform", shown(dir))]
    NotPure { dir: PathBuf, wheel: String },
    #[error("reading `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Hint for ProjectError {
    fn hint(&self) -> Option<String> {
        match self {
            ProjectError::Missing {
                file: "uv.lock",
                dir,
            } => Some(format!(
                "run `uv lock` in `{}` (or at its workspace root) and keep `uv.lock` with the project",
                shown(dir)
            )),
            ProjectError::Missing { .. } => {
                Some("point `[python] project` at the dir holding `pyproject.toml`".into())
            }
            ProjectError::NoMember { .. } | ProjectError::VirtualRoot { .. } => Some(
                "name the member to build: `[python] package = \"NAME\"`, or point `[python] project` at its dir"
                    .into(),
            ),
            ProjectError::Stale {
                root,
                target_python,
                locked_for,
            } => Some(match locked_for {
                Some(locked) if locked.trim() != format!(">={target_python}") => format!(
                    "`uv.lock` was made for Python `{locked}`, the image has {target_python}: run `uv lock --python {target_python}` in `{}`",
                    shown(root)
                ),
                _ => format!(
                    "run `uv lock` in `{}`: `uv.lock` does not match `pyproject.toml`",
                    shown(root)
                ),
            }),
            ProjectError::NotPure { .. } => Some(
                "build the wheel for the target yourself and add it to `[python] find_links`"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// A path as people write it: `./.` → `.`, `dir/./x` → `dir/x`.
pub fn shown(path: &Path) -> String {
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if clean.as_os_str().is_empty() {
        ".".into()
    } else {
        clean.display().to_string()
    }
}

fn read_toml(path: &Path) -> Result<toml::Value, ProjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ProjectError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The nearest dir at or above `dir` holding `uv.lock` next to a
/// `pyproject.toml` (a project's own lock, or its workspace root's).
pub fn find_lock_root(dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    dir.ancestors()
        .find(|d| d.join("uv.lock").is_file() && d.join("pyproject.toml").is_file())
        .map(Path::to_path_buf)
}

/// (name, dir) of every workspace member recorded in `root/uv.lock`.
pub fn lock_members(root: &Path) -> Result<Vec<(String, PathBuf)>, ProjectError> {
    let lock = read_toml(&root.join("uv.lock"))?;
    let packages = lock.get("package").and_then(|p| p.as_array());
    let mut members = Vec::new();
    for package in packages.into_iter().flatten() {
        let name = package.get("name").and_then(|n| n.as_str());
        let source = package.get("source");
        let local = ["editable", "virtual", "directory"]
            .iter()
            .find_map(|k| source.and_then(|s| s.get(*k)).and_then(|p| p.as_str()));
        if let (Some(name), Some(path)) = (name, local) {
            members.push((name.to_string(), root.join(path)));
        }
    }
    Ok(members)
}

fn member_names(members: &[(String, PathBuf)]) -> String {
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl Project {
    /// Reads the project at `dir` (or, with `package`, that member of the
    /// workspace at `dir`), and finds its `uv.lock` there or at the root of
    /// its workspace.
    pub fn load(dir: &Path, package: Option<&str>) -> Result<Project, ProjectError> {
        if !dir.join("pyproject.toml").is_file() {
            return Err(ProjectError::Missing {
                dir: dir.to_path_buf(),
                file: "pyproject.toml",
            });
        }
        let Some(root) = find_lock_root(dir) else {
            return Err(ProjectError::Missing {
                dir: dir.to_path_buf(),
                file: "uv.lock",
            });
        };
        let (dir, member) = project_dir(dir, &root, package)?;
        let pyproject = dir.join("pyproject.toml");
        let doc = read_toml(&pyproject)?;
        let Some(name) = doc
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            if doc
                .get("tool")
                .and_then(|t| t.get("uv"))
                .and_then(|u| u.get("workspace"))
                .is_some()
            {
                let members = lock_members(&root)?;
                return Err(ProjectError::VirtualRoot {
                    root,
                    members: member_names(&members),
                });
            }
            return Err(ProjectError::Invalid {
                path: pyproject,
                message: "no `[project] name`".into(),
            });
        };
        let name = name.to_string();
        let build_system = doc.get("build-system");
        let has_scripts = doc.get("project").and_then(|p| p.get("scripts")).is_some();
        let packaged = doc
            .get("tool")
            .and_then(|t| t.get("uv"))
            .and_then(|u| u.get("package"))
            .and_then(|p| p.as_bool());
        Ok(Project {
            is_package: packaged.unwrap_or(build_system.is_some() || has_scripts),
            build_backend: build_system
                .and_then(|b| b.get("build-backend"))
                .and_then(|b| b.as_str())
                .map(str::to_string),
            build_requires: build_system
                .and_then(|b| b.get("requires"))
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            dir,
            root,
            name,
            member,
        })
    }

    pub fn pyproject(&self) -> PathBuf {
        self.dir.join("pyproject.toml")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("uv.lock")
    }

    /// Whether building the wheel needs a build environment (and so, offline,
    /// the build backend's wheels): not with uv's own backend.
    pub fn needs_build_env(&self) -> bool {
        self.is_package && self.build_backend.as_deref() != Some(UV_BUILD_BACKEND)
    }
}

/// `Foo_Bar.baz` → `foo-bar-baz` (PEP 503).
pub fn normalise_name(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// What `uv export` gave for a project.
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// The third-party requirements file (pinned, hashes when the lock has them).
    pub requirements: PathBuf,
    /// Every requirement carries `--hash`: install with `--require-hashes`.
    pub hashed: bool,
    /// The file names at least one requirement.
    pub has_requirements: bool,
    /// Local dirs (workspace members, path dependencies) the project
    /// depends on: built as wheels into the project layer.
    pub local_dirs: Vec<PathBuf>,
}

/// Writes the project's locked dependencies (not the project itself, no dev
/// or other default groups) as requirements with every hash in `uv.lock`,
/// and lists the local dirs among them apart. `--locked`: a lock that no
/// longer matches `pyproject.toml` is an error, not a silently outdated
/// image. `python` (of `python_version`) only spares uv a search.
pub fn export(
    uv: &Path,
    python: &Path,
    python_version: &str,
    project: &Project,
    out: &Path,
    offline: bool,
) -> Result<Export, ProjectError> {
    let mut cmd = super::uv::uv(uv, &["export"]);
    cmd.arg("--project")
        .arg(&project.root)
        .arg("--python")
        .arg(python)
        .args([
            "--locked",
            "--format",
            "requirements-txt",
            "--no-emit-project",
            "--no-editable",
            "--no-default-groups",
            "--no-header",
            "--no-annotate",
            "--quiet",
        ]);
    if project.member {
        cmd.arg("--package").arg(&project.name);
    }
    if offline {
        cmd.arg("--offline");
    }
    let text = match run(uv, cmd, "export", &project.root) {
        Ok(stdout) => stdout,
        Err(ProjectError::Uv { stderr, .. })
            if stderr.contains("--locked") || stderr.contains("needs to be updated") =>
        {
            return Err(ProjectError::Stale {
                root: project.root.clone(),
                target_python: python_version.to_string(),
                // Without `requires-python`, uv lock records the Python it ran
                // with; a different one (the image's) no longer matches.
                locked_for: lock_requires_python(&project.lock())
                    .filter(|_| !states_requires_python(&project.pyproject())),
            });
        }
        Err(e) => return Err(e),
    };
    let (requirements, local) = split_export(&text);
    let entries = requirement_entries(&requirements);
    std::fs::write(out, &requirements).map_err(|source| ProjectError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(Export {
        requirements: out.to_path_buf(),
        // A lock made from find-links dirs has no hashes (or only some):
        // `--require-hashes` needs every one.
        hashed: !entries.is_empty() && entries.iter().all(|e| e.contains("--hash=")),
        has_requirements: !entries.is_empty(),
        local_dirs: local.iter().map(|l| project.root.join(l)).collect(),
    })
}

fn states_requires_python(pyproject: &Path) -> bool {
    read_toml(pyproject).is_ok_and(|d| {
        d.get("project")
            .and_then(|p| p.get("requires-python"))
            .is_some()
    })
}

/// The lock's top-level `requires-python`.
fn lock_requires_python(lock: &Path) -> Option<String> {
    let doc = read_toml(lock).ok()?;
    Some(doc.get("requires-python")?.as_str()?.to_string())
}

/// The requirement entries of a requirements text, continuation lines joined.
fn requirement_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut entry = String::new();
    for line in text.lines() {
        entry.push_str(line.trim_end().trim_end_matches('\\'));
        if line.trim_end().ends_with('\\') {
            continue;
        }
        let done = std::mem::take(&mut entry);
        let trimmed = done.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            entries.push(trimmed.to_string());
        }
    }
    entries
}

/// Splits `uv export` output into third-party requirements (continuation
/// lines kept together) and local paths (`./packages/lib`, `-e ./x`).
fn split_export(text: &str) -> (String, Vec<String>) {
    let mut requirements = String::new();
    let mut local = Vec::new();
    let mut entry = String::new();
    for line in text.lines() {
        entry.push_str(line);
        entry.push('\n');
        if line.trim_end().ends_with('\\') {
            continue;
        }
        let first = entry.trim_start().trim_start_matches("-e ").trim_start();
        if first.starts_with('.') || first.starts_with('/') || first.starts_with("file:") {
            let path = first.split_whitespace().next().unwrap_or_default();
            local.push(path.trim_start_matches("file://").to_string());
        } else {
            requirements.push_str(&entry);
        }
        entry.clear();
    }
    requirements.push_str(&entry);
    (requirements, local)
}

/// Runs uv; its stdout on success.
fn run(
    uv: &Path,
    mut cmd: Command,
    what: &'static str,
    dir: &Path,
) -> Result<String, ProjectError> {
    let output = cmd
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProjectError::UvNotRunnable {
            uv: uv.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(ProjectError::Uv {
        what,
        dir: dir.to_path_buf(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// The dir of the project to build and whether it is a workspace member:
/// `package` among the lock's members, else `dir` itself.
fn project_dir(
    dir: &Path,
    root: &Path,
    package: Option<&str>,
) -> Result<(PathBuf, bool), ProjectError> {
    let Some(name) = package else {
        let own_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let member = own_dir != root;
        return Ok((own_dir, member));
    };
    let members = lock_members(root)?;
    let wanted = normalise_name(name);
    match members.iter().find(|(n, _)| normalise_name(n) == wanted) {
        Some((_, member_dir)) => Ok((member_dir.clone(), true)),
        None => Err(ProjectError::NoMember {
            root: root.to_path_buf(),
            package: name.to_string(),
            members: member_names(&members),
        }),
    }
}

#[cfg(test)]
#[path = "project_tests.rs"]
mod tests;
