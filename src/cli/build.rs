//! `slipway build`: recipe → image, published.

use super::{input_error, registry_client, CommonArgs, PythonArgs};
use clap::Args;
use slipway::build::{self, BuildOptions};
use slipway::error::{Error, ErrorKind, Result};
use slipway::recipe::{self, Destination};
use slipway::reference::Reference;
use slipway::report::Log;
use std::path::PathBuf;

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
    /// Name the image in a docker-archive (its `RepoTags`, what `docker load` /
    /// `podman load` call it); repeatable. Default: `localhost/DIR:latest`, DIR
    /// being the recipe's directory.
    #[arg(long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// Read the base image from this OCI layout dir instead of a registry.
    #[arg(long, value_name = "DIR", conflicts_with = "bundle")]
    pub base_layout: Option<PathBuf>,
    /// Build offline from a bundle made by `slipway bundle` (a dir or a .tar):
    /// the base from its layout, wheels from its wheelhouse, hash-checked.
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub bundle: Option<PathBuf>,
    /// The SBOM attached to each platform's image: `spdx` (SPDX 2.3 JSON),
    /// `cyclonedx` (CycloneDX 1.6 JSON) or `none`.
    #[arg(
        long = "sbom-format",
        alias = "sbom",
        value_name = "FORMAT",
        default_value = "spdx"
    )]
    pub sbom_format: String,
    /// A registry repository shared by CI runners as a layer cache: layers
    /// are looked up there before being built and written there after.
    #[arg(long, value_name = "REGISTRY/REPO", env = "SLIPWAY_CACHE_REPO")]
    pub cache_repo: Option<String>,
    #[command(flatten)]
    pub tools: PythonArgs,
    /// Timestamp for every file and the config's `created` (also read from the recipe; default: the commit time of git HEAD, else 0).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(..=slipway::recipe::MAX_EPOCH))]
    pub source_date_epoch: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: BuildArgs) -> Result<()> {
    let mut recipe = recipe::load(&args.recipe).map_err(Error::hinted(ErrorKind::Input))?;
    recipe::check_inputs(&recipe).map_err(Error::hinted(ErrorKind::Input))?;
    args.tools.apply(&mut recipe)?;
    recipe.python.offline |= args.bundle.is_some();
    let destination = destination(&args, &recipe)?;
    let tags = archive_tags(&args, &destination)?;
    slipway::publish::check_destination(&destination).map_err(|e| {
        input_error(e)
            .with_hint("pass a new path, an existing OCI layout dir, or remove what is there")
    })?;
    let sbom = slipway::sbom::Format::parse(&args.sbom_format)
        .map_err(|e| input_error(format!("--sbom-format: {e}")))?;
    let common = &args.common;
    let cache_repo = super::cache_repo(args.cache_repo.as_deref(), common)?;
    // SLIPWAY_REGISTRY_USERNAME/PASSWORD belong to the push destination,
    // else (an OCI layout or archive) to the cache repo, unless
    // SLIPWAY_REGISTRY_HOST names another registry.
    let push_registry = match &destination {
        Destination::Push(reference) => Some(reference.registry.as_str()),
        _ => cache_repo.as_ref().map(|r| r.registry.as_str()),
    };
    let (client, mirrors) = registry_client(common, push_registry)?;
    let log = Log {
        quiet: common.quiet || common.json,
        verbose: common.verbose,
    };
    let cache_dir = common
        .cache_dir
        .clone()
        .unwrap_or_else(slipway::cache::Cache::default_dir);
    let bundle = open_bundle(&args, &recipe, &cache_dir)?;
    let options = BuildOptions {
        epoch: args
            .source_date_epoch
            .or(recipe.source_date_epoch)
            .unwrap_or_else(|| slipway::provenance::default_epoch(&recipe)),
        recipe,
        destination,
        cache_dir,
        mirrors,
        base_layout: bundle
            .as_ref()
            .map(|b| b.base_layout())
            .or_else(|| args.base_layout.clone()),
        bundle,
        python: args.tools.python.clone(),
        uv: args.tools.uv.clone(),
        tags,
        log,
        sbom,
        cache_repo,
    };
    let result = build::build(&client, &options).await;
    log.finish(); // spinners and bars gone before the table or the error
    print_report(&result?, common);
    Ok(())
}

