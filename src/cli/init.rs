//! `slipway init`.

use clap::Args;
use slipway::error::{Error, ErrorKind, Result};

#[derive(Args, Debug)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> Result<()> {
    Err(Error::new(
        ErrorKind::Other,
        "`slipway init` is not implemented yet",
    ))
}
