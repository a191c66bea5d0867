//! The HTTP listeners' connections — the owner's page, the operator API's own listener
//! (both HTTPS) and the admin listener (plain HTTP, loopback) — bounded like the mail
//! listeners, because each idle connection holds a file descriptor the whole process
//! shares: without bounds, idle TLS connections to the page from one address once used up
//! the file limit and made IMAPS, submission and the page itself unreachable.
//!
//! - **At accept, before TLS**: a total and a per-address connection limit (owned
//!   permits held by the connection's task; the per-address table is the mail listeners'
//!   [`PerAddress`]). Over either, the connection is closed unread, logged at debug and
//!   counted (`sentinella_web_connections_refused_total`). Accept errors back off
//!   ([`crate::admission::accept`]).
//! - **TLS handshake** within `tls_handshake_timeout`.
//! - **Request head** within `header_timeout`: from the end of the handshake for the
//!   first request, from its first byte for the next ones.
//! - **Keep-alive**: a connection idle between requests is closed after
//!   `keep_alive_timeout`. hyper 1's own `header_read_timeout` runs from the end of one
//!   response to the end of the next head (`proto::h1::conn`, `State::idle`), so it
//!   cannot tell a slow head from an idle keep-alive; it is off, and [`Timed`] keeps both
//!   deadlines instead.
//! - **Request body** within `body_timeout` from its head: hyper has none; a trickled body
//!   is answered 408 and the connection closed ([`body_deadline`]).
//! - **Lingering close** ([`crate::net::linger`]): after the last response, what the
//!   client still sends (a body refused unread) is discarded for a bounded time and
//!   size, so it reads the answer instead of the kernel's reset.
//! - **HTTP/1.1 only**: hyper's HTTP/1 server, never the auto-detecting one, so a client
//!   that sends the HTTP/2 preface (with or without ALPN; the TLS configuration offers
//!   only `http/1.1`) gets its connection closed, never HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{AddressSlot, PerAddress};

/// How an HTTP listener bounds its connections (`[web]`; the admin listener takes the
/// timeouts with a small fixed bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once on the listener.
    pub max_connections: u32,
    /// Connections open at once from one client address (IPv6: one /64).
    pub max_connections_per_address: u32,
    /// Time to complete the TLS handshake.
    pub tls_handshake: Duration,
    /// Time to send a request head.
    pub header: Duration,
    /// Time to send a request body, from the end of its head.
    pub body: Duration,
    /// Time a connection may stay idle between requests.
    pub keep_alive: Duration,
}

/// Reads larger than this (one request head, buffered) end the connection.
const MAX_BUF: usize = 64 * 1024;

/// Serves `app` on `socket` — over TLS with `tls` (the page, the API: then with
/// [`super::hardened`]'s limits and headers), or plain (the admin listener) — within
/// `limits`, until `stop` turns true. `name` names the listener in the log. With
/// `guard`, a client whose address the abuse model blocks is closed at accept, before
/// TLS (the owner's page, like the mail listeners).
pub(crate) fn spawn(
    name: &'static str,
    socket: TcpListener,
    tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
    app: Router,
    limits: ConnectionLimits,
    guard: Option<Arc<crate::auth::Authenticator>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = app.layer(middleware::from_fn_with_state(limits.body, body_deadline));
    let app = if tls.is_some() {
        super::hardened(app)
    } else {
        app
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let per_address = Arc::new(PerAddress::new(limits.max_connections_per_address));
    tokio::spawn(async move {
        while let Some((tcp, peer)) = crate::admission::accept(&socket, &mut stop, name).await {
            if guard.as_ref().is_some_and(|g| g.address_blocked(peer.ip())) {
                crate::metrics::METRICS
                    .refused_by_block(crate::policy::abuse::Subject::Address.as_str());
                tracing::debug!(listener = name, %peer, "blocked client: connection closed");
                continue;
            }
            let Some(held) = admit(&permits, &per_address, peer) else {
                crate::metrics::METRICS
                    .web_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = name, %peer, "connection limit reached; connection closed");
                continue;
            };
            // The certificate of now (a SIGHUP may have swapped it).
            let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.load_full()));
            let app = app.clone().layer(axum::Extension(super::Peer(peer)));
            tokio::spawn(async move {
                let _held = held;
                serve(name, tcp, peer, acceptor, app, limits).await;
            });
        }
    })
}

