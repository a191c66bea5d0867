//! Hostile input against the running proxy and real Dovecot — and against the owner's
//! page (floods, HTTP/2 without ALPN, idle connections). Each test is named for what it
//! proves. (STARTTLS/STLS injection for each protocol is proven in tests/imap.rs,
//! tests/pop3.rs and tests/smtp.rs: `commands_injected_before_the_…_handshake_are_discarded`.)

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::rig::{
    ADDR, MAIN, Rig, UPSTREAM_PW, client, imap_raw, received, rig, rig_with,
    two_factor_with_app_password,
};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};
use serde_json::Value;

fn pop3_raw(p: &Proxy, port: u16, mode: &str, lines: &[&str]) -> Vec<String> {
    let port = port.to_string();
    let mut args = vec!["raw", "--port", &port, "--mode", mode];
    args.extend_from_slice(lines);
    received(&client(p, "pop3_client.py", &args))
}

fn smtp_raw(p: &Proxy, port: u16, mode: &str, lines: &[&str]) -> Vec<String> {
    let port = port.to_string();
    let mut args = vec!["raw", "--port", &port, "--mode", mode];
    args.extend_from_slice(lines);
    received(&client(p, "smtp_client.py", &args))
}

fn probe(p: &Proxy, port: u16, extra: &[&str]) -> Value {
    let port = port.to_string();
    let mut args = vec!["--port", &port];
    args.extend_from_slice(extra);
    client(p, "tls_probe.py", &args)
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A full login over IMAPS still works: the proxy is healthy.
fn healthy(p: &Proxy) {
    let got = imap_raw(p, p.imaps_port, "ssl", &[&format!("h LOGIN {ADDR} {MAIN}")]);
    assert!(
        got.last().unwrap().starts_with("h OK"),
        "the proxy is not healthy: {got:?}\n{}",
        p.log()
    );
}

#[test]
fn cleartext_login_before_tls_reads_the_same_for_right_and_wrong_passwords() {
    let rig = rig("");
    let p = &rig.proxy;
    let (right, wrong) = (MAIN, "wrong-password");
    let a = imap_raw(
        p,
        p.imap_port,
        "plain",
        &[&format!("a LOGIN {ADDR} {right}")],
    );
    let b = imap_raw(
        p,
        p.imap_port,
        "plain",
        &[&format!("a LOGIN {ADDR} {wrong}")],
    );
    assert_eq!(a, b);
    assert!(
        a.last().unwrap().starts_with("a NO [PRIVACYREQUIRED]"),
        "{a:?}"
    );
    let a = pop3_raw(
        p,
        p.pop3_port,
        "plain",
        &[&format!("USER {ADDR}"), &format!("PASS {right}")],
    );
    let b = pop3_raw(
        p,
        p.pop3_port,
        "plain",
        &[&format!("USER {ADDR}"), &format!("PASS {wrong}")],
    );
    assert_eq!(a, b);
    let a = smtp_raw(
        p,
        p.submission_port,
        "plain",
        &[
            "EHLO c",
            &format!("AUTH PLAIN {}", b64(&format!("\0{ADDR}\0{right}"))),
        ],
    );
    let b = smtp_raw(
        p,
        p.submission_port,
        "plain",
        &[
            "EHLO c",
            &format!("AUTH PLAIN {}", b64(&format!("\0{ADDR}\0{wrong}"))),
        ],
    );
    assert_eq!(a, b);
    assert_eq!(
        a.last().unwrap(),
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    // Nothing was even evaluated.
    let h = p.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(h["history"].as_array().unwrap().len(), 0, "{h}");
}

#[test]
fn commands_that_need_a_login_are_refused_before_it() {
    let rig = rig("");
    let p = &rig.proxy;
    let got = imap_raw(
        p,
        p.imaps_port,
        "ssl",
        &[
            "a SELECT INBOX",
            "b FETCH 1 BODY[]",
            "c APPEND INBOX {3+}\r\nabc",
        ],
    );
    assert!(got[1..].iter().all(|l| l.contains(" BAD ")), "{got:?}");
    let got = pop3_raw(p, p.pop3s_port, "ssl", &["STAT", "RETR 1", "DELE 1"]);
    assert!(got[1..].iter().all(|l| l == "-ERR Log in first"), "{got:?}");
    let got = smtp_raw(
        p,
        p.submissions_port,
        "ssl",
        &[
            "EHLO c",
            "MAIL FROM:<a@b.it>",
            "RCPT TO:<c@d.it>",
            "DATA",
            "BDAT 3 LAST",
        ],
    );
    assert!(
        got.iter()
            .rev()
            .take(4)
            .all(|l| l == "530 5.7.0 Authentication required"),
        "{got:?}"
    );
    assert!(rig.mailbox.delivered().is_empty());
    healthy(p);
}

#[test]
fn oversized_lines_and_literals_are_refused_and_the_proxy_stays_healthy() {
    let rig = rig("");
    let p = &rig.proxy;
    let got = imap_raw(p, p.imaps_port, "ssl", &["a LOGIN {100000}", "b NOOP"]);
    assert_eq!(
        got[1], "a BAD Literal too large or not allowed here",
        "{got:?}"
    );
    assert_eq!(
        got[2], "b OK NOOP completed",
        "the connection goes on after a refused literal"
    );
    let long = format!("a NOOP {}", "x".repeat(20_000));
    let got = imap_raw(p, p.imaps_port, "ssl", &[&long]);
    assert!(got.iter().any(|l| l == "* BYE Line too long"), "{got:?}");
    // A line far past what the sockets buffer (the client's send buffer small): the
    // client is still sending when the proxy answers, and must still read the answer (a close with its bytes unread
    // would reset the connection under its write).
    for pad in ["300000", "900000"] {
        let got = imap_raw(
            p,
            p.imaps_port,
            "ssl",
            &["--sndbuf", "8192", "--pad", pad, "a NOOP "],
        );
        assert!(
            got.iter().any(|l| l == "* BYE Line too long"),
            "{pad}: {got:?}"
        );
    }
    let got = pop3_raw(
        p,
        p.pop3s_port,
        "ssl",
        &[&format!("USER {}", "u".repeat(20_000))],
    );
    assert_eq!(got[1], "-ERR Line too long");
    let got = smtp_raw(
        p,
        p.submissions_port,
        "ssl",
        &[&format!("EHLO {}", "h".repeat(20_000))],
    );
    assert!(got[1].starts_with("500 5.5.6"), "{got:?}");
    healthy(p);
}

#[test]
fn literal_length_overflow_is_a_syntax_error_not_an_allocation() {
    let rig = rig("");
    let p = &rig.proxy;
    for literal in [
        "{4294967295}",
        "{4294967296}",
        "{18446744073709551616}",
        "{}",
        "{-1}",
        "{4294967295+}",
    ] {
        let got = imap_raw(
            p,
            p.imaps_port,
            "ssl",
            &[&format!("a LOGIN {literal}"), "b NOOP"],
        );
        assert!(
            !got.iter().any(|l| l.starts_with('+')),
            "{literal}: a continuation was offered: {got:?}"
        );
        assert!(
            got.iter()
                .any(|l| l.contains("BAD") || l.starts_with("* BYE") || l == "<closed>"),
            "{literal}: {got:?}"
        );
    }
    healthy(p);
}

#[test]
fn malformed_plain_foreign_authzid_and_bad_names_are_refused() {
    let rig = rig("");
    let p = &rig.proxy;
    let bad_nul = [
        format!("{ADDR}\0{MAIN}"),
        format!("\0\0{ADDR}\0{MAIN}"),
        format!("\0{ADDR}\0{MAIN}\0"),
    ];
    for blob in &bad_nul {
        let got = imap_raw(
            p,
            p.imaps_port,
            "ssl",
            &[&format!("a AUTHENTICATE PLAIN {}", b64(blob))],
        );
        assert_eq!(got[1], "a BAD Malformed PLAIN response", "{blob:?}");
        let got = smtp_raw(
            p,
            p.submissions_port,
            "ssl",
            &["EHLO c", &format!("AUTH PLAIN {}", b64(blob))],
        );
        assert!(got.last().unwrap().starts_with("501 "), "{got:?}");
    }
    // Right password, someone else's authorization identity: refused everywhere.
    let foreign = b64(&format!("admin@pec.example.it\0{ADDR}\0{MAIN}"));
    let got = imap_raw(
        p,
        p.imaps_port,
        "ssl",
        &[&format!("a AUTHENTICATE PLAIN {foreign}")],
    );
    assert_eq!(got[1], "a NO [AUTHENTICATIONFAILED] Authentication failed");
    let got = pop3_raw(p, p.pop3s_port, "ssl", &[&format!("AUTH PLAIN {foreign}")]);
    assert_eq!(got[1], "-ERR [AUTH] Authentication failed");
    // A control character in the name (an IMAP literal may carry one).
    let name = "mario\u{1}rossi@pec.example.it";
    let got = imap_raw(
        p,
        p.imaps_port,
        "ssl",
        &[&format!("a LOGIN {{{}+}}\r\n{name} {MAIN}", name.len())],
    );
    assert_eq!(
        got.last().unwrap(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed",
        "{got:?}"
    );
    // A name that is not UTF-8 (inside base64, so the line itself is ASCII).
    let not_utf8 = {
        use base64::Engine;
        let mut raw = b"\0mario\xff\xfe@pec.example.it\0".to_vec();
        raw.extend_from_slice(MAIN.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    let got = imap_raw(
        p,
        p.imaps_port,
        "ssl",
        &[&format!("a AUTHENTICATE PLAIN {not_utf8}")],
    );
    assert_eq!(got[1], "a NO [AUTHENTICATIONFAILED] Authentication failed");
    let got = smtp_raw(
        p,
        p.submissions_port,
        "ssl",
        &["EHLO c", &format!("AUTH PLAIN {not_utf8}")],
    );
    assert_eq!(got.last().unwrap(), "535 5.7.8 Authentication failed");
    healthy(p);
}

#[test]
fn unknown_user_wrong_password_and_main_password_under_2fa_read_alike() {
    let rig = rig("");
    let p = &rig.proxy;
    two_factor_with_app_password(p);
    let cases = [
        ("nobody@pec.example.it", MAIN),
        (ADDR, "wrong-password"),
        (ADDR, MAIN),
    ];
    let imap: Vec<String> = cases
        .iter()
        .map(|(u, pw)| imap_raw(p, p.imaps_port, "ssl", &[&format!("a LOGIN {u} {pw}")])[1].clone())
        .collect();
    assert!(
        imap.iter()
            .all(|l| l == "a NO [AUTHENTICATIONFAILED] Authentication failed"),
        "{imap:?}"
    );
    let pop3: Vec<String> = cases
        .iter()
        .map(|(u, pw)| {
            pop3_raw(
                p,
                p.pop3s_port,
                "ssl",
                &[&format!("USER {u}"), &format!("PASS {pw}")],
            )[2]
            .clone()
        })
        .collect();
    assert!(
        pop3.iter()
            .all(|l| l == "-ERR [AUTH] Authentication failed"),
        "{pop3:?}"
    );
    let smtp: Vec<String> = cases
        .iter()
        .map(|(u, pw)| {
            smtp_raw(
                p,
                p.submissions_port,
                "ssl",
                &[
                    "EHLO c",
                    &format!("AUTH PLAIN {}", b64(&format!("\0{u}\0{pw}"))),
                ],
            )
            .last()
            .unwrap()
            .clone()
        })
        .collect();
    assert!(
        smtp.iter().all(|l| l == "535 5.7.8 Authentication failed"),
        "{smtp:?}"
    );
    // The reasons differ only in the history.
    let h = p.ok(&["mailbox", "history", ADDR], None).to_string();
    assert!(
        h.contains("main password used while two-step verification is on")
            && h.contains("not the current app password")
    );
}

#[test]
fn a_regenerated_password_is_refused_even_while_its_verification_is_cached() {
    let rig = rig("");
    let p = &rig.proxy;
    let old = two_factor_with_app_password(p);
    let login =
        |pw: &str| imap_raw(p, p.imaps_port, "ssl", &[&format!("a LOGIN {ADDR} {pw}")])[1].clone();
    assert!(login(&old).starts_with("a OK"));
    assert!(
        login(&old).starts_with("a OK"),
        "second time from the cache"
    );
    let new = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        login(&old),
        "a NO [AUTHENTICATIONFAILED] Authentication failed"
    );
    assert!(login(&new).starts_with("a OK"));
}

#[test]
fn a_flood_of_500_connections_then_a_legitimate_login_succeeds() {
    let rig = rig("");
    let p = &rig.proxy;
    // 500 sockets from five other loopback addresses (100 each, the per-address limit),
    // holding their connections open without a byte.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for i in 0..500u32 {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(format!("127.0.0.{}:0", 2 + i / 100).parse().unwrap())
                .unwrap();
            held.push(
                sock.connect(format!("127.0.0.1:{}", p.imaps_port).parse().unwrap())
                    .await
                    .unwrap(),
            );
        }
        held
    });
    assert_eq!(held.len(), 500);
    healthy(p);
    // A 101st connection from one of those addresses is turned away at once.
    let extra = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = sock
            .connect(format!("127.0.0.1:{}", p.imaps_port).parse().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await
    });
    assert!(
        matches!(extra, Ok(Ok(0)) | Ok(Err(_))),
        "the 101st connection was not closed: {extra:?}"
    );
    drop(held);
}

