//! The log pipeline: arbitrary bytes, cut into arbitrary chunks, through line splitting (CRLF, the line cap), UTF-8
//! repair and the rule set, as the log monitor runs them. The lines do not depend on how the bytes were chunked and
//! equal a plain reference split; every match carries a bounded excerpt of its line; the monitor's scan, which
//! searches runs of lines at once and matches only the lines the filter points at, finds what matching every line
//! finds.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use aegis_core::policy::Severity;
use aegis_runtime::logs::{
    AtPath, FileSink, Line, LineScan, LineSplitter, MAX_EVENT_LINE_CHARS, Pattern, RuleSet, scan_line,
};

use crate::input::Input;

/// Patterns of the kinds operators write (the examples in config/), plus one from the input.
const PATTERNS: &[(&str, &str)] = &[
    ("panic", r"thread '.*' panicked at"),
    ("oom", r"(?i)out of memory"),
    ("error", r"\bERROR\b"),
    ("replacement", "\u{FFFD}"),
    ("empty", r"^$"),
    ("crlf", r"\r"),
];

pub fn logs(data: &[u8]) {
    let mut input = Input::new(data);
    let max = usize::from(input.byte()) + 1;
    let flags = input.byte();
    let service = (flags & 1 == 1).then_some("api");
    // A pattern of the input's own now and then (in one input of four).
    let own = if flags & 6 == 6 { String::from_utf8_lossy(input.bytes()).into_owned() } else { String::new() };
    // Compiling patterns costs far more than matching: the built-in set is compiled once.
    let own_rules;
    let rules = if own.is_empty() {
        builtin()
    } else {
        let mut patterns = builtin_patterns();
        patterns.push(pattern("own", &own, Some("api")));
        own_rules = match RuleSet::new(&patterns) {
            Ok(rules) => rules,
            Err(e) => {
                assert!(e.to_string().contains("(`own`)"), "a built-in pattern was refused: {e}");
                return;
            }
        };
        &own_rules
    };
    let sizes = input.bytes().to_vec();
    let text = input.rest();
    let flush = sizes.first().is_some_and(|b| b & 1 == 1);
    let lines = split(text, max, &sizes, flush);
    assert_eq!(lines, reference(text, max, flush), "chunks {sizes:?}, max {max}");
    let mut expected = Vec::new();
    for (bytes, cut) in &lines {
        expected.extend(check_scan(rules, service, Line { bytes, cut: *cut }));
    }
    let scanned = monitor_scan(rules, service, text, max, &sizes, flush);
    assert_eq!(scanned.lines, lines.len() as u64, "chunks {sizes:?}, max {max}");
    let found = scanned.found.iter().map(|m| (m.rule.clone(), m.line.clone())).collect::<Vec<_>>();
    assert_eq!(found, expected, "chunks {sizes:?}, max {max}");
}

/// The monitor's scan of `text` fed in chunks as [`split`] feeds it.
fn monitor_scan<'a>(
    rules: &'a RuleSet,
    service: Option<&'a str>,
    text: &[u8],
    max: usize,
    sizes: &[u8],
    flush: bool,
) -> LineScan<'a> {
    let path = Path::new(PATH);
    let mut splitter = LineSplitter::new(max);
    let mut scan = LineScan::new(rules, service, SystemTime::UNIX_EPOCH);
    let mut rest = text;
    for &size in sizes {
        let (chunk, after) = rest.split_at(usize::from(size).min(rest.len()));
        splitter.feed_runs(chunk, &mut AtPath { path, sink: &mut scan });
        rest = after;
    }
    splitter.feed_runs(rest, &mut AtPath { path, sink: &mut scan });
    if flush {
        splitter.flush(&mut |line| scan.line(path, line));
    }
    scan
}

fn builtin_patterns() -> Vec<Pattern> {
    PATTERNS.iter().map(|(name, regex)| pattern(name, regex, None)).collect()
}

fn builtin() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| match RuleSet::new(&builtin_patterns()) {
        Ok(rules) => rules,
        Err(e) => panic!("the built-in patterns do not compile: {e}"),
    })
}

fn pattern(name: &str, regex: &str, service: Option<&str>) -> Pattern {
    Pattern {
        name: name.to_owned(),
        regex: regex.to_owned(),
        severity: Severity::Warning,
        description: None,
        service: service.map(str::to_owned),
    }
}

/// The splitter fed `text` in chunks of the given sizes (the rest in one), flushed at the end if `flush`.
fn split(text: &[u8], max: usize, sizes: &[u8], flush: bool) -> Vec<(Vec<u8>, bool)> {
    let mut splitter = LineSplitter::new(max);
    let mut lines = Vec::new();
    let mut emit = |l: Line<'_>| lines.push((l.bytes.to_vec(), l.cut));
    let mut rest = text;
    for &size in sizes {
        let (chunk, after) = rest.split_at(usize::from(size).min(rest.len()));
        splitter.feed(chunk, &mut emit);
        rest = after;
    }
    splitter.feed(rest, &mut emit);
    if flush {
        splitter.flush(&mut emit);
    }
    lines
}

/// What the lines of `text` are: split at `\n`, one `\r` before it dropped, cut to `max` bytes; the unfinished last
/// line too if `flush` (a rotated file), or if it is already known to be too long.
fn reference(text: &[u8], max: usize, flush: bool) -> Vec<(Vec<u8>, bool)> {
    let mut pieces: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default();
    let mut lines: Vec<(Vec<u8>, bool)> = pieces.into_iter().map(|raw| cap(raw, max)).collect();
    // An unfinished line is emitted once it is longer than `max` and a `\r\n` can no longer make it fit.
    if !last.is_empty() && (flush || last.len() > max + 1) {
        lines.push(cap(last, max));
    }
    lines
}

fn cap(raw: &[u8], max: usize) -> (Vec<u8>, bool) {
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    if line.len() > max { (line[..max].to_vec(), true) } else { (line.to_vec(), false) }
}

const PATH: &str = "/var/log/app.log";

/// Checks one line's matches against the rules and its excerpt; returns them as (rule, excerpt).
fn check_scan(rules: &RuleSet, service: Option<&str>, line: Line<'_>) -> Vec<(String, String)> {
    let path = Path::new(PATH);
    let text = String::from_utf8_lossy(line.bytes);
    let found = scan_line(rules, service, path, line, SystemTime::UNIX_EPOCH);
    let expected: Vec<String> = rules.matches(service, PATH, &text).into_iter().map(|m| m.rule).collect();
    assert_eq!(found.iter().map(|m| m.rule.clone()).collect::<Vec<_>>(), expected);
    // The excerpt: the line's first MAX_EVENT_LINE_CHARS characters, `…` marking any cut (here or by the splitter).
    let end = text.char_indices().nth(MAX_EVENT_LINE_CHARS).map_or(text.len(), |(i, _)| i);
    let excerpt = if line.cut || end < text.len() { format!("{}…", &text[..end]) } else { text.clone().into_owned() };
    for m in &found {
        assert_eq!(m.line, excerpt);
        assert_eq!(m.service.as_deref(), service);
        assert_eq!(m.path, path);
    }
    found.into_iter().map(|m| (m.rule, m.line)).collect()
}
