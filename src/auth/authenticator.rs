//! The one place every login is decided, for every protocol and listener.
//!
//! `check` looks the login name up in the store, verifies the secret with argon2id on
//! tokio's blocking pool (never on a reactor thread), and applies the policy's decision
//! table. `record` writes the attempt to the access history.
//!
//! Equal cost: every check does the same number of argon2id verifications for a given
//! shape of secret — one, plus one more if the secret has the shape of an app password —
//! whether the login exists, has 2FA on, or not, using a dummy hash where there is nothing
//! real to compare with. An unknown login therefore costs what a wrong password costs.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use super::{Credentials, PasswordHasher, Secret};
use crate::policy::app_password;
use crate::policy::login::{
    Attempt, CredentialKind, Decision, ListenerKind, Matched, Outcome, Reason, decide,
};
use crate::policy::names::normalize_login;
use crate::policy::{Mailbox, Protocol};
use crate::store::sealed::SealKey;
use crate::store::{AccessRecord, Store};

/// Where a login attempt came from.
#[derive(Clone, Debug)]
pub struct LoginContext {
    /// Listener name.
    pub listener: String,
    /// Mailbox or archive listener.
    pub kind: ListenerKind,
    /// Protocol.
    pub protocol: Protocol,
    /// Client address.
    pub peer: IpAddr,
    /// Whether the upstream login needs the mailbox's stored upstream secret.
    pub needs_upstream_secret: bool,
}

/// The result of a check.
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// The login name as presented, made printable, for the history.
    pub login: String,
    /// The mailbox it opens (for the upstream login), if known.
    pub mailbox: Option<Mailbox>,
    /// The mailbox's upstream secret, if the context asked for it and the login was
    /// accepted.
    pub upstream_secret: Option<Secret>,
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verdict")
            .field("decision", &self.decision)
            .field("login", &self.login)
            .field("mailbox", &self.mailbox.as_ref().map(|m| &m.address))
            .finish_non_exhaustive()
    }
}

