//! Signed transactions from a local key: EIP-1559 (type 2) and, for chains without a base fee,
//! EIP-155 legacy; and [`Wallet`], which fills nonce, gas and fees, signs, sends and waits.
//!
//! The node itself only sends UserOperations, but operators (cluster deployment, allowlists, the
//! Indexer registry) sign plain calls with a key file or keystore against hosted endpoints that
//! have no unlocked accounts. Hand-rolled over `alloy-rlp` and `k256` (both already in the
//! workspace) because only plain calls are ever sent: a full transaction-type stack would add a
//! large dependency tree for two encodings. Pinned by the EIP-155 known-answer test and by
//! recovering the signer from an EIP-1559 signature.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::{Encodable, Header};
use attestmesh_core::keys::OwnerKey;
use k256::ecdsa::{Signature, SigningKey};
use serde_json::json;

use crate::rpc::{Receipt, RpcClient, RpcError};

/// Fee fields of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fees {
    /// EIP-1559.
    Eip1559 {
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    },
    /// Pre-London chains (EIP-155 replay protection).
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

/// A signed transaction, ready for `eth_sendRawTransaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub raw: Vec<u8>,
    /// `keccak256(raw)`, the hash the node will report.
    pub hash: B256,
}

/// An ECDSA signature over a transaction hash, low-s as Ethereum requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxSignature {
    pub r: U256,
    pub s: U256,
    pub y_parity: bool,
}

/// Signing failed (the key cannot sign this hash; not expected for a valid key).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the transaction: {0}")]
pub struct SignError(String);

/// A secp256k1 key that can sign transactions: the operator's [`SigningKey`] (key file,
/// keystore) or a node's [`OwnerKey`].
pub trait TxSigner {
    fn address(&self) -> Address;
    /// Signs a 32-byte prehash.
    fn sign_hash(&self, hash: &B256) -> Result<TxSignature, SignError>;
}

/// A borrowed key signs as the key: a [`Wallet`] can sign with a key its caller keeps.
impl<T: TxSigner + ?Sized> TxSigner for &T {
    fn address(&self) -> Address {
        (**self).address()
    }

    fn sign_hash(&self, hash: &B256) -> Result<TxSignature, SignError> {
        (**self).sign_hash(hash)
    }
}

/// Low-s normalisation with the matching parity flip (EIP-2: high-s signatures are invalid).
fn to_tx_signature(sig: Signature, y_odd: bool) -> TxSignature {
    let (sig, y_odd) = match sig.normalize_s() {
        Some(n) => (n, !y_odd),
        None => (sig, y_odd),
    };
    TxSignature {
        r: U256::from_be_slice(sig.r().to_bytes().as_slice()),
        s: U256::from_be_slice(sig.s().to_bytes().as_slice()),
        y_parity: y_odd,
    }
}

impl TxSigner for SigningKey {
    fn address(&self) -> Address {
        attestmesh_core::secp::address_of(self.verifying_key())
    }

    fn sign_hash(&self, hash: &B256) -> Result<TxSignature, SignError> {
        let (sig, recid) = self
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| SignError(e.to_string()))?;
        Ok(to_tx_signature(sig, recid.is_y_odd()))
    }
}

impl TxSigner for OwnerKey {
    fn address(&self) -> Address {
        OwnerKey::address(self)
    }

    fn sign_hash(&self, hash: &B256) -> Result<TxSignature, SignError> {
        // `r ‖ s ‖ v` with v = 27 + recovery id.
        let rsv = self
            .sign_prehash(hash)
            .map_err(|e| SignError(e.to_string()))?;
        let sig = Signature::from_slice(&rsv[..64]).map_err(|e| SignError(e.to_string()))?;
        Ok(to_tx_signature(sig, rsv[64].wrapping_sub(27) & 1 == 1))
    }
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

impl TxRequest {
    /// The fields of an EIP-1559 transaction before the signature.
    fn eip1559_fields(&self, max_fee: u128, tip: u128) -> Vec<Field<'_>> {
        vec![
            Field::U64(self.chain_id),
            Field::U64(self.nonce),
            Field::U128(tip),
            Field::U128(max_fee),
            Field::U64(self.gas_limit),
            Field::Bytes(self.to.as_slice()),
            Field::U256(&self.value),
            Field::Bytes(&self.data),
            Field::EmptyList, // access list
        ]
    }

