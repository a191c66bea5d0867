//! The owner's alerts as the login path gives them: how (language, e-mail, period), and
//! the one place an alert to a mailbox's owner is made — for a refusal, a breach, or a
//! password used from a new place (with its "Non sono stato io" link).

use std::sync::Arc;

use jiff::Timestamp;

use super::principals::Principals;
use crate::audit::history::AskOwner;
use crate::policy::usage;
use crate::policy::{Mailbox, Period};
use crate::store::{Alert, NewPlace, NotMeLink, Notice};
use crate::wording::{Language, Locale, Said};

/// How the login path's alerts are given.
#[derive(Debug)]
pub(crate) struct AlertSettings {
    pub(super) every: Period,
    pub(super) email: bool,
    pub(super) language: Language,
}

/// An alert to `mailbox`'s owner, given as `alerts` say.
pub(super) fn alert(
    alerts: &AlertSettings,
    zone: &jiff::tz::TimeZone,
    mailbox: &Mailbox,
    said: Said,
    at: Timestamp,
    quiet_since: Timestamp,
) -> Alert {
    let locale = Locale {
        language: alerts.language,
        zone: zone.clone(),
    };
    Alert {
        address: mailbox.address.clone(),
        email_to: mailbox
            .email_recipients(alerts.email, None)
            .into_iter()
            .next(),
        notice: Notice::said(at, said, &locale),
        quiet_since,
        link: None,
    }
}

/// How the history writer asks an owner about a password used from a new place: an
/// alert (avvisi, and an e-mail to the contact carrying a "Non sono stato io" link for an
/// app password), the mailbox read as the login path knows it.
pub(super) fn ask_owner(
    principals: Arc<Principals>,
    alerts: Arc<arc_swap::ArcSwap<AlertSettings>>,
    zone: jiff::tz::TimeZone,
) -> AskOwner {
    Box::new(move |p: &NewPlace| {
        let principal = principals.get(&p.address).ok().flatten()?;
        let mailbox = &principal.mailbox;
        let network = p
            .client
            .parse()
            .map_or_else(|_| p.client.clone(), usage::network_of);
        let said = Said::NewPlace {
            at: p.at,
            password: p.app_password.clone(),
            new: p.kind,
            network,
            client: p.client.clone(),
            protocol: p.protocol.to_string(),
            software: p.software.clone(),
        };
        // The store has rationed these per password already: never quieted by kind.
        let mut a = alert(&alerts.load(), &zone, mailbox, said, p.at, Timestamp::MAX);
        if a.email_to.is_some() && p.app_password.is_some() {
            match usage::link_token() {
                Ok((token, hash)) => {
                    a.link = Some(NotMeLink {
                        token,
                        hash,
                        mailbox_id: p.mailbox_id,
                        credential: p.credential,
                        name: p.app_password.clone(),
                        created_at: p.at,
                        expires_at: p.at + usage::LINK_LIFE,
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "no \"Non sono stato io\" link for this alert")
                }
            }
        }
        Some(a)
    })
}
