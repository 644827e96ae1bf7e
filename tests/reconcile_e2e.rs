//! End to end: the real `writer-sync` binary against the Okta simulator and a
//! real store (SQLite always, PostgreSQL when configured).

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::{Map, Value, json};

use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{Fault, FaultKind, FaultTarget, Route, SimHandle, SimOptions, Simulator, Times};

const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

/// The Writer org before the sync is installed: two teams named like the
/// Okta groups (linked on first sync), the default team, a Writer user that
/// matches an Okta user by email (different case), and a local account.
const SEED: &str = r#"{
  "users": [
    {"email": "Frank@Corp.example", "okta_id": null, "first_name": "Frank", "last_name": "F", "display_name": "Frank F", "active": true},
    {"email": "local@corp.example", "okta_id": null, "first_name": "Local", "last_name": "Only", "display_name": "Local Only", "active": true}
  ],
  "teams": [
    {"name": "Engineering", "okta_group_id": null, "members": [{"email": "local@corp.example", "role": "admin"}]},
    {"name": "Everyone", "okta_group_id": null, "members": []},
    {"name": "Sales", "okta_group_id": null, "members": []}
  ]
}"#;

fn profile(first: &str, last: &str, email: &str) -> Map<String, Value> {
    let Value::Object(m) =
        json!({"login": email, "email": email, "firstName": first, "lastName": last})
    else {
        unreachable!()
    };
    m
}

fn role(value: &str) -> Map<String, Value> {
    let Value::Object(m) = json!({"writerRole": value}) else {
        unreachable!()
    };
    m
}

/// Okta ids of the test org's people.
struct Ids {
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    erin: String,
    frank: String,
    eng: String,
    sales: String,
}

