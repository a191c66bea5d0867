//! Mailboxes and their login names: the `mailboxes` and `logins` tables.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{is_unique_violation, secs, ts};
use crate::policy::app_password::AppPassword;
use crate::policy::mailbox::{Device, PendingDevice};
use crate::policy::totp::DeviceSecret;
use crate::policy::{Mailbox, Plan, ProtocolSet};
use crate::store::{LoginEntry, StoreError, UserAccount};

const MAILBOX_COLUMNS: &str = "m.id, m.address, m.plan, m.contact, m.protocols, m.migration, m.version, \
     m.device_secret, m.device_last_step, m.device_since, m.pending_secret, m.pending_purpose, m.pending_since, \
     m.app_hash, m.app_created_at, m.app_expires_at, m.app_postponed, l.password_hash";

const MAILBOX_FROM: &str =
    "FROM mailboxes m JOIN logins l ON l.mailbox_id = m.id AND l.kind = 'mailbox'";

/// The raw columns of one mailbox row, read inside rusqlite's row closure and converted
/// outside it, where our own error type can be used.
struct MailboxRow {
    id: i64,
    address: String,
    plan: String,
    contact: Option<String>,
    protocols: i64,
    migration: bool,
    version: i64,
    device: (Option<Vec<u8>>, Option<i64>, Option<i64>),
    pending: (Option<Vec<u8>>, Option<String>, Option<i64>),
    app: (Option<String>, Option<i64>, Option<i64>, i64),
    password_hash: String,
}

impl MailboxRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
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
            app: (r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
            password_hash: r.get(17)?,
        })
    }

    fn into_mailbox(self) -> Result<Mailbox, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("mailbox {}: {what}", self.address));
        let plan: Plan = self.plan.parse().map_err(|_| corrupt("plan"))?;
        let protocols =
            ProtocolSet::from_bits(u8::try_from(self.protocols).map_err(|_| corrupt("protocols"))?);
        let device = match self.device {
            (Some(secret), last, Some(since)) => Some(Device {
                secret: DeviceSecret::from_bytes(secret),
                last_step: last
                    .map(|s| u64::try_from(s).map_err(|_| corrupt("device_last_step")))
                    .transpose()?,
                associated_at: ts(since)?,
            }),
            (None, _, _) => None,
            _ => return Err(corrupt("device")),
        };
        let pending_device = match self.pending {
            (Some(secret), Some(purpose), Some(since)) => Some(PendingDevice {
                secret: DeviceSecret::from_bytes(secret),
                purpose: purpose.parse()?,
                since: ts(since)?,
            }),
            (None, _, _) => None,
            _ => return Err(corrupt("pending device")),
        };
        let app_password = match self.app {
            (Some(hash), Some(created), Some(expires), postponed) => Some(AppPassword {
                hash,
                created_at: ts(created)?,
                expires_at: ts(expires)?,
                postponed: u32::try_from(postponed).map_err(|_| corrupt("app_postponed"))?,
            }),
            (None, _, _, _) => None,
            _ => return Err(corrupt("app password")),
        };
        Ok(Mailbox {
            id: self.id,
            address: self.address,
            plan,
            contact: self.contact,
            protocols,
            migration: self.migration,
            password_hash: self.password_hash,
            device,
            pending_device,
            app_password,
            version: self.version,
        })
    }
}

fn where_one(
    conn: &Connection,
    condition: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<Mailbox>, StoreError> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} {MAILBOX_FROM} WHERE {condition}");
    conn.prepare_cached(&sql)?
        .query_row([key], MailboxRow::read)
        .optional()?
        .map(MailboxRow::into_mailbox)
        .transpose()
}

pub(super) fn by_address(conn: &Connection, address: &str) -> Result<Option<Mailbox>, StoreError> {
    where_one(conn, "m.address = ?1", &address)
}

pub(super) fn all(conn: &Connection) -> Result<Vec<Mailbox>, StoreError> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} {MAILBOX_FROM} ORDER BY m.address");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([], MailboxRow::read)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(MailboxRow::into_mailbox).collect()
}

pub(super) fn insert(conn: &Connection, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError> {
    let inserted = conn.execute(
        "INSERT INTO mailboxes (address, plan, contact, protocols, migration, version, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![m.address, m.plan.as_str(), m.contact, i64::from(m.protocols.bits()), m.migration, m.version, secs(now)],
    );
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::LoginTaken(m.address.clone())),
        other => other?,
    };
    let id = conn.last_insert_rowid();
    let login = conn.execute(
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, ?2, 'mailbox', ?3, ?4)",
        params![m.address, id, m.password_hash, secs(now)],
    );
    match login {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::LoginTaken(m.address.clone())),
        other => other?,
    };
    save(conn, &Mailbox { id, ..m.clone() }, now)?;
    Ok(id)
}

