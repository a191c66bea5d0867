//! What the store keeps besides mailboxes: login names, access history, management
//! events and notices — plain records whose enumerated fields are enums, each stored and
//! printed by one name (see `named_enum!`).

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::Serialize;

use crate::policy::Mailbox;
use crate::policy::json_time;
use crate::policy::login::{AccessResult, CredentialKind, Reason};
use crate::policy::names::{Channel, UnknownName, named_enum};
pub use crate::policy::notice::NoticeKind;
use crate::policy::notice::Said;
use crate::policy::usage::Credential;

/// Who did a management action: recorded with every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// An operator, by name (the shell user, or the API key's name).
    Operator(String),
    /// The mailbox's owner, through a login name (the address or a multi-user account).
    Owner(String),
    /// Sentinella itself (scheduled jobs, tests, benchmarks).
    System,
}

impl Actor {
    /// Whether an operator acted (the CLI, the API), not the owner or the system.
    pub fn is_operator(&self) -> bool {
        matches!(self, Actor::Operator(_))
    }
}

impl fmt::Display for Actor {
    /// The stored form: `operator:NAME`, `owner:LOGIN` or `system`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator(name) => write!(f, "operator:{name}"),
            Actor::Owner(login) => write!(f, "owner:{login}"),
            Actor::System => f.write_str("system"),
        }
    }
}

impl FromStr for Actor {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("operator", name)) => Ok(Actor::Operator(name.to_owned())),
            Some(("owner", login)) => Ok(Actor::Owner(login.to_owned())),
            None if s == "system" => Ok(Actor::System),
            _ => Err(UnknownName {
                kind: "Actor",
                value: s.to_owned(),
            }),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

named_enum! {
    /// What a management event records.
    pub enum EventAction {
        /// A mailbox was added.
        MailboxAdd = "mailbox.add",
        /// A mailbox was removed.
        MailboxRemove = "mailbox.remove",
        /// A mailbox was imported from another server's password file (added, or its
        /// hash, plan or contact updated).
        MailboxImport = "mailbox.import",
        /// A main password was set (the mailbox's, or a multi-user account's).
        MailboxSetPassword = "mailbox.set-password",
        /// The plan changed.
        MailboxSetPlan = "mailbox.set-plan",
        /// The contact e-mail changed.
        MailboxSetContact = "mailbox.set-contact",
        /// Protocols were enabled or disabled.
        MailboxProtocols = "mailbox.protocols",
        /// A multi-user account was added.
        MailboxAddUser = "mailbox.add-user",
        /// A multi-user account was removed.
        MailboxRemoveUser = "mailbox.remove-user",
        /// A migration started.
        MailboxMigrationStart = "mailbox.migration-start",
        /// A migration finished.
        MailboxMigrationFinish = "mailbox.migration-finish",
        /// The upstream secret was set.
        MailboxSetUpstreamSecret = "mailbox.set-upstream-secret",
        /// Turning 2FA on started (a device is waiting for its code).
        TwoFactorEnable = "2fa.enable",
        /// 2FA is on.
        TwoFactorEnabled = "2fa.enabled",
        /// Replacing the device started.
        TwoFactorReplaceDevice = "2fa.replace-device",
        /// The new device replaced the old one.
        TwoFactorDeviceReplaced = "2fa.device-replaced",
        /// 2FA was turned off.
        TwoFactorDisable = "2fa.disable",
        /// A device waiting for its first code (turning 2FA on, or a replacement) was
        /// dropped.
        TwoFactorCancel = "2fa.cancel",
        /// An app password was generated.
        AppPasswordGenerate = "app-password.generate",
        /// A new app password replaced the old one.
        AppPasswordRegenerate = "app-password.regenerate",
        /// The app password's expiry was postponed.
        AppPasswordPostpone = "app-password.postpone",
        /// The app password was deactivated.
        AppPasswordDeactivate = "app-password.deactivate",
        /// The networks an app password may be used from were set.
        AppPasswordPin = "app-password.pin",
        /// An expiry reminder was written.
        ExpiryReminder = "notice.expiry-reminder",
        /// The owner proved the device at the web page's login (the code is spent).
        OwnerCodeUsed = "2fa.code-used",
        /// A new set of recovery codes was made.
        RecoveryCodesRenewed = "2fa.recovery-codes",
        /// A passkey's assertion was refused: its counter went back (a cloned key?).
        PasskeyRefused = "2fa.passkey-refused",
    }
}

