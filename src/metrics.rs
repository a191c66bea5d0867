//! The proxy's metrics, in the Prometheus text format, served on the admin listener
//! (`[admin] bind`, loopback only) with `/healthz` and `/readyz`. One process-wide set of
//! atomics; every label value is bounded (protocols, configured listener names, result
//! and reason kinds — never a login name or an address).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds of every latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// A login's labels: protocol, listener, result, reason kind.
type LoginLabels = (String, String, &'static str, &'static str);

/// Every metric of the process.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Logins by (protocol, listener, result, reason kind).
    logins: Mutex<BTreeMap<LoginLabels, u64>>,
    /// The abuse model's and the page's counters with labels: metric name → rendered
    /// labels (bounded values only) → count.
    labelled: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// Verification-cache hits.
    pub(crate) cache_hits: AtomicU64,
    /// Verification-cache misses (an argon2id verification followed).
    pub(crate) cache_misses: AtomicU64,
    /// Login names found in the principal cache.
    pub(crate) principal_hits: AtomicU64,
    /// Login names read from the store (not cached).
    pub(crate) principal_misses: AtomicU64,
    /// Attempts refused by the throttle (at login, and connections closed at accept).
    pub(crate) throttle_blocks: AtomicU64,
    /// Time an argon2id verification waited for a worker.
    pub(crate) hash_wait: Histogram,
    /// Verifications waiting or running now.
    pub(crate) hash_queue: AtomicI64,
    /// Upstream connect and login, by protocol.
    upstream_login: [Histogram; 3],
    /// Upstream connections made (TCP, and the TLS handshake for implicit TLS).
    pub(crate) upstream_connect: Histogram,
    /// Upstream failures by kind.
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Relayed sessions open now, by protocol.
    sessions_open: [AtomicI64; 3],
    /// Bytes relayed (both ways).
    pub(crate) bytes_relayed: AtomicU64,
    /// Connections closed for too many bad commands before login.
    pub(crate) bad_command_closes: AtomicU64,
    /// Relayed sessions ended because a change (or an expiry) refused their login.
    pub(crate) sessions_revoked: AtomicU64,
    /// Connections closed on a PROXY-protocol listener: not from a trusted balancer, or
    /// with no valid header in time.
    pub(crate) proxy_header_refusals: AtomicU64,
    /// Connections to an HTTP listener (the page, the API's, the admin one) closed at
    /// accept: over its total or per-address connection limit.
    pub(crate) web_connections_refused: AtomicU64,
    /// Access-history items waiting to be written (the store could not be reached).
    pub(crate) history_pending: AtomicI64,
    /// Access-history records dropped: the store stayed away past the buffer's bound.
    pub(crate) history_dropped: AtomicU64,
    /// Logins decided on this node's own throttle counts: the fleet's could not be read.
    pub(crate) fleet_throttle_unavailable: AtomicU64,
    /// 1 while the login path follows the store's changes, 0 while it cannot (it then
    /// asks the store for every login instead of trusting its cache).
    pub(crate) following_changes: AtomicI64,
}

/// The process's metrics.
pub(crate) static METRICS: std::sync::LazyLock<Metrics> =
    std::sync::LazyLock::new(Metrics::default);

fn index(protocol: crate::policy::Protocol) -> usize {
    match protocol {
        crate::policy::Protocol::Imap => 0,
        crate::policy::Protocol::Pop3 => 1,
        crate::policy::Protocol::Smtp => 2,
    }
}

const PROTOCOLS: [&str; 3] = ["imap", "pop3", "smtp"];

/// The labelled counters' help lines.
const LABELLED_HELP: &[(&str, &str)] = &[
    (
        "sentinella_blocks_started_total",
        "Blocks the abuse model started, by subject (address, name, password, code).",
    ),
    (
        "sentinella_blocked_attempts_total",
        "Attempts refused because their subject was blocked, by subject.",
    ),
    (
        "sentinella_web_logins_total",
        "Owner logins on the page, by step (password, code), result and reason.",
    ),
    (
        "sentinella_code_checks_total",
        "2FA codes checked, by where they were asked (login, confirm, disable, replace) and result.",
    ),
];

impl Metrics {
    fn bump(&self, metric: &'static str, labels: String) {
        let mut m = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(metric).or_default().entry(labels).or_default() += 1;
    }

