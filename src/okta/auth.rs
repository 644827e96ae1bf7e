//! Credentials for the Okta management API.
//!
//! Invariant: the token leaves [`Secret`] only to build a header value that is
//! marked sensitive; nothing here logs or formats it.

use reqwest::header::HeaderValue;

use crate::okta::error::OktaError;
use crate::secret::Secret;

/// How the client authenticates. OAuth 2.0 client credentials (with DPoP)
/// will be a second variant; the client asks [`OktaAuth`] for the headers of
/// each request, so a per-request proof fits the same seam.
#[derive(Debug, Clone)]
pub enum OktaAuth {
    /// `Authorization: SSWS <token>`.
    Ssws(Secret),
}

impl OktaAuth {
    /// Short name for logs and `Debug`: which kind of credential, never the
    /// credential.
    pub fn kind(&self) -> &'static str {
        match self {
            OktaAuth::Ssws(_) => "ssws",
        }
    }

    /// The `Authorization` header value, marked sensitive so that `http`'s
    /// `Debug` prints `Sensitive` instead of it.
    pub(crate) fn authorization(&self) -> Result<HeaderValue, OktaError> {
        match self {
            OktaAuth::Ssws(token) => {
                let mut value = HeaderValue::from_str(&format!("SSWS {}", token.expose()))
                    .map_err(|_| OktaError::InvalidConfig {
                        reason: "the okta API token contains characters that cannot be sent \
                                 in an HTTP header"
                            .to_owned(),
                    })?;
                value.set_sensitive(true);
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_is_sensitive() {
        let auth = OktaAuth::Ssws(Secret::new("00tokenVALUE"));
        let header = auth.authorization().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "SSWS 00tokenVALUE");
        assert!(!format!("{header:?}").contains("00tokenVALUE"));
        assert!(!format!("{auth:?}").contains("00tokenVALUE"));
    }
}
