//! Building the client from the validated [`Config`].

use crate::config::{self, Config};
use crate::okta::auth::OktaAuth;
use crate::okta::error::OktaError;
use crate::okta::oauth::OAuthConfig;
use crate::okta::{DEFAULT_RETRY_BUDGET, OktaClient, OktaClientConfig};

impl OktaClientConfig {
    /// The client settings of `config`; fails when no credential is
    /// configured (the caller reports it as a config error).
    pub fn from_config(config: &Config) -> Result<OktaClientConfig, config::ConfigError> {
        let auth = match config.okta_auth()? {
            config::OktaAuth::Ssws { token, .. } => OktaAuth::Ssws(token.clone()),
            config::OktaAuth::OAuth {
                client_id,
                private_key,
                key_source,
                key_id,
                scopes,
                dpop,
            } => OktaAuth::OAuth(OAuthConfig {
                client_id: client_id.clone(),
                key: private_key.clone(),
                key_source: key_source.to_string(),
                key_id: key_id.clone(),
                scopes: scopes.clone(),
                dpop: *dpop,
            }),
        };
        Ok(OktaClientConfig {
            org_url: config.okta.org_url.clone(),
            auth,
            requests_per_minute: config.okta.requests_per_minute,
            rate_limit_share: config.okta.rate_limit_share,
            max_concurrent_requests: config.okta.max_concurrent_requests,
            request_timeout: config.okta.request_timeout,
            retry_budget: DEFAULT_RETRY_BUDGET,
        })
    }
}

/// Why a client could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Okta(#[from] OktaError),
}

impl OktaClient {
    /// The client for `config`.
    pub fn from_config(config: &Config) -> Result<OktaClient, ClientSetupError> {
        Ok(OktaClient::new(OktaClientConfig::from_config(config)?)?)
    }
}
