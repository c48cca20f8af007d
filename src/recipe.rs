//! Stage 1, "recipe": the TOML file that says what to build. Parsing is strict:
//! unknown keys and wrong types are errors naming the file, line and key.

use crate::platform::{Libc, Platform};
use crate::reference::Reference;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod hints;
mod keys;
mod values;
use hints::toml_hint;
pub use keys::{Key, KEYS};
use values::{check_user, nul_in, valid_port};
pub use values::{EPOCH_HINT, MAX_EPOCH};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    pub base: String,
    #[serde(default)]
    pub platforms: Vec<String>,
    pub source_date_epoch: Option<u64>,
    pub push: Option<String>,
    pub oci_layout: Option<PathBuf>,
    pub docker_archive: Option<PathBuf>,
    #[serde(default)]
    pub python: RawPython,
    #[serde(default)]
    pub app: RawApp,
    #[serde(default)]
    pub image: RawImage,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPython {
    #[serde(default)]
    pub requirements: Vec<PathBuf>,
    /// A dir with pyproject.toml + uv.lock; its locked dependencies are installed.
    pub project: Option<PathBuf>,
    /// The workspace member to build when `project` is a uv workspace root.
    pub package: Option<String>,
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    #[serde(default)]
    pub find_links: Vec<String>,
    #[serde(default)]
    pub offline: bool,
    #[serde(default)]
    pub allow_sdist: bool,
    pub bytecode: Option<bool>,
    pub stdlib_bytecode: Option<String>,
    /// Facts about the base, normally detected; stating one that contradicts the base is an error.
    pub version: Option<String>,
    pub libc: Option<String>,
    pub interpreter: Option<String>,
    pub site_packages: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub source: Option<PathBuf>,
    pub destination: Option<String>,
    #[serde(default)]
    pub excludes: Vec<String>,
    pub bytecode: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A validated recipe with paths made absolute (relative to the recipe file).
#[derive(Debug, Clone)]
pub struct Recipe {
    pub file: PathBuf,
    pub base: Reference,
    pub platforms: Vec<Platform>,
    /// Where `platforms` came from, for hints: the recipe's key or `--platform`.
    pub platforms_origin: String,
    pub source_date_epoch: Option<u64>,
    pub destination: Option<Destination>,
    pub python: PythonSettings,
    pub app: AppSettings,
    pub image: ImageSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Push(Reference),
    OciLayout(PathBuf),
    DockerArchive(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PythonSettings {
    pub requirements: Vec<PathBuf>,
    pub project: Option<PathBuf>,
    /// A uv workspace member's name (`[python] package`).
    pub package: Option<String>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub offline: bool,
    pub allow_sdist: bool,
    pub bytecode: bool,
    /// Which of the base's stdlib modules get a `.pyc` layer.
    pub stdlib_bytecode: StdlibBytecode,
    pub stated: StatedFacts,
}

/// `[python] stdlib_bytecode`: none (the base as it is), the modules the
/// image's code imports, or the whole stdlib.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StdlibBytecode {
    #[default]
    Off,
    Imported,
    All,
}

/// Facts about the base that the recipe states instead of leaving to detection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatedFacts {
    /// Where each fact is stated, for errors: `"version"` → "`recipe.toml`, line 7".
    pub origin: BTreeMap<String, String>,
    pub version: Option<String>,
    pub libc: Option<Libc>,
    pub interpreter: Option<String>,
    pub site_packages: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AppSettings {
    pub source: Option<PathBuf>,
    pub destination: String,
    pub excludes: Vec<String>,
    pub bytecode: bool,
}

/// Serialised (without the annotations, which live in the manifest) as the
/// settings `rebase` reads back from the image's label.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSettings {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recipe `{}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        message: String,
        hint: Option<String>,
    },
}

