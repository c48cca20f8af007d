//! The recipe's values checked after TOML parsing, in the order a user
//! meets them: each error names the key and its line, with the fix.

use super::values::{check_user, nul_in, valid_port, EPOCH_HINT, MAX_EPOCH};
use super::{
    parse_libc, parse_minor, Destination, RawImage, RawRecipe, Recipe, RecipeError, StdlibBytecode,
    PLATFORMS_HINT, REFERENCE_HINT,
};
use crate::platform::{Libc, Platform};
use crate::reference::Reference;
use std::path::{Path, PathBuf};

/// The recipe's text and file, for errors naming file and line.
pub(super) struct Checker<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

/// The values that checking turns into typed ones.
pub(super) struct Checked {
    pub base: Reference,
    pub platforms: Vec<Platform>,
    pub destination: Option<Destination>,
    pub libc: Option<Libc>,
    pub stdlib_bytecode: StdlibBytecode,
    /// `[app] destination` without a trailing `/` (`/` stays `/`).
    pub app_destination: String,
}

impl Checker<'_> {
    pub fn invalid(&self, message: String, hint: Option<String>) -> RecipeError {
        RecipeError::Invalid {
            path: self.path.to_path_buf(),
            message,
            hint,
        }
    }

    pub fn line_of(&self, key: &str) -> String {
        line_of_key(self.text, key)
    }

    pub fn check(
        &self,
        raw: &RawRecipe,
        abs: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Checked, RecipeError> {
        let base = Reference::parse(&raw.base).map_err(|e| {
            self.invalid(
                format!("{} (key `base`{})", e, self.line_of("base")),
                Some(REFERENCE_HINT.into()),
            )
        })?;
        let platforms = self.platforms(&raw.platforms)?;
        let destination = self.destination(raw, abs)?;
        let libc = self.libc(raw.python.libc.as_deref())?;
        self.python_version(raw.python.version.as_deref())?;
        let app_destination = self.app_destination(raw.app.destination.as_deref())?;
        self.epoch(raw.source_date_epoch)?;
        if let Some(user) = &raw.image.user {
            check_user(user).map_err(|why| {
                self.invalid(
                    format!("`image.user` = `{user}` {why}{}", self.line_of("user")),
                    Some("write `user = \"UID:GID\"` with numbers 0-4294967294 (e.g. `\"1000:1000\"`), or a user name the base has".into()),
                )
            })?;
        }
        if let Some((key, at)) = nul_in(self.text) {
            return Err(self.invalid(
                format!("`{key}` contains a NUL character{}", self.line_of(at.as_str())),
                Some(
                    "no runtime accepts NUL in names, values, paths or commands: remove the `\\u0000`"
                        .into(),
                ),
            ));
        }
        self.ports_and_env(&raw.image)?;
        let stdlib_bytecode = self.stdlib_bytecode(raw.python.stdlib_bytecode.as_deref())?;
        Ok(Checked {
            base,
            platforms,
            destination,
            libc,
            stdlib_bytecode,
            app_destination,
        })
    }

    /// The platforms without repeats; the host's when none is named.
    fn platforms(&self, raw: &[String]) -> Result<Vec<Platform>, RecipeError> {
        let mut platforms = Vec::new();
        for p in raw {
            let platform = Platform::parse(p).map_err(|e| {
                self.invalid(
                    format!("{e} (key `platforms`{})", self.line_of("platforms")),
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
        Ok(platforms)
    }

    /// At most one of `push`, `oci_layout`, `docker_archive`.
    fn destination(
        &self,
        raw: &RawRecipe,
        abs: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Option<Destination>, RecipeError> {
        let mut destinations = Vec::new();
        if let Some(push) = &raw.push {
            let r = Reference::parse(push).map_err(|e| {
                self.invalid(
                    format!("{e} (key `push`{})", self.line_of("push")),
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
            return Err(self.invalid(
                "more than one of `push`, `oci_layout`, `docker_archive` is set".into(),
                Some(
                    "keep one destination in the recipe and override it on the command line if needed"
                        .into(),
                ),
            ));
        }
        Ok(destinations.pop())
    }

    fn libc(&self, raw: Option<&str>) -> Result<Option<Libc>, RecipeError> {
        let Some(text) = raw else {
            return Ok(None);
        };
        parse_libc(text).map(Some).map_err(|e| {
            self.invalid(
                format!("{e} (key `python.libc`{})", self.line_of("libc")),
                Some("write `libc = \"musl\"` (Alpine) or `libc = \"glibc-2.36\"` (Debian), or leave it out to detect it".into()),
            )
        })
    }

    fn python_version(&self, raw: Option<&str>) -> Result<(), RecipeError> {
        match raw {
            Some(v) if parse_minor(v).is_none() => Err(self.invalid(
                format!(
                    "`python.version` = `{v}` is not a Python version like `3.13`{}",
                    self.line_of("version")
                ),
                Some("write the base's minor version, e.g. `version = \"3.13\"`, or leave it out to detect it".into()),
            )),
            _ => Ok(()),
        }
    }

    fn app_destination(&self, raw: Option<&str>) -> Result<String, RecipeError> {
        let destination = raw.unwrap_or("/app");
        let dots = destination
            .split('/')
            .any(|part| part == "." || part == "..");
        if !destination.starts_with('/') || dots {
            return Err(self.invalid(
                format!(
                    "`app.destination` = `{destination}` must be an absolute path without `.` or `..`{}",
                    self.line_of("destination")
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
        Ok(match destination.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        })
    }

    fn epoch(&self, raw: Option<u64>) -> Result<(), RecipeError> {
        match raw {
            Some(epoch) if epoch > MAX_EPOCH => Err(self.invalid(
                format!(
                    "`source_date_epoch` = {epoch} is after the year 9999 (the largest is {MAX_EPOCH}){}",
                    self.line_of("source_date_epoch")
                ),
                Some(EPOCH_HINT.into()),
            )),
            _ => Ok(()),
        }
    }

    fn ports_and_env(&self, image: &RawImage) -> Result<(), RecipeError> {
        if let Some(port) = image.ports.iter().find(|p| !valid_port(p)) {
            return Err(self.invalid(
                format!(
                    "`image.ports` entry `{port}` is not a port like `8000` or `8000/tcp`{}",
                    self.line_of("ports")
                ),
                Some("ports are 1-65535, optionally with `/tcp`, `/udp` or `/sctp`: `ports = [\"8000\", \"9000/udp\"]`".into()),
            ));
        }
        if let Some(key) = image.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(self.invalid(
                format!(
                    "`image.env` key `{key}` is not a valid variable name{}",
                    self.line_of("env")
                ),
                Some(
                    "names are non-empty and have no `=`: `env = { APP_ENV = \"production\" }`"
                        .into(),
                ),
            ));
        }
        Ok(())
    }

    fn stdlib_bytecode(&self, raw: Option<&str>) -> Result<StdlibBytecode, RecipeError> {
        match raw {
            None => Ok(StdlibBytecode::Off),
            Some("imported") => Ok(StdlibBytecode::Imported),
            Some("all") => Ok(StdlibBytecode::All),
            Some(other) => Err(self.invalid(
                format!(
                    "`python.stdlib_bytecode` = `{other}` is not `\"imported\"` or `\"all\"`{}",
                    self.line_of("stdlib_bytecode")
                ),
                Some("write `stdlib_bytecode = \"imported\"` (the stdlib modules the app and its dependencies import) or `\"all\"` (the whole stdlib), or leave it out to add no stdlib bytecode".into()),
            )),
        }
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
