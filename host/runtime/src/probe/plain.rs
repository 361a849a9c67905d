//! The HTTP probe's client for plain `http://` targets: HTTP/1.1 over keep-alive connections pooled per host, each
//! request driven in the checking task itself through hyper's connection API.
//!
//! reqwest (the probe's client for everything else) hands every request to a separate connection task and back (two
//! task wake-ups a request) and runs it through its redirect and retry layers, which parse the URL again: about a
//! fifth of a probe's CPU (see the README's probe cost). Here the task that checks also writes the request and reads
//! the response, as a bare keep-alive GET would. What it does not do, it leaves to reqwest: a response that redirects
//! is asked again through reqwest (which follows it); `https://`, credentials in the URL and a proxy named in the
//! environment ([`proxied_by_environment`]) keep the probe on reqwest altogether.
//!
//! Owns the pool and the connection handling; must not judge responses (the probe does).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{ACCEPT, HOST, HeaderMap, HeaderValue, LOCATION, USER_AGENT};
use hyper_util::rt::TokioIo;
use reqwest::header::HeaderName;
use reqwest::{Method, Url};
use tokio::net::TcpStream;

use super::error_chain;

/// An idle connection older than this is closed rather than reused (reqwest's default too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host; more are closed. Checks in flight bound how many are ever open at once.
const MAX_IDLE_PER_HOST: usize = 256;
/// A body not kept is still read, up to this much, so that its connection can serve the next check; a longer one
/// costs its connection instead.
const DRAIN_LIMIT: usize = 64 << 10;

type Driver = Connection<TokioIo<TcpStream>, Empty<Bytes>>;

/// One keep-alive connection: the side requests are sent through and the side that does its I/O, which whoever
/// sends a request polls until the response's body has ended.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: Driver,
    /// The I/O side has ended (it must not be polled again).
    ended: bool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// How often putting a connection back also closes the expired ones of every host (a host no longer probed, after a
/// reload removed its services, would otherwise keep its idle connections open).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Idle connections by `host:port`, the most recently used last.
#[derive(Default)]
struct Pool {
    idle: HashMap<String, Vec<Idle>>,
    swept: Option<Instant>,
}

impl Pool {
    fn pop(&mut self, key: &str) -> Option<Idle> {
        self.idle.get_mut(key)?.pop()
    }

    /// Keeps `conn` as idle since `now`, closing what expired or is over the host's cap.
    fn push(&mut self, key: String, conn: Conn, now: Instant) {
        let expired = |i: &Idle| now.saturating_duration_since(i.since) >= IDLE_TIMEOUT;
        if self.swept.is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY) {
            self.idle.retain(|_, idle| {
                idle.retain(|i| !expired(i));
                !idle.is_empty()
            });
            self.swept = Some(now);
        }
        let idle = self.idle.entry(key).or_default();
        // The oldest sit at the front: drop those past their time, and any beyond the cap.
        let old = idle.iter().take_while(|i| expired(i)).count();
        let over = (idle.len() - old + 1).saturating_sub(MAX_IDLE_PER_HOST);
        idle.drain(..old + over);
        idle.push(Idle { conn, since: now });
    }
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Mutex::default);

/// Whether the environment names a proxy for `http://` (`HTTP_PROXY`, `ALL_PROXY`, either case), which reqwest
/// honours: probes then all go through reqwest.
pub(super) fn proxied_by_environment() -> bool {
    static PROXIED: LazyLock<bool> = LazyLock::new(|| {
        ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
    });
    *PROXIED
}

/// What came back.
pub(super) enum Answer {
    /// The status, and the body (up to `max_body` bytes) when asked for, or why it could not be read.
    Response { status: u16, body: Option<Result<Vec<u8>, String>> },
    /// A redirect: for reqwest to follow.
    Redirect,
}

