//! Connecting and logging in to the upstream mail server on the user's behalf.
//!
//! The generic part (TCP, implicit TLS, a bounded line reader) is shared by every
//! protocol; each protocol adds its own greeting check, STARTTLS and login dialogue.
//! Anything unexpected — a PREAUTH greeting, a refused login, a malformed answer — is an
//! [`UpstreamError`], which the client sees as a temporary failure, never as
//! "authentication failed".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::Conn;
use crate::net::TlsMode;
use crate::proxy::settings::UpstreamSettings;
use crate::secret::Secret;

/// Longest line accepted from an upstream before login completes.
const MAX_LINE: usize = 64 * 1024;

/// Why the upstream session could not be established.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing failed, or the upstream closed the connection.
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake with the upstream failed.
    #[error("upstream TLS: {0}")]
    Tls(String),
    /// The upstream said something we did not expect.
    #[error("unexpected upstream answer: {0}")]
    Protocol(String),
    /// The upstream refused our login.
    #[error("upstream refused the login: {0}")]
    LoginRefused(String),
    /// Connecting and logging in took too long.
    #[error("upstream timed out")]
    Timeout,
}

impl UpstreamError {
    /// A short, bounded name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Io(_) => "io",
            UpstreamError::Tls(_) => "tls",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::LoginRefused(_) => "login_refused",
            UpstreamError::Timeout => "timeout",
        }
    }
}

/// How the proxy proves itself to the upstream.
pub enum UpstreamCredential {
    /// SASL PLAIN as `master` on behalf of the mailbox.
    Master {
        /// Master user name.
        user: String,
        /// Master password.
        password: Arc<Secret>,
    },
    /// The mailbox's own upstream secret.
    Stored(Secret),
    /// The client's own password, passed through (`main_password = "upstream"`): the
    /// same plain login as a stored secret, with the name the client gave.
    Client(Secret),
}

/// One configured upstream, ready to connect.
pub struct Upstream {
    /// Its configuration.
    pub config: UpstreamSettings,
    tls: Option<Arc<ClientConfig>>,
    /// The master password, for `login.mode = "master"`.
    pub master_password: Option<Arc<Secret>>,
    /// SMTP: the extensions the upstream announced in its EHLO, and when they were read.
    smtp_extensions: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<String>>)>>,
    /// A host name's addresses and when they were looked up ([`RESOLVE_EVERY`]).
    resolved: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<SocketAddr>>)>>,
}

/// How long a host name's addresses are used before they are looked up again. A failed
/// connection looks them up at the next one (a server that moved is followed then).
pub const RESOLVE_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({}:{})", self.config.host, self.config.port)
    }
}

