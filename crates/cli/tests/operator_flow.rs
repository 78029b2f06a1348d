//! The whole operator flow of `attestmesh cluster …` against real anvil chains (issue 8):
//! deploy-infra twice (the second sends nothing), create from a config file, allowlist, member
//! deploy (factory) and bind (path A, a stock UUPS dstack app), Indexer record, members
//! registered through real devtee processes and listed back — then the same sequence with
//! `--print-calldata`, each printed batch executed by an impersonated Safe on a second chain,
//! must produce the same state. Guards (dev KMS root on a real chain, overlapping CIDRs, the
//! originator's compose hash, a bad config key) are exercised on the way.
//!
//! Needs anvil from `npm ci` and the forge build output of the stock-app model
//! (`contracts/out/StockDstackApp.sol`, made by `forge build`, which CI runs first).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use attestmesh_chain::bindings::IClusterMember::clusterCall;
use attestmesh_chain::bindings::IDstackFacet::allowedAppIdsCall;
use attestmesh_chain::bindings::IIndexerRegistry::currentCall;
use attestmesh_chain::deploy::Artifacts;
use attestmesh_chain::devstack::Devchain;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::ids::{DSTACK_ATTESTOR_ID, member_id};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_ops::exec::SigningKey;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::dstack::DstackAttestor;
use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;
use serde_json::{Value, json};
use support::DevteeProcess;

// The stock dstack app model's initializer (not one of our contracts: no artifact).
sol! {
    function initialize(address owner_, bytes32 composeHash) external;
}

/// anvil's first dev key (funded), the operator's key in the signing flow.
const KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const H1: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";
const DEVICE: &str = "0xdddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const EXTRA_ROOT: &str = "0x000000000000000000000000000000000000bEEF";
const PAYMASTER_SIGNER: &str = "0x00000000000000000000000000000000000051c0";
const CODE_ID: &str = "0xc0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0dec0de";
const IDX_KEY: &str = "0x1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `attestmesh cluster <args>` with a clean environment for our settings.
fn am(rpc: &str, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_attestmesh"));
    for var in [
        "RPC_URL",
        "PRIVATE_KEY_FILE",
        "KEYSTORE",
        "KEYSTORE_PASSWORD",
        "KEYSTORE_PASSWORD_FILE",
        "SAFE_ADDRESS",
        "CLUSTER",
        "FROM_BLOCK",
        "ATTESTMESH_ARTIFACTS",
        "ENTRY_POINT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LOG", "warn")
        .arg("cluster")
        .args(args)
        .arg("--rpc-url")
        .arg(rpc)
        .arg("--deployments-dir")
        .arg(dir.join("deployments"));
    cmd.output().unwrap()
}

