//! Process configuration, read from the environment (documented in `.env.example`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {msg}")]
    Invalid { var: &'static str, msg: String },
    #[error(
        "GITHUB_WEBHOOK_SECRET is not set: with GitHub App credentials the webhook secret is required; set it to the secret entered when the App was registered (several, comma-separated, while rotating)"
    )]
    MissingWebhookSecret,
    /// The credentials file `/setup` wrote cannot be read or is malformed (the message names it).
    #[error("credentials file {0}")]
    CredentialsFile(String),
    /// A setting is wrong, with the credentials file read besides the environment.
    #[error("{inner} (settings read from the environment and from {path})")]
    WithCredentialsFile { inner: Box<ConfigError>, path: String },
}

/// How the App authenticates to GitHub, if at all.
#[derive(Clone, Debug)]
pub struct GithubCredentials {
    pub app_id: String,
    pub private_key: PrivateKeySource,
}

#[derive(Clone, Debug)]
pub enum PrivateKeySource {
    Pem(Secret),
    Path(PathBuf),
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Deliveries processed at once.
    pub concurrency: usize,
    /// How long a claim is held before another worker may take the delivery.
    pub lease: Duration,
    /// After this many failed attempts a delivery is parked.
    pub max_attempts: i64,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often the queue is polled when nothing wakes the worker.
    pub poll_interval: Duration,
    /// On shutdown, how long work under way may finish before its leases are given back.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            lease: Duration::from_secs(60),
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub webhook_secrets: Vec<Secret>,
    /// True when the secret was defaulted to `development` (dry-run only).
    pub webhook_secret_defaulted: bool,
    pub github: Option<GithubCredentials>,
    pub github_api_url: String,
    /// Pause between mutating GitHub calls of one installation.
    pub mutation_spacing: Duration,
    /// How often failed webhook deliveries are asked for again (0: never).
    pub redelivery_interval: Duration,
    pub worker: WorkerConfig,
    /// `SHIPGATE_RETENTION_DAYS` (14): how long a processed delivery keeps its body.
    pub retention: Duration,
    /// `SHIPGATE_HISTORY_DAYS` (400; 0: for ever): how long its row is kept (for figures, history,
    /// and refusing a replay).
    pub history: Option<Duration>,
    pub max_body_bytes: usize,
    /// The intake's time-outs, connection cap and budget of unverified body bytes
    /// (`SHIPGATE_HEADER_TIMEOUT_SECS` 10, `SHIPGATE_IDLE_TIMEOUT_SECS` 60,
    /// `SHIPGATE_BODY_IDLE_TIMEOUT_SECS` 10,
    /// `SHIPGATE_BODY_TIMEOUT_SECS` 30, `SHIPGATE_MAX_CONNECTIONS` 512,
    /// `SHIPGATE_UNVERIFIED_BODY_BYTES` 48 MiB, `SHIPGATE_BODY_BUDGET_WAIT_MS` 2000).
    pub intake: crate::http::serve::Limits,
    pub log_json: bool,
    /// `SHIPGATE_ADMIN_TOKEN`: a bearer token for /api/... that reads every installation.
    pub admin_token: Option<Secret>,
    /// `SHIPGATE_METRICS_TOKEN`: when set, `/metrics` asks for it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// `SHIPGATE_AUDIT_KEY` (at least 32 characters): the audit log's HMAC key, and
    /// `SHIPGATE_AUDIT_KEY_RETIRED` (comma-separated): keys rotated away from, to verify old entries.
    pub audit_keys: crate::store::audit::AuditKeys,
    /// `SHIPGATE_AUDIT_VERIFY_SECS` (3600; 0: never): how often `serve` verifies the audit log.
    pub audit_verify_every: Duration,
    /// `SHIPGATE_REPORT_CHECK_MS` (60000; 0: never): how often `serve` looks for weekly reports
    /// due (and previous reports to close).
    pub report_every: Duration,
    /// `SHIPGATE_FIGURES_REFRESH_MS` (60000; 0: never): how often the `/metrics` figures gauges
    /// are recomputed.
    pub figures_every: Duration,
    /// `SHIPGATE_METRICS_UPKEEP_MS` (1000; 0: only when `/metrics` is read): how often the
    /// histograms' recorded samples are folded into their buckets. Until then each sample is
    /// kept (~16 bytes), so a process nobody scrapes would grow without end.
    pub metrics_upkeep: Duration,
    /// `SHIPGATE_SQLITE_READERS` (4): SQLite connections for reads beside the writer.
    pub sqlite_readers: u32,
    /// `SHIPGATE_PG_POOL` (16): PostgreSQL connections of this replica, beside the intake's 4.
    pub pg_pool: u32,
    /// `SHIPGATE_SIGNING_KEY` (PKCS#8 PEM text) or `SHIPGATE_SIGNING_KEY_PATH`: the Ed25519 key
    /// that signs the audit log's anchors; its public half is served at
    /// `/.well-known/shipgate-audit.pub`. Optional: without it anchors go unsigned.
    pub signing_key: Option<crate::store::anchor::SigningKey>,
    /// `POST /gate/wait`: whose OIDC tokens are accepted (`SHIPGATE_OIDC_ISSUER`,
    /// `SHIPGATE_OIDC_AUDIENCE`, `SHIPGATE_OIDC_JWKS_REFRESH_SECS`).
    pub oidc: crate::github::oidc::OidcConfig,
    /// `SHIPGATE_GATE_WAIT_MAX_SECS` (600): the longest long poll.
    pub gate_wait_max: Duration,
    /// `SHIPGATE_GATE_WAIT_POLL_MS` (2000): how often a waiting call reads its answer when no
    /// decision in this process wakes it (another replica's, say).
    pub gate_wait_poll: Duration,
    /// How the evaluations asked for by check events are coalesced (`SHIPGATE_COALESCE_QUIET_MS`,
    /// 2000; `SHIPGATE_COALESCE_VERDICT_MS`, 10000; `SHIPGATE_COALESCE_REFRESH_MS`, 60000).
    pub coalesce: crate::domain::flow::signal::Coalesce,
    /// Where notifications go (`SHIPGATE_SLACK_WEBHOOKS`, `SHIPGATE_SMTP_URL`,
    /// `SHIPGATE_MAIL_FROM`, `SHIPGATE_MAIL_DOMAINS`).
    pub notify: NotifySettings,
    /// `SHIPGATE_PUBLIC_URL`: where people and GitHub reach the App (`https://shipgate.example.com`),
    /// for the details pages' links in comments and check runs and for `/setup`'s hook and
    /// redirect URLs. Without it the App writes no links.
    pub public_url: Option<String>,
    /// `SHIPGATE_LINK_DAYS` (30): how long a signed details-page link stays valid.
    pub link_ttl: Duration,
    /// `SHIPGATE_SETUP_STATE_SECS` (3600): how long `/setup`'s round trip through GitHub may take.
    pub setup_state_ttl: Duration,
    /// The credentials file (`crate::credentials`) this configuration read, if any.
    pub credentials_file: Option<PathBuf>,
}

