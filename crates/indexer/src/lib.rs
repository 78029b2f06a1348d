//! The attested Indexer (DESIGN §9.2, §9.3): follows every cluster of one ClusterDiamondFactory
//! and pushes signed wake-ups over gRPC `Indexer.Subscribe`.
//!
//! Pushes are wake-ups, never truth (invariant 5): each is Ed25519-signed over the layout in
//! [`attestmesh_core::push`] by a key derived from the TEE, carries the exact `eth_getLogs` call
//! that reproduces it, and the first push of a session carries a quote binding the key to the
//! code. Delivery is at-least-once in block order per subscriber.

pub mod follower;
pub mod http;
pub mod hub;
pub mod replay;
pub mod service;
pub mod state;

/// The Indexer protocol, generated once for every crate by `attestmesh-proto`.
pub use attestmesh_proto::indexer as pb;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use attestmesh_chain::read::ChainReader;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::attestation_report_data;
use attestmesh_tee::client::GuestAgentClient;
use tokio::net::TcpListener;

/// The TEE key path of the Indexer signing key (DESIGN §9.3).
pub const KEY_PATH: &str = "attestmesh/indexer/v1";
const KEY_PURPOSE: &str = "indexer";

/// Everything `attestmesh indexer` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub rpc_url: String,
    pub cluster_factory: Address,
    /// First block to index when there is no state file yet (the factory's deployment block is
    /// the natural choice).
    pub start_block: u64,
    /// Blocks per `eth_getLogs` page.
    pub batch_size: u64,
    pub poll_interval: Duration,
    /// Blocks behind the head to stay; `None`: the chain's default
    /// ([`attestmesh_core::chains::default_confirmations`] of the RPC's `eth_chainId`).
    pub confirmations: Option<u64>,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub dstack_socket: PathBuf,
    /// Per-subscriber buffer; a subscriber that lets it fill is disconnected.
    pub channel_capacity: usize,
    /// The most blocks a `from_block` resume may replay (bounds the work one Hello can cause);
    /// deeper is refused with RESOURCE_EXHAUSTED. Replays stream one `batch_size` page at a time.
    pub max_replay_blocks: u64,
    /// Concurrent subscriptions one (cluster, member) may hold (an agent needs one; a few more
    /// cover reconnects racing the old stream's teardown).
    pub max_subscriptions_per_member: usize,
    /// Concurrent subscriptions in total.
    pub max_subscriptions: usize,
    /// `/healthz` answers 200 while head − indexed ≤ this.
    pub healthy_lag_blocks: u64,
}

