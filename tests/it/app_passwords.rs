//! Several named app passwords, each scoped to its protocols, against real Dovecot with
//! real clients: an SMTP-only password (the invoicing program's) sends with smtplib and is
//! refused by imaplib and poplib with the standard refusal; an IMAP-only password of the
//! same mailbox reads the mailbox; regenerating one leaves the other working; each shows
//! its last use.

use crate::common;

use common::rig::{ADDR, MAIN, client, rig, two_factor_on};
use common::servers::Proxy;
use serde_json::Value;

const TO: &str = "sdi01@pec.fatturapa.it";
const MESSAGE: &str = "From: mario.rossi@pec.example.it\r\nTo: sdi01@pec.fatturapa.it\r\n\
     Subject: Invio File 01234567890_00002\r\nMessage-ID: <ft-2026-0043@pec.example.it>\r\n\r\n\
     In allegato la fattura elettronica n. FT-2026/0043.\r\n";

fn generate(p: &Proxy, name: &str, protocols: &str) -> String {
    let v = p.ok(
        &[
            "app-password",
            "generate",
            ADDR,
            "--name",
            name,
            "--protocols",
            protocols,
        ],
        None,
    );
    assert_eq!(v["name"], name);
    v["password"].as_str().unwrap().to_owned()
}

/// Runs a Python client `command` over TLS on `port` as the mailbox with `password`.
fn as_mailbox(
    p: &Proxy,
    script: &str,
    command: &str,
    port: u16,
    password: &str,
    extra: &[&str],
) -> Value {
    let port = port.to_string();
    let mut args = vec![
        command,
        "--port",
        &port,
        "--mode",
        "ssl",
        "--user",
        ADDR,
        "--password",
        password,
    ];
    args.extend_from_slice(extra);
    client(p, script, &args)
}

fn smtp_send(p: &Proxy, password: &str) -> Value {
    let file = p.dir.path().join("message.eml");
    std::fs::write(&file, MESSAGE).unwrap();
    let extra = [
        "--mech",
        "plain",
        "--from",
        ADDR,
        "--to",
        TO,
        "--file",
        file.to_str().unwrap(),
    ];
    as_mailbox(
        p,
        "smtp_client.py",
        "send",
        p.submissions_port,
        password,
        &extra,
    )
}

fn imap_subjects(p: &Proxy, password: &str) -> Value {
    as_mailbox(p, "imap_client.py", "subjects", p.imaps_port, password, &[])
}

fn pop3_login(p: &Proxy, password: &str) -> Value {
    as_mailbox(
        p,
        "pop3_client.py",
        "login",
        p.pop3s_port,
        password,
        &["--mech", "user"],
    )
}

