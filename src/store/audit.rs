//! The audit log (SPEC.md §3.6): every state change of a request, appended in the transaction
//! that makes the change. Append-only and tamper-evident: each entry is sealed with an HMAC,
//! keyed by `SHIPGATE_AUDIT_KEY` (kept outside the database), of its own content and of the
//! previous entry's seal, so someone who can write to the database cannot rewrite history and
//! compute the chain again.
//!
//! * One chain per installation: `position` counts 1, 2, 3, … and `prev_hash` is the previous
//!   entry's `hash` (64 zeros for the first). `audit_heads` holds each chain's last position and
//!   hash; the appending transaction updates it first, so its row lock serialises the appenders of
//!   one installation across replicas (PostgreSQL) and a deleted tail no longer matches it.
//! * `hash` = HMAC-SHA256 under the key named by `key_id` of [`hash_input`]: a JSON array of the
//!   key id, position, prev_hash and every stored column, with the detail as its canonical JSON
//!   text (sorted keys, no whitespace). Entries written before the App had a key (`key_id` NULL)
//!   carry a plain SHA-256 instead; an operator seals them once (`shipgate audit seal`,
//!   [`seal_unkeyed`]): they are checked and an `audit.sealed` entry, keyed, says what was found.
//!   Never at start-up: a database writer could otherwise swap a keyed chain for an unkeyed one
//!   of their own and have the next start seal it.
//! * A new key takes over only through an `audit.key_rotated` entry sealed under the new key and
//!   carrying a seal under the old one ([`rotate_key`]).
//! * No code path updates or deletes an entry, and the database refuses to (triggers in
//!   migrations/*/0005_audit.sql and 0020). [`verify`] walks every chain and names the first broken
//!   link, then checks that every approval and gate decision in the tables has its entry.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use super::{Db, Result, StoreError};

/// The `prev_hash` of the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The shortest `SHIPGATE_AUDIT_KEY` accepted.
pub const MIN_KEY_LEN: usize = 32;

