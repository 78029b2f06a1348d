//! Devnet benchmark (root; `cargo bench -p attestmesh-lab --bench convergence`), DESIGN §13:
//! - convergence of a 3-node devnet with 2 s blocks, agents started → all healthy, against the
//!   floor "registration block + commitment block + two heartbeat intervals" (target ≤ 1.5×);
//! - idle CPU and RSS of one agent, from /proc over 10 s (targets < 2 %, < 40 MB);
//! - heartbeat bytes per second per peer: from the fixed heartbeat size and interval, and
//!   measured from the agent's `attestmesh_heartbeats_sent_total` counter;
//! - push latency on the devnet: a sealed message from node 0 to node 1, from the moment its
//!   block is first seen at the chain's RPC to the moment node 1's app receives it (the Indexer's
//!   push through the gateway, then the agent's pull of that block), p50/p99 over
//!   `PUSH_SAMPLES` messages, beside send → receive.
//!
//! Without root or without the `attestmesh` binary it says so and exits 0 (benchmarks are not
//! tests). `ATTESTMESH_BIN` overrides the binary; `BENCH_RUNS` repeats the convergence run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attestmesh_core::heartbeat::HEARTBEAT_LEN;
use attestmesh_lab::devnet::{self, Devnet, UpConfig};
use attestmesh_proto::agent::agent_client::AgentClient;
use attestmesh_proto::agent::{SendMessageRequest, SubscribeMessagesRequest};

const NODES: usize = 3;
const BLOCK_TIME_S: u64 = 2;
const HEARTBEAT_MS: u64 = 2000;
const SAMPLE: Duration = Duration::from_secs(10);
const PUSH_SAMPLES: usize = 12;
/// How often the bench polls the chain head to timestamp each block's first sighting.
const HEAD_POLL: Duration = Duration::from_millis(10);

fn exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATTESTMESH_BIN") {
        return Some(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok()?;
    let p = me.parent()?.parent()?.join("attestmesh");
    p.is_file().then_some(p)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (user + system CPU ticks, RSS in kB) of `pid`.
fn cpu_and_rss(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some((utime + stime, rss))
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100)
}

