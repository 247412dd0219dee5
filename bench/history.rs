//! History for the scale benchmarks: fills a SQLite file or a PostgreSQL database, through the
//! App's own store code (`shipgate::store::*`, never hand-written INSERTs), with a year of an
//! organisation's life, reproducible from a seed.
//!
//! ```text
//! cargo run --release --example history -- --database-url sqlite:///tmp/history.db
//! cargo run --release --example history -- --database-url postgres://postgres@127.0.0.1:5432/history_bench \
//!     --deliveries 200000
//! ```
//!
//! Options (defaults in brackets): `--database-url` (or `DATABASE_URL`), `--repos` [1000],
//! `--installations` [20], `--deliveries` [2000000], `--requests` [50000], `--open` [2000],
//! `--incidents` [20000], `--seed` [1], `--days` [365], `--now-ms` [1796083200000, i.e.
//! 2026-12-01T00:00:00Z; `now` takes the wall clock], `--recent` [5000], `--batch` [4096],
//! `--finish` [update; or worker], `--retention-days` [14, the App's default; 0 keeps every
//! body], `--prune` [daily; or end]. The database must be new (migrated here) or at least hold no
//! deliveries. The default size takes about 6 minutes on SQLite on a 2-core VM. The bodies past
//! the retention are dropped by the App's own prune as the fill's time passes each day, so later
//! bodies reuse their pages as in an App that has run the year (1.8 GB on SQLite); `--prune end`
//! drops them all at the end instead, as in an App upgraded from a version that kept every body
//! (9.7 GB, 7.6 GB of it free pages that new pages then come from, all over the file).
//!
//! What it writes, for the `--days` days before `--now-ms`:
//!
//! * installations and repositories (`tenancy::upsert_installation`, `upsert_repositories`), and
//!   each repository's cached `.github/shipgate.yml` (`requests::save_policy`);
//! * deliveries: real webhook payloads (`tests/fixtures/webhooks`, compact JSON as GitHub sends
//!   it) re-pointed at the generated installation, repository, sender and PR or issue, each made
//!   unique by its object id and commit SHA; a mix like an organisation's (check_run and status
//!   first, then workflow_run, pull_request, push, check_suite, issue_comment, issues, ...). Stored
//!   as the intake stores them (`deliveries::insert_batch_in`, LZ4 body, `deliveries::body_key`),
//!   then finished: every delivery ends `done` with an outcome and `finished_at`, received over
//!   the period by working hours and weekdays, the last `--recent` ones in the last hour. With
//!   `--finish worker` all of them are claimed and completed as the worker does
//!   (`deliveries::QUEUE.claim_in`, `deliveries::complete`, which records the attempt); by
//!   default only the batches holding the last `--recent` are, and the others are finished by a
//!   narrow hand-written UPDATE of the columns the worker changes (no `delivery_attempts` row),
//!   because the store has no bulk path and the worker's costs 3-4 statements a delivery (see
//!   `finish_by_update`). A completed `workflow_run` also records its run (`incidents::apply`,
//!   `Change::Run`), as the CI handler does, in the same transaction;
//! * deployment requests (`requests::save`, `save_links`, `save_approval`), `--open` of them open
//!   and labelled in the App's states (awaiting-approval, blocked, approved, on-hold, denied,
//!   deploying, deployed, deploy-failed, incomplete), the rest closed (most deployed), with
//!   their facts (`flow::Remembered`: PRs, heads, checks), approvals, and deployments
//!   (`deploys::record`, one call per status; the App's own recorded in `objects::put` for the
//!   open ones);
//! * the audit log those requests imply (`audit::append`, in time order, so each installation's
//!   chain is in order of time): request.parsed, approval.given, gate.opened,
//!   deployment.requested, deployment.status, request.revised, request.closed, approval.stale,
//!   request.held, request.denied, gate.closed;
//! * CI and security incidents (`incidents::apply` with `Change::Run`, `Change::Incident`,
//!   `Change::Flaky`; `incidents::mark_escalated` for those past their deadline), open or
//!   closed with their time to recovery.
//!
//! Reproducible: every random choice comes from one `fastrand::Rng` seeded with `--seed`
//! (forked per phase), and every time from `--now-ms`, which defaults to a fixed instant (not the
//! clock): the same arguments give the same rows, in the same order, on either backend. Pass
//! `--now-ms now` for an inbox whose last hour is the real last hour (the value used is printed).
//!
//! Prints its progress, then what it wrote, the time taken and the database's size (SQLite: the
//! file and its `-wal`; PostgreSQL: `pg_database_size`).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use fastrand::Rng;
use serde_json::{Value, json};
use sqlx::{Any, Transaction};

use shipgate::domain::ci::{self, Alert, FailedJob, FailedStep, Incident, RunInfo};
use shipgate::domain::flow::Remembered;
use shipgate::domain::gate::{CheckFact, PrFacts, User as GateUser};
use shipgate::domain::ids::UserId;
use shipgate::domain::{policy, request};
use shipgate::github::envelope::Envelope;
use shipgate::store::audit::{self, AuditEntry};
use shipgate::store::deliveries::{self, Claimed, InsertOutcome, NewDelivery};
use shipgate::store::deploys::{self, DeploymentRow};
use shipgate::store::incidents::{self, Change, FlakyRow, IncidentRow, RunRow};
use shipgate::store::requests::{self, ApprovalChange, Link, RequestRow};
use shipgate::store::tenancy::{self, InstallationRecord, RepositoryRecord};
use shipgate::store::{Backend, Db, normalize_url, objects};

/// 2026-12-01T00:00:00Z: the default end of the history.
const DEFAULT_NOW_MS: i64 = 1_796_083_200_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Deliveries per `insert_batch_in` call (see `write_deliveries`).
const INSERT_ROWS: usize = 32;
/// The lease the generated worker takes (as the App's default worker does, roughly).
const LEASE_MS: i64 = 5 * MINUTE;

#[derive(Parser, Debug)]
#[command(about = "Fills a shipgate database with a reproducible history for the scale benchmarks")]
struct Args {
    /// sqlite://path.db, a path, or postgres://…
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value_t = 1000)]
    repos: usize,
    /// Installations (organisations) the repositories belong to, largest first.
    #[arg(long, default_value_t = 20)]
    installations: usize,
    #[arg(long, default_value_t = 2_000_000)]
    deliveries: u64,
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// How many of the requests are open (and labelled).
    #[arg(long, default_value_t = 2_000)]
    open: u64,
    #[arg(long, default_value_t = 20_000)]
    incidents: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of the history, ending at --now-ms.
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// The end of the history (Unix ms), or `now` for the wall clock.
    #[arg(long, default_value_t = DEFAULT_NOW_MS.to_string())]
    now_ms: String,
    /// The newest deliveries, received in the last hour.
    #[arg(long, default_value_t = 5_000)]
    recent: u64,
    /// Deliveries per transaction.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// How deliveries are finished: by the fallback UPDATE (but the newest `--recent`), or all as
    /// the worker does.
    #[arg(long, value_enum, default_value_t = FinishMode::Update)]
    finish: FinishMode,
    /// Days a finished delivery keeps its body, as the App's `SHIPGATE_RETENTION_DAYS` (its
    /// default); older bodies are dropped by the App's own prune. 0 keeps them all.
    #[arg(long, default_value_t = 14)]
    retention_days: i64,
    /// When the bodies past the retention are dropped: `daily`, as the fill's time passes each
    /// day, so that later bodies reuse their pages as in an App that has run the whole period
    /// (which prunes hourly); or all at the `end`, as in an App upgraded from a version that kept
    /// every body (a year of free pages that new pages then come from, all over the file).
    #[arg(long, value_enum, default_value_t = PruneMode::Daily)]
    prune: PruneMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PruneMode {
    Daily,
    End,
}

// ------------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------------

/// splitmix64's finaliser: a bijection on u64 (distinct inputs, distinct outputs).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 40-hex commit SHA, unique for each distinct (`salt`, `n`).
fn sha_for(rng: &mut Rng, salt: u64, n: u64) -> String {
    format!("{:016x}{:016x}{:08x}", mix64(n ^ salt.rotate_left(40)), rng.u64(..), rng.u32(..))
}

fn random_hex40(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}{:08x}", rng.u64(..), rng.u64(..), rng.u32(..))
}

fn random_hex64(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}{:016x}{:016x}", rng.u64(..), rng.u64(..), rng.u64(..), rng.u64(..))
}

/// A delivery GUID like GitHub's `X-GitHub-Delivery`.
fn guid(rng: &mut Rng) -> String {
    let (a, b) = (rng.u64(..), rng.u64(..));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// A duration between `lo` and `hi` ms, log-uniform (most short, a long tail).
fn dur(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    let (lo, hi) = (lo.max(1) as f64, hi.max(lo + 1) as f64);
    (lo * (hi / lo).powf(rng.f64())) as i64
}

/// Picks an index by cumulative weights.
fn pick(rng: &mut Rng, cumulative: &[f64]) -> usize {
    let total = *cumulative.last().expect("weights");
    let x = rng.f64() * total;
    cumulative.partition_point(|&c| c <= x).min(cumulative.len() - 1)
}

fn cumulate(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints a progress line at most every 2 s (and always at the end).
struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Progress {
        Progress { what, total, started: Instant::now(), last: Instant::now() }
    }

    fn tick(&mut self, done: u64) {
        if done < self.total && self.last.elapsed().as_secs_f64() < 2.0 {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "  {:<11} {:>10} / {:<10} {:>5.1}%  {:>8.0}/s  {:>6.1}s",
            self.what,
            thousands(done),
            thousands(self.total),
            100.0 * done as f64 / self.total.max(1) as f64,
            done as f64 / secs.max(1e-9),
            secs
        );
    }
}

// ------------------------------------------------------------------------------------------------
// The world: installations, repositories, people
// ------------------------------------------------------------------------------------------------

const ORGS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "soylent",
    "tyrell",
    "cyberdyne",
    "wonka",
    "stark",
    "wayne",
    "oscorp",
    "aperture",
    "massive-dynamic",
    "vandelay",
    "pied-piper",
    "dunder-mifflin",
    "prestige",
    "monarch",
    "nakatomi",
];
const REPO_STEMS: &[&str] = &[
    "api",
    "web",
    "billing",
    "auth",
    "search",
    "payments",
    "infra",
    "mobile",
    "data",
    "ml",
    "notifications",
    "gateway",
    "catalog",
    "checkout",
    "inventory",
    "reporting",
    "admin",
    "docs",
    "design-system",
    "platform",
];
const REPO_SUFFIXES: &[&str] =
    &["", "-service", "-worker", "-ui", "-sdk", "-cli", "-infra", "-jobs", "-proxy", "-config", "-e2e", "-charts"];
const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia",
    "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe", "amir", "bea", "chen", "dara", "emeka",
    "fatima", "goran", "hana", "ines", "jonas", "kenji", "lena", "mateo", "noor", "oskar", "priya", "quinn", "rosa",
    "sven",
];
const LAST: &[&str] = &[
    "smith", "garcia", "kim", "nguyen", "okafor", "rossi", "muller", "silva", "tanaka", "kowalski", "haddad", "novak",
    "larsen", "dubois", "ivanova", "murphy", "santos", "cohen", "ali", "berg",
];
const WORKFLOWS: &[&str] = &["CI", "Build", "Tests", "E2E", "Deploy", "Lint", "Nightly", "Release"];
const CHECKS: &[&str] = &["build", "test", "lint", "typecheck", "e2e (chromium)", "security/snyk", "codecov/project"];
const SERVICES: &[&str] = &["api", "web", "worker", "billing", "auth", "search", "gateway", "scheduler"];
const REASONS: &[&str] = &[
    "new endpoint",
    "bug fix for checkout totals",
    "dependency upgrades",
    "performance improvement",
    "feature flag rollout",
    "security patch",
    "database index",
    "config change",
];

#[derive(Clone, Debug)]
struct Person {
    id: i64,
    login: String,
}

