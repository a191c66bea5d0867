//! A bounded pool for argon2id: at most `workers` verifications at once, at most `queue`
//! waiting. When the queue is full the caller is told at once ([`Busy`]) and answers the
//! client with a temporary failure, instead of letting work pile up for minutes.

use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

type Job = Box<dyn FnOnce() + Send>;

/// The pool is saturated (or shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password verification is saturated")]
pub struct Busy;

/// Worker threads fed by a bounded queue.
pub struct HashPool {
    tx: Mutex<Option<SyncSender<Job>>>,
    workers: usize,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashPool({} workers)", self.workers)
    }
}

impl HashPool {
    /// `workers` threads (0: one per core), `queue` jobs waiting at most.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        };
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                            guard.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn an argon2 worker");
        }
        HashPool {
            tx: Mutex::new(Some(tx)),
            workers,
        }
    }

    /// Runs `f` on a worker; `Busy` at once if the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let queued = std::time::Instant::now();
        let metrics = &crate::metrics::METRICS;
        let job: Job = Box::new(move || {
            metrics.hash_wait.observe(queued.elapsed());
            let _ = done_tx.send(f());
            metrics
                .hash_queue
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            match tx.as_ref().map(|t| t.try_send(job)) {
                Some(Ok(())) => {
                    metrics
                        .hash_queue
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                    return Err(Busy);
                }
            }
        }
        done_rx.await.map_err(|_| Busy)
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        // Closing the channel lets the workers finish what is queued and exit.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = HashPool::new(2, 4);
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let pool = Arc::new(HashPool::new(1, 1));
        let gate = Arc::new(std::sync::Barrier::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        // Occupy the worker until released.
        let (g, r) = (Arc::clone(&gate), Arc::clone(&running));
        let p = Arc::clone(&pool);
        let first = tokio::spawn(async move {
            p.run(move || {
                r.fetch_add(1, Ordering::SeqCst);
                g.wait();
            })
            .await
        });
        while running.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // One job fits in the queue...
        let p = Arc::clone(&pool);
        let queued = tokio::spawn(async move { p.run(|| 1).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // ...the next does not.
        assert_eq!(pool.run(|| 2).await, Err(Busy));
        gate.wait();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(1));
    }
}
