//! The relay after login: bytes both ways until either side closes, or until no byte has
//! moved either way for the protocol's idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Records the time of the last byte read through it.
struct Tracked<'a, S> {
    inner: &'a mut S,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
            // One relaxed add per read (not per byte): the metrics' bytes relayed.
            crate::metrics::METRICS
                .bytes_relayed
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// One side closed; bytes client→upstream and upstream→client.
    Closed(u64, u64),
    /// Reading or writing failed.
    Failed(io::Error),
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The session's login is refused now (a change, or its app password's expiry).
    Revoked(crate::policy::login::Reason),
}

/// Relays until one side closes, `idle` passes with no traffic, or `revoked` resolves
/// (between two chunks: the bytes already read from one side may not reach the other).
pub async fn relay<A, B>(
    client: &mut A,
    upstream: &mut B,
    idle: Duration,
    revoked: impl Future<Output = crate::policy::login::Reason>,
) -> RelayEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Tracked {
        inner: client,
        epoch,
        last: Arc::clone(&last),
    };
    let mut b = Tracked {
        inner: upstream,
        epoch,
        last: Arc::clone(&last),
    };
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            let quiet = epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
        }
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => match r {
            Ok((up, down)) => RelayEnd::Closed(up, down),
            Err(e) => RelayEnd::Failed(e),
        },
        _ = watchdog => RelayEnd::Idle,
        reason = revoked => RelayEnd::Revoked(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_flow_both_ways_until_close() {
        let (mut client, mut client_far) = tokio::io::duplex(1024);
        let (mut upstream, mut upstream_far) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move {
            relay(
                &mut client,
                &mut upstream,
                Duration::from_secs(60),
                std::future::pending(),
            )
            .await
        });
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

    #[tokio::test]
    async fn a_quiet_session_is_closed_after_the_idle_timeout() {
        let (mut client, _client_far) = tokio::io::duplex(64);
        let (mut upstream, _upstream_far) = tokio::io::duplex(64);
        let end = relay(
            &mut client,
            &mut upstream,
            Duration::from_millis(200),
            std::future::pending(),
        )
        .await;
        assert!(matches!(end, RelayEnd::Idle));
    }

    #[tokio::test]
    async fn traffic_keeps_a_session_open() {
        let (mut client, mut client_far) = tokio::io::duplex(64);
        let (mut upstream, mut upstream_far) = tokio::io::duplex(64);
        let relay = tokio::spawn(async move {
            relay(
                &mut client,
                &mut upstream,
                Duration::from_millis(300),
                std::future::pending(),
            )
            .await
        });
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
}
