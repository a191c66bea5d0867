//! The fleet backend: PostgreSQL, for several proxies sharing one state.
//!
//! The store traits are synchronous and called off the reactor (pool workers, blocking
//! tasks, the history thread); this backend keeps them so. Its connections live on a
//! small runtime of their own (one thread, `postgres`): tokio-postgres connection tasks,
//! the deadpool pool's connects and timeouts, the change-feed listener. A call takes a
//! pooled connection there and then waits for its queries on the calling thread (a
//! tokio-postgres request is a message to the connection task, whatever thread waits).
//! A lost connection is dropped by the pool and the next call connects again.
//!
//! - Every management action is one transaction that first takes the fleet-wide
//!   management lock (a transaction-scoped advisory lock), as SQLite's `BEGIN IMMEDIATE`
//!   does on one machine: two nodes changing one mailbox serialise, and the change feed's
//!   ids are in commit order.
//! - The feed: the `changes` table, as on SQLite, and a trigger that notifies
//!   `sentinella_changes`. Each process holds one listening connection; a notification
//!   moves the change mark at once, with no query. While that connection is down the
//!   mark is an error (the login path then asks the store instead of its cache); when it
//!   is back the mark moves, and the follower reads the feed from its last id.
//! - [`Lease`]s are session advisory locks on a connection of their own: if the node
//!   holding one dies, its connection goes and the lock with it.
//!
//! The statements and their row mapping are the common SQL layer's
//! ([`crate::store::sql`]); `conn` makes a pooled connection its connection. Here: the
//! pool and its runtime, the feed listener, the write lock, leases; [`schema`]: the
//! migrations; `fleet`: the history's rows in one statement and the fleet's throttle;
//! `tables`: a store copy's reads and writes.

mod conn;
mod fleet;
pub mod schema;
mod tables;

pub use tables::PgTables;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::{self, Db, Tx};
use super::{
    AccessLog, Change, HistoryBatch, Lease, LoginEntry, ManageStore, PrincipalSource,
    SharedThrottle, StoreError, ThrottleCount, Transaction,
};
use conn::PgConn;

/// The notification channel of the change feed.
const CHANNEL: &str = "sentinella_changes";
/// Advisory lock keys (one 64-bit space per database): "SNTL" and a number.
const MIGRATE_LOCK: i64 = 0x534e_544c_0000_0001;
const WRITE_LOCK: i64 = 0x534e_544c_0000_0002;
/// Leases are `LEASE_BASE + n` for the named jobs.
const LEASE_BASE: i64 = 0x534e_544c_0000_0100;
/// How long a pool call waits for a connection, and a connect for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a lost feed connection, how soon to try again.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);
/// How often the feed connection proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);

pub use super::{PASSWORD_ENV, PgLocation, is_url};

impl From<tokio_postgres::Error> for StoreError {
    /// The server's own errors by SQLSTATE: a lost or refused connection (08), a
    /// serialization failure or deadlock (40), too many connections or no resources (53),
    /// a server shutting down or a cancelled statement (57), a lock not available (55P03),
    /// a read-only standby after a failover (25006) or a system error (58) may pass;
    /// anything else the server says will happen again. No answer at all (the connection
    /// lost, a timeout) may pass.
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let temporary = ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || ["55P03", "25006"].contains(&code);
                StoreError::Backend {
                    temporary,
                    message: format!("PostgreSQL {code}: {}", db.message()),
                }
            }
            None => {
                let mut text = e.to_string();
                if let Some(source) = std::error::Error::source(&e) {
                    text = format!("{text}: {source}");
                }
                StoreError::temporary(format!("PostgreSQL: {text}"))
            }
        }
    }
}

/// The runtime the connections live on, one per process.
fn runtime() -> tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the PostgreSQL runtime");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(std::future::pending::<()>());
            })
            .expect("spawn the PostgreSQL thread");
        rx.recv().expect("the PostgreSQL runtime")
    })
    .clone()
}

/// Waits for `f` on this thread (any thread: not an async context of ours).
fn wait<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// What the listener tells the followers.
#[derive(Debug, Default)]
struct FeedState {
    /// Moves with each notification, and when the listener (re)connects.
    mark: AtomicI64,
    /// The listener is connected and listening.
    up: AtomicBool,
    started: AtomicBool,
    /// Followers waiting for the mark to move.
    moved: std::sync::Condvar,
    waiting: Mutex<()>,
}

