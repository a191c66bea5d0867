//! One handler per command. Each loads the configuration, opens the store, does its one
//! action (one transaction) and returns an [`Output`].
//!
//! Slow work — argon2id hashing — happens before the store's write transaction is
//! opened, so a CLI action never holds the database lock for tens of milliseconds.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::output::{Output, SECRET_MARK, json_opt_time, json_time};
use super::prompt::{confirm, new_password};
use super::{
    AppPasswordCommand, Cli, CliError, Command, MailboxCommand, MigrationStep, TwoFactorCommand,
};
use crate::auth::{PasswordHasher, Secret};
use crate::config::Config;
use crate::policy::mailbox::{Confirmed, ReplaceAuthority};
use crate::policy::names::{normalize_address, normalize_login};
use crate::policy::totp::DeviceSecret;
use crate::policy::{Mailbox, PolicySettings, app_password, fmt_time};
use crate::store::{Change, Store, StoreError};

/// What every command works with.
struct Ctx {
    config: Config,
    store: Store,
    now: Timestamp,
}

impl Ctx {
    fn open(cli: &Cli) -> Result<Ctx, CliError> {
        let config = Config::load(&cli.config)?;
        let store = Store::open(&config.store_path())?;
        // Policy time is whole seconds, as stored.
        let now = Timestamp::from_second(Timestamp::now().as_second())
            .map_err(|e| CliError::Internal(e.to_string()))?;
        Ok(Ctx { config, store, now })
    }

    fn settings(&self) -> PolicySettings {
        self.config.policy.settings()
    }

