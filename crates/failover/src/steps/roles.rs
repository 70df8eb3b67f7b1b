//! Failback, the clusters changing roles: the VPS's follows this one (pg_rewind, or a new
//! clone), this one stops, the VPS's is promoted, this one follows it again, and the failback
//! slot goes.

use std::time::Duration;

use async_trait::async_trait;
use pgrepl::{Cluster, Name, RejoinOptions, StopMode};

use super::{f, is_primary, Run, Step};
use crate::env::{Env, REWIND_USER};
use crate::error::Result;
use crate::plan::{Out, RunOptions};

/// What `pgrepl::rejoin` runs on `target` to follow `opts.upstream`.
fn rejoin_runs(target: &dyn Cluster, opts: &RejoinOptions) -> Vec<Run> {
    vec![
        Run::cmd(&target.stop_spec(StopMode::Fast)),
        Run::cmd_when(
            &target.start_spec(),
            "it crashed: recovered as a standby first",
        ),
        Run::cmd_when(&target.stop_spec(StopMode::Fast), "it crashed"),
        Run::sql(format!(
            "on the new primary: create slot {}; CHECKPOINT",
            opts.upstream.slot
        )),
        Run::cmd(&pgrepl::rewind_spec(target, opts)),
        Run::cmd_when(
            &pgrepl::basebackup_spec(target, &opts.upstream, true),
            "pg_rewind cannot: a new clone, the old data directory moved aside",
        ),
        Run::file(
            &target.data_dir().join("postgresql.auto.conf"),
            format!(
                "primary_conninfo, primary_slot_name = {}; standby.signal",
                opts.upstream.slot
            ),
        ),
        Run::cmd(&target.start_spec()),
    ]
}

fn rejoin_options(upstream: pgrepl::Upstream) -> Result<RejoinOptions> {
    Ok(RejoinOptions {
        upstream,
        rewind_user: Name::new("role", REWIND_USER).map_err(f("role"))?,
        clone_if_needed: true,
    })
}

pub(super) fn runs_or_note(r: Result<Vec<Run>>) -> Vec<Run> {
    r.unwrap_or_else(|e| vec![Run::note(e.to_string())])
}

/// The VPS's cluster follows this one (pg_rewind, or a new clone when it cannot).
pub struct RejoinVps;

#[async_trait]
impl Step for RejoinVps {
    fn id(&self) -> &'static str {
        "rejoin-vps"
    }
    fn title(&self) -> &'static str {
        "make the VPS cluster a standby of this one"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        runs_or_note(
            env.upstream_backup()
                .and_then(rejoin_options)
                .map(|o| rejoin_runs(env.vps_cluster.as_ref(), &o)),
        )
    }
    fn check(&self) -> &'static str {
        "the VPS streams from here"
    }
    fn hint(&self) -> &'static str {
        "the old data directory is moved aside, never deleted; see the VPS's cluster log"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        super::streams_from(env.vps_cluster.as_ref(), env.upstream_backup()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let o = pgrepl::rejoin(
            env.vps_cluster.as_ref(),
            &env.standby_sql("postgres"),
            &rejoin_options(env.upstream_backup()?)?,
            &mut |_| {},
        )
        .await
        .map_err(f("rejoining the VPS's cluster"))?;
        out.line(&format!("    {o}"));
        Ok(())
    }
}

/// This cluster stops (a fast shutdown sends its last WAL to the VPS).
pub struct StopStandby;

#[async_trait]
impl Step for StopStandby {
    fn id(&self) -> &'static str {
        "stop-backup-cluster"
    }
    fn title(&self) -> &'static str {
        "stop this cluster (its last WAL goes to the VPS)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::cmd(&env.standby.stop_spec(StopMode::Fast))]
    }
    fn check(&self) -> &'static str {
        "it does not run"
    }
    fn hint(&self) -> &'static str {
        "see its log"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(!env
            .standby
            .is_running()
            .await
            .map_err(f("asking whether the standby runs"))?)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        env.standby
            .stop(StopMode::Fast)
            .await
            .map_err(f("stopping this cluster"))
    }
}

/// The VPS's cluster becomes the primary again.
pub struct PromoteVps;

