//! The embedded database: SQLite through rusqlite (bundled), in WAL mode with
//! `synchronous=FULL`, so a committed action survives a crash or power loss.
//!
//! Every management action is one `BEGIN IMMEDIATE` transaction: the write lock is taken
//! before anything is read, so two processes changing the same mailbox serialise instead of
//! one overwriting the other's change (a deferred transaction would read, then fail or lose
//! the race on upgrade). `busy_timeout` makes the second writer wait rather than fail.
//!
//! - [`schema`]: the migrations, applied on open.
//! - [`sealed`]: upstream secrets encrypted at rest with a key file.

pub mod schema;
pub mod sealed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::policy::app_password::AppPassword;
use crate::policy::mailbox::{Device, DevicePurpose, PendingDevice};
use crate::policy::totp::DeviceSecret;
use crate::policy::{Mailbox, Plan, PolicyError, ProtocolSet};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O, locking beyond the busy timeout, corruption).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store's folder could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was written by a newer Sentinella.
    #[error(
        "the store has schema version {found}, newer than this build supports ({supported}); upgrade Sentinella"
    )]
    SchemaTooNew {
        /// The file's version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// No mailbox has this address.
    #[error("no mailbox {0}")]
    NoMailbox(String),
    /// No login (mailbox or multi-user account) has this name.
    #[error("no login {0}")]
    NoLogin(String),
    /// The name is already a mailbox or a multi-user account.
    #[error("the login name {0} is already in use")]
    LoginTaken(String),
    /// The login is a mailbox address where a multi-user account is required, or the
    /// other way round.
    #[error("{0}")]
    WrongLoginKind(String),
    /// The rules refused the action; nothing was changed.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// A stored value this build cannot read.
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
}

/// A management event to record with an action.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    /// What was done, e.g. `app-password.regenerate`.
    pub action: &'a str,
    /// More detail for the operator (never a secret).
    pub detail: Option<String>,
    /// A notice for the owner, `(kind, message)`, written only if the action succeeds.
    pub notice: Option<(&'a str, String)>,
}

impl<'a> Change<'a> {
    /// An event with just an action name.
    pub fn action(action: &'a str) -> Self {
        Change {
            action,
            detail: None,
            notice: None,
        }
    }
}

/// A multi-user account, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAccount {
    /// Its login name.
    pub login: String,
    /// When it was added.
    pub created_at: Timestamp,
}

/// A recorded management event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// Which mailbox.
    pub address: String,
    /// What.
    pub action: String,
    /// Detail.
    pub detail: Option<String>,
}

/// A notice to the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// When.
    pub at: Timestamp,
    /// Kind, e.g. `device-replaced`.
    pub kind: String,
    /// The text.
    pub message: String,
}

/// One row of the access history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// When.
    pub at: Timestamp,
    /// Listener name.
    pub listener: String,
    /// Protocol.
    pub protocol: String,
    /// Client address.
    pub client: String,
    /// The name the client used.
    pub login: String,
    /// The mailbox it resolved to, if any.
    pub address: Option<String>,
    /// `main`, `app` or `unknown`.
    pub credential: String,
    /// `accepted`, `refused` or `temporary_failure`.
    pub result: String,
    /// Why (never the secret).
    pub reason: Option<String>,
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn secs(ts: Timestamp) -> i64 {
    ts.as_second()
}

fn ts(secs: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_second(secs).map_err(|e| StoreError::Corrupt(format!("timestamp {secs}: {e}")))
}

const MAILBOX_COLUMNS: &str = "m.id, m.address, m.plan, m.contact, m.protocols, m.migration, m.version, \
     m.device_secret, m.device_last_step, m.device_since, m.pending_secret, m.pending_purpose, m.pending_since, \
     m.app_hash, m.app_created_at, m.app_expires_at, m.app_postponed, l.password_hash";

