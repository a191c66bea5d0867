//! The access history (`access_history`): appended in batches by the proxy, read per
//! mailbox by the management layer.

use rusqlite::{Connection, params};

use super::{secs, ts};
use crate::policy::login::AccessResult;
use crate::store::{AccessRecord, AppPasswordUse, StoreError};

pub(super) fn append(conn: &Connection, records: &[AccessRecord]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, result, reason, \
         app_password) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    // The last use of an app password rides in the same transaction: no write of its own
    // per login. A row already newer (records can arrive out of order) is kept.
    let mut last_use = conn.prepare_cached(
        "UPDATE app_passwords SET last_used_at = ?2, last_client = ?3, last_protocol = ?4, last_listener = ?5 \
         WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2)",
    )?;
    for rec in records {
        if let (AccessResult::Accepted, Some(ap)) = (rec.result, &rec.app_password) {
            last_use.execute(params![
                ap.id,
                secs(rec.at),
                rec.client,
                rec.protocol.as_str(),
                rec.listener
            ])?;
        }
        stmt.execute(params![
            secs(rec.at),
            rec.listener,
            rec.protocol.as_str(),
            rec.client,
            rec.login,
            rec.address,
            rec.credential.as_str(),
            rec.result.as_str(),
            rec.reason.as_ref().map(crate::store::rows::reason_column),
            rec.app_password.as_ref().map(|a| a.name.as_str())
        ])?;
    }
    Ok(())
}

pub(super) fn of_mailbox(
    conn: &Connection,
    address: &str,
    limit: u32,
) -> Result<Vec<AccessRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, listener, protocol, client, login, address, credential, result, reason, app_password \
         FROM access_history \
         WHERE address = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = stmt
        .query_map(params![address, limit], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(at, listener, protocol, client, login, address, credential, result, reason, app)| {
                Ok(AccessRecord {
                    at: ts(at)?,
                    listener,
                    protocol: protocol.parse()?,
                    client,
                    login,
                    address,
                    credential: credential.parse()?,
                    // The name is what the history shows; the id is not kept.
                    app_password: app.map(|name| AppPasswordUse { id: 0, name }),
                    result: result.parse()?,
                    reason: reason.map(crate::store::rows::reason_of),
                })
            },
        )
        .collect()
}
