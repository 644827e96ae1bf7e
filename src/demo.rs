//! `writer-sync demo`: starts the built-in Okta simulator on loopback with a
//! small sample org made from recorded Okta responses, syncs it into a local
//! SQLite file, and prints the report and the resulting teams. Then it shows
//! the incremental sync (SPEC §7): it changes one user's role in the
//! simulated Okta, lets an incremental run bring the change in from the
//! System Log, and undoes it the same way, so the store ends as the full
//! sync left it (a second demo has no changes).
//!
//! Invariant: uses only the library's public API, the same paths as
//! `run --once` and the daemon's polls (config parsing, the Okta client,
//! `reconcile::run_once`, `reconcile::incremental::run_events`).
//! Built only with the `demo` cargo feature (on by default), the one that
//! brings the simulator (the `okta-sim` crate) into the binary.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use okta_sim::org::Org;
use okta_sim::{SimOptions, Simulator};

use serde_json::json;
use writer_sync::config::{self, ConfigEnv};
use writer_sync::okta::OktaClient;
use writer_sync::reconcile::report::change_json;
use writer_sync::reconcile::{self, RunOptions, SyncContext, Trigger, incremental};
use writer_sync::secret::Secret;
use writer_sync::store::Store;

/// A Writer org as it might look before the sync is installed: a team the
/// sync will use as the default team, and one local account it never touches.
const SEED: &str = r#"{
  "users": [
    {"email": "local-admin@writer.example", "okta_id": null, "first_name": "Local", "last_name": "Admin",
     "display_name": "Local Admin", "active": true}
  ],
  "teams": [
    {"name": "All Writers", "okta_group_id": null, "members": [
      {"email": "local-admin@writer.example", "role": "admin"}
    ]}
  ]
}"#;

pub async fn run(db: &Path) -> anyhow::Result<u8> {
    writer_sync::telemetry::init(config::LogFormat::Text, "warn");
    let sim = Simulator::start(Org::sample(), SimOptions::default())
        .await
        .context("cannot start the Okta simulator")?;
    let db_display = db.display().to_string();
    let fresh = !db.exists();
    let text = format!(
        r#"[okta]
org_url = "{url}"
app_id = "{app}"

[store]
url = {db:?}
writes_per_second = 0

[sync]
default_team = "All Writers"

[teams]
push_groups = "assigned"
create_missing = true
"#,
        url = sim.url().as_str().trim_end_matches('/'),
        app = sim.app_id(),
        db = format!("sqlite://{db_display}"),
    );
    let env = ConfigEnv {
        okta_api_token: Some(Secret::new(sim.token())),
        ..ConfigEnv::default()
    };
    let config = config::parse(&text, Path::new("<demo>"), &env).context("demo config")?;
    let store = Store::connect(&config.store.url).await?;
    if fresh {
        store
            .load_json(SEED)
            .await
            .context("seeding the demo store")?;
    }
    let okta = OktaClient::new(config.okta_client_config())?;
    let ctx = SyncContext {
        config: Arc::new(config),
        store,
        okta,
        holder: reconcile::holder_id(),
    };
    let report = reconcile::run_once(&ctx, &RunOptions::new(Trigger::Demo)).await;
    let incremental = if report.status == reconcile::report::Status::Ok {
        incremental_steps(&sim, &ctx).await
    } else {
        String::new()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "writer-sync demo: Okta simulator at {} ({} users, app {}), store {}",
        ctx.okta.org_url(),
        sim.org(|o| o.user_count()),
        sim.app_id(),
        db_display
    );
    let _ = writeln!(
        out,
        "{}",
        if fresh {
            "first sync of a fresh store"
        } else {
            "store exists: this run shows what changed since the last demo (run it twice: the second run has no changes)"
        }
    );
    let _ = writeln!(out);
    out.push_str(&report.human());
    let dump = ctx.store.dump().await?;
    let _ = writeln!(out, "\nteams and members:");
    for team in &dump.teams {
        let link = team
            .okta_group_id
            .as_deref()
            .map(|g| format!("linked to Okta group {g}"))
            .unwrap_or_else(|| "not linked (unmanaged)".into());
        let _ = writeln!(
            out,
            "  {} ({link}, {} members)",
            team.name,
            team.members.len()
        );
        for m in &team.members {
            let user = dump
                .users
                .iter()
                .find(|u| u.email.eq_ignore_ascii_case(&m.email));
            let state = match user {
                Some(u) if !u.active => " [deactivated]",
                Some(u) if u.okta_id.is_none() => " [unmanaged]",
                _ => "",
            };
            let _ = writeln!(out, "    {:<6}  {}{state}", m.role.as_str(), m.email);
        }
    }
    out.push_str(&incremental);
    let active = dump.users.iter().filter(|u| u.active).count();
    let managed = dump.users.iter().filter(|u| u.okta_id.is_some()).count();
    let _ = writeln!(
        out,
        "\nusers: {} in the store, {active} active, {managed} managed by writer-sync (store: {db_display})",
        dump.users.len()
    );
    print!("{out}");
    ctx.store.close().await;
    sim.shutdown().await;
    Ok(match report.status {
        reconcile::report::Status::Ok => 0,
        reconcile::report::Status::Blocked => 3,
        _ => 1,
    })
}

