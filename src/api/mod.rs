//! The operator's HTTP API, `/api/v1/`: JSON in and out, every management action the CLI
//! has, authenticated with bearer tokens ([`tokens`]), each call recorded in the events
//! as `operator:api:NAME`. Another front door over [`crate::manage`]: it parses, calls,
//! and serialises the outcome — the same documents as the CLI's `--json`.
//!
//! Errors are `{"error": CODE, "message": TEXT}` with the CLI's stable codes and the
//! status of their class: 400 bad input, 401 no or unknown token, 404 no such mailbox or
//! login, 409 refused by a rule or a conflict, 503 the store unavailable. The OpenAPI
//! document (`openapi.json`, served at `/api/v1/openapi.json`) is kept true by a test
//! that calls every path it lists.
//!
//! The call is the operator's confirmation: actions that ask a person to confirm
//! (remove, deactivate, 2FA off) go ahead; passwords come in the body, never in a URL.

pub mod tokens;

use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CodeUse;
use crate::clock::now;
use crate::manage::app_password::Wanted;
use crate::manage::{Actor, Ask, ErrorKind, ManageError, Manager, PasswordFor, Warning};
use crate::policy::{Plan, Protocol, ProtocolSet};
use crate::secret::Secret;
use crate::web::Peer;

/// The API's state.
pub(crate) struct Api {
    manager: Mutex<Manager>,
    tokens: tokens::Tokens,
    /// The login path's authenticator: a code an API call brings is rationed like the
    /// owner's on the page (the same count per mailbox, on every node).
    auth: Arc<crate::auth::Authenticator>,
}

impl Api {
    /// The API over `manager`, with the tokens of `tokens_file`.
    pub(crate) fn new(
        manager: Manager,
        tokens_file: std::path::PathBuf,
        auth: Arc<crate::auth::Authenticator>,
    ) -> Self {
        Api {
            manager: Mutex::new(manager),
            tokens: tokens::Tokens::new(tokens_file),
            auth,
        }
    }
}

type Shared = State<Arc<Api>>;
type Body<T> = Result<Json<T>, JsonRejection>;

/// The API's routes, under `/api/v1`.
pub(crate) fn router(api: Arc<Api>) -> Router {
    let mailbox = "/api/v1/mailboxes/{address}";
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/mailboxes", get(list_mailboxes).post(add_mailbox))
        .route(mailbox, get(show_mailbox).delete(remove_mailbox))
        .route(&format!("{mailbox}/password"), put(set_password))
        .route(&format!("{mailbox}/plan"), put(set_plan))
        .route(&format!("{mailbox}/contact"), put(set_contact))
        .route(
            &format!("{mailbox}/protocols"),
            get(protocols).post(set_protocols),
        )
        .route(
            &format!("{mailbox}/upstream-secret"),
            put(set_upstream_secret),
        )
        .route(&format!("{mailbox}/users"), post(add_user))
        .route(&format!("{mailbox}/users/{{user}}"), delete(remove_user))
        .route(&format!("{mailbox}/migration"), post(migration))
        .route(&format!("{mailbox}/2fa/enable"), post(enable_2fa))
        .route(&format!("{mailbox}/2fa/confirm"), post(confirm_2fa))
        .route(&format!("{mailbox}/2fa/disable"), post(disable_2fa))
        .route(&format!("{mailbox}/2fa/replace"), post(replace_device))
        .route(
            &format!("{mailbox}/app-passwords"),
            get(list_app_passwords).post(generate),
        )
        .route(
            &format!("{mailbox}/app-passwords/{{name}}"),
            get(app_password_status).delete(deactivate),
        )
        .route(
            &format!("{mailbox}/app-passwords/{{name}}/regenerate"),
            post(regenerate),
        )
        .route(
            &format!("{mailbox}/app-passwords/{{name}}/postpone"),
            post(postpone),
        )
        .route(
            &format!("{mailbox}/app-passwords/{{name}}/networks"),
            axum::routing::put(pin),
        )
        .route(&format!("{mailbox}/history"), get(history))
        .route(&format!("{mailbox}/notices"), get(notices))
        .route(&format!("{mailbox}/events"), get(events))
        .route("/api/v1/notices/run", post(run_notices))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "no_such_endpoint",
                    "no such API endpoint",
                )
            }),
        )
        .with_state(api)
}

// ---- errors, authentication ---------------------------------------------------------

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

