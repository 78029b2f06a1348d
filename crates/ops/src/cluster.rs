//! Clusters: creation, the admission policy, and reading a cluster back (`show`, `members`).
//!
//! The guards here exist because the chain accepts anything the owner signs, including
//! mistakes that are expensive to undo: a development KMS root on a real chain admits anyone
//! who runs devtee; two clusters with overlapping mesh CIDRs break routing on any host that
//! joins both; removing the compose hash the CSK originator runs stops it from ever booting
//! again. Each guard refuses with an explanation unless `--force` is given.

// Bindings are built with field-init shorthand using the Solidity parameter names.
#![allow(non_snake_case)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent};
use attestmesh_chain::bindings::{
    IAttestFacet, IAttestWrite, IClusterDiamondFactory, IDstackFacet as P, IOwnershipFacet,
    MemberRecord,
};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;
use serde::Serialize;

use crate::config::{ClusterConfig, cidrs_overlap};
use crate::deployments::Deployments;
use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::infra::is_dev_chain;
use crate::read::view;

/// The decided deployment of one cluster, computed before anything is sent.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub predicted: Address,
    /// Code is already at `predicted`: this exact cluster exists, nothing to send.
    pub already_deployed: bool,
    /// Guards that tripped but were overridden by `--force`.
    pub forced_warnings: Vec<String>,
    args: attestmesh_chain::bindings::ClusterInitArgs,
    salt: B256,
    factory: Address,
}

fn dev_root_warning(chain_id: u64) -> String {
    format!(
        "{DEV_KMS_ROOT_ADDRESS} is the devtee development KMS root, whose private key is \
         published: on chain {chain_id} (not a local dev chain) allowlisting it lets anyone \
         who runs `attestmesh devtee` register as a member of this cluster"
    )
}

/// Collects a guard: an error without `force`, a warning with it.
fn guard(force: bool, warnings: &mut Vec<String>, message: String) -> Result<(), OpsError> {
    if force {
        warnings.push(message);
        Ok(())
    } else {
        Err(OpsError::Refused(message))
    }
}

/// The clusters the factory deployed, with their mesh CIDRs (from `ClusterDeployed` logs).
pub async fn factory_clusters(
    p: &RpcClient,
    factory: Address,
    from_block: u64,
) -> Result<Vec<(Address, MeshCidr)>, OpsError> {
    let head = p
        .block_number()
        .await
        .map_err(OpsError::chain("reading the block number"))?;
    let logs = p
        .logs_chunked(
            factory,
            &[IClusterDiamondFactory::ClusterDeployed::SIGNATURE_HASH],
            from_block,
            head,
        )
        .await
        .map_err(OpsError::chain("scanning ClusterDeployed events"))?;
    let mut out = Vec::new();
    for log in logs {
        let Some(topic) = log.topics.get(1) else {
            continue;
        };
        let cluster = Address::from_word(*topic);
        let c = view(p, cluster, IAttestFacet::meshCidrCall {}, "meshCidr()").await?;
        match MeshCidr::new(c.ip, c.prefix) {
            Ok(cidr) => out.push((cluster, cidr)),
            Err(e) => tracing::warn!(%cluster, "cluster reports an invalid mesh CIDR: {e}"),
        }
    }
    Ok(out)
}

