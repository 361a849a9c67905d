//! `aegis-host plugin test PLUGIN.wasm SCENARIO...`: runs a plugin through scenario files — timelines of the inputs
//! its kind gets live (probe outcomes, failures and attempts, metric samples, log lines, alerts) with the decisions
//! expected at given points — and prints a diff of every expectation that did not hold.
//!
//! The plugin is loaded and called through the same adapters and sandbox as in a live host (a trip predicate even
//! through the same breaker); the kind comes from the world the component implements. Exit status: 0 when every
//! scenario passed, 1 when an expectation failed (or the plugin trapped), 2 when a scenario file or the plugin
//! cannot be used. A directory argument stands for the `*.yaml` files in it.

mod alert;
mod anomaly;
mod file;
mod log_rule;
mod recovery;
mod report;
mod trip;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_plugin::{PluginHost, PluginKind, SandboxLimits};

use self::file::ScenarioError;
use self::report::Report;
use crate::EXIT_CONFIG;

pub(crate) fn test(plugin: &Path, scenarios: &[PathBuf]) -> ExitCode {
    let host = match PluginHost::new(SandboxLimits::default()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("aegis-host: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = match host.load_file(plugin) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("aegis-host: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let files = match expand(scenarios) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("aegis-host: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (mut passed, mut failed, mut invalid) = (0, 0, 0);
    for file in &files {
        match run(&host, &info.name, info.kind, file) {
            Ok(report) => {
                print!("{report}");
                if report.passed() {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("aegis-host: invalid scenario: {e}");
                invalid += 1;
            }
        }
    }
    println!(
        "{} {}: {passed} passed, {failed} failed, {invalid} invalid ({} plugin {})",
        files.len(),
        if files.len() == 1 { "scenario" } else { "scenarios" },
        info.kind,
        info.name
    );
    match (invalid, failed) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_CONFIG),
    }
}

fn run(host: &PluginHost, plugin: &str, kind: PluginKind, file: &Path) -> Result<Report, ScenarioError> {
    match kind {
        PluginKind::TripPredicate => trip::run(host, plugin, file),
        PluginKind::RecoveryStrategy => recovery::run(host, plugin, file),
        PluginKind::LogRule => log_rule::run(host, plugin, file),
        PluginKind::AnomalyScorer => anomaly::run(host, plugin, file),
        PluginKind::AlertFormatter => alert::run(host, plugin, file),
    }
}

/// The scenario files: each argument, or the `*.yaml`/`*.yml` files of a directory argument (sorted).
fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut files = Vec::new();
    for arg in args {
        if !arg.is_dir() {
            files.push(arg.clone());
            continue;
        }
        let entries = std::fs::read_dir(arg).map_err(|e| ScenarioError::at(arg, 0, format!("cannot list: {e}")))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        if found.is_empty() {
            return Err(ScenarioError::at(arg, 0, "no scenario files (*.yaml) in this directory"));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}
