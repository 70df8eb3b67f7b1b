//! Clusters on disk: where their data lives, how they start and stop. Two kinds behind one
//! trait: Debian's postgresql-common clusters (`pg_createcluster`, `pg_ctlcluster`,
//! `pg_lsclusters`) and a plain data directory driven by `pg_ctl`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use host::{CommandSpec, FilesAs, Host, HostErrorKind, Ownership};

use crate::error::{PgreplError, Result};
use crate::ident::Name;
use crate::sql::Psql;

/// How to stop a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, checkpoint, exit (a clean shutdown).
    Fast,
    /// Exit at once; crash recovery at next start.
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// One PostgreSQL cluster on some machine.
///
/// Contract: `create`, `start` and `stop` are idempotent (a running cluster is not started
/// again, a stopped one not stopped again); nothing here deletes data.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// How to name it to people: `15/vps_clientes_1` or a data directory.
    fn label(&self) -> String;
    /// The machine it lives on.
    fn host(&self) -> Arc<dyn Host>;
    /// The OS user that owns and runs it.
    fn os_user(&self) -> String;
    /// Its data directory.
    fn data_dir(&self) -> PathBuf;
    /// Its TCP port.
    fn port(&self) -> u16;
    /// PostgreSQL's programs for its version.
    fn bindir(&self) -> PathBuf;
    /// Where its Unix socket is (what `psql -h` takes).
    fn socket_dir(&self) -> String;
    /// Whether it has a data directory already (Debian: whether it is registered).
    async fn exists(&self) -> Result<bool>;
    /// Registers it (Debian) or makes an empty data directory (plain), if needed.
    async fn create(&self) -> Result<()>;
    /// Whether its postmaster runs.
    async fn is_running(&self) -> Result<bool>;
    /// Its server log (where a failed start says why).
    fn log(&self) -> PathBuf;
    /// The file that says whether it starts at boot (postgresql-common's `start.conf`);
    /// `None` when nothing starts it by itself.
    fn start_conf(&self) -> Option<PathBuf> {
        None
    }

    /// Starts it and waits until it accepts connections (or is a standby that does);
    /// nothing when it runs.
    async fn start(&self) -> Result<()> {
        if self.is_running().await? {
            return Ok(());
        }
        self.host()
            .run(&self.start_spec())
            .await
            .map_err(host_err(format!(
                "starting {} (its log: {})",
                self.label(),
                self.log().display()
            )))
            .map(drop)
    }

    /// Stops it and waits; nothing when it does not run.
    async fn stop(&self, mode: StopMode) -> Result<()> {
        if !self.is_running().await? {
            return Ok(());
        }
        self.host()
            .run(&self.stop_spec(mode))
            .await
            .map_err(host_err(format!("stopping {}", self.label())))
            .map(drop)
    }

    /// The command `start` runs when it is not running.
    fn start_spec(&self) -> CommandSpec;

    /// The command `stop` runs when it is running.
    fn stop_spec(&self, mode: StopMode) -> CommandSpec;

    /// The command `create` runs when it does not exist (`None`: it only makes a folder).
    fn create_spec(&self) -> Option<CommandSpec> {
        None
    }

    /// The commands it runs as root on its machine (for a sudoers drop-in: a login user
    /// that is not root needs exactly these). Empty when it needs none.
    fn root_commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }

    /// `psql` to it as its OS user over its socket.
    fn psql(&self, db: &str) -> Psql {
        Psql::new(
            self.host(),
            self.os_user(),
            self.socket_dir(),
            self.port(),
            db,
        )
        .with_bindir(self.bindir())
    }
}

fn host_err(during: String) -> impl FnOnce(host::HostError) -> PgreplError {
    move |e| PgreplError::host(during, e)
}

/// A data directory run with `pg_ctl` (also what the sandbox uses). Its files are read and
/// written as its OS user.
#[derive(Clone)]
pub struct PlainCluster {
    host: Arc<dyn Host>,
    bindir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    os_user: String,
    socket_dir: PathBuf,
    log_file: PathBuf,
}

