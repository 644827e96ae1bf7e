//! The simulator's OAuth 2.0 authorization server for one API Services app:
//! `POST /oauth2/v1/token` (client credentials with a `private_key_jwt`
//! assertion, DPoP with nonces) and the access-token check of the API
//! endpoints (Bearer, or DPoP with a proof per request).
//!
//! Invariant: shares no code with the client's OAuth module: it decodes and
//! verifies JWTs itself (ring for signatures, the base64 crate), with Okta's
//! rules as `okta-api.md` §1b/§1c describe them, so the client is tested
//! against an independent implementation. Every check that fails names the
//! claim at fault in `error_description`, as Okta does.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// The token endpoint path.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Algorithms Okta lists for assertions and DPoP proofs.
const ALGS: &str = "RS256 RS384 RS512 ES256 ES384 ES512";
/// How old a DPoP proof's `iat` may be.
const PROOF_MAX_AGE: u64 = 300;
/// Replay caches are pruned when they grow past this.
const JTI_PRUNE_AT: usize = 10_000;

/// The simulated service app and its authorization server settings.
#[derive(Debug, Clone)]
pub struct SimOAuth {
    pub client_id: String,
    /// The app's registered public keys as JWKs (its JWKS). An assertion
    /// with a `kid` header is checked against the key with that `kid` only.
    pub keys: Vec<Value>,
    /// Scopes granted to the app; a token request for any other fails with
    /// `invalid_scope`.
    pub granted_scopes: Vec<String>,
    /// The app setting "Require DPoP header in token requests".
    pub require_dpop: bool,
    pub token_lifetime: Duration,
    /// Tolerated difference between the client's clock and ours, for
    /// `iat`/`exp` of assertions and `iat` of proofs.
    pub clock_skew: Duration,
}

impl SimOAuth {
    /// An app with one registered public key, Okta's defaults (1 h tokens,
    /// no DPoP requirement) and the scopes the sync needs granted.
    pub fn new(client_id: impl Into<String>, public_jwk: Value) -> SimOAuth {
        SimOAuth {
            client_id: client_id.into(),
            keys: vec![public_jwk],
            granted_scopes: [
                "okta.users.read",
                "okta.groups.read",
                "okta.apps.read",
                "okta.logs.read",
            ]
            .map(str::to_owned)
            .to_vec(),
            require_dpop: false,
            token_lifetime: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(10),
        }
    }
}

/// Tokens issued, replay caches and the DPoP nonce.
pub(crate) struct OAuthState {
    tokens: HashMap<String, Issued>,
    /// `jti` → the epoch second after which it can no longer be replayed.
    assertion_jtis: HashMap<String, u64>,
    proof_jtis: HashMap<String, u64>,
    nonce: String,
    previous_nonce: Option<String>,
}

struct Issued {
    scopes: Vec<String>,
    /// JWK thumbprint of the DPoP key the token is bound to (`cnf.jkt`).
    jkt: Option<String>,
    expires_at: Instant,
}

impl OAuthState {
    pub(crate) fn new() -> OAuthState {
        OAuthState {
            tokens: HashMap::new(),
            assertion_jtis: HashMap::new(),
            proof_jtis: HashMap::new(),
            nonce: random_string(32),
            previous_nonce: None,
        }
    }

    /// A new nonce; the previous one stays valid (Okta keeps an old nonce
    /// working for a while), the one before is refused from now on.
    pub(crate) fn rotate_nonce(&mut self) -> String {
        let fresh = random_string(32);
        self.previous_nonce = Some(std::mem::replace(&mut self.nonce, fresh));
        self.nonce.clone()
    }

    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Every issued token expires now.
    pub(crate) fn expire_tokens(&mut self, now: Instant) {
        for issued in self.tokens.values_mut() {
            issued.expires_at = issued.expires_at.min(now);
        }
    }

    pub(crate) fn token_values(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }

    fn nonce_is_valid(&self, nonce: &str) -> bool {
        nonce == self.nonce || self.previous_nonce.as_deref() == Some(nonce)
    }
}

/// A response of the OAuth layer.
pub(crate) struct Outcome {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: Vec<(header::HeaderName, String)>,
}

