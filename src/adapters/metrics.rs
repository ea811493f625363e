//! Prometheus metrics (the `prometheus-client` crate), served as text at `GET /metrics`.
//!
//! One process-wide registry. Counters and histograms are recorded where the work is done
//! (the request middleware, evaluate, the ledger appender); lag and age gauges are set at
//! scrape time from the running projectors, relay and notary (`http::metrics`). No label
//! ever carries a tenant id, a policy id or anything else a caller chose: routes are the
//! matched path template (`/api/v1/policies/{id}`), never the raw path.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template, or `unmatched`.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluateLabels {
    /// `embedded` or `opa`.
    pub engine: &'static str,
    /// `allowed`, `denied`, `undefined` (no boolean answer), `error` or `timeout`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// A projector's name, or `kafka_relay`.
    pub consumer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KafkaErrorLabels {
    /// `relay` (the producer, also used by the health check) or `admin` (topic creation).
    pub client: &'static str,
    /// librdkafka's error code (`Authentication`, `SSL`, `BrokerTransportFailure`, …).
    pub code: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_seconds: Family<HttpLabels, Histogram>,
    pub evaluate_seconds: Family<EvaluateLabels, Histogram>,
    pub ledger_append_seconds: Histogram,
    pub ledger_append_batch_entries: Histogram,
    pub ledger_append_batch_bytes: Histogram,
    pub opa_query_items: Histogram,
    pub dashboard_evidence_streams: Histogram,
    pub ledger_tiles_hashed: Counter,
    pub rate_limited: Family<LimitLabels, Counter>,
    pub ledger_head: Gauge,
    pub consumer_lag_entries: Family<ConsumerLabels, Gauge>,
    pub consumer_lag_seconds: Family<ConsumerLabels, FloatGauge>,
    pub checkpoint_age_seconds: FloatGauge,
    pub checkpoint_tree_size: Gauge,
    pub kafka_client_errors: Family<KafkaErrorLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("aumos_governance");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by method, route template and status", http_requests.clone());
        let http_request_seconds = Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by method, route template and status",
            Unit::Seconds,
            http_request_seconds.clone(),
        );
        let evaluate_seconds = Family::<EvaluateLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "evaluate_duration",
            "Policy evaluation time in the engine, by engine and outcome",
            Unit::Seconds,
            evaluate_seconds.clone(),
        );
        let ledger_append_seconds = latency_histogram();
        registry.register_with_unit(
            "ledger_append_duration",
            "Time to commit one group-commit batch to the audit ledger",
            Unit::Seconds,
            ledger_append_seconds.clone(),
        );
        let ledger_append_batch_entries = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register("ledger_append_batch_entries", "Entries per group-commit batch", ledger_append_batch_entries.clone());
        // 1 KiB to 16 MiB in doublings: every power of two, so a bound of AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES
        // at one (8 MiB by default) is a bucket edge and the histogram shows whether batches stay within it.
        let ledger_append_batch_bytes = Histogram::new(exponential_buckets(1024.0, 2.0, 15));
        registry.register_with_unit(
            "ledger_append_batch",
            "Bytes of entries per group-commit batch, sized as the entry limit sizes them (what its byte bound counts)",
            Unit::Bytes,
            ledger_append_batch_bytes.clone(),
        );
        let opa_query_items = Histogram::new(exponential_buckets(1.0, 2.0, 6));
        registry.register(
            "opa_query_items",
            "Evaluations per OPA data query of the evaluation batcher (1: an evaluation alone)",
            opa_query_items.clone(),
        );
        let dashboard_evidence_streams = Histogram::new([1.0, 2.0]);
        registry.register(
            "dashboard_evidence_streams",
            "Evidence streams a cold dashboard read at once (two for a large tenant when a second connection was free)",
            dashboard_evidence_streams.clone(),
        );
        let ledger_tiles_hashed = Counter::default();
        registry.register(
            "ledger_tiles_hashed",
            "Tiles of 16 ledger entries the notary read and hashed for a proof (each held afterwards, so hashed once)",
            ledger_tiles_hashed.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register("rate_limited", "Requests refused by a rate limit (429), by limit", rate_limited.clone());
        let ledger_head = Gauge::default();
        registry.register("ledger_head_seq", "The highest ledger seq", ledger_head.clone());
        let consumer_lag_entries = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumer_lag_entries",
            "Ledger entries a projector or the Kafka relay has not yet applied or published",
            consumer_lag_entries.clone(),
        );
        let consumer_lag_seconds = Family::<ConsumerLabels, FloatGauge>::default();
        registry.register_with_unit(
            "consumer_lag",
            "Age of the oldest ledger entry a projector or the Kafka relay has not yet applied or published (0 when caught up)",
            Unit::Seconds,
            consumer_lag_seconds.clone(),
        );
        let checkpoint_age_seconds = FloatGauge::default();
        registry.register_with_unit(
            "checkpoint_age",
            "Time since the newest signed ledger checkpoint (-1 when there is none)",
            Unit::Seconds,
            checkpoint_age_seconds.clone(),
        );
        let checkpoint_tree_size = Gauge::default();
        registry.register("checkpoint_tree_size", "Tree size of the newest signed ledger checkpoint", checkpoint_tree_size.clone());
        let kafka_client_errors = Family::<KafkaErrorLabels, Counter>::default();
        registry.register(
            "kafka_client_errors",
            "Errors a Kafka client reported (a refused password, a broker certificate that does not verify, an unreachable broker), by client and librdkafka error code",
            kafka_client_errors.clone(),
        );
        Self {
            registry,
            http_requests,
            http_request_seconds,
            evaluate_seconds,
            ledger_append_seconds,
            ledger_append_batch_entries,
            ledger_append_batch_bytes,
            opa_query_items,
            dashboard_evidence_streams,
            ledger_tiles_hashed,
            rate_limited,
            ledger_head,
            consumer_lag_entries,
            consumer_lag_seconds,
            checkpoint_age_seconds,
            checkpoint_tree_size,
            kafka_client_errors,
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn evaluation(&self, engine: &'static str, outcome: &'static str, elapsed: Duration) {
        self.evaluate_seconds.get_or_create(&EvaluateLabels { engine, outcome }).observe(elapsed.as_secs_f64());
    }

    pub fn ledger_append(&self, entries: usize, bytes: usize, elapsed: Duration) {
        self.ledger_append_seconds.observe(elapsed.as_secs_f64());
        self.ledger_append_batch_entries.observe(entries as f64);
        self.ledger_append_batch_bytes.observe(bytes as f64);
    }

    pub fn opa_query_items(&self, items: usize) {
        self.opa_query_items.observe(items as f64);
    }

    pub fn dashboard_evidence_streams(&self, streams: usize) {
        self.dashboard_evidence_streams.observe(streams as f64);
    }

    pub fn ledger_tile_hashed(&self) {
        self.ledger_tiles_hashed.inc();
    }

    pub fn refused_by_rate_limit(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabels { limit }).inc();
    }

    pub fn kafka_client_error(&self, client: &'static str, code: &str) {
        self.kafka_client_errors.get_or_create(&KafkaErrorLabels { client, code: code.to_owned() }).inc();
    }

    pub fn consumer_lag(&self, consumer: &str, entries: i64, seconds: f64) {
        let labels = ConsumerLabels { consumer: consumer.to_owned() };
        self.consumer_lag_entries.get_or_create(&labels).set(entries);
        self.consumer_lag_seconds.get_or_create(&labels).set(seconds);
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_family_with_its_unit() {
        let m = Metrics::new();
        m.http_request("GET", "/api/v1/policies/{id}", 200, Duration::from_millis(3));
        m.evaluation("embedded", "allowed", Duration::from_millis(1));
        m.ledger_append(3, 5000, Duration::from_millis(2));
        m.refused_by_rate_limit("evaluate");
        m.consumer_lag("policies", 2, 0.5);
        m.kafka_client_error("relay", "Authentication");
        let text = m.render();
        for needle in [
            "aumos_governance_http_requests_total{method=\"GET\",route=\"/api/v1/policies/{id}\",status=\"200\"} 1",
            "aumos_governance_evaluate_duration_seconds_count{engine=\"embedded\",outcome=\"allowed\"} 1",
            "aumos_governance_ledger_append_batch_entries_sum 3.0",
            "aumos_governance_ledger_append_batch_bytes_sum 5000.0",
            "aumos_governance_rate_limited_total{limit=\"evaluate\"} 1",
            "aumos_governance_consumer_lag_entries{consumer=\"policies\"} 2",
            "aumos_governance_consumer_lag_seconds{consumer=\"policies\"} 0.5",
            "# TYPE aumos_governance_checkpoint_age_seconds gauge",
            "aumos_governance_kafka_client_errors_total{client=\"relay\",code=\"Authentication\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
