//! What `shipgate serve` says when it cannot start: one line naming the variable, its value
//! (never a password) and what to do; exit code 2 for a bad setting, 1 for a database it cannot
//! use. And no colour codes when its output is not a terminal.

mod common;

use std::process::Output;

/// Runs `shipgate serve` with `env` (and nothing inherited that matters) for at most 30 s.
async fn serve(env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    cmd.arg("serve").env("SHIPGATE_LISTEN", format!("127.0.0.1:{}", common::free_port())).env("RUST_LOG", "warn");
    for k in [
        "DATABASE_URL",
        "GITHUB_APP_ID",
        "GITHUB_CLIENT_ID",
        "GITHUB_PRIVATE_KEY",
        "GITHUB_PRIVATE_KEY_PATH",
        "GITHUB_WEBHOOK_SECRET",
        "SHIPGATE_AUDIT_KEY",
        "SHIPGATE_AUDIT_KEY_RETIRED",
        "SHIPGATE_ADMIN_TOKEN",
        "SHIPGATE_METRICS_TOKEN",
        "SHIPGATE_LOG_FORMAT",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("it stops by itself")
        .expect("run shipgate")
}

/// Its stderr, with no colour codes, and its exit code.
fn said(o: &Output) -> (i32, String) {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains('\u{1b}'), "colour codes in output that is not a terminal: {err:?}");
    (o.status.code().unwrap_or(-1), err)
}

const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem");

#[tokio::test]
async fn each_start_up_error_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/no/such/dir/shipgate.db", dir.path().display());
    type Case = (Vec<(&'static str, String)>, i32, String);
    let cases: Vec<Case> = vec![
        (
            vec![("DATABASE_URL", "mysql://app:hunter2@db.example/shipgate".into())],
            2,
            "configuration error: DATABASE_URL: \"mysql://app:***@db.example/shipgate\" is not a database shipgate can \
             use (`mysql://`): use sqlite://PATH (the default is sqlite://shipgate.db) or \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                .into(),
        ),
        (
            vec![("DATABASE_URL", missing.clone())],
            1,
            format!(
                "error: DATABASE_URL={missing}: the directory {}/no/such/dir does not exist: create it, or set \
                 DATABASE_URL to a file in a directory that does",
                dir.path().display()
            ),
        ),
        (
            vec![("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/shipgate".into())],
            1,
            "error: DATABASE_URL=postgres://app:***@127.0.0.1:1/shipgate: cannot connect to PostgreSQL: Connection \
             refused (os error 111) (is it running, and are the host and port right?)"
                .into(),
        ),
        (
            vec![
                ("GITHUB_APP_ID", "1".into()),
                ("GITHUB_PRIVATE_KEY_PATH", KEY.into()),
                ("GITHUB_WEBHOOK_SECRET", "short".into()),
                ("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY.into()),
            ],
            2,
            "configuration error: GITHUB_WEBHOOK_SECRET: a secret of 5 characters is too short with the App's credentials \
             set: use at least 16 random characters (`openssl rand -hex 32`), the same in the App's settings on GitHub"
                .into(),
        ),
        (
            vec![
                ("GITHUB_APP_ID", "1".into()),
                ("GITHUB_PRIVATE_KEY_PATH", KEY.into()),
                ("GITHUB_WEBHOOK_SECRET", "0123456789abcdef0123".into()),
            ],
            2,
            "configuration error: SHIPGATE_AUDIT_KEY: not set: with GitHub App credentials the audit log must be sealed \
             with a key kept outside the database; set it to at least 32 random characters, e.g. `openssl rand -hex \
             32`, and keep it like the private key"
                .into(),
        ),
        (
            vec![("SHIPGATE_SIGNING_KEY_PATH", format!("{}/signing.pem", dir.path().display()))],
            2,
            format!(
                "configuration error: SHIPGATE_SIGNING_KEY_PATH: cannot read \"{}/signing.pem\" (No such file or \
                 directory (os error 2)); point it at the Ed25519 key's PEM file",
                dir.path().display()
            ),
        ),
        (
            vec![("SHIPGATE_SIGNING_KEY_PATH", KEY.into())],
            2,
            "configuration error: SHIPGATE_SIGNING_KEY_PATH: not an Ed25519 private key in PKCS#8 PEM (PKCS#8 ASN.1 error: PEM error: unexpected PEM type label: \
             expecting \"PRIVATE KEY\"); make one \
             with `openssl genpkey -algorithm ed25519`"
                .into(),
        ),
    ];
    for (env, code, want) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got_code, err) = said(&serve(&env).await);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines, vec![want.as_str()], "{env:?}: all it said:\n{err}");
        assert_eq!(got_code, code, "{env:?}: {err}");
        assert!(!err.contains("hunter2"), "a password in the output: {err}");
    }
}