/// A key entries are sealed with. Its id, stored with each entry, is 16 hex digits of a SHA-256
/// of the key: it tells which key to check an entry with, and says nothing usable about the key.
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    pub fn new(secret: &str) -> AuditKey {
        let digest = hex::encode(Sha256::digest(format!("shipgate-audit-key-id:{secret}").as_bytes()));
        AuditKey { id: digest[..16].to_string(), key: secret.as_bytes().to_vec() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key for another purpose (the details pages' links), derived from this one: knowing it
    /// says nothing about the audit key, and a new audit key makes every old link invalid.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        m.update(format!("shipgate-derived-key:{purpose}").as_bytes());
        m.finalize().into_bytes().into()
    }

    fn mac(&self, input: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        m.update(input.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

/// The keys `verify` may need: the current one and those it replaced (`SHIPGATE_AUDIT_KEY`,
/// `SHIPGATE_AUDIT_KEY_RETIRED`).
#[derive(Clone, Debug, Default)]
pub struct AuditKeys {
    pub current: Option<AuditKey>,
    pub retired: Vec<AuditKey>,
}

impl AuditKeys {
    pub fn find(&self, id: &str) -> Option<&AuditKey> {
        self.current.iter().chain(&self.retired).find(|k| k.id == id)
    }
}

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
    /// The key the entry is sealed with (None: a plain SHA-256, written before the App had one).
    pub key_id: Option<String>,
}

const COLUMNS: &str = "seq, installation_id, position, repository_id, repository, issue, kind, actor_id, actor_login, \
    delivery_id, at, detail, prev_hash, hash, key_id";

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

/// The bytes an entry's seal is taken over: a versioned JSON array of every stored column but
/// `seq` and `hash` (the detail as its stored canonical text). Version 2 (keyed) starts with the
/// key id; version 1 (unkeyed, before the App had a key) is kept to check old entries.
pub fn hash_input(r: &AuditRow) -> String {
    let fields = serde_json::json!([
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
    ]);
    let Value::Array(mut items) = fields else { unreachable!("an array literal") };
    let mut head = match &r.key_id {
        Some(id) => vec![Value::from("shipgate-audit-v2"), Value::from(id.as_str())],
        None => vec![Value::from("shipgate-audit-v1")],
    };
    head.append(&mut items);
    Value::Array(head).to_string()
}

/// The plain SHA-256 of an unkeyed (version 1) entry.
pub fn entry_hash(r: &AuditRow) -> String {
    hex::encode(Sha256::digest(hash_input(r).as_bytes()))
}

/// What `hash` must be: the HMAC under the entry's key, or the SHA-256 of an unkeyed entry. None
/// when the entry names a key that is not among `keys`.
pub fn expected_hash(r: &AuditRow, keys: &AuditKeys) -> Option<String> {
    match &r.key_id {
        None => Some(entry_hash(r)),
        Some(id) => keys.find(id).map(|k| k.mac(&hash_input(r))),
    }
}

/// Appends `entry` inside `tx`, caused by delivery `delivery_id` at `now` (Unix ms), sealed
/// under `key` (unkeyed without one: a dry run without `SHIPGATE_AUDIT_KEY`).
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    key: Option<&AuditKey>,
    entry: &AuditEntry,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<()> {
    append_with(tx, key, entry, delivery_id, now, false, |_| {}).await.map(|_| ())
}

/// As [`append`]; `takes_over`: this entry moves the chain to `key` (a seal, a rotation), so the
/// key of the entry before may differ. `finish` may change the row once its position and
/// predecessor are known (before it is sealed). Returns the stored row.
async fn append_with(
    tx: &mut Transaction<'_, Any>,
    key: Option<&AuditKey>,
    entry: &AuditEntry,
    delivery_id: Option<&str>,
    now: i64,
    takes_over: bool,
    finish: impl FnOnce(&mut AuditRow),
) -> Result<AuditRow> {
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
    let (position, prev_hash, head_key): (i64, String, Option<String>) = sqlx::query_as(
        "UPDATE audit_heads SET position = position + 1, updated_at = $2 WHERE installation_id = $1 \
         RETURNING position, hash, key_id",
    )
    .bind(entry.installation_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    // A chain changes keys only through `rotate_key`, and is sealed before it gets keyed entries:
    // a process with another key (or none) refuses to append rather than break the chain.
    let own = key.map(|k| k.id.as_str());
    if !takes_over && position > 1 && head_key.as_deref() != own {
        return Err(StoreError::Invalid(match (&head_key, own) {
            (Some(h), Some(o)) => format!(
                "installation {}'s audit log is sealed under key {h}, and this process has key {o}: restart it \
                 with the SHIPGATE_AUDIT_KEY the log was last rotated to",
                entry.installation_id
            ),
            (Some(h), None) => format!(
                "installation {}'s audit log is sealed under key {h}: set SHIPGATE_AUDIT_KEY",
                entry.installation_id
            ),
            _ => format!(
                "installation {}'s audit log is not sealed under SHIPGATE_AUDIT_KEY yet (`shipgate serve` seals it \
                 when it starts)",
                entry.installation_id
            ),
        }));
    }
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
        key_id: key.map(|k| k.id.clone()),
    };
    finish(&mut row);
    row.hash = match key {
        Some(k) => k.mac(&hash_input(&row)),
        None => entry_hash(&row),
    };
    sqlx::query("UPDATE audit_heads SET hash = $2, key_id = $3 WHERE installation_id = $1")
        .bind(row.installation_id)
        .bind(&row.hash)
        .bind(&row.key_id)
        .execute(&mut **tx)
        .await?;
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_log (installation_id, position, repository_id, repository, issue, kind, actor_id, \
         actor_login, delivery_id, at, detail, prev_hash, hash, key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING seq",
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
    .bind(&row.key_id)
    .fetch_one(&mut **tx)
    .await?;
    row.seq = seq;
    tracing::debug!(
        installation = row.installation_id,
        position = row.position,
        kind = %row.kind,
        "audit entry appended"
    );
    Ok(row)
}

/// The last entry of an installation's chain (by position), if any.
pub async fn last_entry(db: &Db, installation_id: i64) -> Result<Option<AuditRow>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 ORDER BY position DESC LIMIT 1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(installation_id).fetch_optional(db.pool()).await?)
}

/// The entry at `position` of an installation's chain, if there is one.
pub async fn entry_at(db: &Db, installation_id: i64, position: i64) -> Result<Option<AuditRow>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 AND position = $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(installation_id).bind(position).fetch_optional(db.pool()).await?)
}

/// The entries of an installation's chain at positions `from..=to`, in order.
pub async fn range(db: &Db, installation_id: i64, from: i64, to: i64) -> Result<Vec<AuditRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 AND position >= $2 AND position <= $3 \
         ORDER BY position"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(installation_id).bind(from).bind(to).fetch_all(db.pool()).await?)
}

/// The first and last position of a request's entries in its installation's chain.
pub async fn issue_span(db: &Db, installation_id: i64, repository_id: i64, issue: i64) -> Result<Option<(i64, i64)>> {
    let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT MIN(position), MAX(position) FROM audit_log WHERE installation_id = $1 AND repository_id = $2 \
         AND issue = $3",
    )
    .bind(installation_id)
    .bind(repository_id)
    .bind(issue)
    .fetch_one(db.pool())
    .await?;
    Ok(first.zip(last))
}

