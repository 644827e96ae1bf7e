//! Configuration: what the operator wrote (the TOML file, the token and key
//! files, the environment and systemd credentials) turned into the values
//! the rest of writer-sync runs on, and into the settings of the layers
//! below it (the Okta client's [`OktaClientConfig`], the store's
//! [`StoreUrl`]); those layers never name this module.
//!
//! Two stages, as ripgrep's low-level → high-level arguments:
//! - `raw.rs`: the text becomes `RawConfig`, exactly the file's
//!   shape; unknown keys are refused with their line. No I/O.
//! - `validate.rs` (with `secrets.rs` for the token and key files and
//!   `schedule.rs` for cron): every value is checked and the whole file
//!   becomes a [`ConfigFile`], whose credential may still be absent. Then a
//!   command that talks to Okta takes a [`Config`] from it
//!   ([`ConfigFile::into_config`], [`load`], [`parse`]), and the store-only
//!   commands (`store dump`, `store load`, `history`; SPEC §5) take a
//!   [`StoreOnly`] ([`ConfigFile::into_store_only`], [`load_store`]).
//!
//! Invariant: a [`Config`] value is always valid and always has exactly one
//! Okta credential; a [`StoreOnly`] comes from a file that was validated as
//! a whole, exactly as for a `Config`. Every check (unknown keys, types,
//! URLs, cron, rates, secrets) happens while loading; nothing downstream
//! re-validates or fails on configuration. Errors name the file and the key
//! (and the line where there is one).

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

use crate::okta::OktaClientConfig;
use crate::okta::key::PrivateKey;
use crate::okta::oauth::{DpopMode, OAuthConfig};
use crate::secret::Secret;
use crate::store::StoreUrl;

pub use self::schedule::CronSchedule;
pub use self::validate::{parse_duration, validate_org_url};

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

/// The validated configuration of a command that talks to Okta: always
/// with its credential (`okta.auth`).
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
    pub events: EventsConfig,
}

/// `[events]`: the incremental sync from the System Log (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsConfig {
    pub source: EventSource,
    /// How often the System Log is read between full reconciles.
    pub poll_interval: Duration,
    /// A poll touching more users runs a full reconcile instead.
    pub max_affected_users: u32,
}

impl EventsConfig {
    pub fn enabled(&self) -> bool {
        self.source == EventSource::SystemLog
    }
}

/// Where changes between full reconciles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Okta's System Log, read as a polling query.
    SystemLog,
    /// None: full reconciles only.
    Off,
}

#[derive(Debug, Clone)]
pub struct OktaConfig {
    pub org_url: Url,
    pub app_id: Option<String>,
    /// The one credential; a file without one never becomes a [`Config`].
    pub auth: OktaAuth,
    pub requests_per_minute: NonZeroU32,
    /// Percentage (1–100) of each Okta rate-limit bucket used per window.
    pub rate_limit_share: u8,
    pub max_concurrent_requests: NonZeroUsize,
    pub request_timeout: Duration,
    /// Time one Okta request may spend on retries (`okta.retry_budget`).
    pub retry_budget: Duration,
    /// Largest Okta response body accepted (`okta.max_response_bytes`).
    pub max_response_bytes: u64,
}

/// How writer-sync authenticates to Okta, as configured.
///
/// The Okta client has its own enum, [`crate::okta::auth::OktaAuth`], and
/// [`Config::okta_client_config`] converts this one into it. Two enums
/// because they answer different questions: this one also records where
/// each secret came from ([`TokenSource`], [`KeySource`]), which `check`
/// reports and which is the config layer's vocabulary (environment
/// variables, config keys, systemd credentials); the client only needs the
/// secret itself and a description of the key's origin for its messages,
/// and must not depend on this module.
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
    /// `safety.deactivate_after` (SPEC §8): how long a managed user out of
    /// scope waits before it is deactivated (zero: at once).
    pub deactivate_after: Duration,
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

/// What the store-only commands (`store dump`, `store load`, `history`)
/// need: the store and the log settings. It comes from a file validated as
/// a whole (an unknown key or a bad value anywhere is still an error), but
/// needs no Okta credential (SPEC §5).
#[derive(Debug, Clone)]
pub struct StoreOnly {
    /// The file this configuration was read from (for messages).
    pub path: PathBuf,
    pub store: StoreConfig,
    pub log: LogConfig,
}

