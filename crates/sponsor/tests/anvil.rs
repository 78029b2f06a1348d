//! Against a real anvil with the real contracts (`artifacts/*.json`): the EntryPoint v0.7 and
//! `SponsorPaymaster` hashes agree with ours, the service's signature passes the deployed
//! paymaster's validation, and the policy reads member/cluster provenance from the deployed
//! factories through the production JSON-RPC `ChainView`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolValue};
use attestmesh_chain::devstack::Devchain;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::userop::{
    PAYMASTER_DATA_OFFSET, SponsorPaymasterData, UserOperation, sponsor_paymaster_hash,
};
use attestmesh_sponsor::policy::{Decision, DenyReason, Mode, Policy, PolicyConfig};
use attestmesh_sponsor::{CounterStore, RpcChainView, Service, ServiceConfig, SponsorSigner, wire};
use common::{SIGNER_KEY, execute, op, op_json, set_csk};
use serde_json::{Value, json};

use attestmesh_chain::bindings::ClusterDiamondFactory::Facets;
use attestmesh_chain::bindings::EntryPoint::getUserOpHashCall;
use attestmesh_chain::bindings::IClusterDiamondFactory::{
    ClusterInitArgs, deployClusterCall, predictClusterAddressCall,
};
use attestmesh_chain::bindings::IClusterMemberFactory::{
    deployMemberCall, predictMemberAddressCall,
};
use attestmesh_chain::bindings::SponsorPaymaster::{getHashCall, validatePaymasterUserOpCall};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn artifact_bytecode(name: &str) -> Vec<u8> {
    let path = root().join("artifacts").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run tools/export-artifacts after forge build)",
            path.display()
        )
    });
    let v: Value = serde_json::from_str(&text).expect("artifact json");
    wire::bytes("bytecode", &v["bytecode"])
        .expect("bytecode hex")
        .to_vec()
}

struct Chain {
    rpc: RpcClient,
    from: Address,
}

