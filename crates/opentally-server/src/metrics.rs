//! Prometheus metrics of the collector. Labels never carry IPs, keys or install ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub events_accepted: Counter,
    pub events_duplicate: Counter,
    pub events_rejected: Family<ReasonLabels, Counter>,
    /// Install erasures made durable.
    pub erasures: Counter,
    pub fsync_seconds: Histogram,
    pub group_requests: Histogram,
    pub log_bytes: Counter,
    pub queue_depth: Gauge,
    /// Events loaded from the log but not yet sealed into parts.
    pub store_tail_events: Gauge,
    /// Events acknowledged but not yet read from the log by the store's loader.
    pub store_unloaded_events: Gauge,
    pub store_parts: Gauge,
    pub store_part_bytes: Gauge,
}

impl Metrics {
    /// Counts one answered request of `route`.
    pub fn count_request(&self, route: &'static str, status: axum::http::StatusCode) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("opentally");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Events stored (durable)",
            events_accepted.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Events acknowledged but not stored again: their messageId was seen in the dedup window",
            events_duplicate.clone(),
        );
        let events_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "events_rejected",
            "Events rejected, by reason",
            events_rejected.clone(),
        );
        let fsync_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "log_fsync_seconds",
            "Time to append and sync one group",
            fsync_seconds.clone(),
        );
        let group_requests = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "log_group_requests",
            "Requests committed by one sync",
            group_requests.clone(),
        );
        let log_bytes = Counter::default();
        registry.register(
            "log_bytes",
            "Bytes appended to the durable log",
            log_bytes.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Requests waiting for the log writer",
            queue_depth.clone(),
        );
        let store_tail_events = Gauge::default();
        registry.register(
            "store_tail_events",
            "Events loaded from the log but not yet sealed into parts",
            store_tail_events.clone(),
        );
        let store_unloaded_events = Gauge::default();
        registry.register(
            "store_unloaded_events",
            "Events acknowledged but not yet read from the log by the store's loader",
            store_unloaded_events.clone(),
        );
        let erasures = Counter::default();
        registry.register(
            "erasures",
            "Install erasures made durable in the log",
            erasures.clone(),
        );
        let store_parts = Gauge::default();
        registry.register("store_parts", "Live Parquet parts", store_parts.clone());
        let store_part_bytes = Gauge::default();
        registry.register(
            "store_part_bytes",
            "Bytes of the live Parquet parts",
            store_part_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            events_accepted,
            events_duplicate,
            events_rejected,
            erasures,
            fsync_seconds,
            group_requests,
            log_bytes,
            queue_depth,
            store_tail_events,
            store_unloaded_events,
            store_parts,
            store_part_bytes,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
