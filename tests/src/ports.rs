//! Ports for the servers tests start, without races between tests.
//!
//! A server that can choose its own port does (`127.0.0.1:0` for talon's
//! services and the web hook receivers, `--port=0` for chromedriver) and
//! tells the test which one it got. Where the port must be known before the
//! server starts — a config file that names it, a cluster's routes, a server
//! restarted where its clients expect it — [`reserve`] takes one and holds it
//! until the moment the server is spawned.
//!
//! A reservation is a socket bound without `SO_REUSEADDR` and not listening:
//! no other socket can bind the port while it is held (nats-server's and
//! Python's `SO_REUSEADDR` do not help them past it), yet a client that
//! connects is refused at once, as if nothing were there. Reserved ports are
//! drawn at random from below the kernel's ephemeral range, where no
//! `bind(0)` and no outgoing connection's local port ever lands, so the only
//! way to lose one between its release and the server's bind is another test
//! process drawing the same number in that instant; the starters retry on
//! "address already in use" for that case.

use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// A port held for a server that has not started yet.
pub struct Reserved {
    socket: Socket,
    port: u16,
}

impl Reserved {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Lets go of the port; call it right before spawning its server.
    pub fn release(self) -> u16 {
        let port = self.port;
        drop(self.socket);
        port
    }
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reserved({})", self.port)
    }
}

/// The range reserved ports come from: the registered ports below the
/// kernel's ephemeral range (Linux's default 32768–60999), else above it.
fn reservable_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999));
    const LOW: u16 = 10_000;
    if ephemeral.0 > LOW + 1000 {
        (LOW, ephemeral.0 - 1)
    } else if ephemeral.1 < 64_000 {
        (ephemeral.1 + 1, 65_535)
    } else {
        (LOW, 65_535)
    }
}

/// A random number, different in every process and at every call.
fn random() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // RandomState's keys are random per process; the counter and the time
    // make each call's hash different.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// Holds a free port on 127.0.0.1 for a server that must be told its port
/// before it starts.
pub fn reserve() -> Reserved {
    let (low, high) = reservable_range();
    let span = u64::from(high - low) + 1;
    for _ in 0..1000 {
        let port = low + (random() % span) as u16;
        let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
            continue;
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if socket.bind(&addr.into()).is_ok() {
            return Reserved { socket, port };
        }
    }
    panic!("no free port in {low}-{high} after 1000 tries");
}

/// Does a server's output say it could not bind its port?
pub fn says_address_in_use(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("address already in use") || text.contains("addrinuse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_cannot_be_bound_by_anyone_else_until_released() {
        let held = reserve();
        let port = held.port();
        let (low, high) = reservable_range();
        assert!((low..=high).contains(&port), "{port} outside {low}-{high}");
        // std's listener sets SO_REUSEADDR, as nats-server and asyncio do.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        // Nothing listens: a client is refused, not left hanging.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        let port = held.release();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("free again");
        drop(listener);
    }

    #[test]
    fn reservations_held_together_are_distinct() {
        let held: Vec<Reserved> = (0..200).map(|_| reserve()).collect();
        let mut ports: Vec<u16> = held.iter().map(Reserved::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 200);
    }
}
