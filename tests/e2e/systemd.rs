//! systemd integration: aegis-host speaks `sd_notify` to a `NOTIFY_SOCKET` datagram socket: READY=1 once the
//! services run, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around SIGHUP, WATCHDOG=1 with `WATCHDOG_USEC`, and
//! STOPPING=1 at SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use aegis_tests::{Proc, binary, free_port, start_http_service};

/// The next notification other than a watchdog ping (those are counted in `pings`).
fn next(socket: &UnixDatagram, pings: &mut usize, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .expect("timeout");
        let n = socket.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text == "WATCHDOG=1" {
            *pings += 1;
        } else {
            return Some(text);
        }
    }
    None
}

#[test]
fn aegis_host_notifies_systemd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "127.0.0.1:{port}"}}
storage: {{path: "{db}"}}
plugins: {{dir: "{plugins}"}}
services:
  - {{name: svc, type: http, endpoint: "{base}/health", interval: 100ms, actions: {{onFailure: ignore}}}}
"#,
            port = free_port(),
            db = tmp.path().join("aegis.db").display(),
            plugins = tmp.path().join("none").display(),
        ),
    )
    .expect("write config");
    let path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let mut host = Proc::start_with_env(
        &binary("aegis-host"),
        &["--config", config.to_str().expect("utf-8")],
        &tmp.path().join("aegis.log"),
        &[("NOTIFY_SOCKET", path.to_str().expect("utf-8")), ("WATCHDOG_USEC", "200000")],
    );
    let mut pings = 0;
    let wait = Duration::from_secs(20);
    let ready = next(&socket, &mut pings, wait);
    assert!(ready.as_deref().is_some_and(|m| m.starts_with("READY=1")), "{ready:?}; log:\n{}", host.log_text());

    host.hangup();
    let reloading = next(&socket, &mut pings, wait).unwrap_or_default();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let usec: u64 =
        reloading.lines().nth(1).and_then(|l| l.split('=').nth(1)).and_then(|v| v.parse().ok()).expect("usec");
    assert!(usec > 0);
    let ready = next(&socket, &mut pings, wait);
    assert!(ready.as_deref().is_some_and(|m| m.starts_with("READY=1")), "{ready:?}");

    // Every 100 ms (half of WATCHDOG_USEC) while the loop runs.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        assert_eq!(next(&socket, &mut pings, Duration::from_millis(50)), None);
    }
    assert!(pings >= 3, "{pings} watchdog pings");

    let _ = std::process::Command::new("kill").args(["-TERM", &host.pid().to_string()]).status();
    let stopping = next(&socket, &mut pings, wait);
    assert!(stopping.as_deref().is_some_and(|m| m.starts_with("STOPPING=1")), "{stopping:?}");
    assert!(host.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
}