impl FeedState {
    /// The mark moves (a notification, a reconnect, a loss): waiting followers wake.
    fn bump(&self) {
        self.mark.fetch_add(1, Ordering::SeqCst);
        let _guard = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        self.moved.notify_all();
    }

    /// Waits until the mark is no longer `seen`, or `timeout`; returns the mark then.
    fn wait(&self, seen: i64, timeout: Duration) -> i64 {
        let guard = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .moved
            .wait_timeout_while(guard, timeout, |_| self.mark.load(Ordering::SeqCst) == seen);
        self.mark.load(Ordering::SeqCst)
    }
}

/// One database, as this process reaches it: the pool and the feed listener.
pub(crate) struct Backend {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    feed: Arc<FeedState>,
    location: PgLocation,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("url", &self.location.url)
            .finish()
    }
}

/// The backends of this process, one per location: every consumer shares its pool.
static BACKENDS: LazyLock<Mutex<HashMap<PgLocation, Arc<Backend>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The connection settings of `location`: its URL, the password from the file or the
/// environment, a name the server shows, timeouts and keepalives.
fn connection_config(location: &PgLocation) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = location
        .url
        .parse()
        .map_err(|e| StoreError::permanent(format!("store.url: {e}")))?;
    if config.get_password().is_some() {
        return Err(StoreError::permanent(format!(
            "store.url must not hold the password: put it in store.password_file or {PASSWORD_ENV}"
        )));
    }
    let password = match &location.password_file {
        Some(file) => Some(zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| StoreError::permanent(format!("{}: {e}", file.display())))?,
        )),
        None => std::env::var(PASSWORD_ENV)
            .ok()
            .map(zeroize::Zeroizing::new),
    };
    if let Some(p) = &password {
        config.password(p.trim_end_matches(['\r', '\n']));
    }
    if config.get_application_name().is_none() {
        config.application_name("sentinella");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    // No statement waits for ever (a lock held by a stuck node, a server that stops
    // answering): it fails as SQLite's busy timeout does.
    let options = config.get_options().unwrap_or("").to_owned();
    config.options(format!("{options} -c statement_timeout=30000").trim());
    Ok(config)
}

