//! OAuth 2.0 for an Okta service app: the client credentials grant with a
//! `private_key_jwt` client assertion, DPoP (RFC 9449), the access-token
//! cache, and which [`OAuthError`] (defined in `error`) tells an operator
//! which setup step is wrong. Uses `error`, never `auth` (which sits on top
//! of this module and hands it the OAuth half of every request).
//!
//! Invariant: token requests go through the client's one request function
//! (same budget, pacing and retries as API calls); every token POST carries
//! a fresh assertion and, with DPoP, a fresh proof; the access token, the
//! assertion and the proofs exist only in `Secret`s and sensitive header
//! values, and no error or log line contains them or key material.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};
use url::Url;

use crate::okta::error::{Endpoint, Failure, OAuthError, OktaError, required_scope};
use crate::okta::jwt::{self, DpopKey};
use crate::okta::key::PrivateKey;
use crate::okta::limit::Family;
use crate::okta::refusal::{ErrorBody, challenge_of, clock_skew, describe_skew, mentions_time};
use crate::okta::request::{Attempt, Call, Fetched};
use crate::okta::{OktaClient, lock};
use crate::secret::Secret;

/// Scopes requested when `okta.oauth.scopes` is not set: what the sync reads.
pub const DEFAULT_SCOPES: [&str; 4] = [
    "okta.users.read",
    "okta.groups.read",
    "okta.apps.read",
    "okta.logs.read",
];

/// The token endpoint of the org authorization server (the only one that
/// mints Okta API scopes).
pub const TOKEN_PATH: &str = "/oauth2/v1/token";

/// Lifetime of a client assertion. Okta allows up to one hour; the
/// assertion is used at once, so a short one limits what a leaked request
/// could be replayed for (Okta also refuses a `jti` twice).
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// Lifetime assumed when a token response has no `expires_in` (Okta always
/// sends 3600; assuming less only renews earlier).
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);

/// How many `use_dpop_nonce` answers one token fetch follows.
const MAX_NONCE_RETRIES: u32 = 2;

/// A server clock this far from ours is mentioned in clock-related errors
/// (`Date` has one-second resolution, and latency adds to it).
const SKEW_THRESHOLD_SECS: u64 = 5;

/// When to send DPoP proofs (`okta.oauth.dpop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Only once the token endpoint asks for DPoP (then for the rest of the
    /// process). The first token request of a DPoP app fails once.
    Auto,
    /// From the first token request on.
    Always,
    /// Never; a DPoP app then fails with an error that says so.
    Never,
}

impl DpopMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DpopMode::Auto => "auto",
            DpopMode::Always => "always",
            DpopMode::Never => "never",
        }
    }
}

impl fmt::Display for DpopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OAuth settings of the client (validated by the config layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The service app's client id.
    pub client_id: String,
    /// The private key whose public half is registered in the app.
    pub key: PrivateKey,
    /// Where the key was read from, for messages (never the key).
    pub key_source: String,
    /// The `kid` of the registered public key, sent in the assertion header.
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
    pub dpop: DpopMode,
}

/// What an access token grants, for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub client_id: String,
    /// Whether the token is DPoP-bound (`token_type: DPoP`).
    pub dpop: bool,
    /// The granted scopes (the token response's `scope`).
    pub scopes: Vec<String>,
    /// `expires_in` of the token response.
    pub expires_in: Duration,
}

