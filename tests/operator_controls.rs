//! Operator controls (SPEC §8) end to end: the real binary against the Okta
//! simulator and both stores: `pause`/`resume`, `audit`, and the
//! deactivation grace (`safety.deactivate_after`). (`plan -o`, `apply` and
//! `revert` are in `controls.rs`.)

mod common;

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Map, Value, json};

use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{SimHandle, SimOptions, Simulator};
use writer_sync::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

fn profile(first: &str, last: &str, email: &str) -> Map<String, Value> {
    let Value::Object(m) =
        json!({"login": email, "email": email, "firstName": first, "lastName": last})
    else {
        unreachable!()
    };
    m
}

struct Ids {
    alice: String,
    bob: String,
}

/// Alice, Bob and Carol assigned to the app; Engineering (Alice, Bob)
/// pushed and linked by name on the first sync.
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
    let eng = org.add_group("Engineering", None);
    for u in [&alice, &bob] {
        org.add_member(&eng, u).unwrap();
    }
    for u in [&alice, &bob, &carol] {
        org.assign_user(u, Map::new()).unwrap();
    }
    org.assign_group(&eng, 1, Map::new()).unwrap();
    (org, Ids { alice, bob })
}

struct World {
    sim: SimHandle,
    db: common::TestDb,
    dir: tempfile::TempDir,
    ids: Ids,
}

impl World {
    async fn new(db: common::TestDb, extra: &str) -> World {
        let (org, ids) = test_org();
        let sim = Simulator::start(org, SimOptions::default()).await.unwrap();
        let world = World {
            sim,
            db,
            dir: tempfile::tempdir().unwrap(),
            ids,
        };
        world.write_config(extra);
        std::fs::write(
            world.dir.path().join("seed.json"),
            r#"{"users": [], "teams": [{"name": "Engineering", "okta_group_id": null, "members": []}]}"#,
        )
        .unwrap();
        let out = world.run(&["store", "load", "seed.json"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        world
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{}\"\nrequest_timeout = \"5s\"\n\n[store]\nurl = \"{}\"\nwrites_per_second = 0\n\n[log]\nformat = \"json\"\n\n[safety]\nmax_deactivations_percent = 100\n{extra}",
            self.sim.url().as_str().trim_end_matches('/'),
            self.sim.app_id(),
            self.db.config_url,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Runs the binary; store-only commands get no Okta credential.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("RUST_LOG")
            .env("USER", "oncall")
            .env_remove("WRITER_SYNC_OKTA_API_TOKEN");
        if args.first() == Some(&"run") {
            cmd.env("WRITER_SYNC_OKTA_API_TOKEN", self.sim.token());
        }
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
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}\n{}", stderr(&out));
        (
            out.status.code().unwrap(),
            serde_json::from_str(lines[0]).unwrap(),
        )
    }

    /// A store-only command that must succeed: its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn dump(&self) -> Value {
        serde_json::from_str(&self.ok(&["store", "dump"]).await).unwrap()
    }

