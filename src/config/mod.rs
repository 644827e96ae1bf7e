//! Configuration: TOML file → raw serde structs → validated [`Config`].
//!
//! Invariant: a [`Config`] value is always valid. Every check (unknown keys,
//! types, URLs, cron, rates, secrets) happens in [`load`]; nothing downstream
//! re-validates or fails on configuration. Errors name the file and the key.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::okta::key::PrivateKey;
use crate::okta::oauth::{DEFAULT_SCOPES, DpopMode};
use crate::secret::Secret;
use crate::store::StoreUrl;

/// Where the config file is read from when neither `--config` nor
/// `WRITER_SYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/writer-sync/config.toml";
/// Environment variable holding the SSWS API token.
pub const TOKEN_ENV: &str = "WRITER_SYNC_OKTA_API_TOKEN";
/// Name of the systemd credential holding the SSWS API token.
pub const TOKEN_CREDENTIAL: &str = "okta-api-token";
/// Name of the systemd credential holding the OAuth private key (PEM).
pub const KEY_CREDENTIAL: &str = "okta-private-key";
/// Private key files larger than this are refused (a PEM key is a few KiB).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
const DEFAULT_STATE_DIR: &str = "/var/lib/writer-sync";

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
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: toml_message(&e, text),
    })?;
    check_known_keys(&table, text, path)?;
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: toml_message(&e, text),
    })?;
    validate(raw, path, env)
}

fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

// ---------------------------------------------------------------------------
// Stage 1: raw serde structs, exactly the file's shape.
// ---------------------------------------------------------------------------

/// Every key the file may contain, as dotted paths; tables end with `.*`
/// implicitly by being prefixes of their keys.
const KNOWN_KEYS: &[&str] = &[
    "okta.org_url",
    "okta.app_id",
    "okta.api_token_file",
    "okta.requests_per_minute",
    "okta.rate_limit_share",
    "okta.max_concurrent_requests",
    "okta.request_timeout",
    "okta.oauth.client_id",
    "okta.oauth.private_key_file",
    "okta.oauth.key_id",
    "okta.oauth.scopes",
    "okta.oauth.dpop",
    "store.url",
    "store.writes_per_second",
    "sync.schedule",
    "sync.run_on_start",
    "sync.default_team",
    "sync.role_attribute",
    "sync.role_source",
    "teams.push_groups",
    "teams.create_missing",
    "safety.max_deactivations",
    "safety.max_deactivations_percent",
    "safety.max_membership_removals",
    "log.format",
    "log.level",
    "server.listen",
];

fn check_known_keys(table: &toml::Table, text: &str, path: &Path) -> Result<(), ConfigError> {
    fn walk(
        table: &toml::Table,
        prefix: &str,
        found: &mut Vec<String>,
        text: &str,
        path: &Path,
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let dotted = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let is_leaf = KNOWN_KEYS.contains(&dotted.as_str());
            let is_table = KNOWN_KEYS
                .iter()
                .any(|k| k.starts_with(&format!("{dotted}.")));
            match value {
                toml::Value::Table(inner) if is_table => walk(inner, &dotted, found, text, path)?,
                _ if is_leaf => found.push(dotted),
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: path.to_path_buf(),
                        line: find_key_line(text, key),
                        key: dotted,
                    });
                }
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(table, "", &mut found, text, path)
}

/// Best-effort line number of a key for messages: the first line whose
/// trimmed text starts with the key followed by `=` or is its table header.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let l = line.trim_start();
            let after = l.strip_prefix(key).map(str::trim_start);
            matches!(after, Some(rest) if rest.starts_with('=') || rest.starts_with('.'))
                || l.starts_with(&format!("[{key}]"))
                || l.starts_with(&format!("[{key}."))
                || l.contains(&format!(".{key}]"))
        })
        .map(|i| i + 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    okta: RawOkta,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    teams: RawTeams,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    server: RawServer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOkta {
    org_url: String,
    app_id: Option<String>,
    api_token_file: Option<PathBuf>,
    #[serde(default = "default_rpm")]
    requests_per_minute: i64,
    #[serde(default = "default_share")]
    rate_limit_share: i64,
    #[serde(default = "default_concurrency")]
    max_concurrent_requests: i64,
    #[serde(default = "default_timeout")]
    request_timeout: String,
    oauth: Option<RawOAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    client_id: Option<String>,
    private_key_file: Option<PathBuf>,
    key_id: Option<String>,
    scopes: Option<RawScopes>,
    dpop: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawScopes {
    /// Space-separated, as in OAuth's `scope` parameter.
    Joined(String),
    List(Vec<String>),
}

fn default_rpm() -> i64 {
    300
}
fn default_share() -> i64 {
    i64::from(crate::okta::DEFAULT_RATE_LIMIT_SHARE)
}
fn default_concurrency() -> i64 {
    4
}
fn default_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    #[serde(default = "default_writes_per_second")]
    writes_per_second: i64,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: None,
            writes_per_second: default_writes_per_second(),
        }
    }
}

