//! "Gestione account" in a real browser: the owner's whole flow driven in Debian's
//! headless Chromium (Playwright), against `serve` in front of a real Dovecot, with the
//! proxy checked in between by imaplib and smtplib. Screenshots of every page are saved
//! under the test output folder (target/tmp/web-screenshots).

use crate::common;

use std::process::Command;

use common::rig::{ADDR, MAIN, UPSTREAM_PW};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};
use serde_json::Value;

/// Validity 70 s and a 60 s postpone window: postponing opens 10 s after generation, and
/// postponing moves the expiry by more than a minute, so the page (HH:MM) shows it move.
const POLICY: &str = "app_password_validity = \"70s\"\npostpone_window = \"60s\"";

#[test]
fn the_owner_manages_the_mailbox_from_the_page_in_a_real_browser() {
    owner_flow(None);
}

/// The same page, the same flow, on a PostgreSQL store (fleet mode): nothing above the
/// store knows which it is.
#[test]
fn the_owner_flow_is_the_same_on_a_postgresql_store() {
    let pg = common::servers::Postgres::start();
    owner_flow(Some(&pg));
}

fn owner_flow(pg: Option<&common::servers::Postgres>) {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        POLICY,
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\n"),
    );
    if let Some(pg) = pg {
        proxy.use_postgres(pg, None);
    }
    proxy.run();
    wait_for_port(web_port, "web page", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));

    let shots = format!(
        "{}/web-screenshots{}",
        env!("CARGO_TARGET_TMPDIR"),
        if pg.is_some() { "-postgresql" } else { "" }
    );
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
    assert_eq!(v["same_device_shown_again"], true, "{v}");
    assert_eq!(s("after_enable_at"), "/account/2fa/recovery");
    assert!(
        s("enabled_message")
            .contains("i programmi di posta non accettano più la password principale"),
        "{v:#}"
    );
    assert_eq!(v["recovery_codes_shown"], 10);
    assert_eq!(v["recovery_file_matches"], true);
    assert_eq!(v["recovery_gone_after_reload"], true);
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
        s("last_use_shown").ends_with("· 127.0.0.1 · SMTP"),
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
    assert!(
        s("deactivated_message").starts_with("Password disattivata: i programmi di posta"),
        "{v:#}"
    );
    assert_eq!(v["no_app_password"], true);
    // Still listed, as deactivated, with when; the only one of the default configuration
    // called as the provider's guides call it.
    assert!(
        s("deactivated_listed").starts_with("password per programmi di posta — disattivata il "),
        "{v:#}"
    );
    assert_eq!(v["deactivated_password_imap"], false);
    // Storico accessi: the web logins and the mail logins, reasons in the owner's words.
    let rows: Vec<String> = serde_json::from_value(v["history_rows"].clone()).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("\tWeb\t") && r.contains("consentito")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("\tWeb\t") && r.contains("password errata")),
        "{rows:#?}"
    );
    // Accepted rows say what got in; times to the second; protocols as IMAP, SMTP, Web.
    assert!(
        rows.iter()
            .any(|r| r.contains("\tIMAP\tconsentito\tpassword per programmi di posta")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("\tWeb\tconsentito\tpassword principale")),
        "{rows:#?}"
    );
    for r in &rows {
        let time = r.split('\t').next().unwrap();
        assert_eq!(time.matches(':').count(), 2, "to the second: {r}");
        assert!(!r.contains("\timap\t") && !r.contains("\tWEB\t"), "{r}");
    }
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

/// The device shown to turn 2FA on stays the same however often the page is reloaded
/// or the button pressed again — the owner may have scanned it — until it is confirmed
/// or cancelled; the overview has two actions for a device that is on.
#[test]
fn a_device_being_set_up_is_not_replaced_by_a_reload() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\n"),
    );
    proxy.run();
    wait_for_port(web_port, "web page", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let b = Browser::new(web_port);
    let csrf = b.csrf("/login");
    let (status, location, _) = b.post(
        "/login",
        &[("csrf", &csrf), ("login", ADDR), ("password", MAIN)],
    );
    assert_eq!((status, location.as_str()), (303, "/account"));
    let csrf = b.csrf("/account");
    let uri = |b: &Browser| {
        let (_, _, body) = b.get("/account/2fa");
        let at = body.find("id=\"otpauth-uri\">")? + 17;
        Some(body[at..at + body[at..].find('<')?].replace("&#38;", "&"))
    };
    assert_eq!(uri(&b), None, "nothing waiting yet");
    let (status, location, _) = b.post("/account/2fa/enable", &[("csrf", &csrf)]);
    assert_eq!((status, location.as_str()), (303, "/account/2fa"));
    let first = uri(&b).expect("a device to scan");
    assert_eq!(
        uri(&b).as_deref(),
        Some(first.as_str()),
        "a reload shows the same"
    );
    b.post("/account/2fa/enable", &[("csrf", &csrf)]);
    assert_eq!(
        uri(&b).as_deref(),
        Some(first.as_str()),
        "so does pressing it again"
    );
    // The CLI too.
    let v = proxy.ok(&["2fa", "enable", ADDR], None);
    assert_eq!(v["otpauth_uri"].as_str(), Some(first.as_str()));
    // Cancelled: gone; a new start is a new device.
    let (status, location, _) = b.post("/account/2fa/cancel", &[("csrf", &csrf)]);
    assert_eq!((status, location.as_str()), (303, "/account"));
    assert_eq!(uri(&b), None);
    let events = proxy.ok(&["mailbox", "events", ADDR], None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "2fa.cancel"),
        "{events}"
    );
    b.post("/account/2fa/enable", &[("csrf", &csrf)]);
    let second = uri(&b).expect("a new device");
    assert_ne!(second, first);
    // Confirmed: on, and the overview offers two actions, not one button for both.
    let secret = common::secret_from_uri(&second);
    let (status, _, _) = b.post(
        "/account/2fa/confirm",
        &[("csrf", &csrf), ("code", &common::code(&secret, 0))],
    );
    assert_eq!(status, 303);
    let (_, _, overview) = b.get("/account");
    assert!(
        overview.contains("id=\"manage-2fa\">Disattiva</a>"),
        "{overview}"
    );
    assert!(
        overview.contains("id=\"replace-2fa\">Cambia dispositivo</a>"),
        "{overview}"
    );
}

