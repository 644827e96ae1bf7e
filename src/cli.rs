//! Command-line arguments (SPEC §4). Parsing only; no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "writer-sync",
    version,
    about = "Keeps a Writer organization in step with Okta"
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
    /// Recent sync runs and their outcome.
    History(HistoryArgs),
    /// Sync a built-in sample Okta org into a local SQLite file.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reconcile once and exit (exit code 0 ok, 1 failed, 3 blocked).
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

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SQLite file the demo syncs into.
    #[arg(long, default_value = "writer-sync-demo.db", value_name = "PATH")]
    pub db: PathBuf,
}
