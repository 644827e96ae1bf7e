//! Okta's rate-limit buckets as the simulator models them: which window a
//! request counts against, and the bucket's name in stats.
//!
//! Invariant: this table is the simulator's own and shares nothing with the
//! client's request families (writer-sync's `okta::limit::Family`), so a path the client
//! files under the wrong bucket shows up in tests (as 429s, or as headers
//! that do not match the client's pacing) instead of being mirrored.
//!
//! For now the table classifies exactly as the client does, so behaviour
//! does not change. Known differences from Okta's real buckets, to be
//! handled in a later step:
//! * `/api/v1/groups/{id}/users` shares the `/api/v1/groups` bucket in Okta;
//!   here it has a bucket of its own (`group_members`).
//! * `/api/v1/apps/{id}` (exactly) is a bucket of its own in Okta; here it
//!   counts against `apps` with the app-user and app-group listings.
//! * `GET /api/v1/users/{id}` (exactly) is a bucket of its own in Okta; here
//!   it counts against `users` (Okta's table depends on the method too).
//! * `/api/v1/logs` is a bucket of its own in Okta; here it is `other`.

/// Okta's rate-limit buckets as the simulator models them (see the module
/// docs for where they differ from Okta's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// `/api/v1/apps` and everything below it (the app, app users, app groups).
    Apps,
    /// `/api/v1/groups` (list and search).
    Groups,
    /// `/api/v1/groups/{id}/users`.
    GroupMembers,
    /// `/api/v1/users` and everything below it.
    Users,
    /// Every other path (the token endpoint included).
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 5] = [
        Bucket::Apps,
        Bucket::Groups,
        Bucket::GroupMembers,
        Bucket::Users,
        Bucket::Other,
    ];

    /// The bucket's name in stats and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Apps => "apps",
            Bucket::Groups => "groups",
            Bucket::GroupMembers => "group_members",
            Bucket::Users => "users",
            Bucket::Other => "other",
        }
    }

    /// The bucket of a request path (percent-encoded, without the query; a
    /// trailing `/` does not matter). This match is the whole table.
    pub fn of_path(path: &str) -> Bucket {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v1", "apps", ..] => Bucket::Apps,
            ["", "api", "v1", "groups"] => Bucket::Groups,
            ["", "api", "v1", "groups", _, "users"] => Bucket::GroupMembers,
            ["", "api", "v1", "users", ..] => Bucket::Users,
            _ => Bucket::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_the_modelled_buckets() {
        let cases = [
            ("/api/v1/apps", Bucket::Apps),
            ("/api/v1/apps/0oa1", Bucket::Apps),
            ("/api/v1/apps/0oa1/users", Bucket::Apps),
            ("/api/v1/apps/0oa1/groups", Bucket::Apps),
            ("/api/v1/groups", Bucket::Groups),
            ("/api/v1/groups/", Bucket::Groups),
            ("/api/v1/groups/00g1/users", Bucket::GroupMembers),
            ("/api/v1/groups/00g1", Bucket::Other),
            ("/api/v1/users", Bucket::Users),
            ("/api/v1/users/00u1", Bucket::Users),
            ("/api/v1/logs", Bucket::Other),
            ("/oauth2/v1/token", Bucket::Other),
            ("/", Bucket::Other),
        ];
        for (path, bucket) in cases {
            assert_eq!(Bucket::of_path(path), bucket, "{path}");
        }
    }

    #[test]
    fn names_are_the_metric_labels() {
        let names: Vec<&str> = Bucket::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(names, ["apps", "groups", "group_members", "users", "other"]);
    }
}
