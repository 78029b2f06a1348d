//! `cluster allow|disallow <kind> <value>` and `cluster set <rule> true|false`.

use alloy_primitives::Address;
use attestmesh_ops::cluster::{self, PolicyChange, PolicyOutcome};

use super::{Common, parse_address, parse_b256};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListKind {
    /// dstack compose hash (bytes32) allowed to boot.
    ComposeHash,
    /// TDX device id (bytes32) allowed to boot.
    Device,
    /// KMS root address whose signature chains admit members.
    KmsRoot,
    /// App id (address) admitted without coming from the member factory (path A members).
    AppId,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// What to change.
    #[arg(value_enum)]
    kind: ListKind,
    /// The value: 0x + 64 hex for hashes and devices, a 0x address for roots and app ids.
    value: String,
    /// The cluster.
    #[arg(long, env = "CLUSTER")]
    cluster: Address,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Rule {
    /// Skip the device allowlist.
    AllowAnyDevice,
    /// Refuse VMs whose TCB status is not "UpToDate".
    RequireTcbUpToDate,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[arg(value_enum)]
    rule: Rule,
    /// true or false.
    #[arg(action = clap::ArgAction::Set)]
    value: bool,
    /// The cluster.
    #[arg(long, env = "CLUSTER")]
    cluster: Address,
}

async fn apply(common: &Common, cluster: Address, change: PolicyChange) -> anyhow::Result<()> {
    let mut exec = common.executor().await?;
    let scan_from = common.scan_from(exec.chain_id())?;
    match cluster::change_policy(&mut exec, cluster, change, scan_from, common.force).await? {
        PolicyOutcome::AlreadyInEffect => eprintln!("already in effect: {change:?}"),
        PolicyOutcome::Applied { forced_warnings } => super::print_warnings(&forced_warnings),
    }
    super::finish(
        &exec,
        "AttestMesh cluster policy",
        &format!("{change:?} on {cluster}"),
    )
}

pub async fn run_list(common: &Common, a: ListArgs, add: bool) -> anyhow::Result<()> {
    let v = a.value.as_str();
    let change = match (a.kind, add) {
        (ListKind::ComposeHash, true) => {
            PolicyChange::AddComposeHash(parse_b256("compose hash", v)?)
        }
        (ListKind::ComposeHash, false) => {
            PolicyChange::RemoveComposeHash(parse_b256("compose hash", v)?)
        }
        (ListKind::Device, true) => PolicyChange::AddDevice(parse_b256("device id", v)?),
        (ListKind::Device, false) => PolicyChange::RemoveDevice(parse_b256("device id", v)?),
        (ListKind::KmsRoot, true) => PolicyChange::AddKmsRoot(parse_address("kms root", v)?),
        (ListKind::KmsRoot, false) => PolicyChange::RemoveKmsRoot(parse_address("kms root", v)?),
        (ListKind::AppId, true) => PolicyChange::AddAppId(parse_address("app id", v)?),
        (ListKind::AppId, false) => PolicyChange::RemoveAppId(parse_address("app id", v)?),
    };
    apply(common, a.cluster, change).await
}

pub async fn run_set(common: &Common, a: SetArgs) -> anyhow::Result<()> {
    let change = match a.rule {
        Rule::AllowAnyDevice => PolicyChange::SetAllowAnyDevice(a.value),
        Rule::RequireTcbUpToDate => PolicyChange::SetRequireTcbUpToDate(a.value),
    };
    apply(common, a.cluster, change).await
}
