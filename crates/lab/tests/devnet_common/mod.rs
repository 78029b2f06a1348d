//! Shared set-up of the devnet lab tests: find the `attestmesh` binary and the checkout, bring a
//! devnet up in a temporary directory, tear it down on drop (also on panic), and talk to the
//! agents' app API over their unix sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use attestmesh_lab::devnet::{self, Devnet, UpConfig};
use attestmesh_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

/// A devnet takes most of a 2-core machine: one at a time across this test binary.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `$ATTESTMESH_BIN`, else the `attestmesh` next to this test's target directory (built by
/// `cargo test --workspace` / `cargo build -p attestmesh-cli`).
pub fn exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATTESTMESH_BIN") {
        return Some(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok()?;
    let p = me.parent()?.parent()?.join("attestmesh");
    p.is_file().then_some(p)
}

/// The prerequisites, or `None` to skip (failing instead when ATTESTMESH_REQUIRE_LAB is set,
/// so CI cannot pass by skipping: [`attestmesh_testkit::lab`]).
pub fn prerequisites(agents: bool) -> Option<PathBuf> {
    let skip = |why: String| {
        attestmesh_testkit::lab::skip(why);
        None
    };
    if !attestmesh_lab::available() {
        return skip("the devnet needs root, /dev/net/tun and iproute2".into());
    }
    let Some(exe) = exe() else {
        return skip("no attestmesh binary (build attestmesh-cli or set ATTESTMESH_BIN)".into());
    };
    let cfg = UpConfig::new(repo(), exe.clone(), std::env::temp_dir());
    if let Err(e) = devnet::check_prerequisites(&cfg) {
        return skip(e.to_string());
    }
    if agents {
        let has_node = std::process::Command::new(&exe)
            .args(["node", "--help"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_node {
            return skip(format!("{} has no `node` subcommand", exe.display()));
        }
    }
    Some(exe)
}

/// A devnet owned by one test.
pub struct TestDevnet {
    pub dn: Devnet,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for TestDevnet {
    fn drop(&mut self) {
        if let Err(e) = devnet::down(&self.dir) {
            eprintln!("devnet down failed: {e}");
        }
    }
}

/// Tests are sync so they can hold [`SERIAL`] without holding a lock across awaits.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn progress(line: &str) {
    eprintln!("{line}");
}

pub async fn up(exe: PathBuf, nodes: usize, agents: bool) -> TestDevnet {
    // Short path: unix socket paths inside it must stay under 108 bytes.
    let tmp = tempfile::Builder::new()
        .prefix("amdn")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("d");
    let mut cfg = UpConfig::new(repo(), exe, dir.clone());
    cfg.nodes = nodes;
    cfg.agents = agents;
    cfg.health_timeout = Duration::from_secs(120);
    let dn = Devnet::up(cfg, false, &progress).await.expect("devnet up");
    TestDevnet { dn, dir, _tmp: tmp }
}

/// An app API client on a node's agent socket.
pub async fn client(path: &Path) -> AgentClient<Channel> {
    AgentClient::new(attestmesh_proto::socket::connect_agent(path).await.unwrap())
}
