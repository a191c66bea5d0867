//! The SQL both backends speak, written once: each statement (in SQLite's `?N` numbering,
//! rewritten to PostgreSQL's `$N` by its adapter) and its row mapping, and the store
//! traits implemented over any backend's connection.
//!
//! A backend provides only its dialect: a [`Conn`] adapter (binding [`Param`]s, reading
//! [`Row`]s as [`Value`]s), [`Db`] (a connection for a piece of work) and [`Tx`] (its
//! write transaction), and what no common SQL says — opening, pragmas or pools,
//! migrations, the write lock, the change mark, leases, bulk inserts.
//!
//! - [`mailboxes`]: mailboxes, login names, app passwords, reminders.
//! - [`journal`]: events, notices, the e-mail outbox.
//! - [`history`]: the access history (its rows, the last use of app passwords, alerts,
//!   re-hashes).
//! - [`recovery`]: recovery codes.
//! - [`feed`]: the change feed.
//! - [`secrets`]: the sealed upstream secrets.
//! - [`retention`]: old rows deleted, by [`Kept`].

pub(crate) mod feed;
pub(crate) mod history;
pub(crate) mod journal;
pub(crate) mod mailboxes;
pub(crate) mod recovery;
pub(crate) mod retention;
pub(crate) mod secrets;

use jiff::Timestamp;

use super::{
    AccessRecord, DeliveryState, Event, Kept, LoginEntry, Notice, Outbox, OutgoingEmail, Reader,
    Retention, SealedSecrets, StoreError, Transaction, UserAccount,
};
use crate::policy::Mailbox;

/// A stored value, as every backend has it (what a row's column reads as).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// No value.
    Null,
    /// An integer (times in seconds, ids, counters, flags).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (sealed secrets, device secrets).
    Bytes(Vec<u8>),
}

/// A statement's parameter.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<u32> for Param<'_> {
    fn from(v: u32) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<Timestamp> for Param<'_> {
    /// Times are stored in whole seconds since the epoch.
    fn from(v: Timestamp) -> Self {
        Param::Int(v.as_second())
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Bytes(v)
    }
}

impl<'a> From<&'a Value> for Param<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Param::Null,
            Value::Int(i) => Param::Int(*i),
            Value::Text(s) => Param::Text(s),
            Value::Bytes(b) => Param::Bytes(b),
        }
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// Parameters from a list of values of any parameter type.
#[macro_export]
#[doc(hidden)]
macro_rules! sql_params {
    ($($p:expr),* $(,)?) => {
        &[$($crate::store::sql::Param::from($p)),*]
    };
}
pub(crate) use sql_params as params;

/// One row of a result.
pub trait Row {
    /// Column `i` (from 0).
    fn value(&self, i: usize) -> Result<Value, StoreError>;
}

/// A Rust type a column reads as.
pub trait Column: Sized {
    /// From the column's value; a value of another type is a corrupt row.
    fn from_value(v: Value) -> Result<Self, StoreError>;
}

fn wrong(want: &str, v: &Value) -> StoreError {
    StoreError::Corrupt(format!("a column read as {want} holds {v:?}"))
}

impl Column for i64 {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(wrong("an integer", &other)),
        }
    }
}

impl Column for bool {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl Column for String {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(wrong("text", &other)),
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(wrong("bytes", &other)),
        }
    }
}

impl Column for Value {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        Ok(v)
    }
}

impl<T: Column> Column for Option<T> {
    fn from_value(v: Value) -> Result<Self, StoreError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl dyn Row + '_ {
    /// Column `i` as `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        T::from_value(self.value(i)?)
    }
}

