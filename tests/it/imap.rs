//! The IMAP proxy end to end: real Dovecot behind `sentinella serve`, driven by Python's
//! imaplib and by curl. Each test starts its own servers on free loopback ports and stops
//! them by PID when it ends.

use crate::common;

use std::process::Command;

use common::rig::{ADDR, MAIN, UPSTREAM_PW, client, rig, two_factor_with_app_password};
use common::servers::{Dovecot, Proxy};
use serde_json::Value;

const AUTH_FAILED: &str = "[AUTHENTICATIONFAILED] Authentication failed";

fn python(proxy: &Proxy, args: &[&str]) -> Value {
    client(proxy, "imap_client.py", args)
}

/// An imaplib session over IMAPS (SELECT, APPEND, FETCH, IDLE, LOGOUT); its report.
fn session(proxy: &Proxy, port: &str, user: &str, password: &str) -> Value {
    python(
        proxy,
        &[
            "session",
            "--port",
            port,
            "--mode",
            "ssl",
            "--user",
            user,
            "--password",
            password,
        ],
    )
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

#[test]
fn two_factor_off_main_password_opens_the_mailbox_and_it_works_like_dovecot() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    let via_proxy = session(p, &port, ADDR, MAIN);
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
    let direct = rig.direct_imap_session();
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
    // The IDLE completion, tag and Dovecot's timing figures aside ("OK Idle completed (0.001 + …").
    let idle_status = |v: &Value| {
        let line = v["idle"][1].as_str().unwrap().to_owned();
        let after_tag = line.split_once(' ').unwrap().1.to_owned();
        after_tag.split(" (").next().unwrap().to_owned()
    };
    assert_eq!(idle_status(&direct), idle_status(&via_proxy));
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
    // The owner is told, once a day however often it happens.
    let (ok, _) = login(p, ADDR, MAIN);
    assert!(!ok);
    let notices = p.ok(&["mailbox", "notices", ADDR], None);
    let alerts: Vec<&Value> = notices["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "main-password-used")
        .collect();
    assert_eq!(alerts.len(), 1, "{notices}");
    assert!(!notices.to_string().contains(MAIN));
}

#[test]
fn app_password_works_with_every_mechanism_and_on_starttls() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    for mech in ["login-cmd", "plain", "login"] {
        for (port, mode) in [(p.imaps_port, "ssl"), (p.imap_port, "starttls")] {
            let v = imap_login(p, port, mode, ADDR, &app, mech);
            assert_eq!(v["ok"], true, "{mech} over {mode}: {v}");
            // After login the client sees the upstream's capabilities, not ours.
            let caps: Vec<&str> = v["caps_after_login"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert!(
                caps.contains(&"IDLE") && !caps.iter().any(|c| c.starts_with("AUTH=")),
                "{caps:?}"
            );
        }
    }
    // Without dashes, as people type it.
    assert!(login(p, ADDR, &app.replace('-', "")).0);
    // Before STARTTLS the listener offers no login at all.
    let port = p.imap_port.to_string();
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "plain",
            "a CAPABILITY",
            &format!("b LOGIN {ADDR} {app}"),
        ],
    );
    let got = raw["received"].to_string();
    assert!(
        got.contains("STARTTLS") && got.contains("LOGINDISABLED") && !got.contains("AUTH=PLAIN"),
        "{got}"
    );
    assert!(got.contains("b NO [PRIVACYREQUIRED]"), "{got}");
}

#[test]
fn expired_regenerated_and_deactivated_app_passwords_are_refused() {
    let rig = rig("app_password_validity = \"4s\"");
    let p = &rig.proxy;
    let first = two_factor_with_app_password(p);
    assert!(login(p, ADDR, &first).0);
    // Wait for the short validity to run out (a functional wait, not a timing check).
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_refused(p, ADDR, &first);
    let history = p.ok(&["mailbox", "history", ADDR], None);
    assert!(
        history["history"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expired on"),
        "{history}"
    );

    let second = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(login(p, ADDR, &second).0);
    let third = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_refused(p, ADDR, &second);
    assert!(login(p, ADDR, &third).0);
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    assert_refused(p, ADDR, &third);
    assert_refused(p, ADDR, MAIN);
}

#[test]
fn disabled_protocol_unknown_user_and_wrong_password_read_the_same() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    let attempt = |user: &str, pw: &str| {
        let raw = python(
            p,
            &[
                "raw",
                "--port",
                &port,
                "--mode",
                "ssl",
                &format!("a1 LOGIN {user} {pw}"),
            ],
        );
        raw["received"][1].as_str().unwrap().to_owned()
    };
    let wrong = attempt(ADDR, "wrong-password");
    let unknown = attempt("nobody@pec.example.it", MAIN);
    p.ok(&["mailbox", "protocols", ADDR, "--disable", "imap"], None);
    let disabled = attempt(ADDR, MAIN);
    for text in [&wrong, &unknown, &disabled] {
        assert_eq!(text, "a1 NO [AUTHENTICATIONFAILED] Authentication failed");
    }
    let history = p.ok(&["mailbox", "history", ADDR], None);
    let reasons: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].contains("protocol imap is not enabled"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("wrong password"), "{reasons:?}");
    // Re-enabled: in again.
    p.ok(&["mailbox", "protocols", ADDR, "--enable", "imap"], None);
    assert!(login(p, ADDR, MAIN).0);
}

