//! A logged-in session held open by tests/clients/held_session.py (real imaplib / poplib /
//! smtplib over implicit TLS), for the tests of what happens to open sessions: revocation
//! ends them, a reload does not.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use super::rig::ADDR;
use super::servers::Proxy;
use serde_json::Value;

/// Long enough for the CLI to start and commit; a session still open after this failed.
pub const HOLD: f64 = 12.0;

/// A session logged in and waiting.
pub struct Held {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Held {
    /// Logs in over `protocol`'s implicit-TLS listener with `password`; returns once the
    /// client waits.
    pub fn open(p: &Proxy, protocol: &str, password: &str, extra: &[&str]) -> Held {
        Held::open_as(p, protocol, ADDR, password, extra)
    }

    /// Like [`Held::open`], logged in as `user`.
    pub fn open_as(p: &Proxy, protocol: &str, user: &str, password: &str, extra: &[&str]) -> Held {
        let port = match protocol {
            "imap" => p.imaps_port,
            "pop3" => p.pop3s_port,
            _ => p.submissions_port,
        }
        .to_string();
        let hold = HOLD.to_string();
        let script = format!(
            "{}/tests/clients/held_session.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new("python3")
            .arg(script)
            .args([
                protocol,
                "--port",
                &port,
                "--user",
                user,
                "--password",
                password,
            ])
            .args(["--hold", &hold])
            .args(extra)
            .arg("--cafile")
            .arg(p.cert())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(
            first.contains("ready"),
            "not logged in: {first}\n{}",
            p.log()
        );
        Held { child, out }
    }

    /// Waits for the client to end; its report.
    pub fn finish(mut self) -> Value {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        let _ = self.child.wait();
        serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{e}: {rest}"))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a report's session answered the NOOP sent with `--noop-after` (it went on).
#[allow(dead_code)] // not every test binary asks
pub fn noop_answered(report: &Value) -> bool {
    report["noop"] == "sent"
        && report["lines"].as_array().is_some_and(|l| {
            l.iter()
                .any(|l| l.as_str().unwrap_or("").contains("OK NOOP"))
        })
}
