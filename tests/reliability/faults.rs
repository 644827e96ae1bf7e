//! Okta faults end to end: every fault either succeeds after retries (the
//! store ends exactly as after a clean run) or fails the run with nothing
//! written, and every run ends within a bound: retry budget + one request
//! timeout + slack (a failing request ends the run; see docs/RELIABILITY.md).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use okta_sim::generate::GenSpec;
use okta_sim::org::Org;
use okta_sim::{
    Bucket, Fault, FaultKind, FaultTarget, RateLimits, Route, SimHandle, SimOptions, Simulator,
    Times,
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

/// The faults a client never retries are injected `Always`, not `Once`:
/// under load an attempt can pass the 1 s timeout while the simulator is
/// still answering it, and a `Once` fault spent on that abandoned attempt
/// would let the retry succeed (seen at load average 7 on 2 cores).
fn cases() -> Vec<Case> {
    let page = FaultTarget::page;
    let members = |n| FaultTarget::route_page(Route::GroupMembers, n);
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
                    FaultTarget::route(Route::GroupMembers),
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
            faults: vec![f(members(1), Times::Always, FaultKind::RateLimited)],
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
            faults: vec![f(members(2), Times::Always, FaultKind::ConnectionReset)],
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
                Times::Always,
                FaultKind::TruncatedBody,
            )],
            expect: Expect::FailedClean,
            error: "could not decode",
        },
        Case {
            name: "next link to another host",
            faults: vec![f(
                page(Bucket::Apps, 1),
                Times::Always,
                FaultKind::ForeignNextLink,
            )],
            expect: Expect::FailedClean,
            error: "set okta.org_url to the host Okta uses in its links (http://okta-sim-foreign.invalid",
        },
        Case {
            name: "page repeating the previous cursor",
            faults: vec![f(members(2), Times::Always, FaultKind::RepeatCursor)],
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
                    members(1),
                    Times::Once,
                    FaultKind::Slow(Duration::from_secs(4)),
                ),
                f(members(2), Times::Once, FaultKind::ConcurrencyLimited),
            ],
            expect: Expect::Ok,
            error: "",
        },
    ]
}

/// One 429 wait with the simulator's 1 s windows is up to about 4 s: the
/// reset rounded up to a whole second (up to 2 s away), Okta's clock read
/// from whole-second `Date`s (up to 1 s behind), 1 s slack and up to 1 s
/// jitter. In the 429 storm one request can meet two 429s (three requests
/// start at once: app users, app groups, the app), so the budget must hold
/// two such waits: 10 s (8 s, as before, failed that case now and then).
const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(1),
    retry_budget: Duration::from_secs(10),
};

/// The documented bound for one run here: the retry budget of the failing
/// request, one request timeout, and slack for the rest of the run.
const RUN_BOUND: Duration = Duration::from_secs(10 + 1 + 6);

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

// ---------------------------------------------------------------------------
// Issue #13, items 6 and 9: response size cap, retry budget.
// ---------------------------------------------------------------------------

/// A page bigger than `okta.max_response_bytes` fails the request at once
/// (no retry) and the run with nothing written; the error names the
/// endpoint and the size. Pages of 200 app users with their users are
/// about 200 KB here, above a 64 KiB cap.
async fn an_oversized_page_fails_the_run_with_nothing_written(kind: common::Kind) {
    let sim = start_sim().await;
    let Some(db) = common::TestDb::new(kind, "oversized").await else {
        return;
    };
    let text = config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, "").replace(
        "request_timeout = \"5s\"",
        "request_timeout = \"5s\"\nmax_response_bytes = 65536",
    );
    let ctx = context(parse_config(&text, sim.token()), sim.token(), LIMITS).await;
    ctx.store.load_json(&seed(&sim)).await.unwrap();
    let before = dump(&ctx.store).await;
    let report = sync(&ctx).await;
    assert_eq!(report.status, Status::Failed);
    let error = report.error.clone().unwrap_or_default();
    for expected in [
        "nothing was applied",
        "okta.max_response_bytes is 65536 bytes",
        // The simulator sends `Content-Length`: refused before reading.
        "bytes (Content-Length)",
        "/api/v1/",
    ] {
        assert!(error.contains(expected), "{expected:?} in {error}");
    }
    assert_eq!(dump(&ctx.store).await, before);
    assert_eq!(ctx.okta.stats().retries, 0, "not retried");
    ctx.store.close().await;
}

both_kinds!(
    an_okta_page_above_max_response_bytes_fails_the_run_with_nothing_written,
    an_oversized_page_fails_the_run_with_nothing_written
);