impl Config {
    /// Defaults for everything but the endpoints.
    pub fn new(
        rpc_url: String,
        cluster_factory: Address,
        state_dir: PathBuf,
        dstack_socket: PathBuf,
    ) -> Self {
        Self {
            rpc_url,
            cluster_factory,
            start_block: 0,
            batch_size: 1000,
            poll_interval: Duration::from_millis(1000),
            confirmations: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir,
            dstack_socket,
            channel_capacity: 1024,
            max_replay_blocks: 100_000,
            max_subscriptions_per_member: 4,
            max_subscriptions: 10_000,
            healthy_lag_blocks: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Rpc(#[from] attestmesh_chain::rpc::RpcError),
    #[error("TEE: {0}")]
    Tee(#[from] attestmesh_tee::client::AgentError),
    #[error(
        "cannot read eth_chainId to pick the default confirmation depth (or set INDEXER_CONFIRMATIONS): {0}"
    )]
    ChainId(#[source] attestmesh_chain::rpc::RpcError),
    #[error("TEE quote is not hex: {0}")]
    QuoteHex(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir {0}: {1}")]
    StateDir(PathBuf, #[source] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// State shared by the follower, the gRPC service and the HTTP probes.
pub struct Shared {
    /// The chain the follower and the replays read.
    pub chain: Arc<dyn ChainReader>,
    pub key: Ed25519Secret,
    pub pubkey: B256,
    pub attestation: pb::Attestation,
    pub hub: Arc<hub::Hub>,
    pub head: AtomicU64,
    pub head_known: AtomicBool,
    pub cluster_count: AtomicU64,
    pub logs_indexed: AtomicU64,
    pub rpc_errors: AtomicU64,
    pub healthy_lag_blocks: u64,
    pub batch_size: u64,
    pub max_replay_blocks: u64,
}

/// Derives the signing key from the TEE. Deterministic per app identity, so a restarted Indexer
/// signs with the key already in the registry.
pub async fn derive_key(tee: &GuestAgentClient) -> Result<Ed25519Secret, IndexerError> {
    let k = tee
        .get_key(KEY_PATH, KEY_PURPOSE, attestmesh_tee::dstack::ALGORITHM)
        .await?;
    Ok(Ed25519Secret::from_seed(*k.seed))
}

/// A bound, ready Indexer: listeners are open (addresses known), key derived, quote fetched.
pub struct Indexer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub shared: Arc<Shared>,
    grpc: TcpListener,
    http: TcpListener,
    follower: follower::Follower,
}

impl Indexer {
    pub async fn bind(cfg: Config) -> Result<Self, IndexerError> {
        if cfg.batch_size == 0 {
            return Err(IndexerError::Config("batch size must be at least 1".into()));
        }
        if cfg.max_subscriptions_per_member == 0 || cfg.max_subscriptions == 0 {
            return Err(IndexerError::Config(
                "max_subscriptions_per_member and max_subscriptions must be at least 1".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| IndexerError::StateDir(cfg.state_dir.clone(), e))?;
        let rpc = RpcClient::new(&cfg.rpc_url)?.with_timeout(Duration::from_secs(20));
        let confirmations = match cfg.confirmations {
            Some(n) => n,
            None => {
                let id = rpc.chain_id().await.map_err(IndexerError::ChainId)?;
                attestmesh_core::chains::default_confirmations(id)
            }
        };
        let tee = GuestAgentClient::new(&cfg.dstack_socket);
        let key = derive_key(&tee).await?;
        let pubkey = key.public();
        let quote = tee.get_quote(&attestation_report_data(&pubkey)).await?;
        let quote_bytes = alloy_primitives::hex::decode(&quote.quote)
            .map_err(|e| IndexerError::QuoteHex(e.to_string()))?;
        let attestation = pb::Attestation {
            quote: quote_bytes,
            event_log: quote.event_log,
        };
        let st = state::load(&cfg.state_dir, cfg.cluster_factory)?.unwrap_or(state::State {
            factory: cfg.cluster_factory,
            next_block: cfg.start_block,
            clusters: Vec::new(),
        });
        let height = st.next_block.checked_sub(1);
        let hub = hub::Hub::new(
            cfg.channel_capacity,
            height,
            hub::Limits {
                per_member: cfg.max_subscriptions_per_member,
                total: cfg.max_subscriptions,
            },
        );
        let shared = Arc::new(Shared {
            chain: Arc::new(rpc),
            key,
            pubkey,
            attestation,
            hub,
            head: AtomicU64::new(0),
            head_known: AtomicBool::new(false),
            cluster_count: AtomicU64::new(st.clusters.len() as u64),
            logs_indexed: AtomicU64::new(0),
            rpc_errors: AtomicU64::new(0),
            healthy_lag_blocks: cfg.healthy_lag_blocks,
            batch_size: cfg.batch_size,
            max_replay_blocks: cfg.max_replay_blocks,
        });
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| IndexerError::Bind { what, addr, source })
        };
        let grpc = bind("gRPC", cfg.grpc_listen).await?;
        let http = bind("HTTP", cfg.http_listen).await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| IndexerError::Bind { what, addr, source })
        };
        let grpc_addr = local(&grpc, "gRPC", cfg.grpc_listen)?;
        let http_addr = local(&http, "HTTP", cfg.http_listen)?;
        let follower = follower::Follower::new(shared.clone(), &cfg, confirmations, st);
        tracing::info!(%grpc_addr, %http_addr, pubkey = %pubkey, confirmations, "indexer bound");
        Ok(Self {
            grpc_addr,
            http_addr,
            shared,
            grpc,
            http,
            follower,
        })
    }

    pub fn pubkey(&self) -> B256 {
        self.shared.pubkey
    }

    /// Runs follower, gRPC and HTTP until `shutdown` resolves, then stops all three (open
    /// subscriptions end; the state file holds the last indexed batch).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), IndexerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let follower = tokio::spawn(self.follower.run(stop_rx.clone()));
        let http = tokio::spawn(http::serve(self.http, self.shared.clone(), stop_rx.clone()));
        let svc = service::IndexerService::new(self.shared.clone());
        let mut grpc_stop = stop_rx.clone();
        let mut grpc = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::indexer_server::IndexerServer::new(svc))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(self.grpc),
                    async move {
                        let _ = grpc_stop.changed().await;
                    },
                ),
        );
        let hub = self.shared.hub.clone();
        shutdown.await;
        let _ = stop_tx.send(true);
        hub.close_all();
        let _ = http.await;
        let _ = follower.await;
        // Live streams would keep the gRPC server waiting: give them a moment, then stop anyway.
        match tokio::time::timeout(Duration::from_secs(2), &mut grpc).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {}
            Err(_) => grpc.abort(),
        }
        Ok(())
    }
}