    /// The fields of a legacy transaction before the signature.
    fn legacy_fields(&self, gas_price: u128) -> Vec<Field<'_>> {
        vec![
            Field::U64(self.nonce),
            Field::U128(gas_price),
            Field::U64(self.gas_limit),
            Field::Bytes(self.to.as_slice()),
            Field::U256(&self.value),
            Field::Bytes(&self.data),
        ]
    }

    /// The hash the signature covers: `keccak256(0x02 ‖ rlp(fields))` for EIP-1559,
    /// `keccak256(rlp(fields ‖ chainId, 0, 0))` for EIP-155.
    pub fn signing_hash(&self) -> B256 {
        match self.fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => {
                let mut pre = vec![0x02];
                pre.extend(rlp_list(
                    &self.eip1559_fields(max_fee_per_gas, max_priority_fee_per_gas),
                ));
                keccak256(&pre)
            }
            Fees::Legacy { gas_price } => {
                let mut f = self.legacy_fields(gas_price);
                f.extend([Field::U64(self.chain_id), Field::U64(0), Field::U64(0)]);
                keccak256(rlp_list(&f))
            }
        }
    }

    /// Signs with `key`: the raw transaction for `eth_sendRawTransaction`, and its hash.
    pub fn sign(&self, key: &impl TxSigner) -> Result<SignedTx, SignError> {
        let sig = key.sign_hash(&self.signing_hash())?;
        let raw = match self.fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => {
                let mut f = self.eip1559_fields(max_fee_per_gas, max_priority_fee_per_gas);
                f.extend([
                    Field::U64(sig.y_parity.into()),
                    Field::U256(&sig.r),
                    Field::U256(&sig.s),
                ]);
                let mut raw = vec![0x02];
                raw.extend(rlp_list(&f));
                raw
            }
            Fees::Legacy { gas_price } => {
                let v = u64::from(sig.y_parity) + self.chain_id.saturating_mul(2) + 35;
                let mut f = self.legacy_fields(gas_price);
                f.extend([Field::U64(v), Field::U256(&sig.r), Field::U256(&sig.s)]);
                rlp_list(&f)
            }
        };
        let hash = keccak256(&raw);
        Ok(SignedTx { raw, hash })
    }
}

/// Headroom added to `eth_estimateGas`: estimates are exact for the state they ran on, and the
/// 63/64 rule of nested calls (CREATE2 through the deployer) punishes a tight limit. Unused gas
/// is not charged, so a generous margin costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasMargin {
    pub percent: u64,
    pub extra: u64,
}

impl Default for GasMargin {
    /// +20 % and 10 000 gas.
    fn default() -> Self {
        Self {
            percent: 20,
            extra: 10_000,
        }
    }
}

impl GasMargin {
    /// The gas limit for `estimate`, saturating at `u64::MAX`.
    pub fn apply(&self, estimate: u64) -> u64 {
        let scaled = u128::from(estimate) * u128::from(self.percent.saturating_add(100)) / 100;
        u64::try_from(scaled)
            .unwrap_or(u64::MAX)
            .saturating_add(self.extra)
    }
}

/// A plain call to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
}

/// Which step of sending a transaction failed, so callers can word their own message (an
/// estimate that reverts is a refusal by the contract; a failed nonce read is an outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStep {
    Nonce,
    EstimateGas,
    Fees,
    Send,
    Receipt,
}

impl std::fmt::Display for TxStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TxStep::Nonce => "reading the sender's nonce",
            TxStep::EstimateGas => "estimating gas",
            TxStep::Fees => "reading the fees",
            TxStep::Send => "sending the transaction",
            TxStep::Receipt => "waiting for the receipt",
        })
    }
}