/// `check` against a port nobody listens on answers within its own short
/// budget (10 s), not the daemon's 5 minutes, with an error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_refused_port_returns_within_15_s_with_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let db = common::TestDb::new(common::Kind::Sqlite, "refused")
        .await
        .unwrap();
    let text = config_text(
        &format!("http://127.0.0.1:{port}"),
        "0oa1refused",
        &db.config_url,
        "",
    );
    let out = crate::okta_behaviour::run_binary(&text, "00refusedTOKEN", &["check"]).await;
    eprintln!("check against a refused port took {:?}", out.took);
    assert!(
        out.took < Duration::from_secs(15),
        "check took {:?}",
        out.took
    );
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let app = out
        .stdout
        .lines()
        .find(|l| l.starts_with("okta app"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    for expected in [
        "FAILED",
        "gave up on GET /api/v1/apps/0oa1refused",
        "retry budget 10s",
        "Connection refused",
    ] {
        assert!(app.contains(expected), "{expected:?} in {app}");
    }
}

/// A run with `okta.retry_budget = "5s"` against a page that always answers
/// 500 fails after about 5 s (not 300), and every retry was a WARN with its
/// attempt, cause and time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_5s_retry_budget_fails_within_6_s_on_an_always_500_page() {
    let sim = start_sim().await;
    sim.set_faults(vec![Fault::new(
        FaultTarget::route_page(Route::AppUsers, 1),
        Times::Always,
        FaultKind::ServerError(500),
    )]);
    let db = common::TestDb::new(common::Kind::Sqlite, "budget5")
        .await
        .unwrap();
    let text = config_text(sim.url().as_str(), &sim.app_id(), &db.config_url, "").replace(
        "request_timeout = \"5s\"",
        "request_timeout = \"5s\"\nretry_budget = \"5s\"",
    );
    let out =
        crate::okta_behaviour::run_binary(&text, sim.token(), &["run", "--once", "--json"]).await;
    eprintln!(
        "a run with a 5 s budget on an always-500 page took {:?}",
        out.took
    );
    // No retry starts that would begin past the budget, so the run ends
    // within it, plus the last attempt (answered at once here) and the
    // process's start and store setup.
    assert!(out.took < Duration::from_secs(7), "took {:?}", out.took);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("retry budget 5s"), "{error}");
    let retries: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["message"] == "okta request failed; retrying")
        .collect();
    assert!(retries.len() >= 3, "{}", out.stderr);
    for (i, retry) in retries.iter().enumerate() {
        assert_eq!(retry["level"], "WARN");
        assert_eq!(retry["attempt"], json!(i + 1), "{retry}");
        assert_eq!(retry["cause"], "server_error", "{retry}");
        assert!(
            retry["failure"].as_str().unwrap().contains("HTTP 500"),
            "{retry}"
        );
        let left = retry["budget_left_ms"].as_u64().unwrap();
        assert!(left <= 5_000, "{retry}");
    }
    let lefts: Vec<u64> = retries
        .iter()
        .map(|r| r["budget_left_ms"].as_u64().unwrap())
        .collect();
    assert!(lefts.windows(2).all(|w| w[1] < w[0]), "{lefts:?}");
}

/// Issue #13, item 6, measured: peak RSS of `writer-sync run --once` while
/// a fake Okta streams a 500 MB page (chunked, no `Content-Length`), with
/// the default 64 MiB cap. Prints the measurement; run it with
/// `cargo test --test reliability -- --ignored peak_rss --nocapture`
/// (needs GNU time at /usr/bin/time). Result: docs/RELIABILITY.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (streams 500 MB, ~10 s); run explicitly, result in docs/RELIABILITY.md"]
async fn peak_rss_on_a_500_mb_page_stays_under_150_mb() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const TOTAL: u64 = 500 * 1000 * 1000;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let app = axum::Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            // A JSON array of one app user whose displayName never ends.
            let head = br#"[{"id":"00uhuge","status":"ACTIVE","_embedded":{"user":{"id":"00uhuge","status":"ACTIVE","profile":{"email":"huge@x.example","displayName":""#.to_vec();
            let chunk = vec![b'A'; 1 << 20];
            let chunks = TOTAL / chunk.len() as u64;
            let stream = futures_util::stream::iter(
                std::iter::once(head)
                    .chain((0..chunks).map(move |_| chunk.clone()))
                    .chain(std::iter::once(br#""}}}}]"#.to_vec()))
                    .map(move |bytes| {
                        counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        Ok::<_, std::io::Error>(bytes)
                    }),
            );
            axum::response::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(axum::body::Body::from_stream(stream))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let db = common::TestDb::new(common::Kind::Sqlite, "rss")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    common::write_file_mode(
        &config,
        &config_text(&base, "0oahuge", &db.config_url, ""),
        0o600,
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/usr/bin/time")
            .arg("-v")
            .arg(crate::BIN)
            .arg("--config")
            .arg(&config)
            .args(["run", "--once", "--json"])
            .env("WRITER_SYNC_OKTA_API_TOKEN", "00rssTOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kb: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS in {stderr}"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "peak RSS {:.1} MB; server sent {:.1} MB before the client hung up; status {}; error {}",
        peak_kb as f64 / 1024.0,
        sent.load(Ordering::Relaxed) as f64 / 1e6,
        report["status"],
        report["error"]
    );
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("too large: more than 67108864 bytes"),
        "{report}"
    );
    assert!(peak_kb <= 150 * 1024, "peak RSS {peak_kb} kB");
}
