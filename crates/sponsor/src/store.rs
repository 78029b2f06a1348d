//! Per-sender daily operation counters in an embedded database (redb), so that a restart of the
//! sponsor does not hand every node a fresh allowance.
//!
//! A charge is keyed by `(sender, nonce)`: a wallet that asks `pm_getPaymasterData` twice for the
//! same operation (a retry after a bundler hiccup) is charged once, because the EntryPoint will
//! accept only one operation per nonce anyway. Days are UTC days (`unix_time / 86400`).

use std::path::Path;

use alloy_primitives::{Address, U256};
use redb::{Database, ReadableTable, TableDefinition};

/// `sender(20) ‖ day(8, BE)` → operations charged that day.
const COUNTS: TableDefinition<&[u8], u32> = TableDefinition::new("daily_counts_v1");
/// `sender(20) ‖ nonce(32)` → the day it was charged.
const CHARGED: TableDefinition<&[u8], u64> = TableDefinition::new("charged_nonces_v1");

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

    /// Charges one operation to `sender` on `day` unless the cap is reached or this nonce was
    /// already charged today. One write transaction, so concurrent requests cannot overshoot.
    pub fn try_charge(
        &self,
        sender: Address,
        nonce: U256,
        day: u64,
        cap: u32,
    ) -> Result<Charge, StoreError> {
        let tx = self.db.begin_write()?;
        let outcome = {
            let mut counts = tx.open_table(COUNTS)?;
            let mut charged = tx.open_table(CHARGED)?;
            let ck = count_key(sender, day);
            let nk = nonce_key(sender, nonce);
            let current = counts.get(ck.as_slice())?.map(|v| v.value()).unwrap_or(0);
            let seen_today = charged.get(nk.as_slice())?.map(|v| v.value()) == Some(day);
            if seen_today {
                Charge::AlreadyCharged(current)
            } else if current >= cap {
                Charge::CapReached(current)
            } else {
                let next = current.saturating_add(1);
                counts.insert(ck.as_slice(), next)?;
                charged.insert(nk.as_slice(), day)?;
                Charge::Charged(next)
            }
        };
        match outcome {
            Charge::Charged(_) => tx.commit()?,
            _ => tx.abort()?,
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
}
