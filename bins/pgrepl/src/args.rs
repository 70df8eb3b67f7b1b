//! The command line of `pgrepl`: arguments, and how they become hosts, clusters and
//! upstreams.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use host::{Host, LocalHost, SshAuth, SshConfig, SshHost};
use pgrepl::{Cluster, DebianCluster, Name, PgreplError, PlainCluster, Upstream};

/// PostgreSQL streaming replication: prepare a primary, clone a standby, watch, promote,
/// rejoin an old primary with pg_rewind, keep slots in check.
///
/// Connections are libpq strings ("host=10.0.0.1 port=5432 user=postgres"); passwords come
/// from a .pgpass file (0600), never from the command line. A cluster is either a Debian
/// cluster (--cluster 15/vps_clientes_1) or a data directory (--data-dir, --port). With
/// --ssh, the cluster (or, for prepare-primary, the primary's pg_hba.conf) is on that machine.
///
/// Exit codes: 0 done (or nothing to do), 1 a problem was found (status, slots),
/// 2 error (nothing was changed unless the message says otherwise).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub logs: cli::LogArgs,
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster (or pg_hba.conf) is: here, or over SSH.
#[derive(Args, Debug)]
pub struct Remote {
    /// user@host[:port] of the machine the cluster is on (default: this machine).
    #[arg(long, global = true)]
    pub ssh: Option<String>,
    /// Private key for --ssh (default: the ssh-agent).
    #[arg(long, global = true)]
    pub identity: Option<PathBuf>,
    /// known_hosts file with the --ssh server's key (default: ~/.ssh/known_hosts).
    #[arg(long, global = true)]
    pub known_hosts: Option<PathBuf>,
}

impl Remote {
    pub fn host(&self) -> Result<Arc<dyn Host>, PgreplError> {
        let Some(target) = &self.ssh else {
            return Ok(Arc::new(LocalHost::new()));
        };
        let auth = match &self.identity {
            Some(k) => SshAuth::KeyFile(k.clone()),
            None => SshAuth::Agent,
        };
        let kh = self.known_hosts.clone().unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".ssh/known_hosts")
        });
        let mut cfg =
            SshConfig::from_target(target, auth, kh).map_err(|r| PgreplError::Invalid {
                what: "--ssh".into(),
                reason: r,
            })?;
        if cfg.user != "root" {
            cfg.file_user = Some("root".into());
        }
        Ok(Arc::new(SshHost::new(cfg)))
    }
}

/// Which cluster: Debian's `VERSION/NAME`, or a plain data directory.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// A Debian postgresql-common cluster, VERSION/NAME (e.g. 15/vps_clientes_1).
    #[arg(long, conflicts_with = "data_dir")]
    pub cluster: Option<String>,
    /// A plain data directory run with pg_ctl.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The cluster's port (for --data-dir; for --cluster, the port a new cluster gets).
    #[arg(long)]
    pub port: Option<u16>,
    /// PostgreSQL's programs (for --data-dir; default /usr/lib/postgresql/<newest>/bin).
    #[arg(long)]
    pub bindir: Option<PathBuf>,
    /// OS user that owns the data directory (for --data-dir).
    #[arg(long, default_value = "postgres")]
    pub os_user: String,
    /// Unix socket directory (for --data-dir).
    #[arg(long, default_value = "/var/run/postgresql")]
    pub socket_dir: PathBuf,
    /// Server log file (for --data-dir; default: <data-dir>/../postgresql.log).
    #[arg(long)]
    pub log: Option<PathBuf>,
}

fn newest_bindir() -> PathBuf {
    let mut v: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin",
        v.last().copied().unwrap_or(15)
    ))
}

impl ClusterArgs {
    pub fn given(&self) -> bool {
        self.cluster.is_some() || self.data_dir.is_some()
    }

    pub fn build(&self, host: Arc<dyn Host>) -> Result<Box<dyn Cluster>, PgreplError> {
        if let Some(id) = &self.cluster {
            let (version, name) = DebianCluster::parse_id(id)?;
            return Ok(Box::new(DebianCluster::new(
                host,
                version,
                name,
                self.port.unwrap_or(5432),
            )));
        }
        let Some(dir) = &self.data_dir else {
            return Err(PgreplError::Invalid {
                what: "cluster".into(),
                reason: "give --cluster VERSION/NAME or --data-dir DIR --port N".into(),
            });
        };
        let port = self.port.ok_or_else(|| PgreplError::Invalid {
            what: "--port".into(),
            reason: "--data-dir needs --port".into(),
        })?;
        let log = self.log.clone().unwrap_or_else(|| {
            dir.parent()
                .map(|p| p.join("postgresql.log"))
                .unwrap_or_else(|| PathBuf::from("postgresql.log"))
        });
        Ok(Box::new(PlainCluster::new(
            host,
            self.bindir.clone().unwrap_or_else(newest_bindir),
            dir.clone(),
            port,
            self.os_user.clone(),
            self.socket_dir.clone(),
            log,
        )?))
    }
}

