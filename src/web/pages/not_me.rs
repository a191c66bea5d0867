//! "Non sono stato io": the link an alert about a new place carries. It can only take
//! access away, so it needs no login: the page names the password, its button
//! deactivates it at once (its sessions end). Used, expired or unknown, a link shows
//! one page that says it no longer works, whichever it was.

use axum::extract::Path;

use super::*;

#[derive(Template)]
#[template(path = "not_me.html")]
struct NotMePage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    token: String,
    name: String,
    address: String,
    when: String,
}

/// The page a link that no longer works shows.
fn gone(t: &'static Texts) -> Response {
    message(
        StatusCode::NOT_FOUND,
        t,
        None,
        String::new(),
        t.link_gone.to_owned(),
    )
}

/// A token as links carry them (URL-safe base64 of 32 bytes); anything else is not
/// looked up.
fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /not-me/{token}`: what the link takes away, and the button.
pub(super) async fn not_me_page(
    State(web): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(token): Path<String>,
) -> Response {
    let t = texts(language(&web, &headers, &q, None));
    if !well_formed(&token) {
        return gone(t);
    }
    let lookup = token.clone();
    match web.manage(move |m| m.not_me_link(&lookup, now())).await {
        Ok(Some(n)) => render(
            StatusCode::OK,
            NotMePage {
                t,
                who: None,
                csrf: String::new(),
                flash: None,
                token,
                name: n.name,
                address: n.address,
                when: fmt_time(n.alerted_at, &web.settings.load().policy.zone),
            },
        ),
        Ok(None) => gone(t),
        Err(e) => {
            tracing::error!(error = %e, "web: a \"Non sono stato io\" link could not be read");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                None,
                String::new(),
                t.unavailable.to_owned(),
            )
        }
    }
}

/// `POST /not-me`: deactivates the password the link names (the token is in the form).
pub(super) async fn not_me(State(web): Shared, headers: HeaderMap, form: Fields) -> Response {
    let t = texts(language(&web, &headers, &HashMap::new(), None));
    let f = match form_fields(form) {
        Ok(f) => f,
        Err(r) => return r.page(t, None, String::new()),
    };
    let token = f.get("token").cloned().unwrap_or_default();
    if !well_formed(&token) {
        return gone(t);
    }
    match web.manage(move |m| m.not_me(&token, now())).await {
        Ok(Some(n)) => {
            tracing::info!(address = %n.address, name = %n.name, "app password deactivated by its owner's \"Non sono stato io\" link");
            render(
                StatusCode::OK,
                MessagePage {
                    t,
                    who: None,
                    csrf: String::new(),
                    flash: Some(Flash {
                        error: false,
                        text: format!("«{}» · {}", n.name, n.address),
                    }),
                    text: t.not_me_done.to_owned(),
                },
            )
        }
        Ok(None) => gone(t),
        Err(e) => {
            tracing::error!(error = %e, "web: a \"Non sono stato io\" link could not be used");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                None,
                String::new(),
                t.unavailable.to_owned(),
            )
        }
    }
}
