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

    /// A cluster whose members this sponsor pays for (repeatable or comma separated). The
    /// factories are open to anyone, so at least this or --trusted-cluster-owner must be set.
    #[arg(
        long = "trusted-cluster",
        env = "SPONSOR_TRUSTED_CLUSTERS",
        value_delimiter = ','
    )]
    pub trusted_clusters: Vec<Address>,

    /// Pay for every cluster whose clusterOwner() is this address, e.g. the operator's Safe
    /// (repeatable or comma separated).
    #[arg(
        long = "trusted-cluster-owner",
        env = "SPONSOR_TRUSTED_CLUSTER_OWNERS",
        value_delimiter = ','
    )]
    pub trusted_cluster_owners: Vec<Address>,

    /// Wei per sender per UTC day, counted as each signed operation's maximum cost (sum of its
    /// five gas values × maxFeePerGas). Default 0.05 ETH.
    #[arg(long, env = "SPONSOR_DAILY_WEI_PER_SENDER", default_value_t = attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_SENDER)]
    pub daily_wei_per_sender: u128,

    /// Wei per cluster (all its members) per UTC day. Default 1 ETH.
    #[arg(long, env = "SPONSOR_DAILY_WEI_PER_CLUSTER", default_value_t = attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_CLUSTER)]
    pub daily_wei_per_cluster: u128,

    /// Headroom over the measured gas of each operation kind, in percent (at least 30: alto
    /// asks for 130 % of the simulated verification gas).
    #[arg(long, env = "SPONSOR_GAS_MARGIN_PCT", default_value_t = 50)]
    pub gas_margin_pct: u32,

    /// Headroom over the bundler calldata rule for preVerificationGas, in percent.
    #[arg(long, env = "SPONSOR_PVG_MARGIN_PCT", default_value_t = 50)]
    pub pvg_margin_pct: u32,

    /// Gas added to the preVerificationGas bound: the L1 data share bundlers add on a rollup
    /// (Base); 0 on an L1 or a dev chain.
    #[arg(long, env = "SPONSOR_PVG_ALLOWANCE", default_value_t = 0)]
    pub pvg_allowance: u128,

    /// Highest multiple of the chain's current priority fee (maxPriorityFeePerGas) and of
    /// base fee + priority fee (maxFeePerGas) signed.
    #[arg(long, env = "SPONSOR_FEE_MULTIPLE", default_value_t = 3)]
    pub fee_multiple: u32,

    /// JSON-RPC requests per second per client IP (sustained).
    #[arg(long, env = "SPONSOR_RATE_LIMIT_PER_SEC", default_value_t = 20)]
    pub rate_limit_per_sec: u32,

    /// JSON-RPC requests a client IP may make at once.
    #[arg(long, env = "SPONSOR_RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,

    /// File with the hosted paymaster's Standard Webhooks secret (`whsec_…`); enables /webhook.
    #[arg(long, env = "SPONSOR_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Timeout of one chain RPC request, in seconds.
    #[arg(long, env = "SPONSOR_RPC_TIMEOUT_SECS", default_value_t = 10)]
    pub rpc_timeout_secs: u64,

    /// Require every ERC-7677 request to name this sponsorship policy in its context
    /// (`{"sponsorshipPolicyId": "<id>"}`, the agents' PAYMASTER_CONTEXT), as a hosted paymaster
    /// with a policy does. Unset: any context is accepted.
    #[arg(long, env = "SPONSOR_POLICY_ID")]
    pub sponsorship_policy_id: Option<String>,
}

/// Longest policy id accepted; hosted paymasters' ids are far shorter.
const MAX_POLICY_ID_LEN: usize = 128;

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
    if a.trusted_clusters.is_empty() && a.trusted_cluster_owners.is_empty() {
        bail!(
            "set --trusted-cluster (SPONSOR_TRUSTED_CLUSTERS) and/or --trusted-cluster-owner \
             (SPONSOR_TRUSTED_CLUSTER_OWNERS): the factories are open to anyone, so the sponsor \
             never pays for every factory cluster"
        );
    }
    if let Some(z) = a
        .trusted_clusters
        .iter()
        .chain(&a.trusted_cluster_owners)
        .find(|x| x.is_zero())
    {
        bail!("--trusted-cluster / --trusted-cluster-owner must not be the zero address ({z})");
    }
    if a.gas_margin_pct < 30 {
        bail!(
            "--gas-margin-pct must be at least 30 (bundlers ask for 130 % of simulated verification gas)"
        );
    }
    if a.fee_multiple == 0 {
        bail!("--fee-multiple must be at least 1");
    }
    if a.daily_wei_per_sender == 0 || a.daily_wei_per_cluster == 0 {
        bail!(
            "--daily-wei-per-sender and --daily-wei-per-cluster must be at least 1 (0 would deny every operation)"
        );
    }
    if a.rate_limit_per_sec == 0 || a.rate_limit_burst == 0 {
        bail!("--rate-limit-per-sec and --rate-limit-burst must be at least 1");
    }
    if let Some(id) = &a.sponsorship_policy_id
        && (id.is_empty()
            || id.len() > MAX_POLICY_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)))
    {
        bail!(
            "--sponsorship-policy-id (SPONSOR_POLICY_ID) must be 1..={MAX_POLICY_ID_LEN} characters of A-Z a-z 0-9 _ - . :"
        );
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
        trust: attestmesh_sponsor::TrustSet {
            clusters: a.trusted_clusters.into_iter().collect(),
            owners: a.trusted_cluster_owners.into_iter().collect(),
        },
        bounds: attestmesh_sponsor::GasBounds {
            gas_margin_pct: a.gas_margin_pct,
            pvg_margin_pct: a.pvg_margin_pct,
            pvg_allowance: a.pvg_allowance,
            fee_multiple: a.fee_multiple,
            ..attestmesh_sponsor::GasBounds::default()
        },
        daily_wei_per_sender: a.daily_wei_per_sender,
        daily_wei_per_cluster: a.daily_wei_per_cluster,
        rate_limit: attestmesh_sponsor::RateLimit {
            per_sec: f64::from(a.rate_limit_per_sec),
            burst: a.rate_limit_burst,
        },
        webhook_secret_file: a.webhook_secret_file,
        rpc_timeout: Duration::from_secs(a.rpc_timeout_secs),
        sponsorship_policy_id: a.sponsorship_policy_id,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let s = settings(args)?;
    attestmesh_sponsor::run(s, |_| {}, super::shutdown_signal()).await?;
    tracing::info!("sponsor service stopped");
    Ok(())
}
