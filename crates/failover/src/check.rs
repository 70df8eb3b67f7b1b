//! `odoo-standby check --online`: each aspect an instance depends on, tried for real, one
//! line each (OK, WARNING or FAILED, with the fix): SSH to the VPS (the key, the host key),
//! the sudo rights there, its PostgreSQL (role, settings, pg_hba.conf's own errors, a real
//! replication connection from here with the stored password, the slot), and here the disk
//! and the standby's port. Nothing is changed anywhere.

use std::time::Duration;

use host::CommandSpec;
use serde::Serialize;

use crate::env::{rows, Env, REPLICA_USER};
use crate::error::chain;

/// How an aspect fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but not as it should be for a failover (or not set up yet).
    Warning,
    /// Broken: a protect, failover or failback would stop here.
    Failed,
}

impl Level {
    /// `OK`, `WARNING`, `FAILED`, as printed.
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Failed => "FAILED",
        }
    }
}

/// One aspect of one instance.
#[derive(Clone, Debug, Serialize)]
pub struct Aspect {
    /// The instance.
    pub instance: String,
    /// `ssh`, `sudo`, `vps-postgresql`, `vps-settings`, `pg_hba`, `replication`, `slot`,
    /// `disk`, `standby-port`.
    pub name: &'static str,
    /// How it fared.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do (empty when OK).
    pub fix: String,
}

struct Found<'a> {
    env: &'a Env,
    v: Vec<Aspect>,
}

impl Found<'_> {
    fn add(
        &mut self,
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.v.push(Aspect {
            instance: self.env.name().to_owned(),
            name,
            level,
            detail: detail.into(),
            fix: fix.into(),
        });
    }
}

const LIMIT: Duration = Duration::from_secs(20);

/// Tries every aspect of the instance of `env`; never fails (what cannot be tried is FAILED).
pub async fn online(env: &Env) -> Vec<Aspect> {
    let mut f = Found { env, v: Vec::new() };
    let name = env.name().to_owned();
    let target = format!("{}@{}:{}", env.ssh.user, env.ssh.host, env.ssh.port);
    let probe = CommandSpec::new("true").asks().timeout(LIMIT);
    match tokio::time::timeout(LIMIT, env.vps.run(&probe)).await {
        Ok(Ok(_)) => f.add(
            "ssh",
            Level::Ok,
            format!("{target}: key and host key accepted"),
            "",
        ),
        Ok(Err(e)) => {
            let text = chain(&e);
            let fix = if text.contains("host key") {
                "compare the VPS's key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there) with the one offered, then fix its line in known_hosts".to_owned()
            } else {
                format!(
                    "check the key ({}) and that {} accepts it",
                    env.ssh.identity.display(),
                    target
                )
            };
            f.add("ssh", Level::Failed, format!("{target}: {text}"), fix);
        }
        Err(_) => f.add(
            "ssh",
            Level::Failed,
            format!("{target}: no answer within {} s", LIMIT.as_secs()),
            "check that the VPS is up and its SSH port reachable from here",
        ),
    }
    if f.v.iter().any(|a| a.level == Level::Failed) {
        local(&mut f).await;
        return f.v;
    }
    sudo(&mut f).await;
    let vps = env
        .vps_psql("postgres")
        .with_timeout(Duration::from_secs(15));
    let want = env.cfg.backup.pg_version;
    if let Ok(v) = rows(
        &vps,
        "SELECT current_setting('server_version_num')::int / 10000",
    )
    .await
    {
        let major: u32 = v.first().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major == want {
            f.add(
                "vps-version",
                Level::Ok,
                format!("the VPS runs PostgreSQL {major}, as backup.pg_version"),
                "",
            );
        } else {
            f.add(
                "vps-version",
                Level::Failed,
                format!("the VPS runs PostgreSQL {major}, backup.pg_version is {want}: physical replication needs the same major version"),
                format!("set backup.pg_version = {major} (and install postgresql-{major} here), or upgrade the VPS to {want}"),
            );
        }
    }
    match pgrepl::status(&vps).await {
        Ok(pgrepl::Status::Primary(_)) => f.add(
            "vps-postgresql",
            Level::Ok,
            format!("{} is a primary", env.vps_cluster.label()),
            "",
        ),
        Ok(_) => f.add(
            "vps-postgresql",
            Level::Warning,
            format!("{} is a standby (failed over?)", env.vps_cluster.label()),
            format!("`odoo-standby status {name}`"),
        ),
        Err(e) => f.add(
            "vps-postgresql",
            Level::Failed,
            format!("{}: {}", env.vps_cluster.label(), chain(&e)),
            format!(
                "check the cluster runs and `odoo-standby vps-sudoers {name}` is installed there"
            ),
        ),
    }
    let settings = rows(
        &vps,
        "SELECT name || '=' || setting FROM pg_settings WHERE name IN ('wal_level', 'wal_log_hints', 'max_wal_senders', 'max_replication_slots') ORDER BY name",
    )
    .await;
    if let Ok(s) = settings {
        let get = |k: &str| {
            s.iter()
                .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_owned))
                .unwrap_or_default()
        };
        let mut wrong = Vec::new();
        if get("wal_log_hints") != "on" {
            wrong.push("wal_log_hints is off (pg_rewind needs it at failback)".to_owned());
        }
        if get("wal_level") == "minimal" {
            wrong.push("wal_level is minimal (no replication)".to_owned());
        }
        if get("max_wal_senders") == "0" {
            wrong.push("max_wal_senders is 0".to_owned());
        }
        if wrong.is_empty() {
            f.add("vps-settings", Level::Ok, s.join(", "), "");
        } else {
            f.add(
                "vps-settings",
                Level::Warning,
                wrong.join("; "),
                format!("`odoo-standby protect {name} --restart-vps` sets them (one restart of the VPS's PostgreSQL)"),
            );
        }
    }
    match rows(
        &vps,
        "SELECT 'line ' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number",
    )
    .await
    {
        Ok(errors) if errors.is_empty() => f.add("pg_hba", Level::Ok, "pg_hba.conf has no error", ""),
        Ok(errors) => f.add(
            "pg_hba",
            Level::Failed,
            format!("pg_hba.conf on the VPS: {} (a reload keeps the old rules; a restart refuses to start)", errors.join("; ")),
            "fix those lines, then `SELECT pg_reload_conf()` on the VPS",
        ),
        Err(e) => f.add("pg_hba", Level::Warning, format!("cannot read pg_hba_file_rules: {}", chain(&e)), ""),
    }
    replication(&mut f).await;
    match pgrepl::list_slots(&vps).await {
        Ok(slots) => match slots.iter().find(|s| s.name == name) {
            Some(s) if s.wal_status.as_deref() == Some("lost") => f.add(
                "slot",
                Level::Failed,
                format!("the slot {name} is lost"),
                format!("odoo-standby protect {name} --reclone"),
            ),
            Some(s) => f.add(
                "slot",
                Level::Ok,
                format!(
                    "the slot {name} exists ({})",
                    s.wal_status.as_deref().unwrap_or("-")
                ),
                "",
            ),
            None => f.add(
                "slot",
                Level::Warning,
                format!("no slot {name} on the VPS: not protected yet"),
                format!("odoo-standby protect {name}"),
            ),
        },
        Err(e) => f.add("slot", Level::Failed, chain(&e), ""),
    }
    local(&mut f).await;
    f.v
}

