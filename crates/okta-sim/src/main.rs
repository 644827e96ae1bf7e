//! `okta-sim`: runs the Okta simulator as a process, for the demo, manual
//! testing and benchmarks. Prints one JSON line on stdout once listening
//! (`{"url", "token", "app_id", …}`), logs to stderr, stops on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use okta_sim::churn;
use okta_sim::generate::{GenSpec, GroupSizes};
use okta_sim::org::Org;
use okta_sim::{LogTiming, MembersLimit, RateLimits, SimOptions, Simulator, SlowAnswer, SlowPages};
use tracing_subscriber::EnvFilter;

/// A simulated Okta org serving the management API endpoints writer-sync reads.
#[derive(Debug, Parser)]
#[command(name = "okta-sim", version)]
#[command(after_help = "\
Behaves as Okta does where writer-sync depends on it: pagination by opaque cursors in \
`Link: <…>; rel=\"next\"` headers (a full page is followed by a `next` link), Okta's error \
bodies (E0000001 validation, E0000007 not found, E0000011 bad token, E0000047 rate limit), and \
rate limits per Okta bucket with X-Rate-Limit-* headers: /api/v1/apps/* (app users and \
groups), /api/v1/apps/{id}, /api/v1/groups/* (search AND member listings share it), \
/api/v1/groups/{id}, /api/v1/users/*, GET /api/v1/users/{id}, /api/v1/logs, and all others. \
It serves the app-user and user schemas (/api/v1/meta/schemas/apps/{id}/default, \
/api/v1/meta/schemas/user/default), the System Log as a polling query (/api/v1/logs with \
since, filter, sortOrder=ASCENDING and an always-present next link; every change to the org is \
an event with Okta's type and targets, visible after --log-delay-ms) and, with the flags above, \
slow big pages, member pages capped or refused above a limit, an inactive app, and an org that \
keeps changing (--churn-every-ms).")]
#[command(group(ArgGroup::new("org").args(["users", "fixtures", "sample"])))]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Generate an org with this many users (default org: --sample).
    #[arg(long)]
    users: Option<u32>,
    /// Groups of a generated org.
    #[arg(long, default_value_t = 50, requires = "users")]
    groups: u32,
    /// Groups assigned to the app in a generated org.
    #[arg(long, default_value_t = 10, requires = "users")]
    pushed: u32,
    /// Seed of a generated org.
    #[arg(long, default_value_t = 1, requires = "users")]
    seed: u64,
    /// Percentage of generated users also assigned directly.
    #[arg(long, default_value_t = 10, requires = "users")]
    direct_percent: u8,
    /// Generated users whose email repeats another's in different case.
    #[arg(long, default_value_t = 0, requires = "users")]
    duplicate_emails: u32,
    /// Zipf group sizes for a generated org, from LARGEST members down to
    /// SMALLEST (e.g. `20000:5`), instead of random memberships.
    #[arg(long, value_name = "LARGEST:SMALLEST", requires = "users", value_parser = parse_zipf)]
    zipf_groups: Option<(u32, u32)>,

    /// Build the org from a directory holding list-users.har,
    /// list-groups.har and group-user-operations.har.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// The small built-in sample org (the default).
    #[arg(long)]
    sample: bool,

    /// The SSWS token to accept (default: random).
    #[arg(long)]
    token: Option<String>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random latency per request, up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Length of a rate-limit window in seconds (Okta: 60; smaller to scale
    /// time in benchmarks).
    #[arg(long, default_value_t = 60.0)]
    minute_secs: f64,
    /// Requests per window of the bucket `/api/v1/apps` and `/api/v1/apps/*`
    /// except the app itself: app users, app groups (default: Okta's
    /// Workforce limit, 100).
    #[arg(long)]
    limit_apps: Option<u32>,
    /// Requests per window of the bucket `/api/v1/apps/{id}` (exactly).
    #[arg(long)]
    limit_app_by_id: Option<u32>,
    /// Requests per window of the bucket `/api/v1/groups` and
    /// `/api/v1/groups/*` except a group itself: group search AND the member
    /// listings `/api/v1/groups/{id}/users`, which share it in Okta.
    #[arg(long)]
    limit_groups: Option<u32>,
    /// Requests per window of the bucket `/api/v1/groups/{id}` (exactly).
    #[arg(long)]
    limit_group_by_id: Option<u32>,
    /// Requests per window of the bucket `/api/v1/users` and `/api/v1/users/*`
    /// except a user itself.
    #[arg(long)]
    limit_users: Option<u32>,
    /// Requests per window of the bucket `GET /api/v1/users/{idOrLogin}`.
    #[arg(long)]
    limit_user_by_id: Option<u32>,
    /// Requests per window of the bucket `/api/v1/logs`.
    #[arg(long)]
    limit_logs: Option<u32>,
    /// Requests per window for every other endpoint (the schemas, the token
    /// endpoint).
    #[arg(long)]
    limit_other: Option<u32>,
    /// No rate limits at all (headers are still sent).
    #[arg(long, conflicts_with_all = ["limit_apps", "limit_app_by_id", "limit_groups", "limit_group_by_id", "limit_users", "limit_user_by_id", "limit_logs", "limit_other"])]
    unlimited: bool,
    /// Cap every page at this many objects.
    #[arg(long)]
    max_page_size: Option<usize>,
    /// Answer requests beyond this many in flight with a concurrency 429.
    #[arg(long)]
    max_concurrent: Option<usize>,

    /// Pages with more than this many objects are too big to answer in
    /// time (as Okta's big app-user pages): they answer after
    /// --slow-pages-delay-ms, or with 500 E0000009 with --slow-pages-500.
    /// Smaller pages answer at once.
    #[arg(long, value_name = "N")]
    slow_pages_above: Option<usize>,
    /// Delay of a slow page (set it above the client's request timeout).
    #[arg(long, default_value_t = 150_000, requires = "slow_pages_above")]
    slow_pages_delay_ms: u64,
    /// Slow pages answer 500 E0000009 at once instead of late.
    #[arg(long, requires = "slow_pages_above")]
    slow_pages_500: bool,
    /// Member listings (/api/v1/groups/{id}/users) return at most this many
    /// members per page (Okta documents 1,000 as a legacy default that will
    /// change, and recommends 200).
    #[arg(long, value_name = "N")]
    members_max_limit: Option<usize>,
    /// A member listing asking for more than --members-max-limit gets 400
    /// E0000001 "Api validation failed: limit" instead of a smaller page.
    #[arg(long, requires = "members_max_limit")]
    members_refuse_above_max: bool,
    /// Custom attributes of the app-user and user schemas
    /// (/api/v1/meta/schemas/…/default), comma-separated; an empty value
    /// leaves the role attribute out.
    #[arg(long, value_delimiter = ',', default_value = "writerRole")]
    schema_attributes: Vec<String>,
    /// Status of the app (/api/v1/apps/{id}): ACTIVE or INACTIVE.
    #[arg(long, default_value = "ACTIVE")]
    app_status: String,

    /// Delay from an event's `published` time to when a System Log query
    /// sees it (Okta: a few seconds, sometimes more).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    log_delay_ms: u64,
    /// Extra delay per event, random up to this, so events become visible
    /// out of `published` order.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    log_jitter_ms: u64,
    /// Share of events the System Log delivers twice (Okta delivers at
    /// least once), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    log_duplicates: f64,
    /// Every MS milliseconds, change one random app user as an admin would
    /// (a rename, a suspension or a reactivation), so an incremental sync
    /// has System Log events to follow; each change is logged on stderr.
    #[arg(long, value_name = "MS")]
    churn_every_ms: Option<u64>,
    /// Seed of the random changes of --churn-every-ms.
    #[arg(long, default_value_t = 1, requires = "churn_every_ms")]
    churn_seed: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("okta-sim: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut org = build_org(&args)?;
    if !matches!(args.app_status.as_str(), "ACTIVE" | "INACTIVE") {
        return Err(format!(
            "--app-status must be ACTIVE or INACTIVE, got {:?}",
            args.app_status
        ));
    }
    org.set_app_status(&args.app_status);
    if !(0.0..=1.0).contains(&args.log_duplicates) {
        return Err(format!(
            "--log-duplicates must be between 0 and 1, got {}",
            args.log_duplicates
        ));
    }
    if args.churn_every_ms == Some(0) {
        return Err("--churn-every-ms must be at least 1".into());
    }
    if !(args.minute_secs.is_finite() && args.minute_secs > 0.0) {
        return Err(format!(
            "--minute-secs must be positive, got {}",
            args.minute_secs
        ));
    }
    let rate_limits = if args.unlimited {
        RateLimits::unlimited()
    } else {
        let defaults = RateLimits::okta_defaults();
        RateLimits {
            apps: args.limit_apps.unwrap_or(defaults.apps),
            app_by_id: args.limit_app_by_id.unwrap_or(defaults.app_by_id),
            groups: args.limit_groups.unwrap_or(defaults.groups),
            group_by_id: args.limit_group_by_id.unwrap_or(defaults.group_by_id),
            users: args.limit_users.unwrap_or(defaults.users),
            user_by_id: args.limit_user_by_id.unwrap_or(defaults.user_by_id),
            logs: args.limit_logs.unwrap_or(defaults.logs),
            other: args.limit_other.unwrap_or(defaults.other),
            window: Duration::from_secs_f64(args.minute_secs),
        }
    };
    let defaults = SimOptions::default();
    let options = SimOptions {
        listen: args.listen,
        token: args.token.clone().unwrap_or(defaults.token),
        rate_limits,
        latency: Duration::from_millis(args.latency_ms),
        latency_jitter: Duration::from_millis(args.latency_jitter_ms),
        max_page_size: args.max_page_size,
        max_concurrent: args.max_concurrent,
        slow_pages: args.slow_pages_above.map(|more_than| SlowPages {
            more_than,
            answer: if args.slow_pages_500 {
                SlowAnswer::ServerError
            } else {
                SlowAnswer::Delay(Duration::from_millis(args.slow_pages_delay_ms))
            },
        }),
        members_limit: args.members_max_limit.map(|max| MembersLimit {
            max,
            refuse_above: args.members_refuse_above_max,
        }),
        log_timing: LogTiming {
            delay: Duration::from_millis(args.log_delay_ms),
            jitter: Duration::from_millis(args.log_jitter_ms),
            duplicates: args.log_duplicates,
        },
        schema_custom_attributes: args
            .schema_attributes
            .iter()
            .filter(|name| !name.is_empty())
            .cloned()
            .collect(),
        ..defaults
    };
    let (users, groups, app_users) = (
        org.user_count(),
        org.group_count(),
        org.app_user_ids().len(),
    );
    let sim = Simulator::start(org, options)
        .await
        .map_err(|err| err.to_string())?;
    let ready = serde_json::json!({
        "url": sim.url().as_str(),
        "token": sim.token(),
        "app_id": sim.app_id(),
        "users": users,
        "groups": groups,
        "app_users": app_users,
    });
    println!("{ready}");

    let sim = std::sync::Arc::new(sim);
    let churn = args.churn_every_ms.map(|every| {
        let sim = std::sync::Arc::clone(&sim);
        let mut rng = fastrand::Rng::with_seed(args.churn_seed);
        let candidates = sim.org(|o| o.app_user_ids());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(every));
            tick.tick().await;
            for n in 1.. {
                tick.tick().await;
                match sim.org_mut(|o| churn::random_change(o, &mut rng, &candidates, n)) {
                    Some(change) => tracing::info!(?change, "org changed"),
                    None => {
                        tracing::warn!("no app user to change: --churn-every-ms stops");
                        break;
                    }
                }
            }
        })
    });
    wait_for_signal().await?;
    if let Some(churn) = churn {
        churn.abort();
        // The task's copy of the handle is dropped with it.
        let _ = churn.await;
    }
    let Ok(sim) = std::sync::Arc::try_unwrap(sim) else {
        return Err("the simulator is still in use at shutdown".into());
    };
    tracing::info!("shutting down");
    let stats = sim.stats();
    tracing::info!(
        requests = stats.requests,
        rate_limited = stats.rate_limited,
        "okta simulator stopped"
    );
    sim.shutdown().await;
    Ok(())
}

