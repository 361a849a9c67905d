//! The log seam: [`LogRule`] turns a log line into a [`Finding`] or nothing; [`Contains`] is the built-in (plain
//! substring matching, so the core needs no regex engine). Owns matching only; tailing files is the runtime's job.

use std::fmt;

use super::Severity;

/// What a rule found in a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name, e.g. `rust-panic`.
    pub rule: String,
    pub severity: Severity,
    pub message: String,
}

/// Matches log lines.
pub trait LogRule: Send + Sync + fmt::Debug {
    /// `source` is the log file path (or stream name) the line came from.
    fn match_line(&self, source: &str, line: &str) -> Option<Finding>;
}

/// The built-in rule: a line containing any of `needles` is a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contains {
    pub rule: String,
    pub severity: Severity,
    pub needles: Vec<String>,
    pub ignore_case: bool,
}

impl Contains {
    /// A case-sensitive rule.
    pub fn new(
        rule: impl Into<String>,
        severity: Severity,
        needles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Contains {
            rule: rule.into(),
            severity,
            needles: needles.into_iter().map(Into::into).collect(),
            ignore_case: false,
        }
    }

    /// The same rule, ignoring ASCII case.
    pub fn ignoring_case(mut self) -> Self {
        self.ignore_case = true;
        self.needles = self.needles.iter().map(|n| n.to_ascii_lowercase()).collect();
        self
    }
}

impl LogRule for Contains {
    fn match_line(&self, source: &str, line: &str) -> Option<Finding> {
        let lowered;
        let haystack = if self.ignore_case {
            lowered = line.to_ascii_lowercase();
            lowered.as_str()
        } else {
            line
        };
        self.needles.iter().any(|n| !n.is_empty() && haystack.contains(n.as_str())).then(|| Finding {
            rule: self.rule.clone(),
            severity: self.severity,
            message: format!("{source}: {}", line.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_matches_any_needle() {
        let r = Contains::new("error", Severity::Warning, ["ERROR", "FATAL"]);
        let f = r.match_line("app.log", "  2024 FATAL: disk full ").unwrap();
        assert_eq!(
            f,
            Finding {
                rule: "error".into(),
                severity: Severity::Warning,
                message: "app.log: 2024 FATAL: disk full".into()
            }
        );
        assert_eq!(r.match_line("app.log", "fatal: lowercase"), None);
        assert!(r.clone().ignoring_case().match_line("app.log", "fatal: lowercase").is_some());
        assert_eq!(Contains::new("empty", Severity::Info, [""]).match_line("s", "anything"), None);
    }
}
