//! The HTTP server every prober of the bench checks: Debian's nginx when installed (what the first figures
//! were measured against: an event-driven server, one worker), started on a loopback port of its own with a
//! generated config; else the in-process thread-per-connection server of `support` (`AEGIS_BENCH_SERVER=builtin`
//! forces it). With 10 000 services the thread-per-connection server becomes the bottleneck (a thread and its
//! wake-ups per connection), so the rate at scale is only meaningful against nginx.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::KillOnDrop;
use crate::support::{free_port, get, listen, serve};

const NGINX: &str = "/usr/sbin/nginx";

/// The running target server.
pub struct Target {
    pub port: u16,
    pub name: &'static str,
    _nginx: Option<(KillOnDrop, tempfile::TempDir)>,
}

/// nginx when installed (and not `AEGIS_BENCH_SERVER=builtin`), else the in-process server.
pub fn start() -> Target {
    let builtin = std::env::var("AEGIS_BENCH_SERVER").is_ok_and(|v| v == "builtin");
    if !builtin {
        if !Path::new(NGINX).exists() {
            println!("  (nginx is not installed, `apt-get install nginx-light`: probing the in-process server)");
        } else if let Some(target) = nginx() {
            return target;
        }
    }
    let (listener, port) = listen();
    std::thread::spawn(move || serve(listener));
    Target { port, name: "the bench's in-process server (a thread per connection)", _nginx: None }
}

fn nginx() -> Option<Target> {
    let dir = tempfile::tempdir().ok()?;
    let port = free_port();
    let d = dir.path().display();
    // One worker, like the single server thread pool of the in-process server; every connection kept alive.
    let config = format!(
        "worker_processes 1;\nworker_rlimit_nofile 65536;\npid {d}/nginx.pid;\nerror_log {d}/error.log error;\n\
         events {{ worker_connections 30000; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 600s;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, config).ok()?;
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&file)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let guard = KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/health").is_none() {
        if Instant::now() > deadline {
            println!(
                "  (nginx did not come up: {}; probing the in-process server)",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default().trim()
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Target { port, name: "nginx (one worker)", _nginx: Some((guard, dir)) })
}