    async fn store(&self) -> Store {
        Store::connect(&self.db.url).await.unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn active(dump: &Value, email: &str) -> Option<bool> {
    dump["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .map(|u| u["active"].as_bool().unwrap())
}

both_backends!(
    a_paused_run_applies_nothing_until_resume,
    |db: common::TestDb| async move {
        let w = World::new(db, "").await;
        let before = w.dump().await;
        let said = w.ok(&["pause", "--reason", "Okta import went wrong"]).await;
        assert!(said.contains("paused by oncall@"), "{said}");

        // Observes and plans, applies nothing: exit 3, status paused, the
        // reason in the report.
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 3, "{r}");
        assert_eq!(r["status"], "paused");
        assert_eq!(r["counts"]["users_created"], 3, "the plan's counts: {r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("Okta import went wrong"), "{error}");
        assert!(error.contains("writer-sync resume"), "{error}");
        assert_eq!(r["paused"]["by"], "oncall");
        assert_eq!(r["paused"]["reason"], "Okta import went wrong");
        assert_eq!(w.dump().await, before, "a paused run changed the store");
        let store = w.store().await;
        let run = &store.recent_runs(1).await.unwrap()[0];
        assert_eq!(run.status, "paused");
        assert_eq!(run.counts.as_ref().unwrap()["users_created"], 3);
        assert!(store.audit_of_run(run.id).await.unwrap().is_empty());

        // A dry run while paused stays a dry run (and says so).
        let (code, r) = w.sync(&["--dry-run"]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["status"], "dry_run");
        assert!(r["error"].as_str().unwrap().contains("paused"), "{r}");

        // Pausing again replaces the reason, and says so.
        let said = w.ok(&["pause", "--reason", "still looking"]).await;
        assert!(said.contains("already paused"), "{said}");
        assert!(said.contains("Okta import went wrong"), "{said}");
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 3);
        assert!(
            r["error"].as_str().unwrap().contains("still looking"),
            "{r}"
        );

        // History shows the pauses beside the runs (text and JSON).
        let text = w.ok(&["history"]).await;
        assert!(text.contains("pause"), "{text}");
        assert!(text.contains("still looking"), "{text}");
        let history: Value = serde_json::from_str(&w.ok(&["history", "--json"]).await).unwrap();
        let events: Vec<&Value> = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i.get("event").is_some())
            .collect();
        assert_eq!(events.len(), 2, "{history}");
        assert_eq!(events[0]["reason"], "still looking");
        assert_eq!(events[0]["by"], "oncall");

        // Resume, then a run applies.
        let said = w.ok(&["resume"]).await;
        assert!(said.starts_with("resumed"), "{said}");
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["status"], "ok");
        assert_eq!(r["counts"]["users_created"], 3);
        assert!(r.get("paused").is_none(), "{r}");
        assert_eq!(active(&w.dump().await, "alice@corp.example"), Some(true));
        let said = w.ok(&["resume"]).await;
        assert!(said.contains("not paused"), "{said}");

        // Each pause and resume wrote one audit row (none for the no-op).
        let controls: Vec<String> = store
            .audit_log()
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.run_id.is_none() && a.target == "store")
            .map(|a| a.action)
            .collect();
        assert_eq!(controls, ["pause", "pause", "resume"]);
        let history: Value = serde_json::from_str(&w.ok(&["history", "--json"]).await).unwrap();
        assert_eq!(history[1]["event"], "resume", "{history}");
        store.close().await;
        w.sim.shutdown().await;
    }
);

both_backends!(
    audit_answers_why_was_alice_deactivated,
    |db: common::TestDb| async move {
        let w = World::new(db, "").await;
        let (code, first) = w.sync(&[]).await;
        assert_eq!(code, 0, "{first}");
        // Alice leaves: unassigned, and out of the group that also assigns
        // the app.
        w.sim.org_mut(|o| {
            o.unassign_user(&w.ids.alice).unwrap();
            let eng = o.group_ids_named("Engineering")[0].clone();
            o.remove_member(&eng, &w.ids.alice).unwrap();
        });
        // A name that would reorder a terminal line if printed raw.
        w.sim.org_mut(|o| {
            o.set_user_attr(&w.ids.bob, "lastName", json!("B\u{202e}rown"))
                .unwrap()
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["counts"]["users_deactivated"], 1, "{r}");
        let store = w.store().await;
        let run_id = store.recent_runs(1).await.unwrap()[0].id;

        // Any case of the email; JSON lines, newest first.
        let lines = w
            .ok(&["audit", "--user", "ALICE@corp.example", "--json"])
            .await;
        let rows: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let deactivated = rows
            .iter()
            .find(|r| r["action"] == "user_deactivated")
            .unwrap_or_else(|| panic!("no deactivation in {lines}"));
        assert_eq!(deactivated["run_id"], run_id);
        assert_eq!(deactivated["trigger"], "once");
        assert_eq!(deactivated["status"], "ok");
        assert_eq!(deactivated["before"], json!({"active": true}));
        assert_eq!(deactivated["after"]["active"], false);
        assert!(deactivated["after"]["reason"].is_string(), "{deactivated}");
        // Newest first: the deactivation run's rows before the creation's.
        let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|p| p[0] > p[1]), "{ids:?}");
        assert!(rows.iter().any(|r| r["action"] == "user_created"));
        assert!(
            rows.iter()
                .all(|r| r["target"].as_str().unwrap().starts_with("alice@")),
            "{lines}"
        );

        // Filters combine: alice in Engineering, in that run.
        let run = run_id.to_string();
        let lines = w
            .ok(&[
                "audit",
                "--user",
                "alice@corp.example",
                "--team",
                "engineering",
                "--run",
                &run,
                "--json",
            ])
            .await;
        let rows: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 1, "{lines}");
        assert_eq!(rows[0]["action"], "membership_removed");
        assert_eq!(rows[0]["target"], "alice@corp.example in Engineering");

        // --team alone: the team link and every membership row.
        let lines = w.ok(&["audit", "--team", "Engineering", "--json"]).await;
        let actions: Vec<String> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(actions.contains(&"team_linked".to_owned()), "{actions:?}");
        assert_eq!(
            actions.iter().filter(|a| *a == "membership_added").count(),
            2,
            "{actions:?}"
        );

        // --since and --limit.
        assert_eq!(
            w.ok(&["audit", "--since", "1h", "--limit", "2", "--json"])
                .await
                .lines()
                .count(),
            2
        );
        let old = w.ok(&["audit", "--since", "0s"]).await;
        assert_eq!(old.trim(), "no audit rows match");
        let bad = w.run(&["audit", "--since", "soon"]).await;
        assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

        // Text: one escaped line per row; Okta's values cannot reorder it.
        let text = w
            .ok(&["audit", "--user", "bob@corp.example", "--run", &run])
            .await;
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(text.contains("\\u{202e}"), "{text}");
        assert!(text.contains("action=\"user_updated\""), "{text}");
        assert!(
            text.contains(&format!("run={run_id} trigger=\"once\" status=\"ok\"")),
            "{text}"
        );
        store.close().await;
        w.sim.shutdown().await;
    }
);

