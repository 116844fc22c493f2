//! Loopback ports for the servers and services a test starts.
//!
//! Drawn below Linux's ephemeral range (`net.ipv4.ip_local_port_range`, 32768 and up),
//! not by binding port 0: a port the OS handed out for port 0 comes from that range,
//! so any outgoing connection (a client, a broker's replica fetcher) can take it as its
//! source port between the draw and the server binding it, and the server then fails
//! with "Address already in use" (seen in the chaos harness under the suite's load).
//! Below the range only servers bind, and every port drawn was free when drawn.
//!
//! No port is handed out twice in one process: a rig draws its services' ports one
//! call at a time and starts them later, so a port drawn for one service is still free
//! when the next is drawn (seen: a gateway and an event sink of one chaos rig given
//! the same port, the second one failing to start).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::bail;

/// Lowest port drawn: above the well-known and registered ports services tend to use.
const FIRST: u16 = 10_000;

/// The first port of the ephemeral range (from /proc, 32768 by default).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > FIRST + 1_000)
        .unwrap_or(32_768)
}

/// Every port this process handed out.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `ports`, if every one is free now and none was handed out before in this process:
/// then they are recorded as handed out.
fn claim(ports: std::ops::Range<u16>) -> bool {
    let mut given = GIVEN.lock().expect("ports lock");
    if ports.clone().any(|port| given.contains(&port)) {
        return false;
    }
    // Held until every one is bound: the check is of them all at once.
    let held: Vec<TcpListener> = ports.clone().map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
    if held.len() != ports.len() {
        return false;
    }
    given.extend(ports);
    true
}

/// `count` distinct loopback ports nobody listens on right now, below the ephemeral
/// range, never handed out before in this process.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let end = ephemeral_start();
    let mut ports = Vec::with_capacity(count);
    let mut attempts = 0;
    while ports.len() < count {
        attempts += 1;
        if attempts > 1_000 + count * 50 {
            bail!("no {count} free loopback ports found in {FIRST}..{end}");
        }
        let port = rand::random_range(FIRST..end);
        if claim(port..port + 1) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// One loopback port nobody listens on right now ([`free_ports`]).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` consecutive free loopback ports (for a script that takes a base port).
pub fn free_port_range(count: u16) -> anyhow::Result<u16> {
    let end = ephemeral_start();
    for _ in 0..100 {
        let base = rand::random_range(FIRST..end - count);
        if claim(base..base + count) {
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free loopback ports found in {FIRST}..{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports = free_ports(40).unwrap();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 40);
        assert!(ports.iter().all(|p| (FIRST..ephemeral_start()).contains(p)));
        // Released: each can be bound now.
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn no_port_is_handed_out_twice_in_a_process() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            // Each released at once, as a rig does before starting its services.
            assert!(seen.insert(free_port().unwrap()), "a port was handed out twice");
        }
        let base = free_port_range(5).unwrap();
        assert!((base..base + 5).all(|port| !seen.contains(&port)));
    }

    #[test]
    fn a_range_is_consecutive_and_free() {
        let base = free_port_range(7).unwrap();
        for port in base..base + 7 {
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
