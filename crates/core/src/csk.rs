//! Cluster Shared Key decisions (DESIGN §8, invariants 4, 6, 7). Pure: no I/O, no clock.
//!
//! - [`pull_candidates`]: whom to ask, in which order.
//! - [`verify_served`]: accept a sealed CSK from a peer only if it opens with our x25519 key and
//!   hashes to the on-chain commitment (a malicious peer cannot hand over a bogus key).
//! - [`originator_decision`]: what the originator does with the key it derived.
//! - [`seal_cache`] / [`open_cache`]: the encrypted CSK cache in the state directory.

use std::collections::HashSet;

use alloy_primitives::{Address, B256};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, SymmetricKey, X25519Secret};
use crate::sealed::{self, SealError};

/// At most this many pulls run in parallel (DESIGN §8).
pub const MAX_PARALLEL_PULLS: usize = 8;

/// Pull order: the originator first (it certainly holds the key), then live peers (reachable
/// now), then every other member (maybe reachable); self never; each member once. The caller
/// runs the first [`MAX_PARALLEL_PULLS`] and moves down the list as attempts fail.
pub fn pull_candidates(
    self_id: &B256,
    originator: Option<&B256>,
    live_peers: &[B256],
    members: &[B256],
) -> Vec<B256> {
    let member_set: HashSet<&B256> = members.iter().collect();
    let mut seen: HashSet<B256> = HashSet::new();
    let mut out = Vec::with_capacity(members.len());
    let mut push = |id: &B256, out: &mut Vec<B256>| {
        // Only current members are asked: a non-member's answer could never be trusted for
        // delivery, and asking it would leak our interest in the key.
        if id != self_id && member_set.contains(id) && seen.insert(*id) {
            out.push(*id);
        }
    };
    if let Some(o) = originator {
        push(o, &mut out);
    }
    for id in live_peers {
        push(id, &mut out);
    }
    for id in members {
        push(id, &mut out);
    }
    out
}

/// The first batch of parallel pulls.
pub fn first_wave(candidates: &[B256]) -> &[B256] {
    &candidates[..candidates.len().min(MAX_PARALLEL_PULLS)]
}

/// Why a served CSK was rejected. Every variant is counted and logged as a bogus answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServedCskError {
    #[error("no CSK commitment on chain yet; nothing can be accepted")]
    NoCommitment,
    #[error("sealed CSK does not open with our x25519 key: {0}")]
    Open(SealError),
    #[error("served CSK is {0} bytes, expected {KEY_LEN}")]
    Length(usize),
    #[error("keccak256(served CSK) = {got} differs from the on-chain commitment {expected}")]
    CommitmentMismatch { expected: B256, got: B256 },
}

/// Opens a sealed CSK served by a peer and checks it against the on-chain commitment
/// (invariant 4). The plaintext is zeroized on every path.
pub fn verify_served(
    own_x25519: &X25519Secret,
    sealed_csk: &[u8],
    commitment: Option<&B256>,
) -> Result<SymmetricKey, ServedCskError> {
    let expected = *commitment.ok_or(ServedCskError::NoCommitment)?;
    let plain = Zeroizing::new(sealed::open(own_x25519, sealed_csk).map_err(ServedCskError::Open)?);
    let bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| ServedCskError::Length(plain.len()))?;
    let key = SymmetricKey::from_bytes(bytes);
    let got = key.commitment();
    if got != expected {
        return Err(ServedCskError::CommitmentMismatch { expected, got });
    }
    Ok(key)
}

/// What the originator does after deriving its CSK from the TEE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginatorDecision {
    /// No commitment yet: submit `setCskCommitment(commitment)`.
    Commit(B256),
    /// The chain already holds this key's commitment (normal restart): use the key.
    Ok,
    /// The chain holds a different commitment: the derivation changed (code identity or KMS
    /// changed). Fail closed — serving this key would split the cluster.
    Mismatch { on_chain: B256, derived: B256 },
}

pub fn originator_decision(derived: &SymmetricKey, on_chain: Option<&B256>) -> OriginatorDecision {
    let derived_c = derived.commitment();
    match on_chain {
        None => OriginatorDecision::Commit(derived_c),
        Some(c) if *c == derived_c => OriginatorDecision::Ok,
        Some(c) => OriginatorDecision::Mismatch {
            on_chain: *c,
            derived: derived_c,
        },
    }
}

/// Cache file magic and version.
pub const CACHE_MAGIC: [u8; 4] = *b"AMCK";
pub const CACHE_VERSION: u8 = 1;
/// `magic ‖ version ‖ cluster (20) ‖ member id (32) ‖ commitment (32) ‖ nonce (24)`. Everything
/// in the header is public (the commitment is on chain) and all of it is the AEAD's AAD, so a
/// header edit is detected exactly like a ciphertext edit.
pub const CACHE_HEADER_LEN: usize = 4 + 1 + 20 + 32 + 32 + 24;
/// Header, encrypted CSK, Poly1305 tag.
pub const CACHE_LEN: usize = CACHE_HEADER_LEN + KEY_LEN + 16;

/// The context a cache must match to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheContext {
    pub cluster: Address,
    pub member_id: B256,
}

