//! Mailboxes and their login names: the `mailboxes`, `logins`, `app_passwords` and
//! `reminders` tables.

use std::collections::HashMap;

use jiff::Timestamp;

use super::{Conn, Param, Row, params};
use crate::policy::Mailbox;
use crate::policy::app_password::AppPassword;
use crate::policy::mailbox::{Device, DeviceKind};
use crate::store::rows::{AppRow, MailboxRow, ts};
use crate::store::{LoginEntry, StoreError, UserAccount};

/// A mailbox row with its own login's hash. The hash is a correlated subquery, not a
/// join: SQLite marks a join on a bound address as depending on the value bound, so a
/// cached statement would be prepared again on every use (checked with
/// `StatementStatus::RePrepare` in the SQLite backend's tests).
pub(crate) const MAILBOX_SELECT: &str = "SELECT m.id, m.address, m.plan, m.contact, m.protocols, m.migration, \
     m.version, m.device_secret, m.device_last_step, m.device_since, m.pending_secret, \
     m.pending_purpose, m.pending_since, \
     (SELECT l.password_hash FROM logins l WHERE l.mailbox_id = m.id AND l.kind = 'mailbox'), \
     m.passkey_id, m.passkey_key, m.passkey_counter, m.breached_at \
     FROM mailboxes m";

pub(crate) const APP_SELECT: &str = "SELECT id, mailbox_id, name, selector, scope, hash, created_at, \
     expires_at, postponed, last_used_at, last_client, last_protocol, last_listener, \
     next_reminder_at, networks, last_software FROM app_passwords";

fn mailbox_row(r: &dyn Row) -> Result<MailboxRow, StoreError> {
    Ok(MailboxRow {
        id: r.get(0)?,
        address: r.get(1)?,
        plan: r.get(2)?,
        contact: r.get(3)?,
        protocols: r.get(4)?,
        migration: r.get(5)?,
        version: r.get(6)?,
        device: (r.get(7)?, r.get(8)?, r.get(9)?),
        pending: (r.get(10)?, r.get(11)?, r.get(12)?),
        password_hash: r.get(13)?,
        passkey: (r.get(14)?, r.get(15)?, r.get(16)?),
        breached_at: r.get(17)?,
    })
}

fn app_row(r: &dyn Row) -> Result<AppRow, StoreError> {
    Ok(AppRow {
        id: r.get(0)?,
        mailbox_id: r.get(1)?,
        name: r.get(2)?,
        selector: r.get(3)?,
        scope: r.get(4)?,
        hash: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        postponed: r.get(8)?,
        last: (r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?),
        next_reminder_at: r.get(13)?,
        networks: r.get(14)?,
        last_software: r.get(15)?,
    })
}

/// The app passwords of one mailbox (`Some`) or of all (`None`), with their mailbox ids,
/// in id order.
fn app_passwords(
    c: &dyn Conn,
    mailbox_id: Option<i64>,
) -> Result<Vec<(i64, AppPassword)>, StoreError> {
    let mut rows = match mailbox_id {
        // Sorted here, not by SQL: SQLite ties an ORDER BY over this table's indexes to
        // the value bound, and would prepare the cached statement again on every use.
        Some(id) => c.rows(
            &format!("{APP_SELECT} WHERE mailbox_id = ?1"),
            params![id],
            app_row,
        )?,
        None => c.rows(&format!("{APP_SELECT} ORDER BY id"), &[], app_row)?,
    };
    rows.sort_by_key(|r| r.id);
    rows.into_iter().map(AppRow::into_app_password).collect()
}

/// The mailbox `condition` (on `m`, with `?1`) selects, with its app passwords.
fn where_one(c: &dyn Conn, condition: &str, key: Param) -> Result<Option<Mailbox>, StoreError> {
    let sql = format!("{MAILBOX_SELECT} WHERE {condition}");
    let Some(mut m) = c
        .row(&sql, &[key], mailbox_row)?
        .map(MailboxRow::into_mailbox)
        .transpose()?
    else {
        return Ok(None);
    };
    m.app_passwords = app_passwords(c, Some(m.id))?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    Ok(Some(m))
}

pub(crate) fn by_address(c: &dyn Conn, address: &str) -> Result<Option<Mailbox>, StoreError> {
    where_one(c, "m.address = ?1", address.into())
}

