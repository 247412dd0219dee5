//! Tokens of the read-only JSON API. Each belongs to one installation and reads only its rows.
//! A token is 32 random bytes from the operating system (`getrandom`, already in the build via
//! octocrab; `fastrand` is a fast non-cryptographic generator, unfit for secrets), shown once as
//! `sg_` + 64 hex digits. Only its SHA-256 is stored, so a copy of the database reveals no token.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Db, Result, StoreError};

pub const PREFIX: &str = "sg_";

#[derive(Clone, Debug, PartialEq, sqlx::FromRow, Serialize)]
pub struct TokenRow {
    pub seq: i64,
    pub installation_id: i64,
    pub name: Option<String>,
    pub created_at: i64,
    /// `read` or `alerts` ([`TokenScope`]).
    pub scope: String,
}

/// What a token may do. Each token has one: a token in an Alertmanager's configuration reads
/// nothing, and a read token posts no alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenScope {
    /// The read-only JSON API (`/api/...`).
    Read,
    /// Alert notifications (`POST /alerts/alertmanager`).
    Alerts,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Alerts => "alerts",
        }
    }

    pub fn parse(s: &str) -> Option<TokenScope> {
        match s {
            "read" => Some(TokenScope::Read),
            "alerts" => Some(TokenScope::Alerts),
            _ => None,
        }
    }
}

/// What a presented token is, for a route that needs `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not one of ours, or its installation was deleted.
    Unknown,
    /// One of ours, for another scope (named).
    WrongScope(String),
    /// The installation it acts for, and whether that installation is suspended.
    Valid { installation: i64, suspended: bool },
}

/// The stored form of a token: SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (not stored).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| StoreError::Invalid(format!("the operating system gave no random bytes: {e}")))?;
    Ok(format!("{PREFIX}{}", hex::encode(bytes)))
}

/// Creates a token for `installation` and returns it: the only time it is ever seen.
/// Refuses an installation the App has never heard of (no installation event, no request).
pub async fn create(db: &Db, installation: i64, name: Option<&str>, now: i64) -> Result<(TokenRow, String)> {
    create_scoped(db, installation, name, TokenScope::Read, now).await
}

/// [`create`] with the token's scope.
pub async fn create_scoped(
    db: &Db,
    installation: i64,
    name: Option<&str>,
    scope: TokenScope,
    now: i64,
) -> Result<(TokenRow, String)> {
    let known: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM installations WHERE id = $1 \
         UNION SELECT installation_id FROM requests WHERE installation_id = $1 LIMIT 1",
    )
    .bind(installation)
    .fetch_optional(db.pool())
    .await?;
    if known.is_none() {
        return Err(StoreError::Invalid(format!(
            "no installation {installation} is known to this App (`shipgate installations` lists them)"
        )));
    }
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let token = generate()?;
    let row: TokenRow = sqlx::query_as(
        "INSERT INTO api_tokens (installation_id, token_sha256, name, created_at, scope) VALUES ($1, $2, $3, $4, $5) \
         RETURNING seq, installation_id, name, created_at, scope",
    )
    .bind(installation)
    .bind(token_hash(&token))
    .bind(name)
    .bind(now)
    .bind(scope.as_str())
    .fetch_one(db.writer())
    .await?;
    tracing::info!(installation, token_seq = row.seq, scope = scope.as_str(), "API token created");
    Ok((row, token))
}

/// What a presented token is for a route needing `scope` ([`Lookup`]): a token of a deleted
/// installation is unknown (it stops working); a suspended one's is valid but says so.
pub async fn lookup(db: &Db, token: &str, scope: TokenScope) -> Result<Lookup> {
    if !token.starts_with(PREFIX) {
        return Ok(Lookup::Unknown);
    }
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT t.installation_id, CASE WHEN EXISTS (SELECT 1 FROM installations i WHERE i.id = t.installation_id \
         AND i.suspended_at IS NOT NULL) THEN 1 ELSE 0 END, t.scope FROM api_tokens t WHERE t.token_sha256 = $1 \
         AND NOT EXISTS (SELECT 1 FROM installations i WHERE i.id = t.installation_id AND i.deleted_at IS NOT NULL)",
    )
    .bind(token_hash(token))
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        None => Lookup::Unknown,
        Some((_, _, have)) if have != scope.as_str() => Lookup::WrongScope(have),
        Some((installation, suspended, _)) => Lookup::Valid { installation, suspended: suspended != 0 },
    })
}

pub async fn list(db: &Db) -> Result<Vec<TokenRow>> {
    Ok(sqlx::query_as("SELECT seq, installation_id, name, created_at, scope FROM api_tokens ORDER BY seq")
        .fetch_all(db.pool())
        .await?)
}

/// Deletes a token by its number; false when there is none.
pub async fn revoke(db: &Db, seq: i64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM api_tokens WHERE seq = $1").bind(seq).execute(db.writer()).await?;
    Ok(r.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = generate().expect("random");
        let b = generate().expect("random");
        assert!(a.starts_with("sg_") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a[3..]);
    }
}
