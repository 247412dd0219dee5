//! Wiring: database, intake, worker, housekeeping and the HTTP server, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::github::auth::AppAuth;
use crate::github::client::{GitHub, GithubConfig};
use crate::github::redelivery;
use crate::github::signature::Verifier;
use crate::handlers::Registry;
use crate::http::setup::{Setup, SetupPages};
use crate::http::{AppState, router};
use crate::queue::completer::Completer;
use crate::queue::ingest::{Ingestor, Wakes};
use crate::queue::relay::{Actions, Relay};
use crate::queue::worker::{Deliveries, Worker};
use crate::store::{Db, audit, deliveries, scheduler};

/// How often old deliveries' bodies are dropped, and rows past the history period deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Options a test (or an embedding program) may change.
pub struct Options {
    pub registry: Registry,
    pub clock: Clock,
    /// Run the worker and the relay in this process (tests turn them off to look at the inbox).
    pub run_worker: bool,
    /// GitHub client settings (retries, waits) instead of the ones derived from the config.
    pub github: Option<GithubConfig>,
    /// `/setup` (registering the App in one click), offered while the App is in dry-run on SQLite.
    /// `serve` makes it; None: not offered.
    pub setup: Option<Arc<Setup>>,
}

impl Default for Options {
    fn default() -> Self {
        Options { registry: Registry::standard(), clock: Clock::system(), run_worker: true, github: None, setup: None }
    }
}

