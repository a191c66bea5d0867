//! *Configura iPhone/iPad/Mac*: a configuration profile (`.mobileconfig`, payload
//! `com.apple.mail.managed`) carrying a freshly minted app password, so the owner never
//! sees or types it; signed (CMS) with the page's certificate when its key can sign.
//!
//! A profile waits here, in memory, to be taken **once** — by the page's download
//! button (a POST of the session that made it) or by its one-time link (a QR code for a
//! phone; valid [`LINK_LIFE`], the token random and never the password). Taken, expired
//! or unknown, a link reveals nothing. One waiting profile per mailbox (a new one
//! replaces it), [`MAX_WAITING`] in all; the bytes are zeroed when dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use zeroize::Zeroizing;

use super::clients::{MailClients, xml_escape};
use crate::policy::{Protocol, ProtocolSet};

/// How long a one-time link works.
pub const LINK_LIFE: SignedDuration = SignedDuration::from_mins(10);
/// Profiles waiting at once, in all (each belongs to a logged-in owner).
const MAX_WAITING: usize = 1_000;

/// What a profile is made of.
pub(crate) struct ProfileOf<'a> {
    /// Where programs connect.
    pub clients: &'a MailClients,
    /// The mailbox's address (the account's e-mail address).
    pub address: &'a str,
    /// The name the mail program logs in with.
    pub login: &'a str,
    /// The new app password.
    pub password: &'a str,
    /// The device it is for (the app password's name).
    pub device: &'a str,
    /// The protocols it may use.
    pub protocols: ProtocolSet,
}

/// A random UUID (version 4), as profiles name their payloads.
fn uuid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system's random numbers");
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The profile's property list (XML), or `None` when the mailbox's servers offer no
/// incoming protocol among `protocols`. IMAP if ticked, else POP3; the outgoing server
/// carries the password only when SMTP is ticked.
pub(crate) fn plist(p: &ProfileOf<'_>) -> Option<Zeroizing<Vec<u8>>> {
    let c = p.clients;
    let incoming = [Protocol::Imap, Protocol::Pop3]
        .into_iter()
        .filter(|x| p.protocols.contains(*x))
        .find_map(|x| c.server(x))?;
    let outgoing = c.server(Protocol::Smtp);
    let kind = match incoming.protocol {
        Protocol::Pop3 => "EmailTypePOP",
        _ => "EmailTypeIMAP",
    };
    let e = |s: &str| xml_escape(s);
    let (host, address, login, device) = (e(&c.host), e(p.address), e(p.login), e(p.device));
    let password = Zeroizing::new(e(p.password));
    let reverse: Vec<&str> = c.host.rsplit('.').collect();
    let id = e(&format!("{}.sentinella.mail", reverse.join(".")));
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n",
    );
    let s = |out: &mut String, k: &str, v: &str| {
        out.push_str(&format!("<key>{k}</key><string>{v}</string>\n"));
    };
    let n = |out: &mut String, k: &str, v: u16| {
        out.push_str(&format!("<key>{k}</key><integer>{v}</integer>\n"));
    };
    let b = |out: &mut String, k: &str, v: bool| {
        out.push_str(&format!("<key>{k}</key><{v}/>\n"));
    };
    out.push_str("<key>PayloadContent</key>\n<array>\n<dict>\n");
    s(&mut out, "EmailAccountDescription", &address);
    s(&mut out, "EmailAccountName", &address);
    s(&mut out, "EmailAccountType", kind);
    s(&mut out, "EmailAddress", &address);
    s(
        &mut out,
        "IncomingMailServerAuthentication",
        "EmailAuthPassword",
    );
    s(&mut out, "IncomingMailServerHostName", &host);
    n(&mut out, "IncomingMailServerPortNumber", incoming.port);
    // Apple has no STARTTLS key: "use SSL" asks for TLS either way.
    b(&mut out, "IncomingMailServerUseSSL", true);
    s(&mut out, "IncomingMailServerUsername", &login);
    s(&mut out, "IncomingPassword", &password);
    if let Some(o) = outgoing {
        s(
            &mut out,
            "OutgoingMailServerAuthentication",
            "EmailAuthPassword",
        );
        s(&mut out, "OutgoingMailServerHostName", &host);
        n(&mut out, "OutgoingMailServerPortNumber", o.port);
        b(&mut out, "OutgoingMailServerUseSSL", true);
        s(&mut out, "OutgoingMailServerUsername", &login);
        if p.protocols.contains(Protocol::Smtp) {
            s(&mut out, "OutgoingPassword", &password);
        }
    }
    s(&mut out, "PayloadDescription", &device);
    s(&mut out, "PayloadDisplayName", &address);
    s(
        &mut out,
        "PayloadIdentifier",
        &format!("{id}.account.{}", uuid()),
    );
    s(&mut out, "PayloadType", "com.apple.mail.managed");
    s(&mut out, "PayloadUUID", &uuid());
    out.push_str("<key>PayloadVersion</key><integer>1</integer>\n");
    b(&mut out, "PreventAppSheet", false);
    b(&mut out, "PreventMove", false);
    b(&mut out, "SMIMEEnabled", false);
    out.push_str("</dict>\n</array>\n");
    s(&mut out, "PayloadDescription", &device);
    s(
        &mut out,
        "PayloadDisplayName",
        &format!("{address} ({device})"),
    );
    s(&mut out, "PayloadIdentifier", &format!("{id}.{}", uuid()));
    s(&mut out, "PayloadOrganization", &host);
    b(&mut out, "PayloadRemovalDisallowed", false);
    s(&mut out, "PayloadType", "Configuration");
    s(&mut out, "PayloadUUID", &uuid());
    out.push_str("<key>PayloadVersion</key><integer>1</integer>\n</dict>\n</plist>\n");
    Some(Zeroizing::new(out.into_bytes()))
}

