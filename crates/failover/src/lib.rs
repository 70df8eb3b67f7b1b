//! Orchestration of protect, failover and failback for Odoo instances.
//!
//! **Built so far: the configuration** ([`Config`]): the TOML file every command reads,
//! validated once, with errors that name the file, the line, the key and what to write
//! instead. Plans, the journal, preflight and fencing come next (issue #6).
//!
//! ```
//! let cfg = failover::Config::parse(failover::EXAMPLE, "config.toml")?;
//! assert_eq!(cfg.instances[0].name, "vps_clientes_1");
//! # Ok::<(), failover::ConfigError>(())
//! ```

mod config;

pub use config::{Backup, Config, ConfigError, Instance, EXAMPLE};
