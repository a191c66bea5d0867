//! The human text of each outcome. The JSON form is the outcome itself, serialised.
//! Only here do command names appear: the next step a person at a shell can type.

use super::CliError;
use super::output::{Output, SECRET_MARK};
use crate::manage::outcome::{
    AppPasswordList, AppPasswordState, AppPasswordStatus, AppPasswordView, Deactivated,
    DeviceConfirmed, DeviceResult, Events, History, MailboxList, MailboxView, Migration,
    NewAppPassword, NewDevice, Notices, PasswordChanged, Postponed, Protocols,
};
use jiff::tz::TimeZone;

use crate::policy::fmt_time;
use crate::policy::mailbox::DevicePurpose;
use crate::policy::usage::{Place, PlaceKind};
use crate::secret::Secret;

fn app_password_text(ap: &AppPasswordView, two_factor: bool, z: &TimeZone) -> String {
    let Some(d) = &ap.details else {
        return if two_factor {
            "none: mail programs cannot log in until one is generated".into()
        } else {
            "none (app passwords exist only while two-step verification is on)".into()
        };
    };
    let postpone = if d.postpone_allowed {
        "postponing is allowed now".to_owned()
    } else {
        format!("postponing opens {}", fmt_time(d.postpone_opens_at, z))
    };
    let state = match ap.state {
        AppPasswordState::Active => format!("active, expires {}", fmt_time(d.expires_at, z)),
        _ => format!(
            "EXPIRED on {}: mail programs are refused",
            fmt_time(d.expires_at, z)
        ),
    };
    let scope = match (d.scope.is_empty(), d.limited) {
        (true, _) => "no protocol (it works nowhere)".to_owned(),
        (false, true) => format!("only {}", d.scope),
        (false, false) => d.scope.to_string(),
    };
    let last = match &d.last_used {
        Some(u) => format!(
            "last used {} from {} ({}, {}{})",
            fmt_time(u.at, z),
            u.client,
            u.protocol,
            u.listener,
            u.software
                .as_ref()
                .map_or(String::new(), |s| format!(", program \"{s}\""))
        ),
        None => "never used".to_owned(),
    };
    let pinned = if d.networks.is_empty() {
        String::new()
    } else {
        format!("\n  only from: {}", d.networks.join(", "))
    };
    format!(
        "\"{}\" {state}\n  generated {}, postponed {} time(s); {postpone}\n  protocols: {scope}; {last}{pinned}{}",
        d.name,
        fmt_time(d.created_at, z),
        d.postponed,
        places_text(&d.used_from, z)
    )
}

/// Where a password was used from, one line a place; nothing when nowhere yet.
fn places_text(places: &[Place], z: &TimeZone) -> String {
    let mut text = String::new();
    for p in places {
        let what = match p.kind {
            PlaceKind::Network => format!("network {}", p.value),
            PlaceKind::Software => format!("program \"{}\"", p.value),
        };
        text.push_str(&format!(
            "\n  used from {what}: {} login(s), first {}, last {}",
            p.uses,
            fmt_time(p.first_seen, z),
            fmt_time(p.last_seen, z)
        ));
    }
    text
}

fn app_passwords_text(v: &MailboxView, z: &TimeZone) -> String {
    match v.app_passwords.as_slice() {
        [] | [_] => format!(
            "app password: {}",
            app_password_text(&v.app_password, v.two_factor.enabled, z)
        ),
        all => {
            let mut text = format!("app passwords ({}):", all.len());
            for ap in all {
                text.push_str("\n  - ");
                text.push_str(&app_password_text(ap, true, z).replace("\n  ", "\n      "));
            }
            text
        }
    }
}

/// The associated device's kind, for the operator.
fn device_kind(kind: Option<&str>) -> &'static str {
    match kind {
        Some("passkey") => "passkey",
        _ => "authenticator app",
    }
}

/// `mailbox show` and every command that shows the mailbox after changing it.
pub(crate) fn mailbox(v: &MailboxView, z: &TimeZone) -> String {
    let tf = &v.two_factor;
    let two_factor = match (tf.associated_at, &tf.pending) {
        (Some(at), None) => format!(
            "on ({} associated {}; {} recovery codes left)",
            device_kind(tf.device_kind),
            fmt_time(at, z),
            tf.recovery_codes_left
        ),
        (Some(at), Some(_)) => format!(
            "on ({} associated {}; {} recovery codes left; a replacement device is waiting for `2fa confirm`)",
            device_kind(tf.device_kind),
            fmt_time(at, z),
            tf.recovery_codes_left
        ),
        (None, Some(_)) => "off (a device is waiting for `2fa confirm`)".into(),
        (None, None) => "off".into(),
    };
    let protocols = if v.protocols.is_empty() {
        "none (mail programs cannot connect)".to_owned()
    } else {
        v.protocols.to_string()
    };
    format!(
        "{}\n  plan: {}{}\n  contact: {}\n  protocols: {protocols}\n  migration: {}\n  two-step verification: {two_factor}\n  {}\n  multi-user accounts: {}\n  version: {}",
        v.address,
        v.plan,
        if v.archive {
            " (includes the security archive)"
        } else {
            ""
        },
        v.contact.as_deref().unwrap_or("-"),
        if v.migration {
            "in progress (2FA cannot be turned on)"
        } else {
            "no"
        },
        app_passwords_text(v, z)
            + &places_text(&v.main_password_used_from, z)
                .replace("used from", "main password used from"),
        if v.users.is_empty() {
            "-".to_owned()
        } else {
            v.users.join(", ")
        },
        v.version
    )
}

