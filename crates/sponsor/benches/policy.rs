//! Sponsor policy throughput and latency, warm vs cold provenance cache, in one run.
//!
//! The chain is a real local HTTP JSON-RPC server answering `eth_call` (the same fake node the
//! tests use) after a simulated round-trip delay, read through the production `RpcChainView`;
//! decisions go through the production `Policy` with its redb counter store. "Cold" is the same
//! policy with both cache TTLs set to zero, so every decision does its full set of chain reads.
//!
//! Run: `cargo bench -p attestmesh-sponsor --bench policy`
//! Knobs (env): `BENCH_RPC_DELAY_MS` (default 2), `BENCH_CONCURRENCY` (default 64).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_sponsor::policy::{Decision, Mode, Policy};
use attestmesh_sponsor::{CounterStore, RpcChainView};
use common::*;

struct Row {
    name: String,
    decisions: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn sender(i: usize) -> Address {
    let mut b = [0u8; 20];
    b[0] = 0x77;
    b[12..20].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from(b)
}

/// Runs `total` decisions with `concurrency` in flight; senders cycle through `senders`.
async fn measure(
    name: &str,
    policy: Arc<Policy<RpcChainView>>,
    total: usize,
    concurrency: usize,
    senders: usize,
    mode: Mode,
    nonce_base: u64,
) -> Row {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    let per_worker = total / concurrency;
    for w in 0..concurrency {
        let p = policy.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for k in 0..per_worker {
                let i = w * per_worker + k;
                let o = op(
                    sender(i % senders),
                    nonce_base + i as u64,
                    execute(CLUSTER_A, 0, &set_csk(1)),
                );
                let t = Instant::now();
                let now = 1_750_000_000;
                let d = p.decide(&o, entry_point(), CHAIN_ID, now, mode).await;
                lat.push(t.elapsed());
                match d {
                    Ok(Decision::Sponsor { .. }) => {}
                    other => panic!("benchmark decision must sponsor, got {other:?}"),
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for h in handles {
        match h.await {
            Ok(l) => all.extend(l),
            Err(e) => panic!("worker failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Row {
        name: name.to_owned(),
        decisions: all.len(),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(run());
}

async fn run() {
    let delay = Duration::from_millis(env_or("BENCH_RPC_DELAY_MS", 2));
    let concurrency = env_or("BENCH_CONCURRENCY", 64).max(1) as usize;
    const SENDERS: usize = 512;

    let state = MemState::fixture();
    {
        let mut m = state.members.lock().expect("lock");
        let mut c = state.cluster_of.lock().expect("lock");
        for i in 0..SENDERS * 64 {
            m.insert(sender(i));
            c.insert(sender(i), CLUSTER_A);
        }
    }
    let node = FakeNode::start(state, delay).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CounterStore::open(&dir.path().join("bench.redb")).expect("store"));
    let cfg = policy_config(u32::MAX);
    let mut cold_cfg = cfg.clone();
    cold_cfg.positive_ttl = Duration::ZERO;
    cold_cfg.negative_ttl = Duration::ZERO;
    let view = || {
        RpcChainView::new(
            RpcClient::new(&node.url())
                .expect("client")
                .with_timeout(Duration::from_secs(5)),
        )
    };
    let warm = Arc::new(Policy::new(cfg, view(), store.clone()));
    let cold = Arc::new(Policy::new(cold_cfg, view(), store.clone()));

    // Warm the cache and the connection pools.
    measure(
        "prewarm",
        warm.clone(),
        SENDERS,
        16,
        SENDERS,
        Mode::Check,
        0,
    )
    .await;
    measure("prewarm", cold.clone(), 64, 16, SENDERS, Mode::Check, 0).await;

    let mut rows = Vec::new();
    rows.push(
        measure(
            "warm cache, sequential",
            warm.clone(),
            20_000,
            1,
            SENDERS,
            Mode::Check,
            0,
        )
        .await,
    );
    rows.push(
        measure(
            "cold cache, sequential",
            cold.clone(),
            300,
            1,
            SENDERS,
            Mode::Check,
            0,
        )
        .await,
    );
    let par = format!("{concurrency} in flight");
    rows.push(
        measure(
            &format!("warm cache, {par}"),
            warm.clone(),
            40_000,
            concurrency,
            SENDERS,
            Mode::Check,
            0,
        )
        .await,
    );
    rows.push(
        measure(
            &format!("cold cache, {par}"),
            cold.clone(),
            4_000,
            concurrency,
            SENDERS,
            Mode::Check,
            0,
        )
        .await,
    );
    rows.push(
        measure(
            "warm cache, charge (redb commit), sequential",
            warm.clone(),
            500,
            1,
            SENDERS,
            Mode::Charge,
            1 << 32,
        )
        .await,
    );
    node.stop().await;

    println!();
    println!(
        "sponsor policy decisions — simulated RPC round trip {} ms, chain reads per cold decision: 3 (isOurMember, cluster, isDeployedCluster)",
        delay.as_millis()
    );
    println!(
        "{:<48} {:>10} {:>14} {:>10} {:>10}",
        "scenario", "decisions", "decisions/s", "p50 µs", "p99 µs"
    );
    for r in &rows {
        println!(
            "{:<48} {:>10} {:>14.0} {:>10} {:>10}",
            r.name,
            r.decisions,
            r.per_sec,
            r.p50.as_micros(),
            r.p99.as_micros()
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    println!();
    println!(
        "warm/cold decisions/s: sequential {:.1}x, {} {:.1}x",
        ratio(rows[0].per_sec, rows[1].per_sec),
        par,
        ratio(rows[2].per_sec, rows[3].per_sec)
    );
    println!(
        "cold/warm p99 latency: sequential {:.1}x, {} {:.1}x",
        ratio(rows[1].p99.as_secs_f64(), rows[0].p99.as_secs_f64()),
        par,
        ratio(rows[3].p99.as_secs_f64(), rows[2].p99.as_secs_f64())
    );
}
