//! The audit log (SPEC.md §3.6): every state change of a request, appended in the transaction
//! that makes the change. Append-only and tamper-evident: each entry carries the SHA-256 of the
//! previous entry of its installation and of its own canonical content.
//!
//! * One chain per installation: `position` counts 1, 2, 3, … and `prev_hash` is the previous
//!   entry's `hash` (64 zeros for the first). `audit_heads` holds each chain's last position and
//!   hash; the appending transaction updates it first, so its row lock serialises the appenders of
//!   one installation across replicas (PostgreSQL) and a deleted tail no longer matches it.
//! * `hash` = SHA-256 of [`hash_input`]: a JSON array of the position, prev_hash and every stored
//!   column, with the detail as its canonical JSON text (sorted keys, no whitespace).
//! * No code path updates or deletes an entry, and the database refuses to (triggers in
//!   migrations/*/0005_audit.sql). [`verify`] walks every chain and names the first broken link.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use super::{Db, Result, StoreError};

/// The `prev_hash` of the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One state change, as a handler describes it. The delivery id and time are added on append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub installation_id: i64,
    pub repository_id: Option<i64>,
    /// owner/name
    pub repository: Option<String>,
    /// The request's issue number, when the change is about a request.
    pub issue: Option<i64>,
    /// What happened: `request.parsed`, `approval.given`, `approval.withdrawn`, `approval.stale`,
    /// `gate.opened`, `gate.closed`, `request.held`, `request.unheld`, `request.denied`,
    /// `protection_rule.answered`, `deployment.created`, `deployment.status`, `request.closed`, …
    pub kind: String,
    /// Who caused it (a GitHub user id and login); None for the App itself.
    pub actor_id: Option<i64>,
    pub actor_login: Option<String>,
    /// Anything else worth keeping, as JSON.
    pub detail: Value,
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub installation_id: i64,
    pub position: i64,
    pub repository_id: Option<i64>,
    pub repository: Option<String>,
    pub issue: Option<i64>,
    pub kind: String,
    pub actor_id: Option<i64>,
    pub actor_login: Option<String>,
    pub delivery_id: Option<String>,
    pub at: i64,
    /// Canonical JSON text.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, installation_id, position, repository_id, repository, issue, kind, actor_id, actor_login, \
    delivery_id, at, detail, prev_hash, hash";

/// JSON text with object keys sorted at every level and no whitespace: the same value always
/// gives the same bytes, whatever order its keys were built in.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The bytes an entry's hash is taken over: a versioned JSON array of every stored column but
/// `seq` and `hash` (the detail as its stored canonical text).
pub fn hash_input(r: &AuditRow) -> String {
    serde_json::json!([
        "shipgate-audit-v1",
        r.position,
        r.prev_hash,
        r.installation_id,
        r.repository_id,
        r.repository,
        r.issue,
        r.kind,
        r.actor_id,
        r.actor_login,
        r.delivery_id,
        r.at,
        r.detail,
    ])
    .to_string()
}

pub fn entry_hash(r: &AuditRow) -> String {
    hex::encode(Sha256::digest(hash_input(r).as_bytes()))
}

/// Appends `entry` inside `tx`, caused by delivery `delivery_id` at `now` (Unix ms).
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    entry: &AuditEntry,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<()> {
    if entry.kind.trim().is_empty() {
        return Err(StoreError::Invalid("an audit entry needs a kind".into()));
    }
    sqlx::query(
        "INSERT INTO audit_heads (installation_id, position, hash, updated_at) VALUES ($1, 0, $2, $3) \
         ON CONFLICT (installation_id) DO NOTHING",
    )
    .bind(entry.installation_id)
    .bind(GENESIS)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // Takes the head's row lock until commit: the next appender of this installation waits here
    // and then sees this entry as its predecessor.
    let (position, prev_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_heads SET position = position + 1, updated_at = $2 WHERE installation_id = $1 \
         RETURNING position, hash",
    )
    .bind(entry.installation_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let mut row = AuditRow {
        seq: 0,
        installation_id: entry.installation_id,
        position,
        repository_id: entry.repository_id,
        repository: entry.repository.clone(),
        issue: entry.issue,
        kind: entry.kind.clone(),
        actor_id: entry.actor_id,
        actor_login: entry.actor_login.clone(),
        delivery_id: delivery_id.map(str::to_string),
        at: now,
        detail: canonical_json(&entry.detail),
        prev_hash,
        hash: String::new(),
    };
    row.hash = entry_hash(&row);
    sqlx::query("UPDATE audit_heads SET hash = $2 WHERE installation_id = $1")
        .bind(row.installation_id)
        .bind(&row.hash)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO audit_log (installation_id, position, repository_id, repository, issue, kind, actor_id, \
         actor_login, delivery_id, at, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(row.installation_id)
    .bind(row.position)
    .bind(row.repository_id)
    .bind(&row.repository)
    .bind(row.issue)
    .bind(&row.kind)
    .bind(row.actor_id)
    .bind(&row.actor_login)
    .bind(&row.delivery_id)
    .bind(row.at)
    .bind(&row.detail)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut **tx)
    .await?;
    tracing::debug!(
        installation = row.installation_id,
        position = row.position,
        kind = %row.kind,
        "audit entry appended"
    );
    Ok(())
}

/// Which entries to read. `installation: None` means every installation (admin, CLI).
#[derive(Clone, Debug, Default)]
pub struct Filter<'a> {
    pub installation: Option<i64>,
    /// owner/name
    pub repository: Option<&'a str>,
    /// Only entries at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only entries with a larger `seq` (a cursor).
    pub after: Option<i64>,
    pub limit: i64,
}

