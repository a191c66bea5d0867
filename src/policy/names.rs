//! Plans, protocols and login names: the vocabulary every other rule speaks.

use std::fmt;
use std::str::FromStr;

use super::PolicyError;

/// A stored or parsed name that is not one of the enumeration's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    /// Which enumeration.
    pub kind: &'static str,
    /// The name that was read.
    pub value: String,
}

/// Declares an enumeration that is stored and printed as fixed names: `as_str`,
/// `FromStr` (an [`UnknownName`] error), `Display`, and `Serialize` as the name. One
/// definition per vocabulary, so the stored form and the printed form cannot drift.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// The stored and printed name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::policy::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::policy::names::UnknownName {
                        kind: stringify!($name),
                        value: s.to_owned(),
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

/// The mailbox's commercial plan; only `pro` and `premium` include the security archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// The base plan: no security archive.
    Standard,
    /// Includes the security archive.
    Pro,
    /// Includes the security archive.
    Premium,
}

impl Plan {
    /// Whether the security archive ("archivio di sicurezza") is part of the plan.
    pub fn has_archive(self) -> bool {
        matches!(self, Plan::Pro | Plan::Premium)
    }

    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Standard => "standard",
            Plan::Pro => "pro",
            Plan::Premium => "premium",
        }
    }
}

impl FromStr for Plan {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(Plan::Standard),
            "pro" => Ok(Plan::Pro),
            "premium" => Ok(Plan::Premium),
            _ => Err(PolicyError::BadPlan(s.to_owned())),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

named_enum! {
    /// Where a login attempt came in: a mail protocol, or the owner's web page
    /// ("Gestione account"). The access history's `protocol` column.
    pub enum Channel {
        /// IMAP.
        Imap = "imap",
        /// POP3.
        Pop3 = "pop3",
        /// SMTP submission.
        Smtp = "smtp",
        /// The owner's web page.
        Web = "web",
    }
}

impl Channel {
    /// Its name as people read it: "IMAP", "POP3", "SMTP", "Web".
    pub fn display_name(self) -> &'static str {
        match self {
            Channel::Imap => "IMAP",
            Channel::Pop3 => "POP3",
            Channel::Smtp => "SMTP",
            Channel::Web => "Web",
        }
    }
}

impl From<Protocol> for Channel {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Imap => Channel::Imap,
            Protocol::Pop3 => Channel::Pop3,
            Protocol::Smtp => Channel::Smtp,
        }
    }
}

/// A mail protocol that can be enabled per mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1 / IMAP4rev2.
    Imap,
    /// POP3.
    Pop3,
    /// SMTP submission.
    Smtp,
}

impl Protocol {
    /// Every protocol, in display order.
    pub const ALL: [Protocol; 3] = [Protocol::Imap, Protocol::Pop3, Protocol::Smtp];

    /// Its name as people read it: "IMAP", "POP3", "SMTP".
    pub fn display_name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Smtp => "SMTP",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Imap => 1,
            Protocol::Pop3 => 2,
            Protocol::Smtp => 4,
        }
    }

    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
        }
    }
}

impl FromStr for Protocol {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "imap" => Ok(Protocol::Imap),
            // The seeds say "POP"; accept both spellings.
            "pop3" | "pop" => Ok(Protocol::Pop3),
            "smtp" => Ok(Protocol::Smtp),
            _ => Err(PolicyError::BadProtocol(s.to_owned())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of protocols enabled for a mailbox, stored as a small bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtocolSet(u8);

impl serde::Serialize for ProtocolSet {
    /// A list of names, in display order: `["imap", "smtp"]`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Protocol::as_str))
    }
}

impl<'de> serde::Deserialize<'de> for ProtocolSet {
    /// A list of names, as [`serde::Serialize`] writes it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<Protocol>::deserialize(d)?;
        let mut set = ProtocolSet::NONE;
        for p in names {
            set.insert(p);
        }
        Ok(set)
    }
}

impl ProtocolSet {
    /// All three protocols: the default for a new mailbox.
    pub const ALL: ProtocolSet = ProtocolSet(7);
    /// No protocol: mail programs cannot be used at all.
    pub const NONE: ProtocolSet = ProtocolSet(0);

