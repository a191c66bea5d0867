//! Secrets and confirmations from the person at the terminal: the command line's
//! [`Ask`].
//!
//! Passwords are never taken from the command line (argv is visible to every user through
//! `/proc` and lands in shell history): they are read from a terminal prompt with echo off,
//! or from standard input with `--password-stdin`. Actions that lower security or cut
//! access ask for confirmation on a terminal; `--yes` answers for scripts; with neither,
//! they refuse. What a password must be is the management layer's rule, not this file's.

use std::io::{BufRead, IsTerminal, Read};

use crate::manage::{Ask, ManageError, PasswordFor, Warning};
use crate::policy::names::MAX_PASSWORD_LEN;
use crate::secret::Secret;

/// Asks at the terminal, or takes the answers the flags gave.
#[derive(Debug, Default)]
pub(crate) struct Terminal {
    /// `--password-stdin`: one line of standard input is the password.
    pub(crate) password_stdin: bool,
    /// `--yes`: confirmed without asking.
    pub(crate) yes: bool,
}

fn declined(code: &'static str, message: impl Into<String>) -> ManageError {
    ManageError::Declined {
        code,
        message: message.into(),
    }
}

fn io_failed(what: &str, e: std::io::Error) -> ManageError {
    ManageError::Internal(format!("{what}: {e}"))
}

/// The prompt for each password.
fn label(purpose: PasswordFor) -> &'static str {
    match purpose {
        PasswordFor::NewMailbox => "Main password",
        PasswordFor::MainPassword => "New main password",
        PasswordFor::UserAccount => "Main password of the multi-user account",
        PasswordFor::UpstreamSecret => "Upstream secret",
    }
}

impl Ask for Terminal {
    fn password(&mut self, purpose: PasswordFor) -> Result<Secret, ManageError> {
        if self.password_stdin {
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            std::io::stdin()
                .lock()
                .take(MAX_PASSWORD_LEN as u64 + 3)
                .read_to_end(&mut buf)
                .map_err(|e| io_failed("reading standard input", e))?;
            let text = std::str::from_utf8(&buf)
                .map_err(|_| declined("bad_password", "the password is not UTF-8"))?;
            let line = text.strip_suffix('\n').unwrap_or(text);
            let line = line.strip_suffix('\r').unwrap_or(line);
            return Ok(Secret::new(line.to_owned()));
        }
        if !std::io::stdin().is_terminal() {
            return Err(declined(
                "no_password",
                "no password given: pipe it with --password-stdin, or run on a terminal to be prompted \
                 (passwords are never taken from the command line)",
            ));
        }
        let read = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(Secret::new)
                .map_err(|e| io_failed("reading the password", e))
        };
        let first = read(&format!("{}: ", label(purpose)))?;
        // Check before asking again, so a too-short password is refused at once.
        crate::policy::names::check_new_password(first.expose())?;
        if first != read("Repeat it: ")? {
            return Err(declined(
                "password_mismatch",
                "the two passwords differ; nothing was changed",
            ));
        }
        Ok(first)
    }

    fn confirm(&mut self, warning: &Warning) -> Result<(), ManageError> {
        if self.yes {
            return Ok(());
        }
        let warning = &crate::wording::warning(warning, crate::wording::Language::En);
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(declined(
                "confirmation_required",
                format!(
                    "{warning}\nNot confirmed: there is no terminal to ask on; add --yes to confirm."
                ),
            ));
        }
        eprintln!("{warning}");
        eprint!("Type \"yes\" to confirm: ");
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| io_failed("reading the answer", e))?;
        if answer.trim().eq_ignore_ascii_case("yes") {
            Ok(())
        } else {
            Err(declined(
                "not_confirmed",
                "not confirmed; nothing was changed",
            ))
        }
    }
}
