//! Protect, the Odoo side here: odoo.conf rewritten, the Odoo user's login to the standby,
//! the units, the syncs started.

use async_trait::async_trait;
use odoo_instance::{relocate, BackupTarget, OdooConf};
use pgrepl::Name;

use super::{f, hf, same_file, write_ours, Run, Step};
use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// The VPS's odoo.conf, rewritten for this server, with the instance's settings here (its
/// ports: [`crate::settings`]); `record`: settle and record them now when they are not yet.
/// `None` without `record` when they are not settled yet.
pub(crate) async fn odoo_conf(env: &Env, record: bool) -> Result<Option<String>> {
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
    let path_map = odoo_instance::instance_path_map(
        &conf,
        &env.inst.sources,
        &env.layout.sources(),
        &env.layout.odoo(),
    );
    let Some(settings) = crate::settings::settle(env, &conf, record).await? else {
        return Ok(None);
    };
    relocate(
        &mut conf,
        &BackupTarget {
            path_map,
            data_dir: env.layout.data_dir(),
            db_host: Some(env.standby.socket_dir()),
            db_port: env.inst.standby_port,
            http_port: Some(settings.http_port),
            gevent_port: Some(settings.gevent_port),
            odoo_major: Some(settings.odoo_major),
            ..Default::default()
        },
    );
    Ok(Some(conf.render()))
}

/// odoo.conf for this server.
pub struct OdooConfStep;

#[async_trait]
impl Step for OdooConfStep {
    fn id(&self) -> &'static str {
        "odoo-conf"
    }
    fn title(&self) -> &'static str {
        "rewrite odoo.conf for this server"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::file(
            &env.layout.conf(),
            format!(
                "{} of the VPS, addons_path, data_dir, db_host, db_port rewritten; http_port and gevent_port {} (recorded in {})",
                env.inst.odoo_conf.display(),
                match (env.inst.http_port, env.inst.gevent_port) {
                    (Some(h), Some(g)) => format!("{h} and {g}, from the config"),
                    _ => "as recorded, else the first free pair from the VPS's in steps of 10".into(),
                },
                crate::settings::path(&env.cfg.backup.state_dir, env.name()).display()
            ),
        )]
    }
    fn check(&self) -> &'static str {
        "the file already has that content"
    }
    fn hint(&self) -> &'static str {
        "unmapped addons_path entries are listed: add them under sources on the VPS"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        match odoo_conf(env, false).await? {
            Some(text) => same_file(env, &env.layout.conf(), &text).await,
            None => Ok(false),
        }
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let text = odoo_conf(env, true).await?.unwrap_or_default();
        if let Some(s) = crate::settings::recorded(&env.cfg.backup.state_dir, env.name()) {
            out.line(&format!(
                "    Odoo {} here on ports {} (HTTP) and {} (gevent), recorded in {}",
                s.odoo_major,
                s.http_port,
                s.gevent_port,
                crate::settings::path(&env.cfg.backup.state_dir, env.name()).display()
            ));
        }
        write_ours(
            env,
            &env.layout.conf(),
            &text,
            0o640,
            &env.cfg.backup.os_user,
        )
        .await
    }
}

/// The Odoo user here logs in to the standby as the VPS's role (a peer map), so nothing
/// changes owner and failback hands the database back as it was.
pub struct OdooLogin;

#[async_trait]
impl Step for OdooLogin {
    fn id(&self) -> &'static str {
        "odoo-login"
    }
    fn title(&self) -> &'static str {
        "let the Odoo user here log in to the standby as the VPS's database role"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let (standby, map) = (env.standby.label(), pgrepl::hba::LOGIN_MAP);
        vec![
            Run::note(format!(
                "pg_ident.conf of {standby}: {map} {} ROLE (ROLE: db_user of the rewritten odoo.conf)",
                env.cfg.backup.os_user
            )),
            Run::note(format!(
                "pg_hba.conf of {standby}: local all ROLE peer map={map}; both checked by the server, then pg_reload_conf()"
            )),
        ]
    }
    fn check(&self) -> &'static str {
        super::REAPPLIES
    }
    fn hint(&self) -> &'static str {
        "the role owns the database on the VPS: keeping it is what lets failback hand the database back unchanged"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let os_user = &env.cfg.backup.os_user;
        let text = odoo_conf(env, true).await?.unwrap_or_default();
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
}

