//! Process metrics and their Prometheus text exposition.
//!
//! Invariant: metrics are updated only from finished runs and from the Okta
//! client's own counters (plus the `process_*` values, read from
//! `/proc/self` at scrape time, outside the lock); rendering reads a
//! consistent snapshot and never blocks a run for longer than a map copy.
//! Names follow Prometheus conventions: base units as a suffix
//! (`_seconds`, `_bytes`), `_total` on counters, `code` for HTTP statuses.

mod process;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::okta::OktaStats;
use crate::reconcile::events::FallbackReason;
use crate::reconcile::incremental::{EventsRun, Outcome};
use crate::reconcile::report::{FailureKind, Report, Status};

/// Upper bounds (seconds) of the run-duration histogram buckets.
const DURATION_BUCKETS: [f64; 9] = [1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0];

#[derive(Debug, Default)]
struct State {
    runs: BTreeMap<&'static str, u64>,
    runs_skipped_locked: u64,
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    last_duration: f64,
    changes: BTreeMap<&'static str, u64>,
    last_success: Option<f64>,
    last_run_end: Option<f64>,
    last_status: Option<&'static str>,
    /// Failed runs by kind, and the kind of the last run when it failed.
    failures: BTreeMap<&'static str, u64>,
    last_failure: Option<FailureKind>,
    blocked: bool,
    /// Whether the store is paused (SPEC §8), as last seen.
    paused: bool,
    managed_active: Option<u64>,
    managed_inactive: Option<u64>,
    /// Okta request counts of clients replaced by a config reload.
    okta_retired: BTreeMap<(String, String), u64>,
    okta_retired_429: u64,
    okta_current: Option<OktaStats>,
    started: f64,
    /// System Log events read, by type.
    events: BTreeMap<String, u64>,
    /// Incremental runs by how they ended.
    incremental: BTreeMap<&'static str, u64>,
    fallbacks: BTreeMap<&'static str, u64>,
    /// `published` of the newest event processed (Unix seconds).
    newest_event: Option<f64>,
    last_poll: Option<f64>,
    /// `process_start_time_seconds`: from `/proc/self/stat`, else `started`.
    process_started: f64,
}

