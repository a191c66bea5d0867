//! Session threads: one single-threaded runtime per core for the mail listeners.
//!
//! Each mail listener is bound once per thread (`SO_REUSEPORT`): the kernel spreads the
//! connections over the threads, and a session lives on the thread that accepted it from
//! its first byte to its last — its client socket, its upstream socket and its timers are
//! in that thread's reactor, so no I/O event wakes a second thread to run it (the
//! work-stealing runtime's hand-offs, measured in BENCHMARKS §7). The multi-threaded
//! runtime keeps the pages, the API and the background jobs.
//!
//! A group of `SO_REUSEPORT` sockets would let a second process of the same user join it
//! and take half the connections without a word, so the address is first bound alone
//! ([`Cores::bind`]): a second `serve` on the same address still fails with "address in
//! use". (A program of the same user that sets `SO_REUSEPORT` itself could still join;
//! the kernel refuses other users. The same user can read the store and the keys anyway.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a session thread lets its tasks finish once told to stop (after the proxy's
/// own grace period): what is left is dropped, which closes its sockets.
const FINISH: Duration = Duration::from_secs(1);

/// The session threads; [`Cores::finish`] stops them.
pub struct Cores {
    threads: Vec<Core>,
}

struct Core {
    handle: Handle,
    finish: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Cores {
    /// Starts one session thread per core the process may use.
    pub fn start() -> std::io::Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with(n)
    }

    /// Starts `n` session threads (at least one).
    pub fn with(n: usize) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("session-{i}"))
                .build()?;
            let handle = runtime.handle().clone();
            let (finish, finished) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("session-{i}"))
                .spawn(move || {
                    // Until told to stop (or the proxy is gone), this thread runs the
                    // tasks spawned on its handle.
                    let _ = runtime.block_on(finished);
                    runtime.shutdown_timeout(FINISH);
                })?;
            threads.push(Core {
                handle,
                finish,
                thread,
            });
        }
        Ok(Self { threads })
    }

    /// The threads' runtimes, to spawn on.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.threads.iter().map(|c| &c.handle)
    }

    /// Binds `addr` once per thread, each socket in its thread's reactor. Fails as a
    /// single `bind` would when anything else listens there (see the module's note).
    pub fn bind(&self, addr: SocketAddr) -> std::io::Result<Vec<TcpListener>> {
        // Alone first: a listener of this or another process makes this fail; an
        // unspecified port (0) becomes the one the kernel chose, shared by the group.
        let alone = std::net::TcpListener::bind(addr)?;
        let addr = alone.local_addr()?;
        drop(alone);
        self.handles()
            .map(|handle| {
                let _in = handle.enter();
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.set_reuseport(true)?;
                socket.bind(addr)?;
                socket.listen(1024)
            })
            .collect()
    }

    /// Tells every thread to stop — sessions still open are dropped after [`FINISH`] —
    /// and waits for them.
    pub async fn finish(self) {
        let threads: Vec<_> = self
            .threads
            .into_iter()
            .map(|c| {
                let _ = c.finish.send(());
                c.thread
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn every_thread_accepts_on_one_address_and_nothing_else_can_listen_there() {
        let cores = Cores::with(2).unwrap();
        let listeners = cores.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
        // Another listener on the address (another serve) is refused, as without the group.
        let again = cores.bind(addr).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        let plain = std::net::TcpListener::bind(addr).unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::AddrInUse, "{plain}");
        // Each socket answers on its own thread, named after it.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (l, h) in listeners.into_iter().zip(cores.handles()) {
            let tx = tx.clone();
            h.spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    let _ = s.write_all(name.as_bytes()).await;
                    let _ = tx.send(name);
                }
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut name = String::new();
            c.read_to_string(&mut name).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), name);
            seen.insert(name);
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["session-0", "session-1"]
        );
        cores.finish().await;
    }

    #[tokio::test]
    async fn an_ipv6_address_is_bound_once_per_thread_too() {
        let cores = Cores::with(2).unwrap();
        let listeners = cores.bind("[::1]:0".parse().unwrap()).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(addr.is_ipv6());
        assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
        let again = cores.bind(addr).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        for (l, h) in listeners.into_iter().zip(cores.handles()) {
            h.spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let _ = s.write_all(b"ok").await;
                }
            });
        }
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "ok");
        cores.finish().await;
    }
}
