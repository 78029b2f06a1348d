//! Measures, on a real anvil with the real contracts, the gas each sponsored operation needs
//! (bootstrap and registered validation, the four inner calls' execution) and checks that the
//! policy's per-kind bounds admit what honest clients ask for: the measurement plus the node
//! client's 20 % bootstrap margin, or alto's default estimate multipliers (130 % verification).
//! The figures are printed so docs/operating.md can quote them.

mod common;

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::{ClusterMember, IAttestFacet, IMessageFacet, INetworkFacet};
use attestmesh_chain::deploy;
use attestmesh_chain::devstack::{self, ClusterSpec, Devchain};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::userop::UserOperation;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use attestmesh_tee::dstack::DstackAttestor;
use common::execute;

/// Gas of `data` sent to `to` by the EntryPoint, without the 21 000 transaction intrinsic
/// (the EntryPoint's inner call has none), as the node client measures it.
async fn as_entry_point(rpc: &RpcClient, ep: Address, to: Address, data: &[u8]) -> u64 {
    rpc.estimate_gas(ep, to, data)
        .await
        .expect("estimate")
        .saturating_sub(21_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_gas_fits_the_policy_bounds() {
    let repo = devstack::repo_root(env!("CARGO_MANIFEST_DIR"));
    let artifacts = devstack::artifacts(&repo, &["EntryPointV07"]).expect("artifacts");
    let chain = Devchain::start(&repo).await.expect("anvil");
    let rpc = chain.rpc.clone().with_timeout(Duration::from_secs(20));
    let operator = chain.accounts[0];
    let ep = devstack::deploy_entry_point(&rpc, operator, &artifacts)
        .await
        .expect("entry point");
    let spec = ClusterSpec {
        owner: operator,
        cidr: MeshCidr::new(0x0a0d_0000, 16).expect("cidr"),
        kms_roots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(1),
    };
    let (infra, cluster) = chain
        .deploy_dev_cluster(&artifacts, ep, &spec)
        .await
        .expect("cluster");
    let member = deploy::deploy_member(&rpc, operator, &infra, cluster, B256::repeat_byte(9))
        .await
        .expect("member");
    // Gas is paid from the member's deposit in none of these calls (missingAccountFunds = 0).
    let dir = tempfile::tempdir().expect("tempdir");
    let tee = Devtee::bind(DevteeConfig::dev(dir.path().join("d.sock"), member))
        .await
        .expect("devtee");
    let socket = tee.socket().to_path_buf();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tee.run(async move {
        let _ = rx.await;
    }));
    let att = DstackAttestor::new(GuestAgentClient::new(&socket));
    let derived = att.derive_keys().await.expect("keys");
    let register = att
        .registration_call(&derived, cluster, member)
        .expect("registration");
    let owner = &derived.keys.owner;

    let signed = |call_data: Bytes| {
        let mut op = UserOperation {
            sender: member,
            nonce: U256::ZERO,
            call_data,
            call_gas_limit: 1_000_000,
            verification_gas_limit: 1_000_000,
            pre_verification_gas: U256::from(100_000u64),
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            paymaster: Some(Address::repeat_byte(0xe1)),
            paymaster_verification_gas_limit: 100_000,
            paymaster_data: Bytes::from(vec![0x11; 77]),
            ..Default::default()
        };
        let hash = op.pack().user_op_hash(ep, 31337);
        op.signature = Bytes::copy_from_slice(&owner.sign_eth_hash(&hash).expect("sign"));
        (op, hash)
    };
    let validate = |op: &UserOperation, hash: B256| {
        ClusterMember::validateUserOpCall {
            userOp: op.pack().into(),
            userOpHash: hash,
            missingAccountFunds: U256::ZERO,
        }
        .abi_encode()
    };

    let deploy_member = as_entry_point(
        &rpc,
        operator,
        infra.member_factory,
        &attestmesh_chain::bindings::IClusterMemberFactory::deployMemberCall {
            cluster,
            salt: B256::repeat_byte(10),
        }
        .abi_encode(),
    )
    .await
        + 21_000;
    let bootstrap_cd = execute(cluster, 0, &register);
    let (bop, bhash) = signed(bootstrap_cd.clone());
    let bootstrap_validation = as_entry_point(&rpc, ep, member, &validate(&bop, bhash)).await;
    let register_exec = as_entry_point(&rpc, ep, member, &bootstrap_cd).await;
    rpc.transact(operator, Some(cluster), &register)
        .await
        .expect("register");
    let _ = stop.send(());

    let csk = IAttestFacet::setCskCommitmentCall {
        commitment: B256::repeat_byte(0xc5),
    }
    .abi_encode();
    let (rop, rhash) = signed(execute(cluster, 0, &csk));
    let registered_validation = as_entry_point(&rpc, ep, member, &validate(&rop, rhash)).await;
    let csk_exec = as_entry_point(&rpc, ep, member, &execute(cluster, 0, &csk)).await;
    let wg = INetworkFacet::publishWgKeyCall {
        wgPubKey: B256::repeat_byte(0x77),
    }
    .abi_encode();
    let wg_exec = as_entry_point(&rpc, ep, member, &execute(cluster, 0, &wg)).await;
    let me =
        attestmesh_core::ids::member_id(cluster, member, attestmesh_core::ids::DSTACK_ATTESTOR_ID);
    let send = |len: usize, byte: u8| {
        IMessageFacet::sendCall {
            recipientMemberId: me,
            envelopeId: B256::repeat_byte(0xe1),
            ciphertext: Bytes::from(vec![byte; len]),
        }
        .abi_encode()
    };
    // The large message is zeros: with non-zero bytes eth_estimateGas returns the EIP-7623
    // calldata floor (10 gas per token), which hides the execution cost being measured; the
    // execution itself (copy, memory, 8 gas per log byte) does not depend on the byte values.
    let send_small = send(128, 0x5a);
    let send_big = send(33 * 1024, 0);
    let send_small_exec = as_entry_point(&rpc, ep, member, &execute(cluster, 0, &send_small)).await;
    let send_big_exec = as_entry_point(&rpc, ep, member, &execute(cluster, 0, &send_big)).await;

    eprintln!(
        "measured gas: bootstrap validation {bootstrap_validation}, registered validation \
         {registered_validation}, dstack_register execution {register_exec}, setCskCommitment \
         {csk_exec}, publishWgKey {wg_exec}, send(128 B) {send_small_exec}, send(33 KiB) \
         {send_big_exec}, deployMember {deploy_member}"
    );

    let b = attestmesh_sponsor::bounds::GasBounds::default();
    let client = |g: u64| u128::from(g) * 120 / 100;
    let alto = |g: u64| u128::from(g) * 130 / 100;
    let cases: [(&str, &[u8], u64); 5] = [
        ("dstack_register", &register, register_exec),
        ("setCskCommitment", &csk, csk_exec),
        ("publishWgKey", &wg, wg_exec),
        ("send", &send_small, send_small_exec),
        ("send", &send_big, send_big_exec),
    ];
    for (kind, inner, measured) in cases {
        let bound = b.call_gas_limit(kind, inner.len());
        assert!(
            client(measured) <= bound,
            "{kind} ({} B): measured {measured} + 20 % exceeds the bound {bound}",
            inner.len()
        );
    }
    // The client measures the bootstrap validation with the 21 000 intrinsic included.
    let boot_len = bootstrap_cd.len();
    assert!(
        client(bootstrap_validation + 21_000)
            <= b.verification_gas_limit_for(true, false, boot_len)
    );
    assert!(
        client(bootstrap_validation + 21_000 + deploy_member)
            <= b.verification_gas_limit_for(true, true, boot_len)
    );
    assert!(alto(registered_validation) <= b.verification_gas_limit_for(false, false, 100));
}
