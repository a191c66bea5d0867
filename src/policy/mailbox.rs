//! A mailbox's state and every management action of SPEC.md on it.
//!
//! Each action is a method that either changes the mailbox and returns what the caller
//! must show, or refuses with a [`PolicyError`] and changes nothing. Slow or random inputs
//! (argon2id hashes, fresh secrets) are made by the caller and passed in, so these rules
//! stay pure and the clock is always an argument.

use jiff::Timestamp;

use super::app_password::{self, AppPassword};
use super::passkey::Passkey;
use super::totp::DeviceSecret;
use super::{Period, Plan, PolicyError, Protocol, ProtocolSet};

/// The policy periods and limits from `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySettings {
    /// The provider's time zone: calendar months and days are counted, and dates shown,
    /// in it (default Europe/Rome).
    pub zone: jiff::tz::TimeZone,
    /// How long an app password works after generation or postponement (default 3 months).
    pub app_password_validity: Period,
    /// How long before expiry postponing opens (default 14 days).
    pub postpone_window: Period,
    /// App passwords a mailbox may have (default 1, the seeds' behaviour).
    pub max_app_passwords: usize,
    /// Expiry reminders this long before expiry, besides the ones when postponing opens
    /// and on expiry (default 3 and 1 days).
    pub reminders_before: Vec<Period>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            zone: super::provider_zone(),
            app_password_validity: Period::months(3),
            postpone_window: Period::days(14),
            max_app_passwords: 1,
            reminders_before: vec![Period::days(3), Period::days(1)],
        }
    }
}

/// A new app password, made by the caller (the password itself is shown, never passed
/// here): its name and scope as asked for, its selector and hash.
#[derive(Clone, Debug)]
pub struct NewAppPassword<'a> {
    /// The name asked for; `None`: the only one, or [`app_password::DEFAULT_NAME`].
    pub name: Option<&'a str>,
    /// The protocols asked for; `None`: every protocol (on generate), the same as before
    /// (on regenerate).
    pub scope: Option<ProtocolSet>,
    /// The selector of the new password.
    pub selector: String,
    /// Its argon2id hash.
    pub hash: String,
}

/// Points `ap`'s next reminder at its first milestone after `now`: a milestone already
/// past when a password is made or postponed is skipped, never sent late.
fn arm(ap: &mut AppPassword, now: Timestamp, s: &PolicySettings) {
    ap.next_reminder_at =
        app_password::reminders(ap, s.postpone_window, &s.reminders_before, &s.zone)
            .into_iter()
            .map(|(_, at)| at)
            .find(|at| *at > now);
}

/// The reminder due now for one app password, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReminder {
    /// The password's name.
    pub name: String,
    /// Its expiry.
    pub expires_at: Timestamp,
    /// The milestone to tell the owner of (the latest one passed).
    pub milestone: app_password::Milestone,
    /// Every milestone passed since the last run (the earlier ones are skipped, not sent
    /// late), with their store keys.
    pub passed: Vec<String>,
    /// The password's store id.
    pub id: i64,
}

impl Mailbox {
    /// The expiry reminders due at `now`, and every password's next reminder moved past
    /// `now`. The caller records each due one once (by password, expiry and milestone).
    pub fn take_due_reminders(&mut self, now: Timestamp, s: &PolicySettings) -> Vec<DueReminder> {
        let mut due = Vec::new();
        for ap in &mut self.app_passwords {
            let Some(next) = ap.next_reminder_at.filter(|at| *at <= now) else {
                continue;
            };
            let all = app_password::reminders(ap, s.postpone_window, &s.reminders_before, &s.zone);
            let passed: Vec<_> = all
                .iter()
                .filter(|(_, at)| *at >= next && *at <= now)
                .collect();
            if let Some((milestone, _)) = passed.last() {
                due.push(DueReminder {
                    name: ap.name.clone(),
                    expires_at: ap.expires_at,
                    milestone: milestone.clone(),
                    passed: passed.iter().map(|(m, _)| m.key()).collect(),
                    id: ap.id,
                });
            }
            ap.next_reminder_at = all.iter().map(|(_, at)| *at).find(|at| *at > now);
        }
        due
    }
}

/// A scope that a protocol change narrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Narrowed {
    /// The password's name.
    pub name: String,
    /// Its scope now; empty: it no longer works anywhere.
    pub scope: ProtocolSet,
}

/// The one associated 2FA device: an authenticator app, or a passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// What it is.
    pub kind: DeviceKind,
    /// When it was associated.
    pub associated_at: Timestamp,
}

/// The kinds of associated device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// An authenticator app (TOTP).
    App {
        /// Its TOTP secret.
        secret: DeviceSecret,
        /// The last accepted time step; codes at or before it are replays.
        last_step: Option<u64>,
    },
    /// A passkey or security key (WebAuthn), proved by the caller's assertion check.
    Passkey(Passkey),
}

impl Device {
    /// An authenticator app's device.
    pub fn app(secret: DeviceSecret, last_step: Option<u64>, associated_at: Timestamp) -> Self {
        Device {
            kind: DeviceKind::App { secret, last_step },
            associated_at,
        }
    }

    /// The app's TOTP secret, if it is an app.
    pub fn secret(&self) -> Option<&DeviceSecret> {
        match &self.kind {
            DeviceKind::App { secret, .. } => Some(secret),
            DeviceKind::Passkey(_) => None,
        }
    }

    /// The passkey, if it is one.
    pub fn passkey(&self) -> Option<&Passkey> {
        match &self.kind {
            DeviceKind::Passkey(p) => Some(p),
            DeviceKind::App { .. } => None,
        }
    }

