//! Where the admin server runs: its own thread, with a one-thread Tokio runtime at a lower CPU priority and a cap on
//! open connections, so that admin traffic never takes the probes' CPU or sockets first.
//!
//! Probing is what Aegis is for; answering `/metrics` or `/api/v1/services` comes second. Served from the probes'
//! runtime, four connections looping on `/metrics` at 1 000 services cut probing to 35 % of its schedule: every
//! request ran on a worker the probes needed. Here the admin side has one thread, its nice value raised by
//! [`NICENESS`] (Linux then gives the probe workers about nine times its share of a busy CPU), and at most
//! [`MAX_CONNECTIONS`] connections, each a file descriptor the probes could need; further clients wait in the
//! listen backlog.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

/// How much the admin thread's nice value is raised (Linux's nice values are per thread).
pub const NICENESS: i32 = 10;
/// Admin connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long shutdown waits for the admin server to finish its requests.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The running admin server; [`AdminServer::stop`] ends it.
#[derive(Debug)]
pub struct AdminServer {
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<()>,
}

impl AdminServer {
    /// Serves `app` on `listener` from a thread of its own until [`AdminServer::stop`].
    pub fn start(listener: std::net::TcpListener, app: Router) -> io::Result<AdminServer> {
        listener.set_nonblocking(true)?;
        let (stop, mut stop_rx) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("aegis-admin".to_owned()).spawn(move || {
            lower_priority();
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => Limited { listener: l, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) },
                    Err(e) => {
                        tracing::error!("admin server not started: {e}");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!("admin server stopped: {e}");
                }
            });
            let _ = done_tx.send(());
        })?;
        Ok(AdminServer { stop, done })
    }

    /// Stops accepting, lets requests under way finish (waiting at most a few seconds) and ends the thread.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_WAIT, self.done).await.is_err() {
            tracing::warn!("the admin server did not stop within {STOP_WAIT:?}; leaving it");
        }
    }
}

/// Raises this thread's nice value by [`NICENESS`]. Best effort: where it cannot, the admin server runs at the
/// probes' priority, still on its own thread.
fn lower_priority() {
    let raised = rustix::process::getpriority_process(None)
        .and_then(|nice| rustix::process::setpriority_process(None, (nice + NICENESS).min(19)));
    if let Err(e) = raised {
        tracing::debug!("admin thread keeps its priority: {e}");
    }
}

/// A listener that accepts only while fewer than [`MAX_CONNECTIONS`] of its connections are open.
struct Limited {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Listener for Limited {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Counted, std::net::SocketAddr) {
        // Never closed: an error would only mean accepting without a slot.
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok();
        let (stream, addr) = Listener::accept(&mut self.listener).await;
        // Responses are written whole; Nagle's delay would only hold back their last segment.
        let _ = stream.set_nodelay(true);
        (Counted { stream, _slot: slot }, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admin connection, holding its slot until it closes.
struct Counted {
    stream: TcpStream,
    _slot: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_thread_runs_at_a_lower_priority_than_the_probes() {
        let before = rustix::process::getpriority_process(None).expect("read nice");
        let nice = std::thread::spawn(|| {
            lower_priority();
            rustix::process::getpriority_process(None).expect("read nice")
        })
        .join()
        .expect("thread");
        assert_eq!(nice, (before + NICENESS).min(19));
        assert_eq!(rustix::process::getpriority_process(None).expect("read nice"), before, "only that thread");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let mut limited = Limited {
            listener: TcpListener::from_std(std_listener).expect("listener"),
            slots: Arc::new(Semaphore::new(2)),
        };
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let first = limited.accept().await;
        let second = limited.accept().await;
        let wait = Duration::from_millis(200);
        assert!(tokio::time::timeout(wait, limited.accept()).await.is_err(), "the third waits");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), limited.accept()).await;
        assert!(third.is_ok(), "accepted once a slot freed");
        drop(second);
    }
}
