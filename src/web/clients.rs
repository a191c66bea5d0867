//! What mail programs should use, and the documents that tell them without the owner
//! typing it: Thunderbird's autoconfig (`/mail/config-v1.1.xml`,
//! `/.well-known/autoconfig/mail/config-v1.1.xml`) and Outlook's Autodiscover
//! (`POST /autodiscover/autodiscover.xml`), both without a login.
//!
//! Neither says whether a mailbox exists: the user name is the address the program was
//! given (`%EMAILADDRESS%`, or the address asked about, checked and escaped), and the
//! answer is the same for every address of a domain the proxy serves; a domain it serves
//! no mailbox of is 404. Credentials a program sends along (Outlook and Thunderbird send
//! the account's with Autodiscover) are never read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Web;
use crate::policy::Protocol;

/// One server a mail program connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Its protocol.
    pub protocol: Protocol,
    /// The port, as reachable from outside.
    pub port: u16,
    /// TLS from the first byte (SSL/TLS); otherwise STARTTLS.
    pub implicit_tls: bool,
}

/// What mail programs should use: one host, a server per protocol (IMAP, POP3, SMTP
/// submission, in that order), and the mail domains whose addresses are answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailClients {
    /// The host name as programs reach it.
    pub host: String,
    /// The servers, IMAP first (a program takes the first incoming one as its default).
    pub servers: Vec<Server>,
    /// The mail domains answered; empty: every domain the store has a mailbox of.
    pub domains: Vec<String>,
}

impl MailClients {
    /// The server for `protocol`, if programs are told one.
    pub fn server(&self, protocol: Protocol) -> Option<&Server> {
        self.servers.iter().find(|s| s.protocol == protocol)
    }
}

/// `s` safe inside XML text or an attribute.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The domain of `address` if it is a mail address this proxy could serve (the address
/// rule; a domain of letters, digits, dots and hyphens).
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let address = crate::policy::names::normalize_address(address).ok()?;
    let (_, domain) = address.rsplit_once('@')?;
    let good = domain.contains('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    good.then(|| domain.to_owned())
}

/// Thunderbird's `clientConfig` for `domain`: every server, the user name left for the
/// program to fill in with the address it was given.
pub(crate) fn autoconfig_xml(c: &MailClients, domain: &str) -> String {
    let host = xml_escape(&c.host);
    let mut servers = String::new();
    for s in &c.servers {
        let (element, kind) = match s.protocol {
            Protocol::Imap => ("incomingServer", "imap"),
            Protocol::Pop3 => ("incomingServer", "pop3"),
            Protocol::Smtp => ("outgoingServer", "smtp"),
        };
        let socket = if s.implicit_tls { "SSL" } else { "STARTTLS" };
        servers.push_str(&format!(
            "    <{element} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      \
             <port>{}</port>\n      <socketType>{socket}</socketType>\n      \
             <authentication>password-cleartext</authentication>\n      \
             <username>%EMAILADDRESS%</username>\n    </{element}>\n",
            s.port
        ));
    }
    let domain = xml_escape(domain);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
         <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    \
         <displayName>{domain}</displayName>\n    <displayShortName>{domain}</displayShortName>\n\
         {servers}  </emailProvider>\n</clientConfig>\n"
    )
}

