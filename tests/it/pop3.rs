//! The POP3 proxy end to end: real Dovecot behind `sentinella serve`, driven by Python's
//! poplib, raw sockets and curl. Each test starts its own servers on free loopback ports
//! and stops them by PID.

use crate::common;

use std::process::Command;

use common::rig::{ADDR, MAIN, Rig, client, received, rig, two_factor_with_app_password};
use common::servers::{MASTER_PASSWORD, MASTER_USER, Proxy};
use serde_json::Value;

const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed";

fn pop3(proxy: &Proxy, args: &[&str]) -> Value {
    client(proxy, "pop3_client.py", args)
}

/// Logs in over POP3S (USER/PASS unless `mech` says otherwise).
fn login(p: &Proxy, port: u16, mode: &str, user: &str, password: &str, mech: &str) -> Value {
    let port = port.to_string();
    pop3(
        p,
        &[
            "login",
            "--port",
            &port,
            "--mode",
            mode,
            "--user",
            user,
            "--password",
            password,
            "--mech",
            mech,
        ],
    )
}

fn accepted(p: &Proxy, user: &str, password: &str) -> bool {
    login(p, p.pop3s_port, "ssl", user, password, "user")["ok"]
        .as_bool()
        .unwrap()
}

/// The first line a raw POP3S login answers with.
fn raw_login(p: &Proxy, user: &str, password: &str) -> String {
    let port = p.pop3s_port.to_string();
    let v = pop3(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("USER {user}"),
            &format!("PASS {password}"),
        ],
    );
    received(&v)[2].clone()
}

/// Puts one message in the mailbox, straight into Dovecot (as the master user).
fn deliver_one(rig: &Rig) {
    rig.direct_imap_session();
}

#[test]
fn two_factor_off_user_pass_retrieves_what_dovecot_holds() {
    let rig = rig("");
    deliver_one(&rig);
    let p = &rig.proxy;
    let port = p.pop3s_port.to_string();
    let v = pop3(
        p,
        &[
            "retr",
            "--port",
            &port,
            "--mode",
            "ssl",
            "--user",
            ADDR,
            "--password",
            MAIN,
        ],
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["stat"][0], 1);
    assert!(
        v["message"].as_str().unwrap().contains("Fattura n. 1"),
        "{v}"
    );
    // Straight to Dovecot as the master user: the same message.
    let up = rig.mailbox.pop3_port.to_string();
    let direct = pop3(
        p,
        &[
            "retr",
            "--port",
            &up,
            "--mode",
            "plain",
            "--user",
            ADDR,
            "--password",
            MASTER_PASSWORD,
            "--master",
            MASTER_USER,
        ],
    );
    assert_eq!(direct["ok"], true, "{direct}");
    assert_eq!(direct["message"], v["message"]);
    assert_eq!(direct["stat"], v["stat"]);
}

#[test]
fn app_password_with_every_mechanism_on_pop3s_and_stls() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    for mech in ["user", "plain", "login"] {
        for (port, mode) in [(p.pop3s_port, "ssl"), (p.pop3_port, "stls")] {
            let v = login(p, port, mode, ADDR, &app, mech);
            assert_eq!(v["ok"], true, "{mech} over {mode}: {v}");
        }
    }
    // Before STLS: CAPA offers STLS and no way to log in; USER is refused.
    let port = p.pop3_port.to_string();
    let v = pop3(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "plain",
            "CAPA",
            &format!("USER {ADDR}"),
        ],
    );
    let got = received(&v).join("\n");
    assert!(
        got.contains("STLS") && !got.contains("\nUSER\n") && !got.contains("SASL"),
        "{got}"
    );
    assert!(got.ends_with("-ERR [AUTH] Log in only after STLS"), "{got}");
}

#[test]
fn two_factor_on_main_password_gets_exactly_the_failure_text() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    assert_eq!(raw_login(p, ADDR, MAIN), AUTH_FAILED);
    assert!(accepted(p, ADDR, &app));
    let h = p.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(h["history"][0]["protocol"], "pop3");
    assert_eq!(h["history"][1]["credential"], "main");
    assert!(
        h["history"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("main password")
    );
}

