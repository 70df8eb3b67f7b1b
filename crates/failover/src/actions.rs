//! The steps of the plans: what each shows, how it checks that it is done, how it acts.
//! Every `apply` may run twice (after a crash between acting and journaling) and must end in
//! the same state; the library calls below are idempotent by contract, and each `apply`
//! checks before it changes anything of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use host::{CommandSpec, Ownership};
use odoo_instance::{relocate, BackupTarget, OdooConf};
use pgrepl::{Name, PrepareOptions, RejoinOptions, Sql as _, StopMode};

use crate::env::{Env, REWIND_USER};
use crate::error::{FailoverError, Result};
use crate::plan::{Reporter, RunOptions, Step};

/// One kind of step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Action {
    Preflight,
    Secrets,
    PreparePrimary,
    CloneStandby,
    Layout,
    SeedFiles,
    OdooConf,
    OdooLogin,
    OdooUnit,
    SyncUnit,
    StartSyncs,
    StopSyncs,
    Fence,
    Confirm,
    Promote,
    LostFiles,
    OdooFiles,
    Smoke,
    StartOdoo,
    CheckHttp,
    Nginx,
    StopVpsOdoo,
    PrepareBackupPrimary,
    RejoinVps,
    StopOdoo,
    CopyFilesBack,
    CatchUp,
    StopStandby,
    PromoteVps,
    RejoinBackup,
    DropStaleSlots,
    StartVpsOdoo,
}

fn f(what: impl Into<String>) -> impl FnOnce(pgrepl::PgreplError) -> FailoverError {
    let what = what.into();
    move |e| FailoverError::failed(what, e)
}

fn hf(what: impl Into<String>) -> impl FnOnce(host::HostError) -> FailoverError {
    let what = what.into();
    move |e| FailoverError::failed(what, e)
}

async fn is_primary(db: &dyn pgrepl::Sql) -> Result<bool> {
    Ok(pgrepl::query_value(db, "SELECT pg_is_in_recovery()")
        .await
        .map_err(f("asking whether the server is in recovery"))?
        .as_deref()
        == Some("f"))
}

fn vps_label(env: &Env) -> String {
    format!("VPS {}@{}:{}", env.ssh.user, env.ssh.host, env.ssh.port)
}

fn here_label(env: &Env) -> String {
    format!("backup server {}", env.cfg.backup.address)
}

impl Action {
    /// The step as shown in a plan.
    pub fn step(self, env: &Env) -> Step {
        let (id, description, on_vps, runs, check, hint) = self.describe(env);
        Step {
            id,
            description: description.to_owned(),
            host: if on_vps {
                vps_label(env)
            } else {
                here_label(env)
            },
            runs,
            check: check.to_owned(),
            hint: hint.to_owned(),
            action: self,
        }
    }

