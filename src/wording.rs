//! What the owner is told, in their language: every notice ("avviso") is kept as what
//! happened ([`Said`]), and every access-history reason as its code
//! ([`crate::policy::login::Reason`]); both are rendered here in Italian (the default, as
//! the provider's pages) or English — when written, for the e-mail, and again for
//! whoever reads them in another language (the web page's language switch). The one
//! place the words live; the store keeps only the data.

use std::fmt;
use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::policy::abuse::{BlockNote, CodeUse, Subject};
use crate::policy::login::Reason;
use crate::policy::names::named_enum;
pub use crate::policy::notice::{NarrowedTo, NoticeKind, Reminder, Said};
use crate::policy::usage::PlaceKind;
use crate::policy::{Period, fmt_time, fmt_zoned};
use crate::store::Notice;

named_enum! {
    /// The language of what a person reads.
    #[derive(Default)]
    pub enum Language {
        /// Italiano (the default).
        #[default]
        It = "it",
        /// English.
        En = "en",
    }
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A language and a time zone: how a text is shown to one reader.
#[derive(Clone, Debug)]
pub struct Locale {
    /// The words.
    pub language: Language,
    /// The dates.
    pub zone: TimeZone,
}

/// Notices are put into words here, never in the store: what was said is kept as data.
impl Notice {
    /// A notice of what was `said`, in `locale`'s words (the text as first written, kept
    /// with it).
    pub fn said(at: Timestamp, said: Said, locale: &Locale) -> Self {
        Notice {
            message: said.render(locale),
            said: Some(said.clone()),
            ..Notice::new(at, said.kind(), "")
        }
    }

    /// Its text for a reader in `locale` (the words first written, when what it said was
    /// not kept).
    pub fn text(&self, locale: &Locale) -> String {
        self.said
            .as_ref()
            .map_or_else(|| self.message.clone(), |s| s.render(locale))
    }
}

impl Said {
    /// The text, for `l`.
    pub fn render(&self, l: &Locale) -> String {
        match l.language {
            Language::It => self.italiano(&l.zone),
            Language::En => self.english(&l.zone),
        }
    }

    fn italiano(&self, zone: &TimeZone) -> String {
        let date = |t: &Timestamp| fmt_time(*t, zone);
        match self {
            Said::AppPasswordGenerated {
                name,
                until,
                by_operator,
            } => {
                let who = if *by_operator { "Un operatore ha generato" } else { "È stata generata" };
                let until = until.map_or(String::new(), |u| {
                    format!(": funziona fino al {}", date(&u))
                });
                format!("{who} la {}{until}.", app_password_called(name, Language::It))
            }
            Said::AppPasswordRegenerated {
                name,
                until,
                by_operator,
            } => {
                let who = if *by_operator {
                    "Un operatore ha generato"
                } else {
                    "È stata generata"
                };
                let until = until.map_or(String::new(), |u| {
                    format!(" La nuova funziona fino al {}.", date(&u))
                });
                format!(
                    "{who} una nuova {}: la precedente non funziona più.{until}",
                    app_password_called(name, Language::It)
                )
            }
            Said::AppPasswordPostponed { name, until } => format!(
                "La scadenza della {} è stata posticipata: la stessa password funziona fino al {}.",
                app_password_called(name, Language::It),
                date(until)
            ),
            Said::AppPasswordsDeactivated { names, by_operator } => {
                let text = match (names.as_slice(), by_operator) {
                    ([one], false) => {
                        format!("È stata disattivata la {}", app_password_called(one, Language::It))
                    }
                    ([one], true) => format!(
                        "Un operatore ha disattivato la {}",
                        app_password_called(one, Language::It)
                    ),
                    (many, false) => format!(
                        "Sono state disattivate le password per programmi di posta {}",
                        quoted(many)
                    ),
                    (many, true) => format!(
                        "Un operatore ha disattivato le password per programmi di posta {}",
                        quoted(many)
                    ),
                };
                format!("{text}: i programmi di posta che le usano non possono più accedere.")
            }
            Said::ProtocolsNarrowed { passwords } => {
                let told: Vec<String> = passwords
                    .iter()
                    .map(|n| {
                        if n.scope.is_empty() {
                            format!(
                                "la password \"{}\" non funziona più: nessuno dei suoi protocolli è attivo",
                                n.name
                            )
                        } else {
                            format!("la password \"{}\" ora funziona solo con {}", n.name, n.scope)
                        }
                    })
                    .collect();
                format!("Protocolli di posta modificati: {}.", told.join("; "))
            }
            Said::MainPasswordChanged => "La password principale della casella è stata modificata.".into(),
            Said::ContactChanged { old: Some(old), new } => format!(
                "L'email di contatto per gli avvisi è stata cambiata da {old} a {new}. Se non l'hai chiesto \
                 tu, contatta l'assistenza."
            ),
            Said::ContactChanged { old: None, new } => {
                format!("D'ora in poi gli avvisi saranno inviati anche a {new}.")
            }
            Said::TwoFactorOn { passkey } => format!(
                "La verifica in 2 passaggi è stata attivata con {}: i programmi di posta ora richiedono una \
                 password per programmi di posta.",
                if *passkey { "una passkey" } else { "un'app di autenticazione" }
            ),
            Said::TwoFactorOff { by_operator: false } => {
                "La verifica in 2 passaggi è stata disattivata e la password per programmi di posta revocata: \
                 hai diminuito il livello di sicurezza della casella."
                    .into()
            }
            Said::TwoFactorOff { by_operator: true } => {
                "Un operatore ha disattivato la verifica in 2 passaggi della casella e revocato la password per \
                 programmi di posta: il livello di sicurezza è diminuito. Se non l'hai chiesto tu, contatta \
                 l'assistenza."
                    .into()
            }
            Said::DeviceReplaced { passkey } => format!(
                "È stato associato un nuovo dispositivo per la verifica in 2 passaggi: {}.",
                if *passkey { "una passkey" } else { "un'app di autenticazione" }
            ),
            Said::RecoveryCodeUsed { left } => format!(
                "È stato usato un codice di recupero al posto del codice del dispositivo per la verifica in 2 \
                 passaggi: ne restano {left}. Se non sei stato tu, qualcuno conosce la password principale e un \
                 codice di recupero: cambia la password principale e genera nuovi codici di recupero."
            ),
            Said::RecoveryCodesRenewed => "Sono stati generati nuovi codici di recupero per la verifica in 2 \
                                           passaggi: i precedenti non funzionano più."
                .into(),
            Said::PasskeyCloned => "La passkey associata ha risposto con un contatore che non è andato avanti: \
                                    potrebbe essere stata copiata. L'accesso è stato rifiutato. Se non sei stato \
                                    tu, cambia la password principale e sostituisci il dispositivo."
                .into(),
            Said::ReplaceStarted => "È iniziata la sostituzione del dispositivo per la verifica in 2 passaggi, \
                                     autorizzata dal dispositivo attuale."
                .into(),
            Said::ReplaceByOperator => "Un operatore ha avviato la sostituzione del dispositivo per la verifica \
                                        in 2 passaggi senza un codice dal dispositivo attuale. Se non l'hai \
                                        richiesto tu, contatta l'assistenza."
                .into(),
            Said::MainPasswordUsed {
                at,
                client,
                protocol,
                login,
            } => format!(
                "La password principale della casella è stata usata in un programma di posta il {} da {client} \
                 ({protocol}, nome utente {login}) mentre la verifica in 2 passaggi è attiva: l'accesso è stato \
                 rifiutato. Se non sei stato tu, qualcuno conosce la password principale: cambiala. Se era un tuo \
                 programma di posta, configuralo con una password per programmi di posta.",
                date(at)
            ),
            Said::CodesGuessed {
                at,
                client,
                tries,
                blocked_seconds,
            } => format!(
                "Qualcuno che conosce la password principale ha provato {tries} codici errati della verifica in 2 \
                 passaggi (l'ultimo il {} da {client}): l'inserimento dei codici è bloccato per {}, anche per il \
                 codice giusto. Se non sei stato tu, cambia subito la password principale.",
                date(at),
                duration(Period::seconds(*blocked_seconds), Language::It)
            ),
            Said::MainPasswordBreached { at, protocol, refused } => {
                let then = if *refused {
                    "Finché non la cambi, i programmi di posta che la usano vengono rifiutati."
                } else {
                    "Chi la prova può entrare nella casella: cambiala subito."
                };
                format!(
                    "La password principale della casella, usata il {} ({protocol}), compare in elenchi di \
                     password rubate: cambiala. {then} Attiva anche la verifica in 2 passaggi.",
                    date(at)
                )
            }
            Said::NewPlace {
                at,
                password,
                new,
                network,
                client,
                protocol,
                software,
            } => {
                let which = password.as_deref().map_or_else(
                    || "password principale".to_owned(),
                    |n| app_password_called(n, Language::It),
                );
                let program = software
                    .as_deref()
                    .map_or(String::new(), |s| format!(", programma «{s}»"));
                let first = match new {
                    PlaceKind::Network => "è la prima volta da questa rete",
                    PlaceKind::Software => "è la prima volta con questo programma",
                };
                let act = if password.is_some() {
                    "Se non sei stato tu, premi «Non sono stato io» nell'e-mail di questo avviso o disattiva la \
                     password in Gestione account: i programmi che la usano vengono scollegati subito; poi cambia \
                     la password principale."
                } else {
                    "Se non sei stato tu, qualcuno conosce la password principale: cambiala subito e attiva la \
                     verifica in 2 passaggi."
                };
                format!(
                    "La {which} è stata usata il {} da {client} (rete {network}, {protocol}{program}): {first}. Se \
                     sei stato tu, non devi fare nulla. {act}",
                    date(at)
                )
            }
            Said::Reminder {
                name,
                expires_at,
                reminder,
            } => {
                let d = date(expires_at);
                let called = app_password_called(name, Language::It);
                match reminder {
                    Reminder::PostponeOpens => format!(
                        "La {called} scade il {d}. Da ora puoi posticiparne la scadenza: in Gestione account, \
                         Sicurezza e password, premi Posticipa scadenza; la stessa password continuerà a funzionare."
                    ),
                    Reminder::Before { period } => format!(
                        "La {called} scade il {d} (tra {}): in Gestione account, Sicurezza e password, premi \
                         Posticipa scadenza o generane una nuova, altrimenti i programmi di posta che la usano \
                         saranno rifiutati.",
                        duration(*period, Language::It)
                    ),
                    Reminder::Expired => format!(
                        "La {called} è scaduta il {d}: in Gestione account, Sicurezza e password, premi Posticipa \
                         scadenza o generane una nuova. Fino ad allora i programmi di posta che la usano vengono \
                         rifiutati."
                    ),
                }
            }
        }
    }

    fn english(&self, zone: &TimeZone) -> String {
        let date = |t: &Timestamp| fmt_time(*t, zone);
        match self {
            Said::AppPasswordGenerated {
                name,
                until,
                by_operator,
            } => {
                let until = until.map_or(String::new(), |u| format!("; it works until {}", date(&u)));
                let called = app_password_called(name, Language::En);
                if *by_operator {
                    format!("An operator generated the {called}{until}.")
                } else {
                    format!("The {called} was generated{until}.")
                }
            }
            Said::AppPasswordRegenerated {
                name,
                until,
                by_operator,
            } => {
                let until = until.map_or(String::new(), |u| {
                    format!(" The new one works until {}.", date(&u))
                });
                let called = app_password_called(name, Language::En);
                if *by_operator {
                    format!("An operator generated a new {called}; the previous one no longer works.{until}")
                } else {
                    format!("A new {called} was generated; the previous one no longer works.{until}")
                }
            }
            Said::AppPasswordPostponed { name, until } => format!(
                "The expiry of the {} was postponed: the same password now works until {}.",
                app_password_called(name, Language::En),
                date(until)
            ),
            Said::AppPasswordsDeactivated { names, by_operator } => {
                let text = match (names.as_slice(), by_operator) {
                    ([one], false) => {
                        format!("The {} was deactivated", app_password_called(one, Language::En))
                    }
                    ([one], true) => format!(
                        "An operator deactivated the {}",
                        app_password_called(one, Language::En)
                    ),
                    (many, false) => format!("The app passwords {} were deactivated", quoted(many)),
                    (many, true) => {
                        format!("An operator deactivated the app passwords {}", quoted(many))
                    }
                };
                format!("{text}: mail programs using them can no longer log in.")
            }
            Said::ProtocolsNarrowed { passwords } => {
                let told: Vec<String> = passwords
                    .iter()
                    .map(|n| {
                        if n.scope.is_empty() {
                            format!(
                                "the app password \"{}\" no longer works: none of its protocols is enabled",
                                n.name
                            )
                        } else {
                            format!("the app password \"{}\" now works only with {}", n.name, n.scope)
                        }
                    })
                    .collect();
                format!("Mail protocols changed: {}.", told.join("; "))
            }
            Said::MainPasswordChanged => "The main password of the mailbox was changed.".into(),
            Said::ContactChanged { old: Some(old), new } => format!(
                "The contact e-mail for notices was changed from {old} to {new}. If you did not ask for this, \
                 contact support."
            ),
            Said::ContactChanged { old: None, new } => {
                format!("Notices will now be sent to {new} too.")
            }
            Said::TwoFactorOn { passkey } => format!(
                "Two-step verification was turned on with {}: mail programs now need an app password.",
                if *passkey { "a passkey" } else { "an authenticator app" }
            ),
            Said::TwoFactorOff { by_operator: false } => "Two-step verification was turned off and the app \
                                                          password revoked: the mailbox is less secure."
                .into(),
            Said::TwoFactorOff { by_operator: true } => "An operator turned two-step verification off and \
                                                         revoked the app password: the mailbox is less secure. \
                                                         If you did not ask for this, contact support."
                .into(),
            Said::DeviceReplaced { passkey } => format!(
                "A new device was associated for two-step verification: {}.",
                if *passkey { "a passkey" } else { "an authenticator app" }
            ),
            Said::RecoveryCodeUsed { left } => format!(
                "A recovery code was used instead of the device's two-step verification code: {left} are left. \
                 If this was not you, someone knows the main password and a recovery code: change the main \
                 password and generate new recovery codes."
            ),
            Said::RecoveryCodesRenewed => "New two-step verification recovery codes were generated: the previous \
                                           ones no longer work."
                .into(),
            Said::PasskeyCloned => "The associated passkey answered with a counter that did not move forward: it \
                                    may have been copied. It was refused. If this was not you, change the main \
                                    password and replace the device."
                .into(),
            Said::ReplaceStarted => "Replacement of the two-step verification device started, authorised from \
                                     the current device."
                .into(),
            Said::ReplaceByOperator => "An operator started replacing the two-step verification device without \
                                        a code from the current device. If you did not ask for this, contact \
                                        support."
                .into(),
            Said::MainPasswordUsed {
                at,
                client,
                protocol,
                login,
            } => format!(
                "The main password of the mailbox was used in a mail program on {} from {client} ({protocol}, \
                 login {login}) while two-step verification is on: it was refused. If this was not you, someone \
                 knows the main password: change it. If it was a mail program of yours, give it an app password.",
                date(at)
            ),
            Said::CodesGuessed {
                at,
                client,
                tries,
                blocked_seconds,
            } => format!(
                "Someone who knows the main password tried {tries} wrong two-step verification codes (the last on {} \
                 from {client}): entering codes is blocked for {}, the right code too. If this was not you, change \
                 the main password now.",
                date(at),
                duration(Period::seconds(*blocked_seconds), Language::En)
            ),
            Said::MainPasswordBreached { at, protocol, refused } => {
                let then = if *refused {
                    "Until you change it, mail programs using it are refused."
                } else {
                    "Anyone who tries it can get into the mailbox: change it now."
                };
                format!(
                    "The main password of the mailbox, used on {} ({protocol}), appears in lists of stolen \
                     passwords: change it. {then} Turn on two-step verification too.",
                    date(at)
                )
            }
            Said::NewPlace {
                at,
                password,
                new,
                network,
                client,
                protocol,
                software,
            } => {
                let which = password.as_deref().map_or_else(
                    || "main password".to_owned(),
                    |n| app_password_called(n, Language::En),
                );
                let program = software
                    .as_deref()
                    .map_or(String::new(), |s| format!(", program \"{s}\""));
                let first = match new {
                    PlaceKind::Network => "the first time from this network",
                    PlaceKind::Software => "the first time with this program",
                };
                let act = if password.is_some() {
                    "If this was not you, press \"It wasn't me\" in this notice's e-mail or deactivate the password \
                     on the account page: the programs using it are disconnected at once; then change the main \
                     password."
                } else {
                    "If this was not you, someone knows the main password: change it now and turn on two-step \
                     verification."
                };
                format!(
                    "The {which} was used on {} from {client} (network {network}, {protocol}{program}): {first}. If \
                     this was you, there is nothing to do. {act}",
                    date(at)
                )
            }
            Said::Reminder {
                name,
                expires_at,
                reminder,
            } => {
                let d = date(expires_at);
                let called = app_password_called(name, Language::En);
                match reminder {
                    Reminder::PostponeOpens => format!(
                        "The {called} expires on {d}. From now on you can postpone its expiry: on the account \
                         page, Security and passwords, press Postpone expiry; the same password goes on working."
                    ),
                    Reminder::Before { period } => format!(
                        "The {called} expires on {d} (in {}): on the account page, Security and passwords, \
                         postpone its expiry or generate a new one, or mail programs using it will be refused.",
                        duration(*period, Language::En)
                    ),
                    Reminder::Expired => format!(
                        "The {called} expired on {d}: on the account page, Security and passwords, postpone its \
                         expiry or generate a new one. Until then mail programs using it are refused."
                    ),
                }
            }
        }
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A period in words: "3 giorni", "1 month 2 days".
pub fn duration(p: Period, language: Language) -> String {
    let (months, days, seconds) = p.parts();
    let (hours, rest) = (seconds / 3_600, seconds % 3_600);
    let (minutes, secs) = (rest / 60, rest % 60);
    let units: [(u64, &str, &str); 5] = match language {
        Language::It => [
            (u64::from(months), "mese", "mesi"),
            (u64::from(days), "giorno", "giorni"),
            (hours, "ora", "ore"),
            (minutes, "minuto", "minuti"),
            (secs, "secondo", "secondi"),
        ],
        Language::En => [
            (u64::from(months), "month", "months"),
            (u64::from(days), "day", "days"),
            (hours, "hour", "hours"),
            (minutes, "minute", "minutes"),
            (secs, "second", "seconds"),
        ],
    };
    let mut out = String::new();
    for (n, one, many) in units {
        if n == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{n} {}", if n == 1 { one } else { many });
    }
    out
}

/// A warning a person must accept, in `language` (the CLI's prompt, the page's
/// confirmation).
pub fn warning(w: &crate::policy::mailbox::Warning, language: Language) -> String {
    use crate::policy::mailbox::Warning as W;
    match (w, language) {
        (W::RemoveMailbox { address }, Language::En) => format!(
            "Removing {address} deletes its main password, multi-user accounts, 2FA device and app password: \
             no mail program will be able to log in. Its access history is kept."
        ),
        (W::RemoveMailbox { address }, Language::It) => format!(
            "Eliminando {address} si cancellano la password principale, gli account multiutente, il dispositivo \
             della verifica in 2 passaggi e la password per programmi di posta: nessun programma di posta potrà \
             più accedere. Lo storico accessi resta."
        ),
        (W::DeactivateAppPassword, Language::En) => {
            "Deactivating the app password ends access for every mail program that uses it, at once. The main \
             password still does not work in mail programs while two-step verification is on."
                .into()
        }
        (W::DeactivateAppPassword, Language::It) => {
            "I programmi di posta che usano questa password non potranno più accedere alla casella.".into()
        }
        (W::DisableTwoFactor, Language::En) => {
            "Turning off two-step verification lowers the security of the mailbox (\"diminuirai il livello di \
             sicurezza\"). Its app password is revoked and the main password works in mail programs again."
                .into()
        }
        (W::DisableTwoFactor, Language::It) => {
            "Disattivando la verifica in 2 passaggi diminuirai il livello di sicurezza della casella: la password \
             per programmi di posta sarà revocata e i programmi di posta useranno di nuovo la password principale."
                .into()
        }
    }
}

/// Where a code was asked, in Italian.
fn code_use_it(u: CodeUse) -> &'static str {
    match u {
        CodeUse::Login => "accesso",
        CodeUse::Confirm => "conferma del dispositivo",
        CodeUse::Disable => "disattivazione della verifica in 2 passaggi",
        CodeUse::Replace => "cambio del dispositivo",
    }
}

/// What got an accepted attempt in, in the reader's words: the main password, or which
/// app password.
pub fn got_in(
    credential: crate::policy::login::CredentialKind,
    app_password: Option<&str>,
    language: Language,
) -> String {
    use crate::policy::login::CredentialKind as K;
    match (credential, app_password, language) {
        (K::App, Some(name), _) => app_password_called(name, language),
        (K::App, None, Language::It) => "password per programmi di posta".into(),
        (K::App, None, Language::En) => "password for mail programs".into(),
        (K::Main, _, Language::It) => "password principale".into(),
        (K::Main, _, Language::En) => "main password".into(),
        (K::Code, _, Language::It) => "codice della verifica in 2 passaggi".into(),
        (K::Code, _, Language::En) => "2FA code".into(),
        (K::Unknown, _, _) => String::new(),
    }
}

/// An app password as the owner knows it: the only one of the default configuration is
/// "the password for mail programs" (as the provider's guides call it), others by name.
pub fn app_password_called(name: &str, language: Language) -> String {
    let default = name == crate::policy::app_password::DEFAULT_NAME;
    match (default, language) {
        (true, Language::It) => "password per programmi di posta".into(),
        (true, Language::En) => "password for mail programs".into(),
        (false, Language::It) => format!("password per programmi di posta «{name}»"),
        (false, Language::En) => format!("app password \"{name}\""),
    }
}

/// A running block, in English ("login name blocked for 30s more after …").
fn block_running_en(b: &BlockNote) -> String {
    let s = b.seconds;
    match b.subject {
        Subject::Address => format!(
            "client {} blocked for {s}s more after repeated failed logins",
            b.network
        ),
        Subject::Name => format!("login name blocked for {s}s more after repeated failed logins"),
        Subject::Password => {
            format!("password of the account blocked for {s}s more after repeated wrong passwords")
        }
        Subject::SecondFactor => {
            format!("2FA codes of the mailbox blocked for {s}s more after repeated wrong codes")
        }
    }
}

/// A running block, in Italian.
fn block_running_it(b: &BlockNote) -> String {
    let left = duration(Period::seconds(b.seconds), Language::It);
    match b.subject {
        Subject::Address => format!(
            "indirizzo {} bloccato per altri {left} dopo ripetuti accessi falliti",
            b.network
        ),
        Subject::Name => {
            format!("nome utente bloccato per altri {left} dopo ripetuti accessi falliti")
        }
        Subject::Password => {
            format!(
                "password della casella bloccata per altri {left} dopo ripetute password errate"
            )
        }
        Subject::SecondFactor => format!(
            "codici della verifica in 2 passaggi bloccati per altri {left} dopo ripetuti codici errati"
        ),
    }
}

/// A block an attempt started, in English.
fn block_started_en(b: &BlockNote) -> String {
    let s = b.seconds;
    match b.subject {
        Subject::Address => format!("client {} blocked for {s}s", b.network),
        Subject::Name => format!("login name blocked for {s}s"),
        Subject::Password => format!("password of the account blocked for {s}s"),
        Subject::SecondFactor => format!(
            "2FA codes of the mailbox blocked for {s}s after {} wrong codes",
            b.failures.unwrap_or(0)
        ),
    }
}

/// A block an attempt started, in Italian.
fn block_started_it(b: &BlockNote) -> String {
    let d = duration(Period::seconds(b.seconds), Language::It);
    match b.subject {
        Subject::Address => format!("indirizzo {} bloccato per {d}", b.network),
        Subject::Name => format!("nome utente bloccato per {d}"),
        Subject::Password => format!("password della casella bloccata per {d}"),
        Subject::SecondFactor => format!(
            "codici della verifica in 2 passaggi bloccati per {d} dopo {} codici errati",
            b.failures.unwrap_or(0)
        ),
    }
}

/// The access history's reasons in English: what the CLI, the API and the logs show (and
/// what rows from before reasons were codes said).
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnknownLogin => f.write_str("unknown login name"),
            Reason::ProtocolDisabled(p) => write!(f, "protocol {p} is not enabled for the mailbox"),
            Reason::ArchiveNotInPlan => {
                f.write_str("the plan does not include the security archive")
            }
            Reason::WrongPassword => f.write_str("wrong password"),
            Reason::MainPasswordUnder2fa => f.write_str(
                "main password used while two-step verification is on; an app password is required",
            ),
            Reason::NoActiveAppPassword => {
                f.write_str("two-step verification is on and no app password is active")
            }
            Reason::WrongAppPassword => f.write_str("not the current app password"),
            Reason::MainPasswordChanged => f.write_str("the main password was changed"),
            Reason::AppPasswordExpired(at) => {
                write!(f, "app password expired on {}", fmt_zoned(at))
            }
            Reason::OutsideNetworks { name } => {
                write!(f, "app password '{name}' used outside its allowed networks")
            }
            Reason::BreachedPassword => {
                f.write_str("the main password appears in lists of stolen passwords")
            }
            Reason::OutOfScope { name, scope } => {
                write!(f, "app password '{name}' is limited to {scope}")
            }
            Reason::Throttled(b) => write!(f, "throttled: {}", block_running_en(b)),
            Reason::Overloaded => f.write_str("password verification saturated; try again later"),
            Reason::UpstreamUnavailable(why) => write!(f, "upstream unavailable: {why}"),
            Reason::RefusedByUpstream => f.write_str("passed to upstream: refused there"),
            Reason::PassedToUpstream => f.write_str("passed to upstream: accepted there"),
            Reason::Malformed(why) => write!(f, "malformed credentials: {why}"),
            Reason::StoreUnavailable(why) => write!(f, "store unavailable: {why}"),
            Reason::BlocksStarted(blocks) => {
                let parts: Vec<String> = blocks.iter().map(block_started_en).collect();
                write!(f, "throttle: {}", parts.join("; "))
            }
            Reason::SessionEnded(why) => write!(f, "session ended: {why}"),
            Reason::CodeAccepted => f.write_str("main password and 2FA code"),
            Reason::PasskeyAccepted => f.write_str("main password and passkey"),
            Reason::ProfileDownloaded { name, by_link } => write!(
                f,
                "configuration profile with app password {name:?} downloaded{}",
                if *by_link {
                    " by its one-time link"
                } else {
                    ""
                }
            ),
            Reason::WrongCode { purpose, reused } => write!(
                f,
                "{} ({})",
                if *reused {
                    "2FA code already used"
                } else {
                    "wrong 2FA code"
                },
                purpose.as_str()
            ),
            Reason::CodeBlocked { purpose, block } => write!(
                f,
                "2FA code ({}): throttled: {}",
                purpose.as_str(),
                block_running_en(block)
            ),
            Reason::Text(text) => f.write_str(text),
        }
    }
}

