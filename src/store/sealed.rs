//! Upstream secrets at rest: ChaCha20-Poly1305 with a 256-bit key kept in its own file.
//!
//! The key file is created on first use with mode 0600. A sealed value is
//! `nonce (12 bytes) || ciphertext+tag`, with the mailbox address as associated data, so a
//! sealed secret copied onto another mailbox's row does not open.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

use crate::files::write_private;
use crate::secret::Secret;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("key file {0} must hold exactly 32 bytes")]
    BadKey(String),
    /// The OS random source failed.
    #[error("random source failed: {0}")]
    Random(String),
    /// Wrong key, wrong mailbox, or a damaged value.
    #[error("the sealed secret does not open with this key for this mailbox")]
    Open,
}

/// The sealing key.
pub struct SealKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    /// Reads the key file, creating it (mode 0600, random key) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SealKey, SealError> {
        let err = |source| SealError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let key: [u8; KEY_LEN] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SealError::BadKey(path.display().to_string()))?;
                Ok(SealKey(Zeroizing::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                getrandom::fill(key.as_mut()).map_err(|e| SealError::Random(e.to_string()))?;
                write_private(path, key.as_ref()).map_err(err)?;
                Ok(SealKey(key))
            }
            Err(e) => Err(err(e)),
        }
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()))
    }

    /// Seals `secret` for the mailbox `address`.
    pub fn seal(&self, address: &str, secret: &Secret) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: address.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed for `address`.
    pub fn open(&self, address: &str, sealed: &[u8]) -> Result<Secret, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: address.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SealError::Open)?;
        Ok(Secret::new(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let k1 = SealKey::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = k1
            .seal("a@b.it", &Secret::new("upstream-pw".into()))
            .unwrap();
        let k2 = SealKey::load_or_create(&path).unwrap();
        assert_eq!(k2.open("a@b.it", &sealed).unwrap().expose(), "upstream-pw");
        assert!(!String::from_utf8_lossy(&sealed).contains("upstream-pw"));
    }

    #[test]
    fn wrong_mailbox_key_or_damage_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let k = SealKey::load_or_create(&dir.path().join("k")).unwrap();
        let other = SealKey::load_or_create(&dir.path().join("k2")).unwrap();
        let mut sealed = k.seal("a@b.it", &Secret::new("pw".into())).unwrap();
        assert!(k.open("c@d.it", &sealed).is_err());
        assert!(other.open("a@b.it", &sealed).is_err());
        assert!(k.open("a@b.it", &sealed[..5]).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open("a@b.it", &sealed).is_err());
    }

    #[test]
    fn short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), b"short").unwrap();
        assert!(matches!(
            SealKey::load_or_create(&dir.path().join("k")),
            Err(SealError::BadKey(_))
        ));
    }
}