/// A PostgreSQL that answers but has no such database, when one is at hand.
#[tokio::test]
async fn a_missing_postgres_database_is_named() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else { return };
    let url = common::replace_db_name(&url, "shipgate_no_such_database");
    let (code, err) = said(&serve(&[("DATABASE_URL", &url)]).await);
    assert_eq!(code, 1, "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).expect("an error line");
    assert_eq!(
        line,
        format!(
            "error: DATABASE_URL={}: cannot connect to PostgreSQL: database \"shipgate_no_such_database\" does not \
             exist: create it (`createdb`, or CREATE DATABASE as its owner-to-be), or point DATABASE_URL at one that \
             exists",
            shipgate::store::redact_url(&url)
        )
    );
}

/// `url` with its user replaced.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

/// A user that may connect but not create tables (PostgreSQL 15 revokes CREATE on `public`
/// from everyone but the owner), and one the server does not know, when PostgreSQL is at hand.
#[tokio::test]
async fn a_postgres_user_without_rights_is_told_what_to_do() {
    let Some(db) = common::TestDb::postgres("a_postgres_user_without_rights_is_told_what_to_do").await else {
        return;
    };
    use sqlx::Connection;
    let mut admin = sqlx::AnyConnection::connect(&db.url).await.expect("connect");
    let role = format!("shipgate_noperm_{}", std::process::id());
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".into(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("set up the role");
    }
    let url = with_user(&db.url, &role);
    let (code, err) = said(&serve(&[("DATABASE_URL", &url)]).await);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default().to_string();
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        line,
        format!(
            "error: DATABASE_URL={url}: the database schema could not be brought up to date: permission denied for \
             schema public (does DATABASE_URL's user own the database, or may it create tables in it?)"
        )
    );
    let stranger = with_user(&db.url, "shipgate_nobody_knows");
    let (code, err) = said(&serve(&[("DATABASE_URL", &stranger)]).await);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default().to_string();
    assert_eq!(code, 1, "{err}");
    // Trust authentication here: the server says the role does not exist.
    assert!(line.starts_with(&format!("error: DATABASE_URL={stranger}: cannot connect to PostgreSQL: role")), "{line}");
    assert!(
        line.ends_with(": check the user and password in DATABASE_URL, and that pg_hba.conf lets this host in"),
        "{line}"
    );
    drop(admin);
    db.cleanup().await;
    let mut admin = sqlx::AnyConnection::connect(&std::env::var("TEST_DATABASE_URL").unwrap()).await.expect("connect");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}"))).execute(&mut admin).await;
}

/// A PostgreSQL address where something accepts the connection and never answers: said after
/// the 10 s connect time-out, not as a pool's time-out.
#[tokio::test]
async fn a_postgres_that_never_answers_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c); // accepted, read from never, answered never
        }
    });
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/shipgate");
    let started = std::time::Instant::now();
    let (code, err) = said(&serve(&[("DATABASE_URL", &url)]).await);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        lines,
        vec![format!(
            "error: DATABASE_URL=postgres://app:***@127.0.0.1:{port}/shipgate: PostgreSQL did not answer within 10 s: is \
             the host right, and reachable from here?"
        )]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "{:?}", started.elapsed());
}