fn test_org() -> (Org, Ids) {
    let mut org = Org::new(SimApp {
        id: "0oawriterapp".into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let alice = org.add_user(
        UserStatus::Active,
        profile("Alice", "Adams", "alice@corp.example"),
    );
    let bob = org.add_user(
        UserStatus::Active,
        profile("Bob", "Brown", "bob@corp.example"),
    );
    let carol = org.add_user(
        UserStatus::Active,
        profile("Carol", "Clark", "carol@corp.example"),
    );
    let dave = org.add_user(
        UserStatus::Suspended,
        profile("Dave", "Davis", "dave@corp.example"),
    );
    let erin = org.add_user(
        UserStatus::Staged,
        profile("Erin", "Evans", "erin@corp.example"),
    );
    let frank = org.add_user(
        UserStatus::Active,
        profile("Frank", "Fisher", "frank@corp.example"),
    );
    let eng = org.add_group("Engineering", None);
    let sales = org.add_group("Sales", None);
    let other = org.add_group("Not Pushed", None);
    for (g, u) in [
        (&eng, &alice),
        (&eng, &bob),
        (&sales, &bob),
        (&sales, &carol),
        (&other, &carol),
    ] {
        org.add_member(g, u).unwrap();
    }
    org.assign_user(&alice, role("Team Admin")).unwrap();
    org.assign_user(&carol, role("member")).unwrap();
    org.assign_user(&dave, Map::new()).unwrap();
    org.assign_user(&erin, Map::new()).unwrap();
    org.assign_user(&frank, Map::new()).unwrap();
    // Bob has the app through his groups only.
    org.assign_group(&eng, 1, Map::new()).unwrap();
    org.assign_group(&sales, 2, Map::new()).unwrap();
    let ids = Ids {
        alice,
        bob,
        carol,
        dave,
        erin,
        frank,
        eng,
        sales,
    };
    (org, ids)
}

struct World {
    sim: SimHandle,
    db: common::TestDb,
    dir: tempfile::TempDir,
    ids: Ids,
}

impl World {
    async fn new(db: common::TestDb) -> World {
        let (org, ids) = test_org();
        let sim = Simulator::start(org, SimOptions::default()).await.unwrap();
        let world = World {
            sim,
            db,
            dir: tempfile::tempdir().unwrap(),
            ids,
        };
        world.write_config("");
        std::fs::write(world.dir.path().join("seed.json"), SEED).unwrap();
        let out = world.run(&["store", "load", "seed.json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        world
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Writes the config; `extra` is appended (more tables).
    fn write_config(&self, extra: &str) {
        let text = format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n[store]\nurl = \"{}\"\nwrites_per_second = 0\n\n[sync]\ndefault_team = \"Everyone\"\n\n[log]\nformat = \"json\"\n{extra}",
            self.sim.url().as_str().trim_end_matches('/'),
            self.sim.app_id(),
            self.db.config_url,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("WRITER_SYNC_OKTA_API_TOKEN", self.sim.token())
            .env_remove("RUST_LOG");
        let token = self.sim.token().to_owned();
        tokio::task::spawn_blocking(move || common::checked_output(&mut cmd, &[&token]))
            .await
            .unwrap()
    }

    /// `run --once --json [more]`: exit code and the report.
    async fn sync(&self, more: &[&str]) -> (i32, Value) {
        let mut args = vec!["run", "--once", "--json"];
        args.extend_from_slice(more);
        let out = self.run(&args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains(self.sim.token()), "token leaked to logs");
        assert!(!stdout.contains(self.sim.token()), "token leaked to stdout");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must be exactly one JSON object:\n{stdout}\nstderr:\n{stderr}"
        );
        let report: Value = serde_json::from_str(lines[0]).unwrap();
        if report["status"] == "ok" {
            // An applied run logs where its time went: plan, then apply of
            // exactly the report's changes.
            let events: Vec<Value> = stderr
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let event = |message: &str| {
                events
                    .iter()
                    .find(|e| e["message"] == message)
                    .unwrap_or_else(|| panic!("no {message:?} event in:\n{stderr}"))
            };
            assert!(event("planned")["plan_ms"].is_u64(), "{stderr}");
            let applied = event("applied");
            assert!(applied["apply_ms"].is_u64(), "{stderr}");
            assert_eq!(
                applied["applied"].as_u64(),
                report["changes"].as_array().map(|c| c.len() as u64),
                "{stderr}"
            );
        }
        (out.status.code().unwrap(), report)
    }

    async fn dump(&self) -> Value {
        let out = self.run(&["store", "dump"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn finish(self) {
        self.sim.shutdown().await;
    }
}

fn count(report: &Value, key: &str) -> u64 {
    report["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key} in {report}"))
}

fn user<'a>(dump: &'a Value, email: &str) -> &'a Value {
    dump["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"].as_str().unwrap().eq_ignore_ascii_case(email))
        .unwrap_or_else(|| panic!("no user {email} in {dump}"))
}

fn members(dump: &Value, team: &str) -> Vec<(String, String)> {
    let t = dump["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == team)
        .unwrap_or_else(|| panic!("no team {team}"));
    t["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_lowercase(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const REPORT_KEYS: [&str; 12] = [
    "users_created",
    "users_updated",
    "users_deactivated",
    "users_reactivated",
    "users_linked",
    "memberships_added",
    "memberships_removed",
    "roles_changed",
    "teams_linked",
    "teams_created",
    "skipped",
    "unmanaged",
];

both_backends!(
    first_sync_then_idempotent_second_sync,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        // Exactly the SPEC §4 shape.
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["changes", "counts", "error", "status", "warnings"]);
        let count_keys: Vec<&str> = r["counts"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = REPORT_KEYS.to_vec();
        expected.sort_unstable();
        let mut got = count_keys.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(r["status"], "ok");
        assert_eq!(r["error"], Value::Null);
        // alice, bob, carol created; dave (suspended) and erin (staged) not.
        assert_eq!(count(&r, "users_created"), 3, "{r}");
        assert_eq!(count(&r, "users_linked"), 1, "frank matched by email: {r}");
        assert_eq!(count(&r, "teams_linked"), 2);
        // Everyone x3 (created users), Engineering: alice+bob, Sales: bob+carol.
        assert_eq!(count(&r, "memberships_added"), 7, "{r}");
        assert_eq!(count(&r, "users_deactivated"), 0);
        // local@ stays unmanaged; Everyone is an unlinked team.
        assert_eq!(count(&r, "unmanaged"), 2, "{r}");
        let dump = w.dump().await;
        assert_eq!(
            user(&dump, "frank@corp.example")["okta_id"],
            w.ids.frank.as_str()
        );
        assert_eq!(user(&dump, "frank@corp.example")["last_name"], "Fisher");
        assert!(
            dump["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["email"] != "dave@corp.example")
        );
        let eng = members(&dump, "Engineering");
        assert!(
            eng.contains(&("alice@corp.example".into(), "admin".into())),
            "{eng:?}"
        );
        assert!(eng.contains(&("bob@corp.example".into(), "member".into())));
        assert!(
            eng.contains(&("local@corp.example".into(), "admin".into())),
            "unmanaged member kept"
        );
        assert!(
            members(&dump, "Everyone").contains(&("alice@corp.example".into(), "admin".into()))
        );
        // Second run: nothing to do.
        let (code, r2) = w.sync(&[]).await;
        assert_eq!(code, 0);
        for key in REPORT_KEYS
            .iter()
            .filter(|k| !matches!(**k, "skipped" | "unmanaged"))
        {
            assert_eq!(count(&r2, key), 0, "{key} in {r2}");
        }
        assert_eq!(r2["changes"], json!([]));
        assert_eq!(w.dump().await, dump);
        w.finish().await;
    }
);

both_backends!(
    a_day_of_changes_is_followed,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        w.write_config("[safety]\nmax_deactivations_percent = 100\n");
        assert_eq!(w.sync(&[]).await.0, 0);
        let ids = &w.ids;
        w.sim.org_mut(|o| {
            // Rename, email change, suspension, unsuspension, unassignment.
            o.set_user_attr(&ids.alice, "lastName", json!("Adams-Smith"))
                .unwrap();
            o.set_user_attr(&ids.carol, "email", json!("carol.clark@corp.example"))
                .unwrap();
            o.set_user_status(&ids.bob, UserStatus::Suspended).unwrap();
            o.set_user_status(&ids.dave, UserStatus::Active).unwrap();
            o.unassign_user(&ids.frank).unwrap();
            // Group changes: carol joins Engineering, the Sales group is renamed.
            o.add_member(&ids.eng, &ids.carol).unwrap();
            o.rename_group(&ids.sales, "Sales EMEA").unwrap();
            // Demotion and promotion.
            o.set_app_user_attr(&ids.alice, "writerRole", json!("member"))
                .unwrap();
            o.set_app_user_attr(&ids.carol, "writerRole", json!("ADMIN"))
                .unwrap();
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(count(&r, "users_updated"), 2, "{r}");
        assert_eq!(
            count(&r, "users_deactivated"),
            2,
            "bob suspended, frank unassigned: {r}"
        );
        assert_eq!(
            count(&r, "users_created"),
            1,
            "dave unsuspended, never created before: {r}"
        );
        let dump = w.dump().await;
        assert_eq!(
            user(&dump, "alice@corp.example")["last_name"],
            "Adams-Smith"
        );
        assert_eq!(
            user(&dump, "alice@corp.example")["display_name"],
            "Alice Adams-Smith"
        );
        assert_eq!(
            user(&dump, "carol.clark@corp.example")["okta_id"],
            ids.carol.as_str()
        );
        assert_eq!(user(&dump, "bob@corp.example")["active"], false);
        assert_eq!(user(&dump, "frank@corp.example")["active"], false);
        assert_eq!(user(&dump, "dave@corp.example")["active"], true);
        let eng = members(&dump, "Engineering");
        assert!(
            eng.contains(&("alice@corp.example".into(), "member".into())),
            "demoted: {eng:?}"
        );
        assert!(
            eng.contains(&("carol.clark@corp.example".into(), "admin".into())),
            "promoted: {eng:?}"
        );
        assert!(
            !eng.iter().any(|(e, _)| e == "bob@corp.example"),
            "suspended bob removed: {eng:?}"
        );
        // The renamed group keeps its team and its name.
        let sales = members(&dump, "Sales");
        assert_eq!(
            sales,
            vec![("carol.clark@corp.example".to_string(), "admin".to_string())]
        );
        assert!(
            members(&dump, "Everyone").contains(&("alice@corp.example".into(), "member".into()))
        );
        // Unsuspend bob: reactivated and back in his teams.
        w.sim
            .org_mut(|o| o.set_user_status(&ids.bob, UserStatus::Active).unwrap());
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0);
        assert_eq!(count(&r, "users_reactivated"), 1, "{r}");
        assert_eq!(count(&r, "memberships_added"), 2, "{r}");
        assert_eq!(w.sync(&[]).await.1["changes"], json!([]));
        w.finish().await;
    }
);

both_backends!(
    rehire_relinks_instead_of_duplicating,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        w.write_config("[safety]\nmax_deactivations_percent = 100\n");
        assert_eq!(w.sync(&[]).await.0, 0);
        let carol_old = w.ids.carol.clone();
        w.sim.org_mut(|o| o.delete_user(&carol_old).unwrap());
        let (_, r) = w.sync(&[]).await;
        assert_eq!(count(&r, "users_deactivated"), 1, "{r}");
        let new_id = w.sim.org_mut(|o| {
            let id = o.add_user(
                UserStatus::Active,
                profile("Carol", "Clark", "CAROL@corp.example"),
            );
            o.assign_user(&id, Map::new()).unwrap();
            id
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(count(&r, "users_created"), 0, "{r}");
        assert_eq!(count(&r, "users_linked"), 1, "{r}");
        assert_eq!(count(&r, "users_reactivated"), 1, "{r}");
        let dump = w.dump().await;
        let carols: Vec<&Value> = dump["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["email"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .starts_with("carol")
            })
            .collect();
        assert_eq!(carols.len(), 1, "{dump}");
        assert_eq!(carols[0]["okta_id"], new_id.as_str());
        assert_eq!(carols[0]["active"], true);
        w.finish().await;
    }
);

both_backends!(dry_run_writes_nothing, |db: common::TestDb| async move {
    let w = World::new(db).await;
    let before = w.dump().await;
    let (code, r) = w.sync(&["--dry-run"]).await;
    assert_eq!(code, 0);
    assert_eq!(r["status"], "dry_run");
    assert_eq!(count(&r, "users_created"), 3);
    // 3 created, frank linked and updated, 2 teams linked, 7 memberships.
    assert_eq!(
        r["changes"].as_array().unwrap().len() as u64,
        3 + 1 + 1 + 2 + 7
    );
    assert_eq!(w.dump().await, before);
    let history = w.run(&["history", "--json"]).await;
    assert_eq!(String::from_utf8_lossy(&history.stdout).trim(), "[]");
    // The human form prints the plan.
    let human = w.run(&["run", "--once", "--dry-run"]).await;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("dry run") && text.contains("user_created"),
        "{text}"
    );
    w.finish().await;
});

both_backends!(
    guard_blocks_then_force_applies_once,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        // Unassign everyone but alice: 3 of 4 active managed users deactivated.
        w.sim.org_mut(|o| {
            o.unassign_user(&w.ids.carol).unwrap();
            o.unassign_user(&w.ids.frank).unwrap();
            o.unassign_group(&w.ids.sales).unwrap();
            o.remove_member(&w.ids.eng, &w.ids.bob).unwrap();
        });
        let before = w.dump().await;
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 3, "{r}");
        assert_eq!(r["status"], "blocked");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("safety.max_deactivations_percent"),
            "{error}"
        );
        assert_eq!(w.dump().await, before, "a blocked run writes nothing");
        let (code, r) = w.sync(&["--force"]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(count(&r, "users_deactivated"), 3);
        // Forced once: the next run has nothing left to do.
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["changes"], json!([]));
        w.finish().await;
    }
);

both_backends!(
    okta_returning_nobody_is_blocked,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        w.write_config("[safety]\nmax_deactivations = 1000\nmax_deactivations_percent = 100\n");
        assert_eq!(w.sync(&[]).await.0, 0);
        w.sim.org_mut(|o| {
            for id in [
                &w.ids.alice,
                &w.ids.carol,
                &w.ids.dave,
                &w.ids.erin,
                &w.ids.frank,
            ] {
                o.unassign_user(id).unwrap();
            }
            o.unassign_group(&w.ids.eng).unwrap();
            o.unassign_group(&w.ids.sales).unwrap();
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 3, "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("zero in-scope users"),
            "{r}"
        );
        w.finish().await;
    }
);

both_backends!(
    a_failing_page_leaves_the_store_untouched,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let before = w.dump().await;
        w.sim.set_faults(vec![Fault::new(
            FaultTarget::route_page(Route::GroupMembers, 1),
            Times::Always,
            FaultKind::TruncatedBody,
        )]);
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 1, "{r}");
        assert_eq!(r["status"], "failed");
        assert!(
            r["error"].as_str().unwrap().contains("nothing was applied"),
            "{r}"
        );
        assert_eq!(w.dump().await, before);
        let history = w.run(&["history", "--json"]).await;
        let runs: Value = serde_json::from_slice(&history.stdout).unwrap();
        assert_eq!(runs[0]["status"], "failed");
        w.sim.set_faults(Vec::new());
        assert_eq!(w.sync(&[]).await.0, 0);
        w.finish().await;
    }
);

