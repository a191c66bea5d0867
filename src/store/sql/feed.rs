//! The change feed: one row per login-relevant write, in its transaction, stamped with
//! the crate's clock.

use super::{Conn, params};
use crate::store::{Change, StoreError};

/// Appends "mailbox `mailbox_id` changed" with its version now (`NULL` once removed).
pub(crate) fn record(c: &dyn Conn, mailbox_id: i64) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO changes (mailbox_id, version, at) \
         VALUES (?1, (SELECT version FROM mailboxes WHERE id = ?1), ?2)",
        params![mailbox_id, crate::clock::now()],
    )?;
    Ok(())
}

/// The last sequence number, 0 when the feed is empty.
pub(crate) fn last(c: &dyn Conn) -> Result<i64, StoreError> {
    Ok(c.one("SELECT COALESCE(MAX(id), 0) FROM changes", &[])?
        .unwrap_or(0))
}

/// Entries after `seq`, oldest first, at most `limit`.
pub(crate) fn since(c: &dyn Conn, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
    c.rows(
        "SELECT id, mailbox_id, version FROM changes WHERE id > ?1 ORDER BY id LIMIT ?2",
        params![seq, limit],
        |r| {
            Ok(Change {
                seq: r.get(0)?,
                mailbox_id: r.get(1)?,
                version: r.get(2)?,
            })
        },
    )
}
