//! Start-up: the configuration converted into each part's settings, once, and each part
//! started from there — the store (created and migrated), the notice jobs, the
//! authenticator, the upstreams, the mail listeners, the page and the API, the admin
//! listener — then signals: SIGHUP reloads what [`Config::reloaded`] calls safe (each
//! part holds a [`Live`] handle), SIGINT / SIGTERM stop the accept loops and give open
//! sessions `limits.shutdown_grace`. Nothing below this module reads [`Config`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::admission::PerAddress;
use crate::auth::{Authenticator, PasswordHasher};
use crate::config::{Config, Limits, SessionThreads, UpstreamLogin};
use crate::live::{Live, live};
use crate::net::TlsMode;
use crate::proxy::cores::Cores;
use crate::proxy::tls::{self, Certificates, HTTP};
use crate::proxy::upstream::Upstream;
use crate::proxy::{ListenerRuntime, Shared, accept_loop};
use crate::secret::Secret;
use crate::store::sealed::SealKey;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Something else, with a message naming the thing.
    #[error("{0}")]
    Setup(String),
}

fn read_master_password(path: &std::path::Path) -> Result<Secret, ServeError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| ServeError::Setup(format!("{}: {e}", path.display())))?,
    );
    let first = text.lines().next().unwrap_or("").trim_end();
    if first.is_empty() {
        return Err(ServeError::Setup(format!(
            "{}: the master password file is empty",
            path.display()
        )));
    }
    Ok(Secret::new(first.to_owned()))
}

/// The relay settings, with the password and CA files read (errors name the file).
fn mailer_settings(
    config: &Config,
    smtp: &crate::config::SmtpConfig,
) -> Result<crate::notify::mailer::MailerSettings, ServeError> {
    let auth = match (&smtp.user, &smtp.password_file) {
        (Some(user), Some(file)) => {
            Some((user.clone(), read_master_password(&config.resolve(file))?))
        }
        _ => None,
    };
    let ca_pem = smtp
        .ca_file
        .as_ref()
        .map(|f| {
            let path = config.resolve(f);
            std::fs::read(&path).map_err(|e| ServeError::Setup(format!("{}: {e}", path.display())))
        })
        .transpose()?;
    Ok(crate::notify::mailer::MailerSettings {
        host: smtp.host.clone(),
        port: smtp.port,
        tls: smtp.tls,
        ca_pem,
        auth,
        from: smtp.from.clone(),
        from_name: smtp.from_name.clone(),
        page_url: config.web.public_url.clone(),
        retry: smtp.retry,
        locale: crate::wording::Locale {
            language: config.notices.language,
            zone: config.policy.settings().zone,
        },
    })
}

/// A management layer of its own for a front door (its own store connection), with the
/// running proxy's settings.
async fn manager(
    config: &Config,
    settings: &Live<crate::manage::ManageSettings>,
) -> Result<crate::manage::Manager, ServeError> {
    let location = config.store_location();
    let settings = Arc::clone(settings);
    tokio::task::spawn_blocking(move || {
        crate::manage::Manager::with_live(location.open_manage()?, settings)
    })
    .await
    .map_err(|e| ServeError::Setup(e.to_string()))?
    .map_err(|e| ServeError::Setup(e.to_string()))
}

/// An HTTPS listener to serve: its name in the log, its socket, its TLS configuration
/// and what it serves.
type HttpsListener = (
    &'static str,
    TcpListener,
    Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    axum::Router,
);

