//! `/metrics` of a running daemon: Prometheus naming (base unit last,
//! `code` for HTTP statuses), the standard `process_*` metrics, and the
//! whole exposition as `promtool check metrics` sees it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use okta_sim::org::Org;
use okta_sim::{SimOptions, Simulator};

use crate::common;
use crate::support::{Proc, free_port, http_get, sample, sim_config, wait_for, writer_sync};

/// Runs `promtool check metrics` on `text`; panics with its findings.
/// promtool is required: CI installs Debian's `prometheus` package.
pub fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test ({e}): apt-get install prometheus (.ci/run does)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the `process_*` samples of a daemon started within `max_age`.
pub fn assert_process_metrics(text: &str, max_age: Duration) {
    let get = |name: &str| sample(text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert!(get("process_resident_memory_bytes") > 1e6, "{text}");
    assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
    let open = get("process_open_fds");
    assert!(open >= 3.0, "{text}");
    assert!(get("process_max_fds") >= open, "{text}");
    assert!(get("process_cpu_seconds_total") > 0.0, "{text}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = get("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started >= now - max_age.as_secs_f64(),
        "process_start_time_seconds {started}, now {now}"
    );
}

crate::both_backends!(
    metrics_follow_prometheus_naming_and_pass_promtool_check_metrics,
    |db: common::TestDb| async move {
        // Issue #15: `writer_sync_seconds_since_last_success` had its unit
        // in the middle, the HTTP status label was `status`, and there
        // were no process_* metrics.
        let sim = Simulator::start(Org::sample(), SimOptions::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.toml");
        common::write_file_mode(
            &config,
            &sim_config(&sim, &db.config_url, "0 0 1 1 *", true, port),
            0o600,
        );
        let d = Proc::spawn(
            &mut writer_sync(&config, sim.token(), &["run"]),
            &[sim.token()],
        );
        let ok_runs = || {
            http_get(port, "/metrics")
                .and_then(|(_, text)| sample(&text, "writer_sync_runs_total{status=\"ok\"}"))
        };
        wait_for("the first run", Duration::from_secs(30), || {
            ok_runs() == Some(1.0)
        })
        .await;
        let (status, text) = http_get(port, "/metrics").unwrap();
        assert_eq!(status, 200);

        let age = sample(&text, "writer_sync_last_success_age_seconds").expect(&text);
        assert!((0.0..60.0).contains(&age), "{age}");
        assert!(sample(&text, "writer_sync_last_success_timestamp_seconds").unwrap() > 0.0);
        assert!(
            !text.contains("writer_sync_seconds_since_last_success"),
            "{text}"
        );
        assert!(
            sample(
                &text,
                "writer_sync_okta_requests_total{family=\"apps\",code=\"200\"}"
            )
            .unwrap()
                > 0.0,
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("writer_sync_okta_requests_total") && l.contains("status=")),
            "{text}"
        );
        assert_eq!(
            sample(&text, "writer_sync_runs_total{status=\"interrupted\"}"),
            Some(0.0)
        );
        assert!(
            text.contains(&format!(
                "writer_sync_build_info{{version=\"{}\",commit=\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert_process_metrics(&text, Duration::from_secs(120));
        promtool_check_metrics(&text);
        crate::monitoring::assert_monitoring_uses_exported_metrics(&text);

        d.signal("TERM");
        let (code, _, stderr) = d.wait_exit(Duration::from_secs(15));
        assert_eq!(code, Some(0), "{stderr}");
        sim.shutdown().await;
    }
);