/// A reason of the access history in `language` (the page's Storico accessi).
pub fn reason(r: &Reason, language: Language) -> String {
    if language == Language::En {
        return r.to_string();
    }
    match r {
        Reason::UnknownLogin => "nome utente sconosciuto".into(),
        Reason::ProtocolDisabled(p) => format!("protocollo {p} non attivo per la casella"),
        Reason::ArchiveNotInPlan => "il piano non include l'archivio di sicurezza".into(),
        Reason::WrongPassword => "password errata".into(),
        Reason::MainPasswordUnder2fa => {
            "password principale usata con la verifica in 2 passaggi attiva: serve una \
                                         password per programmi di posta"
                .into()
        }
        Reason::NoActiveAppPassword => {
            "verifica in 2 passaggi attiva e nessuna password per programmi di posta attiva".into()
        }
        Reason::WrongAppPassword => "non è la password per programmi di posta attuale".into(),
        Reason::MainPasswordChanged => "la password principale è stata cambiata".into(),
        Reason::AppPasswordExpired(at) => format!(
            "password per programmi di posta scaduta il {}",
            fmt_zoned(at)
        ),
        Reason::OutsideNetworks { name } => {
            format!("la password per programmi di posta '{name}' usata fuori dalle reti consentite")
        }
        Reason::BreachedPassword => {
            "la password principale compare in elenchi di password rubate".into()
        }
        Reason::OutOfScope { name, scope } => {
            format!("la password per programmi di posta '{name}' funziona solo con {scope}")
        }
        Reason::Throttled(b) => format!("troppi tentativi: {}", block_running_it(b)),
        Reason::Overloaded => "servizio momentaneamente sovraccarico".into(),
        Reason::UpstreamUnavailable(why) => format!("server di posta non raggiungibile: {why}"),
        Reason::RefusedByUpstream => "verificata dal server di posta: rifiutata".into(),
        Reason::PassedToUpstream => "verificata dal server di posta: accettata".into(),
        Reason::Malformed(why) => format!("credenziali non valide: {why}"),
        Reason::StoreUnavailable(why) => format!("servizio non disponibile: {why}"),
        Reason::BlocksStarted(blocks) => {
            let parts: Vec<String> = blocks.iter().map(block_started_it).collect();
            format!("troppi tentativi: {}", parts.join("; "))
        }
        Reason::SessionEnded(why) => format!("sessione chiusa: {}", reason(why, language)),
        Reason::CodeAccepted => "password principale e codice della verifica in 2 passaggi".into(),
        Reason::PasskeyAccepted => "password principale e passkey".into(),
        Reason::ProfileDownloaded { name, by_link } => format!(
            "profilo di configurazione con la password «{name}» scaricato{}",
            if *by_link { " dal link monouso" } else { "" }
        ),
        Reason::WrongCode { purpose, reused } => format!(
            "codice della verifica in 2 passaggi {} ({})",
            if *reused { "già usato" } else { "errato" },
            code_use_it(*purpose)
        ),
        Reason::CodeBlocked { purpose, block } => format!(
            "codice della verifica in 2 passaggi ({}): troppi tentativi: {}",
            code_use_it(*purpose),
            block_running_it(block)
        ),
        Reason::Text(text) => legacy_reason(text, language),
    }
}