    fn hash(&self, secret: &Secret) -> Result<String, CliError> {
        PasswordHasher::new(&self.config.argon2)
            .and_then(|h| h.hash(secret))
            .map_err(|e| CliError::Internal(e.to_string()))
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<Output, CliError> {
    match &cli.command {
        Command::Serve => serve(&cli),
        Command::Mailbox(cmd) => mailbox(&mut Ctx::open(&cli)?, cmd),
        Command::TwoFactor(cmd) => two_factor(&mut Ctx::open(&cli)?, cmd),
        Command::AppPassword(cmd) => app_password_cmd(&mut Ctx::open(&cli)?, cmd),
    }
}

// ---- serve ----------------------------------------------------------------------------

fn serve(cli: &Cli) -> Result<Output, CliError> {
    let config = Config::load(&cli.config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(crate::proxy::run(config))
        .map_err(|e| CliError::Internal(format!("cannot serve: {e}")))?;
    // Sessions still open after the grace period end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(Output::new("stopped", json!({"stopped": true})))
}

// ---- mailbox ----------------------------------------------------------------------------

fn address(a: &str) -> Result<String, CliError> {
    Ok(normalize_address(a)?)
}

fn mailbox_json(m: &Mailbox, users: &[String], s: &PolicySettings, now: Timestamp) -> Value {
    json!({
        "address": m.address,
        "plan": m.plan.as_str(),
        "archive": m.plan.has_archive(),
        "contact": m.contact,
        "protocols": m.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "migration": m.migration,
        "version": m.version,
        "two_factor": two_factor_json(m),
        "app_password": app_password_json(m, s, now),
        "users": users,
    })
}

fn two_factor_json(m: &Mailbox) -> Value {
    json!({
        "enabled": m.two_factor_on(),
        "associated_at": json_opt_time(m.device.as_ref().map(|d| d.associated_at)),
        "pending": m.pending_device.as_ref().map(|p| json!({"purpose": p.purpose.as_str(), "since": json_time(p.since)})),
    })
}

fn app_password_state(m: &Mailbox, now: Timestamp) -> &'static str {
    match &m.app_password {
        None => "none",
        Some(ap) if ap.is_valid_at(now) => "active",
        Some(_) => "expired",
    }
}

fn app_password_json(m: &Mailbox, s: &PolicySettings, now: Timestamp) -> Value {
    let Some(ap) = &m.app_password else {
        return json!({"state": "none"});
    };
    let opens = ap.postpone_opens_at(s.postpone_window);
    json!({
        "state": app_password_state(m, now),
        "created_at": json_time(ap.created_at),
        "expires_at": json_time(ap.expires_at),
        "postponed": ap.postponed,
        "postpone_opens_at": json_time(opens),
        "postpone_allowed": now >= opens,
    })
}

fn app_password_text(m: &Mailbox, s: &PolicySettings, now: Timestamp) -> String {
    let Some(ap) = &m.app_password else {
        return if m.two_factor_on() {
            "none: mail programs cannot log in until one is generated".into()
        } else {
            "none (app passwords exist only while two-step verification is on)".into()
        };
    };
    let opens = ap.postpone_opens_at(s.postpone_window);
    let postpone = if now >= opens {
        "postponing is allowed now".to_owned()
    } else {
        format!("postponing opens {}", fmt_time(opens))
    };
    let state = if ap.is_valid_at(now) {
        format!("active, expires {}", fmt_time(ap.expires_at))
    } else {
        format!(
            "EXPIRED on {}: mail programs are refused",
            fmt_time(ap.expires_at)
        )
    };
    format!(
        "{state}\n  generated {}, postponed {} time(s); {postpone}",
        fmt_time(ap.created_at),
        ap.postponed
    )
}

fn mailbox_text(m: &Mailbox, users: &[String], s: &PolicySettings, now: Timestamp) -> String {
    let two_factor = match (&m.device, &m.pending_device) {
        (Some(d), None) => format!("on (device associated {})", fmt_time(d.associated_at)),
        (Some(d), Some(_)) => format!(
            "on (device associated {}; a replacement device is waiting for `2fa confirm`)",
            fmt_time(d.associated_at)
        ),
        (None, Some(_)) => "off (a device is waiting for `2fa confirm`)".into(),
        (None, None) => "off".into(),
    };
    let protocols = if m.protocols.is_empty() {
        "none (mail programs cannot connect)".to_owned()
    } else {
        m.protocols.to_string()
    };
    format!(
        "{}\n  plan: {}{}\n  contact: {}\n  protocols: {protocols}\n  migration: {}\n  two-step verification: {two_factor}\n  app password: {}\n  multi-user accounts: {}\n  version: {}",
        m.address,
        m.plan,
        if m.plan.has_archive() {
            " (includes the security archive)"
        } else {
            ""
        },
        m.contact.as_deref().unwrap_or("-"),
        if m.migration {
            "in progress (2FA cannot be turned on)"
        } else {
            "no"
        },
        app_password_text(m, s, now),
        if users.is_empty() {
            "-".to_owned()
        } else {
            users.join(", ")
        },
        m.version
    )
}

fn show(ctx: &Ctx, addr: &str) -> Result<Output, CliError> {
    let m = ctx.store.mailbox(addr)?;
    let users: Vec<String> = ctx
        .store
        .users(addr)?
        .into_iter()
        .map(|u| u.login)
        .collect();
    let s = ctx.settings();
    Ok(Output::new(
        mailbox_text(&m, &users, &s, ctx.now),
        mailbox_json(&m, &users, &s, ctx.now),
    ))
}

fn mailbox(ctx: &mut Ctx, cmd: &MailboxCommand) -> Result<Output, CliError> {
    let now = ctx.now;
    match cmd {
        MailboxCommand::Add {
            address: a,
            plan,
            contact,
            password,
        } => {
            let addr = address(a)?;
            let contact = contact
                .as_deref()
                .map(|c| {
                    normalize_address(c)
                        .map_err(|_| crate::policy::PolicyError::BadContact(c.to_owned()))
                })
                .transpose()?;
            if ctx.store.lookup_login(&addr)?.is_some() {
                return Err(StoreError::LoginTaken(addr).into());
            }
            let secret = new_password(password.password_stdin, "Main password")?;
            let hash = ctx.hash(&secret)?;
            drop(secret);
            ctx.store
                .create_mailbox(Mailbox::new(addr.clone(), *plan, contact, hash), now)?;
            let mut out = show(ctx, &addr)?;
            out.human = format!("Mailbox added.\n{}", out.human);
            Ok(out)
        }
        MailboxCommand::List => {
            let s = ctx.settings();
            let all = ctx.store.mailboxes()?;
            let mut text = String::new();
            let mut rows = Vec::new();
            for m in &all {
                let users: Vec<String> = ctx
                    .store
                    .users(&m.address)?
                    .into_iter()
                    .map(|u| u.login)
                    .collect();
                text.push_str(&format!(
                    "{:<40} {:<8} 2fa:{:<3} app-password:{:<7} protocols:{}\n",
                    m.address,
                    m.plan,
                    if m.two_factor_on() { "on" } else { "off" },
                    app_password_state(m, now),
                    m.protocols
                ));
                rows.push(mailbox_json(m, &users, &s, now));
            }
            if all.is_empty() {
                text = "no mailboxes".into();
            }
            Ok(Output::new(text, json!({"mailboxes": rows})))
        }
        MailboxCommand::Show { address: a } => show(ctx, &address(a)?),
        MailboxCommand::Remove {
            address: a,
            confirm: c,
        } => {
            let addr = address(a)?;
            ctx.store.mailbox(&addr)?;
            confirm(
                &format!(
                    "Removing {addr} deletes its main password, multi-user accounts, 2FA device and app password: \
                     no mail program will be able to log in. Its access history is kept."
                ),
                c.yes,
            )?;
            ctx.store.remove_mailbox(&addr, now)?;
            Ok(Output::new(
                format!("Mailbox {addr} removed."),
                json!({"address": addr, "removed": true}),
            ))
        }
        MailboxCommand::SetPassword {
            address: a,
            user,
            password,
        } => {
            let addr = address(a)?;
            let user = user.as_deref().map(normalize_login).transpose()?;
            ctx.store.mailbox(&addr)?;
            if let Some(login) = &user
                && !ctx.store.users(&addr)?.iter().any(|u| &u.login == login)
            {
                return Err(StoreError::NoLogin(format!(
                    "{login} (as a multi-user account of {addr})"
                ))
                .into());
            }
            let secret = new_password(password.password_stdin, "New main password")?;
            let hash = ctx.hash(&secret)?;
            drop(secret);
            let who = match &user {
                Some(login) => {
                    ctx.store.set_user_password(&addr, login, &hash, now)?;
                    login.clone()
                }
                None => {
                    let change = Change {
                        action: "mailbox.set-password",
                        detail: None,
                        notice: Some((
                            "password-changed",
                            "The main password of the mailbox was changed.".into(),
                        )),
                    };
                    ctx.store.update_mailbox(&addr, change, now, |m| {
                        m.password_hash = hash;
                        Ok(())
                    })?;
                    addr.clone()
                }
            };
            let note = if ctx.store.mailbox(&addr)?.two_factor_on() {
                " Two-step verification is on: mail programs still need the app password."
            } else {
                ""
            };
            Ok(Output::new(
                format!("Main password of {who} changed.{note}"),
                json!({"login": who, "changed": true}),
            ))
        }
        MailboxCommand::SetUpstreamSecret {
            address: a,
            password,
        } => {
            let addr = address(a)?;
            ctx.store.mailbox(&addr)?;
            let secret = new_password(password.password_stdin, "Upstream secret")?;
            let key = crate::store::sealed::SealKey::load_or_create(&ctx.config.key_path())
                .map_err(|e| CliError::Internal(e.to_string()))?;
            let sealed = key
                .seal(&addr, &secret)
                .map_err(|e| CliError::Internal(e.to_string()))?;
            drop(secret);
            ctx.store.set_upstream_secret(&addr, &sealed, now)?;
            Ok(Output::new(
                format!(
                    "Upstream secret of {addr} set (encrypted with {}).",
                    ctx.config.key_path().display()
                ),
                json!({"address": addr, "upstream_secret": true}),
            ))
        }
        MailboxCommand::SetPlan { address: a, plan } => {
            let addr = address(a)?;
            let plan = *plan;
            ctx.store.update_mailbox(
                &addr,
                Change {
                    action: "mailbox.set-plan",
                    detail: Some(plan.to_string()),
                    notice: None,
                },
                now,
                |m| {
                    m.plan = plan;
                    Ok(())
                },
            )?;
            show(ctx, &addr)
        }
        MailboxCommand::Protocols {
            address: a,
            enable,
            disable,
        } => {
            let addr = address(a)?;
            if !enable.is_empty() || !disable.is_empty() {
                if let Some(p) = enable.iter().find(|p| disable.contains(p)) {
                    return Err(CliError::refused(
                        "bad_protocol",
                        format!("{p} is both enabled and disabled"),
                    ));
                }
                let detail = format!(
                    "enable [{}] disable [{}]",
                    enable
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    disable
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                ctx.store.update_mailbox(
                    &addr,
                    Change {
                        action: "mailbox.protocols",
                        detail: Some(detail),
                        notice: None,
                    },
                    now,
                    |m| {
                        m.set_protocols(enable, disable);
                        Ok(())
                    },
                )?;
            }
            let m = ctx.store.mailbox(&addr)?;
            let text = if m.protocols.is_empty() {
                format!("{addr}: no protocol enabled: mail programs cannot connect")
            } else {
                format!("{addr}: enabled protocols: {}", m.protocols)
            };
            Ok(Output::new(
                text,
                json!({"address": addr, "protocols": m.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>()}),
            ))
        }
        MailboxCommand::AddUser {
            address: a,
            login,
            password,
        } => {
            let addr = address(a)?;
            let login = normalize_login(login)?;
            ctx.store.mailbox(&addr)?;
            if ctx.store.lookup_login(&login)?.is_some() {
                return Err(StoreError::LoginTaken(login).into());
            }
            let secret = new_password(
                password.password_stdin,
                "Main password of the multi-user account",
            )?;
            let hash = ctx.hash(&secret)?;
            drop(secret);
            ctx.store.add_user(&addr, &login, &hash, now)?;
            Ok(Output::new(
                format!(
                    "Multi-user account {login} added: it opens {addr}. With two-step verification on, it logs in \
                     to mail programs with the mailbox's app password."
                ),
                json!({"address": addr, "login": login}),
            ))
        }
        MailboxCommand::RemoveUser { address: a, login } => {
            let addr = address(a)?;
            let login = normalize_login(login)?;
            ctx.store.remove_user(&addr, &login, now)?;
            Ok(Output::new(
                format!("Multi-user account {login} removed."),
                json!({"address": addr, "login": login, "removed": true}),
            ))
        }
        MailboxCommand::Migration { address: a, step } => {
            let addr = address(a)?;
            let (action, migrating) = match step {
                MigrationStep::Start => ("mailbox.migration-start", true),
                MigrationStep::Finish => ("mailbox.migration-finish", false),
            };
            ctx.store
                .update_mailbox(&addr, Change::action(action), now, |m| {
                    if migrating {
                        m.start_migration()
                    } else {
                        m.finish_migration()
                    }
                })?;
            let text = if migrating {
                format!(
                    "Migration of {addr} started: two-step verification cannot be turned on until it is finished."
                )
            } else {
                format!(
                    "Migration of {addr} finished: two-step verification can be turned on again."
                )
            };
            Ok(Output::new(
                text,
                json!({"address": addr, "migration": migrating}),
            ))
        }
        MailboxCommand::History { address: a, limit } => {
            let addr = address(a)?;
            let rows = ctx.store.access_history(&addr, *limit)?;
            let mut text = String::new();
            let mut items = Vec::new();
            for r in &rows {
                text.push_str(&format!(
                    "{} {:<17} {:<5} {:<12} {:<24} login={} credential={}{}\n",
                    fmt_time(r.at),
                    r.result,
                    r.protocol,
                    r.listener,
                    r.client,
                    r.login,
                    r.credential,
                    r.reason
                        .as_deref()
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default()
                ));
                items.push(json!({
                    "at": json_time(r.at), "listener": r.listener, "protocol": r.protocol, "client": r.client,
                    "login": r.login, "credential": r.credential, "result": r.result, "reason": r.reason,
                }));
            }
            if rows.is_empty() {
                text = format!("no login attempts recorded for {addr}");
            }
            Ok(Output::new(
                text,
                json!({"address": addr, "history": items}),
            ))
        }
        MailboxCommand::Notices { address: a } => {
            let addr = address(a)?;
            let rows = ctx.store.notices(&addr)?;
            let text = if rows.is_empty() {
                format!("no notices for {addr}")
            } else {
                rows.iter()
                    .map(|n| format!("{} [{}] {}\n", fmt_time(n.at), n.kind, n.message))
                    .collect()
            };
            let items: Vec<Value> = rows
                .iter()
                .map(|n| json!({"at": json_time(n.at), "kind": n.kind, "message": n.message}))
                .collect();
            Ok(Output::new(
                text,
                json!({"address": addr, "notices": items}),
            ))
        }
        MailboxCommand::Events { address: a } => {
            let addr = address(a)?;
            let rows = ctx.store.events(&addr)?;
            let text = if rows.is_empty() {
                format!("no events for {addr}")
            } else {
                rows.iter()
                    .map(|e| {
                        format!(
                            "{} {}{}\n",
                            fmt_time(e.at),
                            e.action,
                            e.detail
                                .as_deref()
                                .map(|d| format!(" ({d})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect()
            };
            let items: Vec<Value> = rows
                .iter()
                .map(|e| json!({"at": json_time(e.at), "action": e.action, "detail": e.detail}))
                .collect();
            Ok(Output::new(text, json!({"address": addr, "events": items})))
        }
    }
}

// ---- 2fa ----------------------------------------------------------------------------------

/// The otpauth URI and a terminal QR code for a new device, shown once.
fn device_output(
    ctx: &Ctx,
    addr: &str,
    secret: &DeviceSecret,
    purpose: &str,
    intro: &str,
) -> Result<Output, CliError> {
    let uri = Secret::new(secret.otpauth_uri(addr, &ctx.config.policy.totp_issuer)?);
    let qr = qrcode::QrCode::new(uri.expose().as_bytes())
        .map_err(|e| CliError::Internal(format!("QR code: {e}")))?
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    let shown = Secret::new(format!("{qr}\n\n  {}", uri.expose()));
    drop(qr);
    Ok(Output {
        human: format!(
            "{intro}\nScan this QR code with the authenticator app (or enter the URI below), then run\n  \
             sentinella 2fa confirm {addr} CODE\nwith the 6-digit code the app shows.\n\n{SECRET_MARK}\n"
        ),
        json: json!({"address": addr, "purpose": purpose, "confirm_with": format!("sentinella 2fa confirm {addr} CODE")}),
        human_secret: Some(shown),
        json_secret: Some(("otpauth_uri", uri)),
    })
}

fn two_factor(ctx: &mut Ctx, cmd: &TwoFactorCommand) -> Result<Output, CliError> {
    let now = ctx.now;
    match cmd {
        TwoFactorCommand::Enable { address: a } => {
            let addr = address(a)?;
            let secret = DeviceSecret::generate()?;
            let pending = secret.clone();
            ctx.store
                .update_mailbox(&addr, Change::action("2fa.enable"), now, |m| {
                    m.begin_enable_2fa(pending, now)
                })?;
            device_output(
                ctx,
                &addr,
                &secret,
                "enable",
                &format!("Turning on two-step verification for {addr}."),
            )
        }
        TwoFactorCommand::Confirm { address: a, code } => {
            let addr = address(a)?;
            // Which notice to write depends on the outcome; look at the pending purpose first.
            let replacing = ctx.store.mailbox(&addr)?.two_factor_on();
            let (action, notice) = if replacing {
                (
                    "2fa.device-replaced",
                    "A new device was associated for two-step verification.",
                )
            } else {
                (
                    "2fa.enabled",
                    "Two-step verification was turned on: mail programs now need an app password.",
                )
            };
            let change = Change {
                action,
                detail: None,
                notice: Some(("two-factor", notice.into())),
            };
            let outcome = ctx
                .store
                .update_mailbox(&addr, change, now, |m| m.confirm_device(code, now))?;
            let (text, result) = match outcome {
                Confirmed::Enabled => (
                    format!(
                        "Two-step verification is on for {addr}.\nThe main password no longer works in mail programs: \
                         generate an app password with `sentinella app-password generate {addr}`."
                    ),
                    "enabled",
                ),
                Confirmed::Replaced => (
                    format!(
                        "The new device is now associated with {addr}; the old one no longer works."
                    ),
                    "replaced",
                ),
            };
            Ok(Output::new(
                text,
                json!({"address": addr, "two_factor": "on", "result": result}),
            ))
        }
        TwoFactorCommand::Disable {
            address: a,
            code,
            confirm: c,
        } => {
            let addr = address(a)?;
            let m = ctx.store.mailbox(&addr)?;
            if !m.two_factor_on() {
                return Err(crate::policy::PolicyError::TwoFactorOff("nothing to turn off").into());
            }
            confirm(
                "Turning off two-step verification lowers the security of the mailbox (\"diminuirai il livello di \
                 sicurezza\"). Its app password is revoked and the main password works in mail programs again.",
                c.yes,
            )?;
            let change = Change {
                action: "2fa.disable",
                detail: None,
                notice: Some((
                    "two-factor",
                    "Two-step verification was turned off; the app password was revoked.".into(),
                )),
            };
            ctx.store
                .update_mailbox(&addr, change, now, |m| m.disable_2fa(code, now))?;
            Ok(Output::new(
                format!(
                    "Two-step verification is off for {addr}. The app password was revoked; the main password works \
                     in mail programs again."
                ),
                json!({"address": addr, "two_factor": "off", "app_password": "revoked"}),
            ))
        }
        TwoFactorCommand::ReplaceDevice {
            address: a,
            code,
            operator_override,
        } => {
            let addr = address(a)?;
            let secret = DeviceSecret::generate()?;
            let pending = secret.clone();
            let (authority, detail, notice) = match code {
                Some(code) if !operator_override => (
                    ReplaceAuthority::Code(code),
                    "authorised with a code from the current device".to_owned(),
                    "Replacement of the two-step verification device started, authorised from the current device.",
                ),
                _ => (
                    ReplaceAuthority::OperatorOverride,
                    format!(
                        "OPERATOR OVERRIDE by {} (no code from the current device)",
                        operator_name()
                    ),
                    "An operator started replacing the two-step verification device without a code from the current \
                     device. If you did not ask for this, contact support.",
                ),
            };
            let change = Change {
                action: "2fa.replace-device",
                detail: Some(detail),
                notice: Some(("two-factor", notice.into())),
            };
            ctx.store.update_mailbox(&addr, change, now, |m| {
                m.begin_replace_device(authority, pending, now)
            })?;
            device_output(
                ctx,
                &addr,
                &secret,
                "replace",
                &format!(
                    "Replacing the device of {addr}. The current device keeps working until the new one is confirmed."
                ),
            )
        }
    }
}

/// Who is running the command, for the record of an operator override.
fn operator_name() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown operator".into())
}

// ---- app-password -------------------------------------------------------------------------

fn new_app_password_output(
    addr: &str,
    password: Secret,
    created: Timestamp,
    expires: Timestamp,
    m: &Mailbox,
) -> Output {
    let json_copy = Secret::new(password.expose().to_owned());
    Output {
        human: format!(
            "New app password for {addr} (shown only now: it cannot be retrieved later):\n\n    {SECRET_MARK}\n\n\
             Valid until {}. Use it in mail programs ({}) for the mailbox{}{}.\n\
             Dashes and spaces are optional when typing it.",
            fmt_time(expires),
            m.protocols,
            ", its multi-user accounts",
            if m.plan.has_archive() {
                " and the security archive"
            } else {
                ""
            },
        ),
        json: json!({"address": addr, "created_at": json_time(created), "expires_at": json_time(expires)}),
        human_secret: Some(password),
        json_secret: Some(("password", json_copy)),
    }
}

fn app_password_cmd(ctx: &mut Ctx, cmd: &AppPasswordCommand) -> Result<Output, CliError> {
    let now = ctx.now;
    let s = ctx.settings();
    match cmd {
        AppPasswordCommand::Generate { address: a }
        | AppPasswordCommand::Regenerate { address: a } => {
            let addr = address(a)?;
            let regenerate = matches!(cmd, AppPasswordCommand::Regenerate { .. });
            // Check the rules before spending a hash; the transaction checks them again.
            let mut probe = ctx.store.mailbox(&addr)?;
            if regenerate {
                probe.regenerate_app_password(String::new(), now, &s)?;
            } else {
                probe.generate_app_password(String::new(), now, &s)?;
            }
            let password = app_password::generate()?;
            let canonical = app_password::canonical(password.expose()).ok_or_else(|| {
                CliError::Internal("generated app password is not canonical".into())
            })?;
            let hash = ctx.hash(&canonical)?;
            drop(canonical);
            let (action, notice) = if regenerate {
                (
                    "app-password.regenerate",
                    "A new app password was generated; the previous one no longer works.",
                )
            } else {
                (
                    "app-password.generate",
                    "An app password for mail programs was generated.",
                )
            };
            let change = Change {
                action,
                detail: None,
                notice: Some(("app-password", notice.into())),
            };
            let (created, expires) = ctx.store.update_mailbox(&addr, change, now, |m| {
                let ap = if regenerate {
                    m.regenerate_app_password(hash, now, &s)?
                } else {
                    m.generate_app_password(hash, now, &s)?
                };
                Ok((ap.created_at, ap.expires_at))
            })?;
            let m = ctx.store.mailbox(&addr)?;
            Ok(new_app_password_output(
                &addr, password, created, expires, &m,
            ))
        }
        AppPasswordCommand::Postpone { address: a } => {
            let addr = address(a)?;
            let change = Change {
                action: "app-password.postpone",
                detail: None,
                notice: None,
            };
            let (expires, postponed) = ctx.store.update_mailbox(&addr, change, now, |m| {
                let ap = m.postpone_app_password(now, &s)?;
                Ok((ap.expires_at, ap.postponed))
            })?;
            Ok(Output::new(
                format!(
                    "Postponed: the same app password of {addr} now expires {}.",
                    fmt_time(expires)
                ),
                json!({"address": addr, "expires_at": json_time(expires), "postponed": postponed}),
            ))
        }
        AppPasswordCommand::Deactivate {
            address: a,
            confirm: c,
        } => {
            let addr = address(a)?;
            if ctx.store.mailbox(&addr)?.app_password.is_none() {
                return Err(crate::policy::PolicyError::NoAppPassword.into());
            }
            confirm(
                "Deactivating the app password ends access for every mail program that uses it, at once. The main \
                 password still does not work in mail programs while two-step verification is on.",
                c.yes,
            )?;
            let change = Change {
                action: "app-password.deactivate",
                detail: None,
                notice: Some(("app-password", "The app password was deactivated.".into())),
            };
            ctx.store
                .update_mailbox(&addr, change, now, |m| m.deactivate_app_password())?;
            Ok(Output::new(
                format!(
                    "App password of {addr} deactivated: mail programs using it no longer have access. The main \
                     password still does not work in mail programs while two-step verification is on."
                ),
                json!({"address": addr, "app_password": "none"}),
            ))
        }
        AppPasswordCommand::Status { address: a } => {
            let addr = address(a)?;
            let m = ctx.store.mailbox(&addr)?;
            let mut v = app_password_json(&m, &s, now);
            v["address"] = json!(addr);
            v["two_factor"] = json!(m.two_factor_on());
            v["protocols"] = json!(m.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>());
            let mut text = format!("{addr}: app password {}", app_password_text(&m, &s, now));
            if m.protocols.is_empty() {
                text.push_str("\n  no protocol is enabled: mail programs cannot connect");
            }
            Ok(Output::new(text, v))
        }
    }
}