/// Outlook's Autodiscover answer (the `outlook` response schema) for `address`.
pub(crate) fn autodiscover_xml(c: &MailClients, address: &str) -> String {
    let (host, login) = (xml_escape(&c.host), xml_escape(address));
    let mut protocols = String::new();
    for s in &c.servers {
        let kind = match s.protocol {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Smtp => "SMTP",
        };
        // `Encryption` overrides `SSL` where it is read: SSL is TLS from the first byte,
        // TLS is STARTTLS. `SSL` stays on for STARTTLS: programs that read only `SSL`
        // take off as plain text.
        let encryption = if s.implicit_tls { "SSL" } else { "TLS" };
        let smtp = if s.protocol == Protocol::Smtp {
            "<UsePOPAuth>off</UsePOPAuth><SMTPLast>off</SMTPLast>"
        } else {
            ""
        };
        protocols.push_str(&format!(
            "      <Protocol><Type>{kind}</Type><Server>{host}</Server><Port>{}</Port>\
             <DomainRequired>off</DomainRequired><LoginName>{login}</LoginName><SPA>off</SPA>\
             <SSL>on</SSL><Encryption>{encryption}</Encryption><AuthRequired>on</AuthRequired>\
             {smtp}</Protocol>\n",
            s.port
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover \
         xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  \
         <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    \
         <User><DisplayName>{login}</DisplayName></User>\n    <Account>\n      \
         <AccountType>email</AccountType>\n      <Action>settings</Action>\n\
         {protocols}    </Account>\n  </Response>\n</Autodiscover>\n"
    )
}

/// The address an Autodiscover request asks about: the text of its `EMailAddress`
/// element (any namespace prefix), if it is one.
pub(crate) fn requested_address(body: &str) -> Option<String> {
    let start = body.find("EMailAddress>")? + "EMailAddress>".len();
    let rest = &body[start..];
    let text = rest[..rest.find('<')?].trim();
    domain_of(text)?;
    crate::policy::names::normalize_address(text).ok()
}

/// How long the store's mail domains are taken as known: a request costs no read, and
/// requests for made-up domains cost at most one pass over the addresses this often.
const DOMAINS_FRESH: Duration = Duration::from_secs(60);

/// The mail domains the store has mailboxes of, read at most once per [`DOMAINS_FRESH`].
#[derive(Default)]
pub(crate) struct KnownDomains(tokio::sync::Mutex<Option<(Instant, Arc<BTreeSet<String>>)>>);

/// Whether `domain` is one the proxy answers for.
async fn serves(web: &Arc<Web>, domain: &str) -> Result<bool, Response> {
    let clients = web.settings.load().clients.clone();
    if !clients.domains.is_empty() {
        return Ok(clients.domains.iter().any(|d| d == domain));
    }
    // One reader at a time; the others wait for its answer.
    let mut known = web.domains.0.lock().await;
    let fresh = known
        .as_ref()
        .filter(|(at, _)| at.elapsed() < DOMAINS_FRESH)
        .map(|(_, d)| Arc::clone(d));
    let domains = match fresh {
        Some(d) => d,
        None => {
            let d = Arc::new(
                web.manage(|m| m.mail_domains())
                    .await
                    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?,
            );
            *known = Some((Instant::now(), Arc::clone(&d)));
            d
        }
    };
    Ok(domains.contains(domain))
}

fn xml(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The query of an autoconfig request.
#[derive(Deserialize)]
pub(crate) struct Asked {
    emailaddress: Option<String>,
}

/// `GET /mail/config-v1.1.xml?emailaddress=…` (and the `.well-known` path). Without an
/// address (Thunderbird may leave it out), the domain is the host the request was sent
/// to, past its `autoconfig.` label.
pub(crate) async fn autoconfig(
    State(web): State<Arc<Web>>,
    headers: axum::http::HeaderMap,
    Query(asked): Query<Asked>,
) -> Response {
    let domain = match asked.emailaddress.as_deref() {
        Some(a) => domain_of(a),
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.rsplit_once(':')
                    .map_or(h, |(n, _)| n)
                    .to_ascii_lowercase()
            })
            .map(|h| {
                h.strip_prefix("autoconfig.")
                    .map(str::to_owned)
                    .unwrap_or(h)
            })
            .and_then(|h| domain_of(&format!("x@{h}"))),
    };
    let Some(domain) = domain else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match serves(&web, &domain).await {
        Ok(true) => xml(autoconfig_xml(&web.settings.load().clients, &domain)),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}

/// `POST /autodiscover/autodiscover.xml`: a body that is not an Autodiscover request for
/// a mail address (or is too large) is a 400 with one line of reason.
pub(crate) async fn autodiscover(
    State(web): State<Arc<Web>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bad = || (StatusCode::BAD_REQUEST, "not an Autodiscover request\n").into_response();
    let Ok(body) = body else { return bad() };
    let Some(address) = std::str::from_utf8(&body).ok().and_then(requested_address) else {
        return bad();
    };
    let Some(domain) = domain_of(&address) else {
        return bad();
    };
    match serves(&web, &domain).await {
        Ok(true) => xml(autodiscover_xml(&web.settings.load().clients, &address)),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> MailClients {
        MailClients {
            host: "mail.example.it".into(),
            servers: vec![
                Server {
                    protocol: Protocol::Imap,
                    port: 993,
                    implicit_tls: true,
                },
                Server {
                    protocol: Protocol::Smtp,
                    port: 587,
                    implicit_tls: false,
                },
            ],
            domains: Vec::new(),
        }
    }

    #[test]
    fn the_address_asked_about_is_read_only_when_it_is_one() {
        let ask = |a: &str| {
            format!(
                "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>{a}</EMailAddress><AcceptableResponseSchema>x</AcceptableResponseSchema></Request></Autodiscover>"
            )
        };
        assert_eq!(
            requested_address(&ask("Mario.Rossi@Example.IT")).as_deref(),
            Some("mario.rossi@example.it")
        );
        assert_eq!(
            requested_address("<a:EMailAddress> a@b.it </a:EMailAddress>").as_deref(),
            Some("a@b.it")
        );
        for bad in ["nobody", "a@b", "a@b..it", "\"x\"@b.it", "a@b.it&amp;"] {
            assert_eq!(requested_address(&ask(bad)), None, "{bad}");
        }
        assert_eq!(requested_address("<Autodiscover/>"), None);
    }

    #[test]
    fn the_documents_name_every_server_and_escape_what_they_carry() {
        let c = MailClients {
            host: "mail.<x>.it".into(),
            ..clients()
        };
        let x = autoconfig_xml(&c, "example.it");
        assert!(x.contains("<hostname>mail.&lt;x&gt;.it</hostname>"), "{x}");
        assert!(x.contains("<incomingServer type=\"imap\">"), "{x}");
        assert!(x.contains("<socketType>STARTTLS</socketType>"), "{x}");
        assert!(!x.contains("pop3"), "{x}");
        let d = autodiscover_xml(&clients(), "a@b.it");
        assert!(d.contains("<Type>IMAP</Type>"), "{d}");
        assert!(
            d.contains("<Port>587</Port>") && d.contains("<Encryption>TLS</Encryption>"),
            "{d}"
        );
    }
}
