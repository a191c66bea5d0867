//! The management layer: one function per management action of SPEC.md, the same for
//! every front door (the command line today; the owner's web page and the operator's
//! HTTP API later).
//!
//! Each action takes the [`Actor`] who does it (recorded in the event), its arguments and
//! the time, and returns a typed outcome ([`outcome`], `Serialize`) or a [`ManageError`]
//! that says what kind of failure it is. In between: the pure rule ([`crate::policy`]),
//! then one store transaction with the new state, the version bump when anything a login
//! reads changed, the event and the notice. Front doors parse input and render outcomes;
//! they never decide, hash, or write the store themselves.
//!
//! What only a person can give — a new password, a confirmation — the action asks for
//! through [`Ask`] once its own checks have passed, so nobody types a password for an
//! action that was going to be refused anyway.
//!
//! - [`mailbox`]: mailboxes, their settings and multi-user accounts.
//! - [`import`]: mailboxes adopted from another server's password file, hashes as they are.
//! - [`two_factor`]: the 2FA device.
//! - [`app_password`]: the app password.
//! - [`records`]: access history, notices, events.
//! - [`reminders`]: the expiry reminders, each once.
//! - [`outcome`]: what the actions return.

pub mod app_password;
pub mod import;
pub mod mailbox;
pub mod outcome;
pub mod records;
pub mod reminders;
pub mod two_factor;

use std::path::PathBuf;

use jiff::Timestamp;

use crate::auth::{HashCost, PasswordHasher};
use crate::policy::names::{check_new_password, normalize_address};
use crate::policy::{Mailbox, PolicyError, PolicySettings};
use crate::secret::Secret;
pub use crate::store::Actor;

/// An action that checked a device code, as the abuse model counts it (the one rule for
/// every front door that asks for a code): a wrong or reused code is a failure of the
/// second factor; anything else is not about the code.
pub fn code_answer<T>(r: Result<T, ManageError>) -> crate::auth::CodeAnswer<T, ManageError> {
    use crate::auth::CodeAnswer;
    match r {
        Ok(t) => CodeAnswer::Right(t),
        Err(error @ ManageError::Refused(crate::policy::PolicyError::InvalidCode)) => {
            CodeAnswer::Wrong {
                reused: false,
                error,
            }
        }
        Err(error @ ManageError::Refused(crate::policy::PolicyError::CodeReused)) => {
            CodeAnswer::Wrong {
                reused: true,
                error,
            }
        }
        Err(e) => CodeAnswer::Other(e),
    }
}
use crate::policy::notice::Said;
use crate::store::{Event, EventAction, ManageStore, Notice, StoreError, Transaction};
use crate::wording::{Language, Locale};

/// Why an action did not happen. Nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// A rule refused it; the text is the rule's own.
    #[error("{0}")]
    Refused(#[from] PolicyError),
    /// The person declined, or gave nothing usable where only they can (a confirmation,
    /// a password); the front door says which (`code`).
    #[error("{message}")]
    Declined {
        /// Machine-readable reason.
        code: &'static str,
        /// What to tell the person.
        message: String,
    },
    /// No mailbox has this address.
    #[error("no mailbox {0}")]
    NoMailbox(String),
    /// No login of that kind has this name.
    #[error("no login {0}")]
    NoLogin(String),
    /// The name is already a mailbox or a multi-user account.
    #[error("the login name {0} is already in use")]
    LoginTaken(String),
    /// The store failed; trying again later may work.
    #[error("{0}")]
    Store(StoreError),
    /// Something outside the rules failed (hashing, the random source, the key file).
    #[error("{0}")]
    Internal(String),
    /// An import file has bad lines (each with its number and why); nothing was
    /// imported.
    #[error("nothing imported; {}", import_errors(.0))]
    Import(Vec<String>),
    /// The person has not (yet) accepted this warning: nothing done. A front door that
    /// asks in two steps (the web page) shows the warning and asks again.
    #[error("not confirmed")]
    Unconfirmed(Warning),
}

