//! Registry auth, the pure parts: `WWW-Authenticate` challenges, token scopes,
//! token responses, and the per-(registry, scope) cache of challenges and
//! bearer tokens. The HTTP side is in `transport`.

use super::credentials::Secret;
use crate::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a registry's 401 asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parse a `WWW-Authenticate` value (`Bearer realm="...",service="...",
/// scope="repository:x:pull,push"` or `Basic realm="..."`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm").filter(|r| !r.is_empty())?,
        service: get("service"),
        scope: get("scope").filter(|s| !s.is_empty()),
    })
}

/// `key=value` and `key="quoted, \"escaped\""` pairs, keys lowercased.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key.to_ascii_lowercase(), value));
    }
    out
}

/// Token scope to pull from a repository.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// Token scope to push to (and pull from) a repository.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// A token response: `token` or `access_token`, and its lifetime.
pub fn parse_token_response(body: &[u8]) -> Result<(Secret, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| "the token server's answer is not JSON".to_string())?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "the token server's answer has no `token`".to_string())?;
    // The spec's default and minimum is 60 seconds; a day at most, whatever
    // the server claims (u64::MAX must not overflow an Instant).
    let lifetime = Duration::from_secs(
        answer
            .expires_in
            .unwrap_or(60)
            .clamp(60, MAX_TOKEN_LIFETIME),
    );
    Ok((Secret::new(token), lifetime))
}

const MAX_TOKEN_LIFETIME: u64 = 24 * 3600;

/// Challenges per registry and bearer tokens per (registry, scopes).
#[derive(Default)]
pub struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), (Secret, Instant)>>,
}

/// Tokens are dropped this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

impl AuthCache {
    pub fn challenge(&self, registry: &str) -> Option<Challenge> {
        lock(&self.challenges).get(registry).cloned()
    }

    pub fn set_challenge(&self, registry: &str, challenge: Challenge) {
        lock(&self.challenges).insert(registry.to_string(), challenge);
    }

    pub fn token(&self, registry: &str, scopes: &[String]) -> Option<Secret> {
        let key = (registry.to_string(), scopes.join(" "));
        let mut tokens = lock(&self.tokens);
        match tokens.get(&key) {
            Some((token, expires)) if Instant::now() < *expires => Some(token.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn set_token(&self, registry: &str, scopes: &[String], token: Secret, lifetime: Duration) {
        let now = Instant::now();
        let expires = now
            .checked_add(lifetime.saturating_sub(EXPIRY_MARGIN))
            .unwrap_or(now);
        lock(&self.tokens).insert((registry.to_string(), scopes.join(" ")), (token, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/python:pull,push".into()),
            })
        );
        let c = parse_challenge(
            r#"bearer  realm = "http://127.0.0.1:1/token" , service=reg, error="insufficient_scope", x="a\"b""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn parses_basic_and_rejects_the_rest() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn token_responses() {
        let (t, life) = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.expose(), life), ("abc", Duration::from_secs(300)));
        let (t, life) = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.expose(), life), ("xyz", Duration::from_secs(60)));
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        let (_, life) =
            parse_token_response(br#"{"token":"t","expires_in":18446744073709551615}"#).unwrap();
        assert_eq!(life, Duration::from_secs(24 * 3600));
        let cache = AuthCache::default();
        cache.set_token("r", &[], Secret::new("t"), Duration::MAX);
    }

    #[test]
    fn cache_keys_on_registry_and_scopes() {
        let cache = AuthCache::default();
        let scopes = vec![push_scope("app"), pull_scope("base")];
        cache.set_token("r", &scopes, Secret::new("t"), Duration::from_secs(60));
        assert_eq!(cache.token("r", &scopes), Some(Secret::new("t")));
        assert_eq!(cache.token("r", &[pull_scope("app")]), None);
        assert_eq!(cache.token("other", &scopes), None);
        cache.set_token("r", &scopes, Secret::new("old"), Duration::from_secs(5));
        assert_eq!(cache.token("r", &scopes), None, "expired within the margin");
    }
}
