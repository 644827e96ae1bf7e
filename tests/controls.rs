//! End to end, SPEC §8 operator controls: reviewed plans (`plan -o FILE`,
//! `apply FILE`) and `revert RUN_ID`, the real binary against the Okta
//! simulator and both stores.

mod common;

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Map, Value, json};

use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{SimHandle, SimOptions, Simulator};
use writer_sync::model::Change;
use writer_sync::reconcile::planfile::{PlanFile, changes_checksum};

const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

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

struct Ids {
    bob: String,
    gina: String,
    eng: String,
}

/// Okta: alice (admin) and carol are new to Writer, bob is in Writer with an
/// old first name and an admin role Okta does not give him, frank matches an
/// unmanaged Writer user by email, gina is inactive in Writer; Engineering is
/// linked, Sales is a Writer team to link by name, Marketing is new.
fn test_org() -> (Org, Ids) {
    let mut org = Org::new(SimApp {
        id: "0oawriterapp".into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let mut add =
        |first: &str, email: &str| org.add_user(UserStatus::Active, profile(first, "Okta", email));
    let alice = add("Alice", "alice@corp.example");
    let bob = add("Bob", "bob@corp.example");
    let carol = add("Carol", "carol@corp.example");
    let frank = add("Frank", "frank@corp.example");
    let gina = add("Gina", "gina@corp.example");
    let eng = org.add_group("Engineering", None);
    let sales = org.add_group("Sales", None);
    let marketing = org.add_group("Marketing", None);
    for (g, u) in [
        (&eng, &alice),
        (&eng, &bob),
        (&sales, &carol),
        (&marketing, &frank),
    ] {
        org.add_member(g, u).unwrap();
    }
    org.assign_user(&alice, role("admin")).unwrap();
    for u in [&carol, &frank, &gina] {
        org.assign_user(u, Map::new()).unwrap();
    }
    for (n, g) in [&eng, &sales, &marketing].into_iter().enumerate() {
        org.assign_group(g, n as u32 + 1, Map::new()).unwrap();
    }
    (org, Ids { bob, gina, eng })
}

fn seed(ids: &Ids) -> String {
    json!({
        "users": [
            {"email": "bob@corp.example", "okta_id": ids.bob, "first_name": "Robert", "last_name": "Okta", "display_name": "Robert Okta", "active": true},
            {"email": "gina@corp.example", "okta_id": ids.gina, "first_name": "Gina", "last_name": "Okta", "display_name": "Gina Okta", "active": false},
            {"email": "hank@corp.example", "okta_id": "00uhankgone", "first_name": "Hank", "last_name": "Gone", "display_name": "Hank Gone", "active": true},
            {"email": "Frank@Corp.example", "okta_id": null, "first_name": "Frank", "last_name": "Okta", "display_name": "Frank Okta", "active": true},
            {"email": "local@corp.example", "okta_id": null, "first_name": "Local", "last_name": "Only", "display_name": "Local Only", "active": true}
        ],
        "teams": [
            {"name": "Engineering", "okta_group_id": ids.eng, "members": [
                {"email": "bob@corp.example", "role": "admin"},
                {"email": "gina@corp.example", "role": "member"},
                {"email": "local@corp.example", "role": "admin"}
            ]},
            {"name": "Everyone", "okta_group_id": null, "members": []},
            {"name": "Sales", "okta_group_id": null, "members": []}
        ]
    })
    .to_string()
}

struct World {
    sim: SimHandle,
    db: common::TestDb,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(db: common::TestDb) -> World {
        let (org, ids) = test_org();
        let sim = Simulator::start(org, SimOptions::default()).await.unwrap();
        let world = World {
            sim,
            db,
            dir: tempfile::tempdir().unwrap(),
        };
        let text = format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n[store]\nurl = \"{}\"\nwrites_per_second = 0\n\n[sync]\ndefault_team = \"Everyone\"\n\n[teams]\ncreate_missing = true\n\n[log]\nformat = \"json\"\n",
            world.sim.url().as_str().trim_end_matches('/'),
            world.sim.app_id(),
            world.db.config_url,
        );
        std::fs::write(world.dir.path().join("config.toml"), text).unwrap();
        std::fs::write(world.path("seed.json"), seed(&ids)).unwrap();
        let out = world.run(&["store", "load", "seed.json"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path("config.toml"))
            .args(args)
            .env("WRITER_SYNC_OKTA_API_TOKEN", self.sim.token())
            .env_remove("RUST_LOG");
        let token = self.sim.token().to_owned();
        tokio::task::spawn_blocking(move || common::checked_output(&mut cmd, &[&token]))
            .await
            .unwrap()
    }

    /// Runs a command with `--json`: exit code and the one JSON report
    /// (`Null` when stdout is empty, as for a refusal).
    async fn json(&self, args: &[&str]) -> (i32, Value, String) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let report = match stdout.lines().collect::<Vec<_>>()[..] {
            [] => Value::Null,
            [line] => serde_json::from_str(line).unwrap(),
            _ => panic!("stdout must be one JSON object:\n{stdout}"),
        };
        (out.status.code().unwrap(), report, stderr(&out))
    }

    async fn dump(&self) -> Value {
        let out = self.run(&["store", "dump"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn history(&self) -> Vec<Value> {
        let out = self.run(&["history", "--json", "--limit", "100"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        // The runs only: pauses and resumes are listed among them.
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry.get("event").is_none())
            .cloned()
            .collect()
    }

    /// `run --once --dry-run`: the changes a sync would make now.
    async fn pending(&self) -> Vec<Value> {
        let (code, r, err) = self.json(&["run", "--once", "--dry-run"]).await;
        assert_eq!(code, 0, "{r}\n{err}");
        r["changes"].as_array().unwrap().clone()
    }

    async fn plan(&self, name: &str) -> PlanFile {
        let out = self.run(&["plan", "-o", name]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("plan written to"), "{text}");
        serde_json::from_str(&std::fs::read_to_string(self.path(name)).unwrap()).unwrap()
    }

    async fn finish(self) {
        self.sim.shutdown().await;
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn kinds(changes: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = changes
        .iter()
        .map(|c| c["action"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k.dedup();
    k
}

const EVERY_KIND: [&str; 10] = [
    "membership_added",
    "membership_removed",
    "role_changed",
    "team_created",
    "team_linked",
    "user_created",
    "user_deactivated",
    "user_linked",
    "user_reactivated",
    "user_updated",
];

both_backends!(
    a_plan_file_applies_once_then_is_stale,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let before = w.dump().await;
        let expected = w.pending().await;
        let file = w.plan("plan.json").await;
        // The plan is what a dry run plans; nothing was applied.
        assert_eq!(w.dump().await, before);
        assert!(w.history().await.is_empty(), "plan records no run");
        assert_eq!(file.report["status"], "dry_run");
        assert_eq!(file.report["changes"].as_array().unwrap(), &expected);
        assert_eq!(file.changes.len(), expected.len());
        assert_eq!(file.changes_sha256, changes_checksum(&file.changes));
        assert_eq!(file.store.users, 5);
        assert_eq!(file.okta.app_id.as_deref(), Some("0oawriterapp"));
        assert_eq!(file.okta.users_in_scope, 5);
        assert_eq!(file.writer_sync_version, env!("CARGO_PKG_VERSION"));
        // Deactivating hank is half the active managed users: a run would
        // be blocked, and the plan file says so.
        assert!(file.guard.would_block, "{:?}", file.guard);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(w.path("plan.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // --dry-run checks and shows, writes nothing.
        let (code, r, err) = w.json(&["apply", "plan.json", "--dry-run"]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(r["status"], "dry_run");
        assert_eq!(r["changes"].as_array().unwrap(), &expected);
        assert_eq!(w.dump().await, before);
        assert!(w.history().await.is_empty());

        // Applied: exactly those changes, one run, no guard.
        let (code, r, err) = w.json(&["apply", "plan.json"]).await;
        assert_eq!(code, 0, "{r}\n{err}");
        assert_eq!(r["status"], "ok");
        assert_eq!(r["changes"].as_array().unwrap(), &expected);
        assert!(
            r["warnings"][0]
                .as_str()
                .unwrap()
                .starts_with("applied without the safety guard, which would block this plan"),
            "{r}"
        );
        let runs = w.history().await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["trigger"], "plan_file");
        assert_eq!(runs[0]["status"], "ok");
        assert!(w.pending().await.is_empty(), "the plan converged the store");
        let applied = w.dump().await;
        assert_ne!(applied, before);

        // The same file again: stale, exit 4, nothing written.
        let (code, r, err) = w.json(&["apply", "plan.json"]).await;
        assert_eq!(code, 4, "{r}\n{err}");
        assert_eq!(r, Value::Null);
        assert!(err.contains("the plan is stale"), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
        assert_eq!(w.dump().await, applied);
        assert_eq!(w.history().await.len(), 1, "a refusal records no run");
        w.finish().await;
    }
);

both_backends!(
    an_edited_plan_file_is_refused,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let before = w.dump().await;
        let file = w.plan("plan.json").await;
        let text = std::fs::read_to_string(w.path("plan.json")).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let role_change = v["changes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["action"] == "role_changed")
            .expect("the plan changes bob's role");
        role_change["to"] = json!("admin");
        std::fs::write(w.path("edited.json"), v.to_string()).unwrap();
        let (code, _, err) = w.json(&["apply", "edited.json"]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("the plan file was edited"), "{err}");
        assert_eq!(w.dump().await, before);
        assert!(w.history().await.is_empty());

        // With its checksum forged, a change that does not apply to the
        // store is still refused by name (bob's role is not member).
        let mut forged = file.clone();
        for c in &mut forged.changes {
            if let Change::ChangeRole { from, .. } = c {
                *from = writer_sync::model::Role::Member;
            }
        }
        forged.changes_sha256 = changes_checksum(&forged.changes);
        std::fs::write(
            w.path("forged.json"),
            serde_json::to_string(&forged).unwrap(),
        )
        .unwrap();
        let (code, _, err) = w.json(&["apply", "forged.json"]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("no longer apply"), "{err}");
        assert!(
            err.contains("role_changed bob@corp.example in Engineering"),
            "{err}"
        );
        assert_eq!(w.dump().await, before);

        // Not a plan file at all: a usage error.
        std::fs::write(w.path("junk.json"), "{\"users\": []}").unwrap();
        let (code, _, err) = w.json(&["apply", "junk.json"]).await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("is not a writer-sync plan file"), "{err}");
        assert!(w.history().await.is_empty());
        w.finish().await;
    }
);

both_backends!(
    a_plan_is_stale_after_an_unrelated_store_change,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        w.plan("plan.json").await;
        // Someone adds an unmanaged user no change of the plan is about.
        std::fs::write(
            w.path("more.json"),
            r#"{"users": [{"email": "new.hire@corp.example", "okta_id": null, "first_name": "N", "last_name": "H", "display_name": "N H", "active": true}], "teams": []}"#,
        )
        .unwrap();
        let out = w.run(&["store", "load", "more.json"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let before = w.dump().await;
        for args in [
            &["apply", "plan.json", "--dry-run"][..],
            &["apply", "plan.json"],
        ] {
            let (code, _, err) = w.json(args).await;
            assert_eq!(code, 4, "{err}");
            assert!(err.contains("the plan is stale"), "{err}");
            assert!(err.contains("it had 5 users"), "{err}");
        }
        assert_eq!(w.dump().await, before);
        assert!(w.history().await.is_empty());
        w.finish().await;
    }
);

/// The store with the members of one team left out (the default team is
/// joined only at creation, so a reactivation does not bring it back).
fn without_team_members(dump: &Value, team: &str) -> Value {
    let mut d = dump.clone();
    for t in d["teams"].as_array_mut().unwrap() {
        if t["name"] == team {
            t["members"] = json!([]);
        }
    }
    d
}

both_backends!(
    revert_of_every_change_kind_then_of_the_revert,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        let seeded = w.dump().await;
        let (code, r, err) = w.json(&["run", "--once", "--force"]).await;
        assert_eq!(code, 0, "{r}\n{err}");
        let changes = r["changes"].as_array().unwrap().clone();
        assert_eq!(kinds(&changes), EVERY_KIND, "{r}");
        let synced = w.dump().await;
        let run_a = w.history().await[0]["id"].as_i64().unwrap().to_string();

        // --dry-run prints the inverse and writes nothing.
        let (code, dry, err) = w.json(&["revert", &run_a, "--dry-run"]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(dry["status"], "dry_run");
        assert_eq!(w.dump().await, synced);
        assert_eq!(w.history().await.len(), 1);

        let (code, r1, err) = w.json(&["revert", &run_a]).await;
        assert_eq!(code, 0, "{r1}\n{err}");
        assert_eq!(r1["status"], "ok");
        assert_eq!(r1["changes"], dry["changes"]);
        let warnings: Vec<&str> = r1["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert!(
            warnings[0].starts_with(&format!("this run reverts run {run_a}")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("the next sync re-applies Okta's view"))
        );
        for kept in ["team_created Marketing", "team_linked Sales", "user_linked"] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("kept: {kept}"))),
                "{kept}: {warnings:?}"
            );
        }
        // Every inverted change, and only those kinds.
        let r1_changes = r1["changes"].as_array().unwrap();
        let inverted = changes
            .iter()
            .filter(|c| {
                !["team_created", "team_linked", "user_linked"]
                    .contains(&c["action"].as_str().unwrap())
            })
            .count();
        assert_eq!(r1_changes.len(), inverted);
        assert_eq!(
            kinds(r1_changes),
            [
                "membership_added",
                "membership_removed",
                "role_changed",
                "user_deactivated",
                "user_reactivated",
                "user_updated",
            ]
        );
        let reverted = w.dump().await;
        // Back to the seed, except what is kept: frank's link (and the
        // attributes it brought are reverted), the Sales link, Marketing,
        // and the users created, now inactive.
        let user = |d: &Value, email: &str| {
            d["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["email"].as_str().unwrap().eq_ignore_ascii_case(email))
                .cloned()
                .unwrap()
        };
        for email in [
            "bob@corp.example",
            "gina@corp.example",
            "hank@corp.example",
            "local@corp.example",
        ] {
            assert_eq!(user(&reverted, email), user(&seeded, email), "{email}");
        }
        assert_eq!(user(&reverted, "alice@corp.example")["active"], false);
        assert_eq!(user(&reverted, "carol@corp.example")["active"], false);
        let team = |d: &Value, name: &str| {
            d["teams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .cloned()
                .unwrap()
        };
        assert_eq!(team(&reverted, "Engineering"), team(&seeded, "Engineering"));
        assert_eq!(team(&reverted, "Everyone")["members"], json!([]));
        assert_eq!(team(&reverted, "Marketing")["members"], json!([]));
        let runs = w.history().await;
        assert_eq!(runs[0]["trigger"], "revert");
        let run_r1 = runs[0]["id"].as_i64().unwrap().to_string();

        // Reverting the revert restores the store it reverted, exactly; a
        // revert is an operator's act, so a pause does not hold it back,
        // and its warning says the pause keeps it.
        let out = w.run(&["pause", "--reason", "incident"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let (code, r2, err) = w.json(&["revert", &run_r1]).await;
        assert_eq!(code, 0, "{r2}\n{err}");
        assert_eq!(r2["status"], "ok");
        assert_eq!(w.dump().await, synced);
        assert!(
            r2["warnings"].as_array().unwrap().iter().any(|w| w
                .as_str()
                .unwrap()
                .starts_with("the store is paused, so the revert stays")),
            "{r2}"
        );
        let run_r2 = w.history().await[0]["id"].as_i64().unwrap().to_string();
        // The first revert cannot be applied twice: the store moved on.
        let (code, _, err) = w.json(&["revert", &run_r1]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("the store has moved on"), "{err}");
        assert!(err.contains("user_reactivated"), "{err}");
        assert_eq!(w.dump().await, synced);
        // And reverting that brings the first revert back.
        let (code, _, err) = w.json(&["revert", &run_r2]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(w.dump().await, reverted);

        let out = w.run(&["resume"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        // A full sync brings Okta's view back and converges.
        let (code, r, err) = w.json(&["run", "--once", "--force"]).await;
        assert_eq!(code, 0, "{r}\n{err}");
        assert!(w.pending().await.is_empty());
        assert_eq!(
            without_team_members(&w.dump().await, "Everyone"),
            without_team_members(&synced, "Everyone")
        );
        w.finish().await;
    }
);

both_backends!(
    revert_refuses_runs_it_cannot_undo,
    |db: common::TestDb| async move {
        let w = World::new(db).await;
        // Unknown run: a usage error.
        let (code, _, err) = w.json(&["revert", "999"]).await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("there is no run 999"), "{err}");
        // A blocked run applied nothing.
        let (code, _, _) = w.json(&["run", "--once"]).await;
        assert_eq!(code, 3);
        let blocked = w.history().await[0]["id"].as_i64().unwrap().to_string();
        let (code, _, err) = w.json(&["revert", &blocked]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("is `blocked`, not `ok`"), "{err}");
        // A failed run (Okta refused the token) applied nothing either.
        w.sim.set_forbidden(true);
        let (code, _, _) = w.json(&["run", "--once"]).await;
        assert_eq!(code, 1);
        w.sim.set_forbidden(false);
        let failed = w.history().await[0]["id"].as_i64().unwrap().to_string();
        let (code, _, err) = w.json(&["revert", &failed]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("is `failed`, not `ok`"), "{err}");
        // An applied run the store has moved past for one user.
        let (code, _, _) = w.json(&["run", "--once", "--force"]).await;
        assert_eq!(code, 0);
        let applied = w.history().await[0]["id"].as_i64().unwrap().to_string();
        w.sim.org_mut(|o| {
            let alice = o
                .user_ids()
                .into_iter()
                .find(|id| o.user_profile(id).unwrap()["email"] == "alice@corp.example")
                .unwrap();
            o.set_user_status(&alice, UserStatus::Suspended).unwrap();
        });
        let (code, r, _) = w.json(&["run", "--once", "--force"]).await;
        assert_eq!(code, 0, "{r}");
        let before = w.dump().await;
        let (code, _, err) = w.json(&["revert", &applied]).await;
        assert_eq!(code, 4, "{err}");
        // The inverse of creating alice is deactivating her: she is inactive.
        assert!(
            err.contains("(user_deactivated alice@corp.example): user "),
            "{err}"
        );
        assert!(err.contains("is already inactive"), "{err}");
        assert_eq!(w.dump().await, before);
        // A run with no changes has nothing to revert.
        let (code, _, _) = w.json(&["run", "--once"]).await;
        assert_eq!(code, 0);
        let empty = w.history().await[0]["id"].as_i64().unwrap().to_string();
        let (code, _, err) = w.json(&["revert", &empty]).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("applied no changes"), "{err}");
        w.finish().await;
    }
);
