//! The `sentinella` command line end to end: the built binary on a temporary store.

use crate::common;

use common::{Env, code, run_binary, secret_from_uri, time};
use sentinella::auth::PasswordHasher;
use sentinella::config::Argon2Config;
use sentinella::policy::{Period, app_password};
use sentinella::secret::Secret;
use sentinella::store::Reader;
use sentinella::store::sqlite::SqliteStore as Store;

const MAIN: &str = "Main-passw0rd\n";
const ADDR: &str = "mario.rossi@pec.example.it";

/// The shipped default zone: the test config sets none.
fn rome() -> jiff::tz::TimeZone {
    sentinella::policy::provider_zone()
}

fn hasher() -> PasswordHasher {
    PasswordHasher::new(Argon2Config::default().cost()).unwrap()
}

#[test]
fn aruba_flow_from_add_to_disable() {
    let env = Env::new("");
    env.add_mailbox("Mario.Rossi@PEC.Example.IT", "pro", MAIN);

    // Enable 2FA: an otpauth URI, then a code from the app.
    let (secret, spent) = env.enable_2fa_with_code(ADDR);
    let show = env.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(show["two_factor"]["enabled"], true);
    assert_eq!(show["app_password"]["state"], "none");

    // Generate: shown once, grouped, valid 3 calendar months.
    let gen_ = env.ok(&["app-password", "generate", ADDR], None);
    let pw1 = gen_["password"].as_str().unwrap().to_owned();
    assert_eq!(pw1.len(), 29, "six groups of four with dashes: {pw1}");
    let (created, expires) = (time(&gen_["created_at"]), time(&gen_["expires_at"]));
    assert_eq!(expires, Period::months(3).after(created, &rome()));

    // Generate again while active: refused, names the expiry.
    let again = env.run(&["app-password", "generate", ADDR], None);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already active"), "{again:?}");

    // Status: active, postponing not yet open.
    let status = env.ok(&["app-password", "status", ADDR], None);
    assert_eq!(status["state"], "active");
    assert_eq!(status["postpone_allowed"], false);
    let opens = time(&status["postpone_opens_at"]);
    assert_eq!(opens, Period::days(14).before(expires, &rome()));

    // Postpone now: refused, saying from which date.
    let refused = env.run(&["--json", "app-password", "postpone", ADDR], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.json()["error"], "postpone_too_early");
    let date = sentinella::policy::fmt_time(opens, &rome());
    assert!(refused.stderr.contains(&date), "{date} not in {refused:?}");

    // Under a policy whose window is wider than the validity, it is open: same password,
    // new expiry = old expiry + 3 months.
    let wide = env.write_config("wide.toml", "postpone_window = \"100d\"");
    let run = env.run_with(&wide, &["--json", "app-password", "postpone", ADDR], None);
    assert_eq!(run.code, 0, "{run:?}");
    let postponed = run.json();
    assert_eq!(
        time(&postponed["expires_at"]),
        Period::months(3).after(expires, &rome())
    );
    assert_eq!(postponed["postponed"], 1);
    let store = Store::open(&env.store_path()).unwrap();
    let hash1 = store
        .mailbox(ADDR)
        .unwrap()
        .unwrap()
        .app_passwords
        .remove(0)
        .hash;
    assert!(
        hasher().verify(&hash1, &app_password::canonical(&pw1).unwrap()),
        "same password after postpone"
    );

    // Regenerate: a new password; the old one no longer verifies.
    let regen = env.ok(&["app-password", "regenerate", ADDR], None);
    let pw2 = regen["password"].as_str().unwrap();
    assert_ne!(pw1, pw2);
    let hash2 = store
        .mailbox(ADDR)
        .unwrap()
        .unwrap()
        .app_passwords
        .remove(0)
        .hash;
    assert!(hasher().verify(&hash2, &app_password::canonical(pw2).unwrap()));
    assert!(!hasher().verify(&hash2, &app_password::canonical(&pw1).unwrap()));

    // Deactivate: needs confirmation; with no terminal and no --yes it refuses.
    let run = env.run(&["app-password", "deactivate", ADDR], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--yes"), "{run:?}");
    assert_eq!(
        env.ok(&["app-password", "status", ADDR], None)["state"],
        "active"
    );
    env.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    assert_eq!(
        env.ok(&["app-password", "status", ADDR], None)["state"],
        "none"
    );

    // Disable 2FA: needs confirmation and a fresh code (the enabling one is spent).
    let run = env.run(&["2fa", "disable", ADDR, &code(&secret, 1)], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("lowers the security"), "{run:?}");
    let reused = env.run(&["--json", "2fa", "disable", ADDR, &spent, "--yes"], None);
    assert_eq!(
        (reused.code, reused.json()["error"].as_str()),
        (1, Some("code_reused")),
        "{reused:?}"
    );
    env.ok(&["2fa", "disable", ADDR, &code(&secret, 1), "--yes"], None);
    let show = env.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(show["two_factor"]["enabled"], false);

    // Every action was recorded, in order.
    let events = env.ok(&["mailbox", "events", ADDR], None);
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "mailbox.add",
            "2fa.enable",
            "2fa.enabled",
            "app-password.generate",
            "app-password.postpone",
            "app-password.regenerate",
            "app-password.deactivate",
            "2fa.disable"
        ]
    );
}

