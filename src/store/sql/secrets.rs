//! The sealed upstream secrets (`mailboxes.upstream_secret`): stored and returned as
//! sealed bytes; only the holder of the key file opens them.

use super::{Conn, params};
use crate::store::StoreError;

pub(crate) fn set(c: &dyn Conn, mailbox_id: i64, sealed: &[u8]) -> Result<(), StoreError> {
    c.execute(
        "UPDATE mailboxes SET upstream_secret = ?2 WHERE id = ?1",
        params![mailbox_id, sealed],
    )?;
    Ok(())
}

pub(crate) fn get(c: &dyn Conn, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(c.one::<Option<Vec<u8>>>(
        "SELECT upstream_secret FROM mailboxes WHERE address = ?1",
        params![address],
    )?
    .flatten())
}
