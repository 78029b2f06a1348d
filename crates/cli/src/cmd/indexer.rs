//! `attestmesh indexer`: the attested Indexer (DESIGN §9.3) and its two operator chores.
//!
//! - `run`: follow every cluster of one ClusterDiamondFactory and serve signed wake-ups over gRPC
//!   (all logic in `attestmesh-indexer`; this file turns flags into its `Config` and refuses
//!   wrong ones before anything starts, naming the setting).
//! - `pubkey`: print the Ed25519 key the TEE derives for the Indexer, so the operator can put it
//!   in the registry without the key ever leaving the VM (only the public half is printed).
//! - `register`: `IndexerRegistry.setIndexer(endpoint, codeId, pubKey)` signed with the
//!   registry owner's key file, through the operators' path (`attestmesh-ops`), exactly as
//!   `attestmesh cluster indexer register` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use anyhow::{Context, bail};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_ops::exec::{Executor, LocalKey, Mode};
use attestmesh_ops::indexer::IndexerOutcome;
use attestmesh_tee::client::GuestAgentClient;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Follow the chain and serve signed pushes (gRPC Indexer.Subscribe, /healthz, /metrics).
    Run(RunArgs),
    /// Print the TEE-derived Ed25519 public key of the Indexer (hex, 32 bytes).
    Pubkey(PubkeyArgs),
    /// Write endpoint, code id and key into IndexerRegistry (owner only).
    Register(RegisterArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Chain JSON-RPC endpoint (http(s)://host[:port][/path]).
    #[arg(long, env = "INDEXER_RPC_URL")]
    pub rpc_url: String,

    /// The ClusterDiamondFactory whose clusters are indexed (discovered from ClusterDeployed).
    #[arg(long, env = "INDEXER_CLUSTER_FACTORY")]
    pub cluster_factory: Address,

    /// First block to index when the state dir holds no progress yet (the factory's deployment
    /// block; earlier blocks cannot hold its events).
    #[arg(long, env = "INDEXER_START_BLOCK", default_value_t = 0)]
    pub start_block: u64,

    /// Blocks per eth_getLogs page.
    #[arg(long, env = "INDEXER_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: u64,

    /// Head polling interval in milliseconds; push latency is at most this plus one RPC round
    /// trip after a block.
    #[arg(long, env = "INDEXER_POLL_INTERVAL_MS", default_value_t = 250)]
    pub poll_interval_ms: u64,

    /// Blocks behind the head to stay. Default per chain id (read from the RPC): 0 on anvil
    /// (31337) and geth dev (1337), 10 on Base, Base Sepolia and any other chain.
    #[arg(long, env = "INDEXER_CONFIRMATIONS")]
    pub confirmations: Option<u64>,

    /// gRPC listen address.
    #[arg(long, env = "INDEXER_GRPC_LISTEN", default_value = "127.0.0.1:7070")]
    pub grpc_listen: SocketAddr,

    /// /healthz and /metrics listen address.
    #[arg(long, env = "INDEXER_HTTP_LISTEN", default_value = "127.0.0.1:7071")]
    pub http_listen: SocketAddr,

    /// Directory of the durable progress file.
    #[arg(long, env = "INDEXER_STATE_DIR")]
    pub state_dir: PathBuf,

    /// The dstack guest-agent socket (devtee locally).
    #[arg(
        long,
        env = "INDEXER_DSTACK_SOCKET",
        default_value = "/var/run/dstack.sock"
    )]
    pub dstack_socket: PathBuf,

    /// Deepest replay a Subscribe may ask for: `from_block` at most this many blocks behind the
    /// indexed height; deeper is refused with RESOURCE_EXHAUSTED (the agent then subscribes live
    /// and reads older events from the chain itself).
    #[arg(long, env = "INDEXER_MAX_REPLAY_BLOCKS", default_value_t = 100_000)]
    pub max_replay_blocks: u64,

    /// Concurrent subscriptions one (cluster, member) may hold; more are refused with
    /// RESOURCE_EXHAUSTED. An agent holds one; the margin covers reconnect races.
    #[arg(
        long,
        env = "INDEXER_MAX_SUBSCRIPTIONS_PER_MEMBER",
        default_value_t = 4
    )]
    pub max_subscriptions_per_member: usize,

    /// Concurrent subscriptions in total; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "INDEXER_MAX_SUBSCRIPTIONS", default_value_t = 10_000)]
    pub max_subscriptions: usize,
}