fn default_writes_per_second() -> i64 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_true")]
    run_on_start: bool,
    default_team: Option<String>,
    #[serde(default = "default_role_attribute")]
    role_attribute: String,
    #[serde(default = "default_role_source")]
    role_source: String,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            schedule: default_schedule(),
            run_on_start: true,
            default_team: None,
            role_attribute: default_role_attribute(),
            role_source: default_role_source(),
        }
    }
}

fn default_schedule() -> String {
    "*/10 * * * *".into()
}
fn default_true() -> bool {
    true
}
fn default_role_attribute() -> String {
    "writerRole".into()
}
fn default_role_source() -> String {
    "app_user".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPushGroups {
    Mode(String),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeams {
    #[serde(default = "default_push_groups")]
    push_groups: RawPushGroups,
    #[serde(default)]
    create_missing: bool,
}

impl Default for RawTeams {
    fn default() -> Self {
        RawTeams {
            push_groups: default_push_groups(),
            create_missing: false,
        }
    }
}

fn default_push_groups() -> RawPushGroups {
    RawPushGroups::Mode("assigned".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    #[serde(default = "default_max_deactivations")]
    max_deactivations: i64,
    #[serde(default = "default_max_deactivations_percent")]
    max_deactivations_percent: f64,
    #[serde(default = "default_max_membership_removals")]
    max_membership_removals: i64,
}

impl Default for RawSafety {
    fn default() -> Self {
        RawSafety {
            max_deactivations: default_max_deactivations(),
            max_deactivations_percent: default_max_deactivations_percent(),
            max_membership_removals: default_max_membership_removals(),
        }
    }
}

fn default_max_deactivations() -> i64 {
    50
}
fn default_max_deactivations_percent() -> f64 {
    10.0
}
fn default_max_membership_removals() -> i64 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_format")]
    format: String,
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "json".into()
}
fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

// ---------------------------------------------------------------------------
// Stage 2: validation.
// ---------------------------------------------------------------------------

fn validate(raw: RawConfig, path: &Path, env: &ConfigEnv) -> Result<Config, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };

    let org_url = validate_org_url(&raw.okta.org_url).map_err(|m| invalid("okta.org_url", m))?;
    let app_id = match raw.okta.app_id {
        Some(id) => Some(validate_okta_id(&id).map_err(|m| invalid("okta.app_id", m))?),
        None => None,
    };
    let requests_per_minute = positive_u32(raw.okta.requests_per_minute)
        .map_err(|m| invalid("okta.requests_per_minute", m))?;
    let rate_limit_share = u8::try_from(raw.okta.rate_limit_share)
        .ok()
        .filter(|share| (1..=100).contains(share))
        .ok_or_else(|| {
            invalid(
                "okta.rate_limit_share",
                format!(
                    "{} must be a percentage between 1 and 100",
                    raw.okta.rate_limit_share
                ),
            )
        })?;
    let max_concurrent_requests = positive_u32(raw.okta.max_concurrent_requests)
        .map_err(|m| invalid("okta.max_concurrent_requests", m))
        .and_then(|n| {
            NonZeroUsize::try_from(n)
                .map_err(|e| invalid("okta.max_concurrent_requests", e.to_string()))
        })?;
    let request_timeout = parse_duration(&raw.okta.request_timeout)
        .map_err(|m| invalid("okta.request_timeout", m))?;
    if request_timeout.is_zero() {
        return Err(invalid(
            "okta.request_timeout",
            "must be greater than 0".into(),
        ));
    }

    let auth = match raw.okta.oauth {
        None => resolve_ssws_token(raw.okta.api_token_file.as_deref(), path, env)?,
        Some(oauth) => {
            if let Some(other) = ssws_configured(raw.okta.api_token_file.as_deref(), env) {
                return Err(invalid(
                    "okta.oauth",
                    format!(
                        "cannot be combined with an SSWS API token ({other}); configure exactly \
                         one Okta credential: remove {other} or the [okta.oauth] table"
                    ),
                ));
            }
            Some(resolve_oauth(oauth, path, env)?)
        }
    };

    let store_url = match raw.store.url {
        Some(u) => StoreUrl::parse(&u).map_err(|m| invalid("store.url", m))?,
        None => StoreUrl::Sqlite(
            env.state_directory
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
                .join("writer.db"),
        ),
    };
    let writes_per_second = match raw.store.writes_per_second {
        0 => None,
        n => Some(positive_u32(n).map_err(|m| invalid("store.writes_per_second", m))?),
    };

    let schedule =
        CronSchedule::parse(&raw.sync.schedule).map_err(|m| invalid("sync.schedule", m))?;
    let default_team = match raw.sync.default_team {
        Some(t) if t.trim().is_empty() => {
            return Err(invalid(
                "sync.default_team",
                "must not be empty (omit the key to disable)".into(),
            ));
        }
        other => other,
    };
    if raw.sync.role_attribute.trim().is_empty() {
        return Err(invalid("sync.role_attribute", "must not be empty".into()));
    }
    let role_source = match raw.sync.role_source.as_str() {
        "app_user" => RoleSource::AppUser,
        "user" => RoleSource::User,
        other => {
            return Err(invalid(
                "sync.role_source",
                format!("{other:?} is not one of \"app_user\", \"user\""),
            ));
        }
    };

    let push_groups = match raw.teams.push_groups {
        RawPushGroups::Mode(m) if m == "assigned" => PushGroups::Assigned,
        RawPushGroups::Mode(m) => {
            return Err(invalid(
                "teams.push_groups",
                format!("{m:?} is neither \"assigned\" nor a list of Okta group names"),
            ));
        }
        RawPushGroups::Names(names) => {
            if let Some(blank) = names.iter().position(|n| n.trim().is_empty()) {
                return Err(invalid(
                    "teams.push_groups",
                    format!("entry {} is empty", blank + 1),
                ));
            }
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != names.len() {
                return Err(invalid(
                    "teams.push_groups",
                    "lists a group name twice".into(),
                ));
            }
            PushGroups::Named(names)
        }
    };
    if app_id.is_none() && push_groups == PushGroups::Assigned {
        return Err(invalid(
            "okta.app_id",
            "is required unless teams.push_groups is a list of group names".into(),
        ));
    }

    let max_deactivations = non_negative_u32(raw.safety.max_deactivations)
        .map_err(|m| invalid("safety.max_deactivations", m))?;
    let pct = raw.safety.max_deactivations_percent;
    if !(0.0..=100.0).contains(&pct) {
        return Err(invalid(
            "safety.max_deactivations_percent",
            format!("{pct} is not between 0 and 100"),
        ));
    }
    let max_membership_removals = non_negative_u32(raw.safety.max_membership_removals)
        .map_err(|m| invalid("safety.max_membership_removals", m))?;

    let format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return Err(invalid(
                "log.format",
                format!("{other:?} is not one of \"json\", \"text\""),
            ));
        }
    };
    tracing_subscriber::EnvFilter::builder()
        .parse(&raw.log.level)
        .map_err(|e| invalid("log.level", format!("{:?}: {e}", raw.log.level)))?;

    let listen = match raw.server.listen {
        Some(addr) => Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
            invalid(
                "server.listen",
                format!("{addr:?} is not an ip:port address: {e}"),
            )
        })?),
        None => None,
    };

    Ok(Config {
        path: path.to_path_buf(),
        okta: OktaConfig {
            org_url,
            app_id,
            auth,
            requests_per_minute,
            rate_limit_share,
            max_concurrent_requests,
            request_timeout,
        },
        store: StoreConfig {
            url: store_url,
            writes_per_second,
        },
        sync: SyncConfig {
            schedule,
            run_on_start: raw.sync.run_on_start,
            default_team,
            role_attribute: raw.sync.role_attribute,
            role_source,
        },
        teams: TeamsConfig {
            push_groups,
            create_missing: raw.teams.create_missing,
        },
        safety: SafetyConfig {
            max_deactivations,
            max_deactivations_percent: pct,
            max_membership_removals,
        },
        log: LogConfig {
            format,
            level: raw.log.level,
        },
        server: ServerConfig { listen },
    })
}

