//! The command line: `shipgate serve | migrate | deliveries list|show|retry | actions list|retry | installations |
//! audit verify|export|evidence|verify-evidence|seal|rotate-key | api-token create|list|revoke | check-config |
//! simulate`.

use std::io::Write;

use chrono::{DateTime, Datelike, Utc};
use clap::{Parser, Subcommand};

use crate::clock::Clock;
use crate::config::Config;
use crate::store::{Db, api_tokens, audit, deliveries, outbox, tenancy};

#[derive(Debug, Parser)]
#[command(name = "shipgate", version, about = "A GitHub App that gates deployments and tracks CI incidents")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks and work them off (POST /webhook, /healthz, /readyz, /metrics).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Inspect and replay stored webhook deliveries.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Inspect and retry what the App does (or, in dry-run, would do) on GitHub.
    Actions {
        #[command(subcommand)]
        command: ActionsCommand,
    },
    /// Show the installations the App serves, with their repositories.
    Installations,
    /// Check or export the audit log of request state changes, and make or check an evidence
    /// pack of one request for an auditor.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Tokens of the read-only JSON API (GET /api/...), one installation each.
    ApiToken {
        #[command(subcommand)]
        command: ApiTokenCommand,
    },
    /// Check a `.github/shipgate.yml` offline: exit 0 when valid, 1 when not (errors with line
    /// and column). Warnings (a notification channel the App was not given, read from
    /// SHIPGATE_SLACK_WEBHOOKS, SHIPGATE_MAIL_DOMAINS, SHIPGATE_SMTP_URL and SHIPGATE_MAIL_FROM
    /// for the account of `--repo`) go to stderr and leave the exit code 0.
    CheckConfig {
        file: std::path::PathBuf,
        /// The repository the policy is for (`owner/name`): its account's channels are checked.
        #[arg(long)]
        repo: Option<String>,
    },
    /// The team's figures for a repository (SPEC §5): the weekly report's markdown, or its JSON
    /// (documented in docs/figures.md). Without `--week` or `--since`: the last complete ISO week
    /// in the policy's `report.weekly.timezone` (UTC without one).
    Report {
        /// The repository: `owner/name`.
        #[arg(long)]
        repo: String,
        /// A window up to now: `7d`, `24h`, `90m`.
        #[arg(long)]
        since: Option<String>,
        /// An ISO week: `2026-W49`.
        #[arg(long)]
        week: Option<String>,
        /// `markdown` (the issue's body) or `json`.
        #[arg(long, default_value = "markdown")]
        format: String,
    },
    /// A fresh signed link to a request's (or an incident's) details page, for an operator: valid
    /// for SHIPGATE_LINK_DAYS (30) days. Needs SHIPGATE_PUBLIC_URL and SHIPGATE_AUDIT_KEY (links
    /// are signed with a key derived from it, as the running App signs them).
    Link {
        /// The repository: `owner/name`.
        #[arg(long)]
        repo: String,
        /// The request's issue number.
        #[arg(long, conflicts_with = "incident", required_unless_present = "incident")]
        request: Option<i64>,
        /// An incident, by its issue's marker (as `/api/incidents` lists it).
        #[arg(long)]
        incident: Option<String>,
    },
    /// What the App would show for a request, offline: the sticky comment and check run from a
    /// policy, a request body and what GitHub would say (exit 0 whatever the verdict, 1 on bad input).
    Simulate {
        /// The policy (`.github/shipgate.yml`).
        #[arg(long)]
        policy: std::path::PathBuf,
        /// The request: the issue body.
        #[arg(long)]
        request: std::path::PathBuf,
        /// PRs, files, checks, team members, permissions and who approves (see
        /// examples/simulate/facts.yml); without it, none.
        #[arg(long)]
        facts: Option<std::path::PathBuf>,
        /// Show the gate at this time (RFC 3339, like 2026-12-24T10:00:00+01:00): the request and
        /// its approvals come just before (or at their own `at` in the facts file), and the gate
        /// judges freeze windows and approval expiry at this time.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every installation's chain under SHIPGATE_AUDIT_KEY (and SHIPGATE_AUDIT_KEY_RETIRED)
    /// and check the approvals and gates in the tables against it; exit 1 naming the first
    /// broken link of each chain, or the first approval or gate the log does not record.
    Verify {
        /// Also check the log against the anchors in this file (`-`: standard input): the text of
        /// the closing summaries as GitHub has them, e.g. `gh api --paginate
        /// repos/OWNER/REPO/issues/comments --jq '.[].body'`. Each anchor's entry must be in the
        /// log with the anchored hash, and its signature must check out under the App's key.
        #[arg(long, value_name = "FILE")]
        anchors: Option<std::path::PathBuf>,
        /// The public key to check anchor signatures with (PEM, as served at
        /// /.well-known/shipgate-audit.pub); default: the public half of SHIPGATE_SIGNING_KEY.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<std::path::PathBuf>,
    },
    /// Move the log to a new key: SHIPGATE_AUDIT_KEY is the current key, SHIPGATE_AUDIT_NEW_KEY
    /// the new one (both from the environment, never the command line). Each chain gets an
    /// entry sealed under both. Run it with the App stopped, then start every replica with
    /// SHIPGATE_AUDIT_KEY=<new> and SHIPGATE_AUDIT_KEY_RETIRED=<old>.
    RotateKey,
    /// Seal the chains written without a key (a dry run, or before SHIPGATE_AUDIT_KEY was set)
    /// under SHIPGATE_AUDIT_KEY: each is checked and gets an audit.sealed entry saying what was
    /// found (where it was broken, if it was). Run it once, when the key is first set, after
    /// checking that nobody wrote to the database behind the App's back; `serve` refuses to start
    /// with a key while such chains exist.
    Seal,
    /// Write an evidence pack of one change request for an auditor: the request as read at each
    /// revision, the policy in force (blob SHA and text), every approval (approver id and login,
    /// commit, time), the checks on each covered commit, the deployments and their statuses,
    /// break-glass and freeze events, the audit entries with their hashes and the anchors on
    /// GitHub, and an index.md to read first. Signed with SHIPGATE_SIGNING_KEY (unsigned without
    /// one); the entries' seals are checked under SHIPGATE_AUDIT_KEY first. Exit 0 when written, 1
    /// when the log or the tables do not check out (nothing is written), 2 on bad usage.
    Evidence {
        /// OWNER/NAME
        #[arg(long)]
        repo: String,
        /// The request's issue number.
        #[arg(long, conflicts_with = "deployment", required_unless_present = "deployment")]
        request: Option<i64>,
        /// A deployment (GitHub's id): the pack of the request it belongs to, with it marked.
        #[arg(long)]
        deployment: Option<i64>,
        /// Where to write it: a new directory, or a .tar.gz file (never over an existing one).
        #[arg(long, value_name = "PATH")]
        out: std::path::PathBuf,
        /// The closing summaries' text as GitHub has them (`gh api --paginate
        /// repos/OWNER/NAME/issues/ISSUE/comments --jq '.[].body'`; `-`: standard input): the
        /// anchors found there, signed by the App's key, go into the pack. Without it, with the
        /// App's GitHub credentials (GITHUB_APP_ID, GITHUB_PRIVATE_KEY), they are read from GitHub.
        #[arg(long, value_name = "FILE")]
        anchors: Option<std::path::PathBuf>,
    },
    /// Check an evidence pack (a directory or a .tar.gz) offline, with the App's public key only:
    /// its manifest's signature, every file's SHA-256, no file added, the audit entries' chain and
    /// anchors, and every file against the entries. Exit 0 when valid (saying whether it is signed),
    /// 1 naming the first problem, 2 on bad usage. Needs no database and no secret.
    VerifyEvidence {
        /// The pack: a directory, or a .tar.gz.
        path: std::path::PathBuf,
        /// The App's public key (PEM, as served at /.well-known/shipgate-audit.pub); a signature is
        /// then required. Default: the public half of SHIPGATE_SIGNING_KEY, else the key inside
        /// the pack (which proves nothing by itself, and is said so).
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<std::path::PathBuf>,
    },
    /// Write a repository's audit entries, oldest first, to stdout.
    Export {
        /// OWNER/NAME
        #[arg(long)]
        repo: String,
        /// Only entries since: a duration back from now (7d, 24h) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_parser = ["jsonl", "csv"], default_value = "jsonl")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token for one installation; it is printed once, stored hashed.
    Create {
        #[arg(long)]
        installation: i64,
        /// A note to recognise the token by.
        #[arg(long)]
        name: Option<String>,
        /// What it may do: `read` the JSON API, or post `alerts` (Alertmanager's webhook).
        #[arg(long, default_value = "read", value_parser = ["read", "alerts"])]
        scope: String,
    },
    /// List tokens (their numbers, installations and names; never the tokens).
    List,
    /// Delete a token by its number.
    Revoke { seq: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// List actions, newest first.
    List {
        /// Only actions in this state.
        #[arg(long, value_parser = ["pending", "running", "done", "parked", "dry_run", "superseded", "cancelled"])]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a parked action again, with a fresh set of attempts.
    Retry { seq: i64 },
    /// Print one action whole: what it does, and the text a comment or check run would have
    /// (what dry-run would have sent).
    Show { seq: i64 },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only deliveries in this state: pending, running, done or parked.
        #[arg(long, value_parser = ["pending", "running", "done", "parked"])]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery (by delivery id or sequence number), its attempts and its body.
    Show {
        id: String,
        /// Leave the body out.
        #[arg(long)]
        no_body: bool,
    },
    /// Process a parked (or done) delivery again, with a fresh set of attempts.
    Retry { id: String },
    /// Apply the retention now, as the running App does every hour: drop the bodies of deliveries
    /// processed more than SHIPGATE_RETENTION_DAYS ago, delete the rows past SHIPGATE_HISTORY_DAYS.
    Prune,
}

/// What a freeze policy means from `now`: frozen now and until when, or when the next window
/// starts and what it says then.
fn freeze_outlook(freeze: &crate::domain::freeze::Freeze, now: i64) -> String {
    if let Some(a) = freeze.active_at(now) {
        return format!("{} (now)", a.text());
    }
    let next = freeze.next_change_after(now).and_then(|at| freeze.active_at(at).map(|a| (at, a)));
    match next {
        Some((at, a)) => format!("next from {}: {}", crate::domain::messages::timestamp(at), a.text()),
        None => "no window in the next four years".to_string(),
    }
}

/// `shipgate check-config FILE [--repo OWNER/NAME]`: the verdict the App would give, offline, on
/// `out`; warnings (channels the App was not given, `channels`) on `err`.
pub fn check_config(
    file: &std::path::Path,
    repo: Option<&str>,
    channels: &crate::domain::notify::Directory,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            writeln!(out, "{}: cannot read: {e}", file.display())?;
            return Ok(1);
        }
    };
    match crate::domain::policy::parse(&text) {
        Ok(p) => {
            writeln!(out, "{}: valid", file.display())?;
            writeln!(out, "  label: {}", p.label)?;
            writeln!(out, "  roles: {}", p.roles.keys().cloned().collect::<Vec<_>>().join(", "))?;
            for (name, env) in &p.environments {
                let roles: Vec<String> = env
                    .approvals
                    .iter()
                    .map(|a| {
                        if a.when_paths.is_empty() {
                            a.role.clone()
                        } else {
                            format!("{} (when {})", a.role, a.when_paths.join(", "))
                        }
                    })
                    .collect();
                writeln!(
                    out,
                    "  environment {name}: approvals {}",
                    if roles.is_empty() { "none".into() } else { roles.join(", ") }
                )?;
                if let Some(after) = env.approvals_expire_after {
                    let d = crate::domain::freeze::policy_duration(after.as_millis() as i64);
                    writeln!(out, "    approvals count for {d}")?;
                }
                if !env.freeze.is_empty() {
                    writeln!(out, "    freeze: {}", freeze_outlook(&env.freeze, Clock::system().now_ms()))?;
                }
            }
            match p.roles.contains_key(crate::domain::flow::BREAK_GLASS_ROLE) {
                true => writeln!(
                    out,
                    "  break-glass: holders of `break_glass`; reviews due in 2 working days, escalated to {}",
                    p.ci.escalate_to.as_deref().unwrap_or("nobody (no ci.escalate_to)")
                )?,
                false => writeln!(out, "  break-glass: none (no `break_glass` role): `/breakglass` is refused")?,
            }
            for rule in &p.notify {
                let on: Vec<&str> = rule.on.iter().map(|e| e.as_str()).collect();
                let to: Vec<String> = rule.to.iter().map(|t| t.kind.to_string()).collect();
                writeln!(out, "  notify {} -> {}", on.join(", "), to.join(", "))?;
            }
            match repo.map(crate::domain::notify::account_of) {
                Some(account) => {
                    for w in crate::domain::notify::warnings(&p, account, channels) {
                        writeln!(err, "warning: {}:{}:{}: {}", file.display(), w.line, w.column, w.message)?;
                    }
                }
                None if !p.notify.is_empty() => writeln!(
                    err,
                    "warning: {}: the notification channels were not checked against the App's settings: pass \
                     --repo OWNER/NAME",
                    file.display()
                )?,
                None => {}
            }
            Ok(0)
        }
        Err(errors) => {
            writeln!(
                out,
                "{}: invalid ({} error{})",
                file.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )?;
            for e in errors {
                writeln!(out, "  {}:{}:{}: {}", file.display(), e.line, e.column, e.message)?;
            }
            Ok(1)
        }
    }
}

/// `shipgate simulate [--at TIME]`: the App's own decision over the given files, printed.
pub fn simulate(
    policy: &std::path::Path,
    request: &std::path::Path,
    facts: Option<&std::path::Path>,
    at: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let read =
        |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    let inputs = (|| {
        let at = at.map(crate::simulate::parse_time).transpose().map_err(|e| format!("--at: {e}"))?;
        Ok::<_, String>((read(policy)?, read(request)?, facts.map(read).transpose()?, at))
    })();
    let result = inputs.and_then(|(p, r, f, at)| crate::simulate::simulate_at(&p, &r, f.as_deref(), at));
    match result {
        Ok(s) => {
            writeln!(out, "{}", s.comment.trim_end())?;
            writeln!(out)?;
            match &s.check_run {
                Some((conclusion, title, summary)) => {
                    writeln!(out, "--- check run: {conclusion}: {title}")?;
                    writeln!(out, "{}", summary.trim_end())?;
                }
                None => writeln!(out, "--- no check run (no linked pull request, or no environment)")?,
            }
            for r in &s.replies {
                writeln!(out, "--- reply: {r}")?;
            }
            Ok(0)
        }
        Err(e) => {
            writeln!(out, "error: {e}")?;
            Ok(1)
        }
    }
}

async fn report_command(
    db: &Db,
    repo: &str,
    since: Option<&str>,
    week: Option<&str>,
    format: &str,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    use crate::domain::report;
    if !matches!(format, "markdown" | "json") {
        writeln!(out, "error: --format must be markdown or json, not `{format}`")?;
        return Ok(2);
    }
    let period = match report::Period::parse(week, since) {
        Ok(p) => p,
        Err(e) => {
            writeln!(out, "error: {e}")?;
            return Ok(2);
        }
    };
    let now = Clock::system().now_ms();
    let Some(r) = crate::handlers::report::for_repository(db, repo, None, period, now).await? else {
        writeln!(out, "error: no repository `{repo}` in this database (the App has not been installed on it)")?;
        return Ok(1);
    };
    match format {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(&report::json(&r))?)?,
        _ => write!(out, "{}", report::markdown(&r))?,
    }
    Ok(0)
}

