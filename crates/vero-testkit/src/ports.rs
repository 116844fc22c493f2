//! Loopback ports for the servers and services a test starts.
//!
//! Drawn below Linux's ephemeral range (`net.ipv4.ip_local_port_range`, 32768 and up),
//! not by binding port 0: a port the OS handed out for port 0 comes from that range,
//! so any outgoing connection (a client, a broker's replica fetcher) can take it as its
//! source port between the draw and the server binding it, and the server then fails
//! with "Address already in use" (seen in the chaos harness under the suite's load).
//! Below the range only servers bind, and every port drawn was free when drawn.

use std::net::TcpListener;

use anyhow::{bail, Context};

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

/// `count` distinct loopback ports nobody listens on right now, below the ephemeral
/// range. All are held open until every one is chosen.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let end = ephemeral_start();
    let mut held: Vec<TcpListener> = Vec::with_capacity(count);
    let mut attempts = 0;
    while held.len() < count {
        attempts += 1;
        if attempts > 1_000 + count * 50 {
            bail!("no {count} free loopback ports found in {FIRST}..{end}");
        }
        let port = rand::random_range(FIRST..end);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    held.iter().map(|listener| listener.local_addr().map(|a| a.port()).context("reading a bound port")).collect()
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
        let held: Vec<_> = (base..base + count).map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(count) {
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
    fn a_range_is_consecutive_and_free() {
        let base = free_port_range(7).unwrap();
        for port in base..base + 7 {
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
