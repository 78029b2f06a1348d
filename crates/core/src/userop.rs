//! ERC-4337 v0.7 user operations: the packed struct the EntryPoint sees, the EntryPoint v0.7
//! `getUserOpHash`, the `paymasterAndData` layout of our `SponsorPaymaster`, and the hash its
//! signer signs (DESIGN §3.8, §10).
//!
//! Pure functions only. Both the node-side UserOperation client and the sponsor service build on
//! these, and `spec/vectors/userop.json` (generated with foundry's `cast`, see
//! `spec/gen-userop-vectors.py`) pins them, so a drift on either side fails a test rather than an
//! on-chain validation.
//!
//! Every hash here is built word by word (each field one 32-byte ABI word) instead of through a
//! generic ABI encoder: the layouts are all-static, and spelling the words out makes each one
//! line up with the Solidity it mirrors (`UserOperationLib.encode`, `SponsorPaymaster.getHash`).

use alloy_primitives::{Address, B256, Bytes, U256, address, keccak256};

/// The canonical EntryPoint v0.7 address (same on every chain).
pub const ENTRY_POINT_V07: Address = address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032");

/// Offset of `paymasterVerificationGasLimit` in `paymasterAndData` (EntryPoint v0.7).
pub const PAYMASTER_VALIDATION_GAS_OFFSET: usize = 20;
/// Offset of `paymasterPostOpGasLimit` in `paymasterAndData` (EntryPoint v0.7).
pub const PAYMASTER_POSTOP_GAS_OFFSET: usize = 36;
/// Offset of the paymaster-specific data in `paymasterAndData` (EntryPoint v0.7).
pub const PAYMASTER_DATA_OFFSET: usize = 52;
/// Length of a `SponsorPaymaster` signature (`r ‖ s ‖ v`).
pub const SPONSOR_SIGNATURE_LEN: usize = 65;
/// Length of the `SponsorPaymaster`-specific `paymasterData`: validUntil(6) ‖ validAfter(6) ‖ sig(65).
pub const SPONSOR_PAYMASTER_DATA_LEN: usize = 6 + 6 + SPONSOR_SIGNATURE_LEN;
/// The only `paymasterAndData` length `SponsorPaymaster` accepts (129).
pub const SPONSOR_PAYMASTER_AND_DATA_LEN: usize =
    PAYMASTER_DATA_OFFSET + SPONSOR_PAYMASTER_DATA_LEN;
/// Largest value of a Solidity `uint48` (the validity window fields).
pub const MAX_U48: u64 = (1 << 48) - 1;

/// Errors from decoding or building paymaster fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserOpError {
    /// `paymasterAndData` is shorter than the static EntryPoint prefix or not the exact length.
    #[error("paymasterAndData has {got} bytes, expected {expected}")]
    PaymasterAndDataLength {
        /// Bytes present.
        got: usize,
        /// Bytes required.
        expected: usize,
    },
    /// A validity-window bound does not fit the on-chain `uint48`.
    #[error("{field} {value} does not fit in uint48")]
    NotUint48 {
        /// Which bound.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
}

/// `PackedUserOperation` exactly as EntryPoint v0.7 receives it in `handleOps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedUserOperation {
    /// The account (for us: the node's ClusterMember).
    pub sender: Address,
    /// Key (high 192 bits) ‖ sequence (low 64 bits).
    pub nonce: U256,
    /// `factory ‖ factoryData`, empty when the account exists.
    pub init_code: Bytes,
    /// The call the EntryPoint makes on the account.
    pub call_data: Bytes,
    /// `verificationGasLimit (high 128) ‖ callGasLimit (low 128)`.
    pub account_gas_limits: B256,
    /// Gas paid for the bundler's calldata and overhead.
    pub pre_verification_gas: U256,
    /// `maxPriorityFeePerGas (high 128) ‖ maxFeePerGas (low 128)`.
    pub gas_fees: B256,
    /// `paymaster ‖ pmVerificationGasLimit ‖ pmPostOpGasLimit ‖ paymasterData`, or empty.
    pub paymaster_and_data: Bytes,
    /// The account's signature over the userOp hash.
    pub signature: Bytes,
}

