//! Shared helpers for the integration tests: a temporary configuration and store, and the
//! built `sentinella` binary run against them.

#![allow(dead_code)]

pub mod held;
pub mod rig;
pub mod servers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sentinella::policy::Timestamp;
use sentinella::policy::totp::DeviceSecret;
use serde_json::Value;

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON (for `--json` runs).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A folder with a `config.toml` and the store it names.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// The cheapest argon2id cost the configuration accepts, to keep the tests quick.
pub const CHEAP_ARGON2: &str = "[argon2]\nmemory_kib = 8192\niterations = 1\nparallelism = 1\n";

impl Env {
    /// A config with the given `[policy]` body and a relative store path.
    pub fn new(policy: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env { dir };
        env.write_config("config.toml", policy);
        env
    }

    /// Writes another config file in the same folder, sharing the same store.
    pub fn write_config(&self, name: &str, policy: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            "[store]\npath = \"state/sentinella.db\"\n\n[policy]\n{policy}\n\n{CHEAP_ARGON2}"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("state/sentinella.db")
    }

    /// Runs `sentinella --config <config.toml> ARGS`, feeding `stdin` if given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_with(&self.config(), args, stdin)
    }

    /// Runs with another config file.
    pub fn run_with(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        run_binary(config, args, stdin, self.dir.path())
    }

    /// Runs with `--json` and asserts success.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.run(&all, stdin);
        assert_eq!(run.code, 0, "sentinella {args:?} failed: {run:?}");
        run.json()
    }

    /// Adds a mailbox with the given main password.
    pub fn add_mailbox(&self, address: &str, plan: &str, password: &str) {
        self.ok(
            &[
                "mailbox",
                "add",
                address,
                "--plan",
                plan,
                "--password-stdin",
            ],
            Some(password),
        );
    }

    /// Turns 2FA on; returns the device secret.
    pub fn enable_2fa(&self, address: &str) -> DeviceSecret {
        self.enable_2fa_with_code(address).0
    }

    /// Turns 2FA on; returns the device secret and the (now spent) code that confirmed it.
    pub fn enable_2fa_with_code(&self, address: &str) -> (DeviceSecret, String) {
        let v = self.ok(&["2fa", "enable", address], None);
        let secret = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
        let spent = code(&secret, 0);
        self.ok(&["2fa", "confirm", address, &spent], None);
        (secret, spent)
    }
}

/// Runs the built binary with `--config` in the working directory `cwd`.
pub fn run_binary(config: &Path, args: &[&str], stdin: Option<&str>, cwd: &Path) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinella"));
    cmd.arg("--config").arg(config).args(args).current_dir(cwd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sentinella");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The command may refuse and exit before reading its input: a broken pipe is fine.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The TOTP secret inside an `otpauth://` URI.
pub fn secret_from_uri(uri: &str) -> DeviceSecret {
    let b32 = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("no secret in {uri}"));
    let bytes =
        base32::decode(base32::Alphabet::Rfc4648 { padding: false }, b32).expect("base32 secret");
    DeviceSecret::from_bytes(bytes)
}

/// The code the device shows `steps_ahead` 30-second steps from now. A code is accepted
/// once; the next action with the same device uses the next step (still within the
/// one-step skew the verifier allows).
pub fn code(secret: &DeviceSecret, steps_ahead: i64) -> String {
    let t = Timestamp::from_second(Timestamp::now().as_second() + 30 * steps_ahead).unwrap();
    secret.code_at(t).unwrap()
}

/// A JSON time field.
pub fn time(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}
