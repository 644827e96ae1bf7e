//! `writer-sync generate-assets DIR` (hidden): shell completions and man
//! pages generated from the clap definitions in `cli.rs`, for packages.
//!
//! Invariant: everything is derived from `Cli::command()`, so a subcommand
//! added to `cli.rs` gets its completions and its man page with no change
//! here. Writes only under DIR.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The binary's name, as completions and man pages call it.
const NAME: &str = "writer-sync";

/// Writes `DIR/completions/{writer-sync.bash,_writer-sync,writer-sync.fish}`
/// and `DIR/man/writer-sync.1` plus one page per subcommand
/// (`writer-sync-run.1`, `writer-sync-store-dump.1`, …). Returns the files.
pub fn generate(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let completions = dir.join("completions");
    let man = dir.join("man");
    for d in [&completions, &man] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, NAME, &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
        written.push(path);
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)
        .with_context(|| format!("cannot list {}", man.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    written.extend(pages);
    Ok(written)
}