#[test]
fn disabling_2fa_revokes_the_app_password() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    let secret = env.enable_2fa(ADDR);
    env.ok(&["app-password", "generate", ADDR], None);
    env.ok(&["2fa", "disable", ADDR, &code(&secret, 1), "--yes"], None);
    let store = Store::open(&env.store_path()).unwrap();
    let m = store.mailbox(ADDR).unwrap().unwrap();
    assert!(m.app_passwords.is_empty() && m.device.is_none());
    // And generating now is refused: app passwords exist only with 2FA on.
    let run = env.run(&["--json", "app-password", "generate", ADDR], None);
    assert_eq!(
        (run.code, run.json()["error"].as_str()),
        (1, Some("two_factor_off"))
    );
}

#[test]
fn only_argon2id_hashes_reach_the_disk() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", "Very-Secret-Main-1\n");
    env.ok(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "ufficio@pec.example.it",
            "--password-stdin",
        ],
        Some("Very-Secret-User-2"),
    );
    env.enable_2fa(ADDR);
    let pw = env.ok(&["app-password", "generate", ADDR], None)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    // Checkpoint the WAL so everything is in the main file too, then search every file.
    let store = Store::open(&env.store_path()).unwrap();
    drop(store);
    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(env.store_path().parent().unwrap()).unwrap() {
        haystack.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&haystack);
    for secret in [
        "Very-Secret-Main-1",
        "Very-Secret-User-2",
        pw.as_str(),
        &pw.replace('-', ""),
    ] {
        assert!(!text.contains(secret), "{secret} found in the store files");
    }
    assert!(text.contains("$argon2id$v=19$m=8192,t=1,p=1$"));
}

#[test]
fn passwords_never_come_from_argv() {
    let env = Env::new("");
    // No terminal and no --password-stdin: refused with a clear message.
    let run = env.run(&["mailbox", "add", ADDR], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
    // A password given as an argument is a usage error, not a password.
    let run = env.run(&["mailbox", "add", ADDR, "hunter2hunter2"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        Store::open(&env.store_path())
            .unwrap()
            .mailboxes()
            .unwrap()
            .is_empty()
    );
    // Too short a password is refused.
    let run = env.run(
        &["mailbox", "add", ADDR, "--password-stdin"],
        Some("short\n"),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("at least 8"), "{run:?}");
}

#[test]
fn generate_without_protocols_gives_the_seed_message() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    env.enable_2fa(ADDR);
    let v = env.ok(
        &["mailbox", "protocols", ADDR, "--disable", "imap,pop3,smtp"],
        None,
    );
    assert_eq!(v["protocols"].as_array().unwrap().len(), 0);
    let run = env.run(&["app-password", "generate", ADDR], None);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "You have not enabled access for mail programs: enable at least one of IMAP, POP, SMTP"
        ),
        "{run:?}"
    );
    let v = env.ok(&["mailbox", "protocols", ADDR, "--enable", "smtp"], None);
    assert_eq!(v["protocols"], serde_json::json!(["smtp"]));
    env.ok(&["app-password", "generate", ADDR], None);
}

