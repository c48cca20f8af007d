//! `slipway bundle`: everything a recipe needs, for an air-gapped build.

use super::{registry_client, CommonArgs, PythonArgs};
use clap::Args;
use slipway::bundle::{self, MakeOptions};
use slipway::error::{Error, ErrorKind, Result};
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
    /// Read the base image from this OCI layout dir instead of a registry.
    #[arg(long, value_name = "DIR")]
    pub base_layout: Option<PathBuf>,
    #[command(flatten)]
    pub tools: PythonArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: BundleArgs) -> Result<()> {
    let mut recipe = recipe::load(&args.recipe).map_err(Error::hinted(ErrorKind::Input))?;
    args.tools.apply(&mut recipe)?;
    let common = &args.common;
    let (client, mirrors) = registry_client(common, None)?;
    let options = MakeOptions {
        recipe,
        out: args.out.clone(),
        cache_dir: common
            .cache_dir
            .clone()
            .unwrap_or_else(slipway::cache::Cache::default_dir),
        mirrors,
        base_layout: args.base_layout.clone(),
        python: args.tools.python.clone(),
        uv: args.tools.uv.clone(),
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
