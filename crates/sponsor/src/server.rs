//! The HTTP service: ERC-7677 JSON-RPC on `POST /`, the hosted-paymaster webhook on
//! `POST /webhook`, `GET /healthz` and `GET /metrics`.
//!
//! Responses are built by hand from `serde_json` values so that every error path controls its
//! own HTTP status and JSON-RPC code (see the table in the crate docs).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use attestmesh_core::userop::{SponsorPaymasterData, UserOperation, sponsor_paymaster_hash};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::chain::{ChainError, ChainView};
use crate::metrics::Metrics;
use crate::policy::{Decision, DenyReason, Mode, Policy, PolicyError};
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::signer::{SignerError, SponsorSigner};
use crate::webhook::{WebhookError, WebhookSecret};
use crate::wire::{self, FieldError};

/// Dummy paymaster signature for stub data: 65 non-zero bytes shaped like a real one (`r < n`,
/// low `s`, `v = 28`). Non-zero bytes keep the bundler's `preVerificationGas` estimate at least
/// what the final data needs (ERC-7677 "Challenges with stub data"), and a well-formed signature
/// sends the paymaster's validation down the same recover-and-compare path as the real one.
pub const STUB_SIGNATURE: [u8; 65] = {
    let mut s = [0u8; 65];
    let mut i = 0;
    while i < 32 {
        s[i] = 0xaa;
        s[32 + i] = 0x2a;
        i += 1;
    }
    s[64] = 28;
    s
};

/// Service settings beyond the policy.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The `SponsorPaymaster` address.
    pub paymaster: Address,
    /// `paymasterVerificationGasLimit` we ask for when the wallet has none.
    pub verification_gas_limit: u128,
    /// `paymasterPostOpGasLimit`: 0, because `SponsorPaymaster` returns an empty context, so the
    /// EntryPoint never calls `postOp` (and unused postOp gas would be penalised).
    pub post_op_gas_limit: u128,
    /// How long a signed sponsorship stays valid (`validUntil = now + validity`).
    pub validity: Duration,
    /// When set, every ERC-7677 request must name this policy in `context.sponsorshipPolicyId`
    /// (the field hosted paymasters such as Pimlico use), so the service behaves like a hosted
    /// paymaster with a sponsorship policy and the nodes' `PAYMASTER_CONTEXT` is exercised.
    pub sponsorship_policy_id: Option<String>,
}

impl ServiceConfig {
    /// Defaults: 100 000 verification gas (ECDSA recovery, one SLOAD, hashing; measured well
    /// below), no postOp, 10 minutes validity.
    pub fn new(paymaster: Address) -> Self {
        Self {
            paymaster,
            verification_gas_limit: 100_000,
            post_op_gas_limit: 0,
            validity: Duration::from_secs(600),
            sponsorship_policy_id: None,
        }
    }
}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Everything a request handler needs.
pub struct Service<C> {
    policy: Policy<C>,
    signer: SponsorSigner,
    webhook: Option<WebhookSecret>,
    cfg: ServiceConfig,
    metrics: Metrics,
    clock: Clock,
    /// Webhook deliveries answered in the last tolerance window, by `webhook-id`: a retried
    /// delivery gets the same answer and is not charged twice.
    webhook_seen: Mutex<HashMap<String, (String, u64)>>,
    /// Per-client-IP token buckets of the JSON-RPC endpoint (`None`: unlimited).
    limiter: Option<RateLimiter>,
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<C: ChainView> Service<C> {
    /// A service; `webhook` is `None` when no secret is configured (then `/webhook` is 404).
    pub fn new(
        policy: Policy<C>,
        signer: SponsorSigner,
        webhook: Option<WebhookSecret>,
        cfg: ServiceConfig,
    ) -> Self {
        Self {
            policy,
            signer,
            webhook,
            cfg,
            metrics: Metrics::default(),
            clock: Arc::new(system_now),
            webhook_seen: Mutex::new(HashMap::new()),
            limiter: Some(RateLimiter::new(RateLimit::default())),
        }
    }

    /// Replaces the per-client rate limit of the JSON-RPC endpoint ([`RateLimit::default`]
    /// unless set; `None` turns it off, e.g. for a benchmark from one address).
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.limiter = limit.map(RateLimiter::new);
        self
    }

