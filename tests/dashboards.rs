//! Dashboards and alerting rules as code (`deploy/`, issue 17 item 4).
//!
//! * promtool (Debian's `prometheus` package) checks the Prometheus config and the rules, runs
//!   the rules' unit tests (`deploy/prometheus/rules_test.yml`), and parses every query of the
//!   Grafana dashboard. Without promtool these tests fail, saying how to install it.
//! * Every metric a rule or a panel reads is one the App renders: the App is started (SQLite, a
//!   fake GitHub), `/metrics` is read right after start-up, then again once a delivery, an action
//!   and a GitHub call have happened and figures have been set. A rule may only read what is
//!   there from start-up (or is listed in [`APPEAR_LATER`], saying why), so that it can be written
//!   and tested before the first event it is about.
//! * Grafana's provisioning, the dashboard and `docker-compose.yml` point at each other.

mod common;
mod fake_github;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestApp, TestDb, fixture};
use fake_github::FakeGitHub;
use serde_json::{Value, json};
use shipgate::domain::figures::{self, DeploymentFact, Facts, IncidentFact, RunFact};
use shipgate::github::actions::Action;
use shipgate::github::client::GithubConfig;
use shipgate::handlers::{Effect, Handled, Registry};
use shipgate::server::Options;

const REPO: &str = "Codertocat/Hello-World";
const INSTALLATION: i64 = 1;

/// Series a rule or a panel may read although they are not there at start-up: their labels say
/// what happened, so they appear with the first one.
const APPEAR_LATER: &[(&str, &str)] = &[
    ("shipgate_github_rate_limit_remaining", "one per installation, from its first GitHub call"),
    ("shipgate_github_calls_total", "labelled by route and status, from the first GitHub call"),
    ("shipgate_deliveries_processed_total", "labelled by event and result, from the first delivery processed"),
    ("shipgate_actions_total", "labelled by action kind and result, from the first action"),
];

/// Series Prometheus makes itself.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// promtool

/// promtool, or a failure that says how to get it: a check that cannot run must not pass.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    match found {
        Some(p) => p,
        None => panic!(
            "promtool is not installed, so deploy/prometheus cannot be checked. It comes with Debian's \
             `prometheus` package: `sudo apt-get install -y prometheus` (.ci/run installs it when missing)"
        ),
    }
}

/// Runs promtool in `dir`; fails the test with its output unless it succeeds.
fn promtool_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool()).args(args).current_dir(dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_checks_the_config_and_the_rules_and_runs_their_tests() {
    let dir = root().join("deploy/prometheus");
    let config = promtool_ok(&dir, &["check", "config", "prometheus.yml"]);
    // The config loads the rules (a rule file it does not find is an error above).
    assert!(config.contains("1 rule files found"), "{config}");
    let rules = promtool_ok(&dir, &["check", "rules", "rules.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
    let tests = promtool_ok(&dir, &["test", "rules", "rules_test.yml"]);
    assert!(tests.contains("SUCCESS"), "{tests}");
    // Every alert has a unit test.
    let tested = read("deploy/prometheus/rules_test.yml");
    for alert in alerts() {
        assert!(tested.contains(&format!("alertname: {alert}\n")), "rules_test.yml does not test {alert}");
    }
}

/// The dashboard's queries are PromQL promtool accepts (Grafana's variables replaced by values).
#[test]
fn every_dashboard_query_is_valid_promql() {
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, (panel, expr))| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$__interval", "1m")
                .replace("$instance", ".*")
                .replace("$repository", ".*");
            assert!(!expr.contains('$'), "panel {panel:?}: a Grafana variable this test does not know: {expr}");
            json!({ "record": format!("dashboard:query_{i}"), "expr": expr })
        })
        .collect();
    assert!(rules.len() > 20, "the dashboard has only {} queries", rules.len());
    let dir = tempfile::tempdir().expect("temp dir");
    // JSON is YAML: a rule file of recording rules, one per query.
    let file = dir.path().join("dashboard_queries.yml");
    let text = json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string();
    std::fs::write(&file, text).expect("write");
    promtool_ok(dir.path(), &["check", "rules", "dashboard_queries.yml"]);
}

