//! Expiry reminders ("Ti comunichiamo noi la scadenza della password", seed 004): for
//! every app password, a notice when postponing opens, shortly before expiry and on
//! expiry — each exactly once, whatever the restarts, the clock or the number of
//! processes running the job.

use jiff::Timestamp;
use serde::Serialize;

use super::{ManageError, Manager};
use crate::policy::app_password::Milestone;
use crate::policy::mailbox::DueReminder;
use crate::policy::notice::{Reminder, Said};
use crate::store::{Actor, Event, EventAction, Notice};

/// Mailboxes read per round.
const ROUND: u32 = 500;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemindersSent {
    /// Reminders written as notices.
    pub written: usize,
    /// Mailboxes that had one due.
    pub mailboxes: usize,
}

impl Manager {
    /// One pass at `now`: reads only the mailboxes with a reminder due (indexed), writes
    /// each due reminder once (the latest milestone passed; earlier ones passed while no
    /// job ran are skipped, not sent late), and moves every password's next reminder on.
    pub fn send_reminders(&mut self, now: Timestamp) -> Result<RemindersSent, ManageError> {
        let s = self.settings.load().policy.clone();
        let s_email = self.settings.load().email;
        let locale = self.settings.load().locale();
        let mut sent = RemindersSent::default();
        // Every round moves the due passwords past `now`, so rounds end; the bound is a
        // guard against a store that does not keep what it is given.
        for _ in 0..10_000 {
            let due = self.store.due_reminders(now, ROUND)?;
            // One transaction a round (one sync for up to ROUND mailboxes); each mailbox
            // is read again inside it, so a concurrent pass finds nothing left to do.
            let mut tx = self.store.begin()?;
            for address in &due {
                let Some(mut m) = tx.mailbox(address)? else {
                    continue;
                };
                let before: Vec<_> = m.app_passwords.iter().map(|a| a.next_reminder_at).collect();
                let reminders = m.take_due_reminders(now, &s);
                let email_to = m.email_recipients(s_email, None);
                let mut wrote = false;
                for r in &reminders {
                    let mut latest = false;
                    for key in &r.passed {
                        let claimed = tx.claim_reminder(r.id, r.expires_at, key, now)?;
                        latest = claimed && *key == r.milestone.key();
                    }
                    if !latest {
                        continue;
                    }
                    let notice = Notice::said(now, said(r), &locale);
                    tx.record_notice(address, &notice, &email_to, now)?;
                    tx.record_event(&Event {
                        at: now,
                        address: address.clone(),
                        actor: Actor::System,
                        action: EventAction::ExpiryReminder,
                        detail: Some(format!("{}: {}", r.name, r.milestone.key())),
                    })?;
                    sent.written += 1;
                    wrote = true;
                }
                // Only the next reminders moved: write just those.
                for (ap, was) in m.app_passwords.iter().zip(before) {
                    if ap.next_reminder_at != was {
                        tx.set_next_reminder(ap.id, ap.next_reminder_at)?;
                    }
                }
                sent.mailboxes += usize::from(wrote);
            }
            tx.commit()?;
            if due.len() < ROUND as usize {
                break;
            }
        }
        Ok(sent)
    }
}