fn positive_u32(n: i64) -> Result<NonZeroU32, String> {
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("{n} must be a whole number between 1 and {}", u32::MAX))
}

fn non_negative_u32(n: i64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{n} must be a whole number between 0 and {}", u32::MAX))
}

/// Okta ids are opaque but always short ASCII alphanumerics; refusing
/// anything else keeps ids out of URL paths they could escape from.
fn validate_okta_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{id:?} is not an Okta id (letters and digits only)"
        ));
    }
    Ok(id.to_owned())
}

/// HTTPS is required; plain HTTP only for loopback hosts (tests, the demo
/// and local simulators). The URL must be the bare org URL.
pub fn validate_org_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let host = url.host().ok_or_else(|| format!("{raw:?} has no host"))?;
    let loopback = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{raw:?} uses plain http; Okta must be reached over https (http is only accepted for loopback hosts)"
            ));
        }
        other => return Err(format!("{raw:?} has scheme {other:?}; use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(format!(
            "{raw:?} must be the bare org URL like https://acme.okta.com (no path or query)"
        ));
    }
    Ok(url)
}

fn resolve_ssws_token(
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
fn ssws_configured(token_file: Option<&Path>, env: &ConfigEnv) -> Option<String> {
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

fn resolve_oauth(raw: RawOAuth, path: &Path, env: &ConfigEnv) -> Result<OktaAuth, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };
    let client_id = match raw.client_id {
        Some(id) => validate_okta_id(&id).map_err(|m| {
            invalid(
                "okta.oauth.client_id",
                m.replace("an Okta id", "an Okta client id"),
            )
        })?,
        None => {
            return Err(invalid(
                "okta.oauth.client_id",
                "is required: the client id of the Okta API Services app".into(),
            ));
        }
    };
    let (file, key_name, source) = match raw.private_key_file {
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
                return Err(invalid(
                    "okta.oauth.private_key_file",
                    format!(
                        "is required (a PEM file with the app's private key), unless the \
                         systemd credential {KEY_CREDENTIAL} provides the key"
                    ),
                ));
            }
        },
    };
    let private_key = read_private_key(&file).map_err(|message| ConfigError::SecretFile {
        path: path.to_path_buf(),
        key: key_name,
        file: file.clone(),
        message,
    })?;
    let key_id = match raw.key_id {
        None => None,
        Some(kid) => {
            let kid = kid.trim();
            if kid.is_empty() || kid.len() > 256 || !kid.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "okta.oauth.key_id",
                    format!(
                        "{kid:?} is not a key id (1 to 256 printable ASCII characters, no spaces)"
                    ),
                ));
            }
            Some(kid.to_owned())
        }
    };
    let scopes = match raw.scopes {
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        Some(raw) => validate_scopes(raw).map_err(|m| invalid("okta.oauth.scopes", m))?,
    };
    let dpop = match raw.dpop.as_deref() {
        None | Some("auto") => DpopMode::Auto,
        Some("always") => DpopMode::Always,
        Some("never") => DpopMode::Never,
        Some(other) => {
            return Err(invalid(
                "okta.oauth.dpop",
                format!("{other:?} is not one of \"auto\", \"always\", \"never\""),
            ));
        }
    };
    Ok(OktaAuth::OAuth {
        client_id,
        private_key,
        key_source: source,
        key_id,
        scopes,
        dpop,
    })
}

