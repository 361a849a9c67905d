//! A real `redis-server` (Debian's package; `.ci/run` installs it) per test: a free loopback port, its own temporary
//! directory holding the log, the dump and the TLS files, optionally a password and TLS. It can be stopped
//! (SIGTERM: the data is saved) or killed (SIGKILL: the data is lost) and started again on the same port and
//! directory, for "Redis away for a while, then back". Never a shared server: tests must not see each other's keys.
//!
//! Waits are bounded (10 s) and a failure panics naming the log file and quoting its end.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Proc, free_port};

mod certs;
mod resp;

pub use certs::TlsFiles;
pub use resp::Reply;

/// How long `redis-server` may take to answer its first PING, or to exit after SIGTERM/SIGKILL.
const WAIT: Duration = Duration::from_secs(10);

/// What a [`RedisServer`] is started with (builder style).
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    password: Option<String>,
    tls: bool,
}

impl RedisOptions {
    /// Clients must `AUTH` with `password` (`--requirepass`).
    pub fn password(mut self, password: &str) -> RedisOptions {
        self.password = Some(password.to_owned());
        self
    }

    /// TLS only (`--tls-port`, `--port 0`), with a certificate for 127.0.0.1 signed by a CA made for this server;
    /// client certificates are not asked for.
    pub fn tls(mut self) -> RedisOptions {
        self.tls = true;
        self
    }
}

/// A `redis-server` child process, killed when dropped (its directory is removed after it).
#[derive(Debug)]
pub struct RedisServer {
    process: Option<Proc>,
    port: u16,
    password: Option<String>,
    tls: Option<TlsFiles>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain server without a password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// A server with `options`, answering PING when this returns.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let dir = tempfile::Builder::new().prefix("aegis-redis-").tempdir().expect("create a temporary directory");
        let tls = options.tls.then(|| TlsFiles::generate(dir.path()));
        let mut server = RedisServer { process: None, port: 0, password: options.password, tls, dir };
        // free_port can race with another test taking the port before redis-server binds it: try another one.
        for attempt in 1..=3 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(e) if attempt < 3 && e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port it listens on (the TLS port with TLS); the same after [`RedisServer::start_again`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://…` with TLS; without credentials.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    /// [`RedisServer::url`] with the password in it (`redis://:PASSWORD@127.0.0.1:PORT`); the same as `url()`
    /// without a password.
    pub fn url_with_password(&self) -> String {
        match &self.password {
            None => self.url(),
            Some(password) => format!("{}://:{}@127.0.0.1:{}", self.scheme(), percent_encode(password), self.port),
        }
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The certificates (with TLS): `tls().ca` is what clients verify the server with, `tls().wrong_ca` is not.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Its working directory (`--dir`): log, dump, certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log file (`--logfile`); restarts append to it.
    pub fn log(&self) -> PathBuf {
        self.dir().join("redis.log")
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Runs one command (after `AUTH` when there is a password) and returns the reply as `redis-cli` prints it to a
    /// pipe (see [`Reply::text`]). Panics when the server cannot be reached or answers with an error.
    pub fn command(&self, args: &[&str]) -> String {
        let reply = self.try_command(args).unwrap_or_else(|e| panic!("{e} (Redis log: {})", self.log().display()));
        reply.text().unwrap_or_else(|e| panic!("Redis answered {args:?} with an error: {e}"))
    }

    /// [`RedisServer::command`] that returns what failed instead of panicking: `Err` when the server cannot be
    /// reached (connection, TLS, AUTH), `Ok(Reply::Error)` when it refuses the command.
    pub fn try_command(&self, args: &[&str]) -> Result<Reply, String> {
        let target = resp::Target {
            addr: self.addr(),
            ca_file: self.tls.as_ref().map(|t| t.ca.as_path()),
            password: self.password.as_deref(),
        };
        resp::command(target, args)
    }

    /// Calls per command since the start (or `CONFIG RESETSTAT`), from `INFO commandstats`: e.g. `"set" → 12`.
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        parse_command_calls(&self.command(&["INFO", "commandstats"]))
    }

    /// SIGTERM, and waits for the exit; the data set is saved in its directory for [`RedisServer::start_again`].
    pub fn stop(&mut self) {
        let mut process = self.process.take().expect("stop: redis-server is not running");
        if process.terminate(WAIT).is_none() {
            panic!("redis-server did not exit within {WAIT:?} of SIGTERM; log: {}", self.log_tail());
        }
    }

    /// SIGKILL, like a crash: whatever it held in memory is lost.
    pub fn kill(&mut self) {
        let mut process = self.process.take().expect("kill: redis-server is not running");
        let pid = process.pid().to_string();
        let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -KILL {pid}: {status}");
        if process.wait_exit(WAIT).is_none() {
            panic!("redis-server {pid} did not exit within {WAIT:?} of SIGKILL");
        }
    }

    /// Starts it again after [`RedisServer::stop`] or [`RedisServer::kill`]: same port, directory, password and
    /// certificates; answering PING when this returns.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "start_again: redis-server is still running");
        self.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "rediss" } else { "redis" }
    }

