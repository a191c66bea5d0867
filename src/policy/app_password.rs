//! App passwords ("password per programmi di posta"): made for people to type.
//!
//! 24 symbols from a 32-symbol alphabet without look-alikes (no `l`, `o`, `0`, `1`):
//! 120 bits from the OS CSPRNG. Shown as six groups of four,
//! `abcd-efgh-jkmn-pqrs-tuvw-xyz2`, and accepted with or without the dashes and spaces, in
//! either case.
//!
//! A mailbox may have several, each named and scoped to protocols. The first group is the
//! password's *selector*, kept in clear beside the hash so a login finds the one record
//! to verify — one argon2id verification per attempt, however many passwords a mailbox
//! has (as Stalwart embeds an identifier). The other 20 symbols, 100 bits, are the secret
//! part: SPEC's floor. Passwords made before selectors existed have none and are tried
//! when no selector matches, which is still one verification.

use jiff::Timestamp;

use jiff::tz::TimeZone;

use super::{Period, PolicyError, Protocol, ProtocolSet};
use crate::secret::Secret;

/// The symbols an app password is made of (32 = 2^5, so a random byte maps without bias).
pub const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Symbols in an app password.
pub const LEN: usize = 24;
/// Symbols per printed group.
pub const GROUP: usize = 4;
/// Entropy of one app password.
pub const BITS: usize = LEN * 5;
/// Bits that stay secret: all but the selector, which is stored in clear.
pub const SECRET_BITS: usize = (LEN - GROUP) * 5;
// SPEC: "at least 100 bits from the OS CSPRNG".
const _: () = assert!(SECRET_BITS >= 100);

/// The name a password gets when the owner gives none.
pub const DEFAULT_NAME: &str = "default";
/// The longest name, in characters.
pub const MAX_NAME: usize = 40;

/// The selector of a canonical app password: its first group.
pub fn selector(canonical: &Secret) -> String {
    canonical.expose().chars().take(GROUP).collect()
}

/// A password name as the owner typed it, checked and trimmed: 1 to 40 letters, digits,
/// spaces and `-_.'`, so it reads well in a list and in a notice ("Outlook in ufficio").
pub fn check_name(name: &str) -> Result<String, PolicyError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '\''));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(PolicyError::BadAppPasswordName(name.to_owned()))
    }
}

/// When and from where an app password last logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastUse {
    /// When.
    pub at: Timestamp,
    /// The client's address.
    pub client: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The listener's name.
    pub listener: String,
    /// The program, when the client said (IMAP `ID`, SMTP `EHLO`).
    pub software: Option<String>,
}

/// A fresh app password in its printed form (`xxxx-xxxx-…`).
pub fn generate() -> Result<Secret, PolicyError> {
    let mut raw = zeroize::Zeroizing::new([0u8; LEN]);
    getrandom::fill(raw.as_mut()).map_err(|e| PolicyError::Random(e.to_string()))?;
    let mut out = String::with_capacity(LEN + LEN / GROUP);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(Secret::new(out))
}

/// The canonical form that is hashed and verified, if `presented` has the shape of an app
/// password (dashes and white space dropped, case folded); `None` if it cannot be one,
/// which lets the login path skip a useless hash verification.
pub fn canonical(presented: &str) -> Option<Secret> {
    symbols(presented, LEN)
}

/// `presented` as exactly `len` symbols of [`ALPHABET`] (dashes and white space dropped,
/// case folded), if it is that.
pub(crate) fn symbols(presented: &str, len: usize) -> Option<Secret> {
    let mut out = String::with_capacity(len);
    for c in presented.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = c.to_ascii_lowercase();
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || out.len() == len {
            return None;
        }
        out.push(c);
    }
    (out.len() == len).then(|| Secret::new(out))
}

