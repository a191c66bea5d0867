//! Retention: the access history is kept 6 months by default (as the provider's Storico
//! accessi), events and notices longer; older records are deleted in the background, in
//! small batches, so a login or a management action waits at most one batch for the
//! write lock.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::policy::Period;
use crate::store::{Job, JobLease, Kept, Retention, StoreError, StoreLocation};

/// Records deleted per transaction, at most.
const BATCH: usize = 1_000;
/// The pause between two batches, so other writers get the lock in between.
const BREATHE: Duration = Duration::from_millis(20);
/// How often the background job runs.
const EVERY: Duration = Duration::from_secs(3_600);

/// How long the change feed is kept: followers read it within a second; one that was
/// stopped starts from the current state anyway.
const CHANGES_KEPT: Period = Period::days(1);

/// How long a fleet's throttle rows are kept at least: longer than any block they
/// start; a longer `throttle.window` keeps them for the window.
const THROTTLE_KEPT: Period = Period::days(1);

/// How long each kind of record is kept.
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    /// The access history.
    pub history: Period,
    /// Management events.
    pub events: Period,
    /// Notices.
    pub notices: Period,
    /// How far back the throttle counts failures (`throttle.window`).
    pub throttle_window: Duration,
    /// The calendar the periods are counted in.
    pub zone: TimeZone,
}

impl RetentionSettings {
    fn of(&self, kind: Kept) -> Period {
        match kind {
            Kept::AccessHistory => self.history,
            Kept::Events => self.events,
            Kept::Notices => self.notices,
            Kept::Changes => CHANGES_KEPT,
            Kept::ThrottleFailures | Kept::ThrottleClears => {
                let window = self.throttle_window;
                match THROTTLE_KEPT.as_std() {
                    Some(kept) if kept >= window => THROTTLE_KEPT,
                    _ => Period::seconds(window.as_secs()),
                }
            }
        }
    }
}

/// One pass at `now`: deletes every record older than its kind's period, batch by
/// batch, pausing `breathe` between batches. Returns how many of each were deleted.
pub(crate) fn pass(
    store: &mut dyn Retention,
    settings: &RetentionSettings,
    now: Timestamp,
    breathe: Duration,
) -> Result<Vec<(Kept, usize)>, StoreError> {
    let mut deleted = Vec::new();
    for kind in Kept::ALL {
        let before = settings.of(kind).before(now, &settings.zone);
        let mut total = 0;
        loop {
            let n = store.delete_older(kind, before, BATCH)?;
            total += n;
            if n < BATCH {
                break;
            }
            std::thread::sleep(breathe);
        }
        deleted.push((kind, total));
    }
    Ok(deleted)
}

/// Runs a pass at start and then every hour, off the reactor, for as long as the proxy
/// runs. A failed pass is logged and tried again at the next round.
pub(crate) fn spawn(store: StoreLocation, settings: RetentionSettings) {
    tokio::spawn(async move {
        let mut open: Option<Box<dyn Retention>> = None;
        let mut lease = JobLease::new(store.clone(), Job::Retention);
        loop {
            let s = settings.clone();
            let location = store.clone();
            let mut conn = open.take();
            let (held, back) = tokio::task::spawn_blocking(move || (lease.held(), lease))
                .await
                .unwrap_or_else(|_| (false, JobLease::new(store.clone(), Job::Retention)));
            lease = back;
            if !held {
                // Another node of the fleet runs it.
                open = conn;
                tokio::time::sleep(EVERY).await;
                continue;
            }
            let result = tokio::task::spawn_blocking(move || {
                let store = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(location.open_retention()?),
                };
                let now = crate::clock::now();
                pass(store.as_mut(), &s, now, BREATHE).map(|d| (d, conn))
            })
            .await;
            match result {
                Ok(Ok((deleted, conn))) => {
                    open = conn;
                    for (kind, n) in deleted.into_iter().filter(|(_, n)| *n > 0) {
                        tracing::info!(records = %kind, deleted = n, "retention: old records deleted");
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "retention pass failed; trying again later")
                }
                Err(e) => tracing::error!(error = %e, "retention pass stopped"),
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Protocol;
    use crate::policy::login::{AccessResult, CredentialKind};
    use crate::store::HistoryBatch;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AccessLog, AccessRecord, Reader};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(when: &str) -> AccessRecord {
        AccessRecord {
            at: at(when),
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
            result: AccessResult::Refused,
            reason: Some(crate::policy::login::Reason::Text(when.into())),
        }
    }

    #[test]
    fn deletes_exactly_what_is_older_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        // 2,500 rows from before the cut (three batches), and rows at and after it.
        let old: Vec<AccessRecord> = (0..2_500).map(|_| record("2023-09-01T00:00:00Z")).collect();
        store
            .append(&HistoryBatch::of_records(old.clone()))
            .unwrap();
        store
            .append(&HistoryBatch::of_records(vec![
                record("2023-10-14T21:59:59Z"),
                record("2023-10-14T22:00:00Z"),
                record("2024-04-14T12:00:00Z"),
            ]))
            .unwrap();
        let settings = RetentionSettings {
            history: Period::months(6),
            events: Period::months(24),
            notices: Period::months(12),
            throttle_window: Duration::from_secs(900),
            zone: TimeZone::get("Europe/Rome").unwrap(),
        };
        // Six calendar months before 15/04/2024 00:00 in Rome: 15/10/2023 00:00 in Rome,
        // which is 22:00 UTC on the 14th (summer time).
        let now = at("2024-04-14T22:00:00Z");
        let deleted = pass(&mut store, &settings, now, Duration::ZERO).unwrap();
        assert_eq!(
            deleted,
            [
                (Kept::AccessHistory, 2_501),
                (Kept::Events, 0),
                (Kept::Notices, 0),
                (Kept::Changes, 0),
                // One machine's store has no fleet throttle rows.
                (Kept::ThrottleFailures, 0),
                (Kept::ThrottleClears, 0)
            ]
        );
        let kept: Vec<String> = store
            .history("a@b.it", 10)
            .unwrap()
            .into_iter()
            .map(|r| r.reason.unwrap().to_string())
            .collect();
        assert_eq!(kept, ["2024-04-14T12:00:00Z", "2023-10-14T22:00:00Z"]);
        // A second pass finds nothing more.
        let again = pass(&mut store, &settings, now, Duration::ZERO).unwrap();
        assert!(again.iter().all(|(_, n)| *n == 0));
    }
}
