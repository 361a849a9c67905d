//! Script probe: `sh -c <command>` in its own process group; healthy on exit status 0. The output (truncated)
//! becomes the check's detail; the probe's timeout kills the whole group.

use std::time::Duration;

use super::Detail;
use crate::process::run_command;

#[derive(Debug, Clone)]
pub struct ScriptProbe {
    service: String,
    command: String,
}

impl ScriptProbe {
    pub fn new(service: String, command: String) -> Self {
        ScriptProbe { service, command }
    }

    /// Unlike the other probes this one enforces its own timeout, so the process group is killed, not abandoned.
    pub async fn check(&self, timeout: Duration) -> (bool, Detail) {
        match run_command(&self.service, &self.command, timeout).await {
            Ok(output) if output.is_empty() => (true, Detail::Borrowed("exit 0")),
            Ok(output) => (true, format!("exit 0: {}", first_line(&output)).into()),
            Err(e) => (false, e.into()),
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
