//! Helpers for the end-to-end tests: locate the built binaries, build the bundled plugins from source, run child
//! processes that are always cleaned up, read Prometheus metrics, run a private Redis and cut connections to it.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod browser;
pub mod proxy;
pub mod redis;

pub use proxy::{PausableProxy, PauseMode};
pub use redis::{RedisOptions, RedisServer};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned).unwrap_or_default()
}

/// A binary of this workspace, built by `cargo build --workspace` into the same profile directory as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace`, as `make test` does)",
        path.display()
    );
    path
}

/// Builds the plugin workspace for wasm32-wasip2 (once per test run) and returns its release output directory.
pub fn built_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let target_dir = root.join("plugins").join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root.join("plugins"))
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo to build the plugins");
        assert!(status.success(), "building the plugin workspace failed: {status}");
        target_dir.join("wasm32-wasip2").join("release")
    })
}

/// Copies the bundled plugin `crate_name` (e.g. `window-trip`) into `dir` as `<crate_name>.wasm`.
pub fn install_plugin(crate_name: &str, dir: &Path) -> PathBuf {
    let built = built_plugins().join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::create_dir_all(dir).expect("create plugin dir");
    let dest = dir.join(format!("{crate_name}.wasm"));
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
    dest
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind an ephemeral port")
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` with stdout and stderr appended to `log`.
    pub fn start(program: &Path, args: &[&str], log: &Path) -> Proc {
        Proc::start_with_env(program, args, log, &[])
    }

    /// [`Proc::start`] with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(program: &Path, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Proc {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file handle");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("AEGIS_LOG", "info")
            .envs(env.iter().copied())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        Proc { child: Some(child), log: log.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends SIGHUP (aegis-host reloads its config and its plugins).
    pub fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -HUP {}: {status}", self.pid());
    }

    /// Sends SIGKILL (no chance to clean up, like a crash or the OOM killer) and reaps the process.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Starts `examples/http-service` on a free loopback port and waits until it answers; returns it and its base URL.
pub fn start_http_service(log: &Path) -> (Proc, String) {
    let port = free_port();
    let service = Proc::start(&binary("http-service"), &["--port", &port.to_string()], log);
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/health")).is_some()), "service started");
    (service, base)
}

/// Starts `examples/webhook-server` on `port`, appending every body it receives to `out` (which survives its
/// restarts), and waits until it answers.
pub fn start_receiver(port: u16, out: &Path, log: &Path) -> Proc {
    let p = Proc::start(
        &binary("webhook-server"),
        &["--port", &port.to_string(), "--out", out.to_str().expect("utf-8 path")],
        log,
    );
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("http://127.0.0.1:{port}/received")).is_some()));
    p
}

/// Every webhook body the receiver started by [`start_receiver`] appended to `out` so far.
pub fn received(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// Writes `dir/aegis.yaml`: the admin API on `admin`, the state database and an empty plugin directory in `dir`, then
/// `rest` (further sections, e.g. `services:` and its list) as given.
pub fn write_host_config(dir: &Path, admin: &str, rest: &str) -> PathBuf {
    let config = dir.join("aegis.yaml");
    let preamble = format!(
        "admin: {{address: \"{admin}\"}}\nstorage: {{path: \"{}\"}}\nplugins: {{dir: \"{}\"}}\n",
        dir.join("aegis.db").display(),
        dir.join("no-plugins").display()
    );
    std::fs::write(&config, preamble + rest).expect("write the config");
    config
}

/// Starts `aegis-host --config <config>` with its output in `log`.
pub fn start_aegis_host(config: &Path, log: &Path) -> Proc {
    Proc::start(&binary("aegis-host"), &["--config", config.to_str().expect("utf-8 path")], log)
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(10)).is_none()
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn http() -> reqwest::blocking::Client {
    // reqwest is built without a default crypto provider (the host ships ring); install it once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client")
}

pub fn get_text(url: &str) -> Option<String> {
    http().get(url).send().ok()?.text().ok()
}

pub fn post(url: &str) -> String {
    http()
        .post(url)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The value of the sample `name{labels}` in Prometheus text, where `labels` is the exact label set as rendered,
/// e.g. `breaker="svc"`; empty for a metric without labels.
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() { format!("{name} ") } else { format!("{name}{{{labels}}} ") };
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// `aegis_plugin_calls_total{plugin, result}` at `admin` (0 until the first call).
pub fn plugin_calls(admin: &str, plugin: &str, result: &str) -> f64 {
    scrape(admin, "aegis_plugin_calls_total", &format!("plugin=\"{plugin}\",result=\"{result}\"")).unwrap_or(0.0)
}

/// `aegis_health_checks_total{result="success", service}` at `admin` (0 until the first success).
pub fn successful_checks(admin: &str, service: &str) -> f64 {
    scrape(admin, "aegis_health_checks_total", &format!("result=\"success\",service=\"{service}\"")).unwrap_or(0.0)
}

/// Scrapes `admin` (host:port) and reads one sample.
pub fn scrape(admin: &str, name: &str, labels: &str) -> Option<f64> {
    get_text(&format!("http://{admin}/metrics")).and_then(|text| sample(&text, name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_reads_exact_label_sets() {
        let text = "# HELP x\nx{a=\"1\"} 2\nx{a=\"1\",b=\"2\"} 3\ny 4\n";
        assert_eq!(sample(text, "x", "a=\"1\""), Some(2.0));
        assert_eq!(sample(text, "x", "a=\"1\",b=\"2\""), Some(3.0));
        assert_eq!(sample(text, "x", "a=\"2\""), None);
        assert_eq!(sample(text, "y", ""), Some(4.0));
    }
}