/// Entries in append order (by `seq`).
pub async fn list(db: &Db, f: &Filter<'_>) -> Result<Vec<AuditRow>> {
    let mut w = super::filter::Filter::new();
    w.and("seq > ?", f.after.unwrap_or(0)).eq("installation_id", f.installation).eq("repository", f.repository);
    if let Some(since) = f.since {
        w.and("at >= ?", since);
    }
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT {}", w.sql(), w.next());
    Ok(super::filter::query_as(sql, &w, &[f.limit.into()]).fetch_all(db.pool()).await?)
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// One per installation that has a chain (entries or a head), by installation id.
    pub chains: Vec<ChainReport>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.broken.is_none())
    }
    /// The first broken link over all chains.
    pub fn first_broken(&self) -> Option<&Broken> {
        self.chains.iter().find_map(|c| c.broken.as_ref())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainReport {
    pub installation_id: i64,
    /// Entries read (up to and including the broken one, when broken).
    pub entries: i64,
    /// The hash of the last entry read (GENESIS when none): record it elsewhere to anchor the log.
    pub last_hash: String,
    pub broken: Option<Broken>,
}

/// The first broken link of a chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Broken {
    pub installation_id: i64,
    /// The position the entry should have had (the chain is intact before it).
    pub position: i64,
    /// The offending row, when there is one (none when the tail was deleted).
    pub seq: Option<i64>,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "installation {} position {} (seq {}): {}",
                self.installation_id, self.position, seq, self.reason
            ),
            None => write!(f, "installation {} position {}: {}", self.installation_id, self.position, self.reason),
        }
    }
}

/// Walks every installation's chain: positions contiguous from 1, append order (`seq`) rising
/// with position, each hash recomputing from the entry's content, each `prev_hash` equal to the
/// previous entry's hash, and the head row matching the last entry. Stops each chain at its
/// first broken link.
pub async fn verify(db: &Db) -> Result<VerifyReport> {
    let installations: Vec<(i64,)> = sqlx::query_as(
        "SELECT installation_id FROM audit_heads UNION SELECT installation_id FROM audit_log ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    let mut report = VerifyReport::default();
    for (installation,) in installations {
        // One snapshot per chain: entries appended while it is walked (a live App) are not seen,
        // and neither is the head they move, so the two always agree.
        let mut tx = db.pool().begin().await?;
        if db.backend() == super::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
        }
        report.chains.push(verify_chain(&mut tx, installation).await?);
        tx.rollback().await?;
    }
    Ok(report)
}

const VERIFY_BATCH: i64 = 1000;