/// The config file, validated as a whole, before the command says whether
/// it needs Okta: with a credential it is a whole [`Config`], without one it
/// is good only for the store-only commands.
#[derive(Debug, Clone)]
pub enum ConfigFile {
    /// The file (or the environment) configures exactly one credential.
    Complete(Box<Config>),
    /// No credential is configured; every other value was validated.
    NoCredential(StoreOnly),
}

impl ConfigFile {
    /// The file this configuration was read from.
    pub fn path(&self) -> &Path {
        match self {
            ConfigFile::Complete(config) => &config.path,
            ConfigFile::NoCredential(store_only) => &store_only.path,
        }
    }

    /// The log settings (logging is set up before the command runs).
    pub fn log(&self) -> &LogConfig {
        match self {
            ConfigFile::Complete(config) => &config.log,
            ConfigFile::NoCredential(store_only) => &store_only.log,
        }
    }

    /// The configuration of a command that talks to Okta, or the error
    /// that says how to configure a credential.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        match self {
            ConfigFile::Complete(config) => Ok(*config),
            ConfigFile::NoCredential(store_only) => Err(ConfigError::MissingCredential {
                path: store_only.path,
            }),
        }
    }

    /// What a store-only command needs (a credential, if any, is dropped).
    pub fn into_store_only(self) -> StoreOnly {
        match self {
            ConfigFile::Complete(config) => StoreOnly {
                path: config.path,
                store: config.store,
                log: config.log,
            },
            ConfigFile::NoCredential(store_only) => store_only,
        }
    }
}

impl Config {
    /// The Okta client's settings: the credential in the client's terms
    /// (the key's origin only as text for its messages) and the limits.
    /// Cannot fail: a `Config` always has its credential.
    pub fn okta_client_config(&self) -> OktaClientConfig {
        let auth = match &self.okta.auth {
            OktaAuth::Ssws { token, .. } => crate::okta::auth::OktaAuth::Ssws(token.clone()),
            OktaAuth::OAuth {
                client_id,
                private_key,
                key_source,
                key_id,
                scopes,
                dpop,
            } => crate::okta::auth::OktaAuth::OAuth(OAuthConfig {
                client_id: client_id.clone(),
                key: private_key.clone(),
                key_source: key_source.to_string(),
                key_id: key_id.clone(),
                scopes: scopes.clone(),
                dpop: *dpop,
            }),
        };
        OktaClientConfig {
            org_url: self.okta.org_url.clone(),
            auth,
            requests_per_minute: self.okta.requests_per_minute,
            rate_limit_share: self.okta.rate_limit_share,
            max_concurrent_requests: self.okta.max_concurrent_requests,
            request_timeout: self.okta.request_timeout,
            retry_budget: self.okta.retry_budget,
            max_response_bytes: self.okta.max_response_bytes,
        }
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

/// Reads and validates the config file at `path` for a command that talks
/// to Okta (a file without a credential is an error).
pub fn load(path: &Path, env: &ConfigEnv) -> Result<Config, ConfigError> {
    load_file(path, env)?.into_config()
}

/// Reads and validates the config file at `path` for a store-only command
/// (no credential needed).
pub fn load_store(path: &Path, env: &ConfigEnv) -> Result<StoreOnly, ConfigError> {
    load_file(path, env).map(ConfigFile::into_store_only)
}

/// Reads and validates the config file at `path` as a whole; the caller
/// decides whether it needs the credential.
pub fn load_file(path: &Path, env: &ConfigEnv) -> Result<ConfigFile, ConfigError> {
    crate::fsperm::check_and_warn(path, crate::fsperm::FileKind::Config)
        .map_err(|message| ConfigError::Permissions { message })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text, path, env)
}

/// Validates config text for a command that talks to Okta; `path` is only
/// used in messages and to resolve nothing else (relative secret paths are
/// taken as given).
pub fn parse(text: &str, path: &Path, env: &ConfigEnv) -> Result<Config, ConfigError> {
    parse_file(text, path, env)?.into_config()
}

/// Validates config text for a store-only command, like [`parse`] but
/// without needing a credential.
pub fn parse_store(text: &str, path: &Path, env: &ConfigEnv) -> Result<StoreOnly, ConfigError> {
    parse_file(text, path, env).map(ConfigFile::into_store_only)
}

fn parse_file(text: &str, path: &Path, env: &ConfigEnv) -> Result<ConfigFile, ConfigError> {
    let raw = raw::parse(text, path)?;
    validate::validate(raw, path, env)
}
