//! What the benches that run the real aegis-host share: the environment knobs, a keep-alive HTTP server for the
//! services to probe, a running host on a generated config with a plain HTTP client for its admin server, and
//! reading a process's memory and descriptors from `/proc`. Included by each bench with `mod support;` (a bench
//! uses only some of it).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Any single request of a bench (a scrape, one load request) gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The numeric environment variable `key`, or `default`.
pub fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A thread with a small stack: the servers run one per connection, thousands at once.
pub fn spawn_small(f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().stack_size(64 << 10).spawn(f)
}

/// Answers every request on every connection with `200 ok`, keeping connections alive.
pub fn serve(listener: TcpListener) {
    serve_with(listener, |_| true);
}

/// Answers every request on every connection, keeping connections alive: `200 ok` when `healthy(path)`, else
/// `503 down`.
pub fn serve_with(listener: TcpListener, healthy: fn(&str) -> bool) {
    for stream in listener.incoming().flatten() {
        let _ = spawn_small(move || {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => return,
            });
            let mut writer = stream;
            let mut line = String::new();
            loop {
                // Request line and headers, up to the blank line; health checks carry no body.
                let mut path = None;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" && path.is_some() => break,
                        Ok(_) if path.is_none() => {
                            path = Some(line.split_whitespace().nth(1).unwrap_or("/").to_owned())
                        }
                        Ok(_) => {}
                    }
                }
                let answer: &[u8] = if path.as_deref().is_some_and(healthy) {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown"
                };
                if writer.write_all(answer).is_err() {
                    return;
                }
            }
        });
    }
}

/// A line of `/proc/<pid>/status` (e.g. `VmRSS:`), in KiB; 0 when it cannot be read.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A listener on a free loopback port, and the port.
pub fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    listen().1
}

/// The host's children inherit the limit: a thousand hung checks in flight are a thousand sockets on each side.
#[cfg(unix)]
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.unwrap_or(u64::MAX).min(1 << 16);
    if limit.current.is_some_and(|c| c < want) {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: limit.maximum });
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit() {}

/// One request on its own connection, for the window edges; the body, or `None` after an error or [`IO_TIMEOUT`].
pub fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// A running `aegis-host` on a generated config, in a directory of its own; stopped (SIGTERM, then SIGKILL) when
/// dropped, so a failing run does not leave it behind.
pub struct Host {
    child: Child,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Host {
    /// Starts the host with `services` (YAML lines of the `services:` list) and waits for its admin server.
    pub fn start(services: &str) -> Host {
        Host::start_with("", services)
    }

    /// [`Host::start`] with more top-level sections (`sections`: YAML lines, e.g. a `cluster:` section).
    pub fn start_with(sections: &str, services: &str) -> Host {
        Host::start_with_plugins(None, sections, services)
    }

    /// [`Host::start_with`] loading the plugins of `plugins` (default: an empty directory).
    pub fn start_with_plugins(plugins: Option<&Path>, sections: &str, services: &str) -> Host {
        Host::start_from(Path::new(env!("CARGO_BIN_EXE_aegis-host")), plugins, sections, services)
    }

    /// [`Host::start_with_plugins`] running the aegis-host binary at `binary` (e.g. a baseline build kept aside).
    pub fn start_from(binary: &Path, plugins: Option<&Path>, sections: &str, services: &str) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("admin address");
        let plugins = plugins.map_or_else(|| dir.path().join("plugins"), Path::to_path_buf);
        let yaml = format!(
            "admin: {{address: \"{admin}\"}}\nplugins: {{dir: \"{}\"}}\nstorage: {{path: \"{}\"}}\n{sections}\
             services:\n{services}",
            plugins.display(),
            dir.path().join("aegis.db").display()
        );
        let config = dir.path().join("aegis.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let child = spawn_binary(binary, &config);
        let host = Host { child, admin, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while host.scrape().is_none() {
            assert!(Instant::now() < deadline, "aegis-host did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn scrape(&self) -> Option<String> {
        get(self.admin, "/metrics")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops `child`: SIGTERM, then SIGKILL if it has not exited within 5 s.
pub fn stop(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `aegis-host --config <config>`, quiet, with no breaker setting from the caller's environment.
pub fn spawn_host(config: &Path) -> Child {
    spawn_binary(Path::new(env!("CARGO_BIN_EXE_aegis-host")), config)
}

/// [`spawn_host`] running the aegis-host binary at `binary`.
pub fn spawn_binary(binary: &Path, config: &Path) -> Child {
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .env("AEGIS_LOG", "warn")
        // A breaker setting in the caller's environment would override the configs'.
        .env_remove("CIRCUIT_BREAKER_ENABLED")
        .env_remove("CIRCUIT_BREAKER_THRESHOLD")
        .env_remove("CIRCUIT_BREAKER_TIMEOUT")
        .env_remove("CIRCUIT_BREAKER_SUCCESS_THRESHOLD")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aegis-host")
}

/// CPU time process `pid` has used so far (user + system, from `/proc/<pid>/stat`); zero when it cannot be read.
pub fn cpu_time(pid: u32) -> Duration {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime are fields 14 and 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_micros((field(14) + field(15)) * 1_000_000 / ticks.max(1))
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`); 0 when they cannot be read.
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}
