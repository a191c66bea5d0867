//! The page's words, in Italian (the provider's, as in the seeds) and English.

use crate::wording::Language;

/// Every label and sentence of the page.
#[allow(missing_docs)]
#[derive(Debug)]
pub struct Texts {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub title: &'static str,
    pub login_title: &'static str,
    pub login_name: &'static str,
    pub password: &'static str,
    pub log_in: &'static str,
    pub wrong_credentials: &'static str,
    pub code_title: &'static str,
    pub code_help: &'static str,
    pub code: &'static str,
    pub confirm: &'static str,
    pub wrong_code: &'static str,
    /// The code step is blocked; `{s}` is the seconds to wait.
    pub code_blocked: &'static str,
    pub unavailable: &'static str,
    pub log_out: &'static str,
    pub security: &'static str,
    pub mailbox: &'static str,
    pub two_factor: &'static str,
    pub on: &'static str,
    pub off: &'static str,
    pub device_since: &'static str,
    pub turn_on: &'static str,
    pub turn_off: &'static str,
    pub replace_device: &'static str,
    pub migration_blocks: &'static str,
    pub enable_help: &'static str,
    pub enable_uri: &'static str,
    pub replace_help: &'static str,
    pub disable_code: &'static str,
    pub app_passwords: &'static str,
    pub none_yet: &'static str,
    pub needs_2fa: &'static str,
    pub name: &'static str,
    pub active: &'static str,
    pub expired: &'static str,
    pub expiry: &'static str,
    pub protocols: &'static str,
    pub last_use: &'static str,
    pub never: &'static str,
    pub generate: &'static str,
    pub regenerate: &'static str,
    pub postpone: &'static str,
    pub postpone_from: &'static str,
    pub deactivate: &'static str,
    pub no_protocol: &'static str,
    pub client_settings: &'static str,
    pub client_settings_help: &'static str,
    pub server: &'static str,
    pub port: &'static str,
    pub security_kind: &'static str,
    pub user_name: &'static str,
    pub enable_a_protocol: &'static str,
    pub new_password: &'static str,
    pub copy: &'static str,
    pub copied: &'static str,
    pub close_warning: &'static str,
    pub shown_once: &'static str,
    pub back: &'static str,
    pub save: &'static str,
    pub history: &'static str,
    pub when: &'static str,
    pub client: &'static str,
    pub protocol: &'static str,
    pub result: &'static str,
    pub reason: &'static str,
    pub accepted: &'static str,
    pub refused: &'static str,
    pub temporary: &'static str,
    pub newer: &'static str,
    pub older: &'static str,
    pub notices: &'static str,
    pub no_notices: &'static str,
    pub confirm_title: &'static str,
    pub cancel: &'static str,
    pub regenerate_warning: &'static str,
    pub forbidden: &'static str,
    pub not_found: &'static str,
    pub bad_request: &'static str,
    pub too_large: &'static str,
    pub done: &'static str,
}

/// Italiano.
pub const IT: Texts = Texts {
    lang: "it",
    other_lang: "en",
    other_lang_name: "English",
    title: "Gestione account",
    login_title: "Accedi a Gestione account",
    login_name: "Indirizzo email o nome utente",
    password: "Password",
    log_in: "Accedi",
    wrong_credentials: "Credenziali errate.",
    code_title: "Verifica in 2 passaggi",
    code_help: "Inserisci il codice di 6 cifre generato dall'app di autenticazione del dispositivo associato.",
    code: "Codice",
    confirm: "Conferma",
    wrong_code: "Codice errato o già usato.",
    code_blocked: "Troppi codici errati: per sicurezza l'inserimento dei codici è bloccato, anche per il codice \
                   giusto. Riprova tra {s} secondi. Ti abbiamo inviato un avviso.",
    unavailable: "Il servizio non è disponibile in questo momento: riprova tra poco.",
    log_out: "Esci",
    security: "Sicurezza e password",
    mailbox: "Casella",
    two_factor: "Verifica in 2 passaggi",
    on: "attiva",
    off: "non attiva",
    device_since: "Dispositivo associato dal",
    turn_on: "Attiva",
    turn_off: "Disattiva",
    replace_device: "Cambia dispositivo",
    migration_blocks: "La casella è in migrazione: la verifica in 2 passaggi non può essere modificata fino al termine.",
    enable_help: "Inquadra il codice QR con l'app di autenticazione (per esempio Google Authenticator o Microsoft Authenticator), poi inserisci il codice di 6 cifre che mostra.",
    enable_uri: "Se non puoi inquadrare il codice, inserisci nell'app questo indirizzo:",
    replace_help: "Inserisci un codice dal dispositivo associato ora: poi potrai associare quello nuovo.",
    disable_code: "Per confermare, inserisci un codice dal dispositivo associato.",
    app_passwords: "Password per programmi di posta",
    none_yet: "Nessuna password per programmi di posta.",
    needs_2fa: "Per generare una password per programmi di posta attiva prima la verifica in 2 passaggi.",
    name: "Nome",
    active: "attiva",
    expired: "scaduta",
    expiry: "Scadenza",
    protocols: "Protocolli",
    last_use: "Ultimo uso",
    never: "mai",
    generate: "Genera password per programmi di posta",
    regenerate: "Genera nuova password",
    postpone: "Posticipa scadenza",
    postpone_from: "possibile dal",
    deactivate: "Disattiva",
    no_protocol: "Attenzione: nessun protocollo è attivo, la password non funzionerebbe con nessun programma di posta.",
    client_settings: "Parametri per il programma di posta",
    client_settings_help: "Inserisci questi dati nel programma di posta, con la password per programmi di posta come password.",
    server: "Server",
    port: "Porta",
    security_kind: "Sicurezza",
    user_name: "Nome utente",
    enable_a_protocol: "Attiva un protocollo",
    new_password: "La tua nuova password per programmi di posta",
    copy: "Copia",
    copied: "Copiata",
    close_warning: "Appena chiuderai questa finestra non potrai più vedere o copiare la password.",
    shown_once: "La password è già stata mostrata e non può essere vista di nuovo. Se non l'hai copiata, genera una nuova password.",
    back: "Torna a Sicurezza e password",
    save: "Salva",
    history: "Storico accessi",
    when: "Data e ora",
    client: "Indirizzo del client",
    protocol: "Protocollo",
    result: "Esito",
    reason: "Motivo",
    accepted: "consentito",
    refused: "rifiutato",
    temporary: "non riuscito (temporaneo)",
    newer: "Più recenti",
    older: "Meno recenti",
    notices: "Avvisi",
    no_notices: "Nessun avviso.",
    confirm_title: "Conferma",
    cancel: "Annulla",
    regenerate_warning: "La password attuale smetterà subito di funzionare: dovrai inserire quella nuova in ogni programma di posta che la usa.",
    forbidden: "Richiesta non valida (modulo scaduto o non riconosciuto): nulla è stato modificato. Ricarica la pagina e riprova.",
    not_found: "Pagina non trovata.",
    bad_request: "Richiesta non valida.",
    too_large: "La richiesta è troppo grande: nulla è stato modificato.",
    done: "Fatto.",
};

