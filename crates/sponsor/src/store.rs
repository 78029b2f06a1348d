//! Per-sender daily operation counters and per-sender / per-cluster daily **wei** spent, in an
//! embedded database (redb), so that a restart of the sponsor does not hand every node a fresh
//! allowance.
//!
//! A charge is keyed by `(sender, nonce)`: a wallet that asks `pm_getPaymasterData` twice for the
//! same operation (a retry after a bundler hiccup) is counted once, because the EntryPoint will
//! accept only one operation per nonce anyway. Its wei are the largest maximum cost signed for
//! that nonce (a re-sign with higher gas pays the difference, under the same budgets). Days are
//! UTC days (`unix_time / 86400`).

use std::path::Path;

use alloy_primitives::{Address, U256};
use redb::{Database, ReadableTable, TableDefinition};

/// `sender(20) ‖ day(8, BE)` → operations charged that day.
const COUNTS: TableDefinition<&[u8], u32> = TableDefinition::new("daily_counts_v1");
/// `sender(20) ‖ nonce(32)` → the day it was charged.
const CHARGED: TableDefinition<&[u8], u64> = TableDefinition::new("charged_nonces_v1");
/// `scope(1: b's' sender, b'c' cluster) ‖ address(20) ‖ day(8, BE)` → wei charged that day.
const WEI: TableDefinition<&[u8], u128> = TableDefinition::new("daily_wei_v1");
/// `sender(20) ‖ nonce(32)` → (day, wei charged for that nonce).
const CHARGED_WEI: TableDefinition<&[u8], (u64, u128)> = TableDefinition::new("charged_wei_v1");

/// A database failure. Maps to HTTP 500 / JSON-RPC -32603: we fail closed rather than sponsor
/// without counting.
#[derive(Debug, thiserror::Error)]
#[error("counter database: {0}")]
pub struct StoreError(String);

macro_rules! store_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError { fn from(e: $t) -> Self { StoreError(e.to_string()) } })*};
}
store_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result of a charge attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted; the sender's count for the day is now this.
    Charged(u32),
    /// This `(sender, nonce)` was already charged today; nothing changed.
    AlreadyCharged(u32),
    /// The sender has used the whole cap today.
    CapReached(u32),
    /// A check (nothing written) found room; the sender's count for the day is this.
    Allowed(u32),
    /// The sender's wei budget for the day would be exceeded.
    SenderBudget,
    /// The cluster's wei budget for the day would be exceeded.
    ClusterBudget,
}

/// What one operation asks of the daily limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The account.
    pub sender: Address,
    /// Its cluster (the wei budget it shares with its peers).
    pub cluster: Address,
    /// The operation's nonce (one count per nonce).
    pub nonce: U256,
    /// UTC day.
    pub day: u64,
    /// Operations per sender per day.
    pub cap: u32,
    /// The operation's maximum cost in wei.
    pub cost: u128,
    /// Wei per sender per day.
    pub sender_budget: u128,
    /// Wei per cluster per day.
    pub cluster_budget: u128,
}

/// The counter database.
pub struct CounterStore {
    db: Database,
}

/// UTC day number of a unix timestamp.
pub fn day_of(unix_secs: u64) -> u64 {
    unix_secs / 86_400
}

fn count_key(sender: Address, day: u64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(sender.as_slice());
    k[20..].copy_from_slice(&day.to_be_bytes());
    k
}

fn wei_key(scope: u8, who: Address, day: u64) -> [u8; 29] {
    let mut k = [0u8; 29];
    k[0] = scope;
    k[1..21].copy_from_slice(who.as_slice());
    k[21..].copy_from_slice(&day.to_be_bytes());
    k
}

fn nonce_key(sender: Address, nonce: U256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(sender.as_slice());
    k[20..].copy_from_slice(&nonce.to_be_bytes::<32>());
    k
}