/// `mailbox list`: one line a mailbox.
pub(crate) fn mailbox_list(list: &MailboxList) -> String {
    if list.mailboxes.is_empty() {
        return "no mailboxes".into();
    }
    list.mailboxes
        .iter()
        .map(|m| {
            format!(
                "{:<40} {:<8} 2fa:{:<3} app-password:{:<7} protocols:{}\n",
                m.address,
                m.plan,
                if m.two_factor.enabled { "on" } else { "off" },
                m.app_password.state,
                m.protocols
            )
        })
        .collect()
}

pub(crate) fn password_changed(r: &PasswordChanged) -> String {
    let note = if r.two_factor {
        " Two-step verification is on: mail programs still need the app password."
    } else {
        ""
    };
    format!("Main password of {} changed.{note}", r.login)
}

pub(crate) fn protocols(p: &Protocols) -> String {
    let mut text = if p.protocols.is_empty() {
        format!(
            "{}: no protocol enabled: mail programs cannot connect",
            p.address
        )
    } else {
        format!("{}: enabled protocols: {}", p.address, p.protocols)
    };
    for n in &p.narrowed {
        if n.scope.is_empty() {
            text.push_str(&format!(
                "\n  app password \"{}\" no longer works: none of its protocols is enabled",
                n.name
            ));
        } else {
            text.push_str(&format!(
                "\n  app password \"{}\" now works only with {}",
                n.name, n.scope
            ));
        }
    }
    text
}

pub(crate) fn migration(r: &Migration) -> String {
    if r.migration {
        format!(
            "Migration of {} started: two-step verification cannot be turned on until it is finished.",
            r.address
        )
    } else {
        format!(
            "Migration of {} finished: two-step verification can be turned on again.",
            r.address
        )
    }
}

