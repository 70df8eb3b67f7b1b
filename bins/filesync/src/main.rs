//! `filesync`: an Odoo instance's files from its VPS to the backup server, from the command
//! line. Thin: parses, builds hosts, calls the `filesync` library, prints.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use filesync::rsync::SshTarget;
use filesync::{Index, SyncError, SyncOptions, Tracker, Vps};
use host::{LocalHost, SshAuth, SshConfig, SshHost};

/// Replicates an Odoo instance's filestore (driven by the standby database), addon sources
/// and data_dir trees from its VPS to this backup server, audits the copy, sets up SSH and
/// prints schedules.
///
/// Exit codes: 0 done, 1 a problem was found (audit, files missing on the VPS), 2 error.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How to reach the VPS.
#[derive(Args, Debug, Clone)]
struct VpsArgs {
    /// user@host[:port] of the VPS.
    #[arg(long)]
    vps: String,
    /// Private key (default: the ssh-agent).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// known_hosts with the VPS's key (default: ~/.ssh/known_hosts).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// The VPS's Odoo data_dir.
    #[arg(long, default_value = "/var/opt/odoo/data_dir")]
    remote_data_dir: PathBuf,
}

impl VpsArgs {
    fn ssh(&self) -> Result<SshConfig, SyncError> {
        let auth = match &self.identity {
            Some(k) => SshAuth::KeyFile(k.clone()),
            None => SshAuth::Agent,
        };
        let kh = self
            .known_hosts
            .clone()
            .unwrap_or_else(|| home().join(".ssh/known_hosts"));
        SshConfig::from_target(&self.vps, auth, kh).map_err(|r| SyncError::Invalid {
            what: "--vps".into(),
            reason: r,
        })
    }

