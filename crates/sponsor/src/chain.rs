//! What the policy needs to know from the chain, behind [`ChainView`], and the real
//! implementation: `eth_call` through the workspace's JSON-RPC client
//! ([`attestmesh_chain::rpc::RpcClient`], http and https) in [`RpcChainView`].

use std::future::Future;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::IAttestFacet::clusterOwnerCall;
use attestmesh_chain::bindings::IClusterDiamondFactory::isDeployedClusterCall;
use attestmesh_chain::bindings::IClusterMember::clusterCall;
use attestmesh_chain::bindings::IClusterMemberFactory::isOurMemberCall;
use attestmesh_chain::bindings::IDstackFacet::allowedAppIdsCall;
use attestmesh_chain::read::{BlockTag, ViewError, view};
use attestmesh_chain::rpc::{RpcClient, RpcError};

/// The chain's current fee levels, which bound the fees the sponsor signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFees {
    /// `baseFeePerGas` of the latest block (0 without EIP-1559).
    pub base_fee: u128,
    /// `eth_maxPriorityFeePerGas`.
    pub priority_fee: u128,
}

/// A chain read that could not be answered. Never a policy denial: the request fails with
/// HTTP 503 / JSON-RPC -32003 so the caller retries, rather than being told "no" for good.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Connection refused, reset, DNS, TLS…
    #[error("chain RPC transport error: {0}")]
    Transport(String),
    /// No answer within the configured timeout.
    #[error("chain RPC timed out after {0:?}")]
    Timeout(Duration),
    /// A non-2xx HTTP status from the RPC endpoint.
    #[error("chain RPC answered HTTP {0}")]
    Http(u16),
    /// The node answered with a JSON-RPC error that is not a revert.
    #[error("chain RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer was not the JSON-RPC shape we asked for.
    #[error("chain RPC answered malformed data: {0}")]
    Malformed(String),
}

/// Raw chain lookups the policy makes. Reverts and empty returns (no code at the address) count
/// as "no", because that is what they mean for provenance; only transport-level failures are
/// errors. Implemented for real by [`RpcChainView`] and in memory by tests.
pub trait ChainView: Send + Sync + 'static {
    /// `ClusterMemberFactory(factory).isOurMember(member)`.
    fn is_our_member(
        &self,
        factory: Address,
        member: Address,
    ) -> impl Future<Output = Result<bool, ChainError>> + Send;
    /// `IClusterMember(member).cluster()`, `None` when the call reverts or `member` has no code.
    fn cluster_of(
        &self,
        member: Address,
    ) -> impl Future<Output = Result<Option<Address>, ChainError>> + Send;
    /// `ClusterDiamondFactory(factory).isDeployedCluster(cluster)`.
    fn is_deployed_cluster(
        &self,
        factory: Address,
        cluster: Address,
    ) -> impl Future<Output = Result<bool, ChainError>> + Send;
    /// Whether `to.call(data)` from `from` would succeed now (`eth_call` at `latest`): the
    /// policy simulates a registration before paying for it.
    fn call_succeeds(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> impl Future<Output = Result<bool, ChainError>> + Send;
    /// `IDstackFacet(cluster).allowedAppIds(app_id)`.
    fn is_allowed_app_id(
        &self,
        cluster: Address,
        app_id: Address,
    ) -> impl Future<Output = Result<bool, ChainError>> + Send;
    /// `IAttestFacet(cluster).clusterOwner()`, `None` when the call reverts or returns nothing.
    fn cluster_owner(
        &self,
        cluster: Address,
    ) -> impl Future<Output = Result<Option<Address>, ChainError>> + Send;
    /// The latest base fee and the node's suggested priority fee.
    fn fees(&self) -> impl Future<Output = Result<ChainFees, ChainError>> + Send;
}

