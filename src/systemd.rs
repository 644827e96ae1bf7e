//! The systemd notify protocol (Type=notify): READY, STATUS, STOPPING and
//! WATCHDOG messages.
//!
//! Invariant: every call is a no-op when `NOTIFY_SOCKET` is unset (a shell,
//! tests, `--once`), and a failure to notify is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// READY=1: migrations ran, the config is valid, signals are handled.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// STATUS=…: one line shown by `systemctl status`.
pub fn status(line: &str) {
    // A newline would end the message early.
    let line = line.replace('\n', " ");
    send(&[NotifyState::Status(&line)]);
}

/// STOPPING=1: shutdown began.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// WATCHDOG=1: the loop is alive and making progress.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send WATCHDOG=1 (half of `WatchdogSec=`), if enabled.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
