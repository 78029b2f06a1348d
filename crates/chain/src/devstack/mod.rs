//! The local ERC-4337 stack: anvil, the canonical EntryPoint v0.7, a funded `SponsorPaymaster`
//! and the alto bundler on loopback. Used by the integration tests and by `attestmesh devnet`.
//! The test fixtures built on it (a [`Devchain`], the artifact directory, a development cluster)
//! are in `fixture`, re-exported here.
//!
//! Every process started here runs in its own process group and is killed (group-wide) when its
//! guard drops, even when a test panics: alto is a node program that may start helpers, and a
//! plain `kill` of the parent would orphan them with their ports bound.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256, address, b256};
use alloy_sol_types::{SolCall, SolValue};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::bindings::{EntryPoint, SponsorPaymaster};
use crate::deploy::{self, Artifacts, DeployError, ENTRY_POINT_V07};
use crate::rpc::{RpcClient, RpcError};

mod fixture;
pub use fixture::{ClusterSpec, Devchain, artifacts, dev_cluster_args, repo_root};

/// The deterministic deployment proxy (Arachnid's CREATE2 factory) anvil preloads.
pub const DETERMINISTIC_DEPLOYER: Address = address!("0x4e59b44847b379578588920ca78fbf26c0b4956c");
/// The salt the EntryPoint v0.7 was published with; with the published initcode it lands at
/// [`ENTRY_POINT_V07`] on every chain.
pub const ENTRY_POINT_V07_SALT: alloy_primitives::B256 =
    b256!("0x90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3");
/// anvil's default dev keys #8 and #9 (mnemonic "test test … junk"): the bundler's executor and
/// utility accounts, disjoint from the accounts tests deploy from.
pub const ANVIL_KEY_8: &str = "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97";
pub const ANVIL_KEY_9: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

const ALTO_LOOPBACK: &str = include_str!("alto-loopback.mjs");

