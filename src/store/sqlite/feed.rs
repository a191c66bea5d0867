//! The change feed (migration 9): one row per login-relevant write, in its transaction.

use rusqlite::{Connection, params};

use super::super::{Change, StoreError};

/// Appends "mailbox `mailbox_id` changed" with its version now (`NULL` once removed).
pub(super) fn record(conn: &Connection, mailbox_id: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO changes (mailbox_id, version, at) \
         VALUES (?1, (SELECT version FROM mailboxes WHERE id = ?1), CAST(strftime('%s', 'now') AS INTEGER))",
    )?
    .execute([mailbox_id])?;
    Ok(())
}

/// The last sequence number, 0 when the feed is empty.
pub(super) fn last(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM changes")?
        .query_row([], |r| r.get(0))?)
}

/// Entries after `seq`, oldest first, at most `limit`.
pub(super) fn since(conn: &Connection, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, mailbox_id, version FROM changes WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit], |r| {
        Ok(Change {
            seq: r.get(0)?,
            mailbox_id: r.get(1)?,
            version: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