/// One connection, in a transaction or not: statements run on it in order. Statements are
/// written with `?1`, `?2`… (each backend keeps its prepared statements).
pub trait Conn {
    /// Runs `sql`; the rows it changed.
    fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, StoreError>;
    /// Runs `sql`, giving each row of the result to `each` in order.
    fn query(
        &self,
        sql: &str,
        params: &[Param],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

impl dyn Conn + '_ {
    /// Every row of `sql`, mapped.
    pub fn rows<T>(
        &self,
        sql: &str,
        params: &[Param],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |r| {
            out.push(map(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of `sql`, mapped, if there is one.
    pub fn row<T>(
        &self,
        sql: &str,
        params: &[Param],
        map: impl Fn(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut out = None;
        self.query(sql, params, &mut |r| {
            if out.is_none() {
                out = Some(map(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first column of the first row of `sql` (a count, an id).
    pub fn one<T: Column>(&self, sql: &str, params: &[Param]) -> Result<Option<T>, StoreError> {
        self.row(sql, params, |r| r.get(0))
    }
}

/// A backend's way to a connection for one piece of work (a read, or a batch of
/// statements on one connection).
pub trait Db {
    /// Runs `f` on one connection.
    fn with<R>(&self, f: impl FnOnce(&dyn Conn) -> Result<R, StoreError>) -> Result<R, StoreError>;
    /// Whether this store has a fleet's tables (the throttle's rows and key).
    fn fleet(&self) -> bool {
        false
    }
}

/// A backend's write transaction: every write of a management action, then commit.
pub trait Tx: Db {
    /// Commits.
    fn commit_tx(self: Box<Self>) -> Result<(), StoreError>;
}

impl<D: Db> Reader for D {
    fn mailbox(&self, address: &str) -> Result<Option<Mailbox>, StoreError> {
        self.with(|c| mailboxes::by_address(c, address))
    }
    fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        self.with(mailboxes::all)
    }
    fn login(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
        self.with(|c| mailboxes::login(c, login))
    }
    fn users(&self, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError> {
        self.with(|c| mailboxes::users(c, mailbox_id))
    }
    fn history(&self, address: &str, limit: u32) -> Result<Vec<AccessRecord>, StoreError> {
        self.with(|c| history::of_mailbox(c, address, limit))
    }
    fn events(&self, address: &str) -> Result<Vec<Event>, StoreError> {
        self.with(|c| journal::events(c, address))
    }
    fn notices(&self, address: &str) -> Result<Vec<Notice>, StoreError> {
        self.with(|c| journal::notices(c, address))
    }
    fn due_reminders(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError> {
        self.with(|c| mailboxes::due_reminders(c, now, limit))
    }
    fn mail_domains(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.with(mailboxes::mail_domains)
    }
    fn recovery_codes(
        &self,
        mailbox_id: i64,
    ) -> Result<Vec<super::StoredRecoveryCode>, StoreError> {
        self.with(|c| recovery::all(c, mailbox_id))
    }
    fn places(
        &self,
        mailbox_id: i64,
    ) -> Result<
        Vec<(
            crate::policy::usage::Credential,
            crate::policy::usage::Place,
        )>,
        StoreError,
    > {
        self.with(|c| history::places(c, mailbox_id))
    }
    fn not_me_link(&self, hash: &str) -> Result<Option<super::StoredLink>, StoreError> {
        self.with(|c| journal::link(c, hash))
    }
}

impl<T: Tx> Transaction for T {
    fn insert_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError> {
        self.with(|c| {
            let id = mailboxes::insert(c, m, now)?;
            feed::record(c, id)?;
            Ok(id)
        })
    }
    fn save_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<(), StoreError> {
        self.with(|c| {
            mailboxes::save(c, m, now)?;
            feed::record(c, m.id)
        })
    }
    fn delete_mailbox(&mut self, mailbox_id: i64) -> Result<(), StoreError> {
        self.with(|c| {
            mailboxes::delete(c, mailbox_id)?;
            feed::record(c, mailbox_id)
        })
    }
    fn insert_user(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            mailboxes::insert_user(c, mailbox_id, login, password_hash, now)?;
            feed::record(c, mailbox_id)
        })
    }
    fn set_user_password(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = mailboxes::set_user_password(c, mailbox_id, login, password_hash)?;
            if changed {
                feed::record(c, mailbox_id)?;
            }
            Ok(changed)
        })
    }
    fn delete_user(&mut self, mailbox_id: i64, login: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let changed = mailboxes::delete_user(c, mailbox_id, login)?;
            if changed {
                feed::record(c, mailbox_id)?;
            }
            Ok(changed)
        })
    }
    fn set_upstream_secret(&mut self, mailbox_id: i64, sealed: &[u8]) -> Result<(), StoreError> {
        self.with(|c| secrets::set(c, mailbox_id, sealed))
    }
    fn record_event(&mut self, event: &Event) -> Result<(), StoreError> {
        self.with(|c| journal::record_event(c, event))
    }
    fn record_notice(
        &mut self,
        address: &str,
        notice: &Notice,
        email_to: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(|c| journal::record_notice(c, address, notice, email_to, now))
    }
    fn set_next_reminder(
        &mut self,
        app_password_id: i64,
        at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.with(|c| mailboxes::set_next_reminder(c, app_password_id, at))
    }
    fn set_recovery_codes(
        &mut self,
        mailbox_id: i64,
        codes: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(|c| recovery::replace(c, mailbox_id, codes, now))
    }
    fn spend_recovery_code(&mut self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        self.with(|c| recovery::spend(c, id, now))
    }
    fn spend_not_me_link(&mut self, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.with(|c| journal::spend_link(c, hash, now))
    }
    fn claim_reminder(
        &mut self,
        app_password_id: i64,
        expires_at: Timestamp,
        milestone: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(|c| mailboxes::claim_reminder(c, app_password_id, expires_at, milestone, now))
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.commit_tx()
    }
}

impl<D: Db + Send> Outbox for D {
    fn due_emails(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingEmail>, StoreError> {
        self.with(|c| journal::due_emails(c, now, limit))
    }
    fn pending_emails(&self) -> Result<u64, StoreError> {
        self.with(journal::pending_emails)
    }
    fn claim_email(
        &mut self,
        id: i64,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(|c| journal::claim_email(c, id, now, until))
    }
    fn email_tried(
        &mut self,
        id: i64,
        state: DeliveryState,
        retry_at: Option<Timestamp>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(|c| journal::email_tried(c, id, state, retry_at, error, now))
    }
}

impl<D: Db + Send> Retention for D {
    fn delete_older(
        &mut self,
        kind: Kept,
        before: Timestamp,
        batch: usize,
    ) -> Result<usize, StoreError> {
        if kind.fleet_only() && !self.fleet() {
            return Ok(0);
        }
        self.with(|c| retention::delete_older(c, kind, before, batch))
    }
}

impl<D: Db + Send> SealedSecrets for D {
    fn sealed_upstream_secret(&self, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| secrets::get(c, address))
    }
}
