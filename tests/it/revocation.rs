//! Revocation reaches open sessions: real Dovecot behind the proxy, real imaplib /
//! poplib / smtplib sessions held open (tests/clients/held_session.py), a CLI change in
//! another process; the session is told the protocol's last word and closed, and the
//! access history says why. A change that does not refuse the login ends nothing.
//!
//! How long the end took is printed (BENCHMARKS.md reports it); the test bounds the wait
//! only so that a regression fails instead of hanging.

use crate::common;

use std::time::{Duration, Instant};

use common::held::{Held, noop_answered};
use common::rig::{ADDR, MAIN, Rig, rig};
use common::servers::Proxy;
use common::{code, secret_from_uri};
use sentinella::policy::totp::DeviceSecret;
use serde_json::Value;

/// The rig with a postpone window wide enough to postpone at once; 2FA on with a known
/// device secret and an app password; returns them.
fn setup() -> (Rig, DeviceSecret, String) {
    let rig = rig("postpone_window = \"100d\"");
    let p = &rig.proxy;
    let v = p.ok(&["2fa", "enable", ADDR], None);
    let secret = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    p.ok(&["2fa", "confirm", ADDR, &code(&secret, 0)], None);
    let password = p.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    (rig, secret, password)
}

/// Runs `change`, then waits for `held` to be ended; returns its report and how long the
/// end took after the CLI returned.
fn ended_by(p: &Proxy, held: Held, change: &[&str]) -> (Value, Duration) {
    p.ok(change, None);
    let changed = Instant::now();
    let report = held.finish();
    (report, changed.elapsed())
}

