//! Heartbeat packets (DESIGN §7, invariant 3).
//!
//! Fixed layout, 153 bytes whatever the cluster size:
//! `"AMHB" ‖ version u8 = 1 ‖ sender memberId (32) ‖ seq u64 BE ‖ unix ms u64 BE ‖
//! view_len u32 BE ‖ view_digest (32) ‖ Ed25519 signature (64)`.
//! The signature covers `keccak256("attestmesh.heartbeat.v1" ‖ all preceding bytes)`: hashing
//! under a domain label means a heartbeat signature can never be replayed as a signature over any
//! other AttestMesh message signed by the same Ed25519 key.
//!
//! Decoding and verification are split on purpose: [`decode`] only parses (cheap, no crypto), and
//! [`Heartbeat::verify`] turns a parsed packet into a [`VerifiedHeartbeat`], a type that can only be
//! built by a successful signature check and that remembers *which* key verified it. The liveness
//! state machine then only has to compare that key with the on-chain `edPubKey`, so one packet
//! fanned out to many receivers (the simulator, or a future multi-cluster agent) is verified once.

use alloy_primitives::{B256, keccak256};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::keys::Ed25519Secret;

/// Packet magic.
pub const MAGIC: [u8; 4] = *b"AMHB";
/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Domain label prepended to the signed bytes.
pub const SIGNING_DOMAIN: &[u8] = b"attestmesh.heartbeat.v1";
/// Bytes covered by the signature (everything before it).
pub const SIGNED_LEN: usize = 4 + 1 + 32 + 8 + 8 + 4 + 32;
/// Total packet size; constant so the wire cost does not grow with the cluster.
pub const HEARTBEAT_LEN: usize = SIGNED_LEN + 64;
/// How far `seq` may run ahead of the packet's own `unix_ms`: a valid heartbeat has
/// `unix_ms ≤ seq ≤ unix_ms + MAX_SEQ_LEAD_MS`. A protocol constant, not a setting, because the
/// sender's clamp and every receiver's check must agree whatever interval each node runs with.
/// It equals the floor of the receivers' freshness window (`liveness::Config::max_skew_ms`),
/// so together the two bound any accepted `seq` to the receiver's clock ± two windows.
pub const MAX_SEQ_LEAD_MS: u64 = 30_000;

/// Why bytes are not a valid heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("heartbeat is {0} bytes, expected exactly {HEARTBEAT_LEN}")]
    Length(usize),
    #[error("heartbeat magic is not \"AMHB\"")]
    BadMagic,
    #[error("heartbeat version {0} is not supported (expected {VERSION})")]
    Version(u8),
    #[error("heartbeat signature does not verify against the given key")]
    BadSignature,
    #[error("public key is not a valid Ed25519 point")]
    BadPublicKey,
}

/// The fields of a heartbeat, before signing or after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeartbeatFields {
    pub sender: B256,
    pub seq: u64,
    pub unix_ms: u64,
    /// How many members the sender counts as live, itself included.
    pub view_len: u32,
    pub view_digest: B256,
}

impl HeartbeatFields {
    /// `unix_ms ≤ seq ≤ unix_ms + MAX_SEQ_LEAD_MS`: the sequence number is tied to the sender's
    /// own (signed) clock reading, so no valid heartbeat can push a receiver's stored `seq` far
    /// beyond real time and lock the sender out after its clock comes back (DESIGN §7).
    pub fn seq_in_window(&self) -> bool {
        self.seq >= self.unix_ms && self.seq - self.unix_ms <= MAX_SEQ_LEAD_MS
    }

    /// The bytes the signature covers, in wire order.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5..37].copy_from_slice(self.sender.as_slice());
        b[37..45].copy_from_slice(&self.seq.to_be_bytes());
        b[45..53].copy_from_slice(&self.unix_ms.to_be_bytes());
        b[53..57].copy_from_slice(&self.view_len.to_be_bytes());
        b[57..89].copy_from_slice(self.view_digest.as_slice());
        b
    }

    /// `keccak256(domain ‖ signed bytes)`: the 32-byte message that is Ed25519-signed.
    pub fn signing_digest(&self) -> B256 {
        let mut pre = Vec::with_capacity(SIGNING_DOMAIN.len() + SIGNED_LEN);
        pre.extend_from_slice(SIGNING_DOMAIN);
        pre.extend_from_slice(&self.signed_bytes());
        keccak256(&pre)
    }

    /// Signs and encodes. Ed25519 is deterministic, so equal fields give equal bytes.
    pub fn sign(&self, key: &Ed25519Secret) -> [u8; HEARTBEAT_LEN] {
        let sig = key.sign(self.signing_digest().as_slice());
        let mut out = [0u8; HEARTBEAT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        out[SIGNED_LEN..].copy_from_slice(&sig);
        out
    }
}

/// A parsed but not yet authenticated heartbeat. Nothing in it may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub fields: HeartbeatFields,
    pub signature: [u8; 64],
}

