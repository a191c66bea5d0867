//! The page's handlers: each parses the form, checks the session and its CSRF token,
//! calls one management action, and renders. The rules are the management layer's.

// A handler that cannot go on returns the response itself (a redirect to the login, a
// 403 page), as axum's own extractors do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::session::{Flash, Revealed, Stage};
use super::text::{Texts, from_accept_language, texts};
use super::{Peer, Web};
use crate::auth::{CodeDoor, CodeStep, CodeUse, PasswordStep};
use crate::clock::now;
use crate::manage::app_password::Wanted;
use crate::manage::{Actor, Ask, ErrorKind, ManageError, PasswordFor, Warning, code_answer};
use crate::policy::login::AccessResult;
use crate::policy::{Protocol, fmt_time};
use crate::secret::Secret;
use crate::wording::{self, Language, Locale};

type Shared = State<Arc<Web>>;
type Fields = Result<Form<Vec<(String, String)>>, FormRejection>;

/// Every route of the page.
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_page).post(login))
        .route("/login/code", get(code_page).post(code))
        .route("/logout", post(logout))
        .route("/account", get(account))
        .route("/account/2fa", get(two_factor_page))
        .route("/account/2fa/enable", post(two_factor_enable))
        .route("/account/2fa/confirm", post(two_factor_confirm))
        .route("/account/2fa/disable", post(two_factor_disable))
        .route("/account/2fa/replace", post(two_factor_replace))
        .route("/account/app-passwords/generate", post(generate))
        .route("/account/app-passwords/new", get(reveal))
        .route("/account/app-passwords/postpone", post(postpone))
        .route("/account/app-passwords/regenerate", post(regenerate))
        .route("/account/app-passwords/deactivate", post(deactivate))
        .route("/account/protocols", post(protocols))
        .route("/account/history", get(history))
        .route("/account/notices", get(notices))
        .route("/static/style.css", get(css))
        .route("/static/app.js", get(js))
        .fallback(not_found)
}

// ---- the request's session ----------------------------------------------------------

const COOKIE: &str = "sentinella_session";
/// The login form's signed CSRF cookie (no session behind it).
const LOGIN_COOKIE: &str = "sentinella_login";

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE)
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// The language of this request: `?lang=`, else the session's, else the browser's,
/// else the configured one.
fn language(
    web: &Web,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    session: Option<Language>,
) -> Language {
    query
        .get("lang")
        .and_then(|l| l.parse().ok())
        .or(session)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(from_accept_language)
        })
        .unwrap_or(web.settings.load().language)
}

/// What a logged-in request knows.
struct Owner {
    id: String,
    login: String,
    address: String,
    csrf: String,
    language: Language,
    flash: Option<Flash>,
}

impl Owner {
    fn actor(&self) -> Actor {
        Actor::Owner(self.login.clone())
    }
    fn t(&self) -> &'static Texts {
        texts(self.language)
    }
    fn locale(&self, web: &Web) -> Locale {
        Locale {
            language: self.language,
            zone: web.settings.load().policy.zone.clone(),
        }
    }
}

/// The logged-in session of this request, or the way to the login page. A session whose
/// credentials changed since it logged in (main password, device) ends here.
fn owner(
    web: &Web,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Owner, Response> {
    let to_login = || Redirect::to("/login").into_response();
    let id = session_id(headers).ok_or_else(to_login)?;
    let found = web.sessions.with(&id, |s| {
        let lang = language(web, headers, query, Some(s.language));
        s.language = lang;
        match s.stage() {
            Stage::In {
                login,
                address,
                stamp,
            } => Some((
                login.clone(),
                address.clone(),
                *stamp,
                s.csrf.clone(),
                lang,
                s.flash.take(),
            )),
            _ => None,
        }
    });
    let Some(Some((login, address, stamp, csrf, language, flash))) = found else {
        return Err(to_login());
    };
    if web.auth.owner_stamp(&login) != Some(stamp) {
        web.sessions.end(&id);
        return Err(to_login());
    }
    Ok(Owner {
        id,
        login,
        address,
        csrf,
        language,
        flash,
    })
}
/// The logged-in owner of a request, as an extractor: a handler that takes it runs only
/// for a live, logged-in session whose credentials still hold; any other request is sent
/// to the login page.
impl FromRequestParts<Arc<Web>> for Owner {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let q = Query::<HashMap<String, String>>::from_request_parts(parts, web)
            .await
            .map(|Query(q)| q)
            .unwrap_or_default();
        owner(web, &parts.headers, &q)
    }
}

