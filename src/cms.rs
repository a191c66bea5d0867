//! CMS SignedData (RFC 5652), attached: what signs a configuration profile with the
//! web page's certificate, so a device shows who made it. DER written here (a few
//! structures, no ASN.1 crate); the signature by rustls's key loader (ring), from the
//! same key file the listener uses — ECDSA P-256 / P-384 or RSA. A leaf: it imports
//! nothing of the crate.

use std::path::Path;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::SigningKey;

/// Why a signer could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CmsError(String);

/// A certificate and its key, able to sign.
pub struct Signer {
    /// The signer's certificate, then the rest of the chain from the file.
    chain: Vec<Vec<u8>>,
    key: Arc<dyn SigningKey>,
    /// The certificate's issuer and serial number, as they are encoded in it.
    issuer_and_serial: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

const SCHEMES: [SignatureScheme; 3] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

impl Signer {
    /// The certificate (PEM, its chain after it) and key at these paths; an error if the
    /// key is of a kind this cannot sign with (then profiles go out unsigned).
    pub fn load(cert: &Path, key: &Path) -> Result<Signer, CmsError> {
        let bad = |p: &Path, e: &dyn std::fmt::Display| CmsError(format!("{}: {e}", p.display()));
        let chain: Vec<Vec<u8>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, &e))?
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(cert, &e))?;
        let first = chain.first().ok_or_else(|| bad(cert, &"no certificate"))?;
        let issuer_and_serial =
            issuer_and_serial(first).ok_or_else(|| bad(cert, &"a certificate this cannot read"))?;
        let der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| bad(key, &e))?;
        if key.choose_scheme(&SCHEMES).is_none() {
            return Err(CmsError(
                "the key signs with none of ECDSA P-256, P-384 or RSA".into(),
            ));
        }
        Ok(Signer {
            chain,
            key,
            issuer_and_serial,
        })
    }

    /// `content` wrapped in a SignedData (DER): the content itself, the certificates,
    /// and one signer over signed attributes (content type, message digest).
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>, CmsError> {
        let signer = self
            .key
            .choose_scheme(&SCHEMES)
            .ok_or_else(|| CmsError("no usable signature scheme".into()))?;
        let (digest_alg, digest, sig_alg) = match signer.scheme() {
            SignatureScheme::ECDSA_NISTP256_SHA256 => (
                SHA256,
                ring::digest::digest(&ring::digest::SHA256, content),
                tlv(0x30, &tlv(0x06, ECDSA_SHA256)),
            ),
            SignatureScheme::ECDSA_NISTP384_SHA384 => (
                SHA384,
                ring::digest::digest(&ring::digest::SHA384, content),
                tlv(0x30, &tlv(0x06, ECDSA_SHA384)),
            ),
            _ => (
                SHA256,
                ring::digest::digest(&ring::digest::SHA256, content),
                tlv(0x30, &[tlv(0x06, RSA_SHA256), vec![0x05, 0x00]].concat()),
            ),
        };
        let digest_alg = tlv(0x30, &tlv(0x06, digest_alg));
        let attribute =
            |oid: &[u8], value: Vec<u8>| tlv(0x30, &[tlv(0x06, oid), tlv(0x31, &value)].concat());
        // The signed attributes are signed as a SET OF (DER: sorted), then carried with
        // the tag [0] IMPLICIT.
        let mut attrs = set_of(vec![
            attribute(CONTENT_TYPE, tlv(0x06, DATA)),
            attribute(MESSAGE_DIGEST, tlv(0x04, digest.as_ref())),
        ]);
        let signature = signer
            .sign(&attrs)
            .map_err(|e| CmsError(format!("signing: {e}")))?;
        attrs[0] = 0xA0;
        let signer_info = tlv(
            0x30,
            &[
                tlv(0x02, &[1]),
                self.issuer_and_serial.clone(),
                digest_alg.clone(),
                attrs,
                sig_alg,
                tlv(0x04, &signature),
            ]
            .concat(),
        );
        let signed_data = tlv(
            0x30,
            &[
                tlv(0x02, &[1]),
                tlv(0x31, &digest_alg),
                tlv(
                    0x30,
                    &[tlv(0x06, DATA), tlv(0xA0, &tlv(0x04, content))].concat(),
                ),
                tlv(0xA0, &self.chain.concat()),
                tlv(0x31, &signer_info),
            ]
            .concat(),
        );
        Ok(tlv(
            0x30,
            &[tlv(0x06, SIGNED_DATA), tlv(0xA0, &signed_data)].concat(),
        ))
    }
}

