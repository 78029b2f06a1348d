//! `attestmesh sponsor`: the ERC-7677 paymaster service and sponsorship-policy webhook that pays
//! the nodes' gas through `SponsorPaymaster` (DESIGN §10.1). All logic lives in
//! `attestmesh-sponsor`; this file only turns flags (each with an env twin) into its settings and
//! refuses obviously wrong ones before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::Address;
use anyhow::bail;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve JSON-RPC (`POST /`), `/webhook`, `/healthz` and `/metrics` on.
    #[arg(long, env = "SPONSOR_LISTEN", default_value = "127.0.0.1:4337")]
    pub listen: SocketAddr,

    /// Chain JSON-RPC endpoint (http:// or https://) for the provenance reads.
    #[arg(long, env = "SPONSOR_RPC_URL")]
    pub rpc_url: String,

    /// Chain id served; must match the RPC's eth_chainId.
    #[arg(long, env = "SPONSOR_CHAIN_ID")]
    pub chain_id: u64,

    /// EntryPoint v0.7 the paymaster is bound to.
    #[arg(
        long,
        env = "SPONSOR_ENTRY_POINT",
        default_value = "0x0000000071727De22E5E9d8BAf0edAc6f37da032"
    )]
    pub entry_point: Address,

    /// The SponsorPaymaster contract.
    #[arg(long, env = "SPONSOR_PAYMASTER")]
    pub paymaster: Address,

    /// The trusted ClusterMemberFactory.
    #[arg(long, env = "SPONSOR_MEMBER_FACTORY")]
    pub member_factory: Address,

    /// The trusted ClusterDiamondFactory.
    #[arg(long, env = "SPONSOR_CLUSTER_FACTORY")]
    pub cluster_factory: Address,

    /// File with the sponsor signer's hex private key (the key SponsorPaymaster.signer() names).
    #[arg(long, env = "SPONSOR_SIGNER_KEY_FILE")]
    pub signer_key_file: PathBuf,

    /// The embedded database holding per-sender daily counters (created if missing).
    #[arg(long, env = "SPONSOR_DB_PATH")]
    pub db_path: PathBuf,

    /// Sponsored operations per sender per UTC day.
    #[arg(long, env = "SPONSOR_DAILY_CAP", default_value_t = 100)]
    pub daily_cap: u32,

    /// File with the hosted paymaster's Standard Webhooks secret (`whsec_…`); enables /webhook.
    #[arg(long, env = "SPONSOR_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Timeout of one chain RPC request, in seconds.
    #[arg(long, env = "SPONSOR_RPC_TIMEOUT_SECS", default_value_t = 10)]
    pub rpc_timeout_secs: u64,
}

fn settings(a: Args) -> anyhow::Result<attestmesh_sponsor::Settings> {
    for (flag, addr) in [
        ("--entry-point", a.entry_point),
        ("--paymaster", a.paymaster),
        ("--member-factory", a.member_factory),
        ("--cluster-factory", a.cluster_factory),
    ] {
        if addr == Address::ZERO {
            bail!("{flag} must not be the zero address");
        }
    }
    if a.chain_id == 0 {
        bail!("--chain-id must not be 0");
    }
    if a.daily_cap == 0 {
        bail!("--daily-cap must be at least 1 (0 would deny every operation)");
    }
    if a.rpc_timeout_secs == 0 {
        bail!("--rpc-timeout-secs must be at least 1");
    }
    Ok(attestmesh_sponsor::Settings {
        listen: a.listen,
        rpc_url: a.rpc_url,
        chain_id: a.chain_id,
        entry_point: a.entry_point,
        paymaster: a.paymaster,
        member_factory: a.member_factory,
        cluster_factory: a.cluster_factory,
        signer_key_file: a.signer_key_file,
        db_path: a.db_path,
        daily_cap: a.daily_cap,
        webhook_secret_file: a.webhook_secret_file,
        rpc_timeout: Duration::from_secs(a.rpc_timeout_secs),
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let s = settings(args)?;
    attestmesh_sponsor::run(s, |_| {}, super::shutdown_signal()).await?;
    tracing::info!("sponsor service stopped");
    Ok(())
}
