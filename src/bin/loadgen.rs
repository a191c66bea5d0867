//! `sentinella-loadgen`: the load generator the benchmarks use (BENCHMARKS.md).
//!
//! Loopback only: every address it connects to or binds must be a loopback address, and
//! every run is bounded in time and count.
//!
//!   sentinella-loadgen run   --addr 127.0.0.1:10993 --protocol imap --cafile cert.pem \
//!                            --user U --password P --concurrency 8 --duration 10
//!   sentinella-loadgen fetch --addr … --cafile … --user U --password P --repeat 5
//!   sentinella-loadgen idle  --addr … --cafile … --user U --password P --sessions 5000 --hold 20
//!   sentinella-loadgen upstream --listen 127.0.0.1:14300 --duration 600   (a cheap IMAP
//!                            server for the idle-sessions benchmark)
//!   sentinella-loadgen hash  (argon2id PHC string, default cost, of a password on stdin)

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

#[derive(Parser)]
#[command(
    name = "sentinella-loadgen",
    about = "Loopback load generator for Sentinella's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Proto {
    Imap,
    Pop3,
    Smtp,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Server address (loopback only), implicit TLS.
    #[arg(long)]
    addr: SocketAddr,
    /// CA certificate (PEM) to trust; the server's certificate must name "localhost".
    #[arg(long)]
    cafile: PathBuf,
    /// Login name.
    #[arg(long)]
    user: String,
    /// Password.
    #[arg(long)]
    password: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Concurrent connect → TLS → login → logout loops.
    Run {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value = "imap")]
        protocol: Proto,
        /// Clients at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to run (at most 600).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Bind each client to one of this many source addresses 127.0.N.M (attackers
        /// from many addresses); 0 = the default source address.
        #[arg(long, default_value_t = 0)]
        sources: u32,
        /// Send a different wrong password on every attempt (an attack).
        #[arg(long)]
        wrong: bool,
        /// Log in as this many users in turn: `{i}` in --user is replaced by the
        /// attempt's number modulo N (the scale benchmark's working set).
        #[arg(long, default_value_t = 0)]
        spread: u64,
        /// Only the TLS handshake and the greeting, then close (the floor a login is
        /// compared with).
        #[arg(long)]
        greeting_only: bool,
        /// Start attempts at this pace in all (per second), not as fast as the clients
        /// can: the floor measured at a login's own rate. 0 = as fast as they can.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// FETCH one message (UID 1 of INBOX) repeatedly; reports MB/s.
    Fetch {
        #[command(flatten)]
        target: Target,
        /// FETCHes to time.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        /// The server is plain TCP (a direct upstream), not TLS.
        #[arg(long)]
        plain: bool,
    },
    /// Opens this many authenticated IMAP sessions and holds them; prints a JSON line
    /// when all are open and another when the hold ends (with each session the server
    /// ended meanwhile, in time order: its user, the time, its last line).
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Seconds to hold them once all are open (at most 3600).
        #[arg(long, default_value_t = 20)]
        hold: u64,
        /// More server addresses: sessions go to --addr and these in turn.
        #[arg(long)]
        also: Vec<SocketAddr>,
        /// Bind sessions to this many source addresses 127.0.N.M in turn.
        #[arg(long, default_value_t = 0)]
        sources: u32,
        /// Skip this many source addresses first (so as not to reuse the addresses an
        /// attack run has got blocked).
        #[arg(long, default_value_t = 0)]
        first_source: u32,
        /// Log in as this many users in turn (`{i}` in --user).
        #[arg(long, default_value_t = 0)]
        spread: u64,
        /// After login, SELECT INBOX and IDLE (what a mail program leaves open all day).
        #[arg(long)]
        imap_idle: bool,
        /// Sessions being opened at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// A cheap IMAP server (the upstream of the idle-sessions benchmark, since one
    /// Dovecot cannot hold a hundred thousand processes): any login is accepted; SELECT,
    /// IDLE, NOOP, ID, CAPABILITY and LOGOUT are answered; nothing is stored.
    Upstream {
        /// Addresses to listen on (loopback only).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        /// Seconds to serve (at most 7200).
        #[arg(long, default_value_t = 600)]
        duration: u64,
    },
    /// Prints the argon2id PHC string (default cost) of the password on stdin.
    Hash,
    /// Builds a store of this many mailboxes with 2FA and an app password, `due` percent
    /// of them with an expiry reminder due, and times one pass of the reminder job.
    Reminders {
        /// Mailboxes in the store.
        #[arg(long, default_value_t = 100_000)]
        mailboxes: u32,
        /// Percent of them with a reminder due.
        #[arg(long, default_value_t = 1)]
        due: u32,
        /// Where to build the store (a temporary folder if not given).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Also measure logins (an authenticator over the same store, warm cache, two
        /// tasks checking one app password in a loop, each check recorded in the access
        /// history): this many seconds without the pass, then while the pass runs.
        #[arg(long, default_value_t = 0)]
        logins: u64,
    },
}

