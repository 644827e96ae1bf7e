//! Hostile and odd input from Okta, served by a scripted fake Okta (every
//! byte of every page is chosen by the test): missing and null fields
//! anywhere, huge profiles, 4-byte UTF-8 and right-to-left text, emails
//! differing only in case or Unicode normalization, a user listed twice
//! across pages, ids with unexpected characters, NUL and control
//! characters. Never a panic; skipped with a warning where SPEC says so;
//! every run either applies a plan that the next run finds nothing to add
//! to (convergence), or fails with nothing written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use writer_sync::reconcile::report::{Report, Status};

use crate::{Limits, common, config_text, context, dump, parse_config, sync};

pub(crate) const APP: &str = "0oahostileapp";
pub(crate) const TOKEN: &str = "00hostileTOKENvalue";

/// Pages per path: `/api/v1/apps/APP/users`, `/api/v1/apps/APP/groups`,
/// `/api/v1/groups/{id}/users`. Page n links to page n+1 with `after=n+1`.
#[derive(Default, Clone)]
pub(crate) struct Script {
    pages: BTreeMap<String, Vec<Value>>,
}

struct FakeOkta {
    base: String,
    script: Mutex<Script>,
}

async fn handle(State(fake): State<Arc<FakeOkta>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let page: usize = request
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "after")
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(0);
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("SSWS {TOKEN}"));
    let script = fake.script.lock().unwrap().clone();
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    if !authorized {
        return reply(
            StatusCode::UNAUTHORIZED,
            "{\"errorCode\":\"E0000011\"}".into(),
        );
    }
    let Some(pages) = script.pages.get(&path) else {
        return reply(StatusCode::OK, "[]".into());
    };
    let body = pages.get(page).cloned().unwrap_or(json!([]));
    let mut response = reply(StatusCode::OK, body.to_string());
    if page + 1 < pages.len() {
        let next = format!(
            "<{}{path}?limit=500&after={}>; rel=\"next\"",
            fake.base,
            page + 1
        );
        response.headers_mut().insert("link", next.parse().unwrap());
    }
    response
}

pub(crate) async fn start(script: Script) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake = Arc::new(FakeOkta {
        base: base.clone(),
        script: Mutex::new(script),
    });
    let app = axum::Router::new().fallback(handle).with_state(fake);
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

pub(crate) fn app_user(id: &str, status: &str, email: Value, first: Value, last: Value) -> Value {
    json!({
        "id": id, "scope": "USER", "status": "PROVISIONED",
        "profile": {"writerRole": "member"},
        "_embedded": {"user": {
            "id": id, "status": status,
            "profile": {"login": email.clone(), "email": email, "firstName": first, "lastName": last}
        }}
    })
}

pub(crate) fn group_assignment(id: &str, name: &str) -> Value {
    json!({"id": id, "priority": 1, "profile": {},
           "_embedded": {"group": {"id": id, "type": "OKTA_GROUP", "profile": {"name": name}}}})
}

pub(crate) fn member(id: &str) -> Value {
    json!({"id": id, "status": "ACTIVE", "profile": {"login": format!("{id}@x.example")}})
}

/// One scripted org: app-user pages, and pushed groups with member pages.
pub(crate) fn script(app_user_pages: Vec<Value>, groups: Vec<(Value, Vec<Value>)>) -> Script {
    let mut pages = BTreeMap::new();
    pages.insert(format!("/api/v1/apps/{APP}/users"), app_user_pages);
    let mut assignments = Vec::new();
    for (assignment, member_pages) in groups {
        if let Some(id) = assignment["id"].as_str() {
            pages.insert(format!("/api/v1/groups/{id}/users"), member_pages);
        }
        assignments.push(assignment);
    }
    pages.insert(
        format!("/api/v1/apps/{APP}/groups"),
        vec![Value::Array(assignments)],
    );
    Script { pages }
}

struct Outcome {
    first: Report,
    second: Option<Report>,
    dump: Value,
}