/// A management error as its status and the CLI's code.
fn failed(e: ManageError) -> Response {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Refused if e.is_bad_input() => StatusCode::BAD_REQUEST,
        ErrorKind::Refused => StatusCode::CONFLICT,
        ErrorKind::Failure => {
            tracing::error!(error = %e, "api: a management action failed");
            // The store may answer later: try again; anything else is ours to mend.
            if matches!(&e, ManageError::Store(s) if s.is_temporary()) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    };
    error(status, e.code(), e.to_string())
}

fn bad_body(e: JsonRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
}

/// The bearer token presented, if any (read on the reactor: no I/O).
fn bearer(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Secret::new(t.trim().to_owned()))
}

/// The token's name, or why it is refused. Blocking (the token file may be read again):
/// called off the reactor.
fn operator(api: &Api, presented: Option<&Secret>) -> Result<Actor, &'static str> {
    let presented = presented.ok_or("an Authorization: Bearer token is required")?;
    match api.tokens.name_of(presented.expose()) {
        Some(name) => Ok(Actor::Operator(format!("api:{name}"))),
        None => Err("unknown token"),
    }
}

/// The 401 answer.
fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// The API's answers to the management layer's questions: the password from the body;
/// confirmations are the call itself.
struct BodyAsk(Option<Secret>);

impl Ask for BodyAsk {
    fn password(&mut self, _: PasswordFor) -> Result<Secret, ManageError> {
        self.0.take().ok_or_else(|| ManageError::Declined {
            code: "password_required",
            message: "the body must carry \"password\"".into(),
        })
    }
    fn confirm(&mut self, _: &Warning) -> Result<(), ManageError> {
        Ok(())
    }
}

/// Runs an authenticated call: the token checked, the action run off the reactor, its
/// outcome serialised with `status`.
async fn call<T: serde::Serialize + Send + 'static>(
    api: Arc<Api>,
    headers: &HeaderMap,
    status: StatusCode,
    f: impl FnOnce(&mut Manager, &Actor) -> Result<T, ManageError> + Send + 'static,
) -> Response {
    let presented = bearer(headers);
    let result = tokio::task::spawn_blocking(move || {
        let actor = operator(&api, presented.as_ref())?;
        let mut m = api.manager.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut m, &actor))
    })
    .await;
    match result {
        Ok(Err(why)) => unauthorized(why),
        Ok(Ok(Ok(out))) => (status, Json(out)).into_response(),
        Ok(Ok(Err(e))) => failed(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    }
}

/// Runs an authenticated call that checks a device code: the token checked first (an
/// unauthenticated call counts nothing), then the code through the mailbox's ration
/// (`Authenticator::owner_code`): while the mailbox's code step is blocked the call is
/// answered 429 with `Retry-After`, the code unseen.
async fn call_with_code<T: serde::Serialize + Send + 'static>(
    api: Arc<Api>,
    headers: &HeaderMap,
    peer: std::net::IpAddr,
    address: String,
    purpose: crate::auth::CodeUse,
    code: String,
    f: impl FnOnce(&mut Manager, &Actor) -> Result<T, ManageError> + Send + 'static,
) -> Response {
    let presented = bearer(headers);
    let this = Arc::clone(&api);
    let actor = match tokio::task::spawn_blocking(move || operator(&this, presented.as_ref())).await
    {
        Ok(Ok(actor)) => actor,
        Ok(Err(why)) => return unauthorized(why),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            );
        }
    };
    let login = crate::policy::names::normalize_login(&address).unwrap_or_default();
    let Some(mailbox) = api.auth.owner_mailbox(&login) else {
        // No such mailbox: the action says so in its own words.
        return call(api, headers, StatusCode::OK, f).await;
    };
    let name = match &actor {
        Actor::Operator(name) => name.clone(),
        other => other.to_string(),
    };
    let run = {
        let api = Arc::clone(&api);
        move || async move {
            let result = tokio::task::spawn_blocking(move || {
                let mut m = api.manager.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut m, &actor)
            })
            .await
            .map_err(|e| ManageError::Internal(e.to_string()))
            .and_then(|r| r);
            crate::manage::code_answer(result)
        }
    };
    let door = crate::auth::CodeDoor::Api {
        peer,
        operator: &name,
    };
    match api
        .auth
        .owner_code(door, &mailbox, purpose, &code, run)
        .await
    {
        crate::auth::CodeStep::Done(out) => (StatusCode::OK, Json(out)).into_response(),
        crate::auth::CodeStep::Wrong(e) | crate::auth::CodeStep::Other(e) => failed(e),
        crate::auth::CodeStep::Blocked { retry_after } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "code_step_blocked",
                format!(
                    "too many wrong codes for this mailbox: codes are refused, the right one too, for {retry_after} s more"
                ),
            );
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

