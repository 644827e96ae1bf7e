//! The planner's table tests: one per rule, named after it, with builders
//! that read like the rules (also used by the property tests and the
//! guard's tests).

use super::*;
use crate::model::{
    Change, Counts, DeactivationReason, OktaGroup, OktaUser, Role, StoreMembership, TeamRef,
    UserAttrs, UserRef,
};
use crate::reconcile::plan::values::{UnknownRole, is_active_status, normalize_role};
use serde::Serialize;

// -----------------------------------------------------------------------
// Builders: tests read like the rules.
// -----------------------------------------------------------------------

pub(crate) fn okta_user(id: &str, email: &str) -> OktaUser {
    OktaUser {
        id: id.to_string().into(),
        status: "ACTIVE".to_string().into(),
        email: Some(email.into()),
        first_name: None,
        last_name: None,
        display_name: None,
        role: None,
    }
}

pub(crate) trait OktaUserExt {
    fn status(self, status: &str) -> Self;
    fn names(self, first: &str, last: &str) -> Self;
    fn display(self, display: &str) -> Self;
    fn role(self, role: &str) -> Self;
    fn email(self, email: Option<&str>) -> Self;
}

impl OktaUserExt for OktaUser {
    fn status(mut self, status: &str) -> Self {
        self.status = status.into();
        self
    }
    fn names(mut self, first: &str, last: &str) -> Self {
        self.first_name = Some(first.into());
        self.last_name = Some(last.into());
        self
    }
    fn display(mut self, display: &str) -> Self {
        self.display_name = Some(display.into());
        self
    }
    fn role(mut self, role: &str) -> Self {
        self.role = Some(role.into());
        self
    }
    fn email(mut self, email: Option<&str>) -> Self {
        self.email = email.map(Into::into);
        self
    }
}

pub(crate) fn store_user(id: i64, email: &str) -> StoreUser {
    StoreUser {
        id,
        email: email.to_string().into(),
        okta_id: None,
        first_name: String::new().into(),
        last_name: String::new().into(),
        display_name: String::new().into(),
        active: true,
    }
}

pub(crate) trait StoreUserExt {
    fn managed(self, okta_id: &str) -> Self;
    fn inactive(self) -> Self;
    fn names(self, first: &str, last: &str, display: &str) -> Self;
}

impl StoreUserExt for StoreUser {
    fn managed(mut self, okta_id: &str) -> Self {
        self.okta_id = Some(okta_id.into());
        self
    }
    fn inactive(mut self) -> Self {
        self.active = false;
        self
    }
    fn names(mut self, first: &str, last: &str, display: &str) -> Self {
        self.first_name = first.into();
        self.last_name = last.into();
        self.display_name = display.into();
        self
    }
}

pub(crate) fn group(id: &str, name: &str, members: &[&str]) -> OktaGroup {
    OktaGroup {
        id: id.to_string(),
        name: name.to_string(),
        member_ids: members.iter().map(|&m| m.into()).collect(),
        kind: None,
    }
}

pub(crate) fn team(id: i64, name: &str) -> StoreTeam {
    StoreTeam {
        id,
        name: name.to_string(),
        okta_group_id: None,
    }
}

pub(crate) fn linked_team(id: i64, name: &str, group_id: &str) -> StoreTeam {
    StoreTeam {
        okta_group_id: Some(group_id.to_string()),
        ..team(id, name)
    }
}

pub(crate) fn member(team_id: i64, user_id: i64, role: Role) -> StoreMembership {
    StoreMembership {
        team_id,
        user_id,
        role,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) okta: OktaState,
    pub(crate) store: StoreState,
    pub(crate) policy: Policy,
}

pub(crate) fn world() -> World {
    World {
        okta: OktaState::default(),
        store: StoreState::default(),
        policy: Policy {
            default_team: None,
            create_missing_teams: false,
        },
    }
}

impl World {
    pub(crate) fn okta(mut self, users: Vec<OktaUser>) -> Self {
        self.okta.users = users;
        self
    }
    pub(crate) fn groups(mut self, groups: Vec<OktaGroup>) -> Self {
        self.okta.groups = groups;
        self
    }
    pub(crate) fn missing_groups(mut self, names: &[&str]) -> Self {
        self.okta.missing_group_names = names.iter().map(|n| n.to_string()).collect();
        self
    }
    pub(crate) fn store(mut self, users: Vec<StoreUser>) -> Self {
        self.store.users = users;
        self
    }
    pub(crate) fn teams(mut self, teams: Vec<StoreTeam>) -> Self {
        self.store.teams = teams;
        self
    }
    pub(crate) fn memberships(mut self, memberships: Vec<StoreMembership>) -> Self {
        self.store.memberships = memberships;
        self
    }
    pub(crate) fn default_team(mut self, name: &str) -> Self {
        self.policy.default_team = Some(name.to_string());
        self
    }
    pub(crate) fn create_missing(mut self) -> Self {
        self.policy.create_missing_teams = true;
        self
    }
    pub(crate) fn plan(&self) -> Plan {
        plan(&self.okta, &self.store, &self.policy)
    }
}

pub(crate) fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.changes.iter().map(Change::kind).collect()
}

pub(crate) fn attrs(email: &str, first: &str, last: &str, display: &str) -> UserAttrs {
    UserAttrs {
        email: email.to_string().into(),
        first_name: first.to_string().into(),
        last_name: last.to_string().into(),
        display_name: display.to_string().into(),
    }
}

/// The findings of `severity` whose message contains every needle.
pub(crate) fn findings_with(plan: &Plan, severity: Severity, needles: &[&str]) -> usize {
    plan.findings
        .iter()
        .filter(|f| f.severity == severity && needles.iter().all(|n| f.message.contains(n)))
        .count()
}

pub(crate) fn create(okta_id: &str, email: &str) -> Change {
    Change::CreateUser {
        okta_id: okta_id.into(),
        attrs: Box::new(attrs(email, "", "", "")),
    }
}

pub(crate) fn deactivate(
    user_id: i64,
    okta_id: &str,
    email: &str,
    reason: DeactivationReason,
) -> Change {
    Change::DeactivateUser {
        user_id,
        okta_id: okta_id.to_string(),
        email: email.to_string(),
        reason,
    }
}

