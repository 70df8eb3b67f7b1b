//! Switchover: production moves to this server for planned work on the VPS, without losing a
//! row or a file. Odoo stops on the VPS, the last files come over, the VPS's cluster stops
//! cleanly, and the standby is promoted only when it replayed the VPS's shutdown checkpoint
//! (`pgrepl::switchover`); the VPS's cluster then follows this one as it is (no pg_rewind).
//! `failback` gives production back the same way (Odoo here stops before the VPS catches up
//! and is promoted).
//!
//! Decisions:
//! - Until the promotion, every step that fails puts the VPS back as it was (its cluster and
//!   Odoo started, the syncs running) and ends the run ([`FailoverError::PutBack`]): a planned
//!   switch must never leave production down. Nothing is left to resume.
//! - The standby gets [`SWITCH_WAIT`] to replay the shutdown checkpoint. A standby that is
//!   further behind than that (replay paused, a slow disk) is not waited for.
//! - Files written here after the switch flow back to the VPS while it follows this server:
//!   the sync service (paused for fetching) sends them every `sync::FILES_BACK_EVERY` (only
//!   names the VPS lacks, each checked, nothing there replaced), and failback's
//!   copy-files-back sends whatever is left. A VPS stopped for its work is left as it is: its
//!   standby.signal makes it start as a standby that follows this server
//!   (`vps::guard_after_failover` does not hold it down).

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::failback::{PrepareBackupPrimary, STOP_VPS_ODOO};
use super::failover::{Nginx, Promote, Smoke, StartOdoo, StopSyncs, WatchVps};
use super::files::{CheckHttp, OdooFiles};
use super::{f, is_primary, Run, Step};
use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// How long the standby has to replay the VPS's shutdown checkpoint.
pub const SWITCH_WAIT: Duration = Duration::from_secs(10);
/// The largest replay lag (bytes behind the VPS) the preflight accepts.
pub const MAX_LAG_BYTES: u64 = 16 << 20;
/// How long the last file pass may take to bring every referenced file.
const LAST_FILES_WITHIN: Duration = Duration::from_secs(60);

/// The steps of switchover, in order: everything that can be refused is refused before
/// Odoo stops on the VPS; the VPS's cluster stops only after the last file came; nothing is
/// promoted before the switch point is checked.
pub fn switchover() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(Ready),
        Box::new(PrepareBackupPrimary),
        Box::new(STOP_VPS_ODOO),
        Box::new(StopSyncs),
        Box::new(LastFiles),
        Box::new(StopVpsCluster),
        Box::new(SwitchPoint),
        Box::new(Promote),
        Box::new(OdooFiles),
        Box::new(Smoke),
        Box::new(StartOdoo),
        Box::new(CheckHttp),
        Box::new(Nginx),
        Box::new(FollowHere),
        Box::new(WatchVps),
    ]
}

/// Puts the VPS back as it was before the switchover (its cluster, its Odoo, the syncs)
/// after `why`, and says so. Only while nothing is promoted here: after that the VPS must not
/// start as a primary, and `why` is returned as it is.
async fn put_back(env: &Env, why: FailoverError, out: &Out) -> FailoverError {
    if env.standby.is_running().await.unwrap_or(false)
        && is_primary(&env.standby_sql("postgres"))
            .await
            .unwrap_or(true)
    {
        return why;
    }
    let why = crate::error::chain(&why);
    out.line(&format!("    {why}: putting the VPS back as it was"));
    let mut failed = Vec::new();
    if !env.vps_cluster.is_running().await.unwrap_or(false) {
        if let Err(e) = env.vps_cluster.start().await {
            failed.push(format!("starting {}: {e}", env.vps_cluster.label()));
        }
    }
    if let Err(e) = env.there.start(&env.vps_odoo_service()).await {
        failed.push(format!(
            "starting Odoo on the VPS: {}",
            crate::error::chain(&e)
        ));
    }
    let _ = std::fs::remove_file(env.state.paused());
    if let Err(e) = env.here.start(&env.sync_service()).await {
        failed.push(format!("starting the sync: {}", crate::error::chain(&e)));
    }
    if failed.is_empty() {
        out.line(
            "    the VPS's PostgreSQL and Odoo run again, the syncs too; nothing was promoted",
        );
        FailoverError::PutBack(format!(
            "{why}. Production is back on the VPS as it was (its PostgreSQL and Odoo started again, the syncs running); nothing was promoted"
        ))
    } else {
        FailoverError::Refused(format!(
            "{why}. Putting the VPS back FAILED ({}): start them by hand; nothing was promoted here",
            failed.join("; ")
        ))
    }
}

