//! `slipway rebase`: puts an image's slipway layers on a new base.
//! `recorded` is what a build writes into the config so this needs no recipe.

pub mod recorded;
