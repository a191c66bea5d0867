//! Group-committed access history.

use tokio::sync::{mpsc, oneshot};

use crate::store::{AccessLog, AccessRecord, Alert, Rehash};

/// Records waiting to be written, at most.
const QUEUE: usize = 16_384;
/// Records written per transaction, at most.
const BATCH: usize = 512;

/// A record with what rides with it in its transaction.
struct Item {
    record: AccessRecord,
    alert: Option<Alert>,
    rehash: Option<Rehash>,
    ack: oneshot::Sender<bool>,
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

impl HistoryWriter {
    /// Starts the writer thread on its own store connection.
    pub fn start(mut store: Box<dyn AccessLog>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    let mut records = Vec::with_capacity(batch.len());
                    let (mut alerts, mut rehashes) = (Vec::new(), Vec::new());
                    let mut acks = Vec::with_capacity(batch.len());
                    for item in batch {
                        records.push(item.record);
                        alerts.extend(item.alert);
                        rehashes.extend(item.rehash);
                        acks.push(item.ack);
                    }
                    let ok = match store.append(&records, &alerts, &rehashes) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, lost = records.len(), "could not write the access history");
                            false
                        }
                    };
                    for ack in acks {
                        let _ = ack.send(ok);
                    }
                }
            })
            .expect("spawn the history writer");
        HistoryWriter { tx }
    }

    /// Writes one record (and the alert it raises and the re-hash it proved, if any);
    /// returns once it is committed (or the write failed, which is logged). Waits when the
    /// queue is full rather than dropping the record.
    pub async fn record(
        &self,
        record: AccessRecord,
        alert: Option<Alert>,
        rehash: Option<Rehash>,
    ) -> bool {
        let (ack, done) = oneshot::channel();
        let item = Item {
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
}
