//! Signed transactions: EIP-1559 (type 2) and, for chains without a base fee, EIP-155 legacy.
//!
//! Hand-rolled over `alloy-rlp` and `k256` (both already in the workspace) because the operator
//! only ever sends plain calls: a full transaction-type stack would add a large dependency tree
//! for two encodings. Pinned by a known-answer test against an independently produced signature.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_rlp::{Encodable, Header};
use k256::ecdsa::SigningKey;

/// Fee fields of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fees {
    /// EIP-1559.
    Eip1559 {
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    },
    /// Pre-London chains.
    Legacy { gas_price: u128 },
}

/// A call to sign. Operator transactions never create contracts directly (deployments go
/// through the deterministic deployer), so `to` is always set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest {
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_limit: u64,
    pub fees: Fees,
    pub to: Address,
    pub value: U256,
    pub data: Vec<u8>,
}

/// RLP of a U256 as a big-endian integer without leading zeros.
fn u256_rlp(v: &U256, out: &mut Vec<u8>) {
    let bytes = v.to_be_bytes::<32>();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(32);
    bytes[first..].encode(out);
}

enum Field<'a> {
    U64(u64),
    U128(u128),
    U256(&'a U256),
    Bytes(&'a [u8]),
    EmptyList,
}

fn rlp_list(fields: &[Field<'_>]) -> Vec<u8> {
    let mut payload = Vec::new();
    for f in fields {
        match f {
            Field::U64(v) => v.encode(&mut payload),
            Field::U128(v) => v.encode(&mut payload),
            Field::U256(v) => u256_rlp(v, &mut payload),
            Field::Bytes(b) => b.encode(&mut payload),
            Field::EmptyList => payload.push(alloy_rlp::EMPTY_LIST_CODE),
        }
    }
    let mut out = Vec::with_capacity(payload.len() + 9);
    Header {
        list: true,
        payload_length: payload.len(),
    }
    .encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

fn sign(key: &SigningKey, hash: &B256) -> Result<(U256, U256, u8), k256::ecdsa::Error> {
    let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice())?;
    // Ethereum requires low-s; flip the parity with s.
    let (sig, parity) = match sig.normalize_s() {
        Some(n) => (n, recid.is_y_odd() as u8 ^ 1),
        None => (sig, recid.is_y_odd() as u8),
    };
    let r = U256::from_be_slice(sig.r().to_bytes().as_slice());
    let s = U256::from_be_slice(sig.s().to_bytes().as_slice());
    Ok((r, s, parity))
}

impl TxRequest {
    /// The raw signed transaction for `eth_sendRawTransaction`, and its hash.
    pub fn sign(&self, key: &SigningKey) -> Result<(Vec<u8>, B256), k256::ecdsa::Error> {
        let to = self.to.as_slice();
        let data = self.data.as_slice();
        match self.fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => {
                let body = |extra: &[Field<'_>]| {
                    let mut fields = vec![
                        Field::U64(self.chain_id),
                        Field::U64(self.nonce),
                        Field::U128(max_priority_fee_per_gas),
                        Field::U128(max_fee_per_gas),
                        Field::U64(self.gas_limit),
                        Field::Bytes(to),
                        Field::U256(&self.value),
                        Field::Bytes(data),
                        Field::EmptyList,
                    ];
                    for e in extra {
                        fields.push(match e {
                            Field::U64(v) => Field::U64(*v),
                            Field::U256(v) => Field::U256(v),
                            _ => Field::EmptyList,
                        });
                    }
                    let mut out = vec![0x02];
                    out.extend(rlp_list(&fields));
                    out
                };
                let (r, s, parity) = sign(key, &keccak256(body(&[])))?;
                let raw = body(&[Field::U64(parity.into()), Field::U256(&r), Field::U256(&s)]);
                let hash = keccak256(&raw);
                Ok((raw, hash))
            }
            Fees::Legacy { gas_price } => {
                let unsigned = rlp_list(&[
                    Field::U64(self.nonce),
                    Field::U128(gas_price),
                    Field::U64(self.gas_limit),
                    Field::Bytes(to),
                    Field::U256(&self.value),
                    Field::Bytes(data),
                    Field::U64(self.chain_id),
                    Field::U64(0),
                    Field::U64(0),
                ]);
                let (r, s, parity) = sign(key, &keccak256(&unsigned))?;
                let v = u64::from(parity) + self.chain_id.saturating_mul(2) + 35;
                let raw = rlp_list(&[
                    Field::U64(self.nonce),
                    Field::U128(gas_price),
                    Field::U64(self.gas_limit),
                    Field::Bytes(to),
                    Field::U256(&self.value),
                    Field::Bytes(data),
                    Field::U64(v),
                    Field::U256(&r),
                    Field::U256(&s),
                ]);
                let hash = keccak256(&raw);
                Ok((raw, hash))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn eip155_known_answer() {
        // The EIP-155 example: nonce 9, 20 gwei, 21000 gas, to 0x3535…35, 1 ether, chain 1,
        // key 0x4646…46.
        let key = SigningKey::from_slice(&[0x46; 32]).unwrap();
        let tx = TxRequest {
            chain_id: 1,
            nonce: 9,
            gas_limit: 21_000,
            fees: Fees::Legacy {
                gas_price: 20_000_000_000,
            },
            to: Address::repeat_byte(0x35),
            value: U256::from(10u128.pow(18)),
            data: vec![],
        };
        let (raw, _) = tx.sign(&key).unwrap();
        assert_eq!(
            hex::encode(raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
    }

    #[test]
    fn eip1559_recovers_to_the_signer() {
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        let tx = TxRequest {
            chain_id: 84532,
            nonce: 3,
            gas_limit: 100_000,
            fees: Fees::Eip1559 {
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
            },
            to: Address::repeat_byte(0x11),
            value: U256::ZERO,
            data: vec![1, 2, 3],
        };
        let (raw, hash) = tx.sign(&key).unwrap();
        assert_eq!(raw[0], 0x02);
        assert_eq!(hash, keccak256(&raw));
        // The last 67 bytes are parity (1) ‖ r (0xa0 + 32) ‖ s (0xa0 + 32) when r, s have no
        // leading zero byte; recover from them and compare with the signer.
        let n = raw.len();
        let (r, s) = (&raw[n - 65..n - 33], &raw[n - 32..]);
        if raw[n - 66] == 0xa0 && raw[n - 33] == 0xa0 {
            let parity = raw[n - 67];
            let sig = Signature::from_scalars(
                <[u8; 32]>::try_from(r).unwrap(),
                <[u8; 32]>::try_from(s).unwrap(),
            )
            .unwrap();
            let body = {
                let t = TxRequest { ..tx.clone() };
                let to = t.to;
                let mut out = vec![0x02];
                out.extend(rlp_list(&[
                    Field::U64(t.chain_id),
                    Field::U64(t.nonce),
                    Field::U128(1_000_000),
                    Field::U128(2_000_000_000),
                    Field::U64(t.gas_limit),
                    Field::Bytes(to.as_slice()),
                    Field::U256(&t.value),
                    Field::Bytes(&t.data),
                    Field::EmptyList,
                ]));
                out
            };
            let vk = VerifyingKey::recover_from_prehash(
                keccak256(&body).as_slice(),
                &sig,
                RecoveryId::from_byte(parity).unwrap(),
            )
            .unwrap();
            assert_eq!(vk, *key.verifying_key());
        }
    }
}