/// The promoted Odoo's unit, written and left disabled.
pub struct OdooUnit;

#[async_trait]
impl Step for OdooUnit {
    fn id(&self) -> &'static str {
        "odoo-unit"
    }
    fn title(&self) -> &'static str {
        "write the Odoo unit (disabled)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::file(
            &env.layout.unit_file(),
            format!("ExecStart={}", env.exec_start().join(" ")),
        )]
    }
    fn check(&self) -> &'static str {
        "the file already has that content"
    }
    fn hint(&self) -> &'static str {
        "check backup.python and backup.odoo_source"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        same_file(env, &env.layout.unit_file(), &env.odoo_unit()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        write_ours(
            env,
            &env.layout.unit_file(),
            &env.odoo_unit(),
            0o644,
            "root",
        )
        .await
    }
}

/// The sync service's and the refresh's units: with systemd, the package's templates (written
/// into /etc/systemd/system when the package did not install them) and one drop-in per
/// instance and unit (see [`crate::units`]); in the sandbox, only the sync's folder.
pub struct SyncUnit;

impl SyncUnit {
    fn systemd(env: &Env) -> bool {
        env.cfg.backup.services == crate::config::ServiceKind::Systemd
    }
}

#[async_trait]
impl Step for SyncUnit {
    fn id(&self) -> &'static str {
        "sync-unit"
    }
    fn title(&self) -> &'static str {
        "set up the sync service and the 12-hourly refresh (they run as the Odoo user)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        use crate::units::{drop_in, drop_in_path, REFRESH, REFRESH_TIMER, SYNC};
        let u = &env.cfg.backup.os_user;
        let mut v = vec![
            Run::note(format!(
                "as {u}: test -r {} {} {}; test -x {} (the service reads them as {u})",
                env.config_path.display(),
                env.ssh.identity.display(),
                env.ssh.known_hosts.display(),
                env.program.display()
            )),
            Run::file(
                &env.state.sync_dir(),
                format!("a folder owned by {u}, 0700: sync.json and the filestore indexes"),
            ),
        ];
        if Self::systemd(env) {
            for t in [SYNC, REFRESH, REFRESH_TIMER] {
                v.push(Run::note(format!(
                    "when systemd does not know {} (the package was not installed): write {}",
                    t.file,
                    t.local_path().display()
                )));
            }
            for t in [SYNC, REFRESH] {
                v.push(Run::file(&drop_in_path(&t, env.name()), drop_in(env, &t)));
            }
            v.extend(Run::cmds(
                &[odoo_instance::unit::reload_spec()],
                "when a unit file changed",
            ));
        }
        v
    }
    fn check(&self) -> &'static str {
        "the files already have that content"
    }
    fn hint(&self) -> &'static str {
        "the Odoo user must read the config, the SSH key and known_hosts: fix what the error names"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let u = env.cfg.backup.os_user.clone();
        let files = [
            env.config_path.clone(),
            env.ssh.identity.clone(),
            env.ssh.known_hosts.clone(),
        ];
        let mut spec = host::CommandSpec::new("sh")
            .arg("-c")
            .arg("p=$1; shift; for f; do test -r \"$f\" || echo \"$f\"; done; test -x \"$p\" || echo \"$p\"")
            .arg("sh")
            .arg(env.program.display().to_string());
        for f in &files {
            spec = spec.arg(f.display().to_string());
        }
        let unreadable = env
            .local
            .run(&spec.run_as(u.clone()).asks())
            .await
            .map_err(hf(format!("checking what {u} can read")))?
            .stdout_text();
        if let Some(first) = unreadable.lines().next() {
            return Err(FailoverError::Refused(format!(
                "the sync service runs as {u}, who cannot read {first}{}: give {u} read access (or point backup.ssh_key / backup.known_hosts at files of {u}'s, as the runbook's key is; install the package for /usr/bin/odoo-standby), then run protect again",
                if unreadable.lines().count() > 1 {
                    format!(" (and {} more)", unreadable.lines().count() - 1)
                } else {
                    String::new()
                }
            )));
        }
        env.local
            .mkdir_p(&env.state.sync_dir(), &host::Ownership::owned(0o700, u))
            .await
            .map_err(hf(format!("creating {}", env.state.sync_dir().display())))?;
        if Self::systemd(env) {
            write_units(env).await?;
        }
        Ok(())
    }
}