both_backends!(
    concurrent_runs_never_both_apply,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        // Slow Okta so the two runs overlap.
        w.sim
            .set_latency(Duration::from_millis(150), Duration::ZERO);
        let (a, b) = tokio::join!(w.sync(&[]), w.sync(&[]));
        let codes = [a.0, b.0];
        assert!(codes.contains(&0), "{a:?} {b:?}");
        let applied: Vec<&Value> = [&a.1, &b.1]
            .into_iter()
            .filter(|r| count(r, "users_created") > 0)
            .collect();
        assert_eq!(applied.len(), 1, "exactly one run applies: {a:?} {b:?}");
        if codes.contains(&1) {
            let failed = if a.0 == 1 { &a.1 } else { &b.1 };
            assert!(
                failed["error"].as_str().unwrap().contains("sync lock"),
                "{failed}"
            );
        }
        let dump = w.dump().await;
        assert_eq!(
            dump["users"].as_array().unwrap().len(),
            2 + 3,
            "no duplicates: {dump}"
        );
        w.finish().await;
    }
);

both_backends!(
    unknown_role_and_bad_okta_data_are_warnings,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        w.sim.org_mut(|o| {
            o.set_app_user_attr(&w.ids.carol, "writerRole", json!("superuser"))
                .unwrap();
            let twin = o.add_user(
                UserStatus::Active,
                profile("Al", "Twin", "ALICE@corp.example"),
            );
            o.assign_user(&twin, Map::new()).unwrap();
            let no_email = o.add_user(UserStatus::Active, profile("No", "Mail", ""));
            o.assign_user(&no_email, Map::new()).unwrap();
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        let warnings: Vec<&str> = r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            warnings
                .iter()
                .any(|m| m.contains(&w.ids.carol) && m.contains("superuser")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|m| m.contains(&w.ids.alice)),
            "{warnings:?}"
        );
        assert_eq!(count(&r, "skipped"), 3, "two alices + no email: {r}");
        let dump = w.dump().await;
        assert!(
            dump["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["email"] != "alice@corp.example")
        );
        assert!(members(&dump, "Sales").contains(&("carol@corp.example".into(), "member".into())));
        w.finish().await;
    }
);

#[tokio::test]
async fn exit_code_2_for_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[okta]\norg_url = \"https://a.okta.com\"\napp_id = \"0oa1\"\nbogus = 1\n",
    )
    .unwrap();
    let out = common::checked_output(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .args(["run", "--once"]),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("okta.bogus") && stderr.contains("c.toml"),
        "{stderr}"
    );
    // No credential at all: also a config error.
    std::fs::write(
        &path,
        "[okta]\norg_url = \"https://a.okta.com\"\napp_id = \"0oa1\"\n",
    )
    .unwrap();
    let out = common::checked_output(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .args(["run", "--once"])
            .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY"),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
