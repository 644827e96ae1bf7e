//! Reliability suite (SPEC §2 and §3), run by `cargo test`: Okta faults
//! end to end, store faults, hostile Okta input, and the security rules
//! (secrets, file permissions, HTTPS, TLS, SQL). The long crash and fault
//! soaks live in `examples/reliability.rs` (`scripts/crash.sh`,
//! `scripts/soak.sh`); see docs/RELIABILITY.md.

#[path = "../common/mod.rs"]
mod common;

/// Runs an async test body taking a [`common::Kind`] on SQLite and on
/// PostgreSQL (which skips itself when not configured).
macro_rules! both_kinds {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(common::Kind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)(common::Kind::Postgres).await;
            }
        }
    };
}

mod disk_full;
mod durability;
mod emptied_store;
mod faults;
mod fuzz_replay;
mod hostile;
mod kill_lock;
mod logs;
mod okta_behaviour;
mod security;
mod store_faults;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use writer_sync::config::{self, Config, ConfigEnv};
use writer_sync::okta::auth::OktaAuth;
use writer_sync::okta::{OktaClient, OktaClientConfig};
use writer_sync::reconcile::report::Report;
use writer_sync::reconcile::{RunOptions, SyncContext, Trigger, run_once};
use writer_sync::secret::Secret;
use writer_sync::store::Store;

pub const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

/// Okta client limits for in-process runs: short, so failing scenarios end
/// in seconds (the product default budget is 300 s).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub retry_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(10),
        }
    }
}

/// The config text every in-process and binary run here uses; `extra` is
/// appended (more tables).
pub fn config_text(org_url: &str, app_id: &str, store_url: &str, extra: &str) -> String {
    format!(
        "[okta]\norg_url = \"{}\"\napp_id = \"{app_id}\"\nrequest_timeout = \"5s\"\n\n\
         [store]\nurl = \"{store_url}\"\nwrites_per_second = 0\n\n\
         [teams]\ncreate_missing = true\n\n\
         [safety]\nmax_deactivations_percent = 100\n\n[log]\nformat = \"json\"\n{extra}",
        org_url.trim_end_matches('/'),
    )
}

pub fn parse_config(text: &str, token: &str) -> Config {
    let env = ConfigEnv {
        okta_api_token: Some(Secret::new(token)),
        ..ConfigEnv::default()
    };
    config::parse(text, Path::new("reliability.toml"), &env).unwrap()
}

/// Everything an in-process run needs.
pub async fn context(config: Config, token: &str, limits: Limits) -> SyncContext {
    let okta = OktaClient::new(OktaClientConfig {
        org_url: config.okta.org_url.clone(),
        auth: OktaAuth::Ssws(Secret::new(token)),
        requests_per_minute: NonZeroU32::new(100_000).unwrap(),
        rate_limit_share: 100,
        max_concurrent_requests: NonZeroUsize::new(4).unwrap(),
        request_timeout: limits.timeout,
        retry_budget: limits.retry_budget,
        max_response_bytes: config.okta.max_response_bytes,
    })
    .unwrap();
    let store = Store::connect(&config.store.url).await.unwrap();
    SyncContext {
        config: Arc::new(config),
        store,
        okta,
        holder: format!("reliability-test:{}", fastrand::u32(..)),
    }
}

pub async fn sync(ctx: &SyncContext) -> Report {
    run_once(ctx, &RunOptions::new(Trigger::Once)).await
}

pub async fn dump(store: &Store) -> Value {
    serde_json::to_value(store.dump().await.unwrap()).unwrap()
}
