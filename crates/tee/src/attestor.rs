//! The method-neutral face of attestation (DESIGN §4.4): the agent derives keys, builds its
//! registration call and produces attestation documents through [`Attestor`], and never learns
//! which TEE is underneath.

use std::fmt;
use std::future::Future;

use alloy_primitives::{Address, B256};
use attestmesh_core::binding::MemberPubKeys;
use attestmesh_core::keys::{Ed25519Secret, OwnerKey, SymmetricKey, X25519Secret};

/// The node's keys, all derived from the TEE; public halves go on chain.
#[derive(Clone)]
pub struct NodeKeys {
    pub owner: OwnerKey,
    pub x25519: X25519Secret,
    pub ed25519: Ed25519Secret,
    pub wireguard: X25519Secret,
    /// Cluster Shared Key candidate; used only if this node is the originator (DESIGN §8).
    pub csk: SymmetricKey,
    /// Key-encryption key for the state directory.
    pub state: SymmetricKey,
}

impl NodeKeys {
    /// The three keys a member record carries.
    pub fn member_pub_keys(&self) -> MemberPubKeys {
        MemberPubKeys {
            x: self.x25519.public(),
            wg: self.wireguard.public(),
            ed: self.ed25519.public(),
        }
    }
}

impl fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeys")
            .field("owner", &self.owner)
            .field("x25519", &self.x25519)
            .field("ed25519", &self.ed25519)
            .field("wireguard", &self.wireguard)
            .field("csk", &self.csk)
            .field("state", &self.state)
            .finish()
    }
}

/// Keys plus the method-specific evidence that the registration call needs.
#[derive(Debug, Clone)]
pub struct Derived<E> {
    pub keys: NodeKeys,
    pub evidence: E,
}

/// A quote (or equivalent) binding caller-chosen report data to the running code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Which attestation method produced it (the on-chain `attestorId`).
    pub attestor_id: B256,
    /// Method-specific format tag, e.g. `dstack-tdx-quote` or `devtee-simulated`.
    pub format: String,
    pub quote: Vec<u8>,
    pub event_log: String,
    pub report_data: [u8; 64],
}

/// One attestation method, as the agent sees it.
pub trait Attestor: Send + Sync {
    /// Method-specific proof material captured while deriving keys.
    type Evidence: Send + Sync;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The on-chain `attestorId` of this method.
    fn attestor_id(&self) -> B256;

    /// The address this node registers as (for dstack: the app id).
    fn member_contract(&self) -> impl Future<Output = Result<Address, Self::Error>> + Send;

    /// Derives every node key; deterministic across restarts of the same app identity.
    fn derive_keys(
        &self,
    ) -> impl Future<Output = Result<Derived<Self::Evidence>, Self::Error>> + Send;

    /// Calldata for the cluster that registers these keys with this method's proof.
    fn registration_call(
        &self,
        derived: &Derived<Self::Evidence>,
        cluster: Address,
        member_contract: Address,
    ) -> Result<Vec<u8>, Self::Error>;

    /// A fresh attestation document embedding `report_data`.
    fn attestation_document(
        &self,
        report_data: [u8; 64],
    ) -> impl Future<Output = Result<AttestationDocument, Self::Error>> + Send;
}

/// Which registered key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Owner,
    X25519,
    Wireguard,
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Owner => "owner (secp256k1) address",
            KeyKind::X25519 => "x25519 sealed-box key",
            KeyKind::Wireguard => "WireGuard key",
            KeyKind::Ed25519 => "Ed25519 heartbeat key",
        })
    }
}

/// One differing key: public values only, safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMismatch {
    pub kind: KeyKind,
    pub on_chain: String,
    pub derived: String,
}

/// What the chain holds for this member contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainRecord {
    pub keys: MemberPubKeys,
    /// The ClusterMember's installed owner, if known.
    pub owner: Option<Address>,
}

/// The chain has a record for us whose keys we cannot reproduce: TEE state was lost or the code
/// changed identity. Fail closed; never re-register over it (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "lost state: the on-chain record for member {member} does not match the keys derived from the TEE ({}); refusing to re-register",
    describe(.mismatches)
)]
pub struct LostStateError {
    pub member: Address,
    pub mismatches: Vec<KeyMismatch>,
}

fn describe(ms: &[KeyMismatch]) -> String {
    ms.iter()
        .map(|m| format!("{}: on chain {}, derived {}", m.kind, m.on_chain, m.derived))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compares an existing on-chain record with freshly derived keys.
pub fn check_lost_state(
    member: Address,
    keys: &NodeKeys,
    record: &OnChainRecord,
) -> Result<(), LostStateError> {
    let derived = keys.member_pub_keys();
    let mut mismatches = Vec::new();
    if let Some(owner) = record.owner {
        let mine = keys.owner.address();
        if owner != mine {
            mismatches.push(KeyMismatch {
                kind: KeyKind::Owner,
                on_chain: owner.to_string(),
                derived: mine.to_string(),
            });
        }
    }
    for (kind, chain, mine) in [
        (KeyKind::X25519, record.keys.x, derived.x),
        (KeyKind::Wireguard, record.keys.wg, derived.wg),
        (KeyKind::Ed25519, record.keys.ed, derived.ed),
    ] {
        if chain != mine {
            mismatches.push(KeyMismatch {
                kind,
                on_chain: chain.to_string(),
                derived: mine.to_string(),
            });
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(LostStateError { member, mismatches })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(b: u8) -> NodeKeys {
        NodeKeys {
            owner: OwnerKey::from_bytes(&[b; 32]).unwrap(),
            x25519: X25519Secret::from_seed([b + 1; 32]),
            ed25519: Ed25519Secret::from_seed([b + 2; 32]),
            wireguard: X25519Secret::from_seed([b + 3; 32]),
            csk: SymmetricKey::from_bytes([b + 4; 32]),
            state: SymmetricKey::from_bytes([b + 5; 32]),
        }
    }

    #[test]
    fn matching_record_passes() {
        let k = keys(1);
        let rec = OnChainRecord {
            keys: k.member_pub_keys(),
            owner: Some(k.owner.address()),
        };
        assert_eq!(check_lost_state(Address::ZERO, &k, &rec), Ok(()));
    }

    #[test]
    fn each_differing_key_is_named() {
        let k = keys(1);
        let mut rec = OnChainRecord {
            keys: k.member_pub_keys(),
            owner: None,
        };
        rec.keys.wg = B256::repeat_byte(9);
        let e = check_lost_state(Address::ZERO, &k, &rec).unwrap_err();
        assert_eq!(e.mismatches.len(), 1);
        assert_eq!(e.mismatches[0].kind, KeyKind::Wireguard);
        assert!(e.to_string().contains("WireGuard key"), "{e}");

        let other = keys(20);
        let rec = OnChainRecord {
            keys: other.member_pub_keys(),
            owner: Some(other.owner.address()),
        };
        let e = check_lost_state(Address::ZERO, &k, &rec).unwrap_err();
        let kinds: Vec<_> = e.mismatches.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![
                KeyKind::Owner,
                KeyKind::X25519,
                KeyKind::Wireguard,
                KeyKind::Ed25519
            ]
        );
    }

    #[test]
    fn debug_redacts() {
        let s = format!("{:?}", keys(1));
        assert!(!s.contains("0101010101010101"), "{s}");
    }
}
