//! One client connection, whatever the protocol and whatever carries it (TCP, or an
//! in-memory pipe in the tests below): TLS, the protocol front end until login, the login
//! decision, the upstream login, then the relay. Everything before login runs under the
//! pre-auth deadline; the front end bounds the bytes. A session that ends before login
//! says why ([`SessionEnd`]).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::relay::{RelayEnd, relay};
use super::stream::Conn;
use super::upstream::{self, Origin, UpstreamCredential, UpstreamError, within};
use super::{ListenerRuntime, Shared};
use crate::auth::{LoginContext, LoginResult, UpstreamAnswer, Verdict};
use crate::policy::Protocol;
use crate::policy::login::{ListenerKind, Outcome};
use crate::protocol::imap::ImapFrontend;
use crate::protocol::pop3::Pop3Frontend;
use crate::protocol::smtp::SmtpFrontend;
use crate::protocol::{Action, Event, Frontend, Settings};
use crate::proxy::settings::{ListenerTls, MainPassword, UpstreamLogin};

/// Why a session ended before it was relayed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The TLS handshake failed (or STARTTLS could not start).
    TlsFailed(String),
    /// The TLS handshake did not finish in time.
    TlsTimeout,
    /// The client closed the connection.
    ClientClosed,
    /// Reading from or writing to the client failed.
    ClientIo(String),
    /// The front end ended it: LOGOUT / QUIT, a size limit, too many failed logins.
    Closed,
    /// No login before the pre-auth deadline.
    PreauthTimeout,
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::TlsFailed(e) => write!(f, "TLS handshake failed: {e}"),
            SessionEnd::TlsTimeout => f.write_str("TLS handshake timed out"),
            SessionEnd::ClientClosed => f.write_str("client closed the connection"),
            SessionEnd::ClientIo(e) => write!(f, "client connection failed: {e}"),
            SessionEnd::Closed => f.write_str("closed by the protocol (logout, limit or failures)"),
            SessionEnd::PreauthTimeout => f.write_str("no login before the pre-auth deadline"),
        }
    }
}

impl SessionEnd {
    fn log(&self) {
        match self {
            SessionEnd::ClientClosed | SessionEnd::Closed => {
                tracing::debug!(reason = %self, "session ended before login")
            }
            _ => tracing::info!(reason = %self, "session ended before login"),
        }
    }
}

fn io_end(e: std::io::Error) -> SessionEnd {
    SessionEnd::ClientIo(e.to_string())
}

/// Runs one connection to its end. The steps before login live in a box of their own
/// (about 11 KB of state), freed once the session is relayed: what stays for an idle
/// session is the relay's state.
pub async fn run<S>(io: S, origin: Origin, listener: Arc<ListenerRuntime>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let LoggedIn {
        mut client,
        mut upstream,
        verdict,
    } = match Box::pin(preauth(io, origin, &listener, &shared)).await {
        Ok(session) => session,
        Err(end) => return end.log(),
    };
    let protocol = listener.config.protocol;
    let idle = shared.limits.load().idle(protocol);
    let _open = crate::metrics::METRICS.session(protocol);
    let watch = shared.auth.watch(&verdict);
    let revoked = async {
        match &watch {
            Some(w) => w.ended().await,
            None => std::future::pending().await,
        }
    };
    let mut stop = shared.stop.clone();
    let stopping = async move {
        if stop.wait_for(|stop| *stop).await.is_err() {
            // No one can tell it to stop (a test's rig): it never does.
            std::future::pending::<()>().await;
        }
    };
    match relay(&mut client, &mut upstream, idle, revoked, stopping).await {
        RelayEnd::Revoked(reason) => {
            tracing::info!(login = %verdict.login, reason = %reason, "session ended: its login is refused now");
            close_with(
                &mut client,
                &mut upstream,
                crate::protocol::revoked_message(protocol),
            )
            .await;
            Box::pin(shared.auth.record_ended(
                &context(&listener, origin.client),
                &verdict,
                &reason,
            ))
            .await;
        }
        RelayEnd::Closed(up, down) => {
            tracing::debug!(
                client_to_upstream = up,
                upstream_to_client = down,
                "session ended"
            )
        }
        RelayEnd::Failed(e) => tracing::debug!(error = %e, "session ended"),
        RelayEnd::Idle => tracing::info!(idle = ?idle, "session closed: idle"),
        RelayEnd::Stopping => {
            tracing::debug!("session closed: the proxy is stopping");
            close_with(
                &mut client,
                &mut upstream,
                crate::protocol::stopping_message(protocol),
            )
            .await;
        }
    }
}

