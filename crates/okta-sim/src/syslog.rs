//! The simulator's System Log: one entry per change to the org, with Okta's
//! event types, targets (`User` 00u…, `UserGroup` 00g…, `AppInstance`
//! 0oa…, `AppUser` 0ua…, which is not the user id), `outcome`,
//! `published` and `uuid`, and `GET /api/v1/logs` with Okta's polling
//! semantics.
//!
//! Invariant: entries become visible only once *persisted*, a configurable
//! delay after `published` (Okta's log is near-real-time, not instant, and
//! may persist events out of `published` order), and a polling query (no
//! `until`, `sortOrder=ASCENDING`) is ordered by persistence and always
//! answers with a `next` link, even when it has nothing new. Mutations of
//! [`crate::org::Org`] append entries unstamped; the handle stamps them
//! with the simulator's clock when the mutation returns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::filter::Expr;
use crate::hash::mix;

/// Events older than this are no longer returned (Okta: 90 days).
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// A `since` further back than this is refused with 400 E0000053.
pub const MAX_SINCE_AGE: Duration = Duration::from_secs(180 * 24 * 3600);

/// How entries become visible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogTiming {
    /// Delay from `published` to persisted (visible to a polling query).
    pub delay: Duration,
    /// An extra delay, uniform in `[0, jitter)` and deterministic per entry:
    /// entries then persist out of `published` order.
    pub jitter: Duration,
    /// Share of entries persisted twice (Okta delivers at least once; a
    /// poller must dedupe on `uuid`), 0.0–1.0.
    pub duplicates: f64,
}

impl Default for LogTiming {
    fn default() -> Self {
        LogTiming {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicates: 0.0,
        }
    }
}

/// An object an entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// `User`, `UserGroup`, `AppInstance` or `AppUser`.
    pub kind: &'static str,
    pub id: String,
    pub display_name: String,
}

impl LogTarget {
    pub fn user(id: &str, display_name: &str) -> LogTarget {
        LogTarget {
            kind: "User",
            id: id.to_owned(),
            display_name: display_name.to_owned(),
        }
    }

    pub fn group(id: &str, name: &str) -> LogTarget {
        LogTarget {
            kind: "UserGroup",
            id: id.to_owned(),
            display_name: name.to_owned(),
        }
    }

    pub fn app(id: &str, label: &str) -> LogTarget {
        LogTarget {
            kind: "AppInstance",
            id: id.to_owned(),
            display_name: label.to_owned(),
        }
    }

    /// The app-user target: its id is the assignment's (`0ua…`), derived
    /// from the user's, never equal to it.
    pub fn app_user(user_id: &str, display_name: &str) -> LogTarget {
        LogTarget {
            kind: "AppUser",
            id: format!("0ua{}", user_id.get(3..).unwrap_or(user_id)),
            display_name: display_name.to_owned(),
        }
    }
}

/// One System Log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Order of the change that made it (a duplicate keeps its original's).
    pub seq: u64,
    pub uuid: String,
    pub event_type: String,
    /// `SUCCESS`, or `FAILURE` for an attempt that changed nothing.
    pub outcome: &'static str,
    pub targets: Vec<LogTarget>,
    /// Set when the mutation that made it returns.
    pub published: Option<SystemTime>,
    /// When a polling query first sees it.
    pub persisted: Option<SystemTime>,
}

/// The org's System Log.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    /// Stamped entries, ordered by (persisted, seq).
    entries: Vec<LogEntry>,
    /// Entries appended since the last stamp, in order.
    pending: Vec<LogEntry>,
    next_seq: u64,
    seed: u64,
}

/// A position in the log: after the entry persisted at `ms` with `seq`.
pub type LogCursor = (u64, u64);

/// What a polling request asked for.
pub(crate) struct LogQuery<'a> {
    pub since: Option<SystemTime>,
    pub after: Option<LogCursor>,
    pub limit: usize,
    pub filter: Option<&'a Expr>,
}

impl EventLog {
    pub(crate) fn with_seed(seed: u64) -> EventLog {
        EventLog {
            seed,
            ..EventLog::default()
        }
    }

    /// Drops every entry: the log of a simulator starts when it starts, not
    /// with the changes that built its org.
    pub(crate) fn forget(&mut self) {
        self.entries.clear();
        self.pending.clear();
    }

