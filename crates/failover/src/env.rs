//! Everything an operation on one instance reaches: both machines, both clusters, the
//! services, the layout, the passwords. Built from the configuration without connecting to
//! anything (so `--dry-run` needs no network); connections are made when a step needs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use host::{Host, LocalHost, SshAuth, SshConfig, SshHost};
use odoo_instance::Layout;
use pgrepl::pgpass::PgpassEntry;
use pgrepl::{Cluster, ConnInfo, DebianCluster, Name, PlainCluster, Secret, Upstream};

use crate::config::{Config, Instance, ServiceKind};
use crate::error::{FailoverError, Result};
use crate::services::{Service, Supervised, Supervisor, Systemd};

/// The replication role.
pub const REPLICA_USER: &str = "replica_user";
/// The pg_rewind role.
pub const REWIND_USER: &str = "replica_rewind";

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
    /// The VPS again, on a connection of its own: the sync service's fetch helper holds it
    /// for as long as the service runs (see `filesync::Session`).
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
    /// The SSH login (for rsync).
    pub ssh: filesync::rsync::SshTarget,
    /// The VPS's PostgreSQL host and port, as seen from here.
    pub vps_pg: (String, u16),
    /// The odoo-standby program (the sync service runs it).
    pub program: PathBuf,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
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