/// What the reminder says: which password, its date, which milestone.
fn said(r: &DueReminder) -> Said {
    Said::Reminder {
        name: r.name.clone(),
        expires_at: r.expires_at,
        reminder: match &r.milestone {
            Milestone::PostponeOpens => Reminder::PostponeOpens,
            Milestone::Before(period) => Reminder::Before { period: *period },
            Milestone::Expired => Reminder::Expired,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::app_password::Wanted;
    use super::super::testing::{ADDR, operator, turn_on_2fa, with_mailbox_under};
    use super::*;
    use crate::policy::{Period, Plan, PolicySettings};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy() -> PolicySettings {
        PolicySettings {
            zone: jiff::tz::TimeZone::get("Europe/Rome").unwrap(),
            ..PolicySettings::default()
        }
    }

    /// A mailbox with 2FA and one app password generated at `t0`, under `policy`.
    fn with_password(
        policy: PolicySettings,
        t0: Timestamp,
    ) -> (tempfile::TempDir, Manager, crate::store::StoreLocation) {
        let (dir, mut m, location) = with_mailbox_under(policy, Plan::Standard, None, t0);
        turn_on_2fa(&mut m, ADDR, t0);
        m.generate_app_password(&operator(), ADDR, Wanted::default(), false, t0)
            .unwrap();
        (dir, m, location)
    }

    /// The reminders the owner has, oldest first.
    fn reminders(m: &Manager) -> Vec<String> {
        let mut v: Vec<String> = m
            .notices(ADDR)
            .unwrap()
            .notices
            .into_iter()
            .filter(|n| n.kind == crate::store::NoticeKind::ExpiryReminder)
            .map(|n| n.message)
            .collect();
        v.reverse();
        v
    }

    #[test]
    fn each_milestone_once_across_restarts_and_two_processes() {
        // Generated 10:00 on 15/11/2022 in Rome; expires 10:00 on 15/02/2023.
        let t0 = at("2022-11-15T09:00:00Z");
        let (_d, mut m, location) = with_password(policy(), t0);
        // A second process on the same store.
        let mut other = Manager::new(
            location.open_manage().unwrap(),
            crate::manage::ManageSettings::clone(&m.settings.load()),
        )
        .unwrap();

        assert_eq!(
            m.send_reminders(at("2023-01-31T00:00:00Z"))
                .unwrap()
                .written,
            0
        );
        // Postponing opens at 10:00 on 01/02 in Rome (09:00 UTC).
        let opens = at("2023-02-01T09:00:00Z");
        assert_eq!(m.send_reminders(opens).unwrap().written, 1);
        assert_eq!(other.send_reminders(opens).unwrap().written, 0, "not twice");
        assert_eq!(
            m.send_reminders(at("2023-02-10T00:00:00Z"))
                .unwrap()
                .written,
            0
        );
        // 3 days before, seen by the other process (a restart is a new manager too).
        let three = at("2023-02-12T09:00:00Z");
        assert_eq!(other.send_reminders(three).unwrap().written, 1);
        assert_eq!(m.send_reminders(three).unwrap().written, 0);
        // The job did not run on the 14th: at expiry only the expiry is sent, not the
        // 1-day reminder late.
        let expired = at("2023-02-15T09:00:00Z");
        assert_eq!(m.send_reminders(expired).unwrap().written, 1);
        assert_eq!(
            m.send_reminders(at("2023-06-01T00:00:00Z"))
                .unwrap()
                .written,
            0
        );
        let texts = reminders(&m);
        assert_eq!(texts.len(), 3, "{texts:?}");
        // In Italian, the testing manager's language, with the dates in Rome.
        assert!(
            texts[0].contains("scade il 15/02/2023 10:00 CET") && texts[0].contains("posticiparne"),
            "{texts:?}"
        );
        assert!(texts[1].contains("(tra 3 giorni)"), "{texts:?}");
        assert!(
            texts[2].contains("è scaduta il 15/02/2023 10:00 CET"),
            "{texts:?}"
        );
        let events = m.events(ADDR).unwrap().events;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.action == EventAction::ExpiryReminder)
                .count(),
            3
        );
    }

    #[test]
    fn postponing_rearms_and_past_milestones_are_skipped() {
        let t0 = at("2022-11-15T09:00:00Z");
        let (_d, mut m, _) = with_password(
            PolicySettings {
                // Postponing allowed at once: the window is wider than the validity.
                postpone_window: Period::days(100),
                ..policy()
            },
            t0,
        );
        // Postponing opened before the password existed: that milestone is skipped.
        assert_eq!(
            m.send_reminders(at("2022-11-20T00:00:00Z"))
                .unwrap()
                .written,
            0
        );
        // 1 day before the first expiry, then postponed: the next is for the new date.
        assert_eq!(
            m.send_reminders(at("2023-02-14T09:00:00Z"))
                .unwrap()
                .written,
            1
        );
        let p = m
            .postpone_app_password(&operator(), ADDR, None, at("2023-02-14T10:00:00Z"))
            .unwrap();
        assert_eq!(
            p.expires_at,
            at("2023-05-15T08:00:00Z"),
            "10:00 in Rome, summer time"
        );
        assert_eq!(
            m.send_reminders(at("2023-02-15T09:00:00Z"))
                .unwrap()
                .written,
            0
        );
        assert_eq!(
            m.send_reminders(at("2023-05-12T08:00:00Z"))
                .unwrap()
                .written,
            1
        );
        let texts = reminders(&m);
        assert!(texts[1].contains("15/05/2023 10:00 CEST"), "{texts:?}");
    }
}
