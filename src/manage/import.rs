//! Adopting an existing server's mailboxes without re-entering a password: a Dovecot
//! passwd-file (`user:{SCHEME}hash:…`) or a CSV (`address,plan,contact,hash`) is read
//! with the hashes it already has, checked whole — every bad line reported with its
//! number, and nothing imported unless every line is good — then written in one
//! transaction. A re-run updates what changed instead of adding twice. The imported
//! hashes verify as they are until the first login that proves the password re-hashes
//! it to argon2id (`auth::hash`).

use std::collections::HashMap;

use jiff::Timestamp;

use super::{ManageError, Manager, Record, journal};
use crate::auth::hash::foreign;
use crate::policy::names::normalize_address;
use crate::policy::{Mailbox, Plan};
use crate::store::{Actor, EventAction};

/// The two file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// Dovecot's passwd-file: `user:password:uid:gid:gecos:home:shell:extra`, the
    /// password with its `{SCHEME}`; `#` comments and blank lines skipped.
    Passwd,
    /// `address,plan,contact,hash` with that header line; plan and contact may be empty.
    Csv,
}

/// One good line.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// Its number in the file (from 1).
    pub line: usize,
    /// The mailbox address (normalised).
    pub address: String,
    /// The hash as it will be stored.
    pub hash: String,
    /// The plan, when the file says (CSV).
    pub plan: Option<Plan>,
    /// The contact address, when the file says (CSV).
    pub contact: Option<String>,
}

impl std::fmt::Debug for ImportLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportLine")
            .field("line", &self.line)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Mailboxes added.
    pub added: usize,
    /// Mailboxes whose hash, plan or contact changed.
    pub updated: usize,
    /// Mailboxes already as the file says.
    pub unchanged: usize,
}

/// Reads a whole file: every line good, or every bad line's number and why.
pub fn parse(text: &str, format: ImportFormat) -> Result<Vec<ImportLine>, ManageError> {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    if format == ImportFormat::Csv {
        match lines.next() {
            Some((_, header))
                if header
                    .trim()
                    .eq_ignore_ascii_case("address,plan,contact,hash") => {}
            _ => {
                return Err(ManageError::Import(vec![
                    "line 1: the first line must be the header address,plan,contact,hash".into(),
                ]));
            }
        }
    }
    for (n, raw) in lines {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let parsed = match format {
            ImportFormat::Passwd => passwd_line(line),
            ImportFormat::Csv => csv_line(line),
        };
        match parsed {
            Ok((address, hash, plan, contact)) => {
                if let Some(first) = seen.insert(address.clone(), n) {
                    errors.push(format!("line {n}: {address} is already on line {first}"));
                    continue;
                }
                good.push(ImportLine {
                    line: n,
                    address,
                    hash,
                    plan,
                    contact,
                });
            }
            Err(why) => errors.push(format!("line {n}: {why}")),
        }
    }
    if errors.is_empty() {
        Ok(good)
    } else {
        Err(ManageError::Import(errors))
    }
}

type Parsed = (String, String, Option<Plan>, Option<String>);

fn address(text: &str) -> Result<String, String> {
    normalize_address(text).map_err(|e| e.to_string())
}

fn passwd_line(line: &str) -> Result<Parsed, String> {
    let mut fields = line.split(':');
    let (Some(user), Some(password)) = (fields.next(), fields.next()) else {
        return Err("expected user:{SCHEME}hash[:…]".into());
    };
    let hash = foreign::stored_form(password)?;
    Ok((address(user)?, hash, None, None))
}

fn csv_line(line: &str) -> Result<Parsed, String> {
    // Hashes hold no comma (crypt, PHC and Dovecot's forms are comma-free but for
    // argon2's parameters, which the last column may keep whole).
    let mut fields = line.splitn(4, ',');
    let (Some(addr), Some(plan), Some(contact), Some(hash)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected address,plan,contact,hash".into());
    };
    let plan = match plan.trim() {
        "" => None,
        p => Some(
            p.parse::<Plan>()
                .map_err(|_| format!("{p:?} is not a plan (standard, pro, premium)"))?,
        ),
    };
    let contact = match contact.trim() {
        "" => None,
        c => Some(normalize_address(c).map_err(|_| format!("{c:?} is not a contact address"))?),
    };
    let hash = foreign::stored_form(hash.trim())?;
    Ok((address(addr.trim())?, hash, plan, contact))
}

impl Manager {
    /// Imports `lines` (from [`parse`]) in one transaction: a new address becomes a
    /// mailbox with its hash (plan `plan` unless the line says), an existing one takes
    /// the line's hash, plan and contact where they differ (a new hash is a new password:
    /// its sessions end). Each mailbox added or changed gets an event; the owner is not
    /// sent a notice (nothing changed for them).
    pub fn import(
        &mut self,
        actor: &Actor,
        lines: &[ImportLine],
        plan: Plan,
        now: Timestamp,
    ) -> Result<Imported, ManageError> {
        let locale = self.settings.load().locale();
        if lines.len() > 10_000 {
            self.store.prepare_bulk()?;
        }
        let mut tx = self.store.begin()?;
        let mut out = Imported::default();
        for l in lines {
            // The name's login first (one primary-key read): most lines of a first
            // import are new names.
            let existing = match tx.login(&l.address)? {
                None => None,
                Some(e) if !e.is_user => Some(e.mailbox),
                Some(other) => {
                    return Err(ManageError::Import(vec![format!(
                        "line {}: {} is a multi-user account of {}",
                        l.line, l.address, other.mailbox.address
                    )]));
                }
            };
            let Some(mut m) = existing else {
                let mut m = Mailbox::new(
                    l.address.clone(),
                    l.plan.unwrap_or(plan),
                    l.contact.clone(),
                    l.hash.clone(),
                );
                m.id = tx.insert_mailbox(&m, now)?;
                let record = Record::new(EventAction::MailboxImport).detail("added");
                journal(&mut *tx, actor, &l.address, now, record, &[], &locale)?;
                out.added += 1;
                continue;
            };
            let (fingerprint, contact) = (m.login_fingerprint(), m.contact.clone());
            m.password_hash.clone_from(&l.hash);
            if let Some(p) = l.plan {
                m.plan = p;
            }
            if l.contact.is_some() {
                m.contact.clone_from(&l.contact);
            }
            let logins_changed = m.login_fingerprint() != fingerprint;
            if !logins_changed && m.contact == contact {
                out.unchanged += 1;
                continue;
            }
            if logins_changed {
                m.version += 1;
            }
            tx.save_mailbox(&m, now)?;
            let record = Record::new(EventAction::MailboxImport).detail("updated");
            journal(&mut *tx, actor, &l.address, now, record, &[], &locale)?;
            out.updated += 1;
        }
        tx.commit()?;
        Ok(out)
    }
}