pub(crate) fn all(c: &dyn Conn) -> Result<Vec<Mailbox>, StoreError> {
    let rows = c.rows(
        &format!("{MAILBOX_SELECT} ORDER BY m.address"),
        &[],
        mailbox_row,
    )?;
    let mut apps: HashMap<i64, Vec<AppPassword>> = HashMap::new();
    for (mailbox_id, ap) in app_passwords(c, None)? {
        apps.entry(mailbox_id).or_default().push(ap);
    }
    rows.into_iter()
        .map(|row| {
            let mut m = row.into_mailbox()?;
            m.app_passwords = apps.remove(&m.id).unwrap_or_default();
            Ok(m)
        })
        .collect()
}

/// Inserts `m` and its own login name; a name already in use (as a mailbox or a user of
/// one) is [`StoreError::LoginTaken`], and the transaction stays usable.
pub(crate) fn insert(c: &dyn Conn, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError> {
    let taken = || StoreError::LoginTaken(m.address.clone());
    let id: i64 = c
        .one(
            "INSERT INTO mailboxes (address, plan, contact, protocols, migration, version, \
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (address) DO NOTHING RETURNING id",
            params![
                &m.address,
                m.plan.as_str(),
                m.contact.as_deref(),
                i64::from(m.protocols.bits()),
                m.migration,
                m.version,
                now
            ],
        )?
        .ok_or_else(taken)?;
    let n = c.execute(
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) \
         VALUES (?1, ?2, 'mailbox', ?3, ?4) ON CONFLICT (login) DO NOTHING",
        params![&m.address, id, &m.password_hash, now],
    )?;
    if n == 0 {
        return Err(taken());
    }
    // The rest of the row (2FA device, app passwords) only when there is any: a new
    // mailbox usually has none, and an import adds a million of them.
    if m.device.is_some() || m.pending_device.is_some() || !m.app_passwords.is_empty() {
        save(c, &Mailbox { id, ..m.clone() }, now)?;
    }
    Ok(id)
}

/// The serial of a login's password moves when its hash changes (sessions opened with
/// the old one end).
const NEXT_SERIAL: &str = "password_serial + CASE WHEN password_hash = ?2 THEN 0 ELSE 1 END";

pub(crate) fn save(c: &dyn Conn, m: &Mailbox, now: Timestamp) -> Result<(), StoreError> {
    let (dev_secret, dev_step, dev_since) = match &m.device {
        Some(Device {
            kind: DeviceKind::App { secret, last_step },
            associated_at,
        }) => (
            Some(secret.as_bytes()),
            last_step.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            Some(*associated_at),
        ),
        Some(d) => (None, None, Some(d.associated_at)),
        None => (None, None, None),
    };
    let passkey = m.device.as_ref().and_then(Device::passkey);
    let (pend_secret, pend_purpose, pend_since) = match &m.pending_device {
        Some(p) => (
            Some(p.secret.as_bytes()),
            Some(p.purpose.as_str()),
            Some(p.since),
        ),
        None => (None, None, None),
    };
    c.execute(
        "UPDATE mailboxes SET plan = ?2, contact = ?3, protocols = ?4, migration = ?5, \
         version = ?6, updated_at = ?7, device_secret = ?8, device_last_step = ?9, \
         device_since = ?10, pending_secret = ?11, pending_purpose = ?12, pending_since = ?13, \
         passkey_id = ?14, passkey_key = ?15, passkey_counter = ?16 WHERE id = ?1",
        params![
            m.id,
            m.plan.as_str(),
            m.contact.as_deref(),
            i64::from(m.protocols.bits()),
            m.migration,
            m.version,
            now,
            dev_secret,
            dev_step,
            dev_since,
            pend_secret,
            pend_purpose,
            pend_since,
            passkey.map(|p| p.id.as_slice()),
            passkey.map(|p| p.public_key.as_slice()),
            passkey.map(|p| i64::from(p.counter))
        ],
    )?;
    // A new main password is not known breached (a login proving it checks it again).
    c.execute(
        "UPDATE mailboxes SET breached_at = NULL WHERE id = ?1 AND breached_at IS NOT NULL \
         AND EXISTS (SELECT 1 FROM logins WHERE mailbox_id = ?1 AND kind = 'mailbox' \
         AND password_hash <> ?2)",
        params![m.id, &m.password_hash],
    )?;
    c.execute(
        &format!(
            "UPDATE logins SET password_serial = {NEXT_SERIAL}, password_hash = ?2 \
             WHERE mailbox_id = ?1 AND kind = 'mailbox'"
        ),
        params![m.id, &m.password_hash],
    )?;
    save_app_passwords(c, m)
}

