//! Two-step verification: associating, confirming, replacing and removing the device.

use jiff::Timestamp;

use super::outcome::{DeviceConfirmed, DeviceResult, NewDevice, TwoFactorDisabled};
use super::{Actor, Ask, ManageError, Manager, Record, Warning};
use crate::auth::PasswordHasher;
use crate::policy::mailbox::{Confirmed, DevicePurpose, Mailbox, ReplaceAuthority};
use crate::policy::notice::Said;
use crate::policy::totp::DeviceSecret;
use crate::policy::{PolicyError, passkey, recovery};
use crate::secret::Secret;
use crate::store::EventAction;
use crate::store::Transaction;

/// What the owner gives where the second factor is asked: a code (from the app, or a
/// recovery code), or the passkey's assertion.
#[derive(Clone, Copy, Debug)]
pub enum Proof<'a> {
    /// Six digits from the app, or a recovery code.
    Code(&'a str),
    /// The passkey's answer to this page's challenge.
    Passkey(Assertion<'a>),
}

impl<'a> From<&'a str> for Proof<'a> {
    fn from(code: &'a str) -> Self {
        Proof::Code(code)
    }
}

impl<'a> From<&'a String> for Proof<'a> {
    fn from(code: &'a String) -> Self {
        Proof::Code(code)
    }
}

/// A passkey's assertion, as the browser returned it (base64url), for a ceremony.
#[derive(Clone, Copy, Debug)]
pub struct Assertion<'a> {
    /// Where and for which challenge.
    pub ceremony: passkey::Ceremony<'a>,
    /// `rawId`.
    pub credential_id: &'a str,
    /// `clientDataJSON`.
    pub client_data_json: &'a str,
    /// `authenticatorData`.
    pub authenticator_data: &'a str,
    /// `signature`.
    pub signature: &'a str,
}

/// What a proof came to, inside the action's transaction.
enum Proven<'a> {
    /// A code for the app's device: the policy checks it.
    DeviceCode(&'a str),
    /// A recovery code, spent (this many left).
    Recovery(u32),
    /// The passkey, its counter now this.
    Passkey(u32),
}

/// Checks `proof` for `m` in `tx`: a recovery code is spent, a passkey's signature and
/// counter checked (its counter must still move forward from what is stored now — two
/// assertions racing, only one wins); an app's code is left to the policy.
fn check_proof<'a>(
    hasher: &PasswordHasher,
    tx: &mut dyn Transaction,
    m: &Mailbox,
    proof: Proof<'a>,
    now: Timestamp,
) -> Result<Proven<'a>, ManageError> {
    match proof {
        Proof::Code(code) => Ok(match spend_recovery(hasher, tx, m, code, now)? {
            Some(left) => Proven::Recovery(left),
            None => Proven::DeviceCode(code),
        }),
        Proof::Passkey(a) => {
            let key = m
                .device
                .as_ref()
                .and_then(|d| d.passkey())
                .ok_or(PolicyError::InvalidCode)?;
            passkey::assert(
                &a.ceremony,
                key,
                a.credential_id,
                a.client_data_json,
                a.authenticator_data,
                a.signature,
            )
            .map(Proven::Passkey)
            .map_err(|_| PolicyError::InvalidCode.into())
        }
    }
}

/// The recovery code in `code`, if it has that shape: checked against the mailbox's codes
/// and spent in `tx`; how many are left. `Ok(None)`: not a recovery code (a device's code,
/// the policy's to check). One that matches none is a wrong code, a spent one a reused
/// code — both counted by the abuse model like a device's.
fn spend_recovery(
    hasher: &PasswordHasher,
    tx: &mut dyn Transaction,
    m: &Mailbox,
    code: &str,
    now: Timestamp,
) -> Result<Option<u32>, ManageError> {
    let Some(canonical) = recovery::canonical(code) else {
        return Ok(None);
    };
    let codes = tx.recovery_codes(m.id)?;
    let selector = recovery::selector(&canonical);
    let Some(found) = codes.iter().find(|c| c.selector == selector) else {
        return Err(PolicyError::InvalidCode.into());
    };
    if !hasher.verify(&found.hash, &canonical) {
        return Err(PolicyError::InvalidCode.into());
    }
    if found.used_at.is_some() || !tx.spend_recovery_code(found.id, now)? {
        return Err(PolicyError::CodeReused.into());
    }
    let left = codes
        .iter()
        .filter(|c| c.used_at.is_none() && c.id != found.id)
        .count();
    Ok(Some(u32::try_from(left).unwrap_or(u32::MAX)))
}

