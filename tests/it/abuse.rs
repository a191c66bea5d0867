//! The abuse model against the running `serve`, real Dovecot and real clients
//! (tests/clients/abuse.py: plain HTTPS and imaplib, as an attacker would use them).
//! Each test is named for what it proves; every loop is bounded. The limits are the
//! shipped defaults (`[throttle]`: 5 codes, 5 passwords, 5 per name, 10 per address).

use crate::common;

use common::rig::{ADDR, MAIN, Rig, client, rig_with};
use common::servers::{Proxy, free_port, wait_for_port};
use serde_json::Value;

/// A rig with the page on a free port; returns it and the port.
fn with_page() -> (Rig, u16) {
    let port = free_port();
    let rig = rig_with("", &format!("\n[web]\nbind = \"127.0.0.1:{port}\"\n"));
    wait_for_port(port, "web page", &rig.proxy.log_path());
    (rig, port)
}

/// Turns 2FA on through the CLI (with the previous time step's code, so that this step's
/// and the next are still free for the page); returns the device's secret in base32.
fn two_factor(p: &Proxy) -> String {
    let v = p.ok(&["2fa", "enable", ADDR], None);
    let uri = v["otpauth_uri"].as_str().unwrap();
    let secret = common::secret_from_uri(uri);
    p.ok(&["2fa", "confirm", ADDR, &common::code(&secret, -1)], None);
    uri.split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

fn abuse(p: &Proxy, args: &[&str]) -> Value {
    client(p, "abuse.py", args)
}

fn results(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().or(r.as_str()).unwrap())
        .collect()
}

