//! The embedded backend: SQLite through rusqlite (bundled), in WAL mode with
//! `synchronous=FULL`, so a committed action survives a crash or power loss.
//!
//! Every management action is one `BEGIN IMMEDIATE` transaction: the write lock is taken
//! before anything is read, so two processes changing the same mailbox serialise instead
//! of one overwriting the other's change (a deferred transaction would read, then fail or
//! lose the race on upgrade). `busy_timeout` makes the second writer wait, not fail.
//!
//! - [`schema`]: the migrations, applied on open.
//! - `mailboxes`: mailboxes and their login names.
//! - `journal`: management events and notices.
//! - `history`: the access history.
//! - `secrets`: the sealed upstream secrets.

mod history;
mod journal;
mod mailboxes;
pub mod schema;
mod secrets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, TransactionBehavior};

use super::{
    AccessLog, AccessRecord, Event, LoginEntry, ManageStore, Notice, PrincipalSource, Reader,
    SealedSecrets, StoreError, Transaction, UserAccount,
};
use crate::policy::Mailbox;

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

fn secs(ts: Timestamp) -> i64 {
    ts.as_second()
}

fn ts(secs: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_second(secs).map_err(|e| StoreError::Corrupt(format!("timestamp {secs}: {e}")))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// One connection to a SQLite store file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets the proxy read while the CLI writes; FULL syncs the WAL on every commit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        Self::migrate(&mut conn)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
        })
    }

    fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let latest = schema::latest();
        if current > latest {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported: latest,
            });
        }
        for (i, sql) in schema::MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// Anything that reads through one SQLite connection: the store, or a transaction on it.
trait Conn {
    fn conn(&self) -> &Connection;
}

impl Conn for SqliteStore {
    fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// A write transaction (`BEGIN IMMEDIATE`); rolled back if dropped uncommitted.
struct SqliteTx<'a>(rusqlite::Transaction<'a>);

impl Conn for SqliteTx<'_> {
    fn conn(&self) -> &Connection {
        &self.0
    }
}

impl<T: Conn> Reader for T {
    fn mailbox(&self, address: &str) -> Result<Option<Mailbox>, StoreError> {
        mailboxes::by_address(self.conn(), address)
    }
    fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        mailboxes::all(self.conn())
    }
    fn login(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
        mailboxes::login(self.conn(), login)
    }
    fn users(&self, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError> {
        mailboxes::users(self.conn(), mailbox_id)
    }
    fn history(&self, address: &str, limit: u32) -> Result<Vec<AccessRecord>, StoreError> {
        history::of_mailbox(self.conn(), address, limit)
    }
    fn events(&self, address: &str) -> Result<Vec<Event>, StoreError> {
        journal::events(self.conn(), address)
    }
    fn notices(&self, address: &str) -> Result<Vec<Notice>, StoreError> {
        journal::notices(self.conn(), address)
    }
}

impl Transaction for SqliteTx<'_> {
    fn insert_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError> {
        mailboxes::insert(&self.0, m, now)
    }
    fn save_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<(), StoreError> {
        mailboxes::save(&self.0, m, now)
    }
    fn delete_mailbox(&mut self, mailbox_id: i64) -> Result<(), StoreError> {
        mailboxes::delete(&self.0, mailbox_id)
    }
    fn insert_user(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        mailboxes::insert_user(&self.0, mailbox_id, login, password_hash, now)
    }
    fn set_user_password(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        mailboxes::set_user_password(&self.0, mailbox_id, login, password_hash)
    }
    fn delete_user(&mut self, mailbox_id: i64, login: &str) -> Result<bool, StoreError> {
        mailboxes::delete_user(&self.0, mailbox_id, login)
    }
    fn set_upstream_secret(&mut self, mailbox_id: i64, sealed: &[u8]) -> Result<(), StoreError> {
        secrets::set(&self.0, mailbox_id, sealed)
    }
    fn record_event(&mut self, event: &Event) -> Result<(), StoreError> {
        journal::record_event(&self.0, event)
    }
    fn record_notice(&mut self, address: &str, notice: &Notice) -> Result<(), StoreError> {
        journal::record_notice(&self.0, address, notice)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

impl ManageStore for SqliteStore {
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteTx(tx)))
    }
}

impl PrincipalSource for SqliteStore {
    /// SQLite's `data_version`: it changes whenever another connection (another process
    /// included) commits to the file.
    fn change_mark(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }
    fn principals(&self) -> Result<Vec<LoginEntry>, StoreError> {
        mailboxes::principals(&self.conn)
    }
}

impl AccessLog for SqliteStore {
    fn append(&mut self, records: &[AccessRecord]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        history::append(&tx, records)?;
        tx.commit()?;
        Ok(())
    }
}

impl SealedSecrets for SqliteStore {
    fn sealed_upstream_secret(&self, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
        secrets::get(&self.conn, address)
    }
}
