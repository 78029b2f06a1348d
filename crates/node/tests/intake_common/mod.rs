//! Shared fixtures of the intake tests and the latency benchmark: real anvil, the real contracts
//! (cluster, two registered members, IndexerRegistry), devtee on real unix sockets, real Indexers
//! and a scriptable malicious gRPC Indexer on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U64};
use alloy_sol_types::SolCall;
use alloy_sol_types::SolEvent;
use attestmesh_chain::bindings::IMessageFacet;
use attestmesh_chain::deploy::{self, ENTRY_POINT_V07, Infra};
use attestmesh_chain::devstack::{self, ClusterSpec, Devchain};
use attestmesh_chain::read::{ChainReader, Log, LogFilter};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::push::{PushBody, attestation_report_data};
use attestmesh_indexer::{Config, Indexer};
use attestmesh_node::intake::{Intake, IntakeConfig, IntakeStats, WakeUp};
use attestmesh_proto::indexer as pb;
use attestmesh_tee::devtee;
use attestmesh_tee::kms;
use tokio::sync::mpsc;

#[path = "../../../indexer/tests/common/mod.rs"]
mod chain_fixtures;
pub use chain_fixtures::{devtee, register_members};

/// A chain with one cluster, two registered members (A, B; impersonated so they can send) and
/// an IndexerRegistry owned by an unlocked anvil account.
pub struct World {
    pub chain: Devchain,
    pub rpc: RpcClient,
    pub infra: Infra,
    pub cluster: Address,
    pub registry: Address,
    pub registry_owner: Address,
    pub a: (Address, B256),
    pub b: (Address, B256),
    pub tmp: tempfile::TempDir,
    tees: Vec<tokio::sync::oneshot::Sender<()>>,
}

