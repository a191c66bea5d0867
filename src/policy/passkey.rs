//! Passkeys and security keys (WebAuthn) as the associated 2FA device: what the browser
//! returns is checked here, written by hand with `ring` — ES256 (ECDSA P-256, COSE -7)
//! credentials, attestation `none` (any attestation statement is ignored: the key is
//! trusted as the owner registered it, after the password and with the page's session),
//! user verification required.
//!
//! - Registration: the client data (`webauthn.create`, the challenge, the origin), the
//!   authenticator data (the relying party's hash, user present and verified, a credential
//!   attached), the COSE key → a [`Passkey`].
//! - Assertion: the client data (`webauthn.get`), the authenticator data, the signature
//!   over `authenticatorData || SHA-256(clientDataJSON)`, and the signature counter: a
//!   counter that does not move forward (unless both are 0) is a cloned key — refused.
//!
//! The CBOR read here is the subset WebAuthn uses: definite lengths, integers, byte and
//! text strings, arrays, maps, simple values; no tags, no floats; bounded depth.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};

/// A registered credential: its id, its public key (an uncompressed P-256 point), the
/// last signature counter seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id (the browser's `rawId`).
    pub id: Vec<u8>,
    /// `0x04 || x || y`.
    pub public_key: Vec<u8>,
    /// The last signature counter accepted.
    pub counter: u32,
}

/// Where a ceremony must have happened: the relying party id (a DNS name, no port) and
/// the page's origin (`https://name[:port]`), with the challenge the page gave.
#[derive(Clone, Copy, Debug)]
pub struct Ceremony<'a> {
    /// The relying party id.
    pub rp_id: &'a str,
    /// The origin the browser must report.
    pub origin: &'a str,
    /// The challenge the page gave (raw bytes).
    pub challenge: &'a [u8],
}

/// Why a passkey ceremony is refused. Never says more than needed to the browser.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    /// Not what a browser sends (bad encoding, a field missing).
    #[error("malformed WebAuthn response: {0}")]
    Malformed(&'static str),
    /// Another ceremony, challenge, origin or relying party.
    #[error("the WebAuthn response is not for this page: {0}")]
    WrongCeremony(&'static str),
    /// The user was not present or not verified (PIN, biometrics).
    #[error("the authenticator did not verify the user")]
    NotVerified,
    /// Not ES256 on P-256.
    #[error("only ES256 (P-256) passkeys are accepted")]
    UnsupportedKey,
    /// Another credential than the associated one.
    #[error("not the associated passkey")]
    UnknownCredential,
    /// The signature does not verify.
    #[error("the passkey's signature does not verify")]
    BadSignature,
    /// The counter went backwards (or stood still): a cloned key.
    #[error("the passkey's signature counter went from {stored} to {received}: a cloned key?")]
    CounterWentBack {
        /// What was stored.
        stored: u32,
        /// What came.
        received: u32,
    },
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

/// A decoded CBOR item (the subset WebAuthn uses).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Simple(u8),
}

impl Cbor {
    fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 8;
const MAX_ITEMS: usize = 256;

/// One CBOR item from `buf` at `*pos`, moving `*pos` past it.
fn cbor(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Cbor, PasskeyError> {
    let bad = PasskeyError::Malformed("CBOR");
    if depth > MAX_DEPTH {
        return Err(bad);
    }
    let head = *buf.get(*pos).ok_or(bad.clone())?;
    *pos += 1;
    let (major, ai) = (head >> 5, head & 0x1f);
    let arg: u64 = match ai {
        0..=23 => u64::from(ai),
        24..=27 => {
            let n = 1usize << (ai - 24);
            let bytes = buf.get(*pos..*pos + n).ok_or(bad.clone())?;
            *pos += n;
            bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))
        }
        _ => return Err(bad),
    };
    let mut take = |n: u64| -> Result<Vec<u8>, PasskeyError> {
        let n = usize::try_from(n).map_err(|_| bad.clone())?;
        let end = pos.checked_add(n).ok_or(bad.clone())?;
        let bytes = buf.get(*pos..end).ok_or(bad.clone())?.to_vec();
        *pos = end;
        Ok(bytes)
    };
    Ok(match major {
        0 => Cbor::Int(i128::from(arg)),
        1 => Cbor::Int(-1 - i128::from(arg)),
        2 => Cbor::Bytes(take(arg)?),
        3 => Cbor::Text(String::from_utf8(take(arg)?).map_err(|_| bad.clone())?),
        4 => {
            if arg > MAX_ITEMS as u64 {
                return Err(bad);
            }
            let mut items = Vec::new();
            for _ in 0..arg {
                items.push(cbor(buf, pos, depth + 1)?);
            }
            Cbor::Array(items)
        }
        5 => {
            if arg > MAX_ITEMS as u64 {
                return Err(bad);
            }
            let mut items = Vec::new();
            for _ in 0..arg {
                let k = cbor(buf, pos, depth + 1)?;
                let v = cbor(buf, pos, depth + 1)?;
                items.push((k, v));
            }
            Cbor::Map(items)
        }
        7 if ai < 24 => Cbor::Simple(ai),
        _ => return Err(bad),
    })
}

fn b64(s: &str) -> Result<Vec<u8>, PasskeyError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| PasskeyError::Malformed("base64url"))
}

