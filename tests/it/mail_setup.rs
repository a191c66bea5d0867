//! Mail programs configured without typing: Thunderbird's autoconfig and Outlook's
//! Autodiscover served by the page's listener (tests/clients/mail_setup.py fetches and
//! reads them as those programs do), the settings they carry used to log in for real,
//! and the page's *Parametri per il programma di posta*.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::rig::{ADDR, MAIN, UPSTREAM_PW, client, two_factor_with_app_password};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};
use common::{code, secret_from_uri};
use serde_json::Value;

/// A proxy with the page on its own port and `clients` as its `[clients]` section.
fn proxy(clients: &str) -> (Proxy, Dovecot, u16) {
    proxy_with("", clients)
}

/// The same with `[policy]` lines `policy`.
fn proxy_with(policy: &str, clients: &str) -> (Proxy, Dovecot, u16) {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut p = Proxy::configure(
        &mailbox,
        &mailbox,
        policy,
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\n\n[clients]\n{clients}\n"),
    );
    p.run();
    wait_for_port(web_port, "web page", &p.log_path());
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    (p, mailbox, web_port)
}

fn setup(p: &Proxy, port: u16, args: &[&str]) -> Value {
    let port = port.to_string();
    let mut all = vec![args[0], "--port", &port];
    all.extend_from_slice(&args[1..]);
    client(p, "mail_setup.py", &all)
}

/// Logs in with what a program was told; the password on standard input.
fn login(p: &Proxy, server: &Value, protocol: &str, password: &str) -> Value {
    let tls = match server["socketType"].as_str().unwrap() {
        "SSL" => "ssl",
        "STARTTLS" => "starttls",
        other => panic!("socket type {other}"),
    };
    let port = server["port"].as_u64().unwrap().to_string();
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/mail_setup.py"
        ))
        .args(["login", "--host", server["hostname"].as_str().unwrap()])
        .args(["--port", &port, "--tls", tls, "--protocol", protocol])
        .args(["--user", server["username"].as_str().unwrap()])
        .arg("--cafile")
        .arg(p.cert())
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn thunderbird_autoconfig_leads_to_a_working_account_and_reveals_no_mailbox() {
    // The public host given as loopback, so that what Thunderbird would do can be done.
    let (p, _mailbox, web) = proxy("host = \"127.0.0.1\"");
    let password = two_factor_with_app_password(&p);

    let v = setup(&p, web, &["autoconfig", "--address", ADDR]);
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["provider"], "pec.example.it");
    assert_eq!(v["domains"], serde_json::json!(["pec.example.it"]));
    // IMAP first (Thunderbird's default), then POP3; implicit TLS preferred; never the
    // archive listener.
    let incoming = v["incoming"].as_array().unwrap();
    let kinds: Vec<&str> = incoming
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["imap", "pop3"], "{v}");
    assert_eq!(incoming[0]["port"], p.imaps_port.to_string());
    assert_eq!(incoming[1]["port"], p.pop3s_port.to_string());
    let outgoing = &v["outgoing"][0];
    assert_eq!(outgoing["type"], "smtp");
    assert_eq!(outgoing["port"], p.submissions_port.to_string());
    for s in incoming.iter().chain([outgoing]) {
        assert_eq!(s["socketType"], "SSL", "{s}");
        assert_eq!(s["authentication"], "password-cleartext", "{s}");
        assert_eq!(s["username"], "%EMAILADDRESS%", "{s}");
        assert_eq!(s["hostname"], "127.0.0.1", "{s}");
    }
    // The account Thunderbird makes of it logs in, IMAP and SMTP, with the app password;
    // the main password is refused there (2FA is on).
    let tb = &v["thunderbird"];
    assert_eq!(tb["incoming"]["username"], ADDR);
    assert_eq!(login(&p, &tb["incoming"], "imap", &password)["ok"], true);
    assert_eq!(login(&p, &tb["outgoing"], "smtp", &password)["ok"], true);
    assert_eq!(login(&p, &tb["incoming"], "imap", MAIN)["ok"], false);

    // Another address of the same domain, with no mailbox: the very same document.
    let other = setup(
        &p,
        web,
        &["autoconfig", "--address", "nessuno@pec.example.it"],
    );
    assert_eq!(other["body"], v["body"]);
    // The .well-known path without an address: the domain is the host asked, past
    // `autoconfig.`.
    let known = setup(
        &p,
        web,
        &[
            "autoconfig",
            "--well-known",
            "--host",
            "autoconfig.pec.example.it",
        ],
    );
    assert_eq!(known["status"], 200, "{known}");
    assert_eq!(known["body"], v["body"]);
    // A domain the proxy serves no mailbox of, and an address that is none: 404.
    for address in ["mario@altro.example.com", "not-an-address", "a@b.it<x>"] {
        let none = setup(&p, web, &["autoconfig", "--address", address]);
        assert_eq!(none["status"], 404, "{address}: {none}");
    }
}