#[test]
fn slowloris_before_login_is_cut_off_at_the_preauth_deadline() {
    let rig = rig_with("", "preauth_timeout = \"2s\"");
    let p = &rig.proxy;
    let mut s = TcpStream::connect(("127.0.0.1", p.imap_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(15) {
        // One byte of a never-ending command every 200 ms.
        if s.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "still open after 15 s: {text}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        start.elapsed()
    );
    assert!(text.contains("* BYE Autologout"), "{text}");
    healthy(p);
}

#[test]
fn legacy_tls_versions_are_refused() {
    let rig = rig("");
    let p = &rig.proxy;
    for port in [p.imaps_port, p.pop3s_port, p.submissions_port] {
        let old = probe(p, port, &["--min", "TLSv1", "--max", "TLSv1_1"]);
        assert_eq!(old["ok"], false, "TLS 1.0/1.1 accepted on {port}: {old}");
        let v12 = probe(p, port, &["--min", "TLSv1_2", "--max", "TLSv1_2"]);
        assert_eq!(
            (v12["ok"].as_bool(), v12["version"].as_str()),
            (Some(true), Some("TLSv1.2")),
            "{v12}"
        );
        let v13 = probe(p, port, &[]);
        assert_eq!(v13["version"], "TLSv1.3");
    }
}

#[test]
fn alpn_must_name_the_listener_protocol_alpaca() {
    let rig = rig("");
    let p = &rig.proxy;
    for (port, right, wrong) in [
        (p.imaps_port, "imap", "pop3"),
        (p.pop3s_port, "pop3", "imap"),
        (p.submissions_port, "smtp", "http/1.1"),
    ] {
        let good = probe(p, port, &["--alpn", right]);
        assert_eq!(
            (good["ok"].as_bool(), good["alpn"].as_str()),
            (Some(true), Some(right)),
            "{good}"
        );
        let bad = probe(p, port, &["--alpn", wrong]);
        assert_eq!(
            bad["ok"], false,
            "{wrong} accepted on the {right} port: {bad}"
        );
        let none = probe(p, port, &[]);
        assert_eq!(none["ok"], true, "clients without ALPN are served");
    }
}

#[test]
fn secrets_never_appear_in_the_trace_log() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    let wrong = "Wrong-Secret-9137";
    for pw in [MAIN, app.as_str(), wrong] {
        imap_raw(p, p.imaps_port, "ssl", &[&format!("a LOGIN {ADDR} {pw}")]);
        imap_raw(
            p,
            p.imaps_port,
            "ssl",
            &[&format!(
                "a AUTHENTICATE PLAIN {}",
                b64(&format!("\0{ADDR}\0{pw}"))
            )],
        );
        pop3_raw(
            p,
            p.pop3s_port,
            "ssl",
            &[&format!("USER {ADDR}"), &format!("PASS {pw}")],
        );
        smtp_raw(
            p,
            p.submissions_port,
            "ssl",
            &[
                "EHLO c",
                &format!("AUTH PLAIN {}", b64(&format!("\0{ADDR}\0{pw}"))),
            ],
        );
    }
    let log = p.log();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is not at trace level"
    );
    assert!(
        log.contains("login refused") && log.contains("login accepted"),
        "the logins were not logged"
    );
    let master = std::fs::read_to_string(p.dir.path().join("master.pass")).unwrap();
    for secret in [
        MAIN,
        app.as_str(),
        &app.replace('-', ""),
        wrong,
        master.trim(),
    ] {
        assert!(!log.contains(secret), "{secret:?} found in the log");
        assert!(
            !log.contains(&b64(&format!("\0{ADDR}\0{secret}"))),
            "base64 of {secret:?} found in the log"
        );
    }
}