/// Where a code was asked, as rows from before reasons were codes wrote it.
const CODE_USES: &[(&str, &str)] = &[
    ("login", "accesso"),
    ("confirm", "conferma del dispositivo"),
    ("disable", "disattivazione della verifica in 2 passaggi"),
    ("replace", "cambio del dispositivo"),
];

/// A reason of a row from before reasons were codes (its English words, as then stored),
/// in the owner's words.
fn legacy_reason(reason: &str, language: Language) -> String {
    if language == Language::En {
        return reason.to_owned();
    }
    let fixed: &[(&str, &str)] = &[
        ("unknown login name", "nome utente sconosciuto"),
        ("unknown login", "nome utente sconosciuto"),
        ("invalid login name", "nome utente non valido"),
        ("wrong password", "password errata"),
        (
            "main password used while two-step verification is on; an app password is required",
            "password principale usata con la verifica in 2 passaggi attiva: serve una password per programmi di posta",
        ),
        (
            "two-step verification is on and no app password is active",
            "verifica in 2 passaggi attiva e nessuna password per programmi di posta attiva",
        ),
        (
            "the main password was changed",
            "la password principale è stata cambiata",
        ),
        (
            "not the current app password",
            "non è la password per programmi di posta attuale",
        ),
        (
            "the plan does not include the security archive",
            "il piano non include l'archivio di sicurezza",
        ),
        (
            "password verification saturated; try again later",
            "servizio momentaneamente sovraccarico",
        ),
        (
            "main password and 2FA code",
            "password principale e codice della verifica in 2 passaggi",
        ),
        (
            "2FA code already used",
            "codice della verifica in 2 passaggi già usato",
        ),
        (
            "wrong 2FA code",
            "codice della verifica in 2 passaggi errato",
        ),
        (
            "passed to upstream: refused there",
            "verificata dal server di posta: rifiutata",
        ),
        (
            "passed to upstream: accepted there",
            "verificata dal server di posta: accettata",
        ),
    ];
    if let Some((_, it)) = fixed.iter().find(|(en, _)| *en == reason) {
        return (*it).to_owned();
    }
    if let Some(rest) = reason.strip_prefix("session ended: ") {
        return format!("sessione chiusa: {}", legacy_reason(rest, language));
    }
    for (en, it) in CODE_USES {
        if let Some(base) = reason.strip_suffix(&format!(" ({en})")) {
            return format!("{} ({it})", legacy_reason(base, language));
        }
        if let Some(rest) = reason.strip_prefix(&format!("2FA code ({en}): ")) {
            return format!(
                "codice della verifica in 2 passaggi ({it}): {}",
                legacy_reason(rest, language)
            );
        }
    }
    let prefixed: &[(&str, &str)] = &[
        ("throttle: ", "troppi tentativi: "),
        ("throttled: ", "troppi tentativi: "),
        (
            "app password expired on ",
            "password per programmi di posta scaduta il ",
        ),
        (
            "upstream unavailable: ",
            "server di posta non raggiungibile: ",
        ),
        ("store unavailable: ", "servizio non disponibile: "),
        ("malformed credentials: ", "credenziali non valide: "),
    ];
    for (en, it) in prefixed {
        if let Some(rest) = reason.strip_prefix(en) {
            return format!("{it}{rest}");
        }
    }
    if let Some(rest) = reason.strip_prefix("protocol ")
        && let Some(p) = rest.strip_suffix(" is not enabled for the mailbox")
    {
        return format!("protocollo {p} non attivo per la casella");
    }
    if let Some(rest) = reason.strip_prefix("app password '")
        && let Some((name, scope)) = rest.split_once("' is limited to ")
    {
        return format!("la password per programmi di posta '{name}' funziona solo con {scope}");
    }
    reason.to_owned()
}

