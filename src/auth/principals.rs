//! The principals the login path reads: looked up by login name when first needed (one
//! indexed read, on a connection of its own, off the reactor), kept in a bounded cache,
//! and kept fresh by the store's change feed. Memory follows the working set, not the
//! number of mailboxes, and start-up reads nothing.
//!
//! Freshness, proportional to change: the store's change mark
//! ([`PrincipalSource::change_mark`]; on SQLite its `data_version`) moves whenever another
//! connection commits. The login path asks for it at most once a millisecond
//! ([`Principals::stale`]); when it moved, [`Principals::refresh`] reads the feed after
//! its last sequence number. A mailbox named there is re-read only if some of its login
//! names are cached; a commit that names none — the proxy's own access-history writes —
//! costs one empty indexed read, made by `stale` itself (no refresh is handed off). The open sessions of each named mailbox are then
//! reviewed ([`Sessions::review`]). A background thread also polls, so an idle proxy is
//! fresh too.
//!
//! The cache: found names in a CLOCK ring of `entries` slots (a hit sets the slot's bit;
//! eviction passes over a set bit once, clearing it), so a scan of names used once does
//! not push out the names in use; names that are not logins in a separate FIFO of a
//! quarter of that, emptied by any change, so a flood of unknown names costs one indexed
//! read each and never evicts an owner's entry.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

pub use super::principal::Principal;
use super::sessions::Sessions;
use crate::policy::Mailbox;
use crate::store::{PrincipalSource, StoreError};

/// Feed entries read per query while catching up.
const FEED_BATCH: u32 = 10_000;

/// A found name in the ring.
#[derive(Debug)]
struct Slot {
    login: String,
    principal: Arc<Principal>,
    /// Used since the clock hand last passed.
    referenced: AtomicBool,
}

/// What is cached.
#[derive(Debug)]
struct Table {
    ring: Vec<Option<Slot>>,
    hand: usize,
    index: HashMap<String, usize>,
    /// The cached login names of each mailbox (to refresh or drop them on a change).
    by_mailbox: HashMap<i64, Vec<String>>,
    absent: HashSet<String>,
    absent_order: VecDeque<String>,
    absent_max: usize,
    /// Moves with every change applied: a lookup that read the store before a change and
    /// would cache after it does not cache.
    generation: u64,
}

impl Table {
    fn new(entries: usize) -> Table {
        let entries = entries.max(1);
        Table {
            ring: (0..entries).map(|_| None).collect(),
            hand: 0,
            index: HashMap::with_capacity(entries),
            by_mailbox: HashMap::new(),
            absent: HashSet::new(),
            absent_order: VecDeque::new(),
            absent_max: (entries / 4).max(16),
            generation: 0,
        }
    }

    /// `Some(found or not)` when cached.
    fn get(&self, login: &str) -> Option<Option<Arc<Principal>>> {
        if let Some(&i) = self.index.get(login) {
            let slot = self.ring[i].as_ref()?;
            slot.referenced.store(true, Ordering::Relaxed);
            return Some(Some(Arc::clone(&slot.principal)));
        }
        self.absent.contains(login).then_some(None)
    }

    fn remove_slot(&mut self, i: usize) {
        if let Some(old) = self.ring[i].take() {
            self.index.remove(&old.login);
            let id = old.principal.mailbox.id;
            if let Some(names) = self.by_mailbox.get_mut(&id) {
                names.retain(|n| *n != old.login);
                if names.is_empty() {
                    self.by_mailbox.remove(&id);
                }
            }
        }
    }

