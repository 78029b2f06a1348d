//! The sponsorship policy of DESIGN §10.1: first failure wins, stable reason strings.
//!
//! The checks run in a fixed order and the first one that fails is the answer, so a caller sees
//! one stable reason and operators can alert on it. Chain lookups go through a [`ChainView`] with a
//! provenance cache in front: sender provenance and cluster trust change rarely (a member
//! stays a member), so positive answers are kept for minutes, while negative answers are kept
//! only seconds — a node that just got deployed or allowlisted must not wait long.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock, so the cache TTLs are tested on paused time.
use tokio::time::Instant;

use alloy_primitives::{Address, U256};
use attestmesh_core::userop::UserOperation;

use crate::bounds::{self, GasBounds};
use crate::calls;
use crate::chain::{ChainError, ChainFees, ChainView};
use crate::store::{Ask, Charge, CounterStore, StoreError, day_of};

/// The clusters whose members the operator pays for: listed addresses, or any cluster whose
/// `clusterOwner()` is a listed owner. Empty trusts nothing (and `run` refuses to start so).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSet {
    /// Cluster addresses (`--trusted-cluster`).
    pub clusters: BTreeSet<Address>,
    /// Cluster owners (`--trusted-cluster-owner`), e.g. the operator's Safe.
    pub owners: BTreeSet<Address>,
}

impl TrustSet {
    /// Exactly these clusters.
    pub fn clusters(clusters: impl IntoIterator<Item = Address>) -> Self {
        Self {
            clusters: clusters.into_iter().collect(),
            owners: BTreeSet::new(),
        }
    }

    /// Every cluster owned by one of `owners`.
    pub fn owners(owners: impl IntoIterator<Item = Address>) -> Self {
        Self {
            clusters: BTreeSet::new(),
            owners: owners.into_iter().collect(),
        }
    }

    /// Whether nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && self.owners.is_empty()
    }
}

/// Why an operation is not sponsored. The strings from [`DenyReason::as_str`] are an interface:
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyReason {
    /// The request's ERC-7677 context does not carry the `sponsorshipPolicyId` this sponsor
    /// requires (`--sponsorship-policy-id`). Checked before the policy, by the service.
    SponsorshipPolicyMismatch,
    /// The request's chain id is not the one this sponsor serves.
    ChainIdMismatch,
    /// The request names another EntryPoint than the configured v0.7 one.
    UnsupportedEntryPoint,
    /// The sender is neither a member-factory member nor an allowlisted app id of a trusted cluster.
    SenderNotMember,
    /// `callData` is not `execute(address,uint256,bytes)`.
    NotExecuteCall,
    /// `execute` would send ETH.
    NonzeroValue,
    /// The inner call is not one of the node operations we sponsor.
    InnerSelectorNotAllowed,
    /// `execute` targets something that is not a cluster from the trusted factory.
    TargetNotTrustedCluster,
    /// `execute` targets a trusted cluster, but not the sender's own.
    TargetNotSenderCluster,
    /// The sender's cluster came from the trusted factory but is not one the operator chose: its
    /// address is not in `--trusted-cluster` and its `clusterOwner()` not in
    /// `--trusted-cluster-owner`. The factories are open to anyone, so factory provenance alone
    /// would let anyone with their own KMS root spend the operator's gas.
    ClusterNotInTrustSet,
    /// `callGasLimit` above the bound for the inner call's kind.
    CallGasLimitTooHigh,
    /// `verificationGasLimit` above the bound (bootstrap or registered member, deployment).
    VerificationGasLimitTooHigh,
    /// `paymasterVerificationGasLimit` above what the paymaster's validation needs.
    PaymasterVerificationGasLimitTooHigh,
    /// `paymasterPostOpGasLimit` above the bound (0: `SponsorPaymaster` has no postOp).
    PaymasterPostOpGasLimitTooHigh,
    /// `preVerificationGas` above the bundler calldata rule plus margin and allowance.
    PreVerificationGasTooHigh,
    /// `maxPriorityFeePerGas` above the configured multiple of the chain's priority fee.
    MaxPriorityFeeTooHigh,
    /// `maxFeePerGas` above the configured multiple of the chain's base plus priority fee.
    MaxFeeTooHigh,
    /// A `dstack_register` that the cluster would reject (simulated with `eth_call` from the
    /// sender). Validation of a bootstrap op cannot check the KMS chain, so without this anyone
    /// could deploy fresh members for free and burn the paymaster's deposit on reverting ops.
    RegistrationWouldRevert,
    /// The sender used up its operations for the (UTC) day.
    DailyCapExceeded,
    /// The sender's wei for the day (sum of each op's maximum cost) would exceed its budget.
    DailySenderBudgetExceeded,
    /// The cluster's wei for the day would exceed its budget.
    DailyClusterBudgetExceeded,
}

