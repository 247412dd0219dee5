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
            "configuration error: GITHUB_WEBHOOK_SECRET: a secret of 5 characters is too short: use at least 16 random \
             characters (`openssl rand -hex 32`), the same in the App's settings on GitHub"
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
            "error: DATABASE_URL={}: cannot connect to PostgreSQL: database \"shipgate_no_such_database\" does not exist",
            shipgate::store::redact_url(&url)
        )
    );
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