/// Runs the sync twice against `script` on a fresh store of `kind` seeded
/// with a team named "Team" (so pushed groups link). Asserts the contract:
/// a failed first run wrote nothing; an ok first run leaves nothing for the
/// second to do.
async fn run_script(kind: common::Kind, script: Script) -> Option<Outcome> {
    let (base, server) = start(script).await;
    let db = common::TestDb::new(kind, "hostile").await?;
    let config = parse_config(&config_text(&base, APP, &db.config_url, ""), TOKEN);
    let ctx = context(config, TOKEN, Limits::default()).await;
    ctx.store
        .load_json(
            r#"{"users": [], "teams": [{"name": "Team", "okta_group_id": null, "members": []}]}"#,
        )
        .await
        .unwrap();
    let before = dump(&ctx.store).await;
    let first = sync(&ctx).await;
    let second = match first.status {
        Status::Ok => {
            let second = sync(&ctx).await;
            assert_eq!(second.status, Status::Ok, "second run: {:?}", second.error);
            assert!(
                second.changes.is_empty(),
                "not convergent: the second run planned {:?}",
                second.changes
            );
            Some(second)
        }
        Status::Failed => {
            let error = first.error.clone().unwrap_or_default();
            assert!(error.contains("nothing was applied"), "{error}");
            assert_eq!(
                dump(&ctx.store).await,
                before,
                "a failed run wrote something"
            );
            None
        }
        other => panic!("unexpected status {other:?}: {:?}", first.error),
    };
    let dump = dump(&ctx.store).await;
    ctx.store.close().await;
    server.abort();
    Some(Outcome {
        first,
        second,
        dump,
    })
}

fn user_in<'a>(dump: &'a Value, okta_id: &str) -> Option<&'a Value> {
    dump["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["okta_id"] == okta_id)
}

/// Every JSON path of `v` (objects only; arrays are leaves).
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

/// `Some(x)` sets the value at `path` to x, `None` removes it.
fn edit(v: &Value, path: &[String], to: Option<Value>) -> Value {
    let mut v = v.clone();
    let mut node = &mut v;
    for k in &path[..path.len() - 1] {
        node = node.get_mut(k).unwrap();
    }
    let map = node.as_object_mut().unwrap();
    match to {
        Some(x) => {
            map.insert(path[path.len() - 1].clone(), x);
        }
        None => {
            map.remove(&path[path.len() - 1]);
        }
    }
    v
}

/// Decoding does not depend on the store: SQLite only (a PostgreSQL schema
/// per variant would make this the slowest test of the suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_missing_and_wrongly_typed_fields_anywhere_never_panic() {
    let kind = common::Kind::Sqlite;
    {
        let good = app_user(
            "00ugood",
            "ACTIVE",
            json!("good@x.example"),
            json!("G"),
            json!("Ood"),
        );
        let odd = app_user(
            "00uodd",
            "ACTIVE",
            json!("odd@x.example"),
            json!("O"),
            json!("Dd"),
        );
        let group = group_assignment("00gteam", "Team");
        let mut variants: Vec<(String, Script)> = Vec::new();
        let mut all = Vec::new();
        paths(&odd, &mut Vec::new(), &mut all);
        for path in &all {
            for (how, to) in [
                ("null", Some(Value::Null)),
                ("missing", None),
                ("number", Some(json!(42))),
                ("array", Some(json!(["x"]))),
                ("object", Some(json!({"x": 1}))),
            ] {
                let user = edit(&odd, path, to);
                variants.push((
                    format!("app user {} {how}", path.join(".")),
                    script(
                        vec![json!([good.clone(), user])],
                        vec![(
                            group.clone(),
                            vec![json!([member("00ugood"), member("00uodd")])],
                        )],
                    ),
                ));
            }
        }
        let mut gpaths = Vec::new();
        paths(&group, &mut Vec::new(), &mut gpaths);
        for path in &gpaths {
            for (how, to) in [
                ("null", Some(Value::Null)),
                ("missing", None),
                ("number", Some(json!(7))),
            ] {
                variants.push((
                    format!("group assignment {} {how}", path.join(".")),
                    script(
                        vec![json!([good.clone()])],
                        vec![(edit(&group, path, to), vec![json!([member("00ugood")])])],
                    ),
                ));
            }
        }
        let mut mpaths = Vec::new();
        let m = member("00ugood");
        paths(&m, &mut Vec::new(), &mut mpaths);
        for path in &mpaths {
            for (how, to) in [("null", Some(Value::Null)), ("missing", None)] {
                variants.push((
                    format!("group member {} {how}", path.join(".")),
                    script(
                        vec![json!([good.clone()])],
                        vec![(group.clone(), vec![json!([edit(&m, path, to)])])],
                    ),
                ));
            }
        }
        let (mut ok, mut failed) = (0, 0);
        let total = variants.len();
        let mut results = Vec::new();
        // Sixteen at a time: each variant has its own fake Okta and store.
        let mut variants = variants.into_iter();
        loop {
            let mut tasks = tokio::task::JoinSet::new();
            for (name, s) in variants.by_ref().take(16) {
                tasks.spawn(async move { (name, run_script(kind, s).await) });
            }
            if tasks.is_empty() {
                break;
            }
            while let Some(done) = tasks.join_next().await {
                results.push(done.unwrap());
            }
        }
        for (name, out) in results {
            let out = out.unwrap();
            match out.first.status {
                Status::Ok => {
                    ok += 1;
                    // The well-formed user is always synced.
                    assert!(
                        user_in(&out.dump, "00ugood").is_some(),
                        "{name}: {}",
                        out.dump
                    );
                }
                _ => {
                    failed += 1;
                    eprintln!("{name}: failed cleanly: {:?}", out.first.error);
                }
            }
        }
        eprintln!("{total} variants: {ok} synced, {failed} failed with nothing written");
        assert!(total > 60);
    }
}

