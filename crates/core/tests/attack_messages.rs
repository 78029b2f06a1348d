//! Attack tests (DESIGN §1, §3.3; issue 11 hole 8): a `MessageSent` ciphertext is public, and a
//! sealed box is anonymous, so the receiver must refuse any box not bound to the event that
//! carried it.
#![allow(clippy::unwrap_used)]

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::message::{self, BoundField, Envelope, OpenError};
use rand_core::OsRng;

const CLUSTER: Address = Address::repeat_byte(0xc1);

fn ids() -> (B256, B256, B256, B256) {
    let a = keccak256("member A");
    let b = keccak256("member B");
    let c = keccak256("member C");
    let owner = keccak256("cluster owner");
    (a, b, c, owner)
}

#[test]
fn attack_resent_sealed_message_is_refused() {
    let (a, b, c, owner) = ids();
    let bx = X25519Secret::from_seed([0xbb; 32]);
    let sent = Envelope {
        cluster: CLUSTER,
        sender: a,
        recipient: b,
        envelope_id: keccak256("envelope 1"),
    };
    let ct = message::seal(&bx.public(), &sent, b"transfer 100 to A", &mut OsRng).unwrap();
    // The genuine event opens.
    assert_eq!(
        message::open(&bx, &sent, &ct).unwrap(),
        b"transfer 100 to A"
    );

    // The same bytes in a new event: re-sent by C, by the owner, and (in a second envelope,
    // which only A itself could send) by A.
    let fresh = keccak256("envelope 2");
    for (who, sender, field) in [
        ("member C", c, BoundField::Sender),
        ("the owner", owner, BoundField::Sender),
        ("A again", a, BoundField::EnvelopeId),
    ] {
        let event = Envelope {
            sender,
            envelope_id: fresh,
            ..sent
        };
        let err = message::open(&bx, &event, &ct).unwrap_err();
        assert!(
            matches!(err, OpenError::Mismatch { field: f, .. } if f == field),
            "{who}: {err:?}"
        );
        assert!(err.is_misbound());
    }
    // The same event in another cluster (same ids, e.g. a CREATE2 twin on another chain).
    let elsewhere = Envelope {
        cluster: Address::repeat_byte(0xc2),
        ..sent
    };
    assert!(matches!(
        message::open(&bx, &elsewhere, &ct),
        Err(OpenError::ClusterMismatch { .. })
    ));

    // C seals a box of its own that claims to come from A: the event's sender (from msg.sender
    // on chain) is C, so it is refused too.
    let claimed = Envelope {
        envelope_id: fresh,
        ..sent
    };
    let forged = message::seal(&bx.public(), &claimed, b"from A, honest", &mut OsRng).unwrap();
    let event = Envelope {
        sender: c,
        ..claimed
    };
    assert!(matches!(
        message::open(&bx, &event, &forged),
        Err(OpenError::Mismatch {
            field: BoundField::Sender,
            ..
        })
    ));
}
