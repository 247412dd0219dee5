//! Prometheus metrics: one recorder per process, rendered by `GET /metrics` (`docs/metrics.md`
//! lists every series, its labels and when it appears).
//!
//! Two sources make up the page:
//! * the `metrics` recorder: operational counters, gauges and histograms, recorded where they
//!   happen. A series of the recorder is rendered only once it has been touched, so [`install`]
//!   touches at zero every series a dashboard or an alerting rule (`deploy/`) reads and whose
//!   labels are known before it happens: a rule on "audit verify failures" can be written, and
//!   tested, before the first one.
//! * the team's figures per repository ([`set_figures`]), kept here and rendered by hand: they
//!   must be replaced as a whole and dropped with their repository ([`forget_repository`]),
//!   which the recorder cannot do, and a figure with no data is left out rather than shown as
//!   a misleading 0.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::figures::{Durations, Figures};

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
                .set_buckets_for_metric(Matcher::Full("shipgate_completion_batch_size".into()), BATCH_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            touch();
            Some(handle)
        })
        .as_ref()
}

/// Folds the histograms' samples into their buckets every `every` until `stop`. The recorder
/// keeps each sample until then (or until `/metrics` is read): without this, a process that
/// nobody scrapes grows by ~16 bytes a sample, over 500 MB a day at 200 deliveries a second (two samples each).
pub async fn upkeep_loop(every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(Some(handle)) = HANDLE.get() {
            handle.run_upkeep();
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("shipgate_build_info", "Always 1; the version of the running App in its label");
    describe_gauge!("shipgate_start_time_seconds", "When this process started (Unix seconds)");
    describe_gauge!("shipgate_ready", "1 when /readyz answers 200 (database reachable, migrations applied), else 0");
    describe_counter!("shipgate_webhook_deliveries_total", "Webhook deliveries received, by event and outcome");
    describe_histogram!("shipgate_webhook_ingest_seconds", "Time from request to durable acknowledgement");
    describe_gauge!("shipgate_queue_depth", "Rows in the inbox (deliveries) or the outbox (actions), by state");
    describe_gauge!(
        "shipgate_queue_oldest_open_age_seconds",
        "Age of the oldest pending or running row of the queue; 0 when none"
    );
    describe_counter!("shipgate_deliveries_processed_total", "Processing attempts, by event and result");
    describe_histogram!("shipgate_delivery_processing_seconds", "Time to process one delivery");
    describe_histogram!("shipgate_ingest_batch_size", "Deliveries committed per group commit");
    describe_histogram!("shipgate_completion_batch_size", "Completions committed per group commit");
    describe_counter!("shipgate_coalesced_evaluations_total", "Coalesced re-evaluations fired");
    describe_counter!("shipgate_actions_total", "Actions sent to GitHub (or recorded in dry-run), by kind and result");
    describe_counter!("shipgate_github_calls_total", "GitHub API calls, by route, method and status");
    describe_gauge!(
        "shipgate_github_rate_limit_remaining",
        "GitHub API calls left in the window, per installation (\"app\" for the App's own calls), as of the last call"
    );
    describe_counter!("shipgate_alerts_received_total", "Alertmanager alerts received, by outcome");
    describe_counter!("shipgate_http_connections_cut_total", "Connections cut by the server, by reason");
    describe_gauge!("shipgate_intake_unverified_bytes", "Webhook body bytes held before their signature is checked");
    describe_gauge!(
        "shipgate_audit_log_intact",
        "This process's last verification of the audit log: 1 intact, 0 broken, -1 could not run"
    );
    describe_gauge!("shipgate_audit_log_verified_timestamp_seconds", "When this process last verified the audit log");
    describe_counter!(
        "shipgate_audit_verify_failures_total",
        "Verifications of the audit log that found it broken (reason=broken) or could not run (reason=error)"
    );
    describe_counter!("shipgate_audit_anchor_withheld_total", "Audit anchors not published");
}

/// Refusal outcomes of `POST /webhook` (counted under `event="unknown"`: nothing of a refused
/// delivery is trusted).
pub const WEBHOOK_REFUSALS: &[&str] =
    &["bad_request", "bad_signature", "unsupported_media_type", "too_large", "body_timeout", "busy", "db_error"];

/// Touches at zero the series whose labels are known before anything happens. Series labelled by
/// what happened (the event of a delivery, the route of a GitHub call, an installation) appear
/// with the first one.
fn touch() {
    use metrics::{counter, gauge, histogram};
    gauge!("shipgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64());
    gauge!("shipgate_start_time_seconds").set(now.unwrap_or(0.0));
    // Until the first scrape says otherwise (every scrape sets it).
    gauge!("shipgate_ready").set(0.0);
    for outcome in WEBHOOK_REFUSALS {
        counter!("shipgate_webhook_deliveries_total", "event" => "unknown", "outcome" => *outcome).increment(0);
    }
    for queue in ["inbox", "outbox"] {
        for state in ["pending", "running", "parked"] {
            gauge!("shipgate_queue_depth", "queue" => queue, "state" => state).set(0.0);
        }
        gauge!("shipgate_queue_oldest_open_age_seconds", "queue" => queue).set(0.0);
    }
    for name in [
        "shipgate_webhook_ingest_seconds",
        "shipgate_delivery_processing_seconds",
        "shipgate_ingest_batch_size",
        "shipgate_completion_batch_size",
    ] {
        // Registering a histogram renders it with empty buckets.
        let _ = histogram!(name);
    }
    counter!("shipgate_coalesced_evaluations_total").increment(0);
    for outcome in ["stored", "duplicate", "skipped"] {
        counter!("shipgate_alerts_received_total", "outcome" => outcome).increment(0);
    }
    for reason in ["header_timeout", "idle_timeout", "send_timeout", "error"] {
        counter!("shipgate_http_connections_cut_total", "reason" => reason).increment(0);
    }
    gauge!("shipgate_intake_unverified_bytes").set(0.0);
    for reason in ["broken", "error"] {
        counter!("shipgate_audit_verify_failures_total", "reason" => reason).increment(0);
    }
    counter!("shipgate_audit_anchor_withheld_total").increment(0);
}

/// The page `GET /metrics` serves: the recorder's series, then the figures.
pub fn render() -> String {
    let mut out = install().map(|h| h.render()).unwrap_or_default();
    out.push_str(&render_figures(&figures().lock().unwrap_or_else(|p| p.into_inner())));
    out
}

// ---------------------------------------------------------------------------------------------
// The team's figures, per repository.

/// Environments shown per repository; the others (preview environments named after branches,
/// say) are summed under `environment="(other)"`, so the label stays bounded.
pub const MAX_ENVIRONMENTS: usize = 10;

/// The figure families: name and help text, in the order they are rendered.
const FAMILIES: &[(&str, &str)] = &[
    ("shipgate_figure_window_seconds", "Length of the trailing window the figures are of"),
    ("shipgate_figure_window_end_timestamp_seconds", "End of the window the figures are of (when they were computed)"),
    ("shipgate_figure_deployments", "Deployments that finished in the window, rollbacks included"),
    ("shipgate_figure_deployments_succeeded", "Of those, the successful ones"),
    ("shipgate_figure_deployment_success_ratio", "Succeeded over finished deployments; absent without deployments"),
    ("shipgate_figure_time_to_deploy_seconds", "Request approved to its deployment's success; absent without any"),
    ("shipgate_figure_ci_green_ratio", "Green runs over completed runs on incident branches; absent without runs"),
    ("shipgate_figure_incidents", "Incidents opened in the window, by kind"),
    ("shipgate_figure_incidents_open", "Incidents still open at the window's end, by kind"),
    ("shipgate_figure_time_to_recovery_seconds", "Failure start to recovery of the incidents recovered in the window"),
    ("shipgate_figure_flaky_reruns", "Jobs that failed and then passed on a re-run of the same commit"),
    ("shipgate_figure_requests_open", "Open deployment requests"),
    ("shipgate_figure_requests_stale", "Open deployment requests not updated for 7 days"),
    ("shipgate_figure_security_critical_open", "Critical security incidents open at the window's end"),
    (
        "shipgate_figure_uptime_ratio",
        "Share of the window without a firing slo: availability alert; absent without one",
    ),
    ("shipgate_figure_dora_deployment_frequency_per_day", "Successful production deployments per day"),
    ("shipgate_figure_dora_lead_time_seconds", "First commit of the linked PRs to successful production deployment"),
    (
        "shipgate_figure_dora_change_failure_ratio",
        "Production deployments that failed or were followed by a failure within 24 h; absent without deployments",
    ),
    ("shipgate_figure_dora_time_to_restore_seconds", "Failure start to recovery, by incident kind (ci, alert)"),
];

/// The names of the figure families (what a dashboard may use once figures are set).
pub fn figure_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(name, _)| *name)
}

