//! *Sicurezza e password*: the overview, and the mail protocols.

#![allow(clippy::result_large_err)]

use super::*;

struct PasswordRow {
    name: String,
    called: String,
    networks: String,
    state: &'static str,
    expires: String,
    scope: String,
    last_use: String,
    used_from: Vec<String>,
    postpone_allowed: bool,
    postpone_opens: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    address: String,
    two_factor: bool,
    device_since: Option<String>,
    migration: bool,
    passwords: Vec<PasswordRow>,
    main_used_from: Vec<String>,
    breached: Option<String>,
    deactivated: Vec<(String, String)>,
    no_protocol: bool,
    can_generate: bool,
    several: bool,
    imap: bool,
    pop3: bool,
    smtp: bool,
    clients: Vec<ClientRow>,
}

/// One place a password was used from: what, first and last seen, how many logins.
fn place_line(p: &crate::policy::usage::Place, t: &Texts, zone: &jiff::tz::TimeZone) -> String {
    let what = match p.kind {
        crate::policy::usage::PlaceKind::Network => p.value.clone(),
        crate::policy::usage::PlaceKind::Software => format!("{} {}", t.program, p.value),
    };
    let (first, last) = (fmt_time(p.first_seen, zone), fmt_time(p.last_seen, zone));
    let when = if first == last {
        last
    } else {
        format!("{first} → {last}")
    };
    let uses = if p.uses == 1 { t.use_one } else { t.uses };
    format!("{what} · {when} · {} {uses}", p.uses)
}

pub(super) async fn account(State(web): Shared, o: Owner) -> Response {
    let t = o.t();
    let address = o.address.clone();
    let view = match web.manage(move |m| m.show_mailbox(&address, now())).await {
        Ok(v) => v,
        Err(e) => {
            return unavailable(&o, &e);
        }
    };
    let zone = &web.settings.load().policy.zone;
    let passwords = view
        .app_passwords
        .iter()
        .filter_map(|p| {
            let d = p.details.as_ref()?;
            Some(PasswordRow {
                name: d.name.clone(),
                called: wording::app_password_called(&d.name, o.language),
                networks: d.networks.join(" "),
                state: match p.state {
                    crate::manage::outcome::AppPasswordState::Active => t.active,
                    _ => t.expired,
                },
                expires: fmt_time(d.expires_at, zone),
                scope: scope_text(d.scope),
                last_use: d.last_used.as_ref().map_or_else(
                    || t.never.to_owned(),
                    |u| {
                        let program = u
                            .software
                            .as_ref()
                            .map_or(String::new(), |s| format!(" · {s}"));
                        format!(
                            "{} · {} · {}{program}",
                            fmt_time(u.at, zone),
                            u.client,
                            u.protocol.display_name()
                        )
                    },
                ),
                used_from: d.used_from.iter().map(|p| place_line(p, t, zone)).collect(),
                postpone_allowed: d.postpone_allowed,
                postpone_opens: fmt_time(d.postpone_opens_at, zone),
            })
        })
        .collect::<Vec<_>>();
    let max = web.settings.load().policy.max_app_passwords;
    let page = AccountPage {
        t,
        who: Some(o.login.clone()),
        csrf: o.csrf.clone(),
        flash: o.flash.clone(),
        address: view.address.clone(),
        two_factor: view.two_factor.enabled,
        device_since: view.two_factor.associated_at.map(|a| fmt_time(a, zone)),
        migration: view.migration,
        no_protocol: view.protocols.is_empty(),
        can_generate: passwords.len() < max
            || view.app_passwords.iter().any(|p| {
                p.details.is_some() && p.state != crate::manage::outcome::AppPasswordState::Active
            }),
        several: max > 1,
        deactivated: view
            .deactivated
            .iter()
            .map(|d| {
                (
                    wording::app_password_called(&d.name, o.language),
                    fmt_time(d.at, zone),
                )
            })
            .collect(),
        passwords,
        breached: view.main_password_breached.map(|at| fmt_time(at, zone)),
        main_used_from: view
            .main_password_used_from
            .iter()
            .map(|p| place_line(p, t, zone))
            .collect(),
        imap: view.protocols.contains(Protocol::Imap),
        pop3: view.protocols.contains(Protocol::Pop3),
        smtp: view.protocols.contains(Protocol::Smtp),
        clients: client_rows(&web, view.protocols, &o.login),
    };
    render(StatusCode::OK, page)
}

/// `POST /account/app-passwords/networks`: the networks a password may be used from
/// (CIDRs, by commas or spaces; empty: anywhere).
pub(super) async fn networks(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let name = f.get("name").cloned().unwrap_or_default();
    let networks = match crate::net::Network::list(f.get("networks").map_or("", |n| n.as_str())) {
        Ok(n) => n,
        Err(e) => return back_with(&web, &o, true, format!("{}: {e}", o.t().networks)),
    };
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.pin_app_password(&actor, &address, Some(&name), networks, now()))
        .await
    {
        Ok(_) => back_with(&web, &o, false, o.t().done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}

pub(super) async fn protocols(State(web): Shared, Posted { o, f }: Posted) -> Response {
    let (mut enable, mut disable) = (Vec::new(), Vec::new());
    for (p, key) in [
        (Protocol::Imap, "imap"),
        (Protocol::Pop3, "pop3"),
        (Protocol::Smtp, "smtp"),
    ] {
        if f.contains_key(key) {
            enable.push(p);
        } else {
            disable.push(p);
        }
    }
    let (actor, address) = (o.actor(), o.address.clone());
    match web
        .manage(move |m| m.protocols(&actor, &address, &enable, &disable, now()))
        .await
    {
        Ok(_) => back_with(&web, &o, false, o.t().done.to_owned()),
        Err(e) => back_with(&web, &o, true, refusal(&o, &e)),
    }
}