/// The protocol's last word to the client, then both sides closed.
async fn close_with<S>(client: &mut Conn<S>, upstream: &mut Conn, last_word: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = client.write_all(last_word).await;
    let _ = client.flush().await;
    let _ = upstream.shutdown().await;
    // The client may be sending still (an upload cut short): it reads the last word.
    crate::net::linger(client).await;
}

/// The login context of a connection.
fn context(listener: &ListenerRuntime, peer: SocketAddr) -> LoginContext {
    LoginContext {
        listener: listener.config.name.clone(),
        kind: if listener.config.archive {
            ListenerKind::Archive
        } else {
            ListenerKind::Mailbox
        },
        protocol: listener.config.protocol,
        peer: peer.ip(),
        software: None,
        needs_upstream_secret: matches!(listener.upstream.config.login, UpstreamLogin::Stored),
        pass_through: listener.upstream.config.main_password == MainPassword::Upstream,
    }
}

/// The listener's protocol front end.
async fn frontend(listener: &ListenerRuntime, shared: &Shared) -> Box<dyn Frontend> {
    let implicit = listener.config.tls == ListenerTls::Implicit;
    let limits = shared.limits.load();
    let settings = Settings {
        tls_active: implicit,
        starttls: !implicit,
        max_line: limits.max_line,
        preauth_bytes: limits.preauth_bytes,
        max_failed_logins: limits.failed_logins_per_connection,
        max_bad_commands: limits.bad_commands_before_login,
    };
    match listener.config.protocol {
        Protocol::Imap => Box::new(ImapFrontend::new(settings)),
        Protocol::Pop3 => Box::new(Pop3Frontend::new(settings)),
        Protocol::Smtp => {
            let timeout = limits.upstream_timeout.fixed();
            let extensions = listener.upstream.smtp_extensions(timeout).await;
            Box::new(SmtpFrontend::new(settings, &shared.hostname, &extensions))
        }
    }
}

/// Logs in upstream as `user` with `credential` (the proxy's: master or the mailbox's
/// stored secret; or, passed through, the client's own).
async fn login_upstream(
    listener: &ListenerRuntime,
    shared: &Shared,
    user: &str,
    credential: &UpstreamCredential,
    client_name: Option<&str>,
    origin: &Origin,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let timeout = shared.limits.load().upstream_timeout.fixed();
    let protocol = listener.config.protocol;
    let started = std::time::Instant::now();
    let result = within(
        timeout,
        upstream::login(
            protocol,
            &listener.upstream,
            user,
            credential,
            client_name,
            Some(origin),
        ),
    )
    .await;
    // A passed-through password the upstream refuses is the client's mistake, not an
    // upstream failure.
    let client_refused = matches!(credential, UpstreamCredential::Client(_))
        && matches!(result, Err(UpstreamError::LoginRefused(_)));
    let error = result
        .as_ref()
        .err()
        .filter(|_| !client_refused)
        .map(UpstreamError::kind);
    crate::metrics::METRICS.upstream(protocol, started.elapsed(), error);
    result
}

fn log_verdict(verdict: &Verdict) {
    match verdict.outcome() {
        Outcome::Accepted => {
            tracing::info!(login = %verdict.login, credential = verdict.credential.as_str(), "login accepted")
        }
        Outcome::Refused(r) => tracing::info!(login = %verdict.login, reason = %r, "login refused"),
        Outcome::TemporaryFailure(r) => {
            tracing::warn!(login = %verdict.login, reason = %r, "login failed temporarily")
        }
    }
}

/// A session past its login: the two connections to relay, and the verdict that let it.
pub(crate) struct LoggedIn<S> {
    client: Conn<S>,
    upstream: Conn,
    verdict: crate::auth::Verdict,
}

