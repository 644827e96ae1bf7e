//! From System Log events to what an incremental run reads again (SPEC §7).
//!
//! Invariant: pure. Events are hints, never state: an event only ever names
//! users to read again from Okta, or says that a full reconcile is needed
//! (an event this module cannot scope to users). Failed attempts and events
//! about other apps change nothing. Which event types exist and which target
//! holds which id: `../shared/okta-research.md` B.4 (Okta's event-type
//! catalog), e.g. an `AppUser` target's id (`0ua…`) is not the user's id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::okta::syslog::LogEvent;

/// Why an incremental run hands over to a full reconcile. Each is logged
/// and counted (`writer_sync_event_fallbacks_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FallbackReason {
    /// No full reconcile has set a cursor yet (or it was cleared).
    NoCursor,
    /// The cursor is older than the log keeps events (Okta: 90 days).
    CursorExpired,
    /// Okta refused the cursor (400 `E0000053`, a `since` too far back).
    CursorRejected,
    /// The configuration the cursor was made under changed (app or pushed
    /// groups).
    ConfigChanged,
    /// An event this run cannot scope to users: a group assigned to or
    /// removed from the app, a pushed group created, renamed before it was
    /// linked, or deleted, the app itself changed, a group rule, an import,
    /// a profile mapping.
    GroupWide,
    /// An event type the sync does not know.
    UnknownEvent,
    /// More users than `events.max_affected_users` in one poll.
    Burst,
    /// Reading the log or the users failed.
    ReadError,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 8] = [
        FallbackReason::NoCursor,
        FallbackReason::CursorExpired,
        FallbackReason::CursorRejected,
        FallbackReason::ConfigChanged,
        FallbackReason::GroupWide,
        FallbackReason::UnknownEvent,
        FallbackReason::Burst,
        FallbackReason::ReadError,
    ];

    /// The reason with this [`FallbackReason::as_str`] label.
    pub fn from_label(label: &str) -> Option<FallbackReason> {
        FallbackReason::ALL
            .into_iter()
            .find(|r| r.as_str() == label)
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::NoCursor => "no_cursor",
            FallbackReason::CursorExpired => "cursor_expired",
            FallbackReason::CursorRejected => "cursor_rejected",
            FallbackReason::ConfigChanged => "config_changed",
            FallbackReason::GroupWide => "group_wide",
            FallbackReason::UnknownEvent => "unknown_event",
            FallbackReason::Burst => "burst",
            FallbackReason::ReadError => "read_error",
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the events are read against: the app, and the groups the last full
/// reconcile pushed.
#[derive(Debug, Clone, Default)]
pub struct EventContext<'a> {
    /// `okta.app_id` (`None`: scope is the pushed groups' members).
    pub app_id: Option<&'a str>,
    /// Ids of the groups the last full reconcile pushed.
    pub pushed: BTreeSet<&'a str>,
    /// Ids of the pushed groups linked to a team.
    pub linked: BTreeSet<&'a str>,
    /// Ids of the groups assigned to the app, when the last full reconcile
    /// listed them (`push_groups = "assigned"`); `None`: not known, so a
    /// membership change of any group may assign or unassign a user.
    pub app_groups: Option<BTreeSet<&'a str>>,
    /// With `teams.push_groups` a list: its names (a group created or
    /// renamed into one of them becomes pushed).
    pub push_group_names: Option<BTreeSet<&'a str>>,
}

/// What a poll's events ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Okta user ids to read again.
    pub users: BTreeSet<String>,
    /// Those among them whose assignment to the app may have changed (app
    /// and group membership events): they are read as app users. The rest
    /// changed only their own status or profile and are read as users,
    /// sparing the app's rate-limit bucket, the scarce one.
    pub assignment: BTreeSet<String>,
    /// Set when a full reconcile is needed instead, with the first event
    /// that needs it (type, uuid).
    pub full: Option<(FallbackReason, String)>,
    /// Events read, by type (failed and foreign ones included).
    pub by_type: BTreeMap<String, u64>,
    /// Events that changed nothing the sync reads (failed attempts, other
    /// apps, groups that are not pushed).
    pub ignored: u64,
}

