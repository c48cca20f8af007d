//! Command-line arguments (clap derive; doc comments are the help text) and
//! the thin glue from arguments to library calls, one file per subcommand.

pub mod build;
pub mod bundle;
pub mod cache;
pub mod init;
pub mod inspect;
pub mod rebase;
pub mod sbom;

use clap::{Args, CommandFactory, Parser, Subcommand};
use slipway::error::{Error, ErrorKind, Result};
use slipway::registry::{RegistryClient, RegistryOptions};
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
    Build(Box<build::BuildArgs>),
    /// Show an image's platforms, layers, history, config and the weight of each Python distribution.
    Inspect(inspect::InspectArgs),
    /// Gather everything a recipe needs (base image, wheels) into one dir for air-gapped builds.
    Bundle(bundle::BundleArgs),
    /// Print the SBOM attached to an image (SPDX or CycloneDX JSON).
    Sbom(sbom::SbomArgs),
    /// Put an image's slipway layers on a new (patched) base without rebuilding.
    Rebase(rebase::RebaseArgs),
    /// Write a commented recipe for the project in the current (or given) dir.
    Init(init::InitArgs),
    /// Manage the layer cache kept in a registry (`--cache-repo`).
    Cache(cache::CacheArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Cache dir for layers and base blobs [default: $XDG_CACHE_HOME/slipway].
    #[arg(long, value_name = "DIR", env = "SLIPWAY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Allow plain HTTP to this registry (loopback registries always may). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Speak HTTPS to this loopback registry (loopback registries default to plain HTTP). Repeatable.
    #[arg(long = "https-registry", value_name = "HOST[:PORT]")]
    pub https_registries: Vec<String>,
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
    /// Fail a registry transfer that moves slower than this many KiB/s for --min-rate-seconds.
    #[arg(long, value_name = "KIB_PER_S", env = "SLIPWAY_MIN_RATE", default_value_t = slipway::registry::client::DEFAULT_MIN_RATE_KIB)]
    pub min_rate: u64,
    /// The window over which --min-rate is measured, in seconds.
    #[arg(long, value_name = "SECONDS", env = "SLIPWAY_MIN_RATE_SECONDS", default_value_t = slipway::registry::client::DEFAULT_MIN_RATE_SECONDS)]
    pub min_rate_seconds: u64,
    /// The most one blob download or upload may take, in seconds.
    #[arg(long, value_name = "SECONDS", env = "SLIPWAY_BLOB_DEADLINE", default_value_t = slipway::registry::client::DEFAULT_BLOB_DEADLINE_SECONDS)]
    pub blob_deadline: u64,
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

/// Target platforms, wheel sources and the tools that install them;
/// shared by `build` and `bundle`.
#[derive(Args, Debug)]
pub struct PythonArgs {
    /// Use these platforms instead of the recipe's (repeatable, e.g. linux/arm64).
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Also look for wheels here (added to the recipe's `find_links`). Repeatable.
    #[arg(long = "find-links", value_name = "DIR")]
    pub find_links: Vec<String>,
    /// Use only find-links: uv gets no index and no network.
    #[arg(long)]
    pub offline: bool,
    /// A CPython of the base's minor version (compiles bytecode; runs uv's resolver).
    #[arg(long, value_name = "PATH", env = "SLIPWAY_PYTHON")]
    pub python: Option<PathBuf>,
    /// The uv executable.
    #[arg(long, value_name = "PATH", env = "SLIPWAY_UV", default_value = "uv")]
    pub uv: PathBuf,
}

impl PythonArgs {
    /// Applies the platform, find-links and offline overrides to the recipe.
    pub fn apply(&self, recipe: &mut slipway::recipe::Recipe) -> Result<()> {
        if !self.platforms.is_empty() {
            recipe.platforms = self
                .platforms
                .iter()
                .map(|p| {
                    slipway::platform::Platform::parse(p).map_err(|e| {
                        input_error(format!("--platform: {e}"))
                            .with_hint("supported platforms: `linux/amd64`, `linux/arm64` (e.g. `--platform linux/arm64`)")
                    })
                })
                .collect::<Result<_>>()?;
            recipe.platforms_origin = "`--platform`".into();
        }
        recipe
            .python
            .find_links
            .extend(self.find_links.iter().map(|l| absolute_link(l)));
        recipe.python.offline |= self.offline;
        Ok(())
    }
}

/// A find-links dir given on the command line, made absolute (URLs as given).
pub fn absolute_link(link: &str) -> String {
    let path = std::path::Path::new(link);
    if path.is_relative() && !link.contains("://") {
        std::env::current_dir()
            .map(|d| d.join(path).to_string_lossy().into_owned())
            .unwrap_or_else(|_| link.to_string())
    } else {
        link.to_string()
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => build::run(*args).await,
        Command::Inspect(args) => inspect::run(args).await,
        Command::Bundle(args) => bundle::run(args).await,
        Command::Init(args) => init::run(args),
        Command::Cache(args) => cache::run(args).await,
        Command::Sbom(args) => sbom::run(args).await,
        Command::Rebase(args) => rebase::run(args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "slipway",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// The config file (`--config`, else the default path).
pub fn load_config(common: &CommonArgs) -> Result<slipway::config::Config> {
    let config_path = common.config.clone().or_else(slipway::config::default_path);
    slipway::config::load(config_path.as_deref())
        .map_err(|e| input_error(e).with_hint(slipway::config::CONFIG_HINT))
}

/// `--cache-repo` / `SLIPWAY_CACHE_REPO`, else the config's `cache_repo`.
pub fn cache_repo(
    flag: Option<&str>,
    common: &CommonArgs,
) -> Result<Option<slipway::reference::Reference>> {
    let text = match flag {
        Some(text) => Some(text.to_string()),
        None => load_config(common)?.cache_repo,
    };
    text.filter(|t| !t.is_empty())
        .map(|t| {
            slipway::cache_repo::parse_reference(&t).map_err(|e| {
                input_error(format!("--cache-repo: {e}")).with_hint(
                    "give a repository, e.g. `--cache-repo registry.internal:5000/slipway-cache`",
                )
            })
        })
        .transpose()
}

pub fn input_error(message: String) -> Error {
    Error::new(ErrorKind::Input, message)
}

/// A registry client plus the mirrors to use for pulls, from flags and the
/// config file. `destination`: the registry pushed to, which
/// `SLIPWAY_REGISTRY_USERNAME` / `PASSWORD` belong to unless
/// `SLIPWAY_REGISTRY_HOST` names another.
pub fn registry_client(
    common: &CommonArgs,
    destination: Option<&str>,
) -> Result<(RegistryClient, std::collections::BTreeMap<String, String>)> {
    let config = load_config(common)?;
    let mut mirrors = config.mirrors;
    for m in &common.mirrors {
        let (from, to) = slipway::config::parse_mirror(m)
            .map_err(|e| input_error(e).with_hint(slipway::config::MIRROR_HINT))?;
        mirrors.insert(from, to);
    }
    let mut insecure = config.insecure_registries;
    insecure.extend(common.insecure_registries.iter().cloned());
    let options = RegistryOptions {
        insecure,
        https: common.https_registries.clone(),
        timeout: Duration::from_secs(common.timeout),
        min_rate: common.min_rate.saturating_mul(1024),
        min_rate_window: Duration::from_secs(common.min_rate_seconds.max(1)),
        blob_deadline: Duration::from_secs(common.blob_deadline.max(1)),
        retries: common.retries,
        docker_config: None,
        verbose: common.verbose,
        env_credentials: slipway::registry::credentials::env_credentials(destination),
    };
    let client = RegistryClient::new(options).map_err(Error::hinted(ErrorKind::Registry))?;
    Ok((client, mirrors))
}
