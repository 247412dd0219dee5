//! The database: SQLite (default, one file) or PostgreSQL (several replicas), behind sqlx's
//! `Any` driver. Values are only integers and text (times are Unix milliseconds), so one SQL text
//! serves both backends except where noted.

pub mod anchor;
pub mod api_tokens;
pub mod audit;
pub mod deliveries;
pub mod deploys;
pub mod evidence;
pub mod figures;
pub mod filter;
pub mod gate_waits;
pub mod incidents;
pub mod objects;
pub mod outbox;
pub mod queue;
pub mod rechecks;
pub mod requests;
pub mod scheduler;
pub mod tenancy;
pub mod timers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// Where writes go. SQLite has one writer at a time anyway: a pool of one connection makes
    /// writers queue fairly in the process instead of sleeping in SQLite's busy handler (which
    /// made the intake's latency spike). PostgreSQL: the same pool.
    writer: AnyPool,
    /// The intake's group commits ([`Db::acquire_writer`]): on SQLite the writer, on PostgreSQL
    /// [`PG_INTAKE_CONNECTIONS`] of their own beside the pool.
    intake: AnyPool,
    backend: Backend,
    /// The key audit entries are sealed with (`SHIPGATE_AUDIT_KEY`), if this process has one.
    audit_key: Option<std::sync::Arc<audit::AuditKey>>,
    /// `DATABASE_URL` as errors show it (no password).
    shown: std::sync::Arc<str>,
}

/// A database URL fit for a message: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let query = query.map(|q| {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        format!("?{}", parts.join("&"))
    });
    redact_authority(url) + query.as_deref().unwrap_or("")
}

fn redact_authority(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The directory of a SQLite URL's file (None for an in-memory database or a bare file name).
fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

/// An error's own words, without sqlx's prefixes, once.
fn cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Turns `DATABASE_URL` into a URL sqlx understands: `postgres://…` selects PostgreSQL, anything
/// else is SQLite (`sqlite://file.db`, `sqlite:file.db` or a plain path), created when missing.
pub fn normalize_url(url: &str) -> (Backend, String) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return (Backend::Postgres, url.to_string());
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_string(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_string(),
    };
    (Backend::Sqlite, format!("sqlite://{path}?{query}"))
}

/// SQLite connections for reads beside the one writer (`SHIPGATE_SQLITE_READERS`). Each is a
/// thread of its own with its page cache, prepared statements and allocator arena: eight held
/// ~2 MB more at the ingest benchmark's peak than four, which keep two cores' reads busy.
pub const SQLITE_READERS: u32 = 4;

/// PostgreSQL connections of one replica for everything but the intake's group commits, which
/// have [`PG_INTAKE_CONNECTIONS`] beside them (`SHIPGATE_PG_POOL`). Each keeps its prepared
/// statements and buffers. On the year's history `/approve` under 200 deliveries a second was
/// slower with 8 than with 16 in both of two pairs, when the intake's writers still took their
/// connections from this pool (docs/benchmarks.md). No path holds a connection while taking a
/// second, so a small pool costs waiting, never a deadlock.
pub const PG_POOL: u32 = 16;

/// PostgreSQL connections of the intake's writers, beside [`PG_POOL`]: one per writer, so that
/// their group commits never wait for the workers' connections and the workers never wait for
/// theirs (they used to share the pool), and only these carry the batches' buffers, which grow
/// to the largest batch sent. A replica opens up to `SHIPGATE_PG_POOL` + this.
pub const PG_INTAKE_CONNECTIONS: u32 = 4;

/// How many connections a [`Db`] opens: on SQLite the readers beside the one writer, on
/// PostgreSQL the pool for everything but the intake's group commits (which have
/// [`PG_INTAKE_CONNECTIONS`] more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    pub sqlite_readers: u32,
    pub pg_connections: u32,
}

impl Default for PoolSizes {
    fn default() -> PoolSizes {
        PoolSizes { sqlite_readers: SQLITE_READERS, pg_connections: PG_POOL }
    }
}

impl Db {
    /// Connects with the default pool sizes ([`SQLITE_READERS`], [`PG_POOL`]).
    pub async fn connect(given: &str) -> Result<Db> {
        Db::connect_with(given, PoolSizes::default()).await
    }