/// Every command the product runs as root (and as the PostgreSQL user) on the VPS, asked of
/// sudo there (`sudo -n -l`: lists, runs nothing).
async fn sudo(f: &mut Found<'_>) {
    let env = f.env;
    let name = env.name().to_owned();
    if env.ssh.user == "root" {
        f.add(
            "sudo",
            Level::Ok,
            "logs in as root: no sudo rule needed",
            "",
        );
        return;
    }
    let mut asks: Vec<(Option<String>, Vec<String>)> = crate::sudoers::vps_root_commands(env)
        .iter()
        .map(|c| {
            let mut argv = vec![c.program().to_owned()];
            argv.extend(c.arguments().iter().cloned());
            (None, argv)
        })
        .collect();
    let psql = env.cfg.backup.pg_bindir.join("psql").display().to_string();
    asks.push((Some(env.cfg.backup.pg_os_user.clone()), vec![psql]));
    let mut missing = Vec::new();
    for (user, argv) in &asks {
        let mut spec = CommandSpec::new("sudo").arg("-n");
        if let Some(u) = user {
            spec = spec.args(["-u", u]);
        }
        let spec = spec
            .arg("-l")
            .arg("--")
            .args(argv.iter().cloned())
            .asks()
            .timeout(LIMIT);
        match env.vps.run_unchecked(&spec).await {
            Ok(o) if o.status.success() => {}
            Ok(_) => missing.push(format!(
                "{}{}",
                user.as_ref()
                    .map(|u| format!("(as {u}) "))
                    .unwrap_or_default(),
                argv.join(" ")
            )),
            Err(e) => missing.push(format!("{} (cannot ask: {})", argv.join(" "), chain(&e))),
        }
    }
    if missing.is_empty() {
        f.add(
            "sudo",
            Level::Ok,
            format!("{} rule(s) in place for {}", asks.len(), env.ssh.user),
            "",
        );
    } else {
        f.add(
            "sudo",
            Level::Failed,
            format!("{} may not run: {}", env.ssh.user, missing.join("; ")),
            format!("`odoo-standby vps-sudoers {name}` prints the drop-in; install it as /etc/sudoers.d/odoo-standby on the VPS"),
        );
    }
}

