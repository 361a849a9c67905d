//! Log-matching throughput: 20 realistic built-in patterns over a generated log (default 2 million lines of ~100
//! bytes, ~1% matching) on one thread, against `grep -E -c` with the same patterns, plus the `panic-detector` WASM
//! log rule when `plugins/panic-detector.wasm` exists. The figure compared with grep is the monitor's path: the
//! tailer's reads searched a buffer at a time ([`RuleSet::scan_run`]), every line it points at through
//! [`scan_line`]; matching every line read by a `BufReader` (the path before) is printed beside it.
//!
//! ```text
//! cargo bench -p aegis-runtime --bench logscan
//! AEGIS_BENCH_LINES=5000000 cargo bench -p aegis-runtime --bench logscan
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aegis_core::policy::{Contains, Severity};
use aegis_plugin::{CallResult, PluginHost, SandboxLimits};
use aegis_runtime::logs::{AtPath, FileSink, Line, Pattern, RuleSet, StartAt, Tailer, count_lines, scan_line};

/// Lines sent through the WASM rule (each is a sandboxed call, far slower than the regex set).
const PLUGIN_LINES: usize = 200_000;

/// A bench pattern in the subset both engines read alike; `fold` makes it case-insensitive (`(?i)` for Rust,
/// `[xX]` brackets for POSIX ERE, which has no inline flags).
struct Spec {
    name: &'static str,
    regex: &'static str,
    fold: bool,
    severity: Severity,
}

const fn spec(name: &'static str, regex: &'static str, fold: bool, severity: Severity) -> Spec {
    Spec { name, regex, fold, severity }
}

