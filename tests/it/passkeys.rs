//! Passkeys as the 2FA device, in a real Chromium with DevTools' virtual authenticator
//! (tests/clients/passkey_owner.py) on `https://localhost`: turned on, logged in with,
//! refused for another person's key and a copied one, turned off with.

use crate::common;

use common::rig::{ADDR, MAIN, UPSTREAM_PW, client};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};

#[test]
fn a_passkey_is_the_device_that_opens_the_page_and_a_copy_of_it_does_not() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut p = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\npublic_host = \"localhost\"\n"),
    );
    p.run();
    wait_for_port(web_port, "web page", &p.log_path());
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp/passkeys");
    let web = web_port.to_string();
    let v = client(
        &p,
        "passkey_owner.py",
        &[
            "--web",
            &web,
            "--address",
            ADDR,
            "--password",
            MAIN,
            "--shots",
            shots,
        ],
    );
    assert_eq!(v["logged_in"], "/account", "{v}");
    assert_eq!(v["register_offered"], true);
    assert_eq!(v["after_register"], "/account/2fa/recovery", "{v}");
    assert_eq!(v["recovery_codes"], 10);
    assert_eq!(v["device_kind"], "Dispositivo associato: passkey.");
    assert_eq!(v["credentials"], 1);
    // The password, then the passkey.
    assert_eq!(v["code_step"], "/login/code");
    assert_eq!(v["passkey_offered_at_login"], true);
    assert_eq!(v["after_passkey_login"], "/account", "{v}");
    // Another person's key has no credential for this account: the browser refuses.
    assert!(
        v["other_key_error"]
            .as_str()
            .unwrap()
            .starts_with("NotAllowedError"),
        "{v}"
    );
    assert_eq!(v["other_key_at"], "/login/code");
    // A copy whose counter went back: refused, and the owner is told.
    assert_eq!(v["cloned_at"], "/login/code", "{v}");
    let notices = p.ok(&["mailbox", "notices", ADDR], None).to_string();
    assert!(
        notices.contains("potrebbe essere stata copiata"),
        "{notices}"
    );
    let events = p.ok(&["mailbox", "events", ADDR], None).to_string();
    assert!(events.contains("2fa.passkey-refused"), "{events}");
    let enabled = p.ok(&["mailbox", "events", ADDR], None)["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "2fa.enabled")
        .cloned()
        .unwrap();
    assert_eq!(enabled["detail"], "passkey", "{enabled}");
    // The key itself, its counter moved on: in; then 2FA off with it.
    assert_eq!(v["own_key_again"], "/account", "{v}");
    assert_eq!(v["disable_with_passkey"], true);
    assert_eq!(v["two_factor_after_disable"], "non attiva");
    let shown = p.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(shown["two_factor"]["enabled"], false);
    // Every attempt in the history: the code step's right and wrong answers.
    let h = p
        .ok(&["mailbox", "history", ADDR, "--limit", "50"], None)
        .to_string();
    assert!(h.contains("wrong 2FA code"), "{h}");
    assert!(h.contains("main password and passkey"), "{h}");
}
