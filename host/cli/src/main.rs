//! `aegis-host`: run the supervisor, check configs, inspect plugins.

mod memory;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_plugin::{PluginHost, SandboxLimits};
use aegis_runtime::{Config, Supervisor};
use clap::{Parser, Subcommand};

/// Exit status for an invalid config or bad command-line input.
const EXIT_CONFIG: u8 = 2;
/// Exit status when a `run` guest traps: what a native process aborted by SIGABRT reports, as wasmtime's CLI does.
const EXIT_TRAP: u8 = 134;

#[derive(Parser, Debug)]
#[command(name = "aegis-host", version, about = "Service supervisor and resilience engine with WASM policy plugins")]
struct Cli {
    /// Config file to run (YAML).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => check_config(&file),
        (Some(Command::Plugin { command }), _) => plugin(command),
        (Some(Command::Run { command }), _) => match command.split_first() {
            Some((file, args)) => run_command(Path::new(file), args),
            None => ExitCode::from(EXIT_CONFIG),
        },
        (None, Some(file)) => run(&file),
        (None, None) => {
            eprintln!("aegis-host: nothing to do: pass --config <FILE> to supervise, or see --help");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AEGIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
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
    println!("{}: ok", file.display());
    println!("admin: http://{}/metrics", config.admin_address);
    println!(
        "plugins: {} (deadline {:?}, memory {} MiB)",
        config.plugins.dir.display(),
        config.plugins.limits.deadline,
        config.plugins.limits.memory_bytes >> 20
    );
    for s in &config.services {
        let b = &s.breaker;
        println!("service {}:", s.name);
        println!(
            "  check: {} {} every {:?}, timeout {:?}, retries {}",
            s.probe.kind(),
            s.endpoint,
            s.interval,
            s.timeout,
            s.retries
        );
        println!("  onFailure: {}", s.on_failure.as_str());
        println!(
            "  circuitBreaker: enabled={} failureThreshold={} resetTimeout={:?} successThreshold={} trip={}",
            b.enabled,
            b.failure_threshold,
            b.reset_timeout,
            b.success_threshold,
            b.trip_policy.as_ref().map_or("built-in", |p| p.plugin.as_str())
        );
        match &s.backoff {
            Some(bo) => println!(
                "  backoff: initial={:?} max={:?} multiplier={} jitter={:?}",
                bo.initial, bo.max, bo.multiplier, bo.jitter
            ),
            None => println!("  backoff: disabled"),
        }
        if let Some(p) = &s.process {
            println!("  process: {} {}", p.program, p.args.join(" "));
        }
        if let Some(r) = &s.restart {
            println!("  restart command: {}", r.command);
        }
        if let Some(p) = &s.recovery_policy {
            println!("  recovery strategy: {}", p.plugin);
        }
    }
    let logs = &config.logs;
    if logs.enabled && !logs.settings.files.is_empty() {
        println!("logs: every {:?}, lines cut at {} bytes", logs.settings.poll_interval, logs.settings.max_line_bytes);
        for f in &logs.settings.files {
            println!("  file {} (service {})", f.path, f.service.as_deref().unwrap_or("-"));
        }
        for p in &logs.settings.patterns {
            println!("  pattern {} [{}]: {}", p.name, p.severity, p.regex);
        }
        for name in &logs.plugins {
            println!("  rule plugin {name}");
        }
    }
    let a = &config.anomaly;
    if a.enabled {
        println!("anomaly_detection: every {:?}, history {}, detector {:?}", a.interval, a.history, a.detector);
        for (service, t) in &a.thresholds {
            println!(
                "  {service}: latency > {:?} ms, error rate > {:?}, throughput < {:?}/s",
                t.latency_ms, t.error_rate, t.throughput
            );
        }
        for (service, p) in &a.scorers {
            println!("  {service}: scorer plugin {}", p.plugin);
        }
    }
    let al = &config.alerting;
    println!(
        "alerting: {} (repeat every {:?}, retries {:?}..{:?})",
        if al.targets.is_empty() { "tracked, not sent".to_owned() } else { format!("{:?}", al.targets) },
        al.repeat_interval,
        al.retry_initial,
        al.retry_max
    );
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn plugin(command: PluginCommand) -> ExitCode {
    let host = match PluginHost::new(SandboxLimits::default()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("aegis-host: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        PluginCommand::List { dir } => match host.load_dir(&dir) {
            Ok(report) => {
                for p in &report.loaded {
                    println!("{}\t{}\t{} bytes\t{}", p.name, p.kind, p.size_bytes, p.path.display());
                }
                for e in &report.failed {
                    println!("error\t{e}");
                }
                if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("aegis-host: {e}");
                ExitCode::FAILURE
            }
        },
        PluginCommand::Check { file } => match host.inspect(&file) {
            Ok(p) => {
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
            Err(e) => {
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
