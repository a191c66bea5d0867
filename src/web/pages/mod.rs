//! The page's handlers, one file per area — `login`, `account` (*Sicurezza e password*),
//! `app_passwords`, `two_factor` (app, passkey, recovery codes), `apple` (profiles),
//! `records` (*Storico accessi*, *Avvisi*); `passkey` holds what the passkey forms share. Each takes
//! its request through typed extractors ([`Owner`]: a live logged-in session; `Posted`:
//! the owner and a CSRF-checked form), calls one management action (or `auth::owner`),
//! and renders. The rules are the management layer's; here are the routes and what the
//! areas share.

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
use crate::policy::{Protocol, ProtocolSet, fmt_time};
use crate::secret::Secret;
use crate::wording::{self, Language, Locale};

mod account;
mod app_passwords;
mod apple;
mod login;
mod not_me;
mod passkey;
mod records;
mod two_factor;

use account::*;
use app_passwords::*;
use apple::*;
use login::*;
use not_me::*;
use passkey::{Answer, PasskeyForm, passkey_form};
use records::*;
use two_factor::*;

type Shared = State<Arc<Web>>;
type Fields = Result<Form<Vec<(String, String)>>, FormRejection>;

/// One row of *Parametri per il programma di posta*.
pub(super) struct ClientRow {
    protocol: &'static str,
    server: String,
    port: u16,
    security: &'static str,
    user: String,
}

/// What `user`'s mail programs use, for the protocols in `protocols`.
pub(super) fn client_rows(
    web: &Web,
    protocols: crate::policy::ProtocolSet,
    user: &str,
) -> Vec<ClientRow> {
    let clients = web.settings.load().clients.clone();
    clients
        .servers
        .iter()
        .filter(|s| protocols.contains(s.protocol))
        .map(|s| ClientRow {
            protocol: s.protocol.display_name(),
            server: clients.host.clone(),
            port: s.port,
            security: if s.implicit_tls {
                "SSL/TLS"
            } else {
                "STARTTLS"
            },
            user: user.to_owned(),
        })
        .collect()
}

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
        .route("/account/2fa/cancel", post(two_factor_cancel))
        .route("/account/2fa/passkey", post(passkey_register))
        .route(
            "/account/2fa/recovery",
            get(recovery_page).post(recovery_renew),
        )
        .route("/account/app-passwords/generate", post(generate))
        .route("/account/app-passwords/new", get(reveal))
        .route("/account/app-passwords/postpone", post(postpone))
        .route("/account/app-passwords/regenerate", post(regenerate))
        .route("/account/app-passwords/deactivate", post(deactivate))
        .route("/account/protocols", post(protocols))
        .route("/account/app-passwords/networks", post(networks))
        .route("/account/apple", get(apple_ready).post(apple_setup))
        .route("/account/apple/download", post(apple_download))
        .route("/setup/{token}", get(setup_link))
        .route("/not-me/{token}", get(not_me_page))
        .route("/not-me", post(not_me))
        .route("/account/history", get(history))
        .route("/account/notices", get(notices))
        .route("/mail/config-v1.1.xml", get(super::clients::autoconfig))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(super::clients::autoconfig),
        )
        .route(
            "/autodiscover/autodiscover.xml",
            post(super::clients::autodiscover),
        )
        .route(
            "/Autodiscover/Autodiscover.xml",
            post(super::clients::autodiscover),
        )
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

/// A page that could not be read from the store: the error in the owner's words (a
/// failure is logged, never shown), 503.
fn unavailable(o: &Owner, e: &ManageError) -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        o.t(),
        Some(o.login.clone()),
        o.csrf.clone(),
        refusal(o, e),
    )
}

/// The web page's answers to the management layer's questions: a confirmation is the
/// form's `confirm=yes` (without it, the action answers with the warning to show, and the
/// confirmation page asks); a password is never asked on this page.
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
            // The page asks in two steps: the warning goes back to be shown.
            Err(ManageError::Unconfirmed(warning.clone()))
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
#[template(path = "confirm.html")]
struct ConfirmPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    what: String,
    action: &'static str,
    fields: Vec<(String, String)>,
    warning: String,
    ask_code: bool,
    passkey: Option<PasskeyForm>,
}

// ---- login --------------------------------------------------------------------------

/// The owner's words for a blocked code step.
fn blocked_text(t: &Texts, retry_after: u64) -> String {
    t.code_blocked.replace("{s}", &retry_after.to_string())
}

// ---- Sicurezza e password -----------------------------------------------------------

fn scope_text(scope: crate::policy::ProtocolSet) -> String {
    scope
        .iter()
        .map(Protocol::display_name)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- Password per programmi di posta ------------------------------------------------

fn confirm_page(
    o: &Owner,
    what: String,
    action: &'static str,
    name: &str,
    warning: String,
    ask_code: bool,
    passkey: Option<PasskeyForm>,
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
            passkey,
        },
    )
}

/// The form's device code, as typed (spaces around it trimmed).
fn code_field(f: &HashMap<String, String>) -> String {
    f.get("code")
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

fn confirmed(f: &HashMap<String, String>) -> bool {
    f.get("confirm").is_some_and(|c| c == "yes")
}

// ---- Verifica in 2 passaggi ---------------------------------------------------------

// ---- Storico accessi, Avvisi --------------------------------------------------------

// ---- static files, 404 --------------------------------------------------------------

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../static/style.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/app.js"),
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
