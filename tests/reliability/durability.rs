//! SQLite durability (#13.1): a run reported `ok` survives power loss.
//!
//! Power loss keeps of each file what was synced before it (the page cache
//! is gone). The daemon (its pool stays open between runs, so nothing is
//! synced by closing it) runs under `strace`, which records every write and
//! sync of the database files in order; at the moment the run is reported
//! (its `sync finished` log line), no write to the WAL, where every commit
//! lands, may be unsynced. With `synchronous = NORMAL` the WAL is synced
//! only at checkpoints, so the last commits (the run record among them)
//! would be lost.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{RateLimits, SimOptions, Simulator};
use writer_sync::store::{Store, StoreUrl};

use crate::{common, config_text};

/// What power loss at the moment of the report would take from each file:
/// the writes after its last sync, per path (empty: nothing lost).
pub fn unsynced_at_report(trace: &str) -> Option<BTreeMap<String, usize>> {
    let mut unsynced: BTreeMap<String, usize> = BTreeMap::new();
    for line in trace.lines() {
        // "PID call(FD</path>, ...) = N"
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim_start();
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        let Some(path) = args
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(path, _)| path)
        else {
            continue;
        };
        match name {
            "write" | "writev" if args.starts_with("2<") && args.contains("sync finished") => {
                return Some(unsynced);
            }
            "pwrite64" | "pwritev" | "write" | "writev" if is_db_file(path) => {
                *unsynced.entry(path.to_owned()).or_default() += 1;
            }
            "fsync" | "fdatasync" => {
                unsynced.remove(path);
            }
            _ => {}
        }
    }
    None
}

fn is_db_file(path: &str) -> bool {
    path.ends_with("writer.db-wal") || path.ends_with("writer.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_of_a_reported_run_is_synced_before_the_report() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED every_commit_of_a_reported_run_is_synced: strace is not installed");
        return;
    }
    let sim = Simulator::start(
        Org::generate(&GenSpec::new(400, 6, 3, 5)),
        SimOptions {
            rate_limits: RateLimits::unlimited(),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("writer.db");
    let config = dir.path().join("c.toml");
    common::write_file_mode(
        &config,
        &config_text(
            sim.url().as_str(),
            &sim.app_id(),
            &format!("sqlite://{}", db.display()),
            "\n[sync]\nschedule = \"0 0 1 1 *\"\nrun_on_start = true\n",
        ),
        0o600,
    );
    let trace = dir.path().join("trace");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "300", "-o"])
        .arg(&trace)
        .args(["-e", "trace=write,writev,pwrite64,pwritev,fsync,fdatasync"])
        .arg(crate::BIN)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("WRITER_SYNC_OKTA_API_TOKEN", sim.token())
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The daemon's first run is reported: the trace up to that line.
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("sync finished") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon reported no run: {:.3000}",
            text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Stop the daemon (strace's child), then strace.
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        strace.id(),
        strace.id()
    ))
    .unwrap();
    for pid in children.split_whitespace() {
        Command::new("kill").args(["-TERM", pid]).status().unwrap();
    }
    strace.wait().unwrap();
    assert!(
        text.contains("writer.db-wal>"),
        "the run wrote no WAL: {text:.2000}"
    );
    let unsynced = unsynced_at_report(&text).expect("the trace shows the run reported");
    assert_eq!(
        unsynced,
        BTreeMap::new(),
        "writes power loss would take at the report (path: writes since its last sync)"
    );
    let store = Store::connect(&StoreUrl::Sqlite(db)).await.unwrap();
    let runs = store.recent_runs(5).await.unwrap();
    assert_eq!(runs[0].status, "ok", "{runs:?}");
    assert!(store.audit_log().await.unwrap().len() > 200);
    store.close().await;
    sim.shutdown().await;
}

#[test]
fn the_trace_reader_sees_an_unsynced_wal_tail() {
    let trace = "10 pwrite64(4</d/writer.db-wal>, \"\"..., 4096, 0) = 4096\n\
                 10 fdatasync(4</d/writer.db-wal>) = 0\n\
                 11 pwrite64(4</d/writer.db-wal>, \"\"..., 4096, 4096) = 4096\n\
                 11 write(2<pipe:[7]>, \"{\\\"message\\\":\\\"applied\\\"}\"..., 80) = 80\n\
                 10 write(2<pipe:[7]>, \"{\\\"message\\\":\\\"sync finished\\\"}\"..., 900) = 900\n\
                 10 fdatasync(4</d/writer.db-wal>) = 0\n";
    let got = unsynced_at_report(trace).unwrap();
    assert_eq!(got.get("/d/writer.db-wal"), Some(&1));
    assert_eq!(unsynced_at_report("10 fsync(3</d/writer.db>) = 0\n"), None);
}