impl crate::error::Hint for RecipeError {
    fn hint(&self) -> Option<String> {
        match self {
            RecipeError::Invalid { hint, .. } => hint.clone(),
            RecipeError::Read { .. } => Some("pass the path of a recipe TOML file, e.g. `slipway build recipes/fastapi-demo/alpine.toml`".into()),
        }
    }
}

pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses recipe text; `path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
    let invalid = |message: String, hint: Option<String>| RecipeError::Invalid {
        path: path.to_path_buf(),
        message,
        hint,
    };
    let raw: RawRecipe = toml::from_str(text).map_err(|e| {
        let mut message = e.to_string().trim_end().to_string();
        let hint = toml_hint(text, &message, e.span().map(|span| span.start));
        // toml calls every error a parse error; valid TOML with a key or
        // value a recipe doesn't take is not one.
        if toml::from_str::<toml::Table>(text).is_ok() {
            message = message.replacen("TOML parse error at line", "line", 1);
        }
        invalid(message, hint)
    })?;
    let line_of = |key: &str| line_of_key(text, key);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };

    let base = Reference::parse(&raw.base).map_err(|e| {
        invalid(
            format!("{} (key `base`{})", e, line_of("base")),
            Some(REFERENCE_HINT.into()),
        )
    })?;
    let mut platforms = Vec::new();
    for p in &raw.platforms {
        let platform = Platform::parse(p).map_err(|e| {
            invalid(
                format!("{e} (key `platforms`{})", line_of("platforms")),
                Some(PLATFORMS_HINT.into()),
            )
        })?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    let mut destinations = Vec::new();
    if let Some(push) = &raw.push {
        let r = Reference::parse(push).map_err(|e| {
            invalid(
                format!("{e} (key `push`{})", line_of("push")),
                Some(REFERENCE_HINT.into()),
            )
        })?;
        destinations.push(Destination::Push(r));
    }
    if let Some(dir) = &raw.oci_layout {
        destinations.push(Destination::OciLayout(abs(dir)));
    }
    if let Some(file) = &raw.docker_archive {
        destinations.push(Destination::DockerArchive(abs(file)));
    }
    if destinations.len() > 1 {
        return Err(invalid(
            "more than one of `push`, `oci_layout`, `docker_archive` is set".into(),
            Some(
                "keep one destination in the recipe and override it on the command line if needed"
                    .into(),
            ),
        ));
    }
    let libc =
        match raw.python.libc.as_deref() {
            None => None,
            Some(text) => Some(parse_libc(text).map_err(|e| {
                invalid(
                    format!("{e} (key `python.libc`{})", line_of("libc")),
                    Some("write `libc = \"musl\"` (Alpine) or `libc = \"glibc-2.36\"` (Debian), or leave it out to detect it".into()),
                )
            })?),
        };
    if let Some(v) = &raw.python.version {
        if parse_minor(v).is_none() {
            return Err(invalid(
                format!(
                    "`python.version` = `{v}` is not a Python version like `3.13`{}",
                    line_of("version")
                ),
                Some("write the base's minor version, e.g. `version = \"3.13\"`, or leave it out to detect it".into()),
            ));
        }
    }
    let destination = raw.app.destination.clone().unwrap_or_else(|| "/app".into());
    let dots = destination
        .split('/')
        .any(|part| part == "." || part == "..");
    if !destination.starts_with('/') || dots {
        return Err(invalid(
            format!(
                "`app.destination` = `{destination}` must be an absolute path without `.` or `..`{}",
                line_of("destination")
            ),
            Some(format!(
                "write the path inside the image, e.g. `destination = \"/{}\"`",
                destination
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != "." && *p != "..")
                    .collect::<Vec<_>>()
                    .join("/")
            )),
        ));
    }
    if let Some(epoch) = raw.source_date_epoch {
        if epoch > MAX_EPOCH {
            return Err(invalid(
                format!(
                    "`source_date_epoch` = {epoch} is after the year 9999 (the largest is {MAX_EPOCH}){}",
                    line_of("source_date_epoch")
                ),
                Some(EPOCH_HINT.into()),
            ));
        }
    }
    if let Some(user) = &raw.image.user {
        check_user(user).map_err(|why| {
            invalid(
                format!("`image.user` = `{user}` {why}{}", line_of("user")),
                Some("write `user = \"UID:GID\"` with numbers 0-4294967294 (e.g. `\"1000:1000\"`), or a user name the base has".into()),
            )
        })?;
    }
    if let Some((key, at)) = nul_in(text) {
        return Err(invalid(
            format!("`{key}` contains a NUL character{}", line_of(at.as_str())),
            Some(
                "no runtime accepts NUL in names, values, paths or commands: remove the `\\u0000`"
                    .into(),
            ),
        ));
    }
    for port in &raw.image.ports {
        if !valid_port(port) {
            return Err(invalid(
                format!(
                    "`image.ports` entry `{port}` is not a port like `8000` or `8000/tcp`{}",
                    line_of("ports")
                ),
                Some("ports are 1-65535, optionally with `/tcp`, `/udp` or `/sctp`: `ports = [\"8000\", \"9000/udp\"]`".into()),
            ));
        }
    }
    for key in raw.image.env.keys() {
        if key.is_empty() || key.contains('=') {
            return Err(invalid(
                format!(
                    "`image.env` key `{key}` is not a valid variable name{}",
                    line_of("env")
                ),
                Some(
                    "names are non-empty and have no `=`: `env = { APP_ENV = \"production\" }`"
                        .into(),
                ),
            ));
        }
    }
    let stdlib_bytecode = match raw.python.stdlib_bytecode.as_deref() {
        None => StdlibBytecode::Off,
        Some("imported") => StdlibBytecode::Imported,
        Some("all") => StdlibBytecode::All,
        Some(other) => {
            return Err(invalid(
                format!(
                    "`python.stdlib_bytecode` = `{other}` is not `\"imported\"` or `\"all\"`{}",
                    line_of("stdlib_bytecode")
                ),
                Some("write `stdlib_bytecode = \"imported\"` (the stdlib modules the app and its dependencies import) or `\"all\"` (the whole stdlib), or leave it out to add no stdlib bytecode".into()),
            ))
        }
    };
    let bytecode = raw.python.bytecode.unwrap_or(true);
    Ok(Recipe {
        file: path.to_path_buf(),
        base,
        platforms,
        platforms_origin: "the recipe's `platforms`".into(),
        source_date_epoch: raw.source_date_epoch,
        destination: destinations.pop(),
        python: PythonSettings {
            requirements: raw.python.requirements.iter().map(|p| abs(p)).collect(),
            project: raw.python.project.as_deref().map(abs),
            package: raw.python.package,
            index_url: raw.python.index_url,
            extra_index_urls: raw.python.extra_index_urls,
            find_links: raw
                .python
                .find_links
                .iter()
                .map(|l| resolve_link(l, &dir))
                .collect(),
            offline: raw.python.offline,
            allow_sdist: raw.python.allow_sdist,
            bytecode,
            stdlib_bytecode,
            stated: StatedFacts {
                origin: ["version", "libc", "interpreter", "site_packages"]
                    .into_iter()
                    .map(|key| {
                        let at = format!("`{}`{}", path.display(), line_of(key));
                        (key.to_string(), at)
                    })
                    .collect(),
                version: raw.python.version,
                libc,
                interpreter: raw.python.interpreter,
                site_packages: raw.python.site_packages,
            },
        },
        app: AppSettings {
            source: raw.app.source.as_deref().map(abs),
            destination: match destination.trim_end_matches('/') {
                "" => "/".to_string(),
                trimmed => trimmed.to_string(),
            },
            excludes: raw.app.excludes,
            bytecode: raw.app.bytecode.unwrap_or(bytecode),
        },
        image: ImageSettings {
            entrypoint: raw.image.entrypoint,
            cmd: raw.image.cmd,
            workdir: raw.image.workdir,
            env: raw.image.env,
            ports: raw.image.ports,
            user: raw.image.user,
            labels: raw.image.labels,
            annotations: raw.image.annotations,
        },
    })
}

