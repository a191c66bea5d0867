//! Secrets and confirmations from the person at the terminal.
//!
//! Passwords are never taken from the command line (argv is visible to every user through
//! `/proc` and lands in shell history): they are read from a terminal prompt with echo off,
//! or from standard input with `--password-stdin`. Actions that lower security or cut
//! access ask for confirmation on a terminal; `--yes` answers for scripts; with neither,
//! they refuse.

use std::io::{BufRead, IsTerminal, Read};

use super::CliError;
use crate::auth::Secret;

/// The shortest main password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted (argon2 takes more, but nobody types more).
pub const MAX_PASSWORD_LEN: usize = 1024;

fn check_password(p: Secret) -> Result<Secret, CliError> {
    let n = p.expose().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(CliError::refused(
            "weak_password",
            format!("the password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if p.expose().len() > MAX_PASSWORD_LEN {
        return Err(CliError::refused(
            "bad_password",
            format!("the password must be at most {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    if p.expose()
        .chars()
        .any(|c| c == '\0' || c == '\r' || c == '\n')
    {
        return Err(CliError::refused(
            "bad_password",
            "the password must not contain NUL or line breaks",
        ));
    }
    Ok(p)
}

/// A new password: from standard input (`--password-stdin`, one line, the trailing line
/// break dropped) or typed twice at a terminal prompt.
pub fn new_password(password_stdin: bool, what: &str) -> Result<Secret, CliError> {
    if password_stdin {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD_LEN as u64 + 3)
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Internal(format!("reading standard input: {e}")))?;
        let text = std::str::from_utf8(&buf)
            .map_err(|_| CliError::refused("bad_password", "the password is not UTF-8"))?;
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        return check_password(Secret::new(line.to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::refused(
            "no_password",
            "no password given: pipe it with --password-stdin, or run on a terminal to be prompted \
             (passwords are never taken from the command line)",
        ));
    }
    let first = Secret::new(
        rpassword::prompt_password(format!("{what}: "))
            .map_err(|e| CliError::Internal(format!("reading the password: {e}")))?,
    );
    let first = check_password(first)?;
    let again = Secret::new(
        rpassword::prompt_password("Repeat it: ")
            .map_err(|e| CliError::Internal(format!("reading the password: {e}")))?,
    );
    if first != again {
        return Err(CliError::refused(
            "password_mismatch",
            "the two passwords differ; nothing was changed",
        ));
    }
    Ok(first)
}

/// Asks the person to confirm an action that lowers security or cuts access.
pub fn confirm(warning: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::refused(
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
        .map_err(|e| CliError::Internal(format!("reading the answer: {e}")))?;
    if answer.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(CliError::refused(
            "not_confirmed",
            "not confirmed; nothing was changed",
        ))
    }
}