/// A cached access token. `Debug` hides the value.
pub(super) struct AccessToken {
    /// Tells tokens apart when one is invalidated after a 401.
    id: u64,
    value: Secret,
    dpop_bound: bool,
    /// When to get a new one (shortly before it expires).
    renew_at: Instant,
    scopes: Vec<String>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("id", &self.id)
            .field("value", &self.value)
            .field("dpop_bound", &self.dpop_bound)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// One token POST: the form body and the DPoP header, built per attempt.
pub(super) struct TokenRequest {
    pub(super) body: String,
    pub(super) dpop: Option<HeaderValue>,
}

/// The OAuth state of one client: settings, the token cache, DPoP state.
pub(super) struct TokenManager {
    config: OAuthConfig,
    token_url: Url,
    /// The current token; held across a fetch, so concurrent requests wait
    /// for one token request instead of sending several.
    cache: tokio::sync::Mutex<Option<Arc<AccessToken>>>,
    /// Whether token requests carry DPoP proofs (auto mode turns it on when
    /// the server asks, for the rest of the process).
    dpop: AtomicBool,
    /// The last `DPoP-Nonce` the server sent.
    nonce: Mutex<Option<String>>,
    next_id: AtomicU64,
    last: Mutex<Option<TokenInfo>>,
    /// Set when the app is not granted [`LOGS_SCOPE`]: token requests then
    /// leave it out, and the sync runs full reconciles only (SPEC §7).
    without_logs_scope: AtomicBool,
}

/// The scope of the System Log, which only the incremental sync needs: a
/// token request refused for it is retried without it.
pub const LOGS_SCOPE: &str = "okta.logs.read";

impl TokenManager {
    pub(super) fn new(config: OAuthConfig, org_url: &Url) -> TokenManager {
        let mut token_url = org_url.clone();
        token_url.set_path(TOKEN_PATH);
        token_url.set_query(None);
        token_url.set_fragment(None);
        let dpop = config.dpop == DpopMode::Always;
        TokenManager {
            config,
            token_url,
            cache: tokio::sync::Mutex::new(None),
            dpop: AtomicBool::new(dpop),
            nonce: Mutex::new(None),
            next_id: AtomicU64::new(1),
            last: Mutex::new(None),
            without_logs_scope: AtomicBool::new(false),
        }
    }