/// Sends one request to `url` (an `http://` URL) and reads its answer; `keep_body` keeps up to `max_body` bytes of
/// the body (a body not kept is read too, up to [`DRAIN_LIMIT`], so that the connection can be reused).
pub(super) async fn send(
    url: &Url,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
    keep_body: bool,
    max_body: usize,
) -> Result<Answer, String> {
    let host = url.host_str().ok_or_else(|| format!("{url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let key = format!("{host}:{port}");
    // A pooled connection the server closed meanwhile fails before any answer: a request that may be repeated is
    // then sent again once on a new connection (reqwest's pool does the same for requests it never sent).
    if let Some(conn) = take(&key) {
        match exchange(conn, build(url, host, method, headers)?, keep_body, max_body).await {
            Err(_) if method.is_idempotent() => {}
            other => return finish(key, other),
        }
    }
    let conn = connect(host, port).await?;
    finish(key, exchange(conn, build(url, host, method, headers)?, keep_body, max_body).await)
}

fn finish(key: String, result: Result<(Answer, Option<Conn>), String>) -> Result<Answer, String> {
    let (answer, reusable) = result?;
    if let Some(conn) = reusable {
        put(key, conn);
    }
    Ok(answer)
}

fn build(
    url: &Url,
    host: &str,
    method: &Method,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<hyper::Request<Empty<Bytes>>, String> {
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut request = hyper::Request::builder()
        .method(method.clone())
        .uri(target)
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {}", error_chain(&e)))?;
    let map: &mut HeaderMap = request.headers_mut();
    for (name, value) in headers {
        map.append(name, value.clone());
    }
    if !map.contains_key(HOST) {
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let value = HeaderValue::from_str(&authority).map_err(|e| format!("invalid host {authority:?}: {e}"))?;
        map.insert(HOST, value);
    }
    map.entry(USER_AGENT).or_insert(HeaderValue::from_static(super::USER_AGENT));
    map.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
    Ok(request)
}

/// The most recently used idle connection to `key` that is still open and ready for a request.
fn take(key: &str) -> Option<Conn> {
    loop {
        // Looked at outside the pool's lock: `ready` reads from the socket.
        let Idle { mut conn, since } = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop(key)?;
        if since.elapsed() < IDLE_TIMEOUT && ready(&mut conn) {
            return Some(conn);
        }
    }
}

/// Whether `conn` can take a request now: its I/O side has not ended (the server may have closed it while it sat in
/// the pool) and its sender is ready. Polled once, without waiting.
fn ready(conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if conn.ended || Pin::new(&mut conn.driver).poll(&mut cx).is_ready() {
        return false;
    }
    matches!(conn.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
}

fn put(key: String, conn: Conn) {
    POOL.lock().unwrap_or_else(|p| p.into_inner()).push(key, conn, Instant::now());
}

async fn connect(host: &str, port: u16) -> Result<Conn, String> {
    // An address is used as it is; a name is resolved and its addresses tried in turn.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let stream = TcpStream::connect((bare, port)).await.map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    // Requests are small and waited for: no Nagle delay (reqwest sets the same).
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {}", error_chain(&e)))?;
    Ok(Conn { sender, driver, ended: false })
}

/// One request and its answer on `conn`; the connection back when it can serve another.
async fn exchange(
    mut conn: Conn,
    request: hyper::Request<Empty<Bytes>>,
    keep_body: bool,
    max_body: usize,
) -> Result<(Answer, Option<Conn>), String> {
    let sent = conn.sender.send_request(request);
    let response = match driven(&mut conn, pin!(sent)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) | Err(Some(e)) => return Err(error_chain(&e)),
        Err(None) => return Err("connection closed before the response".to_owned()),
    };
    let status = response.status().as_u16();
    // The redirects reqwest follows (its default policy).
    if matches!(status, 301 | 302 | 303 | 307 | 308) && response.headers().contains_key(LOCATION) {
        return Ok((Answer::Redirect, None));
    }
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let mut read = 0usize;
    let limit = if keep_body { max_body } else { DRAIN_LIMIT.min(max_body) };
    let drained = poll_fn(|cx| read_body(&mut body, cx, keep_body.then_some(&mut kept), &mut read, limit));
    let (body, complete) = match driven(&mut conn, pin!(drained)).await {
        Ok(Ok(complete)) => (Ok(kept), complete),
        Ok(Err(e)) | Err(Some(e)) => (Err(error_chain(&e)), false),
        // The connection ended with the body (no length given, or `Connection: close`): complete, not reusable.
        Err(None) => (Ok(kept), false),
    };
    let answer = Answer::Response { status, body: keep_body.then_some(body) };
    // Reusable once the body was read to its end and the connection is ready for the next request.
    let reusable = (complete && ready(&mut conn)).then_some(conn);
    Ok((answer, reusable))
}

/// Reads `body` until its end or until `max_body` bytes were read; true at its end.
fn read_body(
    body: &mut Incoming,
    cx: &mut Context<'_>,
    mut kept: Option<&mut Vec<u8>>,
    read: &mut usize,
    max_body: usize,
) -> Poll<Result<bool, hyper::Error>> {
    loop {
        if *read >= max_body {
            // A body this long is not read further: the connection is dropped instead.
            return Poll::Ready(Ok(false));
        }
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let room = max_body - *read;
                    let part = &data[..data.len().min(room)];
                    *read += data.len();
                    if let Some(kept) = kept.as_deref_mut() {
                        kept.extend_from_slice(part);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(true)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Runs `step` (which needs the connection's I/O to progress) while polling the connection's I/O side. `Err`: the I/O
/// side ended (with its error, or `None` when the connection closed) before the step could finish.
async fn driven<F: Future>(conn: &mut Conn, mut step: Pin<&mut F>) -> Result<F::Output, Option<hyper::Error>> {
    poll_fn(|cx| {
        if let Poll::Ready(out) = step.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if conn.ended {
            return Poll::Ready(Err(None));
        }
        match Pin::new(&mut conn.driver).poll(cx) {
            Poll::Pending => Poll::Pending,
            // The I/O side is done: whatever the step was waiting for is there now or never comes.
            Poll::Ready(result) => {
                conn.ended = true;
                match step.as_mut().poll(cx) {
                    Poll::Ready(out) => Poll::Ready(Ok(out)),
                    Poll::Pending => Poll::Ready(Err(result.err())),
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real connection to `address` (a server that accepts and never answers: the pool does not talk on idle
    /// connections).
    async fn conn(address: std::net::SocketAddr) -> Conn {
        connect(&address.ip().to_string(), address.port()).await.expect("connect")
    }

    #[tokio::test]
    async fn expired_connections_are_closed_for_every_host_and_a_host_keeps_at_most_its_cap() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let t0 = Instant::now();
        let mut pool = Pool::default();
        pool.push("gone:80".to_owned(), conn(server).await, t0);
        pool.push("kept:80".to_owned(), conn(server).await, t0 + Duration::from_secs(10));
        // Past the first one's idle timeout and a sweep period later: the host no longer probed loses it.
        pool.push("other:80".to_owned(), conn(server).await, t0 + IDLE_TIMEOUT + Duration::from_secs(1));
        let mut hosts: Vec<_> = pool.idle.keys().cloned().collect();
        hosts.sort();
        assert_eq!(hosts, ["kept:80", "other:80"]);

        let t1 = t0 + IDLE_TIMEOUT + Duration::from_secs(2);
        for _ in 0..MAX_IDLE_PER_HOST + 2 {
            pool.push("busy:80".to_owned(), conn(server).await, t1);
        }
        assert_eq!(pool.idle["busy:80"].len(), MAX_IDLE_PER_HOST);
        assert!(pool.pop("busy:80").is_some() && pool.pop("nowhere:80").is_none());
    }
}