#[test]
fn a_client_sending_bad_commands_before_login_is_cut_off_after_the_limit() {
    let rig = rig_with("", "bad_commands_before_login = 4");
    let p = &rig.proxy;
    let bad: Vec<String> = (0..6).map(|i| format!("a{i} SELECT INBOX")).collect();
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let got = imap_raw(p, p.imaps_port, "ssl", &bad);
    let byes: Vec<&String> = got.iter().filter(|l| l.starts_with("* BYE")).collect();
    assert_eq!(byes, ["* BYE Too many invalid commands"], "{got:?}");
    assert_eq!(
        got.iter().filter(|l| l.contains(" BAD ")).count(),
        4,
        "{got:?}"
    );
    let got = pop3_raw(
        p,
        p.pop3s_port,
        "ssl",
        &["STAT", "LIST", "RETR 1", "DELE 1", "NOOP"],
    );
    assert!(
        got.contains(&"-ERR Too many invalid commands".to_owned()),
        "{got:?}"
    );
    let got = smtp_raw(
        p,
        p.submissions_port,
        "ssl",
        &[
            "EHLO x",
            "MAIL FROM:<a@b.it>",
            "RCPT TO:<a@b.it>",
            "DATA",
            "VRFY x",
            "NOOP",
        ],
    );
    assert!(
        got.contains(&"421 4.7.0 Too many invalid commands, closing connection".to_owned()),
        "{got:?}"
    );
    // The proxy goes on serving.
    healthy(p);
}

