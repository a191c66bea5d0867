//! What management actions return: plain data that every front door renders (the CLI as
//! text or JSON, the web page as HTML, the API as JSON). Secrets shown once travel in a
//! [`Secret`] field that is never serialised; the front door shows it itself.

use jiff::Timestamp;
use serde::Serialize;

use crate::policy::app_password::AppPassword;
use crate::policy::json_time;
use crate::policy::mailbox::DevicePurpose;
use crate::policy::names::named_enum;
use crate::policy::usage::{Credential, Place};
use crate::policy::{Mailbox, Plan, PolicySettings, Protocol, ProtocolSet};
use crate::secret::Secret;
use crate::store::{AccessRecord, Event, Notice};

named_enum! {
    /// Whether the app password works now.
    pub enum AppPasswordState {
        /// None exists.
        None = "none",
        /// It works until its expiry.
        Active = "active",
        /// It expired; postponing or a new one brings mail programs back.
        Expired = "expired",
    }
}

/// An app password, as the owner may see it (never the password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppPasswordView {
    /// Whether it works now.
    pub state: AppPasswordState,
    /// Its name and dates, when one exists.
    #[serde(flatten)]
    pub details: Option<AppPasswordDates>,
}

/// When and from where an app password last logged in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastUseView {
    /// When.
    #[serde(serialize_with = "json_time::serialize")]
    pub at: Timestamp,
    /// The client's address.
    pub client: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The listener.
    pub listener: String,
    /// The program, when the client said.
    pub software: Option<String>,
}

/// The name, scope and dates of an existing app password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppPasswordDates {
    /// Its name.
    pub name: String,
    /// The protocols it works with now (its scope within the mailbox's protocols).
    pub scope: ProtocolSet,
    /// Whether it was limited to some protocols (otherwise it follows the mailbox's).
    pub limited: bool,
    /// Generated.
    #[serde(serialize_with = "json_time::serialize")]
    pub created_at: Timestamp,
    /// Expires ("Scadenza").
    #[serde(serialize_with = "json_time::serialize")]
    pub expires_at: Timestamp,
    /// How many times it was postponed.
    pub postponed: u32,
    /// From when postponing is allowed.
    #[serde(serialize_with = "json_time::serialize")]
    pub postpone_opens_at: Timestamp,
    /// Whether postponing is allowed now.
    pub postpone_allowed: bool,
    /// Its last login.
    pub last_used: Option<LastUseView>,
    /// The networks it may be used from; empty: anywhere.
    pub networks: Vec<String>,
    /// The networks and programs it was used from (at most ten of each), most recent
    /// first.
    pub used_from: Vec<Place>,
}

impl AppPasswordView {
    /// No app password.
    pub const NONE: AppPasswordView = AppPasswordView {
        state: AppPasswordState::None,
        details: None,
    };

    /// The view of one of `m`'s app passwords at `now`.
    pub fn of(m: &Mailbox, ap: &AppPassword, s: &PolicySettings, now: Timestamp) -> Self {
        let opens = ap.postpone_opens_at(s.postpone_window, &s.zone);
        AppPasswordView {
            state: if ap.is_valid_at(now) {
                AppPasswordState::Active
            } else {
                AppPasswordState::Expired
            },
            details: Some(AppPasswordDates {
                name: ap.name.clone(),
                scope: ap.effective_scope(m.protocols),
                limited: ap.scope.is_some(),
                created_at: ap.created_at,
                expires_at: ap.expires_at,
                postponed: ap.postponed,
                postpone_opens_at: opens,
                postpone_allowed: now >= opens,
                last_used: ap.last_use.as_ref().map(|u| LastUseView {
                    at: u.at,
                    client: u.client.clone(),
                    protocol: u.protocol,
                    listener: u.listener.clone(),
                    software: u.software.clone(),
                }),
                networks: ap.networks.iter().map(ToString::to_string).collect(),
                used_from: Vec::new(),
            }),
        }
    }

    /// Every app password of `m`, in the order they were made.
    pub fn all(m: &Mailbox, s: &PolicySettings, now: Timestamp) -> Vec<Self> {
        m.app_passwords
            .iter()
            .map(|ap| AppPasswordView::of(m, ap, s, now))
            .collect()
    }

    /// The one app password of `m` (the first, if several), or none.
    pub fn first(m: &Mailbox, s: &PolicySettings, now: Timestamp) -> Self {
        m.app_passwords.first().map_or(AppPasswordView::NONE, |ap| {
            AppPasswordView::of(m, ap, s, now)
        })
    }
}

/// A device waiting for its first code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingView {
    /// Turning 2FA on, or replacing the device.
    pub purpose: DevicePurpose,
    /// Since when.
    #[serde(serialize_with = "json_time::serialize")]
    pub since: Timestamp,
}

/// Two-step verification of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TwoFactorView {
    /// Whether it is on.
    pub enabled: bool,
    /// When the current device was associated.
    #[serde(serialize_with = "json_time::option")]
    pub associated_at: Option<Timestamp>,
    /// A device waiting for its first code.
    pub pending: Option<PendingView>,
    /// Recovery codes not yet used.
    pub recovery_codes_left: u32,
    /// What the associated device is: "app" (an authenticator app) or "passkey".
    pub device_kind: Option<&'static str>,
}

