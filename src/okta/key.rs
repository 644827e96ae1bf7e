//! The OAuth client's private key: PEM parsing (PKCS#8, PKCS#1 and SEC1),
//! the JWS algorithm it implies, signing, and the public half as a JWK.
//!
//! Invariant: key material leaves [`PrivateKey`] only as signatures and as
//! the public JWK. `Debug` prints the algorithm, never key bytes, and no
//! [`KeyError`] message quotes the file's content.

use std::fmt;
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde_json::{Value, json};

use crate::okta::jwt::b64url;

/// The JWS algorithm a key signs with. Okta accepts RS256/384/512 and
/// ES256/384/512 for `private_key_jwt`; writer-sync signs RSA keys with
/// RS256 and EC keys with the algorithm of their curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
    Es384,
}

impl Algorithm {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
        }
    }
}

/// Why a private key file cannot be used. Messages say what to do and never
/// contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the file holds a JSON document (a JWK?), not a PEM key; writer-sync reads PEM: copy the \
         private key in PEM format from the Okta Admin Console, or convert the JWK to PEM"
    )]
    Json,
    #[error("no PEM private key found (expected a line like -----BEGIN PRIVATE KEY-----){found}")]
    NoPrivateKey { found: String },
    #[error(
        "the private key is encrypted; writer-sync needs it unencrypted (protect the file with \
         permissions or a systemd credential instead). Convert it with: openssl pkcs8 -topk8 \
         -nocrypt -in ENCRYPTED.pem -out key.pem"
    )]
    Encrypted,
    #[error("the PEM data is malformed (a block without its END line, or damaged base64)")]
    MalformedPem,
    #[error("the file holds {count} private keys; keep exactly one")]
    SeveralKeys { count: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("the {kind} key is not valid: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

/// A private key for signing client assertions. Cheap to clone; compares
/// equal when the DER is the same.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<Parsed>,
}

struct Parsed {
    /// The key's DER (PKCS#8 or PKCS#1), kept to compare keys.
    der: Vec<u8>,
    algorithm: Algorithm,
    signer: Signer,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.der == other.inner.der
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.describe())
    }
}

// DER object identifiers (content bytes) of the key types seen in practice.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

const CONVERT_TO_PKCS8: &str = "openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out key-pkcs8.pem";
const GENERATE: &str = "generate one with: openssl genpkey -algorithm RSA -pkeyopt \
                        rsa_keygen_bits:2048 -out key.pem (or -algorithm EC -pkeyopt \
                        ec_paramgen_curve:P-256)";

