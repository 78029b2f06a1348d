//! `cluster member deploy` (factory path) and `cluster member bind` (path A).

use alloy_primitives::Address;
use attestmesh_ops::member;

use super::Common;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Deploy a ClusterMember through the member factory (prints the predicted address first).
    Deploy {
        /// The cluster the member binds to.
        #[arg(long, env = "CLUSTER")]
        cluster: Address,
        /// CREATE2 salt: 0x + 64 hex, or a label that is hashed (e.g. "node-1").
        #[arg(long)]
        salt: String,
    },
    /// Path A: upgrade a stock dstack app proxy into a ClusterMember of the cluster (one atomic
    /// upgradeToAndCall by the app's owner), then allowlist its app id.
    Bind {
        /// The dstack app id (the app's proxy address).
        #[arg(long)]
        app_id: Address,
        /// The cluster.
        #[arg(long, env = "CLUSTER")]
        cluster: Address,
        /// Do not send addAllowedAppId (e.g. the cluster owner is another account).
        #[arg(long)]
        no_allowlist: bool,
    },
}

pub async fn run(common: &Common, c: Command) -> anyhow::Result<()> {
    let mut exec = common.executor().await?;
    let d = common.deployments(exec.chain_id())?;
    match c {
        Command::Deploy { cluster, salt } => {
            let salt = attestmesh_ops::config::parse_salt(&salt)
                .map_err(|r| anyhow::anyhow!("--salt: {r}"))?;
            let plan = member::plan_member_deploy(&exec, &d, cluster, salt, common.force).await?;
            if plan.already_deployed {
                eprintln!("member {} already exists", plan.predicted);
            } else {
                eprintln!("predicted member address: {}", plan.predicted);
            }
            member::execute_member_deploy(&mut exec, &d, cluster, salt, &plan).await?;
            if !exec.is_print() {
                println!("{}", plan.predicted);
            }
            super::finish(
                &exec,
                "AttestMesh member",
                &format!("deploy member {} for {cluster}", plan.predicted),
            )
        }
        Command::Bind {
            app_id,
            cluster,
            no_allowlist,
        } => {
            let out = member::bind(&mut exec, &d, app_id, cluster, !no_allowlist).await?;
            if !out.upgraded {
                eprintln!("{app_id} is already a ClusterMember of {cluster}");
            }
            if !out.allowlisted && !no_allowlist {
                eprintln!("{app_id} is already an allowlisted app id");
            }
            super::finish(
                &exec,
                "AttestMesh member (path A)",
                &format!("bind dstack app {app_id} to {cluster}"),
            )
        }
    }
}