/// A running App.
pub struct Server {
    pub addr: SocketAddr,
    pub db: Db,
    pub worker_id: Option<String>,
    /// The budget of unverified webhook bytes (for a look from tests and the bench).
    pub budget: Arc<crate::http::serve::Budget>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Connects, migrates, and starts serving on `listener`.
    pub async fn start(cfg: &Config, listener: TcpListener, opts: Options) -> anyhow::Result<Server> {
        crate::metrics::install();
        let db = Db::connect_with(&cfg.database_url, cfg.pools()).await?.with_audit_key(cfg.audit_keys.current.clone());
        db.migrate().await?;
        prepare_audit_log(&db, &cfg.audit_keys).await?;
        let addr = listener.local_addr()?;
        let wake = Arc::new(Notify::new());
        let relay_wake = Arc::new(Notify::new());
        let wakes = Wakes { stored: wake.clone(), relay: relay_wake.clone() };
        let ingest = Ingestor::start(db.clone(), opts.clock.clone(), wakes);
        let (shutdown, rx) = watch::channel(false);
        let budget = crate::http::serve::Budget::new(cfg.intake.unverified_bytes);
        let audit_result = AuditResult::default();
        let link_key = link_key(cfg);
        let state = Arc::new(AppState {
            db: db.clone(),
            ingest: ingest.clone(),
            verifier: Verifier::new(&cfg.webhook_secrets),
            clock: opts.clock.clone(),
            max_body_bytes: cfg.max_body_bytes,
            budget: budget.clone(),
            audit_result: audit_result.clone(),
            budget_wait: cfg.intake.budget_wait,
            admin_token: cfg.admin_token.clone(),
            metrics_token: cfg.metrics_token.clone(),
            no_webhook_secret: cfg.webhook_secrets.is_empty(),
            oidc: match crate::github::oidc::OidcVerifier::new(cfg.oidc.clone(), opts.clock.clone()) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::warn!(error = %e, "no HTTP client for the OIDC issuer: POST /gate/wait answers 503");
                    None
                }
            },
            gate_wait_max: cfg.gate_wait_max,
            gate_wait_poll: cfg.gate_wait_poll,
            shutdown: rx.clone(),
            audit_public_key: cfg.signing_key.as_ref().map(|k| k.public().to_pem()),
            pages: Arc::new(crate::http::pages::Pages {
                link_key: link_key.clone(),
                public_url: cfg.public_url.clone(),
                github_web_url: cfg.github_web_url(),
                link_ttl: cfg.link_ttl,
            }),
            setup: SetupPages::for_start(opts.setup.clone(), cfg).map(Arc::new),
        });
        let mut tasks = Vec::new();
        let mut worker_id = None;
        let github = Arc::new(github_client(cfg, opts.github, opts.clock.clone())?);
        let notifier = Arc::new(crate::notify::Notifier::new(cfg.notify.clone(), &cfg.github_web_url())?);
        if opts.run_worker {
            // SQLite: one writer, so the worker's claims and completions share the intake's commits.
            let (completer, shared_claims) = if ingest.carries_worker() {
                (Completer::Shared(std::sync::Arc::new(ingest.clone())), Some(ingest.clone()))
            } else {
                (Completer::start(db.clone(), opts.clock.clone(), relay_wake.clone()), None)
            };
            let job = Deliveries {
                db: db.clone(),
                registry: Arc::new(opts.registry),
                clock: opts.clock.clone(),
                github: github.clone(),
                teams: Arc::new(crate::github::facts::TeamCache::default()),
                coalesce: cfg.coalesce,
                completer,
                shared_claims,
                channels: Arc::new(notifier.directory().clone()),
            };
            tasks.push(tokio::spawn(crate::queue::coalescer::run(
                db.clone(),
                opts.clock.clone(),
                wake.clone(),
                cfg.worker.poll_interval,
                rx.clone(),
            )));
            let worker = Worker::new(db.clone(), job, cfg.worker.clone(), opts.clock.clone(), wake);
            worker_id = Some(worker.info.id.clone());
            tasks.push(worker.spawn(rx.clone()));
            let actions = Actions {
                db: db.clone(),
                github: github.clone(),
                clock: opts.clock.clone(),
                audit_keys: cfg.audit_keys.clone(),
                signing: cfg.signing_key.clone(),
                notifier: notifier.clone(),
                links: cfg.public_url.as_ref().map(|base| crate::domain::links::Minter {
                    key: link_key.clone(),
                    base: base.clone(),
                    ttl_s: cfg.link_ttl.as_secs() as i64,
                }),
            };
            let relay = Relay::new(db.clone(), actions, cfg.worker.clone(), opts.clock.clone(), relay_wake);
            tasks.push(relay.spawn(rx.clone()));
        }
        tasks.push(tokio::spawn(prune_loop(db.clone(), opts.clock.clone(), cfg.retention, cfg.history, rx.clone())));
        tasks.push(tokio::spawn(escalation_loop(db.clone(), opts.clock.clone(), rx.clone())));
        if !cfg.report_every.is_zero() {
            tasks.push(tokio::spawn(report_loop(db.clone(), opts.clock.clone(), cfg.report_every, rx.clone())));
        }
        if !cfg.figures_every.is_zero() {
            tasks.push(tokio::spawn(figures_loop(db.clone(), opts.clock.clone(), cfg.figures_every, rx.clone())));
        }
        if !cfg.metrics_upkeep.is_zero() {
            tasks.push(tokio::spawn(crate::metrics::upkeep_loop(cfg.metrics_upkeep, rx.clone())));
        }
        if !cfg.audit_verify_every.is_zero() {
            tasks.push(tokio::spawn(audit_verify_loop(
                db.clone(),
                cfg.audit_keys.clone(),
                opts.clock.clone(),
                cfg.audit_verify_every,
                audit_result.clone(),
                rx.clone(),
            )));
        }
        if !cfg.redelivery_interval.is_zero() && !github.dry_run() {
            let every = cfg.redelivery_interval;
            tasks.push(tokio::spawn(redelivery_loop(
                db.clone(),
                github.clone(),
                opts.clock.clone(),
                every,
                rx.clone(),
            )));
        }

        let http_rx = rx.clone();
        let app = router(state);
        let limits = cfg.intake.clone();
        let http = tokio::spawn(crate::http::serve::serve(listener, app, limits, http_rx));
        tracing::info!(%addr, backend = db.backend().name(), dry_run = cfg.dry_run(), "shipgate listening");
        Ok(Server { addr, db, worker_id, budget, shutdown, http, tasks })
    }

    /// Stops accepting, answers what was received, lets the worker finish or release its
    /// leases, then closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        match self.http.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server error"),
            Err(e) => tracing::error!(error = %e, "HTTP task failed"),
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.db.close().await;
        Ok(())
    }
}

/// The key of the details pages' links: derived from `SHIPGATE_AUDIT_KEY`, so every replica (and
/// `shipgate link`) signs alike. Without an audit key (a dry run), a key of this process only:
/// its links stop working when it stops.
pub fn link_key(cfg: &Config) -> crate::domain::links::LinkKey {
    match &cfg.audit_keys.current {
        Some(k) => crate::domain::links::LinkKey::new(k.derive("details-links")),
        None => {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).expect("the operating system's randomness");
            crate::domain::links::LinkKey::new(bytes)
        }
    }
}