    /// A free slot, evicting the first entry the hand finds unused since it last passed.
    fn free_slot(&mut self) -> usize {
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.ring.len();
            match &self.ring[i] {
                None => return i,
                Some(s) if s.referenced.swap(false, Ordering::Relaxed) => {}
                Some(_) => {
                    self.remove_slot(i);
                    return i;
                }
            }
        }
    }

    fn insert(&mut self, login: String, principal: Option<Arc<Principal>>) {
        match principal {
            Some(p) => {
                if let Some(&i) = self.index.get(&login) {
                    self.remove_slot(i);
                }
                self.absent.remove(&login);
                let i = self.free_slot();
                self.by_mailbox
                    .entry(p.mailbox.id)
                    .or_default()
                    .push(login.clone());
                self.index.insert(login.clone(), i);
                self.ring[i] = Some(Slot {
                    login,
                    principal: p,
                    referenced: AtomicBool::new(false),
                });
            }
            None => {
                if self.index.contains_key(&login) || !self.absent.insert(login.clone()) {
                    return;
                }
                self.absent_order.push_back(login);
                if self.absent_order.len() > self.absent_max
                    && let Some(old) = self.absent_order.pop_front()
                {
                    self.absent.remove(&old);
                }
            }
        }
    }

    /// Drops what is cached of mailbox `id`; returns the names that were cached.
    fn forget_mailbox(&mut self, id: i64) -> Vec<String> {
        let names = self.by_mailbox.remove(&id).unwrap_or_default();
        for name in &names {
            if let Some(i) = self.index.remove(name) {
                self.ring[i] = None;
            }
        }
        names
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// The store side of the feed: its connection, the change mark and the feed position
/// it has seen.
struct Follower {
    store: Box<dyn PrincipalSource>,
    mark: i64,
    seq: i64,
}

/// The principals, looked up on demand and kept fresh.
pub struct Principals {
    table: RwLock<Table>,
    follower: Mutex<Follower>,
    /// The connection lookups read through.
    lookups: Mutex<Box<dyn PrincipalSource>>,
    sessions: Arc<Sessions>,
    epoch: Instant,
    /// Microseconds after `epoch` of the last change-mark look.
    last_look: AtomicU64,
    /// The follower found a change and is applying it: until it is done, the cache may
    /// hold what the change replaced.
    applying: AtomicBool,
    /// The feed is followed. While it is not (the store's feed unreachable), the cache is
    /// not trusted: every name is read from the store, which then decides.
    following: AtomicBool,
}

/// How often, at most, the login path looks at the change mark.
const LOOK_EVERY: Duration = Duration::from_millis(1);

impl std::fmt::Debug for Principals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Principals({} cached)", self.read().len())
    }
}

impl Principals {
    /// Follows `follow`'s change feed from now on (a thread looks every `poll`; it ends
    /// when the `Principals` is dropped), looks names up through `lookups`, and caches up
    /// to `entries` found names. Reads no principal.
    pub fn start(
        follow: Box<dyn PrincipalSource>,
        lookups: Box<dyn PrincipalSource>,
        entries: usize,
        poll: Duration,
        sessions: Arc<Sessions>,
    ) -> Result<Arc<Principals>, StoreError> {
        let mark = follow.change_mark()?;
        let seq = follow.last_change()?;
        let mut wait = follow.change_waiter();
        let live = Arc::new(Principals {
            table: RwLock::new(Table::new(entries)),
            follower: Mutex::new(Follower {
                store: follow,
                mark,
                seq,
            }),
            lookups: Mutex::new(lookups),
            sessions,
            epoch: Instant::now(),
            last_look: AtomicU64::new(0),
            applying: AtomicBool::new(false),
            following: AtomicBool::new(true),
        });
        crate::metrics::METRICS
            .following_changes
            .store(1, Ordering::Relaxed);
        let weak: Weak<Principals> = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("principals".into())
            .spawn(move || {
                loop {
                    wait(poll);
                    let Some(live) = weak.upgrade() else { return };
                    // A failure is logged (once) and handled by refresh itself.
                    let _ = live.refresh();
                }
            })
            .expect("spawn the principals thread");
        Ok(live)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal for a (normalised) login name if the cache knows the answer: `Some`
    /// (found or not), or `None` when the store must be asked ([`Principals::get`]).
    pub fn cached(&self, login: &str) -> Option<Option<Arc<Principal>>> {
        let hit = if self.following.load(Ordering::SeqCst) {
            self.read().get(login)
        } else {
            None
        };
        let m = &crate::metrics::METRICS;
        match hit {
            Some(_) => m.principal_hits.fetch_add(1, Ordering::Relaxed),
            None => m.principal_misses.fetch_add(1, Ordering::Relaxed),
        };
        hit
    }

    /// The principal for a (normalised) login name: from the cache, or one indexed read
    /// (blocking: off the reactor). A store error is `Err`: the login is then a temporary
    /// failure, never "unknown".
    pub fn get(&self, login: &str) -> Result<Option<Arc<Principal>>, StoreError> {
        if let Some(hit) = self.cached(login) {
            return Ok(hit);
        }
        let generation = self.read().generation;
        let entry = {
            let store = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
            store.principal(login)?
        };
        let principal = entry.map(Principal::of);
        let mut table = self.write();
        if table.generation == generation && self.following.load(Ordering::SeqCst) {
            table.insert(login.to_owned(), principal.clone());
        }
        Ok(principal)
    }

    /// The principal for a (normalised) login name read from the store now, whatever the
    /// cache holds, and put in the cache (blocking: off the reactor). For a front door
    /// that has just changed the mailbox itself and must not act on the old state while
    /// the change's notification is still on its way (a fleet's `LISTEN`).
    pub fn reload(&self, login: &str) -> Result<Option<Arc<Principal>>, StoreError> {
        let entry = {
            let store = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
            store.principal(login)?
        };
        let principal = entry.map(Principal::of);
        if self.following.load(Ordering::SeqCst) {
            self.write().insert(login.to_owned(), principal.clone());
        }
        Ok(principal)
    }

    /// Whether the store changed since it was last followed — then the caller refreshes
    /// (waiting for a change being applied) before it trusts the cache. A change being
    /// applied, or a follower busy (it may be applying one), is stale: the cache may still
    /// hold what the change replaces. Otherwise the mark is looked at at most once per
    /// millisecond; a call within that millisecond of a look that found nothing answers
    /// `false` at once.
    pub fn stale(&self) -> bool {
        if self.applying.load(Ordering::SeqCst) {
            return true;
        }
        let now = self.epoch.elapsed().as_micros() as u64;
        let last = self.last_look.load(Ordering::Relaxed);
        if now.saturating_sub(last) < LOOK_EVERY.as_micros() as u64
            || self
                .last_look
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            // Another look is under way or just done; a change it found is `applying`.
            return self.applying.load(Ordering::SeqCst);
        }
        let Ok(mut guard) = self.follower.try_lock() else {
            return true;
        };
        // A mark that cannot be read is a feed that cannot be followed: refresh says so.
        let Ok(mark) = guard.store.change_mark() else {
            return true;
        };
        if mark == guard.mark {
            return false;
        }
        if !guard.store.local_mark() {
            return true;
        }
        // A local mark (SQLite) moves with every commit, the proxy's own access-history
        // writes included (nearly every login): when the feed has nothing after the last
        // change followed, the mark is taken here, on this thread, in one empty indexed
        // read — no hand-off to a blocking thread for a refresh that would find nothing.
        // A change committed after the mark was read moves it again. (PostgreSQL's mark
        // moves with the feed's notifications only; its refresh runs off the reactor.)
        match guard.store.changes_since(guard.seq, 1) {
            Ok(next) if next.is_empty() => {
                guard.mark = mark;
                false
            }
            _ => true,
        }
    }