/// One app password of a mailbox, as stored: its hash and its dates, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// Store id (0 before it is first saved).
    pub id: i64,
    /// The owner's name for it, unique in the mailbox.
    pub name: String,
    /// Its first group, in clear (see the module notes); `None` for older passwords.
    pub selector: Option<String>,
    /// The protocols it may be used with; `None`: every protocol the mailbox enables.
    pub scope: Option<ProtocolSet>,
    /// argon2id PHC string of the canonical form.
    pub hash: String,
    /// When it was generated.
    pub created_at: Timestamp,
    /// The first instant it no longer works.
    pub expires_at: Timestamp,
    /// How many times its expiry was postponed.
    pub postponed: u32,
    /// Its last login, if any (not a login fact: changing it invalidates nothing).
    pub last_use: Option<LastUse>,
    /// When its next expiry reminder is due (see [`reminders`]); `None`: no more.
    pub next_reminder_at: Option<Timestamp>,
    /// The networks it may be used from; empty: anywhere.
    pub networks: Vec<crate::net::Network>,
}

/// A moment the owner is reminded of an app password's expiry (SPEC "notices": when
/// postponing opens, shortly before, and on expiry — each once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Milestone {
    /// Postponing opens (the postpone window before expiry).
    PostponeOpens,
    /// This long before expiry.
    Before(Period),
    /// The password expired.
    Expired,
}

impl Milestone {
    /// The stored name, unique per password and expiry.
    pub fn key(&self) -> String {
        match self {
            Milestone::PostponeOpens => "postpone-opens".into(),
            Milestone::Before(p) => format!("before-{}", p.to_string().replace(' ', "")),
            Milestone::Expired => "expired".into(),
        }
    }
}

/// Every reminder of `ap`, in time order: when postponing opens, `before` each of
/// `reminders_before`, and on expiry.
pub fn reminders(
    ap: &AppPassword,
    window: Period,
    reminders_before: &[Period],
    zone: &TimeZone,
) -> Vec<(Milestone, Timestamp)> {
    let mut all = vec![(Milestone::PostponeOpens, ap.postpone_opens_at(window, zone))];
    for p in reminders_before {
        all.push((Milestone::Before(*p), p.before(ap.expires_at, zone)));
    }
    all.push((Milestone::Expired, ap.expires_at));
    all.sort_by_key(|(_, at)| *at);
    all.dedup_by_key(|(_, at)| *at);
    all
}

impl std::fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPassword")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("hash", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("postponed", &self.postponed)
            .finish()
    }
}

impl AppPassword {
    /// A new app password named [`DEFAULT_NAME`], for every protocol, generated at
    /// `now`, valid for `validity`.
    pub fn new(hash: String, now: Timestamp, validity: Period, zone: &TimeZone) -> Self {
        AppPassword {
            id: 0,
            name: DEFAULT_NAME.into(),
            selector: None,
            scope: None,
            hash,
            created_at: now,
            expires_at: validity.after(now, zone),
            postponed: 0,
            last_use: None,
            next_reminder_at: None,
            networks: Vec::new(),
        }
    }