/// Computes the cluster address and runs the guards. Sends nothing.
pub async fn plan_create(
    exec: &Executor,
    d: &Deployments,
    cfg: &ClusterConfig,
    force: bool,
) -> Result<CreatePlan, OpsError> {
    let p = exec.provider();
    crate::infra::require_infra(exec, d).await?;
    let factory = d.contracts.cluster_diamond_factory;
    let args = cfg.init_args(d.contracts.cluster_member_factory);
    let predicted = view(
        p,
        factory,
        IClusterDiamondFactory::predictClusterAddressCall {
            args: args.clone(),
            salt: cfg.salt,
        },
        "ClusterDiamondFactory.predictClusterAddress",
    )
    .await?;
    let already_deployed = p
        .has_code(predicted)
        .await
        .map_err(OpsError::chain(format!("reading code at {predicted}")))?;
    let mut forced_warnings = Vec::new();
    if !already_deployed {
        if cfg.kms_roots.contains(&DEV_KMS_ROOT_ADDRESS) && !is_dev_chain(exec.chain_id()) {
            guard(
                force,
                &mut forced_warnings,
                format!("kms_roots: {}", dev_root_warning(exec.chain_id())),
            )?;
        }
        for (other, cidr) in factory_clusters(p, factory, d.from_block).await? {
            if cidrs_overlap(&cfg.mesh_cidr, &cidr) {
                guard(
                    force,
                    &mut forced_warnings,
                    format!(
                        "mesh_cidr: {} overlaps {cidr} of cluster {other} (same factory): a host \
                         in both clusters could not route both meshes; pick a disjoint range",
                        cfg.mesh_cidr
                    ),
                )?;
            }
        }
    }
    Ok(CreatePlan {
        predicted,
        already_deployed,
        forced_warnings,
        args,
        salt: cfg.salt,
        factory,
    })
}

