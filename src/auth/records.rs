//! The access history's rows of the mail logins (and of sessions a change ended), with the
//! alert a refusal raises: written through the group-committing history writer.

use jiff::Timestamp;

use super::alerts::alert;
use super::authenticator::Authenticator;
use super::verdict::{LoginContext, LoginResult, Verdict};
use crate::clock::now;
use crate::policy::Mailbox;
use crate::policy::login::{AccessResult, CredentialKind, Outcome, Reason};
use crate::store::{AccessRecord, Alert};
use crate::wording::Said;

impl Authenticator {
    /// Writes the attempt to the access history; returns once it is durable. A failure
    /// to write is logged, never shown to the client.
    pub async fn record(&self, ctx: &LoginContext, verdict: &Verdict) {
        let passed = matches!(verdict.result, LoginResult::Passed { .. });
        let (result, reason) = match verdict.outcome().recorded() {
            (r, None) if passed => (r, Some(Reason::PassedToUpstream)),
            other => other,
        };
        let kind = match verdict.outcome() {
            Outcome::Accepted if passed => "passed_to_upstream",
            Outcome::Accepted => "none",
            Outcome::Refused(r) | Outcome::TemporaryFailure(r) => r.kind(),
        };
        crate::metrics::METRICS.login(ctx.protocol.as_str(), &ctx.listener, result.as_str(), kind);
        let rec = access_record(ctx, verdict, result, reason);
        let block = match &verdict.result {
            LoginResult::Refused { block: Some(b), .. } => Some(AccessRecord {
                reason: Some(b.clone()),
                credential: CredentialKind::Unknown,
                app_password: None,
                result: AccessResult::Refused,
                ..rec.clone()
            }),
            _ => None,
        };
        let alert = self.alert(ctx, verdict, rec.at);
        self.history
            .record(rec, alert, verdict.rehash.clone())
            .await;
        if let Some(b) = block {
            if let Some(why) = &b.reason {
                tracing::warn!(client = %ctx.peer, login = %verdict.login, reason = %why, "throttling");
            }
            self.history.record(b, None, None).await;
        }
    }

    /// Records that a session was ended by a change (or by its app password's expiry):
    /// an access-history row with why.
    pub async fn record_ended(&self, ctx: &LoginContext, verdict: &Verdict, reason: &Reason) {
        crate::metrics::METRICS
            .sessions_revoked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = Some(Reason::SessionEnded(Box::new(reason.clone())));
        let rec = AccessRecord {
            app_password: None,
            ..access_record(ctx, verdict, AccessResult::Refused, why)
        };
        self.history.record(rec, None, None).await;
    }

    /// SPEC "Notices and alerts": the owner is told when the main password was used in a
    /// mail program while 2FA is on (someone knows it, or a program was not updated) — at
    /// most once a period, which the store enforces across restarts and processes.
    pub(super) fn alert(
        &self,
        ctx: &LoginContext,
        verdict: &Verdict,
        at: Timestamp,
    ) -> Option<Alert> {
        let LoginResult::Refused {
            reason: Reason::MainPasswordUnder2fa,
            mailbox: Some(mailbox),
            ..
        } = &verdict.result
        else {
            return None;
        };
        let said = Said::MainPasswordUsed {
            at,
            client: ctx.peer.to_string(),
            protocol: ctx.protocol.to_string(),
            login: verdict.login.clone(),
        };
        let quiet_since = self.alerts.load().every.before(at, &self.zone);
        Some(self.alert_of(mailbox, said, at, quiet_since))
    }

    /// An alert to `mailbox`'s owner of what was `said` at `at` (in the avvisi, and
    /// e-mailed as notices are), unless one of its kind was written since `quiet_since`.
    pub(super) fn alert_of(
        &self,
        mailbox: &Mailbox,
        said: Said,
        at: Timestamp,
        quiet_since: Timestamp,
    ) -> Alert {
        alert(
            &self.alerts.load(),
            &self.zone,
            mailbox,
            said,
            at,
            quiet_since,
        )
    }
}

/// The access-history row of `verdict` in `ctx`, with `result` and `reason`.
fn access_record(
    ctx: &LoginContext,
    verdict: &Verdict,
    result: AccessResult,
    reason: Option<Reason>,
) -> AccessRecord {
    AccessRecord {
        at: now(),
        listener: ctx.listener.clone(),
        protocol: ctx.protocol.into(),
        client: ctx.peer.to_string(),
        login: verdict.login.clone(),
        address: verdict.mailbox().map(|m| m.address.clone()),
        unresolved: verdict.unresolved.clone(),
        mailbox_id: verdict.mailbox().map(|m| m.id),
        software: ctx.software.clone(),
        credential: verdict.credential,
        app_password: verdict.app_password.clone(),
        result,
        reason,
    }
}