/// A profile waiting to be taken.
pub(crate) struct Waiting {
    /// The profile (signed or not), zeroed when dropped.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Whether it is signed.
    pub signed: bool,
    /// Its mailbox.
    pub address: String,
    /// Who made it (the name they logged in to the page with).
    pub login: String,
    /// The app password it carries.
    pub name: String,
    /// Until when its link works.
    pub until: Timestamp,
}

/// The profiles waiting, by the hash of their token.
#[derive(Default)]
pub(crate) struct Profiles(Mutex<HashMap<[u8; 32], Waiting>>);

fn key(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl Profiles {
    /// Keeps `w` until it is taken or `w.until`; its token (random, URL-safe). A profile
    /// still waiting for the same mailbox is dropped.
    pub(crate) fn put(&self, w: Waiting, now: Timestamp) -> String {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the system's random numbers");
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, old| old.until > now && old.address != w.address);
        if map.len() >= MAX_WAITING
            && let Some(oldest) = map.iter().min_by_key(|(_, o)| o.until).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&token), w);
        token
    }

    /// The profile of `token`, taken (it is gone after this), if it is still waiting.
    pub(crate) fn take(&self, token: &str, now: Timestamp) -> Option<Waiting> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let w = map.remove(&key(token))?;
        (w.until > now).then_some(w)
    }

    /// Whether `token`'s profile is still waiting (and whether it is signed).
    pub(crate) fn waiting(&self, token: &str, now: Timestamp) -> Option<bool> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key(token))
            .filter(|w| w.until > now)
            .map(|w| w.signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::clients::Server;

    fn waiting(address: &str, until: Timestamp) -> Waiting {
        Waiting {
            bytes: Zeroizing::new(b"profile".to_vec()),
            signed: false,
            address: address.into(),
            login: address.into(),
            name: "iPhone".into(),
            until,
        }
    }

    /// Once, within its life, by its token only; a new one for the mailbox replaces it.
    #[test]
    fn a_waiting_profile_is_taken_once_before_it_expires() {
        let t0: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let p = Profiles::default();
        let token = p.put(waiting("a@b.it", t0 + LINK_LIFE), t0);
        assert_eq!(token.len(), 43);
        assert!(p.take("not-the-token", t0).is_none());
        assert_eq!(p.waiting(&token, t0), Some(false));
        assert!(p.take(&token, t0).is_some());
        assert!(p.take(&token, t0).is_none(), "taken once");

        // Ten minutes of a clock the test turns: gone.
        let late = p.put(waiting("a@b.it", t0 + LINK_LIFE), t0);
        assert!(p.take(&late, t0 + LINK_LIFE).is_none());

        let first = p.put(waiting("a@b.it", t0 + LINK_LIFE), t0);
        let second = p.put(waiting("a@b.it", t0 + LINK_LIFE), t0);
        assert!(p.take(&first, t0).is_none(), "replaced by the newer one");
        assert!(p.take(&second, t0).is_some());
    }

    #[test]
    fn a_profile_carries_what_was_ticked_and_escapes_it() {
        let clients = MailClients {
            host: "mail.example.it".into(),
            servers: vec![
                Server {
                    protocol: Protocol::Pop3,
                    port: 995,
                    implicit_tls: true,
                },
                Server {
                    protocol: Protocol::Smtp,
                    port: 465,
                    implicit_tls: true,
                },
            ],
            domains: Vec::new(),
        };
        let mut protocols = ProtocolSet::NONE;
        protocols.insert(Protocol::Pop3);
        let of = ProfileOf {
            clients: &clients,
            address: "a@b.it",
            login: "a@b.it",
            password: "pw<&>",
            device: "iPad di Anna",
            protocols,
        };
        let text = String::from_utf8(plist(&of).unwrap().to_vec()).unwrap();
        assert!(text.contains("<string>EmailTypePOP</string>"), "{text}");
        assert!(text.contains("<string>pw&lt;&amp;&gt;</string>"), "{text}");
        assert!(
            !text.contains("OutgoingPassword"),
            "SMTP not ticked: {text}"
        );
        protocols.insert(Protocol::Imap);
        let of = ProfileOf { protocols, ..of };
        assert!(plist(&of).is_some(), "POP3 still there");
        let none = ProfileOf {
            protocols: ProtocolSet::NONE,
            ..of
        };
        assert!(plist(&none).is_none());
    }
}
