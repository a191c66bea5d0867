//! The e-mail outbox, worked through while the proxy runs: each pending notice is sent to
//! its recipient through the provider's relay (`[notices.smtp]`), and recorded as sent
//! only after the relay accepted it — so a crash in between sends it at most once more,
//! and nothing is lost across restarts. A relay that is down or answers 4xx is tried
//! again with a growing pause; a 5xx is recorded with its error and not retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::net::TlsMode;
use crate::policy::Period;
use crate::secret::Secret;
use crate::store::{DeliveryState, Outbox, OutgoingEmail, StoreLocation};
use crate::wording::{self, Language, Locale};

/// How often the mailer looks for e-mails due.
const EVERY: Duration = Duration::from_secs(5);
/// E-mails sent per round, at most.
const ROUND: u32 = 50;
/// The longest pause between two tries.
const MAX_PAUSE: Period = Period::seconds(3_600);
/// How long an e-mail taken for a try is left to the mailer that took it before another
/// may try it (longer than one try can last: the relay's timeout is 30 s).
const LEASE: Period = Period::seconds(120);

/// The relay and what the messages say, resolved from the configuration.
#[derive(Clone)]
pub(crate) struct MailerSettings {
    /// Relay host.
    pub(crate) host: String,
    /// Relay port.
    pub(crate) port: u16,
    /// TLS to the relay.
    pub(crate) tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the system roots.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// AUTH, if any.
    pub(crate) auth: Option<(String, Secret)>,
    /// The From address.
    pub(crate) from: String,
    /// The name shown with it.
    pub(crate) from_name: Option<String>,
    /// Where the owner manages the mailbox (the page's address), said in every e-mail.
    pub(crate) page_url: Option<String>,
    /// The first pause after a failed try; it doubles with each try, up to an hour.
    pub(crate) retry: Period,
    /// The language and the dates of the messages.
    pub(crate) locale: Locale,
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies, no loops.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// `Content-Language` (RFC 3282): the language of the text.
#[derive(Clone)]
struct ContentLanguage(Language);

impl Header for ContentLanguage {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Language")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentLanguage(s.trim().parse()?))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.as_str().into())
    }
}

/// The message for one e-mail. Notices hold no secret; the one secret an e-mail may carry
/// is a "Non sono stato io" link's token (it can only take access away).
fn message(s: &MailerSettings, e: &OutgoingEmail) -> Result<Message, String> {
    let from_domain = s.from.rsplit('@').next().unwrap_or("localhost");
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let text = e.notice.text(&s.locale);
    let not_me = e.link.as_ref().zip(s.page_url.as_deref()).map(|(t, base)| {
        zeroize::Zeroizing::new(format!(
            "{}/not-me/{}",
            base.trim_end_matches('/'),
            t.expose()
        ))
    });
    let body = wording::email_body(
        &e.address,
        e.notice.at,
        &text,
        s.page_url.as_deref(),
        not_me.as_deref().map(String::as_str),
        &s.locale,
    );
    let from = lettre::message::Mailbox::new(
        s.from_name.clone(),
        s.from.parse().map_err(|e| format!("from: {e}"))?,
    );
    Message::builder()
        .from(from)
        .to(e.recipient.parse().map_err(|e| format!("recipient: {e}"))?)
        .subject(wording::email_subject(&e.notice, &e.address, &s.locale))
        .date_now()
        .message_id(Some(format!("<notice-{}-{nonce}@{from_domain}>", e.id)))
        .header(lettre::message::header::MIME_VERSION_1_0)
        .header(AutoSubmitted)
        .header(ContentLanguage(s.locale.language))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())
}

