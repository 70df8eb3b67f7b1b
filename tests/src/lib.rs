//! End-to-end tests of whole operations (protect, failover, failback) against the sandbox.
//!
//! The lifecycle tests come with issue #6; today this crate holds the sandbox's own
//! end-to-end checks in `tests/`.
//!
//! ```
//! // Run them with: cargo test -p odoo-standby-tests
//! ```