/// A repository's last entry of `kind` before `position` (the policy in force when a request
/// began: its last `policy.changed`).
pub async fn last_before(
    db: &Db,
    installation_id: i64,
    repository_id: i64,
    kind: &str,
    position: i64,
) -> Result<Option<AuditRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 AND repository_id = $2 AND kind = $3 \
         AND position < $4 ORDER BY position DESC LIMIT 1"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation_id)
        .bind(repository_id)
        .bind(kind)
        .bind(position)
        .fetch_optional(db.pool())
        .await?)
}

/// The highest position stored in an installation's chain (0: none).
pub async fn chain_length(db: &Db, installation_id: i64) -> Result<i64> {
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(position) FROM audit_log WHERE installation_id = $1")
        .bind(installation_id)
        .fetch_one(db.pool())
        .await?;
    Ok(n.unwrap_or(0))
}

/// The key each chain is sealed with now (None: unkeyed), by installation.
pub async fn chain_keys(db: &Db) -> Result<Vec<(i64, Option<String>)>> {
    Ok(sqlx::query_as("SELECT installation_id, key_id FROM audit_heads ORDER BY 1").fetch_all(db.pool()).await?)
}

/// Holds a chain's head until the transaction ends (so appenders wait) and reads its key.
async fn hold_head(tx: &mut Transaction<'_, Any>, installation: i64) -> Result<Option<String>> {
    let (key,): (Option<String>,) =
        sqlx::query_as("UPDATE audit_heads SET position = position WHERE installation_id = $1 RETURNING key_id")
            .bind(installation)
            .fetch_one(&mut **tx)
            .await?;
    Ok(key)
}

/// A chain [`seal_unkeyed`] sealed.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    pub installation_id: i64,
    pub entries: i64,
    pub broken: Option<Broken>,
}

/// Seals every chain whose last entry is unkeyed under `key`: checks the unkeyed entries as
/// [`verify`] would and appends an `audit.sealed` entry saying how many there were, the head it
/// seals, and the first broken link if the old chain was already broken (it is never hashed
/// again). Safe to run twice at once: each chain is sealed in one transaction that holds its
/// head. Returns the chains sealed.
pub async fn seal_unkeyed(db: &Db, key: &AuditKey, now: i64) -> Result<Vec<Sealed>> {
    let mut sealed = Vec::new();
    for (installation, last_key) in chain_keys(db).await? {
        if last_key.is_some() {
            continue;
        }
        let mut tx = db.begin_write().await?;
        // Another replica sealing at the same time waits here, then finds the chain sealed.
        if hold_head(&mut tx, installation).await?.is_some() {
            tx.rollback().await?;
            continue;
        }
        let (entries, head): (i64, String) =
            sqlx::query_as("SELECT position, hash FROM audit_heads WHERE installation_id = $1")
                .bind(installation)
                .fetch_one(&mut *tx)
                .await?;
        let chain = verify_chain(&mut tx, installation, &AuditKeys::default()).await?;
        let broken = chain.broken.as_ref().map(json_broken);
        let entry = AuditEntry {
            installation_id: installation,
            repository_id: None,
            repository: None,
            issue: None,
            kind: "audit.sealed".into(),
            actor_id: None,
            actor_login: None,
            detail: serde_json::json!({ "entries": entries, "head": head, "broken": broken }),
        };
        append_with(&mut tx, Some(key), &entry, None, now, true, |_| {}).await?;
        tx.commit().await?;
        match &chain.broken {
            None => tracing::info!(installation, entries, "audit chain sealed under SHIPGATE_AUDIT_KEY"),
            Some(b) => tracing::warn!(installation, broken = %b, "audit chain was already broken: sealed as broken"),
        }
        sealed.push(Sealed { installation_id: installation, entries, broken: chain.broken });
    }
    Ok(sealed)
}

fn json_broken(b: &Broken) -> Value {
    serde_json::json!({ "position": b.position, "seq": b.seq, "reason": b.reason })
}

