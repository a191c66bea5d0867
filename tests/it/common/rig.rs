//! The usual test setup: Dovecot for the mailbox, Dovecot for the archive, the proxy in
//! front, one mailbox; and the Python clients in tests/clients/.

use std::process::Command;

use serde_json::Value;

use super::servers::{Dovecot, MASTER_PASSWORD, MASTER_USER, Proxy};
use super::{code, secret_from_uri};

/// The mailbox of the tests.
pub const ADDR: &str = "mario.rossi@pec.example.it";
/// Its main password in Sentinella.
pub const MAIN: &str = "Main-passw0rd";
/// Its own password in Dovecot (for upstreams with stored secrets).
pub const UPSTREAM_PW: &str = "dovecot-own-pw";

/// Dovecot for the mailbox and for the archive, and the proxy in front.
pub struct Rig {
    /// The proxy.
    pub proxy: Proxy,
    /// The mailbox's Dovecot (IMAP, POP3, submission with its sink).
    pub mailbox: Dovecot,
    /// The archive's Dovecot.
    pub archive: Dovecot,
}

impl Rig {
    /// Puts `message` in the mailbox's INBOX straight into Dovecot (as the master user):
    /// what a delivery would do.
    pub fn deliver(&self, message: &[u8]) {
        let file = self.proxy.dir.path().join("deliver.eml");
        std::fs::write(&file, message).unwrap();
        let up = self.mailbox.imap_port.to_string();
        let v = client(
            &self.proxy,
            "imap_client.py",
            &[
                "append",
                "--port",
                &up,
                "--mode",
                "plain",
                "--user",
                ADDR,
                "--password",
                MASTER_PASSWORD,
                "--master",
                MASTER_USER,
                "--file",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(v["append"], "OK", "{v}");
    }

    /// An imaplib session (SELECT, APPEND, FETCH, IDLE, LOGOUT) straight to the mailbox's
    /// Dovecot as the master user, bypassing the proxy: the reference to compare with, and
    /// a way to put a message in the mailbox.
    pub fn direct_imap_session(&self) -> Value {
        let up = self.mailbox.imap_port.to_string();
        client(
            &self.proxy,
            "imap_client.py",
            &[
                "session",
                "--port",
                &up,
                "--mode",
                "plain",
                "--user",
                ADDR,
                "--password",
                MASTER_PASSWORD,
                "--master",
                MASTER_USER,
            ],
        )
    }
}

/// Starts everything with `[policy]` lines `policy`, and adds the mailbox.
pub fn rig(policy: &str) -> Rig {
    rig_with(policy, "")
}

/// Like [`rig`], with `[limits]` lines `limits`.
pub fn rig_with(policy: &str, limits: &str) -> Rig {
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let mut proxy = Proxy::configure(&mailbox, &archive, policy, limits);
    proxy.run();
    proxy.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    Rig {
        proxy,
        mailbox,
        archive,
    }
}

/// Turns 2FA on.
pub fn two_factor_on(proxy: &Proxy) {
    let v = proxy.ok(&["2fa", "enable", ADDR], None);
    let secret = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    proxy.ok(&["2fa", "confirm", ADDR, &code(&secret, 0)], None);
}

/// Turns 2FA on and generates an app password; returns it.
pub fn two_factor_with_app_password(proxy: &Proxy) -> String {
    two_factor_on(proxy);
    proxy.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs tests/clients/`script` with `args` (and `--cafile` = the proxy's certificate);
/// returns its JSON output.
pub fn client(proxy: &Proxy, script: &str, args: &[&str]) -> Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .arg("--cafile")
        .arg(proxy.cert())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

/// Logs in over IMAPS with imaplib as `user`; returns whether it was accepted.
#[allow(dead_code)] // not every test binary logs in this way
pub fn imaps_login(proxy: &Proxy, user: &str, password: &str) -> bool {
    let port = proxy.imaps_port.to_string();
    let args = [
        "login",
        "--port",
        &port,
        "--mode",
        "ssl",
        "--user",
        user,
        "--password",
        password,
    ];
    client(proxy, "imap_client.py", &args)["ok"]
        .as_bool()
        .unwrap_or(false)
}

/// The lines a `raw` client command received.
pub fn received(v: &Value) -> Vec<String> {
    v["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// The lines an IMAP server sent to `lines` sent raw on `port` (`mode`: ssl, starttls,
/// plain), until it closed or the client ran out of lines.
#[allow(dead_code)] // not every test binary talks raw IMAP
pub fn imap_raw(p: &Proxy, port: u16, mode: &str, lines: &[&str]) -> Vec<String> {
    let port = port.to_string();
    let mut args = vec!["raw", "--port", &port, "--mode", mode];
    args.extend_from_slice(lines);
    received(&client(p, "imap_client.py", &args))
}

/// Runs tests/clients/api_client.py — every documented API endpoint called once, each
/// answer checked against the OpenAPI document — at `base` with `token`, on the mailbox
/// `address`; its report.
#[allow(dead_code)] // only the API tests
pub fn api_client(proxy: &Proxy, base: &str, token: &str, address: &str) -> Value {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/api_client.py"
        ))
        .args(["--base", base, "--token", token, "--address", address])
        .arg("--cafile")
        .arg(proxy.cert())
        .output()
        .expect("python3 with jsonschema");
    assert!(
        out.status.success(),
        "api_client.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