impl DenyReason {
    /// Every reason, in evaluation order.
    pub const ALL: [DenyReason; 21] = [
        Self::SponsorshipPolicyMismatch,
        Self::ChainIdMismatch,
        Self::UnsupportedEntryPoint,
        Self::SenderNotMember,
        Self::NotExecuteCall,
        Self::NonzeroValue,
        Self::InnerSelectorNotAllowed,
        Self::TargetNotTrustedCluster,
        Self::TargetNotSenderCluster,
        Self::ClusterNotInTrustSet,
        Self::CallGasLimitTooHigh,
        Self::VerificationGasLimitTooHigh,
        Self::PaymasterVerificationGasLimitTooHigh,
        Self::PaymasterPostOpGasLimitTooHigh,
        Self::PreVerificationGasTooHigh,
        Self::MaxPriorityFeeTooHigh,
        Self::MaxFeeTooHigh,
        Self::RegistrationWouldRevert,
        Self::DailyCapExceeded,
        Self::DailySenderBudgetExceeded,
        Self::DailyClusterBudgetExceeded,
    ];

    /// The stable reason string (documented in the crate docs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SponsorshipPolicyMismatch => "sponsorship_policy_mismatch",
            Self::ChainIdMismatch => "chain_id_mismatch",
            Self::UnsupportedEntryPoint => "unsupported_entry_point",
            Self::SenderNotMember => "sender_not_member",
            Self::NotExecuteCall => "not_execute_call",
            Self::NonzeroValue => "nonzero_value",
            Self::InnerSelectorNotAllowed => "inner_selector_not_allowed",
            Self::TargetNotTrustedCluster => "target_not_trusted_cluster",
            Self::TargetNotSenderCluster => "target_not_sender_cluster",
            Self::ClusterNotInTrustSet => "cluster_not_in_trust_set",
            Self::CallGasLimitTooHigh => "call_gas_limit_too_high",
            Self::VerificationGasLimitTooHigh => "verification_gas_limit_too_high",
            Self::PaymasterVerificationGasLimitTooHigh => {
                "paymaster_verification_gas_limit_too_high"
            }
            Self::PaymasterPostOpGasLimitTooHigh => "paymaster_post_op_gas_limit_too_high",
            Self::PreVerificationGasTooHigh => "pre_verification_gas_too_high",
            Self::MaxPriorityFeeTooHigh => "max_priority_fee_too_high",
            Self::MaxFeeTooHigh => "max_fee_too_high",
            Self::RegistrationWouldRevert => "registration_would_revert",
            Self::DailyCapExceeded => "daily_cap_exceeded",
            Self::DailySenderBudgetExceeded => "daily_sender_budget_exceeded",
            Self::DailyClusterBudgetExceeded => "daily_cluster_budget_exceeded",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the sender earned sponsorship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    /// Deployed by our `ClusterMemberFactory`.
    MemberFactory,
    /// A stock dstack app proxy re-initialised as a ClusterMember ("path A") whose app id the
    /// trusted cluster allowlists.
    AllowlistedAppId,
}

/// A sender's provenance: its kind and the cluster it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// How it qualified.
    pub kind: OriginKind,
    /// `IClusterMember(sender).cluster()`.
    pub cluster: Address,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sponsor it.
    Sponsor {
        /// Why the sender qualified.
        origin: Origin,
        /// The inner function (one of the allowlist names).
        inner: &'static str,
        /// The sender's count for today after this decision (charged or not).
        used_today: u32,
        /// Wei this decision newly charged to the budgets (the operation's maximum cost; 0 for
        /// a stub, or an operation already charged): what `/metrics` counts as spend.
        charged_wei: u128,
    },
    /// Do not sponsor it.
    Deny(DenyReason),
}

impl Decision {
    /// The reason string for metrics and webhook answers (`"sponsored"` when sponsored).
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Sponsor { .. } => "sponsored",
            Decision::Deny(r) => r.as_str(),
        }
    }
}

/// A failure to decide (not a denial). Mapped by the HTTP layer: chain → 503, store → 500.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A chain lookup failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The counter database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking database task was cancelled or panicked.
    #[error("counter task failed: {0}")]
    Join(String),
}