impl Env {
    /// The world of instance `name` in `cfg`.
    pub fn new(cfg: &Config, config_path: &Path, name: &str) -> Result<Self> {
        let inst = cfg.instance(name).map_err(FailoverError::Refused)?.clone();
        let b = &cfg.backup;
        let local: Arc<dyn Host> = Arc::new(LocalHost::new());
        let key = b
            .ssh_key
            .clone()
            .unwrap_or_else(|| home().join(".ssh/id_ed25519"));
        let known = b
            .known_hosts
            .clone()
            .unwrap_or_else(|| home().join(".ssh/known_hosts"));
        let ssh_cfg = SshConfig::from_target(&inst.ssh, SshAuth::KeyFile(key.clone()), &known)
            .map_err(|e| {
                FailoverError::Refused(format!(
                    "instance {name}: ssh: {e} (a ~/.ssh/config alias is not supported here yet: write user@host:port)"
                ))
            })?;
        let ssh = filesync::rsync::SshTarget {
            user: ssh_cfg.user.clone(),
            host: ssh_cfg.host.clone(),
            port: ssh_cfg.port,
            identity: key,
            known_hosts: known,
        };
        let vps_files: Arc<dyn Host> = Arc::new(SshHost::new(ssh_cfg.clone()));
        let vps: Arc<dyn Host> = Arc::new(SshHost::new(ssh_cfg));
        let pg = ConnInfo::parse(&inst.pg)
            .map_err(|e| FailoverError::failed(format!("instance {name}: pg"), e))?;
        let vps_port = pg.get("port").and_then(|p| p.parse().ok()).unwrap_or(5432);
        let vps_pg = (pg.get("host").unwrap_or("localhost").to_owned(), vps_port);
        let cname =
            Name::new("instance", name).map_err(|e| FailoverError::failed("instance name", e))?;
        let standby: Arc<dyn Cluster> = match &b.clusters_dir {
            Some(dir) => Arc::new(plain(
                local.clone(),
                &b.pg_bindir,
                &dir.join(name),
                inst.standby_port,
                &b.pg_os_user,
            )?),
            None => Arc::new(DebianCluster::new(
                local.clone(),
                b.pg_version,
                cname,
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
        let (here, there): (Arc<dyn Supervisor>, Arc<dyn Supervisor>) = match b.services {
            ServiceKind::Systemd => (
                Arc::new(Systemd::new(local.clone())),
                Arc::new(Systemd::new(vps.clone())),
            ),
            ServiceKind::Supervised => (
                Arc::new(Supervised::new(
                    local.clone(),
                    b.state_dir.join(name).join("run"),
                )),
                Arc::new(Supervised::new(
                    vps.clone(),
                    b.state_dir.join(name).join("vps-run"),
                )),
            ),
        };
        let layout = Layout::new(&b.root, name, &b.os_user, &b.odoo_source)
            .map_err(|e| FailoverError::failed("layout", e))?;
        Ok(Self {
            cfg: cfg.clone(),
            config_path: config_path.to_owned(),
            inst,
            local,
            vps,
            vps_files,
            standby,
            vps_cluster,
            here,
            there,
            layout,
            ssh,
            vps_pg,
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("odoo-standby")),
        })
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.inst.name
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

    /// How the standby here follows the VPS.
    pub fn upstream_vps(&self) -> Result<Upstream> {
        Ok(Upstream {
            host: self.vps_pg.0.clone(),
            port: self.vps_pg.1,
            user: name("role", REPLICA_USER)?,
            passfile: self.cfg.backup.pgpass.clone(),
            slot: name("slot", self.name())?,
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

    /// The promoted Odoo here.
    pub fn odoo_service(&self) -> Service {
        Service {
            unit: self.layout.unit_name(),
            argv: self.exec_start(),
            user: self.cfg.backup.os_user.clone(),
            unit_file: Some(self.layout.unit_file()),
        }
    }

    /// The unit's command: the configured python, `<instance>/odoo/odoo-bin -c <instance>/odoo.conf`.
    pub fn exec_start(&self) -> Vec<String> {
        vec![
            self.cfg.backup.python.display().to_string(),
            self.layout.odoo().join("odoo-bin").display().to_string(),
            "-c".into(),
            self.layout.conf().display().to_string(),
        ]
    }

    /// The instance's syncs here (`odoo-standby sync NAME --watch`).
    pub fn sync_service(&self) -> Service {
        Service {
            unit: format!("odoo-standby-sync-{}.service", self.name()),
            argv: vec![
                self.program.display().to_string(),
                "-c".into(),
                self.config_path.display().to_string(),
                "sync".into(),
                self.name().to_owned(),
                "--watch".into(),
            ],
            user: "root".into(),
            unit_file: Some(
                self.layout
                    .dir()
                    .join(format!("odoo-standby-sync-{}.service", self.name())),
            ),
        }
    }

    /// The VPS's own Odoo.
    pub fn vps_odoo_service(&self) -> Service {
        Service {
            unit: format!(
                "{}.service",
                self.inst.vps_odoo_unit.trim_end_matches(".service")
            ),
            argv: vec![
                self.cfg.backup.python.display().to_string(),
                self.inst.vps_odoo_bin.display().to_string(),
                "-c".into(),
                self.inst.odoo_conf.display().to_string(),
            ],
            user: self.ssh.user.clone(),
            unit_file: None,
        }
    }

    /// Mirrors the VPS's addon sources into the instance folder (rsync `--delete`, as the
    /// runbook does): the first copy in protect, then every 12 h in the sync service.
    pub async fn mirror_sources(&self) -> Result<()> {
        filesync::rsync::mirror(
            self.local.as_ref(),
            &self.ssh,
            &filesync::rsync::Tree {
                remote: self.inst.sources.clone(),
                dest_parent: self.layout.dir(),
                delete: true,
                compress: false,
                exclude: Vec::new(),
            },
            None,
        )
        .await
        .map_err(|e| FailoverError::failed("mirroring the sources", e))
    }

    /// The databases to protect: the configured ones, or every database on the standby
    /// (else the VPS) that has an `ir_attachment` table.
    pub async fn databases(&self) -> Result<Vec<String>> {
        if !self.inst.databases.is_empty() {
            return Ok(self.inst.databases.clone());
        }
        let sql = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY 1";
        let mut names = Vec::new();
        let standby_up = self.standby.is_running().await.unwrap_or(false);
        let list = if standby_up {
            rows(&self.standby_sql("postgres"), sql).await?
        } else {
            rows(&self.vps_psql("postgres"), sql).await?
        };
        for db in list {
            let q = "SELECT to_regclass('public.ir_attachment') IS NOT NULL";
            let has = if standby_up {
                pgrepl::query_value(&self.standby_sql(&db), q)
                    .await
                    .ok()
                    .flatten()
            } else {
                pgrepl::query_value(&self.vps_psql(&db), q)
                    .await
                    .ok()
                    .flatten()
            };
            if has.as_deref() == Some("t") {
                names.push(db);
            }
        }
        Ok(names)
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

fn name(what: &str, s: &str) -> Result<Name> {
    Name::new(what, s).map_err(|e| FailoverError::failed(what.to_owned(), e))
}
