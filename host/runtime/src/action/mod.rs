//! Recovery actions run when a service's breaker opens: restart (a supervised process or a command), notify (a
//! webhook) or ignore. Actions report what they did; they never panic and are bounded in time.

pub mod notify;

use std::sync::Arc;

use crate::config::ServiceConfig;
use crate::process::{ManagedProcess, run_command};

/// What a restart did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// The supervised process was restarted with this pid.
    Respawned { pid: i32 },
    /// The restart command ran and exited 0 with this output.
    CommandSucceeded { output: String },
    /// Nothing is configured to restart.
    NothingToRestart,
}

impl std::fmt::Display for RestartOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartOutcome::Respawned { pid } => write!(f, "process respawned (pid {pid})"),
            RestartOutcome::CommandSucceeded { output } if output.is_empty() => {
                f.write_str("restart command succeeded")
            }
            RestartOutcome::CommandSucceeded { output } => write!(f, "restart command succeeded: {output}"),
            RestartOutcome::NothingToRestart => f.write_str("nothing to restart"),
        }
    }
}

/// Restarts a service: its supervised process if it has one, else its restart command.
pub async fn restart(service: &ServiceConfig, process: Option<&Arc<ManagedProcess>>) -> Result<RestartOutcome, String> {
    if let Some(process) = process {
        return process.restart().await.map(|pid| RestartOutcome::Respawned { pid });
    }
    match &service.restart {
        Some(r) => run_command(&service.name, &r.command, r.timeout)
            .await
            .map(|output| RestartOutcome::CommandSucceeded { output }),
        None => Ok(RestartOutcome::NothingToRestart),
    }
}
