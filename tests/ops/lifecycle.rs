//! How runs end and what the operator is told: a stop request is
//! `interrupted` (not `failed`), a refused reload shows in systemd's
//! STATUS, a blocked run says how to proceed, a closed stdout ends a
//! command quietly, and `store load` logs a sentence.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use okta_sim::org::{Org, UserStatus};
use okta_sim::{SimHandle, SimOptions, Simulator};
use writer_sync::store::Store;

use crate::common;
use crate::support::{Notify, Proc, free_port, sim_config, writer_sync};

struct Setup {
    sim: SimHandle,
    db: common::TestDb,
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    async fn new(db: common::TestDb) -> Setup {
        let sim = Simulator::start(Org::sample(), SimOptions::default())
            .await
            .unwrap();
        Setup {
            sim,
            db,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    fn token(&self) -> &str {
        self.sim.token()
    }

    /// Writes the config (schedule `never` in practice: once a year).
    fn config(&self, run_on_start: bool, edit: impl Fn(String) -> String) -> std::path::PathBuf {
        let path = self.dir.path().join("config.toml");
        let text = sim_config(
            &self.sim,
            &self.db.config_url,
            "0 0 1 1 *",
            run_on_start,
            self.port,
        );
        common::write_file_mode(&path, &edit(text), 0o600);
        path
    }

    /// Waits until the store has a run in progress (the daemon or
    /// `run --once` is past its start, in the middle of the run).
    async fn wait_running(&self) {
        let store = Store::connect(&self.db.url).await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let runs = store.recent_runs(1).await.unwrap();
            if runs.first().is_some_and(|r| r.status == "running") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no run started: {runs:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.close().await;
    }

    async fn runs(&self) -> Vec<writer_sync::store::RunRecord> {
        let store = Store::connect(&self.db.url).await.unwrap();
        let runs = store.recent_runs(10).await.unwrap();
        store.close().await;
        runs
    }
}

/// The JSON log lines with this message.
fn log_events(stderr: &str, message_prefix: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message_prefix))
        })
        .collect()
}

crate::both_backends!(
    sigterm_in_the_middle_of_a_daemon_run_records_it_as_interrupted_not_failed,
    |db: common::TestDb| async move {
        // Issue #15: a deploy's SIGTERM recorded the run as `failed`, which
        // counted in runs_total{status="failed"} and paged people.
        let s = Setup::new(db).await;
        s.sim
            .set_latency(Duration::from_millis(700), Duration::ZERO);
        let config = s.config(true, |t| t);
        let d = Proc::spawn(&mut writer_sync(&config, s.token(), &["run"]), &[s.token()]);
        s.wait_running().await;
        d.signal("TERM");
        let (code, _, stderr) = d.wait_exit(Duration::from_secs(40));
        assert_eq!(code, Some(0), "{stderr}");
        let runs = s.runs().await;
        assert_eq!(runs[0].status, "interrupted", "{runs:?}");
        assert!(
            runs[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("stopped by request")),
            "{runs:?}"
        );
        assert!(runs.iter().all(|r| r.status != "failed"), "{runs:?}");
        // Logged as a warning, with its status.
        let finished = log_events(&stderr, "sync finished");
        assert_eq!(finished.len(), 1, "{stderr}");
        assert_eq!(finished[0]["status"], "interrupted");
        assert_eq!(finished[0]["level"], "WARN");
        // `history` shows it, in both forms.
        s.sim.set_latency(Duration::ZERO, Duration::ZERO);
        let out = common::checked_output(
            &mut writer_sync(&config, s.token(), &["history", "--json"]),
            &[s.token()],
        );
        let history: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(history[0]["status"], "interrupted", "{history}");
        let out = common::checked_output(
            &mut writer_sync(&config, s.token(), &["history"]),
            &[s.token()],
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(" interrupted "), "{table}");
        s.sim.shutdown().await;
    }
);