#[test]
fn outlook_autodiscover_answers_its_request_and_refuses_what_is_not_one() {
    // Behind a balancer: the public host and ports differ from the listeners'.
    let (p, _mailbox, web) = proxy(
        "host = \"mail.pec.example.it\"\nimap = { port = 993, tls = \"implicit\" }\n\
         smtp = { port = 587, tls = \"starttls\" }",
    );
    let v = setup(
        &p,
        web,
        &["autodiscover", "--address", "Mario.Rossi@PEC.example.it"],
    );
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["account_type"], "email");
    assert_eq!(v["action"], "settings");
    let protocols = v["protocols"].as_array().unwrap();
    let by = |kind: &str| {
        protocols
            .iter()
            .find(|p| p["Type"] == kind)
            .unwrap_or_else(|| panic!("{kind} in {v}"))
    };
    let imap = by("IMAP");
    assert_eq!(imap["Server"], "mail.pec.example.it");
    assert_eq!(imap["Port"], "993");
    assert_eq!(imap["SSL"], "on");
    assert_eq!(imap["Encryption"], "SSL");
    assert_eq!(imap["LoginName"], ADDR, "the address, normalised");
    assert_eq!(imap["SPA"], "off");
    // POP3 from its listener (not named in [clients]).
    assert_eq!(by("POP3")["Port"], p.pop3s_port.to_string());
    // SMTP on 587 with STARTTLS: SSL stays on, Encryption says TLS (STARTTLS).
    let smtp = by("SMTP");
    assert_eq!(
        (smtp["Port"].as_str(), smtp["Encryption"].as_str()),
        (Some("587"), Some("TLS"))
    );
    assert_eq!(smtp["SSL"], "on");
    assert_eq!(protocols[0]["Type"], "IMAP", "IMAP first");

    // Not a request, not an address, a foreign domain, too large.
    for raw in [
        "",
        "hello",
        "<Autodiscover><Request><EMailAddress>nobody</EMailAddress></Request></Autodiscover>",
    ] {
        let bad = setup(&p, web, &["autodiscover", "--raw", raw]);
        assert_eq!(bad["status"], 400, "{raw:?}: {bad}");
        assert!(bad["body"].as_str().unwrap().len() < 100, "{bad}");
    }
    let foreign = setup(
        &p,
        web,
        &["autodiscover", "--address", "a@altro.example.com"],
    );
    assert_eq!(foreign["status"], 404, "{foreign}");
    // Refused on its Content-Length, unread: the client still sends it all and reads
    // the answer (the rest is drained, not reset away).
    for pad in ["100000", "300000", "900000"] {
        let big = setup(&p, web, &["autodiscover", "--address", ADDR, "--pad", pad]);
        assert_eq!(big["status"], 400, "{pad}: {big}");
    }
    // The proxy stays healthy, and the credentials Outlook sends along are not logged.
    let again = setup(&p, web, &["autodiscover", "--address", ADDR]);
    assert_eq!(again["status"], 200);
    assert!(!p.log().contains("dXNlcjpzZWNyZXQtbmV2ZXItbG9nZ2Vk"));

    // The page shows the same settings to the owner (logged in with the main password,
    // 2FA off): server, port, security, user name, for the mailbox's protocols.
    let page = account_page(&p, web);
    for needle in [
        "Parametri per il programma di posta",
        "<td class=\"server\">mail.pec.example.it</td><td class=\"port\">993</td><td class=\"security\">SSL/TLS</td>",
        "<td class=\"port\">587</td><td class=\"security\">STARTTLS</td>",
        &format!("<td class=\"user\">{ADDR}</td>"),
    ] {
        assert!(page.contains(needle), "{needle} in {page}");
    }
}

/// The owner's *Sicurezza e password* page, logged in with the main password (curl).
fn account_page(p: &Proxy, web: u16) -> String {
    let jar = tempfile::NamedTempFile::new().unwrap();
    let jar = jar.path().to_str().unwrap();
    let base = format!("https://127.0.0.1:{web}");
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-b", jar, "-c", jar])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let form = curl(&[&format!("{base}/login")]);
    let at = form.find("name=\"csrf\" value=\"").expect("a login form") + 19;
    let csrf = &form[at..at + 32];
    curl(&[
        "--data-urlencode",
        &format!("csrf={csrf}"),
        "--data-urlencode",
        &format!("login={ADDR}"),
        "--data-urlencode",
        &format!("password={MAIN}"),
        &format!("{base}/login"),
    ]);
    let page = curl(&[&format!("{base}/account")]);
    assert!(page.contains("id=\"address\""), "{page}\n{}", p.log());
    page
}

