//! Upstream secrets: for listeners whose upstream logs in with the mailbox's own stored
//! secret, the sealed secret is fetched (off the reactor) and opened with the seal key.

use std::sync::Arc;

use super::authenticator::Authenticator;
use super::verdict::{LoginContext, LoginResult, Verdict};
use crate::secret::Secret;

impl Authenticator {
    /// For upstreams that log in with the mailbox's own stored secret: fetch and open it
    /// (off the reactor); without it the login cannot be completed (temporary failure).
    pub(super) async fn with_upstream_secret(
        self: &Arc<Self>,
        ctx: &LoginContext,
        mut v: Verdict,
    ) -> Verdict {
        if !ctx.needs_upstream_secret {
            return v;
        }
        let LoginResult::Accepted { mailbox, .. } = &v.result else {
            return v;
        };
        let address = mailbox.address.clone();
        let this = Arc::clone(self);
        let secret = tokio::task::spawn_blocking(move || this.upstream_secret(&address))
            .await
            .ok()
            .flatten();
        match (secret, &mut v.result) {
            (
                Some(s),
                LoginResult::Accepted {
                    upstream_secret, ..
                },
            ) => *upstream_secret = Some(s),
            _ => v.upstream_failed("no usable upstream secret is set for this mailbox"),
        }
        v
    }

    pub(super) fn upstream_secret(&self, address: &str) -> Option<Secret> {
        let (store, key) = self.secrets.as_ref()?;
        let sealed = {
            let store = store.lock().unwrap_or_else(|p| p.into_inner());
            store.sealed_upstream_secret(address).ok()??
        };
        match key.open(address, &sealed) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(mailbox = address, error = %e, "cannot open the upstream secret");
                None
            }
        }
    }
}
