//! The HTTP client's floor: what the same checks cost with nothing of aegis around them. The bench runs itself again
//! as a child process (`probe_cost --floor KIND PORT SERVICES INTERVAL_MS`) that, like aegis-host, has one task per
//! service ticking on the interval (evenly spread phases) and sends one keep-alive `GET /health` per tick to the
//! bench's server, on a multi-threaded tokio runtime with the default worker count, as aegis-host runs. No breaker,
//! no timeouts, no metrics, no history, no logging: the difference between aegis-host and this child is ours.
//!
//! Two kinds:
//! - `reqwest`: the client aegis-host probes with (same builder, same pooled keep-alive connections);
//! - `tcp`: a connection per service and a hand-written request and response parse on tokio's `TcpStream`, the
//!   kernel's and the runtime's share alone (loopback TCP, wake-ups, timers).
//!
//! The parent reads the counts: each line it writes to the child's stdin is answered with the number of requests
//! answered with a 2xx so far and the number that failed (an error or another status).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The floor clients, as named on the child's command line and in the bench's table.
pub const KINDS: [&str; 2] = ["reqwest", "tcp"];

/// A running floor client, killed when dropped.
pub struct Floor {
    child: Child,
    ask: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Floor {
    /// Starts the bench's own executable as a `kind` floor client of `services` services every `interval`.
    pub fn start(kind: &str, port: u16, services: u64, interval: Duration) -> Option<Floor> {
        let mut child = Command::new(std::env::current_exe().ok()?)
            .args(["--floor", kind, &port.to_string(), &services.to_string(), &interval.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let (ask, answers) = (child.stdin.take()?, BufReader::new(child.stdout.take()?));
        Some(Floor { child, ask, answers })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Requests answered with a 2xx so far, and requests failed; zeros when the child does not answer.
    pub fn counts(&mut self) -> (f64, f64) {
        let mut line = String::new();
        if writeln!(self.ask).and_then(|()| self.ask.flush()).is_err() || self.answers.read_line(&mut line).is_err() {
            return (0.0, 0.0);
        }
        let mut counts = line.split_whitespace().map(|n| n.parse().unwrap_or(0.0));
        (counts.next().unwrap_or(0.0), counts.next().unwrap_or(0.0))
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's side: runs the clients until stdin closes. `args`: KIND PORT SERVICES INTERVAL_MS.
pub fn run(args: &[String]) {
    let [kind, port, services, interval] = args else {
        eprintln!("probe_cost --floor: want KIND PORT SERVICES INTERVAL_MS, got {args:?}");
        std::process::exit(2);
    };
    let (Ok(port), Ok(services), Ok(interval)) = (port.parse::<u16>(), services.parse::<u64>(), interval.parse())
    else {
        eprintln!("probe_cost --floor: PORT, SERVICES and INTERVAL_MS are numbers, got {args:?}");
        std::process::exit(2);
    };
    let interval = Duration::from_millis(interval);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = match kind.as_str() {
        "reqwest" => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(reqwest::Client::builder().user_agent("aegis-host/floor").build().expect("reqwest client"))
        }
        "tcp" => None,
        other => {
            eprintln!("probe_cost --floor: unknown kind {other:?} (one of {KINDS:?})");
            std::process::exit(2);
        }
    };
    let _runtime = runtime.enter();
    let start = tokio::time::Instant::now();
    for i in 0..services {
        let phase = interval.mul_f64(i as f64 / services.max(1) as f64);
        let mut ticker = tokio::time::interval_at(start + phase, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (ok, failed, client) = (Arc::clone(&ok), Arc::clone(&failed), client.clone());
        runtime.spawn(async move {
            match client {
                Some(client) => {
                    let url = format!("http://127.0.0.1:{port}/health");
                    loop {
                        ticker.tick().await;
                        let answered = client.get(&url).send().await.is_ok_and(|r| r.status().is_success());
                        if answered { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    let mut conn = None;
                    let mut buf = Vec::with_capacity(256);
                    loop {
                        ticker.tick().await;
                        if conn.is_none() {
                            conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok();
                        }
                        let answered = match conn.as_mut() {
                            Some(c) => get(c, &mut buf).await.unwrap_or(false),
                            None => false,
                        };
                        if !answered {
                            conn = None;
                        }
                        if answered { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        println!("{} {}", ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    }
}

/// One `GET /health` on a kept-alive connection: whether the answer was a 2xx. Reads the head and a
/// `content-length` body (what the bench's server sends).
async fn get(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await?;
    buf.clear();
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 256];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let length: usize =
        text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head + length {
        let mut chunk = [0; 256];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(text.starts_with("http/1.1 2"))
}
