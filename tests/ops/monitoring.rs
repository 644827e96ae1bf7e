//! Monitoring as code (`contrib/`): the alert rules pass `promtool check
//! rules` and their own unit tests (`promtool test rules`), and every
//! metric the rules and the Grafana dashboard use is one the daemon
//! exports (checked against a live scrape in `metrics.rs`).

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::repo_file;

/// Metrics the rules use that another part of the product exports: the
/// `up` series is Prometheus' own.
const NOT_OURS: [&str; 1] = ["up"];

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(repo_file("contrib/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test ({e}): apt-get install prometheus (.ci/run does)"
            )
        })
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let out = promtool(args);
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The metric names in a PromQL-bearing text: identifiers that start with
/// `writer_sync_` or `process_`, plus `up`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &text[i..];
        if starts_word
            && (rest.starts_with("writer_sync_")
                || rest.starts_with("process_")
                || rest.starts_with("up{"))
        {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

/// The queries of the rules and of the dashboard's panels and variables.
pub fn referenced_metrics() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(repo_file("contrib/prometheus/alerts.yml")).unwrap();
    // The `expr:` blocks (one line, or the indented lines of `expr: |`).
    let mut names = BTreeSet::new();
    let mut in_expr = false;
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let trimmed = line.trim_start();
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            in_expr = true;
            names.extend(names_in(expr));
        } else if in_expr
            && (trimmed.starts_with("labels:")
                || trimmed.starts_with("for:")
                || trimmed.starts_with("- alert:"))
        {
            in_expr = false;
        } else if in_expr {
            names.extend(names_in(line));
        }
    }
    assert!(names.len() >= 8, "{names:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("contrib/grafana/writer-sync.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"].as_str() {
            queries.push(q.to_owned());
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");
    for q in &queries {
        names.extend(names_in(q));
    }
    names
}

/// Panics unless every metric the rules and the dashboard use is in
/// `exposition` (histograms by their `_bucket` samples).
pub fn assert_monitoring_uses_exported_metrics(exposition: &str) {
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in referenced_metrics() {
        if NOT_OURS.contains(&name.as_str()) {
            continue;
        }
        assert!(
            exported.contains(name.as_str()),
            "contrib/ uses {name}, which the daemon does not export:\n{exposition}"
        );
    }
}

#[test]
fn the_dashboard_is_grafana_json_over_the_job_and_instance_variables() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("contrib/grafana/writer-sync.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dashboard["uid"], "writer-sync");
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("job=\"$job\""), "{expr}");
        }
    }
}