/// The rig with the owner's page (`[web]` lines `web`) and the admin listener on ports of
/// their own, `serve` run under the file limit `files` if given; with the page's and the
/// admin listener's ports.
fn web_rig(web: &str, files: Option<u32>) -> (Rig, u16, u16) {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let (web_port, admin_port) = (free_port(), free_port());
    let sections = format!(
        "\n[web]\nbind = \"127.0.0.1:{web_port}\"\n{web}\n\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"
    );
    let mut proxy = Proxy::configure(&mailbox, &archive, "", &sections);
    match files {
        Some(n) => proxy.run_with_file_limit(n),
        None => proxy.run(),
    }
    wait_for_port(web_port, "web page", &proxy.log_path());
    wait_for_port(admin_port, "admin listener", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let rig = Rig {
        proxy,
        mailbox,
        archive,
    };
    (rig, web_port, admin_port)
}

/// tests/clients/web_probe.py `command` against the page on `port`, from `extra`.
fn web_probe(p: &Proxy, command: &str, port: u16, extra: &[&str]) -> Value {
    let port = port.to_string();
    let mut args = vec![command, "--port", &port];
    args.extend_from_slice(extra);
    client(p, "web_probe.py", &args)
}

/// A flood of connections held open by web_probe.py; killed (by PID) when dropped.
struct Flood(std::process::Child);

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_flood_of_idle_tls_connections_to_the_page_leaves_imaps_and_the_page_usable() {
    // The file limit most deployments start with, and more idle page connections from one
    // address than it allows: unbounded, they took every descriptor, and IMAPS and the
    // page stopped accepting ("Too many open files").
    let (rig, web, admin) = web_rig("", Some(1024));
    let p = &rig.proxy;
    let mut flood = Flood(
        std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/web_probe.py"
            ))
            .args(["flood", "--port", &web.to_string(), "--count", "1100"])
            .args(["--source", "127.0.0.1", "--cafile"])
            .arg(p.cert())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{}", p.log()));
    // web.max_connections_per_address: 16 got in; the rest were closed at accept.
    let held = v["held"].as_u64().unwrap();
    assert!((1..=16).contains(&held), "{v}");
    assert!(v["refused"].as_u64().unwrap() >= 1000, "{v}");

    // Meanwhile, from another address: an IMAPS login and the page.
    let imaps = p.imaps_port.to_string();
    let login = client(
        p,
        "imap_client.py",
        &[
            "login",
            "--port",
            &imaps,
            "--mode",
            "ssl",
            "--source",
            "127.0.0.2",
            "--user",
            ADDR,
            "--password",
            MAIN,
        ],
    );
    assert_eq!(login["ok"], true, "{login}\n{}", p.log());
    let page = web_probe(p, "get", web, &["--source", "127.0.0.2"]);
    assert_eq!(page["status"], 200, "{page}");
    // The refusals are counted.
    let mut metrics = String::new();
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    s.read_to_string(&mut metrics).unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sentinella_web_connections_refused_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(refused >= 1000, "{refused}");
    drop(flood.0.stdin.take());
}