// ---------------------------------------------------------------------------------------------
// What the rules and the dashboard read

fn alerts() -> Vec<String> {
    rule_exprs().into_iter().map(|(name, _)| name).collect()
}

/// (alert name, expression) of every rule.
fn rule_exprs() -> Vec<(String, String)> {
    let rules = yaml("deploy/prometheus/rules.yml");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).expect("alert or record").to_string();
            out.push((name, rule["expr"].as_str().expect("expr").to_string()));
        }
    }
    assert!(out.len() >= 8, "rules.yml has only {} rules", out.len());
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/dashboards/shipgate.json")).expect("dashboard JSON")
}

/// (panel title, expression) of every query of the dashboard, its variables' included.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {} has a target without expr", p["title"]));
            out.push((p["title"].as_str().unwrap_or("?").to_string(), expr.to_string()));
        }
    }
    out
}

/// The metrics the dashboard's variables list their values from (`label_values(metric, label)`).
fn variable_metrics() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().expect("templating") {
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).expect("variable query");
        let inner = q.strip_prefix("label_values(").and_then(|q| q.split_once(',')).map(|(m, _)| m);
        let metric =
            inner.unwrap_or_else(|| panic!("variable {}: expected label_values(metric, label): {q}", v["name"]));
        out.push((format!("variable {}", v["name"]), metric.to_string()));
    }
    out
}

