//! Who the client is, as far as an address can say: the peer of the TCP
//! connection, or, when that peer is a trusted reverse proxy, the address it
//! names in `Forwarded` (RFC 7239) or `X-Forwarded-For`.
//!
//! Owns: [`ClientAddr`] (stored in each request's extensions by the
//! rate-limit middleware), [`AddrKey`] (the unit every per-address limit
//! counts in: an IPv4 address, or an IPv6 /64, since one host commonly owns
//! a whole /64), and [`AddrCounts`] (bounded per-key counters for
//! connections and WebSockets).
//!
//! Rule for forwarded headers: only from a peer in `[gateway]
//! trusted_proxies`; the chain is read right to left (the proxy nearest to
//! us appended last) and the first address that is not itself a trusted
//! proxy is the client. A chain that is all proxies, or unreadable, leaves
//! the peer. Must not: believe a header from an untrusted peer (anyone can
//! write `X-Forwarded-For`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The unit of per-address limits: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    AddrKey(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

/// The client of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    pub key: AddrKey,
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer` with `headers`.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let ip = if is_trusted(peer, trusted) {
        forwarded_client(headers, trusted).unwrap_or(peer)
    } else {
        peer
    };
    ClientAddr {
        ip,
        key: AddrKey::of(ip),
    }
}

/// Most hops read from a forwarding chain.
const HOPS_MAX: usize = 32;

fn forwarded_client(headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let mut chain: Vec<Option<IpAddr>> = Vec::new();
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            chain.push(node.and_then(parse_node));
        }
    } else {
        for v in headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            chain.extend(v.split(',').map(|n| parse_node(n.trim())));
        }
    }
    if chain.len() > HOPS_MAX {
        chain.drain(..chain.len() - HOPS_MAX);
    }
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if is_trusted(*ip, trusted) => continue,
            Some(ip) => return Some(*ip),
            None => return None,
        }
    }
    None
}

/// `192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok()
}

/// Counters per address key with a cap; a [`CountGuard`] gives its unit back
/// when dropped. Bounded: a key is removed when its count returns to 0, so
/// the map holds only keys with something open (at most the total cap).
#[derive(Clone, Default)]
pub struct AddrCounts {
    counts: Arc<Mutex<HashMap<AddrKey, usize>>>,
}

impl AddrCounts {
    /// One more for `key`, unless it already has `max`.
    pub fn try_add(&self, key: AddrKey, max: usize) -> Option<CountGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(CountGuard {
            counts: self.counts.clone(),
            key,
        })
    }

    /// What `key` has open now.
    pub fn count(&self, key: AddrKey) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&key).copied().unwrap_or(0)
    }
}

/// One unit of an [`AddrCounts`] key.
pub struct CountGuard {
    counts: Arc<Mutex<HashMap<AddrKey, usize>>>,
    key: AddrKey,
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn ipv6_counts_per_64_and_ipv4_per_address() {
        // Goal: one host rotating through its /64 is one key; IPv4 stays exact.
        let a = AddrKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = AddrKey::of("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = AddrKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            AddrKey::of("192.0.2.1".parse().unwrap()),
            AddrKey::of("192.0.2.2".parse().unwrap())
        );
        assert_eq!(
            AddrKey::of("::ffff:192.0.2.1".parse().unwrap()),
            AddrKey::of("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        // Goal: a client cannot choose its address; a trusted proxy can name it.
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let xff = headers("x-forwarded-for", "203.0.113.9, 10.2.2.2");
        assert_eq!(client_addr(stranger, &xff, &trusted).ip, stranger);
        assert_eq!(
            client_addr(proxy, &xff, &trusted).ip,
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A spoofed left part does not help: the rightmost untrusted hop wins.
        let spoof = headers("x-forwarded-for", "1.2.3.4, 203.0.113.9");
        assert_eq!(
            client_addr(proxy, &spoof, &trusted).ip,
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let fwd = headers(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
        );
        assert_eq!(
            client_addr(proxy, &fwd, &trusted).ip,
            "2001:db8:cafe::17".parse::<IpAddr>().unwrap()
        );
        let junk = headers("x-forwarded-for", "not-an-ip");
        assert_eq!(client_addr(proxy, &junk, &trusted).ip, proxy);
    }

    #[test]
    fn counts_are_capped_and_given_back() {
        // Goal: a key never exceeds its cap and frees its slot on drop.
        let counts = AddrCounts::default();
        let key = AddrKey::of("192.0.2.1".parse().unwrap());
        let a = counts.try_add(key, 2).unwrap();
        let _b = counts.try_add(key, 2).unwrap();
        assert!(counts.try_add(key, 2).is_none());
        drop(a);
        assert!(counts.try_add(key, 2).is_some());
    }
}