/// The channels an operator gave the App (SPEC §5, §6). A repository's policy names them
/// (`slack:oncall`), never their URLs or servers.
#[derive(Clone, Debug, Default)]
pub struct NotifySettings {
    /// (account, channel), lowercase → incoming webhook URL (a secret: never logged or stored).
    pub slack: std::collections::BTreeMap<(String, String), Secret>,
    /// `smtp://[user:password@]host[:port][?tls=required|opportunistic|none]` or `smtps://…`
    /// (may hold a password).
    pub smtp_url: Option<Secret>,
    /// `SHIPGATE_SMTP_CA_FILE`: a PEM file of CA certificates the SMTP server's certificate may
    /// chain to besides the public roots (a relay with a private CA).
    pub smtp_ca: Option<std::path::PathBuf>,
    /// The `From:` address of every e-mail.
    pub mail_from: Option<String>,
    /// account (lowercase) → the mail domains it may write to (lowercase).
    pub mail_domains: std::collections::BTreeMap<String, Vec<String>>,
}

impl NotifySettings {
    /// What a policy may name, as names only (for `notify::warnings` and the relay's checks).
    pub fn directory(&self) -> crate::domain::notify::Directory {
        crate::domain::notify::Directory {
            slack: self.slack.keys().cloned().collect(),
            mail_domains: self.mail_domains.clone(),
            mail: self.smtp_url.is_some() && self.mail_from.is_some(),
        }
    }

    /// Reads the four variables through `get`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<NotifySettings, ConfigError> {
        let mut n = NotifySettings::default();
        if let Some(v) = get("SHIPGATE_SLACK_WEBHOOKS") {
            for (i, entry) in v.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()).enumerate() {
                let bad = |why: &str| ConfigError::Invalid {
                    var: "SHIPGATE_SLACK_WEBHOOKS",
                    // Never the URL: it is the secret.
                    msg: format!("entry {} {why}; write `account/name=https://hooks.slack.com/services/…`", i + 1),
                };
                let (name, url) = entry.split_once('=').ok_or_else(|| bad("has no `=`"))?;
                let (account, channel) =
                    name.trim().split_once('/').ok_or_else(|| bad("names no account (`account/name`)"))?;
                let (account, channel) = (account.trim().to_ascii_lowercase(), channel.trim().to_ascii_lowercase());
                let name_ok = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                };
                if !name_ok(&account) || !name_ok(&channel) {
                    return Err(bad("has an account or channel name that is not letters, digits, `-`, `_` or `.`"));
                }
                let url = url.trim();
                if !(url.starts_with("https://") || loopback_http(url)) {
                    return Err(bad(&format!(
                        "({account}/{channel}) is not an https:// URL (plain http only to a loopback address)"
                    )));
                }
                if n.slack.insert((account.clone(), channel.clone()), Secret::new(url)).is_some() {
                    return Err(bad(&format!("({account}/{channel}) names a channel given before")));
                }
            }
        }
        if let Some(url) = get("SHIPGATE_SMTP_URL") {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(ConfigError::Invalid {
                    var: "SHIPGATE_SMTP_URL",
                    msg: "must start with smtp:// (STARTTLS when the server offers it; `?tls=required` to insist) or                           smtps:// (TLS from the start)"
                        .into(),
                });
            }
            n.smtp_url = Some(Secret::new(url));
        }
        if let Some(path) = get("SHIPGATE_SMTP_CA_FILE") {
            if let Err(e) = std::fs::metadata(&path) {
                return Err(ConfigError::Invalid {
                    var: "SHIPGATE_SMTP_CA_FILE",
                    msg: format!("cannot read {path:?} ({e}); point it at a PEM file of CA certificates"),
                });
            }
            n.smtp_ca = Some(path.into());
        }
        if let Some(from) = get("SHIPGATE_MAIL_FROM") {
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ConfigError::Invalid {
                    var: "SHIPGATE_MAIL_FROM",
                    msg: format!(
                        "{from:?} is not an address (`shipgate@example.com` or `shipgate <shipgate@example.com>`)"
                    ),
                });
            }
            n.mail_from = Some(from);
        }
        if n.smtp_url.is_some() != n.mail_from.is_some() {
            let var = if n.smtp_url.is_some() { "SHIPGATE_MAIL_FROM" } else { "SHIPGATE_SMTP_URL" };
            return Err(ConfigError::Invalid {
                var,
                msg: "not set: e-mail needs both SHIPGATE_SMTP_URL and SHIPGATE_MAIL_FROM".into(),
            });
        }
        if let Some(v) = get("SHIPGATE_MAIL_DOMAINS") {
            for entry in v.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
                let bad = |why: String| ConfigError::Invalid {
                    var: "SHIPGATE_MAIL_DOMAINS",
                    msg: format!(
                        "{entry:?} {why}; write `account=example.com` (several domains: `account=a.com|b.org`)"
                    ),
                };
                let (account, domains) = entry.split_once('=').ok_or_else(|| bad("has no `=`".into()))?;
                let account = account.trim().to_ascii_lowercase();
                if account.is_empty() {
                    return Err(bad("names no account".into()));
                }
                for d in domains.split('|').map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase()) {
                    if crate::domain::notify::address_domain(&format!("x@{d}")).is_none() {
                        return Err(bad(format!("has `{d}`, which is not a domain")));
                    }
                    let list = n.mail_domains.entry(account.clone()).or_default();
                    if !list.contains(&d) {
                        list.push(d);
                    }
                }
            }
        }
        Ok(n)
    }
}