pub(super) fn save(conn: &Connection, m: &Mailbox, now: Timestamp) -> Result<(), StoreError> {
    let (dev_secret, dev_step, dev_since) = match &m.device {
        Some(d) => (
            Some(d.secret.as_bytes()),
            d.last_step.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            Some(secs(d.associated_at)),
        ),
        None => (None, None, None),
    };
    let (pend_secret, pend_purpose, pend_since) = match &m.pending_device {
        Some(p) => (
            Some(p.secret.as_bytes()),
            Some(p.purpose.as_str()),
            Some(secs(p.since)),
        ),
        None => (None, None, None),
    };
    let (app_hash, app_created, app_expires, app_postponed) = match &m.app_password {
        Some(a) => (
            Some(a.hash.as_str()),
            Some(secs(a.created_at)),
            Some(secs(a.expires_at)),
            i64::from(a.postponed),
        ),
        None => (None, None, None, 0),
    };
    conn.prepare_cached(
        "UPDATE mailboxes SET plan = ?2, contact = ?3, protocols = ?4, migration = ?5, version = ?6, updated_at = ?7, \
         device_secret = ?8, device_last_step = ?9, device_since = ?10, \
         pending_secret = ?11, pending_purpose = ?12, pending_since = ?13, \
         app_hash = ?14, app_created_at = ?15, app_expires_at = ?16, app_postponed = ?17 WHERE id = ?1",
    )?
    .execute(params![
        m.id,
        m.plan.as_str(),
        m.contact,
        i64::from(m.protocols.bits()),
        m.migration,
        m.version,
        secs(now),
        dev_secret,
        dev_step,
        dev_since,
        pend_secret,
        pend_purpose,
        pend_since,
        app_hash,
        app_created,
        app_expires,
        app_postponed
    ])?;
    conn.prepare_cached(
        "UPDATE logins SET password_hash = ?2 WHERE mailbox_id = ?1 AND kind = 'mailbox'",
    )?
    .execute(params![m.id, m.password_hash])?;
    Ok(())
}

pub(super) fn delete(conn: &Connection, mailbox_id: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM mailboxes WHERE id = ?1", [mailbox_id])?;
    Ok(())
}

pub(super) fn insert_user(
    conn: &Connection,
    mailbox_id: i64,
    login: &str,
    password_hash: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let inserted = conn.execute(
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, ?2, 'user', ?3, ?4)",
        params![login, mailbox_id, password_hash, secs(now)],
    );
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(StoreError::LoginTaken(login.to_owned())),
        other => other.map(drop).map_err(StoreError::from),
    }
}

pub(super) fn set_user_password(
    conn: &Connection,
    mailbox_id: i64,
    login: &str,
    password_hash: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE logins SET password_hash = ?3 WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
        params![login, mailbox_id, password_hash],
    )?;
    Ok(n > 0)
}

pub(super) fn delete_user(
    conn: &Connection,
    mailbox_id: i64,
    login: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM logins WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
        params![login, mailbox_id],
    )?;
    Ok(n > 0)
}

pub(super) fn users(conn: &Connection, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT login, created_at FROM logins WHERE mailbox_id = ?1 AND kind = 'user' ORDER BY login",
    )?;
    let rows = stmt
        .query_map([mailbox_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(login, at)| {
            Ok(UserAccount {
                login,
                created_at: ts(at)?,
            })
        })
        .collect()
}

pub(super) fn login(conn: &Connection, login: &str) -> Result<Option<LoginEntry>, StoreError> {
    let row = conn
        .prepare_cached("SELECT mailbox_id, password_hash, kind FROM logins WHERE login = ?1")?
        .query_row([login], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    let Some((id, password_hash, kind)) = row else {
        return Ok(None);
    };
    let mailbox = where_one(conn, "m.id = ?1", &id)?
        .ok_or_else(|| StoreError::Corrupt(format!("login {login}: no mailbox {id}")))?;
    Ok(Some(LoginEntry {
        login: login.to_owned(),
        mailbox,
        password_hash,
        is_user: kind == "user",
    }))
}

pub(super) fn principals(conn: &Connection) -> Result<Vec<LoginEntry>, StoreError> {
    let mailboxes: std::collections::HashMap<i64, Mailbox> =
        all(conn)?.into_iter().map(|m| (m.id, m)).collect();
    let mut stmt =
        conn.prepare_cached("SELECT login, mailbox_id, password_hash, kind FROM logins")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(login, id, password_hash, kind)| {
            mailboxes.get(&id).map(|m| LoginEntry {
                login,
                mailbox: m.clone(),
                password_hash,
                is_user: kind == "user",
            })
        })
        .collect())
}
