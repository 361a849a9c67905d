//! Reload requests from the admin API to the supervisor loop. The admin server runs on a thread of its own and must
//! not touch the running services; it sends a [`ReloadRequest`] and waits for the loop's answer: what changed, or why
//! the file was refused (the located config error).

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the supervisor loop; one is served at a time, and a reload takes a moment.
const QUEUE: usize = 4;

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    /// Services running after the reload.
    pub services: usize,
    /// Other sections applied (`logs`, `anomaly_detection`, `alerting`), and settings that wait for a restart.
    pub notes: Vec<String>,
}

/// One request: the reply carries the summary, or the error that refused the file.
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<ReloadSummary, String>>,
}

/// The sending side, held in [`crate::state::Shared`].
#[derive(Clone, Debug)]
pub struct ReloadRequests(mpsc::Sender<ReloadRequest>);

impl ReloadRequests {
    pub fn channel() -> (ReloadRequests, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (ReloadRequests(tx), rx)
    }

    /// Asks the supervisor loop to reload and waits for its answer. `Err(None)`: the loop is not running (or is
    /// busy with more requests than it queues).
    pub async fn request(&self) -> Result<ReloadSummary, Option<String>> {
        let (reply, answer) = oneshot::channel();
        self.0.try_send(ReloadRequest { reply }).map_err(|_| None)?;
        answer.await.map_err(|_| None)?.map_err(Some)
    }
}
