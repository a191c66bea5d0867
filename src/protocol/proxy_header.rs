//! The PROXY protocol header that a load balancer (HAProxy's `send-proxy` /
//! `send-proxy-v2`, nginx, AWS NLB…) puts in front of a connection to say who the client
//! is: version 1 (a text line) and version 2 (binary), as HAProxy's
//! `doc/proxy-protocol.txt` defines them.
//!
//! Sans-I/O like the front ends: [`parse`] looks at the bytes read so far and says
//! either how many more bytes certainly belong to the header ([`Step::Need`]) — so the
//! reader never takes a byte of the TLS handshake or greeting that follows — or what the
//! header said, having used exactly all of them ([`Step::Done`]). Whether a connection
//! may send a header at all (only from the configured balancers) is the listener's
//! business, not this module's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (spec 2.1).
const V1_MAX: usize = 107;
/// The shortest v1 line: `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The v2 fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The most v2 address and TLV bytes accepted. The spec allows 65,535, but what a
/// balancer sends (addresses plus a few TLVs: ALPN, authority, SSL, unique id) fits
/// well below this; more is refused rather than buffered.
pub const V2_MAX_BODY: usize = 1024;

/// What a header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The connection relays a client: its address and the address it connected to.
    Proxied {
        /// The client.
        client: SocketAddr,
        /// Where the client connected (the balancer's frontend address).
        connected: SocketAddr,
    },
    /// The balancer speaks for itself (v2 `LOCAL`, a health check) or does not know the
    /// client (v1 `UNKNOWN`, v2 an unspecified or non-IP family): the connection's own
    /// addresses stand.
    Local,
}

/// The next step of reading a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// At least this many more bytes belong to the header (never 0).
    Need(usize),
    /// The header is complete and was exactly the bytes given.
    Done(Header),
}

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The bytes are neither a v1 line nor the v2 signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line that does not follow the grammar (or is too long).
    #[error("malformed PROXY v1 header")]
    BadV1,
    /// A v2 header with a wrong version, command, or address length.
    #[error("malformed PROXY v2 header")]
    BadV2,
    /// A v2 header longer than [`V2_MAX_BODY`].
    #[error("PROXY v2 header too long")]
    TooLong,
}

