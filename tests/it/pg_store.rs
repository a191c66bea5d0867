//! The PostgreSQL store's traits, called directly against a real PostgreSQL: the same
//! semantics the SQLite store's unit tests pin down (one action all or nothing, a taken
//! name an answer that leaves the transaction usable, alerts quieted per period, an
//! e-mail taken by one mailer), plus what only a shared store has: the change mark moved
//! by a notification, the feed in commit order, a lease held by one process at a time.

use crate::common;

use std::time::{Duration, Instant};

use common::servers::Postgres;
use sentinella::policy::{Mailbox, Plan};
use sentinella::store::postgres::PgLocation;
use sentinella::store::{
    Alert, DeliveryState, HistoryBatch, Job, Notice, NoticeKind, StoreError, StoreLocation,
};

const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

fn at(s: &str) -> sentinella::policy::Timestamp {
    s.parse().unwrap()
}

fn location(pg: &Postgres) -> StoreLocation {
    StoreLocation::Postgres(PgLocation {
        url: pg.url(),
        password_file: Some(pg.password_file()),
        ca_file: None,
        pool_size: 4,
    })
}

fn add(loc: &StoreLocation, address: &str) -> Mailbox {
    let mut store = loc.open_manage().unwrap();
    let mut m = Mailbox::new(address.into(), Plan::Standard, None, HASH.into());
    let mut tx = store.begin().unwrap();
    m.id = tx.insert_mailbox(&m, at("2026-01-01T00:00:00Z")).unwrap();
    tx.commit().unwrap();
    m
}

#[test]
fn the_store_traits_behave_on_postgresql_as_on_sqlite() {
    let pg = Postgres::start();
    let loc = location(&pg);
    let a = add(&loc, "a@b.it");
    let mut store = loc.open_manage().unwrap();
    let t = at("2026-01-01T00:00:00Z");

    // Dropped uncommitted: nothing written.
    {
        let mut tx = store.begin().unwrap();
        let mut m = tx.mailbox("a@b.it").unwrap().unwrap();
        m.plan = Plan::Premium;
        tx.save_mailbox(&m, t).unwrap();
    }
    assert_eq!(store.mailbox("a@b.it").unwrap().unwrap(), a);

    // A taken name is an answer, and the transaction goes on.
    let mut tx = store.begin().unwrap();
    tx.insert_user(a.id, "ufficio@b.it", HASH, t).unwrap();
    assert!(matches!(
        tx.insert_user(a.id, "a@b.it", HASH, t),
        Err(StoreError::LoginTaken(_))
    ));
    let dup = Mailbox::new("ufficio@b.it".into(), Plan::Standard, None, HASH.into());
    assert!(matches!(
        tx.insert_mailbox(&dup, t),
        Err(StoreError::LoginTaken(_))
    ));
    tx.commit().unwrap();
    let user = store.login("ufficio@b.it").unwrap().unwrap();
    assert!(user.is_user && user.mailbox.address == "a@b.it");
    // Only hashes: the CHECK refuses a plain password.
    let bad = Mailbox::new("c@b.it".into(), Plan::Standard, None, "plain".into());
    let mut tx = store.begin().unwrap();
    assert!(matches!(
        tx.insert_mailbox(&bad, t),
        Err(StoreError::Backend {
            temporary: false,
            ..
        })
    ));
    drop(tx);

    // Alerts: at most one of a kind per period, across batches.
    let mut log = loc
        .open_access_log(sentinella::store::HistorySync::Full)
        .unwrap();
    let alert = |when: &str, quiet: &str| Alert {
        address: "a@b.it".into(),
        email_to: Some("owner@example.com".into()),
        notice: Notice::new(
            at(when),
            NoticeKind::MainPasswordUsed,
            format!("used at {when}"),
        ),
        quiet_since: at(quiet),
        link: None,
    };
    log.append(&HistoryBatch::of_alerts(vec![
        alert("2026-03-01T10:00:00Z", "2026-02-28T10:00:00Z"),
        alert("2026-03-01T10:05:00Z", "2026-02-28T10:05:00Z"),
    ]))
    .unwrap();
    log.append(&HistoryBatch::of_alerts(vec![alert(
        "2026-03-02T10:00:01Z",
        "2026-03-01T10:00:01Z",
    )]))
    .unwrap();
    let written: Vec<String> = store
        .notices("a@b.it")
        .unwrap()
        .into_iter()
        .map(|n| n.message)
        .collect();
    assert_eq!(
        written,
        [
            "used at 2026-03-02T10:00:01Z",
            "used at 2026-03-01T10:00:00Z"
        ]
    );

    // Each e-mail is taken by one mailer; after the lease, by the next.
    let (mut m1, mut m2) = (loc.open_outbox().unwrap(), loc.open_outbox().unwrap());
    let due = m1.due_emails(at("2026-03-03T00:00:00Z"), 10).unwrap();
    assert_eq!(due.len(), 2);
    let now = at("2026-03-03T00:00:00Z");
    let lease = at("2026-03-03T00:02:00Z");
    assert!(m1.claim_email(due[0].id, now, lease).unwrap());
    assert!(!m2.claim_email(due[0].id, now, lease).unwrap());
    m1.email_tried(due[0].id, DeliveryState::Sent, None, None, now)
        .unwrap();
    assert_eq!(m2.pending_emails().unwrap(), 1);

    // Removal keeps the history and the notices.
    let mut tx = store.begin().unwrap();
    tx.delete_mailbox(a.id).unwrap();
    tx.commit().unwrap();
    assert!(store.login("ufficio@b.it").unwrap().is_none());
    assert_eq!(store.notices("a@b.it").unwrap().len(), 2);
}