async fn link_command(
    db: &Db,
    cfg: &Config,
    repo: &str,
    request: Option<i64>,
    incident: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    use crate::domain::links::{Minter, Page};
    let Some(base) = &cfg.public_url else {
        writeln!(out, "error: SHIPGATE_PUBLIC_URL is not set: a link needs the address people reach the App at")?;
        return Ok(2);
    };
    if cfg.audit_keys.current.is_none() {
        writeln!(
            out,
            "error: SHIPGATE_AUDIT_KEY is not set: links are signed with a key derived from it (the running App's)"
        )?;
        return Ok(2);
    }
    let minter = Minter { key: crate::server::link_key(cfg), base: base.clone(), ttl_s: cfg.link_ttl.as_secs() as i64 };
    let page = match (request, incident) {
        (Some(issue), _) => Page::Request { issue },
        (None, Some(marker)) => Page::Incident { marker: marker.to_string() },
        (None, None) => {
            writeln!(out, "error: give --request N or --incident MARKER")?;
            return Ok(2);
        }
    };
    // The repository that has this name now (names move: never an old holder of it), then the
    // page by primary key.
    let named = crate::store::tenancy::named(db, repo).await?;
    let mut found = Vec::new();
    for (repository_id, installation) in named {
        let exists = match &page {
            Page::Request { issue } => {
                crate::store::requests::get(db, installation, repository_id, *issue).await?.is_some()
            }
            Page::Incident { marker } => {
                crate::store::incidents::get(db, installation, repository_id, marker).await?.is_some()
            }
        };
        if exists {
            found.push((installation, repository_id));
        }
    }
    let (installation, repository_id) = match found[..] {
        [one] => one,
        [] => {
            writeln!(out, "error: no such request or incident of `{repo}` in this database")?;
            return Ok(1);
        }
        _ => {
            writeln!(out, "error: several repositories were called `{repo}`: {found:?} (installation, repository id)")?;
            return Ok(2);
        }
    };
    let (url, expires) = minter.url(installation, repository_id, page, Clock::system().now_ms());
    writeln!(out, "{url}")?;
    writeln!(out, "valid until {}", crate::domain::messages::timestamp(expires * 1000))?;
    Ok(0)
}

