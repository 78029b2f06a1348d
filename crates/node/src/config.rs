//! The agent's configuration: flags with environment-variable twins (DESIGN §11).
//!
//! clap rejects what does not parse (naming the flag); [`NodeArgs::validate`] then checks what
//! parses but cannot work (a port used twice, a relative socket path, an interval of zero) and
//! fails with a message naming the environment variable, so an operator reading a container log
//! knows which setting to fix before anything touches the TEE or the chain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::Address;
use attestmesh_net::ingress::IngressLimits;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Every setting of `attestmesh node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Unix socket of the dstack guest agent (or devtee).
    #[arg(long, env = "DSTACK_SOCKET", default_value = "/var/run/dstack.sock")]
    pub dstack_socket: PathBuf,

    /// Chain JSON-RPC endpoint (http(s)://host[:port][/path]).
    #[arg(long, env = "RPC_URL")]
    pub rpc_url: String,

    /// ERC-4337 bundler JSON-RPC endpoint.
    #[arg(long, env = "BUNDLER_URL")]
    pub bundler_url: String,

    /// ERC-7677 paymaster endpoint; defaults to the bundler URL (hosted bundlers serve both).
    #[arg(long, env = "PAYMASTER_URL")]
    pub paymaster_url: Option<String>,

    /// ERC-7677 `context` sent with every paymaster request, a JSON object — e.g. a hosted
    /// paymaster's policy: `{"sponsorshipPolicyId":"sp_…"}`. Default `{}`.
    #[arg(long, env = "PAYMASTER_CONTEXT")]
    pub paymaster_context: Option<String>,

    /// Chain id; checked against the RPC's eth_chainId at boot.
    #[arg(long, env = "CHAIN_ID")]
    pub chain_id: u64,

    /// EntryPoint v0.7.
    #[arg(
        long,
        env = "ENTRY_POINT",
        default_value = "0x0000000071727De22E5E9d8BAf0edAc6f37da032"
    )]
    pub entry_point: Address,

    /// Gateway domain: peers are reached at `<app id>-<WG_TCP_PORT>s.<GATEWAY_DOMAIN>`.
    #[arg(long, env = "GATEWAY_DOMAIN")]
    pub gateway_domain: String,

    /// Dial this address instead of `<peer host>:443`, keeping the SNI (local runs, no DNS).
    #[arg(long, env = "GATEWAY_CONNECT")]
    pub gateway_connect: Option<SocketAddr>,

    /// TLS ingress port of the WireGuard-over-TCP bridge.
    #[arg(long, env = "WG_TCP_PORT", default_value_t = 51900)]
    pub wg_tcp_port: u16,

    /// Bridge ingress: connections held at once, all peers and TLS handshakes together (DESIGN
    /// §6.3). Keep well under the fd limit.
    #[arg(long, env = "WG_INGRESS_MAX_TOTAL", default_value_t = 512)]
    pub wg_ingress_max_total: usize,

    /// Bridge ingress: connections held at once per claimed peer name (one of them proven).
    #[arg(long, env = "WG_INGRESS_MAX_PER_PEER", default_value_t = 4)]
    pub wg_ingress_max_per_peer: usize,

    /// Bridge ingress: seconds a connection has to carry traffic for one of the claimed peer's
    /// WireGuard sessions before it is closed.
    #[arg(long, env = "WG_INGRESS_PROOF_TIMEOUT_SECS", default_value_t = 40)]
    pub wg_ingress_proof_timeout_secs: u64,

    /// Bridge ingress: seconds without a frame after which any connection is closed.
    #[arg(long, env = "WG_INGRESS_IDLE_TIMEOUT_SECS", default_value_t = 90)]
    pub wg_ingress_idle_timeout_secs: u64,

    /// WireGuard UDP listen port.
    #[arg(long, env = "WG_LISTEN_PORT", default_value_t = 51821)]
    pub wg_listen_port: u16,

    /// Heartbeat UDP port on the mesh IP (the same on every node).
    #[arg(long, env = "HEARTBEAT_PORT", default_value_t = 51820)]
    pub heartbeat_port: u16,

    /// Heartbeat interval in milliseconds.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 2000)]
    pub heartbeat_interval_ms: u64,

    /// PeerControl gRPC port on the mesh IP (the same on every node).
    #[arg(long, env = "PEER_CONTROL_PORT", default_value_t = 50051)]
    pub peer_control_port: u16,

    /// App API unix socket (created with mode 0600).
    #[arg(
        long,
        env = "AGENT_SOCKET",
        default_value = "/var/run/attestmesh/agent.sock"
    )]
    pub agent_socket: PathBuf,

    /// Address of the HTTP health, metrics and attestation endpoints.
    #[arg(long, env = "HEALTH_ADDR", default_value = "127.0.0.1:9090")]
    pub health_addr: SocketAddr,

    /// State directory (mode 0700) for the CSK cache and follower cursor; none = stateless.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Name of the mesh interface.
    #[arg(long, env = "INTERFACE", default_value = "attestmesh0")]
    pub interface: String,

    /// Chain-follower poll interval in milliseconds.
    #[arg(long, env = "POLL_INTERVAL_MS", default_value_t = 10_000)]
    pub poll_interval_ms: u64,

    /// Blocks an event must be buried under before the agent acts on it. Default per chain id:
    /// 0 on anvil (31337) and geth dev (1337), 10 on Base, Base Sepolia and any other chain.
    #[arg(long, env = "CONFIRMATIONS")]
    pub confirmations: Option<u64>,

    /// IndexerRegistry contract; none = chain polling only.
    #[arg(long, env = "INDEXER_REGISTRY")]
    pub indexer_registry: Option<Address>,

    /// Fraction (0.0..=1.0) of verified Indexer pushes whose repro stub the agent re-runs
    /// against its own RPC_URL (spot-checks the Indexer; 0 = never).
    #[arg(long, env = "INDEXER_REPRO_SAMPLE_RATE", default_value_t = DEFAULT_INDEXER_REPRO_SAMPLE_RATE)]
    pub indexer_repro_sample_rate: f64,

    /// PEM file of extra CA certificates trusted for an `https://` Indexer endpoint, on top of
    /// the webpki roots (a dev gateway's CA; production gateways have public certificates).
    #[arg(long, env = "INDEXER_CA_FILE")]
    pub indexer_ca_file: Option<PathBuf>,

    /// Accept an Indexer whose quote devtee simulated. Development only, and refused unless the
    /// chain is a development chain (anvil 31337, geth dev 1337): a simulated quote proves
    /// nothing.
    #[arg(long, env = "INDEXER_ALLOW_SIMULATED_QUOTES", default_value_t = false)]
    pub indexer_allow_simulated_quotes: bool,

    /// PCCS the agent fetches Intel's collateral from to verify the Indexer's TDX quote (any
    /// PCCS will do: the collateral is signed by Intel). dstack's default is Phala's.
    #[arg(long, env = "PCCS_URL", default_value = attestmesh_tee::pccs::PHALA_PCCS_URL)]
    pub pccs_url: String,

    /// TCB statuses of the Indexer's platform the agent accepts, comma-separated.
    #[arg(
        long,
        env = "INDEXER_TCB_STATUSES",
        default_value = "UpToDate,SWHardeningNeeded"
    )]
    pub indexer_tcb_statuses: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

