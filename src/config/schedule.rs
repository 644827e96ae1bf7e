//! The sync schedule: [`CronSchedule`], a cron expression in UTC with 5
//! fields (or 6, seconds first), and the translation of classic cron
//! weekdays (0 or 7 = Sunday) into the `cron` crate's numbering.
//!
//! Invariant: a `CronSchedule` fires at least once after 2020 (one that
//! never fires is refused at load), and weekday numbers mean what they mean
//! in crontab(5).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// (with seconds first). Weekdays follow classic cron: 0 or 7 = Sunday,
/// 1 = Monday … 6 = Saturday, or names (`MON-FRI`).
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    schedule: cron::Schedule,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.expr)
    }
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "{expr:?} has {n} fields; use 5 (minute hour day month weekday) or 6 (second first)"
                ));
            }
        };
        let weekday = translate_weekdays(rest[4]).map_err(|m| format!("{expr:?}: {m}"))?;
        let full = format!(
            "{seconds} {} {} {} {} {weekday}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))?;
        let epoch_2020 = DateTime::<Utc>::from_timestamp(1_577_836_800, 0).unwrap_or_default();
        if schedule.after(&epoch_2020).next().is_none() {
            return Err(format!("{expr:?} never fires"));
        }
        Ok(CronSchedule {
            expr: expr.to_owned(),
            schedule,
        })
    }

    /// The expression as written in the config.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&now).next()
    }
}

/// Maps classic cron weekday numbers (0-7, Sunday = 0 or 7) to the `cron`
/// crate's (1-7, Sunday = 1). Names and `*`/`?` pass through.
pub(super) fn translate_weekdays(field: &str) -> Result<String, String> {
    if field.chars().any(|c| c.is_ascii_alphabetic()) || field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let map = |n: &str| -> Result<u32, String> {
        let v: u32 = n
            .parse()
            .map_err(|_| format!("weekday {n:?} is not a number 0-7"))?;
        match v {
            0..=6 => Ok(v + 1),
            7 => Ok(1),
            _ => Err(format!("weekday {v} is out of range 0-7")),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let translated = if range == "*" {
            "*".to_owned()
        } else if let Some((a, b)) = range.split_once('-') {
            let start = map(a)?;
            let end_raw: u32 = b
                .parse()
                .map_err(|_| format!("weekday {b:?} is not a number 0-7"))?;
            if end_raw == 7 {
                // `5-7` = Fri..Sun: the crate has no wrap-around, so split.
                let head = if start == 1 {
                    None
                } else {
                    Some(format!("{start}-7"))
                };
                match (head, step) {
                    (Some(h), None) => {
                        out.push(h);
                        out.push("1".into());
                        continue;
                    }
                    (None, None) => "1-7".to_owned(),
                    (_, Some(_)) => {
                        return Err(format!(
                            "weekday range {range:?} with a step must end before 7"
                        ));
                    }
                }
            } else {
                format!("{start}-{}", map(b)?)
            }
        } else {
            map(range)?.to_string()
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}
