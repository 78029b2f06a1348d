//! The plaintext inside a `MessageSent` sealed box (DESIGN §3.3, §11, invariant 8).
//!
//! A sealed box is anonymous: anyone can seal to a public x25519 key, and every ciphertext is
//! public in its event. Without more, member C could copy the box A sent to B and send the same
//! bytes to B itself (or the owner through `sendOwnerCommand`), and B would deliver A's words as
//! C's. So the sealed plaintext names the event it belongs to, and the receiver refuses a box
//! whose inner names differ from the event that carried it. The sender id in the event comes
//! from `msg.sender` on chain, so a copy can never carry the original sender *and* a fresh
//! envelope: `(recipient, envelopeId)` is single-use on chain.
//!
//! Fixed layout, version 1 (122 bytes of header, then the payload):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 5 | magic `"AMMSG"` |
//! | 5 | 1 | version `0x01` |
//! | 6 | 20 | cluster (diamond) address |
//! | 26 | 32 | sender memberId (as the event will carry it; the owner's id for owner commands) |
//! | 58 | 32 | recipient memberId |
//! | 90 | 32 | envelopeId |
//! | 122 | rest | payload (the app's bytes, possibly empty) |
//!
//! Plaintexts without the magic (what agents sealed before this format) are refused: v1 is
//! pre-release, and an unbound message is exactly what this format exists to refuse.

use alloy_primitives::{Address, B256};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::keys::X25519Secret;
use crate::sealed::{self, SealError};

/// Plaintext magic.
pub const MAGIC: [u8; 5] = *b"AMMSG";
/// The only version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 5 + 1 + 20 + 32 + 32 + 32;

/// The event a message belongs to: what the sender binds inside the box, and what the receiver
/// reads from the `MessageSent` log (its topics and the cluster it follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    pub cluster: Address,
    pub sender: B256,
    pub recipient: B256,
    pub envelope_id: B256,
}

/// Why an opened plaintext is not a well-formed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "plaintext does not start with \"AMMSG\": an unversioned message (sent by an agent from before sender binding) or garbage"
    )]
    Unversioned,
    #[error("message version {0} is not supported (expected {VERSION})")]
    Version(u8),
    #[error("message is {0} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort(usize),
}

/// Which bound field differs from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundField {
    Sender,
    Recipient,
    EnvelopeId,
}

impl std::fmt::Display for BoundField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sender => "sender",
            Self::Recipient => "recipient",
            Self::EnvelopeId => "envelope id",
        })
    }
}

/// Why a `MessageSent` ciphertext is not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed box does not open with our x25519 key: {0}")]
    Seal(SealError),
    #[error("{0}")]
    Format(FormatError),
    #[error("message is bound to cluster {got}, but the event is in cluster {expected}")]
    ClusterMismatch { expected: Address, got: Address },
    #[error(
        "message is bound to {field} {got}, but the event says {expected} (a copied ciphertext re-sent)"
    )]
    Mismatch {
        field: BoundField,
        expected: B256,
        got: B256,
    },
}

impl OpenError {
    /// True when the box opened but was not bound to its event (or not in this format): the
    /// ciphertext was re-sent or is from an old agent. False when it did not open at all.
    pub fn is_misbound(&self) -> bool {
        !matches!(self, Self::Seal(_))
    }
}

/// `header ‖ payload`, zeroized on drop (it is the secret the box protects).
pub fn encode(env: &Envelope, payload: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + payload.len()));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(env.cluster.as_slice());
    out.extend_from_slice(env.sender.as_slice());
    out.extend_from_slice(env.recipient.as_slice());
    out.extend_from_slice(env.envelope_id.as_slice());
    out.extend_from_slice(payload);
    out
}

/// Parses a plaintext into its bound envelope and payload. Never panics on any input.
pub fn decode(plain: &[u8]) -> Result<(Envelope, &[u8]), FormatError> {
    if plain.len() < MAGIC.len() || plain[..MAGIC.len()] != MAGIC {
        return Err(FormatError::Unversioned);
    }
    match plain.get(5) {
        Some(&VERSION) => {}
        Some(&v) => return Err(FormatError::Version(v)),
        None => return Err(FormatError::TooShort(plain.len())),
    }
    if plain.len() < HEADER_LEN {
        return Err(FormatError::TooShort(plain.len()));
    }
    let env = Envelope {
        cluster: Address::from_slice(&plain[6..26]),
        sender: B256::from_slice(&plain[26..58]),
        recipient: B256::from_slice(&plain[58..90]),
        envelope_id: B256::from_slice(&plain[90..122]),
    };
    Ok((env, &plain[HEADER_LEN..]))
}