/// Packs two `uint128`s into one word the way v0.7 does (`high ‖ low`).
pub fn pack_u128_pair(high: u128, low: u128) -> B256 {
    let mut w = [0u8; 32];
    w[..16].copy_from_slice(&high.to_be_bytes());
    w[16..].copy_from_slice(&low.to_be_bytes());
    B256::from(w)
}

/// Splits a packed word into `(high, low)` `uint128`s.
pub fn unpack_u128_pair(word: B256) -> (u128, u128) {
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    hi.copy_from_slice(&word[..16]);
    lo.copy_from_slice(&word[16..]);
    (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
}

fn word_address(a: Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_slice());
    w
}

fn word_u64(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

impl PackedUserOperation {
    /// `UserOperationLib.encode`: the ABI encoding (8 words) the EntryPoint hashes. It leaves
    /// out the signature so the hash can be what the account signs.
    pub fn encode_for_hash(&self) -> [u8; 256] {
        let words: [[u8; 32]; 8] = [
            word_address(self.sender),
            self.nonce.to_be_bytes::<32>(),
            keccak256(&self.init_code).0,
            keccak256(&self.call_data).0,
            self.account_gas_limits.0,
            self.pre_verification_gas.to_be_bytes::<32>(),
            self.gas_fees.0,
            keccak256(&self.paymaster_and_data).0,
        ];
        let mut out = [0u8; 256];
        for (i, w) in words.iter().enumerate() {
            out[i * 32..(i + 1) * 32].copy_from_slice(w);
        }
        out
    }

    /// `UserOperationLib.hash`: keccak256 of [`Self::encode_for_hash`].
    pub fn inner_hash(&self) -> B256 {
        keccak256(self.encode_for_hash())
    }

    /// `EntryPoint.getUserOpHash` (v0.7): `keccak256(abi.encode(inner_hash, entryPoint, chainId))`.
    /// Commits to the whole `paymasterAndData`, which is why sponsorship comes before signing.
    pub fn user_op_hash(&self, entry_point: Address, chain_id: u64) -> B256 {
        let mut buf = [0u8; 96];
        buf[..32].copy_from_slice(self.inner_hash().as_slice());
        buf[32..64].copy_from_slice(&word_address(entry_point));
        buf[64..].copy_from_slice(&word_u64(chain_id));
        keccak256(buf)
    }

    /// `verificationGasLimit` (high half of `accountGasLimits`).
    pub fn verification_gas_limit(&self) -> u128 {
        unpack_u128_pair(self.account_gas_limits).0
    }

    /// `callGasLimit` (low half of `accountGasLimits`).
    pub fn call_gas_limit(&self) -> u128 {
        unpack_u128_pair(self.account_gas_limits).1
    }
}

/// The v0.7 user operation as wallets, bundlers and ERC-7677 paymasters exchange it over JSON-RPC
/// (fields unpacked). [`UserOperation::pack`] turns it into what the EntryPoint hashes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserOperation {
    /// The account.
    pub sender: Address,
    /// Key ‖ sequence.
    pub nonce: U256,
    /// Factory for a not-yet-deployed account.
    pub factory: Option<Address>,
    /// Calldata for the factory.
    pub factory_data: Bytes,
    /// The call the EntryPoint makes on the account.
    pub call_data: Bytes,
    /// Gas for the execution phase.
    pub call_gas_limit: u128,
    /// Gas for `validateUserOp` (and account creation).
    pub verification_gas_limit: u128,
    /// Bundler overhead.
    pub pre_verification_gas: U256,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip cap.
    pub max_priority_fee_per_gas: u128,
    /// Paymaster contract, if any.
    pub paymaster: Option<Address>,
    /// Gas for `validatePaymasterUserOp`.
    pub paymaster_verification_gas_limit: u128,
    /// Gas for `postOp`.
    pub paymaster_post_op_gas_limit: u128,
    /// Paymaster-specific data (for ours: validUntil ‖ validAfter ‖ signature).
    pub paymaster_data: Bytes,
    /// The account's signature.
    pub signature: Bytes,
}

