//! Mailboxes and their login names: the `mailboxes` and `logins` tables.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{is_unique_violation, secs, ts};
use crate::policy::Mailbox;
use crate::policy::app_password::AppPassword;
use crate::store::rows::{AppRow, MailboxRow};
use crate::store::{LoginEntry, StoreError, UserAccount};

/// A mailbox row with its own login's hash. The hash is a correlated subquery, not a
/// join: SQLite marks a join on a bound address as depending on the value bound, so a
/// cached statement would be prepared again on every use (checked with
/// `StatementStatus::RePrepare` in the tests below).
const MAILBOX_COLUMNS: &str = "m.id, m.address, m.plan, m.contact, m.protocols, m.migration, m.version, \
     m.device_secret, m.device_last_step, m.device_since, m.pending_secret, m.pending_purpose, m.pending_since, \
     (SELECT l.password_hash FROM logins l WHERE l.mailbox_id = m.id AND l.kind = 'mailbox')";

const APP_COLUMNS: &str = "id, mailbox_id, name, selector, scope, hash, created_at, expires_at, postponed, \
     last_used_at, last_client, last_protocol, last_listener, next_reminder_at";

const MAILBOX_FROM: &str = "FROM mailboxes m";

fn mailbox_row(r: &Row<'_>) -> rusqlite::Result<MailboxRow> {
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
    })
}

fn app_row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
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
    })
}

/// The app passwords of one mailbox (`Some`) or of all (`None`), with their mailbox ids.
fn app_passwords(
    conn: &Connection,
    mailbox_id: Option<i64>,
) -> Result<Vec<(i64, AppPassword)>, StoreError> {
    let rows = match mailbox_id {
        // Sorted here, not by SQL: SQLite ties an ORDER BY over this table's indexes to
        // the value bound, and would prepare the cached statement again on every use.
        Some(id) => {
            let mut rows = conn
                .prepare_cached(&format!(
                    "SELECT {APP_COLUMNS} FROM app_passwords WHERE mailbox_id = ?1"
                ))?
                .query_map([id], app_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|r| r.id);
            rows
        }
        None => conn
            .prepare_cached(&format!(
                "SELECT {APP_COLUMNS} FROM app_passwords ORDER BY id"
            ))?
            .query_map([], app_row)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    rows.into_iter().map(AppRow::into_app_password).collect()
}

fn where_one(
    conn: &Connection,
    condition: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<Mailbox>, StoreError> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} {MAILBOX_FROM} WHERE {condition}");
    let Some(mut m) = conn
        .prepare_cached(&sql)?
        .query_row([key], mailbox_row)
        .optional()?
        .map(MailboxRow::into_mailbox)
        .transpose()?
    else {
        return Ok(None);
    };
    m.app_passwords = app_passwords(conn, Some(m.id))?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    Ok(Some(m))
}

pub(super) fn by_address(conn: &Connection, address: &str) -> Result<Option<Mailbox>, StoreError> {
    where_one(conn, "m.address = ?1", &address)
}

pub(super) fn all(conn: &Connection) -> Result<Vec<Mailbox>, StoreError> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} {MAILBOX_FROM} ORDER BY m.address");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([], mailbox_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut apps: std::collections::HashMap<i64, Vec<AppPassword>> =
        std::collections::HashMap::new();
    for (mailbox_id, ap) in app_passwords(conn, None)? {
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

pub(super) fn insert(conn: &Connection, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO mailboxes (address, plan, contact, protocols, migration, version, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![m.address, m.plan.as_str(), m.contact, i64::from(m.protocols.bits()), m.migration, m.version, secs(now)]);
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::LoginTaken(m.address.clone())),
        other => other?,
    };
    let id = conn.last_insert_rowid();
    let login = conn
        .prepare_cached(
            "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, ?2, 'mailbox', ?3, ?4)",
        )?
        .execute(params![m.address, id, m.password_hash, secs(now)]);
    match login {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::LoginTaken(m.address.clone())),
        other => other?,
    };
    // The rest of the row (2FA device, app passwords) only when there is any: a new
    // mailbox usually has none, and an import adds a million of them.
    if m.device.is_some() || m.pending_device.is_some() || !m.app_passwords.is_empty() {
        save(conn, &Mailbox { id, ..m.clone() }, now)?;
    }
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
    conn.prepare_cached(
        "UPDATE mailboxes SET plan = ?2, contact = ?3, protocols = ?4, migration = ?5, version = ?6, updated_at = ?7, \
         device_secret = ?8, device_last_step = ?9, device_since = ?10, \
         pending_secret = ?11, pending_purpose = ?12, pending_since = ?13 WHERE id = ?1",
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
        pend_since
    ])?;
    conn.prepare_cached(
        "UPDATE logins SET password_serial = password_serial + (password_hash IS NOT ?2), \
         password_hash = ?2 WHERE mailbox_id = ?1 AND kind = 'mailbox'",
    )?
    .execute(params![m.id, m.password_hash])?;
    save_app_passwords(conn, m)
}