// Object identifiers, as their DER contents.
const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
const DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const CONTENT_TYPE: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03];
const MESSAGE_DIGEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03];
const RSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B];

/// One DER element: tag, definite length, contents.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// A DER SET OF: its elements sorted by their encodings.
fn set_of(mut items: Vec<Vec<u8>>) -> Vec<u8> {
    items.sort();
    tlv(0x31, &items.concat())
}

/// The element at the start of `der`: (tag, the whole element, what follows it).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let k = usize::from(first & 0x7F);
        if k == 0 || k > 4 || rest.len() < k {
            return None;
        }
        let len = rest[..k]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (len, &rest[k..])
    };
    let header = der.len() - rest.len();
    let end = header.checked_add(len)?;
    (end <= der.len()).then(|| (tag, &der[..end], &der[end..]))
}

/// The contents of a constructed element.
fn inside(whole: &[u8]) -> Option<&[u8]> {
    let first = *whole.get(1)?;
    let header = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7F)
    };
    whole.get(header..)
}

/// A certificate's `IssuerAndSerialNumber`: SEQUENCE { issuer Name, serialNumber }, both
/// copied as they are encoded in the certificate.
fn issuer_and_serial(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, certificate, _) = element(cert)?;
    let (_, tbs, _) = element(inside(certificate)?)?;
    let mut fields = inside(tbs)?;
    let (tag, mut first, mut rest) = element(fields)?;
    if tag == 0xA0 {
        // The explicit version comes first in a v3 certificate.
        fields = rest;
        (_, first, rest) = element(fields)?;
    }
    let serial = first;
    let (_, _signature_alg, rest) = element(rest)?;
    let (_, issuer, _) = element(rest)?;
    Some(tlv(0x30, &[issuer, serial].concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_definite_der() {
        assert_eq!(tlv(0x04, &[7; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[7; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2C]);
        let (tag, whole, rest) = element(&[0x30, 0x81, 0x02, 1, 2, 9]).unwrap();
        assert_eq!((tag, whole.len(), rest), (0x30, 5, &[9u8][..]));
        assert!(
            element(&[0x30, 0x05, 1]).is_none(),
            "longer than what is there"
        );
    }

    /// What OpenSSL makes of a signed content: verified against the certificate, the
    /// content given back whole; a changed byte fails.
    #[test]
    fn openssl_verifies_what_is_signed() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let signer = Signer::load(&cert, &key).unwrap();
        let content = b"<plist>una prova \xc3\xa8</plist>".repeat(20);
        let signed = signer.sign(&content).unwrap();
        let verify = |der: &[u8]| {
            let input = dir.path().join("in.der");
            let out = dir.path().join("out");
            std::fs::write(&input, der).unwrap();
            let ok = std::process::Command::new("openssl")
                .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
                .arg(&input)
                .arg("-CAfile")
                .arg(&cert)
                .arg("-out")
                .arg(&out)
                .output()
                .unwrap();
            (ok.status.success(), std::fs::read(&out).unwrap_or_default())
        };
        assert_eq!(verify(&signed), (true, content.clone()));
        let mut tampered = signed.clone();
        let at = tampered.windows(6).position(|w| w == b"prova ").unwrap();
        tampered[at] = b'P';
        assert!(!verify(&tampered).0);
    }

    #[test]
    fn a_set_of_is_sorted() {
        assert_eq!(
            set_of(vec![vec![0x30, 1, 9], vec![0x30, 1, 2]]),
            [0x31, 6, 0x30, 1, 2, 0x30, 1, 9]
        );
    }
}