#[test]
fn multi_user_login_opens_the_mailbox() {
    let rig = rig("");
    let p = &rig.proxy;
    p.ok(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "ufficio.fatture",
            "--password-stdin",
        ],
        Some("User-passw0rd"),
    );
    let port = p.imaps_port.to_string();
    let s = session(p, &port, "ufficio.fatture", "User-passw0rd");
    assert_eq!(s["append"], "OK");
    // It landed in the mailbox's own store upstream.
    let direct = rig.direct_imap_session();
    assert_eq!(direct["exists_before"], s["exists_after"]);
    // With 2FA on, the mailbox's app password works for the account; its main one does not.
    let app = two_factor_with_app_password(p);
    assert!(login(p, "ufficio.fatture", &app).0);
    assert_refused(p, "ufficio.fatture", "User-passw0rd");
    let history = p.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(
        history["history"][0]["login"], "ufficio.fatture",
        "history keeps the name the client used"
    );
}

#[test]
fn archive_listener_needs_pro_or_premium_and_reaches_the_archive_store() {
    let rig = rig("");
    let p = &rig.proxy;
    let archive = p.archive_port.to_string();
    let v = imap_login(p, p.archive_port, "ssl", ADDR, MAIN, "login-cmd");
    assert_eq!(v["ok"], false);
    assert!(v["text"].as_str().unwrap().contains(AUTH_FAILED));
    p.ok(&["mailbox", "set-plan", ADDR, "pro"], None);
    let app = two_factor_with_app_password(p);
    // The app password opens the archive too; what is stored there is the archive's.
    let in_archive = session(p, &archive, ADDR, &app);
    let port = p.imaps_port.to_string();
    let in_mailbox = session(p, &port, ADDR, &app);
    assert_eq!(in_archive["exists_after"], 1);
    assert_eq!(
        in_mailbox["exists_after"], 1,
        "the archive's APPEND did not land in the mailbox store"
    );
    let history = p.ok(&["mailbox", "history", ADDR], None);
    assert!(
        history
            .to_string()
            .contains("the plan does not include the security archive"),
        "{history}"
    );
}

#[test]
fn upstream_down_is_a_temporary_failure_and_service_resumes() {
    let mut rig = rig("");
    rig.mailbox.stop();
    let port = rig.proxy.imaps_port.to_string();
    let raw = python(
        &rig.proxy,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("a1 LOGIN {ADDR} {MAIN}"),
        ],
    );
    let answer = raw["received"][1].as_str().unwrap();
    assert!(answer.starts_with("a1 NO [UNAVAILABLE]"), "{answer}");
    assert!(!answer.contains("AUTHENTICATIONFAILED"));
    let history = rig.proxy.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(history["history"][0]["result"], "temporary_failure");
    rig.mailbox.restart();
    assert!(
        login(&rig.proxy, ADDR, MAIN).0,
        "the proxy serves again once the upstream is back"
    );
}

#[test]
fn a_cli_change_takes_effect_on_the_next_login() {
    let rig = rig("");
    let p = &rig.proxy;
    assert!(login(p, ADDR, MAIN).0);
    let app = two_factor_with_app_password(p);
    // Immediately after the command returns: no waiting.
    assert_refused(p, ADDR, MAIN);
    assert!(login(p, ADDR, &app).0);
    p.ok(
        &["mailbox", "set-password", ADDR, "--password-stdin"],
        Some("Another-passw0rd"),
    );
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    assert_refused(p, ADDR, &app);
}

#[test]
fn commands_injected_before_the_starttls_handshake_are_discarded() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imap_port.to_string();
    let inject = format!("X1 LOGIN {ADDR} {MAIN}");
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "starttls",
            "--inject-after-starttls",
            &inject,
            "c NOOP",
            "d CAPABILITY",
        ],
    );
    let got: Vec<&str> = raw["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(got[1], "T0 OK Begin TLS negotiation now");
    assert_eq!(got[2], "c OK NOOP completed", "{got:?}");
    assert!(
        !got.iter().any(|l| l.starts_with("X1")),
        "the injected command was executed: {got:?}"
    );
    assert!(got[3].contains("AUTH=PLAIN"), "{got:?}");
    let history = p.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(
        history["history"].as_array().unwrap().len(),
        0,
        "no login was attempted: {history}"
    );
}

#[test]
fn commands_pipelined_after_login_are_relayed() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            "--together",
            &format!("a LOGIN {ADDR} {MAIN}"),
            "b SELECT INBOX",
            "c NOOP",
        ],
    );
    let got: Vec<&str> = raw["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        got.iter().any(|l| l.starts_with("a OK [CAPABILITY")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|l| l.starts_with("b OK [READ-WRITE]")),
        "{got:?}"
    );
    assert!(got.last().unwrap().starts_with("c OK"), "{got:?}");
}

