//! App passwords ("password per programmi di posta"): generate, regenerate, postpone,
//! deactivate (one or all), status and list. A mailbox has up to
//! `policy.max_app_passwords`, each with a name and a protocol scope; without a name,
//! an action addresses the only one there is (the seeds' single password).

use jiff::Timestamp;

use super::outcome::{
    AppPasswordList, AppPasswordStatus, AppPasswordView, Deactivated, NewAppPassword, NotMe,
    Pinned, Postponed,
};
use super::{Actor, Ask, ManageError, Manager, Record, Warning};
use crate::policy::mailbox::NewAppPassword as Issue;
use crate::policy::notice::Said;
use crate::policy::usage::{self, Credential};
use crate::policy::{Mailbox, PolicyError, ProtocolSet, app_password};
use crate::secret::Secret;
use crate::store::EventAction;

/// What to generate: for `generate`, the name and scope asked for; for `regenerate`,
/// which password (its name and scope are kept unless a scope is given).
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted<'a> {
    /// The password's name.
    pub name: Option<&'a str>,
    /// Its protocols.
    pub scope: Option<ProtocolSet>,
}

impl Manager {
    /// "Attiva" (`regenerate` false): a new app password, shown once; or "Genera nuova
    /// password" (`regenerate` true): a new password in place of an existing one, whose
    /// name and scope it keeps; the old one stops working at once.
    pub fn generate_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        wanted: Wanted<'_>,
        regenerate: bool,
        now: Timestamp,
    ) -> Result<NewAppPassword, ManageError> {
        let s = self.settings.load().policy.clone();
        let issue = |m: &mut Mailbox, selector: String, hash: String| {
            let new = Issue {
                name: wanted.name,
                scope: wanted.scope,
                selector,
                hash,
            };
            let ap = if regenerate {
                m.regenerate_app_password(new, now, &s)?
            } else {
                m.generate_app_password(new, now, &s)?
            };
            Ok::<_, PolicyError>((ap.name.clone(), ap.created_at, ap.expires_at))
        };
        // The rules first, on a copy, before spending a hash; the transaction checks again.
        let mut probe = self.read(address)?;
        let (password, canonical) = fresh_password(&probe)?;
        issue(&mut probe, String::new(), String::new())?;
        let hash = self.hash(&canonical)?;
        let selector = app_password::selector(&canonical);
        drop(canonical);
        let by_operator = actor.is_operator();
        let ((name, created_at, expires_at), m) = self.change(actor, address, now, |_, m| {
            let (name, created, expires) = issue(m, selector, hash)?;
            let record = if regenerate {
                Record::new(EventAction::AppPasswordRegenerate)
                    .detail(name.clone())
                    .notice(Said::AppPasswordRegenerated {
                        name: name.clone(),
                        until: Some(expires),
                        by_operator,
                    })
            } else {
                Record::new(EventAction::AppPasswordGenerate)
                    .detail(name.clone())
                    .notice(Said::AppPasswordGenerated {
                        name: name.clone(),
                        until: Some(expires),
                        by_operator,
                    })
            };
            Ok(((name, created, expires), record))
        })?;
        let scope = m
            .app_passwords
            .iter()
            .find(|a| a.name == name)
            .map_or(ProtocolSet::NONE, |a| a.effective_scope(m.protocols));
        Ok(NewAppPassword {
            address: m.address,
            name,
            scope,
            created_at,
            expires_at,
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
        name: Option<&str>,
        now: Timestamp,
    ) -> Result<Postponed, ManageError> {
        let s = self.settings.load().policy.clone();
        let ((name, expires_at, postponed), m) = self.change(actor, address, now, |_, m| {
            let ap = m.postpone_app_password(name, now, &s)?;
            let (name, expires_at, postponed) = (ap.name.clone(), ap.expires_at, ap.postponed);
            let record = Record::new(EventAction::AppPasswordPostpone)
                .detail(name.clone())
                .notice(Said::AppPasswordPostponed {
                    name: name.clone(),
                    until: expires_at,
                });
            Ok(((name, expires_at, postponed), record))
        })?;
        Ok(Postponed {
            address: m.address,
            name,
            expires_at,
            postponed,
        })
    }

    /// Pins an app password to networks (CIDRs; none: anywhere): a login from elsewhere is
    /// refused like a wrong password on the wire, with the reason in the history, and
    /// sessions from elsewhere end.
    pub fn pin_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        name: Option<&str>,
        networks: Vec<crate::net::Network>,
        now: Timestamp,
    ) -> Result<Pinned, ManageError> {
        let ((name, networks), m) = self.change(actor, address, now, |_, m| {
            let i = m.app_password_index(name)?;
            let ap = &mut m.app_passwords[i];
            ap.networks = networks;
            let shown: Vec<String> = ap.networks.iter().map(ToString::to_string).collect();
            let detail = if shown.is_empty() {
                format!("{}: anywhere", ap.name)
            } else {
                format!("{}: {}", ap.name, shown.join(" "))
            };
            Ok((
                (ap.name.clone(), shown),
                Record::new(EventAction::AppPasswordPin).detail(detail),
            ))
        })?;
        Ok(Pinned {
            address: m.address,
            name,
            networks,
        })
    }

    /// "Disattiva": after confirmation, mail programs using that app password (or, with
    /// `all`, any of them) lose access at once.
    pub fn deactivate_app_password(
        &mut self,
        actor: &Actor,
        address: &str,
        name: Option<&str>,
        all: bool,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<Deactivated, ManageError> {
        let mut probe = self.read(address)?;
        if all {
            probe.deactivate_all_app_passwords()?;
        } else {
            probe.deactivate_app_password(name)?;
        }
        ask.confirm(&Warning::DeactivateAppPassword)?;
        let (deactivated, m) = self.change(actor, address, now, |_, m| {
            let names = if all {
                m.deactivate_all_app_passwords()?
            } else {
                vec![m.deactivate_app_password(name)?.name]
            };
            Ok((names.clone(), deactivated_record(actor, names)))
        })?;
        Ok(Deactivated {
            address: m.address,
            deactivated,
            app_password: if m.app_passwords.is_empty() {
                "none"
            } else {
                "some"
            },
        })
    }

    /// The app password a "Non sono stato io" link takes away, as its page shows it
    /// before the button is pressed; `None` when the link does not work (unknown, used,
    /// expired, or its password is gone) — which of these is not said.
    pub fn not_me_link(&self, token: &str, now: Timestamp) -> Result<Option<NotMe>, ManageError> {
        let Some(link) = self.store.not_me_link(&usage::link_hash(token))? else {
            return Ok(None);
        };
        if link.used_at.is_some() || link.expires_at <= now {
            return Ok(None);
        }
        let (Credential::App(id), Some(m)) = (link.credential, self.store.mailbox(&link.address)?)
        else {
            return Ok(None);
        };
        Ok(m.app_passwords.iter().find(|a| a.id == id).map(|a| NotMe {
            address: m.address.clone(),
            name: a.name.clone(),
            alerted_at: link.created_at,
        }))
    }

    /// "Non sono stato io": deactivates the app password the link names at once (its
    /// sessions end), recorded as done by `owner:link`, and spends the link. `None` when
    /// the link does not work (see [`Manager::not_me_link`]); nothing is done then.
    pub fn not_me(&mut self, token: &str, now: Timestamp) -> Result<Option<NotMe>, ManageError> {
        let hash = usage::link_hash(token);
        let Some(found) = self.not_me_link(token, now)? else {
            return Ok(None);
        };
        let actor = Actor::Owner("link".into());
        let gone = || ManageError::Declined {
            code: "link_gone",
            message: "the link no longer works".into(),
        };
        let done = self.change(&actor, &found.address, now, |tx, m| {
            if !tx.spend_not_me_link(&hash, now)? {
                return Err(gone());
            }
            let name = m.deactivate_app_password(Some(&found.name))?.name;
            Ok(((), deactivated_record(&actor, vec![name])))
        });
        match done {
            Ok(_) => Ok(Some(found)),
            Err(ManageError::Declined {
                code: "link_gone", ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One app password's state, expiry and when postponing opens.
    pub fn app_password_status(
        &self,
        address: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> Result<AppPasswordStatus, ManageError> {
        let m = self.read(address)?;
        let view = match (name, m.app_passwords.len()) {
            (None, 0) => AppPasswordView::NONE,
            _ => {
                let i = m.app_password_index(name)?;
                AppPasswordView::of(&m, &m.app_passwords[i], &self.settings.load().policy, now)
            }
        };
        Ok(AppPasswordStatus {
            two_factor: m.two_factor_on(),
            protocols: m.protocols,
            app_password: view,
            address: m.address,
        })
    }

    /// Every app password: name, scope, dates, last use — never the password.
    pub fn list_app_passwords(
        &self,
        address: &str,
        now: Timestamp,
    ) -> Result<AppPasswordList, ManageError> {
        let m = self.read(address)?;
        Ok(AppPasswordList {
            two_factor: m.two_factor_on(),
            limit: self.settings.load().policy.max_app_passwords,
            app_passwords: AppPasswordView::all(&m, &self.settings.load().policy, now),
            address: m.address,
        })
    }
}

/// A new app password whose selector no other password of `m` uses, and its canonical
/// form (what is hashed).
fn fresh_password(m: &Mailbox) -> Result<(Secret, Secret), ManageError> {
    // 20-bit selectors, at most 100 passwords a mailbox: a clash is rare, and retried.
    for _ in 0..64 {
        let password = app_password::generate()?;
        let canonical = app_password::canonical(password.expose()).ok_or_else(|| {
            ManageError::Internal("generated app password is not canonical".into())
        })?;
        if !m.selector_taken(&app_password::selector(&canonical)) {
            return Ok((password, canonical));
        }
    }
    Err(ManageError::Internal(
        "could not draw an unused app password selector".into(),
    ))
}

/// What deactivating app passwords records: the event, and the notice to the owner.
fn deactivated_record(actor: &Actor, names: Vec<String>) -> Record {
    Record::new(EventAction::AppPasswordDeactivate)
        .detail(names.join(", "))
        .notice(Said::AppPasswordsDeactivated {
            names,
            by_operator: actor.is_operator(),
        })
}