    /// Appends an entry for a change just made (stamped later).
    pub fn record(&mut self, event_type: &str, outcome: &'static str, targets: Vec<LogTarget>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let uuid = uuid_of(self.seed, seq);
        self.pending.push(LogEntry {
            seq,
            uuid,
            event_type: event_type.to_owned(),
            outcome,
            targets,
            published: None,
            persisted: None,
        });
    }

    /// Stamps the pending entries as published `now` and schedules when
    /// they persist.
    pub(crate) fn stamp(&mut self, now: SystemTime, timing: LogTiming) {
        for mut entry in std::mem::take(&mut self.pending) {
            let jitter = if timing.jitter.is_zero() {
                Duration::ZERO
            } else {
                let unit = (mix(self.seed ^ 0x10c ^ entry.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    >> 11) as f64
                    / (1u64 << 53) as f64;
                timing.jitter.mul_f64(unit)
            };
            entry.published = Some(now);
            entry.persisted = Some(now + timing.delay + jitter);
            let twice = timing.duplicates > 0.0
                && ((mix(self.seed ^ 0xd0b ^ entry.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 11)
                    as f64
                    / (1u64 << 53) as f64)
                    < timing.duplicates;
            if twice {
                let mut copy = entry.clone();
                copy.persisted = copy.persisted.map(|p| p + Duration::from_millis(1));
                self.insert(copy);
            }
            self.insert(entry);
        }
    }

    fn insert(&mut self, entry: LogEntry) {
        let key = |e: &LogEntry| (e.persisted, e.seq);
        let at = self.entries.partition_point(|e| key(e) <= key(&entry));
        self.entries.insert(at, entry);
    }

    /// Every stamped entry, in persistence order (for tests).
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    /// A polling page: up to `limit` visible entries after the cursor (or
    /// persisted at or after `since`) that match the filter, and the cursor
    /// after the last entry looked at.
    pub(crate) fn poll(
        &self,
        query: &LogQuery<'_>,
        now: SystemTime,
    ) -> (Vec<&LogEntry>, LogCursor) {
        let oldest = now.checked_sub(RETENTION).unwrap_or(UNIX_EPOCH);
        let since = query.since.unwrap_or(oldest).max(oldest);
        let since_ms = millis(since);
        let mut cursor = query
            .after
            .unwrap_or((since_ms.saturating_sub(1), u64::MAX));
        let start = self.entries.partition_point(|e| {
            let at = (e.persisted.map_or(u64::MAX, millis), e.seq);
            at <= cursor
        });
        let mut page = Vec::new();
        for entry in &self.entries[start..] {
            let persisted = entry.persisted.unwrap_or(UNIX_EPOCH);
            if persisted > now || page.len() >= query.limit {
                break;
            }
            cursor = (millis(persisted), entry.seq);
            if millis(persisted) < since_ms {
                continue;
            }
            let matches = query
                .filter
                .is_none_or(|expr| expr.matches_any(&|attr| entry_attr(entry, attr)));
            if matches {
                page.push(entry);
            }
        }
        (page, cursor)
    }
}

/// The values of an attribute of an entry, for `filter` (`target.id` has one
/// per target).
fn entry_attr(entry: &LogEntry, attr: &str) -> Vec<String> {
    match attr {
        "eventType" => vec![entry.event_type.clone()],
        "uuid" => vec![entry.uuid.clone()],
        "outcome.result" => vec![entry.outcome.to_owned()],
        "target.id" => entry.targets.iter().map(|t| t.id.clone()).collect(),
        "target.type" => entry.targets.iter().map(|t| t.kind.to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// An entry as Okta's `LogEvent`.
pub(crate) fn entry_json(entry: &LogEntry) -> Value {
    let published = entry
        .published
        .map(|t| chrono_like_rfc3339(millis(t)))
        .unwrap_or_default();
    json!({
        "uuid": entry.uuid,
        "published": published,
        "eventType": entry.event_type,
        "version": "0",
        "severity": "INFO",
        "displayMessage": entry.event_type,
        "legacyEventType": Value::Null,
        "actor": {"id": "00usimadmin000000001", "type": "User",
                  "alternateId": "admin@sim.example", "displayName": "Sim Admin", "detailEntry": Value::Null},
        "client": {"userAgent": {"rawUserAgent": "okta-sim"}, "ipAddress": "127.0.0.1"},
        "outcome": {"result": entry.outcome, "reason": Value::Null},
        "target": entry.targets.iter().map(|t| json!({
            "id": t.id, "type": t.kind, "alternateId": t.display_name,
            "displayName": t.display_name, "detailEntry": Value::Null
        })).collect::<Vec<_>>(),
        "transaction": {"type": "WEB", "id": format!("sim{}", entry.seq), "detail": {}},
        "debugContext": {"debugData": {}},
        "authenticationContext": {},
        "securityContext": {}
    })
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `2026-01-01T00:00:00.000Z` for epoch milliseconds (no chrono in the
/// simulator's hot path; days from the civil-from-days algorithm).
pub(crate) fn chrono_like_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// Parses what [`chrono_like_rfc3339`] writes, and Okta's other forms of
/// `since` (`…Z`, with or without fractions, or a `+00:00` offset).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let (h, m, s): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s - offset_secs;
    let total = u64::try_from(secs * 1000 + ms).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(total))
}

/// A uuid-shaped id, deterministic per (seed, seq).
fn uuid_of(seed: u64, seq: u64) -> String {
    let a = mix(seed ^ 0x5e7 ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(seed ^ 0x7a1 ^ seq.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn dates_round_trip() {
        for ms in [0, 1_767_225_600_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(
                parse_rfc3339(&chrono_like_rfc3339(ms)),
                Some(at(ms)),
                "{ms}"
            );
        }
        assert_eq!(
            chrono_like_rfc3339(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00+01:00"),
            Some(at(1_767_225_600_000))
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00Z"),
            Some(at(1_767_225_600_000))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn entries_become_visible_once_persisted_and_polls_resume_after_the_cursor() {
        let mut log = EventLog::with_seed(1);
        let timing = LogTiming {
            delay: Duration::from_secs(10),
            ..LogTiming::default()
        };
        log.record(
            "user.lifecycle.suspend",
            "SUCCESS",
            vec![LogTarget::user("00u1", "a")],
        );
        log.stamp(at(1_000_000), timing);
        log.record(
            "user.lifecycle.unsuspend",
            "SUCCESS",
            vec![LogTarget::user("00u1", "a")],
        );
        log.stamp(at(1_005_000), timing);
        let query = |after| LogQuery {
            since: Some(at(0)),
            after,
            limit: 100,
            filter: None,
        };
        // Nothing persisted yet.
        let (page, cursor) = log.poll(&query(None), at(1_009_999));
        assert!(page.is_empty());
        // The first, then (from its cursor) the second.
        let (page, cursor) = log.poll(&query(Some(cursor)), at(1_010_000));
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].event_type, "user.lifecycle.suspend");
        let (page, again) = log.poll(&query(Some(cursor)), at(1_010_001));
        assert!(page.is_empty());
        assert_eq!(again, cursor);
        let (page, _) = log.poll(&query(Some(cursor)), at(1_015_000));
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].event_type, "user.lifecycle.unsuspend");
    }

    #[test]
    fn jitter_persists_out_of_published_order_and_duplicates_repeat_a_uuid() {
        let mut log = EventLog::with_seed(7);
        let timing = LogTiming {
            delay: Duration::from_secs(1),
            jitter: Duration::from_secs(30),
            duplicates: 0.5,
        };
        for n in 0..40 {
            log.record(
                "user.account.update_profile",
                "SUCCESS",
                vec![LogTarget::user(&format!("00u{n}"), "x")],
            );
            log.stamp(at(1_000_000 + n * 100), timing);
        }
        let seqs: Vec<u64> = log.entries().iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).any(|w| w[0] > w[1]), "{seqs:?}");
        let mut uuids: Vec<&str> = log.entries().iter().map(|e| e.uuid.as_str()).collect();
        let all = uuids.len();
        uuids.sort_unstable();
        uuids.dedup();
        assert!(uuids.len() < all && uuids.len() == 40);
        // Every entry is seen exactly once by a poller that follows cursors.
        let mut seen = Vec::new();
        let mut cursor = None;
        for now in (1_000_000..1_100_000).step_by(700) {
            let (page, next) = log.poll(
                &LogQuery {
                    since: Some(at(0)),
                    after: cursor,
                    limit: 3,
                    filter: None,
                },
                at(now),
            );
            seen.extend(page.iter().map(|e| e.seq));
            cursor = Some(next);
        }
        assert_eq!(seen.len(), all);
    }
}