named_enum! {
    /// The records that are kept for a while, then deleted (retention).
    pub enum Kept {
        /// The access history.
        AccessHistory = "access_history",
        /// Management events.
        Events = "events",
        /// Notices to the owner.
        Notices = "notices",
        /// The change feed (a follower that was away longer reloads everything).
        Changes = "changes",
        /// A fleet's throttle: wrong secrets counted against a key.
        ThrottleFailures = "throttle_failures",
        /// A fleet's throttle: when a key was last cleared by a success.
        ThrottleClears = "throttle_clears",
    }
}

impl Kept {
    /// Every kind, in the order a retention pass takes them.
    pub const ALL: [Kept; 6] = [
        Kept::AccessHistory,
        Kept::Events,
        Kept::Notices,
        Kept::Changes,
        Kept::ThrottleFailures,
        Kept::ThrottleClears,
    ];

    /// Whether only a fleet's store (PostgreSQL) keeps these (one machine's throttle is in
    /// its memory).
    pub fn fleet_only(self) -> bool {
        matches!(self, Kept::ThrottleFailures | Kept::ThrottleClears)
    }
}

/// A recovery code as stored: its selector, its hash, and when it was spent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecoveryCode {
    /// Its id.
    pub id: i64,
    /// Its first group, in clear.
    pub selector: String,
    /// Its argon2id hash.
    pub hash: String,
    /// When it was used (it works no more), if it was.
    pub used_at: Option<Timestamp>,
}

/// A management event: who did what to which mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When.
    #[serde(serialize_with = "json_time::serialize")]
    pub at: Timestamp,
    /// Which mailbox.
    #[serde(skip)]
    pub address: String,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: EventAction,
    /// Detail for the operator (never a secret).
    pub detail: Option<String>,
}

/// A login's main password hash replaced by a re-hash of the same password, after a
/// login proved it (an imported hash made argon2id at the configured cost): written with
/// the access history, only if the stored hash is still `old`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rehash {
    /// The (normalised) login name.
    pub login: String,
    /// The hash the password was verified against.
    pub old: String,
    /// Its argon2id re-hash.
    pub new: String,
}

impl std::fmt::Debug for Rehash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rehash")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// A notice the login path raises, written with the access history: unless one of the
/// same kind was written for the mailbox since `quiet_since` (at most one a period).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Which mailbox.
    pub address: String,
    /// Its contact address, when the notice is to be e-mailed there.
    pub email_to: Option<String>,
    /// The notice.
    pub notice: Notice,
    /// No alert if one of its kind was written at or after this.
    pub quiet_since: Timestamp,
    /// A "Non sono stato io" link its e-mail carries.
    pub link: Option<NotMeLink>,
}

/// A "Non sono stato io" link: kept as its hash; the token in clear rides only in the
/// e-mail that carries it, until that e-mail is sent or given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotMeLink {
    /// The token (in the e-mail only).
    pub token: crate::secret::Secret,
    /// Its SHA-256, as kept.
    pub hash: String,
    /// The mailbox.
    pub mailbox_id: i64,
    /// Which password it takes away.
    pub credential: Credential,
    /// The app password's name then.
    pub name: Option<String>,
    /// Made.
    pub created_at: Timestamp,
    /// Works until.
    pub expires_at: Timestamp,
}

/// A "Non sono stato io" link, as found by its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLink {
    /// The mailbox's address.
    pub address: String,
    /// Which password.
    pub credential: Credential,
    /// The app password's name then.
    pub name: Option<String>,
    /// Made.
    pub created_at: Timestamp,
    /// Works until.
    pub expires_at: Timestamp,
    /// When it was used, if it was.
    pub used_at: Option<Timestamp>,
}

/// A notice to the owner ("avviso").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// When.
    #[serde(serialize_with = "json_time::serialize")]
    pub at: Timestamp,
    /// What about.
    pub kind: NoticeKind,
    /// The text, as first written (in the configured language).
    pub message: String,
    /// What it said, to be put into another language ([`Notice::text`]); absent on
    /// notices from before it was kept.
    #[serde(skip)]
    pub said: Option<Said>,
    /// Its e-mails, one per recipient (none when e-mail is off or there is no contact).
    pub deliveries: Vec<Delivery>,
}

