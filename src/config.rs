//! `config.toml`: the model, its defaults, and validation that names the bad key.
//!
//! Unknown keys are errors (`deny_unknown_fields`) so a typo never silently falls back to
//! a default. Relative paths are relative to the folder holding the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::net::{Network, TlsMode};
use crate::policy::{Period, PolicySettings, Protocol};
pub use crate::proxy::settings::{
    Limits, Listener, ListenerTls, MainPassword, UpstreamLogin, UpstreamSettings,
};

/// Why the configuration cannot be used. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type; the parser's message
    /// names the key and shows the line.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `listener[1].upstream`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The embedded database.
    #[serde(default)]
    pub store: StoreConfig,
    /// Notices to the owner.
    #[serde(default)]
    pub notices: NoticesConfig,
    /// The access history.
    #[serde(default)]
    pub history: KeptConfig<6>,
    /// Management events.
    #[serde(default)]
    pub events: KeptConfig<24>,
    /// Policy periods.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Password hashing cost.
    #[serde(default)]
    pub argon2: Argon2Config,
    /// The proxy's TLS certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Bounds on what one client may cost.
    #[serde(default)]
    pub limits: Limits,
    /// The login hot path: verification cache and hashing pool.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Brute-force throttling.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// `[web]`: the owner's page ("Gestione account").
    #[serde(default)]
    pub web: WebConfig,
    /// `[api]`: the operator's HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// What mail programs are told to use (the page, autoconfig, Autodiscover, profiles).
    #[serde(default)]
    pub clients: ClientsConfig,
    /// `[log]`: how `serve` writes its log.
    #[serde(default)]
    pub log: LogConfig,
    /// `[runtime]`: how `serve` runs the mail sessions on the machine's cores.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// `[admin]`: metrics and health checks.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Client-facing listeners.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    /// Upstream mail servers, by name.
    #[serde(default, rename = "upstream")]
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// The folder relative paths are resolved against (the config file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was read from.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file (created on first run).
    pub path: PathBuf,
    /// Key for upstream secrets at rest (32 random bytes, created mode 0600 on first use).
    pub key_file: PathBuf,
    /// A PostgreSQL database instead of the SQLite file (`postgres://user@host:port/db`,
    /// `?sslmode=require` for TLS), shared by a fleet of proxies. Never with a password in
    /// it: that comes from `password_file` or `SENTINELLA_STORE_PASSWORD`.
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (mode 0600).
    pub password_file: Option<PathBuf>,
    /// PEM certificates to trust for TLS to PostgreSQL, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL connections this process keeps, at most.
    pub pool_size: usize,
    /// How the access history's commits reach the disk (SQLite): `"normal"` — durable
    /// against a crash of the process (`kill -9` loses nothing acknowledged), a power cut
    /// may lose the last commits; `"full"` — synced before each login is answered;
    /// `"journal"` — answered once appended to a journal file beside the store, which the
    /// store takes in batches (SQLite only; see [`crate::store::HistorySync::Journal`]).
    pub history_sync: crate::store::HistorySync,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("sentinella.db"),
            key_file: PathBuf::from("sentinella.key"),
            url: None,
            password_file: None,
            ca_file: None,
            pool_size: 16,
            history_sync: crate::store::HistorySync::Normal,
        }
    }
}

/// `[notices]`: what the owner is told, and how often.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoticesConfig {
    /// At most one "main password used in a mail program while 2FA is on" alert per
    /// mailbox per this period (SPEC: at most once a day).
    pub main_password_alert_every: Period,
    /// How long notices are kept (default a year).
    pub retention: Period,
    /// The language notices and their e-mails are written in: `it` (default) or `en`.
    pub language: crate::wording::Language,
    /// How often `serve` looks for expiry reminders that have come due (default a
    /// minute; whole seconds, without calendar months).
    pub every: Period,
    /// The relay notices are e-mailed through; without it, notices stay in the avvisi.
    pub smtp: Option<SmtpConfig>,
}

/// `[web]`: the owner's web page, "Gestione account", over HTTPS with the proxy's
/// certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Where it listens; absent: no web page.
    pub bind: Option<std::net::SocketAddr>,
    /// A session unused this long ends (default 15 minutes).
    pub idle_timeout: Period,
    /// A session ends this long after login, used or not (default 8 hours).
    pub session_lifetime: Period,
    /// Access-history rows per page.
    pub history_page: u32,
    /// Connections open at once on each HTTPS listener (the page; the API's own, which
    /// takes these settings too): each holds a file descriptor the mail listeners need.
    pub max_connections: u32,
    /// Connections open at once on each HTTPS listener from one client address (IPv6:
    /// one /64); a NAT'd office shares one.
    pub max_connections_per_address: u32,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Period,
    /// Time to send a request head (the first: from the end of the handshake; the next:
    /// from its first byte).
    pub header_timeout: Period,
    /// Time to send a request body, from the end of its head (then 408).
    pub body_timeout: Period,
    /// A connection idle this long between requests is closed.
    pub keep_alive_timeout: Period,
    /// The page's address as owners reach it (`https://posta.example.it/`), given in the
    /// notice e-mails as where to act.
    pub public_url: Option<String>,
    /// The page's host name as owners type it (`posta.example.it`): the passkeys'
    /// relying party. A DNS name, never an address; unset, passkeys are not offered.
    pub public_host: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            bind: None,
            idle_timeout: Period::seconds(15 * 60),
            session_lifetime: Period::seconds(8 * 3600),
            history_page: 20,
            max_connections: 512,
            max_connections_per_address: 16,
            tls_handshake_timeout: Period::seconds(10),
            header_timeout: Period::seconds(10),
            body_timeout: Period::seconds(30),
            keep_alive_timeout: Period::seconds(60),
            public_url: None,
            public_host: None,
        }
    }
}

