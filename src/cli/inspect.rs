//! `slipway inspect`.

use clap::Args;
use slipway::error::{Error, ErrorKind, Result};

#[derive(Args, Debug)]
pub struct InspectArgs {}

pub async fn run(_args: InspectArgs) -> Result<()> {
    Err(Error::new(
        ErrorKind::Other,
        "`slipway inspect` is not implemented yet",
    ))
}
