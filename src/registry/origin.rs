//! Where a request may go and what it may carry: credentials and tokens
//! stay on the registry's own origin (scheme, host, port), except the token
//! request to the realm the registry's challenge names; nothing goes from
//! HTTPS to plain HTTP unless the user marked the target insecure.

use reqwest::Url;

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// `--insecure-registry` entries: `host` (any port) or `host:port`.
    pub insecure: Vec<String>,
}

/// Same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// `host:port` as a user would pass it to `--insecure-registry`.
pub fn host_port(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

impl OriginPolicy {
    /// Whether the user allowed plain HTTP to `url`'s host.
    pub fn is_insecure(&self, url: &Url) -> bool {
        let host_port = host_port(url);
        let host = url.host_str().unwrap_or("");
        self.insecure.iter().any(|i| *i == host_port || i == host)
    }

    /// A Location, redirect or realm that leads from HTTPS to plain HTTP is
    /// refused unless its host was marked insecure.
    pub fn check_downgrade(&self, from: &Url, to: &Url) -> Result<(), String> {
        if from.scheme() == "https" && to.scheme() == "http" && !self.is_insecure(to) {
            return Err(format!(
                "refusing to go from `{}` to `{}`: that is a downgrade from HTTPS to plain HTTP; \
                 pass `--insecure-registry {}` if that host may be spoken to in the clear",
                redact_url(from),
                redact_url(to),
                host_port(to)
            ));
        }
        Ok(())
    }

    /// Whether credentials or a token may be sent to `to` (a token realm)
    /// for the registry at `registry`: over HTTPS; over plain HTTP to a
    /// loopback host when the registry itself is plain; or to a host marked
    /// insecure.
    pub fn check_secret_target(&self, registry: &Url, to: &Url) -> Result<(), String> {
        self.check_downgrade(registry, to)?;
        let loopback = to.host_str().is_some_and(is_loopback);
        if to.scheme() == "https" || self.is_insecure(to) || loopback {
            return Ok(());
        }
        Err(format!(
            "refusing to send credentials for `{}` to `{}` over plain HTTP; \
             pass `--insecure-registry {}` if that host may be spoken to in the clear",
            redact_url(registry),
            redact_url(to),
            host_port(to)
        ))
    }

    /// reqwest's redirect policy: at most 10 hops, no downgrade. (reqwest
    /// drops `Authorization` itself when a redirect changes host or port.)
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > 10 {
                return attempt.error("too many redirects");
            }
            let from = attempt.previous().last().cloned();
            match from.map(|from| policy.check_downgrade(&from, attempt.url())) {
                Some(Err(message)) => attempt.error(message),
                _ => attempt.follow(),
            }
        })
    }
}

/// The host of `host[:port]` (IPv6 in brackets kept as is).
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.split_inclusive(']').next().unwrap_or(registry);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// 127.0.0.0/8, `localhost`, `[::1]`, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL fit for logs and errors: no user info, no query (upload and
/// redirect URLs may carry signatures or state), no fragment.
pub fn redact_url(url: &Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    let had_query = clean.query().is_some();
    clean.set_query(None);
    clean.set_fragment(None);
    let mut text = clean.to_string();
    if had_query {
        text.push_str("?<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn redacts_urls() {
        let url =
            Url::parse("https://user:pw@host:5000/v2/app/blobs/uploads/u?_state=abc&digest=x#f")
                .unwrap();
        let text = redact_url(&url);
        assert_eq!(text, "https://host:5000/v2/app/blobs/uploads/u?<redacted>");
        let url = Url::parse("http://h/token").unwrap();
        assert_eq!(redact_url(&url), "http://h/token");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(&url("https://r:443/v2/"), &url("https://r/x")));
        assert!(!same_origin(&url("https://r/v2/"), &url("http://r/v2/")));
        assert!(!same_origin(&url("http://r:5000/"), &url("http://r:5001/")));
        assert!(!same_origin(
            &url("http://127.0.0.2:5000/"),
            &url("http://127.0.0.3:5000/")
        ));
    }

    #[test]
    fn downgrades_are_refused_unless_marked_insecure() {
        let policy = OriginPolicy {
            insecure: vec!["plain.lan".into(), "127.0.0.3:81".into()],
        };
        let registry = url("https://reg.example");
        let message = policy
            .check_downgrade(&registry, &url("http://cdn.example/up?sig=1"))
            .unwrap_err();
        assert!(message.contains("`https://reg.example/`"), "{message}");
        assert!(
            message.contains("`http://cdn.example/up?<redacted>`"),
            "{message}"
        );
        assert!(
            message.contains("--insecure-registry cdn.example:80"),
            "{message}"
        );
        assert!(policy
            .check_downgrade(&registry, &url("http://plain.lan:9/x"))
            .is_ok());
        assert!(policy
            .check_downgrade(&registry, &url("http://127.0.0.3:81/x"))
            .is_ok());
        assert!(policy
            .check_downgrade(&registry, &url("http://127.0.0.3:82/x"))
            .is_err());
        assert!(policy
            .check_downgrade(&url("http://127.0.0.1:5000"), &url("http://a/x"))
            .is_ok());
    }

    #[test]
    fn secrets_travel_over_https_or_loopback_from_a_plain_registry() {
        let policy = OriginPolicy::default();
        let plain = url("http://127.0.0.1:5000/");
        let tls = url("https://127.0.0.2:5000/");
        assert!(policy
            .check_secret_target(&plain, &url("http://127.0.0.3:1/token"))
            .is_ok());
        assert!(policy
            .check_secret_target(&plain, &url("http://auth.example/token"))
            .is_err());
        assert!(policy
            .check_secret_target(&tls, &url("http://127.0.0.3:1/token"))
            .is_err());
        assert!(policy
            .check_secret_target(&tls, &url("https://auth.example/token"))
            .is_ok());
    }
}