impl PlainCluster {
    /// A cluster in `data_dir`, run by `os_user` on `port` with its socket in `socket_dir`,
    /// logging to `log_file`. The port and socket directory are passed to `postgres` at start,
    /// so they win over whatever the (possibly copied) config files say.
    pub fn new(
        host: Arc<dyn Host>,
        bindir: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        port: u16,
        os_user: impl Into<String>,
        socket_dir: impl Into<PathBuf>,
        log_file: impl Into<PathBuf>,
    ) -> Result<Self> {
        let socket_dir = socket_dir.into();
        let text = socket_dir.display().to_string();
        if text
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '\\')
        {
            return Err(PgreplError::invalid(
                "socket directory",
                format!("{text:?}: use a path without spaces or quotes"),
            ));
        }
        let os_user = os_user.into();
        Ok(Self {
            host: Arc::new(FilesAs::new(host, os_user.clone())),
            bindir: bindir.into(),
            data_dir: data_dir.into(),
            port,
            os_user,
            socket_dir,
            log_file: log_file.into(),
        })
    }

    fn pg_ctl(&self) -> CommandSpec {
        CommandSpec::new(self.bindir.join("pg_ctl").display().to_string())
            .arg("-D")
            .arg(self.data_dir.display().to_string())
            .run_as(self.os_user.clone())
            .timeout(Duration::from_secs(300))
    }
}

#[async_trait]
impl Cluster for PlainCluster {
    fn label(&self) -> String {
        self.data_dir.display().to_string()
    }
    fn host(&self) -> Arc<dyn Host> {
        self.host.clone()
    }
    fn os_user(&self) -> String {
        self.os_user.clone()
    }
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn bindir(&self) -> PathBuf {
        self.bindir.clone()
    }
    fn socket_dir(&self) -> String {
        self.socket_dir.display().to_string()
    }

    async fn exists(&self) -> Result<bool> {
        let st = self
            .host
            .stat(&self.data_dir.join("PG_VERSION"))
            .await
            .map_err(host_err(format!("checking {}", self.label())))?;
        Ok(st.is_some())
    }

    async fn create(&self) -> Result<()> {
        self.host
            .mkdir_p(
                &self.data_dir,
                &Ownership::owned(0o700, self.os_user.clone()),
            )
            .await
            .map_err(host_err(format!("creating {}", self.label())))
    }

    async fn is_running(&self) -> Result<bool> {
        let out = self
            .host
            .run_unchecked(&self.pg_ctl().arg("status").asks())
            .await
            .map_err(host_err(format!("asking pg_ctl about {}", self.label())))?;
        // 0: running; 3: not running; 4: no data directory.
        Ok(out.status.code == Some(0))
    }

    fn log(&self) -> PathBuf {
        self.log_file.clone()
    }

    fn start_spec(&self) -> CommandSpec {
        let opts = format!("-p {} -k {}", self.port, self.socket_dir.display());
        self.pg_ctl()
            .args(["-l", &self.log_file.display().to_string()])
            .args(["-o", &opts, "-w", "-t", "120", "start"])
    }

    fn stop_spec(&self, mode: StopMode) -> CommandSpec {
        self.pg_ctl()
            .args(["-m", mode.as_str(), "-w", "-t", "300", "stop"])
    }
}

/// A Debian postgresql-common cluster `VERSION/NAME`.
///
/// Under systemd a cluster is started and stopped by root (`pg_ctlcluster` hands the request
/// to `systemctl`, so the unit stays the cluster's supervisor; as `postgres` it would run
/// outside systemd and leave the unit failed). Its files (`/etc/postgresql/V/N`, the data
/// directory) are read and written as `postgres`. So on a machine we log in to as another
/// user, exactly [`Cluster::root_commands`] go through `sudo`, and the rest runs as
/// `postgres`.
#[derive(Clone)]
pub struct DebianCluster {
    host: Arc<dyn Host>,
    version: u32,
    name: Name,
    port: u16,
}

/// One line of `pg_lsclusters`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterLine {
    /// Major version.
    pub version: u32,
    /// Cluster name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// `online`, `down`, or `online,recovery`.
    pub status: String,
    /// Owner.
    pub owner: String,
    /// Data directory.
    pub data_dir: PathBuf,
}

