//! Where a password is used: the networks (IPv4 /24, IPv6 /48) and the client programs
//! (IMAP `ID`, SMTP `EHLO`) each password logged in from, and when a new one is worth
//! asking the owner about ("Non sono stato io"). Pure rules; the store keeps the places.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::names::named_enum;

/// Places of one kind kept per password, at most; the least recently seen is dropped.
pub const MAX_PLACES: usize = 10;
/// At most one "new place" alert per password within this.
pub const ALERT_EVERY: SignedDuration = SignedDuration::from_hours(1);
/// A password's first hour, while its device is being set up: new places are learned
/// without an alert.
pub const SETTLING: SignedDuration = SignedDuration::from_hours(1);
/// How long a "Non sono stato io" link works.
pub const LINK_LIFE: SignedDuration = SignedDuration::from_hours(7 * 24);
/// A client program's name, at most (longer is cut).
const SOFTWARE_MAX: usize = 64;

named_enum! {
    /// What kind of place.
    pub enum PlaceKind {
        /// A network (`192.0.2.0/24`, `2001:db8:1::/48`).
        Network = "network",
        /// A client program, as it named itself.
        Software = "software",
    }
}

impl<'de> Deserialize<'de> for PlaceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The network a client address counts in: its /24 (IPv4, an IPv4-mapped IPv6 address
/// included) or its /48 (IPv6).
pub fn network_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// A client program's name as it is kept and shown: printable ASCII only (other bytes
/// become `?`), spaces collapsed, at most 64 characters; nothing when it is empty.
pub fn software(name: &[u8]) -> Option<String> {
    let mut out = String::new();
    for &b in name {
        let c = match b {
            b' ' | b'\t' => ' ',
            0x21..=0x7e => char::from(b),
            _ => '?',
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() == SOFTWARE_MAX {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    (!out.is_empty()).then_some(out)
}

/// The name an IMAP client gives in `ID`: its `name` and `version` fields (RFC 2971),
/// or nothing when it gives no name.
pub fn imap_software<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Option<String> {
    let (mut name, mut version) = (None, None);
    for (k, v) in fields {
        if k.eq_ignore_ascii_case(b"name") {
            name = v;
        } else if k.eq_ignore_ascii_case(b"version") {
            version = v;
        }
    }
    let name = name?;
    match version {
        Some(v) if !v.is_empty() => software(&[name, b" ", v].concat()),
        _ => software(name),
    }
}

/// A fresh "Non sono stato io" token (32 random bytes, URL-safe base64) and its hash,
/// which is all that is kept.
pub fn link_token() -> Result<(crate::secret::Secret, String), super::PolicyError> {
    use base64::Engine;
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| super::PolicyError::Random(e.to_string()))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref());
    let hash = link_hash(&token);
    Ok((crate::secret::Secret::new(token), hash))
}

/// The kept form of a link's token: its SHA-256, in hex.
pub fn link_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The program an SMTP client names in `EHLO`: its name, unless it is only an address
/// (`[192.0.2.1]`, as clients without a host name send), which names no program.
pub fn smtp_software(ehlo: &str) -> Option<String> {
    let name = ehlo.trim();
    if name.starts_with('[') || name.parse::<IpAddr>().is_ok() {
        return None;
    }
    software(name.as_bytes())
}

/// Which password a place belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Credential {
    /// The mailbox's main password (where the mail protocols accept it: 2FA off).
    Main,
    /// An app password, by its id.
    App(i64),
}

impl Credential {
    /// Its stored form: the app password's id, 0 for the main password.
    pub fn column(self) -> i64 {
        match self {
            Credential::Main => 0,
            Credential::App(id) => id,
        }
    }

    /// From its stored form.
    pub fn of_column(id: i64) -> Credential {
        if id == 0 {
            Credential::Main
        } else {
            Credential::App(id)
        }
    }
}

/// One place a password was used from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Place {
    /// A network or a program.
    pub kind: PlaceKind,
    /// Which (`192.0.2.0/24`, `Thunderbird 128.3`).
    pub value: String,
    /// First seen.
    #[serde(serialize_with = "super::json_time::serialize")]
    pub first_seen: Timestamp,
    /// Last seen.
    #[serde(serialize_with = "super::json_time::serialize")]
    pub last_seen: Timestamp,
    /// Logins from it.
    pub uses: u64,
}

/// Whether a login from a place its password was never used from (`had_places`: the
/// password had places of that kind before) asks the owner. An app password (`created`:
/// when it was made) asks unless it is in its first hour; the main password asks only
/// once its places are known, so the first login seen after an upgrade is no alarm.
/// At most one alert per password an hour is the store's to enforce ([`ALERT_EVERY`]).
pub fn asks_owner(
    credential: Credential,
    created: Option<Timestamp>,
    had_places: bool,
    at: Timestamp,
) -> bool {
    match credential {
        Credential::App(_) => created.is_none_or(|c| at.duration_since(c) >= SETTLING),
        Credential::Main => had_places,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network_of("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network_of("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.0/24"
        );
        assert_eq!(
            network_of("2001:db8:aa:bb::1".parse().unwrap()),
            "2001:db8:aa::/48"
        );
    }

    #[test]
    fn software_names_are_printable_and_bounded() {
        assert_eq!(
            software(b"  Thunderbird   128 "),
            Some("Thunderbird 128".into())
        );
        assert_eq!(software(b"a\r\nb\x00"), Some("a??b?".into()));
        assert_eq!(software(b"   "), None);
        assert_eq!(software(&[b'x'; 200]).unwrap().len(), 64);
        assert_eq!(
            imap_software([
                (&b"NAME"[..], Some(&b"Thunderbird"[..])),
                (&b"version"[..], Some(&b"128.3"[..]))
            ]),
            Some("Thunderbird 128.3".into())
        );
        assert_eq!(imap_software([(&b"version"[..], Some(&b"1"[..]))]), None);
        assert_eq!(
            smtp_software("fatture.example"),
            Some("fatture.example".into())
        );
        assert_eq!(smtp_software("[127.0.0.1]"), None);
        assert_eq!(smtp_software("[IPv6:::1]"), None);
        assert_eq!(smtp_software("192.0.2.1"), None);
    }

    #[test]
    fn link_tokens_are_random_and_kept_only_as_hashes() {
        let (a, ha) = link_token().unwrap();
        let (b, hb) = link_token().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert_eq!(ha, link_hash(a.expose()));
        assert_ne!(ha, hb);
        assert!(!ha.contains(a.expose()));
    }

    #[test]
    fn a_new_app_password_learns_its_places_quietly_for_an_hour() {
        let made: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let app = Credential::App(7);
        let soon = made + SignedDuration::from_mins(59);
        let later = made + SignedDuration::from_mins(61);
        assert!(!asks_owner(app, Some(made), false, soon));
        assert!(!asks_owner(app, Some(made), true, soon));
        assert!(asks_owner(app, Some(made), false, later));
        assert!(asks_owner(app, Some(made), true, later));
        assert!(!asks_owner(Credential::Main, None, false, later));
        assert!(asks_owner(Credential::Main, None, true, later));
    }
}
