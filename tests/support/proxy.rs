//! A TCP proxy on a free loopback port that forwards to one target and can cut its clients off, e.g. to cut one
//! aegis-host replica off from Redis while the others keep their connections. Plain threads (two per forwarded
//! connection), std only.
//!
//! Pausing closes every forwarded connection both ways; while paused, new connections are either accepted and held
//! without an answer (a blackhole: the client only learns from its own timeouts) or accepted and closed at once.
//! Resuming closes the held ones and forwards new connections again.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a paused proxy does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseMode {
    /// Accepts it and never answers (held until `resume` or drop).
    Blackhole,
    /// Accepts it and closes it at once.
    Close,
}

#[derive(Debug, Default)]
struct State {
    paused: Option<PauseMode>,
    stopped: bool,
    /// Both ends of every forwarded connection, to cut them.
    forwarded: Vec<(u64, TcpStream, TcpStream)>,
    next_id: u64,
    /// Connections accepted while paused in `Blackhole` mode.
    held: Vec<TcpStream>,
}

/// A forwarding proxy, stopped (every connection closed) when dropped.
#[derive(Debug)]
pub struct PausableProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    acceptor: Option<JoinHandle<()>>,
}

impl PausableProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> PausableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn(move || accept_loop(&listener, target, &shared))
            .expect("spawn the proxy thread");
        PausableProxy { addr, state, acceptor: Some(acceptor) }
    }

    /// Where clients connect: `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every forwarded connection and blackholes new ones (see [`PauseMode::Blackhole`]).
    pub fn pause(&self) {
        self.pause_with(PauseMode::Blackhole);
    }

    /// Cuts every forwarded connection and treats new ones according to `mode`.
    pub fn pause_with(&self, mode: PauseMode) {
        let mut state = lock(&self.state);
        state.paused = Some(mode);
        for (_, client, upstream) in state.forwarded.drain(..) {
            close(&client);
            close(&upstream);
        }
    }

    /// Closes the connections held while paused and forwards new connections again.
    pub fn resume(&self) {
        let mut state = lock(&self.state);
        state.paused = None;
        state.held.drain(..).for_each(|held| close(&held));
    }

    /// How many connections it forwards right now.
    pub fn open_connections(&self) -> usize {
        lock(&self.state).forwarded.len()
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.state);
            state.stopped = true;
            for (_, client, upstream) in state.forwarded.drain(..) {
                close(&client);
                close(&upstream);
            }
            state.held.drain(..).for_each(|held| close(&held));
        }
        // Wakes the blocking accept so the thread sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<Mutex<State>>) {
    for client in listener.incoming() {
        let client = match client {
            Ok(client) => client,
            // E.g. the client reset the connection before it was accepted, or too many open files for a moment.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted || e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if lock(state).stopped {
            close(&client);
            return;
        }
        if refused_while_paused(state, &client) {
            continue;
        }
        // Connecting outside the lock: a slow target must not hold up pause/resume.
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            close(&client);
            continue;
        };
        forward(state, client, upstream);
    }
}

/// Holds or closes `client` when the proxy is paused; `true` when it did.
fn refused_while_paused(state: &Mutex<State>, client: &TcpStream) -> bool {
    let mut state = lock(state);
    match state.paused {
        None => false,
        Some(PauseMode::Close) => {
            close(client);
            true
        }
        Some(PauseMode::Blackhole) => {
            match client.try_clone() {
                Ok(held) => state.held.push(held),
                Err(_) => close(client),
            }
            true
        }
    }
}