/// A line-oriented reader over a connection, with a length cap; keeps whatever follows
/// the last line it returned.
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> Self {
        LineReader { buf: Vec::new() }
    }

    /// The next line (without CRLF).
    pub async fn line(&mut self, conn: &mut Conn) -> Result<String, UpstreamError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(UpstreamError::Protocol("line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(UpstreamError::Protocol("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Bytes read past the last line (to be relayed to the client).
    pub fn into_leftover(self) -> Vec<u8> {
        self.buf
    }

    /// Whether bytes are buffered (must be empty before a TLS handshake).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    /// Prepares an upstream: its TLS trust and, for master logins, the password.
    pub fn new(
        config: UpstreamSettings,
        tls: Option<Arc<ClientConfig>>,
        master_password: Option<Arc<Secret>>,
    ) -> Self {
        Upstream {
            config,
            tls,
            master_password,
            smtp_extensions: tokio::sync::Mutex::new(None),
            resolved: std::sync::Mutex::new(None),
        }
    }

    /// Where to connect: the address itself for an IP address (IPv6 without brackets
    /// too), else the host name's addresses — looked up at most once per
    /// [`RESOLVE_EVERY`] (not once per login: a lookup is a blocking thread's call and,
    /// without a local cache, a DNS query).
    async fn addresses(&self) -> std::io::Result<Arc<Vec<SocketAddr>>> {
        let (host, port) = (self.config.host.as_str(), self.config.port);
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            return Ok(Arc::new(vec![SocketAddr::new(ip, port)]));
        }
        let lock = || self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addrs)) = lock().as_ref()
            && at.elapsed() < RESOLVE_EVERY
        {
            return Ok(Arc::clone(addrs));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        let addrs = Arc::new(addrs);
        *lock() = Some((std::time::Instant::now(), Arc::clone(&addrs)));
        Ok(addrs)
    }

    /// Connects to the first of the host's addresses that answers.
    async fn connect_tcp(&self) -> std::io::Result<TcpStream> {
        let addrs = self.addresses().await?;
        let mut last = None;
        for addr in addrs.iter() {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        // None answered: look the name up again next time.
        *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Err(last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
    }

    /// The credential to log in as the mailbox with.
    pub fn credential(&self, stored: Option<Secret>) -> Option<UpstreamCredential> {
        match (&self.config.login, &self.master_password, stored) {
            (crate::proxy::settings::UpstreamLogin::Master { user, .. }, Some(pw), _) => {
                Some(UpstreamCredential::Master {
                    user: user.clone(),
                    password: Arc::clone(pw),
                })
            }
            (crate::proxy::settings::UpstreamLogin::Stored, _, Some(s)) => {
                Some(UpstreamCredential::Stored(s))
            }
            _ => None,
        }
    }

    /// Opens TCP and, for implicit TLS, the TLS session.
    pub async fn connect(&self) -> Result<Conn, UpstreamError> {
        let started = std::time::Instant::now();
        let tcp = self
            .connect_tcp()
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: format!("{}:{}", self.config.host, self.config.port),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let conn = match self.config.tls {
            TlsMode::Implicit => self.start_tls(Conn::Plain(tcp)).await?,
            TlsMode::Starttls | TlsMode::None => Conn::Plain(tcp),
        };
        crate::metrics::METRICS
            .upstream_connect
            .observe(started.elapsed());
        Ok(conn)
    }

    /// Runs the TLS handshake over a plain connection.
    pub async fn start_tls(&self, conn: Conn) -> Result<Conn, UpstreamError> {
        let Conn::Plain(tcp) = conn else {
            return Err(UpstreamError::Tls("already TLS".into()));
        };
        let config = self
            .tls
            .clone()
            .ok_or_else(|| UpstreamError::Tls("no TLS configuration".into()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(self.server_name()?, tcp)
            .await
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        Ok(Conn::ClientTls(Box::new(tls)))
    }

    /// The name the upstream's certificate must carry: `tls_name`, else the host (an
    /// IPv6 address given in brackets is the address).
    fn server_name(&self) -> Result<ServerName<'static>, UpstreamError> {
        let name = match &self.config.tls_name {
            Some(n) => n.clone(),
            None => {
                let host = &self.config.host;
                host.strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host)
                    .to_owned()
            }
        };
        ServerName::try_from(name).map_err(|e| UpstreamError::Tls(e.to_string()))
    }

    /// Whether the upstream wants STARTTLS before login.
    pub fn wants_starttls(&self) -> bool {
        self.config.tls == TlsMode::Starttls
    }
}

/// Runs `f` under `timeout`, mapping elapsed time to [`UpstreamError::Timeout`].
pub async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

/// SASL PLAIN's message for logging in as `user` with `authcid`/`password`
/// (authorization identity = user), base64-encoded.
pub fn sasl_plain(authzid: &str, authcid: &str, password: &Secret) -> Secret {
    let raw = zeroize::Zeroizing::new(format!("{authzid}\0{authcid}\0{}", password.expose()));
    Secret::new(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()))
}

/// Refuses values that would break a line-based protocol (CR, LF, NUL).
fn single_line(s: &str) -> Result<&str, UpstreamError> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(UpstreamError::Protocol(
            "value contains a line break or NUL".into(),
        ));
    }
    Ok(s)
}

/// Logs in to the upstream for `protocol` as `user`; returns the connection, what the
/// upstream can do (IMAP capabilities, SMTP extensions; empty for POP3) and any bytes it
/// sent past the login dialogue.
pub async fn login(
    protocol: crate::policy::Protocol,
    up: &Upstream,
    user: &str,
    credential: &UpstreamCredential,
    client_name: Option<&str>,
    origin: Option<&Origin>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    use crate::policy::Protocol;
    // The client's address goes upstream only where the operator asked for it: the
    // upstream honours it only from its trusted networks, and logs it as the client's.
    let origin = origin.filter(|_| up.config.forward_client);
    match protocol {
        Protocol::Imap => imap_login(up, user, credential, origin).await,
        Protocol::Pop3 => pop3_login(up, user, credential, origin).await,
        Protocol::Smtp => {
            let name = client_name.unwrap_or("sentinella");
            smtp_login(up, user, credential, name, origin).await
        }
    }
}