#[async_trait]
impl Step for PromoteVps {
    fn id(&self) -> &'static str {
        "promote-vps"
    }
    fn title(&self) -> &'static str {
        "promote the VPS cluster"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::sql(format!(
            "SELECT pg_promote() on {}; txid_current(); CHECKPOINT",
            env.vps_cluster.label()
        ))]
    }
    fn check(&self) -> &'static str {
        "it is not in recovery"
    }
    fn hint(&self) -> &'static str {
        "read the VPS's cluster log"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(is_primary(&env.vps_psql("postgres")).await.unwrap_or(false))
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let o = pgrepl::promote(&env.vps_psql("postgres"), Duration::from_secs(60))
            .await
            .map_err(f("promoting the VPS's cluster"))?;
        out.line(&format!("    {o}"));
        Ok(())
    }
}

/// The VPS's cluster starts at boot again: `start.conf` back to what it was before the fence
/// held it down.
pub struct VpsAutostart;

#[async_trait]
impl Step for VpsAutostart {
    fn id(&self) -> &'static str {
        "vps-autostart"
    }
    fn title(&self) -> &'static str {
        "let the VPS's cluster start at boot again (undo the fence)"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        match env.vps_cluster.start_conf() {
            Some(p) => vec![Run::file(
                &p,
                "the mode it had before the fence (auto), our note removed",
            )],
            None => vec![Run::note("nothing: this cluster has no start.conf")],
        }
    }
    fn check(&self) -> &'static str {
        "no fence record is left"
    }
    fn hint(&self) -> &'static str {
        "set start.conf on the VPS back to auto by hand"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(crate::vps::FenceRecord::load(env).is_none())
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        crate::vps::release_vps(env).await
    }
}

/// This cluster follows the VPS again, through its slot.
pub struct RejoinBackup;

#[async_trait]
impl Step for RejoinBackup {
    fn id(&self) -> &'static str {
        "rejoin-backup"
    }
    fn title(&self) -> &'static str {
        "make this cluster a standby of the VPS again"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        runs_or_note(
            env.upstream_vps()
                .and_then(rejoin_options)
                .map(|o| rejoin_runs(env.standby.as_ref(), &o)),
        )
    }
    fn check(&self) -> &'static str {
        "it streams from the VPS through slot NAME"
    }
    fn hint(&self) -> &'static str {
        "the old data directory is moved aside, never deleted"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        super::streams_from(env.standby.as_ref(), env.upstream_vps()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let o = pgrepl::rejoin(
            env.standby.as_ref(),
            &env.vps_psql("postgres"),
            &rejoin_options(env.upstream_vps()?)?,
            &mut |_| {},
        )
        .await
        .map_err(f("making this cluster a standby of the VPS"))?;
        out.line(&format!("    {o}"));
        Ok(())
    }
}

/// The failback slot goes on both sides (a forgotten slot keeps WAL until the disk is full).
pub struct DropStaleSlots;

async fn has_slot(db: &dyn pgrepl::Sql, slot: &str) -> Result<bool> {
    Ok(pgrepl::list_slots(db)
        .await
        .map_err(f("listing slots"))?
        .iter()
        .any(|s| s.name == slot))
}

#[async_trait]
impl Step for DropStaleSlots {
    fn id(&self) -> &'static str {
        "drop-stale-slots"
    }
    fn title(&self) -> &'static str {
        "drop the failback slot on both sides"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::sql(format!(
            "SELECT pg_drop_replication_slot('{}') where it exists (VPS, and here)",
            env.failback_slot()
        ))]
    }
    fn check(&self) -> &'static str {
        "no such slot"
    }
    fn hint(&self) -> &'static str {
        "drop it by hand; a forgotten slot keeps WAL until the disk is full"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        let slot = env.failback_slot();
        Ok(!has_slot(&env.vps_psql("postgres"), &slot).await?
            && !has_slot(&env.standby_sql("postgres"), &slot).await?)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let slot = Name::new("slot", &env.failback_slot()).map_err(f("slot"))?;
        for (db, place) in [
            (&env.vps_psql("postgres") as &dyn pgrepl::Sql, "on the VPS"),
            (&env.standby_sql("postgres"), "here"),
        ] {
            if pgrepl::slot::drop_slot(db, &slot)
                .await
                .map_err(f(format!("dropping the slot {place}")))?
            {
                out.line(&format!("    dropped slot {slot} {place}"));
            }
        }
        Ok(())
    }
}
