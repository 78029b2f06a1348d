//! The one-command local devnet (DESIGN §12): anvil, EntryPoint v0.7, the AttestMesh infra and
//! one cluster, the sponsor service, alto, the Indexer, the dev gateway and N × (devtee + agent),
//! each node in its own network namespace behind the gateway namespace that plays "the
//! internet" (DESIGN §6.4).
//!
//! Everything runs detached (own process group, log file, pid in `<dir>/devnet.json`), so `up`
//! returns while the devnet keeps running, `status` and `down` find it again from any shell, and
//! a failed `up` can always be cleaned up. The library is what `attestmesh devnet` and the lab
//! tests drive; it shells out to `ip` like the rest of the lab.

mod chain;
pub mod netns;
mod nodes;
mod prereq;
pub mod proc;
mod reach;
mod services;
pub mod state;
mod status;
mod teardown;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall as _;
use attestmesh_chain::bindings::IClusterMemberFactory;
use attestmesh_chain::deploy;
use attestmesh_chain::devstack::{self, ANVIL_KEY_8, ANVIL_KEY_9, AltoConfig, AnvilConfig};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::OwnerKey;
use serde::Serialize;

use nodes::{node_health, wg_socket, write_secret};
use prereq::has_subcommand;
use services::wait_socket;

pub use netns::{connect_in_ns, listen_in_ns, with_ns};
pub use prereq::{check_prerequisites, find_repo, is_root};
pub use proc::alive;
pub use reach::GatewayReach;
pub use state::{Contracts, DevnetState, NodeRecord, ProcRecord};
pub use status::{NodeStatus, ServiceStatus, Status, render_nodes, render_status, status};
pub use teardown::{DownReport, down, leftovers};

/// anvil's first well-known development account (mnemonic "test test … junk"): deploys and
/// owns everything on the devnet. Published; never use it anywhere real.
pub const DEPLOYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The devnet's gateway domain: node hosts are `<app id>-<port>s.<domain>`.
pub const GATEWAY_DOMAIN: &str = "devnet.attestmesh.test";
/// Ports of the services in the gateway namespace.
pub const RPC_PORT: u16 = 8545;
pub const BUNDLER_PORT: u16 = 4337;
pub const SPONSOR_PORT: u16 = 4338;
pub const INDEXER_GRPC_PORT: u16 = 7070;
pub const INDEXER_HTTP_PORT: u16 = 7071;
pub const GATEWAY_PORT: u16 = 443;
/// Each agent's health endpoint: on every address of its own namespace, which only the gateway
/// reaches (as a dstack CVM's published port), at `<member>-9090.<domain>`.
pub const HEALTH_ADDR: &str = "0.0.0.0:9090";
pub const HEALTH_PORT: u16 = 9090;
/// The cluster's mesh range: disjoint from the lab's underlay (10.77/16, 10.79/16).
const MESH_CIDR: (u32, u8) = (0x0a0d_0000, 16);
/// The gateway is given routes for this many node slots beyond the initial ones: it reads its
/// routes once, and member addresses are predictable, so nodes added later need no gateway
/// restart (which would drop every peer's bridge).
const SPARE_SLOTS: usize = 8;
/// What the paymaster gets deposited at the EntryPoint: plenty for any devnet session.
const PAYMASTER_DEPOSIT_WEI: u128 = 100 * 10u128.pow(18);

