//! A tiny blocking RESP2 client for the test support only: one connection per command, plain TCP or TLS (rustls with
//! a given CA file), `AUTH` first when a password is given. The tests use it to read what the replicas wrote and
//! `INFO commandstats`; the product's Redis client is the `redis` crate, never this.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Connect, read and write timeout of one command: a test waiting longer has a bug to report, not to wait out.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...` (the text after the `-`).
    Error(String),
    Int(i64),
    /// A bulk string; `None` is the nil reply.
    Bulk(Option<Vec<u8>>),
    /// `None` is the nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as `redis-cli` prints it to a pipe: strings as text, integers in decimal, nil as an empty string,
    /// array elements one per line; `Err` with the message of an error reply.
    pub fn text(&self) -> Result<String, String> {
        Ok(match self {
            Reply::Status(s) => s.clone(),
            Reply::Error(e) => return Err(e.clone()),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(b) => String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned(),
            Reply::Array(items) => {
                let lines: Result<Vec<String>, String> = items.iter().flatten().map(Reply::text).collect();
                lines?.join("\n")
            }
        })
    }
}

/// How to reach a server: its address, the CA to verify its certificate with (TLS), and the password.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub addr: SocketAddr,
    pub ca_file: Option<&'a Path>,
    pub password: Option<&'a str>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `target`, authenticates when it has a password, sends `args` and reads the reply. `Err` says what
/// failed (connect, TLS handshake, AUTH refused, I/O); an error reply to `args` itself is `Ok(Reply::Error)`.
pub(crate) fn command(target: Target<'_>, args: &[&str]) -> Result<Reply, String> {
    let addr = target.addr;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let stream = match target.ca_file {
        None => Stream::Plain(tcp),
        Some(ca_file) => Stream::Tls(Box::new(rustls::StreamOwned::new(tls_client(ca_file, addr.ip())?, tcp))),
    };
    let mut conn = BufReader::new(stream);
    if let Some(password) = target.password {
        let auth = round_trip(&mut conn, &["AUTH", password]).map_err(|e| format!("AUTH at {addr}: {e}"))?;
        if let Reply::Error(e) = auth {
            return Err(format!("AUTH at {addr} refused: {e}"));
        }
    }
    round_trip(&mut conn, args).map_err(|e| format!("{} at {addr}: {e}", args.first().unwrap_or(&"")))
}

fn tls_client(ca_file: &Path, ip: IpAddr) -> Result<rustls::ClientConnection, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("read CA file {}: {e}", ca_file.display()))?
    {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip }.into());
    rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())
}

fn round_trip(conn: &mut BufReader<Stream>, args: &[&str]) -> std::io::Result<Reply> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&request)?;
    conn.get_mut().flush()?;
    read_reply(conn)
}

fn read_reply(conn: &mut impl BufRead) -> std::io::Result<Reply> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = Vec::new();
    conn.read_until(b'\n', &mut line)?;
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(invalid(format!("connection closed or truncated reply: {:?}", String::from_utf8_lossy(&line))));
    };
    let (kind, rest) = body.split_first().ok_or_else(|| invalid("empty reply line".to_owned()))?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    let number = |s: &str| s.parse::<i64>().map_err(|_| invalid(format!("bad length or integer {s:?}")));
    Ok(match kind {
        b'+' => Reply::Status(rest),
        b'-' => Reply::Error(rest),
        b':' => Reply::Int(number(&rest)?),
        b'$' => match usize::try_from(number(&rest)?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut data = vec![0; len + 2];
                conn.read_exact(&mut data)?;
                data.truncate(len);
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match usize::try_from(number(&rest)?) {
            Err(_) => Reply::Array(None),
            Ok(len) => Reply::Array(Some((0..len).map(|_| read_reply(conn)).collect::<std::io::Result<_>>()?)),
        },
        other => return Err(invalid(format!("unknown reply type {:?}", char::from(*other)))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_kind() {
        let mut input: &[u8] = b"*5\r\n+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n";
        let reply = read_reply(&mut input).expect("reply");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Int(42),
                Reply::Bulk(Some(b"a\r\n".to_vec())),
                Reply::Bulk(None),
            ]))
        );
        assert_eq!(reply.text(), Err("ERR no".into()));
        assert_eq!(Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(None)])).text(), Ok("1\n".into()));
        assert!(read_reply(&mut &b"+OK"[..]).is_err(), "a truncated reply is an error");
    }
}
