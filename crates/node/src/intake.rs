//! The agent's verified intake of Indexer pushes (DESIGN §1 invariant 5, §9.2).
//!
//! The runtime plugs it in next to the chain follower ([`crate::follower`]):
//!
//! ```ignore
//! let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel(64);
//! let intake = Intake::new(IntakeConfig::new(rpc_url, registry, cluster, member_id))?;
//! tokio::spawn(intake.run(shutdown, wake_tx));
//! // follower: select { tick(poll_interval), wake_rx.recv() } → eth_getLogs up to the block
//! ```
//!
//! What it guarantees, and why:
//! - **Pushes are wake-ups, never data.** The only thing that leaves this module is
//!   [`WakeUp::block_number`]; the agent re-reads the chain itself. So the worst an Indexer can do
//!   is wake the agent early or not at all, and "not at all" is covered by the agent's own
//!   polling.
//! - **The key comes from the chain.** Every push is verified against the Ed25519 key in
//!   `IndexerRegistry.current()`, read from the agent's own RPC. The key the Indexer presents in
//!   its attestation is only accepted if it *is* the registry key.
//! - **A bad push ends the session.** A bad signature, a push for another cluster, a malformed or
//!   non-canonical push, a missing or unbound attestation, or (when sampled) a reproduction stub
//!   the chain does not confirm: the subscription is torn down, the event is logged as
//!   adversarial, the intake backs off (capped exponential with jitter), re-reads the registry
//!   and subscribes again. Continuing a session with a misbehaving server would let it probe
//!   which malformations we tolerate.
//! - **Nothing is skipped across reconnects.** Delivery from the Indexer is in block order, so
//!   the last verified block is a sound resume point (`Hello.from_block`).
//! - **The Indexer's quote must be genuine.** A TDX quote is verified with `dcap-qvl` against
//!   Intel's collateral, fetched from a PCCS ([`IntakeConfig::pccs_url`]) and reused for a day,
//!   under a TCB policy; then its report_data must bind the registry key and its event log must
//!   prove the registry's code id as the compose hash. devtee quotes pass only with
//!   [`IntakeConfig::allow_simulated_quotes`] (development chains).

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256};
use attestmesh_chain::read::Log;
use attestmesh_chain::rpc::{RpcClient, RpcError};
use attestmesh_core::backoff::{Backoff, BackoffPolicy, Jitter as _, SplitMix64};
use attestmesh_core::push::{PushBody, PushError, REPRO_METHOD, fixed, repro_params_json};
use tokio::sync::mpsc;

use attestmesh_proto::indexer as pb;
use attestmesh_tee::dcap::{self, Collateral, TcbPolicy};
use attestmesh_tee::pccs::PccsClient;
use attestmesh_tee::quote::{self, QuoteError, QuotedReport};

use crate::indexer_registry::{self as registry, IndexerInfo, RegistryError};

/// A verified push, reduced to the one thing the agent may use: "poll now, up to this block".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeUp {
    pub block_number: u64,
}

/// Settings of one intake (one agent = one cluster membership).
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// The agent's own chain RPC: registry reads and repro sampling. Never the Indexer's.
    pub rpc_url: String,
    pub registry: Address,
    pub cluster: Address,
    pub member_id: B256,
    /// First `Hello.from_block` (the agent's durable cursor); 0 = the chain head at startup.
    pub from_block: u64,
    /// Accept devtee's simulated quotes as attestation. Development only: a simulated quote
    /// proves nothing, so production agents must leave this off.
    pub allow_simulated_quotes: bool,
    /// PCCS for the collateral that verifies a TDX quote.
    pub pccs_url: String,
    /// TCB statuses accepted for the Indexer's platform.
    pub tcb_policy: TcbPolicy,
    /// Fraction (0.0..=1.0) of verified pushes whose repro stub is run against `rpc_url`.
    pub repro_sample_rate: f64,
    /// First backoff after a teardown; doubles per consecutive failure up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often the registry is re-read during a healthy session, so a rotation is followed
    /// even when the old Indexer goes quiet.
    pub registry_refresh: Duration,
    /// Connect + Subscribe deadline.
    pub connect_timeout: Duration,
    /// Deadline of one own-RPC call.
    pub rpc_timeout: Duration,
    /// PEM certificates trusted for `https://` Indexer endpoints besides the webpki roots (a
    /// dev gateway's CA); empty in production.
    pub extra_ca_pem: Vec<u8>,
    /// `GATEWAY_CONNECT` with the gateway domain: an Indexer endpoint whose host is under that
    /// domain is dialled at this address instead (local runs without DNS), keeping its name
    /// for TLS. `None` in production.
    pub gateway_connect: Option<(String, std::net::SocketAddr)>,
}

