//! Command-line arguments (SPEC §4). Parsing only; no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `--version`: the package version and the git commit it was built from
/// (`unknown` in a build without git, see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WRITER_SYNC_GIT_COMMIT"),
    ")"
);

/// The end of `--help` and of the man page.
const AFTER_LONG_HELP: &str = "\
Exit codes: 0 ok (also: nothing to change, dry run), 1 the sync failed or was interrupted, \
2 usage or configuration error (also: an unreadable plan file, an unknown run id), \
3 blocked by the safety guard or paused by `writer-sync pause` (nothing applied), \
4 refused by `apply` or `revert` (nothing written): the plan file is stale (the store changed \
since the plan was made, e.g. it was applied already) or was edited, a change no longer applies, \
or the run cannot be reverted fully.

Files: /etc/writer-sync/config.toml (the config), the systemd credential okta-api-token \
or okta-private-key ($CREDENTIALS_DIRECTORY), $STATE_DIRECTORY/writer.db (the default SQLite store).

Environment: WRITER_SYNC_CONFIG (the config path), WRITER_SYNC_OKTA_API_TOKEN (the SSWS token), \
RUST_LOG (overrides log.level).";

#[derive(Debug, Parser)]
#[command(
    name = "writer-sync",
    version = VERSION,
    about = "Keeps a Writer organization in step with Okta",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Config file (default: $WRITER_SYNC_CONFIG, else /etc/writer-sync/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon on its schedule, or one reconcile with --once.
    Run(RunArgs),
    /// Validate the config, reach Okta and the store, and report what was found.
    Check,
    /// Inspect or seed the Writer org store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Recent sync runs and their outcome, with pauses and resumes.
    History(HistoryArgs),
    /// Stop applying changes on every instance sharing the store, until
    /// `resume` (runs still observe and plan; exit code 3).
    Pause(PauseArgs),
    /// End a pause: the next run applies again.
    Resume,
    /// Read the audit log: every applied change, with its run.
    Audit(AuditArgs),
    /// Observe and plan now and write the plan to a file for review; apply nothing.
    Plan(PlanArgs),
    /// Apply exactly the changes of a plan file (refused, exit 4, when stale).
    Apply(ApplyArgs),
    /// Undo the changes an applied run made, as a new run.
    Revert(RevertArgs),
    /// Sync a built-in sample Okta org into a local SQLite file.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Ask a running daemon's /healthz (e.g. a container HEALTHCHECK): exit 0 when it answers 200.
    Healthcheck(HealthcheckArgs),
    /// Write shell completions and man pages, generated from these
    /// definitions, into DIR (for packages).
    #[command(hide = true)]
    GenerateAssets {
        /// Output directory (completions/ and man/ are created in it).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the daemon's server (its `server.listen`).
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "HOST:PORT")]
    pub addr: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reconcile once and exit (exit code 0 ok, 1 failed, 3 blocked or paused).
    #[arg(long)]
    pub once: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply a plan the safety guard blocked (with --once).
    #[arg(long)]
    pub force: bool,
    /// Print the report as one JSON object (with --once).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The plan file to write (atomically, mode 0600).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan file written by `writer-sync plan -o FILE`.
    pub file: PathBuf,
    /// Check the plan and show what would be applied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevertArgs {
    /// The run to revert (see `writer-sync history`).
    pub run_id: i64,
    /// Show the inverse changes; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print the org store as JSON.
    Dump,
    /// Merge an org store JSON file (the dump format) into the store.
    Load {
        /// The JSON file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many runs to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why (shown by runs, /readyz, STATUS= and history). Pausing again
    /// replaces it.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the changes of this run.
    #[arg(long, value_name = "N")]
    pub run: Option<i64>,
    /// Only rows about this user (email, any case): the user's own changes
    /// and memberships, and email changes from or to it.
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Only rows about this team (name, any case): the team and its
    /// memberships.
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
    /// Only rows this recent (a duration: 30m, 12h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// How many rows at most, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON lines (one object per row) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SQLite file the demo syncs into.
    #[arg(long, default_value = "writer-sync-demo.db", value_name = "PATH")]
    pub db: PathBuf,
}
