//! Orchestration of protect, failover and failback for Odoo instances.
//!
//! - [`Config`]: the TOML file every command reads, validated once, with errors that name the
//!   file, the line, the key and what to write instead.
//! - [`Plan`]: each operation ([`Operation`]) is data, an ordered list of [`Step`]s with what
//!   each runs, how it knows it is done, and what to do when it fails; `--dry-run` prints it.
//! - [`start`] / [`resume`]: run a plan with a [`Journal`] (one lock per instance; a run
//!   killed at any point continues where it stopped).
//! - [`Supervisor`]: services (Odoo, the syncs) through systemd on real servers and plain
//!   supervised processes in the sandbox; clusters through `pgrepl::Cluster`.
//! - [`status()`], [`sync_pass`] / [`watch`]: health of an instance, and the file syncs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), failover::FailoverError> {
//! let path = std::path::Path::new("/etc/odoo-standby/config.toml");
//! let cfg = failover::Config::load(path)?;
//! let env = failover::Env::new(&cfg, path, "vps_clientes_1")?;
//! print!("{}", failover::Plan::new(failover::Operation::Failover, &env).render());
//! # Ok(()) }
//! ```

mod actions;
mod config;
mod env;
mod error;
mod journal;
mod plan;
mod services;
mod status;
mod sudoers;
mod sync;

pub use actions::{
    lost_path, missing_files, paused_file, vps_state, vps_takes_writes, Action, VpsState,
};
pub use config::{Backup, Config, ConfigError, Instance, ServiceKind, EXAMPLE};
pub use env::{rows, Env, REPLICA_USER, REWIND_USER};
pub use error::{FailoverError, Result};
pub use journal::{Current, Entry, Journal};
pub use plan::{resume, start, Operation, Plan, Reporter, RunOptions, Step};
pub use services::{Service, Supervised, Supervisor, Systemd};
pub use status::{status, DbHealth, FilesHealth, InstanceStatus};
pub use sudoers::{vps_root_commands, vps_sudoers};
pub use sync::{sync_pass, watch, Passes, SyncState};
