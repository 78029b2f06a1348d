//! The operator's trust set against a real anvil (DESIGN §10.1, issue 11 hole 1): the shared
//! `ClusterDiamondFactory` and `ClusterMemberFactory` are open to anyone, so "deployed by the
//! factory" says nothing about who runs a cluster. An attacker deploys a cluster that trusts
//! their own KMS root, registers a member with `dstack_register` (keys from a devtee signing
//! with that root), and asks the sponsor to pay for the member's `send`, `setCskCommitment`
//! and `publishWgKey`: denied `cluster_not_in_trust_set`, whether the operator lists its
//! cluster by address or by owner, while the operator's own member is still sponsored.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::{IAttestFacet, IMessageFacet, INetworkFacet};
use attestmesh_chain::deploy;
use attestmesh_chain::devstack::{self, ClusterSpec, Devchain, dev_cluster_args};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_sponsor::policy::{Decision, DenyReason, Mode, Policy, PolicyConfig, TrustSet};
use attestmesh_sponsor::{CounterStore, RpcChainView};
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use attestmesh_tee::dstack::DstackAttestor;
use common::{execute, op};

const NOW: u64 = 1_750_000_000;

/// Runs an in-process devtee for `member` signing with `root_key`; returns its socket's task.
async fn devtee(
    dir: &std::path::Path,
    member: Address,
    root_key: [u8; 32],
) -> (DstackAttestor, Address, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = DevteeConfig::dev(dir.join(format!("{member}.sock")), member);
    cfg.kms_root_key = zeroize::Zeroizing::new(root_key);
    let tee = Devtee::bind(cfg).await.expect("devtee binds");
    let root = tee.kms_root_address();
    let socket = tee.socket().to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tee.run(async move {
        let _ = rx.await;
    }));
    (
        DstackAttestor::new(GuestAgentClient::new(&socket)),
        root,
        tx,
    )
}

fn send_call(to: B256) -> Vec<u8> {
    IMessageFacet::sendCall {
        recipientMemberId: to,
        envelopeId: B256::repeat_byte(0xe1),
        ciphertext: Bytes::from(vec![0x5a; 96]),
    }
    .abi_encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_sponsor_pays_for_attacker_cluster_from_shared_factory() {
    let repo = devstack::repo_root(env!("CARGO_MANIFEST_DIR"));
    let artifacts = devstack::artifacts(&repo, &["EntryPointV07"]).expect("artifacts");
    let chain = Devchain::start(&repo).await.expect("anvil");
    let rpc = chain.rpc.clone().with_timeout(Duration::from_secs(20));
    let (operator, attacker) = (chain.accounts[0], chain.accounts[2]);
    let entry_point = devstack::deploy_entry_point(&rpc, operator, &artifacts)
        .await
        .expect("entry point");

    // The operator's cluster (the one the sponsor is meant to pay for).
    let spec = ClusterSpec {
        owner: operator,
        cidr: MeshCidr::new(0x0a0d_0000, 16).expect("cidr"),
        kms_roots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(1),
    };
    let (infra, operator_cluster) = chain
        .deploy_dev_cluster(&artifacts, entry_point, &spec)
        .await
        .expect("operator cluster");
    let honest = deploy::deploy_member(
        &rpc,
        operator,
        &infra,
        operator_cluster,
        B256::repeat_byte(0x11),
    )
    .await
    .expect("honest member");

    // The attacker: own KMS root, own cluster from the shared factory, own member.
    let dir = tempfile::tempdir().expect("tempdir");
    let attacker_root_key = [0x42u8; 32];
    let attacker_root = attestmesh_core::secp::address_of(
        attestmesh_tee::kms::signing_key(&attacker_root_key)
            .expect("key")
            .verifying_key(),
    );
    let attacker_cluster = deploy::deploy_cluster(
        &rpc,
        attacker,
        &infra,
        dev_cluster_args(
            attacker,
            MeshCidr::new(0x0a0e_0000, 16).expect("cidr"),
            infra.member_factory,
            vec![attacker_root],
        ),
        B256::repeat_byte(0x66),
    )
    .await
    .expect("attacker cluster");
    let member = deploy::deploy_member(
        &rpc,
        attacker,
        &infra,
        attacker_cluster,
        B256::repeat_byte(0x67),
    )
    .await
    .expect("attacker member");
    let (att, root, stop_tee) = devtee(dir.path(), member, attacker_root_key).await;
    assert_eq!(root, attacker_root);
    let derived = att.derive_keys().await.expect("keys");
    let register = att
        .registration_call(&derived, attacker_cluster, member)
        .expect("registration call");
    rpc.transact(attacker, Some(attacker_cluster), &register)
        .await
        .expect("the attacker registers directly with dstack_register");
    let is_member: bool = attestmesh_chain::read::view(
        &rpc,
        attacker_cluster,
        IAttestFacet::isClusterMemberCall {
            memberContract: member,
        },
        attestmesh_chain::read::BlockTag::Latest,
    )
    .await
    .expect("read");
    assert!(is_member, "the attacker's member is registered");
    let _ = stop_tee.send(());

    // The sponsor, configured as an operator would: its own factories, its own cluster.
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CounterStore::open(&store_dir.path().join("db")).expect("store"));
    let view = RpcChainView::new(
        RpcClient::new(chain.url())
            .expect("client")
            .with_timeout(Duration::from_secs(10)),
    );
    for trust in [
        TrustSet::clusters([operator_cluster]),
        TrustSet::owners([operator]),
    ] {
        let cfg = PolicyConfig::new(
            31337,
            entry_point,
            infra.member_factory,
            infra.diamond_factory,
            100,
        )
        .trusting(trust.clone());
        let policy = Policy::new(cfg, view.clone(), store.clone());

        let inner_calls = [
            send_call(B256::ZERO),
            IAttestFacet::setCskCommitmentCall {
                commitment: B256::repeat_byte(0xc5),
            }
            .abi_encode(),
            INetworkFacet::publishWgKeyCall {
                wgPubKey: B256::repeat_byte(0x77),
            }
            .abi_encode(),
        ];
        for (nonce, inner) in inner_calls.iter().enumerate() {
            let attack = op(member, nonce as u64, execute(attacker_cluster, 0, inner));
            let d = policy
                .decide(&attack, entry_point, 31337, NOW, Mode::Charge)
                .await
                .expect("decides");
            assert_eq!(
                d,
                Decision::Deny(DenyReason::ClusterNotInTrustSet),
                "the attacker's cluster must not be sponsored ({trust:?}, inner {:02x?})",
                &inner[..4]
            );
        }

        // The operator's own member is still sponsored.
        let ok = op(
            honest,
            0,
            execute(operator_cluster, 0, &send_call(B256::ZERO)),
        );
        let d = policy
            .decide(&ok, entry_point, 31337, NOW, Mode::Check)
            .await
            .expect("decides");
        assert!(matches!(d, Decision::Sponsor { .. }), "{trust:?}: {d:?}");
    }
}
