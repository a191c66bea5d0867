//! Group-committed access history.
//!
//! One thread writes: whatever is waiting goes in one transaction (one sync for all).
//! When the store cannot be reached, nothing is lost: the waiting items stay in memory
//! (up to [`KEEP`] records; past that the oldest are dropped, counted and logged) and are
//! written, in order, when the store answers again — tried every [`RETRY`] and with each
//! new item. The callers are answered at once either way (a failed write is `false`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::journal::{self, Journal, LINGER};

use crate::metrics::METRICS;
use crate::store::{
    AccessLog, AccessRecord, Alert, Breach, HistoryBatch, JournalMark, NewPlace, Rehash,
    ThrottleFailure,
};

/// Items waiting to be taken by the writer, at most.
const QUEUE: usize = 16_384;
/// Items taken per transaction while the store answers.
const BATCH: usize = 512;
/// Records kept while the store is unreachable, at most.
pub const KEEP: usize = 200_000;
/// How often a write is tried again while the store is unreachable.
pub const RETRY: Duration = Duration::from_millis(500);

/// What the writer is given. Records are most of it and go through the channel by value
/// (no allocation per login), hence the size difference with the small variants.
#[allow(clippy::large_enum_variant)]
enum Item {
    /// A record, with what rides in its transaction, and who waits for it.
    Record {
        record: AccessRecord,
        alert: Option<Alert>,
        rehash: Option<Rehash>,
        ack: oneshot::Sender<bool>,
    },
    /// A record already in the journal, up to its mark.
    Journaled(AccessRecord, JournalMark),
    /// A failed login for the fleet's throttle.
    Failure(ThrottleFailure),
    /// A throttle key cleared by a success (at, in milliseconds).
    Clear(String, i64),
    /// A main password found breached.
    Breach(Breach),
}

/// Turns a new place a password was used from into the alert that asks its owner (none:
/// nobody to ask). Called on the writer thread.
pub type AskOwner = Box<dyn Fn(&NewPlace) -> Option<Alert> + Send>;

/// The journal a writer starts with: what it holds past the store's `mark` is written
/// first; with `keep`, logins are appended to it (`history_sync = "journal"`), else it is
/// removed once written (the setting was switched off: nothing it holds is lost).
#[derive(Debug)]
pub struct WithJournal {
    /// The journal, opened (and locked).
    pub journal: Journal,
    /// How far the store has it.
    pub mark: Option<JournalMark>,
    /// Whether logins go on using it.
    pub keep: bool,
}

/// Sends access records to the writer thread.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Item>,
    journal: Option<std::sync::Arc<Journal>>,
    /// Set by the writer while the store refuses its writes: logins then wait for the
    /// store instead of filling the journal and the writer's memory.
    store_failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryWriter")
    }
}

/// Adds `item` to the batch (and each record's journal mark, if it has one, to `marks`);
/// returns its waiter.
fn add(
    batch: &mut HistoryBatch,
    marks: &mut Vec<Option<JournalMark>>,
    item: Item,
) -> Option<oneshot::Sender<bool>> {
    match item {
        Item::Record {
            record,
            alert,
            rehash,
            ack,
        } => {
            batch.records.push(record);
            marks.push(None);
            batch.alerts.extend(alert);
            batch.rehashes.extend(rehash);
            Some(ack)
        }
        Item::Journaled(record, mark) => {
            batch.records.push(record);
            marks.push(Some(mark));
            batch.journal = Some(mark);
            None
        }
        Item::Failure(f) => {
            batch.failures.push(f);
            None
        }
        Item::Clear(key, at) => {
            batch.clears.push((key, at));
            None
        }
        Item::Breach(b) => {
            batch.breaches.push(b);
            None
        }
    }
}

