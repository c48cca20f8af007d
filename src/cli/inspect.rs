//! `slipway inspect`: an image's platforms, layers, history, config,
//! annotations and Python distributions, as a summary or `--json`.

use super::{input_error, registry_client, CommonArgs};
use clap::Args;
use slipway::error::{Error, ErrorKind, Result};
use slipway::inspect::{self, source::Source, InspectError, InspectOptions, Target};
use slipway::validate::Validation;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image: a registry reference (`registry.example:5000/team/app:1.0`,
    /// `python:3.13-alpine`), `oci:DIR[:TAG]` (an OCI image layout) or
    /// `docker-archive:FILE`.
    pub image: String,
    /// Only these platforms of a multi-platform image (repeatable, e.g. linux/arm64).
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Don't read the layers: no uncompressed sizes and no Python breakdown
    /// (only manifests and configs are fetched).
    #[arg(long)]
    pub no_contents: bool,
    /// Check the image in full instead of describing it: every blob's size
    /// and digest, media types, every layer read to its end against the
    /// config's diff_ids. Exit 0 when valid; 2 listing every problem.
    #[arg(long, conflicts_with_all = ["platforms", "no_contents"])]
    pub check: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: InspectArgs) -> Result<()> {
    let target = Target::parse(&args.image).map_err(input_error)?;
    let common = &args.common;
    let (client, mirrors) = registry_client(common, None)?;
    let cache_dir = common
        .cache_dir
        .clone()
        .unwrap_or_else(slipway::cache::Cache::default_dir);
    let kind_of = |e: &InspectError| match e {
        InspectError::Registry(_) => ErrorKind::Registry,
        InspectError::Fetch(e) => e.kind(),
        InspectError::Source(e) => e.kind(),
        InspectError::NotFound(_) | InspectError::Bad(_) => ErrorKind::Input,
        InspectError::Io { .. } => match target {
            Target::Registry(_) => ErrorKind::Other,
            _ => ErrorKind::Input,
        },
    };
    let wrap = |e: InspectError| Error::hinted(kind_of(&e))(e);
    let source = Source::open(&target, &client, &cache_dir, &mirrors).map_err(wrap)?;
    if args.check {
        let validation = slipway::validate::validate(&source).await.map_err(wrap)?;
        return report_check(&target, &validation, common.json);
    }
    let options = InspectOptions {
        platforms: &args.platforms,
        contents: !args.no_contents,
    };
    // Spinner and pull bars on a terminal; quiet otherwise unless --verbose.
    let progress = slipway::progress::Progress::new(common.quiet || common.json, common.verbose);
    let progress = match progress.mode {
        slipway::progress::Mode::Plain if !common.verbose => {
            slipway::progress::Progress::with_mode(slipway::progress::Mode::Quiet, false)
        }
        _ => progress,
    }
    .install();
    progress.step(&format!("reading `{target}`"));
    let result = inspect::inspect(&source, &target.to_string(), &options).await;
    progress.finish();
    let report = result.map_err(wrap)?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        // Everything in it came from the image: escape control characters.
        print!(
            "{}",
            slipway::sanitize::escape_lines(&inspect::render::render(&report))
        );
    }
    Ok(())
}

/// Prints the check's outcome; an invalid image is bad input (exit 2), its
/// problems one a line.
fn report_check(target: &Target, validation: &Validation, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(validation).expect("validation serialises")
        );
    }
    if validation.is_valid() {
        if !json {
            println!(
                "`{target}` is valid: {} image(s), every blob and layer read in full",
                validation.images.len()
            );
        }
        return Ok(());
    }
    let problems: Vec<String> = validation
        .problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect();
    Err(Error::new(
        ErrorKind::Input,
        format!(
            "`{target}` is not a valid image ({} problem(s)):\n{}",
            problems.len(),
            problems.join("\n")
        ),
    ))
}
