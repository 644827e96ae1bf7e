//! `writer-sync pause`, `resume` and `audit` (SPEC §8): store-only commands
//! (no Okta credential needed), printing to stdout.

use std::io::Write;

use writer_sync::store::audit::{AuditEntry, AuditFilter};
use writer_sync::store::{Pause, PauseOutcome, Store};

use crate::cli::AuditArgs;
use crate::{Failure, Printing, exit, usage};

pub async fn pause(store: &Store, reason: Option<&str>) -> Result<u8, Failure> {
    let pause = Pause::here(reason.unwrap_or_default());
    let outcome = store.pause(&pause).await?;
    let mut out = std::io::stdout().lock();
    let text = match &outcome {
        PauseOutcome::Paused => format!(
            "paused: runs on every instance sharing this store observe and plan but apply \
             nothing until `writer-sync resume`\n  {}",
            pause.describe()
        ),
        PauseOutcome::Updated { previous } => format!(
            "already paused; the pause record is updated\n  was: {}\n  now: {}",
            previous.describe(),
            pause.describe()
        ),
    };
    tracing::info!(
        by = %pause.by,
        host = %pause.host,
        reason = %pause.reason,
        updated = matches!(outcome, PauseOutcome::Updated { .. }),
        "store paused"
    );
    writeln!(out, "{text}").printing("cannot print")?;
    Ok(exit::OK)
}

pub async fn resume(store: &Store) -> Result<u8, Failure> {
    let who = Pause::here("");
    let mut out = std::io::stdout().lock();
    match store.resume(&who).await? {
        Some(ended) => {
            tracing::info!(by = %who.by, host = %who.host, "store resumed");
            writeln!(
                out,
                "resumed: the next run applies again (it was {})",
                ended.describe()
            )
            .printing("cannot print")?;
        }
        None => {
            writeln!(out, "not paused: nothing to resume").printing("cannot print")?;
        }
    }
    Ok(exit::OK)
}

pub async fn audit(store: &Store, args: &AuditArgs) -> Result<u8, Failure> {
    let since_ms = match &args.since {
        None => None,
        Some(text) => {
            let age = writer_sync::config::parse_duration(text)
                .map_err(|e| usage(anyhow::anyhow!("--since: {e}")))?;
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            Some(writer_sync::store::now_ms().saturating_sub(age_ms))
        }
    };
    if args.limit == 0 {
        return Err(usage(anyhow::anyhow!("--limit must be at least 1")));
    }
    let filter = AuditFilter {
        run_id: args.run,
        user: args.user.clone(),
        team: args.team.clone(),
        since_ms,
        limit: args.limit,
    };
    let entries = store.audit_entries(&filter).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in &entries {
        if args.json {
            serde_json::to_writer(&mut out, entry).printing("cannot print the audit log")?;
            writeln!(out).printing("cannot print the audit log")?;
        } else {
            writeln!(out, "{}", text_line(entry)).printing("cannot print the audit log")?;
        }
    }
    if entries.is_empty() && !args.json {
        writeln!(out, "no audit rows match").printing("cannot print the audit log")?;
    }
    out.flush().printing("cannot print the audit log")?;
    Ok(exit::OK)
}

/// One audit row as one text line: every value that came from Okta or the
/// store is quoted and escaped (Rust's `Debug` of a string, as the text
/// logs do), so no value can start a new line or carry terminal escapes.
fn text_line(e: &AuditEntry) -> String {
    let at = chrono::DateTime::from_timestamp_millis(e.at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let run = match (e.run_id, &e.trigger, &e.status) {
        (Some(id), Some(trigger), Some(status)) => {
            format!("run={id} trigger={trigger:?} status={status:?}")
        }
        (Some(id), _, _) => format!("run={id}"),
        (None, _, _) => "run=-".to_owned(),
    };
    let json = |v: &Option<serde_json::Value>| match v {
        Some(v) => format!("{:?}", v.to_string()),
        None => "-".to_owned(),
    };
    format!(
        "{at} {run} action={:?} target={:?} before={} after={}",
        e.action,
        e.target,
        json(&e.before),
        json(&e.after)
    )
}
