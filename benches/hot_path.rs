//! The login hot path on a warm verification cache: throttle check, principal-cache lookup,
//! keyed-BLAKE3 cache key, cache hit, and the policy decision re-applied — everything a
//! returning mail client costs, no argon2id.
//!
//!   cargo bench --bench hot_path
//!
//! `cached_check/1_thread` is ns per check on one core; `cached_check/2_threads` is the
//! wall time per check with two threads checking at once (so 1e9 / that = checks/s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sentinella::auth::{
    AuthSettings, Authenticator, Credentials, LoginContext, Mechanism, PasswordHasher,
    ThrottleSettings,
};
use sentinella::clock::now;
use sentinella::config::Argon2Config;
use sentinella::policy::login::ListenerKind;
use sentinella::policy::mailbox::{NewAppPassword, PolicySettings};
use sentinella::policy::totp::DeviceSecret;
use sentinella::policy::{Mailbox, Plan, Protocol, app_password};
use sentinella::secret::Secret;
use sentinella::store::sqlite::SqliteStore;
use sentinella::store::{ManageStore, StoreLocation};

const ADDR: &str = "mario.rossi@pec.example.it";

/// A store with 1,000 mailboxes (2FA on, app passwords), an authenticator over it, and
/// the app password of one of them, already verified once (warm cache).
fn setup() -> (tempfile::TempDir, Arc<Authenticator>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let hasher = PasswordHasher::new(Argon2Config::default().cost()).unwrap();
    // Written straight through the store's transaction, in one commit: a thousand
    // management actions would each hash a fresh password, and the bench needs one.
    let mut store = SqliteStore::open(&path).unwrap();
    let mut tx = store.begin().unwrap();
    let t = now();
    let main = hasher.hash(&Secret::new("main-password".into())).unwrap();
    let mut password = String::new();
    let app = app_password::generate().unwrap();
    let canonical = app_password::canonical(app.expose()).unwrap();
    let app_hash = hasher.hash(&canonical).unwrap();
    let selector = app_password::selector(&canonical);
    for i in 0..1000 {
        let address = if i == 500 {
            ADDR.to_owned()
        } else {
            format!("user{i}@pec.example.it")
        };
        let mut m = Mailbox::new(address, Plan::Pro, None, main.clone());
        m.id = tx.insert_mailbox(&m, t).unwrap();
        let secret = DeviceSecret::generate().unwrap();
        let code = secret.code_at(t).unwrap();
        m.begin_enable_2fa(secret, t).unwrap();
        m.confirm_device(&code, t).unwrap();
        let new = NewAppPassword {
            name: None,
            scope: None,
            selector: selector.clone(),
            hash: app_hash.clone(),
        };
        m.generate_app_password(new, t, &PolicySettings::default())
            .unwrap();
        tx.save_mailbox(&m, t).unwrap();
        if i == 500 {
            password = app.expose().to_owned();
        }
    }
    tx.commit().unwrap();
    drop(store);
    let settings = AuthSettings {
        zone: PolicySettings::default().zone,
        main_password_alert_every: sentinella::policy::Period::days(1),
        email: false,
        language: sentinella::wording::Language::It,
        cache_ttl: Duration::from_secs(3600),
        cache_entries: 65_536,
        principal_entries: 65_536,
        hash_workers: 0,
        hash_queue: 64,
        throttle: ThrottleSettings {
            address_failures: 10,
            name_failures: 5,
            password_failures: 5,
            code_failures: 5,
            window: Duration::from_secs(900),
            block: Duration::from_secs(30),
            address_max_block: Duration::from_secs(3600),
            name_max_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3600),
        },
        breached_passwords: None,
        refuse_breached: false,
        history_sync: Default::default(),
    };
    let auth =
        Arc::new(Authenticator::new(&StoreLocation::Sqlite(path), hasher, None, settings).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let warm = rt.block_on(auth.check(&ctx(), creds(&password)));
    assert!(
        warm.is_accepted(),
        "setup: the app password must be accepted"
    );
    (dir, auth, password)
}

fn ctx() -> LoginContext {
    LoginContext {
        listener: "imaps".into(),
        kind: ListenerKind::Mailbox,
        protocol: Protocol::Imap,
        peer: "127.0.0.1".parse().unwrap(),
        software: None,
        needs_upstream_secret: false,
        pass_through: false,
    }
}

fn creds(password: &str) -> Credentials {
    Credentials::from_wire(
        ADDR.as_bytes(),
        password.as_bytes(),
        None,
        Mechanism::ImapLogin,
    )
}

fn cached_check(c: &mut Criterion) {
    let (_dir, auth, password) = setup();
    let (ctx, presented) = (ctx(), creds(&password));
    let t = now();
    assert!(
        auth.check_cached(&ctx, &presented, t)
            .is_some_and(|v| v.is_accepted())
    );

    let mut group = c.benchmark_group("cached_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1_thread", |b| {
        b.iter(|| {
            let v = auth.check_cached(&ctx, &presented, t).unwrap();
            assert!(v.is_accepted());
        })
    });
    group.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (auth, ctx, password) = (Arc::clone(&auth), ctx.clone(), password.clone());
                    s.spawn(move || {
                        let mine = creds(&password);
                        for _ in 0..iters / 2 {
                            let v = auth.check_cached(&ctx, &mine, t).unwrap();
                            assert!(v.is_accepted());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = cached_check
}
criterion_main!(benches);
