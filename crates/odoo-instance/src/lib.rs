//! The Odoo side of a standby: everything between "the database and files are replicated" and
//! "Odoo answers on the backup server".
//!
//! - [`OdooConf`]: odoo.conf parsed as Odoo parses it and edited in place; [`relocate`]
//!   rewrites it for the backup (addons paths, data_dir, database, ports, log and pid files).
//! - [`Layout`]: `<root>/<name>/{data_dir, sources, odoo, odoo.conf, odoo_<name>.service,
//!   requirement.txt}`, created idempotently with owner and modes.
//! - [`unit`]: the systemd unit, `systemd-analyze verify`, install and remove.
//! - [`smoke`]: `odoo-bin -d DB --stop-after-init` as the OS user, failures diagnosed into the
//!   runbook's classes, each with a fix to run on purpose.
//! - [`http`]: the check of a started instance by HTTP (login page, one attachment).
//! - [`nginx`]: a site file for the promoted instance.
//!
//! ```
//! use odoo_instance::{relocate, BackupTarget, OdooConf};
//!
//! let mut conf = OdooConf::parse("[options]\naddons_path = /opt/odoo/sources/oca\ndb_port = 5432\n", "odoo.conf")?;
//! let report = relocate(&mut conf, &BackupTarget {
//!     path_map: vec![("/opt/odoo/sources".into(), "/srv/backup/vps1/sources".into())],
//!     data_dir: "/srv/backup/vps1/data_dir".into(),
//!     db_port: 5435,
//!     ..Default::default()
//! });
//! assert_eq!(conf.get("addons_path"), Some("/srv/backup/vps1/sources/oca"));
//! assert!(report.unmapped.is_empty());
//! # Ok::<(), odoo_instance::InstanceError>(())
//! ```

mod conf;
mod error;
pub mod http;
mod layout;
pub mod nginx;
mod relocate;
pub mod smoke;
pub mod unit;

pub use conf::{OdooConf, OPTIONS};
pub use error::{InstanceError, Result};
pub use layout::{validate_name, Layout};
pub use relocate::{instance_path_map, relocate, BackupTarget, Change, RelocationReport};
