//! Child processes Aegis runs itself: a supervised service (`process:`) and restart commands. Each runs in its own
//! process group so a stop or a timeout kills everything it started; its output goes to the log line by line.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Mutex, watch};

use crate::config::ProcessConfig;

/// How long a stopped process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Longest output line kept in the log; the rest is cut.
const MAX_LINE: usize = 8 * 1024;

/// A long-running service process that Aegis starts, watches and restarts.
#[derive(Debug)]
pub struct ManagedProcess {
    service: String,
    config: ProcessConfig,
    running: Mutex<Option<Running>>,
    /// Set by [`ManagedProcess::close`] (shutdown, or the service removed): nothing starts the process again. Read
    /// under the `running` lock, so a start either finishes before the close takes the lock (and the close stops
    /// what it started) or sees the flag.
    closed: AtomicBool,
}

#[derive(Debug)]
struct Running {
    pid: Pid,
    /// Set before Aegis stops the process on purpose, so its exit is not reported as a crash.
    stopping: Arc<AtomicBool>,
    /// Becomes `Some` when the process exits.
    exited: watch::Receiver<Option<ExitStatus>>,
}

impl ManagedProcess {
    pub fn new(service: String, config: ProcessConfig) -> Self {
        ManagedProcess { service, config, running: Mutex::new(None), closed: AtomicBool::new(false) }
    }

    /// Starts the process if it is not running. Returns its pid. Refused once the process is closed.
    pub async fn start(&self) -> Result<i32, String> {
        let mut running = self.running.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(format!("`{}` not started: its supervision has ended", self.config.program));
        }
        if let Some(r) = running.as_ref().filter(|r| r.exited.borrow().is_none()) {
            return Ok(r.pid.as_raw_nonzero().get());
        }
        let mut command = Command::new(&self.config.program);
        command
            .args(&self.config.args)
            .envs(&self.config.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Not killed when the `Child` is dropped at runtime shutdown: stopping is explicit (`stop`), so that
            // `shutdown.stopChildren: false` can leave the process running.
            .kill_on_drop(false);
        if let Some(cwd) = &self.config.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start `{}`: {e}", self.config.program))?;
        let raw = child.id().and_then(|id| i32::try_from(id).ok()).ok_or("started process has no pid")?;
        let pid = Pid::from_raw(raw).ok_or("started process has pid 0")?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(self.service.clone(), "stdout", out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(self.service.clone(), "stderr", err));
        }
        let (tx, rx) = watch::channel(None);
        let service = self.service.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stopped_on_purpose = Arc::clone(&stopping);
        tokio::spawn(async move {
            let status = child.wait().await;
            match &status {
                Ok(s) if stopped_on_purpose.load(Ordering::Acquire) => {
                    tracing::info!(service, pid = raw, "process stopped: {s}")
                }
                Ok(s) => tracing::warn!(service, pid = raw, "process exited: {s}"),
                Err(e) => tracing::error!(service, pid = raw, "cannot wait for process: {e}"),
            }
            let _ = tx.send(status.ok().or_else(|| Some(ExitStatus::default())));
        });
        tracing::info!(service = %self.service, pid = raw, "started `{}`", self.config.program);
        *running = Some(Running { pid, stopping, exited: rx });
        Ok(raw)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, grace: Duration) {
        let mut running = self.running.lock().await;
        if let Some(r) = running.take() {
            r.stopping.store(true, Ordering::Release);
            terminate_group(&self.service, r.pid, r.exited, grace).await;
        }
    }

    /// Stops the process for good (shutdown, or the service removed): SIGTERM, SIGKILL after `grace`, and no start
    /// after this — a restart under way when the close began ends without starting a new process, and one that
    /// started a process just before is stopped with it.
    pub async fn close(&self, grace: Duration) {
        self.closed.store(true, Ordering::Release);
        self.stop(grace).await;
    }

    /// Forgets the process without stopping it (shutdown with `stopChildren: false`): it keeps running in its own
    /// process group after the host exits. Its stdout and stderr were pipes to the host: after the host is gone a
    /// write there fails with EPIPE (or SIGPIPE for programs that do not ignore it), so a service meant to outlive
    /// the host should log to a file.
    pub async fn detach(&self) {
        self.closed.store(true, Ordering::Release);
        let mut running = self.running.lock().await;
        if let Some(r) = running.take() {
            r.stopping.store(true, Ordering::Release);
        }
    }

    /// Stops (if running) and starts again. Returns the new pid.
    pub async fn restart(&self) -> Result<i32, String> {
        self.restart_within(STOP_GRACE).await
    }

    async fn restart_within(&self, grace: Duration) -> Result<i32, String> {
        self.stop(grace).await;
        self.start().await
    }

    /// The pid while the process runs.
    pub async fn pid(&self) -> Option<i32> {
        let running = self.running.lock().await;
        running.as_ref().filter(|r| r.exited.borrow().is_none()).map(|r| r.pid.as_raw_nonzero().get())
    }
}