/// An import's bad lines, the first 50 of them.
fn import_errors(errors: &[String]) -> String {
    let shown: Vec<&str> = errors.iter().take(50).map(String::as_str).collect();
    let more = errors.len().saturating_sub(shown.len());
    let mut text = format!("fix these lines:\n  {}", shown.join("\n  "));
    if more > 0 {
        text.push_str(&format!("\n  … and {more} more"));
    }
    text
}

/// The kind of a [`ManageError`], for front doors that map it to their own status
/// (exit code, HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Refused by a rule or declined by the person: do something else.
    Refused,
    /// The thing acted on does not exist.
    NotFound,
    /// It clashes with what exists.
    Conflict,
    /// A failure on our side; the same action may work later.
    Failure,
}

impl ManageError {
    /// Whether the request itself was unusable (malformed input, or something only the
    /// person can give was missing), not refused by a rule.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ManageError::Refused(p) => p.is_bad_input(),
            ManageError::Declined { .. } | ManageError::Import(_) | ManageError::Unconfirmed(_) => {
                true
            }
            _ => false,
        }
    }

    /// A stable, machine-readable name (`--json`, the API).
    pub fn code(&self) -> &'static str {
        match self {
            ManageError::Refused(p) => p.code(),
            ManageError::Declined { code, .. } => code,
            ManageError::NoMailbox(_) => "no_mailbox",
            ManageError::NoLogin(_) => "no_login",
            ManageError::LoginTaken(_) => "login_taken",
            ManageError::Store(_) => "store_error",
            ManageError::Internal(_) => "internal_error",
            ManageError::Import(_) => "bad_import",
            ManageError::Unconfirmed(_) => "not_confirmed",
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManageError::Refused(_)
            | ManageError::Declined { .. }
            | ManageError::Import(_)
            | ManageError::Unconfirmed(_) => ErrorKind::Refused,
            ManageError::NoMailbox(_) | ManageError::NoLogin(_) => ErrorKind::NotFound,
            ManageError::LoginTaken(_) => ErrorKind::Conflict,
            ManageError::Store(_) | ManageError::Internal(_) => ErrorKind::Failure,
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LoginTaken(login) => ManageError::LoginTaken(login),
            other => ManageError::Store(other),
        }
    }
}

/// Which password an action asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordFor {
    /// The main password of a new mailbox.
    NewMailbox,
    /// A new main password for a mailbox.
    MainPassword,
    /// The main password of a multi-user account.
    UserAccount,
    /// The secret the proxy logs in upstream with.
    UpstreamSecret,
}

pub use crate::policy::mailbox::Warning;

/// What the front door asks the person, when an action needs it.
pub trait Ask {
    /// A new password (typed twice where a person types it).
    fn password(&mut self, purpose: PasswordFor) -> Result<Secret, ManageError>;
    /// Accept `warning`, or decline ([`ManageError::Declined`]).
    fn confirm(&mut self, warning: &Warning) -> Result<(), ManageError>;
}

/// What the management layer needs from the configuration.
#[derive(Clone, Debug)]
pub struct ManageSettings {
    /// Policy periods.
    pub policy: PolicySettings,
    /// The issuer shown in authenticator apps.
    pub totp_issuer: String,
    /// The argon2id cost of new hashes.
    pub hash_cost: HashCost,
    /// The key file that seals upstream secrets.
    pub seal_key: PathBuf,
    /// Whether notices are e-mailed (`[notices.smtp]` is configured).
    pub email: bool,
    /// The language notices are written in.
    pub language: Language,
}

impl ManageSettings {
    /// How notices are put into words: the configured language, the policy's zone.
    pub fn locale(&self) -> Locale {
        Locale {
            language: self.language,
            zone: self.policy.zone.clone(),
        }
    }
}

/// The event and notice one action records.
struct Record {
    action: EventAction,
    detail: Option<String>,
    notice: Option<Said>,
    /// The login names of the mailbox changed (a multi-user account added, removed or
    /// given a new password): cached verifications must not survive it.
    logins_changed: bool,
    /// Another address to e-mail the notice to (the old contact, when it changes).
    also_email: Option<String>,
    /// A recovery code stood in for the device's (this many left): the owner is alerted.
    recovery: Option<u32>,
}

impl Record {
    fn new(action: EventAction) -> Self {
        Record {
            action,
            detail: None,
            notice: None,
            logins_changed: false,
            also_email: None,
            recovery: None,
        }
    }

