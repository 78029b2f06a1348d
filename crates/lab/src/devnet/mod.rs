//! The one-command local devnet (DESIGN §12): anvil, EntryPoint v0.7, the AttestMesh infra and
//! one cluster, the sponsor service, alto, the Indexer, the dev gateway and N × (devtee + agent),
//! each node in its own network namespace behind the gateway namespace that plays "the
//! internet" (DESIGN §6.4).
//!
//! Everything runs detached (own process group, log file, pid in `<dir>/devnet.json`), so `up`
//! returns while the devnet keeps running, `status` and `down` find it again from any shell, and
//! a failed `up` can always be cleaned up. The library is what `attestmesh devnet` and the lab
//! tests drive; it shells out to `ip` like the rest of the lab.

mod netns;
mod proc;
pub mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall as _, SolValue as _};
use attestmesh_chain::bindings::{ClusterInitArgs, IClusterMemberFactory};
use attestmesh_chain::deploy::{self, Artifacts};
use attestmesh_chain::devstack::{self, ANVIL_KEY_8, ANVIL_KEY_9, AltoConfig, AnvilConfig};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::OwnerKey;
use serde::Serialize;

pub use netns::{connect_in_ns, http_get_in_ns, listen_in_ns, with_ns};
pub use proc::alive;
pub use state::{Contracts, DevnetState, NodeRecord, ProcRecord};

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
/// Each agent's health endpoint, on its own namespace's loopback.
pub const HEALTH_ADDR: &str = "127.0.0.1:9090";
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
    Rpc: attestmesh_chain::rpc::RpcError
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

/// True when this process may build namespaces.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds the repository root from `start` upward (the directory holding `artifacts/` and
/// `package.json`), so `attestmesh devnet up` works from anywhere inside a checkout.
pub fn find_repo(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|d| {
        (d.join("artifacts/EntryPointV07.json").is_file() && d.join("package.json").is_file())
            .then(|| d.to_path_buf())
    })
}

/// Root, TUN, iproute2, and what `npm ci` installs; the first missing one is reported.
pub fn check_prerequisites(cfg: &UpConfig) -> Result<(), DevnetError> {
    if !is_root() {
        return Err(DevnetError::NeedsRoot);
    }
    let missing = |what: &str, path: &Path, hint: &str| DevnetError::Prerequisite {
        what: what.into(),
        path: path.to_path_buf(),
        hint: hint.into(),
    };
    let tun = Path::new("/dev/net/tun");
    if !tun.exists() {
        return Err(missing(
            "/dev/net/tun",
            tun,
            "load the tun module (`modprobe tun`) or run the container with --device /dev/net/tun",
        ));
    }
    if std::process::Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(missing(
            "iproute2 (`ip`)",
            Path::new("ip"),
            "install iproute2",
        ));
    }
    let anvil = AnvilConfig::from_repo(&cfg.repo).bin;
    if !anvil.exists() {
        return Err(missing("anvil", &anvil, "run `npm ci` at the repo root"));
    }
    let alto = AltoConfig::from_repo(&cfg.repo, "", &cfg.dir);
    if !alto.alto_js.exists() {
        return Err(missing(
            "the alto bundler",
            &alto.alto_js,
            "run `npm ci` at the repo root",
        ));
    }
    if std::process::Command::new(&alto.node)
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err(missing(
            "node (Node.js, runs alto)",
            &alto.node,
            "install Node.js 20+ or set NODE",
        ));
    }
    for name in ["EntryPointV07", "ClusterDiamondFactory", "SponsorPaymaster"] {
        let p = cfg.repo.join("artifacts").join(format!("{name}.json"));
        if !p.is_file() {
            return Err(missing(
                "contract artifacts",
                &p,
                "run from a complete checkout (artifacts/ is committed)",
            ));
        }
    }
    if !cfg.exe.is_file() {
        return Err(missing(
            "the attestmesh binary",
            &cfg.exe,
            "build it (`cargo build -p attestmesh-cli`)",
        ));
    }
    Ok(())
}