impl UserOperation {
    /// Packs the way bundlers do before calling the EntryPoint: `initCode = factory ‖
    /// factoryData` (empty without a factory), `paymasterAndData = paymaster ‖ pmVGL(16) ‖
    /// pmPostOpGL(16) ‖ paymasterData` (empty without a paymaster).
    pub fn pack(&self) -> PackedUserOperation {
        let init_code = match self.factory {
            Some(f) => {
                let mut v = Vec::with_capacity(20 + self.factory_data.len());
                v.extend_from_slice(f.as_slice());
                v.extend_from_slice(&self.factory_data);
                Bytes::from(v)
            }
            None => Bytes::new(),
        };
        let paymaster_and_data = match self.paymaster {
            Some(p) => {
                let mut v = Vec::with_capacity(PAYMASTER_DATA_OFFSET + self.paymaster_data.len());
                v.extend_from_slice(p.as_slice());
                v.extend_from_slice(&self.paymaster_verification_gas_limit.to_be_bytes());
                v.extend_from_slice(&self.paymaster_post_op_gas_limit.to_be_bytes());
                v.extend_from_slice(&self.paymaster_data);
                Bytes::from(v)
            }
            None => Bytes::new(),
        };
        PackedUserOperation {
            sender: self.sender,
            nonce: self.nonce,
            init_code,
            call_data: self.call_data.clone(),
            account_gas_limits: pack_u128_pair(self.verification_gas_limit, self.call_gas_limit),
            pre_verification_gas: self.pre_verification_gas,
            gas_fees: pack_u128_pair(self.max_priority_fee_per_gas, self.max_fee_per_gas),
            paymaster_and_data,
            signature: self.signature.clone(),
        }
    }
}

/// The `SponsorPaymaster` data: validity window plus the sponsor signer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SponsorPaymasterData {
    /// Last second the sponsorship is valid (`0` = no expiry), `uint48`.
    pub valid_until: u64,
    /// First second the sponsorship is valid, `uint48`.
    pub valid_after: u64,
    /// `r ‖ s ‖ v`, `v ∈ {27, 28}`.
    pub signature: [u8; SPONSOR_SIGNATURE_LEN],
}

impl SponsorPaymasterData {
    /// Builds the data, refusing window bounds the contract could not represent (it would read
    /// different numbers than were signed).
    pub fn new(
        valid_until: u64,
        valid_after: u64,
        signature: [u8; SPONSOR_SIGNATURE_LEN],
    ) -> Result<Self, UserOpError> {
        check_u48("validUntil", valid_until)?;
        check_u48("validAfter", valid_after)?;
        Ok(Self {
            valid_until,
            valid_after,
            signature,
        })
    }

    /// `validUntil(6) ‖ validAfter(6) ‖ signature(65)`: the ERC-7677 `paymasterData`.
    pub fn encode(&self) -> [u8; SPONSOR_PAYMASTER_DATA_LEN] {
        let mut out = [0u8; SPONSOR_PAYMASTER_DATA_LEN];
        out[..6].copy_from_slice(&self.valid_until.to_be_bytes()[2..]);
        out[6..12].copy_from_slice(&self.valid_after.to_be_bytes()[2..]);
        out[12..].copy_from_slice(&self.signature);
        out
    }