/// `[admin]`: `/metrics` (Prometheus), `/healthz` and `/readyz`, over plain HTTP on a
/// loopback address (for the local Prometheus agent and the service manager).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens (a loopback address); absent: off.
    #[serde(default)]
    pub bind: Option<std::net::SocketAddr>,
}

/// `[log]`: `serve`'s log, on standard error.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default; colours only when standard error is a terminal) or `json` (one
    /// object a line: time, level, target, fields, and the span's fields such as the
    /// connection id and listener).
    #[serde(default)]
    pub format: LogFormat,
}

/// How the log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// `[runtime]`: how `serve` runs the mail sessions on the machine's cores (a restart
/// applies a change).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `per-core` (default) or `shared`.
    #[serde(default)]
    pub sessions: SessionThreads,
}

/// Where the mail sessions run (`proxy::cores`; BENCHMARKS §7 measures both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionThreads {
    /// One single-threaded runtime per core, each listener bound once per thread; a
    /// session stays on the thread that accepted it: the least CPU per login.
    #[default]
    PerCore,
    /// The multi-threaded, work-stealing runtime: any thread runs any session — steadier
    /// under a flood when the proxy shares its cores with other busy programs.
    Shared,
}

/// `[api]`: the operator's HTTP API, `/api/v1/`, on the web page's listener and, with
/// `bind`, on a listener of its own (an admin network, say).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The bearer tokens' hashes (`sentinella api-token create NAME`); relative to the
    /// config's folder.
    pub tokens_file: PathBuf,
    /// A listener for the API alone.
    pub bind: Option<std::net::SocketAddr>,
    /// Whether the web page's listener serves the API too.
    pub on_web: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens_file: PathBuf::from("api-tokens"),
            bind: None,
            on_web: true,
        }
    }
}

/// `[clients]`: what mail programs should use, as reachable from outside — behind a
/// load balancer these differ from the listeners' bind addresses. Unset, each protocol
/// is its first listener (implicit TLS preferred; never the archive listener) on this
/// host's name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// The host name programs connect to (default: this host's name).
    pub host: Option<String>,
    /// The mail domains autoconfig and Autodiscover answer for (default: every domain
    /// the store has a mailbox of).
    pub domains: Vec<String>,
    /// IMAP's port and security.
    pub imap: Option<ClientServer>,
    /// POP3's.
    pub pop3: Option<ClientServer>,
    /// SMTP submission's.
    pub smtp: Option<ClientServer>,
}

/// One protocol's server as mail programs reach it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientServer {
    /// The port.
    pub port: u16,
    /// `implicit` (SSL/TLS from the first byte) or `starttls`.
    pub tls: ListenerTls,
}

/// `[notices.smtp]`: the provider's relay.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `implicit` (465), `starttls` (587; fails closed when the upgrade fails) or
    /// `none` (loopback only).
    pub tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// AUTH user name, if the relay wants one.
    #[serde(default)]
    pub user: Option<String>,
    /// A file holding the AUTH password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The From address of the notices.
    pub from: String,
    /// The name shown with it (`"Avvisi Posta Example"`).
    #[serde(default)]
    pub from_name: Option<String>,
    /// The first pause after a failed try (relay down, 4xx); it doubles, up to an hour.
    #[serde(default = "default_smtp_retry")]
    pub retry: Period,
}

fn default_smtp_retry() -> Period {
    Period::seconds(60)
}

/// `[history]` and `[events]`: how long those records are kept (`MONTHS` by default:
/// 6 for the access history, as the provider's Storico accessi, 24 for events).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeptConfig<const MONTHS: u32> {
    /// Records older than this are deleted in the background.
    #[serde(default = "KeptConfig::<MONTHS>::retention")]
    pub retention: Period,
}

impl<const MONTHS: u32> KeptConfig<MONTHS> {
    /// `MONTHS` (serde's container default does not take const generics).
    fn retention() -> Period {
        Period::months(MONTHS)
    }
}

impl<const MONTHS: u32> Default for KeptConfig<MONTHS> {
    fn default() -> Self {
        KeptConfig {
            retention: Period::months(MONTHS),
        }
    }
}

impl Default for NoticesConfig {
    fn default() -> Self {
        NoticesConfig {
            main_password_alert_every: Period::days(1),
            retention: Period::months(12),
            language: crate::wording::Language::default(),
            every: Period::seconds(60),
            smtp: None,
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// How long an app password works (default `3mo`).
    pub app_password_validity: Period,
    /// How long before expiry postponing opens (default `14d`).
    pub postpone_window: Period,
    /// The issuer name authenticator apps show next to the code.
    pub totp_issuer: String,
    /// How many app passwords a mailbox may have, each named and scoped (default 1: the
    /// seeds' one password for every program).
    pub max_app_passwords: usize,
    /// The provider's time zone (IANA name): calendar months and days are counted, and
    /// dates shown, in it.
    pub timezone: String,
    /// Expiry reminders this long before expiry, besides the ones when postponing opens
    /// and on expiry.
    pub reminders_before: Vec<Period>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            app_password_validity: Period::months(3),
            postpone_window: Period::days(14),
            totp_issuer: "Sentinella".into(),
            max_app_passwords: 1,
            timezone: crate::policy::DEFAULT_ZONE.into(),
            reminders_before: vec![Period::days(3), Period::days(1)],
        }
    }
}