    #[allow(clippy::type_complexity)]
    fn describe(
        self,
        env: &Env,
    ) -> (
        &'static str,
        &'static str,
        bool,
        Vec<String>,
        &'static str,
        &'static str,
    ) {
        let name = env.name();
        let b = &env.cfg.backup;
        let (vh, vp) = (&env.vps_pg.0, env.vps_pg.1);
        let standby = env.standby.label();
        match self {
            Self::Preflight => ("preflight", "check SSH, PostgreSQL, versions and disk space", true, vec![
                format!("ssh {}@{} -p {} true (host key checked against {})", env.ssh.user, env.ssh.host, env.ssh.port, env.ssh.known_hosts.display()),
                format!("psql {vh}:{vp}: SELECT rolsuper, server_version_num"),
                format!("du -sb {}; df {}", env.inst.data_dir.display(), b.root.display()),
            ], "never skipped: it only reads", "fix what it names (host key: `filesync ssh-setup`; superuser: `pg` in the config)"),
            Self::Secrets => ("secrets", "replication passwords in the backup's .pgpass", false, vec![
                format!("{}: {vh}:{vp}:replication:replica_user:*** and {vh}:{vp}:postgres:replica_rewind:*** (0600, owner {})", b.pgpass.display(), b.pg_os_user),
            ], "both lines are there", "the file must be 0600 and owned by the PostgreSQL user"),
            Self::PreparePrimary => ("prepare-primary", "prepare the VPS's PostgreSQL as a primary", true, vec![
                "ALTER SYSTEM SET wal_level = replica, wal_log_hints = on, hot_standby = on, max_wal_senders, max_replication_slots, wal_keep_size, max_slot_wal_keep_size".into(),
                format!("pg_hba.conf: host replication replica_user {}/32 scram-sha-256; host all replica_rewind {}/32 scram-sha-256 (checked before reload)", b.address, b.address),
                "CREATE/ALTER ROLE replica_user REPLICATION, replica_rewind (SCRAM verifiers, never plaintext); GRANT EXECUTE on the pg_rewind functions".into(),
                "pg_reload_conf(); restart only with --restart-vps".into(),
            ], "re-applies nothing that is in place", "read the error: the pg_hba change is rolled back if the server rejects it"),
            Self::CloneStandby => ("clone-standby", "clone the standby cluster here and stream", false, vec![
                format!("pg_basebackup -D {} -X stream -c fast -S {name} -C -R -h {vh} -p {vp} -U replica_user (as {})", env.standby.data_dir().display(), b.pg_os_user),
                format!("primary_conninfo with passfile={}, primary_slot_name = {name}", b.pgpass.display()),
                format!("start {standby} on port {}", env.inst.standby_port),
            ], "it streams from the VPS through slot NAME", "an earlier data directory is moved aside, never deleted; see the cluster log"),
            Self::Layout => ("layout", "create the instance folder", false, vec![
                format!("mkdir {} (data_dir, sources), ln -s {} {}", env.layout.dir().display(), b.odoo_source.display(), env.layout.odoo().display()),
            ], "creates only what is missing", "check backup.root and backup.os_user"),
            Self::SeedFiles => ("seed-files", "copy data_dir and sources from the VPS", false, vec![
                format!("rsync -a --partial -e 'ssh ...' {}@{}:{} {}/", env.ssh.user, env.ssh.host, env.inst.data_dir.display(), env.layout.dir().display()),
                format!("rsync -a --partial --delete -e 'ssh ...' {}@{}:{} {}/", env.ssh.user, env.ssh.host, env.inst.sources.display(), env.layout.dir().display()),
                format!("chown -R {0}:{0} {1} {2}", b.os_user, env.layout.data_dir().display(), env.layout.sources().display()),
            ], "rsync copies only what differs", "rsync's error names the file; run again, --partial keeps what was copied"),
            Self::OdooConf => ("odoo-conf", "rewrite odoo.conf for this server", false, vec![
                format!("read {} on the VPS; addons_path, data_dir, db_host, db_port rewritten; write {}", env.inst.odoo_conf.display(), env.layout.conf().display()),
            ], "the file already has that content", "unmapped addons_path entries are listed: add them under sources on the VPS"),
            Self::OdooLogin => ("odoo-login", "let the Odoo user here log in to the standby as the VPS's database role", false, vec![
                format!("pg_ident.conf of {standby}: {} {} ROLE (ROLE: db_user of the rewritten odoo.conf)", pgrepl::hba::LOGIN_MAP, b.os_user),
                format!("pg_hba.conf of {standby}: local all ROLE peer map={}; both checked by the server, then pg_reload_conf()", pgrepl::hba::LOGIN_MAP),
            ], "re-applies nothing that is in place", "the role owns the database on the VPS: keeping it is what lets failback hand the database back unchanged"),
            Self::OdooUnit => ("odoo-unit", "write the Odoo unit (disabled)", false, vec![
                format!("write {} (ExecStart={})", env.layout.unit_file().display(), env.exec_start().join(" ")),
            ], "the file already has that content", "check backup.python and backup.odoo_source"),
            Self::SyncUnit => ("sync-unit", "write the sync unit", false, vec![
                format!("write {} (ExecStart={})", env.layout.dir().join(format!("odoo-standby-sync-{name}.service")).display(), env.sync_service().argv.join(" ")),
            ], "the file already has that content", "check backup.root"),
            Self::StartSyncs => ("start-syncs", "start the file syncs", false,
                env.here.start_shown(&env.sync_service()),
                "the sync service runs", "see its log; `odoo-standby sync NAME` runs one pass by hand"),
            Self::StopSyncs => ("stop-syncs", "stop the file syncs (the copies stay as they are)", false,
                env.here.stop_shown(&env.sync_service()),
                "the sync service does not run", "stop it by hand, then resume"),
            Self::Fence => ("fence", "make sure the VPS's PostgreSQL no longer accepts writes", true, vec![
                format!("ssh {}@{} -p {} true (15 s): can the VPS be reached at all?", env.ssh.user, env.ssh.host, env.ssh.port),
                format!("is {} running; psql on it: SELECT pg_is_in_recovery()", env.vps_cluster.label()),
                format!("with --force only: stop {} over SSH", env.vps_cluster.label()),
            ], "checked on every run and every resume, never skipped", "stop the VPS's PostgreSQL (or pass --force); if the VPS cannot be reached, make sure it is down or cut off, then pass --vps-unreachable"),
            Self::Confirm => ("confirm", "show what is at risk and ask", false, vec![
                "standby: receiver state, replay delay; referenced files missing here".into(),
            ], "asked once per run", "answer, or pass --yes"),
            Self::Promote => ("promote", "promote the standby cluster", false, vec![
                format!("SELECT pg_promote() on {standby}; txid_current(); CHECKPOINT"),
            ], "it is not in recovery", "read the cluster log; a standby that never streamed has nothing to promote"),
            Self::LostFiles => ("lost-files", "report attachment files that never reached this server; drop asset bundles whose files are missing (Odoo rebuilds them)", false, vec![
                format!("per database: SELECT store_fname FROM ir_attachment, each looked up under {}/filestore/DB", env.layout.data_dir().display()),
                "DELETE FROM ir_attachment WHERE store_fname IN (missing) AND res_model = 'ir.ui.view' AND url LIKE '/web/assets/%' (generated bundles only)".into(),
                format!("write {}", lost_path(env).display()),
            ], "runs every time: it reports, and removes only bundles Odoo regenerates", "the lost names are printed and kept in the file above: restore them from a file backup if there is one"),
            Self::OdooFiles => ("odoo-files", "make data_dir Odoo's: owned by the Odoo user and writable by it everywhere", false, vec![
                format!("find {dd} ( ! -user {u} -o ! -group {u} ) -exec chown -h {u}:{u} {{}} +", dd = env.layout.data_dir().display(), u = b.os_user),
                format!("as {}: find {dd}/filestore {dd}/sessions -type d ! -writable (must find nothing)", b.os_user, dd = env.layout.data_dir().display()),
            ], "runs every time: it changes only what is not Odoo's", "real Odoo writing into a folder it cannot write commits the row and loses the file: fix what it names"),
            Self::Smoke => ("smoke", "smoke-test Odoo (fixing roles and ownership)", false, vec![
                format!("{} -d DB --stop-after-init --logfile= (as {})", env.exec_start().join(" "), b.os_user),
                "on a missing role: createuser -s; on objects owned by another role: REASSIGN OWNED".into(),
            ], "the Odoo unit already runs", "the diagnosis lists each failure and its fix; fix, then resume"),
            Self::StartOdoo => ("start-odoo", "install and start Odoo", false,
                env.here.start_shown(&env.odoo_service()),
                "the Odoo unit runs", "journalctl -u odoo_NAME (or its log), then resume"),
            Self::CheckHttp => ("check-http", "check that Odoo serves: the login page answers 200 and an attachment downloads intact", false, vec![
                "GET http://ADDR:PORT/web/login?db=DB until 200 (up to 90 s), ADDR and PORT from odoo.conf".into(),
                "GET /web/content/ID?db=DB of a public attachment whose file is here; SHA-1 of the body = its checksum".into(),
            ], "checked on every run", "journalctl -u odoo_NAME: a taken port leaves Odoo running without HTTP"),
            Self::Nginx => ("nginx", "write the nginx site", false, vec![
                format!("write {}", env.layout.dir().join(format!("nginx_{name}.conf")).display()),
            ], "the file already has that content", "check the instance folder"),
            Self::StopVpsOdoo => ("stop-vps-odoo", "stop Odoo on the VPS", true,
                env.there.stop_shown(&env.vps_odoo_service()),
                "it does not run", "stop it by hand on the VPS, then resume"),
            Self::PrepareBackupPrimary => ("prepare-backup", "make this cluster a primary the VPS can follow", false, vec![
                format!("pg_hba.conf of {standby}: replica_user and replica_rewind from {vh}"),
                format!("{} on the VPS: {}:{}:replication:replica_user:*** and :postgres:replica_rewind:***", env.inst.vps_pgpass.display(), b.address, env.inst.standby_port),
            ], "re-applies nothing that is in place", "read the error: the pg_hba change is rolled back if the server rejects it"),
            Self::RejoinVps => ("rejoin-vps", "make the VPS cluster a standby of this one", true, vec![
                format!("stop {}; pg_rewind --source-server='host={} port={} user=replica_rewind' (or a new clone when it cannot)", env.vps_cluster.label(), b.address, env.inst.standby_port),
                format!("standby.signal, primary_conninfo, primary_slot_name = {}; start; wait until it streams", env.failback_slot()),
            ], "the VPS streams from here", "the old data directory is moved aside, never deleted; see the VPS's cluster log"),
            Self::StopOdoo => ("stop-odoo", "stop and disable Odoo here", false,
                env.here.stop_shown(&env.odoo_service()),
                "it does not run", "stop it by hand, then resume"),
            Self::CopyFilesBack => ("copy-files-back", "copy the files this server got back to the VPS", false, vec![
                format!("rsync -a --partial -e 'ssh ...' {}/ {}@{}:{}/ (no --delete: content-addressed files only ever add)", env.layout.data_dir().display(), env.ssh.user, env.ssh.host, env.inst.data_dir.display()),
            ], "rsync copies only what differs", "rsync's error names the file; run again"),
            Self::CatchUp => ("catch-up", "wait until the VPS replayed everything written here", true, vec![
                "SELECT pg_current_wal_lsn() here; wait for pg_last_wal_replay_lsn() on the VPS to reach it".into(),
            ], "the VPS's replay position reached this server's", "see pg_stat_replication here and the VPS's cluster log"),
            Self::StopStandby => ("stop-backup-cluster", "stop this cluster (its last WAL goes to the VPS)", false, vec![
                format!("stop {standby} (fast)"),
            ], "it does not run", "see its log"),
            Self::PromoteVps => ("promote-vps", "promote the VPS cluster", true, vec![
                format!("SELECT pg_promote() on {vh}:{vp}; txid_current(); CHECKPOINT"),
            ], "it is not in recovery", "read the VPS's cluster log"),
            Self::RejoinBackup => ("rejoin-backup", "make this cluster a standby of the VPS again", false, vec![
                format!("pg_rewind from {vh}:{vp} when needed (or a new clone); standby.signal; primary_slot_name = {name}; start; wait until it streams"),
            ], "it streams from the VPS through slot NAME", "the old data directory is moved aside, never deleted"),
            Self::DropStaleSlots => ("drop-stale-slots", "drop the failback slot on both sides", false, vec![
                format!("SELECT pg_drop_replication_slot('{}') where it exists (VPS, and here)", env.failback_slot()),
            ], "no such slot", "drop it by hand; a forgotten slot keeps WAL until the disk is full"),
            Self::StartVpsOdoo => ("start-vps-odoo", "start Odoo on the VPS", true,
                env.there.start_shown(&env.vps_odoo_service()),
                "it runs", "start it by hand on the VPS"),
        }
    }

