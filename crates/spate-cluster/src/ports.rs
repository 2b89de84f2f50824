//! Free ports for the servers Ballista binds itself.
//!
//! Ballista's roles take port numbers, not bound sockets, so a port is
//! chosen by binding it, letting it go, and handing the number over. The
//! executor's Arrow Flight port is bound only after it has registered with
//! the scheduler: a port taken by someone else in between kills an executor
//! the scheduler already counts. A port the kernel chose (`bind(.., 0)`) is
//! exactly the kind someone else takes next: it comes from the ephemeral
//! range, which every outgoing connection and every other `bind(.., 0)` on
//! the host draws from. So ports are drawn at random from the range just
//! below it, which the kernel never hands out on its own; other spate roles
//! starting at the same instant are the only competition left.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

use crate::{Error, Result};

/// How many ports below the ephemeral range are drawn from.
const SPAN: u16 = 12_000;

/// `n` distinct ports free on `host` now, none in the kernel's ephemeral
/// range (kernel-chosen ones if none below it is free).
pub fn free_ports(host: &str, n: usize) -> Result<Vec<u16>> {
    let (low, high) = below_ephemeral();
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut draw = Draw::new();
    let span = u32::from(high - low);
    for _ in 0..(64 * n) {
        if held.len() == n {
            break;
        }
        let port = low + (draw.next() % span) as u16;
        if held.iter().any(|l| local_port(l).ok() == Some(port)) {
            continue;
        }
        if let Ok(l) = TcpListener::bind((host, port)) {
            held.push(l);
        }
    }
    while held.len() < n {
        let l = TcpListener::bind((host, 0))
            .map_err(|e| Error::Usage(format!("cannot listen on {host}: {e}")))?;
        held.push(l);
    }
    held.iter().map(local_port).collect()
}

fn local_port(l: &TcpListener) -> Result<u16> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Internal(format!("listening port: {e}")))
}

/// The ports just below the kernel's ephemeral range, `[low, high)`.
fn below_ephemeral() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let high = first_ephemeral.max(1024 + 1000);
    (high.saturating_sub(SPAN).max(1024), high)
}

/// Random numbers enough to spread ports (std's per-process random keys).
struct Draw(std::collections::hash_map::DefaultHasher, u64);

impl Draw {
    fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Draw(h, 0)
    }

    fn next(&mut self) -> u32 {
        self.1 += 1;
        self.0.write_u64(self.1);
        self.0.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let (low, high) = below_ephemeral();
        let ports = free_ports("127.0.0.1", 3).unwrap();
        assert_eq!(ports.len(), 3);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{ports:?}");
        for p in ports {
            assert!((low..high).contains(&p), "{p} not in {low}..{high}");
            TcpListener::bind(("127.0.0.1", p)).expect("released");
        }
    }
}