/// Runs `act`; on failure, puts the VPS back.
async fn or_put_back(env: &Env, out: &Out, act: Result<()>) -> Result<()> {
    match act {
        Ok(()) => Ok(()),
        Err(e) => Err(put_back(env, e, out).await),
    }
}

/// The VPS's current WAL position.
async fn vps_lsn(env: &Env) -> Result<pgrepl::Lsn> {
    pgrepl::query_lsn(&env.vps_psql("postgres"), "SELECT pg_current_wal_lsn()")
        .await
        .map_err(f("reading the VPS's WAL position"))?
        .ok_or_else(|| FailoverError::Refused("the VPS gave no WAL position".into()))
}

/// What the standby replayed.
async fn replayed(env: &Env) -> Option<pgrepl::Lsn> {
    pgrepl::query_lsn(
        &env.standby_sql("postgres"),
        "SELECT pg_last_wal_replay_lsn()",
    )
    .await
    .ok()
    .flatten()
}

/// Missing referenced files, `db: n` each, empty when none.
async fn missing(env: &Env) -> Result<Vec<String>> {
    Ok(crate::status::missing_files(env)
        .await?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(db, n)| format!("{db}: {n}"))
        .collect())
}

/// The instance is healthy enough to switch: the standby streams from the VPS and is close
/// behind, no referenced file is missing here; then the operator's yes.
pub struct Ready;

