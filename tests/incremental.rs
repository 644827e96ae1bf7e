//! The incremental sync from the System Log (SPEC §7), in process against
//! the simulator and a real store: polling semantics, each kind of change
//! arriving through events, the fallbacks to a full reconcile by name, and a
//! differential test (random Okta changes, random poll timing, duplicate and
//! late events: the store after incremental runs equals what a full
//! reconcile produces).
//!
//! The oracle of "equals what a full reconcile produces": after the
//! incremental runs, a full plan over the same store (a dry run) plans
//! nothing, and the store's dump equals that of a second store that only
//! ever ran full reconciles.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::syslog::LogTarget;
use okta_sim::{RateLimits, SimHandle, SimOptions, Simulator};
use serde_json::{Map, Value, json};

use writer_sync::config::{self, ConfigEnv};
use writer_sync::okta::OktaClient;
use writer_sync::reconcile::events::FallbackReason;
use writer_sync::reconcile::incremental::{EventsRun, Outcome, run_events};
use writer_sync::reconcile::report::{Report, Status};
use writer_sync::reconcile::{RunOptions, SyncContext, Trigger, run_once};
use writer_sync::secret::Secret;
use writer_sync::store::{EventCursor, Store};

const APP: &str = "0oa1events0app000001";

/// Runs an async test body on SQLite and, when configured, PostgreSQL.
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

