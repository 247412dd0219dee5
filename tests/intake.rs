//! `POST /webhook` through the real router: what is refused, what is stored, and what is stored once.

mod common;

use std::time::Duration;

use common::{SECRET, TestApp, TestDb, count, fixture, fixtures_dir, unique};
use shipgate::github::signature::sign;
use shipgate::handlers::Registry;
use shipgate::server::Options;

fn no_worker() -> Options {
    Options { run_worker: false, ..Options::default() }
}

/// Sends a request with every header given explicitly.
async fn raw(app: &TestApp, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> u16 {
    let mut req = app.http.post(format!("{}/webhook", app.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.expect("request").status().as_u16()
}

async fn bad_inputs_are_refused_and_store_nothing(db: &TestDb) {
    let app = TestApp::start(db, no_worker()).await;
    let body = fixture("issue_comment.created.0");
    let sig = sign(SECRET, body.as_bytes());
    let good = |skip: &str| -> Vec<(&'static str, String)> {
        [
            ("content-type", "application/json".to_string()),
            ("x-github-event", "issue_comment".to_string()),
            ("x-github-delivery", "d-1".to_string()),
            ("x-hub-signature-256", sig.clone()),
        ]
        .into_iter()
        .filter(|(k, _)| *k != skip)
        .collect()
    };
    let send = |headers: Vec<(&'static str, String)>, body: String| {
        let app = &app;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw(app, &h, body).await
        }
    };

    // Signature: missing, wrong, another secret's, malformed.
    assert_eq!(send(good("x-hub-signature-256"), body.clone()).await, 401);
    let mut h = good("x-hub-signature-256");
    h.push(("x-hub-signature-256", sign(SECRET, b"something else")));
    assert_eq!(send(h, body.clone()).await, 401);
    let mut h = good("x-hub-signature-256");
    h.push(("x-hub-signature-256", sign("not-the-secret", body.as_bytes())));
    assert_eq!(send(h, body.clone()).await, 401);
    let mut h = good("x-hub-signature-256");
    h.push(("x-hub-signature-256", sig.replace("sha256=", "sha1=")));
    assert_eq!(send(h, body.clone()).await, 401);
    // The body changed after signing.
    assert_eq!(send(good(""), body.replace("Codertocat", "Mallory")).await, 401);

    // Headers.
    assert_eq!(send(good("x-github-event"), body.clone()).await, 400);
    assert_eq!(send(good("x-github-delivery"), body.clone()).await, 400);
    let mut h = good("x-github-event");
    h.push(("x-github-event", "Issue Comment!".into()));
    assert_eq!(send(h, body.clone()).await, 400);

    // Content type.
    assert_eq!(send(good("content-type"), body.clone()).await, 415);
    let mut h = good("content-type");
    h.push(("content-type", "application/x-www-form-urlencoded".into()));
    assert_eq!(send(h, body.clone()).await, 415);

    // Bodies that are signed but are not a JSON object.
    for bad in ["[1, 2, 3]", "\"text\"", "null", "{\"action\": ", "{} {}", ""] {
        let mut h = good("x-hub-signature-256");
        h.push(("x-hub-signature-256", sign(SECRET, bad.as_bytes())));
        assert_eq!(send(h, bad.to_string()).await, 400, "body {bad:?}");
    }

    // Over 25 MiB: refused on the declared length, before the body is read ...
    let addr = app.server.addr;
    let head = |framing: &str| {
        format!(
            "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: push\r\n\
             x-github-delivery: big-1\r\nx-hub-signature-256: {}\r\n{framing}\r\n",
            sign(SECRET, b"{}")
        )
    };
    let too_big = 25 * 1024 * 1024 + 1;
    assert_eq!(raw_tcp(addr, head(&format!("content-length: {too_big}\r\n")), None).await, 413);
    // ... and, without a declared length (chunked), once more than 25 MiB has arrived.
    assert_eq!(raw_tcp(addr, head("transfer-encoding: chunked\r\n"), Some(too_big + (1 << 20))).await, 413);

    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 0, "a refused delivery was stored");

    // A large body under the limit is fine (axum's 2 MB default does not apply).
    let large = format!("{{\"pad\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    assert_eq!(app.deliver("push", "d-large", &large).await, 202);
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 1);
    app.shutdown().await;
}
both_backends!(bad_inputs_are_refused_and_store_nothing);

/// Sends `head` on a raw connection, then (if given) that many bytes of a chunked JSON-ish body,
/// and returns the status code of the answer. The server may answer, and close, before the body
/// is all written: that is what is being tested, so write errors are ignored.
async fn raw_tcp(addr: std::net::SocketAddr, head: String, chunked_bytes: Option<usize>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.expect("write head");
    let writer = tokio::spawn(async move {
        if let Some(total) = chunked_bytes {
            let chunk = vec![b' '; 1 << 20];
            let mut sent = 0;
            while sent < total {
                let frame = format!("{:x}\r\n", chunk.len());
                if wr.write_all(frame.as_bytes()).await.is_err()
                    || wr.write_all(&chunk).await.is_err()
                    || wr.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                sent += chunk.len();
            }
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the write half open until the answer has been read.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut buf = vec![0u8; 1024];
    let n =
        tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await.expect("answer in time").expect("read");
    writer.abort();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

async fn github_documented_vector_passes_the_signature_check(db: &TestDb) {
    // GitHub's example: the signature is right, so the request gets past the 401; its body is
    // not JSON, so it is then refused with 400.
    let mut cfg = db.config();
    cfg.webhook_secrets = vec![shipgate::config::Secret::new("It's a Secret to Everybody")];
    let app = TestApp::start_with(cfg, no_worker()).await;
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = [
        ("content-type", "application/json"),
        ("x-github-event", "ping"),
        ("x-github-delivery", "doc-1"),
        ("x-hub-signature-256", sig),
    ];
    assert_eq!(raw(&app, &h, "Hello, World!").await, 400);
    let h2 = [
        h[0],
        h[1],
        h[2],
        ("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18"),
    ];
    assert_eq!(raw(&app, &h2, "Hello, World!").await, 401);
    app.shutdown().await;
}
both_backends!(github_documented_vector_passes_the_signature_check);

async fn rotated_secrets_are_all_accepted(db: &TestDb) {
    let mut cfg = db.config();
    cfg.webhook_secrets = vec![shipgate::config::Secret::new("old"), shipgate::config::Secret::new("new")];
    let app = TestApp::start_with(cfg, no_worker()).await;
    let body = fixture("ping.none.0");
    let b2 = unique(&body, "2");
    assert_eq!(common::post_signed(&app.http, &app.url, "old", "ping", "r-1", &body).await, 202);
    assert_eq!(common::post_signed(&app.http, &app.url, "new", "ping", "r-2", &b2).await, 202);
    assert_eq!(common::post_signed(&app.http, &app.url, "other", "ping", "r-3", &unique(&body, "3")).await, 401);
    app.shutdown().await;
}
both_backends!(rotated_secrets_are_all_accepted);

#[derive(sqlx::FromRow, Debug)]
struct Stored {
    event: String,
    action: Option<String>,
    installation_id: Option<i64>,
    repository: Option<String>,
    state: String,
    outcome: Option<String>,
}

async fn every_real_payload_is_stored_and_processed(db: &TestDb) {
    let app = TestApp::start(db, Options::default()).await;
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("SOURCE-package.json"))
        .collect();
    files.sort();
    assert!(files.len() > 150, "fixtures missing: {}", files.len());
    let mut expected = Vec::new();
    let mut seen_bodies = std::collections::HashSet::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let mut parts = name.split('.');
        let event = parts.next().expect("event").to_string();
        let body = std::fs::read_to_string(path).expect("read");
        let v: serde_json::Value = serde_json::from_str(&body).expect("fixture is JSON");
        let id = format!("fixture-{i}");
        let status = app.deliver(&event, &id, &body).await;
        // Two of the corpus files are byte-identical: the second is a replay.
        if seen_bodies.insert(body.clone()) {
            assert_eq!(status, 202, "{name}");
            expected.push((id, event, v));
        } else {
            assert_eq!(status, 200, "{name} is a replay of an earlier file");
        }
    }
    common::drain(&app.db, Duration::from_secs(30)).await;
    for (id, event, v) in expected {
        let row: Stored = sqlx::query_as(
            "SELECT event, action, installation_id, repository, state, outcome FROM deliveries WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(app.db.pool())
        .await
        .expect("stored");
        assert_eq!(row.event, event, "{id}");
        assert_eq!(row.action.as_deref(), v["action"].as_str(), "{id} {event}");
        assert_eq!(row.installation_id, v["installation"]["id"].as_i64(), "{id} {event}");
        assert_eq!(row.repository.as_deref(), v["repository"]["full_name"].as_str(), "{id} {event}");
        assert_eq!(row.state, "done", "{row:?}");
        let handled = Registry::standard().lookup(&event, row.action.as_deref()).is_some();
        let outcome = row.outcome.as_deref().unwrap_or_default();
        if handled {
            assert!(matches!(outcome, "ok" | "ignored"), "{row:?}");
        } else {
            assert_eq!(outcome, "no_handler", "{row:?}");
        }
    }
    // The installation payloads filled the tenancy tables.
    assert!(count(&app.db, "SELECT COUNT(*) FROM installations").await >= 1);
    assert!(count(&app.db, "SELECT COUNT(*) FROM repositories").await >= 1);
    app.shutdown().await;
}
both_backends!(every_real_payload_is_stored_and_processed);

async fn duplicates_and_replays_are_processed_once(db: &TestDb) {
    let app = TestApp::start(db, Options::default()).await;
    let body = fixture("issue_comment.created.1");
    assert_eq!(app.deliver("issue_comment", "dup-1", &body).await, 202);
    assert_eq!(app.deliver("issue_comment", "dup-1", &body).await, 200, "same delivery id");
    assert_eq!(app.deliver("issue_comment", "dup-2", &body).await, 200, "same body, another id");
    // Concurrent copies of one new delivery: exactly one is stored.
    let other = unique(&body, "concurrent");
    let sends = (0..10).map(|_| {
        let (http, url, other) = (app.http.clone(), app.url.clone(), other.clone());
        async move { common::post_signed(&http, &url, common::SECRET, "issue_comment", "dup-3", &other).await }
    });
    let statuses = futures_join(sends).await;
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 202 || *s == 200), "{statuses:?}");
    common::drain(&app.db, Duration::from_secs(10)).await;
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 2);
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM delivery_attempts").await, 2, "each processed once");
    app.shutdown().await;
}
both_backends!(duplicates_and_replays_are_processed_once);

async fn futures_join<F: std::future::Future<Output = u16> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

async fn database_failure_answers_503(db: &TestDb) {
    let app = TestApp::start(db, no_worker()).await;
    let body = fixture("ping.none.1");
    app.db.close().await; // the database goes away
    assert_eq!(app.deliver("ping", "down-1", &body).await, 503);
    let ready = app.http.get(format!("{}/readyz", app.url)).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    app.shutdown().await;
}
both_backends!(database_failure_answers_503);

async fn health_readiness_and_metrics(db: &TestDb) {
    let app = TestApp::start(db, Options::default()).await;
    let get = |p: &str| app.http.get(format!("{}{p}", app.url)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status().as_u16(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status().as_u16(), 200);
    assert_eq!(app.deliver("ping", "m-1", &fixture("ping.none.2")).await, 202);
    assert_eq!(app.deliver("ping", "m-1", &fixture("ping.none.2")).await, 200);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let text = get("/metrics").await.expect("metrics").text().await.expect("text");
    for needle in [
        "shipgate_webhook_deliveries_total{event=\"ping\",outcome=\"stored\"}",
        "shipgate_webhook_deliveries_total{event=\"ping\",outcome=\"duplicate\"}",
        "shipgate_webhook_ingest_seconds_bucket",
        "shipgate_queue_depth{queue=\"inbox\",state=\"pending\"} 0",
        "shipgate_queue_depth{queue=\"inbox\",state=\"parked\"}",
        "shipgate_queue_depth{queue=\"outbox\",state=\"pending\"} 0",
        "shipgate_queue_oldest_open_age_seconds",
        "shipgate_deliveries_processed_total{event=\"ping\",result=\"ok\"}",
        "shipgate_delivery_processing_seconds_bucket",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    app.shutdown().await;
}
both_backends!(health_readiness_and_metrics);

/// One batch, stored by one multi-row INSERT: each row's outcome in order, duplicates and replays
/// within the batch itself, and only the first open row of a subject ready to run.
async fn a_batch_sorts_out_duplicates_replays_and_waiting_rows(db: &TestDb) {
    use shipgate::store::deliveries::{self, InsertOutcome, NewDelivery};
    let db = db.connect().await;
    // The body hash follows the body's length, so that two ids can share a body.
    let d = |id: &str, subject: &str, body: &str| NewDelivery {
        body: body.into(),
        body_key: format!("{:0>64}", body.len()),
        ..common::delivery(id, subject)
    };
    let first = [d("a", "s", "x"), d("a", "s", "xy"), d("b", "t", "x"), d("c", "s", "xyz"), d("e", "u", "xyzw")];
    let out = deliveries::insert_batch(&db, &first.iter().collect::<Vec<_>>()).await.unwrap();
    assert!(matches!(out[0], InsertOutcome::Stored(_)), "{out:?}");
    assert_eq!(out[1], InsertOutcome::Duplicate, "same id in the batch");
    assert_eq!(out[2], InsertOutcome::Replay, "same body under another id");
    assert!(matches!(out[3], InsertOutcome::Stored(_)) && matches!(out[4], InsertOutcome::Stored(_)));
    // A second batch: `s` and `u` have open rows already, `v` does not; `a` again is a duplicate.
    let second = [d("a", "v", "other"), d("f", "s", "12345"), d("g", "v", "123456"), d("h", "u", "1234567")];
    let out2 = deliveries::insert_batch(&db, &second.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!(out2[0], InsertOutcome::Duplicate);
    let blocked: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, blocked FROM deliveries ORDER BY seq").fetch_all(db.pool()).await.unwrap();
    let want: Vec<(String, i64)> =
        [("a", 0), ("c", 1), ("e", 0), ("f", 1), ("g", 0), ("h", 1)].iter().map(|(i, b)| (i.to_string(), *b)).collect();
    assert_eq!(blocked, want, "only the first open row of each subject is ready");
}
both_backends!(a_batch_sorts_out_duplicates_replays_and_waiting_rows);

/// A body's key starts with its latest time, so that new keys land at the end of the unique index;
/// a replay is still refused whatever the batch, and so is the replay of a body stored before keys
/// had times (its row holds the bare SHA-256), by a database upgraded since.
async fn replays_are_refused_under_timed_keys_and_bare_hashes(db: &TestDb) {
    use shipgate::store::deliveries::{self, InsertOutcome, NewDelivery};
    let store = shipgate::store::Db::connect(&db.url).await.expect("connect");
    store.migrate_to(29).await.expect("migrations up to 0029");
    let d = |id: &str, body: &str| NewDelivery {
        body: body.into(),
        body_key: deliveries::body_key(body),
        ..common::delivery(id, &format!("s-{id}"))
    };
    let old = r#"{"action":"completed","check_run":{"completed_at":"2025-01-02T03:04:05Z"}}"#;
    let new = r#"{"action":"completed","check_run":{"completed_at":"2026-12-08T01:02:03Z"}}"#;
    // An older version's row: the bare hash of its body.
    sqlx::query(
        "INSERT INTO deliveries (id, event, subject, received_at, body_sha256, state, next_attempt_at) \
         VALUES ('legacy', 'check_run', 's-legacy', 1, $1, 'done', 1)",
    )
    .bind(deliveries::legacy_hash(&deliveries::body_key(old)))
    .execute(store.writer())
    .await
    .unwrap();
    store.migrate().await.expect("the upgrade");
    // Migration 0030 changes nothing but marks the database, so that an older shipgate, which
    // would store a replayed body under its bare hash again, refuses it (tests/startup.rs).
    let marked: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 30")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(marked.0, 1);
    let db = store;
    let out =
        deliveries::insert_batch(&db, &[&d("x", old), &d("y", new), &d("z", new), &d("legacy", old)]).await.unwrap();
    assert_eq!(out[0], InsertOutcome::Replay, "the body an older version stored, under another id");
    assert!(matches!(out[1], InsertOutcome::Stored(_)), "{out:?}");
    assert_eq!(out[2], InsertOutcome::Replay, "the same body twice in one batch");
    assert_eq!(out[3], InsertOutcome::Duplicate, "the older version's delivery again");
    let out = deliveries::insert_batch(&db, &[&d("w", new), &d("v", old)]).await.unwrap();
    assert_eq!(out, vec![InsertOutcome::Replay, InsertOutcome::Replay], "in a later batch too");
    let keys: Vec<(String, String)> =
        sqlx::query_as("SELECT id, body_sha256 FROM deliveries ORDER BY seq").fetch_all(db.pool()).await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[1], ("y".to_string(), deliveries::body_key(new)));
    assert!(keys[1].1.starts_with("20261208010203:"), "{keys:?}");
}
both_backends!(replays_are_refused_under_timed_keys_and_bare_hashes);

/// A batch tells the intake whether it may have made a row claimable, so that the worker is
/// woken for new heads of subjects and not for rows queued behind an open one.
async fn a_batch_says_whether_it_made_a_row_claimable(db: &TestDb) {
    use shipgate::store::deliveries::{self, NewDelivery};
    let db = db.connect().await;
    let d = common::delivery;
    let ready = |rows: Vec<NewDelivery>| {
        let db = db.clone();
        async move {
            let mut tx = db.begin_write().await.unwrap();
            let ready = deliveries::insert_batch_ready(&mut tx, &rows.iter().collect::<Vec<_>>()).await.unwrap().ready;
            tx.commit().await.unwrap();
            ready
        }
    };
    assert!(ready(vec![d("a", "s"), d("b", "s")]).await, "a is the head of s");
    assert!(!ready(vec![d("c", "s")]).await, "c waits behind a");
    assert!(!ready(vec![d("a", "s")]).await, "a duplicate makes nothing claimable");
    assert!(ready(vec![d("c", "s"), d("e", "t")]).await, "e is the head of t");
    // The batch's first row of u is a duplicate: the row after it, stored as waiting, is readied.
    let mut dup = d("a", "u");
    dup.body_key = "f".repeat(64);
    assert!(ready(vec![dup, d("f", "u")]).await, "f took the skipped row's place as head of u");
    let f: (i64,) = sqlx::query_as("SELECT blocked FROM deliveries WHERE id = 'f'").fetch_one(db.pool()).await.unwrap();
    assert_eq!(f.0, 0);
}
both_backends!(a_batch_says_whether_it_made_a_row_claimable);

/// The intake's group commits have connections of their own: with the pool down to one connection
/// and that one held (a worker busy, a page being read), a batch still commits at once. On
/// PostgreSQL the intake used to take its connections from the pool, so every connection came to
/// hold the batch statements and buffers (docs/benchmarks.md), and a busy pool held the intake up.
/// (On SQLite the intake always had the writer, apart from the readers: there it is a check that
/// it stays so.)
async fn the_intake_does_not_wait_for_the_pool(db: &TestDb) {
    use shipgate::store::{Db, PoolSizes, deliveries};
    db.connect().await; // migrated
    let backend = db.backend;
    let db = Db::connect_with(&db.url, PoolSizes { sqlite_readers: 1, pg_connections: 1 }).await.unwrap();
    // Readiness opens the intake's first connection on PostgreSQL, so that a server with no slot
    // left for it makes the replica unready rather than its intake time out.
    db.ping().await.unwrap();
    let mut busy = db.pool().acquire().await.unwrap();
    if backend == "postgres" {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend'",
        )
        .fetch_one(&mut *busy)
        .await
        .unwrap();
        assert_eq!(open, 2, "the pool's connection and the intake's");
    }
    let mut conn = tokio::time::timeout(Duration::from_secs(3), db.acquire_writer())
        .await
        .expect("the intake waited for the pool's only connection")
        .unwrap();
    for (i, n) in [1usize, 7, 3, 12].into_iter().enumerate() {
        let rows: Vec<_> = (0..n).map(|k| common::delivery(&format!("d{i}-{k}"), &format!("s{}", k % 3))).collect();
        let mut tx = db.begin_on(&mut conn).await.unwrap();
        let out = deliveries::insert_batch_in(&mut tx, &rows.iter().collect::<Vec<_>>()).await.unwrap();
        tx.commit().await.unwrap();
        assert!(out.iter().all(|o| matches!(o, deliveries::InsertOutcome::Stored(_))), "{out:?}");
    }
    let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(stored, 23);
}
both_backends!(the_intake_does_not_wait_for_the_pool);

/// A delivery's body is stored compressed and read back exactly as GitHub sent it.
async fn bodies_are_stored_compressed_and_read_back_exactly(db: &TestDb) {
    let app = TestApp::start(db, Options { run_worker: false, ..Options::default() }).await;
    let body = fixture("issue_comment.created.0");
    assert_eq!(app.deliver("issue_comment", "z-1", &body).await, 202);
    let row = shipgate::store::deliveries::find(&app.db, "z-1").await.unwrap().expect("stored");
    let (text, z): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT body, body_lz4 FROM delivery_bodies WHERE seq = $1")
            .bind(row.seq)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    let z = z.expect("compressed");
    assert!(text.is_empty() && z.len() * 2 < body.len(), "{} compressed bytes for {}", z.len(), body.len());
    assert_eq!(shipgate::store::deliveries::body(&app.db, row.seq).await.unwrap().as_deref(), Some(body.as_str()));
    // A corrupt stored body is an error, not a wrong body.
    assert!(shipgate::store::deliveries::inflate("", Some(&z[..z.len() / 2])).is_err());
    app.shutdown().await;
}
both_backends!(bodies_are_stored_compressed_and_read_back_exactly);

/// The intake's group commit on `db`, on its own: no server, no worker to wake.
fn intake(db: &shipgate::store::Db) -> shipgate::queue::ingest::Ingestor {
    use shipgate::queue::ingest::{Ingestor, Wakes};
    let wakes = Wakes { stored: Default::default(), relay: Default::default() };
    Ingestor::start(db.clone(), shipgate::clock::Clock::system(), wakes)
}

/// The intake's writers keep a connection while deliveries keep coming (taking one from the pool
/// costs round trips) and give it back once they stop: the relay, the scheduler and the API need
/// the pool, and on SQLite the writer pool has one connection.
async fn writers_give_their_connections_back_when_deliveries_stop(db: &TestDb) {
    let db = db.connect().await;
    let ingest = intake(&db);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ingest = ingest.clone();
        tasks.push(tokio::spawn(async move {
            ingest.ingest(common::delivery(&format!("give-back-{i}"), &format!("s{}", i % 7))).await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(shipgate::store::deliveries::InsertOutcome::Stored(_))));
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries").await, 200);
    // Idle: within the hold (10 ms) plus slack, every connection is back in its pool.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let idle = |p: &sqlx::AnyPool| p.num_idle() == p.size() as usize;
        if idle(db.pool()) && idle(db.writer()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections still held: pool {}/{} idle, writer {}/{} idle",
            db.pool().num_idle(),
            db.pool().size(),
            db.writer().num_idle(),
            db.writer().size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
both_backends!(writers_give_their_connections_back_when_deliveries_stop);

/// On SQLite the intake's commits leave copying the WAL into the database file to a checkpointer
/// beside the writer (the writer's own commits do it only past 20,000 WAL pages): the pages of
/// what was stored reach the database file soon after the commits, without any commit doing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_run_beside_the_writer() {
    let tdb = TestDb::sqlite().await;
    let db = tdb.connect().await;
    let (n,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint").fetch_one(db.writer()).await.unwrap();
    assert_eq!(n, 20_000, "the writer's own checkpoints are only a backstop");
    // The migrations' pages first, so that only the deliveries' pages can grow the file below.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(db.writer()).await.unwrap();
    let file = std::path::PathBuf::from(tdb.url.strip_prefix("sqlite://").unwrap());
    let before = std::fs::metadata(&file).unwrap().len();
    let ingest = intake(&db);
    for i in 0..50 {
        let mut d = common::delivery(&format!("ckpt-{i}"), "s");
        d.body = format!("{{\"id\":\"ckpt-{i}\",\"pad\":\"{}\"}}", "x".repeat(4000));
        assert!(matches!(ingest.ingest(d).await, Ok(shipgate::store::deliveries::InsertOutcome::Stored(_))));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = before;
    while after < before + 50 * 4000 {
        assert!(std::time::Instant::now() < deadline, "database file {before} -> {after} bytes: nothing checkpointed");
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = std::fs::metadata(&file).unwrap().len();
    }
}

/// A configuration whose intake time-outs are seconds, so that the cuts can be watched.
fn short_limits(db: &TestDb) -> shipgate::config::Config {
    let mut cfg = db.config();
    cfg.intake.header_timeout = Duration::from_secs(1);
    cfg.intake.idle_timeout = Duration::from_secs(2);
    cfg.intake.body_idle_timeout = Duration::from_secs(1);
    cfg.intake.body_timeout = Duration::from_secs(3);
    cfg
}

/// Reads from `stream` until the server closes it (or 15 s pass); returns what it said and when
/// it closed, counted from `since`.
async fn until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    since: std::time::Instant,
) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = since + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => panic!("still open after 15 s; it said {:?}", String::from_utf8_lossy(&said)),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&said).into_owned(), since.elapsed()),
            Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
        }
    }
}

