//! Compact JWS building for the client assertion and DPoP proofs (RFC 7515,
//! RFC 7523, RFC 9449), and the per-process DPoP key.
//!
//! Invariant: every JWT built here is signed with a fresh random `jti`;
//! nothing here logs, and the only outputs are the compact JWTs themselves
//! (which the caller marks sensitive in headers and bodies).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use url::Url;

/// base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// base64url(SHA-256(bytes)): DPoP's `ath` and JWK thumbprints.
pub fn sha256_b64url(bytes: &[u8]) -> String {
    b64url(digest(&SHA256, bytes).as_ref())
}

/// A random, unique JWT id: 128 bits from the system RNG.
pub fn random_jti() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(b64url(&bytes))
}

/// Seconds since the Unix epoch by this host's clock (what Okta compares
/// `iat`/`exp` with, hence the clock-skew advice in errors).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `header.claims.signature`, each part base64url; `sign` gets the signing
/// input.
pub fn encode<E>(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, E> {
    let mut jwt = b64url(header.to_string().as_bytes());
    jwt.push('.');
    jwt.push_str(&b64url(claims.to_string().as_bytes()));
    let signature = sign(jwt.as_bytes())?;
    jwt.push('.');
    jwt.push_str(&b64url(&signature));
    Ok(jwt)
}

/// The DPoP `htu` of a request URL: without query and fragment (RFC 9449
/// §4.2).
pub fn htu(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The DPoP key pair: ECDSA P-256, generated once per process and never
/// written anywhere. Separate from the client-authentication key (Okta
/// requires that).
pub struct DpopKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey(ES256, thumbprint {})", self.thumbprint())
    }
}

impl DpopKey {
    /// A new key pair.
    pub fn generate() -> Result<DpopKey, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| ring::error::Unspecified)?;
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(&point[1..33]),
            "y": b64url(&point[33..65]),
        });
        Ok(DpopKey { pair, jwk })
    }

    /// The key of this process (generated on first use).
    pub fn for_process() -> Result<&'static DpopKey, ring::error::Unspecified> {
        static KEY: OnceLock<DpopKey> = OnceLock::new();
        if let Some(key) = KEY.get() {
            return Ok(key);
        }
        let key = DpopKey::generate()?;
        Ok(KEY.get_or_init(|| key))
    }

    /// The public key as a JWK (what a proof's header carries).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 JWK SHA-256 thumbprint (what a DPoP-bound token's
    /// `cnf.jkt` holds).
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap_or_default(),
            self.jwk["y"].as_str().unwrap_or_default()
        );
        sha256_b64url(canonical.as_bytes())
    }

    /// A DPoP proof for one request: `htm`, `htu` (without query and
    /// fragment), `iat`, a fresh `jti`, the server's `nonce` when known and,
    /// for resource requests, `ath` = base64url(SHA-256(access token)).
    pub fn proof(
        &self,
        method: &str,
        url: &Url,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, ring::error::Unspecified> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({
            "htm": method,
            "htu": htu(url),
            "iat": unix_now(),
            "jti": random_jti()?,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = json!(sha256_b64url(token.as_bytes()));
        }
        encode(&header, &claims, |input| {
            let rng = SystemRandom::new();
            Ok(self.pair.sign(&rng, input)?.as_ref().to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    fn part(jwt: &str, index: usize) -> Value {
        let text = b64url_decode(jwt.split('.').nth(index).unwrap()).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    #[test]
    fn base64url_has_no_padding_and_round_trips() {
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert_eq!(b64url_decode("-_8="), None);
        // SHA-256("abc") from FIPS 180-2, base64url.
        assert_eq!(
            sha256_b64url(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn dpop_proof_is_signed_by_its_jwk_and_carries_the_claims() {
        let key = DpopKey::generate().unwrap();
        let url = Url::parse("https://acme.okta.com/api/v1/users?limit=200&after=x#frag").unwrap();
        let proof = key
            .proof("GET", &url, Some("n-1"), Some("access-token"))
            .unwrap();
        let header = part(&proof, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(&header["jwk"], key.public_jwk());
        assert!(header["jwk"].get("d").is_none(), "no private member");
        let claims = part(&proof, 1);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://acme.okta.com/api/v1/users");
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["ath"], sha256_b64url(b"access-token"));
        assert!(claims["iat"].as_u64().unwrap().abs_diff(unix_now()) <= 1);
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let mut point = vec![4];
        point.extend(b64url_decode(header["jwk"]["x"].as_str().unwrap()).unwrap());
        point.extend(b64url_decode(header["jwk"]["y"].as_str().unwrap()).unwrap());
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &b64url_decode(signature).unwrap())
            .unwrap();
        let again = key.proof("GET", &url, None, None).unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"], "jti is fresh");
        assert!(part(&again, 1).get("nonce").is_none());
        assert!(part(&again, 1).get("ath").is_none());
        assert!(!format!("{key:?}").contains(header["jwk"]["x"].as_str().unwrap()));
    }

    #[test]
    fn the_process_key_is_generated_once() {
        let a = DpopKey::for_process().unwrap();
        let b = DpopKey::for_process().unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.thumbprint().len(), 43);
    }
}
