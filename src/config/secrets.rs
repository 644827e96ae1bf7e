//! The secrets a configuration names: the SSWS token (environment, then
//! `okta.api_token_file`, then the systemd credential `okta-api-token`) and
//! the OAuth private key (`okta.oauth.private_key_file`, else the systemd
//! credential `okta-private-key`).
//!
//! Invariant: a secret is read once, at load, and leaves only as a
//! [`Secret`] or a parsed [`PrivateKey`]; no message quotes a file's
//! content. Token files and credentials go through
//! [`crate::fsperm::read_secret_text`] (refused when others can write them,
//! regular files of at most 64 KiB); key files must be regular files of at
//! most 64 KiB.

use std::path::{Path, PathBuf};

use crate::config::{
    ConfigEnv, ConfigError, KEY_CREDENTIAL, KeySource, OktaAuth, TOKEN_CREDENTIAL, TOKEN_ENV,
    TokenSource,
};
use crate::okta::key::PrivateKey;
use crate::secret::Secret;

/// Private key files larger than this are refused (a PEM key is a few KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The SSWS token, from the first source that has one: the environment,
/// `okta.api_token_file`, the systemd credential. `None` when none does.
pub(super) fn resolve_ssws_token(
    token_file: Option<&Path>,
    config_path: &Path,
    env: &ConfigEnv,
) -> Result<Option<OktaAuth>, ConfigError> {
    if let Some(token) = &env.okta_api_token {
        return Ok(Some(OktaAuth::Ssws {
            token: token.clone(),
            source: TokenSource::Env,
        }));
    }
    if let Some(file) = token_file {
        let token = read_secret_file(file).map_err(|message| ConfigError::SecretFile {
            path: config_path.to_path_buf(),
            key: "okta.api_token_file".into(),
            file: file.to_path_buf(),
            message,
        })?;
        return Ok(Some(OktaAuth::Ssws {
            token,
            source: TokenSource::File(file.to_path_buf()),
        }));
    }
    if let Some(dir) = &env.credentials_directory {
        let file = dir.join(TOKEN_CREDENTIAL);
        if file.exists() {
            let token = read_secret_file(&file).map_err(|message| ConfigError::SecretFile {
                path: config_path.to_path_buf(),
                key: format!("systemd credential {TOKEN_CREDENTIAL}"),
                file: file.clone(),
                message,
            })?;
            return Ok(Some(OktaAuth::Ssws {
                token,
                source: TokenSource::Credential(file),
            }));
        }
    }
    Ok(None)
}

/// The SSWS token source that is configured, if any (named for messages).
pub(super) fn ssws_configured(token_file: Option<&Path>, env: &ConfigEnv) -> Option<String> {
    if env.okta_api_token.is_some() {
        return Some(format!("environment variable {TOKEN_ENV}"));
    }
    if token_file.is_some() {
        return Some("`okta.api_token_file`".to_owned());
    }
    env.credentials_directory
        .as_ref()
        .map(|dir| dir.join(TOKEN_CREDENTIAL))
        .filter(|file| file.exists())
        .map(|file| format!("systemd credential {}", file.display()))
}

/// The OAuth private key: `okta.oauth.private_key_file`, else the systemd
/// credential `okta-private-key`; read, size-checked and parsed here, so a
/// bad key is a config error naming its key and file.
pub(super) fn resolve_private_key(
    private_key_file: Option<PathBuf>,
    path: &Path,
    env: &ConfigEnv,
) -> Result<(PrivateKey, KeySource), ConfigError> {
    let (file, key_name, source) = match private_key_file {
        Some(file) => (
            file.clone(),
            "okta.oauth.private_key_file".to_owned(),
            KeySource::File(file),
        ),
        None => match env
            .credentials_directory
            .as_ref()
            .map(|dir| dir.join(KEY_CREDENTIAL))
            .filter(|file| file.exists())
        {
            Some(file) => (
                file.clone(),
                format!("systemd credential {KEY_CREDENTIAL}"),
                KeySource::Credential(file),
            ),
            None => {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "okta.oauth.private_key_file".to_owned(),
                    message: format!(
                        "is required (a PEM file with the app's private key), unless the \
                         systemd credential {KEY_CREDENTIAL} provides the key"
                    ),
                });
            }
        },
    };
    let private_key = read_private_key(&file).map_err(|message| ConfigError::SecretFile {
        path: path.to_path_buf(),
        key: key_name,
        file,
        message,
    })?;
    Ok((private_key, source))
}

/// Reads and parses a PEM private key file. Messages never quote the file.
fn read_private_key(file: &Path) -> Result<PrivateKey, String> {
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{} bytes is too large for a PEM private key",
            meta.len()
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    PrivateKey::from_pem(&bytes).map_err(|e| e.to_string())
}

/// Reads a secret from a file: trimmed, non-empty, one line.
fn read_secret_file(file: &Path) -> Result<Secret, String> {
    let text = crate::fsperm::read_secret_text(file)?;
    let value = text.trim();
    if value.is_empty() {
        return Err("the file is empty".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token contains whitespace or control characters inside it".into());
    }
    Ok(Secret::new(value))
}