impl IntakeConfig {
    pub fn new(rpc_url: String, registry: Address, cluster: Address, member_id: B256) -> Self {
        Self {
            rpc_url,
            registry,
            cluster,
            member_id,
            from_block: 0,
            allow_simulated_quotes: false,
            pccs_url: attestmesh_tee::pccs::PHALA_PCCS_URL.to_string(),
            tcb_policy: TcbPolicy::default(),
            repro_sample_rate: 0.0,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            registry_refresh: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(10),
            extra_ca_pem: Vec::new(),
            gateway_connect: None,
        }
    }
}

/// Errors that stop the intake. Everything else (RPC down, Indexer down, Indexer lying) is
/// retried, because the intake is an optimisation the agent must never lose to a transient.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("intake configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the agent dropped its wake-up receiver")]
    WakeClosed,
}

/// Why a push (and with it the session) was rejected. Each is treated as adversarial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed push: {0}")]
    Malformed(String),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("push for cluster {got}, subscribed to {want}")]
    ForeignCluster { got: Address, want: Address },
    #[error("push event emitted by {got}, not by the cluster {want}")]
    ForeignEmitter { got: Address, want: Address },
    #[error("repro stub is not the canonical eth_getLogs call for this log")]
    NonCanonicalRepro,
    #[error("first push of the session carries no attestation")]
    MissingAttestation,
    #[error("attestation quote unusable: {0}")]
    BadQuote(String),
    #[error("attestation quote not vouched for by Intel: {0}")]
    UntrustedQuote(String),
    #[error("cannot fetch the collateral to verify the attestation quote: {0}")]
    Collateral(String),
    #[error("attestation report_data does not bind the registry key")]
    UnboundAttestation,
    #[error("attested code {got} differs from the registry code id {want}")]
    CodeIdMismatch { got: B256, want: B256 },
    #[error("repro stub returned no matching log from our own RPC: the Indexer lied")]
    ReproLied,
}

/// Counters the agent exports and the tests observe.
#[derive(Debug, Default)]
pub struct IntakeStats {
    /// Subscriptions opened (Subscribe returned a stream).
    pub sessions: AtomicU64,
    /// Sessions torn down because a push was rejected.
    pub adversarial_teardowns: AtomicU64,
    /// Sessions that ended on a transport error or a closed stream.
    pub transport_teardowns: AtomicU64,
    /// Sessions ended because the registry record changed under them.
    pub rotations: AtomicU64,
    pub pushes_verified: AtomicU64,
    pub pushes_rejected: AtomicU64,
    pub wakeups_sent: AtomicU64,
    pub repro_checks: AtomicU64,
    pub registry_reads: AtomicU64,
    /// The last rejection, for logs and tests.
    pub last_rejection: Mutex<Option<Rejection>>,
    /// The registry key of the current (or last) session.
    pub current_key: Mutex<Option<B256>>,
    /// Whether a subscription is open right now (`/healthz`, `attestmesh_indexer_subscribed`).
    pub subscribed: std::sync::atomic::AtomicBool,
}

