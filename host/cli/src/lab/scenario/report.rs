//! What running one scenario found, and how it is shown: a passed scenario is one line; a failed one lists each
//! expectation that did not hold with its file:line, step and time, the expected and the actual value, and the inputs
//! just before it. Owns the bookkeeping and the text; the kind modules decide what to compare.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aegis_plugin::PluginError;

use super::file::{Scenario, Step};

/// Inputs shown before a mismatch.
const TRAIL: usize = 6;
/// Mismatches shown per scenario (the first ones; later ones often follow from them).
const SHOWN: usize = 10;

/// One expectation that did not hold.
#[derive(Debug)]
pub(crate) struct Mismatch {
    line: usize,
    step: usize,
    at: Option<Duration>,
    what: String,
    expected: String,
    actual: String,
    trail: Vec<String>,
}

/// The result of one scenario.
#[derive(Debug)]
pub(crate) struct Report {
    file: PathBuf,
    name: String,
    inputs: usize,
    checks: usize,
    mismatches: Vec<Mismatch>,
    trail: VecDeque<String>,
}

impl Report {
    pub(crate) fn of<S, B, H>(scenario: &Scenario<S, B, H>) -> Self {
        Report {
            file: scenario.file.clone(),
            name: scenario.name.clone(),
            inputs: 0,
            checks: 0,
            mismatches: Vec::new(),
            trail: VecDeque::with_capacity(TRAIL),
        }
    }

    /// The plugin bound with the scenario's config, or `None` after noting the refusal as a mismatch at the `config:`
    /// line (no step can run then).
    pub(crate) fn bound<T>(&mut self, config_line: usize, bound: Result<T, PluginError>) -> Option<T> {
        bound
            .map_err(|e| {
                self.mismatch(config_line, 0, None, "plugin config", "accepted".into(), format!("refused: {e}"))
            })
            .ok()
    }

    pub(crate) fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// Notes an input and what it led to, for the trail shown with a later mismatch.
    pub(crate) fn input(&mut self, at: Option<Duration>, text: impl fmt::Display) {
        self.inputs += 1;
        if self.trail.len() == TRAIL {
            self.trail.pop_front();
        }
        self.trail.push_back(match at {
            Some(at) => format!("{:>8}  {text}", humantime::format_duration(at).to_string()),
            None => text.to_string(),
        });
    }

    /// Compares one expected value with the actual one.
    pub(crate) fn check<S>(
        &mut self,
        step: &Step<S>,
        at: Option<Duration>,
        what: &str,
        holds: bool,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) {
        self.checks += 1;
        if !holds {
            self.mismatch(step.line, step.number, at, what, expected.to_string(), actual.to_string());
        }
    }

    /// Records a mismatch; a refused config is step 0.
    fn mismatch(
        &mut self,
        line: usize,
        step: usize,
        at: Option<Duration>,
        what: &str,
        expected: String,
        actual: String,
    ) {
        let trail = self.trail.iter().cloned().collect();
        self.mismatches.push(Mismatch { line, step, at, what: what.to_owned(), expected, actual, trail });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.passed() {
            let (inputs, checks) = (counted(self.inputs, "input"), counted(self.checks, "expectation"));
            return writeln!(f, "ok    {file}: {} ({inputs}, {checks})", self.name);
        }
        writeln!(f, "FAIL  {file}: {}", self.name)?;
        for m in self.mismatches.iter().take(SHOWN) {
            let at = m.at.map(|t| format!(" at {}", humantime::format_duration(t))).unwrap_or_default();
            match m.step {
                0 => writeln!(f, "  {file}:{}{at}", m.line)?,
                n => writeln!(f, "  {file}:{}: step {n}{at}", m.line)?,
            }
            writeln!(f, "    {}", m.what)?;
            writeln!(f, "      expected: {}", m.expected)?;
            writeln!(f, "      actual:   {}", m.actual)?;
            if !m.trail.is_empty() {
                writeln!(f, "    inputs before it:")?;
                for t in &m.trail {
                    writeln!(f, "      {t}")?;
                }
            }
        }
        if self.mismatches.len() > SHOWN {
            writeln!(f, "  … and {} more mismatches", self.mismatches.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// `1 input`, `2 inputs`.
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Text in quotes, cut to a readable length.
pub(crate) fn quoted(s: &str) -> String {
    const MAX: usize = 300;
    let cut = s.floor_char_boundary(MAX);
    format!("{:?}{}", &s[..cut], if cut < s.len() { "…" } else { "" })
}
