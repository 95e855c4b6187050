//! How many connections the screen holds: in total, and from each client, so that one device
//! on the network (or a kiosk reloading in a loop) cannot take every connection and leave the
//! member screen blank. A connection over either limit is closed as soon as it is accepted,
//! before it costs more than its socket.
//!
//! A client is its IPv4 address, or its IPv6 /64 network: one device can hold many IPv6
//! addresses in its network (privacy addresses), and would otherwise count as many clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections held at once; one more is closed as soon as it is accepted. A front desk has a
/// member screen or two and a staff page; event streams count.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections held at once from one client. A browser opens at most 6 to one server, a page
/// holds one event stream: this leaves room for a kiosk, a staff page and a scraper on one
/// device, and lets at least four devices in whatever one of them does.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// One client, as the limits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(peer: IpAddr) -> Client {
        match peer.to_canonical() {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                Client(IpAddr::V6(network.into()))
            }
            v4 => Client(v4),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The connections held, by client.
#[derive(Clone, Debug)]
pub struct Limits(Arc<Mutex<Held>>);

#[derive(Debug)]
struct Held {
    total: usize,
    max_total: usize,
    max_per_client: usize,
    by_client: HashMap<Client, usize>,
    /// The total limit was said in the log (once a run).
    said_full: bool,
    /// Clients whose limit was said, until all their connections have ended.
    said: std::collections::HashSet<Client>,
}

/// What becomes of a new connection.
#[derive(Debug)]
pub enum Admitted {
    /// Held until the guard is dropped.
    Yes(Connection),
    /// Over the total limit; `say`: the first time, for the log.
    Full { say: bool },
    /// Over this client's limit; `say`: the first time since its connections were below it.
    ClientFull { say: bool },
}

/// A connection counted while it lasts.
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    client: Client,
}

impl Limits {
    pub fn new(max_total: usize, max_per_client: usize) -> Limits {
        Limits(Arc::new(Mutex::new(Held {
            total: 0,
            max_total,
            max_per_client,
            by_client: HashMap::new(),
            said_full: false,
            said: Default::default(),
        })))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `client`, if both limits allow it.
    pub fn admit(&self, client: Client) -> Admitted {
        let mut held = self.held();
        let from_client = held.by_client.get(&client).copied().unwrap_or(0);
        if from_client >= held.max_per_client {
            let say = held.said.insert(client);
            return Admitted::ClientFull { say };
        }
        if held.total >= held.max_total {
            let say = !std::mem::replace(&mut held.said_full, true);
            return Admitted::Full { say };
        }
        held.total += 1;
        *held.by_client.entry(client).or_insert(0) += 1;
        Admitted::Yes(Connection {
            limits: self.clone(),
            client,
        })
    }

    /// Connections held now: in total, and from `client`.
    #[cfg(test)]
    fn held_now(&self, client: Client) -> (usize, usize) {
        let held = self.held();
        (
            held.total,
            held.by_client.get(&client).copied().unwrap_or(0),
        )
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut held = self.limits.held();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.by_client.remove(&self.client);
                held.said.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Client {
        Client::of(address.parse().unwrap())
    }

    #[test]
    fn one_client_cannot_take_every_connection() {
        let limits = Limits::new(8, 3);
        let a = client("192.0.2.7");
        let b = client("192.0.2.8");
        let held: Vec<Connection> = (0..3)
            .map(|_| match limits.admit(a) {
                Admitted::Yes(connection) => connection,
                other => panic!("{other:?}"),
            })
            .collect();
        // Said once, however often it tries.
        assert!(matches!(
            limits.admit(a),
            Admitted::ClientFull { say: true }
        ));
        assert!(matches!(
            limits.admit(a),
            Admitted::ClientFull { say: false }
        ));
        // Another client still gets in.
        let b1 = limits.admit(b);
        assert!(matches!(b1, Admitted::Yes(_)));
        assert_eq!(limits.held_now(a), (4, 3));
        // Once the first client's connections end, it may connect again, and is told of again.
        drop(held);
        assert_eq!(limits.held_now(a), (1, 0));
        let again: Vec<Admitted> = (0..4).map(|_| limits.admit(a)).collect();
        assert!(matches!(again[3], Admitted::ClientFull { say: true }));
    }

    #[test]
    fn the_total_limit_holds_across_clients() {
        let limits = Limits::new(4, 3);
        let held: Vec<Admitted> = (1..=4)
            .map(|i| limits.admit(client(&format!("127.0.0.{i}"))))
            .collect();
        assert!(held.iter().all(|a| matches!(a, Admitted::Yes(_))));
        assert!(matches!(
            limits.admit(client("127.0.0.9")),
            Admitted::Full { say: true }
        ));
        assert!(matches!(
            limits.admit(client("127.0.0.9")),
            Admitted::Full { say: false }
        ));
    }

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_network() {
        assert_eq!(client("::ffff:192.0.2.7"), client("192.0.2.7"));
        assert_eq!(client("2001:db8:1:2::7"), client("2001:db8:1:2:abcd::1"));
        assert_ne!(client("2001:db8:1:2::7"), client("2001:db8:1:3::7"));
        assert_eq!(client("2001:db8:1:2::7").to_string(), "2001:db8:1:2::/64");
    }
}