/// `--push`, `--oci-layout` or `--docker-archive`, else the recipe's.
fn destination(args: &BuildArgs, recipe: &recipe::Recipe) -> Result<Destination> {
    Ok(match (&args.push, &args.oci_layout, &args.docker_archive) {
        (Some(r), _, _) => Destination::Push(Reference::parse(r).map_err(|e| input_error(format!("--push: {e}")).with_hint(recipe::REFERENCE_HINT))?),
        (_, Some(dir), _) => Destination::OciLayout(dir.clone()),
        (_, _, Some(file)) => Destination::DockerArchive(file.clone()),
        _ => recipe.destination.clone().ok_or_else(|| {
            input_error(format!("recipe `{}` says nowhere to put the image", args.recipe.display()))
                .with_hint("pass `--push REGISTRY/REPO:TAG`, `--oci-layout DIR` or `--docker-archive FILE`, or set `push` in the recipe")
        })?,
    })
}

/// `--bundle`: opened (and checked against the recipe) in the cache's tmp.
fn open_bundle(
    args: &BuildArgs,
    recipe: &recipe::Recipe,
    cache_dir: &std::path::Path,
) -> Result<Option<slipway::bundle::Bundle>> {
    let Some(path) = &args.bundle else {
        return Ok(None);
    };
    let cache = slipway::cache::Cache::open(cache_dir).map_err(slipway::error::io(format!(
        "cannot open cache dir `{}`",
        cache_dir.display()
    )))?;
    slipway::bundle::Bundle::open(path, recipe, &cache.root().join("tmp"))
        .map(Some)
        .map_err(|e| Error::hinted(ErrorKind::Input)(e))
}

/// Warnings, then the report (JSON or a table) and `DEST@DIGEST` on stdout.
fn print_report(report: &slipway::report::BuildReport, common: &super::CommonArgs) {
    for m in &report.missing_libraries {
        eprintln!(
            "warning: {} needs {}, which the image does not have: importing it will fail \
             (add the library to the base image, e.g. its distribution's package)",
            m.module, m.library
        );
    }
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        if !common.quiet {
            eprint!("{}", report.table());
        }
        println!("{}@{}", report.destination, report.digest);
    }
}

/// The docker-archive's names: `--tag`s, else `localhost/DIR:latest`.
fn archive_tags(args: &BuildArgs, destination: &Destination) -> Result<Vec<Reference>> {
    if !matches!(destination, Destination::DockerArchive(_)) {
        if let Some(tag) = args.tags.first() {
            return Err(
                input_error(format!("--tag {tag}: only a docker-archive carries names")).with_hint(
                    "use `--push REGISTRY/REPO:TAG` to name a pushed image, or drop `--tag`",
                ),
            );
        }
        return Ok(Vec::new());
    }
    if args.tags.is_empty() {
        return Ok(Reference::parse(&default_tag(&args.recipe))
            .into_iter()
            .collect());
    }
    args.tags
        .iter()
        .map(|t| {
            Reference::parse(t)
                .map_err(|e| input_error(format!("--tag: {e}")).with_hint(recipe::REFERENCE_HINT))
        })
        .collect()
}

/// `localhost/DIR:latest`, DIR the recipe's directory in reference syntax.
fn default_tag(recipe: &std::path::Path) -> String {
    let dir = std::path::absolute(recipe)
        .ok()
        .and_then(|p| {
            p.parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut name: String = dir
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if name.is_empty() {
        name = "image".into();
    }
    format!("localhost/{name}:latest")
}

#[cfg(test)]
mod tests {
    use super::default_tag;
    use std::path::Path;

    #[test]
    fn the_default_archive_name_is_the_recipe_dir_in_reference_syntax() {
        assert_eq!(
            default_tag(Path::new("/src/recipes/fastapi-demo/alpine.toml")),
            "localhost/fastapi-demo:latest"
        );
        assert_eq!(
            default_tag(Path::new("/work/My App!/recipe.toml")),
            "localhost/my-app:latest"
        );
        assert_eq!(
            default_tag(Path::new("/recipe.toml")),
            "localhost/image:latest"
        );
        for tag in ["localhost/fastapi-demo:latest", "localhost/my-app:latest"] {
            slipway::reference::Reference::parse(tag).unwrap();
        }
    }
}