/// A replication connection to the VPS from here, as the standby makes it (the stored
/// password, the VPS's pg_hba.conf).
async fn replication(f: &mut Found<'_>) {
    let env = f.env;
    let b = &env.cfg.backup;
    match env.secrets().await {
        Ok(Some(_)) => {}
        Ok(None) => {
            f.add(
                "replication",
                Level::Warning,
                format!(
                    "no password for {REPLICA_USER} in {}: not protected yet",
                    b.pgpass.display()
                ),
                format!("odoo-standby protect {}", env.name()),
            );
            return;
        }
        Err(e) => {
            f.add(
                "replication",
                Level::Failed,
                chain(&e),
                format!("check {}", b.pgpass.display()),
            );
            return;
        }
    }
    let conninfo = format!(
        "host={} port={} user={REPLICA_USER} dbname=replication replication=true passfile={} connect_timeout=10",
        env.vps_pg.0,
        env.vps_pg.1,
        b.pgpass.display()
    );
    let spec = CommandSpec::new(b.pg_bindir.join("psql").display().to_string())
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-d",
            &conninfo,
            "-c",
            "IDENTIFY_SYSTEM",
        ])
        .run_as(b.pg_os_user.clone())
        .asks()
        .timeout(LIMIT);
    match env.local.run_unchecked(&spec).await {
        Ok(o) if o.status.success() => f.add(
            "replication",
            Level::Ok,
            format!("{REPLICA_USER} connects for replication to {}:{}", env.vps_pg.0, env.vps_pg.1),
            "",
        ),
        Ok(o) => f.add(
            "replication",
            Level::Failed,
            format!("{REPLICA_USER} to {}:{}: {}", env.vps_pg.0, env.vps_pg.1, o.stderr_text().trim()),
            format!(
                "pg_hba.conf on the VPS needs `host replication {REPLICA_USER} {} scram-sha-256` (`odoo-standby protect {}` writes it)",
                pgrepl::hba::cidr(&b.address.to_string()).unwrap_or_else(|_| b.address.to_string()),
                env.name()
            ),
        ),
        Err(e) => f.add("replication", Level::Failed, chain(&e), ""),
    }
}

/// Here: free disk, and the standby's port when its cluster does not run.
async fn local(f: &mut Found<'_>) {
    let env = f.env;
    let b = &env.cfg.backup;
    let postgres = b.pg_bindir.join("postgres");
    if postgres.exists() {
        f.add(
            "postgresql-here",
            Level::Ok,
            format!(
                "PostgreSQL {} is installed here ({})",
                b.pg_version,
                b.pg_bindir.display()
            ),
            "",
        );
    } else {
        f.add(
            "postgresql-here",
            Level::Failed,
            format!("{} is missing: PostgreSQL {} is not installed here", postgres.display(), b.pg_version),
            format!("apt install postgresql-{} (or set backup.pg_version / pg_bindir to the one installed)", b.pg_version),
        );
    }
    if let Some(d) = crate::status::disk(&[env.standby.data_dir(), env.layout.data_dir()]).await {
        let used = 100.0 - d.free_bytes as f64 * 100.0 / (d.size_bytes.max(1)) as f64;
        let detail = format!(
            "{} free of {} on the disk of {}",
            crate::problem::bytes(d.free_bytes as i64),
            crate::problem::bytes(d.size_bytes as i64),
            d.path
        );
        let (warn, crit) = crate::status::limits::DISK_USED_PERCENT;
        let level = if used >= crit {
            Level::Failed
        } else if used >= warn {
            Level::Warning
        } else {
            Level::Ok
        };
        let fix = if level == Level::Ok {
            ""
        } else {
            "free space there or grow the filesystem"
        };
        f.add("disk", level, detail, fix);
    }
    if !env.standby.is_running().await.unwrap_or(false) {
        let port = env.inst.standby_port;
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => f.add(
                "standby-port",
                Level::Ok,
                format!("port {port} is free for the standby"),
                "",
            ),
            Err(e) => f.add(
                "standby-port",
                Level::Failed,
                format!("port {port} is taken by another program ({e})"),
                "choose another standby_port in the config, or stop what listens there (ss -ltnp)",
            ),
        }
    }
}