#[derive(Debug, clap::Args)]
pub struct PubkeyArgs {
    /// The dstack guest-agent socket (devtee locally).
    #[arg(
        long,
        env = "INDEXER_DSTACK_SOCKET",
        default_value = "/var/run/dstack.sock"
    )]
    pub dstack_socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Chain JSON-RPC endpoint (http(s)://host[:port][/path]).
    #[arg(long, env = "INDEXER_RPC_URL")]
    pub rpc_url: String,

    /// The IndexerRegistry contract.
    #[arg(long, env = "INDEXER_REGISTRY")]
    pub registry: Address,

    /// gRPC endpoint agents subscribe to (http://host:port).
    #[arg(long, env = "INDEXER_ENDPOINT")]
    pub endpoint: String,

    /// Code identity of the Indexer build (compose hash, 32 bytes hex).
    #[arg(long, env = "INDEXER_CODE_ID")]
    pub code_id: B256,

    /// The Indexer's Ed25519 public key (from `attestmesh indexer pubkey`).
    #[arg(long, env = "INDEXER_PUBKEY")]
    pub pubkey: B256,

    /// File holding the registry owner's secp256k1 private key (hex).
    #[arg(long, env = "INDEXER_PRIVATE_KEY_FILE")]
    pub private_key_file: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Run(a) => run_indexer(a).await,
        Sub::Pubkey(a) => {
            let key = derive_pubkey(&a.dstack_socket).await?;
            println!("{key}");
            Ok(())
        }
        Sub::Register(a) => {
            let outcome = register(
                &a.rpc_url,
                a.registry,
                &a.endpoint,
                a.code_id,
                a.pubkey,
                &a.private_key_file,
            )
            .await?;
            match outcome {
                IndexerOutcome::Applied => println!("IndexerRegistry {} updated", a.registry),
                IndexerOutcome::AlreadyCurrent => {
                    println!("IndexerRegistry {} already holds this record", a.registry)
                }
            }
            Ok(())
        }
    }
}

fn config(a: RunArgs) -> anyhow::Result<attestmesh_indexer::Config> {
    RpcClient::new(&a.rpc_url).context("--rpc-url / INDEXER_RPC_URL")?;
    if a.cluster_factory == Address::ZERO {
        bail!("--cluster-factory / INDEXER_CLUSTER_FACTORY must not be the zero address");
    }
    if a.batch_size == 0 {
        bail!("--batch-size / INDEXER_BATCH_SIZE must be at least 1");
    }
    if a.poll_interval_ms == 0 {
        bail!("--poll-interval-ms / INDEXER_POLL_INTERVAL_MS must be at least 1");
    }
    if let Some(n) = a.confirmations
        && n > 10_000
    {
        bail!("--confirmations / INDEXER_CONFIRMATIONS {n} is deeper than any reorg: a typo?");
    }
    if a.grpc_listen == a.http_listen && a.grpc_listen.port() != 0 {
        bail!(
            "--grpc-listen and --http-listen are the same address {}",
            a.grpc_listen
        );
    }
    if a.state_dir.as_os_str().is_empty() {
        bail!("--state-dir / INDEXER_STATE_DIR must not be empty");
    }
    if a.max_replay_blocks == 0 {
        bail!("--max-replay-blocks / INDEXER_MAX_REPLAY_BLOCKS must be at least 1");
    }
    if a.max_subscriptions_per_member == 0 || a.max_subscriptions == 0 {
        bail!(
            "--max-subscriptions-per-member / INDEXER_MAX_SUBSCRIPTIONS_PER_MEMBER and \
             --max-subscriptions / INDEXER_MAX_SUBSCRIPTIONS must be at least 1"
        );
    }
    check_socket(&a.dstack_socket)?;
    let mut c =
        attestmesh_indexer::Config::new(a.rpc_url, a.cluster_factory, a.state_dir, a.dstack_socket);
    c.start_block = a.start_block;
    c.batch_size = a.batch_size;
    c.poll_interval = Duration::from_millis(a.poll_interval_ms);
    c.confirmations = a.confirmations;
    c.grpc_listen = a.grpc_listen;
    c.http_listen = a.http_listen;
    c.max_replay_blocks = a.max_replay_blocks;
    c.max_subscriptions_per_member = a.max_subscriptions_per_member;
    c.max_subscriptions = a.max_subscriptions;
    Ok(c)
}

/// The guest agent is a hard prerequisite (the signing key lives there): say so up front rather
/// than as a connect error deep inside startup.
fn check_socket(p: &Path) -> anyhow::Result<()> {
    if !p.exists() {
        bail!(
            "--dstack-socket / INDEXER_DSTACK_SOCKET {}: no such socket (is the guest agent or devtee running?)",
            p.display()
        );
    }
    Ok(())
}

async fn run_indexer(a: RunArgs) -> anyhow::Result<()> {
    let cfg = config(a)?;
    let ix = attestmesh_indexer::Indexer::bind(cfg)
        .await
        .context("starting the indexer")?;
    tracing::info!(grpc = %ix.grpc_addr, http = %ix.http_addr, pubkey = %ix.pubkey(), "indexer running");
    ix.run(super::shutdown_signal()).await?;
    tracing::info!("indexer stopped");
    Ok(())
}