/// Marks the main password of a mailbox as breached, if it is still the one proven
/// (`hash`) and not marked yet; the change feed carries it to every login path. Returns
/// whether it marked it.
pub(crate) fn mark_breached(
    c: &dyn Conn,
    mailbox_id: i64,
    hash: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE mailboxes SET breached_at = ?3 WHERE id = ?1 AND breached_at IS NULL \
         AND EXISTS (SELECT 1 FROM logins WHERE mailbox_id = ?1 AND kind = 'mailbox' \
         AND password_hash = ?2)",
        params![mailbox_id, hash, at],
    )?;
    if n == 0 {
        return Ok(false);
    }
    super::feed::record(c, mailbox_id)?;
    Ok(true)
}

/// Makes the stored app passwords of `m` what `m` holds: removed ones deleted, changed
/// ones updated, new ones (id 0) inserted. The last use is the login path's to write.
fn save_app_passwords(c: &dyn Conn, m: &Mailbox) -> Result<(), StoreError> {
    for (_, stored) in app_passwords(c, Some(m.id))? {
        if !m.app_passwords.iter().any(|a| a.id == stored.id) {
            c.execute(
                "DELETE FROM app_passwords WHERE id = ?1",
                params![stored.id],
            )?;
            c.execute(
                "DELETE FROM usage_places WHERE mailbox_id = ?1 AND credential = ?2",
                params![m.id, stored.id],
            )?;
        }
    }
    for a in &m.app_passwords {
        let scope = a.scope.map(|s| i64::from(s.bits()));
        let networks = (!a.networks.is_empty()).then(|| {
            a.networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        });
        let p = params![
            if a.id == 0 { m.id } else { a.id },
            &a.name,
            a.selector.as_deref(),
            scope,
            &a.hash,
            a.created_at,
            a.expires_at,
            i64::from(a.postponed),
            a.next_reminder_at,
            networks.as_deref()
        ];
        if a.id == 0 {
            c.execute(
                "INSERT INTO app_passwords (mailbox_id, name, selector, scope, hash, created_at, \
                 expires_at, postponed, next_reminder_at, networks) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                p,
            )?;
        } else {
            c.execute(
                "UPDATE app_passwords SET name = ?2, selector = ?3, scope = ?4, hash = ?5, \
                 created_at = ?6, expires_at = ?7, postponed = ?8, next_reminder_at = ?9, \
                 networks = ?10 WHERE id = ?1",
                p,
            )?;
        }
    }
    Ok(())
}

pub(crate) fn delete(c: &dyn Conn, mailbox_id: i64) -> Result<(), StoreError> {
    c.execute("DELETE FROM mailboxes WHERE id = ?1", params![mailbox_id])?;
    Ok(())
}

pub(crate) fn insert_user(
    c: &dyn Conn,
    mailbox_id: i64,
    login: &str,
    password_hash: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let n = c.execute(
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) \
         VALUES (?1, ?2, 'user', ?3, ?4) ON CONFLICT (login) DO NOTHING",
        params![login, mailbox_id, password_hash, now],
    )?;
    if n == 0 {
        return Err(StoreError::LoginTaken(login.to_owned()));
    }
    Ok(())
}

pub(crate) fn set_user_password(
    c: &dyn Conn,
    mailbox_id: i64,
    login: &str,
    password_hash: &str,
) -> Result<bool, StoreError> {
    let n = c.execute(
        &format!(
            "UPDATE logins SET password_serial = {NEXT_SERIAL}, password_hash = ?2 \
             WHERE login = ?1 AND mailbox_id = ?3 AND kind = 'user'"
        ),
        params![login, password_hash, mailbox_id],
    )?;
    Ok(n > 0)
}

pub(crate) fn delete_user(c: &dyn Conn, mailbox_id: i64, login: &str) -> Result<bool, StoreError> {
    let n = c.execute(
        "DELETE FROM logins WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
        params![login, mailbox_id],
    )?;
    Ok(n > 0)
}