    /// Its kind's name, for people: "authenticator app" or "passkey".
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            DeviceKind::App { .. } => "app",
            DeviceKind::Passkey(_) => "passkey",
        }
    }

    /// A code from the app, checked and spent; a passkey asks for its assertion instead.
    fn verify_code(&mut self, code: &str, now: Timestamp) -> Result<(), PolicyError> {
        match &mut self.kind {
            DeviceKind::App { secret, last_step } => {
                *last_step = Some(secret.verify(code, now, *last_step)?);
                Ok(())
            }
            DeviceKind::Passkey(_) => Err(PolicyError::PasskeyNeeded),
        }
    }
}

super::names::named_enum! {
    /// Why a device is waiting for its first code.
    pub enum DevicePurpose {
        /// Turning 2FA on.
        Enable = "enable",
        /// Replacing the associated device (lost or new phone).
        Replace = "replace",
    }
}

/// A device shown to the owner (otpauth URI) but not yet confirmed with a code from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDevice {
    /// The secret the owner scanned.
    pub secret: DeviceSecret,
    /// What confirming it will do.
    pub purpose: DevicePurpose,
    /// When it was created.
    pub since: Timestamp,
}

/// How a device replacement is authorised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceAuthority<'a> {
    /// A code from the current device.
    Code(&'a str),
    /// Proven by the caller: a recovery code checked and spent (the device is lost), or
    /// the passkey's assertion checked.
    Proven,
    /// An operator override (the device is lost); the caller records it.
    OperatorOverride,
}

/// What confirming a pending device did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// 2FA is now on.
    Enabled,
    /// The new device replaced the old one; 2FA stays on, app passwords are kept.
    Replaced,
}

/// A mailbox ("casella") with everything the rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// Store id (0 before it is first saved).
    pub id: i64,
    /// The address, lower case.
    pub address: String,
    /// The plan.
    pub plan: Plan,
    /// Where notices are e-mailed.
    pub contact: Option<String>,
    /// Mail protocols mail programs may use.
    pub protocols: ProtocolSet,
    /// Whether the mailbox is being migrated (2FA cannot be turned on).
    pub migration: bool,
    /// argon2id hash of the main password.
    pub password_hash: String,
    /// The associated device; `Some` exactly when 2FA is on.
    pub device: Option<Device>,
    /// A device waiting for its first code.
    pub pending_device: Option<PendingDevice>,
    /// The app passwords, by name; only ever non-empty while 2FA is on.
    pub app_passwords: Vec<AppPassword>,
    /// Bumped by every change that affects login (see [`Mailbox::login_fingerprint`]).
    pub version: i64,
    /// Since when the main password is known to appear in lists of stolen passwords
    /// (`[auth] breached_passwords_file`); cleared when it changes.
    pub main_breached: Option<Timestamp>,
}

impl Mailbox {
    /// A new mailbox: 2FA off, every protocol enabled, not migrating.
    pub fn new(
        address: String,
        plan: Plan,
        contact: Option<String>,
        password_hash: String,
    ) -> Self {
        Mailbox {
            id: 0,
            address,
            plan,
            contact,
            protocols: ProtocolSet::ALL,
            migration: false,
            password_hash,
            device: None,
            pending_device: None,
            app_passwords: Vec::new(),
            version: 1,
            main_breached: None,
        }
    }

    /// Who a notice about the mailbox is e-mailed to — the one rule, for every notice and
    /// alert: nobody when notices are not e-mailed at all (`email_on`: a relay is
    /// configured); else its contact ("a mailbox without a contact address gets avvisi
    /// only") and `also` (a contact being replaced, told of the change).
    pub fn email_recipients(&self, email_on: bool, also: Option<&str>) -> Vec<String> {
        if !email_on {
            return Vec::new();
        }
        self.contact
            .iter()
            .map(String::as_str)
            .chain(also.filter(|a| Some(*a) != self.contact.as_deref()))
            .map(str::to_owned)
            .collect()
    }

    /// Whether two-step verification is on.
    pub fn two_factor_on(&self) -> bool {
        self.device.is_some()
    }

    /// Everything a login decision reads. The store bumps `version` whenever this changes,
    /// so no action can forget to invalidate cached verifications.
    pub fn login_fingerprint(&self) -> impl PartialEq + use<> {
        (
            self.password_hash.clone(),
            self.plan,
            self.protocols,
            self.device.as_ref().map(|d| d.kind.clone()),
            self.main_breached.is_some(),
            self.app_passwords
                .iter()
                .map(|a| (a.hash.clone(), a.expires_at, a.scope, a.networks.clone()))
                .collect::<Vec<_>>(),
        )
    }

    // ---- two-step verification -------------------------------------------------------

    /// Starts turning 2FA on: `fresh` is shown to the owner and waits for a code — unless
    /// a device is already waiting to turn 2FA on: the owner may have scanned it, so it
    /// stays (asking again shows it again) until confirmed or cancelled. Returns the
    /// secret to show. Refused during migration (seed 000) and when already on.
    pub fn begin_enable_2fa(
        &mut self,
        fresh: DeviceSecret,
        now: Timestamp,
    ) -> Result<DeviceSecret, PolicyError> {
        if self.migration {
            return Err(PolicyError::MigrationInProgress);
        }
        if self.two_factor_on() {
            return Err(PolicyError::TwoFactorAlreadyOn);
        }
        if let Some(p) = &self.pending_device
            && p.purpose == DevicePurpose::Enable
        {
            return Ok(p.secret.clone());
        }
        self.pending_device = Some(PendingDevice {
            secret: fresh.clone(),
            purpose: DevicePurpose::Enable,
            since: now,
        });
        Ok(fresh)
    }