pub(crate) fn update(user_id: i64, okta_id: &str, before: UserAttrs, after: UserAttrs) -> Change {
    Change::UpdateUser {
        user_id,
        okta_id: okta_id.to_string(),
        before: Box::new(before),
        after: Box::new(after),
    }
}

pub(crate) fn add(
    team: TeamRef,
    team_name: &str,
    user: UserRef,
    email: &str,
    role: Role,
) -> Change {
    Change::AddMembership {
        team,
        team_name: team_name.into(),
        user,
        email: email.into(),
        role,
    }
}

pub(crate) fn remove(
    team_id: i64,
    team_name: &str,
    user_id: i64,
    email: &str,
    role: Role,
) -> Change {
    Change::RemoveMembership {
        team_id,
        team_name: team_name.into(),
        user_id,
        email: email.into(),
        role,
    }
}

pub(crate) fn new_user(okta_id: &str) -> UserRef {
    UserRef::New {
        okta_id: okta_id.into(),
    }
}

/// The counts of a plan, as the report tallies them.
pub(crate) fn counts(plan: &Plan) -> Counts {
    Counts::of_plan(plan)
}

// -----------------------------------------------------------------------
// Small helpers.
// -----------------------------------------------------------------------

#[test]
fn active_like_statuses_table() {
    for (status, active) in [
        ("ACTIVE", true),
        ("PROVISIONED", true),
        ("RECOVERY", true),
        ("PASSWORD_EXPIRED", true),
        ("LOCKED_OUT", true),
        ("SUSPENDED", false),
        ("DEPROVISIONED", false),
        ("STAGED", false),
        ("active", false),
        ("", false),
    ] {
        assert_eq!(is_active_status(status), active, "{status}");
    }
}

#[test]
fn role_normalization_table() {
    let unknown = |v: &str| {
        Err(UnknownRole {
            value: v.to_string(),
        })
    };
    for (raw, expected) in [
        (None, Ok(Role::Member)),
        (Some(""), Ok(Role::Member)),
        (Some("  "), Ok(Role::Member)),
        (Some("admin"), Ok(Role::Admin)),
        (Some("ADMIN"), Ok(Role::Admin)),
        (Some("Team Admin"), Ok(Role::Admin)),
        (Some("team_admin"), Ok(Role::Admin)),
        (Some("team-ADMIN"), Ok(Role::Admin)),
        (Some(" member "), Ok(Role::Member)),
        (Some("Team_Member"), Ok(Role::Member)),
        (Some("teammember"), Ok(Role::Member)),
        (Some("owner"), unknown("owner")),
        (Some("true"), unknown("true")),
        (Some("administrator"), unknown("administrator")),
        (Some("\u{a0}Admin\t"), Ok(Role::Admin)),
        (Some("ADM\u{130}N"), unknown("ADM\u{130}N")),
        (Some("\u{ff21}dmin"), unknown("\u{ff21}dmin")),
        (
            Some("team-member-team-member"),
            unknown("team-member-team-member"),
        ),
    ] {
        assert_eq!(normalize_role(raw), expected, "{raw:?}");
    }
    assert_eq!(UnknownRole::FALLBACK, Role::Member);
}

#[test]
fn change_kinds_are_snake_case_names() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .create_missing();
    let p = w.plan();
    assert_eq!(
        kinds(&p),
        ["team_created", "user_created", "membership_added"]
    );
    let all = [
        (
            Change::LinkTeam {
                team_id: 1,
                name: "T".into(),
                okta_group_id: "g".into(),
            },
            "team_linked",
        ),
        (
            Change::LinkUser {
                user_id: 1,
                email: "e".into(),
                okta_id: "o".into(),
                previous_okta_id: None,
            },
            "user_linked",
        ),
        (
            update(1, "o", attrs("a", "", "", ""), attrs("b", "", "", "")),
            "user_updated",
        ),
        (
            Change::ReactivateUser {
                user_id: 1,
                okta_id: "o".into(),
                email: "e".into(),
            },
            "user_reactivated",
        ),
        (
            deactivate(1, "o", "e", DeactivationReason::Inactive),
            "user_deactivated",
        ),
        (remove(1, "T", 1, "e", Role::Admin), "membership_removed"),
        (
            Change::ChangeRole {
                team_id: 1,
                team_name: "T".into(),
                user_id: 1,
                email: "e".into(),
                from: Role::Admin,
                to: Role::Member,
            },
            "role_changed",
        ),
    ];
    for (change, kind) in all {
        assert_eq!(change.kind(), kind);
    }
}

// -----------------------------------------------------------------------
// Rule 1: email identity and skips.
// -----------------------------------------------------------------------

#[test]
fn duplicate_emails_skip_both_users_with_an_error_naming_both_ids() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").names("New", "Name"),
            okta_user("00u2", " A@X.com"),
            okta_user("00u3", "b@x.com"),
        ])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(p.changes, [create("00u3", "b@x.com")]);
    assert_eq!(findings_with(&p, Severity::Error, &["00u1", "00u2"]), 1);
    assert_eq!(p.skipped, 2);
}