    fn target(&self) -> Result<SshTarget, SyncError> {
        let c = self.ssh()?;
        let identity = self.identity.clone().ok_or_else(|| SyncError::Invalid {
            what: "--identity".into(),
            reason: "rsync needs the private key file".into(),
        })?;
        Ok(SshTarget {
            user: c.user,
            host: c.host,
            port: c.port,
            identity,
            known_hosts: c.known_hosts,
        })
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

/// The standby side.
#[derive(Args, Debug, Clone)]
struct LocalArgs {
    /// The backup's copy of the data_dir.
    #[arg(long)]
    local_data_dir: PathBuf,
    /// Connection to the standby cluster (libpq string, without dbname).
    #[arg(long)]
    standby: String,
    /// Databases to sync (default: every database with an ir_attachment table).
    #[arg(long = "db")]
    dbs: Vec<String>,
    /// Where the indexes live.
    #[arg(long, default_value = "/var/lib/odoo-standby/filesync")]
    state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One filestore pass for every database.
    Sync(SyncArgs),
    /// A filestore pass every few seconds, logging the passes that copied something.
    Watch(WatchArgs),
    /// The first full copy of the data_dir, with progress.
    Seed(SeedArgs),
    /// Referenced files that are missing, truncated or (with --verify) corrupt.
    Audit(AuditArgs),
    /// Removes (or moves aside) files the standby has not referenced for a day: only when run.
    /// The first run records what is unreferenced; a run at least --older-than-hours later
    /// removes what is still unreferenced. Run it daily, or not at all.
    Prune(PruneArgs),
    /// SSH key, authorized_keys on the VPS, ~/.ssh/config block, known_hosts after you confirm.
    SshSetup(SshSetupArgs),
    /// Print systemd units (or cron lines) for one instance.
    Schedule(ScheduleArgs),
}

#[derive(Args, Debug)]
struct SyncArgs {
    #[command(flatten)]
    vps: VpsArgs,
    #[command(flatten)]
    local: LocalArgs,
    /// Also check each fetched file's SHA-1 against its name (the size is always checked).
    #[arg(long)]
    verify: bool,
    /// Rebuild the index from the disk first.
    #[arg(long)]
    rescan: bool,
    /// Print timing and peak memory.
    #[arg(long)]
    stats: bool,
}

#[derive(Args, Debug)]
struct WatchArgs {
    #[command(flatten)]
    sync: SyncArgs,
    /// Seconds between passes.
    #[arg(long, default_value_t = 2)]
    interval: u64,
}

#[derive(Args, Debug)]
struct SeedArgs {
    #[command(flatten)]
    vps: VpsArgs,
    /// Folder that receives data_dir.
    #[arg(long)]
    dest: PathBuf,
}

#[derive(Args, Debug)]
struct AuditArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Also check every file's SHA-1.
    #[arg(long)]
    verify: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PruneArgs {
    #[command(flatten)]
    local: LocalArgs,
    /// Hours a file must have been seen unreferenced before it goes.
    #[arg(long, default_value_t = 24)]
    older_than_hours: u64,
    /// Move the files into this folder (same filesystem) instead of deleting them.
    #[arg(long)]
    move_to: Option<PathBuf>,
    /// Show what would go; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct SshSetupArgs {
    #[command(flatten)]
    vps: VpsArgs,
    /// The OS user on this server that will connect.
    #[arg(long)]
    os_user: String,
    /// Its home.
    #[arg(long)]
    home: PathBuf,
    /// Name of the Host block in ~/.ssh/config (the instance name).
    #[arg(long)]
    alias: String,
    /// The fingerprint you checked on the VPS (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`);
    /// asked for on a terminal when missing.
    #[arg(long)]
    confirm_fingerprint: Option<String>,
}

#[derive(Args, Debug)]
struct ScheduleArgs {
    /// Instance name.
    #[arg(long)]
    instance: String,
    /// OS user that runs the syncs.
    #[arg(long, default_value = "odoouser")]
    os_user: String,
    /// The odoo-standby config file.
    #[arg(long, default_value = "/etc/odoo-standby/config.toml")]
    config: String,
    /// Cron lines instead of systemd units.
    #[arg(long)]
    cron: bool,
    /// Write the units into this directory instead of printing them.
    #[arg(long)]
    write_to: Option<PathBuf>,
}

type Outcome = Result<ExitCode, SyncError>;

fn peak_memory_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn db_conninfo(standby: &str, db: &str) -> Result<String, SyncError> {
    let mut c = pgrepl::ConnInfo::parse(standby).map_err(|e| SyncError::Invalid {
        what: "--standby".into(),
        reason: e.to_string(),
    })?;
    c.set("dbname", db);
    Ok(c.to_libpq())
}

/// A connection to database `db` of the standby.
async fn connect_db(standby: &str, db: &str) -> Result<pgrepl::PgClient, SyncError> {
    pgrepl::PgClient::connect(&db_conninfo(standby, db)?)
        .await
        .map_err(|e| SyncError::Db {
            db: db.to_owned(),
            source: Box::new(e),
        })
}

async fn databases(local: &LocalArgs) -> Result<Vec<String>, SyncError> {
    if !local.dbs.is_empty() {
        return Ok(local.dbs.clone());
    }
    let db = pgrepl::PgClient::connect(&db_conninfo(&local.standby, "postgres")?)
        .await
        .map_err(|e| SyncError::Db {
            db: "postgres".into(),
            source: Box::new(e),
        })?;
    let rows = db
        .query("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY 1")
        .await
        .map_err(|e| SyncError::Db { db: "postgres".into(), source: Box::new(e) })?;
    let mut out = Vec::new();
    for name in rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        let c = pgrepl::PgClient::connect(&db_conninfo(&local.standby, &name)?).await;
        if let Ok(c) = c {
            if pgrepl::query_value(&c, "SELECT to_regclass('public.ir_attachment') IS NOT NULL")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("t")
            {
                out.push(name);
            }
        }
    }
    Ok(out)
}

use pgrepl::Sql as _;

/// What a `watch` keeps between passes for one database.
struct DbState {
    conn: pgrepl::PgClient,
    index: Index,
    tracker: Tracker,
}

impl SyncArgs {
    async fn pass(
        &self,
        vps: &Vps,
        dbs: &[String],
        states: &mut BTreeMap<String, DbState>,
        log_quiet: bool,
    ) -> Outcome {
        let start = Instant::now();
        let local_fs = self.local.local_data_dir.join("filestore");
        let opts = SyncOptions {
            verify_sha1: self.verify,
            ..Default::default()
        };
        let mut problems = false;
        for db in dbs {
            if !states.contains_key(db) {
                let conn = connect_db(&self.local.standby, db).await?;
                let index_file = self.local.state_dir.join(format!("{db}.index"));
                let index = if self.rescan {
                    Index::build(&index_file, &local_fs.join(db))?
                } else {
                    Index::load_or_build(&index_file, &local_fs.join(db))?
                };
                states.insert(
                    db.clone(),
                    DbState {
                        conn,
                        index,
                        tracker: Tracker::default(),
                    },
                );
            }
            let Some(st) = states.get_mut(db) else {
                continue;
            };
            let r = match filesync::sync_db_tracked(
                &st.conn,
                db,
                vps,
                &local_fs,
                &mut st.index,
                &opts,
                &mut st.tracker,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    // A broken database connection is made again on the next pass.
                    if matches!(e, SyncError::Db { .. }) {
                        states.remove(db);
                    }
                    return Err(e);
                }
            };
            if r.fetched > 0 || !log_quiet {
                println!(
                    "{db}: {} referenced, {} fetched ({} KiB), {} skipped, {} missing on the VPS",
                    r.referenced,
                    r.fetched,
                    r.bytes / 1024,
                    r.skipped,
                    r.missing_on_vps.len()
                );
            }
            if self.stats {
                println!(
                    "{db}: query {} ms, diff {} ms, fetch {} ms, save index {} ms",
                    r.query_ms, r.diff_ms, r.fetch_ms, r.persist_ms
                );
            }
            for m in &r.missing_on_vps {
                println!("{db}: MISSING on the VPS: {m}");
            }
            for c in &r.corrupt_on_vps {
                println!("{db}: CORRUPT on the VPS (content does not match its name): {c}");
            }
            problems |= !r.missing_on_vps.is_empty() || !r.corrupt_on_vps.is_empty();
        }
        if self.stats {
            println!(
                "pass took {:.3} s, peak memory {} KiB",
                start.elapsed().as_secs_f64(),
                peak_memory_kb()
            );
        }
        Ok(if problems {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }

    /// The VPS; `keep`: with a helper kept there between passes (for `watch`), on a second
    /// connection of its own.
    fn vps(&self, keep: bool) -> Result<Vps, SyncError> {
        let cfg = self.vps.ssh()?;
        let session =
            keep.then(|| Arc::new(filesync::Session::new(Arc::new(SshHost::new(cfg.clone())))));
        Ok(Vps {
            host: Arc::new(SshHost::new(cfg)),
            filestore: self.vps.remote_data_dir.join("filestore"),
            session,
        })
    }
}

async fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Sync(a) => {
            let vps = a.vps(false)?;
            let dbs = databases(&a.local).await?;
            a.pass(&vps, &dbs, &mut BTreeMap::new(), false).await
        }
        Command::Watch(w) => {
            let vps = w.sync.vps(true)?;
            let mut states = BTreeMap::new();
            // The database list costs a connection per database: look it up again only every
            // ten minutes (new databases are picked up then), not on every pass.
            let mut dbs: Option<(Vec<String>, Instant)> = None;
            loop {
                if dbs
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= Duration::from_secs(600))
                {
                    match databases(&w.sync.local).await {
                        Ok(list) => dbs = Some((list, Instant::now())),
                        Err(e) => eprintln!("filesync: cannot list the databases: {e}"),
                    }
                }
                if let Some((list, _)) = &dbs {
                    if let Err(e) = w.sync.pass(&vps, list, &mut states, true).await {
                        // Keep watching: the next pass retries (a new SSH connection if needed).
                        eprintln!("filesync: pass failed: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_secs(w.interval.max(1))).await;
            }
        }
        Command::Seed(a) => {
            let t = a.vps.target()?;
            let mut last = 0u8;
            filesync::rsync::seed(
                &LocalHost::new(),
                &t,
                &a.vps.remote_data_dir,
                &a.dest,
                None,
                &mut |b, p| {
                    if p >= last.saturating_add(5) || p == 100 {
                        eprintln!("  {p}% ({} MiB)", b / (1024 * 1024));
                        last = p;
                    }
                },
            )
            .await?;
            println!(
                "copied {} into {}",
                a.vps.remote_data_dir.display(),
                a.dest.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(a) => {
            let mut healthy = true;
            let mut reports = Vec::new();
            for db in databases(&a.local).await? {
                let conn = connect_db(&a.local.standby, &db).await?;
                let r = filesync::audit::audit(
                    &conn,
                    &db,
                    &a.local.local_data_dir.join("filestore"),
                    a.verify,
                )
                .await?;
                healthy &= r.healthy();
                reports.push(r);
            }
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).unwrap_or_default()
                );
            } else {
                for r in &reports {
                    println!(
                        "{}: {} checked, {} missing, {} truncated, {} corrupt",
                        r.db,
                        r.checked,
                        r.missing.len(),
                        r.truncated.len(),
                        r.corrupt.len()
                    );
                    for (what, list) in [
                        ("MISSING", &r.missing),
                        ("TRUNCATED", &r.truncated),
                        ("CORRUPT", &r.corrupt),
                    ] {
                        for n in list {
                            println!("{}: {what} {n}", r.db);
                        }
                    }
                }
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Prune(a) => {
            let opts = filesync::prune::PruneOptions {
                older_than: Duration::from_secs(a.older_than_hours.saturating_mul(3600)),
                dry_run: a.dry_run,
                move_to: a.move_to.clone(),
            };
            let local_fs = a.local.local_data_dir.join("filestore");
            for db in databases(&a.local).await? {
                let conn = connect_db(&a.local.standby, &db).await?;
                let mut index = Index::load_or_build(
                    &a.local.state_dir.join(format!("{db}.index")),
                    &local_fs.join(&db),
                )?;
                let r = filesync::prune::prune(
                    &conn,
                    &db,
                    &local_fs,
                    &mut index,
                    &a.local.state_dir,
                    &opts,
                )
                .await?;
                let verb = match (a.dry_run, &a.move_to) {
                    (true, _) => "would remove",
                    (false, Some(_)) => "moved aside",
                    (false, None) => "removed",
                };
                println!(
                    "{db}: {} files, {} unreferenced ({} seen so for the first time), {verb} {} ({} KiB)",
                    r.present,
                    r.unreferenced,
                    r.new_unreferenced,
                    r.removed.len(),
                    r.bytes / 1024
                );
                for n in &r.removed {
                    println!("{db}: {verb} {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::SshSetup(a) => {
            let cfg = a.vps.ssh()?;
            let local = LocalHost::new();
            let public = filesync::sshsetup::ensure_key(&local, &a.os_user, &a.home).await?;
            let known = a.home.join(".ssh/known_hosts");
            let scanned = host::scan_host_key(&cfg.host, cfg.port, Duration::from_secs(10))
                .await
                .map_err(|e| SyncError::Remote {
                    during: "reading the VPS's host key".into(),
                    source: Box::new(e),
                })?;
            println!(
                "{}:{} offers {} key {}",
                cfg.host, cfg.port, scanned.key_type, scanned.fingerprint
            );
            let confirmed = match &a.confirm_fingerprint {
                Some(f) => f.clone(),
                None if std::io::stdin().is_terminal() => {
                    print!("Type the fingerprint you see on the VPS to trust it: ");
                    let _ = std::io::stdout().flush();
                    let mut line = String::new();
                    let _ = std::io::stdin().lock().read_line(&mut line);
                    line.trim().to_owned()
                }
                None => {
                    return Err(SyncError::Invalid {
                        what: "fingerprint".into(),
                        reason: "not on a terminal: pass --confirm-fingerprint with the fingerprint you checked on the VPS".into(),
                    })
                }
            };
            filesync::sshsetup::trust_host_key(
                &local, &known, &a.os_user, &cfg.host, cfg.port, &scanned, &confirmed,
            )
            .await?;
            let admin = SshHost::new(cfg.clone());
            let added = filesync::sshsetup::install_public_key(&admin, &public, None).await?;
            let mut target = a.vps.target().unwrap_or(SshTarget {
                user: cfg.user.clone(),
                host: cfg.host.clone(),
                port: cfg.port,
                identity: a.home.join(".ssh/id_ed25519"),
                known_hosts: known.clone(),
            });
            target.identity = a.home.join(".ssh/id_ed25519");
            target.known_hosts = known;
            filesync::sshsetup::ensure_host_block(
                &local,
                &a.home.join(".ssh/config"),
                &a.os_user,
                &a.alias,
                &target,
            )
            .await?;
            println!(
                "key {} on the VPS; Host {} in {}",
                if added {
                    "installed"
                } else {
                    "already installed"
                },
                a.alias,
                a.home.join(".ssh/config").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule(a) => {
            let s = filesync::schedule::Schedule {
                instance: a.instance.clone(),
                os_user: a.os_user.clone(),
                filesync: std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "filesync".into()),
                config: a.config.clone(),
            };
            if a.cron {
                for l in s.cron_lines() {
                    println!("{l}");
                }
            } else if let Some(dir) = &a.write_to {
                for u in s.units() {
                    let p = dir.join(&u.name);
                    std::fs::write(&p, &u.text).map_err(|e| SyncError::Local {
                        what: "cannot write".into(),
                        path: p.clone(),
                        hint: "check the directory".into(),
                        source: e,
                    })?;
                    println!("wrote {}", p.display());
                }
            } else {
                for u in s.units() {
                    println!("# {}\n{}", u.name, u.text);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("filesync: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("filesync: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(2)
        }
    }
}
