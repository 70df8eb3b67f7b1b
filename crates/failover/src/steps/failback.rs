//! Failback (runbook section 5): the VPS follows this server, gets the files written here,
//! catches up, is promoted; this server becomes its standby again.

use std::time::Duration;

use async_trait::async_trait;

use super::odoo_setup::StartSyncs;
use super::preflight::prepare;
use super::roles::{
    runs_or_note, DropStaleSlots, PromoteVps, RejoinBackup, RejoinVps, StopStandby, VpsAutostart,
};
use super::{f, Run, Step};
use crate::env::{Env, REPLICA_USER, REWIND_USER};
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// The steps of failback, in order: what the VPS wrote after the split is kept and confirmed
/// before anything can discard it, the VPS follows this server before anything stops here,
/// the files go back before the VPS is promoted, and this server follows again last.
pub fn failback() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(STOP_VPS_ODOO),
        Box::new(super::split::VpsWrites),
        Box::new(PrepareBackupPrimary),
        Box::new(RejoinVps),
        Box::new(STOP_ODOO),
        Box::new(CopyFilesBack),
        Box::new(CatchUp),
        Box::new(StopStandby),
        Box::new(PromoteVps),
        Box::new(VpsAutostart),
        Box::new(RejoinBackup),
        Box::new(DropStaleSlots),
        Box::new(StartSyncs),
        Box::new(START_VPS_ODOO),
    ]
}

/// Starts or stops one Odoo: this server's promoted one, or the VPS's own.
pub struct OdooService {
    id: &'static str,
    title: &'static str,
    on_vps: bool,
    start: bool,
}

/// Stops the VPS's Odoo (its users must not write there while the VPS follows this server).
pub const STOP_VPS_ODOO: OdooService = OdooService {
    id: "stop-vps-odoo",
    title: "stop Odoo on the VPS",
    on_vps: true,
    start: false,
};
/// Stops the promoted Odoo here (production moves back).
pub const STOP_ODOO: OdooService = OdooService {
    id: "stop-odoo",
    title: "stop and disable Odoo here",
    on_vps: false,
    start: false,
};
/// Starts the VPS's Odoo again.
pub const START_VPS_ODOO: OdooService = OdooService {
    id: "start-vps-odoo",
    title: "start Odoo on the VPS",
    on_vps: true,
    start: true,
};

impl OdooService {
    fn parts<'a>(&self, env: &'a Env) -> (&'a dyn crate::Supervisor, crate::Service) {
        if self.on_vps {
            (env.there.as_ref(), env.vps_odoo_service())
        } else {
            (env.here.as_ref(), env.odoo_service())
        }
    }
}

#[async_trait]
impl Step for OdooService {
    fn id(&self) -> &'static str {
        self.id
    }
    fn title(&self) -> &'static str {
        self.title
    }
    fn on_vps(&self) -> bool {
        self.on_vps
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let (sup, svc) = self.parts(env);
        let specs = if self.start {
            sup.start_specs(&svc)
        } else {
            sup.stop_specs(&svc)
        };
        Run::cmds(&specs, self.title)
    }
    fn check(&self) -> &'static str {
        if self.start {
            "it runs"
        } else {
            "it does not run"
        }
    }
    fn hint(&self) -> &'static str {
        if self.on_vps {
            "do it by hand on the VPS, then resume"
        } else {
            "do it by hand, then resume"
        }
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        let (sup, svc) = self.parts(env);
        Ok(sup.is_active(&svc).await? == self.start)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let (sup, svc) = self.parts(env);
        if self.start {
            sup.start(&svc).await
        } else {
            sup.stop(&svc).await
        }
    }
}

/// This cluster as a primary the VPS can follow: pg_hba, listening here, the VPS's .pgpass.
pub struct PrepareBackupPrimary;