/// Where a session comes from: the client's address and port, and the address and port
/// it connected to (both as the PROXY protocol header gave them, behind a balancer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client.
    pub client: std::net::SocketAddr,
    /// The proxy's address it reached.
    pub connected: std::net::SocketAddr,
}

impl Origin {
    /// IMAP `ID` with Dovecot's proxy fields (RFC 2971; `x-originating-*`,
    /// `x-connected-*`).
    fn imap_id(&self, tag: &str) -> String {
        format!(
            "{tag} ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\" \"x-connected-ip\" \"{}\" \"x-connected-port\" \"{}\")\r\n",
            self.client.ip(),
            self.client.port(),
            self.connected.ip(),
            self.connected.port()
        )
    }

    /// `XCLIENT ADDR=… PORT=…` (Postfix's XCLIENT, as Dovecot's POP3 and submission
    /// accept it); SMTP spells IPv6 addresses with an `IPV6:` prefix.
    fn xclient(&self, smtp: bool) -> String {
        let ip = self.client.ip();
        let addr = match ip {
            std::net::IpAddr::V6(v6) if smtp => format!("IPV6:{v6}"),
            _ => ip.to_string(),
        };
        format!("XCLIENT ADDR={addr} PORT={}\r\n", self.client.port())
    }
}

// ---- POP3 -------------------------------------------------------------------------------

async fn pop3_ok(
    conn: &mut Conn,
    reader: &mut LineReader,
    what: &str,
) -> Result<String, UpstreamError> {
    let line = reader.line(conn).await?;
    if line.starts_with("+OK") {
        Ok(line)
    } else {
        Err(UpstreamError::Protocol(format!("{what}: {line}")))
    }
}

/// Logs in to a POP3 upstream (RFC 1939 USER/PASS, RFC 5034 AUTH PLAIN).
pub async fn pop3_login(
    up: &Upstream,
    user: &str,
    credential: &UpstreamCredential,
    origin: Option<&Origin>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let mut conn = up.connect().await?;
    let mut reader = LineReader::new();
    pop3_ok(&mut conn, &mut reader, "greeting").await?;
    if up.wants_starttls() {
        conn.write_all(b"STLS\r\n").await?;
        pop3_ok(&mut conn, &mut reader, "STLS").await?;
        if !reader.is_empty() {
            return Err(UpstreamError::Protocol("data after STLS response".into()));
        }
        conn = up.start_tls(conn).await?;
    }
    if let Some(origin) = origin {
        conn.write_all(origin.xclient(false).as_bytes()).await?;
        if let Err(e) = pop3_ok(&mut conn, &mut reader, "XCLIENT").await {
            // Not trusted by the upstream: it logs the proxy's address, nothing worse.
            tracing::warn!(upstream = %up.config.host, error = %e, "the upstream refused XCLIENT; add the proxy to its trusted networks");
        }
    }
    let refused = |e: UpstreamError| match e {
        UpstreamError::Protocol(m) => UpstreamError::LoginRefused(m),
        other => other,
    };
    match credential {
        UpstreamCredential::Master {
            user: master,
            password,
        } => {
            let cmd = Secret::new(format!(
                "AUTH PLAIN {}\r\n",
                sasl_plain(user, master, password).expose()
            ));
            conn.write_all(cmd.expose().as_bytes()).await?;
            pop3_ok(&mut conn, &mut reader, "AUTH")
                .await
                .map_err(refused)?;
        }
        UpstreamCredential::Stored(secret) | UpstreamCredential::Client(secret) => {
            conn.write_all(format!("USER {}\r\n", single_line(user)?).as_bytes())
                .await?;
            pop3_ok(&mut conn, &mut reader, "USER")
                .await
                .map_err(refused)?;
            let cmd = Secret::new(format!("PASS {}\r\n", single_line(secret.expose())?));
            conn.write_all(cmd.expose().as_bytes()).await?;
            pop3_ok(&mut conn, &mut reader, "PASS")
                .await
                .map_err(refused)?;
        }
    }
    Ok((conn, String::new(), reader.into_leftover()))
}

// ---- SMTP -------------------------------------------------------------------------------