/// Looks at the bytes read so far (from the first byte of the connection).
pub fn parse(buf: &[u8]) -> Result<Step, HeaderError> {
    if buf.is_empty() {
        // The shorter of the two least headers: never a byte too many.
        return Ok(Step::Need(V1_MIN));
    }
    // Decide the version on the bytes there are: a prefix of either signature goes on.
    let v1 = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return parse_v1(buf);
    }
    Err(HeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Step, HeaderError> {
    if buf.len() < V1_MIN {
        return Ok(Step::Need(V1_MIN - buf.len()));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        // The line goes on; a lone CR or LF inside it, or a line too long, is refused.
        if buf.len() >= V1_MAX || buf[..buf.len() - 1].contains(&b'\r') || buf.contains(&b'\n') {
            return Err(HeaderError::BadV1);
        }
        return Ok(Step::Need(1));
    };
    if end + 2 != buf.len() {
        return Err(HeaderError::BadV1);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| HeaderError::BadV1)?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Step::Done(Header::Local)),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, HeaderError> {
                let ip: IpAddr = s.parse().map_err(|_| HeaderError::BadV1)?;
                match (ip, *family) {
                    (IpAddr::V4(_), "TCP4") | (IpAddr::V6(_), "TCP6") => Ok(ip),
                    _ => Err(HeaderError::BadV1),
                }
            };
            let port = |s: &str| -> Result<u16, HeaderError> {
                // Decimal without a sign or leading zeros (spec 2.1).
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    return Err(HeaderError::BadV1);
                }
                if !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeaderError::BadV1);
                }
                s.parse().map_err(|_| HeaderError::BadV1)
            };
            Ok(Step::Done(Header::Proxied {
                client: SocketAddr::new(ip(src)?, port(sport)?),
                connected: SocketAddr::new(ip(dst)?, port(dport)?),
            }))
        }
        _ => Err(HeaderError::BadV1),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Step, HeaderError> {
    if buf.len() < V2_FIXED {
        return Ok(Step::Need(V2_FIXED - buf.len()));
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(HeaderError::BadV2);
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if body_len > V2_MAX_BODY {
        return Err(HeaderError::TooLong);
    }
    let total = V2_FIXED + body_len;
    if buf.len() < total {
        return Ok(Step::Need(total - buf.len()));
    }
    if buf.len() > total {
        return Err(HeaderError::BadV2);
    }
    if command == 0 {
        // LOCAL: the balancer's own connection (health checks); addresses are ignored.
        return Ok(Step::Done(Header::Local));
    }
    let body = &buf[V2_FIXED..];
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match (family, transport) {
        // AF_INET over STREAM (TCP).
        (1, 1) => {
            if body.len() < 12 {
                return Err(HeaderError::BadV2);
            }
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            Ok(Step::Done(Header::Proxied {
                client: SocketAddr::new(ip(0), port(8)),
                connected: SocketAddr::new(ip(4), port(10)),
            }))
        }
        // AF_INET6 over STREAM.
        (2, 1) => {
            if body.len() < 36 {
                return Err(HeaderError::BadV2);
            }
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(Step::Done(Header::Proxied {
                client: SocketAddr::new(ip(0), port(32)),
                connected: SocketAddr::new(ip(16), port(34)),
            }))
        }
        // UNSPEC, UNIX, or a datagram transport: the receiver "must ignore" the addresses
        // (spec 2.2) and use the connection's own.
        _ => Ok(Step::Done(Header::Local)),
    }
}

/// The v1 line for `header` (for tests and the load generator).
pub fn v1_line(client: SocketAddr, connected: SocketAddr) -> String {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        connected.ip(),
        client.port(),
        connected.port()
    )
}