#[test]
fn migration_blocks_enabling_2fa() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    env.ok(&["mailbox", "migration", ADDR, "start"], None);
    let run = env.run(&["--json", "2fa", "enable", ADDR], None);
    assert_eq!(
        (run.code, run.json()["error"].as_str()),
        (1, Some("migration_in_progress"))
    );
    assert!(run.stderr.contains("migration"), "{run:?}");
    env.ok(&["mailbox", "migration", ADDR, "finish"], None);
    env.enable_2fa(ADDR);
}

#[test]
fn device_replacement_with_code_and_by_operator_override() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    let old = env.enable_2fa(ADDR);
    env.ok(&["app-password", "generate", ADDR], None);

    // Neither --code nor --operator-override: usage error.
    assert_eq!(env.run(&["2fa", "replace-device", ADDR], None).code, 2);
    // A wrong code from the current device: refused.
    let wrong = if code(&old, 1) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(
        env.run(&["2fa", "replace-device", ADDR, "--code", wrong], None)
            .code,
        1
    );

    // With a code from the current device.
    let v = env.ok(
        &["2fa", "replace-device", ADDR, "--code", &code(&old, 1)],
        None,
    );
    assert_eq!(v["purpose"], "replace");
    let new = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    assert_eq!(
        env.ok(&["2fa", "confirm", ADDR, &code(&new, 0)], None)["result"],
        "replaced"
    );
    // The app password survived the device change.
    assert_eq!(
        env.ok(&["app-password", "status", ADDR], None)["state"],
        "active"
    );

    // Operator override: recorded, and the owner gets a notice.
    let v = env.ok(
        &["2fa", "replace-device", ADDR, "--operator-override"],
        None,
    );
    let newer = secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    env.ok(&["2fa", "confirm", ADDR, &code(&newer, 0)], None);
    let events = env.ok(&["mailbox", "events", ADDR], None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("OPERATOR OVERRIDE"))),
        "{events}"
    );
    let notices = env.ok(&["mailbox", "notices", ADDR], None);
    assert!(
        notices["notices"].to_string().contains("operator"),
        "{notices}"
    );

    // The replaced device no longer works; the current one does.
    assert_eq!(
        env.run(&["2fa", "disable", ADDR, &code(&new, 1), "--yes"], None)
            .code,
        1
    );
    env.ok(&["2fa", "disable", ADDR, &code(&newer, 1), "--yes"], None);
}

#[test]
fn multi_user_accounts_open_the_mailbox() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "premium", MAIN);
    env.add_mailbox("other@pec.example.it", "standard", MAIN);
    env.ok(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "Ufficio.Fatture",
            "--password-stdin",
        ],
        Some("User-passw0rd"),
    );
    // Names are unique across mailboxes and accounts, case-insensitively.
    let run = env.run(
        &[
            "mailbox",
            "add-user",
            "other@pec.example.it",
            "UFFICIO.fatture",
            "--password-stdin",
        ],
        Some("User-passw0rd"),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("already in use"), "{run:?}");
    let run = env.run(
        &[
            "mailbox",
            "add-user",
            ADDR,
            "other@pec.example.it",
            "--password-stdin",
        ],
        Some("User-passw0rd"),
    );
    assert_eq!(run.code, 1);

    let store = Store::open(&env.store_path()).unwrap();
    let entry = store.login("ufficio.fatture").unwrap().unwrap();
    assert_eq!(
        (entry.mailbox.address.as_str(), entry.is_user),
        (ADDR, true)
    );
    assert!(hasher().verify(&entry.password_hash, &Secret::new("User-passw0rd".into())));

    env.ok(
        &[
            "mailbox",
            "set-password",
            ADDR,
            "--user",
            "ufficio.fatture",
            "--password-stdin",
        ],
        Some("Changed-passw0rd"),
    );
    let entry = store.login("ufficio.fatture").unwrap().unwrap();
    assert!(hasher().verify(
        &entry.password_hash,
        &Secret::new("Changed-passw0rd".into())
    ));
    let show = env.ok(&["mailbox", "show", ADDR], None);
    assert_eq!(show["users"], serde_json::json!(["ufficio.fatture"]));
    env.ok(&["mailbox", "remove-user", ADDR, "ufficio.fatture"], None);
    assert!(store.login("ufficio.fatture").unwrap().is_none());
}

