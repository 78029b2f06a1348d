//! Fixtures shared by the end-to-end tests: a real single-cluster stack (anvil with 1 s blocks,
//! EntryPoint v0.7, the AttestMesh contracts, SponsorPaymaster + the sponsor service, alto) and
//! the agent runtime in-process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use attestmesh_chain::deploy;
use attestmesh_chain::devstack::{self, Alto, AltoConfig, ClusterSpec, Devchain};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::OwnerKey;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_node::config::{Config, LogFormat};
use attestmesh_node::runtime::{self, Handles};
use attestmesh_node::state::Shared;
use attestmesh_proto::agent::agent_client::AgentClient;

pub use attestmesh_testkit::fixtures::SPONSOR_KEY;

pub fn repo() -> PathBuf {
    devstack::repo_root(env!("CARGO_MANIFEST_DIR"))
}

pub fn prerequisites() -> Result<(), String> {
    if !nix_is_root() {
        return Err("needs root for TUN and netlink".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun missing".into());
    }
    if !repo().join("artifacts/EntryPointV07.json").exists() {
        return Err("contract artifacts missing".into());
    }
    Ok(())
}

/// Whether the root-only e2e tests can run here: when they cannot, they skip with the reason,
/// or fail under `ATTESTMESH_REQUIRE_LAB` ([`attestmesh_testkit::lab`]).
pub fn should_run() -> bool {
    attestmesh_testkit::lab::or_skip(prerequisites()).is_some()
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub async fn read<C: alloy_sol_types::SolCall>(rpc: &RpcClient, to: Address, call: C) -> C::Return {
    attestmesh_chain::read::view(rpc, to, call, attestmesh_chain::read::BlockTag::Latest)
        .await
        .unwrap()
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub rpc: RpcClient,
    pub cluster: Address,
    pub member: Address,
    pub chain_id: u64,
    pub deployer: Address,
    pub owner: Address,
    pub cluster_factory: Address,
    pub sponsor_url: String,
    pub bundler_url: String,
    pub rpc_url: String,
    pub _sponsor_stop: tokio::sync::oneshot::Sender<()>,
    pub _alto: Alto,
    pub _chain: Devchain,
}

pub async fn stack(cidr: MeshCidr) -> Stack {
    let artifacts = devstack::artifacts(&repo(), &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = Devchain::start(&repo()).await.unwrap();
    let rpc = chain.rpc.clone();
    let (deployer, owner) = (chain.accounts[0], chain.accounts[1]);
    let ep = devstack::deploy_entry_point(&rpc, deployer, &artifacts)
        .await
        .unwrap();
    let spec = ClusterSpec {
        owner,
        cidr,
        kms_roots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(7),
    };
    let (infra, cluster) = chain
        .deploy_dev_cluster(&artifacts, ep, &spec)
        .await
        .unwrap();
    let member = deploy::deploy_member(&rpc, deployer, &infra, cluster, B256::repeat_byte(0xa1))
        .await
        .unwrap();
    let sponsor_key = OwnerKey::from_bytes(&SPONSOR_KEY).unwrap();
    let paymaster = chain
        .deploy_paymaster(
            &artifacts,
            ep,
            sponsor_key.address(),
            U256::from(10u128.pow(19)),
        )
        .await
        .unwrap();
    chain.set_interval_mining(1).await.unwrap();
    let chain_id = rpc.chain_id().await.unwrap();
    let key_file = attestmesh_testkit::fixtures::sponsor_key_file(dir.path()).unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = attestmesh_sponsor::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        rpc_url: chain.url().to_string(),
        chain_id,
        entry_point: ep,
        paymaster,
        member_factory: infra.member_factory,
        cluster_factory: infra.diamond_factory,
        signer_key_file: key_file,
        db_path: dir.path().join("sponsor.redb"),
        daily_cap: 100,
        trust: attestmesh_sponsor::TrustSet::clusters([cluster]),
        bounds: attestmesh_sponsor::GasBounds::default(),
        daily_wei_per_sender: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_SENDER,
        daily_wei_per_cluster: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_CLUSTER,
        // Every node of these tests calls from 127.0.0.1: one generous bucket.
        rate_limit: attestmesh_sponsor::RateLimit {
            per_sec: 1000.0,
            burst: 2000,
        },
        webhook_secret_file: None,
        rpc_timeout: Duration::from_secs(5),
        sponsorship_policy_id: Some(SPONSORSHIP_POLICY_ID.into()),
    };
    tokio::spawn(async move {
        let _ = attestmesh_sponsor::run(
            settings,
            move |a| {
                let _ = ready_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await;
    });
    let sponsor_addr = tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .unwrap()
        .unwrap();
    let mut alto_cfg = AltoConfig::from_repo(&repo(), chain.url(), &dir.path().join("alto"));
    let alto = attestmesh_testkit::stack::start_alto(&mut alto_cfg)
        .await
        .unwrap();
    Stack {
        bundler_url: format!("http://127.0.0.1:{}", alto.port),
        sponsor_url: format!("http://{sponsor_addr}"),
        rpc_url: chain.url().to_string(),
        dir,
        rpc,
        cluster,
        member,
        chain_id,
        deployer,
        owner,
        cluster_factory: infra.diamond_factory,
        _sponsor_stop: stop_tx,
        _alto: alto,
        _chain: chain,
    }
}

/// The policy id the tests' sponsor requires in the ERC-7677 context.
pub const SPONSORSHIP_POLICY_ID: &str = "sp_attestmesh_node_tests";

pub fn config(s: &Stack, dstack: &Path, iface: &str) -> Config {
    Config {
        dstack_socket: dstack.to_path_buf(),
        rpc_url: s.rpc_url.clone(),
        bundler_url: s.bundler_url.clone(),
        paymaster_url: s.sponsor_url.clone(),
        // The sponsor requires a sponsorship policy, as a hosted paymaster can: every agent of
        // these tests registers and operates through PAYMASTER_CONTEXT.
        paymaster_context: serde_json::json!({"sponsorshipPolicyId": SPONSORSHIP_POLICY_ID}),
        chain_id: s.chain_id,
        entry_point: attestmesh_core::userop::ENTRY_POINT_V07,
        gateway_domain: "mesh.test".into(),
        gateway_connect: Some("127.0.0.1:9".parse().unwrap()),
        wg_tcp_port: devstack::free_port().unwrap(),
        wg_ingress: attestmesh_net::ingress::IngressLimits::default(),
        wg_listen_port: devstack::free_port().unwrap(),
        heartbeat_port: 51820,
        heartbeat_interval: Duration::from_millis(500),
        peer_control_port: 50051,
        agent_socket: s.dir.path().join("run/agent.sock"),
        health_addr: "127.0.0.1:0".parse().unwrap(),
        state_dir: Some(s.dir.path().join("state")),
        interface: iface.to_string(),
        poll_interval: Duration::from_millis(500),
        confirmations: 0,
        indexer_registry: None,
        // As before the setting existed: the e2e tests do not spot-check the Indexer.
        indexer_repro_sample_rate: 0.0,
        indexer_ca_pem: Vec::new(),
        // The tests' Indexer runs on devtee, on anvil.
        indexer_allow_simulated_quotes: true,
        pccs_url: attestmesh_tee::pccs::PHALA_PCCS_URL.into(),
        indexer_tcb_policy: Default::default(),
        log_format: LogFormat::Pretty,
    }
}

pub struct Agent {
    pub shared: std::sync::Arc<Shared>,
    pub health: SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), runtime::NodeError>>,
}

pub async fn start_agent(cfg: Config) -> Agent {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Handles>();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runtime::run(
        cfg,
        move |h| {
            let _ = ready_tx.send(h);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let h = tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    Agent {
        shared: h.shared,
        health: h.health_addr,
        stop,
        task,
    }
}

pub async fn wait_healthy(a: &Agent, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = a.shared.status();
        if s.is_healthy() {
            return;
        }
        assert!(s.fatal.is_none(), "agent failed: {s:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "not healthy in {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (
        out[9..12].parse().unwrap(),
        out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string(),
    )
}

pub async fn app_client(path: PathBuf) -> AgentClient<tonic::transport::Channel> {
    AgentClient::new(attestmesh_proto::socket::connect_agent(path).await.unwrap())
}
