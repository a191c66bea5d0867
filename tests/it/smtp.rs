//! The SMTP submission proxy end to end: real Dovecot submission behind `sentinella
//! serve`, relaying to a real SMTP sink (aiosmtpd), driven by Python's smtplib, swaks,
//! curl and raw sockets. Each test starts its own servers and stops them by PID.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::rig::{ADDR, MAIN, Rig, client, received, rig, two_factor_with_app_password};
use common::servers::Proxy;
use serde_json::Value;

const AUTH_FAILED: &str = "535 5.7.8 Authentication failed";
const TO: &str = "sdi01@pec.fatturapa.it";

/// A multipart PEC-style message carrying a FatturaPA XML e-invoice, CRLF throughout.
fn invoice_message() -> Vec<u8> {
    use base64::Engine;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<p:FatturaElettronica versione="FPR12" xmlns:p="http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2">
  <FatturaElettronicaHeader>
    <DatiTrasmissione>
      <IdTrasmittente><IdPaese>IT</IdPaese><IdCodice>01234567890</IdCodice></IdTrasmittente>
      <ProgressivoInvio>00001</ProgressivoInvio>
      <FormatoTrasmissione>FPR12</FormatoTrasmissione>
      <CodiceDestinatario>0000000</CodiceDestinatario>
      <PECDestinatario>cliente@pec.example.it</PECDestinatario>
    </DatiTrasmissione>
  </FatturaElettronicaHeader>
  <FatturaElettronicaBody>
    <DatiGenerali><DatiGeneraliDocumento><TipoDocumento>TD01</TipoDocumento><Divisa>EUR</Divisa>
      <Data>2026-11-22</Data><Numero>FT-2026/0042</Numero><ImportoTotaleDocumento>1220.00</ImportoTotaleDocumento>
    </DatiGeneraliDocumento></DatiGenerali>
    <DatiBeniServizi><DettaglioLinee><NumeroLinea>1</NumeroLinea><Descrizione>Consulenza – più attività</Descrizione>
      <PrezzoUnitario>1000.00</PrezzoUnitario><PrezzoTotale>1000.00</PrezzoTotale><AliquotaIVA>22.00</AliquotaIVA>
    </DettaglioLinee></DatiBeniServizi>
  </FatturaElettronicaBody>
</p:FatturaElettronica>
"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let body = format!(
        "From: {ADDR}\r\nTo: {TO}\r\nSubject: Invio File 01234567890_00001\r\nMessage-ID: <ft-2026-0042@pec.example.it>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"sep-42\"\r\n\r\n\
         --sep-42\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         In allegato la fattura elettronica n. FT-2026/0042.\r\n.leading dot line stays intact\r\n\r\n\
         --sep-42\r\nContent-Type: application/xml; name=\"IT01234567890_00001.xml\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"IT01234567890_00001.xml\"\r\n\r\n\
         {}\r\n--sep-42--\r\n",
        wrapped.join("\r\n")
    );
    body.into_bytes()
}

fn message_file(p: &Proxy, bytes: &[u8]) -> PathBuf {
    let path = p.dir.path().join(format!("message-{}.eml", bytes.len()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Sends the invoice with smtplib; returns the client's JSON report.
fn send(p: &Proxy, port: u16, mode: &str, user: &str, password: &str, mech: &str) -> Value {
    let file = message_file(p, &invoice_message());
    let port = port.to_string();
    client(
        p,
        "smtp_client.py",
        &[
            "send",
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
            "--from",
            ADDR,
            "--to",
            TO,
            "--file",
            file.to_str().unwrap(),
        ],
    )
}

fn raw(p: &Proxy, port: u16, mode: &str, lines: &[&str]) -> Vec<String> {
    let port = port.to_string();
    let mut args = vec!["raw", "--port", &port, "--mode", mode];
    args.extend_from_slice(lines);
    received(&client(p, "smtp_client.py", &args))
}

/// The reply to AUTH PLAIN (after EHLO) over SMTPS.
fn auth_reply(p: &Proxy, user: &str, password: &str) -> String {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let got = raw(
        p,
        p.submissions_port,
        "ssl",
        &["EHLO client.example", &format!("AUTH PLAIN {blob}")],
    );
    got.last().unwrap().clone()
}

/// What the sink received, without the Received: header Dovecot's submission adds.
fn delivered_without_trace(rig: &Rig) -> Vec<Vec<u8>> {
    rig.mailbox
        .delivered()
        .into_iter()
        .map(|m| {
            let text = m.as_slice();
            // Skip "Received: ..." and its folded continuation lines.
            let mut pos = 0;
            if text.starts_with(b"Received:") {
                loop {
                    let end = text[pos..].windows(2).position(|w| w == b"\r\n").unwrap() + pos + 2;
                    pos = end;
                    if !matches!(text.get(pos), Some(b' ') | Some(b'\t')) {
                        break;
                    }
                }
            }
            text[pos..].to_vec()
        })
        .collect()
}

/// Waits (bounded) for the sink to hold `n` messages.
fn wait_for_delivery(rig: &Rig, n: usize) {
    for _ in 0..100 {
        if rig.mailbox.delivered().len() >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "the sink has {} messages, expected {n}",
        rig.mailbox.delivered().len()
    );
}

#[test]
fn pec_invoice_with_the_app_password_arrives_byte_for_byte_and_the_main_password_gets_535() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    let refused = send(p, p.submissions_port, "ssl", ADDR, MAIN, "plain");
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["auth_code"], 535);
    assert_eq!(refused["auth_text"], "5.7.8 Authentication failed");
    let sent = send(p, p.submissions_port, "ssl", ADDR, &app, "plain");
    assert_eq!(sent["ok"], true, "{sent}");
    wait_for_delivery(&rig, 1);
    let got = delivered_without_trace(&rig);
    assert_eq!(got.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&got[0]),
        String::from_utf8_lossy(&invoice_message())
    );
    assert_eq!(got[0], invoice_message(), "byte for byte");
    let h = p.ok(&["mailbox", "history", ADDR], None);
    assert_eq!(h["history"][0]["protocol"], "smtp");
    assert_eq!(h["history"][0]["credential"], "app");
}