/// A mailbox with everything the owner or operator may see (no hash, no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MailboxView {
    /// The address.
    pub address: String,
    /// The plan.
    pub plan: Plan,
    /// Whether the plan includes the security archive.
    pub archive: bool,
    /// Where notices are e-mailed.
    pub contact: Option<String>,
    /// Enabled mail protocols.
    pub protocols: ProtocolSet,
    /// Whether a migration is in progress.
    pub migration: bool,
    /// The version (bumped by every change a login looks at).
    pub version: i64,
    /// Two-step verification.
    pub two_factor: TwoFactorView,
    /// The app password (the first, when there are several).
    pub app_password: AppPasswordView,
    /// Every app password.
    pub app_passwords: Vec<AppPasswordView>,
    /// App passwords deactivated (by name, newest first; from the notices kept), that
    /// no password of the same name has replaced since.
    pub deactivated: Vec<DeactivatedView>,
    /// Multi-user accounts, by name.
    pub users: Vec<String>,
    /// The networks and programs the main password logged in to mail programs from
    /// (where the mail protocols accept it), most recent first.
    pub main_password_used_from: Vec<Place>,
    /// Since when the main password is known to appear in lists of stolen passwords.
    #[serde(serialize_with = "json_time::option")]
    pub main_password_breached: Option<Timestamp>,
}

/// The app password a "Non sono stato io" link takes away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotMe {
    /// The mailbox.
    pub address: String,
    /// The app password's name.
    pub name: String,
    /// When the owner was asked.
    #[serde(serialize_with = "json_time::serialize")]
    pub alerted_at: Timestamp,
}

/// An app password that was deactivated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeactivatedView {
    /// Its name.
    pub name: String,
    /// When.
    #[serde(serialize_with = "json_time::serialize")]
    pub at: Timestamp,
}

impl MailboxView {
    /// The view of `m` with its multi-user accounts, at `now`.
    pub fn of(m: &Mailbox, users: Vec<String>, s: &PolicySettings, now: Timestamp) -> Self {
        MailboxView {
            address: m.address.clone(),
            plan: m.plan,
            archive: m.plan.has_archive(),
            contact: m.contact.clone(),
            protocols: m.protocols,
            migration: m.migration,
            version: m.version,
            two_factor: TwoFactorView {
                enabled: m.two_factor_on(),
                associated_at: m.device.as_ref().map(|d| d.associated_at),
                pending: m.pending_device.as_ref().map(|p| PendingView {
                    purpose: p.purpose,
                    since: p.since,
                }),
                recovery_codes_left: 0,
                device_kind: m.device.as_ref().map(|d| d.kind_name()),
            },
            app_password: AppPasswordView::first(m, s, now),
            app_passwords: AppPasswordView::all(m, s, now),
            users,
            deactivated: Vec::new(),
            main_password_used_from: Vec::new(),
            main_password_breached: m.main_breached,
        }
    }

    /// Places each password was used from, as the store keeps them.
    pub fn with_places(mut self, m: &Mailbox, places: Vec<(Credential, Place)>) -> Self {
        for (credential, place) in places {
            match credential {
                Credential::Main => self.main_password_used_from.push(place),
                Credential::App(id) => {
                    let Some(i) = m.app_passwords.iter().position(|a| a.id == id) else {
                        continue;
                    };
                    if let Some(d) = self
                        .app_passwords
                        .get_mut(i)
                        .and_then(|v| v.details.as_mut())
                    {
                        d.used_from.push(place.clone());
                    }
                    if i == 0
                        && let Some(d) = self.app_password.details.as_mut()
                    {
                        d.used_from.push(place);
                    }
                }
            }
        }
        self
    }
}

/// Every mailbox.
#[derive(Clone, Debug, Serialize)]
pub struct MailboxList {
    /// By address.
    pub mailboxes: Vec<MailboxView>,
}

/// A mailbox was removed.
#[derive(Clone, Debug, Serialize)]
pub struct Removed {
    /// Its address.
    pub address: String,
    /// Always true.
    pub removed: bool,
}

/// A main password was changed.
#[derive(Clone, Debug, Serialize)]
pub struct PasswordChanged {
    /// Whose: the mailbox address or the multi-user account.
    pub login: String,
    /// Always true.
    pub changed: bool,
    /// Whether 2FA is on (the main password still does not open mail programs).
    #[serde(skip)]
    pub two_factor: bool,
}

/// The upstream secret was set.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamSecretSet {
    /// The mailbox.
    pub address: String,
    /// Always true.
    pub upstream_secret: bool,
    /// The key file that sealed it.
    #[serde(skip)]
    pub key_file: std::path::PathBuf,
}

/// The enabled protocols.
#[derive(Clone, Debug, Serialize)]
pub struct Protocols {
    /// The mailbox.
    pub address: String,
    /// Enabled now.
    pub protocols: ProtocolSet,
    /// App-password scopes the change narrowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub narrowed: Vec<NarrowedScope>,
}