const SPECS: [Spec; 20] = [
    spec("out-of-memory", r"out of memory|java\.lang\.OutOfMemoryError|oom-kill", true, Severity::Critical),
    spec("rust-panic", r"thread '[^']*' panicked at", false, Severity::Critical),
    spec("connection-refused", r"connection refused", true, Severity::Warning),
    spec("timeout", r"\b(timed out|deadline exceeded|timeout expired)\b", true, Severity::Warning),
    spec("http-5xx", r#"" 5[0-9][0-9] "#, false, Severity::Warning),
    spec("segfault", r"segmentation fault|SIGSEGV", false, Severity::Critical),
    spec("disk-full", r"no space left on device|disk full", true, Severity::Critical),
    spec("deadlock", r"deadlock (detected|found)", true, Severity::Critical),
    spec("fatal", r"\b(FATAL|CRITICAL)\b", false, Severity::Critical),
    spec("stack-trace", r"^(Traceback \(most recent call last\)|Exception in thread )", false, Severity::Warning),
    spec("too-many-open-files", r"too many open files", true, Severity::Critical),
    spec("permission-denied", r"permission denied", true, Severity::Warning),
    spec("connection-reset", r"connection reset by peer", true, Severity::Warning),
    spec("dns-failure", r"temporary failure in name resolution|no such host", true, Severity::Warning),
    spec("tls-failure", r"certificate (has )?expired|tls handshake (failed|error)", true, Severity::Warning),
    spec("pool-exhausted", r"connection pool exhausted|too many connections", true, Severity::Critical),
    spec("killed", r"killed process [0-9]+|signal: killed", true, Severity::Critical),
    spec("broken-pipe", r"broken pipe", true, Severity::Info),
    spec("slow-query", r"slow query: [0-9]{4,}ms", false, Severity::Info),
    spec("auth-failure", r"authentication failed|invalid credentials", true, Severity::Warning),
];

/// Lines that should trigger a rule, sprinkled into the log.
const TRIGGERS: [&str; 12] = [
    "2026-11-24T18:00:00.123Z ERROR worker: java.lang.OutOfMemoryError: Java heap space",
    "thread 'tokio-runtime-worker' panicked at src/orders/service.rs:212:14:",
    "2026-11-24T18:00:00.123Z WARN http: upstream inventory: Connection refused (os error 111)",
    "2026-11-24T18:00:00.123Z WARN grpc: call to payments timed out after 5s",
    "10.0.3.7 - - [24/Nov/2026:18:00:00 +0000] \"POST /api/v1/orders HTTP/1.1\" 503 91 \"-\" \"okhttp/4.12\"",
    "kernel: app[4242]: segfault at 0 ip 00007f sp 00007ffd error 4 in libc.so.6 SIGSEGV",
    "2026-11-24T18:00:00.123Z ERROR store: write /var/lib/app/wal: No space left on device",
    "2026-11-24T18:00:00.123Z ERROR db: Deadlock found when trying to get lock; try restarting transaction",
    "2026-11-24T18:00:00.123Z FATAL main: cannot load configuration, exiting",
    "Traceback (most recent call last):",
    "2026-11-24T18:00:00.123Z ERROR db: slow query: 12840ms SELECT * FROM orders WHERE customer_id = $1",
    "2026-11-24T18:00:00.123Z WARN auth: login for user 7731: authentication failed",
];

const PATHS: [&str; 8] = [
    "/api/v1/orders",
    "/api/v1/users/{id}",
    "/api/v1/cart",
    "/healthz",
    "/api/v1/products/{id}/reviews",
    "/static/app.js",
    "/api/v1/search",
    "/metrics",
];
const MODULES: [&str; 6] = ["orders::service", "cart::handler", "users::repo", "search::index", "auth", "http"];
const EVENTS: [&str; 6] = [
    "request completed",
    "cache hit for key",
    "enqueued job",
    "retrying request to inventory (attempt 2/5)",
    "flushed batch to store",
    "session refreshed",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Writes `lines` lines: ~1% triggers, the rest access-log and application lines of ~100 bytes.
fn generate(path: &Path, lines: usize) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create log"));
    for i in 0..lines {
        let (sec, ms) = ((i / 1000) % 60, i % 1000);
        if rng.below(100) == 0 {
            writeln!(out, "{}", TRIGGERS[rng.below(TRIGGERS.len())]).expect("write");
        } else if rng.below(2) == 0 {
            let path = PATHS[rng.below(PATHS.len())].replace("{id}", &rng.below(100_000).to_string());
            let status = [200, 200, 200, 201, 204, 301, 304, 404][rng.below(8)];
            writeln!(
                out,
                "10.0.{}.{} - - [24/Nov/2026:18:{:02}:{sec:02} +0000] \"GET {path} HTTP/1.1\" {status} {} \"-\" \"curl/8.5\"",
                rng.below(256),
                rng.below(256),
                rng.below(60),
                rng.below(20_000)
            )
            .expect("write");
        } else {
            let level = ["INFO", "INFO", "INFO", "DEBUG", "WARN"][rng.below(5)];
            writeln!(
                out,
                "2026-11-24T18:00:{sec:02}.{ms:03}Z {level:<5} {}: {} id={} in {}ms",
                MODULES[rng.below(MODULES.len())],
                EVENTS[rng.below(EVENTS.len())],
                rng.below(1_000_000),
                rng.below(500)
            )
            .expect("write");
        }
    }
    out.flush().expect("flush");
    std::fs::metadata(path).expect("stat").len()
}

/// `regex` as POSIX ERE: letters outside escapes and brackets become `[xX]` when folding.
fn ere(s: &Spec) -> String {
    if !s.fold {
        return s.regex.to_owned();
    }
    let mut out = String::new();
    let (mut escaped, mut bracket) = (false, false);
    for c in s.regex.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                out.push(c);
            }
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '[' => {
                bracket = true;
                out.push(c);
            }
            ']' => {
                bracket = false;
                out.push(c);
            }
            c if c.is_ascii_alphabetic() && !bracket => {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn patterns() -> Vec<Pattern> {
    SPECS
        .iter()
        .map(|s| Pattern {
            name: s.name.into(),
            regex: if s.fold { format!("(?i){}", s.regex) } else { s.regex.into() },
            severity: s.severity,
            description: None,
            service: None,
        })
        .collect()
}

fn rate(lines: usize, took: Duration) -> f64 {
    lines as f64 / took.as_secs_f64()
}

/// Matches the file line by line as a reader would: `(lines, matching lines, time)`.
fn scan(rules: &RuleSet, path: &Path, limit: usize) -> (usize, usize, Duration) {
    let source = path.to_string_lossy();
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path).expect("open log"));
    let mut buf = Vec::with_capacity(256);
    let (mut lines, mut matched) = (0, 0);
    let started = Instant::now();
    while lines < limit {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).expect("read") == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        lines += 1;
        if !rules.matches(None, &source, &String::from_utf8_lossy(line)).is_empty() {
            matched += 1;
        }
    }
    (lines, matched, started.elapsed())
}

/// Counts lines and matching lines as the monitor's [`LineScan`](aegis_runtime::logs::LineScan) sees them
/// (which collects the matches instead).
struct Count<'a> {
    rules: &'a RuleSet,
    lines: usize,
    matched: usize,
}

impl Count<'_> {
    fn check(rules: &RuleSet, matched: &mut usize, path: &Path, line: Line<'_>) {
        if !scan_line(rules, None, path, line, SystemTime::UNIX_EPOCH).is_empty() {
            *matched += 1;
        }
    }
}

impl FileSink for Count<'_> {
    fn line(&mut self, path: &Path, line: Line<'_>) {
        self.lines += 1;
        Self::check(self.rules, &mut self.matched, path, line);
    }

    fn run(&mut self, path: &Path, run: &[u8], max: usize) {
        self.lines += count_lines(run) as usize;
        let (rules, matched) = (self.rules, &mut self.matched);
        rules.scan_run(None, run, max, &mut |line| Self::check(rules, matched, path, line));
    }
}

