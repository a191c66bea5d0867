//! The login: the form (no server-side session: a signed double-submit cookie), the
//! password step, the code step, and logging out. Decided in `auth::owner`; here it is
//! only called and rendered.

#![allow(clippy::result_large_err)]

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    /// The associated passkey's form, when the device is one.
    passkey: Option<PasskeyForm>,
}

pub(super) fn login_cookie(value: &str, max_age: u64) -> String {
    format!(
        "{LOGIN_COOKIE}={value}; Path=/login; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
    )
}

/// The login form's message, named by `?e=`: one of the page's own texts (never the
/// query's words).
pub(super) fn login_flash(t: &'static Texts, q: &HashMap<String, String>) -> Option<Flash> {
    let text = match q.get("e").map(String::as_str) {
        Some("wrong") => t.wrong_credentials,
        Some("unavailable") => t.unavailable,
        _ => return None,
    };
    Some(Flash {
        error: true,
        text: text.to_owned(),
    })
}

/// Back to the login form with its message `e` (`wrong`, `unavailable`), in `lang`.
pub(super) fn login_again(web: &Web, headers: &HeaderMap, lang: Language, e: &str) -> Response {
    let mut to = format!("/login?e={e}");
    if language(web, headers, &HashMap::new(), None) != lang {
        to.push_str("&lang=");
        to.push_str(lang.as_str());
    }
    Redirect::to(&to).into_response()
}

