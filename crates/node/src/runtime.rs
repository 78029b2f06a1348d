//! The agent runtime: the phases of DESIGN §5 wired to the pieces in this crate.
//!
//! [`run`] is the whole agent. It starts the HTTP and app-API servers first (so `/healthz` and
//! `GetMeshStatus` report progress from the first second), then boots: TEE keys, cluster lookup,
//! registration or the lost-state check, chain follower, WireGuard interface and bridge,
//! PeerControl, heartbeats, CSK. Every wait is cancellable by the shutdown future; on shutdown
//! the interface is removed and the app socket deleted before `run` returns.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::intake::{Intake, IntakeConfig, IntakeError, WakeUp};
use alloy_primitives::{Address, B256};
use attestmesh_chain::bindings::IClusterMember;
use attestmesh_chain::bundler::BundlerClient;
use attestmesh_chain::paymaster::PaymasterClient;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_chain::userop::{UserOpClient, UserOpConfig};
use attestmesh_core::backoff::{Backoff, BackoffPolicy};
use attestmesh_core::ids::member_id;
use attestmesh_core::liveness::{self, Liveness};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::attestor::{Attestor, Derived, OnChainRecord, check_lost_state};
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::dstack::DstackAttestor;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AgentApi};
use crate::chainview::ChainHistory;
use crate::config::Config;
use crate::cskflow::{CskContext, CskError};
use crate::follower::{Follower, FollowerConfig};
use crate::health::{HealthServer, QuoteSource};
use crate::heartbeats::{self, Heartbeats};
use crate::mesh::{self, Mesh, MeshSettings};
use crate::ports::{
    BoxFuture, HistoryError, MessageHistory, SubmitError, Submitted, Submitter, UserOpSubmitter,
};
use crate::retry;
use crate::state::{InboundMessage, MemberView, Phase, Shared};
use crate::statedir::{StateDir, StateDirError};
use attestmesh_chain::cluster::{ClusterReader, ReadError};
use attestmesh_chain::read::{BlockTag, view};

