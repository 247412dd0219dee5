//! Unsigned clients that try to make the App hold memory or connections (issue 15, `bench/flood.sh`).
//!
//! Each client runs one behaviour over and over, reconnecting whenever the App cuts it:
//!
//! * `big`: announces a 20 MiB webhook body and sends it slowly (64 KiB every 100 ms);
//! * `oversized`: announces 100 MiB (refused on the declared length) and starts sending anyway;
//! * `slowhead`: sends its request headers one byte a second;
//! * `trickle`: complete headers, then one body byte every 500 ms;
//! * `idle`: connects and says nothing.
//!
//! ```text
//! flood --addr 127.0.0.1:18490 --mix big=60 --duration 20
//! flood --addr 127.0.0.1:18490 --mix big=25,oversized=25,slowhead=25,trickle=25 --duration 20
//! ```
//!
//! Prints `JSON {"connections":..,"answers":{"503":..,..},"closed_without_answer":..}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Default)]
struct Tally {
    connections: u64,
    answers: BTreeMap<String, u64>,
    closed_without_answer: u64,
}

fn head(len: u64) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: push\r\n\
         x-github-delivery: flood\r\nx-hub-signature-256: sha256=0000000000000000000000000000000000000000000000000000000000000000\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// One connection's life: write as the behaviour says until the App answers or closes.
async fn once(addr: SocketAddr, kind: &str, until: Instant) -> Option<String> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut rd, mut wr) = stream.into_split();
    let kind = kind.to_string();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        match kind.as_str() {
            "big" => {
                wr.write_all(head(20 << 20).as_bytes()).await?;
                loop {
                    wr.write_all(&chunk).await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            "oversized" => {
                wr.write_all(head(100 << 20).as_bytes()).await?;
                loop {
                    wr.write_all(&chunk).await?;
                }
            }
            "slowhead" => {
                for b in head(1000).bytes() {
                    wr.write_all(&[b]).await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            "trickle" => {
                wr.write_all(head(1 << 20).as_bytes()).await?;
                loop {
                    wr.write_all(b" ").await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<(), std::io::Error>(())
    });
    let mut buf = [0u8; 512];
    let mut said = Vec::new();
    let answer = loop {
        match tokio::time::timeout_at(until.into(), rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(String::new()),
            Ok(Ok(n)) => {
                said.extend_from_slice(&buf[..n]);
                if said.windows(4).any(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&said);
                    break Some(text.split_whitespace().nth(1).unwrap_or("?").to_string());
                }
            }
        }
    };
    writer.abort();
    answer
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut addr: Option<SocketAddr> = None;
    let mut mix = String::from("big=60");
    let mut duration = 20.0f64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(v.parse().expect("--addr HOST:PORT")),
            "--mix" => mix = v,
            "--duration" => duration = v.parse().expect("--duration SECS"),
            _ => panic!("usage: flood --addr HOST:PORT [--mix big=60,...] [--duration SECS]"),
        }
    }
    let addr = addr.expect("--addr is required");
    let until = Instant::now() + Duration::from_secs_f64(duration);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = Vec::new();
    for part in mix.split(',') {
        let (kind, n) = part.split_once('=').expect("--mix KIND=N,...");
        for _ in 0..n.parse::<usize>().expect("a number of clients") {
            let (kind, tally) = (kind.to_string(), tally.clone());
            clients.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let answer = once(addr, &kind, until).await;
                    {
                        let mut t = tally.lock().unwrap();
                        t.connections += 1;
                        match answer {
                            Some(s) if s.is_empty() => t.closed_without_answer += 1,
                            Some(s) => *t.answers.entry(s).or_default() += 1,
                            None => {}
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
    }
    for c in clients {
        let _ = c.await;
    }
    let t = tally.lock().unwrap();
    let answers: Vec<String> = t.answers.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "JSON {{\"connections\":{},\"answers\":{{{}}},\"closed_without_answer\":{}}}",
        t.connections,
        answers.join(","),
        t.closed_without_answer
    );
}
