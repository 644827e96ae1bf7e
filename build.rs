//! Embeds the git commit the binary was built from, for `--version` and
//! `writer_sync_build_info{commit}`: `WRITER_SYNC_GIT_COMMIT` when set (a
//! packager building from a tarball), else `git rev-parse --short=12 HEAD`,
//! else "unknown". Reruns only when HEAD or the branch it points to moves,
//! so ordinary edits do not rerun it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WRITER_SYNC_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = match std::env::var("WRITER_SYNC_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // In a worktree `.git` is a file: ask git where HEAD and the
            // refs live instead of assuming `.git/HEAD`.
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let resolve = |p: String| -> PathBuf {
                let p = PathBuf::from(p);
                if p.is_absolute() { p } else { root.join(p) }
            };
            if let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(resolve) {
                let common = git(&["rev-parse", "--git-common-dir"])
                    .map(resolve)
                    .unwrap_or_else(|| git_dir.clone());
                // HEAD (a checkout), its reflog (every commit, reset or
                // checkout of this worktree) and the branch's ref. Only
                // files that exist: a missing one would rerun every build.
                let mut watch = vec![git_dir.join("HEAD"), git_dir.join("logs").join("HEAD")];
                if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(common.join(reference));
                }
                for path in watch.iter().filter(|p| p.is_file()) {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=WRITER_SYNC_GIT_COMMIT={commit}");
}