/// The v2 header for a proxied TCP connection (for tests and the load generator).
pub fn v2_bytes(client: SocketAddr, connected: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (client.ip(), connected.ip()) {
        (IpAddr::V4(c), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.octets());
            out.extend_from_slice(&d.octets());
        }
        (c, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&six(c).octets());
            out.extend_from_slice(&six(d).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&connected.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` the way the reader does: only as many bytes as `parse` asks for.
    fn read(input: &[u8]) -> Result<(Header, usize), HeaderError> {
        let mut have = 0;
        loop {
            match parse(&input[..have])? {
                Step::Done(h) => return Ok((h, have)),
                Step::Need(n) => {
                    assert!(n > 0);
                    if have + n > input.len() {
                        panic!("asked for {n} more after {have} of {} bytes", input.len());
                    }
                    have += n;
                }
            }
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6_lines_give_the_client_and_stop_at_the_crlf() {
        let mut input = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 993\r\n".to_vec();
        let header_len = input.len();
        input.extend_from_slice(b"\x16\x03\x01 the TLS client hello");
        assert_eq!(
            read(&input),
            Ok((
                Header::Proxied {
                    client: addr("192.0.2.7:56324"),
                    connected: addr("198.51.100.1:993"),
                },
                header_len
            ))
        );
        let input = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 143\r\nA1 LOGIN";
        assert_eq!(
            read(input).unwrap().0,
            Header::Proxied {
                client: addr("[2001:db8::7]:4000"),
                connected: addr("[2001:db8::1]:143"),
            }
        );
        assert_eq!(read(b"PROXY UNKNOWN\r\n").unwrap(), (Header::Local, V1_MIN));
        assert_eq!(
            read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz").unwrap().0,
            Header::Local
        );
    }

    #[test]
    fn malformed_v1_lines_are_refused() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7\n198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\r\n",
        ] {
            assert_eq!(read(bad).map(|_| ()), Err(HeaderError::BadV1), "{bad:?}");
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(read(&long).map(|_| ()), Err(HeaderError::BadV1));
    }

    #[test]
    fn anything_else_first_is_not_a_header() {
        for other in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"a1 CAPABILITY\r\n",
            b"EHLO x\r\n",
            b"PROXX",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert_eq!(parse(other), Err(HeaderError::Missing), "{other:?}");
        }
        // A prefix of either may still become one.
        assert_eq!(parse(b""), Ok(Step::Need(V1_MIN)));
        assert_eq!(parse(b"PRO"), Ok(Step::Need(V1_MIN - 3)));
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_unspec() {
        let (c, d) = (addr("203.0.113.9:40000"), addr("10.0.0.1:995"));
        let mut input = v2_bytes(c, d);
        let len = input.len();
        input.extend_from_slice(b"+OK after");
        assert_eq!(
            read(&input),
            Ok((
                Header::Proxied {
                    client: c,
                    connected: d
                },
                len
            ))
        );
        let (c6, d6) = (addr("[2001:db8::9]:40000"), addr("[2001:db8::1]:465"));
        assert_eq!(
            read(&v2_bytes(c6, d6)).unwrap().0,
            Header::Proxied {
                client: c6,
                connected: d6
            }
        );
        // With TLVs after the addresses (HAProxy's unique id, say): skipped.
        let mut tlv = v2_bytes(c, d);
        tlv.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']);
        tlv[14..16].copy_from_slice(&(12u16 + 6).to_be_bytes());
        assert_eq!(
            read(&tlv).unwrap().0,
            Header::Proxied {
                client: c,
                connected: d
            }
        );
        // LOCAL (a health check), and UNSPEC: the connection's own addresses.
        let mut local = v2_bytes(c, d);
        local[12] = 0x20;
        assert_eq!(read(&local).unwrap().0, Header::Local);
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(read(&unspec).unwrap(), (Header::Local, V2_FIXED));
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        let good = v2_bytes(addr("203.0.113.9:1"), addr("10.0.0.1:2"));
        let mut version = good.clone();
        version[12] = 0x11;
        assert_eq!(read(&version).map(|_| ()), Err(HeaderError::BadV2));
        let mut command = good.clone();
        command[12] = 0x22;
        assert_eq!(read(&command).map(|_| ()), Err(HeaderError::BadV2));
        let mut short = good.clone();
        short[15] = 4;
        short.truncate(V2_FIXED + 4);
        assert_eq!(read(&short).map(|_| ()), Err(HeaderError::BadV2));
        let mut huge = good;
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(read(&huge).map(|_| ()), Err(HeaderError::TooLong));
        // Given more bytes than the header (a reader that over-read): refused, never
        // silently dropped.
        let mut more = v2_bytes(addr("203.0.113.9:1"), addr("10.0.0.1:2"));
        more.push(0);
        assert_eq!(parse(&more), Err(HeaderError::BadV2));
    }

    #[test]
    fn every_prefix_asks_for_more_and_never_for_too_much() {
        let inputs = [
            v1_line(addr("192.0.2.7:56324"), addr("198.51.100.1:993")).into_bytes(),
            v1_line(addr("[2001:db8::7]:1"), addr("[2001:db8::1]:65535")).into_bytes(),
            v2_bytes(addr("192.0.2.7:56324"), addr("198.51.100.1:993")),
            v2_bytes(addr("[2001:db8::7]:1"), addr("[2001:db8::1]:65535")),
            b"PROXY UNKNOWN\r\n".to_vec(),
        ];
        for input in inputs {
            for cut in 0..input.len() {
                match parse(&input[..cut]) {
                    Ok(Step::Need(n)) => assert!(cut + n <= input.len(), "{input:?} at {cut}"),
                    other => panic!("{input:?} at {cut}: {other:?}"),
                }
            }
            assert!(matches!(parse(&input), Ok(Step::Done(_))));
        }
    }
}