#[test]
fn the_page_does_not_serve_http2_to_a_client_that_did_not_negotiate_it() {
    let (rig, web, _) = web_rig("", None);
    let p = &rig.proxy;
    // No ALPN, then the HTTP/2 preface: the connection is closed, no HTTP/2 frame sent.
    let v = web_probe(p, "h2", web, &[]);
    assert_eq!(v["alpn"], Value::Null, "{v}");
    assert_eq!(v["h2_settings"], false, "served HTTP/2: {v}");
    assert_eq!(v["closed"], true, "{v}");
    // Offering only h2 fails the handshake (the page's ALPN is http/1.1 alone).
    let h2 = probe(p, web, &["--alpn", "h2"]);
    assert_eq!(h2["ok"], false, "{h2}");
    // HTTP/1.1 is served.
    assert_eq!(web_probe(p, "get", web, &[])["status"], 200);
}

#[test]
fn an_idle_connection_to_the_page_is_closed_at_the_header_timeout() {
    let (rig, web, _) = web_rig("header_timeout = \"2s\"", None);
    let p = &rig.proxy;
    // The handshake done, not a byte sent.
    let v = web_probe(p, "idle", web, &["--wait", "20"]);
    assert_eq!(v["closed"], true, "still open after 20 s: {v}");
    assert!(v["after"].as_f64().unwrap() < 15.0, "{v}");
    assert_eq!(web_probe(p, "get", web, &[])["status"], 200);
}
