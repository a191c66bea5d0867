//! Adopting an existing server: its users imported with the hashes Dovecot made
//! (`doveadm pw`, every supported scheme), logged in through the proxy to real Dovecot
//! with imaplib, re-hashed to argon2id at that first login (the old hash gone, the
//! session that did it not ended); a file with bad lines imports nothing.

use crate::common;

use std::process::Command;

use common::held::{Held, noop_answered};
use common::rig::imaps_login;
use common::servers::{Dovecot, Proxy};
use sentinella::store::Reader as _;

/// Dovecot's schemes Sentinella imports, each with a user of its own.
const SCHEMES: [&str; 6] = [
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "BLF-CRYPT",
    "PBKDF2",
    "ARGON2ID",
    "ARGON2I",
];

fn user(scheme: &str) -> String {
    format!("{}@pec.example.it", scheme.to_ascii_lowercase())
}

fn password(scheme: &str) -> String {
    format!("Pw-{scheme}-2026")
}

/// `doveadm pw -s SCHEME -p PASSWORD`: what the existing server keeps.
fn doveadm_hash(scheme: &str, password: &str) -> String {
    let out = Command::new("doveadm")
        .args(["pw", "-s", scheme, "-p", password])
        .output()
        .expect("doveadm (Dovecot's package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The stored main password hash of `login`, read from the proxy's store.
fn stored_hash(p: &Proxy, login: &str) -> String {
    let store =
        sentinella::store::sqlite::SqliteStore::open(&p.dir.path().join("state/sentinella.db"))
            .unwrap();
    store.login(login).unwrap().unwrap().password_hash
}

fn started(users: &[(String, String)]) -> (Proxy, Dovecot, Dovecot) {
    let pairs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let mailbox = Dovecot::start(&pairs);
    let archive = Dovecot::start(&pairs);
    // Every client here is 127.0.0.1, and the tests try a wrong password for each of
    // several names: an address limit of one client would be an attack's (successes of
    // other names never clear it), so it is out of the way.
    let mut proxy = Proxy::configure(
        &mailbox,
        &archive,
        "\n[throttle]\naddress_failures = 1000",
        "",
    );
    proxy.run();
    (proxy, mailbox, archive)
}

#[test]
fn a_passwd_file_of_every_scheme_imports_logs_in_and_is_rehashed_to_argon2id() {
    let users: Vec<(String, String)> = SCHEMES.iter().map(|s| (user(s), password(s))).collect();
    let (p, _mailbox, _archive) = started(&users);
    let mut file = String::from("# exported from the old server\n\n");
    for s in SCHEMES {
        let hash = doveadm_hash(s, &password(s));
        file.push_str(&format!("{}:{hash}:1000:1000::/var/mail/x::\n", user(s)));
    }
    let path = p.dir.path().join("users.passwd");
    std::fs::write(&path, &file).unwrap();
    let path = path.to_str().unwrap();
    let r = p.ok(&["mailbox", "import", path], None);
    assert_eq!(
        (r["added"].as_u64(), r["updated"].as_u64()),
        (Some(6), Some(0)),
        "{r}"
    );
    // A re-run adds nothing twice.
    let again = p.ok(&["mailbox", "import", path], None);
    assert_eq!(again["unchanged"], 6, "{again}");
    assert_eq!(
        p.ok(&["mailbox", "list"], None)["mailboxes"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    let before: Vec<String> = SCHEMES.iter().map(|s| stored_hash(&p, &user(s))).collect();
    // The first user's first login holds a session open across its own re-hash.
    let first = SCHEMES[0];
    let held = Held::open_as(
        &p,
        "imap",
        &user(first),
        &password(first),
        &["--noop-after", "2", "--hold", "3"],
    );
    for (s, before) in SCHEMES.iter().zip(before) {
        let (login, pw) = (user(s), password(s));
        assert!(
            !imaps_login(&p, &login, &format!("{pw}-wrong")),
            "{s}: wrong password"
        );
        if *s != first {
            assert!(imaps_login(&p, &login, &pw), "{s}: {}", p.log());
        }
        let after = stored_hash(&p, &login);
        assert!(
            after.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"),
            "{s}: {after}"
        );
        assert_ne!(after, before, "{s}: the old hash is gone");
        // The next login works (the re-hash verifies), a wrong password still does not.
        assert!(imaps_login(&p, &login, &pw), "{s} after the re-hash");
        assert!(
            !imaps_login(&p, &login, "Pw-wrong"),
            "{s} after the re-hash"
        );
    }
    let report = held.finish();
    assert_eq!(
        report["closed"], false,
        "the re-hash ended the session: {report}"
    );
    assert!(noop_answered(&report), "{report}");
    // The history says who logged in; no hash in the log.
    let log = p.log();
    assert!(
        !log.contains("$6$") && !log.contains("{PBKDF2}"),
        "a hash in the log"
    );
}

#[test]
fn a_file_with_bad_lines_imports_nothing_and_names_each_line() {
    let (p, _mailbox, _archive) = started(&[]);
    let good = doveadm_hash("SHA512-CRYPT", "x");
    let file = format!(
        "ok@pec.example.it:{good}\n\
         plain@pec.example.it:{{PLAIN}}secret\n\
         not an address:{good}\n\
         md5@pec.example.it:{{MD5-CRYPT}}$1$abc$def\n\
         ok@pec.example.it:{good}\n\
         nohash@pec.example.it\n"
    );
    let path = p.dir.path().join("bad.passwd");
    std::fs::write(&path, file).unwrap();
    let run = p.cli(&["mailbox", "import", path.to_str().unwrap()], None);
    assert_ne!(run.code, 0, "{run:?}");
    for (line, why) in [
        ("line 2", "{PLAIN}"),
        ("line 3", ""),
        ("line 4", "{MD5-CRYPT}"),
        ("line 5", "already on line 1"),
        ("line 6", "user:{SCHEME}hash"),
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(line) && l.contains(why)),
            "{line} {why}: {}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("line 1:"), "{}", run.stderr);
    assert!(
        p.ok(&["mailbox", "list"], None)["mailboxes"]
            .as_array()
            .unwrap()
            .is_empty(),
        "half imported"
    );
}

#[test]
fn a_csv_sets_plan_and_contact_and_a_rerun_updates_a_changed_hash() {
    let users = vec![("anna@pec.example.it".to_owned(), "Anna-1".to_owned())];
    let (p, _mailbox, _archive) = started(&users);
    let path = p.dir.path().join("users.csv");
    let write = |password: &str, plan: &str| {
        let hash = doveadm_hash("BLF-CRYPT", password);
        std::fs::write(
            &path,
            format!(
                "address,plan,contact,hash\nAnna@PEC.example.it,{plan},anna@example.org,{hash}\n"
            ),
        )
        .unwrap();
    };
    write("Anna-1", "pro");
    let csv = path.to_str().unwrap();
    p.ok(&["mailbox", "import", "--format", "csv", csv], None);
    let m = p.ok(&["mailbox", "show", "anna@pec.example.it"], None);
    assert_eq!(
        (m["plan"].as_str(), m["contact"].as_str()),
        (Some("pro"), Some("anna@example.org")),
        "{m}"
    );
    assert!(imaps_login(&p, "anna@pec.example.it", "Anna-1"));
    // The old server's password changed: a re-run takes the new hash, the old password
    // stops working.
    write("Anna-2", "premium");
    let r = p.ok(&["mailbox", "import", "--format", "csv", csv], None);
    assert_eq!(r["updated"], 1, "{r}");
    assert!(!imaps_login(&p, "anna@pec.example.it", "Anna-1"));
    assert!(imaps_login(&p, "anna@pec.example.it", "Anna-2"));
    assert_eq!(
        p.ok(&["mailbox", "show", "anna@pec.example.it"], None)["plan"],
        "premium"
    );
}

/// Pass-through (`main_password = "upstream"`): Dovecot holds the server's passwords;
/// Sentinella knows `known` (2FA off, another local password) and `guarded` (2FA on),
/// not `stranger`. Name throttle: 3 distinct failures.
fn pass_through() -> (Proxy, Dovecot, Dovecot) {
    let users = [
        ("known@pec.example.it", "Known-server-pw"),
        ("guarded@pec.example.it", "Guarded-server-pw"),
        ("stranger@pec.example.it", "Stranger-server-pw"),
    ];
    let mailbox = Dovecot::start(&users);
    let archive = Dovecot::start(&users);
    let mut proxy = Proxy::configure(&mailbox, &archive, "", "");
    let config = std::fs::read_to_string(proxy.config()).unwrap();
    let config = config.replace(
        "tls = \"none\"\n",
        "tls = \"none\"\nmain_password = \"upstream\"\n",
    );
    let config = format!(
        "{config}\n[throttle]\naddress_failures = 100\nname_failures = 3\nblock = \"10m\"\nname_max_block = \"10m\"\n"
    );
    std::fs::write(proxy.config(), config).unwrap();
    proxy.run();
    for (u, _) in &users[..2] {
        proxy.ok(
            &["mailbox", "add", u, "--password-stdin"],
            Some("Local-pw-never-used"),
        );
    }
    (proxy, mailbox, archive)
}

/// The lines of Dovecot's log that checked a password of `user` (auth_verbose).
fn dovecot_checks(d: &Dovecot, user: &str) -> Vec<String> {
    std::fs::read_to_string(d.dir.path().join("dovecot.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(user) && (l.contains("mismatch") || l.contains("auth failed")))
        .map(str::to_owned)
        .collect()
}

fn newest_reason(p: &Proxy, address: &str) -> String {
    let h = p.ok(&["mailbox", "history", address], None);
    h["history"][0]["reason"].as_str().unwrap_or("").to_owned()
}

#[test]
fn passed_through_the_servers_password_decides_for_unknown_names_and_2fa_off() {
    let (p, mailbox, _archive) = pass_through();
    // A mailbox with 2FA off: the server's password, not Sentinella's.
    assert!(
        imaps_login(&p, "known@pec.example.it", "Known-server-pw"),
        "{}",
        p.log()
    );
    assert!(!imaps_login(
        &p,
        "known@pec.example.it",
        "Local-pw-never-used"
    ));
    assert_eq!(
        newest_reason(&p, "known@pec.example.it"),
        "passed to upstream: refused there"
    );
    // A name Sentinella does not hold: the server decides too.
    assert!(imaps_login(
        &p,
        "stranger@pec.example.it",
        "Stranger-server-pw"
    ));
    // Wrong passwords are refused by the server and counted here: after three, the
    // name is blocked and the fourth try (even the right password) is not passed on.
    for i in 0..3 {
        assert!(!imaps_login(
            &p,
            "stranger@pec.example.it",
            &format!("wrong-{i}")
        ));
    }
    let checked = dovecot_checks(&mailbox, "stranger@pec.example.it").len();
    assert!(checked >= 3, "{checked}");
    assert!(!imaps_login(
        &p,
        "stranger@pec.example.it",
        "Stranger-server-pw"
    ));
    assert_eq!(
        dovecot_checks(&mailbox, "stranger@pec.example.it").len(),
        checked,
        "a throttled attempt reached the server"
    );
    assert!(p.log().contains("throttling"), "{}", p.log());
}

#[test]
fn passed_through_a_2fa_mailbox_takes_only_its_app_password_and_never_sends_the_main_one() {
    let (p, mailbox, _archive) = pass_through();
    // A pass-through session of `known` ends when 2FA is turned on.
    let held = Held::open_as(
        &p,
        "imap",
        "known@pec.example.it",
        "Known-server-pw",
        &["--hold", "12"],
    );
    let v = p.ok(&["2fa", "enable", "known@pec.example.it"], None);
    let secret = common::secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    p.ok(
        &[
            "2fa",
            "confirm",
            "known@pec.example.it",
            &common::code(&secret, 0),
        ],
        None,
    );
    let report = held.finish();
    assert_eq!(report["closed"], true, "{report}");

    let v = p.ok(&["2fa", "enable", "guarded@pec.example.it"], None);
    let secret = common::secret_from_uri(v["otpauth_uri"].as_str().unwrap());
    p.ok(
        &[
            "2fa",
            "confirm",
            "guarded@pec.example.it",
            &common::code(&secret, 0),
        ],
        None,
    );
    let app = p.ok(
        &["app-password", "generate", "guarded@pec.example.it"],
        None,
    )["password"]
        .as_str()
        .unwrap()
        .to_owned();
    // The server's own password: refused here, and Dovecot never saw it.
    assert!(!imaps_login(
        &p,
        "guarded@pec.example.it",
        "Guarded-server-pw"
    ));
    assert!(!imaps_login(
        &p,
        "guarded@pec.example.it",
        "Local-pw-never-used"
    ));
    assert!(
        dovecot_checks(&mailbox, "guarded@pec.example.it").is_empty(),
        "{:?}",
        dovecot_checks(&mailbox, "guarded@pec.example.it")
    );
    // Its app password gets in (the proxy logs in as the master user).
    assert!(
        imaps_login(&p, "guarded@pec.example.it", &app),
        "{}",
        p.log()
    );
    assert_eq!(newest_reason(&p, "guarded@pec.example.it"), "");
}