/// `3.13` or `3.13.14` → (3, 13).
pub fn parse_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `musl`, `glibc` (2.28 assumed) or `glibc-2.36` / `glibc 2.36`.
pub fn parse_libc(text: &str) -> Result<Libc, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "musl" {
        return Ok(Libc::Musl);
    }
    if let Some(rest) = lower.strip_prefix("glibc") {
        let rest = rest.trim_start_matches(['-', ' ']);
        if rest.is_empty() {
            return Ok(Libc::Glibc {
                major: 2,
                minor: 28,
            });
        }
        if let Some((major, minor)) = parse_minor(rest) {
            return Ok(Libc::Glibc { major, minor });
        }
    }
    Err(format!(
        "libc `{text}` is not `musl`, `glibc` or `glibc-2.NN`"
    ))
}

fn resolve_link(link: &str, dir: &Path) -> String {
    if link.contains("://") || Path::new(link).is_absolute() {
        link.to_string()
    } else {
        dir.join(link).to_string_lossy().into_owned()
    }
}

/// ", line N" for the first line that assigns `key`, for errors found after parsing.
fn line_of_key(text: &str, key: &str) -> String {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| format!(", line {}", i + 1))
        .unwrap_or_default()
}

pub const REFERENCE_HINT: &str = "references look like `python:3.13-alpine` or `registry.example:5000/team/app:1.0`: a lowercase repository, an optional `:tag` and/or `@sha256:` digest";
pub const PLATFORMS_HINT: &str =
    "supported platforms: `linux/amd64`, `linux/arm64` (e.g. `platforms = [\"linux/amd64\"]`)";

