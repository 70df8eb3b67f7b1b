//! The Odoo side of a standby: odoo.conf rewrite, per-instance layout, systemd unit, smoke test, nginx site.
//!
//! **Not built yet**: this crate is a placeholder in the workspace; it fills up under
//! issue #5. See `../shared/DESIGN.md` for what it will own.
//!
//! ```
//! // Nothing to call yet.
//! ```
