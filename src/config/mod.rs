//! Configuration: TOML file → raw serde structs → validated [`Config`].
//!
//! Invariant: a [`Config`] value is always valid. Every check (unknown keys,
//! types, URLs, cron, rates, secrets) happens in [`load`]; nothing downstream
//! re-validates or fails on configuration. Errors name the file and the key.

mod raw;
mod schedule;
mod secrets;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::okta::key::PrivateKey;
use crate::okta::oauth::DpopMode;
use crate::secret::Secret;
use crate::store::StoreUrl;

pub use self::schedule::CronSchedule;
pub use self::validate::validate_org_url;

/// Where the config file is read from when neither `--config` nor
/// `WRITER_SYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/writer-sync/config.toml";
/// Environment variable holding the SSWS API token.
pub const TOKEN_ENV: &str = "WRITER_SYNC_OKTA_API_TOKEN";
/// Name of the systemd credential holding the SSWS API token.
pub const TOKEN_CREDENTIAL: &str = "okta-api-token";
/// Name of the systemd credential holding the OAuth private key (PEM).
pub const KEY_CREDENTIAL: &str = "okta-private-key";

/// The parts of the process environment the configuration depends on,
/// gathered once by `main` so loading stays deterministic in tests.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    /// `WRITER_SYNC_OKTA_API_TOKEN`.
    pub okta_api_token: Option<Secret>,
    /// `CREDENTIALS_DIRECTORY`, set by systemd's `LoadCredential=`.
    pub credentials_directory: Option<PathBuf>,
    /// `STATE_DIRECTORY`, set by systemd's `StateDirectory=`.
    pub state_directory: Option<PathBuf>,
}

impl ConfigEnv {
    pub fn from_process() -> ConfigEnv {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        ConfigEnv {
            okta_api_token: std::env::var(TOKEN_ENV)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            credentials_directory: non_empty("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            // systemd joins several state directories with ':'; ours is the first.
            state_directory: non_empty("STATE_DIRECTORY").and_then(|v| {
                v.to_string_lossy()
                    .split(':')
                    .next()
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            }),
        }
    }
}

/// A configuration error. The message always names the file, and the key
/// when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key that writer-sync does not know (typos are never ignored).
    #[error("unknown key `{key}` in config file {path}{}", line_suffix(*line))]
    UnknownKey {
        path: PathBuf,
        key: String,
        line: Option<usize>,
    },
    /// A key whose value is out of range or inconsistent with another key.
    #[error("invalid `{key}` in config file {path}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A secret file named by the configuration could not be used.
    #[error("cannot use secret file {file} (from `{key}` in {path}): {message}")]
    SecretFile {
        path: PathBuf,
        key: String,
        file: PathBuf,
        message: String,
    },
    /// The command needs Okta but no credential is configured.
    #[error(
        "no Okta credential configured for {path}: set {TOKEN_ENV}, `okta.api_token_file` or \
         the systemd credential `{TOKEN_CREDENTIAL}` (SSWS API token), or configure OAuth 2.0 in \
         an `[okta.oauth]` table (`client_id` and `private_key_file`)"
    )]
    MissingCredential { path: PathBuf },
    /// The config file could be changed by other accounts (see `fsperm`).
    #[error("{message}")]
    Permissions { message: String },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages).
    pub path: PathBuf,
    pub okta: OktaConfig,
    pub store: StoreConfig,
    pub sync: SyncConfig,
    pub teams: TeamsConfig,
    pub safety: SafetyConfig,
    pub log: LogConfig,
    pub server: ServerConfig,
}

#[derive(Debug, Clone)]
pub struct OktaConfig {
    pub org_url: Url,
    pub app_id: Option<String>,
    /// `None` when no credential is configured; commands that talk to Okta
    /// call [`Config::okta_auth`], which turns that into an error.
    pub auth: Option<OktaAuth>,
    pub requests_per_minute: NonZeroU32,
    /// Percentage (1–100) of each Okta rate-limit bucket used per window.
    pub rate_limit_share: u8,
    pub max_concurrent_requests: NonZeroUsize,
    pub request_timeout: Duration,
}

/// How writer-sync authenticates to Okta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OktaAuth {
    /// `Authorization: SSWS <token>`.
    Ssws { token: Secret, source: TokenSource },
    /// OAuth 2.0 client credentials with a `private_key_jwt` assertion
    /// (`[okta.oauth]`).
    OAuth {
        client_id: String,
        /// Parsed and checked at load; `Debug` prints only its algorithm.
        private_key: PrivateKey,
        key_source: KeySource,
        key_id: Option<String>,
        scopes: Vec<String>,
        dpop: DpopMode,
    },
}

/// Where the OAuth private key came from (reported by `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Credential(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "okta.oauth.private_key_file {}", p.display()),
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

/// Where the SSWS token came from (reported by `check`, never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File(PathBuf),
    Credential(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env => write!(f, "environment variable {TOKEN_ENV}"),
            TokenSource::File(p) => write!(f, "okta.api_token_file {}", p.display()),
            TokenSource::Credential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: StoreUrl,
    /// `None` = unlimited.
    pub writes_per_second: Option<NonZeroU32>,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub schedule: CronSchedule,
    pub run_on_start: bool,
    pub default_team: Option<String>,
    pub role_attribute: String,
    pub role_source: RoleSource,
}

/// Where the role attribute is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// The app-user profile (`AppUser.profile`).
    AppUser,
    /// The Okta user profile (`User.profile`).
    User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushGroups {
    /// Every group assigned to the app.
    Assigned,
    /// These Okta group names.
    Named(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct TeamsConfig {
    pub push_groups: PushGroups,
    pub create_missing: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct SafetyConfig {
    pub max_deactivations: u32,
    pub max_deactivations_percent: f64,
    pub max_membership_removals: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive (`info`, `debug,sqlx=warn`, …), already checked.
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Option<std::net::SocketAddr>,
}

impl Config {
    /// The Okta credential, or the error that says how to configure one.
    pub fn okta_auth(&self) -> Result<&OktaAuth, ConfigError> {
        self.okta
            .auth
            .as_ref()
            .ok_or_else(|| ConfigError::MissingCredential {
                path: self.path.clone(),
            })
    }

    /// The safety limits in the planner's vocabulary.
    pub fn safety_limits(&self) -> crate::model::SafetyLimits {
        crate::model::SafetyLimits {
            max_deactivations: self.safety.max_deactivations,
            max_deactivations_percent: self.safety.max_deactivations_percent,
            max_membership_removals: self.safety.max_membership_removals,
        }
    }

    /// The planner's policy.
    pub fn policy(&self) -> crate::model::Policy {
        crate::model::Policy {
            default_team: self.sync.default_team.clone(),
            create_missing_teams: self.teams.create_missing,
        }
    }
}

/// Picks the config path: `--config`, else `WRITER_SYNC_CONFIG`, else the default.
pub fn resolve_path(cli: Option<&Path>, env_value: Option<&str>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match env_value {
        Some(v) if !v.trim().is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path, env: &ConfigEnv) -> Result<Config, ConfigError> {
    crate::fsperm::check_and_warn(path, crate::fsperm::FileKind::Config)
        .map_err(|message| ConfigError::Permissions { message })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, env)
}

/// Validates config text; `path` is only used in messages and to resolve
/// nothing else (relative secret paths are taken as given).
pub fn parse(text: &str, path: &Path, env: &ConfigEnv) -> Result<Config, ConfigError> {
    let raw = raw::parse(text, path)?;
    validate::validate(raw, path, env)
}