/// Reads one (possibly multi-line) SMTP reply: its code and the text of each line.
async fn smtp_reply(
    conn: &mut Conn,
    reader: &mut LineReader,
) -> Result<(u16, Vec<String>), UpstreamError> {
    let mut lines = Vec::new();
    loop {
        let line = reader.line(conn).await?;
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(UpstreamError::Protocol(format!("malformed reply: {line}")));
        };
        let more = line.as_bytes().get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if !more {
            return Ok((code, lines));
        }
        if lines.len() > 1000 {
            return Err(UpstreamError::Protocol("reply too long".into()));
        }
    }
}

async fn smtp_expect(
    conn: &mut Conn,
    reader: &mut LineReader,
    want: u16,
    what: &str,
) -> Result<Vec<String>, UpstreamError> {
    let (code, lines) = smtp_reply(conn, reader).await?;
    if code == want {
        Ok(lines)
    } else {
        Err(UpstreamError::Protocol(format!(
            "{what}: {code} {}",
            lines.join(" / ")
        )))
    }
}

/// Greeting, EHLO, and STARTTLS + EHLO again where configured. Returns the extensions.
async fn smtp_hello(
    up: &Upstream,
    name: &str,
) -> Result<(Conn, LineReader, Vec<String>), UpstreamError> {
    let mut conn = up.connect().await?;
    let mut reader = LineReader::new();
    smtp_expect(&mut conn, &mut reader, 220, "greeting").await?;
    let ehlo = format!("EHLO {}\r\n", single_line(name)?);
    conn.write_all(ehlo.as_bytes()).await?;
    let mut extensions = smtp_expect(&mut conn, &mut reader, 250, "EHLO").await?;
    if up.wants_starttls() {
        conn.write_all(b"STARTTLS\r\n").await?;
        smtp_expect(&mut conn, &mut reader, 220, "STARTTLS").await?;
        if !reader.is_empty() {
            return Err(UpstreamError::Protocol(
                "data after STARTTLS response".into(),
            ));
        }
        conn = up.start_tls(conn).await?;
        conn.write_all(ehlo.as_bytes()).await?;
        extensions = smtp_expect(&mut conn, &mut reader, 250, "EHLO").await?;
    }
    // The first line is the server's name, the rest are extensions.
    extensions.remove(0);
    Ok((conn, reader, extensions))
}

/// Logs in to an SMTP submission upstream (RFC 4954 AUTH PLAIN), greeting it with the
/// name the client gave in its own EHLO.
pub async fn smtp_login(
    up: &Upstream,
    user: &str,
    credential: &UpstreamCredential,
    client_name: &str,
    origin: Option<&Origin>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let (mut conn, mut reader, mut extensions) = smtp_hello(up, client_name).await?;
    let offers_xclient = extensions
        .iter()
        .any(|e| e.split_whitespace().next() == Some("XCLIENT"));
    match origin {
        Some(origin) if offers_xclient => {
            conn.write_all(origin.xclient(true).as_bytes()).await?;
            let (code, lines) = smtp_reply(&mut conn, &mut reader).await?;
            match code {
                // Postfix's semantics: the session starts again, greeting and EHLO.
                220 => {
                    let ehlo = format!("EHLO {}\r\n", single_line(client_name)?);
                    conn.write_all(ehlo.as_bytes()).await?;
                    extensions = smtp_expect(&mut conn, &mut reader, 250, "EHLO").await?;
                    extensions.remove(0);
                }
                250 => {}
                _ => {
                    tracing::warn!(upstream = %up.config.host, code, reply = %lines.join(" / "), "the upstream refused XCLIENT")
                }
            }
        }
        Some(_) => {
            tracing::warn!(upstream = %up.config.host, "the upstream does not offer XCLIENT to the proxy; add the proxy to its trusted networks")
        }
        None => {}
    }
    let blob = match credential {
        UpstreamCredential::Master {
            user: master,
            password,
        } => sasl_plain(user, master, password),
        UpstreamCredential::Stored(secret) | UpstreamCredential::Client(secret) => {
            sasl_plain("", user, secret)
        }
    };
    let cmd = Secret::new(format!("AUTH PLAIN {}\r\n", blob.expose()));
    conn.write_all(cmd.expose().as_bytes()).await?;
    drop(cmd);
    let (code, lines) = smtp_reply(&mut conn, &mut reader).await?;
    match code {
        235 => Ok((conn, extensions.join("\n"), reader.into_leftover())),
        535 | 534 | 530 => Err(UpstreamError::LoginRefused(format!(
            "{code} {}",
            lines.join(" / ")
        ))),
        _ => Err(UpstreamError::Protocol(format!(
            "AUTH: {code} {}",
            lines.join(" / ")
        ))),
    }
}