/// Failures bringing the stack up.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("spawning {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited during startup ({status}); log: {log}")]
    Exited {
        what: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{what} did not become ready within {after:?}: {last}; log: {log}")]
    NotReady {
        what: &'static str,
        after: Duration,
        last: String,
        log: String,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    View(#[from] crate::read::ViewError),
    #[error("{0}")]
    Check(String),
}

/// A free loopback TCP port (bound and released; good enough for a local test stack).
pub fn free_port() -> Result<u16, StackError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child in its own process group, killed group-wide on drop.
#[derive(Debug)]
pub struct GroupChild {
    what: &'static str,
    child: Option<Child>,
}

impl GroupChild {
    /// Spawns `cmd` as the leader of a new process group (stdin closed).
    pub fn spawn(what: &'static str, mut cmd: Command) -> Result<Self, StackError> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|source| StackError::Spawn { what, source })?;
        Ok(Self {
            what,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status, if the leader has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Ok(raw) = i32::try_from(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return;
        };
        let group = Pid::from_raw(raw);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The leader may be gone while helpers of the group live on: always sweep the group.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        tracing::debug!(what = self.what, pid = raw, "process group stopped");
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    format!(
        "{} (last lines: {})",
        path.display(),
        lines[start..].join(" | ")
    )
}

/// anvil settings.
#[derive(Debug, Clone)]
pub struct AnvilConfig {
    /// The native anvil binary (not the npm shim, whose death would orphan anvil).
    pub bin: PathBuf,
    /// `None`: mine on every transaction; `Some(s)`: a block every `s` seconds, like a real chain.
    pub block_time: Option<u64>,
    pub port: Option<u16>,
}

impl AnvilConfig {
    /// `<repo>/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`, or `$ANVIL`.
    pub fn from_repo(repo: &Path) -> Self {
        let bin = std::env::var_os("ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"));
        Self {
            bin,
            block_time: None,
            port: None,
        }
    }
}

/// A running anvil on loopback.
#[derive(Debug)]
pub struct Anvil {
    pub url: String,
    pub port: u16,
    proc: GroupChild,
}

/// Fresh ports an [`Anvil::start`] without a fixed port tries before giving up.
const PORT_ATTEMPTS: usize = 3;

impl Anvil {
    /// Starts anvil. Without a fixed port it binds a free one; the port is picked a moment
    /// before anvil binds it, so if anvil exits during startup (another process took the port
    /// meanwhile) it is started again on a fresh port.
    pub async fn start(cfg: &AnvilConfig) -> Result<Self, StackError> {
        if cfg.port.is_some() {
            return Self::start_once(cfg).await;
        }
        let mut attempt = 1;
        loop {
            let mut fixed = cfg.clone();
            fixed.port = Some(free_port()?);
            match Self::start_once(&fixed).await {
                Err(StackError::Exited { .. }) if attempt < PORT_ATTEMPTS => attempt += 1,
                r => return r,
            }
        }
    }

    async fn start_once(cfg: &AnvilConfig) -> Result<Self, StackError> {
        if !cfg.bin.exists() {
            return Err(StackError::Missing {
                what: "anvil",
                path: cfg.bin.clone(),
                hint: "run `npm ci` at the repo root (it installs @foundry-rs/anvil) or set ANVIL",
            });
        }
        let port = match cfg.port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut cmd = Command::new(&cfg.bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--silent",
        ]);
        if let Some(bt) = cfg.block_time {
            cmd.args(["--block-time", &bt.to_string()]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        let mut proc = GroupChild::spawn("anvil", cmd)?;
        let url = format!("http://127.0.0.1:{port}");
        let rpc = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rpc.chain_id().await {
                Ok(_) => break,
                Err(e) => {
                    if let Some(status) = proc.exited() {
                        return Err(StackError::Exited {
                            what: "anvil",
                            status,
                            log: "stderr is inherited".into(),
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(StackError::NotReady {
                            what: "anvil",
                            after: Duration::from_secs(30),
                            last: e.to_string(),
                            log: "stderr is inherited".into(),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { url, port, proc })
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}

/// Deploys EntryPoint v0.7 at its canonical address from the published artifact
/// (`<artifacts>/EntryPointV07.json`) through the deterministic deployer. Idempotent: does
/// nothing when the code is already there.
pub async fn deploy_entry_point(
    rpc: &RpcClient,
    from: Address,
    artifacts: &Artifacts,
) -> Result<Address, StackError> {
    if !rpc.code_at(ENTRY_POINT_V07).await?.is_empty() {
        return Ok(ENTRY_POINT_V07);
    }
    if rpc.code_at(DETERMINISTIC_DEPLOYER).await?.is_empty() {
        return Err(StackError::Check(format!(
            "no deterministic deployer at {DETERMINISTIC_DEPLOYER} on this chain"
        )));
    }
    let mut data = ENTRY_POINT_V07_SALT.to_vec();
    data.extend_from_slice(&artifacts.bytecode("EntryPointV07")?);
    rpc.transact(from, Some(DETERMINISTIC_DEPLOYER), &data)
        .await?;
    if rpc.code_at(ENTRY_POINT_V07).await?.is_empty() {
        return Err(StackError::Check(format!(
            "EntryPoint did not land at {ENTRY_POINT_V07}: is the artifact the published 0.7.0 bytecode?"
        )));
    }
    Ok(ENTRY_POINT_V07)
}

/// Deploys `SponsorPaymaster(entryPoint, owner, signer)` and deposits `deposit` wei for it at the
/// EntryPoint (what the EntryPoint charges sponsored operations against).
pub async fn deploy_sponsor_paymaster(
    rpc: &RpcClient,
    from: Address,
    artifacts: &Artifacts,
    entry_point: Address,
    owner: Address,
    signer: Address,
    deposit: U256,
) -> Result<Address, StackError> {
    let paymaster = deploy::deploy(
        rpc,
        from,
        artifacts,
        "SponsorPaymaster",
        &(entry_point, owner, signer).abi_encode_params(),
    )
    .await?;
    fund_paymaster(rpc, from, paymaster, deposit).await?;
    Ok(paymaster)
}

/// Adds `amount` wei to the paymaster's EntryPoint deposit.
pub async fn fund_paymaster(
    rpc: &RpcClient,
    from: Address,
    paymaster: Address,
    amount: U256,
) -> Result<(), StackError> {
    rpc.transact_value(
        from,
        Some(paymaster),
        &SponsorPaymaster::depositCall {}.abi_encode(),
        amount,
    )
    .await?;
    Ok(())
}

/// The paymaster's deposit at the EntryPoint.
pub async fn deposit_of(
    rpc: &RpcClient,
    entry_point: Address,
    account: Address,
) -> Result<U256, StackError> {
    Ok(crate::read::view(
        rpc,
        entry_point,
        EntryPoint::balanceOfCall { account },
        crate::read::BlockTag::Latest,
    )
    .await?)
}

/// alto settings.
#[derive(Debug, Clone)]
pub struct AltoConfig {
    /// `node` (from `PATH` unless `$NODE`).
    pub node: PathBuf,
    /// alto's CLI entry (`node_modules/@pimlico/alto/esm/cli/alto.js`).
    pub alto_js: PathBuf,
    pub rpc_url: String,
    pub entry_point: Address,
    pub executor_key: String,
    pub utility_key: String,
    /// Listening port (always on loopback); `None` picks a free one.
    pub port: Option<u16>,
    /// Directory for the preload script and `alto-<port>.log`.
    pub work_dir: PathBuf,
    /// Extra flags (e.g. `--log-level debug`).
    pub extra_args: Vec<String>,
}

impl AltoConfig {
    /// Defaults for a repo checkout after `npm ci`, executor/utility = anvil keys #8/#9.
    pub fn from_repo(repo: &Path, rpc_url: &str, work_dir: &Path) -> Self {
        Self {
            node: std::env::var_os("NODE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("node")),
            alto_js: repo.join("node_modules/@pimlico/alto/esm/cli/alto.js"),
            rpc_url: rpc_url.to_string(),
            entry_point: ENTRY_POINT_V07,
            executor_key: ANVIL_KEY_8.into(),
            utility_key: ANVIL_KEY_9.into(),
            port: None,
            work_dir: work_dir.to_path_buf(),
            extra_args: vec![],
        }
    }
}

/// A running alto bundler, reachable only on 127.0.0.1.
#[derive(Debug)]
pub struct Alto {
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    proc: GroupChild,
}

impl Alto {
    /// Starts alto and waits until it answers `eth_supportedEntryPoints` with our EntryPoint.
    ///
    /// Flags and why: `--safe-mode false` because anvil has no `debug_traceCall` tracer alto's
    /// ERC-7562 checks need; `--deploy-simulations-contract` (default) deploys alto's
    /// simulation helpers through the deterministic deployer; the loopback preload pins the
    /// listener to 127.0.0.1 (alto itself always binds 0.0.0.0).
    pub async fn start(cfg: &AltoConfig) -> Result<Self, StackError> {
        if !cfg.alto_js.exists() {
            return Err(StackError::Missing {
                what: "alto",
                path: cfg.alto_js.clone(),
                hint: "run `npm ci` at the repo root (it installs @pimlico/alto)",
            });
        }
        std::fs::create_dir_all(&cfg.work_dir)?;
        let preload = cfg.work_dir.join("alto-loopback.mjs");
        std::fs::write(&preload, ALTO_LOOPBACK)?;
        let port = match cfg.port {
            Some(p) => p,
            None => free_port()?,
        };
        let log = cfg.work_dir.join(format!("alto-{port}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&cfg.node);
        cmd.arg("--import")
            .arg(format!("file://{}", preload.display()))
            .arg(&cfg.alto_js)
            .args(["--entrypoints", &cfg.entry_point.to_string()])
            .args(["--executor-private-keys", &cfg.executor_key])
            .args(["--utility-private-key", &cfg.utility_key])
            .args(["--rpc-url", &cfg.rpc_url])
            .args(["--port", &port.to_string()])
            .args(["--safe-mode", "false"])
            .args(["--log-level", "warn"])
            .args(&cfg.extra_args)
            .env("ATTESTMESH_LISTEN_HOST", "127.0.0.1")
            .stdout(out)
            .stderr(err);
        let mut proc = GroupChild::spawn("alto", cmd)?;
        let url = format!("http://127.0.0.1:{port}");
        let rpc = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        let limit = Duration::from_secs(60);
        let deadline = Instant::now() + limit;
        loop {
            match rpc
                .call::<Vec<Address>>("eth_supportedEntryPoints", serde_json::json!([]))
                .await
            {
                Ok(eps) if eps.contains(&cfg.entry_point) => break,
                Ok(eps) => {
                    return Err(StackError::Check(format!(
                        "alto serves {eps:?}, not {}",
                        cfg.entry_point
                    )));
                }
                Err(e) => {
                    if let Some(status) = proc.exited() {
                        return Err(StackError::Exited {
                            what: "alto",
                            status,
                            log: log_tail(&log),
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(StackError::NotReady {
                            what: "alto",
                            after: limit,
                            last: e.to_string(),
                            log: log_tail(&log),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            url,
            port,
            log,
            proc,
        })
    }

    /// The leader's pid (also the process-group id).
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Stops alto and every process of its group.
    pub fn stop(mut self) {
        self.proc.stop(Duration::from_secs(3));
    }
}
