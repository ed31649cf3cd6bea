//! Prometheus metrics of the gateway and how a request is recorded (the
//! front layer, [`crate::front`], calls [`Metrics::record`]).
//!
//! Owns: the registry; requests by route, method and status; latency
//! histograms by route; live WebSocket clients; waiting-room length as last
//! seen; payment outcomes; cluster submits answered with and without a log
//! write; connections served, waiting, refused and closed by the gateway
//! (by [`CLOSE_REASONS`]); the process's own `process_*` series. Must not: label by anything a client controls
//! freely (raw paths, ids, methods): routes are axum's matched patterns (or
//! `unmatched`), methods one of [`METHOD_LABELS`] (or `other`), statuses
//! the three digits a handler chose, so label cardinality is bounded by the
//! route table.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why the gateway closed a connection (`gateway_connections_closed_total`):
/// `idle` (no request for `keep_alive_idle_ms`), `fairness` (asked to close
/// after its request because others waited at `connections_max`), `forced`
/// (dropped: its graceful close outlasted the close grace).
pub const CLOSE_REASONS: [&str; 3] = ["idle", "fairness", "forced"];

/// Event ids kept as waiting-room gauge labels; beyond this the gauge is not
/// updated for new events (bounded cardinality).
const QUEUE_GAUGE_EVENTS_MAX: usize = 1_000;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub ws_clients: IntGauge,
    pub queue_waiting: IntGaugeVec,
    pub payments: IntCounterVec,
    pub notifications_sent: IntGauge,
    /// Notification rounds that stopped at a message their sink refused.
    pub notification_failures: prometheus::IntCounter,
    /// Notifications acknowledged without a recipient (no address).
    pub notifications_undeliverable: prometheus::IntCounter,
    /// Connections closed at accept because their address had
    /// `connections_per_address_max` open.
    pub connections_refused: prometheus::IntCounter,
    /// Connections holding one of the `connections_max` serving slots.
    pub connections_open: IntGauge,
    /// Connections accepted past `connections_max`, waiting for a slot.
    pub connections_waiting: IntGauge,
    /// Connections the gateway closed, by reason (one of [`CLOSE_REASONS`]).
    pub connections_closed: IntCounterVec,
    /// Commands submitted to the cluster, by how they were answered: `log`
    /// (proposed and applied) or `without_log_write` (a refusal the leader
    /// proved current from its applied state; first sends only).
    pub cluster_submits: IntCounterVec,
    /// Event ids that have a waiting-room gauge, to bound its cardinality.
    queue_events: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "method"],
        )
        .expect("metric definition");
        let ws_clients = IntGauge::new(
            "gateway_websocket_clients",
            "Live seat-map WebSocket clients connected",
        )
        .expect("metric definition");
        let queue_waiting = IntGaugeVec::new(
            Opts::new(
                "gateway_waiting_room_fans",
                "Fans waiting in a waiting room, as last read by this gateway",
            ),
            &["event"],
        )
        .expect("metric definition");
        let payments = IntCounterVec::new(
            Opts::new("gateway_payments_total", "Checkout outcomes by result"),
            &["result"],
        )
        .expect("metric definition");
        let notifications_sent = IntGauge::new(
            "gateway_notifications_sent",
            "Outbox messages written to the sink by this gateway",
        )
        .expect("metric definition");
        let notification_failures = prometheus::IntCounter::new(
            "gateway_notification_failures_total",
            "Notification rounds that stopped at a message the sink refused (retried with backoff)",
        )
        .expect("metric definition");
        let notifications_undeliverable = prometheus::IntCounter::new(
            "gateway_notifications_undeliverable_total",
            "Notifications acknowledged unsent: the holder is no e-mail address and no default_to is set",
        )
        .expect("metric definition");
        let cluster_submits = IntCounterVec::new(
            Opts::new(
                "gateway_cluster_submits_total",
                "Commands submitted to the cluster, by answer path (log, without_log_write)",
            ),
            &["answered"],
        )
        .expect("metric definition");
        let connections_refused = prometheus::IntCounter::new(
            "gateway_connections_refused_total",
            "Connections closed at accept: their address was at its connection cap",
        )
        .expect("metric definition");
        let connections_open = IntGauge::new(
            "gateway_connections_open",
            "Connections holding a serving slot (at most connections_max)",
        )
        .expect("metric definition");
        let connections_waiting = IntGauge::new(
            "gateway_connections_waiting",
            "Connections accepted past connections_max, waiting for a slot",
        )
        .expect("metric definition");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "gateway_connections_closed_total",
                "Connections the gateway closed, by reason (idle, fairness, forced)",
            ),
            &["reason"],
        )
        .expect("metric definition");
        for reason in CLOSE_REASONS {
            // Shown at 0 from the start, so a rate() has a first sample.
            connections_closed.with_label_values(&[reason]);
        }
        for c in [
            Box::new(connections_refused.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_open.clone()),
            Box::new(connections_waiting.clone()),
            Box::new(connections_closed.clone()),
            Box::new(requests.clone()),
            Box::new(cluster_submits.clone()),
            Box::new(latency.clone()),
            Box::new(ws_clients.clone()),
            Box::new(queue_waiting.clone()),
            Box::new(payments.clone()),
            Box::new(notifications_sent.clone()),
            Box::new(notification_failures.clone()),
            Box::new(notifications_undeliverable.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        // The standard `process_*` series (CPU seconds, resident memory, open
        // descriptors), as etcd and most exporters have them. Its CPU counter
        // counts whole seconds, too coarse for the bench's cost per request:
        // `render` adds `gateway_process_cpu_ms_total`.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric names");
        Metrics {
            registry,
            requests,
            latency,
            ws_clients,
            queue_waiting,
            payments,
            notifications_sent,
            notification_failures,
            notifications_undeliverable,
            connections_refused,
            connections_open,
            connections_waiting,
            connections_closed,
            cluster_submits,
            queue_events: Default::default(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding our own well-formed metrics into a Vec cannot fail.
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        // CPU time in ms, read at scrape time: the bench divides it by the
        // requests served for a cost per request, which a busy machine
        // distorts less than it distorts latency.
        let cpu_ms = cpu_time::ProcessTime::try_now().map_or(0, |t| t.as_duration().as_millis());
        text.push_str(&format!(
            "# HELP gateway_process_cpu_ms_total CPU time this process used since start (user + system), in ms.\n\
             # TYPE gateway_process_cpu_ms_total counter\ngateway_process_cpu_ms_total {cpu_ms}\n"
        ));
        text
    }

    /// Records the waiting-room length of an event.
    pub fn set_queue_waiting(&self, event_id: &str, waiting: u64) {
        let mut known = self.queue_events.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(event_id) {
            if known.len() >= QUEUE_GAUGE_EVENTS_MAX {
                return;
            }
            known.insert(event_id.to_string());
        }
        self.queue_waiting
            .with_label_values(&[event_id])
            .set(waiting as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The method labels; any other method (HTTP allows any token) is `other`.
pub const METHOD_LABELS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    METHOD_LABELS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

impl Metrics {
    /// Counts and times one answered request under its matched route (or
    /// `unmatched`) and method label; called by [`crate::front`] for every
    /// request.
    pub fn record(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }
}