/// Seals the CSK for the state directory under the `state` key (`attestmesh/state/v1`).
/// `nonce` must be fresh random bytes (XChaCha's 192-bit nonce makes random nonces safe).
pub fn seal_cache(
    state_key: &SymmetricKey,
    ctx: &CacheContext,
    csk: &SymmetricKey,
    nonce: &[u8; 24],
) -> Result<Vec<u8>, CacheError> {
    let mut header = Vec::with_capacity(CACHE_LEN);
    header.extend_from_slice(&CACHE_MAGIC);
    header.push(CACHE_VERSION);
    header.extend_from_slice(ctx.cluster.as_slice());
    header.extend_from_slice(ctx.member_id.as_slice());
    header.extend_from_slice(csk.commitment().as_slice());
    header.extend_from_slice(nonce);
    let cipher = XChaCha20Poly1305::new(state_key.as_bytes().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: csk.as_bytes(),
                aad: &header,
            },
        )
        .map_err(|_| CacheError::Authentication)?;
    header.extend_from_slice(&ct);
    Ok(header)
}

/// A cache file that is corrupt or forged (as opposed to merely stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("CSK cache is {0} bytes, expected {CACHE_LEN}")]
    Length(usize),
    #[error("CSK cache has a bad magic")]
    BadMagic,
    #[error("CSK cache version {0} is not supported")]
    Version(u8),
    #[error("CSK cache failed authentication (tampered, or written under another state key)")]
    Authentication,
    #[error("CSK cache decrypted to a key whose hash is not its recorded commitment")]
    Inconsistent,
}

/// Why a well-formed cache is not used. Not an error: the agent just pulls or re-derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMiss {
    /// No commitment on chain: nothing can be verified, so nothing is trusted.
    NoCommitment,
    OtherCluster,
    OtherMember,
    /// Written for a previous commitment.
    StaleCommitment {
        cached: B256,
        on_chain: B256,
    },
}

/// Result of reading a cache file.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit(SymmetricKey),
    Ignored(CacheMiss),
}

/// Opens the cache if — and only if — it belongs to this cluster and member and matches the
/// current on-chain commitment. The context is checked before decrypting so a stale file is
/// reported as stale, not as tampered; decryption then authenticates the whole header.
pub fn open_cache(
    state_key: &SymmetricKey,
    ctx: &CacheContext,
    on_chain: Option<&B256>,
    file: &[u8],
) -> Result<CacheOutcome, CacheError> {
    if file.len() != CACHE_LEN {
        return Err(CacheError::Length(file.len()));
    }
    let (header, ct) = file.split_at(CACHE_HEADER_LEN);
    if header[0..4] != CACHE_MAGIC {
        return Err(CacheError::BadMagic);
    }
    if header[4] != CACHE_VERSION {
        return Err(CacheError::Version(header[4]));
    }
    let cluster = Address::from_slice(&header[5..25]);
    let member = B256::from_slice(&header[25..57]);
    let cached_c = B256::from_slice(&header[57..89]);
    let nonce = XNonce::from_slice(&header[89..113]);
    let Some(on_chain) = on_chain else {
        return Ok(CacheOutcome::Ignored(CacheMiss::NoCommitment));
    };
    if cluster != ctx.cluster {
        return Ok(CacheOutcome::Ignored(CacheMiss::OtherCluster));
    }
    if member != ctx.member_id {
        return Ok(CacheOutcome::Ignored(CacheMiss::OtherMember));
    }
    if cached_c != *on_chain {
        return Ok(CacheOutcome::Ignored(CacheMiss::StaleCommitment {
            cached: cached_c,
            on_chain: *on_chain,
        }));
    }
    let cipher = XChaCha20Poly1305::new(state_key.as_bytes().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| CacheError::Authentication)?,
    );
    let bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CacheError::Inconsistent)?;
    let key = SymmetricKey::from_bytes(bytes);
    // Defence in depth: the AEAD already binds the commitment, but a writer bug must not turn
    // into serving a key that fails every peer's commitment check.
    if key.commitment() != *on_chain {
        return Err(CacheError::Inconsistent);
    }
    Ok(CacheOutcome::Hit(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(b: u8) -> B256 {
        B256::repeat_byte(b)
    }

    #[test]
    fn candidates_order_and_dedup() {
        let members = [id(1), id(2), id(3), id(4), id(5)];
        let c = pull_candidates(&id(3), Some(&id(1)), &[id(5), id(1), id(9)], &members);
        // Originator, then live (non-member 9 skipped, 1 deduped), then the rest; never self.
        assert_eq!(c, vec![id(1), id(5), id(2), id(4)]);
        let many: Vec<B256> = (10..40).map(id).collect();
        let c = pull_candidates(&id(0), None, &[], &many);
        assert_eq!(first_wave(&c).len(), MAX_PARALLEL_PULLS);
        // Originator that is not a member (removed) is not asked.
        assert_eq!(
            pull_candidates(&id(3), Some(&id(7)), &[], &members)[0],
            id(1)
        );
    }

    #[test]
    fn originator_paths() {
        let k = SymmetricKey::from_bytes([4u8; 32]);
        assert_eq!(
            originator_decision(&k, None),
            OriginatorDecision::Commit(k.commitment())
        );
        assert_eq!(
            originator_decision(&k, Some(&k.commitment())),
            OriginatorDecision::Ok
        );
        assert!(matches!(
            originator_decision(&k, Some(&id(1))),
            OriginatorDecision::Mismatch { .. }
        ));
    }
}