/// `http://127.0.0.1…`, `http://localhost…`, `http://[::1]…`: plain HTTP to this machine only.
fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') { host.split(']').next().map(|h| &h[1..]) } else { host.split(':').next() };
    host.is_some_and(|h| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shipgate.db";
pub const DEV_WEBHOOK_SECRET: &str = "development";
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
/// The longest life of a details page link (`SHIPGATE_LINK_DAYS`).
pub const MAX_LINK_DAYS: u64 = 365;

/// The shortest webhook secret accepted with credentials (SPEC.md §6).
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

impl Config {
    /// The database connections to open (`SHIPGATE_SQLITE_READERS`, `SHIPGATE_PG_POOL`).
    pub fn pools(&self) -> crate::store::PoolSizes {
        crate::store::PoolSizes { sqlite_readers: self.sqlite_readers, pg_connections: self.pg_pool }
    }

    /// Reads the process environment, and the credentials file `/setup` wrote beside a SQLite
    /// database when there is one (`crate::credentials`): the environment wins over the file,
    /// variable by variable. A file others may read is said on stderr (logging is not set up
    /// yet when this runs), never refused.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_env_and_file(|k| std::env::var(k).ok())
    }

    /// [`Config::from_env`] over the variables `env` gives, and the credentials file of the
    /// `DATABASE_URL` it gives.
    pub fn from_env_and_file(env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let db = env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let Some(path) = crate::credentials::path_for(&db) else { return Self::from_lookup(env) };
        let file = crate::credentials::load(&path).map_err(ConfigError::CredentialsFile)?;
        let Some(file) = file else { return Self::from_lookup(env) };
        for w in &file.warnings {
            eprintln!("warning: {w}");
        }
        let mut cfg = Self::from_lookup(|k| env(k).or_else(|| file.get_unless_env(k, &env)))
            .map_err(|e| ConfigError::WithCredentialsFile { inner: Box::new(e), path: path.display().to_string() })?;
        cfg.credentials_file = Some(path);
        Ok(cfg)
    }

    /// Reads configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let listen = get("SHIPGATE_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen.parse().map_err(|e| ConfigError::Invalid {
            var: "SHIPGATE_LISTEN",
            msg: format!("{listen:?} is not an address:port ({e})"),
        })?;
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        check_database_url(&database_url)?;

        let app_id = get("GITHUB_APP_ID").or_else(|| get("GITHUB_CLIENT_ID"));
        let key = match (get("GITHUB_PRIVATE_KEY"), get("GITHUB_PRIVATE_KEY_PATH")) {
            (Some(pem), _) => Some(PrivateKeySource::Pem(Secret::new(pem.replace("\\n", "\n")))),
            (None, Some(path)) => Some(PrivateKeySource::Path(PathBuf::from(path))),
            (None, None) => None,
        };
        let github = match (app_id, key) {
            (Some(app_id), Some(private_key)) => Some(GithubCredentials { app_id, private_key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    var: "GITHUB_PRIVATE_KEY",
                    msg: "GITHUB_APP_ID is set but neither GITHUB_PRIVATE_KEY nor GITHUB_PRIVATE_KEY_PATH is".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "GITHUB_APP_ID",
                    msg: "a private key is set but GITHUB_APP_ID (or GITHUB_CLIENT_ID) is not".into(),
                });
            }
        };

        let mut webhook_secrets: Vec<Secret> = get("GITHUB_WEBHOOK_SECRET")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect())
            .unwrap_or_default();
        let mut webhook_secret_defaulted = false;
        if webhook_secrets.is_empty() {
            if github.is_some() {
                return Err(ConfigError::MissingWebhookSecret);
            }
            // The development secret is for a laptop: on an address others can reach, every
            // delivery is refused until a secret is set (the App still runs, in dry-run).
            if listen.ip().is_loopback() {
                webhook_secrets.push(Secret::new(DEV_WEBHOOK_SECRET));
            }
            webhook_secret_defaulted = true;
        } else if let Some(weak) = webhook_secrets
            .iter()
            .find(|s| s.expose().len() < MIN_WEBHOOK_SECRET_LEN || s.expose() == DEV_WEBHOOK_SECRET)
            && (github.is_some() || !listen.ip().is_loopback())
        {
            // With credentials the App acts on GitHub; on an address others can reach, anyone who
            // guesses the secret writes to its inbox and audit log even in dry-run. The dry-run
            // secret `development` (SPEC §7) and other short ones are for a laptop only.
            let why = if github.is_some() {
                "with the App's credentials set".to_string()
            } else {
                format!("on {listen}, an address others can reach (SHIPGATE_LISTEN)")
            };
            let what = if weak.expose() == DEV_WEBHOOK_SECRET {
                format!("`{DEV_WEBHOOK_SECRET}` is the dry-run secret, for a loopback address only")
            } else {
                format!("a secret of {} characters is too short", weak.expose().len())
            };
            return Err(ConfigError::Invalid {
                var: "GITHUB_WEBHOOK_SECRET",
                msg: format!(
                    "{what} {why}: use at least {MIN_WEBHOOK_SECRET_LEN} random characters \
                     (`openssl rand -hex 32`), the same in the App's settings on GitHub"
                ),
            });
        }

        let github_api_url =
            get("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()).trim_end_matches('/').to_string();

        let mut worker = WorkerConfig::default();
        if let Some(n) = parse_num(&get, "SHIPGATE_WORKERS")? {
            worker.concurrency = (n as usize).max(1);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_LEASE_SECS")? {
            worker.lease = Duration::from_secs(n.max(1));
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_MAX_ATTEMPTS")? {
            worker.max_attempts = n.max(1) as i64;
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_RETRY_BASE_MS")? {
            worker.retry_base = Duration::from_millis(n);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_RETRY_MAX_MS")? {
            worker.retry_max = Duration::from_millis(n);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_POLL_MS")? {
            worker.poll_interval = Duration::from_millis(n.max(10));
        }
        let retention_days = parse_num(&get, "SHIPGATE_RETENTION_DAYS")?.unwrap_or(14);
        let history_days = parse_num(&get, "SHIPGATE_HISTORY_DAYS")?.unwrap_or(400);
        if history_days != 0 && history_days < retention_days {
            return Err(ConfigError::Invalid {
                var: "SHIPGATE_HISTORY_DAYS",
                msg: format!(
                    "{history_days} is shorter than SHIPGATE_RETENTION_DAYS ({retention_days}): rows would go before \
                     their bodies"
                ),
            });
        }
        let mutation_spacing = Duration::from_millis(parse_num(&get, "SHIPGATE_MUTATION_SPACING_MS")?.unwrap_or(1000));
        let redelivery_interval = Duration::from_secs(parse_num(&get, "SHIPGATE_REDELIVERY_SECS")?.unwrap_or(600));
        let log_json = match get("SHIPGATE_LOG_FORMAT").as_deref() {
            None | Some("text") | Some("pretty") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "SHIPGATE_LOG_FORMAT",
                    msg: format!("{other:?} is not one of: text, json"),
                });
            }
        };

        let admin_token = bearer_token(&get, "SHIPGATE_ADMIN_TOKEN")?;
        let metrics_token = bearer_token(&get, "SHIPGATE_METRICS_TOKEN")?;

        let mut oidc = crate::github::oidc::OidcConfig::default();
        if let Some(issuer) = get("SHIPGATE_OIDC_ISSUER") {
            oidc.issuer = issuer.trim_end_matches('/').to_string();
        }
        if let Some(audience) = get("SHIPGATE_OIDC_AUDIENCE") {
            oidc.audience = audience;
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_OIDC_JWKS_REFRESH_SECS")? {
            oidc.jwks_refresh = Duration::from_secs(n);
        }
        let gate_wait_max = Duration::from_secs(parse_num(&get, "SHIPGATE_GATE_WAIT_MAX_SECS")?.unwrap_or(600));
        let gate_wait_poll =
            Duration::from_millis(parse_num(&get, "SHIPGATE_GATE_WAIT_POLL_MS")?.unwrap_or(2000).max(10));

        let mut coalesce = crate::domain::flow::signal::Coalesce::default();
        if let Some(n) = parse_num(&get, "SHIPGATE_COALESCE_QUIET_MS")? {
            coalesce.quiet = Duration::from_millis(n);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_COALESCE_VERDICT_MS")? {
            coalesce.verdict_within = Duration::from_millis(n);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_COALESCE_REFRESH_MS")? {
            coalesce.refresh_within = Duration::from_millis(n);
        }

        let audit_keys = audit_keys(&get)?;
        if github.is_some() && audit_keys.current.is_none() {
            return Err(ConfigError::Invalid {
                var: "SHIPGATE_AUDIT_KEY",
                msg: format!(
                    "not set: with GitHub App credentials the audit log must be sealed with a key kept outside the \
                     database; set it to at least {} random characters, e.g. `openssl rand -hex 32`, and keep it \
                     like the private key",
                    crate::store::audit::MIN_KEY_LEN
                ),
            });
        }
        let audit_verify_every = Duration::from_secs(parse_num(&get, "SHIPGATE_AUDIT_VERIFY_SECS")?.unwrap_or(3600));
        let report_every = Duration::from_millis(parse_num(&get, "SHIPGATE_REPORT_CHECK_MS")?.unwrap_or(60_000));
        let figures_every = Duration::from_millis(parse_num(&get, "SHIPGATE_FIGURES_REFRESH_MS")?.unwrap_or(60_000));
        let metrics_upkeep = Duration::from_millis(parse_num(&get, "SHIPGATE_METRICS_UPKEEP_MS")?.unwrap_or(1_000));
        let sqlite_readers = parse_num(&get, "SHIPGATE_SQLITE_READERS")?
            .map(|n| n.clamp(1, 64) as u32)
            .unwrap_or(crate::store::SQLITE_READERS);
        let pg_pool =
            parse_num(&get, "SHIPGATE_PG_POOL")?.map(|n| n.clamp(1, 256) as u32).unwrap_or(crate::store::PG_POOL);
        let signing_key = signing_key(&get)?;

        let mut intake = crate::http::serve::Limits::default();
        if let Some(n) = parse_num(&get, "SHIPGATE_HEADER_TIMEOUT_SECS")? {
            intake.header_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_IDLE_TIMEOUT_SECS")? {
            intake.idle_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_BODY_IDLE_TIMEOUT_SECS")? {
            intake.body_idle_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_BODY_TIMEOUT_SECS")? {
            intake.body_timeout = Duration::from_secs(n.max(1));
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_MAX_CONNECTIONS")? {
            intake.max_connections = (n as usize).clamp(1, 1 << 20);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_BODY_BUDGET_WAIT_MS")? {
            intake.budget_wait = Duration::from_millis(n);
        }
        if let Some(n) = parse_num(&get, "SHIPGATE_UNVERIFIED_BODY_BYTES")? {
            intake.unverified_bytes = n as usize;
        }
        check_budget(intake.unverified_bytes, MAX_BODY_BYTES)?;
        let notify = NotifySettings::from_lookup(&get)?;
        let public_url = public_url(&get)?;
        let link_days = parse_num(&get, "SHIPGATE_LINK_DAYS")?.unwrap_or(30);
        if !(1..=MAX_LINK_DAYS).contains(&link_days) {
            return Err(ConfigError::Invalid {
                var: "SHIPGATE_LINK_DAYS",
                msg: format!("{link_days} days: a details link lives 1 to {MAX_LINK_DAYS} days"),
            });
        }
        let link_ttl = Duration::from_secs(link_days * 24 * 3600);
        let setup_state_ttl = Duration::from_secs(parse_num(&get, "SHIPGATE_SETUP_STATE_SECS")?.unwrap_or(3600).max(1));

        Ok(Config {
            credentials_file: None,
            notify,
            public_url,
            link_ttl,
            setup_state_ttl,
            audit_keys,
            audit_verify_every,
            report_every,
            figures_every,
            metrics_upkeep,
            sqlite_readers,
            pg_pool,
            signing_key,
            intake,
            coalesce,
            oidc,
            gate_wait_max,
            gate_wait_poll,
            listen,
            database_url,
            webhook_secrets,
            webhook_secret_defaulted,
            github,
            github_api_url,
            mutation_spacing,
            redelivery_interval,
            worker,
            retention: Duration::from_secs(retention_days * 24 * 3600),
            history: (history_days != 0).then(|| Duration::from_secs(history_days * 24 * 3600)),
            max_body_bytes: MAX_BODY_BYTES,
            log_json,
            admin_token,
            metrics_token,
        })
    }

    /// Where people see GitHub (links in notifications): `https://github.com` for the public
    /// API, `https://HOST` for GitHub Enterprise Server's `https://HOST/api/v3`, else the API's
    /// own address (the tests' fake GitHub).
    pub fn github_web_url(&self) -> String {
        let api = self.github_api_url.trim_end_matches('/');
        if api == "https://api.github.com" {
            return "https://github.com".into();
        }
        api.strip_suffix("/api/v3").unwrap_or(api).to_string()
    }

    /// Dry-run: no GitHub credentials, so actions are recorded instead of sent.
    pub fn dry_run(&self) -> bool {
        self.github.is_none()
    }

    /// A configuration for tests: SQLite or PostgreSQL at `database_url`, fast retries.
    pub fn for_tests(database_url: &str, secret: &str) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            database_url: database_url.into(),
            webhook_secrets: vec![Secret::new(secret)],
            webhook_secret_defaulted: false,
            github: None,
            github_api_url: "http://127.0.0.1:9".into(),
            mutation_spacing: Duration::ZERO,
            redelivery_interval: Duration::ZERO,
            worker: WorkerConfig {
                concurrency: 4,
                lease: Duration::from_secs(30),
                max_attempts: 3,
                retry_base: Duration::from_millis(10),
                retry_max: Duration::from_millis(50),
                poll_interval: Duration::from_millis(20),
                shutdown_grace: Duration::from_secs(5),
            },
            retention: Duration::from_secs(14 * 24 * 3600),
            history: Some(Duration::from_secs(400 * 24 * 3600)),
            max_body_bytes: MAX_BODY_BYTES,
            intake: crate::http::serve::Limits::default(),
            log_json: false,
            admin_token: None,
            metrics_token: None,
            audit_keys: crate::store::audit::AuditKeys {
                current: Some(crate::store::audit::AuditKey::new(TEST_AUDIT_KEY)),
                retired: Vec::new(),
            },
            audit_verify_every: Duration::ZERO,
            // Off in tests, like the audit verification: a test that wants them sets them.
            report_every: Duration::ZERO,
            figures_every: Duration::ZERO,
            metrics_upkeep: Duration::from_secs(1),
            sqlite_readers: crate::store::SQLITE_READERS,
            pg_pool: crate::store::PG_POOL,
            signing_key: None,
            oidc: crate::github::oidc::OidcConfig::default(),
            gate_wait_max: Duration::from_secs(600),
            gate_wait_poll: Duration::from_millis(200),
            coalesce: crate::domain::flow::signal::Coalesce {
                quiet: Duration::from_millis(30),
                verdict_within: Duration::from_millis(200),
                refresh_within: Duration::from_millis(500),
            },
            notify: NotifySettings::default(),
            public_url: None,
            link_ttl: Duration::from_secs(30 * 24 * 3600),
            setup_state_ttl: Duration::from_secs(3600),
            credentials_file: None,
        }
    }
}

