//! Where Sentinella keeps its state, reached through traits shaped by their consumers:
//!
//! - [`ManageStore`] / [`Transaction`] / [`Reader`]: the management layer — reads, and
//!   one write transaction per action (it decides; the store only persists);
//! - [`PrincipalSource`]: the login path — every login name with what it opens, and a
//!   mark that moves when any of it may have changed;
//! - [`AccessLog`]: the group-committing access-history writer;
//! - [`SealedSecrets`]: the per-mailbox upstream secrets, sealed (`sealed`).
//!
//! [`StoreLocation`] names a backend and opens each consumer's own connection. SQLite
//! ([`sqlite`]) is the embedded default, PostgreSQL (`postgres`) the fleet's. Both speak
//! the statements of [`sql`], written once with their row mapping, which also implements
//! most traits over any backend's connection; a backend adds only its dialect.
//!
//! - [`records`]: the records besides mailboxes (history, events, notices, logins).
//! - [`copy`]: a store copied between backends.

#![cfg_attr(not(feature = "postgres"), allow(unused_variables))]

pub mod copy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod records;
pub(crate) mod rows;
pub(crate) mod sealed;
pub mod sql;
pub mod sqlite;

use std::path::PathBuf;

use jiff::Timestamp;

use crate::policy::Mailbox;
use crate::policy::names::UnknownName;
use crate::policy::usage::{Credential, Place, PlaceKind};
pub use records::{
    AccessRecord, Actor, Alert, AppPasswordUse, Delivery, DeliveryState, Event, EventAction, Kept,
    LoginEntry, NotMeLink, Notice, NoticeKind, OutgoingEmail, Rehash, StoredLink,
    StoredRecoveryCode, UserAccount,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed. `temporary`: the same call may succeed later (a lock held
    /// beyond the busy timeout, the connection lost, the server restarting or overloaded,
    /// a serialization conflict); otherwise it will fail again (a constraint, a statement
    /// the server refuses, a damaged file, settings that cannot be used).
    #[error("database error: {message}")]
    Backend {
        /// Whether trying again later may succeed.
        temporary: bool,
        /// What the driver said.
        message: String,
    },
    /// The store's folder could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store was written by a newer Sentinella.
    #[error(
        "the store has schema version {found}, newer than this build supports ({supported}); upgrade Sentinella"
    )]
    SchemaTooNew {
        /// The store's version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The name is already a mailbox or a multi-user account.
    #[error("the login name {0} is already in use")]
    LoginTaken(String),
    /// A stored value this build cannot read.
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
}

/// Rung when an e-mail was committed to the outbox by this process, so its mailer tries
/// it now rather than at its next look (another process's e-mails wait for that).
pub static OUTBOX_FILLED: tokio::sync::Notify = tokio::sync::Notify::const_new();

impl StoreError {
    /// A failure that trying again later may mend.
    pub fn temporary(message: impl Into<String>) -> StoreError {
        StoreError::Backend {
            temporary: true,
            message: message.into(),
        }
    }

    /// A failure that will happen again.
    pub fn permanent(message: impl Into<String>) -> StoreError {
        StoreError::Backend {
            temporary: false,
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                temporary: true,
                ..
            }
        )
    }
}