    /// Parses `paymasterData` (the part after the 52-byte static prefix).
    pub fn decode(data: &[u8]) -> Result<Self, UserOpError> {
        if data.len() != SPONSOR_PAYMASTER_DATA_LEN {
            return Err(UserOpError::PaymasterAndDataLength {
                got: data.len() + PAYMASTER_DATA_OFFSET,
                expected: SPONSOR_PAYMASTER_AND_DATA_LEN,
            });
        }
        let mut until = [0u8; 8];
        until[2..].copy_from_slice(&data[..6]);
        let mut after = [0u8; 8];
        after[2..].copy_from_slice(&data[6..12]);
        let mut signature = [0u8; SPONSOR_SIGNATURE_LEN];
        signature.copy_from_slice(&data[12..]);
        Ok(Self {
            valid_until: u64::from_be_bytes(until),
            valid_after: u64::from_be_bytes(after),
            signature,
        })
    }
}

fn check_u48(field: &'static str, value: u64) -> Result<(), UserOpError> {
    if value > MAX_U48 {
        return Err(UserOpError::NotUint48 { field, value });
    }
    Ok(())
}

/// The full 129-byte `paymasterAndData` for `SponsorPaymaster` (what the EntryPoint sees).
pub fn sponsor_paymaster_and_data(
    paymaster: Address,
    verification_gas_limit: u128,
    post_op_gas_limit: u128,
    data: &SponsorPaymasterData,
) -> [u8; SPONSOR_PAYMASTER_AND_DATA_LEN] {
    let mut out = [0u8; SPONSOR_PAYMASTER_AND_DATA_LEN];
    out[..20].copy_from_slice(paymaster.as_slice());
    out[20..36].copy_from_slice(&verification_gas_limit.to_be_bytes());
    out[36..52].copy_from_slice(&post_op_gas_limit.to_be_bytes());
    out[52..].copy_from_slice(&data.encode());
    out
}

/// `SponsorPaymaster.getHash(userOp, validUntil, validAfter)` on chain `chain_id` for the
/// paymaster at `paymaster`: keccak256 of twelve words (see the contract's doc for the table).
///
/// It reads `paymasterAndData[20:52]` (the two paymaster gas limits) from `op`, so the caller must
/// have put the final limits there; it covers neither `op.signature` nor the paymaster signature,
/// which is what lets the sponsor sign before the account does. Errors like the contract when
/// `paymasterAndData` is shorter than 52 bytes.
pub fn sponsor_paymaster_hash(
    op: &PackedUserOperation,
    chain_id: u64,
    paymaster: Address,
    valid_until: u64,
    valid_after: u64,
) -> Result<B256, UserOpError> {
    if op.paymaster_and_data.len() < PAYMASTER_DATA_OFFSET {
        return Err(UserOpError::PaymasterAndDataLength {
            got: op.paymaster_and_data.len(),
            expected: PAYMASTER_DATA_OFFSET,
        });
    }
    check_u48("validUntil", valid_until)?;
    check_u48("validAfter", valid_after)?;
    let mut gas = [0u8; 32];
    gas.copy_from_slice(
        &op.paymaster_and_data[PAYMASTER_VALIDATION_GAS_OFFSET..PAYMASTER_DATA_OFFSET],
    );
    let words: [[u8; 32]; 12] = [
        word_address(op.sender),
        op.nonce.to_be_bytes::<32>(),
        keccak256(&op.init_code).0,
        keccak256(&op.call_data).0,
        op.account_gas_limits.0,
        gas,
        op.pre_verification_gas.to_be_bytes::<32>(),
        op.gas_fees.0,
        word_u64(chain_id),
        word_address(paymaster),
        word_u64(valid_until),
        word_u64(valid_after),
    ];
    let mut buf = [0u8; 384];
    for (i, w) in words.iter().enumerate() {
        buf[i * 32..(i + 1) * 32].copy_from_slice(w);
    }
    Ok(keccak256(buf))
}