crate::both_backends!(
    sigterm_during_run_once_exits_1_with_status_interrupted,
    |db: common::TestDb| async move {
        let s = Setup::new(db).await;
        s.sim
            .set_latency(Duration::from_millis(700), Duration::ZERO);
        let config = s.config(false, |t| t);
        let once = Proc::spawn(
            &mut writer_sync(&config, s.token(), &["run", "--once", "--json"]),
            &[s.token()],
        );
        s.wait_running().await;
        once.signal("TERM");
        let (code, stdout, stderr) = once.wait_exit(Duration::from_secs(40));
        assert_eq!(code, Some(1), "{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["status"], "interrupted", "{report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("stopped by request"),
            "{report}"
        );
        assert_eq!(s.runs().await[0].status, "interrupted");
        s.sim.shutdown().await;
    }
);

crate::both_backends!(
    a_refused_reload_is_in_the_systemd_status_until_a_reload_succeeds,
    |db: common::TestDb| async move {
        // Issue #15: a bad config on SIGHUP was only logged; `systemctl
        // status` said nothing and the operator believed the reload worked.
        let s = Setup::new(db).await;
        let config = s.config(false, |t| t);
        let good = std::fs::read_to_string(&config).unwrap();
        let mut notify = Notify::bind(s.dir.path());
        let mut cmd = writer_sync(&config, s.token(), &["run"]);
        cmd.env("NOTIFY_SOCKET", &notify.path);
        let d = Proc::spawn(&mut cmd, &[s.token()]);
        notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));

        let broken = good.replace(
            "schedule = \"0 0 1 1 *\"",
            "schedule = \"every now and then\"",
        );
        common::write_file_mode(&config, &broken, 0o600);
        d.signal("HUP");
        let status = notify.until(Duration::from_secs(10), |m| m.contains("reload refused"));
        assert!(
            status.starts_with("STATUS=config reload refused, running the old config: ")
                && status.contains("sync.schedule"),
            "{status}"
        );
        // The next run's status still says so.
        d.signal("USR1");
        let status = notify.until(Duration::from_secs(30), |m| {
            m.starts_with("STATUS=last run")
        });
        assert!(status.starts_with("STATUS=last run ok"), "{status}");
        assert!(status.contains("; config reload refused: "), "{status}");
        assert!(status.contains("sync.schedule"), "{status}");

        // A good reload clears it.
        common::write_file_mode(&config, &good, 0o600);
        d.signal("HUP");
        notify.until(Duration::from_secs(10), |m| {
            m.starts_with("STATUS=config reloaded")
        });
        d.signal("USR1");
        let status = notify.until(Duration::from_secs(30), |m| {
            m.starts_with("STATUS=last run")
        });
        assert!(!status.contains("refused"), "{status}");
        d.signal("TERM");
        let (code, _, stderr) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0), "{stderr}");
        s.sim.shutdown().await;
    }
);