    /// Replaces the wall clock (unix seconds); tests use it to cross day boundaries.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The policy (e.g. for its cache).
    pub fn policy(&self) -> &Policy<C> {
        &self.policy
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The signer's address.
    pub fn signer_address(&self) -> Address {
        self.signer.address()
    }
}

/// Builds the router. The JSON-RPC routes are rate limited per client IP when the connection's
/// address is known (served by [`serve`]).
pub fn router<C: ChainView>(service: Arc<Service<C>>) -> Router {
    let rpc_routes = Router::new()
        .route("/", post(rpc::<C>))
        .route("/rpc", post(rpc::<C>))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            rate_limit::<C>,
        ));
    Router::new()
        .merge(rpc_routes)
        .route("/webhook", post(webhook::<C>))
        .route("/healthz", get(healthz::<C>))
        .route("/metrics", get(metrics::<C>))
        .with_state(service)
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve<C: ChainView>(
    listener: TcpListener,
    service: Arc<Service<C>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(service).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Refuses a JSON-RPC request over its client's token bucket: HTTP 429, JSON-RPC -32005.
async fn rate_limit<C: ChainView>(
    State(svc): State<Arc<Service<C>>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let (Some(limiter), Some(ip)) = (&svc.limiter, peer)
        && !limiter.allow(ip, Instant::now())
    {
        svc.metrics.error("rpc", "rate_limited");
        let l = limiter.limit();
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32005,
                "message": format!(
                    "rate limit exceeded: at most {} requests per second (bursts of {}) per client",
                    l.per_sec, l.burst
                ),
                "data": {"reason": "rate_limited"},
            }}),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    next.run(req).await
}

/// A JSON-RPC failure with its HTTP status and code.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Body is not JSON: HTTP 400, -32700.
    #[error("parse error: {0}")]
    Parse(String),
    /// Not a JSON-RPC 2.0 request object: HTTP 400, -32600.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// Unknown method: HTTP 200, -32601.
    #[error("method not found: {0}")]
    MethodNotFound(String),
    /// Bad params / malformed userOp: HTTP 400, -32602.
    #[error(transparent)]
    InvalidParams(#[from] FieldError),
    /// Policy said no: HTTP 200, -32005 for the daily cap and wei budgets, -32003 otherwise;
    /// `data.reason`.
    #[error("sponsorship denied: {0}")]
    Denied(DenyReason),
    /// Chain unreachable: HTTP 503, -32002 (retry later).
    #[error("{0}")]
    Chain(#[from] ChainError),
    /// Database, signing or task failure: HTTP 500, -32603.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RpcError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => -32700,
            RpcError::InvalidRequest(_) => -32600,
            RpcError::MethodNotFound(_) => -32601,
            RpcError::InvalidParams(_) => -32602,
            RpcError::Denied(
                DenyReason::DailyCapExceeded
                | DenyReason::DailySenderBudgetExceeded
                | DenyReason::DailyClusterBudgetExceeded,
            ) => -32005,
            RpcError::Denied(_) => -32003,
            RpcError::Chain(_) => -32002,
            RpcError::Internal(_) => -32603,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            RpcError::Parse(_) | RpcError::InvalidRequest(_) | RpcError::InvalidParams(_) => {
                StatusCode::BAD_REQUEST
            }
            RpcError::MethodNotFound(_) | RpcError::Denied(_) => StatusCode::OK,
            RpcError::Chain(_) => StatusCode::SERVICE_UNAVAILABLE,
            RpcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn metric_kind(&self) -> &'static str {
        match self {
            RpcError::Parse(_) => "parse_error",
            RpcError::InvalidRequest(_) => "invalid_request",
            RpcError::MethodNotFound(_) => "method_not_found",
            RpcError::InvalidParams(_) => "invalid_params",
            RpcError::Denied(_) => "denied",
            RpcError::Chain(_) => "chain_unavailable",
            RpcError::Internal(_) => "internal",
        }
    }

    fn body(&self, id: &Value) -> Value {
        let mut err = json!({"code": self.code(), "message": self.to_string()});
        match self {
            RpcError::Denied(r) => err["data"] = json!({"reason": r.as_str()}),
            RpcError::InvalidParams(f) => err["data"] = json!({"field": f.field}),
            _ => {}
        }
        json!({"jsonrpc": "2.0", "id": id, "error": err})
    }
}

impl From<PolicyError> for RpcError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Chain(c) => RpcError::Chain(c),
            other => RpcError::Internal(other.to_string()),
        }
    }
}