fn notices_of_kind(p: &Proxy, kind: &str) -> usize {
    p.ok(&["mailbox", "notices", ADDR], None)["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == kind)
        .count()
}

fn history(p: &Proxy) -> Vec<Value> {
    p.ok(&["mailbox", "history", ADDR, "--limit", "200"], None)["history"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn wrong_codes_across_relogins_and_addresses_block_the_code_step_and_the_right_code() {
    // The page, and notices e-mailed through the mailbox Dovecot's sink.
    let mailbox = common::servers::Dovecot::start(&[(ADDR, common::rig::UPSTREAM_PW)]);
    let web = free_port();
    let extra = format!(
        "\n[web]\nbind = \"127.0.0.1:{web}\"\n[notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nfrom = \"avvisi@pec.example.it\"\nretry = \"1s\"\n",
        mailbox.sink_port
    );
    let mut proxy = Proxy::configure(&mailbox, &mailbox, "", &extra);
    proxy.run();
    wait_for_port(web, "web page", &proxy.log_path());
    let p = &proxy;
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    let secret = two_factor(p);
    // An attacker who knows the main password: each round a fresh login (the password
    // step proved again), from 127.0.0.1 and 127.0.0.2 in turn, and one wrong code.
    let web = web.to_string();
    let v = abuse(
        p,
        &[
            "codes",
            "--web",
            &web,
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--secret",
            &secret,
            "--rounds",
            "7",
        ],
    );
    let rounds = results(&v["rounds"]);
    assert_eq!(
        rounds,
        [
            "wrong", "wrong", "wrong", "wrong", "wrong", "blocked", "blocked"
        ],
        "{v}\n{}",
        p.log()
    );
    let sources: std::collections::BTreeSet<&str> = v["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "two client addresses: {v}");
    // The right code is refused while the block runs: guessing it tells nothing.
    assert_eq!(v["right_code"], "blocked", "{v}");
    // The owner is told once, in the avvisi and by e-mail.
    assert_eq!(notices_of_kind(p, "codes-guessed"), 1, "{}", p.log());
    let text = |m: &[u8]| {
        let parsed = mail_parser::MessageParser::default().parse(m).unwrap();
        let to = format!("{:?}", parsed.to());
        (to, parsed.body_text(0).unwrap_or_default().into_owned())
    };
    let mut mail = None;
    for _ in 0..200 {
        mail = mailbox
            .delivered()
            .iter()
            .map(|m| text(m))
            .find(|(_, body)| body.contains("codici errati della verifica in 2"));
        if mail.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (to, body) = mail.unwrap_or_else(|| {
        panic!(
            "the alert e-mailed: {}\n{:?}",
            p.ok(&["mailbox", "notices", ADDR], None),
            mailbox
                .delivered()
                .iter()
                .map(|m| text(m))
                .collect::<Vec<_>>()
        )
    });
    assert!(to.contains("mario@example.com"), "{to}");
    assert!(
        body.contains("Qualcuno che conosce la password principale"),
        "{body}"
    );
    assert!(
        !body.contains(MAIN) && !body.contains(&secret),
        "no secret in it: {body}"
    );
    // Every code attempt is in the history with its factor.
    let h = history(p);
    let codes: Vec<&Value> = h.iter().filter(|r| r["credential"] == "code").collect();
    assert!(codes.len() >= 8, "{h:?}");
    assert!(
        codes.iter().any(|r| r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("2FA codes of the mailbox blocked")),
        "{h:?}"
    );
    assert!(
        codes
            .iter()
            .all(|r| r["result"] == "refused" && r["protocol"] == "web"),
        "{codes:?}"
    );
}

fn wrong_codes_to(action: &str) {
    let (rig, web) = with_page();
    let p = &rig.proxy;
    let secret = two_factor(p);
    let web = web.to_string();
    let v = abuse(
        p,
        &[
            "action",
            "--web",
            &web,
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--secret",
            &secret,
            "--rounds",
            "6",
            "--action",
            action,
        ],
    );
    assert_eq!(v["login"], "accepted", "{v}\n{}", p.log());
    assert_eq!(
        results(&v["rounds"]),
        ["wrong", "wrong", "wrong", "wrong", "wrong", "blocked"],
        "{v}"
    );
    assert_eq!(v["right_code"], "blocked", "{v}");
    // Nothing changed: 2FA is on with the same device.
    let shown = p.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(shown["two_factor"]["enabled"], true, "{shown}");
    assert!(shown["two_factor"]["pending"].is_null(), "{shown}");
    assert_eq!(notices_of_kind(p, "codes-guessed"), 1);
}

#[test]
fn a_logged_in_session_cannot_guess_the_code_that_turns_2fa_off() {
    wrong_codes_to("disable");
}

#[test]
fn a_logged_in_session_cannot_guess_the_code_that_replaces_the_device() {
    wrong_codes_to("replace");
}

#[test]
fn spraying_names_from_one_address_is_blocked_whatever_another_account_proves() {
    let (rig, web) = with_page();
    let p = &rig.proxy;
    // The attacker's own mailbox, whose right password it uses between rounds.
    p.ok(
        &[
            "mailbox",
            "add",
            "sprayer@pec.example.it",
            "--password-stdin",
        ],
        Some("Sprayer-pw-1"),
    );
    let imaps = p.imaps_port.to_string();
    let v = abuse(
        p,
        &[
            "spray",
            "--imaps",
            &imaps,
            "--rounds",
            "3",
            "--names",
            "9",
            "--good-user",
            ADDR,
            "--good-password",
            MAIN,
        ],
    );
    // 9 failures, a success of another account (which clears nothing of the others),
    // then the 10th failure blocks the address: the next connection is not served.
    assert_eq!(
        v["first_refused"],
        serde_json::json!([1, 1]),
        "{v}\n{}",
        p.log()
    );
    assert_eq!(v["good"][0], "ok", "{v}");
    // The page closes the blocked address at accept too; another address is served.
    let page = |source: &str| {
        std::process::Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--interface", source])
            .arg(format!("https://127.0.0.1:{web}/login"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap()
    };
    assert_eq!(page("127.0.0.1"), "000", "blocked: no TLS, no page");
    assert_eq!(page("127.0.0.2"), "200");
}

#[test]
fn the_owners_verified_mail_client_works_from_elsewhere_during_an_attack_on_the_name() {
    let (rig, web) = with_page();
    let p = &rig.proxy;
    let app = common::rig::two_factor_with_app_password(p);
    assert!(common::rig::imaps_login(p, ADDR, &app), "{}", p.log());
    // The attacker on the page, guessing the main password: the name, then the account's
    // password, blocked.
    let web = web.to_string();
    let v = abuse(
        p,
        &[
            "passwords",
            "--web",
            &web,
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--rounds",
            "6",
        ],
    );
    assert!(results_all(&v["wrong"], "/login?e=wrong"), "{v}");
    assert_eq!(
        v["right"], "/login?e=wrong",
        "even the right password, now: {v}"
    );
    // The owner's mail client, already verified, still gets in.
    assert!(common::rig::imaps_login(p, ADDR, &app), "{}", p.log());
    let h = history(p);
    assert!(
        h.iter()
            .any(|r| r["reason"].as_str().unwrap_or("").contains("blocked")),
        "{h:?}"
    );
}

fn results_all(v: &Value, want: &str) -> bool {
    v.as_array().unwrap().iter().all(|x| x == want)
}

#[test]
fn cookie_less_login_pages_never_end_a_logged_in_owners_session() {
    let (rig, web) = with_page();
    let p = &rig.proxy;
    let web = web.to_string();
    let v = abuse(
        p,
        &[
            "flood",
            "--web",
            &web,
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--requests",
            "110000",
        ],
    );
    assert_eq!(v["login"], "accepted", "{v}");
    assert_eq!(v["requests"], 110_000, "{v}");
    assert_eq!(v["before"], 200, "{v}");
    assert_eq!(v["after"], 200, "still logged in: {v}");
    assert_eq!(v["address_shown"], true, "{v}");
}

#[test]
fn an_unterminated_imap_line_is_cut_and_a_maximal_id_command_passes() {
    let (rig, _) = with_page();
    let p = &rig.proxy;
    let imaps = p.imaps_port.to_string();
    let v = abuse(p, &["imapline", "--imaps", &imaps, "--bytes", "20480"]);
    assert_eq!(v["closed"], true, "{v}");
    assert!(
        v["received"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "* BYE Line too long"),
        "{v}"
    );
    // Cut before twice the limit (8 KiB pre-login) was taken.
    assert!(v["sent"].as_u64().unwrap() < 20480, "{v}");
    let v = abuse(p, &["imapid", "--imaps", &imaps]);
    let lines: Vec<&str> = v["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(v["bytes"].as_u64().unwrap() > 31_000, "{v}");
    assert!(lines.iter().any(|l| l.starts_with("i1 OK")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("i2 OK")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("too long")), "{lines:?}");
}

#[test]
fn codes_an_api_call_brings_are_rationed_like_the_owners() {
    let mailbox = common::servers::Dovecot::start(&[(ADDR, common::rig::UPSTREAM_PW)]);
    let api_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[api]\nbind = \"127.0.0.1:{api_port}\"\non_web = false\n"),
    );
    proxy.run();
    wait_for_port(api_port, "api", &proxy.log_path());
    let p = &proxy;
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let secret = two_factor(p);
    let token = p.ok(&["api-token", "create", "portal"], None)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("https://127.0.0.1:{api_port}/api/v1/mailboxes/{ADDR}/2fa/disable");
    let disable = |code: &str| -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "10", "-i", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "Content-Type: application/json"])
            .args(["--data", &format!("{{\"code\":\"{code}\"}}")])
            .arg(&url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    };
    let device = common::secret_from_uri(&format!("otpauth://totp/x?secret={secret}"));
    let right = common::code(&device, 0);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let wrong = format!("{:06}", (i * 7919 + 13) % 1_000_000);
        assert_ne!(wrong, right);
        let (status, text) = disable(&wrong);
        statuses.push(status);
        if i < 5 {
            assert!(text.contains("\"invalid_code\""), "{text}");
        }
    }
    assert_eq!(statuses[5], 429, "{statuses:?}\n{}", p.log());
    assert!(
        statuses[..5].iter().all(|s| *s != 200 && *s != 429),
        "{statuses:?}"
    );
    let (status, text) = disable(&right);
    assert_eq!(status, 429, "the right code too: {text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("\"code_step_blocked\""), "{text}");
    let shown = p.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(shown["two_factor"]["enabled"], true, "{shown}");
    assert_eq!(notices_of_kind(p, "codes-guessed"), 1);
    // The history names the API and the operator.
    let h = history(p);
    assert!(
        h.iter().any(|r| r["listener"] == "api"
            && r["login"] == "api:portal"
            && r["credential"] == "code"),
        "{h:?}"
    );
}
