//! Okta as it really behaves (issue #14), end to end against the simulator
//! configured to behave that way, on both stores: big pages too slow to
//! answer, member pages capped or refused above 200, a pushed group deleted
//! while the run reads it, app users that are revoked, built-in and AD
//! groups, an inactive app, and the role attribute missing from the schema.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use okta_sim::generate::GenSpec;
use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{
    Fault, FaultKind, FaultTarget, MembersLimit, RateLimits, Route, SimHandle, SimOptions,
    Simulator, SlowAnswer, SlowPages, Times,
};
use writer_sync::reconcile::report::Status;

use crate::{Limits, common, config_text, context, dump, parse_config, sync};

const APP_ID: &str = "0oa1behaviourapp0001";

/// 1,200 generated users, three pushed groups.
fn generated_org() -> Org {
    Org::generate(&GenSpec::new(1_200, 8, 3, 11))
}

fn options() -> SimOptions {
    SimOptions {
        rate_limits: RateLimits::unlimited(),
        ..SimOptions::default()
    }
}

async fn start(org: Org, options: SimOptions) -> SimHandle {
    Simulator::start(org, options).await.unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// A small org: `n` ACTIVE users assigned directly (`writerRole: member`),
/// and the group "Eng" (assigned to the app) holding all of them.
fn small_org(n: usize) -> (Org, Vec<String>, String) {
    let mut org = Org::new(SimApp {
        id: APP_ID.into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let mut ids = Vec::new();
    for i in 0..n {
        let email = format!("person{i}@corp.example");
        let id = org.add_user(
            UserStatus::Active,
            object(json!({"login": email, "email": email, "firstName": "P", "lastName": format!("{i}")})),
        );
        org.assign_user(&id, object(json!({"writerRole": "member"})))
            .unwrap();
        ids.push(id);
    }
    let eng = org.add_group("Eng", None);
    for id in &ids {
        org.add_member(&eng, id).unwrap();
    }
    org.assign_group(&eng, 0, Map::new()).unwrap();
    (org, ids, eng)
}

/// One run of the writer-sync binary.
pub(crate) struct BinaryRun {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

impl BinaryRun {
    /// The JSON log lines whose `message` starts with `prefix`.
    fn events(&self, prefix: &str) -> Vec<Value> {
        self.stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| {
                event["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .collect()
    }

    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the binary with `args` and the config `text` (written 0600).
pub(crate) async fn run_binary(text: &str, token: &str, args: &[&str]) -> BinaryRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    common::write_file_mode(&path, text, 0o600);
    let token = token.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let started = Instant::now();
    // The simulator serves from this runtime: wait for the child off it.
    let out = tokio::task::spawn_blocking(move || {
        common::checked_output(
            std::process::Command::new(crate::BIN)
                .arg("--config")
                .arg(&path)
                .args(&args)
                .env("WRITER_SYNC_OKTA_API_TOKEN", &token)
                .env_remove("RUST_LOG"),
            &[&token],
        )
    })
    .await
    .unwrap();
    BinaryRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

async fn store_dump(db: &common::TestDb) -> Value {
    let store = writer_sync::store::Store::connect(&db.url).await.unwrap();
    let value = dump(&store).await;
    store.close().await;
    value
}

// ---------------------------------------------------------------------------
// Item 1: slow big pages.
// ---------------------------------------------------------------------------

async fn slow_big_pages_shrink_and_the_store_equals_an_unfaulted_run(kind: common::Kind) {
    // The unfaulted run.
    let clean = start(generated_org(), options()).await;
    let Some(clean_db) = common::TestDb::new(kind, "slowref").await else {
        return;
    };
    let text = |sim: &SimHandle, db: &common::TestDb| {
        config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, "").replace(
            "request_timeout = \"5s\"",
            "request_timeout = \"1s\"\nretry_budget = \"40s\"",
        )
    };
    let run = run_binary(
        &text(&clean, &clean_db),
        clean.token(),
        &["run", "--once", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.events("okta pages were read with a smaller limit")
            .is_empty()
    );
    let reference = store_dump(&clean_db).await;

    // Pages of more than 300 objects answer after 20 s, past the 1 s timeout.
    let slow = start(
        generated_org(),
        SimOptions {
            slow_pages: Some(SlowPages {
                more_than: 300,
                answer: SlowAnswer::Delay(Duration::from_secs(20)),
            }),
            ..options()
        },
    )
    .await;
    let db = common::TestDb::new(kind, "slow").await.unwrap();
    let run = run_binary(
        &text(&slow, &db),
        slow.token(),
        &["run", "--once", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.report()["status"], "ok");
    assert_eq!(store_dump(&db).await, reference, "the store of a clean run");
    // One warning for the run, naming the endpoint and the final size.
    let warned = run.events("okta pages were read with a smaller limit");
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    let endpoints = warned[0]["endpoints"].as_str().unwrap();
    assert!(
        endpoints.contains(&format!(
            "GET /api/v1/apps/{}/users (limit 500 -> 250)",
            slow.app_id()
        )),
        "{endpoints}"
    );
    assert_eq!(warned[0]["level"], "WARN");
    // Every page the simulator answered was at most 300 objects.
    assert!(
        slow.requests()
            .iter()
            .filter(|r| r.route == Route::AppUsers)
            .all(|r| r.query.as_deref().unwrap_or("").contains("limit=250"))
    );
}

both_kinds!(
    slow_big_pages_are_read_smaller_and_the_store_equals_an_unfaulted_run,
    slow_big_pages_shrink_and_the_store_equals_an_unfaulted_run
);

// ---------------------------------------------------------------------------
// Item 2: member pages capped at 200, or limit > 200 refused.
// ---------------------------------------------------------------------------

async fn members_capped_or_refused_above_200_sync_the_same(kind: common::Kind) {
    let clean = start(generated_org(), options()).await;
    let Some(clean_db) = common::TestDb::new(kind, "membersref").await else {
        return;
    };
    let config = parse_config(
        &config_text(
            clean.url().as_str(),
            &clean.app_id(),
            &clean_db.config_url,
            "",
        ),
        clean.token(),
    );
    let ctx = context(config, clean.token(), Limits::default()).await;
    assert_eq!(sync(&ctx).await.status, Status::Ok);
    let reference = dump(&ctx.store).await;
    ctx.store.close().await;

    for refuse_above in [false, true] {
        let sim = start(
            generated_org(),
            SimOptions {
                members_limit: Some(MembersLimit {
                    max: 200,
                    refuse_above,
                }),
                ..options()
            },
        )
        .await;
        let db = common::TestDb::new(kind, "members").await.unwrap();
        let config = parse_config(
            &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
            sim.token(),
        );
        let ctx = context(config, sim.token(), Limits::default()).await;
        let report = sync(&ctx).await;
        assert_eq!(report.status, Status::Ok, "{:?}", report.error);
        assert_eq!(dump(&ctx.store).await, reference, "refuse {refuse_above}");
        let member_pages: Vec<_> = sim
            .requests()
            .into_iter()
            .filter(|r| r.route == Route::GroupMembers)
            .collect();
        let refused = member_pages.iter().filter(|r| r.status == 400).count();
        if refuse_above {
            // At most one refusal per listing that was in flight before the
            // first refusal taught the client: then 200 everywhere.
            assert!((1..=3).contains(&refused), "{refused}");
            assert_eq!(ctx.okta.group_members_limit(), 200);
            sim.reset_log();
            assert_eq!(sync(&ctx).await.status, Status::Ok);
            assert!(
                sim.requests()
                    .iter()
                    .filter(|r| r.route == Route::GroupMembers)
                    .all(|r| r.status == 200
                        && r.query.as_deref().unwrap_or("").contains("limit=200")),
                "the next run asks for 200 at once"
            );
        } else {
            assert_eq!(refused, 0);
            assert_eq!(ctx.okta.group_members_limit(), 1_000);
        }
        ctx.store.close().await;
    }
}

both_kinds!(
    member_pages_capped_or_refused_above_200_still_sync,
    members_capped_or_refused_above_200_sync_the_same
);

// ---------------------------------------------------------------------------
// Item 5: a pushed group deleted while the run reads it.
// ---------------------------------------------------------------------------

async fn deleted_group_is_an_orphaned_link(kind: common::Kind) {
    let (org, ids, eng) = small_org(3);
    let sim = start(org, options()).await;
    let Some(db) = common::TestDb::new(kind, "deletedgroup").await else {
        return;
    };
    let config = parse_config(
        &config_text(sim.url().as_str(), APP_ID, &db.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), Limits::default()).await;
    let first = sync(&ctx).await;
    assert_eq!(first.status, Status::Ok, "{:?}", first.error);
    assert_eq!(first.counts.teams_created, 1);
    assert_eq!(first.counts.memberships_added, 3);
    let before = dump(&ctx.store).await;

    // The group was listed as assigned, then its member listing answers 404
    // (deleted meanwhile); someone also left it, which must not be applied.
    sim.org_mut(|o| o.remove_member(&eng, &ids[0]).unwrap());
    sim.set_faults(vec![Fault::new(
        FaultTarget::route(Route::GroupMembers),
        Times::Always,
        FaultKind::NotFound,
    )]);
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(dump(&ctx.store).await, before, "nothing removed");
    let warnings = report
        .findings
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>();
    assert!(
        warnings.iter().any(|w| w.contains(&eng)
            && w.contains("was deleted while this run read it")
            && w.contains("keeps its members")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("orphaned link") && w.contains(&eng)),
        "{warnings:?}"
    );
    ctx.store.close().await;

    // An unlinked group with that 404 is simply skipped.
    let fresh = common::TestDb::new(kind, "deletedgroupfresh")
        .await
        .unwrap();
    let config = parse_config(
        &config_text(sim.url().as_str(), APP_ID, &fresh.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), Limits::default()).await;
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    assert_eq!(report.counts.users_created, 3);
    assert_eq!(report.counts.teams_created, 0);
    assert!(
        dump(&ctx.store).await["teams"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    ctx.store.close().await;
}

both_kinds!(
    a_pushed_group_deleted_mid_run_keeps_its_team_and_the_run_succeeds,
    deleted_group_is_an_orphaned_link
);

// ---------------------------------------------------------------------------
// Item 6: app-user status.
// ---------------------------------------------------------------------------

async fn revoked_app_users_are_out_of_scope(kind: common::Kind) {
    let (org, ids, _) = small_org(5);
    let sim = start(org, options()).await;
    let Some(db) = common::TestDb::new(kind, "appuserstatus").await else {
        return;
    };
    let text = config_text(sim.url().as_str(), APP_ID, &db.config_url, "");
    let run = run_binary(&text, sim.token(), &["run", "--once", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.report()["counts"]["users_created"], 5);

    sim.org_mut(|o| {
        o.set_app_user_status(&ids[0], "REVOKED").unwrap();
        o.set_app_user_status(&ids[1], "DEPROVISIONED").unwrap();
        o.set_app_user_status(&ids[2], "INACTIVE").unwrap();
        // Still assigned: provisioning apps go STAGED → PROVISIONED.
        o.set_app_user_status(&ids[3], "PROVISIONED").unwrap();
    });
    let run = run_binary(&text, sim.token(), &["run", "--once", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["counts"]["users_deactivated"], 3, "{report}");
    let deactivated: Vec<&Value> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "user_deactivated")
        .collect();
    for change in &deactivated {
        assert_eq!(change["reason"], "not_in_scope", "{change}");
    }
    let observed = run.events("observed");
    assert_eq!(observed.len(), 1, "{}", run.stderr);
    assert_eq!(
        observed[0]["app_user_statuses"],
        json!({"ACTIVE": 1, "DEPROVISIONED": 1, "INACTIVE": 1, "PROVISIONED": 1, "REVOKED": 1}),
        "a nested object in the JSON log"
    );
    // Reassigned (ACTIVE again): reactivated.
    sim.org_mut(|o| o.set_app_user_status(&ids[0], "ACTIVE").unwrap());
    let run = run_binary(&text, sim.token(), &["run", "--once", "--json"]).await;
    assert_eq!(run.report()["counts"]["users_reactivated"], 1);
}

both_kinds!(
    revoked_deprovisioned_and_inactive_app_users_are_not_in_scope,
    revoked_app_users_are_out_of_scope
);

// ---------------------------------------------------------------------------
// Item 4: built-in and AD groups (the recorded fixtures' groups).
// ---------------------------------------------------------------------------

async fn built_in_groups(kind: common::Kind) {
    // The sample org is built from the recorded HARs: it holds the recorded
    // BUILT_IN `Everyone` (every user) and two groups named "Test Group",
    // one OKTA_GROUP (assigned) and the recorded APP_GROUP (AD).
    let mut org = Org::sample();
    let everyone = org.group_ids_named("Everyone");
    assert_eq!(everyone.len(), 1);
    let everyone = everyone[0].clone();
    org.assign_group(&everyone, 9, Map::new()).unwrap();
    let sim = start(org, options()).await;
    let Some(db) = common::TestDb::new(kind, "builtin").await else {
        return;
    };
    let app_id = sim.app_id();
    let config = parse_config(
        &config_text(sim.url().as_str(), &app_id, &db.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), Limits::default()).await;
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    let teams: Vec<String> = dump(&ctx.store).await["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!teams.contains(&"Everyone".to_owned()), "{teams:?}");
    assert!(teams.contains(&"Test Group".to_owned()), "{teams:?}");
    assert!(
        report.findings.iter().any(|f| f.message.contains(&everyone)
            && f.message.contains("Everyone")
            && f.message.contains("BUILT_IN")),
        "{:?}",
        report.findings
    );
    // No member listing of Everyone was read.
    let everyone_path = format!("/api/v1/groups/{everyone}/users");
    assert!(sim.requests().iter().all(|r| r.path != everyone_path));
    ctx.store.close().await;

    // Named explicitly it is pushed; "Test Group" names an Okta and an AD
    // group: neither is linked, and the warning names both types.
    let named = common::TestDb::new(kind, "builtinnamed").await.unwrap();
    let text = config_text(sim.url().as_str(), &app_id, &named.config_url, "").replace(
        "[teams]\ncreate_missing = true",
        "[teams]\ncreate_missing = true\npush_groups = [\"Everyone\", \"Test Group\"]",
    );
    let ctx = context(
        parse_config(&text, sim.token()),
        sim.token(),
        Limits::default(),
    )
    .await;
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    let teams = dump(&ctx.store).await["teams"].clone();
    let names: Vec<&str> = teams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Everyone"]);
    let duplicate = report
        .findings
        .iter()
        .find(|f| f.message.contains("have the same name \"Test Group\""))
        .unwrap_or_else(|| panic!("{:?}", report.findings));
    assert!(
        duplicate.message.contains("(OKTA_GROUP)") && duplicate.message.contains("(APP_GROUP)"),
        "{}",
        duplicate.message
    );
    ctx.store.close().await;
}

both_kinds!(
    built_in_groups_are_not_pushed_as_assigned_but_may_be_named,
    built_in_groups
);

// ---------------------------------------------------------------------------
// Item 7: an inactive Writer app.
// ---------------------------------------------------------------------------

async fn inactive_app(kind: common::Kind) {
    let (mut org, _, _) = small_org(2);
    org.set_app_status("INACTIVE");
    let sim = start(org, options()).await;
    let Some(db) = common::TestDb::new(kind, "inactiveapp").await else {
        return;
    };
    let text = config_text(sim.url().as_str(), APP_ID, &db.config_url, "");
    let ctx = context(
        parse_config(&text, sim.token()),
        sim.token(),
        Limits::default(),
    )
    .await;
    for run in 0..2 {
        let report = sync(&ctx).await;
        assert_eq!(report.status, Status::Ok, "{:?}", report.error);
        assert!(
            report.findings.iter().any(
                |f| f.message.contains(APP_ID) && f.message.contains("is INACTIVE, not ACTIVE")
            ),
            "run {run}: {:?}",
            report.findings
        );
    }
    // One GET of the app per run, in its own bucket.
    let app_gets: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == Route::App)
        .collect();
    assert_eq!(app_gets.len(), 2);
    assert!(
        app_gets
            .iter()
            .all(|r| r.family == okta_sim::Bucket::AppById)
    );
    ctx.store.close().await;
    let check = run_binary(&text, sim.token(), &["check"]).await;
    assert_eq!(check.code, Some(0), "{}\n{}", check.stdout, check.stderr);
    assert!(
        check
            .stdout
            .lines()
            .any(|l| l.starts_with("okta app") && l.contains("warning: the Okta app")),
        "{}",
        check.stdout
    );
}

both_kinds!(
    an_inactive_app_warns_in_every_run_and_in_check,
    inactive_app
);

// ---------------------------------------------------------------------------
// Item 8: the role attribute must exist (check).
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_the_role_attribute_in_the_schema_it_is_read_from() {
    let (org, _, _) = small_org(1);
    let sim = start(org, options()).await;
    let db = common::TestDb::new(common::Kind::Sqlite, "schema")
        .await
        .unwrap();
    let text = config_text(sim.url().as_str(), APP_ID, &db.config_url, "");
    let schema_line = |out: &BinaryRun| {
        assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
        out.stdout
            .lines()
            .find(|l| l.starts_with("okta schema"))
            .unwrap_or_else(|| panic!("{}", out.stdout))
            .to_owned()
    };
    let line = schema_line(&run_binary(&text, sim.token(), &["check"]).await);
    assert!(
        line.contains(&format!(
            "\"writerRole\" is defined in the app-user schema of app {APP_ID}"
        )),
        "{line}"
    );
    // Read from the user profile: the user schema.
    let user_text = text.replace("[log]", "[sync]\nrole_source = \"user\"\n\n[log]");
    let line = schema_line(&run_binary(&user_text, sim.token(), &["check"]).await);
    assert!(line.contains("the Okta user schema"), "{line}");
    // Not defined: a warning that says what follows and what to fix.
    sim.set_schema_custom_attributes(vec!["role".into()]);
    let line = schema_line(&run_binary(&text, sim.token(), &["check"]).await);
    assert!(
        line.contains("warning: sync.role_attribute \"writerRole\" is not defined")
            && line.contains("member"),
        "{line}"
    );
    // No permission to read schemas: not verified, not failed.
    sim.set_faults(vec![Fault::new(
        FaultTarget::route(Route::Schema),
        Times::Always,
        FaultKind::Forbidden,
    )]);
    let line = schema_line(&run_binary(&text, sim.token(), &["check"]).await);
    assert!(
        line.contains("could not verify") && line.contains("okta.schemas.read"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------
// `check` only reads (issue #15.4): no SQLite file created, no migration
// run; it says what the first run will do.
// ---------------------------------------------------------------------------

async fn check_reads_the_store_without_creating_or_migrating_it(kind: common::Kind) {
    let (org, _, _) = small_org(1);
    let sim = start(org, options()).await;
    let Some(db) = common::TestDb::new(kind, "checkreadonly").await else {
        return;
    };
    let text = config_text(sim.url().as_str(), APP_ID, &db.config_url, "");
    let store_line = |out: &BinaryRun| {
        assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
        out.stdout
            .lines()
            .find(|l| l.starts_with("store"))
            .unwrap_or_else(|| panic!("{}", out.stdout))
            .to_owned()
    };
    let line = store_line(&run_binary(&text, sim.token(), &["check"]).await);
    match &db.url {
        writer_sync::store::StoreUrl::Sqlite(path) => {
            assert!(line.contains("does not exist yet"), "{line}");
            assert!(!path.exists(), "check created {}", path.display());
        }
        url => {
            assert!(line.contains("migration(s) pending (0001, "), "{line}");
            let store = writer_sync::store::Store::inspect(url)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                store.pending_migrations().await.unwrap().len(),
                line.matches(", ").count() + 1,
                "check ran a migration: {line}"
            );
            store.close().await;
        }
    }
    let run = run_binary(&text, sim.token(), &["run", "--once"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let line = store_line(&run_binary(&text, sim.token(), &["check"]).await);
    assert!(line.contains(" users ("), "{line}");
}

both_kinds!(
    check_only_reads_the_store_and_says_what_the_first_run_migrates,
    check_reads_the_store_without_creating_or_migrating_it
);