impl From<RpcError> for ChainError {
    /// Keeps the policy's four-way view of a failed read (transport, timeout, HTTP status,
    /// JSON-RPC error) and never echoes the RPC URL, whose path may hold an API key.
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::BadUrl(_) => ChainError::Transport(
                "bad RPC URL: not of the form http(s)://host[:port][/path]".into(),
            ),
            RpcError::Connect { .. } | RpcError::Http { .. } => {
                ChainError::Transport(e.to_string())
            }
            RpcError::Timeout { after, .. } => ChainError::Timeout(after),
            RpcError::Status { status, .. } => ChainError::Http(status),
            RpcError::Malformed { detail, .. } => ChainError::Malformed(detail),
            RpcError::Rpc { code, message, .. } => ChainError::Rpc { code, message },
            // Transaction outcomes: a view call never produces them.
            RpcError::Reverted { .. } | RpcError::NotMined(..) => {
                ChainError::Malformed(e.to_string())
            }
        }
    }
}

/// [`ChainView`] over `eth_call`.
#[derive(Clone)]
pub struct RpcChainView {
    rpc: RpcClient,
}

impl RpcChainView {
    /// A view reading through `rpc`.
    pub fn new(rpc: RpcClient) -> Self {
        Self { rpc }
    }

    /// The underlying client (e.g. to ask `eth_chainId` at startup).
    pub fn client(&self) -> &RpcClient {
        &self.rpc
    }

    /// `eth_call` at `latest` as `from` (when given); `Ok(None)` when the call reverted, which
    /// for provenance means "no", never "try again".
    async fn eth_call_from(
        &self,
        from: Option<Address>,
        to: Address,
        data: &[u8],
    ) -> Result<Option<Bytes>, ChainError> {
        match self.rpc.eth_call_value(from, to, U256::ZERO, data).await {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.is_revert() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Calls a `returns (bool)` / `returns (address)` view; reverts and undecodable returns
    /// (no code at `to`, a different contract) are `None`.
    async fn call<C: SolCall>(
        &self,
        to: Address,
        call: C,
    ) -> Result<Option<C::Return>, ChainError> {
        match view(&self.rpc, to, call, BlockTag::Latest).await {
            Ok(r) => Ok(Some(r)),
            Err(ViewError::Rpc { source, .. }) if !source.is_revert() => Err((*source).into()),
            Err(_) => Ok(None),
        }
    }
}

impl ChainView for RpcChainView {
    async fn is_our_member(&self, factory: Address, member: Address) -> Result<bool, ChainError> {
        Ok(self
            .call(factory, isOurMemberCall { member })
            .await?
            .unwrap_or(false))
    }

    async fn cluster_of(&self, member: Address) -> Result<Option<Address>, ChainError> {
        Ok(self
            .call(member, clusterCall {})
            .await?
            .filter(|a| !a.is_zero()))
    }

    async fn is_deployed_cluster(
        &self,
        factory: Address,
        cluster: Address,
    ) -> Result<bool, ChainError> {
        Ok(self
            .call(factory, isDeployedClusterCall { cluster })
            .await?
            .unwrap_or(false))
    }

    async fn call_succeeds(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<bool, ChainError> {
        Ok(self.eth_call_from(Some(from), to, data).await?.is_some())
    }

    async fn is_allowed_app_id(
        &self,
        cluster: Address,
        app_id: Address,
    ) -> Result<bool, ChainError> {
        Ok(self
            .call(cluster, allowedAppIdsCall { appId: app_id })
            .await?
            .unwrap_or(false))
    }

    async fn cluster_owner(&self, cluster: Address) -> Result<Option<Address>, ChainError> {
        Ok(self
            .call(cluster, clusterOwnerCall {})
            .await?
            .filter(|a| !a.is_zero()))
    }

    async fn fees(&self) -> Result<ChainFees, ChainError> {
        Ok(ChainFees {
            base_fee: self.rpc.base_fee().await?,
            priority_fee: self.rpc.max_priority_fee().await?,
        })
    }
}
