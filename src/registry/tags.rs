//! Listing a repository's tags (`GET /v2/<repo>/tags/list`, paged by its
//! `Link` header) and deleting manifests: what `slipway cache prune` needs.

use super::auth::{pull_scope, push_scope};
use super::client::RegistryClient;
use super::error::{Context, RegistryError};
use super::transport::{protocol, Request};
use crate::digest::Digest;
use reqwest::header::LINK;
use reqwest::{Method, StatusCode};

/// One page of a tag list is read whole; more is refused.
const PAGE_LIMIT: usize = 4 << 20;
/// Pages followed at most: 100,000 tags (a hostile `Link` loop ends here).
const MAX_PAGES: usize = 100;
const PAGE_SIZE: usize = 1000;

impl RegistryClient {
    /// Every tag of `repository` (an unknown repository has none).
    pub async fn list_tags(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let context = Context::new("list tags", registry, repository);
        let mut url = self
            .transport
            .url(&context, &format!("{repository}/tags/list"))?;
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let request = Request::new(Method::GET, url.clone());
            let response = self
                .transport
                .send(&context, &request, &[pull_scope(repository)])
                .await?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(tags),
                _ => {
                    return Err(self
                        .transport
                        .error_from(&context, &request, response)
                        .await)
                }
            }
            let next = next_page(response.headers().get(LINK).and_then(|v| v.to_str().ok()));
            let body = self
                .transport
                .read_limited(&context, &request, response, PAGE_LIMIT)
                .await?;
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| protocol(&context, format!("the tag list is not JSON: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                // Only a link on the registry's own origin is followed.
                Some(path) => match url.join(&path) {
                    Ok(next) if next.origin() == url.origin() => url = next,
                    _ => {
                        return Err(protocol(
                            &context,
                            "the tag list's next page is elsewhere".into(),
                        ))
                    }
                },
                None => return Ok(tags),
            }
        }
        Err(protocol(
            &context,
            format!("the tag list has more than {MAX_PAGES} pages"),
        ))
    }

    /// DELETE a manifest by digest (Distribution needs
    /// `REGISTRY_STORAGE_DELETE_ENABLED=true`). A manifest already gone is fine.
    pub async fn delete_manifest(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let context = Context::new("delete manifest", registry, repository).with_reference(digest);
        let url = self
            .transport
            .url(&context, &format!("{repository}/manifests/{digest}"))?;
        let request = Request::new(Method::DELETE, url);
        let scopes = [
            push_scope(repository),
            format!("repository:{repository}:delete"),
        ];
        let response = self.transport.send(&context, &request, &scopes).await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self
                .transport
                .error_from(&context, &request, response)
                .await),
        }
    }
}

/// The target of `Link: </v2/...>; rel="next"`.
fn next_page(link: Option<&str>) -> Option<String> {
    let link = link?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn reads_the_next_link() {
        assert_eq!(
            next_page(Some("</v2/c/tags/list?last=x&n=2>; rel=\"next\"")).as_deref(),
            Some("/v2/c/tags/list?last=x&n=2")
        );
        assert_eq!(next_page(Some("</a>; rel=\"prev\"")), None);
        assert_eq!(next_page(None), None);
    }
}
