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

/// The standby's databases as the sync reads them: `psql` as the backup's `os_user`, logged
/// in as the role of the instance's odoo.conf (`db_user`, through the peer map `odoo-login`
/// writes), so that the sync service needs no PostgreSQL superuser and can run as `os_user`.
pub struct OdooDbs {
    host: Arc<dyn host::Host>,
    os_user: String,
    role: String,
    socket: String,
    port: u16,
    bindir: std::path::PathBuf,
}

impl OdooDbs {
    /// How the sync of `env` reaches the standby.
    pub async fn of(env: &Env) -> Result<Self> {
        let os_user = env.cfg.backup.os_user.clone();
        let role = env
            .instance_conf()
            .await?
            .db_user()
            .map(str::to_owned)
            .unwrap_or_else(|| os_user.clone());
        Ok(Self {
            host: env.local.clone(),
            os_user,
            role,
            socket: env.standby.socket_dir(),
            port: env.standby.port(),
            bindir: env.standby.bindir(),
        })
    }
}

#[async_trait]
impl Standby for OdooDbs {
    async fn database(&self, db: &str) -> filesync::Result<Arc<dyn pgrepl::Sql>> {
        Ok(Arc::new(
            pgrepl::Psql::new(
                self.host.clone(),
                self.os_user.clone(),
                self.socket.clone(),
                self.port,
                db,
            )
            .with_bindir(self.bindir.clone())
            .with_user(self.role.clone()),
        ))
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
    /// Files here found vanished or damaged (another size, or content that does not match
    /// the name) and fetched again from the VPS, since this state was made.
    #[serde(default)]
    pub repaired: usize,
    /// The last of them (at most 50), `<db>/<name>`.
    #[serde(default)]
    pub repaired_last: Vec<String>,
    /// Found damaged or vanished and not fetched again: the VPS does not have them.
    #[serde(default)]
    pub unrepaired: Vec<String>,
    /// Found damaged here by a copy-back, to be checked and fetched again by the next pass.
    #[serde(default)]
    pub damaged: Vec<String>,
    /// When every referenced file's presence and size were last checked.
    #[serde(default)]
    pub sizes_checked_at: Option<u64>,
    /// When a whole SHA-1 round over the files here last ended.
    #[serde(default)]
    pub hash_round_at: Option<u64>,
    /// Failed passes since this state was made (the metrics' `sync_errors_total`).
    #[serde(default)]
    pub errors_total: u64,
    /// While switched over: when the files written here last went back to the VPS.
    #[serde(default)]
    pub back_at: Option<u64>,
    /// Files sent back to the VPS while switched over, since this state was made.
    #[serde(default)]
    pub back_sent: usize,
    /// The last files-back pass's error, if it failed (the VPS away for its planned work).
    #[serde(default)]
    pub back_error: Option<String>,
}

impl SyncState {
    /// Reads the state (default when none yet).
    pub fn load(env: &Env) -> Self {
        std::fs::read_to_string(env.state.sync_state())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Adds `names` (`<db>/<name>`) to the files the next pass checks first and fetches
    /// again (a copy-back found them damaged here).
    pub fn note_damaged(env: &Env, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut st = Self::load(env);
        for n in names {
            if !st.damaged.contains(n) {
                st.damaged.push(n.clone());
            }
        }
        st.save(env)
    }

    fn save(&self, env: &Env) -> Result<()> {
        let path = env.state.sync_state();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| FailoverError::failed("sync state", e))?;
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::MetadataExt;
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)?;
            // Written by root (a pass by hand, a failback): it stays the service's.
            if let Some(dir) = path.parent().and_then(|p| std::fs::metadata(p).ok()) {
                let _ = std::os::unix::fs::chown(&path, Some(dir.uid()), Some(dir.gid()));
            }
            Ok(())
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
    /// The VPS's replication figures for the metrics, and when they were read.
    vps_seen: Option<(std::time::Instant, VpsFigures)>,
    /// A metrics file that could not be written was logged once.
    metrics_warned: bool,
    /// A look at the VPS that could not be kept was logged once.
    seen_warned: bool,
    /// Passes fail since then; the last `sync-failing` event was sent then.
    failing: Option<(std::time::Instant, std::time::Instant)>,
    /// When the VPS was last looked at while a failover holds the instance.
    vps_looked_at: Option<std::time::Instant>,
    /// When the files written here last went back to the VPS (switched over).
    back_tried_at: Option<std::time::Instant>,
}

/// Lag and slot, as the VPS reports them.
#[derive(Clone, Copy, Debug, Default)]
struct VpsFigures {
    lag_bytes: Option<i64>,
    lag_seconds: Option<f64>,
    slot_retained_bytes: Option<i64>,
}

const SOURCES_EVERY: u64 = 12 * 3600;

/// How often, while switched over, the files written here go back to the VPS.
pub const FILES_BACK_EVERY: Duration = Duration::from_secs(30);

/// How this instance's data_dir goes back to the VPS (rsync over the instance's SSH login).
pub(crate) fn copy_back(env: &Env) -> filesync::copyback::CopyBack {
    filesync::copyback::CopyBack {
        target: env.ssh.clone(),
        local_data_dir: env.layout.data_dir(),
        remote_data_dir: env.inst.data_dir.clone(),
    }
}

/// The files written here go back to the VPS: the rest of data_dir, then each database's
/// filestore, only what the VPS lacks and each file checked against its name first
/// (`filesync::copyback`: nothing there is ever replaced). The copies found damaged here are
/// noted for the next fetch pass ([`SyncState::note_damaged`]). Failback's copy-files-back
/// and, while switched over, the sync service every [`FILES_BACK_EVERY`].
pub async fn copy_files_back(env: &Env) -> Result<Vec<filesync::copyback::CopyBackReport>> {
    let err = |e| FailoverError::failed("rsync", e);
    let cb = copy_back(env);
    cb.rest(env.local.as_ref()).await.map_err(err)?;
    let mut reports = Vec::new();
    for db in cb.databases().map_err(err)? {
        let mut r = cb.filestore(env.local.as_ref(), &db).await.map_err(err)?;
        r.db = db;
        reports.push(r);
    }
    let damaged: Vec<String> = reports
        .iter()
        .flat_map(|r| r.damaged.iter().map(move |n| format!("{}/{n}", r.db)))
        .collect();
    SyncState::note_damaged(env, &damaged)?;
    Ok(reports)
}

/// While switched over ([`crate::vps::switched_over`]; the syncs are paused then): every
/// [`FILES_BACK_EVERY`], what Odoo wrote here goes back to the VPS ([`copy_files_back`]), so
/// that the VPS has every file of production before the failback and if this server is lost
/// meanwhile. A VPS away for its planned work fails the pass: logged once, kept in the state
/// for status (`back_error`), tried again at the next turn.
async fn files_back_when_due(env: &Env, passes: &mut Passes) {
    if passes
        .back_tried_at
        .is_some_and(|t| t.elapsed() < FILES_BACK_EVERY)
    {
        return;
    }
    // Whether it is switched over is read once a turn too, not on every paused pass.
    passes.back_tried_at = Some(std::time::Instant::now());
    if !crate::vps::switched_over(env) {
        return;
    }
    let result = copy_files_back(env).await;
    let mut state = SyncState::load(env);
    match result {
        Ok(reports) => {
            let sent: usize = reports.iter().map(|r| r.sent.len()).sum();
            if sent > 0 {
                tracing::info!(
                    "{}: switched over: {sent} file(s) written here sent back to the VPS",
                    env.name()
                );
            }
            if state.back_error.take().is_some() {
                tracing::info!("{}: the files go back to the VPS again", env.name());
            }
            state.back_at = Some(crate::journal::now());
            state.back_sent += sent;
        }
        Err(e) => {
            let e = chain(&e);
            if state.back_error.is_none() {
                tracing::warn!(
                    "{}: switched over: the files written here cannot go back to the VPS now (tried again every {} s): {e}",
                    env.name(),
                    FILES_BACK_EVERY.as_secs()
                );
            }
            state.back_error = Some(e);
        }
    }
    if let Err(e) = state.save(env) {
        tracing::warn!("{}: {}", env.name(), chain(&e));
    }
}

/// One pass: every database's filestore, the sources when due. `Ok(None)` when paused,
/// else the number of files fetched.
pub async fn sync_pass(env: &Env, passes: &mut Passes) -> Result<Option<usize>> {
    let clock = std::time::Instant::now();
    if env.state.paused().exists() {
        files_back_when_due(env, passes).await;
        let state = SyncState::load(env);
        write_metrics(env, passes, &state, false, clock.elapsed()).await;
        watch_failed_over_vps(env, passes).await;
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
        Err(e) => {
            state.last_error = Some(chain(e));
            state.errors_total += 1;
        }
    }
    // The metrics first: a pass that status sees is in them.
    look_at_vps(env, passes).await;
    write_metrics(env, passes, &state, result.is_ok(), clock.elapsed()).await;
    state.save(env)?;
    sync_events(env, passes, &state).await;
    result.map(Some)
}

/// One pass now, also while the syncs are paused: a switchover's last pass, run with the
/// sync service stopped (so that no two passes write the same folder at once).
pub(crate) async fn pass_now(env: &Env) -> Result<usize> {
    let mut passes = Passes::default();
    let mut state = SyncState::load(env);
    let n = pass(env, &mut passes, &mut state).await?;
    state.last_ok = Some(crate::journal::now());
    state.last_fetched = n;
    state.last_error = None;
    state.save(env)?;
    Ok(n)
}

/// `sync-failing` at the first failed pass and every 10 minutes while they fail,
/// `sync-recovered` after.
async fn sync_events(env: &Env, passes: &mut Passes, state: &SyncState) {
    use crate::events::{emit, sync_log};
    let now = std::time::Instant::now();
    match (&state.last_error, passes.failing) {
        (Some(e), None) => {
            passes.failing = Some((now, now));
            emit(
                env,
                sync_log(env),
                "sync-failing",
                "warning",
                &format!("a sync pass failed: {e}"),
            )
            .await;
        }
        (Some(e), Some((since, last))) if last.elapsed() >= Duration::from_secs(600) => {
            passes.failing = Some((since, now));
            let msg = format!(
                "sync passes keep failing (for {} s): {e}",
                since.elapsed().as_secs()
            );
            emit(env, sync_log(env), "sync-failing", "warning", &msg).await;
        }
        (None, Some((since, _))) => {
            passes.failing = None;
            let msg = format!(
                "sync passes work again (they failed for {} s)",
                since.elapsed().as_secs()
            );
            emit(env, sync_log(env), "sync-recovered", "info", &msg).await;
        }
        _ => {}
    }
}

/// The cluster here as the sync service sees it (as `os_user`, through the Odoo role, no
/// superuser): `standby`, `primary`, or `down` when it does not answer in 10 s.
async fn role_here(env: &Env) -> &'static str {
    let ask = async {
        let db = OdooDbs::of(env)
            .await
            .ok()?
            .database("postgres")
            .await
            .ok()?;
        crate::env::rows(db.as_ref(), "SELECT pg_is_in_recovery()")
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(10), ask).await {
        Ok(Some(r)) if r == ["t"] => "standby",
        Ok(Some(r)) if r == ["f"] => "primary",
        _ => "down",
    }
}

