//! What each change to the org writes to its System Log: the `impl Org`
//! half of [`crate::syslog`] (the targets of a user, group, app user or
//! group assignment, Okta's background `application.user_membership.*`
//! entries after a group or status change).
//!
//! Invariant: every mutation of [`Org`] that Okta logs goes through one of
//! these, so the log and the org never disagree.

use serde_json::Value;

use crate::org::Org;
use crate::syslog::{EventLog, LogTarget};

impl Org {
    /// The org's System Log.
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    /// Records an entry by hand (a failed attempt, an event type the org's
    /// own changes do not make), stamped like the others.
    pub fn log_event(&mut self, event_type: &str, outcome: &'static str, targets: Vec<LogTarget>) {
        self.log.record(event_type, outcome, targets);
    }

    pub(crate) fn user_target(&self, user_id: &str) -> LogTarget {
        let login = self
            .user_profile(user_id)
            .and_then(|p| p.get("login").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        LogTarget::user(user_id, &login)
    }

    fn app_target(&self) -> LogTarget {
        LogTarget::app(&self.app.id, &self.app.label)
    }

    pub(crate) fn log_user(&mut self, event_type: &str, user_id: &str) {
        let target = self.user_target(user_id);
        self.log.record(event_type, "SUCCESS", vec![target]);
    }

    pub(crate) fn log_group(&mut self, event_type: &str, group_id: &str) {
        let name = self.group_name(group_id).unwrap_or_default().to_owned();
        self.log.record(
            event_type,
            "SUCCESS",
            vec![LogTarget::group(group_id, &name)],
        );
    }

    pub(crate) fn log_membership(&mut self, event_type: &str, group_id: &str, user_id: &str) {
        let name = self.group_name(group_id).unwrap_or_default().to_owned();
        let user = self.user_target(user_id);
        self.log.record(
            event_type,
            "SUCCESS",
            vec![user, LogTarget::group(group_id, &name)],
        );
    }

    /// `application.user_membership.*`: the app user (`0ua…`), the app and
    /// the user.
    pub(crate) fn log_app_user(&mut self, event_type: &str, user_id: &str) {
        let user = self.user_target(user_id);
        let app_user = LogTarget::app_user(user_id, &user.display_name);
        let app = self.app_target();
        self.log
            .record(event_type, "SUCCESS", vec![app_user, app, user]);
    }

    pub(crate) fn log_group_assignment(&mut self, event_type: &str, group_id: &str) {
        let name = self.group_name(group_id).unwrap_or_default().to_owned();
        let app = self.app_target();
        self.log.record(
            event_type,
            "SUCCESS",
            vec![LogTarget::group(group_id, &name), app],
        );
    }

    /// Whether each user has the app now (directly or through a group).
    pub(crate) fn app_access<'a>(
        &self,
        user_ids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, bool)> {
        user_ids
            .into_iter()
            .map(|id| (id.to_owned(), self.app_user_profile(id).is_some()))
            .collect()
    }

    /// Logs `application.user_membership.add`/`.remove` for the users whose
    /// access changed since `before` (Okta's background job does this after
    /// a group or status change).
    pub(crate) fn log_app_access(&mut self, before: Vec<(String, bool)>) {
        for (id, had) in before {
            let has = self.app_user_profile(&id).is_some();
            match (had, has) {
                (false, true) => self.log_app_user("application.user_membership.add", &id),
                (true, false) => self.log_app_user("application.user_membership.remove", &id),
                _ => {}
            }
        }
    }
}
