//! The principals in memory: every login name with its mailbox and hash, swapped in whole
//! (arc-swap) whenever the store changes. Logins read it without touching SQLite.
//!
//! Freshness: the store's change mark ([`PrincipalSource::change_mark`]; on SQLite its
//! `data_version`) moves whenever another connection — the CLI, in another process —
//! commits. The login path asks for it at most once a millisecond
//! ([`LiveSnapshot::stale`], a few microseconds) and reloads before deciding when it
//! moved, so a CLI change applies to the next login; a background thread also polls, so
//! an idle proxy is fresh too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::policy::Mailbox;
use crate::store::{PrincipalSource, StoreError};

/// One login name.
#[derive(Debug)]
pub struct Principal {
    /// The mailbox it opens.
    pub mailbox: Arc<Mailbox>,
    /// Its own main password hash.
    pub hash: String,
}

/// Every principal at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    principals: HashMap<String, Arc<Principal>>,
}

impl Snapshot {
    /// Reads every principal from `store`.
    pub fn load(store: &dyn PrincipalSource) -> Result<Snapshot, StoreError> {
        let mut shared: HashMap<i64, Arc<Mailbox>> = HashMap::new();
        let mut principals = HashMap::new();
        for entry in store.principals()? {
            let (login, mailbox, hash) = (entry.login, entry.mailbox, entry.password_hash);
            let mailbox = Arc::clone(
                shared
                    .entry(mailbox.id)
                    .or_insert_with(|| Arc::new(mailbox)),
            );
            principals.insert(login, Arc::new(Principal { mailbox, hash }));
        }
        Ok(Snapshot { principals })
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

/// The current snapshot, kept fresh.
pub struct LiveSnapshot {
    current: ArcSwap<Snapshot>,
    store: Mutex<(Box<dyn PrincipalSource>, i64)>,
    epoch: Instant,
    /// Microseconds after `epoch` of the last `data_version` look.
    last_look: AtomicU64,
}

/// How often, at most, the login path looks at `data_version`.
const LOOK_EVERY: Duration = Duration::from_millis(1);

impl std::fmt::Debug for LiveSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveSnapshot({} principals)", self.current.load().len())
    }
}

impl LiveSnapshot {
    /// Loads the snapshot from `store` and starts a thread that reloads it within `poll`
    /// of any change. The thread ends when the `LiveSnapshot` is dropped.
    pub fn start(
        store: Box<dyn PrincipalSource>,
        poll: Duration,
    ) -> Result<Arc<LiveSnapshot>, StoreError> {
        let version = store.change_mark()?;
        let snapshot = Snapshot::load(&*store)?;
        let live = Arc::new(LiveSnapshot {
            current: ArcSwap::from_pointee(snapshot),
            store: Mutex::new((store, version)),
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
                        tracing::error!(error = %e, "cannot reload mailboxes; serving the previous state");
                    }
                }
            })
            .expect("spawn the snapshot thread");
        Ok(live)
    }

    /// The current snapshot.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Whether the store changed since the snapshot was loaded, looking at most once per
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
        guard.0.change_mark().map(|v| v != guard.1).unwrap_or(false)
    }

    /// Reloads now if the store changed; returns whether it did.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let version = guard.0.change_mark()?;
        if version == guard.1 {
            return Ok(false);
        }
        let snapshot = Snapshot::load(&*guard.0)?;
        guard.1 = version;
        self.current.store(Arc::new(snapshot));
        Ok(true)
    }
}
