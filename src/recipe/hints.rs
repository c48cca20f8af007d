//! Hints for toml's errors: where in the text the error is (table, key,
//! line) and what to write instead, from the key table in `keys`.

use super::keys;

/// The key assigned on the line holding byte `offset` of `text`, if any.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = line_start(text, offset);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.rsplit('.').next().unwrap_or(key).to_string())
}

/// A hint for a toml error: unknown keys get the valid keys of their table
/// (and Dockerfile words their recipe key), wrong types the expected type,
/// real syntax errors a pointer to TOML itself.
pub(super) fn toml_hint(text: &str, message: &str, offset: Option<usize>) -> Option<String> {
    if message.contains("missing field `base`") {
        return Some(
            "every recipe needs a base image, e.g. `base = \"python:3.13-alpine\"`".into(),
        );
    }
    let table = offset.map(|o| table_at(text, o)).unwrap_or_default();
    if let Some((word, valid)) = unknown_field(message) {
        return Some(keys::unknown_key_hint(&word, &table, &valid));
    }
    if message.contains("invalid type") || message.contains("invalid value") {
        let offset = offset?;
        let key = key_at(text, offset).or_else(|| {
            let line = text[line_start(text, offset)..].lines().next()?;
            header(line).and_then(|h| dotted(h).pop().map(str::to_string))
        })?;
        return keys::type_hint(&key, Some(&table));
    }
    if toml::from_str::<toml::Table>(text).is_ok() {
        return None;
    }
    Some("the recipe must be valid TOML (https://toml.io): check quotes, brackets and `key = value` pairs".into())
}

/// serde's "unknown field `x`, expected one of `a`, `b`" → (`x`, [a, b]).
pub(super) fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let start = message.find("unknown field `")? + "unknown field `".len();
    let word = &message[start..start + message[start..].find('`')?];
    let rest = &message[start + word.len()..];
    let valid = rest
        .split_once("expected")
        .map(|(_, list)| {
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some((word.to_string(), valid))
}

/// The table in force at byte `offset`: the last `[header]` before its line
/// (or the parent of the header on it) plus the dotted prefix of the key
/// on it (`app.dest = ...`).
fn table_at(text: &str, offset: usize) -> String {
    let start = line_start(text, offset);
    let line = text[start..].lines().next().unwrap_or("");
    let mut path: Vec<&str> = match header(line) {
        Some(this) => {
            let mut parts = dotted(this);
            parts.pop();
            return parts.join(".");
        }
        None => text[..start]
            .lines()
            .rev()
            .find_map(header)
            .map(dotted)
            .unwrap_or_default(),
    };
    if let Some((key, _)) = line.split_once('=') {
        let mut parts = dotted(key);
        parts.pop();
        path.extend(parts);
    }
    path.join(".")
}

/// The byte where the line holding `offset` starts.
fn line_start(text: &str, offset: usize) -> usize {
    let bytes = text.as_bytes();
    bytes[..offset.min(bytes.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// `[app]` / `[[x.y]]` → `app` / `x.y`.
fn header(line: &str) -> Option<&str> {
    let line = line.trim_start().strip_prefix('[')?;
    let line = line.strip_prefix('[').unwrap_or(line);
    Some(line.split(']').next().unwrap_or(line))
}

/// `a . "b"` → [a, b].
fn dotted(key: &str) -> Vec<&str> {
    key.split('.')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|p| !p.is_empty())
        .collect()
}
