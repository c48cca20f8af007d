//! Command-line arguments (clap derive; doc comments are the help text) and
//! the thin glue from arguments to library calls.

use clap::{Args, Parser, Subcommand};
use slipway::build::{self, BuildOptions};
use slipway::error::{Error, ErrorKind, Result};
use slipway::platform::Platform;
use slipway::recipe::{self, Destination};
use slipway::reference::Reference;
use slipway::registry::{RegistryClient, RegistryOptions};
use slipway::report::Log;
use std::path::PathBuf;
use std::time::Duration;

/// Build small, reproducible OCI images for Python apps — no Docker daemon, no root.
#[derive(Parser, Debug)]
#[command(name = "slipway", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the image a recipe describes and publish it (registry, OCI layout or docker archive).
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The recipe file (TOML; see the README for every key).
    pub recipe: PathBuf,
    /// Push to this registry reference (overrides the recipe's destination).
    #[arg(long, value_name = "REF", conflicts_with_all = ["oci_layout", "docker_archive"])]
    pub push: Option<String>,
    /// Write an OCI image layout to this dir (overrides the recipe's destination).
    #[arg(long, value_name = "DIR", conflicts_with = "docker_archive")]
    pub oci_layout: Option<PathBuf>,
    /// Write a docker-archive tar to this file (overrides the recipe's destination).
    #[arg(long, value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,
    /// Build for these platforms instead of the recipe's (repeatable, e.g. linux/arm64).
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Read the base image from this OCI layout dir instead of a registry.
    #[arg(long, value_name = "DIR")]
    pub base_layout: Option<PathBuf>,
    /// Also look for wheels here (added to the recipe's `find_links`). Repeatable.
    #[arg(long = "find-links", value_name = "DIR")]
    pub find_links: Vec<String>,
    /// Install only from find-links: uv gets no index and no network.
    #[arg(long)]
    pub offline: bool,
    /// A CPython of the base's minor version, used to compile bytecode.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_PYTHON")]
    pub python: Option<PathBuf>,
    /// The uv executable.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// Timestamp for every file and the config's `created` (also read from the recipe).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Cache dir for layers and base blobs [default: $XDG_CACHE_HOME/slipway].
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Allow plain HTTP to this registry (loopback registries always may). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Pull images of registry FROM from registry TO (e.g. docker.io=mirror:5000). Repeatable.
    #[arg(long = "registry-mirror", value_name = "FROM=TO")]
    pub mirrors: Vec<String>,
    /// The slipway config file [default: ~/.config/slipway/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Attempts per registry request on 429/5xx/connection errors.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds to wait for a registry to connect or answer.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Print one JSON document describing the result instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (and the result).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print each registry request (credentials redacted) and each cache decision.
    #[arg(long, short)]
    pub verbose: bool,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => run_build(args).await,
    }
}

fn input_error(message: String) -> Error {
    Error::new(ErrorKind::Input, message)
}

async fn run_build(args: BuildArgs) -> Result<()> {
    let mut recipe = recipe::load(&args.recipe).map_err(|e| {
        let hint = e.hint();
        Error::wrap(ErrorKind::Input, e, hint)
    })?;
    if !args.platforms.is_empty() {
        recipe.platforms = args.platforms.iter().map(|p| Platform::parse(p).map_err(input_error)).collect::<Result<_>>()?;
    }
    for link in &args.find_links {
        let path = std::path::Path::new(link);
        let link = if path.is_relative() && !link.contains("://") {
            std::env::current_dir().map(|d| d.join(path).to_string_lossy().into_owned()).unwrap_or_else(|_| link.clone())
        } else {
            link.clone()
        };
        recipe.python.find_links.push(link);
    }
    recipe.python.offline |= args.offline;
    let destination = match (&args.push, &args.oci_layout, &args.docker_archive) {
        (Some(r), _, _) => Destination::Push(Reference::parse(r).map_err(|e| input_error(format!("--push: {e}")))?),
        (_, Some(dir), _) => Destination::OciLayout(dir.clone()),
        (_, _, Some(file)) => Destination::DockerArchive(file.clone()),
        _ => recipe.destination.clone().ok_or_else(|| {
            input_error(format!("recipe `{}` says nowhere to put the image", args.recipe.display()))
                .with_hint("pass `--push REGISTRY/REPO:TAG`, `--oci-layout DIR` or `--docker-archive FILE`, or set `push` in the recipe")
        })?,
    };
    let common = &args.common;
    let (client, mirrors) = registry_client(common)?;
    let log = Log { quiet: common.quiet || common.json, verbose: common.verbose };
    let options = BuildOptions {
        epoch: args.source_date_epoch.or(recipe.source_date_epoch).unwrap_or(0),
        recipe,
        destination,
        cache_dir: common.cache_dir.clone().unwrap_or_else(slipway::cache::Cache::default_dir),
        mirrors,
        base_layout: args.base_layout.clone(),
        python: args.python.clone(),
        uv: args.uv.clone(),
        log,
    };
    let report = build::build(&client, &options).await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
    } else {
        if !common.quiet {
            eprint!("{}", report.table());
        }
        println!("{}@{}", report.destination, report.digest);
    }
    Ok(())
}

/// A registry client plus the mirrors to use for pulls, from flags and the config file.
fn registry_client(common: &CommonArgs) -> Result<(RegistryClient, std::collections::BTreeMap<String, String>)> {
    let config_path = common.config.clone().or_else(slipway::config::default_path);
    let config = slipway::config::load(config_path.as_deref()).map_err(input_error)?;
    let mut mirrors = config.mirrors;
    for m in &common.mirrors {
        let (from, to) = m.split_once('=').ok_or_else(|| input_error(format!("--registry-mirror `{m}` is not FROM=TO (e.g. docker.io=mirror:5000)")))?;
        mirrors.insert(from.to_string(), to.to_string());
    }
    let mut insecure = config.insecure_registries;
    insecure.extend(common.insecure_registries.iter().cloned());
    let options = RegistryOptions {
        insecure,
        timeout: Duration::from_secs(common.timeout),
        retries: common.retries,
        docker_config: None,
        verbose: common.verbose,
    };
    let client = RegistryClient::new(options).map_err(|e| {
        let hint = e.hint();
        Error::wrap(ErrorKind::Registry, e, hint)
    })?;
    Ok((client, mirrors))
}
