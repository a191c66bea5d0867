//! The notice job: expiry reminders written on a schedule while the proxy runs (and by
//! `sentinella notices run`, for cron or a host that runs no proxy). The rules — which
//! milestones, each once — are the management layer's ([`crate::manage::reminders`]).
//!
//! - `mailer`: the e-mail outbox, sent through the provider's relay.

pub(crate) mod mailer;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now;
use crate::live::Live;
use crate::manage::{ManageSettings, Manager};
use crate::store::{Job, JobLease, StoreLocation};

/// Runs a pass now and then `every` (`notices.every`), off the reactor, for as long as the
/// proxy runs; a reload changes both for the next round.
pub(crate) fn spawn(store: StoreLocation, settings: Live<ManageSettings>, every: Live<Duration>) {
    tokio::spawn(async move {
        let mut manager: Option<Manager> = None;
        let mut lease = Some(JobLease::new(store.clone(), Job::Reminders));
        loop {
            let (location, s) = (store.clone(), Arc::clone(&settings));
            let mut m = manager.take();
            let mut l = lease.take();
            let result = tokio::task::spawn_blocking(move || {
                // One node of a fleet runs the job at a time.
                if !l.as_mut().is_some_and(JobLease::held) {
                    return Ok((crate::manage::reminders::RemindersSent::default(), m, l));
                }
                let mgr = match m.as_mut() {
                    Some(mgr) => mgr,
                    None => m.insert(Manager::with_live(location.open_manage()?, s)?),
                };
                let sent = mgr.send_reminders(now())?;
                Ok::<_, crate::manage::ManageError>((sent, m, l))
            })
            .await;
            match result {
                Ok(Ok((sent, m, l))) => {
                    manager = m;
                    lease = l;
                    if sent.written > 0 {
                        tracing::info!(
                            reminders = sent.written,
                            mailboxes = sent.mailboxes,
                            "expiry reminders written"
                        );
                    }
                }
                Ok(Err(e)) => {
                    lease = Some(JobLease::new(store.clone(), Job::Reminders));
                    tracing::error!(error = %e, "the notice job failed; trying again shortly")
                }
                Err(e) => tracing::error!(error = %e, "the notice job stopped"),
            }
            let pause = **every.load();
            tokio::time::sleep(pause).await;
        }
    });
}