impl From<SignerError> for RpcError {
    fn from(e: SignerError) -> Self {
        RpcError::Internal(e.to_string())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn rpc<C: ChainView>(State(svc): State<Arc<Service<C>>>, body: Bytes) -> Response {
    let (id, result) = match serde_json::from_slice::<Value>(&body) {
        Err(e) => (Value::Null, Err(RpcError::Parse(e.to_string()))),
        Ok(req) => {
            let id = req.get("id").cloned().unwrap_or(Value::Null);
            let r = dispatch(&svc, &req).await;
            (id, r)
        }
    };
    match result {
        Ok(v) => json_response(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "result": v}),
        ),
        Err(e) => {
            svc.metrics.error("rpc", e.metric_kind());
            if matches!(e, RpcError::Chain(_) | RpcError::Internal(_)) {
                tracing::warn!(error = %e, "paymaster request failed");
            }
            json_response(e.status(), &e.body(&id))
        }
    }
}

/// The parsed ERC-7677 params `[userOp, entryPoint, chainId, context?]`.
struct PmParams {
    op: UserOperation,
    entry_point: Address,
    chain_id: u64,
    /// `context.sponsorshipPolicyId`, when the context names one.
    policy_id: Option<String>,
}

/// The ERC-7677 context key naming a sponsorship policy.
pub const POLICY_ID_KEY: &str = "sponsorshipPolicyId";

fn pm_params(req: &Value, final_data: bool) -> Result<PmParams, RpcError> {
    let params = req.get("params").and_then(Value::as_array).ok_or_else(|| {
        FieldError::new("params", "expected [userOp, entryPoint, chainId, context]")
    })?;
    if params.len() < 3 || params.len() > 4 {
        return Err(
            FieldError::new("params", "expected [userOp, entryPoint, chainId, context]").into(),
        );
    }
    let context = params.get(3).filter(|c| !c.is_null());
    if context.is_some_and(|c| !c.is_object()) {
        return Err(FieldError::new("context", "expected an object or null").into());
    }
    let policy_id = match context.and_then(|c| c.get(POLICY_ID_KEY)) {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(FieldError::new("context.sponsorshipPolicyId", "expected a string").into());
        }
    };
    Ok(PmParams {
        op: wire::user_operation("userOp", &params[0], final_data)?,
        entry_point: wire::address("entryPoint", &params[1])?,
        chain_id: wire::chain_id("chainId", &params[2])?,
        policy_id,
    })
}

async fn dispatch<C: ChainView>(svc: &Service<C>, req: &Value) -> Result<Value, RpcError> {
    if !req.is_object() {
        return Err(RpcError::InvalidRequest(
            "expected a JSON-RPC request object (batches are not supported)",
        ));
    }
    if req.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::InvalidRequest("jsonrpc must be \"2.0\""));
    }
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .ok_or(RpcError::InvalidRequest("method must be a string"))?;
    match method {
        "pm_getPaymasterStubData" => {
            let mut p = pm_params(req, false)?;
            with_our_paymaster(svc, &mut p.op);
            decide(svc, "pm_getPaymasterStubData", &p, Mode::Check).await?;
            let (until, after) = window(svc);
            let data = SponsorPaymasterData::new(until, after, STUB_SIGNATURE)
                .map_err(|e| RpcError::Internal(e.to_string()))?;
            Ok(json!({
                "paymaster": svc.cfg.paymaster.to_string(),
                "paymasterData": wire::hex_bytes(&data.encode()),
                "paymasterVerificationGasLimit": wire::hex_quantity(p.op.paymaster_verification_gas_limit),
                "paymasterPostOpGasLimit": wire::hex_quantity(p.op.paymaster_post_op_gas_limit),
                "isFinal": false,
            }))
        }
        "pm_getPaymasterData" => {
            let mut p = pm_params(req, true)?;
            // The policy judges the operation exactly as it will be signed.
            with_our_paymaster(svc, &mut p.op);
            decide(svc, "pm_getPaymasterData", &p, Mode::Charge).await?;
            let op = p.op;
            let (until, after) = window(svc);
            let hash = sponsor_paymaster_hash(
                &op.pack(),
                svc.policy.config().chain_id,
                svc.cfg.paymaster,
                until,
                after,
            )
            .map_err(|e| RpcError::Internal(e.to_string()))?;
            let sig = svc.signer.sign_hash(hash)?;
            let data = SponsorPaymasterData::new(until, after, sig)
                .map_err(|e| RpcError::Internal(e.to_string()))?;
            Ok(json!({
                "paymaster": svc.cfg.paymaster.to_string(),
                "paymasterData": wire::hex_bytes(&data.encode()),
                "paymasterVerificationGasLimit": wire::hex_quantity(op.paymaster_verification_gas_limit),
                "paymasterPostOpGasLimit": wire::hex_quantity(op.paymaster_post_op_gas_limit),
            }))
        }
        "pm_supportedEntryPoints" => Ok(json!([svc.policy.config().entry_point.to_string()])),
        other => Err(RpcError::MethodNotFound(other.chars().take(64).collect())),
    }
}

