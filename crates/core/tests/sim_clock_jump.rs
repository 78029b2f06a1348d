//! Clock jumps (DESIGN §7, issue 11 hole 7): a node whose wall clock jumps forward by hours and
//! back must be live again at every peer within a bounded number of intervals — also after it
//! restarts without saved state — and no peer may ever accept a replayed heartbeat.
#![allow(clippy::unwrap_used)]

mod sim;

use std::collections::{HashMap, HashSet};

use attestmesh_core::heartbeat;
use sim::Sim;

const I: u64 = 2_000;
const T0: u64 = 1_700_000_000_000;
const HOURS_3: i64 = 3 * 3_600_000;

/// Every peer of `victim` counts it as live.
fn live_everywhere(s: &Sim, victim: usize) -> bool {
    let id = s.nodes[victim].ident.id;
    (0..s.nodes.len())
        .filter(|&j| j != victim)
        .all(|j| s.nodes[j].liveness.is_live(&id))
}

/// How many packets of `from` each node has accepted so far.
fn accepted_counts(s: &Sim, from: usize) -> Vec<usize> {
    (0..s.nodes.len())
        .map(|j| s.accepted_by(j).iter().filter(|(f, _)| *f == from).count())
        .collect()
}

/// Every peer of `victim` accepted a heartbeat of it after `before` was taken, and counts it live.
fn accepted_again_everywhere(s: &Sim, victim: usize, before: &[usize]) -> bool {
    let now = accepted_counts(s, victim);
    live_everywhere(s, victim)
        && (0..s.nodes.len())
            .filter(|&j| j != victim)
            .all(|j| now[j] > before[j])
}

/// A converged `n`-node cluster with fine-grained polling.
fn converged(n: usize, seed: u64) -> Sim {
    let mut s = Sim::new(n, seed, I, T0);
    s.start_polling(100);
    s.run_until_pred(T0 + 10 * I, 10, |s| s.cluster_converged())
        .expect("converges before any clock jump");
    s
}

/// Runs until every peer accepted a new heartbeat of `victim` and counts it live; returns how
/// long that took. `what` names the situation in the failure message.
fn time_until_accepted_again(s: &mut Sim, victim: usize, what: &str) -> u64 {
    let from = s.now;
    let before = accepted_counts(s, victim);
    let t = s
        .run_until_pred(from + 20 * I, 10, |s| {
            accepted_again_everywhere(s, victim, &before)
        })
        .unwrap_or_else(|| panic!("{what}: not accepted again at every peer within 20 intervals"));
    t - from
}

/// No receiver accepted the same packet twice, and per (receiver, sender) the accepted `seq`s
/// strictly increase: nothing accepted was a replay. (Receivers never restart in these tests.)
fn no_replay_accepted(s: &Sim) {
    for to in 0..s.nodes.len() {
        let mut seen = HashSet::new();
        let mut last: HashMap<usize, u64> = HashMap::new();
        for (from, bytes) in s.accepted_by(to) {
            assert!(
                seen.insert(bytes),
                "node {to} accepted a packet of {from} twice"
            );
            let f = heartbeat::decode(&bytes).unwrap().fields;
            if let Some(prev) = last.insert(from, f.seq) {
                assert!(
                    f.seq > prev,
                    "node {to} accepted seq {} of {from} after {prev}",
                    f.seq
                );
            }
        }
    }
}

#[test]
fn attack_sender_clock_jump_forward_and_back_does_not_lock_it_out() {
    let mut s = converged(5, 21);
    s.run_until(s.now + 3 * I);
    let victim = 1;

    // Forward by three hours: its heartbeats are far outside every peer's freshness window, so
    // peers time it out (correctly: its clock is wrong).
    s.nodes[victim].clock_offset_ms = HOURS_3;
    s.run_until(s.now + 6 * I);
    assert!(
        (0..5)
            .filter(|&j| j != victim)
            .all(|j| !s.nodes[j].liveness.is_live(&s.nodes[victim].ident.id)),
        "a node three hours ahead is not live anywhere"
    );

    // Back to the right time: live again everywhere within 2 intervals (+ delivery delay).
    s.nodes[victim].clock_offset_ms = 0;
    let took = time_until_accepted_again(&mut s, victim, "clock back");
    assert!(took <= 2 * I + 100, "took {took} ms");

    // What it accepted meanwhile must not strand it: it now restarts without saved state (its
    // `seq` starts over from its clock) and must again be live everywhere within 2 intervals.
    s.run_until(s.now + 3 * I);
    s.kill(victim);
    s.restart(victim, 100);
    let took = time_until_accepted_again(
        &mut s,
        victim,
        "a restart after the jump must not be refused as a replay for hours",
    );
    assert!(took <= 2 * I + 200, "took {took} ms");
    s.run_until_pred(s.now + 10 * I, 10, |s| s.cluster_converged())
        .expect("the whole cluster re-converges");

    // Every heartbeat any peer accepted carried a seq bound to its own timestamp.
    for to in 0..5 {
        for (from, bytes) in s.accepted_by(to) {
            let f = heartbeat::decode(&bytes).unwrap().fields;
            assert!(
                f.seq >= f.unix_ms && f.seq - f.unix_ms <= heartbeat::MAX_SEQ_LEAD_MS,
                "node {to} accepted seq {} with timestamp {} from {from}",
                f.seq,
                f.unix_ms
            );
        }
    }
    no_replay_accepted(&s);

    // Replaying everything the victim ever sent (the far-future packets included) to every peer
    // is refused.
    for pkt in s.sent_by(victim) {
        for j in 0..5 {
            if j == victim {
                continue;
            }
            let ip = s.nodes[victim].ident.info.mesh_ip;
            assert!(
                s.inject(j, ip, &pkt).is_err(),
                "replay accepted by node {j}"
            );
        }
    }
}

#[test]
fn sender_restart_while_clock_is_ahead_then_corrected_recovers() {
    let mut s = converged(4, 22);
    let victim = 2;
    // The clock jumps ahead, the node crashes and restarts with the wrong clock, then the clock
    // is corrected while it keeps running.
    s.nodes[victim].clock_offset_ms = HOURS_3;
    s.run_until(s.now + 2 * I);
    s.kill(victim);
    s.restart(victim, 50);
    s.run_until(s.now + 6 * I);
    s.nodes[victim].clock_offset_ms = 0;
    let took = time_until_accepted_again(&mut s, victim, "clock corrected");
    assert!(took <= 2 * I + 100, "took {took} ms");
    no_replay_accepted(&s);
}

#[test]
fn receiver_clock_jump_forward_and_back_recovers() {
    let mut s = converged(4, 23);
    let rx = 0;
    s.nodes[rx].clock_offset_ms = HOURS_3;
    s.run_until(s.now + 6 * I);
    assert!(
        s.nodes[rx].liveness.live_peers().is_empty(),
        "a receiver three hours ahead drops everyone as stale"
    );
    s.nodes[rx].clock_offset_ms = 0;
    let back = s.now;
    let t = s
        .run_until_pred(back + 20 * I, 10, |s| s.cluster_converged())
        .expect("re-converges once the receiver's clock is right");
    assert!(t - back <= 3 * I, "took {} ms", t - back);
    no_replay_accepted(&s);
}
