//! The sync's Prometheus textfile: `<metrics_dir>/odoo_standby_<name>.prom`, rewritten
//! atomically (a temporary file in the same folder, then a rename) after every pass, for
//! node-exporter's textfile collector. Names follow Prometheus' conventions: the
//! `odoo_standby_` prefix, base units in the name (`_bytes`, `_seconds`), counters ending in
//! `_total`; every sample carries `instance_name` (not `instance`, which Prometheus sets to
//! the scraped exporter).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `odoo_standby_up` | gauge | 1 when the last pass succeeded |
//! | `odoo_standby_role` | gauge | 1 for the cluster's role here (`role` label: standby, primary, down) |
//! | `odoo_standby_replication_lag_bytes` | gauge | bytes the standby is behind the VPS |
//! | `odoo_standby_replication_lag_seconds` | gauge | replay lag the VPS measures |
//! | `odoo_standby_slot_retained_bytes` | gauge | WAL the standby's slot holds on the VPS |
//! | `odoo_standby_files_missing` | gauge | referenced files the last pass could not fetch |
//! | `odoo_standby_files_damaged` | gauge | files damaged here that are not repaired |
//! | `odoo_standby_last_success_timestamp_seconds` | gauge | end of the last good pass |
//! | `odoo_standby_pass_duration_seconds` | gauge | how long the last pass took |
//! | `odoo_standby_sync_errors_total` | counter | failed passes |
//! | `odoo_standby_files_repaired_total` | counter | damaged or vanished files fetched again |
//!
//! The replication figures are read on the VPS at most every 30 s (over the sync's own SSH
//! connection); between two reads the last values are written again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What one pass knows, to be written as metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// The instance.
    pub name: String,
    /// The last pass succeeded.
    pub up: bool,
    /// `standby`, `primary` or `down`.
    pub role: String,
    /// Replication lag in bytes, when the VPS told.
    pub lag_bytes: Option<i64>,
    /// Replay lag in seconds, when the VPS told.
    pub lag_seconds: Option<f64>,
    /// WAL the slot holds on the VPS.
    pub slot_retained_bytes: Option<i64>,
    /// Files the last pass could not fetch.
    pub files_missing: usize,
    /// Files damaged here, not repaired.
    pub files_damaged: usize,
    /// End of the last good pass (seconds since the epoch).
    pub last_success: Option<u64>,
    /// Duration of the last pass, seconds.
    pub pass_seconds: f64,
    /// Failed passes so far.
    pub errors_total: u64,
    /// Files fetched again so far.
    pub repaired_total: u64,
}

const ROLES: [&str; 3] = ["standby", "primary", "down"];

/// The file's name for an instance.
pub fn file_name(name: &str) -> String {
    format!("odoo_standby_{name}.prom")
}

/// The text exposition format of `s`.
pub fn render(s: &Sample) -> String {
    let mut out = String::new();
    let label = format!("instance_name=\"{}\"", escape(&s.name));
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let one = |v: String| vec![(label.clone(), v)];
    let opt = |v: Option<String>| v.map(one).unwrap_or_default();
    metric(
        "odoo_standby_up",
        "gauge",
        "1 when the last file-sync pass succeeded.",
        &one(u8::from(s.up).to_string()),
    );
    let roles: Vec<(String, String)> = ROLES
        .iter()
        .map(|r| {
            (
                format!("{label},role=\"{r}\""),
                u8::from(s.role == *r).to_string(),
            )
        })
        .collect();
    metric(
        "odoo_standby_role",
        "gauge",
        "1 for the role of the cluster here.",
        &roles,
    );
    metric(
        "odoo_standby_replication_lag_bytes",
        "gauge",
        "Bytes of WAL the standby is behind the VPS.",
        &opt(s.lag_bytes.map(|v| v.to_string())),
    );
    metric(
        "odoo_standby_replication_lag_seconds",
        "gauge",
        "Replay lag of the standby as the VPS measures it.",
        &opt(s.lag_seconds.map(|v| format!("{v}"))),
    );
    metric(
        "odoo_standby_slot_retained_bytes",
        "gauge",
        "Bytes of WAL the standby's replication slot holds on the VPS.",
        &opt(s.slot_retained_bytes.map(|v| v.to_string())),
    );
    metric(
        "odoo_standby_files_missing",
        "gauge",
        "Referenced files the last pass could not fetch.",
        &one(s.files_missing.to_string()),
    );
    metric(
        "odoo_standby_files_damaged",
        "gauge",
        "Files damaged here and not repaired.",
        &one(s.files_damaged.to_string()),
    );
    metric(
        "odoo_standby_last_success_timestamp_seconds",
        "gauge",
        "When the last good pass ended, seconds since the epoch.",
        &opt(s.last_success.map(|v| v.to_string())),
    );
    metric(
        "odoo_standby_pass_duration_seconds",
        "gauge",
        "How long the last pass took.",
        &one(format!("{:.3}", s.pass_seconds)),
    );
    metric(
        "odoo_standby_sync_errors_total",
        "counter",
        "Failed file-sync passes.",
        &one(s.errors_total.to_string()),
    );
    metric(
        "odoo_standby_files_repaired_total",
        "counter",
        "Damaged or vanished files fetched again from the VPS.",
        &one(s.repaired_total.to_string()),
    );
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` as `dir/file` atomically (readable by node-exporter: 0644). Returns the
/// path written.
pub fn write(dir: &Path, file: &str, text: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(file);
    // node-exporter skips files that do not end in .prom: the temporary one is not read.
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_the_instance_label() {
        let s = Sample {
            name: "vps1".into(),
            up: true,
            role: "standby".into(),
            lag_bytes: Some(0),
            lag_seconds: Some(0.25),
            slot_retained_bytes: Some(320 << 20),
            last_success: Some(1_796_000_000),
            pass_seconds: 0.12,
            errors_total: 3,
            ..Default::default()
        };
        let text = render(&s);
        assert!(
            text.contains("odoo_standby_slot_retained_bytes{instance_name=\"vps1\"} 335544320\n")
        );
        assert!(text.contains("odoo_standby_role{instance_name=\"vps1\",role=\"standby\"} 1\n"));
        assert!(text.contains("odoo_standby_role{instance_name=\"vps1\",role=\"primary\"} 0\n"));
        assert!(text.contains("# TYPE odoo_standby_sync_errors_total counter\n"));
        let helps = text.matches("# HELP ").count();
        assert_eq!(helps, text.matches("# TYPE ").count());
        assert_eq!(helps, 11);
        // Unknown values are left out, not written as 0.
        let bare = render(&Sample {
            name: "vps1".into(),
            ..Default::default()
        });
        assert!(!bare.contains("lag_bytes"));
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(dir.path(), &file_name("vps1"), "a 1\n").unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), &file_name("vps1"), "a 2\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(p).unwrap_or_default(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
