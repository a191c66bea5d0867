//! Where each password is used, and "Non sono stato io": real clients through the proxy
//! (imaplib naming itself in `ID`, smtplib in `EHLO`) from 127.x sources standing for
//! networks, the notices e-mailed to a real SMTP sink, the page and the link in Debian's
//! headless Chromium, a held IMAP session ended by the link.

use crate::common;

use std::time::Duration;

use common::held::Held;
use common::rig::client;
use common::rig::{ADDR, MAIN, UPSTREAM_PW};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};
use common::{code, secret_from_uri};
use mail_parser::MessageParser;
use serde_json::Value;

/// The alert e-mails the sink got ("… posto nuovo …"), each as (subject, body), waiting
/// (bounded) for at least `n`.
fn alerts(mailbox: &Dovecot, n: usize, p: &Proxy) -> Vec<(String, String)> {
    for _ in 0..200 {
        let got: Vec<(String, String)> = mailbox
            .delivered()
            .iter()
            .filter_map(|raw| {
                let m = MessageParser::default().parse(raw)?;
                let subject = m.subject()?.to_owned();
                subject
                    .contains("posto nuovo")
                    .then(|| (subject, m.body_text(0).unwrap_or_default().into_owned()))
            })
            .collect();
        if got.len() >= n {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no new-place alert e-mailed\n{}", p.log());
}

/// The notices of `kind`.
fn notices_of(p: &Proxy, kind: &str) -> Vec<Value> {
    p.ok(&["mailbox", "notices", ADDR], None)["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn each_password_shows_where_it_is_used_and_a_new_place_asks_the_owner() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web = free_port();
    let extra = format!(
        "\n[web]\nbind = \"127.0.0.1:{web}\"\npublic_url = \"https://127.0.0.1:{web}/\"\n\n\
         [notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"avvisi@pec.example.it\"\nretry = \"1s\"\n",
        mailbox.sink_port
    );
    let mut proxy = Proxy::configure(&mailbox, &archive, "max_app_passwords = 3", &extra);
    proxy.run();
    wait_for_port(web, "web page", &proxy.log_path());
    let p = &proxy;
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    let enabled = p.ok(&["2fa", "enable", ADDR], None);
    let uri = enabled["otpauth_uri"].as_str().unwrap();
    let b32 = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap()
        .to_owned();
    // The previous step's code: the current one stays for the page's login.
    p.ok(
        &["2fa", "confirm", ADDR, &code(&secret_from_uri(uri), -1)],
        None,
    );
    let generate = |name: &str| {
        p.ok(&["app-password", "generate", ADDR, "--name", name], None)["password"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let laptop = generate("portatile");
    let phone = generate("telefono");

    let imaps = p.imaps_port.to_string();
    let imap = |password: &str, source: &str, id: Option<(&str, &str)>| -> bool {
        let mut args = vec![
            "login",
            "--port",
            &imaps,
            "--mode",
            "ssl",
            "--user",
            ADDR,
            "--password",
            password,
            "--source",
            source,
        ];
        if let Some((name, version)) = id {
            args.extend(["--id", name, version]);
        }
        client(p, "imap_client.py", &args)["ok"] == true
    };
    let submissions = p.submissions_port.to_string();
    let smtp = |password: &str, source: &str, ehlo: &str| -> bool {
        let args = [
            "send",
            "--port",
            &submissions,
            "--mode",
            "ssl",
            "--user",
            ADDR,
            "--password",
            password,
            "--source",
            source,
            "--ehlo",
            ehlo,
        ];
        client(p, "smtp_client.py", &args)["ok"] == true
    };

    // Setting the device up, in the password's first hour: learned, nobody asked.
    assert!(imap(&laptop, "127.0.0.1", Some(("Thunderbird", "128.3"))));
    assert!(smtp(&laptop, "127.0.0.2", "fatture.example"));
    // The password is now two hours old (the store's clock for it, set by the test).
    let db = rusqlite::Connection::open(p.dir.path().join("state/sentinella.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE app_passwords SET created_at = created_at - 7200 WHERE name = 'portatile'",
        [],
    )
    .unwrap();
    drop(db);
    // From a network it was never used from: the owner is asked, once.
    assert!(imap(&laptop, "127.0.1.1", Some(("Thunderbird", "128.3"))));
    let got = alerts(&mailbox, 1, p);
    let (subject, body) = &got[0];
    assert!(subject.contains("«portatile»"), "{subject}");
    assert!(body.contains("rete 127.0.1.0/24"), "{body}");
    assert!(body.contains("da 127.0.1.1"), "{body}");
    assert!(body.contains("programma «Thunderbird 128.3»"), "{body}");
    let prefix = format!("https://127.0.0.1:{web}/not-me/");
    let link = body
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no link in\n{body}"))
        .trim()
        .to_owned();
    // Another new network within the hour: no second alert. (A login from a known place
    // afterwards carries any alert still waiting into the store.)
    assert!(imap(&laptop, "127.0.2.1", None));
    assert!(imap(&laptop, "127.0.0.1", Some(("Thunderbird", "128.3"))));
    assert_eq!(notices_of(p, "new-place").len(), 1);
    // Only the link's hash is kept, and its token leaves the outbox once e-mailed.
    let db = rusqlite::Connection::open(p.dir.path().join("state/sentinella.db")).unwrap();
    let token = link.rsplit('/').next().unwrap();
    let in_clear: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM not_me_links WHERE hash = ?1) \
             + (SELECT COUNT(*) FROM outbox WHERE link IS NOT NULL AND state != 'pending')",
            [token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_clear, 0, "the token is kept in clear");
    drop(db);

    // The CLI: the program of the last use, the networks and programs, counted.
    let shown = p.ok(&["mailbox", "show", ADDR], None);
    let mine = shown["app_passwords"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "portatile")
        .unwrap()
        .clone();
    assert_eq!(mine["last_used"]["software"], "Thunderbird 128.3", "{mine}");
    assert_eq!(mine["last_used"]["client"], "127.0.0.1", "{mine}");
    let places: Vec<(String, String, u64)> = mine["used_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["kind"].as_str().unwrap().to_owned(),
                u["value"].as_str().unwrap().to_owned(),
                u["uses"].as_u64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("network", "127.0.0.0/24", 3),
        ("network", "127.0.1.0/24", 1),
        ("network", "127.0.2.0/24", 1),
        ("software", "Thunderbird 128.3", 3),
        ("software", "fatture.example", 1),
    ] {
        let e = (expected.0.to_owned(), expected.1.to_owned(), expected.2);
        assert!(places.contains(&e), "{expected:?} not in {places:?}");
    }
    let text = p.cli(&["mailbox", "show", ADDR], None).stdout;
    assert!(
        text.contains("used from network 127.0.1.0/24: 1 login(s)")
            && text.contains("program \"Thunderbird 128.3\""),
        "{text}"
    );
    let history = p.ok(&["mailbox", "history", ADDR, "--limit", "20"], None);
    let programs: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["software"].as_str())
        .collect();
    assert!(
        programs.contains(&"fatture.example") && programs.contains(&"Thunderbird 128.3"),
        "{history}"
    );

    // The page, then the link, with a session of the password held open meanwhile.
    let held = Held::open(p, "imap", &laptop, &[]);
    let shots = format!("{}/web-screenshots", env!("CARGO_TARGET_TMPDIR"));
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/usage_owner.py"
        ))
        .args(["--web", &web.to_string()])
        .arg("--cafile")
        .arg(p.cert())
        .args(["--address", ADDR, "--password", MAIN, "--secret", &b32])
        .args(["--name", "portatile", "--link", &link, "--shots", &shots])
        .output()
        .expect("python3 with playwright");
    assert!(
        out.status.success(),
        "usage_owner.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["logged_in"], "/account", "{v:#}");
    // The last use is the held session's (imaplib without ID: no program named).
    assert!(
        v["last_use"]
            .as_str()
            .unwrap()
            .ends_with("127.0.0.1 · IMAP"),
        "{v:#}"
    );
    let used_from: Vec<&str> = v["used_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let line = |start: &str| {
        used_from
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("{start}: {v:#}"))
            .to_owned()
    };
    assert!(line("127.0.0.0/24 · ").ends_with(" · 4 accessi"), "{v:#}");
    assert!(line("127.0.1.0/24 · ").ends_with(" · 1 accesso"), "{v:#}");
    assert!(
        line("programma Thunderbird 128.3 · ").ends_with(" · 3 accessi"),
        "{v:#}"
    );
    assert!(line("programma fatture.example · ").ends_with(" · 1 accesso"));
    assert_eq!(v["link_status"], 200, "{v:#}");
    assert_eq!(v["link_names"], "portatile", "{v:#}");
    assert!(
        v["after_button"]
            .as_str()
            .unwrap()
            .contains("cambia anche la password principale"),
        "{v:#}"
    );
    for (status, text) in [
        ("again_status", "again_text"),
        ("forged_status", "forged_text"),
    ] {
        assert_eq!(v[status], 404, "{v:#}");
        assert_eq!(v[text], "Questo link non è più valido.", "{v:#}");
    }
    assert_eq!(v["forged_post_status"], 404, "{v:#}");
    assert_eq!(v["spent_post_status"], 404, "{v:#}");

    // The held session ended; the password is gone; who did it is recorded; the other
    // password still works.
    let report = held.finish();
    assert_eq!(report["closed"], true, "{report}");
    let names: Vec<String> = p.ok(&["mailbox", "show", ADDR], None)["app_passwords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["telefono"]);
    let events = p.ok(&["mailbox", "events", ADDR], None)["events"].clone();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| { e["actor"] == "owner:link" && e["action"] == "app-password.deactivate" }),
        "{events}"
    );
    assert!(!imap(&laptop, "127.0.1.1", None), "deactivated");
    assert!(
        imap(&phone, "127.0.0.1", None),
        "the other password is untouched"
    );
}

/// Logs in over IMAPS with imaplib as the mailbox with `password`; whether accepted.
fn main_login(p: &Proxy, password: &str) -> bool {
    let imaps = p.imaps_port.to_string();
    let args = [
        "login",
        "--port",
        &imaps,
        "--mode",
        "ssl",
        "--user",
        ADDR,
        "--password",
        password,
    ];
    client(p, "imap_client.py", &args)["ok"] == true
}

/// The SHA-1 of `password` in upper-case hex, as the Pwned Passwords lists write it.
fn sha1_hex(password: &str) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[test]
fn a_main_password_in_the_breach_lists_is_marked_alerted_once_and_refused_when_asked() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let extra = format!(
        "\n[auth]\nbreached_passwords_file = \"pwned.txt\"\n\n\
         [notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"avvisi@pec.example.it\"\nretry = \"1s\"\n",
        mailbox.sink_port
    );
    let mut proxy = Proxy::configure(&mailbox, &archive, "", &extra);
    // A sorted list: the main password among a thousand others.
    let mut hashes: Vec<String> = (0..1000)
        .map(|i| sha1_hex(&format!("leaked-{i}")))
        .collect();
    hashes.push(sha1_hex(MAIN));
    hashes.sort();
    let list: String = hashes.iter().map(|h| format!("{h}:42\r\n")).collect();
    std::fs::write(proxy.dir.path().join("pwned.txt"), list).unwrap();
    proxy.run();
    let p = &proxy;
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    let breached_mails = |mailbox: &Dovecot| {
        mailbox
            .delivered()
            .iter()
            .filter_map(|raw| MessageParser::default().parse(raw))
            .filter(|m| m.subject().is_some_and(|s| s.contains("password rubate")))
            .count()
    };
    assert_eq!(
        p.ok(&["mailbox", "show", ADDR], None)["main_password_breached"],
        Value::Null
    );

    // Proven at a login (2FA off): accepted, marked, the owner alerted.
    assert!(main_login(p, MAIN), "not refused unless the operator asks");
    let mut mailed = 0;
    for _ in 0..200 {
        mailed = breached_mails(&mailbox);
        if mailed > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mailed, 1, "{}", p.log());
    assert!(p.ok(&["mailbox", "show", ADDR], None)["main_password_breached"].is_string());
    // Again: still one alert.
    assert!(main_login(p, MAIN));
    assert!(main_login(p, MAIN));
    assert_eq!(notices_of(p, "main-password-breached").len(), 1);
    assert!(
        !p.log().contains(&sha1_hex(MAIN)),
        "the hash is never logged"
    );

    // The operator refuses breached passwords (a reload): the mail protocols refuse it,
    // the history says why.
    let config = std::fs::read_to_string(p.config()).unwrap();
    let edited = config.replace(
        "breached_passwords_file = \"pwned.txt\"\n",
        "breached_passwords_file = \"pwned.txt\"\nrefuse_breached = true\n",
    );
    assert_ne!(edited, config);
    std::fs::write(p.config(), edited).unwrap();
    assert!(proxy.signal("HUP"));
    let p = &proxy;
    for _ in 0..100 {
        if p.log().contains("SIGHUP: settings reloaded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!main_login(p, MAIN), "refused once the operator asks");
    let h = p.ok(&["mailbox", "history", ADDR, "--limit", "1"], None);
    assert_eq!(h["history"][0]["result"], "refused", "{h}");
    assert!(
        h["history"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("lists of stolen passwords"),
        "{h}"
    );
    // A new main password is not known breached: accepted.
    p.ok(
        &["mailbox", "set-password", ADDR, "--password-stdin"],
        Some("Un4-nuova-password-lunga"),
    );
    assert_eq!(
        p.ok(&["mailbox", "show", ADDR], None)["main_password_breached"],
        Value::Null
    );
    assert!(main_login(p, "Un4-nuova-password-lunga"));
    assert_eq!(notices_of(p, "main-password-breached").len(), 1);
}
