//! systemd's notification protocol (`sd_notify`): one datagram per message to the socket named
//! by `NOTIFY_SOCKET`. Without that variable (not started by systemd as `Type=notify`), nothing
//! is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing::warn;

/// The service manager's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is unset or unusable (said once in the log).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let address = match path.as_encoded_bytes() {
            [b'@', name @ ..] => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
            }
            _ => std::os::unix::net::SocketAddr::from_pathname(&path),
        };
        let socket = UnixDatagram::unbound();
        match (address, socket) {
            (Ok(address), Ok(socket)) => Some(Notifier { socket, address }),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "NOTIFY_SOCKET is set but unusable; no readiness or watchdog messages");
                None
            }
        }
    }

    /// Sends one message (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`).
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Half of `WATCHDOG_USEC`, as systemd recommends, when the watchdog is on for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