/// Scopes as a space-separated string or a list; each an RFC 6749
/// scope-token, none twice, at least one.
fn validate_scopes(raw: RawScopes) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = match raw {
        RawScopes::Joined(text) => text.split_whitespace().map(str::to_owned).collect(),
        RawScopes::List(list) => {
            for (i, scope) in list.iter().enumerate() {
                if scope.trim().contains(char::is_whitespace) {
                    return Err(format!(
                        "entry {} ({scope:?}) contains a space; list each scope separately",
                        i + 1
                    ));
                }
            }
            list.into_iter().map(|s| s.trim().to_owned()).collect()
        }
    };
    if scopes.is_empty() {
        return Err("must name at least one scope, e.g. \"okta.users.read\"".into());
    }
    for (i, scope) in scopes.iter().enumerate() {
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(format!("{scope:?} is not a valid OAuth scope"));
        }
        if scopes[..i].contains(scope) {
            return Err(format!("lists {scope:?} twice"));
        }
    }
    Ok(scopes)
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

/// Parses durations like `30s`, `500ms`, `5m`, `1h`, `1m30s`, or a bare
/// number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration (use e.g. \"30s\")".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{raw:?} is not a duration like \"30s\", \"5m\" or \"1h\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{raw:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "{raw:?} has unknown unit {unit:?} (use ms, s, m or h)"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A cron schedule in UTC: 5 fields (minute hour day month weekday) or 6
/// (with seconds first). Weekdays follow classic cron: 0 or 7 = Sunday,
/// 1 = Monday … 6 = Saturday, or names (`MON-FRI`).
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    schedule: cron::Schedule,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.expr)
    }
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "{expr:?} has {n} fields; use 5 (minute hour day month weekday) or 6 (second first)"
                ));
            }
        };
        let weekday = translate_weekdays(rest[4]).map_err(|m| format!("{expr:?}: {m}"))?;
        let full = format!(
            "{seconds} {} {} {} {} {weekday}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))?;
        let epoch_2020 = DateTime::<Utc>::from_timestamp(1_577_836_800, 0).unwrap_or_default();
        if schedule.after(&epoch_2020).next().is_none() {
            return Err(format!("{expr:?} never fires"));
        }
        Ok(CronSchedule {
            expr: expr.to_owned(),
            schedule,
        })
    }

    /// The expression as written in the config.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&now).next()
    }
}

