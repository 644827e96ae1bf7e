//! Credentials for the Okta management API: an SSWS API token, or OAuth 2.0
//! client credentials (see [`crate::okta::oauth`]), and what `check` reports
//! about them ([`AuthInfo`]). The top of the credential code: uses `oauth`
//! and `error`; neither names this module.
//!
//! Invariant: the request function asks the [`Authenticator`] for the
//! headers of every attempt and hands it every 401/403, so per-request DPoP
//! proofs, token renewal and credential-specific error messages live behind
//! one seam. Credentials leave [`Secret`] only to build header values that
//! are marked sensitive; nothing here logs or formats them.

use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::okta::OktaClient;
use crate::okta::error::{Endpoint, Failure, OAuthError, OktaError, required_scope};
use crate::okta::limit::Family;
use crate::okta::oauth::{AccessToken, OAuthConfig, TokenInfo, TokenManager};
use crate::okta::request::Attempt;
use crate::secret::Secret;

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum OktaAuth {
    /// `Authorization: SSWS <token>`.
    Ssws(Secret),
    /// OAuth 2.0 client credentials with `private_key_jwt` (and DPoP).
    OAuth(OAuthConfig),
}

impl OktaAuth {
    /// Short name for logs and `Debug`: which kind of credential, never the
    /// credential.
    pub fn kind(&self) -> &'static str {
        match self {
            OktaAuth::Ssws(_) => "ssws",
            OktaAuth::OAuth(_) => "oauth",
        }
    }

    /// The SSWS `Authorization` header value, marked sensitive so that
    /// `http`'s `Debug` prints `Sensitive` instead of it.
    fn ssws_header(token: &Secret) -> Result<HeaderValue, OktaError> {
        let mut value =
            HeaderValue::from_str(&format!("SSWS {}", token.expose())).map_err(|_| {
                OktaError::InvalidConfig {
                    reason:
                        "the okta API token contains characters that cannot be sent in an HTTP \
                         header"
                            .to_owned(),
                }
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// How the client authenticates, as `check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthInfo {
    Ssws,
    OAuth(TokenInfo),
}

impl OktaClient {
    /// Which credential the client uses; with OAuth, gets a token (if none
    /// is cached) and reports what it grants. For `check`.
    pub async fn auth_info(&self) -> Result<AuthInfo, OktaError> {
        match &self.inner.authenticator {
            Authenticator::Ssws(_) => Ok(AuthInfo::Ssws),
            Authenticator::OAuth(manager) => {
                manager.token(self).await?;
                manager.last_info().map(AuthInfo::OAuth).ok_or_else(|| {
                    OAuthError::BadTokenResponse {
                        client_id: manager.client_id().to_owned(),
                        reason: "no token information after a successful token request".into(),
                    }
                    .into()
                })
            }
        }
    }
}

/// The client's live credential state.
#[derive(Debug)]
pub(super) enum Authenticator {
    Ssws(HeaderValue),
    OAuth(Box<TokenManager>),
}

/// The credential one request is sent with.
pub(super) enum Credential {
    Ssws(HeaderValue),
    OAuth(Arc<AccessToken>),
}

impl Authenticator {
    pub(super) fn new(auth: &OktaAuth, org_url: &Url) -> Result<Authenticator, OktaError> {
        Ok(match auth {
            OktaAuth::Ssws(token) => Authenticator::Ssws(OktaAuth::ssws_header(token)?),
            OktaAuth::OAuth(config) => {
                Authenticator::OAuth(Box::new(TokenManager::new(config.clone(), org_url)))
            }
        })
    }

    /// The credential for the next API request (with OAuth, the cached
    /// token, or a new one).
    pub(super) async fn credential(&self, client: &OktaClient) -> Result<Credential, OktaError> {
        match self {
            Authenticator::Ssws(header) => Ok(Credential::Ssws(header.clone())),
            Authenticator::OAuth(manager) => Ok(Credential::OAuth(manager.token(client).await?)),
        }
    }

    /// The headers `credential` adds to a request (with DPoP, a fresh proof
    /// for this method and URL).
    pub(super) fn headers(
        &self,
        credential: &Credential,
        method: &str,
        url: &Url,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, OktaError> {
        match (self, credential) {
            (_, Credential::Ssws(header)) => Ok(vec![(AUTHORIZATION, header.clone())]),
            (Authenticator::OAuth(manager), Credential::OAuth(token)) => {
                manager.headers(token, method, url)
            }
            (Authenticator::Ssws(_), Credential::OAuth(_)) => Err(OktaError::InvalidConfig {
                reason: "an OAuth token reached an SSWS client".into(),
            }),
        }
    }

    /// Looks at every response (a new DPoP nonce).
    pub(super) fn observe(&self, headers: &HeaderMap) {
        if let Authenticator::OAuth(manager) = self {
            manager.observe(headers);
        }
    }

    /// What to do about a 401 on an API request.
    pub(super) fn unauthorized(
        &self,
        credential: Option<&Credential>,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        headers: &HeaderMap,
    ) -> Attempt {
        match self {
            Authenticator::Ssws(_) => Attempt::Fatal(OktaError::Unauthorized {
                endpoint: endpoint.clone(),
                failure,
            }),
            Authenticator::OAuth(manager) => {
                manager.unauthorized(token_of(credential), endpoint, failure, headers)
            }
        }
    }

    /// Before retrying after a 401: forget the refused token.
    pub(super) async fn before_reauth(&self, renew: Option<u64>) {
        if let (Authenticator::OAuth(manager), Some(id)) = (self, renew) {
            manager.invalidate(id).await;
        }
    }

    /// The error for a second 401 in a row on one request.
    pub(super) fn rejected_again(
        &self,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        reason: String,
    ) -> OktaError {
        match self {
            Authenticator::Ssws(_) => OktaError::Unauthorized {
                endpoint: endpoint.clone(),
                failure,
            },
            Authenticator::OAuth(manager) => manager.rejected_again(endpoint, failure, reason),
        }
    }

    /// The error for a 403 on an API request.
    pub(super) fn forbidden(
        &self,
        credential: Option<&Credential>,
        family: Family,
        endpoint: &Endpoint,
        failure: Box<Failure>,
        headers: &HeaderMap,
    ) -> OktaError {
        match self {
            Authenticator::Ssws(_) => OktaError::Forbidden {
                endpoint: endpoint.clone(),
                scope: required_scope(family),
                failure,
            },
            Authenticator::OAuth(manager) => {
                manager.forbidden(token_of(credential), family, endpoint, failure, headers)
            }
        }
    }
}

fn token_of(credential: Option<&Credential>) -> Option<&AccessToken> {
    match credential {
        Some(Credential::OAuth(token)) => Some(token),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_is_sensitive() {
        let auth = OktaAuth::Ssws(Secret::new("00tokenVALUE"));
        let header = OktaAuth::ssws_header(&Secret::new("00tokenVALUE")).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "SSWS 00tokenVALUE");
        assert!(!format!("{header:?}").contains("00tokenVALUE"));
        assert!(!format!("{auth:?}").contains("00tokenVALUE"));
        let url = Url::parse("https://acme.okta.com/").unwrap();
        let authenticator = Authenticator::new(&auth, &url).unwrap();
        assert!(!format!("{authenticator:?}").contains("00tokenVALUE"));
    }

    #[test]
    fn a_token_with_a_newline_is_a_config_error() {
        let err = OktaAuth::ssws_header(&Secret::new("a\nb")).unwrap_err();
        assert!(matches!(err, OktaError::InvalidConfig { .. }));
    }
}
