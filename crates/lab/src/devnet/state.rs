//! `<dir>/devnet.json`: everything `status`, `down` and the tests need to find a running devnet
//! again from another process. Written after every step of `up` (atomically: temp file, fsync,
//! rename), so a devnet that failed half-way can still be torn down completely.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::DevnetError;

/// The state file's name inside the devnet directory.
pub const STATE_FILE: &str = "devnet.json";

/// One detached process and how to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    pub name: String,
    pub ns: String,
    /// Process-group leader (pgid = pid).
    pub pid: u32,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

/// The deployed contracts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contracts {
    pub entry_point: Address,
    pub cluster_diamond_factory: Address,
    pub cluster_member_factory: Address,
    pub cluster_init: Address,
    pub sponsor_paymaster: Address,
    pub indexer_registry: Option<Address>,
    pub cluster: Address,
}

/// One node: its namespace, its link, its member contract and its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub index: usize,
    pub ns: String,
    /// The node's underlay address on its link to the gateway namespace.
    pub addr: Ipv4Addr,
    /// The gateway namespace's address on that link.
    pub gw_addr: Ipv4Addr,
    pub gw_if: String,
    pub node_if: String,
    pub member_contract: Address,
    pub member_id: B256,
    /// The mesh interface name (unique across namespaces: the WireGuard UAPI socket lives in
    /// the shared /var/run/wireguard).
    pub interface: String,
    pub dstack_socket: PathBuf,
    pub agent_socket: PathBuf,
    pub state_dir: PathBuf,
    /// The agent's `HEALTH_ADDR` inside the node's namespace (reached through the gateway).
    pub health_addr: String,
    pub devtee: Option<ProcRecord>,
    pub agent: Option<ProcRecord>,
}

/// The whole devnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetState {
    /// Prefix of every namespace and interface this devnet made (`amd<k>`).
    pub prefix: String,
    pub dir: PathBuf,
    pub repo: PathBuf,
    /// The `attestmesh` binary the services run.
    pub exe: PathBuf,
    pub gw_ns: String,
    /// Host end of the host ↔ gateway-namespace link, and both addresses.
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    /// The gateway namespace's "internet" address: every service listens there, reachable
    /// from the host over the host link and from every node through its default route.
    pub services_addr: Ipv4Addr,
    pub chain_id: u64,
    pub block_time: u64,
    pub rpc_url: String,
    pub bundler_url: Option<String>,
    pub sponsor_url: Option<String>,
    pub indexer_url: Option<String>,
    /// The Indexer's own "CVM" namespace, linked only to the gateway namespace.
    #[serde(default)]
    pub indexer_ns: Option<String>,
    pub gateway_domain: String,
    pub gateway_port: u16,
    /// Node slots the gateway has routes for (initial nodes plus spares for later joins).
    pub gateway_slots: usize,
    pub heartbeat_interval_ms: u64,
    pub poll_interval_ms: u64,
    /// The funded account everything was deployed from (anvil's first dev account).
    pub deployer: Address,
    pub contracts: Contracts,
    /// Long-running services (anvil, sponsor, alto and the gateway in the gateway namespace;
    /// the Indexer and its devtee in their own namespace).
    pub services: Vec<ProcRecord>,
    pub nodes: Vec<NodeRecord>,
    /// Notes about skipped optional parts (e.g. no Indexer).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Agents started → all healthy, for the last `up` that waited for it.
    pub convergence_ms: Option<u64>,
}

impl DevnetState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads `<dir>/devnet.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, DevnetError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| DevnetError::State(format!("{}: {e}", path.display())))
    }

    /// Atomic replace: a reader (`status` in another shell) never sees a torn file.
    pub fn save(&self) -> Result<(), DevnetError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| DevnetError::State(format!("encoding state: {e}")))?;
        attestmesh_atomicfile::write(&Self::path(&self.dir), &text, 0o644)?;
        Ok(())
    }

    /// Every process record: services, then devtees and agents.
    pub fn all_procs(&self) -> Vec<&ProcRecord> {
        let mut v: Vec<&ProcRecord> = self.services.iter().collect();
        for n in &self.nodes {
            v.extend(n.agent.iter());
            v.extend(n.devtee.iter());
        }
        v
    }

    pub fn service(&self, name: &str) -> Option<&ProcRecord> {
        self.services.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("amdn-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(DevnetState::load(&dir).unwrap().is_none());
        let proc = ProcRecord {
            name: "anvil".into(),
            ns: "amd0gw".into(),
            pid: 42,
            argv: vec!["anvil".into()],
            env: vec![("LOG".into(), "info".into())],
            log: dir.join("anvil.log"),
        };
        let s = DevnetState {
            prefix: "amd0".into(),
            dir: dir.clone(),
            repo: "/repo".into(),
            exe: "/bin/attestmesh".into(),
            gw_ns: "amd0gw".into(),
            host_if: "amd0h".into(),
            host_addr: Ipv4Addr::new(10, 79, 0, 1),
            services_addr: Ipv4Addr::new(10, 79, 0, 2),
            chain_id: 31337,
            block_time: 2,
            rpc_url: "http://10.79.0.2:8545".into(),
            bundler_url: None,
            sponsor_url: None,
            indexer_url: None,
            indexer_ns: None,
            gateway_domain: "d.test".into(),
            gateway_port: 443,
            gateway_slots: 11,
            heartbeat_interval_ms: 2000,
            poll_interval_ms: 1000,
            deployer: Address::repeat_byte(1),
            contracts: Contracts::default(),
            services: vec![proc.clone()],
            nodes: vec![],
            notes: vec!["n".into()],
            convergence_ms: Some(1),
        };
        s.save().unwrap();
        let back = DevnetState::load(&dir).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.all_procs(), vec![&proc]);
        std::fs::write(DevnetState::path(&dir), "{").unwrap();
        assert!(DevnetState::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
