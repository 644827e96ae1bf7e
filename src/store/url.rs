//! Where the Writer org store lives: [`StoreUrl`], parsed from `store.url`.
//!
//! Invariant: a PostgreSQL URL (which may carry a password) exists only as a
//! [`Secret`]; `Debug` and `Display` print [`StoreUrl::redacted`], never the
//! password.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use crate::secret::Secret;

/// Where the Writer org store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// The full `postgres://` URL; it may carry a password, so it is a secret.
    Postgres(Secret),
}

impl StoreUrl {
    /// Parses `store.url`: `postgres://…` / `postgresql://…`, `sqlite://PATH`,
    /// `sqlite:PATH`, or a bare file path (SQLite).
    pub fn parse(raw: &str) -> Result<StoreUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let url = Url::parse(raw).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) && !raw.contains("host=") {
                return Err("PostgreSQL URL has no host".into());
            }
            return Ok(StoreUrl::Postgres(Secret::new(raw)));
        }
        let path = if let Some(rest) = raw.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = raw.strip_prefix("sqlite:") {
            rest
        } else if raw.contains("://") {
            return Err(format!(
                "unsupported database URL scheme in {:?} (use sqlite:// or postgres://)",
                raw.split("://").next().unwrap_or_default()
            ));
        } else {
            raw
        };
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err("needs a file path (in-memory SQLite would lose every run)".into());
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(path)))
    }

    /// A description safe to log: the SQLite path, or the PostgreSQL URL
    /// without its password.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => match Url::parse(url.expose()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("[redacted]"));
                    }
                    let mut shown = u.to_string().replace("%5Bredacted%5D", "[redacted]");
                    if shown.contains("password=") {
                        shown = shown.split('?').next().unwrap_or_default().to_owned();
                    }
                    shown
                }
                Err(_) => "postgres://[redacted]".into(),
            },
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_url_forms() {
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/x.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:rel.db").unwrap(),
            StoreUrl::Sqlite("rel.db".into())
        );
        assert_eq!(
            StoreUrl::parse("./w.db").unwrap(),
            StoreUrl::Sqlite("./w.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgresql://u@h/d").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("sqlite::memory:").is_err());
        assert!(StoreUrl::parse("mysql://h/d").is_err());
    }
}
