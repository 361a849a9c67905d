//! `aegis-host replay` and `aegis-host replay-logs`: the policy lab's replay of recorded history through candidate
//! policies, compared with the config's own. Reads the history the running host recorded (`storage.history`) through
//! [`aegis_runtime::history::HistoryReader`], drives [`aegis_core::replay`] for trips and recovery, [`scorer`] for
//! anomaly scorers and [`logs`] for log rules. Never touches the network or the running host.
//!
//! Exit statuses: 0 when the candidate agrees with the baseline, 1 when it diverges, 2 for bad input (an invalid
//! config, an unknown service, a plugin that does not load or refuses its config, unreadable history).

pub mod logs;
mod policies;
mod range;
mod report;
mod scorer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_core::replay::{first_divergence, replay};
use aegis_runtime::Config;
use aegis_runtime::history::HistoryReader;
use anyhow::Context;
use clap::Args;

pub use self::logs::LogsArgs;
use self::policies::{Candidate, parse_pairs};
use self::report::{Header, Shown};
use crate::EXIT_CONFIG;

const EXIT_DIVERGED: u8 = 1;

/// `aegis-host replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The config the host ran with: its service, breaker, recovery and `storage.path` (where history is).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The service whose history to replay.
    #[arg(long, short)]
    pub service: String,
    /// Replay this far back from now (e.g. `24h`, `90m`); default: everything recorded.
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    pub since: Option<String>,
    /// Start of the stretch to replay: RFC 3339 (`2026-11-30T18:00:00Z`) or ms since the Unix epoch.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the stretch (default: now).
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// Candidate trip-predicate component (.wasm); default: the service's own trip policy.
    #[arg(long, value_name = "FILE")]
    pub trip_plugin: Option<PathBuf>,
    /// A `key=value` of the candidate trip predicate's config (repeat for more).
    #[arg(long, value_name = "KEY=VALUE")]
    pub plugin_config: Vec<String>,
    /// Candidate recovery-strategy component (.wasm); default: the service's own recovery.
    #[arg(long, value_name = "FILE")]
    pub recovery_plugin: Option<PathBuf>,
    /// A `key=value` of the candidate recovery strategy's config (repeat for more).
    #[arg(long, value_name = "KEY=VALUE", requires = "recovery_plugin")]
    pub recovery_config: Vec<String>,
    /// Candidate anomaly-scorer component (.wasm): replays the recorded anomaly samples through it and the
    /// service's configured scorers, and compares the alerts that would have fired.
    #[arg(long, value_name = "FILE")]
    pub scorer_plugin: Option<PathBuf>,
    /// A `key=value` of the candidate scorer's config (repeat for more).
    #[arg(long, value_name = "KEY=VALUE", requires = "scorer_plugin")]
    pub scorer_config: Vec<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `aegis-host replay`; `config` is a `--config` given before the subcommand.
pub fn run(args: ReplayArgs, config: Option<PathBuf>) -> ExitCode {
    match replay_command(args, config) {
        Ok(agrees) => ExitCode::from(if agrees { 0 } else { EXIT_DIVERGED }),
        Err(e) => {
            eprintln!("aegis-host replay: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The config named before or after the subcommand.
fn config_file(own: Option<PathBuf>, outer: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    own.or(outer).context("--config FILE is required (the config the host ran with)")
}

fn load_config(file: &Path) -> anyhow::Result<Config> {
    Config::load(file).map_err(|e| anyhow::anyhow!("invalid config: {e}"))
}

/// Whether the candidate agrees; `Err` for bad input.
fn replay_command(args: ReplayArgs, outer: Option<PathBuf>) -> anyhow::Result<bool> {
    if args.trip_plugin.is_none() && args.recovery_plugin.is_none() && args.scorer_plugin.is_none() {
        anyhow::bail!("nothing to compare: give --trip-plugin, --recovery-plugin or --scorer-plugin");
    }
    if args.trip_plugin.is_none() && !args.plugin_config.is_empty() {
        anyhow::bail!("--plugin-config configures --trip-plugin, which is missing");
    }
    let file = config_file(args.config.clone(), outer)?;
    let config = load_config(&file)?;
    let service = config.service(&args.service).with_context(|| {
        let names: Vec<&str> = config.services.iter().map(|s| &*s.name).collect();
        format!("{}: no service `{}` (services: {})", file.display(), args.service, names.join(", "))
    })?;
    let range = range::resolve(args.since.as_deref(), args.from.as_deref(), args.to.as_deref(), range::now_ms())?;
    let reader = HistoryReader::open(&config.storage_path)
        .with_context(|| format!("cannot read the history of {}", config.storage_path.display()))?;
    let mut agrees = true;
    let mut documents = Vec::new();
    if args.trip_plugin.is_some() || args.recovery_plugin.is_some() {
        let outcomes = reader
            .outcomes(&service.name, range.from_ms, range.to_ms)
            .with_context(|| format!("cannot read the recorded checks of {}", service.name))?;
        let baseline = policies::baseline(&config, service)?;
        let trip = match &args.trip_plugin {
            Some(file) => Some(Candidate { file, config: parse_pairs("--plugin-config", &args.plugin_config)? }),
            None => None,
        };
        let recovery = match &args.recovery_plugin {
            Some(file) => Some(Candidate { file, config: parse_pairs("--recovery-config", &args.recovery_config)? }),
            None => None,
        };
        let candidate = policies::candidate(&config, service, &baseline, trip, recovery)?;
        let settings =
            |predicate| aegis_runtime::supervisor::breaker_settings(&service.name, &service.breaker, predicate);
        let base_run = replay(&outcomes, settings(baseline.predicate.clone()), &baseline.recovery, range.to_ms);
        let cand_run = replay(&outcomes, settings(candidate.predicate.clone()), &candidate.recovery, range.to_ms);
        let divergence = first_divergence(&base_run, &cand_run);
        agrees &= divergence.is_none();
        // Without --from/--since the range starts at the epoch: show where the record starts instead.
        let shown =
            range::Range { from_ms: outcomes.first().map_or(range.from_ms, |o| o.at_ms.max(range.from_ms)), ..range };
        let header = Header { service: &service.name, range: shown, outcomes: outcomes.len() };
        let b = Shown { trip: &baseline.trip_label, recovery: &baseline.recovery_label, run: &base_run };
        let c = Shown { trip: &candidate.trip_label, recovery: &candidate.recovery_label, run: &cand_run };
        if args.json {
            documents.push(("breaker", report::json(&header, &b, &c, divergence.as_ref())));
        } else {
            print!("{}", report::table(&header, &b, &c, divergence.as_ref()));
        }
    }
    if let Some(file) = &args.scorer_plugin {
        let samples = reader
            .samples(&service.name, range.from_ms, range.to_ms)
            .with_context(|| format!("cannot read the recorded anomaly samples of {}", service.name))?;
        let pairs = parse_pairs("--scorer-config", &args.scorer_config)?;
        let result = scorer::compare(&config, service, file, pairs, &samples)?;
        agrees &= result.agrees();
        if args.json {
            documents.push(("anomaly", result.json()));
        } else {
            if !documents.is_empty() || args.trip_plugin.is_some() || args.recovery_plugin.is_some() {
                println!();
            }
            print!("{}", result.table());
        }
    }
    if args.json {
        let mut out = serde_json::Map::new();
        for (key, doc) in documents {
            out.insert(key.to_owned(), doc);
        }
        out.insert("agrees".to_owned(), agrees.into());
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out))?);
    }
    Ok(agrees)
}
