//! `pgrepl`: PostgreSQL streaming replication for one primary and its standby, from the
//! command line. Thin: parses, builds hosts and clusters, calls the `pgrepl` library, prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use host::{Host, LocalHost, SshAuth, SshConfig, SshHost};
use pgrepl::pgpass::PgpassEntry;
use pgrepl::{
    Cluster, DebianCluster, Name, PgClient, PgreplError, PlainCluster, Secret, Sql, Status,
    Upstream,
};

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
struct Cli {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: Command,
}

/// Where the cluster (or pg_hba.conf) is: here, or over SSH.
#[derive(Args, Debug)]
struct Remote {
    /// user@host[:port] of the machine the cluster is on (default: this machine).
    #[arg(long, global = true)]
    ssh: Option<String>,
    /// Private key for --ssh (default: the ssh-agent).
    #[arg(long, global = true)]
    identity: Option<PathBuf>,
    /// known_hosts file with the --ssh server's key (default: ~/.ssh/known_hosts).
    #[arg(long, global = true)]
    known_hosts: Option<PathBuf>,
}

impl Remote {
    fn host(&self) -> Result<Arc<dyn Host>, PgreplError> {
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
struct ClusterArgs {
    /// A Debian postgresql-common cluster, VERSION/NAME (e.g. 15/vps_clientes_1).
    #[arg(long, conflicts_with = "data_dir")]
    cluster: Option<String>,
    /// A plain data directory run with pg_ctl.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The cluster's port (for --data-dir; for --cluster, the port a new cluster gets).
    #[arg(long)]
    port: Option<u16>,
    /// PostgreSQL's programs (for --data-dir; default /usr/lib/postgresql/<newest>/bin).
    #[arg(long)]
    bindir: Option<PathBuf>,
    /// OS user that owns the data directory (for --data-dir).
    #[arg(long, default_value = "postgres")]
    os_user: String,
    /// Unix socket directory (for --data-dir).
    #[arg(long, default_value = "/var/run/postgresql")]
    socket_dir: PathBuf,
    /// Server log file (for --data-dir; default: <data-dir>/../postgresql.log).
    #[arg(long)]
    log: Option<PathBuf>,
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
    fn given(&self) -> bool {
        self.cluster.is_some() || self.data_dir.is_some()
    }

    fn build(&self, host: Arc<dyn Host>) -> Result<Box<dyn Cluster>, PgreplError> {
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
struct UpstreamArgs {
    /// The primary's address, as this machine reaches it.
    #[arg(long)]
    primary_host: String,
    /// The primary's port.
    #[arg(long, default_value_t = 5432)]
    primary_port: u16,
    /// The replication slot on the primary (e.g. the instance name).
    #[arg(long)]
    slot: String,
    /// The replication role.
    #[arg(long, default_value = "replica_user")]
    replication_user: String,
    /// The .pgpass with the roles' passwords, readable by the cluster's OS user.
    #[arg(long)]
    pgpass: PathBuf,
}

impl UpstreamArgs {
    fn build(&self) -> Result<Upstream, PgreplError> {
        Ok(Upstream {
            host: self.primary_host.clone(),
            port: self.primary_port,
            user: Name::new("replication role", &self.replication_user)?,
            passfile: self.pgpass.clone(),
            slot: Name::new("slot name", &self.slot)?,
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct PrepareArgs {
    /// Superuser connection to the primary.
    #[arg(long)]
    conn: String,
    /// The backup server's address(es), for pg_hba.
    #[arg(long = "backup-address", required = true)]
    backup_addresses: Vec<String>,
    /// The .pgpass on this machine that keeps the roles' passwords (created 0600 if missing).
    #[arg(long)]
    pgpass: PathBuf,
    /// Owner of that .pgpass (the user of the standby cluster).
    #[arg(long, default_value = "postgres")]
    pgpass_owner: String,
    /// The primary's address in the .pgpass lines (default: host= of --conn).
    #[arg(long)]
    primary_host: Option<String>,
    /// Set listen_addresses (e.g. '*'); default: leave it.
    #[arg(long)]
    listen_addresses: Option<String>,
    /// wal_keep_size.
    #[arg(long, default_value = "1GB")]
    wal_keep_size: String,
    /// max_slot_wal_keep_size.
    #[arg(long, default_value = "10GB")]
    max_slot_wal_keep_size: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CloneArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    upstream: UpstreamArgs,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Connection to the server (or give a cluster).
    #[arg(long)]
    conn: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PromoteArgs {
    /// Superuser connection to the standby (or give a cluster).
    #[arg(long)]
    conn: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Seconds to wait for the promotion.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Args, Debug)]
struct RejoinArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    upstream: UpstreamArgs,
    /// Superuser connection to the new primary (slot, checkpoint).
    #[arg(long)]
    admin_conn: String,
    /// The rewind role.
    #[arg(long, default_value = "replica_rewind")]
    rewind_user: String,
    /// When pg_rewind cannot work, make a new clone (the old data directory is moved aside).
    #[arg(long)]
    clone_if_needed: bool,
}

#[derive(Args, Debug)]
struct SlotsArgs {
    /// Superuser connection (or give a cluster).
    #[arg(long)]
    conn: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Create this physical slot.
    #[arg(long, conflicts_with = "drop")]
    create: Option<String>,
    /// Drop this slot (refused while a standby uses it).
    #[arg(long)]
    drop: Option<String>,
    /// Flag slots that retain more than this many MB of WAL.
    #[arg(long, default_value_t = 1024)]
    max_retained_mb: i64,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

type Outcome = Result<ExitCode, PgreplError>;

async fn sql_for(
    conn: &Option<String>,
    cluster: &ClusterArgs,
    remote: &Remote,
) -> Result<Box<dyn Sql>, PgreplError> {
    match conn {
        Some(c) => Ok(Box::new(PgClient::connect(c).await?)),
        None if cluster.given() => Ok(Box::new(cluster.build(remote.host()?)?.psql("postgres"))),
        None => Err(PgreplError::Invalid {
            what: "server".into(),
            reason: "give --conn CONNINFO, or --cluster / --data-dir".into(),
        }),
    }
}

fn progress_printer() -> impl FnMut(pgrepl::Progress) + Send {
    let mut last = 0u64;
    move |p: pgrepl::Progress| {
        let pct = (p.done_kb * 100).checked_div(p.total_kb).unwrap_or(0);
        if pct >= last + 10 || pct == 100 {
            eprintln!(
                "  copied {} of {} MB ({pct}%)",
                p.done_kb / 1024,
                p.total_kb / 1024
            );
            last = pct;
        }
    }
}

impl PrepareArgs {
    async fn run(self, remote: &Remote) -> Outcome {
        let info = pgrepl::ConnInfo::parse(&self.conn)?;
        let primary_host = self
            .primary_host
            .clone()
            .unwrap_or_else(|| info.host().to_owned());
        let port = info.port()?;
        let local = LocalHost::new();
        let file = pgrepl::pgpass::load(&local, &self.pgpass).await?;
        let pw = |db: &str, user: &str| {
            file.lookup(&primary_host, port, db, user)
                .map(Secret::new)
                .unwrap_or_else(Secret::generate)
        };
        let mut opts = pgrepl::PrepareOptions::new(
            self.backup_addresses.clone(),
            pw("replication", "replica_user"),
            pw("postgres", "replica_rewind"),
        )?;
        opts.listen_addresses = self.listen_addresses.clone();
        opts.wal_keep_size = self.wal_keep_size.clone();
        opts.max_slot_wal_keep_size = self.max_slot_wal_keep_size.clone();
        let db = PgClient::connect(&self.conn).await?;
        let server_host = remote.host()?;
        let report = pgrepl::prepare_primary(&db, server_host.as_ref(), &opts).await?;
        let entry = |db: &str, user: &str, s: &Secret| PgpassEntry {
            host: primary_host.clone(),
            port: port.to_string(),
            database: db.into(),
            user: user.into(),
            password: s.expose().into(),
        };
        let wrote = pgrepl::pgpass::upsert(
            &local,
            &self.pgpass,
            &self.pgpass_owner,
            &[
                entry("replication", "replica_user", &opts.replication_password),
                entry("postgres", "replica_rewind", &opts.rewind_password),
            ],
        )
        .await?;
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            if report.changes.is_empty() {
                println!("{}: already prepared, nothing changed", db.server());
            }
            for c in &report.changes {
                println!("changed: {c}");
            }
            if wrote {
                println!(
                    "changed: {} (0600, owner {})",
                    self.pgpass.display(),
                    self.pgpass_owner
                );
            }
            if !report.restart_needed.is_empty() {
                println!(
                    "restart needed for: {} (e.g. systemctl restart postgresql@<version>-<name>)",
                    report.restart_needed.join(", ")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn json_or<T: serde::Serialize>(json: bool, v: &T, text: impl FnOnce()) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        text();
    }
}

impl StatusArgs {
    async fn run(self, remote: &Remote) -> Outcome {
        let db = sql_for(&self.conn, &self.cluster, remote).await?;
        let st = pgrepl::status(db.as_ref()).await?;
        let healthy = match &st {
            Status::Primary(p) => {
                p.replicas.iter().all(|r| r.state == "streaming")
                    && p.slots.iter().all(|s| s.active)
            }
            Status::Standby(s) => s.receiver_status.as_deref() == Some("streaming"),
        };
        json_or(self.json, &st, || match &st {
            Status::Primary(p) => {
                println!(
                    "{}: primary on timeline {:?}, at {:?}",
                    db.server(),
                    p.timeline,
                    p.current_lsn.map(|l| l.to_string())
                );
                for r in &p.replicas {
                    println!(
                        "  standby {} from {}: {} ({}), lag {} bytes, {:.1} s",
                        r.application_name,
                        r.client_addr.clone().unwrap_or_default(),
                        r.state,
                        r.sync_state,
                        r.lag_bytes.unwrap_or(0),
                        r.lag_seconds.unwrap_or(0.0)
                    );
                }
                for s in &p.slots {
                    println!(
                        "  slot {}: {}, retains {} MB, wal_status {}",
                        s.name,
                        if s.active { "active" } else { "INACTIVE" },
                        s.retained_bytes.unwrap_or(0) / (1024 * 1024),
                        s.wal_status.clone().unwrap_or_default()
                    );
                }
            }
            Status::Standby(s) => println!(
                "{}: standby, receiver {}, from {}, slot {}, replayed {}, {:.1} s behind",
                db.server(),
                s.receiver_status
                    .clone()
                    .unwrap_or_else(|| "NOT RUNNING".into()),
                s.sender.clone().unwrap_or_default(),
                s.slot_name.clone().unwrap_or_default(),
                s.replay_lsn.map(|l| l.to_string()).unwrap_or_default(),
                s.replay_delay_seconds.unwrap_or(0.0)
            ),
        });
        Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

async fn run(cli: Cli) -> Outcome {
    let remote = &cli.remote;
    match cli.command {
        Command::PreparePrimary(a) => a.run(remote).await,
        Command::Clone(a) => {
            let cluster = a.cluster.build(remote.host()?)?;
            let up = a.upstream.build()?;
            let mut progress = progress_printer();
            match pgrepl::clone_standby(cluster.as_ref(), &up, &mut progress).await? {
                pgrepl::CloneOutcome::AlreadyStreaming => {
                    println!(
                        "{} already streams from {}:{} through slot {}: nothing changed",
                        cluster.label(),
                        up.host,
                        up.port,
                        up.slot
                    )
                }
                pgrepl::CloneOutcome::Cloned { moved_aside } => {
                    if let Some(p) = moved_aside {
                        println!("moved the old data directory aside to {}", p.display());
                    }
                    println!(
                        "{} cloned and streaming from {}:{} through slot {}",
                        cluster.label(),
                        up.host,
                        up.port,
                        up.slot
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => a.run(remote).await,
        Command::Promote(a) => {
            let db = sql_for(&a.conn, &a.cluster, remote).await?;
            match pgrepl::promote(db.as_ref(), Duration::from_secs(a.timeout)).await? {
                pgrepl::PromoteOutcome::AlreadyPrimary => {
                    println!("{} is already a primary: nothing changed", db.server())
                }
                pgrepl::PromoteOutcome::Promoted { timeline } => {
                    println!(
                        "{} promoted: takes writes, checkpointed, timeline {timeline}",
                        db.server()
                    )
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rejoin(a) => {
            let cluster = a.cluster.build(remote.host()?)?;
            let admin = PgClient::connect(&a.admin_conn).await?;
            let opts = pgrepl::RejoinOptions {
                upstream: a.upstream.build()?,
                rewind_user: Name::new("rewind role", &a.rewind_user)?,
                clone_if_needed: a.clone_if_needed,
            };
            let mut progress = progress_printer();
            let out = pgrepl::rejoin(cluster.as_ref(), &admin, &opts, &mut progress).await?;
            match out {
                pgrepl::RejoinOutcome::AlreadyStreaming => println!(
                    "{} already follows the new primary: nothing changed",
                    cluster.label()
                ),
                pgrepl::RejoinOutcome::Rejoined { rewound, recovered } => println!(
                    "{} rejoined and streaming{}{}",
                    cluster.label(),
                    if recovered {
                        "; it was recovered from a crash first"
                    } else {
                        ""
                    },
                    if rewound {
                        "; pg_rewind undid what it wrote after the fork"
                    } else {
                        "; nothing to rewind"
                    }
                ),
                pgrepl::RejoinOutcome::Recloned {
                    reason,
                    moved_aside,
                } => println!(
                    "{} could not be rewound ({reason}); cloned anew{}",
                    cluster.label(),
                    moved_aside
                        .map(|p| format!(", old data directory kept at {}", p.display()))
                        .unwrap_or_default()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Slots(a) => {
            let db = sql_for(&a.conn, &a.cluster, remote).await?;
            if let Some(name) = &a.create {
                let n = Name::new("slot name", name)?;
                let made = pgrepl::slot::create_slot(db.as_ref(), &n).await?;
                println!(
                    "slot {n}: {}",
                    if made {
                        "created"
                    } else {
                        "exists already, nothing changed"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(name) = &a.drop {
                let n = Name::new("slot name", name)?;
                let dropped = pgrepl::slot::drop_slot(db.as_ref(), &n).await?;
                println!(
                    "slot {n}: {}",
                    if dropped {
                        "dropped"
                    } else {
                        "not there, nothing changed"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let problems =
                pgrepl::slot::problem_slots(db.as_ref(), a.max_retained_mb * 1024 * 1024).await?;
            let slots = pgrepl::list_slots(db.as_ref()).await?;
            json_or(
                a.json,
                &serde_json::json!({"slots": slots, "problems": problems}),
                || {
                    for s in &slots {
                        println!(
                            "{} {} active={} retains {} MB",
                            s.name,
                            s.slot_type,
                            s.active,
                            s.retained_bytes.unwrap_or(0) / (1024 * 1024)
                        );
                    }
                    for p in &problems {
                        println!("PROBLEM {}: {}", p.slot.name, p.reason);
                    }
                },
            );
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgrepl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgrepl: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(2)
        }
    }
}