/// Static policy settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The chain this sponsor pays on.
    pub chain_id: u64,
    /// The EntryPoint v0.7 the paymaster is bound to.
    pub entry_point: Address,
    /// The trusted `ClusterMemberFactory`.
    pub member_factory: Address,
    /// The trusted `ClusterDiamondFactory`.
    pub cluster_factory: Address,
    /// Operations per sender per UTC day.
    pub daily_cap: u32,
    /// The clusters the operator pays for.
    pub trust: TrustSet,
    /// Gas and fee bounds.
    pub bounds: GasBounds,
    /// Wei (sum of each sponsored op's maximum cost) per sender per UTC day.
    pub daily_wei_per_sender: u128,
    /// Wei per cluster (all its members together) per UTC day.
    pub daily_wei_per_cluster: u128,
    /// How long the chain's fee levels are reused.
    pub fee_ttl: Duration,
    /// How long a positive provenance / cluster answer is reused.
    pub positive_ttl: Duration,
    /// How long a negative answer is reused (short, so new members are not kept waiting).
    pub negative_ttl: Duration,
    /// Cache entries kept before the cache is swept.
    pub cache_capacity: usize,
}

impl PolicyConfig {
    /// Defaults: 10 min positive, 5 s negative, 100 000 cache entries; an empty trust set (set
    /// one with [`PolicyConfig::trusting`]); default [`GasBounds`]; [`DEFAULT_DAILY_WEI_PER_SENDER`]
    /// and [`DEFAULT_DAILY_WEI_PER_CLUSTER`]; fee levels reused for 3 s.
    pub fn new(
        chain_id: u64,
        entry_point: Address,
        member_factory: Address,
        cluster_factory: Address,
        daily_cap: u32,
    ) -> Self {
        Self {
            chain_id,
            entry_point,
            member_factory,
            cluster_factory,
            daily_cap,
            trust: TrustSet::default(),
            bounds: GasBounds::default(),
            daily_wei_per_sender: DEFAULT_DAILY_WEI_PER_SENDER,
            daily_wei_per_cluster: DEFAULT_DAILY_WEI_PER_CLUSTER,
            fee_ttl: Duration::from_secs(3),
            positive_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(5),
            cache_capacity: 100_000,
        }
    }

    /// The same, paying for the clusters in `trust`.
    pub fn trusting(mut self, trust: TrustSet) -> Self {
        self.trust = trust;
        self
    }
}

/// Default wei per sender per day: 0.05 ETH (tens of operations at L1 prices, thousands on Base).
pub const DEFAULT_DAILY_WEI_PER_SENDER: u128 = 50_000_000_000_000_000;
/// Default wei per cluster per day: 1 ETH.
pub const DEFAULT_DAILY_WEI_PER_CLUSTER: u128 = 1_000_000_000_000_000_000;

#[derive(Clone, Copy)]
enum Cached {
    Sender(Option<Origin>),
    Cluster(bool),
}

/// Keys of the provenance cache (one map for both kinds of answer).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum CacheKey {
    Sender(Address),
    Cluster(Address),
    /// Whether the operator's trust set covers this cluster (by address or owner).
    Trusted(Address),
}

/// Positive-long / negative-short TTL cache of provenance answers.
pub struct ProvenanceCache {
    map: Mutex<HashMap<CacheKey, (Cached, Instant)>>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
}

impl ProvenanceCache {
    fn new(positive_ttl: Duration, negative_ttl: Duration, capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            positive_ttl,
            negative_ttl,
            capacity: capacity.max(1),
        }
    }

    fn get(&self, key: CacheKey) -> Option<Cached> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(v, _)| *v)
    }

    fn put(&self, key: CacheKey, value: Cached) {
        let positive = match value {
            Cached::Sender(o) => o.is_some(),
            Cached::Cluster(b) => b,
        };
        let ttl = if positive {
            self.positive_ttl
        } else {
            self.negative_ttl
        };
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.capacity {
                // Still full of live entries: start over rather than track recency. A flood of
                // distinct senders costs some re-lookups, never unbounded memory.
                map.clear();
            }
        }
        map.insert(key, (value, now + ttl));
    }

    /// Forgets everything (tests and the benchmark's cold runs).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Live entries right now.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(_, e)| *e > now)
            .count()
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The policy engine: configuration, chain view with its cache, and the counter store.
pub struct Policy<C> {
    cfg: PolicyConfig,
    chain: C,
    cache: ProvenanceCache,
    store: Arc<CounterStore>,
    fees: Mutex<Option<(ChainFees, Instant)>>,
}

