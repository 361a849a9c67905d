//! The command line: config validation and its exit status, what `check-config` prints, the seed configs, JSON
//! logs, completions and the man page, and plugin inspection.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aegis_tests::{binary, free_port, install_plugin, wait_until, workspace_root};

fn aegis(args: &[&str]) -> (i32, String, String) {
    aegis_with_env(args, &[])
}

/// Runs aegis-host in the workspace root (paths print as passed) with `env` and without any `CIRCUIT_BREAKER_*` or
/// `AEGIS_*` variable of the test's own environment, which would change what it reads.
fn aegis_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = host_command(env).args(args).output().expect("run aegis-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn host_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary("aegis-host"));
    command.current_dir(workspace_root());
    for (key, _) in std::env::vars() {
        if key.starts_with("CIRCUIT_BREAKER_") || key.starts_with("AEGIS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// What `check-config config/aegis.yaml` prints: the resolved settings, named and written as in a config file.
const AEGIS_YAML_CHECKED: &str = "\
config/aegis.yaml: ok
admin: http://127.0.0.1:9797/metrics
plugins: dir=plugins deadline=10ms memoryLimitMib=16
storage: path=aegis.db history: maxAge=7days maxRows=100000
service example-service:
  check: http http://127.0.0.1:8081/health interval=2s timeout=1s retries=1
  onFailure: restart
  circuitBreaker: enabled=true failureThreshold=3 resetTimeout=6s successThreshold=2 windowSize=20 tripPolicy=window-trip
  backoff: initialInterval=1s maxInterval=30s multiplier=2 jitter=equal
  process: target/debug/http-service --port 8081
anomaly_detection: detection_interval=10s history_size=60 detector=robust_z
  example-service: latency > 300 ms
alerting: tracked at /api/v1/alerts, not sent (no webhook)
";

#[test]
fn check_config_prints_aegis_yaml_as_an_operator_reads_it() {
    let (code, stdout, stderr) = aegis(&["check-config", "config/aegis.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, AEGIS_YAML_CHECKED);
    assert_eq!(stderr, "", "aegis.yaml has nothing to warn about");
}

#[test]
fn seed_002_shared_block_checks_as_written() {
    // config/seed-002-retries.yaml holds the seed's block verbatim; the breaker line shows what it became.
    let (code, stdout, stderr) = aegis(&["check-config", "config/seed-002-retries.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "  circuitBreaker: enabled=true failureThreshold=5 resetTimeout=1m successThreshold=1 recoveryTime=5m\n"
        ),
        "{stdout}"
    );
    // The block alone, extracted from the seed into a file of its own, is a valid (if idle) config.
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("shared.yaml");
    let seed = std::fs::read_to_string(workspace_root().join("config/seed-002-retries.yaml")).expect("read");
    let block: String = seed
        .lines()
        .skip_while(|l| !l.starts_with("retries:"))
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(block.lines().count(), 4, "{block}");
    std::fs::write(&file, &block).expect("write");
    let (code, _, stderr) = aegis(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("nothing to supervise"), "{stderr}");
    // The seed's variables: CIRCUIT_BREAKER_RECOVERY_TIME beats the file's block.
    let (code, stdout, stderr) = aegis_with_env(
        &["check-config", "config/seed-002-retries.yaml"],
        &[("CIRCUIT_BREAKER_RECOVERY_TIME", "10m"), ("CIRCUIT_BREAKER_THRESHOLD", "7")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("failureThreshold=7 resetTimeout=1m successThreshold=1 recoveryTime=10m\n"), "{stdout}");
    let (code, _, stderr) =
        aegis_with_env(&["check-config", "config/seed-002-retries.yaml"], &[("CIRCUIT_BREAKER_RECOVERY_TIME", "soon")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CIRCUIT_BREAKER_RECOVERY_TIME: invalid value \"soon\""), "{stderr}");
}

#[test]
fn bad_seed_002_block_exits_2_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "retries:\n  circuit_breaker_threshold: 5\n  circuit_breaker_timeout: 60 secs\n")
        .expect("write");
    let (code, _, stderr) = aegis(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:3:28: retries.circuit_breaker_timeout: ", file.display())), "{stderr}");
}

/// A running aegis-host that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Running(Option<Child>);

impl Running {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some()) {
            return child.wait().ok();
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn json_logs_are_one_object_per_line_with_span_fields() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("plugins")).expect("plugin dir");
    let config = tmp.path().join("aegis.yaml");
    // Nothing listens on the service's port: its checks fail, which is plenty to log.
    std::fs::write(
        &config,
        format!(
            "admin: {{address: 127.0.0.1:{admin}}}\nstorage: {{path: {dir}/aegis.db}}\nplugins: {{dir: {dir}/plugins}}\n\
             services:\n  - name: json-probe\n    type: tcp\n    endpoint: 127.0.0.1:{port}\n    interval: 100ms\n    \
             timeout: 100ms\n    actions: {{onFailure: ignore}}\n",
            admin = free_port(),
            port = free_port(),
            dir = tmp.path().display()
        ),
    )
    .expect("write config");
    let log = tmp.path().join("aegis.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = host_command(&[("AEGIS_LOG_FORMAT", "json"), ("AEGIS_LOG", "info")])
        .args(["--config", config.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone log handle"))
        .stderr(out)
        .spawn()
        .expect("start aegis-host");
    let mut host = Running(Some(child));
    assert!(
        wait_until(Duration::from_secs(20), || read(&log).contains("\"service\":\"json-probe\"")),
        "no span field in:\n{}",
        read(&log)
    );
    assert!(host.terminate().is_some_and(|s| s.success()), "clean exit on SIGTERM:\n{}", read(&log));

    let text = read(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{text}");
    let in_service_span = |l: &serde_json::Value| {
        l["span"]["service"] == "json-probe"
            || l["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["service"] == "json-probe"))
    };
    assert!(lines.iter().any(in_service_span), "{text}");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let (code, _, stderr) = aegis_with_env(&["check-config", "config/aegis.yaml"], &[("AEGIS_LOG_FORMAT", "xml")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid value 'xml'") && stderr.contains("json"), "{stderr}");
    let (code, _, stderr) = aegis(&["--log-format", "yaml", "check-config", "config/aegis.yaml"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definition() {
    let (code, bash, stderr) = aegis(&["completions", "bash"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(bash.contains("check-config") && bash.contains("--log-format"), "{bash}");
    for shell in ["zsh", "fish"] {
        let (code, script, stderr) = aegis(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(script.contains("check-config"), "{shell}: {script}");
    }
    let (code, man, stderr) = aegis(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    // roff: the title line comes first, after the string definitions some generators put before it.
    let title = man.lines().find(|l| !l.starts_with(".ie") && !l.starts_with(".el")).unwrap_or_default();
    assert!(title.starts_with(".TH aegis-host 1"), "{man}");
    assert!(man.contains("check\\-config") || man.contains("check-config"), "{man}");
}

#[test]
fn every_shipped_config_checks() {
    let dir = workspace_root().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, stdout, stderr) = aegis(&["check-config", path.to_str().expect("utf-8")]);
            assert_eq!(code, 0, "{}: {stdout}{stderr}", path.display());
            assert!(stdout.contains("service ") || stdout.contains("logs: "), "{stdout}");
            for debug in ["Some(", "None", "RobustZ", "Equal", "Webhook("] {
                assert!(!stdout.contains(debug), "{}: {debug} in\n{stdout}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "found {checked} configs");
}

#[test]
fn unknown_key_exits_2_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "services:\n  - name: a\n    type: http\n    endpoint: http://127.0.0.1:1/\n    actions:\n      circuitBreaker:\n        resetTimout: 5s\n").expect("write");
    for args in [vec!["check-config", file.to_str().expect("utf-8")], vec!["--config", file.to_str().expect("utf-8")]] {
        let (code, _, stderr) = aegis(&args);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(&format!("{}:7:9:", file.display())), "{stderr}");
        assert!(stderr.contains("unknown field `resetTimout`"), "{stderr}");
    }
}

#[test]
fn invalid_value_exits_2_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "- name: a\n  type: http\n  endpoint: not a url\n").expect("write");
    let (code, _, stderr) = aegis(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("services[0] (a).endpoint") && stderr.contains("not a URL"), "{stderr}");
}

#[test]
fn plugin_check_reports_the_world() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wasm = install_plugin("window-trip", tmp.path());
    let (code, stdout, stderr) = aegis(&["plugin", "check", wasm.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("trip-predicate plugin `window-trip`"), "{stdout}");

    let not_a_component = tmp.path().join("core.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").expect("write");
    let (code, _, stderr) = aegis(&["plugin", "check", not_a_component.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("core.wasm") && stderr.contains("not a loadable WASM component"), "{stderr}");
}