/// A well-formed signature that matches nothing (a malformed one is refused before the body).
fn wrong_signature() -> String {
    format!("sha256={}", "0".repeat(64))
}

fn webhook_head(len: usize, sig: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: push\r\n\
         x-github-delivery: slow-1\r\nx-hub-signature-256: {sig}\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// SPEC.md §7: half-sent headers, a connection that never speaks, an idle kept-alive connection
/// (at its own, longer time-out), a body that goes silent, and a body that trickles are each cut
/// at their time-out, not later; and a kept-alive connection that starts a request late is
/// held to the header time-out from its first byte.
/// (The network behaviour is the same on both backends: SQLite only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_at_their_time_outs() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite().await;
    let app = TestApp::start_with(short_limits(&db), no_worker()).await;
    let addr = app.server.addr;
    let connect = move || async move { tokio::net::TcpStream::connect(addr).await.expect("connect") };

    let half_headers = tokio::spawn(async move {
        let mut s = connect().await;
        let t = std::time::Instant::now();
        s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: app").await.unwrap();
        until_closed(&mut s, t).await
    });
    let silent = tokio::spawn(async move {
        let mut s = connect().await;
        until_closed(&mut s, std::time::Instant::now()).await
    });
    let kept_alive = tokio::spawn(async move {
        let mut s = connect().await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let t = std::time::Instant::now();
        until_closed(&mut s, t).await
    });
    let late_half_headers = tokio::spawn(async move {
        let mut s = connect().await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await; // idle, under the idle time-out
        let t = std::time::Instant::now();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost:").await.unwrap();
        until_closed(&mut s, t).await
    });
    let silent_body = tokio::spawn(async move {
        let mut s = connect().await;
        s.write_all(webhook_head(1000, &wrong_signature()).as_bytes()).await.unwrap();
        let t = std::time::Instant::now();
        s.write_all(b"{\"a\":").await.unwrap();
        until_closed(&mut s, t).await
    });
    let trickle = tokio::spawn(async move {
        let mut s = connect().await;
        s.write_all(webhook_head(1000, &wrong_signature()).as_bytes()).await.unwrap();
        let t = std::time::Instant::now();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            // A byte every 300 ms: never silent for the idle time-out, never complete.
            while wr.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let closed = until_closed(&mut rd, t).await;
        writer.abort();
        closed
    });

    let (said, after) = half_headers.await.unwrap();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "half-sent headers cut after {after:?}"
    );
    assert!(!said.contains("202"), "{said}");
    let (_, after) = silent.await.unwrap();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "silent connection cut after {after:?}"
    );
    let (said, after) = kept_alive.await.unwrap();
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "idle keep-alive cut after {after:?}"
    );
    let (said, after) = late_half_headers.await.unwrap();
    assert!(said.starts_with("HTTP/1.1 200") && !said.contains("HTTP/1.1 200 OK\r\n\r\nok\nHTTP"), "{said}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "late half-sent headers cut after {after:?}"
    );
    let (said, after) = silent_body.await.unwrap();
    assert!(said.starts_with("HTTP/1.1 408"), "a silent body: {said}");
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5), "silent body cut after {after:?}");
    let (said, after) = trickle.await.unwrap();
    assert!(said.starts_with("HTTP/1.1 408"), "a trickling body: {said}");
    assert!(
        after >= Duration::from_millis(2900) && after < Duration::from_secs(7),
        "trickling body cut after {after:?}"
    );

    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 0);
    app.shutdown().await;
}

