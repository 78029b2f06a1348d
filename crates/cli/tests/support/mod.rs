//! Shared process helpers for the integration tests: every process started here is killed when
//! its guard drops, even if the test panics.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::Address;

/// A running `attestmesh devtee`.
pub struct DevteeProcess {
    pub socket: PathBuf,
    child: Option<Child>,
}

impl DevteeProcess {
    pub async fn start(socket: &Path, app_id: Address, root: Option<[u8; 32]>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attestmesh"));
        cmd.arg("devtee")
            .arg("--socket")
            .arg(socket)
            .arg("--app-id")
            .arg(app_id.to_string())
            .env("LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(r) = root {
            cmd.arg("--kms-root-key")
                .arg(alloy_primitives::hex::encode(r));
        }
        let child = cmd.spawn().expect("spawn attestmesh devtee");
        let me = Self {
            socket: socket.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "devtee did not come up on {}",
                socket.display()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        me
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(&child);
        wait_or_kill(&mut child, Duration::from_secs(10))
    }
}

impl Drop for DevteeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

pub fn wait_or_kill(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