fn heartbeats_sent(dn: &Devnet, i: usize) -> Option<f64> {
    let n = dn.state.nodes.get(i)?;
    let (_, body) = dn
        .gateway()
        .ok()?
        .get(n.member_contract, devnet::HEALTH_PORT, "/metrics")
        .ok()?;
    body.lines()
        .find(|l| l.starts_with("attestmesh_heartbeats_sent_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// One heartbeat on the wire between two nodes: the UDP datagram inside WireGuard (IPv4 20 +
/// UDP 8 + payload, padded to 16), the WireGuard data header and tag (32), the bridge's
/// 2-byte length prefix and a TLS 1.3 record's overhead (22). TCP/IP of the outer stream not
/// counted (it is shared with other traffic and coalesced).
fn wire_bytes() -> usize {
    let inner = 20 + 8 + HEARTBEAT_LEN;
    let padded = inner.div_ceil(16) * 16;
    padded + 32 + 2 + 22
}

async fn run() -> Result<(), String> {
    let Some(exe) = exe() else {
        println!(
            "convergence: skipped (no attestmesh binary; build attestmesh-cli or set ATTESTMESH_BIN)"
        );
        return Ok(());
    };
    if !attestmesh_lab::available() {
        println!("convergence: skipped (needs root, /dev/net/tun and iproute2)");
        return Ok(());
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let floor = Duration::from_secs(2 * BLOCK_TIME_S) + Duration::from_millis(2 * HEARTBEAT_MS);
    let quiet = |_: &str| {};
    let mut measured = Vec::new();
    for run in 0..runs {
        let tmp = std::env::temp_dir().join(format!("amdn-bench-{}-{run}", std::process::id()));
        let mut cfg = UpConfig::new(repo(), exe.clone(), tmp.clone());
        cfg.nodes = NODES;
        cfg.block_time = BLOCK_TIME_S;
        cfg.heartbeat_interval_ms = HEARTBEAT_MS;
        let dn = Devnet::up(cfg, false, &quiet)
            .await
            .map_err(|e| e.to_string())?;
        let result = measure(&dn, floor, run + 1 == runs).await;
        devnet::down(&tmp).map_err(|e| e.to_string())?;
        measured.push(result?);
    }
    let best = measured.iter().min().copied().unwrap_or_default();
    let mean = measured.iter().sum::<Duration>() / u32::try_from(measured.len()).unwrap_or(1);
    println!(
        "convergence ({NODES} nodes, {BLOCK_TIME_S} s blocks, {HEARTBEAT_MS} ms heartbeats): \
         runs={runs} mean={:.2} s best={:.2} s floor={:.2} s ratio(mean/floor)={:.2} (target <= 1.50)",
        mean.as_secs_f64(),
        best.as_secs_f64(),
        floor.as_secs_f64(),
        mean.as_secs_f64() / floor.as_secs_f64()
    );
    Ok(())
}

async fn measure(dn: &Devnet, floor: Duration, idle: bool) -> Result<Duration, String> {
    let conv = Duration::from_millis(dn.state.convergence_ms.ok_or("no convergence time")?);
    println!(
        "  run: all healthy {:.2} s after the agents started (ratio {:.2})",
        conv.as_secs_f64(),
        conv.as_secs_f64() / floor.as_secs_f64()
    );
    if !idle {
        return Ok(conv);
    }
    // Let the post-convergence chatter (CSK pulls, first reconciles) settle, then sample.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = dn.state.nodes[0]
        .agent
        .as_ref()
        .map(|a| a.pid)
        .ok_or("node 0 has no agent")?;
    let (c0, _) = cpu_and_rss(pid).ok_or("cannot read /proc for the agent")?;
    let hb0 = heartbeats_sent(dn, 0);
    let t0 = Instant::now();
    tokio::time::sleep(SAMPLE).await;
    let (c1, rss) = cpu_and_rss(pid).ok_or("cannot read /proc for the agent")?;
    let hb1 = heartbeats_sent(dn, 0);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (c1 - c0) as f64 / clock_ticks() as f64 / secs * 100.0;
    println!(
        "idle agent (node 0, {secs:.0} s): cpu={cpu:.2} % (target < 2 %) rss={:.1} MB (target < 40 MB)",
        rss as f64 / 1024.0
    );
    let per_s = 1000.0 / HEARTBEAT_MS as f64;
    println!(
        "heartbeat per peer: payload {HEARTBEAT_LEN} B -> {:.1} B/s; on the wire ~{} B -> {:.1} B/s (at {HEARTBEAT_MS} ms)",
        HEARTBEAT_LEN as f64 * per_s,
        wire_bytes(),
        wire_bytes() as f64 * per_s
    );
    match (hb0, hb1) {
        (Some(a), Some(b)) => {
            let peers = (NODES - 1) as f64;
            let sent_per_peer_s = (b - a) / secs / peers;
            println!(
                "heartbeat per peer, measured from attestmesh_heartbeats_sent_total: {:.2} heartbeats/s -> {:.1} B/s payload",
                sent_per_peer_s,
                sent_per_peer_s * HEARTBEAT_LEN as f64
            );
        }
        _ => println!(
            "heartbeat per peer, measured: the agent exposes no attestmesh_heartbeats_sent_total"
        ),
    }
    push_latency(dn).await?;
    Ok(conv)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Sends `PUSH_SAMPLES` messages from node 0 to node 1 one after another and prints, p50/p99,
/// block first seen at the RPC → received by node 1's app, and send → receive.
async fn push_latency(dn: &Devnet) -> Result<(), String> {
    let (a, b) = match (dn.state.nodes.first(), dn.state.nodes.get(1)) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => return Err("push latency needs two nodes".into()),
    };
    let connect = |p: PathBuf| async move {
        attestmesh_proto::socket::connect_agent(&p)
            .await
            .map(AgentClient::new)
            .map_err(|e| format!("agent socket {}: {e}", p.display()))
    };
    let mut sender = connect(a.agent_socket.clone()).await?;
    let mut receiver = connect(b.agent_socket.clone()).await?;
    let mut inbox = receiver
        .subscribe_messages(SubscribeMessagesRequest { from_block: 0 })
        .await
        .map_err(|e| format!("subscribe: {e}"))?
        .into_inner();
    // First sighting of every block number at the RPC, by a poller running beside the sends.
    let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let rpc = dn.rpc().clone();
    let poller = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = rpc.block_number().await {
                    let now = Instant::now();
                    if let Ok(mut m) = seen.lock() {
                        m.entry(n).or_insert(now);
                    }
                }
                tokio::time::sleep(HEAD_POLL).await;
            }
        })
    };
    let mut after_block = Vec::new();
    let mut end_to_end = Vec::new();
    let mut failure = None;
    for k in 0..PUSH_SAMPLES {
        let t0 = Instant::now();
        let sent = sender
            .send_message(SendMessageRequest {
                recipient_member_id: b.member_id.to_vec(),
                plaintext: format!("push latency sample {k}").into_bytes(),
            })
            .await;
        if let Err(e) = sent {
            failure = Some(format!("send: {e}"));
            break;
        }
        let got = tokio::time::timeout(Duration::from_secs(60), inbox.message()).await;
        let t1 = Instant::now();
        let msg = match got {
            Ok(Ok(Some(m))) => m,
            other => {
                failure = Some(format!("message {k} not received: {other:?}"));
                break;
            }
        };
        end_to_end.push(t1 - t0);
        let first_seen = seen
            .lock()
            .ok()
            .and_then(|m| m.get(&msg.block_number).copied());
        if let Some(s) = first_seen {
            after_block.push(t1.saturating_duration_since(s));
        }
    }
    poller.abort();
    if let Some(f) = failure {
        return Err(f);
    }
    after_block.sort();
    end_to_end.sort();
    println!(
        "push latency (devnet, n0 -> n1, {} messages): block seen at the RPC -> received p50={:.1} ms p99={:.1} ms; send -> received p50={:.0} ms p99={:.0} ms ({} s blocks)",
        after_block.len(),
        percentile(&after_block, 0.5).as_secs_f64() * 1e3,
        percentile(&after_block, 0.99).as_secs_f64() * 1e3,
        percentile(&end_to_end, 0.5).as_secs_f64() * 1e3,
        percentile(&end_to_end, 0.99).as_secs_f64() * 1e3,
        BLOCK_TIME_S
    );
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("convergence: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("convergence: {e}");
        std::process::exit(1);
    }
}
