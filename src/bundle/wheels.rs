//! The wheels of a bundle: resolved per platform with `uv pip compile
//! --python-platform ... -o pylock.toml` (one wheel, its URL and sha256 per
//! package), written as hash-pinned requirements, and fetched (or copied
//! from a local find-links dir) with the sha256 checked.

use crate::digest::{Digest, HashingWriter};
pub use crate::layers::deps::parse_requirements;
use crate::layers::uv::IndexUrl;
use futures::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// One pinned wheel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub name: String,
    pub version: String,
    pub sha256: Digest,
    /// The wheel's file name.
    pub file: String,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Url(url::Url),
    Path(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(u) => write!(f, "{u}"),
            Source::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `uv pip compile` for one target.
pub struct Compile<'a> {
    pub uv: &'a Path,
    pub python: &'a Path,
    pub inputs: &'a [PathBuf],
    /// `3.13`
    pub python_version: &'a str,
    /// uv's triple; `None` for the host (build requirements).
    pub python_platform: Option<&'a str>,
    pub index_url: Option<&'a str>,
    pub extra_index_urls: &'a [String],
    pub find_links: &'a [String],
    pub offline: bool,
    /// Where `pylock.<name>.toml` is written.
    pub scratch: &'a Path,
    /// No dots (uv's rule for pylock file names).
    pub name: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("could not resolve the wheels for {target}:\n{stderr}")]
    Compile { target: String, stderr: String },
    #[error(
        "no wheel of {} for {target}; a bundle holds wheels only",
        packages.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    )]
    NoWheel {
        target: String,
        packages: Vec<String>,
    },
    #[error("could not run `{}`", uv.display())]
    UvNotRunnable {
        uv: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a lock uv could have written: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    #[error("`{file}` from `{from}` hashes to `{actual}`, but its pin says `{expected}`")]
    HashMismatch {
        file: String,
        /// Where it came from (URL or path).
        from: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("`{file}` names two different wheels (`{a}` and `{b}`)")]
    Conflict { file: String, a: Digest, b: Digest },
    #[error("cannot fetch `{url}`: {message}")]
    Fetch { url: String, message: String },
    #[error("`{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WheelError + '_ {
    move |source| WheelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Resolves `spec.inputs` for one target: one wheel per package.
pub fn compile(spec: &Compile) -> Result<Vec<Pin>, WheelError> {
    let out = spec.scratch.join(format!("pylock.{}.toml", spec.name));
    let target = match spec.python_platform {
        Some(p) => format!("`{p}` (Python {})", spec.python_version),
        None => format!("the host (Python {})", spec.python_version),
    };
    let mut cmd = crate::layers::uv::uv(spec.uv, &["pip", "compile"]);
    cmd.arg("--python")
        .arg(spec.python)
        .args(["--python-version", spec.python_version])
        .args(["--only-binary", ":all:", "--no-header", "--quiet"]);
    if let Some(platform) = spec.python_platform {
        cmd.args(["--python-platform", platform]);
    }
    crate::layers::uv::index_args(
        &mut cmd,
        spec.offline,
        spec.index_url,
        spec.extra_index_urls,
        spec.find_links,
    );
    cmd.arg("-o").arg(&out).args(spec.inputs);
    let output = cmd
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| WheelError::UvNotRunnable {
            uv: spec.uv.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let packages = crate::layers::uv::packages_without_wheels(&stderr);
        if !packages.is_empty() {
            return Err(WheelError::NoWheel { target, packages });
        }
        return Err(WheelError::Compile { target, stderr });
    }
    let text = std::fs::read_to_string(&out).map_err(io_err(&out))?;
    parse_pylock(&text, spec.scratch).map_err(|message| match message {
        PylockProblem::NoWheel(packages) => WheelError::NoWheel { target, packages },
        PylockProblem::Other(message) => WheelError::Lock { path: out, message },
    })
}

enum PylockProblem {
    NoWheel(Vec<String>),
    Other(String),
}

/// Reads a `pylock.toml`: each package's one wheel (`url` or `path`, the
/// latter relative to `dir`) and its sha256.
fn parse_pylock(text: &str, dir: &Path) -> Result<Vec<Pin>, PylockProblem> {
    let other = |m: String| PylockProblem::Other(m);
    let doc: toml::Value = toml::from_str(text).map_err(|e| other(e.to_string()))?;
    let packages = match doc.get("packages") {
        Some(p) => p
            .as_array()
            .ok_or_else(|| other("`packages` is not an array".into()))?
            .clone(),
        None => Vec::new(),
    };
    let mut pins = Vec::new();
    let mut without = Vec::new();
    for package in &packages {
        let field = |k: &str| package.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let name = field("name").ok_or_else(|| other("a package has no name".into()))?;
        let version = field("version").unwrap_or_default();
        let Some(wheel) = package
            .get("wheels")
            .and_then(|w| w.as_array())
            .and_then(|w| w.first())
        else {
            without.push(name);
            continue;
        };
        let sha = wheel
            .get("hashes")
            .and_then(|h| h.get("sha256"))
            .and_then(|h| h.as_str())
            .ok_or_else(|| other(format!("the wheel of `{name}` has no sha256")))?;
        let sha256 = Digest::parse(&format!("sha256:{sha}")).map_err(other)?;
        let (source, file) = if let Some(u) = wheel.get("url").and_then(|u| u.as_str()) {
            let url = url::Url::parse(u).map_err(|e| other(format!("`{u}`: {e}")))?;
            let file = url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .map(percent_decode)
                .unwrap_or_default();
            let source = match url.scheme() {
                "file" => Source::Path(
                    url.to_file_path()
                        .map_err(|_| other(format!("`{u}` is not a local path")))?,
                ),
                _ => Source::Url(url),
            };
            (source, file)
        } else if let Some(p) = wheel.get("path").and_then(|p| p.as_str()) {
            let path = dir.join(p);
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (Source::Path(path), file)
        } else {
            return Err(other(format!("the wheel of `{name}` has no url or path")));
        };
        let file = wheel
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or(file);
        if !file.ends_with(".whl") || file.contains('/') {
            return Err(other(format!(
                "`{file}` (of `{name}`) is not a wheel file name"
            )));
        }
        pins.push(Pin {
            name,
            version,
            sha256,
            file,
            source,
        });
    }
    if !without.is_empty() {
        return Err(PylockProblem::NoWheel(without));
    }
    pins.sort_by_key(|p| normalise(&p.name));
    Ok(pins)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// PEP 503 name normalisation.
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Hash-pinned requirements for `pins`, for `uv pip install --require-hashes`.
pub fn requirements_text(header: &str, pins: &[Pin]) -> String {
    let mut text = format!("# {header}\n");
    for pin in pins {
        text.push_str(&format!(
            "{}=={} \\\n    --hash={}\n",
            normalise(&pin.name),
            pin.version,
            pin.sha256
        ));
    }
    text
}

/// Makes sure `dir/pin.file` holds the pinned wheel: kept if it already
/// does, else copied or downloaded (temp file, sha256 checked, renamed).
/// Returns the bytes fetched (0 when kept).
/// `indexes`: the recipe's index URLs; a wheel on one's origin is fetched
/// with its credentials (a wheel on another host gets none).
pub async fn fetch(
    http: &reqwest::Client,
    pin: &Pin,
    dir: &Path,
    indexes: &[IndexUrl],
) -> Result<u64, WheelError> {
    let dest = dir.join(&pin.file);
    if crate::digest::digest_file(&dest).is_ok_and(|(d, _)| d == pin.sha256) {
        return Ok(0);
    }
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    let mut writer = HashingWriter::new(temp.as_file_mut());
    match &pin.source {
        Source::Path(path) => {
            let mut file = std::fs::File::open(path).map_err(io_err(path))?;
            std::io::copy(&mut file, &mut writer).map_err(io_err(path))?;
        }
        Source::Url(url) => {
            let authorization = indexes.iter().find_map(|i| i.authorization_for(url));
            download(http, url, authorization, &mut writer).await?
        }
    }
    let (_, actual, size) = writer.finish();
    if actual != pin.sha256 {
        return Err(WheelError::HashMismatch {
            file: pin.file.clone(),
            from: pin.source.to_string(),
            expected: pin.sha256.clone(),
            actual,
        });
    }
    temp.persist(&dest).map_err(|e| WheelError::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    Ok(size)
}

async fn download(
    http: &reqwest::Client,
    url: &url::Url,
    authorization: Option<String>,
    writer: &mut impl Write,
) -> Result<(), WheelError> {
    let fail = |message: String| WheelError::Fetch {
        url: url.to_string(),
        message,
    };
    let mut request = http.get(url.clone());
    if let Some(value) = authorization
        .as_deref()
        .and_then(|v| reqwest::header::HeaderValue::from_str(v).ok())
    {
        let mut value = value;
        value.set_sensitive(true);
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let response = request
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(error_chain(&e)))?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| fail(error_chain(&e)))?;
        writer
            .write_all(&chunk)
            .map_err(|e| fail(format!("writing: {e}")))?;
    }
    Ok(())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pylock_and_writes_pins() {
        let text = r#"
lock-version = "1.0"
[[packages]]
name = "Typing_Extensions"
version = "4.16.0"
wheels = [{ url = "https://files.example/t/typing_extensions-4.16.0-py3-none-any.whl", hashes = { sha256 = "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8" } }]
[[packages]]
name = "idna"
version = "3.20"
wheels = [{ url = "file:///wh/idna-3.20-py3-none-any.whl", hashes = { sha256 = "ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c" } }]
"#;
        let Ok(pins) = parse_pylock(text, Path::new("/x")) else {
            panic!("pylock not read")
        };
        assert_eq!(pins[0].name, "idna");
        assert_eq!(
            pins[0].source,
            Source::Path("/wh/idna-3.20-py3-none-any.whl".into())
        );
        assert_eq!(pins[1].file, "typing_extensions-4.16.0-py3-none-any.whl");
        let req = requirements_text("test", &pins);
        assert!(req.contains("typing-extensions==4.16.0 \\\n    --hash=sha256:481c"));
        let back = parse_requirements(&req);
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].version, "4.16.0");
        assert_eq!(back[1].hashes, vec![pins[1].sha256.clone()]);
    }

    #[test]
    fn sdist_only_packages_are_named() {
        let text = "[[packages]]\nname = \"x\"\nversion = \"1\"\nsdist = { url = \"https://e/x-1.tar.gz\" }\n";
        assert!(
            matches!(parse_pylock(text, Path::new("/")), Err(PylockProblem::NoWheel(p)) if p == ["x"])
        );
    }

    #[test]
    fn export_lines_with_markers() {
        let text = "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6\n";
        let pins = parse_requirements(text);
        assert_eq!(pins[0].name, "colorama");
        assert_eq!(pins[0].version, "0.4.6");
        assert_eq!(pins[0].hashes.len(), 1);
        assert_eq!(normalise("Zope.Interface__x"), "zope-interface-x");
    }
}
