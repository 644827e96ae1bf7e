//! An emptied store is migrated again (#13.7): between two runs of one
//! process (the daemon keeps its pool), every table is dropped; the next
//! run recreates the schema under the sync lock and syncs. A store missing
//! only some tables is refused with a message saying what to do.

use sqlx::AnyPool;

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{RateLimits, SimOptions, Simulator};
use writer_sync::reconcile::report::Status;

use crate::{Limits, common, config_text, context, dump, parse_config, sync};

const TABLES: [&str; 10] = [
    "memberships",
    "audit_log",
    "sync_runs",
    "users",
    "teams",
    "sync_state",
    "sync_lock",
    "event_cursor",
    "missing_since",
    "_sqlx_migrations",
];

async fn drop_tables(kind: common::Kind, url: &str, tables: &[&str]) {
    let pool = AnyPool::connect(url).await.unwrap();
    for table in tables {
        let cascade = if kind == common::Kind::Postgres {
            " CASCADE"
        } else {
            ""
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {table}{cascade}"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

both_kinds!(
    an_emptied_store_is_migrated_again_and_synced,
    |kind| async move {
        let Some(db) = common::TestDb::new(kind, "emptied").await else {
            return;
        };
        let sim = Simulator::start(
            Org::generate(&GenSpec::new(60, 4, 2, 3)),
            SimOptions {
                rate_limits: RateLimits::unlimited(),
                ..SimOptions::default()
            },
        )
        .await
        .unwrap();
        let text = config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, "");
        let ctx = context(
            parse_config(&text, sim.token()),
            sim.token(),
            Limits::default(),
        )
        .await;
        let first = sync(&ctx).await;
        assert_eq!(first.status, Status::Ok, "{:?}", first.error);
        let synced = dump(&ctx.store).await;

        drop_tables(kind, &db.config_url, &TABLES).await;
        let again = sync(&ctx).await;
        assert_eq!(again.status, Status::Ok, "{:?}", again.error);
        assert_eq!(again.counts, first.counts, "a first sync again");
        assert_eq!(dump(&ctx.store).await, synced);
        let runs = ctx.store.recent_runs(5).await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");

        // Dropped without its migration history: the same.
        drop_tables(kind, &db.config_url, &TABLES[..9]).await;
        let third = sync(&ctx).await;
        assert_eq!(third.status, Status::Ok, "{:?}", third.error);
        assert_eq!(dump(&ctx.store).await, synced);

        // Only some tables gone: refused, saying what to do, nothing created.
        drop_tables(kind, &db.config_url, &["audit_log", "memberships"]).await;
        let damaged = sync(&ctx).await;
        assert_eq!(damaged.status, Status::Failed);
        let error = damaged.error.unwrap();
        assert!(
            error.contains("lost tables (memberships, audit_log)")
                && error.contains("restore it from a backup"),
            "{error}"
        );
        ctx.store.close().await;
        sim.shutdown().await;
    }
);
