//! Old rows deleted, oldest first, a batch at a time; which rows are old is decided by
//! `crate::audit::retention` (the periods, the clock).

use jiff::Timestamp;

use super::{Conn, params};
use crate::store::{Kept, StoreError};

/// Deletes at most `batch` rows of `kind` from before `before`; how many it deleted.
pub(crate) fn delete_older(
    c: &dyn Conn,
    kind: Kept,
    before: Timestamp,
    batch: usize,
) -> Result<usize, StoreError> {
    // The table and its time column come from the enumeration, never from input.
    let (table, column, cutoff) = match kind {
        Kept::ThrottleFailures => ("throttle_failures", "at_ms", before.as_millisecond()),
        Kept::ThrottleClears => ("throttle_clears", "at_ms", before.as_millisecond()),
        other => (other.as_str(), "at", before.as_second()),
    };
    let key = if kind == Kept::ThrottleClears {
        "key"
    } else {
        "id"
    };
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {column} < ?1 ORDER BY {column} LIMIT ?2)"
    );
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let n = c.execute(&sql, params![cutoff, limit])?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