/// Parses a body, or answers 400 before the token is even looked at by the action.
macro_rules! body {
    ($b:expr) => {
        match $b {
            Ok(Json(b)) => b,
            Err(e) => return bad_body(e),
        }
    };
}

// ---- bodies -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMailbox {
    address: String,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    contact: Option<String>,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactBody {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolsBody {
    #[serde(default)]
    enable: Vec<String>,
    #[serde(default)]
    disable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworksBody {
    networks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationBody {
    step: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    code: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    protocols: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

fn protocols_of(names: &[String]) -> Result<Vec<Protocol>, ManageError> {
    names
        .iter()
        .map(|n| n.parse::<Protocol>().map_err(ManageError::Refused))
        .collect()
}

// ---- handlers -----------------------------------------------------------------------

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn list_mailboxes(State(api): Shared, headers: HeaderMap) -> Response {
    call(api, &headers, StatusCode::OK, |m, _| {
        m.list_mailboxes(now())
    })
    .await
}

async fn add_mailbox(State(api): Shared, headers: HeaderMap, b: Body<NewMailbox>) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::CREATED, move |m, actor| {
        let plan: Plan = match b.plan.as_deref() {
            Some(p) => p.parse().map_err(ManageError::Refused)?,
            None => Plan::Standard,
        };
        let mut ask = BodyAsk(Some(Secret::new(b.password)));
        m.add_mailbox(
            actor,
            &b.address,
            plan,
            b.contact.as_deref(),
            &mut ask,
            now(),
        )
    })
    .await
}

async fn show_mailbox(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.show_mailbox(&address, now())
    })
    .await
}

async fn remove_mailbox(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.remove_mailbox(actor, &address, &mut BodyAsk(None), now())
    })
    .await
}

async fn set_password(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<PasswordBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        let mut ask = BodyAsk(Some(Secret::new(b.password)));
        m.set_password(actor, &address, b.user.as_deref(), &mut ask, now())
    })
    .await
}

async fn set_plan(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<PlanBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        let plan: Plan = b.plan.parse().map_err(ManageError::Refused)?;
        m.set_plan(actor, &address, plan, now())
    })
    .await
}

async fn set_contact(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<ContactBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.set_contact(actor, &address, &b.email, now())
    })
    .await
}

async fn protocols(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.protocols(actor, &address, &[], &[], now())
    })
    .await
}

async fn set_protocols(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<ProtocolsBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        let (enable, disable) = (protocols_of(&b.enable)?, protocols_of(&b.disable)?);
        m.protocols(actor, &address, &enable, &disable, now())
    })
    .await
}

async fn set_upstream_secret(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<SecretBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.set_upstream_secret(
            actor,
            &address,
            &mut BodyAsk(Some(Secret::new(b.secret))),
            now(),
        )
    })
    .await
}

async fn add_user(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<UserBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::CREATED, move |m, actor| {
        m.add_user(
            actor,
            &address,
            &b.user,
            &mut BodyAsk(Some(Secret::new(b.password))),
            now(),
        )
    })
    .await
}

async fn remove_user(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, user)): Path<(String, String)>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.remove_user(actor, &address, &user, now())
    })
    .await
}

async fn migration(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<MigrationBody>,
) -> Response {
    let b = body!(b);
    let start = match b.step.as_str() {
        "start" => true,
        "finish" => false,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "step must be \"start\" or \"finish\"",
            );
        }
    };
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.migration(actor, &address, start, now())
    })
    .await
}

async fn enable_2fa(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.enable_2fa(actor, &address, now()).map(device_json)
    })
    .await
}

/// A new device as JSON: the otpauth URI is shown once, here (it holds the secret).
fn device_json(d: crate::manage::outcome::NewDevice) -> Value {
    let mut v = serde_json::to_value(&d).unwrap_or_default();
    v["otpauth_uri"] = Value::String(d.otpauth_uri.expose().to_owned());
    v
}

async fn confirm_2fa(
    State(api): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<CodeBody>,
) -> Response {
    let b = body!(b);
    let (a, code) = (address.clone(), b.code.clone());
    call_with_code(
        api,
        &headers,
        peer.ip(),
        address,
        CodeUse::Confirm,
        code,
        move |m, actor| m.confirm_device(actor, &a, &b.code, now()),
    )
    .await
}

