//! `cluster show|members`: a cluster read back from chain state and its policy history.

// Bindings are built with field-init shorthand using the Solidity parameter names.
#![allow(non_snake_case)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};
use attestmesh_chain::bindings::{
    IAttestFacet, IDiamondOwnership, IDstackFacet as P, MemberRecord,
};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;
use serde::Serialize;

use super::policy::{policy_history, replay, still_allowed};
use crate::error::OpsError;
use crate::read::view;

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
    /// The sponsoring paymaster's deposit and stake at the EntryPoint, when the deployments
    /// record of this chain names them (`None` without a record).
    pub paymaster: Option<crate::infra::PaymasterFunds>,
}

/// Reads a cluster. Allowlists are mappings on chain, so they are enumerated from the policy
/// events (the initializer emits them too) and each entry is confirmed with its view.
pub async fn show(
    p: &RpcClient,
    chain_id: u64,
    cluster: Address,
    scan_from: u64,
    paymaster: Option<(Address, Address)>,
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
    let diamond_owner = view(p, cluster, IDiamondOwnership::ownerCall {}, "owner()").await?;
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
        IAttestFacet::cskCommitmentCall {},
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
        paymaster: match paymaster {
            Some((entry_point, pm)) => {
                Some(crate::infra::paymaster_funds(p, entry_point, pm).await?)
            }
            None => None,
        },
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
        IAttestFacet::listMembersCall {},
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
    match &i.paymaster {
        Some(f) => {
            push("paymaster", f.paymaster.to_string());
            push("paymaster deposit", format!("{} wei", f.deposit));
            push(
                "paymaster stake",
                if f.withdraw_time != 0 {
                    format!(
                        "{} wei, unstake delay {} s, UNLOCKING (withdrawable at {}): bundlers treat it as unstaked",
                        f.stake, f.unstake_delay_sec, f.withdraw_time
                    )
                } else if f.staked {
                    format!("{} wei, unstake delay {} s", f.stake, f.unstake_delay_sec)
                } else {
                    "(not staked: public bundlers refuse it; run deploy-infra)".to_string()
                },
            );
        }
        None => push(
            "paymaster",
            "(no deployments record for this chain: pass --deployments-dir)".to_string(),
        ),
    }
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