/// True when `exe` has subcommand `sub` (the devnet adapts to what this build contains).
fn has_subcommand(exe: &Path, sub: &str) -> bool {
    std::process::Command::new(exe)
        .args([sub, "--help"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

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
        let log = self.log_path(name);
        let rec = proc::spawn_in_ns(name, &self.state.gw_ns, &argv, &env, &log)?;
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

    async fn build(&mut self, cfg: &UpConfig, progress: Progress<'_>) -> Result<(), DevnetError> {
        let total = 11;
        let step = |n: usize, msg: &str| progress(&format!("[{n}/{total}] {msg}"));
        let artifacts = Artifacts::new(cfg.repo.join("artifacts"));

        step(
            1,
            &format!(
                "network: gateway namespace {} (\"the internet\", services on {}), host link {} ({})",
                self.state.gw_ns,
                self.state.services_addr,
                self.state.host_if,
                self.state.host_addr
            ),
        );
        netns::create_gateway(
            &self.state.gw_ns,
            &self.state.host_if,
            self.state.host_addr,
            self.state.services_addr,
        )?;

        step(
            2,
            &format!(
                "anvil on {} (block time {} s)",
                self.state.rpc_url, cfg.block_time
            ),
        );
        // Setup mines on every transaction (seconds, not minutes); the block time applies from
        // the moment the agents start, which is what the convergence figure measures.
        let anvil_bin = AnvilConfig::from_repo(&cfg.repo).bin;
        let anvil = self.spawn_service(
            "anvil",
            vec![
                anvil_bin.display().to_string(),
                "--host".into(),
                "0.0.0.0".into(),
                "--port".into(),
                RPC_PORT.to_string(),
            ],
            vec![],
        )?;
        let chain_id = wait_for(
            "anvil",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                check_running(&anvil)?;
                Ok(self.rpc.chain_id().await.ok())
            },
        )
        .await?;
        self.state.chain_id = chain_id;
        let accounts = self.rpc.accounts().await?;
        let deployer = *accounts
            .first()
            .ok_or_else(|| DevnetError::Setup("anvil has no unlocked accounts".into()))?;
        self.state.deployer = deployer;
        let key_file = self.state.dir.join("deployer.key");
        write_secret(&key_file, DEPLOYER_KEY)?;
        self.save()?;

        step(
            3,
            "EntryPoint v0.7 at its canonical address (published artifact, deterministic deployer)",
        );
        let entry_point = devstack::deploy_entry_point(&self.rpc, deployer, &artifacts).await?;
        self.state.contracts.entry_point = entry_point;

        step(
            4,
            "AttestMesh infra and one cluster (devtee KMS root allowlisted, any device, factory members)",
        );
        let infra = deploy::deploy_infra(&self.rpc, deployer, &artifacts, entry_point).await?;
        let registry = deploy::deploy(
            &self.rpc,
            deployer,
            &artifacts,
            "IndexerRegistry",
            &deployer.abi_encode(),
        )
        .await?;
        let cidr = attestmesh_core::mesh::MeshCidr::new(MESH_CIDR.0, MESH_CIDR.1)
            .map_err(|e| DevnetError::Setup(format!("mesh CIDR: {e}")))?;
        let args = ClusterInitArgs {
            clusterOwner: deployer,
            meshCidrIp: cidr.ip(),
            meshPrefix: cidr.prefix(),
            memberFactory: infra.member_factory,
            kmsRoots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
            composeHashes: vec![],
            devices: vec![],
            appIds: vec![],
            allowAnyDevice: true,
            requireTcbUpToDate: false,
        };
        let cluster =
            deploy::deploy_cluster(&self.rpc, deployer, &infra, args, B256::repeat_byte(1)).await?;
        self.state.contracts = Contracts {
            entry_point,
            cluster_diamond_factory: infra.diamond_factory,
            cluster_member_factory: infra.member_factory,
            cluster_init: infra.cluster_init,
            sponsor_paymaster: Address::ZERO,
            indexer_registry: Some(registry),
            cluster,
        };
        self.save()?;

        step(5, "sponsor service and the SponsorPaymaster deposit");
        self.start_sponsor(&artifacts).await?;

        step(
            6,
            "alto bundler (in the gateway namespace, not on the host)",
        );
        self.start_alto(cfg).await?;

        step(7, "Indexer and its registry record");
        self.start_indexer(&key_file).await?;

        step(
            8,
            &format!(
                "dev gateway on :{GATEWAY_PORT} ({GATEWAY_DOMAIN}, routes for {} node slots)",
                self.state.gateway_slots
            ),
        );
        self.start_gateway().await?;

        step(
            9,
            &format!(
                "{} node namespaces, each with a devtee and a member contract from the factory",
                cfg.nodes
            ),
        );
        for i in 0..cfg.nodes {
            self.add_node_without_agent(i).await?;
        }

        let _: serde_json::Value = self
            .rpc
            .call(
                "evm_setIntervalMining",
                serde_json::json!([self.state.block_time]),
            )
            .await?;
        if !cfg.agents {
            step(10, "agents not started (--no-agents)");
            self.note("agents not started (--no-agents)")?;
            step(11, "ready");
            return Ok(());
        }
        if !has_subcommand(&self.state.exe, "node") {
            step(
                10,
                "agents skipped: this attestmesh build has no `node` subcommand yet",
            );
            self.note("agents skipped: this attestmesh build has no `node` subcommand")?;
            step(11, "ready");
            return Ok(());
        }
        step(
            10,
            &format!(
                "starting {} agents (`attestmesh node`), chain at {} s blocks",
                cfg.nodes, self.state.block_time
            ),
        );
        let t0 = Instant::now();
        for i in 0..cfg.nodes {
            self.start_agent(i)?;
        }
        step(11, "waiting until every node's /healthz is 200");
        let all: Vec<usize> = (0..cfg.nodes).collect();
        self.wait_healthy(&all, cfg.health_timeout, progress)
            .await?;
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.state.convergence_ms = Some(ms);
        self.save()?;
        Ok(())
    }

    fn note(&mut self, note: &str) -> Result<(), DevnetError> {
        self.state.notes.push(note.to_owned());
        self.save()
    }

    async fn start_sponsor(&mut self, artifacts: &Artifacts) -> Result<(), DevnetError> {
        // A fresh signing key per devnet: the paymaster trusts whatever the sponsor signs.
        let key = loop {
            let mut bytes = [0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            if let Ok(k) = OwnerKey::from_bytes(&bytes) {
                write_secret(
                    &self.state.dir.join("sponsor.key"),
                    &alloy_primitives::hex::encode(bytes),
                )?;
                break k;
            }
        };
        let deployer = self.state.deployer;
        let paymaster = devstack::deploy_sponsor_paymaster(
            &self.rpc,
            deployer,
            artifacts,
            self.state.contracts.entry_point,
            deployer,
            key.address(),
            U256::from(PAYMASTER_DEPOSIT_WEI),
        )
        .await?;
        self.state.contracts.sponsor_paymaster = paymaster;
        let dir = self.state.dir.clone();
        let argv = vec![
            self.exe(),
            "sponsor".into(),
            "--listen".into(),
            format!("0.0.0.0:{SPONSOR_PORT}"),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--chain-id".into(),
            self.state.chain_id.to_string(),
            "--entry-point".into(),
            self.state.contracts.entry_point.to_string(),
            "--paymaster".into(),
            paymaster.to_string(),
            "--member-factory".into(),
            self.state.contracts.cluster_member_factory.to_string(),
            "--cluster-factory".into(),
            self.state.contracts.cluster_diamond_factory.to_string(),
            "--signer-key-file".into(),
            dir.join("sponsor.key").display().to_string(),
            "--db-path".into(),
            dir.join("sponsor.redb").display().to_string(),
            "--daily-cap".into(),
            "100000".into(),
            // The sponsor pays for this devnet's own cluster only (the factories are open).
            "--trusted-cluster".into(),
            self.state.contracts.cluster.to_string(),
            // Lab runs send many operations from few nodes: budgets and the per-client rate
            // limit far above production defaults, the gas and fee bounds as in production.
            "--daily-wei-per-sender".into(),
            "1000000000000000000000".into(),
            "--daily-wei-per-cluster".into(),
            "1000000000000000000000".into(),
            "--rate-limit-per-sec".into(),
            "500".into(),
            "--rate-limit-burst".into(),
            "1000".into(),
        ];
        let rec = self.spawn_service("sponsor", argv, vec![("LOG".into(), "info".into())])?;
        let url = self.services_url(SPONSOR_PORT);
        let client = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        wait_for(
            "the sponsor service",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                check_running(&rec)?;
                Ok(client
                    .call::<Vec<Address>>("pm_supportedEntryPoints", serde_json::json!([]))
                    .await
                    .ok())
            },
        )
        .await?;
        self.state.sponsor_url = Some(url);
        self.save()
    }

    async fn start_alto(&mut self, cfg: &UpConfig) -> Result<(), DevnetError> {
        // alto binds 0.0.0.0 — inside the gateway namespace that is the namespace's own
        // addresses only, so the executor keys' bundler is not exposed on the host's network.
        let alto = AltoConfig::from_repo(&cfg.repo, &self.state.rpc_url, &self.state.dir);
        let argv = vec![
            alto.node.display().to_string(),
            alto.alto_js.display().to_string(),
            "--entrypoints".into(),
            self.state.contracts.entry_point.to_string(),
            "--executor-private-keys".into(),
            ANVIL_KEY_8.into(),
            "--utility-private-key".into(),
            ANVIL_KEY_9.into(),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--port".into(),
            BUNDLER_PORT.to_string(),
            "--safe-mode".into(),
            "false".into(),
            "--log-level".into(),
            "warn".into(),
        ];
        let rec = self.spawn_service("alto", argv, vec![])?;
        let url = self.services_url(BUNDLER_PORT);
        let client = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        let ep = self.state.contracts.entry_point;
        wait_for(
            "alto",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async {
                check_running(&rec)?;
                match client
                    .call::<Vec<Address>>("eth_supportedEntryPoints", serde_json::json!([]))
                    .await
                {
                    Ok(eps) if eps.contains(&ep) => Ok(Some(())),
                    Ok(eps) => Err(format!("alto serves {eps:?}, not {ep}")),
                    Err(_) => Ok(None),
                }
            },
        )
        .await?;
        self.state.bundler_url = Some(url);
        self.save()
    }

    async fn start_indexer(&mut self, key_file: &Path) -> Result<(), DevnetError> {
        if !has_subcommand(&self.state.exe, "indexer") {
            return self.note("no Indexer: this attestmesh build has no `indexer` subcommand; agents poll the chain");
        }
        let Some(registry) = self.state.contracts.indexer_registry else {
            return self.note("no Indexer: no IndexerRegistry");
        };
        let idir = self.state.dir.join("indexer");
        std::fs::create_dir_all(&idir)?;
        let dstack = idir.join("dstack.sock");
        // The Indexer's own (simulated) TEE; its app id is the registry it is recorded in.
        let tee = self.spawn_service(
            "indexer-devtee",
            vec![
                self.exe(),
                "devtee".into(),
                "--socket".into(),
                dstack.display().to_string(),
                "--app-id".into(),
                registry.to_string(),
            ],
            vec![("LOG".into(), "warn".into())],
        )?;
        wait_socket("the Indexer's devtee", &tee, &dstack).await?;
        let argv = vec![
            self.exe(),
            "indexer".into(),
            "run".into(),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--cluster-factory".into(),
            self.state.contracts.cluster_diamond_factory.to_string(),
            "--grpc-listen".into(),
            format!("0.0.0.0:{INDEXER_GRPC_PORT}"),
            "--http-listen".into(),
            format!("0.0.0.0:{INDEXER_HTTP_PORT}"),
            "--state-dir".into(),
            idir.join("state").display().to_string(),
            "--dstack-socket".into(),
            dstack.display().to_string(),
        ];
        let rec = self.spawn_service("indexer", argv, vec![("LOG".into(), "info".into())])?;
        let http = sock(self.state.services_addr, INDEXER_HTTP_PORT);
        wait_for(
            "the Indexer",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                check_running(&rec)?;
                let r = tokio::task::spawn_blocking(move || {
                    netns::http_get(http, "/healthz", Duration::from_secs(1))
                })
                .await
                .map_err(|e| e.to_string())?;
                Ok(r.ok().map(|_| ()))
            },
        )
        .await?;
        let pubkey = run_capture(
            &self.state.exe,
            &[
                "indexer",
                "pubkey",
                "--dstack-socket",
                &dstack.display().to_string(),
            ],
        )?;
        let endpoint = self.services_url(INDEXER_GRPC_PORT);
        run_capture(
            &self.state.exe,
            &[
                "indexer",
                "register",
                "--rpc-url",
                &self.state.rpc_url,
                "--registry",
                &registry.to_string(),
                "--endpoint",
                &endpoint,
                "--code-id",
                &attestmesh_tee::devtee::default_compose_hash().to_string(),
                "--pubkey",
                pubkey.trim(),
                "--private-key-file",
                &key_file.display().to_string(),
            ],
        )?;
        self.state.indexer_url = Some(endpoint);
        self.save()
    }

    async fn start_gateway(&mut self) -> Result<(), DevnetError> {
        let mut routes = String::from("# <app id> <node address>: one line per node slot\n");
        for i in 0..self.state.gateway_slots {
            let member = self.predict_member(i).await?;
            let (_, addr) = netns::node_link_addrs(i)?;
            routes.push_str(&format!("{member:x} {addr}\n"));
        }
        let file = self.state.dir.join("gateway.routes");
        std::fs::write(&file, routes)?;
        let argv = vec![
            self.exe(),
            "gateway".into(),
            "--listen".into(),
            format!("0.0.0.0:{GATEWAY_PORT}"),
            "--domain".into(),
            GATEWAY_DOMAIN.into(),
            "--route-file".into(),
            file.display().to_string(),
        ];
        let rec = self.spawn_service("gateway", argv, vec![("LOG".into(), "info".into())])?;
        let at = sock(self.state.services_addr, GATEWAY_PORT);
        wait_for(
            "the dev gateway",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                check_running(&rec)?;
                Ok(
                    std::net::TcpStream::connect_timeout(&at, Duration::from_millis(500))
                        .ok()
                        .map(|_| ()),
                )
            },
        )
        .await
    }

    async fn predict_member(&self, i: usize) -> Result<Address, DevnetError> {
        Ok(deploy::read(
            &self.rpc,
            self.state.contracts.cluster_member_factory,
            IClusterMemberFactory::predictMemberAddressCall {
                cluster: self.state.contracts.cluster,
                salt: member_salt(i),
            },
            "predictMemberAddress",
        )
        .await?)
    }

    /// Node slot `i`: namespace and link, member contract through the factory (the operator
    /// pays; the node holds no ETH), devtee serving that app id.
    async fn add_node_without_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        if i >= self.state.gateway_slots {
            return Err(DevnetError::Setup(format!(
                "node slot {i} has no gateway route (the gateway was started with {} slots)",
                self.state.gateway_slots
            )));
        }
        let p = self.state.prefix.clone();
        let ns = format!("{p}n{i}");
        let (gw_addr, addr) = netns::node_link_addrs(i)?;
        let ndir = self.state.dir.join("nodes").join(format!("n{i}"));
        std::fs::create_dir_all(&ndir)?;
        let cluster = self.state.contracts.cluster;
        let record = NodeRecord {
            index: i,
            ns: ns.clone(),
            addr,
            gw_addr,
            gw_if: format!("{p}g{i}"),
            node_if: format!("{p}v{i}"),
            member_contract: Address::ZERO,
            member_id: B256::ZERO,
            interface: format!("{p}w{i}"),
            dstack_socket: ndir.join("dstack.sock"),
            agent_socket: ndir.join("agent.sock"),
            state_dir: ndir.join("state"),
            health_addr: HEALTH_ADDR.into(),
            devtee: None,
            agent: None,
        };
        for s in [&record.dstack_socket, &record.agent_socket] {
            if s.as_os_str().len() > 107 {
                return Err(DevnetError::Setup(format!(
                    "{} is longer than a unix socket path may be (107 bytes): use a shorter --dir",
                    s.display()
                )));
            }
        }
        self.state.nodes.push(record);
        self.save()?;
        let n = self.state.nodes.len() - 1;
        {
            let r = &self.state.nodes[n];
            netns::create_node(
                &self.state.gw_ns,
                &r.ns,
                &r.gw_if,
                &r.node_if,
                r.gw_addr,
                r.addr,
            )?;
        }
        let member = self.predict_member(i).await?;
        let call = IClusterMemberFactory::deployMemberCall {
            cluster,
            salt: member_salt(i),
        };
        self.rpc
            .transact(
                self.state.deployer,
                Some(self.state.contracts.cluster_member_factory),
                &call.abi_encode(),
            )
            .await?;
        if self.rpc.code_at(member).await?.is_empty() {
            return Err(DevnetError::Setup(format!(
                "the member factory did not deploy node {i}'s member at {member}"
            )));
        }
        self.state.nodes[n].member_contract = member;
        self.state.nodes[n].member_id = attestmesh_core::ids::member_id(
            cluster,
            member,
            attestmesh_core::ids::DSTACK_ATTESTOR_ID,
        );
        let socket = self.state.nodes[n].dstack_socket.clone();
        let _ = std::fs::remove_file(&socket);
        let argv = vec![
            self.exe(),
            "devtee".into(),
            "--socket".into(),
            socket.display().to_string(),
            "--app-id".into(),
            member.to_string(),
        ];
        let log = self.log_path(&format!("n{i}-devtee"));
        let rec = proc::spawn_in_ns(
            &format!("n{i}-devtee"),
            &ns,
            &argv,
            &[("LOG".into(), "warn".into())],
            &log,
        )?;
        self.state.nodes[n].devtee = Some(rec.clone());
        self.save()?;
        wait_socket(&format!("node {i}'s devtee"), &rec, &socket).await
    }

    /// Adds node `index = nodes.len()` to a running devnet and starts its agent (the
    /// "a node joins later" path).
    pub async fn add_node(&mut self) -> Result<usize, DevnetError> {
        let i = self.state.nodes.len();
        self.add_node_without_agent(i).await?;
        self.start_agent(i)?;
        Ok(i)
    }

    /// The agent's command line for node `i`.
    fn agent_argv(&self, i: usize) -> Result<Vec<String>, DevnetError> {
        let n = self
            .state
            .nodes
            .get(i)
            .ok_or_else(|| DevnetError::Setup(format!("no node {i}")))?;
        let s = &self.state;
        let need = |v: &Option<String>, what: &str| {
            v.clone()
                .ok_or_else(|| DevnetError::Setup(format!("{what} is not running")))
        };
        let mut argv = vec![
            self.exe(),
            "node".into(),
            "--dstack-socket".into(),
            n.dstack_socket.display().to_string(),
            "--rpc-url".into(),
            s.rpc_url.clone(),
            "--bundler-url".into(),
            need(&s.bundler_url, "the bundler")?,
            "--paymaster-url".into(),
            need(&s.sponsor_url, "the sponsor service")?,
            "--chain-id".into(),
            s.chain_id.to_string(),
            "--entry-point".into(),
            s.contracts.entry_point.to_string(),
            "--gateway-domain".into(),
            s.gateway_domain.clone(),
            "--gateway-connect".into(),
            sock(s.services_addr, s.gateway_port).to_string(),
            "--agent-socket".into(),
            n.agent_socket.display().to_string(),
            "--health-addr".into(),
            n.health_addr.clone(),
            "--state-dir".into(),
            n.state_dir.display().to_string(),
            "--interface".into(),
            n.interface.clone(),
            "--heartbeat-interval-ms".into(),
            s.heartbeat_interval_ms.to_string(),
            "--poll-interval-ms".into(),
            s.poll_interval_ms.to_string(),
        ];
        if s.indexer_url.is_some()
            && let Some(r) = s.contracts.indexer_registry
        {
            argv.extend(["--indexer-registry".into(), r.to_string()]);
        }
        Ok(argv)
    }

    /// Starts (or restarts) node `i`'s agent with the same settings, state directory and keys.
    pub fn start_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        let argv = self.agent_argv(i)?;
        let n = &self.state.nodes[i];
        let _ = std::fs::remove_file(&n.agent_socket);
        let log = self.log_path(&format!("n{i}-agent"));
        let rec = proc::spawn_in_ns(
            &format!("n{i}-agent"),
            &n.ns,
            &argv,
            &[("LOG".into(), "info".into())],
            &log,
        )?;
        self.state.nodes[i].agent = Some(rec);
        self.save()
    }

    /// `kill -9` of node `i`'s agent: no chance to clean up, like a crashed VM.
    pub fn kill_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        let Some(rec) = self.state.nodes.get(i).and_then(|n| n.agent.clone()) else {
            return Err(DevnetError::Setup(format!("node {i} has no agent")));
        };
        proc::kill9(rec.pid);
        // A killed userspace WireGuard leaves its UAPI socket behind.
        let _ = std::fs::remove_file(wg_socket(&self.state.nodes[i].interface));
        Ok(())
    }

    /// Node `i`'s `/healthz`: (HTTP status, JSON body), fetched inside its namespace.
    pub fn health(&self, i: usize) -> Option<(u16, serde_json::Value)> {
        let n = self.state.nodes.get(i)?;
        node_health(n)
    }

    /// Waits until every listed node answers 200 on `/healthz`, reporting phase changes.
    pub async fn wait_healthy(
        &self,
        nodes: &[usize],
        limit: Duration,
        progress: Progress<'_>,
    ) -> Result<Duration, DevnetError> {
        let t0 = Instant::now();
        let mut last: Vec<String> = vec![String::new(); self.state.nodes.len()];
        loop {
            let mut all = true;
            for &i in nodes {
                let Some(n) = self.state.nodes.get(i) else {
                    return Err(DevnetError::Setup(format!("no node {i}")));
                };
                if let Some(a) = &n.agent
                    && !proc::alive(a.pid)
                {
                    return Err(DevnetError::Setup(format!(
                        "node {i}'s agent exited; last log lines ({}):\n{}",
                        a.log.display(),
                        proc::log_tail(&a.log, 20)
                    )));
                }
                let n2 = n.clone();
                let h = tokio::task::spawn_blocking(move || node_health(&n2))
                    .await
                    .ok()
                    .flatten();
                let (ok, phase) = match &h {
                    Some((200, _)) => (true, "healthy".to_owned()),
                    Some((_, v)) => (false, v["phase"].as_str().unwrap_or("?").to_owned()),
                    None => (false, "starting".to_owned()),
                };
                if let Some(l) = last.get_mut(i)
                    && *l != phase
                {
                    progress(&format!(
                        "      n{i}: {phase} ({:.1} s)",
                        t0.elapsed().as_secs_f64()
                    ));
                    *l = phase;
                }
                all &= ok;
            }
            if all {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > limit {
                return Err(DevnetError::NotReady {
                    what: "every node healthy".into(),
                    after: limit,
                    detail: format!(
                        "see the agents' logs in {}",
                        self.state.dir.join("logs").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The UAPI socket a userspace WireGuard interface serves (`wg show` reads it).
fn wg_socket(interface: &str) -> PathBuf {
    PathBuf::from("/var/run/wireguard").join(format!("{interface}.sock"))
}

fn node_health(n: &NodeRecord) -> Option<(u16, serde_json::Value)> {
    let addr: SocketAddr = n.health_addr.parse().ok()?;
    let (code, body) =
        netns::http_get_in_ns(&n.ns, addr, "/healthz", Duration::from_secs(2)).ok()?;
    Some((
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// Secrets of the dev stack (published or throwaway keys) still get mode 0600.
fn write_secret(path: &Path, text: &str) -> Result<(), DevnetError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

/// Waits until a devtee's socket exists (the file appears once it listens).
async fn wait_socket(what: &str, rec: &ProcRecord, socket: &Path) -> Result<(), DevnetError> {
    wait_for(
        what,
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            check_running(rec)?;
            Ok(socket.exists().then_some(()))
        },
    )
    .await
}

/// Runs a one-shot `attestmesh` command on the host and returns its stdout.
fn run_capture(exe: &Path, args: &[&str]) -> Result<String, DevnetError> {
    let out = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(DevnetError::Setup(format!(
            "`attestmesh {}` failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One row of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub namespace: String,
    pub member_contract: Address,
    pub member_id: B256,
    pub mesh_ip: Option<String>,
    pub phase: String,
    pub healthy: bool,
    pub live_peers: Option<u64>,
    pub agent_pid: Option<u32>,
    pub agent_running: bool,
    pub health_url: String,
    pub app_socket: PathBuf,
    pub dstack_socket: PathBuf,
    pub interface: String,
}

/// One service of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub pid: u32,
    pub running: bool,
    pub log: PathBuf,
}

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub dir: PathBuf,
    pub chain_id: u64,
    pub block_time: u64,
    pub rpc_url: String,
    pub bundler_url: Option<String>,
    pub sponsor_url: Option<String>,
    pub indexer_url: Option<String>,
    pub gateway: String,
    pub gateway_domain: String,
    pub gateway_namespace: String,
    pub cluster: Address,
    pub contracts: Contracts,
    pub chain_head: Option<u64>,
    pub convergence_ms: Option<u64>,
    pub services: Vec<ServiceStatus>,
    pub nodes: Vec<NodeStatus>,
    pub notes: Vec<String>,
}

/// Reads the state and probes every process and every agent's health.
pub async fn status(dir: &Path) -> Result<Status, DevnetError> {
    let dn = Devnet::open(dir)?;
    let s = &dn.state;
    let head = dn.rpc.block_number().await.ok();
    let mut nodes = Vec::new();
    for n in &s.nodes {
        let n2 = n.clone();
        let h = tokio::task::spawn_blocking(move || node_health(&n2))
            .await
            .ok()
            .flatten();
        let agent_running = n.agent.as_ref().is_some_and(|a| proc::alive(a.pid));
        let (phase, healthy, mesh_ip, live) = match &h {
            Some((code, v)) => (
                v["phase"].as_str().unwrap_or("?").to_owned(),
                *code == 200,
                v["mesh_ip"].as_str().map(str::to_owned),
                v["live_peers"].as_u64(),
            ),
            None if n.agent.is_none() => ("no agent".into(), false, None, None),
            None if agent_running => ("starting".into(), false, None, None),
            None => ("down".into(), false, None, None),
        };
        nodes.push(NodeStatus {
            name: format!("n{}", n.index),
            namespace: n.ns.clone(),
            member_contract: n.member_contract,
            member_id: n.member_id,
            mesh_ip,
            phase,
            healthy,
            live_peers: live,
            agent_pid: n.agent.as_ref().map(|a| a.pid),
            agent_running,
            health_url: n.health_url(),
            app_socket: n.agent_socket.clone(),
            dstack_socket: n.dstack_socket.clone(),
            interface: n.interface.clone(),
        });
    }
    Ok(Status {
        dir: s.dir.clone(),
        chain_id: s.chain_id,
        block_time: s.block_time,
        rpc_url: s.rpc_url.clone(),
        bundler_url: s.bundler_url.clone(),
        sponsor_url: s.sponsor_url.clone(),
        indexer_url: s.indexer_url.clone(),
        gateway: sock(s.services_addr, s.gateway_port).to_string(),
        gateway_domain: s.gateway_domain.clone(),
        gateway_namespace: s.gw_ns.clone(),
        cluster: s.contracts.cluster,
        contracts: s.contracts.clone(),
        chain_head: head,
        convergence_ms: s.convergence_ms,
        services: s
            .services
            .iter()
            .map(|p| ServiceStatus {
                name: p.name.clone(),
                pid: p.pid,
                running: proc::alive(p.pid),
                log: p.log.clone(),
            })
            .collect(),
        nodes,
        notes: s.notes.clone(),
    })
}

/// The human-readable form of [`Status`].
pub fn render_status(st: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "devnet {}", st.dir.display());
    let _ = writeln!(
        o,
        "  chain    {} (chain id {}, {} s blocks, head {})",
        st.rpc_url,
        st.chain_id,
        st.block_time,
        st.chain_head
            .map_or("unreachable".into(), |h| h.to_string())
    );
    let _ = writeln!(o, "  cluster  {}", st.cluster);
    let _ = writeln!(
        o,
        "  bundler  {}   sponsor {}   indexer {}",
        st.bundler_url.as_deref().unwrap_or("-"),
        st.sponsor_url.as_deref().unwrap_or("-"),
        st.indexer_url.as_deref().unwrap_or("-")
    );
    let _ = writeln!(o, "  gateway  {} ({})", st.gateway, st.gateway_domain);
    let svc: Vec<String> = st
        .services
        .iter()
        .map(|s| format!("{}{}", s.name, if s.running { "" } else { " (DOWN)" }))
        .collect();
    let _ = writeln!(o, "  services {}", svc.join(", "));
    if let Some(ms) = st.convergence_ms {
        let _ = writeln!(
            o,
            "  converged in {:.1} s after the agents started",
            ms as f64 / 1000.0
        );
    }
    for n in &st.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o.push('\n');
    o.push_str(&render_nodes(&st.nodes));
    o
}

/// The node table of [`render_status`] (header and one row per node), also printed alone by
/// `devnet add` for the node it added.
pub fn render_nodes(nodes: &[NodeStatus]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  {:<4} {:<10} {:<42} {:<15} {:<14} {:>5}  {:<8}",
        "node", "namespace", "member contract", "mesh IP", "phase", "peers", "agent"
    );
    for n in nodes {
        let _ = writeln!(
            o,
            "  {:<4} {:<10} {:<42} {:<15} {:<14} {:>5}  {:<8}",
            n.name,
            n.namespace,
            n.member_contract.to_string(),
            n.mesh_ip.as_deref().unwrap_or("-"),
            n.phase,
            n.live_peers.map_or("-".into(), |p| p.to_string()),
            match (n.agent_pid, n.agent_running) {
                (Some(pid), true) => pid.to_string(),
                (Some(_), false) => "exited".into(),
                (None, _) => "-".into(),
            }
        );
    }
    o
}

/// What `down` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    pub stopped: Vec<String>,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub removed_dir: bool,
}

/// Stops every process (whole process groups: agents first, so they remove their interfaces
/// and sockets while the chain is still there), removes every namespace and link with the
/// devnet's prefix, and the directory. Idempotent: a missing devnet is not an error.
pub fn down(dir: &Path) -> Result<DownReport, DevnetError> {
    let mut report = DownReport::default();
    let Some(state) = DevnetState::load(dir)? else {
        if dir.join("logs").is_dir() {
            std::fs::remove_dir_all(dir)?;
            report.removed_dir = true;
        }
        return Ok(report);
    };
    let grace = Duration::from_secs(10);
    let mut order: Vec<&ProcRecord> = Vec::new();
    for n in &state.nodes {
        order.extend(n.agent.iter());
    }
    for n in &state.nodes {
        order.extend(n.devtee.iter());
    }
    // Services in reverse start order: the gateway and Indexer before the chain they read.
    order.extend(state.services.iter().rev());
    // Agents stop in parallel: each may take its grace period to leave the mesh.
    std::thread::scope(|scope| {
        for p in &order {
            if proc::alive(p.pid) {
                report.stopped.push(format!("{} (pid {})", p.name, p.pid));
            }
            let pid = p.pid;
            scope.spawn(move || proc::stop_group(pid, grace));
        }
    });
    for n in &state.nodes {
        let _ = std::fs::remove_file(wg_socket(&n.interface));
    }
    let ours = |ns: &str| {
        ns == state.gw_ns
            || ns
                .strip_prefix(&format!("{}n", state.prefix))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    for ns in netns::list_namespaces().iter().filter(|ns| ours(ns)) {
        netns::delete_namespace(ns);
        report.namespaces.push(ns.clone());
    }
    if std::path::Path::new("/sys/class/net")
        .join(&state.host_if)
        .exists()
    {
        netns::delete_link(&state.host_if);
        report.links.push(state.host_if.clone());
    }
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|ns| ours(ns))
        .collect();
    // A killed process can linger briefly while the kernel tears down its TUN device and
    // sockets; give it a moment before calling it a leak.
    let settle = std::time::Instant::now() + Duration::from_secs(5);
    while order.iter().any(|p| proc::alive(p.pid)) && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<String> = order
        .iter()
        .filter(|p| proc::alive(p.pid))
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect();
    if !left.is_empty() || !alive.is_empty() {
        return Err(DevnetError::Setup(format!(
            "could not remove everything: namespaces {left:?}, processes {alive:?}"
        )));
    }
    std::fs::remove_dir_all(&state.dir)?;
    report.removed_dir = true;
    Ok(report)
}

/// Namespaces and host links left by any devnet (prefix `amd<k>`), for leak checks.
pub fn leftovers() -> Vec<String> {
    let is_devnet = |name: &str| {
        name.strip_prefix(netns::PREFIX_STEM)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    let mut v: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| is_devnet(n))
        .collect();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        v.extend(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| is_devnet(n)),
        );
    }
    v
}
