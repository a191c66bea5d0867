//! One client connection: TLS, the protocol front end until login, the login decision,
//! the upstream login, then the relay. Everything before login runs under the pre-auth
//! deadline; the front end bounds the bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::stream::Conn;
use super::upstream::{UpstreamError, imap_login, within};
use super::{ListenerRuntime, Shared};
use crate::auth::{LoginContext, Verdict};
use crate::config::{LimitsConfig, ListenerTls};
use crate::policy::login::{ListenerKind, Outcome};
use crate::protocol::imap::{Action, ImapFrontend, Settings};

/// Runs one IMAP connection to its end.
pub async fn imap(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRuntime>,
    shared: Arc<Shared>,
) {
    let Some((mut client, mut upstream)) = imap_preauth(tcp, peer, &listener, &shared).await else {
        return;
    };
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(
            client_to_upstream = up,
            upstream_to_client = down,
            "session ended"
        ),
        Err(e) => tracing::debug!(error = %e, "session ended"),
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
        needs_upstream_secret: matches!(
            listener.upstream.config.login,
            crate::config::UpstreamLogin::Stored
        ),
    }
}

/// Logs in upstream as the mailbox the verdict names.
async fn login_upstream(
    listener: &ListenerRuntime,
    shared: &Shared,
    verdict: &mut Verdict,
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
    within(timeout, imap_login(&listener.upstream, &user, &credential)).await
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
async fn imap_preauth(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &ListenerRuntime,
    shared: &Shared,
) -> Option<(Conn, Conn)> {
    let deadline = Instant::now() + LimitsConfig::duration(shared.limits.preauth_timeout);
    let implicit = listener.config.tls == ListenerTls::Implicit;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&shared.tls));
    let mut client = if implicit {
        match timeout_at(deadline, acceptor.accept(tcp)).await {
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
    let limits = &shared.limits;
    let mut fe = ImapFrontend::new(Settings {
        tls_active: implicit,
        starttls: !implicit,
        max_line: limits.max_line,
        preauth_bytes: limits.preauth_bytes,
        max_failed_logins: limits.failed_logins_per_connection,
    });
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
                    client = match timeout_at(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => Conn::ServerTls(Box::new(tls)),
                        _ => return None,
                    };
                    fe.tls_started();
                }
                Action::Authenticate(creds) => {
                    let mut verdict = shared.auth.check(&ctx, creds).await;
                    if verdict.decision.is_accepted() {
                        match login_upstream(listener, shared, &mut verdict).await {
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
                let _ = client
                    .write_all(b"* BYE Autologout: too slow to log in\r\n")
                    .await;
                let _ = client.shutdown().await;
                return None;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => n,
        };
        queue.extend(fe.feed(&buf[..n]));
    }
}
