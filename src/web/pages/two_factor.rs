//! *Verifica in 2 passaggi*: turn on (a device to scan, confirmed with a code), turn off
//! and replace the device — every code through the mailbox's ration (`auth::owner`).

#![allow(clippy::result_large_err)]

use super::*;

#[derive(Template)]
#[template(path = "twofa.html")]
struct TwoFactorPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    two_factor: bool,
    qr_svg: Option<String>,
    uri: String,
    recovery_left: u32,
    /// Register a passkey instead of scanning (when a device is waiting).
    register: Option<PasskeyForm>,
    /// The associated passkey's form (to turn 2FA off or replace it with it).
    passkey: Option<PasskeyForm>,
    /// Passkeys are configured, but this page was not opened by their host name.
    passkey_hint: bool,
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    codes: Vec<String>,
    download: String,
}

/// A code asked by an action of a logged-in owner (confirm, turn off, replace), through
/// the mailbox's ration of codes; a refusal goes back to the overview with its words.
/// For actions that ask no confirmation: should one ever ask, it is not shown half-done.
fn never_asked(_: &Warning) -> Response {
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

pub(super) async fn with_code<T: Send + 'static>(
    web: &Arc<Web>,
    o: &Owner,
    peer: std::net::IpAddr,
    purpose: CodeUse,
    code: &str,
    action: impl FnOnce(&mut crate::manage::Manager) -> Result<T, ManageError> + Send + 'static,
    unconfirmed: impl FnOnce(&Warning) -> Response,
) -> Result<T, Response> {
    let Some(mailbox) = web.auth.owner_mailbox(&o.login) else {
        return Err(Redirect::to("/login").into_response());
    };
    let check = || async { code_answer(web.manage(action).await) };
    match web
        .auth
        .owner_code(
            CodeDoor::Page {
                peer,
                login: &o.login,
            },
            &mailbox,
            purpose,
            code,
            check,
        )
        .await
    {
        CodeStep::Done(t) => Ok(t),
        CodeStep::Wrong(_) => Err(back_with(web, o, true, o.t().wrong_code.to_owned())),
        CodeStep::Blocked { retry_after } => {
            Err(back_with(web, o, true, blocked_text(o.t(), retry_after)))
        }
        CodeStep::Other(ManageError::Unconfirmed(w)) => Err(unconfirmed(&w)),
        CodeStep::Other(e) => Err(back_with(web, o, true, refusal(o, &e))),
    }
}

pub(super) fn two_factor_view(
    web: &Web,
    headers: &HeaderMap,
    o: &Owner,
    mailbox: &crate::policy::Mailbox,
    device: Option<Secret>,
    recovery_left: u32,
) -> Response {
    let two_factor = mailbox.two_factor_on();
    let register = device
        .is_some()
        .then(|| passkey_form(web, headers, &o.id, &o.login, None))
        .flatten();
    let passkey = match mailbox.device.as_ref().and_then(|d| d.passkey()) {
        Some(p) if register.is_none() => passkey_form(web, headers, &o.id, &o.login, Some(&p.id)),
        _ => None,
    };
    let (qr_svg, uri) = match device {
        Some(uri) => {
            let svg = qrcode::QrCode::new(uri.expose().as_bytes())
                .map(|q| {
                    q.render::<qrcode::render::svg::Color<'_>>()
                        .min_dimensions(200, 200)
                        .build()
                })
                .ok();
            (svg, uri.expose().to_owned())
        }
        None => (None, String::new()),
    };
    render(
        StatusCode::OK,
        TwoFactorPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            two_factor,
            qr_svg,
            uri,
            recovery_left,
            passkey_hint: register.is_none() && web.settings.load().rp_id.is_some(),
            register,
            passkey,
        },
    )
}