    /// Connects; on SQLite with `sizes.sqlite_readers` connections for reads beside the writer, on
    /// PostgreSQL with a pool of `sizes.pg_connections` (each at least 1) and, opened when first
    /// used, [`PG_INTAKE_CONNECTIONS`] for the intake.
    pub async fn connect_with(given: &str, sizes: PoolSizes) -> Result<Db> {
        install_default_drivers();
        let (backend, url) = normalize_url(given);
        let sqlite = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                // No ping before handing out a connection: a SQLite connection is a file handle
                // in this process and cannot go away while idle, and each ping is a round trip
                // to the connection's thread (sqlx still pings on release, which flushes any
                // transaction left open). The intake's writer takes its connection again every
                // 10 ms: +3.5-4.8% req/s in three A/B pairs (docs/benchmarks.md).
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers run beside the writer; FULL makes every commit
                        // durable across a power cut, not just a crash. Statement journals in
                        // memory: a multi-row statement (the intake's INSERT of a batch) keeps
                        // the pages it changes in one, which spilled to a temporary file past
                        // 64 KiB, a second copy of every page the batch wrote. The intake's
                        // checkpointer copies the WAL into the database file beside the writer
                        // (`Db::checkpoint`), so a commit checkpoints by itself only past 20,000
                        // WAL pages (~80 MB, a backstop that lets the WAL start over), not every
                        // 1,000: a checkpoint inside a commit made every ~12th batch of a busy
                        // intake wait for it. Once the WAL starts over, it is cut back to
                        // 64 MiB: a burst's WAL does not keep its size for ever.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 20000; \
                             PRAGMA journal_size_limit = 67108864;",
                        )
                        .await?;
                        Ok(())
                    })
                })
        };
        let shown = redact_url(given);
        let (pool, writer, intake) = match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_dir(&url)
                    && !dir.is_dir()
                {
                    return Err(StoreError::Invalid(format!(
                        "DATABASE_URL={shown}: the directory {} does not exist: create it, or set DATABASE_URL to a \
                         file in a directory that does",
                        dir.display()
                    )));
                }
                let cannot = |e: sqlx::Error| {
                    StoreError::Invalid(format!("DATABASE_URL={shown}: cannot open the SQLite file: {}", cause(&e)))
                };
                let writer = sqlite(1).connect(&url).await.map_err(cannot)?;
                (sqlite(sizes.sqlite_readers.max(1)).connect(&url).await.map_err(cannot)?, writer.clone(), writer)
            }
            Backend::Postgres => {
                // One connection first, so that what went wrong is said (a pool only says it
                // timed out).
                use sqlx::Connection;
                match tokio::time::timeout(Duration::from_secs(10), sqlx::AnyConnection::connect(&url)).await {
                    Err(_) => {
                        return Err(StoreError::Invalid(format!(
                            "DATABASE_URL={shown}: PostgreSQL did not answer within 10 s: is the host right, and \
                             reachable from here?"
                        )));
                    }
                    Ok(Err(e)) => {
                        // What to do, by PostgreSQL's error code where it sent one.
                        let code = match &e {
                            sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
                            _ => None,
                        };
                        let todo = match (&e, code.as_deref()) {
                            (sqlx::Error::Io(io), _) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                                " (is it running, and are the host and port right?)"
                            }
                            (sqlx::Error::Io(_), _) => " (are the host and port right, and reachable from here?)",
                            // invalid_catalog_name
                            (_, Some("3D000")) => {
                                ": create it (`createdb`, or CREATE DATABASE as its owner-to-be), or point DATABASE_URL \
                                 at one that exists"
                            }
                            // invalid_authorization_specification, invalid_password
                            (_, Some("28000" | "28P01")) => {
                                ": check the user and password in DATABASE_URL, and that pg_hba.conf lets this host in"
                            }
                            _ => "",
                        };
                        return Err(StoreError::Invalid(format!(
                            "DATABASE_URL={shown}: cannot connect to PostgreSQL: {}{todo}",
                            cause(&e)
                        )));
                    }
                    Ok(Ok(c)) => {
                        let _ = c.close().await;
                    }
                }
                let options =
                    |max: u32| AnyPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(10));
                let pool = options(sizes.pg_connections.max(1)).connect(&url).await?;
                // Opened when the intake first commits: the CLI's commands never do.
                let intake = options(PG_INTAKE_CONNECTIONS).connect_lazy(&url)?;
                (pool.clone(), pool, intake)
            }
        };
        Ok(Db { pool, writer, intake, backend, audit_key: None, shown: shown.into() })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This handle, sealing the audit entries it appends under `key`.
    pub fn with_audit_key(mut self, key: Option<audit::AuditKey>) -> Db {
        self.audit_key = key.map(std::sync::Arc::new);
        self
    }

    pub fn audit_key(&self) -> Option<&audit::AuditKey> {
        self.audit_key.as_deref()
    }

    /// For reads (and, on PostgreSQL, everything but the intake's group commits).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For statements that write outside `begin_write`.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        use sqlx::migrate::MigrateError;
        let shown = &self.shown;
        self.migrator().run(&self.writer).await.map_err(|e| match e {
            MigrateError::VersionMissing(v) => StoreError::Invalid(format!(
                "DATABASE_URL={shown}: the database was migrated by a newer shipgate (migration {v} is unknown to \
                 this version): run that version, or point DATABASE_URL at another database"
            )),
            MigrateError::Execute(sqlx::Error::Database(d)) => StoreError::Invalid(format!(
                "DATABASE_URL={shown}: the database schema could not be brought up to date: {} (does DATABASE_URL's \
                 user own the database, or may it create tables in it?)",
                d.message()
            )),
            other => StoreError::Invalid(format!(
                "DATABASE_URL={shown}: the database schema could not be brought up to date: {other}"
            )),
        })?;
        Ok(())
    }

    /// Applies the migrations up to and including `version` only (the upgrade tests start from
    /// an older schema with rows in it).
    pub async fn migrate_to(&self, version: i64) -> Result<()> {
        self.migrator().run_to(version, &self.writer).await?;
        Ok(())
    }

    /// True when every migration this binary knows has been applied successfully.
    pub async fn migrations_applied(&self) -> Result<bool> {
        let applied: Vec<(i64,)> = match sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(&self.pool)
            .await
        {
            Ok(v) => v,
            Err(sqlx::Error::Database(_)) => return Ok(false), // no table yet
            Err(e) => return Err(e.into()),
        };
        Ok(self.migrator().iter().all(|m| applied.iter().any(|(v,)| *v == m.version)))
    }

    /// SQLite: copies what the WAL holds into the database file without waiting for, or blocking,
    /// the writer or readers (`PASSIVE`), on a reader connection. Nothing on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The database answers; on PostgreSQL the intake has a connection too, or can open one (its
    /// pool opens lazily and lets idle connections go): a server at its `max_connections` would
    /// otherwise leave a replica ready whose intake answers 503 after waiting 10 s.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        if self.backend == Backend::Postgres && self.intake.size() == 0 {
            sqlx::query("SELECT 1").execute(&self.intake).await?;
        }
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that it waits for the lock instead of failing on upgrade.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// A connection a writer keeps for several transactions ([`Db::begin_on`]): the SQLite
    /// writer's one connection, or one of PostgreSQL's intake connections. Handing
    /// a connection back to the pool and taking it again costs round trips (sqlx tests it on
    /// release, and on PostgreSQL also when it is taken), which the intake's writer would
    /// otherwise pay per batch; it gives the connection back now and then so that other writers
    /// get their turn (on SQLite the relay, the scheduler and the leases share the one writer).
    pub async fn acquire_writer(&self) -> Result<PoolConnection<Any>> {
        Ok(self.intake.acquire().await?)
    }

    /// Starts a write transaction (as [`Db::begin_write`]) on a connection the caller holds.
    pub async fn begin_on<'c>(&self, conn: &'c mut AnyConnection) -> Result<Transaction<'c, Any>> {
        let tx = match self.backend {
            Backend::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?,
            Backend::Postgres => sqlx::Connection::begin(conn).await?,
        };
        Ok(tx)
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
        self.intake.close().await;
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            _ => Err(format!("unknown backend {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(normalize_url("sqlite://shipgate.db").1, "sqlite://shipgate.db?mode=rwc");
        assert_eq!(normalize_url("sqlite:x.db").1, "sqlite://x.db?mode=rwc");
        assert_eq!(normalize_url("/tmp/a.db").1, "sqlite:///tmp/a.db?mode=rwc");
        assert_eq!(normalize_url("sqlite://a.db?mode=ro").1, "sqlite://a.db?mode=ro");
        assert_eq!(normalize_url("postgres://u@h/db").0, Backend::Postgres);
    }
}
