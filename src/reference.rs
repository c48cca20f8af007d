//! Image references: `python:3.13-alpine` → `docker.io/library/python:3.13-alpine`.

use crate::digest::Digest;
use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/python`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("image reference `{text}` is invalid: {why}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest).map_err(|e| bad(&e))?)),
            None => (text, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            check_tag(tag).map_err(|why| bad(&why))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        // `host:port` or `[v6]:port`; a bare `[v6]` has no port to check.
        let port_part = registry
            .rsplit_once(':')
            .filter(|_| !registry.ends_with(']'));
        if let Some((host, port)) = port_part {
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            if host.is_empty() || !port_ok {
                return Err(bad(&format!(
                    "registry `{registry}` must be HOST or HOST:PORT with a port from 1 to 65535"
                )));
            }
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        check_repository(&repository).map_err(|why| bad(&why))?;
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference_str(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A tag: 1-128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !tag.starts_with(['.', '-']);
    match valid {
        true => Ok(()),
        false => Err(format!(
            "tag `{tag}` must be 1-128 of [A-Za-z0-9_.-], not starting with `.` or `-`"
        )),
    }
}

/// A repository: `/`-separated components of lowercase letters, digits
/// and `._-`, each starting and ending with a letter or digit.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository name is empty".into());
    }
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "repository component `{component}` must be lowercase letters, digits and `._-`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_hub_names() {
        let r = Reference::parse("python:3.13-alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/python:3.13-alpine");
        let r = Reference::parse("bitnami/python").unwrap();
        assert_eq!(r.to_string(), "docker.io/bitnami/python:latest");
    }

    #[test]
    fn keeps_registry_ports_and_digests() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:1.0@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.reference_str(), d);
        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("latest"))
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Python:3",
            "python:",
            "python:-x",
            "a//b",
            "python@sha256:xyz",
            "x/:tag",
            "localhost:99999/app",
            "localhost:0/app",
            "registry.example:http/app",
            ":5000/app",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
