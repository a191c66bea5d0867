//! One client connection, whatever the protocol: TLS, the protocol front end until login,
//! the login decision, the upstream login, then the relay. Everything before login runs
//! under the pre-auth deadline; the front end bounds the bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::relay::{RelayEnd, relay};
use super::stream::Conn;
use super::upstream::{self, UpstreamError, within};
use super::{ListenerRuntime, Shared};
use crate::auth::{LoginContext, Verdict};
use crate::config::{LimitsConfig, ListenerTls, UpstreamLogin};
use crate::policy::Protocol;
use crate::policy::login::{ListenerKind, Outcome};
use crate::protocol::imap::ImapFrontend;
use crate::protocol::pop3::Pop3Frontend;
use crate::protocol::smtp::SmtpFrontend;
use crate::protocol::{Action, Frontend, Settings};

/// Runs one connection to its end.
pub async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRuntime>,
    shared: Arc<Shared>,
) {
    let Some((mut client, mut upstream)) = preauth(tcp, peer, &listener, &shared).await else {
        return;
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

/// Logs in upstream as the mailbox the verdict names.
async fn login_upstream(
    listener: &ListenerRuntime,
    shared: &Shared,
    verdict: &mut Verdict,
    client_name: Option<&str>,
) -> Result<(Conn, String, Vec<u8>), UpstreamError> {
    let user = verdict
        .mailbox
        .as_ref()
        .map(|m| m.address.clone())
        .unwrap_or_default();
    let credential = listener
        .upstream
        .credential(verdict.upstream_secret.take())
        .ok_or_else(|| UpstreamError::Protocol("no upstream credential".into()))?;
    let timeout = LimitsConfig::duration(shared.limits.upstream_timeout);
    let protocol = listener.config.protocol;
    within(
        timeout,
        upstream::login(
            protocol,
            &listener.upstream,
            &user,
            &credential,
            client_name,
        ),
    )
    .await
}

fn log_verdict(verdict: &Verdict) {
    match &verdict.decision.outcome {
        Outcome::Accepted => {
            tracing::info!(login = %verdict.login, credential = verdict.decision.credential.as_str(), "login accepted")
        }
        Outcome::Refused(r) => tracing::info!(login = %verdict.login, reason = %r, "login refused"),
        Outcome::TemporaryFailure(r) => {
            tracing::warn!(login = %verdict.login, reason = %r, "login failed temporarily")
        }
    }
}

/// Until login: returns the client and upstream connections to relay, or `None` when the
/// connection ended.
async fn preauth(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &ListenerRuntime,
    shared: &Shared,
) -> Option<(Conn, Conn)> {
    let deadline = Instant::now() + LimitsConfig::duration(shared.limits.preauth_timeout);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&listener.tls));
    let handshake = LimitsConfig::duration(shared.limits.tls_handshake_timeout);
    let handshake_deadline = || deadline.min(Instant::now() + handshake);
    let mut client = if listener.config.tls == ListenerTls::Implicit {
        match timeout_at(handshake_deadline(), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => return None,
        }
    } else {
        Conn::Plain(tcp)
    };
    let mut fe = frontend(listener, shared).await;
    client.write_all(&fe.greeting()).await.ok()?;
    let ctx = context(listener, peer);
    let mut buf = vec![0u8; 4096];
    let mut queue: VecDeque<Action> = VecDeque::new();
    loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(bytes) => client.write_all(&bytes).await.ok()?,
                Action::Close => {
                    let _ = client.shutdown().await;
                    return None;
                }
                Action::StartTls => {
                    client.flush().await.ok()?;
                    let Conn::Plain(tcp) = client else {
                        return None;
                    };
                    client = match timeout_at(handshake_deadline(), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
                        _ => return None,
                    };
                    fe.tls_started();
                }
                Action::Authenticate(creds) => {
                    let mut verdict = shared.auth.check(&ctx, creds).await;
                    if verdict.decision.is_accepted() {
                        let client_name = fe.client_name().map(str::to_owned);
                        match login_upstream(listener, shared, &mut verdict, client_name.as_deref())
                            .await
                        {
                            Ok((mut upstream, caps, leftover)) => {
                                log_verdict(&verdict);
                                shared.auth.record(&ctx, &verdict).await;
                                let (ok, pipelined) = fe.login_accepted(&caps);
                                client.write_all(&ok).await.ok()?;
                                client.write_all(&leftover).await.ok()?;
                                client.flush().await.ok()?;
                                upstream.write_all(&pipelined).await.ok()?;
                                return Some((client, upstream));
                            }
                            Err(e) => {
                                verdict.decision = verdict.decision.upstream_failed(e.to_string())
                            }
                        }
                    }
                    log_verdict(&verdict);
                    shared.auth.record(&ctx, &verdict).await;
                    let more = match verdict.decision.outcome {
                        Outcome::TemporaryFailure(_) => fe.login_unavailable(),
                        _ => fe.login_refused(),
                    };
                    queue.extend(more);
                }
            }
        }
        client.flush().await.ok()?;
        let n = match timeout_at(deadline, client.read(&mut buf)).await {
            Err(_) => {
                let _ = client.write_all(fe.timeout_message()).await;
                let _ = client.shutdown().await;
                return None;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => n,
        };
        queue.extend(fe.feed(&buf[..n]));
    }
}