impl Outcome {
    fn oauth_error(status: StatusCode, error: &str, description: &str) -> Outcome {
        Outcome {
            status,
            body: json!({"error": error, "error_description": description}),
            headers: vec![(header::CACHE_CONTROL, "no-store".to_owned())],
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: String) -> Outcome {
        self.headers.push((name, value));
        self
    }
}

/// What an accepted access token grants.
pub(crate) struct Grant {
    pub(crate) scopes: Vec<String>,
    pub(crate) scheme: &'static str,
    /// Headers for the response (the current DPoP nonce).
    pub(crate) headers: Vec<(header::HeaderName, String)>,
}

fn dpop_nonce_header() -> header::HeaderName {
    header::HeaderName::from_static("dpop-nonce")
}

/// `POST /oauth2/v1/token`. `now` is the server's epoch second (its clock,
/// offset included), `at` the same instant on tokio's clock.
pub(crate) fn token_endpoint(
    config: &SimOAuth,
    state: &mut OAuthState,
    token_url: &str,
    now: u64,
    at: Instant,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let invalid_client = |description: &str| {
        Outcome::oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description)
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Outcome::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request must be application/x-www-form-urlencoded.",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Outcome::oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return invalid_client("client_assertion_type must be jwt-bearer for private_key_jwt.");
    }
    let Some(assertion) = form.get("client_assertion") else {
        return invalid_client("Client authentication failed: no client_assertion.");
    };
    let Some(jwt) = Jwt::parse(assertion) else {
        return invalid_client("The client_assertion is not a well-formed JWT.");
    };
    let alg = jwt.header_str("alg").unwrap_or_default();
    if !ALGS.split(' ').any(|a| a == alg) {
        return invalid_client("The client_assertion JWT 'alg' is not supported.");
    }
    let iss = jwt.claim_str("iss").unwrap_or_default();
    if iss != config.client_id
        || jwt.claim_str("sub") != Some(iss)
        || form
            .get("client_id")
            .is_some_and(|id| *id != config.client_id)
    {
        return invalid_client("Invalid value for 'client_id' parameter.");
    }
    let candidates: Vec<&Value> = match jwt.header_str("kid") {
        Some(kid) => config
            .keys
            .iter()
            .filter(|key| key.get("kid").and_then(Value::as_str) == Some(kid))
            .collect(),
        None => config.keys.iter().collect(),
    };
    if candidates.is_empty() {
        return invalid_client(
            "The client_assertion 'kid' does not match a key registered for the client.",
        );
    }
    if !candidates.iter().any(|key| jwt.verify(key, alg)) {
        return invalid_client("The client_assertion signature is invalid.");
    }
    if jwt.claim_str("aud") != Some(token_url) {
        return invalid_client(
            "The audience claim for client_assertion must be the endpoint invoked for the request.",
        );
    }
    let skew = config.clock_skew.as_secs();
    let Some(exp) = jwt.claim_u64("exp") else {
        return invalid_client("The client_assertion token must have an 'exp' claim.");
    };
    if exp + skew < now {
        return invalid_client("The client_assertion token is expired.");
    }
    if exp > now + 3600 + skew {
        return invalid_client(
            "The client_assertion token has an expiration too far into the future.",
        );
    }
    if let Some(iat) = jwt.claim_u64("iat")
        && iat > now + skew
    {
        return invalid_client("The client_assertion token was issued in the future ('iat').");
    }
    if let Some(jti) = jwt.claim_str("jti") {
        if state.assertion_jtis.contains_key(jti) {
            return invalid_client("The client_assertion token has already been used ('jti').");
        }
        prune(&mut state.assertion_jtis, now);
        state.assertion_jtis.insert(jti.to_owned(), exp + skew);
    }