    /// Whether the step runs again on a resume although the journal says it was done: a
    /// fence holds only if it is checked right before what it protects.
    pub fn every_run(self) -> bool {
        matches!(self, Self::Fence)
    }

    /// Whether the step's effect is already there (then it is skipped).
    pub async fn is_done(self, env: &Env) -> Result<bool> {
        match self {
            Self::Preflight | Self::PreparePrimary | Self::Layout | Self::SeedFiles => Ok(false),
            Self::Confirm
            | Self::CopyFilesBack
            | Self::CatchUp
            | Self::PrepareBackupPrimary
            | Self::OdooLogin => Ok(false),
            Self::Secrets => Ok(env.secrets().await?.is_some()),
            Self::CloneStandby => Ok(env.standby.is_running().await.unwrap_or(false)
                && pgrepl::is_streaming_from(env.standby.as_ref(), &env.upstream_vps()?)
                    .await
                    .unwrap_or(false)),
            Self::OdooConf => same_file(env, &env.layout.conf(), &odoo_conf(env).await?).await,
            Self::OdooUnit => same_file(env, &env.layout.unit_file(), &odoo_unit(env)).await,
            Self::SyncUnit => same_file(env, &sync_unit_path(env), &sync_unit(env)).await,
            Self::Nginx => same_file(env, &nginx_path(env), &nginx_site(env).await?).await,
            Self::StartSyncs => env.here.is_active(&env.sync_service()).await,
            Self::StopSyncs => {
                Ok(!env.here.is_active(&env.sync_service()).await? && paused_file(env).exists())
            }
            Self::StartOdoo | Self::Smoke => env.here.is_active(&env.odoo_service()).await,
            Self::StopOdoo => Ok(!env.here.is_active(&env.odoo_service()).await?),
            Self::Fence | Self::LostFiles | Self::OdooFiles | Self::CheckHttp => Ok(false),
            Self::Promote => Ok(env.standby.is_running().await.unwrap_or(false)
                && is_primary(&env.standby_sql("postgres")).await?),
            Self::StopVpsOdoo => Ok(!env.there.is_active(&env.vps_odoo_service()).await?),
            Self::StartVpsOdoo => env.there.is_active(&env.vps_odoo_service()).await,
            Self::RejoinVps => Ok(env.vps_cluster.is_running().await.unwrap_or(false)
                && pgrepl::is_streaming_from(env.vps_cluster.as_ref(), &env.upstream_backup()?)
                    .await
                    .unwrap_or(false)),
            Self::StopStandby => Ok(!env
                .standby
                .is_running()
                .await
                .map_err(f("asking whether the standby runs"))?),
            Self::PromoteVps => Ok(is_primary(&env.vps_psql("postgres")).await.unwrap_or(false)),
            Self::RejoinBackup => Ok(env.standby.is_running().await.unwrap_or(false)
                && pgrepl::is_streaming_from(env.standby.as_ref(), &env.upstream_vps()?)
                    .await
                    .unwrap_or(false)),
            Self::DropStaleSlots => {
                let slot = env.failback_slot();
                let vps = env.vps_psql("postgres");
                Ok(!has_slot(&vps, &slot).await?
                    && !has_slot(&env.standby_sql("postgres"), &slot).await?)
            }
        }
    }

