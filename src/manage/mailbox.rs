//! Mailboxes, their settings and their multi-user accounts.

use jiff::Timestamp;

use super::outcome::{
    MailboxList, MailboxView, Migration, NarrowedScope, PasswordChanged, Protocols, Removed,
    UpstreamSecretSet, UserChanged,
};
use super::{Actor, Ask, ManageError, Manager, PasswordFor, Record, Warning, journal};
use crate::policy::names::{normalize_address, normalize_login};
use crate::policy::notice::{NarrowedTo, Said};
use crate::policy::{Mailbox, Plan, PolicyError, Protocol};
use crate::store::EventAction;
use crate::store::sealed::SealKey;

fn contact(c: &str) -> Result<String, PolicyError> {
    normalize_address(c).map_err(|_| PolicyError::BadContact(c.to_owned()))
}

impl Manager {
    fn view(&self, m: &Mailbox, now: Timestamp) -> Result<MailboxView, ManageError> {
        let users = self
            .store
            .users(m.id)?
            .into_iter()
            .map(|u| u.login)
            .collect();
        let mut view = MailboxView::of(m, users, &self.settings.load().policy, now)
            .with_places(m, self.store.places(m.id)?);
        view.deactivated = self.deactivated(m)?;
        if m.two_factor_on() {
            let left = self
                .store
                .recovery_codes(m.id)?
                .iter()
                .filter(|c| c.used_at.is_none())
                .count();
            view.two_factor.recovery_codes_left = u32::try_from(left).unwrap_or(u32::MAX);
        }
        Ok(view)
    }

    /// The app passwords of `m` deactivated (the notices say which, and when), newest
    /// first, that no current one of the same name has replaced; at most ten.
    fn deactivated(
        &self,
        m: &Mailbox,
    ) -> Result<Vec<crate::manage::outcome::DeactivatedView>, ManageError> {
        let mut out: Vec<crate::manage::outcome::DeactivatedView> = Vec::new();
        for n in self.store.notices(&m.address)? {
            let Some(crate::policy::notice::Said::AppPasswordsDeactivated { names, .. }) = n.said
            else {
                continue;
            };
            for name in names {
                let current = m.app_passwords.iter().any(|a| a.name == name);
                if !current && !out.iter().any(|d| d.name == name) && out.len() < 10 {
                    out.push(crate::manage::outcome::DeactivatedView { name, at: n.at });
                }
            }
        }
        Ok(out)
    }