/// Parses `pg_lsclusters -h` output.
pub fn parse_lsclusters(text: &str) -> Vec<ClusterLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(ClusterLine {
                version: f[0].parse().ok()?,
                name: f[1].to_owned(),
                port: f[2].parse().ok()?,
                status: f[3].to_owned(),
                owner: f[4].to_owned(),
                data_dir: PathBuf::from(f[5]),
            })
        })
        .collect()
}

impl DebianCluster {
    /// Cluster `version/name`, which has or will have `port` (`pg_createcluster -p`).
    pub fn new(host: Arc<dyn Host>, version: u32, name: Name, port: u16) -> Self {
        Self {
            host: Arc::new(FilesAs::new(host, "postgres")),
            version,
            name,
            port,
        }
    }

    /// Parses `VERSION/NAME` as `--cluster` takes it.
    pub fn parse_id(s: &str) -> Result<(u32, Name)> {
        let (v, n) = s.split_once('/').ok_or_else(|| {
            PgreplError::invalid(
                "cluster",
                format!("{s:?}: write it as VERSION/NAME, e.g. 15/vps_clientes_1"),
            )
        })?;
        let v = v.parse().map_err(|_| {
            PgreplError::invalid("cluster", format!("{s:?}: {v:?} is not a version number"))
        })?;
        Ok((v, Name::new("cluster name", n)?))
    }

    async fn line(&self) -> Result<Option<ClusterLine>> {
        let out = self
            .host
            .run(
                &CommandSpec::new("pg_lsclusters")
                    .arg("-h")
                    .asks()
                    .timeout(Duration::from_secs(30)),
            )
            .await
            .map_err(host_err("listing clusters with pg_lsclusters".into()))?;
        Ok(parse_lsclusters(&out.stdout_text())
            .into_iter()
            .find(|c| c.version == self.version && c.name == self.name.as_str()))
    }

    /// `pg_ctlcluster VERSION NAME ACTION` as root (what `start` and `stop` run).
    fn ctl(&self, action: &str) -> CommandSpec {
        CommandSpec::new("/usr/bin/pg_ctlcluster")
            .args([
                self.version.to_string(),
                self.name.to_string(),
                action.to_owned(),
            ])
            .run_as("root")
            .timeout(Duration::from_secs(300))
    }
}

#[async_trait]
impl Cluster for DebianCluster {
    fn label(&self) -> String {
        format!("{}/{}", self.version, self.name)
    }
    fn host(&self) -> Arc<dyn Host> {
        self.host.clone()
    }
    fn os_user(&self) -> String {
        "postgres".into()
    }
    fn data_dir(&self) -> PathBuf {
        PathBuf::from(format!(
            "/var/lib/postgresql/{}/{}",
            self.version, self.name
        ))
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn bindir(&self) -> PathBuf {
        PathBuf::from(format!("/usr/lib/postgresql/{}/bin", self.version))
    }
    fn socket_dir(&self) -> String {
        "/var/run/postgresql".into()
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.line().await?.is_some())
    }

    async fn create(&self) -> Result<()> {
        if let Some(line) = self.line().await? {
            if line.port != self.port {
                return Err(PgreplError::State(format!(
                    "cluster {} exists on port {}, not {}: change the config or the cluster",
                    self.label(),
                    line.port,
                    self.port
                )));
            }
            return Ok(());
        }
        let spec = self
            .create_spec()
            .unwrap_or_else(|| CommandSpec::new("true"));
        self.host
            .run(&spec)
            .await
            .map_err(host_err(format!("creating cluster {}", self.label())))
            .map(drop)
    }

    async fn is_running(&self) -> Result<bool> {
        Ok(self
            .line()
            .await?
            .is_some_and(|l| l.status.starts_with("online")))
    }

    fn log(&self) -> PathBuf {
        PathBuf::from(format!(
            "/var/log/postgresql/postgresql-{}-{}.log",
            self.version, self.name
        ))
    }

    fn start_conf(&self) -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            "/etc/postgresql/{}/{}/start.conf",
            self.version, self.name
        )))
    }

    fn start_spec(&self) -> CommandSpec {
        self.ctl("start")
    }

    fn stop_spec(&self, mode: StopMode) -> CommandSpec {
        self.ctl("stop").args(["-m", mode.as_str()])
    }

    fn create_spec(&self) -> Option<CommandSpec> {
        Some(
            CommandSpec::new("pg_createcluster")
                .args([self.version.to_string(), self.name.to_string()])
                .args(["-p", &self.port.to_string()])
                .run_as("root"),
        )
    }

    fn root_commands(&self) -> Vec<CommandSpec> {
        vec![self.start_spec(), self.stop_spec(StopMode::Fast)]
    }
}

