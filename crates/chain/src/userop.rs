//! The node's UserOperation client (DESIGN §10): every state change a node makes is an ERC-4337
//! v0.7 operation from its ClusterMember, paid by a paymaster, so the node never holds ETH.
//!
//! One submission, in order:
//! 1. wrap the inner call as `execute(cluster, 0, inner)`; nonce from `EntryPoint.getNonce(sender, 0)`;
//!    fees from the chain (`2 × baseFee + priority`);
//! 2. `pm_getPaymasterStubData` → gas estimate → `pm_getPaymasterData`: sponsorship comes
//!    **before** signing because the v0.7 userOp hash commits to `paymasterAndData`;
//! 3. sign the userOp hash (EIP-191) with the owner key, `eth_sendUserOperation`;
//! 4. poll `eth_getUserOperationReceipt` until a deadline; a reverted inner call is decoded into
//!    our contract errors.
//!
//! Submissions from one sender are serialised (a per-sender async mutex): they share the nonce
//! sequence, and a second operation built while the first is pending would reuse its nonce.
//! Every network step retries transient failures with capped exponential backoff and jitter;
//! permanent answers (a policy denial, a validation or execution revert) return at once.
//!
//! **Bootstrap gas.** Before registration the ClusterMember accepts exactly one operation and
//! *reverts* (`InvalidBootstrapCall`) unless the signature is the owner's over that very userOp
//! hash. A bundler estimates with gas fields of its own choosing, so no signature can pass its
//! simulation and `eth_estimateUserOperationGas` always fails for the bootstrap operation. For
//! that one operation the client measures the two account phases itself with `eth_estimateGas`
//! against the chain, called from the EntryPoint's address (`validateUserOp` with a real
//! signature over the hash it passes, then `execute`), and derives `preVerificationGas` from the
//! operation's worst-case calldata. Everything else goes through the bundler's estimate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use attestmesh_core::keys::{KeyError, OwnerKey};
use attestmesh_core::userop::{ENTRY_POINT_V07, UserOperation};

use crate::bindings::{ClusterMember, EntryPoint, IClusterMember, PackedUserOperation};
use crate::bundler::{BundlerClient, GasEstimate, UserOpReceipt};
use crate::paymaster::{PaymasterClient, PaymasterFields, deny_reason};
use crate::read::{BlockTag, ChainReader, decode_returns};
use crate::revert::{self, AaCode, ContractError};
use crate::rpc::{RpcClient, RpcError};
use attestmesh_core::backoff::{Backoff, BackoffPolicy};

/// A placeholder signature of the final shape for estimation (65 bytes, low `s`, `v = 28`):
/// the account's ECDSA recovery runs the same path as with the real one, and returns "invalid
/// signature" (1) instead of reverting after registration.
pub const DUMMY_SIGNATURE: [u8; 65] = {
    let mut s = [0u8; 65];
    let mut i = 0;
    while i < 32 {
        s[i] = 0x7a;
        s[32 + i] = 0x3a;
        i += 1;
    }
    s[64] = 28;
    s
};

/// Which remote party a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Chain,
    Bundler,
    Paymaster,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Chain => "chain RPC",
            Service::Bundler => "bundler",
            Service::Paymaster => "paymaster",
        })
    }
}