pub(crate) fn history(h: &History, z: &TimeZone) -> String {
    if h.history.is_empty() {
        return format!("no login attempts recorded for {}", h.address);
    }
    h.history
        .iter()
        .map(|r| {
            format!(
                "{} {:<17} {:<5} {:<12} {:<24} login={} credential={}{}{}\n",
                fmt_time(r.at, z),
                r.result.as_str(),
                r.protocol.as_str(),
                r.listener,
                r.client,
                r.login,
                r.credential,
                r.app_password
                    .as_ref()
                    .map(|a| format!(" app-password={:?}", a.name))
                    .unwrap_or_default(),
                r.reason
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

pub(crate) fn notices(n: &Notices, z: &TimeZone) -> String {
    if n.notices.is_empty() {
        return format!("no notices for {}", n.address);
    }
    n.notices
        .iter()
        .map(|n| {
            let mut line = format!("{} [{}] {}\n", fmt_time(n.at, z), n.kind, n.message);
            for d in &n.deliveries {
                line.push_str(&format!(
                    "    e-mail to {}: {}{}\n",
                    d.recipient,
                    d.state,
                    d.error
                        .as_deref()
                        .map(|e| match d.attempts {
                            1 => format!(" after 1 try ({e})"),
                            n => format!(" after {n} tries ({e})"),
                        })
                        .unwrap_or_default()
                ));
            }
            line
        })
        .collect()
}

pub(crate) fn events(e: &Events, z: &TimeZone) -> String {
    if e.events.is_empty() {
        return format!("no events for {}", e.address);
    }
    e.events
        .iter()
        .map(|e| {
            format!(
                "{} {}{} [{}]\n",
                fmt_time(e.at, z),
                e.action,
                e.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                e.actor
            )
        })
        .collect()
}

/// The otpauth URI and a terminal QR code for a new device, shown once.
pub(crate) fn new_device(d: &NewDevice) -> Result<Output, CliError> {
    let addr = &d.address;
    let intro = match d.purpose {
        DevicePurpose::Enable => format!("Turning on two-step verification for {addr}."),
        DevicePurpose::Replace => format!(
            "Replacing the device of {addr}. The current device keeps working until the new one is confirmed."
        ),
    };
    let uri = d.otpauth_uri.expose();
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| CliError::Internal(format!("QR code: {e}")))?
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    let shown = Secret::new(format!("{qr}\n\n  {uri}"));
    drop(qr);
    let confirm_with = format!("sentinella 2fa confirm {addr} CODE");
    let mut json = serde_json::to_value(d).map_err(|e| CliError::Internal(e.to_string()))?;
    json["confirm_with"] = serde_json::Value::String(confirm_with.clone());
    Ok(Output {
        human: format!(
            "{intro}\nScan this QR code with the authenticator app (or enter the URI below), then run\n  \
             {confirm_with}\nwith the 6-digit code the app shows.\n\n{SECRET_MARK}\n"
        ),
        json,
        human_secret: Some(shown),
        json_secret: Some(("otpauth_uri", Secret::new(uri.to_owned()))),
    })
}

pub(crate) fn device_confirmed(c: &DeviceConfirmed) -> String {
    let addr = &c.address;
    match c.result {
        DeviceResult::Enabled => format!(
            "Two-step verification is on for {addr}.\nThe main password no longer works in mail programs: \
             generate an app password with `sentinella app-password generate {addr}`."
        ),
        DeviceResult::Replaced => {
            format!("The new device is now associated with {addr}; the old one no longer works.")
        }
    }
}

/// A new app password, shown once (text and JSON both carry it, from zeroized buffers).
pub(crate) fn new_app_password(n: NewAppPassword, z: &TimeZone) -> Output {
    let human = format!(
        "New app password \"{}\" for {} (shown only now: it cannot be retrieved later):\n\n    {SECRET_MARK}\n\n\
         Valid until {}. Use it in mail programs ({}) for the mailbox, its multi-user accounts{}.\n\
         Dashes and spaces are optional when typing it.",
        n.name,
        n.address,
        fmt_time(n.expires_at, z),
        n.scope,
        if n.archive {
            " and the security archive"
        } else {
            ""
        },
    );
    let mut out = Output::of(human, &n);
    out.json_secret = Some(("password", Secret::new(n.password.expose().to_owned())));
    out.human_secret = Some(n.password);
    out
}

pub(crate) fn postponed(p: &Postponed, z: &TimeZone) -> String {
    format!(
        "Postponed: the same app password \"{}\" of {} now expires {}.",
        p.name,
        p.address,
        fmt_time(p.expires_at, z)
    )
}

pub(crate) fn pinned(p: &crate::manage::outcome::Pinned) -> String {
    if p.networks.is_empty() {
        format!(
            "The app password \"{}\" of {} works from anywhere.",
            p.name, p.address
        )
    } else {
        format!(
            "The app password \"{}\" of {} now works only from {}; elsewhere it is refused.",
            p.name,
            p.address,
            p.networks.join(", ")
        )
    }
}

pub(crate) fn deactivated(d: &Deactivated) -> String {
    let names = d
        .deactivated
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "App password {names} of {} deactivated: mail programs using it no longer have access. The main \
         password still does not work in mail programs while two-step verification is on.",
        d.address
    )
}

pub(crate) fn app_password_status(s: &AppPasswordStatus, z: &TimeZone) -> String {
    let mut text = format!(
        "{}: app password {}",
        s.address,
        app_password_text(&s.app_password, s.two_factor, z)
    );
    if s.protocols.is_empty() {
        text.push_str("\n  no protocol is enabled: mail programs cannot connect");
    }
    text
}

pub(crate) fn app_password_list(l: &AppPasswordList, z: &TimeZone) -> String {
    if l.app_passwords.is_empty() {
        return format!(
            "{}: no app passwords (up to {} allowed)",
            l.address, l.limit
        );
    }
    let mut text = format!(
        "{}: {} of {} app password(s)",
        l.address,
        l.app_passwords.len(),
        l.limit
    );
    for ap in &l.app_passwords {
        text.push_str("\n- ");
        text.push_str(&app_password_text(ap, l.two_factor, z));
    }
    text
}

/// A store copy: each table's rows, both sides.
pub(super) fn store_copied(tables: &[crate::store::copy::Copied]) -> String {
    let mut out = String::from("Copied, and every table checked (source = destination):\n");
    for t in tables.iter().filter(|t| !t.left_out) {
        out.push_str(&format!("  {:<18} {:>10} rows\n", t.table, t.destination));
    }
    let left: Vec<_> = tables.iter().filter(|t| t.left_out).collect();
    if !left.is_empty() {
        out.push_str("Left out (a fleet's tables; one machine keeps its throttle in memory):\n");
        for t in left {
            out.push_str(&format!("  {:<18} {:>10} rows\n", t.table, t.source));
        }
    }
    out.pop();
    out
}
