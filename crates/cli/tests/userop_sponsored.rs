//! Sponsored operations end to end (DESIGN §10, issue 4): real anvil (1 s blocks), EntryPoint
//! v0.7, alto, the sponsor service and devtee. Nodes hold zero ETH throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod userop_stack;

use std::time::Duration;

use alloy_primitives::{B256, U256, keccak256};
use alloy_sol_types::{SolCall, SolEvent};
use attestmesh_chain::bindings::{IAttestFacet, IClusterMember, IMessageFacet, INetworkFacet};
use attestmesh_chain::userop::{UserOpConfig, UserOpError};
use attestmesh_core::sealed;
use userop_stack::{Stack, StackOptions, read};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_balance_nodes_register_message_and_commit_the_csk_through_alto() {
    let stack = Stack::up(StackOptions::default()).await;
    let client = stack.client(UserOpConfig {
        receipt_timeout: Duration::from_secs(60),
        ..UserOpConfig::default()
    });
    let a = stack.node(0xa1).await;
    let b = stack.node(0xb2).await;
    let watched = [
        a.member,
        b.member,
        a.keys.owner.address(),
        b.keys.owner.address(),
    ];
    for w in watched {
        assert_eq!(
            stack.balance(w).await,
            U256::ZERO,
            "{w} starts with zero ETH"
        );
    }
    let deposit_before = attestmesh_chain::devstack::deposit_of(
        &stack.rpc,
        client.config().entry_point,
        stack.paymaster,
    )
    .await
    .unwrap();

    // 1. Bootstrap registration of A, then B (A is the originator: index 0).
    let reg_a = client
        .submit(a.account(stack.cluster), &a.registration)
        .await
        .unwrap();
    assert!(reg_a.bootstrap && reg_a.receipt.success);
    assert_eq!(reg_a.receipt.paymaster, Some(stack.paymaster));
    assert!(stack.is_member(a.member).await);
    assert_eq!(
        read(&stack.rpc, a.member, IClusterMember::ownerCall {}).await,
        a.keys.owner.address(),
        "registration installed the owner key"
    );
    let reg_b = client
        .submit(b.account(stack.cluster), &b.registration)
        .await
        .unwrap();
    assert!(stack.is_member(b.member).await);
    let rec_b = read(
        &stack.rpc,
        stack.cluster,
        IAttestFacet::memberOfCall {
            memberContract: b.member,
        },
    )
    .await;
    assert_eq!(rec_b.xPubKey, b.keys.x25519.public());

    // 2. A sends B a sealed message; B opens it from the event.
    let plaintext = b"csk request: hello from a";
    let ciphertext = sealed::seal(&rec_b.xPubKey, plaintext, &mut rand_core::OsRng).unwrap();
    let envelope = keccak256(b"envelope-1");
    let send = IMessageFacet::sendCall {
        recipientMemberId: b.member_id(stack.cluster),
        envelopeId: envelope,
        ciphertext: ciphertext.clone().into(),
    }
    .abi_encode();
    let sent = client
        .submit(a.account(stack.cluster), &send)
        .await
        .unwrap();
    assert!(!sent.bootstrap);
    let log = sent
        .receipt
        .logs
        .iter()
        .find(|l| l.topics.first() == Some(&IMessageFacet::MessageSent::SIGNATURE_HASH))
        .expect("MessageSent in the operation's logs");
    assert_eq!(log.address, stack.cluster);
    assert_eq!(log.topics[1], a.member_id(stack.cluster));
    assert_eq!(log.topics[2], b.member_id(stack.cluster));
    assert_eq!(log.topics[3], envelope);
    let ev =
        IMessageFacet::MessageSent::decode_raw_log(log.topics.iter().copied(), &log.data).unwrap();
    assert_ne!(&ev.ciphertext[..], plaintext, "no plaintext on chain");
    assert_eq!(
        sealed::open(&b.keys.x25519, &ev.ciphertext).unwrap(),
        plaintext
    );
    assert!(
        read(
            &stack.rpc,
            stack.cluster,
            IMessageFacet::envelopeUsedCall {
                recipientMemberId: b.member_id(stack.cluster),
                envelopeId: envelope,
            }
        )
        .await
    );

    // 3. A, the originator, commits the CSK.
    let commitment = a.keys.csk.commitment();
    let set = IAttestFacet::setCskCommitmentCall { commitment }.abi_encode();
    let csk = client.submit(a.account(stack.cluster), &set).await.unwrap();
    assert_eq!(
        read(
            &stack.rpc,
            stack.cluster,
            IAttestFacet::cskCommitmentCall {}
        )
        .await,
        commitment
    );

    // Two operations from one node at once: the client serialises them, one nonce each.
    let publish = |k: u8| {
        INetworkFacet::publishWgKeyCall {
            wgPubKey: B256::repeat_byte(k),
        }
        .abi_encode()
    };
    let (p1, p2) = (publish(0x61), publish(0x62));
    let (r1, r2) = tokio::join!(
        client.submit(a.account(stack.cluster), &p1),
        client.submit(a.account(stack.cluster), &p2)
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_ne!(r1.op.nonce, r2.op.nonce);
    let last = if r1.op.nonce > r2.op.nonce {
        0x61
    } else {
        0x62
    };
    assert_eq!(
        read(
            &stack.rpc,
            stack.cluster,
            INetworkFacet::wgPubKeyOfCall {
                memberId: a.member_id(stack.cluster)
            }
        )
        .await,
        B256::repeat_byte(last)
    );

    // Contract errors come back typed: B is not the originator, and envelopes are one-shot.
    let err = client
        .submit(
            b.account(stack.cluster),
            &IAttestFacet::setCskCommitmentCall {
                commitment: B256::repeat_byte(9),
            }
            .abi_encode(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.contract_error().and_then(|c| c.name()),
        Some("NotOriginator"),
        "{err}"
    );
    let err = client
        .submit(a.account(stack.cluster), &send)
        .await
        .unwrap_err();
    assert_eq!(
        err.contract_error().and_then(|c| c.name()),
        Some("DuplicateEnvelope"),
        "{err}"
    );
    assert!(
        matches!(
            err,
            UserOpError::Rejected { .. } | UserOpError::Reverted { .. }
        ),
        "{err:?}"
    );

    // Nobody's balance moved; the paymaster's deposit paid for everything.
    for w in watched {
        assert_eq!(
            stack.balance(w).await,
            U256::ZERO,
            "{w} still holds zero ETH"
        );
    }
    let deposit_after = attestmesh_chain::devstack::deposit_of(
        &stack.rpc,
        client.config().entry_point,
        stack.paymaster,
    )
    .await
    .unwrap();
    let paid: U256 = [&reg_a, &reg_b, &sent, &csk, &r1, &r2]
        .iter()
        .map(|s| s.receipt.actual_gas_cost)
        .sum();
    assert_eq!(deposit_before - deposit_after, paid);

    for (what, s) in [
        ("register A (bootstrap)", &reg_a),
        ("register B (bootstrap)", &reg_b),
        ("send", &sent),
        ("setCskCommitment", &csk),
    ] {
        eprintln!(
            "figure: {what}: {:?} submit→receipt, {} gas, {} retries",
            s.elapsed, s.receipt.actual_gas_used, s.retries
        );
    }
}