#[test]
fn curl_fetches_through_the_proxy_and_is_refused_with_a_wrong_password() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    session(p, &port, ADDR, MAIN);
    let curl = |password: &str| {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
            .arg(p.cert())
            .arg("--user")
            .arg(format!("{ADDR}:{password}"))
            .arg(format!("imaps://127.0.0.1:{port}/INBOX;UID=1"))
            .output()
            .expect("run curl")
    };
    let ok = curl(MAIN);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Fattura n. 1"));
    let refused = curl("wrong-password");
    assert_eq!(
        refused.status.code(),
        Some(67),
        "curl's 'login denied': {}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn sigterm_stops_the_proxy_cleanly() {
    let mut rig = rig("");
    assert!(login(&rig.proxy, ADDR, MAIN).0);
    assert_eq!(rig.proxy.stop(), Some(0), "{}", rig.proxy.log());
    assert!(rig.proxy.log().contains("shutting down"));
}

#[test]
fn stored_upstream_secret_logs_in_with_the_mailbox_own_dovecot_password() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let mut p = Proxy::configure_login(&mailbox, &archive, "", "", true);
    p.run();
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let port = p.imaps_port.to_string();
    let answer = || {
        let raw = python(
            &p,
            &[
                "raw",
                "--port",
                &port,
                "--mode",
                "ssl",
                &format!("a1 LOGIN {ADDR} {MAIN}"),
            ],
        );
        raw["received"][1].as_str().unwrap().to_owned()
    };
    // No upstream secret yet: accepted by policy, but the upstream login cannot happen.
    assert!(answer().starts_with("a1 NO [UNAVAILABLE]"));
    // A wrong upstream secret: Dovecot refuses us, the client gets a temporary failure.
    p.ok(
        &["mailbox", "set-upstream-secret", ADDR, "--password-stdin"],
        Some("not-the-dovecot-pw"),
    );
    assert!(answer().starts_with("a1 NO [UNAVAILABLE]"));
    // The right one.
    p.ok(
        &["mailbox", "set-upstream-secret", ADDR, "--password-stdin"],
        Some(UPSTREAM_PW),
    );
    let s = session(&p, &port, ADDR, MAIN);
    assert_eq!(s["append"], "OK");
    // At rest it is sealed, never in clear.
    let db = std::fs::read(p.dir.path().join("state/sentinella.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(UPSTREAM_PW));
}

#[test]
fn plain_with_a_foreign_authorization_identity_is_refused_even_with_the_right_password() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.imaps_port.to_string();
    let blob = |authzid: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{authzid}\0{ADDR}\0{MAIN}"))
    };
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("a AUTHENTICATE PLAIN {}", blob("admin@pec.example.it")),
        ],
    );
    assert_eq!(
        raw["received"][1], "a NO [AUTHENTICATIONFAILED] Authentication failed",
        "{raw}"
    );
    let raw = python(
        p,
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "ssl",
            &format!("a AUTHENTICATE PLAIN {}", blob(ADDR)),
        ],
    );
    assert!(
        raw["received"][1]
            .as_str()
            .unwrap()
            .starts_with("a OK [CAPABILITY"),
        "authzid = authcid is fine: {raw}"
    );
}

/// The certificate a listener serves now, as PEM.
fn served_certificate(port: u16) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import ssl,sys; print(ssl.get_server_certificate(('127.0.0.1', int(sys.argv[1])), timeout=10))",
            &port.to_string(),
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn der_of(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn sighup_reloads_the_certificates_and_a_bad_file_keeps_the_old_ones() {
    let mut rig = rig("");
    let p = &rig.proxy;
    let before = served_certificate(p.imaps_port);
    assert_eq!(
        der_of(&before),
        der_of(&std::fs::read_to_string(p.cert()).unwrap())
    );
    // A renewed certificate, written where the config points.
    let certs = p.dir.path().join("certs");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=renewed",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(certs.join("key.pem"))
        .arg("-out")
        .arg(certs.join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let renewed = std::fs::read_to_string(p.cert()).unwrap();
    assert!(
        rig.proxy.signal("HUP"),
        "the proxy survives SIGHUP:\n{}",
        rig.proxy.log()
    );
    let p = &rig.proxy;
    for port in [p.imaps_port, p.pop3s_port, p.submissions_port] {
        assert_eq!(
            der_of(&served_certificate(port)),
            der_of(&renewed),
            "port {port}"
        );
    }
    assert!(p.log().contains("TLS certificates reloaded"), "{}", p.log());
    // Logins go on, verified against the renewed certificate.
    assert!(login(p, ADDR, MAIN).0);
    // A broken file: logged, and the renewed certificate stays in service.
    std::fs::write(p.cert(), "not a certificate\n").unwrap();
    assert!(rig.proxy.signal("HUP"), "{}", rig.proxy.log());
    let p = &rig.proxy;
    assert_eq!(der_of(&served_certificate(p.imaps_port)), der_of(&renewed));
    assert!(p.log().contains("keeping the previous ones"), "{}", p.log());
    assert_eq!(rig.proxy.stop(), Some(0), "{}", rig.proxy.log());
}
