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
use crate::store::{AccessLog, AccessRecord, Alert, HistoryBatch, Rehash, ThrottleFailure};

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
}

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
    }
}

/// The writer's loop, on its own thread.
fn write_loop(mut store: Box<dyn AccessLog>, mut rx: mpsc::Receiver<Item>) {
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
        let ok = match store.append(&pending) {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        written = pending.records.len(),
                        after_secs = since.elapsed().as_secs(),
                        "the access history is written again, nothing kept back"
                    );
                }
                pending = HistoryBatch::default();
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

impl HistoryWriter {
    /// Starts the writer thread on its own store connection.
    pub fn start(store: Box<dyn AccessLog>) -> Self {
        let (tx, rx) = mpsc::channel::<Item>(QUEUE);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || write_loop(store, rx))
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
}