/// A setting that parsed but cannot work. The first field names the environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Largest confirmation depth accepted: deeper than any real reorg, shallow enough to be a typo
/// guard (a node waiting 10 000 blocks would look dead).
pub const MAX_CONFIRMATIONS: u64 = 1024;
/// Heartbeat interval bounds: below 100 ms floods the mesh, above 60 s makes failure detection
/// (3 intervals) useless.
pub const HEARTBEAT_INTERVAL_RANGE_MS: (u64, u64) = (100, 60_000);
/// Poll interval bounds: below 100 ms hammers the RPC, above 10 minutes defeats "always poll".
pub const POLL_INTERVAL_RANGE_MS: (u64, u64) = (100, 600_000);

/// The bridge ingress's proof and idle deadlines must outlast WireGuard's 25 s persistent
/// keepalive (plus slack), or an idle real peer that redials is cut off before it can speak.
pub const MIN_INGRESS_TIMEOUT_SECS: u64 = 30;

/// Default share of Indexer pushes spot-checked against the agent's own RPC.
pub const DEFAULT_INDEXER_REPRO_SAMPLE_RATE: f64 = 0.05;

/// Validated configuration, what the runtime consumes.
#[derive(Debug, Clone)]
pub struct Config {
    pub dstack_socket: PathBuf,
    pub rpc_url: String,
    pub bundler_url: String,
    pub paymaster_url: String,
    /// The ERC-7677 context object sent to the paymaster.
    pub paymaster_context: serde_json::Value,
    pub chain_id: u64,
    pub entry_point: Address,
    pub gateway_domain: String,
    pub gateway_connect: Option<SocketAddr>,
    pub wg_tcp_port: u16,
    pub wg_ingress: IngressLimits,
    pub wg_listen_port: u16,
    pub heartbeat_port: u16,
    pub heartbeat_interval: Duration,
    pub peer_control_port: u16,
    pub agent_socket: PathBuf,
    pub health_addr: SocketAddr,
    pub state_dir: Option<PathBuf>,
    pub interface: String,
    pub poll_interval: Duration,
    pub confirmations: u64,
    pub indexer_registry: Option<Address>,
    pub indexer_repro_sample_rate: f64,
    /// Extra CA certificates (PEM) for `https://` Indexer endpoints; empty = webpki roots only.
    pub indexer_ca_pem: Vec<u8>,
    /// devtee-simulated Indexer quotes accepted (development chains only).
    pub indexer_allow_simulated_quotes: bool,
    /// Where Intel's collateral for the Indexer's quote is fetched.
    pub pccs_url: String,
    /// TCB statuses accepted for the Indexer's platform.
    pub indexer_tcb_policy: attestmesh_tee::dcap::TcbPolicy,
    pub log_format: LogFormat,
}

