//! The operator API's bearer tokens: 256 random bits each, shown once when created
//! (`sentinella api-token create NAME`), kept only as their BLAKE3 hash — a token has
//! full entropy, so a fast hash is enough and a check costs microseconds — in a file
//! named by the config (`api.tokens_file`, mode 0600), one `NAME blake3:HEX` a line.
//! `serve` reads the file again whenever it changes, so a token created or revoked
//! works, or stops working, at the next call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;

use crate::secret::Secret;

/// The prefix every token starts with (so a leaked one is recognisable in a scan).
const PREFIX: &str = "snt_";

/// Why a token could not be made, listed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A name other than 1–40 letters, digits, `.`, `-`, `_`.
    #[error("bad token name {0:?}: use 1 to 40 letters, digits, '.', '-' or '_'")]
    BadName(String),
    /// The name is taken.
    #[error("a token named {0:?} exists already")]
    Exists(String),
    /// No token has the name.
    #[error("no token named {0:?}")]
    NoSuchToken(String),
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// A line of the file is not `NAME blake3:HEX`.
    #[error("{path} line {line}: expected \"NAME blake3:HEX\"")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number.
        line: usize,
    },
}

fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TokenError {
    TokenError::File {
        path: path.to_owned(),
        error: e.to_string(),
    }
}

/// The tokens of the file at `path`: name and hash, in file order. No file: none.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = || TokenError::Malformed {
            path: path.to_owned(),
            line: i + 1,
        };
        let (name, h) = line.split_once(' ').ok_or_else(malformed)?;
        let h = h.trim().strip_prefix("blake3:").ok_or_else(malformed)?;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        out.push((name.to_owned(), h.to_ascii_lowercase()));
    }
    Ok(out)
}

fn write(path: &Path, tokens: &[(String, String)]) -> Result<(), TokenError> {
    let mut text = String::from(
        "# Sentinella API tokens: NAME blake3:HASH (the tokens themselves are never kept)\n",
    );
    for (name, h) in tokens {
        text.push_str(&format!("{name} blake3:{h}\n"));
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    crate::files::write_private(&tmp, text.as_bytes()).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.to_owned()))
    }
}

/// A new token named `name`, added to the file; the token is returned once.
pub fn create(path: &Path, name: &str) -> Result<Secret, TokenError> {
    check_name(name)?;
    let mut all = read(path)?;
    if all.iter().any(|(n, _)| n == name) {
        return Err(TokenError::Exists(name.to_owned()));
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| file_err(path, e))?;
    let token = Secret::new(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ));
    all.push((name.to_owned(), hash(token.expose())));
    write(path, &all)?;
    Ok(token)
}

/// Removes the token named `name`.
pub fn revoke(path: &Path, name: &str) -> Result<(), TokenError> {
    let mut all = read(path)?;
    let before = all.len();
    all.retain(|(n, _)| n != name);
    if all.len() == before {
        return Err(TokenError::NoSuchToken(name.to_owned()));
    }
    write(path, &all)
}

/// The tokens as `serve` checks them: the file read again when it changes.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    known: Mutex<(Option<SystemTime>, HashMap<String, String>)>,
}

impl Tokens {
    /// The tokens of the file at `path` (read at the first check).
    pub fn new(path: PathBuf) -> Self {
        Tokens {
            path,
            known: Mutex::new((None, HashMap::new())),
        }
    }

    /// The name of the token `presented`, if it is one of the file's.
    pub fn name_of(&self, presented: &str) -> Option<String> {
        if !presented.starts_with(PREFIX) {
            return None;
        }
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.0 != mtime || mtime.is_none() {
            match read(&self.path) {
                Ok(all) => *known = (mtime, all.into_iter().map(|(n, h)| (h, n)).collect()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the API tokens; keeping the previous ones");
                }
            }
        }
        known.1.get(&hash(presented)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_shown_once_kept_as_a_hash_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-tokens");
        let tokens = Tokens::new(path.clone());
        let t = create(&path, "crm").unwrap();
        assert!(t.expose().starts_with("snt_") && t.expose().len() == 4 + 43);
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains(t.expose()), "only the hash is kept");
        assert!(file.contains("crm blake3:"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(tokens.name_of(t.expose()).as_deref(), Some("crm"));
        assert_eq!(tokens.name_of("snt_not-a-token"), None);
        assert!(matches!(create(&path, "crm"), Err(TokenError::Exists(_))));
        assert!(matches!(
            create(&path, "bad name"),
            Err(TokenError::BadName(_))
        ));
        revoke(&path, "crm").unwrap();
        // The file changed: read again (mtime granularity may hide a change made in the
        // same instant, so force it here).
        *tokens.known.lock().unwrap() = (None, HashMap::new());
        assert_eq!(tokens.name_of(t.expose()), None);
        assert!(matches!(
            revoke(&path, "crm"),
            Err(TokenError::NoSuchToken(_))
        ));
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-tokens");
        std::fs::write(&path, "# comment\nok blake3:00\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
