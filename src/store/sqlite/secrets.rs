//! The sealed upstream secrets (`mailboxes.upstream_secret`): stored and returned as
//! sealed bytes; only the holder of the key file opens them.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::StoreError;

pub(super) fn set(conn: &Connection, mailbox_id: i64, sealed: &[u8]) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE mailboxes SET upstream_secret = ?2 WHERE id = ?1",
        params![mailbox_id, sealed],
    )?;
    Ok(())
}

pub(super) fn get(conn: &Connection, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT upstream_secret FROM mailboxes WHERE address = ?1")?
        .query_row([address], |r| r.get(0))
        .optional()?
        .flatten())
}
