//! The management layer's own guarantees, through its public actions: one transaction
//! per action, the version bump exactly when a login would see a change, the actor in
//! every event, notices only with successful actions, and a person asked only once the
//! rules have passed.

use jiff::Timestamp;

use super::app_password::Wanted;
use super::testing::{ADDR, Scripted, operator, turn_on_2fa, with_mailbox, yes};
use super::*;
use crate::policy::Plan;
use crate::policy::Protocol;

fn t0() -> Timestamp {
    "2024-03-01T10:00:00Z".parse().unwrap()
}

/// Asks nothing: any question is a test failure, shown as a distinct error code.
fn silent() -> Scripted {
    Scripted {
        password: None,
        confirm: false,
    }
}

fn version(m: &Manager) -> i64 {
    m.show_mailbox(ADDR, t0()).unwrap().version
}

#[test]
fn the_version_moves_exactly_when_a_login_would_see_a_change() {
    let (op, t) = (operator(), t0());
    let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
    assert_eq!(version(&m), 1);
    m.migration(&op, ADDR, true, t).unwrap();
    m.migration(&op, ADDR, false, t).unwrap();
    m.set_contact(&op, ADDR, "mario@example.com", t).unwrap();
    m.add_user(&op, ADDR, "ufficio", &mut yes("user-password"), t)
        .unwrap();
    assert_eq!(version(&m), 1, "nothing a login reads changed");
    m.set_plan(&op, ADDR, Plan::Pro, t).unwrap();
    assert_eq!(version(&m), 2, "plan");
    m.protocols(&op, ADDR, &[], &[Protocol::Pop3], t).unwrap();
    assert_eq!(version(&m), 3, "protocols");
    m.set_password(&op, ADDR, None, &mut yes("another-password"), t)
        .unwrap();
    assert_eq!(version(&m), 4, "main password");
    m.set_password(&op, ADDR, Some("ufficio"), &mut yes("another-user-pw"), t)
        .unwrap();
    assert_eq!(version(&m), 5, "a multi-user account's password");
    m.remove_user(&op, ADDR, "ufficio", t).unwrap();
    assert_eq!(version(&m), 6, "a multi-user account removed");
    turn_on_2fa(&mut m, ADDR, t);
    assert_eq!(version(&m), 7, "2FA on");
    m.generate_app_password(&op, ADDR, Wanted::default(), false, t)
        .unwrap();
    assert_eq!(version(&m), 8, "app password");
}