/// Unsigned bodies cannot make the App hold more than its budget: a large body that would pass
/// it waits, then gets 503, while a signed delivery (small, so it has a reserve of its own)
/// still gets 202; and every byte is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_bodies_over_the_budget_get_503_while_signed_ones_get_202() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite().await;
    let mut cfg = db.config();
    // 256 KiB: large bodies may hold 192 KiB; bodies of at most 32 KiB have the rest.
    cfg.intake.unverified_bytes = 256 * 1024;
    cfg.intake.budget_wait = Duration::from_millis(300);
    cfg.intake.body_idle_timeout = Duration::from_secs(20);
    let app = TestApp::start_with(cfg, no_worker()).await;
    let addr = app.server.addr;
    let budget = app.server.budget.clone();
    let used_at_least = |n: usize| {
        let budget = budget.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while budget.used() < n {
                assert!(std::time::Instant::now() < deadline, "the budget holds {} bytes, not {n}", budget.used());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    // A: announces 1 MiB, sends 100 KiB, and stalls, holding those 100 KiB of the budget.
    let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
    a.write_all(webhook_head(1 << 20, &wrong_signature()).as_bytes()).await.unwrap();
    a.write_all(&vec![b' '; 100 * 1024]).await.unwrap();
    used_at_least(100 * 1024).await;

    // B: the same, sent at once: 100 KiB more would pass the large bodies' share (192 KiB).
    let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
    b.write_all(webhook_head(1 << 20, &wrong_signature()).as_bytes()).await.unwrap();
    let _ = b.write_all(&vec![b' '; 100 * 1024]).await;
    let (said, _) = until_closed(&mut b, std::time::Instant::now()).await;
    assert!(said.starts_with("HTTP/1.1 503"), "B: {said}");
    assert!(said.contains("try again later"), "B: {said}");

    // A signed delivery goes through meanwhile; an unsigned small one is refused as unsigned.
    let body = fixture("issue_comment.created.0");
    assert!(body.len() <= 32 * 1024);
    assert_eq!(app.deliver("issue_comment", "signed-1", &body).await, 202);
    let unsigned = app
        .http
        .post(format!("{}/webhook", app.url))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "unsigned-1")
        .header("x-hub-signature-256", wrong_signature())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    assert!(budget.used() >= 100 * 1024, "A still holds its bytes");

    // A goes away: every byte comes back.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while budget.used() != 0 {
        assert!(std::time::Instant::now() < deadline, "{} bytes still held", budget.used());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 1);
    app.shutdown().await;
}

