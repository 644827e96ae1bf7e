//! Room for an apply on SQLite: the free space of the database's file
//! system against an estimate of what the planned changes will write.
//!
//! Invariant: an apply that cannot fit is refused before its first write;
//! the estimate errs large (a refused run names both numbers, so an
//! operator can tell an estimate from a full disk). PostgreSQL manages its
//! own storage: no check there.

use crate::store::{Backend, Store, StoreError};

/// Bytes a change adds to the database file: its row, its audit row (with
/// the change as JSON) and their index entries. Measured about 0.5 KB per
/// change on a first sync (docs/RELIABILITY.md); doubled for large names.
pub const BYTES_PER_CHANGE: u64 = 1_024;

/// Each change is written twice: into the WAL, then into the database at a
/// checkpoint (the WAL is reused after a checkpoint, but a long apply may
/// outrun checkpoints).
pub const WAL_FACTOR: u64 = 2;

/// Room kept free beyond the estimate: SQLite's own headroom (the WAL's
/// checkpoint size, temp indexes) and the run record.
pub const HEADROOM_BYTES: u64 = 16 * 1024 * 1024;

/// The bytes an apply of `changes` needs free.
pub fn bytes_needed(changes: usize) -> u64 {
    (changes as u64)
        .saturating_mul(BYTES_PER_CHANGE)
        .saturating_mul(WAL_FACTOR)
        .saturating_add(HEADROOM_BYTES)
}

/// Refuses an apply of `changes` when `free` bytes cannot hold it.
pub fn check_fits(free: u64, changes: usize) -> Result<(), StoreError> {
    let needed = bytes_needed(changes);
    if changes > 0 && free < needed {
        return Err(StoreError::NoSpace {
            free,
            needed,
            changes,
        });
    }
    Ok(())
}

impl Store {
    /// Free bytes (for an unprivileged process) on the file system of the
    /// SQLite database; `None` on PostgreSQL.
    pub fn free_bytes(&self) -> Result<Option<u64>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let Some(path) = self.sqlite_path.as_deref() else {
            return Ok(None);
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let st = rustix::fs::statvfs(dir).map_err(|e| StoreError::FreeSpace {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
    }

    /// Refuses an apply of `changes` that the SQLite database's file system
    /// cannot hold (nothing written); always fine on PostgreSQL.
    pub fn check_room_for(&self, changes: usize) -> Result<(), StoreError> {
        match self.free_bytes()? {
            Some(free) => check_fits(free, changes),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_that_cannot_fit_is_refused_naming_both_numbers() {
        let needed = bytes_needed(5_570);
        assert_eq!(needed, 5_570 * 1_024 * 2 + 16 * 1024 * 1024);
        let err = check_fits(needed - 1, 5_570).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("{} bytes free", needed - 1))
                && text.contains(&format!("need about {needed} bytes"))
                && text.contains("5570 changes"),
            "{text}"
        );
        assert!(check_fits(needed, 5_570).is_ok());
        // Nothing to apply needs no room.
        assert!(check_fits(0, 0).is_ok());
        assert_eq!(bytes_needed(usize::MAX), u64::MAX);
    }
}