/// `reminders`: a big store straight through the store's transaction (one hash for all),
/// then one timed pass of the job through the management layer, as `serve` runs it.
fn reminders_bench(mailboxes: u32, due: u32, dir: Option<std::path::PathBuf>, logins: u64) {
    use sentinella::manage::{ManageSettings, Manager};
    use sentinella::policy::mailbox::{NewAppPassword, PolicySettings};
    use sentinella::policy::{Mailbox, Plan, Timestamp};
    use sentinella::store::{ManageStore, StoreLocation};
    let tmp = tempfile_dir(dir);
    let path = tmp.join("reminders.db");
    let _ = std::fs::remove_file(&path);
    let location = StoreLocation::Sqlite(path.clone());
    let policy = PolicySettings::default();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned();
    let created: Timestamp = "2026-09-01T08:00:00Z".parse().unwrap();
    let start = std::time::Instant::now();
    // Mailbox 0's app password is a real one (the login measurement checks it).
    let app = sentinella::policy::app_password::generate().unwrap();
    let canonical = sentinella::policy::app_password::canonical(app.expose()).unwrap();
    let real_hash =
        sentinella::auth::PasswordHasher::new(sentinella::config::Argon2Config::default().cost())
            .unwrap()
            .hash(&canonical)
            .unwrap();
    {
        let mut store = sentinella::store::sqlite::SqliteStore::open(&path).unwrap();
        let every = (100 / due.clamp(1, 100)).max(1);
        let mut tx = store.begin().unwrap();
        for i in 0..mailboxes {
            let mut m = Mailbox::new(
                format!("user{i}@pec.example.it"),
                Plan::Standard,
                None,
                hash.clone(),
            );
            m.id = tx.insert_mailbox(&m, created).unwrap();
            m.device = Some(sentinella::policy::mailbox::Device::app(
                sentinella::policy::totp::DeviceSecret::from_bytes(vec![7; 20]),
                None,
                created,
            ));
            let new = if i == 0 {
                NewAppPassword {
                    name: None,
                    scope: None,
                    selector: sentinella::policy::app_password::selector(&canonical),
                    hash: real_hash.clone(),
                }
            } else {
                NewAppPassword {
                    name: None,
                    scope: None,
                    selector: format!("s{i}"),
                    hash: hash.clone(),
                }
            };
            // Mailbox 0's password is valid now (it is checked at the real time).
            let at = if i == 0 {
                sentinella::clock::now()
            } else {
                created
            };
            m.generate_app_password(new, at, &policy).unwrap();
            // Due: its first reminder moved to before the pass; the others weeks away.
            if i % every != 0 {
                m.app_passwords[0].next_reminder_at = Some("2027-06-01T00:00:00Z".parse().unwrap());
            }
            tx.save_mailbox(&m, created).unwrap();
            if i % 50_000 == 49_999 {
                tx.commit().unwrap();
                tx = store.begin().unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let built = start.elapsed();
    let settings = ManageSettings {
        policy,
        totp_issuer: "Sentinella".into(),
        hash_cost: sentinella::config::Argon2Config::default().cost(),
        seal_key: tmp.join("k"),
        email: false,
        language: sentinella::wording::Language::It,
    };
    let mut manager = Manager::new(location.open_manage().unwrap(), settings).unwrap();
    // When postponing opens for the ones generated on 01/09: 17/11 in Rome.
    let now: Timestamp = "2026-11-18T00:00:00Z".parse().unwrap();
    let logging = (logins > 0).then(|| LoginLoop::start(&location, app.expose()));
    let baseline = logging
        .as_ref()
        .map(|l| l.rate_over(Duration::from_secs(logins)));
    let before = logging.as_ref().map(LoginLoop::count);
    let pass = std::time::Instant::now();
    let sent = manager.send_reminders(now).unwrap();
    let took = pass.elapsed();
    let during = logging
        .as_ref()
        .zip(before)
        .map(|(l, b)| (l.count() - b) as f64 / took.as_secs_f64());
    if let (Some(base), Some(during)) = (baseline, during) {
        println!(
            "{}",
            serde_json::json!({
                "logins_per_second_without_the_pass": base.round(),
                "logins_per_second_during_the_pass": during.round(),
                "ratio": (during / base * 100.0).round() / 100.0,
                "slowest_login_ms": logging.as_ref().map(|l| l.slowest_ms()),
            })
        );
    }
    let again = std::time::Instant::now();
    let second = manager.send_reminders(now).unwrap();
    println!(
        "{}",
        serde_json::json!({
            "mailboxes": mailboxes, "due_percent": due, "seconds_to_build": built.as_secs_f64().round(),
            "written": sent.written, "seconds_for_the_pass": took.as_secs_f64(),
            "second_pass_written": second.written, "seconds_for_an_idle_pass": again.elapsed().as_secs_f64(),
        })
    );
}

/// Two tasks checking one app password in a loop on a warm cache, as `serve`'s sessions
/// do (each check also queued for the access history), counting the checks.
struct LoginLoop {
    count: Arc<AtomicU64>,
    slowest_us: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl LoginLoop {
    fn start(location: &sentinella::store::StoreLocation, password: &str) -> LoginLoop {
        use sentinella::auth::{AuthSettings, Authenticator, Credentials, LoginContext, Mechanism};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cost = sentinella::config::Argon2Config::default().cost();
        let hasher = sentinella::auth::PasswordHasher::new(cost).unwrap();
        let settings = AuthSettings {
            zone: sentinella::policy::PolicySettings::default().zone,
            main_password_alert_every: sentinella::policy::Period::days(1),
            email: false,
            language: sentinella::wording::Language::It,
            cache_ttl: Duration::from_secs(3600),
            cache_entries: 65_536,
            principal_entries: 65_536,
            hash_workers: 0,
            hash_queue: 64,
            throttle: sentinella::auth::ThrottleSettings {
                address_failures: 1_000_000,
                name_failures: 1_000_000,
                password_failures: 1_000_000,
                code_failures: 1_000_000,
                window: Duration::from_secs(900),
                block: Duration::from_secs(1),
                address_max_block: Duration::from_secs(1),
                name_max_block: Duration::from_secs(1),
                max_block: Duration::from_secs(3600),
            },
            breached_passwords: None,
            refuse_breached: false,
            history_sync: Default::default(),
        };
        let started = Instant::now();
        let auth = rt.block_on(async {
            Arc::new(Authenticator::new(location, hasher, None, settings).unwrap())
        });
        eprintln!(
            "authenticator loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let ctx = LoginContext {
            listener: "imaps".into(),
            kind: sentinella::policy::login::ListenerKind::Mailbox,
            protocol: sentinella::policy::Protocol::Imap,
            peer: "127.0.0.1".parse().unwrap(),
            software: None,
            needs_upstream_secret: false,
            pass_through: false,
        };
        let creds = |password: &str| {
            Credentials::from_wire(
                b"user0@pec.example.it",
                password.as_bytes(),
                None,
                Mechanism::ImapLogin,
            )
        };
        let warm = rt.block_on(auth.check(&ctx, creds(password)));
        assert!(warm.is_accepted(), "the measured app password logs in");
        let (count, slowest_us) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        for _ in 0..2 {
            let (auth, ctx, password) = (Arc::clone(&auth), ctx.clone(), password.to_owned());
            let (count, slowest) = (Arc::clone(&count), Arc::clone(&slowest_us));
            rt.spawn(async move {
                loop {
                    let t = Instant::now();
                    let v = auth.check(&ctx, creds(&password)).await;
                    assert!(v.is_accepted());
                    slowest.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        LoginLoop {
            count,
            slowest_us,
            _runtime: rt,
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn rate_over(&self, d: Duration) -> f64 {
        let before = self.count();
        std::thread::sleep(d);
        self.slowest_us.store(0, Ordering::Relaxed);
        (self.count() - before) as f64 / d.as_secs_f64()
    }

    fn slowest_ms(&self) -> f64 {
        self.slowest_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

fn tempfile_dir(dir: Option<std::path::PathBuf>) -> std::path::PathBuf {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sentinella-reminders-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

fn loopback(addr: IpAddr) -> Result<(), String> {
    if addr.is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr} is not a loopback address: refusing"))
    }
}

fn tls_config(cafile: &PathBuf) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cafile).expect("read --cafile") {
        roots
            .add(cert.expect("certificate in --cafile"))
            .expect("add CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn tls(
    tcp: tokio::net::TcpStream,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Stream> {
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One line, or an error at end of file.
async fn line<S: AsyncStream>(r: &mut BufReader<S>) -> std::io::Result<String> {
    let mut s = String::new();
    if r.read_line(&mut s).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(s)
}

/// One SMTP reply (multi-line aware); returns its code.
async fn smtp_reply(r: &mut BufReader<Stream>) -> std::io::Result<u16> {
    loop {
        let l = line(r).await?;
        if l.as_bytes().get(3) != Some(&b'-') {
            return Ok(l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

/// One login session; Ok(true) if the login was accepted.
async fn session(
    proto: Proto,
    stream: Stream,
    user: &str,
    password: &str,
) -> std::io::Result<bool> {
    let mut r = BufReader::new(stream);
    let ok = match proto {
        Proto::Imap => {
            line(&mut r).await?;
            let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            r.get_mut()
                .write_all(format!("a LOGIN {} {}\r\n", q(user), q(password)).as_bytes())
                .await?;
            let ok = loop {
                let l = line(&mut r).await?;
                if l.starts_with("a ") {
                    break l.starts_with("a OK");
                }
            };
            r.get_mut().write_all(b"b LOGOUT\r\n").await?;
            while let Ok(l) = line(&mut r).await {
                if l.starts_with("b ") {
                    break;
                }
            }
            ok
        }
        Proto::Pop3 => {
            line(&mut r).await?;
            r.get_mut()
                .write_all(format!("USER {user}\r\n").as_bytes())
                .await?;
            line(&mut r).await?;
            r.get_mut()
                .write_all(format!("PASS {password}\r\n").as_bytes())
                .await?;
            let ok = line(&mut r).await?.starts_with("+OK");
            r.get_mut().write_all(b"QUIT\r\n").await?;
            let _ = line(&mut r).await;
            ok
        }
        Proto::Smtp => {
            smtp_reply(&mut r).await?;
            r.get_mut().write_all(b"EHLO loadgen.example\r\n").await?;
            smtp_reply(&mut r).await?;
            let blob =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            r.get_mut()
                .write_all(format!("AUTH PLAIN {blob}\r\n").as_bytes())
                .await?;
            let ok = smtp_reply(&mut r).await? == 235;
            r.get_mut().write_all(b"QUIT\r\n").await?;
            let _ = smtp_reply(&mut r).await;
            ok
        }
    };
    Ok(ok)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// How `run` drives each connection.
#[derive(Clone, Copy)]
struct Mode {
    sources: u32,
    wrong: bool,
    spread: u64,
    greeting_only: bool,
    /// Attempts started per second in all (0: no pacing).
    rate: f64,
}

/// The `n`th loopback source address a client binds to: 127.0.0.3, 127.0.0.4, … (never
/// 127.0.0.1, the default source).
fn source_address(n: u32) -> IpAddr {
    let n = n + 2;
    IpAddr::from([127, 0, (n / 250) as u8, (n % 250) as u8 + 1])
}

async fn run(target: Target, proto: Proto, concurrency: usize, duration: u64, mode: Mode) {
    let Mode {
        sources,
        wrong,
        spread,
        greeting_only,
        rate,
    } = mode;
    let config = tls_config(&target.cafile);
    let deadline = Instant::now() + Duration::from_secs(duration.min(600));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (config, target, counter) = (Arc::clone(&config), target.clone(), Arc::clone(&counter));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut accepted, mut refused, mut errors) = (0u64, 0u64, 0u64);
            let source = (sources > 0).then(|| source_address(worker as u32 % sources));
            while Instant::now() < deadline {
                let attempt = counter.fetch_add(1, Ordering::Relaxed);
                if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(attempt as f64 / rate);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                let password = if wrong {
                    format!("wrong-{worker}-{attempt}")
                } else {
                    target.password.clone()
                };
                let user = if spread > 0 {
                    target.user.replace("{i}", &(attempt % spread).to_string())
                } else {
                    target.user.clone()
                };
                let t = Instant::now();
                let result = async {
                    let tcp = connect(target.addr, source).await?;
                    let stream = tls(tcp, &config).await?;
                    if greeting_only {
                        let mut r = BufReader::new(stream);
                        line(&mut r).await?;
                        return Ok(true);
                    }
                    session(proto, stream, &user, &password).await
                }
                .await;
                match result {
                    Ok(true) => {
                        accepted += 1;
                        latencies.push(t.elapsed());
                    }
                    Ok(false) => {
                        refused += 1;
                        latencies.push(t.elapsed());
                    }
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (latencies, accepted, refused, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut accepted, mut refused, mut errors) = (0, 0, 0);
    for t in tasks {
        let (l, a, r, e) = t.await.unwrap();
        latencies.extend(l);
        accepted += a;
        refused += r;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let report = serde_json::json!({
        "protocol": match proto { Proto::Imap => "imap", Proto::Pop3 => "pop3", Proto::Smtp => "smtp" },
        "concurrency": concurrency,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "accepted": accepted,
        "refused": refused,
        "errors": errors,
        "logins_per_s": ((accepted as f64 / elapsed) * 10.0).round() / 10.0,
        "attempts_per_s": (((accepted + refused) as f64 / elapsed) * 10.0).round() / 10.0,
        "p50_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
    });
    println!("{report}");
}

async fn imap_login_stream(
    target: &Target,
    plain: bool,
) -> std::io::Result<BufReader<Box<dyn AsyncStream>>> {
    let tcp = connect(target.addr, None).await?;
    let stream: Box<dyn AsyncStream> = if plain {
        Box::new(tcp)
    } else {
        Box::new(tls(tcp, &tls_config(&target.cafile)).await?)
    };
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    let mut s = String::new();
    r.read_line(&mut s).await?;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    r.get_mut()
        .write_all(format!("a LOGIN {} {}\r\n", q(&target.user), q(&target.password)).as_bytes())
        .await?;
    loop {
        s.clear();
        if r.read_line(&mut s).await? == 0 {
            return Err(std::io::Error::other("closed during login"));
        }
        if s.starts_with("a ") {
            if !s.starts_with("a OK") {
                return Err(std::io::Error::other(format!(
                    "login refused: {}",
                    s.trim()
                )));
            }
            return Ok(r);
        }
    }
}

trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

async fn fetch(target: Target, repeat: u32, plain: bool) {
    let mut r = imap_login_stream(&target, plain).await.expect("login");
    r.get_mut().write_all(b"s SELECT INBOX\r\n").await.unwrap();
    let mut s = String::new();
    loop {
        s.clear();
        r.read_line(&mut s).await.unwrap();
        if s.starts_with("s ") {
            break;
        }
    }
    let mut total = 0u64;
    let start = Instant::now();
    for i in 0..repeat.min(1000) {
        r.get_mut()
            .write_all(format!("f{i} UID FETCH 1 BODY.PEEK[]\r\n").as_bytes())
            .await
            .unwrap();
        loop {
            s.clear();
            r.read_line(&mut s).await.unwrap();
            if let Some(open) = s.rfind('{') {
                let n: usize = s[open + 1..]
                    .trim_end()
                    .trim_end_matches('}')
                    .parse()
                    .unwrap_or(0);
                let mut buf = vec![0u8; n];
                r.read_exact(&mut buf).await.unwrap();
                total += n as u64;
                continue;
            }
            if s.starts_with(&format!("f{i} ")) {
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"bytes": total, "seconds": (secs * 1000.0).round() / 1000.0, "mb_per_s": ((total as f64 / 1e6 / secs) * 10.0).round() / 10.0})
    );
}

/// `idle`'s options beyond the target.
struct IdleMode {
    sessions: usize,
    hold: u64,
    also: Vec<SocketAddr>,
    sources: u32,
    first_source: u32,
    spread: u64,
    imap_idle: bool,
    concurrency: usize,
}

/// The most sessions `idle` opens.
const MAX_IDLE_SESSIONS: usize = 200_000;

async fn idle(target: Target, mode: IdleMode) {
    let config = tls_config(&target.cafile);
    let mut addrs = vec![target.addr];
    addrs.extend(mode.also.iter().copied());
    let gate = Arc::new(tokio::sync::Semaphore::new(mode.concurrency.max(1)));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let wanted = mode.sessions.min(MAX_IDLE_SESSIONS);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(wanted);
    for i in 0..wanted {
        let addr = addrs[i % addrs.len()];
        let source =
            (mode.sources > 0).then(|| source_address(mode.first_source + i as u32 % mode.sources));
        let user = if mode.spread > 0 {
            target
                .user
                .replace("{i}", &(i as u64 % mode.spread).to_string())
        } else {
            target.user.clone()
        };
        let (gate, config, password) = (
            Arc::clone(&gate),
            Arc::clone(&config),
            target.password.clone(),
        );
        let (opened_tx, mut release) = (opened_tx.clone(), release.clone());
        let imap_idle = mode.imap_idle;
        handles.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let open = async {
                let tcp = connect(addr, source).await?;
                let stream: Box<dyn AsyncStream> = Box::new(tls(tcp, &config).await?);
                let mut r = BufReader::with_capacity(1024, stream);
                imap_login(&mut r, &user, &password).await?;
                if imap_idle {
                    imap_command(&mut r, "b SELECT INBOX\r\n", "b ").await?;
                    r.get_mut().write_all(b"c IDLE\r\n").await?;
                    if !line(&mut r).await?.starts_with('+') {
                        return Err(std::io::Error::other("IDLE refused"));
                    }
                }
                Ok::<_, std::io::Error>(r)
            }
            .await;
            drop(permit);
            let _ = opened_tx.send(open.is_ok());
            let mut r = open.ok()?;
            // Held until released; a session the server ends meanwhile says when and how.
            let mut last = String::new();
            loop {
                tokio::select! {
                    _ = release.wait_for(|r| *r) => return Some(None),
                    l = line(&mut r) => match l {
                        Ok(l) => last = l,
                        Err(_) => {
                            let at = std::time::SystemTime::now();
                            let ms = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
                            return Some(Some(serde_json::json!({
                                "user": user, "at_unix_ms": ms, "last": last.trim_end(),
                            })));
                        }
                    }
                }
            }
        }));
    }
    drop(opened_tx);
    let (mut ok, mut failed) = (0usize, 0usize);
    while let Some(o) = opened.recv().await {
        if o {
            ok += 1
        } else {
            failed += 1
        }
        if ok + failed == wanted {
            break;
        }
    }
    println!(
        "{}",
        serde_json::json!({"open": ok, "failed": failed, "wanted": mode.sessions,
            "seconds_to_open": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0})
    );
    tokio::time::sleep(Duration::from_secs(mode.hold.min(3600))).await;
    let _ = release_tx.send(true);
    let (mut held, mut ended) = (0usize, Vec::new());
    for h in handles {
        match h.await.unwrap() {
            Some(None) => held += 1,
            Some(Some(e)) => ended.push(e),
            None => {}
        }
    }
    ended.sort_by_key(|e| e["at_unix_ms"].as_u64());
    println!(
        "{}",
        serde_json::json!({"held_to_the_end": held, "ended_by_server": ended.len(),
            "ended": ended})
    );
}

/// Sends `command`; reads to the line starting with `tag`, which must be OK.
async fn imap_command<S: AsyncStream>(
    r: &mut BufReader<S>,
    command: &str,
    tag: &str,
) -> std::io::Result<()> {
    r.get_mut().write_all(command.as_bytes()).await?;
    loop {
        let l = line(r).await?;
        if let Some(status) = l.strip_prefix(tag) {
            return if status.starts_with("OK") {
                Ok(())
            } else {
                Err(std::io::Error::other(l.trim_end().to_owned()))
            };
        }
    }
}

/// The greeting, then LOGIN.
async fn imap_login<S: AsyncStream>(
    r: &mut BufReader<S>,
    user: &str,
    password: &str,
) -> std::io::Result<()> {
    line(r).await?;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    imap_command(r, &format!("a LOGIN {} {}\r\n", q(user), q(password)), "a ").await
}

/// `upstream`: serves every address given until `duration` passes.
async fn fake_upstream(listen: Vec<SocketAddr>, duration: u64) {
    let mut servers = Vec::new();
    for addr in listen {
        loopback(addr.ip()).unwrap();
        let socket = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind --listen");
        servers.push(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = socket.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = fake_imap(tcp).await;
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(duration.min(7200))).await;
    for s in servers {
        s.abort();
    }
}

/// One connection of the fake upstream.
async fn fake_imap(tcp: tokio::net::TcpStream) -> std::io::Result<()> {
    const CAPS: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN";
    let mut r = BufReader::with_capacity(512, tcp);
    r.get_mut()
        .write_all(format!("* OK [CAPABILITY {CAPS}] fake upstream ready\r\n").as_bytes())
        .await?;
    loop {
        let l = line(&mut r).await?;
        let mut words = l.trim_end().splitn(3, ' ');
        let (tag, command) = (words.next().unwrap_or("*"), words.next().unwrap_or(""));
        let reply = match command.to_ascii_uppercase().as_str() {
            "CAPABILITY" => format!("* CAPABILITY {CAPS}\r\n{tag} OK done\r\n"),
            "LOGIN" | "AUTHENTICATE" => {
                format!("{tag} OK [CAPABILITY {CAPS}] Logged in\r\n")
            }
            "ID" => format!("* ID NIL\r\n{tag} OK ID completed\r\n"),
            "SELECT" | "EXAMINE" => format!(
                "* FLAGS (\\Seen)\r\n* 0 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n{tag} OK [READ-WRITE] Select completed\r\n"
            ),
            "NOOP" | "ENABLE" => format!("{tag} OK done\r\n"),
            "IDLE" => {
                r.get_mut().write_all(b"+ idling\r\n").await?;
                loop {
                    if line(&mut r).await?.trim_end().eq_ignore_ascii_case("DONE") {
                        break;
                    }
                }
                format!("{tag} OK Idle completed\r\n")
            }
            "LOGOUT" => {
                let bye = format!("* BYE Logging out\r\n{tag} OK Logout completed\r\n");
                r.get_mut().write_all(bye.as_bytes()).await?;
                return Ok(());
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        r.get_mut().write_all(reply.as_bytes()).await?;
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Reminders {
        mailboxes,
        due,
        dir,
        logins,
    } = cli.command
    {
        reminders_bench(mailboxes, due, dir, logins);
        return;
    }
    if let Cmd::Hash = cli.command {
        let mut pw = String::new();
        std::io::stdin().read_line(&mut pw).unwrap();
        let hasher = sentinella::auth::PasswordHasher::new(
            sentinella::config::Argon2Config::default().cost(),
        )
        .unwrap();
        println!(
            "{}",
            hasher
                .hash(&sentinella::secret::Secret::new(pw.trim_end().to_owned()))
                .unwrap()
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match cli.command {
            Cmd::Run {
                target,
                protocol,
                concurrency,
                duration,
                sources,
                wrong,
                spread,
                greeting_only,
                rate,
            } => {
                loopback(target.addr.ip()).unwrap();
                let mode = Mode {
                    sources,
                    wrong,
                    spread,
                    greeting_only,
                    rate,
                };
                run(target, protocol, concurrency, duration, mode).await;
            }
            Cmd::Fetch {
                target,
                repeat,
                plain,
            } => {
                loopback(target.addr.ip()).unwrap();
                fetch(target, repeat, plain).await;
            }
            Cmd::Idle {
                target,
                sessions,
                hold,
                also,
                sources,
                first_source,
                spread,
                imap_idle,
                concurrency,
            } => {
                loopback(target.addr.ip()).unwrap();
                for a in &also {
                    loopback(a.ip()).unwrap();
                }
                let mode = IdleMode {
                    sessions,
                    hold,
                    also,
                    sources,
                    first_source,
                    spread,
                    imap_idle,
                    concurrency,
                };
                idle(target, mode).await;
            }
            Cmd::Upstream { listen, duration } => fake_upstream(listen, duration).await,
            Cmd::Hash | Cmd::Reminders { .. } => unreachable!(),
        }
    });
}
