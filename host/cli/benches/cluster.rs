//! Cluster mode at scale, in the real daemon: N services (default 10 000, `AEGIS_BENCH_SERVICES`) checked every
//! second, split across 3 `aegis-host` replicas on one `redis-server` of the bench's own (a free loopback port), all
//! against one loopback HTTP server in this process. Reports, over `AEGIS_BENCH_SECONDS` (default 30) after a
//! warm-up:
//!
//! - checks per second of the three replicas together, against the ideal (N per second) — target ≥ 95 %;
//! - resident memory of each replica;
//! - Redis commands per second in steady state (from `INFO commandstats`; no transitions happen), and per 100
//!   services — target ≤ 1 (no write per check);
//! - take-over time after `kill -9` of one replica: until the survivors own every service again, and until a
//!   service of the killed replica is checked again — target ≤ `leaseTtl` (5 s here) + one interval.
//!
//! ```text
//! cargo bench -p aegis-host --bench cluster
//! AEGIS_BENCH_SERVICES=3000 AEGIS_BENCH_SECONDS=20 cargo bench -p aegis-host --bench cluster
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Host, env_or, free_port, get, listen, raise_fd_limit, serve, status_kib};

mod support;

const REPLICAS: usize = 3;
const LEASE: Duration = Duration::from_secs(5);
const INTERVAL: Duration = Duration::from_secs(1);

/// A `redis-server` of the bench's own, killed when dropped.
struct Redis {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let redis = Redis { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command(&["PING"]).is_none_or(|r| !r.contains("PONG")) {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    /// One command over RESP; the raw reply (enough for PING and INFO).
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 64 << 10];
        loop {
            let n = s.read(&mut buf).ok()?;
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            // A bulk reply is complete once its announced length has arrived; a simple reply at its first line.
            let done = match text.strip_prefix('$').and_then(|t| t.split_once("\r\n")) {
                Some((len, rest)) => len.parse::<usize>().is_ok_and(|l| rest.len() >= l + 2),
                None => text.ends_with("\r\n"),
            };
            if n == 0 || done {
                return Some(text.into_owned());
            }
        }
    }

    /// Calls of every command so far.
    fn calls(&self) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).unwrap_or_default();
        info.lines().filter_map(|l| l.split_once("calls=")?.1.split(',').next()?.parse::<u64>().ok()).sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of a metric over every series of a replica (`None` when it does not answer).
fn total(host: &Host, name: &str) -> Option<f64> {
    let text = host.scrape()?;
    let prefix = format!("{name}{{");
    Some(
        text.lines()
            .filter(|l| l.starts_with(&prefix) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The replicas still running.
fn live(hosts: &[Option<Host>]) -> Vec<&Host> {
    hosts.iter().flatten().collect()
}

fn checks(hosts: &[&Host]) -> f64 {
    hosts.iter().filter_map(|h| total(h, "aegis_health_checks_total")).sum()
}

fn main() {
    raise_fd_limit();
    let n = env_or("AEGIS_BENCH_SERVICES", 10_000) as usize;
    let seconds = env_or("AEGIS_BENCH_SECONDS", 30);
    let (listener, port) = listen();
    std::thread::spawn(move || serve(listener));
    let redis = Redis::start();
    let services: String = (0..n)
        .map(|i| {
            format!(
                "  - {{name: s{i}, type: http, endpoint: 'http://127.0.0.1:{port}/s{i}', interval: {}ms, \
                 actions: {{onFailure: ignore}}}}\n",
                INTERVAL.as_millis()
            )
        })
        .collect();
    let mut hosts: Vec<Option<Host>> = (0..REPLICAS)
        .map(|k| {
            let cluster = format!(
                "cluster: {{redis: 'redis://{}', node: r{k}, leaseTtl: {}ms}}\n",
                redis.addr,
                LEASE.as_millis()
            );
            Some(Host::start_with(&cluster, &services))
        })
        .collect();
    let owned =
        |hosts: &[&Host]| -> f64 { hosts.iter().filter_map(|h| total(h, "aegis_cluster_owned_services")).sum() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while owned(&live(&hosts)) != n as f64
        || live(&hosts).iter().any(|h| total(h, "aegis_cluster_members") != Some(REPLICAS as f64))
    {
        assert!(Instant::now() < deadline, "the replicas did not split the services");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Warm-up: every service's first check, connection pools filled.
    std::thread::sleep(Duration::from_secs(10));

    let (c0, r0, t0) = (checks(&live(&hosts)), redis.calls(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (c1, r1, elapsed) = (checks(&live(&hosts)), redis.calls(), t0.elapsed().as_secs_f64());
    let rate = (c1 - c0) / elapsed;
    let ideal = n as f64 / INTERVAL.as_secs_f64();
    // INFO itself is two of the calls.
    let redis_rate = (r1.saturating_sub(r0).saturating_sub(2)) as f64 / elapsed;
    println!("cluster: {n} services, {REPLICAS} replicas, every {INTERVAL:?}, measured over {elapsed:.1} s");
    println!("  checks/s          {rate:>10.0}   ideal {ideal:.0}   {:.1} % of ideal", 100.0 * rate / ideal);
    for (k, h) in live(&hosts).iter().enumerate() {
        let owned = total(h, "aegis_cluster_owned_services").unwrap_or(0.0);
        println!("  replica r{k}        RSS {:>7} KiB   owns {owned:.0}", status_kib(h.pid(), "VmRSS"));
    }
    println!(
        "  redis commands/s  {redis_rate:>10.1}   {:.3} per 100 services (target <= 1)",
        redis_rate * 100.0 / n as f64
    );

    // Take-over: kill -9 the first replica; a service it owned (read from its API before) must be checked again.
    let victim = hosts[0].take().expect("replica r0");
    let orphan = get(victim.admin, "/api/v1/services")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["services"]
                .as_array()?
                .iter()
                .find(|s| s["owner"] == "r0")
                .and_then(|s| s["name"].as_str().map(str::to_owned))
        })
        .expect("a service owned by r0");
    let pid = victim.pid();
    let killed = Instant::now();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    drop(victim);
    let survivors = live(&hosts);
    let series = format!("aegis_health_checks_total{{result=\"success\",service=\"{orphan}\"}}");
    let checked = |hosts: &[&Host]| -> f64 {
        hosts
            .iter()
            .filter_map(|h| h.scrape())
            .flat_map(|t| t.lines().filter(|l| l.starts_with(&series)).map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = checked(&survivors);
    let (mut all_owned, mut probed) = (None, None);
    while killed.elapsed() < Duration::from_secs(60) && (all_owned.is_none() || probed.is_none()) {
        if all_owned.is_none() && owned(&survivors) == n as f64 {
            all_owned = Some(killed.elapsed());
        }
        if probed.is_none() && checked(&survivors) > before {
            probed = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let show =
        |d: Option<Duration>| d.map_or_else(|| "not within 60 s".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "  take-over after kill -9: every service owned again {}, {orphan} checked again {} (target <= {:.0} s)",
        show(all_owned),
        show(probed),
        (LEASE + INTERVAL).as_secs_f64()
    );
}
