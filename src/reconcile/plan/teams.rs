//! The team rules of SPEC §1.3: pushed groups link to teams by identical
//! name once, then by group id (renames keep the link and the team's name);
//! duplicate names, teams linked twice, missing teams (created only with
//! `teams.create_missing`), orphaned links (members left as they are), and
//! which team gets the default-team rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Change, Finding, OktaState, Severity, Shared, StoreTeam, TeamRef};
use crate::reconcile::plan::index::{Map, Set};
use crate::reconcile::plan::{Planner, join};

/// A pushed group whose team's memberships follow the group (rule 9).
pub(super) struct LinkedTeam {
    pub(super) team: TeamRef,
    /// Store id of the team, `None` when created by this plan.
    pub(super) team_id: Option<i64>,
    /// Shared by every membership change of the team.
    pub(super) name: Shared,
    /// In-scope members (Okta entry indices, `u32`: a first sync of a
    /// million users holds five million), deduplicated.
    pub(super) members: Vec<u32>,
}

/// The outcome of the team rules (rule 8, 10, default team).
pub(super) struct TeamPhase {
    pub(super) linked: Vec<LinkedTeam>,
    pub(super) create: Vec<Change>,
    pub(super) link: Vec<Change>,
    /// Store team ids linked by this plan.
    pub(super) linked_now: Set<i64>,
    /// The default team when it gets the default-team rules: id and name.
    pub(super) default_team: Option<(i64, Shared)>,
}