/// Promotes a directly assigned member (`writerRole = "admin"`) in the
/// simulated Okta, lets an incremental run bring it in, then undoes it the
/// same way; returns what to print.
async fn incremental_steps(sim: &okta_sim::SimHandle, ctx: &SyncContext) -> String {
    let mut out = String::new();
    // A directly assigned member who is in a team: a role change shows.
    let in_teams: std::collections::BTreeSet<String> = match ctx.store.dump().await {
        Ok(dump) => dump
            .teams
            .iter()
            .flat_map(|t| t.members.iter().map(|m| m.email.to_lowercase()))
            .collect(),
        Err(_) => return out,
    };
    let chosen = sim.org(|o| {
        o.app_user_ids().into_iter().find_map(|id| {
            let (scope, profile) = o.app_user_profile(&id)?;
            let member = profile.get("writerRole").and_then(|r| r.as_str()) == Some("member");
            let email = o.user_profile(&id)?.get("email")?.as_str()?.to_owned();
            (scope == okta_sim::org::Scope::User
                && member
                && in_teams.contains(&email.to_lowercase()))
            .then_some((id, email))
        })
    });
    let Some((id, email)) = chosen else {
        return out;
    };
    let _ = writeln!(
        out,
        "\nincremental sync (between full reconciles the daemon reads Okta's System Log every {}s):",
        ctx.config.events.poll_interval.as_secs()
    );
    for (role, what) in [("admin", "promoted"), ("member", "demoted again")] {
        if sim
            .org_mut(|o| o.set_app_user_attr(&id, "writerRole", json!(role)))
            .is_err()
        {
            return out;
        }
        let run = incremental::run_events(ctx, &RunOptions::new(Trigger::Events)).await;
        let events: Vec<String> = run
            .events_by_type
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        let applied = match &run.outcome {
            incremental::Outcome::Ran(report) if !report.changes.is_empty() => report
                .changes
                .iter()
                .map(|c| format!("{} {}", c.kind(), change_json(c).summary))
                .collect::<Vec<_>>()
                .join("; "),
            incremental::Outcome::Ran(_) => "nothing".to_owned(),
            other => format!("no incremental run: {other:?}"),
        };
        let _ = writeln!(
            out,
            "  Okta: {email} {what} (writerRole = {role:?})\n    System Log: {}\n    applied: {applied} ({} Okta requests)",
            if events.is_empty() {
                "no new events".to_owned()
            } else {
                events.join(", ")
            },
            run.requests
        );
    }
    out
}
