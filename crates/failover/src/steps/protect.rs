//! Protect, the backup's side (runbook sections 2 and 3): the standby cluster, the instance
//! folder, the first copy of the files; then the Odoo side (`odoo_setup.rs`).

use async_trait::async_trait;
use host::{CommandSpec, Ownership};

use super::odoo_setup::{OdooConfStep, OdooLogin, OdooUnit, StartSyncs, SyncUnit};
use super::preflight::{Preflight, PreparePrimary, Secrets};
use super::{f, hf, Run, Step};
use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// The steps of protect, in order.
pub fn protect() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(Preflight),
        Box::new(Secrets),
        Box::new(PreparePrimary),
        Box::new(CloneStandby),
        Box::new(Layout),
        Box::new(SeedFiles),
        Box::new(OdooConfStep),
        Box::new(OdooLogin),
        Box::new(OdooUnit),
        Box::new(SyncUnit),
        Box::new(StartSyncs),
    ]
}

/// The standby cluster here, cloned from the VPS, streaming through its slot.
pub struct CloneStandby;

#[async_trait]
impl Step for CloneStandby {
    fn id(&self) -> &'static str {
        "clone-standby"
    }
    fn title(&self) -> &'static str {
        "clone the standby cluster here and stream"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v = vec![
            Run::note(format!(
                "when slot {} on the VPS is lost: only with --reclone (or a yes), stop this cluster and drop the slot, then clone again",
                env.name()
            )),
            Run::cmd_when(
                &env.standby.stop_spec(pgrepl::StopMode::Fast),
                "its slot is lost and --reclone",
            ),
        ];
        if let Some(c) = env.standby.create_spec() {
            v.push(Run::cmd_when(&c, "the cluster does not exist yet"));
        }
        v.push(Run::sql(format!(
            "on the VPS, when this cluster does not run: pg_terminate_backend() of a WAL sender holding slot {} for {} (left by a run of ours that died)",
            env.name(),
            env.cfg.backup.address
        )));
        match env.upstream_vps() {
            Ok(up) => {
                v.push(Run::cmd(&pgrepl::basebackup_spec(
                    env.standby.as_ref(),
                    &up,
                    true,
                )));
                v.push(Run::cmd_when(
                    &pgrepl::basebackup_spec(env.standby.as_ref(), &up, false),
                    "the slot exists already (an earlier attempt made it)",
                ));
            }
            Err(e) => v.push(Run::note(format!("pg_basebackup: {e}"))),
        }
        v.push(Run::file(
            &env.standby.data_dir().join("postgresql.auto.conf"),
            format!(
                "primary_conninfo with passfile={}, primary_slot_name = {}; standby.signal",
                env.cfg.backup.pgpass.display(),
                env.name()
            ),
        ));
        v.push(Run::cmd(&env.standby.start_spec()));
        let when = "the clone listens elsewhere than this server's address";
        v.push(Run::sql(format!(
            "ALTER SYSTEM SET listen_addresses = ..., {} (when {when})",
            env.cfg.backup.address
        )));
        v.extend(super::restart_runs(env.standby.as_ref(), when));
        v
    }
    fn check(&self) -> &'static str {
        "it streams from the VPS through slot NAME"
    }
    fn hint(&self) -> &'static str {
        "an earlier data directory is moved aside, never deleted; see the cluster log"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        super::streams_from(env.standby.as_ref(), env.upstream_vps()).await
    }
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        let b = &env.cfg.backup;
        reclone_if_lost(env, opts, out).await?;
        if let Some(dir) = &b.clusters_dir {
            let own = Ownership::owned(0o700, b.pg_os_user.clone());
            for d in [dir.join(env.name()), dir.join(env.name()).join("sock")] {
                env.local
                    .mkdir_p(&d, &own)
                    .await
                    .map_err(hf(format!("creating {}", d.display())))?;
            }
        }
        env.standby
            .create()
            .await
            .map_err(f("creating the standby cluster"))?;
        // A run of ours that died mid-clone may have left its WAL sender on the VPS holding
        // the slot (the backup went down with it): nothing here streams now, so end it.
        if !env.standby.is_running().await.unwrap_or(false) {
            let slot = pgrepl::Name::new("slot", env.name()).map_err(f("slot"))?;
            if let Some(pid) = pgrepl::slot::end_stale_sender(
                &env.vps_psql("postgres"),
                &slot,
                &b.address.to_string(),
            )
            .await
            .map_err(f("ending a WAL sender left by an earlier run"))?
            {
                out.line(&format!(
                    "    ended the VPS's WAL sender {pid} for slot {slot}: it served an earlier run of ours that is gone"
                ));
            }
        }
        let outcome = pgrepl::clone_standby(env.standby.as_ref(), &env.upstream_vps()?, &mut |p| {
            let pct = (p.done_kb * 100)
                .checked_div(p.total_kb)
                .unwrap_or(0)
                .min(100) as u8;
            out.progress("base backup", p.done_kb * 1024, pct);
        })
        .await
        .map_err(f("cloning the standby"))?;
        out.line(&format!("    {outcome}"));
        standby_listens_here(env, out).await
    }
}

