//! What only a fleet's store (PostgreSQL) writes its own way: the access history's rows
//! of a batch in one statement (arrays), and the fleet's throttle — its failures and
//! clears, its key, its counts. Everything else is the common SQL layer's.

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::types::ToSql;

use crate::policy::login::AccessResult;
use crate::store::sql::history::Uses;
use crate::store::{AccessRecord, HistoryBatch, StoreError, ThrottleCount};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query(
    c: &Client,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn query_opt(
    c: &Client,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn execute(c: &Client, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
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
    software: Vec<Option<&'a str>>,
}

/// Whether writing `b` needs nothing besides its rows (no last use or place to note, no
/// alert, no re-hash, no throttle row).
pub(crate) fn rows_only(b: &HistoryBatch) -> bool {
    rows_and_uses(b)
        && !b
            .records
            .iter()
            .any(|r| r.result == AccessResult::Accepted && r.mailbox_id.is_some())
}

/// Whether writing `b` needs nothing besides its rows and the uses they note (no alert,
/// re-hash, breach or throttle row).
pub(crate) fn rows_and_uses(b: &HistoryBatch) -> bool {
    b.alerts.is_empty()
        && b.rehashes.is_empty()
        && b.breaches.is_empty()
        && b.failures.is_empty()
        && b.clears.is_empty()
}

impl<'a> HistoryColumns<'a> {
    fn of(records: &'a [AccessRecord]) -> Self {
        let mut cols = HistoryColumns::default();
        for r in records {
            cols.at.push(r.at.as_second());
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
            cols.software.push(r.software.as_deref());
        }
        cols
    }
}

/// The history's INSERT of a batch's rows from arrays `$1`–`$11` (a macro, so that the
/// one-statement write below can embed it with `concat!`).
macro_rules! insert_rows {
    () => {
        "INSERT INTO access_history (at, listener, protocol, client, login, address, \
         credential, result, reason, app_password, software) SELECT * FROM UNNEST(\
         $1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])"
    };
}

impl HistoryColumns<'_> {
    /// The eleven arrays, as `$1`–`$11`.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.at,
            &self.listener,
            &self.protocol,
            &self.client,
            &self.login,
            &self.address,
            &self.credential,
            &self.result,
            &self.reason,
            &self.app_password,
            &self.software,
        ]
    }
}

/// The rows of a batch in one statement (their mailboxes resolved already).
pub(super) async fn insert_records(c: &Client, records: &[AccessRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let cols = HistoryColumns::of(records);
    execute(c, insert_rows!(), &cols.params()).await?;
    Ok(())
}

/// The rows of a batch, the last use of each app password and the places its logins
/// came from (`uses`, coalesced), in one statement — atomic by itself, one round trip.
/// Returns each place's count of uses after it (in `uses.places`' order): a count equal
/// to the batch's own is a place new to the store.
pub(super) async fn insert_with_uses(
    c: &Client,
    records: &[AccessRecord],
    uses: &Uses<'_>,
) -> Result<Vec<i64>, StoreError> {
    let cols = HistoryColumns::of(records);
    let mut ap = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for r in &uses.last {
        let Some(a) = &r.app_password else { continue };
        ap.0.push(a.id);
        ap.1.push(r.at.as_second());
        ap.2.push(r.client.as_str());
        ap.3.push(r.protocol.as_str());
        ap.4.push(r.listener.as_str());
        ap.5.push(r.software.as_deref());
    }
    let mut pl = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for p in &uses.places {
        let (mailbox_id, credential, kind) = p.key;
        pl.0.push(mailbox_id);
        pl.1.push(credential.column());
        pl.2.push(kind.as_str());
        pl.3.push(p.value.as_str());
        pl.4.push(p.first.as_second());
        pl.5.push(p.last.as_second());
        pl.6.push(p.uses);
    }
    let mut params = cols.params();
    params.extend::<[&(dyn ToSql + Sync); 13]>([
        &ap.0, &ap.1, &ap.2, &ap.3, &ap.4, &ap.5, &pl.0, &pl.1, &pl.2, &pl.3, &pl.4, &pl.5, &pl.6,
    ]);
    let rows = query(
        c,
        concat!(
            "WITH h AS (",
            insert_rows!(),
            "), \
         l AS (UPDATE app_passwords a SET last_used_at = u.at, last_client = u.client, \
         last_protocol = u.protocol, last_listener = u.listener, last_software = u.software \
         FROM UNNEST($12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::text[], \
         $17::text[]) AS u(id, at, client, protocol, listener, software) \
         WHERE a.id = u.id AND (a.last_used_at IS NULL OR a.last_used_at <= u.at)), \
         p AS (INSERT INTO usage_places (mailbox_id, credential, kind, value, first_seen, \
         last_seen, uses) SELECT * FROM UNNEST($18::bigint[], $19::bigint[], $20::text[], \
         $21::text[], $22::bigint[], $23::bigint[], $24::bigint[]) \
         ON CONFLICT (mailbox_id, credential, kind, value) DO UPDATE SET \
         first_seen = LEAST(usage_places.first_seen, EXCLUDED.first_seen), \
         last_seen = GREATEST(usage_places.last_seen, EXCLUDED.last_seen), \
         uses = usage_places.uses + EXCLUDED.uses \
         RETURNING mailbox_id, credential, kind, value, uses) \
         SELECT mailbox_id, credential, kind, value, uses FROM p"
        ),
        &params,
    )
    .await?;
    Ok(uses
        .places
        .iter()
        .map(|p| {
            let (mailbox_id, credential, kind) = p.key;
            rows.iter()
                .find(|r| {
                    r.get::<_, i64>(0) == mailbox_id
                        && r.get::<_, i64>(1) == credential.column()
                        && r.get::<_, &str>(2) == kind.as_str()
                        && r.get::<_, &str>(3) == p.value
                })
                .map_or(0, |r| r.get::<_, i64>(4))
        })
        .collect())
}

/// The throttle's failures (one statement) and clears of a batch.
pub(super) async fn throttle_rows(c: &Client, b: &HistoryBatch) -> Result<(), StoreError> {
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
    getrandom::fill(&mut fresh).map_err(|e| StoreError::permanent(e.to_string()))?;
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
