//! `cluster allow|disallow|set`: admission-policy changes with their guards, and the policy's
//! history read back from events.

// Bindings are built with field-init shorthand using the Solidity parameter names.
#![allow(non_snake_case)]

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent};
use attestmesh_chain::bindings::{IAttestFacet, IDstackFacet as P};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;

use super::{dev_root_warning, guard};
use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::infra::is_dev_chain;
use crate::read::view;
use attestmesh_chain::read::{LogFilter, logs_split};

/// One admission-policy change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChange {
    AddComposeHash(B256),
    RemoveComposeHash(B256),
    AddDevice(B256),
    RemoveDevice(B256),
    AddKmsRoot(Address),
    RemoveKmsRoot(Address),
    AddAppId(Address),
    RemoveAppId(Address),
    SetAllowAnyDevice(bool),
    SetRequireTcbUpToDate(bool),
}

/// What a policy command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// Sent (or planned); with the guard warnings `--force` overrode.
    Applied { forced_warnings: Vec<String> },
    /// The cluster already has this setting: nothing to send.
    AlreadyInEffect,
}

impl PolicyChange {
    fn describe(&self) -> String {
        match self {
            PolicyChange::AddComposeHash(h) => format!("addComposeHash({h})"),
            PolicyChange::RemoveComposeHash(h) => format!("removeComposeHash({h})"),
            PolicyChange::AddDevice(h) => format!("addDevice({h})"),
            PolicyChange::RemoveDevice(h) => format!("removeDevice({h})"),
            PolicyChange::AddKmsRoot(a) => format!("addAllowedKmsRoot({a})"),
            PolicyChange::RemoveKmsRoot(a) => format!("removeAllowedKmsRoot({a})"),
            PolicyChange::AddAppId(a) => format!("addAllowedAppId({a})"),
            PolicyChange::RemoveAppId(a) => format!("removeAllowedAppId({a})"),
            PolicyChange::SetAllowAnyDevice(b) => format!("setAllowAnyDevice({b})"),
            PolicyChange::SetRequireTcbUpToDate(b) => format!("setRequireTcbUpToDate({b})"),
        }
    }

    fn calldata(&self) -> Vec<u8> {
        match *self {
            PolicyChange::AddComposeHash(composeHash) => {
                P::addComposeHashCall { composeHash }.abi_encode()
            }
            PolicyChange::RemoveComposeHash(composeHash) => {
                P::removeComposeHashCall { composeHash }.abi_encode()
            }
            PolicyChange::AddDevice(deviceId) => P::addDeviceCall { deviceId }.abi_encode(),
            PolicyChange::RemoveDevice(deviceId) => P::removeDeviceCall { deviceId }.abi_encode(),
            PolicyChange::AddKmsRoot(kmsRoot) => P::addAllowedKmsRootCall { kmsRoot }.abi_encode(),
            PolicyChange::RemoveKmsRoot(kmsRoot) => {
                P::removeAllowedKmsRootCall { kmsRoot }.abi_encode()
            }
            PolicyChange::AddAppId(appId) => P::addAllowedAppIdCall { appId }.abi_encode(),
            PolicyChange::RemoveAppId(appId) => P::removeAllowedAppIdCall { appId }.abi_encode(),
            PolicyChange::SetAllowAnyDevice(allowAny) => {
                P::setAllowAnyDeviceCall { allowAny }.abi_encode()
            }
            PolicyChange::SetRequireTcbUpToDate(required) => {
                P::setRequireTcbUpToDateCall { required }.abi_encode()
            }
        }
    }

