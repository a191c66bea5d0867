//! The rules of SPEC.md as pure code: no I/O, the clock is always passed in.
//!
//! - [`period`]: calendar-month periods (`3mo`, `14d`) and their arithmetic.
//! - [`names`]: plans, protocols, login-name normalisation.
//! - [`totp`]: the associated 2FA device (RFC 6238 codes, replay refusal).
//! - [`passkey`]: the other kind of device (WebAuthn registration and assertion checks).
//! - [`app_password`]: generating, formatting and recognising app passwords.
//! - [`mailbox`]: a mailbox's state and every management action on it.
//! - [`recovery`]: recovery codes (the way back in without the device).
//! - [`login`]: the login decision table.
//! - [`notice`]: what a notice to the owner says, as data (`wording` puts it in words).
//! - [`usage`]: where each password is used (networks, programs) and when a new place
//!   asks the owner.
//! - [`abuse`]: the abuse model — what a failure counts against, blocks, what a
//!   success clears.

pub mod abuse;
pub mod app_password;
pub mod login;
pub mod mailbox;
pub mod names;
pub mod notice;
pub mod passkey;
pub mod period;
pub mod recovery;
pub mod totp;
pub mod usage;

pub use jiff::Timestamp;
pub use mailbox::{Mailbox, PolicySettings};
pub use names::{Plan, Protocol, ProtocolSet};
pub use period::Period;

/// A management action the rules refuse, or input they cannot accept.
///
/// The `Display` text is what the operator or owner reads: it says what is wrong and,
/// where there is one, what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not one of standard, pro, premium.
    #[error("unknown plan {0:?}: use standard, pro or premium")]
    BadPlan(String),
    /// Not one of imap, pop3, smtp.
    #[error("unknown protocol {0:?}: use imap, pop3 or smtp")]
    BadProtocol(String),
    /// Empty, too long, or holding white space or control characters.
    #[error(
        "invalid login name {0:?}: it must be 1-254 characters without spaces, quotes or control characters"
    )]
    BadLogin(String),
    /// One protocol both enabled and disabled in the same change.
    #[error("{0} is both enabled and disabled")]
    ProtocolBothWays(Protocol),
    /// Not of the form local@domain.
    #[error("invalid mailbox address {0:?}: expected local@domain")]
    BadAddress(String),
    /// Not of the form local@domain.
    #[error("invalid contact e-mail {0:?}: expected local@domain")]
    BadContact(String),
    /// A new password shorter than the minimum.
    #[error("the password must be at least {min} characters")]
    WeakPassword {
        /// The minimum, in characters.
        min: usize,
    },
    /// A new password that cannot be used.
    #[error("the password cannot be used: {0}")]
    BadPassword(&'static str),
    /// Replacing the device without a code from it is for operators only.
    #[error(
        "replacing the device needs a code from the current device; without one, only an operator can authorise it"
    )]
    OverrideNeedsOperator,
    /// The operating system's random source failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// The TOTP library refused the parameters (should not happen with our fixed ones).
    #[error("TOTP error: {0}")]
    Totp(String),
    /// SPEC: 2FA cannot be turned on while the mailbox is being migrated (seed 000).
    #[error(
        "the mailbox is being migrated: two-step verification cannot be turned on during the whole migration period; finish the migration first"
    )]
    MigrationInProgress,
    /// Enabling twice; the device is changed with replace-device.
    #[error(
        "two-step verification is already on; to change the associated device, replace the device instead"
    )]
    TwoFactorAlreadyOn,
    /// The action needs 2FA on.
    #[error("two-step verification is off for this mailbox; {0}")]
    TwoFactorOff(&'static str),
    /// `confirm` without a device waiting to be associated.
    #[error(
        "no device is waiting to be associated: start turning on two-step verification, or replacing the device, first"
    )]
    NoPendingDevice,
    /// Wrong, malformed or out-of-window code.
    #[error("the code is not valid: enter the 6-digit code the authenticator app shows now")]
    InvalidCode,
    /// RFC 6238 5.2: an accepted code is never accepted again.
    #[error("this code has already been used: wait for the next code in the authenticator app")]
    CodeReused,
    /// Not a network in CIDR notation.
    #[error("{0}")]
    BadNetwork(String),
    /// A code was given but the associated device is a passkey.
    #[error("the associated device is a passkey: confirm with the passkey (or a recovery code)")]
    PasskeyNeeded,
    /// Seed 003: generating with no mail protocol enabled.
    #[error(
        "You have not enabled access for mail programs: enable at least one of IMAP, POP, SMTP"
    )]
    NoProtocolEnabled,
    /// Generating while a valid app password of that name exists.
    #[error(
        "an app password ({name:?}) is already active until {}; generate a new password to replace it, or postpone its expiry",
        fmt_zoned(expires_at)
    )]
    AppPasswordActive {
        /// Its name.
        name: String,
        /// Its current expiry, in the provider's zone.
        expires_at: jiff::Zoned,
    },
    /// Postpone, regenerate or deactivate with nothing to act on.
    #[error("there is no app password for this mailbox: generate one first")]
    NoAppPassword,
    /// No app password has that name.
    #[error("there is no app password named {0:?}")]
    NoSuchAppPassword(String),
    /// Several app passwords exist: which one?
    #[error("the mailbox has several app passwords ({0}): name the one to act on")]
    AppPasswordNameRequired(String),
    /// Not a usable name.
    #[error("invalid app password name {0:?}: use 1-40 letters, digits, spaces and - _ . '")]
    BadAppPasswordName(String),
    /// The mailbox has as many app passwords as the operator allows.
    #[error(
        "the mailbox already has {limit} app password(s), the most allowed: deactivate one first"
    )]
    TooManyAppPasswords {
        /// The limit (`policy.max_app_passwords`).
        limit: usize,
    },
    /// A scope with a protocol the mailbox does not enable, or none at all.
    #[error(
        "an app password can be limited only to protocols enabled for the mailbox ({enabled}), at least one"
    )]
    ScopeNotEnabled {
        /// What the mailbox enables.
        enabled: ProtocolSet,
    },
    /// Postponing before the window opens (seed 003: "available from 2 weeks before expiry").
    #[error(
        "postponing is allowed from {} (the app password expires on {}); before then, generate a new password if needed",
        fmt_zoned(opens_at),
        fmt_zoned(expires_at)
    )]
    PostponeTooEarly {
        /// The first moment postponing is allowed, in the provider's zone.
        opens_at: jiff::Zoned,
        /// The current expiry.
        expires_at: jiff::Zoned,
    },
    /// `migration start` twice.
    #[error("the mailbox is already being migrated")]
    AlreadyMigrating,
    /// `migration finish` without a migration.
    #[error("the mailbox is not being migrated")]
    NotMigrating,
}

