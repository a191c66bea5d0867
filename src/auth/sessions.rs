//! Live sessions: what each relayed session logged in with, so that a change to its
//! mailbox which would refuse the same login now ends it (SPEC: deactivation "ends access
//! at once"), and a session open when its app password expires ends then.
//!
//! Cost: a session registers once, after login, under its mailbox id; the relay waits on
//! one [`Notify`] beside its copy (nothing per byte). When the change feed reports a
//! mailbox, [`Sessions::review`] looks at that mailbox's sessions only — never a scan of
//! all sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::Notify;

use super::principal::Principal;
use crate::policy::Protocol;
use crate::policy::login::{Attempt, ListenerKind, Matched, Outcome, Reason, decide};

/// What a session logged in with.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The mailbox it opened.
    pub mailbox_id: i64,
    /// The (normalised) login name.
    pub login: String,
    /// The hash of the secret that matched, at the time (the login's main password hash,
    /// or the app password's): a changed app password hash — regenerated in its record —
    /// ends the session.
    pub hash: String,
    /// The login's password serial at the time: a new main password ends the session; a
    /// re-hash of the same one (an imported hash made argon2id) does not.
    pub serial: i64,
    /// Which secret matched.
    pub matched: Matched,
    /// The session's protocol.
    pub protocol: Protocol,
    /// The kind of listener it came in on.
    pub listener: ListenerKind,
    /// The client's address (a password pinned elsewhere since ends the session).
    pub client: Option<std::net::IpAddr>,
}

/// Whether `grant` would still be accepted with `principal` (the login's current record,
/// `None` if the name is gone) at `now`: `Ok` with the time it stops being accepted by
/// itself (its app password's expiry), or the reason it is refused now. The login rule
/// ([`decide`]) is the one rule; a changed main password is the one fact it cannot see.
pub fn review(
    grant: &Grant,
    principal: Option<&Principal>,
    now: Timestamp,
    zone: &TimeZone,
) -> Result<Option<Timestamp>, Reason> {
    let Some(p) = principal.filter(|p| p.mailbox.id == grant.mailbox_id) else {
        return Err(Reason::UnknownLogin);
    };
    match grant.matched {
        Matched::Main if p.serial != grant.serial => return Err(Reason::MainPasswordChanged),
        Matched::App(id)
            if p.mailbox
                .app_passwords
                .iter()
                .any(|a| a.id == id && a.hash != grant.hash) =>
        {
            return Err(Reason::WrongAppPassword);
        }
        _ => {}
    }
    let decision = decide(&Attempt {
        mailbox: Some(&p.mailbox),
        protocol: grant.protocol,
        listener: grant.listener,
        throttled: None,
        matched: grant.matched,
        client: grant.client,
        // A session is not ended by its main password being found breached: a login
        // proving it is refused (when the operator asks), an open session is left.
        refuse_breached: false,
        now,
        zone,
    });
    match decision.outcome {
        Outcome::Accepted => Ok(match grant.matched {
            Matched::App(id) => p
                .mailbox
                .app_passwords
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.expires_at),
            _ => None,
        }),
        Outcome::Refused(r) | Outcome::TemporaryFailure(r) => Err(r),
    }
}

#[derive(Debug)]
struct Entry {
    grant: Grant,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Set when the session must end, and why.
    ended: Option<Reason>,
    /// When it ends by itself unless a change moves it (an app password's expiry).
    deadline: Option<Timestamp>,
}

/// Every relayed session, by mailbox.
#[derive(Debug)]
pub struct Sessions {
    by_mailbox: Mutex<HashMap<i64, Vec<Arc<Entry>>>>,
    zone: TimeZone,
}

impl Sessions {
    /// No sessions; app-password expiry read in `zone`.
    pub fn new(zone: TimeZone) -> Arc<Sessions> {
        Arc::new(Sessions {
            by_mailbox: Mutex::new(HashMap::new()),
            zone,
        })
    }