    /// Rebuilds a set from its stored bits, ignoring unknown bits.
    pub fn from_bits(bits: u8) -> Self {
        ProtocolSet(bits & 7)
    }
    /// The stored form.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// Whether `p` is enabled.
    pub fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }
    /// Enables `p`.
    pub fn insert(&mut self, p: Protocol) {
        self.0 |= p.bit();
    }
    /// Disables `p`.
    pub fn remove(&mut self, p: Protocol) {
        self.0 &= !p.bit();
    }
    /// Whether no protocol is enabled.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The enabled protocols in display order.
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl fmt::Display for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Protocol::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// Longest login name accepted (an e-mail address is at most 254 octets, RFC 5321 4.5.3.1).
pub const MAX_LOGIN_LEN: usize = 254;

/// The shortest main password (or upstream secret) accepted, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Whether a new main password (or upstream secret) may be set: long enough, not
/// unbounded, and free of NUL and line breaks (which no mail protocol can carry).
pub fn check_new_password(p: &str) -> Result<(), PolicyError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(PolicyError::WeakPassword {
            min: MIN_PASSWORD_LEN,
        });
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err(PolicyError::BadPassword("it must be at most 1024 bytes"));
    }
    if p.chars().any(|c| c == '\0' || c == '\r' || c == '\n') {
        return Err(PolicyError::BadPassword(
            "it must not contain NUL or line breaks",
        ));
    }
    Ok(())
}

/// Normalises a login name: ASCII lower case, no white space, control characters or NUL.
///
/// Login names match case-insensitively in ASCII only (SPEC "Principals"); non-ASCII
/// letters are kept as they are. Control characters and NUL are refused outright: a NUL in
/// a user name is how Dovecot CVE-2019-11500 style injections start.
pub fn normalize_login(name: &str) -> Result<String, PolicyError> {
    if name.is_empty() || name.len() > MAX_LOGIN_LEN {
        return Err(PolicyError::BadLogin(name.to_owned()));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(PolicyError::BadLogin(name.escape_debug().to_string()));
    }
    Ok(name.to_ascii_lowercase())
}

/// Normalises a mailbox address: a login name of the form `local@domain`.
pub fn normalize_address(address: &str) -> Result<String, PolicyError> {
    let login = normalize_login(address)
        .map_err(|_| PolicyError::BadAddress(address.escape_debug().to_string()))?;
    match login.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(login)
        }
        _ => Err(PolicyError::BadAddress(address.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_match_case_insensitively_in_ascii() {
        assert_eq!(
            normalize_login("Mario.Rossi@PEC.Example.IT").unwrap(),
            "mario.rossi@pec.example.it"
        );
        // Non-ASCII letters are not folded.
        assert_eq!(normalize_login("ÉLISE@X.it").unwrap(), "Élise@x.it");
    }

    #[test]
    fn logins_with_control_characters_are_refused() {
        for bad in [
            "", "a\0b", "a b", "a\tb", "a\r\nb", "a\"b", "a\\b", "\u{7f}x",
        ] {
            assert!(normalize_login(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_login(&"a".repeat(255)).is_err());
        assert!(normalize_login(&"a".repeat(254)).is_ok());
    }

    #[test]
    fn addresses_need_local_and_domain() {
        assert!(normalize_address("mario@pec.example.it").is_ok());
        for bad in ["mario", "@x.it", "mario@", "a@b@c", "a@.x", "a@x."] {
            assert!(normalize_address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn archive_only_for_pro_and_premium() {
        assert!(!Plan::Standard.has_archive());
        assert!(Plan::Pro.has_archive());
        assert!(Plan::Premium.has_archive());
    }

    #[test]
    fn protocol_set_operations() {
        let mut set = ProtocolSet::NONE;
        assert!(set.is_empty());
        set.insert(Protocol::Smtp);
        set.insert(Protocol::Imap);
        assert_eq!(set.to_string(), "imap,smtp");
        set.remove(Protocol::Imap);
        assert!(!set.contains(Protocol::Imap));
        assert_eq!(ProtocolSet::from_bits(set.bits()), set);
        assert_eq!(" POP".parse::<Protocol>().unwrap(), Protocol::Pop3);
        assert!("nntp".parse::<Protocol>().is_err());
    }
}