    let requested: Vec<String> = form
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if requested.is_empty() {
        return Outcome::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The authorization request must request at least one scope.",
        );
    }
    let refused: Vec<&str> = requested
        .iter()
        .filter(|s| !config.granted_scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !refused.is_empty() {
        return Outcome::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!(
                "The following scopes are not granted to the client: {}.",
                refused.join(" ")
            ),
        );
    }

    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let jkt = match proof {
        None if config.require_dpop => {
            return Outcome::oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "The DPoP proof JWT header is missing.",
            );
        }
        None => None,
        Some(proof) => {
            let verified = match verify_proof(state, proof, "POST", token_url, None, now, skew) {
                Ok(verified) => verified,
                Err(description) => {
                    return Outcome::oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_dpop_proof",
                        &description,
                    );
                }
            };
            if config.require_dpop
                && !verified
                    .nonce
                    .as_deref()
                    .is_some_and(|n| state.nonce_is_valid(n))
            {
                return Outcome::oauth_error(
                    StatusCode::BAD_REQUEST,
                    "use_dpop_nonce",
                    "Authorization server requires nonce in DPoP proof.",
                )
                .with_header(dpop_nonce_header(), state.nonce.clone());
            }
            Some(verified.jkt)
        }
    };

    let token = format!("sim{}", random_string(40));
    let lifetime = config.token_lifetime;
    state.tokens.retain(|_, issued| issued.expires_at > at);
    state.tokens.insert(
        token.clone(),
        Issued {
            scopes: requested.clone(),
            jkt: jkt.clone(),
            expires_at: at + lifetime,
        },
    );
    let expires_in = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    let mut outcome = Outcome {
        status: StatusCode::OK,
        body: json!({
            "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": expires_in,
            "access_token": token,
            "scope": requested.join(" "),
        }),
        headers: vec![(header::CACHE_CONTROL, "no-store".to_owned())],
    };
    if jkt.is_some() {
        outcome = outcome.with_header(dpop_nonce_header(), state.nonce.clone());
    }
    outcome
}

/// Checks the access token of an API request (`Authorization: Bearer` or
/// `DPoP` with a proof for `method` and `htu`).
pub(crate) fn authenticate(
    config: &SimOAuth,
    state: &mut OAuthState,
    method: &str,
    htu: &str,
    now: u64,
    at: Instant,
    headers: &HeaderMap,
) -> Result<Grant, Outcome> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (scheme, token) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
    let challenge_scheme = if dpop_scheme { "DPoP" } else { "Bearer" };
    let refuse = |error: &str, description: &str| {
        let mut challenge = format!(
            "{challenge_scheme} realm=\"IdentityMgmt\", error=\"{error}\", error_description=\"{description}\""
        );
        if dpop_scheme {
            challenge = format!("DPoP algs=\"{ALGS}\", {}", &challenge["DPoP ".len()..]);
        }
        Outcome {
            status: StatusCode::UNAUTHORIZED,
            body: json!({
                "errorCode": "E0000011",
                "errorSummary": "Invalid token provided",
                "errorLink": "E0000011",
                "errorId": format!("oae{}", random_string(22)),
                "errorCauses": []
            }),
            headers: vec![(header::WWW_AUTHENTICATE, challenge)],
        }
    };
    let Some(issued) = state.tokens.get(token.trim()) else {
        return Err(refuse("invalid_token", "The access token is invalid."));
    };
    if issued.expires_at <= at {
        return Err(refuse("invalid_token", "The access token is expired."));
    }
    let scopes = issued.scopes.clone();
    let bound = issued.jkt.clone();
    if !dpop_scheme {
        if bound.is_some() {
            return Err(refuse(
                "invalid_token",
                "The access token is DPoP-bound; send it with the DPoP scheme and a DPoP proof.",
            ));
        }
        return Ok(Grant {
            scopes,
            scheme: "Bearer",
            headers: Vec::new(),
        });
    }
    let Some(bound) = bound else {
        return Err(refuse(
            "invalid_token",
            "The access token is not DPoP-bound.",
        ));
    };
    let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
        return Err(refuse(
            "invalid_dpop_proof",
            "The DPoP proof JWT header is missing.",
        ));
    };
    let skew = config.clock_skew.as_secs();
    let verified = verify_proof(state, proof, method, htu, Some(token.trim()), now, skew)
        .map_err(|description| refuse("invalid_dpop_proof", &description))?;
    if verified.jkt != bound {
        return Err(refuse(
            "invalid_dpop_proof",
            "The DPoP proof key does not match the key the access token is bound to.",
        ));
    }
    if let Some(nonce) = &verified.nonce
        && !state.nonce_is_valid(nonce)
    {
        return Err(refuse(
            "use_dpop_nonce",
            "Resource server requires a current nonce in DPoP proof.",
        )
        .with_header(dpop_nonce_header(), state.nonce.clone()));
    }
    Ok(Grant {
        scopes,
        scheme: "DPoP",
        headers: vec![(dpop_nonce_header(), state.nonce.clone())],
    })
}