/// How long a learned EHLO extension list is reused.
const EXTENSIONS_TTL: Duration = Duration::from_secs(300);

/// Extensions to announce when the upstream cannot be asked (it is down): the ones
/// every submission server has. Logins will then fail with a temporary error anyway.
const FALLBACK_EXTENSIONS: [&str; 3] = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"];

impl Upstream {
    /// The upstream's EHLO extensions, asked for at most every five minutes.
    pub async fn smtp_extensions(&self, timeout: Duration) -> Arc<Vec<String>> {
        let mut cached = self.smtp_extensions.lock().await;
        if let Some((at, list)) = cached.as_ref()
            && at.elapsed() < EXTENSIONS_TTL
        {
            return Arc::clone(list);
        }
        let probe = async {
            let (mut conn, mut reader, extensions) = smtp_hello(self, "sentinella").await?;
            conn.write_all(b"QUIT\r\n").await?;
            let _ = smtp_reply(&mut conn, &mut reader).await;
            Ok(extensions)
        };
        match within(timeout, probe).await {
            Ok(list) => {
                let list = Arc::new(list);
                *cached = Some((std::time::Instant::now(), Arc::clone(&list)));
                list
            }
            Err(e) => {
                tracing::warn!(upstream = %self.config.host, port = self.config.port, error = %e, "cannot read the upstream's SMTP extensions; announcing a minimal set");
                Arc::new(FALLBACK_EXTENSIONS.map(String::from).to_vec())
            }
        }
    }
}

// ---- IMAP -------------------------------------------------------------------------------

