//! The soak run: both services under a mixed load for many minutes (being written).

use clap::Args;

#[derive(Args, Clone)]
pub struct SoakArgs {}

pub fn run(_args: SoakArgs) -> anyhow::Result<()> {
    anyhow::bail!("the soak run is not written yet")
}