/// Sets `key = 'value'` lines in a `postgresql.auto.conf` text (replacing earlier lines for
/// the same keys, keeping everything else in place).
pub fn set_auto_conf(text: &str, settings: &[(&str, String)]) -> String {
    let key_of = |line: &str| -> Option<String> {
        let l = line.trim_start();
        if l.starts_with('#') {
            return None;
        }
        l.split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .map(str::to_owned)
    };
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| {
            key_of(l)
                .map(|k| !settings.iter().any(|(s, _)| *s == k))
                .unwrap_or(true)
        })
        .map(str::to_owned)
        .collect();
    for (k, v) in settings {
        out.push(format!("{k} = '{}'", v.replace('\'', "''")));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Reads one setting from a `postgresql.auto.conf` text (last one wins, quotes removed).
pub fn get_auto_conf(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim();
        if l.starts_with('#') {
            return None;
        }
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| {
            let v = v.trim();
            v.strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map(|v| v.replace("''", "'"))
                .unwrap_or_else(|| v.to_owned())
        })
    })
}

/// Reads a file of the cluster's data directory, `None` when it is not there.
pub async fn read_data_file(cluster: &dyn Cluster, name: &str) -> Result<Option<String>> {
    let path = cluster.data_dir().join(name);
    match cluster.host().read_file(&path).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(PgreplError::host(format!("reading {}", path.display()), e)),
    }
}

/// Writes a file of the cluster's data directory, 0600 and owned by the cluster's user.
pub async fn write_data_file(cluster: &dyn Cluster, name: &str, text: &str) -> Result<()> {
    let path = cluster.data_dir().join(name);
    cluster
        .host()
        .write_file(
            &path,
            text.as_bytes(),
            &Ownership::owned(0o600, cluster.os_user()),
        )
        .await
        .map_err(|e| PgreplError::host(format!("writing {}", path.display()), e))
}

/// A path beside `path` to move it aside to: `<path>.aside-<unix seconds>-<pid>[-<n>]`,
/// unique however fast two moves follow each other (a run killed and resumed within the
/// same second, two moves in one process).
pub fn aside_path(path: &Path) -> PathBuf {
    static MOVES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let n = MOVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".aside-{secs}-{}", std::process::id()));
    if n > 0 {
        s.push(format!("-{n}"));
    }
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsclusters_parse() {
        let text = "15  main            5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n\
                    15  vps_clientes_1  5435 online,recovery postgres /var/lib/postgresql/15/vps_clientes_1 /var/log/x.log\n";
        let c = parse_lsclusters(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].name, "vps_clientes_1");
        assert_eq!(c[1].port, 5435);
        assert_eq!(c[1].status, "online,recovery");
        assert!(DebianCluster::parse_id("15/vps_clientes_1").is_ok());
        assert!(DebianCluster::parse_id("15").is_err());
        assert!(DebianCluster::parse_id("x/main").is_err());
        assert!(DebianCluster::parse_id("15/Bad-Name").is_err());
    }

    #[test]
    fn auto_conf_edits_keep_other_lines() {
        let text =
            "# Do not edit this file manually!\nprimary_conninfo = 'old'\nwork_mem = '8MB'\n";
        let new = set_auto_conf(
            text,
            &[
                ("primary_conninfo", "user=r host=h passfile='/x'".into()),
                ("primary_slot_name", "s".into()),
            ],
        );
        assert_eq!(
            new,
            "# Do not edit this file manually!\nwork_mem = '8MB'\n\
             primary_conninfo = 'user=r host=h passfile=''/x'''\nprimary_slot_name = 's'\n"
        );
        assert_eq!(
            get_auto_conf(&new, "primary_conninfo").unwrap(),
            "user=r host=h passfile='/x'"
        );
        assert_eq!(get_auto_conf(&new, "work_mem").unwrap(), "8MB");
        assert_eq!(get_auto_conf(&new, "nope"), None);
    }
}
