//! Reading the chain: the one interface every follower and reader takes ([`ChainReader`]), the
//! one log type ([`Log`]), block tags, and the one typed view call ([`view`]).
//!
//! The node's follower, the Indexer's follower and the cluster reader are written against
//! [`ChainReader`] rather than the JSON-RPC client, so the same code runs against a real node
//! ([`crate::rpc::RpcClient`]) and, in tests, against a simulated chain with reorgs and
//! provider limits (`crate::sim`, feature `sim`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use alloy_primitives::{Address, B256, Bytes, U64};
use alloy_sol_types::SolCall;
use attestmesh_core::follower::BlockRef;
use attestmesh_core::push::{PushBody, REPRO_METHOD, repro_params_json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rpc::{RpcClient, RpcError, fetch_halving};

/// A boxed future, so [`ChainReader`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which state a view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    /// The node's latest block (operator commands, registration checks).
    Latest,
    /// One block by number.
    Number(u64),
    /// One block by hash (EIP-1898): a read names the very block, so reads of one view
    /// cannot straddle a reorg that replaces a block of the same number.
    Hash(B256),
}

impl BlockTag {
    /// The JSON-RPC block parameter.
    pub fn to_param(self) -> Value {
        match self {
            BlockTag::Latest => json!("latest"),
            BlockTag::Number(n) => json!(format!("{n:#x}")),
            BlockTag::Hash(h) => json!({ "blockHash": h }),
        }
    }
}

impl From<&BlockRef> for BlockTag {
    fn from(b: &BlockRef) -> Self {
        BlockTag::Hash(b.hash)
    }
}

/// An `eth_getLogs` filter: addresses (any of), positional topics (`None` matches anything),
/// an inclusive block range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    pub addresses: Vec<Address>,
    pub topics: Vec<Option<Vec<B256>>>,
    pub from: u64,
    pub to: u64,
}

impl LogFilter {
    /// Logs of `addresses` in `[from, to]`, any topics.
    pub fn new(addresses: &[Address], from: u64, to: u64) -> Self {
        Self {
            addresses: addresses.to_vec(),
            topics: Vec::new(),
            from,
            to,
        }
    }

    /// Only logs whose topic `i` is one of `any`.
    pub fn topic(mut self, i: usize, any: &[B256]) -> Self {
        if self.topics.len() <= i {
            self.topics.resize(i + 1, None);
        }
        self.topics[i] = Some(any.to_vec());
        self
    }

    /// The same filter over another block range.
    pub fn range(&self, from: u64, to: u64) -> Self {
        Self {
            from,
            to,
            ..self.clone()
        }
    }

    /// Whether `log` passes the filter (what a node does; the simulated chain uses it).
    pub fn matches(&self, log: &Log) -> bool {
        (self.from..=self.to).contains(&log.block_number)
            && (self.addresses.is_empty() || self.addresses.contains(&log.address))
            && self.topics.iter().enumerate().all(|(i, want)| match want {
                None => true,
                Some(any) => log.topics.get(i).is_some_and(|t| any.contains(t)),
            })
    }

    /// The JSON-RPC filter object.
    pub fn to_param(&self) -> Value {
        let topics: Vec<Value> = self
            .topics
            .iter()
            .map(|t| match t {
                None => Value::Null,
                Some(any) => json!(any),
            })
            .collect();
        json!({
            "address": self.addresses,
            "topics": topics,
            "fromBlock": format!("{:#x}", self.from),
            "toBlock": format!("{:#x}", self.to),
        })
    }
}

/// One log as `eth_getLogs` returns it. Every field is required: a pending log (nulls) has no
/// place in a follower and fails decoding, which fails (and so retries) the whole request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    #[serde(deserialize_with = "quantity_u64")]
    pub block_number: u64,
    pub block_hash: B256,
    pub transaction_hash: B256,
    #[serde(deserialize_with = "quantity_u64")]
    pub log_index: u64,
    #[serde(default)]
    pub removed: bool,
}

fn quantity_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    U64::deserialize(d).map(|v| v.to())
}

impl Log {
    /// The Indexer push this log becomes (DESIGN §9.2): every field from the log, and the
    /// canonical `eth_getLogs` repro stub that returns exactly this log from any RPC node.
    pub fn push_body(&self) -> PushBody {
        PushBody {
            cluster: self.address,
            block_number: self.block_number,
            block_hash: self.block_hash,
            tx_hash: self.transaction_hash,
            log_index: self.log_index,
            address: self.address,
            topics: self.topics.clone(),
            data: self.data.to_vec(),
            repro_method: REPRO_METHOD.to_string(),
            repro_params_json: repro_params_json(self.address, self.block_hash, &self.topics),
        }
    }
}

