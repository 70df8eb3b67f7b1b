//! `odoo-standby status`: per instance, the role of the cluster here, replication lag and
//! the WAL its slot holds on the VPS, referenced files missing here, the last good sync pass,
//! the state of the units, and whether an operation was interrupted.

use serde::Serialize;

use crate::env::Env;
use crate::error::{chain, FailoverError, Result};
use crate::sync::SyncState;

/// Referenced files missing here, per database (for the risk summary and status).
pub async fn missing_files(env: &Env) -> Result<Vec<(String, usize)>> {
    let mut v = Vec::new();
    let fs = env.layout.data_dir().join("filestore");
    for db in env.databases().await? {
        let r = filesync::audit::audit(&env.standby_sql(&db), &db, &fs, false)
            .await
            .map_err(|e| FailoverError::failed(format!("auditing {db}"), e))?;
        v.push((db, r.missing.len()));
    }
    Ok(v)
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
        let vps = env.vps_psql("postgres");
        match tokio::time::timeout(std::time::Duration::from_secs(15), pgrepl::status(&vps)).await {
            Ok(r) => match r {
                Ok(pgrepl::Status::Primary(p)) => {
                    if let Some(r) = p.replicas.iter().find(|r| r.application_name == env.name()) {
                        db.lag_bytes = r.lag_bytes;
                        db.lag_seconds = r.lag_seconds;
                    } else {
                        problems.push("the VPS does not see the standby connected".into());
                    }
                    if let Some(s) = p.slots.iter().find(|s| s.name == env.name()) {
                        db.slot_retained_bytes = s.retained_bytes;
                        db.slot_active = Some(s.active);
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
        match missing_files(env).await {
            Ok(v) => {
                files.missing = v.iter().map(|(_, n)| n).sum();
                files.missing_by_db = v;
            }
            Err(e) => problems.push(format!("cannot audit the filestore: {}", chain(&e))),
        }
    }
    if files.missing > 0 {
        problems.push(format!("{} referenced file(s) missing here", files.missing));
    }
    let st = SyncState::load(env);
    files.last_sync = st.last_ok;
    files.last_sync_age_seconds = st.last_ok.map(|t| crate::journal::now().saturating_sub(t));
    files.last_error = st.last_error;
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
