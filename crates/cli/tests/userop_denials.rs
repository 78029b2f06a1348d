//! Sponsorship denials reach the node as typed errors, through the real client, sponsor service,
//! alto and chain (DESIGN §10.1): non-member sender, foreign target, nonzero value, inner
//! selector off the allowlist, and the daily cap — which survives a sponsor restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod userop_stack;

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::{ClusterMember, IAttestFacet, IMessageFacet, INetworkFacet};
use attestmesh_chain::deploy;
use attestmesh_chain::devstack::dev_cluster_args;
use attestmesh_chain::userop::{NodeAccount, UserOpClient, UserOpConfig, UserOpError};
use attestmesh_core::backoff::BackoffPolicy;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::kms;
use userop_stack::{Stack, StackOptions, read};

const CAP: u32 = 3;

async fn expect_denied(
    client: &UserOpClient,
    account: NodeAccount<'_>,
    call_data: &[u8],
    reason: &str,
) {
    let started = Instant::now();
    let err = client
        .submit_call_data(account, call_data)
        .await
        .expect_err("must be denied");
    assert!(
        matches!(&err, UserOpError::SponsorshipDenied { .. }),
        "{reason}: {err:?}"
    );
    assert_eq!(err.deny_reason(), Some(reason), "{err}");
    // A denial is an answer, not an outage: no backoff.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{reason} took {:?}",
        started.elapsed()
    );
}

fn execute(target: Address, value: u64, inner: Vec<u8>) -> Vec<u8> {
    ClusterMember::executeCall {
        target,
        value: U256::from(value),
        data: Bytes::from(inner),
    }
    .abi_encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denials_are_typed_and_the_daily_cap_survives_a_restart() {
    let mut stack = Stack::up(StackOptions {
        daily_cap: CAP,
        ..StackOptions::default()
    })
    .await;
    let client = stack.client(UserOpConfig {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(20),
        },
        ..UserOpConfig::default()
    });
    let a = stack.node(0xa1).await;
    client
        .submit(a.account(stack.cluster), &a.registration)
        .await
        .unwrap(); // op 1 of the day
    let cluster = stack.cluster;
    let send = IMessageFacet::sendCall {
        recipientMemberId: a.member_id(cluster),
        envelopeId: B256::repeat_byte(1),
        ciphertext: Bytes::from(vec![0xab; 80]),
    }
    .abi_encode();

    // Another trusted cluster (same factory), for the "not the sender's cluster" case.
    let other = deploy::deploy_cluster(
        &stack.rpc,
        stack.deployer,
        &stack.infra,
        dev_cluster_args(
            stack.cluster_owner,
            MeshCidr::new(0x0a0e_0000, 16).unwrap(),
            stack.infra.member_factory,
            vec![kms::DEV_KMS_ROOT_ADDRESS],
        ),
        B256::repeat_byte(2),
    )
    .await
    .unwrap();

    // A sender that no factory made (signed with a real key; the sponsor never gets that far).
    let stranger = NodeAccount {
        sender: Address::repeat_byte(0x77),
        cluster,
        owner: &a.keys.owner,
    };
    expect_denied(
        &client,
        stranger,
        &execute(cluster, 0, send.clone()),
        "sender_not_member",
    )
    .await;
    // A member calling a contract that is not a cluster at all, then another trusted cluster.
    expect_denied(
        &client,
        a.account(cluster),
        &execute(stack.paymaster, 0, send.clone()),
        "target_not_trusted_cluster",
    )
    .await;
    expect_denied(
        &client,
        a.account(cluster),
        &execute(other, 0, send.clone()),
        "target_not_sender_cluster",
    )
    .await;
    expect_denied(
        &client,
        a.account(cluster),
        &execute(cluster, 1, send.clone()),
        "nonzero_value",
    )
    .await;
    expect_denied(
        &client,
        a.account(cluster),
        &execute(cluster, 0, IAttestFacet::memberCountCall {}.abi_encode()),
        "inner_selector_not_allowed",
    )
    .await;
    // Not even an execute().
    expect_denied(
        &client,
        a.account(cluster),
        &IAttestFacet::memberCountCall {}.abi_encode(),
        "not_execute_call",
    )
    .await;

    // A node whose keys come from a KMS root the cluster does not trust: the registration would
    // revert (InvalidSigChain), and the sponsor refuses to pay for it before anything is sent.
    let rogue = stack.node_with_root(0xc3, Some([0x42; 32])).await;
    expect_denied(
        &client,
        rogue.account(cluster),
        &execute(cluster, 0, rogue.registration.clone()),
        "registration_would_revert",
    )
    .await;
    assert!(!stack.is_member(rogue.member).await);

    // Ops 2 and 3 of the day land; the 4th is over the cap.
    for n in 2..=CAP {
        let key = B256::repeat_byte(0x40 + n as u8);
        client
            .submit(
                a.account(cluster),
                &INetworkFacet::publishWgKeyCall { wgPubKey: key }.abi_encode(),
            )
            .await
            .unwrap();
        assert_eq!(
            read(
                &stack.rpc,
                cluster,
                INetworkFacet::wgPubKeyOfCall {
                    memberId: a.member_id(cluster)
                }
            )
            .await,
            key
        );
    }
    let over = execute(
        cluster,
        0,
        INetworkFacet::publishWgKeyCall {
            wgPubKey: B256::repeat_byte(0x55),
        }
        .abi_encode(),
    );
    expect_denied(&client, a.account(cluster), &over, "daily_cap_exceeded").await;

    // The counter is on disk: a restarted sponsor still refuses.
    stack.sponsor.restart().await;
    expect_denied(&client, a.account(cluster), &over, "daily_cap_exceeded").await;

    assert_eq!(stack.balance(a.member).await, U256::ZERO);
    assert_eq!(stack.balance(a.keys.owner.address()).await, U256::ZERO);
}
