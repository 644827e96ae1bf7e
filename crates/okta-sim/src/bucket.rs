//! Okta's rate-limit buckets as the simulator models them: which window a
//! request counts against, and the bucket's name in stats. Also the
//! simulator's [`Route`]s (what a path answers), which faults and the
//! request log name, because one bucket serves several listings.
//!
//! Invariant: this table is the simulator's own and shares nothing with the
//! client's request families (writer-sync's `okta::limit::Family`), so a
//! path the client files under the wrong bucket shows up in tests as 429s
//! (the client's pacing follows headers of a window it does not account
//! for) instead of being mirrored.
//!
//! The buckets are Okta's (exact path first, else the longest prefix), from
//! Okta's own mapping in okta/terraform-provider-okta
//! (`okta/internal/apimutex/apimutex.go`) and the last published per-bucket
//! table of Okta's docs (`rl-global-mgmt`, removed 2025-12-16):
//! * `/api/v1/apps/{id}` exactly is a bucket of its own; everything else
//!   under `/api/v1/apps` (app users, app groups) is `/api/v1/apps`;
//! * `/api/v1/groups/{id}` exactly is a bucket of its own; everything else
//!   under `/api/v1/groups`, the member listings `/groups/{id}/users`
//!   included, is `/api/v1/groups` (with group search);
//! * `GET /api/v1/users/{idOrLogin}` exactly is a bucket of its own;
//!   everything else under `/api/v1/users` is `/api/v1/users`;
//! * `/api/v1/logs` is a bucket of its own;
//! * everything else (the schemas, the token endpoint) counts against "most
//!   other endpoints".
//!
//! The simulator serves only GETs on the management API (and the token
//! POST), so the table does not model the buckets of writes.

/// Okta's rate-limit buckets (see the module docs for the source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// `/api/v1/apps` and everything below it except `/api/v1/apps/{id}`.
    Apps,
    /// `/api/v1/apps/{id}` exactly.
    AppById,
    /// `/api/v1/groups` and everything below it except `/api/v1/groups/{id}`:
    /// list, search and the member listings.
    Groups,
    /// `/api/v1/groups/{id}` exactly.
    GroupById,
    /// `/api/v1/users` and everything below it except `/api/v1/users/{id}`.
    Users,
    /// `/api/v1/users/{idOrLogin}` exactly.
    UserById,
    /// `/api/v1/logs`.
    Logs,
    /// Every other path (the token endpoint and the schemas included).
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 8] = [
        Bucket::Apps,
        Bucket::AppById,
        Bucket::Groups,
        Bucket::GroupById,
        Bucket::Users,
        Bucket::UserById,
        Bucket::Logs,
        Bucket::Other,
    ];

    /// The bucket's name in stats and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Apps => "apps",
            Bucket::AppById => "app_by_id",
            Bucket::Groups => "groups",
            Bucket::GroupById => "group_by_id",
            Bucket::Users => "users",
            Bucket::UserById => "user_by_id",
            Bucket::Logs => "logs",
            Bucket::Other => "other",
        }
    }

    /// The bucket of a request path (percent-encoded, without the query; a
    /// trailing `/` does not matter). This match is the whole table.
    pub fn of_path(path: &str) -> Bucket {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v1", "apps", _] => Bucket::AppById,
            ["", "api", "v1", "apps", ..] => Bucket::Apps,
            ["", "api", "v1", "groups", _] => Bucket::GroupById,
            ["", "api", "v1", "groups", ..] => Bucket::Groups,
            ["", "api", "v1", "users", _] => Bucket::UserById,
            ["", "api", "v1", "users", ..] => Bucket::Users,
            ["", "api", "v1", "logs"] => Bucket::Logs,
            _ => Bucket::Other,
        }
    }
}

/// What a request path asks for, finer than its [`Bucket`]: faults and the
/// request log can name one listing of a bucket shared by several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `/api/v1/apps/{id}`.
    App,
    /// `/api/v1/apps/{id}/users`.
    AppUsers,
    /// `/api/v1/apps/{id}/groups`.
    AppGroups,
    /// `/api/v1/groups` (list and search).
    Groups,
    /// `/api/v1/groups/{id}/users`.
    GroupMembers,
    /// `/api/v1/users` (list, filter and search).
    Users,
    /// `/api/v1/meta/schemas/apps/{id}/default` and
    /// `/api/v1/meta/schemas/user/default`.
    Schema,
    /// `/oauth2/v1/token`.
    Token,
    /// Anything else.
    Other,
}

impl Route {
    /// The route of a request path (as [`Bucket::of_path`] takes it).
    pub fn of_path(path: &str) -> Route {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["", "api", "v1", "apps", _] => Route::App,
            ["", "api", "v1", "apps", _, "users"] => Route::AppUsers,
            ["", "api", "v1", "apps", _, "groups"] => Route::AppGroups,
            ["", "api", "v1", "groups"] => Route::Groups,
            ["", "api", "v1", "groups", _, "users"] => Route::GroupMembers,
            ["", "api", "v1", "users"] => Route::Users,
            ["", "api", "v1", "meta", "schemas", "apps", _, "default"]
            | ["", "api", "v1", "meta", "schemas", "user", "default"] => Route::Schema,
            ["", "oauth2", "v1", "token"] => Route::Token,
            _ => Route::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_oktas_buckets() {
        let cases = [
            ("/api/v1/apps", Bucket::Apps),
            ("/api/v1/apps/0oa1/users", Bucket::Apps),
            ("/api/v1/apps/0oa1/groups", Bucket::Apps),
            ("/api/v1/apps/0oa1", Bucket::AppById),
            ("/api/v1/apps/0oa1/", Bucket::AppById),
            ("/api/v1/groups", Bucket::Groups),
            ("/api/v1/groups/", Bucket::Groups),
            ("/api/v1/groups/00g1/users", Bucket::Groups),
            ("/api/v1/groups/00g1", Bucket::GroupById),
            ("/api/v1/users", Bucket::Users),
            ("/api/v1/users/00u1/groups", Bucket::Users),
            ("/api/v1/users/00u1", Bucket::UserById),
            ("/api/v1/logs", Bucket::Logs),
            ("/api/v1/meta/schemas/user/default", Bucket::Other),
            ("/oauth2/v1/token", Bucket::Other),
            ("/", Bucket::Other),
        ];
        for (path, bucket) in cases {
            assert_eq!(Bucket::of_path(path), bucket, "{path}");
        }
    }

    #[test]
    fn routes_name_the_listings() {
        let cases = [
            ("/api/v1/apps/0oa1", Route::App),
            ("/api/v1/apps/0oa1/users", Route::AppUsers),
            ("/api/v1/apps/0oa1/groups", Route::AppGroups),
            ("/api/v1/groups", Route::Groups),
            ("/api/v1/groups/00g1/users", Route::GroupMembers),
            ("/api/v1/users", Route::Users),
            ("/api/v1/meta/schemas/apps/0oa1/default", Route::Schema),
            ("/api/v1/meta/schemas/user/default", Route::Schema),
            ("/oauth2/v1/token", Route::Token),
            ("/api/v1/logs", Route::Other),
        ];
        for (path, route) in cases {
            assert_eq!(Route::of_path(path), route, "{path}");
        }
    }

    #[test]
    fn names_are_the_metric_labels() {
        let names: Vec<&str> = Bucket::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(
            names,
            [
                "apps",
                "app_by_id",
                "groups",
                "group_by_id",
                "users",
                "user_by_id",
                "logs",
                "other"
            ]
        );
    }
}
