//! One handler per command: parse the arguments into a management action, run it, and
//! render its outcome ([`super::render`]). Nothing here decides, hashes or writes the
//! store: that is [`crate::manage`].

use jiff::Timestamp;

use super::output::Output;
use super::prompt::Terminal;
use super::render;
use super::{
    ApiTokenCommand, AppPasswordCommand, Cli, CliError, Command, ImportFileFormat, MailboxCommand,
    MigrationStep, NoticesCommand, StoreCommand, TwoFactorCommand,
};
use crate::clock::now;
use crate::config::Config;
use crate::manage::app_password::Wanted;
use crate::manage::{Actor, Manager};

/// What every management command works with.
struct Ctx {
    manager: Manager,
    actor: Actor,
    now: Timestamp,
    /// The provider's time zone, for the dates shown.
    zone: jiff::tz::TimeZone,
}

impl Ctx {
    fn open(cli: &Cli) -> Result<Ctx, CliError> {
        let config = Config::load(&cli.config)?;
        let store = config.store_location().open_manage()?;
        let manager = Manager::new(store, config.manage_settings())?;
        let zone = config.policy.settings().zone;
        Ok(Ctx {
            manager,
            actor: Actor::Operator(operator_name()),
            now: now(),
            zone,
        })
    }
}

/// Who is running the command, for the events: the user `sudo` was run by, else the
/// login name, else the name of the process's user id in `/etc/passwd`.
fn operator_name() -> String {
    if let Some(name) = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
    {
        return name;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        });
    let Some(uid) = uid else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or(format!("uid {uid}"))
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<Output, CliError> {
    match &cli.command {
        Command::Serve => serve(&cli),
        Command::Mailbox(cmd) => mailbox(&mut Ctx::open(&cli)?, cmd),
        Command::TwoFactor(cmd) => two_factor(&mut Ctx::open(&cli)?, cmd),
        Command::AppPassword(cmd) => app_password(&mut Ctx::open(&cli)?, cmd),
        Command::ApiToken(cmd) => api_token(&cli, cmd),
        Command::Store(StoreCommand::Copy {
            from,
            to,
            password_file,
            ca_file,
        }) => {
            use crate::store::StoreLocation;
            let from = StoreLocation::parse(from, password_file.clone(), ca_file.clone())?;
            let to = StoreLocation::parse(to, password_file.clone(), ca_file.clone())?;
            let copied = crate::store::copy::copy(&from, &to)?;
            Ok(Output::of(
                render::store_copied(&copied),
                &serde_json::json!({ "tables": copied }),
            ))
        }
        Command::Notices(NoticesCommand::Run) => {
            let mut ctx = Ctx::open(&cli)?;
            let sent = ctx.manager.send_reminders(ctx.now)?;
            Ok(Output::of(
                format!(
                    "{} expiry reminder(s) written, for {} mailbox(es).",
                    sent.written, sent.mailboxes
                ),
                &sent,
            ))
        }
    }
}

fn api_token(cli: &Cli, cmd: &ApiTokenCommand) -> Result<Output, CliError> {
    use crate::api::tokens;
    let config = Config::load(&cli.config)?;
    let file = config.resolve(&config.api.tokens_file);
    Ok(match cmd {
        ApiTokenCommand::Create { name } => {
            let token = tokens::create(&file, name)?;
            let mut out = Output::new(
                format!(
                    "API token {name:?} created. It is shown once, here; keep it safe:\n  {}\n\
                     Use it as \"Authorization: Bearer TOKEN\".",
                    super::output::SECRET_MARK
                ),
                serde_json::json!({"name": name, "file": file}),
            );
            out.human_secret = Some(token.clone());
            out.json_secret = Some(("token", token));
            out
        }
        ApiTokenCommand::List => {
            let names: Vec<String> = tokens::read(&file)?.into_iter().map(|(n, _)| n).collect();
            let text = if names.is_empty() {
                "No API tokens.".to_owned()
            } else {
                names.join("\n")
            };
            Output::new(text, serde_json::json!({"tokens": names}))
        }
        ApiTokenCommand::Revoke { name } => {
            tokens::revoke(&file, name)?;
            Output::new(
                format!("API token {name:?} revoked."),
                serde_json::json!({"name": name, "revoked": true}),
            )
        }
    })
}