    /// Adds a mailbox: 2FA off, every protocol enabled, not migrating.
    pub fn add_mailbox(
        &mut self,
        actor: &Actor,
        address: &str,
        plan: Plan,
        contact_email: Option<&str>,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<MailboxView, ManageError> {
        let address = normalize_address(address)?;
        let contact_email = contact_email.map(contact).transpose()?;
        if self.store.login(&address)?.is_some() {
            return Err(ManageError::LoginTaken(address));
        }
        let secret = Self::new_password(ask, PasswordFor::NewMailbox)?;
        let hash = self.hash(&secret)?;
        drop(secret);
        let mut m = Mailbox::new(address.clone(), plan, contact_email, hash);
        let mut tx = self.store.begin()?;
        m.id = tx.insert_mailbox(&m, now)?;
        journal(
            &mut *tx,
            actor,
            &address,
            now,
            Record::new(EventAction::MailboxAdd),
            &[],
            &self.settings.load().locale(),
        )?;
        tx.commit()?;
        self.view(&m, now)
    }

    /// Every mailbox, by address.
    pub fn list_mailboxes(&self, now: Timestamp) -> Result<MailboxList, ManageError> {
        let mailboxes = self
            .store
            .mailboxes()?
            .iter()
            .map(|m| self.view(m, now))
            .collect::<Result<_, _>>()?;
        Ok(MailboxList { mailboxes })
    }

    /// The mail domains the store has mailboxes of.
    pub fn mail_domains(&self) -> Result<std::collections::BTreeSet<String>, ManageError> {
        Ok(self.store.mail_domains()?)
    }

    /// One mailbox.
    pub fn show_mailbox(&self, address: &str, now: Timestamp) -> Result<MailboxView, ManageError> {
        self.view(&self.read(address)?, now)
    }

    /// Removes a mailbox and its multi-user accounts, after confirmation; its history,
    /// events and notices stay.
    pub fn remove_mailbox(
        &mut self,
        actor: &Actor,
        address: &str,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<Removed, ManageError> {
        let address = self.read(address)?.address;
        ask.confirm(&Warning::RemoveMailbox {
            address: address.clone(),
        })?;
        let mut tx = self.store.begin()?;
        let m = tx
            .mailbox(&address)?
            .ok_or_else(|| ManageError::NoMailbox(address.clone()))?;
        tx.delete_mailbox(m.id)?;
        journal(
            &mut *tx,
            actor,
            &address,
            now,
            Record::new(EventAction::MailboxRemove),
            &[],
            &self.settings.load().locale(),
        )?;
        tx.commit()?;
        Ok(Removed {
            address,
            removed: true,
        })
    }

    /// Sets the main password of a mailbox, or of one of its multi-user accounts.
    pub fn set_password(
        &mut self,
        actor: &Actor,
        address: &str,
        user: Option<&str>,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<PasswordChanged, ManageError> {
        let m = self.read(address)?;
        let user = user.map(normalize_login).transpose()?;
        let no_user = |login: &str| {
            ManageError::NoLogin(format!(
                "{login} (as a multi-user account of {})",
                m.address
            ))
        };
        if let Some(login) = &user
            && !self.store.users(m.id)?.iter().any(|u| &u.login == login)
        {
            return Err(no_user(login));
        }
        let secret = Self::new_password(ask, PasswordFor::MainPassword)?;
        let hash = self.hash(&secret)?;
        drop(secret);
        let (login, m) = self.change(actor, &m.address, now, |tx, m| match &user {
            Some(login) => {
                if !tx.set_user_password(m.id, login, &hash)? {
                    return Err(no_user(login));
                }
                let record = Record::new(EventAction::MailboxSetPassword)
                    .detail(format!("multi-user account {login}"))
                    .logins_changed();
                Ok((login.clone(), record))
            }
            None => {
                m.password_hash = hash;
                let record =
                    Record::new(EventAction::MailboxSetPassword).notice(Said::MainPasswordChanged);
                Ok((m.address.clone(), record))
            }
        })?;
        Ok(PasswordChanged {
            login,
            changed: true,
            two_factor: m.two_factor_on(),
        })
    }

    /// Sets the secret the proxy logs in upstream with, sealed with the key file.
    pub fn set_upstream_secret(
        &mut self,
        actor: &Actor,
        address: &str,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<UpstreamSecretSet, ManageError> {
        let address = self.read(address)?.address;
        let secret = Self::new_password(ask, PasswordFor::UpstreamSecret)?;
        let key_file = self.settings.load().seal_key.clone();
        let key =
            SealKey::load_or_create(&key_file).map_err(|e| ManageError::Internal(e.to_string()))?;
        let sealed = key
            .seal(&address, &secret)
            .map_err(|e| ManageError::Internal(e.to_string()))?;
        drop(secret);
        self.change(actor, &address, now, |tx, m| {
            tx.set_upstream_secret(m.id, &sealed)?;
            Ok(((), Record::new(EventAction::MailboxSetUpstreamSecret)))
        })?;
        Ok(UpstreamSecretSet {
            address,
            upstream_secret: true,
            key_file,
        })
    }

    /// Changes the plan (the security archive comes with pro and premium).
    pub fn set_plan(
        &mut self,
        actor: &Actor,
        address: &str,
        plan: Plan,
        now: Timestamp,
    ) -> Result<MailboxView, ManageError> {
        let ((), m) = self.change(actor, address, now, |_, m| {
            m.plan = plan;
            Ok((
                (),
                Record::new(EventAction::MailboxSetPlan).detail(plan.as_str()),
            ))
        })?;
        self.view(&m, now)
    }

    /// Changes the contact e-mail notices go to; the owner is told.
    pub fn set_contact(
        &mut self,
        actor: &Actor,
        address: &str,
        email: &str,
        now: Timestamp,
    ) -> Result<MailboxView, ManageError> {
        let email = contact(email)?;
        let ((), m) = self.change(actor, address, now, |_, m| {
            let old = m.contact.replace(email.clone());
            let detail = format!("{} -> {email}", old.as_deref().unwrap_or("-"));
            let notice = Said::ContactChanged {
                old: old.clone(),
                new: email.clone(),
            };
            // Told to the old address too: whoever changed it, its owner learns of it.
            let record = Record::new(EventAction::MailboxSetContact)
                .detail(detail)
                .notice(notice)
                .also_email(old.filter(|o| *o != email));
            Ok(((), record))
        })?;
        self.view(&m, now)
    }

    /// Shows the enabled protocols, and enables or disables some first.
    pub fn protocols(
        &mut self,
        actor: &Actor,
        address: &str,
        enable: &[Protocol],
        disable: &[Protocol],
        now: Timestamp,
    ) -> Result<Protocols, ManageError> {
        if enable.is_empty() && disable.is_empty() {
            let m = self.read(address)?;
            return Ok(Protocols {
                address: m.address,
                protocols: m.protocols,
                narrowed: Vec::new(),
            });
        }
        let names = |ps: &[Protocol]| ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
        let detail = format!("enable [{}] disable [{}]", names(enable), names(disable));
        let (narrowed, m) = self.change(actor, address, now, |_, m| {
            let narrowed = m.set_protocols(enable, disable)?;
            let mut record = Record::new(EventAction::MailboxProtocols).detail(detail);
            // The owner learns which app passwords now work with less, or not at all.
            if !narrowed.is_empty() {
                record = record.notice(Said::ProtocolsNarrowed {
                    passwords: narrowed
                        .iter()
                        .map(|n| NarrowedTo {
                            name: n.name.clone(),
                            scope: if n.scope.is_empty() {
                                String::new()
                            } else {
                                n.scope.to_string()
                            },
                        })
                        .collect(),
                });
            }
            Ok((narrowed, record))
        })?;
        Ok(Protocols {
            address: m.address,
            protocols: m.protocols,
            narrowed: narrowed
                .into_iter()
                .map(|n| NarrowedScope {
                    name: n.name,
                    scope: n.scope,
                })
                .collect(),
        })
    }

    /// Adds a multi-user account: another login name, with its own main password, that
    /// opens the same mailbox.
    pub fn add_user(
        &mut self,
        actor: &Actor,
        address: &str,
        login: &str,
        ask: &mut dyn Ask,
        now: Timestamp,
    ) -> Result<UserChanged, ManageError> {
        let address = self.read(address)?.address;
        let login = normalize_login(login)?;
        if self.store.login(&login)?.is_some() {
            return Err(ManageError::LoginTaken(login));
        }
        let secret = Self::new_password(ask, PasswordFor::UserAccount)?;
        let hash = self.hash(&secret)?;
        drop(secret);
        self.change(actor, &address, now, |tx, m| {
            tx.insert_user(m.id, &login, &hash, now)?;
            // A new name invalidates no cached verification: no version bump.
            let record = Record::new(EventAction::MailboxAddUser).detail(login.clone());
            Ok(((), record))
        })?;
        Ok(UserChanged {
            address,
            login,
            removed: None,
        })
    }

    /// Removes a multi-user account.
    pub fn remove_user(
        &mut self,
        actor: &Actor,
        address: &str,
        login: &str,
        now: Timestamp,
    ) -> Result<UserChanged, ManageError> {
        let login = normalize_login(login)?;
        let ((), m) = self.change(actor, address, now, |tx, m| {
            if !tx.delete_user(m.id, &login)? {
                return Err(ManageError::NoLogin(format!(
                    "{login} (as a multi-user account of {})",
                    m.address
                )));
            }
            let record = Record::new(EventAction::MailboxRemoveUser)
                .detail(login.clone())
                .logins_changed();
            Ok(((), record))
        })?;
        Ok(UserChanged {
            address: m.address,
            login,
            removed: Some(true),
        })
    }

    /// Starts (`true`) or finishes (`false`) a migration; 2FA cannot be turned on
    /// meanwhile.
    pub fn migration(
        &mut self,
        actor: &Actor,
        address: &str,
        start: bool,
        now: Timestamp,
    ) -> Result<Migration, ManageError> {
        let ((), m) = self.change(actor, address, now, |_, m| {
            let action = if start {
                m.start_migration()?;
                EventAction::MailboxMigrationStart
            } else {
                m.finish_migration()?;
                EventAction::MailboxMigrationFinish
            };
            Ok(((), Record::new(action)))
        })?;
        Ok(Migration {
            address: m.address,
            migration: m.migration,
        })
    }
}