impl IntakeStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Checks one push against the registry key and the subscribed cluster; returns its body.
///
/// Checks in order: well-formed fields, signature (before anything else is believed), cluster,
/// emitter, and that the repro stub is exactly the canonical one — so a sampled stub can only
/// ever query what the signed fields say.
pub fn verify_push(p: &pb::Push, key: &B256, cluster: Address) -> Result<PushBody, Rejection> {
    let ev = p
        .event
        .as_ref()
        .ok_or_else(|| Rejection::Malformed("no event".into()))?;
    let repro = p
        .repro
        .as_ref()
        .ok_or_else(|| Rejection::Malformed("no repro stub".into()))?;
    let mut topics = Vec::with_capacity(ev.topics.len());
    for t in &ev.topics {
        topics.push(B256::from(fixed::<32>("event.topic", t)?));
    }
    let body = PushBody {
        cluster: Address::from(fixed::<20>("cluster", &p.cluster)?),
        block_number: p.block_number,
        block_hash: B256::from(fixed::<32>("block_hash", &p.block_hash)?),
        tx_hash: B256::from(fixed::<32>("tx_hash", &p.tx_hash)?),
        log_index: p.log_index,
        address: Address::from(fixed::<20>("event.address", &ev.address)?),
        topics,
        data: ev.data.clone(),
        repro_method: repro.method.clone(),
        repro_params_json: repro.params_json.clone(),
    };
    body.verify(key, &p.signature)?;
    if body.cluster != cluster {
        return Err(Rejection::ForeignCluster {
            got: body.cluster,
            want: cluster,
        });
    }
    if body.address != cluster {
        return Err(Rejection::ForeignEmitter {
            got: body.address,
            want: cluster,
        });
    }
    if body.repro_method != REPRO_METHOD
        || body.repro_params_json != repro_params_json(cluster, body.block_hash, &body.topics)
    {
        return Err(Rejection::NonCanonicalRepro);
    }
    Ok(body)
}

/// What a real (TDX) quote is verified with.
#[derive(Debug, Clone, Copy)]
pub struct TdxEvidence<'a> {
    pub collateral: &'a Collateral,
    pub now_secs: u64,
    pub policy: &'a TcbPolicy,
}

/// The attestation of the first push. A devtee quote passes only when `allow_simulated`; a TDX
/// quote only when Intel's collateral (`tdx`) verifies it under the TCB policy. Then its
/// report_data must bind the registry key and, when the registry records a code id, its event
/// log must prove that compose hash against RTMR3.
pub fn verify_attestation(
    att: &pb::Attestation,
    info: &IndexerInfo,
    allow_simulated: bool,
    tdx: Option<TdxEvidence<'_>>,
) -> Result<(), Rejection> {
    let q: QuotedReport = if quote::is_simulated(&att.quote) {
        quote::report_data(&att.quote, allow_simulated)
            .map_err(|e: QuoteError| Rejection::BadQuote(e.to_string()))?
    } else {
        quote::report_data(&att.quote, false).map_err(|e| Rejection::BadQuote(e.to_string()))?;
        let ev = tdx.ok_or_else(|| Rejection::Collateral("none supplied".into()))?;
        dcap::verify(&att.quote, ev.collateral, ev.now_secs, ev.policy)
            .map_err(|e| Rejection::UntrustedQuote(e.to_string()))?
            .report
    };
    if !attestmesh_core::push::report_data_binds(&q.report_data, &info.pubkey) {
        return Err(Rejection::UnboundAttestation);
    }
    // The registry's code id is the Indexer's compose hash: its event log must prove it against
    // the quote's RTMR3 (a zero code id records none).
    if info.code_id != B256::ZERO {
        let code = quote::compose_hash(&q, &att.event_log)
            .map_err(|e| Rejection::BadQuote(e.to_string()))?;
        if code != info.code_id {
            return Err(Rejection::CodeIdMismatch {
                got: code,
                want: info.code_id,
            });
        }
    }
    Ok(())
}

/// The address to dial instead of `uri`'s host, when `GATEWAY_CONNECT` is set and the host is
/// under the gateway domain.
fn dial_override(
    gateway: &Option<(String, std::net::SocketAddr)>,
    uri: &tonic::transport::Uri,
) -> Option<std::net::SocketAddr> {
    let (domain, addr) = gateway.as_ref()?;
    let host = uri.host()?.to_ascii_lowercase();
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    host.strip_suffix(&domain)?.strip_suffix('.')?;
    Some(*addr)
}

/// TLS for an `https://` Indexer endpoint (reached through the dstack gateway, which
/// terminates TLS under a public certificate): the webpki roots, plus `extra_ca_pem` (a dev
/// gateway's CA). The server name is the endpoint's host.
fn tls_config(extra_ca_pem: &[u8]) -> tonic::transport::ClientTlsConfig {
    let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
    if !extra_ca_pem.is_empty() {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(extra_ca_pem));
    }
    tls
}

