//! JSON-RPC over HTTP(S)/1.1 for operator commands.
//!
//! Operators talk to hosted endpoints (Base Sepolia, Base) that are `https://` only, which the
//! chain crate's plain-HTTP client does not speak; this client uses the same hyper + rustls stack
//! (webpki roots, no system store needed in a slim container) that the sponsor service already
//! builds, and keeps revert data so a refused transaction is reported by its Solidity error name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes as HyperBytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Largest answer buffered: `eth_getLogs` over a wide range can be big, but not unbounded.
const MAX_RESPONSE: usize = 64 << 20;

/// A failed JSON-RPC exchange.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("RPC URL {0:?} must be http:// or https://")]
    BadUrl(String),
    #[error("{method}: transport error: {detail}")]
    Transport { method: String, detail: String },
    #[error("{method}: no answer within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("{method}: HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("{method}: error {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
        /// Revert data, when the node sent it.
        data: Option<Bytes>,
    },
    #[error("{method}: malformed answer: {detail}")]
    Malformed { method: String, detail: String },
}

impl RpcError {
    /// Revert data carried by an `eth_call`/`eth_estimateGas` failure, if any.
    pub fn revert_data(&self) -> Option<&Bytes> {
        match self {
            RpcError::Rpc { data, .. } => data.as_ref(),
            _ => None,
        }
    }

    /// Whether the node said the call reverts (as opposed to not answering).
    pub fn is_revert(&self) -> bool {
        match self {
            RpcError::Rpc {
                code,
                message,
                data,
                ..
            } => *code == 3 || data.is_some() || message.to_ascii_lowercase().contains("revert"),
            _ => false,
        }
    }
}

/// A mined transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx_hash: B256,
    pub success: bool,
    pub block_number: u64,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub block_number: u64,
    pub log_index: u64,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A JSON-RPC endpoint.
#[derive(Clone)]
pub struct Provider {
    client: Client<Https, Full<HyperBytes>>,
    uri: hyper::Uri,
    timeout: Duration,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may embed an API key: show only scheme and host.
        write!(
            f,
            "Provider({}://{})",
            self.uri.scheme_str().unwrap_or("?"),
            self.uri.host().unwrap_or("?")
        )
    }
}

fn quantity(v: u64) -> String {
    format!("0x{v:x}")
}