/// Deploys the planned cluster (nothing when it already exists) and checks it landed.
pub async fn execute_create(exec: &mut Executor, plan: &CreatePlan) -> Result<(), OpsError> {
    if plan.already_deployed {
        return Ok(());
    }
    exec.submit(PlannedTx {
        to: plan.factory,
        value: U256::ZERO,
        data: Bytes::from(
            IClusterDiamondFactory::deployClusterCall {
                args: plan.args.clone(),
                salt: plan.salt,
            }
            .abi_encode(),
        ),
        what: format!("deploy cluster {}", plan.predicted),
    })
    .await?;
    if !exec.is_print()
        && !exec
            .provider()
            .has_code(plan.predicted)
            .await
            .map_err(OpsError::chain("reading the new cluster's code"))?
    {
        return Err(OpsError::Unexpected(format!(
            "deployCluster succeeded but there is no code at the predicted {}",
            plan.predicted
        )));
    }
    Ok(())
}

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
async fn originator_compose_warning(
    p: &RpcClient,
    cluster: Address,
    hash: B256,
    scan_from: u64,
) -> Result<Option<String>, OpsError> {
    let members = view(
        p,
        cluster,
        IAttestWrite::listMembersCall {},
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
struct PolicyHistory {
    /// (block, hash, added?)
    compose: Vec<(u64, B256, bool)>,
    devices: Vec<(u64, B256, bool)>,
    kms_roots: Vec<(u64, Address, bool)>,
    app_ids: Vec<(u64, Address, bool)>,
}

/// The candidates (replayed from policy events) that the cluster's view still confirms: events
/// say what was ever allowed, the view says what is allowed now.
async fn still_allowed<T: Copy, C: SolCall<Return = bool>>(
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

fn replay<T: Ord + Copy>(events: &[(u64, T, bool)], up_to: u64) -> Vec<T> {
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

async fn policy_history(
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
    let mut logs = p
        .logs_chunked(cluster, &topics, from, head)
        .await
        .map_err(OpsError::chain("scanning the cluster's policy events"))?;
    logs.sort_by_key(|l| (l.block_number, l.log_index));
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

/// Everything `show` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub cluster: Address,
    pub chain_id: u64,
    pub cluster_owner: Address,
    pub pending_cluster_owner: Option<Address>,
    pub diamond_owner: Address,
    pub mesh_cidr: String,
    pub member_count: u64,
    /// `None` until the originator commits the CSK.
    pub csk_commitment: Option<B256>,
    pub member_factory: Address,
    pub allow_any_device: bool,
    pub require_tcb_up_to_date: bool,
    pub compose_hashes: Vec<B256>,
    pub devices: Vec<B256>,
    pub kms_roots: Vec<Address>,
    pub app_ids: Vec<Address>,
    /// The devtee development KMS root is allowlisted (fine on a dev chain only).
    pub dev_kms_root_allowed: bool,
}

/// Reads a cluster. Allowlists are mappings on chain, so they are enumerated from the policy
/// events (the initializer emits them too) and each entry is confirmed with its view.
pub async fn show(
    p: &RpcClient,
    chain_id: u64,
    cluster: Address,
    scan_from: u64,
) -> Result<ClusterInfo, OpsError> {
    if !p
        .has_code(cluster)
        .await
        .map_err(OpsError::chain(format!("reading code at {cluster}")))?
    {
        return Err(OpsError::NoCode {
            what: "cluster".into(),
            address: cluster,
            chain_id,
            hint: "check --cluster and --rpc-url",
        });
    }
    let cluster_owner = view(
        p,
        cluster,
        IAttestFacet::clusterOwnerCall {},
        "clusterOwner()",
    )
    .await?;
    let pending = view(
        p,
        cluster,
        IAttestFacet::pendingClusterOwnerCall {},
        "pendingClusterOwner()",
    )
    .await?;
    let diamond_owner = view(p, cluster, IOwnershipFacet::ownerCall {}, "owner()").await?;
    let cidr = view(p, cluster, IAttestFacet::meshCidrCall {}, "meshCidr()").await?;
    let mesh_cidr = MeshCidr::new(cidr.ip, cidr.prefix)
        .map(|c| c.to_string())
        .unwrap_or_else(|e| format!("invalid ({e})"));
    let member_count: U256 = view(
        p,
        cluster,
        IAttestFacet::memberCountCall {},
        "memberCount()",
    )
    .await?;
    let csk = view(
        p,
        cluster,
        IAttestWrite::cskCommitmentCall {},
        "cskCommitment()",
    )
    .await?;
    let member_factory = view(p, cluster, P::memberFactoryCall {}, "memberFactory()").await?;
    let allow_any_device = view(p, cluster, P::allowAnyDeviceCall {}, "allowAnyDevice()").await?;
    let require_tcb_up_to_date = view(
        p,
        cluster,
        P::requireTcbUpToDateCall {},
        "requireTcbUpToDate()",
    )
    .await?;

    let head = p
        .block_number()
        .await
        .map_err(OpsError::chain("reading the block number"))?;
    let history = policy_history(p, cluster, scan_from).await?;
    let compose_hashes = still_allowed(
        p,
        cluster,
        replay(&history.compose, head),
        |composeHash| P::allowedComposeHashesCall { composeHash },
        "allowedComposeHashes",
    )
    .await?;
    let devices = still_allowed(
        p,
        cluster,
        replay(&history.devices, head),
        |deviceId| P::allowedDeviceIdsCall { deviceId },
        "allowedDeviceIds",
    )
    .await?;
    let kms_roots = still_allowed(
        p,
        cluster,
        replay(&history.kms_roots, head),
        |kmsRoot| P::allowedKmsRootsCall { kmsRoot },
        "allowedKmsRoots",
    )
    .await?;
    let app_ids = still_allowed(
        p,
        cluster,
        replay(&history.app_ids, head),
        |appId| P::allowedAppIdsCall { appId },
        "allowedAppIds",
    )
    .await?;
    Ok(ClusterInfo {
        cluster,
        chain_id,
        cluster_owner,
        pending_cluster_owner: (pending != Address::ZERO).then_some(pending),
        diamond_owner,
        mesh_cidr,
        member_count: member_count.saturating_to(),
        csk_commitment: (csk != B256::ZERO).then_some(csk),
        member_factory,
        allow_any_device,
        require_tcb_up_to_date,
        dev_kms_root_allowed: kms_roots.contains(&DEV_KMS_ROOT_ADDRESS),
        compose_hashes,
        devices,
        kms_roots,
        app_ids,
    })
}

/// One member, as `members` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// Registration order; 0 is the CSK originator.
    pub index: usize,
    pub member_id: B256,
    pub member_contract: Address,
    pub attestor_id: B256,
    pub mesh_ip: std::net::Ipv4Addr,
    pub x_pub_key: B256,
    pub wg_pub_key: B256,
    pub ed_pub_key: B256,
    pub registered_at: u64,
}

/// The members in registration order, with ids and mesh IPs as the chain computes them.
pub async fn members(p: &RpcClient, cluster: Address) -> Result<Vec<MemberInfo>, OpsError> {
    let list: Vec<MemberRecord> = view(
        p,
        cluster,
        IAttestWrite::listMembersCall {},
        "listMembers()",
    )
    .await?;
    let mut out = Vec::with_capacity(list.len());
    for (index, m) in list.into_iter().enumerate() {
        let member_id = attestmesh_core::ids::member_id(cluster, m.memberContract, m.attestorId);
        let ip = view(
            p,
            cluster,
            IAttestFacet::meshIpOfCall {
                memberId: member_id,
            },
            "meshIpOf",
        )
        .await?;
        out.push(MemberInfo {
            index,
            member_id,
            member_contract: m.memberContract,
            attestor_id: m.attestorId,
            mesh_ip: std::net::Ipv4Addr::from(ip),
            x_pub_key: m.xPubKey,
            wg_pub_key: m.wgPubKey,
            ed_pub_key: m.edPubKey,
            registered_at: m.registeredAt,
        });
    }
    Ok(out)
}

/// `show` as an aligned, human-readable block.
pub fn render_info(i: &ClusterInfo) -> String {
    let mut rows: BTreeMap<usize, (String, String)> = BTreeMap::new();
    let mut push = |k: &str, v: String| {
        let n = rows.len();
        rows.insert(n, (k.to_string(), v));
    };
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join("\n")
        }
    };
    push("cluster", i.cluster.to_string());
    push("chain id", i.chain_id.to_string());
    push("cluster owner", i.cluster_owner.to_string());
    if let Some(pend) = i.pending_cluster_owner {
        push("pending owner", pend.to_string());
    }
    push("diamond owner", i.diamond_owner.to_string());
    push("mesh CIDR", i.mesh_cidr.clone());
    push("members", i.member_count.to_string());
    push(
        "CSK commitment",
        i.csk_commitment
            .map(|c| c.to_string())
            .unwrap_or_else(|| "(not set: no originator yet)".into()),
    );
    push("member factory", i.member_factory.to_string());
    push("allow any device", i.allow_any_device.to_string());
    push(
        "require TCB up to date",
        i.require_tcb_up_to_date.to_string(),
    );
    push(
        "compose hashes",
        list(i.compose_hashes.iter().map(|h| h.to_string()).collect()),
    );
    push(
        "devices",
        list(i.devices.iter().map(|h| h.to_string()).collect()),
    );
    push(
        "KMS roots",
        list(
            i.kms_roots
                .iter()
                .map(|a| {
                    if *a == DEV_KMS_ROOT_ADDRESS {
                        format!("{a} (devtee development root!)")
                    } else {
                        a.to_string()
                    }
                })
                .collect(),
        ),
    );
    push(
        "app ids",
        list(i.app_ids.iter().map(|a| a.to_string()).collect()),
    );
    let width = rows.values().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows.values() {
        for (n, line) in v.lines().enumerate() {
            let label = if n == 0 { k.as_str() } else { "" };
            out.push_str(&format!("{label:<width$}  {line}\n"));
        }
    }
    out
}

/// `members` as a table.
pub fn render_members(members: &[MemberInfo]) -> String {
    if members.is_empty() {
        return "no members yet\n".to_string();
    }
    let mut out = format!(
        "{:<3} {:<66} {:<42} {:<15} {:>9}  keys (x25519 / wireguard / ed25519)\n",
        "#", "member id", "member contract", "mesh IP", "block"
    );
    for m in members {
        out.push_str(&format!(
            "{:<3} {:<66} {:<42} {:<15} {:>9}  {}\n{:<139}  {}\n{:<139}  {}\n",
            if m.index == 0 {
                "0*".to_string()
            } else {
                m.index.to_string()
            },
            m.member_id.to_string(),
            m.member_contract.to_string(),
            m.mesh_ip.to_string(),
            m.registered_at,
            m.x_pub_key,
            "",
            m.wg_pub_key,
            "",
            m.ed_pub_key,
        ));
    }
    out.push_str("* the CSK originator\n");
    out
}