impl PrivateKey {
    /// Parses the first private key of a PEM file: `PRIVATE KEY` (PKCS#8,
    /// RSA or EC P-256/P-384), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE
    /// KEY` (SEC1, when it names its curve).
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, KeyError> {
        let text = String::from_utf8_lossy(pem);
        if text.trim_start().starts_with('{') {
            return Err(KeyError::Json);
        }
        if text.contains("BEGIN ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(KeyError::Encrypted);
        }
        let mut keys = Vec::new();
        let mut others = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|_| KeyError::MalformedPem)?;
            match kind {
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => keys.push((kind, der)),
                SectionKind::PublicKey => others.push("a public key"),
                SectionKind::Certificate => others.push("a certificate"),
                _ => others.push("another PEM block"),
            }
        }
        if keys.len() > 1 {
            return Err(KeyError::SeveralKeys { count: keys.len() });
        }
        let Some((kind, der)) = keys.pop() else {
            let found = if others.is_empty() {
                String::new()
            } else {
                others.dedup();
                format!(
                    "; the file holds {}, but Okta needs the private half of the key pair",
                    others.join(" and ")
                )
            };
            return Err(KeyError::NoPrivateKey { found });
        };
        match kind {
            SectionKind::RsaPrivateKey => {
                let pair = RsaKeyPair::from_der(&der).map_err(|e| rsa_rejected(&e))?;
                Ok(PrivateKey::rsa(der, pair))
            }
            SectionKind::EcPrivateKey => {
                let (curve, pkcs8) = sec1_to_pkcs8(&der)?;
                PrivateKey::ec(pkcs8, curve)
            }
            _ => match pkcs8_algorithm(&der)? {
                Pkcs8Kind::Rsa => {
                    let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| rsa_rejected(&e))?;
                    Ok(PrivateKey::rsa(der, pair))
                }
                Pkcs8Kind::Ec(curve) => PrivateKey::ec(der, curve),
            },
        }
    }

    fn rsa(der: Vec<u8>, pair: RsaKeyPair) -> PrivateKey {
        PrivateKey {
            inner: Arc::new(Parsed {
                der,
                algorithm: Algorithm::Rs256,
                signer: Signer::Rsa(pair),
            }),
        }
    }

    fn ec(pkcs8: Vec<u8>, curve: Curve) -> Result<PrivateKey, KeyError> {
        let (alg, algorithm) = match curve {
            Curve::P256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::Es256),
            Curve::P384 => (&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::Es384),
        };
        let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &SystemRandom::new()).map_err(|e| {
            KeyError::Invalid {
                kind: "EC",
                reason: format!(
                    "{} (an EC key must include its public key; re-export it with: {CONVERT_TO_PKCS8})",
                    e
                ),
            }
        })?;
        Ok(PrivateKey {
            inner: Arc::new(Parsed {
                der: pkcs8,
                algorithm,
                signer: Signer::Ec(pair),
            }),
        })
    }

    /// The JWS algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// A description for `check` and logs, e.g. `RSA 2048-bit (RS256)`.
    pub fn describe(&self) -> String {
        match &self.inner.signer {
            Signer::Rsa(pair) => format!(
                "RSA {}-bit ({})",
                pair.public().modulus_len() * 8,
                self.inner.algorithm.as_str()
            ),
            Signer::Ec(_) => match self.inner.algorithm {
                Algorithm::Es384 => "EC P-384 (ES384)".to_owned(),
                _ => "EC P-256 (ES256)".to_owned(),
            },
        }
    }

    /// Signs `message` with the key's algorithm; the JWS signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.inner.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
            Signer::Ec(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
        }
    }

    /// The public half as a JWK (what the Okta app's JWKS must hold),
    /// with `kid` when given.
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match &self.inner.signer {
            Signer::Rsa(pair) => {
                let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64url(&public.n), "e": b64url(&public.e)})
            }
            Signer::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if half == 48 { "P-384" } else { "P-256" };
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64url(&point[1..=half]),
                    "y": b64url(&point[1 + half..]),
                })
            }
        };
        jwk["alg"] = json!(self.inner.algorithm.as_str());
        jwk["use"] = json!("sig");
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }
}

