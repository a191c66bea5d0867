//! Fleet mode: two `sentinella serve` processes (two nodes) on one real PostgreSQL
//! (Debian's package, initdb/pg_ctl in a temporary folder as the `postgres` user), real
//! Dovecot behind them, real imaplib clients. A change made through one node reaches the
//! other within a second — its logins and its open sessions; the throttle counts an
//! attack spread over both as one; the store going away is a temporary failure, never a
//! wrong answer, and no history is lost.

use crate::common;

use std::time::{Duration, Instant};

use common::held::Held;
use common::rig::{ADDR, MAIN, UPSTREAM_PW, client, imaps_login, two_factor_with_app_password};
use common::servers::{Dovecot, Postgres, Proxy, free_port, wait_for_port};
use serde_json::Value;

/// Two nodes on one database, in front of one Dovecot.
struct Fleet {
    a: Proxy,
    b: Proxy,
    pg: Postgres,
    _mailbox: Dovecot,
    _archive: Dovecot,
}

fn fleet(policy: &str) -> Fleet {
    fleet_with(policy, |_| String::new())
}

/// Like [`fleet`], each node's config followed by `extra(its folder)`.
fn fleet_with(policy: &str, extra: impl Fn(&std::path::Path) -> String) -> Fleet {
    let pg = Postgres::start();
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW), ("luigi@pec.example.it", "x")]);
    let archive = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let append = |p: &Proxy| {
        let mut text = std::fs::read_to_string(p.config()).unwrap();
        text.push_str(&extra(p.dir.path()));
        std::fs::write(p.config(), text).unwrap();
    };
    let mut a = Proxy::configure(&mailbox, &archive, policy, "");
    a.use_postgres(&pg, None);
    append(&a);
    a.run();
    let mut b = Proxy::configure(&mailbox, &archive, policy, "");
    b.use_postgres(&pg, Some(&a));
    append(&b);
    b.run();
    Fleet {
        a,
        b,
        pg,
        _mailbox: mailbox,
        _archive: archive,
    }
}

/// An IMAPS login; the server's answer text.
fn imaps(p: &Proxy, user: &str, password: &str) -> (bool, String) {
    let port = p.imaps_port.to_string();
    let v = client(
        p,
        "imap_client.py",
        &[
            "login",
            "--port",
            &port,
            "--mode",
            "ssl",
            "--user",
            user,
            "--password",
            password,
        ],
    );
    (
        v["ok"].as_bool().unwrap_or(false),
        v["text"].as_str().unwrap_or("").to_owned(),
    )
}

/// Polls `f` every 20 ms until it is true; how long that took (the bound only keeps a
/// regression from hanging).
fn until(what: &str, f: impl FnMut() -> bool) -> Duration {
    until_or(what, f, String::new)
}

