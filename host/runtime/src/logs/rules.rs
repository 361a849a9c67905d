//! The compiled rules applied to every log line: the built-in patterns as one `RegexSet` (compiled once, no
//! allocation for a line that matches nothing), then any extra [`LogRule`]s (plugins). Owns matching only: it reads
//! no file and sends nothing. A run of complete lines is searched at once with the [`LineFilter`], and only the
//! lines it points at are matched one by one ([`RuleSet::scan_run`]).

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{LogRule, Severity};
use regex::{Regex, RegexSet};

use super::filter::LineFilter;
use super::lines::{Line, line_ending_at, split_run};
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
    /// The patterns searched over a whole buffer; `None` if they cannot be (then every line is matched).
    filter: Option<LineFilter>,
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
        let filter = LineFilter::new(patterns.iter().map(|p| p.regex.as_str()));
        Ok(RuleSet { any, set, filter, builtins, extras: Vec::new() })
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

    /// Hands every line of `run` (complete lines ending with `\n`, cut to `max` bytes, of `service`'s file) that may
    /// match to `check`, in order, and skips the others: those no rule can match. `check` then matches them as usual
    /// ([`matches`](RuleSet::matches)); what it finds is what matching every line would have found.
    pub fn scan_run(&self, service: Option<&str>, run: &[u8], max: usize, check: &mut impl FnMut(Line<'_>)) {
        let applies = |scope: &Option<String>| scope.as_deref().is_none_or(|s| Some(s) == service);
        // Extra rules see every line; the filter is sound on valid UTF-8 only (see its module doc).
        let filter = self.filter.as_ref().filter(|_| !self.extras.iter().any(|e| applies(&e.service)));
        let Some(filter) = filter.filter(|_| std::str::from_utf8(run).is_ok()) else {
            split_run(run, max, check);
            return;
        };
        let folded = LineFilter::fold(run);
        let mut from = 0;
        while from < run.len() {
            let hit = filter.next_line_end(&folded, from);
            // Lines cut to `max` are matched whatever the filter says: the cut moved their end.
            let skipped = &run[from..hit.map_or(run.len(), |end| end + 1)];
            if skipped.len() > max + 1 {
                split_run(skipped, max, &mut |line| {
                    if line.cut {
                        check(line);
                    }
                });
            }
            let Some(end) = hit else { return };
            let line = line_ending_at(run, end, max);
            if !line.cut {
                check(line);
            }
            from = end + 1;
        }
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

    /// The lines `scan_run` hands over that match, as (text, cut, rules), and those of every line for comparison.
    fn scanned(
        rules: &RuleSet,
        service: Option<&str>,
        run: &[u8],
        max: usize,
    ) -> [Vec<(String, bool, Vec<String>)>; 2] {
        let found = |line: Line<'_>, out: &mut Vec<_>| {
            let text = String::from_utf8_lossy(line.bytes);
            let names: Vec<String> = rules.matches(service, "f", &text).into_iter().map(|m| m.rule).collect();
            if !names.is_empty() {
                out.push((text.into_owned(), line.cut, names));
            }
        };
        let (mut fast, mut every) = (Vec::new(), Vec::new());
        rules.scan_run(service, run, max, &mut |line| found(line, &mut fast));
        split_run(run, max, &mut |line| found(line, &mut every));
        [fast, every]
    }

    #[test]
    fn a_run_finds_what_every_line_finds() {
        let rules = RuleSet::new(&[
            pattern("end", "done$", None),
            pattern("panic", "thread '[^']*' panicked", None),
            pattern("any", "(?s)x.y", Some("api")),
            pattern("bad", "\u{FFFD}", None),
        ])
        .unwrap();
        assert!(rules.filter.is_some());
        let run = b"ok\nall done\r\nthread 'a\nb' panicked\nthread 'main' panicked\nxzy for api\nlong line done\n";
        let [fast, every] = scanned(&rules, Some("api"), run, 64);
        assert_eq!(fast, every);
        assert_eq!(fast.iter().map(|(_, _, n)| n[0].as_str()).collect::<Vec<_>>(), ["end", "panic", "any", "end"]);
        // Cut lines match on what is kept of them: `done$` at the cut, not at the line's end.
        let [fast, every] = scanned(&rules, None, b"nothing\nwell done, later\nfine\n", 9);
        assert_eq!(fast, every);
        assert_eq!(fast, [("well done".to_owned(), true, vec!["end".to_owned()])]);
        // Invalid UTF-8 becomes U+FFFD in the line: no filter for that run.
        let [fast, every] = scanned(&rules, None, b"fine\nbad \xff here\n", 64);
        assert_eq!(fast, every);
        assert_eq!(fast.len(), 1);
    }

    #[test]
    fn a_run_hands_every_line_to_extra_rules() {
        let rules = RuleSet::new(&[pattern("oom", "out of memory", None)]).unwrap().with_rule(
            Arc::new(aegis_core::policy::Contains::new("boom", Severity::Warning, ["boom"])),
            Some("api".into()),
        );
        let mut seen = 0;
        rules.scan_run(Some("api"), b"a\nb\nboom\n", 64, &mut |_| seen += 1);
        assert_eq!(seen, 3);
        seen = 0;
        rules.scan_run(Some("db"), b"a\nout of memory\nboom\n", 64, &mut |_| seen += 1);
        assert_eq!(seen, 1);
    }

    #[test]
    fn empty_set_matches_nothing() {
        let rules = RuleSet::new(&[]).unwrap();
        assert!(rules.is_empty());
        assert!(rules.matches(None, "f", "anything").is_empty());
    }
}
