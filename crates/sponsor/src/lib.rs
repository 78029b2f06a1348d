//! Sponsorship policy and the ERC-7677 paymaster service (`attestmesh sponsor`, DESIGN §10.1).
//!
//! Nodes hold no ETH; every state change they make is an ERC-4337 v0.7 UserOperation paid by our
//! `SponsorPaymaster`, which accepts an operation only with this service's signature. The service
//! decides *whether* to sign with one policy, reachable two ways:
//!
//! * **ERC-7677** JSON-RPC on `POST /` (also `/rpc`): `pm_getPaymasterStubData` (policy check,
//!   nothing charged, a dummy signature of the final shape, `isFinal: false`) and
//!   `pm_getPaymasterData` (policy check, one daily operation and its wei charged, real
//!   signature), both with params `[userOp, entryPoint, chainId, context]`, the v0.7 userOp given unpacked; plus
//!   `pm_supportedEntryPoints`.
//! * **Hosted-paymaster webhook** on `POST /webhook` (Standard Webhooks signatures), so an
//!   operator can keep a hosted paymaster and still apply this policy.
//!
//! Sponsorship is a policy gate for the operator's gas, not a security boundary (DESIGN §1) —
//! but the gate must hold: only clusters the operator chose, only the gas an operation needs,
//! at most a daily wei budget, and a per-client rate limit on the JSON-RPC endpoint. A signer
//! key file that group or others can read is refused at startup.
//!
//! # Policy: first failure wins
//!
//! Checks run in this order; the first that fails is the answer. The reason strings are an
//! interface (metrics labels, webhook answers, JSON-RPC `error.data.reason`) and never change.
//!
//! | # | check | reason string |
//! |---|-------|---------------|
//! | 0 | only with `--sponsorship-policy-id` (ERC-7677 requests; checked by the service before the policy): the request's `context.sponsorshipPolicyId` is that id, as a hosted paymaster's policy would demand | `sponsorship_policy_mismatch` |
//! | 1 | request `chainId` is the configured chain | `chain_id_mismatch` |
//! | 2 | request `entryPoint` is the configured EntryPoint v0.7 | `unsupported_entry_point` |
//! | 3 | sender is a `ClusterMemberFactory` member (`isOurMember`), or its `cluster()` came from the trusted `ClusterDiamondFactory` (`isDeployedCluster`) and allowlists it (`allowedAppIds`) | `sender_not_member` |
//! | 4 | `callData` is `execute(address,uint256,bytes)` | `not_execute_call` |
//! | 5 | `execute` value is 0 | `nonzero_value` |
//! | 6 | inner selector is `dstack_register`, `send`, `setCskCommitment` or `publishWgKey` | `inner_selector_not_allowed` |
//! | 7 | `execute` target is a cluster from the trusted factory | `target_not_trusted_cluster` |
//! | 8 | … and it is the sender's own cluster | `target_not_sender_cluster` |
//! | 9 | … and the operator chose it: listed in `--trusted-cluster`, or its `clusterOwner()` is in `--trusted-cluster-owner` (the factories are open to anyone) | `cluster_not_in_trust_set` |
//! | 10 | `callGasLimit` ≤ the measured execution gas of the inner call's kind (+ margin; `send` also per byte) | `call_gas_limit_too_high` |
//! | 11 | `verificationGasLimit` ≤ the measured bootstrap or registered validation (+ deployment when `factory` is set, + per `callData` byte, + margin) | `verification_gas_limit_too_high` |
//! | 12 | `paymasterVerificationGasLimit` ≤ 100 000 | `paymaster_verification_gas_limit_too_high` |
//! | 13 | `paymasterPostOpGasLimit` ≤ 0 (`SponsorPaymaster` has no postOp) | `paymaster_post_op_gas_limit_too_high` |
//! | 14 | `preVerificationGas` ≤ the bundler calldata rule × (1 + PVG margin) + PVG allowance | `pre_verification_gas_too_high` |
//! | 15 | `maxPriorityFeePerGas` ≤ fee multiple × the chain's priority fee | `max_priority_fee_too_high` |
//! | 16 | `maxFeePerGas` ≤ fee multiple × (base fee + priority fee) | `max_fee_too_high` |
//! | 17 | a `dstack_register` would succeed (`eth_call` from the sender): validation cannot check the KMS chain, so this stops free fresh members from burning the deposit on reverting bootstraps | `registration_would_revert` |
//! | 18 | sender is under its daily cap (UTC day; persisted; one charge per `(sender, nonce)`) | `daily_cap_exceeded` |
//! | 19 | the sender's wei today plus this op's maximum cost (five gas values × `maxFeePerGas`) is within its daily wei budget (persisted; a re-sign of a nonce pays only the difference) | `daily_sender_budget_exceeded` |
//! | 20 | … and within its cluster's daily wei budget | `daily_cluster_budget_exceeded` |
//!
//! The gas figures, margins and defaults are in [`bounds`]; they are checked against the real
//! contracts by `tests/gas.rs`. Stub requests carry no gas values yet (zero passes every bound)
//! and are judged again, with their values, by `pm_getPaymasterData`. The policy judges the
//! operation as it will be signed (our paymaster fields filled in).
//!
//! A sponsored decision is labelled `sponsored` in metrics and webhook answers.
//!
//! # Errors
//!
//! | condition | HTTP | JSON-RPC code |
//! |---|---|---|
//! | body is not JSON | 400 | -32700 |
//! | not a JSON-RPC 2.0 request object | 400 | -32600 |
//! | unknown method | 200 | -32601 |
//! | bad params / malformed userOp (message and `data.field` name the field) | 400 | -32602 |
//! | denied by the policy (`data.reason`) | 200 | -32003 (EIP-1474 "transaction rejected") |
//! | denied: `daily_cap_exceeded`, `daily_sender_budget_exceeded`, `daily_cluster_budget_exceeded` | 200 | -32005 (EIP-1474 "limit exceeded") |
//! | over the client's rate limit (per remote IP; `data.reason` `rate_limited`, `Retry-After: 1`) | 429 | -32005 |
//! | chain RPC unreachable / failing (retry) | 503 | -32002 (EIP-1474 "resource unavailable") |
//! | counter database or signing failure | 500 | -32603 |
//!
//! # Webhook
//!
//! `POST /webhook` with headers `webhook-id`, `webhook-timestamp`, `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, secret `whsec_<base64>`,
//! timestamp within ±5 min). Body (the shape hosted paymasters send):
//!
//! ```json
//! {"type": "user_operation.sponsorship.requested",
//!  "data": {"object": {"userOperation": {…v0.7 unpacked…}, "entryPoint": "0x…", "chainId": 8453}}}
//! ```
//!
//! (`"sponsorshipPolicy.webhook"` is accepted as the older name of the same type.) Answer, HTTP 200:
//! `{"sponsor": true, "reason": "sponsored"}` or `{"sponsor": false, "reason": "<reason string>"}`.
//! An approval charges the daily counter; a redelivery with the same `webhook-id` gets the same
//! answer without a second charge. `user_operation.sponsorship.finalized` is acknowledged with
//! `{"received": true}`. Bad or missing signature headers, or a stale timestamp → 401
//! `{"error": …}`; malformed payload → 400 naming the field; chain unreachable → 503; no secret
//! configured → 404.
//!
//! `GET /healthz` answers 200 with the configuration in JSON; `GET /metrics` serves Prometheus
//! text (`attestmesh_sponsor_decisions_total{method,reason}`,
//! `attestmesh_sponsor_request_errors_total{endpoint,kind}`, `attestmesh_sponsor_decision_seconds`).

