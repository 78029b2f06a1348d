//! HTTP on `HEALTH_ADDR` (DESIGN §11): `/healthz`, `/metrics`, `/attestation`.
//!
//! Plain HTTP/1.1 on loopback by default: orchestrators probe `/healthz`, Prometheus scrapes
//! `/metrics`, and a verifier fetches `/attestation` to check that this member's public keys come
//! from attested code. Nothing here ever returns a secret. `/attestation` costs a TEE quote, so
//! it is cached per request for a few seconds and token-bucket limited ([`AttestationLimits`]):
//! over the limit it answers 429 with `Retry-After`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alloy_primitives::{B256, hex, keccak256};
use attestmesh_metrics::{Labels, Scrape, Value};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::intake::IntakeStats;

use crate::state::Shared;

/// Domain tag of the attestation report data: `keccak256(tag ‖ cluster ‖ member contract ‖
/// member id ‖ x ‖ wg ‖ ed) ‖ nonce`. A verifier recomputes the first half from chain data and
/// picks the nonce, so a replayed quote for other keys or an old nonce does not match.
pub const ATTESTATION_TAG: &[u8] = b"attestmesh.node.attestation.v1";

/// A quote as the HTTP endpoint needs it.
#[derive(Debug, Clone)]
pub struct Quote {
    pub attestor_id: B256,
    pub format: String,
    pub quote: Vec<u8>,
    pub event_log: String,
}

/// The attestation method could not produce a document; the method's own error is the source.
#[derive(Debug, thiserror::Error)]
#[error("attestation document: {0}")]
pub struct DocumentError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Object-safe face of [`attestmesh_tee::Attestor::attestation_document`]: the HTTP server does
/// not need to be generic over the attestation method.
pub trait QuoteSource: Send + Sync {
    fn quote(
        &self,
        report_data: [u8; 64],
    ) -> Pin<Box<dyn Future<Output = Result<Quote, DocumentError>> + Send + '_>>;
}

impl<A: attestmesh_tee::Attestor> QuoteSource for A {
    fn quote(
        &self,
        report_data: [u8; 64],
    ) -> Pin<Box<dyn Future<Output = Result<Quote, DocumentError>> + Send + '_>> {
        Box::pin(async move {
            let doc = self
                .attestation_document(report_data)
                .await
                .map_err(|e| DocumentError(Box::new(e)))?;
            Ok(Quote {
                attestor_id: doc.attestor_id,
                format: doc.format,
                quote: doc.quote,
                event_log: doc.event_log,
            })
        })
    }
}

/// The report data binding a member's public keys (see [`ATTESTATION_TAG`]).
pub fn attestation_report_data(
    cluster: alloy_primitives::Address,
    me: &crate::state::MemberView,
    nonce: &B256,
) -> [u8; 64] {
    let mut pre = Vec::with_capacity(ATTESTATION_TAG.len() + 20 * 2 + 32 * 4);
    pre.extend_from_slice(ATTESTATION_TAG);
    pre.extend_from_slice(cluster.as_slice());
    pre.extend_from_slice(me.contract.as_slice());
    pre.extend_from_slice(me.id.as_slice());
    pre.extend_from_slice(me.x_pub.as_slice());
    pre.extend_from_slice(me.wg_pub.as_slice());
    pre.extend_from_slice(me.ed_pub.as_slice());
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(keccak256(&pre).as_slice());
    out[32..].copy_from_slice(nonce.as_slice());
    out
}

/// Bounds on `/attestation`, which costs a TEE quote per distinct request (DESIGN §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestationLimits {
    /// Quotes that may be generated back to back.
    pub burst: u32,
    /// One more quote becomes available this often.
    pub refill_every: Duration,
    /// A quote is reused for an identical request (same nonce) for this long.
    pub cache_ttl: Duration,
}

impl Default for AttestationLimits {
    /// A verifier needs one quote per check; four at once and one a second is far above that and
    /// far below what keeps a guest agent busy.
    fn default() -> Self {
        Self {
            burst: 4,
            refill_every: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(10),
        }
    }
}

