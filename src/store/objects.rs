//! What the App created on GitHub, by idempotency key, so that it is found again without a
//! search. A `github_id` of 0 means "being created": a crash may have left it made on GitHub but
//! not recorded here, so the next attempt looks for it before making another.

use super::{Db, Result};

pub async fn get(db: &Db, installation: i64, kind: &str, key: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT github_id FROM github_objects WHERE installation_id = $1 AND kind = $2 AND key = $3")
            .bind(installation)
            .bind(kind)
            .bind(key)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|r| r.0))
}

pub async fn put(db: &Db, installation: i64, kind: &str, key: &str, github_id: i64, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO github_objects (installation_id, kind, key, github_id, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (installation_id, kind, key) DO UPDATE SET github_id = excluded.github_id, updated_at = excluded.updated_at",
    )
    .bind(installation)
    .bind(kind)
    .bind(key)
    .bind(github_id)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(())
}