/// What every chain follower and reader needs of an RPC node.
pub trait ChainReader: Send + Sync + fmt::Debug {
    /// The latest block number.
    fn head(&self) -> BoxFuture<'_, Result<u64, RpcError>>;
    /// The header of block `number`; `None` if the node does not have it (yet).
    fn block(&self, number: u64) -> BoxFuture<'_, Result<Option<BlockRef>, RpcError>>;
    /// One `eth_getLogs` request, as the node answers it (it may refuse a range as too large:
    /// see [`logs_split`]). Logs flagged `removed` are dropped.
    fn logs<'a>(&'a self, filter: &'a LogFilter) -> BoxFuture<'a, Result<Vec<Log>, RpcError>>;
    /// `eth_call` of `data` to `to` at `at`.
    fn call<'a>(
        &'a self,
        to: Address,
        data: &'a [u8],
        at: BlockTag,
    ) -> BoxFuture<'a, Result<Bytes, RpcError>>;
}

impl ChainReader for RpcClient {
    fn head(&self) -> BoxFuture<'_, Result<u64, RpcError>> {
        Box::pin(self.block_number())
    }

    fn block(&self, number: u64) -> BoxFuture<'_, Result<Option<BlockRef>, RpcError>> {
        Box::pin(async move {
            const METHOD: &str = "eth_getBlockByNumber";
            let b: Value = self
                .call(METHOD, json!([format!("{number:#x}"), false]))
                .await?;
            if b.is_null() {
                return Ok(None);
            }
            match parse_block_ref(&b) {
                Some(r) if r.number == number => Ok(Some(r)),
                _ => Err(RpcError::Malformed {
                    method: METHOD.into(),
                    detail: format!("not a header of block {number}"),
                }),
            }
        })
    }

    fn logs<'a>(&'a self, filter: &'a LogFilter) -> BoxFuture<'a, Result<Vec<Log>, RpcError>> {
        Box::pin(async move {
            let raw: Value = self.call("eth_getLogs", json!([filter.to_param()])).await?;
            let logs: Vec<Log> = serde_json::from_value(raw).map_err(|e| RpcError::Malformed {
                method: "eth_getLogs".into(),
                detail: e.to_string(),
            })?;
            Ok(logs.into_iter().filter(|l| !l.removed).collect())
        })
    }

    fn call<'a>(
        &'a self,
        to: Address,
        data: &'a [u8],
        at: BlockTag,
    ) -> BoxFuture<'a, Result<Bytes, RpcError>> {
        Box::pin(async move {
            RpcClient::call(
                self,
                "eth_call",
                json!([{"to": to, "input": Bytes::copy_from_slice(data)}, at.to_param()]),
            )
            .await
        })
    }
}

/// A block header's number, hash and parent hash; `None` if any is missing or malformed.
pub fn parse_block_ref(b: &Value) -> Option<BlockRef> {
    let hash = |k: &str| -> Option<B256> { b.get(k)?.as_str()?.parse().ok() };
    let number: U64 = serde_json::from_value(b.get("number")?.clone()).ok()?;
    Some(BlockRef {
        number: number.to(),
        hash: hash("hash")?,
        parent_hash: hash("parentHash")?,
    })
}

/// Addresses per `eth_getLogs` request: providers cap filter sizes, so a factory with many
/// clusters is read in several requests per block range.
pub const ADDRESS_CHUNK: usize = 200;

/// Logs matching `filter` however large its range or address list, in chain order.
///
/// A request the provider refuses as too large (too many results, bytes or blocks) is halved
/// down to single blocks ([`fetch_halving`]); a single block still too large for a group of
/// addresses is retried with half the addresses, so one noisy contract never stalls the others.
/// Only one address's single block over the provider's cap fails the call.
pub async fn logs_split(
    chain: &(impl ChainReader + ?Sized),
    filter: &LogFilter,
) -> Result<Vec<Log>, RpcError> {
    let mut all = Vec::new();
    let addresses = filter.addresses.clone();
    let mut groups: Vec<&[Address]> = if addresses.is_empty() {
        vec![&[]]
    } else {
        addresses.chunks(ADDRESS_CHUNK).rev().collect()
    };
    while let Some(group) = groups.pop() {
        let fetched = fetch_halving(
            filter.from,
            filter.to,
            RpcError::is_range_too_large,
            |f, t| {
                let part = LogFilter {
                    addresses: group.to_vec(),
                    ..filter.range(f, t)
                };
                async move { chain.logs(&part).await }
            },
        )
        .await;
        match fetched {
            Ok(mut logs) => all.append(&mut logs),
            Err(e) if e.is_range_too_large() && group.len() > 1 => {
                let (first, second) = group.split_at(group.len() / 2);
                groups.push(second);
                groups.push(first);
            }
            Err(e) => return Err(e),
        }
    }
    all.sort_by_key(|l| (l.block_number, l.log_index));
    Ok(all)
}