/// *Configura iPhone/iPad/Mac* in a real browser: a profile carrying a new app password,
/// signed with the page's certificate, downloaded once; another taken once by the link
/// its QR code carries (decoded from a screenshot with zbarimg); each password works for
/// exactly what was ticked, and the history says how each profile was taken.
#[test]
fn apple_devices_get_a_signed_profile_with_a_new_password_once() {
    let (p, _mailbox, web) = proxy_with("max_app_passwords = 3", "host = \"127.0.0.1\"");
    let enabled = p.ok(&["2fa", "enable", ADDR], None);
    let b32 = enabled["otpauth_uri"]
        .as_str()
        .unwrap()
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap()
        .to_owned();
    let secret = secret_from_uri(enabled["otpauth_uri"].as_str().unwrap());
    // The previous step's code: the browser's login takes the current one.
    p.ok(&["2fa", "confirm", ADDR, &code(&secret, -1)], None);

    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp/apple");
    let web_arg = web.to_string();
    let v = client(
        &p,
        "apple_profile.py",
        &[
            "--web",
            &web_arg,
            "--address",
            ADDR,
            "--password",
            MAIN,
            "--secret",
            &b32,
            "--shots",
            shots,
        ],
    );
    assert_eq!(v["logged_in"], "/account", "{v}");
    assert_eq!(v["card_shown"], true);
    assert_eq!(v["ready_at"], "/account/apple");
    assert_eq!(v["ready"], true);
    assert!(
        v["signature_text"]
            .as_str()
            .unwrap()
            .contains("firmato con il certificato"),
        "{v}"
    );
    assert_eq!(v["download_name"], "iPhone-di-Mario.mobileconfig");
    assert_eq!(v["gone_after_download"], true, "served once");
    assert!(
        v["no_incoming_message"]
            .as_str()
            .unwrap()
            .contains("IMAP o POP3"),
        "{v}"
    );

    // The downloaded profile: the CMS signature holds against the page's certificate,
    // and inside is an IMAP account with a new password (not the main one).
    let downloaded = v["downloaded"].as_str().unwrap();
    let prof = client(&p, "mail_setup.py", &["profile", "--file", downloaded]);
    assert_eq!(prof["verified"], true, "{prof}");
    let mail = &prof["plist"]["mail"];
    assert_eq!(mail["PayloadType"], "com.apple.mail.managed");
    assert_eq!(mail["EmailAccountType"], "EmailTypeIMAP");
    assert_eq!(mail["EmailAddress"], ADDR);
    assert_eq!(mail["IncomingMailServerHostName"], "127.0.0.1");
    assert_eq!(mail["IncomingMailServerPortNumber"], p.imaps_port);
    assert_eq!(mail["IncomingMailServerUseSSL"], true);
    assert_eq!(mail["IncomingMailServerUsername"], ADDR);
    assert_eq!(mail["OutgoingMailServerPortNumber"], p.submissions_port);
    assert_eq!(prof["plist"]["top"]["PayloadType"], "Configuration");
    let password = mail["IncomingPassword"].as_str().unwrap().to_owned();
    assert_ne!(password, MAIN);
    assert_eq!(mail["OutgoingPassword"], password.as_str());
    let server = |protocol: &str, port: u16| serde_json::json!({"hostname": "127.0.0.1", "port": port, "socketType": "SSL", "username": ADDR, "protocol": protocol});
    assert_eq!(
        login(&p, &server("imap", p.imaps_port), "imap", &password)["ok"],
        true
    );
    assert_eq!(
        login(&p, &server("smtp", p.submissions_port), "smtp", &password)["ok"],
        true
    );
    assert_eq!(
        login(&p, &server("pop3", p.pop3s_port), "pop3", &password)["ok"],
        false,
        "POP3 was not ticked"
    );

    // The other profile by its one-time link: once, then the link says nothing more.
    let url = v["qr_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("https://127.0.0.1:{web}/setup/")),
        "{url}"
    );
    let fetched = tempfile::NamedTempFile::new().unwrap();
    let get = |out: &std::path::Path| {
        let r = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-o"])
            .arg(out)
            .args(["-w", "%{http_code}", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    assert_eq!(get(fetched.path()), "200");
    let linked = client(
        &p,
        "mail_setup.py",
        &["profile", "--file", fetched.path().to_str().unwrap()],
    );
    assert_eq!(linked["verified"], true, "{linked}");
    let ipad = linked["plist"]["mail"]["IncomingPassword"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(ipad, password, "a password of its own");
    assert!(
        linked["plist"]["mail"].get("OutgoingPassword").is_none(),
        "SMTP not ticked"
    );
    assert_eq!(
        login(&p, &server("imap", p.imaps_port), "imap", &ipad)["ok"],
        true
    );
    assert_eq!(
        login(&p, &server("smtp", p.submissions_port), "smtp", &ipad)["ok"],
        false
    );
    let again = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(get(again.path()), "404", "used once");
    let body = std::fs::read_to_string(again.path()).unwrap();
    assert!(
        body.contains("non è più valido") && !body.contains("iPad"),
        "{body}"
    );

    // The owner's history says which password each profile carried, and how it went.
    let h = p.ok(&["mailbox", "history", ADDR, "--limit", "50"], None);
    let reasons: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"configuration profile with app password \"iPad di Mario\" downloaded by its one-time link"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"configuration profile with app password \"iPhone di Mario\" downloaded"),
        "{reasons:?}"
    );
    // The two passwords are ordinary ones: listed with their scope and life.
    let shown = p.ok(&["mailbox", "show", ADDR], None);
    let names: Vec<&str> = shown["app_passwords"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(
        names.contains(&"iPhone di Mario") && names.contains(&"iPad di Mario"),
        "{shown}"
    );
    assert!(!p.log().contains(&password), "no password in the log");
}
