//! Management events (`events`) and notices to the owner (`notices`).

use rusqlite::{Connection, params};

use super::{secs, ts};
use crate::store::{Event, Notice, StoreError};

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