/// A database a newer shipgate migrated: the line names it and what to do.
#[tokio::test]
async fn a_database_from_a_newer_version_is_named() {
    let db = common::TestDb::sqlite().await;
    let store = db.connect().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (9999, 'from the future', CURRENT_TIMESTAMP, TRUE, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .expect("a migration from the future");
    drop(store);
    let (code, err) = said(&serve(&[("DATABASE_URL", &db.url)]).await);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        lines,
        vec![format!(
            "error: DATABASE_URL={}: the database was migrated by a newer shipgate (migration 9999 is unknown to this \
             version): run that version, or point DATABASE_URL at another database",
            db.url
        )]
    );
}

/// Set by hand on an address others can reach, the dry-run secret does not start the App (SPEC
/// §7: it never accepts webhooks signed with it there); nor does any secret under 16 characters.
#[tokio::test]
async fn the_development_secret_is_refused_off_loopback() {
    let listen = format!("0.0.0.0:{}", common::free_port());
    for (secret, what) in [
        ("development", "`development` is the dry-run secret, for a loopback address only".to_string()),
        ("s3cret", "a secret of 6 characters is too short".to_string()),
    ] {
        let (code, err) = said(&serve(&[("SHIPGATE_LISTEN", &listen), ("GITHUB_WEBHOOK_SECRET", secret)]).await);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(
            lines,
            vec![format!(
                "configuration error: GITHUB_WEBHOOK_SECRET: {what} on {listen}, an address others can reach \
                 (SHIPGATE_LISTEN): use at least 16 random characters (`openssl rand -hex 32`), the same in the App's \
                 settings on GitHub"
            )]
        );
        assert_eq!(code, 2, "{err}");
    }
}

/// A log line written to a file or pipe has no colour codes (checked by `said`), and the dry-run
/// warnings are there.
#[tokio::test]
async fn logs_to_a_pipe_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/no/such/dir/shipgate.db", dir.path().display());
    let (_, err) = said(&serve(&[("DATABASE_URL", &url), ("RUST_LOG", "info")]).await);
    assert!(err.contains("dry-run mode"), "{err}");
}

/// At a terminal the same lines are coloured: `script` gives `serve` a pseudo-terminal (util-linux,
/// on every Debian machine; the test says so if it is missing rather than passing).
#[tokio::test]
async fn logs_to_a_terminal_are_coloured() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/no/such/dir/shipgate.db", dir.path().display());
    let line = format!("{} serve", env!("CARGO_BIN_EXE_shipgate"));
    let out = tokio::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .env("SHIPGATE_LISTEN", format!("127.0.0.1:{}", common::free_port()))
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("SHIPGATE_LOG_FORMAT")
        .output()
        .await
        .expect("NO `script` (util-linux): this test needs it to give the App a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dry-run mode"), "{text}");
    assert!(text.contains("\u{1b}["), "no colour at a terminal: {text:?}");
}

/// A dry-run on a database it can use warns that the audit log is not sealed under a key.
#[tokio::test]
async fn a_dry_run_without_an_audit_key_says_the_log_is_not_sealed() {
    use tokio::io::AsyncBufReadExt;
    let db = common::TestDb::sqlite().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    cmd.arg("serve")
        .env("SHIPGATE_LISTEN", format!("127.0.0.1:{}", common::free_port()))
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env_remove("SHIPGATE_AUDIT_KEY")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("SHIPGATE_LOG_FORMAT")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run shipgate");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("SHIPGATE_AUDIT_KEY is not set: audit entries are chained with a plain SHA-256") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let _ = child.kill().await;
    let line = found.expect("the warning about the audit key");
    assert!(line.contains("WARN") && line.contains("`shipgate audit seal`"), "{line}");
}
