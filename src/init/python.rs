//! The base image's Python for `init`: `.python-version` (uv's pin), else the
//! newest official `python:3.X` tag whose version `requires-python` allows.

/// Minor versions of CPython 3 with official `python:3.X-slim` images, oldest first.
pub const OFFICIAL_MINORS: &[u32] = &[9, 10, 11, 12, 13, 14];

/// Python used when the project states none.
pub const DEFAULT_PYTHON: &str = "3.13";

/// The newest official minor `spec` (a PEP 440 specifier set such as
/// `>=3.10,<3.14` or `~=3.12`) allows, as `3.X`; None when none does or
/// the specifier cannot be read.
pub fn newest_allowed(spec: &str) -> Option<String> {
    let clauses: Vec<Clause> = spec
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(Clause::parse)
        .collect::<Option<_>>()?;
    OFFICIAL_MINORS
        .iter()
        .rev()
        // A minor qualifies when one of its releases (3.X.0 … 3.X.30) does.
        .find(|&&minor| (0..=30).any(|patch| clauses.iter().all(|c| c.allows([3, minor, patch]))))
        .map(|minor| format!("3.{minor}"))
}

struct Clause {
    op: &'static str,
    version: [u32; 3],
    /// How many parts were written (`3.12` → 2); `==3.12.*` compares only those.
    parts: usize,
    wildcard: bool,
}

impl Clause {
    fn parse(text: &str) -> Option<Clause> {
        let op = ["~=", "==", "!=", "<=", ">=", "<", ">"]
            .into_iter()
            .find(|op| text.starts_with(op))?;
        let rest = text[op.len()..].trim();
        let (rest, wildcard) = match rest.strip_suffix(".*") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let mut version = [0u32; 3];
        let mut parts = 0;
        for (i, part) in rest.split('.').enumerate() {
            if i >= 3 {
                break;
            }
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            version[i] = digits.parse().ok()?;
            parts = i + 1;
        }
        Some(Clause {
            op,
            version,
            parts,
            wildcard,
        })
    }

    fn allows(&self, v: [u32; 3]) -> bool {
        let prefix_eq = |n: usize| v[..n] == self.version[..n];
        match self.op {
            "==" if self.wildcard => prefix_eq(self.parts),
            "!=" if self.wildcard => !prefix_eq(self.parts),
            "==" => v == self.version,
            "!=" => v != self.version,
            ">=" => v >= self.version,
            "<=" => v <= self.version,
            ">" => v > self.version,
            "<" => v < self.version,
            // `~=3.12` is `>=3.12, ==3.*`; `~=3.12.1` is `>=3.12.1, ==3.12.*`.
            "~=" => v >= self.version && prefix_eq(self.parts.saturating_sub(1).max(1)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_official_minor_the_specifier_allows() {
        let cases = [
            (">=3.14,<4.0", Some("3.14")),
            (">=3.10", Some("3.14")),
            (">=3.10,<3.14", Some("3.13")),
            ("<3.13", Some("3.12")),
            ("==3.12.*", Some("3.12")),
            ("~=3.11", Some("3.14")),
            ("~=3.11.2", Some("3.11")),
            (">3.12", Some("3.14")),
            ("<=3.12.4", Some("3.12")),
            (">=3.9, !=3.14.*", Some("3.13")),
            ("==3.11.4", Some("3.11")),
            (">=4", None),
            ("garbage", None),
        ];
        for (spec, want) in cases {
            assert_eq!(newest_allowed(spec).as_deref(), want, "{spec}");
        }
    }
}