/// Runs a command that only needs the database. Writes to `out`; returns the exit code.
pub async fn run_db_command(cfg: &Config, cmd: &Command, out: &mut dyn Write) -> anyhow::Result<i32> {
    let db = Db::connect(&cfg.database_url).await?;
    let code = match cmd {
        Command::Migrate => {
            db.migrate().await?;
            writeln!(out, "migrations applied ({})", db.backend().name())?;
            0
        }
        Command::Deliveries { command: DeliveriesCommand::Prune } => {
            db.migrate().await?;
            let now = Clock::system().now_ms();
            let dropped = deliveries::drop_bodies(&db, now - cfg.retention.as_millis() as i64, 5000).await?;
            let deleted = match cfg.history {
                Some(h) => deliveries::prune(&db, now - h.as_millis() as i64, 5000).await?,
                None => 0,
            };
            writeln!(out, "bodies dropped: {dropped}; rows deleted: {deleted}")?;
            0
        }
        Command::Deliveries { command } => {
            db.migrate().await?;
            deliveries_command(&db, command, out).await?
        }
        Command::Actions { command } => {
            db.migrate().await?;
            actions_command(&db, command, out).await?
        }
        Command::Installations => {
            db.migrate().await?;
            installations_command(&db, out).await?
        }
        Command::Audit { command } => {
            db.migrate().await?;
            audit_command(&db, cfg, command, out).await?
        }
        Command::ApiToken { command } => {
            db.migrate().await?;
            api_token_command(&db, command, out).await?
        }
        Command::Report { repo, since, week, format } => {
            db.migrate().await?;
            report_command(&db, repo, since.as_deref(), week.as_deref(), format, out).await?
        }
        Command::Link { repo, request, incident } => {
            db.migrate().await?;
            link_command(&db, cfg, repo, *request, incident.as_deref(), out).await?
        }
        Command::Serve | Command::CheckConfig { .. } | Command::Simulate { .. } => {
            unreachable!("not a database command")
        }
    };
    db.close().await;
    Ok(code)
}