/// While a failover holds the instance: every `vps_watch_seconds`, a VPS that came back as a
/// primary (or stopped without being held down) is held down now, and said (the sync's log,
/// and a `problem` event). Nothing is done while an operation runs (a failback).
async fn watch_failed_over_vps(env: &Env, passes: &mut Passes) {
    let every = Duration::from_secs(env.cfg.backup.vps_watch_seconds);
    if every.is_zero() || passes.vps_looked_at.is_some_and(|t| t.elapsed() < every) {
        return;
    }
    passes.vps_looked_at = Some(std::time::Instant::now());
    // Only once this server took production over (an aborted failover that never promoted
    // leaves the VPS the primary it should be).
    if role_here(env).await != "primary" {
        return;
    }
    if let Some(p) = crate::vps::guard_after_failover(env).await {
        tracing::error!("{}: {}: {} ({})", env.name(), p.code, p.message, p.fix);
        let sev = format!("{:?}", p.severity).to_lowercase();
        let msg = format!("{}: {}", p.code, p.message);
        crate::events::emit(env, crate::events::sync_log(env), "problem", &sev, &msg).await;
    }
}

/// While this is a standby: every [`crate::seen::LOOK_EVERY`], the VPS's replication and
/// Odoo unit, kept for `status` ([`crate::seen`]) and the metrics. A look that cannot be kept
/// is logged once.
async fn look_at_vps(env: &Env, passes: &mut Passes) {
    let due = passes
        .vps_seen
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() >= crate::seen::LOOK_EVERY);
    // The role is asked only when a look is due: not a query on every pass.
    if !due || role_here(env).await != "standby" {
        return;
    }
    let seen = crate::seen::ask(env).await;
    let mut f = VpsFigures::default();
    if let crate::seen::VpsAnswer::Status {
        status: pgrepl::Status::Primary(p),
    } = &seen.answer
    {
        if let Some(r) = p.replicas.iter().find(|r| r.application_name == env.name()) {
            f.lag_bytes = r.lag_bytes;
            f.lag_seconds = r.lag_seconds;
        }
        f.slot_retained_bytes = p
            .slots
            .iter()
            .find(|s| s.name == env.name())
            .and_then(|s| s.retained_bytes);
    }
    passes.vps_seen = Some((std::time::Instant::now(), f));
    match crate::seen::save(env, &seen) {
        Ok(()) => passes.seen_warned = false,
        Err(e) if !passes.seen_warned => {
            passes.seen_warned = true;
            tracing::warn!(
                "{}: cannot keep what the VPS answered in {}: {e} (status asks the VPS itself meanwhile)",
                env.name(),
                env.state.vps_seen().display()
            );
        }
        Err(_) => {}
    }
}