/// Moves every chain from `old` to `new`: appends to each an `audit.key_rotated` entry sealed
/// under the new key that also carries its seal under the old one (`previous_key_seal`, over the
/// same entry without that field), so the holder of the old key vouches for the new one. Chains
/// sealed under another key are refused (the first such is named); chains already under `new`
/// are left alone. Returns the number of chains rotated.
pub async fn rotate_key(db: &Db, old: &AuditKey, new: &AuditKey, now: i64) -> Result<usize> {
    if old.id == new.id {
        return Err(StoreError::Invalid("the new key is the current key".into()));
    }
    let chains = chain_keys(db).await?;
    if let Some((installation, key)) =
        chains.iter().find(|(_, k)| k.as_deref() != Some(&old.id) && k.as_deref() != Some(&new.id))
    {
        return Err(StoreError::Invalid(match key {
            None => format!(
                "installation {installation}'s chain is not sealed under any key yet: seal it under SHIPGATE_AUDIT_KEY first (`shipgate audit seal`)"
            ),
            Some(k) => format!(
                "installation {installation}'s chain is sealed under key {k}, not under SHIPGATE_AUDIT_KEY ({})",
                old.id
            ),
        }));
    }
    let mut rotated = 0;
    for (installation, key) in chains {
        if key.as_deref() == Some(&new.id) {
            continue;
        }
        let mut tx = db.begin_write().await?;
        if hold_head(&mut tx, installation).await?.as_deref() != Some(&old.id) {
            tx.rollback().await?; // rotated meanwhile
            continue;
        }
        let entry = AuditEntry {
            installation_id: installation,
            repository_id: None,
            repository: None,
            issue: None,
            kind: "audit.key_rotated".into(),
            actor_id: None,
            actor_login: None,
            detail: serde_json::json!({ "previous_key_id": old.id, "key_id": new.id }),
        };
        append_with(&mut tx, Some(new), &entry, None, now, true, |row| {
            let seal = old.mac(&hash_input(row));
            let mut detail: Value = serde_json::from_str(&row.detail).expect("canonical JSON just written");
            detail["previous_key_seal"] = Value::from(seal);
            row.detail = canonical_json(&detail);
        })
        .await?;
        tx.commit().await?;
        rotated += 1;
    }
    Ok(rotated)
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

/// One request's (or issue's) newest `limit` entries in its installation's chain, in order, and
/// how many it has in all (the page says when older ones are left out).
pub async fn for_issue(
    db: &Db,
    installation: i64,
    repository_id: i64,
    issue: i64,
    limit: i64,
) -> Result<(Vec<AuditRow>, i64)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 \
         ORDER BY position DESC LIMIT $4"
    );
    let mut rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.reverse();
    let total = if (rows.len() as i64) < limit {
        rows.len() as i64
    } else {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_log WHERE installation_id = $1 AND repository_id = $2 AND issue = $3",
        )
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .fetch_one(db.pool())
        .await?;
        n
    };
    Ok((rows, total))
}