/// The raw columns of one mailbox row, read inside rusqlite's row closure and converted
/// outside it, where our own error type can be used.
struct MailboxRow {
    id: i64,
    address: String,
    plan: String,
    contact: Option<String>,
    protocols: i64,
    migration: bool,
    version: i64,
    device: (Option<Vec<u8>>, Option<i64>, Option<i64>),
    pending: (Option<Vec<u8>>, Option<String>, Option<i64>),
    app: (Option<String>, Option<i64>, Option<i64>, i64),
    password_hash: String,
}

impl MailboxRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(MailboxRow {
            id: r.get(0)?,
            address: r.get(1)?,
            plan: r.get(2)?,
            contact: r.get(3)?,
            protocols: r.get(4)?,
            migration: r.get(5)?,
            version: r.get(6)?,
            device: (r.get(7)?, r.get(8)?, r.get(9)?),
            pending: (r.get(10)?, r.get(11)?, r.get(12)?),
            app: (r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
            password_hash: r.get(17)?,
        })
    }

    fn into_mailbox(self) -> Result<Mailbox, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("mailbox {}: {what}", self.address));
        let plan: Plan = self.plan.parse().map_err(|_| corrupt("plan"))?;
        let protocols =
            ProtocolSet::from_bits(u8::try_from(self.protocols).map_err(|_| corrupt("protocols"))?);
        let device = match self.device {
            (Some(secret), last, Some(since)) => Some(Device {
                secret: DeviceSecret::from_bytes(secret),
                last_step: last
                    .map(|s| u64::try_from(s).map_err(|_| corrupt("device_last_step")))
                    .transpose()?,
                associated_at: ts(since)?,
            }),
            (None, _, _) => None,
            _ => return Err(corrupt("device")),
        };
        let pending_device = match self.pending {
            (Some(secret), Some(purpose), Some(since)) => Some(PendingDevice {
                secret: DeviceSecret::from_bytes(secret),
                purpose: match purpose.as_str() {
                    "enable" => DevicePurpose::Enable,
                    "replace" => DevicePurpose::Replace,
                    _ => return Err(corrupt("pending_purpose")),
                },
                since: ts(since)?,
            }),
            (None, _, _) => None,
            _ => return Err(corrupt("pending device")),
        };
        let app_password = match self.app {
            (Some(hash), Some(created), Some(expires), postponed) => Some(AppPassword {
                hash,
                created_at: ts(created)?,
                expires_at: ts(expires)?,
                postponed: u32::try_from(postponed).map_err(|_| corrupt("app_postponed"))?,
            }),
            (None, _, _, _) => None,
            _ => return Err(corrupt("app password")),
        };
        Ok(Mailbox {
            id: self.id,
            address: self.address,
            plan,
            contact: self.contact,
            protocols,
            migration: self.migration,
            password_hash: self.password_hash,
            device,
            pending_device,
            app_password,
            version: self.version,
        })
    }
}

fn load_mailbox(conn: &Connection, address: &str) -> Result<Mailbox, StoreError> {
    let sql = format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes m JOIN logins l ON l.mailbox_id = m.id AND l.kind = 'mailbox' \
         WHERE m.address = ?1"
    );
    conn.query_row(&sql, [address], MailboxRow::read)
        .optional()?
        .ok_or_else(|| StoreError::NoMailbox(address.to_owned()))?
        .into_mailbox()
}

fn save_mailbox(conn: &Connection, m: &Mailbox, now: Timestamp) -> Result<(), StoreError> {
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
    let (app_hash, app_created, app_expires, app_postponed) = match &m.app_password {
        Some(a) => (
            Some(a.hash.as_str()),
            Some(secs(a.created_at)),
            Some(secs(a.expires_at)),
            i64::from(a.postponed),
        ),
        None => (None, None, None, 0),
    };
    conn.execute(
        "UPDATE mailboxes SET plan = ?2, contact = ?3, protocols = ?4, migration = ?5, version = ?6, updated_at = ?7, \
         device_secret = ?8, device_last_step = ?9, device_since = ?10, \
         pending_secret = ?11, pending_purpose = ?12, pending_since = ?13, \
         app_hash = ?14, app_created_at = ?15, app_expires_at = ?16, app_postponed = ?17 WHERE id = ?1",
        params![
            m.id,
            m.plan.as_str(),
            m.contact,
            i64::from(m.protocols.bits()),
            m.migration,
            m.version,
            secs(now),
            dev_secret,
            dev_step,
            dev_since,
            pend_secret,
            pend_purpose,
            pend_since,
            app_hash,
            app_created,
            app_expires,
            app_postponed
        ],
    )?;
    conn.execute(
        "UPDATE logins SET password_hash = ?2 WHERE mailbox_id = ?1 AND kind = 'mailbox'",
        params![m.id, m.password_hash],
    )?;
    Ok(())
}