struct Sample {
    family: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
}

fn figures() -> &'static Mutex<BTreeMap<String, Vec<Sample>>> {
    static FIGURES: OnceLock<Mutex<BTreeMap<String, Vec<Sample>>>> = OnceLock::new();
    FIGURES.get_or_init(Default::default)
}

/// Sets the figures of `repository` (`owner/name`), replacing all its earlier ones: a figure
/// that has no data now (a ratio without anything to divide, a duration without a sample) is
/// no longer rendered, rather than kept at its old value or shown as 0.
pub fn set_figures(repository: &str, figures: &Figures) {
    let samples = samples_of(figures);
    self::figures().lock().unwrap_or_else(|p| p.into_inner()).insert(repository.to_string(), samples);
}

/// Stops rendering the figures of `repository` (uninstalled, or no longer reported on).
pub fn forget_repository(repository: &str) {
    figures().lock().unwrap_or_else(|p| p.into_inner()).remove(repository);
}

fn samples_of(f: &Figures) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut put = |family: &'static str, labels: Vec<(&'static str, String)>, value: Option<f64>| {
        // None (no data) and anything that is not a number are left out, never rendered as 0.
        if let Some(value) = value.filter(|v| v.is_finite()) {
            out.push(Sample { family, labels, value });
        }
    };
    let count = |n: usize| Some(n as f64);
    put("shipgate_figure_window_seconds", vec![], Some((f.to - f.from) as f64 / 1000.0));
    put("shipgate_figure_window_end_timestamp_seconds", vec![], Some(f.to as f64 / 1000.0));

    // The environments with the most deployments keep their name; the rest are summed.
    let mut envs: Vec<(&String, usize, usize)> =
        f.deployments.iter().map(|(env, d)| (env, d.count, d.succeeded)).collect();
    envs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut shown: Vec<(String, usize, usize)> =
        envs.iter().take(MAX_ENVIRONMENTS).map(|(e, c, s)| (e.to_string(), *c, *s)).collect();
    if envs.len() > MAX_ENVIRONMENTS {
        let rest = &envs[MAX_ENVIRONMENTS..];
        shown.push(("(other)".into(), rest.iter().map(|r| r.1).sum(), rest.iter().map(|r| r.2).sum()));
    }
    for (env, n, ok) in shown {
        let l = || vec![("environment", env.clone())];
        put("shipgate_figure_deployments", l(), count(n));
        put("shipgate_figure_deployments_succeeded", l(), count(ok));
        put("shipgate_figure_deployment_success_ratio", l(), (n > 0).then(|| ok as f64 / n as f64));
    }
    for (stat, v) in stats(&f.time_to_deploy) {
        put("shipgate_figure_time_to_deploy_seconds", vec![("stat", stat.into())], v);
    }
    put("shipgate_figure_ci_green_ratio", vec![], f.ci_green_rate);
    for (kind, i) in &f.incidents {
        let l = || vec![("kind", kind.clone())];
        put("shipgate_figure_incidents", l(), count(i.count));
        put("shipgate_figure_incidents_open", l(), count(i.open));
        for (stat, v) in stats(&i.time_to_recovery) {
            put("shipgate_figure_time_to_recovery_seconds", vec![("kind", kind.clone()), ("stat", stat.into())], v);
        }
    }
    // Per workflow and job in the report; summed here (workflow and job names are not labels).
    put("shipgate_figure_flaky_reruns", vec![], count(f.flaky.values().sum()));
    put("shipgate_figure_requests_open", vec![], count(f.open_requests));
    put("shipgate_figure_requests_stale", vec![], count(f.stale_requests));
    put("shipgate_figure_security_critical_open", vec![], count(f.open_critical_security));
    put("shipgate_figure_uptime_ratio", vec![], f.uptime);
    put("shipgate_figure_dora_deployment_frequency_per_day", vec![], Some(f.dora.deployment_frequency_per_day));
    for (stat, v) in stats(&f.dora.lead_time) {
        put("shipgate_figure_dora_lead_time_seconds", vec![("stat", stat.into())], v);
    }
    put("shipgate_figure_dora_change_failure_ratio", vec![], f.dora.change_failure_rate);
    for (kind, d) in &f.dora.time_to_restore {
        for (stat, v) in stats(d) {
            put("shipgate_figure_dora_time_to_restore_seconds", vec![("kind", kind.clone()), ("stat", stat.into())], v);
        }
    }
    out
}

