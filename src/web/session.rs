//! The page's sessions, kept in the server's memory: a random 128-bit id in a
//! `Secure; HttpOnly; SameSite=Strict` cookie, a CSRF token per session, an idle timeout
//! and an absolute lifetime. A session is anonymous (the login form), waiting for the
//! device's code, or logged in — and then bound to the credentials it logged in with
//! (a stamp of the main password and the device): when they change, it ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::Secret;
use crate::wording::Language;

/// Sessions kept at most (the oldest go first when full).
const MAX_SESSIONS: usize = 100_000;
/// An anonymous or half-logged-in session lasts at most this long.
const LOGIN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Where a session stands.
#[derive(Clone, Debug)]
pub enum Stage {
    /// Not logged in.
    Anonymous,
    /// The main password was right; a code from the device is due.
    NeedsCode {
        /// The login name.
        login: String,
        /// The mailbox.
        address: String,
    },
    /// Logged in.
    In {
        /// The login name (the address, or a multi-user account's name): who acts.
        login: String,
        /// The mailbox managed.
        address: String,
        /// The credentials' stamp at login.
        stamp: [u8; 32],
    },
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The CSRF token of its forms.
    pub csrf: String,
    /// Its language.
    pub language: Language,
    /// Where it stands.
    pub stage: Stage,
    /// A message for the next page (after a redirect).
    pub flash: Option<Flash>,
    /// A new app password, shown once by the next page that takes it.
    pub reveal: Option<Revealed>,
    created: Instant,
    last: Instant,
}

/// A message shown once.
#[derive(Clone, Debug)]
pub struct Flash {
    /// Whether it tells of an error.
    pub error: bool,
    /// The text.
    pub text: String,
}

/// A new app password waiting to be shown once.
#[derive(Debug)]
pub struct Revealed {
    /// Its name.
    pub name: String,
    /// The password.
    pub password: Secret,
    /// Its expiry, as the page shows it.
    pub expires: String,
    /// Its protocols.
    pub scope: String,
}

/// Every session.
pub struct Sessions {
    all: Mutex<HashMap<String, Session>>,
    idle: Duration,
    lifetime: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 128 random bits, in hex.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// Sessions ending after `idle` unused, or `lifetime` after they began.
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Sessions {
            all: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        let lifetime = match s.stage {
            Stage::In { .. } => self.lifetime,
            _ => LOGIN_LIFETIME.min(self.lifetime),
        };
        now.duration_since(s.last) < self.idle && now.duration_since(s.created) < lifetime
    }

    /// A new anonymous session; returns its id.
    pub fn create(&self, language: Language) -> String {
        let now = Instant::now();
        let id = random_token();
        let mut all = self.lock();
        if all.len() >= MAX_SESSIONS {
            all.retain(|_, s| self.alive(s, now));
            if all.len() >= MAX_SESSIONS
                && let Some(oldest) = all
                    .iter()
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
        }
        all.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                language,
                stage: Stage::Anonymous,
                flash: None,
                reveal: None,
                created: now,
                last: now,
            },
        );
        id
    }

    /// Runs `f` on session `id` if it is alive (and marks it used); an expired one is
    /// dropped.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let now = Instant::now();
        let mut all = self.lock();
        let alive = all.get(id).is_some_and(|s| self.alive(s, now));
        if !alive {
            all.remove(id);
            return None;
        }
        let s = all.get_mut(id)?;
        s.last = now;
        Some(f(s))
    }

    /// Moves session `id` to `stage` under a new id (no session fixation: the id known
    /// before login is not the one after); returns the new id.
    pub fn promote(&self, id: &str, stage: Stage) -> Option<String> {
        let mut all = self.lock();
        let mut s = all.remove(id)?;
        let now = Instant::now();
        if !self.alive(&s, now) {
            return None;
        }
        if matches!(stage, Stage::In { .. }) {
            s.created = now;
        }
        s.stage = stage;
        s.last = now;
        s.csrf = random_token();
        let new = random_token();
        all.insert(new.clone(), s);
        Some(new)
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every logged-in session of `address` but `keep`.
    pub fn end_others(&self, address: &str, keep: &str) {
        self.lock().retain(|id, s| {
            id == keep || !matches!(&s.stage, Stage::In { address: a, .. } | Stage::NeedsCode { address: a, .. } if a == address)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_login_moves_to_a_new_id() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let a = s.create(Language::It);
        let b = s.create(Language::It);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32, "128 bits in hex");
        let csrf = s.with(&a, |x| x.csrf.clone()).unwrap();
        let stage = Stage::In {
            login: "x".into(),
            address: "x".into(),
            stamp: [0; 32],
        };
        let c = s.promote(&a, stage).unwrap();
        assert!(s.with(&a, |_| ()).is_none(), "the old id is gone");
        assert_ne!(
            s.with(&c, |x| x.csrf.clone()).unwrap(),
            csrf,
            "a new CSRF token"
        );
        s.end(&c);
        assert!(s.with(&c, |_| ()).is_none());
    }

    #[test]
    fn an_idle_session_ends() {
        let s = Sessions::new(Duration::from_millis(0), Duration::from_secs(600));
        let a = s.create(Language::En);
        assert!(s.with(&a, |_| ()).is_none());
    }

    #[test]
    fn other_sessions_of_a_mailbox_end() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(600));
        let stage = || Stage::In {
            login: "x".into(),
            address: "m@x.it".into(),
            stamp: [0; 32],
        };
        let a = s.promote(&s.create(Language::It), stage()).unwrap();
        let b = s.promote(&s.create(Language::It), stage()).unwrap();
        let other = s.create(Language::It);
        s.end_others("m@x.it", &a);
        assert!(s.with(&a, |_| ()).is_some());
        assert!(s.with(&b, |_| ()).is_none());
        assert!(s.with(&other, |_| ()).is_some(), "anonymous sessions stay");
    }
}