impl Provider {
    /// A client for `url` (`http://` or `https://`).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RpcError> {
        let uri: hyper::Uri = url.parse().map_err(|_| RpcError::BadUrl(url.into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(RpcError::BadUrl(url.into()));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| RpcError::Transport {
                method: "TLS setup".into(),
                detail: e.to_string(),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            timeout,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// One call; `result` deserialised into `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let v = self.request(method, params).await?;
        serde_json::from_value(v).map_err(|e| RpcError::Malformed {
            method: method.into(),
            detail: e.to_string(),
        })
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let m = || method.to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let req = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(HyperBytes::from(body.to_string())))
            .map_err(|e| RpcError::Transport {
                method: m(),
                detail: e.to_string(),
            })?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| RpcError::Transport {
                    method: m(),
                    detail: e.to_string(),
                })?;
            let status = resp.status().as_u16();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| RpcError::Transport {
                    method: m(),
                    detail: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, RpcError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RpcError::Timeout {
                method: m(),
                after: self.timeout,
            })??;
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) if status < 400 => {
                return Err(RpcError::Malformed {
                    method: m(),
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                return Err(RpcError::Http {
                    method: m(),
                    status,
                });
            }
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let data = err
                .get("data")
                .and_then(|d| d.as_str().or_else(|| d.get("data").and_then(Value::as_str)))
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
            });
        }
        if status >= 400 {
            return Err(RpcError::Http {
                method: m(),
                status,
            });
        }
        v.get("result").cloned().ok_or_else(|| RpcError::Malformed {
            method: m(),
            detail: "no result".into(),
        })
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_chainId", json!([])).await?;
        Ok(v.saturating_to())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_blockNumber", json!([])).await?;
        Ok(v.saturating_to())
    }

    pub async fn code_at(&self, addr: Address) -> Result<Bytes, RpcError> {
        self.call("eth_getCode", json!([addr, "latest"])).await
    }

    pub async fn has_code(&self, addr: Address) -> Result<bool, RpcError> {
        Ok(!self.code_at(addr).await?.is_empty())
    }

    pub async fn storage_at(&self, addr: Address, slot: B256) -> Result<B256, RpcError> {
        self.call("eth_getStorageAt", json!([addr, slot, "latest"]))
            .await
    }

    /// The next nonce, counting transactions still in the pool.
    pub async fn pending_nonce(&self, addr: Address) -> Result<u64, RpcError> {
        let v: U256 = self
            .call("eth_getTransactionCount", json!([addr, "pending"]))
            .await?;
        Ok(v.saturating_to())
    }

    /// `eth_call` at `latest`; a revert is an [`RpcError::Rpc`] carrying its data.
    pub async fn eth_call(
        &self,
        from: Option<Address>,
        to: Address,
        value: U256,
        data: &[u8],
    ) -> Result<Bytes, RpcError> {
        let mut tx = json!({"to": to, "input": Bytes::copy_from_slice(data)});
        if let Some(from) = from {
            tx["from"] = json!(from);
        }
        if !value.is_zero() {
            tx["value"] = json!(value);
        }
        self.call("eth_call", json!([tx, "latest"])).await
    }

    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &[u8],
    ) -> Result<u64, RpcError> {
        let mut tx = json!({"from": from, "to": to, "input": Bytes::copy_from_slice(data)});
        if !value.is_zero() {
            tx["value"] = json!(value);
        }
        let v: U256 = self.call("eth_estimateGas", json!([tx])).await?;
        Ok(v.saturating_to())
    }

    /// `baseFeePerGas` of the latest block; `None` on a chain without EIP-1559.
    pub async fn base_fee(&self) -> Result<Option<u128>, RpcError> {
        let block: Value = self
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        match block.get("baseFeePerGas") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value::<U256>(v.clone())
                .map(|u| Some(u.saturating_to()))
                .map_err(|e| RpcError::Malformed {
                    method: "eth_getBlockByNumber".into(),
                    detail: format!("baseFeePerGas: {e}"),
                }),
        }
    }

    pub async fn max_priority_fee(&self) -> Result<u128, RpcError> {
        let v: U256 = self.call("eth_maxPriorityFeePerGas", json!([])).await?;
        Ok(v.saturating_to())
    }

    pub async fn gas_price(&self) -> Result<u128, RpcError> {
        let v: U256 = self.call("eth_gasPrice", json!([])).await?;
        Ok(v.saturating_to())
    }

    pub async fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.call(
            "eth_sendRawTransaction",
            json!([Bytes::copy_from_slice(raw)]),
        )
        .await
    }

    /// The receipt, once mined.
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
        let num = |k: &str| -> Result<u64, RpcError> {
            let s = v
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(k))?;
            u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| malformed(k))
        };
        Ok(Some(Receipt {
            tx_hash: hash,
            success: num("status")? == 1,
            block_number: num("blockNumber")?,
        }))
    }

    /// Logs of `address` matching `topic0` (any of them) in `[from, to]`.
    pub async fn logs(
        &self,
        address: Address,
        topic0: &[B256],
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, RpcError> {
        let filter = json!({
            "address": address,
            "topics": [topic0],
            "fromBlock": quantity(from),
            "toBlock": quantity(to),
        });
        let raw: Vec<Value> = self.call("eth_getLogs", json!([filter])).await?;
        let malformed = |k: &str| RpcError::Malformed {
            method: "eth_getLogs".into(),
            detail: format!("bad {k}"),
        };
        raw.into_iter()
            .map(|l| {
                let field = |k: &str| l.get(k).cloned().ok_or_else(|| malformed(k));
                let hexnum = |k: &str| -> Result<u64, RpcError> {
                    let s = l
                        .get(k)
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed(k))?;
                    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| malformed(k))
                };
                Ok(Log {
                    address: serde_json::from_value(field("address")?)
                        .map_err(|_| malformed("address"))?,
                    topics: serde_json::from_value(field("topics")?)
                        .map_err(|_| malformed("topics"))?,
                    data: serde_json::from_value(field("data")?).map_err(|_| malformed("data"))?,
                    block_number: hexnum("blockNumber")?,
                    log_index: hexnum("logIndex")?,
                })
            })
            .collect()
    }

    /// [`Self::logs`] over a wide range, in windows that shrink when the endpoint refuses a
    /// range as too large (hosted RPCs cap `eth_getLogs` at 1k–10k blocks or N results).
    pub async fn logs_chunked(
        &self,
        address: Address,
        topic0: &[B256],
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, RpcError> {
        let mut out = Vec::new();
        let mut window: u64 = 50_000;
        let mut start = from;
        while start <= to {
            let end = start.saturating_add(window - 1).min(to);
            match self.logs(address, topic0, start, end).await {
                Ok(mut logs) => {
                    out.append(&mut logs);
                    start = end + 1;
                }
                Err(RpcError::Rpc { .. }) if window > 100 => window /= 5,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(1);
        assert!(Provider::new("http://127.0.0.1:8545", t).is_ok());
        assert!(Provider::new("https://sepolia.base.org", t).is_ok());
        assert!(matches!(
            Provider::new("ws://x:1", t),
            Err(RpcError::BadUrl(_))
        ));
        assert!(matches!(
            Provider::new("not a url", t),
            Err(RpcError::BadUrl(_))
        ));
        let dbg = format!(
            "{:?}",
            Provider::new("https://h.example/v2/SECRET", t).unwrap()
        );
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }
}
