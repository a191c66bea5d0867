//! What every listener does before a connection is served, shared by the mail listeners
//! (`proxy`) and the HTTP ones (`web::listener`): take the next connection (backing off
//! from accept errors), and count open connections per client network. Below both, so
//! neither imports the other for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// Open connections per client network (IPv4 address / IPv6 /64): one table over all the
/// mail listeners, and one for each HTTP listener (`crate::web::listener`).
pub struct PerAddress {
    open: dashmap::DashMap<u128, u32>,
    /// A reload may change it; connections already open stay.
    max: std::sync::atomic::AtomicU32,
}

/// One connection counted in [`PerAddress`]; uncounted when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    key: u128,
}

impl PerAddress {
    /// A table allowing `max` connections per client network.
    pub(crate) fn new(max: u32) -> Self {
        PerAddress {
            open: dashmap::DashMap::new(),
            max: std::sync::atomic::AtomicU32::new(max),
        }
    }

    /// A new limit (a reload); connections already open stay.
    pub(crate) fn set_max(&self, max: u32) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// A slot for a connection from `ip`, or `None` if that address has too many open.
    pub fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let key = crate::policy::abuse::network(ip);
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= self.max.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.table.open.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// How long an accept loop waits after a failed accept before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection on `socket`, or `None` once `stop` turns — every accept loop (the
/// mail listeners', the web page's, the API's, the admin's) takes its connections here.
/// An accept error (EMFILE / ENFILE at the file limit, and friends) is logged and backed
/// off from: retried at once, a full file table would spin a core and flood the log.
pub(crate) async fn accept(
    socket: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    listener: &str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return None,
            a = socket.accept() => a,
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) => {
                tracing::warn!(listener, error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
