//! The statements of the PostgreSQL store: the same reads and writes as the SQLite
//! store's, in PostgreSQL's dialect. Each is prepared once per pooled connection
//! (`prepare_cached`).

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper as Client;
use jiff::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::policy::Mailbox;
use crate::policy::app_password::AppPassword;
use crate::policy::login::AccessResult;
use crate::policy::notice::Said;
use crate::store::rows::{AppRow, MailboxRow, ts};
use crate::store::{
    AccessRecord, AppPasswordUse, Delivery, Event, HistoryBatch, LoginEntry, Notice, OutgoingEmail,
    StoreError, ThrottleCount, UserAccount,
};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query(c: &Client, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn query_opt(c: &Client, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn execute(c: &Client, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

fn secs(t: Timestamp) -> i64 {
    t.as_second()
}

const MAILBOX_SELECT: &str = "SELECT m.id, m.address, m.plan, m.contact, m.protocols, m.migration, m.version, \
     m.device_secret, m.device_last_step, m.device_since, m.pending_secret, m.pending_purpose, m.pending_since, \
     l.password_hash FROM mailboxes m JOIN logins l ON l.mailbox_id = m.id AND l.kind = 'mailbox'";

const APP_COLUMNS: &str = "id, mailbox_id, name, selector, scope, hash, created_at, expires_at, postponed, \
     last_used_at, last_client, last_protocol, last_listener, next_reminder_at";

fn mailbox_row(r: &Row) -> Result<MailboxRow, StoreError> {
    Ok(MailboxRow {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        plan: r.try_get(2)?,
        contact: r.try_get(3)?,
        protocols: r.try_get(4)?,
        migration: r.try_get::<_, i64>(5)? != 0,
        version: r.try_get(6)?,
        device: (r.try_get(7)?, r.try_get(8)?, r.try_get(9)?),
        pending: (r.try_get(10)?, r.try_get(11)?, r.try_get(12)?),
        password_hash: r.try_get(13)?,
    })
}

fn app_row(r: &Row) -> Result<AppRow, StoreError> {
    Ok(AppRow {
        id: r.try_get(0)?,
        mailbox_id: r.try_get(1)?,
        name: r.try_get(2)?,
        selector: r.try_get(3)?,
        scope: r.try_get(4)?,
        hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        postponed: r.try_get(8)?,
        last: (
            r.try_get(9)?,
            r.try_get(10)?,
            r.try_get(11)?,
            r.try_get(12)?,
        ),
        next_reminder_at: r.try_get(13)?,
    })
}

async fn app_passwords_of(c: &Client, mailbox_id: i64) -> Result<Vec<AppPassword>, StoreError> {
    let sql = format!("SELECT {APP_COLUMNS} FROM app_passwords WHERE mailbox_id = $1 ORDER BY id");
    query(c, &sql, &[&mailbox_id])
        .await?
        .iter()
        .map(|r| app_row(r)?.into_app_password().map(|(_, a)| a))
        .collect()
}

async fn where_one(
    c: &Client,
    condition: &str,
    key: &(dyn ToSql + Sync),
) -> Result<Option<Mailbox>, StoreError> {
    let sql = format!("{MAILBOX_SELECT} WHERE {condition}");
    let Some(row) = query_opt(c, &sql, &[key]).await? else {
        return Ok(None);
    };
    let mut m = mailbox_row(&row)?.into_mailbox()?;
    m.app_passwords = app_passwords_of(c, m.id).await?;
    Ok(Some(m))
}

pub(super) async fn by_address(c: &Client, address: &str) -> Result<Option<Mailbox>, StoreError> {
    where_one(c, "m.address = $1", &address).await
}

pub(super) async fn all(c: &Client) -> Result<Vec<Mailbox>, StoreError> {
    let rows = query(c, &format!("{MAILBOX_SELECT} ORDER BY m.address"), &[]).await?;
    let mut apps: HashMap<i64, Vec<AppPassword>> = HashMap::new();
    let sql = format!("SELECT {APP_COLUMNS} FROM app_passwords ORDER BY id");
    for r in query(c, &sql, &[]).await? {
        let (mailbox_id, a) = app_row(&r)?.into_app_password()?;
        apps.entry(mailbox_id).or_default().push(a);
    }
    rows.iter()
        .map(|r| {
            let mut m = mailbox_row(r)?.into_mailbox()?;
            m.app_passwords = apps.remove(&m.id).unwrap_or_default();
            Ok(m)
        })
        .collect()
}

pub(super) async fn insert_mailbox(
    c: &Client,
    m: &Mailbox,
    now: Timestamp,
) -> Result<i64, StoreError> {
    // ON CONFLICT: a taken name is an answer, and the transaction stays usable (as on
    // SQLite), instead of aborting it.
    let Some(row) = query_opt(
        c,
        "INSERT INTO mailboxes (address, plan, contact, protocols, migration, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (address) DO NOTHING RETURNING id",
        &[
            &m.address,
            &m.plan.as_str(),
            &m.contact,
            &i64::from(m.protocols.bits()),
            &i64::from(m.migration),
            &m.version,
            &secs(now),
        ],
    )
    .await?
    else {
        return Err(StoreError::LoginTaken(m.address.clone()));
    };
    let id: i64 = row.try_get(0)?;
    let n = execute(
        c,
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) \
         VALUES ($1, $2, 'mailbox', $3, $4) ON CONFLICT (login) DO NOTHING",
        &[&m.address, &id, &m.password_hash, &secs(now)],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::LoginTaken(m.address.clone()));
    }
    if m.device.is_some() || m.pending_device.is_some() || !m.app_passwords.is_empty() {
        save_mailbox(c, &Mailbox { id, ..m.clone() }, now).await?;
    }
    Ok(id)
}

pub(super) async fn save_mailbox(
    c: &Client,
    m: &Mailbox,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (dev_secret, dev_step, dev_since) = match &m.device {
        Some(d) => (
            Some(d.secret.as_bytes()),
            d.last_step.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            Some(secs(d.associated_at)),
        ),
        None => (None, None, None),
    };
    let (pend_secret, pend_purpose, pend_since) = match &m.pending_device {
        Some(p) => (
            Some(p.secret.as_bytes()),
            Some(p.purpose.as_str()),
            Some(secs(p.since)),
        ),
        None => (None, None, None),
    };
    execute(
        c,
        "UPDATE mailboxes SET plan = $2, contact = $3, protocols = $4, migration = $5, version = $6, updated_at = $7, \
         device_secret = $8, device_last_step = $9, device_since = $10, \
         pending_secret = $11, pending_purpose = $12, pending_since = $13 WHERE id = $1",
        &[
            &m.id,
            &m.plan.as_str(),
            &m.contact,
            &i64::from(m.protocols.bits()),
            &i64::from(m.migration),
            &m.version,
            &secs(now),
            &dev_secret,
            &dev_step,
            &dev_since,
            &pend_secret,
            &pend_purpose,
            &pend_since,
        ],
    )
    .await?;
    execute(
        c,
        "UPDATE logins SET password_serial = password_serial + (password_hash IS DISTINCT FROM $2)::int, \
         password_hash = $2 WHERE mailbox_id = $1 AND kind = 'mailbox'",
        &[&m.id, &m.password_hash],
    )
    .await?;
    for stored in app_passwords_of(c, m.id).await? {
        if !m.app_passwords.iter().any(|a| a.id == stored.id) {
            execute(c, "DELETE FROM app_passwords WHERE id = $1", &[&stored.id]).await?;
        }
    }
    for a in &m.app_passwords {
        let scope = a.scope.map(|s| i64::from(s.bits()));
        let next = a.next_reminder_at.map(secs);
        let (created, expires, postponed) = (
            secs(a.created_at),
            secs(a.expires_at),
            i64::from(a.postponed),
        );
        if a.id == 0 {
            execute(
                c,
                "INSERT INTO app_passwords (mailbox_id, name, selector, scope, hash, created_at, expires_at, \
                 postponed, next_reminder_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[&m.id, &a.name, &a.selector, &scope, &a.hash, &created, &expires, &postponed, &next],
            )
            .await?;
        } else {
            execute(
                c,
                "UPDATE app_passwords SET name = $2, selector = $3, scope = $4, hash = $5, created_at = $6, \
                 expires_at = $7, postponed = $8, next_reminder_at = $9 WHERE id = $1",
                &[&a.id, &a.name, &a.selector, &scope, &a.hash, &created, &expires, &postponed, &next],
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn insert_user(
    c: &Client,
    mailbox_id: i64,
    login: &str,
    password_hash: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let n = execute(
        c,
        "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) \
         VALUES ($1, $2, 'user', $3, $4) ON CONFLICT (login) DO NOTHING",
        &[&login, &mailbox_id, &password_hash, &secs(now)],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::LoginTaken(login.to_owned()));
    }
    Ok(())
}

pub(super) async fn users(c: &Client, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError> {
    query(
        c,
        "SELECT login, created_at FROM logins WHERE mailbox_id = $1 AND kind = 'user' ORDER BY login",
        &[&mailbox_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(UserAccount {
            login: r.try_get(0)?,
            created_at: ts(r.try_get(1)?)?,
        })
    })
    .collect()
}

pub(super) async fn login(c: &Client, login: &str) -> Result<Option<LoginEntry>, StoreError> {
    let Some(r) = query_opt(
        c,
        "SELECT mailbox_id, password_hash, kind, password_serial FROM logins WHERE login = $1",
        &[&login],
    )
    .await?
    else {
        return Ok(None);
    };
    let id: i64 = r.try_get(0)?;
    let mailbox = where_one(c, "m.id = $1", &id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("login {login}: no mailbox {id}")))?;
    Ok(Some(LoginEntry {
        login: login.to_owned(),
        mailbox,
        password_hash: r.try_get(1)?,
        password_serial: r.try_get(3)?,
        is_user: r.try_get::<_, String>(2)? == "user",
    }))
}

pub(super) async fn principals_of(
    c: &Client,
    mailbox_id: i64,
) -> Result<Vec<LoginEntry>, StoreError> {
    let Some(mailbox) = where_one(c, "m.id = $1", &mailbox_id).await? else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT login, password_hash, kind, password_serial FROM logins WHERE mailbox_id = $1",
        &[&mailbox_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(LoginEntry {
            login: r.try_get(0)?,
            mailbox: mailbox.clone(),
            password_hash: r.try_get(1)?,
            password_serial: r.try_get(3)?,
            is_user: r.try_get::<_, String>(2)? == "user",
        })
    })
    .collect()
}

pub(super) async fn due_reminders(
    c: &Client,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    query(
        c,
        "SELECT DISTINCT m.address FROM app_passwords a JOIN mailboxes m ON m.id = a.mailbox_id \
         WHERE a.next_reminder_at IS NOT NULL AND a.next_reminder_at <= $1 LIMIT $2",
        &[&secs(now), &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

/// "Mailbox `mailbox_id` changed", with its version now (`NULL` once removed).
pub(super) async fn record_change(c: &Client, mailbox_id: i64) -> Result<(), StoreError> {
    execute(
        c,
        "INSERT INTO changes (mailbox_id, version, at) \
         VALUES ($1, (SELECT version FROM mailboxes WHERE id = $1), EXTRACT(EPOCH FROM now())::bigint)",
        &[&mailbox_id],
    )
    .await?;
    Ok(())
}

pub(super) async fn record_event(c: &Client, e: &Event) -> Result<(), StoreError> {
    execute(
        c,
        "INSERT INTO events (at, address, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &secs(e.at),
            &e.address,
            &e.actor.to_string(),
            &e.action.as_str(),
            &e.detail,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn record_notice(
    c: &Client,
    address: &str,
    n: &Notice,
    email_to: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    let said = n.said.as_ref().and_then(|s| serde_json::to_string(s).ok());
    let id: i64 = query_opt(
        c,
        "INSERT INTO notices (address, at, kind, message, said) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[&address, &secs(n.at), &n.kind.as_str(), &n.message, &said],
    )
    .await?
    .ok_or_else(|| StoreError::Backend("no id for the notice".into()))?
    .try_get(0)?;
    for to in email_to {
        execute(
            c,
            "INSERT INTO outbox (notice_id, recipient, state, next_attempt_at) VALUES ($1, $2, 'pending', $3)",
            &[&id, to, &secs(now)],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn events(c: &Client, address: &str) -> Result<Vec<Event>, StoreError> {
    query(
        c,
        "SELECT at, actor, action, detail FROM events WHERE address = $1 ORDER BY id",
        &[&address],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Event {
            at: ts(r.try_get(0)?)?,
            address: address.to_owned(),
            actor: r.try_get::<_, String>(1)?.parse()?,
            action: r.try_get::<_, String>(2)?.parse()?,
            detail: r.try_get(3)?,
        })
    })
    .collect()
}

fn said_from(json: Option<String>) -> Option<Said> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

pub(super) async fn notices(c: &Client, address: &str) -> Result<Vec<Notice>, StoreError> {
    let rows = query(
        c,
        "SELECT id, at, kind, message, said FROM notices WHERE address = $1 ORDER BY at DESC, id DESC",
        &[&address],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let deliveries = query(
            c,
            "SELECT recipient, state, attempts, error FROM outbox WHERE notice_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|d| {
            Ok(Delivery {
                recipient: d.try_get(0)?,
                state: d.try_get::<_, String>(1)?.parse()?,
                attempts: u32::try_from(d.try_get::<_, i64>(2)?).unwrap_or(u32::MAX),
                error: d.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        out.push(Notice {
            at: ts(r.try_get(1)?)?,
            kind: r.try_get::<_, String>(2)?.parse()?,
            message: r.try_get(3)?,
            said: said_from(r.try_get(4)?),
            deliveries,
        });
    }
    Ok(out)
}

pub(super) async fn due_emails(
    c: &Client,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<OutgoingEmail>, StoreError> {
    query(
        c,
        "SELECT o.id, n.address, o.recipient, n.at, n.kind, n.message, o.attempts, n.said FROM outbox o \
         JOIN notices n ON n.id = o.notice_id WHERE o.state = 'pending' AND o.next_attempt_at <= $1 \
         ORDER BY o.next_attempt_at, o.id LIMIT $2",
        &[&secs(now), &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(OutgoingEmail {
            id: r.try_get(0)?,
            address: r.try_get(1)?,
            recipient: r.try_get(2)?,
            notice: Notice {
                said: said_from(r.try_get(7)?),
                ..Notice::new(
                    ts(r.try_get(3)?)?,
                    r.try_get::<_, String>(4)?.parse()?,
                    r.try_get::<_, String>(5)?,
                )
            },
            attempts: u32::try_from(r.try_get::<_, i64>(6)?).unwrap_or(u32::MAX),
        })
    })
    .collect()
}

pub(super) async fn history(
    c: &Client,
    address: &str,
    limit: u32,
) -> Result<Vec<AccessRecord>, StoreError> {
    query(
        c,
        "SELECT at, listener, protocol, client, login, address, credential, result, reason, app_password \
         FROM access_history WHERE address = $1 ORDER BY at DESC, id DESC LIMIT $2",
        &[&address, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(AccessRecord {
            at: ts(r.try_get(0)?)?,
            listener: r.try_get(1)?,
            protocol: r.try_get::<_, String>(2)?.parse()?,
            client: r.try_get(3)?,
            login: r.try_get(4)?,
            address: r.try_get(5)?,
            credential: r.try_get::<_, String>(6)?.parse()?,
            result: r.try_get::<_, String>(7)?.parse()?,
            reason: r
                .try_get::<_, Option<String>>(8)?
                .map(crate::store::rows::reason_of),
            app_password: r
                .try_get::<_, Option<String>>(9)?
                .map(|name| AppPasswordUse { id: 0, name }),
        })
    })
    .collect()
}

/// The access records of a batch, column by column (one array parameter each).
#[derive(Default)]
struct HistoryColumns<'a> {
    at: Vec<i64>,
    listener: Vec<&'a str>,
    protocol: Vec<&'a str>,
    client: Vec<&'a str>,
    login: Vec<&'a str>,
    address: Vec<Option<&'a str>>,
    credential: Vec<&'a str>,
    result: Vec<&'a str>,
    reason: Vec<Option<String>>,
    app_password: Vec<Option<&'a str>>,
}

/// Whether `b` is written by one statement (records only, none of them an app password's
/// use to note): no transaction needed.
pub(super) fn one_statement(b: &HistoryBatch) -> bool {
    b.alerts.is_empty()
        && b.rehashes.is_empty()
        && b.failures.is_empty()
        && b.clears.is_empty()
        && !b
            .records
            .iter()
            .any(|r| r.result == AccessResult::Accepted && r.app_password.is_some())
}

/// One group commit: the records in one statement, the last uses of app passwords, the
/// alerts not quieted, the re-hashes still due, the throttle's failures and clears.
pub(super) async fn append(c: &Client, b: &HistoryBatch) -> Result<(), StoreError> {
    if !b.records.is_empty() {
        let mut cols = HistoryColumns::default();
        for r in &b.records {
            cols.at.push(secs(r.at));
            cols.listener.push(&r.listener);
            cols.protocol.push(r.protocol.as_str());
            cols.client.push(&r.client);
            cols.login.push(&r.login);
            cols.address.push(r.address.as_deref());
            cols.credential.push(r.credential.as_str());
            cols.result.push(r.result.as_str());
            cols.reason
                .push(r.reason.as_ref().map(crate::store::rows::reason_column));
            cols.app_password
                .push(r.app_password.as_ref().map(|a| a.name.as_str()));
        }
        execute(
            c,
            "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, result, \
             reason, app_password) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
            &[
                &cols.at,
                &cols.listener,
                &cols.protocol,
                &cols.client,
                &cols.login,
                &cols.address,
                &cols.credential,
                &cols.result,
                &cols.reason,
                &cols.app_password,
            ],
        )
        .await?;
    }
    for rec in &b.records {
        if let (AccessResult::Accepted, Some(ap)) = (rec.result, &rec.app_password) {
            execute(
                c,
                "UPDATE app_passwords SET last_used_at = $2, last_client = $3, last_protocol = $4, \
                 last_listener = $5 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2)",
                &[
                    &ap.id,
                    &secs(rec.at),
                    &rec.client,
                    &rec.protocol.as_str(),
                    &rec.listener,
                ],
            )
            .await?;
        }
    }
    for alert in &b.alerts {
        let quiet: bool = query_opt(
            c,
            "SELECT EXISTS (SELECT 1 FROM notices WHERE address = $1 AND kind = $2 AND at >= $3)",
            &[
                &alert.address,
                &alert.notice.kind.as_str(),
                &secs(alert.quiet_since),
            ],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(false);
        if !quiet {
            let to: Vec<String> = alert.email_to.iter().cloned().collect();
            record_notice(c, &alert.address, &alert.notice, &to, alert.notice.at).await?;
        }
    }
    for r in &b.rehashes {
        let row = query_opt(
            c,
            "UPDATE logins SET password_hash = $3 WHERE login = $1 AND password_hash = $2 RETURNING mailbox_id",
            &[&r.login, &r.old, &r.new],
        )
        .await?;
        if let Some(row) = row {
            record_change(c, row.try_get(0)?).await?;
        }
    }
    if !b.failures.is_empty() {
        let keys: Vec<&str> = b.failures.iter().map(|f| f.key.as_str()).collect();
        let fps: Vec<i64> = b.failures.iter().map(|f| f.fingerprint).collect();
        let ats: Vec<i64> = b.failures.iter().map(|f| f.at_ms).collect();
        execute(
            c,
            "INSERT INTO throttle_failures (key, fingerprint, at_ms) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])",
            &[&keys, &fps, &ats],
        )
        .await?;
    }
    for (key, at_ms) in &b.clears {
        execute(
            c,
            "INSERT INTO throttle_clears (key, at_ms) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET at_ms = GREATEST(throttle_clears.at_ms, EXCLUDED.at_ms)",
            &[key, at_ms],
        )
        .await?;
    }
    Ok(())
}

/// The fleet's throttle key: made by the first node that asks, the same for all.
pub(super) async fn fleet_key(c: &Client) -> Result<[u8; 32], StoreError> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|e| StoreError::Backend(e.to_string()))?;
    execute(
        c,
        "INSERT INTO fleet_secrets (name, value) VALUES ('throttle', $1) ON CONFLICT (name) DO NOTHING",
        &[&fresh.as_slice()],
    )
    .await?;
    let row = query_opt(
        c,
        "SELECT value FROM fleet_secrets WHERE name = 'throttle'",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("no throttle key".into()))?;
    let value: Vec<u8> = row.try_get(0)?;
    value
        .try_into()
        .map_err(|_| StoreError::Corrupt("throttle key: not 32 bytes".into()))
}

/// For each key: its distinct failures since `since_ms` (and since its last clear), and
/// the time of the last one.
pub(super) async fn throttle_counts(
    c: &Client,
    keys: &[String],
    since_ms: i64,
) -> Result<Vec<ThrottleCount>, StoreError> {
    query(
        c,
        "SELECT f.key, COUNT(DISTINCT f.fingerprint), MAX(f.at_ms) FROM throttle_failures f \
         LEFT JOIN throttle_clears k ON k.key = f.key \
         WHERE f.key = ANY($1) AND f.at_ms > GREATEST($2, COALESCE(k.at_ms, 0)) GROUP BY f.key",
        &[&keys, &since_ms],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ThrottleCount {
            key: r.try_get(0)?,
            distinct: u32::try_from(r.try_get::<_, i64>(1)?).unwrap_or(u32::MAX),
            last_ms: r.try_get(2)?,
        })
    })
    .collect()
}