fn stats(d: &Durations) -> [(&'static str, Option<f64>); 3] {
    [("mean", d.mean_seconds), ("median", d.median_seconds), ("p95", d.p95_seconds)]
}

fn render_figures(by_repo: &BTreeMap<String, Vec<Sample>>) -> String {
    let mut out = String::new();
    for (family, help) in FAMILIES {
        let mut header = false;
        for (repo, samples) in by_repo {
            for s in samples.iter().filter(|s| s.family == *family) {
                if !header {
                    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
                    header = true;
                }
                let _ = write!(out, "{family}{{repository=\"{}\"", escape(repo));
                for (k, v) in &s.labels {
                    let _ = write!(out, ",{k}=\"{}\"", escape(v));
                }
                let _ = writeln!(out, "}} {}", s.value);
            }
        }
        if header {
            out.push('\n');
        }
    }
    out
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::figures::{Dora, EnvironmentDeployments, IncidentFigures};

    fn sample() -> Figures {
        let mut f = Figures { from: 1_795_996_800_000, to: 1_796_601_600_000, ..Figures::default() };
        f.deployments
            .insert("production".into(), EnvironmentDeployments { count: 4, succeeded: 3, success_rate: Some(0.75) });
        f.deployments.insert("staging".into(), EnvironmentDeployments { count: 0, succeeded: 0, success_rate: None });
        f.time_to_deploy = Durations::of(vec![600_000, 1_200_000]);
        f.ci_green_rate = Some(0.5);
        f.incidents
            .insert("ci".into(), IncidentFigures { count: 2, time_to_recovery: Durations::of(vec![300_000]), open: 1 });
        f.incidents.insert("security".into(), IncidentFigures::default());
        f.flaky.insert("build / test".into(), 2);
        f.flaky.insert("build / lint".into(), 1);
        f.open_requests = 3;
        f.stale_requests = 1;
        f.open_critical_security = 0;
        f.uptime = None;
        f.dora = Dora {
            deployment_frequency_per_day: 3.0 / 7.0,
            lead_time: Durations::of(vec![3_600_000]),
            change_failure_rate: Some(1.0 / 3.0),
            time_to_restore: [("ci".to_string(), Durations::default())].into_iter().collect(),
        };
        f
    }

    /// The lines of `render()` about `repo`.
    fn lines_of(repo: &str) -> Vec<String> {
        let needle = format!("{{repository=\"{repo}\"");
        render().lines().filter(|l| l.contains(&needle)).map(str::to_string).collect()
    }

    #[test]
    fn set_figures_renders_every_figure_of_the_repository() {
        install();
        set_figures("acme/render", &sample());
        let r = "repository=\"acme/render\"";
        let want = [
            format!("shipgate_figure_window_seconds{{{r}}} 604800"),
            format!("shipgate_figure_window_end_timestamp_seconds{{{r}}} 1796601600"),
            format!("shipgate_figure_deployments{{{r},environment=\"production\"}} 4"),
            format!("shipgate_figure_deployments{{{r},environment=\"staging\"}} 0"),
            format!("shipgate_figure_deployments_succeeded{{{r},environment=\"production\"}} 3"),
            format!("shipgate_figure_deployments_succeeded{{{r},environment=\"staging\"}} 0"),
            format!("shipgate_figure_deployment_success_ratio{{{r},environment=\"production\"}} 0.75"),
            format!("shipgate_figure_time_to_deploy_seconds{{{r},stat=\"mean\"}} 900"),
            format!("shipgate_figure_time_to_deploy_seconds{{{r},stat=\"median\"}} 600"),
            format!("shipgate_figure_time_to_deploy_seconds{{{r},stat=\"p95\"}} 1200"),
            format!("shipgate_figure_ci_green_ratio{{{r}}} 0.5"),
            format!("shipgate_figure_incidents{{{r},kind=\"ci\"}} 2"),
            format!("shipgate_figure_incidents{{{r},kind=\"security\"}} 0"),
            format!("shipgate_figure_incidents_open{{{r},kind=\"ci\"}} 1"),
            format!("shipgate_figure_incidents_open{{{r},kind=\"security\"}} 0"),
            format!("shipgate_figure_time_to_recovery_seconds{{{r},kind=\"ci\",stat=\"mean\"}} 300"),
            format!("shipgate_figure_time_to_recovery_seconds{{{r},kind=\"ci\",stat=\"median\"}} 300"),
            format!("shipgate_figure_time_to_recovery_seconds{{{r},kind=\"ci\",stat=\"p95\"}} 300"),
            format!("shipgate_figure_flaky_reruns{{{r}}} 3"),
            format!("shipgate_figure_requests_open{{{r}}} 3"),
            format!("shipgate_figure_requests_stale{{{r}}} 1"),
            format!("shipgate_figure_security_critical_open{{{r}}} 0"),
            format!("shipgate_figure_dora_deployment_frequency_per_day{{{r}}} {}", 3.0 / 7.0),
            format!("shipgate_figure_dora_lead_time_seconds{{{r},stat=\"mean\"}} 3600"),
            format!("shipgate_figure_dora_lead_time_seconds{{{r},stat=\"median\"}} 3600"),
            format!("shipgate_figure_dora_lead_time_seconds{{{r},stat=\"p95\"}} 3600"),
            format!("shipgate_figure_dora_change_failure_ratio{{{r}}} {}", 1.0 / 3.0),
        ];
        // Exactly these, in this order: no ratio without deployments (staging), no uptime without
        // an availability alert, no time to restore without a recovery, no workflow names.
        assert_eq!(lines_of("acme/render"), want);
        let page = render();
        for (family, _) in FAMILIES.iter().filter(|(f, _)| !f.contains("uptime") && !f.contains("time_to_restore")) {
            assert!(page.contains(&format!("# TYPE {family} gauge\n")), "no TYPE line for {family}");
        }
        assert!(!page.contains("build / test"), "a workflow name is a label:\n{page}");
        forget_repository("acme/render");
    }

    #[test]
    fn new_figures_replace_the_old_ones_and_forget_drops_them() {
        install();
        set_figures("acme/replace", &sample());
        assert!(lines_of("acme/replace").iter().any(|l| l.starts_with("shipgate_figure_ci_green_ratio")));
        let mut later = sample();
        later.ci_green_rate = None;
        later.open_requests = 0;
        set_figures("acme/replace", &later);
        let lines = lines_of("acme/replace");
        assert!(!lines.iter().any(|l| l.starts_with("shipgate_figure_ci_green_ratio")), "{lines:#?}");
        assert!(lines.contains(&"shipgate_figure_requests_open{repository=\"acme/replace\"} 0".to_string()));
        forget_repository("acme/replace");
        assert!(lines_of("acme/replace").is_empty());
    }

    #[test]
    fn environments_are_bounded_and_label_values_escaped() {
        let mut f = Figures::default();
        for i in 0..(MAX_ENVIRONMENTS + 3) {
            f.deployments.insert(
                format!("pr-{i:02}"),
                EnvironmentDeployments { count: 100 - i, succeeded: 100 - i, success_rate: Some(1.0) },
            );
        }
        f.deployments.insert(
            "odd \"env\"\\\n".into(),
            EnvironmentDeployments { count: 1000, succeeded: 0, ..Default::default() },
        );
        let text = render_figures(&[("o/r".to_string(), samples_of(&f))].into_iter().collect());
        let deployments: Vec<&str> = text.lines().filter(|l| l.starts_with("shipgate_figure_deployments{")).collect();
        assert_eq!(deployments.len(), MAX_ENVIRONMENTS + 1, "{text}");
        assert_eq!(
            deployments[0],
            r#"shipgate_figure_deployments{repository="o/r",environment="odd \"env\"\\\n"} 1000"#
        );
        // pr-00 … pr-08 are shown; pr-09 … pr-12 (91 + 90 + 89 + 88) are summed.
        assert_eq!(
            deployments[MAX_ENVIRONMENTS],
            r#"shipgate_figure_deployments{repository="o/r",environment="(other)"} 358"#
        );
    }
}
