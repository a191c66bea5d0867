//! Real servers for the integration tests: Dovecot from Debian's packages, and the built
//! `sentinella serve`, each on free loopback ports in its own temporary folder, stopped
//! by PID (SIGTERM, then SIGKILL) when dropped — also when a test fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{CHEAP_ARGON2, Run, run_binary};

/// A free loopback port for a server this test process will start.
///
/// `bind(0)` hands out a port and forgets it once released, so two test processes running
/// in parallel could be given the same one before either server binds it. Instead each
/// process takes ports from its own block of 40, chosen by its PID, below Linux's
/// ephemeral range (so outgoing connections do not take them) and above the shipped
/// config's 10xxx/11xxx ports; a port found busy is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 12_000 + (std::process::id() % 500) as u16 * 40;
    for _ in 0..40 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 40;
        let port = block + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // The whole block is busy (unlikely): fall back to the kernel's choice.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start listening on {port}; its log:\n{log}");
}

/// Sends SIGTERM to `child`, waits up to 5 s, then SIGKILL.
fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = Command::new("id")
        .arg(flag)
        .arg(name)
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no system user {name}"))
}

/// The master user the proxy logs in upstream as.
pub const MASTER_USER: &str = "sentinella";
/// Its password.
pub const MASTER_PASSWORD: &str = "master-secret-for-tests";

/// A running Dovecot (IMAP, POP3, submission relaying to an SMTP sink) with passwd-file
/// users and a master user.
pub struct Dovecot {
    child: Option<Child>,
    sink: Option<Child>,
    /// Its folder (config, state, mail, log).
    pub dir: tempfile::TempDir,
    /// Plain IMAP port.
    pub imap_port: u16,
    /// Plain POP3 port.
    pub pop3_port: u16,
    /// Plain submission port.
    pub submission_port: u16,
    /// The SMTP sink's port (Dovecot relays submitted mail there).
    pub sink_port: u16,
}

impl Dovecot {
    /// Starts Dovecot with `users` as (login, password) pairs.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        assert!(
            Path::new("/usr/sbin/dovecot").exists(),
            "Dovecot is not installed: run ./scripts/test.sh, which installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        use std::os::unix::fs::PermissionsExt;
        // Dovecot's own users must be able to reach the folder.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "mail", "sink"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::os::unix::fs::chown(
            d.join("mail"),
            Some(id_of("dovecot", "-u")),
            Some(id_of("dovecot", "-g")),
        )
        .unwrap();
        let mut passwd = String::new();
        for (u, p) in users {
            passwd.push_str(&format!("{u}:{{PLAIN}}{p}::::::\n"));
        }
        std::fs::write(d.join("users"), passwd).unwrap();
        std::fs::write(
            d.join("masters"),
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n"),
        )
        .unwrap();
        let mut dovecot = Dovecot {
            child: None,
            sink: None,
            imap_port: free_port(),
            pop3_port: free_port(),
            submission_port: free_port(),
            sink_port: free_port(),
            dir,
        };
        dovecot.write_config();
        dovecot.restart();
        dovecot
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap pop3 submission
listen = 127.0.0.1
hostname = dovecot.test
# The proxy connects from here: Dovecot honours its ID x-originating-* and XCLIENT, and
# logs the client's address (rip=) instead of the proxy's.
login_trusted_networks = 127.0.0.1/32
submission_relay_host = 127.0.0.1
submission_relay_port = {sink}
submission_relay_trusted = yes
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Every password Dovecot checks is in its log (the pass-through tests read it), and a
# failure answers at once (the default pauses 2 s).
auth_verbose = yes
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {d}/masters
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
}}
service anvil {{
  chroot =
}}
"#,
            imap = self.imap_port,
            pop3 = self.pop3_port,
            submission = self.submission_port,
            sink = self.sink_port,
        );
        std::fs::write(self.dir.path().join("dovecot.conf"), conf).unwrap();
    }

    /// Starts (again) on the same ports, with its SMTP sink.
    pub fn restart(&mut self) {
        self.stop();
        let sink = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/smtp_sink.py"
            ))
            .arg("--port")
            .arg(self.sink_port.to_string())
            .arg("--dir")
            .arg(self.dir.path().join("sink"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("sink.log")).unwrap(),
            ))
            .spawn()
            .expect("start the SMTP sink (python3 with aiosmtpd)");
        self.sink = Some(sink);
        wait_for_port(
            self.sink_port,
            "smtp sink",
            &self.dir.path().join("sink.log"),
        );
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("start dovecot");
        self.child = Some(child);
        for port in [self.imap_port, self.pop3_port, self.submission_port] {
            wait_for_port(port, "dovecot", &self.dir.path().join("dovecot.log"));
        }
    }

    /// The messages the sink received so far, in order, byte for byte.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        sunk(&self.dir.path().join("sink"))
            .into_iter()
            .map(|(m, _)| m)
            .collect()
    }

    /// Stops it and its sink (by PID).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        if let Some(mut sink) = self.sink.take() {
            stop_child(&mut sink);
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The messages an SMTP sink saved in `dir`, in order, each with its envelope (sender,
/// recipients, whether it came over TLS, the AUTH user).
fn sunk(dir: &Path) -> Vec<(Vec<u8>, serde_json::Value)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let envelope = std::fs::read(p.with_extension("json")).unwrap();
            (
                std::fs::read(&p).unwrap(),
                serde_json::from_slice(&envelope).unwrap(),
            )
        })
        .collect()
}

