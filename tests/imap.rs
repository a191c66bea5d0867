//! The IMAP proxy end to end: real Dovecot behind `sentinella serve`, driven by Python's
//! imaplib and by curl. Each test starts its own servers on free loopback ports and stops
//! them by PID when it ends.

mod common;

use std::process::Command;

use common::servers::{Dovecot, MASTER_PASSWORD, MASTER_USER, Proxy};
use common::{code, secret_from_uri};
use serde_json::Value;

const ADDR: &str = "mario.rossi@pec.example.it";
const MAIN: &str = "Main-passw0rd";
const UPSTREAM_PW: &str = "dovecot-own-pw";
const AUTH_FAILED: &str = "[AUTHENTICATIONFAILED] Authentication failed";

fn python(proxy: &Proxy, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/imap_client.py");
    let cert = proxy.cert();
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .arg("--cafile")
        .arg(&cert)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "imap_client {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

fn imap_login(
    proxy: &Proxy,
    port: u16,
    mode: &str,
    user: &str,
    password: &str,
    mech: &str,
) -> Value {
    let port = port.to_string();
    python(
        proxy,
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

/// Logs in over IMAPS with the LOGIN command; returns (accepted, text).
fn login(proxy: &Proxy, user: &str, password: &str) -> (bool, String) {
    let v = imap_login(proxy, proxy.imaps_port, "ssl", user, password, "login-cmd");
    (
        v["ok"].as_bool().unwrap(),
        v["text"].as_str().unwrap().to_owned(),
    )
}

fn assert_refused(proxy: &Proxy, user: &str, password: &str) {
    let (ok, text) = login(proxy, user, password);
    assert!(!ok, "{user} was let in");
    assert!(text.contains(AUTH_FAILED), "refusal text {text:?}");
}

/// Dovecot for the mailbox, Dovecot for the archive, and the proxy in front.
struct Rig {
    proxy: Proxy,
    mailbox: Dovecot,
    _archive: Dovecot,
}

fn rig(policy: &str) -> Rig {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let proxy = Proxy::start(&mailbox, &archive, policy);
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    Rig {
        proxy,
        mailbox,
        _archive: archive,
    }
}

/// Turns 2FA on and generates an app password; returns it.
fn two_factor_with_app_password(proxy: &Proxy) -> String {
    let v = proxy.ok(&["2fa", "enable", ADDR], None);
    let secret = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    proxy.ok(&["2fa", "confirm", ADDR, &code(&secret, 0)], None);
    proxy.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn two_factor_off_main_password_opens_the_mailbox_and_it_works_like_dovecot() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    let via_proxy = python(
        p,
        &[
            "session",
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
    assert_eq!(via_proxy["append"], "OK");
    assert_eq!(
        via_proxy["exists_after"],
        via_proxy["exists_before"].as_i64().unwrap() + 1
    );
    assert!(
        via_proxy["fetched"]
            .as_str()
            .unwrap()
            .contains("Fattura n. 1")
    );
    assert!(
        via_proxy["idle"][0].as_str().unwrap().starts_with('+'),
        "{via_proxy}"
    );
    assert!(
        via_proxy["idle"][1].as_str().unwrap().contains("OK"),
        "{via_proxy}"
    );
    assert_eq!(via_proxy["logout"], "BYE");

    // The same session straight to Dovecot (as the master user) sees the same mailbox.
    let up = rig.mailbox.imap_port.to_string();
    let direct = python(
        p,
        &[
            "session",
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
    assert_eq!(
        direct["exists_before"], via_proxy["exists_after"],
        "the proxy's APPEND landed in Dovecot"
    );
    assert_eq!(direct["fetched"], via_proxy["fetched"]);
    let without_seq = |v: &Value| {
        v["flags"]
            .as_str()
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(without_seq(&direct), without_seq(&via_proxy));
    assert_eq!(
        direct["idle"][1]
            .as_str()
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1,
        via_proxy["idle"][1]
            .as_str()
            .unwrap()
            .split_once(' ')
            .unwrap()
            .1
    );
}

#[test]
fn two_factor_on_main_password_gets_exactly_the_failure_text() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    let port = p.imaps_port.to_string();
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("a1 LOGIN {ADDR} {MAIN}"),
        ],
    );
    assert_eq!(
        raw["received"][1], "a1 NO [AUTHENTICATIONFAILED] Authentication failed",
        "{raw}"
    );
    let (ok, _) = login(p, ADDR, &app);
    assert!(ok, "the app password opens the mailbox");
    let history = p.ok(&["mailbox", "history", ADDR], None);
    let rows = history["history"].as_array().unwrap();
    assert_eq!(rows[0]["result"], "accepted");
    assert_eq!(rows[0]["credential"], "app");
    assert_eq!(rows[1]["result"], "refused");
    assert_eq!(rows[1]["credential"], "main");
    assert!(
        rows[1]["reason"]
            .as_str()
            .unwrap()
            .contains("main password"),
        "{history}"
    );
    assert!(!history.to_string().contains(MAIN) && !history.to_string().contains(&app));
}