/// Whether a decision consumes one of the sender's daily operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check the cap without consuming (stub data: it may never be submitted).
    Check,
    /// Consume one (final paymaster data, webhook approval).
    Charge,
}

impl<C: ChainView> Policy<C> {
    /// A policy over `chain`, counting in `store`.
    pub fn new(cfg: PolicyConfig, chain: C, store: Arc<CounterStore>) -> Self {
        let cache = ProvenanceCache::new(cfg.positive_ttl, cfg.negative_ttl, cfg.cache_capacity);
        Self {
            cfg,
            chain,
            cache,
            store,
            fees: Mutex::new(None),
        }
    }

    /// Whether the operator's trust set covers `cluster`: listed, or owned by a listed owner
    /// (read from the chain and cached like provenance; an ownership transfer away from the
    /// operator takes effect within the positive TTL).
    pub async fn is_operator_trusted(&self, cluster: Address) -> Result<bool, ChainError> {
        if self.cfg.trust.clusters.contains(&cluster) {
            return Ok(true);
        }
        if self.cfg.trust.owners.is_empty() {
            return Ok(false);
        }
        if let Some(Cached::Cluster(b)) = self.cache.get(CacheKey::Trusted(cluster)) {
            return Ok(b);
        }
        let owner = self.chain.cluster_owner(cluster).await?;
        let b = owner.is_some_and(|o| self.cfg.trust.owners.contains(&o));
        self.cache
            .put(CacheKey::Trusted(cluster), Cached::Cluster(b));
        Ok(b)
    }

    /// The chain's fee levels, reused for `fee_ttl`.
    async fn chain_fees(&self) -> Result<ChainFees, ChainError> {
        if let Some((f, at)) = *self.fees.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < self.cfg.fee_ttl
        {
            return Ok(f);
        }
        let f = self.chain.fees().await?;
        *self.fees.lock().unwrap_or_else(|p| p.into_inner()) = Some((f, Instant::now()));
        Ok(f)
    }

    /// The first gas or fee bound `op` breaks, in the order of [`DenyReason::ALL`].
    async fn check_gas(
        &self,
        op: &UserOperation,
        inner: &'static str,
        inner_len: usize,
    ) -> Result<Option<DenyReason>, ChainError> {
        let b = &self.cfg.bounds;
        if op.call_gas_limit > b.call_gas_limit(inner, inner_len) {
            return Ok(Some(DenyReason::CallGasLimitTooHigh));
        }
        let bootstrap = inner == "dstack_register";
        if op.verification_gas_limit
            > b.verification_gas_limit_for(bootstrap, op.factory.is_some(), op.call_data.len())
        {
            return Ok(Some(DenyReason::VerificationGasLimitTooHigh));
        }
        if op.paymaster_verification_gas_limit > b.paymaster_verification_gas {
            return Ok(Some(DenyReason::PaymasterVerificationGasLimitTooHigh));
        }
        if op.paymaster_post_op_gas_limit > b.paymaster_post_op_gas {
            return Ok(Some(DenyReason::PaymasterPostOpGasLimitTooHigh));
        }
        if op.pre_verification_gas > U256::from(b.pre_verification_gas(op)) {
            return Ok(Some(DenyReason::PreVerificationGasTooHigh));
        }
        if op.max_fee_per_gas == 0 && op.max_priority_fee_per_gas == 0 {
            // A stub request before the wallet priced the operation: nothing to bound yet.
            return Ok(None);
        }
        let fees = self.chain_fees().await?;
        if op.max_priority_fee_per_gas > b.max_priority_fee(fees.priority_fee) {
            return Ok(Some(DenyReason::MaxPriorityFeeTooHigh));
        }
        if op.max_fee_per_gas > b.max_fee(fees.base_fee, fees.priority_fee) {
            return Ok(Some(DenyReason::MaxFeeTooHigh));
        }
        Ok(None)
    }

    /// The settings.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// The provenance cache.
    pub fn cache(&self) -> &ProvenanceCache {
        &self.cache
    }

    /// The counter store.
    pub fn store(&self) -> &Arc<CounterStore> {
        &self.store
    }

    /// The sender's provenance, from the cache or the chain.
    pub async fn origin_of(&self, sender: Address) -> Result<Option<Origin>, ChainError> {
        if let Some(Cached::Sender(o)) = self.cache.get(CacheKey::Sender(sender)) {
            return Ok(o);
        }
        let origin = self.lookup_origin(sender).await?;
        self.cache
            .put(CacheKey::Sender(sender), Cached::Sender(origin));
        Ok(origin)
    }