/// The templates systemd lacks and the instance's drop-ins; reloads systemd when one changed.
async fn write_units(env: &Env) -> Result<()> {
    use crate::units::{drop_in, drop_in_path, REFRESH, REFRESH_TIMER, SYNC};
    let mut changed = false;
    for t in [SYNC, REFRESH, REFRESH_TIMER] {
        let mut known = false;
        for p in t.paths() {
            known |= env.local.stat(&p).await.ok().flatten().is_some();
        }
        if !known {
            write_ours(env, &t.local_path(), t.text, 0o644, "root").await?;
            changed = true;
        }
    }
    for t in [SYNC, REFRESH] {
        let path = drop_in_path(&t, env.name());
        let text = drop_in(env, &t);
        if !same_file(env, &path, &text).await? {
            if let Some(dir) = path.parent() {
                env.local
                    .mkdir_p(dir, &host::Ownership::owned(0o755, "root"))
                    .await
                    .map_err(hf(format!("creating {}", dir.display())))?;
            }
            write_ours(env, &path, &text, 0o644, "root").await?;
            changed = true;
        }
    }
    if changed {
        super::run(
            env.local.as_ref(),
            &odoo_instance::unit::reload_spec(),
            "reloading systemd",
        )
        .await?;
    }
    Ok(())
}

/// The file syncs, started (and the pause a failover left, lifted).
pub struct StartSyncs;

#[async_trait]
impl Step for StartSyncs {
    fn id(&self) -> &'static str {
        "start-syncs"
    }
    fn title(&self) -> &'static str {
        "start the file syncs"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v = vec![Run::note(format!(
            "remove {} when it is there",
            env.state.paused().display()
        ))];
        v.extend(Run::cmds(
            &env.here.start_specs(&env.sync_service()),
            "start the sync service",
        ));
        if let Some(t) = env.refresh_timer() {
            v.extend(Run::cmds(
                &env.here.start_specs(&t),
                "start the 12-hourly refresh's timer",
            ));
        }
        v
    }
    fn check(&self) -> &'static str {
        "the sync service runs, not paused (and the refresh's timer is active)"
    }
    fn hint(&self) -> &'static str {
        "see its log; `odoo-standby sync NAME` runs one pass by hand"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        // After a failover it runs paused (watching the VPS): not done until unpaused.
        if env.state.paused().exists() || !env.here.is_active(&env.sync_service()).await? {
            return Ok(false);
        }
        match env.refresh_timer() {
            Some(t) => env.here.is_active(&t).await,
            None => Ok(true),
        }
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let p = env.state.paused();
        if p.exists() {
            std::fs::remove_file(&p)
                .map_err(|e| FailoverError::failed(format!("removing {}", p.display()), e))?;
        }
        env.here.start(&env.sync_service()).await?;
        if let Some(t) = env.refresh_timer() {
            env.here.start(&t).await?;
        }
        Ok(())
    }
}
