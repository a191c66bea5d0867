//! The embedded backend: SQLite through rusqlite (bundled), in WAL mode with
//! `synchronous=FULL`, so a committed action survives a crash or power loss.
//!
//! Every management action is one `BEGIN IMMEDIATE` transaction: the write lock is taken
//! before anything is read, so two processes changing the same mailbox serialise instead
//! of one overwriting the other's change (a deferred transaction would read, then fail or
//! lose the race on upgrade). `busy_timeout` makes the second writer wait, not fail.
//!
//! The statements and their row mapping are the common SQL layer's
//! ([`crate::store::sql`]); this backend adds its dialect:
//!
//! - `conn`: rusqlite as the layer's connection;
//! - [`schema`]: the migrations, applied on open (`PRAGMA user_version`);
//! - `tables`: a store copy's reads and writes;
//! - here: opening (WAL, `synchronous=FULL`, the busy timeout), the write transaction
//!   (`BEGIN IMMEDIATE`), the change mark (`PRAGMA data_version`), the history batch.

mod conn;
pub mod schema;
mod tables;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::sql::{self, Db, Tx};
use super::{
    AccessLog, Change, HistoryBatch, LoginEntry, ManageStore, PrincipalSource, StoreError,
    Transaction,
};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl From<rusqlite::Error> for StoreError {
    /// Busy or locked beyond the busy timeout, or a full disk, may pass; anything else
    /// (a constraint, a damaged file, a bad statement) will happen again.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let temporary = matches!(
            e.sqlite_error_code(),
            Some(C::DatabaseBusy | C::DatabaseLocked | C::FileLockingProtocolFailed | C::DiskFull)
        );
        StoreError::Backend {
            temporary,
            message: e.to_string(),
        }
    }
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
        // Every statement is prepared once per connection and kept: a management action
        // runs a dozen, an import all of them per line (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(64);
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

    /// How this connection's commits are synced (the access-history writer's own
    /// choice; every other connection syncs each commit).
    pub fn set_sync(&self, sync: crate::store::HistorySync) -> Result<(), StoreError> {
        let mode = match sync {
            crate::store::HistorySync::Full => "FULL",
            crate::store::HistorySync::Normal | crate::store::HistorySync::Journal => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", mode)?;
        Ok(())
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

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

impl Db for SqliteStore {
    fn with<R>(
        &self,
        f: impl FnOnce(&dyn sql::Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        f(&self.conn)
    }
}

/// A write transaction (`BEGIN IMMEDIATE`); rolled back if dropped uncommitted.
struct SqliteTx<'a>(rusqlite::Transaction<'a>);

impl Db for SqliteTx<'_> {
    fn with<R>(
        &self,
        f: impl FnOnce(&dyn sql::Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        f(&*self.0)
    }
}

impl Tx for SqliteTx<'_> {
    fn commit_tx(self: Box<Self>) -> Result<(), StoreError> {
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

    /// A page cache of 256 MiB for this connection (the default is 2 MiB): a million
    /// mailboxes' indexes stay in memory while they are written, instead of each insert
    /// reading its B-tree pages back from the file.
    fn prepare_bulk(&mut self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "cache_size", -262_144)?;
        Ok(())
    }
}

impl PrincipalSource for SqliteStore {
    /// SQLite's `data_version`: it changes whenever another connection (another process
    /// included) commits to the file.
    fn change_mark(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }
    fn local_mark(&self) -> bool {
        true
    }
    fn principal(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
        sql::mailboxes::login(&self.conn, login)
    }
    fn principals_of(&self, mailbox_id: i64) -> Result<Vec<LoginEntry>, StoreError> {
        sql::mailboxes::principals_of(&self.conn, mailbox_id)
    }
    fn last_change(&self) -> Result<i64, StoreError> {
        sql::feed::last(&self.conn)
    }
    fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        sql::feed::since(&self.conn, seq, limit)
    }
}