impl CounterStore {
    /// Opens (or creates) the database at `path` and makes sure both tables exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(COUNTS)?;
            tx.open_table(CHARGED)?;
            tx.open_table(WEI)?;
            tx.open_table(CHARGED_WEI)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// Operations charged to `sender` on `day`.
    pub fn count(&self, sender: Address, day: u64) -> Result<u32, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(COUNTS)?;
        Ok(t.get(count_key(sender, day).as_slice())?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Wei charged to `sender` on `day`.
    pub fn sender_wei(&self, sender: Address, day: u64) -> Result<u128, StoreError> {
        self.wei(b's', sender, day)
    }

    /// Wei charged to `cluster` on `day`.
    pub fn cluster_wei(&self, cluster: Address, day: u64) -> Result<u128, StoreError> {
        self.wei(b'c', cluster, day)
    }

    fn wei(&self, scope: u8, who: Address, day: u64) -> Result<u128, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(WEI)?;
        Ok(t.get(wei_key(scope, who, day).as_slice())?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Charges one operation of `cost` wei to `sender` on `day` (count without wei when only
    /// the cap is asked for). Kept for callers that do not budget wei.
    pub fn try_charge(
        &self,
        sender: Address,
        nonce: U256,
        day: u64,
        cap: u32,
    ) -> Result<Charge, StoreError> {
        self.charge(
            &Ask {
                sender,
                cluster: Address::ZERO,
                nonce,
                day,
                cap,
                cost: 0,
                sender_budget: u128::MAX,
                cluster_budget: u128::MAX,
            },
            true,
        )
    }

    /// Checks `ask` against the cap and both wei budgets and, when `commit` is set, charges it:
    /// one count (unless this nonce was already counted today) and the wei it adds over what
    /// was already charged for this nonce. One write transaction, so concurrent requests cannot
    /// overshoot; with `commit` unset nothing is written.
    pub fn charge(&self, ask: &Ask, commit: bool) -> Result<Charge, StoreError> {
        let tx = self.db.begin_write()?;
        let (outcome, changed) = {
            let mut counts = tx.open_table(COUNTS)?;
            let mut charged = tx.open_table(CHARGED)?;
            let mut wei = tx.open_table(WEI)?;
            let mut charged_wei = tx.open_table(CHARGED_WEI)?;
            let ck = count_key(ask.sender, ask.day);
            let nk = nonce_key(ask.sender, ask.nonce);
            let sk = wei_key(b's', ask.sender, ask.day);
            let clk = wei_key(b'c', ask.cluster, ask.day);
            let current = counts.get(ck.as_slice())?.map(|v| v.value()).unwrap_or(0);
            let seen_today = charged.get(nk.as_slice())?.map(|v| v.value()) == Some(ask.day);
            let prev_wei = match charged_wei.get(nk.as_slice())?.map(|v| v.value()) {
                Some((d, w)) if d == ask.day => w,
                _ => 0,
            };
            let extra = ask.cost.saturating_sub(prev_wei);
            let sender_spent = wei.get(sk.as_slice())?.map(|v| v.value()).unwrap_or(0);
            let cluster_spent = wei.get(clk.as_slice())?.map(|v| v.value()).unwrap_or(0);
            if !seen_today && current >= ask.cap {
                (Charge::CapReached(current), false)
            } else if sender_spent.saturating_add(extra) > ask.sender_budget {
                (Charge::SenderBudget, false)
            } else if cluster_spent.saturating_add(extra) > ask.cluster_budget {
                (Charge::ClusterBudget, false)
            } else if !commit {
                (Charge::Allowed(current), false)
            } else {
                let mut changed = false;
                let count = if seen_today {
                    current
                } else {
                    let next = current.saturating_add(1);
                    counts.insert(ck.as_slice(), next)?;
                    charged.insert(nk.as_slice(), ask.day)?;
                    changed = true;
                    next
                };
                if extra > 0 {
                    wei.insert(sk.as_slice(), sender_spent.saturating_add(extra))?;
                    wei.insert(clk.as_slice(), cluster_spent.saturating_add(extra))?;
                    charged_wei.insert(nk.as_slice(), (ask.day, prev_wei.max(ask.cost)))?;
                    changed = true;
                }
                if seen_today {
                    (Charge::AlreadyCharged(count), changed)
                } else {
                    (Charge::Charged(count), changed)
                }
            }
        };
        if changed {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(outcome)
    }

    /// Deletes counters and charged nonces older than `keep_from_day`; returns rows removed.
    /// Run at startup so the file does not grow without bound.
    pub fn prune_before(&self, keep_from_day: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write()?;
        let mut removed = 0u64;
        {
            let mut counts = tx.open_table(COUNTS)?;
            let old: Vec<Vec<u8>> = counts
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(k, _)| {
                    let k = k.value();
                    k.len() == 28
                        && u64::from_be_bytes(k[20..].try_into().unwrap_or([0xff; 8]))
                            < keep_from_day
                })
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in old {
                counts.remove(k.as_slice())?;
                removed += 1;
            }
            let mut charged = tx.open_table(CHARGED)?;
            let old: Vec<Vec<u8>> = charged
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, d)| d.value() < keep_from_day)
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in old {
                charged.remove(k.as_slice())?;
                removed += 1;
            }
            let mut wei = tx.open_table(WEI)?;
            let old: Vec<Vec<u8>> = wei
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(k, _)| {
                    let k = k.value();
                    k.len() == 29
                        && u64::from_be_bytes(k[21..].try_into().unwrap_or([0xff; 8]))
                            < keep_from_day
                })
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in old {
                wei.remove(k.as_slice())?;
                removed += 1;
            }
            let mut charged_wei = tx.open_table(CHARGED_WEI)?;
            let old: Vec<Vec<u8>> = charged_wei
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| v.value().0 < keep_from_day)
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in old {
                charged_wei.remove(k.as_slice())?;
                removed += 1;
            }
        }
        tx.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_cap_once_per_nonce_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let a = Address::repeat_byte(0xa1);
        {
            let s = CounterStore::open(&path).expect("open");
            assert_eq!(
                s.try_charge(a, U256::from(0u8), 10, 2).expect("c"),
                Charge::Charged(1)
            );
            assert_eq!(
                s.try_charge(a, U256::from(0u8), 10, 2).expect("c"),
                Charge::AlreadyCharged(1)
            );
            assert_eq!(
                s.try_charge(a, U256::from(1u8), 10, 2).expect("c"),
                Charge::Charged(2)
            );
        }
        let s = CounterStore::open(&path).expect("reopen");
        assert_eq!(s.count(a, 10).expect("count"), 2);
        assert_eq!(
            s.try_charge(a, U256::from(2u8), 10, 2).expect("c"),
            Charge::CapReached(2)
        );
        assert_eq!(
            s.try_charge(a, U256::from(2u8), 11, 2).expect("c"),
            Charge::Charged(1),
            "new day"
        );
        assert_eq!(s.count(Address::repeat_byte(0xa2), 10).expect("count"), 0);
        assert_eq!(
            s.prune_before(11).expect("prune"),
            3,
            "one count row and two nonces of day 10"
        );
        assert_eq!(s.count(a, 10).expect("count"), 0);
        assert_eq!(s.count(a, 11).expect("count"), 1);
    }

    #[test]
    fn wei_budgets_per_sender_and_cluster_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.redb");
        let (a, b, c) = (
            Address::repeat_byte(0xa1),
            Address::repeat_byte(0xa2),
            Address::repeat_byte(0xcc),
        );
        let ask = |sender, nonce: u8, cost| Ask {
            sender,
            cluster: c,
            nonce: U256::from(nonce),
            day: 7,
            cap: 100,
            cost,
            sender_budget: 100,
            cluster_budget: 150,
        };
        {
            let s = CounterStore::open(&path).expect("open");
            assert_eq!(
                s.charge(&ask(a, 0, 60), true).expect("c"),
                Charge::Charged(1)
            );
            // A re-sign of the same nonce at a higher cost pays only the difference.
            assert_eq!(
                s.charge(&ask(a, 0, 80), true).expect("c"),
                Charge::AlreadyCharged(1)
            );
            assert_eq!(s.sender_wei(a, 7).expect("w"), 80);
            assert_eq!(
                s.charge(&ask(a, 1, 30), false).expect("c"),
                Charge::SenderBudget
            );
            assert_eq!(
                s.charge(&ask(a, 1, 20), true).expect("c"),
                Charge::Charged(2)
            );
        }
        let s = CounterStore::open(&path).expect("reopen");
        assert_eq!(s.sender_wei(a, 7).expect("w"), 100);
        assert_eq!(s.cluster_wei(c, 7).expect("w"), 100);
        assert_eq!(
            s.charge(&ask(b, 0, 60), true).expect("c"),
            Charge::ClusterBudget,
            "another sender of the same cluster"
        );
        assert_eq!(
            s.charge(&ask(b, 0, 50), true).expect("c"),
            Charge::Charged(1)
        );
        assert_eq!(s.cluster_wei(c, 7).expect("w"), 150);
        assert!(s.prune_before(8).expect("prune") > 0);
        assert_eq!(s.cluster_wei(c, 7).expect("w"), 0);
    }
}
