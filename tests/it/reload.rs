//! SIGHUP with a changed configuration file: the settings that change safely (limits,
//! throttle, policy, notices) reach the next sessions; a listener change, which needs a
//! restart, is named in the log and not half-applied; a broken file changes nothing; an
//! IMAP session open across the reload goes on. (The certificate part of SIGHUP is
//! tests/imap.rs's.)

use crate::common;

use common::held::{Held, noop_answered};
use common::rig::{MAIN, imap_raw, rig};
use common::servers::free_port;

/// The answers to `n` commands that are bad before login, on a fresh IMAPS connection.
fn bad_commands(p: &common::servers::Proxy, n: usize) -> Vec<String> {
    let lines: Vec<String> = (0..n).map(|i| format!("b{i} SELECT INBOX")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    imap_raw(p, p.imaps_port, "ssl", &lines)
}

fn cut_off(got: &[String]) -> bool {
    got.iter().any(|l| l == "* BYE Too many invalid commands")
}

#[test]
fn sighup_applies_safe_settings_names_what_needs_a_restart_and_keeps_sessions() {
    let mut rig = rig("");
    // The default limit (10): five bad commands are answered, nothing more.
    assert!(!cut_off(&bad_commands(&rig.proxy, 5)));
    let held = Held::open(
        &rig.proxy,
        "imap",
        MAIN,
        &["--noop-after", "3", "--hold", "5"],
    );

    // A lower limit, and the imaps listener moved to another port.
    let config = std::fs::read_to_string(rig.proxy.config()).unwrap();
    let (old_port, new_port) = (rig.proxy.imaps_port, free_port());
    let edited = config
        .replace("[limits]\n", "[limits]\nbad_commands_before_login = 3\n")
        .replace(
            &format!("bind = \"127.0.0.1:{old_port}\""),
            &format!("bind = \"127.0.0.1:{new_port}\""),
        );
    assert_ne!(edited, config);
    std::fs::write(rig.proxy.config(), &edited).unwrap();
    assert!(rig.proxy.signal("HUP"), "{}", rig.proxy.log());
    let p = &rig.proxy;
    let log = p.log();
    assert!(log.contains("SIGHUP: settings reloaded"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("needs a restart") && l.contains("key=\"listener\"")),
        "{log}"
    );
    // The new limit reaches the next connection: cut off after the third.
    let got = bad_commands(p, 5);
    assert!(cut_off(&got), "{got:?}");
    assert_eq!(
        got.iter().filter(|l| l.contains(" BAD ")).count(),
        3,
        "{got:?}"
    );
    // The listener stays where it was (old port serves — that is where bad_commands
    // connected — and nothing listens on the new one).
    assert!(std::net::TcpStream::connect(("127.0.0.1", new_port)).is_err());

    // The session logged in before the reload goes on: its NOOP after it is answered.
    let report = held.finish();
    assert!(noop_answered(&report), "{report}");

    // A file that does not parse: logged, the running settings kept, the proxy alive.
    std::fs::write(
        p.config(),
        edited.replace("[limits]\n", "[limits]\nno_such_key = 1\n"),
    )
    .unwrap();
    assert!(rig.proxy.signal("HUP"), "{}", rig.proxy.log());
    let p = &rig.proxy;
    assert!(
        p.log().contains("keeping the running configuration"),
        "{}",
        p.log()
    );
    assert!(cut_off(&bad_commands(p, 5)));
    assert_eq!(rig.proxy.stop(), Some(0), "{}", rig.proxy.log());
}
