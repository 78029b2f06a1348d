//! End to end, one node: real anvil (1 s blocks), EntryPoint v0.7, the AttestMesh contracts,
//! SponsorPaymaster + the sponsor service, alto, devtee, and the agent runtime in-process.
//!
//! A cluster of one is converged, so the agent must reach `healthy` by itself: register through
//! a sponsored bootstrap UserOperation (zero ETH), commit its CSK through another, bring up its
//! WireGuard interface, and serve the app API. Then it messages itself through the chain, shuts
//! down (interface and socket gone), and restarts from the same state without re-registering.
//!
//! Needs root (TUN + netlink) and `npm ci` (anvil, alto); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use attestmesh_chain::bindings::{ClusterInitArgs, IAttestFacet, IAttestWrite};
use attestmesh_chain::deploy::{self, Artifacts};
use attestmesh_chain::devstack::{self, Alto, AltoConfig, Anvil, AnvilConfig};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::OwnerKey;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_node::config::{Config, LogFormat};
use attestmesh_node::runtime::{self, Handles};
use attestmesh_node::state::Shared;
use attestmesh_proto::agent as pb;
use attestmesh_proto::agent::agent_client::AgentClient;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use hyper_util::rt::TokioIo;
use tokio_stream::StreamExt as _;
use tonic::transport::{Endpoint, Uri};

const SPONSOR_KEY: [u8; 32] = [0x5e; 32];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prerequisites() -> Result<(), String> {
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

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

async fn read<C: alloy_sol_types::SolCall>(rpc: &RpcClient, to: Address, call: C) -> C::Return {
    deploy::read(rpc, to, call, "view").await.unwrap()
}

struct Stack {
    dir: tempfile::TempDir,
    rpc: RpcClient,
    cluster: Address,
    member: Address,
    chain_id: u64,
    sponsor_url: String,
    bundler_url: String,
    rpc_url: String,
    _sponsor_stop: tokio::sync::oneshot::Sender<()>,
    _alto: Alto,
    _anvil: Anvil,
}

async fn stack(cidr: MeshCidr) -> Stack {
    let artifacts = Artifacts::new(repo().join("artifacts"));
    let dir = tempfile::tempdir().unwrap();
    let anvil = Anvil::start(&AnvilConfig::from_repo(&repo()))
        .await
        .unwrap();
    let rpc = RpcClient::new(&anvil.url).unwrap();
    let accounts = rpc.accounts().await.unwrap();
    let (deployer, owner) = (accounts[0], accounts[1]);
    let ep = devstack::deploy_entry_point(&rpc, deployer, &artifacts)
        .await
        .unwrap();
    let infra = deploy::deploy_infra(&rpc, deployer, &artifacts, ep)
        .await
        .unwrap();
    let cluster = deploy::deploy_cluster(
        &rpc,
        deployer,
        &infra,
        ClusterInitArgs {
            clusterOwner: owner,
            meshCidrIp: cidr.ip(),
            meshPrefix: cidr.prefix(),
            memberFactory: infra.member_factory,
            kmsRoots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
            composeHashes: vec![],
            devices: vec![],
            appIds: vec![],
            allowAnyDevice: true,
            requireTcbUpToDate: false,
        },
        B256::repeat_byte(7),
    )
    .await
    .unwrap();
    let member = deploy::deploy_member(&rpc, deployer, &infra, cluster, B256::repeat_byte(0xa1))
        .await
        .unwrap();
    let sponsor_key = OwnerKey::from_bytes(&SPONSOR_KEY).unwrap();
    let paymaster = devstack::deploy_sponsor_paymaster(
        &rpc,
        deployer,
        &artifacts,
        ep,
        deployer,
        sponsor_key.address(),
        U256::from(10u128.pow(19)),
    )
    .await
    .unwrap();
    let _: serde_json::Value = rpc
        .call("evm_setIntervalMining", serde_json::json!([1]))
        .await
        .unwrap();
    let chain_id = rpc.chain_id().await.unwrap();
    let key_file = dir.path().join("sponsor.key");
    std::fs::write(&key_file, alloy_primitives::hex::encode(SPONSOR_KEY)).unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = attestmesh_sponsor::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        rpc_url: anvil.url.clone(),
        chain_id,
        entry_point: ep,
        paymaster,
        member_factory: infra.member_factory,
        cluster_factory: infra.diamond_factory,
        signer_key_file: key_file,
        db_path: dir.path().join("sponsor.redb"),
        daily_cap: 100,
        webhook_secret_file: None,
        rpc_timeout: Duration::from_secs(5),
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
    let mut alto_cfg = AltoConfig::from_repo(&repo(), &anvil.url, &dir.path().join("alto"));
    alto_cfg.port = Some(devstack::free_port().unwrap());
    let alto = Alto::start(&alto_cfg).await.unwrap();
    Stack {
        bundler_url: format!("http://127.0.0.1:{}", alto.port),
        sponsor_url: format!("http://{sponsor_addr}"),
        rpc_url: anvil.url.clone(),
        dir,
        rpc,
        cluster,
        member,
        chain_id,
        _sponsor_stop: stop_tx,
        _alto: alto,
        _anvil: anvil,
    }
}

fn config(s: &Stack, dstack: &Path, iface: &str) -> Config {
    Config {
        dstack_socket: dstack.to_path_buf(),
        rpc_url: s.rpc_url.clone(),
        bundler_url: s.bundler_url.clone(),
        paymaster_url: s.sponsor_url.clone(),
        chain_id: s.chain_id,
        entry_point: attestmesh_core::userop::ENTRY_POINT_V07,
        gateway_domain: "mesh.test".into(),
        gateway_connect: Some("127.0.0.1:9".parse().unwrap()),
        wg_tcp_port: devstack::free_port().unwrap(),
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
        log_format: LogFormat::Pretty,
    }
}

struct Agent {
    shared: std::sync::Arc<Shared>,
    health: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), runtime::NodeError>>,
}

