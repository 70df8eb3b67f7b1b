//! Moving an Odoo instance's files to the backup server.
//!
//! - [`sync_db`]: the filestore, driven by the standby database. Odoo names every filestore
//!   file by the SHA-1 of its content and never rewrites one, and the standby already knows
//!   every name (`ir_attachment.store_fname`), so what to copy is known without scanning: the
//!   referenced names minus the ones already here ([`Index`]), fetched as one tar stream over
//!   SSH, checked, renamed into place. Nothing is ever deleted by a pass. A
//!   [`Session`] keeps one helper on the VPS between the passes of a watch.
//! - [`rsync`]: plain trees (addon sources, `data_dir/addons`, sessions, requirement.txt)
//!   with the runbook's semantics, and the first full copy of a data_dir.
//! - [`prune`]: only when asked, removes files the standby has not referenced for a day.
//! - [`audit`]: referenced files that are missing, truncated, or (with verify) corrupt.
//! - [`verify`]: the same checks while the sync runs (sizes on a schedule, SHA-1 within a
//!   budget); what it finds is moved aside and fetched again.
//! - [`copyback`]: at failback, the names the VPS lacks go back, each checked first.
//! - [`sshsetup`]: key, authorized_keys, `~/.ssh/config` block, known_hosts after the
//!   operator confirms the fingerprint.
//! - [`watch`]: the one watch loop (a pass every few seconds, what it keeps between passes)
//!   and the discovery of the Odoo databases, for `filesync watch` and odoo-standby's service.
//!
//! ```no_run
//! # async fn demo(standby: &dyn pgrepl::Sql, vps: filesync::Vps) -> Result<(), filesync::SyncError> {
//! use std::path::Path;
//! let local = Path::new("/opt/odoouser/respaldo_filestore/vps1/data_dir/filestore");
//! let mut index = filesync::Index::load_or_build(Path::new("/var/lib/odoo-standby/vps1/clientes.index"), &local.join("clientes"))?;
//! let report = filesync::sync_db(standby, "clientes", &vps, local, &mut index, &Default::default()).await?;
//! println!("fetched {} files ({} bytes)", report.fetched, report.bytes);
//! # Ok(()) }
//! ```

pub mod audit;
pub mod copyback;
mod error;
mod filestore;
mod index;
mod name;
pub mod prune;
pub mod rsync;
mod session;
pub mod sshsetup;
pub mod verify;
pub mod watch;

pub use error::{Result, SyncError};
pub use filestore::{referenced, sync_db, sync_db_tracked, PassReport, SyncOptions, Tracker, Vps};
pub use index::{Index, TMP_SUFFIX};
pub use name::StoreName;
pub use session::Session;
