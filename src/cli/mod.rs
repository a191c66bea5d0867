//! The `sentinella` command line: `serve`, and a command for every management action of
//! SPEC.md (mailboxes, multi-user accounts, 2FA, app passwords, history).
//!
//! The command line is a front door: it parses, prompts, confirms and renders; every
//! action is [`crate::manage`]'s.
//!
//! - `output`: human text or `--json`, secrets printed once from zeroized buffers.
//! - `prompt`: passwords from a terminal or `--password-stdin`; confirmations.
//! - `commands`: one handler per command.
//! - `render`: the human text of each outcome.
//!
//! Exit status: 0 done; 1 refused (by the rules, or not found, or not confirmed);
//! 2 bad usage; 3 bad configuration; 4 store or system failure.

mod commands;
mod output;
mod prompt;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::ConfigError;
use crate::manage::{ErrorKind, ManageError};
use crate::policy::{Plan, Protocol};
use crate::store::StoreError;

/// Sentinella: two-step verification and app passwords in front of IMAP, POP3 and SMTP.
#[derive(Debug, Parser)]
#[command(name = "sentinella", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file; relative paths in it are relative to its folder.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "config.toml"
    )]
    pub config: PathBuf,
    /// Print one JSON document instead of text (errors too, with a non-zero exit).
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy on the configured listeners (logs on stderr; RUST_LOG sets the level).
    Serve,
    /// Mailboxes, their settings and multi-user accounts.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Two-step verification: the associated authenticator-app device.
    #[command(name = "2fa", subcommand)]
    TwoFactor(TwoFactorCommand),
    /// The app password for mail programs (exists only while 2FA is on).
    #[command(subcommand)]
    AppPassword(AppPasswordCommand),
    /// Notices to owners: the expiry-reminder job.
    #[command(subcommand)]
    Notices(NoticesCommand),
    /// Bearer tokens for the operator's HTTP API (`/api/v1/`).
    #[command(name = "api-token", subcommand)]
    ApiToken(ApiTokenCommand),
    /// The store itself: moving it between SQLite and PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `sentinella store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copies a whole store into a new, empty one — mailboxes, logins, secrets, history,
    /// events, notices, outbox — then checks that every table has as many rows on both
    /// sides. Stop the proxies on the source first.
    Copy {
        /// The source: `sqlite:PATH` or `postgres://user@host:port/database`.
        #[arg(long)]
        from: String,
        /// The destination (empty), in the same forms.
        #[arg(long)]
        to: String,
        /// A file with the PostgreSQL password (else SENTINELLA_STORE_PASSWORD).
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// PEM certificates to trust for TLS to PostgreSQL (`?sslmode=require`).
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
}

/// `sentinella api-token …`
#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// A new token, printed once; only its hash is kept (in `api.tokens_file`).
    Create {
        /// Its name, recorded in the events of every call made with it.
        name: String,
    },
    /// The tokens' names.
    List,
    /// Removes a token: calls with it are refused from the next one.
    Revoke {
        /// Its name.
        name: String,
    },
}

/// `sentinella notices …`
#[derive(Debug, Subcommand)]
pub enum NoticesCommand {
    /// One pass of the expiry-reminder job (`serve` runs it every minute; this is for
    /// cron, or a host that runs no proxy).
    Run,
}

/// Where a new password comes from.
#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from standard input (one line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `--yes` for actions that lower security or cut access.
#[derive(Debug, Args)]
pub struct Confirmation {
    /// Confirm without asking (needed when there is no terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// The formats `mailbox import` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFileFormat {
    /// Dovecot's passwd-file: user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra].
    Passwd,
    /// CSV with the header address,plan,contact,hash.
    Csv,
}

/// Migration steps.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MigrationStep {
    /// The mailbox is being migrated: 2FA cannot be turned on.
    Start,
    /// The migration is over.
    Finish,
}