#[test]
fn expired_regenerated_deactivated_disabled_and_unknown_are_refused_alike() {
    let rig = rig("app_password_validity = \"4s\"");
    let p = &rig.proxy;
    let first = two_factor_with_app_password(p);
    assert!(accepted(p, ADDR, &first));
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(raw_login(p, ADDR, &first), AUTH_FAILED, "expired");
    let second = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(raw_login(p, ADDR, &second), AUTH_FAILED, "replaced");
    assert!(accepted(p, ADDR, &third));
    p.ok(&["mailbox", "protocols", ADDR, "--disable", "pop3"], None);
    assert_eq!(raw_login(p, ADDR, &third), AUTH_FAILED, "protocol disabled");
    p.ok(&["mailbox", "protocols", ADDR, "--enable", "pop3"], None);
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    assert_eq!(raw_login(p, ADDR, &third), AUTH_FAILED, "deactivated");
    assert_eq!(
        raw_login(p, "nobody@pec.example.it", MAIN),
        AUTH_FAILED,
        "unknown"
    );
    let h = p.ok(&["mailbox", "history", ADDR], None).to_string();
    for reason in [
        "expired on",
        "not the current app password",
        "protocol pop3 is not enabled",
        "no app password is active",
    ] {
        assert!(h.contains(reason), "{reason} missing from {h}");
    }
}

#[test]
fn multi_user_account_logs_in_to_the_mailbox() {
    let rig = rig("");
    deliver_one(&rig);
    let p = &rig.proxy;
    p.ok(
        &["mailbox", "add-user", ADDR, "ufficio", "--password-stdin"],
        Some("User-passw0rd"),
    );
    let v = login(p, p.pop3s_port, "ssl", "ufficio", "User-passw0rd", "plain");
    assert_eq!(
        (v["ok"].as_bool(), v["stat"][0].as_i64()),
        (Some(true), Some(1)),
        "{v}"
    );
}

#[test]
fn upstream_down_is_sys_temp_and_service_resumes() {
    let mut rig = rig("");
    rig.mailbox.stop();
    let answer = raw_login(&rig.proxy, ADDR, MAIN);
    assert!(answer.starts_with("-ERR [SYS/TEMP]"), "{answer}");
    rig.mailbox.restart();
    assert!(accepted(&rig.proxy, ADDR, MAIN));
}

#[test]
fn commands_injected_before_the_stls_handshake_are_discarded() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.pop3_port.to_string();
    let v = pop3(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "stls",
            "--inject-after-stls",
            &format!("USER {ADDR}"),
            &format!("PASS {MAIN}"),
        ],
    );
    let got = received(&v);
    assert_eq!(got[1], "+OK Begin TLS negotiation");
    assert_eq!(
        got[2], "-ERR USER first",
        "the injected USER was executed: {got:?}"
    );
}

#[test]
fn plain_with_a_foreign_authorization_identity_is_refused() {
    use base64::Engine;
    let rig = rig("");
    let p = &rig.proxy;
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("admin\0{ADDR}\0{MAIN}"));
    let port = p.pop3s_port.to_string();
    let v = pop3(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("AUTH PLAIN {blob}"),
        ],
    );
    assert_eq!(received(&v)[1], AUTH_FAILED);
}

#[test]
fn curl_retrieves_over_pop3s_and_is_refused_with_a_wrong_password() {
    let rig = rig("");
    deliver_one(&rig);
    let p = &rig.proxy;
    let curl = |password: &str| {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
            .arg(p.cert())
            .arg("--user")
            .arg(format!("{ADDR}:{password}"))
            .arg(format!("pop3s://127.0.0.1:{}/1", p.pop3s_port))
            .output()
            .unwrap()
    };
    let ok = curl(MAIN);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Fattura n. 1"));
    assert_eq!(curl("wrong-password").status.code(), Some(67));
}