/// Sending a signed transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// A node call failed. At [`TxStep::EstimateGas`] a revert means the contract refuses the
    /// call; at [`TxStep::Receipt`], [`RpcError::Reverted`] is a mined failure (with revert data
    /// replayed from the parent block when the node has it) and [`RpcError::NotMined`] a timeout.
    #[error("{step}: {source}")]
    Rpc {
        step: TxStep,
        #[source]
        source: RpcError,
    },
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl TxError {
    fn at(step: TxStep) -> impl FnOnce(RpcError) -> TxError {
        move |source| TxError::Rpc { step, source }
    }
}

/// Fee fields from the latest block: EIP-1559 with `maxFee = 2 × baseFee + tip` (room for six
/// full blocks of base-fee growth) when the chain has a base fee, else the legacy gas price. A
/// node without `eth_maxPriorityFeePerGas` gets a 0.001 gwei tip, which is what Base asks.
pub async fn suggest_fees(rpc: &RpcClient) -> Result<Fees, RpcError> {
    match rpc.base_fee_per_gas().await? {
        Some(base) => {
            let tip = rpc.max_priority_fee().await.unwrap_or(1_000_000);
            Ok(Fees::Eip1559 {
                max_fee_per_gas: base.saturating_mul(2).saturating_add(tip),
                max_priority_fee_per_gas: tip,
            })
        }
        None => Ok(Fees::Legacy {
            gas_price: rpc.gas_price().await?,
        }),
    }
}

/// A local key that sends transactions: fills nonce, gas limit (estimate plus [`GasMargin`])
/// and fees, signs, sends, and waits for the receipt. Tracks the nonce itself after the first
/// send, so consecutive transactions do not depend on a load-balanced endpoint having seen the
/// previous one in its pending pool.
pub struct Wallet<S> {
    signer: S,
    address: Address,
    chain_id: u64,
    next_nonce: Option<u64>,
    margin: GasMargin,
    receipt_timeout: Duration,
}

impl<S> std::fmt::Debug for Wallet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Wallet")
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .field("next_nonce", &self.next_nonce)
            .finish_non_exhaustive()
    }
}

impl<S: TxSigner> Wallet<S> {
    /// A wallet signing for `chain_id` (EIP-155 / EIP-1559 replay protection). Receipts are
    /// awaited for up to 5 minutes by default: a congested hosted chain can take that long.
    pub fn new(signer: S, chain_id: u64) -> Self {
        let address = signer.address();
        Self {
            signer,
            address,
            chain_id,
            next_nonce: None,
            margin: GasMargin::default(),
            receipt_timeout: Duration::from_secs(300),
        }
    }

    pub fn with_gas_margin(mut self, margin: GasMargin) -> Self {
        self.margin = margin;
        self
    }

