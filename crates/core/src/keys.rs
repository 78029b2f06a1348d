//! Key types for the node's secrets. Every type wipes its secret on drop (invariant 6) and its
//! `Debug` shows only public material, so a stray `{:?}` in a log line cannot leak a key.

use std::fmt;

use alloy_primitives::{Address, B256, keccak256};
use k256::ecdsa::SigningKey;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::binding::eth_signed_hash;
use crate::secp;

/// Length of every seed and symmetric key.
pub const KEY_LEN: usize = 32;

/// A seed that is not a valid key for its curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("secp256k1 secret must be in 1..n (got zero or a value >= the group order)")]
    InvalidSecp256k1Scalar,
    #[error("secp256k1 signing failed")]
    SigningFailed,
}

/// x25519 secret for sealed boxes and for WireGuard (a WireGuard static key is a Curve25519 key).
#[derive(Clone, ZeroizeOnDrop)]
pub struct X25519Secret(x25519_dalek::StaticSecret);

impl X25519Secret {
    /// Clamping happens inside the scalar multiplication, so any 32 bytes are a valid key.
    pub fn from_seed(seed: [u8; KEY_LEN]) -> Self {
        Self(x25519_dalek::StaticSecret::from(seed))
    }

    pub fn public(&self) -> B256 {
        B256::from(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The raw secret bytes, for handing to WireGuard; the caller must keep them zeroizing.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; KEY_LEN]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    pub(crate) fn inner(&self) -> &x25519_dalek::StaticSecret {
        &self.0
    }
}

impl fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Secret(pub={})", self.public())
    }
}

/// Ed25519 signing key for heartbeats.
#[derive(Clone)]
pub struct Ed25519Secret(ed25519_dalek::SigningKey);

// ed25519-dalek's SigningKey zeroizes itself on drop (its `zeroize` feature); this marker
// documents and enforces that at compile time.
impl ZeroizeOnDrop for Ed25519Secret {}

impl Ed25519Secret {
    pub fn from_seed(seed: [u8; KEY_LEN]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> B256 {
        B256::from(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Secret(pub={})", self.public())
    }
}

/// The node's secp256k1 owner key: signs the binding and every UserOperation.
#[derive(Clone)]
pub struct OwnerKey(SigningKey);

// k256's SigningKey zeroizes its scalar on drop.
impl ZeroizeOnDrop for OwnerKey {}

impl OwnerKey {
    pub fn from_bytes(secret: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        SigningKey::from_bytes(secret.into())
            .map(Self)
            .map_err(|_| KeyError::InvalidSecp256k1Scalar)
    }

    pub fn public_compressed(&self) -> [u8; secp::COMPRESSED_LEN] {
        secp::compress(self.0.verifying_key())
    }

    pub fn address(&self) -> Address {
        secp::address_of(self.0.verifying_key())
    }

    /// Low-s signature over a 32-byte prehash as `r ‖ s ‖ v`, v ∈ {27, 28}.
    pub fn sign_prehash(&self, prehash: &B256) -> Result<[u8; secp::SIGNATURE_LEN], KeyError> {
        sign_prehash_raw(&self.0, prehash, 27)
    }

    /// EIP-191 signature over a 32-byte hash (what `ECDSA.recover(toEthSignedMessageHash(h), sig)`
    /// checks on chain).
    pub fn sign_eth_hash(&self, hash: &B256) -> Result<[u8; secp::SIGNATURE_LEN], KeyError> {
        self.sign_prehash(&eth_signed_hash(hash))
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerKey(address={})", self.address())
    }
}

/// Signs `prehash` and appends `v_base + recovery bit`; dstack uses base 0, the chain 27.
pub fn sign_prehash_raw(
    key: &SigningKey,
    prehash: &B256,
    v_base: u8,
) -> Result<[u8; secp::SIGNATURE_LEN], KeyError> {
    let (sig, rid) = key
        .sign_prehash_recoverable(prehash.as_slice())
        .map_err(|_| KeyError::SigningFailed)?;
    let mut out = [0u8; secp::SIGNATURE_LEN];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = v_base + rid.to_byte();
    Ok(out)
}

/// A 32-byte symmetric key (the CSK, the state key-encryption key).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey([u8; KEY_LEN]);

impl SymmetricKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// `keccak256(key)`: the on-chain CSK commitment; safe to log.
    pub fn commitment(&self) -> B256 {
        keccak256(self.0)
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey(commitment={})", self.commitment())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assert_zod<T: ZeroizeOnDrop>() {}
    fn assert_z<T: Zeroize>() {}

    #[test]
    fn all_secret_types_zeroize_on_drop() {
        assert_zod::<X25519Secret>();
        assert_zod::<Ed25519Secret>();
        assert_zod::<OwnerKey>();
        assert_zod::<SymmetricKey>();
        assert_zod::<ed25519_dalek::SigningKey>();
        // Wiped by our derived Drop on X25519Secret.
        assert_z::<x25519_dalek::StaticSecret>();
    }

    #[test]
    fn debug_never_prints_secrets() {
        let seed = [0x5au8; 32];
        let seed_hex = alloy_primitives::hex::encode(seed);
        let outs = [
            format!("{:?}", X25519Secret::from_seed(seed)),
            format!("{:?}", Ed25519Secret::from_seed(seed)),
            format!("{:?}", OwnerKey::from_bytes(&seed).unwrap()),
            format!("{:?}", SymmetricKey::from_bytes(seed)),
        ];
        for o in outs {
            assert!(!o.contains(&seed_hex), "{o}");
            assert!(!o.contains("5a5a5a5a"), "{o}");
            assert!(!o.contains("90, 90"), "{o}");
        }
    }

    #[test]
    fn symmetric_key_zeroize_clears_bytes() {
        let mut k = SymmetricKey::from_bytes([7u8; 32]);
        k.zeroize();
        assert_eq!(k.as_bytes(), &[0u8; 32]);
    }

    #[test]
    fn owner_key_rejects_invalid_scalars() {
        assert_eq!(
            OwnerKey::from_bytes(&[0u8; 32]).unwrap_err(),
            KeyError::InvalidSecp256k1Scalar
        );
        assert_eq!(
            OwnerKey::from_bytes(&[0xffu8; 32]).unwrap_err(),
            KeyError::InvalidSecp256k1Scalar
        );
    }

    #[test]
    fn owner_signature_recovers_and_is_low_s() {
        let key = OwnerKey::from_bytes(&[0x11u8; 32]).unwrap();
        let h = keccak256(b"hello");
        let sig = key.sign_eth_hash(&h).unwrap();
        assert!(sig[64] == 27 || sig[64] == 28);
        let rec = secp::recover_address(&eth_signed_hash(&h), &sig).unwrap();
        assert_eq!(rec, key.address());
        // s <= n/2
        let half_n = alloy_primitives::U256::from_str_radix(
            "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0",
            16,
        )
        .unwrap();
        let s = alloy_primitives::U256::from_be_slice(&sig[32..64]);
        assert!(s <= half_n);
    }

    #[test]
    fn x25519_and_ed25519_publics_are_standard() {
        // RFC 7748 §6.1 Alice.
        let alice: [u8; 32] = alloy_primitives::hex!(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
        );
        assert_eq!(
            X25519Secret::from_seed(alice).public(),
            alloy_primitives::b256!(
                "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
            )
        );
        // RFC 8032 §7.1 test 1.
        let sk: [u8; 32] = alloy_primitives::hex!(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        );
        assert_eq!(
            Ed25519Secret::from_seed(sk).public(),
            alloy_primitives::b256!(
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
            )
        );
    }
}