/// A place under the listener's total and per-address limits, or `None`.
fn admit(
    permits: &Arc<Semaphore>,
    per_address: &Arc<PerAddress>,
    peer: SocketAddr,
) -> Option<(OwnedSemaphorePermit, AddressSlot)> {
    let permit = Arc::clone(permits).try_acquire_owned().ok()?;
    Some((permit, per_address.take(peer.ip())?))
}

/// One connection: the TLS handshake (if any) in time, then HTTP/1.1.
async fn serve(
    name: &'static str,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
) {
    let result = match tls {
        None => http(tcp, app, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => http(stream, app, limits).await,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("TLS handshake timed out".into()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(listener = name, %peer, %error, "connection ended");
    }
}

/// Serves HTTP/1.1 (and nothing else) on `io` with the head and keep-alive deadlines of
/// [`Timed`]; the body deadline is [`body_deadline`], in `app`.
async fn http<S>(io: S, app: Router, limits: ConnectionLimits) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new(limits.header, limits.keep_alive));
    let io = Timed::new(io, Arc::clone(&clock));
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        clock.busy();
        let clock = Arc::clone(&clock);
        let answer = app.clone().oneshot(req);
        async move {
            let res = answer.await?;
            Ok::<_, Infallible>(res.map(|body| Body::new(Answered { body, clock })))
        }
    });
    let parts = hyper::server::conn::http1::Builder::new()
        // Off: its clock runs from one response to the next head ([`Timed`] instead).
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(io), service)
        .without_shutdown()
        .await
        .map_err(|e| e.to_string())?;
    crate::net::linger(&mut parts.io.into_inner()).await;
    Ok(())
}

/// Where a connection is between requests, and so what it must do by when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request, nothing of it read: closed at `until` (the header timeout
    /// after the handshake for the first request, the keep-alive timeout after a response
    /// for the next ones).
    Waiting { until: Instant },
    /// Part of a request head read: the rest by `until`.
    Head { until: Instant },
    /// A request being answered: its body has [`body_deadline`], its handler its own time.
    Busy,
}

/// The connection's phase, told by its reader ([`Timed`]) and its service (a request
/// head parsed, a response sent).
struct Clock {
    header: Duration,
    keep_alive: Duration,
    state: Mutex<(Phase, Option<Waker>)>,
}