fn record(
    conn: &Connection,
    address: &str,
    change: &Change<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (at, address, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![secs(now), address, change.action, change.detail],
    )?;
    if let Some((kind, message)) = &change.notice {
        conn.execute(
            "INSERT INTO notices (address, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![address, secs(now), kind, message],
        )?;
    }
    Ok(())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Ok(Store {
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

    /// Adds a mailbox with its main password hash. Refused if the address is already a
    /// login name (of a mailbox or of a multi-user account).
    pub fn create_mailbox(
        &mut self,
        mut m: Mailbox,
        now: Timestamp,
    ) -> Result<Mailbox, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM logins WHERE login = ?1)",
            [&m.address],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::LoginTaken(m.address));
        }
        tx.execute(
            "INSERT INTO mailboxes (address, plan, contact, protocols, migration, version, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![m.address, m.plan.as_str(), m.contact, i64::from(m.protocols.bits()), m.migration, m.version, secs(now)],
        )?;
        m.id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, ?2, 'mailbox', ?3, ?4)",
            params![m.address, m.id, m.password_hash, secs(now)],
        )?;
        save_mailbox(&tx, &m, now)?;
        record(&tx, &m.address, &Change::action("mailbox.add"), now)?;
        tx.commit()?;
        Ok(m)
    }

    /// The mailbox with this address.
    pub fn mailbox(&self, address: &str) -> Result<Mailbox, StoreError> {
        load_mailbox(&self.conn, address)
    }

    /// Every mailbox, by address.
    pub fn mailboxes(&self) -> Result<Vec<Mailbox>, StoreError> {
        let sql = format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes m JOIN logins l ON l.mailbox_id = m.id AND l.kind = 'mailbox' \
             ORDER BY m.address"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], MailboxRow::read)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(MailboxRow::into_mailbox).collect()
    }

    /// Removes a mailbox and its multi-user accounts. Its access history, notices and
    /// events stay (they are keyed by address) so what happened remains visible.
    pub fn remove_mailbox(&mut self, address: &str, now: Timestamp) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM mailboxes WHERE address = ?1", [address])?;
        if n == 0 {
            return Err(StoreError::NoMailbox(address.to_owned()));
        }
        record(&tx, address, &Change::action("mailbox.remove"), now)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` on a mailbox inside one `BEGIN IMMEDIATE` transaction and records
    /// `change` with it; if `f` fails, nothing is written.
    fn in_mailbox_tx<T>(
        &mut self,
        address: &str,
        change: &Change<'_>,
        now: Timestamp,
        f: impl FnOnce(&Connection, &mut Mailbox) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut m = load_mailbox(&tx, address)?;
        let out = f(&tx, &mut m)?;
        record(&tx, address, change, now)?;
        tx.commit()?;
        Ok(out)
    }

    /// Applies one management action to a mailbox in one transaction: the write lock is
    /// taken first, the mailbox read, `f` applied, and — if anything a login looks at
    /// changed — the version bumped, then the event (and notice) recorded. If `f` refuses,
    /// nothing is written.
    pub fn update_mailbox<T>(
        &mut self,
        address: &str,
        change: Change<'_>,
        now: Timestamp,
        f: impl FnOnce(&mut Mailbox) -> Result<T, PolicyError>,
    ) -> Result<T, StoreError> {
        self.in_mailbox_tx(address, &change, now, |tx, m| {
            let before = m.login_fingerprint();
            let out = f(m)?;
            if m.login_fingerprint() != before {
                m.version += 1;
            }
            save_mailbox(tx, m, now)?;
            Ok(out)
        })
    }

    /// Adds a multi-user account opening `address`, with its own main password hash.
    pub fn add_user(
        &mut self,
        address: &str,
        login: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let change = Change {
            action: "mailbox.add-user",
            detail: Some(login.to_owned()),
            notice: None,
        };
        self.in_mailbox_tx(address, &change, now, |tx, m| {
            let inserted = tx.execute(
                "INSERT INTO logins (login, mailbox_id, kind, password_hash, created_at) VALUES (?1, ?2, 'user', ?3, ?4)",
                params![login, m.id, password_hash, secs(now)],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(StoreError::LoginTaken(login.to_owned())),
                other => other.map(drop).map_err(StoreError::from),
            }
        })
    }

    /// Changes one multi-user account row of `address` with `sql` (parameters: login,
    /// mailbox id, then `extra`), and bumps the mailbox's version: the change affects who
    /// can log in.
    fn change_user(
        &mut self,
        address: &str,
        login: &str,
        sql: &str,
        extra: Option<&str>,
        change: Change<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.in_mailbox_tx(address, &change, now, |tx, m| {
            let n = match extra {
                Some(x) => tx.execute(sql, params![login, m.id, x])?,
                None => tx.execute(sql, params![login, m.id])?,
            };
            if n == 0 {
                return Err(StoreError::NoLogin(format!(
                    "{login} (as a multi-user account of {address})"
                )));
            }
            tx.execute(
                "UPDATE mailboxes SET version = version + 1 WHERE id = ?1",
                [m.id],
            )?;
            Ok(())
        })
    }

    /// Removes a multi-user account of `address`.
    pub fn remove_user(
        &mut self,
        address: &str,
        login: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let change = Change {
            action: "mailbox.remove-user",
            detail: Some(login.to_owned()),
            notice: None,
        };
        self.change_user(
            address,
            login,
            "DELETE FROM logins WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
            None,
            change,
            now,
        )
    }

    /// Sets the main password of a multi-user account of `address`; the mailbox's own
    /// password goes through [`Store::update_mailbox`].
    pub fn set_user_password(
        &mut self,
        address: &str,
        login: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let change = Change {
            action: "mailbox.set-password",
            detail: Some(format!("multi-user account {login}")),
            notice: None,
        };
        self.change_user(
            address,
            login,
            "UPDATE logins SET password_hash = ?3 WHERE login = ?1 AND mailbox_id = ?2 AND kind = 'user'",
            Some(password_hash),
            change,
            now,
        )
    }

    /// Stores the sealed upstream secret of a mailbox (see [`sealed`]).
    pub fn set_upstream_secret(
        &mut self,
        address: &str,
        sealed: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let change = Change::action("mailbox.set-upstream-secret");
        self.in_mailbox_tx(address, &change, now, |tx, m| {
            tx.execute(
                "UPDATE mailboxes SET upstream_secret = ?2 WHERE id = ?1",
                params![m.id, sealed],
            )?;
            Ok(())
        })
    }

    /// The sealed upstream secret of a mailbox, if one was set.
    pub fn upstream_secret(&self, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT upstream_secret FROM mailboxes WHERE address = ?1",
                [address],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The multi-user accounts of a mailbox.
    pub fn users(&self, address: &str) -> Result<Vec<UserAccount>, StoreError> {
        let m = load_mailbox(&self.conn, address)?;
        let mut stmt = self
            .conn
            .prepare("SELECT login, created_at FROM logins WHERE mailbox_id = ?1 AND kind = 'user' ORDER BY login")?;
        let rows = stmt
            .query_map([m.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(login, at)| {
                Ok(UserAccount {
                    login,
                    created_at: ts(at)?,
                })
            })
            .collect()
    }

    /// What a login name opens: the mailbox, the login's own main password hash, and
    /// whether it is a multi-user account. `None` for an unknown name.
    pub fn lookup_login(&self, login: &str) -> Result<Option<(Mailbox, String, bool)>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT m.address, l.password_hash, l.kind FROM logins l JOIN mailboxes m ON m.id = l.mailbox_id \
                 WHERE l.login = ?1",
                [login],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?;
        let Some((address, hash, kind)) = row else {
            return Ok(None);
        };
        Ok(Some((
            load_mailbox(&self.conn, &address)?,
            hash,
            kind == "user",
        )))
    }

    /// Every login name with the mailbox it opens, its own password hash, and whether it
    /// is a multi-user account: what the proxy's in-memory snapshot is built from.
    pub fn principals(&self) -> Result<Vec<(String, Mailbox, String, bool)>, StoreError> {
        let mailboxes: std::collections::HashMap<i64, Mailbox> =
            self.mailboxes()?.into_iter().map(|m| (m.id, m)).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT login, mailbox_id, password_hash, kind FROM logins")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(login, id, hash, kind)| {
                mailboxes
                    .get(&id)
                    .map(|m| (login, m.clone(), hash, kind == "user"))
            })
            .collect())
    }

    /// SQLite's `data_version`: changes whenever another connection (another process
    /// included) commits to the file.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    /// Appends many access-history rows in one transaction (one fsync for all).
    pub fn record_access_batch(&mut self, records: &[AccessRecord]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, result, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for rec in records {
                stmt.execute(params![
                    secs(rec.at),
                    rec.listener,
                    rec.protocol,
                    rec.client,
                    rec.login,
                    rec.address,
                    rec.credential,
                    rec.result,
                    rec.reason
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The management events of a mailbox, oldest first.
    pub fn events(&self, address: &str) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, address, action, detail FROM events WHERE address = ?1 ORDER BY id",
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
            .map(|(at, address, action, detail)| {
                Ok(Event {
                    at: ts(at)?,
                    address,
                    action,
                    detail,
                })
            })
            .collect()
    }

    /// The notices of a mailbox, newest first.
    pub fn notices(&self, address: &str) -> Result<Vec<Notice>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, kind, message FROM notices WHERE address = ?1 ORDER BY at DESC, id DESC",
        )?;
        let rows = stmt
            .query_map([address], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(at, kind, message)| {
                Ok(Notice {
                    at: ts(at)?,
                    kind,
                    message,
                })
            })
            .collect()
    }

    /// Appends one row to the access history.
    pub fn record_access(&self, rec: &AccessRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, result, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                secs(rec.at),
                rec.listener,
                rec.protocol,
                rec.client,
                rec.login,
                rec.address,
                rec.credential,
                rec.result,
                rec.reason
            ],
        )?;
        Ok(())
    }

    /// The access history of a mailbox, newest first, at most `limit` rows.
    pub fn access_history(
        &self,
        address: &str,
        limit: u32,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, listener, protocol, client, login, address, credential, result, reason FROM access_history \
             WHERE address = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![address, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    AccessRecord {
                        at: Timestamp::UNIX_EPOCH,
                        listener: r.get(1)?,
                        protocol: r.get(2)?,
                        client: r.get(3)?,
                        login: r.get(4)?,
                        address: r.get(5)?,
                        credential: r.get(6)?,
                        result: r.get(7)?,
                        reason: r.get(8)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(at, rec)| Ok(AccessRecord { at: ts(at)?, ..rec }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySettings, Protocol};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const T0: &str = "2024-03-01T10:00:00Z";
    const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("nested/dir/s.db")).unwrap();
        (dir, store)
    }

    fn add(store: &mut Store, addr: &str) -> Mailbox {
        store
            .create_mailbox(
                Mailbox::new(addr.into(), Plan::Standard, None, HASH.into()),
                at(T0),
            )
            .unwrap()
    }

    #[test]
    fn opening_creates_the_schema_and_is_idempotent() {
        let (dir, store) = store();
        assert_eq!(store.schema_version().unwrap(), schema::latest());
        drop(store);
        let again = Store::open(&dir.path().join("nested/dir/s.db")).unwrap();
        assert_eq!(again.schema_version().unwrap(), schema::latest());
        let mode: String = again
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = again
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn migrates_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.db");
        std::fs::write(&path, b"").unwrap();
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), schema::latest());
        add(&mut s, "a@b.it");
        assert_eq!(s.mailboxes().unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let (dir, store) = store();
        store
            .conn
            .pragma_update(None, "user_version", schema::latest() + 1)
            .unwrap();
        drop(store);
        let err = Store::open(&dir.path().join("nested/dir/s.db")).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }

    #[test]
    fn round_trips_every_field() {
        let (_d, mut s) = store();
        add(&mut s, "mario@pec.it");
        let settings = PolicySettings::default();
        let secret = crate::policy::totp::DeviceSecret::generate().unwrap();
        let t = at(T0);
        let code = secret.code_at(t).unwrap();
        let s2 = secret.clone();
        s.update_mailbox("mario@pec.it", Change::action("x"), t, move |m| {
            m.plan = Plan::Premium;
            m.contact = Some("c@x.it".into());
            m.set_protocols(&[], &[Protocol::Pop3]);
            m.begin_enable_2fa(s2, t)?;
            m.confirm_device(&code, t)?;
            m.generate_app_password("$argon2id$app".into(), t, &settings)?;
            m.pending_device = Some(crate::policy::mailbox::PendingDevice {
                secret: crate::policy::totp::DeviceSecret::generate().unwrap(),
                purpose: DevicePurpose::Replace,
                since: t,
            });
            Ok(())
        })
        .unwrap();
        let m = s.mailbox("mario@pec.it").unwrap();
        assert_eq!(m.plan, Plan::Premium);
        assert_eq!(m.contact.as_deref(), Some("c@x.it"));
        assert!(!m.protocols.contains(Protocol::Pop3) && m.protocols.contains(Protocol::Imap));
        assert_eq!(m.device.as_ref().unwrap().secret, secret);
        assert!(m.device.as_ref().unwrap().last_step.is_some());
        assert_eq!(
            m.pending_device.as_ref().unwrap().purpose,
            DevicePurpose::Replace
        );
        assert_eq!(
            m.app_password.as_ref().unwrap().expires_at,
            at("2024-06-01T10:00:00Z")
        );
        assert_eq!(m.version, 2, "one action, one bump");
    }

    #[test]
    fn version_bumps_only_when_login_facts_change() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let t = at(T0);
        s.update_mailbox("a@b.it", Change::action("noop"), t, |_| Ok(()))
            .unwrap();
        assert_eq!(s.mailbox("a@b.it").unwrap().version, 1);
        s.update_mailbox("a@b.it", Change::action("migration"), t, |m| {
            m.start_migration()
        })
        .unwrap();
        assert_eq!(s.mailbox("a@b.it").unwrap().version, 1);
        s.update_mailbox("a@b.it", Change::action("plan"), t, |m| {
            m.plan = Plan::Pro;
            Ok(())
        })
        .unwrap();
        assert_eq!(s.mailbox("a@b.it").unwrap().version, 2);
    }

    #[test]
    fn a_refused_action_writes_nothing() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let before = s.mailbox("a@b.it").unwrap();
        let err = s
            .update_mailbox("a@b.it", Change::action("x"), at(T0), |m| {
                m.plan = Plan::Pro; // changed, then refused: must not be saved
                m.deactivate_app_password()
            })
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Policy(PolicyError::NoAppPassword)
        ));
        assert_eq!(s.mailbox("a@b.it").unwrap(), before);
        assert_eq!(s.events("a@b.it").unwrap().len(), 1, "only mailbox.add");
    }

    #[test]
    fn login_names_are_unique_across_mailboxes_and_users() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        add(&mut s, "c@d.it");
        let t = at(T0);
        s.add_user("a@b.it", "ufficio@b.it", HASH, t).unwrap();
        assert!(matches!(
            s.add_user("c@d.it", "ufficio@b.it", HASH, t),
            Err(StoreError::LoginTaken(_))
        ));
        assert!(matches!(
            s.add_user("c@d.it", "a@b.it", HASH, t),
            Err(StoreError::LoginTaken(_))
        ));
        let dup = Mailbox::new("ufficio@b.it".into(), Plan::Standard, None, HASH.into());
        assert!(matches!(
            s.create_mailbox(dup, t),
            Err(StoreError::LoginTaken(_))
        ));
        let (m, _, is_user) = s.lookup_login("ufficio@b.it").unwrap().unwrap();
        assert_eq!((m.address.as_str(), is_user), ("a@b.it", true));
        let (m, _, is_user) = s.lookup_login("a@b.it").unwrap().unwrap();
        assert_eq!((m.address.as_str(), is_user), ("a@b.it", false));
        assert!(s.lookup_login("nobody@b.it").unwrap().is_none());
    }

    #[test]
    fn user_password_change_and_removal_bump_the_mailbox_version() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let t = at(T0);
        s.add_user("a@b.it", "u1", HASH, t).unwrap();
        s.set_user_password("a@b.it", "u1", "$argon2id$other", t)
            .unwrap();
        assert_eq!(s.lookup_login("u1").unwrap().unwrap().1, "$argon2id$other");
        assert_eq!(s.mailbox("a@b.it").unwrap().version, 2);
        s.remove_user("a@b.it", "u1", t).unwrap();
        assert_eq!(s.mailbox("a@b.it").unwrap().version, 3);
        assert!(s.lookup_login("u1").unwrap().is_none());
        assert!(matches!(
            s.remove_user("a@b.it", "u1", t),
            Err(StoreError::NoLogin(_))
        ));
        // The mailbox's own login is not a multi-user account.
        assert!(matches!(
            s.set_user_password("a@b.it", "a@b.it", HASH, t),
            Err(StoreError::NoLogin(_))
        ));
    }

    #[test]
    fn only_argon2id_hashes_can_be_stored() {
        let (_d, mut s) = store();
        let bad = Mailbox::new("a@b.it".into(), Plan::Standard, None, "plaintext".into());
        assert!(matches!(
            s.create_mailbox(bad, at(T0)),
            Err(StoreError::Sqlite(_))
        ));
    }

    #[test]
    fn removal_cascades_users_and_keeps_history() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let t = at(T0);
        s.add_user("a@b.it", "u1", HASH, t).unwrap();
        let rec = AccessRecord {
            at: t,
            listener: "imaps".into(),
            protocol: "imap".into(),
            client: "127.0.0.1".into(),
            login: "u1".into(),
            address: Some("a@b.it".into()),
            credential: "main".into(),
            result: "refused".into(),
            reason: Some("wrong password".into()),
        };
        s.record_access(&rec).unwrap();
        s.remove_mailbox("a@b.it", t).unwrap();
        assert!(matches!(s.mailbox("a@b.it"), Err(StoreError::NoMailbox(_))));
        assert!(s.lookup_login("u1").unwrap().is_none());
        assert_eq!(s.access_history("a@b.it", 10).unwrap(), vec![rec]);
        let actions: Vec<String> = s
            .events("a@b.it")
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            ["mailbox.add", "mailbox.add-user", "mailbox.remove"]
        );
        assert!(matches!(
            s.remove_mailbox("a@b.it", t),
            Err(StoreError::NoMailbox(_))
        ));
    }

    #[test]
    fn notices_are_written_with_successful_actions_only() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let t = at(T0);
        let change = || Change {
            action: "x",
            detail: None,
            notice: Some(("kind", "hello".into())),
        };
        s.update_mailbox("a@b.it", change(), t, |_| Ok(())).unwrap();
        let _ = s.update_mailbox("a@b.it", change(), t, |m| m.deactivate_app_password());
        let notices = s.notices("a@b.it").unwrap();
        assert_eq!(
            notices,
            vec![Notice {
                at: t,
                kind: "kind".into(),
                message: "hello".into()
            }]
        );
    }
}