struct Inst {
    id: i64,
    login: String,
    people: Vec<Person>,
    /// Indices into `people`: the policy's `pm` and `backend-lead` users.
    pms: Vec<usize>,
    leads: Vec<usize>,
    policy_yaml: String,
    policy_blob: String,
    installed_at: i64,
}

struct Repo {
    id: i64,
    inst: usize,
    full: String,
    name: String,
    owner: String,
    private: bool,
    /// How many issues and PRs it has by the end (PR and issue numbers scale with it).
    numbers: i64,
    workflows: usize,
    /// The next issue or PR number the requests take.
    next_number: i64,
}

struct World {
    insts: Vec<Inst>,
    repos: Vec<Repo>,
    /// Cumulative activity weights of the repositories (a few busy ones, a long quiet tail).
    activity: Vec<f64>,
}

impl World {
    fn build(rng: &mut Rng, n_repos: usize, n_insts: usize, start: i64) -> Result<World> {
        let n_insts = n_insts.clamp(1, n_repos.max(1));
        // Repositories per installation: the first organisation the largest (1/(i+1) shares),
        // at least one each.
        let shares = cumulate((0..n_insts).map(|i| 1.0 / (i as f64 + 1.0)));
        let mut counts = vec![1usize; n_insts];
        for _ in n_insts..n_repos {
            counts[pick(rng, &shares)] += 1;
        }
        let mut insts = Vec::with_capacity(n_insts);
        let mut repos = Vec::with_capacity(n_repos);
        let mut person_id = 5_000_000i64;
        for (i, &count) in counts.iter().enumerate() {
            let login = match ORGS.get(i) {
                Some(o) => o.to_string(),
                None => format!("{}-{}", ORGS[i % ORGS.len()], i / ORGS.len()),
            };
            let n_people = (8 + count * 3).min(600);
            let mut people = Vec::with_capacity(n_people);
            let mut seen = std::collections::HashSet::new();
            while people.len() < n_people {
                let mut l = format!("{}-{}", FIRST[rng.usize(..FIRST.len())], LAST[rng.usize(..LAST.len())]);
                if !seen.insert(l.clone()) {
                    l = format!("{l}{}", people.len());
                    seen.insert(l.clone());
                }
                person_id += 1 + rng.i64(0..5);
                people.push(Person { id: person_id, login: l });
            }
            let pms: Vec<usize> = (0..2.min(n_people)).collect();
            let leads: Vec<usize> = (2..5.min(n_people)).collect();
            let list = |ix: &[usize]| ix.iter().map(|&k| people[k].login.clone()).collect::<Vec<_>>().join(", ");
            let policy_yaml = format!(
                "label: DEPLOYMENT_REQUEST\nroles:\n  pm:           {{ users: [{}] }}\n  backend-lead: {{ users: [{}] }}\n\
                 environments:\n  production:\n    approvals:\n      - role: pm\n      - role: backend-lead\n\
                 \x20   require_checks: all\n    allow_self_approval: false\n    max_rollback_minutes: 15\n\
                 \x20   deploy: deployment\n  staging:\n    approvals:\n      - role: backend-lead\n\
                 \x20   deploy: deployment\nci:\n  incident_branches: [main]\n  ignore_conclusions: [cancelled, skipped]\n\
                 \x20 debug_within: 1h\n  escalate_to: backend-lead\n  block_deploys_while_red: true\n",
                list(&pms),
                list(&leads)
            );
            if let Err(e) = policy::parse(&policy_yaml) {
                bail!("the generated policy does not parse: {e:?}\n{policy_yaml}");
            }
            let id = 10_000_000 + (i as i64) * 1_000 + rng.i64(0..1_000);
            let installed_at = start - rng.i64(30..400) * DAY;
            let policy_blob = random_hex40(rng);
            let inst = insts.len();
            let mut names = std::collections::HashSet::new();
            for _ in 0..count {
                let mut name = format!(
                    "{}{}",
                    REPO_STEMS[rng.usize(..REPO_STEMS.len())],
                    REPO_SUFFIXES[rng.usize(..REPO_SUFFIXES.len())]
                );
                if !names.insert(name.clone()) {
                    name = format!("{name}-{}", names.len());
                    names.insert(name.clone());
                }
                repos.push(Repo {
                    id: 0,
                    inst,
                    full: format!("{login}/{name}"),
                    name,
                    owner: login.clone(),
                    private: rng.f64() < 0.8,
                    numbers: 0,
                    workflows: 2 + rng.usize(0..5),
                    next_number: 1,
                });
            }
            insts.push(Inst { id, login, people, pms, leads, policy_yaml, policy_blob, installed_at });
        }
        // Repository ids rise with creation, as GitHub's do; activity is Zipf-like (s = 0.9)
        // over a shuffled order, so that the busy repositories are spread over the installations.
        let mut order: Vec<usize> = (0..repos.len()).collect();
        rng.shuffle(&mut order);
        let mut weights = vec![0.0; repos.len()];
        for (rank, &r) in order.iter().enumerate() {
            weights[r] = 1.0 / (rank as f64 + 1.0).powf(0.9);
        }
        let mut repo_id = 100_000_000i64;
        let max_w = weights.iter().cloned().fold(0.0, f64::max);
        for (r, repo) in repos.iter_mut().enumerate() {
            repo_id += 1 + rng.i64(0..50_000);
            repo.id = repo_id;
            repo.numbers = 30 + (6_000.0 * weights[r] / max_w) as i64 + rng.i64(0..200);
            repo.next_number = 1 + rng.i64(0..repo.numbers / 4 + 1);
        }
        Ok(World { insts, repos, activity: cumulate(weights) })
    }

    fn pick_repo(&self, rng: &mut Rng) -> usize {
        pick(rng, &self.activity)
    }
}

// ------------------------------------------------------------------------------------------------
// Time: when things happen (working hours and weekdays are busier)
// ------------------------------------------------------------------------------------------------

/// The inverse of the cumulative distribution of activity over [from, to), by hour.
struct Calendar {
    from: i64,
    cumulative: Vec<f64>,
}

impl Calendar {
    fn new(from: i64, to: i64) -> Calendar {
        let hours = ((to - from) / HOUR).max(1) as usize;
        let weights = (0..hours).map(|h| {
            let t = from + h as i64 * HOUR;
            let hour = (t.rem_euclid(DAY) / HOUR) as usize;
            // 1970-01-01 was a Thursday: day 0 = Thursday, so days 2 and 3 are the weekend.
            let weekday = (t.div_euclid(DAY) + 3).rem_euclid(7); // 0 = Monday
            let day = if weekday >= 5 { 0.25 } else { 1.0 };
            let office = match hour {
                7..=17 => 1.0,
                5 | 6 | 18..=20 => 0.55,
                _ => 0.2,
            };
            day * office
        });
        Calendar { from, cumulative: cumulate(weights) }
    }

    /// The time at fraction `u` (0..1) of the activity: monotone in `u`.
    fn at(&self, u: f64) -> i64 {
        let total = *self.cumulative.last().expect("hours");
        let x = u.clamp(0.0, 1.0) * total;
        let h = self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len() - 1);
        let before = if h == 0 { 0.0 } else { self.cumulative[h - 1] };
        let frac = ((x - before) / (self.cumulative[h] - before)).clamp(0.0, 0.999_999);
        self.from + h as i64 * HOUR + (frac * HOUR as f64) as i64
    }

    fn random(&self, rng: &mut Rng) -> i64 {
        self.at(rng.f64())
    }
}

// ------------------------------------------------------------------------------------------------
// Webhook bodies
// ------------------------------------------------------------------------------------------------

/// A value set per delivery into a payload template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    Inst,
    RepoId,
    Full,
    Name,
    Owner,
    /// The event's object id (check run, comment, PR, ...): unique per delivery.
    Oid,
    /// The commit SHA (head SHA, `after`, status SHA): unique per delivery.
    Sha,
    Time,
    Number,
    SenderId,
    SenderLogin,
    WfId,
    WfName,
    Branch,
    RunNo,
    Concl,
    Event,
}

/// (marker name, variable, numeric: the quoted marker `"@@X@@"` becomes a bare number).
const VARS: &[(&str, Var, bool)] = &[
    ("INST", Var::Inst, true),
    ("RID", Var::RepoId, true),
    ("FULL", Var::Full, false),
    ("NAME", Var::Name, false),
    ("OWNER", Var::Owner, false),
    ("OID", Var::Oid, true),
    ("SHA", Var::Sha, false),
    ("TIME", Var::Time, false),
    ("NUM", Var::Number, true),
    ("SID", Var::SenderId, true),
    ("SLOGIN", Var::SenderLogin, false),
    ("WFID", Var::WfId, true),
    ("WFNAME", Var::WfName, false),
    ("BRANCH", Var::Branch, false),
    ("RUNNO", Var::RunNo, true),
    ("CONCL", Var::Concl, false),
    ("EVENT", Var::Event, false),
];

enum Part {
    Lit(String),
    Var(Var),
}

struct Template {
    event: &'static str,
    file: String,
    action: Option<String>,
    /// Has an issue or PR number: the subject is `repo:{id}#{n}`.
    numbered: bool,
    /// A completed workflow run: the CI handler records it.
    completed_run: bool,
    parts: Vec<Part>,
    size: usize,
}

/// Per event: the JSON pointers that take each variable (when the payload has them).
fn pointers(event: &str) -> Vec<(&'static str, &'static str)> {
    let mut p = vec![
        ("/installation/id", "INST"),
        ("/repository/id", "RID"),
        ("/repository/full_name", "FULL"),
        ("/repository/name", "NAME"),
        ("/repository/owner/login", "OWNER"),
        ("/sender/id", "SID"),
        ("/sender/login", "SLOGIN"),
    ];
    p.extend(match event {
        "check_run" => vec![
            ("/check_run/id", "OID"),
            ("/check_run/head_sha", "SHA"),
            ("/check_run/check_suite/head_sha", "SHA"),
            ("/check_run/started_at", "TIME"),
        ],
        "check_suite" => {
            vec![("/check_suite/id", "OID"), ("/check_suite/head_sha", "SHA"), ("/check_suite/updated_at", "TIME")]
        }
        "status" => vec![("/id", "OID"), ("/sha", "SHA"), ("/commit/sha", "SHA"), ("/updated_at", "TIME")],
        "workflow_run" => vec![
            ("/workflow_run/id", "OID"),
            ("/workflow_run/head_sha", "SHA"),
            ("/workflow_run/head_branch", "BRANCH"),
            ("/workflow_run/run_number", "RUNNO"),
            ("/workflow_run/workflow_id", "WFID"),
            ("/workflow_run/name", "WFNAME"),
            ("/workflow_run/event", "EVENT"),
            ("/workflow_run/updated_at", "TIME"),
            ("/workflow_run/run_started_at", "TIME"),
            ("/workflow_run/head_repository/id", "RID"),
            ("/workflow/id", "WFID"),
            ("/workflow/name", "WFNAME"),
        ],
        "pull_request" => vec![
            ("/pull_request/id", "OID"),
            ("/pull_request/number", "NUM"),
            ("/number", "NUM"),
            ("/pull_request/head/sha", "SHA"),
            ("/pull_request/updated_at", "TIME"),
        ],
        "pull_request_review" => vec![
            ("/review/id", "OID"),
            ("/pull_request/number", "NUM"),
            ("/pull_request/head/sha", "SHA"),
            ("/review/commit_id", "SHA"),
            ("/review/submitted_at", "TIME"),
        ],
        "issue_comment" => {
            vec![
                ("/comment/id", "OID"),
                ("/issue/number", "NUM"),
                ("/comment/created_at", "TIME"),
                ("/comment/updated_at", "TIME"),
            ]
        }
        "issues" => vec![("/issue/id", "OID"), ("/issue/number", "NUM"), ("/issue/updated_at", "TIME")],
        "push" => vec![("/after", "SHA"), ("/head_commit/id", "SHA"), ("/head_commit/timestamp", "TIME")],
        "deployment_status" => vec![
            ("/deployment_status/id", "OID"),
            ("/deployment/sha", "SHA"),
            ("/deployment_status/updated_at", "TIME"),
        ],
        _ => vec![],
    });
    p
}

