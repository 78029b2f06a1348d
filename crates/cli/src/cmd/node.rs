//! `attestmesh node`: the per-node agent (DESIGN §5–§11). All logic lives in `attestmesh-node`;
//! this file validates the flags (each with an env twin, failing fast with the setting's name)
//! and runs the agent until SIGTERM or Ctrl-C, after which the agent removes its interface and
//! its app socket before the process exits.

/// Every flag of the agent; see `attestmesh node --help`.
pub type Args = attestmesh_node::config::NodeArgs;

pub async fn run(args: Args) -> anyhow::Result<()> {
    // LOG_FORMAT / --log-format is applied by the process logger in main.rs, before this runs.
    let cfg = args.validate()?;
    attestmesh_node::runtime::run(
        cfg,
        |h| tracing::info!(health = %h.health_addr, "agent serving"),
        super::shutdown_signal(),
    )
    .await?;
    Ok(())
}
