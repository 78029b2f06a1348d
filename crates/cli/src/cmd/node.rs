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
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        }
        _ = term => {}
    }
}
