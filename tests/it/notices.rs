//! Notices e-mailed through a real SMTP relay (the tests' aiosmtpd sink, the same one
//! Dovecot's submission relays to), parsed with a real MIME parser; the relay down for a
//! while, then back: nothing lost.

use crate::common;

use std::time::Duration;

use common::rig::UPSTREAM_PW;
use common::rig::{ADDR, MAIN, Rig};
use common::servers::{Dovecot, Proxy};
use mail_parser::MessageParser;
use serde_json::Value;

/// The usual rig, with `[notices.smtp]` pointing at the mailbox Dovecot's sink.
fn rig_with_relay() -> Rig {
    rig_with_relay_and("")
}

/// The same, with more `[notices.smtp]` lines `smtp`.
fn rig_with_relay_and(smtp: &str) -> Rig {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    // [limits] is followed by other tables in the harness's config: a table here is safe.
    let relay = format!(
        "\n[notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"avvisi@pec.example.it\"\nretry = \"1s\"\n{smtp}\n",
        mailbox.sink_port
    );
    let mut proxy = Proxy::configure(&mailbox, &archive, "", &relay);
    proxy.run();
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    Rig {
        proxy,
        mailbox,
        archive,
    }
}

/// The messages the sink holds, waiting (bounded) for at least `n`.
fn wait_for(rig: &Rig, n: usize) -> Vec<Vec<u8>> {
    for _ in 0..200 {
        let got = rig.mailbox.delivered();
        if got.len() >= n {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the relay got {} messages, expected {n}\n{}",
        rig.mailbox.delivered().len(),
        rig.proxy.log()
    );
}

fn deliveries(p: &Proxy) -> Vec<Value> {
    p.ok(&["mailbox", "notices", ADDR], None)["notices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["deliveries"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn notices_are_e_mailed_well_formed_to_the_contact_and_survive_the_relay_being_down() {
    let mut rig = rig_with_relay();
    let p = &rig.proxy;
    // No contact yet: avvisi only.
    p.ok(&["mailbox", "set-plan", ADDR, "pro"], None);
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    let first = wait_for(&rig, 1);
    let m = MessageParser::default().parse(&first[0]).unwrap();
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("avvisi@pec.example.it")
    );
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("mario@example.com")
    );
    // Italian by default.
    assert_eq!(
        m.subject(),
        Some(format!("{ADDR}: l'email di contatto è stata cambiata").as_str())
    );
    assert_eq!(m.header_raw("Content-Language").map(str::trim), Some("it"));
    assert!(m.date().is_some(), "a Date header");
    assert!(
        m.message_id()
            .is_some_and(|id| id.ends_with("@pec.example.it"))
    );
    assert_eq!(
        m.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    let body = m.body_text(0).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0] == format!("Casella: {ADDR}") && lines[1].starts_with("Quando: "),
        "{body}"
    );
    assert!(
        body.contains("CET") || body.contains("CEST"),
        "dates in Rome: {body}"
    );
    assert!(
        body.contains("D'ora in poi gli avvisi saranno inviati anche a mario@example.com"),
        "{body}"
    );
    assert!(
        !String::from_utf8_lossy(&first[0]).contains(MAIN),
        "never a secret"
    );

    // A change of contact is told to the old address and the new one.
    p.ok(
        &["mailbox", "set-contact", ADDR, "mario.rossi@example.com"],
        None,
    );
    let got = wait_for(&rig, 3);
    let to: Vec<String> = got[1..]
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw).unwrap();
            m.to()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(to.len(), 2);
    assert!(
        to.contains(&"mario@example.com".to_owned())
            && to.contains(&"mario.rossi@example.com".to_owned()),
        "{to:?}"
    );
    assert!(
        deliveries(p).iter().all(|d| d["state"] == "sent"),
        "{:?}",
        deliveries(p)
    );
    let text = p.cli(&["mailbox", "notices", ADDR], None).stdout;
    assert!(text.contains("e-mail to mario@example.com: sent"), "{text}");

    // The relay goes down: the next notice waits, tried again and again.
    rig.mailbox.stop();
    let p = &rig.proxy;
    p.ok(&["mailbox", "set-contact", ADDR, "anna@example.com"], None);
    let mut waiting = Value::Null;
    for _ in 0..200 {
        if let Some(d) = deliveries(p)
            .into_iter()
            .find(|d| d["recipient"] == "anna@example.com" && d["attempts"].as_u64() >= Some(1))
        {
            waiting = d;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert!(waiting["error"].is_string(), "{waiting}");
    // Back: delivered, nothing lost.
    rig.mailbox.restart();
    let mut delivered = false;
    for _ in 0..400 {
        if deliveries(&rig.proxy)
            .iter()
            .filter(|d| d["state"] == "sent")
            .count()
            == 5
        {
            delivered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        delivered,
        "{:?}\n{}",
        deliveries(&rig.proxy),
        rig.proxy.log()
    );
    let again: Vec<String> = rig
        .mailbox
        .delivered()
        .iter()
        .map(|raw| String::from_utf8_lossy(raw).into_owned())
        .collect();
    assert!(
        again.iter().any(|m| m.contains("To: anna@example.com")),
        "{again:?}"
    );
}

/// As an Italian owner reads them: MIME 1.0, the sender's name, a subject that says what
/// happened, the new expiry, who acted (an operator, through the CLI), where to act.
#[test]
fn notice_e_mails_say_what_happened_who_did_it_and_where_to_act() {
    let rig = rig_with_relay_and(
        "from_name = \"Avvisi Posta Example\"\n\n[web]\npublic_url = \"https://posta.example.it/\"",
    );
    let p = &rig.proxy;
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    common::rig::two_factor_on(p);
    let generated = p.ok(&["app-password", "generate", ADDR], None);
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    let got = wait_for(&rig, 4);
    let parsed: Vec<_> = got
        .iter()
        .map(|raw| MessageParser::default().parse(raw).unwrap())
        .collect();
    for (raw, m) in got.iter().zip(&parsed) {
        let head = String::from_utf8_lossy(raw);
        assert!(head.contains("MIME-Version: 1.0\r\n"), "{head}");
        assert_eq!(
            m.from().unwrap().first().unwrap().name(),
            Some("Avvisi Posta Example")
        );
        let body = m.body_text(0).unwrap();
        assert!(
            body.contains("Gestione account: https://posta.example.it/"),
            "{body}"
        );
    }
    let by_subject = |what: &str| {
        let subject = format!("{ADDR}: {what}");
        parsed
            .iter()
            .find(|m| m.subject() == Some(subject.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "{subject} among {:?}",
                    parsed.iter().map(|m| m.subject()).collect::<Vec<_>>()
                )
            })
            .body_text(0)
            .unwrap()
            .into_owned()
    };
    let body = by_subject("password per programmi di posta generata");
    let expires = generated["expires_at"].as_str().unwrap();
    // The day as the notice shows it: in the policy's zone (Europe/Rome), not UTC's —
    // an hour before midnight UTC it is already the next day there.
    let day = expires
        .parse::<jiff::Timestamp>()
        .unwrap()
        .in_tz(sentinella::policy::DEFAULT_ZONE)
        .unwrap()
        .strftime("%d/%m/%Y")
        .to_string();
    assert!(
        body.contains(
            "Un operatore ha generato la password per programmi di posta: funziona fino al"
        ) && body.contains(&day),
        "{body}"
    );
    assert!(!body.contains("\"default\""), "{body}");
    let body = by_subject("password per programmi di posta disattivata");
    assert!(
        body.contains("Un operatore ha disattivato la password per programmi di posta:"),
        "{body}"
    );
    by_subject("verifica in 2 passaggi attivata");
}

#[test]
fn a_refused_recipient_is_recorded_once_and_not_retried() {
    let rig = rig_with_relay();
    let p = &rig.proxy;
    p.ok(
        &["mailbox", "set-contact", ADDR, "reject.me@example.com"],
        None,
    );
    let mut failed = Value::Null;
    for _ in 0..200 {
        if let Some(d) = deliveries(p).into_iter().find(|d| d["state"] == "failed") {
            failed = d;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failed["recipient"], "reject.me@example.com", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("550"),
        "{failed}"
    );
    // The mailer comes round every few seconds: still one try, still failed.
    std::thread::sleep(Duration::from_secs(6));
    let d = deliveries(p);
    assert_eq!(
        (d[0]["attempts"].as_u64(), d[0]["state"].as_str()),
        (Some(1), Some("failed")),
        "{d:?}"
    );
    assert!(rig.mailbox.delivered().is_empty());
}

/// The English notices, from two `serve` processes on one store (one of them restarted
/// between two milestones), e-mailed through a relay that wants STARTTLS and AUTH: each
/// expiry reminder once, all the mail well formed, dates in Rome, no secret anywhere.
#[test]
fn reminders_from_two_processes_reach_a_starttls_relay_with_auth_once_each_in_english() {
    let relay = common::servers::Relay::start("avvisi", "relay-secret-pw");
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    // Milestones 6 s (postponing opens), 11 s (5 s before) and 16 s (expiry) after the
    // password is generated; the job looks every second.
    let policy =
        "app_password_validity = \"16s\"\npostpone_window = \"10s\"\nreminders_before = [\"5s\"]";
    let notices = |dir: &std::path::Path| {
        std::fs::write(dir.join("relay.pass"), "relay-secret-pw\n").unwrap();
        format!(
            "\n[notices]\nlanguage = \"en\"\nevery = \"1s\"\n[notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"starttls\"\nca_file = \"{}\"\nuser = \"avvisi\"\npassword_file = \"relay.pass\"\n\
             from = \"avvisi@pec.example.it\"\nretry = \"1s\"\n",
            relay.port,
            relay.certificate().display()
        )
    };
    let mut a = Proxy::configure(&mailbox, &mailbox, policy, "");
    let extra = notices(a.dir.path());
    let append = |p: &Proxy, extra: &str| {
        let mut text = std::fs::read_to_string(p.config()).unwrap();
        text.push_str(extra);
        std::fs::write(p.config(), text).unwrap();
    };
    append(&a, &extra);
    a.run();
    let mut b = Proxy::configure(&mailbox, &mailbox, policy, "");
    b.share_store_of(&a);
    append(&b, &notices(b.dir.path()));
    b.run();

    a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    a.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    common::rig::two_factor_on(&a);
    let password = a.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();

    let reminders = |relay: &common::servers::Relay| -> Vec<String> {
        relay
            .delivered()
            .iter()
            .filter_map(|(raw, _)| {
                let m = MessageParser::default().parse(raw).unwrap();
                // The subject says what: expires on a day, or expired.
                m.subject()
                    .is_some_and(|s| s.contains(": the password for mail programs expire"))
                    .then(|| m.body_text(0).unwrap().into_owned())
            })
            .collect()
    };
    let wait_reminders = |n: usize| {
        for _ in 0..600 {
            if reminders(&relay).len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} reminders e-mailed, expected {n}\n{}\n{}",
            reminders(&relay).len(),
            a.log(),
            std::fs::read_to_string(relay.dir.path().join("relay.log")).unwrap_or_default()
        );
    };
    wait_reminders(1);
    // A restart of one process between two milestones.
    b.stop();
    b.run();
    wait_reminders(3);
    // Both processes go on looking, every second: nothing more comes.
    std::thread::sleep(Duration::from_secs(4));
    let texts = reminders(&relay);
    assert_eq!(texts.len(), 3, "each milestone once: {texts:#?}");
    assert!(
        texts[0].contains("you can postpone its expiry"),
        "{}",
        texts[0]
    );
    assert!(texts[1].contains("(in 5 seconds)"), "{}", texts[1]);
    assert!(texts[2].contains("expired on"), "{}", texts[2]);
    let subjects: Vec<String> = relay
        .delivered()
        .iter()
        .filter_map(|(raw, _)| {
            MessageParser::default()
                .parse(raw)
                .unwrap()
                .subject()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.ends_with(": the password for mail programs expired")),
        "{subjects:?}"
    );

    let all = relay.delivered();
    // set-contact, 2FA on, generated, and the three reminders.
    assert_eq!(
        all.len(),
        6,
        "{:#?}",
        a.ok(&["mailbox", "notices", ADDR], None)
    );
    for (raw, envelope) in &all {
        assert_eq!(envelope["tls"], true, "sent after STARTTLS: {envelope}");
        assert_eq!(envelope["auth"], "avvisi", "sent after AUTH: {envelope}");
        assert_eq!(
            envelope["rcpt_tos"],
            serde_json::json!(["mario@example.com"])
        );
        let text = String::from_utf8_lossy(raw);
        for secret in [MAIN, password.as_str(), "relay-secret-pw"] {
            assert!(!text.contains(secret), "no secret in a notice: {text}");
        }
        let m = MessageParser::default().parse(raw).unwrap();
        assert_eq!(m.header_raw("Content-Language").map(str::trim), Some("en"));
        let body = m.body_text(0).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(
            lines[0] == format!("Mailbox: {ADDR}") && lines[1].starts_with("When: "),
            "{body}"
        );
        assert!(body.contains(" CET") || body.contains(" CEST"), "{body}");
    }
    let states = deliveries(&a);
    assert!(states.iter().all(|d| d["state"] == "sent"), "{states:?}");
}