/// At most `max_connections` connections are served at once: one more waits (in the kernel's
/// backlog) until a slot is free, here when the header time-out cuts the silent ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::sqlite().await;
    let mut cfg = short_limits(&db);
    cfg.intake.header_timeout = Duration::from_secs(2);
    cfg.intake.max_connections = 2;
    let app = TestApp::start_with(cfg, no_worker()).await;
    let addr = app.server.addr;
    let _held =
        [tokio::net::TcpStream::connect(addr).await.unwrap(), tokio::net::TcpStream::connect(addr).await.unwrap()];
    let t = std::time::Instant::now();
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err(),
        "a third connection was served beside two"
    );
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await.expect("served").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(t.elapsed() >= Duration::from_millis(1900), "served after {:?}", t.elapsed());
    app.shutdown().await;
}

/// Without a webhook secret on an address others can reach (the Dockerfile's 0.0.0.0), the
/// development secret is not accepted: every delivery is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_off_loopback_refuses_even_the_development_secret() {
    let db = TestDb::sqlite().await;
    let vars = [("SHIPGATE_LISTEN", "0.0.0.0:0".to_string()), ("DATABASE_URL", db.url.clone())];
    let cfg = shipgate::config::Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .expect("dry-run config");
    assert!(cfg.webhook_secrets.is_empty());
    let app = TestApp::start_with(cfg, no_worker()).await;
    let body = fixture("issue_comment.created.0");
    let r = app
        .http
        .post(format!("{}/webhook", app.url))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "dev-1")
        .header("x-hub-signature-256", sign("development", body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap().contains("no webhook secret is set (GITHUB_WEBHOOK_SECRET)"));
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM deliveries").await, 0);
    app.shutdown().await;
}