/// The System Log `filter` of the polling query: the event types of
/// `../shared/okta-research.md` B.4. The `target.id eq "<app>"` clause
/// catches every `application.*` and `group.application_assignment.*` event
/// about the Writer app only; the rest are filtered here against the pushed
/// groups.
pub fn log_filter(app_id: Option<&str>) -> String {
    let mut clauses: Vec<String> = vec![
        r#"eventType sw "user.lifecycle.""#.into(),
        r#"eventType eq "user.account.update_profile""#.into(),
        r#"eventType eq "user.account.update_primary_email""#.into(),
        r#"eventType sw "group.user_membership.""#.into(),
        r#"eventType eq "group.profile.update""#.into(),
        r#"eventType sw "group.lifecycle.""#.into(),
        r#"eventType eq "directory.mapping.update""#.into(),
        r#"eventType sw "system.import.""#.into(),
    ];
    if let Some(app) = app_id {
        clauses.insert(0, format!(r#"target.id eq "{app}""#));
    }
    clauses.join(" or ")
}

/// Reads `events` against `ctx`: the users to read again, or why a full
/// reconcile is needed. Failed attempts and events about other apps are
/// ignored.
pub fn hints(events: &[LogEvent], ctx: &EventContext<'_>) -> Hints {
    let mut hints = Hints::default();
    for event in events {
        *hints.by_type.entry(event.event_type.clone()).or_default() += 1;
        match effect(event, ctx) {
            Effect::Users(ids, assignment) => {
                if assignment {
                    hints.assignment.extend(ids.iter().cloned());
                }
                hints.users.extend(ids);
            }
            Effect::Ignore => hints.ignored += 1,
            Effect::Full(reason) => {
                if hints.full.is_none() {
                    hints.full = Some((reason, format!("{} ({})", event.event_type, event.uuid)));
                }
            }
        }
    }
    hints
}

enum Effect {
    /// Users to read again; `true`: their assignment may have changed.
    Users(Vec<String>, bool),
    Ignore,
    Full(FallbackReason),
}

fn effect(event: &LogEvent, ctx: &EventContext<'_>) -> Effect {
    if event.outcome.result != "SUCCESS" {
        return Effect::Ignore;
    }
    let t = event.event_type.as_str();
    let users = |assignment| {
        Effect::Users(
            event.targets("User").map(str::to_owned).collect(),
            assignment,
        )
    };
    let about_app = || {
        ctx.app_id
            .is_some_and(|app| event.targets("AppInstance").any(|id| id == app))
    };
    let groups: Vec<&str> = event.targets("UserGroup").collect();
    let pushed = groups.iter().any(|g| ctx.pushed.contains(g));
    let named_pushed = || {
        ctx.push_group_names.as_ref().is_some_and(|names| {
            event
                .target
                .iter()
                .any(|g| g.kind == "UserGroup" && names.contains(g.display_name.as_str()))
        })
    };
    match t {
        // A user's own state: status, profile (email, names, custom role).
        _ if t.starts_with("user.lifecycle.")
            || t == "user.account.update_profile"
            || t == "user.account.update_primary_email" =>
        {
            users(false)
        }
        // The user's assignment to an app, or its app-user profile.
        _ if t.starts_with("application.user_membership.") => {
            if about_app() {
                users(true)
            } else {
                Effect::Ignore
            }
        }
        // Membership of a group: it moves a user in a pushed group's team,
        // and (when the group is assigned to the app) may assign or
        // unassign it — the app's own event follows, read again either way.
        "group.user_membership.add" | "group.user_membership.remove" => {
            let grants_app = ctx.app_id.is_some()
                && ctx
                    .app_groups
                    .as_ref()
                    .is_none_or(|app_groups| groups.iter().any(|g| app_groups.contains(g)));
            if pushed || grants_app {
                users(grants_app)
            } else {
                Effect::Ignore
            }
        }
        // Group rules act through membership events of their own; their
        // evaluation alone changes nothing, but a rule deactivated or
        // invalidated may mean bulk changes the log reports late.
        _ if t.starts_with("group.user_membership.rule.") => {
            Effect::Full(FallbackReason::GroupWide)
        }
        // A linked team keeps its name when its group is renamed (SPEC
        // §1.3); a pushed group not linked yet may link by its new name, and
        // with a list of names a rename may push a group or stop pushing it.
        "group.profile.update" => {
            let links_anew = groups
                .iter()
                .any(|g| ctx.pushed.contains(g) && !ctx.linked.contains(g));
            if links_anew || named_pushed() || (ctx.push_group_names.is_some() && pushed) {
                Effect::Full(FallbackReason::GroupWide)
            } else {
                Effect::Ignore
            }
        }
        "group.lifecycle.create" => {
            if named_pushed() {
                Effect::Full(FallbackReason::GroupWide)
            } else {
                Effect::Ignore
            }
        }
        // A pushed group deleted: its team becomes an orphaned link (SPEC
        // §1.3), which only a full reconcile decides.
        "group.lifecycle.delete" => {
            if pushed {
                Effect::Full(FallbackReason::GroupWide)
            } else {
                Effect::Ignore
            }
        }
        _ if t.starts_with("group.lifecycle.") => Effect::Ignore,
        // A group assigned to the app, unassigned, or its assignment's
        // profile (role) or priority changed: many users at once.
        _ if t.starts_with("group.application_assignment.") => {
            if about_app() {
                Effect::Full(FallbackReason::GroupWide)
            } else {
                Effect::Ignore
            }
        }
        // The app itself activated, deactivated, changed or deleted.
        _ if t.starts_with("application.lifecycle.") => {
            if about_app() {
                Effect::Full(FallbackReason::GroupWide)
            } else {
                Effect::Ignore
            }
        }
        // Profile mappings and imports (AD/LDAP groups change only through
        // them) can change anyone's profile or memberships.
        "directory.mapping.update" => Effect::Full(FallbackReason::GroupWide),
        _ if t.starts_with("system.import.") => Effect::Full(FallbackReason::GroupWide),
        // Anything else the filter let through: not known to be harmless.
        _ => Effect::Full(FallbackReason::UnknownEvent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::okta::syslog::{Outcome, Target};

    fn event(event_type: &str, targets: &[(&str, &str)]) -> LogEvent {
        LogEvent {
            uuid: format!("uuid-{event_type}"),
            published: "2026-01-01T00:00:00.000Z".into(),
            event_type: event_type.into(),
            outcome: Outcome {
                result: "SUCCESS".into(),
            },
            target: targets
                .iter()
                .map(|(kind, id)| Target {
                    id: (*id).into(),
                    kind: (*kind).into(),
                    display_name: format!("name of {id}"),
                })
                .collect(),
        }
    }

    fn ctx<'a>() -> EventContext<'a> {
        EventContext {
            app_id: Some("0oaWRITER"),
            pushed: ["00gPUSHED", "00gUNLINKED"].into(),
            linked: ["00gPUSHED"].into(),
            app_groups: Some(["00gPUSHED", "00gUNLINKED", "00gAPPONLY"].into()),
            push_group_names: None,
        }
    }

    fn users(h: &Hints) -> Vec<&str> {
        h.users.iter().map(String::as_str).collect()
    }

    #[test]
    fn user_lifecycle_and_profile_events_name_their_user() {
        for t in [
            "user.lifecycle.suspend",
            "user.lifecycle.unsuspend",
            "user.lifecycle.deactivate",
            "user.lifecycle.delete.completed",
            "user.account.update_profile",
            "user.account.update_primary_email",
        ] {
            let h = hints(&[event(t, &[("User", "00u1")])], &ctx());
            assert_eq!(users(&h), ["00u1"], "{t}");
            assert!(h.full.is_none(), "{t}");
        }
    }

    #[test]
    fn an_app_user_target_is_not_the_user_id() {
        let h = hints(
            &[event(
                "application.user_membership.add",
                &[
                    ("AppUser", "0ua1"),
                    ("AppInstance", "0oaWRITER"),
                    ("User", "00u1"),
                ],
            )],
            &ctx(),
        );
        assert_eq!(users(&h), ["00u1"]);
    }

    #[test]
    fn events_about_other_apps_and_failed_attempts_are_ignored() {
        let other = event(
            "application.user_membership.remove",
            &[
                ("AppUser", "0ua1"),
                ("AppInstance", "0oaOTHER"),
                ("User", "00u1"),
            ],
        );
        let mut failed = event("user.lifecycle.suspend", &[("User", "00u2")]);
        failed.outcome.result = "FAILURE".into();
        let group_assigned_elsewhere = event(
            "group.application_assignment.add",
            &[("UserGroup", "00gX"), ("AppInstance", "0oaOTHER")],
        );
        let h = hints(&[other, failed, group_assigned_elsewhere], &ctx());
        assert!(h.users.is_empty() && h.full.is_none());
        assert_eq!(h.ignored, 3);
        assert_eq!(h.by_type.values().sum::<u64>(), 3);
    }

    #[test]
    fn membership_of_a_group_names_the_user() {
        let h = hints(
            &[event(
                "group.user_membership.add",
                &[("User", "00u1"), ("UserGroup", "00gPUSHED")],
            )],
            &ctx(),
        );
        assert_eq!(users(&h), ["00u1"]);
        // A group that grants the app (not pushed) may assign the user.
        let h = hints(
            &[event(
                "group.user_membership.remove",
                &[("User", "00u2"), ("UserGroup", "00gAPPONLY")],
            )],
            &ctx(),
        );
        assert_eq!(users(&h), ["00u2"]);
        // Any other group: nothing the sync reads.
        let h = hints(
            &[event(
                "group.user_membership.add",
                &[("User", "00u3"), ("UserGroup", "00gOTHER")],
            )],
            &ctx(),
        );
        assert!(h.users.is_empty() && h.full.is_none());
        // Without an app, only pushed groups matter.
        let no_app = EventContext {
            app_id: None,
            ..ctx()
        };
        let h = hints(
            &[event(
                "group.user_membership.remove",
                &[("User", "00u1"), ("UserGroup", "00gOTHER")],
            )],
            &no_app,
        );
        assert!(h.users.is_empty() && h.full.is_none());
    }

    #[test]
    fn group_wide_changes_need_a_full_reconcile() {
        for e in [
            event(
                "group.application_assignment.add",
                &[("UserGroup", "00gNEW"), ("AppInstance", "0oaWRITER")],
            ),
            event(
                "group.application_assignment.remove",
                &[("UserGroup", "00gPUSHED"), ("AppInstance", "0oaWRITER")],
            ),
            event(
                "group.application_assignment.update",
                &[("UserGroup", "00gPUSHED"), ("AppInstance", "0oaWRITER")],
            ),
            event("group.lifecycle.delete", &[("UserGroup", "00gPUSHED")]),
            event("group.profile.update", &[("UserGroup", "00gUNLINKED")]),
            event(
                "application.lifecycle.deactivate",
                &[("AppInstance", "0oaWRITER")],
            ),
            event("group.user_membership.rule.deactivated", &[]),
            event("directory.mapping.update", &[]),
            event("system.import.complete", &[]),
        ] {
            let h = hints(std::slice::from_ref(&e), &ctx());
            assert_eq!(
                h.full.as_ref().map(|(r, _)| *r),
                Some(FallbackReason::GroupWide),
                "{}",
                e.event_type
            );
        }
    }

    #[test]
    fn renaming_a_linked_group_changes_nothing_and_unknown_types_fall_back() {
        let h = hints(
            &[event("group.profile.update", &[("UserGroup", "00gPUSHED")])],
            &ctx(),
        );
        assert!(h.full.is_none() && h.users.is_empty());
        let h = hints(&[event("user.session.start", &[("User", "00u1")])], &ctx());
        assert_eq!(h.full.map(|(r, _)| r), Some(FallbackReason::UnknownEvent));
    }

    #[test]
    fn with_a_list_of_names_a_group_created_or_renamed_into_one_falls_back() {
        let listed = EventContext {
            push_group_names: Some(["Eng"].into()),
            ..ctx()
        };
        let mut created = event("group.lifecycle.create", &[("UserGroup", "00gNEW")]);
        created.target[0].display_name = "Eng".into();
        let h = hints(&[created], &listed);
        assert_eq!(h.full.map(|(r, _)| r), Some(FallbackReason::GroupWide));
        let h = hints(
            &[event("group.lifecycle.create", &[("UserGroup", "00gNEW")])],
            &listed,
        );
        assert!(h.full.is_none());
    }

    #[test]
    fn the_filter_names_the_app_and_every_handled_family() {
        let f = log_filter(Some("0oaWRITER"));
        assert!(f.starts_with(r#"target.id eq "0oaWRITER" or "#), "{f}");
        for needle in [
            "user.lifecycle.",
            "group.user_membership.",
            "group.profile.update",
        ] {
            assert!(f.contains(needle), "{f}");
        }
        assert!(!log_filter(None).contains("target.id"));
    }
}
