//! Okta faults end to end: every fault either succeeds after retries (the
//! store ends exactly as after a clean run) or fails the run with nothing
//! written, and every run ends within a bound: retry budget + one request
//! timeout + slack (a failing request ends the run; see docs/RELIABILITY.md).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{
    Bucket, Fault, FaultKind, FaultTarget, RateLimits, SimHandle, SimOptions, Simulator, Times,
};
use writer_sync::reconcile::report::Status;

use crate::{Limits, common, config_text, context, dump, parse_config, sync};

/// 1,200 users (six pages of app users at the simulator's page cap below),
/// three pushed groups (several pages of members each).
fn org() -> Org {
    Org::generate(&GenSpec::new(1_200, 8, 3, 11))
}

async fn start_sim() -> SimHandle {
    Simulator::start(
        org(),
        SimOptions {
            // One-second windows: a 429 costs about a second, not a minute.
            rate_limits: RateLimits::uniform(u32::MAX, Duration::from_secs(1)),
            // The client asks for 1,000 members per page; a server that
            // clamps pages to 200 gives the groups of this small org several
            // pages, so faults can hit a page after the first.
            max_page_size: Some(200),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap()
}

/// A seed that makes "nothing was written" observable: an unmanaged Writer
/// user whose email an Okta user has (a clean run links it).
fn seed(sim: &SimHandle) -> String {
    let email = sim.org(|o| {
        let id = o.app_user_ids()[0].clone();
        o.user_profile(&id).unwrap()["email"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    json!({"users": [{"email": email.to_uppercase(), "okta_id": null, "first_name": "Pre",
        "last_name": "Existing", "display_name": "Pre Existing", "active": true}], "teams": []})
    .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    FailedClean,
}

struct Case {
    name: &'static str,
    faults: Vec<Fault>,
    expect: Expect,
    /// Text the error must contain when the run fails.
    error: &'static str,
}

fn cases() -> Vec<Case> {
    let page = FaultTarget::page;
    let any = FaultTarget::any();
    let f = Fault::new;
    vec![
        Case {
            name: "5xx burst on two listings",
            faults: vec![
                f(
                    page(Bucket::Apps, 2),
                    Times::Count(3),
                    FaultKind::ServerError(500),
                ),
                f(
                    FaultTarget {
                        family: Some(Bucket::GroupMembers),
                        page: None,
                    },
                    Times::Count(2),
                    FaultKind::ServerError(503),
                ),
            ],
            expect: Expect::Ok,
            error: "",
        },
        Case {
            name: "5xx on every attempt",
            faults: vec![f(
                page(Bucket::Apps, 2),
                Times::Always,
                FaultKind::ServerError(502),
            )],
            expect: Expect::FailedClean,
            error: "retry budget",
        },
        Case {
            name: "429 storm",
            faults: vec![Fault::rate_limit_storm(4)],
            expect: Expect::Ok,
            error: "",
        },
        Case {
            name: "429 on every attempt",
            faults: vec![f(
                page(Bucket::GroupMembers, 1),
                Times::Always,
                FaultKind::RateLimited,
            )],
            expect: Expect::FailedClean,
            error: "HTTP 429",
        },
        Case {
            name: "concurrency 429s",
            faults: vec![f(any, Times::Count(4), FaultKind::ConcurrencyLimited)],
            expect: Expect::Ok,
            error: "",
        },
        Case {
            name: "connection reset mid-response, twice",
            faults: vec![f(
                page(Bucket::Apps, 2),
                Times::Count(2),
                FaultKind::ConnectionReset,
            )],
            expect: Expect::Ok,
            error: "",
        },
        Case {
            name: "connection reset on every attempt",
            faults: vec![f(
                page(Bucket::GroupMembers, 2),
                Times::Always,
                FaultKind::ConnectionReset,
            )],
            expect: Expect::FailedClean,
            error: "retry budget",
        },
        Case {
            name: "one response slower than the request timeout",
            faults: vec![f(
                page(Bucket::Apps, 3),
                Times::Once,
                FaultKind::Slow(Duration::from_secs(4)),
            )],
            expect: Expect::Ok,
            error: "",
        },
        Case {
            name: "every response slower than the request timeout",
            faults: vec![f(
                page(Bucket::Apps, 1),
                Times::Always,
                FaultKind::Slow(Duration::from_secs(4)),
            )],
            expect: Expect::FailedClean,
            error: "timed out",
        },
        Case {
            name: "truncated JSON body",
            faults: vec![f(
                page(Bucket::Apps, 2),
                Times::Once,
                FaultKind::TruncatedBody,
            )],
            expect: Expect::FailedClean,
            error: "could not decode",
        },
        Case {
            name: "next link to another host",
            faults: vec![f(
                page(Bucket::Apps, 1),
                Times::Once,
                FaultKind::ForeignNextLink,
            )],
            expect: Expect::FailedClean,
            error: "okta-sim-foreign.invalid",
        },
        Case {
            name: "page repeating the previous cursor",
            faults: vec![f(
                page(Bucket::GroupMembers, 2),
                Times::Once,
                FaultKind::RepeatCursor,
            )],
            expect: Expect::FailedClean,
            error: "cursor loop",
        },
        Case {
            name: "one of each retried fault",
            faults: vec![
                f(
                    page(Bucket::Apps, 1),
                    Times::Once,
                    FaultKind::ServerError(500),
                ),
                f(page(Bucket::Apps, 2), Times::Once, FaultKind::RateLimited),
                f(
                    page(Bucket::Apps, 3),
                    Times::Once,
                    FaultKind::ConnectionReset,
                ),
                f(
                    page(Bucket::GroupMembers, 1),
                    Times::Once,
                    FaultKind::Slow(Duration::from_secs(4)),
                ),
                f(
                    page(Bucket::GroupMembers, 2),
                    Times::Once,
                    FaultKind::ConcurrencyLimited,
                ),
            ],
            expect: Expect::Ok,
            error: "",
        },
    ]
}

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(1),
    retry_budget: Duration::from_secs(8),
};

/// The documented bound for one run here: the retry budget of the failing
/// request, one request timeout, and slack for the rest of the run.
const RUN_BOUND: Duration = Duration::from_secs(8 + 1 + 6);

async fn run_case(kind: common::Kind, case: Case, reference: Value) -> Result<String, String> {
    let sim = start_sim().await;
    let Some(db) = common::TestDb::new(kind, "faults").await else {
        return Ok(format!("{}: skipped", case.name));
    };
    let config = parse_config(
        &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), LIMITS).await;
    ctx.store.load_json(&seed(&sim)).await.unwrap();
    let before = dump(&ctx.store).await;
    sim.set_faults(case.faults.clone());
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(60), sync(&ctx))
        .await
        .map_err(|_| format!("{}: the run hung for 60 s", case.name))?;
    let took = started.elapsed();
    let after = dump(&ctx.store).await;
    let faults_seen = sim.requests().iter().filter(|r| r.status != 200).count();
    let name = case.name;
    if took > RUN_BOUND {
        return Err(format!("{name}: took {took:?}, bound {RUN_BOUND:?}"));
    }
    match case.expect {
        Expect::Ok => {
            if report.status != Status::Ok {
                return Err(format!(
                    "{name}: expected success, got {:?}: {:?}",
                    report.status, report.error
                ));
            }
            if after != reference {
                return Err(format!("{name}: the store differs from a clean run"));
            }
        }
        Expect::FailedClean => {
            let error = report.error.clone().unwrap_or_default();
            if report.status != Status::Failed || !error.contains("nothing was applied") {
                return Err(format!(
                    "{name}: expected a clean failure, got {:?}: {error}",
                    report.status
                ));
            }
            if !error.contains(case.error) {
                return Err(format!("{name}: error lacks {:?}: {error}", case.error));
            }
            if after != before {
                return Err(format!("{name}: a failed run changed the store"));
            }
            let runs = ctx.store.recent_runs(1).await.unwrap();
            if runs[0].status != "failed" {
                return Err(format!("{name}: run recorded as {}", runs[0].status));
            }
            // Without the fault the next run applies everything.
            sim.set_faults(Vec::new());
            let again = sync(&ctx).await;
            if again.status != Status::Ok || dump(&ctx.store).await != reference {
                return Err(format!(
                    "{name}: the run after the fault did not converge: {:?}",
                    again.error
                ));
            }
        }
    }
    ctx.store.close().await;
    sim.shutdown().await;
    Ok(format!(
        "{name}: {:?} in {took:.1?} ({faults_seen} non-200 responses)",
        case.expect
    ))
}

async fn reference(kind: common::Kind) -> Option<Value> {
    let sim = start_sim().await;
    let db = common::TestDb::new(kind, "faultsref").await?;
    let config = parse_config(
        &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
        sim.token(),
    );
    let ctx = context(config, sim.token(), LIMITS).await;
    ctx.store.load_json(&seed(&sim)).await.unwrap();
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Ok, "{:?}", report.error);
    assert!(report.counts.users_linked == 1 && report.counts.users_created > 500);
    let value = dump(&ctx.store).await;
    ctx.store.close().await;
    Some(value)
}

async fn every_fault_succeeds_after_retries_or_fails_with_nothing_written(kind: common::Kind) {
    let Some(reference) = reference(kind).await else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for case in cases() {
        tasks.spawn(run_case(kind, case, reference.clone()));
    }
    let mut failures = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(line) => eprintln!("{line}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_faults_on_sqlite() {
    every_fault_succeeds_after_retries_or_fails_with_nothing_written(common::Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_faults_on_postgres() {
    every_fault_succeeds_after_retries_or_fails_with_nothing_written(common::Kind::Postgres).await;
}

/// The binary with the product's default retry budget still ends a run with
/// a permanent listing error at once (no retries for a foreign next link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_fast_on_a_permanent_fault_and_prints_one_report() {
    let sim = start_sim().await;
    let db = common::TestDb::new(common::Kind::Sqlite, "binfault")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    common::write_file_mode(
        &config,
        &config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, ""),
        0o600,
    );
    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 1),
        Times::Always,
        FaultKind::RepeatCursor,
    )]);
    let token = sim.token().to_owned();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        common::checked_output(
            std::process::Command::new(crate::BIN)
                .arg("--config")
                .arg(&config)
                .args(["run", "--once", "--json"])
                .env("WRITER_SYNC_OKTA_API_TOKEN", &token),
            &[&token],
        )
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("cursor loop"),
        "{report}"
    );
    sim.shutdown().await;
}