pub mod bounds;
pub mod calls;
pub mod chain;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod server;
pub mod signer;
pub mod store;
pub mod webhook;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;

pub use bounds::GasBounds;
pub use chain::{ChainError, ChainView, RpcChainView};
pub use policy::{Decision, DenyReason, Mode, Origin, OriginKind, Policy, PolicyConfig, TrustSet};
pub use ratelimit::RateLimit;
pub use server::{Service, ServiceConfig, router, serve};
pub use signer::SponsorSigner;
pub use store::CounterStore;
pub use webhook::WebhookSecret;

/// Everything `attestmesh sponsor` is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Chain JSON-RPC endpoint (`http://` or `https://`).
    pub rpc_url: String,
    /// Chain id served; checked against the RPC's `eth_chainId` at startup.
    pub chain_id: u64,
    /// EntryPoint v0.7.
    pub entry_point: Address,
    /// `SponsorPaymaster`.
    pub paymaster: Address,
    /// Trusted `ClusterMemberFactory`.
    pub member_factory: Address,
    /// Trusted `ClusterDiamondFactory`.
    pub cluster_factory: Address,
    /// File holding the sponsor signer's hex private key.
    pub signer_key_file: PathBuf,
    /// The counter database file.
    pub db_path: PathBuf,
    /// Operations per sender per UTC day.
    pub daily_cap: u32,
    /// The clusters the operator pays for; empty is a startup error.
    pub trust: TrustSet,
    /// Gas and fee bounds.
    pub bounds: GasBounds,
    /// Wei per sender per UTC day.
    pub daily_wei_per_sender: u128,
    /// Wei per cluster per UTC day.
    pub daily_wei_per_cluster: u128,
    /// Per-client-IP rate limit of the JSON-RPC endpoint.
    pub rate_limit: RateLimit,
    /// File holding the `whsec_…` webhook secret; `None` disables `/webhook`.
    pub webhook_secret_file: Option<PathBuf>,
    /// Per-request timeout towards the chain RPC.
    pub rpc_timeout: Duration,
    /// The ERC-7677 `context.sponsorshipPolicyId` every JSON-RPC request must carry; `None`
    /// accepts any context (see [`server::ServiceConfig::sponsorship_policy_id`]).
    pub sponsorship_policy_id: Option<String>,
}

