//! `hostile` — TEST ONLY. A trip predicate that misbehaves on purpose, one way per `mode`, so the host's tests can
//! check that each misbehaviour is contained (deadline, memory cap, stack limit, no capabilities) and quarantined.
//! `make plugins` never installs it.
//!
//! Config:
//! - `mode` — `loop` (spin forever), `alloc` (grow memory until refused), `panic`, `recurse` (unbounded recursion),
//!   `big` (return a `size`-byte reason), `file` (read `path`), `env` (read every environment variable), `socket`
//!   (connect to `addr`), `clock` (read the wall and monotonic clocks), `log-flood` (log 10 000 long lines), `forge`
//!   (log and trip with text that would start a forged log line and clear the terminal), `work` (spin `size`
//!   times, then behave: long but finite), `ok` (behave: never trip)
//! - `when` — `always` (default) or `failures`: misbehave only when the counts show a failure, otherwise behave,
//!   so a test can make the plugin healthy again
//! - `at`   — `call` (default) or `init`: misbehave inside `init` instead of the decision
//! - `size`, `path`, `addr` — parameters of `big` and `work`, `file`, and `socket`

use std::hint::black_box;

use aegis_plugin_sdk::{Config, Counts, LogLevel, Policy, ProbeOutcome, ServiceInfo, TripPredicate, log};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostile {
    mode: String,
    only_on_failures: bool,
    size: usize,
    path: String,
    addr: String,
}

const MODES: &[&str] =
    &["loop", "alloc", "panic", "recurse", "big", "file", "env", "socket", "clock", "log-flood", "forge", "work", "ok"];

impl Policy for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["mode", "when", "at", "size", "path", "addr"])?;
        let mode = config.get("mode").unwrap_or("ok").to_owned();
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("unknown mode `{mode}`"));
        }
        let only_on_failures = match config.get("when").unwrap_or("always") {
            "always" => false,
            "failures" => true,
            other => return Err(format!("unknown `when` value `{other}`")),
        };
        let policy = Hostile {
            mode,
            only_on_failures,
            size: config.parse_or("size", 4 << 20)?,
            path: config.get("path").unwrap_or("/etc/passwd").to_owned(),
            addr: config.get("addr").unwrap_or("127.0.0.1:80").to_owned(),
        };
        if config.get("at") == Some("init") {
            let _ = policy.misbehave();
        }
        Ok(policy)
    }
}

/// A line that, written as is, would add a fake error line to the host's log and clear the operator's terminal.
const FORGED: &str = "harmless\n2026-01-01T00:00:00Z ERROR aegis: forged by a plugin\u{1b}[2J";

/// Recursion the optimiser cannot turn into a loop: every frame keeps a buffer alive across the call.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let frame = black_box([depth.to_le_bytes()[0]; 256]);
    recurse(depth + 1).wrapping_add(u64::from(black_box(frame)[usize::from(frame[0])]))
}

impl Hostile {
    fn misbehave(&self) -> Option<String> {
        match self.mode.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "work" => {
                let mut sum: u64 = 0;
                for i in 0..self.size as u64 {
                    sum = black_box(sum.wrapping_add(i));
                }
                black_box(sum);
                None
            }
            "alloc" => {
                // Reserve without touching, so the memory cap (not the deadline) is what stops it.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(1 << 20));
                    black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "recurse" => Some(recurse(0).to_string()),
            "big" => Some("x".repeat(self.size)),
            "file" => Some(match std::fs::read_to_string(&self.path) {
                Ok(text) => format!("LEAK: read {} bytes of {}", text.len(), self.path),
                Err(e) => format!("denied: {e}"),
            }),
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                Some(if vars.is_empty() { "denied: empty environment".into() } else { format!("LEAK: {vars:?}") })
            }
            "socket" => Some(match std::net::TcpStream::connect(&self.addr) {
                Ok(_) => format!("LEAK: connected to {}", self.addr),
                Err(e) => format!("denied: {e}"),
            }),
            "clock" => {
                let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let start = std::time::Instant::now();
                let mut spins: u64 = 0;
                while start.elapsed().is_zero() && spins < 1_000 {
                    spins = black_box(spins + 1);
                }
                Some(if wall.is_zero() && start.elapsed().is_zero() {
                    "denied: both clocks stand still at zero".into()
                } else {
                    format!(
                        "LEAK: wall clock {} s, monotonic clock moved: {}",
                        wall.as_secs(),
                        !start.elapsed().is_zero()
                    )
                })
            }
            "forge" => {
                log(LogLevel::Info, FORGED);
                Some(FORGED.to_owned())
            }
            "log-flood" => {
                let line = "y".repeat(64 << 10);
                for _ in 0..10_000 {
                    log(LogLevel::Error, &line);
                }
                None
            }
            _ => None,
        }
    }
}

impl TripPredicate for Hostile {
    fn should_trip(&self, _: &ServiceInfo, counts: &Counts, _: &[ProbeOutcome]) -> Option<String> {
        if self.only_on_failures && counts.failures == 0 {
            return None;
        }
        self.misbehave()
    }
}

aegis_plugin_sdk::export_trip_predicate!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<Hostile, String> {
        Hostile::init(&Config::from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()))
    }

    #[test]
    fn modes_are_checked_and_when_failures_behaves_without_failures() {
        assert!(policy(&[("mode", "nuke")]).is_err());
        let p = policy(&[("mode", "panic"), ("when", "failures")]).unwrap();
        assert_eq!(p.should_trip(&ServiceInfo::default(), &Counts::default(), &[]), None);
        let big = policy(&[("mode", "big"), ("size", "10")]).unwrap();
        assert_eq!(big.should_trip(&ServiceInfo::default(), &Counts::default(), &[]).map(|s| s.len()), Some(10));
    }
}
