//! odoo-instance against real files, Python's configparser, systemd-analyze, and the
//! sandbox's clusters with the stand-in odoo-bin.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod layout_unit;
mod smoke;
