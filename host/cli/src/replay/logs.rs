//! `aegis-host replay-logs --config FILE --rule-plugin X.wasm FILE...`: log files, line by line as the log monitor
//! reads them (the same line splitting, length cap and lossy decoding), through the config's rules (its built-in
//! patterns and log-rule plugins, bound as the supervisor binds them) and through the candidate log-rule plugin
//! alone; matches per rule side by side. The candidate agrees when it matches the same lines as the config's rules.
//! A file listed under `logs.files` with a `service` is scanned as that service's, so service-scoped patterns apply.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use aegis_core::policy::{Contains, LogRule, Severity};
use aegis_plugin::PluginHost;
use aegis_runtime::Config;
use aegis_runtime::logs::{Line, LineSplitter, RuleSet, scan_line};
use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::policies::{parse_pairs, plugin_host};
use super::{EXIT_DIVERGED, config_file, load_config};
use crate::EXIT_CONFIG;

/// Lines shown per side among those only one side matched.
const SHOWN_LINES: usize = 5;

/// `aegis-host replay-logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The config whose `logs:` rules are the baseline.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Candidate log-rule component (.wasm).
    #[arg(long, value_name = "FILE")]
    pub rule_plugin: PathBuf,
    /// A `key=value` of the candidate's config (repeat for more).
    #[arg(long, value_name = "KEY=VALUE")]
    pub plugin_config: Vec<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The log files to replay.
    #[arg(required = true, value_name = "LOG")]
    pub files: Vec<PathBuf>,
}

