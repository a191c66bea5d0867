//! The app password ("password per programmi di posta"): generate, regenerate,
//! postpone, deactivate, status.

use jiff::Timestamp;

use super::outcome::{AppPasswordStatus, AppPasswordView, Deactivated, NewAppPassword, Postponed};
use super::{Actor, Ask, ManageError, Manager, Record, Warning};
use crate::policy::{PolicyError, app_password, fmt_time};
use crate::store::{EventAction, NoticeKind};

/// The warning before deactivating.
const DEACTIVATE_WARNING: &str = "Deactivating the app password ends access for every mail program that uses it, at \
     once. The main password still does not work in mail programs while two-step verification is on.";

impl Manager {
    /// "Attiva": a first app password (or a new one after the old one expired), shown
    /// once. `regenerate` ("Genera nuova password") replaces an existing one; the old one
    /// stops working at once.
    pub fn generate_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        regenerate: bool,
        now: Timestamp,
    ) -> Result<NewAppPassword, ManageError> {
        let s = self.settings.policy;
        let issue = |m: &mut crate::policy::Mailbox, hash: String| {
            if regenerate {
                m.regenerate_app_password(hash, now, &s)
                    .map(|a| (a.created_at, a.expires_at))
            } else {
                m.generate_app_password(hash, now, &s)
                    .map(|a| (a.created_at, a.expires_at))
            }
        };
        // The rules first, on a copy, before spending a hash; the transaction checks again.
        issue(&mut self.read(address)?, String::new())?;
        let password = app_password::generate()?;
        let canonical = app_password::canonical(password.expose()).ok_or_else(|| {
            ManageError::Internal("generated app password is not canonical".into())
        })?;
        let hash = self.hash(&canonical)?;
        drop(canonical);
        let ((created_at, expires_at), m) = self.change(actor, address, now, |_, m| {
            let dates = issue(m, hash)?;
            let record = if regenerate {
                Record::new(EventAction::AppPasswordRegenerate).notice(
                    NoticeKind::AppPassword,
                    "A new app password was generated; the previous one no longer works.",
                )
            } else {
                Record::new(EventAction::AppPasswordGenerate).notice(
                    NoticeKind::AppPassword,
                    "An app password for mail programs was generated.",
                )
            };
            Ok((dates, record))
        })?;
        Ok(NewAppPassword {
            address: m.address,
            created_at,
            expires_at,
            replaced: regenerate,
            protocols: m.protocols,
            archive: m.plan.has_archive(),
            password,
        })
    }

    /// "Posticipa scadenza": the same password, valid for another period; allowed from
    /// the postpone window before expiry, and after it. The owner is told the new date.
    pub fn postpone_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
    ) -> Result<Postponed, ManageError> {
        let s = self.settings.policy;
        let ((expires_at, postponed), m) = self.change(actor, address, now, |_, m| {
            let ap = m.postpone_app_password(now, &s)?;
            let (expires_at, postponed) = (ap.expires_at, ap.postponed);
            let record = Record::new(EventAction::AppPasswordPostpone).notice(
                NoticeKind::AppPassword,
                format!(
                    "The expiry of the app password was postponed: the same password now works until {}.",
                    fmt_time(expires_at)
                ),
            );
            Ok(((expires_at, postponed), record))
        })?;
        Ok(Postponed {
            address: m.address,
            expires_at,
            postponed,
        })
    }

    /// "Disattiva": after confirmation, mail programs using the app password lose access
    /// at once.
    pub fn deactivate_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<Deactivated, ManageError> {
        if self.read(address)?.app_password.is_none() {
            return Err(PolicyError::NoAppPassword.into());
        }
        ask.confirm(&Warning(DEACTIVATE_WARNING.into()))?;
        let ((), m) = self.change(actor, address, now, |_, m| {
            m.deactivate_app_password()?;
            let record = Record::new(EventAction::AppPasswordDeactivate)
                .notice(NoticeKind::AppPassword, "The app password was deactivated.");
            Ok(((), record))
        })?;
        Ok(Deactivated {
            address: m.address,
            app_password: "none",
        })
    }

    /// The app password's state, expiry and when postponing opens.
    pub fn app_password_status(
        &self,
        address: &str,
        now: Timestamp,
    ) -> Result<AppPasswordStatus, ManageError> {
        let m = self.read(address)?;
        Ok(AppPasswordStatus {
            two_factor: m.two_factor_on(),
            protocols: m.protocols,
            app_password: AppPasswordView::of(&m, &self.settings.policy, now),
            address: m.address,
        })
    }
}
