//! The admin listener as a Prometheus agent and a service manager see it: /metrics in the
//! text format with counters that move with real logins, /healthz and /readyz.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::rig::{ADDR, MAIN, UPSTREAM_PW, client, imaps_login};
use common::servers::{Dovecot, Proxy, free_port, wait_for_port};

fn get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The value of the sample `line` (name and labels exactly), or 0.
fn sample(metrics: &str, line: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_with_real_logins_and_health_answers() {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let admin = free_port();
    let mut proxy = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("bad_commands_before_login = 2\n\n[admin]\nbind = \"127.0.0.1:{admin}\"\n"),
    );
    proxy.run();
    wait_for_port(admin, "admin", &proxy.log_path());
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));

    let imap = |password: &str| imaps_login(&proxy, ADDR, password);
    assert!(!imap("wrong-password"));
    assert!(imap(MAIN));
    let (code, before) = get(admin, "/metrics");
    assert_eq!(code, 200);
    let accepted = r#"sentinella_logins_total{protocol="imap",listener="imaps",result="accepted",reason="none"}"#;
    let refused = r#"sentinella_logins_total{protocol="imap",listener="imaps",result="refused",reason="wrong_password"}"#;
    assert_eq!(sample(&before, accepted), 1.0, "{before}");
    assert_eq!(sample(&before, refused), 1.0, "{before}");
    assert_eq!(
        sample(&before, "sentinella_verification_cache_misses_total"),
        2.0
    );
    assert_eq!(
        sample(&before, "sentinella_hash_wait_seconds_count"),
        2.0,
        "{before}"
    );
    assert_eq!(
        sample(
            &before,
            r#"sentinella_upstream_login_seconds_count{protocol="imap"}"#
        ),
        1.0,
        "{before}"
    );
    // At least the IMAP login's connection (SMTP sessions probe the upstream too).
    assert!(
        sample(&before, "sentinella_upstream_connect_seconds_count") >= 1.0,
        "{before}"
    );
    assert!(
        sample(&before, "sentinella_relayed_bytes_total") > 0.0,
        "{before}"
    );
    // The sessions ended (the relay's end follows the client's logout by a moment).
    let mut open = f64::NAN;
    for _ in 0..40 {
        open = sample(
            &get(admin, "/metrics").1,
            r#"sentinella_sessions_open{protocol="imap"}"#,
        );
        if open == 0.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(open, 0.0);
    assert_eq!(sample(&before, "sentinella_notice_outbox_pending"), 0.0);
    // The same password again: a cache hit, no argon2id.
    assert!(imap(MAIN));
    let (_, after) = get(admin, "/metrics");
    assert_eq!(sample(&after, accepted), 2.0);
    assert_eq!(
        sample(&after, "sentinella_verification_cache_hits_total"),
        1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "sentinella_hash_wait_seconds_count"), 2.0);
    // Bad commands before login: the connection is closed, and counted.
    let _ = client(
        &proxy,
        "imap_client.py",
        &[
            "raw",
            "--port",
            &proxy.imaps_port.to_string(),
            "--mode",
            "ssl",
            "a SELECT x",
            "b SELECT y",
            "c NOOP",
        ],
    );
    let (_, last) = get(admin, "/metrics");
    assert_eq!(
        sample(&last, "sentinella_bad_command_disconnects_total"),
        1.0,
        "{last}"
    );
    // No login name or address in any label.
    assert!(
        !last.contains(ADDR) && !last.contains("127.0.0.1"),
        "{last}"
    );
}

/// The service manager's side of `Type=notify-reload`, played by the test: a datagram
/// socket named by NOTIFY_SOCKET receives READY once the listeners are up, RELOADING
/// (with MONOTONIC_USEC) then READY around a SIGHUP, and STOPPING on SIGTERM.
#[test]
fn serve_tells_the_service_manager_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let mailbox = Dovecot::start(&[(ADDR, "x")]);
    let archive = Dovecot::start(&[(ADDR, "x")]);
    let mut proxy = Proxy::configure(&mailbox, &archive, "", "");
    let socket_path = proxy.dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&socket_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    proxy.run_with_env(&[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = manager.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    let pid = proxy.pid().unwrap();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.lines().any(|l| l == format!("MAINPID={pid}")),
        "{ready}"
    );
    assert!(proxy.signal("HUP"), "alive after SIGHUP");
    let reloading = next();
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(
        next().lines().any(|l| l == "READY=1"),
        "ready again after the reload"
    );
    proxy.stop();
    assert!(next().lines().any(|l| l == "STOPPING=1"));
}
