//! WireGuard keys: Curve25519, written in the base64 form that `wg` uses and sent to boringtun as hex.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// A key string that is not 32 bytes of standard base64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid WireGuard key: expected 32 bytes in base64")]
pub struct KeyParseError;

fn decode32(s: &str) -> Result<[u8; 32], KeyParseError> {
    let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyParseError)?;
    bytes.try_into().map_err(|_| KeyParseError)
}

/// Lowercase hex into `out`, which is reserved up front so it never reallocates (a reallocation
/// would leave a copy of a private key's digits behind in freed memory).
fn hex_into(bytes: &[u8; 32], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(64);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    hex_into(bytes, &mut out);
    out
}

/// A peer's public key. Per invariant 2 it comes from chain state (or test configuration), never
/// from the network.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Lowercase hex, the encoding of the WireGuard UAPI.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the 64-character hex form the UAPI answers with.
    pub fn from_hex(s: &str) -> Result<Self, KeyParseError> {
        if s.len() != 64 || !s.is_ascii() {
            return Err(KeyParseError);
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| KeyParseError)?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| KeyParseError)?;
        }
        Ok(Self(out))
    }
}

impl FromStr for PublicKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode32(s).map(Self)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A device's private key. Zeroized on drop (invariant 6) and never printed.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh random key from the OS generator.
    pub fn generate() -> Self {
        Self(StaticSecret::random_from_rng(rand_core::OsRng))
    }

    /// Wraps raw key bytes (e.g. derived from the TEE).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The `wg`-style base64 form, for handing to external tools in tests and the lab. Zeroized
    /// when dropped, like the key itself (invariant 6).
    pub fn to_base64(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        let mut out = Zeroizing::new(String::with_capacity(44));
        STANDARD.encode_string(*bytes, &mut out);
        out
    }

    /// Appends the hex form the UAPI `set` text needs to `out`. The caller's buffer must itself
    /// be zeroizing, and reserved so appending does not reallocate; the raw bytes copied for the
    /// encoding are wiped here.
    pub(crate) fn write_hex(&self, out: &mut String) {
        let bytes = Zeroizing::new(self.0.to_bytes());
        hex_into(&bytes, out);
    }
}

impl FromStr for PrivateKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode32(s).map(Self::from_bytes)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public={})", self.public_key())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_hex_roundtrip() {
        let sk = PrivateKey::generate();
        let back: PrivateKey = sk.to_base64().parse().unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let pk = sk.public_key();
        assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk);
        assert_eq!(PublicKey::from_hex(&pk.to_hex()).unwrap(), pk);
    }

    #[test]
    fn private_key_text_forms_are_zeroizing() {
        // The type is the guarantee: these buffers are wiped when dropped.
        let sk = PrivateKey::from_bytes([7u8; 32]);
        let b64: Zeroizing<String> = sk.to_base64();
        assert_eq!(
            b64.parse::<PrivateKey>().unwrap().public_key(),
            sk.public_key()
        );
        let mut hex = Zeroizing::new(String::with_capacity(64));
        sk.write_hex(&mut hex);
        assert_eq!(hex.as_str(), "07".repeat(32));
    }

    #[test]
    fn known_public_key() {
        // RFC 7748 §6.1 test vector (Alice).
        let sk = PrivateKey::from_bytes([
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ]);
        assert_eq!(
            sk.public_key().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn rejects_bad_keys() {
        assert!("abc".parse::<PublicKey>().is_err());
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex(&"g".repeat(64)).is_err());
        assert!(STANDARD.encode([1u8; 31]).parse::<PublicKey>().is_err());
    }
}
