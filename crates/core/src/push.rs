//! The Indexer push: a signed wake-up, never data (DESIGN §1 invariant 5, §9.2).
//!
//! A push names one log of one cluster. The agent verifies it against the Ed25519 key in the
//! on-chain `IndexerRegistry` and, if valid, re-reads the chain itself; the payload is never used.
//! The signature therefore only has to bind every field the agent might act on (which cluster,
//! up to which block, which reproduction call) so that a relay cannot redirect a wake-up.
//!
//! # Signing layout (v1)
//!
//! `signature = Ed25519(key, keccak256(PUSH_DOMAIN ‖ layout))` — the 32-byte digest is the
//! Ed25519 message. `layout` is fixed-width where possible and length-prefixed elsewhere, so two
//! different pushes can never share an encoding:
//!
//! | field                 | encoding                        |
//! |-----------------------|---------------------------------|
//! | cluster               | 20 bytes                        |
//! | block_number          | u64 big-endian                  |
//! | block_hash            | 32 bytes                        |
//! | tx_hash               | 32 bytes                        |
//! | log_index             | u64 big-endian                  |
//! | event.address         | 20 bytes                        |
//! | topic count           | u8 (0..=4, the EVM maximum)     |
//! | topics                | 32 bytes each                   |
//! | event.data length     | u32 big-endian                  |
//! | event.data            | bytes                           |
//! | repro.method length   | u16 big-endian                  |
//! | repro.method          | UTF-8 bytes                     |
//! | repro.params_json len | u32 big-endian                  |
//! | repro.params_json     | UTF-8 bytes                     |
//!
//! `PUSH_DOMAIN = "attestmesh.indexer.push.v1"` (26 ASCII bytes, no terminator). The
//! `attestation` field is not signed: it is self-authenticating (a TEE quote whose report_data is
//! [`attestation_report_data`] of the key). Vectors: `spec/vectors/push.json`.

use alloy_primitives::{Address, B256, hex, keccak256};

/// Domain separator of the push signature; a signature made for anything else never verifies.
pub const PUSH_DOMAIN: &[u8] = b"attestmesh.indexer.push.v1";
/// Domain of the attestation binding: report_data starts with keccak256(this ‖ pubkey).
pub const ATTESTATION_DOMAIN: &[u8] = b"attestmesh.indexer.v1";
/// The only reproduction method v1 emits.
pub const REPRO_METHOD: &str = "eth_getLogs";
/// EVM logs carry at most four topics (LOG0..LOG4).
pub const MAX_TOPICS: usize = 4;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;

/// Why a push cannot be encoded or does not verify. Every failure is a reason to tear the
/// subscription down, so the variants say which rule was broken, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("push field {field} is {got} bytes, expected {expected}")]
    FieldLength {
        field: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("push carries {0} topics, at most {MAX_TOPICS} allowed")]
    TooManyTopics(usize),
    #[error("push field {field} is {got} bytes, longer than its length prefix allows")]
    TooLong { field: &'static str, got: usize },
    #[error("push signature is {0} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength(usize),
    #[error("indexer public key is not a valid Ed25519 point")]
    BadPublicKey,
    #[error("push signature does not verify against the indexer key")]
    BadSignature,
}

/// The signed content of a push: every field but `signature` and `attestation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBody {
    pub cluster: Address,
    pub block_number: u64,
    pub block_hash: B256,
    pub tx_hash: B256,
    pub log_index: u64,
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
    pub repro_method: String,
    pub repro_params_json: String,
}

/// Fixed-length bytes from a wire field, with a typed error instead of a panic: pushes come from
/// the network and any field may be short or long.
pub fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], PushError> {
    bytes.try_into().map_err(|_| PushError::FieldLength {
        field,
        got: bytes.len(),
        expected: N,
    })
}

