//! Every recipe key, defined once: where it goes, what it takes and a
//! correctly typed example. The hints for unknown keys and wrong types are
//! derived from this table (and the words Dockerfiles and compose files use
//! for the same jobs), so a new key is one row here plus its serde field.

/// One recipe key.
pub struct Key {
    /// The table it belongs to: `""` (top level), `python`, `app` or `image`.
    pub table: &'static str,
    pub name: &'static str,
    /// What the value must be, for type errors.
    pub takes: &'static str,
    pub example: &'static str,
}

const fn key(
    table: &'static str,
    name: &'static str,
    takes: &'static str,
    example: &'static str,
) -> Key {
    Key {
        table,
        name,
        takes,
        example,
    }
}

const STRING: &str = "a string";
const STRINGS: &str = "a list of strings";
const BOOL: &str = "`true` or `false`";
const TABLE: &str = "a table";
const STRING_MAP: &str = "a table of string values";

pub const KEYS: &[Key] = &[
    key("", "base", STRING, "base = \"python:3.13-alpine\""),
    key(
        "",
        "platforms",
        STRINGS,
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
    ),
    key(
        "",
        "source_date_epoch",
        "an integer (seconds since 1970)",
        "source_date_epoch = 1700000000",
    ),
    key(
        "",
        "push",
        STRING,
        "push = \"registry.example:5000/team/app:1.0\"",
    ),
    key("", "oci_layout", STRING, "oci_layout = \"out/oci\""),
    key(
        "",
        "docker_archive",
        STRING,
        "docker_archive = \"out/app.tar\"",
    ),
    key("", "python", TABLE, "[python]"),
    key("", "app", TABLE, "[app]"),
    key("", "image", TABLE, "[image]"),
    key(
        "python",
        "requirements",
        STRINGS,
        "requirements = [\"requirements.txt\"]",
    ),
    key("python", "project", STRING, "project = \".\""),
    key("python", "package", STRING, "package = \"backend\""),
    key(
        "python",
        "index_url",
        STRING,
        "index_url = \"https://index.internal.example/simple\"",
    ),
    key(
        "python",
        "extra_index_urls",
        STRINGS,
        "extra_index_urls = [\"https://example.org/simple\"]",
    ),
    key("python", "find_links", STRINGS, "find_links = [\"wheels\"]"),
    key("python", "offline", BOOL, "offline = true"),
    key("python", "allow_sdist", BOOL, "allow_sdist = false"),
    key("python", "bytecode", BOOL, "bytecode = true"),
    key("python", "tests_bytecode", BOOL, "tests_bytecode = true"),
    key(
        "python",
        "stdlib_bytecode",
        "`\"imported\"` or `\"all\"`",
        "stdlib_bytecode = \"imported\"",
    ),
    key(
        "python",
        "reuse_wheel_compression",
        BOOL,
        "reuse_wheel_compression = true",
    ),
    key("python", "version", STRING, "version = \"3.13\""),
    key("python", "libc", STRING, "libc = \"musl\""),
    key(
        "python",
        "interpreter",
        STRING,
        "interpreter = \"/usr/local/bin/python3.13\"",
    ),
    key(
        "python",
        "site_packages",
        STRING,
        "site_packages = \"/usr/local/lib/python3.13/site-packages\"",
    ),
    key("app", "source", STRING, "source = \"src\""),
    key("app", "destination", STRING, "destination = \"/app\""),
    key(
        "app",
        "excludes",
        STRINGS,
        "excludes = [\"tests\", \"*.log\"]",
    ),
    key("app", "bytecode", BOOL, "bytecode = true"),
    key(
        "image",
        "entrypoint",
        STRINGS,
        "entrypoint = [\"python\", \"-m\", \"app\"]",
    ),
    key("image", "cmd", STRINGS, "cmd = [\"uvicorn\", \"app:app\"]"),
    key("image", "workdir", STRING, "workdir = \"/app\""),
    key(
        "image",
        "env",
        STRING_MAP,
        "env = { APP_ENV = \"production\" }",
    ),
    key("image", "ports", STRINGS, "ports = [\"8000/tcp\"]"),
    key("image", "user", STRING, "user = \"1000:1000\""),
    key(
        "image",
        "labels",
        STRING_MAP,
        "labels = { \"org.opencontainers.image.title\" = \"app\" }",
    ),
    key(
        "image",
        "annotations",
        STRING_MAP,
        "annotations = { \"org.opencontainers.image.version\" = \"1.0\" }",
    ),
];

/// Words from Dockerfiles and compose files → the recipe key doing that job
/// (table, key).
const FOREIGN: &[(&str, &str, &str)] = &[
    ("from", "", "base"),
    ("platform", "", "platforms"),
    ("dest", "app", "destination"),
    ("destination", "app", "destination"),
    ("copy", "app", "source"),
    ("add", "app", "source"),
    ("context", "app", "source"),
    ("build", "app", "source"),
    ("src", "app", "source"),
    ("source", "app", "source"),
    ("dockerignore", "app", "excludes"),
    ("exclude", "app", "excludes"),
    ("expose", "image", "ports"),
    ("port", "image", "ports"),
    ("ports", "image", "ports"),
    ("workdir", "image", "workdir"),
    ("working_dir", "image", "workdir"),
    ("entrypoint", "image", "entrypoint"),
    ("cmd", "image", "cmd"),
    ("command", "image", "cmd"),
    ("env", "image", "env"),
    ("environment", "image", "env"),
    ("user", "image", "user"),
    ("label", "image", "labels"),
    ("labels", "image", "labels"),
    ("requirements", "python", "requirements"),
    ("pip", "python", "requirements"),
];