/// The metric names an expression reads: identifiers that are not functions, keywords, label
/// names (in `{}` or after `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`),
/// strings, durations or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (…)` before their parenthesis.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let b: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&b, i);
        } else if c == '{' {
            i = skip_to(&b, i, '}');
        } else if c == '[' {
            i = skip_to(&b, i, ']');
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // Numbers and durations (5m, 1h30m, 1e3, 0x1f).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let call = b.get(j) == Some(&'(');
            if call && GROUPING.contains(&lower.as_str()) {
                i = skip_to(&b, j, ')'); // a list of label names
            } else if !call && !KEYWORDS.contains(&lower.as_str()) && !GROUPING.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// From the opening character at `i` past its `close`, skipping strings.
fn skip_to(b: &[char], mut i: usize, close: char) -> usize {
    i += 1;
    while i < b.len() && b[i] != close {
        i = if matches!(b[i], '"' | '\'' | '`') { skip_string(b, i) } else { i + 1 };
    }
    i + 1
}

fn skip_string(b: &[char], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() && b[i] != quote {
        i += if b[i] == '\\' && quote != '`' { 2 } else { 1 };
    }
    i + 1
}

/// The series names on a `/metrics` page (histograms as their `_bucket`, `_sum` and `_count`).
fn rendered_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// The names `uses` reads that are not in `known`, with where each is read.
fn unknown(uses: &[(String, String)], known: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (whose, expr) in uses {
        for name in metric_names(expr) {
            if !known.contains(&name) && !PROMETHEUS_OWN.contains(&name.as_str()) {
                out.push(format!("{name} (in {whose}: {expr})"));
            }
        }
    }
    out
}

#[test]
fn the_name_check_finds_every_metric_of_an_expression_and_only_those() {
    let expr = r#"histogram_quantile(0.99, sum by (le, "x") (rate(a_seconds_bucket{job=~"s|t", x="}"}[$__rate_interval])))
        / on (instance) group_left (version) b_info offset 5m
        and ignoring(x) c_total > bool 1e3 unless topk(5, d:recorded) or count_over_time(e[1h:5m]) # f_comment
        + sum(g) without (h) - 1.5 * Inf"#;
    let want: BTreeSet<String> =
        ["a_seconds_bucket", "b_info", "c_total", "d:recorded", "e", "g"].iter().map(|s| s.to_string()).collect();
    assert_eq!(metric_names(expr), want);
    // A name the App does not export is reported.
    let known: BTreeSet<String> = ["shipgate_ready".to_string()].into();
    let uses = vec![("panel P".to_string(), "max(shipgate_ready) + sum(rate(shipgate_no_such_total[5m]))".to_string())];
    assert_eq!(
        unknown(&uses, &known),
        ["shipgate_no_such_total (in panel P: max(shipgate_ready) + sum(rate(shipgate_no_such_total[5m])))"]
    );
    let page = "# TYPE x_seconds histogram\nx_seconds_bucket{le=\"1\"} 0\nx_seconds_sum 0\ny 1\n\n";
    assert_eq!(
        rendered_names(page),
        ["x_seconds_bucket", "x_seconds_sum", "y"].iter().map(|s| s.to_string()).collect()
    );
}

// ---------------------------------------------------------------------------------------------
// What the App renders

fn comment_event(comment_id: i64) -> String {
    let mut v: Value = serde_json::from_str(&fixture("issue_comment.created.3")).expect("json");
    v["installation"] = json!({ "id": INSTALLATION });
    v["issue"]["number"] = json!(1);
    v["comment"]["id"] = json!(comment_id);
    v.to_string()
}

/// A week in which every figure has a value (so that every figure family is rendered).
fn a_week() -> figures::Figures {
    const H: i64 = 3_600_000;
    let from = 1_795_996_800_000; // Monday 2026-11-30 00:00 UTC
    let deploy = |env: &str, at: i64, ok: bool| DeploymentFact {
        environment: env.into(),
        finished_at: Some(from + at),
        succeeded: ok,
        approved_at: Some(from + at - H / 2),
        first_commit_at: Some(from + at - 20 * H),
        rollback: false,
    };
    let incident = |kind: &str, category: Option<&str>, at: i64, recovered: Option<i64>| IncidentFact {
        kind: kind.into(),
        category: category.map(str::to_string),
        availability: kind == "alert",
        critical: kind == "security",
        started_at: from + at,
        opened_at: from + at,
        recovered_at: recovered.map(|r| from + r),
        ..IncidentFact::default()
    };
    let facts = Facts {
        deployments: vec![
            deploy("production", 30 * H, true),
            deploy("production", 60 * H, false),
            deploy("staging", 10 * H, true),
        ],
        runs: vec![
            RunFact { run_id: 1, attempt: 1, incident_branch: true, kind: "success".into(), completed_at: from + H },
            RunFact {
                run_id: 2,
                attempt: 1,
                incident_branch: true,
                kind: "failure".into(),
                completed_at: from + 2 * H,
            },
        ],
        incidents: vec![
            incident("ci", None, 2 * H, Some(3 * H)),
            incident("alert", Some("app"), 40 * H, Some(41 * H)),
            incident("security", None, 50 * H, None),
        ],
        requests: vec![figures::RequestFact { open: true, updated_at: from, ..Default::default() }],
        flaky: vec![figures::FlakyFact { workflow: "ci".into(), job: "test".into(), at: from + H }],
    };
    figures::compute(&facts, from, from + 7 * 24 * H)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_rule_or_panel_reads_is_one_the_app_exports() {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.issue(REPO, 1, "Deploy", "body");
    let comment = gh.human_comment(REPO, 1, "Codertocat", "hello");

    let db = TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    // As in production: the audit log is verified at start-up, then every hour.
    cfg.audit_verify_every = Duration::from_secs(3600);
    let mut settings = GithubConfig::new(&gh.url);
    settings.mutation_spacing = Duration::ZERO;
    let mut registry = Registry::standard();
    registry.on("issue_comment", Some("created"), |ctx| async move {
        let v: Value = ctx.payload()?;
        let comment_id = v["comment"]["id"].as_i64().unwrap_or_default();
        Ok(Handled::ok(vec![Effect::Act(Action::AddReaction {
            repo: REPO.into(),
            comment_id,
            content: "eyes".into(),
        })]))
    });
    let app = TestApp::start_with(cfg, Options { registry, github: Some(settings), ..Options::default() }).await;
    let scrape = || {
        let (http, url) = (app.http.clone(), app.url.clone());
        async move { http.get(format!("{url}/metrics")).send().await.expect("scrape").text().await.expect("text") }
    };
    let scrape_until = |what: &'static str, done: fn(&str) -> bool| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let page = scrape().await;
            if done(&page) {
                return page;
            }
            assert!(std::time::Instant::now() < deadline, "{what} did not show on /metrics:\n{page}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // Right after start-up (the start-up verification of the audit log takes a moment).
    let first =
        scrape_until("the start-up audit verification", |p| p.contains("\nshipgate_audit_log_intact 1\n")).await;
    let at_start = rendered_names(&first);
    for line in [
        "shipgate_ready 1",
        "shipgate_queue_depth{queue=\"inbox\",state=\"parked\"} 0",
        "shipgate_queue_depth{queue=\"outbox\",state=\"parked\"} 0",
        "shipgate_queue_oldest_open_age_seconds{queue=\"inbox\"} 0",
        "shipgate_audit_verify_failures_total{reason=\"broken\"} 0",
        "shipgate_audit_verify_failures_total{reason=\"error\"} 0",
        "shipgate_webhook_deliveries_total{event=\"unknown\",outcome=\"db_error\"} 0",
        "shipgate_webhook_deliveries_total{event=\"unknown\",outcome=\"bad_signature\"} 0",
        "shipgate_delivery_processing_seconds_count 0",
        "shipgate_webhook_ingest_seconds_count 0",
    ] {
        assert!(first.lines().any(|l| l == line), "not at start-up: {line}\n{first}");
    }
    let later: BTreeSet<String> = APPEAR_LATER.iter().map(|(n, _)| n.to_string()).collect();
    for name in &later {
        assert!(!at_start.contains(name), "{name} is there at start-up: take it off APPEAR_LATER");
    }
    // Every rule can be evaluated from start-up.
    let mut startup_or_later = at_start.clone();
    startup_or_later.extend(later.iter().cloned());
    let rules = rule_exprs();
    let missing = unknown(&rules, &startup_or_later);
    assert!(missing.is_empty(), "rules read metrics the App does not export at start-up:\n{}", missing.join("\n"));

    // Then things happen: a delivery is processed, its action sent to GitHub, figures set.
    assert_eq!(app.deliver("issue_comment", "dash-1", &comment_event(comment)).await, 202);
    let figure_names: BTreeSet<String> = shipgate::metrics::figure_names().map(str::to_string).collect();
    let after = scrape_until("the delivery, its action and the GitHub calls", |p| {
        ["shipgate_deliveries_processed_total{", "shipgate_actions_total{", "shipgate_github_rate_limit_remaining{"]
            .iter()
            .all(|n| p.contains(n))
    })
    .await;
    assert!(gh.model().calls.iter().any(|c| c.path.contains("/reactions")), "no reaction was sent");
    shipgate::metrics::set_figures("acme/dashboards", &a_week());
    let page = scrape().await;
    assert!(page.len() >= after.len(), "the page shrank");
    let all = rendered_names(&page);
    for name in &figure_names {
        assert!(all.contains(name), "set_figures on a full week does not render {name}:\n{page}");
    }
    for name in &later {
        assert!(all.contains(name), "{name} (APPEAR_LATER) is not rendered once it happened:\n{page}");
    }

    // Every query of the dashboard names a metric the App renders; the ones not there at
    // start-up are listed above or are figures (one set per repository, when computed).
    let mut uses = dashboard_exprs();
    uses.extend(variable_metrics());
    let missing = unknown(&uses, &all);
    assert!(missing.is_empty(), "the dashboard reads metrics the App does not export:\n{}", missing.join("\n"));
    let mut expected_at_start = at_start.clone();
    expected_at_start.extend(later.iter().cloned());
    expected_at_start.extend(figure_names.iter().cloned());
    let missing = unknown(&uses, &expected_at_start);
    assert!(missing.is_empty(), "the dashboard reads metrics that are not there at start-up:\n{}", missing.join("\n"));
    // The dashboard shows every figure.
    let read: BTreeSet<String> = uses.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for name in figure_names.iter().filter(|n| !n.contains("window")) {
        assert!(read.contains(name), "no panel shows {name}");
    }

    // Every family the App renders is documented.
    let doc = read_doc();
    for name in &all {
        let family = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(doc.contains(&format!("`{family}`")), "docs/metrics.md does not describe {family}");
    }

    shipgate::metrics::forget_repository("acme/dashboards");
    app.shutdown().await;
    gh.finish();
    db.cleanup().await;
}

fn read_doc() -> String {
    read("docs/metrics.md")
}

// ---------------------------------------------------------------------------------------------
// Wiring: Grafana's provisioning, the dashboard and docker-compose.yml

#[test]
fn grafana_and_compose_point_at_deploy() {
    // The dashboard's panels use the provisioned datasource.
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let ds = &ds["datasources"][0];
    let uid = ds["uid"].as_str().expect("datasource uid");
    let d = dashboard();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], uid, "panel {}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], uid, "panel {}", p["title"]);
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        assert_eq!(v["datasource"]["uid"], uid, "variable {}", v["name"]);
    }

    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let volumes = |service: &str| -> Vec<(String, String)> {
        services[service]["volumes"]
            .as_array()
            .unwrap_or_else(|| panic!("docker-compose.yml: {service} has no volumes"))
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| {
                let mut parts = v.split(':');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    };
    let mounted = |service: &str, source: &str| -> String {
        let found = volumes(service).into_iter().find(|(s, _)| s.trim_start_matches("./") == source);
        let (_, target) = found.unwrap_or_else(|| panic!("docker-compose.yml: {service} does not mount ./{source}"));
        assert!(root().join(source).exists(), "docker-compose.yml mounts ./{source}, which does not exist");
        target
    };
    // Prometheus: the config and rules from deploy/prometheus, scraping the App's service.
    let target = mounted("prometheus", "deploy/prometheus");
    let command = services["prometheus"]["command"].as_array().expect("prometheus command");
    assert!(
        command.iter().any(|c| c.as_str() == Some(&format!("--config.file={target}/prometheus.yml"))),
        "prometheus is not started on the mounted config: {command:?}"
    );
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let scrape = &prom["scrape_configs"][0]["static_configs"][0]["targets"][0];
    let (host, port) = scrape.as_str().and_then(|t| t.split_once(':')).expect("a host:port target");
    assert!(services[host].is_object(), "prometheus.yml scrapes {host}, which is no service of docker-compose.yml");
    let ports = services[host]["ports"].as_array().expect("the App's ports");
    assert!(
        ports.iter().filter_map(Value::as_str).any(|p| p.ends_with(&format!(":{port}"))),
        "the App's service does not listen on {port}: {ports:?}"
    );
    // Grafana: the provisioning directory, and the dashboards where the provider looks.
    assert_eq!(mounted("grafana", "deploy/grafana/provisioning"), "/etc/grafana/provisioning");
    let provider = yaml("deploy/grafana/provisioning/dashboards/shipgate.yml");
    let path = provider["providers"][0]["options"]["path"].as_str().expect("provider path");
    assert_eq!(mounted("grafana", "deploy/grafana/dashboards"), path);
    let url = ds["url"].as_str().expect("datasource url");
    let host = url.trim_start_matches("http://").split(':').next().unwrap_or_default();
    assert!(services[host].is_object(), "the datasource points at {url}, which is no service of docker-compose.yml");
}