/// A set of recovery codes (canonical) and what is stored of them (selector, hash).
type RecoverySet = (Vec<Secret>, Vec<(String, String)>);

impl Manager {
    /// A new set of recovery codes: the codes (canonical) and their (selector, hash).
    fn recovery_set(&self) -> Result<RecoverySet, ManageError> {
        let codes = recovery::generate()?;
        let stored = codes
            .iter()
            .map(|c| Ok((recovery::selector(c), self.hash(c)?)))
            .collect::<Result<Vec<_>, ManageError>>()?;
        Ok((codes, stored))
    }

    /// A new set of recovery codes for a mailbox with 2FA on (the old set dies), printed,
    /// to be shown once.
    pub fn renew_recovery_codes(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, ManageError> {
        if !self.read(address)?.two_factor_on() {
            return Err(PolicyError::TwoFactorOff("turn two-step verification on first").into());
        }
        let (codes, stored) = self.recovery_set()?;
        self.change(actor, address, now, |tx, m| {
            tx.set_recovery_codes(m.id, &stored, now)?;
            Ok((
                (),
                Record::new(EventAction::RecoveryCodesRenewed).notice(Said::RecoveryCodesRenewed),
            ))
        })?;
        Ok(codes.iter().map(recovery::printed).collect())
    }

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
        self.associate(actor, address, now, false, |m| m.confirm_device(code, now))
    }

    /// The pending enable or replacement completed by `confirm` (a code from the new app,
    /// or a passkey registered): turning 2FA on brings a set of recovery codes (hashed
    /// before the transaction), and the owner is told which kind of device it is.
    fn associate(
        &mut self,
        actor: &Actor,
        address: &str,
        now: Timestamp,
        passkey: bool,
        confirm: impl FnOnce(&mut Mailbox) -> Result<Confirmed, PolicyError>,
    ) -> Result<DeviceConfirmed, ManageError> {
        let enabling = self
            .read(address)?
            .pending_device
            .is_some_and(|p| p.purpose == DevicePurpose::Enable);
        let (codes, stored) = if enabling {
            self.recovery_set()?
        } else {
            (Vec::new(), Vec::new())
        };
        let kind = if passkey {
            "passkey"
        } else {
            "authenticator app"
        };
        let (result, m) = self.change(actor, address, now, |tx, m| {
            Ok(match confirm(m)? {
                Confirmed::Enabled => {
                    tx.set_recovery_codes(m.id, &stored, now)?;
                    (
                        DeviceResult::Enabled,
                        Record::new(EventAction::TwoFactorEnabled)
                            .detail(kind)
                            .notice(Said::TwoFactorOn { passkey }),
                    )
                }
                Confirmed::Replaced => (
                    DeviceResult::Replaced,
                    Record::new(EventAction::TwoFactorDeviceReplaced)
                        .detail(kind)
                        .notice(Said::DeviceReplaced { passkey }),
                ),
            })
        })?;
        let recovery_codes = match result {
            DeviceResult::Enabled => codes
                .iter()
                .map(|c| Secret::new(recovery::printed(c)))
                .collect(),
            _ => Vec::new(),
        };
        Ok(DeviceConfirmed {
            address: m.address,
            two_factor: "on",
            result,
            recovery_codes,
        })
    }

