//! `aegis-host`: run the supervisor, check configs, inspect plugins, control a running host (`status`, `events`,
//! `alerts`, `force`, `reset`, `plugins`, `reload`, see [`ctl`]); completions and a man page from the same clap
//! definition.
//!
//! `--config FILE` without a subcommand runs the supervisor; before or after a control command it names the running
//! host's config, whose `admin:` section says where its API listens (`aegis-host --config F status` and
//! `aegis-host status --config F` are the same).

mod ctl;
mod lab;
mod limits;
mod memory;
mod replay;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_plugin::{PluginHost, SandboxLimits};
use aegis_runtime::{Config, Supervisor};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Exit status for an invalid config or bad command-line input.
pub(crate) const EXIT_CONFIG: u8 = 2;
/// Exit status when a `run` guest traps: what a native process aborted by SIGABRT reports, as wasmtime's CLI does.
const EXIT_TRAP: u8 = 134;

#[derive(Parser, Debug)]
#[command(name = "aegis-host", version, about = "Service supervisor and resilience engine with WASM policy plugins")]
struct Cli {
    /// Config file to run (YAML); with a control command, the running host's config (for its admin address).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Logs as text for people, or as one JSON object per line for a log shipper.
    ///
    /// JSON lines carry the event's fields and those of its spans (e.g. `service`). Logs go to stderr; `AEGIS_LOG`
    /// sets the level (e.g. `debug`).
    #[arg(long, global = true, value_enum, env = "AEGIS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file and print the resolved services; exit status 2 if invalid.
    CheckConfig { file: PathBuf },
    /// Inspect policy plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print a shell completion script to stdout.
    ///
    /// For example: `aegis-host completions bash > /etc/bash_completion.d/aegis-host`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout.
    ///
    /// For example: `aegis-host man | man -l -`.
    Man,
    /// Run a WASI command component (e.g. a plugin's test binary) with this process's stdio, arguments and
    /// environment, and exit with its status; the cargo runner of the plugin workspace.
    Run {
        /// The component (.wasm), then the guest's arguments (its argv[0] is the file name). A `--` before the file
        /// is skipped, as `cargo component` passes one; everything after the file reaches the guest untouched,
        /// `--` included.
        // One positional, not two: clap keeps a `--` only inside a value list that allows hyphen values.
        #[arg(required = true, value_name = "FILE [ARGS]", trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Replay a service's recorded checks (and anomaly samples) through candidate plugins and compare with what its
    /// config's policies did; exit status 0 when the candidate agrees, 1 when it diverges, 2 for bad input.
    Replay(replay::ReplayArgs),
    /// Run log files through a candidate log-rule plugin and the config's rules, matches per rule side by side;
    /// exit status 0 when it matches the same lines, 1 when not, 2 for bad input.
    ReplayLogs(replay::LogsArgs),
    #[command(flatten)]
    Ctl(ctl::CtlCommand),
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// List the plugins of a directory and whether each loads.
    List {
        #[arg(default_value = "plugins")]
        dir: PathBuf,
    },
    /// Load one component and print the policy world it implements.
    Check { file: PathBuf },
    /// Run a plugin through scenario files (timelines of inputs and expected decisions); exit status 1 on a mismatch.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Scenario files (YAML), or directories of them.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Create a plugin crate (policy, unit test, scenario) that builds on its own.
    New {
        /// The plugin's name (also its crate's and directory's).
        name: String,
        #[arg(long, value_enum)]
        kind: lab::scaffold::Kind,
        /// Where to create the crate's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK crate (plugins/sdk of an Aegis repository); default: the one this binary was built with.
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => check_config(&file),
        (Some(Command::Completions { shell }), _) => {
            clap_complete::generate(shell, &mut Cli::command(), "aegis-host", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        (Some(Command::Man), _) => man_page(),
        (Some(Command::Plugin { command }), _) => plugin(command),
        (Some(Command::Run { command }), _) => match command.split_first() {
            Some((file, args)) => run_command(Path::new(file), args),
            None => ExitCode::from(EXIT_CONFIG),
        },
        (Some(Command::Replay(args)), config) => replay::run(args, config),
        (Some(Command::ReplayLogs(args)), config) => replay::logs::run(args, config),
        (Some(Command::Ctl(command)), config) => ctl::run(command, config),
        (None, Some(file)) => run(&file),
        (None, None) => {
            eprintln!("aegis-host: nothing to do: pass --config <FILE> to supervise, or see --help");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AEGIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_target(false).with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields at the top level beside `span` (the innermost) and `spans` (outermost first), each
        // carrying its fields, e.g. `{"message":"supervising",...,"span":{"service":"web","name":"run_service"}}`.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(true).init(),
    }
}

fn man_page() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match clap_mangen::Man::new(Cli::command()).render(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aegis-host: cannot write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &Path) -> Result<Config, ExitCode> {
    Config::load(file).map_err(|e| {
        eprintln!("aegis-host: invalid config: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check_config(file: &Path) -> ExitCode {
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    print!("{}", config.summary());
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn plugin(command: PluginCommand) -> ExitCode {
    let host = || {
        PluginHost::new(SandboxLimits::default()).map_err(|e| {
            eprintln!("aegis-host: {e}");
            ExitCode::FAILURE
        })
    };
    match command {
        PluginCommand::Test { plugin, scenarios } => lab::scenario::test(&plugin, &scenarios),
        PluginCommand::New { name, kind, dir, sdk } => lab::scaffold::new(&name, kind, &dir, sdk.as_deref()),
        PluginCommand::List { dir } => match host().map(|host| host.load_dir(&dir)) {
            Err(code) => code,
            Ok(Ok(report)) => {
                for p in &report.loaded {
                    println!("{}\t{}\t{} bytes\t{}", p.name, p.kind, p.size_bytes, p.path.display());
                }
                for e in &report.failed {
                    println!("error\t{e}");
                }
                if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Ok(Err(e)) => {
                eprintln!("aegis-host: {e}");
                ExitCode::FAILURE
            }
        },
        PluginCommand::Check { file } => match host().map(|host| host.inspect(&file)) {
            Err(code) => code,
            Ok(Ok(p)) => {
                println!(
                    "{}: {} plugin `{}` (aegis:policy@{}), {} bytes",
                    file.display(),
                    p.kind,
                    p.name,
                    aegis_plugin::WIT_VERSION,
                    p.size_bytes
                );
                if let Some(version) = &p.version {
                    println!("  version: {version}");
                }
                let caps = &p.capabilities;
                if caps.is_empty() {
                    println!("  capabilities: none");
                } else {
                    println!("  capabilities (must be granted): {}", caps.names().join(", "));
                }
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("aegis-host: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_command(file: &Path, args: &[String]) -> ExitCode {
    match aegis_plugin::run_command(file, args) {
        // WASI exit statuses are 0..=255 in practice; anything else is reported as a plain failure.
        Ok(status) => u8::try_from(status).map_or(ExitCode::FAILURE, ExitCode::from),
        Err(e @ aegis_plugin::CommandError::Trap { .. }) => {
            eprintln!("aegis-host: {e}");
            ExitCode::from(EXIT_TRAP)
        }
        Err(e @ aegis_plugin::CommandError::Engine(_)) => {
            eprintln!("aegis-host: {e}");
            ExitCode::FAILURE
        }
        // The file itself is the problem: unreadable, not a component, or not a wasi:cli/command.
        Err(e) => {
            eprintln!("aegis-host: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(file: &Path) -> ExitCode {
    memory::tune_allocator();
    limits::raise_open_files();
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aegis-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let supervisor = match Supervisor::new(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("aegis-host: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(config = %file.display(), services = supervisor.handles().len(), "aegis-host started");
        match supervisor.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aegis-host: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before the supervisor starts (and says READY=1
/// to systemd), not at the future's first poll: a SIGTERM sent right after start-up must still shut down cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    /// The next delivery of `signal`; never, if its handler could not be installed.
    async fn next(signal: &mut Option<Signal>) {
        match signal {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = next(&mut interrupt) => {}
            _ = next(&mut terminate) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_format_is_a_global_flag() {
        let cli =
            Cli::try_parse_from(["aegis-host", "check-config", "f.yaml", "--log-format", "json"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["aegis-host", "--log-format", "xml", "man"]).is_err());
    }

    #[test]
    fn config_names_the_host_to_control_before_or_after_the_command() {
        let before = Cli::try_parse_from(["aegis-host", "--config", "a.yaml", "status"]).expect("parses");
        assert_eq!(before.config, Some(PathBuf::from("a.yaml")));
        let after = Cli::try_parse_from(["aegis-host", "status", "--config", "b.yaml", "--json"]).expect("parses");
        match after.command {
            Some(Command::Ctl(ctl::CtlCommand::Status { target })) => {
                assert_eq!(target.config, Some(PathBuf::from("b.yaml")));
                assert!(target.json);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["aegis-host", "reset"]).is_err(), "a service or --all");
        assert!(Cli::try_parse_from(["aegis-host", "reset", "web", "--all"]).is_err());
        assert!(Cli::try_parse_from(["aegis-host", "force", "web", "half-open"]).is_ok());
    }
}