#[test]
fn user_without_usable_email_is_skipped_with_a_warning() {
    for email in [None, Some(""), Some("   "), Some("not-an-email")] {
        let w = world()
            .okta(vec![
                okta_user("00u1", "x").email(email).status("SUSPENDED"),
                okta_user("00u2", "x").email(email),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")]);
        let p = w.plan();
        // Skipped, but the suspended 00u1's Writer user is deactivated
        // through its id link.
        assert_eq!(p.changes.len(), 1, "{email:?}: {:?}", p.changes);
        assert!(matches!(
            &p.changes[0],
            Change::DeactivateUser { user_id: 1, .. }
        ));
        assert_eq!(findings_with(&p, Severity::Warning, &["00u1", "usable"]), 1);
        assert_eq!(findings_with(&p, Severity::Warning, &["00u2", "usable"]), 1);
        assert_eq!(p.skipped, 2);
    }
}

#[test]
fn unusable_emails_are_skipped_with_a_warning_naming_the_okta_id_and_why() {
    let long = format!("{}@x.example", "a".repeat(10_244));
    let cases: [(&str, &str); 9] = [
        ("a@b@x.example", "more than one @"),
        ("a b@x.example", "whitespace"),
        ("a\nb@x.example", "control character"),
        ("\u{1b}[31m@x.example", "control character"),
        ("a\r@x.example", "control character"),
        ("@x.example", "nothing before or after"),
        ("a@", "nothing before or after"),
        ("no-at.example", "no @"),
        (long.as_str(), "10254 characters, more than 254"),
    ];
    for (email, why) in cases {
        let w = world().okta(vec![
            okta_user("00u1", email),
            okta_user("00u2", "fine@x.example"),
        ]);
        let p = w.plan();
        assert_eq!(kinds(&p), ["user_created"], "{email:?}");
        assert_eq!(
            findings_with(&p, Severity::Warning, &["00u1", "no usable email", why]),
            1,
            "{email:?}: {:?}",
            p.findings
        );
        // The warning quotes the value escaped and cut short: no line break,
        // no terminal escape, never a 10 KB message.
        let message = &p.findings[0].message;
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.len() < 300, "{} bytes", message.len());
        assert_eq!(p.skipped, 1);
    }
}

#[test]
fn an_email_of_254_characters_is_usable_and_255_is_not() {
    let at_limit = format!("{}@x.example", "a".repeat(254 - 10));
    let over = format!("{}@x.example", "a".repeat(255 - 10));
    let p = world()
        .okta(vec![okta_user("00u1", &at_limit), okta_user("00u2", &over)])
        .plan();
    assert_eq!(p.changes, [create("00u1", &at_limit)]);
    assert_eq!(
        findings_with(&p, Severity::Warning, &["00u2", "255 characters"]),
        1
    );
}

#[test]
fn names_longer_than_1024_characters_skip_the_user() {
    let at_limit = "n".repeat(1024);
    let over = "n".repeat(1025);
    for (what, user) in [
        ("first name", okta_user("00u1", "a@x.com").names(&over, "L")),
        ("last name", okta_user("00u1", "a@x.com").names("F", &over)),
        ("display name", okta_user("00u1", "a@x.com").display(&over)),
    ] {
        let p = world()
            .okta(vec![
                user,
                okta_user("00u2", "b@x.com").names(&at_limit, "L"),
            ])
            .store(vec![store_user(1, "a@x.com").managed("00u1")])
            .plan();
        // Hands off the skipped user (no update of its Writer user), the
        // other one is created with its 1,024-character name.
        assert_eq!(kinds(&p), ["user_created"], "{what}");
        assert_eq!(
            findings_with(&p, Severity::Warning, &["00u1", what, "1025 characters"]),
            1,
            "{what}: {:?}",
            p.findings
        );
    }
}

#[test]
fn control_characters_in_names_become_replacement_characters() {
    let p = world()
        .okta(vec![
            okta_user("00u1", "a@x.com")
                .names("A\nB", "C\u{1b}[31mD")
                .display("\u{7}Bell\r"),
        ])
        .plan();
    assert_eq!(
        p.changes,
        [Change::CreateUser {
            okta_id: "00u1".into(),
            // Trimmed first: the trailing CR is whitespace.
            attrs: Box::new(attrs(
                "a@x.com",
                "A\u{fffd}B",
                "C\u{fffd}[31mD",
                "\u{fffd}Bell"
            )),
        }]
    );
    // Stored names that still hold them are updated to the clean form.
    let p = world()
        .okta(vec![okta_user("00u1", "a@x.com").names("A\tB", "C")])
        .store(vec![
            store_user(1, "a@x.com")
                .managed("00u1")
                .names("A\tB", "C", "A\tB C"),
        ])
        .plan();
    assert_eq!(
        p.changes,
        [update(
            1,
            "00u1",
            attrs("a@x.com", "A\tB", "C", "A\tB C"),
            attrs("a@x.com", "A\u{fffd}B", "C", "A\u{fffd}B C"),
        )]
    );
}

#[test]
fn skipped_inactive_user_is_still_deactivated_through_its_id_link() {
    // 00u1 is suspended and shares its email with 00u2: both are skipped
    // (no update, no link), but the Writer user linked to 00u1 is still
    // deactivated and leaves its linked team: the id link needs no email.
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com")
                .status("SUSPENDED")
                .names("X", "Y"),
            okta_user("00u2", "A@x.com"),
        ])
        .groups(vec![group("00g1", "Eng", &["00u2"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![linked_team(10, "Eng", "00g1")])
        .memberships(vec![member(10, 1, Role::Admin)]);
    let p = w.plan();
    assert_eq!(p.changes.len(), 2, "{:?}", p.changes);
    assert!(matches!(
        &p.changes[0],
        Change::RemoveMembership {
            team_id: 10,
            user_id: 1,
            ..
        }
    ));
    assert!(matches!(
        &p.changes[1],
        Change::DeactivateUser {
            user_id: 1,
            reason: DeactivationReason::Inactive,
            ..
        }
    ));
    assert_eq!(p.skipped, 2);
}

// -----------------------------------------------------------------------
// Rule 2: attributes.
// -----------------------------------------------------------------------

#[test]
fn display_name_falls_back_to_first_and_last_name() {
    let table = [
        (
            Some(" Ada "),
            Some("Lovelace"),
            None,
            attrs("a@x.com", "Ada", "Lovelace", "Ada Lovelace"),
        ),
        (
            Some("Ada"),
            None,
            Some("   "),
            attrs("a@x.com", "Ada", "", "Ada"),
        ),
        (None, Some("L"), None, attrs("a@x.com", "", "L", "L")),
        (None, None, None, attrs("a@x.com", "", "", "")),
        (
            Some("A"),
            Some("B"),
            Some(" The Countess "),
            attrs("a@x.com", "A", "B", "The Countess"),
        ),
    ];
    let p = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").names("A", "B").display("Ada"),
        ])
        .plan();
    assert_eq!(
        p.changes,
        [Change::CreateUser {
            okta_id: "00u1".into(),
            attrs: Box::new(attrs("a@x.com", "A", "B", "Ada"))
        }]
    );
    for (first, last, display, expected) in table {
        let mut u = okta_user("00u1", "  a@x.com ");
        u.first_name = first.map(Into::into);
        u.last_name = last.map(Into::into);
        u.display_name = display.map(Into::into);
        let p = world().okta(vec![u]).plan();
        assert_eq!(
            p.changes,
            [Change::CreateUser {
                okta_id: "00u1".into(),
                attrs: Box::new(expected)
            }]
        );
    }
}