/// Decides logins.
pub struct Authenticator {
    store: Mutex<Store>,
    hasher: PasswordHasher,
    dummy_hash: String,
    seal_key: Option<SealKey>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

/// A login name safe to print: control characters escaped, at most 254 characters.
fn printable(login: &str) -> String {
    login
        .chars()
        .take(254)
        .flat_map(char::escape_debug)
        .collect::<String>()
}

impl Authenticator {
    /// An authenticator over its own store connection. Computes one dummy hash (with
    /// the configured cost) for unknown logins to be compared against.
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        seal_key: Option<SealKey>,
    ) -> Result<Self, super::hash::HashError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| super::hash::HashError::Hash(e.to_string()))?;
        let dummy = Secret::new(random.iter().map(|b| format!("{b:02x}")).collect());
        let dummy_hash = hasher.hash(&dummy)?;
        Ok(Authenticator {
            store: Mutex::new(store),
            hasher,
            dummy_hash,
            seal_key,
        })
    }

    /// Decides one login (argon2id runs on the blocking pool).
    pub async fn check(self: &Arc<Self>, ctx: &LoginContext, creds: Credentials) -> Verdict {
        let this = Arc::clone(self);
        let ctx2 = ctx.clone();
        let login = printable(&creds.login);
        match tokio::task::spawn_blocking(move || this.check_blocking(&ctx2, &creds, now())).await {
            Ok(v) => v,
            Err(e) => Verdict {
                decision: Decision {
                    outcome: Outcome::TemporaryFailure(Reason::StoreUnavailable(format!(
                        "check failed: {e}"
                    ))),
                    credential: CredentialKind::Unknown,
                },
                login,
                mailbox: None,
                upstream_secret: None,
            },
        }
    }

    /// Writes the attempt to the access history (on the blocking pool). A failure to
    /// write is logged, never shown to the client.
    pub async fn record(self: &Arc<Self>, ctx: &LoginContext, verdict: &Verdict) {
        let (result, reason) = match &verdict.decision.outcome {
            Outcome::Accepted => ("accepted", None),
            Outcome::Refused(r) => ("refused", Some(r.to_string())),
            Outcome::TemporaryFailure(r) => ("temporary_failure", Some(r.to_string())),
        };
        let rec = AccessRecord {
            at: now(),
            listener: ctx.listener.clone(),
            protocol: ctx.protocol.as_str().to_owned(),
            client: ctx.peer.to_string(),
            login: verdict.login.clone(),
            address: verdict.mailbox.as_ref().map(|m| m.address.clone()),
            credential: verdict.decision.credential.as_str().to_owned(),
            result: result.to_owned(),
            reason,
        };
        let this = Arc::clone(self);
        let written = tokio::task::spawn_blocking(move || {
            let store = this.store.lock().unwrap_or_else(|p| p.into_inner());
            store.record_access(&rec)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not write the access history"),
            Err(e) => tracing::error!(error = %e, "could not write the access history"),
        }
    }

    /// The decision, synchronously: store lookup, argon2id, policy.
    pub fn check_blocking(
        &self,
        ctx: &LoginContext,
        creds: &Credentials,
        now: Timestamp,
    ) -> Verdict {
        let login = printable(&creds.login);
        let app_shaped = app_password::canonical(creds.secret.expose());
        let refuse = |reason| Decision::refuse(reason, CredentialKind::Unknown);
        // Spend the same hashing as a real check before refusing.
        let burn = || {
            self.hasher.verify(&self.dummy_hash, &creds.secret);
            if let Some(canon) = &app_shaped {
                self.hasher.verify(&self.dummy_hash, canon);
            }
        };
        let verdict = |decision, mailbox| Verdict {
            decision,
            login: login.clone(),
            mailbox,
            upstream_secret: None,
        };

        if let Some(why) = creds.malformed {
            burn();
            return verdict(refuse(Reason::Malformed(why)), None);
        }
        let Ok(name) = normalize_login(&creds.login) else {
            burn();
            return verdict(refuse(Reason::Malformed("invalid login name")), None);
        };
        let found = {
            let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            store.lookup_login(&name)
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let d = Decision {
                    outcome: Outcome::TemporaryFailure(Reason::StoreUnavailable(e.to_string())),
                    credential: CredentialKind::Unknown,
                };
                return verdict(d, None);
            }
        };
        let (mailbox, own_hash) = match found {
            Some((m, hash, _)) => (Some(m), hash),
            None => (None, self.dummy_hash.clone()),
        };
        let main_ok = self.hasher.verify(&own_hash, &creds.secret);
        let app_ok = match &app_shaped {
            Some(canon) => {
                let hash = mailbox
                    .as_ref()
                    .and_then(|m| m.app_password.as_ref())
                    .map_or(self.dummy_hash.as_str(), |a| a.hash.as_str());
                self.hasher.verify(hash, canon)
            }
            None => false,
        };
        let two_factor = mailbox.as_ref().is_some_and(Mailbox::two_factor_on);
        let matched = match (mailbox.is_some(), app_ok && two_factor, main_ok) {
            (false, _, _) => Matched::Neither,
            (true, true, _) => Matched::App,
            (true, false, true) => Matched::Main,
            _ => Matched::Neither,
        };
        let decision = decide(&Attempt {
            mailbox: mailbox.as_ref(),
            protocol: ctx.protocol,
            listener: ctx.kind,
            throttled: false,
            matched,
            now,
        });
        let mut v = verdict(decision, mailbox);
        if v.decision.is_accepted() && ctx.needs_upstream_secret {
            v.upstream_secret =
                self.upstream_secret(v.mailbox.as_ref().map(|m| m.address.as_str()).unwrap_or(""));
            if v.upstream_secret.is_none() {
                v.decision = v
                    .decision
                    .upstream_failed("no upstream secret is set for this mailbox");
            }
        }
        v
    }

    fn upstream_secret(&self, address: &str) -> Option<Secret> {
        let key = self.seal_key.as_ref()?;
        let sealed = {
            let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            store.upstream_secret(address).ok()??
        };
        match key.open(address, &sealed) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(mailbox = address, error = %e, "cannot open the upstream secret");
                None
            }
        }
    }
}