fn serve(cli: &Cli) -> Result<Output, CliError> {
    let config = Config::load(&cli.config)?;
    let wanted = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // rustls warns for every client that names the server by IP address in its SNI (many
    // do, connecting to an address): a line per connection with nothing wrong. Quiet
    // unless the operator asks for rustls's logs by name.
    if !wanted.contains("rustls")
        && let Ok(quiet) = "rustls::msgs::handshake=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        crate::config::LogFormat::Text => {
            use std::io::IsTerminal;
            // Colour codes only for a person at a terminal, never into a file or journal.
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(crate::serve::run(config))
        .map_err(|e| CliError::Internal(format!("cannot serve: {e}")))?;
    // Sessions still open after the grace period end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(Output::new("stopped", serde_json::json!({"stopped": true})))
}

fn mailbox(ctx: &mut Ctx, cmd: &MailboxCommand) -> Result<Output, CliError> {
    let (m, actor, now) = (&mut ctx.manager, &ctx.actor, ctx.now);
    let out = match cmd {
        MailboxCommand::Add {
            address,
            plan,
            contact,
            password,
        } => {
            let mut ask = Terminal {
                password_stdin: password.password_stdin,
                yes: false,
            };
            let v = m.add_mailbox(actor, address, *plan, contact.as_deref(), &mut ask, now)?;
            Output::of(
                format!("Mailbox added.\n{}", render::mailbox(&v, &ctx.zone)),
                &v,
            )
        }
        MailboxCommand::List => {
            let list = m.list_mailboxes(now)?;
            Output::of(render::mailbox_list(&list), &list)
        }
        MailboxCommand::Show { address } => {
            let v = m.show_mailbox(address, now)?;
            Output::of(render::mailbox(&v, &ctx.zone), &v)
        }
        MailboxCommand::Remove { address, confirm } => {
            let mut ask = Terminal {
                password_stdin: false,
                yes: confirm.yes,
            };
            let r = m.remove_mailbox(actor, address, &mut ask, now)?;
            Output::of(format!("Mailbox {} removed.", r.address), &r)
        }
        MailboxCommand::SetPassword {
            address,
            user,
            password,
        } => {
            let mut ask = Terminal {
                password_stdin: password.password_stdin,
                yes: false,
            };
            let r = m.set_password(actor, address, user.as_deref(), &mut ask, now)?;
            Output::of(render::password_changed(&r), &r)
        }
        MailboxCommand::SetUpstreamSecret { address, password } => {
            let mut ask = Terminal {
                password_stdin: password.password_stdin,
                yes: false,
            };
            let r = m.set_upstream_secret(actor, address, &mut ask, now)?;
            Output::of(
                format!(
                    "Upstream secret of {} set (encrypted with {}).",
                    r.address,
                    r.key_file.display()
                ),
                &r,
            )
        }
        MailboxCommand::Import { file, format, plan } => {
            use crate::manage::import::{self, ImportFormat};
            let text = std::fs::read_to_string(file).map_err(|e| {
                crate::manage::ManageError::Import(vec![format!("{}: {e}", file.display())])
            })?;
            let format = match format {
                ImportFileFormat::Passwd => ImportFormat::Passwd,
                ImportFileFormat::Csv => ImportFormat::Csv,
            };
            let lines = import::parse(&text, format)?;
            let r = m.import(actor, &lines, *plan, now)?;
            Output::of(
                format!(
                    "Imported {}: {} added, {} updated, {} unchanged.",
                    file.display(),
                    r.added,
                    r.updated,
                    r.unchanged
                ),
                &r,
            )
        }
        MailboxCommand::SetPlan { address, plan } => {
            let v = m.set_plan(actor, address, *plan, now)?;
            Output::of(render::mailbox(&v, &ctx.zone), &v)
        }
        MailboxCommand::SetContact { address, email } => {
            let v = m.set_contact(actor, address, email, now)?;
            Output::of(render::mailbox(&v, &ctx.zone), &v)
        }
        MailboxCommand::Protocols {
            address,
            enable,
            disable,
        } => {
            let p = m.protocols(actor, address, enable, disable, now)?;
            Output::of(render::protocols(&p), &p)
        }
        MailboxCommand::AddUser {
            address,
            login,
            password,
        } => {
            let mut ask = Terminal {
                password_stdin: password.password_stdin,
                yes: false,
            };
            let u = m.add_user(actor, address, login, &mut ask, now)?;
            Output::of(
                format!(
                    "Multi-user account {} added: it opens {}. With two-step verification on, it logs in \
                     to mail programs with the mailbox's app password.",
                    u.login, u.address
                ),
                &u,
            )
        }
        MailboxCommand::RemoveUser { address, login } => {
            let u = m.remove_user(actor, address, login, now)?;
            Output::of(format!("Multi-user account {} removed.", u.login), &u)
        }
        MailboxCommand::Migration { address, step } => {
            let start = matches!(step, MigrationStep::Start);
            let r = m.migration(actor, address, start, now)?;
            Output::of(render::migration(&r), &r)
        }
        MailboxCommand::History { address, limit } => {
            let h = m.history(address, *limit)?;
            Output::of(render::history(&h, &ctx.zone), &h)
        }
        MailboxCommand::Notices { address } => {
            let n = m.notices(address)?;
            Output::of(render::notices(&n, &ctx.zone), &n)
        }
        MailboxCommand::Events { address } => {
            let e = m.events(address)?;
            Output::of(render::events(&e, &ctx.zone), &e)
        }
    };
    Ok(out)
}