/// Seals `payload` bound to `env` to the recipient's on-chain x25519 key.
pub fn seal(
    recipient_x_pub: &B256,
    env: &Envelope,
    payload: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, SealError> {
    sealed::seal(recipient_x_pub, &encode(env, payload), rng)
}

/// [`seal`] with a caller-chosen ephemeral secret: for reproducible vectors only (see
/// [`sealed::seal_with_ephemeral`]).
pub fn seal_with_ephemeral(
    recipient_x_pub: &B256,
    env: &Envelope,
    payload: &[u8],
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    sealed::seal_with_ephemeral(recipient_x_pub, &encode(env, payload), ephemeral_secret)
}

/// Opens a `MessageSent` ciphertext and returns its payload only if the box is bound to exactly
/// `expected`, the event that carried it. Checks cluster, sender, recipient, envelope id in that
/// order; the error names the first that differs.
pub fn open(
    own_x25519: &X25519Secret,
    expected: &Envelope,
    ciphertext: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let plain = Zeroizing::new(sealed::open(own_x25519, ciphertext).map_err(OpenError::Seal)?);
    let (got, payload) = decode(&plain).map_err(OpenError::Format)?;
    if got.cluster != expected.cluster {
        return Err(OpenError::ClusterMismatch {
            expected: expected.cluster,
            got: got.cluster,
        });
    }
    for (field, e, g) in [
        (BoundField::Sender, expected.sender, got.sender),
        (BoundField::Recipient, expected.recipient, got.recipient),
        (
            BoundField::EnvelopeId,
            expected.envelope_id,
            got.envelope_id,
        ),
    ] {
        if e != g {
            return Err(OpenError::Mismatch {
                field,
                expected: e,
                got: g,
            });
        }
    }
    Ok(payload.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn env() -> Envelope {
        Envelope {
            cluster: Address::repeat_byte(0xc1),
            sender: B256::repeat_byte(1),
            recipient: B256::repeat_byte(2),
            envelope_id: B256::repeat_byte(3),
        }
    }

    #[test]
    fn layout_offsets() {
        let b = encode(&env(), b"hi");
        assert_eq!(b.len(), HEADER_LEN + 2);
        assert_eq!(HEADER_LEN, 122);
        assert_eq!(&b[..6], b"AMMSG\x01");
        assert_eq!(&b[6..26], &[0xc1; 20]);
        assert_eq!(&b[26..58], &[1; 32]);
        assert_eq!(&b[58..90], &[2; 32]);
        assert_eq!(&b[90..122], &[3; 32]);
        assert_eq!(&b[122..], b"hi");
        assert_eq!(decode(&b).unwrap(), (env(), &b"hi"[..]));
    }

    #[test]
    fn typed_format_errors() {
        assert_eq!(decode(b""), Err(FormatError::Unversioned));
        assert_eq!(decode(b"hello B"), Err(FormatError::Unversioned));
        assert_eq!(decode(b"AMMSG"), Err(FormatError::TooShort(5)));
        assert_eq!(decode(b"AMMSG\x02rest"), Err(FormatError::Version(2)));
        let b = encode(&env(), b"");
        assert_eq!(decode(&b[..121]), Err(FormatError::TooShort(121)));
        assert_eq!(decode(&b).unwrap().1, b"");
    }

    #[test]
    fn open_checks_every_bound_field() {
        let r = X25519Secret::from_seed([9; 32]);
        let ct = seal(&r.public(), &env(), b"payload", &mut OsRng).unwrap();
        assert_eq!(open(&r, &env(), &ct).unwrap(), b"payload");
        let mut e = env();
        e.cluster = Address::repeat_byte(0xc2);
        assert!(matches!(
            open(&r, &e, &ct),
            Err(OpenError::ClusterMismatch { .. })
        ));
        for (field, f) in [
            (
                BoundField::Sender,
                (|e: &mut Envelope| e.sender = B256::repeat_byte(7)) as fn(&mut Envelope),
            ),
            (BoundField::Recipient, |e| {
                e.recipient = B256::repeat_byte(7)
            }),
            (BoundField::EnvelopeId, |e| {
                e.envelope_id = B256::repeat_byte(7)
            }),
        ] {
            let mut e = env();
            f(&mut e);
            let err = open(&r, &e, &ct).unwrap_err();
            assert!(err.is_misbound());
            assert_eq!(
                err,
                OpenError::Mismatch {
                    field,
                    expected: B256::repeat_byte(7),
                    got: match field {
                        BoundField::Sender => env().sender,
                        BoundField::Recipient => env().recipient,
                        BoundField::EnvelopeId => env().envelope_id,
                    }
                }
            );
        }
        let other = X25519Secret::from_seed([10; 32]);
        let err = open(&other, &env(), &ct).unwrap_err();
        assert_eq!(err, OpenError::Seal(SealError::Authentication));
        assert!(!err.is_misbound());
        // A box of the old, unversioned kind opens but is refused.
        let legacy = sealed::seal(&r.public(), b"hello B", &mut OsRng).unwrap();
        assert_eq!(
            open(&r, &env(), &legacy),
            Err(OpenError::Format(FormatError::Unversioned))
        );
    }
}
