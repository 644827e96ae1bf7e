//! Disk full (#13.8): an SQLite apply that the database's file system
//! cannot hold is refused before its first write, naming the free space
//! and the estimate; with room again, the next run applies everything.
//! Needs a small file system: a tmpfs mounted for the test (root only;
//! skipped otherwise). The estimate itself is unit-tested in
//! `store::space`.

use std::process::Command;

use serde_json::Value;

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{RateLimits, SimOptions, Simulator};
use writer_sync::store::{Store, StoreUrl};

use crate::{common, config_text, dump};

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?
            .status
            .success();
        ok.then_some(SmallFs { dir })
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn run(config: &std::path::Path, token: &str) -> (Option<i32>, Value, String) {
    let out = common::checked_output(
        Command::new(crate::BIN)
            .arg("--config")
            .arg(config)
            .args(["run", "--once", "--json"])
            .env("WRITER_SYNC_OKTA_API_TOKEN", token)
            .env_remove("RUST_LOG"),
        &[token],
    );
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_the_disk_cannot_hold_is_refused_with_nothing_written() {
    let Some(fs) = SmallFs::mount("1m") else {
        eprintln!("SKIPPED an_apply_the_disk_cannot_hold: cannot mount a tmpfs (not root)");
        return;
    };
    let sim = Simulator::start(
        Org::generate(&GenSpec::new(3_000, 6, 3, 11)),
        SimOptions {
            rate_limits: RateLimits::unlimited(),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let db = fs.dir.path().join("writer.db");
    let config = fs.dir.path().join("c.toml");
    common::write_file_mode(
        &config,
        &config_text(
            sim.url().as_str(),
            &sim.app_id(),
            &format!("sqlite://{}", db.display()),
            "",
        ),
        0o600,
    );
    let token = sim.token().to_owned();
    let (cfg, tok) = (config.clone(), token.clone());
    let (code, report, stderr) = tokio::task::spawn_blocking(move || run(&cfg, &tok))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("not enough disk space for this apply")
            && error.contains("bytes free on the database's file system")
            && error.contains("need about")
            && error.contains("nothing was applied"),
        "{error}"
    );
    let store = Store::connect(&StoreUrl::Sqlite(db.clone())).await.unwrap();
    let before = dump(&store).await;
    assert_eq!(
        before["users"].as_array().map(Vec::len),
        Some(0),
        "nothing written"
    );
    assert!(store.audit_log().await.unwrap().is_empty());
    store.close().await;

    // Room again: the next run applies everything.
    fs.resize("256m");
    let (code, report, stderr) = tokio::task::spawn_blocking(move || run(&config, &token))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["status"], "ok");
    let size = std::fs::metadata(&db).unwrap().len()
        + std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len());
    eprintln!(
        "disk full: refused at 1 MiB ({error}); with room: {} changes, {size} bytes of database and WAL",
        report["changes"].as_array().map_or(0, Vec::len)
    );
    sim.shutdown().await;
}