/// Cached quotes kept at most (identical requests within the TTL are what the cache is for).
const QUOTE_CACHE_ENTRIES: usize = 32;

/// The token bucket for fresh quotes and the cache of recent ones.
struct QuoteGate {
    limits: AttestationLimits,
    state: Mutex<GateState>,
}

/// On tokio's clock ([`Instant`]), so the refill and expiry are tested on paused time.
struct GateState {
    tokens: u32,
    refilled_at: Instant,
    cache: HashMap<[u8; 64], (Instant, Quote)>,
}

/// What the gate says about one request.
enum Gate {
    Cached(Quote),
    Fresh,
    /// Over the limit: retry after this many whole seconds.
    Limited(u64),
}

impl QuoteGate {
    fn new(limits: AttestationLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(GateState {
                tokens: limits.burst,
                refilled_at: Instant::now(),
                cache: HashMap::new(),
            }),
        }
    }

    fn check(&self, report: &[u8; 64]) -> Gate {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ttl = self.limits.cache_ttl;
        st.cache.retain(|_, (at, _)| now.duration_since(*at) < ttl);
        if let Some((_, q)) = st.cache.get(report) {
            return Gate::Cached(q.clone());
        }
        let every = self.limits.refill_every.max(Duration::from_millis(1));
        let periods = now.duration_since(st.refilled_at).as_nanos() / every.as_nanos();
        if periods > 0 {
            let add = u32::try_from(periods).unwrap_or(u32::MAX);
            st.tokens = st.tokens.saturating_add(add).min(self.limits.burst);
            st.refilled_at = if st.tokens == self.limits.burst {
                now
            } else {
                st.refilled_at + every * add
            };
        }
        if st.tokens > 0 {
            st.tokens -= 1;
            return Gate::Fresh;
        }
        let wait = every.saturating_sub(now.duration_since(st.refilled_at));
        // Whole seconds, rounded up, at least one (HTTP's Retry-After unit).
        Gate::Limited((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }

    fn remember(&self, report: [u8; 64], quote: &Quote) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.cache.len() >= QUOTE_CACHE_ENTRIES
            && let Some(oldest) = st
                .cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| *k)
        {
            st.cache.remove(&oldest);
        }
        st.cache.insert(report, (now, quote.clone()));
    }
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    quotes: Arc<dyn QuoteSource>,
    gate: Arc<QuoteGate>,
}

/// A bound health server; [`HealthServer::serve`] runs it until shutdown.
pub struct HealthServer {
    listener: TcpListener,
    ctx: Ctx,
}

impl HealthServer {
    /// Binds `addr` (port 0 picks one), with the default [`AttestationLimits`].
    pub async fn bind(
        addr: SocketAddr,
        shared: Arc<Shared>,
        quotes: Arc<dyn QuoteSource>,
    ) -> std::io::Result<Self> {
        Self::bind_with_limits(addr, shared, quotes, AttestationLimits::default()).await
    }