fn wait_for_delivery(rig: &common::rig::Rig, n: usize) -> Vec<u8> {
    for _ in 0..100 {
        if let Some(m) = rig.mailbox.delivered().into_iter().nth(n - 1) {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the sink never got message {n}");
}

/// The app passwords as `app-password list` shows them, by name.
fn listed(p: &Proxy) -> Vec<Value> {
    p.ok(&["app-password", "list", ADDR], None)["app_passwords"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn an_smtp_only_password_sends_but_reads_nothing_and_an_imap_only_one_reads() {
    let rig = rig("max_app_passwords = 3");
    let p = &rig.proxy;
    two_factor_on(p);
    let fatture = generate(p, "software fatture", "smtp");
    let outlook = generate(p, "Outlook in ufficio", "imap");

    // The invoicing program's password sends...
    let sent = smtp_send(p, &fatture);
    assert_eq!(sent["ok"], true, "{sent}");
    let delivered = wait_for_delivery(&rig, 1);
    // ...and opens nothing else, refused exactly like a wrong password.
    let imap = imap_subjects(p, &fatture);
    assert_eq!(imap["ok"], false);
    assert!(
        imap["text"]
            .as_str()
            .unwrap()
            .contains("[AUTHENTICATIONFAILED] Authentication failed"),
        "{imap}"
    );
    let pop = pop3_login(p, &fatture);
    assert_eq!(pop["ok"], false);
    assert_eq!(pop["text"], "-ERR [AUTH] Authentication failed");
    // The IMAP-only password cannot send.
    let refused = smtp_send(p, &outlook);
    assert_eq!(
        (refused["ok"].as_bool(), refused["auth_code"].as_i64()),
        (Some(false), Some(535))
    );

    // The message reaches the mailbox (put there as a delivery would), and the IMAP-only
    // password of the same mailbox reads it.
    rig.deliver(&delivered);
    let read = imap_subjects(p, &outlook);
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(
        read["subjects"],
        serde_json::json!(["Subject: Invio File 01234567890_00002"])
    );

    // The history says which password and why.
    let history = p.ok(&["mailbox", "history", ADDR], None)["history"].clone();
    let rows = history.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["protocol"] == "imap"
            && r["app_password"] == "software fatture"
            && r["reason"] == "app password 'software fatture' is limited to smtp"),
        "{history}"
    );
    assert!(
        rows.iter()
            .any(|r| r["result"] == "accepted" && r["app_password"] == "Outlook in ufficio")
    );

    // Each shows its own last use.
    let list = listed(p);
    let by_name = |n: &str| list.iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(by_name("software fatture")["last_used"]["protocol"], "smtp");
    assert_eq!(
        by_name("software fatture")["last_used"]["client"],
        "127.0.0.1"
    );
    assert_eq!(
        by_name("Outlook in ufficio")["last_used"]["protocol"],
        "imap"
    );
    assert_eq!(
        by_name("software fatture")["scope"],
        serde_json::json!(["smtp"])
    );

    // Regenerating one keeps its name and scope and leaves the other working.
    let regen = p.ok(
        &[
            "app-password",
            "regenerate",
            ADDR,
            "--name",
            "Outlook in ufficio",
        ],
        None,
    );
    assert_eq!(regen["scope"], serde_json::json!(["imap"]));
    let outlook2 = regen["password"].as_str().unwrap().to_owned();
    assert_eq!(
        imap_subjects(p, &outlook)["ok"],
        false,
        "the old one stops at once"
    );
    assert_eq!(imap_subjects(p, &outlook2)["ok"], true);
    assert_eq!(
        smtp_send(p, &fatture)["ok"],
        true,
        "the other one still works"
    );
    assert!(
        listed(p)
            .iter()
            .find(|a| a["name"] == "Outlook in ufficio")
            .unwrap()["last_used"]["protocol"]
            == "imap",
        "the new one's own login is recorded"
    );

    // The main password still opens nothing under 2FA.
    assert_eq!(imap_subjects(p, MAIN)["ok"], false);
}

#[test]
fn the_limit_and_the_protocols_of_the_mailbox_bound_every_password() {
    let rig = rig("max_app_passwords = 2");
    let p = &rig.proxy;
    two_factor_on(p);
    let fatture = generate(p, "fatture", "smtp,imap");
    generate(p, "telefono", "imap");
    let third = p.cli(
        &[
            "--json",
            "app-password",
            "generate",
            ADDR,
            "--name",
            "tablet",
        ],
        None,
    );
    assert_eq!(third.code, 1, "{third:?}");
    assert_eq!(third.json()["error"], "too_many_app_passwords");
    assert!(
        third.stderr.contains("already has 2 app password(s)"),
        "{third:?}"
    );

    // Disabling IMAP narrows both scopes; "telefono" is left with none and is said so.
    let v = p.ok(&["mailbox", "protocols", ADDR, "--disable", "imap"], None);
    assert_eq!(
        v["narrowed"],
        serde_json::json!([{"name": "fatture", "scope": ["smtp"]}, {"name": "telefono", "scope": []}])
    );
    let notices = p.ok(&["mailbox", "notices", ADDR], None);
    assert!(
        notices["notices"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"telefono\" non funziona più"),
        "{notices}"
    );
    assert_eq!(smtp_send(p, &fatture)["ok"], true);
    // Deactivating all ends every one.
    let d = p.ok(
        &["app-password", "deactivate", ADDR, "--all", "--yes"],
        None,
    );
    assert_eq!(d["deactivated"], serde_json::json!(["fatture", "telefono"]));
    assert_eq!(smtp_send(p, &fatture)["ok"], false);
}

/// An app password pinned to a network works from there and is refused elsewhere (the
/// history says why), is unpinned again, and the CLI refuses what is not a network.
#[test]
fn a_password_pinned_to_a_network_is_refused_from_elsewhere() {
    let rig = common::rig::rig("");
    let p = &rig.proxy;
    let password = common::rig::two_factor_with_app_password(p);
    let from = |source: &str| {
        as_mailbox(
            p,
            "imap_client.py",
            "login",
            p.imaps_port,
            &password,
            &["--source", source],
        )["ok"]
            .as_bool()
            .unwrap_or(false)
    };
    assert!(from("127.0.0.1") && from("127.0.0.3"), "anywhere at first");
    let pinned = p.ok(
        &[
            "app-password",
            "pin",
            ADDR,
            "--network",
            "127.0.0.3/32",
            "--network",
            "10.0.0.0/8",
        ],
        None,
    );
    assert_eq!(
        pinned["networks"],
        serde_json::json!(["127.0.0.3/32", "10.0.0.0/8"])
    );
    assert!(from("127.0.0.3"), "from its network");
    assert!(!from("127.0.0.1"), "refused elsewhere");
    let h = p.ok(&["mailbox", "history", ADDR, "--limit", "5"], None);
    let newest = &h["history"][0];
    assert_eq!(newest["result"], "refused", "{h}");
    assert_eq!(newest["client"], "127.0.0.1", "{h}");
    assert!(
        newest["reason"]
            .as_str()
            .unwrap()
            .contains("outside its allowed networks"),
        "{h}"
    );
    // Unpinned: anywhere again.
    let anywhere = p.ok(&["app-password", "pin", ADDR], None);
    assert_eq!(anywhere["networks"], serde_json::json!([]));
    assert!(from("127.0.0.1"));
    // Not a network: refused, nothing changed.
    let bad = p.cli(
        &["app-password", "pin", ADDR, "--network", "10.0.0.0/33"],
        None,
    );
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("10.0.0.0/33"), "{bad:?}");
    let events = p.ok(&["mailbox", "events", ADDR], None).to_string();
    assert!(events.contains("app-password.pin"), "{events}");
}
