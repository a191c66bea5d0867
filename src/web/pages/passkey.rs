//! Passkeys on the page: the data a passkey form carries (the relying party, a fresh
//! challenge kept in the session, the credential allowed), and the ceremony a posted
//! answer is checked against (the challenge taken from the session: one answer per
//! challenge). Passkeys are offered only when `web.public_host` names this page's host:
//! WebAuthn needs a DNS name, never an address.

#![allow(clippy::result_large_err)]

use super::*;
use crate::manage::two_factor::{Assertion, Proof};
use crate::policy::passkey::{self, Ceremony};

/// What a passkey form carries to the page's script.
pub(super) struct PasskeyForm {
    pub(super) rp_id: String,
    pub(super) challenge: String,
    pub(super) user_id: String,
    pub(super) user_name: String,
    /// The credential allowed (an assertion), base64url; empty for a registration.
    pub(super) allow: String,
}

/// The host this page was asked for, if it is the relying party (`web.public_host`).
fn relying_party(web: &Web, headers: &HeaderMap) -> Option<(String, String)> {
    let rp_id = web.settings.load().rp_id.clone()?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    (name.eq_ignore_ascii_case(&rp_id)).then(|| (rp_id, format!("https://{host}")))
}

/// A new challenge for session `id`'s next ceremony, and the form; `None` when passkeys
/// cannot be used from this page.
pub(super) fn passkey_form(
    web: &Web,
    headers: &HeaderMap,
    id: &str,
    user: &str,
    allow: Option<&[u8]>,
) -> Option<PasskeyForm> {
    let (rp_id, _) = relying_party(web, headers)?;
    let (bytes, challenge) = passkey::challenge().ok()?;
    web.sessions.with(id, |s| s.challenge = Some(bytes));
    let user_id = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
    Some(PasskeyForm {
        rp_id,
        challenge,
        user_id: passkey::encode(&user_id.as_ref()[..16]),
        user_name: user.to_owned(),
        allow: allow.map(passkey::encode).unwrap_or_default(),
    })
}

/// The ceremony a posted answer is checked against — the session's challenge, taken.
pub(super) struct Challenge {
    rp_id: String,
    origin: String,
    challenge: Vec<u8>,
}

impl Challenge {
    /// From this request, if passkeys can be used here and the session gave a challenge.
    pub(super) fn take(web: &Web, headers: &HeaderMap, id: &str) -> Option<Challenge> {
        let (rp_id, origin) = relying_party(web, headers)?;
        let challenge = web.sessions.with(id, |s| s.challenge.take()).flatten()?;
        Some(Challenge {
            rp_id,
            origin,
            challenge,
        })
    }

    pub(super) fn ceremony(&self) -> Ceremony<'_> {
        Ceremony {
            rp_id: &self.rp_id,
            origin: &self.origin,
            challenge: &self.challenge,
        }
    }
}

/// A passkey's answer posted in a form.
#[derive(Clone)]
pub(super) struct Answer {
    credential_id: String,
    client_data_json: String,
    authenticator_data: String,
    signature: String,
}

impl Answer {
    /// The answer's fields, if the form carries one.
    pub(super) fn of(f: &HashMap<String, String>) -> Option<Answer> {
        let get = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
        Some(Answer {
            credential_id: get("credential_id")?,
            client_data_json: get("client_data_json")?,
            authenticator_data: get("authenticator_data")?,
            signature: get("signature")?,
        })
    }

    /// What the abuse model fingerprints the answer by (distinct answers count apart).
    pub(super) fn signature_text(&self) -> String {
        self.signature.clone()
    }

    pub(super) fn proof<'a>(&'a self, ceremony: &'a Challenge) -> Proof<'a> {
        Proof::Passkey(Assertion {
            ceremony: ceremony.ceremony(),
            credential_id: &self.credential_id,
            client_data_json: &self.client_data_json,
            authenticator_data: &self.authenticator_data,
            signature: &self.signature,
        })
    }
}