/// A rule's refusal, in `language`: the words of the rule, as the owner reads them on the
/// page. (The CLI and the API keep the rule's English text and its stable code.)
pub fn refusal(e: &crate::policy::PolicyError, language: Language) -> String {
    use crate::policy::PolicyError as P;
    use crate::policy::fmt_zoned;
    if language == Language::En {
        return e.to_string();
    }
    match e {
        P::MigrationInProgress => "La casella è in migrazione: la verifica in 2 passaggi non può essere attivata \
                                   per tutto il periodo della migrazione."
            .into(),
        P::TwoFactorAlreadyOn => "La verifica in 2 passaggi è già attiva: per cambiare il dispositivo associato usa \
                                  Cambia dispositivo."
            .into(),
        P::TwoFactorOff(_) => "La verifica in 2 passaggi non è attiva: le password per programmi di posta esistono \
                               solo con la verifica in 2 passaggi attiva."
            .into(),
        P::NoPendingDevice => "Nessun dispositivo è in attesa di essere associato: avvia prima l'attivazione o il \
                               cambio del dispositivo."
            .into(),
        P::InvalidCode => "Il codice non è valido: inserisci il codice di 6 cifre che l'app di autenticazione \
                           mostra ora."
            .into(),
        P::CodeReused => "Questo codice è già stato usato: attendi il codice successivo nell'app di autenticazione."
            .into(),
        P::PasskeyNeeded => "Il dispositivo associato è una passkey: conferma con la passkey (o con un codice di \
                             recupero)."
            .into(),
        P::NoProtocolEnabled => "Non hai abilitato gli accessi per usare la casella sui programmi di posta: abilita \
                                 almeno uno dei protocolli IMAP, POP, SMTP."
            .into(),
        P::AppPasswordActive { name, expires_at } => format!(
            "La password per programmi di posta \"{name}\" è già attiva fino al {}: genera una nuova password per \
             sostituirla, o posticipane la scadenza.",
            fmt_zoned(expires_at)
        ),
        P::NoAppPassword => "Non c'è nessuna password per programmi di posta: generane una.".into(),
        P::NoSuchAppPassword(n) => format!("Non c'è nessuna password per programmi di posta \"{n}\"."),
        P::AppPasswordNameRequired(names) => {
            format!("La casella ha più password per programmi di posta ({names}): indica quale.")
        }
        P::BadAppPasswordName(n) => format!(
            "Nome non valido \"{n}\": usa da 1 a 40 lettere, cifre, spazi e - _ . '"
        ),
        P::TooManyAppPasswords { limit } => format!(
            "La casella ha già {limit} password per programmi di posta, il massimo: disattivane una prima."
        ),
        P::ScopeNotEnabled { enabled } => format!(
            "Una password per programmi di posta può essere limitata solo ai protocolli attivi per la casella \
             ({enabled}), almeno uno."
        ),
        P::PostponeTooEarly {
            opens_at,
            expires_at,
        } => format!(
            "Potrai posticipare la scadenza dal {} (la password scade il {}); prima di allora, se serve, genera una \
             nuova password.",
            fmt_zoned(opens_at),
            fmt_zoned(expires_at)
        ),
        P::OverrideNeedsOperator => "Per cambiare il dispositivo serve un codice dal dispositivo attuale; senza, \
                                     solo l'assistenza può autorizzarlo."
            .into(),
        other => other.to_string(),
    }
}