#[async_trait]
impl Step for Ready {
    fn id(&self) -> &'static str {
        "switch-ready"
    }
    fn title(&self) -> &'static str {
        "check that the standby streams, is close behind and has every file; ask"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::note(format!(
                "{} streams from the VPS through slot {}",
                env.standby.label(),
                env.name()
            )),
            Run::sql(format!(
                "pg_current_wal_lsn() on the VPS - pg_last_wal_replay_lsn() here < {} MiB",
                MAX_LAG_BYTES >> 20
            )),
            Run::note("referenced files missing here: none (waits up to 30 s for the sync)"),
        ]
    }
    fn check(&self) -> &'static str {
        "checked on every run"
    }
    fn hint(&self) -> &'static str {
        "`odoo-standby status NAME` shows what is wrong; nothing was changed"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        if !super::streams_from(env.standby.as_ref(), env.upstream_vps()).await? {
            return Err(FailoverError::Refused(format!(
                "{} does not stream from the VPS: a switchover needs a healthy standby. `odoo-standby status {}` says why",
                env.standby.label(),
                env.name()
            )));
        }
        let at = vps_lsn(env).await?;
        let lag = replayed(env).await.map(|r| at.0.saturating_sub(r.0));
        match lag {
            Some(l) if l < MAX_LAG_BYTES => out.line(&format!(
                "    the standby streams from the VPS, {} KiB behind",
                l / 1024
            )),
            _ => {
                return Err(FailoverError::Refused(format!(
                    "the standby is {} behind the VPS (at most {} MiB for a switchover): wait until it catches up",
                    lag.map(|l| format!("{} MiB", l >> 20))
                        .unwrap_or_else(|| "an unknown amount".into()),
                    MAX_LAG_BYTES >> 20
                )))
            }
        }
        let start = Instant::now();
        loop {
            let m = missing(env).await?;
            if m.is_empty() {
                out.line("    every referenced file is here");
                break;
            }
            if start.elapsed() >= Duration::from_secs(30) {
                return Err(FailoverError::Refused(format!(
                    "referenced files are missing here ({}) and the sync did not bring them in 30 s: `odoo-standby status {}` and the sync's log say why",
                    m.join(", "),
                    env.name()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        super::confirmed(
            opts,
            out,
            &format!(
                "Switch {} over to this server? Odoo on the VPS stops for a few seconds",
                env.name()
            ),
            "not confirmed; nothing was changed",
        )
    }
}

/// With Odoo stopped on the VPS: the standby replays all the VPS wrote, and file passes run
/// until every file it references is here.
pub struct LastFiles;

#[async_trait]
impl Step for LastFiles {
    fn id(&self) -> &'static str {
        "last-files"
    }
    fn title(&self) -> &'static str {
        "bring the last files (passes until nothing referenced is missing)"
    }
    fn runs(&self, _env: &Env) -> Vec<Run> {
        vec![
            Run::sql(format!(
                "wait until pg_last_wal_replay_lsn() here reaches the VPS's pg_current_wal_lsn() (at most {} s; else the VPS is put back)",
                SWITCH_WAIT.as_secs()
            )),
            Run::note(format!(
                "a filestore pass, again until no referenced file is missing (at most {} s); else the VPS is put back",
                LAST_FILES_WITHIN.as_secs()
            )),
        ]
    }
    fn check(&self) -> &'static str {
        "no referenced file is missing here"
    }
    fn hint(&self) -> &'static str {
        "the VPS was put back; the sync's log says which file could not come"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let act = async {
            let at = vps_lsn(env).await?;
            let start = Instant::now();
            loop {
                let r = replayed(env).await;
                if r.is_some_and(|r| r >= at) {
                    break;
                }
                if start.elapsed() >= SWITCH_WAIT {
                    return Err(FailoverError::Refused(format!(
                        "the standby is BEHIND: the VPS is at {at}, the standby replayed up to {} and did not catch up in {} s (is its replay paused? SELECT pg_is_wal_replay_paused() here)",
                        r.map(|l| l.to_string()).unwrap_or_else(|| "nothing".into()),
                        SWITCH_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut fetched = 0;
            loop {
                fetched += crate::sync::pass_now(env).await?;
                let m = missing(env).await?;
                if m.is_empty() {
                    out.line(&format!(
                        "    replayed up to {at}; {fetched} file(s) fetched in the last passes, none missing"
                    ));
                    return Ok(());
                }
                if start.elapsed() >= LAST_FILES_WITHIN {
                    return Err(FailoverError::Refused(format!(
                        "referenced files are still missing here after {} s ({})",
                        LAST_FILES_WITHIN.as_secs(),
                        m.join(", ")
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let r = act.await;
        or_put_back(env, out, r).await
    }
}

/// The VPS's cluster stops cleanly (CHECKPOINT, fast shutdown): its WAL senders send the
/// shutdown checkpoint before it ends.
pub struct StopVpsCluster;

#[async_trait]
impl Step for StopVpsCluster {
    fn id(&self) -> &'static str {
        "stop-vps-cluster"
    }
    fn title(&self) -> &'static str {
        "stop the VPS's PostgreSQL cleanly (CHECKPOINT, fast shutdown)"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::sql(format!("CHECKPOINT on {}", env.vps_cluster.label())),
            Run::cmd(&env.vps_cluster.stop_spec(pgrepl::StopMode::Fast)),
        ]
    }
    fn check(&self) -> &'static str {
        "it does not run and pg_controldata says \"shut down\""
    }
    fn hint(&self) -> &'static str {
        "the VPS was put back; see its cluster log"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let r = pgrepl::switchover::stop_clean(env.vps_cluster.as_ref(), &env.vps_psql("postgres"))
            .await
            .map_err(f("stopping the VPS's cluster cleanly"));
        or_put_back(env, out, r).await
    }
}

/// The standby replayed the VPS's shutdown checkpoint; else the VPS is put back.
pub struct SwitchPoint;

#[async_trait]
impl Step for SwitchPoint {
    fn id(&self) -> &'static str {
        "switch-point"
    }
    fn title(&self) -> &'static str {
        "check that the standby replayed up to the VPS's shutdown checkpoint"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::note(format!(
                "pg_controldata -D {} on the VPS: state \"shut down\", latest checkpoint location",
                env.vps_cluster.data_dir().display()
            )),
            Run::sql(format!(
                "pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn() here, for up to {} s: the replay must pass the checkpoint",
                SWITCH_WAIT.as_secs()
            )),
            Run::note("behind: the VPS's cluster and Odoo started again as they were, the syncs too; nothing promoted"),
        ]
    }
    fn check(&self) -> &'static str {
        "checked on every run and resume until this cluster is promoted"
    }
    fn hint(&self) -> &'static str {
        "the VPS was put back; see why the standby is behind (`odoo-standby status NAME`, pg_is_wal_replay_paused() here)"
    }
    fn every_run(&self) -> bool {
        true
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        // Once promoted, the switch point was checked (nothing promotes without it).
        Ok(env.standby.is_running().await.unwrap_or(false)
            && is_primary(&env.standby_sql("postgres")).await?)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let r = async {
            if env
                .vps_cluster
                .is_running()
                .await
                .map_err(f("asking whether the VPS's cluster runs"))?
            {
                return Err(FailoverError::Refused(format!(
                    "{} on the VPS runs again: it was started by someone else after the clean stop",
                    env.vps_cluster.label()
                )));
            }
            let p = pgrepl::switchover::switch_point(
                env.vps_cluster.as_ref(),
                &env.standby_sql("postgres"),
                SWITCH_WAIT,
            )
            .await
            .map_err(f("checking the switch point"))?;
            out.line(&format!("    {p}"));
            if p.reached() {
                Ok(())
            } else {
                Err(FailoverError::Refused(format!(
                    "the standby did not replay the VPS's shutdown checkpoint {} within {} s (replayed up to {})",
                    p.shutdown_checkpoint,
                    SWITCH_WAIT.as_secs(),
                    p.replayed.map(|l| l.to_string()).unwrap_or_else(|| "nothing".into())
                )))
            }
        }
        .await;
        or_put_back(env, out, r).await
    }
}