fn transport(s: &MailerSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = |wrap: bool| -> Result<Tls, String> {
        let mut params = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build_rustls().map_err(|e| e.to_string())?;
        Ok(if wrap {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        })
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port)
        .timeout(Some(Duration::from_secs(30)));
    b = match s.tls {
        TlsMode::None => b.tls(Tls::None),
        TlsMode::Starttls => b.tls(tls(false)?),
        TlsMode::Implicit => b.tls(tls(true)?),
    };
    if let Some((user, password)) = &s.auth {
        b = b.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(b.build())
}

/// What one try came to.
fn outcome(
    s: &MailerSettings,
    e: &OutgoingEmail,
    result: Result<(), lettre::transport::smtp::Error>,
    now: Timestamp,
) -> (DeliveryState, Option<Timestamp>, Option<String>) {
    match result {
        Ok(()) => (DeliveryState::Sent, None, None),
        Err(err) if err.is_permanent() => (DeliveryState::Failed, None, Some(err.to_string())),
        Err(err) => (
            // 4xx, or the relay unreachable.
            DeliveryState::Pending,
            Some(pause(s.retry, e.attempts).after(now, &s.locale.zone)),
            Some(err.to_string()),
        ),
    }
}

/// The pause after the `attempts`-th failed try: `first`, doubling, at most an hour.
fn pause(first: Period, attempts: u32) -> Period {
    let first = first.as_std().map_or(60, |d| d.as_secs()).max(1);
    let pause = first.saturating_mul(1u64 << attempts.min(20));
    Period::seconds(pause).min_by_seconds(MAX_PAUSE)
}

/// One round: the e-mails due at `now`, each tried once. Returns how many were tried.
pub(crate) async fn round(
    store: &Arc<Mutex<Box<dyn Outbox>>>,
    s: &MailerSettings,
    now: Timestamp,
) -> Result<usize, String> {
    let st = Arc::clone(store);
    let due = tokio::task::spawn_blocking(move || {
        st.lock()
            .unwrap_or_else(|p| p.into_inner())
            .due_emails(now, ROUND)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(0);
    }
    let mailer = transport(s)?;
    for e in &due {
        // Another mailer on the store (a second node) may have taken it since.
        if !claim(store, e.id, now, LEASE.after(now, &s.locale.zone)).await? {
            continue;
        }
        let result = match message(s, e) {
            Ok(m) => mailer.send(m).await.map(drop),
            Err(why) => {
                // A message that cannot be built never will be: record it, do not retry.
                tracing::error!(recipient = %e.recipient, error = %why, "notice e-mail cannot be built");
                record(store, e.id, (DeliveryState::Failed, None, Some(why)), now).await?;
                continue;
            }
        };
        let result = outcome(s, e, result, now);
        match &result.0 {
            DeliveryState::Sent => {
                tracing::info!(recipient = %e.recipient, mailbox = %e.address, "notice e-mailed")
            }
            DeliveryState::Pending => {
                tracing::warn!(recipient = %e.recipient, error = result.2.as_deref().unwrap_or(""), "notice e-mail deferred")
            }
            DeliveryState::Failed => {
                tracing::error!(recipient = %e.recipient, error = result.2.as_deref().unwrap_or(""), "notice e-mail refused")
            }
        }
        record(store, e.id, result, now).await?;
    }
    Ok(due.len())
}

async fn claim(
    store: &Arc<Mutex<Box<dyn Outbox>>>,
    id: i64,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, String> {
    let st = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        st.lock()
            .unwrap_or_else(|p| p.into_inner())
            .claim_email(id, now, until)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Tries to record an outcome this often while the store answers "try later"...
const RECORD_TRIES: u32 = 5;
/// ... this long apart (the e-mail's lease is far longer: nobody else takes it meanwhile).
const RECORD_PAUSE: Duration = Duration::from_secs(2);

/// Records what a try came to. A temporary store failure is tried again in place, while
/// the e-mail is still leased to this mailer: a sent e-mail left unrecorded would be due
/// again after its lease, and sent twice.
async fn record(
    store: &Arc<Mutex<Box<dyn Outbox>>>,
    id: i64,
    (state, retry, error): (DeliveryState, Option<Timestamp>, Option<String>),
    now: Timestamp,
) -> Result<(), String> {
    record_with_pause(store, id, (state, retry, error), now, RECORD_PAUSE).await
}

async fn record_with_pause(
    store: &Arc<Mutex<Box<dyn Outbox>>>,
    id: i64,
    (state, retry, error): (DeliveryState, Option<Timestamp>, Option<String>),
    now: Timestamp,
    pause: Duration,
) -> Result<(), String> {
    let mut tries = 0;
    loop {
        let st = Arc::clone(store);
        let error = error.clone();
        let result = tokio::task::spawn_blocking(move || {
            st.lock().unwrap_or_else(|p| p.into_inner()).email_tried(
                id,
                state,
                retry,
                error.as_deref(),
                now,
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        tries += 1;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_temporary() && tries < RECORD_TRIES => {
                tracing::warn!(error = %e, "cannot record a notice e-mail's try yet; trying again");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Works through the outbox every few seconds for as long as the proxy runs; a reload
/// (the language of the e-mails) reaches the next round.
pub(crate) fn spawn(location: StoreLocation, settings: crate::live::Live<MailerSettings>) {
    tokio::spawn(async move {
        let store = match tokio::task::spawn_blocking(move || location.open_outbox()).await {
            Ok(Ok(s)) => Arc::new(Mutex::new(s)),
            other => {
                tracing::error!(error = ?other.err(), "the mailer cannot open the store; notices will not be e-mailed");
                return;
            }
        };
        loop {
            let now = crate::clock::now();
            let settings = settings.load_full();
            if let Err(e) = round(&store, &settings, now).await {
                tracing::error!(error = %e, "the mailer failed a round; trying again shortly");
            }
            // The next look: at the latest after EVERY (or a shorter first retry pause),
            // at once when this process commits an e-mail.
            let every = settings.retry.as_std().map_or(EVERY, |r| r.min(EVERY));
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = crate::store::OUTBOX_FILLED.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wording::{Reminder, Said};
    use jiff::tz::TimeZone;

    /// A store that answers "try later" `fail` times, then records.
    struct Flaky {
        fail: u32,
        recorded: Vec<(i64, DeliveryState)>,
    }

    impl Outbox for Flaky {
        fn due_emails(
            &self,
            _: Timestamp,
            _: u32,
        ) -> Result<Vec<OutgoingEmail>, crate::store::StoreError> {
            Ok(Vec::new())
        }
        fn pending_emails(&self) -> Result<u64, crate::store::StoreError> {
            Ok(0)
        }
        fn claim_email(
            &mut self,
            _: i64,
            _: Timestamp,
            _: Timestamp,
        ) -> Result<bool, crate::store::StoreError> {
            Ok(true)
        }
        fn email_tried(
            &mut self,
            id: i64,
            state: DeliveryState,
            _: Option<Timestamp>,
            _: Option<&str>,
            _: Timestamp,
        ) -> Result<(), crate::store::StoreError> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(crate::store::StoreError::temporary("database is locked"));
            }
            self.recorded.push((id, state));
            Ok(())
        }
    }

    /// A sent e-mail is recorded through a store that is briefly busy, not left to be
    /// sent again after its lease.
    #[tokio::test]
    async fn a_sent_e_mail_is_recorded_through_a_briefly_busy_store() {
        let flaky: Box<dyn Outbox> = Box::new(Flaky {
            fail: 2,
            recorded: Vec::new(),
        });
        let store = Arc::new(Mutex::new(flaky));
        let now: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        record_with_pause(
            &store,
            7,
            (DeliveryState::Sent, None, None),
            now,
            Duration::ZERO,
        )
        .await
        .unwrap();
        let stuck: Box<dyn Outbox> = Box::new(Flaky {
            fail: 100,
            recorded: Vec::new(),
        });
        let stuck = Arc::new(Mutex::new(stuck));
        assert!(
            record_with_pause(
                &stuck,
                7,
                (DeliveryState::Sent, None, None),
                now,
                Duration::ZERO
            )
            .await
            .is_err(),
            "gives up after a few tries"
        );
    }

    #[test]
    fn the_pause_doubles_up_to_an_hour() {
        let secs = |n| pause(Period::seconds(60), n).as_std().unwrap().as_secs();
        assert_eq!([secs(0), secs(1), secs(2), secs(5)], [60, 120, 240, 1_920]);
        assert_eq!(secs(6), 3_600);
        assert_eq!(secs(40), 3_600);
    }

    #[test]
    fn a_message_is_well_formed_and_names_the_mailbox() {
        let s = MailerSettings {
            host: "127.0.0.1".into(),
            port: 25,
            tls: TlsMode::None,
            ca_pem: None,
            auth: None,
            from: "avvisi@pec.example.it".into(),
            from_name: Some("Avvisi Posta".into()),
            page_url: Some("https://posta.example.it/".into()),
            retry: Period::seconds(60),
            locale: Locale {
                language: Language::It,
                zone: TimeZone::get("Europe/Rome").unwrap(),
            },
        };
        let e = OutgoingEmail {
            id: 7,
            address: "mario@pec.example.it".into(),
            recipient: "mario@example.com".into(),
            notice: crate::store::Notice::said(
                "2023-02-15T13:30:00Z".parse().unwrap(),
                Said::Reminder {
                    name: "fatture".into(),
                    expires_at: "2023-02-16T13:30:00Z".parse().unwrap(),
                    reminder: Reminder::Before {
                        period: Period::days(1),
                    },
                },
                // Written in English, e-mailed in the mailer's language.
                &Locale {
                    language: Language::En,
                    zone: TimeZone::UTC,
                },
            ),
            attempts: 0,
            link: None,
        };
        let raw = String::from_utf8(message(&s, &e).unwrap().formatted()).unwrap();
        for header in [
            "From: ",
            "To: ",
            "Subject: mario@pec.example.it",
            "Date: ",
            "Message-ID: <notice-7-",
            "Auto-Submitted: auto-generated",
            "Content-Language: it",
            "MIME-Version: 1.0",
            "From: \"Avvisi Posta\" <avvisi@pec.example.it>",
        ] {
            assert!(raw.contains(header), "{header} in {raw}");
        }
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("Quando: 15/02/2023 14:30 CET"), "{body}");
        assert!(
            body.contains("«fatture» scade il 16/02/2023 14:30 CET (tra 1 giorno)"),
            "{body}"
        );
        assert!(
            body.contains("Gestione account: https://posta.example.it/"),
            "{body}"
        );
        assert_eq!(
            parsed.subject(),
            Some(
                "mario@pec.example.it: la password per programmi di posta «fatture» scade il 16/02/2023"
            )
        );
        let bad = OutgoingEmail {
            recipient: "not an address".into(),
            ..e
        };
        assert!(message(&s, &bad).is_err());
    }
}