impl PolicyError {
    /// Whether the input itself is unusable (a malformed name, address, plan, protocol,
    /// password or code format), as opposed to a rule refusing a well-formed request.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PolicyError::BadPlan(_)
                | PolicyError::BadProtocol(_)
                | PolicyError::BadLogin(_)
                | PolicyError::ProtocolBothWays(_)
                | PolicyError::BadAddress(_)
                | PolicyError::BadContact(_)
                | PolicyError::WeakPassword { .. }
                | PolicyError::BadPassword(_)
                | PolicyError::BadAppPasswordName(_)
        )
    }

    /// A stable, machine-readable name for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::BadPlan(_) => "bad_plan",
            PolicyError::BadProtocol(_) => "bad_protocol",
            PolicyError::BadLogin(_) => "bad_login",
            PolicyError::ProtocolBothWays(_) => "bad_protocol",
            PolicyError::BadAddress(_) => "bad_address",
            PolicyError::BadContact(_) => "bad_contact",
            PolicyError::WeakPassword { .. } => "weak_password",
            PolicyError::BadPassword(_) => "bad_password",
            PolicyError::OverrideNeedsOperator => "override_needs_operator",
            PolicyError::Random(_) => "random_failed",
            PolicyError::Totp(_) => "totp_error",
            PolicyError::MigrationInProgress => "migration_in_progress",
            PolicyError::TwoFactorAlreadyOn => "two_factor_already_on",
            PolicyError::TwoFactorOff(_) => "two_factor_off",
            PolicyError::NoPendingDevice => "no_pending_device",
            PolicyError::InvalidCode => "invalid_code",
            PolicyError::PasskeyNeeded => "passkey_needed",
            PolicyError::BadNetwork(_) => "bad_network",
            PolicyError::CodeReused => "code_reused",
            PolicyError::NoProtocolEnabled => "no_protocol_enabled",
            PolicyError::AppPasswordActive { .. } => "app_password_active",
            PolicyError::NoAppPassword => "no_app_password",
            PolicyError::NoSuchAppPassword(_) => "no_such_app_password",
            PolicyError::AppPasswordNameRequired(_) => "app_password_name_required",
            PolicyError::BadAppPasswordName(_) => "bad_app_password_name",
            PolicyError::TooManyAppPasswords { .. } => "too_many_app_passwords",
            PolicyError::ScopeNotEnabled { .. } => "scope_not_enabled",
            PolicyError::PostponeTooEarly { .. } => "postpone_too_early",
            PolicyError::AlreadyMigrating => "already_migrating",
            PolicyError::NotMigrating => "not_migrating",
        }
    }
}

/// The default time zone of the provider (SPEC "Time"); the tz database is built in,
/// so it is there on a machine without tzdata.
pub const DEFAULT_ZONE: &str = "Europe/Rome";

/// [`DEFAULT_ZONE`].
pub fn provider_zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(DEFAULT_ZONE).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// How times are shown to people: in the provider's zone, to the minute, dates as the
/// seeds write them: `15/02/2023 10:35 CET`.
pub fn fmt_time(ts: Timestamp, zone: &jiff::tz::TimeZone) -> String {
    fmt_zoned(&ts.to_zoned(zone.clone()))
}

/// A moment to the second in `zone` (`06/12/2026 22:06:41 CET`): the access history's.
pub fn fmt_moment(ts: Timestamp, zone: &jiff::tz::TimeZone) -> String {
    ts.to_zoned(zone.clone())
        .strftime("%d/%m/%Y %H:%M:%S %Z")
        .to_string()
}

/// A time already in its zone, shown as [`fmt_time`] shows it.
pub fn fmt_zoned(z: &jiff::Zoned) -> String {
    z.strftime("%d/%m/%Y %H:%M %Z").to_string()
}

/// Times in JSON documents: RFC 3339 in UTC, to the second (`2023-02-15T09:35:00Z`).
/// Used with `#[serde(serialize_with = ...)]` by every outcome that carries a time.
pub(crate) mod json_time {
    use jiff::Timestamp;

    /// The one textual form.
    pub(crate) fn text(ts: Timestamp) -> String {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// A time.
    pub(crate) fn serialize<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(*ts))
    }

    /// An optional time (`null` when absent).
    pub(crate) fn option<S: serde::Serializer>(
        ts: &Option<Timestamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => serialize(ts, s),
            None => s.serialize_none(),
        }
    }
}
