//! OAuth 2.0 service-app authentication end to end: the client against the
//! simulator's token endpoint and access-token checks (RSA and EC keys,
//! Bearer and DPoP, nonces, expiry and renewal, every classic setup
//! mistake), the simulator's own verification against hand-built JWTs, and
//! the `writer-sync` binary with an `[okta.oauth]` config.
//!
//! Real time (token lifetimes of 1-2 s where expiry matters): the JWT
//! `iat`/`exp` claims come from the system clock, which paused tokio time
//! does not move.

mod common;

use std::io::Write;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use serde_json::{Map, Value, json};

use okta_sim::org::{Org, SimApp, UserStatus};
use okta_sim::{
    Bucket, Fault, FaultKind, FaultTarget, RequestRecord, SimHandle, SimOAuth, SimOptions,
    Simulator, Times,
};
use writer_sync::okta::auth::{AuthInfo, OktaAuth};
use writer_sync::okta::error::{OAuthError, OktaError};
use writer_sync::okta::key::PrivateKey;
use writer_sync::okta::oauth::{DpopMode, OAuthConfig};
use writer_sync::okta::{OktaClient, OktaClientConfig};

const APP_ID: &str = "0oa1oauthapp00000001";
const CLIENT_ID: &str = "0oa1serviceapp000001";
const TOKEN_PATH: &str = "/oauth2/v1/token";
const RSA_PKCS8: &str = include_str!("fixtures/keys/rsa-2048.pkcs8.pem");
const RSA_PKCS1: &str = include_str!("fixtures/keys/rsa-2048.pkcs1.pem");
const EC_SEC1: &str = include_str!("fixtures/keys/ec-p256.sec1.pem");
const BIN: &str = env!("CARGO_BIN_EXE_writer-sync");

