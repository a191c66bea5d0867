//! *Storico accessi* and *Avvisi*: the history's reasons and the notices, in the page's
//! language.

#![allow(clippy::result_large_err)]

use super::*;

struct HistoryRow {
    when: String,
    client: String,
    protocol: String,
    result: &'static str,
    class: &'static str,
    reason: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    rows: Vec<HistoryRow>,
    page: u32,
    more: bool,
}

#[derive(Template)]
#[template(path = "notices.html")]
struct NoticesPage {
    t: &'static Texts,
    who: Option<String>,
    csrf: String,
    flash: Option<Flash>,
    items: Vec<(String, String)>,
}

pub(super) async fn history(
    State(web): Shared,
    Query(q): Query<HashMap<String, String>>,
    o: Owner,
) -> Response {
    let t = o.t();
    let rows = web.settings.load().history_page;
    let page = q
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 10_000);
    let address = o.address.clone();
    let want = page.saturating_mul(rows).saturating_add(1);
    let h = match web.manage(move |m| m.history(&address, want)).await {
        Ok(h) => h,
        Err(e) => {
            return unavailable(&o, &e);
        }
    };
    let skip = ((page - 1) * rows) as usize;
    let more = h.history.len() > skip + rows as usize;
    let zone = &web.settings.load().policy.zone;
    let rows = h
        .history
        .iter()
        .skip(skip)
        .take(rows as usize)
        .map(|r| HistoryRow {
            when: crate::policy::fmt_moment(r.at, zone),
            client: r.client.clone(),
            protocol: r.protocol.display_name().to_owned(),
            result: match r.result {
                AccessResult::Accepted => t.accepted,
                AccessResult::Refused => t.refused,
                _ => t.temporary,
            },
            class: r.result.as_str(),
            // An acceptance says what got in; anything else why it ended so.
            reason: match (&r.reason, r.result) {
                (Some(why), _) => wording::reason(why, o.language),
                (None, AccessResult::Accepted) => wording::got_in(
                    r.credential,
                    r.app_password.as_ref().map(|a| a.name.as_str()),
                    o.language,
                ),
                (None, _) => String::new(),
            },
        })
        .collect();
    render(
        StatusCode::OK,
        HistoryPage {
            t,
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            rows,
            page,
            more,
        },
    )
}

pub(super) async fn notices(State(web): Shared, o: Owner) -> Response {
    let address = o.address.clone();
    let n = match web.manage(move |m| m.notices(&address)).await {
        Ok(n) => n,
        Err(e) => {
            return unavailable(&o, &e);
        }
    };
    let locale = o.locale(&web);
    let items = n
        .notices
        .iter()
        .map(|n| (fmt_time(n.at, &locale.zone), n.text(&locale)))
        .collect();
    render(
        StatusCode::OK,
        NoticesPage {
            t: o.t(),
            who: Some(o.login.clone()),
            csrf: o.csrf.clone(),
            flash: o.flash.clone(),
            items,
        },
    )
}