/// Largest `PAYMASTER_CONTEXT` accepted: a policy id and a few fields, not a document.
pub const MAX_PAYMASTER_CONTEXT_BYTES: usize = 4096;

/// Parses `PAYMASTER_CONTEXT`: a JSON object (ERC-7677 leaves its contents to the paymaster).
pub fn parse_paymaster_context(text: &str) -> Result<serde_json::Value, ConfigError> {
    if text.len() > MAX_PAYMASTER_CONTEXT_BYTES {
        return Err(bad(
            "PAYMASTER_CONTEXT",
            format!("{} bytes exceeds {MAX_PAYMASTER_CONTEXT_BYTES}", text.len()),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(bad(
            "PAYMASTER_CONTEXT",
            r#"must be a JSON object, e.g. {"sponsorshipPolicyId":"sp_…"}"#,
        )),
        Err(e) => Err(bad("PAYMASTER_CONTEXT", format!("not JSON: {e}"))),
    }
}

fn check_rpc_url(setting: &'static str, url: &str) -> Result<(), ConfigError> {
    // The chain crate's client speaks http and https (hosted Base endpoints); reject what it
    // cannot dial now rather than at the first call minutes into boot. The URL itself is not
    // echoed: hosted endpoints carry their API key in it.
    attestmesh_chain::rpc::RpcClient::new(url)
        .map(|_| ())
        .map_err(|_| bad(setting, "not of the form http(s)://host[:port][/path]"))
}

/// A DNS name usable as a TLS SNI: dot-separated labels of [a-z0-9-], no leading/trailing hyphen.
fn check_domain(domain: &str) -> Result<(), ConfigError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            "GATEWAY_DOMAIN",
            format!("{domain:?} is not a DNS name (labels of letters, digits and '-')"),
        ))
    }
}