#[test]
fn main_password_sends_over_465_and_587_with_the_upstream_extensions() {
    let rig = rig("");
    let p = &rig.proxy;
    let implicit = send(p, p.submissions_port, "ssl", ADDR, MAIN, "plain");
    assert_eq!(implicit["ok"], true, "{implicit}");
    let ehlo: Vec<&str> = implicit["ehlo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for ext in [
        "8BITMIME",
        "CHUNKING",
        "PIPELINING",
        "SIZE",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(ehlo.contains(&ext), "{ext} not in {ehlo:?}");
    }
    assert!(!ehlo.contains(&"STARTTLS"));
    let starttls = send(p, p.submission_port, "starttls", ADDR, MAIN, "login");
    assert_eq!(starttls["ok"], true, "{starttls}");
    let before: Vec<&str> = starttls["ehlo_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        before.contains(&"STARTTLS") && !before.iter().any(|l| l.starts_with("AUTH")),
        "{before:?}"
    );
    wait_for_delivery(&rig, 2);
}

#[test]
fn auth_before_tls_and_mail_before_auth_are_refused() {
    let rig = rig("");
    let p = &rig.proxy;
    let got = raw(
        p,
        p.submission_port,
        "plain",
        &["EHLO client.example", "AUTH PLAIN AG1hcmlvAHNlY3JldA=="],
    );
    assert_eq!(
        got.last().unwrap(),
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    let got = raw(
        p,
        p.submissions_port,
        "ssl",
        &[
            "EHLO c",
            "MAIL FROM:<a@pec.example.it>",
            "RCPT TO:<b@x.it>",
            "DATA",
        ],
    );
    let tail: Vec<&str> = got.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(tail, ["530 5.7.0 Authentication required"; 3]);
    assert!(rig.mailbox.delivered().is_empty());
}

#[test]
fn expired_regenerated_deactivated_disabled_and_unknown_get_535() {
    let rig = rig("app_password_validity = \"4s\"");
    let p = &rig.proxy;
    let first = two_factor_with_app_password(p);
    assert!(auth_reply(p, ADDR, &first).starts_with("235 "));
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(auth_reply(p, ADDR, &first), AUTH_FAILED, "expired");
    let second = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = p.ok(&["app-password", "regenerate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth_reply(p, ADDR, &second), AUTH_FAILED, "replaced");
    assert!(auth_reply(p, ADDR, &third).starts_with("235 "));
    p.ok(&["mailbox", "protocols", ADDR, "--disable", "smtp"], None);
    assert_eq!(
        auth_reply(p, ADDR, &third),
        AUTH_FAILED,
        "protocol disabled"
    );
    p.ok(&["mailbox", "protocols", ADDR, "--enable", "smtp"], None);
    p.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    assert_eq!(auth_reply(p, ADDR, &third), AUTH_FAILED, "deactivated");
    assert_eq!(
        auth_reply(p, "nobody@pec.example.it", MAIN),
        AUTH_FAILED,
        "unknown"
    );
    let h = p.ok(&["mailbox", "history", ADDR], None).to_string();
    assert!(
        h.contains("protocol smtp is not enabled") && h.contains("expired on"),
        "{h}"
    );
}

#[test]
fn multi_user_account_sends_as_the_mailbox() {
    let rig = rig("");
    let p = &rig.proxy;
    p.ok(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "fatturazione",
            "--password-stdin",
        ],
        Some("User-passw0rd"),
    );
    let app = two_factor_with_app_password(p);
    let sent = send(p, p.submissions_port, "ssl", "fatturazione", &app, "plain");
    assert_eq!(sent["ok"], true, "{sent}");
    wait_for_delivery(&rig, 1);
}

#[test]
fn upstream_down_is_454_and_service_resumes() {
    let mut rig = rig("");
    // Learn the extensions first, as a running proxy would have.
    assert!(auth_reply(&rig.proxy, ADDR, MAIN).starts_with("235 "));
    rig.mailbox.stop();
    let answer = auth_reply(&rig.proxy, ADDR, MAIN);
    assert!(answer.starts_with("454 4.7.0"), "{answer}");
    rig.mailbox.restart();
    assert!(auth_reply(&rig.proxy, ADDR, MAIN).starts_with("235 "));
}

#[test]
fn commands_injected_before_the_starttls_handshake_are_discarded() {
    let rig = rig("");
    let p = &rig.proxy;
    let port = p.submission_port.to_string();
    let v = client(
        p,
        "smtp_client.py",
        &[
            "raw",
            "--port",
            &port,
            "--mode",
            "starttls",
            "--inject-after-starttls",
            "MAIL FROM:<evil@x.it>",
            "NOOP",
        ],
    );
    let got = received(&v);
    assert!(
        got.contains(&"220 2.0.0 Ready to start TLS".to_owned()),
        "{got:?}"
    );
    assert_eq!(
        got.last().unwrap(),
        "250 2.0.0 OK",
        "only the NOOP after TLS was answered: {got:?}"
    );
    assert!(
        !got.iter().any(|l| l.starts_with("530")),
        "the injected MAIL was executed: {got:?}"
    );
}

#[test]
fn foreign_authorization_identity_and_cancel() {
    use base64::Engine;
    let rig = rig("");
    let p = &rig.proxy;
    let blob = base64::engine::general_purpose::STANDARD
        .encode(format!("admin@pec.example.it\0{ADDR}\0{MAIN}"));
    let got = raw(
        p,
        p.submissions_port,
        "ssl",
        &["EHLO c", &format!("AUTH PLAIN {blob}")],
    );
    assert_eq!(got.last().unwrap(), AUTH_FAILED);
    let got = raw(p, p.submissions_port, "ssl", &["EHLO c", "AUTH LOGIN", "*"]);
    assert_eq!(got.last().unwrap(), "501 5.0.0 Authentication cancelled");
}

#[test]
fn swaks_sends_with_the_app_password_and_gets_535_with_the_main_one() {
    let rig = rig("");
    let p = &rig.proxy;
    let app = two_factor_with_app_password(p);
    let file = message_file(p, &invoice_message());
    let swaks = |password: &str| {
        Command::new("swaks")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &p.submissions_port.to_string(),
                "--tls-on-connect",
            ])
            .args([
                "--helo",
                "gestionale.example",
                "--timeout",
                "20",
                "--auth",
                "PLAIN",
            ])
            .args([
                "--auth-user",
                ADDR,
                "--auth-password",
                password,
                "--from",
                ADDR,
                "--to",
                TO,
            ])
            .arg("--data")
            .arg(&file)
            .output()
            .expect("run swaks")
    };
    let bad = swaks(MAIN);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains(AUTH_FAILED),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let good = swaks(&app);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    wait_for_delivery(&rig, 1);
}

#[test]
fn curl_sends_over_smtps_and_over_587_with_ssl_reqd() {
    let rig = rig("");
    let p = &rig.proxy;
    let file = message_file(p, &invoice_message());
    let curl = |url: String, password: &str| {
        Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "20",
                "--ssl-reqd",
                "--cacert",
            ])
            .arg(p.cert())
            .args([
                "--mail-from",
                ADDR,
                "--mail-rcpt",
                TO,
                "--user",
                &format!("{ADDR}:{password}"),
            ])
            .arg("--upload-file")
            .arg(&file)
            .arg(url)
            .output()
            .unwrap()
    };
    let ok = curl(format!("smtps://127.0.0.1:{}", p.submissions_port), MAIN);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = curl(format!("smtp://127.0.0.1:{}", p.submission_port), MAIN);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    wait_for_delivery(&rig, 2);
    let bad = curl(
        format!("smtps://127.0.0.1:{}", p.submissions_port),
        "wrong-password",
    );
    assert_eq!(
        bad.status.code(),
        Some(67),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