    fn recovery(mut self, left: Option<u32>) -> Self {
        self.recovery = left;
        if left.is_some() {
            let detail = self.detail.take();
            self.detail = Some(match detail {
                Some(d) => format!("{d}; with a recovery code"),
                None => "with a recovery code".into(),
            });
        }
        self
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn notice(mut self, said: Said) -> Self {
        self.notice = Some(said);
        self
    }

    fn also_email(mut self, to: Option<String>) -> Self {
        self.also_email = to;
        self
    }

    fn logins_changed(mut self) -> Self {
        self.logins_changed = true;
        self
    }
}

/// The management actions over one store.
pub struct Manager {
    store: Box<dyn ManageStore>,
    settings: crate::live::Live<ManageSettings>,
    hasher: PasswordHasher,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    /// The actions over `store` with `settings`.
    pub fn new(store: Box<dyn ManageStore>, settings: ManageSettings) -> Result<Self, ManageError> {
        Self::with_live(store, crate::live::live(settings))
    }

    /// The actions over `store` with settings a reload may replace (the running proxy's
    /// front doors and jobs); each action reads them as it starts. The hashing cost is
    /// the one at construction.
    pub fn with_live(
        store: Box<dyn ManageStore>,
        settings: crate::live::Live<ManageSettings>,
    ) -> Result<Self, ManageError> {
        let hasher = PasswordHasher::new(settings.load().hash_cost)
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        Ok(Manager {
            store,
            settings,
            hasher,
        })
    }

    fn hash(&self, secret: &Secret) -> Result<String, ManageError> {
        self.hasher
            .hash(secret)
            .map_err(|e| ManageError::Internal(e.to_string()))
    }

    /// A new password from the person, checked against the password rule.
    fn new_password(ask: &mut dyn Ask, purpose: PasswordFor) -> Result<Secret, ManageError> {
        let secret = ask.password(purpose)?;
        check_new_password(secret.expose())?;
        Ok(secret)
    }

    /// The mailbox with this address, read outside any transaction.
    fn read(&self, address: &str) -> Result<Mailbox, ManageError> {
        let address = normalize_address(address)?;
        self.store
            .mailbox(&address)?
            .ok_or(ManageError::NoMailbox(address))
    }