async fn derive_pubkey(socket: &Path) -> anyhow::Result<B256> {
    check_socket(socket)?;
    let key = attestmesh_indexer::derive_key(&GuestAgentClient::new(socket))
        .await
        .with_context(|| format!("deriving the Indexer key from {}", socket.display()))?;
    Ok(key.public())
}

/// `setIndexer` through the operators' path (`attestmesh_ops::indexer::register`, the same one
/// `attestmesh cluster indexer register` takes), so both commands accept and refuse the same
/// inputs: one registration path.
pub async fn register(
    rpc_url: &str,
    registry: Address,
    endpoint: &str,
    code_id: B256,
    pubkey: B256,
    private_key_file: &Path,
) -> anyhow::Result<IndexerOutcome> {
    if registry == Address::ZERO {
        bail!("--registry / INDEXER_REGISTRY must not be the zero address");
    }
    let rpc = RpcClient::new(rpc_url).context("--rpc-url / INDEXER_RPC_URL")?;
    let key = LocalKey::from_file(private_key_file)
        .with_context(|| format!("--private-key-file {}", private_key_file.display()))?;
    let chain_id = rpc
        .chain_id()
        .await
        .context("reading the chain id from --rpc-url")?;
    let mut exec = Executor::new(rpc, chain_id, Mode::Send(key));
    Ok(attestmesh_ops::indexer::register(&mut exec, registry, endpoint, code_id, pubkey).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A real setIndexer against anvil through the operators' path: http and https endpoints
    /// both land, a current record is a no-op, a stranger and a non-URL are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn register_goes_through_the_operators_path() {
        let bin = std::env::var("ANVIL").unwrap_or_else(|_| {
            format!(
                "{}/../../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        /// Stops anvil even when an assertion fails.
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _anvil = Kill(
            std::process::Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--silent",
                ])
                .spawn()
                .expect("anvil"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let rpc = RpcClient::new(&url).unwrap();
        for _ in 0..600 {
            if rpc.chain_id().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // anvil's first dev account (public test key), as an operator's key file.
        let dir = tempfile::tempdir().unwrap();
        let owner_file = dir.path().join("owner.key");
        std::fs::write(
            &owner_file,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        let owner = LocalKey::from_file(&owner_file).unwrap().address();
        let accounts = rpc.accounts().await.unwrap();
        assert_eq!(owner, accounts[0]);
        let artifacts = attestmesh_chain::deploy::Artifacts::new(format!(
            "{}/../../artifacts",
            env!("CARGO_MANIFEST_DIR")
        ));
        let mut ctor = vec![0u8; 12];
        ctor.extend_from_slice(owner.as_slice());
        let reg = attestmesh_chain::deploy::deploy(
            &rpc,
            accounts[1],
            &artifacts,
            "IndexerRegistry",
            &ctor,
        )
        .await
        .unwrap();
        let record = |endpoint: &str, key: u8| (endpoint.to_string(), B256::repeat_byte(key));
        for (endpoint, key) in [
            record("http://127.0.0.1:7070", 4),
            // The production form: the Indexer's CVM behind the gateway on 443.
            record("https://indexer-7070.gateway.example", 5),
        ] {
            let outcome = register(&url, reg, &endpoint, B256::repeat_byte(3), key, &owner_file)
                .await
                .unwrap();
            assert_eq!(outcome, IndexerOutcome::Applied);
            let now = attestmesh_node::indexer_registry::read_current(&rpc, reg)
                .await
                .unwrap();
            assert_eq!((now.endpoint, now.pubkey), (endpoint.clone(), key));
            // The same record again is a no-op, not a second transaction.
            let again = register(&url, reg, &endpoint, B256::repeat_byte(3), key, &owner_file)
                .await
                .unwrap();
            assert_eq!(again, IndexerOutcome::AlreadyCurrent);
        }
        // Someone who is not the registry owner is refused before anything is sent.
        let stranger_file = dir.path().join("stranger.key");
        std::fs::write(&stranger_file, alloy_primitives::hex::encode([7u8; 32])).unwrap();
        let err = register(
            &url,
            reg,
            "http://x:1",
            B256::ZERO,
            B256::repeat_byte(6),
            &stranger_file,
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("only {owner} may do this")),
            "{err:#}"
        );
        // Not a URL at all: refused naming the setting.
        let err = register(
            &url,
            reg,
            "indexer:7070",
            B256::ZERO,
            B256::repeat_byte(6),
            &owner_file,
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("--endpoint"), "{err:#}");
    }
}