/// A verification's outcome, in short (for `/metrics`).
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Intact,
    /// The first problem found.
    Broken(String),
    /// The verification could not run (the database, say).
    Failed(String),
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// One per installation that has a chain (entries or a head), by installation id.
    pub chains: Vec<ChainReport>,
    /// The first approval or gate decision in the tables that the log does not record.
    pub unrecorded: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.broken.is_none() && c.sealed_broken.is_none()) && self.unrecorded.is_none()
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
    /// The key the chain is sealed with now (None: unkeyed).
    pub key_id: Option<String>,
    pub broken: Option<Broken>,
    /// The first broken link among the entries written before the App had a key, as the
    /// `audit.sealed` entry recorded it when it sealed them (the chain is intact from the seal on).
    pub sealed_broken: Option<Broken>,
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
/// with position, each entry's seal recomputing from its content under its key (among `keys`),
/// each `prev_hash` equal to the previous entry's hash, keys changing only through a rotation the
/// old key vouches for, unkeyed entries only before the seal, and the head row matching the last
/// entry. Stops each chain at its first broken link. Then checks the tables against the log: every
/// approval as its last entry says, every open gate with its `gate.opened`.
pub async fn verify(db: &Db, keys: &AuditKeys) -> Result<VerifyReport> {
    let installations: Vec<(i64,)> = sqlx::query_as(
        "SELECT installation_id FROM audit_heads UNION SELECT installation_id FROM audit_log ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    let mut report = VerifyReport::default();
    for (installation,) in installations {
        report.chains.push(verify_installation(db, installation, keys).await?);
    }
    report.unrecorded = unrecorded(db).await?;
    Ok(report)
}

/// One installation's chain, as [`verify`] walks it, in one snapshot.
pub async fn verify_installation(db: &Db, installation: i64, keys: &AuditKeys) -> Result<ChainReport> {
    // One snapshot per chain: entries appended while it is walked (a live App) are not seen,
    // and neither is the head they move, so the two always agree.
    let mut tx = db.pool().begin().await?;
    if db.backend() == super::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let mut chain = verify_chain(&mut tx, installation, keys).await?;
    if chain.broken.is_none() && chain.entries > 0 && chain.key_id.is_none() && keys.current.is_some() {
        // Named from its first entry: none of it is vouched for by the key.
        let first: Option<(i64,)> =
            sqlx::query_as("SELECT seq FROM audit_log WHERE installation_id = $1 AND position = 1")
                .bind(installation)
                .fetch_optional(&mut *tx)
                .await?;
        chain.broken = Some(Broken {
            installation_id: installation,
            position: 1,
            seq: first.map(|(s,)| s),
            reason: format!(
                "the chain is not sealed under a key: none of its {} entries is vouched for by \
                 SHIPGATE_AUDIT_KEY. Either it was written before the App had a key and was never sealed (check \
                 that nobody wrote to the database, then `shipgate audit seal`), or its keyed entries were \
                 rewritten as unkeyed ones",
                chain.entries
            ),
        });
    }
    tx.rollback().await?;
    Ok(chain)
}

const VERIFY_BATCH: i64 = 1000;

async fn verify_chain(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    installation: i64,
    keys: &AuditKeys,
) -> Result<ChainReport> {
    let mut chain = ChainReport {
        installation_id: installation,
        entries: 0,
        last_hash: GENESIS.into(),
        key_id: None,
        broken: None,
        sealed_broken: None,
    };
    let mut expected = 1i64;
    let mut last_seq = i64::MIN;
    let mut after_position = i64::MIN;
    // The first problem among unkeyed entries: the walk goes on to the seal, which says whether
    // it was there when the App sealed them.
    let mut unkeyed_problem: Option<Broken> = None;
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
            let order = if r.position > expected {
                Some(format!(
                    "entry missing: found position {} where {expected} was expected (deleted entries)",
                    r.position
                ))
            } else if r.position < expected {
                Some(format!("position {} is out of order (expected {expected})", r.position))
            } else if r.seq <= last_seq {
                Some(format!("appended out of order: seq {} comes after seq {last_seq} (rows reordered)", r.seq))
            } else {
                None
            };
            let problem = match order {
                Some(p) => Some(p),
                None if r.key_id.is_none() && chain.key_id.is_some() => Some(
                    "an unkeyed entry after the chain was sealed under a key (written without SHIPGATE_AUDIT_KEY, or \
                     rewritten)"
                        .to_string(),
                ),
                None if r.key_id.is_none() => {
                    let p = if entry_hash(&r) != r.hash {
                        Some("content does not match its hash (the entry was edited)".to_string())
                    } else if r.prev_hash != chain.last_hash {
                        Some(prev_hash_mismatch(&r.prev_hash, &chain.last_hash))
                    } else {
                        None
                    };
                    if let Some(p) = p
                        && unkeyed_problem.is_none()
                    {
                        unkeyed_problem = Some(broken(expected, seq, p));
                    }
                    None
                }
                None => match check_keyed(&r, &chain, keys, &mut unkeyed_problem) {
                    Err(p) => Some(p),
                    Ok(acknowledged) => {
                        if acknowledged.is_some() {
                            chain.sealed_broken = acknowledged;
                        }
                        None
                    }
                },
            };
            if let Some(reason) = problem {
                chain.broken = Some(unkeyed_problem.take().unwrap_or_else(|| broken(expected, seq, reason)));
                return Ok(chain);
            }
            chain.key_id = r.key_id.clone();
            chain.last_hash = r.hash;
            last_seq = r.seq;
            expected += 1;
        }
        if n < VERIFY_BATCH {
            break;
        }
    }
    if let Some(p) = unkeyed_problem {
        chain.broken = Some(p);
        return Ok(chain);
    }
    let head: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT position, hash, key_id FROM audit_heads WHERE installation_id = $1")
            .bind(installation)
            .fetch_optional(&mut **tx)
            .await?;
    let last = expected - 1;
    match head {
        None => {
            chain.broken = Some(broken(last, None, "the chain has no head row (audit_heads was edited)".into()));
        }
        Some((position, hash, _)) if position != last || hash != chain.last_hash => {
            let reason = if position > last {
                format!(
                    "the head says the chain ends at position {position}, but the last entry is {last} (entries deleted at the end)"
                )
            } else {
                format!("the head (position {position}, hash {}) does not match the last entry", short(&hash))
            };
            chain.broken = Some(broken(last + 1, None, reason));
        }
        Some((_, _, key)) if key != chain.key_id => {
            chain.broken = Some(broken(
                last + 1,
                None,
                format!(
                    "the head names key {}, the last entry is sealed under {} (audit_heads was edited)",
                    key.as_deref().unwrap_or("none"),
                    chain.key_id.as_deref().unwrap_or("none")
                ),
            ));
        }
        Some(_) => {}
    }
    Ok(chain)
}

fn prev_hash_mismatch(found: &str, want: &str) -> String {
    format!("prev_hash {} is not the hash of the previous entry ({})", short(found), short(want))
}