/// Like [`until`]; on failure shows `context()`.
fn until_or(what: &str, mut f: impl FnMut() -> bool, context: impl Fn() -> String) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not within 15 s\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn history(p: &Proxy) -> Vec<Value> {
    p.ok(&["mailbox", "history", ADDR], None)["history"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_change_through_one_node_reaches_the_other_node_and_its_sessions() {
    let f = fleet("");
    // Added through node A's CLI: logs in on node B.
    f.a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    assert!(imaps_login(&f.b, ADDR, MAIN), "{}", f.b.log());
    assert!(imaps_login(&f.a, ADDR, MAIN));
    assert!(!imaps_login(&f.b, ADDR, "wrong"));

    // 2FA on through node B: node A refuses the main password, takes the app password.
    let password = two_factor_with_app_password(&f.b);
    let (ok, text) = imaps(&f.a, ADDR, MAIN);
    assert!(!ok && text.contains("AUTHENTICATIONFAILED"), "{text}");
    assert!(imaps_login(&f.a, ADDR, &password));

    // A session held open on node B; the app password deactivated through node A.
    let held = Held::open(&f.b, "imap", &password, &[]);
    f.a.ok(&["app-password", "deactivate", ADDR, "--yes"], None);
    let changed = Instant::now();
    let report = held.finish();
    let ended = changed.elapsed();
    println!("deactivated on A → B's session ended in {ended:?}");
    assert_eq!(report["closed"], true, "{report}");
    let last = report["lines"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last.as_str().unwrap().starts_with("* BYE [UNAVAILABLE]"),
        "{report}"
    );
    assert!(ended < Duration::from_secs(1), "B ended it after {ended:?}");
    let (ok, _) = imaps(&f.b, ADDR, &password);
    assert!(!ok, "refused on B");

    // Both nodes wrote the history into the one store.
    let h = history(&f.a);
    assert!(
        h.iter().any(|r| r["reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("session ended"))),
        "{h:?}"
    );
    let accepted = h.iter().filter(|r| r["result"] == "accepted").count();
    assert!(accepted >= 4, "{h:?}");
    // The feed and the notification are in the database, as the migration made them.
    assert_eq!(
        f.pg.psql("SELECT version FROM sentinella_schema"),
        sentinella::store::postgres::schema::latest().to_string()
    );
    assert!(
        f.pg.psql("SELECT COUNT(*) FROM changes")
            .parse::<i64>()
            .unwrap()
            >= 3
    );
}

#[test]
fn the_store_away_is_a_temporary_failure_and_no_history_is_lost() {
    let mut f = fleet("");
    f.a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    assert!(imaps_login(&f.a, ADDR, MAIN));
    assert!(imaps_login(&f.b, ADDR, MAIN));
    let before = history(&f.a).len();

    f.pg.stop();
    // Both nodes notice the feed is gone (logged), then every login is a temporary
    // failure: the cache is not trusted while changes cannot be followed.
    until("A notices", || {
        f.a.log().contains("cannot follow the store's changes")
    });
    until("B notices", || {
        f.b.log().contains("cannot follow the store's changes")
    });
    for p in [&f.a, &f.b] {
        for password in [MAIN, "wrong-password"] {
            let (ok, text) = imaps(p, ADDR, password);
            assert!(!ok, "{text}");
            assert!(text.contains("[UNAVAILABLE]"), "{text}");
            assert!(!text.contains("AUTHENTICATIONFAILED"), "{text}");
        }
    }
    std::thread::sleep(Duration::from_secs(2));

    f.pg.run();
    let back = until("logins work again on A", || imaps(&f.a, ADDR, MAIN).0);
    until("logins work again on B", || imaps(&f.b, ADDR, MAIN).0);
    println!("logins again {back:?} after PostgreSQL was back");
    let logs = || format!("A:\n{}\nB:\n{}", f.a.log(), f.b.log());
    until_or(
        "the buffered history is written",
        || {
            f.a.log().contains("the access history is written again")
                && f.b.log().contains("the access history is written again")
        },
        logs,
    );
    // The four refused while away were kept and written with the store's reason as its
    // code, and with their mailbox — found when they were written, since the store could
    // not say whose the name was when they were answered —, so the owner sees them.
    let unavailable = f.pg.psql(
        "SELECT COUNT(*) FROM access_history WHERE result = 'temporary_failure' \
         AND reason::jsonb ->> 'code' = 'store_unavailable' \
         AND login = 'mario.rossi@pec.example.it' AND address = 'mario.rossi@pec.example.it'",
    );
    assert_eq!(unavailable, "4");
    let h = history(&f.a);
    assert!(h.len() >= before + 6, "{} then {}", before, h.len());
    let shown = h
        .iter()
        .filter(|r| r["result"] == "temporary_failure")
        .count();
    assert_eq!(shown, 4, "{h:?}");
}

#[test]
fn wrong_passwords_spread_over_both_nodes_meet_the_limit_of_one() {
    // Per name: 3 distinct wrong passwords block the name (the address limit is out of
    // the way: every client here is 127.0.0.1).
    let f = fleet(
        "\n[throttle]\nname_failures = 3\naddress_failures = 1000\nblock = \"60s\"\nname_max_block = \"60s\"",
    );
    f.a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    // A, B, A: no node saw three by itself.
    for (p, wrong) in [(&f.a, "wrong-1"), (&f.b, "wrong-2"), (&f.a, "wrong-3")] {
        let (ok, text) = imaps(p, ADDR, wrong);
        assert!(!ok && text.contains("AUTHENTICATIONFAILED"), "{text}");
    }
    // The right password on B, which saw one failure itself: the fleet's three block it.
    let (ok, text) = imaps(&f.b, ADDR, MAIN);
    assert!(!ok, "blocked on B: {text}");
    let newest = &history(&f.a)[0];
    assert!(
        newest["reason"]
            .as_str()
            .unwrap_or("")
            .contains("login name blocked"),
        "{newest}"
    );
    let (ok, _) = imaps(&f.a, ADDR, MAIN);
    assert!(!ok, "blocked on A too");
    // A different name from the same client is not blocked.
    f.a.ok(
        &["mailbox", "add", "luigi@pec.example.it", "--password-stdin"],
        Some("Luigi-pw-1"),
    );
    assert!(imaps_login(&f.b, "luigi@pec.example.it", "Luigi-pw-1"));
    // Three wrong, the same password each time, spread over both: one guess, no block.
    for p in [&f.a, &f.b, &f.a] {
        assert!(!imaps_login(p, "luigi@pec.example.it", "same-wrong"));
    }
    assert!(imaps_login(&f.b, "luigi@pec.example.it", "Luigi-pw-1"));
    assert!(
        f.pg.psql(
            "SELECT COUNT(*) FROM throttle_failures WHERE key = 'n:mario.rossi@pec.example.it'"
        )
        .parse::<i64>()
        .unwrap()
            >= 3
    );
}

/// The abuse model is the fleet's: wrong 2FA codes and wrong page passwords seen by node
/// A count on node B (the page of each node, one PostgreSQL).
#[test]
fn code_and_page_password_failures_on_one_node_count_on_the_other() {
    let ports = [free_port(), free_port()];
    let next = std::cell::Cell::new(0);
    let f = fleet_with("\n[throttle]\naddress_failures = 1000", |_| {
        let port = ports[next.get()];
        next.set(next.get() + 1);
        format!("\n[web]\nbind = \"127.0.0.1:{port}\"\n")
    });
    for port in ports {
        wait_for_port(port, "web page", &f.a.log_path());
    }
    let (a, b) = (ports[0].to_string(), ports[1].to_string());
    f.a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    let v = f.a.ok(&["2fa", "enable", ADDR], None);
    let uri = v["otpauth_uri"].as_str().unwrap().to_owned();
    let device = common::secret_from_uri(&uri);
    f.a.ok(&["2fa", "confirm", ADDR, &common::code(&device, -1)], None);
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    // Each call guesses other codes (the same wrong code twice is one guess).
    let codes = |port: &str, rounds: &str, skip: &str, right: bool| {
        let mut args = vec![
            "codes",
            "--web",
            port,
            "--user",
            ADDR,
            "--password",
            MAIN,
            "--secret",
            secret,
            "--rounds",
            rounds,
            "--sources",
            "127.0.0.1",
            "--skip",
            skip,
        ];
        if !right {
            args.push("--no-right");
        }
        client(&f.a, "abuse.py", &args)
    };
    let results = |v: &Value| -> Vec<String> {
        v["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["result"].as_str().unwrap().to_owned())
            .collect()
    };
    // Three wrong codes on A: nothing blocked yet (the right code would pass there).
    let on_a = codes(&a, "3", "0", true);
    assert_eq!(results(&on_a), ["wrong", "wrong", "wrong"], "{on_a}");
    assert_eq!(on_a["right_code"], "accepted", "{on_a}\n{}", f.a.log());
    // The right code cleared the count: three more on A, then three on B — B takes in A's.
    let on_a = codes(&a, "3", "100", false);
    assert_eq!(results(&on_a)[..], ["wrong", "wrong", "wrong"], "{on_a}");
    let on_b = codes(&b, "3", "200", true);
    assert_eq!(
        results(&on_b),
        ["wrong", "wrong", "blocked"],
        "{on_b}\n{}",
        f.b.log()
    );
    assert_eq!(on_b["right_code"], "blocked", "{on_b}");
    // Page passwords: 3 wrong on A, 2 wrong on B: B's fifth blocks, the right one too.
    f.a.ok(
        &["mailbox", "add", "luigi@pec.example.it", "--password-stdin"],
        Some("Luigi-pw-1"),
    );
    let passwords = |port: &str, rounds: &str, skip: &str, right: bool| {
        let mut args = vec![
            "passwords",
            "--web",
            port,
            "--user",
            "luigi@pec.example.it",
            "--password",
            "Luigi-pw-1",
            "--rounds",
            rounds,
            "--skip",
            skip,
        ];
        if !right {
            args.push("--no-right");
        }
        client(&f.a, "abuse.py", &args)
    };
    let first = passwords(&a, "3", "0", true);
    assert_eq!(
        first["right"], "/account",
        "3 wrong are not a block: {first}"
    );
    let v = passwords(&a, "3", "100", false);
    assert_eq!(
        v["wrong"],
        serde_json::json!(["/login?e=wrong", "/login?e=wrong", "/login?e=wrong"]),
        "{v}"
    );
    let v = passwords(&b, "2", "200", true);
    assert_eq!(
        v["right"], "/login?e=wrong",
        "blocked on B by A's failures: {v}"
    );
}

/// The notice job on a fleet: both nodes look every second, one holds the lease; when it
/// stops, the other takes the lease over. Each expiry reminder is e-mailed once.
#[test]
fn the_notice_job_runs_on_one_node_and_moves_when_it_stops() {
    let relay = common::servers::Relay::start("avvisi", "relay-secret-pw");
    // Milestones 6 s (postponing opens), 11 s (5 s before) and 16 s (expiry) after the
    // password is generated.
    let policy =
        "app_password_validity = \"16s\"\npostpone_window = \"10s\"\nreminders_before = [\"5s\"]";
    let mut f = fleet_with(policy, |dir| {
        std::fs::write(dir.join("relay.pass"), "relay-secret-pw\n").unwrap();
        format!(
            "\n[notices]\nlanguage = \"en\"\nevery = \"1s\"\n[notices.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"starttls\"\nca_file = \"{}\"\nuser = \"avvisi\"\npassword_file = \"relay.pass\"\n\
             from = \"avvisi@pec.example.it\"\nretry = \"1s\"\n",
            relay.port,
            relay.certificate().display()
        )
    });
    let runs = |p: &Proxy| p.log().matches("this node runs the job now").count();
    until("one node takes the notice job", || {
        runs(&f.a) + runs(&f.b) >= 2
    });
    // Each job (notices, retention) on exactly one node.
    let (on_a, on_b) = (runs(&f.a), runs(&f.b));
    assert_eq!(on_a + on_b, 2, "{on_a} + {on_b}");

    f.a.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    f.a.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    common::rig::two_factor_on(&f.b);
    f.a.ok(&["app-password", "generate", ADDR], None);
    let reminders = |relay: &common::servers::Relay| -> Vec<String> {
        relay
            .delivered()
            .iter()
            .filter_map(|(raw, _)| {
                let m = mail_parser::MessageParser::default().parse(raw).unwrap();
                m.subject()
                    .is_some_and(|s| s.contains(": the password for mail programs expire"))
                    .then(|| m.body_text(0).unwrap().into_owned())
            })
            .collect()
    };
    until("the first reminder", || !reminders(&relay).is_empty());
    // The node holding the notice job stops; the other takes it over.
    let holder_is_a =
        f.a.log()
            .lines()
            .any(|l| l.contains("this node runs the job now") && l.contains("notice job"));
    let (gone, stays) = if holder_is_a {
        (&mut f.a, &f.b)
    } else {
        (&mut f.b, &f.a)
    };
    gone.stop();
    until("the other node takes the notice job", || {
        stays
            .log()
            .lines()
            .any(|l| l.contains("this node runs the job now") && l.contains("notice job"))
    });
    until("all three reminders", || reminders(&relay).len() >= 3);
    std::thread::sleep(Duration::from_secs(3));
    let texts = reminders(&relay);
    assert_eq!(texts.len(), 3, "each milestone once: {texts:#?}");
    assert!(texts[2].contains("expired on"), "{}", texts[2]);
}

/// The counts `store copy` reported, by table.
fn counts(v: &Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                (
                    t["source"].as_u64().unwrap(),
                    t["destination"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_store_is_copied_from_sqlite_to_postgresql_and_back() {
    // A SQLite store with a bit of everything: a mailbox with 2FA, an app password, a
    // multi-user account, history, events, notices, and a sealed upstream secret.
    let rig = common::rig::rig("");
    let p = &rig.proxy;
    let password = two_factor_with_app_password(p);
    p.ok(&["mailbox", "set-contact", ADDR, "mario@example.com"], None);
    assert!(imaps_login(p, ADDR, &password));
    assert!(!imaps_login(p, ADDR, MAIN));
    let before = p.ok(&["mailbox", "show", ADDR], None);
    let history_before = history(p);
    let sqlite = p.dir.path().join("state/sentinella.db");
    let mut rig = rig;
    rig.proxy.stop();
    let p = &rig.proxy;

    let pg = Postgres::start();
    let pw = pg.password_file();
    let pw = pw.to_str().unwrap();
    let from = format!("sqlite:{}", sqlite.display());
    let forward = p.ok(
        &[
            "store",
            "copy",
            "--from",
            &from,
            "--to",
            &pg.url(),
            "--password-file",
            pw,
        ],
        None,
    );
    let c = counts(&forward);
    for (table, (source, destination)) in &c {
        assert_eq!(source, destination, "{table}");
    }
    assert_eq!(c["mailboxes"].0, 1);
    assert_eq!(c["app_passwords"].0, 1);
    assert_eq!(c["access_history"].0, history_before.len() as u64);
    assert!(
        c["events"].0 >= 3 && c["notices"].0 >= 2 && c["changes"].0 >= 3,
        "{c:?}"
    );
    // What PostgreSQL holds, row for row, with the same ids.
    assert_eq!(
        pg.psql("SELECT COUNT(*) FROM access_history"),
        c["access_history"].0.to_string()
    );
    // The text form names every table.
    let again = p.cli(
        &[
            "store",
            "copy",
            "--from",
            &from,
            "--to",
            &pg.url(),
            "--password-file",
            pw,
        ],
        None,
    );
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again
            .stderr
            .contains("the destination is not empty (mailboxes has 1 rows)"),
        "{again:?}"
    );

    // A node on the copy: the same mailbox, the same app password, the history goes on
    // (new ids after the copied ones).
    let mut node = Proxy::configure(&rig.mailbox, &rig.archive, "", "");
    node.use_postgres(&pg, Some(p));
    node.run();
    assert_eq!(node.ok(&["mailbox", "show", ADDR], None), before);
    assert!(imaps_login(&node, ADDR, &password));
    assert!(!imaps_login(&node, ADDR, MAIN));
    let h = history(&node);
    assert_eq!(h.len(), history_before.len() + 2);
    assert_eq!(&h[2..], &history_before[..]);
    let on_node = node.ok(&["mailbox", "show", ADDR], None);
    node.stop();

    // From one fleet store to another (a database server moved): the fleet's tables too —
    // its key (the throttle's fingerprints are keyed by it) and the throttle's counts.
    pg.psql(
        "INSERT INTO fleet_secrets (name, value) VALUES ('throttle', '\\x0102030405') \
         ON CONFLICT (name) DO NOTHING",
    );
    pg.psql(
        "INSERT INTO throttle_failures (key, fingerprint, at_ms) VALUES \
         ('n:someone', 7, 1), ('a:192.0.2.0', 8, 2)",
    );
    pg.psql("INSERT INTO throttle_clears (key, at_ms) VALUES ('n:someone', 3)");
    pg.psql("CREATE DATABASE moved");
    let moved = p.ok(
        &[
            "store",
            "copy",
            "--from",
            &pg.url(),
            "--to",
            &pg.url_of("moved"),
            "--password-file",
            pw,
        ],
        None,
    );
    let m = counts(&moved);
    for table in ["fleet_secrets", "throttle_failures", "throttle_clears"] {
        assert!(
            m[table].0 >= 1 && m[table].0 == m[table].1,
            "{table}: {m:?}"
        );
    }
    let fleet =
        "SELECT string_agg(name || encode(value, 'hex'), ',' ORDER BY name) FROM fleet_secrets";
    assert_eq!(pg.psql_in("moved", fleet), pg.psql(fleet));
    let failures = "SELECT string_agg(id || key || fingerprint || '@' || at_ms, ',' ORDER BY id) \
                    FROM throttle_failures";
    assert_eq!(pg.psql_in("moved", failures), pg.psql(failures));
    // New rows get ids after the copied ones.
    pg.psql_in(
        "moved",
        "INSERT INTO throttle_failures (key, fingerprint, at_ms) VALUES ('n:x', 1, 9)",
    );

    // And back into a new SQLite file.
    let back = p.dir.path().join("back/sentinella.db");
    let reverse = p.ok(
        &[
            "store",
            "copy",
            "--from",
            &pg.url(),
            "--to",
            &format!("sqlite:{}", back.display()),
            "--password-file",
            pw,
        ],
        None,
    );
    let r = counts(&reverse);
    assert_eq!(r["access_history"].1, c["access_history"].0 + 2);
    assert_eq!(r["mailboxes"].1, 1);
    // SQLite has no fleet tables: their rows are left out, and the report says so.
    let left: Vec<&str> = reverse["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["left_out"] == true)
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        ["fleet_secrets", "throttle_failures", "throttle_clears"]
    );
    let rows: u64 = pg
        .psql("SELECT COUNT(*) FROM throttle_failures")
        .parse()
        .unwrap();
    assert!(rows >= 2);
    assert_eq!(r["throttle_failures"], (rows, 0));
    let text = std::fs::read_to_string(p.config()).unwrap().replacen(
        "path = \"state/sentinella.db\"",
        &format!("path = \"{}\"", back.display()),
        1,
    );
    let config = p.dir.path().join("back.toml");
    std::fs::write(&config, text).unwrap();
    let show = common::run_binary(
        &config,
        &["--json", "mailbox", "show", ADDR],
        None,
        p.dir.path(),
    );
    assert_eq!(show.code, 0, "{show:?}");
    assert_eq!(show.json(), on_node);
    let text = common::run_binary(
        &config,
        &[
            "store",
            "copy",
            "--from",
            &format!("sqlite:{}", back.display()),
            "--to",
            &format!("sqlite:{}", back.display()),
        ],
        None,
        p.dir.path(),
    );
    assert_eq!(text.code, 1, "{text:?}");
}

/// TLS to PostgreSQL: `sslmode=require` with the server's CA in `ca_file` works, and the
/// server's certificate is checked (without that CA the node does not start).
#[test]
fn a_node_reaches_postgresql_over_tls_and_checks_its_certificate() {
    let mut pg = Postgres::start();
    let ca = pg.enable_tls();
    assert_eq!(pg.psql("SHOW ssl"), "on");
    let mailbox = Dovecot::start(&[(ADDR, UPSTREAM_PW)]);
    let mut p = Proxy::configure(&mailbox, &mailbox, "", "");
    p.use_postgres(&pg, None);
    let text = std::fs::read_to_string(p.config()).unwrap();
    let tls = text.replacen(
        &format!("url = \"{}\"", pg.url()),
        &format!(
            "url = \"{}?sslmode=require\"\nca_file = \"{}\"",
            pg.url(),
            ca.display()
        ),
        1,
    );
    assert_ne!(tls, text);
    // Without the CA: the certificate is not trusted, nothing starts.
    let untrusted = tls.replacen(&format!("ca_file = \"{}\"\n", ca.display()), "", 1);
    std::fs::write(p.config(), &untrusted).unwrap();
    let run = p.cli(&["mailbox", "list"], None);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.to_lowercase().contains("certificate"), "{run:?}");
    std::fs::write(p.config(), &tls).unwrap();
    p.run();
    p.ok(&["mailbox", "add", ADDR, "--password-stdin"], Some(MAIN));
    assert!(imaps_login(&p, ADDR, MAIN));
    // The server says the node's connections are encrypted.
    let encrypted = pg.psql(
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE s.ssl AND a.application_name = 'sentinella'",
    );
    assert!(encrypted.parse::<i64>().unwrap() >= 1, "{encrypted}");
}

/// The operator's API on a PostgreSQL store: every documented endpoint, answered as
/// documented (the same client as tests/api.rs), and its changes seen by another node.
#[test]
fn the_api_works_unchanged_on_postgresql() {
    const WHO: &str = "anna.bianchi@pec.example.it";
    let pg = Postgres::start();
    let mailbox = Dovecot::start(&[(WHO, UPSTREAM_PW)]);
    let api_port = common::servers::free_port();
    let mut a = Proxy::configure(
        &mailbox,
        &mailbox,
        "",
        &format!("\n[api]\nbind = \"127.0.0.1:{api_port}\"\non_web = false\n"),
    );
    a.use_postgres(&pg, None);
    a.run();
    common::servers::wait_for_port(api_port, "api", &a.log_path());
    let mut b = Proxy::configure(&mailbox, &mailbox, "", "");
    b.use_postgres(&pg, Some(&a));
    b.run();
    let token = a.ok(&["api-token", "create", "crm"], None)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("https://127.0.0.1:{api_port}");
    let v = common::rig::api_client(&a, &base, &token, WHO);
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["undocumented_or_uncalled"],
        serde_json::json!([]),
        "{v:#}"
    );
    // What the API did is in the shared store, each action an event by the token's name;
    // it removed the mailbox at the end, and node B knows it is gone.
    let by_api = pg.psql(&format!(
        "SELECT COUNT(*) FROM events WHERE address = '{WHO}' AND actor = 'operator:api:crm'"
    ));
    assert!(by_api.parse::<i64>().unwrap() >= 5, "{by_api}");
    assert_eq!(
        pg.psql(&format!(
            "SELECT action FROM events WHERE address = '{WHO}' ORDER BY id DESC LIMIT 1"
        )),
        "mailbox.remove"
    );
    let gone = b.cli(&["mailbox", "show", WHO], None);
    assert_eq!(gone.code, 1, "{gone:?}");
    assert!(!imaps_login(&b, WHO, MAIN));
}
