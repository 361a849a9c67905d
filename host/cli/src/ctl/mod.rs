//! The control commands (`status`, `events`, `alerts`, `force`, `reset`, `plugins`, `reload`): a client of the
//! running aegis-host's admin API, never a second way into its state. The address and token come from the
//! `admin:` section of `--config FILE`, or from `--admin URL` and `AEGIS_ADMIN_TOKEN`; `--json` prints the API's
//! JSON as it came. Rendering for people lives in [`table`].
//!
//! Exit statuses: `status` answers 0 healthy, 1 degraded, 2 unhealthy and 3 when the state is unknown (the host is
//! not running, refused the request, or the config is invalid), as monitoring plugins do. The other commands answer
//! 0 on success, 1 when the request failed and 2 for an invalid config.

mod client;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use self::client::Client;

/// `status` exit statuses (see the module doc).
const HEALTHY: u8 = 0;
const DEGRADED: u8 = 1;
const UNHEALTHY: u8 = 2;
const UNKNOWN: u8 = 3;

/// Where the running aegis-host is and how to print its answers.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Config file of the running host: its `admin:` section gives the address and token.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Admin API URL (e.g. `http://127.0.0.1:9797`), instead of the config's; the token then comes from
    /// `AEGIS_ADMIN_TOKEN`.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Show every service: state, success rate, last check, restarts.
    ///
    /// Exit status: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown (host not reachable, token refused, bad config).
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Show recent events, oldest first.
    Events {
        /// Only this service's events (`-`: events of no service).
        #[arg(long, short)]
        service: Option<String>,
        /// How many of the most recent events.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        /// Keep printing new events as they happen (polls every second) until interrupted.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show pending and firing alerts.
    Alerts {
        #[command(flatten)]
        target: Target,
    },
    /// Force a service's breaker open or closed, into half-open, or back to automatic (needs the token).
    Force {
        service: String,
        state: ForceState,
        #[command(flatten)]
        target: Target,
    },
    /// Reset a service's breaker (or every breaker) and its restart limit (needs the token).
    Reset {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        service: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show loaded plugins: kind, version, calls by result, quarantine, which services bind them.
    Plugins {
        #[command(flatten)]
        target: Target,
    },
    /// Reload the config file of the running host, as SIGHUP does, and print what changed (needs the token).
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForceState {
    Open,
    Closed,
    HalfOpen,
    Auto,
}

impl ForceState {
    fn as_str(self) -> &'static str {
        match self {
            ForceState::Open => "open",
            ForceState::Closed => "closed",
            ForceState::HalfOpen => "half-open",
            ForceState::Auto => "auto",
        }
    }
}

impl CtlCommand {
    fn target(&self) -> &Target {
        match self {
            CtlCommand::Status { target }
            | CtlCommand::Events { target, .. }
            | CtlCommand::Alerts { target }
            | CtlCommand::Force { target, .. }
            | CtlCommand::Reset { target, .. }
            | CtlCommand::Plugins { target }
            | CtlCommand::Reload { target } => target,
        }
    }
}

/// Runs a control command; `config` is the top-level `--config`, used when the command has none of its own.
pub fn run(command: CtlCommand, config: Option<PathBuf>) -> ExitCode {
    let failure = if matches!(command, CtlCommand::Status { .. }) { UNKNOWN } else { 1 };
    let mut target = command.target().clone();
    if target.config.is_none() {
        target.config = config;
    }
    let client = match Client::new(&target) {
        Ok(c) => c,
        Err(client::Setup::Config(e)) => {
            eprintln!("aegis-host: invalid config: {e}");
            return ExitCode::from(if failure == UNKNOWN { UNKNOWN } else { crate::EXIT_CONFIG });
        }
        Err(client::Setup::Other(e)) => {
            eprintln!("aegis-host: {e:#}");
            return ExitCode::from(failure);
        }
    };
    match execute(&command, &client, target.json) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aegis-host: {e:#}");
            ExitCode::from(failure)
        }
    }
}

