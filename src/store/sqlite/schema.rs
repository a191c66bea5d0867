//! The SQLite schema, as an ordered list of migrations. `PRAGMA user_version` records how many
//! have been applied; opening a store applies the rest in one transaction. Never edit a
//! released migration: append a new one.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: mailboxes, logins, access history, notices, management events.
    r#"
    CREATE TABLE mailboxes (
        id               INTEGER PRIMARY KEY,
        address          TEXT NOT NULL UNIQUE,
        plan             TEXT NOT NULL CHECK (plan IN ('standard', 'pro', 'premium')),
        contact          TEXT,
        protocols        INTEGER NOT NULL CHECK (protocols BETWEEN 0 AND 7),
        migration        INTEGER NOT NULL DEFAULT 0 CHECK (migration IN (0, 1)),
        version          INTEGER NOT NULL DEFAULT 1,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        -- the associated 2FA device; 2FA is on exactly when device_secret is not null
        device_secret    BLOB,
        device_last_step INTEGER,
        device_since     INTEGER,
        -- a device shown to the owner, waiting for its first code
        pending_secret   BLOB,
        pending_purpose  TEXT CHECK (pending_purpose IN ('enable', 'replace')),
        pending_since    INTEGER,
        -- the app password: an argon2id hash and its dates, never the password
        app_hash         TEXT,
        app_created_at   INTEGER,
        app_expires_at   INTEGER,
        app_postponed    INTEGER NOT NULL DEFAULT 0
    );

    -- Every name a client can log in with: the mailbox address itself ('mailbox') and its
    -- multi-user accounts ('user'), each with its own main password hash.
    CREATE TABLE logins (
        login         TEXT PRIMARY KEY,
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        kind          TEXT NOT NULL CHECK (kind IN ('mailbox', 'user')),
        password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX logins_by_mailbox ON logins(mailbox_id);

    -- "Storico accessi": every login attempt. Kept after a mailbox is removed.
    CREATE TABLE access_history (
        id         INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        listener   TEXT NOT NULL,
        protocol   TEXT NOT NULL,
        client     TEXT NOT NULL,
        login      TEXT NOT NULL,
        address    TEXT,
        credential TEXT NOT NULL CHECK (credential IN ('main', 'app', 'unknown')),
        result     TEXT NOT NULL CHECK (result IN ('accepted', 'refused', 'temporary_failure')),
        reason     TEXT
    );
    CREATE INDEX access_history_by_address ON access_history(address, at);

    -- "Avvisi": notices to the owner (expiry reminders, security changes).
    CREATE TABLE notices (
        id         INTEGER PRIMARY KEY,
        address    TEXT NOT NULL,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        message    TEXT NOT NULL,
        emailed_at INTEGER
    );
    CREATE INDEX notices_by_address ON notices(address, at);

    -- Every management action, in order: who changed what (operator overrides included).
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        address TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT
    );
    CREATE INDEX events_by_address ON events(address, id);
    "#,
    // 2: the per-mailbox upstream secret (login.mode = "stored"), sealed with the key
    // file: nonce || ChaCha20-Poly1305 ciphertext, the address as associated data.
    r#"
    ALTER TABLE mailboxes ADD COLUMN upstream_secret BLOB;
    "#,
    // 3: who did each management action (`operator:NAME`, `owner:LOGIN`, `system`);
    // events from before were all made by an operator at the command line.
    r#"
    ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'operator:unknown';
    "#,
    // 4: several app passwords per mailbox, each named, scoped to protocols (NULL: every
    // protocol the mailbox enables), found at login by its selector (its first group, in
    // clear; NULL for a password made before selectors), with its last use. The single
    // password of earlier versions becomes 'default', same hash and dates.
    r#"
    CREATE TABLE app_passwords (
        id            INTEGER PRIMARY KEY,
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        selector      TEXT,
        scope         INTEGER CHECK (scope BETWEEN 0 AND 7),
        hash          TEXT NOT NULL CHECK (hash LIKE '$argon2id$%'),
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        postponed     INTEGER NOT NULL DEFAULT 0,
        last_used_at  INTEGER,
        last_client   TEXT,
        last_protocol TEXT,
        last_listener TEXT,
        UNIQUE (mailbox_id, name),
        UNIQUE (mailbox_id, selector)
    );
    INSERT INTO app_passwords (mailbox_id, name, selector, scope, hash, created_at, expires_at, postponed)
        SELECT id, 'default', NULL, NULL, app_hash, app_created_at, app_expires_at, app_postponed
        FROM mailboxes WHERE app_hash IS NOT NULL;
    ALTER TABLE mailboxes DROP COLUMN app_hash;
    ALTER TABLE mailboxes DROP COLUMN app_created_at;
    ALTER TABLE mailboxes DROP COLUMN app_expires_at;
    ALTER TABLE mailboxes DROP COLUMN app_postponed;
    ALTER TABLE access_history ADD COLUMN app_password TEXT;
    "#,
    // 5: retention deletes by age: every record table by time.
    r#"
    CREATE INDEX access_history_by_at ON access_history(at);
    CREATE INDEX events_by_at ON events(at);
    CREATE INDEX notices_by_at ON notices(at);
    "#,
    // 6: expiry reminders. Each app password knows when its next one is due (indexed,
    // so the job reads only what has come due); each reminder sent is claimed once per
    // password, expiry and milestone, whatever the restarts or the processes.
    r#"
    ALTER TABLE app_passwords ADD COLUMN next_reminder_at INTEGER;
    CREATE INDEX app_passwords_by_next_reminder ON app_passwords(next_reminder_at)
        WHERE next_reminder_at IS NOT NULL;
    CREATE TABLE reminders (
        app_password_id INTEGER NOT NULL REFERENCES app_passwords(id) ON DELETE CASCADE,
        expires_at      INTEGER NOT NULL,
        milestone       TEXT NOT NULL,
        at              INTEGER NOT NULL,
        PRIMARY KEY (app_password_id, expires_at, milestone)
    );
    "#,
    // 7: the e-mail outbox: each notice to each recipient, sent at least once and at most
    // once more after a crash; retried with backoff while the relay is down or answers
    // 4xx, given up on a 5xx with the error kept.
    r#"
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        notice_id       INTEGER NOT NULL REFERENCES notices(id) ON DELETE CASCADE,
        recipient       TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        sent_at         INTEGER,
        error           TEXT
    );
    CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
    CREATE INDEX outbox_by_notice ON outbox(notice_id);
    "#,
    // 8: what a notice said, kept apart from its words (JSON of `policy::notice::Said`), so it
    // can be shown in another language; `message` stays the text as first written.
    r#"
    ALTER TABLE notices ADD COLUMN said TEXT;
    "#,
    // 9: the change feed. Every write that can change a login decision (a mailbox added,
    // saved or removed; a multi-user account added, re-passworded or removed) appends the
    // mailbox id and its version then, in the same transaction; the login path follows it
    // from its last id and refreshes only those mailboxes. The access history, notices and
    // reminders never appear here, so the proxy's own writes cause no refresh.
    r#"
    CREATE TABLE changes (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox_id INTEGER NOT NULL,
        version    INTEGER,
        at         INTEGER NOT NULL
    );
    "#,
    // 10: main password hashes imported from another server (`{SHA512-CRYPT}…`, argon2i,
    // …) until their first login re-hashes them to argon2id; and a serial that moves when
    // a login's password is set — not when it is only re-hashed — so that sessions opened
    // with the password are ended by a new password, never by a re-hash. SQLite cannot
    // change a CHECK in place: the table is rebuilt.
    r#"
    CREATE TABLE logins_new (
        login           TEXT PRIMARY KEY,
        mailbox_id      INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        kind            TEXT NOT NULL CHECK (kind IN ('mailbox', 'user')),
        password_hash   TEXT NOT NULL
                        CHECK (password_hash LIKE '$argon2i%' OR password_hash LIKE '{%}%'),
        created_at      INTEGER NOT NULL,
        password_serial INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO logins_new (login, mailbox_id, kind, password_hash, created_at)
        SELECT login, mailbox_id, kind, password_hash, created_at FROM logins;
    DROP TABLE logins;
    ALTER TABLE logins_new RENAME TO logins;
    CREATE INDEX logins_by_mailbox ON logins(mailbox_id);
    "#,
    // 11: the access history records the second factor too ('code': the page's second
    // step, turning 2FA off, replacing the device). SQLite cannot change a CHECK in
    // place: the table is rebuilt, ids kept.
    r#"
    CREATE TABLE access_history_new (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        listener     TEXT NOT NULL,
        protocol     TEXT NOT NULL,
        client       TEXT NOT NULL,
        login        TEXT NOT NULL,
        address      TEXT,
        credential   TEXT NOT NULL CHECK (credential IN ('main', 'app', 'code', 'unknown')),
        result       TEXT NOT NULL CHECK (result IN ('accepted', 'refused', 'temporary_failure')),
        reason       TEXT,
        app_password TEXT
    );
    INSERT INTO access_history_new
        (id, at, listener, protocol, client, login, address, credential, result, reason, app_password)
        SELECT id, at, listener, protocol, client, login, address, credential, result, reason, app_password
        FROM access_history;
    DROP TABLE access_history;
    ALTER TABLE access_history_new RENAME TO access_history;
    CREATE INDEX access_history_by_address ON access_history(address, at);
    CREATE INDEX access_history_by_at ON access_history(at);
    "#,
    // 12: retention deletes old change-feed rows by time, as on PostgreSQL.
    r#"
    CREATE INDEX changes_by_at ON changes(at);
    "#,
    // 13: recovery codes, kept as hashes (each with its selector in clear), spent once.
    r#"
    CREATE TABLE recovery_codes (
        id         INTEGER PRIMARY KEY,
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        selector   TEXT NOT NULL,
        hash       TEXT NOT NULL CHECK (hash LIKE '$argon2id$%'),
        created_at INTEGER NOT NULL,
        used_at    INTEGER,
        UNIQUE (mailbox_id, selector)
    );
    "#,
    // 14: the associated device may be a passkey (WebAuthn): its credential id, public key
    // (an uncompressed P-256 point) and signature counter; 2FA is on when device_since is
    // set, with device_secret (an app) or these (a passkey).
    r#"
    ALTER TABLE mailboxes ADD COLUMN passkey_id BLOB;
    ALTER TABLE mailboxes ADD COLUMN passkey_key BLOB;
    ALTER TABLE mailboxes ADD COLUMN passkey_counter INTEGER;
    "#,
    // 15: an app password may be pinned to networks (CIDRs, space-separated).
    r#"
    ALTER TABLE app_passwords ADD COLUMN networks TEXT;
    "#,
    // 16: where each password is used. The history names the client's program; each
    // app password keeps the program of its last use; the networks and programs each
    // password (credential: the app password's id, 0 the main password) logged in from,
    // at most ten of each; when the owner was last asked about a new one (per app
    // password, and per mailbox for its main password); the "Non sono stato io" links
    // (only their hashes), the e-mail carrying one keeping it in clear until it is sent;
    // since when a mailbox's main password is known to be in lists of stolen passwords.
    r#"
    ALTER TABLE access_history ADD COLUMN software TEXT;
    ALTER TABLE app_passwords ADD COLUMN last_software TEXT;
    CREATE TABLE usage_places (
        id         INTEGER PRIMARY KEY,
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        credential INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('network', 'software')),
        value      TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        uses       INTEGER NOT NULL,
        UNIQUE (mailbox_id, credential, kind, value)
    );
    ALTER TABLE app_passwords ADD COLUMN place_alert_at INTEGER;
    ALTER TABLE mailboxes ADD COLUMN place_alert_at INTEGER;
    ALTER TABLE mailboxes ADD COLUMN breached_at INTEGER;
    CREATE TABLE not_me_links (
        hash       TEXT PRIMARY KEY,
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        credential INTEGER NOT NULL,
        name       TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    );
    CREATE INDEX not_me_links_by_expiry ON not_me_links(expires_at);
    ALTER TABLE outbox ADD COLUMN link TEXT;
    "#,
    // 17: how far the history journal (`history_sync = "journal"`) is in the store.
    r#"
    CREATE TABLE history_journal (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL,
        offset     INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}