async fn deliveries_command(db: &Db, cmd: &DeliveriesCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        DeliveriesCommand::List { status, limit, json } => {
            let rows = deliveries::list(db, status.as_deref(), *limit).await?;
            if *json {
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:>6}  {:<36}  {:<28}  {:<8}  {:>3}  {:<20}  OUTCOME / LAST ERROR",
                    "SEQ", "DELIVERY", "EVENT", "STATE", "TRY", "RECEIVED"
                )?;
                for r in &rows {
                    let ev = match &r.action {
                        Some(a) => format!("{}.{}", r.event, a),
                        None => r.event.clone(),
                    };
                    let note = r.last_error.as_deref().or(r.outcome.as_deref()).unwrap_or("");
                    writeln!(
                        out,
                        "{:>6}  {:<36}  {:<28}  {:<8}  {:>3}  {:<20}  {}",
                        r.seq,
                        r.id,
                        ev,
                        r.state,
                        r.attempts,
                        fmt_time(r.received_at),
                        one_line(note, 80)
                    )?;
                }
                if rows.is_empty() {
                    writeln!(out, "(no deliveries)")?;
                }
            }
            Ok(0)
        }
        DeliveriesCommand::Show { id, no_body } => {
            let Some(r) = deliveries::find(db, id).await? else {
                writeln!(out, "no delivery {id:?}")?;
                return Ok(1);
            };
            writeln!(out, "delivery   {} (seq {})", r.id, r.seq)?;
            writeln!(out, "event      {}{}", r.event, r.action.as_ref().map(|a| format!(".{a}")).unwrap_or_default())?;
            writeln!(out, "install.   {}", r.installation_id.map(|i| i.to_string()).unwrap_or("-".into()))?;
            writeln!(out, "repository {}", r.repository.as_deref().unwrap_or("-"))?;
            writeln!(out, "subject    {}", r.subject)?;
            writeln!(out, "received   {}", fmt_time(r.received_at))?;
            writeln!(
                out,
                "state      {}{}",
                r.state,
                r.outcome.as_ref().map(|o| format!(" ({o})")).unwrap_or_default()
            )?;
            if let Some(e) = &r.last_error {
                writeln!(out, "last error {e}")?;
            }
            for a in deliveries::attempts(db, r.seq).await? {
                writeln!(
                    out,
                    "attempt {:>2} {} by {} in {} ms: {}{}",
                    a.attempt,
                    fmt_time(a.started_at),
                    a.worker,
                    a.finished_at - a.started_at,
                    a.outcome,
                    a.error.map(|e| format!(": {e}")).unwrap_or_default()
                )?;
            }
            let body = if *no_body { None } else { deliveries::body(db, r.seq).await? };
            if body.as_deref() == Some("") {
                writeln!(out, "(body dropped: older than SHIPGATE_RETENTION_DAYS; the row is kept for history)")?;
            } else if let Some(body) = body {
                let pretty = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or(body);
                writeln!(out, "{pretty}")?;
            }
            Ok(0)
        }
        DeliveriesCommand::Prune => unreachable!("run_db_command handles it: it needs the settings"),
        DeliveriesCommand::Retry { id } => {
            let Some(r) = deliveries::find(db, id).await? else {
                writeln!(out, "no delivery {id:?}")?;
                return Ok(1);
            };
            if deliveries::body(db, r.seq).await?.is_some_and(|b| b.is_empty()) {
                writeln!(
                    out,
                    "delivery {} cannot be retried: its body was dropped after SHIPGATE_RETENTION_DAYS",
                    r.id
                )?;
                return Ok(1);
            }
            if deliveries::retry(db, r.seq, Clock::system().now_ms()).await? {
                writeln!(out, "delivery {} (seq {}) is pending again; a running App will process it", r.id, r.seq)?;
                Ok(0)
            } else {
                writeln!(out, "delivery {} is {}: only parked or done deliveries can be retried", r.id, r.state)?;
                Ok(1)
            }
        }
    }
}

/// An action as `actions list` shows it: a notification by its event, channel (never a URL) and
/// subject; anything else as stored.
fn action_summary(kind: &str, action: &str) -> String {
    if kind == "notify"
        && let Ok(crate::github::actions::Action::Notify { channel, event, subject, .. }) = serde_json::from_str(action)
    {
        return format!("{event} -> {channel}: {subject}");
    }
    action.to_string()
}