impl Template {
    fn load(event: &'static str, file: String, text: &str) -> Result<Template> {
        let mut v: Value = serde_json::from_str(text).with_context(|| format!("fixture {file}"))?;
        let original_full = v.pointer("/repository/full_name").and_then(Value::as_str).map(str::to_string);
        if v.pointer("/installation/id").is_none() {
            v["installation"] = json!({ "id": 0 });
        }
        let completed_run = event == "workflow_run" && v["action"] == "completed";
        if event == "workflow_run" {
            v["workflow_run"]["run_attempt"] = json!(1);
            if completed_run {
                v["workflow_run"]["conclusion"] = json!("@@CONCL@@");
                v["workflow_run"]["status"] = json!("completed");
            }
        }
        for (ptr, var) in pointers(event) {
            if let Some(slot) = v.pointer_mut(ptr) {
                *slot = Value::String(format!("@@{var}@@"));
            }
        }
        let numbered = v.pointer("/issue/number").is_some() || v.pointer("/pull_request/number").is_some();
        let action = v.get("action").and_then(Value::as_str).map(str::to_string);
        let mut text = serde_json::to_string(&v)?;
        if let Some(full) = original_full.filter(|f| !f.is_empty()) {
            text = text.replace(&full, "@@FULL@@"); // the repository's URLs
        }
        let parts = split_markers(&text)?;
        if !parts.iter().any(|p| matches!(p, Part::Var(Var::Oid | Var::Sha))) {
            bail!("fixture {file}: no object id or SHA to make its bodies unique");
        }
        let size = text.len();
        Ok(Template { event, file, action, numbered, completed_run, parts, size })
    }

    fn render(&self, vals: &Vals<'_>, out: &mut String) {
        out.clear();
        out.reserve(self.size + 256);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => vals.write(*v, out),
            }
        }
    }
}

fn split_markers(text: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("@@") {
        let after = &rest[at + 2..];
        let end = after.find("@@").ok_or_else(|| anyhow!("unterminated marker"))?;
        let name = &after[..end];
        let Some(&(_, var, numeric)) = VARS.iter().find(|(n, _, _)| *n == name) else {
            bail!("unknown marker @@{name}@@");
        };
        let mut lit = &rest[..at];
        let mut tail = &after[end + 2..];
        if numeric {
            // "@@X@@" → a bare number: drop the quotes around the marker.
            lit = lit.strip_suffix('"').ok_or_else(|| anyhow!("numeric marker @@{name}@@ not quoted"))?;
            tail = tail.strip_prefix('"').ok_or_else(|| anyhow!("numeric marker @@{name}@@ not quoted"))?;
        }
        parts.push(Part::Lit(lit.to_string()));
        parts.push(Part::Var(var));
        rest = tail;
    }
    parts.push(Part::Lit(rest.to_string()));
    Ok(parts)
}

/// The values of one delivery.
struct Vals<'a> {
    inst: i64,
    repo: &'a Repo,
    oid: i64,
    sha: &'a str,
    time: &'a str,
    number: i64,
    sender: &'a Person,
    wf_id: i64,
    wf_name: &'a str,
    branch: &'a str,
    run_no: i64,
    concl: &'a str,
    event: &'a str,
}

impl Vals<'_> {
    fn write(&self, v: Var, out: &mut String) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = match v {
            Var::Inst => write!(out, "{}", self.inst),
            Var::RepoId => write!(out, "{}", self.repo.id),
            Var::Full => out.write_str(&self.repo.full),
            Var::Name => out.write_str(&self.repo.name),
            Var::Owner => out.write_str(&self.repo.owner),
            Var::Oid => write!(out, "{}", self.oid),
            Var::Sha => out.write_str(self.sha),
            Var::Time => out.write_str(self.time),
            Var::Number => write!(out, "{}", self.number),
            Var::SenderId => write!(out, "{}", self.sender.id),
            Var::SenderLogin => out.write_str(&self.sender.login),
            Var::WfId => write!(out, "{}", self.wf_id),
            Var::WfName => out.write_str(self.wf_name),
            Var::Branch => out.write_str(self.branch),
            Var::RunNo => write!(out, "{}", self.run_no),
            Var::Concl => out.write_str(self.concl),
            Var::Event => out.write_str(self.event),
        };
    }
}

/// The event mix (per cent), like an organisation's with CI on every push and PR.
const EVENT_MIX: &[(&str, f64)] = &[
    ("check_run", 30.0),
    ("status", 20.0),
    ("workflow_run", 13.0),
    ("pull_request", 10.0),
    ("push", 7.0),
    ("check_suite", 7.0),
    ("issue_comment", 6.0),
    ("issues", 3.0),
    ("pull_request_review", 2.0),
    ("deployment_status", 2.0),
];

/// How common an action is within its event (1 when not listed): a check run is created and
/// completed far more often than it is re-requested, a PR synchronized more than it is opened.
const ACTION_WEIGHTS: &[(&str, &str, f64)] = &[
    ("check_run", "created", 45.0),
    ("check_run", "completed", 50.0),
    ("check_run", "rerequested", 4.0),
    ("check_suite", "completed", 50.0),
    ("check_suite", "requested", 45.0),
    ("check_suite", "rerequested", 5.0),
    ("pull_request", "synchronize", 30.0),
    ("pull_request", "opened", 10.0),
    ("pull_request", "closed", 10.0),
    ("pull_request", "labeled", 6.0),
    ("pull_request", "review_requested", 6.0),
    ("pull_request", "ready_for_review", 3.0),
    ("pull_request", "reopened", 0.5),
    ("pull_request", "locked", 0.2),
    ("pull_request", "unlocked", 0.2),
    ("issues", "opened", 10.0),
    ("issues", "labeled", 8.0),
    ("issues", "edited", 6.0),
    ("issues", "assigned", 4.0),
    ("issues", "deleted", 0.2),
    ("issues", "transferred", 0.2),
    ("issue_comment", "created", 20.0),
    ("issue_comment", "edited", 2.0),
    ("pull_request_review", "submitted", 10.0),
];

struct Templates {
    all: Vec<Template>,
    /// Per entry of EVENT_MIX: the indices of its templates, and their cumulative weights.
    by_event: Vec<(Vec<usize>, Vec<f64>)>,
    mix: Vec<f64>,
}

fn load_templates() -> Result<Templates> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    let mut by_event = Vec::new();
    for (event, _) in EVENT_MIX {
        let mut ix = Vec::new();
        for f in files.iter().filter(|f| f.split('.').next() == Some(event)) {
            let text = std::fs::read_to_string(dir.join(f))?;
            ix.push(all.len());
            all.push(Template::load(event, f.clone(), &text)?);
        }
        if ix.is_empty() {
            bail!("no fixture for {event} in {}", dir.display());
        }
        // Each action's weight, shared among its fixtures.
        let action = |k: &usize| all[*k].action.clone().unwrap_or_default();
        let weights = ix.iter().map(|k| {
            let a = action(k);
            let w = ACTION_WEIGHTS.iter().find(|(e, x, _)| e == event && *x == a).map_or(1.0, |(_, _, w)| *w);
            w / ix.iter().filter(|j| action(j) == a).count() as f64
        });
        let weights = cumulate(weights);
        by_event.push((ix, weights));
    }
    Ok(Templates { all, by_event, mix: cumulate(EVENT_MIX.iter().map(|(_, w)| *w)) })
}

// ------------------------------------------------------------------------------------------------
// Deliveries
// ------------------------------------------------------------------------------------------------

/// How the worker finished one delivery.
struct Finish {
    started_at: i64,
    finished_at: i64,
    outcome: &'static str,
    /// The run the CI handler records for a completed workflow run.
    run: Option<RunRow>,
}

struct Batch {
    rows: Vec<NewDelivery>,
    finish: Vec<Finish>,
    worker: String,
    /// A claim at this time sees every row of the batch as due.
    claim_at: i64,
    /// Holds some of the newest `--recent` deliveries.
    recent: bool,
    body_bytes: u64,
    stored_bytes: u64,
}

struct DeliveryPlan {
    total: u64,
    recent: u64,
    batch: usize,
    start: i64,
    now: i64,
    seed: u64,
}

/// Makes the deliveries, in batches, on a thread of its own (bodies, hashes and compression take
/// about as much CPU as storing them).
fn generate_deliveries(
    mut rng: Rng,
    world: &World,
    templates: &Templates,
    plan: &DeliveryPlan,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    let recent = plan.recent.min(plan.total);
    let older = plan.total - recent;
    let calendar = Calendar::new(plan.start, plan.now - HOUR);
    // The workers that ran: two replicas, a new process every few days (deploys).
    let generations = (((plan.now - plan.start) / (3 * DAY)) + 1) as usize;
    let workers: Vec<[String; 2]> = (0..generations)
        .map(|_| {
            let pid = 1 + rng.u32(1..60_000);
            [
                format!("shipgate-{:x}-{pid}-worker-{:08x}", rng.u32(..), rng.u32(..)),
                format!("shipgate-{:x}-{}-worker-{:08x}", rng.u32(..), pid + 1, rng.u32(..)),
            ]
        })
        .collect();
    let salt = mix64(plan.seed);
    let mut body = String::new();
    let mut i = 0u64;
    let mut batch_no = 0usize;
    let mut checked = vec![false; templates.all.len()];
    while i < plan.total {
        let n = (plan.total - i).min(plan.batch as u64) as usize;
        let mut batch = Batch {
            rows: Vec::with_capacity(n),
            finish: Vec::with_capacity(n),
            worker: String::new(),
            claim_at: 0,
            recent: false,
            body_bytes: 0,
            stored_bytes: 0,
        };
        for _ in 0..n {
            let received_at = if i < older {
                calendar.at((i as f64 + rng.f64()) / older as f64)
            } else {
                let k = i - older;
                plan.now - HOUR + ((k as f64 + rng.f64()) / recent as f64 * (HOUR - 1_000) as f64) as i64
            };
            let r = world.pick_repo(&mut rng);
            let repo = &world.repos[r];
            let inst = &world.insts[repo.inst];
            let e = pick(&mut rng, &templates.mix);
            let (group, weights) = &templates.by_event[e];
            let ti = group[pick(&mut rng, weights)];
            let tpl = &templates.all[ti];
            let sha = sha_for(&mut rng, salt, i);
            let frac = (received_at - plan.start) as f64 / (plan.now - plan.start) as f64;
            let number = ((repo.numbers as f64 * frac) as i64 - rng.i64(0..40)).max(1);
            let sender = &inst.people[rng.usize(..inst.people.len())];
            let wf = rng.usize(..repo.workflows);
            let on_main = rng.f64() < 0.55;
            let branch = if on_main { "main".to_string() } else { format!("feature/{}-{}", SERVICES[wf], number) };
            let concl = match rng.u32(0..100) {
                0..82 => "success",
                82..93 => "failure",
                93..98 => "cancelled",
                _ => "skipped",
            };
            let wf_id = 20_000_000 + r as i64 * 16 + wf as i64;
            let run_no = 100 + (received_at - plan.start) / MINUTE / 7 + wf as i64;
            let oid = 3_000_000_000 + i as i64;
            let time = rfc3339(received_at - rng.i64(1_000..20_000));
            let vals = Vals {
                inst: inst.id,
                repo,
                oid,
                sha: &sha,
                time: &time,
                number,
                sender,
                wf_id,
                wf_name: WORKFLOWS[wf],
                branch: &branch,
                run_no,
                concl,
                event: if on_main { "push" } else { "pull_request" },
            };
            tpl.render(&vals, &mut body);
            let subject = if tpl.numbered {
                format!("repo:{}#{number}", repo.id)
            } else if matches!(tpl.event, "check_run" | "check_suite" | "status") {
                // A repository's check events are ordered per commit (`Envelope::subject`).
                format!("repo:{}@{}", repo.id, sha.to_ascii_lowercase())
            } else {
                format!("repo:{}", repo.id)
            };
            let d = NewDelivery {
                id: guid(&mut rng),
                event: tpl.event.to_string(),
                action: tpl.action.clone(),
                installation_id: Some(inst.id),
                repository: Some(repo.full.clone()),
                subject,
                received_at,
                body_key: deliveries::body_key(&body),
                body_lz4: Some(deliveries::compress(&body)),
                body: String::new(),
            };
            // What the intake would have made of this body (each template once, then now and then).
            if !checked[ti] || i.is_multiple_of(4096) {
                checked[ti] = true;
                check_envelope(tpl, &body, &d)?;
            }
            batch.body_bytes += body.len() as u64;
            batch.stored_bytes += d.body_lz4.as_ref().map_or(0, |z| z.len() as u64);
            let started_at =
                received_at + if rng.f64() < 0.05 { dur(&mut rng, 200, 5_000) } else { dur(&mut rng, 2, 60) };
            let finished_at = (started_at
                + if rng.f64() < 0.12 { dur(&mut rng, 100, 3_000) } else { dur(&mut rng, 3, 80) })
            .min(plan.now);
            let started_at = started_at.min(finished_at);
            let outcome = match tpl.event {
                "check_run" | "status" | "check_suite" => match rng.u32(0..100) {
                    0..72 => "ok",
                    72..92 => "absorbed",
                    _ => "ignored",
                },
                "workflow_run" | "pull_request" | "issues" | "issue_comment" => "ok",
                _ => {
                    if rng.u32(0..100) < 95 {
                        "ok"
                    } else {
                        "ignored"
                    }
                }
            };
            let run = tpl.completed_run.then(|| {
                let kind = match concl {
                    "success" => "success",
                    "failure" => "failure",
                    _ => "ignored",
                };
                let failed_jobs = if kind == "failure" {
                    serde_json::to_string(&[failed_job(&mut rng, repo, oid)]).unwrap_or_else(|_| "[]".into())
                } else {
                    "[]".into()
                };
                RunRow {
                    installation_id: inst.id,
                    repository_id: repo.id,
                    run_id: oid,
                    attempt: 1,
                    run_number: run_no,
                    workflow_id: wf_id,
                    workflow: WORKFLOWS[wf].to_string(),
                    lane: format!("{}:{branch}", repo.id),
                    branch: branch.clone(),
                    head_sha: sha.clone(),
                    event: vals.event.to_string(),
                    conclusion: concl.to_string(),
                    kind: kind.to_string(),
                    started_at: received_at - dur(&mut rng, MINUTE, 25 * MINUTE),
                    completed_at: received_at - rng.i64(1_000..20_000),
                    failed_jobs,
                    incident_branch: i64::from(branch == "main"),
                }
            });
            batch.claim_at = batch.claim_at.max(received_at);
            batch.recent |= i >= older;
            batch.rows.push(d);
            batch.finish.push(Finish { started_at, finished_at, outcome, run });
            i += 1;
        }
        let generation = ((batch.claim_at - plan.start) / (3 * DAY)).clamp(0, generations as i64 - 1) as usize;
        batch.worker = workers[generation][batch_no % 2].clone();
        batch_no += 1;
        if tx.blocking_send(batch).is_err() {
            return Ok(()); // the writer stopped (and says why)
        }
    }
    Ok(())
}

