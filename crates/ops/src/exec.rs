//! Who signs, and what happens to a transaction a command decides on: signed and sent with a
//! local key, or collected into a Safe Transaction Builder batch and printed.
//!
//! Production clusters are owned by multisigs (DESIGN §3.1), which cannot hand a key to a CLI.
//! Every command therefore expresses its writes as plain calls (`to`, `value`, `data`) — even
//! contract deployments, which go through the deterministic CREATE2 deployer — so the exact same
//! plan can either be executed here or imported into a Safe and executed there.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, U256};
use attestmesh_chain::rpc::{Receipt, RpcClient, RpcError};
use attestmesh_chain::tx::{Call, TxError, TxStep, Wallet};
pub use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::OpsError;
use crate::keystore;

/// A local signing key.
pub struct LocalKey {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalKey({})", self.address)
    }
}

impl LocalKey {
    pub fn from_key(key: SigningKey) -> Self {
        let address = attestmesh_core::secp::address_of(key.verifying_key());
        Self { key, address }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// A file holding one hex private key (with or without 0x, surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, OpsError> {
        let bad = |reason: String| OpsError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let body = text.trim();
        let body = body.strip_prefix("0x").unwrap_or(body);
        let bytes = Zeroizing::new(
            alloy_primitives::hex::decode(body).map_err(|_| bad("not a hex private key".into()))?,
        );
        if bytes.len() != 32 {
            return Err(bad(format!(
                "a private key is 32 bytes, this is {}",
                bytes.len()
            )));
        }
        let key = SigningKey::from_slice(&bytes)
            .map_err(|_| bad("not a valid secp256k1 private key".into()))?;
        Ok(Self::from_key(key))
    }

    /// An encrypted keystore v3 file and its password.
    pub fn from_keystore(path: &Path, password: &[u8]) -> Result<Self, OpsError> {
        let bad = |reason: String| OpsError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let key = keystore::decrypt(&text, password).map_err(|e| bad(e.to_string()))?;
        Ok(Self::from_key(key))
    }
}

/// What to do with the transactions a command plans.
#[derive(Debug)]
pub enum Mode {
    /// Sign with this key and send, one after the other, each waited for.
    Send(LocalKey),
    /// Send nothing; collect the transactions for a Safe batch. `from` is the account that will
    /// execute them (the Safe), used to check ownership and simulate the first transaction.
    Print { from: Option<Address> },
}

/// One planned call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTx {
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
    /// What it does, for progress lines and the batch description.
    pub what: String,
}

/// Who signs inside an [`Executor`]: the chain crate's [`Wallet`] (nonce tracking, gas margin,
/// fees, receipt waiting) around the local key, or nobody (print mode).
#[derive(Debug)]
enum Signer {
    Send(Box<Wallet<SigningKey>>),
    Print { from: Option<Address> },
}

/// Carries out the transactions a command decides on.
#[derive(Debug)]
pub struct Executor {
    provider: RpcClient,
    chain_id: u64,
    signer: Signer,
    planned: Vec<PlannedTx>,
    sent: Vec<Receipt>,
}

impl Executor {
    pub fn new(provider: RpcClient, chain_id: u64, mode: Mode) -> Self {
        let signer = match mode {
            Mode::Send(k) => Signer::Send(Box::new(Wallet::new(k.key, chain_id))),
            Mode::Print { from } => Signer::Print { from },
        };
        Self {
            provider,
            chain_id,
            signer,
            planned: Vec::new(),
            sent: Vec::new(),
        }
    }

    pub fn with_receipt_timeout(mut self, t: Duration) -> Self {
        self.signer = match self.signer {
            Signer::Send(w) => Signer::Send(Box::new(w.with_receipt_timeout(t))),
            print => print,
        };
        self
    }

    pub fn provider(&self) -> &RpcClient {
        &self.provider
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The account the transactions come from, when known.
    pub fn sender(&self) -> Option<Address> {
        match &self.signer {
            Signer::Send(w) => Some(w.address()),
            Signer::Print { from } => *from,
        }
    }

    pub fn is_print(&self) -> bool {
        matches!(self.signer, Signer::Print { .. })
    }

    /// Transactions collected so far (print mode) or sent (send mode), in order.
    pub fn planned(&self) -> &[PlannedTx] {
        &self.planned
    }

    /// Receipts of what was sent.
    pub fn receipts(&self) -> &[Receipt] {
        &self.sent
    }

    /// Simulates `tx` from the sender; a revert is reported by its decoded error name.
    async fn simulate(&self, tx: &PlannedTx) -> Result<(), OpsError> {
        match self
            .provider
            .eth_call_value(self.sender(), tx.to, tx.value, &tx.data)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_revert() => Err(OpsError::Reverted {
                what: tx.what.clone(),
                tx: None,
                reason: revert_reason(&e),
            }),
            Err(e) => Err(OpsError::chain(format!("simulating {}", tx.what))(e)),
        }
    }