    /// Drops the device waiting for its first code; whether there was one.
    pub fn cancel_pending_device(&mut self) -> bool {
        self.pending_device.take().is_some()
    }

    /// Starts replacing the associated device, authorised by a code from the current
    /// device or by an operator override.
    pub fn begin_replace_device(
        &mut self,
        authority: ReplaceAuthority<'_>,
        secret: DeviceSecret,
        now: Timestamp,
    ) -> Result<(), PolicyError> {
        let device = self.device.as_mut().ok_or(PolicyError::TwoFactorOff(
            "there is no device to replace: turn two-step verification on instead",
        ))?;
        if let ReplaceAuthority::Code(code) = authority {
            device.verify_code(code, now)?;
        }
        self.pending_device = Some(PendingDevice {
            secret,
            purpose: DevicePurpose::Replace,
            since: now,
        });
        Ok(())
    }

    /// Completes a pending enable or replacement with a code from the new device.
    pub fn confirm_device(&mut self, code: &str, now: Timestamp) -> Result<Confirmed, PolicyError> {
        let pending = self
            .pending_device
            .as_ref()
            .ok_or(PolicyError::NoPendingDevice)?;
        let step = pending.secret.verify(code, now, None)?;
        let secret = pending.secret.clone();
        self.associate(
            DeviceKind::App {
                secret,
                last_step: Some(step),
            },
            now,
        )
    }

    /// Completes a pending enable or replacement with a passkey the caller registered
    /// (its registration, after the password and the current device's proof, is the
    /// proof).
    pub fn confirm_passkey(
        &mut self,
        passkey: Passkey,
        now: Timestamp,
    ) -> Result<Confirmed, PolicyError> {
        self.associate(DeviceKind::Passkey(passkey), now)
    }

    /// The pending enable or replacement completed with `kind`.
    fn associate(&mut self, kind: DeviceKind, now: Timestamp) -> Result<Confirmed, PolicyError> {
        let pending = self
            .pending_device
            .as_ref()
            .ok_or(PolicyError::NoPendingDevice)?;
        let outcome = match pending.purpose {
            DevicePurpose::Enable => {
                // The migration may have started after `enable`: check again.
                if self.migration {
                    return Err(PolicyError::MigrationInProgress);
                }
                Confirmed::Enabled
            }
            DevicePurpose::Replace => {
                if !self.two_factor_on() {
                    return Err(PolicyError::TwoFactorOff(
                        "there is no device to replace: turn two-step verification on instead",
                    ));
                }
                Confirmed::Replaced
            }
        };
        self.pending_device = None;
        self.device = Some(Device {
            kind,
            associated_at: now,
        });
        Ok(outcome)
    }

    /// The passkey's assertion was checked by the caller: its counter moves to `counter`.
    pub fn passkey_used(&mut self, counter: u32) -> Result<(), PolicyError> {
        match self.device.as_mut().map(|d| &mut d.kind) {
            Some(DeviceKind::Passkey(p)) => {
                p.counter = counter;
                Ok(())
            }
            _ => Err(PolicyError::TwoFactorOff("there is no passkey to prove")),
        }
    }

    /// A code from the associated device, to prove the owner holds it (the web page's
    /// second login step): accepted once — the step is spent.
    pub fn prove_device(&mut self, code: &str, now: Timestamp) -> Result<(), PolicyError> {
        let device = self
            .device
            .as_mut()
            .ok_or(PolicyError::TwoFactorOff("there is no device to prove"))?;
        device.verify_code(code, now)
    }

    /// Turns 2FA off with a code from the associated device. The app password is revoked
    /// and the main password works on mail protocols again.
    pub fn disable_2fa(&mut self, code: &str, now: Timestamp) -> Result<(), PolicyError> {
        let device = self
            .device
            .as_mut()
            .ok_or(PolicyError::TwoFactorOff("nothing to turn off"))?;
        device.verify_code(code, now)?;
        self.turn_2fa_off();
        Ok(())
    }

    /// Turns 2FA off on a proof the caller checked: a recovery code spent (the device is
    /// lost), or the passkey's assertion.
    pub fn disable_2fa_proven(&mut self) -> Result<(), PolicyError> {
        if self.device.is_none() {
            return Err(PolicyError::TwoFactorOff("nothing to turn off"));
        }
        self.turn_2fa_off();
        Ok(())
    }

    fn turn_2fa_off(&mut self) {
        self.device = None;
        self.pending_device = None;
        self.app_passwords.clear();
    }

    // ---- app password -----------------------------------------------------------------

    fn require_2fa_for_app_password(&self) -> Result<(), PolicyError> {
        if self.two_factor_on() {
            Ok(())
        } else {
            Err(PolicyError::TwoFactorOff(
                "app passwords exist only while two-step verification is on: turn it on first",
            ))
        }
    }

    /// What generating and regenerating both need: 2FA on and a protocol to use it with.
    fn require_can_issue_app_password(&self) -> Result<(), PolicyError> {
        self.require_2fa_for_app_password()?;
        if self.protocols.is_empty() {
            return Err(PolicyError::NoProtocolEnabled);
        }
        Ok(())
    }