    /// Registers a session that logged in with `grant` and decides it once against
    /// `lookup` at `now` (a change may have landed since its check; registering first
    /// means a change that lands meanwhile reviews it too). Dropping the watch
    /// unregisters.
    pub fn open(
        self: &Arc<Self>,
        grant: Grant,
        lookup: impl Fn(&str) -> Option<Arc<Principal>>,
        now: Timestamp,
    ) -> SessionWatch {
        let entry = Arc::new(Entry {
            grant,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        self.lock()
            .entry(entry.grant.mailbox_id)
            .or_default()
            .push(Arc::clone(&entry));
        self.decide(&entry, &lookup, now);
        SessionWatch {
            entry,
            sessions: Arc::downgrade(self),
        }
    }

    /// Re-decides every session of `mailbox_id` against `lookup` (the current principal
    /// of a login name) at `now`: a session the same login would now be refused for is
    /// told to end. Returns how many were.
    pub fn review(
        &self,
        mailbox_id: i64,
        lookup: impl Fn(&str) -> Option<Arc<Principal>>,
        now: Timestamp,
    ) -> usize {
        let entries = match self.lock().get(&mailbox_id) {
            Some(v) => v.clone(),
            None => return 0,
        };
        entries
            .iter()
            .filter(|e| self.decide(e, &lookup, now))
            .count()
    }

    /// Decides one session; returns whether this ended it.
    fn decide(
        &self,
        e: &Entry,
        lookup: &impl Fn(&str) -> Option<Arc<Principal>>,
        now: Timestamp,
    ) -> bool {
        let principal = lookup(&e.grant.login);
        let verdict = review(&e.grant, principal.as_deref(), now, &self.zone);
        let mut state = e.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.ended.is_some() {
            return false;
        }
        let ended = match verdict {
            Ok(deadline) => {
                state.deadline = deadline;
                false
            }
            Err(reason) => {
                state.ended = Some(reason);
                true
            }
        };
        drop(state);
        // Wakes the session to end, or to re-arm its timer at the new deadline.
        e.wake.notify_one();
        ended
    }

    /// How many sessions are registered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether none are.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Arc<Entry>>>> {
        self.by_mailbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One registered session.
#[derive(Debug)]
pub struct SessionWatch {
    entry: Arc<Entry>,
    sessions: Weak<Sessions>,
}

impl SessionWatch {
    /// Resolves when the session must end, with why: a change refused its login, or its
    /// app password expired. Pending forever otherwise. Cancel-safe.
    pub async fn ended(&self) -> Reason {
        loop {
            let deadline = {
                let state = self.entry.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = &state.ended {
                    return r.clone();
                }
                state.deadline
            };
            let wait = deadline.map(|d| {
                let left = d.duration_since(crate::clock::now());
                std::time::Duration::try_from(left).unwrap_or_default()
            });
            match wait {
                Some(left) => {
                    tokio::select! {
                        _ = self.entry.wake.notified() => {}
                        _ = tokio::time::sleep(left) => {
                            let mut state = self.entry.state.lock().unwrap_or_else(|p| p.into_inner());
                            // Still the same deadline: nothing moved it meanwhile.
                            if state.ended.is_none() && state.deadline == deadline {
                                let zone = self.sessions.upgrade().map(|s| s.zone.clone()).unwrap_or(TimeZone::UTC);
                                let at = deadline.unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(zone);
                                state.ended = Some(Reason::AppPasswordExpired(at));
                            }
                        }
                    }
                }
                None => self.entry.wake.notified().await,
            }
        }
    }
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let Some(sessions) = self.sessions.upgrade() else {
            return;
        };
        let mut map = sessions.lock();
        let id = self.entry.grant.mailbox_id;
        if let Some(v) = map.get_mut(&id) {
            // The order of a mailbox's sessions means nothing: no shifting.
            if let Some(i) = v.iter().position(|e| Arc::ptr_eq(e, &self.entry)) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                map.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::app_password::AppPassword;
    use crate::policy::mailbox::Device;
    use crate::policy::totp::DeviceSecret;
    use crate::policy::{Mailbox, Period, Plan};
    use std::time::Duration;

    fn principal(with_app: Option<Timestamp>) -> Arc<Principal> {
        let mut m = Mailbox::new(
            "mario@pec.example.it".into(),
            Plan::Standard,
            None,
            "h".into(),
        );
        m.id = 7;
        if let Some(expires) = with_app {
            m.device = Some(Device::app(
                DeviceSecret::generate().unwrap(),
                None,
                Timestamp::UNIX_EPOCH,
            ));
            let mut ap = AppPassword::new(
                "apphash".into(),
                Timestamp::UNIX_EPOCH,
                Period::months(3),
                &TimeZone::UTC,
            );
            ap.id = 3;
            ap.expires_at = expires;
            m.app_passwords = vec![ap];
        }
        Arc::new(Principal {
            mailbox: Arc::new(m),
            hash: "main-hash".into(),
            serial: 1,
        })
    }

    fn grant(matched: Matched) -> Grant {
        Grant {
            mailbox_id: 7,
            login: "mario@pec.example.it".into(),
            hash: match matched {
                Matched::App(_) => "apphash".into(),
                _ => "main-hash".into(),
            },
            serial: 1,
            matched,
            protocol: Protocol::Imap,
            listener: ListenerKind::Mailbox,
            client: None,
        }
    }

    fn far() -> Timestamp {
        "2999-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn review_follows_the_login_rule() {
        let now = crate::clock::now();
        let zone = TimeZone::UTC;
        let app = grant(Matched::App(3));
        let ok = principal(Some(far()));
        assert_eq!(review(&app, Some(&ok), now, &zone), Ok(Some(far())));
        // Regenerated in place: same record, new hash.
        let mut in_place = (*ok.mailbox).clone();
        in_place.app_passwords[0].hash = "newhash".into();
        let in_place = Principal {
            mailbox: Arc::new(in_place),
            hash: "main-hash".into(),
            serial: 1,
        };
        assert_eq!(
            review(&app, Some(&in_place), now, &zone),
            Err(Reason::WrongAppPassword)
        );
        // Replaced by another record.
        let mut other = (*ok.mailbox).clone();
        other.app_passwords[0].id = 4;
        let regenerated = Principal {
            mailbox: Arc::new(other),
            hash: "main-hash".into(),
            serial: 1,
        };
        assert_eq!(
            review(&app, Some(&regenerated), now, &zone),
            Err(Reason::WrongAppPassword)
        );
        // 2FA turned off for an app-password session; on for a main-password one.
        let off = principal(None);
        assert_eq!(
            review(&app, Some(&off), now, &zone),
            Err(Reason::WrongPassword)
        );
        let main = grant(Matched::Main);
        assert_eq!(review(&main, Some(&off), now, &zone), Ok(None));
        assert_eq!(
            review(&main, Some(&ok), now, &zone),
            Err(Reason::MainPasswordUnder2fa)
        );
        // Re-hashed (an imported hash made argon2id): the same password, the session goes on.
        let rehashed = Principal {
            mailbox: Arc::clone(&off.mailbox),
            hash: "$argon2id$rehashed".into(),
            serial: 1,
        };
        assert_eq!(review(&main, Some(&rehashed), now, &zone), Ok(None));
        // The main password changed; the name removed; the name now another mailbox's.
        let changed = Principal {
            mailbox: Arc::clone(&off.mailbox),
            hash: "new-hash".into(),
            serial: 2,
        };
        assert_eq!(
            review(&main, Some(&changed), now, &zone),
            Err(Reason::MainPasswordChanged)
        );
        assert_eq!(review(&main, None, now, &zone), Err(Reason::UnknownLogin));
        let mut moved = (*off.mailbox).clone();
        moved.id = 8;
        let elsewhere = Principal {
            mailbox: Arc::new(moved),
            hash: "main-hash".into(),
            serial: 1,
        };
        assert_eq!(
            review(&main, Some(&elsewhere), now, &zone),
            Err(Reason::UnknownLogin)
        );
        // Protocol disabled.
        let mut no_imap = (*off.mailbox).clone();
        no_imap.protocols.remove(Protocol::Imap);
        let no_imap = Principal {
            mailbox: Arc::new(no_imap),
            hash: "main-hash".into(),
            serial: 1,
        };
        assert_eq!(
            review(&main, Some(&no_imap), now, &zone),
            Err(Reason::ProtocolDisabled(Protocol::Imap))
        );
    }

    #[tokio::test]
    async fn a_review_ends_only_the_sessions_it_refuses_and_only_of_that_mailbox() {
        let sessions = Sessions::new(TimeZone::UTC);
        let now = crate::clock::now();
        let before = principal(None);
        let with_app = principal(Some(far()));
        let app = sessions.open(grant(Matched::App(3)), |_| Some(Arc::clone(&with_app)), now);
        let main = sessions.open(grant(Matched::Main), |_| Some(Arc::clone(&before)), now);
        let mut elsewhere = grant(Matched::Main);
        elsewhere.mailbox_id = 9;
        let mut nine = (*before.mailbox).clone();
        nine.id = 9;
        let nine = Arc::new(Principal {
            mailbox: Arc::new(nine),
            hash: "main-hash".into(),
            serial: 1,
        });
        let other = sessions.open(elsewhere, |_| Some(Arc::clone(&nine)), now);
        assert_eq!(sessions.len(), 3);
        let current = principal(Some(far()));
        // With 2FA on, the main-password session ends; the app-password one goes on.
        let ended = sessions.review(7, |_| Some(Arc::clone(&current)), now);
        assert_eq!(ended, 1);
        assert_eq!(main.ended().await, Reason::MainPasswordUnder2fa);
        let pending = tokio::time::timeout(Duration::from_millis(20), app.ended()).await;
        assert!(pending.is_err(), "the app-password session goes on");
        assert_eq!(sessions.review(9, |_| None, now), 1);
        assert_eq!(other.ended().await, Reason::UnknownLogin);
        drop((main, other));
        assert_eq!(sessions.len(), 1, "a dropped watch unregisters");
        drop(app);
        assert!(sessions.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_its_app_passwords_expiry_unless_postponed() {
        let sessions = Sessions::new(TimeZone::UTC);
        let now = crate::clock::now();
        let soon = now + jiff::SignedDuration::from_secs(60);
        let expiring = principal(Some(soon));
        let watch = sessions.open(grant(Matched::App(3)), |_| Some(Arc::clone(&expiring)), now);
        // Postponed before it expires: the new deadline is a day later.
        let later = now + jiff::SignedDuration::from_secs(86_400);
        let postponed = principal(Some(later));
        assert_eq!(sessions.review(7, |_| Some(Arc::clone(&postponed)), now), 0);
        let early = tokio::time::timeout(Duration::from_secs(120), watch.ended()).await;
        assert!(
            early.is_err(),
            "the postponed session outlives the old expiry"
        );
        let reason = tokio::time::timeout(Duration::from_secs(90_000), watch.ended())
            .await
            .expect("ends at the new expiry");
        assert!(matches!(reason, Reason::AppPasswordExpired(at) if at.timestamp() == later));
    }
}
