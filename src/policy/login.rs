//! The login decision: SPEC.md "The login decision", one function, one test per row.
//!
//! The caller (the authenticator) looks the login name up, checks the throttle, verifies
//! the presented secret against the stored hashes, and hands the facts to [`decide`]. The
//! decision carries a [`Reason`] for the access history; on the wire every refusal reads
//! the same (see [`Outcome`]).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use super::abuse::{BlockNote, CodeUse};
use super::{Mailbox, Protocol, ProtocolSet};

super::names::named_enum! {
    /// Which kind of listener the client came in on.
    pub enum ListenerKind {
        /// The mailbox itself.
        Mailbox = "mailbox",
        /// The security archive, a separate store offered to `pro` and `premium`.
        Archive = "archive",
    }
}

/// Which stored secret the presented one matched, as established by hash verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// The login's own main password.
    Main,
    /// One of the mailbox's app passwords (its store id).
    App(i64),
    /// Neither (or verification was not attempted).
    Neither,
}

super::names::named_enum! {
    /// The credential kind recorded in the access history.
    pub enum CredentialKind {
        /// The main password.
        Main = "main",
        /// The app password.
        App = "app",
        /// A code from the 2FA device (the page's second step, or an action that asks
        /// for one).
        Code = "code",
        /// Nothing we recognise.
        Unknown = "unknown",
    }
}

super::names::named_enum! {
    /// How an attempt ended, as the access history records it.
    pub enum AccessResult {
        /// Logged in.
        Accepted = "accepted",
        /// "Authentication failed" on the wire.
        Refused = "refused",
        /// A temporary failure on the wire (upstream down, overloaded).
        TemporaryFailure = "temporary_failure",
    }
}

/// Why an attempt ended as it did: for the access history, never for the wire. Stored as
/// its code and fields (`{"code": "wrong_password"}`, `{"code": "protocol_disabled",
/// "with": "pop3"}`), put into words by `wording` in the reader's language.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", content = "with", rename_all = "snake_case")]
pub enum Reason {
    /// No mailbox or multi-user account has that name.
    UnknownLogin,
    /// The protocol is disabled for the mailbox.
    ProtocolDisabled(Protocol),
    /// Archive listener, plan without archive.
    ArchiveNotInPlan,
    /// Wrong password, 2FA off.
    WrongPassword,
    /// The right main password, refused because 2FA is on.
    #[serde(rename = "main_password_under_2fa")]
    MainPasswordUnder2fa,
    /// A session logged in with a main password that has since been changed.
    MainPasswordChanged,
    /// 2FA on, the secret matched nothing and no app password exists (never generated,
    /// or deactivated).
    NoActiveAppPassword,
    /// 2FA on, the secret is not the current app password (wrong, or a replaced one).
    WrongAppPassword,
    /// The app password matched but expired at this time (in the provider's zone).
    AppPasswordExpired(jiff::Zoned),
    /// The app password matched but is limited to other protocols.
    OutOfScope {
        /// Its name.
        name: String,
        /// The protocols it works with.
        scope: ProtocolSet,
    },
    /// The app password matched but is pinned to networks the client is not in.
    OutsideNetworks {
        /// Its name.
        name: String,
    },
    /// The main password appears in lists of stolen passwords, and the operator refuses
    /// such passwords on the mail protocols (`[auth] refuse_breached`).
    BreachedPassword,
    /// Refused unseen: a count of the abuse model blocks it (which, for how long).
    Throttled(BlockNote),
    /// Password verification is saturated: a temporary failure.
    Overloaded,
    /// The upstream could not be reached or refused our login.
    UpstreamUnavailable(String),
    /// Credentials that can never be accepted (bad encoding, control characters, an
    /// authorization identity other than the login).
    Malformed(String),
    /// The store could not be read: a temporary failure, never "authentication failed".
    StoreUnavailable(String),
    /// Passed to the upstream (`main_password = "upstream"`), which refused it.
    RefusedByUpstream,
    /// Passed to the upstream, which accepted it (an accepted row's note).
    PassedToUpstream,
    /// This attempt started blocks (a row of its own after the attempt's).
    BlocksStarted(Vec<BlockNote>),
    /// A relayed session ended by a change (or its app password's expiry).
    SessionEnded(Box<Reason>),
    /// The page's login completed: the main password, then a code from the device.
    CodeAccepted,
    /// The page's login completed: the main password, then the passkey.
    PasskeyAccepted,
    /// A configuration profile carrying a new app password was downloaded (from the page,
    /// or by its one-time link).
    ProfileDownloaded {
        /// The app password it carries.
        name: String,
        /// By the one-time link (a QR code shown on the page), not the page's button.
        by_link: bool,
    },
    /// A wrong (or already used) code from the device.
    WrongCode {
        /// Where it was asked.
        purpose: CodeUse,
        /// Already used (a replay), rather than wrong.
        reused: bool,
    },
    /// A code asked while the mailbox's code step is blocked: not looked at.
    CodeBlocked {
        /// Where it was asked.
        purpose: CodeUse,
        /// The block.
        block: BlockNote,
    },
    /// A row from before reasons were kept as codes: its words as then written.
    Text(String),
}

