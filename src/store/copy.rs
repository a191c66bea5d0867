//! Moving a store from one backend to another (`sentinella store copy`): every table, row
//! for row with its ids, in one transaction on the destination, then the row counts of
//! both compared. The destination must be empty (a fresh SQLite file or database).
//!
//! A fleet's store (PostgreSQL) has tables a single machine does not: the throttle's
//! counts and the fleet's key (one machine keeps its throttle in memory). They are copied
//! between two fleet stores; from a fleet store to SQLite they are left out and the
//! report names them.
//!
//! The tables and their columns are listed once, here; each backend only reads and
//! writes rows of [`Value`]s ([`Tables`]).

use serde::Serialize;

use super::sql::{Conn, Param};
use super::{StoreError, StoreLocation};

pub use super::sql::Value;

/// One table: its name, its columns, and how it is read in order (`key`: a column of
/// unique values to page by, or `None` for a small table read at once).
#[derive(Debug)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in the order of the rows.
    pub columns: &'static [&'static str],
    /// The column to page by (unique).
    pub key: Option<&'static str>,
    /// Whether `id` is an identity the destination must move past the copied ids.
    pub identity: bool,
    /// Whether only a fleet's store has it.
    pub fleet_only: bool,
}

/// Every table of the store, parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: "mailboxes",
        columns: &[
            "id",
            "address",
            "plan",
            "contact",
            "protocols",
            "migration",
            "version",
            "created_at",
            "updated_at",
            "device_secret",
            "device_last_step",
            "device_since",
            "pending_secret",
            "pending_purpose",
            "pending_since",
            "upstream_secret",
            "passkey_id",
            "passkey_key",
            "passkey_counter",
            "place_alert_at",
            "breached_at",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "logins",
        columns: &[
            "login",
            "mailbox_id",
            "kind",
            "password_hash",
            "created_at",
            "password_serial",
        ],
        key: Some("login"),
        identity: false,
        fleet_only: false,
    },
    Table {
        name: "app_passwords",
        columns: &[
            "id",
            "mailbox_id",
            "name",
            "selector",
            "scope",
            "hash",
            "created_at",
            "expires_at",
            "postponed",
            "last_used_at",
            "last_client",
            "last_protocol",
            "last_listener",
            "next_reminder_at",
            "networks",
            "last_software",
            "place_alert_at",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "recovery_codes",
        columns: &[
            "id",
            "mailbox_id",
            "selector",
            "hash",
            "created_at",
            "used_at",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "reminders",
        columns: &["app_password_id", "expires_at", "milestone", "at"],
        key: None,
        identity: false,
        fleet_only: false,
    },
    Table {
        name: "notices",
        columns: &[
            "id",
            "address",
            "at",
            "kind",
            "message",
            "emailed_at",
            "said",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "outbox",
        columns: &[
            "id",
            "notice_id",
            "recipient",
            "state",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "error",
            "link",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "events",
        columns: &["id", "at", "address", "action", "detail", "actor"],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "access_history",
        columns: &[
            "id",
            "at",
            "listener",
            "protocol",
            "client",
            "login",
            "address",
            "credential",
            "result",
            "reason",
            "app_password",
            "software",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "usage_places",
        columns: &[
            "id",
            "mailbox_id",
            "credential",
            "kind",
            "value",
            "first_seen",
            "last_seen",
            "uses",
        ],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    Table {
        name: "not_me_links",
        columns: &[
            "hash",
            "mailbox_id",
            "credential",
            "name",
            "created_at",
            "expires_at",
            "used_at",
        ],
        key: Some("hash"),
        identity: false,
        fleet_only: false,
    },
    Table {
        name: "changes",
        columns: &["id", "mailbox_id", "version", "at"],
        key: Some("id"),
        identity: true,
        fleet_only: false,
    },
    // The fleet's key first: the throttle's fingerprints are keyed by it.
    Table {
        name: "fleet_secrets",
        columns: &["name", "value"],
        key: Some("name"),
        identity: false,
        fleet_only: true,
    },
    Table {
        name: "throttle_failures",
        columns: &["id", "key", "fingerprint", "at_ms"],
        key: Some("id"),
        identity: true,
        fleet_only: true,
    },
    Table {
        name: "throttle_clears",
        columns: &["key", "at_ms"],
        key: Some("key"),
        identity: false,
        fleet_only: true,
    },
];

/// Rows read per page.
const PAGE: usize = 5_000;

/// A backend's side of a copy: which tables it has, its connection, and its load
/// transaction; the statements are written once, here.
pub trait Tables {
    /// Whether this backend has `table` (a single machine's store has no fleet tables).
    fn has(&self, table: &Table) -> bool;
    /// Runs `f` on this store's connection (in the load transaction once it began).
    fn with(
        &mut self,
        f: &mut dyn FnMut(&dyn Conn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Starts the destination's transaction.
    fn begin_load(&mut self) -> Result<(), StoreError>;
    /// Moves identities past the copied ids, and commits.
    fn end_load(&mut self) -> Result<(), StoreError>;
}

/// Rows per INSERT statement, at most (PostgreSQL takes 65,535 parameters, SQLite 32,766).
const ROWS_PER_STATEMENT: usize = 1_000;

/// How many rows `table` has.
fn count(store: &mut dyn Tables, table: &Table) -> Result<u64, StoreError> {
    let mut n = 0;
    store.with(&mut |c| {
        n = c
            .one::<i64>(&format!("SELECT COUNT(*) FROM {}", table.name), &[])?
            .unwrap_or(0);
        Ok(())
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Rows of `table` in key order, after `after` (the key of the last row read), at most
/// `limit`; a table without a key: all of them.
fn read(
    store: &mut dyn Tables,
    table: &Table,
    after: Option<&Value>,
    limit: usize,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let (name, cols) = (table.name, table.columns.join(", "));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (sql, params) = match (table.key, after) {
        (Some(k), Some(after)) => (
            format!("SELECT {cols} FROM {name} WHERE {k} > ?1 ORDER BY {k} LIMIT ?2"),
            vec![Param::from(after), Param::Int(limit)],
        ),
        (Some(k), None) => (
            format!("SELECT {cols} FROM {name} ORDER BY {k} LIMIT ?1"),
            vec![Param::Int(limit)],
        ),
        (None, _) => (format!("SELECT {cols} FROM {name}"), Vec::new()),
    };
    let mut out = Vec::new();
    store.with(&mut |c| {
        out = c.rows(&sql, &params, |r| {
            (0..table.columns.len()).map(|i| r.value(i)).collect()
        })?;
        Ok(())
    })?;
    Ok(out)
}

/// Writes rows (columns as in `table`), many to a statement.
fn write(store: &mut dyn Tables, table: &Table, rows: &[Vec<Value>]) -> Result<(), StoreError> {
    let n = table.columns.len();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|r| {
                let marks: Vec<String> = (1..=n).map(|c| format!("?{}", r * n + c)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            table.name,
            table.columns.join(", "),
            tuples.join(", ")
        );
        let params: Vec<Param> = chunk.iter().flatten().map(Param::from).collect();
        store.with(&mut |c| c.execute(&sql, &params).map(drop))?;
    }
    Ok(())
}

/// One table's rows on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct Copied {
    /// The table.
    pub table: &'static str,
    /// Rows in the source.
    pub source: u64,
    /// Rows in the destination after the copy.
    pub destination: u64,
    /// The destination has no such table (a fleet's table copied to SQLite): its rows
    /// were left out.
    pub left_out: bool,
}

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The destination holds data already.
    #[error("the destination is not empty ({table} has {rows} rows): copy into a new store")]
    NotEmpty {
        /// The first table found with rows.
        table: &'static str,
        /// How many.
        rows: u64,
    },
    /// Source and destination are the same store.
    #[error("the source and the destination are the same store")]
    Same,
    /// The counts differ after the copy (the source changed meanwhile?).
    #[error(
        "{table}: {source_rows} rows in the source, {destination} in the destination; was the source in use?"
    )]
    Mismatch {
        /// The table.
        table: &'static str,
        /// Source rows.
        source_rows: u64,
        /// Destination rows.
        destination: u64,
    },
}

/// Copies everything from `from` to the empty `to` (both brought to the latest schema),
/// then compares every table's count.
pub fn copy(from: &StoreLocation, to: &StoreLocation) -> Result<Vec<Copied>, CopyError> {
    if from == to {
        return Err(CopyError::Same);
    }
    let mut src = from.open_tables()?;
    let mut dst = to.open_tables()?;
    // Which tables each side has, by index into TABLES.
    let (in_src, in_dst): (Vec<bool>, Vec<bool>) =
        TABLES.iter().map(|t| (src.has(t), dst.has(t))).unzip();
    let (in_src, in_dst) = (&in_src, &in_dst);
    let tables = |want: fn(bool, bool) -> bool| {
        TABLES
            .iter()
            .enumerate()
            .filter(move |(i, _)| want(in_src[*i], in_dst[*i]))
    };
    for (_, t) in tables(|_, d| d) {
        let rows = count(&mut *dst, t)?;
        if rows > 0 {
            return Err(CopyError::NotEmpty {
                table: t.name,
                rows,
            });
        }
    }
    dst.begin_load()?;
    for (_, t) in tables(|s, d| s && d) {
        let mut after: Option<Value> = None;
        loop {
            let rows = read(&mut *src, t, after.as_ref(), PAGE)?;
            if rows.is_empty() {
                break;
            }
            write(&mut *dst, t, &rows)?;
            let Some(key) = t.key else { break };
            let i = t.columns.iter().position(|c| *c == key).unwrap_or(0);
            after = rows.last().map(|r| r[i].clone());
            if rows.len() < PAGE {
                break;
            }
        }
    }
    dst.end_load()?;
    let mut out = Vec::with_capacity(TABLES.len());
    for (i, t) in tables(|s, d| s || d) {
        let s = if in_src[i] { count(&mut *src, t)? } else { 0 };
        let left_out = !in_dst[i];
        let d = if left_out { 0 } else { count(&mut *dst, t)? };
        if s != d && !left_out {
            return Err(CopyError::Mismatch {
                table: t.name,
                source_rows: s,
                destination: d,
            });
        }
        out.push(Copied {
            table: t.name,
            source: s,
            destination: d,
            left_out,
        });
    }
    Ok(out)
}