impl From<UnknownName> for StoreError {
    fn from(e: UnknownName) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Reads, inside a transaction or outside one.
pub trait Reader {
    /// The mailbox with this (normalised) address.
    fn mailbox(&self, address: &str) -> Result<Option<Mailbox>, StoreError>;
    /// Every mailbox, by address.
    fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError>;
    /// What a (normalised) login name opens.
    fn login(&self, login: &str) -> Result<Option<LoginEntry>, StoreError>;
    /// The multi-user accounts of a mailbox, by name.
    fn users(&self, mailbox_id: i64) -> Result<Vec<UserAccount>, StoreError>;
    /// The access history of a mailbox, newest first, at most `limit` rows.
    fn history(&self, address: &str, limit: u32) -> Result<Vec<AccessRecord>, StoreError>;
    /// The management events of a mailbox, oldest first.
    fn events(&self, address: &str) -> Result<Vec<Event>, StoreError>;
    /// The notices of a mailbox, newest first.
    fn notices(&self, address: &str) -> Result<Vec<Notice>, StoreError>;
    /// The mailboxes with an app-password reminder due at `now` (an indexed read of
    /// only those), at most `limit`.
    fn due_reminders(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError>;
    /// The domains of every mailbox's address.
    fn mail_domains(&self) -> Result<std::collections::BTreeSet<String>, StoreError>;
    /// A mailbox's recovery codes (spent ones too), oldest first.
    fn recovery_codes(&self, mailbox_id: i64) -> Result<Vec<StoredRecoveryCode>, StoreError>;
    /// The networks and programs each password of a mailbox was used from, most recent
    /// first.
    fn places(&self, mailbox_id: i64) -> Result<Vec<(Credential, Place)>, StoreError>;
    /// The "Non sono stato io" link whose token hashes to `hash`.
    fn not_me_link(&self, hash: &str) -> Result<Option<StoredLink>, StoreError>;
}

/// One management action's writes: all of them, or (dropped without [`commit`]) none.
/// The write lock is held from the start, so two front doors changing the same mailbox
/// serialise instead of one overwriting the other.
///
/// [`commit`]: Transaction::commit
pub trait Transaction: Reader {
    /// Adds a mailbox and its own login; returns its id. [`StoreError::LoginTaken`] when
    /// the address is already a login name.
    fn insert_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<i64, StoreError>;
    /// Writes every field of a mailbox (its version included, as the caller set it).
    fn save_mailbox(&mut self, m: &Mailbox, now: Timestamp) -> Result<(), StoreError>;
    /// Removes a mailbox and its logins; history, events and notices stay.
    fn delete_mailbox(&mut self, mailbox_id: i64) -> Result<(), StoreError>;
    /// Adds a multi-user account. [`StoreError::LoginTaken`] when the name is in use.
    fn insert_user(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Sets a multi-user account's password hash; `false` if it has no such account.
    fn set_user_password(
        &mut self,
        mailbox_id: i64,
        login: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError>;
    /// Removes a multi-user account; `false` if it has no such account.
    fn delete_user(&mut self, mailbox_id: i64, login: &str) -> Result<bool, StoreError>;
    /// Stores a mailbox's sealed upstream secret.
    fn set_upstream_secret(&mut self, mailbox_id: i64, sealed: &[u8]) -> Result<(), StoreError>;
    /// Appends a management event.
    fn record_event(&mut self, event: &Event) -> Result<(), StoreError>;
    /// Replaces a mailbox's recovery codes by these (selector, hash) pairs — none: the
    /// set is gone.
    fn set_recovery_codes(
        &mut self,
        mailbox_id: i64,
        codes: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Spends a recovery code; `false` if it was spent already (by anyone).
    fn spend_recovery_code(&mut self, id: i64, now: Timestamp) -> Result<bool, StoreError>;
    /// Spends a "Non sono stato io" link; `false` if it was spent already (by anyone) or
    /// has expired.
    fn spend_not_me_link(&mut self, hash: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Claims one expiry reminder of an app password; `false` if it was claimed before,
    /// by this process or another: each is sent once.
    fn claim_reminder(
        &mut self,
        app_password_id: i64,
        expires_at: Timestamp,
        milestone: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Moves an app password's next expiry reminder (not a login fact: no version bump).
    fn set_next_reminder(
        &mut self,
        app_password_id: i64,
        at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    /// Appends a notice for the owner of `address`, e-mailed to each of `email_to`.
    fn record_notice(
        &mut self,
        address: &str,
        notice: &Notice,
        email_to: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Makes every write of the transaction durable.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// The management layer's store.
pub trait ManageStore: Reader + Send {
    /// Starts one action's transaction, taking the write lock first.
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError>;
    /// A bulk load follows (an import of many mailboxes): the backend may spend more
    /// memory on this connection to keep it fast.
    fn prepare_bulk(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One entry of the change feed: mailbox `mailbox_id` changed (to `version`; `None` when
/// it was removed) in the transaction that wrote entry `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The feed's sequence number, increasing with every commit that writes one.
    pub seq: i64,
    /// The mailbox.
    pub mailbox_id: i64,
    /// Its version after the change, or `None` if it is gone.
    pub version: Option<i64>,
}

/// The login path's store: what the authenticator's principals come from, and the change
/// feed that keeps them fresh (see [`Change`]).
pub trait PrincipalSource: Send {
    /// A mark that moves whenever another connection commits anything (cheap: the login
    /// path asks often); when it moves, [`PrincipalSource::changes_since`] tells what.
    fn change_mark(&self) -> Result<i64, StoreError>;
    /// Whether the mark moves with every commit, the proxy's own access-history writes
    /// included, and [`PrincipalSource::changes_since`] is a local read cheap enough to
    /// make on the login path's own thread (SQLite). `false` (PostgreSQL: the mark moves
    /// with the feed's notifications; reading the feed is a round trip).
    fn local_mark(&self) -> bool {
        false
    }
    /// What one (normalised) login name opens: an indexed read.
    fn principal(&self, login: &str) -> Result<Option<LoginEntry>, StoreError>;
    /// The login names of one mailbox (none if it is gone).
    fn principals_of(&self, mailbox_id: i64) -> Result<Vec<LoginEntry>, StoreError>;
    /// The feed's last sequence number (0 when empty).
    fn last_change(&self) -> Result<i64, StoreError>;
    /// Feed entries after `seq`, in order, at most `limit`.
    fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError>;
    /// Something a follower thread can wait on: it returns when the store may have
    /// changed since it last returned, or after the timeout given. By default it just
    /// sleeps (the follower polls); a backend that is told of changes wakes it at once.
    fn change_waiter(&self) -> ChangeWaiter {
        Box::new(std::thread::sleep)
    }
}

/// See [`PrincipalSource::change_waiter`].
pub type ChangeWaiter = Box<dyn FnMut(std::time::Duration) + Send>;

/// One group commit of the access history, with what rides in its transaction.
#[derive(Debug, Default)]
pub struct HistoryBatch {
    /// The access records.
    pub records: Vec<AccessRecord>,
    /// Alerts, each written unless quieted by an earlier one of its kind.
    pub alerts: Vec<Alert>,
    /// Re-hashes, each written if its login still has the old hash.
    pub rehashes: Vec<Rehash>,
    /// Main passwords found breached, each marked (and its alert written) if it is still
    /// the mailbox's password and not marked yet.
    pub breaches: Vec<Breach>,
    /// Failed logins for the fleet's throttle (a shared store keeps them; on one machine
    /// the throttle lives in memory and these are not written).
    pub failures: Vec<ThrottleFailure>,
    /// Throttle keys cleared by a success, with when (milliseconds since the epoch).
    pub clears: Vec<(String, i64)>,
    /// How far the history journal is applied once this batch is (`history_sync =
    /// "journal"`): written in the same transaction.
    pub journal: Option<JournalMark>,
}

/// A position in the history journal (`history_sync = "journal"`): everything before it
/// is in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalMark {
    /// The journal file's generation.
    pub generation: u64,
    /// The byte offset in it.
    pub offset: u64,
}

impl HistoryBatch {
    /// A batch of access records only.
    pub fn of_records(records: Vec<AccessRecord>) -> Self {
        HistoryBatch {
            records,
            ..HistoryBatch::default()
        }
    }

    /// A batch of alerts only.
    pub fn of_alerts(alerts: Vec<Alert>) -> Self {
        HistoryBatch {
            alerts,
            ..HistoryBatch::default()
        }
    }
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.journal.is_none()
            && self.records.is_empty()
            && self.alerts.is_empty()
            && self.rehashes.is_empty()
            && self.breaches.is_empty()
            && self.failures.is_empty()
            && self.clears.is_empty()
    }

    /// Items waiting in all.
    pub fn len(&self) -> usize {
        self.records.len()
            + self.alerts.len()
            + self.rehashes.len()
            + self.breaches.len()
            + self.failures.len()
            + self.clears.len()
    }
}

/// The access history as the running proxy writes it.
pub trait AccessLog: Send {
    /// Appends a batch durably, in one transaction (one sync for all), recording the last
    /// use of each app password that logged in and the places each password was used
    /// from; returns the new places its owner is to be asked about.
    fn append(&mut self, batch: &HistoryBatch) -> Result<Vec<NewPlace>, StoreError>;

    /// How far the history journal has been applied (none: never).
    fn journal_mark(&mut self) -> Result<Option<JournalMark>, StoreError>;
}

/// A main password proven at a login and found in the lists of stolen passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    /// The mailbox.
    pub mailbox_id: i64,
    /// The hash the password was proven against (it is marked only if still current).
    pub hash: String,
    /// When.
    pub at: Timestamp,
    /// The alert to its owner, written when the mark is new.
    pub alert: Alert,
}

/// A password used from a network or a program it was never used from, which its owner
/// is to be asked about (the store has claimed the password's hourly alert for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPlace {
    /// The mailbox's id.
    pub mailbox_id: i64,
    /// Its address.
    pub address: String,
    /// Which password.
    pub credential: Credential,
    /// The app password's name (none: the main password).
    pub app_password: Option<String>,
    /// A new network or a new program.
    pub kind: PlaceKind,
    /// Which.
    pub value: String,
    /// The login: when, from which address, over which protocol, with which program.
    pub at: Timestamp,
    /// The client's address.
    pub client: String,
    /// The protocol.
    pub protocol: crate::policy::names::Channel,
    /// The program, when the client said.
    pub software: Option<String>,
}

/// One wrong secret against a throttle key, as the fleet counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleFailure {
    /// `a:NETWORK` or `n:LOGIN`.
    pub key: String,
    /// The secret's keyed fingerprint (the fleet's key): the same wrong secret counts once.
    pub fingerprint: i64,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// What the fleet knows of one throttle key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleCount {
    /// The key.
    pub key: String,
    /// Distinct wrong secrets in the window, since the key was last cleared.
    pub distinct: u32,
    /// The last of them, in milliseconds since the epoch.
    pub last_ms: i64,
}

/// The throttle's counts as every node of a fleet sees them (written with the history).
pub trait SharedThrottle: Send {
    /// The key the fleet fingerprints wrong secrets with (made once, the same for all).
    fn fleet_key(&mut self) -> Result<[u8; 32], StoreError>;
    /// The counts of `keys` since `since_ms` (keys without failures are left out).
    fn counts(&self, keys: &[String], since_ms: i64) -> Result<Vec<ThrottleCount>, StoreError>;
}

/// The right to run a job that must run on one node at a time.
pub trait Lease: Send {
    /// Whether this process holds the lease now (taking it if it is free). A holder that
    /// dies loses it.
    fn held(&mut self) -> Result<bool, StoreError>;
}

/// The jobs that run on one node of a fleet at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// The expiry-reminder job.
    Reminders = 1,
    /// History retention.
    Retention = 2,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Reminders => "notice job",
            Job::Retention => "retention",
        }
    }
}

/// A job's lease as the job keeps it between rounds: taken when free, logged when it
/// moves here or away, given up when the store cannot say (the job then skips rounds).
pub struct JobLease {
    location: StoreLocation,
    job: Job,
    lease: Option<Box<dyn Lease>>,
    held: bool,
}

impl JobLease {
    /// The lease of `job` on `location`, not taken yet.
    pub fn new(location: StoreLocation, job: Job) -> JobLease {
        JobLease {
            location,
            job,
            lease: None,
            held: false,
        }
    }

    /// Whether this node runs the job now (blocking: off the reactor).
    pub fn held(&mut self) -> bool {
        let now = match &mut self.lease {
            Some(l) => l.held(),
            None => self.location.lease(self.job).and_then(|mut l| {
                let h = l.held();
                self.lease = Some(l);
                h
            }),
        };
        let held = match now {
            Ok(h) => h,
            Err(e) => {
                if self.held {
                    tracing::warn!(job = self.job.name(), error = %e, "lost the job's lease");
                }
                false
            }
        };
        if held != self.held {
            if held {
                tracing::info!(job = self.job.name(), "this node runs the job now");
            } else {
                tracing::info!(job = self.job.name(), "another node runs the job now");
            }
            self.held = held;
        }
        held
    }
}

/// A lease that is always held: one machine, one store.
struct AlwaysHeld;

impl Lease for AlwaysHeld {
    fn held(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// Retention: old records deleted in small batches, so logins and management actions
/// wait at most one batch for the write lock.
pub trait Retention: Send {
    /// Deletes at most `batch` records of `kind` older than `before`; returns how many.
    fn delete_older(
        &mut self,
        kind: Kept,
        before: Timestamp,
        batch: usize,
    ) -> Result<usize, StoreError>;
}

/// The e-mail outbox, as the mailer works through it.
pub trait Outbox: Send {
    /// E-mails due at `now` (pending, their next try come), oldest first, at most `limit`.
    fn due_emails(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingEmail>, StoreError>;
    /// E-mails waiting to be sent (or tried again), for the metrics.
    fn pending_emails(&self) -> Result<u64, StoreError>;
    /// Takes e-mail `id` for one try, if it is still due at `now` (no other process took
    /// it): it is not due again before `until`, so two mailers on one store never send it
    /// both. Returns whether it was taken.
    fn claim_email(
        &mut self,
        id: i64,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records the outcome of one try: sent, to be tried again at `retry_at`, or failed for
    /// good.
    fn email_tried(
        &mut self,
        id: i64,
        state: DeliveryState,
        retry_at: Option<Timestamp>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}

/// Upstream secrets, sealed at rest (see `store::sealed`).
pub trait SealedSecrets: Send {
    /// The sealed upstream secret of a mailbox, if one was set.
    fn sealed_upstream_secret(&self, address: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Everything the login path reads and writes, for one connection.
trait LoginSide: PrincipalSource + AccessLog + SealedSecrets {}
impl<T: PrincipalSource + AccessLog + SealedSecrets> LoginSide for T {}

/// Where a PostgreSQL store is, and how to reach it (`[store]` with `url`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PgLocation {
    /// The connection URL, without a password.
    pub url: String,
    /// A file holding the password (else `SENTINELLA_STORE_PASSWORD`, else none).
    pub password_file: Option<PathBuf>,
    /// PEM certificates to trust for `sslmode=require` (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// Connections this process keeps, at most.
    pub pool_size: usize,
}

/// The environment variable a password can come from.
pub const PASSWORD_ENV: &str = "SENTINELLA_STORE_PASSWORD";

/// Whether a URL names a PostgreSQL store.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// What a build without the `postgres` feature answers for a PostgreSQL store.
#[cfg(not(feature = "postgres"))]
fn no_postgres<T>() -> Result<T, StoreError> {
    Err(StoreError::permanent(
        "this build of Sentinella has no PostgreSQL support (cargo feature \"postgres\")",
    ))
}

/// A PostgreSQL arm: its expression with the `postgres` feature, an error without.
macro_rules! with_postgres {
    ($e:expr) => {{
        #[cfg(feature = "postgres")]
        {
            $e
        }
        #[cfg(not(feature = "postgres"))]
        {
            no_postgres()
        }
    }};
}

/// How the access history's commits reach the disk (`[store] history_sync`, SQLite).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HistorySync {
    /// Each commit is in the operating system's hands before the login is answered: a
    /// crash of the process (`kill -9`) loses nothing acknowledged; a power cut or a
    /// kernel crash may lose the commits since the write-ahead log was last synced (at
    /// the latest, the next management action's commit or checkpoint).
    #[default]
    Normal,
    /// Each commit is synced to disk (`fsync`) before the login is answered: nothing
    /// acknowledged is lost even by a power cut; one sync per commit.
    Full,
    /// A login is answered once its row is appended (one `write`) to a journal file beside
    /// the store; the store takes the journal's rows in one transaction every
    /// [`crate::audit::journal::LINGER`] and at start. A `kill -9` loses nothing
    /// acknowledged; a power cut may lose what the kernel had not written; readers see a
    /// login's row up to that interval late. SQLite only.
    Journal,
}

/// Which backend holds the state, and where. Each consumer opens its own connection (on
/// PostgreSQL: its own handle on the process's pool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by a fleet.
    Postgres(PgLocation),
}

impl StoreLocation {
    /// Creates the store if needed and brings its schema up to date.
    pub fn prepare(&self) -> Result<(), StoreError> {
        self.open_manage().map(drop)
    }

    /// The management layer's connection.
    pub fn open_manage(&self) -> Result<Box<dyn ManageStore>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgStore::open(pg)?)))
            }
        }
    }