/// Dockerfile and compose words with no recipe equivalent, and why.
const NO_EQUIVALENT: &[(&str, &str)] = &[
    ("run", "slipway runs no commands while building: list Python dependencies in `[python] requirements` and app files under `[app] source`"),
    ("arg", "a recipe has no build arguments: write the value itself"),
    ("volume", "volumes are chosen when the container runs, not in the image"),
    ("volumes", "volumes are chosen when the container runs, not in the image"),
    ("healthcheck", "slipway images carry no health check: configure it in your orchestrator"),
    ("shell", "slipway images have no build shell; `[image] cmd` and `entrypoint` are exec lists"),
];

/// The `[table]` name as printed in hints (`` for the top level).
fn place(table: &str) -> String {
    if table.is_empty() {
        "at the top level".into()
    } else {
        format!("in `[{table}]`")
    }
}

fn find(table: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.table == table && k.name == name)
}

/// The hint for "unknown field `word`" found in `table`; `valid` are the
/// keys serde says are valid there.
pub fn unknown_key_hint(word: &str, table: &str, valid: &[String]) -> String {
    let lower = word.to_ascii_lowercase();
    if let Some(&(_, to_table, to_key)) = FOREIGN.iter().find(|(w, _, _)| *w == lower) {
        if let Some(key) = find(to_table, to_key) {
            return if to_table == table && valid.iter().any(|v| v == to_key) {
                format!("did you mean `{to_key}`? e.g. `{}`", key.example)
            } else {
                format!(
                    "`{word}` is not a key {}; the recipe's key for that is `{to_key}` {}, e.g. `{}`",
                    place(table),
                    place(to_table),
                    key.example
                )
            };
        }
    }
    if let Some((_, why)) = NO_EQUIVALENT.iter().find(|(w, _)| *w == lower) {
        return format!("`{word}` has no recipe equivalent: {why}");
    }
    if let Some(best) = closest(&lower, valid) {
        return format!("did you mean `{best}`? (the README lists every recipe key)");
    }
    if let Some(elsewhere) = KEYS.iter().find(|k| k.name == lower && k.table != table) {
        return format!(
            "`{word}` goes {}, e.g. `{}`",
            place(elsewhere.table),
            elsewhere.example
        );
    }
    let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
    format!("the keys valid {} are {}", place(table), list.join(", "))
}

/// The valid key nearest to `word`: a prefix of it, or within a small edit distance.
fn closest<'a>(word: &str, valid: &'a [String]) -> Option<&'a str> {
    if word.len() >= 3 {
        if let Some(prefixed) = valid.iter().find(|v| v.starts_with(word)) {
            return Some(prefixed);
        }
    }
    let best = valid.iter().min_by_key(|v| edit_distance(word, v))?;
    let allowed = (word.chars().count() / 3).clamp(1, 3);
    (edit_distance(word, best) <= allowed).then_some(best.as_str())
}

/// The hint for a value of the wrong type under `name` (in `table` if known).
pub fn type_hint(name: &str, table: Option<&str>) -> Option<String> {
    let key = table
        .and_then(|t| find(t, name))
        .or_else(|| KEYS.iter().find(|k| k.name == name))?;
    Some(format!(
        "`{}` takes {}: write it like `{}` (the README lists every recipe key)",
        key.name, key.takes, key.example
    ))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(table: &str) -> Vec<String> {
        KEYS.iter()
            .filter(|k| k.table == table)
            .map(|k| k.name.to_string())
            .collect()
    }

    #[test]
    fn hints_look_only_at_keys_valid_in_that_table() {
        let app = valid("app");
        assert_eq!(
            unknown_key_hint("dest", "app", &app),
            "did you mean `destination`? e.g. `destination = \"/app\"`"
        );
        assert!(unknown_key_hint("sorce", "app", &app).starts_with("did you mean `source`?"));
        let top = valid("");
        assert!(unknown_key_hint("run", "", &top).contains("runs no commands"));
        let expose = unknown_key_hint("expose", "image", &valid("image"));
        assert!(expose.contains("`ports`"), "{expose}");
        let workdir = unknown_key_hint("workdir", "", &top);
        assert!(workdir.contains("in `[image]`"), "{workdir}");
        assert!(unknown_key_hint("zzzzzz", "app", &app).contains("`excludes`"));
    }

    #[test]
    fn the_readme_table_lists_every_key() {
        let readme = include_str!("../../README.md");
        for k in KEYS.iter().filter(|k| k.takes != TABLE) {
            let row = if k.table.is_empty() {
                format!("| `{}` |", k.name)
            } else {
                format!("| `[{}] {}` |", k.table, k.name)
            };
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn every_key_is_unique_in_its_table_and_has_an_example() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(k.example.contains(k.name), "{}: {}", k.name, k.example);
            assert!(!KEYS[..i]
                .iter()
                .any(|o| o.table == k.table && o.name == k.name));
        }
        for (_, table, name) in FOREIGN {
            assert!(find(table, name).is_some(), "{table}.{name}");
        }
    }
}
