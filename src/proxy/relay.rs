//! The relay after login: bytes both ways until either side closes, no byte has moved
//! either way for the protocol's idle timeout, the session's login is refused now, or the
//! proxy stops (then at the session's next quiet moment).
//!
//! What an idle session holds is what a node with a hundred thousand IMAP IDLE clients
//! pays for each: here, no buffer (a direction allocates its [`CHUNK`] when a read is
//! ready and lets it go when the next read would wait) and one timer, armed for the idle
//! deadline and pushed back only when it fires (not re-armed per byte, no periodic tick).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes read at most at once in each direction, while bytes are moving.
pub const CHUNK: usize = 16 * 1024;

/// After the proxy is told to stop, a session ends once nothing has moved either way for
/// this long (so a reply being relayed is not cut in the middle).
pub const QUIET_BEFORE_STOP: Duration = Duration::from_secs(1);

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed; bytes client→upstream and upstream→client.
    Closed(u64, u64),
    /// Reading or writing failed.
    Failed(io::Error),
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The session's login is refused now (a change, or its app password's expiry).
    Revoked(crate::policy::login::Reason),
    /// The proxy is stopping and the session was quiet.
    Stopping,
}

/// One direction: reads from one side, writes to the other.
#[derive(Default)]
struct Direction {
    /// Empty while nothing is in flight (no allocation held by an idle session).
    buf: Vec<u8>,
    /// `buf[pos..end]` is read and not yet written.
    pos: usize,
    end: usize,
    /// The reader said end of file.
    eof: bool,
    /// Written since the last flush.
    unflushed: bool,
    /// The writer is shut down after end of file: this direction is over.
    done: bool,
    /// Bytes written.
    bytes: u64,
}

impl Direction {
    /// Nothing read and not yet written.
    fn empty(&self) -> bool {
        self.pos == self.end
    }

