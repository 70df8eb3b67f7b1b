//! How `status` prints: one table for all instances (human units, colour only on a
//! terminal), or the Nagios plugin format.

use std::fmt::Write as _;
use std::io::IsTerminal;

use failover::limits;
use failover::problem::{bytes, seconds};
use failover::{InstanceStatus, Severity};

/// Colour when stdout is a terminal and `NO_COLOR` is unset (<https://no-color.org>).
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn state(s: &InstanceStatus) -> &'static str {
    s.severity.map(Severity::word).unwrap_or("OK")
}

fn paint(text: &str, sev: Option<Severity>, on: bool) -> String {
    let code = match sev {
        _ if !on => return text.to_owned(),
        None => "32",
        Some(Severity::Warning) => "33",
        Some(Severity::Unknown) => "35",
        Some(Severity::Critical) => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// One row per instance, then every problem with its fix.
pub fn table(all: &[InstanceStatus], colour: bool) -> String {
    let head = [
        "INSTANCE",
        "STATE",
        "HERE",
        "VPS",
        "LAG",
        "SLOT WAL",
        "FILES",
        "LAST SYNC",
        "ODOO",
        "SYNC",
        "DRILL",
    ];
    let rows: Vec<[String; 11]> = all
        .iter()
        .map(|s| {
            let lag = match (s.db.lag_bytes, s.db.lag_seconds) {
                (None, None) => "-".to_owned(),
                (b, t) => format!("{}, {}", dash(b, bytes), dash(t, |t| format!("{t:.1} s"))),
            };
            let files = if s.files.wrong_size == 0 {
                format!("{} missing", s.files.missing)
            } else {
                format!(
                    "{} missing, {} damaged",
                    s.files.missing, s.files.wrong_size
                )
            };
            [
                s.name.clone(),
                state(s).to_owned(),
                s.role.clone(),
                s.vps_role.clone().unwrap_or_else(|| "-".into()),
                lag,
                dash(s.db.slot_retained_bytes, bytes),
                files,
                dash(s.files.last_sync_age_seconds, |a| {
                    format!("{} ago", seconds(a))
                }),
                format!(
                    "{}/{}",
                    s.odoo_unit,
                    s.vps_odoo_unit.as_deref().unwrap_or("-")
                ),
                s.syncs.clone(),
                dash(s.last_drill.as_ref(), |d| {
                    format!(
                        "{} {} ago",
                        if d.ok { "passed" } else { "FAILED" },
                        seconds(d.age_seconds)
                    )
                }),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(
        head.iter()
            .zip(width)
            .map(|(h, w)| format!("{h:<w$}"))
            .collect(),
        &mut out,
    );
    for (r, s) in rows.iter().zip(all) {
        line(
            r.iter()
                .zip(width)
                .enumerate()
                .map(|(i, (c, w))| {
                    let cell = format!("{c:<w$}");
                    if i == 1 {
                        paint(&cell, s.severity, colour)
                    } else {
                        cell
                    }
                })
                .collect(),
            &mut out,
        );
    }
    out.push_str("(ODOO: here/on the VPS)\n");
    if let Some(oldest) = all.iter().filter_map(|s| s.vps_seen_age_seconds).max() {
        let _ = writeln!(
            out,
            "(the VPSs' side as their sync services saw it, at most {oldest} s ago; `--live` asks them now)"
        );
    }
    for s in all {
        for p in &s.problems {
            let _ = writeln!(
                out,
                "{} {} {}: {}\n    fix: {}",
                s.name,
                paint(p.severity.word(), Some(p.severity), colour),
                p.code,
                p.message,
                p.fix
            );
        }
    }
    out
}

/// The Nagios plugin format (plugin guidelines): `ODOO-STANDBY STATE - summary | perfdata`,
/// then one line per problem.
pub fn nagios(all: &[InstanceStatus]) -> String {
    let worst = all.iter().filter_map(|s| s.severity).max();
    let bad: Vec<String> = all
        .iter()
        .filter(|s| !s.healthy)
        .map(|s| {
            let codes: Vec<&str> = s.problems.iter().map(|p| p.code).collect();
            format!("{} {}", s.name, codes.join(","))
        })
        .collect();
    let summary = if bad.is_empty() {
        format!("{} instance(s) healthy", all.len())
    } else {
        format!(
            "{} of {} instance(s) with problems: {}",
            bad.len(),
            all.len(),
            bad.join("; ")
        )
    };
    let mut perf = Vec::new();
    let (lw, lc) = limits::LAG_BYTES;
    let (sw, sc) = limits::SLOT_BYTES;
    let (aw, ac) = limits::SYNC_AGE;
    for s in all {
        let n = &s.name;
        if let Some(v) = s.db.lag_bytes {
            perf.push(format!("'{n}_lag'={v}B;{lw};{lc};0;"));
        }
        if let Some(v) = s.db.slot_retained_bytes {
            perf.push(format!("'{n}_slot_retained'={v}B;{sw};{sc};0;"));
        }
        perf.push(format!("'{n}_files_missing'={};1;;0;", s.files.missing));
        perf.push(format!("'{n}_files_damaged'={};1;;0;", s.files.wrong_size));
        if let Some(v) = s.files.last_sync_age_seconds {
            perf.push(format!("'{n}_sync_age'={v}s;{aw};{ac};0;"));
        }
    }
    let mut out = format!(
        "ODOO-STANDBY {} - {summary} | {}\n",
        worst.map(Severity::word).unwrap_or("OK"),
        perf.join(" ")
    );
    for s in all {
        for p in &s.problems {
            let _ = writeln!(
                out,
                "{} {} {}: {} (fix: {})",
                s.name, p.severity, p.code, p.message, p.fix
            );
        }
    }
    out
}
