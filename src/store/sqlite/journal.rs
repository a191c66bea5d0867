//! Management events (`events`) and notices to the owner (`notices`).

use rusqlite::{Connection, params};

use super::{secs, ts};
use jiff::Timestamp;

use crate::policy::notice::Said;
use crate::store::{Alert, Delivery, DeliveryState, Event, Notice, OutgoingEmail, StoreError};

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
    email_to: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO notices (address, at, kind, message, said) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        address,
        secs(n.at),
        n.kind.as_str(),
        n.message,
        n.said.as_ref().and_then(|s| serde_json::to_string(s).ok())
    ])?;
    let id = conn.last_insert_rowid();
    for to in email_to {
        conn.prepare_cached(
            "INSERT INTO outbox (notice_id, recipient, state, next_attempt_at) VALUES (?1, ?2, 'pending', ?3)",
        )?
        .execute(params![id, to, secs(now)])?;
    }
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
    let to: Vec<String> = alert.email_to.iter().cloned().collect();
    record_notice(conn, &alert.address, &alert.notice, &to, alert.notice.at)?;
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
        "SELECT id, at, kind, message, said FROM notices WHERE address = ?1 ORDER BY at DESC, id DESC",
    )?;
    let rows = stmt
        .query_map([address], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut deliveries = conn.prepare_cached(
        "SELECT recipient, state, attempts, error FROM outbox WHERE notice_id = ?1 ORDER BY id",
    )?;
    rows.into_iter()
        .map(|(id, at, kind, message, said)| {
            let raw = deliveries
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let deliveries = raw
                .into_iter()
                .map(|(recipient, state, attempts, error)| {
                    Ok(Delivery {
                        recipient,
                        state: state.parse()?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        error,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Notice {
                at: ts(at)?,
                kind: kind.parse()?,
                message,
                said: said_from(said),
                deliveries,
            })
        })
        .collect()
}

/// The e-mails due at `now`.
pub(super) fn due_emails(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<OutgoingEmail>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, n.address, o.recipient, n.at, n.kind, n.message, o.attempts, n.said FROM outbox o \
         JOIN notices n ON n.id = o.notice_id WHERE o.state = 'pending' AND o.next_attempt_at <= ?1 \
         ORDER BY o.next_attempt_at, o.id LIMIT ?2",
    )?;
    type Row = (
        i64,
        String,
        String,
        i64,
        String,
        String,
        i64,
        Option<String>,
    );
    let rows: Vec<Row> = stmt
        .query_map(params![secs(now), limit], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(id, address, recipient, at, kind, message, attempts, said)| {
                Ok(OutgoingEmail {
                    id,
                    address,
                    recipient,
                    notice: Notice {
                        said: said_from(said),
                        ..Notice::new(ts(at)?, kind.parse()?, message)
                    },
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            },
        )
        .collect()
}

/// What a notice said, if it was kept (rows from before migration 8 have only words; a
/// form this build cannot read falls back to them too).
fn said_from(json: Option<String>) -> Option<Said> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

pub(super) fn claim_email(
    conn: &Connection,
    id: i64,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let taken = conn
        .prepare_cached(
            "UPDATE outbox SET next_attempt_at = ?3 WHERE id = ?1 AND state = 'pending' AND next_attempt_at <= ?2",
        )?
        .execute(params![id, secs(now), secs(until)])?;
    Ok(taken == 1)
}

pub(super) fn email_tried(
    conn: &Connection,
    id: i64,
    state: DeliveryState,
    retry_at: Option<Timestamp>,
    error: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sent_at = (state == DeliveryState::Sent).then(|| secs(now));
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at = COALESCE(?3, next_attempt_at), \
         sent_at = ?4, error = ?5 WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), retry_at.map(secs), sent_at, error])?;
    Ok(())
}