fn map(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn profile(n: usize) -> Map<String, Value> {
    map(json!({
        "login": format!("u{n}@x.example"),
        "email": format!("u{n}@x.example"),
        "firstName": format!("First{n}"),
        "lastName": "Last",
    }))
}

/// Ten active users: even ones assigned directly (role admin for 0),
/// odd ones through the groups they are in. Eng (u0–u4) and Sales (u5–u9)
/// are assigned to the app (so pushed); Other is not.
fn org() -> (Org, Vec<String>, BTreeMap<&'static str, String>) {
    let mut org = Org::new(SimApp {
        id: APP.into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let users: Vec<String> = (0..10)
        .map(|n| org.add_user(UserStatus::Active, profile(n)))
        .collect();
    let mut groups = BTreeMap::new();
    for name in ["Eng", "Sales", "Other"] {
        groups.insert(name, org.add_group(name, None));
    }
    for (n, id) in users.iter().enumerate() {
        let group = if n < 5 {
            &groups["Eng"]
        } else {
            &groups["Sales"]
        };
        org.add_member(group, id).unwrap();
        if n % 2 == 0 {
            let role = if n == 0 { "admin" } else { "member" };
            org.assign_user(id, map(json!({"writerRole": role})))
                .unwrap();
        }
    }
    org.add_member(&groups["Other"], &users[0]).unwrap();
    org.assign_group(&groups["Eng"], 0, map(json!({"writerRole": "member"})))
        .unwrap();
    org.assign_group(&groups["Sales"], 1, map(json!({"writerRole": "member"})))
        .unwrap();
    (org, users, groups)
}

struct World {
    sim: SimHandle,
    users: Vec<String>,
    groups: BTreeMap<&'static str, String>,
    ctx: SyncContext,
    _db: common::TestDb,
}

impl World {
    async fn new(kind: common::Kind, name: &str, extra: &str) -> Option<World> {
        let (org, users, groups) = org();
        let sim = Simulator::start(
            org,
            SimOptions {
                rate_limits: RateLimits::unlimited(),
                ..SimOptions::default()
            },
        )
        .await
        .unwrap();
        let db = common::TestDb::new(kind, name).await?;
        let ctx = context(&sim, &db.config_url, extra).await;
        Some(World {
            sim,
            users,
            groups,
            ctx,
            _db: db,
        })
    }

    async fn full(&self) -> Report {
        run_once(&self.ctx, &RunOptions::new(Trigger::Once)).await
    }

    async fn poll(&self) -> EventsRun {
        run_events(&self.ctx, &RunOptions::new(Trigger::Events)).await
    }

    /// Polls until the log has nothing new, running a full reconcile when
    /// a poll asks for one (as the daemon does). Returns the outcomes.
    async fn settle(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let run = self.poll().await;
            seen.push(describe(&run.outcome));
            match run.outcome {
                Outcome::Idle => return seen,
                Outcome::Fallback { .. } => {
                    let report = self.full().await;
                    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
                }
                Outcome::Ran(report) => {
                    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("the log never settled: {seen:?}");
    }

    /// What a full reconcile would still change in the store: nothing, when
    /// the incremental runs left it where a full run would.
    async fn full_plan(&self) -> Vec<String> {
        let mut opts = RunOptions::new(Trigger::Once);
        opts.dry_run = true;
        let report = run_once(&self.ctx, &opts).await;
        assert_eq!(report.status, Status::DryRun, "{:?}", report.error);
        report.changes.iter().map(|c| format!("{c:?}")).collect()
    }

    async fn dump(&self) -> Value {
        serde_json::to_value(self.ctx.store.dump().await.unwrap()).unwrap()
    }

    fn user(&self, n: usize) -> &str {
        &self.users[n]
    }

    fn requests(&self) -> u64 {
        self.sim.stats().requests
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Idle => "idle".into(),
        Outcome::Ran(r) => format!("ran {} ({} changes)", r.status.as_str(), r.changes.len()),
        Outcome::Fallback { reason, detail } => format!("fallback {reason}: {detail}"),
        Outcome::Unavailable(why) => format!("unavailable: {why}"),
        Outcome::LockHeld => "lock held".into(),
        Outcome::StoreFailed(why) => format!("store failed: {why}"),
    }
}

/// The test config; `extra` holds `table.key = value` lines that add to
/// (or replace keys of) its tables.
async fn context(sim: &SimHandle, store_url: &str, extra: &str) -> SyncContext {
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut set = |line: &str| {
        if let Some((key, value)) = line.split_once('=') {
            let (table, key) = key.trim().split_once('.').unwrap();
            tables
                .entry(table.to_owned())
                .or_default()
                .insert(key.to_owned(), value.trim().to_owned());
        }
    };
    let org_url = sim.url().as_str().trim_end_matches('/').to_owned();
    for line in [
        format!("okta.org_url = \"{org_url}\""),
        format!("okta.app_id = \"{APP}\""),
        "okta.request_timeout = \"5s\"".to_owned(),
        // The simulator has no limits here; the client's own budget would
        // pace every test at five requests a second.
        "okta.requests_per_minute = 100000".to_owned(),
        format!("store.url = \"{store_url}\""),
        "store.writes_per_second = 0".to_owned(),
        "teams.create_missing = true".to_owned(),
        "safety.max_deactivations_percent = 100".to_owned(),
        "events.poll_interval = \"1s\"".to_owned(),
    ] {
        set(&line);
    }
    for line in extra.lines() {
        set(line);
    }
    let mut text = String::new();
    for (table, keys) in &tables {
        text.push_str(&format!("[{table}]\n"));
        for (key, value) in keys {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    let env = ConfigEnv {
        okta_api_token: Some(Secret::new(sim.token())),
        ..ConfigEnv::default()
    };
    let config = config::parse(&text, Path::new("incremental.toml"), &env).unwrap();
    let mut okta = config.okta_client_config();
    okta.retry_budget = Duration::from_secs(2);
    let okta = OktaClient::new(okta).unwrap();
    let store = Store::connect(&config.store.url).await.unwrap();
    SyncContext {
        config: Arc::new(config),
        store,
        okta,
        holder: format!("incremental-test:{}", fastrand::u32(..)),
    }
}

fn fallback_reason(run: &EventsRun) -> Option<FallbackReason> {
    match run.outcome {
        Outcome::Fallback { reason, .. } => Some(reason),
        _ => None,
    }
}

fn ran(run: EventsRun) -> Report {
    match run.outcome {
        Outcome::Ran(report) => *report,
        other => panic!("expected a run, got {}", describe(&other)),
    }
}

// ---------------------------------------------------------------------------
// Polling and one change at a time.
// ---------------------------------------------------------------------------

both_kinds!(
    an_idle_poll_is_one_request_and_no_event_is_read_twice,
    |kind| async move {
        let Some(w) = World::new(kind, "idle", "").await else {
            return;
        };
        // Before any full reconcile there is no cursor.
        assert_eq!(
            fallback_reason(&w.poll().await),
            Some(FallbackReason::NoCursor)
        );
        assert_eq!(w.full().await.status, Status::Ok);
        let before = w.requests();
        assert!(matches!(w.poll().await.outcome, Outcome::Idle));
        assert_eq!(w.requests() - before, 1, "an idle poll is one request");
        w.sim
            .org_mut(|o| o.set_user_attr(&w.users[1], "lastName", json!("Changed")))
            .unwrap();
        let report = ran(w.poll().await);
        assert_eq!(report.status, Status::Ok);
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        // The same events are never applied again; the next poll is idle.
        let before = w.requests();
        assert!(matches!(w.poll().await.outcome, Outcome::Idle));
        assert_eq!(w.requests() - before, 1);
        assert!(w.full_plan().await.is_empty());
    }
);

both_kinds!(
    a_suspension_is_in_the_store_after_one_poll_within_four_requests,
    |kind| async move {
        let Some(w) = World::new(kind, "suspend", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        w.sim
            .org_mut(|o| o.set_user_status(w.user(2), UserStatus::Suspended))
            .unwrap();
        let before = w.requests();
        let run = w.poll().await;
        let requests = w.requests() - before;
        assert_eq!(run.events_by_type.get("user.lifecycle.suspend"), Some(&1));
        let report = ran(run);
        assert_eq!(report.status, Status::Ok, "{:?}", report.error);
        let kinds: Vec<&str> = report.changes.iter().map(|c| c.kind()).collect();
        assert_eq!(kinds, ["membership_removed", "user_deactivated"]);
        assert!(requests <= 4, "{requests} requests for one user's change");
        let run_id = report.run_id.expect("a recorded run");
        let runs = w.ctx.store.recent_runs(1).await.unwrap();
        assert_eq!((runs[0].id, runs[0].trigger.as_str()), (run_id, "events"));
        let audit = w.ctx.store.audit_of_run(run_id).await.unwrap();
        assert_eq!(audit.len(), 2);
        assert!(w.full_plan().await.is_empty());
    }
);

both_kinds!(
    deactivations_trickled_in_by_polls_count_against_the_guard_until_a_full_reconcile,
    |kind| async move {
        // SPEC §2 over §7: a mass deactivation that arrives one user per
        // poll blocks like one that arrives in a single plan.
        let Some(w) = World::new(kind, "trickle", "safety.max_deactivations = 2").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let suspend = |n: usize| {
            w.sim
                .org_mut(|o| o.set_user_status(w.user(n), UserStatus::Suspended))
                .unwrap()
        };
        for n in [1, 2] {
            suspend(n);
            let report = ran(w.poll().await);
            assert_eq!(report.status, Status::Ok, "{:?}", report.error);
            assert_eq!(report.counts.users_deactivated, 1);
        }
        suspend(3);
        let report = ran(w.poll().await);
        assert_eq!(report.status, Status::Blocked);
        let error = report.error.unwrap_or_default();
        assert!(
            error.contains(
                "plan deactivates 1 users (3 with the 2 that incremental runs applied since the last full reconcile), more than safety.max_deactivations = 2"
            ),
            "{error}"
        );
        // The full reconcile that ends the stretch counts them too …
        let report = w.full().await;
        assert_eq!(report.status, Status::Blocked, "{:?}", report.changes);
        assert!(report.error.unwrap_or_default().contains("3 with the 2"));
        // … until a person forces it; then the count starts again.
        let mut forced = RunOptions::new(Trigger::Once);
        forced.force = true;
        assert_eq!(run_once(&w.ctx, &forced).await.status, Status::Ok);
        assert_eq!(w.settle().await.last().map(String::as_str), Some("idle"));
        suspend(4);
        let report = ran(w.poll().await);
        assert_eq!(report.status, Status::Ok, "{:?}", report.error);
        assert_eq!(report.counts.users_deactivated, 1);
        assert!(w.full_plan().await.is_empty());
    }
);

both_kinds!(
    every_user_level_change_arrives_through_events,
    |kind| async move {
        let Some(w) = World::new(kind, "changes", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let (u, g) = (w.users.clone(), w.groups.clone());
        type Step<'a> = (&'a str, Box<dyn Fn(&mut Org) + 'a>);
        let steps: Vec<Step> = vec![
            (
                "suspend",
                Box::new(|o| o.set_user_status(&u[0], UserStatus::Suspended).unwrap()),
            ),
            (
                "unsuspend",
                Box::new(|o| o.set_user_status(&u[0], UserStatus::Active).unwrap()),
            ),
            (
                "deactivate",
                Box::new(|o| o.set_user_status(&u[1], UserStatus::Deprovisioned).unwrap()),
            ),
            (
                "reactivate",
                Box::new(|o| o.set_user_status(&u[1], UserStatus::Active).unwrap()),
            ),
            ("unassign", Box::new(|o| o.unassign_user(&u[2]).unwrap())),
            (
                "email change",
                Box::new(|o| {
                    o.set_user_attr(&u[4], "email", json!("new4@x.example"))
                        .unwrap()
                }),
            ),
            (
                "names",
                Box::new(|o| o.set_user_attr(&u[6], "displayName", json!("Six")).unwrap()),
            ),
            (
                "role",
                Box::new(|o| {
                    o.set_app_user_attr(&u[6], "writerRole", json!("admin"))
                        .unwrap()
                }),
            ),
            (
                "leave a pushed group",
                Box::new(|o| o.remove_member(&g["Eng"], &u[3]).unwrap()),
            ),
            (
                "join a pushed group",
                Box::new(|o| o.add_member(&g["Sales"], &u[3]).unwrap()),
            ),
            (
                "group access lost",
                Box::new(|o| o.remove_member(&g["Sales"], &u[7]).unwrap()),
            ),
            (
                "other group",
                Box::new(|o| o.add_member(&g["Other"], &u[8]).unwrap()),
            ),
            (
                "rename a linked group",
                Box::new(|o| o.rename_group(&g["Eng"], "Engineering").unwrap()),
            ),
            (
                "new user",
                Box::new(|o| {
                    let id = o.add_user(UserStatus::Active, profile(42));
                    o.assign_user(&id, map(json!({"writerRole": "member"})))
                        .unwrap();
                }),
            ),
            (
                "rehire",
                Box::new(|o| {
                    o.set_user_status(&u[8], UserStatus::Deprovisioned).unwrap();
                    let id = o.add_user(UserStatus::Active, profile(8));
                    o.assign_user(&id, map(json!({}))).unwrap();
                }),
            ),
            (
                "delete",
                Box::new(|o| {
                    o.set_user_status(&u[9], UserStatus::Deprovisioned).unwrap();
                    o.delete_user(&u[9]).unwrap();
                }),
            ),
            (
                "email taken",
                Box::new(|o| {
                    o.set_user_attr(&u[5], "email", json!("u6@x.example"))
                        .unwrap()
                }),
            ),
            (
                "email given back",
                Box::new(|o| {
                    o.set_user_attr(&u[5], "email", json!("u5@x.example"))
                        .unwrap()
                }),
            ),
        ];
        for (what, step) in &steps {
            w.sim.org_mut(|o| step(o));
            let outcomes = w.settle().await;
            assert!(
                outcomes.iter().all(|o| !o.starts_with("fallback")),
                "{what}: {outcomes:?}"
            );
            let left = w.full_plan().await;
            assert!(
                left.is_empty(),
                "{what}: a full plan still changes {left:?} ({outcomes:?})"
            );
        }
    }
);

// ---------------------------------------------------------------------------
// Fallbacks to a full reconcile, by name.
// ---------------------------------------------------------------------------

both_kinds!(fallback_no_cursor, |kind| async move {
    let Some(w) = World::new(kind, "nocursor", "").await else {
        return;
    };
    assert_eq!(
        fallback_reason(&w.poll().await),
        Some(FallbackReason::NoCursor)
    );
});

both_kinds!(
    fallback_group_wide_when_a_group_is_assigned,
    |kind| async move {
        let Some(w) = World::new(kind, "groupwide", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let other = w.groups["Other"].clone();
        w.sim
            .org_mut(|o| o.assign_group(&other, 5, map(json!({}))))
            .unwrap();
        assert_eq!(
            fallback_reason(&w.poll().await),
            Some(FallbackReason::GroupWide)
        );
        // Nothing was written; the full reconcile the daemon runs then links it.
        assert_eq!(w.full().await.status, Status::Ok);
        assert!(matches!(
            w.settle().await.last().map(String::as_str),
            Some("idle")
        ));
        assert!(w.full_plan().await.is_empty());
    }
);

both_kinds!(fallback_burst_above_max_affected_users, |kind| async move {
    let Some(w) = World::new(kind, "burst", "events.max_affected_users = 2").await else {
        return;
    };
    assert_eq!(w.full().await.status, Status::Ok);
    w.sim.org_mut(|o| {
        for n in 0..3 {
            o.set_user_attr(&w.users[n], "lastName", json!("Burst"))
                .unwrap();
        }
    });
    let before = w.dump().await;
    assert_eq!(
        fallback_reason(&w.poll().await),
        Some(FallbackReason::Burst)
    );
    assert_eq!(w.dump().await, before, "a fallback writes nothing");
});

both_kinds!(fallback_unknown_event_about_the_app, |kind| async move {
    let Some(w) = World::new(kind, "unknown", "").await else {
        return;
    };
    assert_eq!(w.full().await.status, Status::Ok);
    w.sim.org_mut(|o| {
        o.log_event(
            "application.policy.sign_on.update",
            "SUCCESS",
            vec![LogTarget::app(APP, "Writer")],
        )
    });
    assert_eq!(
        fallback_reason(&w.poll().await),
        Some(FallbackReason::UnknownEvent)
    );
});

both_kinds!(
    failed_attempts_and_other_apps_change_nothing,
    |kind| async move {
        let Some(w) = World::new(kind, "ignored", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let user = w.users[1].clone();
        w.sim.org_mut(|o| {
            o.log_event(
                "user.lifecycle.suspend",
                "FAILURE",
                vec![LogTarget::user(&user, "u1")],
            );
            o.log_event(
                "application.user_membership.remove",
                "SUCCESS",
                vec![
                    LogTarget::app_user(&user, "u1"),
                    LogTarget::app("0oaOTHERapp000000001", "Other"),
                    LogTarget::user(&user, "u1"),
                ],
            );
        });
        // Okta's filter already drops the other app's event; the failed
        // attempt arrives and is ignored.
        let run = w.poll().await;
        assert_eq!(run.events_by_type.get("user.lifecycle.suspend"), Some(&1));
        assert_eq!(run.events_by_type.values().sum::<u64>(), 1);
        // Read, nothing to re-read: no run is recorded, the cursor moves on.
        assert!(
            matches!(run.outcome, Outcome::Idle),
            "{}",
            describe(&run.outcome)
        );
        let cursor = w.ctx.store.event_cursor().await.unwrap().unwrap();
        assert_eq!(cursor.seen.len(), 1);
        let again = w.poll().await;
        assert!(again.events_by_type.is_empty());
        assert!(
            w.ctx
                .store
                .recent_runs(5)
                .await
                .unwrap()
                .iter()
                .all(|r| r.trigger != "events")
        );
    }
);

both_kinds!(fallback_cursor_expired_and_rejected, |kind| async move {
    let Some(w) = World::new(kind, "cursor", "").await else {
        return;
    };
    assert_eq!(w.full().await.status, Status::Ok);
    let cursor = w.ctx.store.event_cursor().await.unwrap().unwrap();
    let day = 86_400_000;
    let now = writer_sync::store::now_ms();
    // 100 days without a poll: the log no longer has the events between.
    let old = EventCursor {
        since_ms: now - 100 * day,
        last_published_ms: None,
        next_url: None,
        ..cursor.clone()
    };
    w.ctx.store.set_event_cursor(&old).await.unwrap();
    assert_eq!(
        fallback_reason(&w.poll().await),
        Some(FallbackReason::CursorExpired)
    );
    // A stored link Okta refuses (a `since` over 180 days back).
    let since = chrono::Utc::now() - chrono::Duration::days(190);
    let link = w.ctx.okta.logs_since_url(since, "eventType sw \"user.\"");
    let refused = EventCursor {
        next_url: Some(link.to_string()),
        last_published_ms: Some(now),
        ..cursor
    };
    w.ctx.store.set_event_cursor(&refused).await.unwrap();
    assert_eq!(
        fallback_reason(&w.poll().await),
        Some(FallbackReason::CursorRejected)
    );
});

both_kinds!(fallback_config_changed, |kind| async move {
    let Some(w) = World::new(kind, "config", "").await else {
        return;
    };
    assert_eq!(w.full().await.status, Status::Ok);
    // The same store, now pushing a list of names: the baseline's pushed
    // groups no longer say what is pushed.
    let listed = context(&w.sim, &w._db.config_url, "teams.push_groups = [\"Eng\"]").await;
    let run = run_events(&listed, &RunOptions::new(Trigger::Events)).await;
    assert_eq!(fallback_reason(&run), Some(FallbackReason::ConfigChanged));
});

both_kinds!(
    fallback_read_error_when_a_user_cannot_be_read,
    |kind| async move {
        let Some(w) = World::new(kind, "readerror", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        w.sim
            .org_mut(|o| o.set_user_status(&w.users[2], UserStatus::Suspended))
            .unwrap();
        w.sim.set_faults(vec![okta_sim::Fault::new(
            okta_sim::FaultTarget::any(),
            okta_sim::Times::Always,
            okta_sim::FaultKind::ServerError(503),
        )]);
        // The log itself fails first: a read error, nothing written.
        assert_eq!(
            fallback_reason(&w.poll().await),
            Some(FallbackReason::ReadError)
        );
        w.sim.set_faults(Vec::new());
        assert!(matches!(w.poll().await.outcome, Outcome::Ran(_)));
    }
);

both_kinds!(
    without_permission_for_the_log_the_sync_runs_full_reconciles_only,
    |kind| async move {
        let Some(w) = World::new(kind, "forbidden", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        w.sim.set_logs_forbidden(true);
        let run = w.poll().await;
        assert!(
            matches!(run.outcome, Outcome::Unavailable(_)),
            "{}",
            describe(&run.outcome)
        );
        // Full reconciles carry on.
        w.sim
            .org_mut(|o| o.set_user_status(&w.users[2], UserStatus::Suspended))
            .unwrap();
        let report = w.full().await;
        assert_eq!(report.status, Status::Ok);
        assert_eq!(report.counts.users_deactivated, 1);
    }
);

both_kinds!(
    a_blocked_incremental_plan_applies_nothing_and_keeps_the_cursor,
    |kind| async move {
        let Some(w) = World::new(kind, "blocked", "safety.max_deactivations = 0").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let cursor = w.ctx.store.event_cursor().await.unwrap();
        w.sim
            .org_mut(|o| o.set_user_status(&w.users[2], UserStatus::Suspended))
            .unwrap();
        let report = ran(w.poll().await);
        assert_eq!(report.status, Status::Blocked, "{:?}", report.error);
        assert_eq!(w.ctx.store.event_cursor().await.unwrap(), cursor);
        // Read again (and blocked again) until forced.
        assert_eq!(ran(w.poll().await).status, Status::Blocked);
    }
);

// ---------------------------------------------------------------------------
// Differential: incremental runs against full reconciles.
// ---------------------------------------------------------------------------

/// One random change to the org, as Okta's admin (or a rule) would make it.
fn random_change(
    rng: &mut fastrand::Rng,
    o: &mut Org,
    users: &mut Vec<String>,
    groups: &[String],
) -> String {
    let ids = o.user_ids();
    let Some(user) = (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone()) else {
        return "nothing".into();
    };
    let group = groups[rng.usize(..groups.len())].clone();
    let status = o.user_status(&user);
    let emails = [
        "u1@x.example",
        "u2@x.example",
        "u7@x.example",
        "fresh@x.example",
        "Fresh@X.example",
    ];
    match rng.u8(..14) {
        0 => {
            let to = if status == Some(UserStatus::Suspended) {
                UserStatus::Active
            } else {
                UserStatus::Suspended
            };
            let _ = o.set_user_status(&user, to);
            format!("status {user} {to:?}")
        }
        1 => {
            let _ = o.set_user_status(&user, UserStatus::Deprovisioned);
            format!("deactivate {user}")
        }
        2 => {
            let _ = o.set_user_status(&user, UserStatus::Active);
            format!("activate {user}")
        }
        3 if status == Some(UserStatus::Deprovisioned) => {
            let _ = o.delete_user(&user);
            format!("delete {user}")
        }
        4 => {
            let _ = o.assign_user(
                &user,
                map(json!({"writerRole": if rng.bool() { "admin" } else { "member" }})),
            );
            format!("assign {user}")
        }
        5 => {
            let _ = o.unassign_user(&user);
            format!("unassign {user}")
        }
        6 => {
            let _ = o.add_member(&group, &user);
            format!("add {user} to {group}")
        }
        7 => {
            let _ = o.remove_member(&group, &user);
            format!("remove {user} from {group}")
        }
        8 => {
            let name = ["Eng", "Sales", "Other", "Renamed"][rng.usize(..4)];
            let _ = o.rename_group(&group, name);
            format!("rename {group} to {name}")
        }
        9 => {
            let email = emails[rng.usize(..emails.len())];
            let _ = o.set_user_attr(&user, "email", json!(email));
            format!("email {user} {email}")
        }
        10 => {
            let _ = o.set_user_attr(&user, "firstName", json!(format!("N{}", rng.u8(..9))));
            format!("names {user}")
        }
        11 => {
            let role = ["admin", "member", "Team Admin", "viewer"][rng.usize(..4)];
            let _ = o.set_app_user_attr(&user, "writerRole", json!(role));
            format!("role {user} {role}")
        }
        12 => {
            // A rehire: the old account goes, a new one comes with its email.
            let email = o
                .user_profile(&user)
                .and_then(|p| p.get("email").cloned())
                .unwrap_or(json!("rehired@x.example"));
            let _ = o.set_user_status(&user, UserStatus::Deprovisioned);
            let mut p = profile(users.len() + 100);
            p.insert("email".into(), email.clone());
            let id = o.add_user(UserStatus::Active, p);
            let _ = o.assign_user(&id, map(json!({})));
            users.push(id.clone());
            format!("rehire {user} as {id} ({email})")
        }
        _ => {
            let n = users.len() + 200;
            let id = o.add_user(UserStatus::Active, profile(n));
            let _ = o.assign_user(&id, map(json!({"writerRole": "member"})));
            if rng.bool() {
                let _ = o.add_member(&group, &id);
            }
            users.push(id.clone());
            format!("new user {id} in {group}")
        }
    }
}

/// Whether every System Log entry the simulator wrote is visible now (a
/// poll then reads all of them).
fn log_is_visible(sim: &SimHandle) -> bool {
    let now = sim.now();
    sim.org(|o| {
        o.event_log()
            .entries()
            .iter()
            .all(|e| e.persisted.is_some_and(|p| p <= now))
    })
}

/// The reference step: a fresh store holding exactly what `before` holds,
/// brought to Okta's view by one full reconcile. Returns its dump.
async fn full_from(kind: common::Kind, sim: &SimHandle, before: &Value) -> Value {
    let db = common::TestDb::new(kind, "differential_ref").await.unwrap();
    let ctx = context(sim, &db.config_url, "").await;
    ctx.store.load_json(&before.to_string()).await.unwrap();
    let report = run_once(&ctx, &RunOptions::new(Trigger::Once)).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    let dump = serde_json::to_value(ctx.store.dump().await.unwrap()).unwrap();
    ctx.store.close().await;
    dump
}

/// One random sequence of Okta changes with polls at random moments, under
/// a log that persists events late, out of order and sometimes twice.
/// Whenever a poll can see every event so far, the store after it must
/// equal what a full reconcile produces from the store before it; a poll
/// that cannot (events still in flight) is checked at a later one. At the
/// end a full plan over the incremental store changes nothing. Returns how
/// many polls were compared with a full reconcile.
async fn differential_case(kind: common::Kind, seed: u64) -> u32 {
    let Some(w) = World::new(kind, "differential", "").await else {
        return 0;
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let timing = okta_sim::LogTiming {
        delay: Duration::from_millis(rng.u64(..40)),
        jitter: Duration::from_millis(rng.u64(..120)),
        duplicates: 0.25,
    };
    w.sim.set_log_timing(timing);
    assert_eq!(w.full().await.status, Status::Ok);
    let groups: Vec<String> = w.groups.values().cloned().collect();
    let mut users = w.users.clone();
    let mut history = Vec::new();
    let mut compared = 0;
    let steps = rng.usize(4..14);
    for step in 0..=steps {
        let last = step == steps;
        if !last {
            let change = w
                .sim
                .org_mut(|o| random_change(&mut rng, o, &mut users, &groups));
            history.push(change);
            if rng.u8(..10) >= 4 {
                continue;
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(..80))).await;
        } else {
            // Every event persisted, then the incremental side catches up.
            tokio::time::sleep(timing.delay + timing.jitter + Duration::from_millis(20)).await;
        }
        let complete = log_is_visible(&w.sim);
        let before = w.dump().await;
        let runs = if last {
            w.settle().await
        } else {
            let run = w.poll().await;
            let outcome = describe(&run.outcome);
            match run.outcome {
                Outcome::Fallback { .. } => {
                    let report = w.full().await;
                    assert_eq!(
                        report.status,
                        Status::Ok,
                        "seed {seed}: {:?}\n{history:#?}",
                        report.error
                    );
                }
                Outcome::Ran(report) => {
                    assert_eq!(
                        report.status,
                        Status::Ok,
                        "seed {seed}: {:?}\n{history:#?}",
                        report.error
                    );
                }
                Outcome::Idle => {}
                other => panic!("seed {seed}: {}\n{history:#?}", describe(&other)),
            }
            vec![outcome]
        };
        history.extend(runs.iter().map(|o| format!("  poll: {o}")));
        if complete {
            compared += 1;
            let after = w.dump().await;
            let reference = full_from(kind, &w.sim, &before).await;
            assert!(
                after == reference,
                "seed {seed} ({kind:?}): after a poll that saw every event, the store differs \
                 from a full reconcile of the store before it\nchanges: {history:#?}\n\
                 before: {before:#}\nincremental: {after:#}\nfull: {reference:#}"
            );
        }
    }
    let left = w.full_plan().await;
    assert!(
        left.is_empty(),
        "seed {seed} ({kind:?}): a full plan over the incremental store still changes {left:#?}\n\
         changes: {history:#?}"
    );
    compared
}

both_kinds!(
    incremental_runs_end_where_a_full_reconcile_does,
    |kind| async move {
        let cases: u64 = std::env::var("WRITER_SYNC_DIFFERENTIAL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12);
        let base: u64 = std::env::var("WRITER_SYNC_DIFFERENTIAL_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        eprintln!("differential: {cases} cases from seed {base} (WRITER_SYNC_DIFFERENTIAL_SEED)");
        let mut compared = 0;
        for n in 0..cases {
            compared += differential_case(kind, base.wrapping_add(n)).await;
        }
        eprintln!("differential: {compared} polls compared with a full reconcile");
        if kind == common::Kind::Sqlite || std::env::var(common::PG_ENV).is_ok() {
            // Every case ends with a poll that sees the whole log.
            assert!(
                u64::from(compared) >= cases,
                "{compared} comparisons in {cases} cases"
            );
        }
    }
);

both_kinds!(
    fallback_burst_when_reading_users_one_by_one_costs_more_than_a_full_run,
    |kind| async move {
        let Some(w) = World::new(kind, "costly", "").await else {
            return;
        };
        let added: Vec<String> = w.sim.org_mut(|o| {
            (0..20)
                .map(|n| {
                    let id = o.add_user(UserStatus::Active, profile(300 + n));
                    o.assign_user(&id, map(json!({}))).unwrap();
                    id
                })
                .collect()
        });
        assert_eq!(w.full().await.status, Status::Ok);
        w.sim.org_mut(|o| {
            for id in &added {
                o.set_user_attr(id, "lastName", json!("Everyone changed"))
                    .unwrap();
            }
        });
        let run = w.poll().await;
        match &run.outcome {
            Outcome::Fallback { reason, detail } => {
                assert_eq!(*reason, FallbackReason::Burst);
                assert!(
                    detail.contains("costs more than a full reconcile"),
                    "{detail}"
                );
            }
            other => panic!("{}", describe(other)),
        }
        // The full run carries on past these events: no second hand-over.
        assert_eq!(w.full().await.counts.users_updated, 20);
        assert!(matches!(w.poll().await.outcome, Outcome::Idle));
    }
);

// ---------------------------------------------------------------------------
// The daemon: polls between full reconciles, through the real binary.
// ---------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

struct Daemon {
    child: std::process::Child,
    port: u16,
    /// Its stderr (a file: a pipe nobody drains would fill and block it).
    log: std::path::PathBuf,
}

impl Daemon {
    fn spawn(config: &Path, token: &str) -> Daemon {
        let text = std::fs::read_to_string(config).unwrap();
        let port = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse().ok())
            .unwrap();
        let log = config.with_extension(format!("{}.log", fastrand::u32(..)));
        let child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("WRITER_SYNC_OKTA_API_TOKEN", token)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, port, log }
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(conn, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        text
    }

    fn metric(&self, sample: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        let err = std::fs::read_to_string(&self.log).unwrap_or_default();
        common::assert_no_secrets("daemon stderr", &err, &[]);
        assert_eq!(status.code(), Some(0), "{err}");
        err
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let err = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(20).collect();
            eprintln!(
                "daemon stderr (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
    }
}

fn daemon_config(dir: &Path, sim: &SimHandle, store_url: &str, extra: &str) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("config.toml");
    let text = format!(
        "[okta]\norg_url = \"{}\"\napp_id = \"{APP}\"\nrequest_timeout = \"5s\"\n\
         requests_per_minute = 100000\n\n\
         [store]\nurl = \"{store_url}\"\nwrites_per_second = 0\n\n\
         [sync]\nschedule = \"0 0 1 1 *\"\n\n\
         [teams]\ncreate_missing = true\n\n[safety]\nmax_deactivations_percent = 100\n\n\
         [events]\npoll_interval = \"1s\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
        sim.url().as_str().trim_end_matches('/'),
    );
    common::write_file_mode(&path, &text, 0o600);
    path
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );

        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both_kinds!(
    the_daemon_brings_a_change_in_within_a_poll_and_reports_it,
    |kind| async move {
        let Some(w) = World::new(kind, "daemon", "").await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = daemon_config(dir.path(), &w.sim, &w._db.config_url, "");
        let d = Daemon::spawn(&config, w.sim.token());
        wait_for(
            "the first full reconcile",
            Duration::from_secs(30),
            async || d.metric("writer_sync_runs_total{status=\"ok\"}") == Some(1.0),
        )
        .await;
        w.sim
            .org_mut(|o| o.set_user_status(w.user(2), UserStatus::Suspended))
            .unwrap();
        let changed = std::time::Instant::now();
        let email = "u2@x.example";
        wait_for(
            "the suspension in the store",
            Duration::from_secs(10),
            async || {
                let dump = w.dump().await;
                dump["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u["email"] == email && u["active"] == false)
            },
        )
        .await;
        // Within the poll interval (1 s here) and a little work.
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "{:?}",
            changed.elapsed()
        );
        wait_for("the metrics", Duration::from_secs(5), async || {
            d.metric("writer_sync_incremental_runs_total{outcome=\"ok\"}") >= Some(1.0)
        })
        .await;
        assert_eq!(
            d.metric("writer_sync_events_read_total{type=\"user.lifecycle.suspend\"}"),
            Some(1.0)
        );
        assert!(d.metric("writer_sync_event_lag_seconds").is_some());
        assert_eq!(d.metric("writer_sync_runs_total{status=\"ok\"}"), Some(2.0));
        wait_for("an idle poll", Duration::from_secs(5), async || {
            d.metric("writer_sync_incremental_runs_total{outcome=\"idle\"}") >= Some(1.0)
        })
        .await;
        let stderr = d.stop();
        let finished: Vec<Value> = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["message"] == "sync finished")
            .collect();
        let triggers: Vec<&str> = finished
            .iter()
            .filter_map(|e| e["trigger"].as_str())
            .collect();
        assert_eq!(triggers, ["start", "events"], "{stderr}");
        assert_eq!(finished[1]["users_deactivated"], 1);
    }
);

/// Ten users, each in fifty groups assigned to the app: suspending them all
/// is 520 changes for one incremental run (two transactions), and cheap to
/// read (ten users).
fn wide_org() -> (Org, Vec<String>) {
    let (mut org, users, _) = org();
    for k in 0..50 {
        let g = org.add_group(&format!("Wide{k}"), None);
        for u in &users {
            org.add_member(&g, u).unwrap();
        }
        org.assign_group(&g, 10 + k, map(json!({}))).unwrap();
    }
    (org, users)
}

async fn audit_count(store: &Store) -> usize {
    store.audit_log().await.map(|a| a.len()).unwrap_or(0)
}

both_kinds!(
    a_crash_during_an_incremental_apply_loses_and_doubles_nothing,
    |kind| async move {
        // Kill points spread over the run (about 5 s of apply at 100
        // writes a second): while it reads Okta, early and late in the
        // first transaction (500 changes), and after the first committed,
        // inside the second, which carries the cursor.
        enum Kill {
            After(f64),
            FirstCommitted,
        }
        let points = [
            Kill::After(0.0),
            Kill::After(0.8),
            Kill::After(4.0),
            Kill::FirstCommitted,
        ];
        for (round, point) in points.into_iter().enumerate() {
            let (org, users) = wide_org();
            let sim = Simulator::start(
                org,
                SimOptions {
                    rate_limits: RateLimits::unlimited(),
                    ..SimOptions::default()
                },
            )
            .await
            .unwrap();
            let Some(db) = common::TestDb::new(kind, "crash_events").await else {
                return;
            };
            let dir = tempfile::tempdir().unwrap();
            let config = daemon_config(dir.path(), &sim, &db.config_url, "");
            let slow = std::fs::read_to_string(&config)
                .unwrap()
                .replace("writes_per_second = 0", "writes_per_second = 100")
                .replace("[safety]\n", "[safety]\nmax_membership_removals = 10000\n");
            common::write_file_mode(&config, &slow, 0o600);
            let store = Store::connect(&db.url).await.unwrap();
            let d = Daemon::spawn(&config, sim.token());
            wait_for(
                "the first full reconcile",
                Duration::from_secs(60),
                async || d.metric("writer_sync_runs_total{status=\"ok\"}") == Some(1.0),
            )
            .await;
            let before = audit_count(&store).await;
            sim.org_mut(|o| {
                for u in &users {
                    o.set_user_status(u, UserStatus::Suspended).unwrap();
                }
            });
            // Kill the daemon's own process part way through the apply.
            wait_for("the incremental run", Duration::from_secs(30), async || {
                store.recent_runs(1).await.is_ok_and(|r| {
                    r.first()
                        .is_some_and(|r| r.trigger == "events" && r.finished_at.is_none())
                })
            })
            .await;
            match point {
                Kill::After(secs) => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
                Kill::FirstCommitted => {
                    wait_for(
                        "the first transaction",
                        Duration::from_secs(30),
                        async || audit_count(&store).await >= before + 500,
                    )
                    .await
                }
            }
            drop(d);
            let killed_at = audit_count(&store).await;
            assert!(
                killed_at < before + 520,
                "the apply finished before the kill"
            );
            // A crash leaves whole transactions: none, or the first.
            assert!(
                [before, before + 500].contains(&killed_at),
                "{} changes committed",
                killed_at - before
            );
            // A new process carries on from the cursor: it commits with the
            // last batch, so the events are read again, as state.
            let restarted = std::time::Instant::now();
            let cfg = std::fs::read_to_string(&config)
                .unwrap()
                .replace("[sync]\n", "[sync]\nrun_on_start = false\n");
            common::write_file_mode(&config, &cfg, 0o600);
            let d = Daemon::spawn(&config, sim.token());
            let ctx = context(&sim, &db.config_url, "").await;
            wait_for(
                "convergence after the crash",
                Duration::from_secs(90),
                async || {
                    let dump = serde_json::to_value(ctx.store.dump().await.unwrap()).unwrap();
                    dump["users"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|u| u["active"] == false)
                        && dump["teams"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|t| t["members"].as_array().unwrap().is_empty())
                },
            )
            .await;
            eprintln!(
                "{kind:?} round {round}: killed after {} of 520 changes; converged {:?} after the restart",
                killed_at - before,
                restarted.elapsed()
            );
            let _ = d.stop();
            // Nothing doubled: every change of the burst written once.
            let audit = ctx.store.audit_log().await.unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for row in &audit[before..] {
                assert!(
                    seen.insert((row.action.clone(), row.target.clone())),
                    "applied twice: {} {}",
                    row.action,
                    row.target
                );
            }
            assert_eq!(seen.len(), 520);
            let mut opts = RunOptions::new(Trigger::Once);
            opts.dry_run = true;
            assert!(run_once(&ctx, &opts).await.changes.is_empty());
        }
    }
);

// ---------------------------------------------------------------------------
// Operator controls (SPEC §8) in incremental runs.
// ---------------------------------------------------------------------------

both_kinds!(
    a_paused_poll_plans_applies_nothing_and_keeps_the_cursor_until_resume,
    |kind| async move {
        let Some(w) = World::new(kind, "paused_poll", "").await else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let store = &w.ctx.store;
        let pause = writer_sync::store::Pause::here("looking at an import");
        store.pause(&pause).await.unwrap();
        w.sim
            .org_mut(|o| o.set_user_attr(&w.users[1], "lastName", json!("Changed")))
            .unwrap();
        let before = w.dump().await;
        let cursor = store.event_cursor().await.unwrap();
        for _ in 0..2 {
            // Each poll reads the same events again: the cursor stays.
            let report = ran(w.poll().await);
            assert_eq!(report.status, Status::Paused, "{:?}", report.error);
            assert_eq!(report.changes.len(), 1, "planned: {:?}", report.changes);
            assert!(report.error.unwrap().contains("looking at an import"));
            assert_eq!(store.event_cursor().await.unwrap(), cursor);
            let run = &store.recent_runs(1).await.unwrap()[0];
            assert_eq!(
                (run.trigger.as_str(), run.status.as_str()),
                ("events", "paused")
            );
            assert!(store.audit_of_run(run.id).await.unwrap().is_empty());
        }
        assert_eq!(w.dump().await, before);
        store.resume(&pause).await.unwrap();
        let report = ran(w.poll().await);
        assert_eq!(report.status, Status::Ok, "{:?}", report.error);
        assert_eq!(report.changes.len(), 1);
        assert!(w.full_plan().await.is_empty());
    }
);

both_kinds!(
    an_incremental_run_respects_the_deactivation_grace,
    |kind| async move {
        let Some(w) = World::new(kind, "grace_poll", "safety.deactivate_after = \"1h\"").await
        else {
            return;
        };
        assert_eq!(w.full().await.status, Status::Ok);
        let eng = w.groups["Eng"].clone();
        let u2 = w.user(2).to_owned();
        w.sim.org_mut(|o| {
            o.unassign_user(&u2).unwrap();
            o.remove_member(&eng, &u2).unwrap();
        });
        let mut pending = Vec::new();
        for outcome in w.settle_reports().await {
            pending.extend(outcome.pending_deactivations);
        }
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].okta_id, u2);
        assert!(w.ctx.store.missing_since().await.unwrap().contains_key(&u2));
        let dump = w.dump().await;
        let user = dump["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["okta_id"] == u2.as_str())
            .unwrap();
        assert_eq!(user["active"], true, "deactivated within the grace");
        // A full reconcile agrees: nothing to do within the grace.
        assert!(w.full_plan().await.is_empty());
    }
);

impl World {
    /// Polls until idle (full reconciles on fallbacks): the reports of the
    /// incremental runs.
    async fn settle_reports(&self) -> Vec<Report> {
        let mut reports = Vec::new();
        for _ in 0..10 {
            match self.poll().await.outcome {
                Outcome::Idle => return reports,
                Outcome::Fallback { .. } => {
                    let report = self.full().await;
                    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
                    reports.push(report);
                }
                Outcome::Ran(report) => {
                    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
                    reports.push(*report);
                }
                other => panic!("unexpected {}", describe(&other)),
            }
        }
        panic!("the log never settled");
    }
}