/// `SHIPGATE_PUBLIC_URL`: an `http(s)://` address without a query or fragment; a trailing `/` is
/// dropped so paths can be appended.
fn public_url(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = get("SHIPGATE_PUBLIC_URL") else { return Ok(None) };
    let bad = |why: &str| ConfigError::Invalid {
        var: "SHIPGATE_PUBLIC_URL",
        msg: format!(
            "{v:?} {why}: give the address people and GitHub reach the App at, e.g. https://shipgate.example.com"
        ),
    };
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| bad("is not an http(s):// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(bad("has no host (or carries credentials)"));
    }
    if v.contains(['?', '#', ' ', '"', '<', '>', '\\']) {
        return Err(bad("has a query, a fragment or characters a URL cannot hold"));
    }
    Ok(Some(v.trim_end_matches('/').to_string()))
}

/// A bearer token from `var`, if set: at least [`MIN_ADMIN_TOKEN_LEN`] characters.
fn bearer_token(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<Secret>, ConfigError> {
    match get(var) {
        Some(t) if t.len() < MIN_ADMIN_TOKEN_LEN => Err(ConfigError::Invalid {
            var,
            msg: format!(
                "too short ({} characters): use at least {MIN_ADMIN_TOKEN_LEN} random characters, e.g. `openssl rand \
                 -hex 32`",
                t.len()
            ),
        }),
        t => Ok(t.map(Secret::new)),
    }
}

/// `DATABASE_URL` must name SQLite (`sqlite://PATH`, `sqlite:PATH` or a plain path) or PostgreSQL
/// (`postgres://` or `postgresql://`); anything else is refused here, naming the variable, rather
/// than read as a file name.
fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let Some((scheme, _)) = url.split_once("://").or_else(|| url.split_once(':').filter(|(s, _)| *s == "sqlite"))
    else {
        return Ok(()); // a plain path
    };
    match scheme {
        "sqlite" | "postgres" | "postgresql" => Ok(()),
        other => Err(ConfigError::Invalid {
            var: "DATABASE_URL",
            msg: format!(
                "{:?} is not a database shipgate can use (`{other}://`): use sqlite://PATH (the default is \
                 {DEFAULT_DATABASE_URL}) or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                crate::store::redact_url(url)
            ),
        }),
    }
}