/// Why the instance's slot on the VPS is lost, when it is (the VPS removed WAL the standby
/// still needed: it was stopped or behind for longer than `max_slot_wal_keep_size` allows).
pub(crate) async fn lost_slot(env: &Env) -> Result<Option<String>> {
    let slots = pgrepl::list_slots(&env.vps_psql("postgres"))
        .await
        .map_err(f("listing the VPS's slots"))?;
    Ok(slots
        .into_iter()
        .find(|s| s.name == env.name() && s.wal_status.as_deref() == Some("lost"))
        .map(|s| {
            format!(
                "the slot {} on the VPS is lost (wal_status lost, restart_lsn {}): the VPS removed WAL the standby here still needed, so it can never catch up",
                s.name,
                s.restart_lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
            )
        }))
}

/// A lost slot: with `--reclone` (or a yes on the terminal), the standby stops and the slot
/// goes, so that the clone below makes both again (the old data directory is moved aside).
async fn reclone_if_lost(env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
    let Some(why) = lost_slot(env).await? else {
        return Ok(());
    };
    out.line(&format!("    {why}"));
    let go = opts.reclone
        || out.confirm(&format!(
            "Clone the standby of {} again (its data directory is moved aside, not deleted)?",
            env.name()
        )) == Some(true);
    if !go {
        return Err(FailoverError::Refused(format!(
            "{why}. Clone it again with: odoo-standby protect {} --reclone (the standby's data directory is moved aside, not deleted)",
            env.name()
        )));
    }
    env.standby
        .stop(pgrepl::StopMode::Fast)
        .await
        .map_err(f("stopping the standby before the new clone"))?;
    let slot = pgrepl::Name::new("slot", env.name()).map_err(f("slot"))?;
    pgrepl::slot::drop_slot(&env.vps_psql("postgres"), &slot)
        .await
        .map_err(f("dropping the lost slot on the VPS"))?;
    out.line(&format!(
        "    dropped the lost slot {slot} on the VPS; cloning again"
    ));
    Ok(())
}

/// A fresh clone carries the VPS's `listen_addresses` (ALTER SYSTEM lives in the data
/// directory): the standby gets this server's instead (the VPS's address swapped for
/// `backup.address`), so that at failback the VPS reaches it without a restart of production.
async fn standby_listens_here(env: &Env, out: &Out) -> Result<()> {
    let here = env.standby_sql("postgres");
    let now = pgrepl::query_value(&here, "SHOW listen_addresses")
        .await
        .map_err(f("reading listen_addresses"))?
        .unwrap_or_default();
    let ours = env.cfg.backup.address.to_string();
    let mut list: Vec<String> = now
        .split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && *a != env.vps_pg.0)
        .collect();
    if !list.iter().any(|a| a == "*" || *a == ours) {
        list.push(ours);
    }
    let want = list.join(",");
    if want == now {
        return Ok(());
    }
    pgrepl::execute(
        &here,
        &format!(
            "ALTER SYSTEM SET listen_addresses = {}",
            pgrepl::quote_literal(&want)
        ),
    )
    .await
    .map_err(f("setting listen_addresses on the standby"))?;
    super::restart(
        env.standby.as_ref(),
        &format!("to listen on {want} (it had the VPS's {now})"),
        out,
    )
    .await
}

