//! `slipway cache prune`: deletes old entries of a cache repo.

use super::{input_error, registry_client, CommonArgs};
use clap::{Args, Subcommand};
use slipway::cache_repo::prune;
use slipway::error::Hint;
use slipway::error::{Error, ErrorKind, Result};

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Delete the cache repo's entries older than an age (their manifests;
    /// the registry's garbage collection then frees the blobs).
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The cache repo (REGISTRY/REPO), as given to `slipway build --cache-repo`.
    #[arg(long, value_name = "REGISTRY/REPO", env = "SLIPWAY_CACHE_REPO")]
    pub cache_repo: Option<String>,
    /// Delete entries created longer ago than this: `30d`, `12h`, `45m`, `90s`.
    #[arg(long, value_name = "AGE")]
    pub older_than: String,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: CacheArgs) -> Result<()> {
    let CacheCommand::Prune(args) = args.command;
    let common = &args.common;
    let repo = super::cache_repo(args.cache_repo.as_deref(), common)?.ok_or_else(|| {
        input_error("no cache repo to prune".into())
            .with_hint("pass `--cache-repo REGISTRY/REPO` (or set SLIPWAY_CACHE_REPO)")
    })?;
    let older_than = prune::parse_age(&args.older_than).map_err(|e| {
        input_error(format!("--older-than: {e}")).with_hint("e.g. `--older-than 30d`")
    })?;
    let (client, _) = registry_client(common, Some(&repo.registry))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = prune::prune(&client, &repo, older_than, now, args.dry_run)
        .await
        .map_err(|e| {
            let hint = e.hint().or_else(|| {
                (e.status() == Some(405)).then(|| {
                    "the registry does not allow deletes: run Distribution with REGISTRY_STORAGE_DELETE_ENABLED=true".to_string()
                })
            });
            Error::wrap(ErrorKind::Registry, e, hint)
        })?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        for tag in &report.skipped {
            eprintln!("warning: `{tag}` is not a readable slipway entry; kept");
        }
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!(
            "{verb} {} of {} entries in `{repo}`",
            report.deleted.len(),
            report.entries
        );
    }
    Ok(())
}