/// TLS to the server (used when the URL says `sslmode=require`): the system's roots and
/// `ca_file`'s, the server's name checked.
fn tls(location: &PgLocation) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = &location.ca_file {
        let pem = std::fs::read(file)
            .map_err(|e| StoreError::permanent(format!("{}: {e}", file.display())))?;
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| StoreError::permanent(format!("{}: {e}", file.display())))?;
            roots
                .add(cert)
                .map_err(|e| StoreError::permanent(format!("{}: {e}", file.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::permanent(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl Backend {
    /// The backend for `location`, made (and the schema brought up to date) on first use.
    pub(crate) fn get(location: &PgLocation) -> Result<Arc<Backend>, StoreError> {
        let mut all = BACKENDS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = all.get(location) {
            return Ok(Arc::clone(b));
        }
        let config = connection_config(location)?;
        let tls = tls(location)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _rt = runtime().enter();
            Pool::builder(manager)
                .max_size(location.pool_size.max(2))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT * 2))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| StoreError::permanent(format!("PostgreSQL pool: {e}")))?
        };
        let backend = Arc::new(Backend {
            pool,
            config,
            tls,
            feed: Arc::new(FeedState::default()),
            location: location.clone(),
        });
        backend.migrate()?;
        all.insert(location.clone(), Arc::clone(&backend));
        Ok(backend)
    }

    /// A pooled connection (connected now if none is idle).
    fn client(&self) -> Result<Object, StoreError> {
        let pool = self.pool.clone();
        let got = wait(runtime().spawn(async move { pool.get().await }))
            .map_err(|e| StoreError::permanent(e.to_string()))?;
        got.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(_) => {
                StoreError::temporary(format!("PostgreSQL: {e}"))
            }
            other => StoreError::permanent(format!("PostgreSQL: {other}")),
        })
    }

    /// Applies the migrations this database lacks, one node at a time.
    fn migrate(&self) -> Result<(), StoreError> {
        let c = self.client()?;
        wait(async {
            c.batch_execute("BEGIN").await?;
            let done: Result<(), StoreError> = async {
                c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                    .await?;
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS sentinella_schema (version BIGINT NOT NULL)",
                )
                .await?;
                let current: i64 = c
                    .query_opt("SELECT version FROM sentinella_schema", &[])
                    .await?
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                let latest = schema::latest();
                if current > latest {
                    return Err(StoreError::SchemaTooNew {
                        found: current,
                        supported: latest,
                    });
                }
                for sql in schema::MIGRATIONS
                    .iter()
                    .skip(usize::try_from(current).unwrap_or(0))
                {
                    c.batch_execute(sql).await?;
                }
                c.execute("DELETE FROM sentinella_schema", &[]).await?;
                c.execute("INSERT INTO sentinella_schema VALUES ($1)", &[&latest])
                    .await?;
                Ok(())
            }
            .await;
            match done {
                Ok(()) => Ok(c.batch_execute("COMMIT").await?),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
    }

    /// Starts following the feed's notifications (once per process).
    fn follow(self: &Arc<Self>) {
        if self.feed.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (config, tls, feed) = (
            self.config.clone(),
            self.tls.clone(),
            Arc::clone(&self.feed),
        );
        runtime().spawn(listen(config, tls, feed));
    }

    /// The feed's mark, or an error while the listener is not connected.
    fn change_mark(&self) -> Result<i64, StoreError> {
        if self.feed.up.load(Ordering::SeqCst) {
            Ok(self.feed.mark.load(Ordering::SeqCst))
        } else {
            Err(StoreError::temporary(
                "PostgreSQL: not following the change feed (its connection is down)",
            ))
        }
    }
}

/// Keeps one connection listening to the change feed, for the life of the process.
async fn listen(config: tokio_postgres::Config, tls: MakeRustlsConnect, feed: Arc<FeedState>) {
    let mut was_up = false;
    let mut said_down = false;
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let notified = Arc::clone(&feed);
                let mut driver = tokio::spawn(async move {
                    std::future::poll_fn(|cx| {
                        loop {
                            match connection.poll_message(cx) {
                                Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => {
                                    notified.bump();
                                }
                                Poll::Ready(Some(Ok(_))) => {}
                                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(e)),
                                Poll::Ready(None) => return Poll::Ready(None),
                                Poll::Pending => return Poll::Pending,
                            }
                        }
                    })
                    .await
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        // Whatever was committed before: the followers read from their
                        // last id.
                        feed.up.store(true, Ordering::SeqCst);
                        feed.bump();
                        if said_down {
                            tracing::info!("following the store's change feed again");
                        }
                        was_up = true;
                        let why = loop {
                            tokio::select! {
                                end = &mut driver => break match end {
                                    Ok(Some(e)) => e.to_string(),
                                    _ => "connection closed".to_owned(),
                                },
                                _ = tokio::time::sleep(HEARTBEAT) => {
                                    let alive = tokio::time::timeout(HEARTBEAT, client.simple_query("")).await;
                                    if !matches!(alive, Ok(Ok(_))) {
                                        break "no answer".to_owned();
                                    }
                                }
                            }
                        };
                        feed.up.store(false, Ordering::SeqCst);
                        feed.bump();
                        tracing::warn!(reason = %why, "lost the store's change feed; logins ask the store until it is back");
                        said_down = true;
                    }
                    Err(e) => {
                        feed.up.store(false, Ordering::SeqCst);
                        if !said_down {
                            tracing::warn!(error = %StoreError::from(e), "cannot listen to the store's change feed");
                            said_down = true;
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => {
                feed.up.store(false, Ordering::SeqCst);
                if !said_down {
                    tracing::warn!(error = %StoreError::from(e), first = !was_up, "cannot connect to the store for its change feed");
                    said_down = true;
                }
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

/// A handle on a PostgreSQL store: each call takes a pooled connection.
pub struct PgStore {
    backend: Arc<Backend>,
    /// Places this store has written (as the history's writer): a batch whose places
    /// are all here is written in one statement. Bounded by [`KNOWN_PLACES`].
    known_places: std::collections::HashSet<PlaceKey>,
}

/// A place's key: mailbox, credential column, kind, value.
type PlaceKey = (i64, i64, &'static str, String);

/// Places remembered by the history's writer, at most (then it starts over).
const KNOWN_PLACES: usize = 100_000;

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.backend.location.url)
            .finish()
    }
}

impl PgStore {
    /// Opens the store at `location` (its schema brought up to date on first open).
    pub fn open(location: &PgLocation) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            backend: Backend::get(location)?,
            known_places: std::collections::HashSet::new(),
        })
    }

    /// Opens it as the login path does: following the change feed (listening before it
    /// returns, so the first change mark is one).
    pub fn open_following(location: &PgLocation) -> Result<PgStore, StoreError> {
        let store = PgStore::open(location)?;
        store.backend.follow();
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT * 2;
        while !store.backend.feed.up.load(Ordering::SeqCst) {
            if std::time::Instant::now() > deadline {
                return store.backend.change_mark().map(|_| store);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(store)
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.one("SELECT version FROM sentinella_schema", &[])?
                .ok_or_else(|| StoreError::Corrupt("no schema version".into()))
        })
    }

    /// A transaction on one pooled connection; `lock`: the management lock first.
    fn transaction(&self, lock: bool) -> Result<PgTx, StoreError> {
        let client = self.backend.client()?;
        let begin = if lock {
            format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        } else {
            "BEGIN".to_owned()
        };
        wait(client.batch_execute(&begin))?;
        Ok(PgTx {
            client: Some(client),
        })
    }
}

