//! `panic-detector`: reports the first line of a crash in a log — a Rust panic, a stack trace (Go, Java, Python) or an
//! out-of-memory failure — so one crash is one finding, not one per stack frame.
//!
//! Config (all optional):
//! - `rules`  — comma-separated subset of `rust-panic,stack-trace,oom` (default all three)
//! - `ignore` — lines containing this text are never reported (e.g. a test harness's expected panic)

use aegis_plugin_sdk::{Config, Finding, LogRule, Policy, Severity};

/// A rule: its name, severity and the line shapes that start a crash report.
struct Rule {
    name: &'static str,
    severity: Severity,
    matches: fn(&str) -> bool,
}

const RULES: [Rule; 3] = [
    Rule { name: "rust-panic", severity: Severity::Critical, matches: is_rust_panic },
    Rule { name: "stack-trace", severity: Severity::Warning, matches: is_stack_trace_header },
    Rule { name: "oom", severity: Severity::Critical, matches: is_out_of_memory },
];

/// Longest line excerpt a finding carries.
const MAX_MESSAGE: usize = 240;

fn is_rust_panic(line: &str) -> bool {
    // `thread 'main' panicked at src/main.rs:2:5:` (and the pre-1.73 `panicked at 'msg', file`).
    (line.contains("thread '") && line.contains("' panicked at")) || line.contains("thread '<unnamed>' panicked")
}

fn is_stack_trace_header(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("Traceback (most recent call last)")
        || t.starts_with("Exception in thread \"")
        || t.starts_with("panic: ")
        || (t.starts_with("goroutine ") && t.contains(" [running]:"))
        || t.starts_with("stack backtrace:")
}

fn is_out_of_memory(line: &str) -> bool {
    line.contains("java.lang.OutOfMemoryError")
        || line.contains("Out of memory: Killed process")
        || line.contains("oom-kill")
        || line.contains("fatal error: runtime: out of memory")
        || (line.contains("memory allocation of ") && line.contains(" bytes failed"))
        || line.contains("MemoryError")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicDetector {
    enabled: Vec<&'static str>,
    ignore: Option<String>,
}

impl Policy for PanicDetector {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["rules", "ignore"])?;
        let enabled = match config.get("rules") {
            None => RULES.iter().map(|r| r.name).collect(),
            Some(list) => {
                let mut enabled = Vec::new();
                for wanted in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let rule = RULES.iter().find(|r| r.name == wanted).ok_or_else(|| {
                        format!("config key `rules`: unknown rule `{wanted}` (known: rust-panic, stack-trace, oom)")
                    })?;
                    enabled.push(rule.name);
                }
                if enabled.is_empty() {
                    return Err("config key `rules`: no rule enabled".into());
                }
                enabled
            }
        };
        let ignore = config.get("ignore").filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(PanicDetector { enabled, ignore })
    }
}

impl LogRule for PanicDetector {
    fn match_line(&self, source: &str, line: &str) -> Option<Finding> {
        if self.ignore.as_deref().is_some_and(|text| line.contains(text)) {
            return None;
        }
        let rule = RULES.iter().filter(|r| self.enabled.contains(&r.name)).find(|r| (r.matches)(line))?;
        let mut excerpt = line.trim().to_owned();
        if excerpt.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !excerpt.is_char_boundary(cut) {
                cut -= 1;
            }
            excerpt.truncate(cut);
            excerpt.push('…');
        }
        Some(Finding { rule: rule.name.to_owned(), severity: rule.severity, message: format!("{source}: {excerpt}") })
    }
}

aegis_plugin_sdk::export_log_rule!(PanicDetector);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<PanicDetector, String> {
        PanicDetector::init(&Config::from(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
        ))
    }

    fn rule_of(p: &PanicDetector, line: &str) -> Option<String> {
        p.match_line("app.log", line).map(|f| f.rule)
    }

    #[test]
    fn finds_rust_panics() {
        let p = policy(&[]).unwrap();
        let f = p.match_line("app.log", "thread 'main' panicked at src/main.rs:2:5:").unwrap();
        assert_eq!(f.rule, "rust-panic");
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.message, "app.log: thread 'main' panicked at src/main.rs:2:5:");
        assert_eq!(
            rule_of(&p, "thread 'tokio-runtime-worker' panicked at 'boom', src/lib.rs:1:1"),
            Some("rust-panic".into())
        );
    }

    #[test]
    fn finds_stack_trace_headers_not_frames() {
        let p = policy(&[]).unwrap();
        assert_eq!(rule_of(&p, "Traceback (most recent call last):"), Some("stack-trace".into()));
        assert_eq!(
            rule_of(&p, "Exception in thread \"main\" java.lang.IllegalStateException"),
            Some("stack-trace".into())
        );
        assert_eq!(rule_of(&p, "goroutine 1 [running]:"), Some("stack-trace".into()));
        assert_eq!(rule_of(&p, "panic: runtime error: index out of range"), Some("stack-trace".into()));
        assert_eq!(rule_of(&p, "\tat com.example.Main.run(Main.java:10)"), None);
        assert_eq!(rule_of(&p, "  File \"app.py\", line 3, in <module>"), None);
    }

    #[test]
    fn finds_out_of_memory() {
        let p = policy(&[]).unwrap();
        assert_eq!(rule_of(&p, "memory allocation of 1073741824 bytes failed"), Some("oom".into()));
        assert_eq!(rule_of(&p, "kernel: Out of memory: Killed process 4242 (java)"), Some("oom".into()));
        assert_eq!(rule_of(&p, "java.lang.OutOfMemoryError: Java heap space"), Some("oom".into()));
    }

    #[test]
    fn ordinary_lines_pass() {
        let p = policy(&[]).unwrap();
        for line in ["GET /health 200 3ms", "", "panicking is not a crash", "retrying in 2s"] {
            assert_eq!(p.match_line("app.log", line), None, "{line}");
        }
    }

    #[test]
    fn rules_and_ignore_narrow_the_matches() {
        let p = policy(&[("rules", "oom"), ("ignore", "expected")]).unwrap();
        assert_eq!(rule_of(&p, "thread 'main' panicked at src/main.rs:2:5:"), None);
        assert_eq!(rule_of(&p, "memory allocation of 8 bytes failed (expected in test)"), None);
        assert_eq!(rule_of(&p, "memory allocation of 8 bytes failed"), Some("oom".into()));
    }

    #[test]
    fn long_lines_are_cut() {
        let p = policy(&[]).unwrap();
        let line = format!("thread 'main' panicked at {}", "é".repeat(400));
        let f = p.match_line("s", &line).unwrap();
        assert!(f.message.len() <= MAX_MESSAGE + 8, "{}", f.message.len());
        assert!(f.message.ends_with('…'));
    }

    #[test]
    fn bad_config_is_refused_with_the_key() {
        assert!(policy(&[("rules", "segfault")]).unwrap_err().contains("`segfault`"));
        assert!(policy(&[("rules", " , ")]).unwrap_err().contains("no rule"));
        assert!(policy(&[("rule", "oom")]).unwrap_err().contains("`rule`"));
    }
}
