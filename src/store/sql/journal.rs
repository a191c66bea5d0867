//! Management events (`events`), notices to the owner (`notices`) and the e-mails that
//! carry them (`outbox`).

use jiff::Timestamp;

use super::{Conn, Row, params};
use crate::policy::notice::Said;
use crate::policy::usage::Credential;
use crate::secret::Secret;
use crate::store::rows::ts;
use crate::store::{
    Alert, Delivery, DeliveryState, Event, Notice, OutgoingEmail, StoreError, StoredLink,
};

pub(crate) fn record_event(c: &dyn Conn, e: &Event) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO events (at, address, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            e.at,
            &e.address,
            &e.actor.to_string(),
            e.action.as_str(),
            e.detail.as_deref()
        ],
    )?;
    Ok(())
}

pub(crate) fn record_notice(
    c: &dyn Conn,
    address: &str,
    n: &Notice,
    email_to: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    record_notice_with(c, address, n, email_to, None, now)
}

/// [`record_notice`], its e-mails carrying `link`'s token.
fn record_notice_with(
    c: &dyn Conn,
    address: &str,
    n: &Notice,
    email_to: &[String],
    link: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let said = n.said.as_ref().and_then(|s| serde_json::to_string(s).ok());
    let id: i64 = c
        .one(
            "INSERT INTO notices (address, at, kind, message, said) VALUES (?1, ?2, ?3, ?4, ?5) \
             RETURNING id",
            params![address, n.at, n.kind.as_str(), &n.message, said.as_deref()],
        )?
        .ok_or_else(|| StoreError::Corrupt("no id for the notice".into()))?;
    for to in email_to {
        c.execute(
            "INSERT INTO outbox (notice_id, recipient, state, next_attempt_at, link) \
             VALUES (?1, ?2, 'pending', ?3, ?4)",
            params![id, to, now, link],
        )?;
    }
    Ok(())
}

/// Writes `alert`'s notice unless one of its kind was written for the mailbox since
/// `quiet_since`; returns whether it wrote it.
pub(crate) fn record_alert(c: &dyn Conn, alert: &Alert) -> Result<bool, StoreError> {
    let quiet = c
        .one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM notices WHERE address = ?1 AND kind = ?2 AND at >= ?3)",
            params![
                &alert.address,
                alert.notice.kind.as_str(),
                alert.quiet_since
            ],
        )?
        .unwrap_or(false);
    if quiet {
        return Ok(false);
    }
    let to: Vec<String> = alert.email_to.iter().cloned().collect();
    // A link only goes where an e-mail goes.
    let link = alert.link.as_ref().filter(|_| !to.is_empty());
    if let Some(l) = link {
        // Expired links go as new ones come (at most one a password an hour).
        c.execute(
            "DELETE FROM not_me_links WHERE expires_at < ?1",
            params![l.created_at],
        )?;
        c.execute(
            "INSERT INTO not_me_links (hash, mailbox_id, credential, name, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                &l.hash,
                l.mailbox_id,
                l.credential.column(),
                l.name.as_deref(),
                l.created_at,
                l.expires_at
            ],
        )?;
    }
    let token = link.map(|l| l.token.expose());
    record_notice_with(
        c,
        &alert.address,
        &alert.notice,
        &to,
        token,
        alert.notice.at,
    )?;
    Ok(true)
}

/// The "Non sono stato io" link whose token hashes to `hash`.
pub(crate) fn link(c: &dyn Conn, hash: &str) -> Result<Option<StoredLink>, StoreError> {
    c.row(
        "SELECT m.address, l.credential, l.name, l.created_at, l.expires_at, l.used_at \
         FROM not_me_links l JOIN mailboxes m ON m.id = l.mailbox_id WHERE l.hash = ?1",
        params![hash],
        |r| {
            Ok(StoredLink {
                address: r.get(0)?,
                credential: Credential::of_column(r.get(1)?),
                name: r.get(2)?,
                created_at: ts(r.get(3)?)?,
                expires_at: ts(r.get(4)?)?,
                used_at: r.get::<Option<i64>>(5)?.map(ts).transpose()?,
            })
        },
    )
}

/// Spends the link; `false` when it was spent already or has expired.
pub(crate) fn spend_link(c: &dyn Conn, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE not_me_links SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![hash, now],
    )?;
    Ok(n == 1)
}