/// A provider's relay for the notices: the tests' aiosmtpd sink on its own, offering
/// STARTTLS with a certificate of its own (made here with openssl) and requiring AUTH.
pub struct Relay {
    child: Option<Child>,
    /// Its folder: certificate, key, the messages.
    pub dir: tempfile::TempDir,
    /// Where it listens.
    pub port: u16,
}

impl Relay {
    /// Starts it, with `user` and `password` the only AUTH it accepts.
    pub fn start(user: &str, password: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
        // A CA of its own, and the relay's certificate signed by it (webpki refuses a CA
        // certificate used as the server's own).
        let d = dir.path();
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let path = |name: &str| d.join(name).to_str().unwrap().to_owned();
        let openssl = |args: String| {
            let ok = Command::new("openssl")
                .args(args.split(' '))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl")
                .success();
            assert!(ok, "openssl {args}");
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        let (ca_key, ca_crt, csr) = (path("ca.key"), path("ca.crt"), path("relay.csr"));
        openssl(format!(
            "req -x509 -days 2 -subj /CN=relay-ca {ec} -keyout {ca_key} -out {ca_crt}"
        ));
        openssl(format!(
            "req -subj /CN=127.0.0.1 {ec} -keyout {} -out {csr}",
            key.display()
        ));
        openssl(format!(
            "x509 -req -days 2 -CAcreateserial -in {csr} -CA {ca_crt} -CAkey {ca_key} -extfile {} -out {}",
            path("leaf.ext"),
            cert.display()
        ));
        std::fs::create_dir(dir.path().join("sink")).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/smtp_sink.py"
            ))
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path().join("sink"))
            .arg("--starttls")
            .args([&cert, &key])
            .args(["--auth", user, password])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("relay.log")).unwrap(),
            ))
            .spawn()
            .expect("start the relay (python3 with aiosmtpd)");
        let relay = Relay {
            child: Some(child),
            dir,
            port,
        };
        wait_for_port(port, "relay", &relay.dir.path().join("relay.log"));
        relay
    }

    /// The CA certificate its clients must trust.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The messages received so far, in order, each with its envelope.
    pub fn delivered(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        sunk(&self.dir.path().join("sink"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// A running `sentinella serve` with IMAP listeners in front of Dovecot instances.
pub struct Proxy {
    child: Option<Child>,
    /// Its folder: config.toml, store, certificate, log.
    pub dir: tempfile::TempDir,
    /// IMAP, implicit TLS.
    pub imaps_port: u16,
    /// IMAP, STARTTLS.
    pub imap_port: u16,
    /// Security archive, implicit TLS.
    pub archive_port: u16,
    /// POP3, implicit TLS.
    pub pop3s_port: u16,
    /// POP3, STLS.
    pub pop3_port: u16,
    /// SMTP submission, implicit TLS.
    pub submissions_port: u16,
    /// SMTP submission, STARTTLS.
    pub submission_port: u16,
}

impl Proxy {
    /// Writes a config pointing at `mailbox` (and `archive`) Dovecot, with `[policy]`
    /// lines `policy`, and `[limits]` lines `limits`. Does not start it.
    pub fn configure(mailbox: &Dovecot, archive: &Dovecot, policy: &str, limits: &str) -> Proxy {
        Proxy::configure_login(mailbox, archive, policy, limits, false)
    }

    /// Like [`Proxy::configure`]; with `stored`, the upstreams use per-mailbox stored
    /// secrets instead of the master user.
    pub fn configure_login(
        mailbox: &Dovecot,
        archive: &Dovecot,
        policy: &str,
        limits: &str,
        stored: bool,
    ) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("master.pass"),
            format!("{MASTER_PASSWORD}\n"),
        )
        .unwrap();
        let proxy = Proxy {
            child: None,
            dir,
            imaps_port: free_port(),
            imap_port: free_port(),
            archive_port: free_port(),
            pop3s_port: free_port(),
            pop3_port: free_port(),
            submissions_port: free_port(),
            submission_port: free_port(),
        };
        let login = if stored {
            "login = { mode = \"stored\" }".to_owned()
        } else {
            format!(
                "login = {{ mode = \"master\", user = \"{MASTER_USER}\", password_file = \"master.pass\" }}"
            )
        };
        let config = format!(
            r#"[store]
path = "state/sentinella.db"

[policy]
{policy}

{CHEAP_ARGON2}
[tls]
certificate = "certs/cert.pem"
key = "certs/key.pem"

[limits]
{limits}

[[listener]]
name = "imaps"
protocol = "imap"
bind = "127.0.0.1:{imaps}"
tls = "implicit"
upstream = "mailbox"

[[listener]]
name = "imap"
protocol = "imap"
bind = "127.0.0.1:{imap}"
tls = "starttls"
upstream = "mailbox"

[[listener]]
name = "archive"
protocol = "imap"
bind = "127.0.0.1:{archive}"
tls = "implicit"
archive = true
upstream = "archive"

[[listener]]
name = "pop3s"
protocol = "pop3"
bind = "127.0.0.1:{pop3s}"
tls = "implicit"
upstream = "mailbox-pop3"

[[listener]]
name = "pop3"
protocol = "pop3"
bind = "127.0.0.1:{pop3}"
tls = "starttls"
upstream = "mailbox-pop3"

[[listener]]
name = "submissions"
protocol = "smtp"
bind = "127.0.0.1:{submissions}"
tls = "implicit"
upstream = "mailbox-smtp"

[[listener]]
name = "submission"
protocol = "smtp"
bind = "127.0.0.1:{submission}"
tls = "starttls"
upstream = "mailbox-smtp"

[upstream.mailbox]
host = "127.0.0.1"
port = {up}
tls = "none"
{login}

[upstream.mailbox-pop3]
host = "127.0.0.1"
port = {up_pop3}
tls = "none"
{login}

[upstream.mailbox-smtp]
host = "127.0.0.1"
port = {up_smtp}
tls = "none"
{login}


[upstream.archive]
host = "127.0.0.1"
port = {arch_up}
tls = "none"
{login}
"#,
            imaps = proxy.imaps_port,
            imap = proxy.imap_port,
            archive = proxy.archive_port,
            up = mailbox.imap_port,
            pop3s = proxy.pop3s_port,
            pop3 = proxy.pop3_port,
            submissions = proxy.submissions_port,
            submission = proxy.submission_port,
            up_pop3 = mailbox.pop3_port,
            up_smtp = mailbox.submission_port,
            arch_up = archive.imap_port,
        );
        std::fs::write(proxy.config(), config).unwrap();
        proxy
    }

    /// Points this (not yet running) proxy at `other`'s store, key and certificate: a
    /// second `serve` process on one store, as two nodes share one.
    pub fn share_store_of(&self, other: &Proxy) {
        let o = other.dir.path().display();
        let text = std::fs::read_to_string(self.config()).unwrap();
        let shared = format!(
            "[store]\npath = \"{o}/state/sentinella.db\"\nkey_file = \"{o}/sentinella.key\"\n"
        );
        let text = text
            .replacen("[store]\npath = \"state/sentinella.db\"\n", &shared, 1)
            .replace("\"certs/", &format!("\"{o}/certs/"));
        assert!(text.contains(&shared), "the harness's [store] section");
        std::fs::write(self.config(), text).unwrap();
    }

    /// Adds `line` to this (not yet running) proxy's `[store]` section.
    #[allow(dead_code)] // only the CLI tests
    pub fn store_setting(&self, line: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let section = "[store]\npath = \"state/sentinella.db\"\n";
        assert!(text.contains(section), "the harness's [store] section");
        let text = text.replacen(section, &format!("{section}{line}\n"), 1);
        std::fs::write(self.config(), text).unwrap();
    }

    /// Puts this (not yet running) proxy's state in `pg`; with `peer`, it also takes the
    /// peer's key and certificate: a second node of one fleet.
    #[allow(dead_code)] // only the fleet tests
    pub fn use_postgres(&self, pg: &Postgres, peer: Option<&Proxy>) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let key = match peer {
            Some(o) => format!("{}/sentinella.key", o.dir.path().display()),
            None => "sentinella.key".to_owned(),
        };
        let store = format!(
            "[store]\nurl = \"{}\"\npassword_file = \"{}\"\nkey_file = \"{key}\"\n",
            pg.url(),
            pg.password_file().display()
        );
        let text = text.replacen("[store]\npath = \"state/sentinella.db\"\n", &store, 1);
        if let Some(o) = peer {
            // The same certificate on every node, as behind one balancer name.
            let certs = self.dir.path().join("certs");
            std::fs::create_dir_all(&certs).unwrap();
            for f in ["cert.pem", "key.pem"] {
                std::fs::copy(o.dir.path().join("certs").join(f), certs.join(f)).unwrap();
            }
        }
        assert!(text.contains(&store), "the harness's [store] section");
        std::fs::write(self.config(), text).unwrap();
    }

    /// Configures and starts.
    pub fn start(mailbox: &Dovecot, archive: &Dovecot, policy: &str) -> Proxy {
        let mut p = Proxy::configure(mailbox, archive, policy, "");
        p.run();
        p
    }

    /// Starts `sentinella serve` and waits for its listeners.
    pub fn run(&mut self) {
        self.run_with_env(&[]);
    }

    /// Like [`Proxy::run`], with these environment variables set.
    pub fn run_with_env(&mut self, env: &[(&str, &str)]) {
        self.serve(env, None);
    }

    /// Like [`Proxy::run`], with the process's file limit (`ulimit -n`) at `files`: what
    /// a default systemd or shell limit (1,024) gives a real deployment.
    #[allow(dead_code)] // only the security tests
    pub fn run_with_file_limit(&mut self, files: u32) {
        self.serve(&[], Some(files));
    }

    /// Starts `serve` (under the file limit `files`, if any: set by bash, which then
    /// execs the proxy, so the child's PID is the proxy's) and waits for its listeners.
    fn serve(&mut self, env: &[(&str, &str)], files: Option<u32>) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let binary = env!("CARGO_BIN_EXE_sentinella");
        let mut command = match files {
            None => Command::new(binary),
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
        };
        let child = command
            .arg("--config")
            .arg(self.config())
            .arg("serve")
            .env("RUST_LOG", "sentinella=trace,info")
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sentinella serve");
        self.child = Some(child);
        for port in [
            self.imaps_port,
            self.imap_port,
            self.archive_port,
            self.pop3s_port,
            self.pop3_port,
            self.submissions_port,
            self.submission_port,
        ] {
            wait_for_port(port, "sentinella", &self.log_path());
        }
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The certificate clients should trust.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("certs/cert.pem")
    }

    /// Where the proxy's log goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinella.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs a management command against the proxy's store.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run_binary(&self.config(), args, stdin, self.dir.path())
    }

    /// Runs a management command with `--json` and asserts success.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.cli(&all, stdin);
        assert_eq!(run.code, 0, "sentinella {args:?} failed: {run:?}");
        run.json()
    }

    /// The running proxy's process id.
    #[allow(dead_code)] // not every test binary asks
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends it `signal` (e.g. "HUP"), by PID; returns whether it is still running.
    pub fn signal(&mut self, signal: &str) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        std::thread::sleep(Duration::from_millis(200));
        sent && matches!(child.try_wait(), Ok(None))
    }

    /// Stops it with SIGTERM (by PID) and returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        stop_child(&mut child);
        child.wait().ok().and_then(|s| s.code())
    }

    /// Kills it at once (SIGKILL, by PID), as a crash would; waits for it to be gone.
    #[allow(dead_code)] // only the durability test crashes it
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real HAProxy (Debian's package) in TCP mode in front of proxy listeners: each
/// route's frontend on a free loopback port, its backend connecting from `source` and
/// starting with a PROXY protocol header (`send-proxy` = v1, `send-proxy-v2`).
#[allow(dead_code)] // only the balancer tests start one
pub struct Haproxy {
    child: Option<Child>,
    /// Its folder (config, log).
    pub dir: tempfile::TempDir,
    /// The frontend port of each route, in the order given.
    pub ports: Vec<u16>,
}

#[allow(dead_code)]
impl Haproxy {
    /// Starts HAProxy with one frontend per `(backend port, "send-proxy" |
    /// "send-proxy-v2")`, connecting to the backend from `source`.
    pub fn start(source: &str, routes: &[(u16, &str)]) -> Haproxy {
        assert!(
            Path::new("/usr/sbin/haproxy").exists(),
            "HAProxy is not installed (apt-get install haproxy; ./scripts/test.sh does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = routes.iter().map(|_| free_port()).collect();
        let mut config = String::from(
            "global\n    maxconn 200\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
        );
        for (i, ((backend, send), front)) in routes.iter().zip(&ports).enumerate() {
            config.push_str(&format!(
                "frontend f{i}\n    bind 127.0.0.1:{front}\n    default_backend b{i}\n\
                 backend b{i}\n    server proxy 127.0.0.1:{backend} source {source} {send}\n"
            ));
        }
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("haproxy.log");
        let child = Command::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("start haproxy");
        let h = Haproxy {
            child: Some(child),
            dir,
            ports,
        };
        for port in &h.ports {
            wait_for_port(*port, "haproxy", &log);
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// A real PostgreSQL (Debian's package) in a temporary folder: `initdb` and `pg_ctl` run
/// as the unprivileged `postgres` user, the server on a free loopback port (and a socket
/// in its own folder), password authentication (scram) for the `sentinella` role, and
/// stopped by the postmaster's PID when dropped.
#[allow(dead_code)] // only the fleet tests start one
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    pid: Option<u32>,
    /// Server options besides the port and the addresses (TLS).
    options: String,
}

/// The role and database the tests use.
pub const PG_USER: &str = "sentinella";
/// Its password (in [`Postgres::password_file`]).
pub const PG_PASSWORD: &str = "pg-secret-for-tests";

#[allow(dead_code)]
impl Postgres {
    fn bin(name: &str) -> PathBuf {
        let base = Path::new("/usr/lib/postgresql");
        let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
            .expect("PostgreSQL is installed (/usr/lib/postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        versions.sort();
        versions
            .last()
            .expect("a PostgreSQL version")
            .join("bin")
            .join(name)
    }

    fn as_postgres(program: &Path) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    }

    /// Creates the cluster and starts it.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = (id_of("postgres", "-u"), id_of("postgres", "-g"));
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let pwfile = dir.path().join("initdb.pw");
        std::fs::write(&pwfile, format!("{PG_PASSWORD}\n")).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        std::fs::write(dir.path().join("password"), format!("{PG_PASSWORD}\n")).unwrap();
        let out = Self::as_postgres(&Self::bin("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                PG_USER,
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            dir,
            port: free_port(),
            pid: None,
            options: String::new(),
        };
        pg.run();
        let out = Command::new(Self::bin("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                PG_USER,
                PG_USER,
            ])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// Starts the server (again) on its port and waits for it.
    pub fn run(&mut self) {
        let data = self.dir.path().join("data");
        let out = Self::as_postgres(&Self::bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200 {}",
                self.port,
                self.dir.path().display(),
                self.options
            ))
            .args(["-w", "-t", "30", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
        let pidfile = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
        self.pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok());
        wait_for_port(self.port, "postgres", &self.log_path());
    }

    /// Restarts it with TLS on: a certificate for 127.0.0.1 made with openssl (its own
    /// CA); returns the CA certificate's path, for `ca_file`.
    pub fn enable_tls(&mut self) -> PathBuf {
        self.stop();
        let d = self.dir.path().to_owned();
        let d = d.as_path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(d.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let (uid, gid) = (id_of("postgres", "-u"), id_of("postgres", "-g"));
        for f in ["server.key", "server.pem"] {
            std::os::unix::fs::chown(d.join(f), Some(uid), Some(gid)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        self.options = format!(
            "-c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
            d.display()
        );
        self.run();
        d.join("ca.pem")
    }

    /// Stops the server (fast shutdown: sessions are ended), by its PID.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }

    /// The URL a proxy connects with (no password in it).
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{PG_USER}", self.port)
    }

    /// The file holding the password.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The URL of another database of this server.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL statement with psql; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(PG_USER, sql)
    }

    /// Runs one SQL statement with psql in `database`; returns its unaligned output.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = Command::new(Self::bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
            ])
            .args(["-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