/// The scope an API path needs (`*.manage` also grants it).
pub(crate) fn required_scope(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "api", "v1", "apps", ..] => Some("okta.apps.read"),
        ["", "api", "v1", "groups", ..] => Some("okta.groups.read"),
        ["", "api", "v1", "users", ..] => Some("okta.users.read"),
        ["", "api", "v1", "meta", "schemas", ..] => Some("okta.schemas.read"),
        ["", "api", "v1", "logs", ..] => Some("okta.logs.read"),
        _ => None,
    }
}

pub(crate) fn has_scope(granted: &[String], needed: &str) -> bool {
    let manage = needed.replace(".read", ".manage");
    granted.iter().any(|g| g == needed || *g == manage)
}

/// A 403 for a token without the scope an endpoint needs.
pub(crate) fn insufficient_scope(scheme: &str, needed: &str, serial: u64) -> Outcome {
    Outcome {
        status: StatusCode::FORBIDDEN,
        body: json!({
            "errorCode": "E0000006",
            "errorSummary": "You do not have permission to perform the requested action",
            "errorLink": "E0000006",
            "errorId": format!("oae{serial:022}"),
            "errorCauses": []
        }),
        headers: vec![(
            header::WWW_AUTHENTICATE,
            format!(
                "{scheme} realm=\"IdentityMgmt\", scope=\"{needed}\", error=\"insufficient_scope\", error_description=\"The access token provided does not contain the required scopes.\""
            ),
        )],
    }
}

struct VerifiedProof {
    jkt: String,
    nonce: Option<String>,
}

/// RFC 9449 §4.3 checks of one proof.
fn verify_proof(
    state: &mut OAuthState,
    proof: &str,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    now: u64,
    skew: u64,
) -> Result<VerifiedProof, String> {
    let jwt = Jwt::parse(proof).ok_or("The DPoP proof is not a well-formed JWT.")?;
    if jwt.header_str("typ") != Some("dpop+jwt") {
        return Err("The DPoP proof 'typ' must be 'dpop+jwt'.".into());
    }
    let alg = jwt.header_str("alg").unwrap_or_default();
    if !ALGS.split(' ').any(|a| a == alg) {
        return Err(format!("The DPoP proof 'alg' {alg:?} is not allowed."));
    }
    let jwk = jwt
        .header
        .get("jwk")
        .filter(|jwk| jwk.is_object())
        .ok_or("The DPoP proof header has no 'jwk'.")?;
    if ["d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .any(|member| jwk.get(member).is_some())
    {
        return Err("The DPoP proof 'jwk' contains a private key.".into());
    }
    if !jwt.verify(jwk, alg) {
        return Err("The DPoP proof signature is invalid.".into());
    }
    if jwt.claim_str("htm") != Some(htm) {
        return Err(format!("The DPoP proof 'htm' claim must be {htm:?}."));
    }
    if jwt.claim_str("htu") != Some(htu) {
        return Err(format!(
            "The DPoP proof 'htu' claim {:?} is invalid for {htu}.",
            jwt.claim_str("htu").unwrap_or_default()
        ));
    }
    let iat = jwt
        .claim_u64("iat")
        .ok_or("The DPoP proof has no 'iat' claim.")?;
    if iat > now + skew || iat + PROOF_MAX_AGE + skew < now {
        return Err("The DPoP proof 'iat' claim is too old or in the future.".into());
    }
    let jti = jwt
        .claim_str("jti")
        .filter(|j| !j.is_empty())
        .ok_or("The DPoP proof has no 'jti' claim.")?;
    if state.proof_jtis.contains_key(jti) {
        return Err("The DPoP proof 'jti' was already used.".into());
    }
    if let Some(token) = access_token {
        let expected = URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()));
        if jwt.claim_str("ath") != Some(expected.as_str()) {
            return Err("The DPoP proof 'ath' claim does not match the access token.".into());
        }
    }
    let jkt = thumbprint(jwk).ok_or("The DPoP proof 'jwk' is incomplete.")?;
    prune(&mut state.proof_jtis, now);
    state
        .proof_jtis
        .insert(jti.to_owned(), iat + PROOF_MAX_AGE + skew);
    Ok(VerifiedProof {
        jkt,
        nonce: jwt.claim_str("nonce").map(str::to_owned),
    })
}