    /// Does the step.
    pub async fn apply(self, env: &Env, opts: &RunOptions, out: &dyn Reporter) -> Result<()> {
        let b = &env.cfg.backup;
        match self {
            Self::Preflight => preflight(env, out).await,
            Self::Secrets => {
                // Reached only when a line is missing: both passwords are (re)generated, and
                // prepare-primary sets them on the VPS's roles next.
                let (h, p) = (&env.vps_pg.0, env.vps_pg.1);
                let s = match env.secrets().await? {
                    Some(s) => s,
                    None => (pgrepl::Secret::generate(), pgrepl::Secret::generate()),
                };
                pgrepl::pgpass::upsert(
                    env.local.as_ref(),
                    &b.pgpass,
                    &b.pg_os_user,
                    &Env::pgpass_entries(h, p, &s),
                )
                .await
                .map_err(f(format!("writing {}", b.pgpass.display())))?;
                Ok(())
            }
            Self::PreparePrimary => {
                let secrets = env.require_secrets().await?;
                let admin = env.vps_psql("postgres");
                let mut opts_pg =
                    PrepareOptions::new(vec![b.address.to_string()], secrets.0, secrets.1)
                        .map_err(f("replication options"))?;
                opts_pg.listen_addresses = listen_for(&admin, &env.vps_pg.0).await?;
                let report =
                    pgrepl::prepare_primary(&admin, env.vps_cluster.host().as_ref(), &opts_pg)
                        .await
                        .map_err(f("preparing the VPS's PostgreSQL"))?;
                for c in &report.changes {
                    out.line(&format!("    {c}"));
                }
                if !report.restart_needed.is_empty() {
                    if opts.restart_vps {
                        out.line(&format!(
                            "    restarting {} for {}",
                            env.vps_cluster.label(),
                            report.restart_needed.join(", ")
                        ));
                        env.vps_cluster
                            .stop(StopMode::Fast)
                            .await
                            .map_err(f("stopping the VPS's PostgreSQL"))?;
                        env.vps_cluster
                            .start()
                            .await
                            .map_err(f("starting the VPS's PostgreSQL"))?;
                    } else {
                        out.line(&format!(
                            "    WARNING: {} take effect only after a restart of the VPS's PostgreSQL; until then pg_rewind cannot work and a failback needs a full clone. Restart it at a quiet time (or run protect with --restart-vps).",
                            report.restart_needed.join(", ")
                        ));
                    }
                }
                Ok(())
            }
            Self::CloneStandby => {
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
                let mut last = 0u8;
                let outcome =
                    pgrepl::clone_standby(env.standby.as_ref(), &env.upstream_vps()?, &mut |p| {
                        let pct = (p.done_kb * 100)
                            .checked_div(p.total_kb)
                            .unwrap_or(0)
                            .min(100) as u8;
                        if pct >= last.saturating_add(25) {
                            last = pct;
                            tracing::info!("base backup {pct}%");
                        }
                    })
                    .await
                    .map_err(f("cloning the standby"))?;
                out.line(&format!("    {outcome:?}"));
                standby_listens_here(env, out).await
            }
            Self::Layout => {
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
            Self::SeedFiles => seed(env, out).await,
            Self::OdooConf => {
                let text = odoo_conf(env).await?;
                write_ours(env, &env.layout.conf(), &text, 0o640, &b.os_user).await
            }
            Self::OdooLogin => odoo_login(env, out).await,
            Self::OdooUnit => {
                write_ours(env, &env.layout.unit_file(), &odoo_unit(env), 0o644, "root").await
            }
            Self::SyncUnit => {
                write_ours(env, &sync_unit_path(env), &sync_unit(env), 0o644, "root").await
            }
            Self::StartSyncs => {
                let p = paused_file(env);
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| {
                        FailoverError::failed(format!("removing {}", p.display()), e)
                    })?;
                }
                env.here.start(&env.sync_service()).await
            }
            Self::StopSyncs => {
                let p = paused_file(env);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        FailoverError::failed(format!("creating {}", parent.display()), e)
                    })?;
                }
                std::fs::write(&p, "paused by failover: `odoo-standby sync` does nothing until failback re-enables it\n")
                    .map_err(|e| FailoverError::failed(format!("writing {}", p.display()), e))?;
                env.here.stop(&env.sync_service()).await
            }
            Self::Fence => fence(env, opts, out).await,
            Self::Confirm => confirm(env, opts, out).await,
            Self::Promote => {
                let o = pgrepl::promote(&env.standby_sql("postgres"), Duration::from_secs(60))
                    .await
                    .map_err(f("promoting the standby"))?;
                out.line(&format!("    {o:?}"));
                Ok(())
            }
            Self::LostFiles => lost_files(env, out).await,
            Self::OdooFiles => odoo_files(env, out).await,
            Self::Smoke => smoke(env, out).await,
            Self::StartOdoo => env.here.start(&env.odoo_service()).await,
            Self::CheckHttp => check_http(env, out).await,
            Self::Nginx => {
                let text = nginx_site(env).await?;
                write_ours(env, &nginx_path(env), &text, 0o644, "root").await
            }
            Self::StopVpsOdoo => env.there.stop(&env.vps_odoo_service()).await,
            Self::StartVpsOdoo => env.there.start(&env.vps_odoo_service()).await,
            Self::PrepareBackupPrimary => {
                let secrets = env.require_secrets().await?;
                let vps_addr = vps_address(env)?;
                let mut opts_pg =
                    PrepareOptions::new(vec![vps_addr], secrets.0.clone(), secrets.1.clone())
                        .map_err(f("replication options"))?;
                let here = env.standby_sql("postgres");
                opts_pg.listen_addresses =
                    listen_for(&here, &env.cfg.backup.address.to_string()).await?;
                let report = pgrepl::prepare_primary(&here, env.standby.host().as_ref(), &opts_pg)
                    .await
                    .map_err(f("preparing this cluster as a primary"))?;
                for c in &report.changes {
                    out.line(&format!("    {c}"));
                }
                if !report.restart_needed.is_empty() {
                    // Protect makes the standby listen here already; a cluster cloned by an
                    // older version may not: restart it (Odoo here reconnects by itself).
                    out.line(&format!(
                        "    restarting {} for {} (Odoo here reconnects)",
                        env.standby.label(),
                        report.restart_needed.join(", ")
                    ));
                    env.standby
                        .stop(StopMode::Fast)
                        .await
                        .map_err(f("stopping this cluster"))?;
                    env.standby
                        .start()
                        .await
                        .map_err(f("starting this cluster"))?;
                }
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
                )))?;
                Ok(())
            }
            Self::RejoinVps => {
                let o = pgrepl::rejoin(
                    env.vps_cluster.as_ref(),
                    &env.standby_sql("postgres"),
                    &RejoinOptions {
                        upstream: env.upstream_backup()?,
                        rewind_user: Name::new("role", REWIND_USER).map_err(f("role"))?,
                        clone_if_needed: true,
                    },
                    &mut |_| {},
                )
                .await
                .map_err(f("rejoining the VPS's cluster"))?;
                out.line(&format!("    {o:?}"));
                Ok(())
            }
            Self::StopOdoo => env.here.stop(&env.odoo_service()).await,
            Self::CopyFilesBack => copy_back(env).await,
            Self::CatchUp => catch_up(env).await,
            Self::StopStandby => env
                .standby
                .stop(StopMode::Fast)
                .await
                .map_err(f("stopping this cluster")),
            Self::PromoteVps => {
                let o = pgrepl::promote(&env.vps_psql("postgres"), Duration::from_secs(60))
                    .await
                    .map_err(f("promoting the VPS's cluster"))?;
                out.line(&format!("    {o:?}"));
                Ok(())
            }
            Self::RejoinBackup => {
                let vps = env.vps_psql("postgres");
                let o = pgrepl::rejoin(
                    env.standby.as_ref(),
                    &vps,
                    &RejoinOptions {
                        upstream: env.upstream_vps()?,
                        rewind_user: Name::new("role", REWIND_USER).map_err(f("role"))?,
                        clone_if_needed: true,
                    },
                    &mut |_| {},
                )
                .await
                .map_err(f("making this cluster a standby of the VPS"))?;
                out.line(&format!("    {o:?}"));
                Ok(())
            }
            Self::DropStaleSlots => {
                let slot = Name::new("slot", &env.failback_slot()).map_err(f("slot"))?;
                let vps = env.vps_psql("postgres");
                if pgrepl::slot::drop_slot(&vps, &slot)
                    .await
                    .map_err(f("dropping the slot on the VPS"))?
                {
                    out.line(&format!("    dropped slot {slot} on the VPS"));
                }
                if pgrepl::slot::drop_slot(&env.standby_sql("postgres"), &slot)
                    .await
                    .map_err(f("dropping the slot here"))?
                {
                    out.line(&format!("    dropped slot {slot} here"));
                }
                Ok(())
            }
        }
    }
}

