//! A small Ethereum JSON-RPC client over plain HTTP/1.1 (local nodes, anvil). One connection per
//! call keeps it stateless; TLS endpoints are out of scope until the agent needs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use bytes::Bytes as RawBytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("RPC URL {0:?} is not of the form http://host:port[/path]")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("RPC {method} timed out after {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("HTTP exchange failed on {method}: {source}")]
    Http {
        method: String,
        #[source]
        source: hyper::Error,
    },
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

    /// The 4-byte custom-error selector of a revert, if this error carries revert data.
    pub fn revert_selector(&self) -> Option<[u8; 4]> {
        match self {
            RpcError::Rpc { data: Some(d), .. } | RpcError::Reverted { data: Some(d), .. }
                if d.len() >= 4 =>
            {
                Some([d[0], d[1], d[2], d[3]])
            }
            _ => None,
        }
    }
}

/// A mined transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx_hash: B256,
    pub success: bool,
    pub block_number: u64,
    pub contract_address: Option<Address>,
}

/// JSON-RPC client for one endpoint.
#[derive(Debug)]
pub struct RpcClient {
    host_port: String,
    path: String,
    timeout: Duration,
    next_id: AtomicU64,
}

impl RpcClient {
    pub fn new(url: &str) -> Result<Self, RpcError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| RpcError::BadUrl(url.to_string()))?;
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host_port.is_empty() || !host_port.contains(':') {
            return Err(RpcError::BadUrl(url.to_string()));
        }
        Ok(Self {
            host_port: host_port.to_string(),
            path: path.to_string(),
            timeout: Duration::from_secs(30),
            next_id: AtomicU64::new(1),
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
        let stream = tokio::net::TcpStream::connect(&self.host_port)
            .await
            .map_err(|source| RpcError::Connect {
                addr: self.host_port.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| RpcError::Http {
                method: m(),
                source,
            })?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(hyper::header::HOST, &self.host_port)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(RawBytes::from(body.to_string())))
            .map_err(|e| RpcError::BadUrl(format!("{}{}: {e}", self.host_port, self.path)))?;
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|source| RpcError::Http {
                    method: m(),
                    source,
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
        .await;
        drop(sender);
        task.abort();
        result
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_chainId", json!([])).await?;
        Ok(v.to::<u64>())
    }

    /// Unlocked accounts (anvil's funded dev accounts).
    pub async fn accounts(&self) -> Result<Vec<Address>, RpcError> {
        self.call("eth_accounts", json!([])).await
    }

    /// `eth_call` at the latest block; a revert is an [`RpcError::Rpc`] with its data.
    pub async fn eth_call(&self, to: Address, data: &[u8]) -> Result<Bytes, RpcError> {
        self.call(
            "eth_call",
            json!([{"to": to, "input": Bytes::copy_from_slice(data)}, "latest"]),
        )
        .await
    }

    /// `eth_call` from a chosen sender (e.g. the EntryPoint, to run `onlyEntryPoint` code paths
    /// the way the EntryPoint will).
    pub async fn eth_call_from(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<Bytes, RpcError> {
        self.call(
            "eth_call",
            json!([{"from": from, "to": to, "input": Bytes::copy_from_slice(data)}, "latest"]),
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
        let v: U256 = self
            .call(
                "eth_estimateGas",
                json!([{"from": from, "to": to, "input": Bytes::copy_from_slice(data)}]),
            )
            .await?;
        Ok(v.saturating_to::<u64>())
    }

    pub async fn balance(&self, addr: Address) -> Result<U256, RpcError> {
        self.call("eth_getBalance", json!([addr, "latest"])).await
    }

    /// `baseFeePerGas` of the latest block (0 on chains without EIP-1559).
    pub async fn base_fee(&self) -> Result<u128, RpcError> {
        let block: Value = self
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        match block.get("baseFeePerGas") {
            None | Some(Value::Null) => Ok(0),
            Some(v) => serde_json::from_value::<U256>(v.clone())
                .map(|u| u.saturating_to::<u128>())
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

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_blockNumber", json!([])).await?;
        Ok(v.saturating_to::<u64>())
    }

    pub async fn code_at(&self, addr: Address) -> Result<Bytes, RpcError> {
        self.call("eth_getCode", json!([addr, "latest"])).await
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
        let mut tx = json!({"from": from, "input": Bytes::copy_from_slice(data)});
        if !value.is_zero() {
            tx["value"] = json!(value);
        }
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash: B256 = self
            .call("eth_sendTransaction", json!([tx.clone()]))
            .await?;
        let receipt = self.wait_receipt(hash, Duration::from_secs(60)).await?;
        if !receipt.success {
            // Receipts carry no revert reason: replay on the parent block to recover it.
            let parent = format!("0x{:x}", receipt.block_number.saturating_sub(1));
            let data = match self.call::<Bytes>("eth_call", json!([tx, parent])).await {
                Err(RpcError::Rpc { data, .. }) => data,
                _ => None,
            };
            return Err(RpcError::Reverted { tx: hash, data });
        }
        Ok(receipt)
    }

    /// Polls for a receipt until `limit`.
    pub async fn wait_receipt(&self, hash: B256, limit: Duration) -> Result<Receipt, RpcError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v: Value = self
                .call("eth_getTransactionReceipt", json!([hash]))
                .await?;
            if !v.is_null() {
                let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
                let malformed = |k: &str| RpcError::Malformed {
                    method: "eth_getTransactionReceipt".into(),
                    detail: format!("bad {k}"),
                };
                let status = U256::from_str_radix(field("status").trim_start_matches("0x"), 16)
                    .map_err(|_| malformed("status"))?;
                let block = U256::from_str_radix(field("blockNumber").trim_start_matches("0x"), 16)
                    .map_err(|_| malformed("blockNumber"))?;
                let contract_address = match v.get("contractAddress").and_then(Value::as_str) {
                    Some(s) => Some(
                        s.parse::<Address>()
                            .map_err(|_| malformed("contractAddress"))?,
                    ),
                    None => None,
                };
                return Ok(Receipt {
                    tx_hash: hash,
                    success: status == U256::from(1),
                    block_number: block.to::<u64>(),
                    contract_address,
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RpcError::NotMined(hash, limit));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let c = RpcClient::new("http://127.0.0.1:8545").unwrap();
        assert_eq!(c.host_port, "127.0.0.1:8545");
        assert_eq!(c.path, "/");
        let c = RpcClient::new("http://localhost:1/rpc/v1").unwrap();
        assert_eq!(c.path, "/rpc/v1");
        assert!(matches!(
            RpcClient::new("https://x:1"),
            Err(RpcError::BadUrl(_))
        ));
        assert!(matches!(
            RpcClient::new("http://nohost"),
            Err(RpcError::BadUrl(_))
        ));
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
    }
}