/// The writer's loop, on its own thread.
fn write_loop(
    mut store: Box<dyn AccessLog>,
    mut rx: mpsc::Receiver<Item>,
    ask: AskOwner,
    journal: Option<std::sync::Arc<Journal>>,
    mut pending: HistoryBatch,
    store_failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    // The journal mark of each record in `pending` (none: not journaled).
    let mut marks: Vec<Option<JournalMark>> = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("the history writer's clock");
    let mut failing_since: Option<std::time::Instant> = None;
    // The last transaction was cut at BATCH: more is waiting, no lingering.
    let mut backlog = false;
    loop {
        let first = if pending.is_empty() {
            match rx.blocking_recv() {
                Some(item) => Some(item),
                None => return,
            }
        } else {
            match rt.block_on(async { tokio::time::timeout(RETRY, rx.recv()).await }) {
                Ok(Some(item)) => Some(item),
                Ok(None) => {
                    // Shutting down: one last try.
                    match store.append(&pending) {
                        Ok(_) => {
                            if let (Some(j), Some(mark)) = (&journal, pending.journal) {
                                j.applied(mark);
                            }
                        }
                        Err(e) => {
                            let journaled = marks.iter().flatten().count();
                            tracing::error!(error = %e, lost = pending.records.len() - journaled, in_the_journal = journaled, "could not write the access history before stopping");
                        }
                    }
                    return;
                }
                Err(_) => None,
            }
        };
        // A journaled record has been answered: let others gather behind it.
        if !backlog && matches!(first, Some(Item::Journaled(..))) {
            std::thread::sleep(LINGER);
        }
        let mut acks = Vec::new();
        let mut taken = 0;
        if let Some(item) = first {
            acks.extend(add(&mut pending, &mut marks, item));
            taken += 1;
            while taken < BATCH {
                match rx.try_recv() {
                    Ok(item) => {
                        acks.extend(add(&mut pending, &mut marks, item));
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        backlog = taken == BATCH;
        let mark = pending.journal;
        let mails = pending
            .alerts
            .iter()
            .chain(pending.breaches.iter().map(|b| &b.alert))
            .any(|a| a.email_to.is_some());
        let written = match store.append(&pending) {
            Err(e) if !e.is_temporary() => {
                // Something in the batch the store refuses and will refuse again: the
                // rest must not wait behind it.
                tracing::error!(error = %e, "the store refuses part of the access history; writing it item by item");
                let (left, left_marks, new) = apart(
                    store.as_mut(),
                    std::mem::take(&mut pending),
                    std::mem::take(&mut marks),
                );
                pending = left;
                marks = left_marks;
                if pending.is_empty() {
                    Ok(new)
                } else {
                    // What was written asks its owners when the rest is written.
                    pending.alerts.extend(new.iter().filter_map(&ask));
                    Err(crate::store::StoreError::temporary("kept for later"))
                }
            }
            other => other,
        };
        let ok = match written {
            Ok(new) => {
                if mails {
                    crate::store::OUTBOX_FILLED.notify_one();
                }
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        written = pending.records.len(),
                        after_secs = since.elapsed().as_secs(),
                        "the access history is written again, nothing kept back"
                    );
                }
                pending = HistoryBatch::default();
                marks.clear();
                store_failing.store(false, Ordering::Relaxed);
                if let (Some(j), Some(mark)) = (&journal, mark) {
                    j.applied(mark);
                }
                // New places ask their owners in the next transaction (at once if more
                // comes, else after RETRY).
                pending.alerts.extend(new.iter().filter_map(&ask));
                true
            }
            Err(e) => {
                if failing_since.is_none() {
                    failing_since = Some(std::time::Instant::now());
                    tracing::error!(error = %e, waiting = pending.records.len(), "cannot write the access history; keeping it in memory and trying again");
                }
                // Logins stop using the journal until the store answers again: what it
                // holds in memory stays bounded.
                store_failing.store(true, Ordering::Relaxed);
                let excess = pending.records.len().saturating_sub(KEEP);
                if excess > 0 {
                    let dropped = drop_oldest(&mut pending.records, &mut marks, excess);
                    METRICS
                        .history_dropped
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    tracing::error!(
                        dropped,
                        "the store has been unreachable too long: oldest access-history records dropped"
                    );
                }
                let fexcess = pending.failures.len().saturating_sub(KEEP);
                pending.failures.drain(..fexcess);
                false
            }
        };
        METRICS
            .history_pending
            .store(pending.len() as i64, Ordering::Relaxed);
        for ack in acks {
            let _ = ack.send(ok);
        }
    }
}

/// Drops up to `excess` of the oldest `records` that are not journaled (their `marks`
/// none), keeping `marks` aligned; returns how many went. A journaled record stays: the
/// journal's mark must never pass a dropped one (and there are few: logins stop using
/// the journal while the store refuses).
fn drop_oldest(
    records: &mut Vec<AccessRecord>,
    marks: &mut Vec<Option<JournalMark>>,
    excess: usize,
) -> usize {
    let mut left = excess;
    let mut kept = Vec::with_capacity(marks.len());
    let mut i = 0;
    records.retain(|_| {
        let m = marks.get(i).copied().flatten();
        i += 1;
        if left > 0 && m.is_none() {
            left -= 1;
            false
        } else {
            kept.push(m);
            true
        }
    });
    *marks = kept;
    excess - left
}

/// Records a replay hands to the store at a time.
const REPLAY_CHUNK: usize = 4096;

/// Writes what `j` holds past the store's `mark` (what a crash left there), each chunk
/// with its mark; a record the store refuses for good is dropped (counted, logged) and
/// its mark still written. Returns the alerts for the new places it found; an error if
/// the journal cannot be read or the store cannot take it now (nothing is skipped).
fn replay(
    store: &mut dyn AccessLog,
    j: &Journal,
    mark: Option<JournalMark>,
    ask: &AskOwner,
) -> Result<Vec<Alert>, crate::store::StoreError> {
    let mut alerts = Vec::new();
    let mut last = None;
    let r = j
        .replay(mark, REPLAY_CHUNK, |chunk, end| {
            let (records, marks): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
            let batch = HistoryBatch {
                records,
                journal: Some(end),
                ..HistoryBatch::default()
            };
            let new = match store.append(&batch) {
                Err(e) if !e.is_temporary() => {
                    let marks = marks.into_iter().map(Some).collect();
                    let (left, _, new) = apart(store, batch, marks);
                    if !left.is_empty() {
                        return Err("the store stopped answering".to_owned());
                    }
                    new
                }
                other => other.map_err(|e| e.to_string())?,
            };
            alerts.extend(new.iter().filter_map(ask));
            last = Some(end);
            Ok(())
        })
        .map_err(|e| {
            crate::store::StoreError::permanent(format!(
                "the history journal cannot be written into the store: {e}"
            ))
        })?;
    if r.skipped > 0 {
        tracing::warn!(
            skipped = r.skipped,
            "history journal writes that never finished (a power cut) skipped"
        );
    }
    if r.records > 0 {
        tracing::info!(
            records = r.records,
            "access-history records left in the journal written"
        );
    }
    if let Some(mark) = last {
        j.applied(mark);
    }
    Ok(alerts)
}

/// Writes `batch` one item at a time: what the store refuses for good is dropped, counted
/// and logged; what it cannot take now (a temporary failure) is returned, with every item
/// after it, to be tried again.
fn apart(
    store: &mut dyn AccessLog,
    batch: HistoryBatch,
    marks: Vec<Option<JournalMark>>,
) -> (HistoryBatch, Vec<Option<JournalMark>>, Vec<NewPlace>) {
    let HistoryBatch {
        records,
        alerts,
        rehashes,
        breaches,
        failures,
        clears,
        journal: _,
    } = batch;
    // Each record with its own journal mark, in its own transaction: a crash between two
    // of them repeats none.
    let mut items: Vec<HistoryBatch> = Vec::new();
    items.extend(
        records
            .into_iter()
            .zip(marks.into_iter().chain(std::iter::repeat(None)))
            .map(|(r, m)| HistoryBatch {
                records: vec![r],
                journal: m,
                ..HistoryBatch::default()
            }),
    );
    items.extend(alerts.into_iter().map(|a| HistoryBatch {
        alerts: vec![a],
        ..HistoryBatch::default()
    }));
    items.extend(rehashes.into_iter().map(|r| HistoryBatch {
        rehashes: vec![r],
        ..HistoryBatch::default()
    }));
    items.extend(breaches.into_iter().map(|b| HistoryBatch {
        breaches: vec![b],
        ..HistoryBatch::default()
    }));
    if !failures.is_empty() || !clears.is_empty() {
        items.push(HistoryBatch {
            failures,
            clears,
            ..HistoryBatch::default()
        });
    }
    let mut left = HistoryBatch::default();
    let mut left_marks = Vec::new();
    let mut new = Vec::new();
    let mut stopped = false;
    for item in items {
        if !stopped {
            match store.append(&item) {
                Ok(places) => {
                    new.extend(places);
                    continue;
                }
                Err(e) if e.is_temporary() => stopped = true,
                Err(e) => {
                    METRICS
                        .history_dropped
                        .fetch_add(item.records.len() as u64, Ordering::Relaxed);
                    tracing::error!(error = %e, records = item.records.len(), alerts = item.alerts.len(), "the store refuses this access-history item for good; dropped");
                    // Its journal mark is still written, so a restart does not offer it
                    // again.
                    let only = HistoryBatch {
                        journal: item.journal,
                        ..HistoryBatch::default()
                    };
                    if item.journal.is_none() || store.append(&only).is_ok() {
                        continue;
                    }
                    stopped = true;
                    continue;
                }
            }
        }
        left_marks.extend(item.records.iter().map(|_| item.journal));
        if item.journal.is_some() {
            left.journal = item.journal;
        }
        left.records.extend(item.records);
        left.alerts.extend(item.alerts);
        left.rehashes.extend(item.rehashes);
        left.breaches.extend(item.breaches);
        left.failures.extend(item.failures);
        left.clears.extend(item.clears);
    }
    (left, left_marks, new)
}

impl HistoryWriter {
    /// Starts the writer thread on its own store connection; with a journal, what it
    /// holds past the store's `mark` is written first, before this returns (blocking:
    /// call it off the reactor).
    pub fn start(
        store: Box<dyn AccessLog>,
        ask: AskOwner,
        journal: Option<WithJournal>,
    ) -> Result<Self, crate::store::StoreError> {
        let mut store = store;
        let (tx, rx) = mpsc::channel::<Item>(QUEUE);
        let mut pending = HistoryBatch::default();
        let journal = match journal {
            Some(WithJournal {
                journal: j,
                mark,
                keep,
            }) => {
                pending.alerts = replay(store.as_mut(), &j, mark, &ask)?;
                if keep {
                    Some(std::sync::Arc::new(j))
                } else {
                    // The journal was switched off: everything it held is in the store.
                    j.remove();
                    None
                }
            }
            None => None,
        };
        let handle = journal.clone();
        let store_failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failing = std::sync::Arc::clone(&store_failing);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || write_loop(store, rx, ask, journal, pending, failing))
            .expect("spawn the history writer");
        Ok(HistoryWriter {
            tx,
            journal: handle,
            store_failing,
        })
    }

    /// Appends `record` to the journal and hands it to the writer; gives it back when
    /// either cannot take it now (the queue is full, the file refuses it).
    fn journaled(&self, j: &Journal, record: AccessRecord) -> Option<AccessRecord> {
        let Ok(permit) = self.tx.try_reserve() else {
            return Some(record);
        };
        let line = journal::encode(&record);
        let mut slot = Some(record);
        // On failure the closure is not called: the record is still in its slot.
        let _ = j.append(&line, |mark| {
            if let Some(r) = slot.take() {
                permit.send(Item::Journaled(r, mark));
            }
        });
        slot
    }

    /// Writes one record (and the alert it raises and the re-hash it proved, if any);
    /// returns once it is committed (`true`), or once the write failed (`false`: the
    /// record is kept and written when the store answers again). Waits when the queue is
    /// full rather than dropping the record.
    pub async fn record(
        &self,
        record: AccessRecord,
        alert: Option<Alert>,
        rehash: Option<Rehash>,
    ) -> bool {
        // Through the journal, unless something secret or a store change rides along.
        let record = match &self.journal {
            Some(j)
                if alert.is_none()
                    && rehash.is_none()
                    && !self.store_failing.load(Ordering::Relaxed) =>
            {
                match self.journaled(j, record) {
                    None => return true,
                    Some(r) => r,
                }
            }
            _ => record,
        };
        let (ack, done) = oneshot::channel();
        let item = Item::Record {
            record,
            alert,
            rehash,
            ack,
        };
        if self.tx.send(item).await.is_err() {
            tracing::error!("the history writer has stopped; record lost");
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// A failed login for the fleet's throttle: written with the next record (queued
    /// before the refusal's own record, so it is committed when that one is).
    pub fn throttle_failure(&self, failure: ThrottleFailure) {
        if self.tx.try_send(Item::Failure(failure)).is_err() {
            tracing::warn!(
                "the history queue is full: a failed login is counted on this node only"
            );
        }
    }

    /// A throttle key cleared by a success.
    pub fn throttle_clear(&self, key: String, at_ms: i64) {
        let _ = self.tx.try_send(Item::Clear(key, at_ms));
    }

    /// A main password found breached: written with the next record (queued before the
    /// login's own record, so it is committed when that one is).
    pub fn breached(&self, breach: Breach) {
        if self.tx.try_send(Item::Breach(breach)).is_err() {
            tracing::warn!(
                "the history queue is full: a breached main password is marked at its next login"
            );
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::policy::Protocol;
    use crate::policy::login::{AccessResult, CredentialKind};
    use crate::store::StoreError;

    /// A store that refuses for good any batch holding the login `poison`, and writes the
    /// rest (their logins, in order).
    struct Picky(Arc<Mutex<Vec<String>>>);

    impl AccessLog for Picky {
        fn append(&mut self, batch: &HistoryBatch) -> Result<Vec<NewPlace>, StoreError> {
            if batch.records.iter().any(|r| r.login == "poison") {
                return Err(StoreError::permanent("CHECK constraint failed"));
            }
            let mut written = self.0.lock().unwrap();
            written.extend(batch.records.iter().map(|r| r.login.clone()));
            written.extend(batch.alerts.iter().map(|a| format!("alert:{}", a.address)));
            // A login named "new-place" is a password used from somewhere new.
            Ok(batch
                .records
                .iter()
                .filter(|r| r.login == "new-place")
                .map(|r| NewPlace {
                    mailbox_id: 1,
                    address: "m@x.it".into(),
                    credential: crate::policy::usage::Credential::App(1),
                    app_password: Some("phone".into()),
                    kind: crate::policy::usage::PlaceKind::Network,
                    value: "192.0.2.0/24".into(),
                    at: r.at,
                    client: r.client.clone(),
                    protocol: r.protocol,
                    software: None,
                })
                .collect())
        }

        fn journal_mark(&mut self) -> Result<Option<JournalMark>, StoreError> {
            Ok(None)
        }
    }

    /// A refused IMAP login by `login`, now (the journal's tests use it too).
    pub(in crate::audit) fn record(login: &str) -> AccessRecord {
        AccessRecord {
            at: crate::clock::now(),
            listener: "imaps".into(),
            protocol: Protocol::Imap.into(),
            client: "127.0.0.1".into(),
            login: login.into(),
            address: None,
            unresolved: None,
            mailbox_id: None,
            software: None,
            credential: CredentialKind::Unknown,
            app_password: None,
            result: AccessResult::Refused,
            reason: None,
        }
    }

    /// One record the store refuses for good is dropped (and counted); it does not keep
    /// every later record waiting behind it.
    #[tokio::test]
    async fn a_record_refused_for_good_does_not_hold_up_the_others() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let writer = HistoryWriter::start(
            Box::new(Picky(Arc::clone(&written))),
            Box::new(|_| None),
            None,
        )
        .unwrap();
        let dropped = METRICS.history_dropped.load(Ordering::Relaxed);
        let (a, b, c) = tokio::join!(
            writer.record(record("first"), None, None),
            writer.record(record("poison"), None, None),
            writer.record(record("third"), None, None),
        );
        assert!(a && b && c, "every caller is answered: written or dropped");
        assert!(writer.record(record("later"), None, None).await);
        assert_eq!(*written.lock().unwrap(), ["first", "third", "later"]);
        assert!(METRICS.history_dropped.load(Ordering::Relaxed) > dropped);
    }

    /// A new place the store reports asks its owner: the alert is written after the
    /// record, without waiting for another login.
    #[tokio::test]
    async fn a_new_place_becomes_an_alert_written_next() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let ask: AskOwner = Box::new(|p: &NewPlace| {
            Some(Alert {
                address: p.address.clone(),
                email_to: None,
                notice: crate::store::Notice::new(p.at, crate::store::NoticeKind::NewPlace, "x"),
                quiet_since: p.at,
                link: None,
            })
        });
        let writer =
            HistoryWriter::start(Box::new(Picky(Arc::clone(&written))), ask, None).unwrap();
        assert!(writer.record(record("new-place"), None, None).await);
        for _ in 0..100 {
            if written.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*written.lock().unwrap(), ["new-place", "alert:m@x.it"]);
    }

    /// A store that is unreachable while `down` is set.
    struct Gate(
        crate::store::sqlite::SqliteStore,
        Arc<std::sync::atomic::AtomicBool>,
    );

    /// Besides: a batch holding a record named `poison` is refused for good, and once a
    /// batch of just the record named `trip` is written the store becomes unreachable.
    impl AccessLog for Gate {
        fn append(&mut self, batch: &HistoryBatch) -> Result<Vec<NewPlace>, StoreError> {
            if self.1.load(Ordering::Relaxed) {
                return Err(StoreError::temporary("unreachable"));
            }
            if batch.records.iter().any(|r| r.login == "poison") {
                return Err(StoreError::permanent("CHECK constraint failed"));
            }
            let written = self.0.append(batch)?;
            if batch.records.len() == 1 && batch.records[0].login == "trip" {
                self.1.store(true, Ordering::Relaxed);
            }
            Ok(written)
        }

        fn journal_mark(&mut self) -> Result<Option<JournalMark>, StoreError> {
            self.0.journal_mark()
        }
    }

    /// A writer with the journal at `db`'s, once the previous one has let it go.
    fn journaled(
        db: &std::path::Path,
        down: bool,
        keep: bool,
    ) -> (HistoryWriter, Arc<std::sync::atomic::AtomicBool>) {
        let dir = journal::dir_of(db);
        // The previous writer's thread holds the journal until its last commit is in.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        let locked = loop {
            match Journal::lock(&dir) {
                Ok(l) => break l,
                Err(e) => assert!(std::time::Instant::now() < give_up, "{e}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut store = crate::store::sqlite::SqliteStore::open(db).unwrap();
        let mark = store.journal_mark().unwrap();
        let j = locked.start(mark).unwrap();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(down));
        let writer = HistoryWriter::start(
            Box::new(Gate(store, Arc::clone(&flag))),
            Box::new(|_| None),
            Some(WithJournal {
                journal: j,
                mark,
                keep,
            }),
        )
        .unwrap();
        (writer, flag)
    }

    fn stored(db: &std::path::Path) -> Vec<String> {
        use crate::store::Reader;
        let s = crate::store::sqlite::SqliteStore::open(db).unwrap();
        let mut logins: Vec<_> = s
            .history("m@x.it", 100)
            .unwrap()
            .into_iter()
            .map(|r| r.login)
            .collect();
        logins.sort();
        logins
    }

    fn mine(login: &str) -> AccessRecord {
        AccessRecord {
            address: Some("m@x.it".into()),
            ..record(login)
        }
    }

    /// With the journal a login is answered before the store has its row (here the store
    /// is unreachable); a crash then loses nothing: the next start writes the journal's
    /// rows before it returns, once — a later start writes none of them again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journaled_logins_are_answered_at_once_and_survive_a_crash_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, true, true));
        for login in ["a", "b", "c"] {
            assert!(w.record(mine(login), None, None).await, "answered");
        }
        // What rides with a secret or a store change does not go to the file: it waits
        // for the store (which refuses now).
        let alert = Alert {
            address: "m@x.it".into(),
            email_to: None,
            notice: crate::store::Notice::new(
                crate::clock::now(),
                crate::store::NoticeKind::PasswordChanged,
                "x",
            ),
            quiet_since: crate::clock::now(),
            link: None,
        };
        assert!(!w.record(mine("with-alert"), Some(alert), None).await);
        // The process dies with the store still unreachable.
        drop(w);
        assert!(stored(&db).is_empty());

        let (w, _) = tokio::task::block_in_place(|| journaled(&db, false, true));
        assert_eq!(stored(&db), ["a", "b", "c"], "the journal's rows, at start");
        assert!(w.record(mine("d"), None, None).await);
        drop(w);
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, false, true));
        assert_eq!(stored(&db), ["a", "b", "c", "d"], "each row once");
        assert!(w.record(mine("e"), None, None).await);
        // The store is gone again, and then the journal is switched off: the next start
        // still writes what it holds, then removes it.
        drop(w);
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, true, true));
        assert!(w.record(mine("f"), None, None).await);
        drop(w);
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, false, false));
        assert_eq!(stored(&db), ["a", "b", "c", "d", "e", "f"]);
        assert!(!journal::dir_of(&db).exists(), "removed once written");
        drop(w);
    }

    /// A batch with a record the store refuses for good is written record by record, each
    /// with its own journal mark: when the store goes away half-way and the process dies,
    /// the next start offers only what was not written (nothing twice), and the refused
    /// record is dropped without stopping the start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_written_apart_repeats_nothing_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, false, true));
        for login in ["trip", "poison", "b"] {
            assert!(w.record(mine(login), None, None).await);
        }
        // "trip" is written alone, then the store goes away; the process dies.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while stored(&db).is_empty() {
            assert!(std::time::Instant::now() < give_up);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(w);
        let (w, _) = tokio::task::block_in_place(|| journaled(&db, false, true));
        assert_eq!(stored(&db), ["b", "trip"]);
        drop(w);
    }

    /// Past KEEP during an outage, the oldest records not journaled go first; journaled
    /// ones stay (the mark committed later must not pass a dropped one), and the marks
    /// stay aligned with the records.
    #[test]
    fn an_outage_drops_the_oldest_records_not_journaled() {
        let mark = |offset| {
            Some(JournalMark {
                generation: 1,
                offset,
            })
        };
        let mut records: Vec<_> = ["j1", "a", "j2", "b", "c"].map(record).into();
        let mut marks = vec![mark(10), None, mark(20), None, None];
        assert_eq!(drop_oldest(&mut records, &mut marks, 2), 2);
        let left: Vec<_> = records.iter().map(|r| r.login.as_str()).collect();
        assert_eq!(left, ["j1", "j2", "c"]);
        assert_eq!(marks, [mark(10), mark(20), None]);
        // Only journaled ones left besides "c": one goes, however many are asked for.
        assert_eq!(drop_oldest(&mut records, &mut marks, 5), 1);
        assert_eq!(records.len(), 2);
        assert_eq!(marks, [mark(10), mark(20)]);
    }
}
