//! A simulated chain for follower and reader tests (feature `sim`): blocks with hashes and
//! parents, logs, view answers per block, reorgs, a provider's `eth_getLogs` caps and injected
//! failures — everything a [`ChainReader`] can show, with none of anvil's timing.
//!
//! Views are answered from a table of `(to, calldata) → return data` that a test fills with
//! [`SimChain::set_view`]; changes and emitted logs land in the next mined block, as a
//! transaction's would. A view no one set answers empty bytes, as an address without code does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_sol_types::{SolCall, SolEvent};
use attestmesh_core::follower::BlockRef;

use crate::read::{BlockTag, BoxFuture, ChainReader, Log, LogFilter};
use crate::rpc::RpcError;

type Views = HashMap<(Address, Vec<u8>), Bytes>;

#[derive(Debug, Clone)]
struct SimBlock {
    block: BlockRef,
    logs: Vec<Log>,
    views: Views,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: Vec<SimBlock>,
    pending_logs: Vec<(Address, Vec<B256>, Bytes)>,
    pending_views: Views,
    /// Distinguishes a re-mined block from the one a reorg replaced.
    fork: u64,
    max_log_blocks: Option<u64>,
    max_log_results: Option<usize>,
    failures: VecDeque<RpcError>,
    log_requests: u64,
}

/// An in-memory chain. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct SimChain {
    inner: Mutex<Inner>,
}

impl Default for SimChain {
    fn default() -> Self {
        Self::new()
    }
}

