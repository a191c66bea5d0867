//! The access history (`access_history`): appended in batches by the proxy, read per
//! mailbox by the management layer. The rows themselves are inserted by each backend its
//! own way (SQLite one by one in the batch's transaction, PostgreSQL in one statement);
//! everything around them is here.

use std::borrow::Cow;

use jiff::Timestamp;

use super::{Conn, params};
use crate::policy::login::{AccessResult, CredentialKind};
use crate::policy::names::Channel;
use crate::policy::usage::{self, Credential, Place, PlaceKind};
use crate::store::rows::ts;
use crate::store::{AccessRecord, AppPasswordUse, HistoryBatch, NewPlace, StoreError};

/// The statement that inserts one row (SQLite's way).
pub(crate) const INSERT: &str = "INSERT INTO access_history (at, listener, protocol, client, login, \
     address, credential, result, reason, app_password, software) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Inserts `rec` with [`INSERT`].
pub(crate) fn insert(c: &dyn Conn, rec: &AccessRecord) -> Result<(), StoreError> {
    let reason = rec.reason.as_ref().map(crate::store::rows::reason_column);
    c.execute(
        INSERT,
        params![
            rec.at,
            &rec.listener,
            rec.protocol.as_str(),
            &rec.client,
            &rec.login,
            rec.address.as_deref(),
            rec.credential.as_str(),
            rec.result.as_str(),
            reason.as_deref(),
            rec.app_password.as_ref().map(|a| a.name.as_str()),
            rec.software.as_deref()
        ],
    )?;
    Ok(())
}

/// The records of a batch with their mailbox: a record made while the store could not
/// say which mailbox its name opens (an outage) carries the name, resolved here when it
/// is written — by a login name that existed when the attempt was made.
pub(crate) fn resolved<'a>(
    c: &dyn Conn,
    records: &'a [AccessRecord],
) -> Result<Cow<'a, [AccessRecord]>, StoreError> {
    if records.iter().all(|r| r.unresolved.is_none()) {
        return Ok(Cow::Borrowed(records));
    }
    let mut out = records.to_vec();
    for r in out.iter_mut() {
        let Some(name) = r.unresolved.take() else {
            continue;
        };
        r.address = c.one(
            "SELECT m.address FROM logins l JOIN mailboxes m ON m.id = l.mailbox_id \
             WHERE l.login = ?1 AND l.created_at <= ?2",
            params![&name, r.at],
        )?;
    }
    Ok(Cow::Owned(out))
}

/// What a batch's accepted logins note besides their rows: the latest use of each app
/// password, and each place a password was used from, coalesced (one per password and
/// place, with its count).
pub(crate) struct Uses<'a> {
    /// The latest record of each app password that logged in.
    pub last: Vec<&'a AccessRecord>,
    /// The places, coalesced.
    pub places: Vec<Seen<'a>>,
}

/// The [`Uses`] of `records`.
pub(crate) fn uses(records: &[AccessRecord]) -> Uses<'_> {
    let mut last: Vec<&AccessRecord> = Vec::new();
    let mut places: Vec<Seen> = Vec::new();
    for rec in records {
        let Some((mailbox_id, credential)) = used(rec) else {
            continue;
        };
        if let Credential::App(id) = credential {
            match last
                .iter_mut()
                .find(|r| r.app_password.as_ref().is_some_and(|a| a.id == id))
            {
                Some(r) if r.at <= rec.at => *r = rec,
                Some(_) => {}
                None => last.push(rec),
            }
        }
        let network = rec
            .client
            .parse()
            .ok()
            .map(|ip| (PlaceKind::Network, usage::network_of(ip)));
        let software = rec.software.clone().map(|s| (PlaceKind::Software, s));
        for (kind, value) in network.into_iter().chain(software) {
            let key = (mailbox_id, credential, kind);
            match places.iter_mut().find(|p| p.key == key && p.value == value) {
                Some(p) => {
                    p.first = p.first.min(rec.at);
                    if rec.at >= p.last {
                        p.last = rec.at;
                        p.rec = rec;
                    }
                    p.uses += 1;
                }
                None => places.push(Seen {
                    key,
                    value,
                    first: rec.at,
                    last: rec.at,
                    uses: 1,
                    rec,
                }),
            }
        }
    }
    Uses { last, places }
}