    /// Which app password `name` addresses: the named one, or — without a name — the
    /// only one there is.
    pub fn app_password_index(&self, name: Option<&str>) -> Result<usize, PolicyError> {
        match name {
            Some(n) => {
                let n = n.trim();
                self.app_passwords
                    .iter()
                    .position(|a| a.name == n)
                    .ok_or_else(|| PolicyError::NoSuchAppPassword(n.to_owned()))
            }
            None => match self.app_passwords.len() {
                0 => Err(PolicyError::NoAppPassword),
                1 => Ok(0),
                _ => Err(PolicyError::AppPasswordNameRequired(
                    self.app_password_names(),
                )),
            },
        }
    }

    fn app_password_names(&self) -> String {
        self.app_passwords
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether another app password of the mailbox already uses `selector`.
    pub fn selector_taken(&self, selector: &str) -> bool {
        self.app_passwords
            .iter()
            .any(|a| a.selector.as_deref() == Some(selector))
    }

    fn check_scope(&self, scope: Option<ProtocolSet>) -> Result<(), PolicyError> {
        match scope {
            Some(s) if s.is_empty() || s.iter().any(|p| !self.protocols.contains(p)) => {
                Err(PolicyError::ScopeNotEnabled {
                    enabled: self.protocols,
                })
            }
            _ => Ok(()),
        }
    }

    /// "Attiva": a new app password (or a new one in place of an expired one of the same
    /// name), within the operator's limit.
    pub fn generate_app_password(
        &mut self,
        new: NewAppPassword<'_>,
        now: Timestamp,
        s: &PolicySettings,
    ) -> Result<&AppPassword, PolicyError> {
        self.require_can_issue_app_password()?;
        self.check_scope(new.scope)?;
        let name = match (new.name, self.app_passwords.as_slice()) {
            (Some(n), _) => app_password::check_name(n)?,
            // Without a name: the one there is (the seeds' single password), or the default.
            (None, [only]) => only.name.clone(),
            (None, []) => app_password::DEFAULT_NAME.to_owned(),
            (None, _) => {
                return Err(PolicyError::AppPasswordNameRequired(
                    self.app_password_names(),
                ));
            }
        };
        let mut ap = AppPassword::new(new.hash, now, s.app_password_validity, &s.zone);
        ap.selector = Some(new.selector);
        ap.scope = new.scope;
        match self.app_passwords.iter().position(|a| a.name == name) {
            Some(i) if self.app_passwords[i].is_valid_at(now) => {
                Err(PolicyError::AppPasswordActive {
                    name,
                    expires_at: self.app_passwords[i].expires_at.to_zoned(s.zone.clone()),
                })
            }
            Some(i) => {
                ap.name = name;
                ap.scope = new.scope.or(self.app_passwords[i].scope);
                arm(&mut ap, now, s);
                self.app_passwords[i] = ap;
                Ok(&self.app_passwords[i])
            }
            None if self.app_passwords.len() >= s.max_app_passwords => {
                Err(PolicyError::TooManyAppPasswords {
                    limit: s.max_app_passwords,
                })
            }
            None => {
                ap.name = name;
                arm(&mut ap, now, s);
                self.app_passwords.push(ap);
                Ok(&self.app_passwords[self.app_passwords.len() - 1])
            }
        }
    }

    /// "Genera nuova password": a new password with the same name and scope (unless a
    /// new scope is given); the old one stops working at once.
    pub fn regenerate_app_password(
        &mut self,
        new: NewAppPassword<'_>,
        now: Timestamp,
        s: &PolicySettings,
    ) -> Result<&AppPassword, PolicyError> {
        self.require_can_issue_app_password()?;
        let i = self.app_password_index(new.name)?;
        self.check_scope(new.scope)?;
        let old = &self.app_passwords[i];
        let mut ap = AppPassword::new(new.hash, now, s.app_password_validity, &s.zone);
        ap.name = old.name.clone();
        ap.scope = new.scope.or(old.scope);
        ap.selector = Some(new.selector);
        arm(&mut ap, now, s);
        self.app_passwords[i] = ap;
        Ok(&self.app_passwords[i])
    }

    /// "Posticipa scadenza": the same password, valid for another period.
    pub fn postpone_app_password(
        &mut self,
        name: Option<&str>,
        now: Timestamp,
        s: &PolicySettings,
    ) -> Result<&AppPassword, PolicyError> {
        self.require_2fa_for_app_password()?;
        let i = self.app_password_index(name)?;
        let ap = &mut self.app_passwords[i];
        ap.postpone(now, s.app_password_validity, s.postpone_window, &s.zone)?;
        // Postponing re-arms the reminders for the new date.
        arm(ap, now, s);
        Ok(ap)
    }

    /// "Disattiva": mail-program access with that app password ends at once. The main
    /// password still does not work on mail protocols while 2FA is on.
    pub fn deactivate_app_password(
        &mut self,
        name: Option<&str>,
    ) -> Result<AppPassword, PolicyError> {
        let i = self.app_password_index(name)?;
        Ok(self.app_passwords.remove(i))
    }

    /// Deactivates every app password; returns their names.
    pub fn deactivate_all_app_passwords(&mut self) -> Result<Vec<String>, PolicyError> {
        if self.app_passwords.is_empty() {
            return Err(PolicyError::NoAppPassword);
        }
        Ok(self.app_passwords.drain(..).map(|a| a.name).collect())
    }

    // ---- plain settings ---------------------------------------------------------------

    /// Enables and disables protocols; disabling the last one leaves mail programs locked
    /// out, which is allowed (it is the owner's choice) and shown by `status`. Refused
    /// when one protocol is named both ways. A disabled protocol leaves every explicit
    /// app-password scope too; returns the scopes it narrowed (an empty one no longer
    /// works anywhere).
    pub fn set_protocols(
        &mut self,
        enable: &[Protocol],
        disable: &[Protocol],
    ) -> Result<Vec<Narrowed>, PolicyError> {
        if let Some(p) = enable.iter().find(|p| disable.contains(p)) {
            return Err(PolicyError::ProtocolBothWays(*p));
        }
        for p in enable {
            self.protocols.insert(*p);
        }
        let mut narrowed = Vec::new();
        for p in disable {
            self.protocols.remove(*p);
            for ap in &mut self.app_passwords {
                if let Some(scope) = &mut ap.scope
                    && scope.contains(*p)
                {
                    scope.remove(*p);
                    narrowed.retain(|n: &Narrowed| n.name != ap.name);
                    narrowed.push(Narrowed {
                        name: ap.name.clone(),
                        scope: *scope,
                    });
                }
            }
        }
        Ok(narrowed)
    }

    /// Starts a migration; 2FA must already be off (seed 000 has it disabled first), and
    /// a pending enable is dropped.
    pub fn start_migration(&mut self) -> Result<(), PolicyError> {
        if self.migration {
            return Err(PolicyError::AlreadyMigrating);
        }
        self.migration = true;
        if matches!(
            self.pending_device,
            Some(PendingDevice {
                purpose: DevicePurpose::Enable,
                ..
            })
        ) {
            self.pending_device = None;
        }
        Ok(())
    }

    /// Ends a migration; 2FA can be turned on again.
    pub fn finish_migration(&mut self) -> Result<(), PolicyError> {
        if !self.migration {
            return Err(PolicyError::NotMigrating);
        }
        self.migration = false;
        Ok(())
    }
}

/// A warning a person must accept before an action that lowers security or cuts access:
/// what is asked, as a code (`manage` asks it; `wording::warning` puts it in the person's
/// words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Removing a mailbox: no mail program will log in.
    RemoveMailbox {
        /// Which.
        address: String,
    },
    /// Deactivating an app password: its mail programs lose access at once.
    DeactivateAppPassword,
    /// Turning 2FA off lowers the mailbox's security.
    DisableTwoFactor,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new app password with hash `h`, selector `h`, default name and scope.
    fn new(h: &str) -> NewAppPassword<'static> {
        NewAppPassword {
            name: None,
            scope: None,
            selector: h.to_owned(),
            hash: h.to_owned(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn mailbox() -> Mailbox {
        Mailbox::new(
            "mario@pec.example.it".into(),
            Plan::Standard,
            None,
            "$argon2id$main".into(),
        )
    }

    /// A mailbox with 2FA on at `now`, and the device secret.
    fn with_2fa(now: Timestamp) -> (Mailbox, DeviceSecret) {
        let mut m = mailbox();
        let secret = DeviceSecret::generate().unwrap();
        m.begin_enable_2fa(secret.clone(), now).unwrap();
        m.confirm_device(&secret.code_at(now).unwrap(), now)
            .unwrap();
        (m, secret)
    }

    const T0: &str = "2022-11-15T09:35:00Z";

    #[test]
    fn two_factor_is_off_by_default() {
        let m = mailbox();
        assert!(!m.two_factor_on());
        assert_eq!(m.protocols, ProtocolSet::ALL);
    }

    #[test]
    fn enable_completes_only_with_a_valid_code() {
        let now = at(T0);
        let mut m = mailbox();
        let secret = DeviceSecret::generate().unwrap();
        m.begin_enable_2fa(secret.clone(), now).unwrap();
        assert!(!m.two_factor_on(), "not on before the code");
        let wrong = if secret.code_at(now).unwrap() == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(m.confirm_device(wrong, now), Err(PolicyError::InvalidCode));
        assert!(!m.two_factor_on());
        assert_eq!(
            m.confirm_device(&secret.code_at(now).unwrap(), now),
            Ok(Confirmed::Enabled)
        );
        assert!(m.two_factor_on());
        assert!(m.pending_device.is_none());
    }

    #[test]
    fn confirm_without_enable_is_refused() {
        assert_eq!(
            mailbox().confirm_device("123456", at(T0)),
            Err(PolicyError::NoPendingDevice)
        );
    }

    #[test]
    fn enable_twice_is_refused() {
        let (mut m, _) = with_2fa(at(T0));
        let err = m
            .begin_enable_2fa(DeviceSecret::generate().unwrap(), at(T0))
            .unwrap_err();
        assert_eq!(err, PolicyError::TwoFactorAlreadyOn);
    }

    /// The device waiting to be confirmed may have been scanned: asking again shows it,
    /// never a new one, until it is cancelled.
    #[test]
    fn a_waiting_device_stays_until_confirmed_or_cancelled() {
        let mut m = mailbox();
        let first = DeviceSecret::generate().unwrap();
        let shown = m.begin_enable_2fa(first.clone(), at(T0)).unwrap();
        assert_eq!(shown.as_bytes(), first.as_bytes());
        let again = m
            .begin_enable_2fa(DeviceSecret::generate().unwrap(), at(T0))
            .unwrap();
        assert_eq!(again.as_bytes(), first.as_bytes());
        assert!(m.cancel_pending_device());
        assert!(!m.cancel_pending_device(), "nothing waits any more");
        let fresh = DeviceSecret::generate().unwrap();
        let shown = m.begin_enable_2fa(fresh.clone(), at(T0)).unwrap();
        assert_eq!(shown.as_bytes(), fresh.as_bytes());
    }

    #[test]
    fn migration_blocks_enabling() {
        let mut m = mailbox();
        m.start_migration().unwrap();
        let err = m
            .begin_enable_2fa(DeviceSecret::generate().unwrap(), at(T0))
            .unwrap_err();
        assert_eq!(err, PolicyError::MigrationInProgress);
        m.finish_migration().unwrap();
        assert!(
            m.begin_enable_2fa(DeviceSecret::generate().unwrap(), at(T0))
                .is_ok()
        );
    }

    #[test]
    fn migration_started_between_enable_and_confirm_blocks_confirm() {
        let now = at(T0);
        let mut m = mailbox();
        let secret = DeviceSecret::generate().unwrap();
        m.begin_enable_2fa(secret.clone(), now).unwrap();
        m.start_migration().unwrap();
        assert!(
            m.pending_device.is_none(),
            "starting a migration drops a pending enable"
        );
        assert_eq!(
            m.confirm_device(&secret.code_at(now).unwrap(), now),
            Err(PolicyError::NoPendingDevice)
        );
        assert!(!m.two_factor_on());
    }

    #[test]
    fn migration_start_and_finish_are_checked() {
        let mut m = mailbox();
        assert_eq!(m.finish_migration(), Err(PolicyError::NotMigrating));
        m.start_migration().unwrap();
        assert_eq!(m.start_migration(), Err(PolicyError::AlreadyMigrating));
    }

    #[test]
    fn replace_device_needs_a_code_from_the_current_device() {
        let t0 = at(T0);
        let (mut m, old) = with_2fa(t0);
        let t1 = at("2022-11-20T10:00:00Z");
        let new = DeviceSecret::generate().unwrap();
        let wrong = if old.code_at(t1).unwrap() == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(
            m.begin_replace_device(ReplaceAuthority::Code(wrong), new.clone(), t1),
            Err(PolicyError::InvalidCode)
        );
        m.begin_replace_device(
            ReplaceAuthority::Code(&old.code_at(t1).unwrap()),
            new.clone(),
            t1,
        )
        .unwrap();
        // Until confirmed, the old device stays associated.
        assert_eq!(m.device.as_ref().unwrap().secret(), Some(&old));
        let t2 = at("2022-11-20T10:01:00Z");
        assert_eq!(
            m.confirm_device(&new.code_at(t2).unwrap(), t2),
            Ok(Confirmed::Replaced)
        );
        assert_eq!(m.device.as_ref().unwrap().secret(), Some(&new));
        assert!(m.two_factor_on());
    }

    #[test]
    fn replace_device_by_operator_override() {
        let (mut m, _) = with_2fa(at(T0));
        let new = DeviceSecret::generate().unwrap();
        let t1 = at("2022-12-01T10:00:00Z");
        m.begin_replace_device(ReplaceAuthority::OperatorOverride, new.clone(), t1)
            .unwrap();
        m.confirm_device(&new.code_at(t1).unwrap(), t1).unwrap();
        assert_eq!(m.device.as_ref().unwrap().secret(), Some(&new));
    }

    #[test]
    fn replace_device_keeps_the_app_password() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        m.generate_app_password(new("h"), t0, &PolicySettings::default())
            .unwrap();
        let new = DeviceSecret::generate().unwrap();
        m.begin_replace_device(ReplaceAuthority::OperatorOverride, new.clone(), t0)
            .unwrap();
        m.confirm_device(&new.code_at(t0).unwrap(), t0).unwrap();
        assert!(!m.app_passwords.is_empty());
    }

    #[test]
    fn replace_device_with_2fa_off_is_refused() {
        let mut m = mailbox();
        let err = m
            .begin_replace_device(
                ReplaceAuthority::OperatorOverride,
                DeviceSecret::generate().unwrap(),
                at(T0),
            )
            .unwrap_err();
        assert!(matches!(err, PolicyError::TwoFactorOff(_)));
    }

    #[test]
    fn the_enabling_code_cannot_be_reused_to_disable() {
        let now = at(T0);
        let (mut m, secret) = with_2fa(now);
        assert_eq!(
            m.disable_2fa(&secret.code_at(now).unwrap(), now),
            Err(PolicyError::CodeReused)
        );
        assert!(m.two_factor_on());
    }

    #[test]
    fn disable_needs_a_code_and_revokes_the_app_password() {
        let t0 = at(T0);
        let (mut m, secret) = with_2fa(t0);
        m.generate_app_password(new("h"), t0, &PolicySettings::default())
            .unwrap();
        let t1 = at("2022-11-16T08:00:00Z");
        assert_eq!(
            m.disable_2fa("not-a-code", t1),
            Err(PolicyError::InvalidCode)
        );
        assert!(m.two_factor_on());
        m.disable_2fa(&secret.code_at(t1).unwrap(), t1).unwrap();
        assert!(!m.two_factor_on());
        assert!(m.app_passwords.is_empty());
        assert!(m.pending_device.is_none());
    }

    #[test]
    fn disable_when_off_is_refused() {
        assert!(matches!(
            mailbox().disable_2fa("123456", at(T0)),
            Err(PolicyError::TwoFactorOff(_))
        ));
    }

    #[test]
    fn app_password_requires_2fa() {
        let mut m = mailbox();
        let err = m
            .generate_app_password(new("h"), at(T0), &PolicySettings::default())
            .unwrap_err();
        assert!(matches!(err, PolicyError::TwoFactorOff(_)));
    }

    #[test]
    fn generate_refused_without_protocols_with_the_seed_message() {
        let (mut m, _) = with_2fa(at(T0));
        m.set_protocols(&[], &Protocol::ALL).unwrap();
        let err = m
            .generate_app_password(new("h"), at(T0), &PolicySettings::default())
            .unwrap_err();
        assert_eq!(err, PolicyError::NoProtocolEnabled);
        assert_eq!(
            err.to_string(),
            "You have not enabled access for mail programs: enable at least one of IMAP, POP, SMTP"
        );
    }

    #[test]
    fn generate_sets_three_calendar_months() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        let ap = m
            .generate_app_password(new("h"), t0, &PolicySettings::default())
            .unwrap();
        assert_eq!(ap.expires_at, at("2023-02-15T09:35:00Z"));
    }