/// An e-mail's subject: the mailbox and what the notice is about.
pub fn subject(kind: NoticeKind, address: &str, language: Language) -> String {
    let what = match (language, kind) {
        (Language::It, NoticeKind::PasswordChanged) => "la password principale è stata modificata",
        (Language::It, NoticeKind::TwoFactor) => "verifica in 2 passaggi",
        (Language::It, NoticeKind::AppPassword) => "password per programmi di posta",
        (Language::It, NoticeKind::ContactChanged) => "l'email di contatto è stata cambiata",
        (Language::It, NoticeKind::MainPasswordUsed) => {
            "la password principale è stata usata in un programma di posta"
        }
        (Language::It, NoticeKind::ExpiryReminder) => {
            "scadenza della password per programmi di posta"
        }
        (Language::En, NoticeKind::PasswordChanged) => "the main password was changed",
        (Language::En, NoticeKind::TwoFactor) => "two-step verification",
        (Language::En, NoticeKind::AppPassword) => "app password for mail programs",
        (Language::En, NoticeKind::ContactChanged) => "the contact e-mail was changed",
        (Language::En, NoticeKind::MainPasswordUsed) => {
            "the main password was used in a mail program"
        }
        (Language::En, NoticeKind::ExpiryReminder) => "the app password expires",
        (Language::It, NoticeKind::CodesGuessed) => {
            "tentativi di indovinare i codici della verifica in 2 passaggi"
        }
        (Language::En, NoticeKind::CodesGuessed) => "someone is trying two-step verification codes",
        (Language::It, NoticeKind::NewPlace) => "una password è stata usata da un posto nuovo",
        (Language::En, NoticeKind::NewPlace) => "a password was used from somewhere new",
        (Language::It, NoticeKind::MainPasswordBreached) => {
            "la password principale compare in elenchi di password rubate: cambiala"
        }
        (Language::En, NoticeKind::MainPasswordBreached) => {
            "the main password appears in lists of stolen passwords: change it"
        }
    };
    format!("{address}: {what}")
}