/// Now, to the second (policy time).
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::credentials::Mechanism;
    use crate::config::Argon2Config;
    use crate::policy::mailbox::PolicySettings;
    use crate::policy::totp::DeviceSecret;
    use crate::policy::{Period, Plan};
    use crate::store::Change;

    const ADDR: &str = "mario@pec.example.it";

    struct Fixture {
        _dir: tempfile::TempDir,
        auth: Authenticator,
        app_password: Secret,
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(&Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    /// A mailbox (main "main-password"), a multi-user account "ufficio" ("user-password"),
    /// and, if `two_factor`, 2FA on with an app password.
    fn fixture(two_factor: bool, plan: Plan) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let h = hasher();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let t = now();
        let main = h.hash(&Secret::new("main-password".into())).unwrap();
        store
            .create_mailbox(Mailbox::new(ADDR.into(), plan, None, main), t)
            .unwrap();
        store
            .add_user(
                ADDR,
                "ufficio",
                &h.hash(&Secret::new("user-password".into())).unwrap(),
                t,
            )
            .unwrap();
        let app_password = app_password::generate().unwrap();
        if two_factor {
            let secret = DeviceSecret::generate().unwrap();
            let code = secret.code_at(t).unwrap();
            let hash = h
                .hash(&app_password::canonical(app_password.expose()).unwrap())
                .unwrap();
            store
                .update_mailbox(ADDR, Change::action("t"), t, |m| {
                    m.begin_enable_2fa(secret, t)?;
                    m.confirm_device(&code, t)?;
                    m.generate_app_password(hash, t, &PolicySettings::default())
                        .map(|_| ())
                })
                .unwrap();
        }
        Fixture {
            _dir: dir,
            auth: Authenticator::new(store, h, None).unwrap(),
            app_password,
        }
    }

    fn ctx(kind: ListenerKind) -> LoginContext {
        LoginContext {
            listener: "imaps".into(),
            kind,
            protocol: Protocol::Imap,
            peer: "127.0.0.1".parse().unwrap(),
            needs_upstream_secret: false,
        }
    }

    fn check(f: &Fixture, login: &str, secret: &str) -> Verdict {
        let creds = Credentials::from_wire(
            login.as_bytes(),
            secret.as_bytes(),
            None,
            Mechanism::ImapLogin,
        );
        f.auth
            .check_blocking(&ctx(ListenerKind::Mailbox), &creds, now())
    }

    fn refused(v: &Verdict) -> Reason {
        match &v.decision.outcome {
            Outcome::Refused(r) => r.clone(),
            o => panic!("expected refusal, got {o:?}"),
        }
    }

    #[test]
    fn two_factor_off_main_password() {
        let f = fixture(false, Plan::Standard);
        let v = check(&f, "Mario@PEC.example.it", "main-password");
        assert!(v.decision.is_accepted());
        assert_eq!(v.mailbox.unwrap().address, ADDR);
        assert_eq!(refused(&check(&f, ADDR, "wrong")), Reason::WrongPassword);
    }

    #[test]
    fn two_factor_on_main_password_refused_app_password_accepted() {
        let f = fixture(true, Plan::Standard);
        assert_eq!(
            refused(&check(&f, ADDR, "main-password")),
            Reason::MainPasswordUnder2fa
        );
        let pw = f.app_password.expose().to_owned();
        let v = check(&f, ADDR, &pw);
        assert!(v.decision.is_accepted());
        assert_eq!(v.decision.credential, CredentialKind::App);
        // Without dashes, with spaces, upper case.
        assert!(check(&f, ADDR, &pw.replace('-', "")).decision.is_accepted());
        assert!(
            check(&f, ADDR, &pw.replace('-', " ").to_uppercase())
                .decision
                .is_accepted()
        );
        // A wrong app-shaped password.
        let wrong = app_password::generate().unwrap();
        assert_eq!(
            refused(&check(&f, ADDR, wrong.expose())),
            Reason::WrongAppPassword
        );
    }

    #[test]
    fn multi_user_accounts() {
        let f = fixture(false, Plan::Standard);
        let v = check(&f, "ufficio", "user-password");
        assert!(v.decision.is_accepted());
        assert_eq!(
            (v.login.as_str(), v.mailbox.unwrap().address.as_str()),
            ("ufficio", ADDR)
        );
        // Its own password, not the mailbox's.
        assert_eq!(
            refused(&check(&f, "ufficio", "main-password")),
            Reason::WrongPassword
        );
        let f = fixture(true, Plan::Standard);
        let pw = f.app_password.expose().to_owned();
        assert!(
            check(&f, "ufficio", &pw).decision.is_accepted(),
            "the mailbox's app password works for it"
        );
        assert_eq!(
            refused(&check(&f, "ufficio", "user-password")),
            Reason::MainPasswordUnder2fa
        );
    }

    #[test]
    fn unknown_and_malformed_logins() {
        let f = fixture(false, Plan::Standard);
        assert_eq!(
            refused(&check(&f, "nobody@pec.example.it", "main-password")),
            Reason::UnknownLogin
        );
        let v = check(&f, "a b", "x");
        assert_eq!(refused(&v), Reason::Malformed("invalid login name"));
        let creds = Credentials::from_wire(
            ADDR.as_bytes(),
            b"main-password",
            Some(b"admin"),
            Mechanism::Plain,
        );
        let v = f
            .auth
            .check_blocking(&ctx(ListenerKind::Mailbox), &creds, now());
        assert!(
            matches!(refused(&v), Reason::Malformed(_)),
            "right password, other authzid: refused"
        );
    }

    #[test]
    fn archive_needs_pro_or_premium() {
        let f = fixture(false, Plan::Standard);
        let creds = Credentials::from_wire(
            ADDR.as_bytes(),
            b"main-password",
            None,
            Mechanism::ImapLogin,
        );
        let v = f
            .auth
            .check_blocking(&ctx(ListenerKind::Archive), &creds, now());
        assert_eq!(refused(&v), Reason::ArchiveNotInPlan);
        let f = fixture(false, Plan::Pro);
        let v = f
            .auth
            .check_blocking(&ctx(ListenerKind::Archive), &creds, now());
        assert!(v.decision.is_accepted());
    }

    #[test]
    fn expiry_is_checked_at_the_given_time() {
        let f = fixture(true, Plan::Standard);
        let pw = f.app_password.expose().to_owned();
        let creds =
            Credentials::from_wire(ADDR.as_bytes(), pw.as_bytes(), None, Mechanism::ImapLogin);
        let later = Period::months(4).after(now());
        let v = f
            .auth
            .check_blocking(&ctx(ListenerKind::Mailbox), &creds, later);
        assert!(matches!(refused(&v), Reason::AppPasswordExpired(_)));
    }

    #[test]
    fn stored_upstream_secret_is_required_when_asked_for() {
        let f = fixture(false, Plan::Standard);
        let mut c = ctx(ListenerKind::Mailbox);
        c.needs_upstream_secret = true;
        let creds = Credentials::from_wire(
            ADDR.as_bytes(),
            b"main-password",
            None,
            Mechanism::ImapLogin,
        );
        let v = f.auth.check_blocking(&c, &creds, now());
        assert!(matches!(
            v.decision.outcome,
            Outcome::TemporaryFailure(Reason::UpstreamUnavailable(_))
        ));
    }
}