/// A keyed entry `r`, the chain read so far being `chain`: its seal, its link, and how its key
/// took over. Ok(Some(b)) when it is the seal of unkeyed entries that were already broken at `b`.
fn check_keyed(
    r: &AuditRow,
    chain: &ChainReport,
    keys: &AuditKeys,
    unkeyed_problem: &mut Option<Broken>,
) -> std::result::Result<Option<Broken>, String> {
    let id = r.key_id.as_deref().unwrap_or_default();
    let Some(key) = keys.find(id) else {
        return Err(format!(
            "sealed under key {id}, which is not given: set SHIPGATE_AUDIT_KEY (and SHIPGATE_AUDIT_KEY_RETIRED for \
             keys rotated away from)"
        ));
    };
    if key.mac(&hash_input(r)) != r.hash {
        return Err("content does not match its seal (the entry was edited)".into());
    }
    if r.prev_hash != chain.last_hash {
        return Err(prev_hash_mismatch(&r.prev_hash, &chain.last_hash));
    }
    let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
    let mut acknowledged = None;
    match chain.key_id.as_deref() {
        // The first keyed entry after unkeyed ones: it must be their seal, naming what it sealed.
        None if chain.entries > 1 => {
            if r.kind != "audit.sealed" {
                return Err(format!("the chain turns keyed at a `{}` entry, not at an audit.sealed one", r.kind));
            }
            if detail["entries"] != chain.entries - 1 || detail["head"] != chain.last_hash.as_str() {
                return Err("the seal does not name the entries before it".into());
            }
            let sealed_at = detail["broken"]["position"].as_i64();
            match (unkeyed_problem.take(), sealed_at) {
                (None, None) => {}
                (Some(p), Some(at)) if p.position == at => acknowledged = Some(p),
                (Some(p), _) => {
                    *unkeyed_problem = Some(p);
                    return Err("unkeyed entries changed after they were sealed".into());
                }
                (None, Some(at)) => {
                    return Err(format!(
                        "the seal says the unkeyed entries were broken at position {at}, and now they are not (rewritten)"
                    ));
                }
            }
        }
        Some(prev) if prev != id => {
            if r.kind != "audit.key_rotated" || detail["previous_key_id"] != prev || detail["key_id"] != id {
                return Err(format!("the key changes from {prev} to {id} without a rotation entry"));
            }
            let Some(old) = keys.find(prev) else {
                return Err(format!("rotated from key {prev}, which is not given"));
            };
            let mut unsealed = r.clone();
            let mut d = detail.clone();
            let seal = d.as_object_mut().and_then(|m| m.remove("previous_key_seal"));
            unsealed.detail = canonical_json(&d);
            if seal.as_ref().and_then(Value::as_str) != Some(old.mac(&hash_input(&unsealed)).as_str()) {
                return Err(format!("the rotation is not sealed under the previous key {prev}"));
            }
        }
        _ => {}
    }
    Ok(acknowledged)
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    seq: i64,
    repository_id: i64,
    issue: i64,
    comment_id: i64,
    user_id: i64,
    login: String,
    environment: String,
    revision: i64,
    state: String,
    roles: String,
    head_shas: String,
}