/// Why the agent stopped with an error. Each is a reason to exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("state directory: {0}")]
    StateDir(#[from] StateDirError),
    #[error("health endpoint {addr}: {source}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Socket(#[from] api::SocketError),
    /// An endpoint URL (RPC, bundler, paymaster) the client refuses.
    #[error("endpoint: {0}")]
    Rpc(#[from] attestmesh_chain::rpc::RpcError),
    /// Registered, yet absent from the members the confirmed block lists: a node that answers
    /// inconsistently.
    #[error("registered member {0} missing from listMembers() at the confirmed block")]
    NotInView(B256),
    #[error("RPC_URL serves chain id {got}, but CHAIN_ID is {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("TEE: {0}")]
    Tee(String),
    #[error("chain: {0}")]
    Chain(#[from] ReadError),
    #[error(transparent)]
    LostState(#[from] attestmesh_tee::LostStateError),
    #[error("mesh: {0}")]
    Mesh(#[from] mesh::MeshError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("this member cannot be routed: {0}")]
    Unroutable(mesh::Refusal),
    #[error(transparent)]
    Csk(#[from] CskError),
    #[error("Indexer intake: {0}")]
    Intake(#[from] IntakeError),
}

/// A [`Submitter`] that exists before registration and is filled in once the account is known,
/// so the app API can be served from the start.
#[derive(Default)]
struct LateSubmitter(OnceLock<Arc<dyn Submitter>>);

impl Submitter for LateSubmitter {
    fn submit(&self, inner: Vec<u8>) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        match self.0.get() {
            Some(s) => s.submit(inner),
            None => Box::pin(async {
                Err(SubmitError::Rejected {
                    contract_error: None,
                    detail: "this node is not registered yet".into(),
                })
            }),
        }
    }
}

#[derive(Default)]
struct LateHistory(OnceLock<Arc<dyn MessageHistory>>);

impl MessageHistory for LateHistory {
    fn messages_since(
        &self,
        from: u64,
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, HistoryError>> {
        match self.0.get() {
            Some(h) => h.messages_since(from),
            None => Box::pin(async { Err(HistoryError::NotReady) }),
        }
    }
}

/// Resolves when the stop flag is set.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs `fut` unless the stop flag fires first (`None` then).
async fn or_stop<T>(rx: &watch::Receiver<bool>, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        v = fut => Some(v),
        _ = stopped(rx.clone()) => None,
    }
}

/// Handles the runtime exposes to tests and the CLI.
pub struct Handles {
    pub shared: Arc<Shared>,
    pub health_addr: SocketAddr,
}

/// Runs the agent on dstack (the guest agent at `DSTACK_SOCKET`) until `shutdown` resolves
/// (SIGTERM in the CLI). `on_ready` gets the shared state and the bound health address as soon
/// as the servers listen.
pub async fn run(
    cfg: Config,
    on_ready: impl FnOnce(Handles) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let attestor = DstackAttestor::new(GuestAgentClient::new(&cfg.dstack_socket));
    run_with(cfg, attestor, on_ready, shutdown).await
}

/// [`run`] with any attestation method (DESIGN §3.6, §4.4): the runtime sees only the
/// [`Attestor`] trait, so a second method is a new provider, not a change here.
pub async fn run_with<A: Attestor + 'static>(
    cfg: Config,
    attestor: A,
    on_ready: impl FnOnce(Handles) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let shared = Arc::new(Shared::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    let state = cfg.state_dir.as_ref().map(StateDir::open).transpose()?;
    let attestor = Arc::new(attestor);

    // Interfaces first: progress is observable from the start.
    let health = HealthServer::bind(
        cfg.health_addr,
        Arc::clone(&shared),
        Arc::clone(&attestor) as Arc<dyn QuoteSource>,
    )
    .await
    .map_err(|source| NodeError::Health {
        addr: cfg.health_addr,
        source,
    })?;
    let health_addr = health.local_addr().map_err(|source| NodeError::Health {
        addr: cfg.health_addr,
        source,
    })?;
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    tasks.push(tokio::spawn(health.serve(stopped(stop_rx.clone()))));
    let late_submitter = Arc::new(LateSubmitter::default());
    let late_history = Arc::new(LateHistory::default());
    let listener = api::bind_socket(&cfg.agent_socket)?;
    let api = AgentApi::new(
        Arc::clone(&shared),
        Arc::clone(&late_submitter) as Arc<dyn Submitter>,
        Arc::clone(&late_history) as Arc<dyn MessageHistory>,
    );
    {
        let path = cfg.agent_socket.clone();
        let stop = stopped(stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = api::serve(listener, path, api, stop).await {
                tracing::error!(error = %e, "app API server failed");
            }
        }));
    }
    on_ready(Handles {
        shared: Arc::clone(&shared),
        health_addr,
    });

    let boot = Boot {
        cfg: &cfg,
        shared: &shared,
        attestor: &attestor,
        stop: &stop_rx,
        tasks: &mut tasks,
    };
    let result = boot_and_run(boot, state, &late_submitter, &late_history).await;
    if let Err(e) = &result {
        shared.fail(e.to_string());
        tracing::error!(error = %e, "agent failed");
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        // Every task watches the stop flag; a stuck one must not hold the process.
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            tracing::warn!("a task did not stop within 5 s");
        }
    }
    // The socket is removed by the API server on its way out; make sure even if it failed.
    let _ = std::fs::remove_file(&cfg.agent_socket);
    tracing::info!("agent stopped");
    result
}

/// What every boot phase reads: the settings, the shared state, the TEE, the stop flag, and
/// the task list each phase adds its long-running tasks to (joined by [`run`] on the way out).
struct Boot<'a, A: Attestor> {
    cfg: &'a Config,
    shared: &'a Arc<Shared>,
    attestor: &'a Arc<A>,
    stop: &'a watch::Receiver<bool>,
    tasks: &'a mut Vec<JoinHandle<()>>,
}

/// `booting`'s result: who this node is, its cluster, and the way it sends operations.
struct Booted<E> {
    member: Address,
    derived: Derived<E>,
    cluster: Address,
    reader: ClusterReader,
    cidr: MeshCidr,
    my_id: B256,
    submitter: Arc<dyn Submitter>,
}

/// `subscribing`'s result: our own record as the confirmed chain state has it, and the handle
/// that makes the follower poll now (the CSK flow uses it after a failed pull).
struct Subscribed {
    me: MemberView,
    /// We are the only member so far (`waiting-peers`).
    alone: bool,
    wake_follower: Arc<Notify>,
}

/// A phase's outcome: `None` when shutdown came first (not an error: `run` just stops).
type PhaseResult<T> = Result<Option<T>, NodeError>;

/// The phases of DESIGN §5 in order; each returns the typed context the next one needs.
async fn boot_and_run<A: Attestor>(
    mut boot: Boot<'_, A>,
    state: Option<StateDir>,
    late_submitter: &LateSubmitter,
    late_history: &LateHistory,
) -> Result<(), NodeError> {
    let Some(booted) = boot.booting().await? else {
        return Ok(());
    };
    let Some(()) = boot.registering(&booted).await? else {
        return Ok(());
    };
    let _ = late_submitter.0.set(Arc::clone(&booted.submitter));
    let Some(sub) = boot
        .subscribing(&booted, state.clone(), late_history)
        .await?
    else {
        return Ok(());
    };
    boot.mesh(&booted, &sub).await?;
    boot.csk(booted, sub, state).await
}

impl<A: Attestor> Boot<'_, A> {
    /// `booting`: chain id, TEE identity and keys, and the cluster the member is bound to.
    async fn booting(&mut self) -> PhaseResult<Booted<A::Evidence>> {
        let (cfg, stop, attestor) = (self.cfg, self.stop, self.attestor);
        let rpc = Arc::new(RpcClient::new(&cfg.rpc_url).map_err(NodeError::Rpc)?);
        let Some(chain_id) = or_stop(stop, retry("eth_chainId", || rpc.chain_id())).await else {
            return Ok(None);
        };
        if chain_id != cfg.chain_id {
            return Err(NodeError::WrongChain {
                expected: cfg.chain_id,
                got: chain_id,
            });
        }
        tracing::info!(
            chain_id,
            chain = attestmesh_core::chains::chain_name(chain_id).unwrap_or("unknown"),
            confirmations = cfg.confirmations,
            "chain checked; acting on events this many blocks below the head"
        );
        let Some(member) = or_stop(
            stop,
            retry("guest agent /Info", || attestor.member_contract()),
        )
        .await
        else {
            return Ok(None);
        };
        let Some(derived) = or_stop(
            stop,
            retry("guest agent /GetKey", || attestor.derive_keys()),
        )
        .await
        else {
            return Ok(None);
        };
        let keys = derived.keys.clone();
        tracing::info!(member = %member, owner = %keys.owner.address(), "keys derived from the TEE");
        // The member may be bound to its cluster after boot: wait for it.
        let Some(cluster) = or_stop(stop, async {
            let mut b = Backoff::new(retry::TRANSIENT);
            loop {
                match view(
                    rpc.as_ref(),
                    member,
                    IClusterMember::clusterCall {},
                    BlockTag::Latest,
                )
                .await
                {
                    Ok(c) if !c.is_zero() => return c,
                    Ok(_) => tracing::info!(%member, "member contract not bound to a cluster yet"),
                    Err(e) => {
                        tracing::warn!(%member, error = %e, "reading member.cluster() failed")
                    }
                }
                retry::pause(&mut b).await;
            }
        })
        .await
        else {
            return Ok(None);
        };
        let reader = ClusterReader::new(rpc.clone(), cluster);
        let cidr = reader.mesh_cidr().await?;
        let my_id = member_id(cluster, member, attestor.attestor_id());
        tracing::info!(%cluster, member_id = %my_id, mesh_ip = %cidr.mesh_ip(&my_id), "cluster found");

        let userops = Arc::new(UserOpClient::new(
            RpcClient::new(&cfg.rpc_url).map_err(NodeError::Rpc)?,
            BundlerClient::new(
                RpcClient::new(&cfg.bundler_url)
                    .map_err(NodeError::Rpc)?
                    .with_timeout(Duration::from_secs(30)),
            ),
            PaymasterClient::new(
                RpcClient::new(&cfg.paymaster_url)
                    .map_err(NodeError::Rpc)?
                    .with_timeout(Duration::from_secs(15)),
                cfg.paymaster_context.clone(),
            ),
            UserOpConfig {
                entry_point: cfg.entry_point,
                ..UserOpConfig::default()
            },
        ));
        let submitter: Arc<dyn Submitter> = Arc::new(UserOpSubmitter::new(
            userops,
            member,
            cluster,
            keys.owner.clone(),
        ));

        Ok(Some(Booted {
            member,
            derived,
            cluster,
            reader,
            cidr,
            my_id,
            submitter,
        }))
    }

    /// `registering`: the lost-state check when the chain has our record, else the bootstrap
    /// operation (DESIGN §5.2).
    async fn registering(&mut self, b: &Booted<A::Evidence>) -> PhaseResult<()> {
        self.shared.advance(Phase::Registering);
        let Some(reg) = or_stop(
            self.stop,
            register(
                self.attestor.as_ref(),
                &b.derived,
                &b.reader,
                b.member,
                &b.submitter,
            ),
        )
        .await
        else {
            return Ok(None);
        };
        reg?;
        Ok(Some(()))
    }

    /// `subscribing`: the chain follower (and the Indexer intake when configured) until the
    /// confirmed state holds our own record.
    async fn subscribing(
        &mut self,
        b: &Booted<A::Evidence>,
        state: Option<StateDir>,
        late_history: &LateHistory,
    ) -> PhaseResult<Subscribed> {
        let (cfg, shared, stop) = (self.cfg, self.shared, self.stop);
        let my_id = b.my_id;
        let keys = &b.derived.keys;
        shared.advance(Phase::Subscribing);
        let mut follower = Follower::new(
            b.reader.clone(),
            Arc::clone(shared),
            b.cidr,
            my_id,
            keys.x25519.clone(),
            FollowerConfig {
                poll_interval: cfg.poll_interval,
                confirmations: cfg.confirmations,
            },
            state.clone(),
        );
        // The view is read at the confirmed block, so our own registration shows up only once it
        // is CONFIRMATIONS deep: wait for it rather than mistake it for a missing record.
        let first_poll = async {
            let mut b = Backoff::new(retry::TRANSIENT);
            loop {
                match follower.poll_once().await {
                    Ok(()) => match shared.cluster() {
                        Some(v) if v.member(&my_id).is_some() => return v,
                        _ => tracing::info!(
                            confirmations = cfg.confirmations,
                            "waiting for our registration to be confirmed"
                        ),
                    },
                    Err(e) => tracing::warn!(error = %e, "initial chain poll failed; retrying"),
                }
                retry::pause(&mut b).await;
            }
        };
        let Some(view0) = or_stop(stop, first_poll).await else {
            return Ok(None);
        };
        let me = view0
            .member(&my_id)
            .cloned()
            .ok_or(NodeError::NotInView(my_id))?;
        if let Some(r) = mesh::refusals(&view0.members)
            .into_iter()
            .find(|r| r.refused() == my_id)
        {
            // Chain state gives our /32 or our WireGuard key to an earlier member (or our key is
            // weak): no node will configure us. Fail closed and say why.
            shared.fail(r.to_string());
            return Err(NodeError::Unroutable(r));
        }
        shared.set_me(me.clone());
        let _ = late_history.0.set(Arc::new(ChainHistory {
            reader: b.reader.clone(),
            shared: Arc::clone(shared),
            me: my_id,
            x25519: keys.x25519.clone(),
        }));
        let wake_follower = follower.waker();
        let follower = match cfg.indexer_registry {
            Some(registry) => {
                let rx = self
                    .start_intake(registry, b.cluster, my_id, &follower)
                    .await?;
                follower.with_wakeups(rx)
            }
            None => follower,
        };
        self.tasks
            .push(tokio::spawn(follower.run(stopped(stop.clone()))));

        let alone = view0.members.iter().all(|m| m.id == my_id);
        Ok(Some(Subscribed {
            me,
            alone,
            wake_follower,
        }))
    }

    /// `wg-configuring`: the WireGuard interface and bridge, the reconcile loop, PeerControl
    /// and heartbeats, all on our mesh address.
    async fn mesh(&mut self, b: &Booted<A::Evidence>, sub: &Subscribed) -> Result<(), NodeError> {
        let (cfg, shared, stop) = (self.cfg, self.shared, self.stop);
        let (my_id, keys, me) = (b.my_id, &b.derived.keys, &sub.me);
        if sub.alone {
            shared.advance(Phase::WaitingPeers);
        }
        let settings = MeshSettings {
            interface: cfg.interface.clone(),
            wg_listen_port: cfg.wg_listen_port,
            wg_tcp_port: cfg.wg_tcp_port,
            gateway_domain: cfg.gateway_domain.clone(),
            gateway_connect: cfg.gateway_connect,
            ingress: cfg.wg_ingress.clone(),
        };
        let my_host = cfg.gateway_host(b.member);
        let mesh = Mesh::up(
            settings,
            // Built straight from the zeroizing copy, which is wiped at the end of this statement.
            attestmesh_net::PrivateKey::from_bytes(*keys.wireguard.to_bytes()),
            me.mesh_ip,
            b.cidr.prefix(),
            my_host,
        )
        .await?;
        shared.advance(Phase::WgConfiguring);
        self.tasks.push(tokio::spawn(reconcile_loop(
            mesh,
            Arc::clone(shared),
            my_id,
            cfg.wg_tcp_port,
            cfg.gateway_domain.clone(),
            stop.clone(),
        )));

        // PeerControl and heartbeats live on the mesh address only.
        let pc_addr = SocketAddr::new(IpAddr::V4(me.mesh_ip), cfg.peer_control_port);
        let pc = tokio::net::TcpListener::bind(pc_addr)
            .await
            .map_err(|source| NodeError::Bind {
                what: "PeerControl",
                addr: pc_addr,
                source,
            })?;
        {
            let shared = Arc::clone(shared);
            let stop = stopped(stop.clone());
            self.tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::peer::serve(pc, shared, stop).await {
                    tracing::error!(error = %e, "PeerControl server failed");
                }
            }));
        }
        let hb_socket = heartbeats::bind(me.mesh_ip, cfg.heartbeat_port)
            .await
            .map_err(|source| NodeError::Bind {
                what: "heartbeats",
                addr: SocketAddr::new(IpAddr::V4(me.mesh_ip), cfg.heartbeat_port),
                source,
            })?;
        let interval_ms = cfg.heartbeat_interval.as_millis() as u64;
        let hb = Heartbeats {
            socket: hb_socket,
            liveness: Liveness::new(
                my_id,
                keys.ed25519.clone(),
                liveness::Config::with_interval(interval_ms),
            ),
            shared: Arc::clone(shared),
            port: cfg.heartbeat_port,
            interval: cfg.heartbeat_interval,
        };
        self.tasks.push(tokio::spawn(hb.run(stopped(stop.clone()))));

        Ok(())
    }

    /// `pulling-csk` → `heartbeating` → healthy: acquire the CSK, then keep it only while the
    /// chain commits to it (re-pulled after a reorg, DESIGN §8).
    async fn csk(
        self,
        b: Booted<A::Evidence>,
        sub: Subscribed,
        state: Option<StateDir>,
    ) -> Result<(), NodeError> {
        let (cfg, shared, stop) = (self.cfg, self.shared, self.stop);
        let keys = &b.derived.keys;
        shared.advance(Phase::PullingCsk);
        let ctx = CskContext {
            shared: Arc::clone(shared),
            me: b.my_id,
            my_ip: IpAddr::V4(sub.me.mesh_ip),
            x25519: keys.x25519.clone(),
            derived_csk: keys.csk.clone(),
            state_key: keys.state.clone(),
            state,
            submitter: b.submitter,
            peer_control_port: cfg.peer_control_port,
            wake_follower: sub.wake_follower,
        };
        let Some(csk) = or_stop(stop, ctx.acquire()).await else {
            return Ok(());
        };
        let csk = csk?;
        tracing::info!(commitment = %csk.commitment(), "CSK held");

        // ---- heartbeating → healthy (the gate in `Status`) ---------------------------------------
        shared.advance(Phase::Heartbeating);
        // Keep the CSK only while the chain commits to it (re-pulled after a reorg, DESIGN §8).
        match or_stop(stop, ctx.maintain(csk)).await {
            Some(Err(e)) => Err(e.into()),
            Some(Ok(never)) => match never {},
            None => Ok(()),
        }
    }

    /// Starts the verified Indexer intake (DESIGN §9.2) next to the follower and returns the
    /// follower's end of the wake-up channel. The intake only ever yields block numbers, and the
    /// follower only uses them to poll early, so an Indexer — honest, lying or absent — can change
    /// how soon we see an event, never what we see.
    async fn start_intake(
        &mut self,
        registry: Address,
        cluster: Address,
        me: B256,
        follower: &Follower,
    ) -> Result<mpsc::Receiver<WakeUp>, NodeError> {
        let (cfg, stop) = (self.cfg, self.stop);
        let mut ic = IntakeConfig::new(cfg.rpc_url.clone(), registry, cluster, me);
        // Resume right after our durable cursor: the Indexer replays what we may not have seen.
        ic.from_block = follower.cursor().map_or(0, |c| c.block.saturating_add(1));
        ic.allow_simulated_quotes = cfg.indexer_allow_simulated_quotes;
        ic.pccs_url = cfg.pccs_url.clone();
        ic.tcb_policy = cfg.indexer_tcb_policy.clone();
        ic.repro_sample_rate = cfg.indexer_repro_sample_rate;
        ic.extra_ca_pem = cfg.indexer_ca_pem.clone();
        ic.gateway_connect = cfg
            .gateway_connect
            .map(|addr| (cfg.gateway_domain.clone(), addr));
        let intake = Intake::new(ic)?;
        follower.shared().set_intake_stats(intake.stats());
        // Room for a burst of one wake-up per block; the intake waits (never drops) when it is full,
        // and the follower coalesces what queued up into one poll.
        let (tx, rx) = mpsc::channel(64);
        let stop_rx = stop.clone();
        self.tasks.push(tokio::spawn(async move {
            match intake.run(stopped(stop_rx.clone()), tx).await {
                Ok(()) => {}
                // The follower went away first during shutdown: expected.
                Err(IntakeError::WakeClosed) if *stop_rx.borrow() => {}
                Err(e) => {
                    tracing::error!(error = %e, "Indexer intake stopped; chain polling continues alone")
                }
            }
        }));
        tracing::info!(%registry, "Indexer intake started: verified pushes wake the follower");
        Ok(rx)
    }
}

