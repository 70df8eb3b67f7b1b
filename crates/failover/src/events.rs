//! Events: what happened to an instance, kept as JSON lines and handed to the operator's
//! `on_event` command.
//!
//! - operations: `operation-started`, `operation-resumed`, `operation-ended` (info),
//!   `operation-failed` (critical), written by the runner;
//! - problems: `problem` (its severity) when `status` finds a problem it did not find the
//!   last time, `problem-cleared` (info) when one is gone, written by `status` (when it
//!   may write the state folder);
//! - the sync: `sync-failing` (warning) at its first failed pass and every 10 minutes while
//!   passes keep failing, `sync-recovered` (info), written by the sync service.
//!
//! The runner's and status' events go to `<state>/<name>/events.jsonl`, the sync's to
//! `<state>/<name>/sync/events.jsonl` (its own folder, owned by `os_user`); `history`
//! reads both. `on_event` runs as `on_event INSTANCE EVENT SEVERITY MESSAGE`, with the same
//! four in `ODOO_STANDBY_INSTANCE`, `_EVENT`, `_SEVERITY` and `_MESSAGE`, stdin closed,
//! within 30 s; it never gets a secret (no message carries one).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::status::InstanceStatus;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the epoch.
    pub at: u64,
    /// The instance.
    pub instance: String,
    /// `operation-started`, `problem`, `sync-failing`... (see the module).
    pub event: String,
    /// `info`, `warning`, `unknown` or `critical`.
    pub severity: String,
    /// What happened, in words.
    pub message: String,
}

/// Where the runner and status write events.
pub fn main_log(env: &Env) -> PathBuf {
    env.state.dir().join("events.jsonl")
}

/// Where the sync service writes its events.
pub fn sync_log(env: &Env) -> PathBuf {
    env.state.sync_dir().join("events.jsonl")
}

/// Records an event in `log` and hands it to `on_event`. Never fails: an event that cannot
/// be written or handed over is logged.
pub async fn emit(env: &Env, log: PathBuf, event: &str, severity: &str, message: &str) {
    let e = Event {
        at: crate::journal::now(),
        instance: env.name().to_owned(),
        event: event.to_owned(),
        severity: severity.to_owned(),
        message: message.to_owned(),
    };
    let appended = serde_json::to_string(&e)
        .map_err(std::io::Error::other)
        .and_then(|line| {
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            writeln!(f, "{line}")
        });
    if let Err(err) = appended {
        tracing::debug!(
            "{}: cannot record the event in {}: {err}",
            env.name(),
            log.display()
        );
    }
    let Some(program) = env.cfg.backup.on_event.clone() else {
        return;
    };
    let mut c = tokio::process::Command::new(&program);
    c.args([&e.instance, &e.event, &e.severity, &e.message])
        .env("ODOO_STANDBY_INSTANCE", &e.instance)
        .env("ODOO_STANDBY_EVENT", &e.event)
        .env("ODOO_STANDBY_SEVERITY", &e.severity)
        .env("ODOO_STANDBY_MESSAGE", &e.message)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), c.status()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => tracing::warn!(
            "{}: on_event {} ended with {s} for {event}",
            env.name(),
            program.display()
        ),
        Ok(Err(err)) => tracing::warn!(
            "{}: cannot run on_event {}: {err}",
            env.name(),
            program.display()
        ),
        Err(_) => tracing::warn!(
            "{}: on_event {} did not end within 30 s (stopped)",
            env.name(),
            program.display()
        ),
    }
}

/// Every event of the instance, oldest first (both logs).
pub fn read(env: &Env) -> Vec<Event> {
    let mut v: Vec<Event> = [main_log(env), sync_log(env)]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort_by_key(|e| e.at);
    v
}

/// Compares the problems of `s` with those of the last status and records what appeared
/// and what cleared (`<state>/<name>/problems.json` keeps the last set). Does nothing when
/// the state folder cannot be written (status run by a monitoring user).
pub async fn note_problems(env: &Env, s: &InstanceStatus) {
    let path = env.state.dir().join("problems.json");
    let before: BTreeMap<String, String> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let now: BTreeMap<String, String> = s
        .problems
        .iter()
        .map(|p| (p.code.to_owned(), p.message.clone()))
        .collect();
    if before == now {
        return;
    }
    let tmp = path.with_extension("json.tmp");
    let saved = serde_json::to_string_pretty(&now)
        .map_err(std::io::Error::other)
        .and_then(|t| std::fs::write(&tmp, t))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if saved.is_err() {
        return;
    }
    for p in &s.problems {
        if !before.contains_key(p.code) {
            let sev = format!("{:?}", p.severity).to_lowercase();
            emit(
                env,
                main_log(env),
                "problem",
                &sev,
                &format!("{}: {}", p.code, p.message),
            )
            .await;
        }
    }
    for (code, message) in &before {
        if !now.contains_key(code) {
            emit(
                env,
                main_log(env),
                "problem-cleared",
                "info",
                &format!("{code}: cleared (was: {message})"),
            )
            .await;
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
pub fn utc(at: u64) -> String {
    let days = (at / 86400) as i64;
    let secs = at % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_796_146_737), "2026-12-01 17:38:57");
    }
}