fn two_factor(ctx: &mut Ctx, cmd: &TwoFactorCommand) -> Result<Output, CliError> {
    let (m, actor, now) = (&mut ctx.manager, &ctx.actor, ctx.now);
    let out = match cmd {
        TwoFactorCommand::Enable { address } => {
            let d = m.enable_2fa(actor, address, now)?;
            render::new_device(&d)?
        }
        TwoFactorCommand::Confirm { address, code } => {
            let c = m.confirm_device(actor, address, code, now)?;
            Output::of(render::device_confirmed(&c), &c)
        }
        TwoFactorCommand::Disable {
            address,
            code,
            confirm,
        } => {
            let mut ask = Terminal {
                password_stdin: false,
                yes: confirm.yes,
            };
            let d = m.disable_2fa(actor, address, code.as_str(), &mut ask, now)?;
            Output::of(
                format!(
                    "Two-step verification is off for {}. The app password was revoked; the main password works \
                     in mail programs again.",
                    d.address
                ),
                &d,
            )
        }
        TwoFactorCommand::ReplaceDevice {
            address,
            code,
            operator_override,
        } => {
            // clap makes --code and --operator-override exclusive, and one of them required.
            let code = code.as_deref().filter(|_| !operator_override);
            let d = m.replace_device(actor, address, code.map(Into::into), now)?;
            render::new_device(&d)?
        }
    };
    Ok(out)
}

/// A scope from `--protocols` (none given: the default).
fn scope(protocols: &[crate::policy::Protocol]) -> Option<crate::policy::ProtocolSet> {
    (!protocols.is_empty()).then(|| {
        let mut set = crate::policy::ProtocolSet::NONE;
        protocols.iter().for_each(|p| set.insert(*p));
        set
    })
}

fn app_password(ctx: &mut Ctx, cmd: &AppPasswordCommand) -> Result<Output, CliError> {
    let (m, actor, now) = (&mut ctx.manager, &ctx.actor, ctx.now);
    let out = match cmd {
        AppPasswordCommand::Generate {
            address,
            name,
            protocols,
        }
        | AppPasswordCommand::Regenerate {
            address,
            name,
            protocols,
        } => {
            let regenerate = matches!(cmd, AppPasswordCommand::Regenerate { .. });
            let wanted = Wanted {
                name: name.as_deref(),
                scope: scope(protocols),
            };
            let new = m.generate_app_password(actor, address, wanted, regenerate, now)?;
            render::new_app_password(new, &ctx.zone)
        }
        AppPasswordCommand::Pin {
            address,
            name,
            networks,
        } => {
            let networks = crate::net::Network::list(&networks.join(" ")).map_err(|e| {
                crate::manage::ManageError::Refused(crate::policy::PolicyError::BadNetwork(e))
            })?;
            let p = m.pin_app_password(actor, address, name.as_deref(), networks, now)?;
            Output::of(render::pinned(&p), &p)
        }
        AppPasswordCommand::Postpone { address, name } => {
            let p = m.postpone_app_password(actor, address, name.as_deref(), now)?;
            Output::of(render::postponed(&p, &ctx.zone), &p)
        }
        AppPasswordCommand::Deactivate {
            address,
            name,
            all,
            confirm,
        } => {
            let mut ask = Terminal {
                password_stdin: false,
                yes: confirm.yes,
            };
            let d =
                m.deactivate_app_password(actor, address, name.as_deref(), *all, &mut ask, now)?;
            Output::of(render::deactivated(&d), &d)
        }
        AppPasswordCommand::Status { address, name } => {
            let s = m.app_password_status(address, name.as_deref(), now)?;
            Output::of(render::app_password_status(&s, &ctx.zone), &s)
        }
        AppPasswordCommand::List { address } => {
            let l = m.list_app_passwords(address, now)?;
            Output::of(render::app_password_list(&l, &ctx.zone), &l)
        }
    };
    Ok(out)
}