impl NodeArgs {
    /// Checks every setting; the first problem wins and names its environment variable.
    pub fn validate(self) -> Result<Config, ConfigError> {
        check_rpc_url("RPC_URL", &self.rpc_url)?;
        check_rpc_url("BUNDLER_URL", &self.bundler_url)?;
        if let Some(p) = &self.paymaster_url {
            check_rpc_url("PAYMASTER_URL", p)?;
        }
        if self.chain_id == 0 {
            return Err(bad("CHAIN_ID", "must be a non-zero chain id"));
        }
        if self.entry_point.is_zero() {
            return Err(bad("ENTRY_POINT", "must not be the zero address"));
        }
        check_domain(&self.gateway_domain)?;
        if self.heartbeat_port == 0 {
            return Err(bad(
                "HEARTBEAT_PORT",
                "must be non-zero: peers send heartbeats to this fixed port",
            ));
        }
        if self.peer_control_port == 0 {
            return Err(bad(
                "PEER_CONTROL_PORT",
                "must be non-zero: peers dial this fixed port for the CSK",
            ));
        }
        if self.wg_tcp_port == 0 {
            return Err(bad(
                "WG_TCP_PORT",
                "must be non-zero: it is part of every peer's gateway host name",
            ));
        }
        if self.wg_listen_port != 0 && self.wg_listen_port == self.heartbeat_port {
            return Err(bad(
                "WG_LISTEN_PORT",
                format!(
                    "{} is also HEARTBEAT_PORT; WireGuard and heartbeats need distinct UDP ports",
                    self.wg_listen_port
                ),
            ));
        }
        if self.wg_tcp_port == self.peer_control_port {
            return Err(bad(
                "PEER_CONTROL_PORT",
                format!("{} is also WG_TCP_PORT", self.peer_control_port),
            ));
        }
        let (lo, hi) = HEARTBEAT_INTERVAL_RANGE_MS;
        if !(lo..=hi).contains(&self.heartbeat_interval_ms) {
            return Err(bad(
                "HEARTBEAT_INTERVAL_MS",
                format!("{} is outside {lo}..={hi}", self.heartbeat_interval_ms),
            ));
        }
        let (lo, hi) = POLL_INTERVAL_RANGE_MS;
        if !(lo..=hi).contains(&self.poll_interval_ms) {
            return Err(bad(
                "POLL_INTERVAL_MS",
                format!("{} is outside {lo}..={hi}", self.poll_interval_ms),
            ));
        }
        let confirmations = self
            .confirmations
            .unwrap_or_else(|| attestmesh_core::chains::default_confirmations(self.chain_id));
        if confirmations > MAX_CONFIRMATIONS {
            return Err(bad(
                "CONFIRMATIONS",
                format!("{confirmations} exceeds {MAX_CONFIRMATIONS}"),
            ));
        }
        let paymaster_context = match &self.paymaster_context {
            None => serde_json::json!({}),
            Some(text) => parse_paymaster_context(text)?,
        };
        if !self.agent_socket.is_absolute() || self.agent_socket.file_name().is_none() {
            return Err(bad(
                "AGENT_SOCKET",
                format!(
                    "{} must be an absolute file path",
                    self.agent_socket.display()
                ),
            ));
        }
        // sockaddr_un holds 108 bytes including the terminating NUL.
        if self.agent_socket.as_os_str().len() > 107 {
            return Err(bad(
                "AGENT_SOCKET",
                "path longer than 107 bytes cannot be a unix socket",
            ));
        }
        if !self.dstack_socket.is_absolute() {
            return Err(bad(
                "DSTACK_SOCKET",
                format!("{} must be an absolute path", self.dstack_socket.display()),
            ));
        }
        if let Some(d) = &self.state_dir
            && !d.is_absolute()
        {
            return Err(bad(
                "STATE_DIR",
                format!("{} must be an absolute path", d.display()),
            ));
        }
        let iface_ok = !self.interface.is_empty()
            && self.interface.len() <= 15
            && self
                .interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !iface_ok {
            return Err(bad(
                "INTERFACE",
                format!(
                    "{:?}: 1 to 15 bytes of letters, digits, '_', '-', '.'",
                    self.interface
                ),
            ));
        }
        if self.wg_ingress_max_total == 0 {
            return Err(bad("WG_INGRESS_MAX_TOTAL", "must be at least 1"));
        }
        if self.wg_ingress_max_per_peer < 2 {
            return Err(bad(
                "WG_INGRESS_MAX_PER_PEER",
                "must be at least 2: a redialling peer needs a slot beside its proven path",
            ));
        }
        for (setting, secs) in [
            (
                "WG_INGRESS_PROOF_TIMEOUT_SECS",
                self.wg_ingress_proof_timeout_secs,
            ),
            (
                "WG_INGRESS_IDLE_TIMEOUT_SECS",
                self.wg_ingress_idle_timeout_secs,
            ),
        ] {
            if secs < MIN_INGRESS_TIMEOUT_SECS {
                return Err(bad(
                    setting,
                    format!(
                        "{secs} is below {MIN_INGRESS_TIMEOUT_SECS}: it must outlast WireGuard's 25 s keepalive"
                    ),
                ));
            }
        }
        if self.indexer_registry.is_some_and(|r| r.is_zero()) {
            return Err(bad("INDEXER_REGISTRY", "must not be the zero address"));
        }
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.indexer_repro_sample_rate) {
            return Err(bad(
                "INDEXER_REPRO_SAMPLE_RATE",
                format!("{} is outside 0.0..=1.0", self.indexer_repro_sample_rate),
            ));
        }
        let indexer_ca_pem = match &self.indexer_ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    bad(
                        "INDEXER_CA_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(bad(
                        "INDEXER_CA_FILE",
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                pem
            }
        };
        if self.indexer_allow_simulated_quotes
            && !attestmesh_core::chains::is_dev_chain(self.chain_id)
        {
            return Err(bad(
                "INDEXER_ALLOW_SIMULATED_QUOTES",
                format!(
                    "chain {} is not a development chain (31337, 1337): simulated quotes prove nothing",
                    self.chain_id
                ),
            ));
        }
        attestmesh_tee::pccs::PccsClient::new(&self.pccs_url)
            .map_err(|e| bad("PCCS_URL", e.to_string()))?;
        let indexer_tcb_policy = attestmesh_tee::dcap::TcbPolicy::parse(&self.indexer_tcb_statuses)
            .map_err(|e| bad("INDEXER_TCB_STATUSES", e.to_string()))?;
        Ok(Config {
            paymaster_context,
            paymaster_url: self
                .paymaster_url
                .clone()
                .unwrap_or_else(|| self.bundler_url.clone()),
            dstack_socket: self.dstack_socket,
            rpc_url: self.rpc_url,
            bundler_url: self.bundler_url,
            chain_id: self.chain_id,
            entry_point: self.entry_point,
            gateway_domain: self.gateway_domain.to_ascii_lowercase(),
            gateway_connect: self.gateway_connect,
            wg_tcp_port: self.wg_tcp_port,
            wg_ingress: IngressLimits {
                max_total: self.wg_ingress_max_total,
                max_per_peer: self.wg_ingress_max_per_peer,
                proof_timeout: Duration::from_secs(self.wg_ingress_proof_timeout_secs),
                idle_timeout: Duration::from_secs(self.wg_ingress_idle_timeout_secs),
                ..IngressLimits::default()
            },
            wg_listen_port: self.wg_listen_port,
            heartbeat_port: self.heartbeat_port,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            peer_control_port: self.peer_control_port,
            agent_socket: self.agent_socket,
            health_addr: self.health_addr,
            state_dir: self.state_dir,
            interface: self.interface,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            confirmations,
            indexer_registry: self.indexer_registry,
            indexer_repro_sample_rate: self.indexer_repro_sample_rate,
            indexer_ca_pem,
            indexer_allow_simulated_quotes: self.indexer_allow_simulated_quotes,
            pccs_url: self.pccs_url,
            indexer_tcb_policy,
            log_format: self.log_format,
        })
    }
}

