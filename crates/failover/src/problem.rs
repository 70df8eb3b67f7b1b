//! A problem `status` found: a stable code for monitoring, a severity, what is wrong in
//! words, and what to do.
//!
//! Codes are part of the JSON and `--nagios` output and do not change between releases:
//!
//! | code | severity | meaning |
//! |---|---|---|
//! | `vps-primary-after-failover` | critical | the VPS's cluster came back as a primary after a failover |
//! | `vps-not-held` | critical | after a failover the VPS's cluster is stopped but would start at boot |
//! | `vps-not-answering` | critical | after a failover the VPS's cluster runs but does not answer |
//! | `vps-hold-failed` | critical | holding the revived VPS down failed |
//! | `slot-lost` | critical | the VPS removed WAL the standby still needed |
//! | `slot-unreserved` | critical | the slot is about to be lost |
//! | `slot-missing` | critical | the VPS has no slot for this standby |
//! | `slot-retained` | warning/critical | WAL the slot holds on the VPS, above its thresholds |
//! | `standby-down` | critical | the standby cluster here does not run |
//! | `standby-unreadable` | critical | the cluster here does not answer |
//! | `not-streaming` | critical | the standby does not receive WAL |
//! | `standby-not-connected` | critical | the VPS does not see this standby |
//! | `vps-not-primary` | critical | the VPS's PostgreSQL is not a primary |
//! | `vps-host-key-changed` | critical | the VPS offered another SSH host key |
//! | `vps-unreachable` | critical | the VPS's replication status cannot be read |
//! | `lag` | warning/critical | replication lag above its thresholds |
//! | `files-missing` | warning | referenced files missing here |
//! | `files-damaged` | warning | files here with another size than their row records |
//! | `files-damaged-waiting` | warning | files a copy-back found damaged, fetched again by the next pass |
//! | `files-unrepaired` | critical | files damaged here that the VPS lacks too |
//! | `files-unaudited` | warning | the filestore could not be audited |
//! | `sync-failing` | warning | the last sync pass failed |
//! | `sync-stale` | warning/critical | no good sync pass for longer than its thresholds |
//! | `sync-stopped` | critical | the sync service does not run on a standby |
//! | `odoo-runs-on-standby` | critical | Odoo runs here while this is a standby |
//! | `odoo-down-here` | critical | failed over, and Odoo does not run here |
//! | `vps-odoo-down` | warning | the VPS's Odoo unit does not run |
//! | `disk-low` | warning/critical | free space for WAL and files here |
//! | `failed-over` | warning | production runs here and is not protected |
//! | `switched-over` | warning | production runs here after a switchover; the VPS follows it (or is stopped for its work); says how the files go back |
//! | `drill-failed` | warning | the last drill failed |
//! | `interrupted` | critical | an operation was interrupted |
//! | `status-timeout` | unknown | the checks of this instance did not end in time |

use serde::Serialize;

/// How bad: what a monitoring system pages for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs attention, nothing is lost yet.
    Warning,
    /// The checks could not tell (Nagios UNKNOWN).
    Unknown,
    /// A failover now would lose data, or production is at risk.
    Critical,
}

impl Severity {
    /// The Nagios plugin exit code: 1 WARNING, 3 UNKNOWN, 2 CRITICAL.
    pub fn nagios_code(self) -> u8 {
        match self {
            Severity::Warning => 1,
            Severity::Unknown => 3,
            Severity::Critical => 2,
        }
    }

    /// `WARNING`, `UNKNOWN`, `CRITICAL`, as Nagios and the text table print it.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Unknown => "UNKNOWN",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// One problem: stable code, severity, what is wrong, what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable identifier (see the module's table), for monitoring rules.
    pub code: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What is wrong, in words.
    pub message: String,
    /// What to do: a command that exists, or the place to look.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    /// `CRITICAL slot-lost: what is wrong (fix: what to do)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} (fix: {})",
            self.severity, self.code, self.message, self.fix
        )
    }
}

impl Problem {
    /// A critical problem.
    pub fn critical(
        code: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            code,
            severity: Severity::Critical,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A warning.
    pub fn warning(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Warning,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A problem whose severity depends on a measured value against two thresholds;
    /// `None` below the first.
    pub fn graded(
        code: &'static str,
        value: f64,
        limits: (f64, f64),
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Option<Self> {
        let severity = if value >= limits.1 {
            Severity::Critical
        } else if value >= limits.0 {
            Severity::Warning
        } else {
            return None;
        };
        Some(Self {
            code,
            severity,
            message: message.into(),
            fix: fix.into(),
        })
    }
}

/// Bytes in human units (`512 B`, `3.2 MB`, `1.4 GB`), powers of 1024 as `du -h` counts.
pub fn bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A duration in seconds as people say it (`4 s`, `3 min`, `2 h`, `5 d`).
pub fn seconds(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(320 << 20), "320.0 MB");
        assert_eq!(bytes(3 << 29), "1.5 GB");
        assert_eq!(seconds(3), "3 s");
        assert_eq!(seconds(200), "3 min");
        assert_eq!(seconds(3 * 86400), "3 d");
    }

    #[test]
    fn grading_and_nagios_order() {
        assert!(Problem::graded("lag", 1.0, (2.0, 4.0), "", "").is_none());
        let w = Problem::graded("lag", 2.0, (2.0, 4.0), "", "");
        assert_eq!(w.map(|p| p.severity), Some(Severity::Warning));
        let c = Problem::graded("lag", 9.0, (2.0, 4.0), "", "");
        assert_eq!(c.map(|p| p.severity), Some(Severity::Critical));
        // Worst first: critical beats unknown beats warning.
        assert!(Severity::Critical > Severity::Unknown && Severity::Unknown > Severity::Warning);
        assert_eq!(Severity::Unknown.nagios_code(), 3);
    }
}