async fn actions_command(db: &Db, cmd: &ActionsCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        ActionsCommand::List { status, limit, json } => {
            let rows = outbox::list(db, status.as_deref(), *limit).await?;
            if *json {
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
                return Ok(0);
            }
            writeln!(
                out,
                "{:>6}  {:<24}  {:<10}  {:>3}  {:<20}  ACTION / OUTCOME",
                "SEQ", "KIND", "STATE", "TRY", "CREATED"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:>6}  {:<24}  {:<10}  {:>3}  {:<20}  {}",
                    r.seq,
                    r.kind,
                    r.state,
                    r.attempts,
                    fmt_time(r.created_at),
                    one_line(&action_summary(&r.kind, &r.action), 100)
                )?;
                if let Some(note) = r.last_error.as_deref().or(r.outcome.as_deref()) {
                    writeln!(out, "{:>6}  {}", "", one_line(note, 120))?;
                }
            }
            if rows.is_empty() {
                writeln!(out, "(no actions)")?;
            }
            Ok(0)
        }
        ActionsCommand::Show { seq } => {
            let Some(r) = outbox::get(db, *seq).await? else {
                writeln!(out, "action {seq} does not exist")?;
                return Ok(1);
            };
            writeln!(out, "action {}: {} ({}), installation {}", r.seq, r.kind, r.state, r.installation_id)?;
            writeln!(out, "created {}, {} attempt(s), key {}", fmt_time(r.created_at), r.attempts, r.key)?;
            if let Some(d) = &r.delivery_id {
                writeln!(out, "caused by delivery {d}")?;
            }
            if let Some(note) = r.last_error.as_deref().or(r.outcome.as_deref()) {
                writeln!(out, "outcome: {note}")?;
            }
            let action: serde_json::Value = serde_json::from_str(&r.action).unwrap_or(serde_json::Value::Null);
            writeln!(out)?;
            // The texts (a comment's body, a check run's summary, a review's comment) as written.
            let mut fields = serde_json::Map::new();
            if let Some(map) = action.as_object() {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("body" | "summary" | "text" | "comment", Some(text)) => {
                            writeln!(out, "--- {k}:\n{text}\n---")?;
                        }
                        _ => {
                            fields.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::Value::Object(fields))?)?;
            Ok(0)
        }
        ActionsCommand::Retry { seq } => {
            if outbox::QUEUE.retry(db, *seq, Clock::system().now_ms()).await? {
                writeln!(out, "action {seq} is pending again; a running App will send it")?;
                Ok(0)
            } else {
                writeln!(out, "action {seq} does not exist or is pending or running")?;
                Ok(1)
            }
        }
    }
}

async fn installations_command(db: &Db, out: &mut dyn Write) -> anyhow::Result<i32> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM installations ORDER BY id").fetch_all(db.pool()).await?;
    if rows.is_empty() {
        writeln!(out, "(no installations)")?;
    }
    for (id,) in rows {
        if let Some(i) = tenancy::installation(db, id).await? {
            let state = if i.deleted_at.is_some() {
                "deleted"
            } else if i.suspended_at.is_some() {
                "suspended"
            } else {
                "active"
            };
            writeln!(out, "{} {} ({}) {}", i.id, i.account_login, i.account_type.unwrap_or_default(), state)?;
            for r in tenancy::repositories(db, id).await? {
                let removed = if r.removed_at.is_some() { " (removed)" } else { "" };
                writeln!(out, "  {}{}", r.full_name, removed)?;
            }
        }
    }
    Ok(0)
}

fn read_anchors(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| anyhow::anyhow!("--anchors -: cannot read standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--anchors: cannot read {}: {e}", path.display()))
}

/// `audit verify --anchors`, once the chains and tables are intact: every anchor found in `text`
/// against the log and, with `public`, its signature. Exit 1 naming the first that fails (an
/// anchor that does not parse, a bad signature, an entry missing or different), 0 otherwise.
async fn check_anchors(
    db: &Db,
    text: &str,
    public: Option<&crate::store::anchor::PublicKey>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    use crate::store::anchor::{self, Check};
    let found = anchor::parse_all(text);
    if found.is_empty() {
        writeln!(out, "audit log verification FAILED: no anchors found in the --anchors text")?;
        return Ok(1);
    }
    if public.is_none() {
        writeln!(
            out,
            "no public key (neither --public-key nor SHIPGATE_SIGNING_KEY): anchors are compared with the log, their \
             signatures are not checked"
        )?;
    }
    let (mut signed, mut unsigned, mut ignored) = (0usize, 0usize, 0usize);
    for a in &found {
        let a = match a {
            Ok(a) => a,
            Err(why) if public.is_some() => {
                // With a key only signed anchors are evidence: anyone who can comment can write
                // the tag.
                ignored += 1;
                writeln!(out, "ignored: {why}")?;
                continue;
            }
            Err(why) => {
                writeln!(out, "audit log verification FAILED: {why}")?;
                return Ok(1);
            }
        };
        let at = format!("installation {} entry {}", a.installation_id, a.position);
        if let Some(k) = public
            && !a.verify(k)
        {
            ignored += 1;
            let by = a.signature.as_ref().map(|s| format!("signed by key {}", s.0)).unwrap_or("unsigned".into());
            writeln!(out, "ignored: the anchor of {at} is not signed by this key ({}; it is {by})", k.id())?;
            continue;
        }
        let failure = match anchor::check(db, a, public).await? {
            Check::Matches { signed: true } => {
                signed += 1;
                continue;
            }
            Check::Matches { signed: false } => {
                unsigned += 1;
                continue;
            }
            Check::BadSignature { key_id } => format!(
                "the anchor of {at} is not signed by this key ({}; the anchor names key {})",
                public.map(|k| k.id()).unwrap_or("none"),
                key_id.as_deref().unwrap_or("none")
            ),
            Check::Missing { entries } => {
                format!("the log has no {at}: it ends at entry {entries}, so entries anchored on GitHub were removed")
            }
            Check::Differs { found } => {
                format!("{at} has hash {found}, but the anchor on GitHub says {}: the entry was rewritten", a.hash)
            }
        };
        writeln!(out, "audit log verification FAILED: {failure}")?;
        return Ok(1);
    }
    if public.is_some() && signed == 0 {
        writeln!(
            out,
            "audit log verification FAILED: none of the {} anchors found is signed by this key",
            found.len()
        )?;
        return Ok(1);
    }
    writeln!(
        out,
        "audit log intact; every approval and gate in the tables is recorded; {} anchors match the log ({signed} \
         with a valid signature, {unsigned} unsigned or not checked; {ignored} ignored, not signed by this key)",
        signed + unsigned
    )?;
    Ok(0)
}