/// Rewrites the instance's metrics file, when a metrics folder is configured and exists.
/// Never fails the pass: a file that cannot be written is logged once.
async fn write_metrics(
    env: &Env,
    passes: &mut Passes,
    state: &SyncState,
    up: bool,
    took: Duration,
) {
    let Some(dir) = env.cfg.backup.metrics_dir.as_ref().filter(|d| d.is_dir()) else {
        return;
    };
    let role = role_here(env).await;
    let f = match role {
        "standby" => passes.vps_seen.map(|(_, f)| f).unwrap_or_default(),
        _ => VpsFigures::default(),
    };
    let sample = crate::metrics::Sample {
        name: env.name().to_owned(),
        up,
        role: role.to_owned(),
        lag_bytes: f.lag_bytes,
        lag_seconds: f.lag_seconds,
        slot_retained_bytes: f.slot_retained_bytes,
        files_missing: state.missing_on_vps,
        files_damaged: state.unrepaired.len() + state.damaged.len(),
        last_success: state.last_ok,
        pass_seconds: took.as_secs_f64(),
        errors_total: state.errors_total,
        repaired_total: state.repaired as u64,
    };
    let file = crate::metrics::file_name(env.name());
    match crate::metrics::write(dir, &file, &crate::metrics::render(&sample)) {
        Ok(_) => passes.metrics_warned = false,
        Err(e) if !passes.metrics_warned => {
            passes.metrics_warned = true;
            tracing::warn!(
                "{}: cannot write the metrics file {}: {e} (let {} write that folder, or set metrics_dir)",
                env.name(),
                dir.join(&file).display(),
                env.cfg.backup.os_user
            );
        }
        Err(_) => {}
    }
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
            env.state.indexes(),
        );
        w.only = env.inst.databases.clone();
        w.verify = Some(filesync::verify::VerifyOptions {
            sizes_every: Duration::from_secs(env.cfg.backup.verify_sizes_minutes * 60),
            hash_bytes_per_sec: env.cfg.backup.verify_hash_mb_per_s << 20,
        });
        w
    });
    watch.check_first = state.damaged.clone();
    let reports = watch
        .pass(&OdooDbs::of(env).await?)
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
            tracing::info!(
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
    note_verified(env, state, &reports);
    // With systemd the refresh is a timer of its own (`odoo-standby-refresh@NAME.timer`);
    // the sandbox has none, so its passes do it.
    let now = crate::journal::now();
    if env.cfg.backup.services == crate::config::ServiceKind::Supervised
        && state
            .sources_at
            .is_none_or(|t| now.saturating_sub(t) >= SOURCES_EVERY)
    {
        refresh_now(env).await?;
        state.sources_at = Some(now);
    }
    Ok(reports.iter().map(|r| r.fetched).sum())
}