    /// The owner proves the device with a code (the web page's second login step) — or a
    /// recovery code in its place; the code is spent, so it opens one session only.
    /// Returns the recovery codes left when one was used.
    pub fn prove_device<'a>(
        &mut self,
        actor: &Actor,
        address: &str,
        proof: impl Into<Proof<'a>>,
        now: Timestamp,
    ) -> Result<Option<u32>, ManageError> {
        let proof = proof.into();
        self.passkey_precheck(actor, address, proof, now)?;
        let hasher = self.hasher.clone();
        let (left, _) = self.change(actor, address, now, |tx, m| {
            if !m.two_factor_on() {
                return Err(PolicyError::TwoFactorOff("there is no device to prove").into());
            }
            let left = match check_proof(&hasher, tx, m, proof, now)? {
                Proven::DeviceCode(code) => {
                    m.prove_device(code, now)?;
                    None
                }
                Proven::Recovery(left) => Some(left),
                Proven::Passkey(counter) => {
                    m.passkey_used(counter)?;
                    None
                }
            };
            Ok((left, Record::new(EventAction::OwnerCodeUsed).recovery(left)))
        })?;
        Ok(left)
    }

    /// A passkey's assertion whose counter went back (a cloned key) is refused — and
    /// the owner told, in a transaction of its own, since the refused action writes
    /// nothing.
    fn passkey_precheck(
        &mut self,
        actor: &Actor,
        address: &str,
        proof: Proof<'_>,
        now: Timestamp,
    ) -> Result<(), ManageError> {
        let Proof::Passkey(a) = proof else {
            return Ok(());
        };
        let m = self.read(address)?;
        let Some(key) = m.device.as_ref().and_then(|d| d.passkey()) else {
            return Err(PolicyError::InvalidCode.into());
        };
        let checked = passkey::assert(
            &a.ceremony,
            key,
            a.credential_id,
            a.client_data_json,
            a.authenticator_data,
            a.signature,
        );
        if let Err(passkey::PasskeyError::CounterWentBack { stored, received }) = checked {
            self.change(actor, address, now, |_, _| {
                Ok((
                    (),
                    Record::new(EventAction::PasskeyRefused)
                        .detail(format!(
                            "signature counter went from {stored} to {received}"
                        ))
                        .notice(Said::PasskeyCloned),
                ))
            })?;
            return Err(PolicyError::InvalidCode.into());
        }
        Ok(())
    }

    /// Completes turning 2FA on, or a device replacement, with a passkey the browser
    /// registered for this page (`ceremony`).
    pub fn confirm_passkey(
        &mut self,
        actor: &Actor,
        address: &str,
        ceremony: &passkey::Ceremony<'_>,
        client_data_json: &str,
        attestation_object: &str,
        now: Timestamp,
    ) -> Result<DeviceConfirmed, ManageError> {
        let key = passkey::register(ceremony, client_data_json, attestation_object)
            .map_err(|_| PolicyError::InvalidCode)?;
        self.associate(actor, address, now, true, |m| m.confirm_passkey(key, now))
    }

    /// Turns 2FA off, after the seeds' warning, with a code from the associated device.
    /// The app password is revoked; the main password works in mail programs again.
    pub fn disable_2fa<'a>(
        &mut self,
        actor: &Actor,
        address: &str,
        proof: impl Into<Proof<'a>>,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<TwoFactorDisabled, ManageError> {
        let proof = proof.into();
        if !self.read(address)?.two_factor_on() {
            return Err(PolicyError::TwoFactorOff("nothing to turn off").into());
        }
        ask.confirm(&Warning::DisableTwoFactor)?;
        self.passkey_precheck(actor, address, proof, now)?;
        let hasher = self.hasher.clone();
        let ((), m) = self.change(actor, address, now, |tx, m| {
            let left = match check_proof(&hasher, tx, m, proof, now)? {
                Proven::DeviceCode(code) => {
                    m.disable_2fa(code, now)?;
                    None
                }
                Proven::Recovery(left) => {
                    m.disable_2fa_proven()?;
                    Some(left)
                }
                Proven::Passkey(_) => {
                    m.disable_2fa_proven()?;
                    None
                }
            };
            tx.set_recovery_codes(m.id, &[], now)?;
            let record = Record::new(EventAction::TwoFactorDisable)
                .notice(Said::TwoFactorOff {
                    by_operator: actor.is_operator(),
                })
                .recovery(left);
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
        proof: Option<Proof<'_>>,
        now: Timestamp,
    ) -> Result<NewDevice, ManageError> {
        let (authority, record) = match (proof, actor) {
            (Some(_), _) => (
                ReplaceAuthority::Proven,
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
        if let Some(proof) = proof {
            self.passkey_precheck(actor, address, proof, now)?;
        }
        let secret = DeviceSecret::generate()?;
        let pending = secret.clone();
        let hasher = self.hasher.clone();
        let ((), m) = self.change(actor, address, now, |tx, m| {
            // The current device's code, its passkey, or a recovery code for a lost one.
            let (authority, left) = match proof {
                None => (authority, None),
                Some(proof) => match check_proof(&hasher, tx, m, proof, now)? {
                    Proven::DeviceCode(code) => (ReplaceAuthority::Code(code), None),
                    Proven::Recovery(left) => (ReplaceAuthority::Proven, Some(left)),
                    Proven::Passkey(counter) => {
                        m.passkey_used(counter)?;
                        (ReplaceAuthority::Proven, None)
                    }
                },
            };
            m.begin_replace_device(authority, pending, now)?;
            Ok(((), record.recovery(left)))
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

    /// Turning 2FA on brings ten codes, kept only as hashes; each stands in for the
    /// device's code once (log in, replace, turn off), tells the owner, and a new set
    /// kills the old one.
    #[test]
    fn recovery_codes_work_once_each_and_a_new_set_kills_the_old() {
        let t = now();
        let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
        let owner = Actor::Owner(ADDR.into());
        let dev = m.enable_2fa(&owner, ADDR, t).unwrap();
        let secret = super::super::testing::device_secret(&dev);
        let on = m
            .confirm_device(&owner, ADDR, &secret.code_at(t).unwrap(), t)
            .unwrap();
        let codes: Vec<String> = on
            .recovery_codes
            .iter()
            .map(|c| c.expose().to_owned())
            .collect();
        assert_eq!(codes.len(), 10);
        let id = m.read(ADDR).unwrap().id;
        let stored = m.store.recovery_codes(id).unwrap();
        assert_eq!(stored.len(), 10);
        for (c, s) in codes.iter().zip(&stored) {
            assert!(s.hash.starts_with("$argon2id$"), "only a hash is kept");
            assert!(!s.hash.contains(c.as_str()));
        }
        // Once; typed in capitals without the dashes it is the same code.
        let typed = codes[0].replace('-', "").to_uppercase();
        assert_eq!(m.prove_device(&owner, ADDR, &typed, t).unwrap(), Some(9));
        let again = m.prove_device(&owner, ADDR, &codes[0], t).unwrap_err();
        assert!(
            matches!(again, ManageError::Refused(PolicyError::CodeReused)),
            "{again}"
        );
        let made_up = m
            .prove_device(&owner, ADDR, "abcd-efgh-jkmn", t)
            .unwrap_err();
        assert!(matches!(
            made_up,
            ManageError::Refused(PolicyError::InvalidCode)
        ));
        assert_eq!(
            m.show_mailbox(ADDR, t)
                .unwrap()
                .two_factor
                .recovery_codes_left,
            9
        );
        let told = m.notices(ADDR).unwrap();
        assert!(
            told.notices
                .iter()
                .any(|n| n.said == Some(Said::RecoveryCodeUsed { left: 9 })),
            "the owner is told"
        );
        // The lost phone: a new device on a recovery code.
        m.replace_device(&owner, ADDR, Some((&codes[1]).into()), t)
            .unwrap();
        // A new set: the old unused codes die.
        let renewed = m.renew_recovery_codes(&owner, ADDR, t).unwrap();
        assert_eq!(renewed.len(), 10);
        assert!(m.prove_device(&owner, ADDR, &codes[2], t).is_err());
        // Turned off with one of the new set; the codes go with 2FA.
        m.disable_2fa(&owner, ADDR, &renewed[0], &mut yes("unused"), t)
            .unwrap();
        assert!(m.store.recovery_codes(id).unwrap().is_empty());
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