fn failed_job(rng: &mut Rng, repo: &Repo, run_id: i64) -> FailedJob {
    let (name, category) =
        [("test", "Test"), ("lint", "Lint"), ("build", "Build"), ("typecheck", "Type-check")][rng.usize(..4)];
    let id = 9_000_000_000 + run_id % 1_000_000_000 * 3 + rng.i64(0..3);
    FailedJob {
        id,
        name: name.to_string(),
        url: format!("https://github.com/{}/actions/runs/{run_id}/job/{id}", repo.full),
        conclusion: "failure".into(),
        category: category.into(),
        steps: vec![FailedStep { number: 4 + rng.i64(0..4), name: format!("Run {name}"), category: category.into() }],
    }
}

fn check_envelope(tpl: &Template, body: &str, d: &NewDelivery) -> Result<()> {
    let env = Envelope::parse(body.as_bytes()).map_err(|e| anyhow!("{}: {e}", tpl.file))?;
    let same = env.subject(&d.event) == d.subject
        && env.action == d.action
        && env.installation.map(|i| i.id) == d.installation_id
        && env.repository.map(|r| r.full_name) == d.repository;
    if !same {
        bail!("{}: the intake would read this body differently than generated ({})", tpl.file, d.subject);
    }
    Ok(())
}

/// How deliveries end `done` (`--finish`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FinishMode {
    /// The worker's own path: `deliveries::QUEUE.claim_in`, then `deliveries::complete` per
    /// delivery (which records its attempt and readies the subject's next delivery).
    Worker,
    /// The fallback (see `finish_by_update`): one narrow UPDATE per 64 deliveries sets what the
    /// worker's claim and finish leave changed (state, outcome, finished_at, attempts, blocked);
    /// no `delivery_attempts` rows. The batches that hold the newest `--recent` deliveries (the
    /// live-looking inbox) still go through the worker's path.
    Update,
}

/// Stores the batches as the intake does (`insert_batch_in`), then finishes them (`--finish`),
/// one transaction per batch.
async fn write_deliveries(
    db: &Db,
    mut rx: tokio::sync::mpsc::Receiver<Batch>,
    total: u64,
    mode: FinishMode,
    retention: Option<i64>,
) -> Result<DeliveryStats> {
    let mut stats = DeliveryStats::default();
    let mut progress = Progress::new("deliveries", total);
    let mut conn = fill_writer(db).await?;
    let mut batches = 0u64;
    let mut pruned_at = i64::MIN;
    while let Some(batch) = rx.recv().await {
        batches += 1;
        // `--prune daily`: the App's prune once a day of the fill's time, on the writer (given
        // back for it: on SQLite it is the one connection writes go through).
        if let Some(retention) = retention
            && batch.claim_at >= pruned_at.saturating_add(DAY)
        {
            pruned_at = batch.claim_at;
            drop(conn);
            stats.dropped_daily += deliveries::drop_bodies(db, batch.claim_at - retention, 1000).await?;
            conn = fill_writer(db).await?;
        }
        if db.backend() == Backend::Postgres && (batches.is_power_of_two() || batches.is_multiple_of(64)) {
            // A server with autovacuum off (this machine's) never analyzes the inbox: each
            // connection keeps the plan of its foreign-key check from when the table had a page
            // or two, a sequential scan, and each body's insert read the whole inbox (41,165 scans
            // of 838 million rows for the first 40,000 deliveries, ~400 a second and falling).
            // An ANALYZE makes the backends plan again; the VACUUM clears the rows each finish
            // leaves behind. Often at first, then every 64 batches.
            sqlx::query("VACUUM ANALYZE deliveries, delivery_bodies").execute(db.pool()).await?;
        }
        let mut tx = db.begin_on(&mut conn).await?;
        // The intake's insert, a few rows per statement: with SQLite every `$n` parameter of a
        // statement costs time linear in the statement's parameter count (SQLite looks the name up
        // in a list when it parses the statement, and sqlx asks each parameter's name when it
        // binds), so the 2,560 parameters of a full 256-row chunk cost ~370 µs a row, 32 rows per
        // statement ~50 µs.
        let refs: Vec<&NewDelivery> = batch.rows.iter().collect();
        let mut outcomes = Vec::with_capacity(refs.len());
        for part in refs.chunks(INSERT_ROWS) {
            outcomes.extend(deliveries::insert_batch_in(&mut tx, part).await?);
        }
        let mut by_seq: HashMap<i64, usize> = HashMap::with_capacity(outcomes.len());
        for (k, o) in outcomes.into_iter().enumerate() {
            match o {
                InsertOutcome::Stored(seq) => by_seq.insert(seq, k),
                other => bail!("delivery {} was not stored: {other:?} (is the database new?)", batch.rows[k].id),
            };
        }
        if mode == FinishMode::Worker || batch.recent {
            finish_as_worker(db, &mut tx, &batch, &by_seq, &mut stats).await?;
            stats.by_worker += batch.rows.len() as u64;
        } else {
            finish_by_update(&mut tx, &batch, &by_seq).await?;
        }
        // The CI handler's effect of a completed workflow run, in the completion's transaction.
        for f in &batch.finish {
            if let Some(run) = &f.run {
                incidents::apply(&mut tx, &Change::Run(run.clone()), f.finished_at).await?;
                stats.runs += 1;
            }
        }
        tx.commit().await?;
        stats.rows += batch.rows.len() as u64;
        stats.body_bytes += batch.body_bytes;
        stats.stored_bytes += batch.stored_bytes;
        progress.tick(stats.rows);
    }
    Ok(stats)
}

/// The writer the fill's batches go through. On SQLite with a page cache of 1 GB (SQLite's
/// default is 2 MB): a batch's rows are written, claimed and finished in one transaction, and the
/// delivery ids are random keys that touch pages all over their index.
async fn fill_writer(db: &Db) -> Result<sqlx::pool::PoolConnection<Any>> {
    let mut conn = db.acquire_writer().await?;
    if db.backend() == Backend::Sqlite {
        sqlx::query("PRAGMA cache_size = -1048576").execute(&mut *conn).await?;
    }
    Ok(conn)
}

/// Claims and completes the batch's deliveries as the worker does. Only the oldest open delivery
/// of a subject is claimable, so a batch with several deliveries of one subject takes one claim
/// per delivery of its busiest subject.
async fn finish_as_worker(
    db: &Db,
    tx: &mut Transaction<'_, Any>,
    batch: &Batch,
    by_seq: &HashMap<i64, usize>,
    stats: &mut DeliveryStats,
) -> Result<()> {
    let mut left = by_seq.len();
    while left > 0 {
        let claimed: Vec<Claimed> =
            deliveries::QUEUE.claim_in(tx, db.backend(), &batch.worker, batch.claim_at, LEASE_MS, left as i64).await?;
        if claimed.is_empty() {
            bail!("{left} deliveries of the batch are stored but none can be claimed");
        }
        stats.claims += 1;
        for c in &claimed {
            let f = &batch.finish[by_seq[&c.seq]];
            if !deliveries::complete(tx, c, &batch.worker, f.started_at, f.finished_at, f.outcome).await? {
                bail!("delivery {} lost its lease", c.id);
            }
        }
        left -= claimed.len();
    }
    Ok(())
}