#[test]
fn a_refused_action_writes_nothing_and_asks_nobody() {
    let (op, t) = (operator(), t0());
    let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
    let before = m.show_mailbox(ADDR, t).unwrap();
    let events = m.events(ADDR).unwrap().events.len();

    // The rules refuse before a password is asked for or a hash is spent.
    let err = m
        .add_mailbox(&op, ADDR, Plan::Standard, None, &mut silent(), t)
        .unwrap_err();
    assert!(matches!(err, ManageError::LoginTaken(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = m
        .generate_app_password(&op, ADDR, Wanted::default(), false, t)
        .unwrap_err();
    assert_eq!(err.code(), "two_factor_off");
    let err = m
        .deactivate_app_password(&op, ADDR, None, false, &mut silent(), t)
        .unwrap_err();
    assert_eq!(
        err.code(),
        "no_app_password",
        "refused before the confirmation"
    );
    let err = m
        .protocols(&op, ADDR, &[Protocol::Imap], &[Protocol::Imap], t)
        .unwrap_err();
    assert_eq!(err.code(), "bad_protocol");
    let err = m
        .set_password(&op, ADDR, Some("nobody"), &mut silent(), t)
        .unwrap_err();
    assert_eq!((err.code(), err.kind()), ("no_login", ErrorKind::NotFound));
    let err = m
        .set_password(&op, ADDR, None, &mut yes("short"), t)
        .unwrap_err();
    assert_eq!(err.code(), "weak_password");
    let err = m.remove_mailbox(&op, ADDR, &mut silent(), t).unwrap_err();
    assert_eq!(err.code(), "not_confirmed");

    assert_eq!(m.show_mailbox(ADDR, t).unwrap(), before);
    assert_eq!(m.events(ADDR).unwrap().events.len(), events);
    assert!(m.notices(ADDR).unwrap().notices.is_empty());
    let err = m.show_mailbox("nobody@pec.example.it", t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "no mailbox nobody@pec.example.it");
}

#[test]
fn every_event_names_its_actor() {
    let t = t0();
    let (_d, mut m) = with_mailbox(Plan::Standard, None, t);
    let owner = Actor::Owner("ufficio".into());
    m.set_contact(&owner, ADDR, "Mario@Example.com", t).unwrap();
    m.migration(&Actor::System, ADDR, true, t).unwrap();
    let events: Vec<(EventAction, Actor)> = m
        .events(ADDR)
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    assert_eq!(
        events,
        [
            (EventAction::MailboxAdd, operator()),
            (EventAction::MailboxSetContact, owner),
            (EventAction::MailboxMigrationStart, Actor::System),
        ]
    );
}

#[test]
fn without_a_relay_no_notice_is_queued_for_e_mail_not_even_to_the_old_contact() {
    let t = t0();
    let (dir, _m, location) = super::testing::manager();
    let settings = crate::manage::ManageSettings {
        policy: PolicySettings::default(),
        totp_issuer: "Sentinella".into(),
        hash_cost: crate::auth::HashCost::CHEAP,
        seal_key: dir.path().join("s.key"),
        email: false,
        language: crate::wording::Language::It,
    };
    let mut m = Manager::new(location.open_manage().unwrap(), settings).unwrap();
    let op = operator();
    m.add_mailbox(
        &op,
        ADDR,
        Plan::Standard,
        Some("old@example.com"),
        &mut yes("main-password"),
        t,
    )
    .unwrap();
    m.set_contact(&op, ADDR, "new@example.com", t).unwrap();
    let notices = m.notices(ADDR).unwrap().notices;
    assert_eq!(notices[0].kind, crate::store::NoticeKind::ContactChanged);
    assert!(
        notices.iter().all(|n| n.deliveries.is_empty()),
        "avvisi only: {notices:?}"
    );
}

#[test]
fn contact_changes_and_postponing_tell_the_owner() {
    let (op, t) = (operator(), t0());
    let (_d, mut m) = with_mailbox(Plan::Standard, Some("old@example.com"), t);
    let v = m.set_contact(&op, ADDR, "New@Example.com", t).unwrap();
    assert_eq!(v.contact.as_deref(), Some("new@example.com"));
    let err = m.set_contact(&op, ADDR, "not an address", t).unwrap_err();
    assert_eq!(err.code(), "bad_contact");
    let notice = &m.notices(ADDR).unwrap().notices[0];
    assert_eq!(notice.kind, crate::store::NoticeKind::ContactChanged);
    assert!(
        notice.message.contains("old@example.com") && notice.message.contains("new@example.com"),
        "{notice:?}"
    );

    turn_on_2fa(&mut m, ADDR, t);
    let generated = m
        .generate_app_password(&op, ADDR, Wanted::default(), false, t)
        .unwrap();
    // Postponing opens 14 days before expiry: try it then.
    let policy = PolicySettings::default();
    let opens = policy
        .postpone_window
        .before(generated.expires_at, &policy.zone);
    let early = m.postpone_app_password(&op, ADDR, None, t).unwrap_err();
    assert_eq!(early.code(), "postpone_too_early");
    let p = m.postpone_app_password(&op, ADDR, None, opens).unwrap();
    assert_eq!(p.postponed, 1);
    let notice = &m.notices(ADDR).unwrap().notices[0];
    assert_eq!(notice.kind, crate::store::NoticeKind::AppPassword);
    assert!(
        notice
            .message
            .contains(&crate::policy::fmt_time(p.expires_at, &policy.zone)),
        "the notice names the new expiry: {notice:?}"
    );
}

#[test]
fn outcomes_serialise_as_the_command_line_always_printed_them() {
    let (op, t) = (operator(), t0());
    let (_d, mut m) = with_mailbox(Plan::Pro, None, t);
    let v = serde_json::to_value(m.show_mailbox(ADDR, t).unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "address": ADDR, "plan": "pro", "archive": true, "contact": null,
            "protocols": ["imap", "pop3", "smtp"], "migration": false, "version": 1,
            "two_factor": {"enabled": false, "associated_at": null, "pending": null, "recovery_codes_left": 0, "device_kind": null},
            "app_password": {"state": "none"}, "app_passwords": [], "deactivated": [], "users": [],
            "main_password_used_from": [], "main_password_breached": null,
        })
    );
    turn_on_2fa(&mut m, ADDR, t);
    let new = m
        .generate_app_password(&op, ADDR, Wanted::default(), false, t)
        .unwrap();
    let json = serde_json::to_string(&new).unwrap();
    assert!(
        !json.contains(new.password.expose()),
        "the password is never serialised"
    );
    let status = serde_json::to_value(m.app_password_status(ADDR, None, t).unwrap()).unwrap();
    assert_eq!(status["state"], "active");
    assert_eq!(status["created_at"], "2024-03-01T10:00:00Z");
    // 11:00 in Rome on 01/03 (CET) + 3 months = 11:00 in Rome on 01/06 (CEST): 09:00 UTC.
    assert_eq!(status["expires_at"], "2024-06-01T09:00:00Z");
    assert_eq!(status["postpone_allowed"], false);
}
