//! What the policy needs to know from the chain, behind [`ChainView`], and the real
//! implementation: `eth_call` over a small JSON-RPC client ([`RpcChainView`]).
//!
//! The sponsor only ever reads four view functions, so a full provider stack would be dead weight;
//! a hand-written JSON-RPC client over hyper (HTTP/1.1, TLS via rustls for `https://` endpoints)
//! is all it takes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, Bytes};
use alloy_sol_types::SolCall;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes as HyperBytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::calls::{allowedAppIdsCall, clusterCall, isDeployedClusterCall, isOurMemberCall};
use crate::wire;

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
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A minimal JSON-RPC 2.0 client over HTTP(S)/1.1.
#[derive(Clone)]
pub struct JsonRpcClient {
    client: Client<HttpsConnector, Full<HyperBytes>>,
    uri: hyper::Uri,
    timeout: Duration,
    next_id: std::sync::Arc<AtomicU64>,
}

/// Upper bound on an RPC answer we are willing to buffer (view calls return a few words).
const MAX_RPC_RESPONSE: usize = 1 << 20;

impl JsonRpcClient {
    /// A client for `url` (`http://` or `https://`); fails on a URL hyper cannot use.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ChainError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| ChainError::Transport(format!("bad RPC URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(ChainError::Transport(
                    "RPC URL must be http:// or https://".into(),
                ));
            }
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ChainError::Transport(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            uri,
            timeout,
            next_id: std::sync::Arc::new(AtomicU64::new(1)),
        })
    }

    /// Sends one request and returns its `result`, or the JSON-RPC error as [`ChainError::Rpc`].
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let req = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(HyperBytes::from(body)))
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ChainError::Transport(e.to_string()))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RPC_RESPONSE)
                .collect()
                .await
                .map_err(|e| ChainError::Transport(e.to_string()))?
                .to_bytes();
            Ok::<_, ChainError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ChainError::Timeout(self.timeout))??;
        if !status.is_success() {
            return Err(ChainError::Http(status.as_u16()));
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| ChainError::Malformed(e.to_string()))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(ChainError::Rpc {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| ChainError::Malformed("no result".into()))
    }

    /// `eth_call` at `latest`; `Ok(None)` when the call reverted.
    pub async fn eth_call(&self, to: Address, data: &[u8]) -> Result<Option<Bytes>, ChainError> {
        self.eth_call_from(None, to, data).await
    }

    /// `eth_call` at `latest` as `from` (when given); `Ok(None)` when the call reverted.
    pub async fn eth_call_from(
        &self,
        from: Option<Address>,
        to: Address,
        data: &[u8],
    ) -> Result<Option<Bytes>, ChainError> {
        let mut call = json!({"to": to.to_string(), "data": wire::hex_bytes(data)});
        if let Some(from) = from {
            call["from"] = json!(from.to_string());
        }
        let params = json!([call, "latest"]);
        match self.request("eth_call", params).await {
            Ok(v) => wire::bytes("result", &v)
                .map(Some)
                .map_err(|e| ChainError::Malformed(e.to_string())),
            Err(ChainError::Rpc { code, message }) if is_revert(code, &message) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Geth/anvil/reth answer a revert with code 3 (with data) or -32000/-32015 "execution reverted".
fn is_revert(code: i64, message: &str) -> bool {
    code == 3 || message.to_ascii_lowercase().contains("revert")
}

/// [`ChainView`] over `eth_call`.
#[derive(Clone)]
pub struct RpcChainView {
    rpc: JsonRpcClient,
}

impl RpcChainView {
    /// A view reading through `rpc`.
    pub fn new(rpc: JsonRpcClient) -> Self {
        Self { rpc }
    }

    /// The underlying client (e.g. to ask `eth_chainId` at startup).
    pub fn client(&self) -> &JsonRpcClient {
        &self.rpc
    }

    /// Calls a `returns (bool)` / `returns (address)` view; reverts and undecodable returns
    /// (no code at `to`, a different contract) are `None`.
    async fn call<C: SolCall>(
        &self,
        to: Address,
        call: C,
    ) -> Result<Option<C::Return>, ChainError> {
        let Some(ret) = self.rpc.eth_call(to, &call.abi_encode()).await? else {
            return Ok(None);
        };
        Ok(C::abi_decode_returns(&ret).ok())
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
        Ok(self
            .rpc
            .eth_call_from(Some(from), to, data)
            .await?
            .is_some())
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
}