/// `shipgate audit verify-evidence PATH [--public-key FILE]`: offline, no database. `configured`:
/// the public half of SHIPGATE_SIGNING_KEY, read only when no key file is given.
pub fn verify_evidence(
    path: &std::path::Path,
    public_key: Option<&std::path::Path>,
    configured: impl FnOnce() -> Result<Option<crate::store::anchor::PublicKey>, String>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    use crate::evidence::{self, KeySource, ReadError};
    let key = match public_key {
        Some(file) => {
            let pem = match std::fs::read_to_string(file) {
                Ok(p) => p,
                Err(e) => {
                    writeln!(out, "error: --public-key: cannot read {}: {e}", file.display())?;
                    return Ok(2);
                }
            };
            match crate::store::anchor::PublicKey::from_pem(&pem) {
                Ok(k) => Some((k, KeySource::Given)),
                Err(e) => {
                    writeln!(out, "error: --public-key {}: {e}", file.display())?;
                    return Ok(2);
                }
            }
        }
        None => match configured() {
            Ok(k) => k.map(|k| (k, KeySource::Configured)),
            Err(e) => {
                writeln!(out, "error: {e}")?;
                return Ok(2);
            }
        },
    };
    let files = match evidence::read(path) {
        Ok(f) => f,
        Err(ReadError::Usage(e)) => {
            writeln!(out, "error: {e}")?;
            return Ok(2);
        }
        Err(ReadError::Invalid(e)) => {
            writeln!(out, "evidence pack INVALID: {e}")?;
            return Ok(1);
        }
    };
    match evidence::verify(&files, key.as_ref().map(|(k, s)| (k, *s))) {
        Ok(v) => {
            match (&v.signed_by, key.as_ref().map(|(_, s)| *s)) {
                (Some((id, true)), Some(KeySource::Given)) => {
                    writeln!(out, "evidence pack valid: signed by key {id} (the key given with --public-key)")?
                }
                (Some((id, true)), _) => writeln!(
                    out,
                    "evidence pack valid: signed by key {id} (the public half of the configured SHIPGATE_SIGNING_KEY)"
                )?,
                (Some((id, false)), _) => writeln!(
                    out,
                    "evidence pack valid: signed by key {id}, checked ONLY with the key inside the pack: give the \
                     App's key (/.well-known/shipgate-audit.pub) with --public-key"
                )?,
                (None, _) => writeln!(
                    out,
                    "evidence pack valid: UNSIGNED, internally consistent (nothing shows who made it: anyone could \
                     have; give the App's key with --public-key to require its signature)"
                )?,
            }
            writeln!(out, "checked: {}", v.summary)?;
            for n in &v.notes {
                writeln!(out, "note: {n}")?;
            }
            Ok(0)
        }
        Err(problem) => {
            writeln!(out, "evidence pack INVALID: {problem}")?;
            Ok(1)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn evidence_command(
    db: &Db,
    cfg: &Config,
    repo: &str,
    request: Option<i64>,
    deployment: Option<i64>,
    path: &std::path::Path,
    anchors: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    use crate::evidence;
    use crate::store::evidence::{self as gathering, Refusal, Subject};
    if !repo.split_once('/').is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/')) {
        writeln!(out, "error: --repo must be OWNER/NAME, not {repo:?}")?;
        return Ok(2);
    }
    let subject = match (request, deployment) {
        (Some(n), _) => Subject::Request(n),
        (None, Some(id)) => Subject::Deployment(id),
        (None, None) => {
            writeln!(out, "error: give --request N or --deployment ID")?;
            return Ok(2);
        }
    };
    let taken = path.is_file()
        || std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false)
        || (path.exists() && !path.is_dir());
    if taken {
        writeln!(out, "error: {} exists: the pack is never written over files", path.display())?;
        return Ok(2);
    }
    let anchors = match anchors {
        Some(file) => match read_anchors(file) {
            Ok(t) => Some(t),
            Err(e) => {
                writeln!(out, "error: {e}")?;
                return Ok(2);
            }
        },
        None => None,
    };
    let signing = cfg.signing_key.as_ref();
    let public = signing.map(|k| k.public().clone());
    // Without --anchors, with the App's credentials: the anchors are read from GitHub itself (the
    // App's own comments on the request), as an auditor would find them.
    let anchors = match anchors {
        Some(text) => Some(text),
        None if cfg.github.is_some() => {
            match gathering::gather(db, &cfg.audit_keys, repo, subject, None, public.as_ref()).await? {
                Ok(g) => {
                    let gh = crate::server::github_client(cfg, None, Clock::system())?;
                    match crate::github::facts::app_comment_bodies(&gh, g.installation_id, &g.repository, g.issue).await
                    {
                        Ok(bodies) => {
                            writeln!(
                                out,
                                "anchors: read the App's {} comment(s) on {}#{} from GitHub",
                                bodies.len(),
                                g.repository,
                                g.issue
                            )?;
                            Some(bodies.join("\n"))
                        }
                        Err(e) => {
                            writeln!(
                                out,
                                "no evidence pack made: reading the anchors from GitHub failed ({e}); give the closing \
                                 summaries' text with --anchors FILE"
                            )?;
                            return Ok(1);
                        }
                    }
                }
                // Refused: said below, the same way.
                Err(_) => None,
            }
        }
        None => None,
    };
    let g = match gathering::gather(db, &cfg.audit_keys, repo, subject, anchors.as_deref(), public.as_ref()).await? {
        Ok(g) => g,
        Err(Refusal::Usage(e)) => {
            writeln!(out, "error: {e}")?;
            return Ok(2);
        }
        Err(Refusal::Invalid(e)) => {
            writeln!(out, "no evidence pack made: {e}")?;
            return Ok(1);
        }
    };
    let now = Clock::system().now_ms();
    let bundle = evidence::build(&g, now, signing);
    // The pack as an auditor will check it: a pack that would not verify is not made.
    let checked = match evidence::verify(&bundle.files, public.as_ref().map(|k| (k, evidence::KeySource::Configured))) {
        Ok(v) => v,
        Err(e) => {
            writeln!(
                out,
                "no evidence pack made: the tables and the audit log do not agree: {e} (run `shipgate audit verify`)"
            )?;
            return Ok(1);
        }
    };
    if let Err(e) = evidence::write(&bundle, path, (now / 1000).max(0) as u64) {
        writeln!(out, "error: {e}")?;
        return Ok(2);
    }
    writeln!(
        out,
        "evidence pack of {repo}#{} written to {}: {}",
        g.issue,
        path.display(),
        match signing {
            Some(k) => format!("signed with key {}", k.public().id()),
            None => "NOT signed (set SHIPGATE_SIGNING_KEY to sign it)".to_string(),
        }
    )?;
    writeln!(out, "contains: {}", checked.summary)?;
    for n in checked.notes.iter().filter(|n| !n.contains("inside the pack")) {
        writeln!(out, "note: {n}")?;
    }
    Ok(0)
}

async fn audit_command(db: &Db, cfg: &Config, cmd: &AuditCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    let keys = &cfg.audit_keys;
    match cmd {
        AuditCommand::Evidence { repo, request, deployment, out: path, anchors } => {
            evidence_command(db, cfg, repo, *request, *deployment, path, anchors.as_deref(), out).await
        }
        AuditCommand::VerifyEvidence { path, public_key } => {
            let configured = cfg.signing_key.as_ref().map(|k| k.public().clone());
            verify_evidence(path, public_key.as_deref(), || Ok(configured), out)
        }
        AuditCommand::Verify { anchors, public_key } => {
            // Read the anchors before the walk: a file that cannot be read stops here.
            let anchors = match anchors {
                Some(path) => Some(read_anchors(path)?),
                None => None,
            };
            let public = match public_key {
                Some(path) => {
                    let pem = std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("--public-key: cannot read {}: {e}", path.display()))?;
                    Some(
                        crate::store::anchor::PublicKey::from_pem(&pem)
                            .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", path.display()))?,
                    )
                }
                None => cfg.signing_key.as_ref().map(|k| k.public().clone()),
            };
            if keys.current.is_none() {
                writeln!(
                    out,
                    "SHIPGATE_AUDIT_KEY is not set: only entries written without a key can be checked, and anyone \
                     who can write to the database could have rewritten them"
                )?;
            }
            let report = audit::verify(db, keys).await?;
            for c in &report.chains {
                let key = c.key_id.as_deref().map(|k| format!(", sealed under key {k}")).unwrap_or_default();
                match &c.broken {
                    None => writeln!(
                        out,
                        "installation {}: {} entries, chain intact{key}, head {}",
                        c.installation_id, c.entries, c.last_hash
                    )?,
                    Some(b) => writeln!(out, "BROKEN {b}")?,
                }
                if let Some(b) = &c.sealed_broken {
                    writeln!(
                        out,
                        "BROKEN BEFORE THE SEAL {b} (entries written before the App had a key; sealed as broken)"
                    )?;
                }
            }
            if report.chains.is_empty() {
                writeln!(out, "(no audit entries)")?;
            }
            if let Some(b) = report.first_broken() {
                writeln!(out, "audit log verification FAILED: first broken link at {b}")?;
                return Ok(1);
            }
            if let Some(b) = report.chains.iter().find_map(|c| c.sealed_broken.as_ref()) {
                writeln!(out, "audit log verification FAILED: the entries before the seal were already broken at {b}")?;
                return Ok(1);
            }
            if let Some(what) = &report.unrecorded {
                writeln!(out, "audit log verification FAILED: {what}")?;
                return Ok(1);
            }
            if let Some(text) = anchors {
                return check_anchors(db, &text, public.as_ref(), out).await;
            }
            writeln!(out, "audit log intact; every approval and gate in the tables is recorded")?;
            Ok(0)
        }
        AuditCommand::Seal => {
            let Some(key) = &keys.current else {
                writeln!(out, "SHIPGATE_AUDIT_KEY is not set: there is no key to seal with")?;
                return Ok(2);
            };
            let sealed = audit::seal_unkeyed(db, key, Clock::system().now_ms()).await?;
            for s in &sealed {
                match &s.broken {
                    None => writeln!(
                        out,
                        "installation {}: {} entries sealed under key {}",
                        s.installation_id,
                        s.entries,
                        key.id()
                    )?,
                    Some(b) => writeln!(
                        out,
                        "installation {}: {} entries sealed under key {}, BROKEN at {b} (recorded in the seal, never hashed again)",
                        s.installation_id,
                        s.entries,
                        key.id()
                    )?,
                }
            }
            if sealed.is_empty() {
                writeln!(out, "no chain to seal: every chain is sealed under a key")?;
            }
            Ok(0)
        }
        AuditCommand::RotateKey => {
            let Some(old) = &keys.current else {
                writeln!(out, "SHIPGATE_AUDIT_KEY (the current key) is not set")?;
                return Ok(2);
            };
            let new = match std::env::var("SHIPGATE_AUDIT_NEW_KEY") {
                Ok(k) if k.trim().len() >= audit::MIN_KEY_LEN => audit::AuditKey::new(k.trim()),
                Ok(_) => {
                    writeln!(out, "SHIPGATE_AUDIT_NEW_KEY is shorter than {} characters", audit::MIN_KEY_LEN)?;
                    return Ok(2);
                }
                Err(_) => {
                    writeln!(out, "SHIPGATE_AUDIT_NEW_KEY (the new key) is not set")?;
                    return Ok(2);
                }
            };
            match audit::rotate_key(db, old, &new, Clock::system().now_ms()).await {
                Ok(n) => {
                    writeln!(
                        out,
                        "{n} chains moved from key {} to key {}: start the App with SHIPGATE_AUDIT_KEY set to the new \
                         key and SHIPGATE_AUDIT_KEY_RETIRED to the old one",
                        old.id(),
                        new.id()
                    )?;
                    Ok(0)
                }
                Err(crate::store::StoreError::Invalid(msg)) => {
                    writeln!(out, "not rotated: {msg}")?;
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        AuditCommand::Export { repo, since, format } => {
            if !repo.split_once('/').is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/')) {
                writeln!(out, "--repo must be OWNER/NAME, not {repo:?}")?;
                return Ok(2);
            }
            let since = match since {
                None => None,
                Some(s) => match audit::parse_since(s, Clock::system().now_ms()) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        writeln!(out, "--since: {e}")?;
                        return Ok(2);
                    }
                },
            };
            if format == "csv" {
                writeln!(out, "{}", audit::CSV_HEADER)?;
            }
            // With SHIPGATE_AUDIT_KEY an installation's chain is verified (as `audit verify` does)
            // before its first entry is written, and each entry is checked against its seal as it
            // is written (entries appended since): an export stops at the first that does not
            // check out, so it never hands on a rewritten entry as the log's. Entries written
            // before the App had a key are vouched for by the chain's seal, which the chain's
            // verification checks. Without the key it says that nothing is checked.
            let keys = &cfg.audit_keys;
            if keys.current.is_none() {
                eprintln!(
                    "note: SHIPGATE_AUDIT_KEY is not set: the exported entries are not checked against their seals"
                );
            }
            // Per installation: the entries of its verified snapshot.
            let mut verified: std::collections::HashMap<i64, i64> = Default::default();
            let mut filter = audit::Filter { repository: Some(repo), since, limit: 1000, ..Default::default() };
            loop {
                let rows = audit::list(db, &filter).await?;
                for r in &rows {
                    if let Some(refusal) = export_refusal(db, keys, &mut verified, r).await? {
                        eprintln!("error: {refusal}; run `shipgate audit verify`");
                        return Ok(1);
                    }
                    if format == "csv" {
                        writeln!(out, "{}", audit::to_csv(r))?;
                    } else {
                        writeln!(out, "{}", audit::to_json(r))?;
                    }
                }
                match rows.last() {
                    Some(last) if rows.len() as i64 == filter.limit => filter.after = Some(last.seq),
                    _ => break,
                }
            }
            Ok(0)
        }
    }
}