/// A fresh clone carries the VPS's `listen_addresses` (ALTER SYSTEM lives in the data
/// directory): the standby gets this server's instead (the VPS's address swapped for
/// `backup.address`), so that at failback the VPS reaches it without a restart of production.
async fn standby_listens_here(env: &Env, out: &dyn Reporter) -> Result<()> {
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
    env.standby
        .stop(StopMode::Fast)
        .await
        .map_err(f("restarting the standby"))?;
    env.standby
        .start()
        .await
        .map_err(f("restarting the standby"))?;
    out.line(&format!(
        "    the standby listens on {want} (was {now}, the VPS's)"
    ));
    Ok(())
}

/// The `listen_addresses` a server needs so that `addr` reaches it: `None` when it already
/// listens there (or on every address), else its list with `addr` added (a restart).
async fn listen_for(db: &dyn pgrepl::Sql, addr: &str) -> Result<Option<String>> {
    let now = pgrepl::query_value(db, "SHOW listen_addresses")
        .await
        .map_err(f("reading listen_addresses"))?
        .unwrap_or_default();
    let list: Vec<&str> = now
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if list
        .iter()
        .any(|a| *a == "*" || *a == "0.0.0.0" || *a == "::" || *a == addr)
    {
        return Ok(None);
    }
    let mut new = list.join(",");
    if !new.is_empty() {
        new.push(',');
    }
    new.push_str(addr);
    Ok(Some(new))
}

async fn has_slot(db: &dyn pgrepl::Sql, slot: &str) -> Result<bool> {
    Ok(pgrepl::list_slots(db)
        .await
        .map_err(f("listing slots"))?
        .iter()
        .any(|s| s.name == slot))
}

/// What the VPS is, as far as this server can tell right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VpsState {
    /// SSH does not answer: the VPS is down or cut off; nothing here can fence it.
    Unreachable(String),
    /// Its cluster runs as a primary: it may take writes.
    Primary,
    /// Its cluster runs as a standby (it takes no writes).
    Standby,
    /// Its cluster does not run.
    Stopped,
    /// Its cluster runs but does not answer (frozen, overloaded): not fenced.
    NotAnswering(String),
}

/// Looks at the VPS over SSH: is it reachable, does its cluster run, and as what.
pub async fn vps_state(env: &Env) -> VpsState {
    let limit = Duration::from_secs(15);
    match tokio::time::timeout(limit, env.vps.run(&CommandSpec::new("true"))).await {
        Err(_) => return VpsState::Unreachable("SSH did not answer within 15 s".into()),
        Ok(Err(e)) => return VpsState::Unreachable(e.to_string()),
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(limit, env.vps_cluster.is_running()).await {
        Ok(Ok(false)) => return VpsState::Stopped,
        Ok(Ok(true)) => {}
        Ok(Err(e)) => return VpsState::NotAnswering(e.to_string()),
        Err(_) => return VpsState::NotAnswering("its cluster's state did not come in 15 s".into()),
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        is_primary(&env.vps_psql("postgres")),
    )
    .await
    {
        Ok(Ok(true)) => VpsState::Primary,
        Ok(Ok(false)) => VpsState::Standby,
        Ok(Err(e)) => VpsState::NotAnswering(e.to_string()),
        Err(_) => VpsState::NotAnswering("it runs but did not answer a query within 10 s".into()),
    }
}

/// Whether the VPS's PostgreSQL can be reached and is a primary (accepts writes).
pub async fn vps_takes_writes(env: &Env) -> bool {
    vps_state(env).await == VpsState::Primary
}

async fn fence(env: &Env, opts: &RunOptions, out: &dyn Reporter) -> Result<()> {
    let label = env.vps_cluster.label();
    match vps_state(env).await {
        VpsState::Stopped => {
            out.line(&format!("    {label} on the VPS does not run"));
            Ok(())
        }
        VpsState::Standby => {
            out.line(&format!("    {label} on the VPS is a standby: it takes no writes"));
            Ok(())
        }
        VpsState::Unreachable(why) if opts.vps_unreachable => {
            out.line(&format!(
                "    the VPS cannot be reached ({why}); going on as acknowledged with --vps-unreachable: nothing fenced it, so it must not serve again until failback"
            ));
            Ok(())
        }
        VpsState::Unreachable(why) => Err(FailoverError::Refused(format!(
            "the VPS cannot be reached over SSH ({why}): it may be down or cut off; nothing could fence it. If it is down, or you have cut it off, run again with --vps-unreachable (--yes does not imply it)"
        ))),
        state @ (VpsState::Primary | VpsState::NotAnswering(_)) => {
            if !opts.force {
                return Err(FailoverError::Refused(match state {
                    VpsState::NotAnswering(why) => format!(
                        "the VPS's PostgreSQL runs but does not answer ({why}): it is not fenced. Stop it on the VPS and run again, or pass --force to have odoo-standby stop it over SSH"
                    ),
                    _ => format!(
                        "the VPS's PostgreSQL at {}:{} still accepts writes: failing over now would split the data in two. Stop it (or cut it off) and run again, or pass --force to have odoo-standby stop it over SSH",
                        env.vps_pg.0, env.vps_pg.1
                    ),
                }));
            }
            out.line(&format!("    --force: stopping {label} over SSH"));
            env.vps_cluster
                .stop(StopMode::Fast)
                .await
                .map_err(f("stopping the VPS's PostgreSQL"))?;
            match vps_state(env).await {
                VpsState::Stopped | VpsState::Standby => Ok(()),
                other => Err(FailoverError::Refused(format!(
                    "the VPS's PostgreSQL was stopped but is still not fenced: {other:?}"
                ))),
            }
        }
    }
}

/// Where the failover keeps the names of the files it found lost.
pub fn lost_path(env: &Env) -> PathBuf {
    env.cfg
        .backup
        .state_dir
        .join(env.name())
        .join("lost-files.json")
}

async fn lost_files(env: &Env, out: &dyn Reporter) -> Result<()> {
    let fs = env.layout.data_dir().join("filestore");
    let mut report = serde_json::Map::new();
    for db in env.databases().await? {
        let sql = env.standby_sql(&db);
        let audit = filesync::audit::audit(&sql, &db, &fs, false)
            .await
            .map_err(|e| FailoverError::failed(format!("auditing {db}"), e))?;
        let mut bundles = Vec::new();
        for chunk in audit.missing.chunks(500) {
            let list: Vec<String> = chunk.iter().map(|n| pgrepl::quote_literal(n)).collect();
            // Generated asset bundles are caches: without their rows Odoo builds them again;
            // with a row whose file is missing it answers 500 for good.
            bundles.extend(
                crate::env::rows(
                    &sql,
                    &format!(
                        "DELETE FROM ir_attachment WHERE store_fname IN ({}) AND res_model = 'ir.ui.view' AND url LIKE '/web/assets/%' RETURNING store_fname",
                        list.join(",")
                    ),
                )
                .await?,
            );
        }
        let lost: Vec<&String> = audit
            .missing
            .iter()
            .filter(|n| !bundles.contains(n))
            .collect();
        if lost.is_empty() && bundles.is_empty() {
            out.line(&format!("    {db}: every referenced file is here"));
        }
        if !bundles.is_empty() {
            out.line(&format!(
                "    {db}: {} asset bundle(s) had no file here: their rows were removed, Odoo builds them again",
                bundles.len()
            ));
        }
        if !lost.is_empty() {
            out.line(&format!(
                "    {db}: LOST: {} attachment file(s) never reached this server (Odoo serves the rows without content):",
                lost.len()
            ));
            for n in &lost {
                out.line(&format!("      lost {db}/{n}"));
            }
        }
        report.insert(
            db.clone(),
            serde_json::json!({ "lost": lost, "rebuilt_bundles": bundles }),
        );
    }
    let path = lost_path(env);
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&path, text + "\n")
        .map_err(|e| FailoverError::failed(format!("writing {}", path.display()), e))
}