/// The file through the tailer (chunked reads, runs of lines searched at once) as the monitor runs it.
fn tail(rules: &RuleSet, path: &Path) -> (usize, usize, Duration) {
    let mut tailer = Tailer::new(path, StartAt::Start, 64 << 10);
    let mut count = Count { rules, lines: 0, matched: 0 };
    let started = Instant::now();
    while tailer.poll(usize::MAX, &mut AtPath { path, sink: &mut count }) {}
    (count.lines, count.matched, started.elapsed())
}

/// `grep -E -c` over the file: `(matching lines, time)`, or why it could not run.
fn grep(path: &Path, locale: Option<&str>) -> Result<(usize, Duration), String> {
    let joined = SPECS.iter().map(ere).collect::<Vec<_>>().join("|");
    let mut cmd = Command::new("grep");
    cmd.args(["-E", "-c", &joined]).arg(path);
    if let Some(l) = locale {
        cmd.env("LC_ALL", l);
    }
    let started = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run grep: {e}"))?;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let count = text.trim().parse().map_err(|_| {
        format!("grep exited with {}: {}{}", out.status, text.trim(), String::from_utf8_lossy(&out.stderr))
    })?;
    Ok((count, took))
}

fn plugin(path: &Path) -> Result<(), String> {
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/panic-detector.wasm");
    if !wasm.exists() {
        return Err(format!("{} does not exist (build the plugins first)", wasm.display()));
    }
    let host = PluginHost::new(SandboxLimits::default()).map_err(|e| format!("plugin host: {e}"))?;
    let info = host.load_file(&wasm).map_err(|e| format!("cannot load {}: {e}", wasm.display()))?;
    let fallback = Arc::new(Contains::new("panic-fallback", Severity::Critical, ["panicked at"]));
    let rule = host.log_rule(&info.name, "bench", Vec::new(), fallback).map_err(|e| format!("bind: {e}"))?;
    let rules = RuleSet::new(&[]).map_err(|e| e.to_string())?.with_rule(Arc::new(rule), None);
    let (lines, matched, took) = scan(&rules, path, PLUGIN_LINES);
    let stats = host.stats().into_iter().find(|s| s.plugin == info.name);
    let calls = stats.as_ref().map(|s| s.calls.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>());
    let ok = stats.as_ref().map_or(0, |s| s.calls(CallResult::Ok));
    println!(
        "wasm panic-detector:  {lines} lines, {matched} matching, {:.3} s, {:.0} lines/s ({:.2} µs/line); calls {:?}{}",
        took.as_secs_f64(),
        rate(lines, took),
        took.as_secs_f64() * 1e6 / lines as f64,
        calls.unwrap_or_default(),
        if ok == lines as u64 { "" } else { "  (NOT all answered by the plugin: fallback used)" },
    );
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: only run as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let lines: usize = std::env::var("AEGIS_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let bytes = generate(&path, lines);
    println!("log: {lines} lines, {:.1} MB ({:.0} bytes/line)", bytes as f64 / 1e6, bytes as f64 / lines as f64);

    let compile = Instant::now();
    let rules = RuleSet::new(&patterns()).expect("bench patterns compile");
    println!("compiled {} patterns in {:.1} ms", rules.len(), compile.elapsed().as_secs_f64() * 1e3);

    // Warm the page cache and the lazy DFAs once, then measure.
    tail(&rules, &path);
    let (n, matched, took) = tail(&rules, &path);
    let ours = rate(n, took);
    println!(
        "RuleSet (Tailer, buffer scan): {n} lines, {matched} matching ({:.2}%), {:.3} s, {ours:.0} lines/s, {:.0} MB/s",
        matched as f64 * 100.0 / n as f64,
        took.as_secs_f64(),
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    let (ln, lmatched, ltook) = scan(&rules, &path, usize::MAX);
    println!(
        "RuleSet (BufReader, line by line): {ln} lines, {lmatched} matching, {:.3} s, {:.0} lines/s{}",
        ltook.as_secs_f64(),
        rate(ln, ltook),
        if (ln, lmatched) == (n, matched) { "" } else { "  (COUNTS DIFFER)" }
    );
    println!("target ≥ 1000000 lines/s on one core: {}", if ours >= 1e6 { "met" } else { "MISSED" });

    for locale in [None, Some("C")] {
        let label =
            locale.map_or_else(|| "grep -E -c (locale as is)".to_owned(), |l| format!("grep -E -c (LC_ALL={l})"));
        match grep(&path, locale) {
            Ok((count, gtook)) => {
                let theirs = rate(n, gtook);
                println!(
                    "{label}: {count} matching, {:.3} s, {theirs:.0} lines/s; buffer scan/grep = {:.2}x, line by line/grep = {:.2}x{}",
                    gtook.as_secs_f64(),
                    ours / theirs,
                    rate(ln, ltook) / theirs,
                    if count == matched { "" } else { "  (COUNTS DIFFER)" }
                );
            }
            Err(why) => println!("{label}: skipped: {why}"),
        }
    }

    if let Err(why) = plugin(&path) {
        println!("wasm panic-detector: skipped: {why}");
    }
}
