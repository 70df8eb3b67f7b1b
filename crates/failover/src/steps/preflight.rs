//! Protect, the VPS's side (runbook section 1): check what we log in to, keep the replication
//! passwords, prepare the VPS's PostgreSQL as a primary.

use async_trait::async_trait;
use host::CommandSpec;
use pgrepl::{PrepareOptions, Sql as _};

use super::{f, hf, Run, Step};
use crate::env::{Env, REPLICA_USER, REWIND_USER};
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// SSH, PostgreSQL, versions and free space, before anything changes.
pub struct Preflight;

fn du(env: &Env) -> CommandSpec {
    CommandSpec::new("du")
        .args(["-sb", "--"])
        .arg(env.inst.data_dir.display().to_string())
        .asks()
}

fn df(path: &std::path::Path) -> CommandSpec {
    CommandSpec::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path.display().to_string())
        .asks()
}

#[async_trait]
impl Step for Preflight {
    fn id(&self) -> &'static str {
        "preflight"
    }
    fn title(&self) -> &'static str {
        "check SSH, PostgreSQL, versions and disk space"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::note(format!(
                "ssh {}@{} -p {} true (host key checked against {})",
                env.ssh.user,
                env.ssh.host,
                env.ssh.port,
                env.ssh.known_hosts.display()
            )),
            Run::sql(format!(
                "on {} over SSH as {}: SELECT rolsuper, server_version_num, sum(pg_database_size)",
                env.vps_cluster.label(),
                env.cfg.backup.pg_os_user
            )),
            Run::note(format!(
                "du -sb {}; df {}",
                env.inst.data_dir.display(),
                env.cfg.backup.root.display()
            )),
        ]
    }
    fn check(&self) -> &'static str {
        "never skipped: it only reads"
    }
    fn hint(&self) -> &'static str {
        "fix what it names (the SSH key and host key: `odoo-standby ssh-setup NAME`; the VPS user's sudo rules: `odoo-standby vps-sudoers NAME`)"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let b = &env.cfg.backup;
        env.vps
            .run(&CommandSpec::new("true").asks())
            .await
            .map_err(hf(format!("logging in to {}", env.vps_label())))?;
        out.line(&format!(
            "    SSH to {} works, host key verified",
            env.vps_label()
        ));
        let row = env
            .vps_psql("postgres")
            .query("SELECT rolsuper::text, current_setting('server_version_num'), (SELECT sum(pg_database_size(datname))::bigint FROM pg_database)::text FROM pg_roles WHERE rolname = current_user")
            .await
            .map_err(f("reading the VPS's PostgreSQL"))?;
        let row = row.into_iter().next().unwrap_or_default();
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        if get(0) != "true" {
            return Err(FailoverError::Refused(format!(
                "the VPS's PostgreSQL role used over SSH ({}) is not a superuser; protect needs one to prepare replication",
                env.cfg.backup.pg_os_user
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
        let used = super::run(env.vps.as_ref(), &du(env), "measuring data_dir").await?;
        let file_bytes: u64 = used
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
        let free = super::run(env.local.as_ref(), &df(&probe), "measuring free space").await?;
        let avail: u64 = free
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
}

/// The replication passwords, generated once and kept in the backup's `.pgpass`.
pub struct Secrets;

#[async_trait]
impl Step for Secrets {
    fn id(&self) -> &'static str {
        "secrets"
    }
    fn title(&self) -> &'static str {
        "replication passwords in the backup's .pgpass"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let (h, p) = (&env.vps_pg.0, env.vps_pg.1);
        vec![Run::file(
            &env.cfg.backup.pgpass,
            format!(
                "{h}:{p}:replication:{REPLICA_USER}:*** and {h}:{p}:postgres:{REWIND_USER}:*** (0600, owner {})",
                env.cfg.backup.pg_os_user
            ),
        )]
    }
    fn check(&self) -> &'static str {
        "both lines are there"
    }
    fn hint(&self) -> &'static str {
        "the file must be 0600 and owned by the PostgreSQL user"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(env.secrets().await?.is_some())
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        // Reached only when a line is missing: both passwords are (re)generated, and
        // prepare-primary sets them on the VPS's roles next.
        let b = &env.cfg.backup;
        let s = match env.secrets().await? {
            Some(s) => s,
            None => (pgrepl::Secret::generate(), pgrepl::Secret::generate()),
        };
        pgrepl::pgpass::upsert(
            env.local.as_ref(),
            &b.pgpass,
            &b.pg_os_user,
            &Env::pgpass_entries(&env.vps_pg.0, env.vps_pg.1, &s),
        )
        .await
        .map_err(f(format!("writing {}", b.pgpass.display())))
        .map(drop)
    }
}

