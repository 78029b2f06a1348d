//! Starting the external processes of the local 4337 stack so a port race cannot fail a test.
//!
//! alto binds its own port, so it cannot be handed a bound listener: the port is picked free
//! and alto binds it a moment later, and something else may take it in between. When alto
//! exits for that reason (its log says EADDRINUSE), it is started again on a fresh port.

use attestmesh_chain::devstack::{self, Alto, AltoConfig, StackError};

/// How many fresh ports are tried before the error is returned.
const ATTEMPTS: usize = 3;

/// Starts alto on a fresh free port, retrying on a lost port race; the port used is left in
/// `cfg.port`, so a later `Alto::start(cfg)` (a restart) comes back on the same address.
pub async fn start_alto(cfg: &mut AltoConfig) -> Result<Alto, StackError> {
    let mut attempt = 1;
    loop {
        cfg.port = Some(devstack::free_port()?);
        match Alto::start(cfg).await {
            Err(StackError::Exited { ref log, .. }) if attempt < ATTEMPTS && port_taken(log) => {
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Whether a process log says its listen port was taken.
fn port_taken(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("eaddrinuse") || log.contains("address already in use")
}
