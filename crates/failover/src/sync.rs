//! The file syncs of one instance: the filestore passes of `filesync::watch` over the
//! standby's Odoo databases, and the addon sources mirrored every 12 hours. `odoo-standby
//! sync NAME` runs one pass; `--watch` runs one every few seconds (what the sync service
//! does). Paused while a failover holds the instance (the state folder's `syncs.paused`), so
//! the copies stay as they were when the VPS was lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filesync::watch::{Standby, Watch};
use filesync::Vps;
use pgrepl::Cluster;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{chain, FailoverError, Result};

/// A cluster's databases through `psql` as its OS user (the standby here, or the VPS's over
/// SSH): how the sync and the database discovery read them.
pub struct ClusterDbs(pub Arc<dyn Cluster>);

#[async_trait]
impl Standby for ClusterDbs {
    async fn database(&self, db: &str) -> filesync::Result<Arc<dyn pgrepl::Sql>> {
        Ok(Arc::new(self.0.psql(db)))
    }
}

/// What the last passes did, kept in the state folder's `sync.json` for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncState {
    /// When the last pass completed without error (seconds since the epoch).
    pub last_ok: Option<u64>,
    /// Files it fetched.
    pub last_fetched: usize,
    /// Referenced files the VPS did not have, at the last pass.
    pub missing_on_vps: usize,
    /// The last error, if the last pass failed (with its causes).
    pub last_error: Option<String>,
    /// When the sources were last mirrored.
    pub sources_at: Option<u64>,
}

impl SyncState {
    /// Reads the state (default when none yet).
    pub fn load(env: &Env) -> Self {
        std::fs::read_to_string(env.state.sync_state())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, env: &Env) -> Result<()> {
        let path = env.state.sync_state();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| FailoverError::failed("sync state", e))?;
        let write = || -> std::io::Result<()> {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            FailoverError::failed(format!("writing {}", env.state.sync_state().display()), e)
        })
    }
}

/// What a watch keeps between passes.
#[derive(Default)]
pub struct Passes {
    watch: Option<Watch>,
}

const SOURCES_EVERY: u64 = 12 * 3600;

/// One pass: every database's filestore, the sources when due. `Ok(None)` when paused,
/// else the number of files fetched.
pub async fn sync_pass(env: &Env, passes: &mut Passes) -> Result<Option<usize>> {
    if env.state.paused().exists() {
        return Ok(None);
    }
    let mut state = SyncState::load(env);
    let result = pass(env, passes, &mut state).await;
    match &result {
        Ok(n) => {
            state.last_ok = Some(crate::journal::now());
            state.last_fetched = *n;
            state.last_error = None;
        }
        Err(e) => state.last_error = Some(chain(e)),
    }
    state.save(env)?;
    result.map(Some)
}

async fn pass(env: &Env, passes: &mut Passes, state: &mut SyncState) -> Result<usize> {
    let watch = passes.watch.get_or_insert_with(|| {
        let session = Arc::new(filesync::Session::new(env.vps_files.clone()));
        let vps = Vps::new(
            env.vps.clone(),
            env.inst.data_dir.join("filestore"),
            Some(session),
        );
        let mut w = Watch::new(
            vps,
            env.layout.data_dir().join("filestore"),
            env.state.indexes().to_owned(),
        );
        w.only = env.inst.databases.clone();
        w
    });
    let reports = watch
        .pass(&ClusterDbs(env.standby.clone()))
        .await
        .map_err(|e| FailoverError::failed("syncing the filestore", e));
    let reports = match reports {
        Ok(r) => r,
        Err(e) => {
            watch.reset_connections();
            return Err(e);
        }
    };
    for r in &reports {
        if r.fetched > 0 {
            println!(
                "{}: {}: {} file(s) fetched ({} KiB) in {} ms",
                env.name(),
                r.db,
                r.fetched,
                r.bytes / 1024,
                r.fetch_ms
            );
        }
    }
    state.missing_on_vps = reports.iter().map(|r| r.missing_on_vps.len()).sum();
    let now = crate::journal::now();
    if state
        .sources_at
        .is_none_or(|t| now.saturating_sub(t) >= SOURCES_EVERY)
    {
        env.mirror_sources().await?;
        state.sources_at = Some(now);
    }
    Ok(reports.iter().map(|r| r.fetched).sum())
}

/// Runs a pass every `interval` until the process is stopped (`filesync::watch::every`: a
/// failure is logged with its causes, then with backoff, and the recovery is logged).
pub async fn watch(env: &Env, interval: Duration) -> Result<()> {
    let mut passes = Passes::default();
    filesync::watch::every(interval, env.name(), async || {
        sync_pass(env, &mut passes).await.map(drop)
    })
    .await;
    Ok(())
}