fn pending(report: &Value) -> Vec<Value> {
    report
        .get("pending_deactivations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

both_backends!(
    the_deactivation_grace_spares_a_user_who_comes_back_and_deactivates_one_who_does_not,
    |db: common::TestDb| async move {
        let w = World::new(db, "deactivate_after = \"4s\"\n").await;
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert!(pending(&r).is_empty(), "{r}");
        let eng = w.sim.org(|o| o.group_ids_named("Engineering")[0].clone());
        let leave = || {
            w.sim.org_mut(|o| {
                o.unassign_user(&w.ids.bob).unwrap();
                o.remove_member(&eng, &w.ids.bob).unwrap();
            })
        };
        let store = w.store().await;

        // Bob leaves: waits, keeps his team, and the report says until when.
        leave();
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["counts"]["users_deactivated"], 0, "{r}");
        assert_eq!(r["counts"]["memberships_removed"], 0, "{r}");
        let first = pending(&r);
        assert_eq!(first.len(), 1, "{r}");
        assert_eq!(first[0]["email"], "bob@corp.example");
        let since = first[0]["missing_since"].as_i64().unwrap();
        assert_eq!(first[0]["deactivate_at"].as_i64().unwrap(), since + 4000);
        assert!(
            r["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m.as_str().unwrap().contains("bob@corp.example")),
            "{r}"
        );
        assert_eq!(
            store.missing_since().await.unwrap().get(&w.ids.bob),
            Some(&since)
        );

        // Back within the grace: never deactivated, and forgotten.
        w.sim.org_mut(|o| {
            o.assign_user(&w.ids.bob, Map::new()).unwrap();
            o.add_member(&eng, &w.ids.bob).unwrap();
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert!(pending(&r).is_empty(), "{r}");
        assert!(store.missing_since().await.unwrap().is_empty());
        assert_eq!(active(&w.dump().await, "bob@corp.example"), Some(true));

        // Leaves again: the grace starts over.
        leave();
        let (_, r) = w.sync(&[]).await;
        let again = pending(&r)[0]["missing_since"].as_i64().unwrap();
        assert!(again > since, "{again} <= {since}");
        let (_, r) = w.sync(&[]).await;
        assert_eq!(pending(&r)[0]["missing_since"].as_i64().unwrap(), again);
        assert_eq!(active(&w.dump().await, "bob@corp.example"), Some(true));

        // Past the grace: deactivated and out of the team, then forgotten.
        let wait = again + 4200 - writer_sync::store::now_ms();
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["counts"]["users_deactivated"], 1, "{r}");
        assert_eq!(r["counts"]["memberships_removed"], 1, "{r}");
        assert!(pending(&r).is_empty(), "{r}");
        assert_eq!(active(&w.dump().await, "bob@corp.example"), Some(false));
        assert!(store.missing_since().await.unwrap().is_empty());

        // Suspended in Okta: deactivated at once, grace or not.
        w.sim.org_mut(|o| {
            o.set_user_status(&w.ids.alice, UserStatus::Suspended)
                .unwrap()
        });
        let (code, r) = w.sync(&[]).await;
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["counts"]["users_deactivated"], 1, "{r}");
        assert_eq!(active(&w.dump().await, "alice@corp.example"), Some(false));
        assert!(pending(&r).is_empty(), "{r}");
        store.close().await;
        w.sim.shutdown().await;
    }
);