/// Why a submission failed. Only [`UserOpError::Unavailable`] and [`UserOpError::Timeout`] are
/// worth retrying later; the rest are answers.
#[derive(Debug, thiserror::Error)]
pub enum UserOpError {
    /// The paymaster's policy said no (`reason` is its stable deny string, e.g.
    /// `daily_cap_exceeded`). Not retried.
    #[error("sponsorship denied: {reason} ({message})")]
    SponsorshipDenied {
        reason: String,
        code: i64,
        message: String,
    },
    /// The paymaster refused the request itself (bad params, unsupported entry point).
    #[error("paymaster rejected the request ({code}): {message}")]
    PaymasterRejected { code: i64, message: String },
    /// The operation was refused before inclusion: by the bundler during estimation or
    /// submission (`code` is its JSON-RPC code, `aa` the EntryPoint code when validation
    /// refused), or — for the bootstrap operation, whose gas the client measures itself — by the
    /// chain during that measurement (`stage` says which). `revert` is the decoded revert data.
    #[error("operation rejected in {stage} ({code}): {message}{}", revert.as_ref().map(|r| format!(" [{r}]")).unwrap_or_default())]
    Rejected {
        stage: &'static str,
        code: i64,
        message: String,
        aa: Option<AaCode>,
        revert: Option<ContractError>,
    },
    /// The operation was included but its inner call reverted (e.g. `DuplicateEnvelope()`).
    #[error("operation {user_op_hash} reverted in tx {tx_hash}: {revert}")]
    Reverted {
        user_op_hash: B256,
        tx_hash: B256,
        revert: ContractError,
    },
    /// A service stayed unreachable (or kept failing transiently) for the whole backoff budget.
    #[error("{service} unavailable after {attempts} retries: {last}")]
    Unavailable {
        service: Service,
        attempts: u32,
        #[source]
        last: RpcError,
    },
    /// Submitted, but no receipt within the deadline (it may still land; the nonce tells).
    #[error("operation {user_op_hash} not included within {after:?}")]
    Timeout { user_op_hash: B256, after: Duration },
    /// A chain read answered with a permanent error or garbage.
    #[error("{what}: {source}")]
    Chain {
        what: &'static str,
        #[source]
        source: RpcError,
    },
    /// A service answered something unusable (wrong paymaster hash echo, malformed result).
    #[error("{service}: {detail}")]
    Protocol { service: Service, detail: String },
    #[error("signing the operation: {0}")]
    Signing(#[from] KeyError),
}

impl UserOpError {
    /// The stable deny reason, when the paymaster's policy refused.
    pub fn deny_reason(&self) -> Option<&str> {
        match self {
            UserOpError::SponsorshipDenied { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The decoded contract error, when there is one (validation or execution revert).
    pub fn contract_error(&self) -> Option<&ContractError> {
        match self {
            UserOpError::Reverted { revert, .. } => Some(revert),
            UserOpError::Rejected { revert, .. } => revert.as_ref(),
            _ => None,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct UserOpConfig {
    pub entry_point: Address,
    /// Retry timing for every network step.
    pub backoff: BackoffPolicy,
    /// How long to wait for inclusion after the bundler accepted the operation.
    pub receipt_timeout: Duration,
    /// Receipt polling interval (about a block time).
    pub receipt_poll: Duration,
    /// Headroom over the measured bootstrap gas, in percent (see the module docs).
    pub bootstrap_gas_margin_pct: u32,
}

impl Default for UserOpConfig {
    fn default() -> Self {
        Self {
            entry_point: ENTRY_POINT_V07,
            backoff: BackoffPolicy::default(),
            receipt_timeout: Duration::from_secs(120),
            receipt_poll: Duration::from_millis(250),
            bootstrap_gas_margin_pct: 20,
        }
    }
}

/// The account a submission comes from.
#[derive(Debug, Clone, Copy)]
pub struct NodeAccount<'a> {
    /// The node's ClusterMember (the 4337 sender).
    pub sender: Address,
    /// Its cluster, the only target a node calls.
    pub cluster: Address,
    /// Signs the userOp hash (the binding signer before registration, the owner after).
    pub owner: &'a OwnerKey,
}

/// A landed operation.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub user_op_hash: B256,
    pub receipt: UserOpReceipt,
    /// The operation as sent.
    pub op: UserOperation,
    /// From the start of the submission to the receipt.
    pub elapsed: Duration,
    /// Transient failures retried along the way.
    pub retries: u32,
    /// Whether the gas came from the bootstrap self-measurement.
    pub bootstrap: bool,
}

/// The UserOperation client. Cheap to share (`Arc`); one per node is the norm.
#[derive(Debug)]
pub struct UserOpClient {
    chain: RpcClient,
    bundler: BundlerClient,
    paymaster: PaymasterClient,
    cfg: UserOpConfig,
    chain_id: tokio::sync::OnceCell<u64>,
    senders: std::sync::Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
}

impl UserOpClient {
    pub fn new(
        chain: RpcClient,
        bundler: BundlerClient,
        paymaster: PaymasterClient,
        cfg: UserOpConfig,
    ) -> Self {
        Self {
            chain,
            bundler,
            paymaster,
            cfg,
            chain_id: tokio::sync::OnceCell::new(),
            senders: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &UserOpConfig {
        &self.cfg
    }

    fn sender_lock(&self, sender: Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(sender).or_default().clone()
    }

    /// Runs `f` until it succeeds, fails permanently, or the backoff budget is spent.
    async fn retry<T, F, Fut>(
        &self,
        service: Service,
        retries: &mut u32,
        mut f: F,
    ) -> Result<T, Failed>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        let mut backoff = Backoff::new(self.cfg.backoff);
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    tracing::debug!(%service, error = %e, attempt = backoff.attempts(), "transient failure, backing off");
                    let Some(delay) = backoff.next_delay() else {
                        return Err(Failed::Exhausted(UserOpError::Unavailable {
                            service,
                            attempts: backoff.attempts(),
                            last: e,
                        }));
                    };
                    tokio::time::sleep(delay).await;
                    *retries += 1;
                }
                Err(e) => return Err(Failed::Permanent(e)),
            }
        }
    }

    async fn chain_read<T, F, Fut>(
        &self,
        what: &'static str,
        retries: &mut u32,
        f: F,
    ) -> Result<T, UserOpError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        self.retry(Service::Chain, retries, f)
            .await
            .map_err(|e| e.or(|source| UserOpError::Chain { what, source }))
    }

    async fn view<C: SolCall>(
        &self,
        to: Address,
        call: C,
        what: &'static str,
        retries: &mut u32,
    ) -> Result<C::Return, UserOpError> {
        let data = call.abi_encode();
        let out = self
            .chain_read(what, retries, || {
                ChainReader::call(&self.chain, to, &data, BlockTag::Latest)
            })
            .await?;
        decode_returns::<C>(to, &out).map_err(|e| UserOpError::Chain {
            what,
            source: RpcError::Malformed {
                method: "eth_call".into(),
                detail: e.to_string(),
            },
        })
    }

    /// The chain id (asked once).
    pub async fn chain_id(&self) -> Result<u64, UserOpError> {
        let mut r = 0;
        self.chain_id
            .get_or_try_init(|| self.chain_read("eth_chainId", &mut r, || self.chain.chain_id()))
            .await
            .copied()
    }

    /// Sponsors, signs, submits and waits for `execute(account.cluster, 0, inner)` — the only
    /// shape a node sends.
    pub async fn submit(
        &self,
        account: NodeAccount<'_>,
        inner: &[u8],
    ) -> Result<Submitted, UserOpError> {
        let call_data = ClusterMember::executeCall {
            target: account.cluster,
            value: U256::ZERO,
            data: Bytes::copy_from_slice(inner),
        }
        .abi_encode();
        self.submit_call_data(account, &call_data).await
    }

    /// Like [`Self::submit`] with the account's whole `callData` given (tools and tests that need
    /// another outer call; `account.cluster` is then unused).
    pub async fn submit_call_data(
        &self,
        account: NodeAccount<'_>,
        call_data: &[u8],
    ) -> Result<Submitted, UserOpError> {
        let lock = self.sender_lock(account.sender);
        let _serial = lock.lock().await;
        let started = Instant::now();
        let mut retries = 0u32;
        let ep = self.cfg.entry_point;
        let chain_id = self.chain_id().await?;
        let call_data = Bytes::copy_from_slice(call_data);

        let nonce = self
            .view(
                ep,
                EntryPoint::getNonceCall {
                    sender: account.sender,
                    key: alloy_primitives::aliases::U192::ZERO,
                },
                "EntryPoint.getNonce",
                &mut retries,
            )
            .await?;
        // A ClusterMember without an owner is in bootstrap. Anything that does not answer
        // `owner()` is not one of ours; let the paymaster and bundler give their verdict.
        let owner_call = IClusterMember::ownerCall {}.abi_encode();
        let owner = self
            .retry(Service::Chain, &mut retries, || {
                ChainReader::call(&self.chain, account.sender, &owner_call, BlockTag::Latest)
            })
            .await;
        let bootstrap = match owner {
            Ok(out) => decode_returns::<IClusterMember::ownerCall>(account.sender, &out)
                .map(|o| o.is_zero())
                .unwrap_or(false),
            Err(Failed::Permanent(_)) => false,
            Err(Failed::Exhausted(e)) => return Err(e),
        };
        let base_fee = self
            .chain_read("base fee", &mut retries, || self.chain.base_fee())
            .await?;
        let priority = self
            .chain_read("priority fee", &mut retries, || {
                self.chain.max_priority_fee()
            })
            .await?;

        let mut op = UserOperation {
            sender: account.sender,
            nonce,
            call_data,
            max_fee_per_gas: base_fee.saturating_mul(2).saturating_add(priority),
            max_priority_fee_per_gas: priority,
            signature: Bytes::from_static(&DUMMY_SIGNATURE),
            ..Default::default()
        };

        // Sponsorship stub, then gas.
        let stub = self.sponsor(&op, chain_id, true, &mut retries).await?;
        stub.apply(&mut op);
        if !stub.is_final {
            let est = if bootstrap {
                self.measure_bootstrap(&op, account, chain_id, &mut retries)
                    .await?
            } else {
                self.retry(Service::Bundler, &mut retries, || {
                    self.bundler.estimate(&op, ep)
                })
                .await
                .map_err(|e| e.or(|e| bundler_rejection("estimation", e)))?
            };
            op.call_gas_limit = est.call_gas_limit;
            op.verification_gas_limit = est.verification_gas_limit;
            op.pre_verification_gas = est.pre_verification_gas;
            // ERC-7677: the paymaster's own limits win over the bundler's estimate.
            if let (None, Some(g)) = (
                stub.verification_gas_limit,
                est.paymaster_verification_gas_limit,
            ) {
                op.paymaster_verification_gas_limit = g;
            }
            if let (None, Some(g)) = (stub.post_op_gas_limit, est.paymaster_post_op_gas_limit) {
                op.paymaster_post_op_gas_limit = g;
            }
            let fin = self.sponsor(&op, chain_id, false, &mut retries).await?;
            if fin.paymaster != stub.paymaster {
                return Err(UserOpError::Protocol {
                    service: Service::Paymaster,
                    detail: format!(
                        "final data names paymaster {} but the stub named {}",
                        fin.paymaster, stub.paymaster
                    ),
                });
            }
            fin.apply(&mut op);
        }

        // Sign last: the hash covers everything above.
        let hash = op.pack().user_op_hash(ep, chain_id);
        op.signature = Bytes::copy_from_slice(&account.owner.sign_eth_hash(&hash)?);
        self.send(&op, hash, &mut retries).await?;
        let receipt = self.wait(hash, &mut retries).await?;
        if !receipt.success {
            return Err(UserOpError::Reverted {
                user_op_hash: hash,
                tx_hash: receipt.tx_hash,
                revert: revert::decode(receipt.reason.as_ref().map_or(&[][..], |b| &b[..])),
            });
        }
        let elapsed = started.elapsed();
        tracing::info!(user_op_hash = %hash, sender = %account.sender, tx = %receipt.tx_hash,
            block = receipt.block_number, gas_used = %receipt.actual_gas_used,
            ?elapsed, retries, bootstrap, "user operation included");
        Ok(Submitted {
            user_op_hash: hash,
            receipt,
            op,
            elapsed,
            retries,
            bootstrap,
        })
    }

    async fn sponsor(
        &self,
        op: &UserOperation,
        chain_id: u64,
        stub: bool,
        retries: &mut u32,
    ) -> Result<PaymasterFields, UserOpError> {
        let ep = self.cfg.entry_point;
        self.retry(Service::Paymaster, retries, || async move {
            if stub {
                self.paymaster.stub_data(op, ep, chain_id).await
            } else {
                self.paymaster.data(op, ep, chain_id).await
            }
        })
        .await
        .map_err(|e| {
            e.or(|err| match (deny_reason(&err), err) {
                (Some(reason), RpcError::Rpc { code, message, .. }) => {
                    UserOpError::SponsorshipDenied {
                        reason,
                        code,
                        message,
                    }
                }
                (_, RpcError::Rpc { code, message, .. }) => {
                    UserOpError::PaymasterRejected { code, message }
                }
                (_, other) => UserOpError::Protocol {
                    service: Service::Paymaster,
                    detail: other.to_string(),
                },
            })
        })
    }

    /// `eth_sendUserOperation`, idempotent across retries: when a retry is refused after an
    /// earlier attempt may have reached the bundler (a timeout, a dropped connection), the
    /// bundler is asked whether it already holds our hash before the refusal counts.
    async fn send(
        &self,
        op: &UserOperation,
        hash: B256,
        retries: &mut u32,
    ) -> Result<(), UserOpError> {
        let before = *retries;
        let res = self
            .retry(Service::Bundler, retries, || {
                self.bundler.send(op, self.cfg.entry_point)
            })
            .await;
        match res {
            Ok(returned) => {
                if returned != hash {
                    return Err(UserOpError::Protocol {
                        service: Service::Bundler,
                        detail: format!(
                            "bundler returned userOp hash {returned}, we computed {hash}"
                        ),
                    });
                }
                Ok(())
            }
            Err(Failed::Permanent(e))
                if *retries > before && self.bundler.knows(hash).await.unwrap_or(false) =>
            {
                tracing::debug!(error = %e, %hash, "bundler already holds the operation");
                Ok(())
            }
            Err(e) => Err(e.or(|e| bundler_rejection("submission", e))),
        }
    }

    async fn wait(&self, hash: B256, retries: &mut u32) -> Result<UserOpReceipt, UserOpError> {
        let deadline = Instant::now() + self.cfg.receipt_timeout;
        let mut backoff = Backoff::new(self.cfg.backoff);
        loop {
            match self.bundler.receipt(hash).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => tokio::time::sleep(self.cfg.receipt_poll).await,
                // The bundler restarting mid-wait is not a failure of the operation.
                Err(e) if e.is_transient() => {
                    *retries += 1;
                    tracing::debug!(error = %e, "receipt poll failed, backing off");
                    let Some(delay) = backoff.next_delay() else {
                        return Err(UserOpError::Unavailable {
                            service: Service::Bundler,
                            attempts: backoff.attempts(),
                            last: e,
                        });
                    };
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(bundler_rejection("receipt", e)),
            }
            if Instant::now() >= deadline {
                return Err(UserOpError::Timeout {
                    user_op_hash: hash,
                    after: self.cfg.receipt_timeout,
                });
            }
        }
    }

    /// Gas for the bootstrap operation, measured on the chain (see the module docs).
    async fn measure_bootstrap(
        &self,
        op: &UserOperation,
        account: NodeAccount<'_>,
        chain_id: u64,
        retries: &mut u32,
    ) -> Result<GasEstimate, UserOpError> {
        let ep = self.cfg.entry_point;
        let margin = |g: u64| -> u128 {
            u128::from(g) * u128::from(100 + self.cfg.bootstrap_gas_margin_pct) / 100
        };
        // Validation: the hash we pass is what we sign, so the bootstrap check passes exactly
        // as it will in handleOps.
        let mut probe = op.clone();
        let hash = probe.pack().user_op_hash(ep, chain_id);
        probe.signature = Bytes::copy_from_slice(&account.owner.sign_eth_hash(&hash)?);
        let packed = probe.pack();
        let validate = ClusterMember::validateUserOpCall {
            userOp: packed.into(),
            userOpHash: hash,
            missingAccountFunds: U256::ZERO,
        }
        .abi_encode();
        let verification = self
            .estimate_as_entry_point(account.sender, &validate, "bootstrap validation", retries)
            .await?;
        let call = self
            .estimate_as_entry_point(
                account.sender,
                &op.call_data,
                "bootstrap execution",
                retries,
            )
            .await?;
        // eth_estimateGas counts a whole transaction; the EntryPoint's inner call has no
        // 21 000 intrinsic cost (the calldata share stays as headroom).
        let call = call.saturating_sub(21_000);
        Ok(GasEstimate {
            pre_verification_gas: U256::from(margin(worst_case_pre_verification_gas(op))),
            verification_gas_limit: margin(verification),
            call_gas_limit: margin(call),
            paymaster_verification_gas_limit: None,
            paymaster_post_op_gas_limit: None,
        })
    }
}

/// How a retried step ended without a result.
enum Failed {
    /// A permanent error from the service: the caller turns it into the right answer.
    Permanent(RpcError),
    /// Transient failures outlasted the backoff budget.
    Exhausted(UserOpError),
}

impl Failed {
    fn or(self, f: impl FnOnce(RpcError) -> UserOpError) -> UserOpError {
        match self {
            Failed::Permanent(e) => f(e),
            Failed::Exhausted(e) => e,
        }
    }
}

impl UserOpClient {
    /// `eth_estimateGas` of `data` sent to `to` by the EntryPoint (so `onlyEntryPoint` passes).
    async fn estimate_as_entry_point(
        &self,
        to: Address,
        data: &[u8],
        what: &'static str,
        retries: &mut u32,
    ) -> Result<u64, UserOpError> {
        let ep = self.cfg.entry_point;
        self.retry(Service::Chain, retries, || {
            self.chain.estimate_gas(ep, to, data)
        })
        .await
        .map_err(|e| {
            e.or(|source| {
                let revert = match &source {
                    RpcError::Rpc { data: Some(d), .. } => Some(revert::decode(d)),
                    _ => None,
                };
                UserOpError::Rejected {
                    stage: what,
                    code: match &source {
                        RpcError::Rpc { code, .. } => *code,
                        _ => 0,
                    },
                    message: source.to_string(),
                    aa: None,
                    revert,
                }
            })
        })
    }
}

fn bundler_rejection(stage: &'static str, e: RpcError) -> UserOpError {
    match e {
        RpcError::Rpc {
            code,
            message,
            data,
            ..
        } => {
            let revert = data
                .as_ref()
                .map(|d| revert::decode(d))
                .or_else(|| revert_in_message(&message));
            UserOpError::Rejected {
                stage,
                code,
                aa: AaCode::find(&message).or_else(|| revert.as_ref().and_then(|r| r.aa())),
                message,
                revert,
            }
        }
        other => UserOpError::Protocol {
            service: Service::Bundler,
            detail: other.to_string(),
        },
    }
}

/// Bundlers often put the account's revert data into the message text ("AA23 reverted
/// 0x68dbe400"); decode the last hex token when it names a known error.
fn revert_in_message(message: &str) -> Option<ContractError> {
    message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| t.len() >= 10 && t.starts_with("0x"))
        .filter_map(|t| alloy_primitives::hex::decode(&t[2..]).ok())
        .map(|b| revert::decode(&b))
        .rfind(|d| !matches!(d, ContractError::Unknown(_)))
}

/// The ABI-encoded packed operation as a bundle carries it at worst: every gas, fee,
/// paymaster-data and signature byte non-zero (signature at least 65 bytes). Bundlers price
/// `preVerificationGas` from these bytes, so a bound computed over them covers any final values.
pub fn worst_case_packed_encoding(op: &UserOperation) -> Vec<u8> {
    let mut worst = op.clone();
    worst.call_gas_limit = u128::MAX;
    worst.verification_gas_limit = u128::MAX;
    worst.pre_verification_gas = U256::MAX;
    worst.max_fee_per_gas = u128::MAX;
    worst.max_priority_fee_per_gas = u128::MAX;
    if worst.paymaster.is_some() {
        worst.paymaster_verification_gas_limit = u128::MAX;
        worst.paymaster_post_op_gas_limit = u128::MAX;
        worst.paymaster_data = Bytes::from(vec![0xff; op.paymaster_data.len()]);
    }
    worst.signature = Bytes::from(vec![0xff; op.signature.len().max(65)]);
    alloy_sol_types::SolValue::abi_encode(&PackedUserOperation::from(worst.pack()))
}

/// `preVerificationGas` that covers any bundler's calldata-based formula for this operation's
/// shape: the ERC-4337 reference overheads (21 000 per bundle, 18 300 per op, 4 per word) plus
/// 16 per non-zero and 4 per zero byte of [`worst_case_packed_encoding`].
pub fn worst_case_pre_verification_gas(op: &UserOperation) -> u64 {
    let encoded = worst_case_packed_encoding(op);
    let calldata: u64 = encoded
        .iter()
        .map(|b| if *b == 0 { 4u64 } else { 16 })
        .sum();
    let words = encoded.len().div_ceil(32) as u64;
    calldata + 21_000 + 18_300 + 4 * words
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_sol_types::SolError;

    #[test]
    fn rejection_decodes_aa_codes_and_inner_reverts() {
        let e = bundler_rejection(
            "estimation",
            RpcError::Rpc {
                method: "eth_estimateUserOperationGas".into(),
                code: -32500,
                message:
                    "UserOperation reverted during simulation with reason: AA23 reverted 0x68dbe400"
                        .into(),
                data: None,
                detail: None,
            },
        );
        let UserOpError::Rejected {
            aa, revert, code, ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!((*aa, *code), (Some(AaCode(23)), -32500));
        assert_eq!(
            revert.as_ref().and_then(|r| r.name()),
            Some("InvalidBootstrapCall")
        );
        assert_eq!(
            e.contract_error().and_then(|c| c.name()),
            Some("InvalidBootstrapCall")
        );

        let data = crate::bindings::IMessageFacet::DuplicateEnvelope {}.abi_encode();
        let e = bundler_rejection(
            "estimation",
            RpcError::Rpc {
                method: "eth_estimateUserOperationGas".into(),
                code: -32521,
                message: "execution reverted".into(),
                data: Some(data.into()),
                detail: None,
            },
        );
        assert_eq!(
            e.contract_error().and_then(|c| c.name()),
            Some("DuplicateEnvelope")
        );
    }

    #[test]
    fn worst_case_pvg_grows_with_calldata_and_exceeds_the_fixed_overheads() {
        let small = UserOperation {
            call_data: Bytes::from(vec![1; 4]),
            paymaster: Some(Address::repeat_byte(1)),
            paymaster_data: Bytes::from(vec![0; 77]),
            ..Default::default()
        };
        let big = UserOperation {
            call_data: Bytes::from(vec![1; 1000]),
            ..small.clone()
        };
        let (s, b) = (
            worst_case_pre_verification_gas(&small),
            worst_case_pre_verification_gas(&big),
        );
        assert!(s > 39_300 + 16 * 96, "{s}");
        assert!(b >= s + 16 * 996, "{b} vs {s}");
    }

    #[test]
    fn dummy_signature_is_well_formed() {
        assert_eq!(DUMMY_SIGNATURE.len(), 65);
        assert!(DUMMY_SIGNATURE[32] < 0x7f, "low s");
        assert_eq!(DUMMY_SIGNATURE[64], 28);
    }
}
