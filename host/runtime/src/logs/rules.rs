//! The compiled rules applied to every log line: the built-in patterns as one `RegexSet` (compiled once, no
//! allocation for a line that matches nothing), then any extra [`LogRule`]s (plugins). Owns matching only: it reads
//! no file and sends nothing.

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{LogRule, Severity};
use regex::{Regex, RegexSet};

use super::{LogsError, Pattern};

/// One rule that matched a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    pub rule: String,
    pub severity: Severity,
    /// The pattern's description, or the finding's message for an extra rule.
    pub description: Option<String>,
    /// The service the line belongs to (a service-scoped rule only ever matches its own service's lines).
    pub service: Option<String>,
}

/// What is kept of a built-in pattern besides its regex (which lives in the set, at the same index).
#[derive(Clone, Debug)]
struct Builtin {
    name: String,
    severity: Severity,
    description: Option<String>,
    service: Option<String>,
}

/// An extra rule and the service it is limited to.
#[derive(Clone)]
struct Extra {
    rule: Arc<dyn LogRule>,
    service: Option<String>,
}

/// The rules of the log monitor. Cheap to share behind an `Arc`; matching takes `&self` and is thread-safe.
#[derive(Clone)]
pub struct RuleSet {
    /// All patterns as one alternation, the fast "does anything match" test. A set searches with all-matches
    /// semantics, which keeps every case variant of `(?i)` literals in its prefilter; on ordinary lines that
    /// prefilter fires constantly and made the set 1.5-3 times slower than the alternation in the `logscan` bench.
    /// `None` if the alternation does not
    /// compile (a `(?x)` comment running into the next pattern, the size limit): the set is used alone then.
    any: Option<Regex>,
    set: RegexSet,
    builtins: Vec<Builtin>,
    extras: Vec<Extra>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("builtins", &self.builtins.iter().map(|b| b.name.as_str()).collect::<Vec<_>>())
            .field("extras", &self.extras.iter().map(|e| &e.rule).collect::<Vec<_>>())
            .finish()
    }
}

impl RuleSet {
    /// Compiles `patterns`; the error names the first invalid one by index and name.
    pub fn new(patterns: &[Pattern]) -> Result<RuleSet, LogsError> {
        // The set's own error does not say which pattern is at fault: check them one by one first.
        for (index, p) in patterns.iter().enumerate() {
            Regex::new(&p.regex).map_err(|source| LogsError::Pattern { index, name: p.name.clone(), source })?;
        }
        let set = RegexSet::new(patterns.iter().map(|p| p.regex.as_str()))
            .map_err(|source| LogsError::PatternsTooLarge { count: patterns.len(), source })?;
        let any = (!patterns.is_empty())
            .then(|| {
                let alternation = patterns.iter().map(|p| format!("(?:{})", p.regex)).collect::<Vec<_>>().join("|");
                Regex::new(&alternation).ok()
            })
            .flatten();
        let builtins = patterns
            .iter()
            .map(|p| Builtin {
                name: p.name.clone(),
                severity: p.severity,
                description: p.description.clone(),
                service: p.service.clone(),
            })
            .collect();
        Ok(RuleSet { any, set, builtins, extras: Vec::new() })
    }

    /// Adds a rule run after the built-ins on every line (of `service`'s files only, if given).
    pub fn with_rule(mut self, rule: Arc<dyn LogRule>, service: Option<String>) -> RuleSet {
        self.extras.push(Extra { rule, service });
        self
    }

    /// Number of built-in patterns plus extra rules.
    pub fn len(&self) -> usize {
        self.builtins.len() + self.extras.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rules `line` matches, built-ins first in pattern order. `service` is the service of the file the line
    /// came from, `source` its path (handed to extra rules). Allocates nothing when nothing matches.
    pub fn matches(&self, service: Option<&str>, source: &str, line: &str) -> Vec<RuleMatch> {
        let mut found = Vec::new();
        let applies = |scope: &Option<String>| scope.as_deref().is_none_or(|s| Some(s) == service);
        // `is_match` needs no scratch space; `matches` allocates its result, so it runs only for a matching line.
        let any = match &self.any {
            Some(any) => any.is_match(line),
            None => self.set.is_match(line),
        };
        if any {
            for index in self.set.matches(line).iter() {
                let b = &self.builtins[index];
                if applies(&b.service) {
                    found.push(RuleMatch {
                        rule: b.name.clone(),
                        severity: b.severity,
                        description: b.description.clone(),
                        service: service.map(str::to_owned),
                    });
                }
            }
        }
        for extra in self.extras.iter().filter(|e| applies(&e.service)) {
            if let Some(f) = extra.rule.match_line(source, line) {
                found.push(RuleMatch {
                    rule: f.rule,
                    severity: f.severity,
                    description: Some(f.message),
                    service: service.map(str::to_owned),
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(name: &str, regex: &str, service: Option<&str>) -> Pattern {
        Pattern {
            name: name.into(),
            regex: regex.into(),
            severity: Severity::Critical,
            description: Some(format!("{name} seen")),
            service: service.map(Into::into),
        }
    }

    #[test]
    fn matches_in_pattern_order_with_scope() {
        let rules =
            RuleSet::new(&[pattern("oom", "(?i)out of memory", None), pattern("scoped", "(?i)memory", Some("api"))])
                .unwrap();
        let names =
            |service, line| rules.matches(service, "f.log", line).into_iter().map(|m| m.rule).collect::<Vec<_>>();
        assert!(rules.any.is_some());
        assert_eq!(names(Some("api"), "Out of Memory"), ["oom", "scoped"]);
        assert_eq!(names(Some("db"), "Out of Memory"), ["oom"]);
        assert_eq!(names(None, "Out of Memory"), ["oom"]);
        assert!(names(Some("api"), "all good").is_empty());
    }

    #[test]
    fn invalid_pattern_is_named() {
        let e = RuleSet::new(&[pattern("ok", "a", None), pattern("bad", "(unclosed", None)]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("patterns[1] (`bad`): invalid regex:"), "{text}");
    }

    #[test]
    fn a_pattern_that_breaks_the_alternation_still_matches() {
        // The `(?x)` comment would swallow the patterns after it in the alternation, which then fails to compile.
        let rules =
            RuleSet::new(&[pattern("x", "(?x) disk \\ full  # spaced out", None), pattern("b", "boom", None)]).unwrap();
        assert!(rules.any.is_none());
        let names = |line| rules.matches(None, "f", line).into_iter().map(|m| m.rule).collect::<Vec<_>>();
        assert_eq!(names("disk full, boom"), ["x", "b"]);
        assert!(names("all good").is_empty());
    }

    #[test]
    fn empty_set_matches_nothing() {
        let rules = RuleSet::new(&[]).unwrap();
        assert!(rules.is_empty());
        assert!(rules.matches(None, "f", "anything").is_empty());
    }
}
