//! A recipe's `[python] project`: a dir with `pyproject.toml` + `uv.lock`
//! (part of the site-packages layer). Its locked dependencies are exported
//! as hash-pinned requirements (`uv export --frozen`); when the project is
//! itself a package, its wheel is built on the host (`uv build --wheel`,
//! pure-Python wheels only) and installed without dependencies, so its
//! console scripts land in the image's bin dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The build backend that `uv build` runs in-process (no build environment,
/// nothing to download, byte-identical wheels).
pub const UV_BUILD_BACKEND: &str = "uv_build";

#[derive(Clone, Debug)]
pub struct Project {
    pub dir: PathBuf,
    /// `[project] name`.
    pub name: String,
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
    #[error("project `{}` has no `{file}`", dir.display())]
    Missing { dir: PathBuf, file: &'static str },
    #[error("`{}` is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("`uv {what}` failed for project `{}` ({status}):\n{stderr}", dir.display())]
    Uv {
        what: &'static str,
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("could not run `{}`", uv.display())]
    UvNotRunnable {
        uv: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("project `{}` builds `{wheel}`, a platform-specific wheel; only pure-Python projects (`py3-none-any`) can be built on the host for another platform", dir.display())]
    NotPure { dir: PathBuf, wheel: String },
    #[error("reading `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ProjectError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ProjectError::Missing {
                file: "uv.lock",
                dir,
            } => Some(format!(
                "run `uv lock` in `{}` and keep `uv.lock` with the project",
                dir.display()
            )),
            ProjectError::Missing { .. } => {
                Some("point `[python] project` at the dir holding `pyproject.toml`".into())
            }
            ProjectError::Uv {
                what: "export",
                stderr,
                dir,
                ..
            } if stderr.contains("--locked") => Some(format!(
                "run `uv lock` in `{}`: `uv.lock` does not match `pyproject.toml`",
                dir.display()
            )),
            ProjectError::NotPure { .. } => Some(
                "build the wheel for the target yourself and add it to `[python] find_links`"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl Project {
    /// Reads `dir/pyproject.toml`; `dir/uv.lock` must exist.
    pub fn load(dir: &Path) -> Result<Project, ProjectError> {
        let pyproject = dir.join("pyproject.toml");
        for (path, file) in [
            (&pyproject, "pyproject.toml"),
            (&dir.join("uv.lock"), "uv.lock"),
        ] {
            if !path.is_file() {
                return Err(ProjectError::Missing {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let text = std::fs::read_to_string(&pyproject).map_err(|source| ProjectError::Io {
            path: pyproject.clone(),
            source,
        })?;
        let invalid = |message: String| ProjectError::Invalid {
            path: pyproject.clone(),
            message,
        };
        let doc: toml::Value = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let name = doc
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| invalid("no `[project] name`".into()))?
            .to_string();
        let build_system = doc.get("build-system");
        let has_scripts = doc.get("project").and_then(|p| p.get("scripts")).is_some();
        let packaged = doc
            .get("tool")
            .and_then(|t| t.get("uv"))
            .and_then(|u| u.get("package"))
            .and_then(|p| p.as_bool());
        Ok(Project {
            dir: dir.to_path_buf(),
            name,
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
        })
    }

    pub fn pyproject(&self) -> PathBuf {
        self.dir.join("pyproject.toml")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("uv.lock")
    }

    /// Whether building the wheel needs a build environment (and so, offline,
    /// the build backend's wheels): not with uv's own backend.
    pub fn needs_build_env(&self) -> bool {
        self.is_package && self.build_backend.as_deref() != Some(UV_BUILD_BACKEND)
    }
}

/// Writes the project's locked dependencies (not the project itself, no dev
/// or other default groups) as requirements with every hash in `uv.lock`.
/// `--locked`: a lock that no longer matches `pyproject.toml` is an error,
/// not a silently outdated image. `python` only spares uv a search.
pub fn export(
    uv: &Path,
    python: &Path,
    project: &Project,
    out: &Path,
    offline: bool,
) -> Result<(), ProjectError> {
    let mut cmd = Command::new(uv);
    cmd.arg("export")
        .arg("--project")
        .arg(&project.dir)
        .arg("--python")
        .arg(python)
        .args([
            "--locked",
            "--format",
            "requirements-txt",
            "--no-emit-project",
            "--no-default-groups",
            "--no-header",
            "--no-annotate",
            "--no-python-downloads",
            "--color",
            "never",
            "--quiet",
        ])
        .arg("--output-file")
        .arg(out);
    if offline {
        cmd.arg("--offline");
    }
    run(uv, cmd, "export", &project.dir)
}

/// How to build a project's wheel.
#[derive(Clone, Debug, Default)]
pub struct WheelBuild {
    pub uv: PathBuf,
    /// The CPython that runs the build backend (the target's minor version).
    pub python: PathBuf,
    pub out_dir: PathBuf,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    /// `--offline --no-index`: the build backend comes from `find_links`.
    pub offline: bool,
    /// Hash-pinned build requirements (`--build-constraints`, `--require-hashes`).
    pub build_constraints: Option<PathBuf>,
}

/// Builds the project's wheel into `spec.out_dir`; fails unless it is pure Python.
pub fn build_wheel(project: &Project, spec: &WheelBuild) -> Result<PathBuf, ProjectError> {
    std::fs::create_dir_all(&spec.out_dir).map_err(|source| ProjectError::Io {
        path: spec.out_dir.clone(),
        source,
    })?;
    let mut cmd = Command::new(&spec.uv);
    cmd.args([
        "build",
        "--wheel",
        "--no-python-downloads",
        "--color",
        "never",
    ])
    .arg("--python")
    .arg(&spec.python)
    .arg("--out-dir")
    .arg(&spec.out_dir);
    super::uv::index_args(
        &mut cmd,
        spec.offline,
        spec.index_url.as_deref(),
        &spec.extra_index_urls,
        &spec.find_links,
    );
    if let Some(constraints) = &spec.build_constraints {
        cmd.arg("--build-constraints")
            .arg(constraints)
            .arg("--require-hashes");
    }
    cmd.arg(&project.dir);
    run(&spec.uv, cmd, "build", &project.dir)?;
    let wheels: Vec<PathBuf> = std::fs::read_dir(&spec.out_dir)
        .map_err(|source| ProjectError::Io {
            path: spec.out_dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    let [wheel] = wheels.as_slice() else {
        return Err(ProjectError::Uv {
            what: "build",
            dir: project.dir.clone(),
            status: "success".into(),
            stderr: format!(
                "expected one wheel in `{}`, found {}",
                spec.out_dir.display(),
                wheels.len()
            ),
        });
    };
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.ends_with("-none-any.whl") {
        return Err(ProjectError::NotPure {
            dir: project.dir.clone(),
            wheel: name,
        });
    }
    Ok(wheel.clone())
}

fn run(uv: &Path, mut cmd: Command, what: &'static str, dir: &Path) -> Result<(), ProjectError> {
    let output = cmd
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProjectError::UvNotRunnable {
            uv: uv.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ProjectError::Uv {
        what,
        dir: dir.to_path_buf(),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(pyproject: &str) -> Result<Project, ProjectError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
        std::fs::write(dir.path().join("uv.lock"), "version = 1\n").unwrap();
        Project::load(dir.path())
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
    fn missing_lock_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyproject.toml"), "[project]\nname='a'\n").unwrap();
        let err = Project::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("uv.lock"), "{err}");
        assert!(err.hint().unwrap().contains("uv lock"));
    }
}
