//! The principals in memory: every login name with its mailbox and hash, kept fresh by
//! the store's change feed. Logins read it without touching the store.
//!
//! Freshness, proportional to change: the store's change mark ([`PrincipalSource::
//! change_mark`]; on SQLite its `data_version`) moves whenever another connection commits.
//! The login path asks for it at most once a millisecond ([`LiveSnapshot::stale`], a few
//! microseconds); when it moved, [`LiveSnapshot::refresh`] reads the feed after its last
//! sequence number and re-reads only the mailboxes named there (two indexed reads each).
//! A commit that names none — the proxy's own access-history writes — costs one empty
//! indexed read. The mailboxes refreshed are then reviewed for their open sessions
//! ([`Sessions::review`]). A background thread also polls, so an idle proxy is fresh too.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use super::sessions::Sessions;
use crate::policy::Mailbox;
use crate::store::{LoginEntry, PrincipalSource, StoreError};

/// Feed entries read per query while catching up.
const FEED_BATCH: u32 = 10_000;

/// One login name.
#[derive(Debug)]
pub struct Principal {
    /// The mailbox it opens.
    pub mailbox: Arc<Mailbox>,
    /// Its own main password hash.
    pub hash: String,
}

/// Every principal, by name, and the names of each mailbox.
#[derive(Debug, Default)]
pub struct Snapshot {
    principals: HashMap<String, Arc<Principal>>,
    by_mailbox: HashMap<i64, Vec<String>>,
}

impl Snapshot {
    /// Reads every principal from `store`.
    pub fn load(store: &dyn PrincipalSource) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let mut shared: HashMap<i64, Arc<Mailbox>> = HashMap::new();
        for entry in store.principals()? {
            let mailbox = Arc::clone(
                shared
                    .entry(entry.mailbox.id)
                    .or_insert_with(|| Arc::new(entry.mailbox)),
            );
            snapshot.insert(entry.login, mailbox, entry.password_hash);
        }
        Ok(snapshot)
    }

    fn insert(&mut self, login: String, mailbox: Arc<Mailbox>, hash: String) {
        self.by_mailbox
            .entry(mailbox.id)
            .or_default()
            .push(login.clone());
        self.principals
            .insert(login, Arc::new(Principal { mailbox, hash }));
    }

    /// Replaces what is held for mailbox `id` with `entries` (its current logins; none
    /// when it is gone).
    fn replace(&mut self, id: i64, entries: Vec<LoginEntry>) {
        for login in self.by_mailbox.remove(&id).unwrap_or_default() {
            if self
                .principals
                .get(&login)
                .is_some_and(|p| p.mailbox.id == id)
            {
                self.principals.remove(&login);
            }
        }
        let mut mailbox = None;
        for e in entries {
            let m = mailbox.get_or_insert_with(|| Arc::new(e.mailbox));
            self.insert(e.login, Arc::clone(m), e.password_hash);
        }
    }

    /// The principal for a (normalised) login name.
    pub fn get(&self, login: &str) -> Option<&Arc<Principal>> {
        self.principals.get(login)
    }

    /// How many login names there are.
    pub fn len(&self) -> usize {
        self.principals.len()
    }
}

/// The store side of a [`LiveSnapshot`]: its connection, the change mark and the feed
/// position it has seen.
struct Follower {
    store: Box<dyn PrincipalSource>,
    mark: i64,
    seq: i64,
}

/// The current principals, kept fresh.
pub struct LiveSnapshot {
    current: RwLock<Snapshot>,
    store: Mutex<Follower>,
    sessions: Arc<Sessions>,
    epoch: Instant,
    /// Microseconds after `epoch` of the last `data_version` look.
    last_look: AtomicU64,
}

/// How often, at most, the login path looks at `data_version`.
const LOOK_EVERY: Duration = Duration::from_millis(1);

impl std::fmt::Debug for LiveSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveSnapshot({} principals)", self.read().len())
    }
}