impl PolicyConfig {
    /// The periods the pure rules take.
    pub fn settings(&self) -> PolicySettings {
        PolicySettings {
            // Checked by validate(); UTC only for a config that skipped it.
            zone: jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
            app_password_validity: self.app_password_validity,
            postpone_window: self.postpone_window,
            max_app_passwords: self.max_app_passwords,
            reminders_before: self.reminders_before.clone(),
        }
    }
}

/// `[argon2]`: argon2id cost for new hashes (OWASP's m=19 MiB, t=2, p=1 by default).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Config {
    /// The hashing cost this configures.
    pub fn cost(&self) -> crate::auth::HashCost {
        crate::auth::HashCost {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        Argon2Config {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// `[tls]`: the certificate clients see.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (created self-signed on first run if missing).
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: PathBuf::from("certs/sentinella.crt"),
            key: PathBuf::from("certs/sentinella.key"),
        }
    }
}

/// `[auth]`: the verification cache and the argon2id pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a successful verification is reused (policy is re-checked on every hit).
    pub cache_ttl: Period,
    /// Cached verifications kept at most.
    pub cache_entries: usize,
    /// Login names (with their mailboxes) kept in memory at most; others are read from
    /// the store when they log in (one indexed read). Names that are not logins are
    /// remembered too, up to a quarter of this.
    pub principal_entries: usize,
    /// argon2id worker threads (0: one per core).
    pub hash_workers: usize,
    /// Verifications waiting for a worker at most; beyond it clients get a temporary
    /// failure at once.
    pub hash_queue: usize,
    /// Lists of stolen passwords (SHA-1, the Pwned Passwords format): one file sorted by
    /// hash, or a folder of 5-character prefix files. A main password proven at a login
    /// or on the page is checked against them (off the reactor; unset: no check).
    pub breached_passwords_file: Option<PathBuf>,
    /// Whether the mail protocols refuse a main password found in those lists.
    pub refuse_breached: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            cache_ttl: Period::seconds(3600),
            cache_entries: 65_536,
            principal_entries: 65_536,
            hash_workers: 0,
            hash_queue: 64,
            breached_passwords_file: None,
            refuse_breached: false,
        }
    }
}

/// The keys (`auth.principal_entries`, `listener`, …) whose values differ between `a` and
/// `b`: every leaf of their tables compared; a list (the listeners, …) is one key.
fn differing_keys(a: &Config, b: &Config) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &path,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

/// `[throttle]`: the abuse model's limits (SPEC "Abuse resistance"; the rules are
/// `policy::abuse`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Distinct wrong passwords from one address (IPv6: one /64) before it is blocked.
    pub address_failures: u32,
    /// Distinct wrong passwords for one login name before it is blocked.
    pub name_failures: u32,
    /// Distinct wrong passwords against one mailbox (all its login names) before its
    /// password is blocked — the right one too — for `block`, doubling up to `max_block`.
    pub password_failures: u32,
    /// Distinct wrong 2FA codes of one mailbox (login, turning 2FA off, replacing or
    /// confirming the device; every address, page session and node together) before its
    /// code step is blocked — the right code too — and the owner alerted.
    pub code_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Period,
    /// The first block; it doubles with each further failure.
    pub block: Period,
    /// The longest block of an address.
    pub address_max_block: Period,
    /// The longest block of a login name: how long, at most, an attack on a name keeps
    /// its real owner out.
    pub name_max_block: Period,
    /// The longest block of a mailbox's password or its code step.
    pub max_block: Period,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            address_failures: 10,
            name_failures: 5,
            password_failures: 5,
            code_failures: 5,
            max_block: Period::seconds(3600),
            window: Period::seconds(900),
            block: Period::seconds(30),
            address_max_block: Period::seconds(3600),
            name_max_block: Period::seconds(60),
        }
    }
}