pub(crate) fn users(c: &dyn Conn, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError> {
    c.rows(
        "SELECT login, created_at FROM logins WHERE mailbox_id = ?1 AND kind = 'user' \
         ORDER BY login",
        params![mailbox_id],
        |r| {
            Ok(UserAccount {
                login: r.get(0)?,
                created_at: ts(r.get(1)?)?,
            })
        },
    )
}

/// A login name's row: its mailbox id, hash, kind and serial.
struct LoginRow {
    login: String,
    mailbox_id: i64,
    password_hash: String,
    is_user: bool,
    password_serial: i64,
}

fn login_row(r: &dyn Row) -> Result<LoginRow, StoreError> {
    Ok(LoginRow {
        login: r.get(0)?,
        mailbox_id: r.get(1)?,
        password_hash: r.get(2)?,
        is_user: r.get::<String>(3)? == "user",
        password_serial: r.get(4)?,
    })
}

const LOGIN_SELECT: &str =
    "SELECT login, mailbox_id, password_hash, kind, password_serial FROM logins";

impl LoginRow {
    fn entry(self, mailbox: Mailbox) -> LoginEntry {
        LoginEntry {
            login: self.login,
            mailbox,
            password_hash: self.password_hash,
            password_serial: self.password_serial,
            is_user: self.is_user,
        }
    }
}

pub(crate) fn login(c: &dyn Conn, login: &str) -> Result<Option<LoginEntry>, StoreError> {
    let Some(row) = c.row(
        &format!("{LOGIN_SELECT} WHERE login = ?1"),
        params![login],
        login_row,
    )?
    else {
        return Ok(None);
    };
    let id = row.mailbox_id;
    let mailbox = where_one(c, "m.id = ?1", id.into())?
        .ok_or_else(|| StoreError::Corrupt(format!("login {login}: no mailbox {id}")))?;
    Ok(Some(row.entry(mailbox)))
}

/// The login names of one mailbox, with it (none if it is gone): two indexed reads.
pub(crate) fn principals_of(c: &dyn Conn, mailbox_id: i64) -> Result<Vec<LoginEntry>, StoreError> {
    let Some(mailbox) = where_one(c, "m.id = ?1", mailbox_id.into())? else {
        return Ok(Vec::new());
    };
    Ok(c.rows(
        &format!("{LOGIN_SELECT} WHERE mailbox_id = ?1"),
        params![mailbox_id],
        login_row,
    )?
    .into_iter()
    .map(|row| row.entry(mailbox.clone()))
    .collect())
}

/// The mailboxes with an app-password reminder due at `now`, at most `limit`.
pub(crate) fn due_reminders(
    c: &dyn Conn,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    c.rows(
        "SELECT DISTINCT m.address FROM app_passwords a JOIN mailboxes m ON m.id = a.mailbox_id \
         WHERE a.next_reminder_at IS NOT NULL AND a.next_reminder_at <= ?1 LIMIT ?2",
        params![now, limit],
        |r| r.get(0),
    )
}

/// The domains of every mailbox's address (one pass over the addresses).
pub(crate) fn mail_domains(c: &dyn Conn) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    c.query("SELECT address FROM mailboxes", &[], &mut |r| {
        if let Some((_, domain)) = r.get::<String>(0)?.rsplit_once('@')
            && !out.contains(domain)
        {
            out.insert(domain.to_owned());
        }
        Ok(())
    })?;
    Ok(out)
}

/// Claims one reminder; `false` if it was claimed before (by any process).
pub(crate) fn claim_reminder(
    c: &dyn Conn,
    app_password_id: i64,
    expires_at: Timestamp,
    milestone: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "INSERT INTO reminders (app_password_id, expires_at, milestone, at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![app_password_id, expires_at, milestone, now],
    )?;
    Ok(n == 1)
}

pub(crate) fn set_next_reminder(
    c: &dyn Conn,
    app_password_id: i64,
    at: Option<Timestamp>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE app_passwords SET next_reminder_at = ?2 WHERE id = ?1",
        params![app_password_id, at],
    )?;
    Ok(())
}

/// Replaces a login's main password hash by a re-hash of the same password (argon2id at
/// the configured cost), if it is still `old` (a password set meanwhile wins): the serial
/// stays, so no session ends; the feed names the mailbox, so every cache takes the new
/// hash. Returns whether it was replaced.
pub(crate) fn rehash(c: &dyn Conn, login: &str, old: &str, new: &str) -> Result<bool, StoreError> {
    let Some(mailbox_id) = c.one::<i64>(
        "UPDATE logins SET password_hash = ?3 WHERE login = ?1 AND password_hash = ?2 \
         RETURNING mailbox_id",
        params![login, old, new],
    )?
    else {
        return Ok(false);
    };
    super::feed::record(c, mailbox_id)?;
    Ok(true)
}
