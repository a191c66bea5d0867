//! Two-step verification: associating, confirming, replacing and removing the device.

use jiff::Timestamp;

use super::outcome::{DeviceConfirmed, DeviceResult, NewDevice, TwoFactorDisabled};
use super::{Actor, Ask, ManageError, Manager, Record, Warning};
use crate::policy::PolicyError;
use crate::policy::mailbox::{Confirmed, DevicePurpose, ReplaceAuthority};
use crate::policy::notice::Said;
use crate::policy::totp::DeviceSecret;
use crate::secret::Secret;
use crate::store::EventAction;

impl Manager {
    fn new_device(
        &self,
        address: &str,
        secret: &DeviceSecret,
        purpose: DevicePurpose,
    ) -> Result<NewDevice, ManageError> {
        let uri = secret.otpauth_uri(address, &self.settings.load().totp_issuer)?;
        Ok(NewDevice {
            address: address.to_owned(),
            purpose,
            otpauth_uri: Secret::new(uri),
        })
    }

    /// Starts turning 2FA on: a device secret to scan, waiting for its first code — the
    /// one already waiting, if there is one (the owner may have scanned it). Refused
    /// during a migration and when 2FA is already on.
    pub fn enable_2fa(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
    ) -> Result<NewDevice, ManageError> {
        let fresh = DeviceSecret::generate()?;
        let (secret, m) = self.change(actor, address, now, |_, m| {
            let shown = m.begin_enable_2fa(fresh, now)?;
            Ok((shown, Record::new(EventAction::TwoFactorEnable)))
        })?;
        self.new_device(&m.address, &secret, DevicePurpose::Enable)
    }

    /// The device waiting for its first code (turning 2FA on, or a replacement), to show
    /// again; `None` if none is waiting.
    pub fn pending_device(&self, address: &str) -> Result<Option<NewDevice>, ManageError> {
        let m = self.read(address)?;
        m.pending_device
            .as_ref()
            .map(|p| self.new_device(&m.address, &p.secret, p.purpose))
            .transpose()
    }

    /// Drops the device waiting for its first code; refused when none is waiting.
    pub fn cancel_device(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
    ) -> Result<(), ManageError> {
        self.change(actor, address, now, |_, m| {
            if !m.cancel_pending_device() {
                return Err(ManageError::Refused(PolicyError::TwoFactorOff(
                    "no device is waiting for its first code",
                )));
            }
            Ok(((), Record::new(EventAction::TwoFactorCancel)))
        })?;
        Ok(())
    }

