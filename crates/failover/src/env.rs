//! Everything an operation on one instance reaches: both machines, both clusters, the
//! services, the layout, the state folder, the passwords. Built from the configuration
//! without connecting to anything (so `--dry-run` needs no network); connections are made
//! when a step needs them. The machines are a seam ([`Hosts`]): tests give recording or
//! mock hosts, production SSH and the local machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use host::{Host, LocalHost, SshAuth, SshConfig, SshHost};
use odoo_instance::Layout;
use pgrepl::pgpass::PgpassEntry;
use pgrepl::{Cluster, ConnInfo, DebianCluster, Name, PlainCluster, Secret, Upstream};

use crate::config::{Config, Instance, ServiceKind};
use crate::error::{FailoverError, Result};
use crate::services::{Supervised, Supervisor, Systemd};
use crate::state::StateDir;

/// The replication role.
pub const REPLICA_USER: &str = "replica_user";
/// The pg_rewind role.
pub const REWIND_USER: &str = "replica_rewind";

/// The machines an instance's operations run on.
#[derive(Clone)]
pub struct Hosts {
    /// This machine (the backup server).
    pub local: Arc<dyn Host>,
    /// The VPS.
    pub vps: Arc<dyn Host>,
    /// The VPS again, on a connection of its own: the sync service's fetch helper holds it
    /// for as long as the service runs (see `filesync::Session`).
    pub vps_files: Arc<dyn Host>,
}

/// One instance's world.
pub struct Env {
    /// The whole configuration.
    pub cfg: Config,
    /// The configuration file (the sync service is started with it).
    pub config_path: PathBuf,
    /// The instance.
    pub inst: Instance,
    /// This machine (the backup server).
    pub local: Arc<dyn Host>,
    /// The VPS, over SSH.
    pub vps: Arc<dyn Host>,
    /// The VPS on a connection of the sync's own.
    pub vps_files: Arc<dyn Host>,
    /// The standby cluster here.
    pub standby: Arc<dyn Cluster>,
    /// The VPS's cluster, driven over SSH.
    pub vps_cluster: Arc<dyn Cluster>,
    /// Services here.
    pub here: Arc<dyn Supervisor>,
    /// Services on the VPS.
    pub there: Arc<dyn Supervisor>,
    /// The instance's folder here.
    pub layout: Layout,
    /// The instance's state folder.
    pub state: StateDir,
    /// The SSH login (for rsync).
    pub ssh: filesync::rsync::SshTarget,
    /// The VPS's PostgreSQL host and port, as seen from here.
    pub vps_pg: (String, u16),
    /// The odoo-standby program (the sync service runs it).
    pub program: PathBuf,
    /// The current step, for hosts that record what runs (test builds only).
    pub trace: Option<crate::hooks::Trace>,
}