/// The client data: its type, challenge and origin as this ceremony wants them.
fn check_client_data(client_data: &[u8], kind: &str, c: &Ceremony<'_>) -> Result<(), PasskeyError> {
    let v: serde_json::Value =
        serde_json::from_slice(client_data).map_err(|_| PasskeyError::Malformed("client data"))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str());
    if field("type") != Some(kind) {
        return Err(PasskeyError::WrongCeremony("type"));
    }
    let challenge = b64(field("challenge").ok_or(PasskeyError::Malformed("challenge"))?)?;
    if challenge != c.challenge {
        return Err(PasskeyError::WrongCeremony("challenge"));
    }
    if field("origin") != Some(c.origin) {
        return Err(PasskeyError::WrongCeremony("origin"));
    }
    if v.get("crossOrigin").and_then(|x| x.as_bool()) == Some(true) || v.get("topOrigin").is_some()
    {
        return Err(PasskeyError::WrongCeremony("cross-origin"));
    }
    Ok(())
}

/// The authenticator data's fixed part: relying party, user present and verified; its
/// flags and counter.
fn check_auth_data(auth_data: &[u8], c: &Ceremony<'_>) -> Result<(u8, u32), PasskeyError> {
    if auth_data.len() < 37 {
        return Err(PasskeyError::Malformed("authenticator data"));
    }
    if auth_data[..32] != *digest(&SHA256, c.rp_id.as_bytes()).as_ref() {
        return Err(PasskeyError::WrongCeremony("relying party"));
    }
    let flags = auth_data[32];
    if flags & UP == 0 || flags & UV == 0 {
        return Err(PasskeyError::NotVerified);
    }
    let counter = u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
    Ok((flags, counter))
}

/// A registration (`navigator.credentials.create`): the new passkey, if the response is
/// this ceremony's, user-verified, and carries an ES256 key.
pub fn register(
    c: &Ceremony<'_>,
    client_data_json: &str,
    attestation_object: &str,
) -> Result<Passkey, PasskeyError> {
    let client_data = b64(client_data_json)?;
    check_client_data(&client_data, "webauthn.create", c)?;
    let att = b64(attestation_object)?;
    let mut pos = 0;
    let object = cbor(&att, &mut pos, 0)?;
    if pos != att.len() {
        return Err(PasskeyError::Malformed("attestation object"));
    }
    let Some(Cbor::Bytes(auth_data)) = object.get(&Cbor::Text("authData".into())) else {
        return Err(PasskeyError::Malformed("authData"));
    };
    let (flags, counter) = check_auth_data(auth_data, c)?;
    if flags & AT == 0 || auth_data.len() < 55 {
        return Err(PasskeyError::Malformed("no credential"));
    }
    let id_len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    if id_len == 0 || id_len > 1023 || auth_data.len() < 55 + id_len {
        return Err(PasskeyError::Malformed("credential id"));
    }
    let id = auth_data[55..55 + id_len].to_vec();
    let mut pos = 55 + id_len;
    let key = cbor(auth_data, &mut pos, 0)?;
    if flags & ED != 0 {
        cbor(auth_data, &mut pos, 0)?;
    }
    if pos != auth_data.len() {
        return Err(PasskeyError::Malformed("authenticator data"));
    }
    let int = |k: i128| key.get(&Cbor::Int(k));
    let coord = |k: i128| match int(k) {
        Some(Cbor::Bytes(b)) if b.len() == 32 => Ok(b.clone()),
        _ => Err(PasskeyError::UnsupportedKey),
    };
    if int(1) != Some(&Cbor::Int(2))
        || int(3) != Some(&Cbor::Int(-7))
        || int(-1) != Some(&Cbor::Int(1))
    {
        return Err(PasskeyError::UnsupportedKey);
    }
    let mut public_key = vec![0x04];
    public_key.extend(coord(-2)?);
    public_key.extend(coord(-3)?);
    Ok(Passkey {
        id,
        public_key,
        counter,
    })
}

