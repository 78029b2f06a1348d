//! Durable progress: the next block to index and the clusters discovered so far. Written
//! atomically (temp file + fsync + rename + fsync of the directory) so a crash at any point leaves
//! either the old or the new state, never a torn file. Losing the last write only re-indexes one
//! batch (pushes are at-least-once; subscribers dedup by block hash + log index).

use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// File name inside `--state-dir`.
pub const STATE_FILE: &str = "indexer-state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} was written for factory {found}, not {expected}")]
    OtherFactory {
        path: PathBuf,
        found: Address,
        expected: Address,
    },
}

/// What survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The factory this progress belongs to: a state dir reused for another factory is an
    /// operator error, not something to silently continue from.
    pub factory: Address,
    /// The first block not yet indexed.
    pub next_block: u64,
    /// Clusters discovered from `ClusterDeployed`, in discovery order.
    pub clusters: Vec<Address>,
}

/// Loads the state, or `None` if there is none yet.
pub fn load(dir: &Path, factory: Address) -> Result<Option<State>, StateError> {
    let path = dir.join(STATE_FILE);
    let raw = match std::fs::read(&path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let st: State = serde_json::from_slice(&raw).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    if st.factory != factory {
        return Err(StateError::OtherFactory {
            path,
            found: st.factory,
            expected: factory,
        });
    }
    Ok(Some(st))
}

/// Writes the state atomically and durably.
pub fn save(dir: &Path, st: &State) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    // Serializing a plain struct of addresses and integers cannot fail.
    let body = serde_json::to_vec_pretty(st).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    attestmesh_atomicfile::write(&path, &body, 0o644)
        .map_err(|source| StateError::Io { path, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_factory_check() {
        let dir = tempfile::tempdir().unwrap();
        let f = Address::repeat_byte(1);
        assert_eq!(load(dir.path(), f).unwrap(), None);
        let st = State {
            factory: f,
            next_block: 17,
            clusters: vec![Address::repeat_byte(2)],
        };
        save(dir.path(), &st).unwrap();
        assert_eq!(load(dir.path(), f).unwrap(), Some(st));
        assert!(matches!(
            load(dir.path(), Address::repeat_byte(3)),
            Err(StateError::OtherFactory { .. })
        ));
        std::fs::write(dir.path().join(STATE_FILE), b"{").unwrap();
        assert!(matches!(
            load(dir.path(), f),
            Err(StateError::Corrupt { .. })
        ));
    }
}
