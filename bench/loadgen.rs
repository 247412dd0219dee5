//! Load generator for the webhook intake benchmark (`bench/ingest.sh`).
//!
//! N keep-alive connections, each sending one request after another. Every request gets its own
//! body (leading `"nonce":"…"` and `"sent_at":"<UTC time to the second>"` fields inserted after
//! the payload's opening `{`: GitHub's bodies carry their event's time, which the App's key for a
//! body starts with, and the payload's own are years old), its own `X-GitHub-Delivery` id and its
//! own `X-Hub-Signature-256`, so a receiver that deduplicates by id or by body has to take its
//! durable path for every request. The ids count up per connection (`--ids counter`, the
//! default), or are shaped as GitHub's (`--ids github`: version-1 UUIDs, whose leading group
//! changes fastest, so they land all over an index of ids).
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:18400/webhook \
//!     --secret bench-secret-123 --connections 50 --duration 10 --warmup 2
//! ```
//!
//! Prints one line: `JSON {"rps":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"requests":..,
//! "non2xx":..,"errors":..,...}`. Latencies and `requests` cover only the measured window (after
//! the warmup); `sent_total`, `acked_total` (2xx), `status_total` (by code) and `errors_total` cover the
//! whole run including the warmup, so that a caller can check what a receiver stored. `rps`
//! counts 2xx answers to requests started in the measured window. `cpu_ticks` is the generator's
//! own CPU time (user + system, in clock ticks) so that a caller can tell its share of the machine.
//! `--threads 1` (the default) runs all connections on one thread: the generator shares the
//! machine with the receiver and should take as little of it as it can.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderName, HeaderValue};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const USAGE: &str = "usage: loadgen --url URL [--secret S] [--connections N] [--duration SECS] \
[--warmup SECS] [--payload FILE] [--threads T] [--event NAME] [--timeout SECS] [--ids counter|github]";

struct Args {
    url: String,
    secret: String,
    connections: usize,
    duration: f64,
    warmup: f64,
    payload: PathBuf,
    threads: usize,
    event: String,
    timeout: f64,
    /// `--ids github`: delivery ids shaped as GitHub's ([`github_id`]); else [`delivery_id`].
    github_ids: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        secret: "bench-secret-123".into(),
        connections: 50,
        duration: 10.0,
        warmup: 2.0,
        payload: PathBuf::from("../shared/bench/payload.json"),
        threads: 1,
        event: "issue_comment".into(),
        timeout: 30.0,
        github_ids: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{name}: {v:?} is not a number"))
        };
        match name.as_str() {
            "--url" => a.url = value()?,
            "--secret" => a.secret = value()?,
            "--connections" | "-c" => a.connections = num(value()?)? as usize,
            "--duration" | "-d" => a.duration = num(value()?)?,
            "--warmup" => a.warmup = num(value()?)?,
            "--payload" => a.payload = PathBuf::from(value()?),
            "--threads" => a.threads = num(value()?)? as usize,
            "--event" => a.event = value()?,
            "--timeout" => a.timeout = num(value()?)?,
            "--ids" => {
                a.github_ids = match value()?.as_str() {
                    "counter" => false,
                    "github" => true,
                    v => return Err(format!("--ids: {v:?} is not counter or github")),
                }
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    if a.connections == 0 || a.duration <= 0.0 {
        return Err("--connections and --duration must be positive".into());
    }
    a.threads = a.threads.max(1);
    Ok(a)
}

/// What one connection saw.
#[derive(Default)]
struct ConnStats {
    /// Latencies of the requests sent in the measured window, in microseconds.
    lat_us: Vec<u32>,
    /// Measured window: 2xx, non-2xx, transport errors.
    ok: u64,
    non2xx: u64,
    errors: u64,
    /// Whole run, warmup included.
    sent_total: u64,
    /// Whole run: answers by status code.
    status_total: BTreeMap<u16, u64>,
    errors_total: u64,
    /// Completion time of the last measured request.
    last_done: Option<Instant>,
}

/// The payload split at its opening brace: body = `{"nonce":"<id>","sent_at":"<time>",` + rest.
struct Template {
    rest: Vec<u8>,
}

impl Template {
    fn new(payload: &[u8]) -> Result<Template, String> {
        let start = payload.iter().position(|b| !b.is_ascii_whitespace()).ok_or("the payload is empty")?;
        if payload[start] != b'{' {
            return Err("the payload must be a JSON object".into());
        }
        let rest = payload[start + 1..].to_vec();
        let after = rest.iter().find(|b| !b.is_ascii_whitespace());
        if after == Some(&b'}') {
            return Err("the payload must be a non-empty JSON object".into());
        }
        Ok(Template { rest })
    }

    fn body(&self, nonce: &str) -> Vec<u8> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let sent_at = chrono::DateTime::from_timestamp(now as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let mut b = Vec::with_capacity(self.rest.len() + nonce.len() + sent_at.len() + 32);
        b.extend_from_slice(b"{\"nonce\":\"");
        b.extend_from_slice(nonce.as_bytes());
        b.extend_from_slice(b"\",\"sent_at\":\"");
        b.extend_from_slice(sent_at.as_bytes());
        b.extend_from_slice(b"\",");
        b.extend_from_slice(&self.rest);
        b
    }
}

/// A GUID-shaped delivery id, unique per run (`run`) and request (`conn`, `seq`).
fn delivery_id(run: u64, conn: usize, seq: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (run >> 32) as u32,
        (run >> 16) as u16,
        run as u16,
        conn as u16,
        seq & 0xffff_ffff_ffff
    )
}

