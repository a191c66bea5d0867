//! The running proxy: listeners, sessions, upstreams, TLS, shutdown.
//!
//! - [`tls`]: the client-facing certificate (self-signed on first run) and upstream trust.
//! - [`stream`]: a connection that is plain TCP or TLS.
//! - [`upstream`]: connecting and logging in to the upstream as the mailbox.
//! - [`session`]: one client connection from greeting to relay.
//! - [`cores`]: a single-threaded runtime per core; each mail listener is bound once per
//!   thread and a session stays on the thread that accepted it (unless `[runtime]
//!   sessions = "shared"`: then one socket and the multi-threaded runtime).
//! - [`relay`]: bytes both ways after login, with the protocol's idle timeout; holds no
//!   buffer while waiting; on stop, ends at the session's next quiet moment.
//!
//! - [`settings`]: `[limits]`, `[[listener]]`, `[upstream.NAME]` — what start-up
//!   (`crate::serve`) hands the proxy; nothing here reads the configuration file.
//!
//! Accept loops hand each connection to its own task, holding a permit of the global
//! connection limit and a slot of the per-address one ([`PerAddress`]); the HTTP
//! listeners (`crate::web::listener`) are bounded the same way, with budgets of their own.
//! Every accept loop takes its connections through [`accept`], which backs off from
//! accept errors; when `stop` turns, the loop ends, relayed sessions end at a quiet moment
//! with the protocol's last word ([`Shared::stop`]), and start-up waits for them at most
//! `limits.shutdown_grace`.

pub(crate) mod admin;
pub mod cores;
pub mod relay;
pub mod session;
pub mod settings;
pub mod stream;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::admission::{AddressSlot, PerAddress, accept};
use crate::auth::Authenticator;
use settings::{Limits, Listener};
use upstream::Upstream;

/// What every session shares.
pub struct Shared {
    /// The login decision.
    pub auth: Arc<Authenticator>,
    /// Limits; a reload replaces them for the sessions that start after it.
    pub limits: crate::live::Live<Limits>,
    /// The name the proxy greets SMTP clients with.
    pub hostname: String,
    /// Turns true when the proxy stops: relayed sessions then end at a quiet moment.
    pub stop: watch::Receiver<bool>,
}

/// A listener with its upstream.
pub struct ListenerRuntime {
    /// Its configuration.
    pub config: Listener,
    /// Its TLS configuration (ALPN = its protocol), swapped whole by a reload.
    pub tls: Arc<ArcSwap<rustls::ServerConfig>>,
    /// Where its sessions go.
    pub upstream: Arc<Upstream>,
}

/// Connection ids, one sequence over every listener (so a log line's id names one
/// connection).
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Accepts a listener's connections until `stop`, each session in a task of its own.
pub(crate) async fn accept_loop(
    socket: TcpListener,
    listener: Arc<ListenerRuntime>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    mut stop: watch::Receiver<bool>,
) {
    let behind_balancer = !listener.config.proxy_protocol_from.is_empty();
    while let Some((tcp, peer)) = accept(&socket, &mut stop, &listener.config.name).await {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(listener = %listener.config.name, %peer, "connection limit reached; connection dropped");
            continue;
        };
        let slot = if behind_balancer {
            None
        } else {
            // Refused here, before a task, a handshake or any other system call: under a
            // brute-force attack the proxy spends an accept and a close per attempt —
            // then lets its sessions run before the next one (a session thread also
            // serves the sessions it accepted).
            let Some(slot) = admit(&listener, &shared, &per_address, peer) else {
                drop(tcp);
                tokio::task::yield_now().await;
                continue;
            };
            Some(slot)
        };
        let _ = tcp.set_nodelay(true);
        let id = NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let connected = tcp.local_addr().unwrap_or(listener.config.bind);
        let direct = upstream::Origin {
            client: peer,
            connected,
        };
        let (l, s, a) = (
            Arc::clone(&listener),
            Arc::clone(&shared),
            Arc::clone(&per_address),
        );
        if let Some(slot) = slot {
            let span = tracing::info_span!("conn", id, listener = %l.config.name, %peer);
            tokio::spawn(
                async move {
                    let _permit = (permit, slot);
                    session::run(tcp, direct, l, s).await;
                }
                .instrument(span),
            );
            continue;
        }
        tokio::spawn(async move {
            let _permit = permit;
            let mut tcp = tcp;
            let limits = s.limits.load_full();
            let Some(origin) = balanced_origin(&mut tcp, direct, &l, &limits).await else {
                crate::metrics::METRICS
                    .proxy_header_refusals
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let client = origin.client;
            let Some(slot) = admit(&l, &s, &a, client) else {
                return;
            };
            let span = tracing::info_span!("conn", id, listener = %l.config.name, peer = %client, via = %peer);
            async move {
                let _slot = slot;
                session::run(tcp, origin, l, s).await;
            }
            .instrument(span)
            .await;
        });
    }
}