    /// Whether the cluster already has what this change asks for.
    async fn in_effect(&self, p: &RpcClient, cluster: Address) -> Result<bool, OpsError> {
        Ok(match *self {
            PolicyChange::AddComposeHash(composeHash)
            | PolicyChange::RemoveComposeHash(composeHash) => {
                let on = view(
                    p,
                    cluster,
                    P::allowedComposeHashesCall { composeHash },
                    "allowedComposeHashes",
                )
                .await?;
                on == matches!(self, PolicyChange::AddComposeHash(_))
            }
            PolicyChange::AddDevice(deviceId) | PolicyChange::RemoveDevice(deviceId) => {
                let on = view(
                    p,
                    cluster,
                    P::allowedDeviceIdsCall { deviceId },
                    "allowedDeviceIds",
                )
                .await?;
                on == matches!(self, PolicyChange::AddDevice(_))
            }
            PolicyChange::AddKmsRoot(kmsRoot) | PolicyChange::RemoveKmsRoot(kmsRoot) => {
                let on = view(
                    p,
                    cluster,
                    P::allowedKmsRootsCall { kmsRoot },
                    "allowedKmsRoots",
                )
                .await?;
                on == matches!(self, PolicyChange::AddKmsRoot(_))
            }
            PolicyChange::AddAppId(appId) | PolicyChange::RemoveAppId(appId) => {
                let on = view(p, cluster, P::allowedAppIdsCall { appId }, "allowedAppIds").await?;
                on == matches!(self, PolicyChange::AddAppId(_))
            }
            PolicyChange::SetAllowAnyDevice(b) => {
                view(p, cluster, P::allowAnyDeviceCall {}, "allowAnyDevice").await? == b
            }
            PolicyChange::SetRequireTcbUpToDate(b) => {
                view(
                    p,
                    cluster,
                    P::requireTcbUpToDateCall {},
                    "requireTcbUpToDate",
                )
                .await?
                    == b
            }
        })
    }
}

/// Checks that `cluster` is a cluster and the sender (when known) is its owner; returns the owner.
pub async fn require_cluster_owner(
    exec: &Executor,
    cluster: Address,
    what: &str,
) -> Result<Address, OpsError> {
    let p = exec.provider();
    if !p
        .has_code(cluster)
        .await
        .map_err(OpsError::chain(format!("reading code at {cluster}")))?
    {
        return Err(OpsError::NoCode {
            what: "cluster".into(),
            address: cluster,
            chain_id: exec.chain_id(),
            hint: "check --cluster and --rpc-url",
        });
    }
    let owner = view(
        p,
        cluster,
        IAttestFacet::clusterOwnerCall {},
        "clusterOwner()",
    )
    .await?;
    if let Some(sender) = exec.sender()
        && sender != owner
    {
        return Err(OpsError::NotOwner {
            what: what.to_string(),
            owner,
            sender,
        });
    }
    Ok(owner)
}

/// Applies one policy change, unless it is already in effect.
pub async fn change_policy(
    exec: &mut Executor,
    cluster: Address,
    change: PolicyChange,
    scan_from: u64,
    force: bool,
) -> Result<PolicyOutcome, OpsError> {
    let what = change.describe();
    require_cluster_owner(exec, cluster, &what).await?;
    let p = exec.provider().clone();
    if change.in_effect(&p, cluster).await? {
        return Ok(PolicyOutcome::AlreadyInEffect);
    }
    let mut forced_warnings = Vec::new();
    match change {
        PolicyChange::AddKmsRoot(root)
            if root == DEV_KMS_ROOT_ADDRESS && !is_dev_chain(exec.chain_id()) =>
        {
            guard(
                force,
                &mut forced_warnings,
                dev_root_warning(exec.chain_id()),
            )?;
        }
        PolicyChange::RemoveComposeHash(hash) => {
            if let Some(msg) = originator_compose_warning(&p, cluster, hash, scan_from).await? {
                guard(force, &mut forced_warnings, msg)?;
            }
        }
        _ => {}
    }
    exec.submit(PlannedTx {
        to: cluster,
        value: U256::ZERO,
        data: Bytes::from(change.calldata()),
        what: format!("{what} on cluster {cluster}"),
    })
    .await?;
    Ok(PolicyOutcome::Applied { forced_warnings })
}

/// Why removing `hash` may lock the CSK originator out, or `None` when the cluster has no
/// members yet.
///
/// The chain does not record which compose hash a member booted with (the KMS checks it at boot,
/// registration does not carry it), so any currently allowed hash may be the originator's. What
/// the event history does tell is whether `hash` was allowed when the originator registered — then
/// it is very likely the one it runs — and the message says so.
pub(super) async fn originator_compose_warning(
    p: &RpcClient,
    cluster: Address,
    hash: B256,
    scan_from: u64,
) -> Result<Option<String>, OpsError> {
    let members = view(
        p,
        cluster,
        IAttestFacet::listMembersCall {},
        "listMembers()",
    )
    .await?;
    let Some(originator) = members.first() else {
        return Ok(None);
    };
    let history = policy_history(p, cluster, scan_from).await?;
    let at_registration = history.compose_hashes_at(originator.registeredAt);
    let detail = if at_registration.contains(&hash) {
        format!(
            "{hash} was allowed when the originator registered (block {}), so it is probably the \
             compose the originator runs",
            originator.registeredAt
        )
    } else {
        format!(
            "{hash} was allowlisted after the originator registered (block {}), but the \
             originator may have been upgraded to it since; the chain cannot tell",
            originator.registeredAt
        )
    };
    Ok(Some(format!(
        "removing compose hash {hash}: the cluster's CSK originator (member contract {}) \
         re-derives the CSK from its TEE on every restart, and the KMS releases keys only to \
         allowlisted compose hashes — if it runs this compose it can never boot again. {detail}. \
         Make sure the originator runs another allowed compose hash first",
        originator.memberContract
    )))
}

