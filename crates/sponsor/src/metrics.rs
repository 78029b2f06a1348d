//! Prometheus text exposition for the few series an operator watches: decisions by method and
//! reason, request errors by kind, and a histogram of decision latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds, seconds: a warm decision is microseconds, a cold one is a few
/// RPC round trips.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// All counters of the service.
#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Metrics {
    /// Counts one decision of `method` (`pm_getPaymasterStubData`, `pm_getPaymasterData`,
    /// `webhook`) with `reason` (`sponsored` or a deny reason) and its latency.
    pub fn decision(&self, method: &'static str, reason: &'static str, took: Duration) {
        *self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method, reason))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts a failed request of `endpoint` with error `kind` (e.g. `invalid_params`).
    pub fn error(&self, endpoint: &'static str, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint, kind))
            .or_default() += 1;
    }

    /// Renders the text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP attestmesh_sponsor_decisions_total Sponsorship decisions by method and reason.\n");
        s.push_str("# TYPE attestmesh_sponsor_decisions_total counter\n");
        for ((m, r), n) in self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "attestmesh_sponsor_decisions_total{{method=\"{m}\",reason=\"{r}\"}} {n}"
            );
        }
        s.push_str("# HELP attestmesh_sponsor_request_errors_total Requests refused before or instead of a decision.\n");
        s.push_str("# TYPE attestmesh_sponsor_request_errors_total counter\n");
        for ((e, k), n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                s,
                "attestmesh_sponsor_request_errors_total{{endpoint=\"{e}\",kind=\"{k}\"}} {n}"
            );
        }
        s.push_str("# HELP attestmesh_sponsor_decision_seconds Policy decision latency.\n");
        s.push_str("# TYPE attestmesh_sponsor_decision_seconds histogram\n");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "attestmesh_sponsor_decision_seconds_bucket{{le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "attestmesh_sponsor_decision_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(s, "attestmesh_sponsor_decision_seconds_sum {sum}");
        let _ = writeln!(s, "attestmesh_sponsor_decision_seconds_count {count}");
        s
    }
}