/// A view call that did not produce its typed answer.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The node did not answer, or the call reverted (see [`RpcError::is_revert`]).
    #[error("{call} on {to}: {source}")]
    Rpc {
        call: &'static str,
        to: Address,
        #[source]
        source: Box<RpcError>,
    },
    /// An empty answer to a call that returns something: no contract at `to`.
    #[error("{call} on {to}: empty answer (is there a contract of the expected kind at {to}?)")]
    NoCode { call: &'static str, to: Address },
    /// An answer that is not the declared return type.
    #[error("{call} on {to}: undecodable answer (is the contract at {to} the expected kind?)")]
    Decode { call: &'static str, to: Address },
}

impl ViewError {
    /// Whether a retry may succeed (the node was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, ViewError::Rpc { source, .. } if source.is_transient())
    }

    /// The RPC error, if the node answered with one.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            ViewError::Rpc { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The Solidity signature of the call that failed.
    pub fn call(&self) -> &'static str {
        match self {
            ViewError::Rpc { call, .. }
            | ViewError::NoCode { call, .. }
            | ViewError::Decode { call, .. } => call,
        }
    }
}

/// The one typed view call: `call` to `to` at `at`, decoded as the call's return type.
pub async fn view<C: SolCall>(
    chain: &(impl ChainReader + ?Sized),
    to: Address,
    call: C,
    at: BlockTag,
) -> Result<C::Return, ViewError> {
    let out = chain
        .call(to, &call.abi_encode(), at)
        .await
        .map_err(|source| ViewError::Rpc {
            call: C::SIGNATURE,
            to,
            source: Box::new(source),
        })?;
    decode_returns::<C>(to, &out)
}

/// Decodes `C`'s answer from `to` (for callers that retry the raw call themselves).
pub fn decode_returns<C: SolCall>(to: Address, out: &[u8]) -> Result<C::Return, ViewError> {
    C::abi_decode_returns(out).map_err(|_| {
        if out.is_empty() {
            ViewError::NoCode {
                call: C::SIGNATURE,
                to,
            }
        } else {
            ViewError::Decode {
                call: C::SIGNATURE,
                to,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn block_headers_parse_or_are_refused() {
        let h = B256::repeat_byte(2);
        let p = B256::repeat_byte(1);
        let b = json!({"number": "0x2a", "hash": h, "parentHash": p, "miner": "0x00"});
        assert_eq!(
            parse_block_ref(&b),
            Some(BlockRef {
                number: 42,
                hash: h,
                parent_hash: p
            })
        );
        assert_eq!(parse_block_ref(&json!({"number": "0x2a", "hash": h})), None);
        assert_eq!(
            parse_block_ref(&json!({"number": "zz", "hash": h, "parentHash": p})),
            None
        );
    }

    #[test]
    fn filters_match_like_a_node() {
        let log = Log {
            address: Address::repeat_byte(1),
            topics: vec![B256::repeat_byte(0xa), B256::repeat_byte(0xb)],
            data: Bytes::new(),
            block_number: 7,
            block_hash: B256::ZERO,
            transaction_hash: B256::ZERO,
            log_index: 0,
            removed: false,
        };
        let f = LogFilter::new(&[Address::repeat_byte(1)], 5, 9);
        assert!(f.matches(&log));
        assert!(f.clone().topic(0, &[B256::repeat_byte(0xa)]).matches(&log));
        assert!(f.clone().topic(1, &[B256::repeat_byte(0xb)]).matches(&log));
        assert!(!f.clone().topic(1, &[B256::repeat_byte(0xa)]).matches(&log));
        assert!(!f.clone().topic(2, &[B256::repeat_byte(0xa)]).matches(&log));
        assert!(!f.range(8, 9).matches(&log));
        assert!(!LogFilter::new(&[Address::repeat_byte(2)], 0, 9).matches(&log));
        let p = f.topic(1, &[B256::repeat_byte(0xb)]).to_param();
        assert_eq!(p["topics"][0], Value::Null);
        assert_eq!(p["fromBlock"], "0x5");
    }

    #[test]
    fn a_pending_log_does_not_decode() {
        let ok = json!({"address": Address::ZERO, "topics": [], "data": "0x",
            "blockNumber": "0x1", "blockHash": B256::ZERO, "transactionHash": B256::ZERO,
            "logIndex": "0x0"});
        let l: Log = serde_json::from_value(ok.clone()).unwrap();
        assert_eq!(l.block_number, 1);
        let mut pending = ok;
        pending["blockHash"] = Value::Null;
        assert!(serde_json::from_value::<Log>(pending).is_err());
    }
}