#[test]
fn set_plan_password_and_remove() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    let v = env.ok(&["mailbox", "set-plan", ADDR, "premium"], None);
    assert_eq!(
        (v["plan"].as_str(), v["archive"].as_bool()),
        (Some("premium"), Some(true))
    );
    assert_eq!(
        env.run(&["mailbox", "set-plan", ADDR, "gold"], None).code,
        2
    );
    let before = v["version"].as_i64().unwrap();
    env.ok(
        &["mailbox", "set-password", ADDR, "--password-stdin"],
        Some("Another-passw0rd"),
    );
    let after = env.ok(&["mailbox", "show", ADDR], None)["version"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + 1, "a password change bumps the version");

    let run = env.run(&["mailbox", "remove", ADDR], None);
    assert_eq!(run.code, 1, "{run:?}");
    env.ok(&["mailbox", "remove", ADDR, "--yes"], None);
    let run = env.run(&["--json", "mailbox", "show", ADDR], None);
    assert_eq!(
        (run.code, run.json()["error"].as_str()),
        (1, Some("no_mailbox"))
    );
    assert_eq!(
        env.ok(&["mailbox", "list"], None)["mailboxes"],
        serde_json::json!([])
    );
}

#[test]
fn bad_input_is_refused_clearly() {
    let env = Env::new("");
    let run = env.run(
        &["mailbox", "add", "not-an-address", "--password-stdin"],
        Some(MAIN),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("expected local@domain"), "{run:?}");
    let run = env.run(
        &[
            "mailbox",
            "add",
            ADDR,
            "--contact",
            "nope",
            "--password-stdin",
        ],
        Some(MAIN),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("contact"), "{run:?}");
    let run = env.run(&["mailbox", "protocols", ADDR, "--enable", "nntp"], None);
    assert_eq!(run.code, 2, "{run:?}");
    let run = env.run(&["2fa", "confirm", "nobody@pec.example.it", "123456"], None);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no mailbox nobody@pec.example.it"),
        "{run:?}"
    );
}

#[test]
fn bad_config_names_the_file_and_key() {
    let env = Env::new("app_password_validty = \"3mo\"");
    let run = env.run(&["mailbox", "list"], None);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("config.toml") && run.stderr.contains("app_password_validty"),
        "{run:?}"
    );
    let env = Env::new("postpone_window = \"two weeks\"");
    let run = env.run(&["mailbox", "list"], None);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("postpone_window"), "{run:?}");
    let missing = env.run_with(
        &env.dir.path().join("nope.toml"),
        &["mailbox", "list"],
        None,
    );
    assert_eq!(missing.code, 3);
    assert!(missing.stderr.contains("nope.toml"), "{missing:?}");
}