/// Where a standby streams from.
#[derive(Args, Debug)]
pub struct UpstreamArgs {
    /// The primary's address, as this machine reaches it.
    #[arg(long)]
    pub primary_host: String,
    /// The primary's port.
    #[arg(long, default_value_t = 5432)]
    pub primary_port: u16,
    /// The replication slot on the primary (e.g. the instance name).
    #[arg(long)]
    pub slot: String,
    /// The replication role.
    #[arg(long, default_value = "replica_user")]
    pub replication_user: String,
    /// The .pgpass with the roles' passwords, readable by the cluster's OS user.
    #[arg(long)]
    pub pgpass: PathBuf,
    /// MB per second a base backup may take from the primary (pg_basebackup's --max-rate,
    /// 1 to 1024); 0: no limit.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub max_mb_per_s: u32,
}

impl UpstreamArgs {
    pub fn build(&self) -> Result<Upstream, PgreplError> {
        Ok(Upstream {
            host: self.primary_host.clone(),
            port: self.primary_port,
            user: Name::new("replication role", &self.replication_user)?,
            passfile: self.pgpass.clone(),
            slot: Name::new("slot name", &self.slot)?,
            max_mb_per_s: self.max_mb_per_s,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Prepare a primary: settings, pg_hba block, roles, rewind grants (idempotent).
    PreparePrimary(PrepareArgs),
    /// Clone a standby from a primary with pg_basebackup and a slot, then start it.
    Clone(CloneArgs),
    /// Replication status of a primary or a standby.
    Status(StatusArgs),
    /// Promote a standby; verify it takes writes; checkpoint.
    Promote(PromoteArgs),
    /// Rejoin an old primary as a standby of the new one (pg_rewind when needed).
    Rejoin(RejoinArgs),
    /// List replication slots and flag the ones that threaten the disk; create or drop one.
    Slots(SlotsArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Superuser connection to the primary.
    #[arg(long)]
    pub conn: String,
    /// The backup server's address(es), for pg_hba.
    #[arg(long = "backup-address", required = true)]
    pub backup_addresses: Vec<String>,
    /// The .pgpass on this machine that keeps the roles' passwords (created 0600 if missing).
    #[arg(long)]
    pub pgpass: PathBuf,
    /// Owner of that .pgpass (the user of the standby cluster).
    #[arg(long, default_value = "postgres")]
    pub pgpass_owner: String,
    /// The primary's address in the .pgpass lines (default: host= of --conn).
    #[arg(long)]
    pub primary_host: Option<String>,
    /// Set listen_addresses (e.g. '*'); default: leave it.
    #[arg(long)]
    pub listen_addresses: Option<String>,
    /// wal_keep_size.
    #[arg(long, default_value = "1GB")]
    pub wal_keep_size: String,
    /// max_slot_wal_keep_size.
    #[arg(long, default_value = "10GB")]
    pub max_slot_wal_keep_size: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CloneArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Connection to the server (or give a cluster).
    #[arg(long)]
    pub conn: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Superuser connection to the standby (or give a cluster).
    #[arg(long)]
    pub conn: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Seconds to wait for the promotion.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct RejoinArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    /// Superuser connection to the new primary (slot, checkpoint).
    #[arg(long)]
    pub admin_conn: String,
    /// The rewind role.
    #[arg(long, default_value = "replica_rewind")]
    pub rewind_user: String,
    /// When pg_rewind cannot work, make a new clone (the old data directory is moved aside).
    #[arg(long)]
    pub clone_if_needed: bool,
}

#[derive(Args, Debug)]
pub struct SlotsArgs {
    /// Superuser connection (or give a cluster).
    #[arg(long)]
    pub conn: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Create this physical slot.
    #[arg(long, conflicts_with = "drop")]
    pub create: Option<String>,
    /// Drop this slot (refused while a standby uses it).
    #[arg(long)]
    pub drop: Option<String>,
    /// Flag slots that retain more than this many MB of WAL.
    #[arg(long, default_value_t = 1024)]
    pub max_retained_mb: i64,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}