impl Reason {
    /// A short, bounded name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::UnknownLogin => "unknown_login",
            Reason::ProtocolDisabled(_) => "protocol_disabled",
            Reason::ArchiveNotInPlan => "archive_not_in_plan",
            Reason::WrongPassword => "wrong_password",
            Reason::MainPasswordUnder2fa => "main_password_under_2fa",
            Reason::MainPasswordChanged => "main_password_changed",
            Reason::NoActiveAppPassword => "no_active_app_password",
            Reason::WrongAppPassword => "wrong_app_password",
            Reason::AppPasswordExpired(_) => "app_password_expired",
            Reason::OutOfScope { .. } => "out_of_scope",
            Reason::OutsideNetworks { .. } => "outside_networks",
            Reason::BreachedPassword => "breached_password",
            Reason::Throttled(_) => "throttled",
            Reason::Overloaded => "overloaded",
            Reason::UpstreamUnavailable(_) => "upstream_unavailable",
            Reason::Malformed(_) => "malformed",
            Reason::StoreUnavailable(_) => "store_unavailable",
            Reason::RefusedByUpstream => "refused_by_upstream",
            Reason::PassedToUpstream => "passed_to_upstream",
            Reason::BlocksStarted(_) => "blocks_started",
            Reason::SessionEnded(_) => "session_ended",
            Reason::CodeAccepted => "code_accepted",
            Reason::PasskeyAccepted => "passkey_accepted",
            Reason::ProfileDownloaded { .. } => "profile_downloaded",
            Reason::WrongCode { .. } => "wrong_code",
            Reason::CodeBlocked { .. } => "code_blocked",
            Reason::Text(_) => "text",
        }
    }
}

/// What the client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in.
    Accepted,
    /// The protocol's one "authentication failed" text, whatever the reason.
    Refused(Reason),
    /// The protocol's temporary-failure text; never "authentication failed".
    TemporaryFailure(Reason),
}

impl Outcome {
    /// The result recorded in the access history, and why (never the secret).
    pub fn recorded(&self) -> (AccessResult, Option<Reason>) {
        match self {
            Outcome::Accepted => (AccessResult::Accepted, None),
            Outcome::Refused(r) => (AccessResult::Refused, Some(r.clone())),
            Outcome::TemporaryFailure(r) => (AccessResult::TemporaryFailure, Some(r.clone())),
        }
    }
}

/// A login decision with the facts the access history records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Accepted, refused or temporary failure.
    pub outcome: Outcome,
    /// The credential kind presented.
    pub credential: CredentialKind,
}

impl Decision {
    /// A refusal (the one wire text) for `reason`.
    pub fn refuse(reason: Reason, credential: CredentialKind) -> Self {
        Decision {
            outcome: Outcome::Refused(reason),
            credential,
        }
    }

    /// Whether the client may proceed to the upstream login.
    pub fn is_accepted(&self) -> bool {
        self.outcome == Outcome::Accepted
    }

    /// SPEC row "upstream down or its login failed": an accepted login whose upstream
    /// login then failed becomes a temporary failure, never "authentication failed".
    pub fn upstream_failed(self, why: impl Into<String>) -> Self {
        match self.outcome {
            Outcome::Accepted => Decision {
                outcome: Outcome::TemporaryFailure(Reason::UpstreamUnavailable(why.into())),
                ..self
            },
            _ => self,
        }
    }
}

/// The facts of one login attempt.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The mailbox the login name opens (`None`: unknown name).
    pub mailbox: Option<&'a Mailbox>,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The listener's kind.
    pub listener: ListenerKind,
    /// The block that refuses the attempt, if one does (checked before any hashing).
    pub throttled: Option<&'a BlockNote>,
    /// What the secret matched.
    pub matched: Matched,
    /// The client's address (an app password may be pinned to networks).
    pub client: Option<std::net::IpAddr>,
    /// Whether a main password known to be breached is refused (`[auth] refuse_breached`).
    pub refuse_breached: bool,
    /// Now.
    pub now: Timestamp,
    /// The provider's time zone, for the dates a reason names.
    pub zone: &'a jiff::tz::TimeZone,
}

