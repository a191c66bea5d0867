//! *Password per programmi di posta*: generate (shown once), postpone, regenerate,
//! deactivate.

#![allow(clippy::result_large_err)]

use super::*;

#[derive(Template)]
#[template(path = "reveal.html")]
struct RevealPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    revealed: Option<RevealedView>,
    clients: Vec<ClientRow>,
}

struct RevealedView {
    name: String,
    password: String,
    expires: String,
    scope: String,
}

pub(super) async fn generate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f
        .get("name")
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    issue(&web, o, name, false).await
}

/// Generates (or regenerates) and shows the password once, through a redirect: the
/// password waits in the session for the next page and is gone once shown.
pub(super) async fn issue(
    web: &Arc<Web>,
    o: Owner,
    name: Option<String>,
    regenerate: bool,
) -> Response {
    let (actor, address) = (o.actor(), o.address.clone());
    let result = web
        .manage(move |m| {
            let wanted = Wanted {
                name: name.as_deref(),
                scope: None,
            };
            m.generate_app_password(&actor, &address, wanted, regenerate, now())
        })
        .await;
    match result {
        Ok(new) => {
            let revealed = Revealed {
                name: new.name.clone(),
                password: new.password.clone(),
                expires: fmt_time(new.expires_at, &web.settings.load().policy.zone),
                scope: scope_text(new.scope),
                protocols: new.scope,
            };
            web.sessions.with(&o.id, |s| {
                s.reveal = Some(revealed);
                if regenerate {
                    s.flash = Some(Flash {
                        error: false,
                        text: o.t().regenerated_note.to_owned(),
                    });
                }
            });
            Redirect::to("/account/app-passwords/new").into_response()
        }
        Err(e) => back_with(web, &o, true, refusal(&o, &e)),
    }
}

pub(super) async fn reveal(State(web): Shared, o: Owner) -> Response {
    let revealed = web.sessions.with(&o.id, |s| s.reveal.take()).flatten();
    let page = RevealPage {
        t: o.t(),
        who: Some(o.login.clone()),
        csrf: o.csrf.clone(),
        flash: o.flash.clone(),
        clients: revealed
            .as_ref()
            .map(|r| client_rows(&web, r.protocols, &o.login))
            .unwrap_or_default(),
        revealed: revealed.map(|r| RevealedView {
            name: r.name,
            password: r.password.expose().to_owned(),
            expires: r.expires,
            scope: r.scope,
        }),
    };
    render(StatusCode::OK, page)
}

pub(super) async fn regenerate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    if !confirmed(&f) {
        let t = o.t();
        return confirm_page(
            &o,
            format!("{} \u{2014} \"{name}\"", t.regenerate),
            "/account/app-passwords/regenerate",
            &name,
            t.regenerate_warning.to_owned(),
            false,
            None,
        );
    }
    issue(&web, o, Some(name), true).await
}

pub(super) async fn deactivate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    let (actor, address, n) = (o.actor(), o.address.clone(), name.clone());
    // manage asks for the confirmation (after its rules passed); without one, the page
    // shows manage's warning and asks.
    let mut ask = FormAsk {
        confirmed: confirmed(&f),
    };
    let result = web
        .manage(move |m| {
            m.deactivate_app_password(&actor, &address, Some(&n), false, &mut ask, now())
        })
        .await;
    match result {
        Err(ManageError::Unconfirmed(w)) => confirm_page(
            &o,
            format!("{} \u{2014} \"{name}\"", o.t().deactivate),
            "/account/app-passwords/deactivate",
            &name,
            wording::warning(&w, o.language),
            false,
            None,
        ),
        Ok(_) => back_with(&web, &o, false, o.t().deactivated_done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

pub(super) async fn postpone(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.postpone_app_password(&actor, &address, Some(&name), now()))
        .await
    {
        Ok(p) => {
            let text = format!(
                "{} {}: {}",
                o.t().done,
                o.t().expiry,
                fmt_time(p.expires_at, &web.settings.load().policy.zone)
            );
            back_with(&web, &o, false, text)
        }
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}
