//! The workspace's one Ethereum JSON-RPC client, over HTTP/1.1 or HTTPS (rustls with the ring
//! provider, Mozilla's roots from `webpki-roots`: no system store is needed in a slim container,
//! and production Base / Base Sepolia endpoints are `https://` only).
//!
//! Connections are pooled and kept alive: over TLS a fresh connection per call would cost a
//! handshake (two round trips and an ECDHE) on every poll of the head. Errors are typed
//! ([`RpcError`]) so callers can tell a transient outage from a revert.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use bytes::Bytes as RawBytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// How long a kept-alive connection may sit idle before it is dropped rather than reused. Below
/// Node.js's default 5 s keep-alive (bundlers, many RPC proxies): reusing a connection the server
/// is closing at that instant fails the request with no way to retry it safely.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("RPC URL {0:?} is not of the form http(s)://host[:port][/path]")]
    BadUrl(String),
    /// TCP connect, DNS or TLS handshake (including an untrusted certificate) failed.
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("RPC {method} timed out after {after:?}")]
    Timeout { method: String, after: Duration },
    /// The connection broke during the HTTP exchange.
    #[error("HTTP exchange failed on {method}: {detail}")]
    Http { method: String, detail: String },
    #[error("RPC {method} answered HTTP {status}")]
    Status { method: String, status: u16 },
    #[error("RPC {method} answer is not JSON-RPC: {detail}")]
    Malformed { method: String, detail: String },
    #[error("RPC {method} failed ({code}): {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
        /// Revert data, when the node returned it.
        data: Option<Bytes>,
        /// The error's `data` member exactly as sent (ERC-7677 paymasters put their deny reason
        /// there, bundlers sometimes a structured object), for callers that need more than bytes.
        detail: Option<Box<Value>>,
    },
    #[error("transaction {tx} reverted{}", .data.as_ref().map(|d| format!(" with data {d}")).unwrap_or_default())]
    Reverted {
        tx: B256,
        /// Revert data recovered by replaying the call on the parent block, when available.
        data: Option<Bytes>,
    },
    #[error("transaction {0} was not mined within {1:?}")]
    NotMined(B256, Duration),
}

impl RpcError {
    /// Whether retrying the same request later can succeed: the endpoint was unreachable, slow,
    /// answered with a server-side HTTP status or a garbled body, or said "resource unavailable"
    /// (EIP-1474 -32002) / "internal error" (-32603). Everything else (a JSON-RPC error about the
    /// request itself, a revert) is permanent: repeating it only burns time.
    pub fn is_transient(&self) -> bool {
        match self {
            RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::Http { .. } => true,
            RpcError::Status { status, .. } => *status >= 500 || *status == 429,
            RpcError::Malformed { .. } => true,
            RpcError::Rpc { code, .. } => matches!(code, -32002 | -32603),
            RpcError::BadUrl(_) | RpcError::Reverted { .. } | RpcError::NotMined(..) => false,
        }
    }

    /// Whether an `eth_getLogs` was refused because its answer would be too large (too many
    /// results, too many bytes, or a block range over the provider's cap): the same query over a
    /// smaller range can succeed. The one place that knows what providers say:
    ///
    /// | provider | code | message |
    /// |---|---|---|
    /// | geth, Infura, Linea | -32005 (older geth -32000) | `query returned more than 10000 results` |
    /// | Infura (range cap) | -32602 | `range 1000000 exceeds limit of 10000` |
    /// | Alchemy | -32602 | `Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range…` |
    /// | Alchemy (free tier) | -32600 | `You can make eth_getLogs requests with up to a 500 block range…` |
    /// | QuickNode | -32614 (HTTP 413) | `eth_getLogs is limited to a 10,000 range` |
    /// | Base (reth / op-reth) | -32602 | `query exceeds max results 20000, retry with the range A-B` |
    /// | Erigon, other geth forks | -32000 | `block range is larger than max block range…`, `block range too high` |
    /// | Tenderly | -32602 | data `range N is bigger than range limit 2000` |
    ///
    /// anvil has no such limit. A bare HTTP 413 (no JSON-RPC body) counts too. Matching needs
    /// both a code providers use for it and a message phrase, so a rate limit (also -32005 on
    /// Infura: "daily request count exceeded") is not mistaken for it.
    pub fn is_range_too_large(&self) -> bool {
        const CODES: &[i64] = &[-32000, -32005, -32600, -32602, -32614];
        const PHRASES: &[&str] = &[
            "returned more than",
            "exceeds max results",
            "too many results",
            "too many logs",
            "response size exceeded",
            "response size too large",
            "response too large",
            "exceeds limit of",
            "is limited to a",
            "with up to a",
            "max block range",
            "block range too",
            "block range is larger",
            "block range is bigger",
            "range limit",
            "retry with the range",
        ];
        match self {
            RpcError::Status { status, .. } => *status == 413,
            RpcError::Rpc {
                code,
                message,
                detail,
                ..
            } if CODES.contains(code) => {
                let mut text = message.to_ascii_lowercase();
                if let Some(d) = detail {
                    text.push(' ');
                    text.push_str(&d.to_string().to_ascii_lowercase());
                }
                PHRASES.iter().any(|p| text.contains(p))
            }
            _ => false,
        }
    }