    pub fn with_receipt_timeout(mut self, t: Duration) -> Self {
        self.receipt_timeout = t;
        self
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub fn signer(&self) -> &S {
        &self.signer
    }

    /// The transaction `call` would be sent as: next nonce, estimated gas with margin, fees.
    pub async fn prepare(&self, rpc: &RpcClient, call: &Call) -> Result<TxRequest, TxError> {
        let nonce = match self.next_nonce {
            Some(n) => n,
            None => rpc
                .pending_nonce(self.address)
                .await
                .map_err(TxError::at(TxStep::Nonce))?,
        };
        let estimate = rpc
            .estimate_gas_value(self.address, call.to, call.value, &call.data)
            .await
            .map_err(TxError::at(TxStep::EstimateGas))?;
        let fees = suggest_fees(rpc).await.map_err(TxError::at(TxStep::Fees))?;
        Ok(TxRequest {
            chain_id: self.chain_id,
            nonce,
            gas_limit: self.margin.apply(estimate),
            fees,
            to: call.to,
            value: call.value,
            data: call.data.to_vec(),
        })
    }

    /// Prepares, signs and sends `call`; the transaction hash as the node reports it.
    pub async fn send(&mut self, rpc: &RpcClient, call: &Call) -> Result<B256, TxError> {
        let request = self.prepare(rpc, call).await?;
        let signed = request.sign(&self.signer)?;
        let hash = rpc
            .send_raw(&signed.raw)
            .await
            .map_err(TxError::at(TxStep::Send))?;
        if hash != signed.hash {
            tracing::warn!(%hash, local_hash = %signed.hash, "the node reports another transaction hash");
        }
        self.next_nonce = Some(request.nonce + 1);
        Ok(hash)
    }

    /// Waits for `hash` (sent for `call`) to be mined. A failed receipt is
    /// [`RpcError::Reverted`] with the revert data replayed from the parent block, if any.
    pub async fn wait(&self, rpc: &RpcClient, hash: B256, call: &Call) -> Result<Receipt, TxError> {
        let receipt = rpc
            .wait_receipt(hash, self.receipt_timeout)
            .await
            .map_err(TxError::at(TxStep::Receipt))?;
        if !receipt.success {
            let tx = json!({
                "from": self.address,
                "to": call.to,
                "value": call.value,
                "input": call.data,
            });
            let data = rpc.replay_revert(tx, receipt.block_number).await;
            return Err(TxError::Rpc {
                step: TxStep::Receipt,
                source: RpcError::Reverted { tx: hash, data },
            });
        }
        Ok(receipt)
    }

    /// [`Self::send`] then [`Self::wait`].
    pub async fn send_and_wait(
        &mut self,
        rpc: &RpcClient,
        call: &Call,
    ) -> Result<Receipt, TxError> {
        let hash = self.send(rpc, call).await?;
        self.wait(rpc, hash, call).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::hex;
    use k256::ecdsa::{RecoveryId, VerifyingKey};

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
        assert_eq!(
            tx.signing_hash(),
            "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
                .parse::<B256>()
                .unwrap()
        );
        let signed = tx.sign(&key).unwrap();
        assert_eq!(
            hex::encode(&signed.raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
        // The node's OwnerKey signs the same bytes.
        let owner = OwnerKey::from_bytes(&[0x46; 32]).unwrap();
        assert_eq!(tx.sign(&owner).unwrap(), signed);
    }

    fn eip1559_request() -> TxRequest {
        TxRequest {
            chain_id: 84532,
            nonce: 3,
            gas_limit: 100_000,
            fees: Fees::Eip1559 {
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
            },
            to: Address::repeat_byte(0x11),
            value: U256::from(5),
            data: vec![1, 2, 3],
        }
    }

    /// Decodes the signature off the end of a type-2 transaction and recovers the signer from
    /// the signing hash: proves the field order, the parity and the low-s normalisation.
    #[test]
    fn eip1559_recovers_to_the_signer() {
        for seed in 1u8..=8 {
            let key = SigningKey::from_slice(&[seed; 32]).unwrap();
            let tx = eip1559_request();
            let signed = tx.sign(&key).unwrap();
            assert_eq!(signed.raw[0], 0x02);
            assert_eq!(signed.hash, keccak256(&signed.raw));
            let sig = key.sign_hash(&tx.signing_hash()).unwrap();
            // The encoded tail is parity ‖ r ‖ s.
            let mut tail = Vec::new();
            (sig.y_parity as u64).encode(&mut tail);
            u256_rlp(&sig.r, &mut tail);
            u256_rlp(&sig.s, &mut tail);
            assert!(signed.raw.ends_with(&tail));
            let r = sig.r.to_be_bytes::<32>();
            let s = sig.s.to_be_bytes::<32>();
            let parsed = Signature::from_scalars(r, s).unwrap();
            assert!(parsed.normalize_s().is_none(), "high s");
            let vk = VerifyingKey::recover_from_prehash(
                tx.signing_hash().as_slice(),
                &parsed,
                RecoveryId::new(sig.y_parity, false),
            )
            .unwrap();
            assert_eq!(vk, *key.verifying_key());
            let owner = OwnerKey::from_bytes(&[seed; 32]).unwrap();
            assert_eq!(tx.sign(&owner).unwrap(), signed);
            assert_eq!(TxSigner::address(&owner), TxSigner::address(&key));
        }
    }

    #[test]
    fn gas_margin() {
        assert_eq!(GasMargin::default().apply(100_000), 130_000);
        assert_eq!(GasMargin::default().apply(u64::MAX), u64::MAX);
        assert_eq!(
            GasMargin {
                percent: 0,
                extra: 0
            }
            .apply(21_000),
            21_000
        );
    }
}