/// What a refresh did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refreshed {
    /// When it ended (seconds since the epoch).
    pub at: u64,
    /// Packages in the VPS's `pip freeze`.
    pub packages: usize,
    /// requirement.txt was rewritten (it differed).
    pub requirements_changed: bool,
}

/// The 12-hourly refresh (runbook 3.5): the addon sources mirrored from the VPS, and the
/// VPS's `pip freeze` copied into the instance folder's `requirement.txt` (the file the
/// smoke test's fix installs from). `Ok(None)` while a failover holds the instance (the
/// copies stay as they were when the VPS was lost). Kept in `<state>/NAME/sync/refresh.json`.
pub async fn refresh(env: &Env) -> Result<Option<Refreshed>> {
    if env.state.paused().exists() {
        return Ok(None);
    }
    let r = refresh_now(env).await?;
    let path = env.state.sync_dir().join("refresh.json");
    let text =
        serde_json::to_string_pretty(&r).map_err(|e| FailoverError::failed("refresh state", e))?;
    env.local
        .write_file(
            &path,
            text.as_bytes(),
            &host::Ownership::owned(0o600, env.cfg.backup.os_user.clone()),
        )
        .await
        .map_err(|e| FailoverError::failed(format!("writing {}", path.display()), e))?;
    Ok(Some(r))
}