/// SPEC.md's login decision table.
pub fn decide(a: &Attempt<'_>) -> Decision {
    let credential = match a.matched {
        Matched::Main => CredentialKind::Main,
        Matched::App(_) => CredentialKind::App,
        Matched::Neither => CredentialKind::Unknown,
    };
    if let Some(block) = a.throttled {
        return Decision::refuse(Reason::Throttled(block.clone()), credential);
    }
    let Some(m) = a.mailbox else {
        return Decision::refuse(Reason::UnknownLogin, credential);
    };
    if !m.protocols.contains(a.protocol) {
        return Decision::refuse(Reason::ProtocolDisabled(a.protocol), credential);
    }
    if a.listener == ListenerKind::Archive && !m.plan.has_archive() {
        return Decision::refuse(Reason::ArchiveNotInPlan, credential);
    }
    let accept = Decision {
        outcome: Outcome::Accepted,
        credential,
    };
    if !m.two_factor_on() {
        return match a.matched {
            Matched::Main if a.refuse_breached && m.main_breached.is_some() => {
                Decision::refuse(Reason::BreachedPassword, credential)
            }
            Matched::Main => accept,
            // No app password exists while 2FA is off; a match here would be stale state.
            Matched::App(_) | Matched::Neither => {
                Decision::refuse(Reason::WrongPassword, credential)
            }
        };
    }
    let ap = match a.matched {
        Matched::Main => return Decision::refuse(Reason::MainPasswordUnder2fa, credential),
        Matched::Neither if m.app_passwords.is_empty() => {
            return Decision::refuse(Reason::NoActiveAppPassword, credential);
        }
        Matched::Neither => return Decision::refuse(Reason::WrongAppPassword, credential),
        Matched::App(id) => match m.app_passwords.iter().find(|ap| ap.id == id) {
            Some(ap) => ap,
            // Verified against one that has since been deactivated, with none left.
            None if m.app_passwords.is_empty() => {
                return Decision::refuse(Reason::NoActiveAppPassword, credential);
            }
            // Verified against a password that has since been replaced or removed.
            None => return Decision::refuse(Reason::WrongAppPassword, credential),
        },
    };
    if !ap.is_valid_at(a.now) {
        return Decision::refuse(
            Reason::AppPasswordExpired(ap.expires_at.to_zoned(a.zone.clone())),
            credential,
        );
    }
    let scope = ap.effective_scope(m.protocols);
    if !scope.contains(a.protocol) {
        return Decision::refuse(
            Reason::OutOfScope {
                name: ap.name.clone(),
                scope,
            },
            credential,
        );
    }
    if let Some(ip) = a.client
        && !ap.allows(ip)
    {
        return Decision::refuse(
            Reason::OutsideNetworks {
                name: ap.name.clone(),
            },
            credential,
        );
    }
    accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    static UTC: TimeZone = TimeZone::UTC;
    use crate::policy::app_password::AppPassword;
    use crate::policy::mailbox::Device;
    use crate::policy::totp::DeviceSecret;
    use crate::policy::{Period, Plan};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const NOW: &str = "2023-01-10T12:00:00Z";

    fn mailbox() -> Mailbox {
        Mailbox::new(
            "mario@pec.example.it".into(),
            Plan::Standard,
            None,
            "main".into(),
        )
    }

    fn with_2fa(app: Option<AppPassword>) -> Mailbox {
        let mut m = mailbox();
        m.device = Some(Device::app(
            DeviceSecret::generate().unwrap(),
            None,
            at(NOW),
        ));
        m.app_passwords = app.into_iter().collect();
        m
    }

    fn app(created: &str) -> AppPassword {
        let mut ap = AppPassword::new(
            "apphash".into(),
            at(created),
            Period::months(3),
            &TimeZone::UTC,
        );
        ap.id = 1;
        ap
    }

    fn attempt(m: Option<&Mailbox>, matched: Matched) -> Attempt<'_> {
        Attempt {
            client: None,
            mailbox: m,
            protocol: Protocol::Imap,
            listener: ListenerKind::Mailbox,
            throttled: None,
            matched,
            refuse_breached: false,
            now: at(NOW),
            zone: &UTC,
        }
    }

    fn reason(d: Decision) -> Reason {
        match d.outcome {
            Outcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn row_unknown_login_name() {
        assert_eq!(
            reason(decide(&attempt(None, Matched::Neither))),
            Reason::UnknownLogin
        );
    }

    #[test]
    fn row_protocol_not_enabled() {
        let mut m = mailbox();
        m.set_protocols(&[], &[Protocol::Imap]).unwrap();
        let d = decide(&attempt(Some(&m), Matched::Main));
        assert_eq!(reason(d), Reason::ProtocolDisabled(Protocol::Imap));
        // Another protocol still works.
        let mut a = attempt(Some(&m), Matched::Main);
        a.protocol = Protocol::Smtp;
        assert!(decide(&a).is_accepted());
    }

    #[test]
    fn row_2fa_off_main_password_right() {
        let m = mailbox();
        let d = decide(&attempt(Some(&m), Matched::Main));
        assert_eq!(
            d,
            Decision {
                outcome: Outcome::Accepted,
                credential: CredentialKind::Main
            }
        );
    }

    /// A main password known breached is refused only when the operator asks, and only
    /// where the main password is accepted at all (2FA off).
    #[test]
    fn row_2fa_off_main_password_breached() {
        let mut m = mailbox();
        m.main_breached = Some(at(NOW));
        assert!(decide(&attempt(Some(&m), Matched::Main)).is_accepted());
        let mut a = attempt(Some(&m), Matched::Main);
        a.refuse_breached = true;
        assert_eq!(reason(decide(&a)), Reason::BreachedPassword);
        m.main_breached = None;
        let mut a = attempt(Some(&m), Matched::Main);
        a.refuse_breached = true;
        assert!(decide(&a).is_accepted());
    }

    #[test]
    fn row_2fa_off_wrong_password() {
        let m = mailbox();
        assert_eq!(
            reason(decide(&attempt(Some(&m), Matched::Neither))),
            Reason::WrongPassword
        );
    }

    #[test]
    fn row_2fa_on_main_password_given_even_if_right() {
        let m = with_2fa(Some(app("2022-12-01T00:00:00Z")));
        let d = decide(&attempt(Some(&m), Matched::Main));
        assert_eq!(d.credential, CredentialKind::Main);
        assert_eq!(reason(d), Reason::MainPasswordUnder2fa);
    }

    #[test]
    fn row_2fa_on_app_password_active_and_unexpired() {
        let m = with_2fa(Some(app("2022-12-01T00:00:00Z")));
        let d = decide(&attempt(Some(&m), Matched::App(1)));
        assert_eq!(
            d,
            Decision {
                outcome: Outcome::Accepted,
                credential: CredentialKind::App
            }
        );
    }

    #[test]
    fn row_app_password_expired() {
        let m = with_2fa(Some(app("2022-10-10T12:00:00Z")));
        // Expiry is 2023-01-10T12:00:00Z == NOW: expired at that instant.
        let d = decide(&attempt(Some(&m), Matched::App(1)));
        assert_eq!(
            reason(d),
            Reason::AppPasswordExpired(at("2023-01-10T12:00:00Z").to_zoned(TimeZone::UTC))
        );
        let mut a = attempt(Some(&m), Matched::App(1));
        a.now = at("2023-01-10T11:59:59Z");
        assert!(decide(&a).is_accepted(), "valid up to the second before");
    }

    #[test]
    fn row_app_password_deactivated() {
        let m = with_2fa(None);
        assert_eq!(
            reason(decide(&attempt(Some(&m), Matched::Neither))),
            Reason::NoActiveAppPassword
        );
    }

    #[test]
    fn row_app_password_replaced() {
        // The old password no longer matches the stored (new) hash: it matched nothing.
        let m = with_2fa(Some(app("2022-12-01T00:00:00Z")));
        assert_eq!(
            reason(decide(&attempt(Some(&m), Matched::Neither))),
            Reason::WrongAppPassword
        );
    }

    #[test]
    fn row_app_password_outside_its_scope_for_each_protocol() {
        let mut smtp_only = app("2022-12-01T00:00:00Z");
        smtp_only.name = "fatture".into();
        smtp_only.scope = Some(ProtocolSet::from_bits(0));
        smtp_only.scope.as_mut().unwrap().insert(Protocol::Smtp);
        let m = with_2fa(Some(smtp_only));
        for p in Protocol::ALL {
            let mut a = attempt(Some(&m), Matched::App(1));
            a.protocol = p;
            let d = decide(&a);
            if p == Protocol::Smtp {
                assert!(d.is_accepted(), "{p}");
            } else {
                let r = reason(d);
                assert_eq!(r.to_string(), "app password 'fatture' is limited to smtp");
            }
        }
        // The mailbox's own protocols bound every scope: disabled there, refused as such.
        let mut m = m;
        m.set_protocols(&[], &[Protocol::Smtp]).unwrap();
        let mut a = attempt(Some(&m), Matched::App(1));
        a.protocol = Protocol::Smtp;
        assert_eq!(reason(decide(&a)), Reason::ProtocolDisabled(Protocol::Smtp));
    }

    #[test]
    fn a_removed_app_password_matches_nothing() {
        let m = with_2fa(Some(app("2022-12-01T00:00:00Z")));
        assert_eq!(
            reason(decide(&attempt(Some(&m), Matched::App(2)))),
            Reason::WrongAppPassword
        );
    }

    #[test]
    fn row_archive_listener_plan_standard() {
        let m = mailbox();
        let mut a = attempt(Some(&m), Matched::Main);
        a.listener = ListenerKind::Archive;
        assert_eq!(reason(decide(&a)), Reason::ArchiveNotInPlan);
    }

    #[test]
    fn archive_listener_plan_pro_and_premium_with_app_password() {
        for plan in [Plan::Pro, Plan::Premium] {
            let mut m = with_2fa(Some(app("2022-12-01T00:00:00Z")));
            m.plan = plan;
            let mut a = attempt(Some(&m), Matched::App(1));
            a.listener = ListenerKind::Archive;
            assert!(decide(&a).is_accepted(), "{plan}");
        }
    }

    #[test]
    fn row_throttled() {
        let m = mailbox();
        let block = BlockNote {
            subject: super::super::abuse::Subject::Address,
            seconds: 30,
            network: "192.0.2.1".into(),
            failures: None,
        };
        let mut a = attempt(Some(&m), Matched::Neither);
        a.throttled = Some(&block);
        assert_eq!(reason(decide(&a)), Reason::Throttled(block.clone()));
        // Throttling wins even over an unknown name (same answer either way).
        a.mailbox = None;
        assert_eq!(reason(decide(&a)), Reason::Throttled(block.clone()));
    }

    #[test]
    fn a_reason_is_kept_as_its_code_and_fields() {
        let zoned = Timestamp::UNIX_EPOCH.to_zoned(jiff::tz::TimeZone::UTC);
        let reasons = [
            (Reason::WrongPassword, r#"{"code":"wrong_password"}"#),
            (
                Reason::ProtocolDisabled(Protocol::Pop3),
                r#"{"code":"protocol_disabled","with":"pop3"}"#,
            ),
            (
                Reason::WrongCode {
                    purpose: CodeUse::Disable,
                    reused: false,
                },
                r#"{"code":"wrong_code","with":{"purpose":"disable","reused":false}}"#,
            ),
            (
                Reason::MainPasswordUnder2fa,
                r#"{"code":"main_password_under_2fa"}"#,
            ),
        ];
        for (r, stored) in reasons {
            assert_eq!(serde_json::to_string(&r).unwrap(), stored);
            assert_eq!(serde_json::from_str::<Reason>(stored).unwrap(), r);
        }
        for r in [
            Reason::AppPasswordExpired(zoned),
            Reason::SessionEnded(Box::new(Reason::MainPasswordChanged)),
            Reason::Throttled(BlockNote {
                subject: super::super::abuse::Subject::SecondFactor,
                seconds: 60,
                network: "2001:db8::/64".into(),
                failures: Some(6),
            }),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r, "{json}");
        }
    }

    #[test]
    fn row_upstream_down_is_a_temporary_failure() {
        let m = mailbox();
        let d = decide(&attempt(Some(&m), Matched::Main)).upstream_failed("connection refused");
        assert_eq!(
            d.outcome,
            Outcome::TemporaryFailure(Reason::UpstreamUnavailable("connection refused".into()))
        );
        // A refusal stays a refusal: the upstream is never tried for it.
        let d = decide(&attempt(None, Matched::Neither)).upstream_failed("x");
        assert_eq!(reason(d), Reason::UnknownLogin);
    }

    #[test]
    fn app_password_with_2fa_off_is_refused() {
        let mut m = mailbox();
        m.app_passwords = vec![app("2022-12-01T00:00:00Z")];
        assert_eq!(
            reason(decide(&attempt(Some(&m), Matched::App(1)))),
            Reason::WrongPassword
        );
    }

    #[test]
    fn reasons_never_carry_secrets_and_read_well() {
        assert_eq!(
            Reason::AppPasswordExpired(at("2023-02-15T09:35:00Z").to_zoned(TimeZone::UTC))
                .to_string(),
            "app password expired on 15/02/2023 09:35 UTC"
        );
        let rome = TimeZone::get("Europe/Rome").unwrap();
        assert_eq!(
            Reason::AppPasswordExpired(at("2023-02-15T09:35:00Z").to_zoned(rome)).to_string(),
            "app password expired on 15/02/2023 10:35 CET"
        );
    }
}