/// An IMAP quoted string, or an error if the value cannot be one (CR, LF, NUL).
fn imap_quoted(s: &str) -> Result<String, UpstreamError> {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(UpstreamError::Protocol(
            "value not representable as an IMAP quoted string".into(),
        ));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Reads until the tagged response for `tag`; returns (status line, untagged CAPABILITY
/// if one came).
async fn imap_tagged(
    conn: &mut Conn,
    reader: &mut LineReader,
    tag: &str,
) -> Result<(String, Option<String>), UpstreamError> {
    let mut caps = None;
    loop {
        let line = reader.line(conn).await?;
        if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
            return Ok((rest.to_owned(), caps));
        }
        if let Some(c) = line.strip_prefix("* CAPABILITY ") {
            caps = Some(c.trim().to_owned());
        } else if line.starts_with("* BYE") {
            return Err(UpstreamError::Protocol(line));
        } else if line.starts_with('+') {
            return Err(UpstreamError::Protocol(format!(
                "unexpected continuation: {line}"
            )));
        }
    }
}

/// The `[CAPABILITY …]` response code of a status line, if any.
fn capability_code(status: &str) -> Option<String> {
    let start = status.find("[CAPABILITY ")? + "[CAPABILITY ".len();
    let end = status[start..].find(']')? + start;
    Some(status[start..end].trim().to_owned())
}

/// Logs in to an IMAP upstream as `user`. Returns the connection, the upstream's
/// post-login capabilities, and any bytes it sent past the login dialogue.
pub async fn imap_login(
    up: &Upstream,
    user: &str,
    credential: &UpstreamCredential,
    origin: Option<&Origin>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let mut conn = up.connect().await?;
    let mut reader = LineReader::new();
    let greeting = reader.line(&mut conn).await?;
    if greeting.starts_with("* PREAUTH") {
        return Err(UpstreamError::Protocol(
            "PREAUTH greeting: the upstream logged us in as someone".into(),
        ));
    }
    if !greeting.starts_with("* OK") {
        return Err(UpstreamError::Protocol(format!("greeting: {greeting}")));
    }
    if up.wants_starttls() {
        conn.write_all(b"S0 STARTTLS\r\n").await?;
        let (status, _) = imap_tagged(&mut conn, &mut reader, "S0").await?;
        if !status.starts_with("OK") {
            return Err(UpstreamError::Protocol(format!("STARTTLS: {status}")));
        }
        if !reader.is_empty() {
            return Err(UpstreamError::Protocol(
                "data after STARTTLS response".into(),
            ));
        }
        conn = up.start_tls(conn).await?;
    }
    // The client's origin (ID) and the login go in one write: one round trip, not two.
    let id = origin.map(|o| o.imap_id("S0")).unwrap_or_default();
    let command = match credential {
        UpstreamCredential::Master {
            user: master,
            password,
        } => Secret::new(format!(
            "{id}S1 AUTHENTICATE PLAIN {}\r\n",
            sasl_plain(user, master, password).expose()
        )),
        UpstreamCredential::Stored(secret) | UpstreamCredential::Client(secret) => {
            Secret::new(format!(
                "{id}S1 LOGIN {} {}\r\n",
                imap_quoted(user)?,
                imap_quoted(secret.expose())?
            ))
        }
    };
    conn.write_all(command.expose().as_bytes()).await?;
    drop(command);
    if !id.is_empty() {
        let (status, _) = imap_tagged(&mut conn, &mut reader, "S0").await?;
        if !status.starts_with("OK") {
            tracing::warn!(upstream = %up.config.host, status = %status, "the upstream refused ID");
        }
    }
    let (status, untagged) = imap_tagged(&mut conn, &mut reader, "S1").await?;
    if !status.starts_with("OK") {
        return Err(UpstreamError::LoginRefused(status));
    }
    let caps = match capability_code(&status).or(untagged) {
        Some(c) => c,
        None => {
            conn.write_all(b"S2 CAPABILITY\r\n").await?;
            let (status, caps) = imap_tagged(&mut conn, &mut reader, "S2").await?;
            if !status.starts_with("OK") {
                return Err(UpstreamError::Protocol(format!("CAPABILITY: {status}")));
            }
            caps.ok_or_else(|| UpstreamError::Protocol("no CAPABILITY response".into()))?
        }
    };
    Ok((conn, caps, reader.into_leftover()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_capability_codes() {
        assert_eq!(imap_quoted("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(imap_quoted("a\r\nb").is_err());
        assert_eq!(
            capability_code("OK [CAPABILITY IMAP4rev1 IDLE SORT] Logged in").as_deref(),
            Some("IMAP4rev1 IDLE SORT")
        );
        assert_eq!(capability_code("OK Logged in"), None);
    }

    #[test]
    fn plain_message_names_the_user_as_authorization_identity() {
        let m = sasl_plain("mario@x.it", "proxy", &Secret::new("pw".into()));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(m.expose())
            .unwrap();
        assert_eq!(raw, b"mario@x.it\0proxy\0pw");
    }
}

#[cfg(test)]
mod wire_tests {
    //! The upstream dialogue against a scripted loopback server (a unit test; the real
    //! Dovecot runs in tests/imap.rs).

    use super::*;
    use crate::proxy::settings::UpstreamLogin;
    use tokio::io::AsyncBufReadExt;

    /// Serves one connection: sends `greeting`, then answers each command line with
    /// `answer` (the tag substituted for `{tag}`).
    async fn scripted(greeting: &'static str, answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(greeting.as_bytes()).await.unwrap();
            let (r, mut w) = s.split();
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let tag = line.split(' ').next().unwrap_or("*").to_owned();
                if w.write_all(answer.replace("{tag}", &tag).as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        port
    }

    /// Accepts connections on `addr` until dropped; returns its port.
    async fn accepting(addr: &str) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        (port, task)
    }

    fn upstream_at(host: &str, port: u16) -> Upstream {
        let mut up = upstream(port);
        up.config.host = host.into();
        up
    }

    #[tokio::test]
    async fn an_ipv6_address_connects_with_or_without_brackets() {
        let (port, _server) = accepting("[::1]:0").await;
        for host in ["::1", "[::1]"] {
            let up = upstream_at(host, port);
            assert!(up.connect().await.is_ok(), "{host}");
            assert!(
                up.resolved.lock().unwrap().is_none(),
                "an address is not looked up"
            );
        }
    }

    #[test]
    fn the_certificate_name_is_the_tls_name_or_the_host_without_brackets() {
        let name = |host: &str, tls_name: Option<&str>| {
            let mut up = upstream_at(host, 993);
            up.config.tls_name = tls_name.map(Into::into);
            up.server_name().map(|n| n.to_str().into_owned())
        };
        assert_eq!(name("[::1]", None).unwrap(), "::1");
        assert_eq!(name("::1", None).unwrap(), "::1");
        assert_eq!(name("mail.example.it", None).unwrap(), "mail.example.it");
        assert_eq!(
            name("10.0.0.5", Some("imap.example.it")).unwrap(),
            "imap.example.it"
        );
        assert!(name("not a name", None).is_err());
    }

    #[tokio::test]
    async fn a_host_name_is_looked_up_once_then_again_after_a_failed_connection() {
        let (port, server) = accepting("127.0.0.1:0").await;
        let up = upstream_at("localhost", port);
        up.connect().await.unwrap();
        let first = up.resolved.lock().unwrap().as_ref().map(|(at, _)| *at);
        assert!(first.is_some(), "looked up and kept");
        up.connect().await.unwrap();
        let second = up.resolved.lock().unwrap().as_ref().map(|(at, _)| *at);
        assert_eq!(first, second, "looked up again within RESOLVE_EVERY");
        server.abort();
        let _ = server.await;
        assert!(matches!(
            up.connect().await,
            Err(UpstreamError::Connect { .. })
        ));
        assert!(
            up.resolved.lock().unwrap().is_none(),
            "kept after a failure"
        );
    }

    fn upstream(port: u16) -> Upstream {
        let config = UpstreamSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            ca_file: None,
            tls_name: None,
            login: UpstreamLogin::Stored,
            forward_client: false,
            main_password: crate::proxy::settings::MainPassword::Local,
        };
        Upstream::new(config, None, None)
    }

    async fn login(
        greeting: &'static str,
        answer: &'static str,
    ) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
        let up = upstream(scripted(greeting, answer).await);
        imap_login(
            &up,
            "mario@x.it",
            &UpstreamCredential::Stored(Secret::new("pw".into())),
            None,
        )
        .await
    }

    /// The client's origin (ID) and the login reach the upstream in one write, so the
    /// login costs one round trip: this server reads once and answers both commands.
    #[tokio::test]
    async fn the_origin_and_the_login_go_in_one_round_trip() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"* OK ready\r\n").await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
                .await
                .unwrap();
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"S0 OK ID done\r\nS1 OK [CAPABILITY IMAP4rev1] Logged in\r\n")
                .await
                .unwrap();
            got
        });
        let up = upstream(port);
        let origin = Origin {
            client: "192.0.2.7:50000".parse().unwrap(),
            connected: "127.0.0.1:993".parse().unwrap(),
        };
        let credential = UpstreamCredential::Stored(Secret::new("pw".into()));
        let login = imap_login(&up, "mario@x.it", &credential, Some(&origin));
        let (_, caps, _) = tokio::time::timeout(std::time::Duration::from_secs(10), login)
            .await
            .expect("the login ends")
            .unwrap();
        assert_eq!(caps, "IMAP4rev1");
        let got = server.await.unwrap();
        let lines: Vec<_> = got.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2, "{got}");
        assert!(
            lines[0].starts_with("S0 ID (\"x-originating-ip\" \"192.0.2.7\""),
            "{got}"
        );
        assert!(lines[1].starts_with("S1 LOGIN \"mario@x.it\""), "{got}");
    }

    #[tokio::test]
    async fn preauth_greeting_is_refused() {
        let err = login("* PREAUTH welcome\r\n", "{tag} OK\r\n")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, UpstreamError::Protocol(m) if m.contains("PREAUTH")));
    }

    #[tokio::test]
    async fn bye_or_garbage_greeting_is_refused() {
        assert!(matches!(
            login("* BYE go away\r\n", "").await,
            Err(UpstreamError::Protocol(_))
        ));
        assert!(matches!(
            login("HTTP/1.1 400\r\n", "").await,
            Err(UpstreamError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn refused_login_is_reported_as_such() {
        let err = login("* OK ready\r\n", "{tag} NO [AUTHENTICATIONFAILED] nope\r\n")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, UpstreamError::LoginRefused(_)));
    }

    #[tokio::test]
    async fn capabilities_come_from_the_ok_code_or_a_capability_command() {
        let (_, caps, _) = login(
            "* OK ready\r\n",
            "{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
        )
        .await
        .unwrap();
        assert_eq!(caps, "IMAP4rev1 IDLE");
        let (_, caps, _) = login(
            "* OK ready\r\n",
            "* CAPABILITY IMAP4rev1 MOVE\r\n{tag} OK done\r\n",
        )
        .await
        .unwrap();
        assert_eq!(caps, "IMAP4rev1 MOVE");
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        let up = upstream(port);
        let r = imap_login(
            &up,
            "u",
            &UpstreamCredential::Stored(Secret::new("pw".into())),
            None,
        )
        .await;
        assert!(r.is_err());
    }
}