pub(crate) fn events(c: &dyn Conn, address: &str) -> Result<Vec<Event>, StoreError> {
    c.rows(
        "SELECT at, actor, action, detail FROM events WHERE address = ?1 ORDER BY id",
        params![address],
        |r| {
            Ok(Event {
                at: ts(r.get(0)?)?,
                address: address.to_owned(),
                actor: r.get::<String>(1)?.parse()?,
                action: r.get::<String>(2)?.parse()?,
                detail: r.get(3)?,
            })
        },
    )
}

pub(crate) fn notices(c: &dyn Conn, address: &str) -> Result<Vec<Notice>, StoreError> {
    let rows = c.rows(
        "SELECT id, at, kind, message, said FROM notices WHERE address = ?1 \
         ORDER BY at DESC, id DESC",
        params![address],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                Notice {
                    said: said_from(r.get(4)?),
                    ..Notice::new(
                        ts(r.get(1)?)?,
                        r.get::<String>(2)?.parse()?,
                        r.get::<String>(3)?,
                    )
                },
            ))
        },
    )?;
    rows.into_iter()
        .map(|(id, notice)| {
            let deliveries = c.rows(
                "SELECT recipient, state, attempts, error FROM outbox WHERE notice_id = ?1 \
                 ORDER BY id",
                params![id],
                |d| {
                    Ok(Delivery {
                        recipient: d.get(0)?,
                        state: d.get::<String>(1)?.parse()?,
                        attempts: count(d, 2)?,
                        error: d.get(3)?,
                    })
                },
            )?;
            Ok(Notice {
                deliveries,
                ..notice
            })
        })
        .collect()
}

/// A stored counter.
fn count(r: &dyn Row, i: usize) -> Result<u32, StoreError> {
    Ok(u32::try_from(r.get::<i64>(i)?).unwrap_or(u32::MAX))
}

/// The e-mails due at `now`, at most `limit`.
pub(crate) fn due_emails(
    c: &dyn Conn,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<OutgoingEmail>, StoreError> {
    c.rows(
        "SELECT o.id, n.address, o.recipient, n.at, n.kind, n.message, o.attempts, n.said, o.link \
         FROM outbox o JOIN notices n ON n.id = o.notice_id \
         WHERE o.state = 'pending' AND o.next_attempt_at <= ?1 \
         ORDER BY o.next_attempt_at, o.id LIMIT ?2",
        params![now, limit],
        |r| {
            Ok(OutgoingEmail {
                id: r.get(0)?,
                address: r.get(1)?,
                recipient: r.get(2)?,
                notice: Notice {
                    said: said_from(r.get(7)?),
                    ..Notice::new(
                        ts(r.get(3)?)?,
                        r.get::<String>(4)?.parse()?,
                        r.get::<String>(5)?,
                    )
                },
                attempts: count(r, 6)?,
                link: r.get::<Option<String>>(8)?.map(Secret::new),
            })
        },
    )
}

/// The e-mails waiting to be sent.
pub(crate) fn pending_emails(c: &dyn Conn) -> Result<u64, StoreError> {
    let n: i64 = c
        .one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &[])?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What a notice said, if it was kept (rows from before migration 8 have only words; a
/// form this build cannot read falls back to them too).
fn said_from(json: Option<String>) -> Option<Said> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

pub(crate) fn claim_email(
    c: &dyn Conn,
    id: i64,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let taken = c.execute(
        "UPDATE outbox SET next_attempt_at = ?3 \
         WHERE id = ?1 AND state = 'pending' AND next_attempt_at <= ?2",
        params![id, now, until],
    )?;
    Ok(taken == 1)
}

pub(crate) fn email_tried(
    c: &dyn Conn,
    id: i64,
    state: DeliveryState,
    retry_at: Option<Timestamp>,
    error: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let sent_at = (state == DeliveryState::Sent).then_some(now);
    // A link's token is kept only while its e-mail may still be sent.
    c.execute(
        "UPDATE outbox SET state = ?2, attempts = attempts + 1, \
         next_attempt_at = COALESCE(?3, next_attempt_at), sent_at = ?4, error = ?5, \
         link = CASE WHEN ?2 = 'pending' THEN link END WHERE id = ?1",
        params![id, state.as_str(), retry_at, sent_at, error],
    )?;
    Ok(())
}