/// Everything a batch writes besides its rows, in the same transaction: the last use of
/// each app password that logged in (a row already newer — records can arrive out of
/// order — is kept), the places each password was used from, the alerts not quieted,
/// the re-hashes still due. Returns the new places the owner is to be asked about.
pub(crate) fn around_records(c: &dyn Conn, b: &HistoryBatch) -> Result<Vec<NewPlace>, StoreError> {
    let Uses { last, places } = uses(&b.records);
    for rec in last {
        let Some(ap) = &rec.app_password else {
            continue;
        };
        c.execute(
            "UPDATE app_passwords SET last_used_at = ?2, last_client = ?3, last_protocol = ?4, \
             last_listener = ?5, last_software = ?6 \
             WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2)",
            params![
                ap.id,
                rec.at,
                &rec.client,
                rec.protocol.as_str(),
                &rec.listener,
                rec.software.as_deref()
            ],
        )?;
    }
    let mut new = Vec::new();
    for p in &places {
        if let Some(n) = seen(c, p)? {
            new.push(n);
        }
    }
    for alert in &b.alerts {
        super::journal::record_alert(c, alert)?;
    }
    // Before the re-hashes: a breach is marked against the hash it was proven with.
    for breach in &b.breaches {
        if super::mailboxes::mark_breached(c, breach.mailbox_id, &breach.hash, breach.at)? {
            super::journal::record_alert(c, &breach.alert)?;
        }
    }
    for r in &b.rehashes {
        super::mailboxes::rehash(c, &r.login, &r.old, &r.new)?;
    }
    Ok(new)
}

/// The mailbox and the password of an accepted mail login; nothing for a refusal, a
/// page login, or a login whose mailbox is not known.
fn used(rec: &AccessRecord) -> Option<(i64, Credential)> {
    if rec.result != AccessResult::Accepted || rec.protocol == Channel::Web {
        return None;
    }
    let credential = match (&rec.app_password, rec.credential) {
        (Some(ap), _) => Credential::App(ap.id),
        (None, CredentialKind::Main) => Credential::Main,
        _ => return None,
    };
    Some((rec.mailbox_id?, credential))
}

/// A place seen in a batch: its logins there, coalesced.
pub(crate) struct Seen<'a> {
    /// Mailbox, password, kind of place.
    pub key: (i64, Credential, PlaceKind),
    /// The network or program.
    pub value: String,
    /// The first and last login from it in the batch.
    pub first: Timestamp,
    pub last: Timestamp,
    /// Logins from it in the batch.
    pub uses: i64,
    /// The latest login from it.
    pub rec: &'a AccessRecord,
}

/// Writes a place seen; when its password had never been used from it and the owner is
/// to be asked (see [`usage::asks_owner`], at most once an hour a password), says so.
fn seen(c: &dyn Conn, p: &Seen) -> Result<Option<NewPlace>, StoreError> {
    let (mailbox_id, credential, kind) = p.key;
    let cred = credential.column();
    let uses: i64 = c
        .one(
            "INSERT INTO usage_places (mailbox_id, credential, kind, value, first_seen, last_seen, uses) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (mailbox_id, credential, kind, value) DO UPDATE SET \
             first_seen = CASE WHEN excluded.first_seen < usage_places.first_seen \
                 THEN excluded.first_seen ELSE usage_places.first_seen END, \
             last_seen = CASE WHEN excluded.last_seen > usage_places.last_seen \
                 THEN excluded.last_seen ELSE usage_places.last_seen END, \
             uses = usage_places.uses + excluded.uses \
             RETURNING uses",
            params![
                mailbox_id,
                cred,
                kind.as_str(),
                &p.value,
                p.first,
                p.last,
                p.uses
            ],
        )?
        .unwrap_or(0);
    if uses != p.uses {
        return Ok(None);
    }
    new_place(c, p)
}

