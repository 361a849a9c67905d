//! A scenario file as written: the parts every plugin kind shares (name, the plugin's `config:`, the service, the time
//! between steps) around a list of kind-specific steps, parsed with every error located (file:line:col), plus the
//! line each step starts on, so a failed expectation points at itself. Owns parsing and step times only; running the
//! steps is the kind modules' job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_plugin::ServiceInfo;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// Step times are offsets from this instant (2026-01-01T00:00:00Z, Unix epoch milliseconds) wherever a plugin sees
/// wall-clock time: failure times, sample times, alert start times.
pub(crate) const START_MS: u64 = 1_767_225_600_000;

/// The Unix epoch milliseconds of a step at `at`.
pub(crate) fn epoch_ms(at: Duration) -> u64 {
    START_MS.saturating_add(u64::try_from(at.as_millis()).unwrap_or(u64::MAX))
}

/// The time between two steps that give no `at:` (a probe interval).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Why a scenario file cannot be run (exit status 2), located in the file.
#[derive(Debug)]
pub(crate) struct ScenarioError {
    pub(crate) file: PathBuf,
    /// 1-based; 0 when the file itself is the problem (unreadable).
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl ScenarioError {
    pub(crate) fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        ScenarioError { file: file.to_owned(), line, column: 1, message: message.into() }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}:{}: {}", self.file.display(), self.column, self.message),
        }
    }
}

/// A duration written with its unit: `250ms`, `5s`, `2m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => humantime::parse_duration(s.trim())
                .map(Dur)
                .map_err(|e| D::Error::custom(format!("invalid duration {s:?}: {e} (write e.g. 500ms, 5s, 2m)"))),
            other => Err(D::Error::custom(format!(
                "a duration needs a unit, e.g. `5s` or `500ms`, not {}",
                serde_yaml::to_string(&other).unwrap_or_default().trim()
            ))),
        }
    }
}

/// A plugin config value: any scalar, passed to the plugin as text (`window: 5` is `"5"`).
#[derive(Clone, Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Scalar(s)),
            serde_yaml::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Scalar(b.to_string())),
            _ => Err(D::Error::custom("a plugin config value is a string, number or boolean")),
        }
    }
}

/// Either the word `none` (nothing expected) or what is expected.
#[derive(Clone, Debug)]
pub(crate) enum NoneOr<T> {
    Nothing,
    Some(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for NoneOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) if s == "none" => Ok(NoneOr::Nothing),
            v => serde_yaml::from_value(v).map(NoneOr::Some).map_err(|e| D::Error::custom(format!("`none` or {e}"))),
        }
    }
}

/// A top-level setting only some kinds take; any value is refused, naming the kinds that take it.
#[derive(Debug)]
pub(crate) struct NotFor<const KEY: u8>;

/// `breaker:`, for [`NotFor`].
pub(crate) const BREAKER: u8 = 0;
/// `history:`, for [`NotFor`].
pub(crate) const HISTORY: u8 = 1;

impl<'de, const KEY: u8> Deserialize<'de> for NotFor<KEY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Err(D::Error::custom(match KEY {
            BREAKER => "`breaker:` applies to trip-predicate scenarios only",
            _ => "`history:` applies to anomaly-scorer scenarios only",
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceWire {
    name: String,
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default)]
    endpoint: String,
}

fn default_kind() -> String {
    "http".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<S, B, H> {
    name: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, Scalar>,
    service: Option<ServiceWire>,
    breaker: Option<B>,
    history: Option<H>,
    interval: Option<Dur>,
    steps: Vec<S>,
}

/// A parsed scenario: `S` is the kind's step, `B` its `breaker:` and `H` its `history:` setting ([`NotFor`] where
/// the kind takes none).
#[derive(Debug)]
pub(crate) struct Scenario<S, B, H> {
    pub(crate) file: PathBuf,
    /// `name:`, or the file name.
    pub(crate) name: String,
    pub(crate) config: Vec<(String, String)>,
    /// The line of `config:` (1 when absent), where a refused config is reported.
    pub(crate) config_line: usize,
    pub(crate) service: ServiceInfo,
    pub(crate) breaker: Option<B>,
    pub(crate) history: Option<H>,
    pub(crate) interval: Duration,
    pub(crate) steps: Vec<Step<S>>,
}

/// One step and where it is written.
#[derive(Debug)]
pub(crate) struct Step<S> {
    /// 1-based position in `steps:`.
    pub(crate) number: usize,
    pub(crate) line: usize,
    pub(crate) body: S,
}

impl<S> Step<S> {
    /// An error about this step (exit status 2).
    pub(crate) fn error(&self, file: &Path, message: impl fmt::Display) -> ScenarioError {
        ScenarioError::at(file, self.line, format!("step {}: {message}", self.number))
    }
}

/// Reads and parses `file`.
pub(crate) fn load<S, B, H>(file: &Path) -> Result<Scenario<S, B, H>, ScenarioError>
where
    S: DeserializeOwned,
    B: DeserializeOwned,
    H: DeserializeOwned,
{
    let text = std::fs::read_to_string(file).map_err(|e| ScenarioError::at(file, 0, format!("cannot read: {e}")))?;
    let wire: Wire<S, B, H> = serde_yaml::from_str(&text).map_err(|e| {
        let (line, column, message) = aegis_runtime::config::locate_yaml_error(&text, &e);
        ScenarioError { file: file.to_owned(), line, column, message }
    })?;
    if wire.steps.is_empty() {
        return Err(ScenarioError::at(file, key_line(&text, "steps"), "`steps:` is empty: nothing to test"));
    }
    let lines = step_lines(&text, wire.steps.len());
    let service = wire.service.map_or_else(
        || ServiceInfo { name: "api".into(), kind: "http".into(), endpoint: "http://127.0.0.1:8080/health".into() },
        |s| ServiceInfo { name: s.name, kind: s.kind, endpoint: s.endpoint },
    );
    let name = wire.name.unwrap_or_else(|| {
        file.file_stem().map_or_else(|| file.display().to_string(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        file: file.to_owned(),
        name,
        config: wire.config.into_iter().map(|(k, v)| (k, v.0)).collect(),
        config_line: key_line(&text, "config"),
        service,
        breaker: wire.breaker,
        history: wire.history,
        interval: wire.interval.map_or(DEFAULT_INTERVAL, |d| d.0),
        steps: wire
            .steps
            .into_iter()
            .zip(lines)
            .enumerate()
            .map(|(i, (body, line))| Step { number: i + 1, line, body })
            .collect(),
    })
}

/// The line of top-level `key:`, or 1.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')))
        .map_or(1, |i| i + 1)
}

/// The line each item of the top-level `steps:` block sequence starts on. Serde keeps no positions, so the items
/// are found in the text: the `- ` lines at the indentation of the first one. When that does not give one line per
/// step (a flow sequence `steps: [...]`), every step is reported at the `steps:` line.
fn step_lines(text: &str, count: usize) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = key_line(text, "steps");
    let mut items = Vec::with_capacity(count);
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = line.len() - trimmed.len();
        let item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if item => {
                indent = Some(at);
                items.push(i + 1);
            }
            Some(n) if at == n && item => items.push(i + 1),
            Some(n) if at > n => {}
            _ => break,
        }
    }
    if items.len() == count { items } else { vec![start; count] }
}