/// Fills in our paymaster as the final operation will carry it: the wallet's paymaster gas
/// limits (from the bundler's estimate) when it already names us, ours otherwise, and paymaster
/// data of the final length so `preVerificationGas` is bounded over the bytes that will be sent.
fn with_our_paymaster<C: ChainView>(svc: &Service<C>, op: &mut UserOperation) {
    if op.paymaster != Some(svc.cfg.paymaster) {
        op.paymaster_verification_gas_limit = svc.cfg.verification_gas_limit;
        op.paymaster_post_op_gas_limit = svc.cfg.post_op_gas_limit;
    } else if op.paymaster_verification_gas_limit == 0 {
        op.paymaster_verification_gas_limit = svc.cfg.verification_gas_limit;
    }
    op.paymaster = Some(svc.cfg.paymaster);
    op.paymaster_data = vec![0u8; attestmesh_core::userop::SPONSOR_PAYMASTER_DATA_LEN].into();
}

fn window<C: ChainView>(svc: &Service<C>) -> (u64, u64) {
    let now = (svc.clock)();
    (
        now.saturating_add(svc.cfg.validity.as_secs())
            .min(attestmesh_core::userop::MAX_U48),
        0,
    )
}

async fn decide<C: ChainView>(
    svc: &Service<C>,
    method: &'static str,
    p: &PmParams,
    mode: Mode,
) -> Result<(), RpcError> {
    if let Some(required) = &svc.cfg.sponsorship_policy_id
        && p.policy_id.as_deref() != Some(required.as_str())
    {
        let r = DenyReason::SponsorshipPolicyMismatch;
        svc.metrics.decision(method, r.as_str(), Duration::ZERO);
        tracing::info!(sender = %p.op.sender, reason = r.as_str(), method, "sponsorship denied");
        return Err(RpcError::Denied(r));
    }
    let started = Instant::now();
    let d = svc
        .policy
        .decide(&p.op, p.entry_point, p.chain_id, (svc.clock)(), mode)
        .await?;
    svc.metrics.decision(method, d.label(), started.elapsed());
    match d {
        Decision::Sponsor { charged_wei, .. } => {
            svc.metrics.charged(charged_wei);
            Ok(())
        }
        Decision::Deny(r) => {
            tracing::info!(sender = %p.op.sender, reason = r.as_str(), method, "sponsorship denied");
            Err(RpcError::Denied(r))
        }
    }
}

/// Webhook failures and their HTTP statuses.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("webhook endpoint not configured")]
    NotConfigured,
    #[error(transparent)]
    Unauthorized(#[from] WebhookError),
    #[error(transparent)]
    BadPayload(#[from] FieldError),
    #[error("{0}")]
    Chain(ChainError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HookError {
    fn status(&self) -> StatusCode {
        match self {
            HookError::NotConfigured => StatusCode::NOT_FOUND,
            HookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HookError::BadPayload(_) => StatusCode::BAD_REQUEST,
            HookError::Chain(_) => StatusCode::SERVICE_UNAVAILABLE,
            HookError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            HookError::NotConfigured => "not_configured",
            HookError::Unauthorized(_) => "unauthorized",
            HookError::BadPayload(_) => "bad_payload",
            HookError::Chain(_) => "chain_unavailable",
            HookError::Internal(_) => "internal",
        }
    }
}

impl From<PolicyError> for HookError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Chain(c) => HookError::Chain(c),
            other => HookError::Internal(other.to_string()),
        }
    }
}

async fn webhook<C: ChainView>(
    State(svc): State<Arc<Service<C>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle_webhook(&svc, &headers, &body).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => {
            svc.metrics.error("webhook", e.kind());
            json_response(e.status(), &json!({"error": e.to_string()}))
        }
    }
}