/// The GitHub client: dry-run without credentials; a key that does not load is a start-up error.
pub(crate) fn github_client(cfg: &Config, over: Option<GithubConfig>, clock: Clock) -> anyhow::Result<GitHub> {
    let app = cfg.github.as_ref().map(AppAuth::from_credentials).transpose()?;
    let gcfg = over.unwrap_or_else(|| {
        let mut g = GithubConfig::new(&cfg.github_api_url);
        g.mutation_spacing = cfg.mutation_spacing;
        g
    });
    Ok(GitHub::new(gcfg, app, clock)?)
}

/// Asks GitHub for the deliveries it could not hand over: at start-up and every `every`, once
/// across replicas (the jobs table decides who runs each slot).
async fn redelivery_loop(db: Db, gh: Arc<GitHub>, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    let worker = crate::queue::runner::worker_id("scheduler");
    let every_ms = every.as_millis().max(1) as i64;
    loop {
        let now = clock.now_ms();
        let slot = now - now.rem_euclid(every_ms);
        match scheduler::claim(&db, "redelivery", slot, &worker, now).await {
            Ok(true) => {
                let result = match redelivery::run_once(&gh, &db, now).await {
                    Ok(r) => {
                        tracing::info!(seen = r.seen, requested = r.requested.len(), "redelivery check done");
                        format!("seen {}, requested {}", r.seen, r.requested.len())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redelivery check failed");
                        format!("error: {e}")
                    }
                };
                if let Err(e) = scheduler::finished(&db, "redelivery", slot, &result, clock.now_ms()).await {
                    tracing::warn!(error = %e, "could not record the redelivery run");
                }
            }
            Ok(false) => {} // another replica has this slot
            Err(e) => tracing::warn!(error = %e, "could not claim the redelivery job"),
        }
        let wait = (slot + every_ms - clock.now_ms()).max(1000) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Before anything appends: a process with a key seals the chains written without one; a
/// process refuses to start on a log sealed under a key it does not have (or without a key on a
/// sealed log), since it could not append to it.
async fn prepare_audit_log(db: &Db, keys: &audit::AuditKeys) -> anyhow::Result<()> {
    let chains = audit::chain_keys(db).await?;
    match &keys.current {
        None => {
            if let Some((installation, Some(k))) = chains.iter().find(|(_, k)| k.is_some()) {
                anyhow::bail!(
                    "SHIPGATE_AUDIT_KEY is not set, but the audit log is sealed under key {k} (installation \
                     {installation}): set it to that key"
                );
            }
            tracing::warn!(
                "SHIPGATE_AUDIT_KEY is not set: audit entries are chained with a plain SHA-256, which anyone who can \
                 write to the database can compute again. Set it (32+ random characters, kept outside the database) \
                 before real use (then `shipgate audit seal` seals the existing entries under it)."
            );
        }
        Some(key) => {
            if let Some((installation, Some(k))) =
                chains.iter().find(|(_, k)| k.as_deref().is_some_and(|k| k != key.id()))
            {
                anyhow::bail!(
                    "the audit log is sealed under key {k} (installation {installation}), but SHIPGATE_AUDIT_KEY is key \
                     {}: set the key the log was last rotated to, or move the log with `shipgate audit rotate-key`",
                    key.id()
                );
            }
            // Chains written without a key are sealed by an operator (`shipgate audit seal`), never
            // by a start: a database writer could otherwise delete a keyed chain, write an unkeyed
            // one with any history, and have the next start seal it.
            let unkeyed: Vec<String> = chains.iter().filter(|(_, k)| k.is_none()).map(|(i, _)| i.to_string()).collect();
            if !unkeyed.is_empty() {
                anyhow::bail!(
                    "the audit log has chains written without a key (installations {}): check that nobody wrote to \
                     the database behind the App's back, then seal them once under SHIPGATE_AUDIT_KEY with \
                     `shipgate audit seal` and start again",
                    unkeyed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// The last verification of the audit log by this process: when (Unix ms) and what it found.
pub type AuditResult = Arc<std::sync::Mutex<Option<(i64, audit::Verdict)>>>;

/// Verifies the audit log every `every` (each replica for itself: a result kept in the database
/// could be written there by whoever it is meant to catch); `/metrics` exports the last result.
async fn audit_verify_loop(
    db: Db,
    keys: audit::AuditKeys,
    clock: Clock,
    every: Duration,
    last: AuditResult,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let verdict = match audit::verify(&db, &keys).await {
            Ok(r) if r.ok() => {
                tracing::info!(chains = r.chains.len(), "audit log verified: intact");
                audit::Verdict::Intact
            }
            Ok(r) => {
                let what = r
                    .first_broken()
                    .or_else(|| r.chains.iter().find_map(|c| c.sealed_broken.as_ref()))
                    .map(|b| b.to_string())
                    .or(r.unrecorded.clone())
                    .unwrap_or_default();
                tracing::error!(problem = %what, "audit log verification FAILED");
                metrics::counter!("shipgate_audit_verify_failures_total", "reason" => "broken").increment(1);
                audit::Verdict::Broken(what)
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit log verification could not run");
                metrics::counter!("shipgate_audit_verify_failures_total", "reason" => "error").increment(1);
                audit::Verdict::Failed(e.to_string())
            }
        };
        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some((clock.now_ms(), verdict));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn prune_loop(
    db: Db,
    clock: Clock,
    retention: Duration,
    history: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = clock.now_ms();
        match deliveries::drop_bodies(&db, now - retention.as_millis() as i64, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "bodies of old processed deliveries dropped"),
            Err(e) => tracing::warn!(error = %e, "dropping old delivery bodies failed"),
        }
        if let Some(history) = history {
            match deliveries::prune(&db, now - history.as_millis() as i64, 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "processed deliveries past SHIPGATE_HISTORY_DAYS deleted"),
                Err(e) => tracing::warn!(error = %e, "pruning old deliveries failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How often incidents past their deadline are looked for (and once at start, so a deadline
/// missed while the App was down fires when it comes back).
const ESCALATE_EVERY: Duration = Duration::from_secs(2);

async fn escalation_loop(db: Db, clock: Clock, mut stop: watch::Receiver<bool>) {
    let worker = crate::queue::runner::worker_id("escalation");
    loop {
        match crate::handlers::ci::escalate_due(&db, clock.now_ms(), &worker).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(escalated = n, "incidents escalated"),
            Err(e) => tracing::warn!(error = %e, "escalating incidents failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ESCALATE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Opens the weekly reports due (once across replicas; also at start, so a report missed while the
/// App was down is opened when it comes back), and closes the reports they supersede.
async fn report_loop(db: Db, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    let worker = crate::queue::runner::worker_id("report");
    loop {
        match crate::handlers::report::run_due(&db, clock.now_ms(), &worker).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "weekly reports opened"),
            Err(e) => tracing::warn!(error = %e, "opening weekly reports failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Recomputes the trailing week's figures of each repository for `/metrics`.
async fn figures_loop(db: Db, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut shown = std::collections::BTreeSet::new();
    loop {
        if let Err(e) = crate::handlers::report::refresh_gauges(&db, clock.now_ms(), &mut shown).await {
            tracing::warn!(error = %e, "computing the figures for /metrics failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `shipgate serve`: runs until SIGTERM or SIGINT. In dry-run on SQLite it offers `/setup`, and
/// once that has written the App's credentials it starts again with them on the same socket,
/// without a restart of the process.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    start_warnings(&cfg);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (SHIPGATE_LISTEN): {e}", cfg.listen))?
        .into_std()?;
    let reload = Arc::new(Notify::new());
    let setup = match (cfg.dry_run(), crate::credentials::path_for(&cfg.database_url)) {
        (true, Some(_)) => Some(Arc::new(Setup::new(reload.clone()).map_err(|e| anyhow::anyhow!(e))?)),
        _ => None,
    };
    let opts = |setup: &Option<Arc<Setup>>| Options { setup: setup.clone(), ..Options::default() };
    let mut cfg = cfg;
    let mut server = Server::start(&cfg, share(&listener)?, opts(&setup)).await?;
    // Only once the App serves it (a start that fails says only why).
    if let Some(setup) = &setup {
        print_setup_address(&cfg, setup);
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = reload.notified() => {}
        }
        // `/setup` wrote the credentials file: read the configuration again. One that does not
        // load (or still has no credentials) is not switched to: the App goes on in dry-run
        // (`/setup` is no longer offered) and says why; the next start reports it as any start does.
        let next = match Config::from_env() {
            Ok(next) if !next.dry_run() => next,
            Ok(_) => {
                tracing::error!(
                    "the credentials file was written but the configuration still has no GitHub App credentials: \
                     staying in dry-run (is DATABASE_URL the same as when the App started?)"
                );
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot leave dry-run: the new configuration does not load; staying in dry-run");
                continue;
            }
        };
        tracing::info!(
            "leaving dry-run: finishing the requests under way, then starting again with the new credentials"
        );
        server.shutdown().await?;
        server = match Server::start(&next, share(&listener)?, Options::default()).await {
            Ok(s) => {
                let id = next.github.as_ref().map(|g| g.app_id.clone()).unwrap_or_default();
                let file = next.credentials_file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
                tracing::info!(app_id = %id, file = %file, "left dry-run: GitHub App {id} credentials loaded from {file}");
                start_warnings(&next);
                cfg = next;
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot leave dry-run: the App does not start with the new credentials; \
                                             going on in dry-run until it is restarted");
                Server::start(&cfg, share(&listener)?, opts(&setup)).await?
            }
        };
    }
    tracing::info!("shutting down: no new deliveries; finishing work under way");
    server.shutdown().await
}

/// Another handle on the one listening socket, for one start of the server: connections that
/// arrive while the App starts again wait in the kernel's backlog.
fn share(listener: &std::net::TcpListener) -> anyhow::Result<TcpListener> {
    let l = listener.try_clone()?;
    l.set_nonblocking(true)?;
    Ok(TcpListener::from_std(l)?)
}

/// The setup address, on stderr only (not through the logs, which may be shipped elsewhere).
fn print_setup_address(cfg: &Config, setup: &Setup) {
    if let Some(why) = crate::http::setup::blocked(cfg) {
        eprintln!(
            "\nshipgate has no GitHub App credentials, and cannot be registered in one click from this start: {why}\n"
        );
        return;
    }
    let base = cfg.public_url.clone().unwrap_or_else(|| format!("http://{}", cfg.listen));
    eprintln!(
        "\nshipgate has no GitHub App credentials. To register it on GitHub in one click, open\n\n    \
         {base}/setup?code={}\n\nThis address is printed here only: whoever opens it can register a GitHub App for this \
         server. It is valid until the App is registered or stopped.\n",
        setup.code()
    );
}

/// What a start says about its configuration: the webhook secret, dry-run, the signing key.
fn start_warnings(cfg: &Config) {
    if cfg.webhook_secrets.is_empty() {
        tracing::warn!(
            listen = %cfg.listen,
            "GITHUB_WEBHOOK_SECRET is not set and the App listens on an address others can reach: every webhook is \
             refused (401) until it is set. (The development secret is only accepted on a loopback address.)"
        );
    } else if cfg.webhook_secret_defaulted {
        tracing::warn!(
            "GITHUB_WEBHOOK_SECRET is not set: using the development secret {:?}. Anyone who knows it can send \
             webhooks. Set GITHUB_WEBHOOK_SECRET before exposing this App.",
            crate::config::DEV_WEBHOOK_SECRET
        );
    }
    if cfg.dry_run() {
        tracing::warn!(
            "no GitHub App credentials (GITHUB_APP_ID, GITHUB_PRIVATE_KEY): dry-run mode. The App reads nothing from \
             GitHub and sends nothing: requests are evaluated from their webhooks alone (the policy file, pull \
             requests, checks, teams and permissions are not read, and say so; nothing can be approved or \
             deployed). `shipgate actions list` and `shipgate actions show SEQ` show what it would have sent; \
             `shipgate simulate` evaluates a policy against facts from a file."
        );
    }
    match &cfg.signing_key {
        Some(k) => tracing::info!(
            key = k.public().id(),
            "audit anchors are signed; public key at /.well-known/shipgate-audit.pub"
        ),
        None if !cfg.dry_run() => tracing::warn!(
            "SHIPGATE_SIGNING_KEY is not set: the audit log's anchors in closing summaries go out unsigned (make a key \
             with `openssl genpkey -algorithm ed25519`)"
        ),
        None => {}
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
