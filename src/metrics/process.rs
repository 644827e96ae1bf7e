//! The standard `process_*` metrics (the names every Prometheus client
//! library exports): memory, file descriptors, CPU time and start time of
//! this process.
//!
//! Invariant: reads only `/proc/self` and syscalls, which the unit's
//! `ProcSubset=pid` / `ProtectProc=invisible` leave visible (`/proc/stat`
//! and `/proc/uptime` are hidden there, so the start time is computed from
//! `CLOCK_BOOTTIME`, not from the boot time in `/proc/stat`). A value that
//! cannot be read is left out, never reported as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// One reading of the process metrics; `None` where the system did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

/// The fields of `/proc/self/stat` used here, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// When the process started, in clock ticks after boot.
    pub starttime: u64,
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so the fields are counted
/// from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

fn read_stat() -> Option<Stat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn ticks_per_second() -> Option<u64> {
    Some(rustix::param::clock_ticks_per_second()).filter(|t| *t > 0)
}

/// Reads the current values.
pub fn read() -> ProcessStats {
    let stat = read_stat();
    let ticks = ticks_per_second();
    let page = rustix::param::page_size() as u64;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    ProcessStats {
        resident_memory_bytes: stat.map(|s| s.rss_pages * page),
        virtual_memory_bytes: stat.map(|s| s.vsize),
        open_fds,
        max_fds,
        cpu_seconds: stat
            .zip(ticks)
            .map(|(s, t)| (s.utime + s.stime) as f64 / t as f64),
    }
}

/// Unix time at which this process started: now, minus the time since
/// boot, plus the start's offset after boot. `None` when `/proc/self/stat`
/// cannot be read.
pub fn start_time_seconds() -> Option<f64> {
    let stat = read_stat()?;
    let ticks = ticks_per_second()?;
    let since_boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let since_boot = since_boot.tv_sec as f64 + since_boot.tv_nsec as f64 / 1e9;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(now - since_boot + stat.starttime as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis of its own.
        let line = "4242 (writer (sync) 1) S 1 4242 4242 0 -1 4194560 1234 0 5 0 \
                    250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_reports_plausible_values() {
        let stats = read();
        assert!(stats.resident_memory_bytes.unwrap() > 0, "{stats:?}");
        assert!(stats.virtual_memory_bytes.unwrap() >= stats.resident_memory_bytes.unwrap());
        let open = stats.open_fds.unwrap();
        assert!(open >= 3, "{stats:?}");
        assert!(stats.max_fds.unwrap() >= open, "{stats:?}");
        assert!(stats.cpu_seconds.unwrap() >= 0.0);
        let started = start_time_seconds().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // This test binary started a moment ago (allow for a slow machine
        // and the clock tick granularity).
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
