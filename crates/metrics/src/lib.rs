//! The `/metrics` exposition every AttestMesh service serves, in the OpenMetrics text format as
//! `prometheus-client` writes it.
//!
//! The agent and the Indexer keep their state in atomics and watch channels that the rest of the
//! code already updates; a [`Scrape`] reads them when Prometheus asks and hands the values to
//! `prometheus-client` as one collector, so the format (escaping, `_total` suffixes, `# EOF`) is
//! the library's, never ours. Label sets are built from current state only (the members of the
//! cluster, the reasons a service knows), so cardinality stays bounded.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The library itself, for services that keep native metric types (the sponsor's histogram):
/// one version across the workspace.
pub use prometheus_client;

/// What to put in the `Content-Type` of a `/metrics` answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample's value. Counters are whole numbers; gauges may be fractional (ages in seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// One series' labels, `(name, value)` pairs in order.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// The values of one scrape, in the order they are added.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, v: impl Into<Value>) {
        self.gauges(name, help, vec![(Labels::new(), v.into())]);
    }

    /// A gauge family: one sample per label set. An empty family still gets its `# TYPE` line,
    /// so a dashboard query names a metric that exists before the first peer does.
    pub fn gauges(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, Value)>,
    ) {
        self.push(name, help, MetricType::Gauge, samples);
    }

    /// A counter without labels. `name` is the exported name, ending in `_total`.
    pub fn counter(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.counters(name, help, vec![(Labels::new(), Value::Int(v))]);
    }

    /// A counter family; `name` ends in `_total` as exported.
    pub fn counters(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, Value)>,
    ) {
        self.push(name, help, MetricType::Counter, samples);
    }

    fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        samples: Vec<(Labels, Value)>,
    ) {
        // prometheus-client writes label values as given; OpenMetrics wants `\\`, `\"` and `\n`
        // escaped (a value from the chain or a peer must not break the exposition).
        let samples = samples
            .into_iter()
            .map(|(labels, v)| {
                let labels = labels
                    .into_iter()
                    .map(|(k, val)| (k, escape_label_value(&val)))
                    .collect();
                (labels, v)
            })
            .collect();
        self.families.push(Family {
            name,
            help,
            kind,
            samples,
        });
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a value we
        // passed (e.g. a counter name without `_total`), answered with what was written.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            // prometheus-client appends `_total` to a counter's samples itself.
            let base = match f.kind {
                MetricType::Counter => f.name.strip_suffix("_total").unwrap_or(f.name),
                _ => f.name,
            };
            let mut metric = encoder.encode_descriptor(base, f.help, None, f.kind)?;
            match f.samples.as_slice() {
                [(labels, v)] if labels.is_empty() => encode_value(f.kind, *v, metric)?,
                samples => {
                    for (labels, v) in samples {
                        encode_value(f.kind, *v, metric.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn encode_value(
    kind: MetricType,
    v: Value,
    series: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match (kind, v) {
        (MetricType::Counter, Value::Int(n)) => ConstCounter::new(n).encode(series),
        (MetricType::Counter, Value::Float(x)) => ConstCounter::new(x).encode(series),
        (_, Value::Int(n)) => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(series),
        (_, Value::Float(x)) => ConstGauge::new(x).encode(series),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_labels_totals_and_eof() {
        let mut s = Scrape::new();
        s.gauge("am_healthy", "1 when healthy.", true);
        s.counter("am_sent_total", "Sent.", 7);
        s.gauges(
            "am_peer_age_seconds",
            "Age.",
            vec![(vec![("peer", "ab\"c".into())], Value::Float(1.5))],
        );
        s.gauges("am_empty", "No series yet.", vec![]);
        let out = s.render();
        assert!(out.contains("# TYPE am_healthy gauge\n"), "{out}");
        assert!(out.contains("am_healthy 1\n"), "{out}");
        assert!(out.contains("# TYPE am_sent counter\n"), "{out}");
        assert!(out.contains("am_sent_total 7\n"), "{out}");
        assert!(
            out.contains("am_peer_age_seconds{peer=\"ab\\\"c\"} 1.5\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE am_empty gauge\n"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }
}