async fn start_agent(cfg: Config) -> Agent {
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

async fn wait_healthy(a: &Agent, limit: Duration) {
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

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
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

async fn app_client(path: PathBuf) -> AgentClient<tonic::transport::Channel> {
    let ch = Endpoint::try_from("http://agent.local")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await
        .unwrap();
    AgentClient::new(ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_registers_commits_its_csk_and_becomes_healthy() {
    if let Err(why) = prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    // A CIDR no other test uses, so the host-namespace route cannot clash.
    let cidr = MeshCidr::new(0x0ad5_0000, 16).unwrap();
    let s = stack(cidr).await;
    let tee_sock = s.dir.path().join("dstack.sock");
    let devtee = Devtee::bind(DevteeConfig::dev(&tee_sock, s.member))
        .await
        .unwrap();
    let (tee_stop, tee_rx) = tokio::sync::oneshot::channel::<()>();
    let tee_task = tokio::spawn(devtee.run(async move {
        let _ = tee_rx.await;
    }));
    let keys =
        attestmesh_tee::DstackAttestor::new(attestmesh_tee::GuestAgentClient::new(&tee_sock))
            .derive_keys()
            .await
            .unwrap()
            .keys;
    assert_eq!(s.rpc.balance(s.member).await.unwrap(), U256::ZERO);
    assert_eq!(
        s.rpc.balance(keys.owner.address()).await.unwrap(),
        U256::ZERO
    );

    let iface = format!("ame{}", std::process::id() % 100_000);
    let cfg = config(&s, &tee_sock, &iface);
    let socket = cfg.agent_socket.clone();
    let agent = start_agent(cfg.clone()).await;
    let (code, _) = http_get(agent.health, "/healthz").await;
    assert_eq!(code, 503, "not healthy while booting");

    let t0 = std::time::Instant::now();
    wait_healthy(&agent, Duration::from_secs(120)).await;
    eprintln!("cluster of one healthy after {:?}", t0.elapsed());

    // On chain: registered with our keys, zero ETH spent by the node, CSK committed.
    assert!(
        read(
            &s.rpc,
            s.cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: s.member
            }
        )
        .await
    );
    assert_eq!(
        read(&s.rpc, s.cluster, IAttestWrite::cskCommitmentCall {}).await,
        keys.csk.commitment()
    );
    assert_eq!(s.rpc.balance(s.member).await.unwrap(), U256::ZERO);

    let (code, body) = http_get(agent.health, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["phase"], "healthy");
    assert_eq!(v["first_converged"], true);
    assert_eq!(v["csk_acquired"], true);
    assert_eq!(v["member_count"], 1);
    let my_id = attestmesh_core::ids::member_id(
        s.cluster,
        s.member,
        attestmesh_core::ids::DSTACK_ATTESTOR_ID,
    );
    assert_eq!(v["mesh_ip"], cidr.mesh_ip(&my_id).to_string());
    let (code, body) = http_get(agent.health, "/attestation").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("devtee-simulated"));
    assert!(
        Path::new(&format!("/sys/class/net/{iface}")).exists(),
        "interface up"
    );

    // App API: the CSK, and a message to ourselves through the chain (sealed, sponsored).
    let mut app = app_client(socket.clone()).await;
    let k = app
        .get_cluster_shared_key(pb::GetClusterSharedKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.key, keys.csk.as_bytes().to_vec());
    let mut inbox = app
        .subscribe_messages(pb::SubscribeMessagesRequest { from_block: 0 })
        .await
        .unwrap()
        .into_inner();
    let sent = app
        .send_message(pb::SendMessageRequest {
            recipient_member_id: my_id.to_vec(),
            plaintext: b"note to self".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(30), inbox.next())
        .await
        .expect("message delivered within 30 s")
        .unwrap()
        .unwrap();
    assert_eq!(got.plaintext, b"note to self");
    assert_eq!(got.sender_member_id, my_id.to_vec());
    assert_eq!(got.envelope_id, sent.envelope_id);
    assert_eq!(got.tx_hash, sent.tx_hash);
    drop((inbox, app));

    // Graceful shutdown: interface and socket removed.
    agent.stop.send(()).unwrap();
    agent.task.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket removed");
    assert!(
        !Path::new(&format!("/sys/class/net/{iface}")).exists(),
        "interface removed"
    );
    assert!(cfg.state_dir.as_ref().unwrap().join("csk.cache").exists());

    // Restart from the same TEE and state: no re-registration, same keys, healthy again.
    let members_before = read(&s.rpc, s.cluster, IAttestFacet::memberCountCall {}).await;
    let agent = start_agent(cfg.clone()).await;
    wait_healthy(&agent, Duration::from_secs(60)).await;
    assert_eq!(
        read(&s.rpc, s.cluster, IAttestFacet::memberCountCall {}).await,
        members_before
    );
    assert_eq!(agent.shared.csk().unwrap(), keys.csk);
    agent.stop.send(()).unwrap();
    agent.task.await.unwrap().unwrap();
    assert!(!Path::new(&format!("/sys/class/net/{iface}")).exists());

    tee_stop.send(()).unwrap();
    let _ = tee_task.await;
}
