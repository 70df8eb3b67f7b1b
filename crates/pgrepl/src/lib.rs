//! PostgreSQL streaming replication: prepare a primary, clone a standby, status, promote, divergence check, rejoin with pg_rewind, slots.
//!
//! **Not built yet**: this crate is a placeholder in the workspace; it fills up under
//! issue #3. See `../shared/DESIGN.md` for what it will own.
//!
//! ```
//! // Nothing to call yet.
//! ```