/// The fallback for `--finish update`. Hand-written, because the store has no bulk path: the
/// worker's (`Queue::claim` + `Queue::finish` + the attempt's INSERT) is three or four statements
/// per delivery, and each statement is a round trip to SQLite's connection thread (~55 µs on a
/// 2-core VM when the two threads are on different CPUs) or to PostgreSQL. It changes only the
/// columns the worker's claim and finish leave changed; rows are left as the worker leaves them
/// except that no `delivery_attempts` row is written.
async fn finish_by_update(tx: &mut Transaction<'_, Any>, batch: &Batch, by_seq: &HashMap<i64, usize>) -> Result<()> {
    let mut rows: Vec<(i64, usize)> = by_seq.iter().map(|(s, k)| (*s, *k)).collect();
    rows.sort_unstable();
    for part in rows.chunks(64) {
        let values: Vec<String> =
            (0..part.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
        let sql = format!(
            "WITH f (seq, outcome, finished_at) AS (VALUES {}) \
             UPDATE deliveries SET state = 'done', attempts = 1, blocked = 0, \
             outcome = (SELECT f.outcome FROM f WHERE f.seq = deliveries.seq), \
             finished_at = (SELECT f.finished_at FROM f WHERE f.seq = deliveries.seq) \
             WHERE seq IN (SELECT f.seq FROM f) AND state = 'pending'",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, k) in part {
            let f = &batch.finish[*k];
            q = q.bind(*seq).bind(f.outcome).bind(f.finished_at);
        }
        let r = q.execute(&mut **tx).await?;
        if r.rows_affected() != part.len() as u64 {
            bail!("finished {} of {} deliveries", r.rows_affected(), part.len());
        }
    }
    Ok(())
}

#[derive(Default)]
struct DeliveryStats {
    rows: u64,
    /// Finished through the worker's path (the rest by the fallback UPDATE).
    by_worker: u64,
    claims: u64,
    runs: u64,
    body_bytes: u64,
    stored_bytes: u64,
    /// Bodies dropped by `--prune daily` during the fill.
    dropped_daily: u64,
}

// ------------------------------------------------------------------------------------------------
// Installations, repositories, policies
// ------------------------------------------------------------------------------------------------

async fn write_tenancy(db: &Db, world: &World, start: i64) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let permissions = json!({ "issues": "write", "pull_requests": "write", "checks": "write", "statuses": "read",
        "contents": "read", "deployments": "write", "actions": "write", "members": "read", "metadata": "read",
        "vulnerability_alerts": "read", "security_events": "read", "secret_scanning_alerts": "read" });
    let events = json!([
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "dependabot_alert",
        "deployment",
        "deployment_protection_rule",
        "deployment_status",
        "issue_comment",
        "issues",
        "membership",
        "pull_request",
        "pull_request_review",
        "push",
        "secret_scanning_alert",
        "status",
        "team",
        "workflow_run"
    ]);
    for (i, inst) in world.insts.iter().enumerate() {
        let record = InstallationRecord {
            id: inst.id,
            account_id: 900_000 + i as i64 * 37,
            account_login: inst.login.clone(),
            account_type: Some("Organization".into()),
            repository_selection: Some(if i % 3 == 0 { "all" } else { "selected" }.into()),
            permissions: permissions.to_string(),
            events: events.to_string(),
        };
        tenancy::upsert_installation(&mut tx, &record, inst.installed_at).await?;
        let repos: Vec<RepositoryRecord> = world
            .repos
            .iter()
            .filter(|r| r.inst == i)
            .map(|r| RepositoryRecord { id: r.id, full_name: r.full.clone(), private: r.private })
            .collect();
        tenancy::upsert_repositories(&mut tx, inst.id, &repos, inst.installed_at).await?;
    }
    for r in &world.repos {
        let inst = &world.insts[r.inst];
        let etag = format!("\"{}\"", &inst.policy_blob[..32]);
        let fetched = start + (mix64(r.id as u64) % (DAY as u64 * 30)) as i64;
        let (yaml, etag) = (Some(inst.policy_yaml.as_str()), Some(etag.as_str()));
        requests::save_policy(&mut tx, inst.id, r.id, &inst.policy_blob, yaml, etag, fetched).await?;
    }
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Requests, approvals, deployments and the audit log
// ------------------------------------------------------------------------------------------------

/// How a request's story ends (for now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    // Closed.
    Deployed,
    Abandoned,
    DeniedClosed,
    FailedClosed,
    Unlabelled,
    // Open.
    Incomplete,
    Awaiting,
    Blocked,
    Approved,
    OnHold,
    Denied,
    Deploying,
    DeployedOpen,
    DeployFailed,
}

fn closed_fate(rng: &mut Rng) -> Fate {
    match rng.u32(0..100) {
        0..78 => Fate::Deployed,
        78..90 => Fate::Abandoned,
        90..94 => Fate::DeniedClosed,
        94..98 => Fate::FailedClosed,
        _ => Fate::Unlabelled,
    }
}

fn open_fate(rng: &mut Rng) -> Fate {
    match rng.u32(0..100) {
        0..6 => Fate::Incomplete,
        6..40 => Fate::Awaiting,
        40..50 => Fate::Blocked,
        50..66 => Fate::Approved,
        66..71 => Fate::OnHold,
        71..74 => Fate::Denied,
        74..80 => Fate::Deploying,
        80..92 => Fate::DeployedOpen,
        _ => Fate::DeployFailed,
    }
}

/// One audit entry to append, at its time.
struct AuditEvent {
    at: i64,
    order: u64,
    delivery: String,
    entry: AuditEntry,
}

struct RequestOut {
    row: RequestRow,
    links: Vec<(Link, String)>,
    /// Approvals as given, then as changed later (each saved at its time).
    approvals: Vec<(i64, ApprovalChange)>,
    /// Each status of its deployment, as recorded.
    deployment: Vec<DeploymentRow>,
    /// The deployment the App created: (key, id, when).
    created: Option<(String, i64, i64)>,
}

/// Builds requests in order of creation; their audit entries go to `audit`.
struct RequestMaker<'a> {
    rng: Rng,
    world: &'a World,
    comment_id: i64,
    deployment_id: i64,
    run_id: i64,
    audit: Vec<AuditEvent>,
}

