//! The sandbox against itself: real clusters stream, processes die with the sandbox, the
//! Odoo database and filestore look like Odoo's, the stand-in odoo-bin fails like Odoo.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cleanup;
mod odoo;
mod replication;