/// `SHIPGATE_SIGNING_KEY` (PEM text; `\n` may stand for line breaks, as in GITHUB_PRIVATE_KEY) or
/// `SHIPGATE_SIGNING_KEY_PATH` (a file holding it), read and checked now: a key that does not
/// load stops the start, naming the variable.
pub fn signing_key(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::store::anchor::SigningKey>, ConfigError> {
    use crate::store::anchor::SigningKey;
    let (var, pem) = match (get("SHIPGATE_SIGNING_KEY"), get("SHIPGATE_SIGNING_KEY_PATH")) {
        (Some(pem), _) => ("SHIPGATE_SIGNING_KEY", pem.replace("\\n", "\n")),
        (None, Some(path)) => {
            let pem = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                var: "SHIPGATE_SIGNING_KEY_PATH",
                msg: format!("cannot read {path:?} ({e}); point it at the Ed25519 key's PEM file"),
            })?;
            ("SHIPGATE_SIGNING_KEY_PATH", pem)
        }
        (None, None) => return Ok(None),
    };
    SigningKey::from_pem(&pem).map(Some).map_err(|msg| ConfigError::Invalid { var, msg })
}

/// The audit key of [`Config::for_tests`].
pub const TEST_AUDIT_KEY: &str = "test-audit-key-0123456789abcdef0123456789";