/// Whether a client may start a session: not blocked by the throttle (no TLS handshake
/// for it at all), and under the per-address connection limit.
fn admit(
    listener: &ListenerRuntime,
    shared: &Shared,
    per_address: &Arc<PerAddress>,
    client: std::net::SocketAddr,
) -> Option<AddressSlot> {
    let name = &listener.config.name;
    if shared.auth.address_blocked(client.ip()) {
        crate::metrics::METRICS.refused_by_block(crate::policy::abuse::Subject::Address.as_str());
        tracing::debug!(listener = %name, peer = %client, "blocked client: connection closed");
        return None;
    }
    let slot = per_address.take(client.ip());
    if slot.is_none() {
        tracing::warn!(listener = %name, peer = %client, "too many connections from this address; connection dropped");
    }
    slot
}

/// On a listener behind a load balancer: the session's origin as the PROXY protocol
/// header gives it, read before anything else (within the TLS handshake's time) from a
/// trusted balancer. `None` — the connection is dropped — for a connection from anyone
/// else (never trusted, whatever it sends), a missing or malformed header, or none in
/// time. A `LOCAL` / `UNKNOWN` header (the balancer's health check) keeps the
/// connection's own addresses.
async fn balanced_origin(
    tcp: &mut tokio::net::TcpStream,
    direct: upstream::Origin,
    listener: &ListenerRuntime,
    limits: &Limits,
) -> Option<upstream::Origin> {
    use crate::protocol::proxy_header::{Header, Step, parse};
    use tokio::io::AsyncReadExt;
    let name = &listener.config.name;
    let balancer = direct.client;
    if !listener
        .config
        .proxy_protocol_from
        .iter()
        .any(|n| n.contains(balancer.ip()))
    {
        tracing::warn!(listener = %name, peer = %balancer, "connection from an address that is not a trusted load balancer (proxy_protocol_from); closed");
        return None;
    }
    let read = async {
        let mut buf = Vec::with_capacity(64);
        loop {
            match parse(&buf) {
                Ok(Step::Done(h)) => return Ok(h),
                Ok(Step::Need(n)) => {
                    let at = buf.len();
                    buf.resize(at + n, 0);
                    tcp.read_exact(&mut buf[at..])
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let wait = limits.tls_handshake_timeout.fixed();
    match tokio::time::timeout(wait, read).await {
        Ok(Ok(Header::Proxied { client, connected })) => {
            Some(upstream::Origin { client, connected })
        }
        Ok(Ok(Header::Local)) => Some(direct),
        Ok(Err(e)) => {
            tracing::warn!(listener = %name, peer = %balancer, error = %e, "no valid PROXY protocol header; closed");
            None
        }
        Err(_) => {
            tracing::warn!(listener = %name, peer = %balancer, "no PROXY protocol header in time; closed");
            None
        }
    }
}