// -----------------------------------------------------------------------
// Rules 3-5: linked, link by email, rehire, create.
// -----------------------------------------------------------------------

#[test]
fn linked_user_attributes_follow_okta() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").names("Ann", "Lee"),
            okta_user("00u2", "b@x.com"),
        ])
        .store(vec![
            store_user(1, "a@x.com")
                .managed("00u1")
                .names("Ann", "", "Ann"),
            store_user(2, "b@x.com").managed("00u2"),
        ]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [update(
            1,
            "00u1",
            attrs("a@x.com", "Ann", "", "Ann"),
            attrs("a@x.com", "Ann", "Lee", "Ann Lee")
        )]
    );
}

#[test]
fn case_only_email_change_is_an_update_not_a_collision() {
    let w = world()
        .okta(vec![okta_user("00u1", "Ann@X.com")])
        .store(vec![store_user(1, "ann@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [update(
            1,
            "00u1",
            attrs("ann@x.com", "", "", ""),
            attrs("Ann@X.com", "", "", "")
        )]
    );
    assert!(p.findings.is_empty());
}

#[test]
fn inactive_linked_user_is_reactivated() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com").status("LOCKED_OUT")])
        .store(vec![store_user(1, "a@x.com").managed("00u1").inactive()]);
    let p = w.plan();
    assert_eq!(kinds(&p), ["user_reactivated"]);
}

#[test]
fn unmanaged_user_with_the_same_email_is_linked_not_duplicated() {
    let w = world()
        .okta(vec![okta_user("00u1", "ann@x.com").names("Ann", "")])
        .store(vec![store_user(1, "Ann@X.com").inactive()]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            Change::LinkUser {
                user_id: 1,
                email: "Ann@X.com".into(),
                okta_id: "00u1".into(),
                previous_okta_id: None
            },
            update(
                1,
                "00u1",
                attrs("Ann@X.com", "", "", ""),
                attrs("ann@x.com", "Ann", "", "Ann")
            ),
            Change::ReactivateUser {
                user_id: 1,
                okta_id: "00u1".into(),
                email: "ann@x.com".into()
            },
        ]
    );
    assert_eq!(p.unmanaged, 0);
}

#[test]
fn rehire_relinks_and_reactivates_instead_of_duplicating() {
    let w = world()
        .okta(vec![okta_user("00uNEW", "a@x.com")])
        .store(vec![store_user(1, "a@x.com").managed("00uOLD").inactive()]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            Change::LinkUser {
                user_id: 1,
                email: "a@x.com".into(),
                okta_id: "00uNEW".into(),
                previous_okta_id: Some("00uOLD".into())
            },
            Change::ReactivateUser {
                user_id: 1,
                okta_id: "00uNEW".into(),
                email: "a@x.com".into()
            },
        ]
    );
}

#[test]
fn email_of_another_in_scope_users_writer_user_is_a_collision() {
    // 00u1 (suspended) changed its Okta email, but its Writer user still
    // holds a@x.com: the new 00u2 is skipped, not linked to it.
    let w = world()
        .okta(vec![
            okta_user("00u1", "old.a@x.com").status("SUSPENDED"),
            okta_user("00u2", "A@x.com"),
        ])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [deactivate(
            1,
            "00u1",
            "a@x.com",
            DeactivationReason::Inactive
        )]
    );
    assert_eq!(findings_with(&p, Severity::Error, &["00u2", "00u1"]), 1);
    assert_eq!(p.skipped, 1);
}

#[test]
fn new_user_may_take_an_email_given_up_in_the_same_plan() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a2@x.com"),
            okta_user("00u2", "a@x.com"),
        ])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            update(
                1,
                "00u1",
                attrs("a@x.com", "", "", ""),
                attrs("a2@x.com", "", "", "")
            ),
            create("00u2", "a@x.com"),
        ]
    );
}

#[test]
fn new_user_is_created_with_the_default_team_membership() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com").role("Team Admin")])
        .teams(vec![team(20, "Everyone")])
        .default_team("Everyone");
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            create("00u1", "a@x.com"),
            add(
                TeamRef::Existing(20),
                "Everyone",
                new_user("00u1"),
                "a@x.com",
                Role::Admin
            ),
        ]
    );
}

#[test]
fn missing_default_team_warns_once() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com"),
            okta_user("00u2", "b@x.com"),
        ])
        .teams(vec![team(20, "everyone")])
        .default_team("Everyone");
    let p = w.plan();
    assert_eq!(kinds(&p), ["user_created", "user_created"]);
    assert_eq!(findings_with(&p, Severity::Warning, &["\"Everyone\""]), 1);
    assert_eq!(p.findings.len(), 1);
}

#[test]
fn linked_default_team_gets_no_default_membership() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com"),
            okta_user("00u2", "b@x.com"),
        ])
        .groups(vec![group("00g1", "Everyone", &["00u1"])])
        .teams(vec![linked_team(20, "Everyone", "00g1")])
        .default_team("Everyone");
    let p = w.plan();
    let adds: Vec<&Change> = p
        .changes
        .iter()
        .filter(|c| c.kind() == "membership_added")
        .collect();
    assert_eq!(
        adds,
        [&add(
            TeamRef::Existing(20),
            "Everyone",
            new_user("00u1"),
            "a@x.com",
            Role::Member
        )]
    );
    // Created by this plan from a group: linked, so no default rules and
    // no "missing default team" warning either.
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Everyone", &[])])
        .default_team("Everyone")
        .create_missing();
    let p = w.plan();
    assert_eq!(kinds(&p), ["team_created", "user_created"]);
    assert!(p.findings.is_empty(), "{:?}", p.findings);
}

// -----------------------------------------------------------------------
// Rule 6: deactivation.
// -----------------------------------------------------------------------