/// The first approval or open gate in the tables that the log does not record as it is: an
/// approval row whose last `approval.*` entry (by comment) is missing or says another state,
/// approver, environment or revision; a request whose gate is open without `gate.opened` as its
/// last gate entry, or closed after one. One installation at a time.
async fn unrecorded(db: &Db) -> Result<Option<String>> {
    let installations: Vec<(i64,)> = sqlx::query_as(
        "SELECT DISTINCT installation_id FROM approvals UNION SELECT DISTINCT installation_id FROM requests \
         UNION SELECT DISTINCT installation_id FROM policies UNION SELECT DISTINCT installation_id FROM protection_rules \
         UNION SELECT DISTINCT installation_id FROM gate_waits ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    for (installation,) in installations {
        let entries: Vec<(Option<i64>, Option<i64>, String, String)> = sqlx::query_as(
            "SELECT repository_id, issue, kind, detail FROM audit_log WHERE installation_id = $1 \
             AND kind IN ('approval.given', 'approval.withdrawn', 'approval.stale', 'gate.opened', 'gate.closed', \
             'request.held', 'request.unheld', 'request.denied', 'request.undenied', 'policy.changed', \
             'protection_rule.approved', 'gate_wait.approved') ORDER BY seq",
        )
        .bind(installation)
        .fetch_all(db.pool())
        .await?;
        // (repository, issue, comment) -> the last entry (kind, approver, environment, revision);
        // and what the first said of what never changes in the row (login, roles, heads).
        let mut approvals = std::collections::HashMap::new();
        let mut given = std::collections::HashMap::new();
        // (repository, issue) -> gate opened; -> held. repository -> (blob, text hash) last taking effect.
        let mut gates = std::collections::HashMap::new();
        let mut holds = std::collections::HashMap::new();
        let mut policies = std::collections::HashMap::new();
        // (repository, issue) -> (denied, whether its lift would have been recorded).
        let mut denies = std::collections::HashMap::new();
        // (table, repository, run, environment) of every approving answer to a deployment.
        let mut answered = std::collections::HashSet::new();
        for (repository_id, issue, kind, detail) in entries {
            let Some(repository_id) = repository_id else { continue };
            let d: Value = serde_json::from_str(&detail).unwrap_or(Value::Null);
            if kind == "policy.changed" {
                let text = d.get("yaml_sha256").map(|v| v.as_str().map(str::to_string));
                policies.insert(repository_id, (d["blob"].as_str().unwrap_or_default().to_string(), text));
                continue;
            }
            if let Some(table) = kind.strip_suffix(".approved") {
                let (run, env) = (d["run_id"].as_i64(), d["environment"].as_str().map(str::to_lowercase));
                // A job's answer is for one attempt of its run (entries before this version do
                // not say which: any attempt).
                let attempt = if table == "gate_wait" { d["run_attempt"].as_i64() } else { None };
                if let (Some(run), Some(env)) = (run, env) {
                    answered.insert((table.to_string(), repository_id, run, env, attempt));
                }
                continue;
            }
            let Some(issue) = issue else { continue };
            if kind == "request.denied" || kind == "request.undenied" {
                let lift_audited = kind == "request.undenied" || d["lift_audited"] == Value::Bool(true);
                denies.insert((repository_id, issue), (kind == "request.denied", lift_audited));
                continue;
            }
            if kind.starts_with("gate.") {
                gates.insert((repository_id, issue), kind == "gate.opened");
                continue;
            }
            if kind.starts_with("request.") {
                holds.insert((repository_id, issue), kind == "request.held");
                continue;
            }
            let Some(comment) = d["comment_id"].as_i64() else { continue };
            let text = |k: &str| d[k].as_str().map(str::to_string);
            given.entry((repository_id, issue, comment)).or_insert((
                text("approver"),
                text("roles"),
                text("head_shas"),
            ));
            let said = (kind, d["approver_id"].as_i64(), text("environment"), d["revision"].as_i64());
            approvals.insert((repository_id, issue, comment), said);
        }
        let rows: Vec<ApprovalRow> = sqlx::query_as(
            "SELECT seq, repository_id, issue, comment_id, user_id, login, environment, revision, state, roles, \
             head_shas FROM approvals WHERE installation_id = $1 ORDER BY seq",
        )
        .bind(installation)
        .fetch_all(db.pool())
        .await?;
        for a in rows {
            let ApprovalRow {
                seq,
                repository_id,
                issue,
                comment_id: comment,
                user_id,
                login,
                environment,
                revision,
                state,
                roles,
                head_shas,
            } = a;
            let what = format!(
                "approval {seq} (installation {installation}, repository {repository_id}, issue #{issue}, comment \
                 {comment}, {login})"
            );
            if let Some((first_login, first_roles, first_heads)) = given.get(&(repository_id, issue, comment))
                && (first_login.as_deref() != Some(login.as_str())
                    || first_roles.as_deref() != Some(roles.as_str())
                    || first_heads.as_deref() != Some(head_shas.as_str()))
            {
                return Ok(Some(format!(
                    "{what} holds roles {roles} for heads {head_shas}; its audit entry says {} with roles {} for heads {}",
                    first_login.as_deref().unwrap_or_default(),
                    first_roles.as_deref().unwrap_or_default(),
                    first_heads.as_deref().unwrap_or_default()
                )));
            }
            let kind = crate::domain::state::ApprovalState::parse(&state).map(|s| s.audit_kind()).unwrap_or("?");
            match approvals.get(&(repository_id, issue, comment)) {
                None => return Ok(Some(format!("{what} has no audit entry: it was not recorded by the App"))),
                Some((k, approver, env, rev)) => {
                    if k != kind {
                        return Ok(Some(format!("{what} is {state} in the table, but its last audit entry is {k}")));
                    }
                    if *approver != Some(user_id)
                        || env.as_deref() != Some(environment.as_str())
                        || *rev != Some(revision)
                    {
                        return Ok(Some(format!(
                            "{what} names user {user_id}, environment {environment}, revision {revision}; its audit \
                             entry says user {}, environment {}, revision {}",
                            approver.map(|v| v.to_string()).unwrap_or_default(),
                            env.as_deref().unwrap_or_default(),
                            rev.map(|v| v.to_string()).unwrap_or_default()
                        )));
                    }
                }
            }
        }
        // repository id, issue, repository, gate open, held by, denied by
        type RequestGate = (i64, i64, String, i64, Option<String>, Option<String>);
        let requests: Vec<RequestGate> = sqlx::query_as(
            "SELECT repository_id, issue, repository, gate_open, hold_by, denied_by FROM requests \
             WHERE installation_id = $1 ORDER BY repository_id, issue",
        )
        .bind(installation)
        .fetch_all(db.pool())
        .await?;
        for (repository_id, issue, repository, gate_open, hold_by, denied_by) in requests {
            // A deny lifted by hand would let the gate open: the log must have lifted it too.
            let (denied, lift_audited) = denies.get(&(repository_id, issue)).copied().unwrap_or((false, true));
            if denied_by.is_some() != denied && (denied_by.is_some() || lift_audited) {
                return Ok(Some(format!(
                    "{repository}#{issue} (installation {installation}) is {} in the table, but its last deny entry \
                     says {}",
                    if denied_by.is_some() { "denied" } else { "not denied" },
                    if denied { "denied" } else { "not denied" }
                )));
            }
            let held = holds.get(&(repository_id, issue)).copied().unwrap_or(false);
            if hold_by.is_some() != held {
                return Ok(Some(format!(
                    "{repository}#{issue} (installation {installation}) is {} in the table, but its last hold entry \
                     says {}",
                    if hold_by.is_some() { "held" } else { "not held" },
                    if held { "held" } else { "not held" }
                )));
            }
            let logged = gates.get(&(repository_id, issue)).copied().unwrap_or(false);
            if (gate_open != 0) != logged {
                let (table, log) = if gate_open != 0 {
                    ("open", "it has no gate.opened entry after its last gate.closed")
                } else {
                    ("closed", "its last gate entry is gate.opened")
                };
                return Ok(Some(format!(
                    "the gate of {repository}#{issue} (installation {installation}) is {table} in the table, but {log}"
                )));
            }
        }
        // An approving answer to a deployment (a protection rule's, a job's at /gate/wait) is the
        // gate letting a deployment through: each must be one the log recorded.
        let approved: Vec<(String, i64, String, i64, i64, String)> = sqlx::query_as(
            "SELECT 'protection_rule', repository_id, repository, run_id, 0, environment FROM protection_rules \
             WHERE installation_id = $1 AND state = 'approved' \
             UNION ALL SELECT 'gate_wait', repository_id, repository, run_id, run_attempt, environment FROM gate_waits \
             WHERE installation_id = $1 AND state = 'approved' ORDER BY 1, 2, 4, 5",
        )
        .bind(installation)
        .fetch_all(db.pool())
        .await?;
        for (table, repository_id, repository, run, attempt, environment) in approved {
            let key = |a: Option<i64>| (table.clone(), repository_id, run, environment.to_lowercase(), a);
            let attempt = (table == "gate_wait").then_some(attempt);
            if !answered.contains(&key(attempt)) && !answered.contains(&key(None)) {
                return Ok(Some(format!(
                    "run {run} of {repository} (installation {installation}) is approved for {environment} in the \
                     {table} table, but the log has no {table}.approved entry for it"
                )));
            }
        }
        // The cached policy is what the gate reads: it must be the blob (and, since entries carry
        // it, the text) the last `policy.changed` of its repository recorded.
        let cached: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT repository_id, blob_sha, yaml FROM policies WHERE installation_id = $1 ORDER BY repository_id",
        )
        .bind(installation)
        .fetch_all(db.pool())
        .await?;
        for (repository_id, blob, yaml) in cached {
            let Some((logged_blob, logged_text)) = policies.get(&repository_id) else { continue };
            let text = yaml.as_deref().map(|y| hex::encode(Sha256::digest(y.as_bytes())));
            let text_differs = matches!(logged_text, Some(t) if *t != text);
            if *logged_blob != blob || text_differs {
                return Ok(Some(format!(
                    "the policy cached for repository {repository_id} (installation {installation}) is not the one its \
                     last policy.changed entry recorded"
                )));
            }
        }
    }
    Ok(None)
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
            key_id: None,
        }
    }

    #[test]
    fn a_keyed_seal_covers_the_key_and_needs_it() {
        let k = AuditKey::new("k".repeat(32).as_str());
        let other = AuditKey::new("o".repeat(32).as_str());
        let keys = AuditKeys { current: Some(k.clone()), retired: vec![] };
        let mut r = row();
        r.key_id = Some(k.id().to_string());
        let seal = expected_hash(&r, &keys).expect("the key is given");
        assert_ne!(seal, entry_hash(&row()));
        assert!(hash_input(&r).starts_with(&format!("[\"shipgate-audit-v2\",\"{}\",", k.id())));
        assert_eq!(expected_hash(&r, &AuditKeys::default()), None, "no key, no seal");
        r.key_id = Some(other.id().to_string());
        assert_eq!(expected_hash(&r, &keys), None);
        let both = AuditKeys { current: Some(other.clone()), retired: vec![k.clone()] };
        assert_ne!(expected_hash(&r, &both), Some(seal), "another key, another seal");
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains("kkkk"));
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