/// `SHIPGATE_AUDIT_KEY` and `SHIPGATE_AUDIT_KEY_RETIRED`, each key at least 32 characters.
pub fn audit_keys(get: &impl Fn(&str) -> Option<String>) -> Result<crate::store::audit::AuditKeys, ConfigError> {
    use crate::store::audit::{AuditKey, MIN_KEY_LEN};
    let check = |var: &'static str, k: &str| {
        if k.len() < MIN_KEY_LEN {
            return Err(ConfigError::Invalid {
                var,
                msg: format!(
                    "too short ({} characters): use at least {MIN_KEY_LEN} random characters, e.g. `openssl rand -hex 32`",
                    k.len()
                ),
            });
        }
        Ok(AuditKey::new(k))
    };
    let current = get("SHIPGATE_AUDIT_KEY").map(|k| check("SHIPGATE_AUDIT_KEY", &k)).transpose()?;
    let retired = get("SHIPGATE_AUDIT_KEY_RETIRED")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| check("SHIPGATE_AUDIT_KEY_RETIRED", k))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(crate::store::audit::AuditKeys { current, retired })
}

/// A body of the largest size must fit in the share of the budget that large bodies may use
/// (three quarters: the rest is kept for small ones).
fn check_budget(budget: usize, max_body: usize) -> Result<(), ConfigError> {
    if budget > u32::MAX as usize || budget - budget / 4 < max_body {
        return Err(ConfigError::Invalid {
            var: "SHIPGATE_UNVERIFIED_BODY_BYTES",
            msg: format!(
                "{budget} cannot hold a webhook of {max_body} bytes (GitHub's largest) in the three quarters that large \
                 bodies may use: use at least {} and at most {}",
                max_body + max_body.div_ceil(3),
                u32::MAX
            ),
        });
    }
    Ok(())
}

