//! The Okta client against the recorded fixtures and against the simulator.
//!
//! Time-dependent tests run on paused tokio time: client and simulator share
//! one current-thread runtime, so rate-limit waits of a minute take no real
//! time and the asserted durations are exact.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use okta_sim::generate::GenSpec;
use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{
    Bucket, Fault, FaultKind, FaultTarget, LinkStyle, MembersLimit, RateLimits, Route, SimHandle,
    SimOptions, Simulator, SlowAnswer, SlowPages, Times,
};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use writer_sync::okta::auth::OktaAuth;
use writer_sync::okta::error::{OktaError, Resource};
use writer_sync::okta::limit::Family;
use writer_sync::okta::page::PageError;
use writer_sync::okta::wire::{AppGroup, AppUser, Group, User};
use writer_sync::okta::{
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_RETRY_BUDGET, OktaClient, OktaClientConfig,
};
use writer_sync::reconcile::observe::UNASSIGNED_APP_USER_STATUSES;
use writer_sync::secret::Secret;

const APP_ID: &str = "0oa1testapp000000001";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/okta")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn test_app() -> SimApp {
    SimApp {
        id: APP_ID.into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    }
}

fn profile(n: usize) -> Map<String, Value> {
    json!({
        "login": format!("user{n}@example.com"),
        "email": format!("user{n}@example.com"),
        "firstName": format!("First{n}"),
        "lastName": "Last",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// An org with `n` ACTIVE users, all assigned to the app directly.
fn org_with_app_users(n: usize) -> Org {
    let mut org = Org::new(test_app());
    for i in 0..n {
        let id = org.add_user(UserStatus::Active, profile(i));
        org.assign_user(
            &id,
            json!({"writerRole": "member"}).as_object().unwrap().clone(),
        )
        .unwrap();
    }
    org
}

fn options() -> SimOptions {
    SimOptions {
        rate_limits: RateLimits::unlimited(),
        ..SimOptions::default()
    }
}

struct ClientSettings {
    rpm: u32,
    concurrency: usize,
    timeout: Duration,
    retry_budget: Duration,
    max_response_bytes: u64,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            rpm: 6_000,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            retry_budget: DEFAULT_RETRY_BUDGET,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

fn client_with(sim: &SimHandle, token: &str, settings: ClientSettings) -> OktaClient {
    OktaClient::new(OktaClientConfig {
        org_url: sim.url().clone(),
        auth: OktaAuth::Ssws(Secret::new(token)),
        requests_per_minute: NonZeroU32::new(settings.rpm).unwrap(),
        rate_limit_share: 100,
        max_concurrent_requests: NonZeroUsize::new(settings.concurrency).unwrap(),
        request_timeout: settings.timeout,
        retry_budget: settings.retry_budget,
        max_response_bytes: settings.max_response_bytes,
    })
    .unwrap()
}

fn client(sim: &SimHandle) -> OktaClient {
    client_with(sim, sim.token(), ClientSettings::default())
}

fn requests_of(sim: &SimHandle, family: Bucket) -> Vec<okta_sim::RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.family == family)
        .collect()
}

fn requests_on(sim: &SimHandle, route: Route) -> Vec<okta_sim::RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.route == route)
        .collect()
}

/// Captures all `tracing` output of this test binary.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A global subscriber at TRACE level (a thread-local one loses events to
/// tracing's process-wide interest cache while other tests run in parallel).
fn captured_logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        buffer
    })
}

// ---------------------------------------------------------------------------
// Recorded responses.
// ---------------------------------------------------------------------------

/// Bodies of every HAR entry whose request path satisfies `path_ok`,
/// flattened to JSON objects.
fn har_objects(har: &str, path_ok: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    let har: Value = serde_json::from_str(har).unwrap();
    let mut objects = Vec::new();
    for entry in har["log"]["entries"].as_array().unwrap() {
        let method = entry["request"]["method"].as_str().unwrap();
        let url = url::Url::parse(entry["request"]["url"].as_str().unwrap()).unwrap();
        let text = entry["response"]["content"]["text"].as_str().unwrap_or("");
        if text.is_empty() || !path_ok(method, url.path()) {
            continue;
        }
        match serde_json::from_str::<Value>(text).unwrap() {
            Value::Array(items) => objects.extend(items),
            object => objects.push(object),
        }
    }
    objects
}

#[test]
fn every_recorded_user_and_group_parses() {
    let is_users = |_: &str, path: &str| path == "/api/v1/users" || path.ends_with("/users");
    let mut users: Vec<User> = Vec::new();
    for har in ["list-users.har", "group-user-operations.har"] {
        for object in har_objects(&fixture(har), is_users) {
            users.push(serde_json::from_value(object).unwrap());
        }
    }
    let distinct: BTreeMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    // 161 users listed in list-users.har, plus the one created in the group
    // operations recording.
    assert_eq!(distinct.len(), 162);
    let listed = har_objects(&fixture("list-users.har"), |m, p| {
        m == "GET" && p == "/api/v1/users"
    });
    let listed: BTreeSet<String> = listed
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 161);

    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for user in distinct.values() {
        *statuses.entry(user.status.as_str()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("ACTIVE", 107),
            ("LOCKED_OUT", 1),
            ("PASSWORD_EXPIRED", 2),
            ("PROVISIONED", 2),
            ("STAGED", 49),
            ("SUSPENDED", 1),
        ])
    );
    assert!(distinct.values().all(|u| u.profile.login.is_some()));
    assert!(distinct.values().all(|u| u.profile.email.is_some()));
    let with = |key: &str| {
        distinct
            .values()
            .filter(|u| u.profile.extra.contains_key(key))
            .count()
    };
    // Base attributes without a field of their own and custom attributes
    // stay in `extra`; `null` values are kept as null.
    assert_eq!(with("division"), 4);
    assert_eq!(with("nickName"), 12);
    assert_eq!(with("secondEmail"), 162);
    assert_eq!(
        distinct
            .values()
            .filter(|u| u.profile.display_name.is_some())
            .count(),
        9
    );
    let shared = distinct
        .values()
        .filter(|u| {
            u.profile
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case("vijet.mahabaleshwar@okta.com"))
        })
        .count();
    assert_eq!(shared, 3);

    let groups: Vec<Group> = har_objects(&fixture("list-groups.har"), |_, p| p == "/api/v1/groups")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let distinct_groups: BTreeMap<&str, &Group> =
        groups.iter().map(|g| (g.id.as_str(), g)).collect();
    assert_eq!(distinct_groups.len(), 154);
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for group in distinct_groups.values() {
        *types
            .entry(group.group_type.as_deref().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        types,
        BTreeMap::from([("APP_GROUP", 128), ("BUILT_IN", 1), ("OKTA_GROUP", 25)])
    );
    assert!(distinct_groups.values().all(|g| !g.profile.name.is_empty()));
    let ad_groups = distinct_groups
        .values()
        .filter(|g| g.profile.extra.contains_key("samAccountName"))
        .count();
    assert_eq!(ad_groups, 20);
    assert!(
        distinct_groups
            .values()
            .any(|g| g.profile.description.is_none())
    );

    let app_users: Vec<AppUser> =
        serde_json::from_str(&fixture("spec-examples/app-users.json")).unwrap();
    assert_eq!(app_users.len(), 1);
    assert_eq!(app_users[0].scope.as_deref(), Some("USER"));
    assert_eq!(app_users[0].profile["role"], json!("Tester"));
    // A provisioning app's app user: PROVISIONED is an assignment in force
    // (only REVOKED, DEPROVISIONED and INACTIVE are treated as unassigned).
    assert_eq!(app_users[0].status.as_deref(), Some("PROVISIONED"));
    assert!(!UNASSIGNED_APP_USER_STATUSES.contains(&"PROVISIONED"));
    let embedded = app_users[0].user.as_ref().unwrap();
    assert_eq!(embedded.status, "ACTIVE");
    assert_eq!(
        embedded.profile.email.as_deref(),
        Some("saml.test@example.com")
    );

    let app_groups: Vec<AppGroup> =
        serde_json::from_str(&fixture("spec-examples/app-group-assignments.json")).unwrap();
    assert_eq!(app_groups.len(), 1);
    assert_eq!(app_groups[0].priority, Some(0));
    assert_eq!(app_groups[0].profile["department"], json!("marketing"));
    assert_eq!(app_groups[0].group, None, "_embedded holds only metadata");

    let filtered: Vec<User> =
        serde_json::from_str(&fixture("spec-examples/users-filter.json")).unwrap();
    assert_eq!(filtered[0].status, "LOCKED_OUT");
}

