//! Credentials for the Okta management API.
//!
//! Invariant: the token leaves [`Secret`] only to build a header value that is
//! marked sensitive; nothing here logs or formats it.

use std::io;
use std::path::Path;

use reqwest::header::HeaderValue;

use crate::okta::error::{OktaError, TokenError};
use crate::secret::Secret;

/// The environment variable holding an SSWS token.
pub const TOKEN_ENV_VAR: &str = "WRITER_SYNC_OKTA_API_TOKEN";

/// The systemd credential name (`LoadCredential=okta-api-token:…`).
pub const TOKEN_CREDENTIAL_NAME: &str = "okta-api-token";

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

/// Finds the SSWS token. Precedence: the value of `WRITER_SYNC_OKTA_API_TOKEN`
/// (`env_value`), then `okta.api_token_file` (`token_file`), then the systemd
/// credential `$CREDENTIALS_DIRECTORY/okta-api-token` (`credentials_dir`).
///
/// Surrounding whitespace and newlines are trimmed. A set-but-empty variable,
/// an unreadable or empty configured file, or an empty credential file is an
/// error naming its source; a credentials directory without an
/// `okta-api-token` file is not (another credential may be configured), and
/// neither is finding nothing at all: `Ok(None)`.
///
/// The caller reads the environment; this function only reads files.
pub fn resolve_ssws_token(
    env_value: Option<String>,
    token_file: Option<&Path>,
    credentials_dir: Option<&Path>,
) -> Result<Option<Secret>, TokenError> {
    if let Some(value) = env_value {
        let token = value.trim();
        if token.is_empty() {
            return Err(TokenError::EmptyEnv { var: TOKEN_ENV_VAR });
        }
        check_token_chars(token, TOKEN_ENV_VAR)?;
        return Ok(Some(Secret::new(token)));
    }
    if let Some(path) = token_file {
        return read_token_file(path).map(Some);
    }
    if let Some(dir) = credentials_dir {
        let path = dir.join(TOKEN_CREDENTIAL_NAME);
        return match std::fs::metadata(&path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            _ => read_token_file(&path).map(Some),
        };
    }
    Ok(None)
}

fn read_token_file(path: &Path) -> Result<Secret, TokenError> {
    let contents = std::fs::read_to_string(path).map_err(|err| TokenError::Read {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    let token = contents.trim();
    if token.is_empty() {
        return Err(TokenError::EmptyFile {
            path: path.to_owned(),
        });
    }
    check_token_chars(token, &path.display().to_string())?;
    Ok(Secret::new(token))
}

fn check_token_chars(token: &str, origin: &str) -> Result<(), TokenError> {
    if token.chars().all(|c| c.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(TokenError::Malformed {
            origin: origin.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn env_wins_over_file_and_credential() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, "from-file").unwrap();
        fs::write(dir.path().join(TOKEN_CREDENTIAL_NAME), "from-cred").unwrap();
        let token = resolve_ssws_token(Some("  from-env\n".into()), Some(&file), Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "from-env");
        let token = resolve_ssws_token(None, Some(&file), Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "from-file");
        let token = resolve_ssws_token(None, None, Some(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "from-cred");
    }

    #[test]
    fn file_contents_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, "\n  00abcDEF-ghi_jk \r\n").unwrap();
        let token = resolve_ssws_token(None, Some(&file), None)
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "00abcDEF-ghi_jk");
    }

    #[test]
    fn empty_sources_are_errors_naming_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, " \n").unwrap();
        let err = resolve_ssws_token(None, Some(&file), None).unwrap_err();
        assert!(matches!(err, TokenError::EmptyFile { .. }));
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );

        fs::write(dir.path().join(TOKEN_CREDENTIAL_NAME), "").unwrap();
        let err = resolve_ssws_token(None, None, Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains(TOKEN_CREDENTIAL_NAME), "{err}");

        let err = resolve_ssws_token(Some("   ".into()), Some(&file), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WRITER_SYNC_OKTA_API_TOKEN is set but empty"
        );
    }

    #[test]
    fn missing_configured_file_is_an_error_missing_credential_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = resolve_ssws_token(None, Some(&missing), None).unwrap_err();
        assert!(matches!(err, TokenError::Read { .. }));
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(
            resolve_ssws_token(None, None, Some(dir.path()))
                .unwrap()
                .is_none()
        );
        assert!(resolve_ssws_token(None, None, None).unwrap().is_none());
    }

    #[test]
    fn inner_whitespace_is_refused_without_echoing_the_token() {
        let err = resolve_ssws_token(Some("abc def-secret".into()), None, None).unwrap_err();
        assert!(matches!(err, TokenError::Malformed { .. }));
        assert!(!err.to_string().contains("def-secret"), "{err}");
    }

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