/// Devnet failures. Each names what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(
        "the devnet needs root: it creates network namespaces and veth links (CAP_NET_ADMIN) and \
         every agent opens /dev/net/tun for its WireGuard interface; run it with sudo"
    )]
    NeedsRoot,
    #[error("{what} is missing ({path}): {hint}")]
    Prerequisite {
        what: String,
        path: PathBuf,
        hint: String,
    },
    #[error("a devnet is already running from {0} (`attestmesh devnet down` first)")]
    AlreadyRunning(PathBuf),
    #[error("no devnet in {0} (start one with `attestmesh devnet up`)")]
    NotRunning(PathBuf),
    #[error("starting {what}: {detail}")]
    Spawn { what: String, detail: String },
    #[error("{what} did not become ready within {after:?}: {detail}")]
    NotReady {
        what: String,
        after: Duration,
        detail: String,
    },
    #[error("{0}")]
    Setup(String),
    #[error("state file: {0}")]
    State(String),
    // Boxed: the chain crate's errors are large, and every `Result` here would carry them.
    #[error(transparent)]
    Lab(Box<crate::LabError>),
    #[error(transparent)]
    Stack(Box<devstack::StackError>),
    #[error(transparent)]
    Deploy(Box<deploy::DeployError>),
    #[error(transparent)]
    Rpc(Box<attestmesh_chain::rpc::RpcError>),
    /// The operators' deployment path (`attestmesh-ops`), which the devnet drives.
    #[error(transparent)]
    Ops(Box<attestmesh_ops::error::OpsError>),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),*) => {$(
        impl From<$ty> for DevnetError {
            fn from(e: $ty) -> Self {
                DevnetError::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Lab: crate::LabError,
    Stack: devstack::StackError,
    Deploy: deploy::DeployError,
    Rpc: attestmesh_chain::rpc::RpcError,
    Ops: attestmesh_ops::error::OpsError
);

/// Settings of `up`.
#[derive(Debug, Clone)]
pub struct UpConfig {
    pub nodes: usize,
    /// Seconds per block once the devnet runs (setup itself mines instantly).
    pub block_time: u64,
    /// The devnet directory (logs, sockets, state); made absolute.
    pub dir: PathBuf,
    /// The repository checkout: `artifacts/` and `node_modules/` (anvil, alto).
    pub repo: PathBuf,
    /// The `attestmesh` binary every service runs as.
    pub exe: PathBuf,
    /// Start the agents (off: everything up to them, for debugging the stack).
    pub agents: bool,
    pub heartbeat_interval_ms: u64,
    /// The agents' chain poll interval: short, because without pushes it bounds convergence.
    pub poll_interval_ms: u64,
    /// How long to wait for every node to be healthy.
    pub health_timeout: Duration,
}

impl UpConfig {
    pub fn new(repo: PathBuf, exe: PathBuf, dir: PathBuf) -> Self {
        Self {
            nodes: 3,
            block_time: 2,
            dir,
            repo,
            exe,
            agents: true,
            heartbeat_interval_ms: 2000,
            poll_interval_ms: 1000,
            health_timeout: Duration::from_secs(180),
        }
    }
}

/// Where progress goes: one line per step, as it happens.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

fn sock(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((addr, port))
}

/// The member-factory salt of node slot `i`: deterministic, so member addresses (and the
/// gateway's routes) are known before the members exist.
pub fn member_salt(i: usize) -> B256 {
    B256::left_padding_from(&(i as u64 + 1).to_be_bytes())
}

/// Polls `f` every `every` until it yields `Some` or `limit` passes.
async fn wait_for<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: F,
) -> Result<T, DevnetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let t0 = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if t0.elapsed() > limit {
            return Err(DevnetError::NotReady {
                what: what.into(),
                after: limit,
                detail: last,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Fails with the log tail when a just-started service died.
fn check_running(p: &ProcRecord) -> Result<(), String> {
    if proc::alive(p.pid) {
        Ok(())
    } else {
        Err(format!(
            "{} exited; last log lines ({}):\n{}",
            p.name,
            p.log.display(),
            proc::log_tail(&p.log, 15)
        ))
    }
}

/// A running devnet being built or driven. Holds the state and persists every change.
pub struct Devnet {
    pub state: DevnetState,
    rpc: RpcClient,
}

impl Devnet {
    /// Opens the devnet recorded in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DevnetError> {
        let state =
            DevnetState::load(dir)?.ok_or_else(|| DevnetError::NotRunning(dir.to_path_buf()))?;
        let rpc = RpcClient::new(&state.rpc_url)?.with_timeout(Duration::from_secs(10));
        Ok(Self { state, rpc })
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    fn save(&self) -> Result<(), DevnetError> {
        self.state.save()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.state.dir.join("logs").join(format!("{name}.log"))
    }

    /// The dev gateway's CA certificate (PEM), trusted by the agents.
    fn gateway_ca_file(&self) -> std::path::PathBuf {
        self.state.dir.join("gateway-ca.pem")
    }

    fn services_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.state.services_addr)
    }

    /// Starts a service in the gateway namespace and records it before waiting on it, so a
    /// hang still leaves it findable by `down`.
    fn spawn_service(
        &mut self,
        name: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<ProcRecord, DevnetError> {
        let ns = self.state.gw_ns.clone();
        self.spawn_service_in(&ns, name, argv, env)
    }

    /// Starts a service in namespace `ns` (a service "CVM") and records it as [`Self::spawn_service`].
    fn spawn_service_in(
        &mut self,
        ns: &str,
        name: &str,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<ProcRecord, DevnetError> {
        let log = self.log_path(name);
        let rec = proc::spawn_in_ns(name, ns, &argv, &env, &log)?;
        self.state.services.push(rec.clone());
        self.save()?;
        Ok(rec)
    }

    fn exe(&self) -> String {
        self.state.exe.display().to_string()
    }

    /// Brings the whole devnet up. On failure everything already started is torn down again
    /// (unless `keep_on_failure`, for post-mortems), so a failed `up` leaves nothing behind.
    pub async fn up(
        cfg: UpConfig,
        keep_on_failure: bool,
        progress: Progress<'_>,
    ) -> Result<Self, DevnetError> {
        if cfg.nodes == 0 {
            return Err(DevnetError::Setup("--nodes must be at least 1".into()));
        }
        if cfg.block_time == 0 {
            return Err(DevnetError::Setup(
                "--block-time must be at least 1 second".into(),
            ));
        }
        progress("checking prerequisites (root, /dev/net/tun, iproute2, npm ci, artifacts)");
        check_prerequisites(&cfg)?;
        if let Some(old) = DevnetState::load(&cfg.dir)? {
            if old.all_procs().iter().any(|p| proc::alive(p.pid)) {
                return Err(DevnetError::AlreadyRunning(cfg.dir.clone()));
            }
            progress("removing the remains of a previous devnet in the same directory");
            down(&cfg.dir)?;
        }
        std::fs::create_dir_all(cfg.dir.join("logs"))?;
        let dir = std::fs::canonicalize(&cfg.dir)?;
        let (prefix, k) = netns::pick_prefix()?;
        let (host_addr, services_addr) = netns::host_link_addrs(k);
        let state = DevnetState {
            gw_ns: format!("{prefix}gw"),
            host_if: format!("{prefix}h"),
            prefix,
            dir: dir.clone(),
            repo: cfg.repo.clone(),
            exe: cfg.exe.clone(),
            host_addr,
            services_addr,
            chain_id: 0,
            block_time: cfg.block_time,
            rpc_url: format!("http://{services_addr}:{RPC_PORT}"),
            bundler_url: None,
            sponsor_url: None,
            indexer_url: None,
            indexer_ns: None,
            gateway_domain: GATEWAY_DOMAIN.into(),
            gateway_port: GATEWAY_PORT,
            gateway_slots: cfg.nodes + SPARE_SLOTS,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            poll_interval_ms: cfg.poll_interval_ms,
            deployer: Address::ZERO,
            contracts: Contracts::default(),
            services: vec![],
            nodes: vec![],
            notes: vec![],
            convergence_ms: None,
        };
        state.save()?;
        let rpc = RpcClient::new(&state.rpc_url)?.with_timeout(Duration::from_secs(10));
        let mut dn = Devnet { state, rpc };
        match dn.build(&cfg, progress).await {
            Ok(()) => Ok(dn),
            Err(e) => {
                if keep_on_failure {
                    progress(&format!(
                        "failed; kept for inspection in {} (`attestmesh devnet down` removes it)",
                        dir.display()
                    ));
                } else {
                    progress("failed; tearing down what was started");
                    let _ = down(&dir);
                }
                Err(e)
            }
        }
    }

    fn note(&mut self, note: &str) -> Result<(), DevnetError> {
        self.state.notes.push(note.to_owned());
        self.save()
    }
}
