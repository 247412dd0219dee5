//! Prometheus metrics: one recorder per process, rendered by `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the recorder once; later calls return the same handle. Returns None if another
/// recorder was installed first (then metrics are simply not rendered).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("shipgate_ingest_batch_size".into()), BATCH_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("shipgate_webhook_deliveries_total", "Webhook deliveries received, by event and outcome");
    describe_histogram!("shipgate_webhook_ingest_seconds", "Time from request to durable acknowledgement");
    describe_gauge!("shipgate_queue_depth", "Deliveries in the inbox, by state");
    describe_gauge!("shipgate_queue_oldest_open_age_seconds", "Age of the oldest pending or running delivery");
    describe_counter!("shipgate_deliveries_processed_total", "Processing attempts, by event and result");
    describe_histogram!("shipgate_delivery_processing_seconds", "Time to process one delivery");
    describe_histogram!("shipgate_ingest_batch_size", "Deliveries committed per group commit");
    describe_counter!("shipgate_actions_total", "Actions sent to GitHub (or recorded in dry-run), by kind and result");
    describe_counter!("shipgate_github_calls_total", "GitHub API calls, by route, method and status");
    describe_gauge!("shipgate_github_rate_limit_remaining", "GitHub API calls left in the window, per installation");
}

pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}
