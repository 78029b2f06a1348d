//! Registration on a real chain: anvil + real devtee processes + the compiled contracts
//! (DESIGN §3.5, §4). Needs the artifacts exported to `<repo>/artifacts/<Name>.json`
//! (or `ATTESTMESH_ARTIFACTS=<dir>`) and anvil from `npm ci`.
#![allow(clippy::unwrap_used)]

mod support;

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::{SolCall, SolError};
use attestmesh_chain::bindings::{IAttestFacet, IClusterMember, IDstackFacet};
use attestmesh_chain::deploy::{self, ENTRY_POINT_V07};
use attestmesh_chain::devstack::{self, ClusterSpec, Devchain};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::ids::{DSTACK_ATTESTOR_ID, member_id};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::attestor::{Attestor, KeyKind, OnChainRecord, check_lost_state};
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::dstack::DstackAttestor;
use attestmesh_tee::kms;
use support::DevteeProcess;

async fn read<C: SolCall>(rpc: &RpcClient, to: Address, call: C) -> C::Return {
    attestmesh_chain::read::view(rpc, to, call, attestmesh_chain::read::BlockTag::Latest)
        .await
        .unwrap()
}

#[tokio::test]
async fn devtee_keys_register_on_chain_and_are_checked_for_lost_state() {
    let repo = devstack::repo_root(env!("CARGO_MANIFEST_DIR"));
    let artifacts = devstack::artifacts(&repo, &["DstackFacet"]).unwrap();
    let chain = Devchain::start(&repo).await.unwrap();
    let rpc = chain.rpc.clone();
    let (deployer, owner, submitter) = (chain.accounts[0], chain.accounts[1], chain.accounts[2]);

    // Infra + one cluster that trusts the devtee development KMS root.
    let cidr = MeshCidr::new(0x0a0d_0000, 16).unwrap();
    let spec = ClusterSpec {
        owner,
        cidr,
        kms_roots: vec![kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(1),
    };
    let (infra, cluster) = chain
        .deploy_dev_cluster(&artifacts, ENTRY_POINT_V07, &spec)
        .await
        .unwrap();
    assert!(
        read(
            &rpc,
            cluster,
            IDstackFacet::allowedKmsRootsCall {
                kmsRoot: kms::DEV_KMS_ROOT_ADDRESS
            }
        )
        .await
    );
    let member = deploy::deploy_member(&rpc, deployer, &infra, cluster, B256::repeat_byte(2))
        .await
        .unwrap();
    assert_eq!(
        read(&rpc, member, IClusterMember::clusterCall {}).await,
        cluster
    );
    assert_eq!(
        read(&rpc, member, IClusterMember::ownerCall {}).await,
        Address::ZERO
    );

    let dir = tempfile::tempdir().unwrap();

    // A devtee whose KMS root the cluster does not trust is refused with InvalidSigChain.
    {
        let rogue =
            DevteeProcess::start(&dir.path().join("rogue.sock"), member, Some([0x42; 32])).await;
        let att = DstackAttestor::new(GuestAgentClient::new(&rogue.socket));
        let derived = att.derive_keys().await.unwrap();
        let call = att.registration_call(&derived, cluster, member).unwrap();
        let err = rpc.eth_call(cluster, &call).await.unwrap_err();
        assert_eq!(
            err.revert_selector(),
            Some(IDstackFacet::InvalidSigChain::SELECTOR),
            "{err}"
        );
        let err = rpc
            .transact(submitter, Some(cluster), &call)
            .await
            .unwrap_err();
        assert_eq!(
            err.revert_selector(),
            Some(IDstackFacet::InvalidSigChain::SELECTOR),
            "{err}"
        );
    }

    // The real flow: app id from /Info, keys through devtee, proof, dstack_register.
    let socket = dir.path().join("dstack.sock");
    let tee = DevteeProcess::start(&socket, member, None).await;
    let att = DstackAttestor::new(GuestAgentClient::new(&socket));
    assert_eq!(att.member_contract().await.unwrap(), member);
    let derived = att.derive_keys().await.unwrap();
    let call = att.registration_call(&derived, cluster, member).unwrap();
    let receipt = rpc.transact(submitter, Some(cluster), &call).await.unwrap();
    assert!(receipt.success);

    // Read the member back.
    let keys = derived.keys.member_pub_keys();
    let id = member_id(cluster, member, DSTACK_ATTESTOR_ID);
    assert!(
        read(
            &rpc,
            cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: member
            }
        )
        .await
    );
    assert_eq!(
        read(
            &rpc,
            cluster,
            IAttestFacet::memberIdOfCall {
                memberContract: member
            }
        )
        .await,
        id
    );
    let rec = read(
        &rpc,
        cluster,
        IAttestFacet::memberOfCall {
            memberContract: member,
        },
    )
    .await;
    assert_eq!(rec.attestorId, DSTACK_ATTESTOR_ID);
    assert_eq!(rec.memberContract, member);
    assert_eq!(
        (rec.xPubKey, rec.wgPubKey, rec.edPubKey),
        (keys.x, keys.wg, keys.ed)
    );
    assert_eq!(rec.registeredAt, receipt.block_number);
    let ip = read(&rpc, cluster, IAttestFacet::meshIpOfCall { memberId: id }).await;
    assert_eq!(
        ip,
        cidr.mesh_ip_u32(&id),
        "Rust and Solidity mesh IPs agree"
    );
    let chain_owner = read(&rpc, member, IClusterMember::ownerCall {}).await;
    assert_eq!(
        chain_owner,
        derived.keys.owner.address(),
        "ClusterMember owner = owner key"
    );

    // Registering again is refused.
    let err = rpc.eth_call(cluster, &call).await.unwrap_err();
    assert_eq!(
        err.revert_selector(),
        Some(attestmesh_chain::bindings::IAttestFacet::AlreadyRegistered::SELECTOR),
        "{err}"
    );

    // The on-chain record matches the derived keys: no lost state.
    let on_chain = OnChainRecord {
        keys: attestmesh_core::binding::MemberPubKeys {
            x: rec.xPubKey,
            wg: rec.wgPubKey,
            ed: rec.edPubKey,
        },
        owner: Some(chain_owner),
    };
    check_lost_state(member, &derived.keys, &on_chain).unwrap();

    // A devtee restart derives identical keys, which still match the chain.
    assert!(tee.terminate().success());
    let _tee = DevteeProcess::start(&socket, member, None).await;
    let again = att.derive_keys().await.unwrap();
    assert_eq!(again.keys.member_pub_keys(), keys);
    assert_eq!(again.keys.owner.address(), chain_owner);
    assert_eq!(again.keys.csk.commitment(), derived.keys.csk.commitment());
    check_lost_state(member, &again.keys, &on_chain).unwrap();

    // The same app id served by another KMS root (TEE state lost): the record no longer
    // matches and the check names every differing key.
    let lost = DevteeProcess::start(&dir.path().join("lost.sock"), member, Some([0x43; 32])).await;
    let other = DstackAttestor::new(GuestAgentClient::new(&lost.socket))
        .derive_keys()
        .await
        .unwrap();
    let err = check_lost_state(member, &other.keys, &on_chain).unwrap_err();
    let kinds: Vec<KeyKind> = err.mismatches.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![
            KeyKind::Owner,
            KeyKind::X25519,
            KeyKind::Wireguard,
            KeyKind::Ed25519
        ]
    );
    assert!(err.to_string().contains("lost state"), "{err}");
    let _ = keccak256(b"");
}
