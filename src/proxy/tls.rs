//! TLS for both sides: the certificate clients see (created self-signed on first run) and
//! the trust used for upstreams. rustls with the ring provider, chosen explicitly; TLS 1.2
//! and 1.3 only.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::files::write_private;
use crate::policy::Protocol;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Creates a self-signed certificate for `localhost` / 127.0.0.1 / ::1 and `also` (the
/// listeners' addresses, the host name) where the configured files are missing. Returns
/// whether it created one.
pub fn ensure_certificate(cert: &Path, key: &Path, also: &[String]) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    if cert.exists() != key.exists() {
        let missing = if cert.exists() { key } else { cert };
        return Err(file_err(
            missing,
            "missing (its certificate/key partner exists; refusing to overwrite it)",
        ));
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for n in also {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key_pem = zeroize::Zeroizing::new(generated.signing_key.serialize_pem());
    write_private(key, key_pem.as_bytes()).map_err(|e| file_err(key, e))?;
    if let Some(dir) = cert.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    std::fs::write(cert, generated.cert.pem()).map_err(|e| file_err(cert, e))?;
    Ok(true)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The server configuration for client connections speaking `alpn` ("imap", "pop3",
/// "smtp"). A client that offers ALPN must offer this protocol, or the handshake fails
/// (RFC 7301 3.2 `no_application_protocol`): the defence against ALPACA-style
/// cross-protocol attacks. Clients that offer no ALPN are served as before.
pub fn server_config(cert: &Path, key: &Path, alpn: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    // TLS 1.2 and 1.3 only; rustls offers no RSA key exchange and no CBC-era suites.
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration for an upstream: its CA file, or the system's roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
                roots.add(cert.map_err(|e| file_err(path, e))?)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Skip the odd unparsable system certificate rather than fail.
                let _ = roots.add(cert);
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The ALPN name of the HTTPS listeners.
pub(crate) const HTTP: &str = "http/1.1";

/// The server TLS configurations, one per ALPN protocol, from one certificate and key;
/// a reload swaps each whole, so new handshakes use the new certificate and sessions
/// already open go on with theirs.
pub(crate) struct Certificates {
    pub(crate) cert: std::path::PathBuf,
    key: std::path::PathBuf,
    pub(crate) by_alpn:
        std::collections::BTreeMap<&'static str, Arc<arc_swap::ArcSwap<ServerConfig>>>,
}

/// One TLS configuration per ALPN protocol.
type Configs = Vec<(&'static str, Arc<ServerConfig>)>;

impl Certificates {
    fn configs(cert: &Path, key: &Path) -> Result<Configs, TlsError> {
        [
            Protocol::Imap.as_str(),
            Protocol::Pop3.as_str(),
            Protocol::Smtp.as_str(),
            HTTP,
        ]
        .into_iter()
        .map(|alpn| Ok((alpn, server_config(cert, key, alpn)?)))
        .collect()
    }

    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let by_alpn = Self::configs(cert, key)?
            .into_iter()
            .map(|(alpn, c)| (alpn, Arc::new(arc_swap::ArcSwap::new(c))))
            .collect();
        Ok(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            by_alpn,
        })
    }

    /// Reads the certificate and key again; a file that cannot be used leaves every
    /// listener with the certificate it had.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        for (alpn, config) in Self::configs(&self.cert, &self.key)? {
            if let Some(slot) = self.by_alpn.get(alpn) {
                slot.store(config);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_usable_certificate_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("c/key.pem"));
        assert!(ensure_certificate(&cert, &key, &[]).unwrap());
        assert!(
            !ensure_certificate(&cert, &key, &[]).unwrap(),
            "second run keeps it"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        server_config(&cert, &key, "imap").unwrap();
        // The certificate can serve as the CA for a client (tests use it that way).
        client_config(Some(&cert)).unwrap();
    }

    #[test]
    fn a_lone_certificate_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "x").unwrap();
        assert!(ensure_certificate(&cert, &key, &[]).is_err());
        assert_eq!(std::fs::read(&cert).unwrap(), b"x");
    }
}
