//! `slipway bundle`.

use clap::Args;
use slipway::error::{Error, ErrorKind, Result};

#[derive(Args, Debug)]
pub struct BundleArgs {}

pub async fn run(_args: BundleArgs) -> Result<()> {
    Err(Error::new(
        ErrorKind::Other,
        "`slipway bundle` is not implemented yet",
    ))
}