both_kinds!(
    unicode_nul_control_characters_and_huge_profiles_converge,
    |kind: common::Kind| async move {
        let users = vec![
            // 4-byte UTF-8 and right-to-left text, in names and the email.
            app_user(
                "00uemoji",
                "ACTIVE",
                json!("😀.𝄞@x.example"),
                json!("😀"),
                json!("𝄞 Clef"),
            ),
            app_user(
                "00urtl",
                "ACTIVE",
                json!("שלום@x.example"),
                json!("שָׁלוֹם"),
                json!("\u{202E}evil"),
            ),
            // Emails equal only after Unicode case folding: both skipped.
            app_user(
                "00ucase1",
                "ACTIVE",
                json!("ÉMILE@x.example"),
                json!("É"),
                json!("1"),
            ),
            app_user(
                "00ucase2",
                "ACTIVE",
                json!("émile@x.example"),
                json!("é"),
                json!("2"),
            ),
            // Equal only after Unicode normalization (NFC vs NFD): distinct
            // strings, so distinct users (as in Okta itself).
            app_user(
                "00unfc",
                "ACTIVE",
                json!("jos\u{e9}@x.example"),
                json!("NFC"),
                json!("x"),
            ),
            app_user(
                "00unfd",
                "ACTIVE",
                json!("jose\u{301}@x.example"),
                json!("NFD"),
                json!("x"),
            ),
            // ß lower-cases to itself, SS to ss: distinct.
            app_user(
                "00ueszett",
                "ACTIVE",
                json!("stra\u{df}e@x.example"),
                json!("S"),
                json!("1"),
            ),
            app_user(
                "00uss",
                "ACTIVE",
                json!("STRASSE@x.example"),
                json!("S"),
                json!("2"),
            ),
            // NUL and control characters (PostgreSQL text cannot hold NUL).
            app_user(
                "00unul",
                "ACTIVE",
                json!("nul@x.example"),
                json!("A\u{0}B"),
                json!("C\u{1}\u{7f}D"),
            ),
            app_user(
                "00unulmail",
                "ACTIVE",
                json!("nul\u{0}mail@x.example"),
                json!("N"),
                json!("M"),
            ),
            // Whitespace-only and padded values.
            app_user(
                "00upad",
                "ACTIVE",
                json!("  pad@x.example \t"),
                json!("  "),
                json!("\u{3000}"),
            ),
            // A huge profile: a 1 MiB name and 5,000 extra attributes.
            {
                let mut u = app_user(
                    "00uhuge",
                    "ACTIVE",
                    json!("huge@x.example"),
                    json!("H"),
                    json!("x".repeat(1 << 20)),
                );
                let profile = u["_embedded"]["user"]["profile"].as_object_mut().unwrap();
                for i in 0..5_000 {
                    profile.insert(format!("custom{i}"), json!(format!("value {i}")));
                }
                u
            },
            // Emails SPEC §9 calls unusable.
            app_user(
                "00ulongmail",
                "ACTIVE",
                json!(format!("{}@x.example", "l".repeat(10_244))),
                json!("L"),
                json!("M"),
            ),
            app_user(
                "00unlmail",
                "ACTIVE",
                json!("new\nline@x.example"),
                json!("N"),
                json!("L"),
            ),
            app_user(
                "00uescmail",
                "ACTIVE",
                json!("\u{1b}[31mred@x.example"),
                json!("E"),
                json!("C"),
            ),
            app_user(
                "00utwoat",
                "ACTIVE",
                json!("two@at@x.example"),
                json!("T"),
                json!("A"),
            ),
            // Ids with unexpected characters (never put into a URL).
            app_user(
                "00u/../x?y#z",
                "ACTIVE",
                json!("slash@x.example"),
                json!("S"),
                json!("L"),
            ),
            app_user(
                "00u 💥",
                "ACTIVE",
                json!("space@x.example"),
                json!("S"),
                json!("P"),
            ),
            app_user(
                "",
                "ACTIVE",
                json!("empty-id@x.example"),
                json!("E"),
                json!("I"),
            ),
        ];
        let members = json!([
            member("00uemoji"),
            member("00urtl"),
            member("00unul"),
            member("00u/../x?y#z")
        ]);
        let Some(out) = run_script(
            kind,
            script(
                vec![Value::Array(users)],
                vec![(group_assignment("00gteam", "Team"), vec![members])],
            ),
        )
        .await
        else {
            return;
        };
        assert_eq!(out.first.status, Status::Ok, "{:?}", out.first.error);
        let d = &out.dump;
        let emoji = user_in(d, "00uemoji").unwrap();
        assert_eq!(emoji["email"], "😀.𝄞@x.example");
        assert_eq!(emoji["last_name"], "𝄞 Clef");
        assert_eq!(user_in(d, "00urtl").unwrap()["first_name"], "שָׁלוֹם");
        assert!(user_in(d, "00ucase1").is_none() && user_in(d, "00ucase2").is_none());
        assert!(
            out.first
                .findings
                .iter()
                .any(|f| f.message.contains("00ucase1") && f.message.contains("00ucase2")),
            "{:?}",
            out.first.findings
        );
        assert!(user_in(d, "00unfc").is_some() && user_in(d, "00unfd").is_some());
        assert!(user_in(d, "00ueszett").is_some() && user_in(d, "00uss").is_some());
        assert!(
            user_in(d, "00unul").is_some(),
            "a NUL in a name must not lose the user"
        );
        assert_eq!(user_in(d, "00upad").unwrap()["email"], "pad@x.example");
        // SPEC §9: a 1 MiB name is not stored; the user is skipped, named.
        assert!(user_in(d, "00uhuge").is_none());
        assert!(
            out.first
                .findings
                .iter()
                .any(|f| f.message.contains("00uhuge") && f.message.contains("1048576 characters")),
            "{:?}",
            out.first.findings
        );
        // SPEC §9: unusable emails are skipped with a warning naming the id,
        // and the warning carries no line break or terminal escape.
        for id in ["00ulongmail", "00unlmail", "00uescmail", "00utwoat"] {
            assert!(user_in(d, id).is_none(), "{id} was created");
            let f = out
                .first
                .findings
                .iter()
                .find(|f| f.message.contains(id) && f.message.contains("no usable email"))
                .unwrap_or_else(|| panic!("no warning names {id}: {:?}", out.first.findings));
            assert!(!f.message.chars().any(char::is_control), "{:?}", f.message);
        }
        // Control characters in names become U+FFFD.
        assert_eq!(
            user_in(d, "00unul").unwrap()["last_name"],
            "C\u{fffd}\u{fffd}D"
        );
        assert!(user_in(d, "00u/../x?y#z").is_some());
        assert!(user_in(d, "00u 💥").is_some());
        let team = &d["teams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "Team")
            .unwrap()["members"];
        assert_eq!(team.as_array().unwrap().len(), 4, "{team}");
        assert!(out.second.is_some());
    }
);

both_kinds!(
    a_user_listed_twice_across_pages_is_one_user,
    |kind: common::Kind| async move {
        let first = app_user(
            "00utwice",
            "ACTIVE",
            json!("twice@x.example"),
            json!("T"),
            json!("One"),
        );
        let again = app_user(
            "00utwice",
            "ACTIVE",
            json!("twice@x.example"),
            json!("T"),
            json!("Two"),
        );
        let other = app_user(
            "00uother",
            "ACTIVE",
            json!("other@x.example"),
            json!("O"),
            json!("Ther"),
        );
        let Some(out) = run_script(
            kind,
            script(
                vec![json!([first, other.clone()]), json!([again, other])],
                vec![(
                    group_assignment("00gteam", "Team"),
                    vec![json!([member("00utwice")]), json!([member("00utwice")])],
                )],
            ),
        )
        .await
        else {
            return;
        };
        assert_eq!(out.first.status, Status::Ok, "{:?}", out.first.error);
        assert_eq!(out.first.counts.users_created, 2);
        assert_eq!(out.dump["users"].as_array().unwrap().len(), 2);
        // The smallest copy wins, whatever the page order.
        assert_eq!(user_in(&out.dump, "00utwice").unwrap()["last_name"], "One");
    }
);

both_kinds!(
    a_group_id_that_cannot_be_a_url_segment_fails_the_run_cleanly,
    |kind: common::Kind| async move {
        let good = app_user(
            "00ugood",
            "ACTIVE",
            json!("good@x.example"),
            json!("G"),
            json!("Ood"),
        );
        let Some(out) = run_script(
            kind,
            script(
                vec![json!([good])],
                vec![(group_assignment("00g/../../users", "Team"), vec![])],
            ),
        )
        .await
        else {
            return;
        };
        assert_eq!(out.first.status, Status::Failed);
        let error = out.first.error.unwrap();
        assert!(error.contains("00g/../../users"), "{error}");
    }
);