    /// Runs `f` on a mailbox inside one transaction: the write lock first, then the
    /// mailbox, `f`, the version bump if anything a login reads changed, the mailbox
    /// saved, the event and the notice — all committed together, or nothing if `f`
    /// refuses. The one place a management action writes a mailbox.
    fn change<T>(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
        f: impl FnOnce(&mut dyn Transaction, &mut Mailbox) -> Result<(T, Record), ManageError>,
    ) -> Result<(T, Mailbox), ManageError> {
        let address = normalize_address(address)?;
        let email = self.settings.load().email;
        let locale = self.settings.load().locale();
        let mut tx = self.store.begin()?;
        let mut m = tx
            .mailbox(&address)?
            .ok_or_else(|| ManageError::NoMailbox(address.clone()))?;
        let before = m.login_fingerprint();
        let (out, record) = f(&mut *tx, &mut m)?;
        if record.logins_changed || m.login_fingerprint() != before {
            m.version += 1;
        }
        tx.save_mailbox(&m, now)?;
        let to = m.email_recipients(email, record.also_email.as_deref());
        let mails = (record.notice.is_some() || record.recovery.is_some()) && !to.is_empty();
        journal(&mut *tx, actor, &address, now, record, &to, &locale)?;
        tx.commit()?;
        if mails {
            crate::store::OUTBOX_FILLED.notify_one();
        }
        Ok((out, m))
    }
}

/// Writes an action's event and notice in its transaction.
fn journal(
    tx: &mut dyn Transaction,
    actor: &Actor,
    address: &str,
    now: Timestamp,
    record: Record,
    email_to: &[String],
    locale: &Locale,
) -> Result<(), StoreError> {
    tx.record_event(&Event {
        at: now,
        address: address.to_owned(),
        actor: actor.clone(),
        action: record.action,
        detail: record.detail,
    })?;
    if let Some(said) = record.notice {
        tx.record_notice(address, &Notice::said(now, said, locale), email_to, now)?;
    }
    if let Some(left) = record.recovery {
        let said = Said::RecoveryCodeUsed { left };
        tx.record_notice(address, &Notice::said(now, said, locale), email_to, now)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A manager over a temporary SQLite store with cheap hashing, and an [`Ask`] that
    //! answers from a script.

    use super::*;
    use crate::store::StoreLocation;

    /// Answers every question from what it was given.
    pub(crate) struct Scripted {
        pub(crate) password: Option<&'static str>,
        pub(crate) confirm: bool,
    }

    impl Ask for Scripted {
        fn password(&mut self, _: PasswordFor) -> Result<Secret, ManageError> {
            self.password
                .map(|p| Secret::new(p.to_owned()))
                .ok_or(ManageError::Declined {
                    code: "no_password",
                    message: "no password".into(),
                })
        }
        fn confirm(&mut self, _: &Warning) -> Result<(), ManageError> {
            if self.confirm {
                Ok(())
            } else {
                Err(ManageError::Declined {
                    code: "not_confirmed",
                    message: "not confirmed".into(),
                })
            }
        }
    }

    pub(crate) fn yes(password: &'static str) -> Scripted {
        Scripted {
            password: Some(password),
            confirm: true,
        }
    }

    pub(crate) fn manager() -> (tempfile::TempDir, Manager, StoreLocation) {
        manager_with(PolicySettings::default())
    }

    /// A manager whose policy is `policy`.
    pub(crate) fn manager_with(
        policy: PolicySettings,
    ) -> (tempfile::TempDir, Manager, StoreLocation) {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::Sqlite(dir.path().join("s.db"));
        let settings = ManageSettings {
            policy,
            totp_issuer: "Sentinella".into(),
            hash_cost: HashCost::CHEAP,
            seal_key: dir.path().join("s.key"),
            email: true,
            language: crate::wording::Language::It,
        };
        let m = Manager::new(location.open_manage().unwrap(), settings).unwrap();
        (dir, m, location)
    }

    /// The mailbox most tests act on.
    pub(crate) const ADDR: &str = "mario@pec.example.it";

    /// A manager with [`ADDR`] added by [`operator`] at `t` (main password
    /// "main-password").
    pub(crate) fn with_mailbox(
        plan: crate::policy::Plan,
        contact: Option<&str>,
        t: Timestamp,
    ) -> (tempfile::TempDir, Manager) {
        let (dir, m, _) = with_mailbox_under(PolicySettings::default(), plan, contact, t);
        (dir, m)
    }

    /// Like [`with_mailbox`], with `policy`; and where its store is.
    pub(crate) fn with_mailbox_under(
        policy: PolicySettings,
        plan: crate::policy::Plan,
        contact: Option<&str>,
        t: Timestamp,
    ) -> (tempfile::TempDir, Manager, StoreLocation) {
        let (dir, mut m, location) = manager_with(policy);
        m.add_mailbox(
            &operator(),
            ADDR,
            plan,
            contact,
            &mut yes("main-password"),
            t,
        )
        .unwrap();
        (dir, m, location)
    }

    pub(crate) fn operator() -> Actor {
        Actor::Operator("root".into())
    }

    /// The device secret inside a new device's otpauth URI, as the app would read it.
    pub(crate) fn device_secret(
        d: &super::outcome::NewDevice,
    ) -> crate::policy::totp::DeviceSecret {
        let uri = d.otpauth_uri.expose();
        let b32 = uri
            .split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, b32).unwrap();
        crate::policy::totp::DeviceSecret::from_bytes(bytes)
    }

    /// Turns 2FA on for `address` at `t`; returns the device secret.
    pub(crate) fn turn_on_2fa(
        m: &mut Manager,
        address: &str,
        t: Timestamp,
    ) -> crate::policy::totp::DeviceSecret {
        let dev = m.enable_2fa(&Actor::System, address, t).unwrap();
        let secret = device_secret(&dev);
        m.confirm_device(&Actor::System, address, &secret.code_at(t).unwrap(), t)
            .unwrap();
        secret
    }
}

#[cfg(test)]
mod tests;
