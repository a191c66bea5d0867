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

use crate::metrics::METRICS;
use crate::store::{
    AccessLog, AccessRecord, Alert, Breach, HistoryBatch, NewPlace, Rehash, ThrottleFailure,
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

/// Sends access records to the writer thread.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Item>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryWriter")
    }
}

/// Adds `item` to the batch; returns its waiter.
fn add(batch: &mut HistoryBatch, item: Item) -> Option<oneshot::Sender<bool>> {
    match item {
        Item::Record {
            record,
            alert,
            rehash,
            ack,
        } => {
            batch.records.push(record);
            batch.alerts.extend(alert);
            batch.rehashes.extend(rehash);
            Some(ack)
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
fn write_loop(mut store: Box<dyn AccessLog>, mut rx: mpsc::Receiver<Item>, ask: AskOwner) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("the history writer's clock");
    let mut pending = HistoryBatch::default();
    let mut failing_since: Option<std::time::Instant> = None;
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
                    if let Err(e) = store.append(&pending) {
                        tracing::error!(error = %e, lost = pending.records.len(), "could not write the access history before stopping");
                    }
                    return;
                }
                Err(_) => None,
            }
        };
        let mut acks = Vec::new();
        let mut taken = 0;
        if let Some(item) = first {
            acks.extend(add(&mut pending, item));
            taken += 1;
            while taken < BATCH {
                match rx.try_recv() {
                    Ok(item) => {
                        acks.extend(add(&mut pending, item));
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
        }
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
                let (left, new) = apart(store.as_mut(), std::mem::take(&mut pending));
                pending = left;
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
                let excess = pending.records.len().saturating_sub(KEEP);
                if excess > 0 {
                    pending.records.drain(..excess);
                    METRICS
                        .history_dropped
                        .fetch_add(excess as u64, Ordering::Relaxed);
                    tracing::error!(
                        dropped = excess,
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

/// Writes `batch` one item at a time: what the store refuses for good is dropped, counted
/// and logged; what it cannot take now (a temporary failure) is returned, with every item
/// after it, to be tried again.
fn apart(store: &mut dyn AccessLog, batch: HistoryBatch) -> (HistoryBatch, Vec<NewPlace>) {
    let HistoryBatch {
        records,
        alerts,
        rehashes,
        breaches,
        failures,
        clears,
    } = batch;
    let mut items: Vec<HistoryBatch> = Vec::new();
    items.extend(
        records
            .into_iter()
            .map(|r| HistoryBatch::of_records(vec![r])),
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
                    continue;
                }
            }
        }
        left.records.extend(item.records);
        left.alerts.extend(item.alerts);
        left.rehashes.extend(item.rehashes);
        left.breaches.extend(item.breaches);
        left.failures.extend(item.failures);
        left.clears.extend(item.clears);
    }
    (left, new)
}

impl HistoryWriter {
    /// Starts the writer thread on its own store connection.
    pub fn start(store: Box<dyn AccessLog>, ask: AskOwner) -> Self {
        let (tx, rx) = mpsc::channel::<Item>(QUEUE);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || write_loop(store, rx, ask))
            .expect("spawn the history writer");
        HistoryWriter { tx }
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
mod tests {
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
    }

    fn record(login: &str) -> AccessRecord {
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
        let writer =
            HistoryWriter::start(Box::new(Picky(Arc::clone(&written))), Box::new(|_| None));
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
        let writer = HistoryWriter::start(Box::new(Picky(Arc::clone(&written))), ask);
        assert!(writer.record(record("new-place"), None, None).await);
        for _ in 0..100 {
            if written.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*written.lock().unwrap(), ["new-place", "alert:m@x.it"]);
    }
}