/// After a place's upsert found it new (its uses are the batch's own): the oldest places
/// beyond the bound go, and the owner may be asked (the place, when so).
pub(crate) fn new_place(c: &dyn Conn, p: &Seen) -> Result<Option<NewPlace>, StoreError> {
    let (mailbox_id, credential, kind) = p.key;
    let cred = credential.column();
    // A new place: the oldest beyond the bound go, and the owner may be asked.
    let had: i64 = c
        .one(
            "SELECT COUNT(*) FROM usage_places WHERE mailbox_id = ?1 AND credential = ?2 AND kind = ?3",
            params![mailbox_id, cred, kind.as_str()],
        )?
        .unwrap_or(0);
    if had > usage::MAX_PLACES as i64 {
        c.execute(
            "DELETE FROM usage_places WHERE mailbox_id = ?1 AND credential = ?2 AND kind = ?3 \
             AND id NOT IN (SELECT id FROM usage_places WHERE mailbox_id = ?1 AND credential = ?2 \
             AND kind = ?3 ORDER BY last_seen DESC, id DESC LIMIT ?4)",
            params![mailbox_id, cred, kind.as_str(), usage::MAX_PLACES as i64],
        )?;
    }
    let created = match credential {
        Credential::App(id) => {
            let Some(at) = c.one::<i64>(
                "SELECT created_at FROM app_passwords WHERE id = ?1",
                params![id],
            )?
            else {
                return Ok(None);
            };
            Some(ts(at)?)
        }
        Credential::Main => None,
    };
    if !usage::asks_owner(credential, created, had > 1, p.last) {
        return Ok(None);
    }
    let quiet_before = p.last - usage::ALERT_EVERY;
    let claimed = match credential {
        Credential::App(id) => c.execute(
            "UPDATE app_passwords SET place_alert_at = ?2 \
             WHERE id = ?1 AND (place_alert_at IS NULL OR place_alert_at <= ?3)",
            params![id, p.last, quiet_before],
        )?,
        Credential::Main => c.execute(
            "UPDATE mailboxes SET place_alert_at = ?2 \
             WHERE id = ?1 AND (place_alert_at IS NULL OR place_alert_at <= ?3)",
            params![mailbox_id, p.last, quiet_before],
        )?,
    };
    if claimed == 0 {
        return Ok(None);
    }
    let rec = p.rec;
    Ok(Some(NewPlace {
        mailbox_id,
        address: rec.address.clone().unwrap_or_default(),
        credential,
        app_password: rec.app_password.as_ref().map(|a| a.name.clone()),
        kind,
        value: p.value.clone(),
        at: rec.at,
        client: rec.client.clone(),
        protocol: rec.protocol,
        software: rec.software.clone(),
    }))
}

/// The places each password of a mailbox was used from: networks, then programs, each
/// most recent first.
pub(crate) fn places(
    c: &dyn Conn,
    mailbox_id: i64,
) -> Result<Vec<(Credential, Place)>, StoreError> {
    c.rows(
        "SELECT credential, kind, value, first_seen, last_seen, uses FROM usage_places \
         WHERE mailbox_id = ?1 ORDER BY kind, last_seen DESC, id DESC",
        params![mailbox_id],
        |r| {
            Ok((
                Credential::of_column(r.get(0)?),
                Place {
                    kind: r
                        .get::<String>(1)?
                        .parse()
                        .map_err(|_| StoreError::Corrupt("usage_places.kind".into()))?,
                    value: r.get(2)?,
                    first_seen: ts(r.get(3)?)?,
                    last_seen: ts(r.get(4)?)?,
                    uses: u64::try_from(r.get::<i64>(5)?).unwrap_or(0),
                },
            ))
        },
    )
}

pub(crate) fn of_mailbox(
    c: &dyn Conn,
    address: &str,
    limit: u32,
) -> Result<Vec<AccessRecord>, StoreError> {
    c.rows(
        "SELECT at, listener, protocol, client, login, address, credential, result, reason, \
         app_password, software FROM access_history WHERE address = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
        params![address, limit],
        |r| {
            Ok(AccessRecord {
                at: ts(r.get(0)?)?,
                listener: r.get(1)?,
                protocol: r.get::<String>(2)?.parse()?,
                client: r.get(3)?,
                login: r.get(4)?,
                address: r.get(5)?,
                unresolved: None,
                mailbox_id: None,
                software: r.get(10)?,
                credential: r.get::<String>(6)?.parse()?,
                result: r.get::<String>(7)?.parse()?,
                reason: r
                    .get::<Option<String>>(8)?
                    .map(crate::store::rows::reason_of),
                // The name is what the history shows; the id is not kept.
                app_password: r
                    .get::<Option<String>>(9)?
                    .map(|name| AppPasswordUse { id: 0, name }),
            })
        },
    )
}
