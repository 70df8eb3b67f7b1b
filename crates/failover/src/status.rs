//! `odoo-standby status`: per instance, the role of the cluster here, replication lag and
//! the WAL its slot holds on the VPS, referenced files missing here, the last good sync pass,
//! the state of the units, and whether an operation was interrupted.

use serde::Serialize;

use crate::env::Env;
use crate::error::{chain, FailoverError, Result};
use crate::sync::SyncState;

/// The filestore here against the database, per database: referenced files missing, and
/// files with another size than their row says (stat only, no hashing).
pub async fn audit_files(env: &Env) -> Result<Vec<filesync::audit::AuditReport>> {
    let mut v = Vec::new();
    let fs = env.layout.data_dir().join("filestore");
    for db in env.databases().await? {
        v.push(
            filesync::audit::audit(&env.standby_sql(&db), &db, &fs, false)
                .await
                .map_err(|e| FailoverError::failed(format!("auditing {db}"), e))?,
        );
    }
    Ok(v)
}

/// Referenced files missing here, per database (for the risk summary and status).
pub async fn missing_files(env: &Env) -> Result<Vec<(String, usize)>> {
    Ok(audit_files(env)
        .await?
        .into_iter()
        .map(|r| (r.db, r.missing.len()))
        .collect())
}

/// Replication health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DbHealth {
    /// The WAL receiver's state here (`streaming`...).
    pub receiver: Option<String>,
    /// Bytes the standby is behind the VPS (measured on the VPS; `None` when unreachable).
    pub lag_bytes: Option<i64>,
    /// Seconds of replay lag as the VPS measures it.
    pub lag_seconds: Option<f64>,
    /// WAL the instance's slot holds on the VPS.
    pub slot_retained_bytes: Option<i64>,
    /// Whether that slot is in use.
    pub slot_active: Option<bool>,
    /// Its `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub slot_wal_status: Option<String>,
}

/// File health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FilesHealth {
    /// Referenced files missing here, all databases.
    pub missing: usize,
    /// The same, per database.
    pub missing_by_db: Vec<(String, usize)>,
    /// When the last sync pass succeeded (seconds since the epoch).
    pub last_sync: Option<u64>,
    /// How long ago that was.
    pub last_sync_age_seconds: Option<u64>,
    /// The last pass's error, if it failed.
    pub last_error: Option<String>,
    /// Files here whose size is not the one their row records (damaged).
    pub wrong_size: usize,
    /// Files the sync found vanished or damaged here and fetched again.
    pub repaired: usize,
    /// Files found vanished or damaged here that the VPS does not have either.
    pub unrepaired: Vec<String>,
    /// Files a copy-back found damaged here, waiting for the next sync pass.
    pub damaged_waiting: Vec<String>,
    /// When the sync last checked every file's presence and size (seconds since the epoch).
    pub sizes_checked_at: Option<u64>,
    /// When the sync last ended a SHA-1 round over every file here.
    pub hash_round_at: Option<u64>,
}

/// One instance.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceStatus {
    /// The instance.
    pub name: String,
    /// The cluster here: `standby`, `primary` (failed over) or `down`.
    pub role: String,
    /// Everything as it should be for its role.
    pub healthy: bool,
    /// What is not, in words.
    pub problems: Vec<String>,
    /// Replication.
    pub db: DbHealth,
    /// Files.
    pub files: FilesHealth,
    /// The Odoo unit here: `active` or `inactive`.
    pub odoo_unit: String,
    /// The sync service here: `active` or `inactive`.
    pub syncs: String,
    /// An operation that was interrupted (resume it).
    pub interrupted: Option<String>,
}

/// Lag above this is reported as a problem.
const LAG_LIMIT: i64 = 16 << 20;

fn active(b: bool) -> String {
    if b { "active" } else { "inactive" }.into()
}