pub async fn world() -> World {
    let repo = devstack::repo_root(env!("CARGO_MANIFEST_DIR"));
    let artifacts = devstack::artifacts(&repo, &[]).unwrap();
    let chain = Devchain::start(&repo).await.unwrap();
    let rpc = chain.rpc.clone();
    let (deployer, owner, submitter) = (chain.accounts[0], chain.accounts[1], chain.accounts[2]);
    let spec = ClusterSpec {
        owner,
        cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
        kms_roots: vec![kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(1),
    };
    let (infra, cluster) = chain
        .deploy_dev_cluster(&artifacts, ENTRY_POINT_V07, &spec)
        .await
        .unwrap();
    let mut ctor = vec![0u8; 12];
    ctor.extend_from_slice(owner.as_slice());
    let registry = deploy::deploy(&rpc, deployer, &artifacts, "IndexerRegistry", &ctor)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (tees, members) =
        register_members(&chain, &infra, cluster, submitter, tmp.path(), &[2, 3]).await;
    World {
        chain,
        rpc,
        infra,
        cluster,
        registry,
        registry_owner: owner,
        a: members[0],
        b: members[1],
        tmp,
        tees,
    }
}

impl World {
    pub fn url(&self) -> String {
        self.chain.url().to_string()
    }

    /// `IndexerRegistry.setIndexer` from the owner. Explicit gas: the node's estimate is exact
    /// for the estimating block, but `updatedAt = block.timestamp` costs an extra ~2.8k gas
    /// when the transaction lands in a later second than the previous update (a no-op SSTORE
    /// in the estimate, a real one when mined) — an out-of-gas revert with no data otherwise.
    pub async fn set_registry(&self, endpoint: &str, pubkey: B256) {
        let data = attestmesh_ops::indexer::set_indexer_calldata(
            endpoint,
            devtee::default_compose_hash(),
            pubkey,
        );
        let hash: B256 = self
            .rpc
            .call(
                "eth_sendTransaction",
                serde_json::json!([{
                    "from": self.registry_owner,
                    "to": self.registry,
                    "input": alloy_primitives::Bytes::from(data),
                    "gas": "0x7a120",
                }]),
            )
            .await
            .unwrap();
        let r = self
            .rpc
            .wait_receipt(hash, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(r.success, "setIndexer reverted");
    }

    /// A sends a sealed message to B; returns its block.
    pub async fn send_a_to_b(&self, env: u8) -> u64 {
        let call = IMessageFacet::sendCall {
            recipientMemberId: self.b.1,
            envelopeId: B256::repeat_byte(env),
            ciphertext: vec![env; 64].into(),
        };
        self.rpc
            .transact(self.a.0, Some(self.cluster), &call.abi_encode())
            .await
            .unwrap()
            .block_number
    }

    /// The MessageSent logs to B in `[from, to]`, as the agent's follower would read them.
    pub async fn messages_to_b(&self, from: u64, to: u64) -> Vec<Log> {
        messages_to(&self.rpc, self.cluster, self.b.1, from, to)
            .await
            .unwrap()
    }

    /// A real Indexer with its own devtee (`app` picks its TEE identity, hence its key).
    pub async fn indexer(&self, app: u8, name: &str, grpc: Option<SocketAddr>) -> Running {
        let sock = self.tmp.path().join(format!("{name}.sock"));
        let tee = if sock.exists() {
            None
        } else {
            Some(devtee(&sock, Address::repeat_byte(app)).await)
        };
        let mut cfg = Config::new(
            self.url(),
            self.infra.diamond_factory,
            self.tmp.path().join(format!("{name}-state")),
            sock,
        );
        cfg.poll_interval = Duration::from_millis(20);
        if let Some(g) = grpc {
            cfg.grpc_listen = g;
        }
        start_indexer(cfg, tee).await
    }

    pub fn intake_config(&self) -> IntakeConfig {
        let mut c = IntakeConfig::new(self.url(), self.registry, self.cluster, self.b.1);
        c.allow_simulated_quotes = true;
        c.backoff_base = Duration::from_millis(50);
        c.backoff_max = Duration::from_millis(400);
        c.registry_refresh = Duration::from_millis(200);
        c
    }
}

/// `eth_getLogs` for MessageSent to `member` — the agent follower's query.
pub async fn messages_to(
    rpc: &RpcClient,
    cluster: Address,
    member: B256,
    from: u64,
    to: u64,
) -> Result<Vec<Log>, attestmesh_chain::rpc::RpcError> {
    let filter = LogFilter::new(&[cluster], from, to)
        .topic(0, &[IMessageFacet::MessageSent::SIGNATURE_HASH])
        .topic(2, &[member]);
    ChainReader::logs(rpc, &filter).await
}

pub struct Running {
    pub grpc: String,
    pub grpc_addr: SocketAddr,
    pub pubkey: B256,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    tee: Option<tokio::sync::oneshot::Sender<()>>,
}

pub async fn start_indexer(cfg: Config, tee: Option<tokio::sync::oneshot::Sender<()>>) -> Running {
    let ix = Indexer::bind(cfg).await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let (grpc_addr, pubkey) = (ix.grpc_addr, ix.pubkey());
    let task = tokio::spawn(async move {
        ix.run(async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        grpc: format!("http://{grpc_addr}"),
        grpc_addr,
        pubkey,
        stop,
        task,
        tee,
    }
}

impl Running {
    /// Stops the Indexer (its devtee keeps running so a restart re-derives the same key).
    pub async fn shutdown(self) -> Option<tokio::sync::oneshot::Sender<()>> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
        self.tee
    }
}

/// A running intake and what it hands the agent.
pub struct RunningIntake {
    pub stats: Arc<IntakeStats>,
    pub wakes: mpsc::Receiver<WakeUp>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub fn start_intake(cfg: IntakeConfig) -> RunningIntake {
    let intake = Intake::new(cfg).unwrap();
    let stats = intake.stats();
    let (tx, wakes) = mpsc::channel(64);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        intake
            .run(
                async move {
                    let _ = rx.await;
                },
                tx,
            )
            .await
            .unwrap();
    });
    RunningIntake {
        stats,
        wakes,
        stop,
        task,
    }
}

impl RunningIntake {
    pub async fn next_wake(&mut self, within: Duration) -> Option<WakeUp> {
        tokio::time::timeout(within, self.wakes.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap();
    }

    pub fn get(&self, f: impl Fn(&IntakeStats) -> &AtomicU64) -> u64 {
        f(&self.stats).load(Ordering::Relaxed)
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A scriptable malicious Indexer: a real tonic server on loopback serving whatever pushes the test
// hands it (then holding the stream open, so any teardown is the intake's doing).

pub type Script = Arc<dyn Fn(&pb::Hello) -> Vec<pb::Push> + Send + Sync>;

#[derive(Clone)]
pub struct EvilIndexer {
    pub script: Arc<Mutex<Script>>,
    pub subscribes: Arc<AtomicU64>,
    pub hellos: Arc<Mutex<Vec<pb::Hello>>>,
}

type BoxStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Push, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::indexer_server::Indexer for EvilIndexer {
    type SubscribeStream = BoxStream;
    async fn subscribe(
        &self,
        req: tonic::Request<pb::Hello>,
    ) -> Result<tonic::Response<BoxStream>, tonic::Status> {
        let hello = req.into_inner();
        self.subscribes.fetch_add(1, Ordering::Relaxed);
        let script = self.script.lock().unwrap().clone();
        let pushes = script(&hello);
        self.hellos.lock().unwrap().push(hello);
        let s = tokio_stream::StreamExt::chain(
            tokio_stream::iter(pushes.into_iter().map(Ok)),
            tokio_stream::pending(),
        );
        Ok(tonic::Response::new(Box::pin(s)))
    }
}

/// Starts the malicious server; returns it and its endpoint.
pub async fn evil_indexer(script: Script) -> (EvilIndexer, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = EvilIndexer {
        script: Arc::new(Mutex::new(script)),
        subscribes: Arc::new(AtomicU64::new(0)),
        hellos: Arc::new(Mutex::new(Vec::new())),
    };
    let s2 = svc.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::indexer_server::IndexerServer::new(s2))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap();
    });
    (svc, format!("http://{addr}"))
}

/// A devtee-format quote binding `pk` with the default compose hash (what a devtee-run Indexer
/// holding `pk` would present).
pub fn simulated_attestation(pk: &B256) -> pb::Attestation {
    let (quote, event_log) = devtee::simulated_attestation(
        Address::repeat_byte(0x1d),
        devtee::default_compose_hash(),
        attestation_report_data(pk),
    );
    pb::Attestation { quote, event_log }
}

/// The body of a real log, with the canonical repro stub.
pub fn body_of(l: &Log) -> PushBody {
    l.push_body()
}

/// The wire form of `b` with signature `sig`.
pub fn to_wire(b: &PushBody, sig: &[u8]) -> pb::Push {
    pb::Push {
        cluster: b.cluster.to_vec(),
        block_number: b.block_number,
        block_hash: b.block_hash.to_vec(),
        tx_hash: b.tx_hash.to_vec(),
        log_index: b.log_index,
        event: Some(pb::Log {
            address: b.address.to_vec(),
            topics: b.topics.iter().map(|t| t.to_vec()).collect(),
            data: b.data.clone(),
        }),
        repro: Some(pb::Repro {
            method: b.repro_method.clone(),
            params_json: b.repro_params_json.clone(),
        }),
        signature: sig.to_vec(),
        attestation: None,
    }
}

/// Signs `b` with `key` and attaches the attestation (first push of a session).
pub fn signed_first(b: &PushBody, key: &Ed25519Secret) -> pb::Push {
    let mut p = to_wire(b, &b.sign(key).unwrap());
    p.attestation = Some(simulated_attestation(&key.public()));
    p
}

pub fn log_block(l: &Log) -> u64 {
    l.block_number
}

pub fn u64_of(v: U64) -> u64 {
    v.to()
}

pub fn tmp_path(w: &World, name: &str) -> PathBuf {
    w.tmp.path().join(name)
}

// ---------------------------------------------------------------------------------------------
// MODEL of the agent's chain follower. The real one lives in crates/node (another engineer's);
// this stand-in does exactly what DESIGN §9.1/§9.2 ask of it and nothing more: poll eth_getLogs
// for MessageSent to one member from a cursor every `interval`, and poll immediately (up to the
// pushed block) when the intake delivers a WakeUp. Each event is reported once, with when and
// why it was seen.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Wake,
    Poll,
}

#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub block: u64,
    pub at: Instant,
    pub via: Via,
}

pub async fn model_agent_poller(
    rpc_url: String,
    cluster: Address,
    member: B256,
    interval: Duration,
    mut wakes: Option<mpsc::Receiver<WakeUp>>,
) -> mpsc::Receiver<Seen> {
    let rpc = RpcClient::new(&rpc_url).unwrap();
    let mut cursor = rpc.block_number().await.unwrap() + 1;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (to, via) = tokio::select! {
                _ = tick.tick() => match rpc.block_number().await {
                    Ok(h) => (h, Via::Poll),
                    Err(_) => continue,
                },
                w = async { match wakes.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => match w {
                    Some(w) => (w.block_number, Via::Wake),
                    None => { wakes = None; continue; }
                },
            };
            if to < cursor {
                continue;
            }
            let Ok(logs) = messages_to(&rpc, cluster, member, cursor, to).await else {
                continue;
            };
            let at = Instant::now();
            for l in &logs {
                if tx
                    .send(Seen {
                        block: log_block(l),
                        at,
                        via,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            cursor = to + 1;
        }
    });
    rx
}
