//! Registry auth, the HTTP side: which `Authorization` a request carries,
//! answering a 401's challenge, and fetching bearer tokens from the realm
//! (basic credentials, or an OAuth2 refresh token for identity tokens).

use super::auth::{parse_challenge, parse_token_response, Challenge};
use super::credentials::{self, Credentials, Secret};
use super::error::{Context, RegistryError};
use super::transport::{protocol, Body, Request, Transport};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};

impl Transport {
    /// The `Authorization` to send for these scopes, fetching a token first
    /// when the registry is known to want one.
    pub(super) async fn authorization(
        &self,
        context: &Context,
        scopes: &[String],
    ) -> Result<Option<Secret>, RegistryError> {
        match self.auth.challenge(&context.registry) {
            Some(Challenge::Bearer { realm, service, .. }) if !scopes.is_empty() => {
                let token = match self.auth.token(&context.registry, scopes) {
                    Some(token) => token,
                    None => {
                        self.fetch_token(context, &realm, service.as_deref(), scopes)
                            .await?
                    }
                };
                Ok(Some(Secret::new(format!("Bearer {}", token.expose()))))
            }
            Some(Challenge::Basic) => Ok(self
                .credentials(&context.registry)
                .await?
                .and_then(|c| c.basic_header())),
            _ => Ok(None),
        }
    }

    /// Remember a 401's challenge and get what it asks for. False when there
    /// is nothing new to try.
    pub(super) async fn answer_challenge(
        &self,
        context: &Context,
        scopes: &[String],
        header: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let Some(challenge) = header.and_then(parse_challenge) else {
            return Ok(false);
        };
        self.auth
            .set_challenge(&context.registry, challenge.clone());
        match challenge {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scopes: Vec<String> = if scopes.is_empty() {
                    scope.into_iter().collect()
                } else {
                    scopes.to_vec()
                };
                self.fetch_token(context, &realm, service.as_deref(), &scopes)
                    .await?;
                Ok(!scopes.is_empty())
            }
            Challenge::Basic => Ok(self
                .credentials(&context.registry)
                .await?
                .is_some_and(|c| c.basic_header().is_some())),
        }
    }

    /// Get a bearer token from the realm, with our credentials if any, and
    /// cache it.
    pub(super) async fn fetch_token(
        &self,
        context: &Context,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Secret, RegistryError> {
        let mut url = Url::parse(realm).map_err(|_| {
            protocol(
                context,
                format!(
                    "the token realm `{}` is not a valid URL",
                    crate::sanitize::escape(realm)
                ),
            )
        })?;
        // The realm may be on another host (that is normal), but the
        // credentials and the token never travel in the clear.
        self.origin
            .check_secret_target(&self.registry_url(context)?, &url)
            .map_err(|message| protocol(context, message))?;
        let request = match self.credentials(&context.registry).await? {
            Some(Credentials::IdentityToken(refresh)) => {
                // OAuth2: exchange the refresh token.
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", "slipway")
                    .append_pair("scope", &scopes.join(" "))
                    .append_pair("refresh_token", refresh.expose());
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                Request::new(Method::POST, url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::Bytes(form.finish().into_bytes()))
            }
            credentials => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let mut request = Request::new(Method::GET, url);
                if let Some(mut value) = credentials
                    .and_then(|c| c.basic_header())
                    .and_then(|h| HeaderValue::from_str(h.expose()).ok())
                {
                    value.set_sensitive(true);
                    request.headers.insert(AUTHORIZATION, value);
                }
                request
            }
        };
        let response = self
            .send_plain(context, &request, None, self.options.retries)
            .await?;
        if !response.status().is_success() {
            return Err(self.error_from(context, &request, response).await);
        }
        let body = self
            .read_limited(context, &request, response, 1 << 20)
            .await?;
        let (token, lifetime) = parse_token_response(&body).map_err(|m| protocol(context, m))?;
        self.auth
            .set_token(&context.registry, scopes, token.clone(), lifetime);
        Ok(token)
    }

    pub(super) async fn credentials(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let mut cache = self.credentials.lock().await;
        if let Some(found) = cache.get(registry) {
            return Ok(found.clone());
        }
        let env = self
            .options
            .env_credentials
            .as_ref()
            .filter(|(host, _)| {
                credentials::normalize_registry(host) == credentials::normalize_registry(registry)
            })
            .map(|(_, found)| found.clone());
        let found =
            credentials::resolve(registry, self.options.docker_config.as_deref(), env).await?;
        cache.insert(registry.to_string(), found.clone());
        Ok(found)
    }
}