    pub(super) fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// The current token, fetching one when there is none or it is due for
    /// renewal.
    pub(super) async fn token(&self, client: &OktaClient) -> Result<Arc<AccessToken>, OktaError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(Arc::clone(token));
        }
        *cache = None;
        let token = client.fetch_token(self).await?;
        *cache = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Forgets token `id` (after Okta refused it) unless it was replaced
    /// already by a concurrent request.
    pub(super) async fn invalidate(&self, id: u64) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|token| token.id == id) {
            *cache = None;
        }
    }

    /// What the last token granted.
    pub(super) fn last_info(&self) -> Option<TokenInfo> {
        lock(&self.last).clone()
    }

    /// Remembers the `DPoP-Nonce` of any response.
    pub(super) fn observe(&self, headers: &HeaderMap) {
        if let Some(nonce) = headers
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let mut current = lock(&self.nonce);
            if current.as_deref() != Some(nonce) {
                *current = Some(nonce.to_owned());
            }
        }
    }

    /// The scopes token requests ask for.
    fn requested_scopes(&self) -> Vec<&str> {
        let without_logs = self.without_logs_scope.load(Ordering::SeqCst);
        self.config
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !(without_logs && *s == LOGS_SCOPE))
            .collect()
    }

    fn current_nonce(&self) -> Option<String> {
        lock(&self.nonce).clone()
    }

    /// `Authorization` (and with a DPoP-bound token, `DPoP`) headers of one
    /// API request.
    pub(super) fn headers(
        &self,
        token: &AccessToken,
        method: &str,
        url: &Url,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, OktaError> {
        let scheme = if token.dpop_bound { "DPoP" } else { "Bearer" };
        let mut headers = vec![(
            AUTHORIZATION,
            sensitive(format!("{scheme} {}", token.value.expose()))?,
        )];
        if token.dpop_bound {
            let proof = self.dpop_key()?.proof(
                method,
                url,
                self.current_nonce().as_deref(),
                Some(token.value.expose()),
            );
            let proof = proof.map_err(|_| self.signing("DPoP proof"))?;
            headers.push((HeaderName::from_static("dpop"), sensitive(proof)?));
        }
        Ok(headers)
    }

    fn dpop_key(&self) -> Result<&'static DpopKey, OktaError> {
        DpopKey::for_process().map_err(|_| self.signing("DPoP key"))
    }

    fn signing(&self, what: &'static str) -> OktaError {
        OAuthError::Signing {
            client_id: self.config.client_id.clone(),
            what,
        }
        .into()
    }

    /// The body of one token POST: a fresh client assertion; with DPoP a
    /// fresh proof carrying the last nonce.
    pub(super) fn token_request(&self, with_proof: bool) -> Result<TokenRequest, OktaError> {
        let config = &self.config;
        let now = jwt::unix_now();
        let mut header = json!({"alg": config.key.algorithm().as_str(), "typ": "JWT"});
        if let Some(kid) = &config.key_id {
            header["kid"] = json!(kid);
        }
        let jti = jwt::random_jti().map_err(|_| self.signing("client assertion"))?;
        let claims = json!({
            "iss": config.client_id,
            "sub": config.client_id,
            "aud": self.token_url.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
            "jti": jti,
        });
        let assertion = jwt::encode(&header, &claims, |input| config.key.sign(input))
            .map_err(|_| self.signing("client assertion"))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.requested_scopes().join(" "))
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &assertion)
            .finish();
        let dpop = if with_proof {
            let proof = self
                .dpop_key()?
                .proof(
                    "POST",
                    &self.token_url,
                    self.current_nonce().as_deref(),
                    None,
                )
                .map_err(|_| self.signing("DPoP proof"))?;
            Some(sensitive(proof)?)
        } else {
            None
        };
        Ok(TokenRequest { body, dpop })
    }

    /// Turns a 2xx token response into a cached token.
    fn accept(&self, fetched: &Fetched, with_proof: bool) -> Result<Arc<AccessToken>, OktaError> {
        #[derive(serde::Deserialize)]
        struct Response {
            token_type: String,
            access_token: String,
            expires_in: Option<u64>,
            scope: Option<String>,
        }
        let bad = |reason: String| -> OktaError {
            OAuthError::BadTokenResponse {
                client_id: self.config.client_id.clone(),
                reason,
            }
            .into()
        };
        let response: Response = serde_json::from_slice(&fetched.body).map_err(|err| {
            // Position and category only: serde's message could quote a value.
            bad(format!(
                "not a token response ({} bytes; {:?} error at line {} column {})",
                fetched.body.len(),
                err.classify(),
                err.line(),
                err.column()
            ))
        })?;
        let token = response.access_token.trim().to_owned();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "the access token is empty or not printable ASCII".into()
            ));
        }
        let dpop_bound = if response.token_type.eq_ignore_ascii_case("dpop") {
            true
        } else if response.token_type.eq_ignore_ascii_case("bearer") {
            false
        } else {
            return Err(bad(format!(
                "unknown token_type {:?} (expected Bearer or DPoP)",
                response.token_type
            )));
        };
        if dpop_bound && !with_proof {
            return Err(bad("a DPoP token for a request without a DPoP proof".into()));
        }
        if with_proof && !dpop_bound {
            warn!(
                client_id = %self.config.client_id,
                "sent a DPoP proof but okta issued a Bearer token (the app does not bind tokens); using it"
            );
        }
        let lifetime = response
            .expires_in
            .filter(|&secs| secs > 0)
            .map_or(FALLBACK_LIFETIME, Duration::from_secs);
        let scopes: Vec<String> = match &response.scope {
            Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
            None => self.config.scopes.clone(),
        };
        let info = TokenInfo {
            client_id: self.config.client_id.clone(),
            dpop: dpop_bound,
            scopes: scopes.clone(),
            expires_in: lifetime,
        };
        info!(
            client_id = %info.client_id,
            token_type = if dpop_bound { "DPoP" } else { "Bearer" },
            scopes = %info.scopes.join(" "),
            expires_in_s = lifetime.as_secs(),
            "okta access token obtained"
        );
        *lock(&self.last) = Some(info);
        Ok(Arc::new(AccessToken {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            value: Secret::new(token),
            dpop_bound,
            renew_at: Instant::now() + lifetime - renewal_margin(lifetime),
            scopes,
        }))
    }

    /// The error for a refused token request (4xx other than 408/429).
    fn token_error(&self, fetched: &Fetched, with_proof: bool) -> OktaError {
        let body: ErrorBody = serde_json::from_slice(&fetched.body).unwrap_or_default();
        let client_id = self.config.client_id.clone();
        let detail = body.detail(fetched.status.as_u16());
        let skew = clock_skew(&fetched.headers);
        let skew_text = skew
            .filter(|s| s.unsigned_abs() >= SKEW_THRESHOLD_SECS)
            .map(describe_skew)
            .unwrap_or_default();
        // Beyond the assertion's lifetime the clocks disagree so much that
        // the time claims fail whatever Okta's description says.
        let far_off = skew.is_some_and(|s| s.unsigned_abs() >= ASSERTION_LIFETIME.as_secs());
        let err = match body.error.as_str() {
            "invalid_client" if mentions_time(&body.error_description) || far_off => {
                OAuthError::ClockSkew {
                    client_id,
                    detail,
                    skew: skew_text,
                }
            }
            "invalid_client" => OAuthError::InvalidClient {
                client_id,
                key_source: format!("{}, {}", self.config.key_source, self.config.key.describe()),
                kid_hint: match &self.config.key_id {
                    Some(kid) => format!(" under key id {kid:?}"),
                    None => " (okta.oauth.key_id is not set; if the app has several keys, set it)"
                        .to_owned(),
                },
                detail,
            },
            "invalid_scope" => OAuthError::ScopeNotGranted {
                client_id,
                requested: self.config.scopes.join(" "),
                detail,
            },
            "invalid_dpop_proof" | "use_dpop_nonce" if !with_proof => {
                OAuthError::DpopRequired { client_id, detail }
            }
            "invalid_dpop_proof" | "use_dpop_nonce" => OAuthError::DpopRejected {
                client_id,
                endpoint: token_endpoint(&self.token_url),
                detail,
                skew: skew_text,
            },
            "unauthorized_client" | "unsupported_grant_type" => {
                OAuthError::GrantNotAllowed { client_id, detail }
            }
            _ => OAuthError::TokenRefused {
                client_id,
                failure: Box::new(Failure {
                    status: Some(fetched.status.as_u16()),
                    request_id: fetched
                        .headers
                        .get("x-okta-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    ..Failure::default()
                }),
                detail,
            },
        };
        err.into()
    }

    /// What a 401 on an API call means: a DPoP nonce to use, a token to
    /// renew (expired or revoked), or a proof problem renewing cannot fix.
    pub(super) fn unauthorized(
        &self,
        token: Option<&AccessToken>,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        headers: &HeaderMap,
    ) -> Attempt {
        let challenge = challenge_of(headers);
        match challenge.error.as_deref() {
            Some("use_dpop_nonce") => Attempt::Reauth {
                renew: None,
                reason: challenge.describe(),
                failure,
            },
            Some("invalid_dpop_proof") => Attempt::Fatal(
                OAuthError::DpopRejected {
                    client_id: self.config.client_id.clone(),
                    endpoint: endpoint.clone(),
                    detail: challenge.describe(),
                    skew: clock_skew(headers)
                        .filter(|s| s.unsigned_abs() >= SKEW_THRESHOLD_SECS)
                        .map(describe_skew)
                        .unwrap_or_default(),
                }
                .into(),
            ),
            _ => Attempt::Reauth {
                renew: token.map(|t| t.id),
                reason: challenge.describe(),
                failure,
            },
        }
    }

    /// The error for a 401 that a renewed token did not fix.
    pub(super) fn rejected_again(
        &self,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        reason: String,
    ) -> OktaError {
        OAuthError::TokenRejected {
            client_id: self.config.client_id.clone(),
            endpoint: endpoint.clone(),
            detail: if reason.is_empty() {
                String::new()
            } else {
                format!("{reason}; ")
            },
            failure,
        }
        .into()
    }

    /// The error for a 403: a missing scope or a missing admin role.
    pub(super) fn forbidden(
        &self,
        token: Option<&AccessToken>,
        family: Family,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        headers: &HeaderMap,
    ) -> OktaError {
        let challenge = challenge_of(headers);
        let scope = challenge
            .scope
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| required_scope(family).to_owned());
        let granted: Vec<String> = token.map(|t| t.scopes.clone()).unwrap_or_default();
        let has_scope = scope.split_whitespace().any(|needed| {
            granted.iter().any(|g| {
                g == needed
                    || needed
                        .strip_suffix(".read")
                        .is_some_and(|base| *g == format!("{base}.manage"))
            })
        });
        let client_id = self.config.client_id.clone();
        let endpoint = endpoint.clone();
        if has_scope && challenge.error.as_deref() != Some("insufficient_scope") {
            OAuthError::MissingRole {
                client_id,
                endpoint,
                scope,
                failure,
            }
        } else {
            OAuthError::MissingScope {
                client_id,
                endpoint,
                scope,
                granted: if granted.is_empty() {
                    "none".to_owned()
                } else {
                    granted.join(" ")
                },
                failure,
            }
        }
        .into()
    }
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("client_id", &self.config.client_id)
            .field("dpop", &self.config.dpop)
            .finish_non_exhaustive()
    }
}