/// The lost phone: turning 2FA on shows ten recovery codes once; each gets the owner in
/// once instead of the device's code (the page says how many are left, the owner is told),
/// stands in for it to replace the device, and a new set kills the old one.
#[test]
fn recovery_codes_get_the_owner_in_once_each() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\n"),
    );
    proxy.run();
    wait_for_port(web_port, "web page", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let password_step = |b: &Browser| {
        let csrf = b.csrf("/login");
        b.post(
            "/login",
            &[("csrf", &csrf), ("login", ADDR), ("password", MAIN)],
        )
    };
    let b = Browser::new(web_port);
    password_step(&b);
    let csrf = b.csrf("/account");
    b.post("/account/2fa/enable", &[("csrf", &csrf)]);
    let (_, _, page) = b.get("/account/2fa");
    let at = page.find("id=\"otpauth-uri\">").unwrap() + 17;
    let uri = page[at..at + page[at..].find('<').unwrap()].replace("&#38;", "&");
    let secret = common::secret_from_uri(&uri);
    let (status, location, _) = b.post(
        "/account/2fa/confirm",
        &[("csrf", &csrf), ("code", &common::code(&secret, 0))],
    );
    assert_eq!((status, location.as_str()), (303, "/account/2fa/recovery"));
    let codes = |page: &str| -> Vec<String> {
        let Some(at) = page.find("<pre id=\"recovery-codes\">") else {
            return Vec::new();
        };
        let rest = &page[at + 25..];
        rest[..rest.find("</pre>").unwrap()]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (_, _, page) = b.get("/account/2fa/recovery");
    let first = codes(&page);
    assert_eq!(first.len(), 10, "{page}");
    assert!(
        page.contains("download=\"codici-di-recupero.txt\""),
        "{page}"
    );
    let (_, _, again) = b.get("/account/2fa/recovery");
    assert!(codes(&again).is_empty(), "shown once");
    let shown = proxy.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(shown["two_factor"]["recovery_codes_left"], 10);
    assert!(
        !shown.to_string().contains(&first[0]),
        "the operator never sees a code"
    );

    // Another browser, the phone lost: the main password, then a recovery code.
    let lost = Browser::new(web_port);
    let (_, location, _) = password_step(&lost);
    assert_eq!(location, "/login/code");
    let csrf = lost.csrf("/login/code");
    let (status, location, _) = lost.post("/login/code", &[("csrf", &csrf), ("code", &first[0])]);
    assert_eq!((status, location.as_str()), (303, "/account"));
    let (_, _, overview) = lost.get("/account");
    assert!(overview.contains("ne restano 9"), "{overview}");
    // The same code again: refused.
    let other = Browser::new(web_port);
    password_step(&other);
    let csrf = other.csrf("/login/code");
    let (_, location, _) = other.post("/login/code", &[("csrf", &csrf), ("code", &first[0])]);
    assert_eq!(location, "/login/code", "a spent code opens nothing");
    let shown = proxy.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(shown["two_factor"]["recovery_codes_left"], 9);
    let notices = proxy.ok(&["mailbox", "notices", ADDR], None).to_string();
    assert!(notices.contains("codice di recupero"), "{notices}");

    // The device replaced on a recovery code: the new device waits for its first code.
    let csrf = lost.csrf("/account");
    let (status, location, _) = lost.post(
        "/account/2fa/replace",
        &[("csrf", &csrf), ("code", &first[1])],
    );
    assert_eq!((status, location.as_str()), (303, "/account/2fa"));
    let (_, _, page) = lost.get("/account/2fa");
    assert!(page.contains("id=\"otpauth-uri\""), "{page}");

    // A new set: the old codes no longer work, the new ones do.
    let (_, location, _) = lost.post("/account/2fa/recovery", &[("csrf", &csrf)]);
    assert_eq!(location, "/account/2fa/recovery");
    let (_, _, page) = lost.get("/account/2fa/recovery");
    let second = codes(&page);
    assert_eq!(second.len(), 10);
    let fresh = Browser::new(web_port);
    password_step(&fresh);
    let csrf = fresh.csrf("/login/code");
    let (_, location, _) = fresh.post("/login/code", &[("csrf", &csrf), ("code", &first[2])]);
    assert_eq!(location, "/login/code", "the old set is dead");
    let (_, location, _) = fresh.post("/login/code", &[("csrf", &csrf), ("code", &second[0])]);
    assert_eq!(location, "/account");
}

/// A browser-less client for the page (curl with a cookie jar), for what needs no
/// JavaScript: each request is a real HTTPS request to the running `serve`.
struct Browser {
    jar: tempfile::NamedTempFile,
    base: String,
}

impl Browser {
    fn new(port: u16) -> Self {
        Browser {
            jar: tempfile::NamedTempFile::new().unwrap(),
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    /// (status, Location header, body)
    fn request(&self, extra: &[&str], path: &str) -> (u16, String, String) {
        let jar = self.jar.path().to_str().unwrap();
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-b", jar, "-c", jar, "-D", "-"])
            .args(extra)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        (status, location, body.to_owned())
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        self.request(&[], path)
    }

    /// The CSRF token of the page at `path`.
    fn csrf(&self, path: &str) -> String {
        let (_, _, body) = self.get(path);
        let at = body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("a form on {path}: {body}"));
        body[at + 19..at + 19 + 32].to_owned()
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let mut args = Vec::new();
        for (k, v) in fields {
            args.push("--data-urlencode".to_owned());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request(&args, path)
    }
}

#[test]
fn a_multi_user_account_acts_under_its_name_and_a_migration_blocks_two_factor() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let web_port = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[web]\nbind = \"127.0.0.1:{web_port}\"\nhistory_page = 2\n"),
    );
    proxy.run();
    wait_for_port(web_port, "web page", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    proxy.ok(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "segreteria",
            "--password-stdin",
        ],
        Some("Segreteria-passw0rd"),
    );
    proxy.ok(&["mailbox", "migration", ADDR, "start"], None);

    let b = Browser::new(web_port);
    let csrf = b.csrf("/login");
    // Two wrong passwords and the right one: three history rows, two to a page.
    for password in ["wrong-1", "wrong-2", "Segreteria-passw0rd"] {
        let (status, location, _) = b.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("login", "segreteria"),
                ("password", password),
            ],
        );
        assert_eq!(status, 303);
        if password.starts_with("wrong") {
            // The message rides the redirect (the form has no session).
            assert_eq!(location, "/login?e=wrong");
        } else {
            assert_eq!(location, "/account");
        }
    }
    let (status, _, page) = b.get("/account");
    assert_eq!(status, 200);
    assert!(page.contains(ADDR), "the account sees its mailbox: {page}");
    assert!(page.contains("id=\"migration\""), "{page}");
    assert!(page.contains("in migrazione"), "{page}");
    // Turning 2FA on is refused, with the rule's reason, and nothing changes.
    let csrf = b.csrf("/account");
    let (status, location, _) = b.post("/account/2fa/enable", &[("csrf", &csrf)]);
    assert_eq!((status, location.as_str()), (303, "/account"));
    let (_, _, page) = b.get("/account");
    assert!(
        page.contains("id=\"flash\">La casella è in migrazione: la verifica in 2 passaggi non può essere attivata"),
        "the rule's reason, in Italian: {page}"
    );
    // An action under the account's name.
    let (status, _, _) = b.post(
        "/account/protocols",
        &[("csrf", &csrf), ("imap", "on"), ("smtp", "on")],
    );
    assert_eq!(status, 303);
    let events = proxy.ok(&["mailbox", "events", ADDR], None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "owner:segreteria" && e["action"] == "mailbox.protocols"),
        "{events:#}"
    );
    // Storico accessi, two rows a page: newest first, then older.
    let (_, _, first) = b.get("/account/history");
    assert!(
        first.contains("id=\"older\"") && !first.contains("id=\"newer\""),
        "{first}"
    );
    assert_eq!(first.matches("<tr><td>").count(), 2, "{first}");
    let (_, _, second) = b.get("/account/history?page=2");
    assert!(second.contains("id=\"newer\""), "{second}");
    assert!(second.contains("password errata"), "{second}");
    // A body over the limit is refused before anything reads it.
    let big = "x".repeat(20_000);
    let (status, _, _) = b.post("/account/protocols", &[("csrf", &csrf), ("pad", &big)]);
    assert_eq!(status, 413);
    // The account's password changes (from the CLI): the page's session ends.
    proxy.ok(
        &[
            "mailbox",
            "set-password",
            ADDR,
            "--user",
            "segreteria",
            "--password-stdin",
        ],
        Some("Segreteria-new-passw0rd"),
    );
    proxy.ok(&["mailbox", "show", ADDR], None);
    let mut ended = false;
    for _ in 0..100 {
        let (status, location, _) = b.get("/account");
        if status == 303 && location == "/login" {
            ended = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ended, "the session ended with the password change");
}
