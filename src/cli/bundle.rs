//! `slipway bundle`: everything a recipe needs, for an air-gapped build.

use super::{input_error, registry_client, CommonArgs};
use clap::Args;
use slipway::bundle::{self, MakeOptions};
use slipway::error::{Error, ErrorKind, Result};
use slipway::platform::Platform;
use slipway::recipe;
use slipway::report::Log;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The recipe file (TOML; see the README for every key).
    pub recipe: PathBuf,
    /// Write the bundle to this dir, or to this file if it ends in `.tar`.
    /// An existing bundle there is updated: only what is missing is fetched.
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub out: PathBuf,
    /// Bundle for these platforms instead of the recipe's (repeatable, e.g. linux/arm64).
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Read the base image from this OCI layout dir instead of a registry.
    #[arg(long, value_name = "DIR")]
    pub base_layout: Option<PathBuf>,
    /// Also look for wheels here (added to the recipe's `find_links`). Repeatable.
    #[arg(long = "find-links", value_name = "DIR")]
    pub find_links: Vec<String>,
    /// Resolve wheels from find-links only: no index.
    #[arg(long)]
    pub offline: bool,
    /// A CPython of the base's minor version, for uv's resolver.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_PYTHON")]
    pub python: Option<PathBuf>,
    /// The uv executable.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_UV", default_value = "uv")]
    pub uv: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: BundleArgs) -> Result<()> {
    let mut recipe = recipe::load(&args.recipe).map_err(|e| {
        let hint = e.hint();
        Error::wrap(ErrorKind::Input, e, hint)
    })?;
    if !args.platforms.is_empty() {
        recipe.platforms = args
            .platforms
            .iter()
            .map(|p| Platform::parse(p).map_err(input_error))
            .collect::<Result<_>>()?;
    }
    recipe.python.find_links.extend(
        args.find_links
            .iter()
            .map(|l| super::build::absolute_link(l)),
    );
    recipe.python.offline |= args.offline;
    let common = &args.common;
    let (client, mirrors) = registry_client(common)?;
    let options = MakeOptions {
        recipe,
        out: args.out.clone(),
        cache_dir: common
            .cache_dir
            .clone()
            .unwrap_or_else(slipway::cache::Cache::default_dir),
        mirrors,
        base_layout: args.base_layout.clone(),
        python: args.python.clone(),
        uv: args.uv.clone(),
        timeout: Duration::from_secs(common.timeout),
        log: Log {
            quiet: common.quiet || common.json,
            verbose: common.verbose,
        },
    };
    let report = bundle::make(&client, &options).await?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        if !common.quiet {
            eprint!("{}", report.summary());
        }
        println!("{}", report.out);
    }
    Ok(())
}