    /// Completes turning 2FA on, or a device replacement, with a code from the new device.
    pub fn confirm_device(
        &mut self,
        actor: &Actor,
        address: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<DeviceConfirmed, ManageError> {
        let (result, m) = self.change(actor, address, now, |_, m| {
            let record = match m.confirm_device(code, now)? {
                Confirmed::Enabled => {
                    Record::new(EventAction::TwoFactorEnabled).notice(Said::TwoFactorOn)
                }
                Confirmed::Replaced => {
                    Record::new(EventAction::TwoFactorDeviceReplaced).notice(Said::DeviceReplaced)
                }
            };
            let result = match record.action {
                EventAction::TwoFactorEnabled => DeviceResult::Enabled,
                _ => DeviceResult::Replaced,
            };
            Ok((result, record))
        })?;
        Ok(DeviceConfirmed {
            address: m.address,
            two_factor: "on",
            result,
        })
    }

    /// The owner proves the device with a code (the web page's second login step); the
    /// code is spent, so it opens one session only.
    pub fn prove_device(
        &mut self,
        actor: &Actor,
        address: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<(), ManageError> {
        self.change(actor, address, now, |_, m| {
            m.prove_device(code, now)?;
            Ok(((), Record::new(EventAction::OwnerCodeUsed)))
        })?;
        Ok(())
    }

    /// Turns 2FA off, after the seeds' warning, with a code from the associated device.
    /// The app password is revoked; the main password works in mail programs again.
    pub fn disable_2fa(
        &mut self,
        actor: &Actor,
        address: &str,
        code: &str,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<TwoFactorDisabled, ManageError> {
        if !self.read(address)?.two_factor_on() {
            return Err(PolicyError::TwoFactorOff("nothing to turn off").into());
        }
        ask.confirm(&Warning::DisableTwoFactor)?;
        let ((), m) = self.change(actor, address, now, |_, m| {
            m.disable_2fa(code, now)?;
            let record = Record::new(EventAction::TwoFactorDisable).notice(Said::TwoFactorOff {
                by_operator: actor.is_operator(),
            });
            Ok(((), record))
        })?;
        Ok(TwoFactorDisabled {
            address: m.address,
            two_factor: "off",
            app_password: "revoked",
        })
    }

    /// Starts replacing the device (lost or new phone), authorised by a code from the
    /// current device or — `code` absent — by an operator's override, which is recorded
    /// and told to the owner. The current device works until the new one is confirmed.
    pub fn replace_device(
        &mut self,
        actor: &Actor,
        address: &str,
        code: Option<&str>,
        now: Timestamp,
    ) -> Result<NewDevice, ManageError> {
        let (authority, record) = match (code, actor) {
            (Some(code), _) => (
                ReplaceAuthority::Code(code),
                Record::new(EventAction::TwoFactorReplaceDevice)
                    .detail("authorised with a code from the current device")
                    .notice(Said::ReplaceStarted),
            ),
            (None, Actor::Operator(name)) => (
                ReplaceAuthority::OperatorOverride,
                Record::new(EventAction::TwoFactorReplaceDevice)
                    .detail(format!(
                        "OPERATOR OVERRIDE by {name} (no code from the current device)"
                    ))
                    .notice(Said::ReplaceByOperator),
            ),
            (None, _) => return Err(PolicyError::OverrideNeedsOperator.into()),
        };
        let secret = DeviceSecret::generate()?;
        let pending = secret.clone();
        let ((), m) = self.change(actor, address, now, |_, m| {
            m.begin_replace_device(authority, pending, now)?;
            Ok(((), record))
        })?;
        self.new_device(&m.address, &secret, DevicePurpose::Replace)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ADDR, operator, turn_on_2fa, with_mailbox, yes};
    use super::*;
    use crate::policy::Plan;

    fn now() -> Timestamp {
        "2024-03-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_an_operator_may_override_and_the_owner_is_told() {
        let t = now();
        let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
        turn_on_2fa(&mut m, ADDR, t);
        let owner = Actor::Owner(ADDR.into());
        let err = m.replace_device(&owner, ADDR, None, t).unwrap_err();
        assert!(
            matches!(
                err,
                ManageError::Refused(PolicyError::OverrideNeedsOperator)
            ),
            "{err}"
        );
        m.replace_device(&operator(), ADDR, None, t).unwrap();
        let events = m.events(ADDR).unwrap().events;
        let last = events.last().unwrap();
        assert_eq!(last.actor, operator());
        assert!(
            last.detail
                .as_deref()
                .unwrap()
                .contains("OPERATOR OVERRIDE by root")
        );
        assert!(
            m.notices(ADDR).unwrap().notices[0]
                .message
                .contains("operator")
        );
    }

    #[test]
    fn disabling_asks_only_when_there_is_something_to_turn_off() {
        let t = now();
        let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
        let mut ask = yes("unused");
        ask.confirm = false;
        // Off: refused by the rule before anybody is asked.
        let err = m
            .disable_2fa(&operator(), ADDR, "123456", &mut ask, t)
            .unwrap_err();
        assert_eq!(err.code(), "two_factor_off");
        let secret = turn_on_2fa(&mut m, ADDR, t);
        // On, not confirmed: declined, nothing changed.
        let later = t + jiff::SignedDuration::from_secs(60);
        let err = m
            .disable_2fa(
                &operator(),
                ADDR,
                &secret.code_at(later).unwrap(),
                &mut ask,
                later,
            )
            .unwrap_err();
        assert_eq!(err.code(), "not_confirmed");
        assert!(m.show_mailbox(ADDR, later).unwrap().two_factor.enabled);
    }
}
