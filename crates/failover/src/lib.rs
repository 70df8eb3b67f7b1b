//! Protect, failover and failback as resumable plans with a journal, preflight and fencing.
//!
//! **Not built yet**: this crate is a placeholder in the workspace; it fills up under
//! issue #6. See `../shared/DESIGN.md` for what it will own.
//!
//! ```
//! // Nothing to call yet.
//! ```