/// An assertion (`navigator.credentials.get`) by `key`: its new counter, if the response
/// is this ceremony's, user-verified, signed by the key, and its counter moved forward.
pub fn assert(
    c: &Ceremony<'_>,
    key: &Passkey,
    credential_id: &str,
    client_data_json: &str,
    authenticator_data: &str,
    signature: &str,
) -> Result<u32, PasskeyError> {
    if b64(credential_id)? != key.id {
        return Err(PasskeyError::UnknownCredential);
    }
    let client_data = b64(client_data_json)?;
    check_client_data(&client_data, "webauthn.get", c)?;
    let auth_data = b64(authenticator_data)?;
    let (flags, counter) = check_auth_data(&auth_data, c)?;
    if flags & AT != 0 {
        return Err(PasskeyError::Malformed("a credential in an assertion"));
    }
    let mut signed = auth_data.clone();
    signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        &key.public_key,
    )
    .verify(&signed, &b64(signature)?)
    .map_err(|_| PasskeyError::BadSignature)?;
    counter_moved(key.counter, counter)?;
    Ok(counter)
}

/// The signature counter rule (WebAuthn §6.1.1): both 0 — a key that keeps no counter;
/// otherwise it must move forward, or the key was cloned.
pub fn counter_moved(stored: u32, received: u32) -> Result<(), PasskeyError> {
    if (stored != 0 || received != 0) && received <= stored {
        return Err(PasskeyError::CounterWentBack { stored, received });
    }
    Ok(())
}

/// A new challenge (32 random bytes) and its base64url form for the page.
pub fn challenge() -> Result<(Vec<u8>, String), super::PolicyError> {
    let mut c = vec![0u8; 32];
    getrandom::fill(&mut c).map_err(|e| super::PolicyError::Random(e.to_string()))?;
    let text = URL_SAFE_NO_PAD.encode(&c);
    Ok((c, text))
}