    fn args(&self) -> Vec<String> {
        let utf8 = |p: &Path| p.to_str().expect("temporary paths are UTF-8").to_owned();
        let mut options: Vec<(&str, String)> = vec![
            ("--bind", "127.0.0.1".into()),
            ("--dir", utf8(self.dir())),
            ("--logfile", "redis.log".into()),
            ("--save", String::new()),
            ("--appendonly", "no".into()),
            ("--daemonize", "no".into()),
            // No periodic snapshots, but SIGTERM writes one: `stop` keeps the data, `kill` loses it.
            ("--shutdown-on-sigterm", "save".into()),
        ];
        let port = self.port.to_string();
        match &self.tls {
            None => options.push(("--port", port)),
            Some(tls) => options.extend([
                ("--port", "0".into()),
                ("--tls-port", port),
                ("--tls-cert-file", utf8(&tls.cert)),
                ("--tls-key-file", utf8(&tls.key)),
                ("--tls-ca-cert-file", utf8(&tls.ca)),
                ("--tls-auth-clients", "no".into()),
            ]),
        }
        if let Some(password) = &self.password {
            options.push(("--requirepass", password.clone()));
        }
        options.into_iter().flat_map(|(name, value)| [name.to_owned(), value]).collect()
    }

    /// Spawns redis-server and waits until it answers PING; `Err` (naming the log) when it exits or stays silent.
    fn launch(&mut self) -> Result<(), String> {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Its own log goes to redis.log; stdout/stderr only carry what it says before opening it (bad arguments).
        let mut process = Proc::start(&redis_server_binary(), &args, &self.dir().join("redis.out"));
        let deadline = Instant::now() + WAIT;
        loop {
            if matches!(self.try_command(&["PING"]), Ok(Reply::Status(ref pong)) if pong == "PONG") {
                self.process = Some(process);
                return Ok(());
            }
            // Doubles as the pause between two PINGs.
            if let Some(status) = process.wait_exit(Duration::from_millis(20)) {
                return Err(format!(
                    "redis-server on port {} exited during startup ({status}); its output:\n{}\nlog: {}",
                    self.port,
                    process.log_text(),
                    self.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not answer PING within {WAIT:?}; log: {}",
                    self.port,
                    self.log_tail()
                ));
            }
        }
    }

    /// The log's path and its last lines, for panic messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("{} ending with:\n{}", self.log().display(), lines[lines.len().saturating_sub(15)..].join("\n"))
    }
}

/// `redis-server` on the PATH, or a panic saying how to install it.
fn redis_server_binary() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .expect("redis-server is not on the PATH: install Debian's redis-server package (.ci/run does)")
}

/// `INFO commandstats` lines such as `cmdstat_set:calls=12,usec=...` as `"set" → 12`.
fn parse_command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for the userinfo part of a URL.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
