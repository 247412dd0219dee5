//! Process-level tests of the real binary: `kill -9` under load loses no acknowledged delivery and
//! processes each exactly once; two processes on one PostgreSQL never share a delivery.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::free_port;
use common::{SECRET, TestDb, count, fixture, try_post_signed, unique};
use shipgate::store::Db;
use tokio::process::Child;

const CLIENTS: usize = 20;
const PER_CLIENT: usize = 100;

async fn spawn(db_url: &str, port: u16) -> Child {
    common::spawn_binary(db_url, port, &[]).await
}

/// 20 clients send 100 unique deliveries each, to `ports` in turn, retrying (as GitHub's
/// redelivery would) until each is acknowledged. Returns the acknowledged delivery ids.
async fn flood(ports: Arc<Mutex<Vec<u16>>>, acked: Arc<AtomicUsize>) -> HashSet<String> {
    let base = fixture("issue_comment.created.0");
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (ports, acked, base) = (ports.clone(), acked.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
            let mut mine = Vec::new();
            for k in 0..PER_CLIENT {
                let id = format!("proc-{c}-{k}");
                let mut v: serde_json::Value = serde_json::from_str(&unique(&base, &id)).expect("json");
                v["issue"]["number"] = serde_json::json!((c * PER_CLIENT + k) % 50);
                let body = v.to_string();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                let mut attempt = 0usize;
                loop {
                    let port = {
                        let p = ports.lock().expect("ports");
                        p[(c + attempt) % p.len()]
                    };
                    let url = format!("http://127.0.0.1:{port}");
                    // A refused or reset connection means the process is gone: try again.
                    let ok = try_post_signed(&http, &url, SECRET, "issue_comment", &id, &body)
                        .await
                        .is_ok_and(|s| (200..300).contains(&s));
                    if ok {
                        acked.fetch_add(1, Ordering::SeqCst);
                        mine.push(id);
                        break;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "{id} never acknowledged");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all
}

async fn wait_processed(db: &Db) {
    common::drain(db, Duration::from_secs(90)).await;
}

/// Every acknowledged delivery is stored and done, and processed exactly once.
async fn check_exactly_once(db: &Db, acked: &HashSet<String>) {
    assert_eq!(acked.len(), CLIENTS * PER_CLIENT);
    let ids: Vec<(String, String)> =
        sqlx::query_as("SELECT id, state FROM deliveries").fetch_all(db.pool()).await.expect("ids");
    let stored: HashSet<&String> = ids.iter().map(|(i, _)| i).collect();
    for id in acked {
        assert!(stored.contains(id), "acknowledged delivery {id} was lost");
    }
    assert!(ids.iter().all(|(_, s)| s == "done"), "not all done");
    assert_eq!(ids.len(), acked.len(), "something was stored twice or from nowhere");
    let completions = count(db, "SELECT COUNT(*) FROM delivery_attempts WHERE outcome <> 'error'").await;
    assert_eq!(completions as usize, acked.len(), "a delivery was completed twice or never");
    let twice = count(
        db,
        "SELECT COUNT(*) FROM (SELECT delivery_seq FROM delivery_attempts WHERE outcome <> 'error' \
         GROUP BY delivery_seq HAVING COUNT(*) > 1) x",
    )
    .await;
    assert_eq!(twice, 0);
}

/// No two attempts of one subject overlap in time (they ran one at a time, across processes).
async fn check_subjects_serial(db: &Db) {
    let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT d.subject, a.started_at, a.finished_at, a.worker FROM delivery_attempts a \
         JOIN deliveries d ON d.seq = a.delivery_seq ORDER BY d.subject, a.started_at",
    )
    .fetch_all(db.pool())
    .await
    .expect("attempts");
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[1].1 >= w[0].2, "two deliveries of {} overlapped: {w:?}", w[0].0);
        }
    }
}

async fn kill_9_under_load_loses_nothing(db: &TestDb) {
    let port = free_port();
    let mut child = spawn(&db.url, port).await;
    let ports = Arc::new(Mutex::new(vec![port]));
    let acked = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn(flood(ports.clone(), acked.clone()));
    // Part-way through: kill -9, then start again on the same database and port.
    while acked.load(Ordering::SeqCst) < 700 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reaped");
    let at_kill = acked.load(Ordering::SeqCst);
    let mut child = spawn(&db.url, port).await;
    let acked_ids = flood.await.expect("flood");
    assert!(at_kill < CLIENTS * PER_CLIENT, "the kill came after the load");
    let dbc = db.connect().await;
    wait_processed(&dbc).await;
    check_exactly_once(&dbc, &acked_ids).await;
    check_subjects_serial(&dbc).await;
    dbc.close().await;
    child.start_kill().expect("stop");
    let _ = child.wait().await;
}
both_backends!(kill_9_under_load_loses_nothing);

async fn two_processes_share_the_work_and_survive_one_dying(db: &TestDb) {
    let (pa, pb) = (free_port(), free_port());
    let mut a = spawn(&db.url, pa).await;
    let mut b = spawn(&db.url, pb).await;
    let ports = Arc::new(Mutex::new(vec![pa, pb]));
    let acked = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn(flood(ports.clone(), acked.clone()));
    while acked.load(Ordering::SeqCst) < 1000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One replica dies; the load goes to the other, which also takes over the dead one's leases.
    a.start_kill().expect("kill -9");
    a.wait().await.expect("reaped");
    ports.lock().expect("ports").retain(|p| *p != pa);
    let acked_ids = flood.await.expect("flood");
    let dbc = db.connect().await;
    wait_processed(&dbc).await;
    check_exactly_once(&dbc, &acked_ids).await;
    check_subjects_serial(&dbc).await;
    assert_eq!(count(&dbc, "SELECT COUNT(DISTINCT worker) FROM delivery_attempts").await, 2, "both processes worked");
    dbc.close().await;
    b.start_kill().expect("stop");
    let _ = b.wait().await;
}
both_backends!(two_processes_share_the_work_and_survive_one_dying);