async fn odoo_files(env: &Env, out: &dyn Reporter) -> Result<()> {
    let u = &env.cfg.backup.os_user;
    let dd = env.layout.data_dir().display().to_string();
    let owner = format!("{u}:{u}");
    let fixed = env
        .local
        .run(
            &CommandSpec::new("find")
                .args([
                    dd.as_str(),
                    "(",
                    "!",
                    "-user",
                    u,
                    "-o",
                    "!",
                    "-group",
                    u,
                    ")",
                ])
                .args(["-print", "-exec", "chown", "-h", &owner, "{}", "+"]),
        )
        .await
        .map_err(hf(format!("giving {dd} to {u}")))?;
    let n = fixed.stdout_text().lines().count();
    if n > 0 {
        out.line(&format!(
            "    {n} file(s) or folder(s) under {dd} were not {u}'s: now they are"
        ));
    }
    // Where Odoo writes: the filestore and the sessions (`addons/<version>` is 0500 by
    // Odoo's own choice).
    let mut spec = CommandSpec::new("find");
    for sub in ["filestore", "sessions"] {
        let p = env.layout.data_dir().join(sub);
        if p.is_dir() {
            spec = spec.arg(p.display().to_string());
        }
    }
    if spec.arguments().is_empty() {
        return Ok(());
    }
    let stuck = env
        .local
        .run(
            &spec
                .args(["-type", "d", "!", "-writable"])
                .run_as(u.clone()),
        )
        .await
        .map_err(hf(format!("checking as {u} that {dd} is writable")))?;
    let stuck: Vec<String> = stuck.stdout_text().lines().map(str::to_owned).collect();
    if !stuck.is_empty() {
        return Err(FailoverError::Refused(format!(
            "{u} cannot write in {} folder(s) under {dd}, e.g. {}: Odoo would commit attachments there and lose their files; fix their modes",
            stuck.len(),
            stuck[0]
        )));
    }
    Ok(())
}

async fn check_http(env: &Env, out: &dyn Reporter) -> Result<()> {
    let text = env
        .local
        .read_file(&env.layout.conf())
        .await
        .map_err(hf(format!("reading {}", env.layout.conf().display())))?;
    let conf = OdooConf::parse(&String::from_utf8_lossy(&text), "odoo.conf")
        .map_err(|e| FailoverError::failed("reading odoo.conf", e))?;
    let (addr, port) = (conf.http_local_address(), conf.http_port());
    let fs = env.layout.data_dir().join("filestore");
    for db in env.databases().await? {
        let candidates = env
            .standby_sql(&db)
            .query("SELECT id::text, checksum, store_fname FROM ir_attachment WHERE public AND type = 'binary' AND store_fname IS NOT NULL AND checksum IS NOT NULL ORDER BY id DESC LIMIT 50")
            .await
            .map_err(f(format!("listing public attachments of {db}")))?;
        let pick = candidates.into_iter().find_map(|r| {
            let id = r.first().cloned().flatten()?.parse::<i64>().ok()?;
            let sum = r.get(1).cloned().flatten()?;
            let name = r.get(2).cloned().flatten()?;
            fs.join(&db).join(&name).is_file().then_some((id, sum))
        });
        let seen =
            odoo_instance::http::check_serving(&addr, port, &db, pick, Duration::from_secs(90))
                .await
                .map_err(|e| FailoverError::failed(format!("checking Odoo on {addr}:{port}"), e))?;
        out.line(&format!(
            "    {db}: http://{addr}:{port}/web/login answers 200{}",
            match (seen.attachment, &seen.asset) {
                (Some(id), _) => format!("; attachment {id} downloads with its bytes"),
                (None, Some(a)) => format!("; no public attachment yet, asset bundle {a} served"),
                (None, None) => "; nothing to download on the login page".into(),
            }
        ));
    }
    Ok(())
}

/// The marker that pauses `odoo-standby sync` for an instance (written by failover).
pub fn paused_file(env: &Env) -> PathBuf {
    env.cfg
        .backup
        .state_dir
        .join(env.name())
        .join("syncs.paused")
}

