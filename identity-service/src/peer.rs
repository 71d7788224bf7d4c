//! Who is calling, as far as abuse limits are concerned: the client's address, taken from
//! `x-forwarded-for` only when the direct peer is a trusted proxy, and grouped so that one
//! client cannot pose as many (an IPv6 client owns a whole /64).

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use tonic::metadata::MetadataMap;

/// Header a reverse proxy appends the address of its client to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose `x-forwarded-for` entries are believed (`TRUSTED_PROXIES`: comma-separated
/// addresses or CIDR ranges; empty trusts none).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let nets = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(nets))
    }
}

impl TrustedProxies {
    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// A client as counted by abuse limits: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(IpAddr);

impl Peer {
    /// The group `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Peer(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Peer(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Peer(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// One `x-forwarded-for` entry: an address, possibly with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The client's address: the direct peer, unless it is a trusted proxy; then the rightmost
/// `x-forwarded-for` entry that is not itself a trusted proxy. Entries left of that are
/// written by the client and never believed. `None` without a direct peer.
pub fn client_address(
    direct: Option<IpAddr>,
    metadata: &MetadataMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let mut client = direct?;
    if !trusted.contains(client) {
        return Some(client);
    }
    let entries: Vec<&str> = metadata
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        // An entry a trusted proxy wrote that does not parse: keep the last address known.
        let Some(ip) = parse_entry(entry) else { break };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for v in values {
            m.append(FORWARDED_FOR, v.parse().unwrap());
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted direct peer: the header is the client's own words.
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            // Trusted proxy: the rightmost entry that is not a proxy.
            ("10.0.0.5", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.5", &["6.6.6.6, 1.2.3.4, 10.1.1.1"], "1.2.3.4"),
            ("10.0.0.5", &["6.6.6.6", "1.2.3.4, 192.168.1.1"], "1.2.3.4"),
            ("10.0.0.5", &["1.2.3.4:4711"], "1.2.3.4"),
            ("10.0.0.5", &["[2001:db8::1]:443"], "2001:db8::1"),
            // No header, or only proxies: the last hop known.
            ("10.0.0.5", &[], "10.0.0.5"),
            ("10.0.0.5", &["10.2.2.2"], "10.2.2.2"),
            // Garbage written by a proxy: stop at the last address known.
            ("10.0.0.5", &["1.2.3.4, garbage"], "10.0.0.5"),
        ];
        for (direct, xff, want) in cases {
            let got = client_address(Some(ip(direct)), &headers(xff), &trusted);
            assert_eq!(got, Some(ip(want)), "direct {direct}, x-forwarded-for {xff:?}");
        }
        let none = TrustedProxies::default();
        assert_eq!(
            client_address(Some(ip("10.0.0.5")), &headers(&["1.2.3.4"]), &none),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_address(None, &headers(&["1.2.3.4"]), &trusted), None);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let a = Peer::of(ip("2001:db8:1:2:aaaa::1"));
        let b = Peer::of(ip("2001:db8:1:2:ffff::9"));
        let c = Peer::of(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(Peer::of(ip("::ffff:1.2.3.4")), Peer::of(ip("1.2.3.4")));
        assert_ne!(Peer::of(ip("1.2.3.4")), Peer::of(ip("1.2.3.5")));
    }

    #[test]
    fn invalid_proxy_lists_are_refused() {
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
    }
}