/// A heartbeat whose signature verified against `verified_by`. Fields are private so this can
/// only come out of [`Heartbeat::verify`]; holders still have to check that `verified_by` is the
/// sender's on-chain key — the signature alone says nothing about who the sender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedHeartbeat {
    fields: HeartbeatFields,
    verified_by: B256,
}

impl VerifiedHeartbeat {
    pub fn fields(&self) -> &HeartbeatFields {
        &self.fields
    }

    /// The Ed25519 public key the signature verified against.
    pub fn verified_by(&self) -> &B256 {
        &self.verified_by
    }
}

/// Parses a packet without checking its signature. Never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Heartbeat, HeartbeatError> {
    let b: &[u8; HEARTBEAT_LEN] = bytes
        .try_into()
        .map_err(|_| HeartbeatError::Length(bytes.len()))?;
    if b[0..4] != MAGIC {
        return Err(HeartbeatError::BadMagic);
    }
    if b[4] != VERSION {
        return Err(HeartbeatError::Version(b[4]));
    }
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(w)
    };
    let mut vl = [0u8; 4];
    vl.copy_from_slice(&b[53..57]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&b[SIGNED_LEN..]);
    Ok(Heartbeat {
        fields: HeartbeatFields {
            sender: B256::from_slice(&b[5..37]),
            seq: u64_at(37),
            unix_ms: u64_at(45),
            view_len: u32::from_be_bytes(vl),
            view_digest: B256::from_slice(&b[57..89]),
        },
        signature,
    })
}

impl Heartbeat {
    /// Verifies the signature against `ed_pub`. Uses strict verification (rejects non-canonical
    /// `S` and small-order keys/`R`) so one heartbeat has exactly one valid encoding and a peer
    /// cannot mint alternative signatures for a replay that looks fresh.
    pub fn verify(&self, ed_pub: &B256) -> Result<VerifiedHeartbeat, HeartbeatError> {
        let vk = VerifyingKey::from_bytes(&ed_pub.0).map_err(|_| HeartbeatError::BadPublicKey)?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(self.fields.signing_digest().as_slice(), &sig)
            .map_err(|_| HeartbeatError::BadSignature)?;
        Ok(VerifiedHeartbeat {
            fields: self.fields,
            verified_by: *ed_pub,
        })
    }
}

/// Decodes and verifies in one step.
pub fn decode_verified(bytes: &[u8], ed_pub: &B256) -> Result<VerifiedHeartbeat, HeartbeatError> {
    decode(bytes)?.verify(ed_pub)
}

/// `keccak256(concat(sorted ids))`. Sorting here (not at the caller) guarantees that two nodes
/// with the same live set produce the same digest whatever order they learned members in.
pub fn view_digest<'a>(ids: impl IntoIterator<Item = &'a B256>) -> B256 {
    let mut v: Vec<&B256> = ids.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    let mut pre = Vec::with_capacity(v.len() * 32);
    for id in v {
        pre.extend_from_slice(id.as_slice());
    }
    keccak256(&pre)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields() -> HeartbeatFields {
        HeartbeatFields {
            sender: B256::repeat_byte(7),
            seq: 42,
            unix_ms: 1_700_000_000_000,
            view_len: 3,
            view_digest: B256::repeat_byte(9),
        }
    }

    #[test]
    fn roundtrip_and_constant_size() {
        let k = Ed25519Secret::from_seed([1u8; 32]);
        let bytes = fields().sign(&k);
        assert_eq!(bytes.len(), 153);
        let v = decode_verified(&bytes, &k.public()).unwrap();
        assert_eq!(*v.fields(), fields());
        assert_eq!(*v.verified_by(), k.public());
    }

    #[test]
    fn typed_errors() {
        let k = Ed25519Secret::from_seed([1u8; 32]);
        let good = fields().sign(&k);
        assert_eq!(decode(&good[..152]), Err(HeartbeatError::Length(152)));
        let mut m = good;
        m[0] = b'X';
        assert_eq!(decode(&m), Err(HeartbeatError::BadMagic));
        let mut m = good;
        m[4] = 2;
        assert_eq!(decode(&m), Err(HeartbeatError::Version(2)));
        let other = Ed25519Secret::from_seed([2u8; 32]);
        assert_eq!(
            decode_verified(&good, &other.public()),
            Err(HeartbeatError::BadSignature)
        );
        // Any flipped bit in the signed part or the signature breaks verification.
        for i in 5..HEARTBEAT_LEN {
            let mut m = good;
            m[i] ^= 0x01;
            assert_eq!(
                decode_verified(&m, &k.public()),
                Err(HeartbeatError::BadSignature),
                "byte {i}"
            );
        }
    }

    #[test]
    fn view_digest_is_order_independent() {
        let a = B256::repeat_byte(1);
        let b = B256::repeat_byte(2);
        assert_eq!(view_digest([&a, &b]), view_digest([&b, &a]));
        let mut pre = a.to_vec();
        pre.extend_from_slice(b.as_slice());
        assert_eq!(view_digest([&b, &a]), keccak256(&pre));
    }
}