async fn same_file(env: &Env, path: &Path, want: &str) -> Result<bool> {
    match env.local.read_file(path).await {
        Ok(b) => Ok(b == want.as_bytes()),
        Err(e) if e.kind() == host::HostErrorKind::NotFound => Ok(false),
        Err(e) => Err(FailoverError::failed(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// Writes a file of ours; an existing different one is kept beside it as `<file>.aside-<t>`.
async fn write_ours(env: &Env, path: &Path, text: &str, mode: u32, owner: &str) -> Result<()> {
    if same_file(env, path, text).await? {
        return Ok(());
    }
    if env.local.stat(path).await.ok().flatten().is_some() {
        let aside = pgrepl::aside_path(path);
        env.local
            .rename(path, &aside)
            .await
            .map_err(hf(format!("moving {} aside", path.display())))?;
    }
    env.local
        .write_file(
            path,
            text.as_bytes(),
            &Ownership::owned(mode, owner.to_owned()),
        )
        .await
        .map_err(hf(format!("writing {}", path.display())))
}

async fn odoo_conf(env: &Env) -> Result<String> {
    let raw = env
        .vps
        .read_file(&env.inst.odoo_conf)
        .await
        .map_err(hf(format!(
            "reading {} on the VPS",
            env.inst.odoo_conf.display()
        )))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut conf = OdooConf::parse(&text, &env.inst.odoo_conf.display().to_string())
        .map_err(|e| FailoverError::failed("reading the VPS's odoo.conf", e))?;
    let mut path_map = vec![(env.inst.sources.clone(), env.layout.sources())];
    // The Odoo tree's own addons (`<tree>/addons`, `<tree>/odoo/addons`) map to our `odoo` link.
    if let Some(addons) = conf.get("addons_path") {
        for entry in addons
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let p = Path::new(entry.trim_end_matches('/'));
            if p.starts_with(&env.inst.sources)
                || p.file_name().and_then(|n| n.to_str()) != Some("addons")
            {
                continue;
            }
            let Some(tree) = p.parent() else {
                continue;
            };
            path_map.push((tree.to_owned(), env.layout.odoo()));
        }
    }
    relocate(
        &mut conf,
        &BackupTarget {
            path_map,
            data_dir: env.layout.data_dir(),
            db_host: Some(env.standby.socket_dir()),
            db_port: env.inst.standby_port,
            db_user: None,
            logfile: None,
            pidfile: None,
            http_port: None,
            gevent_port: None,
        },
    );
    Ok(conf.render())
}

async fn odoo_login(env: &Env, out: &dyn Reporter) -> Result<()> {
    let os_user = &env.cfg.backup.os_user;
    let text = odoo_conf(env).await?;
    let conf = OdooConf::parse(&text, "odoo.conf")
        .map_err(|e| FailoverError::failed("reading the rewritten odoo.conf", e))?;
    let Some(role) = conf.db_user().map(str::to_owned) else {
        out.line(&format!(
            "    odoo.conf sets no db_user: Odoo connects as {os_user} itself"
        ));
        return Ok(());
    };
    if &role == os_user {
        return Ok(());
    }
    let role = Name::new("db_user", &role).map_err(f("odoo.conf's db_user"))?;
    let changed = pgrepl::allow_local_login(
        &env.standby_sql("postgres"),
        env.standby.host().as_ref(),
        os_user,
        &role,
    )
    .await
    .map_err(f("letting the Odoo user log in to the standby"))?;
    if changed {
        out.line(&format!(
            "    {os_user} may now log in to {} as role {role} (peer, map {})",
            env.standby.label(),
            pgrepl::hba::LOGIN_MAP
        ));
    }
    Ok(())
}

fn odoo_unit(env: &Env) -> String {
    let cluster_unit = match &env.cfg.backup.clusters_dir {
        None => odoo_instance::unit::cluster_unit(env.cfg.backup.pg_version, env.name()),
        Some(_) => "postgresql.service".into(),
    };
    odoo_instance::unit::render(&odoo_instance::unit::UnitSpec {
        instance: env.name().to_owned(),
        os_user: env.cfg.backup.os_user.clone(),
        exec_start: env.exec_start(),
        cluster_unit,
        working_dir: env.layout.dir(),
    })
}

fn sync_unit_path(env: &Env) -> PathBuf {
    env.layout
        .dir()
        .join(format!("odoo-standby-sync-{}.service", env.name()))
}

fn sync_unit(env: &Env) -> String {
    let s = env.sync_service();
    format!(
        "# Written by odoo-standby: the file syncs of instance {name}.\n\
         [Unit]\nDescription=odoo-standby syncs of {name}\nAfter=network-online.target\n\n\
         [Service]\nType=simple\nExecStart={exec}\nRestart=always\nRestartSec=10\n\
         StandardOutput=journal\nSyslogIdentifier=odoo-standby-sync-{name}\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        name = env.name(),
        exec = s.argv.join(" ")
    )
}

fn nginx_path(env: &Env) -> PathBuf {
    env.layout.dir().join(format!("nginx_{}.conf", env.name()))
}

async fn nginx_site(env: &Env) -> Result<String> {
    let conf = match env.local.read_file(&env.layout.conf()).await {
        Ok(b) => OdooConf::parse(&String::from_utf8_lossy(&b), "odoo.conf").ok(),
        Err(_) => None,
    };
    let http_port = conf.as_ref().map(OdooConf::http_port).unwrap_or(8069);
    let gevent_port = conf.as_ref().map(OdooConf::gevent_port).unwrap_or(8072);
    Ok(odoo_instance::nginx::render(
        &odoo_instance::nginx::NginxSite {
            instance: env.name().to_owned(),
            server_names: vec![env.ssh.host.clone()],
            http_port,
            gevent_port,
            odoo_major: 17,
            x_sendfile_data_dir: None,
        },
    ))
}

fn vps_address(env: &Env) -> Result<String> {
    for h in [&env.vps_pg.0, &env.ssh.host] {
        if h.parse::<std::net::IpAddr>().is_ok() {
            return Ok(h.clone());
        }
    }
    Err(FailoverError::Refused(format!(
        "neither {:?} nor {:?} is an IP address; pg_hba needs the VPS's address: write it in the instance's pg = \"host=...\"",
        env.vps_pg.0, env.ssh.host
    )))
}

async fn preflight(env: &Env, out: &dyn Reporter) -> Result<()> {
    let b = &env.cfg.backup;
    env.vps
        .run(&CommandSpec::new("true"))
        .await
        .map_err(hf(format!("logging in to {}", vps_label(env))))?;
    out.line(&format!(
        "    SSH to {} works, host key verified",
        vps_label(env)
    ));
    let admin = env.vps_psql("postgres");
    let row = admin
        .query("SELECT rolsuper::text, current_setting('server_version_num'), (SELECT sum(pg_database_size(datname))::bigint FROM pg_database)::text FROM pg_roles WHERE rolname = current_user")
        .await
        .map_err(f("reading the VPS's PostgreSQL"))?;
    let row = row.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    if get(0) != "true" {
        return Err(FailoverError::Refused(format!(
            "the VPS's PostgreSQL login in `pg` ({}:{}) is not a superuser; protect needs one to prepare replication",
            env.vps_pg.0, env.vps_pg.1
        )));
    }
    let major = get(1).parse::<u32>().unwrap_or(0) / 10000;
    if major != b.pg_version {
        return Err(FailoverError::Refused(format!(
            "the VPS runs PostgreSQL {major}, the backup is set up for {} (backup.pg_version): physical replication needs the same major version",
            b.pg_version
        )));
    }
    let db_bytes: u64 = get(2).parse().unwrap_or(0);
    let du = env
        .vps
        .run(
            &CommandSpec::new("du")
                .args(["-sb", "--"])
                .arg(env.inst.data_dir.display().to_string()),
        )
        .await
        .map_err(hf(format!(
            "measuring {} on the VPS",
            env.inst.data_dir.display()
        )))?;
    let file_bytes: u64 = du
        .stdout_text()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut probe = b.root.clone();
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_owned(),
            None => break,
        }
    }
    let df = env
        .local
        .run(
            &CommandSpec::new("df")
                .args(["-B1", "--output=avail"])
                .arg(probe.display().to_string()),
        )
        .await
        .map_err(hf(format!("measuring free space at {}", probe.display())))?;
    let avail: u64 = df
        .stdout_text()
        .lines()
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let need = (db_bytes + file_bytes) / 10 * 11;
    out.line(&format!(
        "    PostgreSQL {major}, superuser; databases {} MB, data_dir {} MB; {} MB free here",
        db_bytes >> 20,
        file_bytes >> 20,
        avail >> 20
    ));
    if avail < need {
        return Err(FailoverError::Refused(format!(
            "{} has {} MB free; the base backup and the files need about {} MB",
            probe.display(),
            avail >> 20,
            need >> 20
        )));
    }
    Ok(())
}

async fn seed(env: &Env, out: &dyn Reporter) -> Result<()> {
    let b = &env.cfg.backup;
    for (remote, local) in [
        (&env.inst.data_dir, env.layout.data_dir()),
        (&env.inst.sources, env.layout.sources()),
    ] {
        if remote.file_name() != local.file_name() {
            return Err(FailoverError::Refused(format!(
                "{} on the VPS would be copied to {}/{}, not {}: this version needs the VPS folder to be named {:?}",
                remote.display(),
                env.layout.dir().display(),
                remote.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                local.display(),
                local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            )));
        }
    }
    let mut last = 0u8;
    filesync::rsync::seed(
        env.local.as_ref(),
        &env.ssh,
        &env.inst.data_dir,
        &env.layout.dir(),
        None,
        &mut |_, pct| {
            if pct >= last.saturating_add(25) {
                last = pct;
                tracing::info!("data_dir {pct}%");
            }
        },
    )
    .await
    .map_err(|e| FailoverError::failed("copying data_dir", e))?;
    env.mirror_sources().await?;
    env.local
        .run(
            &CommandSpec::new("chown")
                .args(["-R", &format!("{0}:{0}", b.os_user), "--"])
                .arg(env.layout.data_dir().display().to_string())
                .arg(env.layout.sources().display().to_string()),
        )
        .await
        .map_err(hf("setting the owner of the copies"))?;
    out.line(&format!(
        "    data_dir and sources copied to {}",
        env.layout.dir().display()
    ));
    Ok(())
}

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

async fn confirm(env: &Env, opts: &RunOptions, out: &dyn Reporter) -> Result<()> {
    let st = pgrepl::status(&env.standby_sql("postgres"))
        .await
        .map_err(f("reading the standby's status"))?;
    match &st {
        pgrepl::Status::Standby(s) => out.line(&format!(
            "    at risk: the standby's WAL receiver is {}, last replayed transaction {} s old (writes after it on the VPS are lost)",
            s.receiver_status.as_deref().unwrap_or("stopped"),
            s.replay_delay_seconds.map(|d| format!("{d:.0}")).unwrap_or_else(|| "?".into())
        )),
        pgrepl::Status::Primary(_) => out.line("    the standby is already a primary"),
    }
    for (db, n) in missing_files(env).await? {
        out.line(&format!(
            "    at risk: {db}: {n} referenced file(s) missing here"
        ));
    }
    if opts.yes {
        return Ok(());
    }
    match out.confirm(&format!("Fail over {} to this server?", env.name())) {
        Some(true) => Ok(()),
        Some(false) => Err(FailoverError::Refused(
            "not confirmed; nothing was promoted".into(),
        )),
        None => Err(FailoverError::Refused(
            "no terminal to ask for confirmation: pass --yes".into(),
        )),
    }
}

async fn smoke(env: &Env, out: &dyn Reporter) -> Result<()> {
    let b = &env.cfg.backup;
    let dbs = env.databases().await?;
    let conf_text = env
        .local
        .read_file(&env.layout.conf())
        .await
        .map_err(hf(format!("reading {}", env.layout.conf().display())))?;
    let conf = OdooConf::parse(&String::from_utf8_lossy(&conf_text), "odoo.conf")
        .map_err(|e| FailoverError::failed("reading odoo.conf", e))?;
    let http_if = conf
        .get("http_interface")
        .filter(|v| !v.trim().is_empty() && *v != "False")
        .unwrap_or("0.0.0.0")
        .to_owned();
    let http_port = conf
        .get("http_port")
        .or_else(|| conf.get("xmlrpc_port"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8069u16);
    let db_user = conf
        .get("db_user")
        .filter(|v| *v != "False")
        .unwrap_or(&b.os_user)
        .to_owned();
    for db in dbs {
        let t = odoo_instance::smoke::SmokeTest {
            exec_start: env.exec_start(),
            database: db.clone(),
            os_user: b.os_user.clone(),
            http: Some((http_if.clone(), http_port)),
            db_user: db_user.clone(),
            vps_db_user: None,
            cluster_socket: env.standby.socket_dir(),
            cluster_port: env.inst.standby_port,
            requirements: env.layout.requirements(),
        };
        let mut fixed = false;
        loop {
            let r = odoo_instance::smoke::run(env.local.as_ref(), &t)
                .await
                .map_err(|e| FailoverError::failed(format!("smoke-testing {db}"), e))?;
            if r.ok {
                out.line(&format!("    {db}: Odoo loads it"));
                break;
            }
            // Roles and ownership are ours to fix (runbook 4.3); anything else is shown.
            let fix = r.diagnoses.iter().find(|d| {
                matches!(
                    d.failure,
                    odoo_instance::smoke::Failure::RoleMissing { .. }
                        | odoo_instance::smoke::Failure::WrongOwner { .. }
                )
            });
            match (fix.and_then(|d| d.fix.command.clone()), fixed) {
                (Some(cmd), false) => {
                    out.line(&format!("    {db}: fixing: {}", cmd));
                    env.local.run(&cmd).await.map_err(hf("fixing roles"))?;
                    fixed = true;
                }
                _ => {
                    let list: Vec<String> = r
                        .diagnoses
                        .iter()
                        .map(|d| {
                            format!(
                                "{:?} -> {}{}",
                                d.failure,
                                d.fix.description,
                                d.fix
                                    .shown
                                    .as_ref()
                                    .map(|s| format!(": {s}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    return Err(FailoverError::Refused(format!(
                        "Odoo does not load {db}: {}\n{}",
                        list.join("; "),
                        r.log_tail
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn copy_back(env: &Env) -> Result<()> {
    let spec = CommandSpec::new("rsync")
        .args(["-a", "--partial", "--timeout=15", "--protect-args", "-e"])
        .arg(
            env.ssh
                .ssh_command()
                .map_err(|e| FailoverError::failed("rsync", e))?,
        )
        .arg(format!("{}/", env.layout.data_dir().display()))
        .arg(format!(
            "{}@{}:{}/",
            env.ssh.user,
            env.ssh.host,
            env.inst.data_dir.display()
        ));
    env.local
        .run(&spec)
        .await
        .map_err(hf("copying data_dir back to the VPS"))?;
    Ok(())
}

async fn catch_up(env: &Env) -> Result<()> {
    let target = pgrepl::query_value(&env.standby_sql("postgres"), "SELECT pg_current_wal_lsn()")
        .await
        .map_err(f("reading this cluster's WAL position"))?
        .unwrap_or_default();
    let target: pgrepl::Lsn = target
        .parse()
        .map_err(|_| FailoverError::failed("WAL position", format!("{target:?}")))?;
    let vps = env.vps_psql("postgres");
    for _ in 0..600 {
        let replayed = pgrepl::query_value(&vps, "SELECT pg_last_wal_replay_lsn()")
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse::<pgrepl::Lsn>().ok());
        if replayed.is_some_and(|r| r >= target) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(FailoverError::Refused(format!(
        "the VPS did not replay up to {target} within 120 s"
    )))
}
