//! Behind a load balancer: listeners with `proxy_protocol_from` take the client's address
//! from the PROXY protocol header (v1 and v2) of a trusted balancer — a real HAProxy from
//! Debian here, connecting from 127.0.0.2 — and that address is what the throttle, the
//! access history and the upstream (Dovecot's `rip=`) see. A header from anyone else is
//! never trusted: the connection is closed before a greeting.

use crate::common;

use common::rig::{ADDR, MAIN, client};
use common::servers::{Dovecot, Haproxy, Proxy};
use serde_json::Value;

/// The claim of a client that sends no header.
const NO_CLAIM: &str = "192.0.2.1:1";

/// The balancer's address, the one `proxy_protocol_from` trusts.
const BALANCER: &str = "127.0.0.2";

/// A proxy whose imaps and pop3s listeners expect the header from BALANCER, which
/// forwards the client's address to Dovecot, with an address throttle of 3 failures.
fn started() -> (Proxy, Dovecot, Dovecot) {
    let mailbox = Dovecot::start(&[(ADDR, "x")]);
    let archive = Dovecot::start(&[(ADDR, "x")]);
    let mut proxy = Proxy::configure(&mailbox, &archive, "", "");
    let config = std::fs::read_to_string(proxy.config()).unwrap();
    let trusted = format!("proxy_protocol_from = [\"{BALANCER}\"]\n");
    let config = config
        .replace(
            "name = \"imaps\"\n",
            &format!("name = \"imaps\"\n{trusted}"),
        )
        .replace(
            "name = \"pop3s\"\n",
            &format!("name = \"pop3s\"\n{trusted}"),
        )
        .replace(
            "tls = \"none\"\n",
            "tls = \"none\"\nforward_client = true\n",
        );
    let config = format!(
        "{config}\n[throttle]\naddress_failures = 3\nname_failures = 100\nblock = \"10m\"\n"
    );
    std::fs::write(proxy.config(), config).unwrap();
    proxy.run();
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    (proxy, mailbox, archive)
}

/// An IMAPS login on `port` from `source`, after `header` claiming `claim`.
fn login(p: &Proxy, port: u16, source: &str, header: &str, claim: &str, password: &str) -> Value {
    let port = port.to_string();
    client(
        p,
        "proxied.py",
        &[
            "--port",
            &port,
            "--source",
            source,
            "--header",
            header,
            "--claim",
            claim,
            "--user",
            ADDR,
            "--password",
            password,
        ],
    )
}

/// The client addresses of the mailbox's access history, newest first.
fn history_clients(p: &Proxy) -> Vec<String> {
    p.ok(&["mailbox", "history", ADDR], None)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn through_haproxy_the_clients_address_is_throttled_recorded_and_forwarded() {
    let (p, mailbox, _archive) = started();
    let haproxy = Haproxy::start(
        BALANCER,
        &[
            (p.imaps_port, "send-proxy-v2"),
            (p.pop3s_port, "send-proxy"),
        ],
    );
    let (imaps, pop3s) = (haproxy.ports[0], haproxy.ports[1]);

    // IMAPS through HAProxy (v2) from 127.0.0.5: the history and Dovecot see 127.0.0.5.
    let ok = login(&p, imaps, "127.0.0.5", "none", NO_CLAIM, MAIN);
    assert_eq!(ok["ok"], true, "{ok}\n{}", p.log());
    // POP3S through HAProxy (v1) from 127.0.0.6.
    let pop3s = pop3s.to_string();
    let pop = client(
        &p,
        "pop3_client.py",
        &[
            "login",
            "--port",
            &pop3s,
            "--mode",
            "ssl",
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--source",
            "127.0.0.6",
        ],
    );
    assert_eq!(pop["ok"], true, "{pop}");
    let clients = history_clients(&p);
    assert_eq!(clients[..2], ["127.0.0.6", "127.0.0.5"], "{clients:?}");
    let log = std::fs::read_to_string(mailbox.dir.path().join("dovecot.log")).unwrap();
    for (service, ip) in [("imap-login", "127.0.0.5"), ("pop3-login", "127.0.0.6")] {
        assert!(
            log.lines().any(|l| l.contains(service)
                && l.contains("Login: user=")
                && l.contains(&format!("rip={ip}"))),
            "no {service} login with rip={ip}:\n{log}"
        );
    }

    // Three distinct wrong passwords from 127.0.0.7 block 127.0.0.7 — and only it: the
    // balancer's own address (127.0.0.2, the same for every client) is not what counts.
    for i in 0..3 {
        let wrong = login(
            &p,
            imaps,
            "127.0.0.7",
            "none",
            NO_CLAIM,
            &format!("wrong-{i}"),
        );
        assert_eq!(wrong["ok"], false, "{wrong}");
    }
    let blocked = login(&p, imaps, "127.0.0.7", "none", NO_CLAIM, MAIN);
    assert_eq!(blocked["ok"], false, "the blocked client got in: {blocked}");
    let other = login(&p, imaps, "127.0.0.8", "none", NO_CLAIM, MAIN);
    assert_eq!(
        other["ok"], true,
        "another client behind the balancer: {other}"
    );
    assert_eq!(history_clients(&p)[0], "127.0.0.8");
    assert!(
        p.log().contains("blocked client: connection closed"),
        "{}",
        p.log()
    );
}

#[test]
fn a_header_from_an_untrusted_address_is_never_believed() {
    let (p, _mailbox, _archive) = started();
    let before = history_clients(&p).len();
    // A forged v1 and v2 header straight from 127.0.0.1, not the balancer: closed before
    // the greeting, nothing recorded.
    for header in ["v1", "v2"] {
        let forged = login(&p, p.imaps_port, "127.0.0.1", header, "10.9.9.9:1234", MAIN);
        assert_eq!(forged["connected"], false, "{header}: {forged}");
    }
    // A plain client (no header) on that listener: closed too — it is for the balancer.
    let plain = login(&p, p.imaps_port, "127.0.0.1", "none", NO_CLAIM, MAIN);
    assert_eq!(plain["connected"], false, "{plain}");
    assert_eq!(history_clients(&p).len(), before);
    assert!(
        p.log().contains("not a trusted load balancer"),
        "{}",
        p.log()
    );
}

#[test]
fn the_trusted_balancer_must_send_a_valid_header() {
    let (p, _mailbox, _archive) = started();
    // From the balancer's address, each header version is believed, as it says.
    let v1 = login(&p, p.imaps_port, BALANCER, "v1", "192.0.2.44:5000", MAIN);
    assert_eq!(v1["ok"], true, "{v1}");
    let v2 = login(
        &p,
        p.imaps_port,
        BALANCER,
        "v2",
        "[2001:db8::45]:5000",
        MAIN,
    );
    assert_eq!(v2["ok"], true, "{v2}");
    assert_eq!(
        history_clients(&p)[..2],
        ["2001:db8::45", "192.0.2.44"],
        "{}",
        p.log()
    );
    // No header, or one that is not a PROXY header: closed.
    for header in ["none", "garbage"] {
        let bad = login(&p, p.imaps_port, BALANCER, header, NO_CLAIM, MAIN);
        assert_eq!(bad["connected"], false, "{header}: {bad}");
    }
    assert!(
        p.log().contains("no valid PROXY protocol header"),
        "{}",
        p.log()
    );
}
