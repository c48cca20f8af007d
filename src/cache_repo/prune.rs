//! `slipway cache prune`: deletes the cache repo's entries created longer
//! ago than a given age (their manifests; the registry's own garbage
//! collection then frees blobs no manifest names any more).

use super::entry;
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryError};
use std::time::Duration;

#[derive(Debug, Default, serde::Serialize)]
pub struct PruneReport {
    /// Entries (tags) seen.
    pub entries: usize,
    /// Tags of the entries deleted (or that would be, on a dry run).
    pub deleted: Vec<String>,
    /// Tags with slipway's prefix that are not readable entries: kept.
    pub skipped: Vec<String>,
}

/// `30d`, `12h`, `45m`, `90s` (a bare number is seconds).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let bad = || format!("age `{text}` is not a number followed by d, h, m or s (e.g. `30d`)");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// Deletes entries older than `older_than` at `now` (seconds since the
/// epoch); `dry_run` only lists them.
pub async fn prune(
    client: &RegistryClient,
    repo: &Reference,
    older_than: Duration,
    now: u64,
    dry_run: bool,
) -> Result<PruneReport, RegistryError> {
    let (registry, repository) = (&repo.registry, &repo.repository);
    let mut report = PruneReport::default();
    let tags = client.list_tags(registry, repository).await?;
    let cutoff = now.saturating_sub(older_than.as_secs());
    for tag in tags.into_iter().filter(|t| entry::is_entry_tag(t)) {
        report.entries += 1;
        let manifest = match client
            .get_untrusted_manifest(registry, repository, &tag)
            .await
        {
            Ok(manifest) => manifest,
            // Deleted meanwhile (by another prune, or a shared manifest).
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => return Err(e),
        };
        let Some(created) = entry::created(&manifest.bytes) else {
            report.skipped.push(tag);
            continue;
        };
        if created >= cutoff {
            continue;
        }
        if !dry_run {
            client
                .delete_manifest(registry, repository, &manifest.digest)
                .await?;
        }
        report.deleted.push(tag);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_age("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_age("90").unwrap().as_secs(), 90);
        for bad in ["", "d", "3w", "-1d", "1.5d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
