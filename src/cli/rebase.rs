//! `slipway rebase`: an image's slipway layers on a new base.

use super::CommonArgs;
use clap::Args;
use slipway::error::Result;

#[derive(Args, Debug)]
pub struct RebaseArgs {
    /// The image to rebase.
    pub image: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(_args: RebaseArgs) -> Result<()> {
    Ok(())
}