impl LiveSnapshot {
    /// Loads the principals from `store` and starts a thread that follows its change feed
    /// every `poll`, reviewing `sessions` of each changed mailbox. The thread ends when the
    /// `LiveSnapshot` is dropped.
    pub fn start(
        store: Box<dyn PrincipalSource>,
        poll: Duration,
        sessions: Arc<Sessions>,
    ) -> Result<Arc<LiveSnapshot>, StoreError> {
        // The feed position first: a change committed during the load is read again.
        let mark = store.change_mark()?;
        let seq = store.last_change()?;
        let snapshot = Snapshot::load(&*store)?;
        let live = Arc::new(LiveSnapshot {
            current: RwLock::new(snapshot),
            store: Mutex::new(Follower { store, mark, seq }),
            sessions,
            epoch: Instant::now(),
            last_look: AtomicU64::new(0),
        });
        let weak: Weak<LiveSnapshot> = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(poll);
                    let Some(live) = weak.upgrade() else { return };
                    if let Err(e) = live.refresh() {
                        tracing::error!(error = %e, "cannot follow the store's changes; serving the previous state");
                    }
                }
            })
            .expect("spawn the snapshot thread");
        Ok(live)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal for a (normalised) login name.
    pub fn get(&self, login: &str) -> Option<Arc<Principal>> {
        self.read().get(login).cloned()
    }

    /// Whether the store changed since it was last followed, looking at most once per
    /// millisecond (other calls in between answer `false` at once).
    pub fn stale(&self) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        let last = self.last_look.load(Ordering::Relaxed);
        if now.saturating_sub(last) < LOOK_EVERY.as_micros() as u64
            || self
                .last_look
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let Ok(guard) = self.store.try_lock() else {
            return false;
        };
        guard
            .store
            .change_mark()
            .map(|v| v != guard.mark)
            .unwrap_or(false)
    }

    /// Follows the feed now if the store changed: refreshes the mailboxes it names and
    /// reviews their sessions. Returns whether any mailbox was refreshed.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let mut f = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let mark = f.store.change_mark()?;
        if mark == f.mark {
            return Ok(false);
        }
        let mut changed = BTreeSet::new();
        let mut seq = f.seq;
        loop {
            let batch = f.store.changes_since(seq, FEED_BATCH)?;
            let full = batch.len() == FEED_BATCH as usize;
            for c in batch {
                seq = c.seq;
                changed.insert(c.mailbox_id);
            }
            if !full {
                break;
            }
        }
        // A burst of changes to one mailbox is one refresh.
        let mut fresh = Vec::with_capacity(changed.len());
        for &id in &changed {
            fresh.push((id, f.store.principals_of(id)?));
        }
        {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            for (id, entries) in fresh {
                current.replace(id, entries);
            }
        }
        f.mark = mark;
        f.seq = seq;
        drop(f);
        let now = super::authenticator::now();
        for id in &changed {
            self.sessions.review(*id, |login| self.get(login), now);
        }
        Ok(!changed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    use super::*;
    use crate::policy::login::{AccessResult, CredentialKind};
    use crate::policy::{Plan, Protocol};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AccessLog, AccessRecord, Change, ManageStore};

    const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

    /// The SQLite source, counting the per-mailbox reads and full loads it serves.
    struct Counting {
        inner: SqliteStore,
        per_mailbox: Arc<AtomicUsize>,
        full: Arc<AtomicUsize>,
    }

    impl PrincipalSource for Counting {
        fn change_mark(&self) -> Result<i64, StoreError> {
            self.inner.change_mark()
        }
        fn principals(&self) -> Result<Vec<LoginEntry>, StoreError> {
            self.full.fetch_add(1, Ordering::Relaxed);
            self.inner.principals()
        }
        fn principals_of(&self, id: i64) -> Result<Vec<LoginEntry>, StoreError> {
            self.per_mailbox.fetch_add(1, Ordering::Relaxed);
            self.inner.principals_of(id)
        }
        fn last_change(&self) -> Result<i64, StoreError> {
            self.inner.last_change()
        }
        fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
            self.inner.changes_since(seq, limit)
        }
    }

    fn add(store: &mut SqliteStore, address: &str) -> Mailbox {
        let mut m = Mailbox::new(address.into(), Plan::Standard, None, HASH.into());
        let mut tx = store.begin().unwrap();
        m.id = tx.insert_mailbox(&m, Timestamp::now()).unwrap();
        tx.commit().unwrap();
        m
    }

    fn history_row() -> AccessRecord {
        AccessRecord {
            at: Timestamp::now(),
            listener: "imaps".into(),
            protocol: Protocol::Imap.into(),
            client: "127.0.0.1".into(),
            login: "a@b.it".into(),
            address: Some("a@b.it".into()),
            credential: CredentialKind::Main,
            app_password: None,
            result: AccessResult::Accepted,
            reason: None,
        }
    }

    #[test]
    fn follows_the_feed_per_mailbox_and_ignores_history_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        let mut a = add(&mut writer, "a@b.it");
        add(&mut writer, "c@d.it");
        let (per_mailbox, full) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let source = Counting {
            inner: SqliteStore::open(&path).unwrap(),
            per_mailbox: Arc::clone(&per_mailbox),
            full: Arc::clone(&full),
        };
        let poll = Duration::from_secs(3_600);
        let live =
            LiveSnapshot::start(Box::new(source), poll, Sessions::new(TimeZone::UTC)).unwrap();
        assert_eq!(live.read().len(), 2);
        assert_eq!(full.load(Ordering::Relaxed), 1);

        // The proxy's own history writes move the mark but name no mailbox.
        writer.append(&[history_row()], &[]).unwrap();
        assert!(!live.refresh().unwrap(), "nothing to refresh");
        assert_eq!(per_mailbox.load(Ordering::Relaxed), 0);

        // A burst of 30 changes to one mailbox is one read of it.
        for i in 0..30 {
            a.version += 1;
            a.plan = if i % 2 == 0 { Plan::Pro } else { Plan::Premium };
            let mut tx = writer.begin().unwrap();
            tx.save_mailbox(&a, Timestamp::now()).unwrap();
            tx.commit().unwrap();
        }
        assert!(live.refresh().unwrap());
        assert_eq!(per_mailbox.load(Ordering::Relaxed), 1);
        assert_eq!(live.get("a@b.it").unwrap().mailbox.plan, Plan::Premium);
        assert_eq!(live.get("a@b.it").unwrap().mailbox.version, a.version);

        // A multi-user account added, then the mailbox removed with it.
        let mut tx = writer.begin().unwrap();
        tx.insert_user(a.id, "mario", HASH, Timestamp::now())
            .unwrap();
        tx.commit().unwrap();
        live.refresh().unwrap();
        assert_eq!(live.get("mario").unwrap().mailbox.id, a.id);
        let mut tx = writer.begin().unwrap();
        tx.delete_mailbox(a.id).unwrap();
        tx.commit().unwrap();
        assert!(live.refresh().unwrap());
        assert!(live.get("a@b.it").is_none());
        assert!(live.get("mario").is_none());
        assert!(live.get("c@d.it").is_some(), "the other mailbox stays");
        assert_eq!(full.load(Ordering::Relaxed), 1, "never reloaded in full");

        // A rolled-back transaction leaves nothing in the feed.
        let last = writer.last_change().unwrap();
        let mut tx = writer.begin().unwrap();
        add_in(&mut *tx, "e@f.it");
        drop(tx);
        assert_eq!(writer.last_change().unwrap(), last);
    }

    fn add_in(tx: &mut dyn crate::store::Transaction, address: &str) {
        let m = Mailbox::new(address.into(), Plan::Standard, None, HASH.into());
        tx.insert_mailbox(&m, Timestamp::now()).unwrap();
    }

    #[test]
    fn a_restarted_follower_starts_from_the_current_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        add(&mut writer, "a@b.it");
        let poll = Duration::from_secs(3_600);
        let open = || Box::new(SqliteStore::open(&path).unwrap());
        let first = LiveSnapshot::start(open(), poll, Sessions::new(TimeZone::UTC)).unwrap();
        drop(first);
        add(&mut writer, "c@d.it");
        let second = LiveSnapshot::start(open(), poll, Sessions::new(TimeZone::UTC)).unwrap();
        assert!(second.get("c@d.it").is_some());
        assert!(!second.refresh().unwrap(), "the feed so far is already in");
    }
}
