//! The client's real address reaches the upstream: with `forward_client = true` the proxy
//! sends IMAP `ID` (x-originating-ip/port, x-connected-ip/port) and POP3 / SMTP `XCLIENT
//! ADDR= PORT=`; real Dovecot, which trusts the proxy (`login_trusted_networks`), logs
//! the client's address as `rip=`. The clients connect from 127.0.0.5 so that their
//! address differs from the proxy's 127.0.0.1.

use crate::common;

use common::rig::{ADDR, MAIN, client};
use common::servers::{Dovecot, Proxy};

const CLIENT_IP: &str = "127.0.0.5";

fn started(forward: bool) -> (Proxy, Dovecot, Dovecot) {
    let mailbox = Dovecot::start(&[(ADDR, "x")]);
    let archive = Dovecot::start(&[(ADDR, "x")]);
    let mut proxy = Proxy::configure(&mailbox, &archive, "", "");
    if forward {
        let config = std::fs::read_to_string(proxy.config()).unwrap();
        let config = config.replace(
            "tls = \"none\"\n",
            "tls = \"none\"\nforward_client = true\n",
        );
        std::fs::write(proxy.config(), config).unwrap();
    }
    proxy.run();
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    (proxy, mailbox, archive)
}

/// Logs in with IMAP, POP3 and SMTP from CLIENT_IP, each over implicit TLS.
fn log_in_everywhere(p: &Proxy) {
    let (imaps, pop3s, smtps) = (
        p.imaps_port.to_string(),
        p.pop3s_port.to_string(),
        p.submissions_port.to_string(),
    );
    let common = [
        "--mode",
        "ssl",
        "--user",
        ADDR,
        "--password",
        MAIN,
        "--source",
        CLIENT_IP,
    ];
    let imap = client(
        p,
        "imap_client.py",
        &[&["login", "--port", &imaps][..], &common].concat(),
    );
    assert_eq!(imap["ok"], true, "{imap}");
    let pop = client(
        p,
        "pop3_client.py",
        &[&["login", "--port", &pop3s][..], &common].concat(),
    );
    assert_eq!(pop["ok"], true, "{pop}");
    let message = p.dir.path().join("m.eml");
    std::fs::write(&message, "Subject: hi\r\n\r\nhello\r\n").unwrap();
    let send = [
        "send",
        "--port",
        &smtps,
        "--from",
        ADDR,
        "--to",
        "someone@example.org",
        "--file",
        message.to_str().unwrap(),
    ];
    let smtp = client(p, "smtp_client.py", &[&send[..], &common].concat());
    assert_eq!(smtp["ok"], true, "{smtp}");
}

/// Dovecot's login lines (imap-login, pop3-login, submission-login).
fn dovecot_logins(d: &Dovecot) -> Vec<String> {
    let log = std::fs::read_to_string(d.dir.path().join("dovecot.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("-login: ") && l.contains("Login: user="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dovecot_logs_the_clients_address_when_the_proxy_forwards_it() {
    let (p, mailbox, _archive) = started(true);
    log_in_everywhere(&p);
    let logins = dovecot_logins(&mailbox);
    for service in ["imap-login", "pop3-login", "submission-login"] {
        let line = logins
            .iter()
            .find(|l| l.contains(service))
            .unwrap_or_else(|| panic!("no {service} login in {logins:#?}"));
        assert!(line.contains(&format!("rip={CLIENT_IP}")), "{line}");
    }
    // The history on the proxy has it too (it always did).
    let h = p.ok(&["mailbox", "history", ADDR], None);
    assert!(
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["client"] == CLIENT_IP),
        "{h}"
    );
}

#[test]
fn without_forwarding_dovecot_sees_the_proxy() {
    let (p, mailbox, _archive) = started(false);
    log_in_everywhere(&p);
    let logins = dovecot_logins(&mailbox);
    assert!(logins.len() >= 3, "{logins:#?}");
    for line in &logins {
        assert!(line.contains("rip=127.0.0.1"), "{line}");
    }
}