// ---------------------------------------------------------------------------
// Setup.
// ---------------------------------------------------------------------------

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A fresh EC key as PKCS#8 PEM, generated in-process.
fn ec_pem(p384: bool) -> String {
    let alg = if p384 {
        &ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
    pem("PRIVATE KEY", doc.as_ref())
}

/// Lines of a PEM body: what must never appear in any output.
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
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

/// Five users assigned to the app, three groups with members.
fn org() -> Org {
    let mut org = Org::new(SimApp {
        id: APP_ID.into(),
        label: "Writer".into(),
        name: "writer".into(),
        status: "ACTIVE".into(),
    });
    let users: Vec<String> = (0..5)
        .map(|i| {
            let id = org.add_user(UserStatus::Active, profile(i));
            org.assign_user(&id, Map::new()).unwrap();
            id
        })
        .collect();
    for (g, name) in ["Engineering", "Sales", "Support"].iter().enumerate() {
        let group = org.add_group(name, None);
        org.add_member(&group, &users[g]).unwrap();
        org.add_member(&group, &users[g + 1]).unwrap();
        org.assign_group(&group, g as u32, Map::new()).unwrap();
    }
    org
}

async fn start(oauth: SimOAuth) -> SimHandle {
    Simulator::start(
        org(),
        SimOptions {
            rate_limits: okta_sim::RateLimits::unlimited(),
            oauth: Some(oauth),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap()
}

/// The service app with the public half of `pem` registered (computed by
/// the client's key loader: only the setup uses it, the simulator verifies
/// signatures itself).
fn sim_app(pem: &str, kid: Option<&str>) -> SimOAuth {
    let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
    SimOAuth::new(CLIENT_ID, key.public_jwk(kid))
}

struct Client {
    pem: String,
    client_id: &'static str,
    key_id: Option<&'static str>,
    scopes: Vec<&'static str>,
    dpop: DpopMode,
}

impl Client {
    fn new(pem: &str) -> Client {
        Client {
            pem: pem.to_owned(),
            client_id: CLIENT_ID,
            key_id: None,
            scopes: vec!["okta.users.read", "okta.groups.read", "okta.apps.read"],
            dpop: DpopMode::Auto,
        }
    }

    fn config(&self, sim: &SimHandle) -> OktaClientConfig {
        OktaClientConfig {
            org_url: sim.url().clone(),
            auth: OktaAuth::OAuth(OAuthConfig {
                client_id: self.client_id.to_owned(),
                key: PrivateKey::from_pem(self.pem.as_bytes()).unwrap(),
                key_source: "test key".into(),
                key_id: self.key_id.map(str::to_owned),
                scopes: self.scopes.iter().map(|s| (*s).to_owned()).collect(),
                dpop: self.dpop,
            }),
            requests_per_minute: NonZeroU32::new(6_000).unwrap(),
            rate_limit_share: 100,
            max_concurrent_requests: NonZeroUsize::new(4).unwrap(),
            request_timeout: Duration::from_secs(5),
            retry_budget: Duration::from_secs(20),
            max_response_bytes: writer_sync::okta::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    fn build(&self, sim: &SimHandle) -> OktaClient {
        OktaClient::new(self.config(sim)).unwrap()
    }
}

fn token_requests(sim: &SimHandle) -> Vec<RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path == TOKEN_PATH)
        .collect()
}

fn api_requests(sim: &SimHandle) -> Vec<RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path != TOKEN_PATH)
        .collect()
}

fn statuses(records: &[RequestRecord]) -> Vec<u16> {
    records.iter().map(|r| r.status).collect()
}

fn oauth_error(err: OktaError) -> OAuthError {
    match err {
        OktaError::OAuth(e) => *e,
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

/// Captures all `tracing` output of this test binary (global: a
/// thread-local subscriber misses events under parallel tests).
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

/// Asserts that no token, key line or JWT is in `text`.
fn assert_clean(text: &str, tokens: &[String], pem: &str) {
    for token in tokens {
        assert!(
            !text.contains(token.as_str()),
            "access token leaked: {text}"
        );
    }
    for line in key_lines(pem) {
        assert!(!text.contains(&line), "key material leaked: {text}");
    }
    // Every JWT built here (assertion, proof) starts with base64url of
    // `{"alg"`.
    assert!(!text.contains("eyJhbGci"), "a JWT leaked: {text}");
}

// ---------------------------------------------------------------------------
// The client against the simulator.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rsa_bearer_token_is_cached_and_renewed_before_it_expires() {
    let mut app = sim_app(RSA_PKCS8, None);
    app.token_lifetime = Duration::from_secs(2);
    let sim = start(app).await;
    let client = Client::new(RSA_PKCS8).build(&sim);

    let info = client.auth_info().await.unwrap();
    let AuthInfo::OAuth(info) = info else {
        panic!("{info:?}")
    };
    assert!(!info.dpop);
    assert_eq!(info.client_id, CLIENT_ID);
    assert_eq!(
        info.scopes,
        ["okta.users.read", "okta.groups.read", "okta.apps.read"]
    );
    assert_eq!(info.expires_in, Duration::from_secs(2));
    assert_eq!(client.list_app_users(APP_ID).await.unwrap().len(), 5);
    assert_eq!(client.list_app_groups(APP_ID).await.unwrap().len(), 3);
    assert_eq!(token_requests(&sim).len(), 1, "the token is cached");
    for request in api_requests(&sim) {
        assert_eq!(request.auth_scheme.as_deref(), Some("Bearer"));
        assert!(!request.dpop);
        assert!(request.authorized);
    }
    let token = &token_requests(&sim)[0];
    assert_eq!(token.method, "POST");
    assert_eq!(token.family, Bucket::Other);
    assert_eq!(token.accept.as_deref(), Some("application/json"));
    assert!(token.auth_scheme.is_none(), "the assertion authenticates");

    // Past 90 % of the lifetime the next request gets a new token first.
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    client.list_app_users(APP_ID).await.unwrap();
    assert_eq!(statuses(&token_requests(&sim)), [200, 200]);
    assert!(
        api_requests(&sim).iter().all(|r| r.status == 200),
        "renewed before expiry: no 401"
    );
}

#[tokio::test]
async fn pkcs1_with_key_id_and_ec_keys_authenticate() {
    // The app holds two keys; the configured key_id picks the right one.
    let other = ec_pem(false);
    let p256 = ec_pem(false);
    let p384 = ec_pem(true);
    let cases: Vec<(&str, String, Option<&'static str>)> = vec![
        ("RSA PKCS#1 + kid", RSA_PKCS1.to_owned(), Some("rsa-1")),
        ("EC SEC1", EC_SEC1.to_owned(), None),
        ("EC P-256 PKCS#8 + kid", p256, Some("ec-1")),
        ("EC P-384 PKCS#8", p384, None),
    ];
    for (name, key, kid) in cases {
        let mut app = sim_app(&key, kid);
        app.keys.push(
            PrivateKey::from_pem(other.as_bytes())
                .unwrap()
                .public_jwk(Some("other")),
        );
        let sim = start(app).await;
        let mut client = Client::new(&key);
        client.key_id = kid;
        let client = client.build(&sim);
        let users = client.list_app_users(APP_ID).await;
        assert_eq!(users.map(|u| u.len()).ok(), Some(5), "{name}");
        assert_eq!(statuses(&token_requests(&sim)), [200], "{name}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn dpop_always_follows_the_nonce_and_proves_every_call() {
    let mut app = sim_app(EC_SEC1, None);
    app.require_dpop = true;
    let sim = start(app).await;
    let mut client = Client::new(EC_SEC1);
    client.dpop = DpopMode::Always;
    let client = client.build(&sim);

    assert_eq!(client.list_app_users(APP_ID).await.unwrap().len(), 5);
    for id in ["00g", "00h"] {
        // Unknown groups: 404 still proves the DPoP call went through.
        let _ = client.list_group_members(&format!("{id}nothere")).await;
    }
    let tokens = token_requests(&sim);
    assert_eq!(
        statuses(&tokens),
        [400, 200],
        "use_dpop_nonce, then a token"
    );
    assert!(
        tokens.iter().all(|r| r.dpop),
        "a proof on the first request"
    );
    let api = api_requests(&sim);
    assert_eq!(api.len(), 3);
    for request in &api {
        assert_eq!(request.auth_scheme.as_deref(), Some("DPoP"));
        assert!(request.dpop, "a fresh proof per call");
        assert!(request.authorized);
    }
    let AuthInfo::OAuth(info) = client.auth_info().await.unwrap() else {
        panic!()
    };
    assert!(info.dpop);
}

#[tokio::test]
async fn dpop_auto_switches_on_when_the_app_requires_it_and_renews_after_a_401() {
    let mut app = sim_app(RSA_PKCS8, Some("k1"));
    app.require_dpop = true;
    let sim = start(app).await;
    let mut client = Client::new(RSA_PKCS8);
    client.key_id = Some("k1");
    let client = client.build(&sim);

    client.list_app_users(APP_ID).await.unwrap();
    let tokens = token_requests(&sim);
    // No proof (refused: DPoP required), a proof without nonce
    // (use_dpop_nonce), a proof with the nonce.
    assert_eq!(statuses(&tokens), [400, 400, 200]);
    assert_eq!(
        tokens.iter().map(|r| r.dpop).collect::<Vec<_>>(),
        [false, true, true]
    );

    // Okta expires the token early: the 401 (invalid_token, expired) makes
    // the client renew, with the cached nonce (one token request), and
    // retry the call once.
    sim.reset_log();
    sim.expire_access_tokens();
    assert_eq!(client.list_app_users(APP_ID).await.unwrap().len(), 5);
    let log = sim.requests();
    let trail: Vec<(bool, u16)> = log
        .iter()
        .map(|r| (r.path == TOKEN_PATH, r.status))
        .collect();
    assert_eq!(trail, [(false, 401), (true, 200), (false, 200)]);
    assert!(log[2].dpop && log[2].auth_scheme.as_deref() == Some("DPoP"));
}

#[tokio::test]
async fn a_rotated_dpop_nonce_is_picked_up_from_any_response() {
    let mut app = sim_app(EC_SEC1, None);
    app.require_dpop = true;
    let sim = start(app).await;
    let mut client = Client::new(EC_SEC1);
    client.dpop = DpopMode::Always;
    let client = client.build(&sim);
    client.get_app(APP_ID).await.unwrap();

    // Two rotations: the client's nonce is now refused; the API answers
    // 401 use_dpop_nonce with the new one and the call is retried once.
    sim.rotate_dpop_nonce();
    sim.rotate_dpop_nonce();
    sim.reset_log();
    client.get_app(APP_ID).await.unwrap();
    assert_eq!(statuses(&sim.requests()), [401, 200], "no token request");

    // One rotation: the client's nonce still works, and the response
    // carries the new one, which the next token request uses at once.
    sim.rotate_dpop_nonce();
    client.get_app(APP_ID).await.unwrap();
    sim.rotate_dpop_nonce();
    sim.expire_access_tokens();
    sim.reset_log();
    client.get_app(APP_ID).await.unwrap();
    let trail: Vec<(bool, u16)> = sim
        .requests()
        .iter()
        .map(|r| (r.path == TOKEN_PATH, r.status))
        .collect();
    assert_eq!(
        trail,
        [(false, 401), (true, 200), (false, 200)],
        "no use_dpop_nonce round trip"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_token_request() {
    let sim = start(sim_app(RSA_PKCS8, None)).await;
    let client = Client::new(RSA_PKCS8).build(&sim);
    let groups = client.list_app_groups(APP_ID);
    let users = client.list_app_users(APP_ID);
    let app = client.get_app(APP_ID);
    let (groups, users, app) = tokio::join!(groups, users, app);
    assert_eq!(groups.unwrap().len(), 3);
    assert_eq!(users.unwrap().len(), 5);
    app.unwrap();
    assert_eq!(token_requests(&sim).len(), 1);
}

#[tokio::test]
async fn token_endpoint_errors_are_retried_like_api_errors() {
    let sim = start(sim_app(RSA_PKCS8, None)).await;
    sim.set_faults(vec![Fault::new(
        FaultTarget {
            family: Some(Bucket::Other),
            ..FaultTarget::any()
        },
        Times::Count(2),
        FaultKind::ServerError(503),
    )]);
    let client = Client::new(RSA_PKCS8).build(&sim);
    client.get_app(APP_ID).await.unwrap();
    let tokens = token_requests(&sim);
    assert_eq!(statuses(&tokens), [503, 503, 200]);
    assert_eq!(
        tokens[2].retry_count, None,
        "503s carry no 429 retry headers"
    );
    assert!(client.stats().retries >= 2);
}

#[tokio::test]
async fn setup_mistakes_get_messages_that_say_what_to_fix() {
    let logs = captured_logs();
    let wrong_key = ec_pem(false);
    let sim = start(sim_app(RSA_PKCS8, Some("rsa-1"))).await;

    // 1. A key whose public half is not registered.
    let mut c = Client::new(&wrong_key);
    c.key_id = Some("rsa-1");
    let err = oauth_error(c.build(&sim).get_app(APP_ID).await.unwrap_err());
    assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");
    let wrong_key_message = err.to_string();
    for expected in [
        CLIENT_ID,
        "does not match a public key registered",
        "\"rsa-1\"",
        "Public Keys",
        "okta.oauth.private_key_file",
        "signature is invalid",
    ] {
        assert!(
            wrong_key_message.contains(expected),
            "{expected}: {wrong_key_message}"
        );
    }

    // 2. A client id that is not the app's.
    let mut c = Client::new(RSA_PKCS8);
    c.client_id = "0oa1someotherapp0001";
    let err = oauth_error(c.build(&sim).get_app(APP_ID).await.unwrap_err());
    assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");
    assert!(err.to_string().contains("0oa1someotherapp0001"), "{err}");
    assert!(err.to_string().contains("okta.oauth.client_id"), "{err}");

    // 3. A scope the app was not granted (okta.logs.read is the one
    // scope a refusal is retried without: the System Log is optional).
    let mut c = Client::new(RSA_PKCS8);
    c.scopes.push("okta.roles.read");
    let err = oauth_error(c.build(&sim).get_app(APP_ID).await.unwrap_err());
    assert!(matches!(err, OAuthError::ScopeNotGranted { .. }), "{err:?}");
    let message = err.to_string();
    for expected in [
        CLIENT_ID,
        "okta.roles.read",
        "Okta API Scopes",
        "okta.oauth.scopes",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // 4. A scope the call needs was not requested: 403 on the API.
    let mut c = Client::new(RSA_PKCS8);
    c.scopes = vec!["okta.users.read", "okta.groups.read"];
    let client = c.build(&sim);
    let err = oauth_error(client.list_app_users(APP_ID).await.unwrap_err());
    assert!(matches!(err, OAuthError::MissingScope { .. }), "{err:?}");
    let message = err.to_string();
    for expected in [
        CLIENT_ID,
        "lacks the scope okta.apps.read",
        "granted: okta.users.read okta.groups.read",
        "HTTP 403",
        "E0000006",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // 5. Scopes granted but no admin role for the resource.
    sim.set_forbidden(true);
    let err = oauth_error(
        Client::new(RSA_PKCS8)
            .build(&sim)
            .list_app_users(APP_ID)
            .await
            .unwrap_err(),
    );
    sim.set_forbidden(false);
    assert!(matches!(err, OAuthError::MissingRole { .. }), "{err:?}");
    assert!(err.to_string().contains("admin role"), "{err}");
    assert!(err.to_string().contains(CLIENT_ID), "{err}");

    // 6. The app requires DPoP but the config says never.
    sim.update_oauth(|app| app.require_dpop = true);
    let mut c = Client::new(RSA_PKCS8);
    c.dpop = DpopMode::Never;
    let err = oauth_error(c.build(&sim).get_app(APP_ID).await.unwrap_err());
    sim.update_oauth(|app| app.require_dpop = false);
    assert!(matches!(err, OAuthError::DpopRequired { .. }), "{err:?}");
    let message = err.to_string();
    for expected in [
        CLIENT_ID,
        "requires DPoP",
        "dpop = \"auto\"",
        "invalid_dpop_proof",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // 7. This host's clock is ahead of Okta's: the assertion is "issued in
    //    the future". And behind: it is already expired.
    let mut messages = vec![wrong_key_message];
    for (offset, side) in [(-600, "ahead of"), (600, "behind")] {
        sim.set_clock_offset(offset);
        let err = oauth_error(
            Client::new(RSA_PKCS8)
                .build(&sim)
                .get_app(APP_ID)
                .await
                .unwrap_err(),
        );
        assert!(matches!(err, OAuthError::ClockSkew { .. }), "{err:?}");
        let message = err.to_string();
        for expected in [CLIENT_ID, "time claims", side, "NTP"] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
        messages.push(message);
    }
    sim.set_clock_offset(0);

    // Nothing secret in any message, Debug output or log line.
    let logged = logs.text();
    assert!(logged.contains("okta request"), "the capture works");
    let tokens = sim.access_tokens();
    assert!(!tokens.is_empty());
    for text in messages.iter().chain([&logged, &format!("{client:?}")]) {
        assert_clean(text, &tokens, RSA_PKCS8);
        assert_clean(text, &tokens, &wrong_key);
    }
    let config = Client::new(RSA_PKCS8).config(&sim);
    assert_clean(&format!("{config:?}"), &tokens, RSA_PKCS8);
}

#[tokio::test]
async fn no_token_proof_or_key_reaches_logs_or_debug_output() {
    let logs = captured_logs();
    let mut app = sim_app(EC_SEC1, None);
    app.require_dpop = true;
    app.token_lifetime = Duration::from_secs(1);
    let sim = start(app).await;
    let client = Client::new(EC_SEC1).build(&sim);
    client.list_app_users(APP_ID).await.unwrap();
    let first = sim.access_tokens();
    sim.expire_access_tokens();
    client.list_app_groups(APP_ID).await.unwrap();
    let mut tokens = sim.access_tokens();
    tokens.extend(first);
    assert!(tokens.len() >= 2);
    let logged = logs.text();
    assert!(logged.contains("okta access token obtained"), "{logged}");
    assert_clean(&logged, &tokens, EC_SEC1);
    assert_clean(&format!("{client:?}"), &tokens, EC_SEC1);
    assert_clean(
        &format!("{:?}", client.auth_info().await.unwrap()),
        &tokens,
        EC_SEC1,
    );
}

// ---------------------------------------------------------------------------
// The simulator's checks, against JWTs built by hand here (so the client's
// tests above cannot pass against a simulator that accepts anything).
// ---------------------------------------------------------------------------

struct Signer {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Signer { pair, jwk }
    }

    fn jwt(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn jti() -> String {
    format!(
        "jti-{}-{}",
        JTI.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        fastrand::u64(..)
    )
}

struct Raw {
    http: reqwest::Client,
    base: String,
    token_url: String,
}

impl Raw {
    fn new(sim: &SimHandle) -> Raw {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = sim.url().as_str().trim_end_matches('/').to_owned();
        Raw {
            http: reqwest::Client::new(),
            token_url: format!("{base}{TOKEN_PATH}"),
            base,
        }
    }

    fn assertion(&self, key: &Signer, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({
            "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": self.token_url,
            "iat": now(), "exp": now() + 300, "jti": jti(),
        });
        change(&mut claims);
        key.jwt(json!({"alg": "ES256"}), claims)
    }

    fn proof(&self, key: &Signer, htm: &str, htu: &str, extra: Value) -> String {
        let mut claims = json!({"htm": htm, "htu": htu, "iat": now(), "jti": jti()});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        key.jwt(
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
            claims,
        )
    }

    /// POSTs a token request; (status, body, dpop-nonce header).
    async fn token(&self, assertion: &str, proof: Option<&str>) -> (u16, Value, Option<String>) {
        let body = format!(
            "grant_type=client_credentials&scope=okta.apps.read&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        );
        let mut request = self
            .http
            .post(&self.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let nonce = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        (status, body, nonce)
    }

    /// GETs the app; (status, WWW-Authenticate).
    async fn get_app(&self, authorization: &str, proof: Option<&str>) -> (u16, String) {
        let mut request = self
            .http
            .get(format!("{}/api/v1/apps/{APP_ID}", self.base))
            .header("Authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (response.status().as_u16(), challenge)
    }
}

fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

#[tokio::test]
async fn the_simulator_verifies_assertions_and_dpop_proofs() {
    let client_key = Signer::new();
    let dpop_key = Signer::new();
    let mut app = SimOAuth::new(CLIENT_ID, client_key.jwk.clone());
    app.require_dpop = true;
    let sim = start(app).await;
    let raw = Raw::new(&sim);
    let description = |body: &Value| body["error_description"].as_str().unwrap().to_owned();

    // Assertions: every claim is checked.
    let bad_assertions: Vec<(String, &str)> = vec![
        (
            raw.assertion(&Signer::new(), |_| {}),
            "signature is invalid",
        ),
        (
            raw.assertion(&client_key, |c| c["aud"] = json!("https://elsewhere/token")),
            "audience",
        ),
        (
            raw.assertion(&client_key, |c| c["sub"] = json!("someone")),
            "client_id",
        ),
        (
            raw.assertion(&client_key, |c| c["exp"] = json!(now() + 7200)),
            "too far into the future",
        ),
        (
            raw.assertion(&client_key, |c| c["exp"] = json!(now() - 60)),
            "expired",
        ),
        (
            raw.assertion(&client_key, |c| c["iat"] = json!(now() + 600)),
            "issued in the future",
        ),
    ];
    for (assertion, expected) in bad_assertions {
        let (status, body, _) = raw.token(&assertion, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{expected}"
        );
        assert!(description(&body).contains(expected), "{expected}: {body}");
    }

    // DPoP on the token request: required, nonce, then proof checks.
    let token_url = raw.token_url.clone();
    let (status, body, _) = raw.token(&raw.assertion(&client_key, |_| {}), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let proof = raw.proof(&dpop_key, "POST", &token_url, json!({}));
    let (status, body, nonce) = raw
        .token(&raw.assertion(&client_key, |_| {}), Some(&proof))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce"))
    );
    let nonce = nonce.expect("the nonce comes in a header");
    let with_nonce = json!({"nonce": nonce});
    let bad_proofs = [
        (raw.proof(&dpop_key, "GET", &token_url, with_nonce.clone()), "'htm'"),
        (raw.proof(&dpop_key, "POST", &format!("{token_url}?x=1"), with_nonce.clone()), "'htu'"),
        (raw.proof(&dpop_key, "POST", &token_url, json!({"nonce": nonce, "iat": now() - 3600})), "'iat'"),
        (
            dpop_key.jwt(
                json!({"typ": "JWT", "alg": "ES256", "jwk": dpop_key.jwk}),
                json!({"htm": "POST", "htu": token_url, "iat": now(), "jti": jti(), "nonce": nonce}),
            ),
            "'typ'",
        ),
        (
            Signer::new().jwt(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_key.jwk}),
                json!({"htm": "POST", "htu": token_url, "iat": now(), "jti": jti(), "nonce": nonce}),
            ),
            "signature",
        ),
    ];
    for (proof, expected) in bad_proofs {
        let (status, body, _) = raw
            .token(&raw.assertion(&client_key, |_| {}), Some(&proof))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{expected}"
        );
        assert!(description(&body).contains(expected), "{expected}: {body}");
    }
    let good_assertion = raw.assertion(&client_key, |_| {});
    let proof = raw.proof(&dpop_key, "POST", &token_url, with_nonce.clone());
    let (status, body, _) = raw.token(&good_assertion, Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "okta.apps.read");
    let token = body["access_token"].as_str().unwrap().to_owned();
    // The same assertion (jti) twice is a replay.
    let proof = raw.proof(&dpop_key, "POST", &token_url, with_nonce.clone());
    let (status, body, _) = raw.token(&good_assertion, Some(&proof)).await;
    assert_eq!(status, 401);
    assert!(description(&body).contains("already been used"), "{body}");

    // The DPoP-bound token on the API.
    let htu = format!("{}/api/v1/apps/{APP_ID}", raw.base);
    let good = raw.proof(&dpop_key, "GET", &htu, json!({"ath": ath(&token)}));
    let cases = [
        (format!("Bearer {token}"), None, "invalid_token"),
        (format!("DPoP {token}"), None, "invalid_dpop_proof"),
        (
            format!("DPoP {token}"),
            Some(raw.proof(&dpop_key, "GET", &htu, json!({"ath": ath("another token")}))),
            "'ath'",
        ),
        (
            format!("DPoP {token}"),
            Some(raw.proof(&Signer::new(), "GET", &htu, json!({"ath": ath(&token)}))),
            "does not match the key",
        ),
        (
            format!("DPoP {token}"),
            Some(raw.proof(
                &dpop_key,
                "GET",
                &format!("{htu}/users"),
                json!({"ath": ath(&token)}),
            )),
            "'htu'",
        ),
        (
            format!("DPoP {token}x"),
            Some(good.clone()),
            "invalid_token",
        ),
    ];
    for (authorization, proof, expected) in cases {
        let (status, challenge) = raw.get_app(&authorization, proof.as_deref()).await;
        assert_eq!(status, 401, "{expected}");
        assert!(challenge.contains(expected), "{expected}: {challenge}");
    }
    let (status, _) = raw.get_app(&format!("DPoP {token}"), Some(&good)).await;
    assert_eq!(status, 200);
    let (status, challenge) = raw.get_app(&format!("DPoP {token}"), Some(&good)).await;
    assert_eq!(status, 401, "a proof is single-use");
    assert!(challenge.contains("already used"), "{challenge}");
    // The token has okta.apps.read only.
    let users_htu = format!("{}/api/v1/groups", raw.base);
    let proof = raw.proof(&dpop_key, "GET", &users_htu, json!({"ath": ath(&token)}));
    let response = raw
        .http
        .get(&users_htu)
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("okta.groups.read"));
    // Expired: 401 invalid_token saying so.
    sim.expire_access_tokens();
    let proof = raw.proof(&dpop_key, "GET", &htu, json!({"ath": ath(&token)}));
    let (status, challenge) = raw.get_app(&format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("invalid_token") && challenge.contains("expired"),
        "{challenge}"
    );
}

// ---------------------------------------------------------------------------
// The binary with an [okta.oauth] config.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_and_check_with_oauth_config() {
    let db = common::TestDb::new(common::Kind::Sqlite, "oauth_e2e")
        .await
        .unwrap();
    let mut app = sim_app(RSA_PKCS1, Some("writer-sync-1"));
    app.require_dpop = true;
    let sim = start(app).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("okta-private-key.pem");
    std::fs::write(&key_file, RSA_PKCS1).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{APP_ID}\"\nrequest_timeout = \"5s\"\n\n\
             [okta.oauth]\nclient_id = \"{CLIENT_ID}\"\nprivate_key_file = {:?}\n\
             key_id = \"writer-sync-1\"\nscopes = \"okta.users.read okta.groups.read okta.apps.read\"\n\n\
             [store]\nurl = \"{}\"\nwrites_per_second = 0\n\n[teams]\ncreate_missing = true\n\n\
             [log]\nformat = \"json\"\nlevel = \"debug\"\n",
            sim.url().as_str().trim_end_matches('/'),
            key_file.display().to_string(),
            db.config_url,
        ),
    )
    .unwrap();
    let run = |args: &'static [&'static str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUST_LOG");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };

    let out = run(&["run", "--once", "--json"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["counts"]["users_created"], 5, "{report}");
    assert_eq!(report["counts"]["teams_created"], 3, "{report}");
    assert!(stderr.contains("okta access token obtained"), "{stderr}");
    let api = api_requests(&sim);
    assert!(!api.is_empty());
    assert!(
        api.iter()
            .all(|r| r.auth_scheme.as_deref() == Some("DPoP") && r.dpop)
    );

    let out = run(&["check"]).await.unwrap();
    let check = String::from_utf8_lossy(&out.stdout).to_string();
    let check_err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{check}\n{check_err}");
    for expected in [
        &format!("OAuth 2.0 client {CLIENT_ID}"),
        "RSA 2048-bit (RS256) key from okta.oauth.private_key_file",
        "DPoP auto",
        "DPoP-bound access token (DPoP on)",
        "scopes okta.users.read okta.groups.read okta.apps.read",
    ] {
        assert!(check.contains(expected), "{expected}: {check}");
    }

    let tokens = sim.access_tokens();
    assert!(tokens.len() >= 2);
    for text in [&stdout, &stderr, &check, &check_err] {
        assert_clean(text, &tokens, RSA_PKCS1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_an_unregistered_key_prints_the_public_jwk_to_register() {
    let db = common::TestDb::new(common::Kind::Sqlite, "oauth_check")
        .await
        .unwrap();
    let sim = start(sim_app(RSA_PKCS8, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = ec_pem(false);
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &wrong).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[okta]\norg_url = \"{}\"\napp_id = \"{APP_ID}\"\n[okta.oauth]\nclient_id = \"{CLIENT_ID}\"\n\
             private_key_file = {:?}\nkey_id = \"new-key\"\n[store]\nurl = \"{}\"\n",
            sim.url().as_str().trim_end_matches('/'),
            key_file.display().to_string(),
            db.config_url,
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(&config)
        .arg("check")
        .env_remove("WRITER_SYNC_OKTA_API_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("okta token  FAILED: okta refused the client assertion"),
        "{stdout}"
    );
    let jwk = PrivateKey::from_pem(wrong.as_bytes())
        .unwrap()
        .public_jwk(Some("new-key"));
    let key_line = stdout
        .lines()
        .find(|l| l.starts_with("okta key    the public key (JWK)"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let printed: Value = serde_json::from_str(&key_line[key_line.find('{').unwrap()..]).unwrap();
    assert_eq!(printed, jwk);
    assert!(printed.get("d").is_none(), "public members only");
    assert_eq!(
        statuses(&token_requests(&sim)),
        [401],
        "an invalid client is not retried"
    );
    for text in [&stdout, &stderr] {
        assert_clean(text, &sim.access_tokens(), &wrong);
    }
}