impl Clock {
    fn new(header: Duration, keep_alive: Duration) -> Self {
        let phase = Phase::Waiting {
            until: Instant::now() + header,
        };
        Clock {
            header,
            keep_alive,
            state: Mutex::new((phase, None)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Phase, Option<Waker>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: the first ones of a request head start its deadline.
    fn read(&self) {
        let mut s = self.lock();
        if let Phase::Waiting { .. } = s.0 {
            s.0 = Phase::Head {
                until: Instant::now() + self.header,
            };
        }
    }

    /// A request head was parsed: no head deadline while it is answered.
    fn busy(&self) {
        self.lock().0 = Phase::Busy;
    }

    /// The response is out: the keep-alive deadline starts. The reader is woken, so it
    /// arms the deadline even if it last waited while the request was busy.
    fn answered(&self) {
        let waker = {
            let mut s = self.lock();
            s.0 = Phase::Waiting {
                until: Instant::now() + self.keep_alive,
            };
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The deadline now, if any; `waker` is woken when the phase changes to one that has
    /// a deadline.
    fn deadline(&self, waker: &Waker) -> Option<Instant> {
        let mut s = self.lock();
        if !s.1.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.1 = Some(waker.clone());
        }
        match s.0 {
            Phase::Waiting { until } | Phase::Head { until } => Some(until),
            Phase::Busy => None,
        }
    }
}

/// A connection's stream whose reads fail with `TimedOut` once the [`Clock`]'s deadline
/// passes: hyper then closes the connection.
struct Timed<S> {
    io: S,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<S> Timed<S> {
    fn new(io: S, clock: Arc<Clock>) -> Self {
        Timed {
            io,
            clock,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(until) = this.clock.deadline(cx.waker()) else {
                    return Poll::Pending;
                };
                if this.armed != Some(until) {
                    this.sleep.as_mut().reset(until);
                    this.armed = Some(until);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request (or none whole) in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that tells the [`Clock`] when it is done with (hyper drops it once
/// it is written, or the connection ends).
struct Answered {
    body: Body,
    clock: Arc<Clock>,
}

impl HttpBody for Answered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.clock.answered();
    }
}

/// Middleware: the request body must arrive within `limit` of the head. A handler still
/// reading it then gets an error, and the client a 408 with `Connection: close`.
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(Deadline {
            body,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: Arc::clone(&expired),
        })
    });
    let res = next.run(req).await;
    if expired.load(Ordering::Relaxed) {
        return (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            "request body not received in time\n",
        )
            .into_response();
    }
    res
}

/// A request body that fails once its deadline passes.
struct Deadline {
    body: Body,
    sleep: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// Why a [`Deadline`] body failed.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
struct BodyTimeout;

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const SECOND: Duration = Duration::from_secs(1);

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 2,
            max_connections_per_address: 1,
            tls_handshake: 10 * SECOND,
            header: 2 * SECOND,
            body: 5 * SECOND,
            keep_alive: 10 * SECOND,
        }
    }

    fn app() -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: String| async move { body }))
            // Refuses a body over 16 bytes on its Content-Length, unread.
            .route(
                "/small",
                post(
                    |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                        match body {
                            Ok(_) => StatusCode::OK,
                            Err(_) => StatusCode::BAD_REQUEST,
                        }
                    },
                )
                .layer(axum::extract::DefaultBodyLimit::max(16)),
            )
            .layer(middleware::from_fn_with_state(limits().body, body_deadline))
    }

    /// A connection served by [`http`] over an in-memory pipe; the client's end.
    fn connect() -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(http(server, app(), limits()));
        client
    }

    /// Reads one response (up to its blank line and a short body); `None` at EOF.
    async fn response(c: &mut DuplexStream) -> Option<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let read = tokio::time::timeout(60 * SECOND, c.read(&mut buf)).await;
            let n = read.ok()?.unwrap_or(0);
            if n == 0 {
                return (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned());
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return Some(text.into_owned());
                }
            }
        }
    }

    /// Whether the server closed the connection (EOF) without sending anything more,
    /// within a minute.
    async fn closed(c: &mut DuplexStream) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(60 * SECOND, c.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
        let mut c = connect();
        let start = Instant::now();
        assert!(closed(&mut c).await);
        assert_eq!(
            start.elapsed().as_secs(),
            2,
            "the header timeout, not keep-alive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_outlasts_the_header_timeout_and_ends_at_its_own() {
        let mut c = connect();
        c.write_all(GET).await.unwrap();
        assert!(response(&mut c).await.unwrap().starts_with("HTTP/1.1 200"));
        // Idle longer than the header timeout, shorter than keep-alive: still served.
        tokio::time::sleep(5 * SECOND).await;
        c.write_all(GET).await.unwrap();
        assert!(response(&mut c).await.unwrap().starts_with("HTTP/1.1 200"));
        let idle = Instant::now();
        assert!(closed(&mut c).await);
        assert_eq!(idle.elapsed().as_secs(), 10, "the keep-alive timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickled_after_keep_alive_is_cut_at_the_header_timeout() {
        let mut c = connect();
        c.write_all(GET).await.unwrap();
        assert!(response(&mut c).await.is_some());
        tokio::time::sleep(5 * SECOND).await;
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let start = Instant::now();
        // One header line a second, never the blank line.
        let trickle = async {
            loop {
                tokio::time::sleep(SECOND).await;
                if c.write_all(b"x-a: b\r\n").await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(30 * SECOND, trickle).await;
        assert!(start.elapsed() < 4 * SECOND, "cut at {:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_is_answered_408_and_closed() {
        let mut c = connect();
        c.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let start = Instant::now();
        let got = response(&mut c).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("connection: close"), "{got}");
        assert_eq!(start.elapsed().as_secs(), 5, "the body timeout");
        assert!(closed(&mut c).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_in_time_is_served_and_the_connection_kept() {
        let mut c = connect();
        c.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(3 * SECOND).await;
        c.write_all(b"cde").await.unwrap();
        let got = response(&mut c).await.unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("abcde"),
            "{got}"
        );
        c.write_all(GET).await.unwrap();
        assert!(response(&mut c).await.unwrap().starts_with("HTTP/1.1 200"));
    }

    /// A request head announcing 100,000 bytes to `/small`, and the first 1,000 of them.
    async fn too_large(c: &mut DuplexStream) {
        c.write_all(b"POST /small HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
            .await
            .unwrap();
        c.write_all(&[b'x'; 1000]).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_refused_unread_is_drained_so_the_client_can_finish_and_read_the_answer() {
        let mut c = connect();
        too_large(&mut c).await;
        let got = response(&mut c).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        // The rest of the body still goes through (closed unread, the writes would fail:
        // over TCP, the kernel's reset can take the answer with it), then the close.
        c.write_all(&[b'x'; 99_000]).await.unwrap();
        assert!(closed(&mut c).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_is_bounded_in_time_and_in_bytes() {
        use crate::net::{LINGER, LINGER_BYTES};
        // A client that keeps sending slowly is cut after LINGER...
        let mut c = connect();
        too_large(&mut c).await;
        assert!(response(&mut c).await.unwrap().starts_with("HTTP/1.1 400"));
        let start = Instant::now();
        while c.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                start.elapsed() < 10 * SECOND,
                "still read after {:?}",
                start.elapsed()
            );
        }
        let cut = start.elapsed();
        assert!(
            cut >= crate::net::LINGER && cut < crate::net::LINGER + SECOND,
            "cut at {cut:?}"
        );
        // ...and one that floods after LINGER_BYTES, with no time passing.
        let mut c = connect();
        too_large(&mut c).await;
        assert!(response(&mut c).await.unwrap().starts_with("HTTP/1.1 400"));
        let start = Instant::now();
        let mut sent = 0u64;
        while c.write_all(&[b'x'; 4096]).await.is_ok() {
            sent += 4096;
            assert!(sent < 4 * LINGER_BYTES, "{sent} bytes read");
        }
        assert!(sent >= LINGER_BYTES / 2, "cut after {sent} bytes");
        assert!(start.elapsed() < LINGER, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn over_the_per_address_or_total_limit_is_closed_at_accept() {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let handle = spawn("test", socket, None, app(), limits(), None, stop);
        let from = |source: &str| {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
            sock.connect(addr)
        };
        let refused = || {
            crate::metrics::METRICS
                .web_connections_refused
                .load(Ordering::Relaxed)
        };
        let before = refused();
        let mut first = from("127.0.0.1").await.unwrap();
        first.write_all(GET).await.unwrap();
        let mut buf = [0u8; 12];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        // A second from the same address: closed unread.
        let mut second = from("127.0.0.1").await.unwrap();
        assert_eq!(second.read(&mut buf).await.unwrap_or(0), 0);
        assert!(refused() > before);
        // Another address is served; a third connection is over the total of 2.
        let mut other = from("127.0.0.2").await.unwrap();
        other.write_all(GET).await.unwrap();
        other.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        let mut third = from("127.0.0.3").await.unwrap();
        assert_eq!(third.read(&mut buf).await.unwrap_or(0), 0);
        handle.abort();
    }
}