/// RFC 7638 JWK SHA-256 thumbprint: the required members in lexicographic
/// order, no whitespace.
fn thumbprint(jwk: &Value) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let canonical = match member("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e")?,
            member("n")?
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())))
}

fn prune(jtis: &mut HashMap<String, u64>, now: u64) {
    if jtis.len() >= JTI_PRUNE_AT {
        jtis.retain(|_, until| *until >= now);
    }
}

fn random_string(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

/// A decoded compact JWS.
struct Jwt {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    fn parse(text: &str) -> Option<Jwt> {
        let mut parts = text.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| -> Option<Map<String, Value>> {
            match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()? {
                Value::Object(map) => Some(map),
                _ => None,
            }
        };
        Some(Jwt {
            header: object(header)?,
            claims: object(claims)?,
            signing_input: format!("{header}.{claims}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    fn claim_u64(&self, name: &str) -> Option<u64> {
        self.claims.get(name).and_then(Value::as_u64)
    }

    /// Whether the signature verifies with `jwk` under `alg`.
    fn verify(&self, jwk: &Value, alg: &str) -> bool {
        let member = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        };
        if jwk
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|key_alg| key_alg != alg)
        {
            return false;
        }
        let input = self.signing_input.as_bytes();
        match (jwk.get("kty").and_then(Value::as_str), alg) {
            (Some("RSA"), "RS256" | "RS384" | "RS512") => {
                let (Some(n), Some(e)) = (member("n"), member("e")) else {
                    return false;
                };
                let params = match alg {
                    "RS256" => &RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &RSA_PKCS1_2048_8192_SHA384,
                    _ => &RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, input, &self.signature)
                    .is_ok()
            }
            (Some("EC"), "ES256" | "ES384") => {
                let (Some(x), Some(y)) = (member("x"), member("y")) else {
                    return false;
                };
                let (curve, params) = match alg {
                    "ES256" => ("P-256", &ECDSA_P256_SHA256_FIXED),
                    _ => ("P-384", &ECDSA_P384_SHA384_FIXED),
                };
                if jwk.get("crv").and_then(Value::as_str) != Some(curve) {
                    return false;
                }
                let mut point = vec![4];
                point.extend(x);
                point.extend(y);
                UnparsedPublicKey::new(params, point)
                    .verify(input, &self.signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn jwt_parsing_refuses_malformed_input() {
        assert!(Jwt::parse("a.b").is_none());
        assert!(Jwt::parse("a.b.c.d").is_none());
        assert!(Jwt::parse("!!.e30.").is_none());
        let e30 = URL_SAFE_NO_PAD.encode("{}");
        assert!(Jwt::parse(&format!("{e30}.{e30}.")).is_some());
        let array = URL_SAFE_NO_PAD.encode("[]");
        assert!(Jwt::parse(&format!("{array}.{e30}.")).is_none());
    }

    #[test]
    fn scopes_per_path() {
        assert_eq!(
            required_scope("/api/v1/apps/0oa1/users"),
            Some("okta.apps.read")
        );
        assert_eq!(
            required_scope("/api/v1/groups/00g1/users"),
            Some("okta.groups.read")
        );
        assert_eq!(required_scope("/api/v1/users"), Some("okta.users.read"));
        assert_eq!(required_scope("/api/v1/logs"), Some("okta.logs.read"));
        assert_eq!(
            required_scope("/api/v1/meta/schemas/apps/0oa1/default"),
            Some("okta.schemas.read")
        );
        assert_eq!(required_scope("/api/v1/other"), None);
        let granted = vec!["okta.groups.manage".to_owned()];
        assert!(has_scope(&granted, "okta.groups.read"));
        assert!(!has_scope(&granted, "okta.users.read"));
    }
}