async fn verify_chain(tx: &mut sqlx::Transaction<'static, sqlx::Any>, installation: i64) -> Result<ChainReport> {
    let mut chain = ChainReport { installation_id: installation, entries: 0, last_hash: GENESIS.into(), broken: None };
    let mut expected = 1i64;
    let mut last_seq = i64::MIN;
    let mut after_position = i64::MIN;
    let broken = |position: i64, seq: Option<i64>, reason: String| Broken {
        installation_id: installation,
        position,
        seq,
        reason,
    };
    loop {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 AND position > $2 ORDER BY position LIMIT $3"
        );
        let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(installation)
            .bind(after_position)
            .bind(VERIFY_BATCH)
            .fetch_all(&mut **tx)
            .await?;
        let n = rows.len() as i64;
        for r in rows {
            after_position = r.position;
            chain.entries += 1;
            let seq = Some(r.seq);
            let problem = if r.position != expected {
                if r.position > expected {
                    Some(format!(
                        "entry missing: found position {} where {expected} was expected (deleted entries)",
                        r.position
                    ))
                } else {
                    Some(format!("position {} is out of order (expected {expected})", r.position))
                }
            } else if r.seq <= last_seq {
                Some(format!("appended out of order: seq {} comes after seq {last_seq} (rows reordered)", r.seq))
            } else if entry_hash(&r) != r.hash {
                Some("content does not match its hash (the entry was edited)".to_string())
            } else if r.prev_hash != chain.last_hash {
                Some(format!(
                    "prev_hash {} is not the hash of the previous entry ({})",
                    short(&r.prev_hash),
                    short(&chain.last_hash)
                ))
            } else {
                None
            };
            if let Some(reason) = problem {
                chain.broken = Some(broken(expected, seq, reason));
                return Ok(chain);
            }
            chain.last_hash = r.hash;
            last_seq = r.seq;
            expected += 1;
        }
        if n < VERIFY_BATCH {
            break;
        }
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT position, hash FROM audit_heads WHERE installation_id = $1")
            .bind(installation)
            .fetch_optional(&mut **tx)
            .await?;
    let last = expected - 1;
    match head {
        None => {
            chain.broken = Some(broken(last, None, "the chain has no head row (audit_heads was edited)".into()));
        }
        Some((position, hash)) if position != last || hash != chain.last_hash => {
            let reason = if position > last {
                format!(
                    "the head says the chain ends at position {position}, but the last entry is {last} (entries deleted at the end)"
                )
            } else {
                format!("the head (position {position}, hash {}) does not match the last entry", short(&hash))
            };
            chain.broken = Some(broken(last + 1, None, reason));
        }
        Some(_) => {}
    }
    Ok(chain)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Unix ms as RFC 3339 UTC, e.g. `2026-11-29T09:00:00.000Z` (clamped to the years chrono
/// represents, ±262,000).
pub fn rfc3339(ms: i64) -> String {
    let t = DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `--since` / `?since=`: a duration back from `now` (`7d`, `24h`, `30m`) or an RFC 3339 time
/// (`2026-11-01T00:00:00Z`, `2026-11-01T09:00:00+02:00`). Returns Unix ms.
pub fn parse_since(s: &str, now: i64) -> std::result::Result<i64, String> {
    let s = s.trim();
    let bad =
        || format!("{s:?} is neither a duration like 7d, 24h, 30m nor an RFC 3339 time like 2026-11-01T00:00:00Z");
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm' | 's'))
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        if n < 0 {
            return Err(bad());
        }
        let ms = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            _ => 1000,
        };
        return n.checked_mul(ms).map(|d| now - d).ok_or_else(bad);
    }
    parse_rfc3339(s).ok_or_else(bad)
}

/// RFC 3339 as chrono reads it: `T`, `t` or a space between date and time, `Z`, `z` or `±HH:MM`,
/// any number of fraction digits (cut to milliseconds), a leap second `:60` as the next second;
/// ASCII only (chrono would also take U+2212 for the offset's minus).
fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().filter(|_| s.is_ascii()).map(|t| t.timestamp_millis())
}