/// The HTTPS listeners: the owner's page (with the API on it, unless `api.on_web` is
/// off) and the API's own listener, each bound now so a busy port fails the start.
async fn https_listeners(
    config: &Config,
    auth: &Arc<Authenticator>,
    certificates: &Certificates,
    live: &Reloadable,
) -> Result<Vec<HttpsListener>, ServeError> {
    let http = &certificates.by_alpn[HTTP];
    let tokens = config.resolve(&config.api.tokens_file);
    let mut out = Vec::new();
    if let Some(addr) = config.web.bind {
        // The same on every node of a fleet (derived from the fleet's key): a login form
        // served by one node posts to another.
        let login_key = auth.web_form_key();
        // Configuration profiles are signed with the page's certificate when its key
        // can sign (ECDSA or RSA); otherwise they go out unsigned, and the page says so.
        let signer = match crate::cms::Signer::load(
            &config.resolve(&config.tls.certificate),
            &config.resolve(&config.tls.key),
        ) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "configuration profiles will not be signed");
                None
            }
        };
        let page = crate::web::Web::new(
            Arc::clone(auth),
            manager(config, &live.manage).await?,
            Arc::clone(&live.web),
            login_key,
        )
        .with_signer(signer);
        let mut app = crate::web::router(Arc::new(page));
        if config.api.on_web {
            let api = crate::api::Api::new(
                manager(config, &live.manage).await?,
                tokens.clone(),
                Arc::clone(auth),
            );
            app = app.merge(crate::api::router(Arc::new(api)));
        }
        tracing::info!(address = %addr, api = config.api.on_web, "web page (Gestione account) listening");
        out.push(("web", bind_https("web", addr).await?, Arc::clone(http), app));
    }
    if let Some(addr) = config.api.bind {
        let api = crate::api::Api::new(
            manager(config, &live.manage).await?,
            tokens,
            Arc::clone(auth),
        );
        tracing::info!(address = %addr, "operator API listening");
        out.push((
            "api",
            bind_https("api", addr).await?,
            Arc::clone(http),
            crate::api::router(Arc::new(api)),
        ));
    }
    Ok(out)
}

async fn bind_https(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Setup(format!("{what}: cannot listen on {addr}: {e}")))
}