/// Checks that the files and dirs a recipe names exist, before any work is
/// done, naming the key and line: `[app] source`, `[python] requirements`
/// and `[python] project`.
pub fn check_inputs(recipe: &Recipe) -> Result<(), RecipeError> {
    let text = std::fs::read_to_string(&recipe.file).unwrap_or_default();
    let invalid = |message: String, hint: String| RecipeError::Invalid {
        path: recipe.file.clone(),
        message,
        hint: Some(hint),
    };
    let relative = "relative paths are relative to the recipe's own dir";
    if let Some(source) = &recipe.app.source {
        if !source.is_dir() {
            let what = if source.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(invalid(
                format!(
                    "`app.source` dir `{}` {what}{}",
                    source.display(),
                    line_of_key(&text, "source")
                ),
                format!(
                    "fix `[app] source` ({relative}), or remove it to build without an app layer"
                ),
            ));
        }
    }
    for file in &recipe.python.requirements {
        if let Err(e) = std::fs::File::open(file)
            .and_then(|f| f.metadata())
            .and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a regular file"))
                }
            })
        {
            return Err(invalid(
                format!(
                    "`python.requirements` file `{}` cannot be read: {e}{}",
                    file.display(),
                    line_of_key(&text, "requirements")
                ),
                format!("fix the path in `[python] requirements` ({relative})"),
            ));
        }
    }
    if let Some(project) = &recipe.python.project {
        if !project.join("pyproject.toml").is_file() {
            return Err(invalid(
                format!(
                    "`python.project` dir `{}` has no `pyproject.toml`{}",
                    project.display(),
                    line_of_key(&text, "project")
                ),
                format!("point `[python] project` at the dir holding `pyproject.toml` and `uv.lock` ({relative})"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Hint;

    fn parse_str(text: &str) -> Result<Recipe, RecipeError> {
        parse(text, Path::new("/r/recipe.toml"))
    }

    #[test]
    fn minimal_recipe_gets_defaults() {
        let r = parse_str("base = \"python:3.13-alpine\"\n").unwrap();
        assert_eq!(r.base.to_string(), "docker.io/library/python:3.13-alpine");
        assert_eq!(r.platforms, vec![Platform::host()]);
        assert_eq!(r.app.destination, "/app");
        assert!(r.python.bytecode && r.app.bytecode);
        assert_eq!(r.destination, None);
    }

    #[test]
    fn unknown_key_names_line_and_suggests() {
        let err = parse_str("base = \"python:3.13\"\n[image]\ncmdd = [\"x\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("cmdd"), "{text}");
        assert!(text.contains("/r/recipe.toml"), "{text}");
        assert_eq!(
            err.hint().unwrap(),
            "did you mean `cmd`? (the README lists every recipe key)"
        );
    }

    #[test]
    fn wrong_types_and_bad_values_are_errors() {
        assert!(parse_str("base = 3\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        let e = parse_str("base = \"python\"\nplatforms = [\"linux/s390x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown architecture") && e.contains("line 2"),
            "{e}"
        );
        assert!(parse_str("base = \"Bad:Ref:\"\n").is_err());
        assert!(parse_str("base = \"p\"\n[image]\nports = [\"http\"]\n").is_err());
        assert!(parse_str("base = \"p\"\npush = \"r:1\"\noci_layout = \"out\"\n").is_err());
    }

    #[test]
    fn stdlib_bytecode_takes_imported_or_all() {
        let parse_mode =
            |v: &str| parse_str(&format!("base = \"p\"\n[python]\nstdlib_bytecode = {v}\n"));
        assert_eq!(
            parse_str("base = \"p\"\n").unwrap().python.stdlib_bytecode,
            StdlibBytecode::Off
        );
        assert_eq!(
            parse_mode("\"imported\"").unwrap().python.stdlib_bytecode,
            StdlibBytecode::Imported
        );
        assert_eq!(
            parse_mode("\"all\"").unwrap().python.stdlib_bytecode,
            StdlibBytecode::All
        );
        let err = parse_mode("\"some\"").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/r/recipe.toml") && text.contains("line 3"),
            "{text}"
        );
        assert!(text.contains("`python.stdlib_bytecode` = `some`"), "{text}");
        assert!(err.hint().unwrap().contains("\"imported\""));
        let wrong_type = parse_mode("true").unwrap_err();
        assert!(wrong_type
            .hint()
            .unwrap()
            .contains("stdlib_bytecode = \"imported\""));
    }

    #[test]
    fn paths_are_relative_to_the_recipe() {
        let r = parse_str("base = \"p\"\noci_layout = \"out\"\n[python]\nrequirements = [\"req.txt\"]\nlibc = \"glibc-2.36\"\n[app]\nsource = \"src\"\n").unwrap();
        assert_eq!(r.python.requirements, vec![PathBuf::from("/r/req.txt")]);
        assert_eq!(r.app.source, Some(PathBuf::from("/r/src")));
        assert_eq!(r.destination, Some(Destination::OciLayout("/r/out".into())));
        assert_eq!(
            r.python.stated.libc,
            Some(Libc::Glibc {
                major: 2,
                minor: 36
            })
        );
    }

    /// `keys::KEYS` lists exactly the fields serde accepts in each table, so
    /// a new key without its row (example, type) fails here.
    #[test]
    fn the_key_table_matches_the_recipe_structs() {
        for table in ["", "python", "app", "image"] {
            let text = if table.is_empty() {
                "base = \"p\"\nnot_a_key = 1\n".to_string()
            } else {
                format!("base = \"p\"\n[{table}]\nnot_a_key = 1\n")
            };
            let message = parse_str(&text).unwrap_err().to_string();
            let (_, valid) = hints::unknown_field(&message).unwrap();
            let listed: Vec<&str> = KEYS
                .iter()
                .filter(|k| k.table == table)
                .map(|k| k.name)
                .collect();
            assert_eq!(valid, listed, "table `{table}`");
        }
    }
}
