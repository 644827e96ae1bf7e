//! Test support shared by the integration tests: a store per backend.
//!
//! SQLite always runs (a temp file). PostgreSQL runs when
//! `WRITER_SYNC_TEST_DATABASE_URL` is set: each test gets its own schema,
//! dropped at the end. When the variable is unset the PostgreSQL variant
//! prints that it was skipped.
#![allow(dead_code)]

use std::path::PathBuf;

use writer_sync::secret::Secret;
use writer_sync::store::StoreUrl;

pub const PG_ENV: &str = "WRITER_SYNC_TEST_DATABASE_URL";

/// A store location owned by one test; cleaned up on drop.
pub struct TestDb {
    pub url: StoreUrl,
    /// The URL string as written in a config file (`store.url`).
    pub config_url: String,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl TestDb {
    /// A fresh store of `kind`, or `None` (after saying so) when PostgreSQL
    /// is not configured for this test run.
    pub async fn new(kind: Kind, test_name: &str) -> Option<TestDb> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("writer.db");
                Some(TestDb {
                    url: StoreUrl::Sqlite(path.clone()),
                    config_url: format!("sqlite://{}", path.display()),
                    _dir: Some(dir),
                    pg_schema: None,
                })
            }
            Kind::Postgres => {
                let Ok(base) = std::env::var(PG_ENV) else {
                    eprintln!("SKIPPED {test_name} on PostgreSQL: {PG_ENV} is not set");
                    return None;
                };
                let schema = format!(
                    "ws_test_{}_{}",
                    test_name
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .take(30)
                        .collect::<String>(),
                    fastrand::u64(..)
                )
                .to_lowercase();
                run_pg(&base, &format!("CREATE SCHEMA {schema}")).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Some(TestDb {
                    url: StoreUrl::Postgres(Secret::new(url.clone())),
                    config_url: url,
                    _dir: None,
                    pg_schema: Some((base, schema)),
                })
            }
        }
    }
}

async fn run_pg(base: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_schema.take() {
            // Drop runs outside async context: use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(run_pg(
                    &base,
                    &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
                ));
            })
            .join();
        }
    }
}

/// Runs one async test body on SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = common::TestDb::new(common::Kind::Sqlite, stringify!($name))
                    .await
                    .unwrap();
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) =
                    common::TestDb::new(common::Kind::Postgres, stringify!($name)).await
                {
                    ($body)(db).await;
                }
            }
        }
    };
}

/// Fails the test when any of `secrets` appears in `text` (the output of a
/// writer-sync process). Every test that runs the binary routes its output
/// through here (or [`checked_output`]), so a token in a log line, an error
/// message or a report fails the suite.
pub fn assert_no_secrets(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(secret),
            "a secret ({} chars) appeared in {what}:\n{text}",
            secret.len()
        );
    }
}

/// Runs `cmd` to completion and checks its stdout and stderr for `secrets`.
pub fn checked_output(cmd: &mut std::process::Command, secrets: &[&str]) -> std::process::Output {
    let out = cmd.output().expect("run the writer-sync binary");
    assert_no_secrets("stdout", &String::from_utf8_lossy(&out.stdout), secrets);
    assert_no_secrets("stderr", &String::from_utf8_lossy(&out.stderr), secrets);
    out
}

/// Writes a file with `mode` (tests create config and token files the way an
/// operator should: not writable by others).
pub fn write_file_mode(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