impl RequestMaker<'_> {
    fn event(&mut self, at: i64, r: &RequestRow, kind: &str, actor: Option<&Person>, detail: Value) {
        let order = self.audit.len() as u64;
        let delivery = guid(&mut self.rng);
        self.audit.push(AuditEvent {
            at,
            order,
            delivery,
            entry: AuditEntry {
                installation_id: r.installation_id,
                repository_id: Some(r.repository_id),
                repository: Some(r.repository.clone()),
                issue: Some(r.issue),
                kind: kind.into(),
                actor_id: actor.map(|p| p.id),
                actor_login: actor.map(|p| p.login.clone()),
                detail,
            },
        });
    }

    fn make(&mut self, repo_ix: usize, number: i64, created: i64, fate: Fate) -> Result<RequestOut> {
        let world = self.world;
        let repo = &world.repos[repo_ix];
        let inst = &world.insts[repo.inst];
        let rng = &mut self.rng;
        let open = matches!(
            fate,
            Fate::Incomplete
                | Fate::Awaiting
                | Fate::Blocked
                | Fate::Approved
                | Fate::OnHold
                | Fate::Denied
                | Fate::Deploying
                | Fate::DeployedOpen
                | Fate::DeployFailed
        );
        // The first five people hold the policy's roles; the others ask and write the code.
        let author = inst.people[rng.usize(5..inst.people.len())].clone();
        let production = rng.f64() < 0.7;
        let env = if production { "production" } else { "staging" };
        // Its PRs (numbered just before the issue), or a commit.
        let n_prs = match rng.u32(0..100) {
            0..85 => 1,
            85..95 => 2,
            _ => 0,
        };
        let merged = matches!(fate, Fate::Deployed | Fate::FailedClosed | Fate::DeployedOpen | Fate::Deploying)
            || (matches!(fate, Fate::DeployFailed) && rng.bool());
        let mut prs = Vec::new();
        for k in 0..n_prs {
            let pr_author = &inst.people[rng.usize(5..inst.people.len())];
            let head = random_hex40(rng);
            let checks_done = !matches!(fate, Fate::Blocked | Fate::Incomplete) || rng.bool();
            let checks = (0..3 + rng.usize(0..3))
                .map(|c| {
                    let done = checks_done || c > 0;
                    CheckFact {
                        name: CHECKS[(c + k) % CHECKS.len()].to_string(),
                        status: if done { "completed" } else { "in_progress" }.into(),
                        conclusion: done.then(|| "success".to_string()),
                        run_id: (c < 3).then(|| 7_000_000_000 + rng.i64(0..1_000_000_000)),
                    }
                })
                .collect();
            prs.push(PrFacts {
                number: number - n_prs as i64 + k as i64,
                head_sha: head,
                author: GateUser { id: UserId(pr_author.id), login: pr_author.login.clone() },
                state: if merged { "merged" } else { "open" }.into(),
                files: None,
                checks,
                files_truncated: false,
                pushers: None,
                first_commit_at: None,
                merge_commit: merged.then(|| random_hex40(rng)),
                merged_at: merged.then_some(created + dur(rng, MINUTE, 2 * HOUR)),
                base_ref: Some("main".into()),
                default_branch: Some("main".into()),
            });
        }
        let commit = (n_prs == 0).then(|| random_hex40(rng));
        let pr_text = match &commit {
            Some(sha) => format!("https://github.com/{}/commit/{sha}", repo.full),
            None => prs.iter().map(|p| format!("#{}", p.number)).collect::<Vec<_>>().join(" "),
        };
        let body = format!(
            "CHANGE REQUEST:\n- Service/component: {}\n- Environment: {env}\n- Reason: {}\n\nIMPACT ANALYSIS:\n\
             - Downtime: none\n- Rollback time: {} min\n- Dependencies: none\n- Data migration: none\n\n\
             IMPLEMENTATION:\n1. Code changes {pr_text}\n4. Deployment steps: merge and deploy\n\
             5. Verification: smoke tests\n6. Rollback plan: revert the PR and redeploy\n",
            SERVICES[rng.usize(..SERVICES.len())],
            REASONS[rng.usize(..REASONS.len())],
            2 + rng.u32(0..10)
        );
        let parsed = request::parse(&body);
        let wanted: Vec<i64> = prs.iter().map(|p| p.number).collect();
        let got: Vec<i64> = parsed
            .pull_requests
            .iter()
            .map(|p| match p {
                request::PrRef::Number(n) | request::PrRef::Url { number: n, .. } => *n,
            })
            .collect();
        if got != wanted || parsed.commit != commit || parsed.environment.as_deref() != Some(env) {
            bail!("the request body does not parse as meant: {got:?} {:?} {:?}", parsed.commit, parsed.environment);
        }
        let heads: Vec<String> = prs.iter().map(|p| p.head_sha.clone()).collect();
        let mut links: Vec<(Link, String)> = prs.iter().map(|p| (Link::Pr, p.number.to_string())).collect();
        links.extend(heads.iter().map(|h| (Link::Sha, h.clone())));
        links.extend(prs.iter().filter_map(|p| p.merge_commit.clone()).map(|m| (Link::Sha, m)));
        links.extend(commit.iter().map(|c| (Link::Sha, c.clone())));
        let deploy_sha = prs
            .first()
            .and_then(|p| p.merge_commit.clone().or(Some(p.head_sha.clone())))
            .or(commit.clone())
            .unwrap_or_default();

        let mut row = RequestRow {
            installation_id: inst.id,
            repository_id: repo.id,
            repository: repo.full.clone(),
            issue: number,
            author_id: author.id,
            author_login: author.login.clone(),
            labelled: 1,
            open: 1,
            environment: Some(env.into()),
            fingerprint: parsed.fingerprint(Some(env)),
            revision: 1,
            state: "awaiting-approval".into(),
            facts: "{}".into(),
            labels: "[]".into(),
            created_at: created,
            updated_at: created,
            ..RequestRow::default()
        };
        let mut out = RequestOut { row: row.clone(), links, approvals: vec![], deployment: vec![], created: None };

        // The story, in time order.
        let mut t = created;
        let incomplete = fate == Fate::Incomplete;
        self.event(
            t,
            &row,
            "request.parsed",
            Some(&author),
            json!({ "environment": env, "pull_requests": wanted, "problems": if incomplete { 1 } else { 0 },
                    "revision": 1 }),
        );
        let roles: Vec<(&str, &[usize])> = if production {
            vec![("pm", &inst.pms), ("backend-lead", &inst.leads)]
        } else {
            vec![("backend-lead", &inst.leads)]
        };
        let n_approvals = match fate {
            Fate::Incomplete => 0,
            Fate::Awaiting | Fate::Abandoned => self.rng.usize(0..roles.len()),
            Fate::Unlabelled => self.rng.usize(0..=roles.len()),
            _ => roles.len(),
        };
        let mut approvals: Vec<ApprovalChange> = Vec::new();
        // Now and then the request is edited after a first approval: approvals go stale and are
        // given again.
        let revised = n_approvals > 0 && self.rng.u32(0..100) < 8;
        let give = |maker: &mut Self,
                    t: &mut i64,
                    row: &RequestRow,
                    approvals: &mut Vec<ApprovalChange>,
                    out: &mut RequestOut,
                    role: &str,
                    holders: &[usize]| {
            *t += dur(&mut maker.rng, 3 * MINUTE, 20 * HOUR);
            let who = &inst.people[holders[maker.rng.usize(..holders.len())]];
            maker.comment_id += 1 + maker.rng.i64(0..40);
            let a = ApprovalChange {
                installation_id: inst.id,
                repository_id: repo.id,
                issue: number,
                comment_id: maker.comment_id,
                user_id: who.id,
                login: who.login.clone(),
                roles: json!([role]).to_string(),
                environment: env.into(),
                head_shas: heads.join(","),
                revision: row.revision,
                state: shipgate::domain::state::ApprovalState::Active,
                note: None,
                given_at: None,
            };
            maker.event(
                *t,
                row,
                "approval.given",
                Some(who),
                json!({ "approver": a.login, "approver_id": a.user_id, "roles": a.roles, "environment": env,
                        "head_shas": a.head_shas, "revision": a.revision, "note": null, "comment_id": a.comment_id }),
            );
            out.approvals.push((*t, a.clone()));
            approvals.push(a);
        };
        if revised {
            give(self, &mut t, &row, &mut approvals, &mut out, roles[0].0, roles[0].1);
            t += dur(&mut self.rng, 10 * MINUTE, 6 * HOUR);
            row.revision += 1;
            self.event(t, &row, "request.revised", None, json!({ "revision": row.revision }));
            let note = "the request changed after it was given";
            self.stale(t, &row, &mut approvals, &mut out, note);
        }
        for (role, holders) in roles.iter().take(n_approvals) {
            give(self, &mut t, &row, &mut approvals, &mut out, role, holders);
        }
        let gate_opens = n_approvals == roles.len() && !matches!(fate, Fate::Blocked | Fate::Incomplete);
        if gate_opens {
            t += dur(&mut self.rng, 1_000, 30 * MINUTE);
            row.gate_open = 1;
            row.approved_at = Some(t);
            self.event(t, &row, "gate.opened", None, json!({ "missing": [], "heads": heads }));
        }
        match fate {
            Fate::OnHold => {
                t += dur(&mut self.rng, MINUTE, 4 * HOUR);
                let who = &inst.people[inst.leads[0]];
                row.hold_by = Some(who.login.clone());
                row.hold_by_id = Some(who.id);
                self.event(t, &row, "request.held", Some(who), json!({}));
                if row.gate_open == 1 {
                    row.gate_open = 0;
                    let missing = [format!("Hold: on hold by @{} (`/unhold` to release)", who.login)];
                    self.event(t, &row, "gate.closed", None, json!({ "missing": missing, "heads": heads }));
                }
            }
            Fate::Denied | Fate::DeniedClosed => {
                t += dur(&mut self.rng, MINUTE, 8 * HOUR);
                let who = &inst.people[inst.pms[0]];
                row.denied_by = Some(who.login.clone());
                row.denied_by_id = Some(who.id);
                row.deny_reason = Some("not during the freeze".into());
                self.event(t, &row, "request.denied", Some(who), json!({ "reason": row.deny_reason }));
                if row.gate_open == 1 {
                    row.gate_open = 0;
                    let missing = [format!("Hold: denied by @{}: not during the freeze", who.login)];
                    self.event(t, &row, "gate.closed", None, json!({ "missing": missing, "heads": heads }));
                }
            }
            _ => {}
        }
        // A deployment, asked for with /deploy by an approver.
        let deploys = matches!(
            fate,
            Fate::Deployed | Fate::FailedClosed | Fate::Deploying | Fate::DeployedOpen | Fate::DeployFailed
        );
        if deploys {
            t += dur(&mut self.rng, 2 * MINUTE, 20 * HOUR);
            let who = inst.people[inst.leads[self.rng.usize(..inst.leads.len())]].clone();
            self.comment_id += 1 + self.rng.i64(0..40);
            let key = format!("request-{number}-{}", self.comment_id);
            self.event(
                t,
                &row,
                "deployment.requested",
                Some(&who),
                json!({ "sha": deploy_sha, "environment": env, "key": key, "rollback_of": null,
                        "comment_id": self.comment_id }),
            );
            row.deploy_key = Some(key.clone());
            row.deploy_sha = Some(deploy_sha.clone());
            row.deploy_state = Some("requested".into());
            row.deploy_requested_at = Some(t);
            self.deployment_id += 1 + self.rng.i64(0..20);
            self.run_id += 1 + self.rng.i64(0..500);
            let id = self.deployment_id;
            let created_at = t + dur(&mut self.rng, 500, 5_000);
            out.created = Some((format!("{}:{key}", repo.full), id, created_at));
            let log_url = Some(format!("https://github.com/{}/actions/runs/{}", repo.full, self.run_id));
            let mut status_id = 2_000_000_000 + id * 4;
            let mut status = |state: &str, at: i64, started: Option<i64>, finished: Option<i64>| {
                status_id += 1;
                DeploymentRow {
                    installation_id: inst.id,
                    repository_id: repo.id,
                    deployment_id: id,
                    environment: env.into(),
                    sha: deploy_sha.clone(),
                    git_ref: Some(deploy_sha.clone()),
                    issue: Some(number),
                    state: state.into(),
                    status_at: at / 1000 * 1000, // GitHub's times have seconds only
                    status_id,
                    created_at,
                    started_at: started,
                    finished_at: finished,
                    origin: "app".into(),
                    log_url: log_url.clone(),
                    rollback: 0,
                }
            };
            let started = created_at + dur(&mut self.rng, 2_000, 90_000);
            out.deployment.push(status("in_progress", started, Some(started), None));
            row.deployment_id = Some(id);
            row.deploy_state = Some("in_progress".into());
            t = started + 1_500;
            self.event(
                t,
                &row,
                "deployment.status",
                None,
                json!({ "deployment_id": id, "state": "in_progress", "sha": deploy_sha, "environment": env }),
            );
            if fate != Fate::Deploying {
                let ok = matches!(fate, Fate::Deployed | Fate::DeployedOpen);
                let state = if ok { "success" } else { "failure" };
                let ended = started + dur(&mut self.rng, MINUTE, 25 * MINUTE);
                out.deployment.push(status(state, ended, None, Some(ended)));
                row.deploy_state = Some(state.into());
                t = ended + 1_500;
                self.event(
                    t,
                    &row,
                    "deployment.status",
                    None,
                    json!({ "deployment_id": id, "state": state, "sha": deploy_sha, "environment": env }),
                );
                if fate == Fate::Deployed {
                    // Finished: the App closes the request with its summary.
                    row.open = 0;
                    self.close(t + 800, &mut row, &mut approvals, &mut out, &heads, json!({ "by": "shipgate",
                        "deployment_id": id, "time_to_deploy_ms": ended - created, "deployment_duration_ms": ended - created_at }));
                    t += 800;
                }
            }
        }
        match fate {
            Fate::Abandoned | Fate::DeniedClosed | Fate::FailedClosed => {
                t += dur(&mut self.rng, 30 * MINUTE, 12 * DAY);
                row.open = 0;
                self.close(t, &mut row, &mut approvals, &mut out, &heads, json!({ "open": false, "labelled": true }));
            }
            Fate::Unlabelled => {
                t += dur(&mut self.rng, 30 * MINUTE, 5 * DAY);
                row.labelled = 0;
                self.close(t, &mut row, &mut approvals, &mut out, &heads, json!({ "open": true, "labelled": false }));
            }
            _ => {}
        }
        row.state = match fate {
            Fate::Deployed | Fate::Abandoned | Fate::DeniedClosed | Fate::FailedClosed | Fate::Unlabelled => "closed",
            Fate::Incomplete => "incomplete",
            Fate::Awaiting => "awaiting-approval",
            Fate::Blocked => "blocked",
            Fate::Approved => "approved",
            Fate::OnHold => "on-hold",
            Fate::Denied => "denied",
            Fate::Deploying => "deploying",
            Fate::DeployedOpen => "deployed",
            Fate::DeployFailed => "deploy-failed",
        }
        .into();
        if open && row.open == 0 {
            bail!("an open request was closed");
        }
        row.updated_at = t;
        let remembered = Remembered {
            prs,
            missing_prs: vec![],
            review_approved: gate_opens || self.rng.bool(),
            commit,
            shown: random_hex64(&mut self.rng),
            active_since: Some(created / 1000 * 1000),
            issue_updated_at: Some(t / 1000 * 1000),
            ..Remembered::default()
        };
        row.facts = serde_json::to_string(&remembered)?;
        out.row = row;
        Ok(out)
    }

    /// The request's approvals go stale (a new revision): saved and audited.
    fn stale(
        &mut self,
        t: i64,
        row: &RequestRow,
        approvals: &mut Vec<ApprovalChange>,
        out: &mut RequestOut,
        note: &str,
    ) {
        for mut a in approvals.drain(..) {
            a.state = shipgate::domain::state::ApprovalState::Stale;
            a.note = Some(note.into());
            self.event(
                t,
                row,
                "approval.stale",
                None,
                json!({ "approver": a.login, "approver_id": a.user_id, "roles": a.roles, "environment": a.environment,
                        "head_shas": a.head_shas, "revision": a.revision, "note": a.note, "comment_id": a.comment_id }),
            );
            out.approvals.push((t, a));
        }
    }

    /// Closed or unlabelled: a new revision (approvals start over), the gate closes.
    fn close(
        &mut self,
        t: i64,
        row: &mut RequestRow,
        approvals: &mut Vec<ApprovalChange>,
        out: &mut RequestOut,
        heads: &[String],
        closed: Value,
    ) {
        row.revision += 1;
        self.event(t, row, "request.revised", None, json!({ "revision": row.revision }));
        self.event(t, row, "request.closed", None, closed);
        if row.gate_open == 1 {
            row.gate_open = 0;
            let missing = ["Request: the request is closed"];
            self.event(t, row, "gate.closed", None, json!({ "missing": missing, "heads": heads }));
        }
        self.stale(t, row, approvals, out, "the request was closed or unlabelled");
    }
}

struct RequestStats {
    requests: u64,
    approvals: u64,
    deployments: u64,
    audit: u64,
}

async fn write_requests(db: &Db, rng: &mut Rng, world: &World, args: &Args, now: i64) -> Result<RequestStats> {
    let start = now - args.days * DAY;
    let open_n = args.open.min(args.requests);
    // When each request was opened: closed ones over the whole period (ending early enough to
    // have been closed), open ones mostly in the last weeks.
    let calendar = Calendar::new(start, now - 2 * DAY);
    let mut plans: Vec<(i64, usize, Fate)> = (0..args.requests)
        .map(|k| {
            let repo = world.pick_repo(rng);
            if k < open_n {
                let age = (30.0 * DAY as f64 * rng.f64().powi(2)) as i64 + 20 * MINUTE;
                let t = (now - age).max(start);
                (t - t.rem_euclid(1000), repo, open_fate(rng))
            } else {
                let t = (calendar.random(rng) - 21 * DAY).max(start);
                (t - t.rem_euclid(1000), repo, closed_fate(rng))
            }
        })
        .collect();
    plans.sort_by_key(|p| p.0);
    let mut maker = RequestMaker {
        rng: rng.fork(),
        world,
        comment_id: 1_500_000_000,
        deployment_id: 800_000_000,
        run_id: 6_000_000_000,
        audit: Vec::new(),
    };
    let mut outs = Vec::with_capacity(plans.len());
    let mut numbers: Vec<i64> = world.repos.iter().map(|r| r.next_number).collect();
    for (created, repo, fate) in plans {
        // Issue and PR numbers rise with time in each repository (other issues and PRs between).
        numbers[repo] += 3 + maker.rng.i64(0..12);
        // A story that would run past the end of the history is told again, as much earlier as
        // it overran: the same draws (the generator is put back where it was), all times shifted.
        let (state, ids, events) =
            (maker.rng.get_seed(), (maker.comment_id, maker.deployment_id, maker.run_id), maker.audit.len());
        let mut out = maker.make(repo, numbers[repo], created, fate)?;
        let overrun = out.row.updated_at - (now - 1_000);
        if overrun > 0 {
            maker.rng.seed(state);
            (maker.comment_id, maker.deployment_id, maker.run_id) = ids;
            maker.audit.truncate(events);
            out = maker.make(repo, numbers[repo], created - overrun, fate)?;
        }
        outs.push(out);
    }
    let mut audit_events = std::mem::take(&mut maker.audit);

    let mut stats = RequestStats { requests: 0, approvals: 0, deployments: 0, audit: 0 };
    let mut progress = Progress::new("requests", outs.len() as u64);
    for chunk in outs.chunks(2_000) {
        let mut tx = db.begin_write().await?;
        for o in chunk {
            requests::save(&mut tx, &o.row).await?;
            requests::save_links(&mut tx, o.row.installation_id, o.row.repository_id, o.row.issue, &o.links).await?;
            for (at, a) in &o.approvals {
                requests::save_approval(&mut tx, a, *at).await?;
            }
            // Each approval given is saved active first (then again when it goes stale).
            stats.approvals += o.approvals.iter().filter(|(_, a)| a.state.as_str() == "active").count() as u64;
            for d in &o.deployment {
                deploys::record(&mut tx, d).await?;
            }
            stats.deployments += (!o.deployment.is_empty()) as u64;
        }
        tx.commit().await?;
        stats.requests += chunk.len() as u64;
        progress.tick(stats.requests);
    }
    // What the relay records when it has created a deployment (its own commit each): only for the
    // open requests, the ones the App may still look up.
    for o in outs.iter().filter(|o| o.row.open == 1 && o.row.labelled == 1) {
        if let Some((key, id, at)) = &o.created {
            objects::put(db, o.row.installation_id, "deployment", key, *id, *at).await?;
        }
    }

    // The audit log, in time order (each installation's chain is then in order of time).
    audit_events.sort_by_key(|e| (e.at, e.order));
    let mut progress = Progress::new("audit", audit_events.len() as u64);
    // Sealed under the tests' key, which bench/scale.sh gives the App it starts on this database.
    let key = audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY);
    for chunk in audit_events.chunks(5_000) {
        let mut tx = db.begin_write().await?;
        for e in chunk {
            audit::append(&mut tx, Some(&key), &e.entry, Some(&e.delivery), e.at).await?;
        }
        tx.commit().await?;
        stats.audit += chunk.len() as u64;
        progress.tick(stats.audit);
    }
    Ok(stats)
}