impl PushBody {
    /// The layout described in the module docs (without the domain).
    pub fn layout(&self) -> Result<Vec<u8>, PushError> {
        if self.topics.len() > MAX_TOPICS {
            return Err(PushError::TooManyTopics(self.topics.len()));
        }
        let data_len = u32::try_from(self.data.len()).map_err(|_| PushError::TooLong {
            field: "event.data",
            got: self.data.len(),
        })?;
        let method_len =
            u16::try_from(self.repro_method.len()).map_err(|_| PushError::TooLong {
                field: "repro.method",
                got: self.repro_method.len(),
            })?;
        let params_len =
            u32::try_from(self.repro_params_json.len()).map_err(|_| PushError::TooLong {
                field: "repro.params_json",
                got: self.repro_params_json.len(),
            })?;
        let mut out = Vec::with_capacity(
            20 + 8
                + 32
                + 32
                + 8
                + 20
                + 1
                + 32 * self.topics.len()
                + 4
                + self.data.len()
                + 2
                + self.repro_method.len()
                + 4
                + self.repro_params_json.len(),
        );
        out.extend_from_slice(self.cluster.as_slice());
        out.extend_from_slice(&self.block_number.to_be_bytes());
        out.extend_from_slice(self.block_hash.as_slice());
        out.extend_from_slice(self.tx_hash.as_slice());
        out.extend_from_slice(&self.log_index.to_be_bytes());
        out.extend_from_slice(self.address.as_slice());
        // Bounded by MAX_TOPICS above.
        out.push(self.topics.len() as u8);
        for t in &self.topics {
            out.extend_from_slice(t.as_slice());
        }
        out.extend_from_slice(&data_len.to_be_bytes());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&method_len.to_be_bytes());
        out.extend_from_slice(self.repro_method.as_bytes());
        out.extend_from_slice(&params_len.to_be_bytes());
        out.extend_from_slice(self.repro_params_json.as_bytes());
        Ok(out)
    }

    /// `keccak256(PUSH_DOMAIN ‖ layout)`: the Ed25519 message.
    pub fn signing_hash(&self) -> Result<B256, PushError> {
        let mut pre = PUSH_DOMAIN.to_vec();
        pre.extend_from_slice(&self.layout()?);
        Ok(keccak256(pre))
    }

    /// Signs with the Indexer key.
    pub fn sign(&self, key: &crate::keys::Ed25519Secret) -> Result<[u8; SIGNATURE_LEN], PushError> {
        Ok(key.sign(self.signing_hash()?.as_slice()))
    }

    /// Verifies `signature` against the registry key `pubkey`. Strict verification: rejects
    /// non-canonical and small-order encodings, so a signature cannot be malleated into a second
    /// valid one.
    pub fn verify(&self, pubkey: &B256, signature: &[u8]) -> Result<(), PushError> {
        let sig: [u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| PushError::SignatureLength(signature.len()))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pubkey.0)
            .map_err(|_| PushError::BadPublicKey)?;
        let hash = self.signing_hash()?;
        vk.verify_strict(hash.as_slice(), &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| PushError::BadSignature)
    }
}

/// The canonical v1 reproduction params: `[{"address":…,"blockHash":…,"topics":[…]}]` with
/// lowercase 0x-hex and every topic of the log in position.
///
/// Why this form: `blockHash` pins the exact block (a reorg makes the call fail instead of
/// silently returning other logs), and address + all topics select this event within it. It
/// returns exactly this log unless the same contract emitted a log with identical topics again
/// in that block; then it returns that small set, in which this log is the one with
/// `transactionHash`/`logIndex` of the push.
pub fn repro_params_json(cluster: Address, block_hash: B256, topics: &[B256]) -> String {
    let topics: Vec<String> = topics
        .iter()
        .map(|t| format!("\"{}\"", hex::encode_prefixed(t)))
        .collect();
    format!(
        "[{{\"address\":\"{}\",\"blockHash\":\"{}\",\"topics\":[{}]}}]",
        hex::encode_prefixed(cluster),
        hex::encode_prefixed(block_hash),
        topics.join(",")
    )
}

/// The 64-byte report_data the Indexer asks its TEE to quote: `keccak256(ATTESTATION_DOMAIN ‖
/// pubkey) ‖ 32 zero bytes`. Binds the signing key to the attested code.
pub fn attestation_report_data(pubkey: &B256) -> [u8; 64] {
    let mut pre = ATTESTATION_DOMAIN.to_vec();
    pre.extend_from_slice(pubkey.as_slice());
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(keccak256(pre).as_slice());
    out
}

