//! `cluster show` and `cluster members`: read-only, no signer needed.

use alloy_primitives::Address;
use anyhow::Context;
use attestmesh_ops::cluster;

use super::Common;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The cluster.
    #[arg(long, env = "CLUSTER")]
    cluster: Address,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MembersArgs {
    /// The cluster.
    #[arg(long, env = "CLUSTER")]
    cluster: Address,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub async fn run_show(common: &Common, a: ShowArgs) -> anyhow::Result<()> {
    let p = common.provider()?;
    let chain_id = p
        .chain_id()
        .await
        .context("reading eth_chainId from --rpc-url")?;
    let paymaster = common
        .deployments_record(chain_id)?
        .map(|d| (d.entry_point, d.contracts.sponsor_paymaster));
    let info = cluster::show(
        &p,
        chain_id,
        a.cluster,
        common.scan_from(chain_id)?,
        paymaster,
    )
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", cluster::render_info(&info));
    }
    Ok(())
}

pub async fn run_members(common: &Common, a: MembersArgs) -> anyhow::Result<()> {
    let p = common.provider()?;
    let members = cluster::members(&p, a.cluster).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&members)?);
    } else {
        print!("{}", cluster::render_members(&members));
    }
    Ok(())
}
