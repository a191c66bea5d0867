//! serve's log as an operator reads it: no colour codes in a file, connection ids unique
//! across listeners, and with `log.format = "json"` one JSON object a line carrying the
//! connection's span (id, listener). No secret in either.

use crate::common;

use common::rig::{ADDR, MAIN, UPSTREAM_PW, client, imaps_login};
use common::servers::{Dovecot, Proxy};
use serde_json::Value;

fn logged_in_on_two_listeners(log: &str) -> Proxy {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let mut proxy = Proxy::configure(&mailbox, &mailbox, "", log);
    proxy.run();
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    assert!(imaps_login(&proxy, ADDR, MAIN));
    let pop = client(
        &proxy,
        "pop3_client.py",
        &[
            "login",
            "--port",
            &proxy.pop3s_port.to_string(),
            "--mode",
            "ssl",
            "--user",
            ADDR,
            "--password",
            MAIN,
        ],
    );
    assert_eq!(pop["ok"], true, "{pop}");
    proxy.stop();
    // The Dovecot stops when dropped; the proxy's log stays in its folder.
    drop(mailbox);
    proxy
}

#[test]
fn a_text_log_in_a_file_has_no_colour_codes_and_one_id_per_connection() {
    let proxy = logged_in_on_two_listeners("");
    let log = proxy.log();
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI escape codes in a file:\n{log}"
    );
    assert!(!log.contains(MAIN), "no password in the log");
    // Every connection id belongs to one listener (the harness's readiness probes and
    // the two logins open connections on every listener).
    let mut listeners_of = std::collections::BTreeMap::new();
    for l in log.lines() {
        let Some(rest) = l.split("conn{id=").nth(1) else {
            continue;
        };
        let id = rest.split(' ').next().unwrap_or("").to_owned();
        let listener = rest
            .split("listener=")
            .nth(1)
            .and_then(|x| x.split([' ', '}']).next())
            .unwrap_or("")
            .to_owned();
        listeners_of
            .entry(id)
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(listener);
    }
    assert!(listeners_of.len() >= 2, "{log}");
    for (id, listeners) in &listeners_of {
        assert_eq!(listeners.len(), 1, "connection id {id} on {listeners:?}");
    }
}

#[test]
fn a_json_log_is_one_object_a_line_with_the_connection_span() {
    let proxy = logged_in_on_two_listeners("\n[log]\nformat = \"json\"\n");
    let log = proxy.log();
    assert!(!log.contains(MAIN), "no password in the log");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{log}");
    for l in &lines {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(l.get(key).is_some(), "{key} in {l}");
        }
    }
    let in_sessions: Vec<&Value> = lines.iter().filter(|l| l.get("span").is_some()).collect();
    let mut by_listener = std::collections::BTreeMap::new();
    for l in &in_sessions {
        let span = &l["span"];
        by_listener
            .entry(span["listener"].as_str().unwrap_or("").to_owned())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(span["id"].to_string());
    }
    let imaps = by_listener.get("imaps").cloned().unwrap_or_default();
    let pop3s = by_listener.get("pop3s").cloned().unwrap_or_default();
    assert!(
        !imaps.is_empty() && !pop3s.is_empty(),
        "{by_listener:?}\n{log}"
    );
    assert!(
        imaps.is_disjoint(&pop3s),
        "one id per connection across listeners: {by_listener:?}"
    );
}

/// A client that names the server by IP address in its SNI (openssl s_client here; many
/// mail programs do when configured with an address) is no reason for a log line above
/// INFO: nothing is wrong.
#[test]
fn a_client_naming_the_server_by_ip_in_sni_logs_no_warning() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let mut proxy = Proxy::configure(&mailbox, &mailbox, "", "");
    proxy.run();
    for _ in 0..3 {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", proxy.imaps_port))
            .args(["-servername", "127.0.0.1", "-brief"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("CONNECTION ESTABLISHED"), "{said}");
    }
    proxy.stop();
    let log = proxy.log();
    assert!(!log.contains("Illegal SNI"), "{log}");
    // (The start-up's own warning — a self-signed certificate made — is not a client's.)
    let per_connection: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && !l.contains("self-signed"))
        .collect();
    assert!(
        per_connection.is_empty(),
        "no warning for an ordinary client: {per_connection:?}"
    );
}
