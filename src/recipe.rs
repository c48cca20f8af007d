//! Stage 1, "recipe": the TOML file that says what to build. Parsing is strict:
//! unknown keys and wrong types are errors naming the file, line and key.

use crate::platform::{Libc, Platform};
use crate::reference::Reference;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod checks;
mod hints;
mod keys;
mod values;
pub use checks::check_inputs;
use checks::Checker;
use hints::toml_hint;
pub use keys::{Key, KEYS};
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
    pub tests_bytecode: Option<bool>,
    pub stdlib_bytecode: Option<String>,
    #[serde(default)]
    pub reuse_wheel_compression: bool,
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
    /// Whether third-party packages' `tests`/`test` dirs get `.pyc` too
    /// (off: code no image runs in production; most of a big set's compile).
    pub tests_bytecode: bool,
    /// Which of the base's stdlib modules get a `.pyc` layer.
    pub stdlib_bytecode: StdlibBytecode,
    /// Big files of local wheels go into the site-packages layer as the
    /// wheels' own deflate streams (the layer's digest then depends on the
    /// wheel files, not only on what they install).
    pub reuse_wheel_compression: bool,
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

/// The recipe's keys and values as TOML gives them; errors name the line
/// and, where toml's message is cryptic, say what to write.
fn read_raw(checker: &Checker) -> Result<RawRecipe, RecipeError> {
    let text = checker.text;
    toml::from_str(text).map_err(|e| {
        let mut message = e.to_string().trim_end().to_string();
        let hint = toml_hint(text, &message, e.span().map(|span| span.start));
        // toml calls every error a parse error; valid TOML with a key or
        // value a recipe doesn't take is not one.
        if toml::from_str::<toml::Table>(text).is_ok() {
            message = message.replacen("TOML parse error at line", "line", 1);
        }
        checker.invalid(message, hint)
    })
}

/// Parses recipe text; `path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
    let checker = Checker { text, path };
    let raw = read_raw(&checker)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let checked = checker.check(&raw, &abs)?;
    let bytecode = raw.python.bytecode.unwrap_or(true);
    Ok(Recipe {
        file: path.to_path_buf(),
        base: checked.base,
        platforms: checked.platforms,
        platforms_origin: "the recipe's `platforms`".into(),
        source_date_epoch: raw.source_date_epoch,
        destination: checked.destination,
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
            tests_bytecode: raw.python.tests_bytecode.unwrap_or(false),
            stdlib_bytecode: checked.stdlib_bytecode,
            reuse_wheel_compression: raw.python.reuse_wheel_compression,
            stated: StatedFacts {
                origin: ["version", "libc", "interpreter", "site_packages"]
                    .into_iter()
                    .map(|key| {
                        let at = format!("`{}`{}", path.display(), checker.line_of(key));
                        (key.to_string(), at)
                    })
                    .collect(),
                version: raw.python.version,
                libc: checked.libc,
                interpreter: raw.python.interpreter,
                site_packages: raw.python.site_packages,
            },
        },
        app: AppSettings {
            source: raw.app.source.as_deref().map(abs),
            destination: checked.app_destination,
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

pub const REFERENCE_HINT: &str = "references look like `python:3.13-alpine` or `registry.example:5000/team/app:1.0`: a lowercase repository, an optional `:tag` and/or `@sha256:` digest";
pub const PLATFORMS_HINT: &str =
    "supported platforms: `linux/amd64`, `linux/arm64` (e.g. `platforms = [\"linux/amd64\"]`)";

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
        assert!(!r.python.tests_bytecode);
        let with_tests = parse_str("base = \"p\"\n[python]\ntests_bytecode = true\n").unwrap();
        assert!(with_tests.python.tests_bytecode);
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