// ------------------------------------------------------------------------------------------------
// Incidents
// ------------------------------------------------------------------------------------------------

struct IncidentStats {
    incidents: u64,
    open: u64,
    runs: u64,
}

/// One incident's changes, in order: (time, change) and whether it is escalated at a time.
struct IncidentStory {
    changes: Vec<(i64, Change)>,
    escalate: Option<(String, i64)>,
    /// Changes before this index come before the escalation.
    escalate_before: usize,
    open: bool,
}

async fn write_incidents(db: &Db, rng: &mut Rng, world: &World, args: &Args, now: i64) -> Result<IncidentStats> {
    let start = now - args.days * DAY;
    let calendar = Calendar::new(start, now - HOUR);
    // Subjects: a workflow on a branch (CI), an alert (security). Drawn per incident, then each
    // subject's incidents laid out one after the other.
    #[derive(Clone)]
    struct Draft {
        repo: usize,
        ci: bool,
        wf: usize,
        branch: String,
        alert_event: &'static str,
        alert: i64,
        at: i64,
    }
    let mut alerts: Vec<i64> = vec![0; world.repos.len()];
    let mut subjects: HashMap<(usize, String), Vec<Draft>> = HashMap::new();
    for _ in 0..args.incidents {
        let repo = world.pick_repo(rng);
        let ci = rng.f64() < 0.85;
        let at = calendar.random(rng);
        let d = if ci {
            let wf = if rng.f64() < 0.6 { 0 } else { rng.usize(..world.repos[repo].workflows) };
            let branch =
                if rng.f64() < 0.85 { "main".to_string() } else { format!("release/2026.{}", 1 + rng.u32(0..12)) };
            Draft { repo, ci, wf, branch, alert_event: "", alert: 0, at }
        } else {
            alerts[repo] += 1 + rng.i64(0..3);
            let alert_event = match rng.u32(0..10) {
                0..6 => "dependabot_alert",
                6..9 => "code_scanning_alert",
                _ => "secret_scanning_alert",
            };
            Draft { repo, ci, wf: 0, branch: String::new(), alert_event, alert: alerts[repo], at }
        };
        let key = if ci { format!("ci:{}:{}", d.wf, d.branch) } else { format!("sec:{}:{}", d.alert_event, d.alert) };
        subjects.entry((repo, key)).or_default().push(d);
    }
    let mut keys: Vec<(usize, String)> = subjects.keys().cloned().collect();
    keys.sort();
    let mut stories: Vec<(i64, IncidentStory)> = Vec::with_capacity(args.incidents as usize);
    let mut run_id = 8_000_000_000i64;
    for key in keys {
        let mut drafts = subjects.remove(&key).unwrap_or_default();
        drafts.sort_by_key(|d| d.at);
        let mut free_from = i64::MIN;
        for (k, d) in drafts.into_iter().enumerate() {
            let seq = k as i64 + 1;
            let opened = d.at.max(free_from + MINUTE).min(now - MINUTE);
            let repo = &world.repos[d.repo];
            let inst = &world.insts[repo.inst];
            let mentions: Vec<String> = inst.leads.iter().map(|&l| format!("@{}", inst.people[l].login)).collect();
            let story = if d.ci {
                let (s, end) =
                    ci_story(rng, d.repo, repo, inst.id, d.wf, &d.branch, seq, opened, now, &mentions, &mut run_id);
                free_from = end;
                s
            } else {
                let (s, end) = security_story(rng, repo, inst.id, d.alert_event, d.alert, seq, opened, now, &mentions);
                free_from = end;
                s
            };
            stories.push((opened, story));
        }
    }
    stories.sort_by_key(|s| s.0);
    let mut stats = IncidentStats { incidents: 0, open: 0, runs: 0 };
    let mut progress = Progress::new("incidents", stories.len() as u64);
    for chunk in stories.chunks(2_000) {
        let mut tx: Transaction<'static, Any> = db.begin_write().await?;
        for (_, s) in chunk {
            for (i, (at, change)) in s.changes.iter().enumerate() {
                if i == s.escalate_before
                    && let Some((id, when)) = &s.escalate
                {
                    incidents::mark_escalated(&mut tx, id, *when).await?;
                }
                incidents::apply(&mut tx, change, *at).await?;
                stats.runs += matches!(change, Change::Run(_)) as u64;
            }
            if s.escalate_before >= s.changes.len()
                && let Some((id, when)) = &s.escalate
            {
                incidents::mark_escalated(&mut tx, id, *when).await?;
            }
            stats.open += s.open as u64;
        }
        tx.commit().await?;
        stats.incidents += chunk.len() as u64;
        progress.tick(stats.incidents);
    }
    Ok(stats)
}

/// A CI incident: failing runs on an incident branch, escalation past its deadline, then a
/// passing run (unless it is still failing now). Returns the story and when the subject is free.
#[allow(clippy::too_many_arguments)]
fn ci_story(
    rng: &mut Rng,
    repo_ix: usize,
    repo: &Repo,
    inst_id: i64,
    wf: usize,
    branch: &str,
    seq: i64,
    opened_failure: i64,
    now: i64,
    mentions: &[String],
    run_id: &mut i64,
) -> (IncidentStory, i64) {
    let workflow = WORKFLOWS[wf].to_string();
    let workflow_id = 20_000_000 + repo_ix as i64 * 16 + wf as i64;
    let lane = format!("{}:{branch}", repo.id);
    let mut run = |rng: &mut Rng, at: i64, conclusion: &str| -> (RunRow, RunInfo) {
        *run_id += 1 + rng.i64(0..400);
        let started = at - dur(rng, MINUTE, 30 * MINUTE);
        let sha = random_hex40(rng);
        let run_number = 100 + (at - (now - 400 * DAY)) / MINUTE / 7 + wf as i64;
        let jobs = if conclusion == "failure" { vec![failed_job(rng, repo, *run_id)] } else { vec![] };
        let row = RunRow {
            installation_id: inst_id,
            repository_id: repo.id,
            run_id: *run_id,
            attempt: 1,
            run_number,
            workflow_id,
            workflow: workflow.clone(),
            lane: lane.clone(),
            branch: branch.to_string(),
            head_sha: sha.clone(),
            event: "push".into(),
            conclusion: conclusion.into(),
            kind: conclusion.into(),
            started_at: started,
            completed_at: at,
            failed_jobs: serde_json::to_string(&jobs).unwrap_or_else(|_| "[]".into()),
            incident_branch: i64::from(branch == "main"),
        };
        let info = RunInfo {
            run_id: *run_id,
            run_number,
            attempt: 1,
            url: format!("https://github.com/{}/actions/runs/{}", repo.full, *run_id),
            head_sha: sha,
            branch: branch.to_string(),
            event: "push".into(),
            conclusion: conclusion.into(),
            started_at: started,
            completed_at: at,
            author: "A. Developer".into(),
            actor: "dependabot[bot]".into(),
            jobs,
            jobs_unread: false,
        };
        (row, info)
    };
    let (first_row, first) = run(rng, opened_failure, "failure");
    let opened_at = opened_failure + dur(rng, 1_000, 20_000);
    let marker = ci::incident_marker(workflow_id, branch, seq);
    let deadline = first.completed_at + HOUR;
    let mut doc = Incident {
        repo: repo.full.clone(),
        workflow: workflow.clone(),
        workflow_url: format!("https://github.com/{}/actions/workflows/{}.yml", repo.full, workflow.to_lowercase()),
        branch: branch.to_string(),
        first: first.clone(),
        latest: first.clone(),
        failures: 1,
        debug_within_minutes: 60,
        deadline,
        escalate_to: Some("backend-lead".into()),
        mentions: mentions.to_vec(),
    };
    let mut row = IncidentRow {
        id: IncidentRow::id_for(repo.id, &marker),
        installation_id: inst_id,
        repository_id: repo.id,
        repository: repo.full.clone(),
        kind: "ci".into(),
        subject: format!("{workflow_id}:{branch}"),
        seq,
        marker,
        title: ci::incident_title(&workflow, branch),
        branch: branch.to_string(),
        on_default: (branch == "main") as i64,
        state: "open".into(),
        opened_at,
        first_failure_at: first.completed_at,
        last_run_number: first.run_number,
        last_attempt: 1,
        failures: 1,
        deadline,
        mentions: mentions.join(" "),
        escalated_at: None,
        recovered_at: None,
        ttr_ms: None,
        flaky: 0,
        details: serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into()),
        updated_at: opened_at,
    };
    let mut changes = vec![(opened_at, Change::Run(first_row)), (opened_at, Change::Incident(row.clone()))];
    // Time to recovery: minutes to days, a few very long.
    let ttr = if rng.f64() < 0.03 { dur(rng, 2 * DAY, 30 * DAY) } else { dur(rng, 10 * MINUTE, 2 * DAY) };
    let recovered = opened_failure + ttr;
    let more = rng.usize(0..4);
    for k in 0..more {
        let at = opened_failure + ttr * (k as i64 + 1) / (more as i64 + 2);
        if at >= now {
            break;
        }
        let (r, info) = run(rng, at, "failure");
        doc.latest = info;
        doc.failures += 1;
        row.failures = doc.failures;
        row.last_run_number = r.run_number;
        row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
        let t = at + 5_000;
        changes.push((t, Change::Run(r)));
        changes.push((t, Change::Incident(row.clone())));
    }
    let escalated_at = deadline + dur(rng, 1_000, 60_000);
    let escalate_before = changes.len();
    let open = recovered >= now;
    if !open {
        let flaky = rng.f64() < 0.06;
        let (mut r, _) = run(rng, recovered, "success");
        if flaky {
            r.head_sha = first.head_sha.clone();
            r.attempt = 2;
            r.run_id = first.run_id;
            r.run_number = first.run_number;
        }
        let t = recovered + 4_000;
        row.state = "closed".into();
        row.recovered_at = Some(recovered);
        row.ttr_ms = Some(recovered - first.completed_at);
        row.flaky = flaky as i64;
        row.last_run_number = r.run_number;
        row.last_attempt = r.attempt;
        changes.push((t, Change::Run(r)));
        if flaky {
            changes.push((
                t,
                Change::Flaky(FlakyRow {
                    installation_id: inst_id,
                    repository_id: repo.id,
                    workflow_id,
                    workflow: workflow.clone(),
                    job: first.jobs.first().map(|j| j.name.clone()).unwrap_or_else(|| "(workflow)".into()),
                    head_sha: first.head_sha.clone(),
                    run_id: first.run_id,
                    at: recovered,
                }),
            ));
        }
        changes.push((t, Change::Incident(row.clone())));
    }
    let escalate = (escalated_at < recovered.min(now)).then(|| (row.id.clone(), escalated_at));
    let end = if open { now } else { recovered + 4_000 };
    (IncidentStory { changes, escalate, escalate_before, open }, end)
}