/// Prepares every configured upstream.
fn upstreams(config: &Config) -> Result<BTreeMap<String, Arc<Upstream>>, ServeError> {
    let mut out = BTreeMap::new();
    for (name, u) in &config.upstreams {
        let tls = match u.tls {
            TlsMode::None => None,
            _ => Some(tls::client_config(
                u.ca_file.as_ref().map(|p| config.resolve(p)).as_deref(),
            )?),
        };
        let master = match &u.login {
            UpstreamLogin::Master { password_file, .. } => Some(Arc::new(read_master_password(
                &config.resolve(password_file),
            )?)),
            UpstreamLogin::Stored => None,
        };
        out.insert(
            name.clone(),
            Arc::new(Upstream::new(u.clone(), tls, master)),
        );
    }
    Ok(out)
}

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let (cert, key) = (
        config.resolve(&config.tls.certificate),
        config.resolve(&config.tls.key),
    );
    if tls::ensure_certificate(&cert, &key, &certificate_names(&config))? {
        tracing::warn!(certificate = %cert.display(), key = %key.display(), "created a self-signed certificate; replace it with a real one for production");
    }
    let certificates = Certificates::load(&cert, &key)?;
    // Creates the store and applies migrations before anything else.
    let store = config.store_location();
    store.prepare()?;
    crate::audit::retention::spawn(store.clone(), config.retention_settings());
    let manage = live(config.manage_settings());
    let every = live(reminder_every(&config));
    crate::notify::spawn(store.clone(), Arc::clone(&manage), Arc::clone(&every));
    let mailer = match &config.notices.smtp {
        Some(smtp) => {
            let settings = live(mailer_settings(&config, smtp)?);
            crate::notify::mailer::spawn(store.clone(), Arc::clone(&settings));
            tracing::info!(relay = %format!("{}:{}", smtp.host, smtp.port), "notices are e-mailed");
            Some(settings)
        }
        None => None,
    };
    let settings = config.auth_settings();
    let hasher =
        PasswordHasher::new(config.argon2.cost()).map_err(|e| ServeError::Setup(e.to_string()))?;
    let needs_key = config
        .upstreams
        .values()
        .any(|u| matches!(u.login, UpstreamLogin::Stored));
    let seal = if needs_key {
        Some(
            SealKey::load_or_create(&config.key_path())
                .map_err(|e| ServeError::Setup(e.to_string()))?,
        )
    } else {
        None
    };
    let auth = Arc::new(
        tokio::task::spawn_blocking(move || Authenticator::new(&store, hasher, seal, settings))
            .await
            .map_err(|e| ServeError::Setup(e.to_string()))?
            .map_err(|e| ServeError::Setup(e.to_string()))?,
    );
    let mut running = Reloadable {
        limits: live(config.limits.clone()),
        per_address: Arc::new(PerAddress::new(config.limits.max_connections_per_address)),
        auth: Arc::clone(&auth),
        manage,
        web: live(config.web_settings()),
        every,
        mailer,
        certificates,
        config,
    };
    let config = running.config.clone();
    let https = https_listeners(&config, &auth, &running.certificates, &running).await?;
    let upstreams = upstreams(&config)?;
    let hostname = crate::net::host_name().unwrap_or_else(|| "localhost".into());
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        auth,
        limits: Arc::clone(&running.limits),
        hostname,
        stop: stop_rx.clone(),
    });

    let max = config.limits.max_connections as usize;
    let permits = Arc::new(Semaphore::new(max));
    let mut loops = Vec::new();
    // Each HTTPS listener has its own connection budget: a flood of the page leaves the
    // API's own listener (an admin network, say) reachable.
    for (name, socket, tls, app) in https {
        // The owner's page closes a blocked address at accept, as the mail listeners do;
        // the operator's own API listener does not (its callers are not the public).
        let guard = (name == "web").then(|| Arc::clone(&shared.auth));
        loops.push(crate::web::spawn(
            name,
            socket,
            Some(tls),
            app,
            config.web_limits(),
            guard,
            stop_rx.clone(),
        ));
    }
    // The mail sessions run on a thread per core (`proxy::cores`), each listener bound
    // once per thread, or on this runtime (`[runtime] sessions = "shared"`).
    let cores = match config.runtime.sessions {
        SessionThreads::PerCore => Some(
            Cores::start()
                .map_err(|e| ServeError::Setup(format!("cannot start the session threads: {e}")))?,
        ),
        SessionThreads::Shared => None,
    };
    for l in &config.listeners {
        let cannot = |e: std::io::Error| {
            ServeError::Setup(format!(
                "listener {:?}: cannot listen on {}: {e}",
                l.name, l.bind
            ))
        };
        let sockets: Vec<(TcpListener, tokio::runtime::Handle)> = match &cores {
            Some(cores) => cores
                .bind(l.bind)
                .map_err(cannot)?
                .into_iter()
                .zip(cores.handles().cloned())
                .collect(),
            None => vec![(
                TcpListener::bind(l.bind).await.map_err(cannot)?,
                tokio::runtime::Handle::current(),
            )],
        };
        tracing::info!(listener = %l.name, address = %l.bind, protocol = %l.protocol, tls = ?l.tls, archive = l.archive, threads = sockets.len(), "listening");
        let runtime = Arc::new(ListenerRuntime {
            config: l.clone(),
            tls: Arc::clone(&running.certificates.by_alpn[l.protocol.as_str()]),
            upstream: Arc::clone(&upstreams[&l.upstream]),
        });
        for (socket, thread) in sockets {
            loops.push(thread.spawn(accept_loop(
                socket,
                Arc::clone(&runtime),
                Arc::clone(&shared),
                Arc::clone(&permits),
                Arc::clone(&running.per_address),
                stop_rx.clone(),
            )));
        }
    }

    if let Some(addr) = config.admin.bind {
        let socket = bind_https("admin", addr).await?;
        let app = crate::proxy::admin::admin_router(config.store_location());
        tracing::info!(address = %addr, "admin listener (metrics, health) listening");
        // The page's timeouts; a few connections are all a metrics agent and the service
        // manager need (on loopback, every client is one address).
        let limits = crate::web::ConnectionLimits {
            max_connections: ADMIN_CONNECTIONS,
            max_connections_per_address: ADMIN_CONNECTIONS,
            ..config.web_limits()
        };
        loops.push(crate::web::spawn(
            "admin",
            socket,
            None,
            app,
            limits,
            None,
            stop_rx.clone(),
        ));
    }
    crate::service::ready(&format!("serving {} listeners", config.listeners.len()));
    wait_for_signal(&mut running).await;
    crate::service::stopping();
    tracing::info!("shutting down: no new connections");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    let grace = running.limits.load().shutdown_grace.fixed();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!("all sessions finished"),
        Err(_) => tracing::warn!(
            open = max - permits.available_permits(),
            "grace period over; closing open sessions"
        ),
    }
    if let Some(cores) = cores {
        cores.finish().await;
    }
    Ok(())
}