fn execute(command: &CtlCommand, client: &Client, json: bool) -> anyhow::Result<u8> {
    let print = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match command {
        CtlCommand::Status { .. } => {
            let health = client.get("/api/v1/circuit-breakers/health")?;
            let services = client.get("/api/v1/services")?;
            let code = match health["status"].as_str() {
                Some("healthy") => HEALTHY,
                Some("degraded") => DEGRADED,
                Some("unhealthy") => UNHEALTHY,
                _ => UNKNOWN,
            };
            if json {
                print(&json!({ "health": health, "services": services["services"] }));
            } else {
                let list = services["services"].as_array().cloned().unwrap_or_default();
                let last: Vec<Option<u64>> =
                    list.iter().map(|s| s["name"].as_str().and_then(|name| client.last_check_ms(name))).collect();
                print!("{}", table::status(&health, &list, &last, table::now_ms()));
            }
            Ok(code)
        }
        CtlCommand::Events { service, limit, follow, .. } => {
            let query = |limit: u32| {
                let mut q = format!("/api/v1/events?limit={limit}");
                if let Some(s) = service {
                    q.push_str(&format!("&service={}", client::encode(s)));
                }
                q
            };
            let first = client.get(&query(*limit))?;
            // The API answers newest first; people read oldest first.
            let mut events = first["events"].as_array().cloned().unwrap_or_default();
            events.reverse();
            let mut seen = events.iter().filter_map(|e| e["id"].as_i64()).max().unwrap_or(0);
            emit(&events, json);
            if !*follow {
                return Ok(0);
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let page = client.get(&query(1000))?;
                let mut fresh: Vec<Value> = page["events"]
                    .as_array()
                    .map(|a| a.iter().filter(|e| e["id"].as_i64().is_some_and(|id| id > seen)).cloned().collect())
                    .unwrap_or_default();
                fresh.reverse();
                seen = fresh.iter().filter_map(|e| e["id"].as_i64()).max().unwrap_or(seen);
                emit(&fresh, json);
            }
        }
        CtlCommand::Alerts { .. } => {
            let alerts = client.get("/api/v1/alerts")?;
            if json {
                print(&alerts);
            } else {
                print!(
                    "{}",
                    table::alerts(alerts["alerts"].as_array().map_or(&[][..], Vec::as_slice), table::now_ms())
                );
            }
            Ok(0)
        }
        CtlCommand::Force { service, state, .. } => {
            let path = format!("/api/v1/circuit-breakers/{}/force-state", client::encode(service));
            let answer = client.post(&path, Some(json!({ "state": state.as_str() })))?;
            if json {
                print(&answer);
            } else {
                println!("{service}: {}", answer["state"].as_str().unwrap_or("?"));
            }
            Ok(0)
        }
        CtlCommand::Reset { service, all, .. } => {
            let answer = match service {
                Some(s) if !*all => {
                    client.post(&format!("/api/v1/circuit-breakers/{}/reset", client::encode(s)), None)?
                }
                _ => client.post("/api/v1/circuit-breakers/reset-all", None)?,
            };
            if json {
                print(&answer);
            } else if let Some(n) = answer["reset"].as_u64() {
                println!("reset {n} breakers");
            } else {
                println!(
                    "{}: reset, {}",
                    answer["service"].as_str().unwrap_or("?"),
                    answer["state"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
        CtlCommand::Plugins { .. } => {
            let plugins = client.get("/api/v1/plugins")?;
            if json {
                print(&plugins);
            } else {
                print!("{}", table::plugins(plugins["plugins"].as_array().map_or(&[][..], Vec::as_slice)));
            }
            Ok(0)
        }
        CtlCommand::Reload { .. } => {
            let answer = client.post("/api/v1/reload", None).context("reload")?;
            if json {
                print(&answer);
            } else {
                let n = |k: &str| answer[k].as_u64().unwrap_or(0);
                println!(
                    "reloaded: {} added, {} changed, {} removed, {} services",
                    n("added"),
                    n("changed"),
                    n("removed"),
                    n("services")
                );
                for note in answer["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    println!("note: {note}");
                }
            }
            Ok(0)
        }
    }
}

/// Prints events: one JSON object per line with `--json` (so `--follow --json` streams), else a table row each.
fn emit(events: &[Value], json: bool) {
    if json {
        for e in events {
            println!("{e}");
        }
    } else {
        print!("{}", table::events(events, table::now_ms()));
    }
}