fn ok(out: Output, what: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{what} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn fails(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{what} should have failed: {stderr}");
    stderr
}

async fn nonce(rpc: &RpcClient, who: Address) -> u64 {
    let v: U256 = rpc
        .call("eth_getTransactionCount", json!([who, "latest"]))
        .await
        .unwrap();
    v.to()
}

async fn view<C: SolCall>(rpc: &RpcClient, to: Address, call: C) -> C::Return {
    let out = rpc.eth_call(to, &call.abi_encode()).await.unwrap();
    C::abi_decode_returns(&out).unwrap()
}

/// The ClusterMember address printed on the "predicted … address:" stderr line.
fn predicted(stderr: &str) -> Address {
    let line = stderr
        .lines()
        .find(|l| l.contains("predicted") && l.contains("address:"))
        .unwrap_or_else(|| panic!("no predicted address in {stderr}"));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

/// Deploys a stock UUPS dstack app (implementation + ERC-1967 proxy initialised with `owner`).
async fn stock_app(rpc: &RpcClient, deployer: Address, owner: Address) -> Address {
    let out = repo().join("contracts/out");
    let stock = Artifacts::new(out.join("StockDstackApp.sol"));
    let proxy = Artifacts::new(out.join("ERC1967Proxy.sol"));
    assert!(
        stock.dir().join("StockDstackApp.json").exists(),
        "contracts/out/StockDstackApp.sol missing: run `cd contracts && ../node_modules/.bin/forge build`"
    );
    let imp = attestmesh_chain::deploy::deploy(rpc, deployer, &stock, "StockDstackApp", &[])
        .await
        .unwrap();
    let init = initializeCall {
        owner_: owner,
        composeHash: H1.parse().unwrap(),
    }
    .abi_encode();
    attestmesh_chain::deploy::deploy(
        rpc,
        deployer,
        &proxy,
        "ERC1967Proxy",
        &(imp, Bytes::from(init)).abi_encode_params(),
    )
    .await
    .unwrap()
}

/// Registers `member` in `cluster` the way a node does, with keys from a real devtee process.
async fn register(
    rpc: &RpcClient,
    submitter: Address,
    cluster: Address,
    member: Address,
    sock: &Path,
) {
    let _tee = DevteeProcess::start(sock, member, None).await;
    let att = DstackAttestor::new(GuestAgentClient::new(sock));
    let derived = att.derive_keys().await.unwrap();
    let call = att.registration_call(&derived, cluster, member).unwrap();
    rpc.transact(submitter, Some(cluster), &call).await.unwrap();
}

fn config(owner: Address, cidr: &str, salt: &str) -> String {
    format!(
        r#"# cluster config used by the operator flow test
owner = "{owner}"
mesh_cidr = "{cidr}"
salt = "{salt}"
kms_roots = ["{DEV_KMS_ROOT_ADDRESS}"]
compose_hashes = ["{H1}"]
devices = []
app_ids = []
allow_any_device = true
require_tcb_up_to_date = false
"#
    )
}

/// Executes a printed Safe batch as `safe` (impersonated) and returns how many transactions it had.
async fn execute_batch(rpc: &RpcClient, safe: Address, stdout: &str) -> usize {
    let batch: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(batch["version"], "1.0");
    assert_eq!(batch["chainId"], "31337");
    assert!(batch["meta"]["name"].is_string());
    assert_eq!(
        batch["meta"]["createdFromSafeAddress"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        safe
    );
    let txs = batch["transactions"].as_array().unwrap();
    for tx in txs {
        let to: Address = tx["to"].as_str().unwrap().parse().unwrap();
        let value = U256::from_str_radix(tx["value"].as_str().unwrap(), 10).unwrap();
        let data: Bytes = tx["data"].as_str().unwrap().parse().unwrap();
        rpc.transact_value(safe, Some(to), &data, value)
            .await
            .unwrap_or_else(|e| panic!("executing batch tx to {to}: {e}"));
    }
    txs.len()
}

/// The part of `show --json` that must agree between the two flows.
fn comparable(show: &Value) -> Value {
    json!({
        "meshCidr": show["meshCidr"],
        "memberCount": show["memberCount"],
        "memberFactory": show["memberFactory"],
        "allowAnyDevice": show["allowAnyDevice"],
        "requireTcbUpToDate": show["requireTcbUpToDate"],
        "composeHashes": show["composeHashes"],
        "devices": show["devices"],
        "kmsRoots": show["kmsRoots"],
        "appIdCount": show["appIds"].as_array().map(|a| a.len()),
        "devKmsRootAllowed": show["devKmsRootAllowed"],
    })
}

struct FlowResult {
    show: Value,
    members: Value,
    deployments: Value,
    indexer: (String, B256, B256),
}

/// The policy/member/indexer sequence shared by both flows. `signer` are the signer flags;
/// `safe` is set for the print flow (batches are executed as it).
#[allow(clippy::too_many_arguments)]
async fn sequence(
    rpc: &RpcClient,
    url: &str,
    dir: &Path,
    signer: &[&str],
    owner: Address,
    safe: Option<Address>,
    index_signer: &[&str],
) -> FlowResult {
    let accounts = rpc.accounts().await.unwrap();
    let (deployer, submitter) = (accounts[3], accounts[5]);
    let run = |args: Vec<&str>, what: &str| {
        let mut full: Vec<&str> = args.clone();
        full.extend_from_slice(signer);
        ok(am(url, dir, &full), what)
    };
    // Apply: in send mode the command did it; in print mode execute the batch as the Safe.
    async fn apply(rpc: &RpcClient, safe: Option<Address>, stdout: &str) -> usize {
        match safe {
            Some(s) => execute_batch(rpc, s, stdout).await,
            None => 0,
        }
    }

    // deploy-infra twice: the second run finds everything and sends nothing.
    let infra_args = vec![
        "deploy-infra",
        "--paymaster-signer",
        PAYMASTER_SIGNER,
        "--paymaster-deposit",
        "1ether",
    ];
    let (out, _) = run(infra_args.clone(), "deploy-infra");
    let n = apply(rpc, safe, &out).await;
    if safe.is_some() {
        assert!(n >= 13, "EntryPoint + 12 contracts + deposit, got {n}");
    }
    let before = nonce(rpc, owner).await;
    let (out, err) = run(infra_args, "deploy-infra (again)");
    assert_eq!(
        nonce(rpc, owner).await,
        before,
        "the second deploy-infra sent a transaction"
    );
    if safe.is_some() {
        assert_eq!(
            apply(rpc, safe, &out).await,
            0,
            "second batch must be empty: {out}"
        );
    } else {
        assert!(err.contains("nothing to do"), "{err}");
    }
    let deployments: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("deployments/31337.json")).unwrap())
            .unwrap();

    // create: a bad key is refused by name, then the real config.
    let cfg_path = dir.join("cluster.toml");
    std::fs::write(&cfg_path, config(owner, "10.13.0.1/16", "flow")).unwrap();
    let err = fails(
        am(
            url,
            dir,
            &[
                &["create", "--config", cfg_path.to_str().unwrap()][..],
                signer,
            ]
            .concat(),
        ),
        "create with host bits set",
    );
    assert!(err.contains("mesh_cidr"), "{err}");
    std::fs::write(&cfg_path, config(owner, "10.13.0.0/16", "flow")).unwrap();
    let (out, err) = run(
        vec!["create", "--config", cfg_path.to_str().unwrap()],
        "create",
    );
    let cluster = predicted(&err);
    apply(rpc, safe, &out).await;
    if safe.is_none() {
        assert_eq!(out.trim().parse::<Address>().unwrap(), cluster);
    }
    assert!(
        !rpc.code_at(cluster).await.unwrap().is_empty(),
        "no cluster at {cluster}"
    );
    let c = cluster.to_string();

    // A second cluster of the same factory with an overlapping CIDR is refused.
    let other = dir.join("overlap.toml");
    std::fs::write(&other, config(owner, "10.13.128.0/24", "other")).unwrap();
    let err = fails(
        am(
            url,
            dir,
            &[&["create", "--config", other.to_str().unwrap()][..], signer].concat(),
        ),
        "overlapping create",
    );
    assert!(err.contains("overlaps") && err.contains(&c), "{err}");

    // Allowlist management.
    for args in [
        vec!["allow", "compose-hash", H2, "--cluster", &c],
        vec!["allow", "device", DEVICE, "--cluster", &c],
        vec!["allow", "kms-root", EXTRA_ROOT, "--cluster", &c],
        vec!["disallow", "kms-root", EXTRA_ROOT, "--cluster", &c],
        vec!["set", "require-tcb-up-to-date", "true", "--cluster", &c],
        vec!["set", "allow-any-device", "false", "--cluster", &c],
    ] {
        let what = args.join(" ");
        let (out, _) = run(args, &what);
        assert_eq!(
            apply(rpc, safe, &out).await,
            usize::from(safe.is_some()),
            "{what}"
        );
    }
    // Already in effect: nothing to send.
    let before = nonce(rpc, owner).await;
    let (out, err) = run(
        vec!["allow", "compose-hash", H2, "--cluster", &c],
        "allow again",
    );
    assert!(err.contains("already in effect"), "{err}");
    assert_eq!(apply(rpc, safe, &out).await, 0);
    assert_eq!(nonce(rpc, owner).await, before);

    // Factory member.
    let (out, err) = run(
        vec!["member", "deploy", "--cluster", &c, "--salt", "node-1"],
        "member deploy",
    );
    let member = predicted(&err);
    apply(rpc, safe, &out).await;
    assert_eq!(view(rpc, member, clusterCall {}).await, cluster);

    // Path A: a stock dstack app owned by the cluster owner becomes a member, atomically.
    let app = stock_app(rpc, deployer, owner).await;
    let (out, _) = run(
        vec![
            "member",
            "bind",
            "--app-id",
            &app.to_string(),
            "--cluster",
            &c,
        ],
        "member bind",
    );
    if safe.is_some() {
        assert_eq!(
            apply(rpc, safe, &out).await,
            2,
            "upgradeToAndCall + addAllowedAppId"
        );
    }
    assert_eq!(view(rpc, app, clusterCall {}).await, cluster);
    assert!(view(rpc, cluster, allowedAppIdsCall { appId: app }).await);

    // Indexer record (the send flow signs this one with the encrypted keystore).
    let mut idx: Vec<&str> = vec![
        "indexer",
        "register",
        "--endpoint",
        "https://indexer.example.org",
        "--code-id",
        CODE_ID,
        "--pubkey",
        IDX_KEY,
    ];
    idx.extend_from_slice(index_signer);
    let (out, _) = ok(am(url, dir, &idx), "indexer register");
    apply(rpc, safe, &out).await;
    let registry: Address = deployments["contracts"]["indexerRegistry"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let rec = view(rpc, registry, currentCall {}).await;

    // Nodes register (devtee keys, real proofs), then the operator lists them.
    let socks = tempfile::tempdir().unwrap();
    register(
        rpc,
        submitter,
        cluster,
        member,
        &socks.path().join("m.sock"),
    )
    .await;
    register(rpc, submitter, cluster, app, &socks.path().join("a.sock")).await;
    let (out, _) = ok(
        am(url, dir, &["members", "--cluster", &c, "--json"]),
        "members",
    );
    let members: Value = serde_json::from_str(&out).unwrap();
    let list = members.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let cidr = MeshCidr::new(0x0a0d_0000, 16).unwrap();
    for (m, contract) in list.iter().zip([member, app]) {
        assert_eq!(
            m["memberContract"]
                .as_str()
                .unwrap()
                .parse::<Address>()
                .unwrap(),
            contract
        );
        let id = member_id(cluster, contract, DSTACK_ATTESTOR_ID);
        assert_eq!(m["memberId"].as_str().unwrap().parse::<B256>().unwrap(), id);
        assert_eq!(m["meshIp"].as_str().unwrap(), cidr.mesh_ip(&id).to_string());
        assert!(m["registeredAt"].as_u64().unwrap() > 0);
        assert_ne!(
            m["wgPubKey"].as_str().unwrap().parse::<B256>().unwrap(),
            B256::ZERO
        );
    }
    let (table, _) = ok(am(url, dir, &["members", "--cluster", &c]), "members table");
    assert!(
        table.contains(&member.to_string()) && table.contains("originator"),
        "{table}"
    );

    // The originator exists now: removing a compose hash it may run is refused.
    let err = fails(
        am(
            url,
            dir,
            &[
                &["disallow", "compose-hash", H1, "--cluster", &c][..],
                signer,
            ]
            .concat(),
        ),
        "disallow the originator's compose hash",
    );
    assert!(
        err.contains("originator") && err.contains("--force"),
        "{err}"
    );

    let (out, _) = ok(am(url, dir, &["show", "--cluster", &c, "--json"]), "show");
    let show: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        show["clusterOwner"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        owner
    );
    // deploy-infra staked the paymaster with the public bundlers' default minimum.
    let pm = &show["paymaster"];
    assert_eq!(pm["staked"], json!(true), "{show}");
    assert_eq!(
        pm["stake"].as_str().and_then(|s| s.parse::<U256>().ok()),
        Some(U256::from(10u64).pow(U256::from(18))),
        "{show}"
    );
    assert_eq!(pm["unstakeDelaySec"], json!(86_400), "{show}");
    assert_eq!(pm["withdrawTime"], json!(0), "{show}");
    assert!(
        pm["deposit"]
            .as_str()
            .and_then(|s| s.parse::<U256>().ok())
            .is_some_and(|d| d >= U256::from(10u64).pow(U256::from(18))),
        "{show}"
    );
    let (text, _) = ok(am(url, dir, &["show", "--cluster", &c]), "show table");
    assert!(
        text.contains("10.13.0.0/16") && text.contains("devtee development root"),
        "{text}"
    );
    assert!(
        text.contains("paymaster stake") && text.contains("unstake delay 86400 s"),
        "{text}"
    );
    FlowResult {
        show,
        members,
        deployments,
        indexer: (rec.endpoint, rec.codeId, rec.pubKey),
    }
}

#[tokio::test]
async fn operator_flow_with_a_key_and_with_printed_safe_batches() {
    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("key.hex");
    std::fs::write(&key_file, format!("0x{KEY0}\n")).unwrap();
    let key = k256_key(KEY0);
    let owner = attestmesh_core::secp::address_of(key.verifying_key());
    // The same key as an encrypted keystore v3 file.
    let keystore = work.path().join("keystore.json");
    std::fs::write(
        &keystore,
        attestmesh_ops::keystore::encrypt(&key, b"correct horse", 4).unwrap(),
    )
    .unwrap();
    let password = work.path().join("password");
    std::fs::write(&password, "correct horse\n").unwrap();

    // Flow A: a local key signs and sends.
    let chain_a = Devchain::start(&repo()).await.unwrap();
    let rpc_a = chain_a.rpc.clone();
    let dir_a = work.path().join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let kf = key_file.to_str().unwrap().to_string();
    let ks = keystore.to_str().unwrap().to_string();
    let pw = password.to_str().unwrap().to_string();
    let a = sequence(
        &rpc_a,
        chain_a.url(),
        &dir_a,
        &["--private-key-file", &kf],
        owner,
        None,
        &["--keystore", &ks, "--password-file", &pw],
    )
    .await;

    // A wrong keystore password is refused before anything is sent.
    let err = fails(
        am(
            chain_a.url(),
            &dir_a,
            &[
                "indexer",
                "register",
                "--endpoint",
                "https://x.example",
                "--code-id",
                CODE_ID,
                "--pubkey",
                IDX_KEY,
                "--keystore",
                &ks,
                "--password-file",
                &kf,
            ],
        ),
        "wrong password",
    );
    assert!(err.contains("wrong password"), "{err}");

    // Flow B: a Safe (no key) owns everything; each command prints a batch the Safe executes.
    let chain_b = Devchain::start(&repo()).await.unwrap();
    let rpc_b = chain_b.rpc.clone();
    let safe: Address = "0x5afe5afe5afe5afe5afe5afe5afe5afe5afe5afe"
        .parse()
        .unwrap();
    chain_b
        .impersonate(safe, U256::from(10u128.pow(20)))
        .await
        .unwrap();
    let dir_b = work.path().join("b");
    std::fs::create_dir_all(&dir_b).unwrap();
    let safe_s = safe.to_string();
    let print = ["--print-calldata", "--from", safe_s.as_str()];
    let b = sequence(
        &rpc_b,
        chain_b.url(),
        &dir_b,
        &print,
        safe,
        Some(safe),
        &print,
    )
    .await;

    // Same state: policy, members, Indexer record; and the shared contracts are at the same
    // (deterministic) addresses on both chains.
    assert_eq!(comparable(&a.show), comparable(&b.show));
    assert_eq!(
        a.members.as_array().unwrap().len(),
        b.members.as_array().unwrap().len()
    );
    assert_eq!(a.indexer, b.indexer);
    for k in [
        "diamondCutFacet",
        "dstackFacet",
        "clusterInit",
        "clusterDiamondFactory",
        "clusterMemberFactory",
        "clusterMemberImplementation",
    ] {
        assert_eq!(
            a.deployments["contracts"][k], b.deployments["contracts"][k],
            "{k}"
        );
    }
    assert_eq!(a.indexer.0, "https://indexer.example.org");

    // On a non-dev chain id the devtee KMS root is refused unless --force (removing it is not).
    let _: Value = rpc_a
        .call("anvil_setChainId", json!([84532]))
        .await
        .unwrap();
    let cluster = a.show["cluster"].as_str().unwrap().to_string();
    let dev_root = DEV_KMS_ROOT_ADDRESS.to_string();
    let kms = |verb: &'static str, force: bool| {
        let mut args = vec![
            verb,
            "kms-root",
            dev_root.as_str(),
            "--cluster",
            cluster.as_str(),
            "--private-key-file",
            kf.as_str(),
        ];
        if force {
            args.push("--force");
        }
        am(chain_a.url(), &dir_a, &args)
    };
    ok(kms("disallow", false), "disallow the dev root");
    let err = fails(kms("allow", false), "dev KMS root on chain 84532");
    assert!(
        err.contains("development KMS root") && err.contains("84532"),
        "{err}"
    );
    let (_, err) = ok(kms("allow", true), "dev KMS root with --force");
    assert!(err.contains("WARNING"), "{err}");
}

fn k256_key(hex: &str) -> SigningKey {
    SigningKey::from_slice(&alloy_primitives::hex::decode(hex).unwrap()).unwrap()
}