/// The recorded member listings (issue #14, items 2 and 9): asked without a
/// `limit`, Okta's `self` link carries its default `limit=1000`, and it
/// builds its links on the org's own host, not on the host the request was
/// sent to (the recording went through another host). A `next` link like
/// that is refused, and the error says which host to configure.
#[test]
fn recorded_member_listing_links_carry_oktas_default_limit_and_oktas_host() {
    use writer_sync::okta::page::{PageGuard, parse_link_header};
    let har: Value = serde_json::from_str(&fixture("group-user-operations.har")).unwrap();
    let listings: Vec<&Value> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["request"]["method"] == "GET"
                && e["request"]["url"].as_str().unwrap().ends_with("/users")
        })
        .collect();
    assert_eq!(listings.len(), 2);
    for entry in listings {
        let requested = url::Url::parse(entry["request"]["url"].as_str().unwrap()).unwrap();
        let link = entry["response"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case("link"))
            .unwrap()["value"]
            .as_str()
            .unwrap();
        let links = parse_link_header(link).unwrap();
        let target = url::Url::parse(&links[0].target).unwrap();
        assert_eq!(links[0].rels, ["self"]);
        assert_eq!(writer_sync::okta::page::limit_of(&target), Some(1_000));
        assert_eq!(target.path(), requested.path());
        assert_ne!(target.host_str(), requested.host_str());
        let mut guard = PageGuard::new(&requested, 10);
        let message = guard.admit(&target).unwrap_err().to_string();
        assert!(
            message.contains(&format!(
                "set okta.org_url to the host Okta uses in its links (https://{})",
                target.host_str().unwrap()
            )),
            "{message}"
        );
    }
}

// ---------------------------------------------------------------------------
// Pagination.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn app_users_1001_in_three_pages_every_user_once_in_order() {
    let org = org_with_app_users(1_001);
    let expected = org.app_user_ids();
    let sim = Simulator::start(org, options()).await.unwrap();
    let client = client(&sim);

    let users = client.list_app_users(APP_ID).await.unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(
        users
            .iter()
            .all(|u| u.user.as_ref().is_some_and(|user| user.id == u.id))
    );
    assert!(
        users
            .iter()
            .all(|u| u.profile["writerRole"] == json!("member"))
    );

    let requests = requests_of(&sim, Bucket::Apps);
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests.iter().map(|r| r.page).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for request in &requests {
        assert!(request.authorized);
        assert_eq!(request.accept.as_deref(), Some("application/json"));
        assert_eq!(
            request.user_agent.as_deref(),
            Some(concat!("writer-sync/", env!("CARGO_PKG_VERSION")))
        );
        let query = request.query.as_deref().unwrap();
        assert!(
            query.contains("limit=500") && query.contains("expand=user"),
            "{query}"
        );
    }
    let stats = client.stats();
    assert_eq!(stats.requests[&(Family::Apps, "200".to_owned())], 3);
    assert_eq!(stats.retries, 0);
    sim.shutdown().await;
}