    /// A block the abuse model started.
    pub(crate) fn block_started(&self, subject: &'static str) {
        self.bump(
            "sentinella_blocks_started_total",
            format!("subject=\"{subject}\""),
        );
    }

    /// An attempt refused because its subject is blocked.
    pub(crate) fn refused_by_block(&self, subject: &'static str) {
        self.throttle_blocks.fetch_add(1, Ordering::Relaxed);
        self.bump(
            "sentinella_blocked_attempts_total",
            format!("subject=\"{subject}\""),
        );
    }

    /// One step of an owner's login on the page.
    pub(crate) fn web_login(&self, step: &'static str, result: &'static str, reason: &'static str) {
        self.bump(
            "sentinella_web_logins_total",
            format!("step=\"{step}\",result=\"{result}\",reason=\"{reason}\""),
        );
    }

    /// One 2FA code checked (or refused unseen, blocked).
    pub(crate) fn code_check(&self, purpose: &'static str, result: &'static str) {
        self.bump(
            "sentinella_code_checks_total",
            format!("use=\"{purpose}\",result=\"{result}\""),
        );
    }

    /// One decided login.
    pub(crate) fn login(
        &self,
        protocol: &str,
        listener: &str,
        result: &'static str,
        reason: &'static str,
    ) {
        let mut m = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((protocol.to_owned(), listener.to_owned(), result, reason))
            .or_default() += 1;
    }

    /// One upstream login attempt and how long it took.
    pub(crate) fn upstream(
        &self,
        protocol: crate::policy::Protocol,
        took: Duration,
        error: Option<&'static str>,
    ) {
        self.upstream_login[index(protocol)].observe(took);
        if let Some(kind) = error {
            *self
                .upstream_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(kind)
                .or_default() += 1;
        }
    }

    /// A relayed session opened; closed when the guard drops.
    pub(crate) fn session(&'static self, protocol: crate::policy::Protocol) -> SessionGuard {
        let i = index(protocol);
        self.sessions_open[i].fetch_add(1, Ordering::Relaxed);
        SessionGuard(i)
    }