impl Config {
    /// The gateway host a member is reached at (DESIGN §6.1): the `s` suffix selects the
    /// gateway's TLS-passthrough route.
    pub fn gateway_host(&self, member_contract: Address) -> String {
        gateway_host(member_contract, self.wg_tcp_port, &self.gateway_domain)
    }
}

/// `<lowercase app id, no 0x>-<port>s.<domain>`.
pub fn gateway_host(member_contract: Address, wg_tcp_port: u16, domain: &str) -> String {
    format!(
        "{}-{wg_tcp_port}s.{domain}",
        alloy_primitives::hex::encode(member_contract.as_slice())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeArgs,
    }

    const BASE: &[&str] = &[
        "node",
        "--rpc-url",
        "http://127.0.0.1:8545",
        "--bundler-url",
        "http://127.0.0.1:4337",
        "--chain-id",
        "31337",
        "--gateway-domain",
        "Mesh.Example",
    ];

    fn parse(extra: &[&str]) -> Result<NodeArgs, clap::Error> {
        // Flags given in `extra` replace the base value (clap refuses a flag given twice).
        let mut v: Vec<&str> = vec![BASE[0]];
        for pair in BASE[1..].chunks(2) {
            if !extra.iter().any(|e| e.split('=').next() == Some(pair[0])) {
                v.extend_from_slice(pair);
            }
        }
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).map(|c| c.args)
    }

    fn err(extra: &[&str]) -> ConfigError {
        parse(extra).unwrap().validate().unwrap_err()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = parse(&[]).unwrap().validate().unwrap();
        assert_eq!(c.wg_tcp_port, 51900);
        assert_eq!(c.wg_listen_port, 51821);
        assert_eq!(c.wg_ingress, IngressLimits::default());
        assert_eq!(c.heartbeat_port, 51820);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(2000));
        assert_eq!(c.peer_control_port, 50051);
        assert_eq!(
            c.agent_socket,
            PathBuf::from("/var/run/attestmesh/agent.sock")
        );
        assert_eq!(c.health_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.interface, "attestmesh0");
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.confirmations, 0);
        assert_eq!(c.state_dir, None);
        assert_eq!(c.indexer_registry, None);
        assert_eq!(c.indexer_repro_sample_rate, 0.05);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.paymaster_url, "http://127.0.0.1:4337");
        assert_eq!(c.gateway_domain, "mesh.example");
        assert_eq!(c.entry_point, attestmesh_core::userop::ENTRY_POINT_V07);
    }

    #[test]
    fn missing_required_settings_are_named() {
        let e = Cli::try_parse_from(["node"]).unwrap_err().to_string();
        assert!(e.contains("--rpc-url"), "{e}");
        let e = Cli::try_parse_from(["node", "--rpc-url", "http://a:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--bundler-url"), "{e}");
    }

    #[test]
    fn malformed_values_are_named_by_clap() {
        let e = parse(&["--chain-id", "x"]).unwrap_err().to_string();
        assert!(e.contains("--chain-id"), "{e}");
        let e = parse(&["--gateway-connect", "nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--gateway-connect"), "{e}");
        let e = parse(&["--entry-point", "0x12"]).unwrap_err().to_string();
        assert!(e.contains("--entry-point"), "{e}");
        let e = parse(&["--log-format", "xml"]).unwrap_err().to_string();
        assert!(e.contains("--log-format"), "{e}");
        let e = parse(&["--health-addr", "9090"]).unwrap_err().to_string();
        assert!(e.contains("--health-addr"), "{e}");
    }

    #[test]
    fn urls() {
        assert_eq!(err(&["--rpc-url", "ws://x:1"]).setting, "RPC_URL");
        // Production endpoints (Base, Base Sepolia) are https only.
        let c = parse(&["--rpc-url", "https://sepolia.base.org"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.rpc_url, "https://sepolia.base.org");
        assert_eq!(err(&["--bundler-url", "localhost"]).setting, "BUNDLER_URL");
        assert_eq!(
            err(&["--paymaster-url", "ftp://a:1"]).setting,
            "PAYMASTER_URL"
        );
        let c = parse(&["--paymaster-url", "http://p:1"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.paymaster_url, "http://p:1");
    }

    #[test]
    fn chain_and_entry_point() {
        assert_eq!(err(&["--chain-id", "0"]).setting, "CHAIN_ID");
        assert_eq!(
            err(&[
                "--entry-point",
                "0x0000000000000000000000000000000000000000"
            ])
            .setting,
            "ENTRY_POINT"
        );
        assert_eq!(
            err(&[
                "--indexer-registry",
                "0x0000000000000000000000000000000000000000"
            ])
            .setting,
            "INDEXER_REGISTRY"
        );
    }

    #[test]
    fn indexer_quote_trust() {
        // Production defaults: no simulated quotes, Phala's PCCS, up-to-date platforms.
        let c = parse(&["--chain-id", "8453"]).unwrap().validate().unwrap();
        assert!(!c.indexer_allow_simulated_quotes);
        assert_eq!(c.pccs_url, "https://pccs.phala.network");
        assert_eq!(
            c.indexer_tcb_policy,
            attestmesh_tee::dcap::TcbPolicy::default()
        );
        // Simulated quotes: only on a development chain.
        let e = err(&["--chain-id", "8453", "--indexer-allow-simulated-quotes"]);
        assert_eq!(e.setting, "INDEXER_ALLOW_SIMULATED_QUOTES");
        assert!(e.to_string().contains("not a development chain"), "{e}");
        let c = parse(&["--chain-id", "31337", "--indexer-allow-simulated-quotes"])
            .unwrap()
            .validate()
            .unwrap();
        assert!(c.indexer_allow_simulated_quotes);
        assert_eq!(err(&["--pccs-url", "pccs.example"]).setting, "PCCS_URL");
        let e = err(&["--indexer-tcb-statuses", "UpToDate,Revoked"]);
        assert_eq!(e.setting, "INDEXER_TCB_STATUSES");
        assert!(e.to_string().contains("Revoked"), "{e}");
        let c = parse(&["--indexer-tcb-statuses", "UpToDate"])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.indexer_tcb_policy.accept, vec!["UpToDate".to_string()]);
    }

    #[test]
    fn indexer_repro_sample_rate() {
        for r in ["1.01", "-0.1", "NaN", "inf"] {
            let flag = format!("--indexer-repro-sample-rate={r}");
            let e = err(&[&flag]);
            assert_eq!(e.setting, "INDEXER_REPRO_SAMPLE_RATE", "{r}");
            assert!(
                e.to_string()
                    .starts_with("invalid setting INDEXER_REPRO_SAMPLE_RATE:"),
                "{e}"
            );
        }
        for r in ["0", "0.5", "1"] {
            let c = parse(&["--indexer-repro-sample-rate", r])
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(c.indexer_repro_sample_rate.to_string(), r);
        }
        let e = parse(&["--indexer-repro-sample-rate", "often"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--indexer-repro-sample-rate"), "{e}");
    }

    #[test]
    fn wg_ingress_limits() {
        for (flag, setting) in [
            ("--wg-ingress-max-total=0", "WG_INGRESS_MAX_TOTAL"),
            ("--wg-ingress-max-per-peer=1", "WG_INGRESS_MAX_PER_PEER"),
            (
                "--wg-ingress-proof-timeout-secs=29",
                "WG_INGRESS_PROOF_TIMEOUT_SECS",
            ),
            (
                "--wg-ingress-idle-timeout-secs=5",
                "WG_INGRESS_IDLE_TIMEOUT_SECS",
            ),
        ] {
            assert_eq!(err(&[flag]).setting, setting, "{flag}");
        }
        let c = parse(&[
            "--wg-ingress-max-total",
            "64",
            "--wg-ingress-max-per-peer",
            "2",
            "--wg-ingress-proof-timeout-secs",
            "30",
            "--wg-ingress-idle-timeout-secs",
            "120",
        ])
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.wg_ingress.max_total, 64);
        assert_eq!(c.wg_ingress.max_per_peer, 2);
        assert_eq!(c.wg_ingress.proof_timeout, Duration::from_secs(30));
        assert_eq!(c.wg_ingress.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn gateway_domain() {
        for d in ["", "a..b", "x.-a.b", "a_b.c", "a b"] {
            let flag = format!("--gateway-domain={d}");
            assert_eq!(err(&[&flag]).setting, "GATEWAY_DOMAIN", "{d}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(err(&["--heartbeat-port", "0"]).setting, "HEARTBEAT_PORT");
        assert_eq!(
            err(&["--peer-control-port", "0"]).setting,
            "PEER_CONTROL_PORT"
        );
        assert_eq!(err(&["--wg-tcp-port", "0"]).setting, "WG_TCP_PORT");
        assert_eq!(
            err(&["--wg-listen-port", "51820"]).setting,
            "WG_LISTEN_PORT"
        );
        assert_eq!(
            err(&["--peer-control-port", "51900"]).setting,
            "PEER_CONTROL_PORT"
        );
        let e = parse(&["--wg-listen-port", "70000"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--wg-listen-port"), "{e}");
    }

    #[test]
    fn intervals_and_confirmations() {
        assert_eq!(
            err(&["--heartbeat-interval-ms", "0"]).setting,
            "HEARTBEAT_INTERVAL_MS"
        );
        assert_eq!(
            err(&["--heartbeat-interval-ms", "60001"]).setting,
            "HEARTBEAT_INTERVAL_MS"
        );
        assert_eq!(
            err(&["--poll-interval-ms", "5"]).setting,
            "POLL_INTERVAL_MS"
        );
        assert_eq!(err(&["--confirmations", "5000"]).setting, "CONFIRMATIONS");
        let c = |extra: &[&str]| parse(extra).unwrap().validate().unwrap().confirmations;
        // Per-chain defaults, and an explicit value (even 0) wins.
        assert_eq!(c(&[]), 0);
        assert_eq!(c(&["--chain-id", "8453"]), 10);
        assert_eq!(c(&["--chain-id", "84532"]), 10);
        assert_eq!(c(&["--chain-id", "8453", "--confirmations", "0"]), 0);
        assert_eq!(c(&["--chain-id", "31337", "--confirmations", "3"]), 3);
    }

    #[test]
    fn paymaster_context_is_a_json_object() {
        let c = |extra: &[&str]| {
            parse(extra)
                .unwrap()
                .validate()
                .map(|c| c.paymaster_context)
        };
        assert_eq!(c(&[]).unwrap(), serde_json::json!({}));
        assert_eq!(
            c(&["--paymaster-context", r#"{"sponsorshipPolicyId":"sp_x"}"#]).unwrap(),
            serde_json::json!({"sponsorshipPolicyId": "sp_x"})
        );
        for bad in ["", "sp_x", "[1]", "\"sp\"", "{", "null"] {
            let e = c(&["--paymaster-context", bad]).unwrap_err();
            assert_eq!(e.setting, "PAYMASTER_CONTEXT", "{bad}: {e}");
        }
        let huge = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_PAYMASTER_CONTEXT_BYTES));
        let e = c(&["--paymaster-context", &huge]).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
    }

    #[test]
    fn paths_and_interface() {
        assert_eq!(
            err(&["--agent-socket", "agent.sock"]).setting,
            "AGENT_SOCKET"
        );
        let long = format!("/{}", "a".repeat(120));
        assert_eq!(err(&["--agent-socket", &long]).setting, "AGENT_SOCKET");
        assert_eq!(
            err(&["--dstack-socket", "dstack.sock"]).setting,
            "DSTACK_SOCKET"
        );
        assert_eq!(err(&["--state-dir", "state"]).setting, "STATE_DIR");
        assert_eq!(err(&["--interface", ""]).setting, "INTERFACE");
        assert_eq!(
            err(&["--interface", "a-very-long-interface-name"]).setting,
            "INTERFACE"
        );
        assert_eq!(err(&["--interface", "wg/0"]).setting, "INTERFACE");
    }

    #[test]
    fn error_message_names_the_setting() {
        let e = err(&["--chain-id", "0"]).to_string();
        assert!(e.starts_with("invalid setting CHAIN_ID:"), "{e}");
    }

    #[test]
    fn gateway_host_is_lowercase_no_0x() {
        let a: Address = "0xAbCdEf0123456789aBcDeF0123456789ABCDEF01"
            .parse()
            .unwrap();
        assert_eq!(
            gateway_host(a, 51900, "mesh.example"),
            "abcdef0123456789abcdef0123456789abcdef01-51900s.mesh.example"
        );
    }
}