/// An e-mail's subject: the mailbox and what happened, as the notice said it (the
/// notice's kind for one that kept only its words).
pub fn email_subject(notice: &Notice, address: &str, l: &Locale) -> String {
    let day = |t: &Timestamp| t.to_zoned(l.zone.clone()).strftime("%d/%m/%Y").to_string();
    let it = l.language == Language::It;
    let called = |name: &str| app_password_called(name, l.language);
    let what = match &notice.said {
        Some(Said::AppPasswordGenerated { name, .. }) if it => format!("{} generata", called(name)),
        Some(Said::AppPasswordGenerated { name, .. }) => format!("{} generated", called(name)),
        Some(Said::AppPasswordRegenerated { name, .. }) if it => {
            format!("{} rigenerata", called(name))
        }
        Some(Said::AppPasswordRegenerated { name, .. }) => {
            format!("{} generated anew", called(name))
        }
        Some(Said::AppPasswordPostponed { name, until }) if it => {
            format!("{}: scadenza posticipata al {}", called(name), day(until))
        }
        Some(Said::AppPasswordPostponed { name, until }) => {
            format!("{}: expiry postponed to {}", called(name), day(until))
        }
        Some(Said::AppPasswordsDeactivated { names, .. }) => match (names.as_slice(), it) {
            ([one], true) => format!("{} disattivata", called(one)),
            ([one], false) => format!("{} deactivated", called(one)),
            (_, true) => "password per programmi di posta disattivate".into(),
            (_, false) => "app passwords deactivated".into(),
        },
        Some(Said::Reminder {
            name,
            expires_at,
            reminder,
        }) => match (reminder, it) {
            (Reminder::Expired, true) => format!("la {} è scaduta", called(name)),
            (Reminder::Expired, false) => format!("the {} expired", called(name)),
            (_, true) => format!("la {} scade il {}", called(name), day(expires_at)),
            (_, false) => format!("the {} expires on {}", called(name), day(expires_at)),
        },
        Some(Said::TwoFactorOn { .. }) if it => "verifica in 2 passaggi attivata".into(),
        Some(Said::TwoFactorOn { .. }) => "two-step verification turned on".into(),
        Some(Said::TwoFactorOff { .. }) if it => "verifica in 2 passaggi disattivata".into(),
        Some(Said::TwoFactorOff { .. }) => "two-step verification turned off".into(),
        Some(Said::DeviceReplaced { .. }) if it => {
            "nuovo dispositivo per la verifica in 2 passaggi".into()
        }
        Some(Said::DeviceReplaced { .. }) => "new two-step verification device".into(),
        Some(Said::RecoveryCodeUsed { left }) if it => {
            format!("codice di recupero usato, ne restano {left}")
        }
        Some(Said::RecoveryCodeUsed { left }) => format!("recovery code used, {left} left"),
        Some(Said::NewPlace { password, .. }) => {
            let which = match (password, it) {
                (Some(n), _) => called(n),
                (None, true) => "password principale".into(),
                (None, false) => "main password".into(),
            };
            if it {
                format!("la {which} è stata usata da un posto nuovo: sei stato tu?")
            } else {
                format!("the {which} was used from somewhere new: was it you?")
            }
        }
        _ => return subject(notice.kind, address, l.language),
    };
    format!("{address}: {what}")
}