/// The admission-policy events of a cluster, in chain order.
#[derive(Debug, Default, Clone)]
pub(super) struct PolicyHistory {
    /// (block, hash, added?)
    pub(super) compose: Vec<(u64, B256, bool)>,
    pub(super) devices: Vec<(u64, B256, bool)>,
    pub(super) kms_roots: Vec<(u64, Address, bool)>,
    pub(super) app_ids: Vec<(u64, Address, bool)>,
}

/// The candidates (replayed from policy events) that the cluster's view still confirms: events
/// say what was ever allowed, the view says what is allowed now.
pub(super) async fn still_allowed<T: Copy, C: SolCall<Return = bool>>(
    p: &RpcClient,
    cluster: Address,
    candidates: Vec<T>,
    call: impl Fn(T) -> C,
    what: &str,
) -> Result<Vec<T>, OpsError> {
    let mut allowed = Vec::new();
    for c in candidates {
        if view(p, cluster, call(c), what).await? {
            allowed.push(c);
        }
    }
    Ok(allowed)
}

pub(super) fn replay<T: Ord + Copy>(events: &[(u64, T, bool)], up_to: u64) -> Vec<T> {
    let mut set = std::collections::BTreeSet::new();
    for (block, v, added) in events.iter().filter(|e| e.0 <= up_to) {
        let _ = block;
        if *added {
            set.insert(*v);
        } else {
            set.remove(v);
        }
    }
    set.into_iter().collect()
}

impl PolicyHistory {
    fn compose_hashes_at(&self, block: u64) -> Vec<B256> {
        replay(&self.compose, block)
    }
}

pub(super) async fn policy_history(
    p: &RpcClient,
    cluster: Address,
    from: u64,
) -> Result<PolicyHistory, OpsError> {
    let head = p
        .block_number()
        .await
        .map_err(OpsError::chain("reading the block number"))?;
    let topics = [
        P::ComposeHashAdded::SIGNATURE_HASH,
        P::ComposeHashRemoved::SIGNATURE_HASH,
        P::DeviceAdded::SIGNATURE_HASH,
        P::DeviceRemoved::SIGNATURE_HASH,
        P::KmsRootAdded::SIGNATURE_HASH,
        P::KmsRootRemoved::SIGNATURE_HASH,
        P::AppIdAdded::SIGNATURE_HASH,
        P::AppIdRemoved::SIGNATURE_HASH,
    ];
    let filter = LogFilter::new(&[cluster], from, head).topic(0, &topics);
    let logs = logs_split(p, &filter)
        .await
        .map_err(OpsError::chain("scanning the cluster's policy events"))?;
    let mut h = PolicyHistory::default();
    for log in logs {
        let (Some(t0), Some(word)) = (log.topics.first(), log.data.get(..32)) else {
            continue;
        };
        let word = B256::from_slice(word);
        let b = log.block_number;
        let t0 = *t0;
        if t0 == P::ComposeHashAdded::SIGNATURE_HASH {
            h.compose.push((b, word, true));
        } else if t0 == P::ComposeHashRemoved::SIGNATURE_HASH {
            h.compose.push((b, word, false));
        } else if t0 == P::DeviceAdded::SIGNATURE_HASH {
            h.devices.push((b, word, true));
        } else if t0 == P::DeviceRemoved::SIGNATURE_HASH {
            h.devices.push((b, word, false));
        } else if t0 == P::KmsRootAdded::SIGNATURE_HASH {
            h.kms_roots.push((b, Address::from_word(word), true));
        } else if t0 == P::KmsRootRemoved::SIGNATURE_HASH {
            h.kms_roots.push((b, Address::from_word(word), false));
        } else if t0 == P::AppIdAdded::SIGNATURE_HASH {
            h.app_ids.push((b, Address::from_word(word), true));
        } else if t0 == P::AppIdRemoved::SIGNATURE_HASH {
            h.app_ids.push((b, Address::from_word(word), false));
        }
    }
    Ok(h)
}
