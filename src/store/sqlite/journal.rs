//! Management events (`events`) and notices to the owner (`notices`).

use rusqlite::{Connection, params};

use super::{secs, ts};
use crate::store::{Alert, Event, Notice, StoreError};

pub(super) fn record_event(conn: &Connection, e: &Event) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, address, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        secs(e.at),
        e.address,
        e.actor.to_string(),
        e.action.as_str(),
        e.detail
    ])?;
    Ok(())
}

pub(super) fn record_notice(
    conn: &Connection,
    address: &str,
    n: &Notice,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO notices (address, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![address, secs(n.at), n.kind.as_str(), n.message])?;
    Ok(())
}

/// Writes `alert`'s notice unless one of its kind was written for the mailbox since
/// `quiet_since`; returns whether it wrote it.
pub(super) fn record_alert(conn: &Connection, alert: &Alert) -> Result<bool, StoreError> {
    let quiet: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM notices WHERE address = ?1 AND kind = ?2 AND at >= ?3)",
        )?
        .query_row(
            params![
                alert.address,
                alert.notice.kind.as_str(),
                secs(alert.quiet_since)
            ],
            |r| r.get(0),
        )?;
    if quiet {
        return Ok(false);
    }
    record_notice(conn, &alert.address, &alert.notice)?;
    Ok(true)
}

pub(super) fn events(conn: &Connection, address: &str) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, actor, action, detail FROM events WHERE address = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([address], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(at, actor, action, detail)| {
            Ok(Event {
                at: ts(at)?,
                address: address.to_owned(),
                actor: actor.parse()?,
                action: action.parse()?,
                detail,
            })
        })
        .collect()
}

pub(super) fn notices(conn: &Connection, address: &str) -> Result<Vec<Notice>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, kind, message FROM notices WHERE address = ?1 ORDER BY at DESC, id DESC",
    )?;
    let rows = stmt
        .query_map([address], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(at, kind, message)| {
            Ok(Notice {
                at: ts(at)?,
                kind: kind.parse()?,
                message,
            })
        })
        .collect()
}