async fn refresh_now(env: &Env) -> Result<Refreshed> {
    env.mirror_sources().await?;
    let (packages, requirements_changed) = copy_requirements(env).await?;
    tracing::info!(
        "{}: sources mirrored; pip freeze: {packages} package(s){}",
        env.name(),
        if requirements_changed {
            ", requirement.txt rewritten"
        } else {
            ", requirement.txt unchanged"
        }
    );
    Ok(Refreshed {
        at: crate::journal::now(),
        packages,
        requirements_changed,
    })
}

/// What stands in for `pip freeze` where the VPS's interpreter has no pip (Debian's python3
/// without python3-pip): the installed distributions, `Name==version`, sorted as pip sorts
/// them, without pip's own tools.
const FREEZE_WITHOUT_PIP: &str = r#"
import importlib.metadata as m
seen = {}
for d in m.distributions():
    n = d.metadata['Name']
    if n and n.lower() not in seen and n.lower() not in ('pip', 'setuptools', 'wheel', 'distribute'):
        seen[n.lower()] = n + '==' + d.version
print('\n'.join(v for _, v in sorted(seen.items())))
"#;

/// The VPS's `pip freeze` (through its Odoo interpreter `vps_python`; without pip, the same
/// list from `importlib.metadata`), run as the SSH login user.
pub(crate) fn freeze_spec(env: &Env) -> host::CommandSpec {
    host::CommandSpec::new("sh")
        .arg("-c")
        .arg("\"$1\" -m pip freeze 2>/dev/null || \"$1\" -c \"$2\"")
        .arg("sh")
        .arg(env.inst.vps_python.display().to_string())
        .arg(FREEZE_WITHOUT_PIP)
        .asks()
        .timeout(Duration::from_secs(120))
}

/// Copies the VPS's `pip freeze` into `requirement.txt` here (as the backup's os_user),
/// when it differs. Returns the number of packages and whether the file was rewritten. An
/// empty freeze is refused: the file is kept as it was.
pub async fn copy_requirements(env: &Env) -> Result<(usize, bool)> {
    let py = env.inst.vps_python.display().to_string();
    let out = env
        .vps
        .run(&freeze_spec(env))
        .await
        .map_err(|e| FailoverError::failed(format!("pip freeze with {py} on the VPS"), e))?
        .stdout_text();
    let packages = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    if packages == 0 {
        return Err(FailoverError::Refused(format!(
            "pip freeze with {py} on the VPS listed no package: requirement.txt kept as it was; set the instance's vps_python to Odoo's interpreter there"
        )));
    }
    let path = env.layout.requirements();
    let mut text = out.trim_end().to_owned();
    text.push('\n');
    if crate::steps::same_file(env, &path, &text).await? {
        return Ok((packages, false));
    }
    env.local
        .write_file(
            &path,
            text.as_bytes(),
            &host::Ownership::owned(0o644, env.cfg.backup.os_user.clone()),
        )
        .await
        .map_err(|e| FailoverError::failed(format!("writing {}", path.display()), e))?;
    Ok((packages, true))
}

/// Records what the verification of a pass found: fetched again, or not (the VPS lacks it).
fn note_verified(env: &Env, state: &mut SyncState, reports: &[filesync::PassReport]) {
    let now = crate::journal::now();
    state.damaged.clear();
    for r in reports {
        let v = &r.verified;
        if v.sizes_checked {
            state.sizes_checked_at = Some(now);
        }
        if v.round_done {
            state.hash_round_at = Some(now);
        }
        for (n, how) in v
            .vanished
            .iter()
            .map(|n| (n, "vanished"))
            .chain(v.damaged.iter().map(|n| (n, "damaged")))
        {
            let full = format!("{}/{n}", r.db);
            if r.missing_on_vps.contains(n) {
                tracing::error!(
                    "{}: {full} {how} here and the VPS does not have it",
                    env.name()
                );
                if !state.unrepaired.contains(&full) {
                    state.unrepaired.push(full);
                }
            } else {
                tracing::warn!("{}: {full} {how} here: fetched again", env.name());
                state.unrepaired.retain(|u| u != &full);
                state.repaired += 1;
                state.repaired_last.push(full);
            }
        }
    }
    let keep = state.repaired_last.len().saturating_sub(50);
    state.repaired_last.drain(..keep);
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