/// An app-password scope a protocol change narrowed.
#[derive(Clone, Debug, Serialize)]
pub struct NarrowedScope {
    /// The password's name.
    pub name: String,
    /// Its scope now (empty: it no longer works).
    pub scope: ProtocolSet,
}

/// A multi-user account was added or removed.
#[derive(Clone, Debug, Serialize)]
pub struct UserChanged {
    /// The mailbox it opens.
    pub address: String,
    /// The account's name.
    pub login: String,
    /// Present (true) when it was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<bool>,
}

/// A migration started or finished.
#[derive(Clone, Debug, Serialize)]
pub struct Migration {
    /// The mailbox.
    pub address: String,
    /// Whether it is being migrated now.
    pub migration: bool,
}

/// A device to scan, shown once: the `otpauth://` URI for the authenticator app.
#[derive(Debug, Serialize)]
pub struct NewDevice {
    /// The mailbox.
    pub address: String,
    /// Turning 2FA on, or replacing the device.
    pub purpose: DevicePurpose,
    /// The URI (and so the TOTP secret): never serialised, shown by the front door.
    #[serde(skip)]
    pub otpauth_uri: Secret,
}

named_enum! {
    /// What confirming a device did.
    pub enum DeviceResult {
        /// 2FA is on.
        Enabled = "enabled",
        /// The new device replaced the old one.
        Replaced = "replaced",
    }
}

/// A device was confirmed.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceConfirmed {
    /// The mailbox.
    pub address: String,
    /// Always "on".
    pub two_factor: &'static str,
    /// Enabled or replaced.
    pub result: DeviceResult,
    /// The recovery codes made when 2FA was turned on, printed; shown once, to the owner
    /// only (never in an operator's output).
    #[serde(skip)]
    pub recovery_codes: Vec<Secret>,
}

/// 2FA was turned off.
#[derive(Clone, Debug, Serialize)]
pub struct TwoFactorDisabled {
    /// The mailbox.
    pub address: String,
    /// Always "off".
    pub two_factor: &'static str,
    /// Always "revoked".
    pub app_password: &'static str,
}

/// A new app password, shown once.
#[derive(Debug, Serialize)]
pub struct NewAppPassword {
    /// The mailbox.
    pub address: String,
    /// Its name.
    pub name: String,
    /// The protocols it works with.
    pub scope: ProtocolSet,
    /// Generated.
    #[serde(serialize_with = "json_time::serialize")]
    pub created_at: Timestamp,
    /// Expires.
    #[serde(serialize_with = "json_time::serialize")]
    pub expires_at: Timestamp,
    /// Whether it opens the security archive too.
    #[serde(skip)]
    pub archive: bool,
    /// The password, in readable groups: never serialised, shown by the front door once.
    #[serde(skip)]
    pub password: Secret,
}

/// The expiry was postponed.
#[derive(Clone, Debug, Serialize)]
pub struct Postponed {
    /// The mailbox.
    pub address: String,
    /// The password's name.
    pub name: String,
    /// The new expiry.
    #[serde(serialize_with = "json_time::serialize")]
    pub expires_at: Timestamp,
    /// How many times it was postponed.
    pub postponed: u32,
}

/// An app password's networks were set.
#[derive(Clone, Debug, Serialize)]
pub struct Pinned {
    /// The mailbox.
    pub address: String,
    /// The password's name.
    pub name: String,
    /// The networks it may be used from; empty: anywhere.
    pub networks: Vec<String>,
}

/// App passwords were deactivated.
#[derive(Clone, Debug, Serialize)]
pub struct Deactivated {
    /// The mailbox.
    pub address: String,
    /// Their names.
    pub deactivated: Vec<String>,
    /// "none" when no app password is left, "some" otherwise.
    pub app_password: &'static str,
}

/// Every app password of a mailbox.
#[derive(Clone, Debug, Serialize)]
pub struct AppPasswordList {
    /// The mailbox.
    pub address: String,
    /// Whether 2FA is on.
    pub two_factor: bool,
    /// How many the mailbox may have.
    pub limit: usize,
    /// The passwords, in the order they were made.
    pub app_passwords: Vec<AppPasswordView>,
}

/// The app password's state.
#[derive(Clone, Debug, Serialize)]
pub struct AppPasswordStatus {
    /// The mailbox.
    pub address: String,
    /// Whether 2FA is on.
    pub two_factor: bool,
    /// Enabled protocols.
    pub protocols: ProtocolSet,
    /// The app password.
    #[serde(flatten)]
    pub app_password: AppPasswordView,
}

/// The access history of a mailbox, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    /// The mailbox.
    pub address: String,
    /// The attempts.
    pub history: Vec<AccessRecord>,
}

/// The notices of a mailbox, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct Notices {
    /// The mailbox.
    pub address: String,
    /// The notices.
    pub notices: Vec<Notice>,
}

/// The management events of a mailbox, oldest first.
#[derive(Clone, Debug, Serialize)]
pub struct Events {
    /// The mailbox.
    pub address: String,
    /// The events.
    pub events: Vec<Event>,
}