/// An e-mail's body: the mailbox, when, the text, where the owner acts (the page's
/// address, when configured), and that nobody reads replies.
pub fn email_body(
    address: &str,
    at: Timestamp,
    text: &str,
    page: Option<&str>,
    not_me: Option<&str>,
    l: &Locale,
) -> String {
    let when = fmt_time(at, &l.zone);
    match l.language {
        Language::It => {
            let page = page.map_or(String::new(), |p| format!("Gestione account: {p}\n"));
            let link = not_me.map_or(String::new(), |u| {
                format!(
                    "Non sono stato io: apri questo collegamento per disattivare subito la password (vale 7 \
                     giorni, una volta sola):\n{u}\n\n"
                )
            });
            format!(
                "Casella: {address}\nQuando: {when}\n\n{text}\n\n{link}{page}-- \nQuesto messaggio è stato \
                 inviato automaticamente per la tua casella di posta; le risposte non vengono lette.\n"
            )
        }
        Language::En => {
            let page = page.map_or(String::new(), |p| format!("Account page: {p}\n"));
            let link = not_me.map_or(String::new(), |u| {
                format!(
                    "It wasn't me: open this link to deactivate the password at once (it works for 7 days, \
                     once):\n{u}\n\n"
                )
            });
            format!(
                "Mailbox: {address}\nWhen: {when}\n\n{text}\n\n{link}{page}-- \nThis message was sent \
                 automatically about your mailbox; replies are not read.\n"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rome(language: Language) -> Locale {
        Locale {
            language,
            zone: TimeZone::get("Europe/Rome").unwrap(),
        }
    }

    #[test]
    fn every_notice_is_said_in_both_languages_with_dates_in_the_zone() {
        let at: Timestamp = "2023-02-15T13:30:00Z".parse().unwrap();
        let r = Said::Reminder {
            name: "fatture".into(),
            expires_at: at,
            reminder: Reminder::Before {
                period: Period::days(3),
            },
        };
        let it = r.render(&rome(Language::It));
        assert_eq!(
            it,
            "La password per programmi di posta «fatture» scade il 15/02/2023 14:30 CET (tra 3 giorni): in \
             Gestione account, Sicurezza e password, premi Posticipa scadenza o generane una nuova, altrimenti i \
             programmi di posta che la usano saranno rifiutati."
        );
        let en = r.render(&rome(Language::En));
        assert!(
            en.contains("expires on 15/02/2023 14:30 CET (in 3 days)"),
            "{en}"
        );
    }

    /// As an Italian owner reads them: the default configuration's one password by the
    /// guides' name, the new expiry, who acted, a subject that says what happened; rows
    /// written before these fields read as before.
    #[test]
    fn notices_say_what_happened_who_did_it_and_until_when() {
        let at: Timestamp = "2026-12-06T09:30:00Z".parse().unwrap();
        let until: Timestamp = "2027-03-06T09:30:00Z".parse().unwrap();
        let it = rome(Language::It);
        let generated = Said::AppPasswordGenerated {
            name: crate::policy::app_password::DEFAULT_NAME.into(),
            until: Some(until),
            by_operator: false,
        };
        assert_eq!(
            generated.render(&it),
            "È stata generata la password per programmi di posta: funziona fino al 06/03/2027 10:30 CET."
        );
        let notice = Notice::said(at, generated, &it);
        assert_eq!(
            email_subject(&notice, "m@x.it", &it),
            "m@x.it: password per programmi di posta generata"
        );
        let off = Said::TwoFactorOff { by_operator: true };
        let text = off.render(&it);
        assert!(text.starts_with("Un operatore ha disattivato"), "{text}");
        assert!(!text.contains("hai diminuito"), "{text}");
        let gone = Said::AppPasswordsDeactivated {
            names: vec!["fatture".into()],
            by_operator: true,
        };
        assert_eq!(
            gone.render(&it),
            "Un operatore ha disattivato la password per programmi di posta «fatture»: i programmi di posta \
             che le usano non possono più accedere."
        );
        let expired = Notice::said(
            at,
            Said::Reminder {
                name: "default".into(),
                expires_at: until,
                reminder: Reminder::Expired,
            },
            &it,
        );
        assert_eq!(
            email_subject(&expired, "m@x.it", &it),
            "m@x.it: la password per programmi di posta è scaduta"
        );
        let soon = Notice::said(
            at,
            Said::Reminder {
                name: "default".into(),
                expires_at: until,
                reminder: Reminder::PostponeOpens,
            },
            &it,
        );
        assert_eq!(
            email_subject(&soon, "m@x.it", &it),
            "m@x.it: la password per programmi di posta scade il 06/03/2027"
        );
        // Kept before the fields existed: read, without them.
        let old: Said =
            serde_json::from_str(r#"{"said":"app_password_generated","name":"x"}"#).unwrap();
        assert_eq!(
            old,
            Said::AppPasswordGenerated {
                name: "x".into(),
                until: None,
                by_operator: false
            }
        );
        let old: Said = serde_json::from_str(r#"{"said":"two_factor_off"}"#).unwrap();
        assert_eq!(old, Said::TwoFactorOff { by_operator: false });
    }

    #[test]
    fn the_codes_alert_is_said_in_both_languages_without_a_secret() {
        let at: Timestamp = "2026-12-06T09:30:00Z".parse().unwrap();
        let said = Said::CodesGuessed {
            at,
            client: "192.0.2.7".into(),
            tries: 5,
            blocked_seconds: 30,
        };
        assert_eq!(said.kind(), NoticeKind::CodesGuessed);
        let it = said.render(&rome(Language::It));
        assert!(
            it.starts_with(
                "Qualcuno che conosce la password principale ha provato 5 codici errati"
            ) && it.contains("06/12/2026 10:30")
                && it.contains("192.0.2.7")
                && it.contains("bloccato per 30 secondi,"),
            "{it}"
        );
        let en = said.render(&rome(Language::En));
        assert!(
            en.contains("tried 5 wrong two-step verification codes"),
            "{en}"
        );
        assert!(subject(NoticeKind::CodesGuessed, "m@x.it", Language::It).starts_with("m@x.it: "));
        let json = serde_json::to_string(&said).unwrap();
        assert_eq!(serde_json::from_str::<Said>(&json).unwrap(), said);
    }

    #[test]
    fn code_attempts_in_the_history_are_put_in_the_owners_words() {
        let wrong = Reason::WrongCode {
            purpose: CodeUse::Disable,
            reused: false,
        };
        assert_eq!(
            reason(&wrong, Language::It),
            "codice della verifica in 2 passaggi errato (disattivazione della verifica in 2 passaggi)"
        );
        assert_eq!(reason(&wrong, Language::En), "wrong 2FA code (disable)");
        let reused = Reason::WrongCode {
            purpose: CodeUse::Login,
            reused: true,
        };
        assert_eq!(
            reason(&reused, Language::It),
            "codice della verifica in 2 passaggi già usato (accesso)"
        );
        let blocked = Reason::CodeBlocked {
            purpose: CodeUse::Replace,
            block: BlockNote {
                subject: Subject::SecondFactor,
                seconds: 30,
                network: "192.0.2.7".into(),
                failures: None,
            },
        };
        assert_eq!(
            reason(&blocked, Language::It),
            "codice della verifica in 2 passaggi (cambio del dispositivo): troppi tentativi: codici della verifica in 2 passaggi bloccati per altri 30 secondi dopo ripetuti codici errati"
        );
        assert_eq!(
            blocked.to_string(),
            "2FA code (replace): throttled: 2FA codes of the mailbox blocked for 30s more after repeated wrong codes"
        );
        // A row written before reasons were codes is still read, in both languages.
        let old = Reason::Text("wrong 2FA code (login)".into());
        assert_eq!(
            reason(&old, Language::It),
            "codice della verifica in 2 passaggi errato (accesso)"
        );
        assert_eq!(reason(&old, Language::En), "wrong 2FA code (login)");
    }

    #[test]
    fn periods_in_words() {
        let p = |s: &str| s.parse::<Period>().unwrap();
        assert_eq!(duration(p("1d"), Language::It), "1 giorno");
        assert_eq!(duration(p("14d"), Language::It), "14 giorni");
        assert_eq!(duration(p("1mo 2d"), Language::En), "1 month 2 days");
        assert_eq!(duration(p("90m"), Language::En), "1 hour 30 minutes");
    }

    #[test]
    fn what_was_said_is_kept_and_read_back() {
        let s = Said::ContactChanged {
            old: Some("a@example.com".into()),
            new: "b@example.com".into(),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Said>(&json).unwrap(), s);
        let r = Said::Reminder {
            name: "x".into(),
            expires_at: Timestamp::UNIX_EPOCH,
            reminder: Reminder::Expired,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Said>(&json).unwrap(), r);
    }

    #[test]
    fn every_reason_is_put_in_the_owners_words() {
        use crate::policy::{Protocol, ProtocolSet};
        let zoned = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
        let block = BlockNote {
            subject: Subject::Address,
            seconds: 30,
            network: "203.0.113.9".into(),
            failures: Some(10),
        };
        let reasons = [
            Reason::UnknownLogin,
            Reason::ProtocolDisabled(Protocol::Pop3),
            Reason::ArchiveNotInPlan,
            Reason::WrongPassword,
            Reason::MainPasswordUnder2fa,
            Reason::MainPasswordChanged,
            Reason::NoActiveAppPassword,
            Reason::WrongAppPassword,
            Reason::AppPasswordExpired(zoned),
            Reason::OutOfScope {
                name: "fatture".into(),
                scope: {
                    let mut s = ProtocolSet::NONE;
                    s.insert(Protocol::Smtp);
                    s
                },
            },
            Reason::Throttled(block.clone()),
            Reason::Overloaded,
            Reason::UpstreamUnavailable("x".into()),
            Reason::Malformed("x".into()),
            Reason::StoreUnavailable("x".into()),
            Reason::RefusedByUpstream,
            Reason::PassedToUpstream,
            Reason::BlocksStarted(vec![block.clone()]),
            Reason::SessionEnded(Box::new(Reason::WrongPassword)),
            Reason::CodeAccepted,
            Reason::PasskeyAccepted,
            Reason::ProfileDownloaded {
                name: "iPhone".into(),
                by_link: true,
            },
        ];
        for r in reasons {
            let en = reason(&r, Language::En);
            let it = reason(&r, Language::It);
            assert_ne!(it, en, "{en} has Italian words");
            assert_eq!(en, r.to_string());
            // A row kept before reasons were codes, with these English words, reads the
            // same on the page.
            if !matches!(
                r,
                Reason::Throttled(_)
                    | Reason::BlocksStarted(_)
                    | Reason::ProfileDownloaded { .. }
                    | Reason::PasskeyAccepted
            ) {
                assert_eq!(reason(&Reason::Text(en.clone()), Language::It), it, "{en}");
            }
        }
        assert_eq!(
            reason(
                &Reason::SessionEnded(Box::new(Reason::WrongPassword)),
                Language::It
            ),
            "sessione chiusa: password errata"
        );
        assert_eq!(
            Reason::BlocksStarted(vec![block]).to_string(),
            "throttle: client 203.0.113.9 blocked for 30s"
        );
    }

    #[test]
    fn refusals_on_the_page_are_in_italian() {
        use crate::policy::PolicyError;
        for e in [
            PolicyError::MigrationInProgress,
            PolicyError::InvalidCode,
            PolicyError::CodeReused,
            PolicyError::NoProtocolEnabled,
            PolicyError::NoAppPassword,
            PolicyError::TooManyAppPasswords { limit: 2 },
        ] {
            assert_ne!(refusal(&e, Language::It), e.to_string());
            assert_eq!(refusal(&e, Language::En), e.to_string());
        }
    }

    #[test]
    fn languages_by_name() {
        assert_eq!("it".parse::<Language>().unwrap(), Language::It);
        assert_eq!("en".parse::<Language>().unwrap(), Language::En);
        assert!("de".parse::<Language>().is_err());
    }
}