/// Maps classic cron weekday numbers (0-7, Sunday = 0 or 7) to the `cron`
/// crate's (1-7, Sunday = 1). Names and `*`/`?` pass through.
fn translate_weekdays(field: &str) -> Result<String, String> {
    if field.chars().any(|c| c.is_ascii_alphabetic()) || field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let map = |n: &str| -> Result<u32, String> {
        let v: u32 = n
            .parse()
            .map_err(|_| format!("weekday {n:?} is not a number 0-7"))?;
        match v {
            0..=6 => Ok(v + 1),
            7 => Ok(1),
            _ => Err(format!("weekday {v} is out of range 0-7")),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let translated = if range == "*" {
            "*".to_owned()
        } else if let Some((a, b)) = range.split_once('-') {
            let start = map(a)?;
            let end_raw: u32 = b
                .parse()
                .map_err(|_| format!("weekday {b:?} is not a number 0-7"))?;
            if end_raw == 7 {
                // `5-7` = Fri..Sun: the crate has no wrap-around, so split.
                let head = if start == 1 {
                    None
                } else {
                    Some(format!("{start}-7"))
                };
                match (head, step) {
                    (Some(h), None) => {
                        out.push(h);
                        out.push("1".into());
                        continue;
                    }
                    (None, None) => "1-7".to_owned(),
                    (_, Some(_)) => {
                        return Err(format!(
                            "weekday range {range:?} with a step must end before 7"
                        ));
                    }
                }
            } else {
                format!("{start}-{}", map(b)?)
            }
        } else {
            map(range)?.to_string()
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ConfigEnv {
        ConfigEnv {
            okta_api_token: Some(Secret::new("tok-SECRET-123")),
            ..ConfigEnv::default()
        }
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, Path::new("/etc/ws.toml"), &env()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/etc/ws.toml"), &env())
            .unwrap_err()
            .to_string()
    }

    const MINIMAL: &str = "[okta]\norg_url = \"https://acme.okta.com\"\napp_id = \"0oa1\"\n";

    #[test]
    fn minimal_config_gets_every_default() {
        let c = parse_ok(MINIMAL);
        assert_eq!(c.okta.org_url.as_str(), "https://acme.okta.com/");
        assert_eq!(c.okta.requests_per_minute.get(), 300);
        assert_eq!(c.okta.rate_limit_share, 50);
        assert_eq!(c.okta.max_concurrent_requests.get(), 4);
        assert_eq!(c.okta.request_timeout, Duration::from_secs(30));
        assert_eq!(
            c.store.url,
            StoreUrl::Sqlite(PathBuf::from("/var/lib/writer-sync/writer.db"))
        );
        assert_eq!(c.store.writes_per_second.map(NonZeroU32::get), Some(500));
        assert_eq!(c.sync.schedule.expr(), "*/10 * * * *");
        assert!(c.sync.run_on_start);
        assert_eq!(c.sync.default_team, None);
        assert_eq!(c.sync.role_attribute, "writerRole");
        assert_eq!(c.sync.role_source, RoleSource::AppUser);
        assert_eq!(c.teams.push_groups, PushGroups::Assigned);
        assert!(!c.teams.create_missing);
        assert_eq!(c.safety.max_deactivations, 50);
        assert!((c.safety.max_deactivations_percent - 10.0).abs() < f64::EPSILON);
        assert_eq!(c.safety.max_membership_removals, 500);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.server.listen, None);
    }

    #[test]
    fn store_defaults_to_the_systemd_state_directory() {
        let env = ConfigEnv {
            state_directory: Some(PathBuf::from("/var/lib/private/writer-sync")),
            ..env()
        };
        let c = parse(MINIMAL, Path::new("x.toml"), &env).unwrap();
        assert_eq!(
            c.store.url,
            StoreUrl::Sqlite(PathBuf::from("/var/lib/private/writer-sync/writer.db"))
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_key_file_and_line() {
        let err = parse_err(&format!("{MINIMAL}[sync]\nschedul = \"* * * * *\"\n"));
        assert!(err.contains("`sync.schedul`"), "{err}");
        assert!(err.contains("/etc/ws.toml"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        let err = parse_err(&format!("{MINIMAL}[sink]\nx = 1\n"));
        assert!(err.contains("`sink`"), "{err}");
        let err = parse_err(&format!("{MINIMAL}colour = 1\n"));
        assert!(err.contains("`okta.colour`"), "{err}");
        let err = parse_err(&format!("{MINIMAL}[okta.oauth]\nclient_secret = \"x\"\n"));
        assert!(err.contains("`okta.oauth.client_secret`"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn every_invalid_value_names_its_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[okta]\norg_url = \"http://acme.okta.com\"\napp_id=\"0oa1\"",
                "okta.org_url",
            ),
            (
                "[okta]\norg_url = \"https://acme.okta.com/api\"\napp_id=\"0oa1\"",
                "okta.org_url",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"../x\"",
                "okta.app_id",
            ),
            ("[okta]\norg_url = \"https://a.okta.com\"", "okta.app_id"),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequests_per_minute = 0",
                "okta.requests_per_minute",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrate_limit_share = 0",
                "okta.rate_limit_share",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrate_limit_share = 101",
                "okta.rate_limit_share",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nmax_concurrent_requests = -1",
                "okta.max_concurrent_requests",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequest_timeout = \"30 parsecs\"",
                "okta.request_timeout",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\nrequest_timeout = \"0s\"",
                "okta.request_timeout",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[store]\nurl = \"mysql://x\"",
                "store.url",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[store]\nwrites_per_second = -5",
                "store.writes_per_second",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nschedule = \"* * *\"",
                "sync.schedule",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nschedule = \"61 * * * *\"",
                "sync.schedule",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\ndefault_team = \" \"",
                "sync.default_team",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nrole_source = \"group\"",
                "sync.role_source",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[sync]\nrole_attribute = \"\"",
                "sync.role_attribute",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[teams]\npush_groups = \"all\"",
                "teams.push_groups",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[teams]\npush_groups = [\"A\", \"A\"]",
                "teams.push_groups",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_deactivations_percent = 101",
                "safety.max_deactivations_percent",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_deactivations = -1",
                "safety.max_deactivations",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[safety]\nmax_membership_removals = -1",
                "safety.max_membership_removals",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[log]\nformat = \"xml\"",
                "log.format",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[log]\nlevel = \"info,[\"",
                "log.level",
            ),
            (
                "[okta]\norg_url = \"https://a.okta.com\"\napp_id=\"0oa1\"\n[server]\nlisten = \"localhost\"",
                "server.listen",
            ),
        ];
        for (text, key) in cases {
            let err = parse_err(text);
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
            assert!(err.contains("/etc/ws.toml"), "{key}: {err}");
        }
    }

    #[test]
    fn wrong_types_name_the_line() {
        let err = parse_err(&format!("{MINIMAL}requests_per_minute = \"many\"\n"));
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("/etc/ws.toml"), "{err}");
    }

    #[test]
    fn missing_org_url_is_an_error() {
        let err = parse_err("[okta]\napp_id = \"0oa1\"\n");
        assert!(err.contains("org_url"), "{err}");
    }

    #[test]
    fn push_groups_list_makes_app_id_optional() {
        let c = parse_ok(
            "[okta]\norg_url = \"https://a.okta.com\"\n[teams]\npush_groups = [\"Eng\", \"Sales\"]\n",
        );
        assert_eq!(c.okta.app_id, None);
        assert_eq!(
            c.teams.push_groups,
            PushGroups::Named(vec!["Eng".into(), "Sales".into()])
        );
    }

    #[test]
    fn http_is_accepted_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            validate_org_url(ok).unwrap();
        }
        for bad in [
            "http://10.0.0.1",
            "http://acme.okta.com",
            "ftp://x",
            "https://u:p@a.okta.com",
        ] {
            assert!(validate_org_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_precedence_env_then_file_then_credential() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "from-cred").unwrap();
        let text = format!(
            "{MINIMAL}api_token_file = {:?}\n",
            file.display().to_string()
        );
        let with_env = parse(&text, Path::new("c"), &env()).unwrap();
        assert!(matches!(
            with_env.okta.auth,
            Some(OktaAuth::Ssws {
                source: TokenSource::Env,
                ..
            })
        ));
        let no_env = ConfigEnv {
            credentials_directory: Some(dir.path().to_path_buf()),
            ..ConfigEnv::default()
        };
        let c = parse(&text, Path::new("c"), &no_env).unwrap();
        match c.okta.auth {
            Some(OktaAuth::Ssws {
                token,
                source: TokenSource::File(_),
            }) => {
                assert_eq!(token.expose(), "from-file");
            }
            other => panic!("{other:?}"),
        }
        let c = parse(MINIMAL, Path::new("c"), &no_env).unwrap();
        match c.okta.auth {
            Some(OktaAuth::Ssws {
                token,
                source: TokenSource::Credential(_),
            }) => {
                assert_eq!(token.expose(), "from-cred");
            }
            other => panic!("{other:?}"),
        }
        let none = parse(MINIMAL, Path::new("c"), &ConfigEnv::default()).unwrap();
        assert!(none.okta.auth.is_none());
        let err = none.okta_auth().unwrap_err().to_string();
        assert!(
            err.contains(TOKEN_ENV) && err.contains("api_token_file"),
            "{err}"
        );
    }

    #[test]
    fn empty_token_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty");
        std::fs::write(&file, "\n").unwrap();
        let text = format!(
            "{MINIMAL}api_token_file = {:?}\n",
            file.display().to_string()
        );
        let err = parse(&text, Path::new("c"), &ConfigEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("okta.api_token_file") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let text = format!("{MINIMAL}[store]\nurl = \"postgres://app:pg-PASSWORD@db/writer\"\n");
        let c = parse_ok(&text);
        let debug = format!("{c:?}");
        assert!(!debug.contains("tok-SECRET-123"), "{debug}");
        assert!(!debug.contains("pg-PASSWORD"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert_eq!(
            c.store.url.redacted(),
            "postgres://app:[redacted]@db/writer"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn cron_accepts_five_and_six_fields_in_utc() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let five = CronSchedule::parse("*/10 * * * *").unwrap();
        assert_eq!(
            five.next_after(t("2026-01-01T00:03:00Z")),
            Some(t("2026-01-01T00:10:00Z"))
        );
        let six = CronSchedule::parse("*/15 * * * * *").unwrap();
        assert_eq!(
            six.next_after(t("2026-01-01T00:00:01Z")),
            Some(t("2026-01-01T00:00:15Z"))
        );
    }

    #[test]
    fn cron_weekdays_follow_classic_cron_numbering() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 2026-01-03 is a Saturday; "1-5" = Monday..Friday => Monday 2026-01-05.
        let weekdays = CronSchedule::parse("0 9 * * 1-5").unwrap();
        assert_eq!(
            weekdays.next_after(t("2026-01-03T00:00:00Z")),
            Some(t("2026-01-05T09:00:00Z"))
        );
        // 0 and 7 are both Sunday => 2026-01-04.
        for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
            let s = CronSchedule::parse(expr).unwrap();
            assert_eq!(
                s.next_after(t("2026-01-03T00:00:00Z")),
                Some(t("2026-01-04T09:00:00Z")),
                "{expr}"
            );
        }
        // 5-7 = Friday..Sunday.
        let weekend = CronSchedule::parse("0 9 * * 5-7").unwrap();
        assert_eq!(
            weekend.next_after(t("2026-01-05T00:00:00Z")),
            Some(t("2026-01-09T09:00:00Z"))
        );
        assert_eq!(translate_weekdays("5-7").unwrap(), "6-7,1");
        assert!(CronSchedule::parse("0 9 * * 8").is_err());
    }

    /// The example with its `[okta.oauth]` block uncommented, the SSWS
    /// token file removed and the key path pointing to `key_file`.
    fn oauth_example(text: &str, key_file: &Path) -> String {
        let mut out = Vec::new();
        let mut in_block = false;
        for line in text.lines() {
            if line == "# [okta.oauth]" {
                in_block = true;
            } else if line.trim().is_empty() {
                in_block = false;
            }
            if line.starts_with("api_token_file") {
                continue;
            }
            if in_block {
                let line = line.strip_prefix("# ").unwrap();
                if line.starts_with("private_key_file") {
                    out.push(format!(
                        "private_key_file = {:?}",
                        key_file.display().to_string()
                    ));
                    continue;
                }
                out.push(line.to_owned());
            } else {
                out.push(line.to_owned());
            }
        }
        out.join("\n")
    }

    #[test]
    fn example_config_parses_with_every_key() {
        let text = include_str!("../../config.example.toml");
        let c = parse_ok(text);
        assert_eq!(c.okta.app_id.as_deref(), Some("0oa1writerapp"));
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.pem");
        std::fs::write(&key_file, RSA_KEY).unwrap();
        let oauth_text = oauth_example(text, &key_file);
        let oauth = parse(&oauth_text, Path::new("c"), &ConfigEnv::default()).unwrap();
        match oauth.okta.auth {
            Some(OktaAuth::OAuth {
                client_id,
                key_id,
                scopes,
                dpop,
                ..
            }) => {
                assert_eq!(client_id, "0oa1serviceapp");
                assert_eq!(key_id.as_deref(), Some("writer-sync-1"));
                assert_eq!(scopes, DEFAULT_SCOPES);
                assert_eq!(dpop, DpopMode::Auto);
            }
            other => panic!("{other:?}"),
        }
        // The example documents every known key: uncommented, or in the
        // commented-out [okta.oauth] block.
        let tables: Vec<toml::Table> = [text, oauth_text.as_str()]
            .iter()
            .map(|t| toml::from_str(t).unwrap())
            .collect();
        for key in KNOWN_KEYS {
            let found = tables.iter().any(|table| {
                let mut node = table;
                let parts: Vec<&str> = key.split('.').collect();
                for (i, part) in parts.iter().enumerate() {
                    let Some(value) = node.get(*part) else {
                        return false;
                    };
                    if i + 1 < parts.len() {
                        node = value.as_table().unwrap();
                    }
                }
                true
            });
            assert!(found, "example lacks {key}");
        }
    }

    const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa-2048.pkcs8.pem");
    const EC_KEY: &str = include_str!("../../tests/fixtures/keys/ec-p256.sec1.pem");

    /// A config with `[okta.oauth]`; `extra` lines go into that table.
    fn oauth_config(key_file: &Path, extra: &str) -> String {
        format!(
            "{MINIMAL}[okta.oauth]\nclient_id = \"0oa1svc\"\nprivate_key_file = {:?}\n{extra}",
            key_file.display().to_string()
        )
    }

    fn key_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, RSA_KEY).unwrap();
        (dir, file)
    }

    #[test]
    fn oauth_defaults_and_forms() {
        let (dir, file) = key_dir();
        let c = parse(
            &oauth_config(&file, ""),
            Path::new("c"),
            &ConfigEnv::default(),
        )
        .unwrap();
        let Some(OktaAuth::OAuth {
            client_id,
            private_key,
            key_source,
            key_id,
            scopes,
            dpop,
        }) = c.okta.auth.clone()
        else {
            panic!("{:?}", c.okta.auth)
        };
        assert_eq!(client_id, "0oa1svc");
        assert_eq!(private_key.describe(), "RSA 2048-bit (RS256)");
        assert_eq!(key_source, KeySource::File(file.clone()));
        assert_eq!(key_id, None);
        assert_eq!(scopes, DEFAULT_SCOPES);
        assert_eq!(dpop, DpopMode::Auto);

        let joined = oauth_config(
            &file,
            "scopes = \" okta.users.read  okta.groups.manage \"\ndpop = \"always\"\nkey_id = \"k1\"\n",
        );
        let c = parse(&joined, Path::new("c"), &ConfigEnv::default()).unwrap();
        let Some(OktaAuth::OAuth {
            scopes,
            dpop,
            key_id,
            ..
        }) = c.okta.auth
        else {
            panic!()
        };
        assert_eq!(scopes, ["okta.users.read", "okta.groups.manage"]);
        assert_eq!(dpop, DpopMode::Always);
        assert_eq!(key_id.as_deref(), Some("k1"));
        let list = oauth_config(&file, "scopes = [\"okta.apps.read\"]\ndpop = \"never\"\n");
        let c = parse(&list, Path::new("c"), &ConfigEnv::default()).unwrap();
        assert!(matches!(
            c.okta.auth,
            Some(OktaAuth::OAuth { ref scopes, dpop: DpopMode::Never, .. }) if scopes == &["okta.apps.read"]
        ));

        // The key from the systemd credential, EC in SEC1 form.
        std::fs::write(dir.path().join(KEY_CREDENTIAL), EC_KEY).unwrap();
        let env = ConfigEnv {
            credentials_directory: Some(dir.path().to_path_buf()),
            ..ConfigEnv::default()
        };
        let text = format!("{MINIMAL}[okta.oauth]\nclient_id = \"0oa1svc\"\n");
        let c = parse(&text, Path::new("c"), &env).unwrap();
        let Some(OktaAuth::OAuth {
            private_key,
            key_source,
            ..
        }) = c.okta.auth
        else {
            panic!()
        };
        assert_eq!(private_key.describe(), "EC P-256 (ES256)");
        assert_eq!(
            key_source,
            KeySource::Credential(dir.path().join(KEY_CREDENTIAL))
        );
        assert!(key_source.to_string().contains("systemd credential"));
    }

    #[test]
    fn exactly_one_credential() {
        let (dir, file) = key_dir();
        // SSWS token file + [okta.oauth].
        let text = format!(
            "{MINIMAL}api_token_file = \"/x\"\n[okta.oauth]\nclient_id = \"0oa1svc\"\nprivate_key_file = {:?}\n",
            file.display().to_string()
        );
        let err = parse(&text, Path::new("/etc/ws.toml"), &ConfigEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`okta.oauth`") && err.contains("`okta.api_token_file`"),
            "{err}"
        );
        // The environment token + [okta.oauth].
        let err = parse_err(&oauth_config(&file, ""));
        assert!(
            err.contains("`okta.oauth`") && err.contains(TOKEN_ENV),
            "{err}"
        );
        // The okta-api-token credential + [okta.oauth].
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "tok").unwrap();
        let env = ConfigEnv {
            credentials_directory: Some(dir.path().to_path_buf()),
            ..ConfigEnv::default()
        };
        let err = parse(&oauth_config(&file, ""), Path::new("c"), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(TOKEN_CREDENTIAL), "{err}");
        // Neither: loads (store commands need no credential), and commands
        // that need Okta get an error naming both ways.
        let none = parse(MINIMAL, Path::new("c"), &ConfigEnv::default()).unwrap();
        let err = none.okta_auth().unwrap_err().to_string();
        assert!(
            err.contains("okta.api_token_file") && err.contains("[okta.oauth]"),
            "{err}"
        );
    }

    #[test]
    fn oauth_mistakes_name_their_key() {
        let (dir, file) = key_dir();
        let env = ConfigEnv::default();
        let err = |text: &str| {
            parse(text, Path::new("/etc/ws.toml"), &env)
                .unwrap_err()
                .to_string()
        };
        let no_id = format!(
            "{MINIMAL}[okta.oauth]\nprivate_key_file = {:?}\n",
            file.display().to_string()
        );
        assert!(
            err(&no_id).contains("`okta.oauth.client_id`"),
            "{}",
            err(&no_id)
        );
        let no_key = format!("{MINIMAL}[okta.oauth]\nclient_id = \"0oa1\"\n");
        let message = err(&no_key);
        assert!(
            message.contains("`okta.oauth.private_key_file`") && message.contains(KEY_CREDENTIAL),
            "{message}"
        );
        for (extra, key) in [
            ("dpop = \"sometimes\"\n", "okta.oauth.dpop"),
            ("scopes = \"\"\n", "okta.oauth.scopes"),
            (
                "scopes = [\"okta.users.read okta.apps.read\"]\n",
                "okta.oauth.scopes",
            ),
            ("scopes = [\"a\", \"a\"]\n", "okta.oauth.scopes"),
            ("scopes = \"bad\\\\scope\"\n", "okta.oauth.scopes"),
            ("key_id = \"has space\"\n", "okta.oauth.key_id"),
        ] {
            let message = err(&oauth_config(&file, extra));
            assert!(message.contains(&format!("`{key}`")), "{extra}: {message}");
        }
        let bad_id = oauth_config(&file, "").replace("0oa1svc", "../x");
        assert!(err(&bad_id).contains("`okta.oauth.client_id`"));

        // A key file that is not a usable key: the message names the key,
        // the file and what to do, and never quotes the file.
        let public = dir.path().join("public.pem");
        std::fs::write(
            &public,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let message = err(&oauth_config(&public, ""));
        assert!(
            message.contains("okta.oauth.private_key_file")
                && message.contains("public.pem")
                && message.contains("a public key"),
            "{message}"
        );
        assert!(!message.contains("MCowBQYDK2VwAyEA"), "{message}");
        let missing = dir.path().join("nope.pem");
        let message = err(&oauth_config(&missing, ""));
        assert!(message.contains("nope.pem"), "{message}");
    }

    #[test]
    fn the_private_key_never_appears_in_debug_output() {
        let (_dir, file) = key_dir();
        let c = parse(
            &oauth_config(&file, ""),
            Path::new("c"),
            &ConfigEnv::default(),
        )
        .unwrap();
        let debug = format!("{c:?}");
        for line in RSA_KEY.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "{debug}");
        }
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(debug.contains("0oa1svc"), "{debug}");
    }
}