/// The VPS's PostgreSQL as a primary the backup can follow (runbook section 1).
pub struct PreparePrimary;

#[async_trait]
impl Step for PreparePrimary {
    fn id(&self) -> &'static str {
        "prepare-primary"
    }
    fn title(&self) -> &'static str {
        "prepare the VPS's PostgreSQL as a primary"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        // A host's own network: /32 for IPv4, /128 for IPv6.
        let a = pgrepl::hba::cidr(&env.cfg.backup.address.to_string())
            .unwrap_or_else(|_| env.cfg.backup.address.to_string());
        let when = "--restart-vps and a setting needs a restart";
        vec![
            Run::sql("ALTER SYSTEM SET wal_level = replica, wal_log_hints = on, hot_standby = on, max_wal_senders, max_replication_slots, wal_keep_size, max_slot_wal_keep_size; listen_addresses gains the VPS's address when it does not listen there"),
            Run::note(format!("pg_hba.conf: host replication {REPLICA_USER} {a} scram-sha-256; host all {REWIND_USER} {a} scram-sha-256 (checked by the server before the reload)")),
            Run::sql(format!("CREATE/ALTER ROLE {REPLICA_USER} REPLICATION, {REWIND_USER} (SCRAM verifiers, never plaintext); GRANT EXECUTE on the pg_rewind functions; pg_reload_conf()")),
        ]
        .into_iter()
        .chain(super::restart_runs(env.vps_cluster.as_ref(), when))
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
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        let restart_needed = prepare(
            env,
            env.vps_cluster.as_ref(),
            &env.cfg.backup.address.to_string(),
            &env.vps_pg.0,
            out,
        )
        .await?;
        if restart_needed.is_empty() {
            return Ok(());
        }
        if !opts.restart_vps {
            out.line(&format!(
                "    WARNING: {} take effect only after a restart of the VPS's PostgreSQL; until then pg_rewind cannot work and a failback needs a full clone. Restart it at a quiet time (or run protect with --restart-vps).",
                restart_needed.join(", ")
            ));
            return Ok(());
        }
        let why = format!("for {}", restart_needed.join(", "));
        super::restart(env.vps_cluster.as_ref(), &why, out).await
    }
}

/// Prepares `cluster` as a primary that `peer` (the other side's address) can follow, with
/// the replication passwords of the backup's .pgpass, listening on `listen` too; prints
/// what changed and returns the settings that need a restart.
pub(crate) async fn prepare(
    env: &Env,
    cluster: &dyn pgrepl::Cluster,
    peer: &str,
    listen: &str,
    out: &Out,
) -> Result<Vec<String>> {
    let secrets = env.require_secrets().await?;
    let admin = cluster.psql("postgres");
    let mut pg = PrepareOptions::new(vec![peer.to_owned()], secrets.0, secrets.1)
        .map_err(f("replication options"))?;
    pg.listen_addresses = listen_for(&admin, listen).await?;
    let report = pgrepl::prepare_primary(&admin, cluster.host().as_ref(), &pg)
        .await
        .map_err(f(format!("preparing {} as a primary", cluster.label())))?;
    for c in report.changes.iter().chain(&report.kept) {
        out.line(&format!("    {c}"));
    }
    Ok(report.restart_needed)
}

/// The `listen_addresses` a server needs so that `addr` reaches it: `None` when it already
/// listens there (or on every address), else its list with `addr` added (a restart).
pub(crate) async fn listen_for(db: &dyn pgrepl::Sql, addr: &str) -> Result<Option<String>> {
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