/// Until login: returns the client and upstream connections to relay, or why the
/// session ended.
pub(crate) async fn preauth<S>(
    io: S,
    origin: Origin,
    listener: &ListenerRuntime,
    shared: &Shared,
) -> Result<LoggedIn<S>, SessionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = shared.limits.load_full();
    let deadline = Instant::now() + limits.preauth_timeout.fixed();
    let acceptor = tokio_rustls::TlsAcceptor::from(listener.tls.load_full());
    let handshake = limits.tls_handshake_timeout.fixed();
    let handshake_deadline = || deadline.min(Instant::now() + handshake);
    let mut client = if listener.config.tls == ListenerTls::Implicit {
        match timeout_at(handshake_deadline(), acceptor.accept(io)).await {
            Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
            Ok(Err(e)) => return Err(SessionEnd::TlsFailed(e.to_string())),
            Err(_) => return Err(SessionEnd::TlsTimeout),
        }
    } else {
        Conn::Plain(io)
    };
    let mut fe = frontend(listener, shared).await;
    client.write_all(&fe.greeting()).await.map_err(io_end)?;
    let mut ctx = context(listener, origin.client);
    let mut buf = vec![0u8; 4096];
    let mut queue: VecDeque<Action> = VecDeque::new();
    loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(bytes) => client.write_all(&bytes).await.map_err(io_end)?,
                Action::Close => {
                    // The client may be sending still (the rest of a line over the
                    // limit): it reads the last word instead of a reset.
                    crate::net::linger(&mut client).await;
                    return Err(SessionEnd::Closed);
                }
                Action::Report(Event::TooManyBadCommands) => {
                    crate::metrics::METRICS
                        .bad_command_closes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Action::StartTls => {
                    client.flush().await.map_err(io_end)?;
                    let Conn::Plain(io) = client else {
                        return Err(SessionEnd::TlsFailed("STARTTLS inside TLS".into()));
                    };
                    client = match timeout_at(handshake_deadline(), acceptor.accept(io)).await {
                        Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
                        Ok(Err(e)) => return Err(SessionEnd::TlsFailed(e.to_string())),
                        Err(_) => return Err(SessionEnd::TlsTimeout),
                    };
                    fe.tls_started();
                }
                Action::Authenticate(creds) => {
                    ctx.software = fe.software();
                    let mut verdict = shared.auth.check(&ctx, creds).await;
                    let client_name = fe.client_name().map(str::to_owned);
                    let mut logged_in = None;
                    match &mut verdict.result {
                        LoginResult::Accepted {
                            mailbox,
                            upstream_secret,
                        } => {
                            let mailbox = Arc::clone(mailbox);
                            let credential = listener
                                .upstream
                                .credential(upstream_secret.take())
                                .ok_or_else(|| {
                                    UpstreamError::Protocol("no upstream credential".into())
                                });
                            let up = match credential {
                                Ok(c) => {
                                    let (name, origin) = (client_name.as_deref(), &origin);
                                    login_upstream(
                                        listener,
                                        shared,
                                        &mailbox.address,
                                        &c,
                                        name,
                                        origin,
                                    )
                                    .await
                                }
                                Err(e) => Err(e),
                            };
                            match up {
                                Ok(up) => logged_in = Some(up),
                                Err(e) => verdict.upstream_failed(e.to_string()),
                            }
                        }
                        LoginResult::PassThrough { user, secret, .. } => {
                            // The upstream checks the client's own name and password.
                            let user = user.clone();
                            let credential = UpstreamCredential::Client(secret.clone());
                            let up = login_upstream(
                                listener,
                                shared,
                                &user,
                                &credential,
                                client_name.as_deref(),
                                &origin,
                            )
                            .await;
                            let answer = match &up {
                                Ok(_) => UpstreamAnswer::Accepted,
                                Err(UpstreamError::LoginRefused(_)) => UpstreamAnswer::Refused,
                                Err(e) => UpstreamAnswer::Unavailable(e.to_string()),
                            };
                            shared.auth.settle_pass_through(&ctx, &mut verdict, answer);
                            // Refused by the mailbox's own rules after the upstream said
                            // yes: that connection is dropped unused.
                            logged_in = up.ok().filter(|_| verdict.is_accepted());
                        }
                        _ => {}
                    }
                    if let Some((mut upstream, caps, leftover)) = logged_in {
                        log_verdict(&verdict);
                        shared.auth.record(&ctx, &verdict).await;
                        let (ok, pipelined) = fe.login_accepted(&caps);
                        client.write_all(&ok).await.map_err(io_end)?;
                        client.write_all(&leftover).await.map_err(io_end)?;
                        client.flush().await.map_err(io_end)?;
                        upstream.write_all(&pipelined).await.map_err(io_end)?;
                        return Ok(LoggedIn {
                            client,
                            upstream,
                            verdict,
                        });
                    }
                    log_verdict(&verdict);
                    shared.auth.record(&ctx, &verdict).await;
                    let more = match verdict.result {
                        LoginResult::TemporaryFailure { .. } => fe.login_unavailable(),
                        _ => fe.login_refused(),
                    };
                    queue.extend(more);
                }
            }
        }
        client.flush().await.map_err(io_end)?;
        let n = match timeout_at(deadline, client.read(&mut buf)).await {
            Err(_) => {
                let _ = client.write_all(fe.timeout_message()).await;
                let _ = client.shutdown().await;
                return Err(SessionEnd::PreauthTimeout);
            }
            Ok(Ok(0)) => return Err(SessionEnd::ClientClosed),
            Ok(Err(e)) => return Err(io_end(e)),
            Ok(Ok(n)) => n,
        };
        queue.extend(fe.feed(&buf[..n]));
    }
}