impl OktaClient {
    /// Gets a new access token: POSTs the client credentials grant through
    /// the request function (budget, pacing, 5xx/429 retries), following
    /// Okta's DPoP steps: switching DPoP on when the app requires it (auto)
    /// and retrying with the nonce Okta hands out.
    fn fetch_token<'a>(
        &'a self,
        manager: &'a TokenManager,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<AccessToken>, OktaError>> + Send + 'a>> {
        Box::pin(async move {
            let mut nonce_retries = 0;
            loop {
                let with_proof = manager.dpop.load(Ordering::SeqCst);
                let build = || manager.token_request(with_proof);
                let fetched = self
                    .execute(Call::Token {
                        url: &manager.token_url,
                        build: &build,
                    })
                    .await?;
                if fetched.status.is_success() {
                    return manager.accept(&fetched, with_proof);
                }
                let body: ErrorBody = serde_json::from_slice(&fetched.body).unwrap_or_default();
                let dpop_error =
                    matches!(body.error.as_str(), "use_dpop_nonce" | "invalid_dpop_proof");
                if dpop_error && !with_proof && manager.config.dpop == DpopMode::Auto {
                    info!(
                        client_id = %manager.config.client_id,
                        "the okta app requires DPoP; sending DPoP proofs from now on \
                         (set okta.oauth.dpop = \"always\" to skip the failed first request)"
                    );
                    manager.dpop.store(true, Ordering::SeqCst);
                    continue;
                }
                if body.error == "invalid_scope"
                    && manager.config.scopes.iter().any(|s| s == LOGS_SCOPE)
                    && !manager.without_logs_scope.swap(true, Ordering::SeqCst)
                {
                    warn!(
                        client_id = %manager.config.client_id,
                        "the okta app is not granted {LOGS_SCOPE}: asking for a token without \
                         it; the System Log cannot be read, so the sync runs full reconciles \
                         only (grant {LOGS_SCOPE} to the app for the incremental sync)"
                    );
                    continue;
                }
                if body.error == "use_dpop_nonce"
                    && with_proof
                    && fetched.headers.contains_key("dpop-nonce")
                    && nonce_retries < MAX_NONCE_RETRIES
                {
                    // `attempt` stored the nonce; the next proof carries it.
                    nonce_retries += 1;
                    continue;
                }
                return Err(manager.token_error(&fetched, with_proof));
            }
        })
    }
}

/// Renew this long before expiry: a tenth of the lifetime, at most a minute
/// (Okta tokens live an hour, so 60 s; short test tokens scale down).
fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

fn sensitive(value: String) -> Result<HeaderValue, OktaError> {
    let mut value = HeaderValue::from_str(&value).map_err(|_| OktaError::InvalidConfig {
        reason: "an OAuth header value contains characters that cannot be sent in HTTP".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn token_endpoint(url: &Url) -> Endpoint {
    Endpoint {
        method: "POST",
        path: url.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_margin_scales_with_the_lifetime() {
        assert_eq!(
            renewal_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
    }
}