/// The metrics of this process.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let started = unix_now();
        Metrics {
            state: Mutex::new(State {
                started,
                process_started: process::start_time_seconds().unwrap_or(started),
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a finished run.
    pub fn record_run(&self, report: &Report) {
        let mut s = self.state();
        let now = unix_now();
        if report.lock_busy() {
            s.runs_skipped_locked += 1;
            return;
        }
        s.last_failure = report.failure;
        // An interrupted run (a stop request) is not a failure: it has its
        // own `runs_total` status and no `run_failures_total` kind.
        if let Some(kind) = report.failure
            && report.status == Status::Failed
        {
            *s.failures.entry(kind.as_str()).or_default() += 1;
        }
        *s.runs.entry(report.status.as_str()).or_default() += 1;
        let secs = report.duration_ms as f64 / 1000.0;
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                s.duration_buckets[i] += 1;
            }
        }
        s.duration_sum += secs;
        s.duration_count += 1;
        s.last_duration = secs;
        s.last_run_end = Some(now);
        s.last_status = Some(report.status.as_str());
        s.blocked = report.status == Status::Blocked;
        // Every run that got as far as its plan read the pause.
        if matches!(
            report.status,
            Status::Ok | Status::Paused | Status::DryRun | Status::Blocked
        ) {
            s.paused = report.paused.is_some();
        }
        if report.status == Status::Ok {
            s.last_success = Some(now);
        }
        if matches!(
            report.status,
            Status::Ok | Status::Failed | Status::Interrupted
        ) {
            for change in &report.changes {
                *s.changes.entry(change.kind()).or_default() += 1;
            }
        }
    }

    /// Records an incremental run (SPEC §7): the events it read, how it
    /// ended, and the newest event's `published` (for the lag gauge).
    pub fn record_events(&self, run: &EventsRun) {
        let mut s = self.state();
        s.last_poll = Some(unix_now());
        for (event_type, n) in &run.events_by_type {
            *s.events.entry(event_type.clone()).or_default() += n;
        }
        if let Some(ms) = run.newest_published_ms {
            let at = ms as f64 / 1000.0;
            s.newest_event = Some(s.newest_event.map_or(at, |prev| prev.max(at)));
        }
        let outcome = match &run.outcome {
            Outcome::Idle => "idle",
            Outcome::Ran(report) => report.status.as_str(),
            Outcome::Fallback { reason, .. } => {
                *s.fallbacks.entry(reason.as_str()).or_default() += 1;
                "fallback"
            }
            Outcome::Unavailable(_) => "unavailable",
            Outcome::LockHeld => "lock_held",
            Outcome::StoreFailed(_) => "failed",
        };
        *s.incremental.entry(outcome).or_default() += 1;
    }

    /// Records whether the store is paused (read from the store by the
    /// server at each scrape, and after each run).
    pub fn set_paused(&self, paused: bool) {
        self.state().paused = paused;
    }

    /// Records the managed-user gauge (read from the store after a run).
    pub fn set_managed_users(&self, active: u64, inactive: u64) {
        let mut s = self.state();
        s.managed_active = Some(active);
        s.managed_inactive = Some(inactive);
    }

    /// The latest counters of the current Okta client.
    pub fn set_okta_stats(&self, stats: OktaStats) {
        self.state().okta_current = Some(stats);
    }

    /// Folds the current client's counters into the process totals before
    /// a reload replaces the client, so counters never go backwards.
    pub fn retire_okta_client(&self) {
        let mut s = self.state();
        if let Some(stats) = s.okta_current.take() {
            for ((family, status), n) in &stats.requests {
                *s.okta_retired
                    .entry((family.as_str().to_owned(), status.clone()))
                    .or_default() += n;
            }
            s.okta_retired_429 += stats.rate_limited;
        }
    }

    /// Unix time of the last successful run, if any.
    pub fn last_success(&self) -> Option<f64> {
        self.state().last_success
    }

    /// Why the last finished run failed (`None` when it did not).
    pub fn last_failure(&self) -> Option<FailureKind> {
        self.state().last_failure
    }

    /// Status of the last finished run and when the process started.
    pub fn last_status(&self) -> (Option<&'static str>, f64) {
        let s = self.state();
        (s.last_status, s.started)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        // Read /proc before taking the lock.
        let proc_stats = process::read();
        let s = self.state();
        let now = unix_now();
        let mut out = String::new();
        let mut push = |line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        let header = |name: &str, kind: &str, help: &str| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}")
        };

        push(header(
            "writer_sync_build_info",
            "gauge",
            "Build information.",
        ));
        push(format!(
            "writer_sync_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("WRITER_SYNC_GIT_COMMIT")
        ));

        push(header(
            "writer_sync_runs_total",
            "counter",
            "Sync runs by outcome.",
        ));
        for status in Status::ALL.map(Status::as_str) {
            push(format!(
                "writer_sync_runs_total{{status=\"{status}\"}} {}",
                s.runs.get(status).copied().unwrap_or(0)
            ));
        }
        push(header(
            "writer_sync_run_failures_total",
            "counter",
            "Failed runs by kind of trouble (transient, credential, configuration).",
        ));
        for kind in FailureKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, FailureKind::LockHeld | FailureKind::Interrupted))
        {
            push(format!(
                "writer_sync_run_failures_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                s.failures.get(kind.as_str()).copied().unwrap_or(0)
            ));
        }
        push(header(
            "writer_sync_runs_skipped_total",
            "counter",
            "Scheduled runs skipped because another instance held the store's sync lock.",
        ));
        push(format!(
            "writer_sync_runs_skipped_total {}",
            s.runs_skipped_locked
        ));

        push(header(
            "writer_sync_run_duration_seconds",
            "histogram",
            "Duration of sync runs.",
        ));
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            push(format!(
                "writer_sync_run_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                s.duration_buckets[i]
            ));
        }
        push(format!(
            "writer_sync_run_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            s.duration_count
        ));
        push(format!(
            "writer_sync_run_duration_seconds_sum {}",
            s.duration_sum
        ));
        push(format!(
            "writer_sync_run_duration_seconds_count {}",
            s.duration_count
        ));
        push(header(
            "writer_sync_last_run_duration_seconds",
            "gauge",
            "Duration of the last run.",
        ));
        push(format!(
            "writer_sync_last_run_duration_seconds {}",
            s.last_duration
        ));

        push(header(
            "writer_sync_changes_applied_total",
            "counter",
            "Changes applied to the store, by kind.",
        ));
        for kind in [
            "user_created",
            "user_updated",
            "user_deactivated",
            "user_reactivated",
            "user_linked",
            "membership_added",
            "membership_removed",
            "role_changed",
            "team_linked",
            "team_created",
        ] {
            push(format!(
                "writer_sync_changes_applied_total{{kind=\"{kind}\"}} {}",
                s.changes.get(kind).copied().unwrap_or(0)
            ));
        }

        push(header(
            "writer_sync_okta_requests_total",
            "counter",
            "Okta requests by endpoint family and HTTP status code (\"error\" = no response).",
        ));
        let mut requests = s.okta_retired.clone();
        let mut limited = s.okta_retired_429;
        if let Some(stats) = &s.okta_current {
            for ((family, status), n) in &stats.requests {
                *requests
                    .entry((family.as_str().to_owned(), status.clone()))
                    .or_default() += n;
            }
            limited += stats.rate_limited;
        }
        for ((family, code), n) in &requests {
            push(format!(
                "writer_sync_okta_requests_total{{family=\"{family}\",code=\"{code}\"}} {n}"
            ));
        }
        push(header(
            "writer_sync_okta_rate_limited_total",
            "counter",
            "Okta 429 responses.",
        ));
        push(format!("writer_sync_okta_rate_limited_total {limited}"));
        push(header(
            "writer_sync_okta_rate_limit_remaining",
            "gauge",
            "X-Rate-Limit-Remaining last seen, by endpoint family.",
        ));
        if let Some(stats) = &s.okta_current {
            for (family, headers) in &stats.rate_limit {
                if let Some(remaining) = headers.remaining {
                    push(format!(
                        "writer_sync_okta_rate_limit_remaining{{family=\"{}\"}} {remaining}",
                        family.as_str()
                    ));
                }
            }
        }

        push(header(
            "writer_sync_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful run (0 = none yet).",
        ));
        push(format!(
            "writer_sync_last_success_timestamp_seconds {}",
            s.last_success.unwrap_or(0.0)
        ));
        push(header(
            "writer_sync_last_success_age_seconds",
            "gauge",
            "Seconds since the last successful run (since process start when there was none).",
        ));
        push(format!(
            "writer_sync_last_success_age_seconds {:.3}",
            now - s.last_success.unwrap_or(s.started)
        ));
        push(header(
            "writer_sync_paused",
            "gauge",
            "1 while the store is paused (writer-sync pause): runs plan and apply nothing.",
        ));
        push(format!("writer_sync_paused {}", u8::from(s.paused)));
        push(header(
            "writer_sync_managed_users",
            "gauge",
            "Users managed by writer-sync, by state.",
        ));
        if let (Some(a), Some(i)) = (s.managed_active, s.managed_inactive) {
            push(format!("writer_sync_managed_users{{state=\"active\"}} {a}"));
            push(format!(
                "writer_sync_managed_users{{state=\"inactive\"}} {i}"
            ));
        }
        push(header(
            "writer_sync_incremental_runs_total",
            "counter",
            "Incremental runs from the System Log, by how they ended (idle: nothing new).",
        ));
        let outcomes = std::iter::once("idle")
            .chain(Status::ALL.map(Status::as_str))
            .chain(["fallback", "unavailable", "lock_held"]);
        for outcome in outcomes {
            push(format!(
                "writer_sync_incremental_runs_total{{outcome=\"{outcome}\"}} {}",
                s.incremental.get(outcome).copied().unwrap_or(0)
            ));
        }
        push(header(
            "writer_sync_event_fallbacks_total",
            "counter",
            "Incremental runs that handed over to a full reconcile, by reason.",
        ));
        for reason in FallbackReason::ALL {
            push(format!(
                "writer_sync_event_fallbacks_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                s.fallbacks.get(reason.as_str()).copied().unwrap_or(0)
            ));
        }
        push(header(
            "writer_sync_events_read_total",
            "counter",
            "System Log events read, by event type.",
        ));
        for (event_type, n) in &s.events {
            push(format!(
                "writer_sync_events_read_total{{type=\"{}\"}} {n}",
                label_value(event_type)
            ));
        }
        push(header(
            "writer_sync_event_lag_seconds",
            "gauge",
            "Now minus the published time of the newest System Log event processed.",
        ));
        if let Some(newest) = s.newest_event {
            push(format!(
                "writer_sync_event_lag_seconds {:.3}",
                (now - newest).max(0.0)
            ));
        }
        push(header(
            "writer_sync_events_last_poll_timestamp_seconds",
            "gauge",
            "Unix time of the last System Log poll (0 = none yet).",
        ));
        push(format!(
            "writer_sync_events_last_poll_timestamp_seconds {}",
            s.last_poll.unwrap_or(0.0)
        ));
        push(header(
            "writer_sync_plan_blocked",
            "gauge",
            "1 when the last run was blocked by the safety guard.",
        ));
        push(format!("writer_sync_plan_blocked {}", u8::from(s.blocked)));

        let process_gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                proc_stats.resident_memory_bytes.map(|v| v.to_string()),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                proc_stats.virtual_memory_bytes.map(|v| v.to_string()),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                proc_stats.open_fds.map(|v| v.to_string()),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (RLIMIT_NOFILE).",
                proc_stats.max_fds.map(|v| v.to_string()),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                Some(format!("{:.3}", s.process_started)),
            ),
        ];
        for (name, help, value) in process_gauges {
            if let Some(value) = value {
                push(header(name, "gauge", help));
                push(format!("{name} {value}"));
            }
        }
        if let Some(cpu) = proc_stats.cpu_seconds {
            push(header(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
            ));
            push(format!("process_cpu_seconds_total {cpu}"));
        }
        out
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped (event types
/// come from Okta).
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status, failure: Option<FailureKind>) -> Report {
        Report {
            status,
            counts: Default::default(),
            changes: Vec::new(),
            findings: Vec::new(),
            error: None,
            run_id: Some(1),
            duration_ms: 1500,
            planned: 0,
            failure,
            paused: None,
            pending_deactivations: Vec::new(),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn an_interrupted_run_is_counted_as_interrupted_not_as_a_failure() {
        let m = Metrics::new();
        m.record_run(&report(Status::Interrupted, Some(FailureKind::Interrupted)));
        m.record_run(&report(Status::Failed, Some(FailureKind::Transient)));
        let text = m.render();
        assert_eq!(
            value(&text, "writer_sync_runs_total{status=\"interrupted\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "writer_sync_runs_total{status=\"failed\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "writer_sync_run_failures_total{kind=\"transient\"}"),
            Some(1.0)
        );
        assert!(!text.contains("kind=\"interrupted\""), "{text}");
        assert_eq!(
            value(&text, "writer_sync_run_duration_seconds_count"),
            Some(2.0)
        );
    }

    #[test]
    fn names_carry_their_unit_last_and_http_statuses_are_code() {
        let m = Metrics::new();
        let mut stats = OktaStats::default();
        stats
            .requests
            .insert((crate::okta::limit::Family::Users, "200".to_owned()), 3);
        m.set_okta_stats(stats);
        let text = m.render();
        assert!(
            text.contains("writer_sync_last_success_age_seconds "),
            "{text}"
        );
        assert!(!text.contains("seconds_since"), "{text}");
        assert!(
            text.contains("writer_sync_okta_requests_total{family=\"users\",code=\"200\"} 3"),
            "{text}"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing: {text}"
            );
        }
    }
}