    /// Moves bytes from `r` to `w` until one of them would wait (`Pending`, after letting
    /// the buffer go if nothing is in it) or this direction is over (`Ready(Ok)`).
    /// `moved` is set when bytes were read.
    fn poll_move<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.pos < self.end {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.bytes += n as u64;
                self.unflushed = true;
                continue;
            }
            if self.eof {
                if self.unflushed {
                    ready!(Pin::new(&mut *w).poll_flush(cx))?;
                    self.unflushed = false;
                }
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                self.done = true;
                self.buf = Vec::new();
                return Poll::Ready(Ok(()));
            }
            if self.buf.is_empty() {
                self.buf = vec![0; CHUNK];
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    (self.pos, self.end) = (0, n);
                    if n == 0 {
                        self.eof = true;
                    } else {
                        *moved = true;
                        // One relaxed add per read (not per byte): the bytes relayed.
                        crate::metrics::METRICS
                            .bytes_relayed
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.unflushed
                        && let Poll::Ready(r) = Pin::new(&mut *w).poll_flush(cx)
                    {
                        r?;
                        self.unflushed = false;
                    }
                    // Waiting for the peer: hold nothing meanwhile.
                    self.buf = Vec::new();
                    (self.pos, self.end) = (0, 0);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Relays until both sides close, `idle` passes with no byte read either way, `revoked`
/// resolves (between two chunks: the bytes already read from one side may not reach the
/// other), or — after `stop` resolves — the session has been quiet for
/// [`QUIET_BEFORE_STOP`] with nothing in flight.
pub async fn relay<A, B>(
    client: &mut A,
    upstream: &mut B,
    idle: Duration,
    revoked: impl Future<Output = crate::policy::login::Reason>,
    stop: impl Future<Output = ()>,
) -> RelayEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let mut last = Instant::now();
    let mut stopping = false;
    let mut revoked = pin!(revoked);
    let mut stop = pin!(stop);
    let mut timer = pin!(tokio::time::sleep_until(last + idle));
    poll_fn(|cx| {
        if let Poll::Ready(reason) = revoked.as_mut().poll(cx) {
            return Poll::Ready(RelayEnd::Revoked(reason));
        }
        let mut moved = false;
        if let Poll::Ready(Err(e)) = up.poll_move(cx, client, upstream, &mut moved) {
            return Poll::Ready(RelayEnd::Failed(e));
        }
        if let Poll::Ready(Err(e)) = down.poll_move(cx, upstream, client, &mut moved) {
            return Poll::Ready(RelayEnd::Failed(e));
        }
        if up.done && down.done {
            return Poll::Ready(RelayEnd::Closed(up.bytes, down.bytes));
        }
        if moved {
            last = Instant::now();
        }
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            stopping = true;
            timer.as_mut().reset(last + QUIET_BEFORE_STOP);
        }
        let quiet = if stopping { QUIET_BEFORE_STOP } else { idle };
        // The timer is pushed back only when it fires: traffic costs no timer work.
        while timer.as_mut().poll(cx).is_ready() {
            let due = last + quiet;
            if Instant::now() < due {
                timer.as_mut().reset(due);
            } else if !stopping {
                return Poll::Ready(RelayEnd::Idle);
            } else if up.empty() && down.empty() {
                return Poll::Ready(RelayEnd::Stopping);
            } else {
                // Bytes are still waiting for a slow side: look again shortly.
                timer.as_mut().reset(Instant::now() + QUIET_BEFORE_STOP);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    /// A relay between two pipes in a task of its own, never revoked, stopped when
    /// `stop` says so (never, if `None`).
    fn spawn_relay(
        mut client: DuplexStream,
        mut upstream: DuplexStream,
        idle: Duration,
        stop: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> JoinHandle<RelayEnd> {
        tokio::spawn(async move {
            let stop = async move {
                match stop {
                    Some(rx) => {
                        let _ = rx.await;
                    }
                    None => std::future::pending().await,
                }
            };
            relay(
                &mut client,
                &mut upstream,
                idle,
                std::future::pending(),
                stop,
            )
            .await
        })
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_until_close() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (upstream, mut upstream_far) = tokio::io::duplex(1024);
        let relay = spawn_relay(client, upstream, Duration::from_secs(60), None);
        client_far.write_all(b"a NOOP\r\n").await.unwrap();
        let mut buf = [0u8; 8];
        upstream_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"a NOOP\r\n");
        upstream_far.write_all(b"a OK\r\n").await.unwrap();
        let mut buf = [0u8; 6];
        client_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"a OK\r\n");
        drop(client_far);
        drop(upstream_far);
        assert!(matches!(relay.await.unwrap(), RelayEnd::Closed(8, 6)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_is_closed_after_the_idle_timeout() {
        let started = Instant::now();
        let (mut client, _client_far) = tokio::io::duplex(64);
        let (mut upstream, _upstream_far) = tokio::io::duplex(64);
        let end = relay(
            &mut client,
            &mut upstream,
            Duration::from_secs(1800),
            std::future::pending(),
            std::future::pending(),
        )
        .await;
        assert!(matches!(end, RelayEnd::Idle));
        assert_eq!(started.elapsed().as_secs(), 1800);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_session_open() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let relay = spawn_relay(client, upstream, Duration::from_millis(300), None);
        // Traffic every 100 ms for 1 s: longer than the idle timeout in all.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client_far.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            upstream_far.read_exact(&mut b).await.unwrap();
        }
        assert!(!relay.is_finished(), "closed although traffic kept flowing");
        drop(client_far);
        drop(upstream_far);
        assert!(matches!(relay.await.unwrap(), RelayEnd::Closed(10, 0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_with_no_traffic_holds_no_buffer() {
        let (mut reader, mut reader_far) = tokio::io::duplex(64);
        let (mut writer, mut writer_far) = tokio::io::duplex(64);
        let mut d = Direction::default();
        let mut step = |d: &mut Direction| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            d.poll_move(&mut cx, &mut reader, &mut writer, &mut false)
        };
        assert!(step(&mut d).is_pending());
        assert_eq!(d.buf.capacity(), 0, "an idle direction keeps a buffer");
        // Bytes through: the buffer goes once they are written.
        reader_far.write_all(&[7u8; 60]).await.unwrap();
        assert!(step(&mut d).is_pending());
        assert!(d.empty() && d.buf.capacity() == 0);
        // More than the writer takes: the rest waits in the buffer, which stays.
        reader_far.write_all(&[7u8; 60]).await.unwrap();
        assert!(step(&mut d).is_pending());
        assert!(!d.empty() && d.buf.capacity() > 0);
        let mut got = vec![0u8; 120];
        let reading = tokio::spawn(async move {
            writer_far.read_exact(&mut got).await.unwrap();
            got
        });
        while !d.empty() {
            let _ = step(&mut d);
            tokio::task::yield_now().await;
        }
        assert_eq!(reading.await.unwrap(), vec![7u8; 120]);
        assert!(step(&mut d).is_pending());
        assert_eq!(d.buf.capacity(), 0, "the buffer outlived its bytes");
        assert_eq!(d.bytes, 120);
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_transfer_through_slow_sides_arrives_whole() {
        let (client, mut client_far) = tokio::io::duplex(100);
        let (upstream, mut upstream_far) = tokio::io::duplex(37);
        let relay = spawn_relay(client, upstream, Duration::from_secs(60), None);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            upstream_far.write_all(&sent).await.unwrap();
            upstream_far.shutdown().await.unwrap();
            let mut rest = Vec::new();
            upstream_far.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let mut got = Vec::new();
        client_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        drop(client_far);
        assert!(writer.await.unwrap().is_empty());
        assert!(matches!(relay.await.unwrap(), RelayEnd::Closed(0, 200_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_ends_soon_after_the_proxy_stops() {
        let (client, _client_far) = tokio::io::duplex(64);
        let (upstream, _upstream_far) = tokio::io::duplex(64);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let relay = spawn_relay(client, upstream, Duration::from_secs(1800), Some(stop_rx));
        tokio::time::sleep(Duration::from_secs(600)).await;
        let told = Instant::now();
        stop_tx.send(()).unwrap();
        assert!(matches!(relay.await.unwrap(), RelayEnd::Stopping));
        assert!(told.elapsed() <= QUIET_BEFORE_STOP);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_proxy_lets_a_reply_in_flight_finish() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let relay = spawn_relay(client, upstream, Duration::from_secs(1800), Some(stop_rx));
        stop_tx.send(()).unwrap();
        // A reply trickling in, a piece every half second for five seconds.
        for _ in 0..10 {
            upstream_far.write_all(b"* 1 FETCH ...\r\n").await.unwrap();
            let mut b = [0u8; 15];
            client_far.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"* 1 FETCH ...\r\n");
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!relay.is_finished(), "cut while the reply was moving");
        }
        assert!(matches!(relay.await.unwrap(), RelayEnd::Stopping));
    }
}