/// Retries a transient failure forever with capped backoff, logging each failure; the caller
/// bounds it with the stop flag.
async fn retry<T, E: std::fmt::Display, F, Fut>(what: &'static str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut b = Backoff::new(retry::TRANSIENT);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(what, error = %e, attempt = b.attempts(), "retrying");
                retry::pause(&mut b).await;
            }
        }
    }
}

/// Registration (DESIGN §5.2): skip with the lost-state check if the chain has our record,
/// otherwise submit the bootstrap operation, retrying with capped backoff (the operator's
/// allowlist entries may still be landing).
async fn register<A: Attestor>(
    attestor: &A,
    derived: &Derived<A::Evidence>,
    reader: &ClusterReader,
    member: Address,
    submitter: &Arc<dyn Submitter>,
) -> Result<(), NodeError> {
    let mut b = Backoff::new(BackoffPolicy::forever(
        Duration::from_secs(1),
        Duration::from_secs(30),
    ));
    loop {
        match reader.record_of(member).await {
            Ok(Some((rec, owner))) => {
                let record = OnChainRecord {
                    keys: attestmesh_core::binding::MemberPubKeys {
                        x: rec.xPubKey,
                        wg: rec.wgPubKey,
                        ed: rec.edPubKey,
                    },
                    owner: (!owner.is_zero()).then_some(owner),
                };
                check_lost_state(member, &derived.keys, &record)?;
                tracing::info!(%member, "already registered; keys match the chain");
                return Ok(());
            }
            Ok(None) => {
                let call = attestor
                    .registration_call(derived, reader.cluster(), member)
                    .map_err(|e| NodeError::Tee(e.to_string()))?;
                match submitter.submit(call).await {
                    Ok(s) => {
                        tracing::info!(%member, tx = %s.tx_hash, block = s.block_number, "registered");
                        continue;
                    }
                    Err(e) => tracing::warn!(%member, error = %e, "registration failed; retrying"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading our member record failed; retrying"),
        }
        retry::pause(&mut b).await;
    }
}

/// How often the reconcile task re-reads the device's per-peer counters for `/metrics`.
const WG_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the interface in line with every published chain view until stop, then removes it.
async fn reconcile_loop(
    mut mesh: Mesh,
    shared: Arc<Shared>,
    me: B256,
    wg_tcp_port: u16,
    domain: String,
    stop: watch::Receiver<bool>,
) {
    let mut rx = shared.watch_cluster();
    // Each refusal is logged and counted once per process, not at every poll.
    let mut refusals_logged: std::collections::HashSet<mesh::Refusal> =
        std::collections::HashSet::new();
    // The per-peer WireGuard counters on /metrics are this fresh.
    let mut stats_every = tokio::time::interval(WG_STATS_INTERVAL);
    stats_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut view_changed = true;
    loop {
        // Only a change is marked seen: a stats tick must not swallow one that is pending.
        let view = if view_changed {
            rx.borrow_and_update().clone()
        } else {
            None
        };
        if let Some(view) = view {
            let plan = mesh::plan(&view, &me, wg_tcp_port, &domain);
            for r in &plan.refused {
                if refusals_logged.insert(*r) {
                    let counter = match r {
                        mesh::Refusal::MeshIpCollision { .. } => &shared.metrics.mesh_ip_collisions,
                        _ => &shared.metrics.wg_key_refusals,
                    };
                    crate::state::Metrics::inc(counter);
                    tracing::error!(member = %r.refused(), "{r}");
                }
            }
            let desired = plan.peers;
            let n = mesh.reconcile(&desired).await;
            tracing::debug!(peers = n, "mesh reconciled");
        }
        shared.set_wg_peers(mesh.peer_stats());
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() { break }
                view_changed = true;
            }
            _ = stats_every.tick() => view_changed = false,
            _ = stopped(stop.clone()) => break,
        }
    }
    // Blocking join of boringtun's threads: off the async workers.
    let _ = tokio::task::spawn_blocking(move || mesh.down()).await;
}
