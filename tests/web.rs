//! "Gestione account" in a real browser: the owner's whole flow driven in Debian's
//! headless Chromium (Playwright), against `serve` in front of a real Dovecot, with the
//! proxy checked in between by imaplib and smtplib. Screenshots of every page are saved
//! under the test output folder (target/tmp/web-screenshots).

mod common;

use std::process::Command;

use common::rig::{ADDR, MAIN, UPSTREAM_PW};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};
use serde_json::Value;

/// Validity 30 s and a 20 s postpone window: postponing opens 10 s after generation.
const POLICY: &str = "app_password_validity = \"30s\"\npostpone_window = \"20s\"";

#[test]
fn the_owner_manages_the_mailbox_from_the_page_in_a_real_browser() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        POLICY,
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\n"),
    );
    proxy.run();
    wait_for_port(web_port, "web page", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));

    let shots = format!("{}/web-screenshots", env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/web_owner.py"
        ))
        .args(["--web", &web_port.to_string()])
        .args(["--imaps", &proxy.imaps_port.to_string()])
        .args(["--submissions", &proxy.submissions_port.to_string()])
        .arg("--cafile")
        .arg(proxy.cert())
        .args(["--address", ADDR, "--password", MAIN, "--shots", &shots])
        .args(["--postpone-opens-after", "10"])
        .output()
        .expect("python3 with playwright");
    assert!(
        out.status.success(),
        "web_owner.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k}: {v:#}"))
            .to_owned()
    };

    // Login: Italian by default; a wrong password says only that; cookie flags.
    assert_eq!(s("unauthenticated_goes_to"), "/login");
    assert_eq!(s("login_heading"), "Accedi a Gestione account");
    assert_eq!(s("wrong_password_message"), "Credenziali errate.");
    assert_eq!(s("after_login"), "/account");
    assert_eq!(
        v["cookie"],
        serde_json::json!({"secure": true, "httpOnly": true, "sameSite": "Strict"})
    );
    assert_eq!(s("two_factor_initially"), "non attiva");
    assert_eq!(v["needs_2fa_shown"], true);
    // Languages.
    assert_eq!(s("english_heading"), "Security and passwords");
    assert_eq!(s("italian_heading"), "Sicurezza e password");
    assert_eq!(
        s("english_by_accept_language"),
        "Log in to Account management"
    );
    // CSRF: refused with 403, nothing changed (every protocol still enabled).
    assert_eq!(v["csrf_missing_status"], 403);
    assert_eq!(v["csrf_wrong_status"], 403);
    assert_eq!(
        v["protocols_after_csrf"],
        serde_json::json!([true, true, true])
    );
    // 2FA on from the page: a QR image and the otpauth URI; a wrong code refused.
    assert_eq!(v["qr_is_an_image"], true);
    assert_eq!(s("uri_scheme"), "otpauth");
    assert!(!s("wrong_enable_code").is_empty());
    assert_eq!(s("two_factor_after_enable"), "attiva");
    assert_eq!(v["device_since_shown"], true);
    assert_eq!(v["main_password_imap_under_2fa"], false);
    // Logout; the second step; a spent code is refused.
    assert_eq!(s("after_logout"), "/login");
    assert_eq!(s("account_after_logout"), "/login");
    assert_eq!(s("second_step"), "/login/code");
    assert_eq!(s("reused_code"), "Codice errato o già usato.");
    assert_eq!(s("after_code"), "/account");
    // No protocol: the seeds' warning; then all enabled again.
    assert!(
        s("no_protocol_warning").contains("nessun protocollo"),
        "{v:#}"
    );
    assert_eq!(
        v["protocols_enabled"],
        serde_json::json!([true, true, true])
    );
    // The password shown once, copied, never cached, never in the URL.
    assert_eq!(s("reveal_cache_control"), "no-store");
    assert!(s("reveal_csp").contains("default-src 'none'"));
    assert_eq!(s("reveal_frame_options"), "DENY");
    assert_eq!(v["password_shape"], serde_json::json!([4, 4, 4, 4, 4, 4]));
    assert_eq!(
        s("close_warning"),
        "Appena chiuderai questa finestra non potrai più vedere o copiare la password."
    );
    assert!(s("expiry_shown").contains('/'), "{v:#}");
    assert_eq!(v["password_in_url"], false);
    assert_eq!(v["copied"], true);
    assert_eq!(s("copy_button_after"), "Copiata");
    assert_eq!(v["after_reload_gone"], true);
    assert_eq!(v["password_after_reload"], false);
    // Through the proxy with it.
    assert_eq!(v["imap_with_app_password"], true);
    assert_eq!(v["smtp_with_app_password"], true, "{v:#}");
    // Postpone: disabled with its date, then allowed and the expiry moves.
    assert_eq!(v["postpone_disabled"], true);
    assert!(s("postpone_from").starts_with("possibile dal "), "{v:#}");
    assert!(
        s("last_use_shown").ends_with("· 127.0.0.1 · smtp"),
        "the last use, the submission: {v:#}"
    );
    assert_eq!(v["postpone_enabled_later"], true);
    assert!(s("postpone_message").starts_with("Fatto."), "{v:#}");
    assert_eq!(v["expiry_moved"], true);
    // Regenerate after a confirmation: the old one refused at once.
    assert!(s("regenerate_warning").contains("smetterà subito di funzionare"));
    assert_eq!(v["regenerated_differs"], true);
    assert_eq!(v["old_password_imap"], false);
    assert_eq!(v["new_password_imap"], true);
    // Deactivate after a confirmation.
    assert!(s("deactivate_warning").contains("non potranno più accedere"));
    assert_eq!(s("deactivated_message"), "Fatto.");
    assert_eq!(v["no_app_password"], true);
    assert_eq!(v["deactivated_password_imap"], false);
    // Storico accessi: the web logins and the mail logins, reasons in the owner's words.
    let rows: Vec<String> = serde_json::from_value(v["history_rows"].clone()).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("WEB") && r.contains("consentito")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("WEB") && r.contains("password errata")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.contains("IMAP")
            && r.contains("password principale usata con la verifica in 2 passaggi attiva")),
        "{rows:#?}"
    );
    let notices: Vec<String> = serde_json::from_value(v["notices"].clone()).unwrap();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("È stata generata la password per programmi di posta")),
        "{notices:#?}"
    );
    // 2FA off: the seeds' warning, a code; the main password works in IMAP again.
    assert!(s("disable_warning").contains("diminuirai il livello di sicurezza"));
    assert_eq!(s("two_factor_after_disable"), "non attiva");
    assert_eq!(v["main_password_imap_after_disable"], true);
    // Throttled after repeated wrong passwords: even the right one is refused.
    assert_eq!(s("throttled_right_password"), "/login");
    assert_eq!(s("throttled_message"), "Wrong credentials.");
    assert!(v["screenshots"].as_array().unwrap().len() >= 10);

    // The store agrees: web rows in the history, the owner as the actor.
    let h = proxy.ok(&["mailbox", "history", ADDR, "--limit", "200"], None);
    let web: Vec<&Value> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["protocol"] == "web")
        .collect();
    assert!(web.iter().any(|r| r["result"] == "accepted"), "{h:#}");
    assert!(
        web.iter().any(|r| r["reason"]
            .as_str()
            .is_some_and(|x| x.starts_with("throttle"))),
        "{h:#}"
    );
    let events = proxy.ok(&["mailbox", "events", ADDR], None);
    assert!(
        events["events"].as_array().unwrap().iter().any(
            |e| e["actor"] == format!("owner:{ADDR}") && e["action"] == "app-password.generate"
        ),
        "{events:#}"
    );
    // No secret in the proxy's log.
    let log = proxy.log();
    assert!(!log.contains(MAIN), "the main password is never logged");
}