/// The instance folder: data_dir, sources, the link to the Odoo tree.
pub struct Layout;

#[async_trait]
impl Step for Layout {
    fn id(&self) -> &'static str {
        "layout"
    }
    fn title(&self) -> &'static str {
        "create the instance folder"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::note(format!(
            "mkdir {} (data_dir, sources), ln -s {} {}",
            env.layout.dir().display(),
            env.cfg.backup.odoo_source.display(),
            env.layout.odoo().display()
        ))]
    }
    fn check(&self) -> &'static str {
        "creates only what is missing"
    }
    fn hint(&self) -> &'static str {
        "check backup.root and backup.os_user"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let changes = env
            .layout
            .ensure(env.local.as_ref())
            .await
            .map_err(|e| FailoverError::failed("creating the layout", e))?;
        for c in changes {
            out.line(&format!("    {c}"));
        }
        Ok(())
    }
}

/// The first copy of data_dir and sources.
pub struct SeedFiles;

fn seed_specs(env: &Env) -> Result<Vec<CommandSpec>> {
    let b = &env.cfg.backup;
    let sync = |e| FailoverError::failed("rsync", e);
    Ok(vec![
        filesync::rsync::seed_command(&env.ssh, &env.inst.data_dir, &env.layout.dir())
            .map_err(sync)?,
        filesync::rsync::command(&env.ssh, &env.sources_tree(), false).map_err(sync)?,
        CommandSpec::new("chown")
            .args(["-R", &format!("{0}:{0}", b.os_user), "--"])
            .arg(env.layout.data_dir().display().to_string())
            .arg(env.layout.sources().display().to_string()),
    ])
}

#[async_trait]
impl Step for SeedFiles {
    fn id(&self) -> &'static str {
        "seed-files"
    }
    fn title(&self) -> &'static str {
        "copy data_dir, sources and the VPS's pip freeze from the VPS"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v: Vec<Run> = match seed_specs(env) {
            Ok(specs) => specs.iter().map(Run::cmd).collect(),
            Err(e) => vec![Run::note(e.to_string())],
        };
        v.push(Run::cmd(&crate::sync::freeze_spec(env)));
        v.push(Run::file(
            &env.layout.requirements(),
            "its output, when it differs (owned by the Odoo user)",
        ));
        v
    }
    fn check(&self) -> &'static str {
        "rsync copies only what differs"
    }
    fn hint(&self) -> &'static str {
        "rsync's error names the file; run again, --partial keeps what was copied"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        for (remote, local) in [
            (&env.inst.data_dir, env.layout.data_dir()),
            (&env.inst.sources, env.layout.sources()),
        ] {
            if remote.file_name() != local.file_name() {
                let name = |p: &std::path::Path| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                return Err(FailoverError::Refused(format!(
                    "{} on the VPS would be copied to {}/{}, not {}: this version needs the VPS folder to be named {:?}",
                    remote.display(),
                    env.layout.dir().display(),
                    name(remote),
                    local.display(),
                    name(&local)
                )));
            }
        }
        filesync::rsync::seed(
            env.local.as_ref(),
            &env.ssh,
            &env.inst.data_dir,
            &env.layout.dir(),
            None,
            &mut |bytes, pct| out.progress("data_dir", bytes, pct),
        )
        .await
        .map_err(|e| FailoverError::failed("copying data_dir", e))?;
        env.mirror_sources().await?;
        // The runbook's requirement.txt from the first day (then every 12 h, by the timer).
        let (packages, _) = crate::sync::copy_requirements(env).await?;
        let specs = seed_specs(env)?;
        if let Some(chown) = specs.last() {
            super::run(env.local.as_ref(), chown, "setting the owner of the copies").await?;
        }
        out.line(&format!(
            "    data_dir and sources copied to {}; the VPS's pip freeze ({packages} packages) in {}",
            env.layout.dir().display(),
            env.layout.requirements().display()
        ));
        Ok(())
    }
}