#[cfg(test)]
mod tests {
    //! The session driver over an in-memory pipe, with a real authenticator on a
    //! temporary store and the proxy's own TLS: the paths that end before any upstream.

    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, duplex};

    use super::*;
    use crate::auth::ThrottleSettings;
    use crate::auth::{Authenticator, HashCost, PasswordHasher};
    use crate::manage::testing::with_mailbox_under;
    use crate::policy::PolicySettings;
    use crate::policy::{Period, Plan};
    use crate::proxy::settings::{Limits, Listener, UpstreamSettings};
    use crate::proxy::tls;
    use crate::proxy::upstream::Upstream;

    const ADDR: &str = "mario@pec.example.it";

    struct Rig {
        _dir: tempfile::TempDir,
        cert: std::path::PathBuf,
        listener: ListenerRuntime,
        shared: Shared,
    }

    fn rig(tls_mode: ListenerTls, limits: impl FnOnce(&mut Limits)) -> Rig {
        let (dir, _m, location) = with_mailbox_under(
            PolicySettings::default(),
            Plan::Standard,
            None,
            crate::clock::now(),
        );
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        tls::ensure_certificate(&cert, &key, &[]).unwrap();
        let hasher = PasswordHasher::new(HashCost::CHEAP).unwrap();
        let settings = crate::auth::AuthSettings {
            zone: jiff::tz::TimeZone::UTC,
            main_password_alert_every: crate::policy::Period::days(1),
            email: false,
            language: crate::wording::Language::It,
            cache_ttl: Duration::from_secs(60),
            cache_entries: 64,
            principal_entries: 64,
            hash_workers: 1,
            hash_queue: 8,
            throttle: ThrottleSettings {
                address_failures: 100,
                name_failures: 100,
                password_failures: 100,
                code_failures: 100,
                window: Duration::from_secs(60),
                block: Duration::from_secs(1),
                address_max_block: Duration::from_secs(1),
                name_max_block: Duration::from_secs(1),
                max_block: Duration::from_secs(3600),
            },
            breached_passwords: None,
            refuse_breached: false,
            history_sync: Default::default(),
        };
        let auth = Arc::new(Authenticator::new(&location, hasher, None, settings).unwrap());
        let mut l = Limits::default();
        limits(&mut l);
        let upstream = UpstreamSettings {
            host: "127.0.0.1".into(),
            port: 9,
            tls: crate::net::TlsMode::None,
            ca_file: None,
            tls_name: None,
            login: UpstreamLogin::Stored,
            forward_client: false,
            main_password: MainPassword::Local,
        };
        let listener = ListenerRuntime {
            config: Listener {
                name: "imap-test".into(),
                protocol: Protocol::Imap,
                bind: "127.0.0.1:9".parse().unwrap(),
                tls: tls_mode,
                archive: false,
                upstream: "mail".into(),
                proxy_protocol_from: Vec::new(),
            },
            tls: Arc::new(arc_swap::ArcSwap::new(
                tls::server_config(&cert, &key, "imap").unwrap(),
            )),
            upstream: Arc::new(Upstream::new(upstream, None, None)),
        };
        let shared = Shared {
            auth,
            limits: crate::live::live(l),
            hostname: "localhost".into(),
            stop: tokio::sync::watch::channel(false).1,
        };
        Rig {
            _dir: dir,
            cert,
            listener,
            shared,
        }
    }

    pub(super) fn rig_probe() -> (ListenerRuntime, Shared, tempfile::TempDir) {
        let r = rig(ListenerTls::Implicit, |_| {});
        (r.listener, r.shared, r._dir)
    }

    fn peer() -> Origin {
        Origin {
            client: "127.0.0.1:40000".parse().unwrap(),
            connected: "127.0.0.1:993".parse().unwrap(),
        }
    }

    pub(super) fn peer_probe() -> Origin {
        peer()
    }

    /// Runs the driver on one end of a pipe; the test drives the other end.
    fn start(rig: &Rig) -> (DuplexStream, impl Future<Output = SessionEnd> + '_) {
        let (client, server) = duplex(64 * 1024);
        let session = async move {
            match preauth(server, peer(), &rig.listener, &rig.shared).await {
                Ok(_) => panic!("no session here reaches the upstream"),
                Err(end) => end,
            }
        };
        (client, session)
    }

    async fn line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut s))
            .await
            .expect("a reply in time")
            .unwrap();
        s
    }

    async fn tls_client(
        rig: &Rig,
        io: DuplexStream,
    ) -> tokio_rustls::client::TlsStream<DuplexStream> {
        let config = tls::client_config(Some(&rig.cert)).unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, io).await.unwrap()
    }

    #[tokio::test]
    async fn refusals_before_login_keep_the_session_until_logout() {
        let rig = rig(ListenerTls::Starttls, |_| {});
        let (client, session) = start(&rig);
        let script = async move {
            let mut c = BufReader::new(client);
            assert!(line(&mut c).await.starts_with("* OK [CAPABILITY IMAP4rev1"));
            c.write_all(b"a LOGIN mario main-password\r\n")
                .await
                .unwrap();
            assert_eq!(
                line(&mut c).await,
                "a NO [PRIVACYREQUIRED] Login is only allowed after STARTTLS\r\n"
            );
            c.write_all(b"b SELECT INBOX\r\n").await.unwrap();
            assert_eq!(
                line(&mut c).await,
                "b BAD Command not allowed before login\r\n"
            );
            c.write_all(b"c LOGOUT\r\n").await.unwrap();
            assert_eq!(line(&mut c).await, "* BYE Logging out\r\n");
            assert_eq!(line(&mut c).await, "c OK LOGOUT completed\r\n");
        };
        let (end, ()) = tokio::join!(session, script);
        assert_eq!(end, SessionEnd::Closed);
    }

    #[tokio::test]
    async fn a_wrong_password_over_tls_is_refused_and_recorded() {
        let rig = rig(ListenerTls::Implicit, |_| {});
        let (client, session) = start(&rig);
        let script = async {
            let mut c = BufReader::new(tls_client(&rig, client).await);
            assert!(line(&mut c).await.starts_with("* OK"));
            c.write_all(b"a LOGIN mario@pec.example.it wrong-password\r\n")
                .await
                .unwrap();
            assert_eq!(
                line(&mut c).await,
                "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
            );
            drop(c);
        };
        let (end, ()) = tokio::join!(session, script);
        assert!(
            matches!(end, SessionEnd::ClientClosed | SessionEnd::ClientIo(_)),
            "{end}"
        );
        let store = crate::store::StoreLocation::Sqlite(rig._dir.path().join("s.db"))
            .open_manage()
            .unwrap();
        let rows = store.history(ADDR, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].reason,
            Some(crate::policy::login::Reason::WrongPassword)
        );
        assert_eq!(rows[0].listener, "imap-test");
    }

    #[tokio::test]
    async fn plaintext_sent_after_starttls_is_discarded() {
        let rig = rig(ListenerTls::Starttls, |_| {});
        let (client, session) = start(&rig);
        let script = async {
            let mut c = BufReader::new(client);
            line(&mut c).await;
            // An injected command rides in the same packet as STARTTLS.
            c.write_all(b"a STARTTLS\r\nb LOGOUT\r\n").await.unwrap();
            assert_eq!(line(&mut c).await, "a OK Begin TLS negotiation now\r\n");
            let mut tls = BufReader::new(tls_client(&rig, c.into_inner()).await);
            tls.write_all(b"c NOOP\r\n").await.unwrap();
            // Had "b LOGOUT" been kept, a BYE would come first.
            assert_eq!(line(&mut tls).await, "c OK NOOP completed\r\n");
            tls.write_all(b"d LOGOUT\r\n").await.unwrap();
            assert_eq!(line(&mut tls).await, "* BYE Logging out\r\n");
        };
        let (end, ()) = tokio::join!(session, script);
        assert_eq!(end, SessionEnd::Closed);
    }

    #[tokio::test]
    async fn the_byte_cap_before_login_closes_the_session() {
        let rig = rig(ListenerTls::Starttls, |l| {
            l.max_line = 1024;
            l.preauth_bytes = 4096;
        });
        let (client, session) = start(&rig);
        let script = async {
            let mut c = BufReader::new(client);
            line(&mut c).await;
            let mut got = String::new();
            for i in 0..100 {
                if c.write_all(format!("x{i} NOOP\r\n").repeat(10).as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut got)).await;
            assert!(got.contains("* BYE Too much data before login"), "{got}");
        };
        let (end, ()) = tokio::join!(session, script);
        assert_eq!(end, SessionEnd::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_too_slow_to_log_in_is_told_and_closed() {
        let rig = rig(ListenerTls::Starttls, |l| {
            l.preauth_timeout = Period::seconds(30)
        });
        let (client, session) = start(&rig);
        let script = async {
            let mut c = BufReader::new(client);
            line(&mut c).await;
            // The paused clock runs ahead to the deadline while both sides wait (so no
            // 5-second read timeout here: it would fire first).
            let mut bye = String::new();
            c.read_line(&mut bye).await.unwrap();
            assert_eq!(bye, "* BYE Autologout: too slow to log in\r\n");
        };
        let (end, ()) = tokio::join!(session, script);
        assert_eq!(end, SessionEnd::PreauthTimeout);
    }

    #[tokio::test]
    async fn a_failed_handshake_is_a_tls_end_not_a_silent_one() {
        let rig = rig(ListenerTls::Implicit, |_| {});
        let (mut client, session) = start(&rig);
        let script = async move {
            client.write_all(b"a LOGIN not tls\r\n\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
        };
        let (end, ()) = tokio::join!(session, script);
        assert!(matches!(end, SessionEnd::TlsFailed(_)), "{end}");
    }
}
#[cfg(test)]
mod size {
    /// What a relayed session's task keeps is the relay's state: the steps before login
    /// (TLS acceptor, front end, the login check, the upstream login) are boxed apart and
    /// freed. A hundred thousand idle sessions pay this per session.
    #[tokio::test]
    async fn a_relayed_sessions_task_keeps_little_state() {
        let (listener, shared, _dir) = super::tests::rig_probe();
        let (listener, shared) = (std::sync::Arc::new(listener), std::sync::Arc::new(shared));
        let (_client, server) = tokio::io::duplex(64);
        let run = super::run(
            server,
            super::tests::peer_probe(),
            listener.clone(),
            shared.clone(),
        );
        let run = std::mem::size_of_val(&run);
        assert!(run <= 3 * 1024, "a session's task is {run} bytes");
    }
}