#[test]
fn the_feed_moves_the_mark_by_notification_in_commit_order_and_leases_are_exclusive() {
    let pg = Postgres::start();
    let loc = location(&pg);
    let follower = loc.open_principals().unwrap();
    let mark = follower.change_mark().unwrap();
    let last = follower.last_change().unwrap();
    assert_eq!(
        follower.change_mark().unwrap(),
        mark,
        "no change, no move, no query"
    );
    // Two writers at once: the feed's ids follow the commits.
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let loc = loc.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    add(&loc, &format!("w{i}-{j}@b.it"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let start = Instant::now();
    while follower.change_mark().unwrap() == mark {
        assert!(start.elapsed() < Duration::from_secs(5), "no notification");
        std::thread::sleep(Duration::from_millis(5));
    }
    let changes = follower.changes_since(last, 1000).unwrap();
    assert_eq!(changes.len(), 40);
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    // Mailboxes were committed in the feed's order: ids rise with the sequence.
    assert!(
        changes
            .windows(2)
            .all(|w| w[0].mailbox_id < w[1].mailbox_id)
    );
    // One holder of a lease at a time; when it goes, the next one takes it.
    let mut one = loc.lease(Job::Reminders).unwrap();
    let mut two = loc.lease(Job::Reminders).unwrap();
    assert!(one.held().unwrap());
    assert!(!two.held().unwrap());
    assert!(one.held().unwrap(), "still held");
    let mut other_job = loc.lease(Job::Retention).unwrap();
    assert!(other_job.held().unwrap(), "another job, another lease");
    drop(one);
    let start = Instant::now();
    while !two.held().unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the lease did not move"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where each password is used, on PostgreSQL: places counted once a batch, a new one
/// reported after the password's first hour, at most once an hour; a "Non sono stato
/// io" link kept as its hash, found and spent once.
#[test]
fn places_and_not_me_links_behave_on_postgresql_as_on_sqlite() {
    use sentinella::policy::login::{AccessResult, CredentialKind};
    use sentinella::policy::usage::{self, Credential, PlaceKind};
    use sentinella::store::{AccessRecord, AppPasswordUse, NotMeLink};
    let pg = Postgres::start();
    let loc = location(&pg);
    let mut m = add(&loc, "a@b.it");
    let mut store = loc.open_manage().unwrap();
    let t = at("2026-01-01T10:00:00Z");
    let made = at("2026-01-01T07:00:00Z");
    m.app_passwords
        .push(sentinella::policy::app_password::AppPassword::new(
            HASH.into(),
            made,
            sentinella::policy::Period::months(3),
            &jiff::tz::TimeZone::UTC,
        ));
    let mut tx = store.begin().unwrap();
    tx.save_mailbox(&m, t).unwrap();
    tx.commit().unwrap();
    let ap = store.mailbox("a@b.it").unwrap().unwrap().app_passwords[0].id;
    let login = |client: &str, software: Option<&str>, mins: i64| AccessRecord {
        at: t + jiff::SignedDuration::from_mins(mins),
        listener: "imaps".into(),
        protocol: sentinella::policy::Protocol::Imap.into(),
        client: client.into(),
        login: "a@b.it".into(),
        address: Some("a@b.it".into()),
        unresolved: None,
        mailbox_id: Some(m.id),
        software: software.map(Into::into),
        credential: CredentialKind::App,
        app_password: Some(AppPasswordUse {
            id: ap,
            name: "default".into(),
        }),
        result: AccessResult::Accepted,
        reason: None,
    };
    let mut log = loc
        .open_access_log(sentinella::store::HistorySync::Full)
        .unwrap();
    let new = log
        .append(&HistoryBatch::of_records(vec![
            login("192.0.2.1", Some("Thunderbird 128"), 0),
            login("192.0.2.2", Some("Thunderbird 128"), 1),
            login("198.51.100.1", None, 2),
        ]))
        .unwrap();
    assert_eq!(new.len(), 1, "one a password an hour: {new:?}");
    assert_eq!(
        (new[0].kind, new[0].credential),
        (PlaceKind::Network, Credential::App(ap))
    );
    assert!(
        log.append(&HistoryBatch::of_records(vec![login(
            "203.0.113.1",
            None,
            30
        )]))
        .unwrap()
        .is_empty()
    );
    let places = store.places(m.id).unwrap();
    let tb = places
        .iter()
        .find(|(_, p)| p.value == "Thunderbird 128")
        .unwrap();
    assert_eq!(tb.1.uses, 2);
    assert_eq!(
        places
            .iter()
            .filter(|(_, p)| p.kind == PlaceKind::Network)
            .count(),
        3
    );
    let last = store.mailbox("a@b.it").unwrap().unwrap().app_passwords[0]
        .last_use
        .clone()
        .unwrap();
    assert_eq!(last.client, "203.0.113.1");

    // Logins from places this writer has written: rows, last use and places in one
    // statement (the usual case), counted as the transaction counts them.
    let history =
        |store: &dyn sentinella::store::ManageStore| store.history("a@b.it", 100).unwrap().len();
    let rows = history(store.as_ref());
    assert!(
        log.append(&HistoryBatch::of_records(vec![
            login("192.0.2.9", Some("Thunderbird 128"), 41),
            login("192.0.2.8", Some("Thunderbird 128"), 40),
        ]))
        .unwrap()
        .is_empty()
    );
    assert_eq!(history(store.as_ref()), rows + 2);
    let places = store.places(m.id).unwrap();
    let uses = |value: &str| {
        places
            .iter()
            .find(|(_, p)| p.value == value)
            .map(|(_, p)| p.uses)
    };
    assert_eq!(uses("Thunderbird 128"), Some(4));
    assert_eq!(
        uses(&usage::network_of("192.0.2.1".parse().unwrap())),
        Some(4)
    );
    let last = store.mailbox("a@b.it").unwrap().unwrap().app_passwords[0]
        .last_use
        .clone()
        .unwrap();
    assert_eq!(last.client, "192.0.2.9", "the latest of the batch");
    // A remembered place gone from the store (pruned, say) is new again, once.
    pg.psql("DELETE FROM usage_places WHERE value = 'Thunderbird 128'");
    log.append(&HistoryBatch::of_records(vec![login(
        "192.0.2.9",
        Some("Thunderbird 128"),
        50,
    )]))
    .unwrap();
    let places = store.places(m.id).unwrap();
    let again = places
        .iter()
        .find(|(_, p)| p.value == "Thunderbird 128")
        .unwrap();
    assert_eq!(again.1.uses, 1);

    // A link rides with its alert: the hash kept, the token only in the e-mail.
    let (token, hash) = usage::link_token().unwrap();
    let alert = Alert {
        address: "a@b.it".into(),
        email_to: Some("owner@example.com".into()),
        notice: Notice::new(t, NoticeKind::NewPlace, "new place"),
        quiet_since: t,
        link: Some(NotMeLink {
            token: token.clone(),
            hash: hash.clone(),
            mailbox_id: m.id,
            credential: Credential::App(ap),
            name: Some("default".into()),
            created_at: t,
            expires_at: t + usage::LINK_LIFE,
        }),
    };
    log.append(&HistoryBatch::of_alerts(vec![alert])).unwrap();
    let found = store.not_me_link(&hash).unwrap().unwrap();
    assert_eq!(found.credential, Credential::App(ap));
    assert!(store.not_me_link(token.expose()).unwrap().is_none());
    let mut tx = store.begin().unwrap();
    assert!(tx.spend_not_me_link(&hash, t).unwrap());
    assert!(!tx.spend_not_me_link(&hash, t).unwrap(), "once");
    tx.commit().unwrap();
}