impl AccessLog for SqliteStore {
    /// One transaction: the rows one by one, then what goes with them. The fleet
    /// throttle's failures and clears are not written: on one machine the throttle is the
    /// process's own.
    fn append(&mut self, batch: &HistoryBatch) -> Result<Vec<crate::store::NewPlace>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for rec in sql::history::resolved(&*tx, &batch.records)?.iter() {
            sql::history::insert(&*tx, rec)?;
        }
        let new = sql::history::around_records(&*tx, batch)?;
        if let Some(mark) = batch.journal {
            tx.execute(
                "INSERT INTO history_journal (id, generation, offset) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, \
                 offset = excluded.offset",
                rusqlite::params![mark.generation as i64, mark.offset as i64],
            )?;
        }
        tx.commit()?;
        Ok(new)
    }

    fn journal_mark(&mut self) -> Result<Option<crate::store::JournalMark>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT generation, offset FROM history_journal WHERE id = 1",
                [],
                |r| {
                    Ok(crate::store::JournalMark {
                        generation: r.get::<_, i64>(0)? as u64,
                        offset: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mailbox;
    use crate::policy::login::{AccessResult, CredentialKind};
    use crate::policy::{Plan, PolicySettings, Protocol};
    use crate::store::rows::ts;
    use crate::store::{AccessRecord, Event, Notice, Outbox, Reader};
    use crate::store::{Actor, Alert, EventAction, NoticeKind};
    use jiff::Timestamp;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const T0: &str = "2024-03-01T10:00:00Z";
    const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested/dir/s.db")).unwrap();
        (dir, store)
    }

    fn add(store: &mut SqliteStore, addr: &str) -> Mailbox {
        let mut m = Mailbox::new(addr.into(), Plan::Standard, None, HASH.into());
        let mut tx = store.begin().unwrap();
        m.id = tx.insert_mailbox(&m, at(T0)).unwrap();
        tx.commit().unwrap();
        m
    }

    #[test]
    fn the_lookup_statements_are_prepared_once() {
        use crate::store::sql::mailboxes::{APP_SELECT, MAILBOX_SELECT, by_address, insert, login};
        let (_dir, store) = store();
        let conn = &store.conn;
        for i in 0..3 {
            let m = Mailbox::new(format!("u{i}@b.it"), Plan::Standard, None, HASH.into());
            insert(conn, &m, Timestamp::UNIX_EPOCH).unwrap();
        }
        for _ in 0..2 {
            for i in 0..3 {
                assert!(login(conn, &format!("u{i}@b.it")).unwrap().is_some());
                assert!(by_address(conn, &format!("u{i}@b.it")).unwrap().is_some());
            }
        }
        let by = |condition: &str| format!("{MAILBOX_SELECT} WHERE {condition}");
        let apps = format!("{APP_SELECT} WHERE mailbox_id = ?1");
        for sql in [by("m.address = ?1"), by("m.id = ?1"), apps] {
            let st = conn.prepare_cached(&sql).unwrap();
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again on use: {sql}"
            );
        }
    }

    /// A store locked beyond the busy timeout may answer later; a refused row will not.
    #[test]
    fn a_lock_held_too_long_is_a_temporary_failure() {
        let (dir, mut s) = store();
        let mut other = SqliteStore::open(&dir.path().join("nested/dir/s.db")).unwrap();
        other.conn.busy_timeout(Duration::ZERO).unwrap();
        let held = s.begin().unwrap();
        let e = other.begin().err().expect("locked");
        assert!(e.is_temporary(), "{e}");
        drop(held);
        let bad = Mailbox::new("a@b.it".into(), Plan::Standard, None, "plaintext".into());
        let mut tx = other.begin().unwrap();
        let e = tx.insert_mailbox(&bad, at(T0)).unwrap_err();
        assert!(!e.is_temporary(), "{e}");
    }

    /// The history writer's connection syncs as asked; every other one syncs each commit.
    #[test]
    fn the_history_connection_syncs_as_asked_and_others_fully() {
        let (_dir, store) = store();
        let sync = |s: &SqliteStore| -> i64 {
            s.conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sync(&store), 2, "FULL");
        store.set_sync(crate::store::HistorySync::Normal).unwrap();
        assert_eq!(sync(&store), 1, "NORMAL");
        store.set_sync(crate::store::HistorySync::Full).unwrap();
        assert_eq!(sync(&store), 2, "FULL");
    }

    #[test]
    fn opening_creates_the_schema_and_is_idempotent() {
        let (dir, store) = store();
        assert_eq!(store.schema_version().unwrap(), schema::latest());
        drop(store);
        let again = SqliteStore::open(&dir.path().join("nested/dir/s.db")).unwrap();
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
    fn migrates_an_empty_file_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.db");
        std::fs::write(&path, b"").unwrap();
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), schema::latest());
        add(&mut s, "a@b.it");
        assert_eq!(s.mailboxes().unwrap().len(), 1);
        s.conn
            .pragma_update(None, "user_version", schema::latest() + 1)
            .unwrap();
        drop(s);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }

    #[test]
    fn events_from_before_the_actor_column_read_as_an_operator() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &schema::MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO events (at, address, action, detail) VALUES (0, 'a@b.it', 'mailbox.add', NULL)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let events = s.events("a@b.it").unwrap();
        assert_eq!(events[0].actor, Actor::Operator("unknown".into()));
        assert_eq!(events[0].action, EventAction::MailboxAdd);
    }

    #[test]
    fn round_trips_every_field() {
        let (_d, mut s) = store();
        let mut m = add(&mut s, "mario@pec.it");
        let settings = PolicySettings::default();
        let secret = crate::policy::totp::DeviceSecret::generate().unwrap();
        let t = at(T0);
        m.plan = Plan::Premium;
        m.contact = Some("c@x.it".into());
        m.set_protocols(&[], &[Protocol::Pop3]).unwrap();
        m.begin_enable_2fa(secret.clone(), t).unwrap();
        m.confirm_device(&secret.code_at(t).unwrap(), t).unwrap();
        let new = crate::policy::mailbox::NewAppPassword {
            name: Some("fatture"),
            scope: Some(crate::policy::ProtocolSet::from_bits(4)),
            selector: "abcd".into(),
            hash: "$argon2id$app".into(),
        };
        m.generate_app_password(new, t, &settings).unwrap();
        m.pending_device = Some(crate::policy::mailbox::PendingDevice {
            secret: crate::policy::totp::DeviceSecret::generate().unwrap(),
            purpose: crate::policy::mailbox::DevicePurpose::Replace,
            since: t,
        });
        m.version = 7;
        let mut tx = s.begin().unwrap();
        tx.save_mailbox(&m, t).unwrap();
        tx.commit().unwrap();
        let back = s.mailbox("mario@pec.it").unwrap().unwrap();
        assert!(
            back.app_passwords[0].id > 0,
            "a new app password gets its id"
        );
        m.app_passwords[0].id = back.app_passwords[0].id;
        assert_eq!(back, m);
        // Saved again without it: the row goes.
        m.app_passwords.clear();
        let mut tx = s.begin().unwrap();
        tx.save_mailbox(&m, t).unwrap();
        tx.commit().unwrap();
        assert!(
            s.mailbox("mario@pec.it")
                .unwrap()
                .unwrap()
                .app_passwords
                .is_empty()
        );
    }

    #[test]
    fn an_uncommitted_transaction_writes_nothing() {
        let (_d, mut s) = store();
        let before = add(&mut s, "a@b.it");
        {
            let mut tx = s.begin().unwrap();
            let mut m = tx.mailbox("a@b.it").unwrap().unwrap();
            m.plan = Plan::Pro;
            tx.save_mailbox(&m, at(T0)).unwrap();
            // dropped: rolled back
        }
        assert_eq!(s.mailbox("a@b.it").unwrap().unwrap(), before);
    }

    #[test]
    fn login_names_are_unique_across_mailboxes_and_users() {
        let (_d, mut s) = store();
        let a = add(&mut s, "a@b.it");
        let c = add(&mut s, "c@d.it");
        let t = at(T0);
        let mut tx = s.begin().unwrap();
        tx.insert_user(a.id, "ufficio@b.it", HASH, t).unwrap();
        assert!(matches!(
            tx.insert_user(c.id, "ufficio@b.it", HASH, t),
            Err(StoreError::LoginTaken(_))
        ));
        assert!(matches!(
            tx.insert_user(c.id, "a@b.it", HASH, t),
            Err(StoreError::LoginTaken(_))
        ));
        let dup = Mailbox::new("ufficio@b.it".into(), Plan::Standard, None, HASH.into());
        assert!(matches!(
            tx.insert_mailbox(&dup, t),
            Err(StoreError::LoginTaken(_))
        ));
        tx.commit().unwrap();
        let user = s.login("ufficio@b.it").unwrap().unwrap();
        assert_eq!(
            (user.mailbox.address.as_str(), user.is_user),
            ("a@b.it", true)
        );
        let own = s.login("a@b.it").unwrap().unwrap();
        assert_eq!(
            (own.mailbox.address.as_str(), own.is_user),
            ("a@b.it", false)
        );
        assert!(s.login("nobody@b.it").unwrap().is_none());
        // The login path's lookup is the same read.
        let found = PrincipalSource::principal(&s, "ufficio@b.it")
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.mailbox.address.as_str(), found.is_user),
            ("a@b.it", true)
        );
        assert!(
            PrincipalSource::principal(&s, "nobody@b.it")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_password_is_stored_only_as_a_hash() {
        let (_d, mut s) = store();
        let bad = Mailbox::new("a@b.it".into(), Plan::Standard, None, "plaintext".into());
        let mut tx = s.begin().unwrap();
        assert!(matches!(
            tx.insert_mailbox(&bad, at(T0)),
            Err(StoreError::Backend {
                temporary: false,
                ..
            })
        ));
    }

    #[test]
    fn a_reason_is_stored_as_its_code_and_an_old_rows_words_are_still_read() {
        use crate::policy::login::{CodeUse, Reason};
        let (_d, mut s) = store();
        let row = |reason| AccessRecord {
            at: at(T0),
            listener: "web".into(),
            protocol: crate::policy::names::Channel::Web,
            client: "127.0.0.1".into(),
            login: "a@b.it".into(),
            address: Some("a@b.it".into()),
            unresolved: None,
            mailbox_id: None,
            software: None,
            credential: CredentialKind::Code,
            app_password: None,
            result: AccessResult::Refused,
            reason: Some(reason),
        };
        let typed = Reason::WrongCode {
            purpose: CodeUse::Login,
            reused: true,
        };
        s.append(&HistoryBatch::of_records(vec![row(typed.clone())]))
            .unwrap();
        // A row written before reasons were codes: its English words.
        s.conn
            .execute(
                "INSERT INTO access_history (at, listener, protocol, client, login, address, credential, \
                 result, reason) VALUES (1, 'imaps', 'imap', '192.0.2.1', 'a@b.it', 'a@b.it', 'unknown', \
                 'refused', 'wrong password')",
                [],
            )
            .unwrap();
        let stored: String = s
            .conn
            .query_row(
                "SELECT reason FROM access_history WHERE listener = 'web'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            stored,
            r#"{"code":"wrong_code","with":{"purpose":"login","reused":true}}"#
        );
        let rows = s.history("a@b.it", 10).unwrap();
        assert_eq!(rows[0].reason, Some(typed));
        assert_eq!(rows[1].reason, Some(Reason::Text("wrong password".into())));
        assert_eq!(
            crate::wording::reason(
                rows[1].reason.as_ref().unwrap(),
                crate::wording::Language::It
            ),
            "password errata"
        );
    }

    /// Accepted logins note where each password was used: one row a network and a
    /// program, counted; a new one is reported for its owner once the password is past
    /// its first hour, at most once an hour a password; at most ten of each kind.
    #[test]
    fn places_are_counted_bounded_and_new_ones_ask_the_owner_at_most_hourly() {
        use crate::policy::usage::{Credential, PlaceKind};
        let (_d, mut s) = store();
        let mut m = add(&mut s, "a@b.it");
        let t = at(T0);
        m.app_passwords
            .push(crate::policy::app_password::AppPassword::new(
                HASH.into(),
                t,
                PolicySettings::default().app_password_validity,
                &jiff::tz::TimeZone::UTC,
            ));
        let mut tx = s.begin().unwrap();
        tx.save_mailbox(&m, t).unwrap();
        tx.commit().unwrap();
        let ap = s.mailbox("a@b.it").unwrap().unwrap().app_passwords[0].id;
        let login = |client: &str, software: Option<&str>, when: Timestamp| AccessRecord {
            at: when,
            listener: "imaps".into(),
            protocol: Protocol::Imap.into(),
            client: client.into(),
            login: "a@b.it".into(),
            address: Some("a@b.it".into()),
            unresolved: None,
            mailbox_id: Some(m.id),
            software: software.map(Into::into),
            credential: CredentialKind::App,
            app_password: Some(crate::store::AppPasswordUse {
                id: ap,
                name: "default".into(),
            }),
            result: AccessResult::Accepted,
            reason: None,
        };
        let mins = |n: i64| t + jiff::SignedDuration::from_mins(n);
        // The first hour: learned, nobody asked.
        let new = s
            .append(&HistoryBatch::of_records(vec![
                login("192.0.2.10", Some("Thunderbird 128"), mins(5)),
                login("192.0.2.11", Some("Thunderbird 128"), mins(6)),
                login("192.0.2.12", Some("mail.example"), mins(7)),
            ]))
            .unwrap();
        assert!(new.is_empty(), "{new:?}");
        // Known places later: nobody asked either.
        assert!(
            s.append(&HistoryBatch::of_records(vec![login(
                "192.0.2.99",
                None,
                mins(120)
            )]))
            .unwrap()
            .is_empty()
        );
        // A new network after the first hour: asked, once, with the login's details.
        let new = s
            .append(&HistoryBatch::of_records(vec![
                login("198.51.100.7", Some("Thunderbird 128"), mins(130)),
                login("203.0.113.5", Some("Evil 1.0"), mins(131)),
            ]))
            .unwrap();
        assert_eq!(new.len(), 1, "at most one an hour a password: {new:?}");
        assert_eq!(new[0].kind, PlaceKind::Network);
        assert_eq!(new[0].value, "198.51.100.0/24");
        assert_eq!(new[0].credential, Credential::App(ap));
        assert_eq!(new[0].client, "198.51.100.7");
        assert_eq!(new[0].app_password.as_deref(), Some("default"));
        // An hour later, another new place asks again.
        let new = s
            .append(&HistoryBatch::of_records(vec![login(
                "203.0.113.9",
                Some("Other"),
                mins(200),
            )]))
            .unwrap();
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(new[0].kind, PlaceKind::Software);
        assert_eq!(new[0].value, "Other");
        let places = s.places(m.id).unwrap();
        let count = |kind, value: &str| {
            places
                .iter()
                .find(|(_, p)| p.kind == kind && p.value == value)
                .map(|(_, p)| (p.uses, p.first_seen, p.last_seen))
        };
        assert_eq!(
            count(PlaceKind::Network, "192.0.2.0/24"),
            Some((4, mins(5), mins(120)))
        );
        assert_eq!(
            count(PlaceKind::Software, "Thunderbird 128"),
            Some((3, mins(5), mins(130)))
        );
        // The last use names the program.
        let last = s.mailbox("a@b.it").unwrap().unwrap().app_passwords[0]
            .last_use
            .clone()
            .unwrap();
        assert_eq!(
            (last.at, last.software.as_deref()),
            (mins(200), Some("Other"))
        );
        // At most ten networks: the least recently seen go.
        let many: Vec<AccessRecord> = (0..12)
            .map(|i| login(&format!("10.0.{i}.1"), None, mins(300 + i)))
            .collect();
        s.append(&HistoryBatch::of_records(many)).unwrap();
        let nets: Vec<String> = s
            .places(m.id)
            .unwrap()
            .into_iter()
            .filter(|(_, p)| p.kind == PlaceKind::Network)
            .map(|(_, p)| p.value)
            .collect();
        assert_eq!(nets.len(), crate::policy::usage::MAX_PLACES, "{nets:?}");
        assert_eq!(nets[0], "10.0.11.0/24");
        assert!(!nets.contains(&"192.0.2.0/24".to_owned()));
        // Refusals and page logins are not places.
        let mut refused = login("172.16.0.1", None, mins(400));
        refused.result = AccessResult::Refused;
        let mut web = login("172.16.1.1", None, mins(400));
        web.protocol = crate::policy::names::Channel::Web;
        s.append(&HistoryBatch::of_records(vec![refused, web]))
            .unwrap();
        assert!(
            !s.places(m.id)
                .unwrap()
                .iter()
                .any(|(_, p)| p.value.starts_with("172.16"))
        );
        // A deactivated password's places go with it.
        let mut m2 = s.mailbox("a@b.it").unwrap().unwrap();
        m2.app_passwords.clear();
        let mut tx = s.begin().unwrap();
        tx.save_mailbox(&m2, mins(500)).unwrap();
        tx.commit().unwrap();
        assert!(s.places(m.id).unwrap().is_empty());
    }

    /// A record answered while the store could not say whose its name is carries the
    /// name; writing it finds the mailbox — of a name that existed then, not one taken
    /// later.
    #[test]
    fn a_record_made_during_an_outage_is_written_with_its_mailbox() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let unresolved = |login: &str, when: &str| AccessRecord {
            at: at(when),
            listener: "imaps".into(),
            protocol: Protocol::Imap.into(),
            client: "127.0.0.1".into(),
            login: login.into(),
            address: None,
            unresolved: Some(login.into()),
            mailbox_id: None,
            software: None,
            credential: CredentialKind::Unknown,
            app_password: None,
            result: AccessResult::TemporaryFailure,
            reason: None,
        };
        s.append(&HistoryBatch::of_records(vec![
            unresolved("a@b.it", "2024-03-01T11:00:00Z"),
            // Before the mailbox was made (T0): not its owner's attempt.
            unresolved("a@b.it", "2024-03-01T09:00:00Z"),
            unresolved("nobody@b.it", "2024-03-01T11:00:00Z"),
        ]))
        .unwrap();
        let h = s.history("a@b.it", 10).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].at, at("2024-03-01T11:00:00Z"));
        assert_eq!(h[0].address.as_deref(), Some("a@b.it"));
        let unknown: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM access_history WHERE address IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unknown, 2);
    }

    #[test]
    fn removal_cascades_users_and_keeps_history_events_and_notices() {
        let (_d, mut s) = store();
        let m = add(&mut s, "a@b.it");
        let t = at(T0);
        let rec = AccessRecord {
            at: t,
            listener: "imaps".into(),
            protocol: Protocol::Imap.into(),
            client: "127.0.0.1".into(),
            login: "u1".into(),
            address: Some("a@b.it".into()),
            unresolved: None,
            mailbox_id: None,
            software: None,
            credential: CredentialKind::Main,
            app_password: None,
            result: AccessResult::Refused,
            reason: Some(crate::policy::login::Reason::WrongPassword),
        };
        s.append(&HistoryBatch::of_records(vec![rec.clone()]))
            .unwrap();
        let mut tx = s.begin().unwrap();
        tx.insert_user(m.id, "u1", HASH, t).unwrap();
        tx.record_notice(
            "a@b.it",
            &Notice::new(t, NoticeKind::TwoFactor, "hello"),
            &[],
            at(T0),
        )
        .unwrap();
        tx.record_event(&Event {
            at: t,
            address: "a@b.it".into(),
            actor: Actor::System,
            action: EventAction::MailboxRemove,
            detail: None,
        })
        .unwrap();
        tx.delete_mailbox(m.id).unwrap();
        tx.commit().unwrap();
        assert!(s.mailbox("a@b.it").unwrap().is_none());
        assert!(s.login("u1").unwrap().is_none());
        assert_eq!(s.history("a@b.it", 10).unwrap(), vec![rec]);
        assert_eq!(s.notices("a@b.it").unwrap().len(), 1);
        assert_eq!(s.events("a@b.it").unwrap()[0].actor, Actor::System);
    }

    #[test]
    fn the_change_mark_moves_when_another_connection_commits() {
        let (dir, mut s) = store();
        let reader = SqliteStore::open(&dir.path().join("nested/dir/s.db")).unwrap();
        let before = reader.change_mark().unwrap();
        assert_eq!(
            reader.change_mark().unwrap(),
            before,
            "no change, same mark"
        );
        add(&mut s, "a@b.it");
        assert_ne!(reader.change_mark().unwrap(), before);
    }

    #[test]
    fn an_alert_is_written_at_most_once_a_period() {
        let (_d, mut s) = store();
        add(&mut s, "a@b.it");
        let alert = |at: &str, quiet: &str| Alert {
            address: "a@b.it".into(),
            email_to: None,
            notice: Notice::new(
                ts(at.parse::<Timestamp>().unwrap().as_second()).unwrap(),
                NoticeKind::MainPasswordUsed,
                format!("used at {at}"),
            ),
            quiet_since: quiet.parse().unwrap(),
            link: None,
        };
        // Two in one batch, a third within the day, a fourth the next day.
        s.append(&HistoryBatch::of_alerts(vec![
            alert("2024-03-01T10:00:00Z", "2024-02-29T10:00:00Z"),
            alert("2024-03-01T10:05:00Z", "2024-02-29T10:05:00Z"),
        ]))
        .unwrap();
        s.append(&HistoryBatch::of_alerts(vec![alert(
            "2024-03-02T09:59:59Z",
            "2024-03-01T09:59:59Z",
        )]))
        .unwrap();
        s.append(&HistoryBatch::of_alerts(vec![alert(
            "2024-03-02T10:00:01Z",
            "2024-03-01T10:00:01Z",
        )]))
        .unwrap();
        let written: Vec<String> = s
            .notices("a@b.it")
            .unwrap()
            .into_iter()
            .map(|n| n.message)
            .collect();
        assert_eq!(
            written,
            [
                "used at 2024-03-02T10:00:01Z",
                "used at 2024-03-01T10:00:00Z"
            ]
        );
        // Another kind of notice does not quiet it.
        let mut tx = s.begin().unwrap();
        tx.record_notice(
            "c@d.it",
            &Notice::new(at(T0), NoticeKind::TwoFactor, "x"),
            &[],
            at(T0),
        )
        .unwrap();
        tx.commit().unwrap();
        let mut other = alert("2024-03-01T10:00:00Z", "2024-01-01T00:00:00Z");
        other.address = "c@d.it".into();
        s.append(&HistoryBatch::of_alerts(vec![other])).unwrap();
        assert_eq!(s.notices("c@d.it").unwrap().len(), 2);
    }

    #[test]
    fn an_e_mail_is_taken_by_one_mailer_and_what_was_said_is_kept() {
        let (dir, mut s) = store();
        let mut other = SqliteStore::open(&dir.path().join("nested/dir/s.db")).unwrap();
        let said = crate::policy::notice::Said::TwoFactorOn { passkey: false };
        let notice = Notice {
            said: Some(said.clone()),
            ..Notice::new(
                at(T0),
                said.kind(),
                "La verifica in 2 passaggi è stata attivata.",
            )
        };
        let mut tx = s.begin().unwrap();
        tx.record_notice("a@b.it", &notice, &["owner@example.com".into()], at(T0))
            .unwrap();
        tx.commit().unwrap();
        let due = s.due_emails(at(T0), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].notice.said, Some(said.clone()));
        assert_eq!(
            other.due_emails(at(T0), 10).unwrap().len(),
            1,
            "both see it due"
        );
        let lease = at("2024-03-01T10:02:00Z");
        assert!(s.claim_email(due[0].id, at(T0), lease).unwrap());
        assert!(
            !other.claim_email(due[0].id, at(T0), lease).unwrap(),
            "the second mailer does not take it"
        );
        assert!(
            other
                .due_emails(at("2024-03-01T10:01:00Z"), 10)
                .unwrap()
                .is_empty()
        );
        // The first mailer died without recording: after the lease it is due again.
        assert_eq!(
            other
                .due_emails(at("2024-03-01T10:02:00Z"), 10)
                .unwrap()
                .len(),
            1
        );
        let n = &s.notices("a@b.it").unwrap()[0];
        assert_eq!(n.said, Some(said));
        assert!(n.message.starts_with("La verifica in 2 passaggi"), "{n:?}");
    }
}