/// English.
pub const EN: Texts = Texts {
    lang: "en",
    other_lang: "it",
    other_lang_name: "Italiano",
    title: "Account management",
    login_title: "Log in to Account management",
    login_name: "E-mail address or user name",
    password: "Password",
    log_in: "Log in",
    wrong_credentials: "Wrong credentials.",
    code_title: "Two-step verification",
    code_help: "Enter the 6-digit code from the authenticator app of your associated device.",
    code: "Code",
    confirm: "Confirm",
    wrong_code: "Wrong or already used code.",
    code_blocked: "Too many wrong codes: for safety, entering codes is blocked, the right code too. Try again in \
                   {s} seconds. We have sent you an alert.",
    unavailable: "The service is not available right now: try again shortly.",
    log_out: "Log out",
    security: "Security and passwords",
    mailbox: "Mailbox",
    two_factor: "Two-step verification",
    on: "on",
    off: "off",
    device_since: "Device associated since",
    turn_on: "Turn on",
    turn_off: "Turn off",
    replace_device: "Change device",
    migration_blocks: "The mailbox is being migrated: two-step verification cannot be changed until it ends.",
    enable_help: "Scan the QR code with your authenticator app (for example Google Authenticator or Microsoft Authenticator), then enter the 6-digit code it shows.",
    enable_uri: "If you cannot scan the code, enter this address in the app:",
    replace_help: "Enter a code from the device associated now: then you can associate the new one.",
    disable_code: "To confirm, enter a code from the associated device.",
    app_passwords: "App passwords for mail programs",
    none_yet: "No app password yet.",
    needs_2fa: "To generate an app password, turn on two-step verification first.",
    name: "Name",
    active: "active",
    expired: "expired",
    expiry: "Expiry",
    protocols: "Protocols",
    last_use: "Last used",
    never: "never",
    generate: "Generate an app password",
    regenerate: "Generate a new password",
    postpone: "Postpone expiry",
    postpone_from: "possible from",
    deactivate: "Deactivate",
    no_protocol: "Warning: no protocol is enabled, the password would not work with any mail program.",
    client_settings: "Settings for your mail program",
    client_settings_help: "Enter these in your mail program, with the password for mail programs as the password.",
    server: "Server",
    port: "Port",
    security_kind: "Security",
    user_name: "User name",
    enable_a_protocol: "Enable a protocol",
    new_password: "Your new app password",
    copy: "Copy",
    copied: "Copied",
    close_warning: "Once you close this window you will not be able to see or copy the password again.",
    shown_once: "The password was already shown and cannot be seen again. If you did not copy it, generate a new one.",
    back: "Back to Security and passwords",
    save: "Save",
    history: "Access history",
    when: "Date and time",
    client: "Client address",
    protocol: "Protocol",
    result: "Result",
    reason: "Reason",
    accepted: "accepted",
    refused: "refused",
    temporary: "failed (temporary)",
    newer: "Newer",
    older: "Older",
    notices: "Notices",
    no_notices: "No notices.",
    confirm_title: "Confirm",
    cancel: "Cancel",
    regenerate_warning: "The current password stops working at once: you will have to enter the new one in every mail program that uses it.",
    forbidden: "Invalid request (the form expired or was not recognised): nothing was changed. Reload the page and try again.",
    not_found: "Page not found.",
    bad_request: "Invalid request.",
    too_large: "The request is too large: nothing was changed.",
    done: "Done.",
};

/// The words for `language`.
pub fn texts(language: Language) -> &'static Texts {
    match language {
        Language::It => &IT,
        Language::En => &EN,
    }
}

/// The language a browser asks for (`Accept-Language`), if it is one of ours.
pub fn from_accept_language(header: &str) -> Option<Language> {
    let mut best: Option<(f32, Language)> = None;
    for part in header.split(',') {
        let mut it = part.trim().split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("");
        if let Ok(l) = primary.parse::<Language>()
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, l));
        }
    }
    best.map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_ours() {
        assert_eq!(
            from_accept_language("en-US,en;q=0.9,it;q=0.8"),
            Some(Language::En)
        );
        assert_eq!(from_accept_language("de-DE, it;q=0.5"), Some(Language::It));
        assert_eq!(from_accept_language("de, fr"), None);
        assert_eq!(
            from_accept_language("it;q=0.2, en;q=0.7"),
            Some(Language::En)
        );
    }
}