async fn terminate_group(service: &str, pid: Pid, mut exited: watch::Receiver<Option<ExitStatus>>, grace: Duration) {
    if exited.borrow().is_some() {
        return;
    }
    // The group may already be gone (ESRCH); that is the outcome we want.
    let _ = kill_process_group(pid, Signal::TERM);
    let stopped = tokio::time::timeout(grace, exited.wait_for(Option::is_some)).await.is_ok();
    if !stopped {
        tracing::warn!(service, pid = pid.as_raw_nonzero().get(), "did not stop within {grace:?}, killing");
        let _ = kill_process_group(pid, Signal::KILL);
        let _ = exited.wait_for(Option::is_some).await;
    }
}

/// Runs `sh -c command` in its own process group, killing the group at `timeout`. Returns the combined output
/// (truncated) on exit status 0, or an error saying what happened.
pub async fn run_command(service: &str, command: &str, timeout: Duration) -> Result<String, String> {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `sh -c {command}`: {e}"))?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let text = truncate(text.trim());
            if output.status.success() {
                Ok(text)
            } else {
                Err(format!("`{command}` failed ({}): {text}", output.status))
            }
        }
        Ok(Err(e)) => Err(format!("`{command}`: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = kill_process_group(pid, Signal::KILL);
            }
            tracing::warn!(service, "restart command timed out after {timeout:?}, killed");
            Err(format!("`{command}` timed out after {}", humantime::format_duration(timeout)))
        }
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_LINE {
        return text.to_owned();
    }
    let cut = text.floor_char_boundary(MAX_LINE);
    format!("{}…", &text[..cut])
}

async fn forward_lines(service: String, stream: &'static str, pipe: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                tracing::info!(service, stream, "{}", truncate(line.trim_end()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_output_status_and_timeout() {
        assert_eq!(run_command("t", "echo hi; echo there >&2", Duration::from_secs(5)).await, Ok("hi\nthere".into()));
        let err = run_command("t", "echo bad; exit 3", Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains("exit status: 3") && err.contains("bad"), "{err}");
        let started = std::time::Instant::now();
        let err = run_command("t", "sleep 30", Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "the timeout killed the command");
    }

    #[tokio::test]
    async fn managed_process_restarts_with_a_new_pid_and_stops_its_group() {
        let config = ProcessConfig {
            program: "sh".into(),
            args: vec!["-c".into(), "sleep 60 & sleep 60".into()],
            cwd: None,
            env: Default::default(),
        };
        let p = ManagedProcess::new("t".into(), config);
        let first = p.start().await.expect("starts");
        assert_eq!(p.start().await, Ok(first), "start is idempotent while running");
        let second = p.restart().await.expect("restarts");
        assert_ne!(first, second);
        p.stop(Duration::from_secs(5)).await;
        assert_eq!(p.pid().await, None);
        // The whole group is gone, including the backgrounded grandchild.
        // Orphaned members are reaped by init shortly after; poll briefly.
        let group = Pid::from_raw(second).expect("pid");
        let mut gone = false;
        for _ in 0..50 {
            if kill_process_group(group, Signal::KILL).is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "process group {second} still exists after stop");
    }

    /// Whether a process whose command line holds `marker` is alive (zombies count as gone).
    fn alive_with(marker: &str) -> bool {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_during_a_restart_leaves_no_process_behind() {
        // Ignores SIGTERM, so the restart's stop waits out its grace: the close arrives in the middle of it.
        let marker = format!("{}", 1_000_000 + std::process::id());
        let config = ProcessConfig {
            program: "sh".into(),
            args: vec!["-c".into(), format!("trap '' TERM; exec sleep {marker}")],
            cwd: None,
            env: Default::default(),
        };
        let p = Arc::new(ManagedProcess::new("t".into(), config));
        p.start().await.expect("starts");
        // Let the shell install its trap before the restart's SIGTERM.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let restarting = tokio::spawn({
            let p = Arc::clone(&p);
            async move { p.restart_within(Duration::from_millis(300)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.close(Duration::from_millis(300)).await;
        let restarted = restarting.await.expect("restart task");
        assert!(restarted.is_err(), "the restart started nothing after the close: {restarted:?}");
        assert_eq!(p.pid().await, None);
        assert_eq!(p.start().await.map_err(|e| e.contains("supervision has ended")), Err(true));
        let mut gone = false;
        for _ in 0..50 {
            if !alive_with(&marker) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "no `sleep {marker}` is left running");
    }
}