    /// [`HealthServer::bind`] with chosen `/attestation` limits.
    pub async fn bind_with_limits(
        addr: SocketAddr,
        shared: Arc<Shared>,
        quotes: Arc<dyn QuoteSource>,
        limits: AttestationLimits,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            ctx: Ctx {
                shared,
                quotes,
                gate: Arc::new(QuoteGate::new(limits)),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; connections in flight are dropped with it.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return,
                r = self.listener.accept() => match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "health accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            });
        }
    }
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", v.to_string())
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => healthz(ctx),
        "/metrics" => respond(
            StatusCode::OK,
            attestmesh_metrics::CONTENT_TYPE,
            metrics(&ctx.shared),
        ),
        "/attestation" => attestation(ctx, req.uri().query()).await,
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn healthz(ctx: &Ctx) -> Response<Full<Bytes>> {
    let s = ctx.shared.status();
    let me = ctx.shared.me();
    let body = json!({
        "phase": s.phase.as_str(),
        "healthy": s.is_healthy(),
        "first_converged": s.first_converged,
        "converged": s.converged,
        "csk_acquired": s.csk_acquired,
        "live_peers": s.live_peers,
        "member_count": s.member_count,
        "chain_head": s.chain_head,
        "member_id": me.as_ref().map(|m| m.id.to_string()),
        "member_contract": me.as_ref().map(|m| m.contract.to_string()),
        "mesh_ip": me.as_ref().map(|m| m.mesh_ip.to_string()),
        // null: no Indexer configured (polling only); false: configured but not subscribed.
        "indexer_subscribed": ctx
            .shared
            .intake_stats()
            .map(|st| st.subscribed.load(std::sync::atomic::Ordering::Relaxed)),
        "error": s.fatal,
    });
    let code = if s.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

/// `/metrics`: the agent's gauges and counters, the Indexer intake's, and one series per peer
/// (label `peer`: the first 12 hex digits of its member id; only current peers, so the series
/// count follows the member count). OpenMetrics text by prometheus-client.
pub fn metrics(shared: &Shared) -> String {
    let s = shared.status();
    let m = &shared.metrics;
    let mut out = Scrape::new();
    out.gauge(
        "attestmesh_healthy",
        "1 when the agent is healthy.",
        s.is_healthy(),
    );
    out.gauge(
        "attestmesh_phase",
        "Boot phase index (0 booting .. 7 healthy).",
        s.phase as u64,
    );
    out.gauge(
        "attestmesh_first_converged",
        "1 once the mesh has converged in this process.",
        s.first_converged,
    );
    out.gauge(
        "attestmesh_converged",
        "1 while the mesh is converged.",
        s.converged,
    );
    out.gauge(
        "attestmesh_csk_acquired",
        "1 when the verified CSK is held.",
        s.csk_acquired,
    );
    out.gauge(
        "attestmesh_live_peers",
        "Peers with a valid heartbeat within 3 intervals.",
        s.live_peers,
    );
    out.gauge(
        "attestmesh_members",
        "Members of the cluster in chain state.",
        s.member_count,
    );
    out.gauge(
        "attestmesh_chain_head",
        "Last block processed by the chain follower.",
        s.chain_head,
    );
    let counters: [(&'static str, &'static str, &std::sync::atomic::AtomicU64); 17] = [
        (
            "attestmesh_heartbeats_sent_total",
            "Heartbeats sent.",
            &m.heartbeats_sent,
        ),
        (
            "attestmesh_heartbeats_accepted_total",
            "Heartbeats accepted.",
            &m.heartbeats_accepted,
        ),
        (
            "attestmesh_heartbeats_dropped_total",
            "Heartbeats dropped (invalid, replayed, foreign).",
            &m.heartbeats_dropped,
        ),
        (
            "attestmesh_chain_polls_total",
            "Chain follower polls.",
            &m.chain_polls,
        ),
        (
            "attestmesh_chain_poll_errors_total",
            "Chain follower polls that failed.",
            &m.chain_poll_errors,
        ),
        (
            "attestmesh_reorgs_total",
            "Reorgs detected by the follower.",
            &m.reorgs,
        ),
        (
            "attestmesh_messages_delivered_total",
            "Messages opened and delivered to the app.",
            &m.messages_delivered,
        ),
        (
            "attestmesh_messages_undecryptable_total",
            "Messages addressed to us that failed to open.",
            &m.messages_undecryptable,
        ),
        (
            "attestmesh_messages_misbound_total",
            "Messages to us that opened but were not bound to their event (re-sent copy, other cluster, unversioned), dropped.",
            &m.messages_misbound,
        ),
        (
            "attestmesh_messages_sent_total",
            "Messages sent through the chain.",
            &m.messages_sent,
        ),
        (
            "attestmesh_submissions_failed_total",
            "State-changing submissions that failed.",
            &m.submissions_failed,
        ),
        (
            "attestmesh_csk_bogus_answers_total",
            "CSK answers from peers that failed the commitment check.",
            &m.csk_bogus_answers,
        ),
        (
            "attestmesh_csk_requests_served_total",
            "CSK requests answered.",
            &m.csk_requests_served,
        ),
        (
            "attestmesh_csk_requests_refused_total",
            "CSK requests refused.",
            &m.csk_requests_refused,
        ),
        (
            "attestmesh_mesh_ip_collisions_total",
            "Members whose mesh IP collides with an earlier member.",
            &m.mesh_ip_collisions,
        ),
        (
            "attestmesh_wg_key_refusals_total",
            "Members refused for a duplicate or low-order WireGuard key.",
            &m.wg_key_refusals,
        ),
        (
            "attestmesh_indexer_wakeups_total",
            "Verified Indexer wake-ups that made the follower poll early.",
            &m.indexer_wakeups,
        ),
    ];
    for (name, help, c) in counters {
        out.counter(name, help, c.load(Ordering::Relaxed));
    }
    peer_metrics(&mut out, shared);
    intake_metrics(&mut out, shared.intake_stats().as_deref());
    out.render()
}

/// A peer's label: enough of its member id to be unique in any real cluster, short enough to read.
fn peer_label(member: &B256) -> Labels {
    vec![("peer", hex::encode(&member[..6]))]
}

/// One series per current peer: liveness from the heartbeat task, tunnel counters from the
/// WireGuard device. A peer that left the cluster leaves both tables, and its series go with it.
fn peer_metrics(out: &mut Scrape, shared: &Shared) {
    let now = crate::state::now_unix_ms();
    let age_s = |at: u64| Value::Float(now.saturating_sub(at) as f64 / 1000.0);
    let mut liveness: Vec<_> = shared.liveness().into_iter().collect();
    liveness.sort_by_key(|(id, _)| *id);
    let mut wg: Vec<_> = shared.wg_peers().into_iter().collect();
    wg.sort_by_key(|(id, _)| *id);
    out.gauges(
        "attestmesh_peer_live",
        "1 while the peer's heartbeats arrive within 3 intervals.",
        liveness
            .iter()
            .map(|(id, l)| (peer_label(id), l.live.into()))
            .collect(),
    );
    out.gauges(
        "attestmesh_peer_last_heartbeat_age_seconds",
        "Seconds since the peer's last accepted heartbeat (absent before the first).",
        liveness
            .iter()
            .filter(|(_, l)| l.last_heartbeat_unix_ms > 0)
            .map(|(id, l)| (peer_label(id), age_s(l.last_heartbeat_unix_ms)))
            .collect(),
    );
    out.gauges(
        "attestmesh_peer_wg_handshake_age_seconds",
        "Seconds since the peer's last WireGuard handshake (absent before the first).",
        wg.iter()
            .filter_map(|(id, w)| Some((peer_label(id), age_s(w.last_handshake_unix_ms?))))
            .collect(),
    );
    out.counters(
        "attestmesh_peer_wg_rx_bytes_total",
        "Bytes received from the peer through the tunnel.",
        wg.iter()
            .map(|(id, w)| (peer_label(id), w.rx_bytes.into()))
            .collect(),
    );
    out.counters(
        "attestmesh_peer_wg_tx_bytes_total",
        "Bytes sent to the peer through the tunnel.",
        wg.iter()
            .map(|(id, w)| (peer_label(id), w.tx_bytes.into()))
            .collect(),
    );
    out.gauges(
        "attestmesh_peer_path",
        "1 for the path that carries the peer's tunnel (bridge: through the gateway).",
        wg.iter()
            .map(|(id, w)| {
                let mut l = peer_label(id);
                l.push(("path", w.path.as_str().to_owned()));
                (l, Value::Int(1))
            })
            .collect(),
    );
}

/// The Indexer intake's counters. Exported so an operator sees an Indexer that lies (adversarial
/// teardowns), flaps (resubscribes) or is simply absent (enabled 0) — the agent stays correct in
/// all three cases, but latency silently falls back to the poll interval.
fn intake_metrics(out: &mut Scrape, stats: Option<&IntakeStats>) {
    out.gauge(
        "attestmesh_indexer_intake_enabled",
        "1 when INDEXER_REGISTRY is set and the intake runs.",
        stats.is_some(),
    );
    let Some(st) = stats else {
        return;
    };
    out.gauge(
        "attestmesh_indexer_subscribed",
        "1 while a verified Indexer subscription is open.",
        st.subscribed.load(std::sync::atomic::Ordering::Relaxed),
    );
    let get = IntakeStats::get;
    let sessions = get(&st.sessions);
    let counters: [(&'static str, &'static str, u64); 7] = [
        (
            "attestmesh_indexer_pushes_verified_total",
            "Indexer pushes whose signature and fields verified against the registry key.",
            get(&st.pushes_verified),
        ),
        (
            "attestmesh_indexer_pushes_rejected_total",
            "Indexer pushes rejected (each tears its subscription down).",
            get(&st.pushes_rejected),
        ),
        (
            "attestmesh_indexer_subscriptions_total",
            "Indexer subscriptions opened.",
            sessions,
        ),
        (
            "attestmesh_indexer_resubscribes_total",
            "Indexer subscriptions opened after the first.",
            sessions.saturating_sub(1),
        ),
        (
            "attestmesh_indexer_repro_checks_total",
            "Pushed reproduction stubs re-run against our own RPC.",
            get(&st.repro_checks),
        ),
        (
            "attestmesh_indexer_registry_reads_total",
            "IndexerRegistry.current() reads.",
            get(&st.registry_reads),
        ),
        (
            "attestmesh_indexer_wakeups_sent_total",
            "Wake-ups the intake handed to the follower.",
            get(&st.wakeups_sent),
        ),
    ];
    for (name, help, v) in counters {
        out.counter(name, help, v);
    }
    out.counters(
        "attestmesh_indexer_teardowns_total",
        "Indexer subscriptions ended, by reason (adversarial = a push failed verification).",
        [
            ("adversarial", get(&st.adversarial_teardowns)),
            ("transport", get(&st.transport_teardowns)),
            ("rotation", get(&st.rotations)),
        ]
        .into_iter()
        .map(|(reason, v)| (vec![("reason", reason.to_owned())], v.into()))
        .collect(),
    );
}

fn parse_nonce(query: Option<&str>) -> Result<B256, String> {
    let Some(q) = query else {
        return Ok(B256::ZERO);
    };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("nonce=") {
            let bytes = hex::decode(v).map_err(|_| "nonce must be hex".to_string())?;
            if bytes.len() != 32 {
                return Err(format!("nonce must be 32 bytes, got {}", bytes.len()));
            }
            return Ok(B256::from_slice(&bytes));
        }
    }
    Ok(B256::ZERO)
}

async fn attestation(ctx: &Ctx, query: Option<&str>) -> Response<Full<Bytes>> {
    let nonce = match parse_nonce(query) {
        Ok(n) => n,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &json!({ "error": e })),
    };
    let (Some(me), Some(cluster)) = (ctx.shared.me(), ctx.shared.cluster()) else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "error": "not registered yet" }),
        );
    };
    let report = attestation_report_data(cluster.cluster, &me, &nonce);
    let quote = match ctx.gate.check(&report) {
        Gate::Cached(q) => Ok(q),
        Gate::Fresh => {
            let q = ctx.quotes.quote(report).await;
            if let Ok(q) = &q {
                ctx.gate.remember(report, q);
            }
            q
        }
        Gate::Limited(secs) => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({ "error": "too many attestation requests; retry later" }),
            );
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(secs),
            );
            return r;
        }
    };
    match quote {
        Ok(q) => json_response(
            StatusCode::OK,
            &json!({
                "attestor_id": q.attestor_id.to_string(),
                "format": q.format,
                "quote": hex::encode_prefixed(&q.quote),
                "event_log": q.event_log,
                "report_data": hex::encode_prefixed(report),
                "report_data_layout": "keccak256(\"attestmesh.node.attestation.v1\" ‖ cluster ‖ member_contract ‖ member_id ‖ x ‖ wg ‖ ed) ‖ nonce",
                "nonce": nonce.to_string(),
                "cluster": cluster.cluster.to_string(),
                "member_id": me.id.to_string(),
                "member_contract": me.contract.to_string(),
                "x_pub_key": me.x_pub.to_string(),
                "wg_pub_key": me.wg_pub.to_string(),
                "ed_pub_key": me.ed_pub.to_string(),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "attestation quote failed");
            json_response(
                StatusCode::BAD_GATEWAY,
                &json!({ "error": format!("TEE quote failed: {e}") }),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::{ClusterView, MemberView, Phase};
    use attestmesh_core::keys::SymmetricKey;
    use attestmesh_core::mesh::MeshCidr;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn metrics_have_one_series_per_current_peer_and_follow_departures() {
        use crate::state::{PeerLiveness, PeerPath, WgPeerStats};
        let shared = Shared::new();
        let (a, b) = (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb));
        let now = crate::state::now_unix_ms();
        shared.set_liveness(
            HashMap::from([
                (
                    a,
                    PeerLiveness {
                        live: true,
                        last_heartbeat_unix_ms: now - 1500,
                    },
                ),
                (
                    b,
                    PeerLiveness {
                        live: false,
                        last_heartbeat_unix_ms: 0,
                    },
                ),
            ]),
            false,
        );
        shared.set_wg_peers(HashMap::from([(
            a,
            WgPeerStats {
                rx_bytes: 1234,
                tx_bytes: 99,
                last_handshake_unix_ms: Some(now - 10_000),
                path: PeerPath::Bridge,
            },
        )]));
        let out = metrics(&shared);
        let pa = "peer=\"aaaaaaaaaaaa\"";
        let pb = "peer=\"bbbbbbbbbbbb\"";
        assert!(
            out.contains(&format!("attestmesh_peer_live{{{pa}}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("attestmesh_peer_live{{{pb}}} 0\n")),
            "{out}"
        );
        let age_line = out
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "attestmesh_peer_last_heartbeat_age_seconds{{{pa}}}"
                ))
            })
            .unwrap();
        let age: f64 = age_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((1.4..5.0).contains(&age), "{age_line}");
        assert!(
            !out.contains(&format!(
                "attestmesh_peer_last_heartbeat_age_seconds{{{pb}}}"
            )),
            "no heartbeat yet, no age: {out}"
        );
        assert!(
            out.contains(&format!("attestmesh_peer_wg_rx_bytes_total{{{pa}}} 1234\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("attestmesh_peer_wg_tx_bytes_total{{{pa}}} 99\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("attestmesh_peer_path{{{pa},path=\"bridge\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains("attestmesh_peer_wg_handshake_age_seconds{"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE attestmesh_heartbeats_sent counter\n"),
            "{out}"
        );
        assert!(
            out.contains("attestmesh_heartbeats_sent_total 0\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
        // b leaves the cluster: its series go; a's stay.
        shared.set_liveness(
            HashMap::from([(
                a,
                PeerLiveness {
                    live: true,
                    last_heartbeat_unix_ms: now,
                },
            )]),
            false,
        );
        let out = metrics(&shared);
        assert!(!out.contains(pb), "{out}");
        assert!(out.contains(pa), "{out}");
    }

    struct FakeQuotes;
    impl QuoteSource for FakeQuotes {
        fn quote(
            &self,
            report_data: [u8; 64],
        ) -> Pin<Box<dyn Future<Output = Result<Quote, DocumentError>> + Send + '_>> {
            Box::pin(async move {
                let mut quote = b"FAKE".to_vec();
                quote.extend_from_slice(&report_data);
                Ok(Quote {
                    attestor_id: B256::repeat_byte(0xaa),
                    format: "fake".into(),
                    quote,
                    event_log: String::new(),
                })
            })
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (code, body)
    }

    fn me() -> MemberView {
        MemberView {
            id: B256::repeat_byte(1),
            contract: alloy_primitives::Address::repeat_byte(2),
            attestor_id: B256::repeat_byte(3),
            x_pub: B256::repeat_byte(4),
            wg_pub: B256::repeat_byte(5),
            ed_pub: B256::repeat_byte(6),
            mesh_ip: "10.13.0.7".parse().unwrap(),
            registered_at: 9,
            routable: true,
        }
    }

    #[tokio::test]
    async fn healthz_metrics_attestation() {
        let shared = Arc::new(Shared::new());
        let server = HealthServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::clone(&shared),
            Arc::new(FakeQuotes),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));

        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["phase"], "booting");
        assert_eq!(v["first_converged"], false);
        assert_eq!(v["member_id"], serde_json::Value::Null);

        // Not registered yet: no attestation.
        assert_eq!(get(addr, "/attestation").await.0, 503);

        shared.set_me(me());
        shared.set_cluster(
            ClusterView {
                cluster: alloy_primitives::Address::repeat_byte(9),
                cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
                members: vec![me()],
                commitment: B256::ZERO,
                block: 1,
            },
            0,
        );
        shared.advance(Phase::Heartbeating);
        shared.set_liveness(Default::default(), true);
        shared.set_csk(SymmetricKey::from_bytes([7; 32]));
        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["phase"], "healthy");
        assert_eq!(v["csk_acquired"], true);
        assert_eq!(v["member_count"], 1);
        assert_eq!(v["mesh_ip"], "10.13.0.7");
        assert_eq!(v["member_id"], B256::repeat_byte(1).to_string());
        // The CSK itself never appears.
        assert!(!body.contains(&hex::encode([7u8; 32])));

        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("attestmesh_healthy 1"), "{body}");
        assert!(
            body.contains("# TYPE attestmesh_heartbeats_sent counter"),
            "{body}"
        );
        assert!(body.contains("attestmesh_members 1"));
        assert!(
            body.contains("attestmesh_indexer_intake_enabled 0"),
            "{body}"
        );
        assert!(!body.contains("attestmesh_indexer_pushes_verified_total"));
        let stats = Arc::new(IntakeStats::default());
        stats.sessions.store(3, Ordering::Relaxed);
        stats.pushes_verified.store(5, Ordering::Relaxed);
        stats.adversarial_teardowns.store(2, Ordering::Relaxed);
        shared.set_intake_stats(Arc::clone(&stats));
        let (_, body) = get(addr, "/metrics").await;
        assert!(
            body.contains("attestmesh_indexer_intake_enabled 1"),
            "{body}"
        );
        assert!(body.contains("attestmesh_indexer_pushes_verified_total 5"));
        assert!(body.contains("attestmesh_indexer_subscribed 0"));
        assert!(body.contains("attestmesh_indexer_resubscribes_total 2"));
        assert!(body.contains("attestmesh_indexer_teardowns_total{reason=\"adversarial\"} 2"));
        assert!(body.contains("# TYPE attestmesh_indexer_teardowns counter"));

        let nonce = B256::repeat_byte(0x42);
        let (code, body) = get(addr, &format!("/attestation?nonce={nonce}")).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let expected =
            attestation_report_data(alloy_primitives::Address::repeat_byte(9), &me(), &nonce);
        assert_eq!(v["report_data"], hex::encode_prefixed(expected));
        assert_eq!(
            v["quote"],
            hex::encode_prefixed([b"FAKE".as_slice(), &expected].concat())
        );
        assert_eq!(&expected[32..], nonce.as_slice());
        assert!(!body.contains(&hex::encode([7u8; 32])));

        assert_eq!(get(addr, "/attestation?nonce=zz").await.0, 400);
        assert_eq!(get(addr, "/nope").await.0, 404);

        tx.send(()).unwrap();
        task.await.unwrap();
    }

    /// Counts GetQuote calls: each one is a TDX quote generation in production.
    #[derive(Default)]
    struct CountingQuotes(std::sync::atomic::AtomicU64);
    impl QuoteSource for CountingQuotes {
        fn quote(
            &self,
            report_data: [u8; 64],
        ) -> Pin<Box<dyn Future<Output = Result<Quote, DocumentError>> + Send + '_>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            FakeQuotes.quote(report_data)
        }
    }

    async fn get_raw(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Hole 9: every `/attestation` request made the TEE generate a quote, so any local client
    /// could keep the guest agent busy. Distinct nonces beyond the burst get 429 with
    /// Retry-After; a repeated request is answered from the short-lived cache.
    #[tokio::test]
    async fn attack_attestation_is_rate_limited() {
        let shared = Arc::new(Shared::new());
        shared.set_me(me());
        shared.set_cluster(
            ClusterView {
                cluster: alloy_primitives::Address::repeat_byte(9),
                cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
                members: vec![me()],
                commitment: B256::ZERO,
                block: 1,
            },
            0,
        );
        let quotes = Arc::new(CountingQuotes::default());
        let server = HealthServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            shared,
            Arc::clone(&quotes) as Arc<dyn QuoteSource>,
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));

        // The same request ten times: one quote.
        let nonce = B256::repeat_byte(0x42);
        for _ in 0..10 {
            let r = get_raw(addr, &format!("/attestation?nonce={nonce}")).await;
            assert!(
                r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"),
                "{r}"
            );
        }
        assert_eq!(
            quotes.0.load(Ordering::Relaxed),
            1,
            "repeats come from the cache"
        );

        // Forty distinct nonces at once: bounded quotes, the rest refused with Retry-After.
        let mut limited = 0;
        for i in 0..40u8 {
            let r = get_raw(
                addr,
                &format!("/attestation?nonce={}", B256::repeat_byte(i)),
            )
            .await;
            if r.contains(" 429 ") {
                limited += 1;
                assert!(r.to_ascii_lowercase().contains("retry-after: "), "{r}");
            }
        }
        let made = quotes.0.load(Ordering::Relaxed);
        assert!(
            made <= 1 + u64::from(AttestationLimits::default().burst) + 1,
            "{made} quotes"
        );
        assert!(limited >= 30, "only {limited} of 40 requests limited");
        // Health and metrics are never limited.
        assert!(get_raw(addr, "/metrics").await.contains(" 200 "));

        tx.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn quote_gate_refills_and_expires_its_cache() {
        let gate = QuoteGate::new(AttestationLimits {
            burst: 2,
            refill_every: Duration::from_millis(40),
            cache_ttl: Duration::from_millis(40),
        });
        let q = Quote {
            attestor_id: B256::ZERO,
            format: "fake".into(),
            quote: vec![1],
            event_log: String::new(),
        };
        assert!(matches!(gate.check(&[1; 64]), Gate::Fresh));
        gate.remember([1; 64], &q);
        assert!(matches!(gate.check(&[1; 64]), Gate::Cached(_)));
        assert!(matches!(gate.check(&[2; 64]), Gate::Fresh));
        assert!(matches!(gate.check(&[3; 64]), Gate::Limited(1)));
        tokio::time::advance(Duration::from_millis(39)).await;
        // Just inside both periods: still cached, still limited.
        assert!(matches!(gate.check(&[1; 64]), Gate::Cached(_)));
        assert!(matches!(gate.check(&[3; 64]), Gate::Limited(1)));
        tokio::time::advance(Duration::from_millis(61)).await;
        // Refilled (to the burst, no more), and the cached quote expired.
        assert!(matches!(gate.check(&[1; 64]), Gate::Fresh));
        assert!(matches!(gate.check(&[3; 64]), Gate::Fresh));
        assert!(matches!(gate.check(&[4; 64]), Gate::Limited(_)));
    }
}
