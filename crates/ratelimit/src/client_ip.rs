//! The client's address: the peer's, unless the peer is a trusted proxy, in which case
//! the address it reports in `X-Forwarded-For` (or `X-Real-IP`).
//!
//! Without this a client could pick its own rate-limit key by sending a made-up
//! `X-Forwarded-For`. `X-Forwarded-For` is read from the right: each proxy appends the
//! address it received the request from, so the rightmost entry not a trusted proxy
//! is the first address no one we trust could have made up.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
    task::{Context, Poll},
};

use axum::extract::ConnectInfo;
use http::{HeaderMap, HeaderName, Request};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Networks whose forwarding headers are believed. Written as a comma-separated
/// list of addresses and CIDR blocks, for example `10.0.0.0/8, 127.0.0.1`; empty
/// trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the peer's and the request headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        // Every X-Forwarded-For line, in order, as one list.
        let hops: Vec<&str> =
            headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).collect();
        if !hops.is_empty() {
            let mut client = peer;
            for hop in hops.iter().rev() {
                match parse_hop(hop) {
                    Some(ip) if self.is_trusted(ip) => client = ip,
                    Some(ip) => return ip,
                    // Garbage: nothing to its left can be believed; the last trusted hop
                    // is the nearest address we know.
                    None => return client,
                }
            }
            return client;
        }
        headers.get(&X_REAL_IP).and_then(|v| v.to_str().ok()).and_then(|v| parse_hop(v.trim())).unwrap_or(peer)
    }
}

/// `203.0.113.7`, `2001:db8::1`, `203.0.113.7:4711` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip())).ok().map(|ip| ip.to_canonical())
}

/// The resolved client address, put in the request's extensions by [`ClientIpLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// Reads the address [`ClientIpLayer`] resolved.
    pub fn of(extensions: &http::Extensions) -> Option<IpAddr> {
        extensions.get::<ClientIp>().map(|c| c.0)
    }
}

/// Resolves the client address of every request once (from axum's `ConnectInfo` and
/// the trusted proxies) and stores it as a [`ClientIp`] extension, for the rate-limit
/// layer, logs and handlers alike. Requests without `ConnectInfo` get none.
#[derive(Debug, Clone)]
pub struct ClientIpLayer {
    proxies: TrustedProxies,
}

impl ClientIpLayer {
    pub fn new(proxies: TrustedProxies) -> Self {
        Self { proxies }
    }
}

impl<S> tower::Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService { inner, proxies: self.proxies.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    proxies: TrustedProxies,
}

impl<S, B> tower::Service<Request<B>> for ClientIpService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
            let ip = self.proxies.client_ip(peer, req.headers());
            req.extensions_mut().insert(ClientIp(ip));
        }
        self.inner.call(req)
    }
}

/// The subject a client address counts as: an IPv4 address itself, an IPv6 address by
/// its /64 (one subscriber's prefix, which they can pick addresses from at will).
pub fn ip_subject(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "ip:unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(proxies.client_ip(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client_ip(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"), "no one trusted by default");
    }

    #[test]
    fn a_trusted_proxy_chain_is_walked_from_the_right() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        // The client made up "1.1.1.1"; the first proxy appended the real address.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7"), ("x-forwarded-for", "10.1.2.3")]);
        assert_eq!(proxies.client_ip(ip("192.168.1.1"), &chain), ip("198.51.100.7"));
        let with_ports = headers(&[("x-forwarded-for", "[2001:db8::5]:4711, 10.0.0.2:80")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.9"), &with_ports), ip("2001:db8::5"));
        // Garbage stops the walk at the nearest trusted hop.
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip, 10.0.0.4")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.9"), &garbage), ip("10.0.0.4"));
        // Only proxies in the chain: the leftmost one is all we know.
        let only_proxies = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.4")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.9"), &only_proxies), ip("10.0.0.3"));
    }

    #[test]
    fn x_real_ip_is_used_when_there_is_no_x_forwarded_for() {
        let proxies: TrustedProxies = "127.0.0.1".parse().unwrap();
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &headers(&[("x-real-ip", "198.51.100.8")])), ip("198.51.100.8"));
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &headers(&[("x-real-ip", "junk")])), ip("127.0.0.1"));
        assert_eq!(proxies.client_ip(ip("::ffff:127.0.0.1"), &headers(&[("x-real-ip", "198.51.100.8")])), ip("198.51.100.8"), "v4-mapped peers");
    }

    #[test]
    fn proxy_lists_parse_or_name_the_bad_entry() {
        assert_eq!("".parse::<TrustedProxies>().unwrap(), TrustedProxies::default());
        assert!("10.0.0.0/8,::1, 172.16.0.0/12".parse::<TrustedProxies>().is_ok());
        assert_eq!("10.0.0.0/8, nginx".parse::<TrustedProxies>().unwrap_err(), "\"nginx\" is not an IP address or CIDR block");
    }
}