/// Registers the pair and starts one copying thread per direction; closes both if the proxy was paused meanwhile.
fn forward(state: &Arc<Mutex<State>>, client: TcpStream, upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let id = {
        let mut guard = lock(state);
        let clones = client.try_clone().and_then(|c| Ok((c, upstream.try_clone()?)));
        match clones {
            Ok((c, u)) if guard.paused.is_none() && !guard.stopped => {
                let id = guard.next_id;
                guard.next_id += 1;
                guard.forwarded.push((id, c, u));
                id
            }
            _ => {
                drop(guard);
                close(&client);
                close(&upstream);
                return;
            }
        }
    };
    let (Ok(client_in), Ok(upstream_in)) = (client.try_clone(), upstream.try_clone()) else {
        close(&client);
        close(&upstream);
        return;
    };
    let down = Arc::clone(state);
    let spawned = std::thread::Builder::new()
        .name("proxy-down".into())
        .spawn(move || pump(upstream_in, client, id, &down))
        .and_then(|_| {
            let up = Arc::clone(state);
            std::thread::Builder::new().name("proxy-up".into()).spawn(move || pump(client_in, upstream, id, &up))
        });
    if spawned.is_err() {
        unregister(state, id);
    }
}

/// Copies `from` to `to` until either side ends, then closes both and forgets the pair.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, state: &Mutex<State>) {
    let _ = std::io::copy(&mut from, &mut to);
    close(&from);
    close(&to);
    unregister(state, id);
}

fn unregister(state: &Mutex<State>, id: u64) {
    let mut state = lock(state);
    if let Some(i) = state.forwarded.iter().position(|(other, _, _)| *other == id) {
        let (_, client, upstream) = state.forwarded.swap_remove(i);
        close(&client);
        close(&upstream);
    }
}

fn close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// The state stays usable after a panic elsewhere (it only holds sockets and flags).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisServer;
    use std::io::{Read, Write};

    /// Sends PING on `conn` and reads what comes back within `wait`: `Some(reply)`, `Some("")` when closed, `None`
    /// when nothing came.
    fn ping(conn: &mut TcpStream, wait: Duration) -> Option<String> {
        conn.set_read_timeout(Some(wait)).expect("read timeout");
        if conn.write_all(b"PING\r\n").is_err() {
            return Some(String::new());
        }
        let mut buf = [0u8; 64];
        match conn.read(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(_) => Some(String::new()),
        }
    }

    fn connect(proxy: &PausableProxy) -> TcpStream {
        TcpStream::connect(proxy.addr()).expect("connect to the proxy")
    }

    #[test]
    fn forwards_pauses_both_ways_and_resumes() {
        let redis = RedisServer::start();
        let proxy = PausableProxy::start(redis.addr());
        let wait = Duration::from_secs(2);
        let mut before = connect(&proxy);
        assert_eq!(ping(&mut before, wait).as_deref(), Some("+PONG\r\n"), "forwarded");
        assert_eq!(proxy.open_connections(), 1);

        proxy.pause();
        assert_eq!(ping(&mut before, wait).as_deref(), Some(""), "an open connection is closed by pause");
        let mut during = connect(&proxy);
        assert_eq!(ping(&mut during, Duration::from_millis(300)), None, "blackholed: accepted, never answered");
        assert_eq!(proxy.open_connections(), 0);

        proxy.resume();
        assert_eq!(ping(&mut during, wait).as_deref(), Some(""), "a held connection is closed by resume");
        let mut after = connect(&proxy);
        assert_eq!(ping(&mut after, wait).as_deref(), Some("+PONG\r\n"), "forwarded again");

        proxy.pause_with(PauseMode::Close);
        assert_eq!(ping(&mut after, wait).as_deref(), Some(""), "closed by pause");
        let mut refused = connect(&proxy);
        assert_eq!(ping(&mut refused, wait).as_deref(), Some(""), "closed at once in Close mode");
        proxy.resume();
        assert_eq!(ping(&mut connect(&proxy), wait).as_deref(), Some("+PONG\r\n"));
    }

    #[test]
    fn a_client_ending_its_connection_is_forgotten() {
        let redis = RedisServer::start();
        let proxy = PausableProxy::start(redis.addr());
        let mut conn = connect(&proxy);
        assert_eq!(ping(&mut conn, Duration::from_secs(2)).as_deref(), Some("+PONG\r\n"));
        drop(conn);
        assert!(crate::wait_until(Duration::from_secs(5), || proxy.open_connections() == 0));
    }
}
