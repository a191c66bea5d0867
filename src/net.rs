//! Network values shared by the listeners, the upstreams and the notice relay: a network
//! in CIDR notation, how a connection to a server uses TLS, this host's name; and how a
//! listener closes a connection after its last word ([`linger`]). A leaf: it imports
//! nothing of the crate.

use serde::{Deserialize, Serialize};

/// A network in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct Network {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a network (e.g. \"10.0.0.0/8\", \"::1\")");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.as_str(), None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        // An IPv4-mapped IPv6 network is the IPv4 network it maps.
        match addr.to_canonical() {
            v4 @ std::net::IpAddr::V4(_) if addr.is_ipv6() => Ok(Network {
                addr: v4,
                prefix: prefix.saturating_sub(96),
            }),
            _ => Ok(Network { addr, prefix }),
        }
    }
}

impl std::fmt::Display for Network {
    /// `addr/prefix`, as the configuration and the store write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Network {
    /// Networks written one after another, separated by commas or spaces.
    pub fn list(text: &str) -> Result<Vec<Network>, String> {
        text.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Network::try_from(s.to_owned()))
            .collect()
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(ip));
        if width != ip_width {
            return false;
        }
        // Both are aligned to the top bit, so the prefix counts from there.
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p.min(width))),
        };
        (net & mask) == (ip & mask)
    }
}

/// How the proxy talks TLS to a server it connects to (an upstream, the notice relay).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS / STLS before logging in.
    Starttls,
    /// Plain text (loopback or a trusted network only).
    None,
}

impl TlsMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// This host's name, if it is a usable DNS name.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
}

/// How long, and how much, a closing connection is read and discarded ([`linger`]).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// See [`LINGER`].
pub const LINGER_BYTES: u64 = 1024 * 1024;

/// Closes a connection whose last word is written: our side first (TLS `close_notify`,
/// TCP FIN), then whatever the client still sends is read and discarded until it closes
/// too — for at most [`LINGER`] and [`LINGER_BYTES`]. Closing with the client's bytes
/// unread makes the kernel reset the connection, and a client still sending (a request
/// body refused unread, a line over the limit, an upload cut by a revocation) then loses
/// the answer it was about to read. nginx's `lingering_close` does the same. Used by the
/// HTTP listeners after their last response and by the mail sessions after a last word
/// (`BYE`, `-ERR`, `421`); the connection's place under the listener's limits is held
/// meanwhile, so a client holds nothing more than before.
pub async fn linger<S>(io: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        io.shutdown().await.ok()?;
        let mut discard = tokio::io::sink();
        tokio::io::copy(&mut (&mut *io).take(LINGER_BYTES), &mut discard)
            .await
            .ok()
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_and_nothing_else() {
        let net = |s: &str| Network::try_from(s.to_owned()).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:10.1.0.0/112").contains(ip("10.1.9.9")));
        assert!(!net("::ffff:10.1.0.0/112").contains(ip("10.2.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(!net("::1").contains(ip("127.0.0.1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "/8",
        ] {
            assert!(Network::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
