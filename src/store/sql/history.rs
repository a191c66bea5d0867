//! The access history (`access_history`): appended in batches by the proxy, read per
//! mailbox by the management layer. The rows themselves are inserted by each backend its
//! own way (SQLite one by one in the batch's transaction, PostgreSQL in one statement);
//! everything around them is here.

use std::borrow::Cow;

use super::{Conn, params};
use crate::policy::login::AccessResult;
use crate::store::rows::ts;
use crate::store::{AccessRecord, AppPasswordUse, HistoryBatch, StoreError};

/// The statement that inserts one row (SQLite's way).
pub(crate) const INSERT: &str = "INSERT INTO access_history (at, listener, protocol, client, login, \
     address, credential, result, reason, app_password) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Inserts `rec` with [`INSERT`].
pub(crate) fn insert(c: &dyn Conn, rec: &AccessRecord) -> Result<(), StoreError> {
    let reason = rec.reason.as_ref().map(crate::store::rows::reason_column);
    c.execute(
        INSERT,
        params![
            rec.at,
            &rec.listener,
            rec.protocol.as_str(),
            &rec.client,
            &rec.login,
            rec.address.as_deref(),
            rec.credential.as_str(),
            rec.result.as_str(),
            reason.as_deref(),
            rec.app_password.as_ref().map(|a| a.name.as_str())
        ],
    )?;
    Ok(())
}

/// The records of a batch with their mailbox: a record made while the store could not
/// say which mailbox its name opens (an outage) carries the name, resolved here when it
/// is written — by a login name that existed when the attempt was made.
pub(crate) fn resolved<'a>(
    c: &dyn Conn,
    records: &'a [AccessRecord],
) -> Result<Cow<'a, [AccessRecord]>, StoreError> {
    if records.iter().all(|r| r.unresolved.is_none()) {
        return Ok(Cow::Borrowed(records));
    }
    let mut out = records.to_vec();
    for r in out.iter_mut() {
        let Some(name) = r.unresolved.take() else {
            continue;
        };
        r.address = c.one(
            "SELECT m.address FROM logins l JOIN mailboxes m ON m.id = l.mailbox_id \
             WHERE l.login = ?1 AND l.created_at <= ?2",
            params![&name, r.at],
        )?;
    }
    Ok(Cow::Owned(out))
}

/// Everything a batch writes besides its rows, in the same transaction: the last use of
/// each app password that logged in (a row already newer — records can arrive out of
/// order — is kept), the alerts not quieted, the re-hashes still due.
pub(crate) fn around_records(c: &dyn Conn, b: &HistoryBatch) -> Result<(), StoreError> {
    for rec in &b.records {
        if let (AccessResult::Accepted, Some(ap)) = (rec.result, &rec.app_password) {
            c.execute(
                "UPDATE app_passwords SET last_used_at = ?2, last_client = ?3, last_protocol = ?4, \
                 last_listener = ?5 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2)",
                params![
                    ap.id,
                    rec.at,
                    &rec.client,
                    rec.protocol.as_str(),
                    &rec.listener
                ],
            )?;
        }
    }
    for alert in &b.alerts {
        super::journal::record_alert(c, alert)?;
    }
    for r in &b.rehashes {
        super::mailboxes::rehash(c, &r.login, &r.old, &r.new)?;
    }
    Ok(())
}

pub(crate) fn of_mailbox(
    c: &dyn Conn,
    address: &str,
    limit: u32,
) -> Result<Vec<AccessRecord>, StoreError> {
    c.rows(
        "SELECT at, listener, protocol, client, login, address, credential, result, reason, \
         app_password FROM access_history WHERE address = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
        params![address, limit],
        |r| {
            Ok(AccessRecord {
                at: ts(r.get(0)?)?,
                listener: r.get(1)?,
                protocol: r.get::<String>(2)?.parse()?,
                client: r.get(3)?,
                login: r.get(4)?,
                address: r.get(5)?,
                unresolved: None,
                credential: r.get::<String>(6)?.parse()?,
                result: r.get::<String>(7)?.parse()?,
                reason: r
                    .get::<Option<String>>(8)?
                    .map(crate::store::rows::reason_of),
                // The name is what the history shows; the id is not kept.
                app_password: r
                    .get::<Option<String>>(9)?
                    .map(|name| AppPasswordUse { id: 0, name }),
            })
        },
    )
}