/// The seed of the intake's jitter stream (reconnect backoff and repro sampling): the clock
/// mixed with our member id, so agents restarted together still spread out. Neither use needs
/// unpredictability against an adversary, only de-synchronisation between agents.
fn jitter_seed(member_id: &B256) -> u64 {
    let mut s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for c in member_id.0.chunks(8) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        s ^= u64::from_le_bytes(b);
    }
    s
}

/// Reconnect schedule: `backoff_base` doubling to `backoff_max` (neither under 1 ms), forever.
fn reconnect_policy(cfg: &IntakeConfig) -> BackoffPolicy {
    let floor = Duration::from_millis(1);
    BackoffPolicy::forever(cfg.backoff_base.max(floor), cfg.backoff_max.max(floor))
}

/// Whether the Indexer refused our `from_block` as deeper than it replays: RESOURCE_EXHAUSTED
/// tagged with the replay-depth cap, or OUT_OF_RANGE (Indexers before the caps of issue 11).
/// Any other refusal (a subscription cap) is backed off like a transport error.
fn resume_refused(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::OutOfRange => true,
        tonic::Code::ResourceExhausted => s
            .metadata()
            .get(pb::CAP_METADATA_KEY)
            .is_some_and(|v| v.as_bytes() == pb::CAP_REPLAY_DEPTH.as_bytes()),
        _ => false,
    }
}

/// How a session ended.
enum End {
    Shutdown,
    Adversarial(Rejection),
    Transport(String),
    /// Indexer refused our resume point (too far back): restart from the head; polling covers it.
    ResumeTooOld,
    Rotated,
}

/// The intake task.
pub struct Intake {
    cfg: IntakeConfig,
    rpc: RpcClient,
    pccs: PccsClient,
    /// The last quote's collateral, keyed by the quote's hash, and when it was fetched.
    collateral: tokio::sync::Mutex<Option<(B256, Collateral, std::time::Instant)>>,
    stats: Arc<IntakeStats>,
}

/// How long fetched collateral is reused for the same quote before it is fetched again (Intel
/// reissues TCB info and CRLs about monthly; a day keeps revocations current).
const COLLATERAL_REUSE: Duration = Duration::from_secs(24 * 3600);

impl Intake {
    pub fn new(cfg: IntakeConfig) -> Result<Self, IntakeError> {
        if !(0.0..=1.0).contains(&cfg.repro_sample_rate) {
            return Err(IntakeError::Config(format!(
                "repro_sample_rate {} is outside 0..=1",
                cfg.repro_sample_rate
            )));
        }
        if cfg.backoff_base.is_zero() || cfg.backoff_max < cfg.backoff_base {
            return Err(IntakeError::Config(
                "backoff_base must be > 0 and ≤ backoff_max".into(),
            ));
        }
        if cfg.registry == Address::ZERO || cfg.cluster == Address::ZERO {
            return Err(IntakeError::Config(
                "registry and cluster must not be the zero address".into(),
            ));
        }
        let rpc = RpcClient::new(&cfg.rpc_url)?.with_timeout(cfg.rpc_timeout);
        let pccs = PccsClient::new(&cfg.pccs_url)
            .map_err(|e| IntakeError::Config(format!("pccs_url: {e}")))?;
        Ok(Self {
            cfg,
            rpc,
            pccs,
            collateral: tokio::sync::Mutex::new(None),
            stats: Arc::new(IntakeStats::default()),
        })
    }