crate::both_backends!(
    a_blocked_run_says_how_to_review_and_apply_it,
    |db: common::TestDb| async move {
        // Issue #15: the summary and the JSON `error` of a blocked run
        // never said what to do next.
        let s = Setup::new(db).await;
        let config = s.config(false, |t| {
            t.replace("max_deactivations_percent = 100", "max_deactivations = 1")
        });
        let first = common::checked_output(
            &mut writer_sync(&config, s.token(), &["run", "--once"]),
            &[s.token()],
        );
        assert_eq!(
            first.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        // Suspend two users the first run created (active, managed).
        let store = Store::connect(&s.db.url).await.unwrap();
        let managed: Vec<String> = store
            .dump()
            .await
            .unwrap()
            .users
            .into_iter()
            .filter(|u| u.active)
            .filter_map(|u| u.okta_id)
            .take(2)
            .collect();
        store.close().await;
        assert_eq!(managed.len(), 2);
        s.sim.org_mut(|o| {
            for id in &managed {
                o.set_user_status(id, UserStatus::Suspended).unwrap();
            }
        });
        let review = "`writer-sync run --once --dry-run`";
        let apply = "`writer-sync run --once --force`";

        let human = common::checked_output(
            &mut writer_sync(&config, s.token(), &["run", "--once"]),
            &[s.token()],
        );
        assert_eq!(
            human.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&human.stdout)
        );
        let summary = String::from_utf8_lossy(&human.stdout);
        assert!(
            summary.contains(review) && summary.contains(apply),
            "{summary}"
        );
        let stderr = String::from_utf8_lossy(&human.stderr);
        let blocked = log_events(&stderr, "sync blocked by the safety guard");
        assert_eq!(blocked.len(), 1, "{stderr}");
        let message = blocked[0]["message"].as_str().unwrap();
        assert!(
            message.contains(review) && message.contains(apply),
            "{message}"
        );
        assert_eq!(blocked[0]["level"], "ERROR");

        let json = common::checked_output(
            &mut writer_sync(&config, s.token(), &["run", "--once", "--json"]),
            &[s.token()],
        );
        assert_eq!(json.status.code(), Some(3));
        let report: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(report["status"], "blocked");
        let error = report["error"].as_str().unwrap();
        assert!(
            error.starts_with("blocked by the safety guard: plan deactivates 2 users"),
            "{error}"
        );
        assert!(error.contains(review) && error.contains(apply), "{error}");

        // A dry run of the blocked plan names the way to apply it.
        let dry = common::checked_output(
            &mut writer_sync(
                &config,
                s.token(),
                &["run", "--once", "--dry-run", "--json"],
            ),
            &[s.token()],
        );
        assert_eq!(dry.status.code(), Some(0));
        let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
        assert!(
            report["error"].as_str().unwrap().contains(apply),
            "{report}"
        );
        s.sim.shutdown().await;
    }
);

/// A dump file of `n` unmanaged users (what `store load` takes).
fn dump_of(n: usize) -> String {
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "email": format!("person{i:05}@corp.example"),
                "okta_id": null,
                "first_name": "Person",
                "last_name": format!("Number {i}"),
                "display_name": format!("Person Number {i}"),
                "active": true,
            })
        })
        .collect();
    json!({"users": users, "teams": []}).to_string()
}

crate::both_backends!(
    store_dump_into_a_closed_pipe_ends_quietly_with_exit_0_and_store_load_logs_a_sentence,
    |db: common::TestDb| async move {
        // Issue #15: `store dump | head` exited 1 with "Broken pipe", and
        // `store load` logged Rust Debug text (`LoadSummary { … }`).
        let s = Setup::new(db).await;
        let config = s.config(false, |t| t);
        let file = s.dir.path().join("seed.json");
        std::fs::write(&file, dump_of(3000)).unwrap();
        let load = common::checked_output(
            &mut writer_sync(
                &config,
                s.token(),
                &["store", "load", file.to_str().unwrap()],
            ),
            &[s.token()],
        );
        let stderr = String::from_utf8_lossy(&load.stderr);
        assert_eq!(load.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("LoadSummary"), "{stderr}");
        let loaded = log_events(&stderr, "store loaded");
        assert_eq!(loaded.len(), 1, "{stderr}");
        assert_eq!(
            loaded[0]["summary"],
            "users: 3000 inserted, 0 updated; teams: 0 inserted, 0 updated; memberships: 0 added, 0 updated"
        );
        assert_eq!(loaded[0]["users_inserted"], 3000);
        let summary: Value = serde_json::from_slice(&load.stdout).unwrap();
        assert_eq!(summary["users_inserted"], 3000);

        // The dump is far larger than a pipe's buffer: the reader goes
        // away after the first bytes, the next write fails with EPIPE.
        let mut dump = writer_sync(&config, s.token(), &["store", "dump"]);
        dump.stdout(Stdio::piped());
        let mut child = dump.spawn().unwrap();
        let mut head = [0u8; 64];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        assert!(String::from_utf8_lossy(&head).contains("\"users\""));
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.to_lowercase().contains("broken pipe"), "{stderr}");
        assert!(!stderr.contains("writer-sync:"), "{stderr}");
        s.sim.shutdown().await;
    }
);