/// A startup failure, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No cluster and no cluster owner to pay for. The factories are open to anyone, so
    /// "every factory cluster" would pay for strangers' clusters: there is no such default.
    #[error(
        "no trusted clusters: set --trusted-cluster (SPONSOR_TRUSTED_CLUSTERS) and/or --trusted-cluster-owner (SPONSOR_TRUSTED_CLUSTER_OWNERS)"
    )]
    NoTrustSet,
    /// The signer key file is unreadable or malformed.
    #[error("--signer-key-file: {0}")]
    SignerKey(#[from] signer::SignerError),
    /// The webhook secret file is unreadable or malformed.
    #[error("--webhook-secret-file {path}: {source}")]
    WebhookSecret {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The counter database could not be opened.
    #[error("--db-path {path}: {source}")]
    Db {
        /// The file.
        path: String,
        /// What went wrong.
        source: store::StoreError,
    },
    /// The RPC URL is unusable or the node cannot be reached.
    #[error("--rpc-url: {0}")]
    Rpc(ChainError),
    /// The RPC serves another chain.
    #[error("--chain-id {configured} does not match the RPC's eth_chainId {actual}")]
    ChainIdMismatch {
        /// What we were told.
        configured: u64,
        /// What the node says.
        actual: u64,
    },
    /// The listen address cannot be bound.
    #[error("--listen {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Loads keys, opens the database, checks the RPC, then serves until `shutdown` resolves.
/// `on_ready` gets the bound address (useful with port 0).
pub async fn run(
    s: Settings,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if s.trust.is_empty() {
        return Err(StartError::NoTrustSet);
    }
    let signer = SponsorSigner::from_file(&s.signer_key_file)?;
    let webhook = match &s.webhook_secret_file {
        Some(p) => {
            Some(
                WebhookSecret::from_file(p).map_err(|source| StartError::WebhookSecret {
                    path: p.display().to_string(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let store = CounterStore::open(&s.db_path).map_err(|source| StartError::Db {
        path: s.db_path.display().to_string(),
        source,
    })?;
    let now_day = store::day_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let pruned = store
        .prune_before(now_day.saturating_sub(1))
        .map_err(|source| StartError::Db {
            path: s.db_path.display().to_string(),
            source,
        })?;

    let rpc = attestmesh_chain::rpc::RpcClient::new(&s.rpc_url)
        .map_err(|e| StartError::Rpc(e.into()))?
        .with_timeout(s.rpc_timeout);
    let actual = rpc
        .chain_id()
        .await
        .map_err(|e| StartError::Rpc(e.into()))?;
    if actual != s.chain_id {
        return Err(StartError::ChainIdMismatch {
            configured: s.chain_id,
            actual,
        });
    }

    let mut cfg = PolicyConfig::new(
        s.chain_id,
        s.entry_point,
        s.member_factory,
        s.cluster_factory,
        s.daily_cap,
    )
    .trusting(s.trust.clone());
    cfg.bounds = s.bounds.clone();
    cfg.daily_wei_per_sender = s.daily_wei_per_sender;
    cfg.daily_wei_per_cluster = s.daily_wei_per_cluster;
    let mut service_cfg = ServiceConfig::new(s.paymaster);
    service_cfg.sponsorship_policy_id = s.sponsorship_policy_id.clone();
    // What the service asks for itself never exceeds what the policy lets it sign.
    service_cfg.verification_gas_limit = service_cfg
        .verification_gas_limit
        .min(s.bounds.paymaster_verification_gas);
    service_cfg.post_op_gas_limit = service_cfg
        .post_op_gas_limit
        .min(s.bounds.paymaster_post_op_gas);
    let policy = Policy::new(cfg, RpcChainView::new(rpc), Arc::new(store));
    let service = Arc::new(
        Service::new(policy, signer, webhook, service_cfg).with_rate_limit(Some(s.rate_limit)),
    );
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: s.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: s.listen,
        source,
    })?;
    tracing::info!(
        %addr,
        chain_id = s.chain_id,
        paymaster = %s.paymaster,
        signer = %service.signer_address(),
        trusted_clusters = s.trust.clusters.len(),
        trusted_owners = s.trust.owners.len(),
        pruned_rows = pruned,
        "sponsor service listening"
    );
    on_ready(addr);
    serve(listener, service, shutdown)
        .await
        .map_err(StartError::Serve)
}