/// Bytes as the page writes them (base64url, no padding).
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // py_webauthn's ES256 assertion (tests/test_verify_authentication_response.py):
    // flags 0x01 (user present, not verified), counter 78 after 77.
    const CHALLENGE: &str =
        "xi30GPGAFYRxVDpY1sM10DaLzVQG66nv-_7RUazH0vI2YvG8LYgDEnvN5fZZNVuvEDuMi9te3VLqb42N0fkLGA";
    const COSE: &str = "pQECAyYgASFYIIeDTe-gN8A-zQclHoRnGFWN8ehM1b7yAsa8I8KIvmplIlgg4nFGT5px8o6gpPZZhO01wdy9crDSA_Ngtkx0vGpvPHI";
    const AUTH_DATA: &str = "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAATg";
    const CLIENT_DATA: &str = "eyJjaGFsbGVuZ2UiOiJ4aTMwR1BHQUZZUnhWRHBZMXNNMTBEYUx6VlFHNjZudi1fN1JVYXpIMHZJMll2RzhMWWdERW52TjVmWlpOVnV2RUR1TWk5dGUzVkxxYjQyTjBma0xHQSIsImNsaWVudEV4dGVuc2lvbnMiOnt9LCJoYXNoQWxnb3JpdGhtIjoiU0hBLTI1NiIsIm9yaWdpbiI6Imh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsInR5cGUiOiJ3ZWJhdXRobi5nZXQifQ";
    const SIGNATURE: &str = "MEUCIGisVZOBapCWbnJJvjelIzwpixxIwkjCCb5aCHafQu68AiEA88v-2pJNNApPFwAKFiNuf82-2hBxYW5kGwVweeoxCwo";

    fn key(counter: u32) -> Passkey {
        let cose = b64(COSE).unwrap();
        let mut pos = 0;
        let map = cbor(&cose, &mut pos, 0).unwrap();
        assert_eq!(pos, cose.len());
        let Some(Cbor::Bytes(x)) = map.get(&Cbor::Int(-2)) else {
            panic!("x")
        };
        let Some(Cbor::Bytes(y)) = map.get(&Cbor::Int(-3)) else {
            panic!("y")
        };
        Passkey {
            id: b"credential".to_vec(),
            public_key: [&[0x04u8][..], x, y].concat(),
            counter,
        }
    }

    /// The vector verifies up to its flags: it is user-present only, and user
    /// verification is required here.
    #[test]
    fn a_known_assertion_verifies_but_needs_user_verification() {
        let challenge = b64(CHALLENGE).unwrap();
        let c = Ceremony {
            rp_id: "localhost",
            origin: "http://localhost:5000",
            challenge: &challenge,
        };
        let id = encode(b"credential");
        assert_eq!(
            assert(&c, &key(77), &id, CLIENT_DATA, AUTH_DATA, SIGNATURE),
            Err(PasskeyError::NotVerified)
        );
        // The signature itself is the key's: checked without the flag rule.
        let auth = b64(AUTH_DATA).unwrap();
        let mut signed = auth.clone();
        signed.extend_from_slice(digest(&SHA256, &b64(CLIENT_DATA).unwrap()).as_ref());
        let k = key(77);
        assert!(
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &k.public_key
            )
            .verify(&signed, &b64(SIGNATURE).unwrap())
            .is_ok()
        );
        signed[0] ^= 1;
        assert!(
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &k.public_key
            )
            .verify(&signed, &b64(SIGNATURE).unwrap())
            .is_err()
        );
        // Another page, another challenge, another credential.
        let other = Ceremony {
            origin: "https://localhost:5000",
            ..c
        };
        assert_eq!(
            assert(&other, &key(77), &id, CLIENT_DATA, AUTH_DATA, SIGNATURE),
            Err(PasskeyError::WrongCeremony("origin"))
        );
        assert_eq!(
            assert(
                &c,
                &key(77),
                &encode(b"other"),
                CLIENT_DATA,
                AUTH_DATA,
                SIGNATURE
            ),
            Err(PasskeyError::UnknownCredential)
        );
    }

    #[test]
    fn the_counter_must_move_forward_unless_the_key_keeps_none() {
        assert!(counter_moved(0, 0).is_ok());
        assert!(counter_moved(0, 1).is_ok());
        assert!(counter_moved(77, 78).is_ok());
        assert_eq!(
            counter_moved(78, 78),
            Err(PasskeyError::CounterWentBack {
                stored: 78,
                received: 78
            })
        );
        assert!(counter_moved(78, 3).is_err());
        assert!(counter_moved(5, 0).is_err());
    }

    #[test]
    fn cbor_is_read_within_bounds() {
        for bad in [
            &[0x5f][..],             // indefinite bytes
            &[0x58, 0x05, 1][..],    // shorter than it says
            &[0xc0, 0x00][..],       // a tag
            &[0xfb, 0, 0, 0, 0][..], // a float
            &[0x9a, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(cbor(bad, &mut 0, 0).is_err(), "{bad:?}");
        }
        let mut deep = vec![0x81u8; 20];
        deep.push(0x00);
        assert!(cbor(&deep, &mut 0, 0).is_err(), "too deep");
        let mut pos = 0;
        assert_eq!(
            cbor(&[0xa1, 0x01, 0x26], &mut pos, 0).unwrap(),
            Cbor::Map(vec![(Cbor::Int(1), Cbor::Int(-7))])
        );
        assert_eq!(pos, 3);
    }
}
