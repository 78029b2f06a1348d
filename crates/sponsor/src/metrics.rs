//! The sponsor's `/metrics`: decisions by method and reason, request errors by kind, and a
//! histogram of decision latency, kept in prometheus-client's own types (OpenMetrics text).
//! Label values are the service's fixed method, reason and kind names, so the series are bounded.

use std::time::Duration;

use attestmesh_metrics::prometheus_client;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Histogram bucket upper bounds, seconds: a warm decision is microseconds, a cold one is a few
/// RPC round trips.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

type Pair = [(&'static str, &'static str); 2];

/// All series of the service, registered once.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Pair, Counter>,
    errors: Family<Pair, Counter>,
    latency: Histogram,
    spend_gwei: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<Pair, Counter>::default();
        let errors = Family::<Pair, Counter>::default();
        let latency = Histogram::new(LATENCY_BUCKETS);
        let spend_gwei = Counter::default();
        registry.register(
            "attestmesh_sponsor_decisions",
            "Sponsorship decisions by method and reason.",
            decisions.clone(),
        );
        registry.register(
            "attestmesh_sponsor_request_errors",
            "Requests refused before or instead of a decision.",
            errors.clone(),
        );
        registry.register(
            "attestmesh_sponsor_decision_seconds",
            "Policy decision latency.",
            latency.clone(),
        );
        registry.register(
            "attestmesh_sponsor_charged_gwei",
            "Maximum cost of the operations signed and charged to the daily budgets (what the \
             EntryPoint may take from the deposit), in gwei.",
            spend_gwei.clone(),
        );
        Self {
            registry,
            decisions,
            errors,
            latency,
            spend_gwei,
        }
    }
}

impl Metrics {
    /// Counts one decision of `method` (`pm_getPaymasterStubData`, `pm_getPaymasterData`,
    /// `webhook`) with `reason` (`sponsored` or a deny reason) and its latency.
    pub fn decision(&self, method: &'static str, reason: &'static str, took: Duration) {
        self.decisions
            .get_or_create(&[("method", method), ("reason", reason)])
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Adds an operation's charged maximum cost (wei) to the spend counter, in whole gwei
    /// rounded up, so a small operation is never counted as free.
    pub fn charged(&self, wei: u128) {
        if wei > 0 {
            let gwei = u64::try_from(wei.div_ceil(1_000_000_000)).unwrap_or(u64::MAX);
            self.spend_gwei.inc_by(gwei);
        }
    }

    /// Counts a failed request of `endpoint` with error `kind` (e.g. `invalid_params`).
    pub fn error(&self, endpoint: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&[("endpoint", endpoint), ("kind", kind)])
            .inc();
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