impl Chain {
    async fn send(&self, to: Option<Address>, data: Vec<u8>) -> Value {
        let mut tx = json!({"from": self.from.to_string(), "data": wire::hex_bytes(&data), "gas": "0x1c9c380"});
        if let Some(to) = to {
            tx["to"] = json!(to.to_string());
        }
        let hash = self
            .rpc
            .call::<Value>("eth_sendTransaction", json!([tx]))
            .await
            .expect("send tx");
        // anvil mines at once, but the receipt can lag the send by a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let receipt = loop {
            let r = self
                .rpc
                .call::<Value>("eth_getTransactionReceipt", json!([hash]))
                .await
                .expect("receipt");
            if !r.is_null() {
                break r;
            }
            assert!(Instant::now() < deadline, "no receipt for {hash}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(receipt["status"], "0x1", "transaction reverted: {receipt}");
        receipt
    }

    async fn deploy(&self, name: &str, args: Vec<u8>) -> Address {
        let mut code = artifact_bytecode(name);
        code.extend_from_slice(&args);
        let r = self.send(None, code).await;
        wire::address("contractAddress", &r["contractAddress"]).expect("contract address")
    }

    async fn call<C: SolCall>(&self, to: Address, call: &C, from: Option<Address>) -> C::Return {
        let mut req = json!({"to": to.to_string(), "data": wire::hex_bytes(&call.abi_encode())});
        if let Some(f) = from {
            req["from"] = json!(f.to_string());
        }
        let out = self
            .rpc
            .call::<Value>("eth_call", json!([req, "latest"]))
            .await
            .expect("eth_call");
        let bytes = wire::bytes("result", &out).expect("hex");
        C::abi_decode_returns(&bytes).expect("decode return")
    }
}

#[tokio::test]
async fn real_contracts_agree_with_the_service() {
    // anvil on a free loopback port, killed (and reaped) on drop even when the test fails.
    let anvil = Devchain::start(&root()).await.expect("anvil");
    let rpc = anvil.rpc.clone().with_timeout(Duration::from_secs(10));
    let accounts = rpc
        .call::<Value>("eth_accounts", json!([]))
        .await
        .expect("accounts");
    let from = wire::address("accounts[0]", &accounts[0]).expect("account");
    let chain = Chain { rpc, from };
    let chain_id = 31337u64;
    let signer = SponsorSigner::from_hex(SIGNER_KEY).expect("key");

    // Infrastructure, as the devnet deploys it.
    let entry_point = chain.deploy("EntryPointV07", vec![]).await;
    let paymaster = chain
        .deploy(
            "SponsorPaymaster",
            (entry_point, from, signer.address()).abi_encode_params(),
        )
        .await;
    let mut facets = Vec::new();
    for name in [
        "DiamondCutFacet",
        "DiamondLoupeFacet",
        "OwnershipFacet",
        "AttestFacet",
        "MessageFacet",
        "NetworkFacet",
        "DstackFacet",
    ] {
        facets.push(chain.deploy(name, vec![]).await);
    }
    let init = chain.deploy("ClusterInit", vec![]).await;
    let f = Facets {
        diamondCut: facets[0],
        diamondLoupe: facets[1],
        ownership: facets[2],
        attest: facets[3],
        message: facets[4],
        network: facets[5],
        dstack: facets[6],
    };
    let cluster_factory = chain
        .deploy("ClusterDiamondFactory", (f, init).abi_encode_params())
        .await;
    let member_factory = chain
        .deploy("ClusterMemberFactory", entry_point.abi_encode())
        .await;

    let args = |salt: u8| ClusterInitArgs {
        clusterOwner: from,
        meshCidrIp: 0x0A0D_0000,
        meshPrefix: 16,
        memberFactory: member_factory,
        kmsRoots: vec![Address::repeat_byte(0x0b)],
        composeHashes: vec![B256::repeat_byte(salt)],
        devices: vec![],
        appIds: vec![],
        allowAnyDevice: true,
        requireTcbUpToDate: false,
    };
    let mut clusters = Vec::new();
    for salt in [1u8, 2] {
        let call = predictClusterAddressCall {
            args: args(salt),
            salt: B256::repeat_byte(salt),
        };
        let addr = chain.call(cluster_factory, &call, None).await;
        chain
            .send(
                Some(cluster_factory),
                deployClusterCall {
                    args: args(salt),
                    salt: B256::repeat_byte(salt),
                }
                .abi_encode(),
            )
            .await;
        clusters.push(addr);
    }
    let (cluster, other_cluster) = (clusters[0], clusters[1]);
    let member_salt = B256::repeat_byte(0x42);
    let member = chain
        .call(
            member_factory,
            &predictMemberAddressCall {
                cluster,
                salt: member_salt,
            },
            None,
        )
        .await;
    chain
        .send(
            Some(member_factory),
            deployMemberCall {
                cluster,
                salt: member_salt,
            }
            .abi_encode(),
        )
        .await;

    // The policy over the production ChainView reads the deployed factories.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CounterStore::open(&dir.path().join("db")).expect("store"));
    let view = RpcChainView::new(
        RpcClient::new(anvil.url())
            .expect("client")
            .with_timeout(Duration::from_secs(10)),
    );
    let policy = Policy::new(
        PolicyConfig::new(chain_id, entry_point, member_factory, cluster_factory, 10)
            .trusting(attestmesh_sponsor::TrustSet::owners([from])),
        view,
        store,
    );
    let decide = |o: UserOperation| {
        let p = &policy;
        async move {
            p.decide(&o, entry_point, chain_id, 1_750_000_000, Mode::Check)
                .await
                .expect("decides")
        }
    };
    let good = op(member, 0, execute(cluster, 0, &set_csk(0xab)));
    assert!(
        matches!(decide(good.clone()).await, Decision::Sponsor { .. }),
        "member of a factory cluster"
    );
    assert_eq!(
        decide(op(from, 0, execute(cluster, 0, &set_csk(1)))).await,
        Decision::Deny(DenyReason::SenderNotMember),
        "an EOA"
    );
    assert_eq!(
        decide(op(paymaster, 0, execute(cluster, 0, &set_csk(1)))).await,
        Decision::Deny(DenyReason::SenderNotMember),
        "a contract that is not a ClusterMember"
    );
    assert_eq!(
        decide(op(member, 0, execute(member_factory, 0, &set_csk(1)))).await,
        Decision::Deny(DenyReason::TargetNotTrustedCluster)
    );
    assert_eq!(
        decide(op(member, 0, execute(other_cluster, 0, &set_csk(1)))).await,
        Decision::Deny(DenyReason::TargetNotSenderCluster)
    );

    // The service signs; the deployed SponsorPaymaster accepts the signature.
    let svc = Arc::new(Service::new(
        policy,
        signer,
        None,
        ServiceConfig::new(paymaster),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(attestmesh_sponsor::serve(listener, svc, async move {
        let _ = stop_rx.await;
    }));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "pm_getPaymasterData",
        "params": [op_json(&good), entry_point.to_string(), format!("{chain_id:#x}"), {}]});
    let rpc_client = RpcClient::new(&format!("http://{addr}"))
        .expect("client")
        .with_timeout(Duration::from_secs(10));
    let result = rpc_client
        .call::<Value>("pm_getPaymasterData", body["params"].clone())
        .await
        .expect("sponsored");

    let mut final_op = good.clone();
    final_op.paymaster = Some(wire::address("paymaster", &result["paymaster"]).expect("pm"));
    final_op.paymaster_verification_gas_limit =
        wire::quantity_u128("v", &result["paymasterVerificationGasLimit"]).expect("q");
    final_op.paymaster_post_op_gas_limit =
        wire::quantity_u128("p", &result["paymasterPostOpGasLimit"]).expect("q");
    final_op.paymaster_data = wire::bytes("d", &result["paymasterData"]).expect("hex");
    final_op.signature = Bytes::from(vec![0x11; 65]);
    let packed = final_op.pack();
    let pm = SponsorPaymasterData::decode(&packed.paymaster_and_data[PAYMASTER_DATA_OFFSET..])
        .expect("decode");

    let on_chain_uoh = chain
        .call(
            entry_point,
            &getUserOpHashCall {
                userOp: packed.clone().into(),
            },
            None,
        )
        .await;
    assert_eq!(
        on_chain_uoh,
        packed.user_op_hash(entry_point, chain_id),
        "EntryPoint.getUserOpHash"
    );
    let on_chain_hash = chain
        .call(
            paymaster,
            &getHashCall {
                userOp: packed.clone().into(),
                validUntil: alloy_primitives::aliases::U48::from(pm.valid_until),
                validAfter: alloy_primitives::aliases::U48::from(pm.valid_after),
            },
            None,
        )
        .await;
    assert_eq!(
        on_chain_hash,
        sponsor_paymaster_hash(&packed, chain_id, paymaster, pm.valid_until, pm.valid_after)
            .expect("hash"),
        "SponsorPaymaster.getHash"
    );

    let validate = |p: &attestmesh_core::userop::PackedUserOperation| validatePaymasterUserOpCall {
        userOp: p.clone().into(),
        userOpHash: p.user_op_hash(entry_point, chain_id),
        maxCost: U256::from(10u64).pow(U256::from(16u64)),
    };
    let ok = chain
        .call(paymaster, &validate(&packed), Some(entry_point))
        .await;
    let vd = ok.validationData;
    assert_eq!(
        vd & ((U256::from(1u8) << 160) - U256::from(1u8)),
        U256::ZERO,
        "sigFailed must be 0"
    );
    assert_eq!(
        vd >> 160 & U256::from(alloy_primitives::aliases::U48::MAX),
        U256::from(pm.valid_until)
    );
    // A field changed after sponsorship: the paymaster reports a signature failure.
    let mut tampered = final_op.clone();
    tampered.call_gas_limit += 1;
    let bad = chain
        .call(paymaster, &validate(&tampered.pack()), Some(entry_point))
        .await;
    assert_eq!(
        bad.validationData & U256::from(1u8),
        U256::from(1u8),
        "sigFailed must be 1"
    );

    let _ = stop_tx.send(());
    server.await.expect("join").expect("clean exit");
    drop(anvil);
}