fn last_line(report: &Value) -> String {
    report["lines"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The newest access-history reason.
fn newest_reason(p: &Proxy) -> String {
    let h = p.ok(&["mailbox", "history", ADDR], None);
    h["history"][0]["reason"].as_str().unwrap_or("").to_owned()
}

#[test]
fn an_idle_imap_session_ends_on_deactivate_regenerate_2fa_off_and_protocol_off() {
    let (rig, secret, password) = setup();
    let p = &rig.proxy;

    let held = Held::open(p, "imap", &password, &[]);
    let (report, took) = ended_by(p, held, &["app-password", "deactivate", ADDR, "--yes"]);
    println!("deactivate → BYE in {took:?}");
    assert_eq!(report["closed"], true, "{report}");
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert_eq!(
        newest_reason(p),
        "session ended: two-step verification is on and no app password is active"
    );

    // Regenerate: the session on the old password ends, the new one logs in.
    let password = p.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = Held::open(p, "imap", &password, &[]);
    let (report, took) = ended_by(p, held, &["app-password", "regenerate", ADDR]);
    println!("regenerate → BYE in {took:?}");
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert_eq!(
        newest_reason(p),
        "session ended: not the current app password"
    );

    // Protocol disabled for the mailbox.
    let v = p.ok(&["app-password", "regenerate", ADDR], None);
    let password = v["password"].as_str().unwrap().to_owned();
    let held = Held::open(p, "imap", &password, &[]);
    let change = ["mailbox", "protocols", ADDR, "--disable", "imap"];
    let (report, took) = ended_by(p, held, &change);
    println!("protocols --disable imap → BYE in {took:?}");
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert_eq!(
        newest_reason(p),
        "session ended: protocol imap is not enabled for the mailbox"
    );
    p.ok(&["mailbox", "protocols", ADDR, "--enable", "imap"], None);

    // 2FA turned off: the app-password session ends.
    let held = Held::open(p, "imap", &password, &[]);
    let (report, took) = ended_by(
        p,
        held,
        &["2fa", "disable", ADDR, &code(&secret, 1), "--yes"],
    );
    println!("2fa disable → BYE in {took:?}");
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert!(
        newest_reason(p).starts_with("session ended: "),
        "{}",
        newest_reason(p)
    );

    // With 2FA off, a main-password session ends when the main password changes.
    let held = Held::open(p, "imap", MAIN, &[]);
    let change = ["mailbox", "set-password", ADDR, "--password-stdin"];
    let run = p.cli(&change, Some("An0ther-passw0rd"));
    assert_eq!(run.code, 0, "{run:?}");
    let report = held.finish();
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert_eq!(
        newest_reason(p),
        "session ended: the main password was changed"
    );

    // The mailbox removed.
    let held = Held::open(p, "imap", "An0ther-passw0rd", &[]);
    let (report, _) = ended_by(p, held, &["mailbox", "remove", ADDR, "--yes"]);
    assert!(
        last_line(&report).starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert_eq!(newest_reason(p), "session ended: unknown login name");

    let log = p.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn an_upload_cut_by_a_revocation_is_read_to_its_end_and_the_client_hears_why() {
    let (rig, _secret, password) = setup();
    let p = &rig.proxy;
    // In the middle of a 600 KB APPEND; it goes on sending after the BYE.
    let held = Held::open(p, "imap", &password, &["--upload", "600000"]);
    let (report, _) = ended_by(p, held, &["app-password", "deactivate", ADDR, "--yes"]);
    assert!(
        report["heard"]
            .as_str()
            .unwrap_or("")
            .starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    // The proxy reads what the client still sends (it is not relayed: the upstream side
    // is closed) instead of resetting the connection under the client's write.
    assert_eq!(report["rest_of_upload"], "all", "{report}");
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(
        newest_reason(p),
        "session ended: two-step verification is on and no app password is active"
    );
}

#[test]
fn pop3_and_smtp_sessions_end_with_their_protocols_last_word_and_postpone_ends_nothing() {
    let (rig, _secret, password) = setup();
    let p = &rig.proxy;

    // Postpone changes the mailbox but not whether the login holds: the session goes on
    // and still answers a NOOP after the change.
    let held = Held::open(p, "imap", &password, &["--noop-after", "2", "--hold", "4"]);
    p.ok(&["app-password", "postpone", ADDR], None);
    let report = held.finish();
    assert!(
        noop_answered(&report),
        "NOOP answered after postpone: {report}"
    );
    assert!(!report["lines"].to_string().contains("BYE"), "{report}");

    // A new contact address ends nothing either; deactivation then ends POP3 and SMTP.
    let pop = Held::open(p, "pop3", &password, &["--noop-after", "2"]);
    let smtp = Held::open(p, "smtp", &password, &[]);
    p.ok(&["mailbox", "set-contact", ADDR, "owner@example.org"], None);
    std::thread::sleep(Duration::from_secs(3));
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    let pop = pop.finish();
    let smtp = smtp.finish();
    let pop_lines: Vec<&str> = pop["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        pop_lines.first().is_some_and(|l| l.starts_with("+OK")),
        "NOOP answered after the contact change: {pop}"
    );
    assert!(last_line(&pop).starts_with("-ERR [AUTH]"), "{pop}");
    assert_eq!(pop["closed"], true);
    assert!(last_line(&smtp).starts_with("421 4.7.0"), "{smtp}");
    assert_eq!(smtp["closed"], true);

    let h = p.ok(&["mailbox", "history", ADDR], None);
    let ended: Vec<&Value> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("session ended: "))
        })
        .collect();
    assert_eq!(ended.len(), 2, "one row per ended session: {h}");
    let protocols: std::collections::BTreeSet<&str> = ended
        .iter()
        .filter_map(|r| r["protocol"].as_str())
        .collect();
    assert_eq!(protocols, ["pop3", "smtp"].into_iter().collect());
}

/// SIGTERM: the proxy stops taking connections and each relayed session ends at a quiet
/// moment with its protocol's last word (IMAP in IDLE `* BYE`, POP3 `-ERR [SYS/TEMP]`,
/// SMTP `421`), so `serve` exits cleanly long before `shutdown_grace` instead of holding
/// idle clients until the grace runs out and dropping them.
#[test]
fn sigterm_ends_relayed_sessions_with_each_protocols_last_word() {
    let mut rig = common::rig::rig_with("", "shutdown_grace = \"120s\"");
    let p = &mut rig.proxy;
    let held: Vec<(&str, Held)> = ["imap", "pop3", "smtp"]
        .into_iter()
        .map(|proto| (proto, Held::open(p, proto, MAIN, &[])))
        .collect();
    // Proxy::stop sends SIGTERM and waits 5 s before SIGKILL: a clean stop is exit 0.
    assert_eq!(p.stop(), Some(0), "{}", p.log());
    for (proto, held) in held {
        let report = held.finish();
        assert_eq!(report["closed"], true, "{proto}: {report}");
        let expected = match proto {
            "imap" => "* BYE [UNAVAILABLE] Server shutting down",
            "pop3" => "-ERR [SYS/TEMP] Server shutting down",
            _ => "421 4.3.2 Service shutting down, closing connection",
        };
        assert_eq!(last_line(&report), expected, "{proto}: {report}");
    }
    let log = p.log();
    assert!(log.contains("all sessions finished"), "{log}");
    assert!(!log.contains("grace period over"), "{log}");
}