    async fn lookup_origin(&self, sender: Address) -> Result<Option<Origin>, ChainError> {
        let member = self
            .chain
            .is_our_member(self.cfg.member_factory, sender)
            .await?;
        let Some(cluster) = self.chain.cluster_of(sender).await? else {
            return Ok(None);
        };
        if member {
            return Ok(Some(Origin {
                kind: OriginKind::MemberFactory,
                cluster,
            }));
        }
        if !self.is_trusted_cluster(cluster).await? {
            return Ok(None);
        }
        if self.chain.is_allowed_app_id(cluster, sender).await? {
            return Ok(Some(Origin {
                kind: OriginKind::AllowlistedAppId,
                cluster,
            }));
        }
        Ok(None)
    }

    /// Whether `cluster` was deployed by the trusted cluster factory, from the cache or the chain.
    pub async fn is_trusted_cluster(&self, cluster: Address) -> Result<bool, ChainError> {
        if let Some(Cached::Cluster(b)) = self.cache.get(CacheKey::Cluster(cluster)) {
            return Ok(b);
        }
        let b = self
            .chain
            .is_deployed_cluster(self.cfg.cluster_factory, cluster)
            .await?;
        self.cache
            .put(CacheKey::Cluster(cluster), Cached::Cluster(b));
        Ok(b)
    }

    /// Decides on `op` as submitted to `entry_point` on `chain_id` at `now_unix` (seconds).
    /// The order of checks is the order of [`DenyReason::ALL`]; the first failure is returned.
    pub async fn decide(
        &self,
        op: &UserOperation,
        entry_point: Address,
        chain_id: u64,
        now_unix: u64,
        mode: Mode,
    ) -> Result<Decision, PolicyError> {
        if chain_id != self.cfg.chain_id {
            return Ok(Decision::Deny(DenyReason::ChainIdMismatch));
        }
        if entry_point != self.cfg.entry_point {
            return Ok(Decision::Deny(DenyReason::UnsupportedEntryPoint));
        }
        let Some(origin) = self.origin_of(op.sender).await? else {
            return Ok(Decision::Deny(DenyReason::SenderNotMember));
        };
        let Some(outer) = calls::decode_execute(&op.call_data) else {
            return Ok(Decision::Deny(DenyReason::NotExecuteCall));
        };
        if outer.value != U256::ZERO {
            return Ok(Decision::Deny(DenyReason::NonzeroValue));
        }
        let Some(inner) = calls::allowed_inner(&outer.data) else {
            return Ok(Decision::Deny(DenyReason::InnerSelectorNotAllowed));
        };
        if !self.is_trusted_cluster(outer.target).await? {
            return Ok(Decision::Deny(DenyReason::TargetNotTrustedCluster));
        }
        if outer.target != origin.cluster {
            return Ok(Decision::Deny(DenyReason::TargetNotSenderCluster));
        }
        if !self.is_operator_trusted(origin.cluster).await? {
            return Ok(Decision::Deny(DenyReason::ClusterNotInTrustSet));
        }
        if let Some(r) = self.check_gas(op, inner, outer.data.len()).await? {
            return Ok(Decision::Deny(r));
        }
        if inner == "dstack_register"
            && !self
                .chain
                .call_succeeds(op.sender, outer.target, &outer.data)
                .await?
        {
            return Ok(Decision::Deny(DenyReason::RegistrationWouldRevert));
        }
        let ask = Ask {
            sender: op.sender,
            cluster: origin.cluster,
            nonce: op.nonce,
            day: day_of(now_unix),
            cap: self.cfg.daily_cap,
            cost: bounds::max_cost(op),
            sender_budget: self.cfg.daily_wei_per_sender,
            cluster_budget: self.cfg.daily_wei_per_cluster,
        };
        let cost = ask.cost;
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || store.charge(&ask, mode == Mode::Charge))
            .await
            .map_err(|e| PolicyError::Join(e.to_string()))??;
        Ok(match outcome {
            Charge::Charged(used_today) => Decision::Sponsor {
                origin,
                inner,
                used_today,
                charged_wei: cost,
            },
            Charge::AlreadyCharged(used_today) | Charge::Allowed(used_today) => Decision::Sponsor {
                origin,
                inner,
                used_today,
                charged_wei: 0,
            },
            Charge::CapReached(_) => Decision::Deny(DenyReason::DailyCapExceeded),
            Charge::SenderBudget => Decision::Deny(DenyReason::DailySenderBudgetExceeded),
            Charge::ClusterBudget => Decision::Deny(DenyReason::DailyClusterBudgetExceeded),
        })
    }
}