/// An entry as exported and served by the API: the stored row with the detail as JSON and the
/// time also as RFC 3339.
pub fn to_json(r: &AuditRow) -> Value {
    serde_json::json!({
        "seq": r.seq,
        "installation_id": r.installation_id,
        "position": r.position,
        "at": r.at,
        "time": rfc3339(r.at),
        "repository_id": r.repository_id,
        "repository": r.repository,
        "issue": r.issue,
        "kind": r.kind,
        "actor_id": r.actor_id,
        "actor_login": r.actor_login,
        "delivery_id": r.delivery_id,
        "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or_else(|_| Value::String(r.detail.clone())),
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

pub const CSV_HEADER: &str = "seq,installation_id,position,time,repository_id,repository,issue,kind,actor_id,\
    actor_login,delivery_id,detail,prev_hash,hash";

/// One CSV record (RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled).
pub fn to_csv(r: &AuditRow) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        r.seq.to_string(),
        r.installation_id.to_string(),
        r.position.to_string(),
        rfc3339(r.at),
        opt(r.repository_id),
        r.repository.clone().unwrap_or_default(),
        opt(r.issue),
        r.kind.clone(),
        opt(r.actor_id),
        r.actor_login.clone().unwrap_or_default(),
        r.delivery_id.clone().unwrap_or_default(),
        r.detail.clone(),
        r.prev_hash.clone(),
        r.hash.clone(),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// Fields are written as stored (no spreadsheet-formula escaping), so an export can be checked
/// against the hashes.
pub fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": true, "x": null}], "c": "é\"q"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"é\"q","z":[1,{"x":null,"y":true}]},"b":1}"#);
    }

    fn row() -> AuditRow {
        AuditRow {
            seq: 7,
            installation_id: 1,
            position: 2,
            repository_id: Some(10),
            repository: Some("acme/app".into()),
            issue: Some(5),
            kind: "approval.given".into(),
            actor_id: Some(101),
            actor_login: Some("alice".into()),
            delivery_id: Some("d-1".into()),
            at: 1_795_942_800_000,
            detail: r#"{"role":"pm"}"#.into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_column_but_seq_is_in_the_hash() {
        let base = entry_hash(&row());
        assert_eq!(base.len(), 64);
        let mut r = row();
        r.seq = 99;
        assert_eq!(entry_hash(&r), base, "seq is not content");
        type Change = Box<dyn Fn(&mut AuditRow)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| r.installation_id = 2),
            Box::new(|r| r.position = 3),
            Box::new(|r| r.repository_id = None),
            Box::new(|r| r.repository = Some("acme/other".into())),
            Box::new(|r| r.issue = Some(6)),
            Box::new(|r| r.kind = "approval.withdrawn".into()),
            Box::new(|r| r.actor_id = Some(102)),
            Box::new(|r| r.actor_login = Some("mallory".into())),
            Box::new(|r| r.delivery_id = None),
            Box::new(|r| r.at += 1),
            Box::new(|r| r.detail = r#"{"role":"qa"}"#.into()),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut r = row();
            change(&mut r);
            assert_ne!(entry_hash(&r), base, "change {i} must change the hash");
        }
    }

    #[test]
    fn since_accepts_durations_and_rfc3339() {
        let now = 1_795_942_800_000; // 2026-11-29T09:00:00Z
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_since("24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_since("2026-11-29T09:00:00Z", 0), Ok(now));
        assert_eq!(parse_since("2026-11-29T10:00:00+01:00", 0), Ok(now));
        assert_eq!(parse_since("2026-11-29T09:00:00.25Z", 0), Ok(now + 250));
        for bad in ["", "7", "d", "-1d", "yesterday", "2026-11-29", "2026-13-01T00:00:00Z", "2026-11-29T09:00:00"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(rfc3339(now + 5), "2026-11-29T09:00:00.005Z");
    }

    #[test]
    fn since_reads_every_rfc3339_shape() {
        let now = 1_795_942_800_000; // 2026-11-29T09:00:00Z
        // `t` or a space for the `T`, `z` for the `Z`, a negative offset, fractions cut to ms.
        for (text, want) in [
            ("2026-11-29t09:00:00z", now),
            ("2026-11-29 09:00:00Z", now),
            ("2026-11-29T03:30:00-05:30", now),
            ("2026-11-29T09:00:00.123456789Z", now + 123),
            ("2026-11-29T09:00:00.1Z", now + 100),
            ("  2026-11-29T09:00:00Z  ", now),
            // A leap second is the next second.
            ("2026-11-29T08:59:60Z", now),
            ("1969-12-31T23:59:59.5Z", -500),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ] {
            assert_eq!(parse_since(text, 0), Ok(want), "{text}");
        }
        // Dates that do not exist are refused (before chrono they rolled over into the next month).
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T09:60:00Z",
            "2026-11-29T09:00:61Z",
            "2026-11-29T09:00:00+24:00",
            "2026-11-29T09:00:00+0100",
            "2026-11-29T09:00:00+01",
            "2026-11-29T09:00:00.Z",
            "2026-11-29T09:00Z",
            "2026-11-29T09:00:00 UTC",
            "2026-11-29T09:00:00\u{2212}01:00",
            "+2026-11-29T09:00:00Z",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-500), "1969-12-31T23:59:59.500Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        let line = to_csv(&row());
        assert!(line.contains(r#""{""role"":""pm""}""#), "{line}");
        assert_eq!(line.split(',').count(), CSV_HEADER.split(',').count());
    }
}
