//! PostgreSQL streaming replication for one primary and its standby, the way the runbook
//! does it, with the known failures of HA tools designed out.
//!
//! - [`prepare_primary`]: settings through ALTER SYSTEM (with "restart needed" reported), our
//!   own block in pg_hba.conf (checked by the server before reload, rolled back on error),
//!   roles whose passwords travel as SCRAM verifiers, and the rewind grants.
//! - [`pgpass`]: `.pgpass` files kept 0600, edited in place; looser files are refused.
//! - [`clone_standby`]: pg_basebackup with a slot into a [`Cluster`] ([`DebianCluster`] or
//!   [`PlainCluster`]), the old data directory moved aside, then wait until it streams.
//! - [`status()`]: typed, serializable replication status of a primary or a standby.
//! - [`promote()`]: pg_promote, proof of writability, CHECKPOINT.
//! - [`divergence`]: can an old primary follow, does it need pg_rewind, or a new clone — and why.
//! - [`walafter`]: what an old primary wrote after the fork (pg_waldump, per relation).
//! - [`rejoin()`]: the old primary back as a standby (recovery, pg_rewind, slot, streaming).
//! - [`slot`]: create, drop, and flag slots that threaten the disk.
//! - [`fence`]: an old primary held down (stopped, `standby.signal`, not started at boot).
//! - [`switchover`]: a planned switch without loss: clean stop, the shutdown checkpoint
//!   checked against the standby's replay, the old primary following as it is.
//!
//! SQL goes through the [`Sql`] trait: [`PgClient`] (tokio-postgres over TCP, password
//! from a passfile) or [`Psql`] (`psql` run through a `host::Host` as an OS user).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgrepl::PgreplError> {
//! let primary = pgrepl::PgClient::connect("host=10.0.0.1 port=5432 user=postgres dbname=postgres").await?;
//! match pgrepl::status(&primary).await? {
//!     pgrepl::Status::Primary(p) => {
//!         for r in p.replicas {
//!             println!("{} {} lag {:?} bytes", r.application_name, r.state, r.lag_bytes);
//!         }
//!     }
//!     pgrepl::Status::Standby(s) => println!("standby, receiver {:?}", s.receiver_status),
//! }
//! # Ok(()) }
//! ```

mod clone;
mod cluster;
mod conninfo;
pub mod divergence;
mod error;
pub mod fence;
pub mod hba;
mod ident;
mod lsn;
pub mod pgpass;
mod prepare;
mod promote;
mod rejoin;
mod scram;
pub mod slot;
mod sql;
mod status;
pub mod switchover;
pub mod walafter;

pub use clone::{
    basebackup_spec, clone_standby, is_streaming_from, parse_progress, wait_streaming,
    CloneOutcome, Progress, Upstream,
};
pub use cluster::{
    aside_path, get_auto_conf, parse_lsclusters, read_data_file, set_auto_conf, write_data_file,
    Cluster, ClusterLine, DebianCluster, PlainCluster, StopMode,
};
pub use conninfo::ConnInfo;
pub use divergence::{ControlData, Divergence};
pub use error::{PgreplError, Result};
pub use hba::{
    allow_local_login, block_lines, cidr, local_login_lines, with_block, with_marked,
    BEGIN as HBA_BEGIN, END as HBA_END,
};
pub use ident::{quote_ident, quote_literal, Name};
pub use lsn::{Lsn, TimelineFork};
pub use prepare::{prepare_primary, PrepareOptions, PrepareReport, Secret, REWIND_FUNCTIONS};
pub use promote::{promote, PromoteOutcome};
pub use rejoin::{rejoin, rewind_spec, RejoinOptions, RejoinOutcome};
pub use sql::{batch_many, execute, query_lsn, query_value, PgClient, Psql, Row, Sql, Stmt};
pub use status::{
    list_slots, status, status_batch, status_many, PrimaryStatus, Replica, Slot, StandbyStatus,
    Status,
};