    /// Follows the feed now if the store changed: refreshes the cached names of the
    /// mailboxes it names, forgets the names known not to exist, and reviews those
    /// mailboxes' sessions. Returns whether any mailbox changed.
    ///
    /// When the feed cannot be followed, the cache is set aside until it can (names are
    /// read from the store at each login) and the change is logged once; when it can
    /// again, the feed is read from the last sequence number first, then the cache is
    /// trusted again.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let result = self.follow_feed();
        let ok = result.is_ok();
        if self.following.swap(ok, Ordering::SeqCst) != ok {
            crate::metrics::METRICS
                .following_changes
                .store(i64::from(ok), Ordering::Relaxed);
            match &result {
                Ok(_) => tracing::info!(
                    "following the store's changes again; cached logins trusted again"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot follow the store's changes; every login asks the store until it can")
                }
            }
        }
        result
    }

    fn follow_feed(&self) -> Result<bool, StoreError> {
        let mut f = self.follower.lock().unwrap_or_else(|p| p.into_inner());
        let mark = f.store.change_mark()?;
        if mark == f.mark {
            return Ok(false);
        }
        // Until the table holds the change, a login's `stale` says so and it waits here.
        self.applying.store(true, Ordering::SeqCst);
        let applied = self.apply(&mut f, mark);
        self.applying.store(false, Ordering::SeqCst);
        let changed = applied?;
        drop(f);
        let now = crate::clock::now();
        for id in &changed {
            self.sessions
                .review(*id, |login| self.get(login).ok().flatten(), now);
        }
        Ok(!changed.is_empty())
    }

    /// Reads the feed from `f`'s position to `mark` and puts what changed in the table;
    /// the mailboxes it names.
    fn apply(&self, f: &mut Follower, mark: i64) -> Result<BTreeSet<i64>, StoreError> {
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
        // A burst of changes to one mailbox is one read, and only for a cached mailbox.
        let cached: Vec<i64> = {
            let table = self.read();
            changed
                .iter()
                .copied()
                .filter(|id| table.by_mailbox.contains_key(id))
                .collect()
        };
        let mut fresh = Vec::with_capacity(cached.len());
        for &id in &cached {
            fresh.push((id, f.store.principals_of(id)?));
        }
        if !changed.is_empty() {
            let mut table = self.write();
            table.generation += 1;
            // A new mailbox or login name may be one that was looked up in vain.
            table.absent.clear();
            table.absent_order.clear();
            for &id in &changed {
                table.forget_mailbox(id);
            }
            for (_, entries) in fresh {
                // The mailbox's names cached again, as they are now (one Mailbox shared).
                let mut mailbox: Option<Arc<Mailbox>> = None;
                for e in entries {
                    let m = mailbox.get_or_insert_with(|| Arc::new(e.mailbox.clone()));
                    let p = Arc::new(Principal {
                        mailbox: Arc::clone(m),
                        hash: e.password_hash,
                        serial: e.password_serial,
                    });
                    table.insert(e.login, Some(p));
                }
            }
        }
        f.mark = mark;
        f.seq = seq;
        Ok(changed)
    }

    /// How many found names are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no found name is cached.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use crate::store::{HistoryBatch, LoginEntry};

    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    use super::*;
    use crate::policy::login::{AccessResult, CredentialKind};
    use crate::policy::{Plan, Protocol};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AccessLog, AccessRecord, Change, ManageStore, Reader};

    const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

    /// The SQLite source, counting the reads it serves.
    struct Counting {
        inner: SqliteStore,
        reads: Arc<AtomicUsize>,
    }

    impl PrincipalSource for Counting {
        fn change_mark(&self) -> Result<i64, StoreError> {
            self.inner.change_mark()
        }
        fn local_mark(&self) -> bool {
            self.inner.local_mark()
        }
        fn principal(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.principal(login)
        }
        fn principals_of(&self, id: i64) -> Result<Vec<LoginEntry>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
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
            unresolved: None,
            mailbox_id: None,
            software: None,
            credential: CredentialKind::Main,
            app_password: None,
            result: AccessResult::Accepted,
            reason: None,
        }
    }

    /// Principals over the store at `path` caching `entries`, with the count of reads
    /// (lookups and feed refreshes) it made.
    fn open(path: &std::path::Path, entries: usize) -> (Arc<Principals>, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        let source = |reads: &Arc<AtomicUsize>| {
            Box::new(Counting {
                inner: SqliteStore::open(path).unwrap(),
                reads: Arc::clone(reads),
            })
        };
        let poll = Duration::from_secs(3_600);
        let p = Principals::start(
            source(&reads),
            source(&reads),
            entries,
            poll,
            Sessions::new(TimeZone::UTC),
        )
        .unwrap();
        (p, reads)
    }

    #[test]
    fn follows_the_feed_per_cached_mailbox_and_ignores_history_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        let mut a = add(&mut writer, "a@b.it");
        add(&mut writer, "c@d.it");
        let (live, reads) = open(&path, 100);
        assert!(live.is_empty(), "nothing read at start");
        assert_eq!(reads.load(Ordering::Relaxed), 0);
        assert!(live.get("a@b.it").unwrap().is_some());
        assert!(live.get("a@b.it").unwrap().is_some());
        assert_eq!(reads.load(Ordering::Relaxed), 1, "the second is a hit");

        // The proxy's own history writes move the mark but name no mailbox.
        writer
            .append(&HistoryBatch::of_records(vec![history_row()]))
            .unwrap();
        assert!(!live.refresh().unwrap(), "nothing to refresh");
        assert_eq!(reads.load(Ordering::Relaxed), 1);

        // A burst of 30 changes to one cached mailbox is one read of it.
        for i in 0..30 {
            a.version += 1;
            a.plan = if i % 2 == 0 { Plan::Pro } else { Plan::Premium };
            let mut tx = writer.begin().unwrap();
            tx.save_mailbox(&a, Timestamp::now()).unwrap();
            tx.commit().unwrap();
        }
        assert!(live.refresh().unwrap());
        assert_eq!(reads.load(Ordering::Relaxed), 2);
        let p = live.cached("a@b.it").unwrap().unwrap();
        assert_eq!(p.mailbox.plan, Plan::Premium);
        assert_eq!(p.mailbox.version, a.version);

        // A change to a mailbox nobody looked up costs no read.
        let mut c = writer.mailbox("c@d.it").unwrap().unwrap();
        c.version += 1;
        let mut tx = writer.begin().unwrap();
        tx.save_mailbox(&c, Timestamp::now()).unwrap();
        tx.commit().unwrap();
        assert!(live.refresh().unwrap());
        assert_eq!(reads.load(Ordering::Relaxed), 2);

        // A multi-user account added (its name was looked up in vain before), then the
        // mailbox removed with it.
        assert!(live.get("mario").unwrap().is_none());
        let mut tx = writer.begin().unwrap();
        tx.insert_user(a.id, "mario", HASH, Timestamp::now())
            .unwrap();
        tx.commit().unwrap();
        live.refresh().unwrap();
        assert_eq!(live.get("mario").unwrap().unwrap().mailbox.id, a.id);
        let mut tx = writer.begin().unwrap();
        tx.delete_mailbox(a.id).unwrap();
        tx.commit().unwrap();
        assert!(live.refresh().unwrap());
        assert!(live.get("a@b.it").unwrap().is_none());
        assert!(live.get("mario").unwrap().is_none());
        assert!(
            live.get("c@d.it").unwrap().is_some(),
            "the other mailbox stays"
        );

        // A rolled-back transaction leaves nothing in the feed.
        let last = writer.last_change().unwrap();
        let mut tx = writer.begin().unwrap();
        let m = Mailbox::new("e@f.it".into(), Plan::Standard, None, HASH.into());
        tx.insert_mailbox(&m, Timestamp::now()).unwrap();
        drop(tx);
        assert_eq!(writer.last_change().unwrap(), last);
    }

    /// A login's `stale` looks at most once a millisecond; a test waits past it.
    fn past_look() {
        std::thread::sleep(LOOK_EVERY * 5);
    }

    #[test]
    fn a_history_write_is_not_stale_and_a_management_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        let mut a = add(&mut writer, "a@b.it");
        let (live, reads) = open(&path, 100);
        assert!(live.get("a@b.it").unwrap().is_some());
        past_look();
        assert!(!live.stale());
        // The proxy's own history write moves the mark: taken by `stale` itself.
        writer
            .append(&HistoryBatch::of_records(vec![history_row()]))
            .unwrap();
        past_look();
        assert!(!live.stale(), "a history write is no change to follow");
        past_look();
        assert!(!live.stale(), "and the mark was taken");
        // A management change (with a history write after it) is one.
        a.version += 1;
        a.plan = Plan::Pro;
        let mut tx = writer.begin().unwrap();
        tx.save_mailbox(&a, Timestamp::now()).unwrap();
        tx.commit().unwrap();
        writer
            .append(&HistoryBatch::of_records(vec![history_row()]))
            .unwrap();
        past_look();
        assert!(live.stale(), "a change in the feed must be followed");
        assert!(live.refresh().unwrap());
        assert_eq!(
            live.cached("a@b.it").unwrap().unwrap().mailbox.plan,
            Plan::Pro
        );
        past_look();
        assert!(!live.stale());
        assert_eq!(reads.load(Ordering::Relaxed), 2, "one lookup, one re-read");
    }

    /// A source whose `principals_of` (the follower's read while it applies a change)
    /// waits for the test's word once armed.
    struct Gated {
        inner: SqliteStore,
        armed: Arc<AtomicBool>,
        reached: std::sync::mpsc::SyncSender<()>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl PrincipalSource for Gated {
        fn change_mark(&self) -> Result<i64, StoreError> {
            self.inner.change_mark()
        }
        fn principal(&self, login: &str) -> Result<Option<LoginEntry>, StoreError> {
            self.inner.principal(login)
        }
        fn principals_of(&self, id: i64) -> Result<Vec<LoginEntry>, StoreError> {
            if self.armed.swap(false, Ordering::SeqCst) {
                self.reached.send(()).unwrap();
                self.release.lock().unwrap().recv().unwrap();
            }
            self.inner.principals_of(id)
        }
        fn last_change(&self) -> Result<i64, StoreError> {
            self.inner.last_change()
        }
        fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
            self.inner.changes_since(seq, limit)
        }
    }

    /// A login that looks while the follower is applying a change (a revoked password,
    /// say) must not decide on the cache the change replaces: `stale` says so, however
    /// recently the mark was looked at, and `refresh` waits for the change.
    #[test]
    fn a_change_being_applied_is_stale_until_the_cache_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        let mut a = add(&mut writer, "a@b.it");
        let armed = Arc::new(AtomicBool::new(false));
        let (reached_tx, reached) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::channel();
        let follow = Box::new(Gated {
            inner: SqliteStore::open(&path).unwrap(),
            armed: Arc::clone(&armed),
            reached: reached_tx,
            release: Mutex::new(release_rx),
        });
        let live = Principals::start(
            follow,
            Box::new(SqliteStore::open(&path).unwrap()),
            10,
            Duration::from_secs(3_600),
            Sessions::new(TimeZone::UTC),
        )
        .unwrap();
        assert_eq!(live.get("a@b.it").unwrap().unwrap().serial, 0);

        a.version += 1;
        let mut tx = writer.begin().unwrap();
        a.password_hash = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$bmV3".into();
        tx.save_mailbox(&a, Timestamp::now()).unwrap();
        tx.commit().unwrap();

        armed.store(true, Ordering::SeqCst);
        let follower = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || live.refresh().unwrap())
        };
        reached.recv().unwrap();
        // The follower holds the change, not yet in the cache.
        assert_eq!(live.cached("a@b.it").unwrap().unwrap().serial, 0);
        assert!(live.stale(), "a change being applied is stale");
        assert!(
            live.stale(),
            "and stays so within the millisecond of a look"
        );
        let login = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || {
                if live.stale() {
                    live.refresh().unwrap();
                }
                live.cached("a@b.it").unwrap().unwrap().serial
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        release.send(()).unwrap();
        assert!(follower.join().unwrap());
        assert_eq!(login.join().unwrap(), 1, "the login saw the new password");
        assert!(!live.stale() || !live.refresh().unwrap());
    }

    #[test]
    fn a_restarted_follower_starts_from_the_current_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        add(&mut writer, "a@b.it");
        let (first, _) = open(&path, 10);
        assert!(first.get("a@b.it").unwrap().is_some());
        drop(first);
        add(&mut writer, "c@d.it");
        let (second, _) = open(&path, 10);
        assert!(second.get("c@d.it").unwrap().is_some());
        assert!(!second.refresh().unwrap(), "the feed so far is already in");
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_names_in_use_through_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        for i in 0..40 {
            add(&mut writer, &format!("m{i}@b.it"));
        }
        let (live, reads) = open(&path, 8);
        let owners = |live: &Principals| {
            for i in 0..4 {
                assert!(live.get(&format!("m{i}@b.it")).unwrap().is_some());
            }
        };
        owners(&live);
        assert_eq!(reads.load(Ordering::Relaxed), 4);
        // A scan of 36 names used once, while the four owners' clients keep logging in
        // (after every fourth name): the owners are never read again, and the cache never
        // holds more than 8.
        for i in 4..40 {
            assert!(live.get(&format!("m{i}@b.it")).unwrap().is_some());
            assert!(live.len() <= 8);
            if i % 4 == 0 {
                owners(&live);
            }
        }
        assert_eq!(reads.load(Ordering::Relaxed), 4 + 36);
        assert_eq!(live.len(), 8);
        // Names no longer used are evicted: the first of the scan is read again.
        assert!(live.cached("m4@b.it").is_none());
    }

    #[test]
    fn a_flood_of_unknown_names_never_evicts_found_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        add(&mut writer, "owner@b.it");
        let (live, reads) = open(&path, 64);
        assert!(live.get("owner@b.it").unwrap().is_some());
        for i in 0..5_000 {
            assert!(live.get(&format!("nobody{i}@b.it")).unwrap().is_none());
        }
        assert_eq!(live.len(), 1);
        assert!(live.cached("owner@b.it").unwrap().is_some());
        // The negative answers are bounded (a quarter of the entries, at least 16): the
        // oldest unknown names are asked again.
        let before = reads.load(Ordering::Relaxed);
        assert!(live.get("nobody4999@b.it").unwrap().is_none());
        assert_eq!(
            reads.load(Ordering::Relaxed),
            before,
            "a recent one is cached"
        );
        assert!(live.get("nobody0@b.it").unwrap().is_none());
        assert_eq!(
            reads.load(Ordering::Relaxed),
            before + 1,
            "an old one was dropped"
        );
        // An unknown name that becomes a mailbox is found at once after the change.
        add(&mut writer, "nobody4999@b.it");
        live.refresh().unwrap();
        assert!(live.get("nobody4999@b.it").unwrap().is_some());
    }
}