#[test]
fn store_path_is_relative_to_the_config_folder() {
    let env = Env::new("");
    let elsewhere = tempfile::tempdir().unwrap();
    let run = run_binary(
        &env.config(),
        &["mailbox", "add", ADDR, "--password-stdin"],
        Some(MAIN),
        elsewhere.path(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(env.store_path().exists());
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

/// `sentinella serve` on the shipped config (with free ports) in a temporary folder;
/// stopped by its PID when dropped, even when the test fails.
struct Served {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
}

impl Served {
    /// Runs `prepare` on the folder first (e.g. to make a store), then starts `serve`
    /// and waits for its IMAPS listener.
    fn start(prepare: impl FnOnce(&std::path::Path)) -> Served {
        use common::servers::{free_port, wait_for_port};
        let dir = tempfile::tempdir().unwrap();
        let mut shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        // Same config, free ports (the shipped ones may be in use on a developer's machine).
        let mut imaps = 0;
        // The mail listeners, the web page and the admin listener.
        for port in [
            "10993", "10143", "10995", "10110", "10465", "10587", "11993", "8443", "9463",
        ] {
            let free = free_port();
            if port == "10993" {
                imaps = free;
            }
            shipped = shipped.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{free}"));
        }
        assert!(
            !shipped.contains(":8443\"") && !shipped.contains(":9463\""),
            "every shipped port replaced"
        );
        std::fs::write(dir.path().join("config.toml"), shipped).unwrap();
        prepare(dir.path());
        let log = dir.path().join("serve.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sentinella"))
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .arg("serve")
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(imaps, "sentinella", &log);
        Served {
            dir,
            child: Some(child),
            log,
        }
    }

    /// The log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status and the whole log.
    fn stop(&mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().unwrap();
        (status.code(), self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

#[test]
fn serve_on_the_shipped_config_creates_store_key_and_certificate() {
    let mut served = Served::start(|_| {});
    for created in [
        "data/sentinella.db",
        "data/sentinella.key",
        "certs/sentinella.crt",
        "certs/sentinella.key",
    ] {
        assert!(
            served.dir.path().join(created).exists(),
            "first run did not create {created}"
        );
    }
    // The certificate names what a client may connect to: localhost, the loopback
    // addresses the listeners bind, and this host's name (decoded by Python's ssl).
    let decoded = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,ssl,sys; print(json.dumps(ssl._ssl._test_decode_cert(sys.argv[1])['subjectAltName']))",
        ])
        .arg(served.dir.path().join("certs/sentinella.crt"))
        .output()
        .expect("python3");
    let names: Vec<(String, String)> = serde_json::from_slice(&decoded.stdout).unwrap();
    let has = |kind: &str, v: &str| names.iter().any(|(k, n)| k == kind && n.trim() == v);
    assert!(
        has("DNS", "localhost") && has("IP Address", "127.0.0.1"),
        "{names:?}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        has("DNS", host.trim()),
        "the host name {host:?} in {names:?}"
    );
    let (status, text) = served.stop();
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("created a self-signed certificate"), "{text}");
}

#[test]
fn serve_deletes_history_older_than_its_retention() {
    use sentinella::policy::login::{AccessResult, CredentialKind};
    use sentinella::store::{AccessLog, AccessRecord};
    let row = |at: &str| AccessRecord {
        at: at.parse().unwrap(),
        listener: "imaps".into(),
        protocol: sentinella::policy::Protocol::Imap.into(),
        client: "127.0.0.1".into(),
        login: ADDR.into(),
        address: Some(ADDR.into()),
        unresolved: None,
        mailbox_id: None,
        software: None,
        credential: CredentialKind::Main,
        app_password: None,
        result: AccessResult::Refused,
        reason: Some(sentinella::policy::login::Reason::Text(at.into())),
    };
    let recent = sentinella::clock::now().to_string();
    let mut served = Served::start(|dir| {
        let mut store = Store::open(&dir.join("data/sentinella.db")).unwrap();
        store
            .append(&sentinella::store::HistoryBatch::of_records(vec![
                row("2020-01-01T00:00:00Z"),
                row(&recent),
            ]))
            .unwrap();
    });
    let store = Store::open(&served.dir.path().join("data/sentinella.db")).unwrap();
    let mut kept = Vec::new();
    for _ in 0..100 {
        kept = store.history(ADDR, 10).unwrap();
        if kept.len() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(kept.len(), 1, "{}", served.log());
    assert_eq!(
        kept[0].reason,
        Some(sentinella::policy::login::Reason::Text(recent.clone()))
    );
    let (status, text) = served.stop();
    assert_eq!(status, Some(0));
    assert!(text.contains("retention: old records deleted"), "{text}");
}

#[test]
fn human_output_shows_the_password_once_and_the_qr_code() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    let run = env.run(&["2fa", "enable", ADDR], None);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("otpauth://totp/"), "{run:?}");
    assert!(run.stdout.contains('█'), "a terminal QR code is printed");
    let uri = run
        .stdout
        .lines()
        .find(|l| l.contains("otpauth://"))
        .unwrap()
        .trim();
    let secret = secret_from_uri(uri);
    env.ok(&["2fa", "confirm", ADDR, &code(&secret, 0)], None);
    let run = env.run(&["app-password", "generate", ADDR], None);
    assert_eq!(run.code, 0);
    let pw = run
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 29 && l.matches('-').count() == 5)
        .unwrap();
    assert!(app_password::canonical(pw).is_some());
    assert!(run.stdout.contains("cannot be retrieved"), "{run:?}");
    // Never again: status and show do not contain it.
    for args in [["app-password", "status", ADDR], ["mailbox", "show", ADDR]] {
        let r = env.run(&args, None);
        assert!(!r.stdout.contains(pw) && !r.stdout.contains(&pw.replace('-', "")));
    }
}