    /// Whether the node said the call reverts (as opposed to not answering): geth, reth and
    /// anvil answer code 3 with data, or -32000/-32015 "execution reverted" without.
    pub fn is_revert(&self) -> bool {
        match self {
            RpcError::Rpc {
                code,
                message,
                data,
                ..
            } => *code == 3 || data.is_some() || message.to_ascii_lowercase().contains("revert"),
            RpcError::Reverted { .. } => true,
            _ => false,
        }
    }

    /// Revert data carried by a failed `eth_call`/`eth_estimateGas` or a reverted transaction.
    pub fn revert_data(&self) -> Option<&Bytes> {
        match self {
            RpcError::Rpc { data, .. } | RpcError::Reverted { data, .. } => data.as_ref(),
            _ => None,
        }
    }

    /// The 4-byte custom-error selector of a revert, if this error carries revert data.
    pub fn revert_selector(&self) -> Option<[u8; 4]> {
        match self.revert_data() {
            Some(d) if d.len() >= 4 => Some([d[0], d[1], d[2], d[3]]),
            _ => None,
        }
    }
}

/// Runs `fetch` over the blocks `[from, to]`, halving any sub-range whose error `too_large`
/// recognises (normally [`RpcError::is_range_too_large`]) down to single blocks, so one busy
/// stretch of the chain shrinks only its own requests; the next call starts at full size again.
/// Results are concatenated in block order; a failed attempt contributes nothing, so nothing is
/// duplicated. Errors other than "too large", or "too large" for a single block, are returned.
pub async fn fetch_halving<T, E, F, Fut>(
    from: u64,
    to: u64,
    too_large: impl Fn(&E) -> bool,
    mut fetch: F,
) -> Result<Vec<T>, E>
where
    F: FnMut(u64, u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
{
    let mut out = Vec::new();
    // A stack of ranges still to read, the earliest on top.
    let mut pending = vec![(from, to)];
    while let Some((f, t)) = pending.pop() {
        match fetch(f, t).await {
            Ok(mut part) => out.append(&mut part),
            Err(e) if f < t && too_large(&e) => {
                let mid = f + (t - f) / 2;
                pending.push((mid + 1, t));
                pending.push((f, mid));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A mined transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx_hash: B256,
    pub success: bool,
    pub block_number: u64,
    pub contract_address: Option<Address>,
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// JSON-RPC client for one endpoint. Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct RpcClient {
    client: Client<Connector, Full<RawBytes>>,
    uri: hyper::Uri,
    /// `host:port` for error messages (never the path, which often embeds an API key).
    addr: String,
    timeout: Duration,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL path may hold an API key: show only scheme and authority.
        write!(
            f,
            "RpcClient({}://{})",
            self.uri.scheme_str().unwrap_or("?"),
            self.addr
        )
    }
}

fn quantity(v: u64) -> String {
    format!("0x{v:x}")
}

/// An error and its causes on one line: hyper-util's own message ("client error (Connect)") says
/// nothing without the io or TLS error underneath.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl RpcClient {
    /// A client for `url` (`http://` or `https://`, port optional). Certificates of `https://`
    /// endpoints are verified against the webpki (Mozilla) roots.
    pub fn new(url: &str) -> Result<Self, RpcError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| RpcError::Connect {
                addr: "TLS setup".into(),
                detail: e.to_string(),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Self::with_connector(url, connector)
    }

    /// A client trusting only `roots`, for tests against a local TLS server with a self-signed
    /// certificate. Test-only so production code cannot bypass the webpki roots.
    #[cfg(test)]
    pub(crate) fn with_roots(url: &str, roots: rustls::RootCertStore) -> Result<Self, RpcError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| RpcError::Connect {
            addr: "TLS setup".into(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self::with_connector(url, connector)
    }

    fn with_connector(url: &str, connector: Connector) -> Result<Self, RpcError> {
        let bad = || RpcError::BadUrl(url.to_string());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return Err(bad()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // Credentials in the authority would be sent nowhere (no Basic auth here) but shown
            // in errors: refuse them rather than leak them into logs.
            return Err(bad());
        }
        let addr = format!("{host}:{}", uri.port_u16().unwrap_or(port));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client,
            uri,
            addr,
            timeout: Duration::from_secs(30),
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One JSON-RPC call under the deadline.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, params)).await {
            Ok(Ok(v)) => serde_json::from_value(v).map_err(|e| RpcError::Malformed {
                method: method.to_string(),
                detail: e.to_string(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout {
                method: method.to_string(),
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let m = || method.to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(RawBytes::from(body.to_string())))
            .map_err(|_| RpcError::BadUrl(format!("{self:?}")))?;
        let resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                RpcError::Connect {
                    addr: self.addr.clone(),
                    detail: error_chain(&e),
                }
            } else {
                RpcError::Http {
                    method: m(),
                    detail: error_chain(&e),
                }
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| RpcError::Malformed {
                method: m(),
                detail: e.to_string(),
            })?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            if status >= 400 {
                RpcError::Status {
                    method: m(),
                    status,
                }
            } else {
                RpcError::Malformed {
                    method: m(),
                    detail: e.to_string(),
                }
            }
        })?;
        if status >= 500 && v.get("error").is_none() {
            return Err(RpcError::Status {
                method: m(),
                status,
            });
        }
        if let Some(err) = v.get("error") {
            let detail = err.get("data").cloned().map(Box::new);
            let data = err
                .get("data")
                .and_then(|d| {
                    d.as_str()
                        .or_else(|| d.get("data").and_then(|x| x.as_str()))
                })
                .and_then(|s| s.parse::<Bytes>().ok());
            return Err(RpcError::Rpc {
                method: m(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or_default(),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                data,
                detail,
            });
        }
        v.get("result").cloned().ok_or_else(|| RpcError::Malformed {
            method: m(),
            detail: "no result".into(),
        })
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_chainId", json!([])).await?;
        Ok(v.saturating_to::<u64>())
    }

    /// Unlocked accounts (anvil's funded dev accounts).
    pub async fn accounts(&self) -> Result<Vec<Address>, RpcError> {
        self.call("eth_accounts", json!([])).await
    }

    /// `eth_call` at the latest block; a revert is an [`RpcError::Rpc`] with its data.
    pub async fn eth_call(&self, to: Address, data: &[u8]) -> Result<Bytes, RpcError> {
        self.eth_call_value(None, to, U256::ZERO, data).await
    }

    /// `eth_call` from a chosen sender (e.g. the EntryPoint, to run `onlyEntryPoint` code paths
    /// the way the EntryPoint will).
    pub async fn eth_call_from(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<Bytes, RpcError> {
        self.eth_call_value(Some(from), to, U256::ZERO, data).await
    }

    /// `eth_call` at the latest block with an optional sender and ETH attached: simulates a
    /// transaction exactly as it would be sent, so a refusal is reported before paying gas.
    pub async fn eth_call_value(
        &self,
        from: Option<Address>,
        to: Address,
        value: U256,
        data: &[u8],
    ) -> Result<Bytes, RpcError> {
        self.call(
            "eth_call",
            json!([call_object(from, Some(to), value, data), "latest"]),
        )
        .await
    }

    /// `eth_estimateGas` of a call from `from`; includes the 21 000 intrinsic gas and the
    /// calldata cost of a top-level transaction.
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<u64, RpcError> {
        self.estimate_gas_value(from, to, U256::ZERO, data).await
    }

    /// [`Self::estimate_gas`] with ETH attached (a payable call costs more than the same call
    /// without value).
    pub async fn estimate_gas_value(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &[u8],
    ) -> Result<u64, RpcError> {
        let v: U256 = self
            .call(
                "eth_estimateGas",
                json!([call_object(Some(from), Some(to), value, data)]),
            )
            .await?;
        Ok(v.saturating_to::<u64>())
    }

    pub async fn balance(&self, addr: Address) -> Result<U256, RpcError> {
        self.call("eth_getBalance", json!([addr, "latest"])).await
    }

    /// `baseFeePerGas` of the latest block (0 on chains without EIP-1559).
    pub async fn base_fee(&self) -> Result<u128, RpcError> {
        Ok(self.base_fee_per_gas().await?.unwrap_or(0))
    }

    /// `baseFeePerGas` of the latest block; `None` on a chain without EIP-1559, where only a
    /// legacy (EIP-155) transaction can be priced.
    pub async fn base_fee_per_gas(&self) -> Result<Option<u128>, RpcError> {
        let block: Value = self
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        match block.get("baseFeePerGas") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value::<U256>(v.clone())
                .map(|u| Some(u.saturating_to::<u128>()))
                .map_err(|e| RpcError::Malformed {
                    method: "eth_getBlockByNumber".into(),
                    detail: format!("baseFeePerGas: {e}"),
                }),
        }
    }

    /// The node's suggested priority fee.
    pub async fn max_priority_fee(&self) -> Result<u128, RpcError> {
        let v: U256 = self.call("eth_maxPriorityFeePerGas", json!([])).await?;
        Ok(v.saturating_to::<u128>())
    }

    /// The legacy gas price (pre-London chains).
    pub async fn gas_price(&self) -> Result<u128, RpcError> {
        let v: U256 = self.call("eth_gasPrice", json!([])).await?;
        Ok(v.saturating_to::<u128>())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_blockNumber", json!([])).await?;
        Ok(v.saturating_to::<u64>())
    }

    pub async fn code_at(&self, addr: Address) -> Result<Bytes, RpcError> {
        self.call("eth_getCode", json!([addr, "latest"])).await
    }

    /// Whether `addr` holds a contract at the latest block.
    pub async fn has_code(&self, addr: Address) -> Result<bool, RpcError> {
        Ok(!self.code_at(addr).await?.is_empty())
    }

    pub async fn storage_at(&self, addr: Address, slot: B256) -> Result<B256, RpcError> {
        self.call("eth_getStorageAt", json!([addr, slot, "latest"]))
            .await
    }

    /// The next nonce of `addr`, counting transactions still in the pool.
    pub async fn pending_nonce(&self, addr: Address) -> Result<u64, RpcError> {
        let v: U256 = self
            .call("eth_getTransactionCount", json!([addr, "pending"]))
            .await?;
        Ok(v.saturating_to::<u64>())
    }

    /// `eth_sendRawTransaction`; the node's hash of the transaction.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.call(
            "eth_sendRawTransaction",
            json!([Bytes::copy_from_slice(raw)]),
        )
        .await
    }

    /// Sends a transaction from an unlocked account (`to: None` deploys) and waits for it.
    /// A failed receipt is [`RpcError::Reverted`].
    pub async fn transact(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
    ) -> Result<Receipt, RpcError> {
        self.transact_value(from, to, data, U256::ZERO).await
    }

    /// [`Self::transact`] with ETH attached.
    pub async fn transact_value(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
        value: U256,
    ) -> Result<Receipt, RpcError> {
        let tx = call_object(Some(from), to, value, data);
        let hash: B256 = self
            .call("eth_sendTransaction", json!([tx.clone()]))
            .await?;
        let receipt = self.wait_receipt(hash, Duration::from_secs(60)).await?;
        if !receipt.success {
            let data = self.replay_revert(tx, receipt.block_number).await;
            return Err(RpcError::Reverted { tx: hash, data });
        }
        Ok(receipt)
    }

    /// Receipts carry no revert reason: replays the call object `tx` on the state its block
    /// started from (the parent block) to recover the revert data, if the node still has it.
    pub(crate) async fn replay_revert(&self, tx: Value, block: u64) -> Option<Bytes> {
        let parent = quantity(block.saturating_sub(1));
        match self.call::<Bytes>("eth_call", json!([tx, parent])).await {
            Err(RpcError::Rpc { data, .. }) => data,
            _ => None,
        }
    }

    /// The receipt of `hash`, `None` while it is not mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        let v: Value = self
            .call("eth_getTransactionReceipt", json!([hash]))
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        let malformed = |k: &str| RpcError::Malformed {
            method: "eth_getTransactionReceipt".into(),
            detail: format!("bad {k}"),
        };
        let num = |k: &str| -> Result<U256, RpcError> {
            let s = v
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(k))?;
            U256::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| malformed(k))
        };
        let contract_address = match v.get("contractAddress").and_then(Value::as_str) {
            Some(s) => Some(
                s.parse::<Address>()
                    .map_err(|_| malformed("contractAddress"))?,
            ),
            None => None,
        };
        Ok(Some(Receipt {
            tx_hash: hash,
            success: num("status")? == U256::from(1),
            block_number: num("blockNumber")?.saturating_to::<u64>(),
            contract_address,
        }))
    }

    /// Polls for a receipt until `limit`. Transient errors (a hosted endpoint's hiccup) are
    /// retried until then: the transaction is already out, and giving up early would only make
    /// the caller send it again. Polling backs off from 50 ms to 500 ms so a long wait on a
    /// rate-limited endpoint stays cheap while a dev chain is still answered at once.
    pub async fn wait_receipt(&self, hash: B256, limit: Duration) -> Result<Receipt, RpcError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.receipt(hash).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(%hash, error = %e, "polling the receipt");
                }
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RpcError::NotMined(hash, limit));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// A call/transaction object for `eth_call`, `eth_estimateGas` and `eth_sendTransaction`; absent
/// `from`/`to` and a zero `value` are left out, which nodes read as the defaults.
fn call_object(from: Option<Address>, to: Option<Address>, value: U256, data: &[u8]) -> Value {
    let mut tx = json!({"input": Bytes::copy_from_slice(data)});
    if let Some(from) = from {
        tx["from"] = json!(from);
    }
    if let Some(to) = to {
        tx["to"] = json!(to);
    }
    if !value.is_zero() {
        tx["value"] = json!(value);
    }
    tx
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let c = RpcClient::new("http://127.0.0.1:8545").unwrap();
        assert_eq!(c.addr, "127.0.0.1:8545");
        assert_eq!(c.uri.path(), "/");
        let c = RpcClient::new("http://localhost:1/rpc/v1").unwrap();
        assert_eq!(c.uri.path(), "/rpc/v1");
        // Hosted endpoints: https, default ports, API key in the path (never shown).
        let c = RpcClient::new("https://base-sepolia.example/v2/SECRET").unwrap();
        assert_eq!(c.addr, "base-sepolia.example:443");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert_eq!(RpcClient::new("http://nohost").unwrap().addr, "nohost:80");
        for bad in ["ws://x:1", "not a url", "127.0.0.1:8545", "http://u:p@x:1"] {
            assert!(
                matches!(RpcClient::new(bad), Err(RpcError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    /// A one-shot-per-connection JSON-RPC server over TLS with a self-signed certificate for
    /// `localhost`/`127.0.0.1`, answering `eth_chainId` with 0x14a34 (Base Sepolia). Returns its
    /// port and the certificate, to be trusted by the client under test.
    async fn tls_json_rpc_server() -> (u16, rustls::pki_types::CertificateDer<'static>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let cert_der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A rejected handshake (the untrusting client) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers, then Content-Length bytes of body.
                    let (head_end, len) = loop {
                        let n = tls.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = tls.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let req: Value = serde_json::from_slice(&buf[head_end..head_end + len])
                        .unwrap_or(Value::Null);
                    let answer = match req["method"].as_str() {
                        Some("eth_chainId") => json!({"jsonrpc": "2.0", "id": req["id"], "result": "0x14a34"}),
                        _ => json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "method not found"}}),
                    }
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, cert_der)
    }

    #[tokio::test]
    async fn https_client_talks_to_a_tls_json_rpc_server() {
        let (port, cert) = tls_json_rpc_server().await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("https://{host}:{port}/rpc");
            let c = RpcClient::with_roots(&url, roots.clone())
                .unwrap()
                .with_timeout(Duration::from_secs(10));
            assert_eq!(c.chain_id().await.unwrap(), 84532, "{host}");
            // Typed JSON-RPC errors come through TLS unchanged.
            let e = c.accounts().await.unwrap_err();
            assert!(
                matches!(e, RpcError::Rpc { code: -32601, .. }),
                "{host}: {e}"
            );
        }
        // The production client verifies against the webpki roots: a self-signed certificate
        // is a connect error (transient from the caller's view, never silently accepted).
        let prod = RpcClient::new(&format!("https://localhost:{port}"))
            .unwrap()
            .with_timeout(Duration::from_secs(10));
        let e = prod.chain_id().await.unwrap_err();
        assert!(matches!(e, RpcError::Connect { .. }), "{e}");
        assert!(
            e.to_string().to_ascii_lowercase().contains("certificate"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn plain_http_still_connects_and_names_the_address_on_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = RpcClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = c.block_number().await.unwrap_err();
        assert!(
            matches!(&e, RpcError::Connect { addr, .. } if addr == &format!("127.0.0.1:{port}")),
            "{e}"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn revert_selector_extraction() {
        let e = RpcError::Rpc {
            method: "eth_call".into(),
            code: 3,
            message: "execution reverted".into(),
            data: Some(Bytes::from(vec![0x35, 0x56, 0x5c, 0x11])),
            detail: None,
        };
        assert_eq!(e.revert_selector(), Some([0x35, 0x56, 0x5c, 0x11]));
        assert_eq!(RpcError::BadUrl(String::new()).revert_selector(), None);
        assert!(e.is_revert());
        assert_eq!(e.revert_data().map(|d| d.len()), Some(4));
        let msg_only = RpcError::Rpc {
            method: "eth_estimateGas".into(),
            code: -32000,
            message: "execution reverted".into(),
            data: None,
            detail: None,
        };
        assert!(msg_only.is_revert());
        assert!(
            !RpcError::Status {
                method: "eth_call".into(),
                status: 502
            }
            .is_revert()
        );
    }

    #[test]
    fn range_too_large_matches_what_providers_say() {
        let rpc = |code: i64, message: &str, data: Option<Value>| RpcError::Rpc {
            method: "eth_getLogs".into(),
            code,
            message: message.into(),
            data: None,
            detail: data.map(Box::new),
        };
        let too_large = [
            rpc(-32005, "query returned more than 10000 results", None),
            rpc(-32000, "query returned more than 10000 results", None),
            rpc(-32602, "range 1000000 exceeds limit of 10000", None),
            rpc(
                -32602,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K \
                 block range and no limit on the response size, or you can request any block \
                 range with a cap of 10K logs in the response.",
                None,
            ),
            rpc(
                -32600,
                "You can make eth_getLogs requests with up to a 500 block range. Based on your \
                 parameters, this block range should work: [0x123c9b2, 0x123cba5]",
                None,
            ),
            rpc(-32614, "eth_getLogs is limited to a 10,000 range", None),
            rpc(
                -32602,
                "query exceeds max results 20000, retry with the range 25766988-25775072",
                None,
            ),
            rpc(
                -32000,
                "block range is larger than max block range, block range = 5120, max block range = 5000",
                None,
            ),
            rpc(-32600, "block range too high", None),
            rpc(
                -32602,
                "invalid params",
                Some(json!({"payload": "range 9009594 is bigger than range limit 2000"})),
            ),
            RpcError::Status {
                method: "eth_getLogs".into(),
                status: 413,
            },
        ];
        for e in &too_large {
            assert!(e.is_range_too_large(), "{e}");
        }
        let other = [
            rpc(
                -32005,
                "daily request count exceeded, request rate limited",
                None,
            ),
            rpc(
                -32602,
                "invalid argument 0: hex string without 0x prefix",
                None,
            ),
            rpc(3, "execution reverted", None),
            rpc(
                -32601,
                "the method eth_getLogs does not exist/is not available",
                None,
            ),
            RpcError::Status {
                method: "eth_getLogs".into(),
                status: 429,
            },
        ];
        for e in &other {
            assert!(!e.is_range_too_large(), "{e}");
        }
    }

    /// A fake endpoint holding one log per block, refusing any range with more than 3: the
    /// halving reads every block once, in order, and only the busy request is split.
    #[tokio::test]
    async fn fetch_halving_splits_only_what_is_refused() {
        let calls = std::sync::Mutex::new(Vec::new());
        let fetch = |f: u64, t: u64| {
            calls.lock().unwrap().push((f, t));
            async move {
                if t - f + 1 > 3 {
                    Err(RpcError::Rpc {
                        method: "eth_getLogs".into(),
                        code: -32005,
                        message: "query returned more than 3 results".into(),
                        data: None,
                        detail: None,
                    })
                } else {
                    Ok((f..=t).collect::<Vec<u64>>())
                }
            }
        };
        let got = fetch_halving(10, 19, RpcError::is_range_too_large, fetch)
            .await
            .unwrap();
        assert_eq!(got, (10..=19).collect::<Vec<_>>());
        assert_eq!(
            *calls.lock().unwrap(),
            vec![
                (10, 19),
                (10, 14),
                (10, 12),
                (13, 14),
                (15, 19),
                (15, 17),
                (18, 19)
            ]
        );
        // A single block still too large, or any other error, is returned as is.
        let one = fetch_halving(5, 5, RpcError::is_range_too_large, |_, _| async {
            Err::<Vec<u64>, _>(RpcError::Status {
                method: "eth_getLogs".into(),
                status: 413,
            })
        })
        .await;
        assert!(matches!(one, Err(RpcError::Status { status: 413, .. })));
    }
}
