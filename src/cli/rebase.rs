//! `slipway rebase`: an image's slipway layers on a new (patched) base.

use super::{input_error, registry_client, CommonArgs};
use clap::Args;
use slipway::error::Result;
use slipway::inspect::Target;
use slipway::rebase::run::{self, RebaseOptions};
use slipway::recipe::Destination;
use slipway::reference::Reference;
use slipway::report::Log;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RebaseArgs {
    /// The image: a registry reference or `oci:DIR[:TAG]` (built by slipway).
    pub image: String,
    /// The new base [default: the image's own base name, resolved again].
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Read the new base from this OCI layout dir instead of a registry.
    #[arg(long, value_name = "DIR")]
    pub base_layout: Option<PathBuf>,
    /// Push the result here [default: back to IMAGE].
    #[arg(long, value_name = "REF", conflicts_with = "oci_layout")]
    pub push: Option<String>,
    /// Write the result as an OCI layout to this dir.
    #[arg(long, value_name = "DIR")]
    pub oci_layout: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: RebaseArgs) -> Result<()> {
    let image = Target::parse(&args.image).map_err(input_error)?;
    if matches!(image, Target::DockerArchive(_)) {
        return Err(input_error(format!(
            "`{image}`: rebase reads registries and OCI layouts, not docker-archives"
        ))
        .with_hint("rebase the image where it was pushed, or build an OCI layout"));
    }
    let reference = |text: &str, what: &str| {
        Reference::parse(text).map_err(|e| {
            input_error(format!("{what}: {e}")).with_hint(slipway::recipe::REFERENCE_HINT)
        })
    };
    let destination = match (&args.push, &args.oci_layout, &image) {
        (Some(r), _, _) => Destination::Push(reference(r, "--push")?),
        (_, Some(dir), _) => Destination::OciLayout(dir.clone()),
        (_, _, Target::Registry(r)) => Destination::Push(r.clone()),
        (_, _, Target::Layout { dir, .. }) => Destination::OciLayout(dir.clone()),
        (_, _, Target::DockerArchive(_)) => unreachable!("refused above"),
    };
    slipway::publish::check_destination(&destination)
        .map_err(|e| input_error(e).with_hint("pass a new path or an existing OCI layout dir"))?;
    let base = args
        .base
        .as_deref()
        .map(|b| reference(b, "--base"))
        .transpose()?;
    let common = &args.common;
    let push_registry = match &destination {
        Destination::Push(r) => Some(r.registry.clone()),
        _ => None,
    };
    let (client, mirrors) = registry_client(common, push_registry.as_deref())?;
    let log = Log {
        quiet: common.quiet || common.json,
        verbose: common.verbose,
    };
    let options = RebaseOptions {
        image,
        base,
        base_layout: args.base_layout.clone(),
        destination,
        cache_dir: common
            .cache_dir
            .clone()
            .unwrap_or_else(slipway::cache::Cache::default_dir),
        mirrors,
        log,
    };
    let result = run::run(&client, &options).await;
    log.finish();
    let report = result?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        if !common.quiet {
            let was = report.old_base_digest.as_deref().unwrap_or("unknown");
            eprintln!(
                "rebased onto {}@{} (was on {was})",
                report.base, report.base_digest
            );
        }
        println!("{}@{}", report.destination, report.digest);
    }
    Ok(())
}