fn rsa_rejected(err: &ring::error::KeyRejected) -> KeyError {
    let reason = match err.to_string().as_str() {
        "TooSmall" => format!("it is shorter than 2048 bits, the minimum; {GENERATE}"),
        "TooLarge" => "it is longer than 8192 bits, the maximum".to_owned(),
        "InconsistentComponents" | "InvalidComponent" => {
            "its components are inconsistent (a damaged key?)".to_owned()
        }
        other => format!("{other} (is it really an RSA private key?)"),
    };
    KeyError::Invalid {
        kind: "RSA",
        reason,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

enum Pkcs8Kind {
    Rsa,
    Ec(Curve),
}

fn curve_of(oid: &[u8]) -> Result<Curve, KeyError> {
    match oid {
        OID_P256 => Ok(Curve::P256),
        OID_P384 => Ok(Curve::P384),
        OID_P521 => Err(KeyError::Unsupported(format!(
            "EC P-521 keys (ES512) are not supported; use a P-256 or RSA key ({GENERATE})"
        ))),
        _ => Err(KeyError::Unsupported(format!(
            "the EC key's curve is not supported; use P-256, P-384 or RSA ({GENERATE})"
        ))),
    }
}

/// The key type named by a PKCS#8 `PrivateKeyInfo`'s algorithm identifier.
fn pkcs8_algorithm(der: &[u8]) -> Result<Pkcs8Kind, KeyError> {
    let malformed = || KeyError::Invalid {
        kind: "PKCS#8",
        reason: "the DER structure is malformed".into(),
    };
    let (info, _) = der::expect(der, der::SEQUENCE).ok_or_else(malformed)?;
    let (_version, rest) = der::expect(info, der::INTEGER).ok_or_else(malformed)?;
    let (algorithm, _) = der::expect(rest, der::SEQUENCE).ok_or_else(malformed)?;
    let (oid, params) = der::expect(algorithm, der::OID).ok_or_else(malformed)?;
    match oid {
        OID_RSA => Ok(Pkcs8Kind::Rsa),
        OID_EC => {
            let (curve, _) = der::expect(params, der::OID).ok_or_else(malformed)?;
            Ok(Pkcs8Kind::Ec(curve_of(curve)?))
        }
        OID_RSA_PSS => Err(KeyError::Unsupported(format!(
            "RSA-PSS keys are not supported; use a plain RSA key ({GENERATE})"
        ))),
        OID_ED25519 | OID_ED448 => Err(KeyError::Unsupported(format!(
            "EdDSA keys are not accepted by Okta for private_key_jwt; use RSA or EC P-256 ({GENERATE})"
        ))),
        _ => Err(KeyError::Unsupported(format!(
            "the key type is not supported; use RSA or EC P-256 ({GENERATE})"
        ))),
    }
}

/// Wraps a SEC1 `ECPrivateKey` into PKCS#8 (what ring reads), taking the
/// curve from its `[0]` parameters.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<(Curve, Vec<u8>), KeyError> {
    let malformed = || KeyError::Invalid {
        kind: "EC",
        reason: format!(
            "the SEC1 structure is malformed; convert the key with: {CONVERT_TO_PKCS8}"
        ),
    };
    let (key, _) = der::expect(sec1, der::SEQUENCE).ok_or_else(malformed)?;
    let (_version, rest) = der::expect(key, der::INTEGER).ok_or_else(malformed)?;
    let (_private, rest) = der::expect(rest, der::OCTET_STRING).ok_or_else(malformed)?;
    let curve_oid = der::expect(rest, der::CONTEXT_0)
        .and_then(|(params, _)| der::expect(params, der::OID))
        .map(|(oid, _)| oid)
        .ok_or_else(|| KeyError::Invalid {
            kind: "EC",
            reason: format!(
                "the EC PRIVATE KEY does not name its curve; convert it to PKCS#8 with: {CONVERT_TO_PKCS8}"
            ),
        })?;
    let curve = curve_of(curve_oid)?;
    let mut algorithm = der::tlv(der::OID, OID_EC);
    algorithm.extend(der::tlv(der::OID, curve_oid));
    let mut info = der::tlv(der::INTEGER, &[0]);
    info.extend(der::tlv(der::SEQUENCE, &algorithm));
    info.extend(der::tlv(der::OCTET_STRING, sec1));
    Ok((curve, der::tlv(der::SEQUENCE, &info)))
}

/// The few DER operations key parsing needs.
mod der {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
    pub const CONTEXT_0: u8 = 0xa0;

    /// Reads one element with tag `tag`: its content and what follows it.
    pub fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&first, rest) = input.split_first()?;
        if first != tag {
            return None;
        }
        let (&len0, rest) = rest.split_first()?;
        let (len, rest) = if len0 < 0x80 {
            (usize::from(len0), rest)
        } else {
            let count = usize::from(len0 & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[count..])
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }

    /// Encodes one element.
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;
    use crate::okta::jwt::b64url_decode;

    const RSA_PKCS8: &str = include_str!("../../tests/fixtures/keys/rsa-2048.pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("../../tests/fixtures/keys/rsa-2048.pkcs1.pem");
    const EC_SEC1: &str = include_str!("../../tests/fixtures/keys/ec-p256.sec1.pem");

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn verify_rsa(key: &PrivateKey, message: &[u8], signature: &[u8]) -> bool {
        let jwk = key.public_jwk(None);
        let n = b64url_decode(jwk["n"].as_str().unwrap()).unwrap();
        let e = b64url_decode(jwk["e"].as_str().unwrap()).unwrap();
        RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok()
    }

    #[test]
    fn rsa_pkcs8_and_pkcs1_are_the_same_key_and_sign_rs256() {
        let pkcs8 = PrivateKey::from_pem(RSA_PKCS8.as_bytes()).unwrap();
        let pkcs1 = PrivateKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        assert_eq!(pkcs8.algorithm(), Algorithm::Rs256);
        assert_eq!(pkcs8.describe(), "RSA 2048-bit (RS256)");
        assert_eq!(pkcs8.public_jwk(None), pkcs1.public_jwk(None));
        let signature = pkcs1.sign(b"hello").unwrap();
        assert!(verify_rsa(&pkcs8, b"hello", &signature));
        assert!(!verify_rsa(&pkcs8, b"hellO", &signature));
        let jwk = pkcs8.public_jwk(Some("k1"));
        assert_eq!(jwk["kid"], "k1");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn ec_sec1_and_generated_pkcs8_sign_es256() {
        let sec1 = PrivateKey::from_pem(EC_SEC1.as_bytes()).unwrap();
        assert_eq!(sec1.algorithm(), Algorithm::Es256);
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let generated = PrivateKey::from_pem(pem("PRIVATE KEY", doc.as_ref()).as_bytes()).unwrap();
        for key in [&sec1, &generated] {
            let jwk = key.public_jwk(None);
            assert_eq!(jwk["crv"], "P-256");
            let mut point = vec![4];
            point.extend(b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
            point.extend(b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
            let signature = key.sign(b"msg").unwrap();
            assert_eq!(signature.len(), 64, "JWS ES256 signatures are r||s");
            let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
            assert!(public.verify(b"msg", &signature).is_ok());
            assert!(public.verify(b"other", &signature).is_err());
        }
        assert_ne!(sec1, generated);
        let p384 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let key = PrivateKey::from_pem(pem("PRIVATE KEY", p384.as_ref()).as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Es384);
        assert_eq!(key.public_jwk(None)["crv"], "P-384");
        assert_eq!(key.sign(b"m").unwrap().len(), 96);
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = PrivateKey::from_pem(RSA_PKCS8.as_bytes()).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "PrivateKey(RSA 2048-bit (RS256), [redacted])");
        let body_line = RSA_PKCS8.lines().nth(1).unwrap();
        assert!(!debug.contains(body_line));
    }

    #[test]
    fn classic_mistakes_get_specific_errors() {
        let err = |text: &str| PrivateKey::from_pem(text.as_bytes()).unwrap_err();
        assert_eq!(err("{\"kty\":\"RSA\"}"), KeyError::Json);
        assert_eq!(
            err(""),
            KeyError::NoPrivateKey {
                found: String::new()
            }
        );
        let public = pem("PUBLIC KEY", &[0x30, 0x00]);
        assert!(
            err(&public).to_string().contains("a public key"),
            "{}",
            err(&public)
        );
        let encrypted = pem("ENCRYPTED PRIVATE KEY", &[0x30, 0x00]);
        assert_eq!(err(&encrypted), KeyError::Encrypted);
        assert!(
            err(&encrypted)
                .to_string()
                .contains("openssl pkcs8 -topk8 -nocrypt")
        );
        let two = format!("{RSA_PKCS8}{EC_SEC1}");
        assert_eq!(err(&two), KeyError::SeveralKeys { count: 2 });
        let truncated = RSA_PKCS8.replace("-----END PRIVATE KEY-----", "");
        assert_eq!(err(&truncated), KeyError::MalformedPem);
        // An Ed25519 PKCS#8 key (RFC 8410 example structure).
        let mut ed = vec![0x02, 0x01, 0x00];
        ed.extend(der::tlv(der::SEQUENCE, &der::tlv(der::OID, OID_ED25519)));
        ed.extend(der::tlv(der::OCTET_STRING, &der::tlv(0x04, &[7; 32])));
        let ed = pem("PRIVATE KEY", &der::tlv(der::SEQUENCE, &ed));
        assert!(err(&ed).to_string().contains("EdDSA"), "{}", err(&ed));
        // A SEC1 key without its curve parameters.
        let mut sec1 = der::tlv(der::INTEGER, &[1]);
        sec1.extend(der::tlv(der::OCTET_STRING, &[9; 32]));
        let sec1 = pem("EC PRIVATE KEY", &der::tlv(der::SEQUENCE, &sec1));
        assert!(
            err(&sec1).to_string().contains("openssl pkcs8 -topk8"),
            "{}",
            err(&sec1)
        );
        // No message carries the file's content.
        for bad in [&public, &encrypted, &two, &truncated, &ed, &sec1] {
            let message = err(bad).to_string();
            for line in bad
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 8)
            {
                assert!(!message.contains(line), "{message}");
            }
        }
    }

    #[test]
    fn der_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![0xab; len];
            let encoded = der::tlv(der::OCTET_STRING, &content);
            let (read, rest) = der::expect(&encoded, der::OCTET_STRING).unwrap();
            assert_eq!(read, &content[..]);
            assert!(rest.is_empty());
        }
        assert!(der::expect(&[0x04, 0x05, 1, 2], der::OCTET_STRING).is_none());
        assert!(der::expect(&[0x30, 0x00], der::OCTET_STRING).is_none());
    }
}