#[test]
fn set_contact_changes_where_notices_go_and_tells_the_owner() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    let v = env.ok(&["mailbox", "set-contact", ADDR, "Mario@Example.COM"], None);
    assert_eq!(v["contact"], "mario@example.com");
    let run = env.run(&["--json", "mailbox", "set-contact", ADDR, "nope"], None);
    assert_eq!(
        (run.code, run.json()["error"].as_str()),
        (1, Some("bad_contact"))
    );
    let notices = env.ok(&["mailbox", "notices", ADDR], None);
    assert_eq!(notices["notices"][0]["kind"], "contact-changed");
    assert!(
        notices["notices"][0]["message"]
            .as_str()
            .unwrap()
            .contains("mario@example.com"),
        "{notices}"
    );
    // The event records who did it: the operator running the command.
    let events = env.ok(&["mailbox", "events", ADDR], None);
    let last = &events["events"].as_array().unwrap()[1];
    assert_eq!(last["action"], "mailbox.set-contact");
    assert!(
        last["actor"].as_str().unwrap().starts_with("operator:"),
        "{events}"
    );
    let text = env.run(&["mailbox", "events", ADDR], None);
    assert!(text.stdout.contains("[operator:"), "{text:?}");
}

#[test]
fn named_scoped_app_passwords_at_the_command_line() {
    let env = Env::new("max_app_passwords = 2");
    env.add_mailbox(ADDR, "standard", MAIN);
    env.enable_2fa(ADDR);
    let fatture = env.ok(
        &[
            "app-password",
            "generate",
            ADDR,
            "--name",
            "software fatture",
            "--protocols",
            "smtp",
        ],
        None,
    );
    assert_eq!(fatture["scope"], serde_json::json!(["smtp"]));
    env.ok(
        &["app-password", "generate", ADDR, "--name", "Outlook"],
        None,
    );
    // Without a name, with two: refused, naming them.
    let run = env.run(&["--json", "app-password", "postpone", ADDR], None);
    assert_eq!(run.json()["error"], "app_password_name_required");
    assert!(run.stderr.contains("software fatture, Outlook"), "{run:?}");
    // The list shows both, never a password.
    let list = env.run(&["app-password", "list", ADDR], None);
    assert!(list.stdout.contains("2 of 2 app password(s)"), "{list:?}");
    assert!(
        list.stdout.contains("protocols: only smtp; never used"),
        "{list:?}"
    );
    assert!(!list.stdout.contains(fatture["password"].as_str().unwrap()));
    // Disabling SMTP says what happens to the SMTP-only password.
    let run = env.run(&["mailbox", "protocols", ADDR, "--disable", "smtp"], None);
    assert!(
        run.stdout
            .contains("app password \"software fatture\" no longer works"),
        "{run:?}"
    );
    // Deactivating one by name leaves the other.
    env.ok(
        &[
            "app-password",
            "deactivate",
            ADDR,
            "--name",
            "Outlook",
            "--yes",
        ],
        None,
    );
    let status = env.ok(&["app-password", "status", ADDR], None);
    assert_eq!(status["name"], "software fatture");
    let events = env.ok(&["mailbox", "events", ADDR], None);
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["detail"].as_str()),
        (Some("app-password.deactivate"), Some("Outlook"))
    );
}

#[test]
fn notices_run_is_one_pass_of_the_reminder_job() {
    let env = Env::new("");
    env.add_mailbox(ADDR, "standard", MAIN);
    env.enable_2fa(ADDR);
    env.ok(&["app-password", "generate", ADDR], None);
    // Nothing is due right after generating (the milestones are weeks away).
    let v = env.ok(&["notices", "run"], None);
    assert_eq!(v, serde_json::json!({"written": 0, "mailboxes": 0}));
    let run = env.run(&["notices", "run"], None);
    assert!(
        run.stdout.contains("0 expiry reminder(s) written"),
        "{run:?}"
    );
}

/// IMAP logins accepted in `p`'s history.
fn accepted_imap_logins(p: &common::servers::Proxy) -> usize {
    let h = p.ok(
        &["mailbox", "history", common::rig::ADDR, "--limit", "100"],
        None,
    );
    h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "accepted" && r["protocol"] == "imap")
        .count()
}

/// Twelve IMAPS logins through `p`, each answered OK.
fn twelve_logins(p: &common::servers::Proxy) -> usize {
    for _ in 0..12 {
        assert!(common::rig::imaps_login(
            p,
            common::rig::ADDR,
            common::rig::MAIN
        ));
    }
    12
}