#[test]
fn suspended_user_is_deactivated_and_removed_from_linked_teams() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com").status("SUSPENDED")])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![linked_team(10, "Eng", "00g1"), team(11, "Misc")])
        .memberships(vec![
            member(10, 1, Role::Admin),
            member(11, 1, Role::Member),
        ]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            remove(10, "Eng", 1, "a@x.com", Role::Admin),
            deactivate(1, "00u1", "a@x.com", DeactivationReason::Inactive),
        ]
    );
}

#[test]
fn unassigned_user_is_deactivated_as_not_in_scope() {
    let w = world().okta(vec![okta_user("00u1", "a@x.com")]).store(vec![
        store_user(1, "a@x.com").managed("00u1"),
        store_user(2, "b@x.com").managed("00u2"),
        store_user(3, "c@x.com").managed("00u3").inactive(),
    ]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [deactivate(
            2,
            "00u2",
            "b@x.com",
            DeactivationReason::NotInScope
        )]
    );
    assert_eq!(p.active_managed_users, 2);
}

#[test]
fn staged_user_is_not_created() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").status("STAGED"),
            okta_user("00u2", "b@x.com").status("DEPROVISIONED"),
        ])
        .store(vec![store_user(2, "b@x.com")]);
    let p = w.plan();
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.unmanaged, 1);
}

#[test]
fn inactive_user_keeps_its_attributes() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "new@x.com")
                .status("SUSPENDED")
                .names("New", "Name"),
        ])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [deactivate(
            1,
            "00u1",
            "a@x.com",
            DeactivationReason::Inactive
        )]
    );
}

// -----------------------------------------------------------------------
// Rule 7: email changes.
// -----------------------------------------------------------------------

#[test]
fn email_change_into_a_taken_email_is_skipped() {
    for holder in [
        store_user(2, "B@x.com"),
        store_user(2, "b@x.com").managed("00uGONE"),
        store_user(2, "b@x.com").managed("00u3"),
    ] {
        let w = world()
            .okta(vec![
                okta_user("00u1", "b@x.com").names("New", ""),
                okta_user("00u3", "c@x.com").status("SUSPENDED"),
            ])
            .store(vec![
                store_user(1, "a@x.com").managed("00u1"),
                holder.clone(),
            ]);
        let p = w.plan();
        assert!(
            !p.changes.iter().any(|c| matches!(
                c,
                Change::UpdateUser { user_id: 1, .. } | Change::LinkUser { .. }
            )),
            "{holder:?}: {:?}",
            p.changes
        );
        let holder_okta = holder.okta_id.as_deref().unwrap_or("unmanaged");
        assert_eq!(
            findings_with(&p, Severity::Error, &["00u1", "Writer user 2", holder_okta]),
            1,
            "{:?}",
            p.findings
        );
        assert_eq!(p.skipped, 1);
    }
}

#[test]
fn email_swap_chain_is_ordered() {
    // 00u1 takes b@ from 00u2, which moves on to c@: 00u2 goes first
    // although b@ sorts before c@.
    let w = world()
        .okta(vec![
            okta_user("00u1", "b@x.com"),
            okta_user("00u2", "c@x.com"),
            okta_user("00u3", "a@x.com"),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
        ]);
    let p = w.plan();
    let order: Vec<(i64, &str)> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::UpdateUser { user_id, after, .. } => Some((*user_id, after.email.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(order, [(2, "c@x.com"), (1, "b@x.com")]);
    assert_eq!(p.changes.last(), Some(&create("00u3", "a@x.com")));
    assert!(p.findings.is_empty());
}

#[test]
fn email_swap_cycle_skips_every_user_in_it() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "b@x.com"),
            okta_user("00u2", "c@x.com"),
            okta_user("00u3", "a@x.com"),
            okta_user("00u4", "e@x.com"),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com").managed("00u3"),
            store_user(4, "d@x.com").managed("00u4"),
        ]);
    let p = w.plan();
    assert_eq!(kinds(&p), ["user_updated"]);
    assert_eq!(
        findings_with(&p, Severity::Error, &["00u1", "00u2", "00u3", "cycle"]),
        1
    );
    assert_eq!(p.skipped, 3);
}

#[test]
fn email_change_collision_cascades_along_the_chain() {
    // 00u2 cannot take c@ (unmanaged), so it keeps b@, so 00u1 cannot
    // take b@ either.
    let w = world()
        .okta(vec![
            okta_user("00u1", "b@x.com"),
            okta_user("00u2", "c@x.com"),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com"),
        ]);
    let p = w.plan();
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(findings_with(&p, Severity::Error, &["00u2", "c@x.com"]), 1);
    assert_eq!(findings_with(&p, Severity::Error, &["00u1", "00u2"]), 1);
    assert_eq!(p.skipped, 2);
}

// -----------------------------------------------------------------------
// Rules 8 and 10: teams.
// -----------------------------------------------------------------------

#[test]
fn group_rename_keeps_link_and_team_name() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Platform", &["00u1"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![
            linked_team(10, "Engineering", "00g1"),
            team(11, "Platform"),
        ]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [add(
            TeamRef::Existing(10),
            "Engineering",
            UserRef::Existing(1),
            "a@x.com",
            Role::Member
        )]
    );
}

#[test]
fn first_link_needs_the_identical_team_name() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Sales", &["00u1"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![team(10, "sales")]);
    let p = w.plan();
    assert!(p.changes.is_empty());
    assert_eq!(findings_with(&p, Severity::Warning, &["00g1", "Sales"]), 1);
    assert_eq!(p.skipped, 1);

    let w = w.teams(vec![team(10, "sales"), team(11, "Sales")]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            Change::LinkTeam {
                team_id: 11,
                name: "Sales".into(),
                okta_group_id: "00g1".into()
            },
            add(
                TeamRef::Existing(11),
                "Sales",
                UserRef::Existing(1),
                "a@x.com",
                Role::Member
            ),
        ]
    );
    assert_eq!(p.unmanaged, 1);
}

