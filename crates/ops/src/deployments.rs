//! `deployments/<chain id>.json`: where the shared infrastructure of one chain lives.
//!
//! Every address in it is a deterministic CREATE2 address (see [`crate::infra`]), so the file
//! is a record and a convenience, not the source of truth: commands re-check code at each
//! address before relying on it, and `deploy-infra` can always rebuild the file from the chain.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::error::OpsError;

/// The shared contracts of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InfraAddresses {
    pub diamond_cut_facet: Address,
    pub diamond_loupe_facet: Address,
    pub ownership_facet: Address,
    pub attest_facet: Address,
    pub message_facet: Address,
    pub network_facet: Address,
    pub dstack_facet: Address,
    pub cluster_init: Address,
    pub cluster_diamond_factory: Address,
    pub cluster_member_factory: Address,
    /// The ClusterMember implementation the member factory created; `member bind` upgrades
    /// stock dstack apps to it.
    pub cluster_member_implementation: Address,
    pub indexer_registry: Address,
    pub sponsor_paymaster: Address,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployments {
    pub chain_id: u64,
    pub entry_point: Address,
    /// The CREATE2 deployer everything went through, and the salt.
    pub create2_deployer: Address,
    pub salt: B256,
    /// Owner of the IndexerRegistry and the SponsorPaymaster.
    pub owner: Address,
    pub paymaster_signer: Address,
    /// No infrastructure event is older than this block: where log scans start.
    pub from_block: u64,
    pub contracts: InfraAddresses,
}

impl Deployments {
    /// `<dir>/<chain id>.json`.
    pub fn path(dir: &Path, chain_id: u64) -> PathBuf {
        dir.join(format!("{chain_id}.json"))
    }

    /// Reads and checks the file for `chain_id`; `Ok(None)` when there is none.
    pub fn load(dir: &Path, chain_id: u64) -> Result<Option<Self>, OpsError> {
        let path = Self::path(dir, chain_id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(OpsError::Deployments {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let d: Deployments = serde_json::from_str(&text).map_err(|e| OpsError::Deployments {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if d.chain_id != chain_id {
            return Err(OpsError::Deployments {
                path,
                reason: format!(
                    "it is for chain {}, the RPC is chain {chain_id}",
                    d.chain_id
                ),
            });
        }
        Ok(Some(d))
    }

    /// Like [`Self::load`], but a missing file is an error telling what to run.
    pub fn require(dir: &Path, chain_id: u64) -> Result<Self, OpsError> {
        Self::load(dir, chain_id)?.ok_or_else(|| OpsError::Deployments {
            path: Self::path(dir, chain_id),
            reason: "not found: run `attestmesh cluster deploy-infra` for this chain first (or \
                     point --deployments-dir at the directory that has it)"
                .into(),
        })
    }

    /// Writes atomically (temp file + rename), so an interrupted run never leaves half a file.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, OpsError> {
        let path = Self::path(dir, self.chain_id);
        let write = |p: &Path, e: std::io::Error| OpsError::Write {
            path: p.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| write(dir, e))?;
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| OpsError::Unexpected(format!("serialising deployments: {e}")))?;
        text.push('\n');
        attestmesh_atomicfile::write(&path, text.as_bytes(), 0o644).map_err(|e| write(&path, e))?;
        Ok(path)
    }
}
