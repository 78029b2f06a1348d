//! secp256k1 helpers shared by the TEE provider, devtee and the chain code: compressed keys,
//! Ethereum addresses, 65-byte recoverable signatures.
//!
//! Signature layout: `r (32) ‖ s (32) ‖ v (1)`. dstack emits `v ∈ {0, 1}`; Solidity's `ecrecover`
//! and OpenZeppelin's ECDSA want `v ∈ {27, 28}`; both are accepted here and
//! [`normalize_v`] converts for the chain.

use alloy_primitives::{Address, B256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

/// Length of a compressed SEC1 public key.
pub const COMPRESSED_LEN: usize = 33;
/// Length of an `r ‖ s ‖ v` signature.
pub const SIGNATURE_LEN: usize = 65;

/// Malformed keys or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecpError {
    #[error("public key must be {COMPRESSED_LEN} bytes (compressed SEC1), got {0}")]
    PubKeyLength(usize),
    #[error("public key is not a point on secp256k1")]
    NotOnCurve,
    #[error("signature must be {SIGNATURE_LEN} bytes (r ‖ s ‖ v), got {0}")]
    SignatureLength(usize),
    #[error("signature recovery byte v={0} is not one of 0, 1, 27, 28")]
    BadRecoveryByte(u8),
    #[error("signature is malformed or does not recover to a public key")]
    Unrecoverable,
}

/// Parses a compressed (or uncompressed) SEC1 key; compressed is what the chain accepts.
pub fn parse_compressed(bytes: &[u8]) -> Result<VerifyingKey, SecpError> {
    if bytes.len() != COMPRESSED_LEN {
        return Err(SecpError::PubKeyLength(bytes.len()));
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| SecpError::NotOnCurve)
}

/// The 33-byte compressed form.
pub fn compress(key: &VerifyingKey) -> [u8; COMPRESSED_LEN] {
    let point = key.to_encoded_point(true);
    let mut out = [0u8; COMPRESSED_LEN];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Ethereum address: last 20 bytes of `keccak256(x ‖ y)`.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed encoding is 0x04 ‖ x ‖ y.
    let hash = keccak256(&point.as_bytes()[1..]);
    Address::from_slice(&hash[12..])
}

/// Address of a compressed public key.
pub fn address_of_compressed(bytes: &[u8]) -> Result<Address, SecpError> {
    Ok(address_of(&parse_compressed(bytes)?))
}

/// Maps v ∈ {0,1,27,28} to 27/28, the form OpenZeppelin's ECDSA accepts.
pub fn normalize_v(sig: &[u8]) -> Result<[u8; SIGNATURE_LEN], SecpError> {
    let mut out: [u8; SIGNATURE_LEN] = sig
        .try_into()
        .map_err(|_| SecpError::SignatureLength(sig.len()))?;
    out[64] = 27 + recovery_bit(out[64])?;
    Ok(out)
}

fn recovery_bit(v: u8) -> Result<u8, SecpError> {
    match v {
        0 | 1 => Ok(v),
        27 | 28 => Ok(v - 27),
        other => Err(SecpError::BadRecoveryByte(other)),
    }
}

/// Recovers the signer's public key from a 65-byte signature over a 32-byte prehash.
pub fn recover(prehash: &B256, sig: &[u8]) -> Result<VerifyingKey, SecpError> {
    if sig.len() != SIGNATURE_LEN {
        return Err(SecpError::SignatureLength(sig.len()));
    }
    let bit = recovery_bit(sig[64])?;
    let signature = Signature::from_slice(&sig[..64]).map_err(|_| SecpError::Unrecoverable)?;
    let rid = RecoveryId::from_byte(bit).ok_or(SecpError::Unrecoverable)?;
    VerifyingKey::recover_from_prehash(prehash.as_slice(), &signature, rid)
        .map_err(|_| SecpError::Unrecoverable)
}

/// Recovers the signer's address (what `ecrecover` returns).
pub fn recover_address(prehash: &B256, sig: &[u8]) -> Result<Address, SecpError> {
    Ok(address_of(&recover(prehash, sig)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v_normalisation() {
        let mut sig = [0u8; 65];
        for (v, want) in [(0u8, 27u8), (1, 28), (27, 27), (28, 28)] {
            sig[64] = v;
            assert_eq!(normalize_v(&sig).unwrap()[64], want);
        }
        sig[64] = 2;
        assert_eq!(normalize_v(&sig), Err(SecpError::BadRecoveryByte(2)));
        assert_eq!(normalize_v(&sig[..64]), Err(SecpError::SignatureLength(64)));
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            parse_compressed(&[2u8; 32]).unwrap_err(),
            SecpError::PubKeyLength(32)
        );
        // x = 5 has no point on secp256k1 (5^3 + 7 = 132 is a non-residue mod p).
        let mut k = [0u8; 33];
        k[0] = 2;
        k[32] = 5;
        assert_eq!(parse_compressed(&k).unwrap_err(), SecpError::NotOnCurve);
    }
}