    /// Whether a client at `ip` may use it (its networks, if it is pinned to any).
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(ip))
    }

    /// The protocols it works with on a mailbox that enables `enabled`.
    pub fn effective_scope(&self, enabled: ProtocolSet) -> ProtocolSet {
        let mut out = ProtocolSet::NONE;
        for p in enabled.iter() {
            if self.scope.is_none_or(|s| s.contains(p)) {
                out.insert(p);
            }
        }
        out
    }

    /// Whether it still works at `now`: valid up to, not including, `expires_at`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// The first moment "Posticipa scadenza" is allowed: `window` before expiry.
    pub fn postpone_opens_at(&self, window: Period, zone: &TimeZone) -> Timestamp {
        window.before(self.expires_at, zone)
    }

    /// Extends the same password: allowed from `window` before expiry, and after it.
    /// New expiry = max(old expiry, now) + `validity` (SPEC "postpone").
    pub fn postpone(
        &mut self,
        now: Timestamp,
        validity: Period,
        window: Period,
        zone: &TimeZone,
    ) -> Result<(), PolicyError> {
        let opens_at = self.postpone_opens_at(window, zone);
        if now < opens_at {
            return Err(PolicyError::PostponeTooEarly {
                opens_at: opens_at.to_zoned(zone.clone()),
                expires_at: self.expires_at.to_zoned(zone.clone()),
            });
        }
        self.expires_at = validity.after(self.expires_at.max(now), zone);
        self.postponed = self.postponed.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: TimeZone = TimeZone::UTC;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn generated_passwords_are_grouped_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        let s = a.expose();
        assert_eq!(s.len(), LEN + LEN / GROUP - 1);
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(groups.len(), LEN / GROUP);
        assert!(groups.iter().all(|g| g.len() == GROUP));
    }

    #[test]
    fn accepted_with_or_without_separators_and_in_any_case() {
        let p = generate().unwrap();
        let canon = canonical(p.expose()).unwrap();
        assert_eq!(canon.expose(), p.expose().replace('-', ""));
        let spaced = p.expose().replace('-', " ").to_uppercase();
        assert_eq!(canonical(&spaced).unwrap().expose(), canon.expose());
        assert_eq!(canonical(canon.expose()).unwrap().expose(), canon.expose());
    }

    #[test]
    fn other_strings_are_not_app_passwords() {
        assert!(canonical("").is_none());
        assert!(canonical("Password1!").is_none());
        assert!(canonical(&"a".repeat(23)).is_none());
        assert!(canonical(&"a".repeat(25)).is_none());
        // 'l', 'o', '0', '1' are not in the alphabet.
        assert!(canonical(&"l".repeat(24)).is_none());
        assert!(canonical(&"à".repeat(24)).is_none());
    }

    #[test]
    fn valid_until_expiry_exclusive() {
        let ap = AppPassword::new(
            String::new(),
            at("2022-11-15T10:00:00Z"),
            Period::months(3),
            &UTC,
        );
        assert_eq!(ap.expires_at, at("2023-02-15T10:00:00Z"));
        assert!(ap.is_valid_at(at("2023-02-15T09:59:59Z")));
        assert!(!ap.is_valid_at(at("2023-02-15T10:00:00Z")));
    }

    #[test]
    fn postpone_refused_before_window_names_the_date() {
        let mut ap = AppPassword::new(
            String::new(),
            at("2022-11-15T10:00:00Z"),
            Period::months(3),
            &UTC,
        );
        let err = ap
            .postpone(
                at("2023-01-31T09:59:59Z"),
                Period::months(3),
                Period::days(14),
                &UTC,
            )
            .unwrap_err();
        assert_eq!(
            err,
            PolicyError::PostponeTooEarly {
                opens_at: at("2023-02-01T10:00:00Z").to_zoned(UTC),
                expires_at: at("2023-02-15T10:00:00Z").to_zoned(UTC)
            }
        );
        assert!(err.to_string().contains("01/02/2023 10:00 UTC"), "{err}");
        assert_eq!(
            ap.expires_at,
            at("2023-02-15T10:00:00Z"),
            "refusal changes nothing"
        );
    }

    #[test]
    fn postpone_inside_window_extends_from_old_expiry() {
        let mut ap = AppPassword::new(
            String::new(),
            at("2022-11-15T10:00:00Z"),
            Period::months(3),
            &UTC,
        );
        ap.postpone(
            at("2023-02-01T10:00:00Z"),
            Period::months(3),
            Period::days(14),
            &UTC,
        )
        .unwrap();
        assert_eq!(ap.expires_at, at("2023-05-15T10:00:00Z"));
        assert_eq!(ap.postponed, 1);
    }

    #[test]
    fn postpone_after_expiry_extends_from_now() {
        let mut ap = AppPassword::new(
            String::new(),
            at("2022-11-15T10:00:00Z"),
            Period::months(3),
            &UTC,
        );
        ap.postpone(
            at("2023-03-10T08:00:00Z"),
            Period::months(3),
            Period::days(14),
            &UTC,
        )
        .unwrap();
        assert_eq!(ap.expires_at, at("2023-06-10T08:00:00Z"));
    }

    #[test]
    fn postpone_at_end_of_month_clamps() {
        let mut ap = AppPassword::new(
            String::new(),
            at("2023-08-30T12:00:00Z"),
            Period::months(3),
            &UTC,
        );
        assert_eq!(ap.expires_at, at("2023-11-30T12:00:00Z"));
        ap.postpone(
            at("2023-11-20T00:00:00Z"),
            Period::months(3),
            Period::days(14),
            &UTC,
        )
        .unwrap();
        assert_eq!(ap.expires_at, at("2024-02-29T12:00:00Z"));
    }
}