/// Connections open at once on the admin listener (`/metrics`, `/healthz`, `/readyz`).
const ADMIN_CONNECTIONS: u32 = 16;

/// How often the reminder job looks (`notices.every`, validated as a fixed period).
fn reminder_every(config: &Config) -> Duration {
    config
        .notices
        .every
        .as_std()
        .unwrap_or(Duration::from_secs(60))
}

/// The running proxy's configuration in effect and every handle a reload (SIGHUP)
/// replaces settings through.
struct Reloadable {
    config: Config,
    certificates: Certificates,
    limits: Live<Limits>,
    per_address: Arc<PerAddress>,
    auth: Arc<Authenticator>,
    manage: Live<crate::manage::ManageSettings>,
    web: Live<crate::web::WebSettings>,
    every: Live<Duration>,
    mailer: Option<Live<crate::notify::mailer::MailerSettings>>,
}

impl Reloadable {
    /// SIGHUP: the TLS certificates, then the settings `Config::reloaded` calls safe —
    /// each taken whole by the next session, action or round. Keys that need a restart
    /// are named in the log and not applied; a file that cannot be read or is invalid
    /// changes nothing but the certificates.
    fn reload(&mut self) {
        match self.certificates.reload() {
            Ok(()) => {
                tracing::info!(certificate = %self.certificates.cert.display(), "SIGHUP: TLS certificates reloaded; new connections use them")
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the certificate or key cannot be used; keeping the previous ones")
            }
        }
        let new = match Config::load(&self.config.source) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration file cannot be used; keeping the running configuration");
                return;
            }
        };
        let (merged, restart) = self.config.reloaded(&new);
        let changed = format!("{merged:?}") != format!("{:?}", self.config);
        self.limits.store(Arc::new(merged.limits.clone()));
        self.per_address
            .set_max(merged.limits.max_connections_per_address);
        self.auth.reconfigure(&merged.auth_settings());
        self.manage.store(Arc::new(merged.manage_settings()));
        self.web.store(Arc::new(merged.web_settings()));
        self.every.store(Arc::new(reminder_every(&merged)));
        if let Some(mailer) = &self.mailer {
            let mut s = crate::notify::mailer::MailerSettings::clone(&mailer.load());
            s.locale.language = merged.notices.language;
            mailer.store(Arc::new(s));
        }
        if changed {
            tracing::info!(
                "SIGHUP: settings reloaded (limits, throttle, policy, notices, auth.cache_ttl); new sessions and actions use them"
            );
        }
        for key in restart {
            tracing::warn!(
                key = key.as_str(),
                "SIGHUP: changed in the configuration file but needs a restart; not applied"
            );
        }
        self.config = merged;
    }
}

/// What a first-run certificate names besides localhost: every address a listener binds
/// (not the wildcard ones) and the host's name, so that a client checking the name
/// (fetchmail, say) accepts it once told to trust it.
fn certificate_names(config: &Config) -> Vec<String> {
    let binds = config
        .listeners
        .iter()
        .map(|l| l.bind)
        .chain(config.web.bind)
        .chain(config.api.bind);
    let mut names: Vec<String> = binds
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect();
    names.extend(crate::net::host_name());
    names
}

/// Waits for SIGINT or SIGTERM. SIGHUP — what operators send after renewing a
/// certificate or editing the configuration — reloads what can be reloaded
/// ([`Reloadable::reload`]) and never stops the proxy.
async fn wait_for_signal(running: &mut Reloadable) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        (t, h) => {
            tracing::error!(sigterm = ?t.err(), sighup = ?h.err(), "cannot watch signals");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                crate::service::reloading();
                running.reload();
                crate::service::ready("reloaded");
            }
        }
    }
}