/// The home of the backup's `os_user`: where its SSH key and known_hosts are when the
/// config names none (the runbook's key is that user's, 3.1), whoever runs the command
/// (root for the operations, `os_user` for the sync service).
fn home(os_user: &str) -> PathBuf {
    host::account::lookup(Some(os_user))
        .map(|a| a.home)
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// A plain cluster folder: `<dir>/data`, `<dir>/sock`, `<dir>/postgresql.log` (the sandbox's
/// layout, and what `clusters_dir` makes).
fn plain(
    host: Arc<dyn Host>,
    bindir: &Path,
    dir: &Path,
    port: u16,
    user: &str,
) -> Result<PlainCluster> {
    PlainCluster::new(
        host,
        bindir,
        dir.join("data"),
        port,
        user,
        dir.join("sock"),
        dir.join("postgresql.log"),
    )
    .map_err(|e| FailoverError::failed(format!("cluster in {}", dir.display()), e))
}

fn name(what: &str, s: &str) -> Result<Name> {
    Name::new(what, s).map_err(|e| FailoverError::failed(what.to_owned(), e))
}

impl Env {
    /// The SSH login of instance `name` (key, known_hosts and target from the config).
    pub fn ssh_config(cfg: &Config, name: &str) -> Result<SshConfig> {
        let inst = cfg.instance(name).map_err(FailoverError::Refused)?;
        let key = cfg
            .backup
            .ssh_key
            .clone()
            .unwrap_or_else(|| home(&cfg.backup.os_user).join(".ssh/id_ed25519"));
        let known = cfg
            .backup
            .known_hosts
            .clone()
            .unwrap_or_else(|| home(&cfg.backup.os_user).join(".ssh/known_hosts"));
        SshConfig::from_target(&inst.ssh, SshAuth::KeyFile(key), known).map_err(|e| {
            FailoverError::Refused(format!(
                "instance {name}: ssh: {e} (a ~/.ssh/config alias is not supported here yet: write user@host:port)"
            ))
        })
    }

    /// The world of instance `name` in `cfg`: this machine, and the VPS over SSH.
    pub fn new(cfg: &Config, config_path: &Path, name: &str) -> Result<Self> {
        let ssh = Self::ssh_config(cfg, name)?;
        let hosts = Hosts {
            local: Arc::new(LocalHost::new()),
            vps: Arc::new(SshHost::new(ssh.clone())),
            vps_files: Arc::new(SshHost::new(ssh)),
        };
        let (hosts, trace) = crate::hooks::recording(hosts);
        let mut env = Self::with_hosts(cfg, config_path, name, hosts)?;
        env.trace = trace;
        Ok(env)
    }

    /// The world of instance `name` on these machines (the seam tests use).
    pub fn with_hosts(cfg: &Config, config_path: &Path, iname: &str, hosts: Hosts) -> Result<Self> {
        let inst = cfg.instance(iname).map_err(FailoverError::Refused)?.clone();
        let b = &cfg.backup;
        let ssh_cfg = Self::ssh_config(cfg, iname)?;
        let ssh = filesync::rsync::SshTarget {
            user: ssh_cfg.user.clone(),
            host: ssh_cfg.host.clone(),
            port: ssh_cfg.port,
            identity: match &ssh_cfg.auth {
                SshAuth::KeyFile(k) => k.clone(),
                SshAuth::Agent => home(&cfg.backup.os_user).join(".ssh/id_ed25519"),
            },
            known_hosts: ssh_cfg.known_hosts.clone(),
        };
        let pg = ConnInfo::parse(&inst.pg)
            .map_err(|e| FailoverError::failed(format!("instance {iname}: pg"), e))?;
        let vps_port = pg.get("port").and_then(|p| p.parse().ok()).unwrap_or(5432);
        let vps_pg = (pg.get("host").unwrap_or("localhost").to_owned(), vps_port);
        let Hosts {
            local,
            vps,
            vps_files,
        } = hosts;
        let standby: Arc<dyn Cluster> = match &b.clusters_dir {
            Some(dir) => Arc::new(plain(
                local.clone(),
                &b.pg_bindir,
                &dir.join(iname),
                inst.standby_port,
                &b.pg_os_user,
            )?),
            None => Arc::new(DebianCluster::new(
                local.clone(),
                b.pg_version,
                name("instance", iname)?,
                inst.standby_port,
            )),
        };
        let vps_cluster: Arc<dyn Cluster> = if inst.vps_cluster.starts_with('/') {
            let data = PathBuf::from(&inst.vps_cluster);
            let dir = data.parent().unwrap_or(Path::new("/")).to_owned();
            Arc::new(plain(
                vps.clone(),
                &b.pg_bindir,
                &dir,
                vps_port,
                &b.pg_os_user,
            )?)
        } else {
            let (ver, cl) = DebianCluster::parse_id(&inst.vps_cluster)
                .map_err(|e| FailoverError::failed("instance vps_cluster", e))?;
            Arc::new(DebianCluster::new(vps.clone(), ver, cl, vps_port))
        };
        let state = StateDir::new(&b.state_dir, iname);
        let (here, there): (Arc<dyn Supervisor>, Arc<dyn Supervisor>) = match b.services {
            ServiceKind::Systemd => (
                Arc::new(Systemd::new(local.clone())),
                Arc::new(Systemd::new(vps.clone())),
            ),
            ServiceKind::Supervised => (
                Arc::new(Supervised::new(local.clone(), state.run_dir())),
                Arc::new(Supervised::new(vps.clone(), state.vps_run_dir())),
            ),
        };
        let layout = Layout::new(&b.root, iname, &b.os_user, &b.odoo_source)
            .map_err(|e| FailoverError::failed("layout", e))?;
        Ok(Self {
            cfg: cfg.clone(),
            // Absolute: the units protect writes name it, and they do not run in our folder.
            config_path: std::path::absolute(config_path)
                .unwrap_or_else(|_| config_path.to_owned()),
            inst,
            local,
            vps,
            vps_files,
            standby,
            vps_cluster,
            here,
            there,
            layout,
            state,
            ssh,
            vps_pg,
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("odoo-standby")),
            trace: None,
        })
    }

    /// Tells recording hosts which step runs now (nothing in production).
    pub fn trace_step(&self, step: &str) {
        crate::hooks::set_step(&self.trace, step);
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.inst.name
    }

    /// The VPS, as plans name it.
    pub fn vps_label(&self) -> String {
        format!("VPS {}@{}:{}", self.ssh.user, self.ssh.host, self.ssh.port)
    }

    /// This server, as plans name it.
    pub fn here_label(&self) -> String {
        format!("backup server {}", self.cfg.backup.address)
    }

    /// `psql` to the standby cluster here, as its OS user.
    pub fn standby_sql(&self, db: &str) -> pgrepl::Psql {
        self.standby.psql(db)
    }

    /// `psql` to the VPS's cluster as its OS user, over SSH (peer authentication on its
    /// socket: no superuser password travels or is stored; the login user needs the sudoers
    /// rule that lets it run commands as that OS user, see `odoo-standby vps-sudoers`).
    pub fn vps_psql(&self, db: &str) -> pgrepl::Psql {
        self.vps_cluster.psql(db)
    }

    /// The VPS's address for pg_hba (its PostgreSQL host, or its SSH host, as an IP).
    pub fn vps_address(&self) -> Result<String> {
        for h in [&self.vps_pg.0, &self.ssh.host] {
            if h.parse::<std::net::IpAddr>().is_ok() {
                return Ok(h.clone());
            }
        }
        Err(FailoverError::Refused(format!(
            "neither {:?} nor {:?} is an IP address; pg_hba needs the VPS's address: write it in the instance's pg = \"host=...\"",
            self.vps_pg.0, self.ssh.host
        )))
    }

    /// How the standby here follows the VPS.
    pub fn upstream_vps(&self) -> Result<Upstream> {
        Ok(Upstream {
            host: self.vps_pg.0.clone(),
            port: self.vps_pg.1,
            user: name("role", REPLICA_USER)?,
            passfile: self.cfg.backup.pgpass.clone(),
            slot: name("slot", self.name())?,
            max_mb_per_s: self.inst.clone_mb_per_s,
        })
    }

    /// How the VPS follows this server during a failback (its own slot, `<name>_failback`).
    pub fn upstream_backup(&self) -> Result<Upstream> {
        Ok(Upstream {
            host: self.cfg.backup.address.to_string(),
            port: self.inst.standby_port,
            user: name("role", REPLICA_USER)?,
            passfile: self.inst.vps_pgpass.clone(),
            slot: name("slot", &self.failback_slot())?,
            max_mb_per_s: self.inst.clone_mb_per_s,
        })
    }

    /// The slot the VPS streams through while the backup is primary.
    pub fn failback_slot(&self) -> String {
        format!("{}_failback", self.name())
    }

    /// The replication passwords from the backup's `.pgpass` (`None`: not written yet).
    pub async fn secrets(&self) -> Result<Option<(Secret, Secret)>> {
        let p = pgrepl::pgpass::load(self.local.as_ref(), &self.cfg.backup.pgpass)
            .await
            .map_err(|e| FailoverError::failed("reading the backup's .pgpass", e))?;
        let (h, port) = (&self.vps_pg.0, self.vps_pg.1);
        Ok(
            match (
                p.lookup(h, port, "replication", REPLICA_USER),
                p.lookup(h, port, "postgres", REWIND_USER),
            ) {
                (Some(a), Some(b)) => Some((Secret::new(a), Secret::new(b))),
                _ => None,
            },
        )
    }

    /// The passwords, or an error saying to run `protect` first.
    pub async fn require_secrets(&self) -> Result<(Secret, Secret)> {
        self.secrets().await?.ok_or_else(|| {
            FailoverError::Refused(format!(
                "no replication passwords for {}:{} in {}: run `odoo-standby protect {}` first",
                self.vps_pg.0,
                self.vps_pg.1,
                self.cfg.backup.pgpass.display(),
                self.name()
            ))
        })
    }

    /// `.pgpass` lines for both roles on `host:port`.
    pub fn pgpass_entries(host: &str, port: u16, s: &(Secret, Secret)) -> Vec<PgpassEntry> {
        let e = |db: &str, user: &str, pw: &Secret| PgpassEntry {
            host: host.to_owned(),
            port: port.to_string(),
            database: db.into(),
            user: user.into(),
            password: pw.expose().into(),
        };
        vec![
            e("replication", REPLICA_USER, &s.0),
            e("postgres", REWIND_USER, &s.1),
        ]
    }

    /// The databases to protect: the configured ones, or every Odoo database of the standby
    /// (else the VPS's), as `filesync::watch::odoo_databases` finds them.
    pub async fn databases(&self) -> Result<Vec<String>> {
        if !self.inst.databases.is_empty() || self.standby.is_running().await.unwrap_or(false) {
            return self.databases_here().await;
        }
        filesync::watch::odoo_databases(&crate::sync::ClusterDbs(self.vps_cluster.clone()))
            .await
            .map_err(|e| FailoverError::failed("listing the Odoo databases", e))
    }

    /// [`Env::databases`] when the cluster here is known to run (status has just asked): the
    /// configured ones, or the standby's Odoo databases, without asking again.
    pub async fn databases_here(&self) -> Result<Vec<String>> {
        if !self.inst.databases.is_empty() {
            return Ok(self.inst.databases.clone());
        }
        filesync::watch::odoo_databases(&crate::sync::ClusterDbs(self.standby.clone()))
            .await
            .map_err(|e| FailoverError::failed("listing the Odoo databases", e))
    }

    /// The databases a plan shows: the configured ones, or `DB` (known only when it runs).
    pub fn planned_databases(&self) -> Vec<String> {
        if self.inst.databases.is_empty() {
            vec!["DB".into()]
        } else {
            self.inst.databases.clone()
        }
    }
}

/// The first column of every row.
pub async fn rows(db: &dyn pgrepl::Sql, sql: &str) -> Result<Vec<String>> {
    Ok(db
        .query(sql)
        .await
        .map_err(|e| FailoverError::failed(format!("running {sql:?}"), e))?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}