/// The access history's durability contract with `history_sync = "normal"` (the
/// default): a login is answered once its row is committed, so a crash of the process
/// right after (SIGKILL) loses none of the logins it answered.
#[test]
fn a_crash_right_after_the_replies_loses_no_acknowledged_login() {
    let mut rig = common::rig::rig("");
    let answered = twelve_logins(&rig.proxy);
    rig.proxy.kill();
    assert_eq!(accepted_imap_logins(&rig.proxy), answered);
}

/// With `history_sync = "journal"` a login is answered once its row is in the journal
/// file, before the store has it — here the store is locked by another writer the whole
/// time, so none is committed: after a SIGKILL, the next start writes what the journal
/// holds before it listens — each login once, also after a further restart.
#[test]
fn with_the_journal_a_crash_loses_no_acknowledged_login_and_repeats_none() {
    use std::io::BufRead;
    let mailbox = common::servers::Dovecot::start(&[(common::rig::ADDR, common::rig::UPSTREAM_PW)]);
    let archive = common::servers::Dovecot::start(&[(common::rig::ADDR, common::rig::UPSTREAM_PW)]);
    let mut p = common::servers::Proxy::configure(&mailbox, &archive, "", "");
    p.store_setting("history_sync = \"journal\"");
    p.run();
    p.ok(
        &["mailbox", "add", common::rig::ADDR, "--password-stdin"],
        Some(common::rig::MAIN),
    );
    // Another process holds the store's write lock until its input closes.
    let db = p.config().parent().unwrap().join("state/sentinella.db");
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n",
        ])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let answered = twelve_logins(&p);
    p.kill();
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_eq!(accepted_imap_logins(&p), 0, "the store had none of them");
    p.run();
    assert_eq!(accepted_imap_logins(&p), answered, "{}", p.log());
    assert!(
        p.log()
            .contains("access-history records left in the journal written"),
        "{}",
        p.log()
    );
    // Logins after the restart are journaled too; a clean stop and start adds no copy.
    let more = twelve_logins(&p);
    p.stop();
    p.run();
    assert_eq!(accepted_imap_logins(&p), answered + more);
}

/// The mail listeners are bound once per session thread (`SO_REUSEPORT`); a second
/// `serve` given the same addresses must still fail to start, not join the group and
/// take part of the connections. The first keeps serving every login.
#[test]
fn a_second_serve_on_the_same_addresses_is_refused() {
    let rig = common::rig::rig("");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_sentinella"))
        .arg("--config")
        .arg(rig.proxy.config())
        .arg("serve")
        .current_dir(rig.proxy.config().parent().unwrap())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second serve started on the same addresses");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("cannot listen on 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    // Every login still reaches the first one (none goes to a half-started second).
    assert_eq!(twelve_logins(&rig.proxy), 12);
    assert_eq!(accepted_imap_logins(&rig.proxy), 12);
}

/// `[runtime] sessions`: per core (the default) the mail sessions run on "session-N"
/// threads; `shared` runs them on the multi-threaded runtime, with no such thread. A
/// login goes through either way.
#[test]
fn sessions_run_on_a_thread_per_core_unless_shared_is_configured() {
    let mailbox = common::servers::Dovecot::start(&[(common::rig::ADDR, common::rig::UPSTREAM_PW)]);
    let archive = common::servers::Dovecot::start(&[(common::rig::ADDR, common::rig::UPSTREAM_PW)]);
    for (setting, per_core) in [("", true), ("\n[runtime]\nsessions = \"shared\"\n", false)] {
        let mut p = common::servers::Proxy::configure(&mailbox, &archive, "", "");
        let mut text = std::fs::read_to_string(p.config()).unwrap();
        text.push_str(setting);
        std::fs::write(p.config(), text).unwrap();
        p.run();
        p.ok(
            &["mailbox", "add", common::rig::ADDR, "--password-stdin"],
            Some(common::rig::MAIN),
        );
        assert!(common::rig::imaps_login(
            &p,
            common::rig::ADDR,
            common::rig::MAIN
        ));
        let pid = p.pid().unwrap();
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        assert_eq!(
            threads.iter().any(|t| t.starts_with("session-")),
            per_core,
            "{setting:?}: {threads:?}"
        );
        assert_eq!(p.stop(), Some(0), "{}", p.log());
    }
}
