//! `main_password = "upstream"`: a login the upstream decides. The session logs in
//! upstream with the client's own credentials; its answer settles the verdict here —
//! counted by the abuse model like any other door.

use std::sync::Arc;

use super::authenticator::Authenticator;
use super::guard::Who;
use super::sessions::Grant;
use super::verdict::{LoginContext, LoginResult, UpstreamAnswer, Verdict};
use crate::clock::now;
use crate::policy::abuse::Proof;
use crate::policy::login::{Decision, Matched, Outcome, Reason};
use crate::policy::names::normalize_login;

impl Authenticator {
    /// Settles a [`LoginResult::PassThrough`] verdict with the upstream's answer to the
    /// client's own credentials. Accepted there: accepted here too if the mailbox (when
    /// Sentinella holds one) allows it by its other rules (protocol, plan) — and watched
    /// like a main-password session, so turning 2FA on ends it. Refused there: the one
    /// refusal, counted by the throttle like a wrong password. Unreachable: a temporary
    /// failure.
    pub fn settle_pass_through(
        &self,
        ctx: &LoginContext,
        verdict: &mut Verdict,
        answer: UpstreamAnswer,
    ) {
        let placeholder = LoginResult::Passed { mailbox: None };
        let LoginResult::PassThrough {
            user,
            secret,
            principal,
        } = std::mem::replace(&mut verdict.result, placeholder)
        else {
            return;
        };
        let name = normalize_login(&user).unwrap_or(user);
        let mailbox = principal.as_ref().map(|p| Arc::clone(&p.mailbox));
        verdict.result = match answer {
            UpstreamAnswer::Accepted => {
                let refused = principal.as_ref().and_then(|p| {
                    match self
                        .decide(ctx, Some(&p.mailbox), Matched::Main, now())
                        .outcome
                    {
                        Outcome::Accepted => None,
                        Outcome::Refused(r) | Outcome::TemporaryFailure(r) => Some(r),
                    }
                });
                match refused {
                    Some(reason) => LoginResult::Refused {
                        reason,
                        mailbox,
                        block: None,
                    },
                    None => {
                        let who = Who::new(ctx.peer, &name, mailbox.as_ref().map(|m| m.id));
                        self.succeeded(&who, Proof::MainPassword);
                        LoginResult::Passed { mailbox }
                    }
                }
            }
            UpstreamAnswer::Refused => {
                let decision = Decision::refuse(Reason::RefusedByUpstream, verdict.credential);
                let who = Who::new(ctx.peer, &name, mailbox.as_ref().map(|m| m.id));
                let block = self.count_failure(&who, &secret, &decision, Matched::Neither);
                LoginResult::Refused {
                    reason: Reason::RefusedByUpstream,
                    mailbox,
                    block,
                }
            }
            UpstreamAnswer::Unavailable(why) => LoginResult::TemporaryFailure {
                reason: Reason::UpstreamUnavailable(why),
                mailbox,
            },
        };
        if let (true, Some(p)) = (verdict.is_accepted(), &principal) {
            verdict.grant = Some(Grant {
                mailbox_id: p.mailbox.id,
                login: name,
                hash: p.hash.clone(),
                serial: p.serial,
                matched: Matched::Main,
                protocol: ctx.protocol,
                listener: ctx.kind,
                client: Some(ctx.peer),
            });
        }
    }
}