/// A signature that is not `sha256=<64 hex>` is refused before a byte of the body is read (a
/// client announcing a large body gets its 401 at once, holding nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_signature_is_refused_before_the_body() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite().await;
    let app = TestApp::start_with(short_limits(&db), no_worker()).await;
    let mut s = tokio::net::TcpStream::connect(app.server.addr).await.unwrap();
    s.write_all(webhook_head(1 << 20, "sha256=00").as_bytes()).await.unwrap();
    let t = std::time::Instant::now();
    let (said, _) = until_closed(&mut s, t).await;
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    assert!(said.contains("must be sha256=<64 hex digits>"), "{said}");
    assert!(t.elapsed() < Duration::from_millis(900), "answered after {:?}, not at once", t.elapsed());
    app.shutdown().await;
}

/// A client that pipelines requests and never reads the answers is cut once the App has waited
/// for it to read for the send time-out (the body idle time-out), so such clients cannot hold
/// every connection slot. (From an attacker's-eye review.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::sqlite().await;
    let mut cfg = short_limits(&db);
    cfg.intake.max_connections = 2;
    let app = TestApp::start_with(cfg, no_worker()).await;
    let addr = app.server.addr;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let s = sock.connect(addr).await.unwrap();
        let (rd, mut wr) = s.into_split();
        hogs.push(rd);
        tokio::spawn(async move {
            let req = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(200);
            while wr.write_all(&req).await.is_ok() {}
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let served = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await;
    drop(hogs);
    let n = served.expect("non-reading clients still hold every slot").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    app.shutdown().await;
}

/// Bodies are charged the bytes received, not the room a growing buffer reserves: unsigned
/// clients sending just over half of a small body each do not fill the budget twice as fast,
/// and a signed delivery still gets 202. (From an attacker's-eye review.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_small_bodies_are_charged_what_they_sent() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.intake.unverified_bytes = 256 * 1024; // small = 32 KiB
    cfg.intake.budget_wait = Duration::from_millis(300);
    cfg.intake.body_idle_timeout = Duration::from_secs(20);
    let app = TestApp::start_with(cfg, no_worker()).await;
    let addr = app.server.addr;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(webhook_head(32 * 1024, &wrong_signature()).as_bytes()).await.unwrap();
        s.write_all(&vec![b' '; 16 * 1024 + 1]).await.unwrap();
        held.push(s);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.server.budget.used() < 8 * (16 * 1024 + 1) {
        assert!(std::time::Instant::now() < deadline, "budget holds {}", app.server.budget.used());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(app.server.budget.used() < 160 * 1024, "charged {} for 131 KiB received", app.server.budget.used());
    let body = fixture("issue_comment.created.0");
    assert_eq!(app.deliver("issue_comment", "signed-1", &body).await, 202);
    drop(held);
    app.shutdown().await;
}

/// Half-sent requests (a head, a body) do not hold the App's shutdown up beyond their time-outs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_does_not_hold_shutdown_up() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite().await;
    let mut cfg = short_limits(&db);
    cfg.intake.header_timeout = Duration::from_secs(3);
    cfg.intake.body_idle_timeout = Duration::from_secs(30);
    cfg.intake.body_timeout = Duration::from_secs(3);
    let app = TestApp::start_with(cfg, no_worker()).await;
    let mut s = tokio::net::TcpStream::connect(app.server.addr).await.unwrap();
    s.write_all(webhook_head(1000, &wrong_signature()).as_bytes()).await.unwrap();
    s.write_all(b"{").await.unwrap();
    let mut head = tokio::net::TcpStream::connect(app.server.addr).await.unwrap();
    head.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), app.shutdown()).await.expect("shut down in time");
    assert!(t.elapsed() < Duration::from_secs(8), "shutdown took {:?}", t.elapsed());
    drop((s, head));
}

