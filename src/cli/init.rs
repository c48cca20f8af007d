//! `slipway init`: writes `slipway.toml` for the project in a dir.

use clap::Args;
use slipway::error::{Error, ErrorKind, Result};
use slipway::init::{self, InitError};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project dir (pyproject.toml + uv.lock, or requirements.txt, and the app's code).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite an existing slipway.toml.
    #[arg(long)]
    pub force: bool,
    /// Print the recipe on stdout instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// The base image [default: python:X.Y-slim, X.Y from .python-version or requires-python, else 3.13].
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: InitArgs) -> Result<()> {
    let wrap = |e: InitError| {
        let kind = match e {
            InitError::Io { .. } => ErrorKind::Other,
            _ => ErrorKind::Input,
        };
        Error::hinted(kind)(e)
    };
    if args.print {
        let project = init::detect(&args.dir).map_err(wrap)?;
        print!("{}", init::render(&project, args.base.as_deref()));
        return Ok(());
    }
    let (path, project) = init::write(&args.dir, args.base.as_deref(), args.force).map_err(wrap)?;
    if !args.quiet {
        for (key, value) in init::summary(&project) {
            eprintln!("  {key:<13}{value}");
        }
        eprintln!("wrote {}", path.display());
        eprintln!(
            "next: slipway build {} --oci-layout build/image   (or --push REGISTRY/REPO:TAG)",
            path.display()
        );
    }
    Ok(())
}