async fn disable_2fa(
    State(api): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<CodeBody>,
) -> Response {
    let b = body!(b);
    let (a, code) = (address.clone(), b.code.clone());
    call_with_code(
        api,
        &headers,
        peer.ip(),
        address,
        CodeUse::Disable,
        code,
        move |m, actor| m.disable_2fa(actor, &a, b.code.as_str(), &mut BodyAsk(None), now()),
    )
    .await
}

async fn replace_device(
    State(api): Shared,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<ReplaceBody>,
) -> Response {
    let b = body!(b);
    let Some(code) = b.code.clone() else {
        // An operator's override: no code, nothing to ration.
        return call(api, &headers, StatusCode::OK, move |m, actor| {
            m.replace_device(actor, &address, None, now())
                .map(device_json)
        })
        .await;
    };
    let a = address.clone();
    call_with_code(
        api,
        &headers,
        peer.ip(),
        address,
        CodeUse::Replace,
        code.clone(),
        move |m, actor| {
            m.replace_device(actor, &a, Some(code.as_str().into()), now())
                .map(device_json)
        },
    )
    .await
}

async fn list_app_passwords(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.list_app_passwords(&address, now())
    })
    .await
}

/// A new app password as JSON: the password is shown once, here.
fn new_password_json(p: crate::manage::outcome::NewAppPassword) -> Value {
    let mut v = serde_json::to_value(&p).unwrap_or_default();
    v["password"] = Value::String(p.password.expose().to_owned());
    v
}

async fn generate(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    b: Body<GenerateBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::CREATED, move |m, actor| {
        let scope = match &b.protocols {
            Some(names) => {
                let mut s = ProtocolSet::NONE;
                for p in protocols_of(names)? {
                    s.insert(p);
                }
                Some(s)
            }
            None => None,
        };
        let wanted = Wanted {
            name: b.name.as_deref(),
            scope,
        };
        m.generate_app_password(actor, &address, wanted, false, now())
            .map(new_password_json)
    })
    .await
}

async fn app_password_status(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, name)): Path<(String, String)>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.app_password_status(&address, Some(&name), now())
    })
    .await
}

async fn regenerate(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, name)): Path<(String, String)>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        let wanted = Wanted {
            name: Some(&name),
            scope: None,
        };
        m.generate_app_password(actor, &address, wanted, true, now())
            .map(new_password_json)
    })
    .await
}

async fn postpone(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, name)): Path<(String, String)>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.postpone_app_password(actor, &address, Some(&name), now())
    })
    .await
}

/// `PUT …/app-passwords/{name}/networks`: the networks it may be used from (none:
/// anywhere).
async fn pin(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, name)): Path<(String, String)>,
    b: Body<NetworksBody>,
) -> Response {
    let b = body!(b);
    call(api, &headers, StatusCode::OK, move |m, actor| {
        let networks = crate::net::Network::list(&b.networks.join(" "))
            .map_err(|e| ManageError::Refused(crate::policy::PolicyError::BadNetwork(e)))?;
        m.pin_app_password(actor, &address, Some(&name), networks, now())
    })
    .await
}

async fn deactivate(
    State(api): Shared,
    headers: HeaderMap,
    Path((address, name)): Path<(String, String)>,
) -> Response {
    call(api, &headers, StatusCode::OK, move |m, actor| {
        m.deactivate_app_password(
            actor,
            &address,
            Some(&name),
            false,
            &mut BodyAsk(None),
            now(),
        )
    })
    .await
}

async fn history(
    State(api): Shared,
    headers: HeaderMap,
    Path(address): Path<String>,
    q: Result<Query<Limit>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit must be a number",
        );
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 10_000);
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.history(&address, limit)
    })
    .await
}

async fn notices(State(api): Shared, headers: HeaderMap, Path(address): Path<String>) -> Response {
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.notices(&address)
    })
    .await
}

async fn events(State(api): Shared, headers: HeaderMap, Path(address): Path<String>) -> Response {
    call(api, &headers, StatusCode::OK, move |m, _| {
        m.events(&address)
    })
    .await
}

async fn run_notices(State(api): Shared, headers: HeaderMap) -> Response {
    call(api, &headers, StatusCode::OK, |m, _| {
        m.send_reminders(now())
    })
    .await
}