    /// The text format; `outbox` is the pending e-mails, when the store could say.
    pub(crate) fn render(&self, outbox: Option<u64>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let _ = writeln!(
            out,
            "# HELP sentinella_logins_total Logins decided, by protocol, listener, result and reason.\n\
             # TYPE sentinella_logins_total counter"
        );
        for ((protocol, listener, result, reason), n) in
            self.logins.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "sentinella_logins_total{{protocol=\"{protocol}\",listener=\"{}\",result=\"{result}\",reason=\"{reason}\"}} {n}",
                listener.escape_default()
            );
        }
        counter(
            &mut out,
            "sentinella_verification_cache_hits_total",
            "Logins decided from the verification cache.",
            self.cache_hits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_verification_cache_misses_total",
            "Logins that needed an argon2id verification.",
            self.cache_misses.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_principal_cache_hits_total",
            "Login names found in memory.",
            self.principal_hits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_principal_cache_misses_total",
            "Login names read from the store (one indexed read each).",
            self.principal_misses.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_throttle_blocks_total",
            "Attempts refused by the throttle.",
            self.throttle_blocks.load(Ordering::Relaxed),
        );
        {
            let labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
            for (metric, help) in LABELLED_HELP {
                let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
                for (labels, n) in labelled.get(metric).into_iter().flatten() {
                    let _ = writeln!(out, "{metric}{{{labels}}} {n}");
                }
            }
        }
        counter(
            &mut out,
            "sentinella_bad_command_disconnects_total",
            "Connections closed for too many bad commands before login.",
            self.bad_command_closes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_sessions_revoked_total",
            "Relayed sessions ended because a change or an expiry refused their login.",
            self.sessions_revoked.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_proxy_header_refusals_total",
            "Connections closed on a PROXY-protocol listener: untrusted source, or no valid header in time.",
            self.proxy_header_refusals.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_web_connections_refused_total",
            "Connections to the web page, the API or the admin listener closed at accept: over the total or per-address limit.",
            self.web_connections_refused.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_history_dropped_total",
            "Access-history records dropped because the store stayed unreachable past the buffer's bound.",
            self.history_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sentinella_fleet_throttle_unavailable_total",
            "Logins decided on this node's own throttle counts because the fleet's could not be read.",
            self.fleet_throttle_unavailable.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP sentinella_history_pending Access-history items waiting to be written.\n\
             # TYPE sentinella_history_pending gauge\nsentinella_history_pending {}\n\
             # HELP sentinella_following_changes 1 while the store's changes are followed, 0 while not (logins then ask the store).\n\
             # TYPE sentinella_following_changes gauge\nsentinella_following_changes {}",
            self.history_pending.load(Ordering::Relaxed).max(0),
            self.following_changes.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "sentinella_relayed_bytes_total",
            "Bytes relayed between clients and upstreams, both ways.",
            self.bytes_relayed.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP sentinella_hash_queue_depth argon2id verifications waiting or running.\n\
             # TYPE sentinella_hash_queue_depth gauge\nsentinella_hash_queue_depth {}",
            self.hash_queue.load(Ordering::Relaxed).max(0)
        );
        self.hash_wait.render(
            &mut out,
            "sentinella_hash_wait_seconds",
            "Time a verification waited for an argon2id worker.",
            "",
        );
        self.upstream_connect.render(
            &mut out,
            "sentinella_upstream_connect_seconds",
            "Upstream connections: TCP connect, and the TLS handshake for implicit TLS.",
            "",
        );
        let _ = writeln!(
            out,
            "# HELP sentinella_upstream_login_seconds Upstream connect and login.\n\
             # TYPE sentinella_upstream_login_seconds histogram"
        );
        for (i, p) in PROTOCOLS.iter().enumerate() {
            let mut one = String::new();
            self.upstream_login[i].render(
                &mut one,
                "sentinella_upstream_login_seconds",
                "",
                &format!("protocol=\"{p}\""),
            );
            // The HELP/TYPE lines once, above.
            out.extend(one.lines().skip(2).map(|l| format!("{l}\n")));
        }
        let _ = writeln!(
            out,
            "# HELP sentinella_upstream_errors_total Upstream failures, by kind.\n\
             # TYPE sentinella_upstream_errors_total counter"
        );
        for (kind, n) in self
            .upstream_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "sentinella_upstream_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sentinella_sessions_open Relayed sessions open now.\n# TYPE sentinella_sessions_open gauge"
        );
        for (i, p) in PROTOCOLS.iter().enumerate() {
            let _ = writeln!(
                out,
                "sentinella_sessions_open{{protocol=\"{p}\"}} {}",
                self.sessions_open[i].load(Ordering::Relaxed).max(0)
            );
        }
        if let Some(n) = outbox {
            let _ = writeln!(
                out,
                "# HELP sentinella_notice_outbox_pending Notice e-mails waiting to be sent.\n\
                 # TYPE sentinella_notice_outbox_pending gauge\nsentinella_notice_outbox_pending {n}"
            );
        }
        out
    }
}

/// Counts a relayed session as open until dropped.
pub(crate) struct SessionGuard(usize);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        METRICS.sessions_open[self.0].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abuse_models_counters_are_rendered_with_their_labels() {
        let m = Metrics::default();
        m.block_started("code");
        m.refused_by_block("code");
        m.refused_by_block("code");
        m.web_login("code", "refused", "wrong_code");
        m.code_check("disable", "blocked");
        let text = m.render(None);
        for line in [
            "sentinella_blocks_started_total{subject=\"code\"} 1",
            "sentinella_blocked_attempts_total{subject=\"code\"} 2",
            "sentinella_throttle_blocks_total 2",
            "sentinella_web_logins_total{step=\"code\",result=\"refused\",reason=\"wrong_code\"} 1",
            "sentinella_code_checks_total{use=\"disable\",result=\"blocked\"} 1",
            "# TYPE sentinella_code_checks_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn the_text_format_has_bounded_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.login("imap", "imaps", "refused", "wrong_password");
        m.login("imap", "imaps", "refused", "wrong_password");
        m.hash_wait.observe(Duration::from_millis(3));
        let text = m.render(Some(2));
        assert!(text.contains(
            "sentinella_logins_total{protocol=\"imap\",listener=\"imaps\",result=\"refused\",reason=\"wrong_password\"} 2"
        ), "{text}");
        assert!(
            text.contains("sentinella_hash_wait_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sentinella_hash_wait_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sentinella_hash_wait_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("sentinella_notice_outbox_pending 2"));
        assert!(
            text.contains(
                "sentinella_upstream_login_seconds_bucket{protocol=\"smtp\",le=\"+Inf\"} 0"
            ),
            "{text}"
        );
    }
}