/// A delivery id as GitHub makes them: a version-1 UUID (`0b989ba4-242f-11e5-81e1-c7b6966d2516`
/// in GitHub's OpenAPI description), whose first group is the low 32 bits of its time in 100 ns
/// steps, so consecutive ids are far apart in an index, in a band that sweeps the whole range every
/// 7 minutes. `last` (this connection's previous time) keeps them unique; the clock sequence is
/// the connection, the node the run.
fn github_id(run: u64, conn: usize, last: &mut u64) -> String {
    // 100 ns steps from 1582-10-15 to 1970-01-01.
    const GREGORIAN: u64 = 0x01B2_1DD2_1381_4000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let t = (now / 100 + GREGORIAN).max(*last + 1);
    *last = t;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        t as u32,
        (t >> 32) as u16,
        ((t >> 48) as u16 & 0x0fff) | 0x1000,
        (conn as u16 & 0x3fff) | 0x8000,
        run & 0xffff_ffff_ffff
    )
}

fn signature(key: &HmacSha256, body: &[u8]) -> String {
    let mut mac = key.clone();
    mac.update(body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    out.push_str(&hex::encode(mac.finalize().into_bytes()));
    out
}

struct Shared {
    url: reqwest::Url,
    event: HeaderValue,
    key: HmacSha256,
    template: Template,
    run: u64,
    github_ids: bool,
    measure_from: Instant,
    stop_at: Instant,
    timeout: Duration,
}

const H_EVENT: HeaderName = HeaderName::from_static("x-github-event");
const H_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
const H_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");

async fn connection(sh: Arc<Shared>, conn: usize) -> ConnStats {
    // One client per connection: its pool holds this connection's one keep-alive socket.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(sh.timeout)
        .build()
        .expect("HTTP client");
    let mut st = ConnStats::default();
    let mut seq = 0u64;
    let mut last_time = 0u64;
    let mut logged = false;
    loop {
        let t0 = Instant::now();
        if t0 >= sh.stop_at {
            break;
        }
        let id = if sh.github_ids { github_id(sh.run, conn, &mut last_time) } else { delivery_id(sh.run, conn, seq) };
        seq += 1;
        let body = sh.template.body(&id);
        let sig = signature(&sh.key, &body);
        // Names and constant values are built once; only the id and the signature are new.
        let res = client
            .post(sh.url.clone())
            .header(H_EVENT, sh.event.clone())
            .header(H_DELIVERY, HeaderValue::from_str(&id).expect("ASCII id"))
            .header(H_SIGNATURE, HeaderValue::from_str(&sig).expect("ASCII signature"))
            .header(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(reqwest::header::USER_AGENT, HeaderValue::from_static("GitHub-Hookshot/bench"))
            .header(reqwest::header::ACCEPT, HeaderValue::from_static("*/*"))
            .body(body)
            .send()
            .await;
        // Read the whole answer so that the connection is reused.
        let outcome = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(text) => Ok((status, text)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let t1 = Instant::now();
        st.sent_total += 1;
        let measured = t0 >= sh.measure_from;
        match outcome {
            Ok((status, text)) => {
                *st.status_total.entry(status).or_default() += 1;
                let ok = (200..300).contains(&status);
                if !ok && !logged {
                    logged = true;
                    eprintln!("loadgen: connection {conn}: HTTP {status}: {}", String::from_utf8_lossy(&text).trim());
                }
                if measured {
                    if ok {
                        st.ok += 1;
                    } else {
                        st.non2xx += 1;
                    }
                }
            }
            Err(e) => {
                st.errors_total += 1;
                if !logged {
                    logged = true;
                    eprintln!("loadgen: connection {conn}: {e}");
                }
                if measured {
                    st.errors += 1;
                }
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if measured {
            let us = (t1 - t0).as_micros().min(u32::MAX as u128) as u32;
            st.lat_us.push(us);
            st.last_done = Some(t1);
        }
    }
    st
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

/// utime + stime of this process, in clock ticks (Linux `/proc/self/stat`; 0 elsewhere).
fn own_cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let payload = match std::fs::read(&args.payload) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: cannot read {}: {e}", args.payload.display());
            std::process::exit(2);
        }
    };
    let template = match Template::new(&payload) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {}: {e}", args.payload.display());
            std::process::exit(2);
        }
    };
    // Self-check: the inserted field keeps the body valid JSON, and `sign` agrees with ours.
    let probe = template.body("probe");
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&probe) {
        eprintln!("loadgen: the payload with a nonce is not valid JSON: {e}");
        std::process::exit(2);
    }
    let key = HmacSha256::new_from_slice(args.secret.as_bytes()).expect("HMAC takes any key");
    assert_eq!(
        signature(&key, &probe),
        shipgate::github::signature::sign(&args.secret, &probe),
        "signature self-check"
    );

    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    }
    .expect("tokio runtime");

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let run = nanos ^ ((std::process::id() as u64) << 40);

    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(args.duration);
    let url = match reqwest::Url::parse(&args.url) {
        Ok(u) if u.scheme() == "http" => u,
        Ok(u) => {
            eprintln!("loadgen: {u}: only http:// is supported (no TLS)");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("loadgen: --url {:?}: {e}", args.url);
            std::process::exit(2);
        }
    };
    let Ok(event) = HeaderValue::from_str(&args.event) else {
        eprintln!("loadgen: --event {:?} is not a header value", args.event);
        std::process::exit(2);
    };
    let shared = Arc::new(Shared {
        url,
        event,
        key,
        template,
        run,
        github_ids: args.github_ids,
        measure_from,
        stop_at,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
    });

    let stats: Vec<ConnStats> = rt.block_on(async {
        let tasks: Vec<_> = (0..args.connections).map(|c| tokio::spawn(connection(shared.clone(), c))).collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("connection task"));
        }
        out
    });

    let mut lat: Vec<u32> = Vec::with_capacity(stats.iter().map(|s| s.lat_us.len()).sum());
    let (mut ok, mut non2xx, mut errors) = (0u64, 0u64, 0u64);
    let (mut sent_total, mut errors_total) = (0u64, 0u64);
    let mut status_total: BTreeMap<u16, u64> = BTreeMap::new();
    let mut last_done = measure_from;
    for s in &stats {
        lat.extend_from_slice(&s.lat_us);
        ok += s.ok;
        non2xx += s.non2xx;
        errors += s.errors;
        sent_total += s.sent_total;
        errors_total += s.errors_total;
        for (code, n) in &s.status_total {
            *status_total.entry(*code).or_default() += n;
        }
        if let Some(t) = s.last_done {
            last_done = last_done.max(t);
        }
    }
    lat.sort_unstable();
    let requests = lat.len() as u64;
    // Requests started in the window; the last ones finish a little after it closes.
    let window = (last_done - measure_from).as_secs_f64().max(args.duration).max(1e-9);
    let rps = ok as f64 / window;
    let mean_ms =
        if lat.is_empty() { 0.0 } else { lat.iter().map(|&u| u as f64).sum::<f64>() / lat.len() as f64 / 1000.0 };
    let acked_total: u64 = status_total.iter().filter(|(c, _)| (200..300).contains(*c)).map(|(_, n)| n).sum();
    let status_json: serde_json::Map<String, serde_json::Value> =
        status_total.iter().map(|(c, n)| (c.to_string(), serde_json::Value::from(*n))).collect();
    let out = serde_json::json!({
        "rps": (rps * 10.0).round() / 10.0,
        "p50_ms": round3(percentile_ms(&lat, 50.0)),
        "p90_ms": round3(percentile_ms(&lat, 90.0)),
        "p99_ms": round3(percentile_ms(&lat, 99.0)),
        "max_ms": round3(lat.last().map(|&u| u as f64 / 1000.0).unwrap_or(0.0)),
        "mean_ms": round3(mean_ms),
        "requests": requests,
        "non2xx": non2xx,
        "errors": errors,
        "connections": args.connections,
        "duration_s": round3(window),
        "sent_total": sent_total,
        "acked_total": acked_total,
        "status_total": status_json,
        "errors_total": errors_total,
        "cpu_ticks": own_cpu_ticks(),
    });
    println!("JSON {out}");
}
