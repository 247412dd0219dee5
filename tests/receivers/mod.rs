//! What notifications reach, for the tests: a local HTTP receiver standing in for Slack's
//! incoming webhooks (it records each POST, and can answer an error), and a real SMTP server,
//! Debian's aiosmtpd, with a handler that writes each message it accepts, decoded by Python's
//! own `email` package, to a directory as JSON.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

#[derive(Default)]
struct Hooks {
    /// Every POST by hook name: (status answered, body).
    posts: BTreeMap<String, Vec<(u16, String)>>,
    /// Hooks that answer this status instead of 200.
    failing: BTreeMap<String, u16>,
}

/// Slack's incoming webhooks, on a random local port: `{url}/hooks/NAME`.
#[derive(Clone)]
pub struct SlackReceiver {
    pub url: String,
    hooks: Arc<Mutex<Hooks>>,
}

async fn hook(State(hooks): State<Arc<Mutex<Hooks>>>, Path(name): Path<String>, body: String) -> (StatusCode, String) {
    let mut h = hooks.lock().unwrap_or_else(|p| p.into_inner());
    let status = h.failing.get(&name).copied().unwrap_or(200);
    h.posts.entry(name).or_default().push((status, body));
    let text = if status == 200 { "ok" } else { "internal_error" };
    (StatusCode::from_u16(status).expect("status"), text.to_string())
}

impl SlackReceiver {
    pub async fn start() -> SlackReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Slack receiver");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hooks = Arc::new(Mutex::new(Hooks::default()));
        let app = axum::Router::new().route("/hooks/{name}", axum::routing::post(hook)).with_state(hooks.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackReceiver { url, hooks }
    }

    /// The webhook URL of channel `name` (what `SHIPGATE_SLACK_WEBHOOKS` maps it to).
    pub fn hook_url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.url)
    }

    /// From now on, `name` answers `status`.
    pub fn fail(&self, name: &str, status: u16) {
        self.hooks.lock().unwrap().failing.insert(name.to_string(), status);
    }

    /// The messages `name` accepted (200), as JSON.
    pub fn messages(&self, name: &str) -> Vec<Value> {
        let h = self.hooks.lock().unwrap();
        h.posts
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| serde_json::from_str(b).expect("Slack gets JSON"))
            .collect()
    }

    /// How many POSTs `name` received, answered or not.
    pub fn attempts(&self, name: &str) -> usize {
        self.hooks.lock().unwrap().posts.get(name).map_or(0, Vec::len)
    }

    /// Waits until `name` accepted at least `n` messages, or panics after `timeout`.
    pub async fn wait_for(&self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.messages(name);
            if m.len() >= n {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "Slack channel {name} got {} of {n} messages", m.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The aiosmtpd handler: each message accepted is written as `NNNN.json` with its envelope and
/// its headers and plain-text body decoded (RFC 2047 subjects, quoted-printable bodies).
const HANDLER: &str = r#"
import email, json, os
from email import policy

class Capture:
    def __init__(self, out):
        self.out = out
        self.n = 0

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("Capture needs the output directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)
        part = msg.get_body(preferencelist=("plain",))
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "content_type": msg.get_content_type(),
            "body": part.get_content() if part is not None else "",
            "raw": raw.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
        }
        tmp = os.path.join(self.out, ".%04d.json" % self.n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, "%04d.json" % self.n))
        return "250 OK"
"#;

/// A real SMTP server (`/usr/bin/python3 -m aiosmtpd`) on a free local port. A test that needs it
/// and cannot start it fails, saying what is missing: it never passes without it.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: tokio::process::Child,
}

/// A test CA and a certificate it signed for 127.0.0.1 (made with the `openssl` command):
/// (CA certificate, server certificate, server key), PEM files in `dir`.
pub fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("the STARTTLS test makes its certificates with the openssl command ({e})"));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext file");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=shipgate test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_with(&[]).await
    }

    /// A server that offers STARTTLS with `cert` and `key`, and takes no mail before it.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> SmtpServer {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        SmtpServer::start_with(&["--tlscert", &cert, "--tlskey", &key]).await
    }

    async fn start_with(extra: &[&str]) -> SmtpServer {
        const PYTHON: &str = "/usr/bin/python3";
        let missing = "the end-to-end e-mail test needs a real SMTP server: Debian's python3-aiosmtpd for \
                       /usr/bin/python3 (apt-get install python3-aiosmtpd)";
        assert!(std::path::Path::new(PYTHON).exists(), "{PYTHON} does not exist: {missing}");
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).expect("mail dir");
        std::fs::write(dir.path().join("shipgate_capture.py"), HANDLER).expect("handler");
        let port = crate::common::free_port();
        let mut child = tokio::process::Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["-c", "shipgate_capture.Capture"])
            .arg(&out)
            .env("PYTHONPATH", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON} ({e}): {missing}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                panic!("the SMTP server stopped at once ({status}): {err}\n{missing}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the SMTP server did not listen on {port}: {missing}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer { port, dir, child }
    }

    /// `SHIPGATE_SMTP_URL` for it (STARTTLS when offered, which it does not).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The messages it accepted, in order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out())
            .expect("mail dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")).collect()
    }

    /// Waits until it accepted at least `n` messages, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "the SMTP server got {} of {n} messages", m.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