    /// The login path's connection.
    pub fn open_principals(&self) -> Result<Box<dyn PrincipalSource>, StoreError> {
        self.open_login_side()
            .map(|s| s as Box<dyn PrincipalSource>)
    }

    /// The access-history writer's connection, syncing its commits as `sync` says
    /// (SQLite; a PostgreSQL server syncs as its `synchronous_commit` says).
    pub fn open_access_log(&self, sync: HistorySync) -> Result<Box<dyn AccessLog>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => {
                let store = sqlite::SqliteStore::open(path)?;
                store.set_sync(sync)?;
                Ok(Box::new(store))
            }
            StoreLocation::Postgres(_) => self.open_login_side().map(|s| s as Box<dyn AccessLog>),
        }
    }

    /// The mailer's connection.
    pub fn open_outbox(&self) -> Result<Box<dyn Outbox>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgStore::open(pg)?)))
            }
        }
    }

    /// The retention job's connection.
    pub fn open_retention(&self) -> Result<Box<dyn Retention>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgStore::open(pg)?)))
            }
        }
    }

    /// The upstream-secret reader's connection.
    pub fn open_secrets(&self) -> Result<Box<dyn SealedSecrets>, StoreError> {
        self.open_login_side().map(|s| s as Box<dyn SealedSecrets>)
    }

    /// A connection of the backend, as the login path uses it.
    fn open_login_side(&self) -> Result<Box<dyn LoginSide>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgStore::open_following(pg)?)))
            }
        }
    }

    /// The fleet's throttle, if the store is shared (`None` on SQLite: one machine's
    /// throttle is its own memory).
    pub fn open_shared_throttle(&self) -> Result<Option<Box<dyn SharedThrottle>>, StoreError> {
        match self {
            StoreLocation::Sqlite(_) => Ok(None),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Some(Box::new(postgres::PgStore::open(pg)?))))
            }
        }
    }

    /// The lease of `job` (always held on SQLite).
    pub fn lease(&self, job: Job) -> Result<Box<dyn Lease>, StoreError> {
        match self {
            StoreLocation::Sqlite(_) => Ok(Box::new(AlwaysHeld)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgLease::new(pg, job as i64)?)))
            }
        }
    }

    /// Every table, for a copy to or from another store.
    pub fn open_tables(&self) -> Result<Box<dyn copy::Tables>, StoreError> {
        match self {
            StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreLocation::Postgres(pg) => {
                with_postgres!(Ok(Box::new(postgres::PgTables::open(pg)?)))
            }
        }
    }

    /// A store named on the command line: `sqlite:PATH` (or a path), or a PostgreSQL
    /// URL whose password comes from `password_file` or the environment.
    pub fn parse(
        text: &str,
        password_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> Result<StoreLocation, StoreError> {
        if is_url(text) {
            with_postgres!({
                let parsed: tokio_postgres::Config = text
                    .parse()
                    .map_err(|e| StoreError::permanent(format!("{text}: {e}")))?;
                if parsed.get_password().is_some() {
                    return Err(StoreError::permanent(format!(
                        "the URL must not hold the password: use --password-file or {PASSWORD_ENV}"
                    )));
                }
                Ok::<(), StoreError>(())
            })?;
            return Ok(StoreLocation::Postgres(PgLocation {
                url: text.to_owned(),
                password_file,
                ca_file,
                pool_size: 4,
            }));
        }
        let path = text.strip_prefix("sqlite:").unwrap_or(text);
        if path.is_empty() {
            return Err(StoreError::permanent("sqlite: needs a file path"));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    }

    /// Whether several processes on several machines may share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }
}