#[test]
fn duplicate_group_names_link_none_with_an_error() {
    let w = world()
        .groups(vec![
            group("00g2", "Eng", &[]),
            group("00g1", "Eng", &[]),
            group("00g3", "Ops", &[]),
        ])
        .teams(vec![team(10, "Eng")])
        .create_missing();
    let p = w.plan();
    assert_eq!(
        p.changes,
        [Change::CreateTeam {
            name: "Ops".into(),
            okta_group_id: "00g3".into()
        }]
    );
    assert_eq!(findings_with(&p, Severity::Error, &["00g1, 00g2"]), 1);
    assert_eq!(p.skipped, 2);
}

#[test]
fn duplicate_group_names_of_an_okta_and_an_ad_group_name_both_types() {
    let okta_group = OktaGroup {
        kind: Some("OKTA_GROUP".into()),
        ..group("00g1", "Eng", &[])
    };
    let ad_group = OktaGroup {
        kind: Some("APP_GROUP".into()),
        ..group("00g2", "Eng", &[])
    };
    let p = world()
        .groups(vec![ad_group, okta_group])
        .teams(vec![team(10, "Eng")])
        .plan();
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(
        findings_with(
            &p,
            Severity::Error,
            &["00g1 (OKTA_GROUP), 00g2 (APP_GROUP)", "\"Eng\""]
        ),
        1,
        "{:?}",
        p.findings
    );
}

#[test]
fn team_linked_to_another_group_is_skipped_with_a_warning() {
    let w = world()
        .groups(vec![group("00g1", "Eng", &[])])
        .teams(vec![linked_team(10, "Eng", "00g9")])
        .create_missing();
    let p = w.plan();
    assert!(p.changes.is_empty());
    assert_eq!(findings_with(&p, Severity::Warning, &["00g1", "00g9"]), 1);
    assert_eq!(
        findings_with(&p, Severity::Warning, &["orphaned link", "00g9"]),
        1
    );
    assert_eq!(p.skipped, 1);
}

#[test]
fn missing_team_is_created_only_when_create_missing_is_set() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").role("admin"),
            okta_user("00u2", "b@x.com"),
        ])
        .groups(vec![group("00g1", "New", &["00u2", "00u1"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")]);
    let p = w.plan();
    assert_eq!(kinds(&p), ["user_created"]);
    assert_eq!(
        findings_with(&p, Severity::Warning, &["00g1", "New", "create_missing"]),
        1
    );
    assert_eq!(p.skipped, 1);

    let p = w.create_missing().plan();
    let new_team = || TeamRef::New { name: "New".into() };
    assert_eq!(
        p.changes,
        [
            Change::CreateTeam {
                name: "New".into(),
                okta_group_id: "00g1".into()
            },
            create("00u2", "b@x.com"),
            add(
                new_team(),
                "New",
                UserRef::Existing(1),
                "a@x.com",
                Role::Admin
            ),
            add(new_team(), "New", new_user("00u2"), "b@x.com", Role::Member),
        ]
    );
    assert_eq!(p.skipped, 0);
}

#[test]
fn missing_group_names_warn_without_skipping() {
    let p = world().missing_groups(&["Ghost", "Ghost"]).plan();
    assert_eq!(findings_with(&p, Severity::Warning, &["Ghost"]), 1);
    assert_eq!(p.skipped, 0);
}

#[test]
fn orphaned_link_keeps_members() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com").status("SUSPENDED")])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![linked_team(10, "Old", "00gOLD")])
        .memberships(vec![member(10, 1, Role::Admin)]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [deactivate(
            1,
            "00u1",
            "a@x.com",
            DeactivationReason::Inactive
        )]
    );
    assert_eq!(
        findings_with(&p, Severity::Warning, &["orphaned link", "Old", "00gOLD"]),
        1
    );
}

// -----------------------------------------------------------------------
// Rules 9, 11, 12: memberships and roles.
// -----------------------------------------------------------------------

#[test]
fn memberships_follow_the_group() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com"),
            okta_user("00u2", "b@x.com"),
            okta_user("00u3", "c@x.com"),
        ])
        .groups(vec![group(
            "00g1",
            "Eng",
            &["00u1", "00u1", "00u3", "00uOUT", "00uGONE"],
        )])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com").managed("00u3"),
            store_user(4, "d@x.com"),
            store_user(5, "e@x.com").managed("00uGONE"),
        ])
        .teams(vec![linked_team(10, "Eng", "00g1")])
        .memberships(vec![
            member(10, 2, Role::Member),
            member(10, 3, Role::Member),
            member(10, 3, Role::Member),
            member(10, 4, Role::Admin),
            member(10, 5, Role::Member),
            member(10, 99, Role::Member),
        ]);
    let p = w.plan();
    assert_eq!(
        p.changes,
        [
            add(
                TeamRef::Existing(10),
                "Eng",
                UserRef::Existing(1),
                "a@x.com",
                Role::Member
            ),
            remove(10, "Eng", 2, "b@x.com", Role::Member),
            remove(10, "Eng", 5, "e@x.com", Role::Member),
            deactivate(5, "00uGONE", "e@x.com", DeactivationReason::NotInScope),
        ]
    );
}

#[test]
fn demotion_in_okta_demotes_in_writer() {
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com").role("member")])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![linked_team(10, "Eng", "00g1"), team(20, "Everyone")])
        .memberships(vec![member(10, 1, Role::Admin), member(20, 1, Role::Admin)])
        .default_team("Everyone");
    let p = w.plan();
    let changed: Vec<(i64, Role, Role)> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ChangeRole {
                team_id, from, to, ..
            } => Some((*team_id, *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed,
        [
            (10, Role::Admin, Role::Member),
            (20, Role::Admin, Role::Member)
        ]
    );
    assert_eq!(p.changes.len(), 2);
}

#[test]
fn default_team_membership_only_at_creation() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com"),
            okta_user("00u2", "b@x.com").role("admin"),
            okta_user("00u4", "d@x.com").status("SUSPENDED"),
            okta_user("00u5", "e@x.com").role("admin"),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com"),
            store_user(4, "d@x.com").managed("00u4"),
        ])
        .teams(vec![team(20, "Everyone")])
        .memberships(vec![
            member(20, 2, Role::Member),
            member(20, 3, Role::Member),
            member(20, 4, Role::Admin),
        ])
        .default_team("Everyone");
    let p = w.plan();
    assert_eq!(
        kinds(&p),
        [
            "user_created",
            "membership_added",
            "role_changed",
            "user_deactivated"
        ]
    );
    assert!(matches!(
        &p.changes[1],
        Change::AddMembership { user: UserRef::New { okta_id }, role: Role::Admin, .. }
            if &**okta_id == "00u5"
    ));
    assert!(matches!(
        &p.changes[2],
        Change::ChangeRole {
            user_id: 2,
            to: Role::Admin,
            ..
        }
    ));
}