/// A logged-in POST, as an extractor: the owner, and the form once its CSRF token
/// checked out (missing or wrong: 403, nothing done).
struct Posted {
    o: Owner,
    f: HashMap<String, String>,
}

impl FromRequest<Arc<Web>> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, web: &Arc<Web>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let o = Owner::from_request_parts(&mut parts, web).await?;
        let form: Fields =
            Form::from_request(axum::extract::Request::from_parts(parts, body), web).await;
        match fields(form, &o.csrf) {
            Ok(f) => Ok(Posted { o, f }),
            Err(r) => Err(r.page(o.t(), Some(o.login.clone()), o.csrf.clone())),
        }
    }
}


/// The form's fields.
fn form_fields(form: Fields) -> Result<HashMap<String, String>, Rejected> {
    let Form(pairs) = form.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Rejected::TooLarge
        } else {
            Rejected::BadRequest
        }
    })?;
    Ok(pairs.into_iter().collect())
}

/// The form's fields, and whether its CSRF token is the session's.
fn fields(form: Fields, csrf: &str) -> Result<HashMap<String, String>, Rejected> {
    let map = form_fields(form)?;
    let given = map.get("csrf").map(String::as_bytes).unwrap_or_default();
    // Constant time: the token is compared whole.
    let same = given.len() == csrf.len()
        && given
            .iter()
            .zip(csrf.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(map)
    } else {
        Err(Rejected::Forbidden)
    }
}

enum Rejected {
    Forbidden,
    BadRequest,
    TooLarge,
}

impl Rejected {
    fn page(self, t: &'static Texts, who: Option<String>, csrf: String) -> Response {
        let (status, text) = match self {
            Rejected::Forbidden => (StatusCode::FORBIDDEN, t.forbidden),
            Rejected::BadRequest => (StatusCode::BAD_REQUEST, t.bad_request),
            Rejected::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, t.too_large),
        };
        message(status, t, who, csrf, text.to_owned())
    }
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web: a page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn message(
    status: StatusCode,
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    text: String,
) -> Response {
    render(
        status,
        MessagePage {
            t,
            who,
            csrf,
            flash: None,
            text,
        },
    )
}

/// Back to the overview with `text` shown once.
fn back_with(web: &Web, o: &Owner, error: bool, text: String) -> Response {
    web.sessions
        .with(&o.id, |s| s.flash = Some(Flash { error, text }));
    Redirect::to("/account").into_response()
}

/// A management error in the owner's words: a refusal is the rule's; a failure is "not
/// available right now" (logged, never shown).
fn refusal(o: &Owner, e: &ManageError) -> String {
    match e.kind() {
        ErrorKind::Failure => {
            tracing::error!(error = %e, "web: a management action failed");
            o.t().unavailable.to_owned()
        }
        _ => match e {
            ManageError::Refused(p) => wording::refusal(p, o.language),
            other => other.to_string(),
        },
    }
}

/// The web page's answers to the management layer's questions: a confirmation is the
/// form's `confirm=yes`; a password is never asked on this page.
struct FormAsk {
    confirmed: bool,
}

impl Ask for FormAsk {
    fn password(&mut self, _: PasswordFor) -> Result<Secret, ManageError> {
        Err(ManageError::Declined {
            code: "not_on_the_page",
            message: "this action is not available on the web page".into(),
        })
    }
    fn confirm(&mut self, warning: &Warning) -> Result<(), ManageError> {
        if self.confirmed {
            Ok(())
        } else {
            Err(ManageError::Declined {
                code: "not_confirmed",
                message: warning.0.clone(),
            })
        }
    }
}

// ---- templates ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    text: String,
}

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
}

struct PasswordRow {
    name: String,
    state: &'static str,
    expires: String,
    scope: String,
    last_use: String,
    postpone_allowed: bool,
    postpone_opens: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    address: String,
    two_factor: bool,
    device_since: Option<String>,
    migration: bool,
    passwords: Vec<PasswordRow>,
    no_protocol: bool,
    can_generate: bool,
    several: bool,
    imap: bool,
    pop3: bool,
    smtp: bool,
}

#[derive(Template)]
#[template(path = "reveal.html")]
struct RevealPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    revealed: Option<RevealedView>,
}

struct RevealedView {
    name: String,
    password: String,
    expires: String,
    scope: String,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    what: String,
    action: &'static str,
    fields: Vec<(String, String)>,
    warning: &'static str,
    ask_code: bool,
}

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
}

