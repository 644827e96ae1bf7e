//! Permission checks for the files writer-sync trusts: the config file and
//! secret files (the SSWS token file, the systemd credential, later keys).
//!
//! Invariant: a file that someone other than its owner (and the owner's
//! group, for reading) could **change** is refused, because whoever can
//! change the config can point the sync at another Okta or store, and whoever
//! can change a token file can swap the credential. A file that anyone can
//! **read** is accepted with a warning (the token could be read by any
//! local account). The check looks at the permission bits of the file the
//! path resolves to; on non-Unix systems nothing is checked.
//!
//! Warnings are found while the config is loaded, which happens before
//! logging is set up (the log format comes from the config). They are kept
//! here until [`crate::telemetry::init`] drains them with [`flush_warnings`];
//! once logging is up (e.g. a SIGHUP reload) they are logged at once.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What kind of file is checked, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Secret,
}

impl FileKind {
    fn describe(self) -> &'static str {
        match self {
            FileKind::Config => "config file",
            FileKind::Secret => "secret file",
        }
    }
}

/// Checks `path` and returns a warning when it is world-readable, or an
/// error (a sentence for the user) when it is group- or world-writable.
/// A file that cannot be inspected is not an error here: reading it will
/// report that with the real cause.
pub fn check(path: &Path, kind: FileKind) -> Result<Option<String>, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(None);
        };
        verdict(meta.permissions().mode(), path, kind)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, kind);
        Ok(None)
    }
}

/// The rule on Unix permission bits (split out to be tested without files).
pub fn verdict(mode: u32, path: &Path, kind: FileKind) -> Result<Option<String>, String> {
    let what = kind.describe();
    let mode = mode & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group- and world-writable",
            (true, false) => "group-writable",
            _ => "world-writable",
        };
        return Err(format!(
            "{what} {} is {who} (mode {mode:04o}); refusing to use it: run `chmod go-w {}`",
            path.display(),
            path.display()
        ));
    }
    if mode & 0o004 != 0 {
        let hint = match kind {
            FileKind::Secret => "chmod 0600",
            FileKind::Config => "chmod 0640",
        };
        return Ok(Some(format!(
            "{what} {} is world-readable (mode {mode:04o}); any local account can read it: run `{hint} {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(None)
}

/// Checks `path` and reports a warning through [`warn`]; returns the error
/// of [`check`].
pub fn check_and_warn(path: &Path, kind: FileKind) -> Result<(), String> {
    if let Some(warning) = check(path, kind)? {
        warn(warning);
    }
    Ok(())
}

/// The largest secret file read: an SSWS token is 42 characters and a PEM
/// key a few KiB; anything bigger is a wrong path, not a secret.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a secret file, checked by [`check_and_warn`]: it must be a regular file
/// (not a directory, device or FIFO, which could block or never end) of at
/// most [`MAX_SECRET_BYTES`].
pub fn read_secret_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    check_and_warn(path, FileKind::Secret)?;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "larger than {} KiB: not a secret file",
            MAX_SECRET_BYTES / 1024
        ));
    }
    Ok(text)
}

static LOGGING_READY: AtomicBool = AtomicBool::new(false);
static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Logs a permission warning now if logging is set up, else keeps it for
/// [`flush_warnings`].
pub fn warn(message: String) {
    if LOGGING_READY.load(Ordering::SeqCst) {
        tracing::warn!(warning = %message, "insecure file permissions");
    } else {
        PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message);
    }
}

/// Called once logging is set up: logs the kept warnings and logs later
/// ones at once.
pub fn flush_warnings() {
    LOGGING_READY.store(true, Ordering::SeqCst);
    let pending = std::mem::take(
        &mut *PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for message in pending {
        tracing::warn!(warning = %message, "insecure file permissions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/writer-sync/x")
    }

    #[test]
    fn owner_only_and_group_readable_files_pass_silently() {
        for mode in [0o600, 0o400, 0o640, 0o440, 0o700, 0o100_600] {
            assert_eq!(verdict(mode, p(), FileKind::Secret), Ok(None), "{mode:o}");
            assert_eq!(verdict(mode, p(), FileKind::Config), Ok(None), "{mode:o}");
        }
    }

    #[test]
    fn group_or_world_writable_files_are_refused_naming_the_file() {
        for (mode, who) in [
            (0o620, "group-writable"),
            (0o602, "world-writable"),
            (0o666, "group- and world-writable"),
            (0o777, "group- and world-writable"),
            (0o100_664, "group-writable"),
        ] {
            for kind in [FileKind::Secret, FileKind::Config] {
                let err = verdict(mode, p(), kind).unwrap_err();
                assert!(err.contains(who), "{mode:o}: {err}");
                assert!(err.contains("/etc/writer-sync/x"), "{err}");
                assert!(err.contains("chmod go-w"), "{err}");
            }
        }
    }

    #[test]
    fn world_readable_files_warn() {
        for mode in [0o644, 0o604, 0o444, 0o755] {
            let w = verdict(mode, p(), FileKind::Secret).unwrap().unwrap();
            assert!(w.contains("world-readable"), "{w}");
            assert!(w.contains("chmod 0600"), "{w}");
            let w = verdict(mode, p(), FileKind::Config).unwrap().unwrap();
            assert!(w.contains("config file"), "{w}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn real_files_are_checked_by_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "x").unwrap();
        let set =
            |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        set(0o600);
        assert_eq!(check(&file, FileKind::Secret), Ok(None));
        set(0o644);
        assert!(check(&file, FileKind::Secret).unwrap().is_some());
        set(0o666);
        assert!(check(&file, FileKind::Secret).is_err());
        // A missing file is left to the reader to report.
        assert_eq!(check(&dir.path().join("nope"), FileKind::Secret), Ok(None));
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "00abc\n").unwrap();
        assert_eq!(read_secret_text(&file).unwrap(), "00abc\n");
        std::fs::write(&file, "x".repeat(MAX_SECRET_BYTES as usize + 1)).unwrap();
        assert!(read_secret_text(&file).unwrap_err().contains("64 KiB"));
        // A device that never ends, and a directory.
        assert_eq!(
            read_secret_text(Path::new("/dev/zero")).unwrap_err(),
            "not a regular file"
        );
        assert_eq!(
            read_secret_text(dir.path()).unwrap_err(),
            "not a regular file"
        );
        assert!(read_secret_text(&dir.path().join("nope")).is_err());
    }
}