pub(super) async fn login_page(
    State(web): Shared,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // No session for the form: its CSRF token is a signed cookie's nonce (the one this
    // browser has while it is fresh, else a new one).
    let lang = language(&web, &headers, &q, None);
    let t = texts(lang);
    let reused = cookie_value(&headers, LOGIN_COOKIE).and_then(|c| web.login_csrf.reuse(&c));
    let (set, csrf) = match reused {
        Some(token) => (None, token),
        None => {
            let (value, token) = web.login_csrf.issue();
            (Some(value), token)
        }
    };
    let page = LoginPage {
        t,
        who: None,
        csrf,
        flash: login_flash(t, &q),
    };
    let mut response = render(StatusCode::OK, page);
    if let Some(value) = set {
        let max_age = web.login_csrf.lifetime().as_secs();
        if let Ok(v) = HeaderValue::from_str(&login_cookie(&value, max_age)) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

pub(super) async fn login(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let f = form_fields(form);
    // The form's language (the page it was shown in), else the browser's, else ours.
    let asked: HashMap<String, String> = f
        .as_ref()
        .ok()
        .and_then(|f| f.get("lang"))
        .map(|l| HashMap::from([("lang".to_owned(), l.clone())]))
        .unwrap_or_default();
    let lang = language(&web, &headers, &asked, None);
    let t = texts(lang);
    let Some(cookie) = cookie_value(&headers, LOGIN_COOKIE) else {
        // No login form was served to this browser (or it expired): start again.
        return Redirect::to("/login").into_response();
    };
    let f = match f {
        Ok(f) => f,
        Err(r) => return r.page(t, None, String::new()),
    };
    let given = f.get("csrf").map(String::as_str).unwrap_or_default();
    if !web.login_csrf.check(&cookie, given) {
        return Rejected::Forbidden.page(t, None, String::new());
    }
    let (login, password) = (
        f.get("login").cloned().unwrap_or_default(),
        Secret::new(f.get("password").cloned().unwrap_or_default()),
    );
    drop(f);
    match web.auth.owner_password(peer.ip(), &login, password).await {
        PasswordStep::CodeDue { mailbox, login } => {
            let stage = Stage::NeedsCode {
                login,
                address: mailbox.address.clone(),
            };
            start(&web, &headers, stage, lang)
        }
        PasswordStep::LoggedIn { mailbox, login } => {
            let Some(stamp) = web.auth.owner_stamp(&login) else {
                return Redirect::to("/login").into_response();
            };
            let stage = Stage::In {
                login,
                address: mailbox.address.clone(),
                stamp,
            };
            start(&web, &headers, stage, lang)
        }
        PasswordStep::Refused => login_again(&web, &headers, lang, "wrong"),
        PasswordStep::Unavailable => login_again(&web, &headers, lang, "unavailable"),
    }
}

/// The first session of a login, after the password step: waiting for the code, or
/// (2FA off) logged in. The browser's previous session, if any, ends. A table full of
/// logged-in owners refuses it ("not available, try again").
pub(super) fn start(web: &Web, headers: &HeaderMap, stage: Stage, lang: Language) -> Response {
    let to = match stage {
        Stage::In { .. } => "/account",
        Stage::NeedsCode { .. } => "/login/code",
    };
    match web.sessions.create(stage, lang) {
        Ok(id) => {
            if let Some(old) = session_id(headers) {
                web.sessions.end(&old);
            }
            ([(header::SET_COOKIE, cookie(&id))], Redirect::to(to)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "web: no room for a new session (every place is a logged-in owner's)");
            login_again(web, headers, lang, "unavailable")
        }
    }
}

/// Moves session `id` to logged in (a new id, a new CSRF token).
pub(super) fn logged_in(
    web: &Web,
    id: &str,
    login: String,
    address: String,
    flash: Option<Flash>,
) -> Response {
    let Some(stamp) = web.auth.owner_stamp(&login) else {
        return Redirect::to("/login").into_response();
    };
    match web.sessions.promote(
        id,
        Stage::In {
            login,
            address,
            stamp,
        },
    ) {
        Some(new) => {
            if flash.is_some() {
                web.sessions.with(&new, |s| s.flash = flash);
            }
            (
                [(header::SET_COOKIE, cookie(&new))],
                Redirect::to("/account"),
            )
                .into_response()
        }
        None => Redirect::to("/login").into_response(),
    }
}

/// The session of a request waiting for its code.
pub(super) fn waiting(
    web: &Web,
    headers: &HeaderMap,
) -> Option<(String, String, String, String, Language, Option<Flash>)> {
    let id = session_id(headers)?;
    web.sessions
        .with(&id, |s| match s.stage() {
            Stage::NeedsCode { login, address } => Some((
                login.clone(),
                address.clone(),
                s.csrf.clone(),
                s.language,
                s.flash.take(),
            )),
            _ => None,
        })
        .flatten()
        .map(|(l, a, c, lang, f)| (id, l, a, c, lang, f))
}

pub(super) async fn code_page(State(web): Shared, headers: HeaderMap) -> Response {
    let Some((id, login, _, csrf, lang, flash)) = waiting(&web, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let passkey = web
        .auth
        .owner_mailbox(&login)
        .and_then(|m| {
            m.device
                .as_ref()
                .and_then(|d| d.passkey())
                .map(|p| p.id.clone())
        })
        .and_then(|key| passkey_form(&web, &headers, &id, &login, Some(&key)));
    render(
        StatusCode::OK,
        CodePage {
            t: texts(lang),
            who: None,
            csrf,
            flash,
            passkey,
        },
    )
}

pub(super) async fn code(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let Some((id, login, address, csrf, lang, _)) = waiting(&web, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let t = texts(lang);
    let f = match fields(form, &csrf) {
        Ok(f) => f,
        Err(r) => return r.page(t, None, csrf),
    };
    // A code (the app's, or a recovery code), or the passkey's answer.
    let answer = Answer::of(&f);
    let ceremony = super::passkey::Challenge::take(&web, &headers, &id);
    let code = answer
        .as_ref()
        .map_or_else(|| code_field(&f), |a| a.signature_text());
    let again = |text: String| {
        web.sessions
            .with(&id, |s| s.flash = Some(Flash { error: true, text }));
        Redirect::to("/login/code").into_response()
    };
    let Some(mailbox) = web.auth.owner_mailbox(&login) else {
        return Redirect::to("/login").into_response();
    };
    let (actor, a, c) = (Actor::Owner(login.clone()), address.clone(), code.clone());
    let check = || async {
        code_answer(
            web.manage(move |m| {
                let proof = match (&answer, &ceremony) {
                    (Some(answer), Some(ceremony)) => answer.proof(ceremony),
                    _ => c.as_str().into(),
                };
                m.prove_device(&actor, &a, proof, now())
            })
            .await,
        )
    };
    match web
        .auth
        .owner_code(
            CodeDoor::Page {
                peer: peer.ip(),
                login: &login,
            },
            &mailbox,
            CodeUse::Login,
            &code,
            check,
        )
        .await
    {
        // A recovery code got the owner in: the first page says how many are left.
        CodeStep::Done(left) => logged_in(
            &web,
            &id,
            login,
            address,
            left.map(|n| Flash {
                error: false,
                text: t.recovery_used.replace("{n}", &n.to_string()),
            }),
        ),
        CodeStep::Wrong(_) => again(t.wrong_code.to_owned()),
        CodeStep::Blocked { retry_after } => again(blocked_text(t, retry_after)),
        CodeStep::Other(e) => {
            tracing::error!(error = %e, "web: the code could not be checked");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                None,
                csrf,
                t.unavailable.to_owned(),
            )
        }
    }
}

pub(super) async fn logout(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    web.sessions.end(&o.id);
    (
        [(header::SET_COOKIE, clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}
