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
use super::upstream::{self, UpstreamError, within};
use super::{ListenerRuntime, Shared};
use crate::auth::{LoginContext, LoginResult, Verdict};
use crate::config::{LimitsConfig, ListenerTls, UpstreamLogin};
use crate::policy::Protocol;
use crate::policy::login::{ListenerKind, Outcome};
use crate::protocol::imap::ImapFrontend;
use crate::protocol::pop3::Pop3Frontend;
use crate::protocol::smtp::SmtpFrontend;
use crate::protocol::{Action, Frontend, Settings};

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

/// Runs one connection to its end.
pub async fn run<S>(io: S, peer: SocketAddr, listener: Arc<ListenerRuntime>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut client, mut upstream) = match preauth(io, peer, &listener, &shared).await {
        Ok(pair) => pair,
        Err(end) => return end.log(),
    };
    let idle = shared.limits.idle(listener.config.protocol);
    match relay(&mut client, &mut upstream, idle).await {
        RelayEnd::Closed(up, down) => {
            tracing::debug!(
                client_to_upstream = up,
                upstream_to_client = down,
                "session ended"
            )
        }
        RelayEnd::Failed(e) => tracing::debug!(error = %e, "session ended"),
        RelayEnd::Idle => tracing::info!(idle = ?idle, "session closed: idle"),
    }
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
        needs_upstream_secret: matches!(listener.upstream.config.login, UpstreamLogin::Stored),
    }
}

/// The listener's protocol front end.
async fn frontend(listener: &ListenerRuntime, shared: &Shared) -> Box<dyn Frontend> {
    let implicit = listener.config.tls == ListenerTls::Implicit;
    let limits = &shared.limits;
    let settings = Settings {
        tls_active: implicit,
        starttls: !implicit,
        max_line: limits.max_line,
        preauth_bytes: limits.preauth_bytes,
        max_failed_logins: limits.failed_logins_per_connection,
    };
    match listener.config.protocol {
        Protocol::Imap => Box::new(ImapFrontend::new(settings)),
        Protocol::Pop3 => Box::new(Pop3Frontend::new(settings)),
        Protocol::Smtp => {
            let timeout = LimitsConfig::duration(limits.upstream_timeout);
            let extensions = listener.upstream.smtp_extensions(timeout).await;
            Box::new(SmtpFrontend::new(settings, &shared.hostname, &extensions))
        }
    }
}

/// Logs in upstream as `mailbox`.
async fn login_upstream(
    listener: &ListenerRuntime,
    shared: &Shared,
    mailbox: &str,
    upstream_secret: Option<crate::secret::Secret>,
    client_name: Option<&str>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let credential = listener
        .upstream
        .credential(upstream_secret)
        .ok_or_else(|| UpstreamError::Protocol("no upstream credential".into()))?;
    let timeout = LimitsConfig::duration(shared.limits.upstream_timeout);
    let protocol = listener.config.protocol;
    within(
        timeout,
        upstream::login(
            protocol,
            &listener.upstream,
            mailbox,
            &credential,
            client_name,
        ),
    )
    .await
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

/// Until login: returns the client and upstream connections to relay, or why the
/// session ended.
pub(crate) async fn preauth<S>(
    io: S,
    peer: SocketAddr,
    listener: &ListenerRuntime,
    shared: &Shared,
) -> Result<(Conn<S>, Conn), SessionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + LimitsConfig::duration(shared.limits.preauth_timeout);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&listener.tls));
    let handshake = LimitsConfig::duration(shared.limits.tls_handshake_timeout);
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
    let ctx = context(listener, peer);
    let mut buf = vec![0u8; 4096];
    let mut queue: VecDeque<Action> = VecDeque::new();
    loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(bytes) => client.write_all(&bytes).await.map_err(io_end)?,
                Action::Close => {
                    let _ = client.shutdown().await;
                    return Err(SessionEnd::Closed);
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
                    let mut verdict = shared.auth.check(&ctx, creds).await;
                    if let LoginResult::Accepted {
                        mailbox,
                        upstream_secret,
                    } = &mut verdict.result
                    {
                        let (mailbox, secret) = (Arc::clone(mailbox), upstream_secret.take());
                        let client_name = fe.client_name().map(str::to_owned);
                        match login_upstream(
                            listener,
                            shared,
                            &mailbox.address,
                            secret,
                            client_name.as_deref(),
                        )
                        .await
                        {
                            Ok((mut upstream, caps, leftover)) => {
                                log_verdict(&verdict);
                                shared.auth.record(&ctx, &verdict).await;
                                let (ok, pipelined) = fe.login_accepted(&caps);
                                client.write_all(&ok).await.map_err(io_end)?;
                                client.write_all(&leftover).await.map_err(io_end)?;
                                client.flush().await.map_err(io_end)?;
                                upstream.write_all(&pipelined).await.map_err(io_end)?;
                                return Ok((client, upstream));
                            }
                            Err(e) => verdict.upstream_failed(e.to_string()),
                        }
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