#[async_trait]
impl Step for PrepareBackupPrimary {
    fn id(&self) -> &'static str {
        "prepare-backup"
    }
    fn title(&self) -> &'static str {
        "make this cluster a primary the VPS can follow"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let when = "it does not listen on backup.address yet (Odoo here reconnects)";
        vec![
            Run::note(format!(
                "pg_hba.conf of {}: {REPLICA_USER} and {REWIND_USER} from {}",
                env.standby.label(),
                env.vps_pg.0
            )),
            Run::file(
                &env.inst.vps_pgpass,
                format!(
                    "on the VPS: {}:{}:replication:{REPLICA_USER}:*** and :postgres:{REWIND_USER}:***",
                    env.cfg.backup.address, env.inst.standby_port
                ),
            ),
        ]
        .into_iter()
        .chain(super::restart_runs(env.standby.as_ref(), when))
        .collect()
    }
    fn check(&self) -> &'static str {
        super::REAPPLIES
    }
    fn hint(&self) -> &'static str {
        super::HBA_HINT
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let b = &env.cfg.backup;
        let restart_needed = prepare(
            env,
            env.standby.as_ref(),
            &env.vps_address()?,
            &b.address.to_string(),
            out,
        )
        .await?;
        if !restart_needed.is_empty() {
            // Protect makes the standby listen here already; a cluster cloned by an older
            // version may not: restart it (Odoo here reconnects by itself).
            let why = format!("for {} (Odoo here reconnects)", restart_needed.join(", "));
            super::restart(env.standby.as_ref(), &why, out).await?;
        }
        let secrets = env.require_secrets().await?;
        pgrepl::pgpass::upsert(
            env.vps_cluster.host().as_ref(),
            &env.inst.vps_pgpass,
            &b.pg_os_user,
            &Env::pgpass_entries(&b.address.to_string(), env.inst.standby_port, &secrets),
        )
        .await
        .map_err(f(format!(
            "writing {} on the VPS",
            env.inst.vps_pgpass.display()
        )))
        .map(drop)
    }
}

/// The files written here go back to the VPS, never replacing one it has: only filestore
/// names the VPS lacks travel, each checked against its SHA-1 first; a damaged copy here is
/// reported and kept back (`filesync::copyback`).
pub struct CopyFilesBack;

fn rsync_err(e: filesync::SyncError) -> FailoverError {
    FailoverError::failed("rsync", e)
}

#[async_trait]
impl Step for CopyFilesBack {
    fn id(&self) -> &'static str {
        "copy-files-back"
    }
    fn title(&self) -> &'static str {
        "copy the files this server got back to the VPS (only what it lacks, each checked)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let cb = crate::sync::copy_back(env);
        let mut specs = vec![cb.rest_command()];
        for db in env.planned_databases() {
            specs.push(cb.list_command(&db));
            specs.push(cb.send_command(&db));
        }
        let mut v = runs_or_note(
            specs
                .into_iter()
                .map(|s| s.map(|s| Run::cmd(&s)).map_err(rsync_err))
                .collect(),
        );
        v.insert(
            2.min(v.len()),
            Run::note("each listed name: SHA-1 of the file here = its name, else reported damaged and not sent"),
        );
        v
    }
    fn check(&self) -> &'static str {
        "rsync --ignore-existing sends only what the VPS lacks"
    }
    fn hint(&self) -> &'static str {
        "rsync's error names the file; run again (nothing on the VPS is replaced)"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        for r in crate::sync::copy_files_back(env).await? {
            let db = &r.db;
            out.line(&format!(
                "    {db}: {} file(s) sent ({} KiB), {} other path(s); the VPS's own files left as they are",
                r.sent.len(),
                r.bytes / 1024,
                r.other.len()
            ));
            if !r.damaged.is_empty() {
                out.line(&format!(
                    "    {db}: DAMAGED here, not sent: {} file(s) whose content no longer matches its name (the VPS never had them):",
                    r.damaged.len()
                ));
                for n in &r.damaged {
                    out.line(&format!("      damaged {db}/{n}"));
                }
            }
        }
        Ok(())
    }
}

/// The VPS has replayed everything written here.
pub struct CatchUp;

#[async_trait]
impl Step for CatchUp {
    fn id(&self) -> &'static str {
        "catch-up"
    }
    fn title(&self) -> &'static str {
        "wait until the VPS replayed everything written here"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, _env: &Env) -> Vec<Run> {
        vec![Run::sql("SELECT pg_current_wal_lsn() here; wait for pg_last_wal_replay_lsn() on the VPS to reach it")]
    }
    fn check(&self) -> &'static str {
        "the VPS's replay position reached this server's"
    }
    fn hint(&self) -> &'static str {
        "see pg_stat_replication here and the VPS's cluster log"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let target = pgrepl::query_lsn(&env.standby_sql("postgres"), "SELECT pg_current_wal_lsn()")
            .await
            .map_err(f("reading this cluster's WAL position"))?
            .ok_or_else(|| FailoverError::Refused("this cluster gave no WAL position".into()))?;
        let vps = env.vps_psql("postgres");
        for _ in 0..600 {
            let replayed = pgrepl::query_lsn(&vps, "SELECT pg_last_wal_replay_lsn()")
                .await
                .ok()
                .flatten();
            if replayed.is_some_and(|r| r >= target) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(FailoverError::Refused(format!(
            "the VPS did not replay up to {target} within 120 s"
        )))
    }
}