struct HistoryRow {
    when: String,
    client: String,
    protocol: String,
    result: &'static str,
    class: &'static str,
    reason: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    rows: Vec<HistoryRow>,
    page: u32,
    more: bool,
}

#[derive(Template)]
#[template(path = "notices.html")]
struct NoticesPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    items: Vec<(String, String)>,
}

// ---- login --------------------------------------------------------------------------

fn login_cookie(value: &str, max_age: u64) -> String {
    format!(
        "{LOGIN_COOKIE}={value}; Path=/login; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
    )
}

/// The login form's message, named by `?e=`: one of the page's own texts (never the
/// query's words).
fn login_flash(t: &'static Texts, q: &HashMap<String, String>) -> Option<Flash> {
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
fn login_again(web: &Web, headers: &HeaderMap, lang: Language, e: &str) -> Response {
    let mut to = format!("/login?e={e}");
    if language(web, headers, &HashMap::new(), None) != lang {
        to.push_str("&lang=");
        to.push_str(lang.as_str());
    }
    Redirect::to(&to).into_response()
}

async fn login_page(
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

async fn login(
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
fn start(web: &Web, headers: &HeaderMap, stage: Stage, lang: Language) -> Response {
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
fn logged_in(web: &Web, id: &str, login: String, address: String) -> Response {
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
        Some(new) => (
            [(header::SET_COOKIE, cookie(&new))],
            Redirect::to("/account"),
        )
            .into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// The session of a request waiting for its code.
fn waiting(
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

async fn code_page(State(web): Shared, headers: HeaderMap) -> Response {
    let Some((_, _, _, csrf, lang, flash)) = waiting(&web, &headers) else {
        return Redirect::to("/login").into_response();
    };
    render(
        StatusCode::OK,
        CodePage {
            t: texts(lang),
            who: None,
            csrf,
            flash,
        },
    )
}

async fn code(
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
    let code = f
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
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
            web.manage(move |m| m.prove_device(&actor, &a, &c, now()))
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
        CodeStep::Done(()) => logged_in(&web, &id, login, address),
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

/// The owner's words for a blocked code step.
fn blocked_text(t: &Texts, retry_after: u64) -> String {
    t.code_blocked.replace("{s}", &retry_after.to_string())
}

/// A code asked by an action of a logged-in owner (confirm, turn off, replace), through
/// the mailbox's ration of codes; a refusal goes back to the overview with its words.
async fn with_code<T: Send + 'static>(
    web: &Arc<Web>,
    o: &Owner,
    peer: std::net::IpAddr,
    purpose: CodeUse,
    code: &str,
    action: impl FnOnce(&mut crate::manage::Manager) -> Result<T, ManageError> + Send + 'static,
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
        CodeStep::Other(e) => Err(back_with(web, o, true, refusal(o, &e))),
    }
}

async fn logout(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    web.sessions.end(&o.id);
    (
        [(header::SET_COOKIE, clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

// ---- Sicurezza e password -----------------------------------------------------------

async fn account(
    State(web): Shared,
    o: Owner,
) -> Response {
    let t = o.t();
    let address = o.address.clone();
    let view = match web.manage(move |m| m.show_mailbox(&address, now())).await {
        Ok(v) => v,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                Some(o.login.clone()),
                o.csrf.clone(),
                refusal(&o, &e),
            );
        }
    };
    let zone = &web.settings.load().policy.zone;
    let passwords = view
        .app_passwords
        .iter()
        .filter_map(|p| {
            let d = p.details.as_ref()?;
            Some(PasswordRow {
                name: d.name.clone(),
                state: match p.state {
                    crate::manage::outcome::AppPasswordState::Active => t.active,
                    _ => t.expired,
                },
                expires: fmt_time(d.expires_at, zone),
                scope: scope_text(d.scope),
                last_use: d.last_used.as_ref().map_or_else(
                    || t.never.to_owned(),
                    |u| format!("{} · {} · {}", fmt_time(u.at, zone), u.client, u.protocol),
                ),
                postpone_allowed: d.postpone_allowed,
                postpone_opens: fmt_time(d.postpone_opens_at, zone),
            })
        })
        .collect::<Vec<_>>();
    let max = web.settings.load().policy.max_app_passwords;
    let page = AccountPage {
        t,
        who: Some(o.login.clone()),
        csrf: o.csrf.clone(),
        flash: o.flash.clone(),
        address: view.address.clone(),
        two_factor: view.two_factor.enabled,
        device_since: view.two_factor.associated_at.map(|a| fmt_time(a, zone)),
        migration: view.migration,
        no_protocol: view.protocols.is_empty(),
        can_generate: passwords.len() < max
            || view.app_passwords.iter().any(|p| {
                p.details.is_some() && p.state != crate::manage::outcome::AppPasswordState::Active
            }),
        several: max > 1,
        passwords,
        imap: view.protocols.contains(Protocol::Imap),
        pop3: view.protocols.contains(Protocol::Pop3),
        smtp: view.protocols.contains(Protocol::Smtp),
    };
    render(StatusCode::OK, page)
}

fn scope_text(scope: crate::policy::ProtocolSet) -> String {
    scope
        .iter()
        .map(|p| match p {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP",
            Protocol::Smtp => "SMTP",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn protocols(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let (mut enable, mut disable) = (Vec::new(), Vec::new());
    for (p, key) in [
        (Protocol::Imap, "imap"),
        (Protocol::Pop3, "pop3"),
        (Protocol::Smtp, "smtp"),
    ] {
        if f.contains_key(key) {
            enable.push(p);
        } else {
            disable.push(p);
        }
    }
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.protocols(&actor, &address, &enable, &disable, now()))
        .await
    {
        Ok(_) => back_with(&web, &o, false, o.t().done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

// ---- Password per programmi di posta ------------------------------------------------

async fn generate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f
        .get("name")
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    issue(&web, o, name, false).await
}

/// Generates (or regenerates) and shows the password once, through a redirect: the
/// password waits in the session for the next page and is gone once shown.
async fn issue(web: &Arc<Web>, o: Owner, name: Option<String>, regenerate: bool) -> Response {
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
            };
            web.sessions.with(&o.id, |s| s.reveal = Some(revealed));
            Redirect::to("/account/app-passwords/new").into_response()
        }
        Err(e) => back_with(web, &o, true, refusal(&o, &e)),
    }
}

async fn reveal(
    State(web): Shared,
    o: Owner,
) -> Response {
    let revealed = web.sessions.with(&o.id, |s| s.reveal.take()).flatten();
    let page = RevealPage {
        t: o.t(),
        who: Some(o.login.clone()),
        csrf: o.csrf.clone(),
        flash: o.flash.clone(),
        revealed: revealed.map(|r| RevealedView {
            name: r.name,
            password: r.password.expose().to_owned(),
            expires: r.expires,
            scope: r.scope,
        }),
    };
    render(StatusCode::OK, page)
}

fn confirm_page(
    o: &Owner,
    what: String,
    action: &'static str,
    name: &str,
    warning: &'static str,
    ask_code: bool,
) -> Response {
    render(
        StatusCode::OK,
        ConfirmPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: None,
            what,
            action,
            fields: vec![("name".into(), name.to_owned())],
            warning,
            ask_code,
        },
    )
}

fn confirmed(f: &HashMap<String, String>) -> bool {
    f.get("confirm").is_some_and(|c| c == "yes")
}

async fn regenerate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    if !confirmed(&f) {
        let t = o.t();
        return confirm_page(
            &o,
            format!("{} \u{2014} \"{name}\"", t.regenerate),
            "/account/app-passwords/regenerate",
            &name,
            t.regenerate_warning,
            false,
        );
    }
    issue(&web, o, Some(name), true).await
}

async fn deactivate(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    if !confirmed(&f) {
        let t = o.t();
        return confirm_page(
            &o,
            format!("{} \u{2014} \"{name}\"", t.deactivate),
            "/account/app-passwords/deactivate",
            &name,
            t.deactivate_warning,
            false,
        );
    }
    let (actor, address) = (o.actor(), o.address.clone());
    let result = web
        .manage(move |m| {
            m.deactivate_app_password(
                &actor,
                &address,
                Some(&name),
                false,
                &mut FormAsk { confirmed: true },
                now(),
            )
        })
        .await;
    match result {
        Ok(_) => back_with(&web, &o, false, o.t().done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

async fn postpone(State(web): Shared, Posted { o, f }: Posted) -> Response {
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

// ---- Verifica in 2 passaggi ---------------------------------------------------------

fn two_factor_view(web: &Web, o: &Owner, two_factor: bool, device: Option<Secret>) -> Response {
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
    let _ = web;
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
        },
    )
}

async fn two_factor_page(
    State(web): Shared,
    o: Owner,
) -> Response {
    match web.auth.owner_mailbox(&o.login) {
        Some(m) => two_factor_view(&web, &o, m.two_factor_on(), None),
        None => Redirect::to("/login").into_response(),
    }
}

async fn two_factor_enable(State(web): Shared, Posted { o, .. }: Posted) -> Response {
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.enable_2fa(&actor, &address, now()))
        .await
    {
        Ok(device) => two_factor_view(&web, &o, false, Some(device.otpauth_uri)),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

async fn two_factor_replace(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>, Posted { o, f }: Posted) -> Response {
    let code = f
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action =
        move |m: &mut crate::manage::Manager| m.replace_device(&actor, &address, Some(&c), now());
    match with_code(&web, &o, peer.ip(), CodeUse::Replace, &code, action).await {
        Ok(device) => two_factor_view(&web, &o, true, Some(device.otpauth_uri)),
        Err(response) => response,
    }
}

/// After a change of the device: this session goes on (it proved the code), with the new
/// stamp; every other session of the mailbox ends.
async fn restamp(web: &Arc<Web>, o: &Owner) {
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

async fn two_factor_confirm(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>, Posted { o, f }: Posted) -> Response {
    let code = f
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action =
        move |m: &mut crate::manage::Manager| m.confirm_device(&actor, &address, &c, now());
    match with_code(&web, &o, peer.ip(), CodeUse::Confirm, &code, action).await {
        Ok(_) => {
            restamp(&web, &o).await;
            back_with(&web, &o, false, o.t().done.to_owned())
        }
        Err(response) => response,
    }
}

async fn two_factor_disable(
    State(web): Shared,
    Extension(Peer(peer)): Extension<Peer>, Posted { o, f }: Posted) -> Response {
    if !confirmed(&f) {
        let t = o.t();
        return confirm_page(
            &o,
            format!("{} \u{2014} {}", t.turn_off, t.two_factor),
            "/account/2fa/disable",
            "",
            t.disable_warning,
            true,
        );
    }
    let code = f
        .get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let (actor, address, c) = (o.actor(), o.address.clone(), code.clone());
    let action = move |m: &mut crate::manage::Manager| {
        m.disable_2fa(
            &actor,
            &address,
            &c,
            &mut FormAsk { confirmed: true },
            now(),
        )
    };
    match with_code(&web, &o, peer.ip(), CodeUse::Disable, &code, action).await {
        Ok(_) => {
            restamp(&web, &o).await;
            back_with(&web, &o, false, o.t().done.to_owned())
        }
        Err(response) => response,
    }
}

// ---- Storico accessi, Avvisi --------------------------------------------------------

async fn history(
    State(web): Shared,
    Query(q): Query<HashMap<String, String>>,
    o: Owner,
) -> Response {
    let t = o.t();
    let rows = web.settings.load().history_page;
    let page = q
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 10_000);
    let address = o.address.clone();
    let want = page.saturating_mul(rows).saturating_add(1);
    let h = match web.manage(move |m| m.history(&address, want)).await {
        Ok(h) => h,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                t,
                Some(o.login.clone()),
                o.csrf.clone(),
                refusal(&o, &e),
            );
        }
    };
    let skip = ((page - 1) * rows) as usize;
    let more = h.history.len() > skip + rows as usize;
    let zone = &web.settings.load().policy.zone;
    let rows = h
        .history
        .iter()
        .skip(skip)
        .take(rows as usize)
        .map(|r| HistoryRow {
            when: fmt_time(r.at, zone),
            client: r.client.clone(),
            protocol: r.protocol.as_str().to_uppercase(),
            result: match r.result {
                AccessResult::Accepted => t.accepted,
                AccessResult::Refused => t.refused,
                _ => t.temporary,
            },
            class: r.result.as_str(),
            reason: r
                .reason
                .as_ref()
                .map(|why| wording::reason(why, o.language))
                .unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        HistoryPage {
            t,
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            rows,
            page,
            more,
        },
    )
}

async fn notices(
    State(web): Shared,
    o: Owner,
) -> Response {
    let address = o.address.clone();
    let n = match web.manage(move |m| m.notices(&address)).await {
        Ok(n) => n,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                o.t(),
                Some(o.login.clone()),
                o.csrf.clone(),
                refusal(&o, &e),
            );
        }
    };
    let locale = o.locale(&web);
    let items = n
        .notices
        .iter()
        .map(|n| (fmt_time(n.at, &locale.zone), n.text(&locale)))
        .collect();
    render(
        StatusCode::OK,
        NoticesPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            items,
        },
    )
}

// ---- static files, 404 --------------------------------------------------------------

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

async fn not_found(
    State(web): Shared,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lang = language(&web, &headers, &q, None);
    let t = texts(lang);
    message(
        StatusCode::NOT_FOUND,
        t,
        None,
        String::new(),
        t.not_found.to_owned(),
    )
}