/// The same listing on a real multi-threaded runtime (no paused time), with
/// concurrent listings sharing one client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_runtime_concurrent_listings() {
    let org = org_with_app_users(1_001);
    let expected = org.app_user_ids();
    let sim = Simulator::start(
        org,
        SimOptions {
            latency: Duration::from_millis(2),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let listings: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_app_users(APP_ID).await })
        })
        .collect();
    for listing in listings {
        let users = listing.await.unwrap().unwrap();
        assert_eq!(
            users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
            expected
        );
    }
    assert_eq!(sim.stats().requests, 9);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn odd_page_sizes_with_separate_and_comma_joined_link_headers() {
    let mut org = Org::new(test_app());
    let mut group_ids = Vec::new();
    for i in 0..45u32 {
        let id = org.add_group(&format!("Team {i:02}"), None);
        org.assign_group(&id, i, Map::new()).unwrap();
        group_ids.push(id);
    }
    group_ids.sort();
    let sim = Simulator::start(
        org,
        SimOptions {
            max_page_size: Some(7),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    for style in [LinkStyle::SeparateLines, LinkStyle::CommaJoined] {
        sim.set_link_style(style);
        sim.reset_log();
        let groups = client.list_app_groups(APP_ID).await.unwrap();
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        assert_eq!(ids, group_ids, "{style:?}");
        assert!(
            groups
                .iter()
                .all(|g| g.group.is_some() && g.priority.is_some())
        );
        // 45 = 6 * 7 + 3.
        assert_eq!(sim.stats().requests, 7, "{style:?}");
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn group_members_and_exact_name_search() {
    let mut org = org_with_app_users(450);
    let tricky = r#"R&D "core" \ team"#;
    let eng = org.add_group("Eng", None);
    org.add_group("eng", None);
    org.add_group("Eng Team", None);
    let tricky_id = org.add_group(tricky, Some("quotes and backslashes"));
    let members: Vec<String> = org.user_ids();
    for member in &members {
        org.add_member(&eng, member).unwrap();
    }
    let sim = Simulator::start(org, options()).await.unwrap();
    let client = client(&sim);

    let found = client.find_groups_by_name("Eng").await.unwrap();
    assert_eq!(
        found.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        [eng.as_str()]
    );
    let search = requests_of(&sim, Bucket::Groups);
    assert!(
        search[0]
            .query
            .as_deref()
            .unwrap()
            .starts_with("search=profile.name%20eq%20%22Eng%22"),
        "{search:?}"
    );
    let found = client.find_groups_by_name(tricky).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, tricky_id);
    assert_eq!(found[0].profile.name, tricky);
    assert!(
        client
            .find_groups_by_name("Nobody")
            .await
            .unwrap()
            .is_empty()
    );

    let listed = client.list_group_members(&eng).await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        members
    );
    // 450 members fit one page of 1,000 (Okta's default and the size asked).
    let pages = requests_on(&sim, Route::GroupMembers);
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].query.as_deref().unwrap().contains("limit=1000"),
        "{pages:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn get_app_and_clear_not_found_errors() {
    let sim = Simulator::start(org_with_app_users(3), options())
        .await
        .unwrap();
    let client = client(&sim);
    let app = client.get_app(APP_ID).await.unwrap();
    assert_eq!(
        (
            app.id.as_str(),
            app.label.as_str(),
            app.name.as_str(),
            app.status.as_str()
        ),
        (APP_ID, "Writer", "writer", "ACTIVE")
    );

    let err = client.get_app("0oaMISSING").await.unwrap_err();
    assert!(
        matches!(&err, OktaError::NotFound { resource: Resource::App(id), .. } if id == "0oaMISSING")
    );
    let message = err.to_string();
    assert!(
        message.contains("no app with id 0oaMISSING (check okta.app_id)"),
        "{message}"
    );
    assert!(message.contains("E0000007"), "{message}");
    let err = client.list_app_users("0oaMISSING").await.unwrap_err();
    assert!(
        err.to_string().starts_with("no app with id 0oaMISSING"),
        "{err}"
    );
    let err = client.list_group_members("00gGONE").await.unwrap_err();
    assert!(
        matches!(&err, OktaError::NotFound { resource: Resource::Group(id), .. } if id == "00gGONE")
    );
    assert!(!err.is_transient());
    // Nothing was retried.
    assert_eq!(client.stats().retries, 0);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn for_each_page_streams_and_stops_at_a_callback_error() {
    let sim = Simulator::start(org_with_app_users(1_200), options())
        .await
        .unwrap();
    let client = client(&sim);
    let mut sizes = Vec::new();
    let pages = client
        .for_each_page(
            client.app_users_url(APP_ID).unwrap(),
            |page: Vec<AppUser>| {
                sizes.push(page.len());
                Ok::<(), OktaError>(())
            },
        )
        .await
        .unwrap();
    assert_eq!((pages.pages, sizes), (3, vec![500, 500, 200]));
    assert_eq!(pages.smaller_pages, None);

    #[derive(Debug)]
    enum MyError {
        Okta(OktaError),
        Full,
    }
    impl From<OktaError> for MyError {
        fn from(err: OktaError) -> Self {
            MyError::Okta(err)
        }
    }
    sim.reset_log();
    let result = client
        .for_each_page(client.app_users_url(APP_ID).unwrap(), |_: Vec<AppUser>| {
            Err::<(), _>(MyError::Full)
        })
        .await;
    assert!(matches!(result, Err(MyError::Full)));
    assert_eq!(sim.stats().requests, 1);

    // A first URL off the org is refused before any request.
    let foreign = url::Url::parse("https://elsewhere.example/api/v1/users").unwrap();
    let result = client
        .for_each_page(foreign, |_: Vec<User>| Ok::<(), MyError>(()))
        .await;
    assert!(matches!(
        result,
        Err(MyError::Okta(OktaError::Pagination { .. }))
    ));
    assert_eq!(sim.stats().requests, 1);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn foreign_next_link_and_repeated_cursor_fail_the_listing() {
    let sim = Simulator::start(org_with_app_users(1_200), options())
        .await
        .unwrap();
    let client = client(&sim);

    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 1),
        Times::Once,
        FaultKind::ForeignNextLink,
    )]);
    let err = client.list_app_users(APP_ID).await.unwrap_err();
    assert!(
        matches!(
            &err,
            OktaError::Pagination {
                reason: PageError::ForeignOrigin { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("okta-sim-foreign.invalid"), "{message}");
    assert!(message.contains(sim.url().host_str().unwrap()), "{message}");

    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 2),
        Times::Once,
        FaultKind::RepeatCursor,
    )]);
    let err = client.list_app_users(APP_ID).await.unwrap_err();
    assert!(
        matches!(
            &err,
            OktaError::Pagination {
                reason: PageError::CursorLoop { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("cursor loop"), "{err}");
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// Retries and errors.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn server_error_on_page_3_is_retried_then_the_listing_completes() {
    let org = org_with_app_users(1_001);
    let expected = org.app_user_ids();
    let sim = Simulator::start(org, options()).await.unwrap();
    let client = client(&sim);
    sim.set_faults(vec![
        Fault::new(
            FaultTarget::page(Bucket::Apps, 3),
            Times::Once,
            FaultKind::ServerError(500),
        ),
        Fault::new(
            FaultTarget::page(Bucket::Apps, 2),
            Times::Once,
            FaultKind::ServerError(503),
        ),
    ]);
    let users = client.list_app_users(APP_ID).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        expected
    );
    let pages: Vec<(u32, u16)> = requests_of(&sim, Bucket::Apps)
        .iter()
        .map(|r| (r.page, r.status))
        .collect();
    assert_eq!(pages, [(1, 200), (2, 503), (2, 200), (3, 500), (3, 200)]);
    // One failure per page: retried as it was, `limit=500` throughout.
    assert!(
        requests_of(&sim, Bucket::Apps).iter().all(|r| r
            .query
            .as_deref()
            .unwrap()
            .contains("limit=500"))
    );
    let stats = client.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.requests[&(Family::Apps, "503".to_owned())], 1);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn persistent_server_error_fails_the_whole_listing_within_the_budget() {
    let sim = Simulator::start(org_with_app_users(1_001), options())
        .await
        .unwrap();
    let budget = Duration::from_secs(60);
    let client = client_with(
        &sim,
        sim.token(),
        ClientSettings {
            retry_budget: budget,
            ..ClientSettings::default()
        },
    );
    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 3),
        Times::Always,
        FaultKind::ServerError(500),
    )]);
    let started = Instant::now();
    let result = client.list_app_users(APP_ID).await;
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(err.is_transient());
    assert!(elapsed <= budget, "{elapsed:?}");
    // Backoff 0.5, 1, 2, 4, 8, 16, 30 s (halved at worst by jitter) leaves
    // several attempts inside 60 s.
    let page3: Vec<_> = requests_of(&sim, Bucket::Apps)
        .into_iter()
        .filter(|r| r.page == 3)
        .collect();
    assert!(page3.len() >= 5, "{}", page3.len());
    let OktaError::RetriesExhausted { attempts, last, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*attempts as usize, page3.len());
    let message = err.to_string();
    let path = format!("GET /api/v1/apps/{APP_ID}/users");
    for expected in [
        path.as_str(),
        "HTTP 500",
        "E0000009",
        "Internal Server Error",
        page3.last().unwrap().request_id.as_str(),
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing in {message}"
        );
    }
    assert!(
        !message.contains("after="),
        "no query in the endpoint: {message}"
    );
    assert_eq!(
        last.request_id.as_deref(),
        Some(page3.last().unwrap().request_id.as_str())
    );
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn truncated_json_is_a_decode_error_naming_the_endpoint() {
    let sim = Simulator::start(org_with_app_users(1_001), options())
        .await
        .unwrap();
    let client = client(&sim);
    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 2),
        Times::Once,
        FaultKind::TruncatedBody,
    )]);
    let err = client.list_app_users(APP_ID).await.unwrap_err();
    assert!(matches!(err, OktaError::Decode { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "could not decode the okta response to GET /api/v1/apps/{APP_ID}/users: EOF while parsing"
        )),
        "{message}"
    );
    assert!(message.contains("at line 1 column"), "{message}");
    assert!(!err.is_transient());
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rate_limited_request_waits_until_the_reset_and_carries_retry_headers() {
    let sim = Simulator::start(org_with_app_users(10), options())
        .await
        .unwrap();
    let client = client(&sim);
    sim.set_faults(vec![Fault::rate_limit_storm(1)]);
    let started = Instant::now();
    let users = client.list_app_users(APP_ID).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(users.len(), 10);
    // The storm's 429 names the reset of a fresh 60 s window; the client
    // waits reset - Date + 1 s (Date truncates, Reset rounds up) + jitter < 1 s.
    assert!(elapsed >= Duration::from_secs(61), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(63), "{elapsed:?}");

    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].status, 429);
    assert_eq!(requests[0].retry_for, None);
    assert_eq!(requests[1].status, 200);
    assert_eq!(
        requests[1].retry_for.as_deref(),
        Some(requests[0].request_id.as_str())
    );
    assert_eq!(requests[1].retry_count.as_deref(), Some("1"));
    let stats = client.stats();
    assert_eq!((stats.rate_limited, stats.retries), (1, 1));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_429_is_retried_after_a_short_backoff() {
    let sim = Simulator::start(org_with_app_users(10), options())
        .await
        .unwrap();
    let client = client(&sim);
    sim.set_faults(vec![Fault::new(
        FaultTarget::any(),
        Times::Count(2),
        FaultKind::ConcurrencyLimited,
    )]);
    let started = Instant::now();
    client.list_app_users(APP_ID).await.unwrap();
    // Two waits bounded by the reset estimate (now + 1 s, plus slack) and
    // the backoff, never a whole window.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().rate_limited, 2);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_response_times_out_and_is_retried() {
    let sim = Simulator::start(org_with_app_users(10), options())
        .await
        .unwrap();
    let client = client_with(
        &sim,
        sim.token(),
        ClientSettings {
            timeout: Duration::from_secs(10),
            ..ClientSettings::default()
        },
    );
    sim.set_faults(vec![Fault::new(
        FaultTarget::any(),
        Times::Once,
        FaultKind::Slow(Duration::from_secs(120)),
    )]);
    let started = Instant::now();
    let users = client.list_app_users(APP_ID).await.unwrap();
    assert_eq!(users.len(), 10);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(12),
        "{elapsed:?}"
    );
    let stats = client.stats();
    assert_eq!(stats.requests[&(Family::Apps, "error".to_owned())], 1);
    assert_eq!(stats.retries, 1);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unauthorized_and_forbidden_fail_at_once_without_leaking_the_token() {
    let logs = captured_logs();
    let sim = Simulator::start(org_with_app_users(10), options())
        .await
        .unwrap();
    let wrong_token = "00WRONGtokenVALUE-do-not-print";
    let wrong = client_with(&sim, wrong_token, ClientSettings::default());

    let err = wrong.list_app_users(APP_ID).await.unwrap_err();
    assert!(matches!(err, OktaError::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    for expected in [
        "HTTP 401",
        "E0000011",
        "SSWS token is invalid, expired",
        "30 days",
        "create a new one",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing in {message}"
        );
    }
    assert_eq!(sim.stats().requests, 1, "no retry on 401");

    sim.set_forbidden(true);
    let good = client(&sim);
    let err = good.list_app_users(APP_ID).await.unwrap_err();
    assert!(matches!(err, OktaError::Forbidden { .. }), "{err:?}");
    let forbidden = err.to_string();
    for expected in [
        "HTTP 403",
        "E0000006",
        "lacks permission",
        "okta.apps.read",
        &format!("GET /api/v1/apps/{APP_ID}/users"),
    ] {
        assert!(
            forbidden.contains(expected),
            "{expected:?} missing in {forbidden}"
        );
    }
    assert_eq!(sim.stats().requests, 2, "no retry on 403");

    // A successful run logs requests, still without the (right) token.
    sim.set_forbidden(false);
    good.list_app_users(APP_ID).await.unwrap();

    let logged = logs.text();
    assert!(
        logged.contains("okta request"),
        "the capture works: {logged}"
    );
    for token in [wrong_token, sim.token()] {
        for text in [
            &message,
            &format!("{err:?}"),
            &forbidden,
            &format!("{wrong:?}"),
            &format!("{good:?}"),
            &logged,
        ] {
            assert!(!text.contains(token), "token leaked into: {text}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried_until_the_budget_is_spent() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = OktaClient::new(OktaClientConfig {
        org_url: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        auth: OktaAuth::Ssws(Secret::new("00connTOKEN")),
        requests_per_minute: NonZeroU32::new(600).unwrap(),
        rate_limit_share: 100,
        max_concurrent_requests: NonZeroUsize::new(2).unwrap(),
        request_timeout: Duration::from_secs(5),
        retry_budget: Duration::from_secs(20),
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap();
    let started = Instant::now();
    let err = client.list_app_users(APP_ID).await.unwrap_err();
    assert!(started.elapsed() <= Duration::from_secs(20));
    let OktaError::RetriesExhausted { attempts, last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*attempts >= 4, "{attempts}");
    assert_eq!(last.status, None);
    assert!(last.transport.is_some());
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains(&format!("GET /api/v1/apps/{APP_ID}/users")),
        "{err}"
    );
    let stats = client.stats();
    assert_eq!(
        stats.requests[&(Family::Apps, "error".to_owned())],
        u64::from(*attempts)
    );
}

#[tokio::test(start_paused = true)]
async fn users_listing_filters_and_bad_searches_through_for_each_page() {
    let mut org = org_with_app_users(5);
    let ids = org.user_ids();
    org.set_user_status(&ids[0], UserStatus::Deprovisioned)
        .unwrap();
    org.add_group("Imported", None);
    let sim = Simulator::start(
        org,
        SimOptions {
            max_page_size: Some(2),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let list = |path: &str| client.org_url().join(path).unwrap();
    let collect = |url: url::Url| {
        let client = client.clone();
        async move {
            let mut users = Vec::new();
            client
                .for_each_page(url, |page: Vec<User>| {
                    users.extend(page);
                    Ok::<(), OktaError>(())
                })
                .await
                .map(|_| users)
        }
    };

    // A plain user list omits DEPROVISIONED users; a filter includes them.
    let plain = collect(list("api/v1/users?limit=200")).await.unwrap();
    assert_eq!(plain.len(), 4);
    assert!(plain.iter().all(|u| u.status == "ACTIVE"));
    let filtered = collect(list(
        "api/v1/users?filter=status%20eq%20%22DEPROVISIONED%22",
    ))
    .await
    .unwrap();
    assert_eq!(
        filtered.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [ids[0].as_str()]
    );

    // Filters are exact and eq-only; a bad expression is a 400, not retried.
    let mut groups = Vec::new();
    client
        .for_each_page(
            list("api/v1/groups?filter=type%20eq%20%22OKTA_GROUP%22"),
            |page: Vec<Group>| {
                groups.extend(page);
                Ok::<(), OktaError>(())
            },
        )
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    sim.reset_log();
    let err = collect(list("api/v1/users?filter=status%20sw%20%22A%22"))
        .await
        .unwrap_err();
    assert!(matches!(err, OktaError::UnexpectedStatus { .. }), "{err:?}");
    assert!(err.to_string().contains("E0000031"), "{err}");
    assert_eq!(sim.stats().requests, 1);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// Budgets.
// ---------------------------------------------------------------------------

/// Largest number of arrivals within any 60 s span.
fn max_in_any_minute(arrivals: &[Duration]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + Duration::from_secs(60))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn the_client_never_exceeds_its_budget_in_any_minute() {
    let rpm = 20;
    let mut org = org_with_app_users(500);
    let group = org.add_group("Everyone Here", None);
    for user in org.user_ids() {
        org.add_member(&group, &user).unwrap();
    }
    // Page size 10: 50 full member pages plus the empty page a full last page
    // links to (as Okta does), 2.5 times the per-minute budget. The
    // latency jitter lets requests overtake each other on the way in.
    let sim = Simulator::start(
        org,
        SimOptions {
            max_page_size: Some(10),
            latency: Duration::from_millis(20),
            latency_jitter: Duration::from_millis(400),
            ..options()
        },
    )
    .await
    .unwrap();
    let settings = || ClientSettings {
        rpm,
        concurrency: 4,
        ..ClientSettings::default()
    };

    // 1. Against an unlimited server, the arrivals themselves obey the budget.
    let client = client_with(&sim, sim.token(), settings());
    let started = Instant::now();
    let members = client.list_group_members(&group).await.unwrap();
    assert_eq!(members.len(), 500);
    let arrivals: Vec<Duration> = sim.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 51);
    assert!(max_in_any_minute(&arrivals) <= rpm as usize);
    assert!(
        started.elapsed() < Duration::from_secs(155),
        "{:?}",
        started.elapsed()
    );

    // 2. Against a server whose limit equals the budget: not a single 429.
    sim.set_rate_limits(RateLimits::uniform(rpm, Duration::from_secs(60)));
    sim.reset_log();
    let client = client_with(&sim, sim.token(), settings());
    let members = client.list_group_members(&group).await.unwrap();
    assert_eq!(members.len(), 500);
    assert_eq!(sim.stats().rate_limited, 0);
    assert_eq!(client.stats().rate_limited, 0);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pacing_from_headers_avoids_429_when_okta_allows_less_than_the_budget() {
    // The server allows 3 app requests per minute; the client's budget is far
    // higher, so only the X-Rate-Limit headers can keep it from a 429.
    let sim = Simulator::start(
        org_with_app_users(2_001),
        SimOptions {
            rate_limits: RateLimits {
                apps: 3,
                ..RateLimits::okta_defaults()
            },
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let started = Instant::now();
    let users = client.list_app_users(APP_ID).await.unwrap();
    assert_eq!(users.len(), 2_001);
    assert_eq!(sim.stats().rate_limited, 0);
    // 5 pages at most 3 per window: pages 1-3 use the first window, the
    // third's `Remaining: 0` holds the family until the reset (+1 s), and
    // pages 4-5 use the second.
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(65),
        "{:?}",
        started.elapsed()
    );
    let remaining = client.stats().rate_limit[&Family::Apps];
    assert_eq!(remaining.limit, Some(3));
    assert_eq!(remaining.remaining, Some(1));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// The simulator's orgs through the client.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn generated_org_lists_consistently_and_mutations_show_up() {
    let org = Org::generate(&GenSpec::new(3_000, 30, 5, 11));
    let app_id = org.app_id().to_owned();
    let sim = Simulator::start(org, options()).await.unwrap();
    let client = client(&sim);

    let users = client.list_app_users(&app_id).await.unwrap();
    let expected = sim.org(|org| org.app_user_ids());
    assert_eq!(
        users.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        users
            .iter()
            .all(|u| u.user.as_ref().unwrap().status != "DEPROVISIONED")
    );
    let scopes: BTreeSet<&str> = users.iter().filter_map(|u| u.scope.as_deref()).collect();
    assert_eq!(scopes, BTreeSet::from(["GROUP", "USER"]));

    let groups = client.list_app_groups(&app_id).await.unwrap();
    assert_eq!(groups.len(), 5);
    for group in &groups {
        let members = client.list_group_members(&group.id).await.unwrap();
        assert_eq!(
            members.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
            sim.org(|org| org.group_members(&group.id).unwrap())
        );
        let name = &group.group.as_ref().unwrap().profile.name;
        let found = client.find_groups_by_name(name).await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
    }

    // Between runs: suspend one user, deprovision another, rename a group.
    let (suspended, deprovisioned) = (expected[0].clone(), expected[1].clone());
    let renamed = groups[0].id.clone();
    sim.org_mut(|org| {
        org.set_user_status(&suspended, UserStatus::Suspended)
            .unwrap();
        org.set_user_status(&deprovisioned, UserStatus::Deprovisioned)
            .unwrap();
        org.rename_group(&renamed, "Renamed Team").unwrap();
    });
    let users = client.list_app_users(&app_id).await.unwrap();
    let by_id: BTreeMap<&str, &AppUser> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    assert_eq!(
        by_id[suspended.as_str()].user.as_ref().unwrap().status,
        "SUSPENDED"
    );
    assert!(!by_id.contains_key(deprovisioned.as_str()));
    let found = client.find_groups_by_name("Renamed Team").await.unwrap();
    assert_eq!(found[0].id, renamed);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn sample_org_through_the_client() {
    let org = Org::sample();
    let app_id = org.app_id().to_owned();
    let sim = Simulator::start(org, options()).await.unwrap();
    let client = client(&sim);
    let users = client.list_app_users(&app_id).await.unwrap();
    assert_eq!(users.len(), 19);
    let groups = client.list_app_groups(&app_id).await.unwrap();
    assert_eq!(groups.len(), 4);
    assert_eq!(
        client
            .find_groups_by_name("Test Group")
            .await
            .unwrap()
            .len(),
        2
    );
    let roles: BTreeSet<String> = users
        .iter()
        .filter_map(|u| u.profile.get("writerRole").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    assert!(
        roles.contains("admin") && roles.contains("member"),
        "{roles:?}"
    );
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// Okta as it really behaves (issue #14).
// ---------------------------------------------------------------------------

/// GUARD (issue #14, item 3): Okta counts the member listings
/// (`/groups/{id}/users`) and group search against one bucket,
/// `/api/v1/groups`. A client that paced them as two families would follow
/// the headers of one listing and send the other into a window it had
/// already used up: 429s. Interleaved on one request slot, against Okta's
/// per-bucket limit, there are none, and both count against `groups`.
#[tokio::test(start_paused = true)]
async fn member_listings_and_group_search_share_oktas_groups_bucket() {
    let mut org = org_with_app_users(600);
    let big = org.add_group("Big", None);
    for id in org.user_ids() {
        org.add_member(&big, &id).unwrap();
    }
    for i in 0..6 {
        org.add_group(&format!("Team {i}"), None);
    }
    let sim = Simulator::start(
        org,
        SimOptions {
            rate_limits: RateLimits {
                groups: 8,
                ..RateLimits::uniform(u32::MAX, Duration::from_secs(60))
            },
            // 600 members: 12 full pages and the empty one after them.
            max_page_size: Some(50),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let client = client_with(
        &sim,
        sim.token(),
        ClientSettings {
            concurrency: 1,
            ..ClientSettings::default()
        },
    );
    let started = Instant::now();
    let members = client.list_group_members(&big);
    let searches = async {
        for i in 0..6 {
            let found = client
                .find_groups_by_name(&format!("Team {i}"))
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
        }
    };
    let (members, ()) = tokio::join!(members, searches);
    assert_eq!(members.unwrap().len(), 600);
    let routes: BTreeSet<Route> = sim.requests().iter().map(|r| r.route).collect();
    assert_eq!(
        routes,
        BTreeSet::from([Route::Groups, Route::GroupMembers]),
        "both listings ran"
    );
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0, "{:?}", sim.requests());
    assert_eq!(stats.requests_by_family[&Bucket::Groups], 19);
    assert_eq!(client.stats().requests_of(Family::Groups), 19);
    // 19 requests at 8 per window: three windows, two waits for a reset.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(120) && elapsed < Duration::from_secs(130),
        "{elapsed:?}"
    );
    sim.shutdown().await;
}

/// The app (`/apps/{id}`) and a user (`/users/{id}`) are buckets of their
/// own in Okta: the app's object does not drain the app-user listing's
/// scarce `apps` bucket.
#[tokio::test(start_paused = true)]
async fn the_app_itself_is_a_bucket_of_its_own() {
    let sim = Simulator::start(
        org_with_app_users(10),
        SimOptions {
            rate_limits: RateLimits {
                apps: 1,
                ..RateLimits::uniform(u32::MAX, Duration::from_secs(60))
            },
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let started = Instant::now();
    client.list_app_users(APP_ID).await.unwrap();
    for _ in 0..3 {
        client.get_app(APP_ID).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.requests_by_family[&Bucket::Apps], 1);
    assert_eq!(stats.requests_by_family[&Bucket::AppById], 3);
    assert_eq!(client.stats().requests_of(Family::AppById), 3);
    sim.shutdown().await;
}

/// Issue #14, item 1: pages above 250 app users answer after more than the
/// client's timeout. After two timeouts in a row the page is asked again
/// with `limit` halved (only that parameter changes), and the rest of the
/// listing follows Okta's `next` links, which keep the smaller limit.
#[tokio::test(start_paused = true)]
async fn a_page_that_times_out_twice_is_asked_again_with_half_the_limit() {
    let logs = captured_logs();
    let org = org_with_app_users(1_001);
    let expected = org.app_user_ids();
    let sim = Simulator::start(
        org,
        SimOptions {
            slow_pages: Some(SlowPages {
                more_than: 250,
                answer: SlowAnswer::Delay(Duration::from_secs(300)),
            }),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client_with(
        &sim,
        sim.token(),
        ClientSettings {
            timeout: Duration::from_secs(10),
            ..ClientSettings::default()
        },
    );
    let mut users = Vec::new();
    let listed = client
        .for_each_page(
            client.app_users_url(APP_ID).unwrap(),
            |page: Vec<AppUser>| {
                users.extend(page.into_iter().map(|u| u.id));
                Ok::<(), OktaError>(())
            },
        )
        .await
        .unwrap();
    assert_eq!(users, expected, "every user once, in order");
    let smaller = listed.smaller_pages.expect("the listing shrank");
    assert_eq!((smaller.requested, smaller.smallest), (500, 250));
    assert_eq!(
        smaller.endpoint.to_string(),
        format!("GET /api/v1/apps/{APP_ID}/users")
    );
    let queries: Vec<String> = requests_of(&sim, Bucket::Apps)
        .iter()
        .map(|r| r.query.clone().unwrap_or_default())
        .collect();
    // Two timeouts at 500 (the simulator logs only what it answered), then
    // 250 per page: 250, 250, 250, 250, 1.
    let stats = client.stats();
    assert_eq!(stats.requests[&(Family::Apps, "error".to_owned())], 2);
    assert_eq!(queries.len(), 5, "{queries:?}");
    assert_eq!(queries[0], "limit=250&expand=user");
    assert!(
        queries[1..]
            .iter()
            .all(|q| q.contains("&limit=250&expand=user"))
    );
    let text = logs.text();
    let retry = text
        .lines()
        .find(|l| l.contains("okta request failed; retrying") && l.contains("next_limit=250"))
        .unwrap_or_else(|| panic!("no retry line with the new limit:\n{text}"));
    for field in ["attempt=2", "timeout", "budget_left_ms=", "delay_ms="] {
        assert!(retry.contains(field), "{field} missing: {retry}");
    }
    sim.shutdown().await;
}

/// The same with Okta's other answer to a page it cannot build in time, a
/// 500: halved again and again until a page is small enough.
#[tokio::test(start_paused = true)]
async fn pages_that_keep_failing_with_500_shrink_down_to_what_okta_can_answer() {
    let org = org_with_app_users(300);
    let expected = org.app_user_ids();
    let sim = Simulator::start(
        org,
        SimOptions {
            slow_pages: Some(SlowPages {
                more_than: 70,
                answer: SlowAnswer::ServerError,
            }),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let users = client.list_app_users(APP_ID).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        expected
    );
    let limits: Vec<(String, u16)> = requests_of(&sim, Bucket::Apps)
        .iter()
        .map(|r| {
            let query = r.query.clone().unwrap_or_default();
            let limit = query
                .split('&')
                .find_map(|p| p.strip_prefix("limit="))
                .unwrap()
                .to_owned();
            (limit, r.status)
        })
        .collect();
    let first: Vec<(&str, u16)> = limits[..7].iter().map(|(l, s)| (l.as_str(), *s)).collect();
    assert_eq!(
        first,
        [
            ("500", 500),
            ("500", 500),
            ("250", 500),
            ("250", 500),
            ("125", 500),
            ("125", 500),
            ("62", 200)
        ]
    );
    assert!(limits[7..].iter().all(|(l, s)| l == "62" && *s == 200));
    sim.shutdown().await;
}

/// Halving stops at the floor (20): a page that fails at every size fails
/// the listing when the retry budget is spent, with nothing returned.
#[tokio::test(start_paused = true)]
async fn halving_stops_at_the_floor_and_the_budget_still_ends_the_listing() {
    let sim = Simulator::start(
        org_with_app_users(100),
        SimOptions {
            slow_pages: Some(SlowPages {
                more_than: 0,
                answer: SlowAnswer::ServerError,
            }),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let err = client.list_app_users(APP_ID).await.unwrap_err();
    assert!(matches!(err, OktaError::RetriesExhausted { .. }), "{err}");
    let limits: BTreeSet<String> = requests_of(&sim, Bucket::Apps)
        .iter()
        .filter_map(|r| {
            r.query
                .as_deref()?
                .split('&')
                .find_map(|p| p.strip_prefix("limit="))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        limits,
        ["500", "250", "125", "62", "31", "20"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    sim.shutdown().await;
}

/// Issue #14, item 2: an Okta that caps member pages at 200 (clamping the
/// `limit`) is followed page by page; one that refuses `limit=1000` with
/// its 400 E0000001 gets 200 instead, and the client asks member listings
/// for 200 from then on.
#[tokio::test(start_paused = true)]
async fn member_pages_follow_a_lower_cap_and_fall_back_to_200_when_1000_is_refused() {
    let mut org = org_with_app_users(450);
    let group = org.add_group("Eng", None);
    let other = org.add_group("Ops", None);
    let members = org.user_ids();
    for member in &members {
        org.add_member(&group, member).unwrap();
        org.add_member(&other, member).unwrap();
    }
    let sim = Simulator::start(
        org,
        SimOptions {
            members_limit: Some(MembersLimit {
                max: 200,
                refuse_above: false,
            }),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    // Clamped: asked for 1,000, answered 200 per page.
    let listed = client.list_group_members(&group).await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        members
    );
    let pages = requests_on(&sim, Route::GroupMembers);
    assert_eq!(pages.len(), 3, "200 + 200 + 50");
    assert!(pages.iter().all(|p| p.status == 200));
    assert_eq!(client.group_members_limit(), 1_000);

    // Refused: Okta's validation error, then 200.
    sim.set_members_limit(Some(MembersLimit {
        max: 200,
        refuse_above: true,
    }));
    sim.reset_log();
    let listed = client.list_group_members(&group).await.unwrap();
    assert_eq!(listed.len(), 450);
    let pages: Vec<(u16, String)> = requests_on(&sim, Route::GroupMembers)
        .iter()
        .map(|r| (r.status, r.query.clone().unwrap_or_default()))
        .collect();
    assert_eq!(pages[0], (400, "limit=1000".to_owned()));
    assert_eq!(pages[1], (200, "limit=200".to_owned()));
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert_eq!(client.group_members_limit(), 200);
    assert_eq!(client.stats().retries, 0, "a refusal is not a retry");
    // Remembered: the next listing asks for 200 at once.
    sim.reset_log();
    assert_eq!(client.list_group_members(&other).await.unwrap().len(), 450);
    let pages = requests_on(&sim, Route::GroupMembers);
    assert!(pages.iter().all(|p| p.status == 200), "{pages:?}");
    assert!(
        pages[0].query.as_deref() == Some("limit=200"),
        "{:?}",
        pages[0]
    );
    sim.shutdown().await;
}

/// A 400 that is not about the page size still fails at once: the fallback
/// is tried once, and app-user listings (which ask for a documented
/// maximum) have none.
#[tokio::test(start_paused = true)]
async fn a_refused_limit_is_retried_once_at_most() {
    let mut org = org_with_app_users(5);
    let group = org.add_group("Eng", None);
    let sim = Simulator::start(
        org,
        SimOptions {
            members_limit: Some(MembersLimit {
                max: 100,
                refuse_above: true,
            }),
            ..options()
        },
    )
    .await
    .unwrap();
    let client = client(&sim);
    let err = client.list_group_members(&group).await.unwrap_err();
    assert!(
        matches!(&err, OktaError::UnexpectedStatus { failure, .. } if failure.status == Some(400)),
        "{err}"
    );
    assert!(err.to_string().contains("E0000001"), "{err}");
    let statuses: Vec<u16> = requests_on(&sim, Route::GroupMembers)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [400, 400], "1,000 then 200, both refused");
    sim.shutdown().await;
}

/// Issue #13, item 9: every retry is a WARN with the attempt, the cause
/// and the time left in the budget.
#[tokio::test(start_paused = true)]
async fn every_retry_logs_its_attempt_cause_and_budget_left() {
    let logs = captured_logs();
    let sim = Simulator::start(org_with_app_users(3), options())
        .await
        .unwrap();
    let client = client_with(
        &sim,
        sim.token(),
        ClientSettings {
            retry_budget: Duration::from_secs(100),
            ..ClientSettings::default()
        },
    );
    sim.set_faults(vec![
        Fault::new(
            FaultTarget::page(Bucket::AppById, 1),
            Times::Once,
            FaultKind::ServerError(502),
        ),
        Fault::new(
            FaultTarget::page(Bucket::AppById, 1),
            Times::Once,
            FaultKind::RateLimited,
        ),
    ]);
    client.get_app(APP_ID).await.unwrap();
    let text = logs.text();
    let path = format!("GET /api/v1/apps/{APP_ID}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&path) && !l.contains("/users"))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l.contains("attempt=1") && l.contains("server_error"))
        .unwrap_or_else(|| panic!("{text}"));
    let limited = lines
        .iter()
        .find(|l| l.contains("attempt=2") && l.contains("rate_limited"))
        .unwrap_or_else(|| panic!("{text}"));
    // Paused time: the first retry has the whole 100 s left, the second
    // the budget minus the first backoff (under a second).
    assert!(failed.contains("budget_left_ms=100000"), "{failed}");
    assert!(limited.contains("budget_left_ms=99"), "{limited}");
    for line in [failed, limited] {
        assert!(line.contains("failure="), "{line}");
    }
    assert!(failed.contains("HTTP 502"), "{failed}");
    assert!(limited.contains("E0000047"), "{limited}");
    sim.shutdown().await;
}

/// A fake Okta that answers every request with a body of `size` bytes,
/// with or without `Content-Length`, and counts the requests.
async fn big_body_server(
    size: usize,
    content_length: bool,
) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::body::Body;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let chunk = vec![b' '; 64 * 1024];
            let chunks = size.div_ceil(chunk.len());
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            let mut response = axum::response::Response::builder().status(200);
            if content_length {
                response = response.header("content-length", chunks * 64 * 1024);
            }
            response.body(Body::from_stream(stream)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// Issue #13, item 6: a body above `max_response_bytes` is refused from
/// its `Content-Length` before it is read, or abandoned at the cap while
/// streaming; either way the request fails at once (no retry), naming the
/// endpoint and the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_fail_at_once_naming_the_endpoint_and_the_size() {
    for content_length in [true, false] {
        let (url, hits) = big_body_server(8 * 1024 * 1024, content_length).await;
        let client = OktaClient::new(OktaClientConfig {
            org_url: url,
            auth: OktaAuth::Ssws(Secret::new("00token")),
            requests_per_minute: NonZeroU32::new(6_000).unwrap(),
            rate_limit_share: 100,
            max_concurrent_requests: NonZeroUsize::new(2).unwrap(),
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
        })
        .unwrap();
        let started = std::time::Instant::now();
        let err = client.list_app_users(APP_ID).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, OktaError::ResponseTooLarge { .. }), "{err}");
        assert!(!err.is_transient());
        let message = err.to_string();
        let size = if content_length {
            "8388608 bytes (Content-Length)"
        } else {
            "more than 1048576 bytes"
        };
        for expected in [
            format!("GET /api/v1/apps/{APP_ID}/users"),
            size.to_owned(),
            "okta.max_response_bytes is 1048576 bytes".to_owned(),
        ] {
            assert!(message.contains(&expected), "{expected:?} in {message}");
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "no retry"
        );
        assert_eq!(client.stats().retries, 0);
    }
}

/// Issue #14, item 9: a `next` link on another host says what to set.
#[tokio::test(start_paused = true)]
async fn a_foreign_next_link_says_to_set_org_url_to_oktas_host() {
    let sim = Simulator::start(org_with_app_users(600), options())
        .await
        .unwrap();
    sim.set_faults(vec![Fault::new(
        FaultTarget::page(Bucket::Apps, 1),
        Times::Once,
        FaultKind::ForeignNextLink,
    )]);
    let err = client(&sim).list_app_users(APP_ID).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(
            "set okta.org_url to the host Okta uses in its links (http://okta-sim-foreign.invalid"
        ),
        "{message}"
    );
    sim.shutdown().await;
}

/// Issue #14, item 8: the schemas the role attribute is read from.
#[tokio::test(start_paused = true)]
async fn schemas_list_their_attributes() {
    let sim = Simulator::start(org_with_app_users(1), options())
        .await
        .unwrap();
    let client = client(&sim);
    let app_schema = client.get_app_user_schema(APP_ID).await.unwrap();
    assert!(app_schema.defines("writerRole"));
    assert!(app_schema.defines("userName"));
    let user_schema = client.get_user_schema().await.unwrap();
    assert!(user_schema.defines("writerRole") && user_schema.defines("email"));
    sim.set_schema_custom_attributes(Vec::new());
    assert!(
        !client
            .get_app_user_schema(APP_ID)
            .await
            .unwrap()
            .defines("writerRole")
    );
    let schema_requests = requests_on(&sim, Route::Schema);
    assert_eq!(schema_requests.len(), 3);
    assert!(schema_requests.iter().all(|r| r.family == Bucket::Other));
    sim.shutdown().await;
}
