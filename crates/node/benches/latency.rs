//! Push-path vs poll-path delivery latency of `MessageSent` (DESIGN §13: push < 100 ms after the
//! block on loopback; with the Indexer down, within one poll interval).
//!
//! One run, one chain, the same 30 messages observed by two model agents side by side:
//! - push path: real Indexer → real intake (verifies every push against the registry key) →
//!   WakeUp → model follower polls eth_getLogs up to the pushed block. Its periodic poll is set to
//!   1 h so every delivery is push-driven.
//! - poll path: model follower alone, eth_getLogs every 1 s (measured). The design default of
//!   10 s is NOT measured (it would take ~5 min); it is reported analytically as 10× the measured
//!   1 s phase distribution, which is what a uniform poll phase gives.
//!
//! Latency is measured from just before `eth_sendTransaction` (anvil automines, so the block
//! exists no earlier than that instant): an upper bound of "after the block".
//!
//! Run: `cargo bench -p attestmesh-node --bench latency`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/intake_common/mod.rs"]
mod intake_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::IMessageFacet;
use intake_common::*;

const MESSAGES: usize = 30;
const POLL: Duration = Duration::from_secs(1);

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let i = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
    s[i.min(s.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let w = world().await;
    let ix = w.indexer(0x1d, "bench", None).await; // Indexer head poll: 20 ms
    w.set_registry(&ix.grpc, ix.pubkey).await;
    let mut it = start_intake(w.intake_config());
    assert!(eventually(Duration::from_secs(10), || it.get(|s| &s.sessions) >= 1).await);

    // Tap the wake channel to time the WakeUp itself, then hand it to the push-path follower.
    let (fwd_tx, fwd_rx) = tokio::sync::mpsc::channel(64);
    let (wake_times_tx, mut wake_times) = tokio::sync::mpsc::unbounded_channel();
    let mut wakes = std::mem::replace(&mut it.wakes, tokio::sync::mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(wk) = wakes.recv().await {
            let _ = wake_times_tx.send((wk.block_number, Instant::now()));
            if fwd_tx.send(wk).await.is_err() {
                return;
            }
        }
    });
    let mut push = model_agent_poller(
        w.url(),
        w.cluster,
        w.b.1,
        Duration::from_secs(3600),
        Some(fwd_rx),
    )
    .await;
    let mut poll = model_agent_poller(w.url(), w.cluster, w.b.1, POLL, None).await;

    let mut sent: HashMap<u64, Instant> = HashMap::new();
    for i in 0..MESSAGES {
        let call = IMessageFacet::sendCall {
            recipientMemberId: w.b.1,
            envelopeId: alloy_primitives::B256::repeat_byte(i as u8),
            ciphertext: vec![i as u8; 64].into(),
        };
        let t = Instant::now();
        let blk = w
            .rpc
            .transact(w.a.0, Some(w.cluster), &call.abi_encode())
            .await
            .unwrap()
            .block_number;
        sent.insert(blk, t);
        // Spread sends over the poll phase (coprime with the 1 s interval).
        tokio::time::sleep(Duration::from_millis(230 + (i as u64 * 37) % 200)).await;
    }
    let collect = |rx: &mut tokio::sync::mpsc::Receiver<Seen>| {
        let mut out = HashMap::new();
        while let Ok(s) = rx.try_recv() {
            out.entry(s.block).or_insert(s);
        }
        out
    };
    tokio::time::sleep(POLL + Duration::from_millis(500)).await;
    let push_seen = collect(&mut push);
    let poll_seen = collect(&mut poll);
    let mut wake_at = HashMap::new();
    while let Ok((b, t)) = wake_times.try_recv() {
        wake_at.entry(b).or_insert(t);
    }

    let lat = |m: &HashMap<u64, Instant>| -> Vec<Duration> {
        sent.iter()
            .filter_map(|(b, t)| m.get(b).map(|s| s.saturating_duration_since(*t)))
            .collect()
    };
    let wake_lat = lat(&wake_at);
    let push_lat = lat(&push_seen.iter().map(|(b, s)| (*b, s.at)).collect());
    let poll_lat = lat(&poll_seen.iter().map(|(b, s)| (*b, s.at)).collect());
    let via_wake = push_seen.values().filter(|s| s.via == Via::Wake).count();
    assert_eq!(push_lat.len(), MESSAGES, "push path missed messages");
    assert_eq!(poll_lat.len(), MESSAGES, "poll path missed messages");
    assert_eq!(
        via_wake, MESSAGES,
        "every push-path delivery was push-driven"
    );

    println!(
        "MessageSent delivery latency, loopback anvil (automine), {MESSAGES} messages, one run"
    );
    println!("  Indexer head poll 20 ms; latency from eth_sendTransaction (≥ block mined)");
    println!(
        "  {:<44} {:>9} {:>9} {:>9}",
        "path", "p50 ms", "p99 ms", "max ms"
    );
    let row = |name: &str, v: &[Duration]| {
        println!(
            "  {:<44} {:>9.1} {:>9.1} {:>9.1}",
            name,
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(pct(v, 100.0))
        );
    };
    row("push: verified WakeUp out of the intake", &wake_lat);
    row("push: agent follower has the log (wake+poll)", &push_lat);
    row("poll only, 1 s interval (measured)", &poll_lat);
    let scaled: Vec<Duration> = poll_lat.iter().map(|d| *d * 10).collect();
    row("poll only, 10 s default (1 s ×10, ANALYTIC)", &scaled);
    let ratio = ms(pct(&poll_lat, 50.0)) / ms(pct(&push_lat, 50.0)).max(0.001);
    println!(
        "  p50 ratio poll(1 s)/push = {ratio:.1}×; poll(10 s)/push ≈ {:.0}×",
        ratio * 10.0
    );
    let p99 = pct(&push_lat, 99.0);
    println!(
        "  target push p99 < 100 ms: {}",
        if p99 < Duration::from_millis(100) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    it.stop().await;
    ix.shutdown().await;
}