/// Whether a quote's report_data binds `pubkey` (DESIGN §9.2: it *starts with* the hash; the
/// rest is not interpreted).
pub fn report_data_binds(report_data: &[u8], pubkey: &B256) -> bool {
    report_data.len() >= 32 && report_data[..32] == attestation_report_data(pubkey)[..32]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::Ed25519Secret;

    fn body() -> PushBody {
        let cluster = Address::repeat_byte(0x11);
        let bh = B256::repeat_byte(0x22);
        let topics = vec![B256::repeat_byte(0x33), B256::repeat_byte(0x44)];
        PushBody {
            cluster,
            block_number: 7,
            block_hash: bh,
            tx_hash: B256::repeat_byte(0x55),
            log_index: 3,
            address: cluster,
            repro_method: REPRO_METHOD.into(),
            repro_params_json: repro_params_json(cluster, bh, &topics),
            topics,
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn sign_verify_and_every_field_tampered_fails() {
        let key = Ed25519Secret::from_seed([9; 32]);
        let pk = key.public();
        let b = body();
        let sig = b.sign(&key).unwrap();
        b.verify(&pk, &sig).unwrap();
        let tampers: Vec<fn(&mut PushBody)> = vec![
            |b| b.cluster = Address::repeat_byte(0x12),
            |b| b.block_number += 1,
            |b| b.block_hash = B256::repeat_byte(0x23),
            |b| b.tx_hash = B256::repeat_byte(0x56),
            |b| b.log_index += 1,
            |b| b.address = Address::repeat_byte(0x13),
            |b| b.topics[1] = B256::repeat_byte(0x45),
            |b| {
                b.topics.pop();
            },
            |b| b.topics.push(B256::ZERO),
            |b| b.data.push(0),
            |b| b.data[0] ^= 1,
            |b| b.repro_method = "eth_getLogz".into(),
            |b| b.repro_params_json.push(' '),
        ];
        for (i, t) in tampers.iter().enumerate() {
            let mut x = b.clone();
            t(&mut x);
            assert_eq!(
                x.verify(&pk, &sig),
                Err(PushError::BadSignature),
                "tamper {i}"
            );
        }
        let other = Ed25519Secret::from_seed([8; 32]).public();
        assert_eq!(b.verify(&other, &sig), Err(PushError::BadSignature));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(b.verify(&pk, &bad).is_err());
        assert_eq!(
            b.verify(&pk, &sig[..63]),
            Err(PushError::SignatureLength(63))
        );
    }

    #[test]
    fn length_prefixes_prevent_shifting_bytes_between_fields() {
        let mut a = body();
        let mut b = body();
        a.data = vec![];
        a.repro_method = "\u{1}eth_getLogs".into();
        b.data = vec![];
        b.repro_method = "eth_getLogs".into();
        assert_ne!(a.layout().unwrap(), b.layout().unwrap());
    }

    #[test]
    fn too_many_topics_is_an_error() {
        let mut b = body();
        b.topics = vec![B256::ZERO; 5];
        assert_eq!(b.layout(), Err(PushError::TooManyTopics(5)));
    }

    #[test]
    fn report_data_binding() {
        let pk = B256::repeat_byte(7);
        let rd = attestation_report_data(&pk);
        assert!(report_data_binds(&rd, &pk));
        assert!(!report_data_binds(&rd, &B256::repeat_byte(8)));
        assert!(!report_data_binds(&rd[..31], &pk));
        assert_eq!(&rd[32..], &[0u8; 32]);
    }

    #[test]
    fn repro_json_shape() {
        let s = repro_params_json(Address::ZERO, B256::ZERO, &[B256::repeat_byte(1)]);
        assert!(s.starts_with("[{\"address\":\"0x0000000000000000000000000000000000000000\""));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[0]["topics"].as_array().unwrap().len(), 1);
    }
}