/// Makes the stored app passwords of `m` what `m` holds: removed ones deleted, changed
/// ones updated, new ones (id 0) inserted. The last use is the login path's to write.
fn save_app_passwords(conn: &Connection, m: &Mailbox) -> Result<(), StoreError> {
    for (_, stored) in app_passwords(conn, Some(m.id))? {
        if !m.app_passwords.iter().any(|a| a.id == stored.id) {
            conn.prepare_cached("DELETE FROM app_passwords WHERE id = ?1")?
                .execute([stored.id])?;
        }
    }
    for a in &m.app_passwords {
        let scope = a.scope.map(|s| i64::from(s.bits()));
        let next = a.next_reminder_at.map(secs);
        let (created, expires, postponed) = (
            secs(a.created_at),
            secs(a.expires_at),
            i64::from(a.postponed),
        );
        if a.id == 0 {
            conn.prepare_cached(
                "INSERT INTO app_passwords (mailbox_id, name, selector, scope, hash, created_at, expires_at, postponed, \
                 next_reminder_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![m.id, a.name, a.selector, scope, a.hash, created, expires, postponed, next])?;
        } else {
            conn.prepare_cached(
                "UPDATE app_passwords SET name = ?2, selector = ?3, scope = ?4, hash = ?5, created_at = ?6, \
                 expires_at = ?7, postponed = ?8, next_reminder_at = ?9 WHERE id = ?1",
            )?
            .execute(params![a.id, a.name, a.selector, scope, a.hash, created, expires, postponed, next])?;
        }
    }
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
        "UPDATE logins SET password_serial = password_serial + (password_hash IS NOT ?3), \
         password_hash = ?3 WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
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
        .prepare_cached(
            "SELECT mailbox_id, password_hash, kind, password_serial FROM logins WHERE login = ?1",
        )?
        .query_row([login], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((id, password_hash, kind, password_serial)) = row else {
        return Ok(None);
    };
    let mailbox = where_one(conn, "m.id = ?1", &id)?
        .ok_or_else(|| StoreError::Corrupt(format!("login {login}: no mailbox {id}")))?;
    Ok(Some(LoginEntry {
        login: login.to_owned(),
        mailbox,
        password_hash,
        password_serial,
        is_user: kind == "user",
    }))
}

/// The login names of one mailbox, with it (none if it is gone): two indexed reads.
pub(super) fn principals_of(
    conn: &Connection,
    mailbox_id: i64,
) -> Result<Vec<LoginEntry>, StoreError> {
    let Some(mailbox) = where_one(conn, "m.id = ?1", &mailbox_id)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT login, password_hash, kind, password_serial FROM logins WHERE mailbox_id = ?1",
    )?;
    let rows = stmt
        .query_map([mailbox_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(login, password_hash, kind, password_serial)| LoginEntry {
            login,
            mailbox: mailbox.clone(),
            password_hash,
            password_serial,
            is_user: kind == "user",
        })
        .collect())
}

/// The mailboxes with an app-password reminder due at `now`, at most `limit`.
pub(super) fn due_reminders(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT m.address FROM app_passwords a JOIN mailboxes m ON m.id = a.mailbox_id \
         WHERE a.next_reminder_at IS NOT NULL AND a.next_reminder_at <= ?1 LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![secs(now), limit], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

/// Claims one reminder; `false` if it was claimed before (by any process).
pub(super) fn claim_reminder(
    conn: &Connection,
    app_password_id: i64,
    expires_at: Timestamp,
    milestone: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO reminders (app_password_id, expires_at, milestone, at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![app_password_id, secs(expires_at), milestone, secs(now)])?;
    Ok(n == 1)
}

pub(super) fn set_next_reminder(
    conn: &Connection,
    app_password_id: i64,
    at: Option<Timestamp>,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE app_passwords SET next_reminder_at = ?2 WHERE id = ?1")?
        .execute(params![app_password_id, at.map(secs)])?;
    Ok(())
}

/// Replaces a login's main password hash by a re-hash of the same password (argon2id at
/// the configured cost), if it is still `old` (a password set meanwhile wins): the serial
/// stays, so no session ends; the feed names the mailbox, so every cache takes the new
/// hash. Returns whether it was replaced.
pub(super) fn rehash(
    conn: &Connection,
    login: &str,
    old: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let Some(mailbox_id) = conn
        .prepare_cached(
            "UPDATE logins SET password_hash = ?3 WHERE login = ?1 AND password_hash = ?2 \
             RETURNING mailbox_id",
        )?
        .query_row(params![login, old, new], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(false);
    };
    super::feed::record(conn, mailbox_id)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Plan;

    #[test]
    fn the_lookup_statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let conn = &store.conn;
        let hash = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";
        for i in 0..3 {
            let m = Mailbox::new(format!("u{i}@b.it"), Plan::Standard, None, hash.into());
            insert(conn, &m, Timestamp::UNIX_EPOCH).unwrap();
        }
        for _ in 0..2 {
            for i in 0..3 {
                assert!(login(conn, &format!("u{i}@b.it")).unwrap().is_some());
                assert!(by_address(conn, &format!("u{i}@b.it")).unwrap().is_some());
            }
        }
        let by =
            |condition: &str| format!("SELECT {MAILBOX_COLUMNS} {MAILBOX_FROM} WHERE {condition}");
        let apps = format!("SELECT {APP_COLUMNS} FROM app_passwords WHERE mailbox_id = ?1");
        for sql in [by("m.address = ?1"), by("m.id = ?1"), apps] {
            let st = conn.prepare_cached(&sql).unwrap();
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again on use: {sql}"
            );
        }
    }
}