/// A security alert's incident: opened (escalated at once), fixed or dismissed days later, or
/// still open.
#[allow(clippy::too_many_arguments)]
fn security_story(
    rng: &mut Rng,
    repo: &Repo,
    inst_id: i64,
    event: &'static str,
    number: i64,
    seq: i64,
    created: i64,
    now: i64,
    mentions: &[String],
) -> (IncidentStory, i64) {
    let severity = if rng.f64() < 0.7 { "high" } else { "critical" };
    let summary = match event {
        "dependabot_alert" => format!("Prototype pollution in lodash < 4.17.{}", 12 + rng.u32(0..10)),
        "code_scanning_alert" => "Database query built from user-controlled sources".to_string(),
        _ => "GitHub Personal Access Token".to_string(),
    };
    let path = match event {
        "dependabot_alert" => "security/dependabot",
        "code_scanning_alert" => "security/code-scanning",
        _ => "security/secret-scanning",
    };
    let alert = Alert {
        event: event.into(),
        number,
        severity: severity.into(),
        summary,
        url: format!("https://github.com/{}/{path}/{number}", repo.full),
        created_at: created / 1000 * 1000,
    };
    let opened_at = created + dur(rng, 1_000, 30_000);
    let marker = ci::security_marker(event, number, seq);
    let mut row = IncidentRow {
        id: IncidentRow::id_for(repo.id, &marker),
        installation_id: inst_id,
        repository_id: repo.id,
        repository: repo.full.clone(),
        kind: "security".into(),
        subject: format!("{event}:{number}"),
        seq,
        marker,
        title: ci::security_title(&alert),
        branch: String::new(),
        on_default: 0,
        state: "open".into(),
        opened_at,
        first_failure_at: alert.created_at,
        last_run_number: 0,
        last_attempt: 0,
        failures: 1,
        deadline: opened_at,
        mentions: mentions.join(" "),
        // A public repository's: kept by the App, counted as escalated at once.
        escalated_at: (!repo.private).then_some(opened_at),
        recovered_at: None,
        ttr_ms: None,
        flaky: 0,
        details: serde_json::to_string(&alert).unwrap_or_else(|_| "{}".into()),
        updated_at: opened_at,
    };
    let mut changes = vec![(opened_at, Change::Incident(row.clone()))];
    let escalate = repo.private.then(|| (row.id.clone(), opened_at + dur(rng, 5_000, 60_000)));
    let closed = created + dur(rng, HOUR, 90 * DAY);
    let open = closed >= now;
    if !open {
        row.state = "closed".into();
        row.recovered_at = Some(closed);
        row.ttr_ms = Some(closed - alert.created_at);
        changes.push((closed + 3_000, Change::Incident(row)));
    }
    (IncidentStory { changes, escalate, escalate_before: 1, open }, if open { now } else { closed + 3_000 })
}

// ------------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------------

async fn database_size(db: &Db, url: &str) -> Result<(u64, String)> {
    match db.backend() {
        Backend::Sqlite => {
            let (_, normalized) = normalize_url(url);
            let path = normalized.trim_start_matches("sqlite://");
            let path = path.split('?').next().unwrap_or(path);
            let main = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let wal = std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0);
            Ok((main + wal, format!("{path}: {} MB + -wal {} MB", main >> 20, wal >> 20)))
        }
        Backend::Postgres => {
            let (size,): (i64,) =
                sqlx::query_as("SELECT pg_database_size(current_database())").fetch_one(db.pool()).await?;
            Ok((size as u64, "pg_database_size(current_database())".into()))
        }
    }
}

async fn count(db: &Db, sql: &'static str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.pool()).await?;
    Ok(n)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let now = match args.now_ms.as_str() {
        "now" => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64,
        n => n.parse::<i64>().map_err(|_| anyhow!("--now-ms: {n:?} is neither Unix ms nor `now`"))?,
    };
    if args.days < 2 || args.batch == 0 {
        bail!("--days must be at least 2 and --batch at least 1");
    }
    let start = now - args.days * DAY;
    let began = Instant::now();
    let db = Db::connect(&args.database_url).await.context("connecting")?;
    db.migrate().await.context("migrating")?;
    let existing: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM deliveries LIMIT 1").fetch_optional(db.pool()).await?;
    if existing.is_some() {
        bail!("the database already holds deliveries: give the generator a new database");
    }
    println!(
        "history: {} on {}, seed {}, {} days to --now-ms {now} ({}), --finish {:?}",
        args.database_url,
        db.backend().name(),
        args.seed,
        args.days,
        rfc3339(now),
        args.finish
    );
    println!(
        "  {} repositories in {} installations; {} deliveries ({} in the last hour); {} requests ({} open); {} incidents",
        thousands(args.repos as u64),
        args.installations.min(args.repos.max(1)),
        thousands(args.deliveries),
        thousands(args.recent.min(args.deliveries)),
        thousands(args.requests),
        thousands(args.open.min(args.requests)),
        thousands(args.incidents)
    );

    // One seeded generator; each phase forks its own stream from it, in a fixed order.
    let mut rng = Rng::with_seed(args.seed);
    let mut world_rng = rng.fork();
    let mut request_rng = rng.fork();
    let mut incident_rng = rng.fork();
    let delivery_rng = rng.fork();
    let world = World::build(&mut world_rng, args.repos.max(1), args.installations, start)?;
    let templates = load_templates()?;

    let t0 = Instant::now();
    write_tenancy(&db, &world, start).await?;
    let t_tenancy = t0.elapsed();

    let t0 = Instant::now();
    let req = write_requests(&db, &mut request_rng, &world, &args, now).await?;
    let t_requests = t0.elapsed();

    let t0 = Instant::now();
    let inc = write_incidents(&db, &mut incident_rng, &world, &args, now).await?;
    let t_incidents = t0.elapsed();

    let t0 = Instant::now();
    let plan =
        DeliveryPlan { total: args.deliveries, recent: args.recent, batch: args.batch, start, now, seed: args.seed };
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(3);
    let (dstats, generated) = std::thread::scope(|s| {
        let world = &world;
        let templates = &templates;
        let plan = &plan;
        let generator = s.spawn(move || generate_deliveries(delivery_rng, world, templates, plan, tx));
        let written = tokio::task::block_in_place(|| {
            let daily =
                (args.retention_days > 0 && args.prune == PruneMode::Daily).then_some(args.retention_days * DAY);
            tokio::runtime::Handle::current().block_on(write_deliveries(&db, rx, args.deliveries, args.finish, daily))
        });
        let generated = generator.join().map_err(|_| anyhow!("the delivery generator panicked"));
        (written, generated)
    });
    let dstats = dstats?;
    generated??;
    let t_deliveries = t0.elapsed();
    // The bodies past the retention go as the App's prune drops them (`deliveries::drop_bodies`):
    // the App keeps a year of rows but two weeks of bodies, and its file reuses the pages the
    // older ones leave. Kept, they made the history's first minutes of `serve` a prune of ~1.9
    // million bodies beside whatever was being measured, then a file unlike any App's.
    let t0 = Instant::now();
    let dropped = dstats.dropped_daily
        + if args.retention_days > 0 {
            let n = deliveries::drop_bodies(&db, now - args.retention_days * DAY, 1000).await?;
            if db.backend() == Backend::Postgres {
                // What autovacuum would do after such a prune (this machine's server has it off).
                sqlx::query("VACUUM ANALYZE delivery_bodies").execute(db.pool()).await?;
            }
            n
        } else {
            0
        };
    let t_dropped = t0.elapsed();
    db.checkpoint().await?;

    let elapsed = began.elapsed();
    println!("\nwritten in {:.1}s:", elapsed.as_secs_f64());
    println!("  tenancy and policies    {:>7.1}s", t_tenancy.as_secs_f64());
    println!(
        "  requests and audit      {:>7.1}s  ({} requests, {} approvals given, {} deployments, {} audit entries)",
        t_requests.as_secs_f64(),
        thousands(req.requests),
        thousands(req.approvals),
        thousands(req.deployments),
        thousands(req.audit)
    );
    println!(
        "  incidents               {:>7.1}s  ({} incidents, {} open, {} runs)",
        t_incidents.as_secs_f64(),
        thousands(inc.incidents),
        thousands(inc.open),
        thousands(inc.runs)
    );
    println!(
        "  deliveries              {:>7.1}s  ({} deliveries, {:.0}/s; {} finished by the worker's path in {} claims, \
         {} by the fallback UPDATE; {} workflow runs recorded; bodies {} MB as JSON, {} MB LZ4)",
        t_deliveries.as_secs_f64(),
        thousands(dstats.rows),
        dstats.rows as f64 / t_deliveries.as_secs_f64().max(1e-9),
        thousands(dstats.by_worker),
        thousands(dstats.claims),
        thousands(dstats.rows - dstats.by_worker),
        thousands(dstats.runs),
        dstats.body_bytes >> 20,
        dstats.stored_bytes >> 20
    );
    if args.retention_days > 0 {
        println!(
            "  bodies past {:>3} days    {:>7.1}s  ({} dropped by the App's prune)",
            args.retention_days,
            t_dropped.as_secs_f64(),
            thousands(dropped)
        );
    }
    println!("\nrows in the database:");
    let tables: &[(&str, &'static str)] = &[
        ("installations", "SELECT COUNT(*) FROM installations"),
        ("repositories", "SELECT COUNT(*) FROM repositories"),
        ("policies", "SELECT COUNT(*) FROM policies"),
        ("deliveries", "SELECT COUNT(*) FROM deliveries"),
        ("  done", "SELECT COUNT(*) FROM deliveries WHERE state = 'done'"),
        ("delivery_bodies", "SELECT COUNT(*) FROM delivery_bodies"),
        ("delivery_attempts", "SELECT COUNT(*) FROM delivery_attempts"),
        ("requests", "SELECT COUNT(*) FROM requests"),
        ("  open", "SELECT COUNT(*) FROM requests WHERE open = 1 AND labelled = 1"),
        ("approvals", "SELECT COUNT(*) FROM approvals"),
        ("request_links", "SELECT COUNT(*) FROM request_links"),
        ("deployments", "SELECT COUNT(*) FROM deployments"),
        ("github_objects", "SELECT COUNT(*) FROM github_objects"),
        ("audit_log", "SELECT COUNT(*) FROM audit_log"),
        ("incidents", "SELECT COUNT(*) FROM incidents"),
        ("  open", "SELECT COUNT(*) FROM incidents WHERE state = 'open'"),
        ("ci_runs", "SELECT COUNT(*) FROM ci_runs"),
        ("ci_flaky", "SELECT COUNT(*) FROM ci_flaky"),
    ];
    for (name, sql) in tables {
        println!("  {name:<18} {:>12}", thousands(count(&db, sql).await? as u64));
    }
    let (size, how) = database_size(&db, &args.database_url).await?;
    println!("\ndatabase size: {:.2} GB ({how})", size as f64 / 1e9);
    // The same, on one line, for scripts (bench/scale.sh).
    let round = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let summary = json!({
        "backend": db.backend().name(),
        "seed": args.seed,
        "now_ms": now,
        "finish": format!("{:?}", args.finish).to_lowercase(),
        "seconds": round(elapsed),
        "phase_seconds": { "tenancy": round(t_tenancy), "requests_and_audit": round(t_requests),
                           "incidents": round(t_incidents), "deliveries": round(t_deliveries),
                           "bodies_dropped": round(t_dropped) },
        "deliveries": dstats.rows,
        "bodies_dropped": dropped,
        "finished_by_worker": dstats.by_worker,
        "requests": req.requests,
        "open_requests": args.open.min(args.requests),
        "audit_entries": req.audit,
        "incidents": inc.incidents,
        "db_bytes": size,
    });
    println!("JSON {summary}");
    db.close().await;
    Ok(())
}