/// EIP-191 personal-sign digest of a 32-byte hash: what both the ClusterMember (userOp hash)
/// and `SponsorPaymaster` (its `getHash`) recover against.
pub fn eth_signed_message_hash(hash: B256) -> B256 {
    let mut buf = [0u8; 28 + 32];
    buf[..28].copy_from_slice(b"\x19Ethereum Signed Message:\n32");
    buf[28..].copy_from_slice(hash.as_slice());
    keccak256(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> UserOperation {
        UserOperation {
            sender: Address::repeat_byte(0x11),
            nonce: U256::from(7u64),
            factory: None,
            factory_data: Bytes::new(),
            call_data: Bytes::from(vec![0xb6, 0x1d, 0x27, 0xf6]),
            call_gas_limit: 100_000,
            verification_gas_limit: 200_000,
            pre_verification_gas: U256::from(50_000u64),
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            paymaster: Some(Address::repeat_byte(0x22)),
            paymaster_verification_gas_limit: 75_000,
            paymaster_post_op_gas_limit: 0,
            paymaster_data: Bytes::new(),
            signature: Bytes::new(),
        }
    }

    #[test]
    fn pack_places_gas_halves_like_v07() {
        let p = sample().pack();
        assert_eq!(p.verification_gas_limit(), 200_000);
        assert_eq!(p.call_gas_limit(), 100_000);
        assert_eq!(unpack_u128_pair(p.gas_fees), (1_000_000_000, 2_000_000_000));
        assert_eq!(p.paymaster_and_data.len(), PAYMASTER_DATA_OFFSET);
        assert_eq!(
            &p.paymaster_and_data[..20],
            Address::repeat_byte(0x22).as_slice()
        );
        assert!(p.init_code.is_empty());
    }

    #[test]
    fn paymaster_data_round_trips_and_bounds_uint48() {
        let d = SponsorPaymasterData::new(MAX_U48, 1, [0x5a; 65]).expect("in range");
        assert_eq!(SponsorPaymasterData::decode(&d.encode()), Ok(d));
        assert!(matches!(
            SponsorPaymasterData::new(MAX_U48 + 1, 0, [0; 65]),
            Err(UserOpError::NotUint48 {
                field: "validUntil",
                ..
            })
        ));
        assert!(SponsorPaymasterData::decode(&[0u8; 76]).is_err());
    }

    #[test]
    fn sponsor_hash_ignores_signatures_but_not_gas_limits() {
        let op = sample();
        let base =
            sponsor_paymaster_hash(&op.pack(), 1, Address::repeat_byte(0x22), 10, 0).expect("hash");
        let mut signed = op.clone();
        signed.signature = Bytes::from(vec![1u8; 65]);
        signed.paymaster_data = Bytes::from(vec![9u8; 77]);
        assert_eq!(
            sponsor_paymaster_hash(&signed.pack(), 1, Address::repeat_byte(0x22), 10, 0)
                .expect("hash"),
            base
        );
        let mut more_gas = op;
        more_gas.paymaster_verification_gas_limit += 1;
        assert_ne!(
            sponsor_paymaster_hash(&more_gas.pack(), 1, Address::repeat_byte(0x22), 10, 0)
                .expect("hash"),
            base
        );
        let short = PackedUserOperation::default();
        assert!(sponsor_paymaster_hash(&short, 1, Address::ZERO, 0, 0).is_err());
    }

    /// The cases in `spec/vectors/userop.json` were computed by `cast` alone.
    #[test]
    fn matches_cast_vectors() {
        use core::str::FromStr;
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../spec/vectors/userop.json"))
                .expect("vector json");
        let s = |v: &serde_json::Value| v.as_str().expect("string field").to_owned();
        let hex128 = |v: &serde_json::Value| {
            u128::from_str_radix(s(v).trim_start_matches("0x"), 16).expect("u128")
        };
        let entry_point = Address::from_str(&s(&doc["entry_point"])).expect("ep");
        assert_eq!(entry_point, ENTRY_POINT_V07);
        let signer = Address::from_str(&s(&doc["signer_address"])).expect("signer");
        let cases = doc["cases"].as_array().expect("cases");
        assert!(cases.len() >= 3);
        for c in cases {
            let u = &c["user_op"];
            let op = UserOperation {
                sender: Address::from_str(&s(&u["sender"])).expect("sender"),
                nonce: U256::from_str(&s(&u["nonce"])).expect("nonce"),
                factory: u["factory"]
                    .as_str()
                    .map(|f| Address::from_str(f).expect("factory")),
                factory_data: Bytes::from_str(&s(&u["factoryData"])).expect("factoryData"),
                call_data: Bytes::from_str(&s(&u["callData"])).expect("callData"),
                call_gas_limit: hex128(&u["callGasLimit"]),
                verification_gas_limit: hex128(&u["verificationGasLimit"]),
                pre_verification_gas: U256::from_str(&s(&u["preVerificationGas"])).expect("pvg"),
                max_fee_per_gas: hex128(&u["maxFeePerGas"]),
                max_priority_fee_per_gas: hex128(&u["maxPriorityFeePerGas"]),
                paymaster: Some(Address::from_str(&s(&u["paymaster"])).expect("paymaster")),
                paymaster_verification_gas_limit: hex128(&u["paymasterVerificationGasLimit"]),
                paymaster_post_op_gas_limit: hex128(&u["paymasterPostOpGasLimit"]),
                paymaster_data: Bytes::from_str(&s(&u["paymasterData"])).expect("paymasterData"),
                signature: Bytes::new(),
            };
            let chain_id = c["chain_id"].as_u64().expect("chain id");
            let packed = op.pack();
            let name = s(&c["name"]);
            let p = &c["packed"];
            assert_eq!(
                packed.init_code,
                Bytes::from_str(&s(&p["initCode"])).expect("ic"),
                "{name}"
            );
            assert_eq!(
                packed.account_gas_limits,
                B256::from_str(&s(&p["accountGasLimits"])).expect("agl"),
                "{name}"
            );
            assert_eq!(
                packed.gas_fees,
                B256::from_str(&s(&p["gasFees"])).expect("gf"),
                "{name}"
            );
            assert_eq!(
                packed.paymaster_and_data,
                Bytes::from_str(&s(&p["paymasterAndData"])).expect("pmd"),
                "{name}"
            );
            assert_eq!(
                packed.user_op_hash(ENTRY_POINT_V07, chain_id),
                B256::from_str(&s(&c["user_op_hash"])).expect("uoh"),
                "{name}"
            );
            let (until, after) = (
                c["valid_until"].as_u64().expect("vu"),
                c["valid_after"].as_u64().expect("va"),
            );
            let paymaster = op.paymaster.expect("paymaster");
            let sh = sponsor_paymaster_hash(&packed, chain_id, paymaster, until, after)
                .expect("sponsor hash");
            assert_eq!(
                sh,
                B256::from_str(&s(&c["sponsor_hash"])).expect("sh"),
                "{name}"
            );

            let pmd =
                SponsorPaymasterData::decode(&packed.paymaster_and_data[PAYMASTER_DATA_OFFSET..])
                    .expect("decode");
            assert_eq!((pmd.valid_until, pmd.valid_after), (until, after), "{name}");
            assert_eq!(
                sponsor_paymaster_and_data(
                    paymaster,
                    op.paymaster_verification_gas_limit,
                    op.paymaster_post_op_gas_limit,
                    &pmd
                )
                .as_slice(),
                packed.paymaster_and_data.as_ref(),
                "{name}"
            );
            let sig = Signature::from_slice(&pmd.signature[..64]).expect("sig");
            let rec = RecoveryId::from_byte(pmd.signature[64] - 27).expect("v");
            let vk = VerifyingKey::recover_from_prehash(
                eth_signed_message_hash(sh).as_slice(),
                &sig,
                rec,
            )
            .expect("recover");
            let point = vk.to_encoded_point(false);
            let recovered = Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..]);
            assert_eq!(recovered, signer, "{name}");
        }
    }
}