/// The PostgreSQL intake locks a subject's heads (its open rows that are not waiting) after each
/// batch that stored rows behind them (`Queue::ready_headless`). Through the index of every open
/// row that read the subject's whole backlog: on a year's database, one subject's 43,000 waiting
/// deliveries made each batch 23 ms and the intake fell from ~3,600 to ~400 a second. The heads
/// have an index of their own; this checks, with a backlog, that it is the one read.
async fn a_subjects_head_is_found_without_its_backlog(db: &TestDb) {
    use shipgate::store::deliveries::{self, NewDelivery};
    let conn = db.connect().await;
    let rows: Vec<NewDelivery> = (0..2000)
        .map(|i| NewDelivery { body_key: format!("{i:064}"), ..common::delivery(&format!("d{i}"), "repo:1#1") })
        .collect();
    for chunk in rows.chunks(500) {
        deliveries::insert_batch(&conn, &chunk.iter().collect::<Vec<_>>()).await.expect("insert");
    }
    let (waiting,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE blocked = 1").fetch_one(conn.pool()).await.unwrap();
    assert_eq!(waiting, 1999, "one head, the rest waiting behind it");
    sqlx::query("ANALYZE").execute(conn.writer()).await.expect("analyze");
    let heads =
        "SELECT seq FROM deliveries WHERE subject = 'repo:1#1' AND state IN ('pending', 'running') AND blocked = 0";
    let explain = match conn.backend() {
        shipgate::store::Backend::Sqlite => format!("EXPLAIN QUERY PLAN {heads}"),
        shipgate::store::Backend::Postgres => format!("EXPLAIN {heads}"),
    };
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(explain))
        .fetch_all(conn.pool())
        .await
        .expect("explain")
        .iter()
        .map(|r| match conn.backend() {
            shipgate::store::Backend::Sqlite => sqlx::Row::get::<String, _>(r, 3),
            shipgate::store::Backend::Postgres => sqlx::Row::get::<String, _>(r, 0),
        })
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("deliveries_heads"), "a subject's head is found through:\n{plan}");
    // The outbox's queue runs the same statements (empty here, so its plan says nothing).
    let catalog = match conn.backend() {
        shipgate::store::Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'outbox_heads'"
        }
        shipgate::store::Backend::Postgres => "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'outbox_heads'",
    };
    let (n,): (i64,) = sqlx::query_as(catalog).fetch_one(conn.pool()).await.unwrap();
    assert_eq!(n, 1, "the outbox's heads have their index");
}
both_backends!(a_subjects_head_is_found_without_its_backlog);