/// The VPS's cluster, stopped at the switch point, follows this one as it is: a slot here,
/// the standby settings there, started, streaming. No pg_rewind.
pub struct FollowHere;

#[async_trait]
impl Step for FollowHere {
    fn id(&self) -> &'static str {
        "follow-here"
    }
    fn title(&self) -> &'static str {
        "make the VPS's cluster a standby of this one as it is (no pg_rewind)"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let slot = env.failback_slot();
        vec![
            Run::sql(format!("here: create slot {slot}")),
            Run::file(
                &env.vps_cluster.data_dir().join("postgresql.auto.conf"),
                format!("primary_conninfo (this server, the replication role, its passfile), primary_slot_name = {slot}; standby.signal"),
            ),
            Run::cmd(&env.vps_cluster.start_spec()),
        ]
    }
    fn check(&self) -> &'static str {
        "the VPS streams from here"
    }
    fn hint(&self) -> &'static str {
        "production runs here; see the VPS's cluster log, then resume"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        super::streams_from(env.vps_cluster.as_ref(), env.upstream_backup()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        pgrepl::switchover::follow_new_primary(
            env.vps_cluster.as_ref(),
            &env.standby_sql("postgres"),
            &env.upstream_backup()?,
        )
        .await
        .map_err(f("making the VPS's cluster follow this one"))?;
        out.line("    the VPS's cluster streams from here, as it stopped: nothing rewound");
        Ok(())
    }
}
