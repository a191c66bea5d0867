//! "Gestione account": the mailbox owner's web page, a front door over [`crate::manage`]
//! like the CLI. HTTPS with the proxy's certificate (rustls), axum over hyper, HTML from
//! askama templates checked at compile time, Italian by default and English on request.
//!
//! - `session`: the login form's signed CSRF cookie (no server state), and the
//!   server-side sessions after the password step (random ids, CSRF tokens, timeouts,
//!   bounded per mailbox and in all).
//! - `pages`: the handlers — login (main password, then a code from the device),
//!   *Sicurezza e password*, *Verifica in 2 passaggi*, *Password per programmi di
//!   posta*, *Protocolli*, *Storico accessi*, *Avvisi*.
//! - `clients`: what mail programs should use, and the documents that configure them
//!   (Thunderbird's autoconfig, Outlook's Autodiscover).
//! - `profile`: Apple configuration profiles carrying a new app password, waiting to be
//!   taken once (the page's button, or a one-time link shown as a QR code).
//! - `text`: the page's words in both languages.
//! - `listener`: the connections of every HTTP listener (this page, the API's, the admin
//!   one), bounded: connection limits at accept, handshake, head, body and keep-alive
//!   deadlines, HTTP/1.1 only.
//!
//! Web security: `Secure; HttpOnly; SameSite=Strict` cookies, a CSRF token on every
//! form (a missing or wrong one: 403, nothing changed), a strict Content-Security-Policy
//! (no inline script), `X-Frame-Options: DENY`, `Cache-Control: no-store` on every page,
//! request bodies capped in size and time, no secret in a URL or a log line.

mod clients;
mod listener;
mod pages;
mod profile;
pub(crate) mod session;
pub(crate) mod text;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use clients::{MailClients, Server as MailServer};
pub use listener::ConnectionLimits;
pub(crate) use listener::spawn;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::auth::Authenticator;
use crate::manage::{ManageError, Manager};
use crate::policy::PolicySettings;
use crate::wording::Language;

/// Form bodies larger than this are refused (413).
const BODY_LIMIT: usize = 16 * 1024;

/// What the page needs, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login.
    pub lifetime: Duration,
    /// Access-history rows per page.
    pub history_page: u32,
    /// The language when the browser asks for none of ours.
    pub language: Language,
    /// The policy (the zone of the dates shown).
    pub policy: PolicySettings,
    /// What mail programs are told to use.
    pub clients: MailClients,
    /// The passkeys' relying party (`web.public_host`); none: passkeys are not offered.
    pub rp_id: Option<String>,
}

/// The page's state, shared by every request.
pub(crate) struct Web {
    auth: Arc<Authenticator>,
    manager: Mutex<Manager>,
    sessions: session::Sessions,
    /// The login form's CSRF token (a signed cookie: no session before the password).
    login_csrf: session::LoginCsrf,
    /// Replaced by a reload (the language, the policy); the session lifetimes are the
    /// ones at start.
    settings: crate::live::Live<WebSettings>,
    /// The store's mail domains, as autoconfig and Autodiscover last read them.
    domains: clients::KnownDomains,
    /// Signs configuration profiles with the page's certificate (none: they go out
    /// unsigned, and the page says so).
    signer: Option<Arc<crate::cms::Signer>>,
    /// Configuration profiles waiting to be taken once.
    profiles: profile::Profiles,
}

impl Web {
    /// The page over `manager` and the proxy's authenticator (the same throttle, the same
    /// access history). `login_key` signs the login form's CSRF cookie: the same on
    /// every node of a fleet, a form served by one posts to another.
    pub(crate) fn new(
        auth: Arc<Authenticator>,
        manager: Manager,
        settings: crate::live::Live<WebSettings>,
        login_key: [u8; 32],
    ) -> Self {
        let (idle, lifetime) = {
            let s = settings.load();
            (s.idle, s.lifetime)
        };
        Web {
            auth,
            manager: Mutex::new(manager),
            sessions: session::Sessions::new(idle, lifetime),
            login_csrf: session::LoginCsrf::new(login_key),
            settings,
            domains: clients::KnownDomains::default(),
            signer: None,
            profiles: profile::Profiles::default(),
        }
    }

    /// Configuration profiles signed by `signer`.
    pub(crate) fn with_signer(mut self, signer: Option<Arc<crate::cms::Signer>>) -> Self {
        self.signer = signer;
        self
    }

    /// Runs `f` on the manager off the reactor (the store is synchronous).
    async fn manage<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Manager) -> Result<T, ManageError> + Send + 'static,
    ) -> Result<T, ManageError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut m = this.manager.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut m)
        })
        .await
        .map_err(|e| ManageError::Internal(e.to_string()))?
    }
}

/// The router: the pages and their static files.
pub(crate) fn router(web: Arc<Web>) -> Router {
    pages::routes().with_state(web)
}

/// What every HTTPS listener serves through: the request size limit and the headers
/// every response carries.
pub(crate) fn hardened(app: Router) -> Router {
    app.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every response: nothing cached, nothing framed, no inline script.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    res
}

/// The client's address (the TCP peer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub SocketAddr);
