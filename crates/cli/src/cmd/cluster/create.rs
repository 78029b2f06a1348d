//! `cluster create --config cluster.toml`.

use std::path::PathBuf;

use attestmesh_ops::cluster;
use attestmesh_ops::config::ClusterConfig;

use super::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster config (see deploy/cluster.example.toml).
    #[arg(long, env = "CLUSTER_CONFIG")]
    config: PathBuf,
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<()> {
    // Validate the file before touching the chain: a bad key is reported by name at once.
    let cfg = ClusterConfig::load(&args.config)?;
    let mut exec = common.executor().await?;
    let mut d = common.deployments(exec.chain_id())?;
    if let Some(b) = common.from_block {
        d.from_block = b;
    }
    let plan = cluster::plan_create(&exec, &d, &cfg, common.force).await?;
    super::print_warnings(&plan.forced_warnings);
    if plan.already_deployed {
        eprintln!(
            "cluster {} already exists (same config and salt)",
            plan.predicted
        );
    } else {
        eprintln!("predicted cluster address: {}", plan.predicted);
    }
    cluster::execute_create(&mut exec, &plan).await?;
    if !exec.is_print() {
        // stdout carries only the address, for scripts: CLUSTER=$(attestmesh cluster create …)
        println!("{}", plan.predicted);
    }
    super::finish(
        &exec,
        "AttestMesh cluster",
        &format!("create cluster {} ({})", plan.predicted, cfg.mesh_cidr),
    )
}
