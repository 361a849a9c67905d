//! What the benches that run the real aegis-host share: the environment knobs, a keep-alive HTTP server for the
//! services to probe, and reading a process's memory from `/proc`. Included by each bench with `mod support;`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

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
                let mut seen_request = false;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" && seen_request => break,
                        Ok(_) => seen_request = true,
                    }
                }
                if writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
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
