//! The configuration file (`/etc/odoo-standby/config.toml` by default): one `[backup]` table
//! for the backup server, one `[[instance]]` per protected VPS. No secrets in it: passwords
//! live in `.pgpass` files.

use std::net::IpAddr;
use std::path::PathBuf;

/// A commented example, printed by `odoo-standby init`. It parses and validates.
pub const EXAMPLE: &str = include_str!("example.toml");

/// A configuration problem: where, which key, what is wrong, what to write instead; and the
/// other problems found in the same file (all of them are shown at once).
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// `backup.root`, `instance[2].standby_port`...
    pub key: String,
    /// What is wrong, and what to write instead.
    pub problem: String,
    /// The file's other problems, in the order of their lines.
    pub also: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigError {
    /// `file:line: key: problem`, one line per problem.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.key, self.problem
        )?;
        for e in &self.also {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The backup server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// One folder per instance.
    pub root: PathBuf,
    /// The Odoo source tree.
    pub odoo_source: PathBuf,
    /// The OS user of the replicated files and of a promoted Odoo.
    pub os_user: String,
    /// How the VPSs reach this server.
    pub address: IpAddr,
    /// PostgreSQL major version of the standby clusters.
    pub pg_version: u32,
    /// Where journals, locks and pid files go (`/var/lib/odoo-standby`).
    pub state_dir: PathBuf,
    /// How services are started and stopped.
    pub services: ServiceKind,
    /// `None`: standby clusters are postgresql-common clusters `<pg_version>/<name>`.
    /// `Some(dir)`: plain `pg_ctl` data directories `<dir>/<name>` (the sandbox).
    pub clusters_dir: Option<PathBuf>,
    /// PostgreSQL's programs (`/usr/lib/postgresql/<pg_version>/bin`).
    pub pg_bindir: PathBuf,
    /// The OS user that runs PostgreSQL (`postgres`), on both sides.
    pub pg_os_user: String,
    /// The `.pgpass` of `pg_os_user` here (`/var/lib/postgresql/.pgpass`): the replication
    /// passwords, written by `protect`.
    pub pgpass: PathBuf,
    /// The SSH key that logs in to the VPSs (`~os_user/.ssh/id_ed25519` when unset: the
    /// runbook's key, and the one the sync service, running as `os_user`, can read).
    pub ssh_key: Option<PathBuf>,
    /// known_hosts holding the VPSs' host keys (`~os_user/.ssh/known_hosts` when unset).
    pub known_hosts: Option<PathBuf>,
    /// The Python that runs Odoo (`/usr/bin/python3`; a virtualenv's python if you use one).
    pub python: PathBuf,
    /// Minutes between two checks, by the sync, that every referenced file here is present
    /// with its recorded size (60; 0: every pass, for small filestores and tests).
    pub verify_sizes_minutes: u64,
    /// MB per second of SHA-1 the sync spends checking that each file here matches its name,
    /// in the background (4; 0: never).
    pub verify_hash_mb_per_s: u64,
    /// Where the sync writes `odoo_standby_<name>.prom` after each pass, for node-exporter's
    /// textfile collector ([`DEFAULT_METRICS_DIR`]; `""` in the file: none). Written only
    /// when the folder exists and `os_user` may write there.
    pub metrics_dir: Option<PathBuf>,
    /// A program run for every event (an operation starts, fails or ends, a problem appears
    /// or clears, the sync keeps failing), as `PROGRAM INSTANCE EVENT SEVERITY MESSAGE`;
    /// see the `events` module.
    pub on_event: Option<PathBuf>,
    /// Seconds between two looks of the sync service, while a failover holds the instance,
    /// at the VPS: one that came back as a primary is held down (30; 0: never, status
    /// still does it).
    pub vps_watch_seconds: u64,
    /// The default [`Instance::clone_mb_per_s`] (0: no limit).
    pub clone_mb_per_s: u32,
}

/// Debian's node-exporter textfile folder (package prometheus-node-exporter).
pub const DEFAULT_METRICS_DIR: &str = "/var/lib/prometheus/node-exporter";

/// How services (Odoo, the syncs) are started and stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// systemd units (and postgresql-common clusters): real servers.
    Systemd,
    /// Plain processes with pid files: the sandbox, which has no systemd.
    Supervised,
}

/// One protected VPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The instance name.
    pub name: String,
    /// `user@host[:port]`, or a Host alias from `~/.ssh/config`.
    pub ssh: String,
    /// libpq keywords to reach the VPS's PostgreSQL.
    pub pg: String,
    /// The standby cluster's port here.
    pub standby_port: u16,
    /// Odoo's data_dir on the VPS.
    pub data_dir: PathBuf,
    /// Addon sources on the VPS.
    pub sources: PathBuf,
    /// odoo.conf on the VPS.
    pub odoo_conf: PathBuf,
    /// The VPS's cluster: `15/main` (postgresql-common, the default `<pg_version>/main`) or
    /// an absolute data directory run with `pg_ctl`.
    pub vps_cluster: String,
    /// The `.pgpass` of the PostgreSQL OS user on the VPS (`/var/lib/postgresql/.pgpass`),
    /// written by `failback` so the VPS can replicate from the backup.
    pub vps_pgpass: PathBuf,
    /// The VPS's Odoo systemd unit (`odoo`), stopped during failback and started after.
    pub vps_odoo_unit: String,
    /// The VPS's odoo-bin, for supervised services only (systemd knows its own unit).
    pub vps_odoo_bin: PathBuf,
    /// The VPS's Odoo interpreter (a virtualenv's `bin/python`, or the system's): its
    /// `pip freeze` is the instance's `requirement.txt`. Default: `backup.python`.
    pub vps_python: PathBuf,
    /// The backup's Odoo HTTP port for this instance; `None`: protect chooses a free one
    /// (the VPS's, else 10 up, and so on) and records it in the state folder.
    pub http_port: Option<u16>,
    /// The backup's Odoo gevent port (websocket from Odoo 16, longpolling before); likewise.
    pub gevent_port: Option<u16>,
    /// The DNS names clients use, for the nginx site (empty: the VPS's SSH host).
    pub server_name: Vec<String>,
    /// TLS certificate chain and key for the nginx site (`None`: plain HTTP on port 80).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Databases to protect; empty: every database on the VPS that has `ir_attachment`.
    pub databases: Vec<String>,
    /// MB per second a base backup may take over the VPS's link (pg_basebackup's
    /// `--max-rate`), both ways: protect's clone from the VPS and a failback's clone to it.
    /// 0: as fast as it goes. A full copy at wire speed can starve the production Odoo that
    /// shares the uplink; a limit keeps it serving while the copy runs.
    pub clone_mb_per_s: u32,
}

/// The whole file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The backup server.
    pub backup: Backup,
    /// The protected VPSs.
    pub instances: Vec<Instance>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            also: Vec::new(),
            key: "-".into(),
            problem: format!(
                "cannot read it ({e}); `odoo-standby init > {}` writes an example",
                path.display()
            ),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The instance called `name`, or an error listing the configured ones.
    pub fn instance(&self, name: &str) -> Result<&Instance, String> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
                format!(
                    "no instance {name:?} in the config (configured: {})",
                    known.join(", ")
                )
            })
    }
}

mod raw;
#[cfg(test)]
mod tests;