impl ThrottleConfig {
    /// The settings the throttle takes.
    pub fn settings(&self) -> crate::auth::ThrottleSettings {
        crate::auth::ThrottleSettings {
            address_failures: self.address_failures,
            name_failures: self.name_failures,
            password_failures: self.password_failures,
            code_failures: self.code_failures,
            max_block: self.max_block.fixed(),
            window: self.window.fixed(),
            block: self.block.fixed(),
            address_max_block: self.address_max_block.fixed(),
            name_max_block: self.name_max_block.fixed(),
        }
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`, as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.source = path.to_owned();
        cfg.base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store.path.as_os_str().is_empty() {
            return Err(self.invalid("store.path", "must not be empty"));
        }
        if let Some(url) = &self.store.url {
            if !crate::store::is_url(url) {
                return Err(self.invalid(
                    "store.url",
                    "must be a PostgreSQL URL (postgres://user@host:port/database)",
                ));
            }
            #[cfg(feature = "postgres")]
            match url.parse::<tokio_postgres::Config>() {
                Err(e) => return Err(self.invalid("store.url", e.to_string())),
                Ok(c) if c.get_password().is_some() => {
                    return Err(self.invalid(
                        "store.url",
                        format!(
                            "must not hold the password: put it in store.password_file or {}",
                            crate::store::PASSWORD_ENV
                        ),
                    ));
                }
                Ok(_) => {}
            }
            if self.store.history_sync == crate::store::HistorySync::Journal {
                return Err(self.invalid(
                    "store.history_sync",
                    "\"journal\" is for one node on SQLite; with store.url use \"normal\" (PostgreSQL syncs as its synchronous_commit says)",
                ));
            }
            if self.store.pool_size < 2 {
                return Err(self.invalid("store.pool_size", "must be at least 2"));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(self.invalid(
                "store.url",
                "this build has no PostgreSQL support (cargo feature \"postgres\")",
            ));
        }
        if let Err(e) = jiff::tz::TimeZone::get(&self.policy.timezone) {
            return Err(self.invalid(
                "policy.timezone",
                format!(
                    "{:?} is not a time zone (e.g. \"Europe/Rome\"): {e}",
                    self.policy.timezone
                ),
            ));
        }
        if self
            .notices
            .every
            .as_std()
            .is_none_or(|d| d > std::time::Duration::from_secs(86_400))
        {
            return Err(self.invalid(
                "notices.every",
                "must be a fixed period of at most a day (e.g. \"1m\")",
            ));
        }
        if let Some(host) = &self.web.public_host {
            let name = host.trim_end_matches('.');
            let dns = !name.is_empty()
                && name.parse::<std::net::IpAddr>().is_err()
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !dns {
                return Err(self.invalid(
                    "web.public_host",
                    "must be the page's DNS name as owners type it (e.g. \"posta.example.it\"), no \
                     port, not an IP address: passkeys are bound to it",
                ));
            }
        }
        if let Some(a) = self.admin.bind
            && !a.ip().is_loopback()
        {
            return Err(self.invalid(
                "admin.bind",
                "must be a loopback address (127.0.0.1 or ::1): metrics and health are not for the network",
            ));
        }
        for (key, p) in [
            ("web.idle_timeout", self.web.idle_timeout),
            ("web.session_lifetime", self.web.session_lifetime),
            ("web.tls_handshake_timeout", self.web.tls_handshake_timeout),
            ("web.header_timeout", self.web.header_timeout),
            ("web.body_timeout", self.web.body_timeout),
            ("web.keep_alive_timeout", self.web.keep_alive_timeout),
        ] {
            if p.as_std().is_none() {
                return Err(self.invalid(key, "must be a fixed period (e.g. \"15m\", \"8h\")"));
            }
        }
        if !(1..=500).contains(&self.web.history_page) {
            return Err(self.invalid("web.history_page", "must be between 1 and 500"));
        }
        for (key, n) in [
            ("web.max_connections", self.web.max_connections),
            (
                "web.max_connections_per_address",
                self.web.max_connections_per_address,
            ),
        ] {
            if n == 0 {
                return Err(self.invalid(key, "must be at least 1"));
            }
        }
        if let Some(smtp) = &self.notices.smtp {
            let loopback = smtp.host == "localhost"
                || smtp
                    .host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if smtp.tls == TlsMode::None && !loopback {
                return Err(self.invalid(
                    "notices.smtp.tls",
                    "\"none\" is allowed only for a relay on loopback; use \"starttls\" or \"implicit\"",
                ));
            }
            if smtp.user.is_some() != smtp.password_file.is_some() {
                return Err(self.invalid("notices.smtp.user", "user and password_file go together"));
            }
            if crate::policy::names::normalize_address(&smtp.from).is_err() {
                return Err(self.invalid("notices.smtp.from", "must be an e-mail address"));
            }
        }
        if !(1..=100).contains(&self.policy.max_app_passwords) {
            return Err(self.invalid("policy.max_app_passwords", "must be between 1 and 100"));
        }
        if self.policy.totp_issuer.is_empty() || self.policy.totp_issuer.contains(':') {
            return Err(self.invalid("policy.totp_issuer", "must be non-empty and contain no ':'"));
        }
        crate::auth::PasswordHasher::new(self.argon2.cost())
            .map_err(|e| self.invalid("argon2", e.to_string()))?;
        if self.argon2.memory_kib < 8 * 1024 {
            return Err(self.invalid(
                "argon2.memory_kib",
                format!(
                    "{} KiB is too weak; use at least 8192 (default 19456)",
                    self.argon2.memory_kib
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut binds = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |field: &str| format!("listener[{i}].{field}");
            if l.name.is_empty() || !names.insert(l.name.as_str()) {
                return Err(
                    self.invalid(key("name"), format!("{:?} is empty or used twice", l.name))
                );
            }
            if !binds.insert(l.bind) {
                return Err(self.invalid(
                    key("bind"),
                    format!("{} is used by another listener", l.bind),
                ));
            }
            if !self.upstreams.contains_key(&l.upstream) {
                return Err(self.invalid(
                    key("upstream"),
                    format!("no [upstream.{}] is defined", l.upstream),
                ));
            }
            if l.archive && (l.protocol != Protocol::Imap || l.tls != ListenerTls::Implicit) {
                return Err(self.invalid(
                    key("archive"),
                    "the archive listener must be IMAP with tls = \"implicit\"",
                ));
            }
        }
        for (name, u) in &self.upstreams {
            if u.host.is_empty() {
                return Err(self.invalid(format!("upstream.{name}.host"), "must not be empty"));
            }
            if u.port == 0 {
                return Err(self.invalid(format!("upstream.{name}.port"), "must not be 0"));
            }
            if let UpstreamLogin::Master {
                user,
                password_file,
            } = &u.login
            {
                if user.is_empty() || user.chars().any(|c| c.is_control()) {
                    return Err(self.invalid(
                        format!("upstream.{name}.login.user"),
                        "must be a non-empty name",
                    ));
                }
                if password_file.as_os_str().is_empty() {
                    return Err(self.invalid(
                        format!("upstream.{name}.login.password_file"),
                        "must not be empty",
                    ));
                }
            }
        }
        let l = &self.limits;
        if l.max_line < 1024 {
            return Err(self.invalid("limits.max_line", "must be at least 1024 bytes"));
        }
        if l.preauth_bytes < u64::from(l.max_line) {
            return Err(self.invalid("limits.preauth_bytes", "must be at least limits.max_line"));
        }
        // IMAP lets a client identify itself (RFC 2971 ID) with up to ~32 KB before login.
        if l.preauth_bytes < u64::from(crate::protocol::imap::ID_COMMAND_MAX) + 1024 {
            return Err(self.invalid(
                "limits.preauth_bytes",
                format!(
                    "must be at least {} (a maximal RFC 2971 ID command, and the greeting's exchange)",
                    u64::from(crate::protocol::imap::ID_COMMAND_MAX) + 1024
                ),
            ));
        }
        if l.bad_commands_before_login == 0 {
            return Err(self.invalid("limits.bad_commands_before_login", "must be at least 1"));
        }
        if l.failed_logins_per_connection == 0 {
            return Err(self.invalid("limits.failed_logins_per_connection", "must be at least 1"));
        }
        if l.max_connections == 0 {
            return Err(self.invalid("limits.max_connections", "must be at least 1"));
        }
        if l.max_connections_per_address == 0 {
            return Err(self.invalid("limits.max_connections_per_address", "must be at least 1"));
        }
        if l.idle_imap
            .as_std()
            .is_some_and(|d| d < std::time::Duration::from_secs(30 * 60))
        {
            return Err(self.invalid(
                "limits.idle_imap",
                "must be at least 30m (RFC 9051 5.4: IDLE clients re-issue every 29 minutes)",
            ));
        }
        if self.auth.cache_entries == 0
            || self.auth.hash_queue == 0
            || self.auth.principal_entries == 0
        {
            return Err(self.invalid(
                "auth",
                "cache_entries, principal_entries and hash_queue must be at least 1",
            ));
        }
        let t = &self.throttle;
        for (key, n) in [
            ("throttle.address_failures", t.address_failures),
            ("throttle.name_failures", t.name_failures),
            ("throttle.password_failures", t.password_failures),
            ("throttle.code_failures", t.code_failures),
        ] {
            if n == 0 {
                return Err(self.invalid(key, "must be at least 1"));
            }
        }
        for (key, p) in [
            ("limits.preauth_timeout", l.preauth_timeout),
            ("limits.upstream_timeout", l.upstream_timeout),
            ("limits.shutdown_grace", l.shutdown_grace),
            ("limits.tls_handshake_timeout", l.tls_handshake_timeout),
            ("limits.idle_imap", l.idle_imap),
            ("limits.idle_pop3", l.idle_pop3),
            ("limits.idle_smtp", l.idle_smtp),
            ("auth.cache_ttl", self.auth.cache_ttl),
            ("throttle.window", t.window),
            ("throttle.block", t.block),
            ("throttle.address_max_block", t.address_max_block),
            ("throttle.name_max_block", t.name_max_block),
            ("throttle.max_block", t.max_block),
        ] {
            if p.as_std().is_none() {
                return Err(self.invalid(key, "must be a fixed duration (s, m, h, d), not months"));
            }
        }
        Ok(())
    }

    /// `p` resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The upstream-secret key file, resolved.
    pub fn key_path(&self) -> PathBuf {
        self.resolve(&self.store.key_file)
    }

    /// The store's path, resolved.
    pub fn store_path(&self) -> PathBuf {
        self.resolve(&self.store.path)
    }

    /// Where the state lives.
    pub fn store_location(&self) -> crate::store::StoreLocation {
        match &self.store.url {
            Some(url) => crate::store::StoreLocation::Postgres(crate::store::PgLocation {
                url: url.clone(),
                password_file: self.store.password_file.as_ref().map(|f| self.resolve(f)),
                ca_file: self.store.ca_file.as_ref().map(|f| self.resolve(f)),
                pool_size: self.store.pool_size,
            }),
            None => crate::store::StoreLocation::Sqlite(self.store_path()),
        }
    }

    /// What the management layer takes.
    pub fn manage_settings(&self) -> crate::manage::ManageSettings {
        crate::manage::ManageSettings {
            policy: self.policy.settings(),
            totp_issuer: self.policy.totp_issuer.clone(),
            hash_cost: self.argon2.cost(),
            seal_key: self.key_path(),
            email: self.notices_emailed(),
            language: self.notices.language,
        }
    }

    /// How long records are kept.
    pub fn retention_settings(&self) -> crate::audit::retention::RetentionSettings {
        crate::audit::retention::RetentionSettings {
            history: self.history.retention,
            events: self.events.retention,
            notices: self.notices.retention,
            throttle_window: self.throttle.window.fixed(),
            zone: self.policy.settings().zone,
        }
    }

    /// What the owner's web page takes.
    pub(crate) fn web_settings(&self) -> crate::web::WebSettings {
        crate::web::WebSettings {
            idle: self.web.idle_timeout.fixed(),
            lifetime: self.web.session_lifetime.fixed(),
            history_page: self.web.history_page,
            language: self.notices.language,
            policy: self.policy.settings(),
            clients: self.mail_clients(),
            rp_id: self.web.public_host.clone(),
        }
    }

    /// What mail programs are told: `[clients]`, each protocol not named there from its
    /// first listener (implicit TLS preferred, never the archive listener).
    pub(crate) fn mail_clients(&self) -> crate::web::MailClients {
        let c = &self.clients;
        let from_listeners = |p: Protocol| {
            let mut own: Vec<_> = self
                .listeners
                .iter()
                .filter(|l| l.protocol == p && !l.archive)
                .collect();
            own.sort_by_key(|l| l.tls != ListenerTls::Implicit);
            own.first().map(|l| ClientServer {
                port: l.bind.port(),
                tls: l.tls,
            })
        };
        let servers = [
            (Protocol::Imap, c.imap),
            (Protocol::Pop3, c.pop3),
            (Protocol::Smtp, c.smtp),
        ]
        .into_iter()
        .filter_map(|(p, s)| {
            s.or_else(|| from_listeners(p))
                .map(|s| crate::web::MailServer {
                    protocol: p,
                    port: s.port,
                    implicit_tls: s.tls == ListenerTls::Implicit,
                })
        })
        .collect();
        crate::web::MailClients {
            host: c
                .host
                .clone()
                .or_else(crate::net::host_name)
                .unwrap_or_else(|| "localhost".into()),
            servers,
            domains: c.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// How each HTTPS listener (the page, the API's own) bounds its connections.
    pub(crate) fn web_limits(&self) -> crate::web::ConnectionLimits {
        let w = &self.web;
        crate::web::ConnectionLimits {
            max_connections: w.max_connections,
            max_connections_per_address: w.max_connections_per_address,
            tls_handshake: w.tls_handshake_timeout.fixed(),
            header: w.header_timeout.fixed(),
            body: w.body_timeout.fixed(),
            keep_alive: w.keep_alive_timeout.fixed(),
        }
    }

    /// What a reload (SIGHUP) may take from `new` into a running proxy: a copy of this
    /// configuration with the settings that change safely without rebinding or reopening
    /// anything — `[limits]` (but `max_connections`), `[throttle]`, `[policy]` (but
    /// `timezone`), `[notices]` (but the relay, `smtp`, and `retention`) and
    /// `auth.cache_ttl` — taken from
    /// `new`; and the keys of `new` that differ but need a restart, which are not taken.
    /// This is the one place that says what is reloadable.
    pub fn reloaded(&self, new: &Config) -> (Config, Vec<String>) {
        let mut merged = self.clone();
        merged.limits = Limits {
            max_connections: self.limits.max_connections,
            ..new.limits.clone()
        };
        merged.throttle = new.throttle.clone();
        merged.policy = PolicyConfig {
            timezone: self.policy.timezone.clone(),
            ..new.policy.clone()
        };
        merged.notices = NoticesConfig {
            smtp: self.notices.smtp.clone(),
            retention: self.notices.retention,
            ..new.notices.clone()
        };
        merged.auth.cache_ttl = new.auth.cache_ttl;
        merged.auth.breached_passwords_file = new.auth.breached_passwords_file.clone();
        merged.auth.refuse_breached = new.auth.refuse_breached;
        merged.clients = new.clients.clone();
        // What differs between what is taken and what was asked needs a restart: every
        // key, found from the settings' structure (a key added tomorrow cannot be
        // forgotten here).
        let restart = differing_keys(&merged, new);
        (merged, restart)
    }

    /// Whether notices are e-mailed at all: only with a relay (`[notices.smtp]`). The one
    /// place this is decided; `Mailbox::email_recipients` applies it.
    pub fn notices_emailed(&self) -> bool {
        self.notices.smtp.is_some()
    }

    /// What the login path takes.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        crate::auth::AuthSettings {
            cache_ttl: self.auth.cache_ttl.fixed(),
            zone: self.policy.settings().zone,
            main_password_alert_every: self.notices.main_password_alert_every,
            email: self.notices_emailed(),
            language: self.notices.language,
            cache_entries: self.auth.cache_entries,
            principal_entries: self.auth.principal_entries,
            hash_workers: self.auth.hash_workers,
            hash_queue: self.auth.hash_queue,
            throttle: self.throttle.settings(),
            breached_passwords: self
                .auth
                .breached_passwords_file
                .as_deref()
                .map(|p| self.resolve(p)),
            refuse_breached: self.auth.refuse_breached,
            history_sync: self.store.history_sync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/sentinella/config.toml"))
    }

    #[test]
    fn the_passkeys_host_is_a_dns_name() {
        assert!(parse("[web]\npublic_host = \"posta.example.it\"\n").is_ok());
        assert!(parse("[web]\npublic_host = \"localhost\"\n").is_ok());
        for bad in [
            "127.0.0.1",
            "::1",
            "posta.example.it:8443",
            "https://posta.example.it",
            "",
        ] {
            let e = parse(&format!("[web]\npublic_host = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("web.public_host"), "{bad}: {e}");
        }
    }

    /// The history journal is one node's: with a fleet's PostgreSQL store it is refused
    /// by name; on SQLite it is taken.
    #[test]
    fn the_history_journal_is_for_sqlite_only() {
        let on = "[store]\nhistory_sync = \"journal\"\n";
        let c = parse(on).unwrap();
        assert_eq!(c.store.history_sync, crate::store::HistorySync::Journal);
        let e = parse("[store]\nhistory_sync = \"journal\"\nurl = \"postgres://s@db:5432/s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store.history_sync") && e.contains("SQLite"),
            "{e}"
        );
        let e = parse("[store]\nhistory_sync = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("journal"), "{e}");
    }

    #[test]
    fn sessions_run_per_core_unless_shared_is_asked() {
        assert_eq!(parse("").unwrap().runtime.sessions, SessionThreads::PerCore);
        let c = parse("[runtime]\nsessions = \"shared\"\n").unwrap();
        assert_eq!(c.runtime.sessions, SessionThreads::Shared);
        let e = parse("[runtime]\nsessions = \"all\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("per-core") && e.contains("shared"), "{e}");
    }

    #[test]
    fn the_admin_listener_is_loopback_only() {
        assert!(parse("[admin]\nbind = \"127.0.0.1:9463\"\n").is_ok());
        assert!(parse("[admin]\nbind = \"[::1]:9463\"\n").is_ok());
        let e = parse("[admin]\nbind = \"0.0.0.0:9463\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.bind") && e.contains("loopback"), "{e}");
    }

    #[test]
    fn a_reload_takes_the_safe_settings_and_names_the_rest() {
        let text = include_str!("../config.toml");
        let running = parse(text).unwrap();
        let (same, restart) = running.reloaded(&parse(text).unwrap());
        assert!(restart.is_empty(), "{restart:?}");
        assert_eq!(format!("{same:?}"), format!("{running:?}"));

        let edited = [
            (
                "bad_commands_before_login = 10",
                "bad_commands_before_login = 3",
            ),
            ("max_connections = 10000", "max_connections = 7"),
            ("name_failures = 5", "name_failures = 2"),
            ("max_app_passwords = 1", "max_app_passwords = 4"),
            ("timezone = \"Europe/Rome\"", "timezone = \"UTC\""),
            ("iterations = 2", "iterations = 3"),
            ("127.0.0.1:10993", "127.0.0.1:20993"),
            ("[auth]\n", "[auth]\nprincipal_entries = 1234\n"),
            ("sessions = \"per-core\"", "sessions = \"shared\""),
        ]
        .iter()
        .fold(text.to_owned(), |t, (from, to)| {
            assert!(t.contains(from), "{from}");
            t.replacen(from, to, 1)
        });
        let new = parse(&edited).unwrap();
        let (merged, mut restart) = running.reloaded(&new);
        restart.sort_unstable();
        assert_eq!(
            restart,
            [
                "argon2.iterations",
                "auth.principal_entries",
                "limits.max_connections",
                "listener",
                "policy.timezone",
                "runtime.sessions"
            ]
        );
        // Taken: the safe settings.
        assert_eq!(merged.limits.bad_commands_before_login, 3);
        assert_eq!(merged.throttle.settings().name_failures, 2);
        assert_eq!(merged.policy.max_app_passwords, 4);
        // Kept: what needs a restart.
        assert_eq!(
            merged.limits.max_connections,
            running.limits.max_connections
        );
        assert_eq!(merged.policy.timezone, running.policy.timezone);
        assert_eq!(merged.argon2, running.argon2);
        assert_eq!(
            format!("{:?}", merged.listeners),
            format!("{:?}", running.listeners)
        );
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../config.toml");
        let cfg = parse(text).unwrap();
        // The shipped [web] states the defaults.
        assert_eq!(cfg.web_limits(), parse("").unwrap().web_limits());
        assert_eq!(cfg.policy.app_password_validity, Period::months(3));
        assert_eq!(cfg.policy.postpone_window, Period::days(14));
        assert_eq!(cfg.argon2, Argon2Config::default());
        assert!(!cfg.listeners.is_empty());
        assert!(
            cfg.listeners.iter().all(|l| l.bind.port() >= 1024),
            "quick start must run without root"
        );
    }

    #[test]
    fn empty_config_gets_defaults_and_relative_store() {
        let cfg = parse("").unwrap();
        assert_eq!(
            cfg.store_path(),
            PathBuf::from("/etc/sentinella/sentinella.db")
        );
        assert_eq!(
            cfg.argon2,
            Argon2Config {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert_eq!(cfg.policy.settings(), PolicySettings::default());
    }

    #[test]
    fn absolute_store_path_is_kept() {
        let cfg = parse("[store]\npath = \"/var/lib/s.db\"\n").unwrap();
        assert_eq!(cfg.store_path(), PathBuf::from("/var/lib/s.db"));
    }

    #[test]
    fn durations_accept_units() {
        let cfg = parse("[policy]\napp_password_validity = \"30d\"\npostpone_window = \"90s\"\n")
            .unwrap();
        assert_eq!(cfg.policy.app_password_validity, Period::days(30));
        assert_eq!(cfg.policy.postpone_window, Period::seconds(90));
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let e = err("[policy]\napp_password_validty = \"3mo\"\n");
        assert!(e.starts_with("/etc/sentinella/config.toml:"), "{e}");
        assert!(e.contains("app_password_validty"), "{e}");
    }

    #[test]
    fn bad_type_and_bad_value_name_the_key() {
        let e = err("[argon2]\nmemory_kib = \"lots\"\n");
        assert!(e.contains("memory_kib"), "{e}");
        let e = err("[policy]\npostpone_window = \"14 days\"\n");
        assert!(e.contains("postpone_window") && e.contains("days"), "{e}");
        let e = err("[argon2]\nmemory_kib = 1024\n");
        assert!(e.contains("argon2.memory_kib"), "{e}");
        let e = err("[argon2]\niterations = 0\n");
        assert!(e.contains("argon2"), "{e}");
    }

    const UPSTREAM: &str = "[upstream.dovecot]\nhost = \"127.0.0.1\"\nport = 143\ntls = \"starttls\"\nlogin = { mode = \"stored\" }\n";

    #[test]
    fn upstream_login_modes() {
        let cfg = parse(&UPSTREAM.replace(
            "{ mode = \"stored\" }",
            "{ mode = \"master\", user = \"proxy\", password_file = \"m.pass\" }",
        ))
        .unwrap();
        assert!(
            matches!(&cfg.upstreams["dovecot"].login, UpstreamLogin::Master { user, .. } if user == "proxy")
        );
        let e = err(&UPSTREAM.replace(
            "{ mode = \"stored\" }",
            "{ mode = \"master\", user = \"proxy\" }",
        ));
        assert!(e.contains("password_file"), "{e}");
        let e = err(&UPSTREAM.replace("{ mode = \"stored\" }", "{ mode = \"magic\" }"));
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(parse("").unwrap().limits.failed_logins_per_connection, 3);
        let e = err("[limits]\npreauth_timeout = \"1mo\"\n");
        assert!(e.contains("limits.preauth_timeout"), "{e}");
        let e = err("[limits]\nmax_line = 10\n");
        assert!(e.contains("limits.max_line"), "{e}");
        let e = err("[limits]\nmax_conections = 10\n");
        assert!(e.contains("max_conections"), "{e}");
    }

    #[test]
    fn web_connection_bounds_have_defaults_and_are_checked() {
        let l = parse("").unwrap().web_limits();
        let s = std::time::Duration::from_secs;
        assert_eq!(
            l,
            crate::web::ConnectionLimits {
                max_connections: 512,
                max_connections_per_address: 16,
                tls_handshake: s(10),
                header: s(10),
                body: s(30),
                keep_alive: s(60),
            }
        );
        let cfg = parse("[web]\nheader_timeout = \"2s\"\nmax_connections = 8\n").unwrap();
        assert_eq!(cfg.web_limits().header, s(2));
        assert_eq!(cfg.web_limits().max_connections, 8);
        for (bad, key) in [
            ("max_connections = 0", "web.max_connections"),
            (
                "max_connections_per_address = 0",
                "web.max_connections_per_address",
            ),
            (
                "tls_handshake_timeout = \"1mo\"",
                "web.tls_handshake_timeout",
            ),
            ("header_timeout = \"1mo\"", "web.header_timeout"),
            ("body_timeout = \"1mo\"", "web.body_timeout"),
            ("keep_alive_timeout = \"1mo\"", "web.keep_alive_timeout"),
            // A zero period does not parse at all.
            ("keep_alive_timeout = \"0s\"", "longer than zero"),
        ] {
            let e = err(&format!("[web]\n{bad}\n"));
            assert!(e.contains(key), "{bad}: {e}");
        }
        let e = err("[web]\nkeepalive_timeout = \"1m\"\n");
        assert!(e.contains("keepalive_timeout"), "{e}");
    }

    #[test]
    fn listener_must_name_a_defined_upstream() {
        let e = err(
            "[[listener]]\nname = \"imaps\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:10993\"\ntls = \"implicit\"\nupstream = \"nope\"\n",
        );
        assert!(
            e.contains("listener[0].upstream") && e.contains("upstream.nope"),
            "{e}"
        );
    }

    #[test]
    fn listener_names_and_binds_are_unique() {
        let l = "[[listener]]\nname = \"a\"\nprotocol = \"imap\"\nbind = \"127.0.0.1:10993\"\ntls = \"implicit\"\nupstream = \"dovecot\"\n";
        let e = err(&format!("{UPSTREAM}{l}{l}"));
        assert!(e.contains("listener[1].name"), "{e}");
        let l2 = l.replace("name = \"a\"", "name = \"b\"");
        let e = err(&format!("{UPSTREAM}{l}{l2}"));
        assert!(e.contains("listener[1].bind"), "{e}");
    }

    #[test]
    fn archive_listener_must_be_implicit_imap() {
        let l = "[[listener]]\nname = \"a\"\nprotocol = \"pop3\"\nbind = \"127.0.0.1:10995\"\ntls = \"implicit\"\narchive = true\nupstream = \"dovecot\"\n";
        let e = err(&format!("{UPSTREAM}{l}"));
        assert!(e.contains("listener[0].archive"), "{e}");
    }

    #[test]
    fn bad_enum_values_are_named() {
        let e = err(
            "[[listener]]\nname = \"a\"\nprotocol = \"nntp\"\nbind = \"127.0.0.1:1\"\ntls = \"implicit\"\nupstream = \"x\"\n",
        );
        assert!(e.contains("nntp"), "{e}");
        let e = err(&UPSTREAM.replace("starttls", "maybe"));
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn the_app_password_limit_is_bounded() {
        assert_eq!(parse("").unwrap().policy.settings().max_app_passwords, 1);
        let ok = parse("[policy]\nmax_app_passwords = 20").unwrap();
        assert_eq!(ok.policy.settings().max_app_passwords, 20);
        for bad in ["0", "101"] {
            let e = parse(&format!("[policy]\nmax_app_passwords = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("policy.max_app_passwords"), "{e}");
        }
    }

    #[test]
    fn the_timezone_is_checked() {
        assert_eq!(parse("").unwrap().policy.timezone, "Europe/Rome");
        let utc = parse("[policy]\ntimezone = \"UTC\"").unwrap();
        assert_eq!(utc.policy.settings().zone, jiff::tz::TimeZone::UTC);
        let e = parse("[policy]\ntimezone = \"Europe/Roma\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("policy.timezone") && e.contains("Europe/Roma"),
            "{e}"
        );
    }
}