    pub fn stats(&self) -> Arc<IntakeStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` resolves. Returns an error only when the agent is gone (wake-up
    /// receiver dropped); every other failure is retried.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        wake: mpsc::Sender<WakeUp>,
    ) -> Result<(), IntakeError> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::with_jitter(
            reconnect_policy(&self.cfg),
            SplitMix64::new(jitter_seed(&self.cfg.member_id)),
        );
        // Resume cursor: only ever advanced by verified pushes (delivery is in block order), so
        // everything at or after it concerning us is replayed by the next session.
        let mut resume = self.cfg.from_block;
        let mut last_woken: Option<u64> = None;
        loop {
            if resume == 0 {
                match self.rpc.block_number().await {
                    Ok(h) => resume = h.max(1),
                    Err(e) => tracing::warn!(error = %e, "intake: own RPC unavailable"),
                }
            }
            let verified_before = IntakeStats::get(&self.stats.pushes_verified);
            let end = match self.read_registry().await {
                Ok(info) if info.is_set() => {
                    let end = self
                        .session(
                            &info,
                            &mut resume,
                            &mut last_woken,
                            backoff.jitter_mut(),
                            &wake,
                            &mut shutdown,
                        )
                        .await;
                    self.stats.subscribed.store(false, Ordering::Relaxed);
                    end?
                }
                Ok(_) => {
                    tracing::info!(registry = %self.cfg.registry, "no Indexer registered: polling only");
                    // Not a failure: wait a refresh period, then look again.
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(self.cfg.registry_refresh) => {}
                    }
                    continue;
                }
                Err(e) => End::Transport(e.to_string()),
            };
            match end {
                End::Shutdown => return Ok(()),
                End::Rotated => {
                    self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    continue; // straight to the new record
                }
                End::ResumeTooOld => {
                    resume = 0;
                    continue;
                }
                End::Adversarial(r) => {
                    self.stats
                        .adversarial_teardowns
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cluster = %self.cfg.cluster, rejection = %r, "ADVERSARIAL Indexer push: subscription torn down");
                    *lock(&self.stats.last_rejection) = Some(r);
                }
                End::Transport(e) => {
                    self.stats
                        .transport_teardowns
                        .fetch_add(1, Ordering::Relaxed);
                    // A session that delivered verified pushes was healthy: the next failure
                    // starts the backoff over. (Adversarial ends never reset it, so a server
                    // cannot keep us reconnecting fast by interleaving valid and bad pushes.)
                    if IntakeStats::get(&self.stats.pushes_verified) > verified_before {
                        backoff.reset();
                    }
                    tracing::info!(error = %e, "Indexer subscription ended");
                }
            }
            let d = backoff.next_delay().unwrap_or(self.cfg.backoff_max);
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(d) => {}
            }
        }
    }

    async fn read_registry(&self) -> Result<IndexerInfo, RegistryError> {
        self.stats.registry_reads.fetch_add(1, Ordering::Relaxed);
        registry::read_current(&self.rpc, self.cfg.registry).await
    }

    /// One subscription, from connect to teardown.
    async fn session<S: Future<Output = ()> + Unpin>(
        &self,
        info: &IndexerInfo,
        resume: &mut u64,
        last_woken: &mut Option<u64>,
        jitter: &mut SplitMix64,
        wake: &mpsc::Sender<WakeUp>,
        shutdown: &mut S,
    ) -> Result<End, IntakeError> {
        *lock(&self.stats.current_key) = Some(info.pubkey);
        let hello = pb::Hello {
            cluster: self.cfg.cluster.to_vec(),
            member_id: self.cfg.member_id.to_vec(),
            from_block: *resume,
        };
        let connect = async {
            let mut ep =
                tonic::transport::Endpoint::from_shared(info.endpoint.clone()).map_err(|e| {
                    End::Transport(format!("registry endpoint {:?}: {e}", info.endpoint))
                })?;
            if info.endpoint.starts_with("https://") {
                ep = ep
                    .tls_config(tls_config(&self.cfg.extra_ca_pem))
                    .map_err(|e| End::Transport(format!("TLS for {}: {e}", info.endpoint)))?;
            }
            let ep = ep
                .connect_timeout(self.cfg.connect_timeout)
                .tcp_nodelay(true)
                // A silently dead Indexer would otherwise hold the session forever.
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            let ch = match dial_override(&self.cfg.gateway_connect, ep.uri()) {
                Some(addr) => {
                    ep.connect_with_connector(tower::service_fn(
                        move |_: tonic::transport::Uri| async move {
                            tokio::net::TcpStream::connect(addr)
                                .await
                                .map(hyper_util::rt::TokioIo::new)
                        },
                    ))
                    .await
                }
                None => ep.connect().await,
            }
            .map_err(|e| End::Transport(format!("connect {}: {e}", info.endpoint)))?;
            let mut client = pb::indexer_client::IndexerClient::new(ch);
            client
                .subscribe(hello)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| {
                    if resume_refused(&s) {
                        End::ResumeTooOld
                    } else {
                        End::Transport(format!("subscribe: {s}"))
                    }
                })
        };
        let mut stream = tokio::select! {
            _ = &mut *shutdown => return Ok(End::Shutdown),
            r = tokio::time::timeout(self.cfg.connect_timeout, connect) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(end)) => return Ok(end),
                Err(_) => return Ok(End::Transport(format!("connect {} timed out", info.endpoint))),
            },
        };
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        self.stats.subscribed.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %info.endpoint, key = %info.pubkey, from_block = *resume, "subscribed to the Indexer");
        let mut first = true;
        let mut refresh = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.registry_refresh,
            self.cfg.registry_refresh,
        );
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                biased;
                _ = &mut *shutdown => return Ok(End::Shutdown),
                _ = refresh.tick() => {
                    match self.read_registry().await {
                        Ok(now) if now != *info => {
                            tracing::info!(old = %info.pubkey, new = %now.pubkey, endpoint = %now.endpoint, "IndexerRegistry record changed: following");
                            return Ok(End::Rotated);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "registry refresh failed"),
                    }
                    continue;
                }
                m = stream.message() => m,
            };
            let p = match msg {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(End::Transport("stream closed by the Indexer".into())),
                Err(s) => return Ok(End::Transport(format!("stream error: {s}"))),
            };
            let body = match self.check(&p, info, first).await {
                Ok(b) => b,
                Err(r) => {
                    self.stats.pushes_rejected.fetch_add(1, Ordering::Relaxed);
                    return Ok(End::Adversarial(r));
                }
            };
            first = false;
            // Sampled before the wake, so no WakeUp ever leaves for a push we reject; the cost
            // (one own-RPC round trip) is paid only by the sampled fraction.
            if self.cfg.repro_sample_rate > 0.0 && jitter.unit() < self.cfg.repro_sample_rate {
                self.stats.repro_checks.fetch_add(1, Ordering::Relaxed);
                if let Err(r) = self.sample_repro(&body).await {
                    self.stats.pushes_rejected.fetch_add(1, Ordering::Relaxed);
                    return Ok(End::Adversarial(r));
                }
            }
            self.stats.pushes_verified.fetch_add(1, Ordering::Relaxed);
            let block = body.block_number;
            // One wake per block: the agent's poll up to block N covers every log in N, and the
            // replay after a reconnect repeats the resume block.
            if last_woken.is_none_or(|w| block > w) {
                wake.send(WakeUp {
                    block_number: block,
                })
                .await
                .map_err(|_| IntakeError::WakeClosed)?;
                self.stats.wakeups_sent.fetch_add(1, Ordering::Relaxed);
                *last_woken = Some(block);
            }
            *resume = (*resume).max(block);
        }
    }

    async fn check(
        &self,
        p: &pb::Push,
        info: &IndexerInfo,
        first: bool,
    ) -> Result<PushBody, Rejection> {
        let body = verify_push(p, &info.pubkey, self.cfg.cluster)?;
        match (&p.attestation, first) {
            (Some(a), _) => {
                // Only a TDX quote needs Intel's collateral (a devtee quote has none to fetch).
                let collateral = match quote::is_simulated(&a.quote) {
                    true => None,
                    false => Some(self.collateral_for(&a.quote).await?),
                };
                let now_secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let ev = collateral.as_ref().map(|collateral| TdxEvidence {
                    collateral,
                    now_secs,
                    policy: &self.cfg.tcb_policy,
                });
                verify_attestation(a, info, self.cfg.allow_simulated_quotes, ev)?
            }
            (None, true) => return Err(Rejection::MissingAttestation),
            (None, false) => {}
        }
        Ok(body)
    }

    /// Intel's collateral for `quote`: reused for the same quote for a day, else fetched.
    async fn collateral_for(&self, quote: &[u8]) -> Result<Collateral, Rejection> {
        let key = alloy_primitives::keccak256(quote);
        let mut cached = self.collateral.lock().await;
        if let Some((k, c, at)) = cached.as_ref()
            && *k == key
            && at.elapsed() < COLLATERAL_REUSE
        {
            return Ok(c.clone());
        }
        let c = self
            .pccs
            .fetch(quote)
            .await
            .map_err(|e| Rejection::Collateral(e.to_string()))?;
        *cached = Some((key, c.clone(), std::time::Instant::now()));
        Ok(c)
    }

    /// Runs the (canonical, already checked) repro stub against our own RPC. An RPC error is
    /// inconclusive (our node may lag the Indexer's); an answer without the log is a lie.
    async fn sample_repro(&self, body: &PushBody) -> Result<(), Rejection> {
        let params: serde_json::Value = match serde_json::from_str(&body.repro_params_json) {
            Ok(v) => v,
            Err(e) => return Err(Rejection::Malformed(format!("repro params: {e}"))),
        };
        // A log the intake cannot compare (any field missing) makes the answer inconclusive, like an
        // RPC error.
        let logs: Vec<Log> = match self.rpc.call(REPRO_METHOD, params).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "repro sample inconclusive");
                return Ok(());
            }
        };
        let found = logs.iter().any(|l| {
            !l.removed
                && l.transaction_hash == body.tx_hash
                && l.log_index == body.log_index
                && l.block_hash == body.block_hash
                && l.block_number == body.block_number
                && l.address == body.address
                && l.topics == body.topics
                && l.data.as_ref() == body.data.as_slice()
        });
        if found {
            Ok(())
        } else {
            Err(Rejection::ReproLied)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: a poisoned lock still holds a usable value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_replay_depth_refusal_restarts_live() {
        assert!(resume_refused(&tonic::Status::out_of_range("old Indexer")));
        let mut deep = tonic::Status::resource_exhausted("max_replay_blocks: …");
        deep.metadata_mut().insert(
            pb::CAP_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(pb::CAP_REPLAY_DEPTH),
        );
        assert!(resume_refused(&deep));
        // A subscription cap (or a slow-subscriber kill) backs off instead.
        let capped = tonic::Status::resource_exhausted("max_replay_blocks in the message only");
        assert!(!resume_refused(&capped));
        assert!(!resume_refused(&tonic::Status::unavailable("down")));
    }

    /// DESIGN §1 invariant 5 (the Indexer is attested): an Indexer that writes a TDX-layout
    /// quote itself — Intel's vendor id, report_data binding its registry key — but has no
    /// quoting enclave to sign it. Before dcap verification this exact quote was accepted.
    #[test]
    fn attack_indexer_with_a_self_made_tdx_quote_is_refused() {
        let pk = B256::repeat_byte(5);
        let mut forged = vec![0u8; 48 + 584];
        forged[0] = 4;
        forged[2] = 2;
        forged[4] = 0x81;
        forged[12..28].copy_from_slice(&attestmesh_tee::tdx::INTEL_QE_VENDOR_ID);
        forged[568..632].copy_from_slice(&attestmesh_core::push::attestation_report_data(&pk));
        forged.extend_from_slice(&64u32.to_le_bytes());
        forged.extend_from_slice(&[0u8; 64]);
        let info = IndexerInfo {
            endpoint: "https://x".into(),
            code_id: B256::ZERO,
            pubkey: pk,
            updated_at: 0,
        };
        let att = pb::Attestation {
            quote: forged,
            event_log: String::new(),
        };
        // It parses and binds the key…
        let r = quote::report_data(&att.quote, false).expect("a well-formed layout");
        assert!(attestmesh_core::push::report_data_binds(
            &r.report_data,
            &pk
        ));
        // …but without Intel's collateral nothing vouches for it, and with it the signature fails.
        assert!(matches!(
            verify_attestation(&att, &info, true, None),
            Err(Rejection::Collateral(_))
        ));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tee/testdata/dcap-qvl");
        let collateral = attestmesh_tee::dcap::parse_collateral(
            &std::fs::read(dir.join("tdx_quote_collateral.json")).expect("sample collateral"),
        )
        .expect("collateral parses");
        let policy = TcbPolicy::default();
        let ev = TdxEvidence {
            collateral: &collateral,
            now_secs: 1_750_332_747,
            policy: &policy,
        };
        assert!(matches!(
            verify_attestation(&att, &info, true, Some(ev)),
            Err(Rejection::UntrustedQuote(_))
        ));
    }

    /// Intel's published sample quote and collateral (dcap-qvl's, `crates/tee/testdata`): the
    /// quote verifies, so what fails is the binding to our registry key; tampering, expired
    /// collateral or none at all fail before that.
    #[test]
    fn tdx_quotes_are_verified_against_intels_collateral() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tee/testdata/dcap-qvl");
        let quote = std::fs::read(dir.join("tdx_quote")).expect("sample quote");
        let collateral = attestmesh_tee::dcap::parse_collateral(
            &std::fs::read(dir.join("tdx_quote_collateral.json")).expect("sample collateral"),
        )
        .expect("collateral parses");
        let policy = TcbPolicy::default();
        let ev = |now_secs| TdxEvidence {
            collateral: &collateral,
            now_secs,
            policy: &policy,
        };
        let info = IndexerInfo {
            endpoint: "https://x".into(),
            code_id: B256::ZERO,
            pubkey: B256::repeat_byte(5),
            updated_at: 0,
        };
        let att = |quote: Vec<u8>| pb::Attestation {
            quote,
            event_log: String::new(),
        };
        const NOW: u64 = 1_750_332_747;
        assert_eq!(
            verify_attestation(&att(quote.clone()), &info, false, Some(ev(NOW))),
            Err(Rejection::UnboundAttestation)
        );
        let mut bad = quote.clone();
        bad[600] ^= 1;
        assert!(matches!(
            verify_attestation(&att(bad), &info, false, Some(ev(NOW))),
            Err(Rejection::UntrustedQuote(_))
        ));
        assert!(matches!(
            verify_attestation(
                &att(quote.clone()),
                &info,
                false,
                Some(ev(NOW + 90 * 86_400))
            ),
            Err(Rejection::UntrustedQuote(_))
        ));
        assert!(matches!(
            verify_attestation(&att(quote), &info, true, None),
            Err(Rejection::Collateral(_))
        ));
    }

    #[test]
    fn quote_parsing() {
        let pk = B256::repeat_byte(5);
        let rd = attestmesh_core::push::attestation_report_data(&pk);
        let code = B256::repeat_byte(9);
        let info = IndexerInfo {
            endpoint: "http://x:1".into(),
            code_id: code,
            pubkey: pk,
            updated_at: 0,
        };
        let (sim, log) = attestmesh_tee::devtee::simulated_attestation(
            alloy_primitives::Address::repeat_byte(0x1d),
            code,
            rd,
        );
        let att = |quote: Vec<u8>, event_log: &str| pb::Attestation {
            quote,
            event_log: event_log.to_string(),
        };
        // devtee's quotes only when allowed; then the binding and the code id both hold.
        assert!(matches!(
            verify_attestation(&att(sim.clone(), &log), &info, false, None),
            Err(Rejection::BadQuote(_))
        ));
        assert_eq!(
            verify_attestation(&att(sim.clone(), &log), &info, true, None),
            Ok(())
        );
        let mut other = info.clone();
        other.pubkey = B256::repeat_byte(6);
        assert_eq!(
            verify_attestation(&att(sim.clone(), &log), &other, true, None),
            Err(Rejection::UnboundAttestation)
        );
        assert!(matches!(
            verify_attestation(&att(sim[..600].to_vec(), &log), &info, true, None),
            Err(Rejection::BadQuote(_))
        ));
        let mut wrong_code = info.clone();
        wrong_code.code_id = B256::repeat_byte(8);
        assert!(matches!(
            verify_attestation(&att(sim.clone(), &log), &wrong_code, true, None),
            Err(Rejection::CodeIdMismatch { .. })
        ));
        // The code id needs the event log: none, or another quote's, proves nothing.
        assert!(matches!(
            verify_attestation(&att(sim.clone(), ""), &info, true, None),
            Err(Rejection::BadQuote(_))
        ));
        let (_, other_log) = attestmesh_tee::devtee::simulated_attestation(
            alloy_primitives::Address::repeat_byte(0x1e),
            code,
            rd,
        );
        assert!(matches!(
            verify_attestation(&att(sim.clone(), &other_log), &info, true, None),
            Err(Rejection::BadQuote(_))
        ));
        // A registry without a code id checks only the binding.
        let mut no_code = info.clone();
        no_code.code_id = B256::ZERO;
        assert_eq!(
            verify_attestation(&att(sim, ""), &no_code, true, None),
            Ok(())
        );
    }
}
