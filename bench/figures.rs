//! The cost of the team's figures at scale (issues 14 and 17): on a database `bench/history.rs`
//! filled, times the two loops `shipgate serve` runs every minute over every repository:
//!
//! * `handlers::report::refresh_gauges` (the `/metrics` figures: the trailing week of every
//!   repository with activity), `--runs` passes, and the same per-repository work
//!   (`store::figures::facts` + `domain::figures::compute`) over the first K repositories, for K
//!   in `--prefixes`, to show how a pass grows with repositories;
//! * `handlers::report::run_due` (the weekly report), after giving the first `--weekly`
//!   repositories a `report.weekly` in their stored policy (through `store::requests::save_policy`,
//!   as a policy fetch does): the first pass opens every report (claims, builds, enqueues the
//!   issue), the next ones are the steady state (every minute of the week).
//!
//! ```text
//! cargo run --release --example figures -- --database-url sqlite:///tmp/history.db --weekly 1000
//! ```
//!
//! It writes to the database (policies, `jobs`, `outbox`): use a copy, or a history made for it.
//! Prints one line per measurement, then `JSON {...}` with all of them.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use serde_json::json;

use shipgate::handlers::report;
use shipgate::store::{Db, figures, requests};

const DAY: i64 = 86_400_000;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The moment the loops run at (Unix ms), or `now` (the history's `--now-ms` should match).
    #[arg(long, default_value = "now")]
    now_ms: String,
    /// `refresh_gauges` passes (the first one warms the caches and is reported apart).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Repository counts for the growth curve (the first K active repositories, by id).
    #[arg(long, default_value = "10,100,250,500,1000", value_delimiter = ',')]
    prefixes: Vec<usize>,
    /// Repositories given `report.weekly: {}` before `run_due` is timed (0: `run_due` not run).
    #[arg(long, default_value_t = 0)]
    weekly: usize,
    /// Steady-state `run_due` passes after the first.
    #[arg(long, default_value_t = 3)]
    due_runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let now = match args.now_ms.as_str() {
        "now" => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64,
        n => n.parse().map_err(|_| anyhow!("--now-ms: {n:?}"))?,
    };
    // The gauges are set in the App's registry, as in `shipgate serve`.
    let _ = shipgate::metrics::install();
    let db = Db::connect(&args.database_url).await.context("connecting")?;
    db.migrate().await?;
    let mut out = serde_json::Map::new();

    let t = Instant::now();
    let active = figures::active_repositories(&db).await?;
    let active_ms = ms(t);
    println!("active_repositories: {} repositories in {active_ms} ms", active.len());
    out.insert("active_repositories".into(), json!(active.len()));
    out.insert("active_repositories_ms".into(), json!(active_ms));

    // Whole passes, as the figures loop runs them.
    let mut shown = BTreeSet::new();
    let mut passes = Vec::new();
    for i in 0..args.runs.max(1) {
        let t = Instant::now();
        let n = report::refresh_gauges(&db, now, &mut shown).await?;
        let took = ms(t);
        println!("refresh_gauges pass {}: {n} repositories in {took} ms", i + 1);
        passes.push(took);
    }
    let warm = if passes.len() > 1 { passes[1..].to_vec() } else { passes.clone() };
    out.insert("refresh_gauges_first_ms".into(), json!(passes[0]));
    out.insert("refresh_gauges_p50_ms".into(), json!(median(warm.clone())));
    out.insert("refresh_gauges_max_ms".into(), json!(warm.iter().cloned().fold(0.0, f64::max)));

    // The same work over the first K repositories (two runs each, the second kept).
    let mut growth = Vec::new();
    for &k in &args.prefixes {
        let k = k.min(active.len());
        let mut took = 0.0;
        let mut rows = 0usize;
        for _ in 0..2 {
            rows = 0;
            let t = Instant::now();
            for (installation, id, _) in &active[..k] {
                let facts = figures::facts(&db, *installation, *id, now - 8 * DAY).await?;
                rows += facts.deployments.len() + facts.runs.len() + facts.incidents.len() + facts.requests.len();
                let _ = shipgate::domain::figures::compute(&facts, now - 7 * DAY, now);
            }
            took = ms(t);
        }
        let per = if k > 0 { took / k as f64 } else { 0.0 };
        println!("facts + compute, first {k} repositories: {took} ms ({per:.2} ms each, {rows} fact rows)");
        growth.push(json!({ "repositories": k, "ms": took, "ms_per_repository": (per * 100.0).round() / 100.0, "fact_rows": rows }));
    }
    out.insert("growth".into(), json!(growth));

    if args.weekly > 0 {
        // Give the first N repositories (all of them, not only the active ones) a weekly report.
        let repos: Vec<(i64, i64)> =
            sqlx::query_as("SELECT installation_id, id FROM repositories WHERE removed_at IS NULL ORDER BY id")
                .fetch_all(db.pool())
                .await?;
        let mut given = 0;
        let t = Instant::now();
        for (installation, id) in repos.iter().take(args.weekly) {
            let Some((blob, yaml, etag)) = requests::policy_with_etag(&db, *installation, *id).await? else { continue };
            let yaml = yaml.unwrap_or_default();
            if yaml.contains("\nreport:") {
                given += 1;
                continue;
            }
            let yaml = format!("{}\nreport:\n  weekly: {{}}\n", yaml.trim_end());
            let mut tx = db.begin_write().await?;
            requests::save_policy(&mut tx, *installation, *id, &blob, Some(&yaml), etag.as_deref(), now).await?;
            tx.commit().await?;
            given += 1;
        }
        println!("report.weekly stored for {given} repositories in {} ms", ms(t));
        out.insert("weekly_repositories".into(), json!(given));

        let t = Instant::now();
        let reporting = figures::reporting(&db).await?;
        println!("figures::reporting: {} candidates in {} ms", reporting.len(), ms(t));
        let worker = "bench-figures";
        let t = Instant::now();
        let opened = report::run_due(&db, now, worker).await?;
        let first = ms(t);
        println!("run_due first pass: {opened} reports opened in {first} ms");
        out.insert("run_due_first_ms".into(), json!(first));
        out.insert("run_due_opened".into(), json!(opened));
        let mut steady = Vec::new();
        for i in 0..args.due_runs {
            let t = Instant::now();
            let opened = report::run_due(&db, now, worker).await?;
            let took = ms(t);
            println!("run_due pass {}: {opened} opened in {took} ms", i + 2);
            steady.push(took);
        }
        out.insert("run_due_steady_p50_ms".into(), json!(median(steady)));
    }
    println!("JSON {}", serde_json::Value::Object(out));
    db.close().await;
    Ok(())
}
