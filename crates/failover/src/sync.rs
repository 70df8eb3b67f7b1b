//! The file syncs of one instance: the filestore pass driven by the standby database
//! (crate `filesync`), and the addon sources mirrored every 12 hours. `odoo-standby sync NAME`
//! runs one pass; `--watch` runs one every few seconds (what the sync service does). Paused
//! while a failover holds the instance (see [`crate::paused_file`]), so the copies stay as
//! they were when the VPS was lost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use filesync::{Index, SyncOptions, Tracker, Vps};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{FailoverError, Result};

/// What the last passes did, kept in `<state_dir>/<name>/sync.json` for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncState {
    /// When the last pass completed without error (seconds since the epoch).
    pub last_ok: Option<u64>,
    /// Files it fetched.
    pub last_fetched: usize,
    /// Referenced files the VPS did not have, at the last pass.
    pub missing_on_vps: usize,
    /// The last error, if the last pass failed.
    pub last_error: Option<String>,
    /// When the sources were last mirrored.
    pub sources_at: Option<u64>,
}

impl SyncState {
    fn path(env: &Env) -> PathBuf {
        env.cfg.backup.state_dir.join(env.name()).join("sync.json")
    }

    /// Reads the state (default when none yet).
    pub fn load(env: &Env) -> Self {
        std::fs::read_to_string(Self::path(env))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, env: &Env) -> Result<()> {
        let path = Self::path(env);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| FailoverError::failed(format!("creating {}", p.display()), e))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| FailoverError::failed("sync state", e))?;
        std::fs::write(&tmp, text)
            .map_err(|e| FailoverError::failed(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| FailoverError::failed(format!("writing {}", path.display()), e))
    }
}

/// What a watch keeps between passes, per database.
#[derive(Default)]
pub struct Passes {
    dbs: BTreeMap<String, (Index, Tracker)>,
    /// The database list and when it was read: a pass every 2 s need not list them again.
    listed: Option<(std::time::Instant, Vec<String>)>,
    /// The fetch helper kept on the VPS between passes.
    session: Option<Arc<filesync::Session>>,
}

/// How often a watch lists the databases again (new clients' databases get picked up).
const LIST_EVERY: Duration = Duration::from_secs(600);

const SOURCES_EVERY: u64 = 12 * 3600;

/// One pass: every database's filestore, the sources when due. `Ok(None)` when paused,
/// else the number of files fetched.
pub async fn sync_pass(env: &Env, passes: &mut Passes) -> Result<Option<usize>> {
    if crate::paused_file(env).exists() {
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
        Err(e) => state.last_error = Some(e.to_string()),
    }
    state.save(env)?;
    result.map(Some)
}

async fn pass(env: &Env, passes: &mut Passes, state: &mut SyncState) -> Result<usize> {
    let session = passes
        .session
        .get_or_insert_with(|| Arc::new(filesync::Session::new(env.vps_files.clone())))
        .clone();
    let vps = Vps {
        host: env.vps.clone(),
        filestore: env.inst.data_dir.join("filestore"),
        session: Some(session),
    };
    let local_fs = env.layout.data_dir().join("filestore");
    let mut fetched = 0;
    let mut missing = 0;
    let dbs = match &passes.listed {
        Some((at, dbs)) if at.elapsed() < LIST_EVERY => dbs.clone(),
        _ => {
            let dbs = env.databases().await?;
            passes.listed = Some((std::time::Instant::now(), dbs.clone()));
            dbs
        }
    };
    for db in dbs {
        let (index, tracker) = match passes.dbs.entry(db.clone()) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let file = env
                    .cfg
                    .backup
                    .state_dir
                    .join(env.name())
                    .join(format!("{db}.index"));
                let index = Index::load_or_build(&file, &local_fs.join(&db))
                    .map_err(|e| FailoverError::failed(format!("the index of {db}"), e))?;
                v.insert((index, Tracker::default()))
            }
        };
        let r = filesync::sync_db_tracked(
            &env.standby_sql(&db),
            &db,
            &vps,
            &local_fs,
            index,
            &SyncOptions::default(),
            tracker,
        )
        .await
        .map_err(|e| FailoverError::failed(format!("syncing the filestore of {db}"), e))?;
        if r.fetched > 0 {
            tracing::info!(
                "{}: {db}: {} file(s) fetched ({} KiB)",
                env.name(),
                r.fetched,
                r.bytes / 1024
            );
        }
        fetched += r.fetched;
        missing += r.missing_on_vps.len();
    }
    state.missing_on_vps = missing;
    let now = crate::journal::now();
    if state
        .sources_at
        .is_none_or(|t| now.saturating_sub(t) >= SOURCES_EVERY)
    {
        env.mirror_sources().await?;
        state.sources_at = Some(now);
    }
    Ok(fetched)
}

/// Runs a pass every `interval` until the process is stopped. A failed pass is logged and
/// retried at the next tick (the VPS may be briefly unreachable).
pub async fn watch(env: &Env, interval: Duration) -> Result<()> {
    let mut passes = Passes::default();
    loop {
        match sync_pass(env, &mut passes).await {
            Ok(Some(n)) if n > 0 => println!("{}: {n} file(s) fetched", env.name()),
            Ok(_) => {}
            Err(e) => {
                eprintln!("{}: pass failed: {e}", env.name());
                passes = Passes::default();
            }
        }
        tokio::time::sleep(interval).await;
    }
}
