//! The service manager's notify protocol (systemd's `Type=notify` / `notify-reload`):
//! datagrams of `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET` (a path, or
//! `@name` in the abstract namespace). Without the variable every call does nothing, so
//! the proxy runs the same under any supervisor or none.
//!
//! `serve` says `READY=1` once every listener is bound and the store is open,
//! `RELOADING=1` (with `MONOTONIC_USEC`, as `notify-reload` requires) when SIGHUP starts a
//! reload and `READY=1` when it is done, and `STOPPING=1` on the way out.

use std::os::unix::net::UnixDatagram;

/// Sends `state` to the service manager, if there is one; returns whether it was sent.
/// A failure is logged, never fatal: the proxy serves either way.
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let bytes = target.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), &target)?;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, socket = ?target, "cannot notify the service manager");
            false
        }
    }
}

/// Every listener is bound: the service is up.
pub fn ready(status: &str) {
    notify(&format!(
        "READY=1\nSTATUS={status}\nMAINPID={}",
        std::process::id()
    ));
}

/// A reload (SIGHUP) begins.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Shutting down.
pub fn stopping() {
    notify("STOPPING=1");
}

/// `CLOCK_MONOTONIC` in microseconds, the clock `notify-reload` compares with.
fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 2_000);
    }
}