impl Db for PgStore {
    fn with<R>(
        &self,
        f: impl FnOnce(&dyn sql::Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let client = self.backend.client()?;
        f(&PgConn(&client))
    }
    fn fleet(&self) -> bool {
        true
    }
}

/// A transaction: rolled back if dropped uncommitted.
struct PgTx {
    client: Option<Object>,
}

impl Db for PgTx {
    fn with<R>(
        &self,
        f: impl FnOnce(&dyn sql::Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.client {
            Some(c) => f(&PgConn(c)),
            None => Err(StoreError::Corrupt("transaction already ended".into())),
        }
    }
    fn fleet(&self) -> bool {
        true
    }
}

impl PgTx {
    /// Runs `f` on the transaction's connection, waiting for it here.
    fn run<T>(
        &self,
        f: impl AsyncFnOnce(&ClientWrapper) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.client {
            Some(c) => wait(f(c)),
            None => Err(StoreError::Corrupt("transaction already ended".into())),
        }
    }
}

impl Tx for PgTx {
    fn commit_tx(mut self: Box<Self>) -> Result<(), StoreError> {
        let client = self.client.take();
        match client {
            Some(c) => match wait(c.batch_execute("COMMIT")) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Its state is unknown: it does not go back to the pool.
                    drop(Object::take(c));
                    Err(e.into())
                }
            },
            None => Ok(()),
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && wait(c.batch_execute("ROLLBACK")).is_err()
        {
            drop(Object::take(c));
        }
    }
}

impl ManageStore for PgStore {
    fn begin(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(self.transaction(true)?))
    }
}

impl PrincipalSource for PgStore {
    /// Moved by the feed's notifications: no query.
    fn change_mark(&self) -> Result<i64, StoreError> {
        self.backend.change_mark()
    }
    fn principal(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
        self.with(|c| sql::mailboxes::login(c, login))
    }
    fn principals_of(&self, mailbox_id: i64) -> Result<Vec<LoginEntry>, StoreError> {
        self.with(|c| sql::mailboxes::principals_of(c, mailbox_id))
    }
    fn last_change(&self) -> Result<i64, StoreError> {
        self.with(sql::feed::last)
    }
    /// Woken by the feed's notifications: a change made on another node reaches this
    /// one's sessions in milliseconds, not at the next poll.
    fn change_waiter(&self) -> super::ChangeWaiter {
        let feed = Arc::clone(&self.backend.feed);
        let mut seen = feed.mark.load(Ordering::SeqCst);
        Box::new(move |timeout| seen = feed.wait(seen, timeout))
    }
    fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        self.with(|c| sql::feed::since(c, seq, limit))
    }
}