#[test]
fn unknown_role_is_member_with_one_warning() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").role("boss"),
            okta_user("00u2", "b@x.com")
                .role("boss")
                .status("SUSPENDED"),
        ])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .teams(vec![team(10, "Eng")]);
    let p = w.plan();
    assert_eq!(
        p.findings,
        [Finding {
            severity: Severity::Warning,
            message: "Okta user 00u1 has the unknown role value \"boss\"; using role member".into()
        }]
    );
    assert!(p.changes.iter().any(|c| matches!(
        c,
        Change::AddMembership {
            role: Role::Member,
            ..
        }
    )));
}

// -----------------------------------------------------------------------
// Rules 3, 13-15: scope of management, report numbers, order, duplicates.
// -----------------------------------------------------------------------

#[test]
fn unmanaged_users_and_teams_are_never_touched() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").status("SUSPENDED"),
            okta_user("00u2", "zed@x.com"),
        ])
        .groups(vec![group("00g1", "Eng", &["00u2"])])
        .store(vec![
            store_user(1, "a@x.com"),
            store_user(2, "b@x.com").inactive(),
        ])
        .teams(vec![team(10, "Misc"), linked_team(11, "Eng", "00g1")])
        .memberships(vec![
            member(10, 1, Role::Admin),
            member(11, 1, Role::Admin),
            member(11, 2, Role::Member),
        ]);
    let p = w.plan();
    assert_eq!(kinds(&p), ["user_created", "membership_added"]);
    assert_eq!(p.unmanaged, 3);
}

#[test]
fn report_numbers_and_counts() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com"),
            okta_user("00u2", "b@x.com"),
            okta_user("00u2", "b@x.com"),
            okta_user("00u3", "no-email"),
        ])
        .groups(vec![group("00g1", "Eng", &["00u1", "00u2"])])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1").inactive(),
            store_user(2, "x@x.com").managed("00uX"),
            store_user(3, "y@x.com").managed("00uY"),
            store_user(4, "z@x.com"),
        ])
        .teams(vec![team(10, "Eng"), team(11, "Misc")]);
    let p = w.plan();
    assert_eq!(p.okta_users_in_scope, 3);
    assert_eq!(p.active_managed_users, 2);
    assert_eq!(p.unmanaged, 2);
    assert_eq!(p.skipped, 1);
    assert_eq!(
        counts(&p),
        Counts {
            users_created: 1,
            users_updated: 0,
            users_deactivated: 2,
            users_reactivated: 1,
            users_linked: 0,
            memberships_added: 2,
            memberships_removed: 0,
            roles_changed: 0,
            teams_linked: 1,
            teams_created: 0,
            skipped: 1,
            unmanaged: 2,
        }
    );
}

#[test]
fn counts_serialize_in_the_report_order() {
    let names = [
        "users_created",
        "users_updated",
        "users_deactivated",
        "users_reactivated",
        "users_linked",
        "memberships_added",
        "memberships_removed",
        "roles_changed",
        "teams_linked",
        "teams_created",
        "skipped",
        "unmanaged",
    ];
    // A serializer that records field names, so no JSON crate is needed.
    struct Names(Vec<&'static str>);
    impl serde::ser::SerializeStruct for &mut Names {
        type Ok = ();
        type Error = std::fmt::Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            key: &'static str,
            _: &T,
        ) -> Result<(), Self::Error> {
            self.0.push(key);
            Ok(())
        }
        fn end(self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    struct Ser<'n>(&'n mut Names);
    macro_rules! unsupported {
        ($($name:ident($($t:ty),*)),*) => {$(
            fn $name(self, $(_: $t),*) -> Result<(), std::fmt::Error> { Err(std::fmt::Error) }
        )*};
    }
    impl<'n> serde::Serializer for Ser<'n> {
        type Ok = ();
        type Error = std::fmt::Error;
        type SerializeSeq = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTuple = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTupleStruct = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTupleVariant = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeMap = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeStruct = &'n mut Names;
        type SerializeStructVariant = serde::ser::Impossible<(), std::fmt::Error>;
        unsupported!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str)
        );
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Self::Error> {
            Ok(self.0)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Self::Error> {
            Err(std::fmt::Error)
        }
    }
    let mut seen = Names(Vec::new());
    assert!(Counts::default().serialize(Ser(&mut seen)).is_ok());
    assert_eq!(seen.0, names);
}

#[test]
fn duplicate_okta_ids_are_one_user() {
    let u = okta_user("00u1", "a@x.com");
    let p = world().okta(vec![u.clone(), u]).plan();
    assert_eq!(p.changes, [create("00u1", "a@x.com")]);
    assert!(p.findings.is_empty());
    assert_eq!(p.okta_users_in_scope, 1);
}

#[test]
fn change_order_follows_rule_14() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "a@x.com").names("A", ""),
            okta_user("00u2", "b@x.com"),
            okta_user("00u3", "c@x.com").role("admin"),
            okta_user("00u4", "d@x.com").status("SUSPENDED"),
            okta_user("00u5", "e@x.com"),
        ])
        .groups(vec![
            group("00g1", "Eng", &["00u1", "00u2", "00u3", "00u5"]),
            group("00g2", "Ops", &["00u1"]),
            group("00g3", "New", &["00u1"]),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1").inactive(),
            store_user(2, "b@x.com"),
            store_user(3, "c@x.com").managed("00u3"),
            store_user(4, "d@x.com").managed("00u4"),
        ])
        .teams(vec![linked_team(10, "Eng", "00g1"), team(11, "Ops")])
        .memberships(vec![
            member(10, 3, Role::Member),
            member(10, 4, Role::Member),
        ])
        .create_missing();
    let p = w.plan();
    assert_eq!(
        kinds(&p),
        [
            "team_created",
            "team_linked",
            "user_linked",
            "user_updated",
            "user_created",
            "user_reactivated",
            "membership_added",
            "membership_added",
            "membership_added",
            "membership_added",
            "membership_added",
            "role_changed",
            "membership_removed",
            "user_deactivated",
        ]
    );
    // Within a kind: by team name, then email.
    let adds: Vec<(&str, &str)> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::AddMembership {
                team_name, email, ..
            } => Some((&**team_name, &**email)),
            _ => None,
        })
        .collect();
    assert_eq!(
        adds,
        [
            ("Eng", "a@x.com"),
            ("Eng", "b@x.com"),
            ("Eng", "e@x.com"),
            ("New", "a@x.com"),
            ("Ops", "a@x.com")
        ]
    );
}

