//! Orchestration of protect, failover, failback and switchover for Odoo instances, and the drill.
//!
//! - [`Config`]: the TOML file every command reads, validated once, with errors that name the
//!   file, the line, the key and what to write instead.
//! - [`steps`]: one type per runbook step ([`Step`]): its description, what it runs (the
//!   very command specs it executes, for `--dry-run`), its done-check and its action together.
//! - [`Plan`]: each operation ([`Operation`]) is an ordered list of steps, shown as data.
//! - [`start`] / [`resume`]: run a plan with a [`Journal`] (one lock per instance; a run
//!   killed at any point continues where it stopped; the fence is checked again every time).
//! - [`Env`]: everything an instance's operations reach, the machines injected ([`Hosts`]).
//! - [`Supervisor`]: services (Odoo, the syncs) through systemd on real servers and plain
//!   supervised processes in the sandbox; clusters through `pgrepl::Cluster`.
//! - [`status()`], [`sync_pass`] / [`watch`]: health of an instance, and the file syncs;
//!   [`seen`]: the sync's last look at the VPS, which `status` of all instances reads.
//! - [`vps_sudoers`]: the drop-in a VPS login user needs, from the commands run as root.
//! - [`units`]: the package's templates (`odoo-standby-sync@`, `odoo-standby-refresh@` and its
//!   timer) and the per-instance drop-ins protect writes; [`refresh`]: sources and `pip freeze`.
//! - [`drill()`]: a failover rehearsed on a throwaway copy of the standby, with its RTO.
//! - [`settings`]: what protect settles per instance and records (the backup's Odoo ports,
//!   the Odoo major version); [`ssh_setup`]: the backup user's SSH access to a VPS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover::FailoverError> {
//! let path = std::path::Path::new("/etc/odoo-standby/config.toml");
//! let cfg = failover::Config::load(path)?;
//! let env = failover::Env::new(&cfg, path, "vps_clientes_1")?;
//! print!("{}", failover::Plan::new(failover::Operation::Failover, &env).render());
//! # Ok(()) }
//! ```

mod access;
pub mod check;
mod config;
pub mod drill;
mod env;
mod error;
pub mod events;
mod hooks;
mod instance;
mod journal;
pub mod metrics;
mod plan;
pub mod problem;
mod runner;
pub mod seen;
mod services;
pub mod settings;
mod sides;
mod state;
mod status;
pub mod steps;
mod sudoers;
mod sync;
pub mod units;
mod vps;

pub use access::{ssh_setup, SshSetupReport};
pub use config::{
    Backup, Config, ConfigError, Instance, ServiceKind, DEFAULT_METRICS_DIR, EXAMPLE,
};
pub use drill::{drill, last_drill, DrillReport};
pub use env::{rows, Env, Hosts, REPLICA_USER, REWIND_USER};
pub use error::{chain, eprint, report, ErrorKind, FailoverError, Result};
pub use journal::{Current, Entry, Journal};
pub use plan::{Operation, Out, Plan, PlannedStep, Reporter, RunOptions, Term};
pub use problem::{Problem, Severity};
pub use runner::{abort, resume, run_steps, start, Aborted};
pub use services::{Service, Supervised, Supervisor, Systemd};
pub use sides::{check_fits, here_role, HereRole, Sides};
pub use state::StateDir;
pub use status::{
    audit_files, limits, missing_files, status, status_all, status_with, DbHealth, DiskHealth,
    FilesHealth, InstanceStatus, LastDrill, STATUS_PARALLEL,
};
pub use steps::{lost_path, Run, Step};
pub use sudoers::{vps_root_commands, vps_sudoers};
pub use sync::{
    copy_requirements, refresh, sync_pass, watch, ClusterDbs, Passes, Refreshed, SyncState,
};
pub use vps::{
    guard_after_failover, hold_vps, release_vps, vps_state, vps_state_within, vps_takes_writes,
    FenceRecord, VpsState,
};

/// The marker that pauses `odoo-standby sync` for an instance (written by failover).
pub fn paused_file(env: &Env) -> std::path::PathBuf {
    env.state.paused()
}
