//! The access history (`access_history`): appended in batches by the proxy, read per
//! mailbox by the management layer.

use rusqlite::{Connection, params};

use super::{secs, ts};
use crate::store::{AccessRecord, StoreError};

pub(super) fn append(conn: &Connection, records: &[AccessRecord]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, result, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for rec in records {
        stmt.execute(params![
            secs(rec.at),
            rec.listener,
            rec.protocol.as_str(),
            rec.client,
            rec.login,
            rec.address,
            rec.credential.as_str(),
            rec.result.as_str(),
            rec.reason
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
        "SELECT at, listener, protocol, client, login, address, credential, result, reason FROM access_history \
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
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(at, listener, protocol, client, login, address, credential, result, reason)| {
                Ok(AccessRecord {
                    at: ts(at)?,
                    listener,
                    protocol: protocol.parse().map_err(|e: crate::policy::PolicyError| {
                        StoreError::Corrupt(e.to_string())
                    })?,
                    client,
                    login,
                    address,
                    credential: credential.parse()?,
                    result: result.parse()?,
                    reason,
                })
            },
        )
        .collect()
}