impl AccessLog for PgStore {
    fn append(&mut self, batch: &HistoryBatch) -> Result<Vec<crate::store::NewPlace>, StoreError> {
        if batch.journal.is_some() {
            return Err(journal_refused());
        }
        // Rows alone are one statement, atomic by itself: one round trip.
        if fleet::rows_only(batch) {
            let client = self.backend.client()?;
            let records = sql::history::resolved(&PgConn(&client), &batch.records)?;
            return wait(fleet::insert_records(&client, &records)).map(|()| Vec::new());
        }
        let uses = sql::history::uses(&batch.records);
        let key = |p: &sql::history::Seen| -> PlaceKey {
            let (mailbox_id, credential, kind) = p.key;
            (
                mailbox_id,
                credential.column(),
                kind.as_str(),
                p.value.clone(),
            )
        };
        // Logins from places this writer has written before (the usual case: the same
        // programs from the same networks): rows, last uses and places in one statement.
        if fleet::rows_and_uses(batch)
            && uses
                .places
                .iter()
                .all(|p| self.known_places.contains(&key(p)))
        {
            let client = self.backend.client()?;
            let records = sql::history::resolved(&PgConn(&client), &batch.records)?;
            let after = wait(fleet::insert_with_uses(&client, &records, &uses))?;
            // A place pruned or deleted since it was remembered is new again: what a new
            // place does besides its row, in a transaction of its own.
            let again: Vec<_> = uses
                .places
                .iter()
                .zip(after)
                .filter(|(p, n)| *n == p.uses)
                .map(|(p, _)| p)
                .collect();
            if again.is_empty() {
                return Ok(Vec::new());
            }
            let tx = self.transaction(false)?;
            let mut new = Vec::new();
            for p in again {
                tx.with(|c| sql::history::new_place(c, p).map(|n| new.extend(n)))?;
            }
            Box::new(tx).commit_tx()?;
            return Ok(new);
        }
        // The management lock only when a re-hash or a breach mark writes the feed.
        let tx = self.transaction(!batch.rehashes.is_empty() || !batch.breaches.is_empty())?;
        let records =
            tx.with(|c| sql::history::resolved(c, &batch.records).map(|r| r.into_owned()))?;
        tx.run(async |c| fleet::insert_records(c, &records).await)?;
        let mut new = Vec::new();
        tx.with(|c| sql::history::around_records(c, batch).map(|n| new = n))?;
        tx.run(async |c| fleet::throttle_rows(c, batch).await)?;
        Box::new(tx).commit_tx()?;
        if self.known_places.len() + uses.places.len() > KNOWN_PLACES {
            self.known_places.clear();
        }
        self.known_places.extend(uses.places.iter().map(key));
        Ok(new)
    }

    fn journal_mark(&mut self) -> Result<Option<crate::store::JournalMark>, StoreError> {
        Err(journal_refused())
    }
}

/// The history journal is a single node's (the configuration refuses it with a fleet).
fn journal_refused() -> StoreError {
    StoreError::permanent("the history journal (history_sync = \"journal\") is for SQLite only")
}

impl SharedThrottle for PgStore {
    fn fleet_key(&mut self) -> Result<[u8; 32], StoreError> {
        let client = self.backend.client()?;
        wait(fleet::fleet_key(&client))
    }
    fn counts(&self, keys: &[String], since_ms: i64) -> Result<Vec<ThrottleCount>, StoreError> {
        let client = self.backend.client()?;
        wait(fleet::throttle_counts(&client, keys, since_ms))
    }
}

/// A job's lease: a session advisory lock on a connection of its own.
pub struct PgLease {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    key: i64,
    client: Option<tokio_postgres::Client>,
    held: bool,
}

impl PgLease {
    /// The lease numbered `n` on `location`'s database.
    pub fn new(location: &PgLocation, n: i64) -> Result<PgLease, StoreError> {
        let backend = Backend::get(location)?;
        Ok(PgLease {
            config: backend.config.clone(),
            tls: backend.tls.clone(),
            key: LEASE_BASE + n,
            client: None,
            held: false,
        })
    }
}

impl Lease for PgLease {
    fn held(&mut self) -> Result<bool, StoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.held = false;
            let (config, tls) = (self.config.clone(), self.tls.clone());
            let connected = wait(runtime().spawn(async move {
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(connection);
                Ok::<_, tokio_postgres::Error>(client)
            }))
            .map_err(|e| StoreError::permanent(e.to_string()))??;
            self.client = Some(connected);
        }
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let answer = if self.held {
            // Still ours while the connection answers.
            wait(client.simple_query("")).map(|_| true)
        } else {
            wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]))
                .map(|r| r.get::<_, bool>(0))
        };
        match answer {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(e) => {
                self.client = None;
                self.held = false;
                Err(e.into())
            }
        }
    }
}