fn parse_num(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<u64>, ConfigError> {
    match get(var) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ConfigError::Invalid { var, msg: format!("{v:?} is not a whole number") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn sqlite_readers_and_metrics_upkeep() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.sqlite_readers, 4);
        assert_eq!(c.metrics_upkeep, Duration::from_secs(1));
        let c = cfg(&[("SHIPGATE_SQLITE_READERS", "16"), ("SHIPGATE_METRICS_UPKEEP_MS", "0")]).unwrap();
        assert_eq!(c.sqlite_readers, 16);
        assert!(c.metrics_upkeep.is_zero());
        assert_eq!(cfg(&[("SHIPGATE_SQLITE_READERS", "0")]).unwrap().sqlite_readers, 1);
        let e = cfg(&[("SHIPGATE_SQLITE_READERS", "four")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_SQLITE_READERS"), "{e}");
    }

    #[test]
    fn postgres_pool_size() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.pools(), crate::store::PoolSizes { sqlite_readers: 4, pg_connections: 16 });
        assert_eq!(cfg(&[("SHIPGATE_PG_POOL", "24")]).unwrap().pools().pg_connections, 24);
        assert_eq!(cfg(&[("SHIPGATE_PG_POOL", "0")]).unwrap().pg_pool, 1);
        assert_eq!(cfg(&[("SHIPGATE_PG_POOL", "100000")]).unwrap().pg_pool, 256);
        let e = cfg(&[("SHIPGATE_PG_POOL", "eight")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_PG_POOL"), "{e}");
    }

    #[test]
    fn defaults_are_dry_run_with_development_secret() {
        let c = cfg(&[]).expect("defaults");
        assert!(c.dry_run());
        assert!(c.webhook_secret_defaulted);
        assert_eq!(c.webhook_secrets, vec![Secret::new("development")]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://shipgate.db");
    }

    #[test]
    fn the_development_secret_is_only_for_a_loopback_address() {
        let c = cfg(&[("SHIPGATE_LISTEN", "0.0.0.0:3000")]).expect("dry-run, reachable");
        assert!(c.webhook_secrets.is_empty() && c.webhook_secret_defaulted);
        let c = cfg(&[("SHIPGATE_LISTEN", "[::1]:3000")]).expect("loopback");
        assert_eq!(c.webhook_secrets, vec![Secret::new("development")]);
        let c = cfg(&[("SHIPGATE_LISTEN", "127.0.0.1:3000"), ("GITHUB_WEBHOOK_SECRET", "s3cret")]).expect("set");
        assert_eq!(c.webhook_secrets, vec![Secret::new("s3cret")], "no minimum length on a laptop without credentials");
        // Set by hand (as docker-compose.yml once did) on an address others can reach: refused,
        // and so is any short secret there, credentials or not.
        let e = cfg(&[("SHIPGATE_LISTEN", "0.0.0.0:8080"), ("GITHUB_WEBHOOK_SECRET", "development")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GITHUB_WEBHOOK_SECRET: `development` is the dry-run secret, for a loopback address only on \
             0.0.0.0:8080, an address others can reach (SHIPGATE_LISTEN): use at least 16 random characters \
             (`openssl rand -hex 32`), the same in the App's settings on GitHub"
        );
        let e = cfg(&[("SHIPGATE_LISTEN", "0.0.0.0:8080"), ("GITHUB_WEBHOOK_SECRET", "a-long-one-of-22-chars,s3cret")])
            .unwrap_err();
        assert!(e.to_string().contains("a secret of 6 characters is too short on 0.0.0.0:8080"), "{e}");
        let c = cfg(&[("SHIPGATE_LISTEN", "0.0.0.0:8080"), ("GITHUB_WEBHOOK_SECRET", "0123456789abcdef")]).expect("16");
        assert_eq!(c.webhook_secrets.len(), 1);
    }

    #[test]
    fn database_urls_name_a_known_database() {
        for ok in ["sqlite://x.db", "sqlite:x.db", "x.db", "/var/lib/x.db", "postgres://u@h/d", "postgresql://h/d"] {
            assert!(cfg(&[("DATABASE_URL", ok)]).is_ok(), "{ok}");
        }
        let e = cfg(&[("DATABASE_URL", "mysql://u:pw@h/d?password=pw2")]).unwrap_err().to_string();
        assert!(e.starts_with("DATABASE_URL: \"mysql://u:***@h/d?password=***\""), "{e}");
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn secrets_are_a_comma_separated_list() {
        let c = cfg(&[("GITHUB_WEBHOOK_SECRET", "old, new ,")]).expect("valid");
        assert_eq!(c.webhook_secrets, vec![Secret::new("old"), Secret::new("new")]);
        assert!(!c.webhook_secret_defaulted);
    }

    #[test]
    fn credentials_without_secret_is_an_error_naming_the_variable() {
        let e = cfg(&[("GITHUB_APP_ID", "1"), ("GITHUB_PRIVATE_KEY_PATH", "/k.pem")]).unwrap_err();
        assert!(e.to_string().contains("GITHUB_WEBHOOK_SECRET"), "{e}");
    }

    #[test]
    fn half_credentials_are_an_error() {
        assert!(cfg(&[("GITHUB_APP_ID", "1")]).is_err());
        assert!(cfg(&[("GITHUB_PRIVATE_KEY", "x")]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let key = "audit-key-audit-key-audit-key-audit-key";
        let c = cfg(&[
            ("GITHUB_WEBHOOK_SECRET", "hunter2-hunter2-hunter2"),
            ("GITHUB_APP_ID", "1"),
            ("GITHUB_PRIVATE_KEY", "PEMDATA"),
            ("SHIPGATE_AUDIT_KEY", key),
        ])
        .expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("PEMDATA") && !dbg.contains(key), "{dbg}");
        let e = cfg(&[
            ("GITHUB_WEBHOOK_SECRET", "short,0123456789abcdef"),
            ("GITHUB_APP_ID", "1"),
            ("GITHUB_PRIVATE_KEY", "P"),
        ])
        .unwrap_err();
        assert!(e.to_string().starts_with("GITHUB_WEBHOOK_SECRET: a secret of 5 characters is too short"), "{e}");
    }

    #[test]
    fn credentials_need_an_audit_key_of_32_characters() {
        let creds =
            [("GITHUB_WEBHOOK_SECRET", "0123456789abcdef"), ("GITHUB_APP_ID", "1"), ("GITHUB_PRIVATE_KEY", "PEM")];
        let e = cfg(&creds).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_AUDIT_KEY: not set"), "{e}");
        let mut short = creds.to_vec();
        short.push(("SHIPGATE_AUDIT_KEY", "short"));
        let e = cfg(&short).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_AUDIT_KEY: too short (5 characters)"), "{e}");
        let e = cfg(&[("SHIPGATE_AUDIT_KEY_RETIRED", "old")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_AUDIT_KEY_RETIRED"), "{e}");
        let c = cfg(&[("SHIPGATE_AUDIT_KEY", &"k".repeat(32)), ("SHIPGATE_AUDIT_KEY_RETIRED", &"o".repeat(40))])
            .expect("keys");
        assert!(c.audit_keys.current.is_some() && c.audit_keys.retired.len() == 1);
        assert!(cfg(&[]).expect("dry-run without a key").audit_keys.current.is_none());
    }

    #[test]
    fn admin_token_is_secret_and_long_enough() {
        let t = "0123456789abcdef0123456789abcdef";
        let c = cfg(&[("SHIPGATE_ADMIN_TOKEN", t)]).expect("valid");
        assert_eq!(c.admin_token, Some(Secret::new(t)));
        assert!(!format!("{c:?}").contains(t));
        let e = cfg(&[("SHIPGATE_ADMIN_TOKEN", "short")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_ADMIN_TOKEN") && !e.to_string().contains("short\""), "{e}");
        assert_eq!(cfg(&[]).expect("defaults").admin_token, None);
    }

    #[test]
    fn notification_settings_are_read_and_webhook_urls_never_print() {
        let url = "https://hooks.slack.com/services/T000/B000/SECRETSECRET";
        let c = cfg(&[
            ("SHIPGATE_SLACK_WEBHOOKS", &format!("Acme/OnCall={url},\nacme/deploys=http://127.0.0.1:9/x")),
            ("SHIPGATE_SMTP_URL", "smtp://user:hunter2@mail.example.com:587"),
            ("SHIPGATE_MAIL_FROM", "shipgate <shipgate@example.com>"),
            ("SHIPGATE_MAIL_DOMAINS", "acme=example.com|Example.org, globex=globex.io, acme=@acme.dev"),
        ])
        .expect("valid");
        assert_eq!(c.notify.slack[&("acme".into(), "oncall".into())].expose(), url);
        assert_eq!(c.notify.mail_domains["acme"], ["example.com", "example.org", "acme.dev"]);
        let dir = c.notify.directory();
        assert!(dir.mail && dir.has_slack("ACME", "deploys") && !dir.has_slack("globex", "oncall"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRETSECRET") && !dbg.contains("hunter2"), "{dbg}");
        for (var, value, says) in [
            ("SHIPGATE_SLACK_WEBHOOKS", format!("oncall={url}"), "names no account"),
            ("SHIPGATE_SLACK_WEBHOOKS", "acme/oncall=http://hooks.example.com/SECRETSECRET".into(), "not an https://"),
            ("SHIPGATE_SLACK_WEBHOOKS", format!("acme/x={url},acme/X={url}"), "given before"),
            ("SHIPGATE_MAIL_DOMAINS", "acme".into(), "has no `=`"),
            ("SHIPGATE_MAIL_DOMAINS", "acme=localhost".into(), "not a domain"),
            ("SHIPGATE_SMTP_URL", "mail.example.com:25".into(), "must start with smtp://"),
        ] {
            let mut vars = vec![(var, value.as_str())];
            if var == "SHIPGATE_SMTP_URL" {
                vars.push(("SHIPGATE_MAIL_FROM", "a@example.com"));
            }
            let e = cfg(&vars).unwrap_err().to_string();
            assert!(e.starts_with(var) && e.contains(says), "{e}");
            assert!(!e.contains("SECRETSECRET") && !e.contains("hooks.slack.com/services/T000"), "{e}");
        }
        let e = cfg(&[("SHIPGATE_SMTP_URL", "smtp://h:25")]).unwrap_err().to_string();
        assert!(e.starts_with("SHIPGATE_MAIL_FROM: not set"), "{e}");
        assert!(
            loopback_http("http://localhost:8080/x")
                && loopback_http("http://[::1]:1/")
                && !loopback_http("http://10.0.0.1/")
        );
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let e = cfg(&[("SHIPGATE_WORKERS", "many")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_WORKERS"), "{e}");
        let e = cfg(&[("SHIPGATE_LISTEN", "nowhere")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_LISTEN"), "{e}");
    }

    #[test]
    fn retention_and_history() {
        let c = cfg(&[]).expect("defaults");
        assert_eq!(c.retention, Duration::from_secs(14 * 86_400));
        assert_eq!(c.history, Some(Duration::from_secs(400 * 86_400)));
        let c = cfg(&[("DATABASE_URL", "postgres://x@h/db")]).expect("postgres");
        assert_eq!(c.history, Some(Duration::from_secs(400 * 86_400)));
        let c = cfg(&[("SHIPGATE_HISTORY_DAYS", "30")]).expect("asked for");
        assert_eq!(c.history, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(cfg(&[("SHIPGATE_HISTORY_DAYS", "0")]).expect("for ever").history, None);
        let e = cfg(&[("SHIPGATE_RETENTION_DAYS", "30"), ("SHIPGATE_HISTORY_DAYS", "7")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_HISTORY_DAYS"), "{e}");
        // The intake's defaults (SPEC §7): 10 s for headers, 10 s of a silent body, 60 s idle
        // between requests, 30 s for a whole body, 512 connections, 48 MiB of unverified bytes.
        let i = &c.intake;
        assert_eq!(
            (i.header_timeout, i.body_idle_timeout, i.idle_timeout, i.body_timeout),
            (Duration::from_secs(10), Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(30))
        );
        assert_eq!((i.max_connections, i.unverified_bytes), (512, 48 << 20));
        let c = cfg(&[("SHIPGATE_HEADER_TIMEOUT_SECS", "3"), ("SHIPGATE_MAX_CONNECTIONS", "20")]).expect("intake");
        assert_eq!((c.intake.header_timeout, c.intake.max_connections), (Duration::from_secs(3), 20));
        assert_eq!(c.intake.body_timeout, Duration::from_secs(30));
        let e = cfg(&[("SHIPGATE_UNVERIFIED_BODY_BYTES", "1000000")]).unwrap_err();
        assert!(e.to_string().starts_with("SHIPGATE_UNVERIFIED_BODY_BYTES"), "{e}");
        let c = cfg(&[("SHIPGATE_COALESCE_QUIET_MS", "500")]).expect("coalesce");
        assert_eq!(c.coalesce.quiet, Duration::from_millis(500));
        assert_eq!(c.coalesce.verdict_within, Duration::from_secs(10));
    }

    #[test]
    fn the_credentials_file_is_read_and_the_environment_wins() {
        let mut n = [0u8; 8];
        getrandom::getrandom(&mut n).expect("random");
        let dir = std::env::temp_dir().join(format!("shipgate-cfg-{}", hex::encode(n)));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = format!("sqlite://{}", dir.join("app.db").display());
        let env = |vars: Vec<(&'static str, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        let c = Config::from_env_and_file(env(vec![("DATABASE_URL", db.clone())])).expect("no file yet");
        assert!(c.dry_run() && c.credentials_file.is_none());
        let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem"))
            .expect("key")
            .trim()
            .replace('\n', "\\n");
        let file = dir.join("app.credentials.env");
        crate::credentials::write_new(
            &file,
            &format!(
                "# made by a test\nGITHUB_APP_ID=7\nGITHUB_PRIVATE_KEY={pem}\nGITHUB_WEBHOOK_SECRET=file-secret-0123456789\n\
                 SHIPGATE_AUDIT_KEY={}\n",
                "a".repeat(64)
            ),
        )
        .expect("file");
        let c = Config::from_env_and_file(env(vec![("DATABASE_URL", db.clone())])).expect("from the file");
        assert_eq!(c.github.as_ref().map(|g| g.app_id.as_str()), Some("7"));
        assert!(
            matches!(&c.github.as_ref().expect("creds").private_key, PrivateKeySource::Pem(p) if p.expose().contains("\nMII"))
        );
        assert_eq!(c.webhook_secrets, vec![Secret::new("file-secret-0123456789")]);
        assert_eq!(c.credentials_file.as_deref(), Some(file.as_path()));
        // The environment wins, variable by variable; a key path hides the file's key text.
        let c = Config::from_env_and_file(env(vec![
            ("DATABASE_URL", db.clone()),
            ("GITHUB_WEBHOOK_SECRET", "env-secret-0123456789".into()),
            ("GITHUB_PRIVATE_KEY_PATH", "/etc/key.pem".into()),
        ]))
        .expect("both");
        assert_eq!(c.webhook_secrets, vec![Secret::new("env-secret-0123456789")]);
        assert_eq!(c.github.as_ref().map(|g| g.app_id.as_str()), Some("7"));
        assert!(
            matches!(&c.github.as_ref().expect("creds").private_key, PrivateKeySource::Path(p) if p.to_str() == Some("/etc/key.pem"))
        );
        // PostgreSQL never reads it.
        let c = Config::from_env_and_file(env(vec![("DATABASE_URL", "postgres://u@h/db".into())])).expect("pg");
        assert!(c.dry_run());
        // A broken file stops the start, naming the file and the line, never a value.
        std::fs::write(&file, "GITHUB_APP_ID=7\nhunter2\n").expect("overwrite");
        let e = Config::from_env_and_file(env(vec![("DATABASE_URL", db.clone())])).unwrap_err().to_string();
        assert!(e.contains("app.credentials.env: line 2 is not KEY=VALUE") && !e.contains("hunter2"), "{e}");
        std::fs::write(&file, "GITHUB_APP_ID=7\n").expect("overwrite");
        let e = Config::from_env_and_file(env(vec![("DATABASE_URL", db)])).unwrap_err().to_string();
        assert!(e.contains("(settings read from the environment and from") && e.contains("GITHUB_PRIVATE_KEY"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