    #[test]
    fn generate_uses_the_configured_validity() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        let s = PolicySettings {
            app_password_validity: Period::days(30),
            ..Default::default()
        };
        let ap = m.generate_app_password(new("h"), t0, &s).unwrap();
        assert_eq!(ap.expires_at, at("2022-12-15T09:35:00Z"));
    }

    #[test]
    fn generate_while_one_is_active_is_refused_but_allowed_after_expiry() {
        let t0 = at(T0);
        let s = PolicySettings::default();
        let (mut m, _) = with_2fa(t0);
        m.generate_app_password(new("h1"), t0, &s).unwrap();
        let err = m
            .generate_app_password(new("h2"), at("2023-02-15T09:34:59Z"), &s)
            .unwrap_err();
        assert!(matches!(err, PolicyError::AppPasswordActive { .. }));
        let ap = m
            .generate_app_password(new("h2"), at("2023-02-15T09:35:00Z"), &s)
            .unwrap();
        assert_eq!(ap.hash, "h2");
    }

    #[test]
    fn regenerate_replaces_the_password_at_once() {
        let t0 = at(T0);
        let s = PolicySettings::default();
        let (mut m, _) = with_2fa(t0);
        assert_eq!(
            m.regenerate_app_password(new("h0"), t0, &s).unwrap_err(),
            PolicyError::NoAppPassword
        );
        m.generate_app_password(new("h1"), t0, &s).unwrap();
        let t1 = at("2022-12-01T00:00:00Z");
        let ap = m.regenerate_app_password(new("h2"), t1, &s).unwrap();
        assert_eq!(
            (ap.hash.as_str(), ap.created_at, ap.expires_at),
            ("h2", t1, at("2023-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn postpone_through_the_mailbox() {
        let t0 = at(T0);
        let s = PolicySettings::default();
        let (mut m, _) = with_2fa(t0);
        assert_eq!(
            m.postpone_app_password(None, t0, &s).unwrap_err(),
            PolicyError::NoAppPassword
        );
        m.generate_app_password(new("h"), t0, &s).unwrap();
        assert!(matches!(
            m.postpone_app_password(None, t0, &s),
            Err(PolicyError::PostponeTooEarly { .. })
        ));
        let ap = m
            .postpone_app_password(None, at("2023-02-01T09:35:00Z"), &s)
            .unwrap();
        // 15/02 10:35 in Rome (CET) + 3 months = 15/05 10:35 in Rome, summer time (CEST).
        assert_eq!(ap.expires_at, at("2023-05-15T08:35:00Z"));
        assert_eq!(ap.hash, "h", "postponing keeps the same password");
    }

    #[test]
    fn deactivate_ends_access_and_keeps_2fa_on() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        assert_eq!(
            m.deactivate_app_password(None),
            Err(PolicyError::NoAppPassword)
        );
        m.generate_app_password(new("h"), t0, &PolicySettings::default())
            .unwrap();
        m.deactivate_app_password(None).unwrap();
        assert!(m.app_passwords.is_empty());
        assert!(m.two_factor_on());
    }

    #[test]
    fn fingerprint_changes_with_every_login_relevant_field() {
        let t0 = at(T0);
        let s = PolicySettings::default();
        let (mut m, _) = with_2fa(t0);
        let mut last = m.login_fingerprint();
        let mut changed = |m: &Mailbox, what: &str| {
            let fp = m.login_fingerprint();
            assert!(fp != last, "{what} did not change the fingerprint");
            last = fp;
        };
        m.generate_app_password(new("h"), t0, &s).unwrap();
        changed(&m, "generate");
        m.postpone_app_password(None, at("2023-02-10T00:00:00Z"), &s)
            .unwrap();
        changed(&m, "postpone");
        m.regenerate_app_password(new("h2"), t0, &s).unwrap();
        changed(&m, "regenerate");
        m.deactivate_app_password(None).unwrap();
        changed(&m, "deactivate");
        m.plan = Plan::Pro;
        changed(&m, "plan");
        m.set_protocols(&[], &[Protocol::Pop3]).unwrap();
        changed(&m, "protocols");
        m.password_hash = "other".into();
        changed(&m, "password");
        m.device = None;
        changed(&m, "2fa off");
        // Migration alone does not change who can log in.
        let fp = m.login_fingerprint();
        m.start_migration().unwrap();
        assert!(fp == m.login_fingerprint());
    }

    fn named(name: &'static str, scope: &[Protocol], h: &str) -> NewAppPassword<'static> {
        let mut set = ProtocolSet::NONE;
        scope.iter().for_each(|p| set.insert(*p));
        NewAppPassword {
            name: Some(name),
            scope: (!scope.is_empty()).then_some(set),
            selector: h.to_owned(),
            hash: h.to_owned(),
        }
    }

    fn allowing(n: usize) -> PolicySettings {
        PolicySettings {
            max_app_passwords: n,
            ..PolicySettings::default()
        }
    }

    #[test]
    fn several_passwords_up_to_the_limit_with_unique_names() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        let s = allowing(2);
        m.generate_app_password(named("Outlook in ufficio", &[], "a"), t0, &s)
            .unwrap();
        assert!(matches!(
            m.generate_app_password(named("Outlook in ufficio", &[], "b"), t0, &s),
            Err(PolicyError::AppPasswordActive { .. })
        ));
        m.generate_app_password(named("fatture", &[Protocol::Smtp], "c"), t0, &s)
            .unwrap();
        let err = m
            .generate_app_password(named("tablet", &[], "d"), t0, &s)
            .unwrap_err();
        assert_eq!(err, PolicyError::TooManyAppPasswords { limit: 2 });
        assert!(
            err.to_string().contains("already has 2 app password(s)"),
            "{err}"
        );
        // Without a name, with several: which one?
        let err = m.postpone_app_password(None, t0, &s).unwrap_err();
        assert_eq!(
            err,
            PolicyError::AppPasswordNameRequired("Outlook in ufficio, fatture".into())
        );
        assert_eq!(
            m.deactivate_app_password(Some("nope")).unwrap_err(),
            PolicyError::NoSuchAppPassword("nope".into())
        );
        assert!(matches!(
            m.generate_app_password(named("  ", &[], "e"), t0, &allowing(5)),
            Err(PolicyError::BadAppPasswordName(_))
        ));
        assert!(matches!(
            m.generate_app_password(named("a\u{7}b", &[], "e"), t0, &allowing(5)),
            Err(PolicyError::BadAppPasswordName(_))
        ));
    }

    #[test]
    fn each_password_has_its_own_lifecycle() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        let s = allowing(3);
        m.generate_app_password(named("a", &[], "a"), t0, &s)
            .unwrap();
        m.generate_app_password(named("b", &[Protocol::Smtp], "b"), t0, &s)
            .unwrap();
        // Regenerating keeps the name and the scope; the other is untouched.
        let before_a = m.app_passwords[0].clone();
        let t1 = at("2022-12-01T00:00:00Z");
        let ap = m
            .regenerate_app_password(
                NewAppPassword {
                    name: Some("b"),
                    scope: None,
                    selector: "x".into(),
                    hash: "x".into(),
                },
                t1,
                &s,
            )
            .unwrap();
        assert_eq!((ap.name.as_str(), ap.hash.as_str()), ("b", "x"));
        assert_eq!(
            ap.scope.unwrap().iter().collect::<Vec<_>>(),
            [Protocol::Smtp]
        );
        assert_eq!(ap.created_at, t1);
        assert_eq!(m.app_passwords[0], before_a);
        // Postponing one leaves the other's expiry alone.
        let opens = at("2023-02-01T09:35:00Z");
        m.postpone_app_password(Some("a"), opens, &s).unwrap();
        assert_eq!(m.app_passwords[0].postponed, 1);
        assert_eq!(m.app_passwords[1].postponed, 0);
        // Deactivating one keeps the other; deactivating all ends both.
        assert_eq!(m.deactivate_app_password(Some("a")).unwrap().name, "a");
        assert_eq!(m.app_passwords.len(), 1);
        m.generate_app_password(named("c", &[], "c"), t0, &s)
            .unwrap();
        assert_eq!(m.deactivate_all_app_passwords().unwrap(), ["b", "c"]);
        assert_eq!(
            m.deactivate_all_app_passwords(),
            Err(PolicyError::NoAppPassword)
        );
    }

    #[test]
    fn a_scope_is_among_the_enabled_protocols_and_narrows_with_them() {
        let t0 = at(T0);
        let (mut m, _) = with_2fa(t0);
        let s = allowing(3);
        m.set_protocols(&[], &[Protocol::Pop3]).unwrap();
        assert!(matches!(
            m.generate_app_password(named("x", &[Protocol::Pop3], "x"), t0, &s),
            Err(PolicyError::ScopeNotEnabled { .. })
        ));
        m.generate_app_password(
            named("both", &[Protocol::Imap, Protocol::Smtp], "a"),
            t0,
            &s,
        )
        .unwrap();
        m.generate_app_password(named("smtp", &[Protocol::Smtp], "b"), t0, &s)
            .unwrap();
        m.generate_app_password(named("all", &[], "c"), t0, &s)
            .unwrap();
        let narrowed = m.set_protocols(&[], &[Protocol::Smtp]).unwrap();
        let mut imap = ProtocolSet::NONE;
        imap.insert(Protocol::Imap);
        assert_eq!(
            narrowed,
            [
                Narrowed {
                    name: "both".into(),
                    scope: imap
                },
                Narrowed {
                    name: "smtp".into(),
                    scope: ProtocolSet::NONE
                },
            ],
            "the password for every protocol follows the mailbox instead"
        );
        // Re-enabling SMTP brings it back to the unscoped password only.
        m.set_protocols(&[Protocol::Smtp], &[]).unwrap();
        let enabled = m.protocols;
        assert!(
            m.app_passwords[2]
                .effective_scope(enabled)
                .contains(Protocol::Smtp)
        );
        assert!(
            !m.app_passwords[0]
                .effective_scope(enabled)
                .contains(Protocol::Smtp)
        );
        assert!(m.app_passwords[1].effective_scope(enabled).is_empty());
    }
}