impl SimChain {
    /// A chain holding only its genesis block (number 0).
    pub fn new() -> Self {
        let chain = Self {
            inner: Mutex::new(Inner::default()),
        };
        chain.mine();
        chain
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has already failed; its data is fine.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From the next mined block on, `call` to `to` returns `ret`.
    pub fn set_view<C: SolCall>(&self, to: Address, call: C, ret: &C::Return) {
        self.lock().pending_views.insert(
            (to, call.abi_encode()),
            Bytes::from(C::abi_encode_returns(ret)),
        );
    }

    /// `event`, emitted by `address`, lands in the next mined block.
    pub fn emit<E: SolEvent>(&self, address: Address, event: &E) {
        let data = event.encode_log_data();
        self.lock()
            .pending_logs
            .push((address, data.topics().to_vec(), data.data));
    }

    /// Mines one block with everything pending.
    pub fn mine(&self) -> BlockRef {
        let mut g = self.lock();
        let number = g.blocks.len() as u64;
        let parent_hash = g.blocks.last().map_or(B256::ZERO, |b| b.block.hash);
        let mut pre = parent_hash.to_vec();
        pre.extend_from_slice(&number.to_be_bytes());
        pre.extend_from_slice(&g.fork.to_be_bytes());
        let hash = keccak256(pre);
        let block = BlockRef {
            number,
            hash,
            parent_hash,
        };
        let logs = std::mem::take(&mut g.pending_logs)
            .into_iter()
            .enumerate()
            .map(|(i, (address, topics, data))| Log {
                address,
                topics,
                data,
                block_number: number,
                block_hash: hash,
                transaction_hash: keccak256([hash.as_slice(), &(i as u64).to_be_bytes()].concat()),
                log_index: i as u64,
                removed: false,
            })
            .collect();
        let views = g.pending_views.clone();
        g.blocks.push(SimBlock { block, logs, views });
        block
    }

    /// Mines `n` blocks; the last one's header.
    pub fn mine_n(&self, n: u64) -> BlockRef {
        let mut last = self.tip();
        for _ in 0..n {
            last = self.mine();
        }
        last
    }

    /// The latest block's header.
    pub fn tip(&self) -> BlockRef {
        let g = self.lock();
        g.blocks.last().map_or(
            BlockRef {
                number: 0,
                hash: B256::ZERO,
                parent_hash: B256::ZERO,
            },
            |b| b.block,
        )
    }

    /// Drops the last `depth` blocks (their logs and state changes vanish, as in a reorg);
    /// blocks mined afterwards get hashes different from the dropped ones.
    pub fn reorg(&self, depth: u64) {
        let mut g = self.lock();
        let keep = g.blocks.len().saturating_sub(depth as usize).max(1);
        g.blocks.truncate(keep);
        g.fork += 1;
        g.pending_logs.clear();
        g.pending_views = g.blocks.last().map(|b| b.views.clone()).unwrap_or_default();
    }

    /// Refuse `eth_getLogs` over more than `max_blocks` blocks or with more than `max_results`
    /// results, with the error a hosted provider gives.
    pub fn limit_logs(&self, max_blocks: Option<u64>, max_results: Option<usize>) {
        let mut g = self.lock();
        g.max_log_blocks = max_blocks;
        g.max_log_results = max_results;
    }

    /// The next request of any kind fails with `error`.
    pub fn fail_next(&self, error: RpcError) {
        self.lock().failures.push_back(error);
    }

    /// `eth_getLogs` requests answered or refused so far.
    pub fn log_requests(&self) -> u64 {
        self.lock().log_requests
    }

    fn take_failure(&self) -> Result<(), RpcError> {
        match self.lock().failures.pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn too_large(message: String) -> RpcError {
    RpcError::Rpc {
        method: "eth_getLogs".into(),
        code: -32005,
        message,
        data: None,
        detail: None,
    }
}

impl ChainReader for SimChain {
    fn head(&self) -> BoxFuture<'_, Result<u64, RpcError>> {
        Box::pin(async move {
            self.take_failure()?;
            Ok(self.tip().number)
        })
    }

    fn block(&self, number: u64) -> BoxFuture<'_, Result<Option<BlockRef>, RpcError>> {
        Box::pin(async move {
            self.take_failure()?;
            let g = self.lock();
            Ok(usize::try_from(number)
                .ok()
                .and_then(|i| g.blocks.get(i))
                .map(|b| b.block))
        })
    }

    fn logs<'a>(&'a self, filter: &'a LogFilter) -> BoxFuture<'a, Result<Vec<Log>, RpcError>> {
        Box::pin(async move {
            self.take_failure()?;
            let mut g = self.lock();
            g.log_requests += 1;
            let span = filter.to.saturating_sub(filter.from) + 1;
            if g.max_log_blocks.is_some_and(|m| span > m) {
                return Err(too_large(format!(
                    "block range is larger than max block range {}",
                    g.max_log_blocks.unwrap_or_default()
                )));
            }
            let found: Vec<Log> = g
                .blocks
                .iter()
                .flat_map(|b| b.logs.iter())
                .filter(|l| filter.matches(l))
                .cloned()
                .collect();
            if let Some(m) = g.max_log_results.filter(|m| found.len() > *m) {
                return Err(too_large(format!("query returned more than {m} results")));
            }
            Ok(found)
        })
    }

    fn call<'a>(
        &'a self,
        to: Address,
        data: &'a [u8],
        at: BlockTag,
    ) -> BoxFuture<'a, Result<Bytes, RpcError>> {
        Box::pin(async move {
            self.take_failure()?;
            let g = self.lock();
            let block = match at {
                BlockTag::Latest => g.blocks.last(),
                BlockTag::Number(n) => usize::try_from(n).ok().and_then(|i| g.blocks.get(i)),
                BlockTag::Hash(h) => g.blocks.iter().find(|b| b.block.hash == h),
            };
            let Some(block) = block else {
                return Err(RpcError::Rpc {
                    method: "eth_call".into(),
                    code: -32000,
                    message: "header not found".into(),
                    data: None,
                    detail: None,
                });
            };
            Ok(block
                .views
                .get(&(to, data.to_vec()))
                .cloned()
                .unwrap_or_default())
        })
    }
}