/// `GET /account/2fa`: the device waiting for its first code, if one is (reloading shows
/// the same one, never a new one); otherwise what can be done.
pub(super) async fn two_factor_page(State(web): Shared, headers: HeaderMap, o: Owner) -> Response {
    let Some(m) = web.auth.owner_mailbox(&o.login) else {
        return Redirect::to("/login").into_response();
    };
    let address = o.address.clone();
    let read = web
        .manage(move |m| {
            let view = m.show_mailbox(&address, now())?;
            Ok((
                m.pending_device(&address)?,
                view.two_factor.recovery_codes_left,
            ))
        })
        .await;
    match read {
        Ok((pending, left)) => {
            two_factor_view(&web, &headers, &o, &m, pending.map(|d| d.otpauth_uri), left)
        }
        Err(e) => unavailable(&o, &e),
    }
}

pub(super) async fn two_factor_enable(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.enable_2fa(&actor, &address, now()))
        .await
    {
        Ok(_) => Redirect::to("/account/2fa").into_response(),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

/// `POST /account/2fa/cancel`: the device waiting for its first code is dropped.
pub(super) async fn two_factor_cancel(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.cancel_device(&actor, &address, now()))
        .await
    {
        Ok(()) => back_with(&web, &o, false, o.t().done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

pub(super) async fn two_factor_replace(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Posted { o, f }: Posted,
) -> Response {
    // A code (the app's, or a recovery code), or the passkey's answer.
    let answer = Answer::of(&f);
    let ceremony = super::passkey::Challenge::take(&web, &headers, &o.id);
    let code = answer
        .as_ref()
        .map_or_else(|| code_field(&f), |a| a.signature_text());
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action = move |m: &mut crate::manage::Manager| {
        let proof = match (&answer, &ceremony) {
            (Some(a), Some(ceremony)) => a.proof(ceremony),
            _ => c.as_str().into(),
        };
        m.replace_device(&actor, &address, Some(proof), now())
    };
    match with_code(
        &web,
        &o,
        peer.ip(),
        CodeUse::Replace,
        &code,
        action,
        never_asked,
    )
    .await
    {
        Ok(_) => Redirect::to("/account/2fa").into_response(),
        Err(response) => response,
    }
}

/// After a change of the device: this session goes on (it proved the code), with the new
/// stamp; every other session of the mailbox ends.
pub(super) async fn restamp(web: &Arc<Web>, o: &Owner) {
    let (this, login) = (Arc::clone(web), o.login.clone());
    // Read back from the store, not the cache: on a fleet the change's notification may
    // not have reached this node yet, and the old stamp would end this very session.
    let stamp = tokio::task::spawn_blocking(move || this.auth.owner_stamp_reloaded(&login))
        .await
        .ok()
        .flatten();
    if let Some(stamp) = stamp {
        web.sessions.with(&o.id, |s| s.restamp(stamp));
    }
    web.sessions.end_others(&o.address, &o.id);
}

/// After the device changed (confirmed, or 2FA turned off): this session re-stamped, the
/// others ended, back to the overview saying what it means for the mail programs.
async fn device_changed(web: &Arc<Web>, o: &Owner, text: &str) -> Response {
    restamp(web, o).await;
    back_with(web, o, false, text.to_owned())
}

pub(super) async fn two_factor_confirm(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    Posted { o, f }: Posted,
) -> Response {
    let code = code_field(&f);
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action =
        move |m: &mut crate::manage::Manager| m.confirm_device(&actor, &address, &c, now());
    match with_code(
        &web,
        &o,
        peer.ip(),
        CodeUse::Confirm,
        &code,
        action,
        never_asked,
    )
    .await
    {
        Ok(c) => device_confirmed(&web, &o, c).await,
        Err(response) => response,
    }
}

pub(super) async fn two_factor_disable(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Posted { o, f }: Posted,
) -> Response {
    let mut ask = FormAsk {
        confirmed: confirmed(&f),
    };
    let answer = Answer::of(&f);
    let ceremony = super::passkey::Challenge::take(&web, &headers, &o.id);
    let code = answer
        .as_ref()
        .map_or_else(|| code_field(&f), |a| a.signature_text());
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action = move |m: &mut crate::manage::Manager| {
        let proof = match (&answer, &ceremony) {
            (Some(a), Some(ceremony)) => a.proof(ceremony),
            _ => c.as_str().into(),
        };
        m.disable_2fa(&actor, &address, proof, &mut ask, now())
    };
    // manage asks for the confirmation; without one, the page shows its warning and asks
    // (with the code field, or the passkey).
    let key = web.auth.owner_mailbox(&o.login).and_then(|m| {
        m.device
            .as_ref()
            .and_then(|d| d.passkey())
            .map(|p| p.id.clone())
    });
    let unconfirmed = |w: &Warning| {
        let t = o.t();
        let passkey = key
            .as_deref()
            .and_then(|id| passkey_form(&web, &headers, &o.id, &o.login, Some(id)));
        confirm_page(
            &o,
            format!("{} \u{2014} {}", t.turn_off, t.two_factor),
            "/account/2fa/disable",
            "",
            wording::warning(w, o.language),
            true,
            passkey,
        )
    };
    match with_code(
        &web,
        &o,
        peer.ip(),
        CodeUse::Disable,
        &code,
        action,
        unconfirmed,
    )
    .await
    {
        Ok(_) => device_changed(&web, &o, o.t().two_factor_off_done).await,
        Err(response) => response,
    }
}

/// A device confirmed (a code from the app, or a passkey registered): turned on, the
/// recovery codes next, shown once; replaced, back to the overview.
pub(super) async fn device_confirmed(
    web: &Arc<Web>,
    o: &Owner,
    c: crate::manage::outcome::DeviceConfirmed,
) -> Response {
    match c.result {
        crate::manage::outcome::DeviceResult::Enabled => {
            restamp(web, o).await;
            web.sessions.with(&o.id, |s| {
                s.recovery = Some(c.recovery_codes);
                s.flash = Some(Flash {
                    error: false,
                    text: o.t().two_factor_on_done.to_owned(),
                });
            });
            Redirect::to("/account/2fa/recovery").into_response()
        }
        _ => device_changed(web, o, o.t().device_replaced_done).await,
    }
}

/// `POST /account/2fa/recovery`: a new set of recovery codes (the old set dies), shown
/// once next.
pub(super) async fn recovery_renew(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.renew_recovery_codes(&actor, &address, now()))
        .await
    {
        Ok(codes) => {
            let codes = codes.into_iter().map(Secret::new).collect();
            web.sessions.with(&o.id, |s| s.recovery = Some(codes));
            Redirect::to("/account/2fa/recovery").into_response()
        }
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

/// `GET /account/2fa/recovery`: the new recovery codes, once (with Copy and a text file
/// to download); a reload shows them no more.
pub(super) async fn recovery_page(State(web): Shared, o: Owner) -> Response {
    let codes: Vec<String> = web
        .sessions
        .with(&o.id, |s| s.recovery.take())
        .flatten()
        .unwrap_or_default()
        .iter()
        .map(|c| c.expose().to_owned())
        .collect();
    let text: String = codes.iter().map(|c| format!("{c}\r\n")).collect();
    let download: String = text
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    render(
        StatusCode::OK,
        RecoveryPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            codes,
            download,
        },
    )
}

/// `POST /account/2fa/passkey`: the passkey the browser registered completes turning
/// 2FA on (then the recovery codes) or replacing the device.
pub(super) async fn passkey_register(
    State(web): Shared,
    headers: HeaderMap,
    Posted { o, f }: Posted,
) -> Response {
    let Some(ceremony) = super::passkey::Challenge::take(&web, &headers, &o.id) else {
        return back_with(&web, &o, true, o.t().passkey_unavailable.to_owned());
    };
    let (client, attestation) = (
        f.get("client_data_json").cloned().unwrap_or_default(),
        f.get("attestation_object").cloned().unwrap_or_default(),
    );
    let (actor, address) = (o.actor(), o.address.clone());
    let result = web
        .manage(move |m| {
            m.confirm_passkey(
                &actor,
                &address,
                &ceremony.ceremony(),
                &client,
                &attestation,
                now(),
            )
        })
        .await;
    match result {
        Ok(c) => device_confirmed(&web, &o, c).await,
        Err(_) => back_with(&web, &o, true, o.t().passkey_refused.to_owned()),
    }
}
