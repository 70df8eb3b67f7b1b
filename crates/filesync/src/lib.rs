//! Filestore replication driven by the standby database, rsync for plain trees, audit, SSH setup, schedules.
//!
//! **Not built yet**: this crate is a placeholder in the workspace; it fills up under
//! issue #4. See `../shared/DESIGN.md` for what it will own.
//!
//! ```
//! // Nothing to call yet.
//! ```