    /// Sends (or collects) one transaction. In send mode it is simulated first, so a call the
    /// contract would refuse costs no gas and is reported by name.
    pub async fn submit(&mut self, tx: PlannedTx) -> Result<Option<Receipt>, OpsError> {
        if let Signer::Print { from } = &self.signer {
            // Later transactions of a batch may depend on earlier ones: only the first can be
            // simulated against the current state.
            if self.planned.is_empty() && from.is_some() {
                self.simulate(&tx).await?;
            }
            tracing::info!(to = %tx.to, "planned: {}", tx.what);
            self.planned.push(tx);
            return Ok(None);
        }
        self.simulate(&tx).await?;
        let Signer::Send(wallet) = &mut self.signer else {
            return Err(OpsError::Unexpected("no signer to send with".into()));
        };
        let call = Call {
            to: tx.to,
            value: tx.value,
            data: tx.data.clone(),
        };
        let hash = wallet
            .send(&self.provider, &call)
            .await
            .map_err(|e| tx_error(e, &tx.what))?;
        eprintln!("sent {} in {hash}", tx.what);
        let receipt = wallet
            .wait(&self.provider, hash, &call)
            .await
            .map_err(|e| tx_error(e, &tx.what))?;
        self.sent.push(receipt.clone());
        self.planned.push(tx);
        Ok(Some(receipt))
    }

    /// The collected transactions as a Safe Transaction Builder batch file (`version`,
    /// `chainId`, `meta`, `transactions: [{to, value, data}]`). `value` is a decimal wei string,
    /// as the Transaction Builder writes it. No checksum: the builder only verifies one if present.
    pub fn safe_batch(&self, name: &str, description: &str) -> Value {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let txs: Vec<Value> = self
            .planned
            .iter()
            .map(|t| {
                json!({
                    "to": t.to.to_checksum(None),
                    "value": t.value.to_string(),
                    "data": t.data,
                    "contractMethod": null,
                    "contractInputsValues": null,
                })
            })
            .collect();
        let steps: Vec<String> = self
            .planned
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{}. {}", i + 1, t.what))
            .collect();
        let mut description = description.to_string();
        if !steps.is_empty() {
            if !description.is_empty() {
                description.push_str(" — ");
            }
            description.push_str(&steps.join("; "));
        }
        json!({
            "version": "1.0",
            "chainId": self.chain_id.to_string(),
            "createdAt": created_at,
            "meta": {
                "name": name,
                "description": description,
                "txBuilderVersion": "1.16.5",
                "createdFromSafeAddress": self.sender().map(|a| a.to_checksum(None)).unwrap_or_default(),
                "createdFromOwnerAddress": "",
            },
            "transactions": txs,
        })
    }
}

/// A failed send as an operator error: a refusal by name, a revert with its hash, a timeout
/// with what to check before re-running.
fn tx_error(e: TxError, what: &str) -> OpsError {
    let (step, source) = match e {
        TxError::Sign(e) => return OpsError::Unexpected(format!("signing {what}: {e}")),
        TxError::Rpc { step, source } => (step, source),
    };
    match (step, source) {
        (TxStep::EstimateGas, source) if source.is_revert() => OpsError::Reverted {
            what: what.to_string(),
            tx: None,
            reason: revert_reason(&source),
        },
        (TxStep::Receipt, source @ RpcError::Reverted { tx, .. }) => OpsError::Reverted {
            what: what.to_string(),
            tx: Some(tx),
            reason: match source.revert_data() {
                Some(d) if !d.is_empty() => revert_reason(&source),
                _ => "the receipt has status 0".into(),
            },
        },
        (TxStep::Receipt, RpcError::NotMined(hash, after)) => OpsError::Unexpected(format!(
            "{what}: transaction {hash} not mined within {after:?}; check it on an explorer \
             before re-running (re-running is safe: every command checks the chain first)"
        )),
        (step, source) => {
            let context = match step {
                TxStep::Nonce => "reading the sender's nonce".to_string(),
                TxStep::EstimateGas => format!("estimating gas for {what}"),
                TxStep::Fees => "reading the fees".to_string(),
                TxStep::Send => format!("sending {what}"),
                TxStep::Receipt => format!("waiting for {what}"),
            };
            OpsError::chain(context)(source)
        }
    }
}

/// A revert as an operator can read it: any of our contracts' (or OpenZeppelin's, or the stock
/// dstack app's) custom errors by name with a hint where the name alone does not say what to do,
/// `Error(string)` text, or the raw selector.
pub fn revert_reason(e: &RpcError) -> String {
    match e.revert_data() {
        Some(data) if !data.is_empty() => {
            let decoded = attestmesh_chain::revert::decode(data);
            match decoded.name().and_then(hint) {
                Some(h) => format!("{decoded} ({h})"),
                None => decoded.to_string(),
            }
        }
        _ => e.to_string(),
    }
}

/// What an operator should read into an ownership error.
fn hint(error: &str) -> Option<&'static str> {
    match error {
        "OwnableUnauthorizedAccount" => Some("the sender is not the owner"),
        "NotOwner" => Some("the sender is not the app's owner"),
        "InvalidInitialization" => Some("already bound"),
        _ => None,
    }
}
