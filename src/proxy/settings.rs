//! The proxy's settings: its `[limits]`, each `[[listener]]` and `[upstream.NAME]`. The
//! configuration file's model embeds these types as they are (each default stated once,
//! here); start-up (`crate::serve`) hands them to the proxy, which reads nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::{Network, TlsMode};
use crate::policy::{Period, Protocol};

/// `[limits]`: what one client may cost before it is cut off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest command line or literal accepted before login, in bytes.
    pub max_line: u32,
    /// Total bytes a client may send before it has logged in.
    pub preauth_bytes: u64,
    /// Time a client has to log in (TLS handshake included).
    pub preauth_timeout: Period,
    /// Failed logins on one connection before it is closed.
    pub failed_logins_per_connection: u32,
    /// Bad or unknown commands before login on one connection before it is closed.
    pub bad_commands_before_login: u32,
    /// Connections open at once, over all listeners.
    pub max_connections: u32,
    /// Time to connect and log in to an upstream.
    pub upstream_timeout: Period,
    /// How long `serve` waits for open sessions after SIGINT / SIGTERM (each relayed
    /// session ends at its next quiet moment; this bounds the wait).
    pub shutdown_grace: Period,
    /// Time to complete a TLS handshake (implicit, or after STARTTLS).
    pub tls_handshake_timeout: Period,
    /// Connections open at once from one client address (IPv6: one /64).
    pub max_connections_per_address: u32,
    /// An IMAP session after login is closed after this long with no traffic either way
    /// (RFC 9051 5.4: at least 30 minutes, so IDLE clients survive).
    pub idle_imap: Period,
    /// The same for POP3 (RFC 1939 3: at least 10 minutes).
    pub idle_pop3: Period,
    /// The same for SMTP submission (RFC 5321 4.5.3.2.7: 5 minutes).
    pub idle_smtp: Period,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            preauth_bytes: 64 * 1024,
            preauth_timeout: Period::seconds(60),
            failed_logins_per_connection: 3,
            bad_commands_before_login: 10,
            max_connections: 10_000,
            upstream_timeout: Period::seconds(15),
            shutdown_grace: Period::seconds(30),
            tls_handshake_timeout: Period::seconds(10),
            max_connections_per_address: 100,
            idle_imap: Period::seconds(30 * 60),
            idle_pop3: Period::seconds(10 * 60),
            idle_smtp: Period::seconds(5 * 60),
        }
    }
}

impl Limits {
    /// The idle timeout after login for `protocol`.
    pub fn idle(&self, protocol: Protocol) -> Duration {
        match protocol {
            Protocol::Imap => self.idle_imap,
            Protocol::Pop3 => self.idle_pop3,
            Protocol::Smtp => self.idle_smtp,
        }
        .fixed()
    }
}

/// How a listener offers TLS to clients.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// TLS from the first byte (993, 995, 465).
    Implicit,
    /// Plain text until STARTTLS / STLS (143, 110, 587); no login before TLS.
    Starttls,
}

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// A name for logs and the access history.
    pub name: String,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Implicit TLS or STARTTLS.
    pub tls: ListenerTls,
    /// Whether this is the security-archive listener (IMAP, implicit TLS, pro/premium).
    #[serde(default)]
    pub archive: bool,
    /// The `[upstream.NAME]` sessions are relayed to.
    pub upstream: String,
    /// Load balancers allowed to send the PROXY protocol header (v1 or v2), as networks
    /// (`"10.0.0.0/24"`, `"127.0.0.1"`). Empty (the default): no header is expected, and
    /// one sent is just bad bytes. Set: every connection must come from one of these and
    /// start with a header, whose client address is then the one throttled, limited,
    /// recorded and told to the upstream; a connection from anywhere else is closed.
    #[serde(default)]
    pub proxy_protocol_from: Vec<Network>,
}

/// `[upstream.NAME]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name to check the upstream's certificate against (default: `host`).
    #[serde(default)]
    pub tls_name: Option<String>,
    /// How the proxy logs in as the user.
    pub login: UpstreamLogin,
    /// Tell the upstream the client's real address (off by default): IMAP `ID` with
    /// `x-originating-ip`/`-port` and `x-connected-ip`/`-port`, POP3 and SMTP `XCLIENT
    /// ADDR=… PORT=…`. The upstream must trust the proxy (Dovecot:
    /// `login_trusted_networks`; Postfix: `smtpd_authorized_xclient_hosts`).
    #[serde(default)]
    pub forward_client: bool,
    /// Who checks main passwords: `"local"` (Sentinella's own hash; the default) or
    /// `"upstream"` (pass-through): for a name Sentinella holds no mailbox for, or a
    /// mailbox with 2FA off, the client's name and password are passed to this upstream
    /// and its answer decides — so the server's own password stays the only one. A
    /// mailbox with 2FA on gets in only with its app password, checked here; its main
    /// password is refused here and never sent on.
    #[serde(default)]
    pub main_password: MainPassword,
}

/// Who checks main passwords, per upstream.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MainPassword {
    /// Sentinella, against its own hash.
    #[default]
    Local,
    /// The upstream, with the client's own credentials (pass-through).
    Upstream,
}

/// How the proxy logs in to the upstream on the user's behalf.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum UpstreamLogin {
    /// SASL PLAIN with authorization identity = the mailbox and authentication identity =
    /// a master user (Dovecot master users work this way).
    Master {
        /// The master user's name.
        user: String,
        /// A file holding the master user's password (first line).
        password_file: PathBuf,
    },
    /// LOGIN with a per-mailbox secret set by `mailbox set-upstream-secret`, kept
    /// encrypted at rest.
    Stored,
}
