//! Anonymous sealed boxes, byte-compatible with libsodium's `crypto_box_seal` (DESIGN §1 inv. 7, 8).
//!
//! Layout: `ephemeral_pk (32) ‖ crypto_box(msg)` where `crypto_box` = `tag (16) ‖ ciphertext`,
//! the key is `HSalsa20(X25519(esk, recipient_pk))` and the nonce is
//! `BLAKE2b-192(ephemeral_pk ‖ recipient_pk)`. Keys whose Diffie-Hellman output is all zero
//! (low-order points) are refused in both directions: such a box would be readable by anyone.

use alloy_primitives::B256;
use blake2::Blake2b;
use blake2::digest::{Digest, consts::U24};
use crypto_box::aead::{Aead, generic_array::GenericArray};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::keys::X25519Secret;

/// Bytes a sealed box adds to its plaintext: ephemeral key plus Poly1305 tag.
pub const SEAL_OVERHEAD: usize = 32 + 16;

/// Why a box could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("recipient public key is a low-order point (all-zero shared secret)")]
    LowOrderRecipient,
    #[error("sealed box carries a low-order ephemeral key (all-zero shared secret)")]
    LowOrderEphemeral,
    #[error("sealed box is {0} bytes, shorter than the {SEAL_OVERHEAD}-byte overhead")]
    TooShort(usize),
    #[error("sealed box failed authentication (wrong recipient or tampered)")]
    Authentication,
}

/// Seals `msg` to `recipient` with a fresh ephemeral key from `rng`.
pub fn seal(
    recipient: &B256,
    msg: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, SealError> {
    let mut esk = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(esk.as_mut());
    seal_with_ephemeral(recipient, msg, &esk)
}

/// Seals with a caller-chosen ephemeral secret. Only for reproducible test vectors: reusing an
/// ephemeral secret for two messages to one recipient reuses the nonce and breaks secrecy.
pub fn seal_with_ephemeral(
    recipient: &B256,
    msg: &[u8],
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let esk = x25519_dalek::StaticSecret::from(*ephemeral_secret);
    let epk = x25519_dalek::PublicKey::from(&esk);
    let rpk = x25519_dalek::PublicKey::from(recipient.0);
    if !esk.diffie_hellman(&rpk).was_contributory() {
        return Err(SealError::LowOrderRecipient);
    }
    let nonce = seal_nonce(epk.as_bytes(), rpk.as_bytes());
    let sbox = crypto_box::SalsaBox::new(
        &crypto_box::PublicKey::from(rpk.to_bytes()),
        &crypto_box::SecretKey::from(esk.to_bytes()),
    );
    let ct = sbox
        .encrypt(GenericArray::from_slice(&nonce), msg)
        // XSalsa20Poly1305 only fails on absurd (> 2^38 byte) messages.
        .map_err(|_| SealError::Authentication)?;
    let mut out = Vec::with_capacity(32 + ct.len());
    out.extend_from_slice(epk.as_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a box sealed to `recipient`'s public key.
pub fn open(recipient: &X25519Secret, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::TooShort(sealed.len()));
    }
    let mut epk_bytes = [0u8; 32];
    epk_bytes.copy_from_slice(&sealed[..32]);
    let epk = x25519_dalek::PublicKey::from(epk_bytes);
    if !recipient.inner().diffie_hellman(&epk).was_contributory() {
        return Err(SealError::LowOrderEphemeral);
    }
    let rpk = recipient.public();
    let nonce = seal_nonce(&epk_bytes, &rpk.0);
    let secret = Zeroizing::new(recipient.inner().to_bytes());
    let sbox = crypto_box::SalsaBox::new(
        &crypto_box::PublicKey::from(epk_bytes),
        &crypto_box::SecretKey::from(*secret),
    );
    sbox.decrypt(GenericArray::from_slice(&nonce), &sealed[32..])
        .map_err(|_| SealError::Authentication)
}

/// `BLAKE2b-192(epk ‖ rpk)`, libsodium's sealed-box nonce.
fn seal_nonce(epk: &[u8; 32], rpk: &[u8; 32]) -> [u8; 24] {
    let mut h = Blake2b::<U24>::new();
    h.update(epk);
    h.update(rpk);
    h.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    /// Known low-order points on Curve25519 (u-coordinates), as listed by libsodium's
    /// blocklist: 0, 1, and the order-8 points, plus non-canonical encodings.
    const LOW_ORDER: [[u8; 32]; 4] = [
        [0u8; 32],
        {
            let mut a = [0u8; 32];
            a[0] = 1;
            a
        },
        alloy_primitives::hex!("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        alloy_primitives::hex!("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ];

    #[test]
    fn roundtrip() {
        let r = X25519Secret::from_seed([9u8; 32]);
        for len in [0usize, 1, 31, 32, 1000] {
            let msg = vec![0xabu8; len];
            let sealed = seal(&r.public(), &msg, &mut OsRng).unwrap();
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            assert_eq!(open(&r, &sealed).unwrap(), msg);
        }
    }

    #[test]
    fn wrong_recipient_and_tamper_fail() {
        let r = X25519Secret::from_seed([9u8; 32]);
        let other = X25519Secret::from_seed([10u8; 32]);
        let mut sealed = seal(&r.public(), b"secret", &mut OsRng).unwrap();
        assert_eq!(open(&other, &sealed), Err(SealError::Authentication));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(open(&r, &sealed), Err(SealError::Authentication));
    }

    #[test]
    fn too_short() {
        let r = X25519Secret::from_seed([9u8; 32]);
        assert_eq!(open(&r, &[0u8; 47]), Err(SealError::TooShort(47)));
    }

    #[test]
    fn low_order_recipient_refused() {
        for p in LOW_ORDER {
            assert_eq!(
                seal(&B256::from(p), b"x", &mut OsRng),
                Err(SealError::LowOrderRecipient)
            );
        }
    }

    #[test]
    fn low_order_ephemeral_refused() {
        let r = X25519Secret::from_seed([9u8; 32]);
        for p in LOW_ORDER {
            let mut sealed = vec![0u8; 64];
            sealed[..32].copy_from_slice(&p);
            assert_eq!(open(&r, &sealed), Err(SealError::LowOrderEphemeral));
        }
    }

    #[test]
    fn deterministic_with_fixed_ephemeral() {
        let r = X25519Secret::from_seed([9u8; 32]);
        let a = seal_with_ephemeral(&r.public(), b"m", &[3u8; 32]).unwrap();
        let b = seal_with_ephemeral(&r.public(), b"m", &[3u8; 32]).unwrap();
        assert_eq!(a, b);
        assert_eq!(open(&r, &a).unwrap(), b"m");
    }
}
