//! Two `sentinella` processes changing the same store at once lose nothing: every action
//! of each is there afterwards, and the version counted every password change.

use crate::common;

use std::thread;

use common::Env;
use sentinella::store::Reader;
use sentinella::store::sqlite::SqliteStore;

const SHARED: &str = "shared@pec.example.it";
/// Actions per process, per kind.
const USERS: usize = 100;
const PASSWORDS: usize = 50;

#[test]
fn two_processes_doing_hundreds_of_actions_lose_nothing() {
    let env = Env::new("");
    env.add_mailbox(SHARED, "standard", "Shared-passw0rd");

    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|side| {
            let config = env.config();
            let cwd = env.dir.path().to_owned();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..USERS {
                    // Interleave the two kinds so both processes write the same row often.
                    let login = format!("user-{side}-{i}");
                    let run = common::run_binary(
                        &config,
                        &["mailbox", "add-user", SHARED, &login, "--password-stdin"],
                        Some("User-passw0rd"),
                        &cwd,
                    );
                    if run.code != 0 {
                        failures.push(format!("add-user {login}: {run:?}"));
                    }
                    if i % (USERS / PASSWORDS) == 0 {
                        let run = common::run_binary(
                            &config,
                            &["mailbox", "set-password", SHARED, "--password-stdin"],
                            Some(&format!("Passw0rd-{side}-{i}")),
                            &cwd,
                        );
                        if run.code != 0 {
                            failures.push(format!("set-password {i}: {run:?}"));
                        }
                    }
                    let other = format!("own-{side}-{i}@pec.example.it");
                    let run = common::run_binary(
                        &config,
                        &["mailbox", "add", &other, "--password-stdin"],
                        Some("Own-passw0rd"),
                        &cwd,
                    );
                    if run.code != 0 {
                        failures.push(format!("add {other}: {run:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    for w in workers {
        let failures = w.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} actions failed, first: {}",
            failures.len(),
            failures[0]
        );
    }

    let store = SqliteStore::open(&env.store_path()).unwrap();
    let shared = store.mailbox(SHARED).unwrap().unwrap();
    let users = store.users(shared.id).unwrap();
    assert_eq!(users.len(), 2 * USERS, "every multi-user account is there");
    for side in ["a", "b"] {
        for i in 0..USERS {
            let login = format!("user-{side}-{i}");
            assert!(users.iter().any(|u| u.login == login), "{login} lost");
            let own = format!("own-{side}-{i}@pec.example.it");
            assert!(store.mailbox(&own).unwrap().is_some(), "{own} lost");
        }
    }
    assert_eq!(store.mailboxes().unwrap().len(), 1 + 2 * USERS);
    let events = store.events(SHARED).unwrap();
    assert_eq!(
        events.len(),
        1 + 2 * USERS + 2 * PASSWORDS,
        "one event per action"
    );
    let m = store.mailbox(SHARED).unwrap().unwrap();
    assert_eq!(
        m.version,
        1 + 2 * PASSWORDS as i64,
        "every password change bumped the version once"
    );
}
