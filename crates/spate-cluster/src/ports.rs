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
//! below it, which the kernel never hands out on its own, and a local
//! cluster's executors get theirs in one call, all held until all are
//! chosen; other clusters starting at the same instant are the only
//! competition left.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::{Error, Result};

/// How many ports below the ephemeral range are drawn from.
const SPAN: u16 = 12_000;

/// Lowest port drawn from (the ones below need privileges).
const LOWEST: u16 = 1024;

/// `n` distinct ports free on `host` now, none in the kernel's ephemeral
/// range (kernel-chosen ones if none below it is free).
pub fn free_ports(host: &str, n: usize) -> Result<Vec<u16>> {
    free_runs(host, n, 1)
}

/// `n` base ports, each the first of `width` consecutive ports free on
/// `host` now, no two runs overlapping: the executors of one cluster get
/// theirs in one call, so they cannot draw the same port as each other.
pub fn free_runs(host: &str, n: usize, width: u16) -> Result<Vec<u16>> {
    let width = width.max(1);
    let addr = (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Usage(format!("cannot listen on {host}: no such address")))?;
    let listen = |port: u16| {
        let mut a: SocketAddr = addr;
        a.set_port(port);
        TcpListener::bind(a)
    };
    // Held until every run is chosen, so no two runs share a port.
    let mut held: Vec<TcpListener> = Vec::new();
    let mut bases: Vec<u16> = Vec::with_capacity(n);
    if let Some((low, high)) = below_ephemeral() {
        for _ in 0..(64 * n) {
            if bases.len() == n {
                break;
            }
            let base = rand::random_range(low..high - width);
            let run: Vec<TcpListener> =
                (base..base + width).map_while(|p| listen(p).ok()).collect();
            if run.len() == usize::from(width) {
                held.extend(run);
                bases.push(base);
            }
        }
    }
    // Kernel-chosen ports otherwise (single ports only: the kernel gives
    // no runs).
    while bases.len() < n {
        if width > 1 {
            return Err(Error::Usage(format!(
                "cannot find {width} consecutive free ports on {host}"
            )));
        }
        let l = listen(0).map_err(|e| Error::Usage(format!("cannot listen on {host}: {e}")))?;
        bases.push(
            l.local_addr()
                .map_err(|e| Error::Internal(format!("listening port: {e}")))?
                .port(),
        );
        held.push(l);
    }
    Ok(bases)
}

/// The ports just below the kernel's ephemeral range, `[low, high)`; none
/// when that range starts too low to leave room below it.
fn below_ephemeral() -> Option<(u16, u16)> {
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = high.saturating_sub(SPAN).max(LOWEST);
    (high >= low + 1000).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let (low, high) = below_ephemeral().expect("this host leaves room below");
        let ports = free_ports("127.0.0.1", 3).unwrap();
        let bases = free_runs("127.0.0.1", 4, 3).unwrap();
        let mut runs: Vec<u16> = bases.iter().flat_map(|&b| b..b + 3).collect();
        for &p in runs.iter().chain(&ports) {
            assert!((low..high).contains(&p), "{p} not in {low}..{high}");
            TcpListener::bind(("127.0.0.1", p)).expect("released");
        }
        runs.sort_unstable();
        runs.dedup();
        assert_eq!(runs.len(), 12, "runs overlap: {bases:?}");
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{ports:?}");
    }
}