impl Notice {
    /// A notice not yet e-mailed.
    pub fn new(at: Timestamp, kind: NoticeKind, message: impl Into<String>) -> Self {
        Notice {
            at,
            kind,
            message: message.into(),
            said: None,
            deliveries: Vec::new(),
        }
    }
}

named_enum! {
    /// Where an e-mail of a notice stands.
    pub enum DeliveryState {
        /// Waiting to be sent (or to be tried again).
        Pending = "pending",
        /// The relay accepted it.
        Sent = "sent",
        /// The relay refused it for good (5xx); the error is kept.
        Failed = "failed",
    }
}

/// One e-mail of a notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// To whom.
    pub recipient: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Tries so far.
    pub attempts: u32,
    /// The last error, if any.
    pub error: Option<String>,
}

/// An e-mail due to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// Its outbox id.
    pub id: i64,
    /// The mailbox the notice is about.
    pub address: String,
    /// To whom.
    pub recipient: String,
    /// The notice.
    pub notice: Notice,
    /// Tries so far.
    pub attempts: u32,
    /// The "Non sono stato io" link's token it carries.
    pub link: Option<crate::secret::Secret>,
}

/// Which app password an attempt presented (by its store id, for its last use) and its
/// name (for people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPasswordUse {
    /// The app password's store id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

impl Serialize for AppPasswordUse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// One row of the access history ("storico accessi").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessRecord {
    /// When.
    #[serde(serialize_with = "json_time::serialize")]
    pub at: Timestamp,
    /// Listener name.
    pub listener: String,
    /// Protocol.
    pub protocol: Channel,
    /// Client address.
    pub client: String,
    /// The name the client used.
    pub login: String,
    /// The mailbox it resolved to, if any.
    #[serde(skip)]
    pub address: Option<String>,
    /// The (normalised) login name, when the store could not say which mailbox it opens
    /// at the time (an outage): the history writer resolves it when it writes the row,
    /// so the owner's history shows the attempt.
    #[serde(skip)]
    pub unresolved: Option<String>,
    /// The mailbox's id, when it is known (what the places of its passwords are kept by).
    #[serde(skip)]
    pub mailbox_id: Option<i64>,
    /// The program the client said it is (IMAP `ID`, SMTP `EHLO`), when it said.
    pub software: Option<String>,
    /// Which credential kind was presented.
    pub credential: CredentialKind,
    /// Which app password, when one matched (accepted or not).
    pub app_password: Option<AppPasswordUse>,
    /// How it ended.
    pub result: AccessResult,
    /// Why (never the secret): kept as its code and fields; in JSON (the CLI's
    /// `--json`, the API) as its English words.
    #[serde(serialize_with = "reason_words")]
    pub reason: Option<Reason>,
}

/// A reason in a JSON answer: its English words (`Display`, which `wording` writes).
fn reason_words<S: serde::Serializer>(r: &Option<Reason>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.collect_str(r),
        None => s.serialize_none(),
    }
}

/// A multi-user account, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAccount {
    /// Its login name.
    pub login: String,
    /// When it was added.
    pub created_at: Timestamp,
}

/// A login name with what it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginEntry {
    /// The (normalised) name.
    pub login: String,
    /// The mailbox it opens.
    pub mailbox: Mailbox,
    /// The login's own main password hash.
    pub password_hash: String,
    /// Moves when the password is set (not when it is only re-hashed).
    pub password_serial: i64,
    /// Whether it is a multi-user account (not the mailbox address itself).
    pub is_user: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_stored_form() {
        for a in [
            Actor::Operator("root".into()),
            Actor::Owner("ufficio@pec.it".into()),
            Actor::System,
        ] {
            assert_eq!(a.to_string().parse::<Actor>().unwrap(), a);
        }
        assert!("nobody".parse::<Actor>().is_err());
    }

    #[test]
    fn named_enums_round_trip_and_refuse_unknown_names() {
        assert_eq!(
            "2fa.device-replaced".parse::<EventAction>().unwrap(),
            EventAction::TwoFactorDeviceReplaced
        );
        assert_eq!(
            EventAction::MailboxSetContact.as_str(),
            "mailbox.set-contact"
        );
        assert_eq!(
            "two-factor".parse::<NoticeKind>().unwrap().to_string(),
            "two-factor"
        );
        let err = "mailbox.explode".parse::<EventAction>().unwrap_err();
        assert_eq!(err.to_string(), "unknown EventAction \"mailbox.explode\"");
    }
}
