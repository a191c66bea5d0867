//! What a notice to the owner says, as data: what happened ([`Said`]) and what it is about
//! ([`NoticeKind`]). The store keeps it; `wording` puts it into words in the reader's
//! language. Nothing here renders text.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Period;
use super::names::named_enum;
use super::usage::PlaceKind;

named_enum! {
    /// What a notice to the owner is about.
    pub enum NoticeKind {
        /// The main password changed.
        PasswordChanged = "password-changed",
        /// Two-step verification or its device changed.
        TwoFactor = "two-factor",
        /// The app password was generated, replaced, postponed or deactivated.
        AppPassword = "app-password",
        /// The contact e-mail changed.
        ContactChanged = "contact-changed",
        /// The main password was used in a mail program while 2FA is on.
        MainPasswordUsed = "main-password-used",
        /// An app password expires soon, or expired.
        ExpiryReminder = "expiry-reminder",
        /// Wrong 2FA codes blocked the mailbox's code step: someone who knows the main
        /// password is trying codes.
        CodesGuessed = "codes-guessed",
        /// A password was used from a network or a program it was never used from.
        NewPlace = "new-place",
        /// The main password appears in lists of stolen passwords.
        MainPasswordBreached = "main-password-breached",
    }
}

/// Which expiry reminder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "at")]
pub enum Reminder {
    /// Postponing has opened.
    PostponeOpens,
    /// This long before expiry.
    Before {
        /// How long.
        period: Period,
    },
    /// On expiry.
    Expired,
}

/// An app password whose scope narrowed with the mailbox's protocols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NarrowedTo {
    /// Its name.
    pub name: String,
    /// What it works with now (the protocol names, comma-separated); empty: nothing.
    pub scope: String,
}

/// What a notice tells the owner, before it is put into words. (The fields are named for
/// what they hold.)
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "said")]
pub enum Said {
    /// An app password was generated (until when it works; `by_operator`: an operator
    /// did it, not the owner). Rows from before these fields read without them.
    AppPasswordGenerated {
        name: String,
        #[serde(default)]
        until: Option<Timestamp>,
        #[serde(default)]
        by_operator: bool,
    },
    /// An app password was generated anew; the previous one no longer works.
    AppPasswordRegenerated {
        name: String,
        #[serde(default)]
        until: Option<Timestamp>,
        #[serde(default)]
        by_operator: bool,
    },
    /// An app password's expiry was postponed.
    AppPasswordPostponed { name: String, until: Timestamp },
    /// App passwords were deactivated.
    AppPasswordsDeactivated {
        names: Vec<String>,
        #[serde(default)]
        by_operator: bool,
    },
    /// Protocols were disabled and these app passwords work with less, or not at all.
    ProtocolsNarrowed { passwords: Vec<NarrowedTo> },
    /// The main password was changed.
    MainPasswordChanged,
    /// The contact address changed (`old` absent: there was none).
    ContactChanged { old: Option<String>, new: String },
    /// 2FA was turned on (with a passkey, or an authenticator app).
    TwoFactorOn {
        #[serde(default)]
        passkey: bool,
    },
    /// 2FA was turned off.
    TwoFactorOff {
        #[serde(default)]
        by_operator: bool,
    },
    /// A new device was confirmed (a passkey, or an authenticator app).
    DeviceReplaced {
        #[serde(default)]
        passkey: bool,
    },
    /// A recovery code stood in for the device's code (this many are left).
    RecoveryCodeUsed { left: u32 },
    /// A new set of recovery codes was made; the old set no longer works.
    RecoveryCodesRenewed,
    /// The passkey answered with a counter that went back: it may have been copied.
    PasskeyCloned,
    /// Replacing the device started, authorised from the current one.
    ReplaceStarted,
    /// An operator started replacing the device without a code from the current one.
    ReplaceByOperator,
    /// The main password was used in a mail program while 2FA is on.
    MainPasswordUsed {
        at: Timestamp,
        client: String,
        protocol: String,
        login: String,
    },
    /// Wrong 2FA codes blocked the mailbox's code step.
    CodesGuessed {
        at: Timestamp,
        client: String,
        tries: u32,
        blocked_seconds: u64,
    },
    /// A password (an app password by name; none: the main password) was used from a
    /// network or a program it was never used from.
    NewPlace {
        at: Timestamp,
        password: Option<String>,
        new: PlaceKind,
        network: String,
        client: String,
        protocol: String,
        software: Option<String>,
    },
    /// The main password, proven at a login (`protocol`: imap, pop3, smtp or web),
    /// appears in lists of stolen passwords; `refused`: the mail protocols refuse it.
    MainPasswordBreached {
        at: Timestamp,
        protocol: String,
        refused: bool,
    },
    /// An app password's expiry is near, or has come.
    Reminder {
        name: String,
        expires_at: Timestamp,
        #[serde(flatten)]
        reminder: Reminder,
    },
}

impl Said {
    /// The notice's kind (what the CLI filters and the subject names).
    pub fn kind(&self) -> NoticeKind {
        match self {
            Said::AppPasswordGenerated { .. }
            | Said::AppPasswordRegenerated { .. }
            | Said::AppPasswordPostponed { .. }
            | Said::AppPasswordsDeactivated { .. }
            | Said::ProtocolsNarrowed { .. } => NoticeKind::AppPassword,
            Said::MainPasswordChanged => NoticeKind::PasswordChanged,
            Said::ContactChanged { .. } => NoticeKind::ContactChanged,
            Said::TwoFactorOn { .. }
            | Said::TwoFactorOff { .. }
            | Said::RecoveryCodeUsed { .. }
            | Said::RecoveryCodesRenewed
            | Said::PasskeyCloned
            | Said::DeviceReplaced { .. }
            | Said::ReplaceStarted
            | Said::ReplaceByOperator => NoticeKind::TwoFactor,
            Said::MainPasswordUsed { .. } => NoticeKind::MainPasswordUsed,
            Said::Reminder { .. } => NoticeKind::ExpiryReminder,
            Said::CodesGuessed { .. } => NoticeKind::CodesGuessed,
            Said::NewPlace { .. } => NoticeKind::NewPlace,
            Said::MainPasswordBreached { .. } => NoticeKind::MainPasswordBreached,
        }
    }
}
