//! *Configura iPhone/iPad/Mac*: a new app password minted for a device and delivered in
//! a configuration profile — downloaded here once, or by a one-time link shown as a QR
//! code for the phone (`super::super::profile`).

#![allow(clippy::result_large_err)]

use axum::extract::Path;

use super::*;
use crate::web::profile::{LINK_LIFE, ProfileOf, Waiting, plist};

#[derive(Template)]
#[template(path = "apple.html")]
struct ReadyPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    ready: bool,
    signed: bool,
    qr: Option<String>,
}

/// The device's name and the protocols ticked; a refusal in the owner's words.
fn wanted(o: &Owner, f: &HashMap<String, String>) -> Result<(String, ProtocolSet), String> {
    let name = f.get("device").map(|n| n.trim()).unwrap_or("");
    if name.is_empty() {
        return Err(o.t().device_name_needed.to_owned());
    }
    let mut protocols = ProtocolSet::NONE;
    for (p, key) in [
        (Protocol::Imap, "imap"),
        (Protocol::Pop3, "pop3"),
        (Protocol::Smtp, "smtp"),
    ] {
        if f.contains_key(key) {
            protocols.insert(p);
        }
    }
    if !protocols.contains(Protocol::Imap) && !protocols.contains(Protocol::Pop3) {
        return Err(o.t().incoming_needed.to_owned());
    }
    Ok((name.to_owned(), protocols))
}

/// `POST /account/apple`: mints the app password (the usual life, reminders, postpone),
/// builds the profile around it, and keeps it waiting to be taken once.
pub(super) async fn apple_setup(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let (device, protocols) = match wanted(&o, &f) {
        Ok(w) => w,
        Err(text) => return back_with(&web, &o, true, text),
    };
    let (actor, address, name) = (o.actor(), o.address.clone(), device.clone());
    let minted = web
        .manage(move |m| {
            let wanted = Wanted {
                name: Some(&name),
                scope: Some(protocols),
            };
            m.generate_app_password(&actor, &address, wanted, false, now())
        })
        .await;
    let new = match minted {
        Ok(new) => new,
        Err(e) => return back_with(&web, &o, true, refusal(&o, &e)),
    };
    let clients = web.settings.load().clients.clone();
    let Some(plain) = plist(&ProfileOf {
        clients: &clients,
        address: &o.address,
        login: &o.login,
        password: new.password.expose(),
        device: &new.name,
        protocols: new.scope,
    }) else {
        return back_with(&web, &o, true, o.t().incoming_needed.to_owned());
    };
    let signed = web.signer.as_ref().and_then(|s| match s.sign(&plain) {
        Ok(der) => Some(der),
        Err(e) => {
            tracing::warn!(error = %e, "web: a profile could not be signed; it goes out unsigned");
            None
        }
    });
    let waiting = Waiting {
        signed: signed.is_some(),
        bytes: signed.map_or(plain, zeroize::Zeroizing::new),
        address: o.address.clone(),
        login: o.login.clone(),
        name: new.name.clone(),
        until: now() + LINK_LIFE,
    };
    let token = web.profiles.put(waiting, now());
    web.sessions.with(&o.id, |s| s.profile = Some(token));
    Redirect::to("/account/apple").into_response()
}

/// `GET /account/apple`: the waiting profile's download button, and its one-time link as
/// a QR code (to the host this page was asked for).
pub(super) async fn apple_ready(State(web): Shared, headers: HeaderMap, o: Owner) -> Response {
    let token = web.sessions.with(&o.id, |s| s.profile.clone()).flatten();
    let signed = token
        .as_deref()
        .and_then(|t| web.profiles.waiting(t, now()));
    let qr = match (&token, signed, page_host(&headers)) {
        (Some(token), Some(_), Some(host)) => {
            qrcode::QrCode::new(format!("https://{host}/setup/{token}"))
                .map(|q| {
                    q.render::<qrcode::render::svg::Color<'_>>()
                        .min_dimensions(200, 200)
                        .build()
                })
                .ok()
        }
        _ => None,
    };
    render(
        StatusCode::OK,
        ReadyPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            ready: signed.is_some(),
            signed: signed.unwrap_or(false),
            qr,
        },
    )
}

/// The host this request was sent to, if it is a plain host name or address (and port).
fn page_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let fine = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    fine.then(|| host.to_owned())
}

/// The profile as a download: never cached, its name the device's.
fn deliver(w: &Waiting) -> Response {
    let file: String = w
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut r = (StatusCode::OK, w.bytes.to_vec()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-apple-aspen-config"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.mobileconfig\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `POST /account/apple/download`: the waiting profile, once, to the session that made
/// it.
pub(super) async fn apple_download(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    Posted { o, .. }: Posted,
) -> Response {
    let token = web.sessions.with(&o.id, |s| s.profile.take()).flatten();
    let Some(w) = token.and_then(|t| web.profiles.take(&t, now())) else {
        return back_with(&web, &o, true, o.t().profile_gone.to_owned());
    };
    web.auth
        .profile_taken(peer.ip(), &o.login, &w.address, &w.name, false)
        .await;
    deliver(&w)
}

/// `GET /setup/{token}`: the one-time link. Taken, expired or unknown: one page that
/// says the link no longer works, whichever it was.
pub(super) async fn setup_link(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    match web.profiles.take(&token, now()) {
        Some(w) => {
            web.auth
                .profile_taken(peer.ip(), &w.login, &w.address, &w.name, true)
                .await;
            deliver(&w)
        }
        None => {
            let q = HashMap::new();
            let t = texts(language(&web, &headers, &q, None));
            message(
                StatusCode::NOT_FOUND,
                t,
                None,
                String::new(),
                t.link_gone.to_owned(),
            )
        }
    }
}