#[test]
fn plan_does_not_depend_on_input_order() {
    let w = world()
        .okta(vec![
            okta_user("00u1", "b@x.com"),
            okta_user("00u2", "c@x.com").role("admin"),
            okta_user("00u3", "a@x.com"),
            okta_user("00u4", "D@x.com").status("SUSPENDED"),
            okta_user("00u5", "d@x.com"),
        ])
        .groups(vec![
            group("00g1", "Eng", &["00u1", "00u2", "00u3"]),
            group("00g2", "Eng", &[]),
            group("00g3", "Ops", &["00u3", "00u1"]),
        ])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "z@x.com").managed("00u9"),
        ])
        .teams(vec![team(10, "Ops"), team(11, "Eng")])
        .memberships(vec![
            member(10, 3, Role::Admin),
            member(10, 2, Role::Member),
        ])
        .create_missing()
        .default_team("Everyone");
    let mut reversed = w.clone();
    reversed.okta.users.reverse();
    reversed.okta.groups.reverse();
    for g in &mut reversed.okta.groups {
        g.member_ids.reverse();
    }
    reversed.store.users.reverse();
    reversed.store.teams.reverse();
    reversed.store.memberships.reverse();
    assert_eq!(w.plan(), reversed.plan());
}

// -----------------------------------------------------------------------
// SPEC §7: scoped plans.
// -----------------------------------------------------------------------

fn scope(ids: &[&str]) -> crate::reconcile::plan::scope::Scope {
    crate::reconcile::plan::scope::Scope::Users(ids.iter().map(|s| s.to_string()).collect())
}

#[test]
fn a_scoped_plan_deactivates_only_observed_users_that_are_gone() {
    // 00u1 was read again and is no longer assigned; 00u2 was not read.
    let w = world().store(vec![
        store_user(1, "a@x.com").managed("00u1"),
        store_user(2, "b@x.com").managed("00u2"),
    ]);
    let p = plan_scoped(&w.okta, &w.store, &w.policy, &scope(&["00u1"]));
    assert_eq!(
        p.changes,
        [deactivate(
            1,
            "00u1",
            "a@x.com",
            DeactivationReason::NotInScope
        )]
    );
    assert!(p.scoped);
}

#[test]
fn a_scoped_plan_never_rehires_over_an_unobserved_okta_id() {
    // The old id 00u1 was not read: it may still be assigned, so the new
    // user 00u9 with its email is a collision, not a rehire.
    let w = world()
        .okta(vec![okta_user("00u9", "a@x.com")])
        .store(vec![store_user(1, "a@x.com").managed("00u1").inactive()]);
    let p = plan_scoped(&w.okta, &w.store, &w.policy, &scope(&["00u9"]));
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(findings_with(&p, Severity::Error, &["00u9", "collides"]), 1);
    // Read again and gone: the rehire of SPEC §1.2.
    let p = plan_scoped(&w.okta, &w.store, &w.policy, &scope(&["00u9", "00u1"]));
    assert_eq!(kinds(&p), ["user_linked", "user_reactivated"]);
}

#[test]
fn a_scoped_plan_changes_memberships_of_observed_users_only() {
    // Group Eng lists only the observed user 00u1 (its groups were read);
    // 00u2's membership is not known, so it stays.
    let w = world()
        .okta(vec![okta_user("00u1", "a@x.com")])
        .groups(vec![group("00g1", "Eng", &["00u1"])])
        .store(vec![
            store_user(1, "a@x.com").managed("00u1"),
            store_user(2, "b@x.com").managed("00u2"),
            store_user(3, "c@x.com").managed("00u3"),
        ])
        .teams(vec![linked_team(10, "Eng", "00g1")])
        .memberships(vec![
            member(10, 2, Role::Member),
            member(10, 3, Role::Member),
        ]);
    let p = plan_scoped(&w.okta, &w.store, &w.policy, &scope(&["00u1", "00u3"]));
    assert_eq!(
        p.changes,
        [
            add(
                TeamRef::Existing(10),
                "Eng",
                UserRef::Existing(1),
                "a@x.com",
                Role::Member
            ),
            remove(10, "Eng", 3, "c@x.com", Role::Member),
            deactivate(3, "00u3", "c@x.com", DeactivationReason::NotInScope),
        ]
    );
}

#[test]
fn a_scoped_plan_repeats_no_team_findings_and_is_not_an_empty_view() {
    let w = world()
        .groups(vec![group("00g1", "Nope", &[])])
        .store(vec![store_user(1, "a@x.com").managed("00u1")])
        .teams(vec![linked_team(10, "Orphan", "00g9")])
        .default_team("Missing");
    let full = w.plan();
    assert!(!full.findings.is_empty());
    let p = plan_scoped(&w.okta, &w.store, &w.policy, &scope(&["00u5"]));
    assert!(p.findings.is_empty(), "{:?}", p.findings);
    assert!(p.changes.is_empty());
    assert_eq!(p.skipped, 0);
    // An empty full view over active managed users blocks; a scoped plan
    // that saw nobody still assigned does not.
    let limits = crate::model::SafetyLimits {
        max_deactivations: 50,
        max_deactivations_percent: 100.0,
        max_membership_removals: 50,
    };
    assert!(!crate::reconcile::guard::guard(&full, &limits).is_empty());
    assert!(crate::reconcile::guard::guard(&p, &limits).is_empty());
}