async fn handle_webhook<C: ChainView>(
    svc: &Service<C>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, HookError> {
    let secret = svc.webhook.as_ref().ok_or(HookError::NotConfigured)?;
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = (svc.clock)();
    secret.verify(
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        body,
        now,
    )?;
    let id = h("webhook-id").unwrap_or_default().to_owned();
    if let Some(prev) = seen_answer(svc, &id, now) {
        return serde_json::from_str(&prev).map_err(|e| HookError::Internal(e.to_string()));
    }

    let v: Value =
        serde_json::from_slice(body).map_err(|e| FieldError::new("body", e.to_string()))?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new("type", "missing"))?;
    let answer = match kind {
        "user_operation.sponsorship.requested" | "sponsorshipPolicy.webhook" => {
            let obj = v
                .get("data")
                .and_then(|d| d.get("object"))
                .ok_or_else(|| FieldError::new("data.object", "missing"))?;
            let op_v = obj
                .get("userOperation")
                .ok_or_else(|| FieldError::new("data.object.userOperation", "missing"))?;
            let op = wire::user_operation("data.object.userOperation", op_v, false)?;
            let ep = wire::address(
                "data.object.entryPoint",
                obj.get("entryPoint")
                    .ok_or_else(|| FieldError::new("data.object.entryPoint", "missing"))?,
            )?;
            let chain_id = wire::chain_id(
                "data.object.chainId",
                obj.get("chainId")
                    .ok_or_else(|| FieldError::new("data.object.chainId", "missing"))?,
            )?;
            let started = Instant::now();
            let d = svc
                .policy
                .decide(&op, ep, chain_id, now, Mode::Charge)
                .await?;
            svc.metrics
                .decision("webhook", d.label(), started.elapsed());
            match d {
                Decision::Sponsor { .. } => json!({"sponsor": true, "reason": d.label()}),
                Decision::Deny(r) => json!({"sponsor": false, "reason": r.as_str()}),
            }
        }
        "user_operation.sponsorship.finalized" => json!({"received": true}),
        other => {
            return Err(FieldError::new(
                "type",
                format!(
                    "unsupported webhook type {:?}",
                    other.chars().take(64).collect::<String>()
                ),
            )
            .into());
        }
    };
    remember_answer(svc, id, &answer, now);
    Ok(answer)
}

const WEBHOOK_SEEN_CAP: usize = 10_000;

fn seen_answer<C>(svc: &Service<C>, id: &str, now: u64) -> Option<String> {
    let seen = svc.webhook_seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.get(id)
        .filter(|(_, exp)| *exp >= now)
        .map(|(a, _)| a.clone())
}

fn remember_answer<C>(svc: &Service<C>, id: String, answer: &Value, now: u64) {
    let mut seen = svc.webhook_seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() >= WEBHOOK_SEEN_CAP {
        seen.retain(|_, (_, exp)| *exp >= now);
    }
    if seen.len() < WEBHOOK_SEEN_CAP {
        // A replay is only possible inside the timestamp window (twice its width covers both
        // directions of clock skew).
        seen.insert(
            id,
            (answer.to_string(), now + 2 * crate::webhook::TOLERANCE_SECS),
        );
    }
}

async fn healthz<C: ChainView>(State(svc): State<Arc<Service<C>>>) -> Response {
    let cfg = svc.policy.config();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "chainId": cfg.chain_id,
            "entryPoint": cfg.entry_point.to_string(),
            "paymaster": svc.cfg.paymaster.to_string(),
            "signer": svc.signer.address().to_string(),
            "webhook": svc.webhook.is_some(),
            "trustedClusters": cfg.trust.clusters.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "trustedClusterOwners": cfg.trust.owners.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "dailyCap": cfg.daily_cap,
            "dailyWeiPerSender": cfg.daily_wei_per_sender.to_string(),
            "dailyWeiPerCluster": cfg.daily_wei_per_cluster.to_string(),
            "gasMarginPct": cfg.bounds.gas_margin_pct,
            "pvgMarginPct": cfg.bounds.pvg_margin_pct,
            "pvgAllowance": cfg.bounds.pvg_allowance.to_string(),
            "feeMultiple": cfg.bounds.fee_multiple,
        }),
    )
}

async fn metrics<C: ChainView>(State(svc): State<Arc<Service<C>>>) -> Response {
    let mut r = (StatusCode::OK, svc.metrics.render()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(attestmesh_metrics::CONTENT_TYPE),
    );
    r
}