/// Why `audit export` must not write entry `r`, with the audit key: its installation's chain does
/// not verify (checked once per installation; `verified` keeps the entries each verified snapshot
/// held), it is unkeyed past the seal that vouches for the entries written before the key, or it
/// does not match its seal. None without a key (nothing can be checked) or when it checks out.
async fn export_refusal(
    db: &Db,
    keys: &audit::AuditKeys,
    verified: &mut std::collections::HashMap<i64, i64>,
    r: &audit::AuditRow,
) -> anyhow::Result<Option<String>> {
    if keys.current.is_none() {
        return Ok(None);
    }
    let entries = match verified.get(&r.installation_id) {
        Some(n) => *n,
        None => {
            let chain = audit::verify_installation(db, r.installation_id, keys).await?;
            if let Some(b) = &chain.broken {
                return Ok(Some(format!(
                    "the audit log is broken at {b}: nothing of installation {} is exported",
                    r.installation_id
                )));
            }
            verified.insert(r.installation_id, chain.entries);
            chain.entries
        }
    };
    let why = match &r.key_id {
        None => (r.position > entries).then(|| "is not sealed under a key".to_string()),
        Some(id) => match audit::expected_hash(r, keys) {
            None => Some(format!("is sealed under key {id}, which is not given (SHIPGATE_AUDIT_KEY_RETIRED)")),
            Some(h) => (h != r.hash).then(|| "does not match its seal".to_string()),
        },
    };
    Ok(why.map(|why| {
        format!(
            "the entry at installation {} position {} (seq {}) {why}: the export stops here",
            r.installation_id, r.position, r.seq
        )
    }))
}