/// Runs `aegis-host replay-logs`.
pub fn run(args: LogsArgs, outer: Option<PathBuf>) -> ExitCode {
    match replay_logs(args, outer) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_DIVERGED),
        Err(e) => {
            eprintln!("aegis-host replay-logs: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Matches of one side.
#[derive(Debug, Default)]
struct Tally {
    /// Matches per rule.
    per_rule: BTreeMap<String, u64>,
    /// `(file index, line number)` of every matched line.
    lines: Vec<(usize, u64)>,
}

fn replay_logs(args: LogsArgs, outer: Option<PathBuf>) -> anyhow::Result<bool> {
    let file = config_file(args.config.clone(), outer)?;
    let config = load_config(&file)?;
    let (baseline, _baseline_plugins) = baseline_rules(&config)?;
    let host = plugin_host(&config)?;
    let info =
        host.load_file(&args.rule_plugin).with_context(|| format!("cannot load {}", args.rule_plugin.display()))?;
    let pairs = parse_pairs("--plugin-config", &args.plugin_config)?;
    // The live fallback of a log-rule plugin: a rule that matches nothing.
    let fallback: Arc<dyn LogRule> = Arc::new(Contains::new(info.name.clone(), Severity::Info, Vec::<String>::new()));
    let rule = host
        .log_rule(&info.name, "replay-logs", pairs, fallback)
        .with_context(|| format!("{}: the log rule refused its config", args.rule_plugin.display()))?;
    let candidate = RuleSet::new(&[]).context("empty rule set")?.with_rule(Arc::new(rule), None);
    let (mut base, mut cand) = (Tally::default(), Tally::default());
    let mut total = 0u64;
    let mut texts: BTreeMap<(usize, u64), String> = BTreeMap::new();
    for (index, path) in args.files.iter().enumerate() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let service =
            config.logs.settings.files.iter().find(|f| Path::new(&f.path) == path).and_then(|f| f.service.as_deref());
        let mut number = 0u64;
        let mut splitter = LineSplitter::new(config.logs.settings.max_line_bytes);
        let mut scan = |line: Line<'_>| {
            number += 1;
            for (rules, tally) in [(&baseline, &mut base), (&candidate, &mut cand)] {
                let found = scan_line(rules, service, path, line, SystemTime::UNIX_EPOCH);
                if !found.is_empty() {
                    tally.lines.push((index, number));
                    texts.entry((index, number)).or_insert_with(|| found[0].line.clone());
                }
                for m in found {
                    *tally.per_rule.entry(m.rule).or_default() += 1;
                }
            }
        };
        splitter.feed(&bytes, &mut scan);
        splitter.flush(&mut scan);
        total += number;
    }
    let agrees = base.lines == cand.lines;
    let only = |a: &Tally, b: &Tally| -> Vec<(usize, u64)> {
        a.lines.iter().filter(|l| b.lines.binary_search(l).is_err()).copied().collect()
    };
    let (only_base, only_cand) = (only(&base, &cand), only(&cand, &base));
    let at = |&(i, n): &(usize, u64)| format!("{}:{n}", args.files[i].display());
    if args.json {
        let side = |t: &Tally, only: &[(usize, u64)]| {
            json!({
                "per_rule": t.per_rule,
                "lines_matched": t.lines.len(),
                "only_here": only.iter().map(|l| json!({"line": at(l), "text": texts.get(l)})).collect::<Vec<_>>(),
            })
        };
        let doc = json!({
            "lines": total,
            "baseline": side(&base, &only_base),
            "candidate": side(&cand, &only_cand),
            "agrees": agrees,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "replay-logs: {total} lines in {} file(s)", args.files.len());
        let _ = writeln!(out, "  baseline:  the rules of {}", file.display());
        let _ = writeln!(out, "  candidate: {}\n", args.rule_plugin.display());
        let _ = writeln!(out, "   {:<32}  {:>10}  {:>10}", "rule", "baseline", "candidate");
        let rules: std::collections::BTreeSet<&String> = base.per_rule.keys().chain(cand.per_rule.keys()).collect();
        for rule in rules {
            let count = |t: &Tally| t.per_rule.get(rule).copied().unwrap_or(0);
            let _ = writeln!(out, "   {rule:<32}  {:>10}  {:>10}", count(&base), count(&cand));
        }
        let _ = writeln!(out, "   {:<32}  {:>10}  {:>10}", "lines matched", base.lines.len(), cand.lines.len());
        for (label, only) in [("only the baseline matched", &only_base), ("only the candidate matched", &only_cand)] {
            if !only.is_empty() {
                let _ = writeln!(out, "\n{label} ({}):", only.len());
                for l in only.iter().take(SHOWN_LINES) {
                    let _ = writeln!(out, "   {}  {}", at(l), texts.get(l).map_or("", String::as_str));
                }
            }
        }
        let verdict = if agrees {
            "no divergence: the candidate matches the same lines"
        } else {
            "the candidate matches other lines"
        };
        let _ = writeln!(out, "\n{verdict}");
        print!("{out}");
    }
    Ok(agrees)
}

/// The config's log rules as the supervisor builds them: the patterns, then the log-rule plugins of `logs.plugins`
/// from the plugin directory (a plugin that cannot be bound is left out, as live), and the host they are bound in
/// (to be kept while they are called: its epoch ticker bounds every call).
fn baseline_rules(config: &Config) -> anyhow::Result<(RuleSet, Option<PluginHost>)> {
    let mut rules = RuleSet::new(&config.logs.settings.patterns).context("the config's log patterns")?;
    if config.logs.plugins.is_empty() {
        return Ok((rules, None));
    }
    let host = plugin_host(config)?;
    host.load_dir(&config.plugins.dir)
        .with_context(|| format!("cannot read the plugin directory {}", config.plugins.dir.display()))?;
    for name in &config.logs.plugins {
        let fallback: Arc<dyn LogRule> = Arc::new(Contains::new(name.clone(), Severity::Info, Vec::<String>::new()));
        match host.log_rule(name, "logs", Vec::new(), fallback) {
            Ok(rule) => rules = rules.with_rule(Arc::new(rule), None),
            Err(e) => eprintln!("warning: log rule plugin skipped, as aegis-host would: {e}"),
        }
    }
    Ok((rules, Some(host)))
}
