//! Recovery codes (`recovery_codes`): hashes with their selectors, spent once.

use jiff::Timestamp;

use super::{Conn, params};
use crate::store::rows::ts;
use crate::store::{StoreError, StoredRecoveryCode};

pub(crate) fn all(c: &dyn Conn, mailbox_id: i64) -> Result<Vec<StoredRecoveryCode>, StoreError> {
    c.rows(
        "SELECT id, selector, hash, used_at FROM recovery_codes WHERE mailbox_id = ?1 ORDER BY id",
        params![mailbox_id],
        |r| {
            Ok(StoredRecoveryCode {
                id: r.get(0)?,
                selector: r.get(1)?,
                hash: r.get(2)?,
                used_at: r.get::<Option<i64>>(3)?.map(ts).transpose()?,
            })
        },
    )
}

pub(crate) fn replace(
    c: &dyn Conn,
    mailbox_id: i64,
    codes: &[(String, String)],
    now: Timestamp,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM recovery_codes WHERE mailbox_id = ?1",
        params![mailbox_id],
    )?;
    for (selector, hash) in codes {
        c.execute(
            "INSERT INTO recovery_codes (mailbox_id, selector, hash, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![mailbox_id, selector, hash, now],
        )?;
    }
    Ok(())
}

pub(crate) fn spend(c: &dyn Conn, id: i64, now: Timestamp) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE recovery_codes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
        params![id, now],
    )?;
    Ok(n == 1)
}
