//! One module per subcommand; each exposes `Args` (clap, every flag with an env twin) and `run`.

pub mod cluster;
#[cfg(feature = "devnet")]
pub mod devnet;
pub mod devtee;
pub mod gateway;
pub mod indexer;
pub mod node;
pub mod sponsor;

/// Resolves on ctrl-c or SIGTERM: every long-running subcommand takes it as its shutdown
/// future, so `docker stop`, systemd and the devnet stop them cleanly. If a signal cannot be
/// listened for, that source never fires (logged) rather than shutting down at once.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
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
        _ = ctrl_c => {}
        _ = term => {}
    }
}