async fn api_token_command(db: &Db, cmd: &ApiTokenCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        ApiTokenCommand::Create { installation, name, scope } => {
            let scope = api_tokens::TokenScope::parse(scope).unwrap_or(api_tokens::TokenScope::Read);
            match api_tokens::create_scoped(db, *installation, name.as_deref(), scope, Clock::system().now_ms()).await {
                Ok((row, token)) => {
                    writeln!(out, "{token}")?;
                    writeln!(
                        out,
                        "{} token {} for installation {}: shown only now; send it as `Authorization: Bearer <token>`",
                        row.scope, row.seq, row.installation_id
                    )?;
                    Ok(0)
                }
                Err(crate::store::StoreError::Invalid(msg)) => {
                    writeln!(out, "{msg}")?;
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        ApiTokenCommand::List => {
            let rows = api_tokens::list(db).await?;
            for t in &rows {
                writeln!(
                    out,
                    "{:>4}  installation {:<12}  {:<6}  {}  {}",
                    t.seq,
                    t.installation_id,
                    t.scope,
                    fmt_time(t.created_at),
                    t.name.as_deref().unwrap_or("")
                )?;
            }
            if rows.is_empty() {
                writeln!(out, "(no API tokens)")?;
            }
            Ok(0)
        }
        ApiTokenCommand::Revoke { seq } => {
            if api_tokens::revoke(db, *seq).await? {
                writeln!(out, "token {seq} revoked")?;
                Ok(0)
            } else {
                writeln!(out, "no token {seq}")?;
                Ok(1)
            }
        }
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > max { format!("{}…", s.chars().take(max).collect::<String>()) } else { s }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn fmt_time(ms: i64) -> String {
    utc(ms).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), clamped to the dates chrono
/// represents (±262,000 years).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let date = utc(z.saturating_mul(86_400_000)).date_naive();
    (i64::from(date.year()), date.month(), date.day())
}

/// Unix ms as a UTC time, clamped to the times chrono represents.
fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert_eq!(fmt_time(1_795_942_800_000), "2026-11-29 09:00:00");
        assert_eq!(fmt_time(-1), "1969-12-31 23:59:59");
        assert_eq!(fmt_time(1_709_251_199_999), "2024-02-29 23:59:59");
    }

    #[test]
    fn days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }
}