/// Gives each step its time: `at:` when written (never before the previous step), else the previous input's time
/// plus the scenario's `interval:`; an expectation without `at:` is checked at the time of the input before it.
#[derive(Debug)]
pub(crate) struct Timeline {
    interval: Duration,
    last: Option<Duration>,
}

impl Timeline {
    pub(crate) fn new(interval: Duration) -> Self {
        Timeline { interval, last: None }
    }

    /// The time of the next input; `at` is its written time, if any.
    pub(crate) fn input(&mut self, at: Option<Dur>) -> Result<Duration, String> {
        let t = match at {
            Some(Dur(t)) => self.not_before(t)?,
            None => self.last.map_or(Duration::ZERO, |l| l + self.interval),
        };
        self.last = Some(t);
        Ok(t)
    }

    /// The time of an expectation that comes with no input.
    pub(crate) fn check(&mut self, at: Option<Dur>) -> Result<Duration, String> {
        let t = match at {
            Some(Dur(t)) => self.not_before(t)?,
            None => self.last.unwrap_or(Duration::ZERO),
        };
        self.last = Some(t);
        Ok(t)
    }

    fn not_before(&self, t: Duration) -> Result<Duration, String> {
        match self.last {
            Some(last) if t < last => Err(format!(
                "`at: {}` is before the previous step's time ({})",
                humantime::format_duration(t),
                humantime::format_duration(last)
            )),
            _ => Ok(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_follow_block_items_and_fall_back_for_flow_sequences() {
        let text = "name: x\nsteps:\n  # first\n  - outcome: ok\n    latency: 5ms\n\n  - expect:\n      state: open\nconfig: {}\n";
        assert_eq!(step_lines(text, 2), vec![4, 7]);
        assert_eq!(step_lines("steps:\n- a\n- b\nname: y\n", 2), vec![2, 3]);
        assert_eq!(step_lines("name: z\nsteps: [a, b]\n", 2), vec![2, 2]);
    }

    #[test]
    fn durations_need_a_unit_and_none_is_a_word() {
        assert_eq!(serde_yaml::from_str::<Dur>("250ms").ok(), Some(Dur(Duration::from_millis(250))));
        assert!(serde_yaml::from_str::<Dur>("5").unwrap_err().to_string().contains("needs a unit"));
        assert!(serde_yaml::from_str::<Dur>("5 parsecs").unwrap_err().to_string().contains("invalid duration"));
        assert!(matches!(serde_yaml::from_str::<NoneOr<u32>>("none"), Ok(NoneOr::Nothing)));
        assert!(matches!(serde_yaml::from_str::<NoneOr<u32>>("7"), Ok(NoneOr::Some(7))));
    }

    #[test]
    fn timeline_spaces_inputs_and_refuses_going_back() {
        let mut t = Timeline::new(Duration::from_secs(2));
        assert_eq!(t.input(None), Ok(Duration::ZERO));
        assert_eq!(t.input(None), Ok(Duration::from_secs(2)));
        assert_eq!(t.check(None), Ok(Duration::from_secs(2)));
        assert_eq!(t.input(Some(Dur(Duration::from_secs(10)))), Ok(Duration::from_secs(10)));
        assert!(t.input(Some(Dur(Duration::from_secs(9)))).unwrap_err().contains("before the previous"));
    }
}