/// The status of the instance of `env`. Never fails: what cannot be read is a problem.
pub async fn status(env: &Env) -> InstanceStatus {
    let mut problems = Vec::new();
    let mut db = DbHealth::default();
    let running = env.standby.is_running().await.unwrap_or(false);
    let role = if !running {
        problems.push(format!(
            "the cluster {} is not running",
            env.standby.label()
        ));
        "down".to_owned()
    } else {
        match pgrepl::status(&env.standby_sql("postgres")).await {
            Ok(pgrepl::Status::Standby(s)) => {
                db.receiver = s.receiver_status.clone();
                if s.receiver_status.as_deref() != Some("streaming") {
                    problems.push(format!(
                        "the standby does not stream (receiver: {})",
                        s.receiver_status.as_deref().unwrap_or("none")
                    ));
                }
                "standby".to_owned()
            }
            Ok(pgrepl::Status::Primary(_)) => {
                problems.push("failed over: production runs here and is not protected; run `odoo-standby failback` when the VPS is back".into());
                "primary".to_owned()
            }
            Err(e) => {
                problems.push(format!("cannot read the cluster here: {}", chain(&e)));
                "down".to_owned()
            }
        }
    };
    if role == "standby" {
        // The limit is psql's own: the SSH connection is freed when it runs out.
        let vps = env
            .vps_psql("postgres")
            .with_timeout(std::time::Duration::from_secs(15));
        match tokio::time::timeout(std::time::Duration::from_secs(20), pgrepl::status(&vps)).await {
            Ok(r) => match r {
                Ok(pgrepl::Status::Primary(p)) => {
                    if let Some(r) = p.replicas.iter().find(|r| r.application_name == env.name()) {
                        db.lag_bytes = r.lag_bytes;
                        db.lag_seconds = r.lag_seconds;
                    } else {
                        problems.push("the VPS does not see the standby connected".into());
                    }
                    match p.slots.iter().find(|s| s.name == env.name()) {
                        Some(s) => {
                            db.slot_retained_bytes = s.retained_bytes;
                            db.slot_active = Some(s.active);
                            db.slot_wal_status = s.wal_status.clone();
                            if s.wal_status.as_deref() == Some("lost") {
                                problems.insert(0, format!(
                                    "the slot {} on the VPS is LOST: the VPS removed WAL this standby still needed (it was stopped or behind for longer than max_slot_wal_keep_size allows); it can never catch up. Clone it again: odoo-standby protect {} --reclone (its data directory is moved aside)",
                                    s.name,
                                    env.name()
                                ));
                            } else if s.wal_status.as_deref() == Some("unreserved") {
                                problems.push(format!(
                                    "the slot {} on the VPS is about to be lost (wal_status unreserved): the standby must catch up now",
                                    s.name
                                ));
                            }
                        }
                        None => problems.push(format!(
                            "the VPS has no slot {}: run odoo-standby protect {}",
                            env.name(),
                            env.name()
                        )),
                    }
                }
                Ok(_) => problems.push("the VPS's PostgreSQL is not a primary".into()),
                Err(e) => problems.push(format!(
                    "cannot read the VPS's replication status: {}",
                    chain(&e)
                )),
            },
            _ => problems.push(format!(
                "the VPS's PostgreSQL at {}:{} cannot be reached",
                env.vps_pg.0, env.vps_pg.1
            )),
        }
        if db.lag_bytes.is_some_and(|l| l > LAG_LIMIT) {
            problems.push(format!(
                "replication lag {} MB",
                db.lag_bytes.unwrap_or(0) >> 20
            ));
        }
    }
    let mut files = FilesHealth::default();
    if running {
        match audit_files(env).await {
            Ok(v) => {
                files.missing = v.iter().map(|r| r.missing.len()).sum();
                files.wrong_size = v.iter().map(|r| r.truncated.len()).sum();
                files.missing_by_db = v.into_iter().map(|r| (r.db, r.missing.len())).collect();
            }
            Err(e) => problems.push(format!("cannot audit the filestore: {}", chain(&e))),
        }
    }
    if files.missing > 0 {
        problems.push(format!("{} referenced file(s) missing here", files.missing));
    }
    if files.wrong_size > 0 {
        problems.push(format!(
            "{} file(s) here have another size than their row records: damaged{}",
            files.wrong_size,
            if role == "standby" {
                " (the sync's next size check fetches them again)"
            } else {
                ""
            }
        ));
    }
    let st = SyncState::load(env);
    files.last_sync = st.last_ok;
    files.last_sync_age_seconds = st.last_ok.map(|t| crate::journal::now().saturating_sub(t));
    files.last_error = st.last_error;
    files.repaired = st.repaired;
    files.sizes_checked_at = st.sizes_checked_at;
    files.hash_round_at = st.hash_round_at;
    if !st.damaged.is_empty() {
        problems.push(format!(
            "{} file(s) here found damaged by the copy-back, e.g. {}: the next sync pass fetches them again",
            st.damaged.len(),
            st.damaged[0]
        ));
    }
    if !st.unrepaired.is_empty() {
        problems.push(format!(
            "{} file(s) here were damaged or vanished and the VPS does not have them either, e.g. {}: restore them from a file backup",
            st.unrepaired.len(),
            st.unrepaired[0]
        ));
    }
    files.unrepaired = st.unrepaired;
    files.damaged_waiting = st.damaged;
    let odoo = env
        .here
        .is_active(&env.odoo_service())
        .await
        .unwrap_or(false);
    let syncs = env
        .here
        .is_active(&env.sync_service())
        .await
        .unwrap_or(false);
    if role == "standby" {
        if !syncs {
            problems.push("the sync service does not run".into());
        }
        if odoo {
            problems.push("Odoo runs here while this is a standby".into());
        }
    }
    if role == "primary" {
        // A VPS that comes back after a failover must not take writes: held down here, and
        // said first.
        if let Some(p) = crate::vps::guard_after_failover(env).await {
            problems.insert(0, p);
        }
    }
    let interrupted = std::fs::read_to_string(env.state.current())
        .ok()
        .and_then(|t| serde_json::from_str::<crate::journal::Current>(&t).ok())
        .map(|c| c.operation);
    if let Some(op) = &interrupted {
        problems.push(format!(
            "an interrupted {op}: run `odoo-standby resume {}`",
            env.name()
        ));
    }
    InstanceStatus {
        name: env.name().to_owned(),
        healthy: problems.is_empty(),
        role,
        problems,
        db,
        files,
        odoo_unit: active(odoo),
        syncs: active(syncs),
        interrupted,
    }
}
