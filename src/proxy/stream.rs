//! A client connection that starts as plain TCP and may become TLS (STARTTLS), and the
//! upstream connection, which may be TLS from the start, after STARTTLS, or plain.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A byte stream (TCP, or an in-memory pipe in tests) or TLS over it, on either side.
pub enum Conn<S = TcpStream> {
    /// Before TLS (or a plain upstream).
    Plain(S),
    /// A client connection after the TLS handshake.
    ServerTls(Box<tokio_rustls::server::TlsStream<S>>),
    /// An upstream connection over TLS.
    ClientTls(Box<tokio_rustls::client::TlsStream<S>>),
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Conn::Plain(s) => Pin::new(s).$method($($arg),*),
            Conn::ServerTls(s) => Pin::new(s.as_mut()).$method($($arg),*),
            Conn::ClientTls(s) => Pin::new(s.as_mut()).$method($($arg),*),
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::ServerTls(s) => s.is_write_vectored(),
            Conn::ClientTls(s) => s.is_write_vectored(),
        }
    }
}