/// `sentinella mailbox …`
#[derive(Debug, Subcommand)]
#[allow(missing_docs)] // flattened option groups document themselves
pub enum MailboxCommand {
    /// Add a mailbox (2FA off, every protocol enabled).
    Add {
        /// The address, e.g. mario.rossi@pec.example.it.
        address: String,
        /// standard, pro or premium (pro and premium include the security archive).
        #[arg(long, default_value = "standard")]
        plan: Plan,
        /// Where notices are e-mailed.
        #[arg(long, value_name = "EMAIL")]
        contact: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List every mailbox.
    List,
    /// Show one mailbox: plan, protocols, 2FA, app password, multi-user accounts.
    Show {
        /// The address.
        address: String,
    },
    /// Remove a mailbox and its multi-user accounts (its history is kept).
    Remove {
        /// The address.
        address: String,
        #[command(flatten)]
        confirm: Confirmation,
    },
    /// Set the main password of a mailbox, or of a multi-user account with --user.
    SetPassword {
        /// The mailbox address.
        address: String,
        /// A multi-user account of the mailbox, instead of the mailbox itself.
        #[arg(long, value_name = "LOGIN")]
        user: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Set the secret the proxy logs in upstream with for this mailbox (upstreams with
    /// `login = { mode = "stored" }`); kept encrypted with the store's key file.
    SetUpstreamSecret {
        /// The address.
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Change the contact e-mail notices are sent to (the owner is told).
    SetContact {
        /// The address.
        address: String,
        /// The new contact e-mail.
        email: String,
    },
    /// Adopt an existing server's mailboxes with the password hashes it has (no
    /// plaintext): {ARGON2ID}, {ARGON2I}, {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT},
    /// {PBKDF2}. Each is re-hashed to argon2id at its first login. Every line is checked
    /// first: with any bad line nothing is imported. A re-run updates what changed.
    Import {
        /// The file to read.
        file: PathBuf,
        /// passwd (Dovecot's passwd-file) or csv (address,plan,contact,hash).
        #[arg(long, value_enum, default_value = "passwd")]
        format: ImportFileFormat,
        /// The plan of new mailboxes the file gives none for.
        #[arg(long, default_value = "standard")]
        plan: Plan,
    },
    /// Change the plan.
    SetPlan {
        /// The address.
        address: String,
        /// standard, pro or premium.
        plan: Plan,
    },
    /// Show, enable or disable the mail protocols mail programs may use.
    Protocols {
        /// The address.
        address: String,
        /// Protocols to enable, comma-separated (imap,pop3,smtp).
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        enable: Vec<Protocol>,
        /// Protocols to disable, comma-separated.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        disable: Vec<Protocol>,
    },
    /// Add a multi-user account: another login name, with its own main password, that
    /// opens the same mailbox.
    AddUser {
        /// The mailbox address.
        address: String,
        /// The new login name.
        login: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Remove a multi-user account.
    RemoveUser {
        /// The mailbox address.
        address: String,
        /// The login name.
        login: String,
    },
    /// Start or finish a migration (2FA cannot be turned on meanwhile).
    Migration {
        /// The address.
        address: String,
        /// start or finish.
        step: MigrationStep,
    },
    /// The access history ("storico accessi"), newest first.
    History {
        /// The address.
        address: String,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Notices to the owner ("avvisi"), newest first.
    Notices {
        /// The address.
        address: String,
    },
    /// Every management action on the mailbox, oldest first.
    Events {
        /// The address.
        address: String,
    },
}

/// `sentinella 2fa …`
#[derive(Debug, Subcommand)]
#[allow(missing_docs)] // flattened option groups document themselves
pub enum TwoFactorCommand {
    /// Start turning 2FA on: shows an otpauth:// URI and QR code for the authenticator app.
    Enable {
        /// The address.
        address: String,
    },
    /// Complete `enable` or `replace-device` with the code the new device shows.
    Confirm {
        /// The address.
        address: String,
        /// The 6-digit code.
        code: String,
    },
    /// Turn 2FA off (needs a code from the associated device); revokes the app password.
    Disable {
        /// The address.
        address: String,
        /// The 6-digit code from the associated device.
        code: String,
        #[command(flatten)]
        confirm: Confirmation,
    },
    /// Associate a new device (lost or new phone); confirm with `2fa confirm`.
    ReplaceDevice {
        /// The address.
        address: String,
        /// A code from the current device.
        #[arg(
            long,
            required_unless_present = "operator_override",
            conflicts_with = "operator_override"
        )]
        code: Option<String>,
        /// The current device is lost: an operator authorises the replacement (recorded,
        /// and the owner is notified).
        #[arg(long)]
        operator_override: bool,
    },
}

/// `sentinella app-password …`
#[derive(Debug, Subcommand)]
#[allow(missing_docs)] // flattened option groups document themselves
pub enum AppPasswordCommand {
    /// "Attiva": a new app password, shown once.
    Generate {
        /// The address.
        address: String,
        /// A name for it, e.g. "Outlook in ufficio" (default: "default").
        #[arg(long)]
        name: Option<String>,
        /// Limit it to these protocols, comma-separated (default: every enabled one).
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        protocols: Vec<Protocol>,
    },
    /// "Posticipa scadenza": the same password for another period (from 14 days before
    /// expiry, or after it).
    Postpone {
        /// The address.
        address: String,
        /// Which password (needed when the mailbox has several).
        #[arg(long)]
        name: Option<String>,
    },
    /// Limits an app password to networks: a login from elsewhere is refused (no
    /// `--network`: anywhere again).
    Pin {
        /// The address.
        address: String,
        /// Which password (needed when the mailbox has several).
        #[arg(long)]
        name: Option<String>,
        /// A network it may be used from (CIDR, e.g. 192.0.2.0/24, or one address);
        /// repeat for several.
        #[arg(long = "network")]
        networks: Vec<String>,
    },
    /// "Genera nuova password": a new password with the same name and protocols; the old
    /// one stops working at once.
    Regenerate {
        /// The address.
        address: String,
        /// Which password (needed when the mailbox has several).
        #[arg(long)]
        name: Option<String>,
        /// Limit the new one to these protocols instead.
        #[arg(long, value_delimiter = ',', value_name = "LIST")]
        protocols: Vec<Protocol>,
    },
    /// "Disattiva": mail programs using the app password lose access at once.
    Deactivate {
        /// The address.
        address: String,
        /// Which password (needed when the mailbox has several).
        #[arg(long, conflicts_with = "all")]
        name: Option<String>,
        /// Every app password of the mailbox.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        confirm: Confirmation,
    },
    /// State, expiry and when postponing opens.
    Status {
        /// The address.
        address: String,
        /// Which password (needed when the mailbox has several).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every app password: name, protocols, dates, last use (never the password).
    List {
        /// The address.
        address: String,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration cannot be used (exit 3).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The action did not happen (exit 1 when refused, not found or in conflict; 4 when
    /// something failed).
    #[error("{0}")]
    Manage(#[from] ManageError),
    /// Something outside the management layer failed (exit 4).
    #[error("{0}")]
    Internal(String),
    /// An API token could not be made, listed or revoked.
    #[error("{0}")]
    Token(#[from] crate::api::tokens::TokenError),
    /// A store copy did not happen or did not check out.
    #[error("{0}")]
    Copy(#[from] crate::store::copy::CopyError),
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Manage(e.into())
    }
}

impl CliError {
    /// Machine-readable name for `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Config(_) => "bad_config",
            CliError::Manage(e) => e.code(),
            CliError::Internal(_) => "internal_error",
            CliError::Token(e) => match e {
                crate::api::tokens::TokenError::BadName(_) => "bad_token_name",
                crate::api::tokens::TokenError::Exists(_) => "token_exists",
                crate::api::tokens::TokenError::NoSuchToken(_) => "no_such_token",
                _ => "token_file",
            },
            CliError::Copy(e) => match e {
                crate::store::copy::CopyError::NotEmpty { .. } => "destination_not_empty",
                crate::store::copy::CopyError::Same => "same_store",
                crate::store::copy::CopyError::Mismatch { .. } => "copy_mismatch",
                crate::store::copy::CopyError::Store(_) => "store_error",
            },
        }
    }

    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 3,
            CliError::Manage(e) => match e.kind() {
                ErrorKind::Refused | ErrorKind::NotFound | ErrorKind::Conflict => 1,
                ErrorKind::Failure => 4,
            },
            CliError::Internal(_) => 4,
            CliError::Token(crate::api::tokens::TokenError::File { .. }) => 4,
            CliError::Token(_) => 1,
            CliError::Copy(
                crate::store::copy::CopyError::NotEmpty { .. }
                | crate::store::copy::CopyError::Same,
            ) => 1,
            CliError::Copy(_) => 4,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = commands::run(cli);
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(out) => match out.print(json, &mut stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the output: {e}");
                ExitCode::from(4)
            }
        },
        Err(e) => {
            if json {
                let doc = serde_json::json!({"error": e.code(), "message": e.to_string()});
                let _ = output::Output::new("", doc).print(true, &mut stdout);
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
