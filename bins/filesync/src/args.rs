//! The command line of `filesync`: arguments, and the one subcommand that only prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use filesync::rsync::SshTarget;
use filesync::SyncError;
use host::{SshAuth, SshConfig};

/// Replicates an Odoo instance's filestore (driven by the standby database), addon sources
/// and data_dir trees from its VPS to this backup server, audits the copy, and sets up SSH.
/// (The units that run the syncs are odoo-standby's: `odoo-standby-sync@.service`.)
///
/// Exit codes: 0 done, 1 a problem was found (audit, files missing on the VPS), 2 error.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub logs: cli::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the VPS.
#[derive(Args, Debug, Clone)]
pub struct VpsArgs {
    /// user@host[:port] of the VPS.
    #[arg(long)]
    pub vps: String,
    /// Private key (default: the ssh-agent).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// known_hosts with the VPS's key (default: ~/.ssh/known_hosts).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// The VPS's Odoo data_dir.
    #[arg(long, default_value = "/var/opt/odoo/data_dir")]
    pub remote_data_dir: PathBuf,
}

impl VpsArgs {
    pub fn ssh(&self) -> Result<SshConfig, SyncError> {
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

    pub fn target(&self) -> Result<SshTarget, SyncError> {
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
pub struct LocalArgs {
    /// The backup's copy of the data_dir.
    #[arg(long)]
    pub local_data_dir: PathBuf,
    /// Connection to the standby cluster (libpq string, without dbname).
    #[arg(long)]
    pub standby: String,
    /// Databases to sync (default: every database with an ir_attachment table).
    #[arg(long = "db")]
    pub dbs: Vec<String>,
    /// Where the indexes live.
    #[arg(long, default_value = "/var/lib/odoo-standby/filesync")]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub vps: VpsArgs,
    #[command(flatten)]
    pub local: LocalArgs,
    /// Also check each fetched file's SHA-1 against its name (the size is always checked).
    #[arg(long)]
    pub verify: bool,
    /// Rebuild the index from the disk first.
    #[arg(long)]
    pub rescan: bool,
    /// Print timing and peak memory.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Seconds between passes.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    #[command(flatten)]
    pub vps: VpsArgs,
    /// Folder that receives data_dir.
    #[arg(long)]
    pub dest: PathBuf,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub local: LocalArgs,
    /// Also check every file's SHA-1.
    #[arg(long)]
    pub verify: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub local: LocalArgs,
    /// Hours a file must have been seen unreferenced before it goes.
    #[arg(long, default_value_t = 24)]
    pub older_than_hours: u64,
    /// Move the files into this folder (same filesystem) instead of deleting them.
    #[arg(long)]
    pub move_to: Option<PathBuf>,
    /// Show what would go; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct SshSetupArgs {
    #[command(flatten)]
    pub vps: VpsArgs,
    /// The OS user on this server that will connect.
    #[arg(long)]
    pub os_user: String,
    /// Its home.
    #[arg(long)]
    pub home: PathBuf,
    /// Name of the Host block in ~/.ssh/config (the instance name).
    #[arg(long)]
    pub alias: String,
    /// The fingerprint you checked on the VPS (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`);
    /// asked for on a terminal when missing.
    #[arg(long)]
    pub confirm_fingerprint: Option<String>,
}
