//! The systemd notification protocol (`sd_notify(3)`), spoken directly: one datagram per state change to the
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Without `NOTIFY_SOCKET` every call
//! does nothing, so the same binary runs under systemd (`Type=notify`), another supervisor or a terminal.
//!
//! The supervisor sends `READY=1` once the services are scheduled, `RELOADING=1` (with `MONOTONIC_USEC`, as systemd
//! ≥ 253 expects for `Type=notify-reload`) and then `READY=1` around a reload, `STOPPING=1` at shutdown, and
//! `WATCHDOG=1` every half `WATCHDOG_USEC` while its loop runs. A failed send is logged at debug level and never
//! stops supervision: the notifications are advice to the service manager, not part of supervising.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go; `None` inside when `NOTIFY_SOCKET` is unset or unusable.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`. An unusable value is logged once and turns notifications off.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| match connect(&path) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={}: not notifying systemd: {e}", path.to_string_lossy());
                None
            }
        });
        Notifier { target }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments).
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!("sd_notify {state:?}: {e}");
        }
    }

    pub fn ready(&self) {
        self.notify("READY=1\nSTATUS=supervising");
    }

    pub fn reloading(&self) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the config", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if it is set for this process (`WATCHDOG_PID`
    /// unset or ours) and notifications are on.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        if !self.is_enabled() {
            return None;
        }
        if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok())
            && pid != std::process::id()
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
        Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
    }
}

fn connect(path: &std::ffi::OsStr) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let (socket, addr) = connect(path.as_os_str()).expect("connect");
        let notifier = Notifier { target: Some((socket, addr)) };
        notifier.reloading();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        let text = std::str::from_utf8(&buf[..n]).expect("utf-8");
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");

        let name = format!("@aegis-test-{}", std::process::id());
        let abs = {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&name.as_bytes()[1..]).expect("abstract")
        };
        let server = UnixDatagram::bind_addr(&abs).expect("bind abstract");
        let (socket, addr) = connect(std::ffi::OsStr::new(&name)).expect("connect abstract");
        Notifier { target: Some((socket, addr)) }.ready();
        let n = server.recv(&mut buf).expect("recv");
        assert!(buf[..n].starts_with(b"READY=1"));
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        let off = Notifier { target: None };
        off.ready();
        assert_eq!(off.watchdog_interval(), None);
    }
}
