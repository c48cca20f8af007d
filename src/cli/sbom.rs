//! `slipway sbom`: prints the SBOM attached to an image (one platform's).

use super::{input_error, registry_client, CommonArgs};
use clap::Args;
use slipway::error::{Error, ErrorKind, Result};
use slipway::inspect::{source::Source, InspectError, Target};
use std::io::Write;

#[derive(Args, Debug)]
pub struct SbomArgs {
    /// The image: a registry reference or `oci:DIR[:TAG]`.
    pub image: String,
    /// Which platform's SBOM, for a multi-platform image (e.g. linux/arm64).
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: SbomArgs) -> Result<()> {
    let target = Target::parse(&args.image).map_err(input_error)?;
    if matches!(target, Target::DockerArchive(_)) {
        return Err(input_error(format!(
            "`{target}`: a docker-archive has no place for an SBOM"
        ))
        .with_hint("build to a registry or an OCI layout to get one attached"));
    }
    let common = &args.common;
    let (client, mirrors) = registry_client(common, None)?;
    let cache_dir = common
        .cache_dir
        .clone()
        .unwrap_or_else(slipway::cache::Cache::default_dir);
    let wrap = |e: InspectError| {
        let kind = match &e {
            InspectError::Registry(_) | InspectError::Fetch(_) => ErrorKind::Registry,
            InspectError::Source(e) => e.kind(),
            _ => ErrorKind::Input,
        };
        Error::hinted(kind)(e)
    };
    let source = Source::open(&target, &client, &cache_dir, &mirrors).map_err(wrap)?;
    let platforms: Vec<String> = args.platform.iter().cloned().collect();
    let (_, images) = source.images(&platforms).await.map_err(wrap)?;
    let image = match images.as_slice() {
        [only] => only,
        [] => {
            return Err(input_error(format!(
                "`{target}` has no image for {}",
                platforms.join(", ")
            )))
        }
        many => {
            let names: Vec<String> = many.iter().map(|i| i.platform.to_string()).collect();
            return Err(input_error(format!(
                "`{target}` has {} platforms ({})",
                many.len(),
                names.join(", ")
            ))
            .with_hint("pass `--platform OS/ARCH` to pick one"));
        }
    };
    let digest = image
        .manifest_digest
        .clone()
        .expect("registry and layout images have manifests");
    let sboms = source.sboms(&digest).await.map_err(wrap)?;
    let Some(sbom) = sboms.first() else {
        return Err(input_error(format!("no SBOM is attached to `{target}` ({} manifest {digest})", image.platform))
            .with_hint("build it with slipway without `--sbom-format none`; `slipway inspect` shows what is attached"));
    };
    let document = source.sbom_document(&sbom.digest).await.map_err(wrap)?;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&document).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::new(
            ErrorKind::Other,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}
