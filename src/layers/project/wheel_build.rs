//! The project's own wheel (and its workspace siblings'), built on the host
//! with `uv build --wheel`; only pure-Python wheels are accepted, since the
//! host is not the target.

use super::{run, ProjectError};
use std::path::{Path, PathBuf};

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

/// Builds the wheel of the package in `dir` into `spec.out_dir` (which must
/// hold no other wheel); fails unless it is pure Python.
pub fn build_wheel(dir: &Path, spec: &WheelBuild) -> Result<PathBuf, ProjectError> {
    std::fs::create_dir_all(&spec.out_dir).map_err(|source| ProjectError::Io {
        path: spec.out_dir.clone(),
        source,
    })?;
    let mut cmd = crate::layers::uv::uv(&spec.uv, &["build", "--wheel"]);
    cmd.arg("--python")
        .arg(&spec.python)
        .arg("--out-dir")
        .arg(&spec.out_dir);
    crate::layers::uv::index_args(
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
    cmd.arg(dir);
    run(&spec.uv, cmd, "build", dir)?;
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
            dir: dir.to_path_buf(),
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
            dir: dir.to_path_buf(),
            wheel: name,
        });
    }
    Ok(wheel.clone())
}