fn parse_zipf(value: &str) -> Result<(u32, u32), String> {
    let (largest, smallest) = value
        .split_once(':')
        .ok_or_else(|| format!("{value:?}: expected LARGEST:SMALLEST, e.g. 20000:5"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{s:?} is not a positive group size"))
    };
    let (largest, smallest) = (number(largest)?, number(smallest)?);
    if smallest > largest {
        return Err(format!("smallest {smallest} is above largest {largest}"));
    }
    Ok((largest, smallest))
}

fn build_org(args: &Args) -> Result<Org, String> {
    if let Some(users) = args.users {
        return Ok(Org::generate(&GenSpec {
            direct_percent: args.direct_percent,
            duplicate_emails: args.duplicate_emails,
            group_sizes: match args.zipf_groups {
                Some((largest, smallest)) => GroupSizes::Zipf { largest, smallest },
                None => GroupSizes::Random,
            },
            ..GenSpec::new(users, args.groups, args.pushed, args.seed)
        }));
    }
    if let Some(dir) = &args.fixtures {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|err| format!("could not read {}: {err}", path.display()))
        };
        return Org::from_fixtures(
            &read("list-users.har")?,
            &read("list-groups.har")?,
            &read("group-user-operations.har")?,
        )
        .map_err(|err| err.to_string());
    }
    Ok(Org::sample())
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|err| format!("cannot watch SIGTERM: {err}"))?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(|err| format!("cannot watch SIGINT: {err}")),
        _ = terminate.recv() => Ok(()),
    }
}