impl<'a> Planner<'a> {
    /// Rules 8 and 10, and which team gets the default-team rules (5d, 11).
    pub(super) fn resolve_teams(&mut self, okta: &'a OktaState) -> TeamPhase {
        // Rule 15: a group listed twice is one group (members merged, the
        // smallest name kept). Members not in scope are ignored (rule 9).
        let mut groups: BTreeMap<&str, (&str, Vec<u32>)> = BTreeMap::new();
        for g in &okta.groups {
            let entry = groups
                .entry(g.id.as_str())
                .or_insert_with(|| (g.name.as_str(), Vec::with_capacity(g.member_ids.len())));
            entry.0 = entry.0.min(g.name.as_str());
            entry.1.extend(
                g.member_ids
                    .iter()
                    .filter_map(|m| self.okta_idx.get(&**m))
                    .filter_map(|&i| u32::try_from(i).ok()),
            );
        }
        for (_, members) in groups.values_mut() {
            members.sort_unstable();
            members.dedup();
        }
        let mut ids_by_name: Map<&str, Vec<&str>> = Map::default();
        for (&id, &(name, _)) in &groups {
            ids_by_name.entry(name).or_default().push(id);
        }
        let mut teams_by_group: Map<&str, Vec<usize>> = Map::default();
        let mut teams_by_name: Map<&str, Vec<usize>> = Map::default();
        for (ti, t) in self.teams.iter().enumerate() {
            if let Some(g) = t.okta_group_id.as_deref() {
                teams_by_group.entry(g).or_default().push(ti);
            }
            teams_by_name.entry(t.name.as_str()).or_default().push(ti);
        }
        // Rule 10: a link to a group that is not pushed is reported and left
        // exactly as it is.
        let mut orphans: Vec<&StoreTeam> = self
            .teams
            .iter()
            .copied()
            .filter(|t| {
                t.okta_group_id
                    .as_deref()
                    .is_some_and(|g| !groups.contains_key(g))
            })
            .collect();
        orphans.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));

        let mut phase = TeamPhase {
            linked: Vec::new(),
            create: Vec::new(),
            link: Vec::new(),
            linked_now: Set::default(),
            default_team: None,
        };
        let mut created_names: Set<&str> = Set::default();
        let mut ambiguous: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut messages: Vec<(Severity, String)> = Vec::new();
        for (gid, (name, members)) in groups {
            match teams_by_group.get(gid).map(Vec::as_slice) {
                // Rule 8: linked by group id; a renamed group keeps its team
                // and the team keeps its name.
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    phase.linked.push(LinkedTeam {
                        team: TeamRef::Existing(t.id),
                        team_id: Some(t.id),
                        name: t.name.as_str().into(),
                        members,
                    });
                    continue;
                }
                Some(many) if !many.is_empty() => {
                    let ids = join(many.iter().map(|&ti| self.teams[ti].id.to_string()));
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Error,
                        format!(
                            "Okta group {gid} ({name}) is linked to several Writer teams ({ids}); \
                             skipped"
                        ),
                    ));
                    continue;
                }
                _ => {}
            }
            // First link. Rule 8: a name shared by several pushed groups
            // links none of the unlinked ones.
            if ids_by_name.get(name).is_some_and(|ids| ids.len() > 1) {
                ambiguous.entry(name).or_default().push(gid);
                continue;
            }
            match teams_by_name.get(name).map(Vec::as_slice) {
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    match t.okta_group_id.as_deref() {
                        None => {
                            phase.linked_now.insert(t.id);
                            phase.link.push(Change::LinkTeam {
                                team_id: t.id,
                                name: t.name.clone(),
                                okta_group_id: gid.to_string(),
                            });
                            phase.linked.push(LinkedTeam {
                                team: TeamRef::Existing(t.id),
                                team_id: Some(t.id),
                                name: t.name.as_str().into(),
                                members,
                            });
                        }
                        Some(other) => {
                            self.skipped_groups += 1;
                            messages.push((
                                Severity::Warning,
                                format!(
                                    "Okta group {gid} ({name}): Writer team {name:?} is already \
                                     linked to Okta group {other}; skipped"
                                ),
                            ));
                        }
                    }
                }
                Some(many) if !many.is_empty() => {
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Warning,
                        format!(
                            "Okta group {gid} ({name}): several Writer teams are named {name:?}; \
                             skipped"
                        ),
                    ));
                }
                _ if self.policy.create_missing_teams => {
                    created_names.insert(name);
                    phase.create.push(Change::CreateTeam {
                        name: name.to_string(),
                        okta_group_id: gid.to_string(),
                    });
                    let name = Shared::from(name);
                    phase.linked.push(LinkedTeam {
                        team: TeamRef::New {
                            name: Shared::clone(&name),
                        },
                        team_id: None,
                        name,
                        members,
                    });
                }
                _ => {
                    self.skipped_groups += 1;
                    messages.push((
                        Severity::Warning,
                        format!(
                            "Okta group {gid} ({name}): no Writer team is named {name:?} and \
                             teams.create_missing is false; skipped"
                        ),
                    ));
                }
            }
        }
        // The type of each group, so a name shared by an Okta group and an
        // AD/LDAP import (`APP_GROUP`) says which is which.
        let kinds: Map<&str, &str> = okta
            .groups
            .iter()
            .filter_map(|g| Some((g.id.as_str(), g.kind.as_deref()?)))
            .collect();
        for (name, ids) in ambiguous {
            self.skipped_groups += ids.len();
            let named = ids.iter().map(|id| match kinds.get(id) {
                Some(kind) => format!("{id} ({kind})"),
                None => (*id).to_string(),
            });
            messages.push((
                Severity::Error,
                format!(
                    "pushed Okta groups {} have the same name {name:?}; none of them is linked \
                     to a team",
                    join(named)
                ),
            ));
        }
        // `missing_group_names`: one warning each, not counted as skipped.
        let missing: BTreeSet<&str> = okta
            .missing_group_names
            .iter()
            .map(String::as_str)
            .collect();
        for name in missing {
            messages.push((
                Severity::Warning,
                format!("teams.push_groups names {name:?}, which matches no Okta group"),
            ));
        }
        for t in orphans {
            messages.push((
                Severity::Warning,
                format!(
                    "orphaned link: Writer team {:?} is linked to Okta group {}, which is not \
                     pushed; its members are left as they are",
                    t.name,
                    t.okta_group_id.as_deref().unwrap_or("")
                ),
            ));
        }
        // Rule 5d/11: the default team, by exact name, gets the default-team
        // rules only when it is not linked (before or by this plan).
        if let Some(name) = self.policy.default_team.as_deref() {
            match teams_by_name.get(name).map(Vec::as_slice) {
                Some(&[ti]) => {
                    let t = self.teams[ti];
                    if t.okta_group_id.is_none() && !phase.linked_now.contains(&t.id) {
                        phase.default_team = Some((t.id, t.name.as_str().into()));
                    }
                }
                Some(many) if !many.is_empty() => messages.push((
                    Severity::Warning,
                    format!(
                        "several Writer teams are named {name:?} (sync.default_team); no user \
                         is added to a default team"
                    ),
                )),
                _ if created_names.contains(name) => {}
                _ => messages.push((
                    Severity::Warning,
                    format!(
                        "default team {name:?} (sync.default_team) does not exist; created users \
                         are not added to it"
                    ),
                )),
            }
        }
        // A scoped plan repeats the last full run's team decisions (its
        // groups are the pushed groups with only the observed members);
        // their findings and skipped groups are the full run's to report.
        if self.observed.is_some() {
            messages.clear();
            self.skipped_groups = 0;
        }
        for (severity, message) in messages {
            self.findings.push(Finding { severity, message });
        }
        phase
    }
}
